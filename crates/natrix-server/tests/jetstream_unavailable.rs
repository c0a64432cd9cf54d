//! A node started with JetStream enabled, before natrix serves streams, answers JetStream API
//! requests with nats-server's "not enabled" error (through an internal subscription of the
//! node); without JetStream nobody answers and requesters get no-responders.

use std::time::Duration;

use natrix_server::{JetStreamConfig, ServerConfig};
use natrix_testkit::{TestServer, test_config};

#[tokio::test]
async fn jetstream_api_requests_get_a_not_enabled_error_reply() -> anyhow::Result<()> {
    let server = TestServer::start_with(ServerConfig {
        jetstream: Some(JetStreamConfig::default()),
        ..test_config()
    })
    .await?;
    let mut raw = server.raw().await?;
    raw.handshake(r#"{"verbose":false,"pedantic":false}"#)
        .await?;
    raw.send("SUB _INBOX.js 1\r\nPUB $JS.API.INFO _INBOX.js 0\r\n\r\n")
        .await?;
    let (line, payload) = raw.expect_msg().await?;
    assert!(line.starts_with("MSG _INBOX.js 1 "), "{line}");
    let reply: serde_json::Value = serde_json::from_slice(&payload)?;
    assert_eq!(reply["error"]["code"], 503);
    assert_eq!(reply["error"]["err_code"], 10039);
    assert_eq!(
        reply["error"]["description"],
        "jetstream not enabled for account"
    );

    // The official client surfaces it as an error, quickly.
    let client = async_nats::connect(server.url()).await?;
    let js = async_nats::jetstream::new(client);
    let result = tokio::time::timeout(Duration::from_secs(2), js.query_account()).await?;
    let err = result.expect_err("account info must fail while JetStream is unavailable");
    assert!(
        err.to_string().to_lowercase().contains("not enabled"),
        "unexpected error: {err}"
    );
    Ok(())
}

#[tokio::test]
async fn without_jetstream_api_requests_get_no_responders() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let result = tokio::time::timeout(
        Duration::from_secs(2),
        client.request("$JS.API.INFO", "".into()),
    )
    .await?;
    let err = result.expect_err("nobody serves the JetStream API");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    Ok(())
}
