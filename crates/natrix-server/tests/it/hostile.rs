//! A broker that hostile clients cannot knock over. While well-behaved async-nats clients publish
//! and do request/reply, other connections fill the connection limit, flood garbage, trickle a
//! CONNECT that never ends, announce huge payloads, send oversized control lines, never read what
//! they subscribed to and pipeline PINGs without reading. Each hostile connection gets
//! nats-server's error (texts checked against nats-server 2.9.10) and is closed, the queue held
//! for any one client stays within `max_pending`, the good clients lose nothing, and the server
//! still answers afterwards.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use futures::StreamExt;
use natrix_server::{AuthConfig, Limits, ServerConfig};
use natrix_testkit::{RawClient, TestServer, test_config};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

const MAX_CONNECTIONS: u32 = 24;
const MAX_PENDING: u64 = 1024 * 1024;
const MAX_PAYLOAD: u32 = 64 * 1024;
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// The good clients: one publishes and requests, one subscribes and replies.
const GOOD_CLIENTS: u32 = 2;
/// Good messages are published in batches of this many, each followed by a request.
const BATCH: u64 = 20;
/// The good publisher keeps going until the hostile clients are done, within these bounds.
const MIN_GOOD_MSGS: u64 = 2_000;
const MAX_GOOD_MSGS: u64 = 20_000;
/// Bound on any single wait in this file.
const WAIT: Duration = Duration::from_secs(5);
/// A connection that neither answers PINGs nor shows activity is closed as stale after
/// `ping_max` (2) unanswered PINGs: on the third tick, the first one coming after at most
/// 1.2 ping intervals (3.2 s), with slack for a busy machine.
const STALE_WITHIN: Duration = Duration::from_millis(4_500);

