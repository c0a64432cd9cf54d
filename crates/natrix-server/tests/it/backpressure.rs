//! Fast-producer backpressure: a publisher that outpaces a live but slower subscriber is paused
//! (as nats-server stalls fast producers) instead of the subscriber being cut off as a slow
//! consumer, so nothing is lost; a publisher that outpaces a route to another node is paused the
//! same way instead of the route being cut off.

use std::net::SocketAddr;
use std::time::Duration;

use natrix_server::{Limits, ServerConfig};
use natrix_testkit::{RawClient, TestCluster, TestServer, test_config};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const PAYLOAD: usize = 1024;
const MSGS: usize = 24 * 1024;
/// `MSG bp 1 1024\r\n` + payload + `\r\n`.
const FRAME: usize = "MSG bp 1 1024\r\n".len() + PAYLOAD + 2;

/// Subscribes a raw client to `bp` on `addr` and returns its socket once the server has the
/// subscription.
async fn subscriber(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut sub = RawClient::connect(addr).await?;
    sub.handshake(r#"{"verbose":false,"pedantic":false}"#)
        .await?;
    sub.send("SUB bp 1\r\nPING\r\n").await?;
    sub.expect_line("PONG").await?;
    sub.into_stream()
}

/// Reads from `stream`, sleeping `pause` after each read of at most `chunk` bytes, until
/// `expected` bytes arrived, the stream ends or stays silent for 5 s; returns how many arrived.
async fn read_all_of(
    mut stream: TcpStream,
    expected: usize,
    chunk: usize,
    pause: Duration,
) -> usize {
    let mut buf = vec![0u8; chunk];
    let mut total = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while total < expected && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => total += n,
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    total
}

/// Connects to `addr` and writes `msgs` publishes of `PAYLOAD` bytes to `bp` in one burst.
async fn flood(addr: SocketAddr, msgs: usize) -> anyhow::Result<TcpStream> {
    let mut publisher = TcpStream::connect(addr).await?;
    let mut frames = Vec::with_capacity(msgs * (PAYLOAD + 16) + 64);
    frames.extend_from_slice(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n");
    let payload = vec![b'x'; PAYLOAD];
    for _ in 0..msgs {
        frames.extend_from_slice(b"PUB bp 1024\r\n");
        frames.extend_from_slice(&payload);
        frames.extend_from_slice(b"\r\n");
    }
    tokio::io::AsyncWriteExt::write_all(&mut publisher, &frames).await?;
    Ok(publisher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_publisher_is_slowed_to_a_slower_subscriber_without_loss() -> anyhow::Result<()> {
    // 24 MiB published against a 16 MiB max_pending: without backpressure the publisher's burst
    // (hundreds of MB/s) overflows the subscriber's queue within milliseconds.
    let server = TestServer::start_with(ServerConfig {
        limits: Limits {
            max_pending: 16 * 1024 * 1024,
            ..Limits::default()
        },
        ..test_config()
    })
    .await?;

    // The subscriber reads at most 64 KiB per millisecond (~64 MB/s at best).
    let sub = subscriber(server.addr()).await?;
    let reader = tokio::spawn(read_all_of(
        sub,
        MSGS * FRAME,
        64 * 1024,
        Duration::from_millis(1),
    ));
    let _publisher = flood(server.addr(), MSGS).await?;

    let received = tokio::time::timeout(Duration::from_secs(70), reader).await??;
    assert_eq!(
        received,
        MSGS * FRAME,
        "the slower subscriber received every message, in full"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_publisher_is_paced_to_the_route_to_a_remote_subscriber_without_loss()
-> anyhow::Result<()> {
    // 32 MiB published on node 1 for a subscriber on node 2, with an 8 MiB max_pending: the
    // publisher parses far faster than the route carries, so without pacing the route's queue
    // overflows, the route is cut off and everything queued and published until it reconnects
    // is lost (nats-server stalls a client publishing into a full route).
    const ROUTED_MSGS: usize = 32 * 1024;
    let cluster = TestCluster::start_with(
        "route-stall",
        2,
        Box::new(|config: &mut ServerConfig| config.limits.max_pending = 8 * 1024 * 1024),
    )
    .await?;

    let sub = subscriber(cluster.nodes[1].addr()).await?;
    cluster.wait_for_interest(1, "bp").await?;
    let reader = tokio::spawn(read_all_of(
        sub,
        ROUTED_MSGS * FRAME,
        256 * 1024,
        Duration::ZERO,
    ));
    let _publisher = flood(cluster.nodes[0].addr(), ROUTED_MSGS).await?;

    let received = tokio::time::timeout(Duration::from_secs(70), reader).await??;
    assert_eq!(
        received,
        ROUTED_MSGS * FRAME,
        "the remote subscriber received every message, in full"
    );
    cluster.shutdown().await;
    Ok(())
}
