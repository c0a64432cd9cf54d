//! The entries a group appended last, kept in memory. openraft reads every entry back right after
//! appending it: once per replication task (one per follower) and once more to apply it. Serving
//! those reads from here spares a RocksDB iterator, a copy of the entry and its decoding each
//! time. The cache mirrors the tail of the log: appends extend it, truncations and purges cut it,
//! and it is bounded in entries and bytes (oldest dropped first); whatever it does not hold is
//! read from the store.

use std::collections::VecDeque;

use crate::types::{Entry, EntryPayload};

/// What an entry counts for against the byte bound beyond its command.
const ENTRY_OVERHEAD: usize = 64;

/// A contiguous run of the log's last entries (indices `first..=last`, no gaps).
pub(crate) struct RecentEntries {
    entries: VecDeque<Entry>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

fn size_of(entry: &Entry) -> usize {
    ENTRY_OVERHEAD
        + match &entry.payload {
            EntryPayload::Normal(command) => command.0.len(),
            EntryPayload::Blank | EntryPayload::Membership(_) => 0,
        }
}

impl RecentEntries {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> RecentEntries {
        RecentEntries {
            entries: VecDeque::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|e| e.log_id.index)
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Records entries just written to the log (in index order). Entries at or after the
    /// first of them are replaced, as the log's own write replaces them; entries that would
    /// not follow the cached ones without a gap start the cache afresh.
    pub(crate) fn appended(&mut self, entries: Vec<Entry>) {
        let Some(first) = entries.first().map(|e| e.log_id.index) else {
            return;
        };
        self.truncate_from(first);
        for entry in entries {
            let index = entry.log_id.index;
            if self
                .last_index()
                .is_some_and(|last| last.checked_add(1) != Some(index))
            {
                self.clear();
            }
            self.bytes += size_of(&entry);
            self.entries.push_back(entry);
        }
        while self.entries.len() > self.max_entries || self.bytes > self.max_bytes {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= size_of(&old),
                None => break,
            }
        }
    }

    /// The log dropped every entry from `index` on.
    pub(crate) fn truncate_from(&mut self, index: u64) {
        while self.last_index().is_some_and(|last| last >= index) {
            if let Some(old) = self.entries.pop_back() {
                self.bytes -= size_of(&old);
            }
        }
    }

    /// The log dropped every entry up to and including `index`.
    pub(crate) fn purge_upto(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first <= index) {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= size_of(&old);
            }
        }
    }

    /// The entries `start..end` if the cache holds every one of them; `None` sends the reader
    /// to the store. An empty range is answered only when it lies within the cached run.
    pub(crate) fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let first = self.first_index()?;
        let last = self.last_index()?;
        if start < first || end > last.checked_add(1)? || start > end {
            return None;
        }
        let from = usize::try_from(start - first).ok()?;
        let to = usize::try_from(end - first).ok()?;
        Some(self.entries.range(from..to).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::types::{Command, LeaderId, LogId};

    fn entry(term: u64, index: u64, payload: &'static [u8]) -> Entry {
        Entry {
            log_id: LogId::new(LeaderId { term, node_id: 1 }, index),
            payload: EntryPayload::Normal(Command(Bytes::from_static(payload))),
        }
    }

    fn indices(entries: &[Entry]) -> Vec<(u64, u64)> {
        entries
            .iter()
            .map(|e| (e.log_id.leader_id.term, e.log_id.index))
            .collect()
    }

    #[test]
    fn serves_ranges_it_holds_and_refuses_the_rest() {
        let mut cache = RecentEntries::new(100, 1 << 20);
        assert!(cache.get(1, 2).is_none());
        cache.appended(vec![entry(1, 5, b"a"), entry(1, 6, b"b")]);
        cache.appended(vec![entry(1, 7, b"c")]);
        assert_eq!(
            indices(&cache.get(5, 8).expect("held")),
            [(1, 5), (1, 6), (1, 7)]
        );
        assert_eq!(indices(&cache.get(6, 7).expect("held")), [(1, 6)]);
        assert!(cache.get(4, 6).is_none(), "starts before the cache");
        assert!(cache.get(6, 9).is_none(), "ends after the log's last entry");
        assert_eq!(cache.get(7, 7).map(|v| v.len()), Some(0));
    }

    #[test]
    fn an_overwrite_replaces_the_tail_and_a_gap_starts_afresh() {
        let mut cache = RecentEntries::new(100, 1 << 20);
        cache.appended(vec![
            entry(1, 1, b"a"),
            entry(1, 2, b"b"),
            entry(1, 3, b"c"),
        ]);
        cache.appended(vec![entry(2, 2, b"x")]);
        assert_eq!(indices(&cache.get(1, 3).expect("held")), [(1, 1), (2, 2)]);
        assert!(cache.get(3, 4).is_none(), "entry 3 was replaced away");
        cache.appended(vec![entry(2, 10, b"y")]);
        assert!(cache.get(1, 2).is_none(), "a gap drops what came before");
        assert_eq!(indices(&cache.get(10, 11).expect("held")), [(2, 10)]);
    }

    #[test]
    fn truncation_and_purge_cut_the_cache_like_the_log() {
        let mut cache = RecentEntries::new(100, 1 << 20);
        cache.appended(vec![
            entry(1, 1, b"a"),
            entry(1, 2, b"b"),
            entry(1, 3, b"c"),
            entry(1, 4, b"d"),
        ]);
        cache.truncate_from(4);
        assert!(cache.get(4, 5).is_none());
        cache.purge_upto(1);
        assert!(cache.get(1, 2).is_none());
        assert_eq!(indices(&cache.get(2, 4).expect("held")), [(1, 2), (1, 3)]);
        cache.purge_upto(10);
        assert!(cache.get(2, 3).is_none());
        assert_eq!(cache.bytes, 0);
    }

    #[test]
    fn the_oldest_entries_go_first_past_either_bound() {
        let mut cache = RecentEntries::new(3, 1 << 20);
        for i in 1..=5 {
            cache.appended(vec![entry(1, i, b"z")]);
        }
        assert!(cache.get(2, 3).is_none());
        assert_eq!(
            indices(&cache.get(3, 6).expect("held")),
            [(1, 3), (1, 4), (1, 5)]
        );

        let mut cache = RecentEntries::new(100, 2 * (ENTRY_OVERHEAD + 1));
        cache.appended(vec![
            entry(1, 1, b"a"),
            entry(1, 2, b"b"),
            entry(1, 3, b"c"),
        ]);
        assert!(cache.get(1, 2).is_none());
        assert_eq!(indices(&cache.get(2, 4).expect("held")), [(1, 2), (1, 3)]);
    }
}
