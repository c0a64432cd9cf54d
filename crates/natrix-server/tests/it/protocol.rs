//! The client protocol's framing, byte for byte, over raw TCP: INFO, +OK, MSG/HMSG lines,
//! verbs in any case, tabs, pipelined and fragmented operations. Expected bytes are what
//! nats-server 2.9.10 sends for the same input (see docs/protocol-behaviour.md).

use std::time::Duration;

use natrix_testkit::TestServer;

const QUIET: Duration = Duration::from_millis(150);

#[tokio::test]
async fn info_announces_identity_limits_and_the_client_address() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let raw = server.raw().await?;
    let info = raw.info_json()?;
    assert_eq!(info["server_id"].as_str(), Some(server.server.server_id()));
    assert_eq!(
        info["server_name"].as_str(),
        Some(server.server.server_name())
    );
    let id = info["server_id"].as_str().unwrap_or_default();
    assert!(
        id.len() == 56 && id.starts_with('N'),
        "server_id {id:?} is not nats-server shaped"
    );
    assert!(
        info["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("2.")),
        "{info}"
    );
    assert_eq!(info["proto"], 1);
    assert_eq!(info["host"], "127.0.0.1");
    assert_eq!(info["port"], server.addr().port());
    assert_eq!(info["headers"], true);
    assert_eq!(info["max_payload"], 1024 * 1024);
    assert!(
        info["client_id"].as_u64().is_some_and(|id| id > 0),
        "{info}"
    );
    assert_eq!(info["client_ip"], "127.0.0.1");
    assert!(
        info.get("auth_required").is_none(),
        "no auth configured: {info}"
    );
    assert!(
        info.get("jetstream").is_none(),
        "no JetStream configured: {info}"
    );
    assert!(
        raw.info.ends_with("} "),
        "INFO ends with a space before CRLF, as nats-server's"
    );
    Ok(())
}

/// A server running JetStream says `"jetstream":true` in its INFO, as nats-server 2.9 and 2.15
/// do (natrix left it out until the C client suite's probe of INFO showed it).
#[tokio::test]
async fn info_announces_jetstream_when_it_runs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(natrix_server::ServerConfig {
        jetstream: Some(natrix_server::JetStreamConfig {
            store_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        }),
        ..natrix_testkit::test_config()
    })
    .await?;
    let info = server.raw().await?.info_json()?;
    assert_eq!(info["jetstream"], true, "{info}");
    Ok(())
}

#[tokio::test]
async fn each_connection_gets_its_own_client_id() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let a = server.raw().await?.info_json()?["client_id"].as_u64();
    let b = server.raw().await?.info_json()?["client_id"].as_u64();
    assert_ne!(a, b);
    Ok(())
}

#[tokio::test]
async fn verbose_acknowledges_every_operation_except_ping_and_pong() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.send("CONNECT {\"verbose\":true,\"pedantic\":false}\r\n")
        .await?;
    raw.expect_line("+OK").await?;
    raw.send("SUB foo 1\r\n").await?;
    raw.expect_line("+OK").await?;
    // The publisher's +OK comes before its own copy of the message.
    raw.send("PUB foo 2\r\nhi\r\n").await?;
    raw.expect_line("+OK").await?;
    assert_eq!(
        raw.expect_msg().await?,
        ("MSG foo 1 2".to_string(), b"hi".to_vec())
    );
    raw.send("UNSUB 1\r\n").await?;
    raw.expect_line("+OK").await?;
    raw.send("PING\r\n").await?;
    raw.expect_line("PONG").await?;
    raw.send("PONG\r\n").await?;
    raw.expect_silence(QUIET).await?;
    Ok(())
}

#[tokio::test]
async fn connect_without_options_means_verbose_and_pedantic() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.send("CONNECT {}\r\n").await?;
    raw.expect_line("+OK").await?;
    raw.send("PUB foo.* 0\r\n\r\n").await?;
    raw.expect_err("Invalid Publish Subject").await?;
    raw.expect_line("+OK").await?;
    Ok(())
}

