//! Choosing the nodes that hold a stream's replicas: distinct, reachable nodes of this cluster
//! that carry every requested tag, least loaded first. The result is a deterministic function of
//! the inputs (no randomness, no dependence on the order of the candidates), so the meta leader
//! can be replaced mid-way and a test can predict every choice.
//!
//! Rules and error texts follow nats-server's `selectPeerGroup` (2.15.1, checked against running
//! 2.15.1 and 2.9.10 clusters). Where natrix differs, on purpose:
//! - an offline node never receives a new replica (nats-server places on offline nodes as long
//!   as a quorum of the group is online, which leaves new groups under-replicated);
//! - ties are broken by load (stream replicas per node), then node id, instead of by free storage
//!   and a random shuffle;
//! - no `unique_tag` and no storage reservation checks yet.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use natrix_stream::{ApiError, Placement, StreamConfig};

use crate::peer::{NodeId, PeerInfo};
use crate::tags::{EXCLUDE_PLACEMENT_TAG, has_tag};

/// The most replicas a stream may have (nats-server's `StreamMaxReplicas`).
pub const MAX_REPLICAS: u32 = 5;

/// Everything a placement decision depends on besides the candidate nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlacementRequest {
    /// How many replicas the stream needs: 1 to [`MAX_REPLICAS`]; 0 means 1, as in nats-server.
    pub replicas: u32,
    /// The stream config's `placement`: a cluster name and tags (`!tag` excludes nodes carrying
    /// `tag`, as nats-server 2.15 does; 2.9 treated it as an ordinary tag).
    pub placement: Option<Placement>,
    /// The name of the cluster this node (and so the meta group) belongs to.
    pub cluster: String,
    /// Stream replicas each node holds now ([`MetaState::load`](crate::MetaState::load)); a node
    /// missing from the map holds none.
    pub load: BTreeMap<NodeId, u64>,
    /// Nodes that must not receive a replica: a node being removed or replaced.
    pub exclude: BTreeSet<NodeId>,
    /// Current peers that stay, in order (scale-up, replacing one peer): they come first in the
    /// result and only the missing replicas are chosen. They are kept whatever their state (they
    /// already hold the data), unless also excluded. More kept peers than replicas are cut to
    /// the first `replicas` (scale-down: put the peers to keep, leader first, at the front).
    pub keep: Vec<NodeId>,
}

impl PlacementRequest {
    /// The request for a new stream with `config` (its `num_replicas` and `placement`) in
    /// `cluster`, with no load, exclusions or kept peers yet.
    pub fn for_stream(
        config: &StreamConfig,
        cluster: &str,
    ) -> Result<PlacementRequest, PlacementError> {
        let requested = config.num_replicas;
        let replicas = u32::try_from(requested)
            .ok()
            .filter(|r| *r <= MAX_REPLICAS)
            .ok_or(PlacementError::InvalidReplicas { requested })?;
        Ok(PlacementRequest {
            replicas,
            placement: config.placement.clone(),
            cluster: cluster.to_string(),
            ..PlacementRequest::default()
        })
    }
}

/// Why no placement was possible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The replica count is negative or above [`MAX_REPLICAS`].
    #[error("{}", invalid_replicas_text(*.requested))]
    InvalidReplicas {
        /// The count asked for.
        requested: i64,
    },
    /// Fewer suitable nodes than replicas (nats-server's `selectPeerError`).
    #[error("{0}")]
    NoSuitablePeers(NoSuitablePeers),
}

impl PlacementError {
    /// The JetStream API error nats-server answers with: 10005 (400) `no suitable peers for
    /// placement[, reasons]`; 10133 for a negative and 10052 `maximum replicas is 5` for too many
    /// replicas (what `checkStreamCfg` says before placement is reached).
    pub fn to_api_error(&self) -> ApiError {
        match self {
            PlacementError::InvalidReplicas { requested } if *requested < 0 => {
                ApiError::replicas_negative()
            }
            PlacementError::InvalidReplicas { requested } => {
                ApiError::stream_invalid_config(invalid_replicas_text(*requested))
            }
            PlacementError::NoSuitablePeers(reasons) => {
                ApiError::cluster_no_peers(reasons.to_string())
            }
        }
    }
}

impl From<PlacementError> for ApiError {
    fn from(e: PlacementError) -> ApiError {
        e.to_api_error()
    }
}

fn invalid_replicas_text(requested: i64) -> String {
    if requested < 0 {
        "replicas count cannot be negative".to_string()
    } else {
        format!("maximum replicas is {MAX_REPLICAS}")
    }
}

/// The reasons nodes were passed over, reported as nats-server reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoSuitablePeers {
    /// Replicas needed.
    pub required: u32,
    /// Suitable nodes found, kept peers included.
    pub found: u32,
    /// A node that was otherwise suitable is offline (`peer offline`).
    pub offline: bool,
    /// A node carries the `!jetstream` tag (`exclude tag set`).
    pub exclude_tag: bool,
    /// No node is known at all (`jetstream not enabled in cluster`).
    pub no_jetstream_cluster: bool,
    /// Requested tags that nodes lacked, as the request spells them; per node only the first
    /// missing one is counted, as in nats-server (`tags not matched ['a', 'b']`).
    pub tags_not_matched: BTreeSet<String>,
    /// Excluded tags (`!tag`) that nodes carried (`tags excluded ['a']`).
    pub tags_excluded: BTreeSet<String>,
}

