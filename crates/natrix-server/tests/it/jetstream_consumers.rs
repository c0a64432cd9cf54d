//! JetStream consumers through the official async-nats client: pull requests (fetch, batch,
//! continuous streams, expiry, no_wait, max_bytes, heartbeats), every ack kind, ack-wait and
//! backoff redelivery, max_deliver with its advisory, max_ack_pending, filters, deliver policies,
//! consumer info and the ack-subject metadata, push consumers (queue groups, flow control, idle
//! heartbeats, headers only, ordered), work-queue and interest retention, and consumer state
//! surviving a restart on the same store directory.

use crate::support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, pull, push};
use async_nats::jetstream::stream::{Config, RetentionPolicy};
use async_nats::jetstream::{self, AckKind};
use async_nats::{HeaderMap, StatusCode};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use support::{Node, eventually, ok, within};

/// A node with stream `S` on `s.>` holding `n` messages `"0".."n-1"` on `s.a`, and a pull
/// consumer on it.
async fn setup(
    n: usize,
    config: pull::Config,
) -> anyhow::Result<(Node, jetstream::consumer::PullConsumer)> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    node.publish_n("s.a", n).await?;
    let consumer = pull_consumer(&stream, config).await?;
    Ok((node, consumer))
}

/// Acks with `kind` and waits for the server's confirmation.
async fn ack_sync(message: &jetstream::Message, kind: AckKind) -> anyhow::Result<()> {
    ok(within("an ack reply", message.double_ack_with(kind)).await?)
}

/// Acks with `kind` without waiting for the server.
async fn ack_async(message: &jetstream::Message, kind: AckKind) -> anyhow::Result<()> {
    ok(within("an ack", message.ack_with(kind)).await?)
}

/// The next item of a message stream, failing on end, error or timeout.
async fn next<S, E>(messages: &mut S) -> anyhow::Result<jetstream::Message>
where
    S: Stream<Item = Result<jetstream::Message, E>> + Unpin,
    E: std::fmt::Display,
{
    match within("the next message", messages.next()).await? {
        Some(Ok(message)) => Ok(message),
        Some(Err(err)) => Err(anyhow::anyhow!("message stream error: {err}")),
        None => anyhow::bail!("message stream ended"),
    }
}

/// Every message of a batch that ends by itself (fetch, batch with expiry).
async fn collect<S, E>(messages: S) -> anyhow::Result<Vec<jetstream::Message>>
where
    S: Stream<Item = Result<jetstream::Message, E>>,
    E: std::fmt::Display,
{
    within("the batch to end", messages.try_collect::<Vec<_>>())
        .await?
        .map_err(|e| anyhow::anyhow!("message stream error: {e}"))
}

fn payloads(messages: &[jetstream::Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

fn stream_seqs(messages: &[jetstream::Message]) -> anyhow::Result<Vec<u64>> {
    messages
        .iter()
        .map(|m| {
            Ok(m.info()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .stream_sequence)
        })
        .collect()
}

fn delivered(message: &jetstream::Message) -> anyhow::Result<i64> {
    Ok(message
        .info()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .delivered)
}

fn durable(name: &str) -> pull::Config {
    pull::Config {
        durable_name: Some(name.to_string()),
        ..Default::default()
    }
}

async fn pull_consumer(
    stream: &jetstream::stream::Stream,
    config: pull::Config,
) -> anyhow::Result<jetstream::consumer::PullConsumer> {
    Ok(within("consumer create", stream.create_consumer(config)).await??)
}

async fn info(consumer: &jetstream::consumer::PullConsumer) -> anyhow::Result<consumer::Info> {
    Ok(within("consumer info", consumer.get_info()).await??)
}

/// All messages a no-wait fetch of up to `n` returns.
async fn fetch(
    consumer: &jetstream::consumer::PullConsumer,
    n: usize,
) -> anyhow::Result<Vec<jetstream::Message>> {
    let messages = within("fetch", consumer.fetch().max_messages(n).messages()).await??;
    collect(messages).await
}

/// All messages a waiting pull request of up to `n` returns before `expires`.
async fn batch(
    consumer: &jetstream::consumer::PullConsumer,
    n: usize,
    expires: Duration,
) -> anyhow::Result<Vec<jetstream::Message>> {
    let messages = within(
        "batch",
        consumer.batch().max_messages(n).expires(expires).messages(),
    )
    .await??;
    collect(messages).await
}

/// A raw pull request: the replies to `body` on a fresh inbox.
async fn raw_pull(
    node: &Node,
    stream: &str,
    consumer: &str,
    body: &str,
) -> anyhow::Result<async_nats::Subscriber> {
    let inbox = node.client.new_inbox();
    let sub = node.client.subscribe(inbox.clone()).await?;
    node.client
        .publish_with_reply(
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            inbox,
            Bytes::copy_from_slice(body.as_bytes()),
        )
        .await?;
    node.client.flush().await?;
    Ok(sub)
}

async fn next_raw(sub: &mut async_nats::Subscriber) -> anyhow::Result<async_nats::Message> {
    within("a raw reply", sub.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("subscription closed"))
}

// ---------------------------------------------------------------------------------------------
// Pull consumers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn fetch_returns_the_available_messages_and_ends_without_waiting() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    node.publish_n("s.a", 3).await?;
    let consumer = pull_consumer(&stream, durable("C")).await?;

    let started = Instant::now();
    let messages = fetch(&consumer, 10).await?;
    assert_eq!(payloads(&messages), ["0", "1", "2"]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a no-wait fetch must not wait for its expiry"
    );
    for m in &messages {
        ack_async(m, AckKind::Ack).await?;
    }
    let empty = fetch(&consumer, 10).await?;
    assert!(
        empty.is_empty(),
        "nothing left to fetch: {:?}",
        payloads(&empty)
    );
    Ok(())
}

#[tokio::test]
async fn batch_waits_for_messages_published_while_the_request_is_open() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    let consumer = pull_consumer(&stream, durable("C")).await?;

    let waiting = {
        let consumer = consumer.clone();
        tokio::spawn(async move { batch(&consumer, 5, Duration::from_millis(1500)).await })
    };
    eventually("the pull request to wait", || async {
        Ok(info(&consumer).await?.num_waiting == 1)
    })
    .await?;
    node.publish_n("s.a", 2).await?;
    let messages = within("the batch", waiting).await???;
    assert_eq!(payloads(&messages), ["0", "1"]);
    Ok(())
}

