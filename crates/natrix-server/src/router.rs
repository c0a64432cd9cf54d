//! Subscription registry and message routing: the shared subject trie, the subscription record,
//! and the per-connection match cache that keeps the hot publish path off the trie's lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use natrix_subject::{MatchResult, SubjectTrie, TrieError};
use parking_lot::RwLock;

use crate::client::Client;

/// One SUB of one client.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// Unique across the server; equality is by this id.
    pub id: u64,
    pub client: Arc<Client>,
    pub subject: Bytes,
    pub queue: Option<Bytes>,
    pub sid: Bytes,
    /// Auto-unsubscribe after this many deliveries (0: never).
    pub max: AtomicU64,
    /// Messages delivered so far.
    pub delivered: AtomicU64,
}

impl PartialEq for Subscription {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

/// A subscription handle stored in the trie; compared by subscription id.
#[derive(Debug, Clone)]
pub(crate) struct SubRef(pub Arc<Subscription>);

impl PartialEq for SubRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

pub(crate) type Matches = Arc<MatchResult<SubRef>>;

/// The server-wide subscription index.
#[derive(Debug, Default)]
pub(crate) struct Router {
    trie: RwLock<SubjectTrie<SubRef>>,
    /// Mirror of the trie's generation, readable without the lock.
    generation: AtomicU64,
    next_sub_id: AtomicU64,
}

impl Router {
    pub fn next_sub_id(&self) -> u64 {
        self.next_sub_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn insert(&self, sub: &Arc<Subscription>) -> Result<(), TrieError> {
        let mut trie = self.trie.write();
        let result = trie.insert(&sub.subject, sub.queue.as_deref(), SubRef(sub.clone()));
        self.generation.store(trie.generation(), Ordering::Release);
        result
    }

    pub fn remove(&self, sub: &Arc<Subscription>) {
        let mut trie = self.trie.write();
        // NotFound is fine: an auto-unsubscribe and an UNSUB can race to remove the same entry.
        let _ = trie.remove(&sub.subject, sub.queue.as_deref(), &SubRef(sub.clone()));
        self.generation.store(trie.generation(), Ordering::Release);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn matches(&self, subject: &[u8]) -> Matches {
        Arc::new(self.trie.read().matches(subject))
    }

    pub fn count(&self) -> usize {
        self.trie.read().len()
    }
}

/// Per-connection cache of match results, invalidated when the trie changes.
#[derive(Debug, Default)]
pub(crate) struct MatchCache {
    generation: u64,
    entries: HashMap<Bytes, Matches>,
}

/// Bound on cached subjects per connection; the cache is cleared when it fills up.
const MATCH_CACHE_MAX: usize = 1024;

impl MatchCache {
    pub fn lookup(&mut self, router: &Router, subject: &Bytes) -> Matches {
        let generation = router.generation();
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
        } else if let Some(hit) = self.entries.get(subject.as_ref()) {
            return hit.clone();
        }
        let result = router.matches(subject);
        if self.entries.len() >= MATCH_CACHE_MAX {
            self.entries.clear();
        }
        // Own the key: a slice of the read buffer would pin that whole buffer in memory.
        self.entries.insert(Bytes::copy_from_slice(subject), result.clone());
        result
    }
}
