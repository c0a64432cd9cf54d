//! What the cluster knows about one node: its id, addresses, tags and whether it is reachable.
//! The meta group keeps one [`PeerInfo`] per node; placement chooses among them.

use serde::{Deserialize, Serialize};

/// A node's id: the same number in the meta group, in every stream group and in the route mesh.
pub type NodeId = u64;

/// One node of the cluster as the meta group records it (JSON, portable across architectures).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The node's id, unique in the cluster.
    pub node_id: NodeId,
    /// The node's `server_name` (reported in stream info and monitoring).
    pub name: String,
    /// The `host:port` of the node's cluster gRPC endpoint (Raft traffic, forwarding, routes).
    pub cluster_addr: String,
    /// The URLs clients reach the node at (advertised to clients as `connect_urls`).
    pub client_urls: Vec<String>,
    /// The node's placement tags, normalised by [`node_tags`](crate::node_tags) (its `arch:` tag
    /// and its `server_tags`).
    pub tags: Vec<String>,
    /// The name of the cluster the node belongs to.
    pub cluster: String,
    /// True while the node is known to be unreachable; offline nodes receive no new replicas.
    pub offline: bool,
}
