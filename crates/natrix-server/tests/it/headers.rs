//! Message headers (HPUB/HMSG): round trip through async-nats with repeated keys, exact HMSG
//! framing, and headers stripped for subscribers that did not announce support.

use std::time::Duration;

use futures::StreamExt;
use natrix_testkit::TestServer;

#[tokio::test]
async fn headers_round_trip_with_multiple_values_per_key() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let mut sub = client.subscribe("h").await?;
    client.flush().await?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Id", "42");
    headers.append("X-Tag", "red");
    headers.append("X-Tag", "blue");
    client
        .publish_with_headers("h", headers, "body".into())
        .await?;
    client.flush().await?;
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await?
        .expect("message");
    let got = msg.headers.expect("headers delivered");
    assert_eq!(got.get("X-Id").map(|v| v.as_str()), Some("42"));
    let tags: Vec<&str> = got.get_all("X-Tag").map(|v| v.as_str()).collect();
    assert_eq!(tags, ["red", "blue"]);
    assert_eq!(msg.payload, "body");
    Ok(())
}

#[tokio::test]
async fn headers_without_a_body_are_delivered() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let mut sub = client.subscribe("h").await?;
    client.flush().await?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Only", "headers");
    client.publish_with_headers("h", headers, "".into()).await?;
    client.flush().await?;
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await?
        .expect("message");
    assert_eq!(
        msg.headers
            .and_then(|h| h.get("Only").map(|v| v.to_string()))
            .as_deref(),
        Some("headers")
    );
    assert!(msg.payload.is_empty());
    Ok(())
}

#[tokio::test]
async fn hmsg_carries_header_and_total_sizes_and_the_reply() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.handshake(r#"{"verbose":false,"headers":true}"#).await?;
    let hdr = "NATS/1.0\r\nA: b\r\nA: c\r\n\r\n";
    raw.send(format!(
        "SUB foo 1\r\nHPUB foo bar {} {}\r\n{hdr}hi\r\nPING\r\n",
        hdr.len(),
        hdr.len() + 2
    ))
    .await?;
    raw.expect_line("HMSG foo 1 bar 24 26").await?;
    raw.expect_line("NATS/1.0").await?;
    raw.expect_line("A: b").await?;
    raw.expect_line("A: c").await?;
    raw.expect_line("").await?;
    raw.expect_line("hi").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn subscriber_without_headers_support_gets_the_body_only() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut old = server.raw().await?;
    old.handshake(r#"{"verbose":false,"headers":false}"#)
        .await?;
    old.send("SUB foo 9\r\nPING\r\n").await?;
    old.expect_line("PONG").await?;
    let mut new = server.raw().await?;
    new.handshake(r#"{"verbose":false,"headers":true}"#).await?;
    new.send("SUB foo 3\r\nHPUB foo r 12 17\r\nNATS/1.0\r\n\r\nhello\r\nPING\r\n")
        .await?;
    new.expect_line("HMSG foo 3 r 12 17").await?;
    new.expect_line("NATS/1.0").await?;
    new.expect_line("").await?;
    new.expect_line("hello").await?;
    new.expect_line("PONG").await?;
    old.expect_line("MSG foo 9 r 5").await?;
    old.expect_line("hello").await?;
    Ok(())
}

#[tokio::test]
async fn header_block_content_is_passed_through_unchanged() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.handshake(r#"{"verbose":false,"headers":true}"#).await?;
    // nats-server does not validate the header block; neither do we.
    let hdr = "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\n\r\n";
    raw.send(format!(
        "SUB s 1\r\nHPUB s {} {}\r\n{hdr}\r\nPING\r\n",
        hdr.len(),
        hdr.len()
    ))
    .await?;
    raw.expect_line(&format!("HMSG s 1 {} {}", hdr.len(), hdr.len()))
        .await?;
    let block = raw.bytes(hdr.len() + 2).await?;
    assert_eq!(block, format!("{hdr}\r\n").into_bytes());
    raw.expect_line("PONG").await?;
    Ok(())
}
