//! Lame duck mode (nats-server's SIGUSR2): stop accepting, announce `"ldm":true` in INFO, close
//! the remaining clients after the grace period, then stop.

use std::time::Duration;

use natrix_server::ServerConfig;
use natrix_testkit::{TestServer, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lame_duck_announces_ldm_stops_accepting_and_closes_clients() -> anyhow::Result<()> {
    let server = TestServer::start_with(ServerConfig {
        lame_duck_grace_period: Duration::from_millis(200),
        lame_duck_duration: Duration::from_millis(600),
        ..test_config()
    })
    .await?;
    let addr = server.addr();
    let mut first = server.raw().await?;
    first.handshake(r#"{"verbose":false,"protocol":1}"#).await?;
    let mut second = server.raw().await?;
    second
        .handshake(r#"{"verbose":false,"protocol":1}"#)
        .await?;

    server.server.enter_lame_duck();

    for client in [&mut first, &mut second] {
        let line = client.line().await?;
        assert!(line.starts_with("INFO "), "expected INFO, got {line:?}");
        assert!(
            line.contains(r#""ldm":true"#),
            "INFO announces lame duck mode: {line}"
        );
    }
    // The listener is closed: new clients cannot connect.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "a lame duck server stops accepting connections");

    // Still served during the grace period.
    first.send("PING\r\n").await?;
    first.expect_line("PONG").await?;

    first.expect_closed(Duration::from_secs(5)).await?;
    second.expect_closed(Duration::from_secs(5)).await?;
    tokio::time::timeout(Duration::from_secs(5), server.server.stopped()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_lame_duck_does_not_wait_out_the_grace_period() -> anyhow::Result<()> {
    let server = TestServer::start_with(ServerConfig {
        lame_duck_grace_period: Duration::from_secs(60),
        lame_duck_duration: Duration::from_secs(120),
        ..test_config()
    })
    .await?;
    let mut client = server.raw().await?;
    client
        .handshake(r#"{"verbose":false,"protocol":1}"#)
        .await?;
    server.server.enter_lame_duck();
    let line = client.line().await?;
    assert!(line.contains(r#""ldm":true"#), "{line}");
    tokio::time::timeout(Duration::from_secs(5), server.server.shutdown()).await?;
    client.expect_closed(Duration::from_secs(5)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lame_duck_info_goes_only_to_protocol_1_clients_with_their_client_id() -> anyhow::Result<()>
{
    let server = TestServer::start_with(ServerConfig {
        lame_duck_grace_period: Duration::from_secs(60),
        lame_duck_duration: Duration::from_secs(120),
        ..test_config()
    })
    .await?;
    let mut old = server.raw().await?;
    old.handshake(r#"{"verbose":false}"#).await?;
    let mut modern = server.raw().await?;
    modern
        .handshake(r#"{"verbose":false,"protocol":1}"#)
        .await?;
    server.server.enter_lame_duck();

    // nats.go replaces its server info with this INFO: it must keep client_id and client_ip.
    let line = modern.line().await?;
    assert!(line.contains(r#""ldm":true"#), "{line}");
    assert!(line.contains(r#""client_id":"#), "{line}");
    assert!(line.contains(r#""client_ip":"127.0.0.1""#), "{line}");
    // A protocol 0 client gets no asynchronous INFO, as from nats-server.
    old.send("PING\r\n").await?;
    old.expect_line("PONG").await?;
    tokio::time::timeout(Duration::from_secs(5), server.server.shutdown()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_once_lame_duck_mode_closed_the_client_listener() -> anyhow::Result<()> {
    let server = TestServer::start_with(ServerConfig {
        http_port: Some(0),
        lame_duck_grace_period: Duration::from_secs(60),
        lame_duck_duration: Duration::from_secs(120),
        ..test_config()
    })
    .await?;
    let healthy = server.monitor_get("/healthz").await?;
    assert_eq!(healthy.status, 200, "{}", healthy.body);
    // A client keeps the server in lame duck mode (without one it would stop at once).
    let mut client = server.raw().await?;
    client
        .handshake(r#"{"verbose":false,"protocol":1}"#)
        .await?;
    server.server.enter_lame_duck();
    let line = client.line().await?;
    assert!(line.contains(r#""ldm":true"#), "{line}");
    let health = server.monitor_get("/healthz").await?;
    assert_eq!(health.status, 503, "{}", health.body);
    assert_eq!(
        health.body,
        r#"{"status":"unavailable","error":"failed to be ready for connections after 1ms: server"}"#
    );
    tokio::time::timeout(Duration::from_secs(5), server.server.shutdown()).await?;
    Ok(())
}
