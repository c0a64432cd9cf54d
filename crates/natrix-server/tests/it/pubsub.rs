//! Core publish/subscribe through the official async-nats client: delivery, wildcards, echo,
//! auto-unsubscribe, payload limits and many subscriptions.

use std::time::Duration;

use async_nats::ConnectOptions;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use natrix_testkit::TestServer;

const WAIT: Duration = Duration::from_secs(5);

async fn next(sub: &mut async_nats::Subscriber) -> anyhow::Result<async_nats::Message> {
    tokio::time::timeout(WAIT, sub.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("subscription ended"))
}

async fn nothing_more(sub: &mut async_nats::Subscriber) -> anyhow::Result<()> {
    if let Ok(msg) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
        anyhow::bail!("unexpected message {msg:?}");
    }
    Ok(())
}

#[tokio::test]
async fn subscriber_receives_what_another_client_publishes() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let subscriber = async_nats::connect(server.url()).await?;
    let publisher = async_nats::connect(server.url()).await?;
    let mut sub = subscriber.subscribe("greet.joe").await?;
    subscriber.flush().await?;
    publisher
        .publish_with_reply("greet.joe", "reply.here", "hello".into())
        .await?;
    publisher.flush().await?;
    let msg = next(&mut sub).await?;
    assert_eq!(msg.subject.as_str(), "greet.joe");
    assert_eq!(msg.payload, "hello");
    assert_eq!(msg.reply.as_deref(), Some("reply.here"));
    Ok(())
}

#[tokio::test]
async fn messages_from_one_publisher_arrive_in_order() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let mut sub = client.subscribe("seq").await?;
    client.flush().await?;
    for i in 0..2000u32 {
        client.publish("seq", Bytes::from(i.to_string())).await?;
    }
    client.flush().await?;
    for i in 0..2000u32 {
        assert_eq!(next(&mut sub).await?.payload, i.to_string());
    }
    Ok(())
}

#[tokio::test]
async fn star_wildcard_matches_exactly_one_token() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let mut sub = client.subscribe("orders.*.created").await?;
    client.flush().await?;
    for subject in [
        "orders.eu.created",
        "orders.created",
        "orders.eu.us.created",
        "orders.us.created",
    ] {
        client.publish(subject, Bytes::new()).await?;
    }
    client.flush().await?;
    assert_eq!(next(&mut sub).await?.subject.as_str(), "orders.eu.created");
    assert_eq!(next(&mut sub).await?.subject.as_str(), "orders.us.created");
    nothing_more(&mut sub).await
}

#[tokio::test]
async fn full_wildcard_matches_one_or_more_trailing_tokens() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let mut sub = client.subscribe("logs.>").await?;
    client.flush().await?;
    for subject in ["logs", "logs.a", "logs.a.b.c", "other.a"] {
        client.publish(subject, Bytes::new()).await?;
    }
    client.flush().await?;
    assert_eq!(next(&mut sub).await?.subject.as_str(), "logs.a");
    assert_eq!(next(&mut sub).await?.subject.as_str(), "logs.a.b.c");
    nothing_more(&mut sub).await
}

#[tokio::test]
async fn overlapping_subscriptions_each_get_a_copy() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let mut exact = client.subscribe("a.b").await?;
    let mut star = client.subscribe("a.*").await?;
    let mut full = client.subscribe(">").await?;
    client.flush().await?;
    client.publish("a.b", "x".into()).await?;
    client.flush().await?;
    for sub in [&mut exact, &mut star, &mut full] {
        assert_eq!(next(sub).await?.payload, "x");
        nothing_more(sub).await?;
    }
    Ok(())
}

#[tokio::test]
async fn no_echo_client_does_not_receive_its_own_messages() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let quiet = ConnectOptions::new()
        .no_echo()
        .connect(server.url())
        .await?;
    let other = async_nats::connect(server.url()).await?;
    let mut own = quiet.subscribe("chat").await?;
    let mut others = other.subscribe("chat").await?;
    quiet.flush().await?;
    other.flush().await?;
    quiet.publish("chat", "from quiet".into()).await?;
    quiet.flush().await?;
    assert_eq!(next(&mut others).await?.payload, "from quiet");
    other.publish("chat", "from other".into()).await?;
    other.flush().await?;
    assert_eq!(next(&mut own).await?.payload, "from other");
    nothing_more(&mut own).await
}

