//! Interest bookkeeping of the route mesh, pure and free of I/O: how many local subscriptions
//! stand behind each advertised (subject, queue) interest, what each peer advertised, which peers
//! a published message is forwarded to, and which peer serves a queue group no local member
//! took.

use std::collections::HashMap;

use bytes::Bytes;
use natrix_subject::MatchResult;

/// A subject and, for queue subscriptions, the queue group.
pub(crate) type InterestKey = (Bytes, Option<Bytes>);

/// The node's own (client) subscriptions, counted per subject and queue group, so that many
/// local subscriptions on one subject are one remote interest.
#[derive(Debug, Default)]
pub(crate) struct LocalInterest {
    /// Signed: an auto-unsubscribe on a publisher's task can be counted before the insert it
    /// follows; the net count is what matters.
    counts: HashMap<InterestKey, i64>,
}

impl LocalInterest {
    /// Counts one subscription more (`delta` = 1) or less (-1). Returns the count peers must be
    /// told (0 removes the interest), or `None` when the change is invisible to them: a plain
    /// interest is announced only when it appears or disappears, a queue interest on every
    /// change of its weight.
    pub fn change(&mut self, subject: &[u8], queue: Option<&[u8]>, delta: i64) -> Option<u32> {
        let key = (
            Bytes::copy_from_slice(subject),
            queue.map(Bytes::copy_from_slice),
        );
        let entry = self.counts.entry(key.clone()).or_insert(0);
        let before = (*entry).max(0);
        *entry += delta;
        let now = *entry;
        let after = now.max(0);
        if now == 0 {
            self.counts.remove(&key);
        }
        if before == after || (queue.is_none() && before > 0 && after > 0) {
            return None;
        }
        Some(clamp_count(after))
    }

    /// Every current interest with the count to announce (1 for plain interest).
    pub fn snapshot(&self) -> Vec<(Bytes, Option<Bytes>, u32)> {
        self.counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|((subject, queue), n)| {
                let count = if queue.is_some() { clamp_count(*n) } else { 1 };
                (subject.clone(), queue.clone(), count)
            })
            .collect()
    }

    /// Number of distinct interests (what peers see).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.counts.values().filter(|n| **n > 0).count()
    }
}

fn clamp_count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// What applying a peer's interest update means for the routing trie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrieChange {
    Insert { weight: u32 },
    Replace { old: u32, new: u32 },
    Remove { weight: u32 },
    Unchanged,
}

/// The interest one peer advertised on its session.
#[derive(Debug, Default)]
pub(crate) struct PeerInterest {
    entries: HashMap<InterestKey, u32>,
}

impl PeerInterest {
    pub fn apply(&mut self, subject: Bytes, queue: Option<Bytes>, count: u32) -> TrieChange {
        let key = (subject, queue);
        match (self.entries.get(&key).copied(), count) {
            (None, 0) => TrieChange::Unchanged,
            (None, new) => {
                self.entries.insert(key, new);
                TrieChange::Insert { weight: new }
            }
            (Some(old), 0) => {
                self.entries.remove(&key);
                TrieChange::Remove { weight: old }
            }
            (Some(old), new) if old == new => TrieChange::Unchanged,
            (Some(old), new) => {
                self.entries.insert(key, new);
                TrieChange::Replace { old, new }
            }
        }
    }

