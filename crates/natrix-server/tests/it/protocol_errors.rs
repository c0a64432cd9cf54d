//! Protocol errors over raw TCP: the exact `-ERR` text and whether the connection survives,
//! matching nats-server 2.9.10 (every case here was first run against it; the table is in
//! docs/protocol-behaviour.md).

use std::time::Duration;

use natrix_server::{Limits, ServerConfig};
use natrix_testkit::{RawClient, TestServer, test_config};

const CLOSE_WITHIN: Duration = Duration::from_secs(2);

/// A raw connection past CONNECT (and its +OK, when verbose).
async fn connected(server: &TestServer, connect: &str) -> anyhow::Result<RawClient> {
    let mut raw = server.raw().await?;
    if connect.contains(r#""verbose":true"#) {
        raw.send(format!("CONNECT {connect}\r\n")).await?;
        raw.expect_line("+OK").await?;
    } else {
        raw.handshake(connect).await?;
    }
    Ok(raw)
}

/// Sends `input` and asserts the server answers with exactly `reply` and then closes.
async fn closes_with(
    raw: &mut RawClient,
    input: impl AsRef<[u8]>,
    reply: &str,
) -> anyhow::Result<()> {
    raw.send(input).await?;
    let rest = raw.expect_closed(CLOSE_WITHIN).await?;
    assert_eq!(rest, reply, "reply before the close");
    Ok(())
}

#[tokio::test]
async fn unknown_operation_is_reported_and_closes_the_connection() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":false}"#).await?;
    closes_with(
        &mut raw,
        "FOO bar\r\n",
        "-ERR 'Unknown Protocol Operation'\r\n",
    )
    .await
}

#[tokio::test]
async fn a_verb_without_its_separator_is_an_unknown_operation() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":false}"#).await?;
    closes_with(
        &mut raw,
        "PUBX foo 1\r\n",
        "-ERR 'Unknown Protocol Operation'\r\n",
    )
    .await
}

#[tokio::test]
async fn invalid_subject_on_sub_is_reported_and_the_connection_stays_open() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":true}"#).await?;
    for subject in ["foo..bar", "foo.>.bar", ".foo", "foo."] {
        raw.send(format!("SUB {subject} 1\r\n")).await?;
        raw.expect_err("Invalid Subject").await?;
    }
    raw.send("SUB foo.* 1\r\nPING\r\n").await?;
    raw.expect_line("+OK").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn pedantic_publish_to_a_wildcard_subject_is_reported_but_still_delivered()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":true,"pedantic":true}"#).await?;
    raw.send("SUB foo.* 1\r\nPUB foo.* 1\r\na\r\nPING\r\n")
        .await?;
    raw.expect_line("+OK").await?;
    raw.expect_err("Invalid Publish Subject").await?;
    raw.expect_line("+OK").await?;
    raw.expect_line("MSG foo.* 1 1").await?;
    raw.expect_line("a").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn pedantic_rejects_empty_tokens_and_full_wildcards_in_publish_subjects() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":false,"pedantic":true}"#).await?;
    for subject in ["foo.>", "foo..bar", "*"] {
        raw.send(format!("PUB {subject} 0\r\n\r\n")).await?;
        raw.expect_err("Invalid Publish Subject").await?;
    }
    raw.send("PING\r\n").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn without_pedantic_a_wildcard_publish_reaches_only_wildcard_subscribers()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":false,"pedantic":false}"#).await?;
    raw.send("SUB foo.bar 1\r\nSUB foo.* 2\r\nPUB foo.* 1\r\na\r\nPUB foo..bar 1\r\nb\r\nPING\r\n")
        .await?;
    raw.expect_line("MSG foo.* 2 1").await?;
    raw.expect_line("a").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn control_line_over_the_limit_is_reported_and_closes() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":false}"#).await?;
    let subject = "a".repeat(4095);
    // The limit applies to the arguments: "<subject> 1" is 4097 bytes.
    closes_with(
        &mut raw,
        format!("SUB {subject} 1\r\n"),
        "-ERR 'maximum control line exceeded'\r\n",
    )
    .await
}

#[tokio::test]
async fn control_line_exactly_at_the_limit_is_accepted() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":true}"#).await?;
    let subject = "a".repeat(4094);
    raw.send(format!("SUB {subject} 1\r\n")).await?;
    raw.expect_line("+OK").await?;
    Ok(())
}

#[tokio::test]
async fn a_control_line_that_never_ends_is_cut_off_at_the_limit() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":false}"#).await?;
    closes_with(
        &mut raw,
        format!("PUB {}", "x".repeat(5000)),
        "-ERR 'maximum control line exceeded'\r\n",
    )
    .await
}

#[tokio::test]
async fn payload_over_max_payload_is_refused_from_the_control_line() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":false,"headers":true}"#).await?;
    // Refused before any payload byte is sent.
    closes_with(
        &mut raw,
        "PUB foo 1048577\r\n",
        "-ERR 'Maximum Payload Violation'\r\n",
    )
    .await?;
    let mut raw = connected(&server, r#"{"verbose":false,"headers":true}"#).await?;
    closes_with(
        &mut raw,
        "HPUB foo 12 1048577\r\n",
        "-ERR 'Maximum Payload Violation'\r\n",
    )
    .await
}

