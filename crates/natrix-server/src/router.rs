//! Subscription registry and message routing: the shared subject trie, the subscription record,
//! and the per-connection match cache that keeps the hot publish path off the trie's lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use natrix_subject::{MatchResult, SubjectTrie, TrieError};
use parking_lot::RwLock;

use crate::client::Client;
use crate::cluster::interest::{ForwardPlan, RemoteEntry, RemoteMatch, TrieChange};
use crate::cluster::{Link, Mesh};

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
    /// Set for subscriptions of services inside the node: called instead of queueing a MSG.
    pub internal: Option<crate::internal::InternalHandler>,
    /// An internal subscription that, like a client's, is advertised to the other nodes and
    /// receives what they forward (a stream copying from an origin led elsewhere).
    pub routed: bool,
}

impl Subscription {
    /// Whether the other nodes learn of this subscription and forward matching messages to it.
    pub fn advertised(&self) -> bool {
        self.internal.is_none() || self.routed
    }
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

/// Everything a published subject reaches: local subscriptions and, in a cluster, the peers
/// with matching interest (empty, and never looked up, without a cluster).
#[derive(Debug, Default)]
pub(crate) struct Routed {
    pub local: MatchResult<SubRef>,
    pub remote: RemoteMatch<Arc<Link>>,
}

/// Reusable scratch space of the clustered delivery path.
#[derive(Debug, Default)]
pub(crate) struct ForwardScratch {
    served: Vec<Bytes>,
    plan: ForwardPlan<Arc<Link>>,
}

/// Delivers a message to local subscribers (every plain one, one member per queue group) and
/// forwards it once to each peer with plain interest and to one peer per queue group no local
/// member took, as nats-server prefers local queue members. `forward` sends to one peer with
/// the queue groups it must serve. Returns whether anyone (local or remote) took it.
pub(crate) fn route_to_matches(
    routed: &Routed,
    scratch: &mut ForwardScratch,
    deliver: impl FnMut(&SubRef) -> bool,
    mut forward: impl FnMut(&Arc<Link>, Vec<Bytes>),
) -> bool {
    scratch.served.clear();
    let mut delivered = deliver_local(&routed.local, deliver, |name| {
        scratch.served.push(name.clone());
    });
    if routed.remote.is_empty() {
        return delivered;
    }
    scratch
        .plan
        .plan(&routed.remote, &scratch.served, || fastrand::u64(..));
    for (link, queues) in scratch.plan.targets.drain(..) {
        forward(&link, queues);
        delivered = true;
    }
    delivered
}

/// Offers a message to every plain subscriber and to one member of each queue group, starting
/// at a random member and moving on while `deliver` declines (closed, echo off, max reached).
/// Returns whether anyone took it.
pub(crate) fn deliver_to_matches(
    matches: &MatchResult<SubRef>,
    deliver: impl FnMut(&SubRef) -> bool,
) -> bool {
    deliver_local(matches, deliver, |_| {})
}

/// [`deliver_to_matches`], telling `served` the name of each queue group a member took.
fn deliver_local(
    matches: &MatchResult<SubRef>,
    mut deliver: impl FnMut(&SubRef) -> bool,
    mut served: impl FnMut(&Bytes),
) -> bool {
    let mut delivered = false;
    for sub in &matches.plain {
        delivered |= deliver(sub);
    }
    for group in &matches.queues {
        let n = group.members.len();
        if n == 0 {
            continue;
        }
        let start = fastrand::usize(..n);
        if (0..n).any(|i| deliver(&group.members[(start + i) % n])) {
            delivered = true;
            served(&group.name);
        }
    }
    delivered
}

/// The server-wide subscription index.
#[derive(Debug, Default)]
pub(crate) struct Router {
    trie: RwLock<SubjectTrie<SubRef>>,
    /// Mirror of the trie's generation, readable without the lock.
    generation: AtomicU64,
    next_sub_id: AtomicU64,
    /// Counters for /subsz; match-cache figures arrive once per read batch (`MatchCache::report`).
    pub stats: RouterStats,
    /// Woken on every new subscription, for services waiting for interest (a push consumer
    /// waiting for its deliver subject's subscriber). No waiters: no cost.
    pub subscribed: Arc<tokio::sync::Notify>,
    /// Interest of the other nodes of the cluster, by peer session.
    remote: RwLock<SubjectTrie<RemoteEntry<Arc<Link>>>>,
    /// The route mesh, once clustering started: told about local interest changes.
    mesh: OnceLock<Arc<Mesh>>,
}

/// Subscription-index statistics as nats-server reports them in /subsz.
#[derive(Debug, Default)]
pub(crate) struct RouterStats {
    pub inserts: AtomicU64,
    pub removes: AtomicU64,
    /// Lookups of a subject's subscribers (cache hits and misses).
    pub matches: AtomicU64,
    pub cache_hits: AtomicU64,
    /// Entries currently held in all connections' match caches.
    pub cached: AtomicI64,
    /// Sum of the fanouts of those entries (for the average).
    pub cached_fanout: AtomicI64,
    /// Largest fanout ever cached (a high-water mark, unlike nats-server's current maximum).
    pub max_fanout: AtomicU64,
}

impl Router {
    pub fn next_sub_id(&self) -> u64 {
        self.next_sub_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn insert(&self, sub: &Arc<Subscription>) -> Result<(), TrieError> {
        let mut trie = self.trie.write();
        let result = trie.insert(&sub.subject, sub.queue.as_deref(), SubRef(sub.clone()));
        self.generation.fetch_add(1, Ordering::AcqRel);
        if result.is_ok() {
            self.stats.inserts.fetch_add(1, Ordering::Relaxed);
            // Internal subscriptions (JetStream) are not advertised to peers, unless routed.
            if sub.advertised()
                && let Some(mesh) = self.mesh.get()
            {
                // Under the trie lock: peers see interest changes in the order they happened.
                mesh.local_interest_changed(&sub.subject, sub.queue.as_deref(), 1);
            }
            self.subscribed.notify_waiters();
        }
        result
    }

    pub fn remove(&self, sub: &Arc<Subscription>) {
        let mut trie = self.trie.write();
        // NotFound is fine: an auto-unsubscribe and an UNSUB can race to remove the same entry.
        if trie
            .remove(&sub.subject, sub.queue.as_deref(), &SubRef(sub.clone()))
            .is_ok()
        {
            self.stats.removes.fetch_add(1, Ordering::Relaxed);
            if sub.advertised()
                && let Some(mesh) = self.mesh.get()
            {
                mesh.local_interest_changed(&sub.subject, sub.queue.as_deref(), -1);
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Starts advertising local interest to the mesh (once, before clients connect).
    pub fn install_mesh(&self, mesh: Arc<Mesh>) {
        let _ = self.mesh.set(mesh);
    }

    pub fn mesh(&self) -> Option<&Arc<Mesh>> {
        self.mesh.get()
    }

    /// Applies one interest update a peer sent on its session.
    pub fn apply_peer_interest(
        &self,
        link: &Arc<Link>,
        subject: Bytes,
        queue: Option<Bytes>,
        count: u32,
    ) {
        let mut remote = self.remote.write();
        let change = link
            .interest
            .lock()
            .apply(subject.clone(), queue.clone(), count);
        let entry = |weight| RemoteEntry {
            peer: link.clone(),
            weight,
        };
        let result = match change {
            TrieChange::Unchanged => return,
            TrieChange::Insert { weight } => {
                remote.insert(&subject, queue.as_deref(), entry(weight))
            }
            TrieChange::Replace { old, new } => {
                let _ = remote.remove(&subject, queue.as_deref(), &entry(old));
                remote.insert(&subject, queue.as_deref(), entry(new))
            }
            TrieChange::Remove { weight } => {
                remote.remove(&subject, queue.as_deref(), &entry(weight))
            }
        };
        self.generation.fetch_add(1, Ordering::AcqRel);
        drop(remote);
        if let Err(err) = result {
            tracing::debug!(rid = link.rid, %err, subject = %String::from_utf8_lossy(&subject), "ignoring peer interest");
        }
        if matches!(change, TrieChange::Insert { .. }) {
            self.subscribed.notify_waiters();
        }
    }

    /// Removes everything a peer advertised (its session ended).
    pub fn remove_peer_interest(&self, link: &Arc<Link>) {
        let mut remote = self.remote.write();
        for ((subject, queue), weight) in link.interest.lock().drain() {
            let _ = remote.remove(
                &subject,
                queue.as_deref(),
                &RemoteEntry {
                    peer: link.clone(),
                    weight,
                },
            );
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Local subscriptions and peers matching `subject`.
    pub fn routed(&self, subject: &[u8]) -> Routed {
        let local = self.trie.read().matches(subject);
        let remote = if self.mesh.get().is_some() {
            RemoteMatch::from_matches(self.remote.read().matches(subject))
        } else {
            RemoteMatch::default()
        };
        Routed { local, remote }
    }

    /// Whether any subscription, here or on a peer, matches `subject`.
    pub fn has_interest(&self, subject: &[u8]) -> bool {
        self.trie.read().has_interest(subject)
            || (self.mesh.get().is_some() && self.remote.read().has_interest(subject))
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
    entries: HashMap<Bytes, Arc<Routed>>,
    /// Statistics kept locally and published to `RouterStats` once per read batch, so that the
    /// publish path touches no shared counter.
    lookups: u64,
    hits: u64,
    fanout_sum: u64,
    max_fanout: u64,
    reported_len: i64,
    reported_fanout: i64,
}

/// Bound on cached subjects per connection; the cache is cleared when it fills up.
const MATCH_CACHE_MAX: usize = 1024;

impl MatchCache {
    pub fn lookup(&mut self, router: &Router, subject: &Bytes) -> Arc<Routed> {
        self.lookups += 1;
        let generation = router.generation();
        if generation != self.generation {
            self.clear();
            self.generation = generation;
        } else if let Some(hit) = self.entries.get(subject.as_ref()) {
            self.hits += 1;
            return hit.clone();
        }
        let result = Arc::new(router.routed(subject));
        if self.entries.len() >= MATCH_CACHE_MAX {
            self.clear();
        }
        // nats-server's fanout: plain subscribers plus one per queue group.
        let fanout = (result.local.plain.len() + result.local.queues.len()) as u64;
        self.fanout_sum += fanout;
        self.max_fanout = self.max_fanout.max(fanout);
        // Own the key: a slice of the read buffer would pin that whole buffer in memory.
        self.entries
            .insert(Bytes::copy_from_slice(subject), result.clone());
        result
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.fanout_sum = 0;
    }

    /// Publishes this cache's statistics to the router (once per read batch).
    pub fn report(&mut self, router: &Router) {
        if self.lookups == 0 {
            // Entries only change on lookups: nothing new to report.
            return;
        }
        let stats = &router.stats;
        stats
            .matches
            .fetch_add(std::mem::take(&mut self.lookups), Ordering::Relaxed);
        stats
            .cache_hits
            .fetch_add(std::mem::take(&mut self.hits), Ordering::Relaxed);
        stats
            .max_fanout
            .fetch_max(self.max_fanout, Ordering::Relaxed);
        self.report_sizes(stats);
    }

    /// Withdraws this cache's entries from the router's figures (the connection is closing).
    pub fn release(&mut self, router: &Router) {
        self.report(router);
        self.clear();
        self.report_sizes(&router.stats);
    }

    fn report_sizes(&mut self, stats: &RouterStats) {
        let len = self.entries.len() as i64;
        let fanout = self.fanout_sum as i64;
        if len != self.reported_len {
            stats
                .cached
                .fetch_add(len - self.reported_len, Ordering::Relaxed);
            self.reported_len = len;
        }
        if fanout != self.reported_fanout {
            stats
                .cached_fanout
                .fetch_add(fanout - self.reported_fanout, Ordering::Relaxed);
            self.reported_fanout = fanout;
        }
    }
}
