//! openraft's log storage ([`RaftLogStorage`] + [`RaftLogReader`]) over one group's [`RaftLog`]
//! in the node's RocksDB. An append is written at once and reported to openraft as flushed only
//! after the store's WAL syncer fsynced it ([`RaftLog::append_then_sync`]): openraft replicates
//! entries as soon as they are readable, so a leader's own fsync overlaps the round trip to its
//! followers, and commits count this node only once its copy is durable. Votes, truncations and
//! purges run on a blocking thread and return once fsynced.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use bytes::Bytes;
use natrix_store::{RaftLog, RaftLogError};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use parking_lot::Mutex;

use crate::codec::{self, CodecError};
use crate::recent::RecentEntries;
use crate::types::{Entry, LogId, TypeConfig, Vote};

/// At most this many of a group's last entries, and this many bytes of them, are also kept in
/// memory for openraft's readers: enough for the entries between an append and its apply under
/// load, small enough for a node hosting many groups (at most 1 MiB each, when their last
/// entries are that large).
const RECENT_ENTRIES: usize = 1024;
const RECENT_BYTES: usize = 1 << 20;

/// One group's Raft log and vote. Clones share the same RocksDB keys and the same cache of
/// recent entries; openraft uses clones as the readers of its replication tasks and of its
/// state machine worker.
#[derive(Clone)]
pub struct LogStore {
    log: RaftLog,
    recent: Arc<Mutex<RecentEntries>>,
    /// Whether openraft's committed log id is stored (see `StateMachine::stores_applied`).
    save_committed: bool,
}

impl LogStore {
    pub fn new(log: RaftLog) -> LogStore {
        LogStore {
            log,
            recent: Arc::new(Mutex::new(RecentEntries::new(RECENT_ENTRIES, RECENT_BYTES))),
            save_committed: true,
        }
    }

    /// A log store that does not store the committed log id, for a group whose state machine
    /// stores its own applied position. What an earlier run stored is still read at start
    /// (openraft re-applies up to it if the machine's position is older, which is safe: it was
    /// committed).
    pub fn without_committed(mut self) -> LogStore {
        self.save_committed = false;
        self
    }

    pub fn group_id(&self) -> u64 {
        self.log.group_id()
    }

    /// Runs a synced RocksDB write on the blocking pool so that an fsync never stalls the
    /// runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RaftLog) -> Result<T, RaftLogError> + Send + 'static,
    ) -> Result<T, io::Error> {
        let log = self.log.clone();
        match tokio::task::spawn_blocking(move || f(&log)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(io::Error::other(e)),
            Err(join) => Err(io::Error::other(join)),
        }
    }
}

fn corrupt(e: CodecError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn decode_entry(bytes: Bytes) -> Result<Entry, io::Error> {
    codec::decode_entry(bytes).map_err(corrupt)
}

fn decode_log_id(bytes: &[u8]) -> Result<LogId, io::Error> {
    codec::decode_log_id(bytes).map_err(corrupt)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n.saturating_add(1),
            Bound::Excluded(&n) => n,
            Bound::Unbounded => u64::MAX,
        };
        if let Some(entries) = self.recent.lock().get(start, end) {
            return Ok(entries);
        }
        // Reads mostly hit the memtable or the block cache; they run inline.
        let raw = self
            .log
            .entries(start, end, usize::MAX)
            .map_err(io::Error::other)?;
        raw.into_iter()
            .map(|(_, bytes)| decode_entry(bytes))
            .collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        let bytes = self.log.read_vote().map_err(io::Error::other)?;
        bytes
            .map(|b| codec::decode_vote(&b).map_err(corrupt))
            .transpose()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id = match self.log.read_last_purged().map_err(io::Error::other)? {
            Some(bytes) => Some(decode_log_id(&bytes)?),
            None => None,
        };
        let last = match self.log.last_entry().map_err(io::Error::other)? {
            Some((_, bytes)) => Some(decode_entry(bytes)?.log_id),
            None => None,
        };
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id),
            last_purged_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let bytes = codec::encode_vote(vote);
        self.blocking(move |log| log.save_vote(&bytes)).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let Some(committed) = committed.filter(|_| self.save_committed) else {
            return Ok(());
        };
        let bytes = codec::encode_log_id(&committed);
        self.log.save_committed(&bytes).map_err(io::Error::other)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let bytes = self.log.read_committed().map_err(io::Error::other)?;
        bytes.map(|b| decode_log_id(&b)).transpose()
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut encoded = Vec::with_capacity(entries.len());
        for entry in &entries {
            let bytes = codec::encode_entry(entry).map_err(io::Error::other)?;
            encoded.push((entry.log_id.index, bytes));
        }
        // Written without waiting for the disk (readable when this returns, as openraft needs
        // for replication); the callback tells openraft the entries are durable, after the
        // fsync that covers them. The cache takes the entries once the store has them: a reader
        // in between misses the cache (the range ends past its last entry) and reads the store.
        let written = self.log.append_then_sync(
            encoded.iter().map(|(i, b)| (*i, b.as_slice())),
            Box::new(move |result| {
                callback.io_completed(result.map_err(io::Error::other));
            }),
        );
        let mut recent = self.recent.lock();
        match written {
            Ok(()) => recent.appended(entries),
            // What the store holds now is unknown: read it from there.
            Err(_) => recent.clear(),
        }
        written.map_err(io::Error::other)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index.saturating_add(1));
        // Cut first: between here and the end of the store's truncation no reader may be
        // served an entry that is being removed.
        self.recent.lock().truncate_from(from);
        self.blocking(move |log| log.truncate_from(from)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let bytes = codec::encode_log_id(&log_id);
        let index = log_id.index;
        self.recent.lock().purge_upto(index);
        self.blocking(move |log| log.purge_upto(index, &bytes))
            .await
    }
}