#[tokio::test]
async fn messages_stream_receives_messages_as_they_are_published() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    let consumer = pull_consumer(&stream, durable("C")).await?;
    let mut messages = within("messages", consumer.messages()).await??;

    node.publish_n("s.a", 120).await?;
    for i in 0..120 {
        let m = next(&mut messages).await?;
        assert_eq!(m.payload, i.to_string());
        ack_async(&m, AckKind::Ack).await?;
    }
    eventually("all acks to land", || async {
        let info = info(&consumer).await?;
        Ok(info.num_ack_pending == 0 && info.ack_floor.stream_sequence == 120)
    })
    .await
}

#[tokio::test]
async fn no_wait_pull_on_an_empty_consumer_answers_404_no_messages() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    pull_consumer(&stream, durable("C")).await?;

    let mut replies = raw_pull(&node, "S", "C", r#"{"batch":1,"no_wait":true}"#).await?;
    let reply = next_raw(&mut replies).await?;
    assert_eq!(reply.status, Some(StatusCode::NOT_FOUND));
    assert!(reply.payload.is_empty());
    Ok(())
}

#[tokio::test]
async fn pull_request_with_expiry_answers_408_when_it_expires_empty() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    pull_consumer(&stream, durable("C")).await?;

    let started = Instant::now();
    let mut replies = raw_pull(&node, "S", "C", r#"{"batch":1,"expires":300000000}"#).await?;
    let reply = next_raw(&mut replies).await?;
    assert_eq!(reply.status, Some(StatusCode::TIMEOUT));
    assert!(started.elapsed() >= Duration::from_millis(250));
    Ok(())
}

/// A full `max_ack_pending` is not the end of the messages: a no_wait request (with an expiry,
/// as nats.c and nats.go send it) that took what the limit allowed keeps waiting for acks or its
/// expiry, as in nats-server 2.9 and 2.15; it used to end at once with 408, so a client fetching
/// in a loop spun instead of waiting.
#[tokio::test]
async fn a_no_wait_pull_blocked_by_max_ack_pending_waits_for_its_expiry() -> anyhow::Result<()> {
    let (node, _consumer) = setup(
        3,
        pull::Config {
            max_ack_pending: 2,
            ..durable("C")
        },
    )
    .await?;
    let started = Instant::now();
    let mut replies = raw_pull(
        &node,
        "S",
        "C",
        r#"{"batch":5,"expires":500000000,"no_wait":true}"#,
    )
    .await?;
    for _ in 0..2 {
        let msg = next_raw(&mut replies).await?;
        assert_eq!(msg.status, None, "a message first");
    }
    let end = next_raw(&mut replies).await?;
    assert_eq!(end.status, Some(StatusCode::TIMEOUT));
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "ended after {:?}, before its expiry",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn max_bytes_caps_how_much_one_pull_request_receives() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    for _ in 0..10 {
        node.publish("s.a", vec![b'x'; 100]).await?;
    }
    let consumer = pull_consumer(&stream, durable("C")).await?;

    let mut replies = raw_pull(&node, "S", "C", r#"{"batch":10,"max_bytes":350}"#).await?;
    let mut data = 0;
    loop {
        let reply = next_raw(&mut replies).await?;
        match reply.status {
            None => data += 1,
            Some(status) => {
                assert_eq!(
                    status,
                    StatusCode::from_u16(409)?,
                    "{:?}",
                    reply.description
                );
                break;
            }
        }
    }
    assert!(
        (1..=3).contains(&data),
        "350 bytes hold at most three 100-byte messages, got {data}"
    );
    let rest = fetch(&consumer, 10).await?;
    assert_eq!(data + rest.len(), 10, "nothing lost, nothing duplicated");
    Ok(())
}

#[tokio::test]
async fn waiting_pull_request_gets_idle_heartbeats() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    pull_consumer(&stream, durable("C")).await?;

    let mut replies = raw_pull(
        &node,
        "S",
        "C",
        r#"{"batch":1,"expires":3000000000,"idle_heartbeat":200000000}"#,
    )
    .await?;
    for _ in 0..2 {
        let reply = next_raw(&mut replies).await?;
        assert_eq!(reply.status, Some(StatusCode::IDLE_HEARTBEAT));
    }
    // The request still delivers after its heartbeats.
    node.publish("s.a", "late").await?;
    loop {
        let reply = next_raw(&mut replies).await?;
        if reply.status.is_none() {
            assert_eq!(reply.payload, "late");
            break;
        }
        assert_eq!(reply.status, Some(StatusCode::IDLE_HEARTBEAT));
    }
    Ok(())
}

#[tokio::test]
async fn explicit_acks_stop_redelivery_and_unacked_messages_come_back() -> anyhow::Result<()> {
    let (_node, consumer) = setup(
        2,
        pull::Config {
            // Room for the ack below to be answered (once durable) on a loaded machine.
            ack_wait: Duration::from_millis(1000),
            ..durable("C")
        },
    )
    .await?;

    let first = fetch(&consumer, 2).await?;
    assert_eq!(payloads(&first), ["0", "1"]);
    ack_sync(&first[0], AckKind::Ack).await?;

    let again = batch(&consumer, 1, Duration::from_millis(2500)).await?;
    assert_eq!(
        payloads(&again),
        ["1"],
        "only the unacked message comes back"
    );
    assert_eq!(delivered(&again[0])?, 2);
    Ok(())
}

