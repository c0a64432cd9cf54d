//! The in-memory metadata index of a stream: one 16-byte slot per sequence from the first live
//! message to the last (payloads stay in storage), tombstones for interior deletes, subjects
//! interned with the ordered sequences of their live messages.
//!
//! Memory: 16 bytes per slot plus 8 per live message in its subject's list, plus each distinct
//! subject once: about 24 MB for a million messages.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

/// `subject` value of a deleted slot.
const TOMBSTONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    subject: u32,
    /// Bytes counted against `max_bytes`.
    size: u32,
    timestamp_ns: i64,
}

#[derive(Debug, Clone)]
struct SubjectEntry {
    name: Bytes,
    /// Live sequences on this subject, ascending.
    seqs: VecDeque<u64>,
}

/// A live message as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgMeta {
    pub seq: u64,
    pub subject: Bytes,
    pub size: u64,
    pub timestamp_ns: i64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct MsgIndex {
    /// Sequence of `slots[0]`; always a live message when `slots` is not empty.
    base: u64,
    slots: VecDeque<Slot>,
    live: u64,
    bytes: u64,
    subjects: Vec<Option<SubjectEntry>>,
    ids: HashMap<Bytes, u32>,
    free: Vec<u32>,
}

impl MsgIndex {
    pub fn len(&self) -> u64 {
        self.live
    }
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    pub fn num_subjects(&self) -> u64 {
        self.ids.len() as u64
    }
    /// First live sequence.
    pub fn first(&self) -> Option<u64> {
        (!self.slots.is_empty()).then_some(self.base)
    }
    pub fn first_timestamp(&self) -> Option<i64> {
        self.slots.front().map(|s| s.timestamp_ns)
    }
    /// Sequences between the first and last live message that are deleted.
    pub fn num_deleted(&self) -> u64 {
        self.slots.len() as u64 - self.live
    }
    pub fn deleted(&self) -> Vec<u64> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.subject == TOMBSTONE)
            .map(|(i, _)| self.base + i as u64)
            .collect()
    }

    /// Adds a message after the last one; `seq` must be past every indexed sequence.
    pub fn push(&mut self, seq: u64, subject: &Bytes, size: u64, timestamp_ns: i64) {
        if self.slots.is_empty() {
            self.base = seq;
        }
        let end = self.base + self.slots.len() as u64;
        assert!(seq >= end, "index sequences must ascend ({seq} < {end})");
        for _ in end..seq {
            // A gap (e.g. recovery after interior deletes) is made of tombstones.
            self.slots.push_back(Slot {
                subject: TOMBSTONE,
                size: 0,
                timestamp_ns,
            });
        }
        let id = self.intern(subject);
        if let Some(Some(entry)) = self.subjects.get_mut(id as usize) {
            entry.seqs.push_back(seq);
        }
        self.slots.push_back(Slot {
            subject: id,
            size: u32::try_from(size).unwrap_or(u32::MAX),
            timestamp_ns,
        });
        self.live += 1;
        self.bytes += size;
    }

    /// Extends the sequence space to `last_seq` with tombstones (a deleted tail, on recovery).
    pub fn pad_to(&mut self, last_seq: u64) {
        if self.slots.is_empty() {
            return;
        }
        let ts = self.slots.back().map_or(0, |s| s.timestamp_ns);
        while self.base + (self.slots.len() as u64) <= last_seq {
            self.slots.push_back(Slot {
                subject: TOMBSTONE,
                size: 0,
                timestamp_ns: ts,
            });
        }
    }

    fn intern(&mut self, subject: &Bytes) -> u32 {
        if let Some(&id) = self.ids.get(subject) {
            return id;
        }
        // A copy, not a clone: `subject` usually slices a whole message (payload included) that
        // the index must not keep alive.
        let subject = Bytes::copy_from_slice(subject);
        let entry = SubjectEntry {
            name: subject.clone(),
            seqs: VecDeque::new(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.subjects[id as usize] = Some(entry);
                id
            }
            None => {
                self.subjects.push(Some(entry));
                (self.subjects.len() - 1) as u32
            }
        };
        self.ids.insert(subject.clone(), id);
        id
    }

    fn slot(&self, seq: u64) -> Option<&Slot> {
        let i = seq.checked_sub(self.base)?;
        self.slots
            .get(usize::try_from(i).ok()?)
            .filter(|s| s.subject != TOMBSTONE)
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.slot(seq).is_some()
    }

    pub fn get(&self, seq: u64) -> Option<MsgMeta> {
        let slot = self.slot(seq)?;
        Some(MsgMeta {
            seq,
            subject: self.subject_name(slot.subject)?.clone(),
            size: u64::from(slot.size),
            timestamp_ns: slot.timestamp_ns,
        })
    }

    fn subject_name(&self, id: u32) -> Option<&Bytes> {
        self.subjects
            .get(id as usize)
            .and_then(|e| e.as_ref())
            .map(|e| &e.name)
    }

    /// Removes a live message; false if `seq` is not live.
    pub fn remove(&mut self, seq: u64) -> bool {
        let Some(i) = seq
            .checked_sub(self.base)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return false;
        };
        let Some(slot) = self.slots.get_mut(i) else {
            return false;
        };
        if slot.subject == TOMBSTONE {
            return false;
        }
        let id = slot.subject;
        let size = u64::from(slot.size);
        slot.subject = TOMBSTONE;
        self.live -= 1;
        self.bytes -= size;
        let mut emptied = false;
        if let Some(Some(entry)) = self.subjects.get_mut(id as usize) {
            if entry.seqs.front() == Some(&seq) {
                entry.seqs.pop_front();
            } else if let Ok(pos) = entry.seqs.binary_search(&seq) {
                entry.seqs.remove(pos);
            }
            emptied = entry.seqs.is_empty();
        }
        if emptied && let Some(entry) = self.subjects[id as usize].take() {
            self.ids.remove(&entry.name);
            self.free.push(id);
        }
        while self.slots.front().is_some_and(|s| s.subject == TOMBSTONE) {
            self.slots.pop_front();
            self.base += 1;
        }
        true
    }

    pub fn subject_seqs(&self, subject: &[u8]) -> Option<&VecDeque<u64>> {
        let id = *self.ids.get(subject)?;
        self.subjects
            .get(id as usize)
            .and_then(|e| e.as_ref())
            .map(|e| &e.seqs)
    }

    /// Every subject with its live message count.
    pub fn subjects(&self) -> impl Iterator<Item = (&Bytes, u64)> {
        self.subjects
            .iter()
            .flatten()
            .map(|e| (&e.name, e.seqs.len() as u64))
    }

    /// Live messages with `seq >= from`, in order.
    pub fn iter_from(&self, from: u64) -> impl Iterator<Item = (u64, &Bytes, u64, i64)> + '_ {
        let skip = usize::try_from(from.saturating_sub(self.base)).unwrap_or(usize::MAX);
        self.slots
            .iter()
            .enumerate()
            .skip(skip)
            .filter_map(move |(i, s)| {
                let name = self.subject_name(s.subject)?;
                Some((
                    self.base + i as u64,
                    name,
                    u64::from(s.size),
                    s.timestamp_ns,
                ))
            })
    }

    /// First slot (live or not) whose timestamp is `>= ts`, assuming timestamps ascend with
    /// sequence (the leader assigns them); then the first live one from there.
    pub fn first_at_or_after_time(&self, ts: i64) -> Option<u64> {
        let i = self.slots.partition_point(|s| s.timestamp_ns < ts);
        self.iter_from(self.base + i as u64).next().map(|m| m.0)
    }
}
