//! Test harness shared by every integration test: start natrix nodes in-process on loopback
//! with free ports, and a raw protocol client for exact-framing tests.

mod cluster;
mod http;
mod raw;
mod reference;
pub mod tls;

pub use cluster::{
    CLUSTER_WAIT, ClusterTune, TestCluster, cluster_config, sees_interest, wait_until,
};
pub use http::{HttpResponse, http_get};
pub use raw::RawClient;
pub use reference::{ReferenceServer, nats_server_bin};

use std::net::SocketAddr;

use natrix_server::{Server, ServerConfig};

/// A node configuration for tests: loopback, a free client port, monitoring off.
pub fn test_config() -> ServerConfig {
    ServerConfig {
        host: "127.0.0.1".to_string(),
        port: 0,
        ..ServerConfig::default()
    }
}

/// A running in-process node.
pub struct TestServer {
    pub server: Server,
}

impl TestServer {
    /// Starts a node with the default test configuration.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(test_config()).await
    }

    /// Starts a node with monitoring on a free port.
    pub async fn start_with_monitoring() -> anyhow::Result<Self> {
        Self::start_with(ServerConfig {
            http_port: Some(0),
            ..test_config()
        })
        .await
    }

    pub async fn start_with(config: ServerConfig) -> anyhow::Result<Self> {
        let server = Server::start(config).await?;
        Ok(Self { server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.client_addr()
    }

    /// `nats://127.0.0.1:<port>` for async-nats.
    pub fn url(&self) -> String {
        format!("nats://{}", self.server.client_addr())
    }

    /// `127.0.0.1:<port>` of the cluster endpoint, when clustered.
    pub fn cluster_addr(&self) -> Option<String> {
        self.server.cluster_addr().map(|a| a.to_string())
    }

    /// `http://127.0.0.1:<port>` of the monitoring endpoint.
    pub fn monitor_url(&self) -> anyhow::Result<String> {
        let addr = self
            .server
            .monitor_addr()
            .ok_or_else(|| anyhow::anyhow!("monitoring is not enabled on this test server"))?;
        Ok(format!("http://{addr}"))
    }

    /// `GET <path_and_query>` from the monitoring endpoint.
    pub async fn monitor_get(&self, path_and_query: &str) -> anyhow::Result<HttpResponse> {
        let addr = self
            .server
            .monitor_addr()
            .ok_or_else(|| anyhow::anyhow!("monitoring is not enabled on this test server"))?;
        http_get(addr, path_and_query).await
    }

    /// A monitoring endpoint's JSON (status 200 required).
    pub async fn monitor_json(&self, path_and_query: &str) -> anyhow::Result<serde_json::Value> {
        self.monitor_get(path_and_query).await?.json()
    }

    /// Polls a monitoring endpoint until `ready` holds, returning that answer; fails with the
    /// last answer once `within` has passed.
    pub async fn monitor_json_when(
        &self,
        path_and_query: &str,
        within: std::time::Duration,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let value = self.monitor_json(path_and_query).await?;
            if ready(&value) {
                return Ok(value);
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("{path_and_query} never became ready; last answer: {value:#}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// A raw protocol connection (the INFO line already consumed).
    pub async fn raw(&self) -> anyhow::Result<RawClient> {
        RawClient::connect(self.addr()).await
    }

    /// Stops the node and waits (bounded) until it has let go of its store, so that a node
    /// started next on the same directory can open it.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
        if !self.server.released(RELEASE_WAIT).await {
            eprintln!("the stopped server was still held after {RELEASE_WAIT:?}");
        }
    }
}

/// How long a stopped test server may take to let go of its store.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
