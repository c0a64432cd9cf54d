//! The Raft groups of one node: starting a group over the node's RocksDB with an application
//! state machine, registering it with the node's Raft gRPC service, and stopping it. All groups
//! share the node's peer channels and its one Raft service.

use std::sync::Arc;

use natrix_proto::raft::raft_server::RaftServer;
use natrix_store::Store;

use crate::log_store::LogStore;
use crate::network::{NetworkFactory, NetworkOptions, PeerChannels};
use crate::service::{RaftRegistry, RaftService};
use crate::state_machine::{StateMachine, StateMachineStore};
use crate::types::{GroupId, NodeId, Raft, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum RaftHostError {
    #[error("raft group {0} is already running on this node")]
    GroupRunning(GroupId),
    #[error("raft group {group_id}: opening its storage: {source}")]
    Storage {
        group_id: GroupId,
        source: StorageError,
    },
    #[error("raft group {group_id}: starting: {source}")]
    Start {
        group_id: GroupId,
        source: openraft::error::Fatal<NodeId>,
    },
    #[error("raft group {group_id}: invalid configuration: {source}")]
    Config {
        group_id: GroupId,
        source: openraft::ConfigError,
    },
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
        RaftService::new(self.registry.clone()).into_server(self.channels.options())
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
    pub async fn start_group<S: StateMachine>(
        &self,
        store: &Store,
        group_id: GroupId,
        config: openraft::Config,
        machine: S,
    ) -> Result<Raft, RaftHostError> {
        if self.registry.contains(group_id) {
            return Err(RaftHostError::GroupRunning(group_id));
        }
        let config = Arc::new(
            config
                .validate()
                .map_err(|source| RaftHostError::Config { group_id, source })?,
        );
        let log = store.raft_log(group_id);
        let state_machine = StateMachineStore::open(log.clone(), machine)
            .map_err(|source| RaftHostError::Storage { group_id, source })?;
        let raft = Raft::new(
            self.node_id,
            config,
            NetworkFactory::new(group_id, self.channels.clone()),
            LogStore::new(log),
            state_machine,
        )
        .await
        .map_err(|source| RaftHostError::Start { group_id, source })?;
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

    /// Stops group `group_id` on this node (its data stays in the store).
    pub async fn stop_group(&self, group_id: GroupId) {
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
