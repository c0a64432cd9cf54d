//! Group commit in two stages. The writer thread owns every write: it takes all requests queued
//! so far, builds ONE RocksDB write batch and appends it to the write-ahead log. Under
//! [`SyncPolicy::Always`] it then hands the group to the syncer thread and goes on with the next
//! group at once, while the syncer fdatasyncs the log and only then answers every waiter of every
//! group written before that sync began. So building and writing group N+1 overlaps the fsync of
//! group N, N concurrent writers share one fsync, and no waiter hears "ok" for bytes that are
//! not on disk. A group with nothing queued behind it while the syncer has nothing in hand (one
//! publish at a time) is fsynced and answered by the writer itself: there is nothing to overlap,
//! and the hand-off to the syncer would only add a thread wake-up. A failed write or sync fails
//! every waiter it covers and poisons the store: later writes are refused until a restart
//! recovers from disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use rocksdb::{DB, WriteBatch, WriteOptions};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::batch::{self, Cfs, ConsumerUpdate, Floors, RaftApplied, StreamBatch};
use crate::{StoreError, SyncPolicy, keys};

/// One write a caller waits for.
pub(crate) enum Request {
    Stream {
        batch: StreamBatch,
        raft_applied: Option<RaftApplied>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Consumers {
        stream_id: u64,
        updates: Vec<ConsumerUpdate>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    CreateStream {
        config: Bytes,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// `batch.stream_id` takes the place of stream `replaced`: see [`crate::Store::adopt_stream`].
    AdoptStream {
        replaced: u64,
        config: Bytes,
        batch: StreamBatch,
        raft_applied: RaftApplied,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    PutStreamConfig {
        stream_id: u64,
        config: Bytes,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    DeleteStream {
        stream_id: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Sent when the store is dropped: write what is queued before it, then stop.
    Shutdown,
}

/// A request with the queue slot it holds until it is answered.
pub(crate) struct Queued {
    pub request: Request,
    pub _permit: Option<OwnedSemaphorePermit>,
}

/// Counters of the committer, readable at any time.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    groups: AtomicU64,
    syncs: AtomicU64,
    failed_groups: AtomicU64,
}

/// A snapshot of the committer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Requests written and acknowledged.
    pub commits: u64,
    /// Write batches written (one per group).
    pub groups: u64,
    /// fsyncs of the write-ahead log: under `SyncPolicy::Always` at most one per group (one fsync
    /// covers every group written while the previous one ran), one per interval under
    /// `SyncPolicy::Interval`.
    pub syncs: u64,
    /// Groups whose write failed (each fails all its requests).
    pub failed_groups: u64,
}

impl Counters {
    /// A batch written outside the committer ([`crate::Store::write_with_raft_applied`]).
    pub fn note_direct_write(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.groups.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CommitStats {
        CommitStats {
            commits: self.commits.load(Ordering::Relaxed),
            groups: self.groups.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            failed_groups: self.failed_groups.load(Ordering::Relaxed),
        }
    }
}

pub(crate) struct Committer {
    pub db: Arc<DB>,
    pub rx: Receiver<Queued>,
    pub policy: SyncPolicy,
    pub counters: Arc<Counters>,
    /// Upper bound of requests per group (the queue capacity).
    pub max_group: usize,
    /// The queue's slots; closed when the committer stops so that callers waiting for a slot
    /// get `StoreError::Closed` instead of waiting forever.
    pub permits: Arc<Semaphore>,
    pub next_stream_id: u64,
    /// Shared with [`crate::Store::write_with_raft_applied`], which writes on its caller's thread.
    pub floors: Arc<Mutex<Floors>>,
    /// Set by the writer (failed write) or the syncer (failed fsync); refuses later writes.
    pub poisoned: Arc<Mutex<Option<String>>>,
}

/// What building one group's write batch produced, to answer once the write is durable.
enum Pending {
    Unit(oneshot::Sender<Result<(), StoreError>>),
    StreamId(oneshot::Sender<Result<u64, StoreError>>, u64),
    /// A stream creation refused while building the batch; answered with the group.
    FailedCreate(oneshot::Sender<Result<u64, StoreError>>, StoreError),
}

/// A group appended to the write-ahead log, waiting for the fsync that makes it durable. It
/// keeps its requests' queue slots, so the queue bound covers groups that are being synced.
struct Written {
    pending: Vec<Pending>,
    writes: usize,
    _slots: Vec<Queued>,
}

impl Committer {
    pub fn run(mut self) {
        let mut scratch = BytesMut::with_capacity(4096);
        let mut group: Vec<Queued> = Vec::with_capacity(self.max_group.min(1024));
        let mut next_wal_sync = self.interval().map(|d| Instant::now() + d);
        let syncer = match self.policy {
            SyncPolicy::Always => self.start_syncer(),
            SyncPolicy::Interval(_) => None,
        };
        loop {
            let first = match next_wal_sync {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => self
                    .rx
                    .recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            let first = match first {
                Ok(q) => q,
                Err(RecvTimeoutError::Timeout) => {
                    self.sync_wal();
                    next_wal_sync = self.interval().map(|d| Instant::now() + d);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            group.push(first);
            while group.len() < self.max_group {
                match self.rx.try_recv() {
                    Ok(q) => group.push(q),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            // Nothing was left in the queue when the group was taken.
            let drained = group.len() < self.max_group;
            let shutdown = group
                .iter()
                .position(|q| matches!(q.request, Request::Shutdown));
            if let Some(at) = shutdown {
                group.truncate(at + 1);
            }
            let stage = match &syncer {
                Some(syncer) if !(drained && syncer.idle()) => Some(syncer),
                _ => None,
            };
            self.write_group(&mut group, &mut scratch, stage);
            if shutdown.is_some() {
                break;
            }
            if let Some(at) = next_wal_sync
                && Instant::now() >= at
            {
                self.sync_wal();
                next_wal_sync = self.interval().map(|d| Instant::now() + d);
            }
        }
        // Everything written so far is synced and answered before the store reports closed.
        if let Some(SyncStage { tx, handle, .. }) = syncer {
            drop(tx);
            if handle.join().is_err() {
                tracing::error!("store: the syncer thread panicked");
            }
        }
        if next_wal_sync.is_some() {
            self.sync_wal();
        }
        self.permits.close();
    }

    /// Starts the thread that fsyncs written groups and answers them (`SyncPolicy::Always`).
    /// Without it (the thread cannot be spawned) the writer syncs each group itself.
    fn start_syncer(&self) -> Option<SyncStage> {
        let (tx, rx) = mpsc::sync_channel(self.max_group);
        let in_hand = Arc::new(AtomicUsize::new(0));
        let syncer = Syncer {
            db: Arc::clone(&self.db),
            rx,
            counters: Arc::clone(&self.counters),
            poisoned: Arc::clone(&self.poisoned),
            in_hand: Arc::clone(&in_hand),
        };
        match std::thread::Builder::new()
            .name("natrix-store-sync".to_owned())
            .spawn(move || syncer.run())
        {
            Ok(handle) => Some(SyncStage {
                tx,
                handle,
                in_hand,
            }),
            Err(err) => {
                tracing::warn!(error = %err, "store: no syncer thread; each group syncs inline");
                None
            }
        }
    }

    fn interval(&self) -> Option<Duration> {
        match self.policy {
            SyncPolicy::Always => None,
            SyncPolicy::Interval(d) => Some(d),
        }
    }

    fn sync_wal(&mut self) {
        if self.poisoned.lock().is_some() {
            return;
        }
        match self.db.flush_wal(true) {
            Ok(()) => {
                self.counters.syncs.fetch_add(1, Ordering::Relaxed);
            }
            Err(source) => poison_after_failed_sync(&self.poisoned, &source),
        }
    }

    /// Writes every request of `group` in one batch. Under `SyncPolicy::Always` with a syncer
    /// (`stage`) the group goes to it to be fsynced and answered; otherwise it is answered here
    /// (after an fsync of the write-ahead log under `SyncPolicy::Always`).
    fn write_group(
        &mut self,
        group: &mut Vec<Queued>,
        scratch: &mut BytesMut,
        stage: Option<&SyncStage>,
    ) {
        let db = Arc::clone(&self.db);
        let poisoned = self.poisoned.lock().clone();
        let Some(cfs) = cfs(&db) else {
            // Store::open checked every CF exists and none is ever dropped.
            let reason = "a column family vanished".to_owned();
            *self.poisoned.lock() = Some(reason.clone());
            for q in group.drain(..) {
                fail(
                    q.request,
                    StoreError::Poisoned {
                        reason: reason.clone(),
                    },
                );
            }
            return;
        };
        let mut wb = WriteBatch::default();
        let mut pending = Vec::with_capacity(group.len());
        // Held until the group's floors are committed or rolled back.
        let floors = Arc::clone(&self.floors);
        let mut floors = floors.lock();
        let first_stream_id = self.next_stream_id;
        for q in group.iter_mut() {
            let request = std::mem::replace(&mut q.request, Request::Shutdown);
            if let Some(reason) = &poisoned {
                fail(
                    request,
                    StoreError::Poisoned {
                        reason: reason.clone(),
                    },
                );
                continue;
            }
            match request {
                Request::Stream {
                    batch,
                    raft_applied,
                    reply,
                } => {
                    batch::add_stream_batch(
                        &mut wb,
                        &cfs,
                        &mut floors,
                        scratch,
                        &batch,
                        raft_applied.as_ref(),
                    );
                    pending.push(Pending::Unit(reply));
                }
                Request::Consumers {
                    stream_id,
                    updates,
                    reply,
                } => {
                    batch::add_consumer_updates(&mut wb, &cfs, stream_id, &updates);
                    pending.push(Pending::Unit(reply));
                }
                Request::CreateStream { config, reply } => {
                    let id = self.next_stream_id;
                    match id.checked_add(1) {
                        Some(next) => {
                            self.next_stream_id = next;
                            wb.put_cf(cfs.meta, keys::config_key(id), &config);
                            wb.put_cf(cfs.meta, keys::NEXT_STREAM_ID_KEY, keys::encode_u64(next));
                            pending.push(Pending::StreamId(reply, id));
                        }
                        None => pending
                            .push(Pending::FailedCreate(reply, StoreError::StreamIdsExhausted)),
                    }
                }
                Request::PutStreamConfig {
                    stream_id,
                    config,
                    reply,
                } => {
                    wb.put_cf(cfs.meta, keys::config_key(stream_id), &config);
                    pending.push(Pending::Unit(reply));
                }
                Request::DeleteStream { stream_id, reply } => {
                    batch::add_stream_deletion(&mut wb, &cfs, &mut floors, stream_id);
                    pending.push(Pending::Unit(reply));
                }
                Request::AdoptStream {
                    replaced,
                    config,
                    batch,
                    raft_applied,
                    reply,
                } => {
                    batch::add_stream_deletion(&mut wb, &cfs, &mut floors, replaced);
                    wb.put_cf(cfs.meta, keys::config_key(batch.stream_id), &config);
                    batch::add_stream_batch(
                        &mut wb,
                        &cfs,
                        &mut floors,
                        scratch,
                        &batch,
                        Some(&raft_applied),
                    );
                    pending.push(Pending::Unit(reply));
                }
                Request::Shutdown => {}
            }
        }
        let writes = pending
            .iter()
            .filter(|p| !matches!(p, Pending::FailedCreate(..)))
            .count();
        let always = self.policy == SyncPolicy::Always;
        let result = if wb.is_empty() {
            Ok(())
        } else {
            // Never a synced write: RocksDB makes one visible to reads only after its fsync, and
            // the stream's in-memory state already counts it. The fsync follows the write, on the
            // syncer thread (overlapping the next group's write) or below.
            db.write_opt(wb, &WriteOptions::default())
        };
        match result {
            Ok(()) => {
                floors.commit();
                if writes > 0 {
                    self.counters.groups.fetch_add(1, Ordering::Relaxed);
                }
                let written = Written {
                    pending,
                    writes,
                    _slots: std::mem::take(group),
                };
                match stage {
                    Some(stage) if always && writes > 0 => {
                        stage.in_hand.fetch_add(1, Ordering::AcqRel);
                        if let Err(mpsc::SendError(written)) = stage.tx.send(written) {
                            // The syncer is gone (it panicked): nothing may be reported durable.
                            let reason = "the syncer thread stopped".to_owned();
                            *self.poisoned.lock() = Some(reason.clone());
                            answer(
                                &self.counters,
                                written,
                                Some(&|| StoreError::Poisoned {
                                    reason: reason.clone(),
                                }),
                            );
                        }
                    }
                    _ if always && writes > 0 => match db.flush_wal(true) {
                        Ok(()) => {
                            self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                            answer(&self.counters, written, None);
                        }
                        Err(source) => {
                            poison_after_failed_sync(&self.poisoned, &source);
                            self.counters.failed_groups.fetch_add(1, Ordering::Relaxed);
                            answer(
                                &self.counters,
                                written,
                                Some(&|| StoreError::SyncWal {
                                    source: source.clone(),
                                }),
                            );
                        }
                    },
                    _ => answer(&self.counters, written, None),
                }
            }
            Err(source) => {
                floors.rollback();
                self.next_stream_id = first_stream_id;
                self.counters.failed_groups.fetch_add(1, Ordering::Relaxed);
                let err = StoreError::Write {
                    requests: writes,
                    source: source.clone(),
                };
                tracing::error!(error = %err, "store: group write failed; refusing writes");
                *self.poisoned.lock() = Some(err.to_string());
                let written = Written {
                    pending,
                    writes,
                    _slots: std::mem::take(group),
                };
                answer(
                    &self.counters,
                    written,
                    Some(&|| StoreError::Write {
                        requests: writes,
                        source: source.clone(),
                    }),
                );
            }
        }
        // Queue slots are released only when a group is answered, so a caller never has more
        // than `queue_capacity` requests queued, being written or being synced.
        group.clear();
    }
}

/// The writer's end of the syncer thread.
struct SyncStage {
    tx: SyncSender<Written>,
    handle: std::thread::JoinHandle<()>,
    /// Groups sent to the syncer and not answered yet.
    in_hand: Arc<AtomicUsize>,
}

impl SyncStage {
    /// Whether every group sent to the syncer was answered: a group written with its own fsync
    /// now cannot be answered before an earlier one.
    fn idle(&self) -> bool {
        self.in_hand.load(Ordering::Acquire) == 0
    }
}

/// The second stage under `SyncPolicy::Always`: fsyncs the write-ahead log once for every group
/// written since the last fsync, then answers them.
struct Syncer {
    db: Arc<DB>,
    rx: Receiver<Written>,
    counters: Arc<Counters>,
    poisoned: Arc<Mutex<Option<String>>>,
    in_hand: Arc<AtomicUsize>,
}

impl Syncer {
    fn run(self) {
        let mut groups = Vec::new();
        // Once an fsync failed nothing written after it can be reported durable (the kernel may
        // have dropped the dirty pages), so every later group fails too.
        let mut failed: Option<rocksdb::Error> = None;
        while let Ok(first) = self.rx.recv() {
            groups.push(first);
            while let Ok(more) = self.rx.try_recv() {
                groups.push(more);
            }
            if failed.is_none() {
                match self.db.flush_wal(true) {
                    Ok(()) => {
                        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(source) => {
                        poison_after_failed_sync(&self.poisoned, &source);
                        self.counters
                            .failed_groups
                            .fetch_add(groups.len() as u64, Ordering::Relaxed);
                        failed = Some(source);
                    }
                }
            }
            for written in groups.drain(..) {
                match &failed {
                    None => answer(&self.counters, written, None),
                    Some(source) => answer(
                        &self.counters,
                        written,
                        Some(&|| StoreError::SyncWal {
                            source: source.clone(),
                        }),
                    ),
                }
                self.in_hand.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// Records a failed fsync of the write-ahead log: logged, and every later write refused (the
/// kernel may have dropped the dirty pages, so nothing written since can be reported durable).
fn poison_after_failed_sync(poisoned: &Mutex<Option<String>>, source: &rocksdb::Error) {
    let err = StoreError::SyncWal {
        source: source.clone(),
    };
    tracing::error!(error = %err, "store: write-ahead log sync failed; refusing writes");
    *poisoned.lock() = Some(err.to_string());
}

/// Answers every request of a written group: success, or the error `failure` makes.
fn answer(counters: &Counters, written: Written, failure: Option<&dyn Fn() -> StoreError>) {
    if failure.is_none() {
        counters
            .commits
            .fetch_add(written.writes as u64, Ordering::Relaxed);
    }
    for p in written.pending {
        match (p, failure) {
            (Pending::Unit(tx), None) => drop(tx.send(Ok(()))),
            (Pending::StreamId(tx, id), None) => drop(tx.send(Ok(id))),
            (Pending::Unit(tx), Some(err)) => drop(tx.send(Err(err()))),
            (Pending::StreamId(tx, _), Some(err)) => drop(tx.send(Err(err()))),
            (Pending::FailedCreate(tx, err), _) => drop(tx.send(Err(err))),
        }
    }
}

pub(crate) fn cfs(db: &DB) -> Option<Cfs<'_>> {
    Some(Cfs {
        msgs: db.cf_handle(keys::CF_MSGS)?,
        consumers: db.cf_handle(keys::CF_CONSUMERS)?,
        meta: db.cf_handle(keys::CF_META)?,
        subj_idx: db.cf_handle(keys::CF_SUBJ_IDX)?,
        raft_meta: db.cf_handle(keys::CF_RAFT_META)?,
    })
}

fn fail(request: Request, err: StoreError) {
    match request {
        Request::Stream { reply, .. }
        | Request::Consumers { reply, .. }
        | Request::PutStreamConfig { reply, .. }
        | Request::DeleteStream { reply, .. }
        | Request::AdoptStream { reply, .. } => drop(reply.send(Err(err))),
        Request::CreateStream { reply, .. } => drop(reply.send(Err(err))),
        Request::Shutdown => {}
    }
}
