//! Fast-producer backpressure: a publisher that outpaces a live but slower subscriber is paused
//! (as nats-server stalls fast producers) instead of the subscriber being cut off as a slow
//! consumer, so nothing is lost.

use std::time::Duration;

use natrix_server::{Limits, ServerConfig};
use natrix_testkit::{RawClient, TestServer, test_config};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const PAYLOAD: usize = 1024;
const MSGS: usize = 24 * 1024;
/// `MSG bp 1 1024\r\n` + payload + `\r\n`.
const FRAME: usize = "MSG bp 1 1024\r\n".len() + PAYLOAD + 2;

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

    let mut sub = RawClient::connect(server.addr()).await?;
    sub.handshake(r#"{"verbose":false,"pedantic":false}"#)
        .await?;
    sub.send("SUB bp 1\r\nPING\r\n").await?;
    sub.expect_line("PONG").await?;
    let mut sub_stream = sub.into_stream()?;

    // The subscriber reads at most 64 KiB per millisecond (~64 MB/s at best).
    let reader = tokio::spawn(async move {
        let expected = MSGS * FRAME;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while total < expected && tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), sub_stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => total += n,
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        total
    });

    let mut publisher = TcpStream::connect(server.addr()).await?;
    let mut frames = Vec::with_capacity(MSGS * (PAYLOAD + 16) + 64);
    frames.extend_from_slice(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n");
    let payload = vec![b'x'; PAYLOAD];
    for _ in 0..MSGS {
        frames.extend_from_slice(b"PUB bp 1024\r\n");
        frames.extend_from_slice(&payload);
        frames.extend_from_slice(b"\r\n");
    }
    tokio::io::AsyncWriteExt::write_all(&mut publisher, &frames).await?;

    let received = tokio::time::timeout(Duration::from_secs(40), reader).await??;
    assert_eq!(
        received,
        MSGS * FRAME,
        "the slower subscriber received every message, in full"
    );
    Ok(())
}
