//! Encoders for server-to-client frames, appending to a `BytesMut`: each reserves its exact
//! size once and writes numbers with `itoa`.

use bytes::{BufMut, BytesMut};

pub const PING: &[u8] = b"PING\r\n";
pub const PONG: &[u8] = b"PONG\r\n";
pub const OK: &[u8] = b"+OK\r\n";
pub const ERR_PREFIX: &[u8] = b"-ERR ";
/// Header block of the no-responders status message.
pub const NO_RESPONDERS_HEADER: &[u8] = b"NATS/1.0 503\r\n\r\n";

const CRLF: &[u8] = b"\r\n";

/// `MSG <subject> <sid> [reply] <len>\r\n<payload>\r\n`
pub fn write_msg(
    out: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    payload: &[u8],
) {
    let mut len_buf = itoa::Buffer::new();
    let len = len_buf.format(payload.len()).as_bytes();
    let reply_len = reply.map_or(0, |r| r.len() + 1);
    out.reserve(
        4 + subject.len() + 1 + sid.len() + reply_len + 1 + len.len() + 2 + payload.len() + 2,
    );
    out.put_slice(b"MSG ");
    out.put_slice(subject);
    out.put_u8(b' ');
    out.put_slice(sid);
    if let Some(reply) = reply {
        out.put_u8(b' ');
        out.put_slice(reply);
    }
    out.put_u8(b' ');
    out.put_slice(len);
    out.put_slice(CRLF);
    out.put_slice(payload);
    out.put_slice(CRLF);
}

/// `HMSG <subject> <sid> [reply] <hdr_len> <total_len>\r\n<headers><payload>\r\n`
pub fn write_hmsg(
    out: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers: &[u8],
    payload: &[u8],
) {
    let mut hdr_buf = itoa::Buffer::new();
    let hdr_len = hdr_buf.format(headers.len()).as_bytes();
    let mut total_buf = itoa::Buffer::new();
    let total_len = total_buf.format(headers.len() + payload.len()).as_bytes();
    let reply_len = reply.map_or(0, |r| r.len() + 1);
    out.reserve(
        5 + subject.len()
            + 1
            + sid.len()
            + reply_len
            + 1
            + hdr_len.len()
            + 1
            + total_len.len()
            + 2
            + headers.len()
            + payload.len()
            + 2,
    );
    out.put_slice(b"HMSG ");
    out.put_slice(subject);
    out.put_u8(b' ');
    out.put_slice(sid);
    if let Some(reply) = reply {
        out.put_u8(b' ');
        out.put_slice(reply);
    }
    out.put_u8(b' ');
    out.put_slice(hdr_len);
    out.put_u8(b' ');
    out.put_slice(total_len);
    out.put_slice(CRLF);
    out.put_slice(headers);
    out.put_slice(payload);
    out.put_slice(CRLF);
}

/// `INFO <json> \r\n` (nats-server puts a space before CRLF; so do we).
pub fn write_info(out: &mut BytesMut, info: &crate::ServerInfo) {
    out.reserve(512);
    out.put_slice(b"INFO ");
    // Writing plain strings, numbers and bools into memory cannot fail.
    serde_json::to_writer(out.writer(), info).expect("ServerInfo serializes to JSON");
    out.put_slice(b" \r\n");
}

/// `-ERR '<text>'\r\n`
pub fn write_err(out: &mut BytesMut, text: &str) {
    out.reserve(ERR_PREFIX.len() + text.len() + 4);
    out.put_slice(ERR_PREFIX);
    out.put_u8(b'\'');
    out.put_slice(text.as_bytes());
    out.put_u8(b'\'');
    out.put_slice(CRLF);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut out = BytesMut::new();
        f(&mut out);
        out.to_vec()
    }

    #[test]
    fn msg_without_and_with_reply() {
        assert_eq!(
            encoded(|o| write_msg(o, b"foo", b"1", None, b"hello")),
            b"MSG foo 1 5\r\nhello\r\n"
        );
        assert_eq!(
            encoded(|o| write_msg(o, b"foo.bar", b"22", Some(b"_INBOX.x"), b"")),
            b"MSG foo.bar 22 _INBOX.x 0\r\n\r\n"
        );
    }

    #[test]
    fn hmsg_counts_header_and_total_lengths() {
        assert_eq!(
            encoded(|o| write_hmsg(o, b"foo", b"1", None, b"NATS/1.0\r\n\r\n", b"hi")),
            b"HMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
        );
        assert_eq!(
            encoded(|o| write_hmsg(o, b"foo", b"1", Some(b"r"), NO_RESPONDERS_HEADER, b"")),
            b"HMSG foo 1 r 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
        );
    }

    #[test]
    fn err_quotes_its_text() {
        assert_eq!(
            encoded(|o| write_err(o, "Unknown Protocol Operation")),
            b"-ERR 'Unknown Protocol Operation'\r\n"
        );
    }

    #[test]
    fn info_is_json_followed_by_space_crlf_like_nats_server() {
        let info = crate::ServerInfo {
            server_id: "S".into(),
            max_payload: 1024,
            ..Default::default()
        };
        let out = encoded(|o| write_info(o, &info));
        assert!(out.starts_with(b"INFO {\"server_id\":\"S\""));
        assert!(out.ends_with(b"} \r\n"));
    }

    #[test]
    fn encoders_append_without_disturbing_earlier_frames() {
        let mut out = BytesMut::new();
        out.extend_from_slice(PING);
        write_msg(&mut out, b"a", b"1", None, b"x");
        out.extend_from_slice(OK);
        assert_eq!(&out[..], b"PING\r\nMSG a 1 1\r\nx\r\n+OK\r\n");
    }
}
