//! Encoder for client-to-server operations, the inverse of the parser: used by round-trip
//! tests, the fuzz target, benches and load generators.

use bytes::{BufMut, BytesMut};

use crate::ClientOp;

/// Appends `op` as a client would send it, with single spaces and CRLF.
pub fn write_client_op(out: &mut BytesMut, op: &ClientOp) {
    match op {
        ClientOp::Connect(json) => line(out, b"CONNECT ", &[json]),
        ClientOp::Info(json) => line(out, b"INFO ", &[json]),
        ClientOp::Err(text) => line(out, b"-ERR ", &[text]),
        ClientOp::Ping => out.put_slice(b"PING\r\n"),
        ClientOp::Pong => out.put_slice(b"PONG\r\n"),
        ClientOp::Ok => out.put_slice(b"+OK\r\n"),
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => match queue {
            Some(queue) => line(out, b"SUB ", &[subject, queue, sid]),
            None => line(out, b"SUB ", &[subject, sid]),
        },
        ClientOp::Unsub { sid, max } => match max {
            Some(max) => line(
                out,
                b"UNSUB ",
                &[sid, itoa::Buffer::new().format(*max).as_bytes()],
            ),
            None => line(out, b"UNSUB ", &[sid]),
        },
        ClientOp::Pub(p) => {
            let reply = p.reply.as_deref();
            match p.headers.as_deref() {
                Some(headers) => write_hpub(out, &p.subject, reply, headers, &p.payload),
                None => write_pub(out, &p.subject, reply, &p.payload),
            }
        }
    }
}

/// `PUB <subject> [reply] <len>\r\n<payload>\r\n`
pub fn write_pub(out: &mut BytesMut, subject: &[u8], reply: Option<&[u8]>, payload: &[u8]) {
    let mut len = itoa::Buffer::new();
    let len = len.format(payload.len()).as_bytes();
    match reply {
        Some(reply) => line(out, b"PUB ", &[subject, reply, len]),
        None => line(out, b"PUB ", &[subject, len]),
    }
    out.reserve(payload.len() + 2);
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

/// `HPUB <subject> [reply] <hdr_len> <total_len>\r\n<headers><payload>\r\n`
pub fn write_hpub(
    out: &mut BytesMut,
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: &[u8],
    payload: &[u8],
) {
    let mut hdr = itoa::Buffer::new();
    let hdr = hdr.format(headers.len()).as_bytes();
    let mut total = itoa::Buffer::new();
    let total = total.format(headers.len() + payload.len()).as_bytes();
    match reply {
        Some(reply) => line(out, b"HPUB ", &[subject, reply, hdr, total]),
        None => line(out, b"HPUB ", &[subject, hdr, total]),
    }
    out.reserve(headers.len() + payload.len() + 2);
    out.put_slice(headers);
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

/// `<verb><arg> <arg>...\r\n`
fn line(out: &mut BytesMut, verb: &[u8], args: &[&[u8]]) {
    let len = verb.len() + args.iter().map(|a| a.len() + 1).sum::<usize>() + 1;
    out.reserve(len);
    out.put_slice(verb);
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.put_u8(b' ');
        }
        out.put_slice(arg);
    }
    out.put_slice(b"\r\n");
}
