//! Talking to a node outside the workload: JetStream API requests as JSON, and the monitoring
//! endpoint's `/jsz`, which a node answers from its own replicas (never forwarded to a leader).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub type Json = serde_json::Value;

/// One request or HTTP exchange, at most.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A JetStream API request (`$JS.API.<what>`) answered with JSON that carries no `error`.
pub async fn request(client: &async_nats::Client, what: &str, body: &str) -> anyhow::Result<Json> {
    let subject = format!("$JS.API.{what}");
    let reply = tokio::time::timeout(
        REQUEST_TIMEOUT,
        client.request(subject, Bytes::copy_from_slice(body.as_bytes())),
    )
    .await
    .map_err(|_| anyhow!("{what}: no answer within {REQUEST_TIMEOUT:?}"))?
    .with_context(|| what.to_owned())?;
    let json: Json = serde_json::from_slice(&reply.payload)
        .with_context(|| format!("{what}: the answer is not JSON"))?;
    if let Some(error) = json.get("error") {
        bail!("{what}: {error}");
    }
    Ok(json)
}

/// The stream's leader and the other replicas, by server name, from a `STREAM.INFO` answer.
pub fn leader_and_replicas(info: &Json) -> (Option<String>, Vec<String>) {
    let cluster = &info["cluster"];
    let leader = cluster["leader"]
        .as_str()
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    let replicas = cluster["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect();
    (leader, replicas)
}

/// A node's own state of one stream, from its `/jsz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalState {
    pub messages: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// The node's local state of `stream`, `None` when it holds no replica of it.
pub async fn local_state(http: SocketAddr, stream: &str) -> anyhow::Result<Option<LocalState>> {
    let jsz = http_get_json(http, "/jsz?streams=true").await?;
    let Some(detail) = jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
        .find(|s| s["name"] == stream)
    else {
        return Ok(None);
    };
    let state = &detail["state"];
    let field = |name: &str| state[name].as_u64().unwrap_or_default();
    Ok(Some(LocalState {
        messages: field("messages"),
        bytes: field("bytes"),
        first_seq: field("first_seq"),
        last_seq: field("last_seq"),
    }))
}

/// A plain HTTP/1.1 GET with `Connection: close`, the body read as JSON.
pub async fn http_get_json(addr: SocketAddr, path: &str) -> anyhow::Result<Json> {
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        conn.write_all(head.as_bytes()).await?;
        let mut response = Vec::new();
        // Bounded: /jsz of a few streams is a few KiB.
        conn.take(16 << 20).read_to_end(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("GET {path} from {addr}: no answer within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("GET {path} from {addr}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("GET {path} from {addr}: malformed response"))?;
    ensure!(
        head.starts_with("HTTP/1.1 200"),
        "GET {path} from {addr}: {head}"
    );
    serde_json::from_str(body).with_context(|| format!("GET {path} from {addr}: body is not JSON"))
}

/// Whether something at `addr` greets like a NATS server (`INFO {...}`).
pub async fn accepts_clients(addr: SocketAddr) -> bool {
    let probe = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        let mut first = [0u8; 5];
        conn.read_exact(&mut first).await?;
        anyhow::Ok(&first == b"INFO ")
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), probe).await,
        Ok(Ok(true))
    )
}

/// A client connection to one node only, reconnecting to it forever (every wait on it is
/// bounded by its caller). The connection is never moved to another node, so the node every
/// operation goes through is known.
pub async fn connect(url: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .connection_timeout(REQUEST_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .ignore_discovered_servers()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| Duration::from_millis(50 * attempts.min(10) as u64))
        .connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))
}
