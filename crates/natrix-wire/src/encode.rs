//! Encoders for server-to-client frames, appending to a `BytesMut`.

use bytes::BytesMut;

pub const PING: &[u8] = b"PING\r\n";
pub const PONG: &[u8] = b"PONG\r\n";
pub const OK: &[u8] = b"+OK\r\n";
pub const ERR_PREFIX: &[u8] = b"-ERR ";
/// Header block of the no-responders status message.
pub const NO_RESPONDERS_HEADER: &[u8] = b"NATS/1.0 503\r\n\r\n";

/// `MSG <subject> <sid> [reply] <len>\r\n<payload>\r\n`
pub fn write_msg(out: &mut BytesMut, subject: &[u8], sid: &[u8], reply: Option<&[u8]>, payload: &[u8]) {
    let _ = (out, subject, sid, reply, payload);
    todo!()
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
    let _ = (out, subject, sid, reply, headers, payload);
    todo!()
}

/// `INFO <json>\r\n`
pub fn write_info(out: &mut BytesMut, info: &crate::ServerInfo) {
    let _ = (out, info);
    todo!()
}

/// `-ERR '<text>'\r\n`
pub fn write_err(out: &mut BytesMut, text: &str) {
    let _ = (out, text);
    todo!()
}