    /// Removes everything (the session ended); returns what was there.
    pub fn drain(&mut self) -> Vec<(InterestKey, u32)> {
        self.entries.drain().collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Subjects (with `queue` suffix for queue interest), for /routez `subscriptions_list`.
    pub fn subjects(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .entries
            .keys()
            .map(|(s, q)| match q {
                Some(q) => format!(
                    "{} {}",
                    String::from_utf8_lossy(s),
                    String::from_utf8_lossy(q)
                ),
                None => String::from_utf8_lossy(s).into_owned(),
            })
            .collect();
        out.sort();
        out
    }
}

/// A peer handle as the routing trie holds it.
pub(crate) trait PeerKey: Clone {
    /// Unique per session.
    fn key(&self) -> u64;
}

/// One peer interest in the routing trie; equal by peer (the trie keys subject and queue).
#[derive(Debug, Clone)]
pub(crate) struct RemoteEntry<P> {
    pub peer: P,
    pub weight: u32,
}

impl<P: PeerKey> PartialEq for RemoteEntry<P> {
    fn eq(&self, other: &Self) -> bool {
        self.peer.key() == other.peer.key()
    }
}

/// The members of one queue group on other nodes, one per peer with its total weight.
#[derive(Debug, Clone)]
pub(crate) struct RemoteQueue<P> {
    pub name: Bytes,
    pub members: Vec<(P, u32)>,
}

/// The peers interested in one subject: each at most once per plain interest and once per
/// queue group, whatever number of their subjects match.
#[derive(Debug, Clone)]
pub(crate) struct RemoteMatch<P> {
    pub plain: Vec<P>,
    pub queues: Vec<RemoteQueue<P>>,
}

impl<P> Default for RemoteMatch<P> {
    fn default() -> Self {
        Self {
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }
}

impl<P: PeerKey> RemoteMatch<P> {
    pub fn from_matches(matches: MatchResult<RemoteEntry<P>>) -> Self {
        let mut plain: Vec<P> = Vec::with_capacity(matches.plain.len());
        for entry in matches.plain {
            if !plain.iter().any(|p| p.key() == entry.peer.key()) {
                plain.push(entry.peer);
            }
        }
        let queues = matches
            .queues
            .into_iter()
            .map(|group| {
                let mut members: Vec<(P, u32)> = Vec::with_capacity(group.members.len());
                for entry in group.members {
                    match members
                        .iter_mut()
                        .find(|(p, _)| p.key() == entry.peer.key())
                    {
                        Some((_, w)) => *w = w.saturating_add(entry.weight),
                        None => members.push((entry.peer, entry.weight)),
                    }
                }
                RemoteQueue {
                    name: group.name,
                    members,
                }
            })
            .collect();
        Self { plain, queues }
    }

    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }
}

/// Picks a member in proportion to its weight; `roll` is uniform in `0..u64::MAX`.
pub(crate) fn pick_weighted<P>(members: &[(P, u32)], roll: u64) -> Option<&P> {
    let total: u64 = members.iter().map(|(_, w)| u64::from((*w).max(1))).sum();
    if total == 0 {
        return None;
    }
    let mut at = roll % total;
    for (peer, weight) in members {
        let w = u64::from((*weight).max(1));
        if at < w {
            return Some(peer);
        }
        at -= w;
    }
    None
}

/// The peers one message goes to, each once, with the queue groups it must serve.
#[derive(Debug)]
pub(crate) struct ForwardPlan<P> {
    pub targets: Vec<(P, Vec<Bytes>)>,
}

impl<P> Default for ForwardPlan<P> {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
        }
    }
}

