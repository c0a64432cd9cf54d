//! Stream and consumer semantics (the JetStream model) as deterministic, pure state machines:
//! commands in, effects out. No I/O: the node persists the effects (`natrix-store`) and sends the
//! replies; a Raft log can later feed the very same commands to every replica.

mod message;
mod ops;

pub use message::{MessageDecodeError, StoredMsg};
pub use ops::StoreOp;
