//! JetStream streams through the official async-nats client: create and update, publish with
//! acknowledgements and the JetStream publish headers, limits and discard policies, roll-ups,
//! purge, message get/delete, direct get, memory storage, restarts on the same store directory and
//! many concurrent publishers.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::support;
use support::{Node, eventually, ok, within};

/// Publishes with headers and returns the ack or the publish error.
async fn send(
    node: &Node,
    subject: &str,
    publish: Publish,
) -> anyhow::Result<Result<jetstream::publish::PublishAck, jetstream::context::PublishError>> {
    within("publish", async {
        match node.js.send_publish(subject.to_owned(), publish).await {
            Ok(ack) => ack.await,
            Err(err) => Err(err),
        }
    })
    .await
}

/// Publishes with headers; the ack, which must come.
async fn acked(
    node: &Node,
    subject: &str,
    publish: Publish,
) -> anyhow::Result<jetstream::publish::PublishAck> {
    ok(send(node, subject, publish).await?)
}

async fn stream_state(node: &Node, name: &str) -> anyhow::Result<jetstream::stream::State> {
    within("stream info", async {
        anyhow::Ok(node.js.get_stream(name).await?.get_info().await?.state)
    })
    .await?
}

fn config(name: &str, subjects: &[&str]) -> Config {
    Config {
        name: name.to_owned(),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

fn msg(payload: &str) -> Publish {
    Publish::build().payload(Bytes::from(payload.to_owned()))
}

/// The API error a publish was refused with: its description (async-nats keeps only the text).
fn refusal(
    result: anyhow::Result<
        Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
    >,
) -> anyhow::Result<(PublishErrorKind, String)> {
    match result? {
        Ok(ack) => anyhow::bail!("publish unexpectedly acknowledged: {ack:?}"),
        Err(err) => Ok((err.kind(), err.to_string())),
    }
}

// --- account and stream lifecycle ----------------------------------------------------------

#[tokio::test]
async fn account_info_counts_streams_and_the_bytes_they_store() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let empty = node.js.query_account().await?;
    assert_eq!((empty.streams, empty.storage, empty.memory), (0, 0, 0));

    node.stream("FILES", &["files.>"]).await?;
    node.js
        .create_stream(Config {
            storage: StorageType::Memory,
            ..config("MEM", &["mem.>"])
        })
        .await?;
    node.publish("files.a", "0123456789").await?;
    node.publish("mem.a", "0123456789").await?;

    let account = node.js.query_account().await?;
    assert_eq!(account.streams, 2);
    // nats-server's accounting: file `subject + payload + 30`, memory `subject + payload + 16`.
    assert_eq!(account.storage, 7 + 10 + 30);
    assert_eq!(account.memory, 5 + 10 + 16);
    assert_eq!(account.limits.max_memory, None, "no memory limit");
    assert!(account.requests.total > empty.requests.total);
    Ok(())
}

#[tokio::test]
async fn a_created_stream_reports_nats_server_defaults() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut stream = node.stream("ORDERS", &["orders.>"]).await?;
    let info = stream.info().await?.clone();
    let c = &info.config;
    assert_eq!(c.subjects, vec!["orders.>".to_string()]);
    assert_eq!(
        (c.max_messages, c.max_bytes, c.max_messages_per_subject),
        (-1, -1, -1)
    );
    assert_eq!((c.max_consumers, c.max_message_size), (-1, -1));
    assert_eq!(c.max_age, Duration::ZERO);
    assert_eq!(c.duplicate_window, Duration::from_secs(120));
    assert_eq!(c.num_replicas, 1);
    assert_eq!(c.storage, StorageType::File);
    assert_eq!(c.discard, DiscardPolicy::Old);
    assert_eq!(info.state.messages, 0);
    assert_eq!(info.state.first_sequence, 0);

    // A stream without subjects captures its own name.
    let mut named = node.js.create_stream(config("PLAIN", &[])).await?;
    assert_eq!(
        named.info().await?.config.subjects,
        vec!["PLAIN".to_string()]
    );
    assert_eq!(node.publish("PLAIN", "x").await?, 1);
    Ok(())
}

