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
//! A durable machine may store partial snapshots: [`StateMachine::snapshot`] leaves out what it
//! keeps on disk itself (a file stream's messages), so taking one every few thousand entries
//! costs little whatever the state's size. Once the group runs, a snapshot openraft asks for is
//! one to send to a follower that needs it: the adapter then asks the machine for its whole
//! state where it is now ([`StateMachine::transfer_snapshot`]), described by the adapter's own
//! last applied log id and membership, which are at or after the stored snapshot's.
//!
//! Log purging is safe for a durable machine: openraft purges the log only up to the last log id
//! of a stored snapshot, a snapshot is taken from applied state (its last log id is an applied
//! position that was persisted before the snapshot was even built, and storing the snapshot is
//! an fsynced write to the same RocksDB write-ahead log, which makes every earlier write of the
//! machine durable too, unsynced ones included), and a received snapshot's
//! applied state is persisted by [`StateMachine::install`] before openraft purges anything. So
//! the persisted applied position is always at or after the purge point, and every entry after
//! it is still in the log. (Should a machine ever report a position older than the stored
//! snapshot, `open` installs the snapshot instead of replaying entries that may be gone.)

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{Stream, TryStreamExt};
use natrix_store::RaftLog;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{OptionalSend, RaftSnapshotBuilder};
use tokio::sync::Mutex;

use crate::codec::{self, AppliedState};
use crate::types::{
    EntryPayload, LogId, Reply, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig,
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

    /// The state as portable bytes (no `usize`, no native byte order), taken at the current
    /// point of the log: called between two `apply` calls. This is what the group stores as its
    /// snapshot (openraft then purges the log it covers). A durable machine may leave out what
    /// it keeps on disk itself, and give the whole state in [`StateMachine::transfer_snapshot`].
    fn snapshot(&self) -> Bytes;

    /// The whole state, at the current point of the log, for a follower that needs a snapshot
    /// (called between two `apply` calls); `None` (the default) when [`StateMachine::snapshot`]
    /// is whole already and the stored snapshot is sent as it is. Nothing is applied until the
    /// returned future resolves, so the state it returns is the one at this point of the log;
    /// [`SnapshotData::Reading`] lets a large state be read after that (the machine must have
    /// fixed what it will read, e.g. with a store snapshot), by the task that sends it, while
    /// the group applies on. An error, now or while reading, is a storage error: it stops the
    /// group's replication rather than send an incomplete state.
    fn transfer_snapshot(
        &self,
    ) -> impl Future<Output = Result<Option<SnapshotData>, StateMachineError>> + Send {
        async { Ok(None) }
    }

    /// How a follower receives this machine's snapshots from a leader: `None` (the default)
    /// collects the chunks in memory and hands the whole snapshot to [`StateMachine::install`];
    /// a machine that keeps its state in a store can write it there as it arrives and finish
    /// with a small [`SnapshotData::Ready`] naming what it wrote, which `install` then adopts.
    /// Asked once, when the group starts.
    fn snapshot_sink(&self) -> Option<crate::SnapshotSinkFactory> {
        None
    }

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

    /// Whether this machine stores its applied position itself ([`StateMachine::persist`]).
    /// The group then does not store openraft's committed log id: at start applying resumes
    /// from the machine's own position, which every applied batch writes (the committed id
    /// would be one more RocksDB write per commit on every replica, on the leader between the
    /// commit and the answers, and it would not be synced either). Default: false, an in-memory
    /// machine, whose group stores the committed id so that a restart re-applies the log up
    /// to it without waiting for a leader.
    fn stores_applied(&self) -> bool {
        false
    }
}

/// [`StateMachine`] in a form that can live behind a `Box`, so that every group's openraft
/// instance has one type ([`crate::Raft`]) whatever machine it replicates.
trait ErasedMachine: Send + Sync + 'static {
    fn apply(&mut self, index: u64, command: &[u8]) -> Bytes;
    fn snapshot(&self) -> Bytes;
    fn transfer_snapshot(&self) -> BoxFuture<'_, Result<Option<SnapshotData>, StateMachineError>>;
    fn install<'a>(
        &'a mut self,
        snapshot: Bytes,
        applied: &'a AppliedState,
    ) -> BoxFuture<'a, Result<(), StateMachineError>>;
    fn persist<'a>(
        &'a mut self,
        applied: &'a AppliedState,
    ) -> BoxFuture<'a, Result<(), StateMachineError>>;
}

impl<S: StateMachine> ErasedMachine for S {
    fn apply(&mut self, index: u64, command: &[u8]) -> Bytes {
        StateMachine::apply(self, index, command)
    }

    fn snapshot(&self) -> Bytes {
        StateMachine::snapshot(self)
    }

    fn transfer_snapshot(&self) -> BoxFuture<'_, Result<Option<SnapshotData>, StateMachineError>> {
        Box::pin(StateMachine::transfer_snapshot(self))
    }

    fn install<'a>(
        &'a mut self,
        snapshot: Bytes,
        applied: &'a AppliedState,
    ) -> BoxFuture<'a, Result<(), StateMachineError>> {
        Box::pin(StateMachine::install(self, snapshot, applied))
    }

    fn persist<'a>(
        &'a mut self,
        applied: &'a AppliedState,
    ) -> BoxFuture<'a, Result<(), StateMachineError>> {
        Box::pin(StateMachine::persist(self, applied))
    }
}

