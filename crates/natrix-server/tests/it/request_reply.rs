//! Request/reply through async-nats (inboxes, concurrent requests, no-responders) and the exact
//! no-responders status message over raw TCP.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use natrix_testkit::TestServer;

async fn responder(
    client: async_nats::Client,
    subject: &str,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut requests = client.subscribe(subject.to_string()).await?;
    client.flush().await?;
    Ok(tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            if let Some(reply) = request.reply {
                let mut answer = b"re: ".to_vec();
                answer.extend_from_slice(&request.payload);
                let _ = client.publish(reply, answer.into()).await;
            }
        }
    }))
}

#[tokio::test]
async fn request_gets_the_responders_reply() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let _service = responder(async_nats::connect(server.url()).await?, "svc.echo").await?;
    let client = async_nats::connect(server.url()).await?;
    let reply = client.request("svc.echo", "ping".into()).await?;
    assert_eq!(reply.payload, "re: ping");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_each_get_their_own_reply() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let _service = responder(async_nats::connect(server.url()).await?, "svc.echo").await?;
    let client = async_nats::connect(server.url()).await?;
    let requests = (0..500).map(|i| {
        let client = client.clone();
        async move {
            let reply = client
                .request("svc.echo", Bytes::from(i.to_string()))
                .await?;
            anyhow::ensure!(
                reply.payload == format!("re: {i}"),
                "request {i} got {:?}",
                reply.payload
            );
            Ok(())
        }
    });
    futures::future::try_join_all(requests).await?;
    Ok(())
}

#[tokio::test]
async fn request_with_no_responders_fails_fast_with_no_responders() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let started = Instant::now();
    let err = client
        .request("nobody.home", "?".into())
        .await
        .expect_err("nobody answers");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}: a timeout, not a status",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn request_to_a_queue_group_is_answered_once() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let service = async_nats::connect(server.url()).await?;
    let mut handles = Vec::new();
    for name in ["one", "two", "three"] {
        let mut requests = service.queue_subscribe("svc.q", "workers".into()).await?;
        let service = service.clone();
        handles.push(tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    let _ = service.publish(reply, name.into()).await;
                }
            }
        }));
    }
    service.flush().await?;
    let client = async_nats::connect(server.url()).await?;
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await?;
    client
        .publish_with_reply("svc.q", inbox, "job".into())
        .await?;
    client.flush().await?;
    let first = tokio::time::timeout(Duration::from_secs(5), replies.next()).await?;
    assert!(first.is_some());
    assert!(
        tokio::time::timeout(Duration::from_millis(200), replies.next())
            .await
            .is_err(),
        "second reply"
    );
    Ok(())
}

#[tokio::test]
async fn no_responders_status_is_a_503_hmsg_on_the_publishers_own_inbox() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.handshake(r#"{"verbose":false,"headers":true,"no_responders":true}"#)
        .await?;
    raw.send("SUB _INBOX.* 7\r\nPUB nobody _INBOX.abc 2\r\nhi\r\nPING\r\n")
        .await?;
    // Exactly nats-server's bytes: no reply subject, 16-byte header block, empty body.
    raw.expect_line("HMSG _INBOX.abc 7 16 16").await?;
    raw.expect_line("NATS/1.0 503").await?;
    raw.expect_line("").await?;
    raw.expect_line("").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn no_responders_status_follows_the_publishers_ok_in_verbose_mode() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.send("CONNECT {\"verbose\":true,\"headers\":true,\"no_responders\":true}\r\nSUB _INBOX.x 1\r\nPUB nobody _INBOX.x 0\r\n\r\nPING\r\n")
        .await?;
    for _ in 0..3 {
        raw.expect_line("+OK").await?;
    }
    raw.expect_line("HMSG _INBOX.x 1 16 16").await?;
    raw.expect_line("NATS/1.0 503").await?;
    Ok(())
}

#[tokio::test]
async fn no_responders_is_sent_when_the_only_subscriber_is_the_publisher_without_echo()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.handshake(r#"{"verbose":false,"echo":false,"headers":true,"no_responders":true}"#)
        .await?;
    raw.send("SUB svc 1\r\nSUB _INBOX.x 2\r\nPUB svc _INBOX.x 1\r\na\r\nPING\r\n")
        .await?;
    raw.expect_line("HMSG _INBOX.x 2 16 16").await?;
    raw.expect_line("NATS/1.0 503").await?;
    raw.expect_line("").await?;
    raw.expect_line("").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn no_status_without_no_responders_or_without_an_own_inbox_subscription() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let mut plain = server.raw().await?;
    plain
        .handshake(r#"{"verbose":false,"headers":true}"#)
        .await?;
    plain
        .send("SUB _INBOX.x 1\r\nPUB nobody _INBOX.x 0\r\n\r\nPING\r\n")
        .await?;
    plain.expect_line("PONG").await?;
    let mut queue_inbox = server.raw().await?;
    queue_inbox
        .handshake(r#"{"verbose":false,"headers":true,"no_responders":true}"#)
        .await?;
    // A queue subscription on the inbox does not count (nats-server looks at plain ones only).
    queue_inbox.send("SUB _INBOX.x q 1\r\nPUB nobody _INBOX.x 0\r\n\r\nPUB nobody _INBOX.none 0\r\n\r\nPING\r\n").await?;
    queue_inbox.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn replies_reach_a_subscriber_without_headers_support_as_plain_msg() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut requester = server.raw().await?;
    requester.handshake(r#"{"verbose":false}"#).await?;
    requester.send("SUB _INBOX.r 1\r\nPING\r\n").await?;
    requester.expect_line("PONG").await?;
    let client = async_nats::connect(server.url()).await?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Trace", "1");
    client
        .publish_with_headers("_INBOX.r", headers, "answer".into())
        .await?;
    client.flush().await?;
    requester.expect_line("MSG _INBOX.r 1 6").await?;
    requester.expect_line("answer").await?;
    Ok(())
}