#[tokio::test]
async fn ack_all_acknowledges_every_message_up_to_the_acked_one() -> anyhow::Result<()> {
    let (_node, consumer) = setup(
        4,
        pull::Config {
            ack_policy: AckPolicy::All,
            ..durable("C")
        },
    )
    .await?;

    let messages = fetch(&consumer, 3).await?;
    assert_eq!(messages.len(), 3);
    assert_eq!(info(&consumer).await?.num_ack_pending, 3);
    ack_sync(&messages[2], AckKind::Ack).await?;
    let info = info(&consumer).await?;
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.ack_floor.stream_sequence, 3);
    assert_eq!(info.ack_floor.consumer_sequence, 3);
    assert_eq!(info.num_pending, 1);
    Ok(())
}

#[tokio::test]
async fn ack_none_needs_no_acks_and_moves_the_ack_floor_on_delivery() -> anyhow::Result<()> {
    let (_node, consumer) = setup(
        3,
        pull::Config {
            ack_policy: AckPolicy::None,
            ..durable("C")
        },
    )
    .await?;

    assert_eq!(fetch(&consumer, 10).await?.len(), 3);
    let info = info(&consumer).await?;
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.ack_floor.stream_sequence, 3);
    assert_eq!(info.delivered.stream_sequence, 3);
    assert!(fetch(&consumer, 10).await?.is_empty(), "never redelivered");
    Ok(())
}

#[tokio::test]
async fn nak_redelivers_at_once_and_nak_with_delay_redelivers_after_the_delay() -> anyhow::Result<()>
{
    let (_node, consumer) = setup(
        1,
        pull::Config {
            ack_wait: Duration::from_secs(30),
            ..durable("C")
        },
    )
    .await?;

    let first = fetch(&consumer, 1).await?;
    ack_async(&first[0], AckKind::Nak(None)).await?;
    let second = batch(&consumer, 1, Duration::from_secs(2)).await?;
    assert_eq!(payloads(&second), ["0"]);
    assert_eq!(delivered(&second[0])?, 2);

    ack_async(&second[0], AckKind::Nak(Some(Duration::from_millis(800)))).await?;
    let naked = Instant::now();
    let early = batch(&consumer, 1, Duration::from_millis(300)).await?;
    assert!(early.is_empty(), "redelivered before the nak delay");
    let third = batch(&consumer, 1, Duration::from_secs(3)).await?;
    assert_eq!(payloads(&third), ["0"]);
    assert_eq!(delivered(&third[0])?, 3);
    assert!(naked.elapsed() >= Duration::from_millis(700));
    assert_eq!(info(&consumer).await?.num_redelivered, 1);
    Ok(())
}

#[tokio::test]
async fn term_stops_redelivery_of_a_message() -> anyhow::Result<()> {
    let (_node, consumer) = setup(
        1,
        pull::Config {
            ack_wait: Duration::from_millis(300),
            ..durable("C")
        },
    )
    .await?;

    let first = fetch(&consumer, 1).await?;
    ack_sync(&first[0], AckKind::Term).await?;
    let info_after = info(&consumer).await?;
    assert_eq!(info_after.num_ack_pending, 0);
    assert_eq!(info_after.ack_floor.stream_sequence, 1);
    let later = batch(&consumer, 1, Duration::from_millis(900)).await?;
    assert!(later.is_empty(), "a terminated message is not redelivered");
    Ok(())
}

#[tokio::test]
async fn in_progress_acks_extend_the_ack_wait() -> anyhow::Result<()> {
    // Each round (a progress ack answered once durable, then a 250 ms pull) must fit in the ack
    // wait with room for a loaded machine, where an fsync can take a few hundred ms.
    let (_node, consumer) = setup(
        1,
        pull::Config {
            ack_wait: Duration::from_millis(1000),
            ..durable("C")
        },
    )
    .await?;

    let first = fetch(&consumer, 1).await?;
    let working = Instant::now();
    while working.elapsed() < Duration::from_millis(2200) {
        ack_sync(&first[0], AckKind::Progress).await?;
        let during = batch(&consumer, 1, Duration::from_millis(250)).await?;
        assert!(during.is_empty(), "redelivered while work was in progress");
    }
    let after = batch(&consumer, 1, Duration::from_secs(3)).await?;
    assert_eq!(payloads(&after), ["0"], "redelivered once progress stops");
    assert_eq!(delivered(&after[0])?, 2);
    Ok(())
}

#[tokio::test]
async fn ack_wait_expiry_redelivers_and_counts_the_redelivery() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    node.publish("s.a", "0").await?;
    let consumer = pull_consumer(
        &stream,
        pull::Config {
            ack_wait: Duration::from_millis(300),
            ..durable("C")
        },
    )
    .await?;

    let first = fetch(&consumer, 1).await?;
    assert_eq!(payloads(&first), ["0"]);
    let again = batch(&consumer, 1, Duration::from_secs(2)).await?;
    assert_eq!(payloads(&again), ["0"]);
    let meta = again[0].info().map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(meta.delivered, 2);
    assert_eq!(meta.stream_sequence, 1);
    assert_eq!(meta.consumer_sequence, 2);
    let info = info(&consumer).await?;
    assert_eq!(info.num_redelivered, 1);
    assert_eq!(info.num_ack_pending, 1);
    assert_eq!(info.delivered.consumer_sequence, 2);
    assert_eq!(info.delivered.stream_sequence, 1);
    Ok(())
}