#[tokio::test]
async fn creating_the_same_stream_twice_is_idempotent_but_a_different_config_is_refused()
-> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("S", &["s.>"]).await?;
    node.publish("s.1", "kept").await?;
    node.stream("S", &["s.>"]).await?;
    assert_eq!(
        stream_state(&node, "S").await?.messages,
        1,
        "re-create keeps the stream"
    );

    let err = node
        .js
        .create_stream(Config {
            max_messages: 5,
            ..config("S", &["s.>"])
        })
        .await
        .expect_err("a different config under the same name");
    assert!(
        err.to_string()
            .contains("stream name already in use with a different configuration"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn updating_a_stream_changes_limits_and_moves_its_subjects() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("U", &["old.>"]).await?;
    for i in 0..5 {
        node.publish("old.a", i.to_string()).await?;
    }
    let info = node
        .js
        .update_stream(Config {
            max_messages: 2,
            description: Some("trimmed".into()),
            ..config("U", &["new.>"])
        })
        .await?;
    assert_eq!(info.config.max_messages, 2);
    assert_eq!(info.config.description.as_deref(), Some("trimmed"));
    assert_eq!(info.config.subjects, vec!["new.>".to_string()]);

    // The new subjects are captured, the old ones are plain core subjects again.
    assert_eq!(node.publish("new.a", "captured").await?, 6);
    let err = node
        .client
        .request("old.a", "not captured".into())
        .await
        .expect_err("nobody captures the old subject");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);

    let err = node
        .js
        .update_stream(Config {
            storage: StorageType::Memory,
            ..config("U", &["new.>"])
        })
        .await
        .expect_err("storage can not change");
    assert!(
        err.to_string()
            .contains("stream configuration update can not change storage type"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn a_deleted_stream_is_gone_and_its_subjects_are_free() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("D", &["d.>"]).await?;
    node.publish("d.1", "x").await?;
    assert!(node.js.delete_stream("D").await?.success);
    assert!(node.js.get_stream("D").await.is_err());
    assert!(node.js.delete_stream("D").await.is_err());
    // Another stream may take the subjects now, and starts from sequence 1.
    node.stream("D2", &["d.>"]).await?;
    assert_eq!(node.publish("d.1", "y").await?, 1);
    Ok(())
}

#[tokio::test]
async fn stream_names_and_list_can_be_filtered_by_subject() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("A", &["a.>"]).await?;
    node.stream("B", &["b.*"]).await?;
    node.stream("C", &["c"]).await?;
    // A failing page would make the client ask again forever: bound the whole listing.
    let mut names: Vec<String> = within("stream names", node.js.stream_names().collect::<Vec<_>>())
        .await?
        .into_iter()
        .map(ok)
        .collect::<anyhow::Result<_>>()?;
    names.sort();
    assert_eq!(names, ["A", "B", "C"]);
    // `stream_by_subject` asks for the names with a subject filter.
    assert_eq!(ok(node.js.stream_by_subject("b.x").await)?, "B");
    assert_eq!(ok(node.js.stream_by_subject("a.x.y").await)?, "A");
    assert!(node.js.stream_by_subject("z").await.is_err());
    let mut infos: Vec<String> = within("stream list", node.js.streams().collect::<Vec<_>>())
        .await?
        .into_iter()
        .map(|info| ok(info).map(|i| i.config.name))
        .collect::<anyhow::Result<_>>()?;
    infos.sort();
    assert_eq!(infos, ["A", "B", "C"]);
    Ok(())
}

// --- publishing ------------------------------------------------------------------------------

#[tokio::test]
async fn publishes_are_acknowledged_with_the_stream_and_consecutive_sequences() -> anyhow::Result<()>
{
    let node = Node::start().await?;
    node.stream("P", &["p.>"]).await?;
    for expected in 1..=3 {
        let ack = node
            .js
            .publish("p.x", Bytes::from_static(b"hi"))
            .await?
            .await?;
        assert_eq!((ack.stream.as_str(), ack.sequence), ("P", expected));
        assert!(!ack.duplicate);
    }
    let state = stream_state(&node, "P").await?;
    assert_eq!(
        (state.messages, state.first_sequence, state.last_sequence),
        (3, 1, 3)
    );
    Ok(())
}

#[tokio::test]
async fn a_repeated_msg_id_within_the_window_is_stored_once() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("DEDUP", &["dd.>"]).await?;
    let first = acked(&node, "dd.a", msg("one").message_id("id-1")).await?;
    let again = acked(&node, "dd.a", msg("one").message_id("id-1")).await?;
    let other = acked(&node, "dd.a", msg("two").message_id("id-2")).await?;
    assert_eq!((first.sequence, first.duplicate), (1, false));
    assert_eq!((again.sequence, again.duplicate), (1, true));
    assert_eq!((other.sequence, other.duplicate), (2, false));
    assert_eq!(stream_state(&node, "DEDUP").await?.messages, 2);
    Ok(())
}

