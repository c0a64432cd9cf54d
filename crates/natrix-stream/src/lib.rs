//! Stream and consumer semantics (the JetStream model) as deterministic, pure state machines:
//! commands in, effects out. No I/O: the node persists the effects (`natrix-store`) and sends the
//! replies; a Raft log can later feed the very same commands to every replica.
//! `docs/architecture.md` (section "Streams") describes the command/effect model and the index.

mod account;
mod api_error;
mod config;
mod consumer;
mod consumer_config;
mod consumer_info;
mod headers;
mod index;
mod info;
mod message;
mod ops;
mod pull;
mod republish;
mod request;
mod source;
mod stream;
mod subject_transform;
mod subjects;

pub use account::AccountLimits;
pub use api_error::ApiError;
pub use config::{
    Compression, ConsumerLimits, DEFAULT_DUPLICATE_WINDOW_NS, DiscardPolicy, Placement,
    RetentionPolicy, StorageType, StreamConfig, is_valid_stream_name,
};
pub use consumer::{
    AckKind, AckOutcome, Advisory, Consumer, ConsumerState, Delivery, PendingAck, SequencePair,
    StateDecodeError, StreamView,
};
pub use consumer_config::{
    AckPolicy, ConsumerConfig, CreateAction, CreateConsumerRequest, CreateSubject,
    DEFAULT_ACK_WAIT_NS, DEFAULT_MAX_ACK_PENDING, DEFAULT_MAX_WAITING, DeliverPolicy, ReplayPolicy,
    check_workqueue_partition, go_duration, parse_rfc3339_nanos,
};
pub use consumer_info::{ConsumerInfo, SequenceInfo};
pub use headers::{PublishHeaders, Rollup, header_value, headers_with};
pub use index::MsgMeta;
pub use info::{PubAck, StreamState, ZERO_TIME, rfc3339_nanos};
pub use message::{MessageDecodeError, StoredMsg, StoredMsgRef};
pub use ops::StoreOp;
pub use pull::{
    AckSubject, NextWaiting, PullRequest, StatusReply, WaitingQueue, WaitingRequest,
    ack_reply_subject, parse_ack_subject,
};
pub use republish::{RePublish, Republished};
pub use request::decode_request_body;
pub use source::{
    ExternalStream, STREAM_SOURCE, SourcedFrom, StreamSource, sourced_from, sourced_headers,
};
pub use stream::{
    Applied, Command, PurgeRequest, RecoverError, RecoveredMsg, Reply, Stream, StreamPosition,
    stored_size_for,
};
pub use subject_transform::SubjectTransformConfig;
pub use subjects::{subject_matches, subjects_overlap};
