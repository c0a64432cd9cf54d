//! Raft for natrix (issue 4): openraft's type configuration, log and vote storage in the node's
//! RocksDB, an adapter to application state machines, and the network that carries every
//! group's traffic over the one gRPC endpoint (multiplexed by group id).
//!
//! Hosting a group: build a [`RaftHost`] per node, add [`RaftHost::service`] to the node's
//! tonic server, then [`RaftHost::start_group`] with the node's [`natrix_store::Store`], a group
//! id and a [`StateMachine`]; `initialize` the group on one member. A machine that keeps its
//! own state on disk persists openraft's [`AppliedState`] with its effects and is not replayed
//! at restart. [`RaftHost::transfer_leadership`] hands a group's leadership to another voter.

// openraft's error types (StorageError, RPCError) are large and its traits dictate them.
#![allow(clippy::result_large_err)]

pub mod codec;
mod host;
mod log_store;
mod network;
mod recent;
mod service;
mod state_machine;
mod types;

pub use codec::AppliedState;
pub use host::{
    RaftHost, RaftHostError, TRANSFER_TIMEOUT, TransferLeadershipError, default_config,
    holds_write_lease, wait_write_lease,
};
pub use log_store::LogStore;
pub use network::{NetworkFactory, NetworkOptions, PeerChannels, PeerClient};
pub use openraft;
pub use openraft::async_runtime::WatchReceiver;
pub use service::{RaftRegistry, RaftService};
pub use state_machine::{SnapshotBuilder, StateMachine, StateMachineError, StateMachineStore};
pub use types::{
    BufferedSnapshot, Command, Entry, EntryPayload, GroupId, LogId, Membership, NodeId, Raft,
    RaftMetrics, RaftNode, Reply, Snapshot, SnapshotData, SnapshotMeta, SnapshotPieces,
    SnapshotSink, SnapshotSinkFactory, StorageError, StoredMembership, TypeConfig, Vote,
};