#[tokio::test]
async fn expectation_headers_refuse_publishes_without_using_a_sequence() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("EXP", &["exp.>"]).await?;
    acked(&node, "exp.a", msg("1").message_id("m1")).await?;
    acked(&node, "exp.b", msg("2")).await?;

    let (_, text) = refusal(send(&node, "exp.a", msg("x").expected_stream("OTHER")).await)?;
    assert!(text.contains("expected stream does not match"), "{text}");

    let (kind, text) = refusal(send(&node, "exp.a", msg("x").expected_last_sequence(1)).await)?;
    assert_eq!(kind, PublishErrorKind::WrongLastSequence);
    assert!(text.contains("wrong last sequence: 2"), "{text}");

    let (kind, text) =
        refusal(send(&node, "exp.a", msg("x").expected_last_subject_sequence(2)).await)?;
    assert_eq!(kind, PublishErrorKind::WrongLastSequence);
    assert!(text.contains("wrong last sequence: 1"), "{text}");

    let (kind, text) =
        refusal(send(&node, "exp.a", msg("x").expected_last_message_id("m0")).await)?;
    assert_eq!(kind, PublishErrorKind::WrongLastMessageId);
    // The last message (seq 2) carried no id.
    assert!(text.contains("wrong last msg ID: "), "{text}");

    // Met expectations pass, and the refused publishes took no sequence.
    let ack = acked(
        &node,
        "exp.a",
        msg("ok")
            .expected_stream("EXP")
            .expected_last_sequence(2)
            .expected_last_subject_sequence(1),
    )
    .await?;
    assert_eq!(ack.sequence, 3);
    assert_eq!(stream_state(&node, "EXP").await?.messages, 3);
    Ok(())
}

#[tokio::test]
async fn a_publish_to_a_subject_no_stream_captures_is_plain_core_nats() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("S", &["s.>"]).await?;
    let mut sub = node.client.subscribe("plain.>").await?;
    node.client.flush().await?;
    node.client
        .publish_with_reply("plain.x", "my.reply", "core".into())
        .await?;
    let got = within("core delivery", sub.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
    assert_eq!(got.payload, "core");
    assert_eq!(got.reply.as_deref(), Some("my.reply"));
    // Nobody answers a request there: no JetStream ack from anywhere.
    let err = node
        .client
        .request("nobody.here", "x".into())
        .await
        .expect_err("no stream and no subscriber");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    assert_eq!(stream_state(&node, "S").await?.messages, 0);
    Ok(())
}

#[tokio::test]
async fn concurrent_publishers_get_distinct_gapless_sequences() -> anyhow::Result<()> {
    const TASKS: u64 = 8;
    const EACH: u64 = 500;
    let node = Node::start().await?;
    node.stream("MANY", &["many.>"]).await?;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let client = async_nats::connect(node.server.url()).await?;
        tasks.push(tokio::spawn(async move {
            let js = jetstream::new(client);
            let mut acks = Vec::with_capacity(EACH as usize);
            for i in 0..EACH {
                acks.push(
                    js.publish(format!("many.{t}"), Bytes::from(i.to_string()))
                        .await?,
                );
            }
            let mut seqs = Vec::with_capacity(acks.len());
            for ack in acks {
                seqs.push(ack.await?.sequence);
            }
            anyhow::Ok(seqs)
        }));
    }
    let mut all = BTreeSet::new();
    for task in tasks {
        let seqs = tokio::time::timeout(Duration::from_secs(60), task).await???;
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one publisher's acks in order"
        );
        for seq in seqs {
            assert!(all.insert(seq), "sequence {seq} acknowledged twice");
        }
    }
    let expected: BTreeSet<u64> = (1..=TASKS * EACH).collect();
    assert_eq!(all, expected);
    let state = stream_state(&node, "MANY").await?;
    assert_eq!(
        (state.messages, state.last_sequence),
        (TASKS * EACH, TASKS * EACH)
    );
    Ok(())
}

