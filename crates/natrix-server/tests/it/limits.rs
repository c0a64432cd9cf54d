//! Per-connection and server limits: slow consumers, stale connections, max connections, max
//! subscriptions, and a graceful shutdown that still delivers what was queued. Configurations use
//! millisecond timers and small buffers so each test takes well under a second or two.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use natrix_server::{Limits, ServerConfig};
use natrix_testkit::{RawClient, TestServer, test_config};
use tokio::io::AsyncWriteExt;

fn with_limits(limits: Limits) -> ServerConfig {
    ServerConfig {
        limits,
        ..test_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_cut_off_while_other_subscribers_receive_everything() -> anyhow::Result<()>
{
    const MSGS: u64 = 16_000;
    let server = TestServer::start_with(with_limits(Limits {
        max_pending: 512 * 1024,
        max_payload: 64 * 1024,
        ..Limits::default()
    }))
    .await?;
    // Never reads after subscribing: its socket fills, then its outbound buffer.
    let mut slow = RawClient::connect_with_recv_buffer(server.addr(), 4096).await?;
    slow.handshake(r#"{"verbose":false}"#).await?;
    slow.send("SUB flood 1\r\nPING\r\n").await?;
    slow.expect_line("PONG").await?;

    let good = async_nats::connect(server.url()).await?;
    let mut good_sub = good.subscribe("flood").await?;
    good.flush().await?;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let reader = tokio::spawn(async move {
        while let Some(_msg) = good_sub.next().await {
            if counter.fetch_add(1, Ordering::Relaxed) + 1 == MSGS {
                break;
            }
        }
    });

    let publisher = async_nats::connect(server.url()).await?;
    let payload = Bytes::from(vec![b'x'; 1024]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for batch in 0..MSGS / 100 {
        for _ in 0..100 {
            publisher.publish("flood", payload.clone()).await?;
        }
        tokio::time::timeout_at(deadline, publisher.flush()).await??;
        // Let the good subscriber keep pace: at most 200 messages (~200 KiB) outstanding, well
        // under max_pending, so only the slow one is cut off.
        while received.load(Ordering::Relaxed) + 100 < (batch + 1) * 100 {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "good subscriber stalled at {} of {}",
                received.load(Ordering::Relaxed),
                (batch + 1) * 100
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    tokio::time::timeout(Duration::from_secs(10), reader).await??;
    assert_eq!(
        received.load(Ordering::Relaxed),
        MSGS,
        "the good subscriber got every message"
    );
    // The slow one was disconnected: after what its socket already held, the stream ends (no
    // -ERR, as nats-server: the pending data is dropped).
    let rest = slow.expect_closed(Duration::from_secs(10)).await?;
    assert!(
        rest.len() < (MSGS * 1024) as usize / 2,
        "slow consumer got {} bytes",
        rest.len()
    );
    assert!(!rest.contains("-ERR"), "no -ERR for a slow consumer");
    Ok(())
}

#[tokio::test]
async fn client_that_never_answers_ping_is_closed_as_stale() -> anyhow::Result<()> {
    let server = TestServer::start_with(with_limits(Limits {
        ping_interval: Duration::from_millis(100),
        ping_max: 2,
        ..Limits::default()
    }))
    .await?;
    let mut raw = server.raw().await?;
    raw.send("CONNECT {\"verbose\":false}\r\n").await?;
    let transcript = raw.expect_closed(Duration::from_secs(2)).await?;
    assert_eq!(transcript, "PING\r\nPING\r\n-ERR 'Stale Connection'\r\n");
    Ok(())
}

#[tokio::test]
async fn client_that_answers_ping_stays_connected() -> anyhow::Result<()> {
    let server = TestServer::start_with(with_limits(Limits {
        ping_interval: Duration::from_millis(100),
        ping_max: 2,
        ..Limits::default()
    }))
    .await?;
    let mut raw = server.raw().await?;
    raw.send("CONNECT {\"verbose\":false}\r\n").await?;
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(800);
    while let Ok(line) = tokio::time::timeout_at(until, raw.line()).await {
        assert_eq!(line?, "PING");
        pings += 1;
        raw.send("PONG\r\n").await?;
    }
    assert!(
        pings >= 4,
        "only {pings} PINGs in 800 ms with a 100 ms interval"
    );
    raw.send("PING\r\n").await?;
    loop {
        match raw.line().await?.as_str() {
            "PONG" => break,
            "PING" => raw.send("PONG\r\n").await?,
            other => anyhow::bail!("unexpected {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn active_client_is_pinged_once_for_rtt_and_not_closed_as_stale() -> anyhow::Result<()> {
    let server = TestServer::start_with(with_limits(Limits {
        ping_interval: Duration::from_millis(100),
        ping_max: 2,
        ..Limits::default()
    }))
    .await?;
    let mut raw = server.raw().await?;
    raw.send("CONNECT {\"verbose\":false}\r\n").await?;
    // Publishes every 20 ms and never answers PING: its traffic proves it alive (nats-server).
    for _ in 0..40 {
        raw.send("PUB tick 1\r\nx\r\n").await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    raw.expect_line("PING").await?;
    raw.expect_silence(Duration::from_millis(10)).await?;
    raw.send("PING\r\n").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn default_ping_interval_still_sends_a_first_ping_within_a_few_seconds() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.send("CONNECT {\"verbose\":false}\r\n").await?;
    // nats-server measures RTT with a PING 2 s (+ up to 20%) after connect, even with a 2 min
    // ping interval.
    raw.expect_silence(Duration::from_millis(1900)).await?;
    raw.expect_line("PING").await?;
    raw.send("PONG\r\n").await?;
    Ok(())
}

#[tokio::test]
async fn connections_over_max_connections_get_info_then_an_error() -> anyhow::Result<()> {
    let server = TestServer::start_with(with_limits(Limits {
        max_connections: 2,
        ..Limits::default()
    }))
    .await?;
    let mut first = server.raw().await?;
    first.handshake(r#"{"verbose":false}"#).await?;
    let mut second = server.raw().await?;
    second.handshake(r#"{"verbose":false}"#).await?;
    // INFO first (RawClient::connect reads it), then the error and the close.
    let mut third = server.raw().await?;
    let rest = third.expect_closed(Duration::from_secs(2)).await?;
    assert_eq!(rest, "-ERR 'maximum connections exceeded'\r\n");
    // The existing connections keep working, and a freed slot can be reused.
    first.send("PING\r\n").await?;
    first.expect_line("PONG").await?;
    drop(second);
    let mut admitted = None;
    for _ in 0..50 {
        let mut next = server.raw().await?;
        next.send("CONNECT {\"verbose\":false}\r\nPING\r\n").await?;
        if next.line().await.is_ok_and(|l| l == "PONG") {
            admitted = Some(next);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted.is_some(), "a closed connection's slot is freed");
    Ok(())
}

#[tokio::test]
async fn subscriptions_over_max_subscriptions_are_refused_and_the_connection_stays_open()
-> anyhow::Result<()> {
    let server = TestServer::start_with(with_limits(Limits {
        max_subscriptions: 2,
        ..Limits::default()
    }))
    .await?;
    let mut raw = server.raw().await?;
    raw.send("CONNECT {\"verbose\":true}\r\nSUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n")
        .await?;
    for _ in 0..3 {
        raw.expect_line("+OK").await?;
    }
    raw.expect_err("maximum subscriptions exceeded").await?;
    raw.expect_line("PONG").await?;
    // At the limit even a reused sid is refused (the limit is checked first, as nats-server).
    raw.send("SUB a 1\r\nUNSUB 2\r\nSUB d 4\r\nPUB d 1\r\nx\r\nPING\r\n")
        .await?;
    raw.expect_err("maximum subscriptions exceeded").await?;
    raw.expect_line("+OK").await?;
    raw.expect_line("+OK").await?;
    raw.expect_line("+OK").await?;
    raw.expect_line("MSG d 4 1").await?;
    raw.expect_line("x").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn async_nats_client_sees_max_subscriptions_as_an_error_and_stays_usable()
-> anyhow::Result<()> {
    let server = TestServer::start_with(with_limits(Limits {
        max_subscriptions: 1,
        ..Limits::default()
    }))
    .await?;
    let client = async_nats::connect(server.url()).await?;
    let mut first = client.subscribe("one").await?;
    let _refused = client.subscribe("two").await?;
    client.flush().await?;
    client.publish("one", "still here".into()).await?;
    client.flush().await?;
    let msg = tokio::time::timeout(Duration::from_secs(5), first.next())
        .await?
        .expect("message");
    assert_eq!(msg.payload, "still here");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_delivers_queued_messages_before_closing() -> anyhow::Result<()> {
    const MSGS: usize = 2000;
    let server = TestServer::start().await?;
    let mut subscriber = RawClient::connect_with_recv_buffer(server.addr(), 4096).await?;
    subscriber.handshake(r#"{"verbose":false}"#).await?;
    subscriber.send("SUB out 1\r\nPING\r\n").await?;
    subscriber.expect_line("PONG").await?;
    let mut publisher = server.raw().await?;
    publisher.handshake(r#"{"verbose":false}"#).await?;
    let payload = "y".repeat(1000);
    let mut batch = String::new();
    for _ in 0..MSGS {
        batch.push_str(&format!("PUB out 1000\r\n{payload}\r\n"));
    }
    batch.push_str("PING\r\n");
    publisher.send(batch).await?;
    publisher.expect_line("PONG").await?;
    // Everything is queued for the subscriber, which has not read any of it yet.
    let shutdown = async {
        server.server.shutdown().await;
    };
    let drain = async {
        for _ in 0..MSGS {
            let (_, body) = subscriber.expect_msg().await?;
            anyhow::ensure!(body.len() == 1000);
        }
        subscriber.expect_closed(Duration::from_secs(5)).await
    };
    let ((), rest) = tokio::time::timeout(Duration::from_secs(15), async {
        tokio::join!(shutdown, drain)
    })
    .await?;
    assert_eq!(rest?, "", "nothing after the queued messages");
    Ok(())
}

#[tokio::test]
async fn client_that_pipelines_pings_and_never_reads_is_cut_off_at_max_pending()
-> anyhow::Result<()> {
    const MAX_PENDING: u64 = 256 * 1024;
    let server = TestServer::start_with(ServerConfig {
        http_port: Some(0),
        ..with_limits(Limits {
            max_pending: MAX_PENDING,
            max_payload: 64 * 1024,
            ..Limits::default()
        })
    })
    .await?;
    let mut raw = RawClient::connect_with_recv_buffer(server.addr(), 4096).await?;
    raw.handshake(r#"{"verbose":false}"#).await?;
    let mut stream = raw.into_stream()?;
    // The PONGs queue up on the server: as nats-server, they count against max_pending, so the
    // client is cut off long before the write deadline (10 s) would.
    let pings = b"PING\r\n".repeat(8 * 1024);
    let started = tokio::time::Instant::now();
    let mut sent = 0usize;
    while sent < 1024 * MAX_PENDING as usize {
        match tokio::time::timeout(Duration::from_secs(5), stream.write_all(&pings)).await {
            Ok(Ok(())) => sent += pings.len(),
            Ok(Err(_)) => break,
            Err(_) => anyhow::bail!("writing blocked after {sent} bytes without a cut-off"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut off after {:?}",
        started.elapsed()
    );
    let mut reason = serde_json::Value::Null;
    for _ in 0..100 {
        let closed = server.monitor_json("/connz?state=closed").await?;
        reason = closed["connections"][0]["reason"].clone();
        if !reason.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reason, "Slow Consumer (Pending Bytes)");
    let varz = server.monitor_json("/varz").await?;
    assert_eq!(varz["slow_consumers"], 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_whose_socket_stays_full_past_the_write_deadline_is_cut_off()
-> anyhow::Result<()> {
    let server = TestServer::start_with(ServerConfig {
        http_port: Some(0),
        ..with_limits(Limits {
            write_deadline: Duration::from_millis(300),
            ..Limits::default()
        })
    })
    .await?;
    let mut stuck = RawClient::connect_with_recv_buffer(server.addr(), 4096).await?;
    stuck
        .handshake(r#"{"verbose":false,"name":"stuck"}"#)
        .await?;
    stuck.send("SUB stuck 1\r\nPING\r\n").await?;
    stuck.expect_line("PONG").await?;
    // 16 MiB: more than the socket buffers hold, far less than max_pending (64 MiB), so only
    // the blocked write can cut the subscriber off.
    let mut publisher = server.raw().await?;
    publisher.handshake(r#"{"verbose":false}"#).await?;
    let frame = format!("PUB stuck 65536\r\n{}\r\n", "s".repeat(65536));
    publisher.send(frame.repeat(256)).await?;
    publisher.send("PING\r\n").await?;
    publisher.expect_line("PONG").await?;

    let mut reason = serde_json::Value::Null;
    for _ in 0..250 {
        let closed = server.monitor_json("/connz?state=closed").await?;
        reason = closed["connections"][0]["reason"].clone();
        if !reason.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reason, "Slow Consumer (Write Deadline)");
    assert_eq!(server.monitor_json("/varz").await?["slow_consumers"], 1);
    // As nats-server: no -ERR, the socket just ends after what it already held.
    let rest = stuck.expect_closed(Duration::from_secs(5)).await?;
    assert!(!rest.contains("-ERR"));
    Ok(())
}