#[tokio::test]
async fn operations_before_connect_are_served_as_verbose() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.send("SUB foo 1\r\nPUB foo 1\r\na\r\nPING\r\n").await?;
    raw.expect_line("+OK").await?;
    raw.expect_line("+OK").await?;
    assert_eq!(raw.expect_msg().await?.1, b"a");
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn msg_carries_subject_sid_optional_reply_and_size() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.handshake(r#"{"verbose":false,"pedantic":false}"#)
        .await?;
    raw.send("SUB foo.* 42\r\nPUB foo.bar 5\r\nhello\r\nPUB foo.baz _INBOX.r 0\r\n\r\nPING\r\n")
        .await?;
    raw.expect_line("MSG foo.bar 42 5").await?;
    raw.expect_line("hello").await?;
    raw.expect_line("MSG foo.baz 42 _INBOX.r 0").await?;
    raw.expect_line("").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn payload_may_contain_crlf_and_binary_bytes() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.handshake(r#"{"verbose":false,"pedantic":false}"#)
        .await?;
    let payload: Vec<u8> = b"PING\r\nMSG x\r\n\0\xff".to_vec();
    let mut op = format!("SUB bin 1\r\nPUB bin {}\r\n", payload.len()).into_bytes();
    op.extend_from_slice(&payload);
    op.extend_from_slice(b"\r\n");
    raw.send(op).await?;
    let (line, got) = raw.expect_msg().await?;
    assert_eq!(line, format!("MSG bin 1 {}", payload.len()));
    assert_eq!(got, payload);
    Ok(())
}

#[tokio::test]
async fn verbs_are_case_insensitive() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.send("connect {\"verbose\":false,\"headers\":true}\r\nsUb foo 1\r\npub foo 1\r\na\r\nhpub foo 12 13\r\nNATS/1.0\r\n\r\nb\r\nPiNg\r\n")
        .await?;
    raw.expect_line("MSG foo 1 1").await?;
    raw.expect_line("a").await?;
    raw.expect_line("HMSG foo 1 12 13").await?;
    raw.expect_line("NATS/1.0").await?;
    raw.expect_line("").await?;
    raw.expect_line("b").await?;
    raw.expect_line("PONG").await?;
    raw.send("unsub 1\r\npub foo 1\r\nc\r\nping\r\n").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn tabs_and_repeated_blanks_separate_arguments() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.send(
        "CONNECT\t{\"verbose\":false}\r\nSUB\tfoo\t\tq  7\r\nPUB \t foo\t 3\r\nabc\r\nPING\r\n",
    )
    .await?;
    raw.expect_line("MSG foo 7 3").await?;
    raw.expect_line("abc").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn control_lines_may_end_with_a_bare_newline() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.send("CONNECT {\"verbose\":false}\nSUB foo 1\nPUB foo 1\na\r\nPING\n")
        .await?;
    raw.expect_line("MSG foo 1 1").await?;
    raw.expect_line("a").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn pipelined_operations_in_one_write_are_all_served_in_order() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    let mut batch = String::from("CONNECT {\"verbose\":false}\r\nSUB seq 1\r\n");
    for i in 0..500 {
        let body = i.to_string();
        batch.push_str(&format!("PUB seq {}\r\n{body}\r\n", body.len()));
    }
    batch.push_str("PING\r\n");
    raw.send(batch).await?;
    for i in 0..500 {
        let (_, payload) = raw.expect_msg().await?;
        assert_eq!(payload, i.to_string().into_bytes());
    }
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn an_operation_split_across_many_writes_is_reassembled() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.handshake(r#"{"verbose":false,"headers":true}"#).await?;
    raw.send("SUB split.subject 9\r\nPING\r\n").await?;
    raw.expect_line("PONG").await?;
    let op =
        b"HPUB split.subject reply.to 24 29\r\nNATS/1.0\r\nA: 1\r\nB: 2\r\n\r\nhello\r\nPING\r\n";
    for byte in op {
        raw.send([*byte]).await?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    raw.expect_line("HMSG split.subject 9 reply.to 24 29")
        .await?;
    raw.expect_line("NATS/1.0").await?;
    raw.expect_line("A: 1").await?;
    raw.expect_line("B: 2").await?;
    raw.expect_line("").await?;
    raw.expect_line("hello").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn a_second_sub_with_a_used_sid_is_ignored() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.send("CONNECT {\"verbose\":true}\r\nSUB foo 1\r\nSUB bar 1\r\nPUB bar 1\r\nb\r\nPUB foo 1\r\nf\r\nPING\r\n").await?;
    for _ in 0..4 {
        raw.expect_line("+OK").await?;
    }
    raw.expect_line("+OK").await?;
    raw.expect_line("MSG foo 1 1").await?;
    raw.expect_line("f").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn unsub_of_an_unknown_sid_is_acknowledged_silently() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.send("CONNECT {\"verbose\":true}\r\nUNSUB 99\r\nUNSUB 99 5\r\nPING\r\n")
        .await?;
    for _ in 0..3 {
        raw.expect_line("+OK").await?;
    }
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn unsub_with_max_delivers_exactly_max_more_messages() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.handshake(r#"{"verbose":false}"#).await?;
    raw.send("SUB foo 1\r\nPUB foo 1\r\na\r\nUNSUB 1 3\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\nPUB foo 1\r\nd\r\nPING\r\n").await?;
    for expected in ["a", "b", "c"] {
        assert_eq!(raw.expect_msg().await?.1, expected.as_bytes());
    }
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn unsub_with_zero_or_unparsable_max_unsubscribes_now() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.handshake(r#"{"verbose":false}"#).await?;
    raw.send("SUB foo 1\r\nSUB foo 2\r\nUNSUB 1 0\r\nUNSUB 2 x\r\nPUB foo 1\r\na\r\nPING\r\n")
        .await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn client_info_and_ok_are_ignored() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.send("CONNECT {\"verbose\":true}\r\nINFO {}\r\n+OK\r\nPING\r\n")
        .await?;
    raw.expect_line("+OK").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}
