//! A raw TCP client for protocol tests: send exact bytes, read exact lines, observe closes.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

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
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        Self::from_stream(stream).await
    }

    /// Connects with a small socket receive buffer, so that a client that never reads backs up
    /// into the server's outbound buffer quickly (slow-consumer tests).
    pub async fn connect_with_recv_buffer(addr: SocketAddr, bytes: u32) -> anyhow::Result<Self> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_recv_buffer_size(bytes)?;
        let stream = socket
            .connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        Self::from_stream(stream).await
    }

    async fn from_stream(stream: TcpStream) -> anyhow::Result<Self> {
        let mut client = Self {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            info: String::new(),
        };
        let info = client.line().await?;
        if !info.starts_with("INFO ") {
            bail!("expected INFO, got {info:?}");
        }
        client.info = info;
        Ok(client)
    }

    /// The INFO JSON as a value.
    /// The socket itself, for tests that read at their own pace. Fails if the server already
    /// sent bytes that were not consumed.
    pub fn into_stream(self) -> anyhow::Result<TcpStream> {
        if !self.buf.is_empty() {
            bail!("unread bytes: {:?}", String::from_utf8_lossy(&self.buf));
        }
        Ok(self.stream)
    }

    pub fn info_json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.info["INFO ".len()..])?)
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
        self.stream
            .write_all(bytes.as_ref())
            .await
            .context("write")?;
        Ok(())
    }

    /// Sends CONNECT with the given JSON, then PING, and waits for PONG.
    pub async fn handshake(&mut self, connect_json: &str) -> anyhow::Result<()> {
        self.send(format!("CONNECT {connect_json}\r\nPING\r\n"))
            .await?;
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
                bail!(
                    "connection closed while waiting for a line (buffered: {:?})",
                    String::from_utf8_lossy(&self.buf)
                );
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
                bail!(
                    "connection still open after {timeout:?}; buffered {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
            match tokio::time::timeout(left, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    return Ok(String::from_utf8_lossy(&self.buf).into_owned());
                }
                Ok(Ok(_)) => continue,
                Err(_) => continue,
            }
        }
    }

    /// Closes the sending side (the server reads EOF) and waits up to `timeout` for the server
    /// to close its side, so that the server has forgotten this client when it returns.
    pub async fn close_and_wait(mut self, timeout: Duration) -> anyhow::Result<()> {
        self.stream.shutdown().await.context("shutdown")?;
        self.expect_closed(timeout).await.map(drop)
    }

    /// Reads `-ERR '<text>'` as the next line.
    pub async fn expect_err(&mut self, text: &str) -> anyhow::Result<()> {
        self.expect_line(&format!("-ERR '{text}'")).await
    }

    /// Everything that arrives until the server closes the connection or `quiet` passes without
    /// new bytes (bounded by `limit` overall); returns the bytes and whether the connection was
    /// closed. For comparing whole exchanges byte for byte.
    pub async fn read_until_quiet(&mut self, quiet: Duration, limit: Duration) -> (Vec<u8>, bool) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut closed = false;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(quiet.min(left), self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => break,
            }
        }
        (self.buf.split().to_vec(), closed)
    }

    /// Reads until the received bytes contain `count` lines equal to `line` (or the server
    /// closes, or `limit` passes); returns the bytes and whether the connection was closed.
    pub async fn read_until_lines(
        &mut self,
        line: &str,
        count: usize,
        limit: Duration,
    ) -> (Vec<u8>, bool) {
        let deadline = tokio::time::Instant::now() + limit;
        let want = format!("{line}\r\n");
        let mut closed = false;
        loop {
            let seen = count_lines(&self.buf, want.as_bytes());
            if seen >= count {
                break;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => break,
            }
        }
        (self.buf.split().to_vec(), closed)
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

/// Lines of `buf` (CRLF-terminated) equal to `line` (which includes its CRLF).
fn count_lines(buf: &[u8], line: &[u8]) -> usize {
    let mut count = 0;
    let mut start = 0;
    while let Some(pos) = buf[start..].windows(2).position(|w| w == b"\r\n") {
        let end = start + pos + 2;
        if &buf[start..end] == line {
            count += 1;
        }
        start = end;
    }
    count
}
