//! Raft log and Raft metadata of every Raft group a node hosts, in the node's RocksDB: entries in
//! `raft_log` (`group_id | index`), vote, committed id, last purged id, the latest snapshot and a
//! durable state machine's applied state in `raft_meta` (`group_id | tag`). Values are opaque
//! bytes encoded by the Raft layer; this module owns only keys, batching and durability.
//!
//! Durability: appends ([`RaftLog::append_then_sync`]) are written at once without a sync and
//! reported durable by the store's WAL syncer after the fdatasync that covers them, so a leader
//! replicates entries while its own copy reaches the disk, and concurrent appends of every group
//! share one fsync. Truncations, purges, votes, snapshots and [`RaftLog::save_applied`] are
//! written with `sync = true` (the call returns after the WAL is fdatasynced; RocksDB merges
//! concurrent synced writers into one fsync). The committed id is written without sync: a lost
//! one only means re-applying entries a quorum already holds. Synced calls block on disk I/O;
//! async callers run them on a blocking thread.

use std::sync::Arc;

use bytes::Bytes;
use rocksdb::{ColumnFamily, DB, Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions};

use crate::Store;
use crate::keys::{self, CF_RAFT_LOG, CF_RAFT_META};
use crate::wal_sync::{SyncDone, WalSyncer};

/// Failures of Raft log storage, naming the group and the operation.
#[derive(Debug, thiserror::Error)]
pub enum RaftLogError {
    #[error("raft group {group_id}: column family {cf} is not open")]
    MissingColumnFamily { group_id: u64, cf: &'static str },
    #[error("raft group {group_id}: writing {what}: {source}")]
    Write {
        group_id: u64,
        what: &'static str,
        source: rocksdb::Error,
    },
    #[error("raft group {group_id}: reading {what}: {source}")]
    Read {
        group_id: u64,
        what: &'static str,
        source: rocksdb::Error,
    },
    #[error("raft group {group_id}: corrupt key {key} in {cf}: {reason}")]
    Corrupt {
        group_id: u64,
        cf: &'static str,
        key: String,
        reason: &'static str,
    },
}

/// What a `raft_meta` key holds after the group id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RaftMetaTag {
    Vote = 1,
    Committed = 2,
    LastPurged = 3,
    SnapshotMeta = 4,
    SnapshotData = 5,
    /// A durable state machine's applied state (last applied log id and membership), written
    /// with its effects ([`crate::RaftApplied`]) or alone ([`RaftLog::save_applied`]).
    Applied = 6,
}

/// One Raft group's log and metadata in the node's RocksDB. Cheap to clone; every clone writes
/// the same keys, so a group must have one writer (its openraft core).
#[derive(Clone)]
pub struct RaftLog {
    db: Arc<DB>,
    group_id: u64,
    wal_sync: WalSyncer,
}

impl Store {
    /// The log and metadata of Raft group `group_id` (created empty on first write).
    pub fn raft_log(&self, group_id: u64) -> RaftLog {
        RaftLog {
            db: Arc::clone(&self.db),
            group_id,
            wal_sync: self.wal_sync.clone(),
        }
    }
}

impl RaftLog {
    pub fn group_id(&self) -> u64 {
        self.group_id
    }

    /// Writes `entries` (index, encoded entry) in one batch without waiting for the disk: they
    /// are readable when this returns, and `durable` is called once an fsync of the write-ahead
    /// log covered them (or failed). Many appends, of any groups, share one fsync.
    pub fn append_then_sync<'a>(
        &self,
        entries: impl IntoIterator<Item = (u64, &'a [u8])>,
        durable: SyncDone,
    ) -> Result<(), RaftLogError> {
        let cf = self.cf(CF_RAFT_LOG)?;
        let mut batch = WriteBatch::default();
        for (index, bytes) in entries {
            batch.put_cf(cf, keys::raft_log_key(self.group_id, index), bytes);
        }
        self.write(batch, false, "log entries")?;
        self.wal_sync.after_next_sync(durable);
        Ok(())
    }