/// Republish (nats-server's `republish`): each stored message whose subject matches `src` is
/// published again on the transformed subject, with the stream's headers after its own; the
/// destination may not feed the stream; an update changes it; it survives a restart.
#[tokio::test]
async fn stored_messages_are_republished_with_where_they_are_stored() -> anyhow::Result<()> {
    use async_nats::jetstream::stream::Republish;

    let node = Node::start().await?;
    let republish = |src: &str, dest: &str, headers_only: bool| Republish {
        source: src.to_owned(),
        destination: dest.to_owned(),
        headers_only,
    };
    let cycle = node
        .js
        .create_stream(Config {
            republish: Some(republish("", "orders.copy", false)),
            ..config("RP", &["orders.>"])
        })
        .await
        .expect_err("a destination inside the stream's subjects");
    assert!(
        cycle
            .to_string()
            .contains("stream configuration for republish destination forms a cycle"),
        "{cycle}"
    );
    let mut stream = node
        .js
        .create_stream(Config {
            republish: Some(republish("orders.*", "copies.$1", false)),
            ..config("RP", &["orders.>"])
        })
        .await?;
    let shown = stream.info().await?.config.republish.clone();
    assert_eq!(shown, Some(republish("orders.*", "copies.$1", false)));

    let mut copies = node.client.subscribe("copies.>").await?;
    node.client.flush().await?;
    acked(&node, "orders.new", msg("one")).await?;
    acked(
        &node,
        "orders.new",
        Publish::build()
            .header("X-Mine", "kept")
            .payload(Bytes::from_static(b"two")),
    )
    .await?;
    acked(&node, "orders.new.deep", msg("not copied")).await?;
    acked(&node, "orders.old", msg("three")).await?;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let copy = within("a republished message", copies.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
        let headers = copy
            .headers
            .ok_or_else(|| anyhow::anyhow!("no headers on {}", copy.subject))?;
        let header = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(header("Nats-Stream").as_deref(), Some("RP"));
        assert!(header("Nats-Time-Stamp").is_some());
        seen.push((
            copy.subject.to_string(),
            String::from_utf8(copy.payload.to_vec())?,
            header("Nats-Subject"),
            header("Nats-Sequence"),
            header("Nats-Last-Sequence"),
            header("X-Mine"),
        ));
    }
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        seen,
        [
            (
                "copies.new".into(),
                "one".into(),
                some("orders.new"),
                some("1"),
                some("0"),
                None
            ),
            (
                "copies.new".into(),
                "two".into(),
                some("orders.new"),
                some("2"),
                some("1"),
                some("kept")
            ),
            (
                "copies.old".into(),
                "three".into(),
                some("orders.old"),
                some("4"),
                some("0"),
                None
            ),
        ]
    );

    // Headers only, after an update, and still after a restart.
    node.js
        .update_stream(Config {
            republish: Some(republish("", "sizes.>", true)),
            ..config("RP", &["orders.>"])
        })
        .await?;
    let node = node.restart().await?;
    let mut sizes = node.client.subscribe("sizes.>").await?;
    node.client.flush().await?;
    acked(&node, "orders.big", msg("12345")).await?;
    let copy = within("a headers-only copy", sizes.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
    assert_eq!(copy.subject.as_str(), "sizes.orders.big");
    assert!(copy.payload.is_empty());
    let headers = copy.headers.ok_or_else(|| anyhow::anyhow!("no headers"))?;
    assert_eq!(headers.get("Nats-Msg-Size").map(|v| v.as_str()), Some("5"));
    assert_eq!(headers.get("Nats-Sequence").map(|v| v.as_str()), Some("5"));
    Ok(())
}

/// A stream's `subject_transform` stores messages under the transformed subject: reads, the
/// expected last subject sequence and consumer filters (which may then lie outside the stream's
/// subjects, as nats-server allows) all see that subject.
#[tokio::test]
async fn a_subject_transform_stores_messages_under_the_new_subject() -> anyhow::Result<()> {
    use async_nats::jetstream::consumer::pull;
    use async_nats::jetstream::stream::SubjectTransform;

    let node = Node::start().await?;
    let refused = node
        .js
        .create_stream(Config {
            subject_transform: Some(SubjectTransform {
                source: "in.*".into(),
                destination: "kept.*".into(),
            }),
            ..config("ST", &["in.>"])
        })
        .await
        .expect_err("a wildcard destination");
    assert!(
        refused
            .to_string()
            .contains("stream transform: invalid subject"),
        "{refused}"
    );
    let stream = node
        .js
        .create_stream(Config {
            subject_transform: Some(SubjectTransform {
                source: "in.*".into(),
                destination: "kept.$1".into(),
            }),
            ..config("ST", &["in.>"])
        })
        .await?;
    assert_eq!(acked(&node, "in.a", msg("one")).await?.sequence, 1);
    assert_eq!(acked(&node, "in.a.deep", msg("two")).await?.sequence, 2);
    assert_eq!(stream.get_raw_message(1).await?.subject.as_str(), "kept.a");
    assert_eq!(
        stream.get_raw_message(2).await?.subject.as_str(),
        "in.a.deep"
    );
    let last = acked(
        &node,
        "in.a",
        Publish::build()
            .expected_last_subject_sequence(1)
            .payload(Bytes::from_static(b"three")),
    )
    .await?;
    assert_eq!(last.sequence, 3);

    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("KEPT".into()),
            filter_subject: "kept.>".into(),
            ..Default::default()
        })
        .await?;
    let mut batch = consumer.fetch().max_messages(10).messages().await?;
    let mut got = Vec::new();
    while let Some(m) = within("a fetched message", batch.next()).await? {
        let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
        got.push((
            m.subject.to_string(),
            String::from_utf8(m.payload.to_vec())?,
        ));
    }
    assert_eq!(
        got,
        [
            ("kept.a".to_string(), "one".to_string()),
            ("kept.a".to_string(), "three".to_string())
        ]
    );
    Ok(())
}

