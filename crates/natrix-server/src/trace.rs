//! Protocol tracing (`-V`, `-DV`): one line per client operation in and out, shaped as
//! nats-server's: `127.0.0.1:40058 - cid:4 - <<- [PUB foo bar 5]`, `... - <<- MSG_PAYLOAD:
//! ["hello"]`, `... - ->> [MSG foo 1 bar 5]`. Off unless the trace level is on; callers check
//! [`enabled`] before building a line on a hot path.

use std::fmt;
use std::net::SocketAddr;

/// The `tracing` target of protocol lines (the `trace` option turns it on).
pub(crate) const TARGET: &str = "natrix_server::trace";

/// Whether protocol lines are logged.
pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::TRACE)
}

/// A client's line prefix, as nats-server writes it: `<addr> - cid:<id>`.
pub(crate) struct Peer {
    pub addr: SocketAddr,
    pub cid: u64,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} - cid:{}", self.addr, self.cid)
    }
}

/// An operation received: `<<- [op]`.
pub(crate) fn inbound(peer: &Peer, op: fmt::Arguments<'_>) {
    tracing::trace!(target: TARGET, "{peer} - <<- [{op}]");
}

/// A message's payload received (headers included): `<<- MSG_PAYLOAD: ["..."]`.
pub(crate) fn payload(peer: &Peer, payload: &[u8]) {
    tracing::trace!(target: TARGET, "{peer} - <<- MSG_PAYLOAD: [{}]", quoted(payload));
}

/// An operation sent: `->> [op]`.
pub(crate) fn outbound(peer: &Peer, op: fmt::Arguments<'_>) {
    tracing::trace!(target: TARGET, "{peer} - ->> [{op}]");
}

/// A protocol line sent as raw bytes (`PONG\r\n`, `+OK\r\n`, `-ERR '...'\r\n`), traced as
/// nats-server does (`OK` without its `+`); INFO lines are not traced.
pub(crate) fn outbound_proto(peer: &Peer, bytes: &[u8]) {
    let line = bytes.strip_suffix(b"\r\n").unwrap_or(bytes);
    if line.starts_with(b"INFO") {
        return;
    }
    let line = line.strip_prefix(b"+").unwrap_or(line);
    outbound(peer, format_args!("{}", String::from_utf8_lossy(line)));
}

/// A protocol line's arguments, the absent ones left out: `foo 1`, `foo q 1`.
pub(crate) fn args(parts: &[Option<&[u8]>]) -> String {
    let mut out = String::new();
    for part in parts.iter().flatten() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&String::from_utf8_lossy(part));
    }
    out
}

/// Bytes as a double-quoted string with `\r`, `\n`, `\t`, `"` and `\` escaped and other control
/// bytes as `\xNN` (Go's `%q` for the ASCII nats-server traces).
fn quoted(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_shaped_as_nats_server_writes_them() {
        let peer = Peer {
            addr: SocketAddr::from(([127, 0, 0, 1], 40058)),
            cid: 4,
        };
        assert_eq!(peer.to_string(), "127.0.0.1:40058 - cid:4");
        assert_eq!(args(&[Some(b"foo"), None, Some(b"1")]), "foo 1");
        assert_eq!(args(&[Some(b"foo"), Some(b"q"), Some(b"1")]), "foo q 1");
        assert_eq!(args(&[]), "");
    }

    #[test]
    fn payloads_are_quoted_as_go_quotes_them() {
        assert_eq!(quoted(b"hello"), r#""hello""#);
        assert_eq!(quoted(b"NATS/1.0\r\n\r\nhi"), r#""NATS/1.0\r\n\r\nhi""#);
        assert_eq!(quoted(b"a\"b\\c\td"), r#""a\"b\\c\td""#);
        assert_eq!(quoted(b"\x00\xff"), r#""\x00\xff""#);
        assert_eq!(quoted("é".as_bytes()), "\"é\"");
    }
}
