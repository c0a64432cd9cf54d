//! A node's RocksDB storage (one database per node): stream messages, each stream's applied
//! position, stream configs and consumer state (design §5; layouts and paths in docs/architecture.md, "Storage").
//!
//! Writes go through one committer thread that groups every queued commit into one write batch
//! and one fsync ([`SyncPolicy::Always`]), then acknowledges them all: an acknowledged commit is
//! on disk, and many concurrent writers share an fsync. Reads go straight to RocksDB from the
//! caller's thread and see every acknowledged commit. Key layouts: see [`keys`].

mod batch;
mod committer;
mod disk;
mod error;
pub mod keys;
mod options;
mod raft_log;
mod store;
mod verify;
mod wal_sync;

pub use batch::{ConsumerUpdate, RaftApplied, StreamBatch};
pub use committer::CommitStats;
pub use disk::DiskUsage;
pub use error::StoreError;
pub use natrix_stream::{StoreOp, StoredMsg};
pub use options::{StoreOptions, SyncPolicy};
pub use raft_log::{RaftLog, RaftLogError, RaftMetaTag};
pub use store::{CommitTicket, MsgRefScan, MsgScan, Store};
pub use wal_sync::SyncDone;
