//! The Raft groups of one node: starting a group over the node's RocksDB with an application
//! state machine, registering it with the node's Raft gRPC service, stopping it, and handing a
//! group's leadership to another voter. All groups share the node's peer channels and its one
//! Raft service.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use natrix_proto::raft::raft_server::RaftServer;
use natrix_store::Store;
use openraft::Instant as _;
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use openraft::metrics::WaitError;
use tokio::time::Instant;

use crate::log_store::LogStore;
use crate::network::{NetworkFactory, NetworkOptions, PeerChannels};
use crate::service::{RaftRegistry, RaftService};
use crate::state_machine::{StateMachine, StateMachineStore};
use crate::types::{GroupId, NodeId, Raft, RaftMetrics, TypeConfig};

/// A voter that answered the leader within this long counts as reachable for a transfer (a few
/// heartbeats).
const RECENT_CONTACT: Duration = Duration::from_secs(1);

/// The shortest time a leadership transfer may take before it gives up (catching the target up
/// and electing it); groups with long election timeouts get three of them.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RaftHostError {
    #[error("raft group {0} is already running on this node")]
    GroupRunning(GroupId),
    #[error("raft group {group_id}: opening its storage: {source}")]
    Storage {
        group_id: GroupId,
        source: std::io::Error,
    },
    #[error("raft group {group_id}: starting: {source}")]
    Start {
        group_id: GroupId,
        source: openraft::error::Fatal<TypeConfig>,
    },
    #[error("raft group {group_id}: invalid configuration: {source}")]
    Config {
        group_id: GroupId,
        source: openraft::ConfigError,
    },
}

/// Why a leadership transfer did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TransferLeadershipError {
    #[error("raft group {0} is not running on this node")]
    NotRunning(GroupId),
    #[error("raft group {group_id}: this node is not its leader (leader: {leader:?})")]
    NotLeader {
        group_id: GroupId,
        leader: Option<NodeId>,
    },
    #[error("raft group {group_id}: there is no other voter to hand leadership to")]
    NoOtherVoter { group_id: GroupId },
    #[error("raft group {group_id}: node {target} is not another voter of the group")]
    NotAVoter { group_id: GroupId, target: NodeId },
    #[error(
        "raft group {group_id}: node {target} did not catch up within {waited:?} (it holds the \
         log up to {matched:?}, the leader up to {last:?})"
    )]
    TargetBehind {
        group_id: GroupId,
        target: NodeId,
        matched: Option<u64>,
        last: Option<u64>,
        waited: Duration,
    },
    #[error(
        "raft group {group_id}: no new leader within {waited:?} after asking node {target} to \
         stand"
    )]
    TimedOut {
        group_id: GroupId,
        target: NodeId,
        waited: Duration,
    },
    #[error("raft group {group_id}: the group is shutting down")]
    ShuttingDown { group_id: GroupId },
}

/// Keeps the old leader from standing for election itself while it hands leadership over
/// (once it stepped down it would otherwise compete with the target), and turns its elections
/// back on (openraft's default) when dropped, whatever the outcome.
struct ElectionPause<'a> {
    raft: &'a Raft,
}

impl<'a> ElectionPause<'a> {
    fn new(raft: &'a Raft) -> ElectionPause<'a> {
        raft.runtime_config().elect(false);
        ElectionPause { raft }
    }
}

impl Drop for ElectionPause<'_> {
    fn drop(&mut self) {
        self.raft.runtime_config().elect(true);
    }
}

/// The log index a leader knows `node` holds, from its replication metrics.
fn matched(metrics: &RaftMetrics, node: NodeId) -> Option<u64> {
    metrics
        .replication
        .as_ref()
        .and_then(|r| r.get(&node).cloned().flatten())
        .map(|id| id.index)
}

/// This node's Raft groups and the transport they share.
#[derive(Clone)]
pub struct RaftHost {
    node_id: NodeId,
    registry: RaftRegistry,
    channels: PeerChannels,
}

