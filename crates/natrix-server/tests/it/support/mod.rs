//! The JetStream test harness shared by the async-nats integration tests: a node on a fresh
//! store directory with a client and JetStream context, restarts on the same directory, and
//! bounded waits (every await that could hang fails after [`WAIT`]).
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::Config;
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
use natrix_server::{JetStreamConfig, ServerConfig};
use natrix_testkit::{TestServer, test_config};

/// Upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(5);

pub fn js_config(store_dir: &Path) -> ServerConfig {
    ServerConfig {
        jetstream: Some(JetStreamConfig {
            store_dir: Some(store_dir.to_path_buf()),
            ..Default::default()
        }),
        ..test_config()
    }
}

/// A node with JetStream on a fresh store directory, and a JetStream context on it.
pub struct Node {
    pub server: TestServer,
    pub client: async_nats::Client,
    pub js: Context,
    pub dir: tempfile::TempDir,
}

impl Node {
    pub async fn start() -> anyhow::Result<Node> {
        let dir = tempfile::tempdir()?;
        let server = TestServer::start_with(js_config(dir.path())).await?;
        Node::connect(server, dir).await
    }

    pub async fn connect(server: TestServer, dir: tempfile::TempDir) -> anyhow::Result<Node> {
        let client = async_nats::connect(server.url()).await?;
        let js = jetstream::new(client.clone());
        Ok(Node {
            server,
            client,
            js,
            dir,
        })
    }

    /// Stops the node; its store directory stays.
    pub async fn stop(self) -> tempfile::TempDir {
        let Node {
            server,
            client,
            dir,
            ..
        } = self;
        drop(client);
        server.shutdown().await;
        dir
    }

    /// Starts a node on an existing store directory.
    pub async fn start_in(dir: tempfile::TempDir) -> anyhow::Result<Node> {
        let server = TestServer::start_with(js_config(dir.path())).await?;
        Node::connect(server, dir).await
    }

    /// Stops the node and starts a new one on the same store directory.
    pub async fn restart(self) -> anyhow::Result<Node> {
        Node::start_in(self.stop().await).await
    }

    pub async fn stream(
        &self,
        name: &str,
        subjects: &[&str],
    ) -> anyhow::Result<jetstream::stream::Stream> {
        self.stream_with(Config {
            name: name.to_string(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await
    }

    pub async fn stream_with(&self, config: Config) -> anyhow::Result<jetstream::stream::Stream> {
        Ok(within("stream create", self.js.create_stream(config)).await??)
    }

    /// Publishes and waits for the stream's acknowledgement; returns the stream sequence.
    pub async fn publish(&self, subject: &str, payload: impl Into<Bytes>) -> anyhow::Result<u64> {
        let ack = within("publish", async {
            self.js
                .publish(subject.to_string(), payload.into())
                .await?
                .await
        })
        .await??;
        Ok(ack.sequence)
    }

    /// Publishes `n` messages `0..n` (as decimal payloads) to `subject`.
    pub async fn publish_n(&self, subject: &str, n: usize) -> anyhow::Result<()> {
        for i in 0..n {
            self.publish(subject, i.to_string()).await?;
        }
        Ok(())
    }
}

/// Awaits `f`, failing after [`WAIT`].
pub async fn within<F: Future>(what: &str, f: F) -> anyhow::Result<F::Output> {
    tokio::time::timeout(WAIT, f)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {WAIT:?} waiting for {what}"))
}

/// A JetStream API request (`body` may be empty) and its JSON answer, within [`WAIT`].
pub async fn api_request(
    client: &async_nats::Client,
    subject: &str,
    body: &str,
) -> anyhow::Result<serde_json::Value> {
    let reply = within(
        subject,
        client.request(subject.to_owned(), body.to_owned().into()),
    )
    .await??;
    Ok(serde_json::from_slice(&reply.payload)?)
}

/// Polls `check` until it holds, failing after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client result as an anyhow result (the client's error types are not all `Sync`).
pub fn ok<T, E: std::fmt::Display>(result: Result<T, E>) -> anyhow::Result<T> {
    result.map_err(|e| anyhow::anyhow!("{e}"))
}
