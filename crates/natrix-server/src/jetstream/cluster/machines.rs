//! The two Raft state machines of clustered JetStream: the meta group's (the cluster's
//! metadata, `natrix-cluster`'s `MetaState`, kept in memory and rebuilt from snapshot + log at
//! start) and a stream group's (the stream's replica on this node, durable in the store).

use std::sync::Arc;

use bytes::Bytes;
use natrix_cluster::MetaState;
use natrix_raft::{AppliedState, SnapshotData, StateMachine, StateMachineError};
use natrix_stream::StorageType;
use parking_lot::RwLock;
use tokio::sync::{Notify, watch};

use crate::jetstream::StreamHost;

/// The meta group's machine: applies commands to the shared [`MetaState`] and wakes the
/// node's reconciler (which starts and stops stream replicas to match).
pub(crate) struct MetaMachine {
    pub state: Arc<RwLock<MetaState>>,
    pub changed: Arc<Notify>,
    /// The last applied log index (callers wait on it to read their own writes).
    pub applied: watch::Sender<u64>,
}

impl StateMachine for MetaMachine {
    fn apply(&mut self, index: u64, command: &[u8]) -> Bytes {
        let reply = self.state.write().apply_encoded(command);
        self.applied.send_replace(index);
        self.changed.notify_one();
        Bytes::from(reply)
    }

    fn snapshot(&self) -> Bytes {
        Bytes::from(self.state.read().snapshot())
    }

    async fn install(
        &mut self,
        snapshot: Bytes,
        applied: &AppliedState,
    ) -> Result<(), StateMachineError> {
        let state = MetaState::install(&snapshot)?;
        *self.state.write() = state;
        if let Some(id) = applied.last_applied() {
            self.applied.send_replace(id.index);
        }
        self.changed.notify_one();
        Ok(())
    }
}

/// A stream group's machine on this node: the stream's [`StreamHost`] in replica mode.
pub(crate) struct StreamMachine {
    pub host: Arc<StreamHost>,
}

impl StateMachine for StreamMachine {
    fn apply(&mut self, index: u64, command: &[u8]) -> Bytes {
        self.host.apply_entry(index, command)
    }

    /// A file stream's messages stay in the store (written with each applied batch, and made
    /// durable by the fsync that stores the snapshot): the stored snapshot leaves them out.
    fn snapshot(&self) -> Bytes {
        self.host.stored_snapshot()
    }

    /// A file stream's follower writes a received snapshot's messages to the store as they
    /// arrive; a memory stream's is held whole (its messages live in memory anyway).
    fn snapshot_sink(&self) -> Option<natrix_raft::SnapshotSinkFactory> {
        if self.host.storage() != StorageType::File {
            return None;
        }
        let host = Arc::downgrade(&self.host);
        Some(Arc::new(move || {
            Box::new(crate::jetstream::StagedSnapshot::new(host.clone()))
        }))
    }

    async fn transfer_snapshot(&self) -> Result<Option<SnapshotData>, StateMachineError> {
        self.host
            .transfer_snapshot()
            .await
            .map_err(|e| StateMachineError::from(format!("stream '{}': {e}", self.host.name)))
    }

    async fn install(
        &mut self,
        snapshot: Bytes,
        applied: &AppliedState,
    ) -> Result<(), StateMachineError> {
        self.host
            .install_snapshot(snapshot, applied.bytes().to_vec())
            .await
            .map_err(StateMachineError::from)
    }

    async fn persist(&mut self, applied: &AppliedState) -> Result<(), StateMachineError> {
        self.host
            .persist(applied.bytes().to_vec())
            .await
            .map_err(|e| StateMachineError::from(e.to_string()))
    }

    /// A file stream writes its applied position with every batch (`persist`); a memory
    /// stream keeps nothing on disk and replays its log from the stored snapshot.
    fn stores_applied(&self) -> bool {
        self.host.storage() == StorageType::File
    }

    fn durable_applied(&self) -> Option<AppliedState> {
        let bytes = self.host.replica.as_ref()?.recovered_applied.clone()?;
        match AppliedState::decode(bytes) {
            Ok(applied) => Some(applied),
            Err(err) => {
                tracing::error!(
                    "JetStream stream '{}': stored applied position unreadable ({err}); rebuilding from the log",
                    self.host.name
                );
                None
            }
        }
    }
}
