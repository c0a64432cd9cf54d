//! Streaming parser for client-to-server protocol operations.
//! CONTRACT (used by natrix-server; keep the public API):

use bytes::{Bytes, BytesMut};

/// Limits the parser enforces while reading control lines and payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserLimits {
    /// Longest control line (verb + arguments, without CRLF) accepted; nats-server default 4096.
    pub max_control_line: u32,
    /// Largest PUB/HPUB total size accepted; nats-server default 1 MiB.
    pub max_payload: u32,
}

impl Default for ParserLimits {
    fn default() -> Self {
        Self { max_control_line: 4096, max_payload: 1024 * 1024 }
    }
}

/// A PUB or HPUB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub subject: Bytes,
    pub reply: Option<Bytes>,
    /// HPUB only: the whole header block, `NATS/1.0...\r\n\r\n` (exactly `hdr_len` bytes).
    pub headers: Option<Bytes>,
    /// The message body (for HPUB: the bytes after the header block).
    pub payload: Bytes,
}

/// One operation sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// CONNECT with its raw JSON argument.
    Connect(Bytes),
    Pub(Publish),
    Sub { subject: Bytes, queue: Option<Bytes>, sid: Bytes },
    Unsub { sid: Bytes, max: Option<u64> },
    Ping,
    Pong,
    /// INFO from a client (ignored by the server, as nats-server does for clients).
    Info(Bytes),
    /// +OK from a client.
    Ok,
    /// -ERR from a client, with its text.
    Err(Bytes),
}

/// Why a client's bytes could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("Unknown Protocol Operation")]
    UnknownOperation,
    #[error("Maximum Control Line Exceeded")]
    MaxControlLineExceeded,
    #[error("Maximum Payload Violation")]
    MaxPayloadViolation,
    /// Malformed arguments of a known verb; the string is nats-server's exact -ERR text.
    #[error("{0}")]
    InvalidArguments(&'static str),
}

impl ParseError {
    /// The exact text nats-server puts between the quotes of `-ERR '...'`.
    pub fn client_text(&self) -> &'static str {
        todo!()
    }
}

/// Incremental parser state; one per connection.
#[derive(Debug)]
pub struct ClientParser {
    limits: ParserLimits,
}

impl ClientParser {
    pub fn new(limits: ParserLimits) -> Self {
        Self { limits }
    }

    pub fn limits(&self) -> ParserLimits {
        self.limits
    }

    /// Parses the next operation from the front of `buf`, consuming exactly its bytes.
    /// `Ok(None)` means more bytes are needed (nothing consumed that would be lost).
    /// After an `Err` the connection is to be closed.
    pub fn next_op(&mut self, buf: &mut BytesMut) -> Result<Option<ClientOp>, ParseError> {
        let _ = buf;
        todo!()
    }
}