#[tokio::test]
async fn max_deliver_stops_redelivery_and_publishes_an_advisory() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    node.publish("s.a", "m").await?;
    let mut advisories = node
        .client
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.C")
        .await?;
    node.client.flush().await?;
    let consumer = pull_consumer(
        &stream,
        pull::Config {
            ack_wait: Duration::from_millis(200),
            max_deliver: 2,
            ..durable("C")
        },
    )
    .await?;

    assert_eq!(delivered(&fetch(&consumer, 1).await?[0])?, 1);
    let second = batch(&consumer, 1, Duration::from_secs(2)).await?;
    assert_eq!(delivered(&second[0])?, 2);

    // nats-server notices the exhausted message when a pull request asks for more.
    let third = {
        let consumer = consumer.clone();
        tokio::spawn(async move { batch(&consumer, 1, Duration::from_millis(800)).await })
    };
    let advisory = within("the max deliveries advisory", advisories.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("advisory subscription closed"))?;
    let json: serde_json::Value = serde_json::from_slice(&advisory.payload)?;
    assert_eq!(json["type"], "io.nats.jetstream.advisory.v1.max_deliver");
    assert_eq!(json["stream"], "S");
    assert_eq!(json["consumer"], "C");
    assert_eq!(json["stream_seq"], 1);
    assert_eq!(json["deliveries"], 2);

    let third = within("the third pull", third).await???;
    assert!(third.is_empty(), "no delivery past max_deliver");
    Ok(())
}

#[tokio::test]
async fn max_ack_pending_holds_back_deliveries_until_acks_arrive() -> anyhow::Result<()> {
    let (node, consumer) = setup(
        5,
        pull::Config {
            max_ack_pending: 2,
            ..durable("C")
        },
    )
    .await?;

    let mut replies = raw_pull(&node, "S", "C", r#"{"batch":5,"expires":500000000}"#).await?;
    let mut got = Vec::new();
    loop {
        let reply = next_raw(&mut replies).await?;
        if reply.status.is_some() {
            break;
        }
        got.push(reply);
    }
    assert_eq!(got.len(), 2, "two messages may be unacknowledged at once");
    assert_eq!(info(&consumer).await?.num_ack_pending, 2);

    let ack = got[0]
        .reply
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no ack subject"))?;
    within("ack sync", node.client.request(ack, "+ACK".into())).await??;
    let more = batch(&consumer, 5, Duration::from_millis(500)).await?;
    assert_eq!(payloads(&more), ["2"], "one ack frees one slot");
    Ok(())
}

#[tokio::test]
async fn backoff_spaces_out_redeliveries() -> anyhow::Result<()> {
    let (_node, consumer) = setup(
        1,
        pull::Config {
            max_deliver: 3,
            backoff: vec![Duration::from_millis(200), Duration::from_millis(900)],
            ..durable("C")
        },
    )
    .await?;

    let first = fetch(&consumer, 1).await?;
    let t0 = Instant::now();
    assert_eq!(first.len(), 1);
    let second = batch(&consumer, 1, Duration::from_secs(2)).await?;
    let t1 = Instant::now();
    assert_eq!(delivered(&second[0])?, 2);
    let third = batch(&consumer, 1, Duration::from_secs(3)).await?;
    let t2 = Instant::now();
    assert_eq!(delivered(&third[0])?, 3);
    assert!(
        t1 - t0 >= Duration::from_millis(150) && t1 - t0 < Duration::from_millis(800),
        "first backoff 200ms, took {:?}",
        t1 - t0
    );
    assert!(
        t2 - t1 >= Duration::from_millis(800),
        "second backoff 900ms, took {:?}",
        t2 - t1
    );
    Ok(())
}

#[tokio::test]
async fn filter_subject_delivers_only_matching_messages() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    for (subject, payload) in [("s.a", "a1"), ("s.b", "b1"), ("s.a", "a2"), ("s.b", "b2")] {
        node.publish(subject, payload).await?;
    }
    let consumer = pull_consumer(
        &stream,
        pull::Config {
            filter_subject: "s.b".to_string(),
            ..durable("C")
        },
    )
    .await?;

    assert_eq!(info(&consumer).await?.num_pending, 2);
    let messages = fetch(&consumer, 10).await?;
    assert_eq!(payloads(&messages), ["b1", "b2"]);
    assert_eq!(stream_seqs(&messages)?, [2, 4]);
    assert!(messages.iter().all(|m| m.subject.as_str() == "s.b"));
    Ok(())
}

/// Stream `S` holding `s.a`=a1, `s.b`=b1, `s.a`=a2, `s.b`=b2 (sequences 1 to 4).
async fn four_messages(node: &Node) -> anyhow::Result<jetstream::stream::Stream> {
    let stream = node.stream("S", &["s.>"]).await?;
    for (subject, payload) in [("s.a", "a1"), ("s.b", "b1"), ("s.a", "a2"), ("s.b", "b2")] {
        node.publish(subject, payload).await?;
    }
    Ok(stream)
}

async fn fetch_with_policy(
    stream: &jetstream::stream::Stream,
    name: &str,
    policy: DeliverPolicy,
) -> anyhow::Result<Vec<String>> {
    let consumer = pull_consumer(
        stream,
        pull::Config {
            deliver_policy: policy,
            ..durable(name)
        },
    )
    .await?;
    Ok(payloads(&fetch(&consumer, 10).await?))
}

#[tokio::test]
async fn deliver_policies_all_and_last_start_at_the_first_and_last_message() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = four_messages(&node).await?;

    assert_eq!(
        fetch_with_policy(&stream, "ALL", DeliverPolicy::All).await?,
        ["a1", "b1", "a2", "b2"]
    );
    assert_eq!(
        fetch_with_policy(&stream, "LAST", DeliverPolicy::Last).await?,
        ["b2"]
    );
    Ok(())
}