impl<P: PeerKey> ForwardPlan<P> {
    /// Plans the forwarding of one message: every peer with plain interest, and for each remote
    /// queue group that no local member served (`served_locally` names those that were), one
    /// peer chosen by weight with `roll`.
    pub fn plan(
        &mut self,
        remote: &RemoteMatch<P>,
        served_locally: &[Bytes],
        mut roll: impl FnMut() -> u64,
    ) {
        self.targets.clear();
        for peer in &remote.plain {
            self.targets.push((peer.clone(), Vec::new()));
        }
        for group in &remote.queues {
            if served_locally.contains(&group.name) {
                continue;
            }
            let Some(peer) = pick_weighted(&group.members, roll()) else {
                continue;
            };
            match self.targets.iter_mut().find(|(p, _)| p.key() == peer.key()) {
                Some((_, queues)) => queues.push(group.name.clone()),
                None => self.targets.push((peer.clone(), vec![group.name.clone()])),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natrix_subject::SubjectTrie;

    #[derive(Debug, Clone, PartialEq)]
    struct Peer(u64);

    impl PeerKey for Peer {
        fn key(&self) -> u64 {
            self.0
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn many_local_plain_subscriptions_are_one_interest_announced_once() {
        let mut local = LocalInterest::default();
        assert_eq!(local.change(b"foo", None, 1), Some(1));
        assert_eq!(local.change(b"foo", None, 1), None);
        assert_eq!(local.change(b"foo", None, -1), None);
        assert_eq!(local.len(), 1);
        assert_eq!(local.change(b"foo", None, -1), Some(0));
        assert_eq!(local.len(), 0);
        assert!(local.snapshot().is_empty());
    }

    #[test]
    fn queue_interest_is_announced_with_its_weight_on_every_change() {
        let mut local = LocalInterest::default();
        assert_eq!(local.change(b"q", Some(b"g"), 1), Some(1));
        assert_eq!(local.change(b"q", Some(b"g"), 1), Some(2));
        assert_eq!(local.snapshot(), vec![(b("q"), Some(b("g")), 2)]);
        assert_eq!(local.change(b"q", Some(b"g"), -1), Some(1));
        assert_eq!(local.change(b"q", Some(b"g"), -1), Some(0));
    }

    #[test]
    fn a_removal_counted_before_its_insert_leaves_no_interest() {
        let mut local = LocalInterest::default();
        assert_eq!(local.change(b"foo", None, -1), None);
        assert_eq!(local.change(b"foo", None, 1), None);
        assert_eq!(local.len(), 0);
        assert_eq!(local.change(b"foo", None, 1), Some(1));
    }

    #[test]
    fn peer_interest_turns_counts_into_trie_changes() {
        let mut peer = PeerInterest::default();
        assert_eq!(
            peer.apply(b("a"), None, 1),
            TrieChange::Insert { weight: 1 }
        );
        assert_eq!(peer.apply(b("a"), None, 1), TrieChange::Unchanged);
        assert_eq!(
            peer.apply(b("q"), Some(b("g")), 3),
            TrieChange::Insert { weight: 3 }
        );
        assert_eq!(
            peer.apply(b("q"), Some(b("g")), 1),
            TrieChange::Replace { old: 3, new: 1 }
        );
        assert_eq!(peer.subjects(), vec!["a".to_string(), "q g".to_string()]);
        assert_eq!(
            peer.apply(b("a"), None, 0),
            TrieChange::Remove { weight: 1 }
        );
        assert_eq!(peer.apply(b("zzz"), None, 0), TrieChange::Unchanged);
        assert_eq!(peer.drain().len(), 1);
        assert_eq!(peer.len(), 0);
    }

    fn remote_match(
        entries: &[(&str, Option<&str>, u64, u32)],
        subject: &str,
    ) -> RemoteMatch<Peer> {
        let mut trie = SubjectTrie::new();
        for (s, q, peer, weight) in entries {
            trie.insert(
                s.as_bytes(),
                q.map(str::as_bytes),
                RemoteEntry {
                    peer: Peer(*peer),
                    weight: *weight,
                },
            )
            .expect("valid test subject");
        }
        RemoteMatch::from_matches(trie.matches(subject.as_bytes()))
    }

    #[test]
    fn a_peer_matching_through_several_wildcards_gets_the_message_once() {
        let m = remote_match(
            &[
                ("foo.*", None, 1, 1),
                ("foo.>", None, 1, 1),
                ("foo.bar", None, 2, 1),
                ("baz", None, 3, 1),
            ],
            "foo.bar",
        );
        let mut keys: Vec<u64> = m.plain.iter().map(|p| p.0).collect();
        keys.sort();
        assert_eq!(keys, vec![1, 2]);
    }

    #[test]
    fn one_queue_group_on_two_peers_goes_to_exactly_one_of_them() {
        let m = remote_match(
            &[("work", Some("g"), 1, 1), ("work", Some("g"), 2, 3)],
            "work",
        );
        assert_eq!(m.queues.len(), 1);
        let mut plan = ForwardPlan::default();
        let mut counts = [0u32; 3];
        for roll in 0..400u64 {
            plan.plan(&m, &[], || roll);
            assert_eq!(plan.targets.len(), 1);
            let (peer, queues) = &plan.targets[0];
            assert_eq!(queues, &vec![b("g")]);
            counts[peer.0 as usize] += 1;
        }
        // Weights 1 and 3: a quarter to peer 1.
        assert_eq!((counts[1], counts[2]), (100, 300));
    }

    #[test]
    fn a_queue_group_served_locally_is_not_forwarded_but_plain_interest_is() {
        let m = remote_match(
            &[
                ("work", Some("g"), 1, 1),
                ("work", None, 1, 1),
                ("work", Some("h"), 2, 1),
            ],
            "work",
        );
        let mut plan = ForwardPlan::default();
        plan.plan(&m, &[b("g")], || 0);
        let mut targets: Vec<(u64, Vec<Bytes>)> =
            plan.targets.iter().map(|(p, q)| (p.0, q.clone())).collect();
        targets.sort_by_key(|t| t.0);
        assert_eq!(targets, vec![(1, vec![]), (2, vec![b("h")])]);
    }

    #[test]
    fn plain_and_queue_interest_of_one_peer_make_one_message_naming_the_group() {
        let m = remote_match(&[("work", Some("g"), 1, 1), ("work", None, 1, 1)], "work");
        let mut plan = ForwardPlan::default();
        plan.plan(&m, &[], || 0);
        assert_eq!(plan.targets.len(), 1);
        assert_eq!(plan.targets[0].1, vec![b("g")]);
    }

    #[test]
    fn weighted_pick_handles_empty_and_zero_weights() {
        let none: [(Peer, u32); 0] = [];
        assert!(pick_weighted(&none, 5).is_none());
        let members = [(Peer(1), 0), (Peer(2), 0)];
        assert_eq!(pick_weighted(&members, 1), Some(&Peer(2)));
    }
}