    /// Deletes every entry at `index` and after (a conflicting suffix); fsynced.
    pub fn truncate_from(&self, index: u64) -> Result<(), RaftLogError> {
        let cf = self.cf(CF_RAFT_LOG)?;
        let (_, end) = keys::raft_group_range(self.group_id);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, &keys::raft_log_key(self.group_id, index)[..], &end[..]);
        self.write(batch, true, "a log truncation")
    }

    /// Deletes every entry up to and including `index` and records `last_purged` (the encoded
    /// id of entry `index`) in the same batch; fsynced.
    pub fn purge_upto(&self, index: u64, last_purged: &[u8]) -> Result<(), RaftLogError> {
        let log = self.cf(CF_RAFT_LOG)?;
        let meta = self.cf(CF_RAFT_META)?;
        let (start, _) = keys::raft_group_range(self.group_id);
        let mut batch = WriteBatch::default();
        batch.put_cf(
            meta,
            keys::raft_meta_key(self.group_id, RaftMetaTag::LastPurged as u8),
            last_purged,
        );
        match index.checked_add(1) {
            Some(next) => {
                batch.delete_range_cf(
                    log,
                    &start[..],
                    &keys::raft_log_key(self.group_id, next)[..],
                );
            }
            None => {
                let (_, end) = keys::raft_group_range(self.group_id);
                batch.delete_range_cf(log, start, end);
            }
        }
        // Synced: writes of the group's state machine made without an fsync
        // (`Store::write_with_raft_applied`) come before it in the write-ahead log, so they are
        // durable before the log entries they applied are gone.
        self.write(batch, true, "a log purge")
    }

    /// Entries with `start <= index < end`, in index order, at most `max` of them.
    pub fn entries(
        &self,
        start: u64,
        end: u64,
        max: usize,
    ) -> Result<Vec<(u64, Bytes)>, RaftLogError> {
        if start >= end || max == 0 {
            return Ok(Vec::new());
        }
        let cf = self.cf(CF_RAFT_LOG)?;
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(keys::raft_log_key(self.group_id, start).to_vec());
        opts.set_iterate_upper_bound(keys::raft_log_key(self.group_id, end).to_vec());
        let mut iter = self.db.raw_iterator_cf_opt(cf, opts);
        iter.seek_to_first();
        let mut out = Vec::new();
        while iter.valid() && out.len() < max {
            if let (Some(key), Some(value)) = (iter.key(), iter.value()) {
                out.push((self.decode_index(key)?, Bytes::copy_from_slice(value)));
            }
            iter.next();
        }
        iter.status()
            .map_err(|source| self.read_err("log entries", source))?;
        Ok(out)
    }

    /// The entry with the lowest index, if the log holds any.
    pub fn first_entry(&self) -> Result<Option<(u64, Bytes)>, RaftLogError> {
        self.edge_entry(Direction::Forward)
    }

    /// The entry with the highest index, if the log holds any.
    pub fn last_entry(&self) -> Result<Option<(u64, Bytes)>, RaftLogError> {
        self.edge_entry(Direction::Reverse)
    }

    /// Stores the vote; fsynced (a node must never forget whom it voted for).
    pub fn save_vote(&self, vote: &[u8]) -> Result<(), RaftLogError> {
        self.put_meta(RaftMetaTag::Vote, vote, true, "the vote")
    }

    pub fn read_vote(&self) -> Result<Option<Bytes>, RaftLogError> {
        self.get_meta(RaftMetaTag::Vote, "the vote")
    }

    /// Stores the committed log id, without fsync (see the module comment).
    pub fn save_committed(&self, committed: &[u8]) -> Result<(), RaftLogError> {
        self.put_meta(RaftMetaTag::Committed, committed, false, "the committed id")
    }

    pub fn read_committed(&self) -> Result<Option<Bytes>, RaftLogError> {
        self.get_meta(RaftMetaTag::Committed, "the committed id")
    }

    pub fn read_last_purged(&self) -> Result<Option<Bytes>, RaftLogError> {
        self.get_meta(RaftMetaTag::LastPurged, "the last purged id")
    }

    /// Replaces the group's stored snapshot (its metadata and its data) in one fsynced batch.
    pub fn save_snapshot(&self, meta: &[u8], data: &[u8]) -> Result<(), RaftLogError> {
        let cf = self.cf(CF_RAFT_META)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf,
            keys::raft_meta_key(self.group_id, RaftMetaTag::SnapshotMeta as u8),
            meta,
        );
        batch.put_cf(
            cf,
            keys::raft_meta_key(self.group_id, RaftMetaTag::SnapshotData as u8),
            data,
        );
        self.write(batch, true, "a snapshot")
    }

    /// The stored snapshot as `(meta, data)`, if the group has one.
    pub fn read_snapshot(&self) -> Result<Option<(Bytes, Bytes)>, RaftLogError> {
        let meta = self.get_meta(RaftMetaTag::SnapshotMeta, "the snapshot metadata")?;
        let data = self.get_meta(RaftMetaTag::SnapshotData, "the snapshot data")?;
        Ok(meta.zip(data))
    }

    /// Stores the group's applied state alone, fsynced, for a state machine that has no effects
    /// of its own to write with it. A machine whose effects live in this store writes the state
    /// in the same batch as them instead ([`crate::Store::commit_with_raft_applied`]).
    pub fn save_applied(&self, state: &[u8]) -> Result<(), RaftLogError> {
        self.put_meta(RaftMetaTag::Applied, state, true, "the applied state")
    }

    /// The applied state last stored by [`RaftLog::save_applied`] or with a commit's effects.
    pub fn read_applied(&self) -> Result<Option<Bytes>, RaftLogError> {
        self.get_meta(RaftMetaTag::Applied, "the applied state")
    }

    /// Deletes the group's whole log and every metadata record (the applied state included);
    /// fsynced. Stop the group first: a commit carrying its applied state that is queued after
    /// this would write the state again.
    pub fn delete_group(&self) -> Result<(), RaftLogError> {
        let log = self.cf(CF_RAFT_LOG)?;
        let meta = self.cf(CF_RAFT_META)?;
        let (start, end) = keys::raft_group_range(self.group_id);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(log, &start, &end);
        batch.delete_range_cf(meta, &start, &end);
        self.write(batch, true, "the deletion of the group")
    }

    fn edge_entry(&self, direction: Direction) -> Result<Option<(u64, Bytes)>, RaftLogError> {
        let cf = self.cf(CF_RAFT_LOG)?;
        let (start, end) = keys::raft_group_range(self.group_id);
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(start);
        opts.set_iterate_upper_bound(end);
        // Start and End respect the bounds: the first and the last key of this group.
        let mode = match direction {
            Direction::Forward => IteratorMode::Start,
            Direction::Reverse => IteratorMode::End,
        };
        match self.db.iterator_cf_opt(cf, opts, mode).next() {
            None => Ok(None),
            Some(Err(source)) => Err(self.read_err("the log's edge", source)),
            Some(Ok((key, value))) => Ok(Some((
                self.decode_index(&key)?,
                Bytes::copy_from_slice(&value),
            ))),
        }
    }

    fn put_meta(
        &self,
        tag: RaftMetaTag,
        value: &[u8],
        sync: bool,
        what: &'static str,
    ) -> Result<(), RaftLogError> {
        let cf = self.cf(CF_RAFT_META)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, keys::raft_meta_key(self.group_id, tag as u8), value);
        self.write(batch, sync, what)
    }

    fn get_meta(
        &self,
        tag: RaftMetaTag,
        what: &'static str,
    ) -> Result<Option<Bytes>, RaftLogError> {
        let cf = self.cf(CF_RAFT_META)?;
        let value = self
            .db
            .get_pinned_cf(cf, keys::raft_meta_key(self.group_id, tag as u8))
            .map_err(|source| self.read_err(what, source))?;
        Ok(value.map(|v| Bytes::copy_from_slice(&v)))
    }

    fn write(&self, batch: WriteBatch, sync: bool, what: &'static str) -> Result<(), RaftLogError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db
            .write_opt(batch, &opts)
            .map_err(|source| RaftLogError::Write {
                group_id: self.group_id,
                what,
                source,
            })
    }

    fn decode_index(&self, key: &[u8]) -> Result<u64, RaftLogError> {
        match keys::decode_msg_key(key) {
            Some((group, index)) if group == self.group_id => Ok(index),
            _ => Err(RaftLogError::Corrupt {
                group_id: self.group_id,
                cf: CF_RAFT_LOG,
                key: keys::hex(key),
                reason: "not a 16-byte key of this group",
            }),
        }
    }

    fn read_err(&self, what: &'static str, source: rocksdb::Error) -> RaftLogError {
        RaftLogError::Read {
            group_id: self.group_id,
            what,
            source,
        }
    }

    fn cf(&self, cf: &'static str) -> Result<&ColumnFamily, RaftLogError> {
        self.db
            .cf_handle(cf)
            .ok_or(RaftLogError::MissingColumnFamily {
                group_id: self.group_id,
                cf,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        (dir, store)
    }

    fn indexes(entries: &[(u64, Bytes)]) -> Vec<u64> {
        entries.iter().map(|(i, _)| *i).collect()
    }

    fn append_range(log: &RaftLog, range: std::ops::RangeInclusive<u64>) {
        let values: Vec<(u64, Vec<u8>)> =
            range.map(|i| (i, format!("e{i}").into_bytes())).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let durable: SyncDone = Box::new(move |result| {
            let _ = tx.send(result);
        });
        log.append_then_sync(values.iter().map(|(i, v)| (*i, v.as_slice())), durable)
            .unwrap();
        rx.recv().unwrap().unwrap();
    }

    #[test]
    fn appended_entries_are_readable_at_once_and_reported_durable_after_a_sync() {
        let (_dir, store) = open();
        let log = store.raft_log(3);
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 1..=50u64 {
            let tx = tx.clone();
            let value = i.to_be_bytes();
            log.append_then_sync(
                [(i, &value[..])],
                Box::new(move |result| {
                    let _ = tx.send((i, result));
                }),
            )
            .unwrap();
            assert_eq!(log.last_entry().unwrap().map(|e| e.0), Some(i));
        }
        drop(tx);
        let mut reported: Vec<u64> = rx
            .iter()
            .map(|(i, result)| {
                result.unwrap();
                i
            })
            .collect();
        reported.sort_unstable();
        assert_eq!(reported, (1..=50).collect::<Vec<_>>());
    }

    #[test]
    fn appended_entries_read_back_in_index_order_within_bounds() {
        let (_dir, store) = open();
        let log = store.raft_log(7);
        append_range(&log, 1..=10);
        let got = log.entries(3, 6, 100).unwrap();
        assert_eq!(indexes(&got), vec![3, 4, 5]);
        assert_eq!(&got[0].1[..], b"e3");
        assert_eq!(
            indexes(&log.entries(0, u64::MAX, 4).unwrap()),
            vec![1, 2, 3, 4]
        );
        assert_eq!(log.first_entry().unwrap().map(|e| e.0), Some(1));
        assert_eq!(log.last_entry().unwrap().map(|e| e.0), Some(10));
    }

    #[test]
    fn groups_never_see_each_others_entries_or_metadata() {
        let (_dir, store) = open();
        let (a, b, c) = (
            store.raft_log(1),
            store.raft_log(2),
            store.raft_log(u64::MAX),
        );
        append_range(&a, 1..=3);
        append_range(&c, 5..=6);
        a.save_vote(b"vote-a").unwrap();
        assert!(b.first_entry().unwrap().is_none());
        assert!(b.last_entry().unwrap().is_none());
        assert!(b.read_vote().unwrap().is_none());
        assert_eq!(a.last_entry().unwrap().map(|e| e.0), Some(3));
        assert_eq!(c.first_entry().unwrap().map(|e| e.0), Some(5));
        b.delete_group().unwrap();
        c.truncate_from(0).unwrap();
        assert_eq!(indexes(&a.entries(0, u64::MAX, 10).unwrap()), vec![1, 2, 3]);
        assert!(c.last_entry().unwrap().is_none());
    }

    #[test]
    fn truncation_removes_the_suffix_and_purge_the_prefix() {
        let (_dir, store) = open();
        let log = store.raft_log(3);
        append_range(&log, 1..=10);
        log.truncate_from(8).unwrap();
        assert_eq!(log.last_entry().unwrap().map(|e| e.0), Some(7));
        log.purge_upto(4, b"id-4").unwrap();
        assert_eq!(indexes(&log.entries(0, 100, 100).unwrap()), vec![5, 6, 7]);
        assert_eq!(
            log.read_last_purged().unwrap().as_deref(),
            Some(&b"id-4"[..])
        );
        log.purge_upto(u64::MAX, b"all").unwrap();
        assert!(log.first_entry().unwrap().is_none());
    }

    #[test]
    fn vote_committed_and_snapshot_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            let log = store.raft_log(9);
            append_range(&log, 1..=2);
            log.save_vote(b"v1").unwrap();
            log.save_vote(b"v2").unwrap();
            log.save_committed(b"c").unwrap();
            log.save_snapshot(b"meta", b"data").unwrap();
        }
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let log = store.raft_log(9);
        assert_eq!(log.read_vote().unwrap().as_deref(), Some(&b"v2"[..]));
        assert_eq!(log.read_committed().unwrap().as_deref(), Some(&b"c"[..]));
        let (meta, data) = log.read_snapshot().unwrap().unwrap();
        assert_eq!((&meta[..], &data[..]), (&b"meta"[..], &b"data"[..]));
        assert_eq!(indexes(&log.entries(0, 10, 10).unwrap()), vec![1, 2]);
        log.save_applied(b"applied").unwrap();
        assert_eq!(
            log.read_applied().unwrap().as_deref(),
            Some(&b"applied"[..])
        );
        log.delete_group().unwrap();
        assert!(log.read_applied().unwrap().is_none());
        assert!(log.read_vote().unwrap().is_none());
        assert!(log.read_snapshot().unwrap().is_none());
        assert!(log.last_entry().unwrap().is_none());
    }
}
