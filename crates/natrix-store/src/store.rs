//! The store handle: opening RocksDB with the node's column families, the write API (which
//! queues requests for the committer thread) and the read API (which reads RocksDB directly).

use std::future::Future;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use bytes::{Bytes, BytesMut};
use natrix_stream::{StoredMsg, StoredMsgRef};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType,
    DBRawIteratorWithThreadMode, DBRecoveryMode, Options, ReadOptions, WriteBatch, WriteOptions,
};
use tokio::sync::{Semaphore, oneshot};

use crate::batch::{self, Floors};
use crate::committer::{self, Committer, Counters, Queued, Request};
use crate::disk::{self, DiskUsage};
use crate::verify;
use crate::wal_sync::WalSyncer;
use crate::{
    CommitStats, ConsumerUpdate, RaftApplied, StoreError, StoreOptions, StreamBatch, keys,
};

/// One node's store. Dropping it writes what is queued, stops the committer and closes RocksDB.
pub struct Store {
    pub(crate) db: Arc<DB>,
    path: PathBuf,
    queue: CommitQueue,
    counters: Arc<Counters>,
    committer: Option<JoinHandle<()>>,
    /// Deferred fsyncs of Raft log appends ([`crate::RaftLog::append_then_sync`]).
    pub(crate) wal_sync: WalSyncer,
    /// The committer's deletion floors and failure, shared with writes made on callers' threads
    /// ([`Store::write_with_raft_applied`]).
    floors: Arc<parking_lot::Mutex<Floors>>,
    poisoned: Arc<parking_lot::Mutex<Option<String>>>,
    /// This node's id once read or created; the lock also keeps two first calls from creating
    /// two different ids.
    node_id: parking_lot::Mutex<Option<u64>>,
    /// The checksum verification still running in the background
    /// ([`StoreOptions::verify_in_background`]), until [`Store::verified`] takes its result.
    verification:
        parking_lot::Mutex<Option<oneshot::Receiver<Result<verify::Verified, StoreError>>>>,
}

/// The sending side of the committer's queue; bounded by semaphore permits (a slot is held from
/// enqueue until the answer), so waiting for a slot is async backpressure, not a blocked thread.
#[derive(Clone)]
struct CommitQueue {
    tx: mpsc::Sender<Queued>,
    permits: Arc<Semaphore>,
}

impl CommitQueue {
    async fn submit<T>(
        self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        self.enqueue(make).await?.await
    }

    /// Waits for a queue slot, queues the request and returns the answer to wait for: once this
    /// resolves the request is in the committer's FIFO, ahead of anything queued later.
    async fn enqueue<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<CommitTicket<T>, StoreError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Queued {
                request: make(reply),
                _permit: Some(permit),
            })
            .map_err(|_| StoreError::Closed)?;
        Ok(CommitTicket { answer })
    }
}

/// A queued commit: resolves when the committer has written it (durably, per the
/// [`crate::SyncPolicy`]) or failed.
pub struct CommitTicket<T = ()> {
    answer: oneshot::Receiver<Result<T, StoreError>>,
}