// --- limits ------------------------------------------------------------------------------------

#[tokio::test]
async fn max_msgs_and_max_bytes_drop_the_oldest_messages() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.js
        .create_stream(Config {
            max_messages: 3,
            ..config("MSGS", &["msgs"])
        })
        .await?;
    for i in 0..5 {
        node.publish("msgs", i.to_string()).await?;
    }
    let state = stream_state(&node, "MSGS").await?;
    assert_eq!(
        (state.messages, state.first_sequence, state.last_sequence),
        (3, 3, 5)
    );

    // Each message is 5 + 10 + 30 = 45 bytes: 100 bytes hold two.
    node.js
        .create_stream(Config {
            max_bytes: 100,
            ..config("BYTES", &["bytes"])
        })
        .await?;
    for _ in 0..4 {
        node.publish("bytes", "0123456789").await?;
    }
    let state = stream_state(&node, "BYTES").await?;
    assert_eq!(
        (state.messages, state.bytes, state.first_sequence),
        (2, 90, 3)
    );
    Ok(())
}

#[tokio::test]
async fn max_msgs_per_subject_keeps_the_newest_of_each_subject() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.js
        .create_stream(Config {
            max_messages_per_subject: 2,
            ..config("PER", &["per.>"])
        })
        .await?;
    for i in 0..4 {
        node.publish("per.a", i.to_string()).await?;
    }
    node.publish("per.b", "b").await?;
    let stream = node.js.get_stream("PER").await?;
    let mut subjects = Vec::new();
    let mut pages = stream.info_with_subjects(">").await?;
    while let Some(entry) = pages.next().await {
        subjects.push(entry?);
    }
    subjects.sort();
    assert_eq!(
        subjects,
        [("per.a".to_string(), 2), ("per.b".to_string(), 1)]
    );
    let first = stream.get_raw_message(3).await?;
    assert_eq!(first.payload, "2");
    assert!(
        stream.get_raw_message(2).await.is_err(),
        "oldest of per.a dropped"
    );
    Ok(())
}

#[tokio::test]
async fn max_age_expires_messages() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.js
        .create_stream(Config {
            max_age: Duration::from_millis(200),
            ..config("AGE", &["age"])
        })
        .await?;
    node.publish("age", "short-lived").await?;
    node.publish("age", "short-lived").await?;
    assert_eq!(stream_state(&node, "AGE").await?.messages, 2);
    eventually("messages to expire", || async {
        Ok(stream_state(&node, "AGE").await?.messages == 0)
    })
    .await?;
    let state = stream_state(&node, "AGE").await?;
    assert_eq!((state.first_sequence, state.last_sequence), (3, 2));
    // The sequence continues after expiry.
    assert_eq!(node.publish("age", "later").await?, 3);
    Ok(())
}

#[tokio::test]
async fn max_msg_size_refuses_larger_messages() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.js
        .create_stream(Config {
            max_message_size: 10,
            ..config("SIZE", &["size"])
        })
        .await?;
    assert_eq!(node.publish("size", "0123456789").await?, 1);
    let (_, text) = refusal(send(&node, "size", msg("0123456789A")).await)?;
    assert!(
        text.contains("message size exceeds maximum allowed"),
        "{text}"
    );
    assert_eq!(node.publish("size", "small").await?, 2);
    Ok(())
}

#[tokio::test]
async fn discard_new_refuses_publishes_beyond_the_limits() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.js
        .create_stream(Config {
            max_messages: 2,
            discard: DiscardPolicy::New,
            ..config("NEWM", &["newm"])
        })
        .await?;
    node.publish("newm", "1").await?;
    node.publish("newm", "2").await?;
    let (_, text) = refusal(send(&node, "newm", msg("3")).await)?;
    assert!(text.contains("maximum messages exceeded"), "{text}");

    node.js
        .create_stream(Config {
            max_bytes: 100,
            discard: DiscardPolicy::New,
            ..config("NEWB", &["newb"])
        })
        .await?;
    node.publish("newb", "x".repeat(40)).await?;
    let (_, text) = refusal(send(&node, "newb", msg(&"x".repeat(40))).await)?;
    assert!(text.contains("maximum bytes exceeded"), "{text}");

    let state = stream_state(&node, "NEWM").await?;
    assert_eq!(
        (state.messages, state.first_sequence, state.last_sequence),
        (2, 1, 2)
    );
    Ok(())
}

