//! Stream and consumer semantics (the JetStream model) as deterministic, pure state machines:
//! commands in, effects out. No I/O: the node persists the effects (`natrix-store`) and sends the
//! replies; a Raft log can later feed the very same commands to every replica.
//! `docs/architecture.md` (section "Streams") describes the command/effect model and the index.

mod api_error;
mod config;
mod headers;
mod index;
mod info;
mod message;
mod ops;
mod stream;
mod subjects;

pub use api_error::ApiError;
pub use config::{
    Compression, ConsumerLimits, DEFAULT_DUPLICATE_WINDOW_NS, DiscardPolicy, Placement,
    RetentionPolicy, StorageType, StreamConfig, is_valid_stream_name,
};
pub use headers::{PublishHeaders, Rollup, header_value};
pub use index::MsgMeta;
pub use info::{PubAck, StreamState, ZERO_TIME, rfc3339_nanos};
pub use message::{MessageDecodeError, StoredMsg};
pub use ops::StoreOp;
pub use stream::{
    Applied, Command, PurgeRequest, RecoverError, RecoveredMsg, Reply, Stream, StreamPosition,
    stored_size_for,
};
pub use subjects::{subject_matches, subjects_overlap};
