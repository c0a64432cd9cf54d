//! Moving a stream's replicas. The meta group records where a stream's replicas should be (a
//! scale up or down by `STREAM.UPDATE`, a peer taken out by `STREAM.PEER.REMOVE` or
//! `SERVER.REMOVE`); the stream's leader then moves its Raft group there: new peers join as
//! learners and catch up from snapshot + log, then one membership change (openraft's joint
//! consensus) makes the assigned peers the voters, which drops the others. A leader that is
//! itself left out hands the group to a staying peer first (after the new peers have caught up),
//! and that one finishes the move. A node left out
//! removes its replica only once the group's leader no longer counts it as a member, so a
//! scale-down never strands a group without its quorum.

use natrix_raft::WatchReceiver;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use natrix_cluster::{MetaCommand, PeerInfo, PlacementRequest, StreamAssignment, place};
use natrix_raft::openraft::ChangeMembers;
use natrix_raft::{Raft, RaftNode};
use natrix_stream::{ApiError, StreamConfig};

use super::JsCluster;
use crate::jetstream::{JetStream, StreamHost};

/// How long a new replica may take to catch up (and the membership change to commit) before the
/// move is given up and tried again by a later reconciliation.
const MOVE_TIMEOUT: Duration = Duration::from_secs(60);

impl JsCluster {
    /// The cluster's peers as this node knows them, and a placement request for a stream with
    /// `config` that weighs the streams they already hold.
    pub(crate) fn placement_for(
        &self,
        config: &StreamConfig,
    ) -> Result<(Vec<PeerInfo>, PlacementRequest), ApiError> {
        let (candidates, load) = {
            let meta = self.meta_state.read();
            let candidates: Vec<PeerInfo> = meta.peers.values().cloned().collect();
            (candidates, meta.load())
        };
        let mut request = PlacementRequest::for_stream(config, &self.cluster_name)
            .map_err(|e| e.to_api_error())?;
        request.load = load;
        Ok((candidates, request))
    }

    /// The peers a stream should have with `config`'s replica count: its current peers except
    /// `exclude`, `leader` first (a scale-down keeps the leader), then new ones by placement.
    pub(crate) fn replan(
        &self,
        assignment: &StreamAssignment,
        config: &StreamConfig,
        leader: Option<u64>,
        exclude: BTreeSet<u64>,
    ) -> Result<Vec<u64>, ApiError> {
        let (candidates, mut request) = self.placement_for(config)?;
        let mut keep: Vec<u64> = assignment
            .peers
            .iter()
            .copied()
            .filter(|p| !exclude.contains(p))
            .collect();
        if let Some(at) = leader.and_then(|l| keep.iter().position(|p| *p == l)) {
            let leader = keep.remove(at);
            keep.insert(0, leader);
        }
        request.keep = keep;
        request.exclude = exclude;
        place(&candidates, &request).map_err(|e| e.to_api_error())
    }

    /// Records new peers for a stream in the meta group.
    pub(crate) async fn set_stream_peers(
        &self,
        name: &str,
        peers: Vec<u64>,
    ) -> Result<(), ApiError> {
        self.propose(&MetaCommand::SetStreamPeers {
            name: name.to_string(),
            peers,
        })
        .await
        .map(drop)
    }

