//! A small NATS header-block reader (`NATS/1.0[ status]\r\nKey: value\r\n...\r\n\r\n`), a
//! writer that appends lines to a message's own block, and the JetStream publish headers a stream
//! acts on. Header names match exactly (case-sensitive), as
//! nats-server's `getHeader` does; the first occurrence wins.

pub const MSG_ID: &str = "Nats-Msg-Id";
pub const EXPECTED_STREAM: &str = "Nats-Expected-Stream";
pub const EXPECTED_LAST_SEQ: &str = "Nats-Expected-Last-Sequence";
pub const EXPECTED_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
pub const EXPECTED_LAST_MSG_ID: &str = "Nats-Expected-Last-Msg-Id";
pub const ROLLUP: &str = "Nats-Rollup";

/// A message's own header block (or a new one) with `lines` (name, value) added after its own
/// lines, as nats-server adds the headers of a direct get, a republished or a headers-only copy.
pub fn headers_with(own: Option<&[u8]>, lines: &[(&str, &[u8])]) -> bytes::Bytes {
    let extra: usize = lines.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let mut h = Vec::with_capacity(14 + own.map_or(0, <[u8]>::len) + extra);
    match own {
        // Keep the message's own header lines, drop its blank terminator line.
        Some(own) if own.ends_with(b"\r\n\r\n") => h.extend_from_slice(&own[..own.len() - 2]),
        _ => h.extend_from_slice(b"NATS/1.0\r\n"),
    }
    for (name, value) in lines {
        h.extend_from_slice(name.as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(value);
        h.extend_from_slice(b"\r\n");
    }
    h.extend_from_slice(b"\r\n");
    bytes::Bytes::from(h)
}

/// The value of header `name` in a header block, trimmed of surrounding spaces; `None` if absent
/// or the block is malformed.
pub fn header_value<'a>(block: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let body = block.strip_prefix(b"NATS/1.0")?;
    let mut lines = body.split(|&b| b == b'\n');
    lines.next()?; // the status line's remainder
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if &line[..colon] == name.as_bytes() {
            return Some(line[colon + 1..].trim_ascii());
        }
    }
    None
}

/// `Nats-Rollup` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollup {
    /// Keep only the new message on its subject.
    Subject,
    /// Keep only the new message in the stream.
    All,
}

/// The JetStream headers of one publish. Empty values count as absent, as in nats-server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishHeaders {
    pub msg_id: Option<String>,
    pub expected_stream: Option<String>,
    /// `u64::MAX` when the header is present but not a number (never matches, like nats-server's
    /// `-1`).
    pub expected_last_seq: Option<u64>,
    pub expected_last_subject_seq: Option<u64>,
    pub expected_last_msg_id: Option<String>,
    /// The raw `Nats-Rollup` value (validated when the publish is applied).
    pub rollup: Option<String>,
}

impl PublishHeaders {
    pub fn parse(block: Option<&[u8]>) -> PublishHeaders {
        let Some(block) = block else {
            return PublishHeaders::default();
        };
        let text = |name| {
            header_value(block, name)
                .filter(|v| !v.is_empty())
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let number = |name| {
            header_value(block, name)
                .filter(|v| !v.is_empty())
                .map(|v| parse_u64(v).unwrap_or(u64::MAX))
        };
        PublishHeaders {
            msg_id: text(MSG_ID),
            expected_stream: text(EXPECTED_STREAM),
            expected_last_seq: number(EXPECTED_LAST_SEQ),
            expected_last_subject_seq: number(EXPECTED_LAST_SUBJECT_SEQ),
            expected_last_msg_id: text(EXPECTED_LAST_MSG_ID),
            rollup: text(ROLLUP),
        }
    }

    /// The rollup requested, or the error text's value when it is not `sub` or `all`
    /// (compared case-insensitively, as nats-server accepts `SUB`).
    pub fn rollup_kind(&self) -> Result<Option<Rollup>, &str> {
        match self.rollup.as_deref() {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("sub") => Ok(Some(Rollup::Subject)),
            Some(v) if v.eq_ignore_ascii_case("all") => Ok(Some(Rollup::All)),
            Some(v) => Err(v),
        }
    }
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &[u8] = b"NATS/1.0\r\nNats-Msg-Id:  abc \r\nNats-Expected-Last-Sequence: 7\r\nnats-rollup: all\r\nNats-Expected-Last-Subject-Sequence: x\r\nNats-Msg-Id: second\r\n\r\n";

    #[test]
    fn added_lines_follow_the_messages_own_or_start_a_block() {
        let own = b"NATS/1.0\r\nX: 1\r\n\r\n";
        assert_eq!(
            &headers_with(Some(own), &[("A", b"a"), ("B", b"b")])[..],
            b"NATS/1.0\r\nX: 1\r\nA: a\r\nB: b\r\n\r\n"
        );
        assert_eq!(
            &headers_with(None, &[("A", b"a")])[..],
            b"NATS/1.0\r\nA: a\r\n\r\n"
        );
        // A malformed block is not kept.
        assert_eq!(
            &headers_with(Some(b"junk"), &[("A", b"a")])[..],
            b"NATS/1.0\r\nA: a\r\n\r\n"
        );
    }

    #[test]
    fn reads_jetstream_headers_exactly_as_named() {
        let h = PublishHeaders::parse(Some(BLOCK));
        assert_eq!(h.msg_id.as_deref(), Some("abc"));
        assert_eq!(h.expected_last_seq, Some(7));
        assert_eq!(h.rollup, None, "header names are case-sensitive");
        assert_eq!(h.expected_last_subject_seq, Some(u64::MAX));
        assert_eq!(h.expected_stream, None);
    }

    #[test]
    fn empty_values_and_malformed_blocks_are_absent() {
        let h = PublishHeaders::parse(Some(b"NATS/1.0\r\nNats-Msg-Id:\r\n\r\n"));
        assert_eq!(h.msg_id, None);
        assert_eq!(
            PublishHeaders::parse(Some(b"garbage")),
            PublishHeaders::default()
        );
        assert_eq!(PublishHeaders::parse(None), PublishHeaders::default());
        assert_eq!(
            header_value(b"NATS/1.0 503\r\nA: b\r\n\r\n", "A"),
            Some(b"b".as_slice())
        );
    }

    #[test]
    fn rollup_values_are_case_insensitive() {
        let h = |v: &str| PublishHeaders {
            rollup: Some(v.into()),
            ..PublishHeaders::default()
        };
        assert_eq!(h("SUB").rollup_kind(), Ok(Some(Rollup::Subject)));
        assert_eq!(h("all").rollup_kind(), Ok(Some(Rollup::All)));
        assert_eq!(h("bogus").rollup_kind(), Err("bogus"));
    }
}
