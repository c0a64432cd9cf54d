//! Clustered JetStream test nodes shared by the cluster test modules: in-process nodes with
//! their own store directories on loopback, a cluster seeded by its first node and ready once
//! every node agrees on a meta leader, and the bounded retries a client needs while leaders
//! change.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Context, stream};
use natrix_server::{JetStreamConfig, ServerConfig};
use natrix_testkit::TestServer;
use natrix_testkit::cluster_config;

/// Upper bound for the cluster to form, a stream to get a leader, a new leader to be elected.
pub(crate) const CLUSTER_WAIT: Duration = Duration::from_secs(20);

pub(crate) struct JsNode {
    pub server: TestServer,
    pub client: async_nats::Client,
    pub js: Context,
    pub _dir: tempfile::TempDir,
}

pub(crate) fn node_config(routes: &[String], dir: &std::path::Path) -> ServerConfig {
    ServerConfig {
        jetstream: Some(JetStreamConfig {
            store_dir: Some(dir.to_path_buf()),
            ..Default::default()
        }),
        ..cluster_config("js", routes)
    }
}

/// How a test changes the nodes' JetStream config (e.g. a small snapshot interval).
pub(crate) type Tune = fn(&mut JetStreamConfig);

pub(crate) async fn start_node(routes: &[String]) -> anyhow::Result<JsNode> {
    start_node_with(routes, |_| {}).await
}

pub(crate) async fn start_node_with(routes: &[String], tune: Tune) -> anyhow::Result<JsNode> {
    start_node_configured(routes, |config| {
        if let Some(js) = config.jetstream.as_mut() {
            tune(js);
        }
    })
    .await
}

/// A node whose whole config `configure` changes (e.g. the account's limits).
async fn start_node_configured(
    routes: &[String],
    configure: impl FnOnce(&mut ServerConfig),
) -> anyhow::Result<JsNode> {
    let dir = tempfile::tempdir()?;
    let mut config = node_config(routes, dir.path());
    configure(&mut config);
    let server = TestServer::start_with(config).await?;
    let client = async_nats::connect(server.url()).await?;
    let js = jetstream::new(client.clone());
    Ok(JsNode {
        server,
        client,
        js,
        _dir: dir,
    })
}

/// Starts `n` JetStream nodes seeded by the first and waits until every node has a meta group
/// of `n` voters with a leader they agree on.
pub(crate) async fn start_cluster(n: usize) -> anyhow::Result<Vec<JsNode>> {
    start_cluster_with(n, |_| {}).await
}

/// [`start_cluster`] with every node's JetStream config changed by `tune`.
pub(crate) async fn start_cluster_with(n: usize, tune: Tune) -> anyhow::Result<Vec<JsNode>> {
    start_cluster_configured(n, |config| {
        if let Some(js) = config.jetstream.as_mut() {
            tune(js);
        }
    })
    .await
}

/// [`start_cluster`] with every node's config changed by `configure`.
pub(crate) async fn start_cluster_configured(
    n: usize,
    configure: impl Fn(&mut ServerConfig),
) -> anyhow::Result<Vec<JsNode>> {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let mut nodes: Vec<JsNode> = Vec::new();
    for _ in 0..n {
        let routes = seed_routes(&nodes)?;
        nodes.push(start_node_configured(&routes, &configure).await?);
    }
    wait_for_meta_leader(&nodes, None).await?;
    Ok(nodes)
}

/// The routes a node joining `nodes` is started with: the first node's cluster address (none
/// for the first node).
pub(crate) fn seed_routes(nodes: &[JsNode]) -> anyhow::Result<Vec<String>> {
    Ok(match nodes.first() {
        Some(first) => vec![
            first
                .server
                .cluster_addr()
                .ok_or_else(|| anyhow::anyhow!("no cluster address"))?,
        ],
        None => Vec::new(),
    })
}