impl<T> Future for CommitTicket<T> {
    type Output = Result<T, StoreError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.answer)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(StoreError::Closed)))
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, creating missing column families, and starts the
    /// committer thread.
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store, StoreError> {
        let path = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(|source| StoreError::CreateDir {
            path: path.clone(),
            source,
        })?;
        let cache = Cache::new_lru_cache(options.block_cache_bytes);
        let descriptors = keys::ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name, &options, &cache)));
        let db = DB::open_cf_descriptors(&db_options(&options), &path, descriptors)
            .map_err(|source| verify::open_failed(&path, source))?;
        for cf in keys::ALL_CFS {
            if db.cf_handle(cf).is_none() {
                return Err(StoreError::MissingColumnFamily { path, cf });
            }
        }
        let db = Arc::new(db);
        let verification = if options.verify_in_background {
            let (tx, rx) = oneshot::channel();
            let (db, path) = (Arc::clone(&db), path.clone());
            std::thread::Builder::new()
                .name("natrix-store-verify".to_owned())
                .spawn(move || drop(tx.send(verify::verify_store(&db, &path))))
                .map_err(StoreError::SpawnVerifier)?;
            Some(rx)
        } else {
            log_verified(&verify::verify_store(&db, &path)?, &path);
            None
        };
        let wal_sync = WalSyncer::start(&db).map_err(StoreError::SpawnWalSyncer)?;
        let next_stream_id = read_next_stream_id(&db)?;

        let capacity = options.queue_capacity.clamp(1, Semaphore::MAX_PERMITS);
        let permits = Arc::new(Semaphore::new(capacity));
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let floors = Arc::new(parking_lot::Mutex::new(Floors::default()));
        let poisoned = Arc::new(parking_lot::Mutex::new(None));
        let committer = Committer {
            db: Arc::clone(&db),
            rx,
            policy: options.sync,
            counters: Arc::clone(&counters),
            max_group: capacity,
            permits: Arc::clone(&permits),
            next_stream_id,
            floors: Arc::clone(&floors),
            poisoned: Arc::clone(&poisoned),
        };
        let handle = std::thread::Builder::new()
            .name("natrix-store-commit".to_owned())
            .spawn(move || committer.run())
            .map_err(StoreError::SpawnCommitter)?;
        Ok(Store {
            db,
            path,
            queue: CommitQueue { tx, permits },
            counters,
            committer: Some(handle),
            wal_sync,
            floors,
            poisoned,
            node_id: parking_lot::Mutex::new(None),
            verification: parking_lot::Mutex::new(verification),
        })
    }

    /// Waits for the checksum verification started by [`StoreOptions::verify_in_background`]:
    /// `Ok` once every block read back intact (at once if it ran inside `open`, or was already
    /// awaited), [`StoreError::Damaged`] if one did not. Nothing read from the store may be
    /// served before this returned `Ok`.
    pub async fn verified(&self) -> Result<(), StoreError> {
        let running = self.verification.lock().take();
        let Some(running) = running else {
            return Ok(());
        };
        let verified = running
            .await
            .map_err(|_| StoreError::VerificationLost(self.path.clone()))??;
        log_verified(&verified, &self.path);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This node's id: a random non-zero `u64` created on the first call ever and stored, fsynced,
    /// in `meta` under `"node_id"` (8 bytes, big-endian), so it is the same after every reopen of
    /// this directory. A stored value that is not a non-zero `u64` is `StoreError::Corrupt`.
    pub fn node_id(&self) -> Result<u64, StoreError> {
        let mut cached = self.node_id.lock();
        if let Some(id) = *cached {
            return Ok(id);
        }
        let cf = self.cf(keys::CF_META)?;
        let stored = self
            .db
            .get_pinned_cf(cf, keys::NODE_ID_KEY)
            .map_err(|source| StoreError::Read {
                what: "the node id".to_owned(),
                source,
            })?;
        let id = match stored {
            Some(value) => match keys::decode_u64(&value) {
                Some(id) if id != 0 => id,
                _ => {
                    return Err(corrupt(
                        keys::CF_META,
                        keys::NODE_ID_KEY,
                        "the node id is not a non-zero u64",
                    ));
                }
            },
            None => {
                let id = random_node_id();
                // Written directly, not through the committer: it happens once, at start-up, and
                // must be on disk before anyone learns the id.
                let mut opts = WriteOptions::default();
                opts.set_sync(true);
                self.db
                    .put_cf_opt(cf, keys::NODE_ID_KEY, keys::encode_u64(id), &opts)
                    .map_err(|source| StoreError::WriteMeta {
                        what: "the node id",
                        source,
                    })?;
                tracing::info!(node_id = id, path = %self.path.display(), "store: created the node id");
                id
            }
        };
        *cached = Some(id);
        Ok(id)
    }

    /// Writes one stream command's effects (messages, consumer updates, applied position) in one
    /// atomic batch. Resolves once the batch is durable per the [`crate::SyncPolicy`]; an error
    /// means the batch may or may not be on disk, and the store refuses later writes.
    pub fn commit(
        &self,
        batch: StreamBatch,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.queue.clone().submit(move |reply| Request::Stream {
            batch,
            raft_applied: None,
            reply,
        })
    }

    /// Like [`Store::commit`], and stores a Raft group's applied state in the same atomic batch
    /// (`raft_meta` `group_id · 0x06`): a Raft state machine that keeps its effects here reports
    /// exactly the applied position its stored effects reflect after any crash.
    pub fn commit_with_raft_applied(
        &self,
        batch: StreamBatch,
        raft_applied: RaftApplied,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.queue.clone().submit(move |reply| Request::Stream {
            batch,
            raft_applied: Some(raft_applied),
            reply,
        })
    }

    /// Writes `batch` with its group's Raft applied state at once, on the calling thread, without
    /// waiting for an fsync: for a Raft state machine whose log already holds what the batch
    /// applies (the write takes tens of microseconds, as a Raft log append does; two thread
    /// hand-offs through the committer cost more). The batch becomes durable with the next
    /// synced write (RocksDB has one write-ahead log, synced in order: every Raft log append,
    /// truncation and purge is synced); if the node dies before that, it restarts from the older
    /// applied state it finds and the Raft log replays the rest. The batch is still atomic. A
    /// failed write refuses every later write, as a failed group of the committer does.
    pub fn write_with_raft_applied(
        &self,
        batch: StreamBatch,
        raft_applied: RaftApplied,
    ) -> Result<(), StoreError> {
        self.refuse_if_poisoned()?;
        let cfs = committer::cfs(&self.db).ok_or(StoreError::Closed)?;
        let mut wb = WriteBatch::default();
        let mut scratch = BytesMut::new();
        let mut floors = self.floors.lock();
        batch::add_stream_batch(
            &mut wb,
            &cfs,
            &mut floors,
            &mut scratch,
            &batch,
            Some(&raft_applied),
        );
        match self.write_direct(wb, "state machine write") {
            Ok(()) => {
                floors.commit();
                self.counters.note_direct_write();
                Ok(())
            }
            Err(err) => {
                floors.rollback();
                Err(err)
            }
        }
    }

    fn refuse_if_poisoned(&self) -> Result<(), StoreError> {
        match self.poisoned.lock().clone() {
            Some(reason) => Err(StoreError::Poisoned { reason }),
            None => Ok(()),
        }
    }

    /// Writes `wb` on the calling thread without an fsync. A failed write refuses every later
    /// write of the store (as a failed group of the committer does).
    fn write_direct(&self, wb: WriteBatch, what: &str) -> Result<(), StoreError> {
        self.db
            .write_opt(wb, &WriteOptions::default())
            .map_err(|source| {
                let err = StoreError::Write {
                    requests: 1,
                    source,
                };
                tracing::error!(error = %err, "store: {what} failed; refusing writes");
                *self.poisoned.lock() = Some(err.to_string());
                err
            })
    }

    /// Queues one stream command's effects like [`Store::commit`], returning once it is queued:
    /// commits queued one after another are written in that order, so a caller can keep
    /// applying commands while earlier ones are being fsynced (and share their fsync).
    pub async fn enqueue_commit(&self, batch: StreamBatch) -> Result<CommitTicket, StoreError> {
        self.queue
            .enqueue(move |reply| Request::Stream {
                batch,
                raft_applied: None,
                reply,
            })
            .await
    }

    /// Like [`Store::enqueue_commit`] for [`Store::commit_with_raft_applied`].
    pub async fn enqueue_commit_with_raft_applied(
        &self,
        batch: StreamBatch,
        raft_applied: RaftApplied,
    ) -> Result<CommitTicket, StoreError> {
        self.queue
            .enqueue(move |reply| Request::Stream {
                batch,
                raft_applied: Some(raft_applied),
                reply,
            })
            .await
    }

    /// Like [`Store::enqueue_commit`] for [`Store::update_consumers`].
    pub async fn enqueue_consumer_updates(
        &self,
        stream_id: u64,
        updates: Vec<ConsumerUpdate>,
    ) -> Result<CommitTicket, StoreError> {
        self.queue
            .enqueue(move |reply| Request::Consumers {
                stream_id,
                updates,
                reply,
            })
            .await
    }

    /// Writes consumer state changes of one stream atomically, without moving its applied
    /// position (acks, delivery progress).
    pub fn update_consumers(
        &self,
        stream_id: u64,
        updates: Vec<ConsumerUpdate>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.queue.clone().submit(move |reply| Request::Consumers {
            stream_id,
            updates,
            reply,
        })
    }

    pub fn delete_consumer(
        &self,
        stream_id: u64,
        name: impl Into<String>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let updates = vec![ConsumerUpdate::Delete { name: name.into() }];
        self.update_consumers(stream_id, updates)
    }

    /// Allocates a new stream id (never reused, starting at 1) and stores its config with it.
    pub fn create_stream(
        &self,
        config: Bytes,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send + 'static {
        self.queue
            .clone()
            .submit(move |reply| Request::CreateStream { config, reply })
    }

    /// Replaces a stream's config (stream update).
    pub fn put_stream_config(
        &self,
        stream_id: u64,
        config: Bytes,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.queue
            .clone()
            .submit(move |reply| Request::PutStreamConfig {
                stream_id,
                config,
                reply,
            })
    }

    /// Stream `batch.stream_id`, whose messages were written beforehand
    /// ([`Store::write_staged_msgs`]), takes the place of stream `replaced` in one atomic batch:
    /// every key of `replaced` is removed, `config` is stored as the new stream's config and
    /// `batch` (its applied and sequence positions, consumers) is written with the Raft group's
    /// applied state. Until this batch, the stream `replaced` is whole; after it, the new one.
    pub fn adopt_stream(
        &self,
        replaced: u64,
        config: Bytes,
        batch: StreamBatch,
        raft_applied: RaftApplied,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.queue
            .clone()
            .submit(move |reply| Request::AdoptStream {
                replaced,
                config,
                batch,
                raft_applied,
                reply,
            })
    }

    /// Writes messages (seq, encoded [`natrix_stream::StoredMsg`]) of a stream being received,
    /// on the calling thread, without an fsync: the write that adopts the stream
    /// ([`Store::adopt_stream`]) makes them durable (RocksDB has one write-ahead log, synced in
    /// order). A failed write refuses every later write.
    pub fn write_staged_msgs(
        &self,
        stream_id: u64,
        msgs: &[(u64, Bytes)],
    ) -> Result<(), StoreError> {
        self.refuse_if_poisoned()?;
        let cfs = committer::cfs(&self.db).ok_or(StoreError::Closed)?;
        let mut wb = WriteBatch::default();
        for (seq, msg) in msgs {
            wb.put_cf(cfs.msgs, keys::msg_key(stream_id, *seq), msg);
        }
        self.write_direct(wb, "staged write")
    }

    /// Removes every key of a stream (messages, consumers, applied position, config) in one
    /// atomic batch.
    pub fn delete_stream(
        &self,
        stream_id: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.queue
            .clone()
            .submit(move |reply| Request::DeleteStream { stream_id, reply })
    }

    pub fn get_msg(&self, stream_id: u64, seq: u64) -> Result<Option<StoredMsg>, StoreError> {
        let key = keys::msg_key(stream_id, seq);
        let value = self
            .db
            .get_pinned_cf(self.cf(keys::CF_MSGS)?, key)
            .map_err(|source| StoreError::Read {
                what: format!("message {seq} of stream {stream_id}"),
                source,
            })?;
        value.map(|v| decode_msg(&key, &v)).transpose()
    }

    /// The messages of `stream_id` with `seq >= from_seq`, in sequence order. Never yields
    /// another stream's messages. Ends after the first error.
    pub fn scan_msgs(&self, stream_id: u64, from_seq: u64) -> Result<MsgScan<'_>, StoreError> {
        let iter = self.stream_iter(keys::CF_MSGS, stream_id)?;
        Ok(MsgScan {
            raw: RawScan::new(iter, stream_id, from_seq),
        })
    }

    /// Folds every message of stream `stream_id`, in sequence order, as the store holds them
    /// when `pinned` is called: the read is fixed first (a RocksDB snapshot), then `pinned` runs
    /// and returns the initial accumulator, then each message is folded into it with `f`; writes
    /// after `pinned` (of any stream) do not show. `pinned` returning `None` (the caller gave
    /// up) ends the fold without reading anything; `f` returning `Break` ends it after that
    /// message. Blocks for as long as the read takes: call it on a blocking thread. A stream
    /// replica uses it to read the messages of a snapshot for a follower while it goes on
    /// applying entries.
    pub fn fold_msgs_pinned<A>(
        &self,
        stream_id: u64,
        pinned: impl FnOnce() -> Option<A>,
        mut f: impl FnMut(&mut A, StoredMsg) -> ControlFlow<()>,
    ) -> Result<Option<A>, StoreError> {
        let cf = self.cf(keys::CF_MSGS)?;
        let snapshot = self.db.snapshot();
        let Some(mut acc) = pinned() else {
            return Ok(None);
        };
        let (lower, upper) = keys::stream_range(stream_id);
        let iter = snapshot.raw_iterator_cf_opt(cf, bounded_read_options(lower, upper));
        let scan = MsgScan {
            raw: RawScan::new(iter, stream_id, 0),
        };
        for m in scan {
            if f(&mut acc, m?).is_break() {
                break;
            }
        }
        Ok(Some(acc))
    }

    /// Like [`Store::scan_msgs`], decoding each record in place and handing it to `f` without
    /// copying its payload (recovery reads only subjects, headers and sizes).
    pub fn scan_msg_refs<T, F>(
        &self,
        stream_id: u64,
        from_seq: u64,
        f: F,
    ) -> Result<MsgRefScan<'_, F>, StoreError>
    where
        F: FnMut(StoredMsgRef<'_>) -> T,
    {
        let iter = self.stream_iter(keys::CF_MSGS, stream_id)?;
        Ok(MsgRefScan {
            raw: RawScan::new(iter, stream_id, from_seq),
            f,
        })
    }

    /// The message of `stream_id` with the highest sequence `<= seq`, if any (`u64::MAX` gives
    /// the stream's last message).
    pub fn last_msg_at_or_before(
        &self,
        stream_id: u64,
        seq: u64,
    ) -> Result<Option<StoredMsg>, StoreError> {
        let mut iter = self.stream_iter(keys::CF_MSGS, stream_id)?;
        iter.seek_for_prev(keys::msg_key(stream_id, seq));
        match iter.item() {
            Some((key, value)) => decode_msg(key, value).map(Some),
            None => iter
                .status()
                .map(|()| None)
                .map_err(|source| StoreError::Read {
                    what: format!("last message at or before {seq} of stream {stream_id}"),
                    source,
                }),
        }
    }

    /// The stream's applied position (the `applied` of its last committed batch), if any.
    pub fn applied(&self, stream_id: u64) -> Result<Option<u64>, StoreError> {
        let key = keys::applied_key(stream_id);
        let value = self.get_meta(&key, || format!("applied position of stream {stream_id}"))?;
        value
            .map(|v| keys::decode_u64(&v).ok_or_else(|| corrupt(keys::CF_META, &key, "not a u64")))
            .transpose()
    }

    /// The stream's position as its last committed batch carrying one recorded it.
    pub fn stream_position(&self, stream_id: u64) -> Result<Option<Bytes>, StoreError> {
        self.get_meta(&keys::position_key(stream_id), || {
            format!("position of stream {stream_id}")
        })
    }

    pub fn stream_config(&self, stream_id: u64) -> Result<Option<Bytes>, StoreError> {
        self.get_meta(&keys::config_key(stream_id), || {
            format!("config of stream {stream_id}")
        })
    }

    /// Every stored stream config, by stream id.
    pub fn stream_configs(&self) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let (lower, upper) = keys::prefix_range(keys::CONFIG_PREFIX);
        let mut iter = self.bounded_iter(keys::CF_META, lower, upper)?;
        iter.seek_to_first();
        let mut out = Vec::new();
        while let Some((key, value)) = iter.item() {
            let id = keys::decode_config_key(key)
                .ok_or_else(|| corrupt(keys::CF_META, key, "stream config key without an id"))?;
            out.push((id, Bytes::copy_from_slice(value)));
            iter.next();
        }
        iter.status().map_err(|source| StoreError::Read {
            what: "stream configs".to_owned(),
            source,
        })?;
        Ok(out)
    }

    pub fn consumer_state(&self, stream_id: u64, name: &str) -> Result<Option<Bytes>, StoreError> {
        let value = self
            .db
            .get_pinned_cf(
                self.cf(keys::CF_CONSUMERS)?,
                keys::consumer_key(stream_id, name),
            )
            .map_err(|source| StoreError::Read {
                what: format!("consumer {name:?} of stream {stream_id}"),
                source,
            })?;
        Ok(value.map(|v| Bytes::copy_from_slice(&v)))
    }

    /// Every consumer of `stream_id` with its state, ordered by name bytes.
    pub fn consumers(&self, stream_id: u64) -> Result<Vec<(String, Bytes)>, StoreError> {
        let mut iter = self.stream_iter(keys::CF_CONSUMERS, stream_id)?;
        iter.seek_to_first();
        let mut out = Vec::new();
        while let Some((key, value)) = iter.item() {
            let name = key
                .get(8..)
                .and_then(|n| std::str::from_utf8(n).ok())
                .ok_or_else(|| corrupt(keys::CF_CONSUMERS, key, "consumer name is not UTF-8"))?;
            out.push((name.to_owned(), Bytes::copy_from_slice(value)));
            iter.next();
        }
        iter.status().map_err(|source| StoreError::Read {
            what: format!("consumers of stream {stream_id}"),
            source,
        })?;
        Ok(out)
    }

    /// Counters of the committer (commits, write groups, fsyncs).
    pub fn stats(&self) -> CommitStats {
        self.counters.snapshot()
    }

    /// `(available, total)` bytes of the file system holding the store (cheap: one statvfs).
    pub fn fs_space(&self) -> Result<(u64, u64), StoreError> {
        disk::fs_space(&self.path).map_err(|source| StoreError::DiskUsage {
            path: self.path.clone(),
            source,
        })
    }

    /// The store's disk use and its file system's free space.
    pub fn disk_usage(&self) -> Result<DiskUsage, StoreError> {
        let mut usage = DiskUsage::default();
        for name in keys::ALL_CFS {
            let cf = self.cf(name)?;
            usage.sst_bytes += self.int_property(cf, name, "rocksdb.live-sst-files-size")?;
            usage.memtable_bytes +=
                self.int_property(cf, name, "rocksdb.cur-size-all-mem-tables")?;
        }
        let io_err = |source| StoreError::DiskUsage {
            path: self.path.clone(),
            source,
        };
        usage.dir_bytes = disk::dir_bytes(&self.path).map_err(io_err)?;
        let (available, total) = disk::fs_space(&self.path).map_err(io_err)?;
        usage.fs_available_bytes = available;
        usage.fs_total_bytes = total;
        Ok(usage)
    }

    fn int_property(
        &self,
        cf: &ColumnFamily,
        cf_name: &'static str,
        property: &'static str,
    ) -> Result<u64, StoreError> {
        self.db
            .property_int_value_cf(cf, property)
            .map(|v| v.unwrap_or(0))
            .map_err(|source| StoreError::Property {
                cf: cf_name,
                property,
                source,
            })
    }

    fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::MissingColumnFamily {
                path: self.path.clone(),
                cf: name,
            })
    }

    fn get_meta(
        &self,
        key: &[u8],
        what: impl FnOnce() -> String,
    ) -> Result<Option<Bytes>, StoreError> {
        let value = self
            .db
            .get_pinned_cf(self.cf(keys::CF_META)?, key)
            .map_err(|source| StoreError::Read {
                what: what(),
                source,
            })?;
        Ok(value.map(|v| Bytes::copy_from_slice(&v)))
    }

    /// A raw iterator over one stream's keys in a CF keyed by stream id first.
    fn stream_iter(
        &self,
        cf: &'static str,
        stream_id: u64,
    ) -> Result<DBRawIteratorWithThreadMode<'_, DB>, StoreError> {
        let (lower, upper) = keys::stream_range(stream_id);
        self.bounded_iter(cf, lower, upper)
    }

    fn bounded_iter(
        &self,
        cf: &'static str,
        lower: Vec<u8>,
        upper: Vec<u8>,
    ) -> Result<DBRawIteratorWithThreadMode<'_, DB>, StoreError> {
        Ok(self
            .db
            .raw_iterator_cf_opt(self.cf(cf)?, bounded_read_options(lower, upper)))
    }
}

