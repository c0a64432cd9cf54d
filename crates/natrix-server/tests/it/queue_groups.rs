//! Queue groups through async-nats: each message goes to exactly one member of a group, load
//! spreads over all members, and groups and plain subscribers each get their own copy.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use natrix_testkit::TestServer;

/// Drains every subscriber until 300 ms pass without a message; returns payloads per member.
async fn collect(subs: Vec<async_nats::Subscriber>) -> Vec<Vec<Bytes>> {
    futures::future::join_all(subs.into_iter().map(|mut sub| async move {
        let mut got = Vec::new();
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await
        {
            got.push(msg.payload);
        }
        got
    }))
    .await
}

async fn publish_numbered(
    client: &async_nats::Client,
    subject: &str,
    n: u32,
) -> anyhow::Result<()> {
    for i in 0..n {
        client
            .publish(subject.to_string(), Bytes::from(i.to_string()))
            .await?;
    }
    client.flush().await?;
    Ok(())
}

/// Asserts every message 0..n appears exactly once across `members`.
fn assert_each_exactly_once(members: &[Vec<Bytes>], n: u32) {
    let mut seen: HashMap<Bytes, usize> = HashMap::new();
    for payload in members.iter().flatten() {
        *seen.entry(payload.clone()).or_default() += 1;
    }
    assert_eq!(
        seen.len(),
        n as usize,
        "every message delivered to the group"
    );
    assert!(seen.values().all(|&c| c == 1), "no message delivered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_goes_to_exactly_one_member_and_every_member_gets_some() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let mut members = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..10 {
        let client = async_nats::connect(server.url()).await?;
        members.push(client.queue_subscribe("work", "workers".into()).await?);
        client.flush().await?;
        clients.push(client);
    }
    let publisher = async_nats::connect(server.url()).await?;
    publish_numbered(&publisher, "work", 2000).await?;
    let got = collect(members).await;
    assert_each_exactly_once(&got, 2000);
    for (i, member) in got.iter().enumerate() {
        assert!(
            member.len() > 50,
            "member {i} got only {} of 2000",
            member.len()
        );
    }
    Ok(())
}

#[tokio::test]
async fn members_on_one_connection_share_the_work_too() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let mut members = Vec::new();
    for _ in 0..4 {
        members.push(client.queue_subscribe("jobs.*", "q".into()).await?);
    }
    client.flush().await?;
    publish_numbered(&client, "jobs.x", 400).await?;
    let got = collect(members).await;
    assert_each_exactly_once(&got, 400);
    assert!(
        got.iter().all(|m| !m.is_empty()),
        "sizes {:?}",
        got.iter().map(Vec::len).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test]
async fn every_group_and_every_plain_subscriber_gets_its_own_copy() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let a = vec![
        client.queue_subscribe("ev", "a".into()).await?,
        client.queue_subscribe("ev", "a".into()).await?,
    ];
    let b = vec![
        client.queue_subscribe("ev", "b".into()).await?,
        client.queue_subscribe("ev.>", "b".into()).await?,
    ];
    let plain = vec![client.subscribe("ev").await?];
    client.flush().await?;
    publish_numbered(&client, "ev", 100).await?;
    let (a, b, plain) = tokio::join!(collect(a), collect(b), collect(plain));
    assert_each_exactly_once(&a, 100);
    // "ev.>" does not match "ev": group b's second member gets nothing.
    assert_each_exactly_once(&b, 100);
    assert!(b[1].is_empty());
    assert_each_exactly_once(&plain, 100);
    Ok(())
}

#[tokio::test]
async fn a_member_that_leaves_gets_no_more_and_the_rest_get_everything() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let leaver_client = async_nats::connect(server.url()).await?;
    let stayer = client.queue_subscribe("tasks", "g".into()).await?;
    let leaver = leaver_client.queue_subscribe("tasks", "g".into()).await?;
    leaver_client.flush().await?;
    drop(leaver);
    drop(leaver_client);
    client.flush().await?;
    // Closing the connection removes its member; give the server a moment to notice.
    tokio::time::sleep(Duration::from_millis(100)).await;
    publish_numbered(&client, "tasks", 200).await?;
    let got = collect(vec![stayer]).await;
    assert_each_exactly_once(&got, 200);
    Ok(())
}

#[tokio::test]
async fn raw_queue_subscription_delivers_msg_with_the_members_sid() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut raw = server.raw().await?;
    raw.handshake(r#"{"verbose":false}"#).await?;
    raw.send("SUB work q1 5\r\nSUB work q1 6\r\nPUB work 2\r\nhi\r\nPING\r\n")
        .await?;
    let (line, payload) = raw.expect_msg().await?;
    assert!(line == "MSG work 5 2" || line == "MSG work 6 2", "{line}");
    assert_eq!(payload, b"hi");
    raw.expect_line("PONG").await?;
    Ok(())
}
