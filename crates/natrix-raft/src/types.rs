//! The openraft type configuration of every natrix Raft group: node ids are `u64`, a node is
//! addressed by its gRPC cluster endpoint, entries carry opaque application commands and the
//! state machine answers with opaque bytes. Nothing here depends on the machine's word size.

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

/// A node's id in every Raft group (the same id in all groups the node hosts).
pub type NodeId = u64;

/// The id of one Raft group; the key by which one gRPC endpoint multiplexes all groups.
pub type GroupId = u64;

/// How peers reach a node: its gRPC cluster endpoint (`host:port`) and its server name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftNode {
    pub addr: String,
    pub name: String,
}

impl RaftNode {
    pub fn new(addr: impl Into<String>, name: impl Into<String>) -> RaftNode {
        RaftNode {
            addr: addr.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

/// An application command proposed with `client_write` and applied by the group's
/// [`crate::StateMachine`]; opaque to the Raft layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(pub Bytes);

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "command({} bytes)", self.0.len())
    }
}

impl From<Bytes> for Command {
    fn from(bytes: Bytes) -> Command {
        Command(bytes)
    }
}

impl From<&'static [u8]> for Command {
    fn from(bytes: &'static [u8]) -> Command {
        Command(Bytes::from_static(bytes))
    }
}

/// What the state machine answered for one applied command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(pub Bytes);

openraft::declare_raft_types!(
    /// The type configuration of natrix Raft groups.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = u64,
        Node = RaftNode,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A running Raft group on this node (every group has the same state machine adapter type; the
/// application machine behind it varies).
pub type Raft = openraft::Raft<TypeConfig, crate::StateMachineStore>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type EntryPayload = openraft::alias::EntryPayloadOf<TypeConfig>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type LeaderId = openraft::alias::LeaderIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, RaftNode>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot: its metadata and the application machine's portable bytes.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;

/// The portable bytes of a snapshot: ready (built, stored or received), or still being read.
/// A snapshot for a follower is fixed at its log position when openraft asks for it and may be
/// read afterwards, piece by piece as the task that sends it asks for more, while the group
/// goes on applying entries (see [`crate::StateMachine::transfer_snapshot`]).
pub enum SnapshotData {
    Ready(Bytes),
    Reading(SnapshotPieces),
}

/// A snapshot being read: its bytes in order, in pieces of any size. An `Err` item (why the
/// rest could not be read, a storage error) ends it; so does the end of the stream, which
/// means every byte was read: a reader that cannot finish must yield an error rather than end.
pub struct SnapshotPieces {
    /// About how many bytes the pieces add up to (it sets how long a transfer may take).
    pub size_hint: u64,
    pub pieces: BoxStream<'static, Result<Bytes, String>>,
}

impl SnapshotData {
    /// An estimate of the snapshot's size in bytes (exact when it is ready).
    pub fn size_hint(&self) -> u64 {
        match self {
            SnapshotData::Ready(bytes) => bytes.len() as u64,
            SnapshotData::Reading(reading) => reading.size_hint,
        }
    }

    /// The bytes in pieces, as they are read (a ready snapshot is one piece).
    pub fn into_pieces(self) -> BoxStream<'static, Result<Bytes, String>> {
        match self {
            SnapshotData::Ready(bytes) => futures::stream::once(async move { Ok(bytes) }).boxed(),
            SnapshotData::Reading(reading) => reading.pieces,
        }
    }

    /// The whole bytes, once read.
    pub async fn into_bytes(self) -> Result<Bytes, String> {
        let mut pieces = match self {
            SnapshotData::Ready(bytes) => return Ok(bytes),
            SnapshotData::Reading(reading) => reading.pieces,
        };
        let mut whole = BytesMut::new();
        while let Some(piece) = pieces.try_next().await? {
            whole.extend_from_slice(&piece);
        }
        Ok(whole.freeze())
    }
}

/// Where a follower puts a snapshot while its chunks arrive, before the group installs it. The
/// default ([`BufferedSnapshot`]) keeps the bytes in memory; a machine whose state lives in a
/// store can write the state there as it comes and hand the group only a small handle to it
/// ([`crate::StateMachine::snapshot_sink`]), so a follower never holds a large snapshot whole.
pub trait SnapshotSink: Send + 'static {
    /// The next bytes of the snapshot, in order. An error ends the transfer (nothing is
    /// installed).
    fn write(&mut self, piece: Bytes) -> BoxFuture<'_, Result<(), String>>;

    /// Every byte has arrived: what the group's machine is to install.
    fn finish(&mut self) -> BoxFuture<'_, Result<SnapshotData, String>>;

    /// The group answered the snapshot it was given (`answered`), which it does only once it
    /// installed it or found it already had that state; `false` when it failed or stopped
    /// (whether it installed it is then unknown). A sink that keeps data for a snapshot the
    /// group did not install can drop it here.
    fn done(self: Box<Self>, answered: bool) {
        let _ = answered;
    }
}

/// Makes a [`SnapshotSink`] for each snapshot a group receives.
pub type SnapshotSinkFactory = std::sync::Arc<dyn Fn() -> Box<dyn SnapshotSink> + Send + Sync>;

/// A snapshot received into memory, up to a size limit.
pub struct BufferedSnapshot {
    data: BytesMut,
    limit: u64,
}

impl BufferedSnapshot {
    pub fn new(limit: u64) -> BufferedSnapshot {
        BufferedSnapshot {
            data: BytesMut::new(),
            limit,
        }
    }
}

impl SnapshotSink for BufferedSnapshot {
    fn write(&mut self, piece: Bytes) -> BoxFuture<'_, Result<(), String>> {
        let result = if (self.data.len() as u64).saturating_add(piece.len() as u64) > self.limit {
            Err(format!("snapshot larger than {} bytes", self.limit))
        } else {
            self.data.extend_from_slice(&piece);
            Ok(())
        };
        Box::pin(async move { result })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<SnapshotData, String>> {
        let data = std::mem::take(&mut self.data).freeze();
        Box::pin(async move { Ok(SnapshotData::Ready(data)) })
    }
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotData::Ready(bytes) => write!(f, "SnapshotData::Ready({} bytes)", bytes.len()),
            SnapshotData::Reading(reading) => write!(
                f,
                "SnapshotData::Reading(about {} bytes)",
                reading.size_hint
            ),
        }
    }
}
pub type StorageError = openraft::StorageError<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_buffered_snapshot_is_the_pieces_in_order_up_to_its_limit() {
        let mut sink = BufferedSnapshot::new(10);
        for piece in ["abc", "defg", "hij"] {
            sink.write(Bytes::from_static(piece.as_bytes()))
                .await
                .expect("within the limit");
        }
        let err = sink
            .write(Bytes::from_static(b"k"))
            .await
            .expect_err("one byte over the limit");
        assert!(err.contains("larger than 10 bytes"), "{err}");
        match sink.finish().await {
            Ok(SnapshotData::Ready(bytes)) => assert_eq!(&bytes[..], b"abcdefghij"),
            other => panic!("not the bytes received: {other:?}"),
        }
    }
}