#[tokio::test]
async fn deliver_policy_last_per_subject_starts_at_each_subjects_last_message() -> anyhow::Result<()>
{
    let node = Node::start().await?;
    let stream = four_messages(&node).await?;
    node.publish("s.c", "c1").await?;
    let consumer = pull_consumer(
        &stream,
        pull::Config {
            deliver_policy: DeliverPolicy::LastPerSubject,
            filter_subject: "s.>".to_string(),
            ..durable("LPS")
        },
    )
    .await?;
    assert_eq!(info(&consumer).await?.num_pending, 3);
    assert_eq!(payloads(&fetch(&consumer, 10).await?), ["a2", "b2", "c1"]);
    Ok(())
}

#[tokio::test]
async fn deliver_policy_new_skips_what_the_stream_already_holds() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = four_messages(&node).await?;
    let consumer = pull_consumer(
        &stream,
        pull::Config {
            deliver_policy: DeliverPolicy::New,
            ..durable("NEW")
        },
    )
    .await?;
    assert_eq!(info(&consumer).await?.num_pending, 0);
    assert!(fetch(&consumer, 10).await?.is_empty());
    node.publish("s.c", "c1").await?;
    let messages = fetch(&consumer, 10).await?;
    assert_eq!(payloads(&messages), ["c1"]);
    assert_eq!(stream_seqs(&messages)?, [5]);
    Ok(())
}

#[tokio::test]
async fn deliver_policies_by_start_sequence_and_start_time_start_mid_stream() -> anyhow::Result<()>
{
    let node = Node::start().await?;
    let stream = four_messages(&node).await?;

    assert_eq!(
        fetch_with_policy(
            &stream,
            "SEQ",
            DeliverPolicy::ByStartSequence { start_sequence: 3 }
        )
        .await?,
        ["a2", "b2"]
    );

    let all = pull_consumer(&stream, durable("ALL")).await?;
    let messages = fetch(&all, 10).await?;
    let third = messages[2].info().map_err(|e| anyhow::anyhow!("{e}"))?;
    let start_time = third.published;
    assert_eq!(
        fetch_with_policy(&stream, "TIME", DeliverPolicy::ByStartTime { start_time }).await?,
        ["a2", "b2"]
    );
    Ok(())
}

#[tokio::test]
async fn consumer_info_counts_delivered_pending_acked_and_redelivered() -> anyhow::Result<()> {
    let (_node, consumer) = setup(
        5,
        pull::Config {
            ack_wait: Duration::from_secs(30),
            ..durable("C")
        },
    )
    .await?;

    let fresh = info(&consumer).await?;
    assert_eq!(fresh.stream_name, "S");
    assert_eq!(fresh.name, "C");
    assert_eq!(fresh.num_pending, 5);
    assert_eq!(fresh.num_ack_pending, 0);
    assert_eq!(fresh.delivered.stream_sequence, 0);
    assert_eq!(fresh.config.durable_name.as_deref(), Some("C"));
    assert_eq!(fresh.config.ack_wait, Duration::from_secs(30));

    let messages = fetch(&consumer, 3).await?;
    let after_fetch = info(&consumer).await?;
    assert_eq!(after_fetch.num_pending, 2);
    assert_eq!(after_fetch.num_ack_pending, 3);
    assert_eq!(after_fetch.delivered.stream_sequence, 3);
    assert_eq!(after_fetch.delivered.consumer_sequence, 3);
    assert_eq!(after_fetch.ack_floor.stream_sequence, 0);

    ack_sync(&messages[0], AckKind::Ack).await?;
    ack_sync(&messages[1], AckKind::Nak(None)).await?;
    let after_acks = info(&consumer).await?;
    assert_eq!(after_acks.ack_floor.stream_sequence, 1);
    assert_eq!(after_acks.ack_floor.consumer_sequence, 1);
    assert_eq!(after_acks.num_ack_pending, 2);

    let redelivered = fetch(&consumer, 1).await?;
    assert_eq!(payloads(&redelivered), ["1"]);
    let after_redelivery = info(&consumer).await?;
    assert_eq!(after_redelivery.num_redelivered, 1);
    assert_eq!(after_redelivery.delivered.consumer_sequence, 4);
    assert_eq!(after_redelivery.delivered.stream_sequence, 3);
    Ok(())
}

#[tokio::test]
async fn consumers_are_named_listed_and_deleted() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    pull_consumer(&stream, durable("ONE")).await?;
    pull_consumer(&stream, durable("TWO")).await?;

    let names: BTreeSet<String> = within("names", stream.consumer_names().try_collect()).await??;
    assert_eq!(
        names,
        BTreeSet::from(["ONE".to_string(), "TWO".to_string()])
    );
    let infos: Vec<consumer::Info> = within("list", stream.consumers().try_collect()).await??;
    let listed: BTreeSet<String> = infos.into_iter().map(|i| i.name).collect();
    assert_eq!(listed, names);

    assert!(
        within("delete", stream.delete_consumer("ONE"))
            .await??
            .success
    );
    let names: Vec<String> = within("names", stream.consumer_names().try_collect()).await??;
    assert_eq!(names, ["TWO"]);
    let gone = within("info of a deleted consumer", stream.consumer_info("ONE")).await?;
    assert!(gone.is_err(), "a deleted consumer has no info");
    assert!(
        within("delete again", stream.delete_consumer("ONE"))
            .await?
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn deleting_a_consumer_ends_its_waiting_pull_requests() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    pull_consumer(&stream, durable("C")).await?;
    let mut replies = raw_pull(&node, "S", "C", r#"{"batch":1,"expires":4000000000}"#).await?;
    within("delete", stream.delete_consumer("C")).await??;
    let reply = next_raw(&mut replies).await?;
    assert_eq!(reply.status, Some(StatusCode::from_u16(409)?));
    Ok(())
}

#[tokio::test]
async fn double_ack_is_answered_once_the_ack_is_recorded() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    node.publish_n("s.a", 2).await?;
    let consumer = pull_consumer(&stream, durable("C")).await?;

    let messages = fetch(&consumer, 2).await?;
    for m in &messages {
        within("double ack", m.double_ack())
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let info = info(&consumer).await?;
    assert_eq!(
        info.num_ack_pending, 0,
        "the reply came after the acks applied"
    );
    assert_eq!(info.ack_floor.stream_sequence, 2);
    Ok(())
}

#[tokio::test]
async fn message_info_carries_sequences_delivery_count_pending_and_time() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    let before = time_now_ns();
    node.publish_n("s.a", 3).await?;
    let after = time_now_ns();
    let consumer = pull_consumer(&stream, durable("C")).await?;

    let messages = fetch(&consumer, 3).await?;
    for (i, m) in messages.iter().enumerate() {
        let meta = m.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(meta.stream, "S");
        assert_eq!(meta.consumer, "C");
        assert_eq!(meta.stream_sequence, i as u64 + 1);
        assert_eq!(meta.consumer_sequence, i as u64 + 1);
        assert_eq!(meta.delivered, 1);
        assert_eq!(meta.pending, 2 - i as u64);
        let published = meta.published.unix_timestamp_nanos();
        assert!(
            (before..=after).contains(&published),
            "published {published} outside [{before}, {after}]"
        );
    }
    Ok(())
}