#[tokio::test]
async fn discard_new_per_subject_refuses_only_the_full_subject() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.js
        .create_stream(Config {
            max_messages_per_subject: 1,
            discard: DiscardPolicy::New,
            discard_new_per_subject: true,
            ..config("NPS", &["nps.>"])
        })
        .await?;
    node.publish("nps.a", "1").await?;
    let (_, text) = refusal(send(&node, "nps.a", msg("2")).await)?;
    assert!(
        text.contains("maximum messages per subject exceeded"),
        "{text}"
    );
    assert_eq!(node.publish("nps.b", "3").await?, 2);
    Ok(())
}

#[tokio::test]
async fn rollup_headers_replace_a_subject_or_the_whole_stream() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.js
        .create_stream(Config {
            allow_rollup: true,
            ..config("ROLL", &["roll.>"])
        })
        .await?;
    node.publish("roll.a", "1").await?;
    node.publish("roll.a", "2").await?;
    node.publish("roll.b", "3").await?;
    acked(&node, "roll.a", msg("4").header("Nats-Rollup", "sub")).await?;
    let state = stream_state(&node, "ROLL").await?;
    assert_eq!((state.messages, state.first_sequence), (2, 3));

    acked(&node, "roll.c", msg("5").header("Nats-Rollup", "all")).await?;
    let state = stream_state(&node, "ROLL").await?;
    assert_eq!(
        (state.messages, state.first_sequence, state.last_sequence),
        (1, 5, 5)
    );

    let (_, text) = refusal(send(&node, "roll.c", msg("6").header("Nats-Rollup", "bogus")).await)?;
    assert!(text.contains("rollup value invalid"), "{text}");

    node.stream("NOROLL", &["noroll"]).await?;
    let (_, text) = refusal(send(&node, "noroll", msg("x").header("Nats-Rollup", "all")).await)?;
    assert!(text.contains("rollup not permitted"), "{text}");
    Ok(())
}

#[tokio::test]
async fn deny_delete_and_deny_purge_protect_messages() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node
        .js
        .create_stream(Config {
            deny_delete: true,
            deny_purge: true,
            ..config("SAFE", &["safe"])
        })
        .await?;
    node.publish("safe", "x").await?;
    let err = stream.delete_message(1).await.expect_err("deny_delete");
    assert!(
        err.to_string().contains("message delete not permitted"),
        "{err}"
    );
    let err = stream.purge().await.expect_err("deny_purge");
    assert!(
        err.to_string().contains("stream purge not permitted"),
        "{err}"
    );
    assert_eq!(stream_state(&node, "SAFE").await?.messages, 1);
    Ok(())
}

#[tokio::test]
async fn a_sealed_stream_refuses_publishes_deletes_and_purges() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("SEAL", &["seal"]).await?;
    node.publish("seal", "x").await?;
    let info = node
        .js
        .update_stream(Config {
            sealed: true,
            ..config("SEAL", &["seal"])
        })
        .await?;
    assert!(info.config.sealed);
    assert!(info.config.deny_delete && info.config.deny_purge);
    assert_eq!(info.config.discard, DiscardPolicy::New);

    let (_, text) = refusal(send(&node, "seal", msg("y")).await)?;
    assert!(
        text.contains("invalid operation on sealed stream"),
        "{text}"
    );
    assert!(stream.delete_message(1).await.is_err());
    assert!(stream.purge().await.is_err());
    let err = node
        .js
        .update_stream(config("SEAL", &["seal"]))
        .await
        .expect_err("a sealed stream stays sealed");
    assert!(
        err.to_string().contains("can not unseal a sealed stream"),
        "{err}"
    );
    assert_eq!(stream_state(&node, "SEAL").await?.messages, 1);
    Ok(())
}

// --- purge, get, delete, direct get -----------------------------------------------------------

#[tokio::test]
async fn purge_removes_all_or_by_subject_keep_and_sequence() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("PUR", &["pur.>"]).await?;
    for i in 0..10 {
        node.publish(
            if i % 2 == 0 { "pur.even" } else { "pur.odd" },
            i.to_string(),
        )
        .await?;
    }
    assert_eq!(stream.purge().filter("pur.odd").await?.purged, 5);
    assert_eq!(stream.purge().filter("pur.even").keep(2).await?.purged, 3);
    // Left: seqs 7 and 9 (pur.even 6 and 8). Below 9: one.
    assert_eq!(stream.purge().sequence(9).await?.purged, 1);
    let state = stream_state(&node, "PUR").await?;
    assert_eq!((state.messages, state.first_sequence), (1, 9));
    assert_eq!(stream.purge().await?.purged, 1);
    let state = stream_state(&node, "PUR").await?;
    assert_eq!(
        (state.messages, state.first_sequence, state.last_sequence),
        (0, 11, 10)
    );
    assert_eq!(
        node.publish("pur.odd", "after").await?,
        11,
        "purge keeps the sequence"
    );
    Ok(())
}

