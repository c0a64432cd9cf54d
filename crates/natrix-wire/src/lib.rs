//! The NATS client protocol as nats-server 2.x speaks it: a streaming parser for what clients
//! send (CONNECT, PUB, HPUB, SUB, UNSUB, PING, PONG, ...) and encoders for what the server sends
//! (INFO, MSG, HMSG, +OK, -ERR, PING, PONG), plus client-side encoders (PUB, HPUB, any op)
//! for tests and load generators. No I/O: bytes in, frames out. Behaviour, including error
//! texts and which errors close silently, follows nats-server 2.9.10: see `PROTOCOL_NOTES.md`.

mod args;
mod client_encode;
mod encode;
mod error;
mod info;
mod parser;
mod verb;

pub use client_encode::{write_client_op, write_hpub, write_pub};
pub use encode::{
    ERR_PREFIX, NO_RESPONDERS_HEADER, OK, PING, PONG, write_err, write_hmsg, write_info, write_msg,
};
pub use error::{ParseError, invalid};
pub use info::{ConnectInfo, ServerInfo};
pub use parser::{ClientOp, ClientParser, ParserLimits, Publish};