/// Read options that keep an iterator within `[lower, upper)`.
fn bounded_read_options(lower: Vec<u8>, upper: Vec<u8>) -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.set_iterate_lower_bound(lower);
    opts.set_iterate_upper_bound(upper);
    opts
}

impl Drop for Store {
    fn drop(&mut self) {
        // The queue is unbounded underneath the permits, so this never blocks; the committer
        // writes everything queued before it, then exits.
        let _ = self.queue.tx.send(Queued {
            request: Request::Shutdown,
            _permit: None,
        });
        if let Some(handle) = self.committer.take()
            && handle.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "store: the committer thread panicked");
        }
    }
}

/// The cursor both message scans share: one stream's `msgs` entries in key order, ending after
/// the first error (a failed read, or a record the caller's decoder refuses).
struct RawScan<'a> {
    iter: DBRawIteratorWithThreadMode<'a, DB>,
    stream_id: u64,
    started: bool,
    done: bool,
}

impl<'a> RawScan<'a> {
    /// A scan of stream `stream_id`'s keys from sequence `from_seq` on, with `iter` bounded to
    /// that stream.
    fn new(
        mut iter: DBRawIteratorWithThreadMode<'a, DB>,
        stream_id: u64,
        from_seq: u64,
    ) -> RawScan<'a> {
        iter.seek(keys::msg_key(stream_id, from_seq));
        RawScan {
            iter,
            stream_id,
            started: false,
            done: false,
        }
    }

    /// Decodes the next entry with `decode`.
    fn next_with<T>(
        &mut self,
        decode: impl FnOnce(&[u8], &[u8]) -> Result<T, StoreError>,
    ) -> Option<Result<T, StoreError>> {
        if self.done {
            return None;
        }
        if self.started {
            self.iter.next();
        }
        self.started = true;
        let Some((key, value)) = self.iter.item() else {
            self.done = true;
            let stream_id = self.stream_id;
            return self.iter.status().err().map(|source| {
                Err(StoreError::Read {
                    what: format!("messages of stream {stream_id}"),
                    source,
                })
            });
        };
        let item = decode(key, value);
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

/// Iterator over one stream's records decoded in place, from [`Store::scan_msg_refs`].
pub struct MsgRefScan<'a, F> {
    raw: RawScan<'a>,
    f: F,
}