#[tokio::test]
async fn messages_can_be_fetched_by_sequence_and_by_subject() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("GET", &["get.>"]).await?;
    acked(&node, "get.a", msg("first").header("Trace", "t1")).await?;
    node.publish("get.b", "second").await?;
    node.publish("get.a", "third").await?;

    let m = stream.get_raw_message(1).await?;
    assert_eq!((m.subject.as_str(), m.sequence), ("get.a", 1));
    assert_eq!(m.payload, "first");
    assert_eq!(m.headers.get("Trace").map(|v| v.as_str()), Some("t1"));

    let last = stream.get_last_raw_message_by_subject("get.a").await?;
    assert_eq!(
        (last.sequence, last.payload.as_ref()),
        (3, b"third".as_ref())
    );
    let next = stream
        .raw_message_builder()
        .sequence(1)
        .next_by_subject("get.b")
        .send()
        .await?;
    assert_eq!(next.sequence, 2);

    let err = stream
        .get_raw_message(99)
        .await
        .expect_err("no such message");
    assert!(
        err.to_string().contains("no message found") || format!("{err:?}").contains("NotFound"),
        "{err:?}"
    );
    assert!(
        stream
            .get_last_raw_message_by_subject("get.none")
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn deleting_a_message_twice_fails_the_second_time() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node.stream("DEL", &["del"]).await?;
    for i in 0..3 {
        node.publish("del", i.to_string()).await?;
    }
    assert!(stream.delete_message(2).await?);
    let err = stream.delete_message(2).await.expect_err("already deleted");
    assert!(err.to_string().contains("sequence 2 not found"), "{err}");
    let state = stream_state(&node, "DEL").await?;
    assert_eq!((state.messages, state.deleted_count), (2, Some(1)));
    assert!(stream.get_raw_message(2).await.is_err());
    Ok(())
}

#[tokio::test]
async fn direct_get_answers_from_streams_that_allow_it() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node
        .js
        .create_stream(Config {
            allow_direct: true,
            ..config("DIR", &["dir.>"])
        })
        .await?;
    acked(&node, "dir.a", msg("one").header("Foo", "bar")).await?;
    node.publish("dir.b", "two").await?;
    node.publish("dir.a", "three").await?;

    let m = stream.direct_get(1).await?;
    assert_eq!((m.subject.as_str(), m.sequence), ("dir.a", 1));
    assert_eq!(m.payload, "one");
    assert_eq!(m.headers.get("Foo").map(|v| v.as_str()), Some("bar"));
    assert_eq!(
        m.headers.get("Nats-Stream").map(|v| v.as_str()),
        Some("DIR")
    );

    let last = stream.direct_get_last_for_subject("dir.a").await?;
    assert_eq!(
        (last.sequence, last.payload.as_ref()),
        (3, b"three".as_ref())
    );
    let next = stream.direct_get_next_for_subject("dir.b", Some(1)).await?;
    assert_eq!(next.sequence, 2);
    assert!(
        stream.direct_get(99).await.is_err(),
        "404 for a missing message"
    );
    Ok(())
}

/// While publishes keep coming, the last message of a subject (what a KV get reads) is always
/// found, by direct get and by the API's get, and so is the last sequence STREAM.INFO reports:
/// a message the stream counts can be read at once, as on nats-server.
#[tokio::test]
async fn what_the_stream_counts_can_be_read_while_publishes_keep_coming() -> anyhow::Result<()> {
    const MSGS: u64 = 3000;
    let node = Node::start().await?;
    let stream = node
        .js
        .create_stream(Config {
            allow_direct: true,
            ..config("BUSY", &["busy.>"])
        })
        .await?;
    acked(&node, "busy.x", msg("first")).await?;
    let publisher = {
        let js = jetstream::new(async_nats::connect(node.server.url()).await?);
        tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..MSGS {
                acks.push(js.publish("busy.x", Bytes::from(i.to_string())).await?);
                if acks.len() == 64 {
                    for ack in acks.drain(..) {
                        ack.await?;
                    }
                }
            }
            for ack in acks {
                ack.await?;
            }
            anyhow::Ok(())
        })
    };
    let (mut reads, mut last) = (0u64, 0u64);
    while !publisher.is_finished() || reads == 0 {
        let direct = stream.direct_get_last_for_subject("busy.x").await?;
        let api = stream.get_last_raw_message_by_subject("busy.x").await?;
        assert!(
            last <= direct.sequence && direct.sequence <= api.sequence,
            "last message of busy.x went back: {last}, {}, {}",
            direct.sequence,
            api.sequence
        );
        last = api.sequence;
        let counted = stream_state(&node, "BUSY").await?.last_sequence;
        let read = stream.get_raw_message(counted).await?;
        assert_eq!(read.sequence, counted);
        reads += 1;
    }
    within("publisher", publisher).await???;
    assert_eq!(stream_state(&node, "BUSY").await?.messages, MSGS + 1);
    assert!(reads > 0);
    Ok(())
}