/// A storage error of the state machine adapter, with what it was doing.
fn sm_error(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
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
            snapshot: SnapshotData::Ready(self.data.clone()),
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
    async fn replace(&self, snapshot: StoredSnapshot) -> Result<(), io::Error> {
        let mut current = self.current.lock().await;
        if let Some(cur) = current.as_ref()
            && cur.meta.last_log_id > snapshot.meta.last_log_id
        {
            return Ok(());
        }
        let what = "storing a snapshot";
        let meta = codec::encode_snapshot_meta(&snapshot.meta).map_err(|e| sm_error(what, e))?;
        let log = self.log.clone();
        let data = snapshot.data.clone();
        match tokio::task::spawn_blocking(move || log.save_snapshot(&meta, &data)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(sm_error(what, e)),
            Err(e) => return Err(sm_error(what, e)),
        }
        *current = Some(snapshot);
        Ok(())
    }
}

/// openraft's state machine storage for one group, over an application [`StateMachine`].
pub struct StateMachineStore {
    machine: Box<dyn ErasedMachine>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshots: SnapshotStore,
    /// Set once openraft has started the group ([`StateMachineStore::running_flag`]): until
    /// then it reads the stored snapshot for its metadata; afterwards a snapshot it asks for is
    /// one to send to a follower.
    running: Arc<AtomicBool>,
}

impl StateMachineStore {
    /// Wraps `machine` and brings it to the group's stored state: a machine reporting its own
    /// durable applied state starts from it; otherwise the stored snapshot, if any, is installed
    /// into it (openraft then re-applies the committed entries after it from the log).
    pub async fn open<S: StateMachine>(
        log: RaftLog,
        mut machine: S,
    ) -> Result<StateMachineStore, io::Error> {
        let what = "opening the stored snapshot";
        let stored = log.read_snapshot().map_err(|e| sm_error(what, e))?;
        let durable = machine.durable_applied();
        let (mut last_applied, mut last_membership) = match &durable {
            Some(applied) => (applied.last_applied(), applied.membership().clone()),
            None => (None, StoredMembership::default()),
        };
        let mut current = None;
        if let Some((meta, data)) = stored {
            let meta = codec::decode_snapshot_meta(&meta).map_err(|e| sm_error(what, e))?;
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
                StateMachine::install(&mut machine, data.clone(), &applied)
                    .await
                    .map_err(|e| sm_error(what, e))?;
                last_applied = meta.last_log_id;
                last_membership = meta.last_membership.clone();
            }
            current = Some(StoredSnapshot { meta, data });
        }
        Ok(StateMachineStore {
            machine: Box::new(machine),
            last_applied,
            last_membership,
            snapshots: SnapshotStore {
                log,
                current: Arc::new(Mutex::new(current)),
            },
            running: Arc::default(),
        })
    }

    /// The flag to set once `openraft::Raft::new` has returned with this store: from then on,
    /// a snapshot openraft asks for is sent to a follower, so a machine whose stored snapshots
    /// leave out what it keeps on disk gives its whole state instead.
    pub fn running_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.running)
    }
}

/// Builds a snapshot from state captured when openraft asked for the builder, so applying
/// entries can go on while the snapshot is written.
pub struct SnapshotBuilder {
    data: Bytes,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshots: SnapshotStore,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
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

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut answers = Vec::new();
        let mut last = None;
        while let Some((entry, responder)) = entries.try_next().await? {
            let reply = match entry.payload {
                EntryPayload::Blank => Bytes::new(),
                EntryPayload::Normal(command) => self.machine.apply(entry.log_id.index, &command.0),
                EntryPayload::Membership(membership) => {
                    self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    Bytes::new()
                }
            };
            last = Some(entry.log_id);
            if let Some(responder) = responder {
                answers.push((responder, reply));
            }
        }
        let Some(last) = last else {
            return Ok(());
        };
        self.last_applied = Some(last);
        // Before any answer leaves: a proposer never hears of a command whose effects a restart
        // could still lose.
        let applied = AppliedState::new(self.last_applied, self.last_membership.clone());
        self.machine
            .persist(&applied)
            .await
            .map_err(|e| sm_error(&format!("persisting the state applied up to {last}"), e))?;
        for (responder, reply) in answers {
            responder.send(Reply(reply));
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            data: self.machine.snapshot(),
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let snapshot = snapshot
            .into_bytes()
            .await
            .map_err(|e| sm_error(&format!("reading snapshot {meta}"), e))?;
        let applied = AppliedState::new(meta.last_log_id, meta.last_membership.clone());
        self.machine
            .install(snapshot, &applied)
            .await
            .map_err(|e| sm_error(&format!("installing snapshot {meta}"), e))?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        // Stored as the machine would have built it (a durable machine leaves out what it now
        // keeps on disk itself).
        self.snapshots
            .replace(StoredSnapshot {
                meta: meta.clone(),
                data: self.machine.snapshot(),
            })
            .await?;
        tracing::info!(
            group = self.snapshots.log.group_id(),
            snapshot = %meta,
            "raft: installed a snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let stored = self
            .snapshots
            .current
            .lock()
            .await
            .as_ref()
            .map(StoredSnapshot::to_snapshot);
        if !self.running.load(Ordering::Acquire) || self.last_applied.is_none() {
            return Ok(stored);
        }
        // A snapshot to send: the machine's whole state where it is now, which is at or after
        // the stored snapshot (the follower then gets the entries after it).
        let whole = self
            .machine
            .transfer_snapshot()
            .await
            .map_err(|e| sm_error("reading the state to send as a snapshot", e))?;
        Ok(match whole {
            Some(data) => Some(Snapshot {
                meta: SnapshotMeta {
                    last_log_id: self.last_applied,
                    last_membership: self.last_membership.clone(),
                },
                snapshot: data,
            }),
            None => stored,
        })
    }
}
