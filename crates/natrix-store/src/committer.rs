//! Group commit: one thread owns every write. It takes all requests queued so far, builds ONE
//! RocksDB write batch, writes it with `sync = true` (one fdatasync of the write-ahead log) and
//! only then answers every waiter. N concurrent writers therefore share one fsync, and no waiter
//! hears "ok" for bytes that are not on disk. A failed write fails every waiter of its group and
//! poisons the store: later writes are refused until a restart recovers from disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rocksdb::{DB, WriteBatch, WriteOptions};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::batch::{self, Cfs, ConsumerUpdate, Floors, StreamBatch};
use crate::{StoreError, SyncPolicy, keys};

/// One write a caller waits for.
pub(crate) enum Request {
    Stream {
        batch: StreamBatch,
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
    /// fsyncs of the write-ahead log: one per group under `SyncPolicy::Always`, one per interval
    /// under `SyncPolicy::Interval`.
    pub syncs: u64,
    /// Groups whose write failed (each fails all its requests).
    pub failed_groups: u64,
}

impl Counters {
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
    pub floors: Floors,
    pub poisoned: Option<String>,
}

/// What building one group's write batch produced, to answer once the write is done.
enum Pending {
    Unit(oneshot::Sender<Result<(), StoreError>>),
    StreamId(oneshot::Sender<Result<u64, StoreError>>, u64),
    /// A stream creation refused while building the batch; answered with the group.
    FailedCreate(oneshot::Sender<Result<u64, StoreError>>, StoreError),
}

impl Committer {
    pub fn run(mut self) {
        let mut scratch = BytesMut::with_capacity(4096);
        let mut group: Vec<Queued> = Vec::with_capacity(self.max_group.min(1024));
        let mut next_wal_sync = self.interval().map(|d| Instant::now() + d);
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
            let shutdown = group
                .iter()
                .position(|q| matches!(q.request, Request::Shutdown));
            if let Some(at) = shutdown {
                group.truncate(at + 1);
            }
            self.write_group(&mut group, &mut scratch);
            group.clear();
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
        if next_wal_sync.is_some() {
            self.sync_wal();
        }
        self.permits.close();
    }

    fn interval(&self) -> Option<Duration> {
        match self.policy {
            SyncPolicy::Always => None,
            SyncPolicy::Interval(d) => Some(d),
        }
    }

    fn sync_wal(&mut self) {
        if self.poisoned.is_some() {
            return;
        }
        match self.db.flush_wal(true) {
            Ok(()) => {
                self.counters.syncs.fetch_add(1, Ordering::Relaxed);
            }
            Err(source) => {
                let err = StoreError::SyncWal { source };
                tracing::error!(error = %err, "store: write-ahead log sync failed; refusing writes");
                self.poisoned = Some(err.to_string());
            }
        }
    }

    /// Writes every request of `group` in one batch and answers them all.
    fn write_group(&mut self, group: &mut Vec<Queued>, scratch: &mut BytesMut) {
        let db = Arc::clone(&self.db);
        let Some(cfs) = cfs(&db) else {
            // Store::open checked every CF exists and none is ever dropped.
            self.poisoned = Some("a column family vanished".to_owned());
            for q in group.drain(..) {
                fail(q.request, self.poisoned_error());
            }
            return;
        };
        let mut wb = WriteBatch::default();
        let mut pending = Vec::with_capacity(group.len());
        let first_stream_id = self.next_stream_id;
        let poisoned = self.poisoned.clone();
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
                Request::Stream { batch, reply } => {
                    batch::add_stream_batch(&mut wb, &cfs, &mut self.floors, scratch, &batch);
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
                    batch::add_stream_deletion(&mut wb, &cfs, &mut self.floors, stream_id);
                    pending.push(Pending::Unit(reply));
                }
                Request::Shutdown => {}
            }
        }
        let writes = pending
            .iter()
            .filter(|p| !matches!(p, Pending::FailedCreate(..)))
            .count();
        let result = if wb.is_empty() {
            Ok(())
        } else {
            let mut opts = WriteOptions::default();
            opts.set_sync(self.policy == SyncPolicy::Always);
            db.write_opt(wb, &opts)
        };
        match result {
            Ok(()) => {
                self.floors.commit();
                if writes > 0 {
                    self.counters.groups.fetch_add(1, Ordering::Relaxed);
                    if self.policy == SyncPolicy::Always {
                        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.counters
                    .commits
                    .fetch_add(writes as u64, Ordering::Relaxed);
                for p in pending {
                    match p {
                        Pending::Unit(tx) => drop(tx.send(Ok(()))),
                        Pending::StreamId(tx, id) => drop(tx.send(Ok(id))),
                        Pending::FailedCreate(tx, err) => drop(tx.send(Err(err))),
                    }
                }
            }
            Err(source) => {
                self.floors.rollback();
                self.next_stream_id = first_stream_id;
                self.counters.failed_groups.fetch_add(1, Ordering::Relaxed);
                let err = StoreError::Write {
                    requests: writes,
                    source: source.clone(),
                };
                tracing::error!(error = %err, "store: group write failed; refusing writes");
                self.poisoned = Some(err.to_string());
                for p in pending {
                    match p {
                        Pending::Unit(tx) => drop(tx.send(Err(StoreError::Write {
                            requests: writes,
                            source: source.clone(),
                        }))),
                        Pending::StreamId(tx, _) => drop(tx.send(Err(StoreError::Write {
                            requests: writes,
                            source: source.clone(),
                        }))),
                        Pending::FailedCreate(tx, err) => drop(tx.send(Err(err))),
                    }
                }
            }
        }
        // Queue slots are released only now, so a caller never has more than `queue_capacity`
        // requests queued or in flight.
        group.clear();
    }

    fn poisoned_error(&self) -> StoreError {
        StoreError::Poisoned {
            reason: self.poisoned.clone().unwrap_or_default(),
        }
    }
}

fn cfs(db: &DB) -> Option<Cfs<'_>> {
    Some(Cfs {
        msgs: db.cf_handle(keys::CF_MSGS)?,
        consumers: db.cf_handle(keys::CF_CONSUMERS)?,
        meta: db.cf_handle(keys::CF_META)?,
        subj_idx: db.cf_handle(keys::CF_SUBJ_IDX)?,
    })
}

fn fail(request: Request, err: StoreError) {
    match request {
        Request::Stream { reply, .. }
        | Request::Consumers { reply, .. }
        | Request::PutStreamConfig { reply, .. }
        | Request::DeleteStream { reply, .. } => drop(reply.send(Err(err))),
        Request::CreateStream { reply, .. } => drop(reply.send(Err(err))),
        Request::Shutdown => {}
    }
}