    /// Takes a removed server out of the meta group's voters (this node leads the group).
    pub(crate) async fn remove_meta_voter(&self, node_id: u64) {
        let voter = self
            .meta
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == node_id);
        if !voter {
            return;
        }
        let remove = ChangeMembers::RemoveVoters(BTreeSet::from([node_id]));
        match tokio::time::timeout(MOVE_TIMEOUT, self.meta.change_membership(remove, false)).await {
            Ok(Ok(_)) => tracing::info!("JetStream cluster: {node_id:016x} left the meta group"),
            Ok(Err(err)) => tracing::warn!("meta group: removing {node_id:016x}: {err}"),
            Err(_) => tracing::warn!("meta group: removing {node_id:016x} timed out"),
        }
    }

    /// On this node's stream leaders: starts moving every group whose voters are not its
    /// assignment's peers (one move per group at a time, in the background).
    pub(super) fn drive_memberships(&self, js: &JetStream, assignments: &[StreamAssignment]) {
        for assignment in assignments {
            let Some(host) = js.stream(&assignment.name) else {
                continue;
            };
            if host.replica.as_ref().map(|r| r.group_id) != Some(assignment.group_id)
                || !host.is_leader()
            {
                continue;
            }
            let Some(raft) = host.raft().cloned() else {
                continue;
            };
            let (voters, joint) = {
                let metrics = raft.metrics();
                let metrics = metrics.borrow_watched();
                let membership = metrics.membership_config.membership();
                let voters: BTreeSet<u64> = membership.voter_ids().collect();
                (voters, membership.get_joint_config().len() > 1)
            };
            let target: BTreeSet<u64> = assignment.peers.iter().copied().collect();
            // A joint config left by a leader that died mid-change is finished by a new change.
            if (voters == target && !joint) || target.is_empty() {
                continue;
            }
            let nodes: Option<BTreeMap<u64, RaftNode>> = {
                let meta = self.meta_state.read();
                target
                    .iter()
                    .map(|id| {
                        let peer = meta.peer(*id)?;
                        Some((*id, RaftNode::new(&peer.cluster_addr, &peer.name)))
                    })
                    .collect()
            };
            let Some(nodes) = nodes else {
                continue;
            };
            let group_id = assignment.group_id;
            if !self.moving.lock().insert(group_id) {
                continue;
            }
            let moving = self.moving.clone();
            let name = assignment.name.clone();
            let host = self.raft.clone();
            let me = self.node_id;
            tokio::spawn(async move {
                tracing::info!(
                    "JetStream stream '{name}': moving replicas from {voters:x?} to {target:x?}"
                );
                let moved = if target.contains(&me) {
                    move_group(&raft, &voters, target, nodes).await
                } else {
                    hand_over_group(&host, &raft, group_id, &voters, &target, nodes).await
                };
                match moved {
                    Ok(()) => tracing::info!("JetStream stream '{name}': replicas moved"),
                    Err(err) => tracing::warn!(
                        "JetStream stream '{name}': replica move not done ({err}); will retry"
                    ),
                }
                moving.lock().remove(&group_id);
            });
        }
    }

    /// Whether a replica that is no longer assigned to this node is still a member of its
    /// group as the group's leader knows it: it stays (and votes) until the leader has moved
    /// the group without it. A replica that leads keeps its group until it has handed it over.
    pub(super) async fn still_member(
        &self,
        host: &StreamHost,
        assignment: &StreamAssignment,
    ) -> bool {
        if host.is_leader() {
            return true;
        }
        // Only the leader's own view of the membership decides; nobody answering: it stays.
        self.ask_group_peers(assignment, |peer, answer| {
            (answer.leader == peer).then(|| answer.members.contains(&self.node_id))
        })
        .await
        .unwrap_or(true)
    }
}

/// The first step of a move that leaves this node (the leader) out: the new peers catch up as
/// learners, join the voters if none of them is one yet, and the leadership is handed to one of
/// them, which then finishes the move (a leader does not remove itself).
async fn hand_over_group(
    host: &natrix_raft::RaftHost,
    raft: &Raft,
    group_id: u64,
    voters: &BTreeSet<u64>,
    target: &BTreeSet<u64>,
    nodes: BTreeMap<u64, RaftNode>,
) -> Result<(), String> {
    add_learners(raft, voters, target, &nodes).await?;
    let mut staying: Vec<u64> = voters.intersection(target).copied().collect();
    if staying.is_empty() {
        let joined: BTreeSet<u64> = voters.union(target).copied().collect();
        change_voters(raft, joined).await?;
        staying = target.iter().copied().collect();
    }
    let mut last = String::from("no peer to hand over to");
    for to in staying {
        match host.transfer_leadership(group_id, Some(to)).await {
            Ok(_) => return Ok(()),
            Err(err) => last = err.to_string(),
        }
    }
    Err(format!("handing the group over: {last}"))
}

/// Adds every peer of `target` that is not a voter yet as a learner, each caught up before the
/// next (openraft's blocking `add_learner`).
async fn add_learners(
    raft: &Raft,
    voters: &BTreeSet<u64>,
    target: &BTreeSet<u64>,
    nodes: &BTreeMap<u64, RaftNode>,
) -> Result<(), String> {
    for id in target.difference(voters) {
        let node = nodes
            .get(id)
            .cloned()
            .ok_or_else(|| format!("no address for peer {id:016x}"))?;
        match tokio::time::timeout(MOVE_TIMEOUT, raft.add_learner(*id, node, true)).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return Err(format!("adding {id:016x}: {err}")),
            Err(_) => {
                return Err(format!(
                    "{id:016x} did not catch up within {MOVE_TIMEOUT:?}"
                ));
            }
        }
    }
    Ok(())
}

/// One membership change that makes `voters` the group's voters (and drops everyone else).
async fn change_voters(raft: &Raft, voters: BTreeSet<u64>) -> Result<(), String> {
    match tokio::time::timeout(MOVE_TIMEOUT, raft.change_membership(voters, false)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(format!("membership change: {err}")),
        Err(_) => Err(format!(
            "membership change not committed within {MOVE_TIMEOUT:?}"
        )),
    }
}

/// Makes `target` the voters of a group this node leads: each new peer is added as a learner
/// and caught up (openraft's blocking `add_learner`), then one membership change replaces the
/// voters; peers left out are removed from the group.
async fn move_group(
    raft: &Raft,
    voters: &BTreeSet<u64>,
    target: BTreeSet<u64>,
    nodes: BTreeMap<u64, RaftNode>,
) -> Result<(), String> {
    add_learners(raft, voters, &target, &nodes).await?;
    change_voters(raft, target).await
}
