//! The bridge between openraft's [`RaftStateMachine`] and an application state machine of ours
//! ([`StateMachine`]: apply a command, take and install a portable snapshot). The adapter keeps
//! openraft's bookkeeping (last applied log id, last membership) and the group's latest
//! snapshot, which it stores in `raft_meta`.
//!
//! Two kinds of machine:
//! - in memory (the default): at start the stored snapshot is installed into the empty machine
//!   and openraft re-applies the committed entries after it from the log;
//! - durable (its own effects are on disk, e.g. the stream state machine writing messages to the
//!   node's RocksDB): after every applied batch the adapter hands it the [`AppliedState`] to store
//!   atomically with the batch's effects ([`StateMachine::persist`]), and at start the machine
//!   reports what it stored ([`StateMachine::durable_applied`]); openraft then applies only the
//!   entries after that, and the stored snapshot is not installed.
//!
//! Log purging is safe for a durable machine: openraft purges the log only up to the last log id
//! of a stored snapshot, a snapshot is taken from applied state (its last log id is an applied
//! position that was persisted before the snapshot was even built), and a received snapshot's
//! applied state is persisted by [`StateMachine::install`] before openraft purges anything. So
//! the persisted applied position is always at or after the purge point, and every entry after
//! it is still in the log. (Should a machine ever report a position older than the stored
//! snapshot, `open` installs the snapshot instead of replaying entries that may be gone.)

use std::future::Future;
use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use natrix_store::RaftLog;
use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use tokio::sync::Mutex;

use crate::codec::{self, AppliedState};
use crate::types::{
    Entry, LogId, Reply, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// An error of the application state machine (e.g. a snapshot it cannot read).
pub type StateMachineError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a Raft group replicates: a deterministic machine fed with committed commands in log
/// order. Every replica applies the same commands in the same order and must reach the same
/// state, so `apply` may depend on nothing but the state, the index and the command.
///
/// A machine that keeps its state on disk implements [`StateMachine::persist`] and
/// [`StateMachine::durable_applied`]; one that lives in memory needs neither. None of these
/// methods may block the runtime: disk I/O goes through an async commit (e.g.
/// `natrix_store::Store::commit_with_raft_applied`) or `spawn_blocking`.
pub trait StateMachine: Send + Sync + 'static {
    /// Applies the committed command at log `index`; the answer goes back to the proposer
    /// (on the leader) as the `client_write` response, once the batch it belongs to was
    /// persisted.
    fn apply(&mut self, index: u64, command: &[u8]) -> Bytes;

    /// The whole state as portable bytes (no `usize`, no native byte order), taken at the
    /// current point of the log: called between two `apply` calls.
    fn snapshot(&self) -> Bytes;

    /// Replaces the whole state with one produced by `snapshot` (on any node or architecture),
    /// which covers the log up to `applied`. A durable machine stores `applied.bytes()`
    /// atomically with the installed state.
    fn install(
        &mut self,
        snapshot: Bytes,
        applied: &AppliedState,
    ) -> impl Future<Output = Result<(), StateMachineError>> + Send;

    /// Called after every batch of entries openraft applies (commands, and blank and membership
    /// entries too), after the last `apply` of the batch and before its answers are returned.
    /// A durable machine stores `applied.bytes()` in the same atomic write as the effects of the
    /// batch's commands and resolves once that write is durable; an error stops the group (a
    /// storage error). In-memory machines keep the default, which does nothing.
    fn persist(
        &mut self,
        applied: &AppliedState,
    ) -> impl Future<Output = Result<(), StateMachineError>> + Send {
        let _ = applied;
        async { Ok(()) }
    }

    /// The applied state this machine last persisted, as read from its storage when it was
    /// constructed (decode the stored bytes with [`AppliedState::decode`]). `Some`: the group
    /// restarts from it (no snapshot install, no replay of the entries it covers). `None` (the
    /// default, and a durable machine that never persisted anything): the group's stored
    /// snapshot is installed and the entries after it are replayed.
    fn durable_applied(&self) -> Option<AppliedState> {
        None
    }
}

#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Bytes,
}

impl StoredSnapshot {
    fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(self.data.to_vec())),
        }
    }
}

/// The group's latest snapshot, kept in memory and in `raft_meta`.
#[derive(Clone)]
struct SnapshotStore {
    log: RaftLog,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
}

impl SnapshotStore {
    /// Stores `snapshot` durably and makes it current, unless a newer one is current already
    /// (a slow build finishing after an install).
    async fn replace(&self, snapshot: StoredSnapshot) -> Result<(), StorageError> {
        let mut current = self.current.lock().await;
        if let Some(cur) = current.as_ref()
            && cur.meta.last_log_id > snapshot.meta.last_log_id
        {
            return Ok(());
        }
        let signature = Some(snapshot.meta.signature());
        let write_err = |e: AnyError| -> StorageError {
            StorageIOError::write_snapshot(signature.clone(), e).into()
        };
        let meta = codec::encode_snapshot_meta(&snapshot.meta)
            .map_err(|e| write_err(AnyError::new(&e)))?;
        let log = self.log.clone();
        let data = snapshot.data.clone();
        match tokio::task::spawn_blocking(move || log.save_snapshot(&meta, &data)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(write_err(AnyError::new(&e))),
            Err(e) => return Err(write_err(AnyError::new(&e))),
        }
        *current = Some(snapshot);
        Ok(())
    }
}

