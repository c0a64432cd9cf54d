//! Consumers of replicated streams on real 3-node clusters on loopback, through async-nats: a
//! consumer's state (delivered, ack floor, pending acks) goes through the stream's Raft log, so
//! when the stream's leader changes (a step-down or the leader's node shutting down) the consumer
//! goes on at the new leader without losing or redelivering acknowledged messages.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, AckPolicy, pull};
use async_nats::jetstream::{Context, stream};
use futures::StreamExt;

use crate::js_cluster::{
    CLUSTER_WAIT, api, create_stream, publish_acked, shutdown, start_cluster, stream_leader,
};

/// Creates a durable pull consumer with explicit acks, retrying while the stream has no leader.
async fn create_consumer(
    js: &Context,
    stream: &str,
    name: &str,
    ack_wait: Duration,
) -> anyhow::Result<()> {
    let config = pull::Config {
        durable_name: Some(name.to_string()),
        ack_policy: AckPolicy::Explicit,
        ack_wait,
        ..Default::default()
    };
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        match js.create_consumer_on_stream(config.clone(), stream).await {
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() < deadline => {
                eprintln!("create consumer: {err}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// The consumer's info, retrying (bounded) while its stream's leader is changing.
async fn consumer_info(js: &Context, stream: &str, name: &str) -> anyhow::Result<consumer::Info> {
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let attempt = async {
            let mut consumer: consumer::PullConsumer =
                js.get_consumer_from_stream(name, stream).await?;
            anyhow::Ok(consumer.info().await?.clone())
        };
        match attempt.await {
            Ok(info) => return Ok(info),
            Err(err) if Instant::now() < deadline => {
                eprintln!("consumer info: {err}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Fetches up to `max` messages (waiting at most 2 s for them) and acks each with a reply
/// (`double_ack`: answered once the ack is committed) unless `ack` is false; returns their
/// stream sequences. Retries (bounded) while the stream's leader is changing.
async fn fetch(
    js: &Context,
    stream: &str,
    name: &str,
    max: usize,
    ack: bool,
) -> anyhow::Result<Vec<u64>> {
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let attempt = async {
            let consumer: consumer::PullConsumer =
                js.get_consumer_from_stream(name, stream).await?;
            let mut messages = consumer
                .fetch()
                .max_messages(max)
                .expires(Duration::from_secs(2))
                .messages()
                .await?;
            let mut seqs = Vec::new();
            while let Some(message) = messages.next().await {
                let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
                let seq = message
                    .info()
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .stream_sequence;
                if ack {
                    message
                        .double_ack()
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                seqs.push(seq);
            }
            anyhow::Ok(seqs)
        };
        match attempt.await {
            Ok(seqs) => return Ok(seqs),
            Err(err) if Instant::now() < deadline => {
                eprintln!("fetch: {err}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Waits until the stream's leader (as `js`'s node reports it) is known and not `old`.
async fn wait_for_new_leader(js: &Context, stream: &str, old: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        if let Ok(Some(leader)) = stream_leader(js, stream).await
            && leader != old
        {
            return Ok(leader);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("stream {stream} has no leader other than {old}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn r3(name: &str, subjects: &str) -> stream::Config {
    stream::Config {
        name: name.into(),
        subjects: vec![subjects.into()],
        num_replicas: 3,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_consumer_continues_on_the_new_leader_after_a_consumer_stepdown() -> anyhow::Result<()> {
    let nodes = start_cluster(3).await?;
    create_stream(&nodes[0].js, r3("WORK", "work.>")).await?;
    for i in 1..=20 {
        publish_acked(&nodes[0].js, "work.item", format!("item-{i}")).await?;
    }
    create_consumer(&nodes[1].js, "WORK", "C", Duration::from_secs(60)).await?;
    let acked = fetch(&nodes[2].js, "WORK", "C", 10, true).await?;
    assert_eq!(acked, (1..=10).collect::<Vec<_>>());
    let unacked = fetch(&nodes[2].js, "WORK", "C", 5, false).await?;
    assert_eq!(unacked, (11..=15).collect::<Vec<_>>());

    let before = consumer_info(&nodes[0].js, "WORK", "C").await?;
    let old = before
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .ok_or_else(|| anyhow::anyhow!("a replicated stream's consumer info names a leader"))?;
    let answer = api(&nodes[1].client, "$JS.API.CONSUMER.LEADER.STEPDOWN.WORK.C").await?;
    assert_eq!(
        answer["type"], "io.nats.jetstream.api.v1.consumer_leader_stepdown_response",
        "{answer}"
    );
    assert_eq!(answer["success"], true, "{answer}");
    let new = wait_for_new_leader(&nodes[0].js, "WORK", &old).await?;

    // The new leader knows what the old one delivered and what was acknowledged.
    let info = consumer_info(&nodes[0].js, "WORK", "C").await?;
    assert_eq!(info.ack_floor.stream_sequence, 10, "{info:?}");
    assert_eq!(info.delivered.stream_sequence, 15, "{info:?}");
    assert_eq!(info.num_ack_pending, 5, "{info:?}");
    assert_eq!(info.num_pending, 5, "{info:?}");
    assert_eq!(
        info.cluster.as_ref().and_then(|c| c.leader.clone()),
        Some(new)
    );

    // It goes on after the last delivery: nothing acknowledged comes again, and the five
    // delivered and unacknowledged ones wait for their ack wait (a minute) as before.
    let rest = fetch(&nodes[1].js, "WORK", "C", 10, true).await?;
    assert_eq!(rest, (16..=20).collect::<Vec<_>>());
    let info = consumer_info(&nodes[2].js, "WORK", "C").await?;
    assert_eq!(info.num_ack_pending, 5, "{info:?}");
    assert_eq!(info.num_pending, 0, "{info:?}");
    shutdown(nodes).await;
    Ok(())
}

#[tokio::test]
async fn a_consumer_survives_the_loss_of_its_stream_leader() -> anyhow::Result<()> {
    let mut nodes = start_cluster(3).await?;
    create_stream(&nodes[0].js, r3("JOBS", "jobs.>")).await?;
    for i in 1..=30 {
        publish_acked(&nodes[0].js, "jobs.run", format!("job-{i}")).await?;
    }
    create_consumer(&nodes[0].js, "JOBS", "worker", Duration::from_secs(1)).await?;
    let acked: BTreeSet<u64> = fetch(&nodes[0].js, "JOBS", "worker", 12, true)
        .await?
        .into_iter()
        .collect();
    assert_eq!(acked, (1..=12).collect());
    // Delivered, never acknowledged: redelivered after the ack wait, wherever the leader is.
    let unacked = fetch(&nodes[0].js, "JOBS", "worker", 3, false).await?;
    assert_eq!(unacked, vec![13, 14, 15]);

    let leader = stream_leader(&nodes[0].js, "JOBS")
        .await?
        .ok_or_else(|| anyhow::anyhow!("stream JOBS has no leader"))?;
    let index = crate::js_cluster::node_named(&nodes, &leader)?;
    let lost = nodes.remove(index);
    drop(lost.client);
    lost.server.shutdown().await;
    wait_for_new_leader(&nodes[0].js, "JOBS", &leader).await?;

    // Everything not acknowledged before is delivered, nothing acknowledged is.
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + CLUSTER_WAIT;
    while seen.len() < 18 && Instant::now() < deadline {
        seen.extend(fetch(&nodes[1].js, "JOBS", "worker", 30, true).await?);
    }
    assert_eq!(seen, (13..=30).collect(), "after the failover");
    let info = consumer_info(&nodes[1].js, "JOBS", "worker").await?;
    assert_eq!(info.ack_floor.stream_sequence, 30, "{info:?}");
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    shutdown(nodes).await;
    Ok(())
}

#[tokio::test]
async fn consumer_stepdown_of_an_unknown_consumer_is_consumer_not_found() -> anyhow::Result<()> {
    let nodes = start_cluster(3).await?;
    create_stream(&nodes[0].js, r3("KNOWN", "known.>")).await?;
    let answer = api(
        &nodes[2].client,
        "$JS.API.CONSUMER.LEADER.STEPDOWN.KNOWN.NOPE",
    )
    .await?;
    assert_eq!(answer["error"]["err_code"], 10014, "{answer}");
    let answer = api(&nodes[2].client, "$JS.API.CONSUMER.LEADER.STEPDOWN.NOPE.C").await?;
    assert_eq!(answer["error"]["err_code"], 10059, "{answer}");
    shutdown(nodes).await;
    Ok(())
}

/// An ack answered with a reply (AckSync) is a promise that the message is consumed. The chaos
/// suite (seed 101, five nodes) caught acks answered while a graceful shutdown handed the
/// stream's leadership over: the consumer's state write was refused (the leader no longer took
/// writes) but the acks were answered anyway, and the next leader delivered the messages again.
/// Here leadership moves every few hundred milliseconds while a client acknowledges everything
/// it receives; no message whose ack was answered may be delivered again.
#[tokio::test]
async fn acks_answered_while_leadership_moves_are_never_redelivered() -> anyhow::Result<()> {
    use std::collections::BTreeMap;

    const MESSAGES: u64 = 400;
    let nodes = start_cluster(3).await?;
    create_stream(&nodes[0].js, r3("MOVES", "moves.>")).await?;
    for i in 1..=MESSAGES {
        publish_acked(&nodes[0].js, "moves.item", format!("item-{i}")).await?;
    }
    create_consumer(&nodes[0].js, "MOVES", "C", Duration::from_secs(2)).await?;

    let stepdowns = {
        let client = nodes[2].client.clone();
        tokio::spawn(async move {
            for _ in 0..12 {
                let _ = api(&client, "$JS.API.STREAM.LEADER.STEPDOWN.MOVES").await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let client = nodes[1].client.clone();
    // Seq -> when its ack was first answered; and every delivery, with when it arrived.
    let mut answered: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut deliveries: Vec<(u64, Instant)> = Vec::new();
    let deadline = Instant::now() + CLUSTER_WAIT * 2;
    while (answered.len() as u64) < MESSAGES && Instant::now() < deadline {
        let found: Result<consumer::PullConsumer, _> =
            nodes[1].js.get_consumer_from_stream("C", "MOVES").await;
        let Ok(consumer) = found else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(mut batch) = consumer
            .fetch()
            .max_messages(20)
            .expires(Duration::from_millis(500))
            .messages()
            .await
        else {
            continue;
        };
        let mut received = Vec::new();
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(2), batch.next()).await
        {
            let (Some(reply), Ok(info)) = (message.reply.clone(), message.info()) else {
                continue;
            };
            deliveries.push((info.stream_sequence, Instant::now()));
            received.push((info.stream_sequence, reply));
        }
        // Acked together, so that the acks of a batch land in the same rounds.
        let acks = received.into_iter().map(|(seq, reply)| {
            let client = client.clone();
            async move {
                let answer = tokio::time::timeout(
                    Duration::from_secs(2),
                    client.request(reply, bytes::Bytes::from_static(b"+ACK")),
                )
                .await;
                let ok = matches!(&answer, Ok(Ok(a)) if a.payload.is_empty() && a.status.is_none());
                (seq, ok, Instant::now())
            }
        });
        for (seq, ok, at) in futures::future::join_all(acks).await {
            if ok {
                answered.entry(seq).or_insert(at);
            }
        }
    }
    stepdowns.await?;
    assert_eq!(
        answered.len() as u64,
        MESSAGES,
        "every message acknowledged in time"
    );
    // Whatever is still on its way (an unanswered ack's message coming back) has had its ack
    // wait to arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = fetch(&nodes[1].js, "MOVES", "C", 50, true).await?;
    let mut again: Vec<u64> = late
        .into_iter()
        .filter(|seq| answered.contains_key(seq))
        .collect();
    // A delivery already on its way when the ack was answered may arrive just after it.
    again.extend(deliveries.iter().filter_map(|(seq, at)| {
        answered
            .get(seq)
            .is_some_and(|acked| *at > *acked + Duration::from_millis(500))
            .then_some(*seq)
    }));
    assert!(
        again.is_empty(),
        "delivered again after their acks were answered: {again:?}"
    );
    shutdown(nodes).await;
    Ok(())
}