pub(crate) async fn shutdown(nodes: Vec<JsNode>) {
    for node in nodes {
        drop(node.client);
        node.server.shutdown().await;
    }
}

/// `/jsz`'s `meta_cluster` of a node.
pub(crate) async fn meta_cluster(node: &JsNode) -> anyhow::Result<serde_json::Value> {
    let jsz = node.server.monitor_json("/jsz").await?;
    Ok(jsz["meta_cluster"].clone())
}

/// Waits until every node's `/jsz` names the same meta leader (other than `not`) in a meta
/// group of all the nodes, and returns its name.
pub(crate) async fn wait_for_meta_leader(
    nodes: &[JsNode],
    not: Option<&str>,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let mut leaders = Vec::new();
        let mut sizes = Vec::new();
        for node in nodes {
            let meta = meta_cluster(node).await?;
            leaders.push(meta["leader"].as_str().map(str::to_owned));
            sizes.push(meta["cluster_size"].as_u64());
        }
        if let Some(Some(leader)) = leaders.first()
            && leaders
                .iter()
                .all(|l| l.as_deref() == Some(leader.as_str()))
            && sizes.iter().all(|s| *s == Some(nodes.len() as u64))
            && Some(leader.as_str()) != not
        {
            return Ok(leader.clone());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("no agreed meta leader: leaders {leaders:?}, sizes {sizes:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates a stream, retrying while the meta group is still adding nodes.
pub(crate) async fn create_stream(
    js: &Context,
    config: stream::Config,
) -> anyhow::Result<stream::Stream> {
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        match js.create_stream(config.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(err) if Instant::now() < deadline => {
                eprintln!("create stream: {err}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// Publishes and waits for the PubAck, retrying (bounded) while no leader can take it.
pub(crate) async fn publish_acked(
    js: &Context,
    subject: &str,
    payload: String,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let attempt = async {
            let ack = js
                .publish(subject.to_string(), payload.clone().into())
                .await?;
            anyhow::Ok(ack.await?)
        };
        match tokio::time::timeout(Duration::from_secs(3), attempt).await {
            Ok(Ok(ack)) => return Ok(ack.sequence),
            Ok(Err(err)) if Instant::now() < deadline => {
                eprintln!("publish to {subject}: {err}; retrying");
            }
            Err(_) if Instant::now() < deadline => {}
            Ok(Err(err)) => return Err(err),
            Err(_) => anyhow::bail!("publish timed out"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn stream_leader(js: &Context, name: &str) -> anyhow::Result<Option<String>> {
    let mut stream = js.get_stream(name).await?;
    Ok(stream.info().await?.cluster.clone().and_then(|c| c.leader))
}

pub(crate) async fn stream_info(js: &Context, name: &str) -> anyhow::Result<stream::Info> {
    let mut stream = js.get_stream(name).await?;
    Ok(stream.info().await?.clone())
}

/// Every message of the stream, read through `js` by sequence.
pub(crate) async fn read_all(js: &Context, name: &str, last: u64) -> anyhow::Result<Vec<String>> {
    let stream = js.get_stream(name).await?;
    let mut out = Vec::new();
    for seq in 1..=last {
        let msg = stream.get_raw_message(seq).await?;
        out.push(String::from_utf8(msg.payload.to_vec())?);
    }
    Ok(out)
}

/// An API request with an empty body and its JSON answer.
pub(crate) async fn api(
    client: &async_nats::Client,
    subject: &str,
) -> anyhow::Result<serde_json::Value> {
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(subject.to_string(), "".into()),
    )
    .await??;
    Ok(serde_json::from_slice(&answer.payload)?)
}

/// The index in `nodes` of the node named `name` (a leader named by stream info).
pub(crate) fn node_named(nodes: &[JsNode], name: &str) -> anyhow::Result<usize> {
    nodes
        .iter()
        .position(|n| n.server.server.server_name() == name)
        .ok_or_else(|| anyhow::anyhow!("{name} is not one of the nodes"))
}
