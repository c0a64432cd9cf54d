//! What one commit writes, and how it becomes RocksDB write-batch entries. A [`StreamBatch`] is
//! the whole effect of one stream command: its message ops, consumer updates and the stream's new
//! applied position, written atomically; a Raft state machine adds its group's
//! [`RaftApplied`] state to the same batch.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use natrix_stream::StoreOp;
use rocksdb::{ColumnFamily, WriteBatch};

use crate::keys;
use crate::raft_log::RaftMetaTag;

/// The effects of one stream command, written in one atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamBatch {
    pub stream_id: u64,
    pub ops: Vec<StoreOp>,
    /// The stream's applied position after this command (stored as `stream_applied/<id>`).
    pub applied: u64,
    /// The stream's sequence position after this command (opaque, the caller's encoding;
    /// stored as `stream_pos/<id>` when present). It outlives the messages: an emptied stream
    /// still knows its last sequence after a restart.
    pub position: Option<Bytes>,
    pub consumer_updates: Vec<ConsumerUpdate>,
}

/// A Raft group's applied state as the group's state machine persists it together with its
/// effects: opaque bytes (natrix-raft's `AppliedState` encoding: last applied log id and last
/// membership), stored in `raft_meta` under `group_id u64 · 0x06` ([`crate::RaftMetaTag::Applied`])
/// and read back with [`crate::RaftLog::read_applied`]. Written in the same RocksDB write batch as
/// the [`StreamBatch`] it accompanies ([`crate::Store::commit_with_raft_applied`]), so after a
/// crash the applied position never runs ahead of (or lags behind) the effects it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftApplied {
    pub group_id: u64,
    pub state: Bytes,
}

/// A change to one consumer's persisted state (opaque bytes owned by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerUpdate {
    Put { name: String, state: Bytes },
    Delete { name: String },
}

/// A `RemoveBelow` spanning at most this many sequences from the known floor is written as point
/// deletes; wider ones as one range tombstone. Trimming one message per publish (max_msgs) would
/// otherwise pile up a range tombstone per publish, which every read of the memtable must merge.
const POINT_DELETE_SPAN: u64 = 32;

/// The column families a batch writes into.
pub(crate) struct Cfs<'a> {
    pub msgs: &'a ColumnFamily,
    pub consumers: &'a ColumnFamily,
    pub meta: &'a ColumnFamily,
    pub subj_idx: &'a ColumnFamily,
    pub raft_meta: &'a ColumnFamily,
}

/// Per stream, a sequence below which every message is known to be deleted. Every write of the
/// store builds its batch under the lock that guards this (the committer's groups and
/// `Store::write_with_raft_applied`), so it can be tracked without reading: it lets narrow
/// `RemoveBelow`s become point deletes. Entries are a cache (bounded by the number of
/// streams); a missing one means 0.
#[derive(Debug, Default)]
pub(crate) struct Floors {
    committed: HashMap<u64, u64>,
    /// Changes made by the group being built: `None` = forget the stream.
    pending: HashMap<u64, Option<u64>>,
}

impl Floors {
    fn get(&self, stream_id: u64) -> u64 {
        match self.pending.get(&stream_id) {
            Some(v) => v.unwrap_or(0),
            None => self.committed.get(&stream_id).copied().unwrap_or(0),
        }
    }

    fn set(&mut self, stream_id: u64, floor: Option<u64>) {
        self.pending.insert(stream_id, floor);
    }

    /// The group was written: its changes hold.
    pub fn commit(&mut self) {
        for (id, floor) in self.pending.drain() {
            match floor {
                Some(f) => self.committed.insert(id, f),
                None => self.committed.remove(&id),
            };
        }
    }

    /// The group failed: forget its changes.
    pub fn rollback(&mut self) {
        self.pending.clear();
    }
}

/// Adds one stream command's effects to `wb`, and the Raft applied state that covers them.
pub(crate) fn add_stream_batch(
    wb: &mut WriteBatch,
    cfs: &Cfs<'_>,
    floors: &mut Floors,
    scratch: &mut BytesMut,
    batch: &StreamBatch,
    raft_applied: Option<&RaftApplied>,
) {
    let id = batch.stream_id;
    for op in &batch.ops {
        match op {
            StoreOp::Append(msg) => {
                scratch.clear();
                msg.encode(scratch);
                wb.put_cf(cfs.msgs, keys::msg_key(id, msg.seq), &scratch[..]);
                // Keep the floor's promise ("nothing stored below") even for an out-of-order
                // append.
                if msg.seq < floors.get(id) {
                    floors.set(id, Some(msg.seq));
                }
            }
            StoreOp::Remove { seq } => wb.delete_cf(cfs.msgs, keys::msg_key(id, *seq)),
            StoreOp::RemoveBelow { seq } => {
                let floor = floors.get(id);
                if *seq <= floor {
                    continue;
                }
                if seq - floor <= POINT_DELETE_SPAN {
                    for s in floor..*seq {
                        wb.delete_cf(cfs.msgs, keys::msg_key(id, s));
                    }
                } else {
                    wb.delete_range_cf(cfs.msgs, keys::msg_key(id, floor), keys::msg_key(id, *seq));
                }
                floors.set(id, Some(*seq));
            }
        }
    }
    add_consumer_updates(wb, cfs, id, &batch.consumer_updates);
    if let Some(position) = &batch.position {
        wb.put_cf(cfs.meta, keys::position_key(id), position);
    }
    wb.put_cf(
        cfs.meta,
        keys::applied_key(id),
        keys::encode_u64(batch.applied),
    );
    if let Some(raft) = raft_applied {
        wb.put_cf(
            cfs.raft_meta,
            keys::raft_meta_key(raft.group_id, RaftMetaTag::Applied as u8),
            &raft.state,
        );
    }
}

pub(crate) fn add_consumer_updates(
    wb: &mut WriteBatch,
    cfs: &Cfs<'_>,
    stream_id: u64,
    updates: &[ConsumerUpdate],
) {
    for update in updates {
        match update {
            ConsumerUpdate::Put { name, state } => {
                wb.put_cf(cfs.consumers, keys::consumer_key(stream_id, name), state);
            }
            ConsumerUpdate::Delete { name } => {
                wb.delete_cf(cfs.consumers, keys::consumer_key(stream_id, name));
            }
        }
    }
}

/// Every key of a stream: messages, index, consumers, applied position and config.
pub(crate) fn add_stream_deletion(
    wb: &mut WriteBatch,
    cfs: &Cfs<'_>,
    floors: &mut Floors,
    stream_id: u64,
) {
    let (start, end) = keys::stream_range(stream_id);
    for cf in [cfs.msgs, cfs.subj_idx, cfs.consumers] {
        wb.delete_range_cf(cf, &start, &end);
    }
    wb.delete_cf(cfs.meta, keys::applied_key(stream_id));
    wb.delete_cf(cfs.meta, keys::position_key(stream_id));
    wb.delete_cf(cfs.meta, keys::config_key(stream_id));
    floors.set(stream_id, None);
}