/// openraft's state machine storage for one group, over an application [`StateMachine`].
pub struct StateMachineStore<S> {
    machine: S,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshots: SnapshotStore,
    builds: u64,
}

impl<S: StateMachine> StateMachineStore<S> {
    /// Wraps `machine` and brings it to the group's stored state: a machine reporting its own
    /// durable applied state starts from it; otherwise the stored snapshot, if any, is installed
    /// into it (openraft then re-applies the committed entries after it from the log).
    pub async fn open(log: RaftLog, mut machine: S) -> Result<StateMachineStore<S>, StorageError> {
        let read_err =
            |e: AnyError| -> StorageError { StorageIOError::read_snapshot(None, e).into() };
        let stored = log
            .read_snapshot()
            .map_err(|e| read_err(AnyError::new(&e)))?;
        let durable = machine.durable_applied();
        let (mut last_applied, mut last_membership) = match &durable {
            Some(applied) => (applied.last_applied(), applied.membership().clone()),
            None => (None, StoredMembership::default()),
        };
        let mut current = None;
        if let Some((meta, data)) = stored {
            let meta =
                codec::decode_snapshot_meta(&meta).map_err(|e| read_err(AnyError::new(&e)))?;
            let install = match &durable {
                None => true,
                Some(applied) => meta.last_log_id > applied.last_applied(),
            };
            if install {
                if durable.is_some() {
                    tracing::warn!(
                        group = log.group_id(),
                        snapshot = %meta,
                        applied = ?last_applied,
                        "raft: the machine's durable state is older than the stored snapshot; \
                         installing the snapshot"
                    );
                }
                let applied = AppliedState::new(meta.last_log_id, meta.last_membership.clone());
                machine
                    .install(data.clone(), &applied)
                    .await
                    .map_err(|e| read_err(AnyError::from_dyn(&*e, None)))?;
                last_applied = meta.last_log_id;
                last_membership = meta.last_membership.clone();
            }
            current = Some(StoredSnapshot { meta, data });
        }
        Ok(StateMachineStore {
            machine,
            last_applied,
            last_membership,
            snapshots: SnapshotStore {
                log,
                current: Arc::new(Mutex::new(current)),
            },
            builds: 0,
        })
    }

    /// The application state machine (e.g. for reads on this replica).
    pub fn machine(&self) -> &S {
        &self.machine
    }
}

/// Builds a snapshot from state captured when openraft asked for the builder, so applying
/// entries can go on while the snapshot is written.
pub struct SnapshotBuilder {
    data: Bytes,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshot_id: String,
    snapshots: SnapshotStore,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id: self.snapshot_id.clone(),
        };
        let stored = StoredSnapshot {
            meta,
            data: self.data.clone(),
        };
        self.snapshots.replace(stored.clone()).await?;
        tracing::debug!(
            group = self.snapshots.log.group_id(),
            snapshot = %stored.meta,
            bytes = stored.data.len(),
            "raft: built a snapshot"
        );
        Ok(stored.to_snapshot())
    }
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for StateMachineStore<S> {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        let mut last = None;
        for entry in entries {
            last = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => Bytes::new(),
                EntryPayload::Normal(command) => self.machine.apply(entry.log_id.index, &command.0),
                EntryPayload::Membership(membership) => {
                    self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    Bytes::new()
                }
            };
            replies.push(Reply(reply));
        }
        let Some(last) = last else {
            return Ok(replies);
        };
        self.last_applied = Some(last);
        // Before any answer leaves: a proposer never hears of a command whose effects a restart
        // could still lose.
        let applied = AppliedState::new(self.last_applied, self.last_membership.clone());
        self.machine.persist(&applied).await.map_err(|e| {
            StorageError::from(StorageIOError::apply(last, AnyError::from_dyn(&*e, None)))
        })?;
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.builds += 1;
        let snapshot_id = match &self.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, self.builds),
            None => format!("0-0-{}", self.builds),
        };
        SnapshotBuilder {
            data: self.machine.snapshot(),
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id,
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = Bytes::from(snapshot.into_inner());
        let applied = AppliedState::new(meta.last_log_id, meta.last_membership.clone());
        self.machine
            .install(data.clone(), &applied)
            .await
            .map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(
                    Some(meta.signature()),
                    AnyError::from_dyn(&*e, None),
                ))
            })?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.snapshots
            .replace(StoredSnapshot {
                meta: meta.clone(),
                data,
            })
            .await?;
        tracing::info!(
            group = self.snapshots.log.group_id(),
            snapshot = %meta,
            "raft: installed a snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self
            .snapshots
            .current
            .lock()
            .await
            .as_ref()
            .map(StoredSnapshot::to_snapshot))
    }
}