fn time_now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Push consumers
// ---------------------------------------------------------------------------------------------

fn push_durable(name: &str, deliver_subject: &str) -> push::Config {
    push::Config {
        durable_name: Some(name.to_string()),
        deliver_subject: deliver_subject.to_string(),
        ..Default::default()
    }
}

#[tokio::test]
async fn push_consumer_delivers_to_its_deliver_subject() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    node.publish_n("s.a", 3).await?;
    let deliver = node.client.new_inbox();
    let consumer: jetstream::consumer::PushConsumer = within(
        "consumer create",
        stream.create_consumer(push_durable("P", &deliver)),
    )
    .await??;
    let mut messages = within("messages", consumer.messages()).await??;

    for i in 0..6 {
        if i == 3 {
            node.publish_n("s.b", 3).await?;
        }
        let m = next(&mut messages).await?;
        assert_eq!(m.payload, (i % 3).to_string());
        ack_async(&m, AckKind::Ack).await?;
    }
    let info = within("info", stream.consumer_info("P")).await??;
    assert!(info.push_bound, "someone listens on the deliver subject");
    Ok(())
}

/// Replay policy `original` delivers stored messages with the gaps they were stored with (as
/// nats-server paces them); `instant` does not wait. Only lower bounds are checked: a slow
/// machine makes the gaps longer, never shorter.
#[tokio::test]
async fn replay_original_keeps_the_gaps_between_stored_messages() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    let gap = Duration::from_millis(400);
    for i in 0..3 {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        node.publish("s.a", i.to_string()).await?;
    }
    let deliver = node.client.new_inbox();
    let consumer: jetstream::consumer::PushConsumer = within(
        "consumer create",
        stream.create_consumer(push::Config {
            replay_policy: consumer::ReplayPolicy::Original,
            ..push_durable("REPLAY", &deliver)
        }),
    )
    .await??;
    let mut messages = within("messages", consumer.messages()).await??;
    let mut arrivals = Vec::new();
    for i in 0..3 {
        let m = next(&mut messages).await?;
        arrivals.push(Instant::now());
        assert_eq!(m.payload, i.to_string());
        ack_async(&m, AckKind::Ack).await?;
    }
    for pair in arrivals.windows(2) {
        let waited = pair[1] - pair[0];
        assert!(
            waited >= gap - Duration::from_millis(50),
            "delivered {waited:?} after the previous one, stored {gap:?} apart"
        );
    }
    let info = within("info", stream.consumer_info("REPLAY")).await??;
    assert_eq!(info.config.replay_policy, consumer::ReplayPolicy::Original);
    Ok(())
}

#[tokio::test]
async fn deliver_group_spreads_messages_over_the_queue_members() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    let deliver = node.client.new_inbox();
    let mut first = node
        .client
        .queue_subscribe(deliver.clone(), "workers".to_string())
        .await?;
    let mut second = node
        .client
        .queue_subscribe(deliver.clone(), "workers".to_string())
        .await?;
    node.client.flush().await?;
    let _consumer: jetstream::consumer::PushConsumer = within(
        "consumer create",
        stream.create_consumer(push::Config {
            deliver_group: Some("workers".to_string()),
            ack_policy: AckPolicy::None,
            ..push_durable("Q", &deliver)
        }),
    )
    .await??;
    node.publish_n("s.a", 40).await?;

    let mut seen = BTreeSet::new();
    let (mut a, mut b) = (0, 0);
    while seen.len() < 40 {
        let m = within("a queue member's message", async {
            tokio::select! {
                m = first.next() => m.map(|m| (0, m)),
                m = second.next() => m.map(|m| (1, m)),
            }
        })
        .await?
        .ok_or_else(|| anyhow::anyhow!("subscription closed"))?;
        if m.0 == 0 {
            a += 1;
        } else {
            b += 1;
        }
        assert!(
            seen.insert(m.1.payload.clone()),
            "{:?} delivered twice",
            m.1.payload
        );
    }
    assert!(a > 0 && b > 0, "both members got work: {a} and {b}");
    Ok(())
}

