//! Property tests of the parser through the public API: random op sequences written the many
//! ways clients may write them, split at random, parse to the same ops; arbitrary bytes never
//! panic and give the same result however they are chunked; encoders round-trip.

use bytes::{Bytes, BytesMut};
use natrix_wire::{
    ClientOp, ClientParser, ParseError, ParserLimits, Publish, write_client_op, write_hmsg,
    write_msg,
};
use proptest::prelude::*;

/// How a client spells one op: verb case, separator, line ending.
#[derive(Debug, Clone)]
struct Style {
    upper_mask: u8,
    sep: &'static [u8],
    bare_lf: bool,
}

fn style() -> impl Strategy<Value = Style> {
    (
        any::<u8>(),
        prop::sample::select(vec![&b" "[..], b"\t", b"  ", b" \t", b"\t\t "]),
        any::<bool>(),
    )
        .prop_map(|(upper_mask, sep, bare_lf)| Style {
            upper_mask,
            sep,
            bare_lf,
        })
}

fn token() -> impl Strategy<Value = Bytes> {
    "[a-zA-Z0-9_.*>$-]{1,16}".prop_map(Bytes::from)
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

fn headers() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(("[A-Za-z-]{1,8}", "[ -~]{0,12}"), 0..3).prop_map(|kvs| {
        let mut h = b"NATS/1.0\r\n".to_vec();
        for (k, v) in kvs {
            h.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        h.extend_from_slice(b"\r\n");
        Bytes::from(h)
    })
}

/// A free-text argument (CONNECT JSON, INFO, -ERR): starts with a non-blank, no CR/LF.
fn text() -> impl Strategy<Value = Bytes> {
    "[!-~][ -~]{0,40}".prop_map(Bytes::from)
}

fn client_op() -> impl Strategy<Value = ClientOp> {
    prop_oneof![
        text().prop_map(ClientOp::Connect),
        (token(), prop::option::of(token()), payload()).prop_map(|(subject, reply, payload)| {
            ClientOp::Pub(Publish {
                subject,
                reply,
                headers: None,
                payload,
            })
        }),
        (token(), prop::option::of(token()), headers(), payload()).prop_map(
            |(subject, reply, h, payload)| {
                ClientOp::Pub(Publish {
                    subject,
                    reply,
                    headers: Some(h),
                    payload,
                })
            }
        ),
        (token(), prop::option::of(token()), "[0-9a-z]{1,6}").prop_map(|(subject, queue, sid)| {
            ClientOp::Sub {
                subject,
                queue,
                sid: Bytes::from(sid),
            }
        }),
        ("[0-9a-z]{1,6}", prop::option::of(1u64..=999_999_999)).prop_map(|(sid, max)| {
            ClientOp::Unsub {
                sid: Bytes::from(sid),
                max,
            }
        }),
        Just(ClientOp::Ping),
        Just(ClientOp::Pong),
        Just(ClientOp::Ok),
        text().prop_map(ClientOp::Info),
        text().prop_map(ClientOp::Err),
    ]
}

fn verb(out: &mut Vec<u8>, verb: &str, style: &Style) {
    for (i, c) in verb.bytes().enumerate() {
        let upper = style.upper_mask & (1 << (i % 8)) != 0;
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
    }
}

/// Writes `op` as a (possibly sloppy but valid) client would.
fn write_styled(out: &mut Vec<u8>, op: &ClientOp, s: &Style) {
    let eol: &[u8] = if s.bare_lf { b"\n" } else { b"\r\n" };
    let line = |out: &mut Vec<u8>, name: &str, args: &[&[u8]]| {
        verb(out, name, s);
        for arg in args {
            out.extend_from_slice(s.sep);
            out.extend_from_slice(arg);
        }
        out.extend_from_slice(eol);
    };
    match op {
        ClientOp::Connect(a) => line(out, "connect", &[a]),
        ClientOp::Info(a) => line(out, "info", &[a]),
        ClientOp::Err(a) => line(out, "-err", &[a]),
        ClientOp::Ping => line(out, "ping", &[]),
        ClientOp::Pong => line(out, "pong", &[]),
        ClientOp::Ok => line(out, "+ok", &[]),
        ClientOp::Sub {
            subject,
            queue: Some(q),
            sid,
        } => line(out, "sub", &[subject, q, sid]),
        ClientOp::Sub {
            subject,
            queue: None,
            sid,
        } => line(out, "sub", &[subject, sid]),
        ClientOp::Unsub { sid, max: Some(m) } => {
            line(out, "unsub", &[sid, m.to_string().as_bytes()])
        }
        ClientOp::Unsub { sid, max: None } => line(out, "unsub", &[sid]),
        ClientOp::Pub(p) => {
            let mut args: Vec<Vec<u8>> = vec![p.subject.to_vec()];
            if let Some(r) = &p.reply {
                args.push(r.to_vec());
            }
            let hdr_len = p.headers.as_ref().map_or(0, |h| h.len());
            if p.headers.is_some() {
                args.push(hdr_len.to_string().into_bytes());
            }
            args.push((hdr_len + p.payload.len()).to_string().into_bytes());
            let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            line(out, if p.headers.is_some() { "hpub" } else { "pub" }, &refs);
            if let Some(h) = &p.headers {
                out.extend_from_slice(h);
            }
            out.extend_from_slice(&p.payload);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Cuts `stream` at the given (unsorted, possibly repeated) points.
fn split_at_points<'a>(stream: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut last = 0;
    for c in cuts.into_iter().chain(std::iter::once(stream.len())) {
        chunks.push(&stream[last..c]);
        last = c;
    }
    chunks
}

fn parse_chunks(
    limits: ParserLimits,
    chunks: &[&[u8]],
) -> (Vec<ClientOp>, Option<ParseError>, usize) {
    let mut parser = ClientParser::new(limits);
    let mut buf = BytesMut::new();
    let mut ops = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match parser.next_op(&mut buf) {
                Ok(Some(op)) => ops.push(op),
                Ok(None) => break,
                Err(e) => return (ops, Some(e), buf.len()),
            }
        }
    }
    (ops, None, buf.len())
}

/// Bytes made mostly of protocol fragments, to reach deep parser states.
fn protocolish() -> impl Strategy<Value = Vec<u8>> {
    let frag = prop_oneof![
        prop::sample::select(vec![
            &b"PUB "[..],
            b"HPUB ",
            b"SUB ",
            b"UNSUB ",
            b"CONNECT",
            b"INFO ",
            b"-ERR ",
            b"HMSG ",
            b"PING",
            b"PONG",
            b"+OK",
            b"\r\n",
            b"\n",
            b"\r",
            b" ",
            b"\t",
            b"0",
            b"1",
            b"5",
            b"12",
            b"99",
            b"foo",
            b"q",
            b"{}",
            b"NATS/1.0",
            b"hello",
        ])
        .prop_map(|f| f.to_vec()),
        prop::collection::vec(any::<u8>(), 1..4),
    ];
    prop::collection::vec(frag, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_op_sequences_split_anywhere_parse_back(
        ops in prop::collection::vec((client_op(), style()), 1..24),
        points in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for (op, style) in &ops {
            write_styled(&mut stream, op, style);
        }
        let expected: Vec<ClientOp> = ops.into_iter().map(|(op, _)| op).collect();
        let (parsed, err, left) = parse_chunks(ParserLimits::default(), &split_at_points(&stream, &points));
        prop_assert_eq!(err, None);
        prop_assert_eq!(left, 0);
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn canonical_encoding_round_trips(ops in prop::collection::vec(client_op(), 0..24)) {
        let mut out = BytesMut::new();
        for op in &ops {
            write_client_op(&mut out, op);
        }
        let (parsed, err, left) = parse_chunks(ParserLimits::default(), &[&out]);
        prop_assert_eq!((parsed, err, left), (ops, None, 0));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_chunking_does_not_matter(
        bytes in prop_oneof![prop::collection::vec(any::<u8>(), 0..256), protocolish()],
        points in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let limits = ParserLimits { max_control_line: 32, max_payload: 64 };
        let (ops, err, _) = parse_chunks(limits, &[&bytes]);
        let (chunked_ops, chunked_err, _) = parse_chunks(limits, &split_at_points(&bytes, &points));
        prop_assert_eq!(&chunked_ops, &ops);
        prop_assert_eq!(chunked_err, err);
        // Whatever parsed must re-encode to a stream that parses back to the same ops.
        let mut out = BytesMut::new();
        for op in &ops {
            write_client_op(&mut out, op);
        }
        let (again, again_err, _) = parse_chunks(limits, &[&out]);
        prop_assert_eq!(again_err, None);
        prop_assert_eq!(again, ops);
    }

    #[test]
    fn msg_and_hmsg_frames_decode_to_what_was_encoded(
        subject in token(), sid in "[0-9]{1,6}", reply in prop::option::of(token()),
        h in prop::option::of(headers()), body in payload(),
    ) {
        let mut out = BytesMut::new();
        match &h {
            Some(h) => write_hmsg(&mut out, &subject, sid.as_bytes(), reply.as_deref(), h, &body),
            None => write_msg(&mut out, &subject, sid.as_bytes(), reply.as_deref(), &body),
        }
        let frame = decode_server_msg(&out).expect("decodes");
        prop_assert_eq!(frame.consumed, out.len());
        prop_assert_eq!(frame.subject, &subject[..]);
        prop_assert_eq!(frame.sid, sid.as_bytes());
        prop_assert_eq!(frame.reply, reply.as_deref());
        prop_assert_eq!(frame.headers, h.as_deref());
        prop_assert_eq!(frame.payload, &body[..]);
    }
}

struct ServerMsg<'a> {
    subject: &'a [u8],
    sid: &'a [u8],
    reply: Option<&'a [u8]>,
    headers: Option<&'a [u8]>,
    payload: &'a [u8],
    consumed: usize,
}

/// A minimal client-side decoder of MSG/HMSG, written independently of the encoder.
fn decode_server_msg(buf: &[u8]) -> Option<ServerMsg<'_>> {
    let nl = buf.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(buf[..nl].strip_suffix(b"\r")?).ok()?;
    let parts: Vec<&str> = line.split(' ').collect();
    let at = |i: usize| -> &[u8] {
        &buf[offset(line, parts[i])..offset(line, parts[i]) + parts[i].len()]
    };
    let (hmsg, n) = (parts[0] == "HMSG", parts.len());
    let num = |i: usize| parts[i].parse::<usize>().ok();
    let (reply, hdr, total) = match (hmsg, n) {
        (false, 4) => (None, 0, num(3)?),
        (false, 5) => (Some(at(3)), 0, num(4)?),
        (true, 5) => (None, num(3)?, num(4)?),
        (true, 6) => (Some(at(3)), num(4)?, num(5)?),
        _ => return None,
    };
    let body = &buf[nl + 1..nl + 1 + total];
    if &buf[nl + 1 + total..nl + 3 + total] != b"\r\n" {
        return None;
    }
    Some(ServerMsg {
        subject: at(1),
        sid: at(2),
        reply,
        headers: hmsg.then(|| &body[..hdr]),
        payload: &body[hdr..],
        consumed: nl + 3 + total,
    })
}

fn offset(line: &str, part: &str) -> usize {
    part.as_ptr() as usize - line.as_ptr() as usize
}