impl<T, F> Iterator for MsgRefScan<'_, F>
where
    F: FnMut(StoredMsgRef<'_>) -> T,
{
    type Item = Result<T, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let f = &mut self.f;
        self.raw.next_with(|key, value| {
            let seq = key_seq(key)?;
            let r = StoredMsg::decode_ref(value)
                .map_err(|e| corrupt(keys::CF_MSGS, key, &e.to_string()))?;
            check_seq(key, seq, r.seq)?;
            Ok(f(r))
        })
    }
}

/// Iterator over one stream's messages, from [`Store::scan_msgs`].
pub struct MsgScan<'a> {
    raw: RawScan<'a>,
}

impl Iterator for MsgScan<'_> {
    type Item = Result<StoredMsg, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.raw.next_with(decode_msg)
    }
}

/// The sequence a `msgs` key names.
fn key_seq(key: &[u8]) -> Result<u64, StoreError> {
    keys::decode_msg_key(key)
        .map(|(_, seq)| seq)
        .ok_or_else(|| corrupt(keys::CF_MSGS, key, "key is not 16 bytes"))
}

/// A record must hold the sequence its key names.
fn check_seq(key: &[u8], key_seq: u64, record_seq: u64) -> Result<(), StoreError> {
    if record_seq == key_seq {
        return Ok(());
    }
    Err(corrupt(
        keys::CF_MSGS,
        key,
        &format!("record holds sequence {record_seq}"),
    ))
}