#[tokio::test]
async fn push_consumer_with_flow_control_sends_requests_and_keeps_delivering() -> anyhow::Result<()>
{
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    let deliver = node.client.new_inbox();
    let mut raw = node.client.subscribe(deliver.clone()).await?;
    let consumer: jetstream::consumer::PushConsumer = within(
        "consumer create",
        stream.create_consumer(push::Config {
            flow_control: true,
            idle_heartbeat: Duration::from_secs(1),
            ack_policy: AckPolicy::None,
            ..push_durable("FC", &deliver)
        }),
    )
    .await??;
    let mut messages = within("messages", consumer.messages()).await??;
    let chunk = vec![b'x'; 128 * 1024];
    for _ in 0..20 {
        node.publish("s.a", chunk.clone()).await?;
    }

    for _ in 0..20 {
        let m = next(&mut messages).await?;
        assert_eq!(m.payload.len(), chunk.len());
    }
    let mut flow_control_requests = 0;
    let mut data = 0;
    while data < 20 {
        let m = next_raw(&mut raw).await?;
        match m.status {
            None => data += 1,
            Some(StatusCode::IDLE_HEARTBEAT) => {
                if m.description.as_deref() == Some("FlowControl Request") {
                    flow_control_requests += 1;
                    assert!(
                        m.reply.is_some(),
                        "a flow-control request has a reply subject"
                    );
                }
            }
            Some(other) => anyhow::bail!("unexpected status {other} on the deliver subject"),
        }
    }
    assert!(
        flow_control_requests >= 1,
        "2.5 MiB delivered without a flow-control request"
    );
    Ok(())
}

#[tokio::test]
async fn idle_push_consumer_sends_heartbeats_with_its_last_sequences() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    node.publish_n("s.a", 2).await?;
    let deliver = node.client.new_inbox();
    let mut raw = node.client.subscribe(deliver.clone()).await?;
    node.client.flush().await?;
    let _consumer: jetstream::consumer::PushConsumer = within(
        "consumer create",
        stream.create_consumer(push::Config {
            idle_heartbeat: Duration::from_millis(200),
            ack_policy: AckPolicy::None,
            ..push_durable("HB", &deliver)
        }),
    )
    .await??;

    for _ in 0..2 {
        assert!(next_raw(&mut raw).await?.status.is_none());
    }
    let heartbeat = next_raw(&mut raw).await?;
    assert_eq!(heartbeat.status, Some(StatusCode::IDLE_HEARTBEAT));
    let headers = heartbeat
        .headers
        .ok_or_else(|| anyhow::anyhow!("heartbeat without headers"))?;
    assert_eq!(
        headers.get("Nats-Last-Consumer").map(|v| v.as_str()),
        Some("2")
    );
    assert_eq!(
        headers.get("Nats-Last-Stream").map(|v| v.as_str()),
        Some("2")
    );
    Ok(())
}

#[tokio::test]
async fn headers_only_delivers_the_headers_and_the_payload_size() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    let mut headers = HeaderMap::new();
    headers.insert("X-Kind", "big");
    within("publish", async {
        node.js
            .publish_with_headers("s.a", headers, Bytes::from(vec![b'x'; 1000]))
            .await?
            .await
    })
    .await??;
    let consumer = pull_consumer(
        &stream,
        pull::Config {
            headers_only: true,
            ..durable("H")
        },
    )
    .await?;

    let messages = fetch(&consumer, 1).await?;
    let m = &messages[0];
    assert!(m.payload.is_empty());
    let headers = m
        .headers
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no headers"))?;
    assert_eq!(
        headers.get("Nats-Msg-Size").map(|v| v.as_str()),
        Some("1000")
    );
    assert_eq!(headers.get("X-Kind").map(|v| v.as_str()), Some("big"));
    Ok(())
}

#[tokio::test]
async fn ordered_push_consumer_reads_the_whole_stream_in_order() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    node.publish_n("s.a", 200).await?;
    let consumer: jetstream::consumer::Consumer<push::OrderedConfig> = within(
        "consumer create",
        stream.create_consumer(push::OrderedConfig {
            deliver_subject: node.client.new_inbox(),
            ..Default::default()
        }),
    )
    .await??;
    let mut messages = within("messages", consumer.messages()).await??;
    for i in 0..200 {
        let m = next(&mut messages).await?;
        assert_eq!(m.payload, i.to_string());
    }
    Ok(())
}

