//! A minimal HTTP/1.0 GET client for monitoring tests: one request per connection, the whole
//! response read until the server closes. No TLS, no redirects, no chunked decoding (HTTP/1.0
//! responses are not chunked).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on a whole request/response exchange in a test.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a response size: monitoring answers are small.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, failing unless the status is 200.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        if self.status != 200 {
            bail!("HTTP {}: {}", self.status, self.body);
        }
        serde_json::from_str(&self.body)
            .with_context(|| format!("response is not JSON: {}", self.body))
    }
}

/// `GET <path_and_query>` from `addr`.
pub async fn http_get(addr: SocketAddr, path_and_query: &str) -> anyhow::Result<HttpResponse> {
    tokio::time::timeout(HTTP_TIMEOUT, exchange(addr, path_and_query))
        .await
        .map_err(|_| anyhow!("GET {path_and_query} timed out"))?
}

async fn exchange(addr: SocketAddr, path_and_query: &str) -> anyhow::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    let request =
        format!("GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .context("write request")?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .await
        .context("read response")?;
    parse(&raw)
}

fn parse(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no header end"))?;
    let head = std::str::from_utf8(&raw[..split]).context("header is not UTF-8")?;
    let body = String::from_utf8(raw[split + 4..].to_vec()).context("body is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}
