//! The subscription index (nats-server's "sublist"): a trie over `.`-separated subject tokens in
//! which each node has literal children plus at most one `*` child and one `>` child, and holds
//! the plain subscriptions and queue groups whose subject ends there.
//!
//! Matching visits the `>`, literal and `*` children of each node without allocating per token. A
//! subscription is returned once per matching entry (no dedup: each entry is a distinct sid);
//! members of one queue group name are merged across all matching nodes into one
//! [`QueueGroup`], as nats-server does.
//!
//! Matching and removal recurse once per trie level; [`MAX_SUBJECT_TOKENS`] bounds the depth.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use bytes::Bytes;

use crate::validate::{is_valid_queue_name, is_valid_subject};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrieError {
    /// The subject (or the queue group name) is not a valid subscribe subject.
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

    /// An empty result, e.g. to reuse with [`SubjectTrie::matches_into`].
    pub fn new() -> Self {
        Self {
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }

    /// Empties the result but keeps its allocations.
    pub fn clear(&mut self) {
        self.plain.clear();
        self.queues.clear();
    }
}

impl<T> Default for MatchResult<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// FxHash (rustc's hasher) over token bytes, started from a random per-map seed. SipHash would
/// cost more than the rest of a lookup on short tokens; the seed keeps clients from precomputing
/// tokens that all land in one bucket of a busy node (not a cryptographic guarantee, but the
/// damage is bounded by how many subscriptions a client may hold).
#[derive(Clone, Copy)]
struct TokenHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl TokenHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

/// Builds [`TokenHasher`]s that all start from one random seed.
#[derive(Clone, Copy)]
struct TokenHashState {
    seed: u64,
}

impl Default for TokenHashState {
    fn default() -> Self {
        Self {
            seed: RandomState::new().hash_one(0u8),
        }
    }
}

impl BuildHasher for TokenHashState {
    type Hasher = TokenHasher;

    fn build_hasher(&self) -> TokenHasher {
        TokenHasher { hash: self.seed }
    }
}

impl Hasher for TokenHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        // Fixed-size loads for the tail: a variable-length copy would call memcpy per token.
        let mut tail = chunks.remainder();
        if tail.is_empty() {
            return;
        }
        let mut word = 0u64;
        let mut shift = 0;
        if let [a, b, c, d, rest @ ..] = tail {
            word = u64::from(u32::from_le_bytes([*a, *b, *c, *d]));
            shift = 32;
            tail = rest;
        }
        if let [a, b, rest @ ..] = tail {
            word |= u64::from(u16::from_le_bytes([*a, *b])) << shift;
            shift += 16;
            tail = rest;
        }
        if let [a] = tail {
            word |= u64::from(*a) << shift;
        }
        self.add(word);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Up to this many literal children live in a vector scanned linearly; most nodes have one or a
/// few children, and comparing a few lengths beats hashing the token.
const FEW_CHILDREN: usize = 8;

/// A node's literal children, keyed by token bytes.
#[derive(Debug)]
enum LiteralChildren<T> {
    Few(Vec<(Box<[u8]>, Node<T>)>),
    Many(HashMap<Box<[u8]>, Node<T>, TokenHashState>),
}

impl<T> LiteralChildren<T> {
    fn is_empty(&self) -> bool {
        match self {
            Self::Few(few) => few.is_empty(),
            Self::Many(many) => many.is_empty(),
        }
    }

    #[inline]
    fn get(&self, token: &[u8]) -> Option<&Node<T>> {
        match self {
            Self::Few(few) => few
                .iter()
                .find(|(key, _)| key.len() == token.len() && **key == *token)
                .map(|(_, child)| child),
            Self::Many(many) => many.get(token),
        }
    }

    fn get_mut(&mut self, token: &[u8]) -> Option<&mut Node<T>> {
        match self {
            Self::Few(few) => few
                .iter_mut()
                .find(|(key, _)| **key == *token)
                .map(|(_, child)| child),
            Self::Many(many) => many.get_mut(token),
        }
    }

    /// The child for `token`, created if absent; the flag says whether it was created.
    fn get_or_insert(&mut self, token: &[u8]) -> (&mut Node<T>, bool) {
        if let Self::Few(few) = self
            && few.len() >= FEW_CHILDREN
            && !few.iter().any(|(key, _)| **key == *token)
        {
            *self = Self::Many(few.drain(..).collect());
        }
        match self {
            Self::Few(few) => match few.iter().position(|(key, _)| **key == *token) {
                Some(at) => (&mut few[at].1, false),
                None => {
                    few.push((token.into(), Node::new()));
                    let last = few.len() - 1;
                    (&mut few[last].1, true)
                }
            },
            Self::Many(many) => {
                let created = !many.contains_key(token);
                if created {
                    many.insert(token.into(), Node::new());
                }
                let child = many
                    .get_mut(token)
                    .expect("literal child exists: it was found or inserted just above");
                (child, created)
            }
        }
    }

    fn remove(&mut self, token: &[u8]) {
        match self {
            Self::Few(few) => {
                if let Some(at) = few.iter().position(|(key, _)| **key == *token) {
                    few.swap_remove(at);
                }
            }
            Self::Many(many) => {
                many.remove(token);
                // Back to a vector well below the threshold, so churn at the boundary does not
                // flip representations on every insert and remove.
                if many.len() <= FEW_CHILDREN / 2 {
                    *self = Self::Few(many.drain().collect());
                }
            }
        }
    }

    fn drain_into(&mut self, stack: &mut Vec<Node<T>>) {
        match self {
            Self::Few(few) => stack.extend(few.drain(..).map(|(_, child)| child)),
            Self::Many(many) => stack.extend(many.drain().map(|(_, child)| child)),
        }
    }
}

/// The queue group entries stored at one node.
#[derive(Debug)]
struct NodeQueue<T> {
    name: Bytes,
    members: Vec<T>,
}

#[derive(Debug)]
struct Node<T> {
    literal: LiteralChildren<T>,
    star: Option<Box<Node<T>>>,
    full: Option<Box<Node<T>>>,
    plain: Vec<T>,
    queues: Vec<NodeQueue<T>>,
}

impl<T> Node<T> {
    fn new() -> Self {
        Self {
            literal: LiteralChildren::Few(Vec::new()),
            star: None,
            full: None,
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }

    fn is_prunable(&self) -> bool {
        self.literal.is_empty()
            && self.star.is_none()
            && self.full.is_none()
            && self.plain.is_empty()
            && self.queues.is_empty()
    }

    /// Moves every child of `self` onto `stack`, leaving `self` a leaf.
    fn detach_children_into(&mut self, stack: &mut Vec<Node<T>>) {
        self.literal.drain_into(stack);
        stack.extend(self.star.take().map(|child| *child));
        stack.extend(self.full.take().map(|child| *child));
    }

    fn has_subscriptions(&self) -> bool {
        !self.plain.is_empty() || !self.queues.is_empty()
    }
}

impl<T: Clone> Node<T> {
    /// Appends this node's subscriptions to `out`, merging queue groups by name.
    fn collect_into(&self, out: &mut MatchResult<T>) {
        out.plain.extend_from_slice(&self.plain);
        for queue in &self.queues {
            match out.queues.iter_mut().find(|group| group.name == queue.name) {
                Some(group) => group.members.extend_from_slice(&queue.members),
                None => out.queues.push(QueueGroup {
                    name: queue.name.clone(),
                    members: queue.members.clone(),
                }),
            }
        }
    }

    /// Collects every subscription under `self` matching `rest`, a non-empty remainder of a
    /// subject whose tokens are all non-empty.
    fn collect_matches(&self, rest: &[u8], out: &mut MatchResult<T>) {
        if let Some(full) = &self.full {
            full.collect_into(out);
        }
        let (token, next) = split_first_token(rest);
        if let Some(child) = self.literal.get(token) {
            match next {
                None => child.collect_into(out),
                Some(next) => child.collect_matches(next, out),
            }
        }
        if let Some(star) = &self.star {
            match next {
                None => star.collect_into(out),
                Some(next) => star.collect_matches(next, out),
            }
        }
    }

    /// Like `collect_matches`, but stops at the first subscription found.
    fn has_match(&self, rest: &[u8]) -> bool {
        if self
            .full
            .as_ref()
            .is_some_and(|full| full.has_subscriptions())
        {
            return true;
        }
        let (token, next) = split_first_token(rest);
        let child_matches = |child: &Node<T>| match next {
            None => child.has_subscriptions(),
            Some(next) => child.has_match(next),
        };
        if self.literal.get(token).is_some_and(child_matches) {
            return true;
        }
        match &self.star {
            Some(star) => child_matches(star),
            None => false,
        }
    }
}

impl<T: PartialEq> Node<T> {
    /// Removes `sub` from the node reached by `rest`, pruning nodes left empty below `self`.
    fn remove(
        &mut self,
        rest: &[u8],
        queue: Option<&[u8]>,
        sub: &T,
        node_count: &mut usize,
    ) -> Result<(), TrieError> {
        let (token, next) = split_first_token(rest);
        let child = match token {
            b"*" => self.star.as_deref_mut(),
            b">" => self.full.as_deref_mut(),
            _ => self.literal.get_mut(token),
        }
        .ok_or(TrieError::NotFound)?;
        match next {
            Some(next) => child.remove(next, queue, sub, node_count)?,
            None => child.remove_here(queue, sub)?,
        }
        if child.is_prunable() {
            match token {
                b"*" => self.star = None,
                b">" => self.full = None,
                _ => self.literal.remove(token),
            }
            *node_count -= 1;
        }
        Ok(())
    }

    fn remove_here(&mut self, queue: Option<&[u8]>, sub: &T) -> Result<(), TrieError> {
        match queue {
            None => {
                let at = self
                    .plain
                    .iter()
                    .position(|s| s == sub)
                    .ok_or(TrieError::NotFound)?;
                self.plain.remove(at);
            }
            Some(name) => {
                let group_at = self
                    .queues
                    .iter()
                    .position(|q| q.name == name)
                    .ok_or(TrieError::NotFound)?;
                let group = &mut self.queues[group_at];
                let at = group
                    .members
                    .iter()
                    .position(|s| s == sub)
                    .ok_or(TrieError::NotFound)?;
                group.members.remove(at);
                if group.members.is_empty() {
                    self.queues.remove(group_at);
                }
            }
        }
        Ok(())
    }
}

/// Tokens are usually short, and memchr's fixed cost dominates on a handful of bytes: look at
/// the first bytes directly and hand longer tokens to memchr.
const SHORT_TOKEN_SCAN: usize = 16;

/// The index of the first `.` in `subject`, if any.
#[inline]
fn find_dot(subject: &[u8]) -> Option<usize> {
    let head = &subject[..subject.len().min(SHORT_TOKEN_SCAN)];
    match head.iter().position(|&b| b == b'.') {
        Some(dot) => Some(dot),
        None if subject.len() > SHORT_TOKEN_SCAN => {
            memchr::memchr(b'.', &subject[SHORT_TOKEN_SCAN..]).map(|dot| dot + SHORT_TOKEN_SCAN)
        }
        None => None,
    }
}

/// Splits off the first `.`-separated token; `None` when it was the last token.
#[inline]
fn split_first_token(subject: &[u8]) -> (&[u8], Option<&[u8]>) {
    match find_dot(subject) {
        Some(dot) => (&subject[..dot], Some(&subject[dot + 1..])),
        None => (subject, None),
    }
}

/// True if the subject is non-empty and has no empty token.
#[inline]
fn has_only_nonempty_tokens(subject: &[u8]) -> bool {
    let mut previous = b'.';
    for &b in subject {
        if b == b'.' && previous == b'.' {
            return false;
        }
        previous = b;
    }
    previous != b'.'
}

/// The most tokens a subscription subject may have. Matching and removal recurse once per trie
/// level, so this bounds their stack use (nats-server has no such limit, but its default 4 KiB
/// control line already caps a subject at ~2K tokens).
pub const MAX_SUBJECT_TOKENS: usize = 4096;

/// Subscriptions indexed by subject. `T` is the caller's subscription handle; removal finds the
/// entry by `==`.
#[derive(Debug)]
pub struct SubjectTrie<T> {
    root: Node<T>,
    len: usize,
    /// Nodes below the root; returns to zero when every subscription is removed.
    node_count: usize,
    generation: u64,
}

/// Tears the tree down with an explicit stack: the derived recursive drop would use one stack
/// frame per level and overflow on deep subjects.
impl<T> Drop for SubjectTrie<T> {
    fn drop(&mut self) {
        let mut stack = Vec::new();
        self.root.detach_children_into(&mut stack);
        while let Some(mut node) = stack.pop() {
            node.detach_children_into(&mut stack);
        }
    }
}

impl<T: Clone + PartialEq> Default for SubjectTrie<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + PartialEq> SubjectTrie<T> {
    pub fn new() -> Self {
        Self {
            root: Node::new(),
            len: 0,
            node_count: 0,
            generation: 0,
        }
    }

    /// Adds a subscription; the subject must be a valid subscribe subject (and the queue name,
    /// if any, a valid queue name — an invalid one is also reported as `InvalidSubject`).
    pub fn insert(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        sub: T,
    ) -> Result<(), TrieError> {
        if !is_valid_subject(subject)
            || queue.is_some_and(|q| !is_valid_queue_name(q))
            || memchr::memchr_iter(b'.', subject).count() >= MAX_SUBJECT_TOKENS
        {
            return Err(TrieError::InvalidSubject);
        }
        let mut node = &mut self.root;
        for token in subject.split(|&b| b == b'.') {
            node = match token {
                b"*" => node.star.get_or_insert_with(|| {
                    self.node_count += 1;
                    Box::new(Node::new())
                }),
                b">" => node.full.get_or_insert_with(|| {
                    self.node_count += 1;
                    Box::new(Node::new())
                }),
                _ => {
                    let (child, created) = node.literal.get_or_insert(token);
                    if created {
                        self.node_count += 1;
                    }
                    child
                }
            };
        }
        match queue {
            None => node.plain.push(sub),
            Some(name) => match node.queues.iter_mut().find(|q| q.name == name) {
                Some(group) => group.members.push(sub),
                None => node.queues.push(NodeQueue {
                    name: Bytes::copy_from_slice(name),
                    members: vec![sub],
                }),
            },
        }
        self.len += 1;
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    /// Removes the subscription equal to `sub` from `subject` (and `queue`); prunes empty nodes.
    pub fn remove(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        sub: &T,
    ) -> Result<(), TrieError> {
        if !is_valid_subject(subject) {
            return Err(TrieError::InvalidSubject);
        }
        self.root
            .remove(subject, queue, sub, &mut self.node_count)?;
        self.len -= 1;
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    /// Everything that matches a literal subject. A subject with an empty token (or an empty
    /// subject) matches nothing, as in nats-server; a `*` or `>` token in the subject is matched
    /// like any other token (so only by wildcard subscriptions).
    pub fn matches(&self, subject: &[u8]) -> MatchResult<T> {
        let mut out = MatchResult::new();
        self.matches_into(subject, &mut out);
        out
    }

    /// Like [`matches`](Self::matches), but appends to `out` so its allocations can be reused.
    pub fn matches_into(&self, subject: &[u8], out: &mut MatchResult<T>) {
        if self.len == 0 || !has_only_nonempty_tokens(subject) {
            return;
        }
        self.root.collect_matches(subject, out);
    }

    /// True if anything at all matches (cheaper than `matches`).
    pub fn has_interest(&self, subject: &[u8]) -> bool {
        self.len != 0 && has_only_nonempty_tokens(subject) && self.root.has_match(subject)
    }

    /// Number of subscriptions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Incremented on every insert and remove; callers use it to invalidate match caches.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of trie nodes below the root (for tests and `/subsz`-style statistics).
    pub fn node_count(&self) -> usize {
        self.node_count
    }
}

#[cfg(test)]
#[path = "trie_test.rs"]
mod tests;