fn decode_msg(key: &[u8], value: &[u8]) -> Result<StoredMsg, StoreError> {
    let seq = key_seq(key)?;
    let msg = StoredMsg::decode(Bytes::copy_from_slice(value))
        .map_err(|e| corrupt(keys::CF_MSGS, key, &e.to_string()))?;
    check_seq(key, seq, msg.seq)?;
    Ok(msg)
}

fn corrupt(cf: &'static str, key: &[u8], reason: &str) -> StoreError {
    StoreError::Corrupt {
        cf,
        key: keys::hex(key),
        reason: reason.to_owned(),
    }
}

/// A random non-zero `u64`. `RandomState`'s keys come from the operating system's random source
/// (once per thread, then incremented); the clock and the process id are hashed in as well.
fn random_node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(now);
    hasher.write_u32(std::process::id());
    match hasher.finish() {
        0 => 1,
        id => id,
    }
}

fn read_next_stream_id(db: &DB) -> Result<u64, StoreError> {
    let cf = db
        .cf_handle(keys::CF_META)
        .ok_or_else(|| StoreError::MissingColumnFamily {
            path: PathBuf::from(db.path()),
            cf: keys::CF_META,
        })?;
    let value = db
        .get_pinned_cf(cf, keys::NEXT_STREAM_ID_KEY)
        .map_err(|source| StoreError::Read {
            what: "stream id allocator".to_owned(),
            source,
        })?;
    match value {
        None => Ok(1),
        Some(v) => keys::decode_u64(&v)
            .ok_or_else(|| corrupt(keys::CF_META, keys::NEXT_STREAM_ID_KEY, "not a u64")),
    }
}

