//! A raw TCP client for protocol tests: send exact bytes, read exact lines, observe closes.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Default bound on every read in a test.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
    /// The INFO line the server sent on connect (without CRLF).
    pub info: String,
}

impl RawClient {
    /// Connects and reads the server's INFO.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
        let mut client = Self { stream, buf: BytesMut::with_capacity(64 * 1024), info: String::new() };
        let info = client.line().await?;
        if !info.starts_with("INFO ") {
            bail!("expected INFO, got {info:?}");
        }
        client.info = info;
        Ok(client)
    }

    /// The INFO JSON as a value.
    pub fn info_json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.info["INFO ".len()..])?)
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
        self.stream.write_all(bytes.as_ref()).await.context("write")?;
        Ok(())
    }

    /// Sends CONNECT with the given JSON, then PING, and waits for PONG.
    pub async fn handshake(&mut self, connect_json: &str) -> anyhow::Result<()> {
        self.send(format!("CONNECT {connect_json}\r\nPING\r\n")).await?;
        self.expect_line("PONG").await
    }

    async fn fill(&mut self, timeout: Duration) -> anyhow::Result<usize> {
        let n = tokio::time::timeout(timeout, self.stream.read_buf(&mut self.buf))
            .await
            .context("timed out waiting for the server")?
            .context("read")?;
        Ok(n)
    }

    /// The next CRLF-terminated line, without CRLF.
    pub async fn line(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
                self.buf.advance(pos + 2);
                return Ok(line);
            }
            if self.fill(READ_TIMEOUT).await? == 0 {
                bail!("connection closed while waiting for a line (buffered: {:?})", String::from_utf8_lossy(&self.buf));
            }
        }
    }

    /// Exactly `n` bytes (e.g. a payload and its CRLF).
    pub async fn bytes(&mut self, n: usize) -> anyhow::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill(READ_TIMEOUT).await? == 0 {
                bail!("connection closed while waiting for {n} bytes");
            }
        }
        Ok(self.buf.split_to(n).to_vec())
    }

    /// Reads a line and checks it.
    pub async fn expect_line(&mut self, expected: &str) -> anyhow::Result<()> {
        let line = self.line().await?;
        if line != expected {
            bail!("expected {expected:?}, got {line:?}");
        }
        Ok(())
    }

    /// Reads a MSG line and its payload; returns (control line, payload).
    pub async fn expect_msg(&mut self) -> anyhow::Result<(String, Vec<u8>)> {
        let line = self.line().await?;
        let size: usize = line
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not a MSG line: {line:?}"))?;
        let mut payload = self.bytes(size + 2).await?;
        if !payload.ends_with(b"\r\n") {
            bail!("payload of {line:?} not followed by CRLF");
        }
        payload.truncate(size);
        Ok((line, payload))
    }

    /// Succeeds if the server closes the connection within `timeout` (any unread bytes are
    /// returned as text so the caller can check the last -ERR).
    pub async fn expect_closed(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                bail!("connection still open after {timeout:?}; buffered {:?}", String::from_utf8_lossy(&self.buf));
            }
            match tokio::time::timeout(left, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(String::from_utf8_lossy(&self.buf).into_owned()),
                Ok(Ok(_)) => continue,
                Err(_) => continue,
            }
        }
    }

    /// Succeeds if nothing arrives within `wait` (the connection stays open and silent).
    pub async fn expect_silence(&mut self, wait: Duration) -> anyhow::Result<()> {
        if !self.buf.is_empty() {
            bail!("unexpected bytes: {:?}", String::from_utf8_lossy(&self.buf));
        }
        match tokio::time::timeout(wait, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => Ok(()),
            Ok(Ok(0)) => bail!("connection closed"),
            Ok(Ok(_)) => bail!("unexpected bytes: {:?}", String::from_utf8_lossy(&self.buf)),
            Ok(Err(err)) => bail!("read error: {err}"),
        }
    }
}
