//! The subscription index: a trie over subject tokens with `*` and `>` nodes.
//! CONTRACT (used by natrix-server; keep the public API):

use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrieError {
    #[error("invalid subject")]
    InvalidSubject,
    #[error("subscription not found")]
    NotFound,
}

/// The members of one queue group that match a subject.
#[derive(Debug, Clone)]
pub struct QueueGroup<T> {
    pub name: Bytes,
    pub members: Vec<T>,
}

/// Everything that matches one published subject: plain subscribers and, per queue group,
/// its members (the caller picks one member per group).
#[derive(Debug, Clone)]
pub struct MatchResult<T> {
    pub plain: Vec<T>,
    pub queues: Vec<QueueGroup<T>>,
}

impl<T> MatchResult<T> {
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }
}

/// Subscriptions indexed by subject. `T` is the caller's subscription handle; removal finds the
/// entry by `==`.
#[derive(Debug)]
pub struct SubjectTrie<T> {
    _p: std::marker::PhantomData<T>,
}

impl<T: Clone + PartialEq> Default for SubjectTrie<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + PartialEq> SubjectTrie<T> {
    pub fn new() -> Self {
        todo!()
    }

    /// Adds a subscription; the subject must be a valid subscribe subject.
    pub fn insert(&mut self, subject: &[u8], queue: Option<&[u8]>, sub: T) -> Result<(), TrieError> {
        let _ = (subject, queue, sub);
        todo!()
    }

    /// Removes the subscription equal to `sub` from `subject` (and `queue`); prunes empty nodes.
    pub fn remove(&mut self, subject: &[u8], queue: Option<&[u8]>, sub: &T) -> Result<(), TrieError> {
        let _ = (subject, queue, sub);
        todo!()
    }

    /// Everything that matches a literal subject.
    pub fn matches(&self, subject: &[u8]) -> MatchResult<T> {
        let _ = subject;
        todo!()
    }

    /// True if anything at all matches (cheaper than `matches`).
    pub fn has_interest(&self, subject: &[u8]) -> bool {
        let _ = subject;
        todo!()
    }

    /// Number of subscriptions held.
    pub fn len(&self) -> usize {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Incremented on every insert and remove; callers use it to invalidate match caches.
    pub fn generation(&self) -> u64 {
        todo!()
    }
}