/// A snapshot transfer cut short by a crash leaves the messages it received under a staging
/// record in the store; the next start removes them and serves the streams as they were.
#[tokio::test]
async fn an_unfinished_snapshot_transfer_is_removed_at_start() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("KEEP", &["keep"]).await?;
    node.publish("keep", "one").await?;
    let dir = node.stop().await;
    let db = dir.path().join("jetstream/rocksdb");
    let staged = {
        let store = natrix_store::Store::open(&db, natrix_store::StoreOptions::default())?;
        let [(_, record)] = <[_; 1]>::try_from(store.stream_configs()?)
            .map_err(|c| anyhow::anyhow!("{} stream records", c.len()))?;
        let mut record: serde_json::Value = serde_json::from_slice(&record)?;
        record["staging"] = true.into();
        let id = store
            .create_stream(Bytes::from(serde_json::to_vec(&record)?))
            .await?;
        let msg = natrix_stream::StoredMsg {
            seq: 1,
            timestamp_ns: 1,
            subject: Bytes::from_static(b"keep"),
            headers: None,
            payload: Bytes::from_static(b"received"),
        };
        let mut encoded = bytes::BytesMut::new();
        msg.encode(&mut encoded);
        store.write_staged_msgs(id, &[(1, encoded.freeze())])?;
        id
    };
    let node = Node::start_in(dir).await?;
    let names: Vec<String> = node.js.stream_names().try_collect().await?;
    assert_eq!(names, vec!["KEEP".to_owned()]);
    assert_eq!(stream_state(&node, "KEEP").await?.messages, 1);
    let _dir = node.stop().await;
    let store = natrix_store::Store::open(&db, Default::default())?;
    assert_eq!(store.stream_configs()?.len(), 1);
    assert_eq!(store.scan_msgs(staged, 0)?.count(), 0);
    Ok(())
}

#[tokio::test]
async fn a_memory_stream_stores_and_serves_messages() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let stream = node
        .js
        .create_stream(Config {
            storage: StorageType::Memory,
            max_messages: 2,
            ..config("MEM", &["mem.>"])
        })
        .await?;
    for i in 0..3 {
        node.publish("mem.x", i.to_string()).await?;
    }
    let state = stream_state(&node, "MEM").await?;
    assert_eq!(
        (state.messages, state.first_sequence, state.bytes),
        (2, 2, 2 * (5 + 1 + 16))
    );
    assert_eq!(stream.get_raw_message(3).await?.payload, "2");
    assert_eq!(stream.purge().await?.purged, 2);
    assert_eq!(node.publish("mem.x", "again").await?, 4);
    Ok(())
}

// --- restart -----------------------------------------------------------------------------------

#[tokio::test]
async fn streams_messages_sequences_and_dedup_survive_a_restart() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.js
        .create_stream(Config {
            max_messages_per_subject: 5,
            ..config("KEEP", &["keep.>"])
        })
        .await?;
    node.stream("PURGED", &["purged"]).await?;
    acked(&node, "keep.a", msg("one").message_id("id-1")).await?;
    node.publish("keep.b", "two").await?;
    for _ in 0..4 {
        node.publish("purged", "x").await?;
    }
    node.js.get_stream("PURGED").await?.purge().await?;

    let node = node.restart().await?;

    let mut keep = node.js.get_stream("KEEP").await?;
    let info = keep.info().await?.clone();
    assert_eq!(info.config.max_messages_per_subject, 5);
    assert_eq!((info.state.messages, info.state.last_sequence), (2, 2));
    assert_eq!(keep.get_raw_message(1).await?.payload, "one");
    assert_eq!(keep.get_raw_message(2).await?.payload, "two");

    // The dedup window was rebuilt from the stored message ids.
    let dup = acked(&node, "keep.a", msg("one").message_id("id-1")).await?;
    assert_eq!((dup.sequence, dup.duplicate), (1, true));
    assert_eq!(node.publish("keep.c", "three").await?, 3);

    // An emptied stream continues its sequence.
    let state = stream_state(&node, "PURGED").await?;
    assert_eq!(
        (state.messages, state.last_sequence, state.first_sequence),
        (0, 4, 5)
    );
    assert_eq!(node.publish("purged", "next").await?, 5);
    Ok(())
}
