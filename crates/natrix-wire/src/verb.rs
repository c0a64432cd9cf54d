//! Recognising the verb at the start of a client operation, case-insensitively and byte by
//! byte as nats-server does (a wrong byte is an error as soon as it arrives).

/// Verbs followed by an argument that ends at `\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgVerb {
    Pub,
    Hpub,
    /// A client may send HMSG; nats-server ignores its arguments and expects an empty payload.
    Hmsg,
    Sub,
    Unsub,
    Connect,
    Info,
    Err,
}

/// Verbs whose line is skipped up to `\n`, whatever it contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BareVerb {
    Ping,
    Pong,
    Ok,
}

pub(crate) enum VerbMatch {
    NeedMore,
    Unknown,
    /// Verb, and bytes it occupies including its mandatory separator.
    Arg(ArgVerb, usize),
    Bare(BareVerb, usize),
}

/// Recognises the verb at the front of `buf`, case-insensitively, as nats-server does: a
/// wrong byte is an error as soon as it arrives.
pub(crate) fn match_verb(buf: &[u8]) -> VerbMatch {
    let first = buf[0];
    let (word, verb): (&[u8], Result<ArgVerb, BareVerb>) = match first | 0x20 {
        b'p' => match buf.get(1).map(|b| b | 0x20) {
            None => return VerbMatch::NeedMore,
            Some(b'u') => (b"pub", Ok(ArgVerb::Pub)),
            Some(b'i') => (b"ping", Err(BareVerb::Ping)),
            Some(b'o') => (b"pong", Err(BareVerb::Pong)),
            Some(_) => return VerbMatch::Unknown,
        },
        b'h' => match buf.get(1).map(|b| b | 0x20) {
            None => return VerbMatch::NeedMore,
            Some(b'p') => (b"hpub", Ok(ArgVerb::Hpub)),
            Some(b'm') => (b"hmsg", Ok(ArgVerb::Hmsg)),
            Some(_) => return VerbMatch::Unknown,
        },
        b's' => (b"sub", Ok(ArgVerb::Sub)),
        b'u' => (b"unsub", Ok(ArgVerb::Unsub)),
        b'c' => (b"connect", Ok(ArgVerb::Connect)),
        b'i' => (b"info", Ok(ArgVerb::Info)),
        // Checked exactly by `eq_ignore_case` below (0x0b | 0x20 is also `+`).
        b'+' => (b"+ok", Err(BareVerb::Ok)),
        b'-' => (b"-err", Ok(ArgVerb::Err)),
        _ => return VerbMatch::Unknown,
    };
    for (i, &w) in word.iter().enumerate() {
        match buf.get(i) {
            None => return VerbMatch::NeedMore,
            Some(&b) if eq_ignore_case(b, w) => {}
            Some(_) => return VerbMatch::Unknown,
        }
    }
    let len = word.len();
    match verb {
        Err(bare) => VerbMatch::Bare(bare, len),
        // No separator required: `CONNECT{}` is accepted.
        Ok(arg_verb @ (ArgVerb::Connect | ArgVerb::Info)) => VerbMatch::Arg(arg_verb, len),
        Ok(arg_verb) => match buf.get(len) {
            None => VerbMatch::NeedMore,
            Some(b' ' | b'\t') => VerbMatch::Arg(arg_verb, len + 1),
            Some(_) => VerbMatch::Unknown,
        },
    }
}

/// `b` equals the lower-case verb byte `w`, ignoring ASCII case for letters only.
#[inline]
fn eq_ignore_case(b: u8, w: u8) -> bool {
    if w.is_ascii_lowercase() {
        b | 0x20 == w
    } else {
        b == w
    }
}