impl fmt::Display for NoSuitablePeers {
    /// nats-server's `selectPeerError.Error()`, reasons in its order; tag lists sorted (Go prints
    /// them in map order).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no suitable peers for placement")?;
        for (set, reason) in [
            (self.offline, "peer offline"),
            (self.exclude_tag, "exclude tag set"),
            (
                self.no_jetstream_cluster,
                "jetstream not enabled in cluster",
            ),
        ] {
            if set {
                write!(f, ", {reason}")?;
            }
        }
        for (tags, label) in [
            (&self.tags_not_matched, "tags not matched"),
            (&self.tags_excluded, "tags excluded"),
        ] {
            if !tags.is_empty() {
                let quoted: Vec<String> = tags.iter().map(|t| format!("'{t}'")).collect();
                write!(f, ", {label} [{}]", quoted.join(", "))?;
            }
        }
        Ok(())
    }
}

/// Chooses the nodes for a stream's replicas among `candidates` (the cluster's peers, one entry
/// per node id): `request.keep` first, then the least loaded suitable nodes (ties by node id).
/// Suitable: in this cluster, not excluded, not kept already, without `!jetstream`, carrying
/// every requested tag (case-insensitive) and none of the excluded ones, online.
/// Returns exactly `max(replicas, 1)` distinct node ids, or why that many cannot be found.
pub fn place(
    candidates: &[PeerInfo],
    request: &PlacementRequest,
) -> Result<Vec<NodeId>, PlacementError> {
    let replicas = match request.replicas {
        0 => 1,
        r if r > MAX_REPLICAS => {
            return Err(PlacementError::InvalidReplicas {
                requested: i64::from(r),
            });
        }
        r => r,
    };
    let mut reasons = NoSuitablePeers {
        required: replicas,
        ..NoSuitablePeers::default()
    };
    let placement = request.placement.as_ref();
    // natrix does not span clusters: a stream pinned to another cluster has no peers here,
    // which nats-server reports as a bare "no suitable peers for placement".
    if placement.is_some_and(|p| !p.cluster.is_empty() && p.cluster != request.cluster) {
        return Err(PlacementError::NoSuitablePeers(reasons));
    }

    let mut chosen: Vec<NodeId> = Vec::new();
    for id in &request.keep {
        if !request.exclude.contains(id) && !chosen.contains(id) {
            chosen.push(*id);
        }
    }
    let replicas = replicas as usize;
    if chosen.len() >= replicas {
        chosen.truncate(replicas);
        return Ok(chosen);
    }

    let wanted: Vec<TagRule<'_>> = placement
        .map(|p| p.tags.iter().map(|t| TagRule::parse(t)).collect())
        .unwrap_or_default();
    reasons.no_jetstream_cluster = candidates.is_empty();
    let mut suitable: Vec<(u64, NodeId)> = Vec::new();
    for peer in candidates {
        let id = peer.node_id;
        if peer.cluster != request.cluster || request.exclude.contains(&id) || chosen.contains(&id)
        {
            continue;
        }
        if has_tag(&peer.tags, EXCLUDE_PLACEMENT_TAG) {
            reasons.exclude_tag = true;
            continue;
        }
        if let Some(rule) = wanted.iter().find(|rule| !rule.accepts(&peer.tags)) {
            match rule {
                TagRule::Require(tag) => reasons.tags_not_matched.insert(tag.to_string()),
                TagRule::Exclude(tag) => reasons.tags_excluded.insert(tag.to_string()),
            };
            continue;
        }
        if peer.offline {
            reasons.offline = true;
            continue;
        }
        suitable.push((request.load.get(&id).copied().unwrap_or(0), id));
    }
    // Sorting by (load, id) makes the choice independent of the candidates' order; `dedup`
    // drops a node listed twice (same id, same load).
    suitable.sort_unstable();
    suitable.dedup();

    let missing = replicas - chosen.len();
    if suitable.len() < missing {
        reasons.found = u32::try_from(chosen.len() + suitable.len()).unwrap_or(u32::MAX);
        return Err(PlacementError::NoSuitablePeers(reasons));
    }
    chosen.extend(suitable.iter().take(missing).map(|(_, id)| *id));
    Ok(chosen)
}

/// One entry of `placement.tags`: `tag` must be present, `!tag` must be absent.
enum TagRule<'a> {
    Require(&'a str),
    Exclude(&'a str),
}

impl<'a> TagRule<'a> {
    fn parse(text: &'a str) -> TagRule<'a> {
        match text.strip_prefix('!') {
            Some(tag) => TagRule::Exclude(tag),
            None => TagRule::Require(text),
        }
    }

    fn accepts(&self, tags: &[String]) -> bool {
        match self {
            TagRule::Require(tag) => has_tag(tags, tag),
            TagRule::Exclude(tag) => !has_tag(tags, tag),
        }
    }
}

#[cfg(test)]
#[path = "placement_test.rs"]
mod tests;