#[tokio::test]
async fn ordered_pull_consumer_reads_the_whole_stream_in_order() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    node.publish_n("s.a", 200).await?;
    let consumer: jetstream::consumer::Consumer<pull::OrderedConfig> = within(
        "consumer create",
        stream.create_consumer(pull::OrderedConfig::default()),
    )
    .await??;
    let mut messages = within("messages", consumer.messages()).await??;
    for i in 0..200 {
        let m = next(&mut messages).await?;
        assert_eq!(m.payload, i.to_string());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------------------------

async fn stream_messages(stream: &jetstream::stream::Stream) -> anyhow::Result<u64> {
    Ok(within("stream info", stream.get_info())
        .await??
        .state
        .messages)
}

#[tokio::test]
async fn work_queue_stream_removes_messages_once_acknowledged() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node
        .stream_with(Config {
            name: "WQ".to_string(),
            subjects: vec!["wq.>".to_string()],
            retention: RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await?;
    node.publish_n("wq.a", 3).await?;
    let consumer = pull_consumer(&stream, durable("W")).await?;

    let messages = fetch(&consumer, 2).await?;
    assert_eq!(stream_messages(&stream).await?, 3, "delivered is not acked");
    for m in &messages {
        ack_sync(m, AckKind::Ack).await?;
    }
    eventually("acked messages to leave the stream", || async {
        Ok(stream_messages(&stream).await? == 1)
    })
    .await?;
    let info = within("stream info", stream.get_info()).await??;
    assert_eq!(info.state.first_sequence, 3);
    Ok(())
}

#[tokio::test]
async fn work_queue_stream_allows_only_non_overlapping_consumers() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node
        .stream_with(Config {
            name: "WQ".to_string(),
            subjects: vec!["wq.>".to_string()],
            retention: RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await?;
    let a = pull::Config {
        filter_subject: "wq.a".to_string(),
        ..durable("A")
    };
    pull_consumer(&stream, a.clone()).await?;
    pull_consumer(
        &stream,
        pull::Config {
            filter_subject: "wq.b".to_string(),
            ..durable("B")
        },
    )
    .await?;

    let overlapping = within(
        "overlapping consumer",
        stream.create_consumer(pull::Config {
            filter_subject: "wq.>".to_string(),
            ..durable("ALL")
        }),
    )
    .await?;
    let err = overlapping
        .err()
        .ok_or_else(|| anyhow::anyhow!("an overlapping work-queue consumer was accepted"))?;
    assert!(err.to_string().contains("10100"), "{err}");

    let unfiltered = within("unfiltered consumer", stream.create_consumer(durable("U"))).await?;
    let err = unfiltered
        .err()
        .ok_or_else(|| anyhow::anyhow!("an unfiltered work-queue consumer was accepted"))?;
    assert!(err.to_string().contains("10099"), "{err}");

    // Re-creating an existing consumer with the same config is not an overlap with itself.
    pull_consumer(&stream, a).await?;
    Ok(())
}

#[tokio::test]
async fn interest_stream_keeps_a_message_until_every_consumer_acked_it() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node
        .stream_with(Config {
            name: "I".to_string(),
            subjects: vec!["i.>".to_string()],
            retention: RetentionPolicy::Interest,
            ..Default::default()
        })
        .await?;
    let first = pull_consumer(&stream, durable("ONE")).await?;
    let second = pull_consumer(&stream, durable("TWO")).await?;
    node.publish_n("i.a", 2).await?;

    for m in fetch(&first, 2).await? {
        ack_sync(&m, AckKind::Ack).await?;
    }
    assert_eq!(
        stream_messages(&stream).await?,
        2,
        "the second consumer still needs both"
    );
    let from_second = fetch(&second, 2).await?;
    ack_sync(&from_second[0], AckKind::Ack).await?;
    eventually("the message both acked to leave", || async {
        Ok(stream_messages(&stream).await? == 1)
    })
    .await?;
    ack_sync(&from_second[1], AckKind::Ack).await?;
    eventually("the stream to empty", || async {
        Ok(stream_messages(&stream).await? == 0)
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Durability
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn durable_consumer_progress_and_pending_acks_survive_a_restart() -> anyhow::Result<()> {
    let (node, consumer) = setup(
        5,
        pull::Config {
            ack_wait: Duration::from_millis(1500),
            ..durable("D")
        },
    )
    .await?;
    let messages = fetch(&consumer, 5).await?;
    assert_eq!(messages.len(), 5);
    for m in &messages[..2] {
        ack_sync(m, AckKind::Ack).await?;
    }

    let node = node.restart().await?;
    let stream = within("stream", node.js.get_stream("S")).await??;
    let consumer: jetstream::consumer::PullConsumer = within("consumer", stream.get_consumer("D"))
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let info = info(&consumer).await?;
    assert_eq!(info.delivered.stream_sequence, 5);
    assert_eq!(info.ack_floor.stream_sequence, 2);
    assert_eq!(info.num_ack_pending, 3);
    assert_eq!(info.num_pending, 0);

    let redelivered = batch(&consumer, 3, Duration::from_secs(3)).await?;
    assert_eq!(
        payloads(&redelivered),
        ["2", "3", "4"],
        "acknowledged messages are not redelivered after a restart"
    );
    assert!(redelivered.iter().all(|m| delivered(m).ok() == Some(2)));
    for m in &redelivered {
        ack_sync(m, AckKind::Ack).await?;
    }
    node.publish("s.a", "5").await?;
    assert_eq!(payloads(&fetch(&consumer, 5).await?), ["5"]);
    Ok(())
}

/// A consumer with `sample_freq` publishes nats-server's `consumer_ack` metric for its acks.
#[tokio::test]
async fn a_sampling_consumer_publishes_ack_metrics() -> anyhow::Result<()> {
    let (node, consumer) = setup(
        2,
        pull::Config {
            durable_name: Some("SAMPLED".into()),
            sample_frequency: 100,
            ..Default::default()
        },
    )
    .await?;
    let mut metrics = node
        .client
        .subscribe("$JS.EVENT.METRIC.CONSUMER.ACK.S.SAMPLED")
        .await?;
    node.client.flush().await?;
    for message in fetch(&consumer, 2).await? {
        ack_sync(&message, AckKind::Ack).await?;
    }
    for seq in 1..=2u64 {
        let metric = within("an ack metric", metrics.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
        let body: serde_json::Value = serde_json::from_slice(&metric.payload)?;
        assert_eq!(body["type"], "io.nats.jetstream.metric.v1.consumer_ack");
        assert_eq!(
            (body["stream"].as_str(), body["consumer"].as_str()),
            (Some("S"), Some("SAMPLED"))
        );
        assert_eq!(body["stream_seq"], seq);
        assert_eq!(body["deliveries"], 1);
        assert!(body["ack_time"].as_i64().is_some_and(|t| t > 0), "{body}");
    }
    Ok(())
}

/// `rate_limit_bps` paces a push consumer: 3 messages of 600 KiB at 8 Mbit/s (1 MB/s, with a
/// 1 MiB burst) cannot all arrive in less than about 0.75 s. Only this lower bound is checked.
#[tokio::test]
async fn a_rate_limited_push_consumer_is_paced() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("S", &["s.>"]).await?;
    for _ in 0..3 {
        node.publish("s.big", Bytes::from(vec![7u8; 600 * 1024]))
            .await?;
    }
    let deliver = node.client.new_inbox();
    let started = Instant::now();
    let consumer: jetstream::consumer::PushConsumer = within(
        "consumer create",
        stream.create_consumer(push::Config {
            rate_limit: 8_000_000,
            ack_policy: AckPolicy::None,
            ..push_durable("PACED", &deliver)
        }),
    )
    .await??;
    let mut messages = within("messages", consumer.messages()).await??;
    for _ in 0..3 {
        let m = next(&mut messages).await?;
        assert_eq!(m.payload.len(), 600 * 1024);
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(600),
        "3 x 600 KiB at 1 MB/s took {took:?}"
    );
    Ok(())
}