#[tokio::test]
async fn max_payload_follows_the_configuration() -> anyhow::Result<()> {
    let config = ServerConfig {
        limits: Limits {
            max_payload: 1024,
            ..Limits::default()
        },
        ..test_config()
    };
    let server = TestServer::start_with(config).await?;
    let mut raw = connected(&server, r#"{"verbose":true}"#).await?;
    assert_eq!(raw.info_json()?["max_payload"], 1024);
    raw.send(format!("PUB foo 1024\r\n{}\r\n", "x".repeat(1024)))
        .await?;
    raw.expect_line("+OK").await?;
    closes_with(
        &mut raw,
        "PUB foo 1025\r\n",
        "-ERR 'Maximum Payload Violation'\r\n",
    )
    .await
}

#[tokio::test]
async fn payload_longer_than_announced_is_an_unknown_operation() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":false}"#).await?;
    closes_with(
        &mut raw,
        "PUB foo 2\r\nhello\r\n",
        "-ERR 'Unknown Protocol Operation'\r\n",
    )
    .await
}

#[tokio::test]
async fn payload_shorter_than_announced_is_an_unknown_operation() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":false}"#).await?;
    closes_with(
        &mut raw,
        "PUB foo 5\r\nhi\r\nPING\r\n",
        "-ERR 'Unknown Protocol Operation'\r\n",
    )
    .await
}

#[tokio::test]
async fn malformed_arguments_close_the_connection_without_a_reply() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    for input in [
        "PUB foo\r\n",
        "PUB foo abc\r\n",
        "PUB foo -1\r\n",
        "PUB foo a b 1\r\n",
        "SUB foo\r\n",
        "SUB foo q 1 extra\r\n",
        "HPUB foo 14 12\r\n",
        "HPUB foo 12\r\n",
        "UNSUB 1 2 3\r\n",
    ] {
        let mut raw = connected(&server, r#"{"verbose":false,"headers":true}"#).await?;
        raw.send(input).await?;
        let rest = raw.expect_closed(CLOSE_WITHIN).await?;
        assert_eq!(rest, "", "reply to {input:?}");
    }
    Ok(())
}

#[tokio::test]
async fn unsub_without_a_sid_is_an_unknown_operation() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":false}"#).await?;
    closes_with(
        &mut raw,
        "UNSUB\r\n",
        "-ERR 'Unknown Protocol Operation'\r\n",
    )
    .await
}

#[tokio::test]
async fn hpub_from_a_client_that_did_not_announce_headers_closes_silently() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":false}"#).await?;
    closes_with(&mut raw, "HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", "").await
}

#[tokio::test]
async fn invalid_connect_json_closes_silently() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    for input in ["CONNECT {bad}\r\n", "CONNECT 5\r\n", "CONNECT\r\n"] {
        let mut raw = server.raw().await?;
        closes_with(&mut raw, input, "").await?;
    }
    Ok(())
}

#[tokio::test]
async fn no_responders_without_headers_is_refused() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    closes_with(
        &mut raw,
        "CONNECT {\"verbose\":false,\"no_responders\":true}\r\n",
        "-ERR 'no responders requires headers support'\r\n",
    )
    .await
}

#[tokio::test]
async fn a_client_sending_err_is_disconnected() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":false}"#).await?;
    closes_with(&mut raw, "-ERR 'oops'\r\n", "").await
}

#[tokio::test]
async fn lines_ending_in_a_bare_newline_inside_a_payload_frame_are_rejected() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":false}"#).await?;
    closes_with(
        &mut raw,
        "PUB foo 1\na\nPING\n",
        "-ERR 'Unknown Protocol Operation'\r\n",
    )
    .await
}

#[tokio::test]
async fn errors_on_one_connection_leave_others_untouched() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut good = connected(&server, r#"{"verbose":false}"#).await?;
    good.send("SUB foo 1\r\nPING\r\n").await?;
    good.expect_line("PONG").await?;
    let mut bad = connected(&server, r#"{"verbose":false}"#).await?;
    closes_with(
        &mut bad,
        "PUB foo 1\r\nabc\r\n",
        "-ERR 'Unknown Protocol Operation'\r\n",
    )
    .await?;
    let mut publisher = connected(&server, r#"{"verbose":false}"#).await?;
    publisher.send("PUB foo 2\r\nok\r\nPING\r\n").await?;
    publisher.expect_line("PONG").await?;
    assert_eq!(good.expect_msg().await?.1, b"ok");
    Ok(())
}

#[tokio::test]
async fn a_client_info_that_is_not_a_json_object_closes_silently() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = connected(&server, r#"{"verbose":false}"#).await?;
    raw.send("INFO {}\r\nPING\r\n").await?;
    raw.expect_line("PONG").await?;
    closes_with(&mut raw, "INFO bad\r\n", "").await
}