#[tokio::test]
async fn unsubscribe_after_n_delivers_exactly_n_messages() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let mut sub = client.subscribe("limited").await?;
    sub.unsubscribe_after(3).await?;
    client.flush().await?;
    for i in 0..10u32 {
        client
            .publish("limited", Bytes::from(i.to_string()))
            .await?;
    }
    client.flush().await?;
    let mut got = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
        got.push(msg.payload);
    }
    assert_eq!(got, ["0", "1", "2"]);
    Ok(())
}

#[tokio::test]
async fn unsubscribed_subscription_gets_nothing_more() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let mut sub = client.subscribe("gone").await?;
    let mut witness = client.subscribe("gone").await?;
    client.flush().await?;
    client.publish("gone", "1".into()).await?;
    client.flush().await?;
    assert_eq!(next(&mut sub).await?.payload, "1");
    sub.unsubscribe().await?;
    client.publish("gone", "2".into()).await?;
    client.flush().await?;
    assert_eq!(next(&mut witness).await?.payload, "1");
    assert_eq!(next(&mut witness).await?.payload, "2");
    assert!(
        tokio::time::timeout(WAIT, sub.next()).await?.is_none(),
        "subscription should end"
    );
    Ok(())
}

#[tokio::test]
async fn payload_of_exactly_max_payload_is_delivered_intact() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    assert_eq!(client.server_info().max_payload, 1024 * 1024);
    let mut sub = client.subscribe("big").await?;
    client.flush().await?;
    let payload: Bytes = (0..1024 * 1024)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    client.publish("big", payload.clone()).await?;
    client.flush().await?;
    assert_eq!(next(&mut sub).await?.payload, payload);
    Ok(())
}

#[tokio::test]
async fn payload_over_max_payload_is_rejected() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    // async-nats enforces the max_payload the server announced before sending.
    let err = client
        .publish("big", Bytes::from(vec![0u8; 1024 * 1024 + 1]))
        .await
        .expect_err("a payload over max_payload must be refused");
    assert_eq!(
        err.kind(),
        async_nats::client::PublishErrorKind::MaxPayloadExceeded
    );
    // The server refuses it too (for clients that do not check), then closes.
    let mut raw = server.raw().await?;
    raw.handshake(r#"{"verbose":false}"#).await?;
    raw.send("PUB big 1048577\r\n").await?;
    let rest = raw.expect_closed(WAIT).await?;
    assert_eq!(rest, "-ERR 'Maximum Payload Violation'\r\n");
    // The async-nats client is still usable.
    client.flush().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_subscriptions_on_one_connection_all_receive() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let mut subs = Vec::with_capacity(10_000);
    for i in 0..10_000 {
        subs.push(client.subscribe(format!("many.{i}")).await?);
    }
    let mut all = client.subscribe("many.*").await?;
    client.flush().await?;
    for i in 0..10_000 {
        client.publish(format!("many.{i}"), Bytes::new()).await?;
    }
    client.flush().await?;
    for (i, sub) in subs.iter_mut().enumerate() {
        assert_eq!(next(sub).await?.subject.as_str(), format!("many.{i}"));
    }
    for _ in 0..10_000 {
        next(&mut all).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_with_three_subscriptions_each_all_receive() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    // 100 connects in flight at a time: 1000 simultaneous SYNs can overflow the listen backlog
    // on a loaded 2-core machine, and a dropped SYN costs the client a 1 s retransmit.
    let clients: Vec<async_nats::Client> =
        futures::stream::iter((0..1000).map(|_| async_nats::connect(server.url())))
            .buffer_unordered(100)
            .try_collect()
            .await?;
    let mut subs = Vec::with_capacity(3000);
    for (i, client) in clients.iter().enumerate() {
        subs.push(client.subscribe("fanout.all").await?);
        subs.push(client.subscribe(format!("fanout.one.{i}")).await?);
        subs.push(client.subscribe("fanout.>").await?);
    }
    futures::future::try_join_all(clients.iter().map(|c| c.flush())).await?;
    let publisher = async_nats::connect(server.url()).await?;
    publisher.publish("fanout.all", "x".into()).await?;
    publisher.flush().await?;
    let received =
        futures::future::join_all(subs.iter_mut().enumerate().filter(|(i, _)| i % 3 != 1).map(
            |(_, sub)| async move {
                tokio::time::timeout(WAIT, sub.next())
                    .await
                    .ok()
                    .flatten()
                    .is_some()
            },
        ))
        .await;
    assert_eq!(received.iter().filter(|got| **got).count(), 2000);
    Ok(())
}
