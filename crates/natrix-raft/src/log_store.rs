//! openraft's log storage (storage v2: [`RaftLogStorage`] + [`RaftLogReader`]) over one group's
//! [`RaftLog`] in the node's RocksDB. Appends, votes and truncations run on a blocking thread
//! and return once fsynced; `append` reports the flush to openraft only after that.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use bytes::Bytes;
use natrix_store::{RaftLog, RaftLogError};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError};

use crate::codec::{self, CodecError};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// One group's Raft log and vote. Clones share the same RocksDB keys; openraft uses a clone as
/// the reader of its replication tasks.
#[derive(Clone)]
pub struct LogStore {
    log: RaftLog,
}

impl LogStore {
    pub fn new(log: RaftLog) -> LogStore {
        LogStore { log }
    }

    pub fn group_id(&self) -> u64 {
        self.log.group_id()
    }

    /// Runs a RocksDB write on the blocking pool so that an fsync never stalls the runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        what: fn(AnyError) -> StorageIOError<u64>,
        f: impl FnOnce(&RaftLog) -> Result<T, RaftLogError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let log = self.log.clone();
        match tokio::task::spawn_blocking(move || f(&log)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(what(AnyError::new(&e)).into()),
            Err(join) => Err(what(AnyError::new(&join)).into()),
        }
    }
}

fn read_err(e: &RaftLogError) -> StorageError {
    StorageIOError::read_logs(AnyError::new(e)).into()
}

fn corrupt(subject: ErrorSubject<u64>, e: &CodecError) -> StorageError {
    StorageIOError::new(subject, ErrorVerb::Read, AnyError::new(e)).into()
}

fn decode_entry(bytes: Bytes) -> Result<Entry, StorageError> {
    codec::decode_entry(bytes).map_err(|e| corrupt(ErrorSubject::Logs, &e))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
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
        // Reads mostly hit the memtable or the block cache; they run inline.
        let raw = self
            .log
            .entries(start, end, usize::MAX)
            .map_err(|e| read_err(&e))?;
        raw.into_iter()
            .map(|(_, bytes)| decode_entry(bytes))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = match self.log.read_last_purged().map_err(|e| read_err(&e))? {
            Some(bytes) => {
                Some(codec::decode_log_id(&bytes).map_err(|e| corrupt(ErrorSubject::Logs, &e))?)
            }
            None => None,
        };
        let last = match self.log.last_entry().map_err(|e| read_err(&e))? {
            Some((_, bytes)) => Some(decode_entry(bytes)?.log_id),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = codec::encode_vote(vote);
        self.blocking(StorageIOError::write_vote, move |log| log.save_vote(&bytes))
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let bytes = self
            .log
            .read_vote()
            .map_err(|e| StorageError::from(StorageIOError::read_vote(AnyError::new(&e))))?;
        bytes
            .map(|b| codec::decode_vote(&b).map_err(|e| corrupt(ErrorSubject::Vote, &e)))
            .transpose()
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let Some(committed) = committed else {
            return Ok(());
        };
        let bytes = codec::encode_log_id(&committed);
        self.log
            .save_committed(&bytes)
            .map_err(|e| StorageIOError::write(AnyError::new(&e)).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let bytes = self
            .log
            .read_committed()
            .map_err(|e| StorageError::from(StorageIOError::read(AnyError::new(&e))))?;
        bytes
            .map(|b| codec::decode_log_id(&b).map_err(|e| corrupt(ErrorSubject::Store, &e)))
            .transpose()
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = codec::encode_entry(&entry).map_err(|e| {
                StorageError::from(StorageIOError::write_log_entry(
                    entry.log_id,
                    AnyError::new(&e),
                ))
            })?;
            encoded.push((entry.log_id.index, bytes));
        }
        let result = self
            .blocking(StorageIOError::write_logs, move |log| {
                log.append(encoded.iter().map(|(i, b)| (*i, b.as_slice())))
            })
            .await;
        // The callback tells openraft the entries are durable: only after the fsync.
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let index = log_id.index;
        self.blocking(StorageIOError::write_logs, move |log| {
            log.truncate_from(index)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = codec::encode_log_id(&log_id);
        self.blocking(StorageIOError::write_logs, move |log| {
            log.purge_upto(log_id.index, &bytes)
        })
        .await
    }
}
