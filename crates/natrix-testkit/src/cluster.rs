//! Clusters of in-process nodes on loopback for tests: node configurations with a cluster
//! endpoint on a free port, a starter that seeds every node with the first one (the rest of
//! the mesh forms by gossip), and bounded waits for the mesh and for interest to propagate.

use std::time::{Duration, Instant};

use natrix_server::{ClusterConfig, ServerConfig};

use crate::{TestServer, test_config};

/// Upper bound for a cluster to form or interest to propagate.
pub const CLUSTER_WAIT: Duration = Duration::from_secs(10);

/// A test node configuration in cluster `name` that dials `routes` (URLs or host:port).
pub fn cluster_config(name: &str, routes: &[String]) -> ServerConfig {
    ServerConfig {
        http_port: Some(0),
        cluster: Some(ClusterConfig {
            name: Some(name.to_string()),
            host: "127.0.0.1".to_string(),
            port: 0,
            routes: routes
                .iter()
                .map(|r| {
                    if r.contains("://") {
                        r.clone()
                    } else {
                        format!("nats-route://{r}")
                    }
                })
                .collect(),
            advertise: None,
            tls: None,
        }),
        ..test_config()
    }
}

/// Adjusts each node's configuration before it starts (limits, JetStream, ...).
pub type ClusterTune = Box<dyn Fn(&mut ServerConfig) + Send + Sync>;

/// In-process nodes forming one cluster.
pub struct TestCluster {
    pub name: String,
    pub nodes: Vec<TestServer>,
    tune: ClusterTune,
}

impl TestCluster {
    /// Starts `n` nodes; every node after the first lists only the first as its route.
    pub async fn start(name: &str, n: usize) -> anyhow::Result<Self> {
        Self::start_with(name, n, Box::new(|_| {})).await
    }

    /// [`TestCluster::start`], each node's configuration (also of nodes added later) adjusted
    /// by `tune`.
    pub async fn start_with(name: &str, n: usize, tune: ClusterTune) -> anyhow::Result<Self> {
        let mut cluster = Self {
            name: name.to_string(),
            nodes: Vec::with_capacity(n),
            tune,
        };
        for _ in 0..n {
            cluster.add_node().await?;
        }
        cluster.wait_for_full_mesh().await?;
        Ok(cluster)
    }

    /// The first node's cluster address (`127.0.0.1:port`).
    pub fn seed(&self) -> anyhow::Result<String> {
        let first = self
            .nodes
            .first()
            .ok_or_else(|| anyhow::anyhow!("the cluster has no node"))?;
        first
            .cluster_addr()
            .ok_or_else(|| anyhow::anyhow!("node has no cluster endpoint"))
    }

    /// Starts one more node seeded with the first (or with no route if it is the first).
    pub async fn add_node(&mut self) -> anyhow::Result<&TestServer> {
        let routes = if self.nodes.is_empty() {
            Vec::new()
        } else {
            vec![self.seed()?]
        };
        let mut config = cluster_config(&self.name, &routes);
        (self.tune)(&mut config);
        let node = TestServer::start_with(config).await?;
        self.nodes.push(node);
        Ok(self.nodes.last().expect("just pushed"))
    }

    /// Waits until every node has a route session to every other.
    pub async fn wait_for_full_mesh(&self) -> anyhow::Result<()> {
        let n = self.nodes.len();
        wait_until("a full route mesh", || {
            self.nodes
                .iter()
                .all(|node| node.server.connected_routes().len() == n - 1)
        })
        .await
    }

    /// Waits until every node other than `self.nodes[from]` sees `interest` (`subject` or
    /// `subject queue`) advertised by node `from`.
    pub async fn wait_for_interest(&self, from: usize, interest: &str) -> anyhow::Result<()> {
        let id = self.nodes[from].server.server_id().to_string();
        wait_until(&format!("interest {interest:?} of node {from}"), || {
            self.nodes
                .iter()
                .enumerate()
                .all(|(i, node)| i == from || sees_interest(node, &id, interest))
        })
        .await
    }

    /// Waits until no other node sees `interest` from node `from`.
    pub async fn wait_for_no_interest(&self, from: usize, interest: &str) -> anyhow::Result<()> {
        let id = self.nodes[from].server.server_id().to_string();
        wait_until(
            &format!("interest {interest:?} of node {from} to go"),
            || {
                self.nodes
                    .iter()
                    .enumerate()
                    .all(|(i, node)| i == from || !sees_interest(node, &id, interest))
            },
        )
        .await
    }

    pub async fn shutdown(self) {
        for node in self.nodes {
            node.shutdown().await;
        }
    }
}

/// Whether `node` has `interest` from the peer with server id `peer`.
pub fn sees_interest(node: &TestServer, peer: &str, interest: &str) -> bool {
    node.server
        .peer_interest()
        .iter()
        .any(|(id, subjects)| id == peer && subjects.iter().any(|s| s == interest))
}

/// Polls `check` every 20 ms until it holds, failing after [`CLUSTER_WAIT`].
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        if check() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {CLUSTER_WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
