//! Why a client's bytes were rejected, with nats-server's exact texts and whether it replies
//! `-ERR` before closing.

/// Why a client's bytes could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("Unknown Protocol Operation")]
    UnknownOperation,
    #[error("maximum control line exceeded")]
    MaxControlLineExceeded,
    #[error("Maximum Payload Violation")]
    MaxPayloadViolation,
    /// Malformed arguments of a known verb; the string is the text nats-server logs
    /// (it closes these connections without sending `-ERR`, see [`ParseError::err_reply`]).
    #[error("{0}")]
    InvalidArguments(&'static str),
}

/// Texts of [`ParseError::InvalidArguments`], as nats-server logs them (without the quoted arg).
pub mod invalid {
    pub const PUB_PARSE: &str = "processPub Parse Error";
    pub const PUB_SIZE: &str = "processPub Bad or Missing Size";
    pub const HPUB_PARSE: &str = "processHeaderPub Parse Error";
    pub const HPUB_HDR_SIZE: &str = "processHeaderPub Bad or Missing Header Size";
    pub const HPUB_TOTAL_SIZE: &str = "processHeaderPub Bad or Missing Total Size";
    pub const HPUB_HDR_TOO_BIG: &str = "processHeaderPub Header Size larger then TotalSize";
    pub const HPUB_NOT_SUPPORTED: &str = "message headers not supported";
    pub const SUB_PARSE: &str = "processSub Parse Error";
    pub const UNSUB_PARSE: &str = "processUnsub Parse Error";
}

impl ParseError {
    /// The exact text nats-server puts between the quotes of `-ERR '...'` (for
    /// `InvalidArguments`, the text it logs; it sends nothing for those, see `err_reply`).
    pub fn client_text(&self) -> &'static str {
        match self {
            ParseError::UnknownOperation => "Unknown Protocol Operation",
            ParseError::MaxControlLineExceeded => "maximum control line exceeded",
            ParseError::MaxPayloadViolation => "Maximum Payload Violation",
            ParseError::InvalidArguments(text) => text,
        }
    }

    /// What nats-server sends before closing: `Some(text)` for `-ERR '<text>'`, `None` when it
    /// closes the connection silently (malformed PUB/HPUB/SUB/UNSUB arguments).
    pub fn err_reply(&self) -> Option<&'static str> {
        match self {
            ParseError::InvalidArguments(_) => None,
            other => Some(other.client_text()),
        }
    }
}
