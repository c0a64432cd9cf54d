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

/// `INFO <json>\r\n`
pub fn write_info(out: &mut BytesMut, info: &crate::ServerInfo) {
    out.reserve(512);
    out.put_slice(b"INFO ");
    // Writing plain strings, numbers and bools into memory cannot fail.
    serde_json::to_writer(out.writer(), info).expect("ServerInfo serializes to JSON");
    out.put_slice(CRLF);
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