fn hostile_config() -> ServerConfig {
    ServerConfig {
        http_port: Some(0),
        limits: Limits {
            max_connections: MAX_CONNECTIONS,
            max_pending: MAX_PENDING,
            max_payload: MAX_PAYLOAD,
            ping_interval: PING_INTERVAL,
            ping_max: 2,
            ..Limits::default()
        },
        ..test_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_cannot_make_a_well_behaved_client_lose_messages() -> anyhow::Result<()> {
    let seed = fastrand::u64(..);
    eprintln!("hostile client test seed: {seed}");
    tokio::time::timeout(Duration::from_secs(25), hostile_run(seed))
        .await
        .with_context(|| format!("hostile run (seed {seed}) took over 25 s"))?
        .with_context(|| format!("hostile run failed (seed {seed})"))
}

async fn hostile_run(seed: u64) -> anyhow::Result<()> {
    let server = TestServer::start_with(hostile_config()).await?;

    // The well-behaved side: a subscriber that also answers requests, and a publisher.
    let subscriber = async_nats::connect(server.url()).await?;
    let messages = subscriber.subscribe("good.data").await?;
    let requests = subscriber.subscribe("good.echo").await?;
    subscriber.flush().await?;
    let responder = tokio::spawn(answer_requests(subscriber.clone(), requests));
    let (total_tx, total_rx) = watch::channel(None);
    let receiver = tokio::spawn(receive_in_order(messages, total_rx));
    let publisher = async_nats::connect(server.url()).await?;
    let (hostile_done_tx, hostile_done_rx) = watch::channel(false);
    let publishing = tokio::spawn(publish_until(publisher.clone(), hostile_done_rx));

    // First the connection limit (it needs every other slot free), then everything else at once.
    let hostile = async {
        fill_the_connection_limit(&server).await?;
        tokio::try_join!(
            flood_garbage(server.addr(), seed),
            trickle_a_connect_that_never_ends(server.addr()),
            announce_payloads_that_never_come(&server),
            send_oversized_control_lines(&server),
            subscribe_and_never_read(&server),
            pipeline_pings_and_never_read(&server),
        )?;
        anyhow::Ok(())
    };
    let hostile_result = hostile.await;
    let _ = hostile_done_tx.send(true);
    hostile_result?;

    let published = publishing.await.context("publisher task")??;
    ensure!(published >= MIN_GOOD_MSGS, "only {published} good messages");
    total_tx.send(Some(published))?;
    let received = tokio::time::timeout(WAIT, receiver)
        .await
        .context("good subscriber did not get every message in time")?
        .context("receiver task")??;
    assert_eq!(
        received, published,
        "the good subscriber got every message, in order"
    );

    // Afterwards the server still serves new clients, and only the good connections remain.
    let late = async_nats::connect(server.url()).await?;
    let reply = tokio::time::timeout(WAIT, late.request("good.echo", "late".into())).await??;
    assert_eq!(reply.payload, "re: late");
    drop(late);
    let varz = json_when(&server, "/varz", |v| {
        v["connections"] == u64::from(GOOD_CLIENTS)
    })
    .await?;
    assert!(
        varz["slow_consumers"].as_u64().unwrap_or(0) >= 2,
        "the never-reading subscriber and the PING pipeliner count as slow consumers: {varz:#}"
    );
    assert_eq!(
        server.monitor_get("/healthz").await?.body,
        r#"{"status":"ok"}"#
    );
    responder.abort();
    server.shutdown().await;
    Ok(())
}

/// Publishes `good.data` messages numbered from 0 in batches, each batch followed by a request
/// that must be answered, until the hostile clients are done (within the bounds); returns how
/// many it published.
async fn publish_until(
    client: async_nats::Client,
    hostile_done: watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let mut seq = 0u64;
    while seq < MAX_GOOD_MSGS {
        for _ in 0..BATCH {
            client
                .publish("good.data", Bytes::from(seq.to_string()))
                .await?;
            seq += 1;
        }
        let ask = format!("batch {seq}");
        let reply = tokio::time::timeout(WAIT, client.request("good.echo", ask.clone().into()))
            .await
            .with_context(|| format!("request after message {seq} timed out"))??;
        ensure!(
            reply.payload == format!("re: {ask}"),
            "request {ask:?} got {:?}",
            reply.payload
        );
        if *hostile_done.borrow() && seq >= MIN_GOOD_MSGS {
            break;
        }
        // Pacing, not synchronisation: spread the good traffic over the hostile run.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    client.flush().await?;
    Ok(seq)
}

/// Receives `good.data` and checks each message is the next number; returns the count once it
/// reaches the total the publisher reports.
async fn receive_in_order(
    mut messages: async_nats::Subscriber,
    mut total: watch::Receiver<Option<u64>>,
) -> anyhow::Result<u64> {
    let mut next = 0u64;
    loop {
        if total.borrow().is_some_and(|total| next >= total) {
            return Ok(next);
        }
        tokio::select! {
            msg = messages.next() => {
                let msg = msg.context("subscription ended")?;
                let seq: u64 = std::str::from_utf8(&msg.payload)?.parse()?;
                ensure!(seq == next, "expected message {next}, got {seq}");
                next += 1;
            }
            changed = total.changed() => changed.context("publisher gone")?,
        }
    }
}

async fn answer_requests(client: async_nats::Client, mut requests: async_nats::Subscriber) {
    while let Some(request) = requests.next().await {
        if let Some(reply) = request.reply {
            let mut answer = b"re: ".to_vec();
            answer.extend_from_slice(&request.payload);
            let _ = client.publish(reply, answer.into()).await;
        }
    }
}

/// Fills every connection slot the good clients left, checks that further connections get
/// nats-server's error (INFO, then `-ERR 'maximum connections exceeded'`, then the close), then
/// lets them all go.
async fn fill_the_connection_limit(server: &TestServer) -> anyhow::Result<()> {
    let mut admitted = Vec::new();
    for _ in GOOD_CLIENTS..MAX_CONNECTIONS {
        let mut raw = server.raw().await?;
        raw.handshake(r#"{"verbose":false}"#).await?;
        admitted.push(raw);
    }
    for _ in 0..10 {
        let mut extra = server.raw().await?;
        let rest = extra.expect_closed(WAIT).await?;
        assert_eq!(rest, "-ERR 'maximum connections exceeded'\r\n");
    }
    for raw in admitted {
        raw.close_and_wait(WAIT).await?;
    }
    json_when(server, "/varz", |v| {
        v["connections"] == u64::from(GOOD_CLIENTS)
    })
    .await?;
    Ok(())
}

/// Random bytes, with and without a CONNECT first: each connection is closed (after an -ERR, or
/// silently for malformed arguments), never left hanging.
async fn flood_garbage(addr: SocketAddr, seed: u64) -> anyhow::Result<()> {
    let mut rng = fastrand::Rng::with_seed(seed);
    for round in 0..8 {
        let mut raw = RawClient::connect(addr).await?;
        if round % 2 == 1 {
            raw.handshake(r#"{"verbose":false}"#).await?;
        }
        // Never a newline in the first 4 KiB: wherever the parser is, it ends in an error.
        let mut garbage: Vec<u8> = (0..32 * 1024).map(|_| rng.u8(..)).collect();
        for b in garbage.iter_mut().take(4096) {
            if *b == b'\n' {
                *b = b'x';
            }
        }
        // The server may close before it read everything: then the write fails, as it should.
        let _ = raw.send(&garbage).await;
        let rest = raw
            .expect_closed(WAIT)
            .await
            .with_context(|| format!("garbage round {round} (seed {seed}) left open"))?;
        ensure!(
            rest.is_empty() || rest.starts_with("-ERR '"),
            "garbage round {round} (seed {seed}) got {rest:?}"
        );
    }
    Ok(())
}

/// Slowloris: a CONNECT that arrives a byte every 10 ms and never ends. Without auth,
/// nats-server has no CONNECT timeout; it closes the connection as stale because its PINGs go
/// unanswered (the trickle is not activity). So does natrix.
async fn trickle_a_connect_that_never_ends(addr: SocketAddr) -> anyhow::Result<()> {
    let (transcript, elapsed) = trickle_connect(addr, STALE_WITHIN + WAIT).await?;
    assert_eq!(
        transcript, "PING\r\nPING\r\n-ERR 'Stale Connection'\r\n",
        "after INFO"
    );
    ensure!(
        elapsed < STALE_WITHIN,
        "slowloris connection lived {elapsed:?}"
    );
    Ok(())
}

/// Connects, then sends `CONNECT {"name":"xxx...` one byte per 10 ms until the server closes
/// the connection (bounded by `limit`); returns what the server sent after INFO and how long the
/// connection lived.
async fn trickle_connect(addr: SocketAddr, limit: Duration) -> anyhow::Result<(String, Duration)> {
    let started = tokio::time::Instant::now();
    let stream = TcpStream::connect(addr).await?;
    let (mut read, mut write) = stream.into_split();
    let trickle = tokio::spawn(async move {
        write.write_all(b"CONNECT {\"name\":\"").await?;
        // 10 ms per byte stays far below max_control_line within the limit.
        for _ in 0..limit.as_millis() / 10 {
            if write.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::Ok(())
    });
    let mut received = Vec::new();
    let deadline = started + limit;
    loop {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout_at(deadline, read.read(&mut chunk)).await {
            Err(_) => {
                trickle.abort();
                bail!(
                    "still open after {limit:?}: {:?}",
                    String::from_utf8_lossy(&received)
                );
            }
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
        }
    }
    let elapsed = started.elapsed();
    trickle.abort();
    let text = String::from_utf8_lossy(&received).into_owned();
    let after_info = text
        .split_once("\r\n")
        .filter(|(info, _)| info.starts_with("INFO "))
        .map(|(_, rest)| rest.to_owned())
        .with_context(|| format!("no INFO first: {text:?}"))?;
    Ok((after_info, elapsed))
}

/// A PUB whose size is over max_payload is refused from its control line; a PUB within the
/// limit whose payload never comes holds the connection only until it goes stale (it cannot
/// answer PING: a PONG would be payload).
async fn announce_payloads_that_never_come(server: &TestServer) -> anyhow::Result<()> {
    let mut huge = server.raw().await?;
    huge.handshake(r#"{"verbose":false}"#).await?;
    huge.send("PUB big 999999999\r\n").await?;
    assert_eq!(
        huge.expect_closed(WAIT).await?,
        "-ERR 'Maximum Payload Violation'\r\n"
    );

    let mut stuck = server.raw().await?;
    stuck.handshake(r#"{"verbose":false}"#).await?;
    let started = tokio::time::Instant::now();
    stuck
        .send(format!("PUB stuck {MAX_PAYLOAD}\r\n{}", "z".repeat(100)))
        .await?;
    let rest = stuck.expect_closed(STALE_WITHIN).await?;
    assert_eq!(rest, "PING\r\nPING\r\n-ERR 'Stale Connection'\r\n");
    ensure!(started.elapsed() < STALE_WITHIN);
    Ok(())
}

/// Control lines over max_control_line: complete, or never ending (cut off as they arrive,
/// before CONNECT too).
async fn send_oversized_control_lines(server: &TestServer) -> anyhow::Result<()> {
    let mut long_sub = server.raw().await?;
    long_sub.handshake(r#"{"verbose":false}"#).await?;
    long_sub
        .send(format!("SUB {} 1\r\n", "a".repeat(5000)))
        .await?;
    assert_eq!(
        long_sub.expect_closed(WAIT).await?,
        "-ERR 'maximum control line exceeded'\r\n"
    );

    let mut endless = server.raw().await?;
    // Just over the limit: a much longer one is cut off the same way, but the bytes the server
    // never read make its close a reset, which may overtake the -ERR.
    endless
        .send(format!("CONNECT {{\"name\":\"{}", "n".repeat(5000)))
        .await?;
    assert_eq!(
        endless.expect_closed(WAIT).await?,
        "-ERR 'maximum control line exceeded'\r\n"
    );
    Ok(())
}

/// A subscriber that never reads while a publisher floods its subject: it is cut off as a slow
/// consumer, and what the server queues for it never grows past max_pending.
async fn subscribe_and_never_read(server: &TestServer) -> anyhow::Result<()> {
    const PAYLOAD: usize = 16 * 1024;
    const FLOOD: usize = 16 * 1024 * 1024;
    let mut never_reads = RawClient::connect_with_recv_buffer(server.addr(), 4096).await?;
    never_reads
        .handshake(r#"{"verbose":false,"name":"never-reads"}"#)
        .await?;
    never_reads.send("SUB hostile.flood 1\r\nPING\r\n").await?;
    never_reads.expect_line("PONG").await?;

    let addr = server.addr();
    let flood = tokio::spawn(async move {
        let mut publisher = TcpStream::connect(addr).await?;
        let mut frames = b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n".to_vec();
        let payload = vec![b'f'; PAYLOAD];
        for _ in 0..FLOOD / PAYLOAD {
            frames.extend_from_slice(format!("PUB hostile.flood {PAYLOAD}\r\n").as_bytes());
            frames.extend_from_slice(&payload);
            frames.extend_from_slice(b"\r\n");
        }
        publisher.write_all(&frames).await?;
        anyhow::Ok(publisher)
    });

    // While it is open, its queue never exceeds max_pending (plus the one message that tips it).
    let mut highest = 0u64;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let connz = server.monitor_json("/connz").await?;
        let Some(conn) = named(&connz, "never-reads") else {
            break;
        };
        highest = highest.max(conn["pending_bytes"].as_u64().unwrap_or(0));
        ensure!(
            tokio::time::Instant::now() < deadline,
            "never-reading subscriber still connected after {WAIT:?} (pending {highest})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ensure!(
        highest <= MAX_PENDING + PAYLOAD as u64 + 64,
        "queued {highest} bytes for a client with max_pending {MAX_PENDING}"
    );
    let closed = server
        .monitor_json("/connz?state=closed&limit=1024")
        .await?;
    let conn = named(&closed, "never-reads").context("never-reads not among closed")?;
    assert_eq!(conn["reason"], "Slow Consumer (Pending Bytes)");
    // No -ERR, as nats-server: the socket just ends after what it already held.
    let rest = never_reads.expect_closed(WAIT).await?;
    ensure!(!rest.contains("-ERR"), "slow consumer got an -ERR");

    let publisher = tokio::time::timeout(WAIT, flood)
        .await
        .context("flood publisher stuck")???;
    drop(publisher);
    Ok(())
}

/// A client that pipelines PINGs and never reads the PONGs: its own replies count against
/// max_pending, as in nats-server, so it is cut off as a slow consumer.
async fn pipeline_pings_and_never_read(server: &TestServer) -> anyhow::Result<()> {
    let mut raw = RawClient::connect_with_recv_buffer(server.addr(), 4096).await?;
    raw.handshake(r#"{"verbose":false,"name":"ping-flood"}"#)
        .await?;
    let mut stream = raw.into_stream()?;
    let pings = b"PING\r\n".repeat(8 * 1024);
    let mut sent = 0usize;
    // Enough PINGs to reach max_pending several times over, unless the server cuts off first.
    while sent < 64 * MAX_PENDING as usize {
        match tokio::time::timeout(WAIT, stream.write_all(&pings)).await {
            Ok(Ok(())) => sent += pings.len(),
            Ok(Err(_)) => break,
            Err(_) => bail!("writing PINGs blocked for {WAIT:?} after {sent} bytes"),
        }
    }
    ensure!(
        sent < 64 * MAX_PENDING as usize,
        "sent {sent} bytes of PING without being cut off"
    );
    let closed = json_when(server, "/connz?state=closed&limit=1024", |v| {
        named(v, "ping-flood").is_some()
    })
    .await?;
    let conn = named(&closed, "ping-flood").context("ping-flood not among closed")?;
    assert_eq!(conn["reason"], "Slow Consumer (Pending Bytes)");
    Ok(())
}

fn named<'a>(connz: &'a Value, name: &str) -> Option<&'a Value> {
    connz["connections"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

/// Polls a monitoring endpoint until `ready` holds (bounded by `WAIT`).
async fn json_when(
    server: &TestServer,
    path: &str,
    ready: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    server.monitor_json_when(path, WAIT, ready).await
}

#[tokio::test]
async fn with_auth_a_trickled_connect_is_cut_off_by_the_authentication_timeout()
-> anyhow::Result<()> {
    let server = TestServer::start_with(ServerConfig {
        auth: AuthConfig {
            user: Some("alice".into()),
            password: Some("secret".into()),
            ..AuthConfig::default()
        },
        limits: Limits {
            auth_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        ..test_config()
    })
    .await?;
    // The bytes keep arriving, but only a complete CONNECT stops the timer.
    let (transcript, elapsed) = trickle_connect(server.addr(), WAIT).await?;
    assert_eq!(transcript, "-ERR 'Authentication Timeout'\r\n");
    ensure!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(2),
        "closed after {elapsed:?}"
    );
    Ok(())
}