fn db_options(options: &StoreOptions) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // Every write reaches the WAL file at once; `sync` then makes it durable. Manual flushing
    // would leave acknowledged-looking writes in a user-space buffer.
    opts.set_manual_wal_flush(false);
    // Replay the whole WAL, tolerating only an incomplete last record (a crash mid-write of
    // something not yet synced, so never acknowledged). A damaged record before the tail refuses
    // the open: point-in-time recovery would silently drop every synced record after it, i.e.
    // roll back Raft log entries and votes this node already acknowledged.
    opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
    opts.set_max_total_wal_size(options.max_total_wal_bytes);
    // Two cores: one flush and one compaction at a time.
    opts.set_max_background_jobs(2);
    // Write SSTs out in 1 MiB steps instead of one burst at the end (smooths fsync latency).
    opts.set_bytes_per_sync(1 << 20);
    opts.set_keep_log_file_num(4);
    opts.set_max_log_file_size(8 << 20);
    opts
}

fn cf_options(name: &str, options: &StoreOptions, cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    let mut opts = Options::default();
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_level_compaction_dynamic_level_bytes(true);
    if name == keys::CF_MSGS || name == keys::CF_RAFT_LOG {
        // Written once in sequence order, read back by point lookups and forward scans, deleted
        // in prefixes: large memtables, bloom filters for lookups of deleted sequences.
        table.set_bloom_filter(10.0, false);
        opts.set_write_buffer_size(options.msgs_write_buffer_bytes);
        opts.set_max_write_buffer_number(3);
    } else {
        opts.set_write_buffer_size(options.small_write_buffer_bytes);
    }
    opts.set_block_based_table_factory(&table);
    opts
}

fn log_verified(verified: &verify::Verified, path: &Path) {
    tracing::info!(
        keys = verified.keys,
        took_ms = verified.took.as_millis() as u64,
        path = %path.display(),
        "store: every block checksum verified"
    );
}