impl RaftHost {
    /// `node_id` is this node's id in every group it joins.
    pub fn new(node_id: NodeId, options: NetworkOptions) -> RaftHost {
        RaftHost {
            node_id,
            registry: RaftRegistry::default(),
            channels: PeerChannels::new(options),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The gRPC service serving every group of this host; add it to the node's cluster
    /// endpoint with `tonic::transport::Server::builder().add_service(host.service())`.
    pub fn service(&self) -> RaftServer<RaftService> {
        RaftService::new(self.registry.clone(), self.channels.options()).into_server()
    }

    pub fn registry(&self) -> &RaftRegistry {
        &self.registry
    }

    pub fn channels(&self) -> &PeerChannels {
        &self.channels
    }

    /// The running group `group_id`, if any.
    pub fn group(&self, group_id: GroupId) -> Option<Raft> {
        self.registry.get(group_id)
    }

    /// Starts group `group_id` on this node from what `store` holds for it (nothing for a new
    /// group; log, vote and snapshot for a restarted one) and serves its traffic. A new group
    /// still needs `Raft::initialize` on one member (or to be added by a running leader).
    pub async fn start_group(
        &self,
        store: &Store,
        group_id: GroupId,
        config: openraft::Config,
        machine: impl StateMachine,
    ) -> Result<Raft, RaftHostError> {
        if self.registry.contains(group_id) {
            return Err(RaftHostError::GroupRunning(group_id));
        }
        let config = Arc::new(
            config
                .validate()
                .map_err(|source| RaftHostError::Config { group_id, source })?,
        );
        let sink = machine.snapshot_sink();
        let log = store.raft_log(group_id);
        let log_store = if machine.stores_applied() {
            LogStore::new(log.clone()).without_committed()
        } else {
            LogStore::new(log.clone())
        };
        let state_machine = StateMachineStore::open(log, machine)
            .await
            .map_err(|source| RaftHostError::Storage { group_id, source })?;
        let running = state_machine.running_flag();
        let raft = Raft::new(
            self.node_id,
            config,
            NetworkFactory::new(group_id, self.channels.clone()),
            log_store,
            state_machine,
        )
        .await
        .map_err(|source| RaftHostError::Start { group_id, source })?;
        running.store(true, std::sync::atomic::Ordering::Release);
        if let Some(sink) = sink {
            self.registry.set_snapshot_sink(group_id, sink);
        }
        if self.registry.insert(group_id, raft.clone()).is_some() {
            // Lost a race with a concurrent start of the same group: keep the first one.
            tracing::warn!(
                group_id,
                "raft: group started twice; stopping the second instance"
            );
            let _ = raft.shutdown().await;
            return Err(RaftHostError::GroupRunning(group_id));
        }
        tracing::info!(group_id, node_id = self.node_id, "raft: group started");
        Ok(raft)
    }

    /// Hands the leadership of group `group_id`, which this node leads, to another voter:
    /// `target`, or else the voter whose replicated log reaches furthest (a random one among
    /// equals). Returns the new leader once this node's metrics show it, normally the target
    /// (another voter only if it won the election instead).
    ///
    /// Wait (bounded) until the target holds every entry this leader had when the transfer
    /// began (a candidate with a shorter log cannot win), pause this node's own elections, then
    /// every quarter minimum election timeout until a leader shows up: start openraft's
    /// transfer (`Trigger::transfer_leader`: this leader takes no more writes and tells every
    /// member, over the `TransferLeader` RPC, to drop its lease; the target stands at once if
    /// its log reaches the leader's last entry, else at the next round, once it caught up). The
    /// target's vote request carries openraft's leadership-transfer flag, so voters grant it
    /// despite the old leader's lease.
    /// Elections are turned back on when this returns, whatever the outcome (assumes they were
    /// on, openraft's default). Gives up after [`TRANSFER_TIMEOUT`] or three maximum election
    /// timeouts, whichever is longer.
    pub async fn transfer_leadership(
        &self,
        group_id: GroupId,
        target: Option<NodeId>,
    ) -> Result<NodeId, TransferLeadershipError> {
        self.transfer_leadership_among(group_id, target, |_| true)
            .await
    }

    /// [`Self::transfer_leadership`], choosing (when `target` is `None`) only among the voters
    /// `eligible` accepts, e.g. those the caller knows to be up; `NoOtherVoter` if it accepts
    /// none.
    pub async fn transfer_leadership_among(
        &self,
        group_id: GroupId,
        target: Option<NodeId>,
        eligible: impl Fn(NodeId) -> bool,
    ) -> Result<NodeId, TransferLeadershipError> {
        let raft = self
            .group(group_id)
            .ok_or(TransferLeadershipError::NotRunning(group_id))?;
        let me = self.node_id;
        let metrics = raft.metrics().borrow_watched().clone();
        if metrics.state != ServerState::Leader {
            return Err(TransferLeadershipError::NotLeader {
                group_id,
                leader: metrics.current_leader,
            });
        }
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().filter(|id| *id != me).collect();
        let target = match target {
            Some(t) if voters.contains(&t) => t,
            Some(t) => {
                return Err(TransferLeadershipError::NotAVoter {
                    group_id,
                    target: t,
                });
            }
            // The most up-to-date voter among those that answered recently (a stopped or cut
            // off voter may look as up to date as any, and could never take over); among equals
            // a random one, as nats-server picks, so that repeated step-downs visit every voter.
            None => {
                let heard = |id: &NodeId| {
                    self.channels
                        .since_contact(group_id, *id)
                        .is_some_and(|d| d < RECENT_CONTACT)
                };
                let eligible: Vec<NodeId> =
                    voters.iter().copied().filter(|id| eligible(*id)).collect();
                let reachable: Vec<NodeId> = eligible.iter().copied().filter(heard).collect();
                let candidates = if reachable.is_empty() {
                    eligible
                } else {
                    reachable
                };
                let best = candidates
                    .iter()
                    .map(|id| matched(&metrics, *id))
                    .max()
                    .ok_or(TransferLeadershipError::NoOtherVoter { group_id })?;
                let most_current: Vec<NodeId> = candidates
                    .into_iter()
                    .filter(|id| matched(&metrics, *id) == best)
                    .collect();
                most_current[fastrand::usize(..most_current.len())]
            }
        };
        if membership.get_node(&target).is_none() {
            return Err(TransferLeadershipError::NotAVoter { group_id, target });
        }
        let config = raft.config();
        let started = Instant::now();
        let timeout = TRANSFER_TIMEOUT.max(Duration::from_millis(
            config.election_timeout_max.saturating_mul(3),
        ));
        let deadline = started + timeout;
        let period = Duration::from_millis((config.election_timeout_min / 4).max(20));

        // 1. The target must hold everything this leader had when the transfer began (under
        // load the log keeps growing; openraft's transfer below stops new writes, and the
        // target catches up the rest before it stands).
        let goal = metrics.last_log_index;
        let caught_up = raft
            .wait(Some(timeout))
            .metrics(
                |m| m.state != ServerState::Leader || matched(m, target) >= goal,
                format!("node {target} holds the log up to {goal:?}"),
            )
            .await;
        match caught_up {
            Ok(m) if m.state != ServerState::Leader => {
                return Err(TransferLeadershipError::NotLeader {
                    group_id,
                    leader: m.current_leader,
                });
            }
            Ok(_) => {}
            Err(WaitError::Timeout(waited, _)) => {
                let m = raft.metrics().borrow_watched().clone();
                return Err(TransferLeadershipError::TargetBehind {
                    group_id,
                    target,
                    matched: matched(&m, target),
                    last: m.last_log_index,
                    waited,
                });
            }
            Err(WaitError::ShuttingDown) => {
                return Err(TransferLeadershipError::ShuttingDown { group_id });
            }
        }

        // 2. Ask the target to stand until a leader other than this node shows up.
        let _pause = ElectionPause::new(&raft);
        tracing::info!(
            group_id,
            from = me,
            to = target,
            "raft: transferring leadership"
        );
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(TransferLeadershipError::TimedOut {
                    group_id,
                    target,
                    waited: now - started,
                });
            }
            // openraft's transfer: this leader takes no more writes, every member drops the
            // old leader's lease, and the target stands once its log reaches this leader's last
            // entry (it ignores the request until then; the next round asks again). The target
            // is not told to stand on its own: an election it started before it caught up
            // would fail and make this leader step down with nobody to take over until an
            // election timeout.
            if raft.current_leader().await == Some(me)
                && raft.trigger().transfer_leader(target).await.is_err()
            {
                return Err(TransferLeadershipError::ShuttingDown { group_id });
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let elected = raft
                .wait(Some(period.min(remaining)))
                .metrics(
                    |m| m.current_leader.is_some_and(|l| l != me),
                    "another leader",
                )
                .await;
            match elected {
                Ok(m) => {
                    if let Some(leader) = m.current_leader {
                        tracing::info!(
                            group_id,
                            from = me,
                            to = leader,
                            "raft: leadership transferred"
                        );
                        return Ok(leader);
                    }
                }
                Err(WaitError::Timeout(..)) => {}
                Err(WaitError::ShuttingDown) => {
                    return Err(TransferLeadershipError::ShuttingDown { group_id });
                }
            }
        }
    }

    /// Stops group `group_id` on this node (its data stays in the store).
    pub async fn stop_group(&self, group_id: GroupId) {
        self.channels.forget_group(group_id);
        if let Some(raft) = self.registry.remove(group_id) {
            if let Err(e) = raft.shutdown().await {
                tracing::warn!(group_id, error = %e, "raft: group did not stop cleanly");
            }
            tracing::info!(group_id, "raft: group stopped");
        }
    }

    /// Stops every group of this node.
    pub async fn shutdown(&self) {
        for group_id in self.registry.group_ids() {
            self.stop_group(group_id).await;
        }
    }
}

/// openraft settings for a natrix group: `cluster_name` names it in logs; snapshot chunks fit
/// well inside the transport's message limit.
pub fn default_config(cluster_name: impl Into<String>) -> openraft::Config {
    openraft::Config {
        cluster_name: cluster_name.into(),
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        snapshot_max_chunk_size: 4 << 20,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10_000),
        max_in_snapshot_log_to_keep: 1_000,
        ..openraft::Config::default()
    }
}

/// Whether `metrics` show this node leading under a lease openraft takes writes with: a quorum
/// acknowledged it within `lease` (openraft's `election_timeout_max`). A leader just elected has
/// no lease until a quorum answered its first append; until then openraft refuses writes.
pub fn holds_write_lease(metrics: &RaftMetrics, lease: Duration) -> bool {
    let leads = metrics.state == ServerState::Leader && metrics.current_leader == Some(metrics.id);
    let voters = metrics.membership_config.membership().voter_ids().count();
    leads
        && (voters <= 1
            || metrics
                .last_quorum_acked
                .as_ref()
                .is_some_and(|at| at.elapsed() < lease))
}

/// Waits (at most `timeout`) until this node, if it leads `raft`'s group, holds a write lease;
/// true if it does. Returns false at once once another node leads.
pub async fn wait_write_lease(raft: &Raft, timeout: Duration) -> bool {
    let lease = Duration::from_millis(raft.config().election_timeout_max);
    let waited = raft
        .wait(Some(timeout))
        .metrics(
            |m| holds_write_lease(m, lease) || m.current_leader != Some(m.id),
            "a write lease",
        )
        .await;
    waited.is_ok_and(|m| holds_write_lease(&m, lease))
}
