//! Mirrors and sources through async-nats: a mirror keeps its origin's sequences and times, a
//! source copies under new sequences with a `Nats-Stream-Source` header, both follow new
//! messages, report themselves in stream info and pick up where they stopped after a restart.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, Source};
use bytes::Bytes;

use crate::support::{Node, eventually};

fn source(name: &str) -> Source {
    Source {
        name: name.to_owned(),
        ..Default::default()
    }
}

async fn messages(node: &Node, stream: &str) -> anyhow::Result<u64> {
    Ok(node
        .js
        .get_stream(stream)
        .await?
        .get_info()
        .await?
        .state
        .messages)
}

async fn wait_for(node: &Node, stream: &str, count: u64) -> anyhow::Result<()> {
    eventually(&format!("{stream} to hold {count} messages"), || async {
        Ok(messages(node, stream).await? == count)
    })
    .await
}

#[tokio::test]
async fn a_mirror_and_a_source_copy_their_origin_and_follow_it_across_a_restart()
-> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("ORDERS", &["orders.>"]).await?;
    for i in 1..=3 {
        node.publish(&format!("orders.{i}"), format!("o{i}"))
            .await?;
    }
    // The origin's first message is gone: the mirror starts at its first sequence, 2.
    node.js
        .get_stream("ORDERS")
        .await?
        .delete_message(1)
        .await?;
    node.js
        .create_stream(Config {
            name: "MIRROR".into(),
            mirror: Some(source("ORDERS")),
            ..Default::default()
        })
        .await?;
    node.js
        .create_stream(Config {
            name: "ALL".into(),
            subjects: vec!["all.>".into()],
            sources: Some(vec![Source {
                filter_subject: Some("orders.3".into()),
                ..source("ORDERS")
            }]),
            ..Default::default()
        })
        .await?;
    wait_for(&node, "MIRROR", 2).await?;
    wait_for(&node, "ALL", 1).await?;

    let mirror = node.js.get_stream("MIRROR").await?;
    let origin = node.js.get_stream("ORDERS").await?;
    for seq in [2, 3] {
        let copy = mirror.get_raw_message(seq).await?;
        let original = origin.get_raw_message(seq).await?;
        assert_eq!(copy.subject, original.subject);
        assert_eq!(copy.payload, original.payload);
        assert_eq!(copy.time, original.time, "a mirror keeps the stored time");
    }
    let info = mirror.get_info().await?;
    assert_eq!(info.state.first_sequence, 2);
    let block = info
        .mirror
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no mirror block"))?;
    assert_eq!((block.name.as_str(), block.lag), ("ORDERS", 0));
    assert!(block.active.is_some());

    let all = node.js.get_stream("ALL").await?;
    let copied = all.get_raw_message(1).await?;
    assert_eq!(copied.subject.as_str(), "orders.3");
    assert_eq!(copied.payload, Bytes::from_static(b"o3"));
    let header = copied
        .headers
        .get("Nats-Stream-Source")
        .map(|v| v.as_str().to_owned());
    assert_eq!(header.as_deref(), Some("ORDERS 3 orders.3 > orders.3"));
    let info = all.get_info().await?;
    assert_eq!(info.sources.len(), 1);
    assert_eq!(info.sources[0].filter_subject.as_deref(), Some("orders.3"));
    // The copies' consumers on the origin are the server's own: not listed, not counted.
    let origin_info = node.js.get_stream("ORDERS").await?.get_info().await?;
    assert_eq!(origin_info.state.consumer_count, 0);
    let names = node
        .client
        .request("$JS.API.CONSUMER.NAMES.ORDERS", "".into())
        .await?;
    let names: serde_json::Value = serde_json::from_slice(&names.payload)?;
    assert_eq!(names["total"], 0, "{names}");
    // A source's stream still takes its own publishes.
    node.publish("all.own", "mine").await?;
    wait_for(&node, "ALL", 2).await?;

    // New messages follow; after a restart nothing is copied twice and the copies go on.
    node.publish("orders.3", "again").await?;
    wait_for(&node, "MIRROR", 3).await?;
    wait_for(&node, "ALL", 3).await?;
    let node = node.restart().await?;
    node.publish("orders.3", "after").await?;
    node.publish("orders.9", "other").await?;
    wait_for(&node, "MIRROR", 5).await?;
    wait_for(&node, "ALL", 4).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(messages(&node, "MIRROR").await?, 5);
    assert_eq!(messages(&node, "ALL").await?, 4);
    let last = node.js.get_stream("MIRROR").await?.get_info().await?.state;
    assert_eq!((last.first_sequence, last.last_sequence), (2, 6));
    let after = node.js.get_stream("ALL").await?.get_raw_message(4).await?;
    assert_eq!(after.payload, Bytes::from_static(b"after"));
    Ok(())
}

/// In a three-node cluster the copies run where the copying stream leads and read the origin
/// through its own leader; when the copying stream's leadership moves, the new leader picks up
/// where the old one stopped: nothing missing, nothing copied twice.
#[tokio::test]
async fn copies_in_a_cluster_continue_on_the_new_leader() -> anyhow::Result<()> {
    use crate::js_cluster::{
        CLUSTER_WAIT, api, create_stream, publish_acked, read_all, shutdown, start_cluster,
        stream_info, stream_leader,
    };

    let nodes = start_cluster(3).await?;
    create_stream(
        &nodes[0].js,
        Config {
            name: "ORIGIN".into(),
            subjects: vec!["origin.>".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await?;
    create_stream(
        &nodes[1].js,
        Config {
            name: "COPY".into(),
            num_replicas: 3,
            mirror: Some(source("ORIGIN")),
            ..Default::default()
        },
    )
    .await?;
    create_stream(
        &nodes[2].js,
        Config {
            name: "GATHER".into(),
            num_replicas: 3,
            sources: Some(vec![source("ORIGIN")]),
            ..Default::default()
        },
    )
    .await?;
    let count = |name: &'static str, want: u64| {
        let js = nodes[0].js.clone();
        async move {
            let deadline = std::time::Instant::now() + CLUSTER_WAIT;
            loop {
                let have = stream_info(&js, name).await.map(|i| i.state.messages).ok();
                if have == Some(want) {
                    return anyhow::Ok(());
                }
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "{name} holds {have:?} messages, not {want}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    for i in 1..=10u64 {
        publish_acked(
            &nodes[i as usize % 3].js,
            &format!("origin.{i}"),
            format!("m{i}"),
        )
        .await?;
    }
    count("COPY", 10).await?;
    count("GATHER", 10).await?;

    for name in ["COPY", "GATHER"] {
        let before = stream_leader(&nodes[0].js, name).await?;
        let answer = api(
            &nodes[0].client,
            &format!("$JS.API.STREAM.LEADER.STEPDOWN.{name}"),
        )
        .await?;
        anyhow::ensure!(answer.get("error").is_none(), "stepdown: {answer}");
        let deadline = std::time::Instant::now() + CLUSTER_WAIT;
        while stream_leader(&nodes[0].js, name).await.ok().flatten() == before {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "{name} kept its leader"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for i in 11..=20u64 {
        publish_acked(
            &nodes[i as usize % 3].js,
            &format!("origin.{i}"),
            format!("m{i}"),
        )
        .await?;
    }
    count("COPY", 20).await?;
    count("GATHER", 20).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    count("GATHER", 20).await?;
    let expected: Vec<String> = (1..=20).map(|i| format!("m{i}")).collect();
    assert_eq!(read_all(&nodes[2].js, "COPY", 20).await?, expected);
    assert_eq!(read_all(&nodes[1].js, "GATHER", 20).await?, expected);
    shutdown(nodes).await;
    Ok(())
}

/// A source whose origin does not exist yet shows the API's error in stream info and starts
/// copying once the origin is created; a source's subject transforms rename what it copies.
#[tokio::test]
async fn a_source_waits_for_its_origin_and_transforms_what_it_copies() -> anyhow::Result<()> {
    use async_nats::jetstream::stream::SubjectTransform;

    let node = Node::start().await?;
    node.js
        .create_stream(Config {
            name: "GATHER".into(),
            sources: Some(vec![Source {
                subject_transforms: vec![SubjectTransform {
                    source: "later.*".into(),
                    destination: "gathered.$1".into(),
                }],
                ..source("LATER")
            }]),
            ..Default::default()
        })
        .await?;
    eventually("the missing origin's error in stream info", || async {
        let answer = node
            .client
            .request("$JS.API.STREAM.INFO.GATHER", "".into())
            .await?;
        let info: serde_json::Value = serde_json::from_slice(&answer.payload)?;
        Ok(info["sources"][0]["error"]["err_code"] == 10059)
    })
    .await?;
    node.stream("LATER", &["later.>"]).await?;
    node.publish("later.a", "1").await?;
    node.publish("later.b.c", "2").await?;
    wait_for(&node, "GATHER", 1).await?;
    let gather = node.js.get_stream("GATHER").await?;
    assert_eq!(
        gather.get_raw_message(1).await?.subject.as_str(),
        "gathered.a"
    );
    // Outside the transform's source: not taken (the consumer filters on it).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(messages(&node, "GATHER").await?, 1);
    let info = node
        .client
        .request("$JS.API.STREAM.INFO.GATHER", "".into())
        .await?;
    let info: serde_json::Value = serde_json::from_slice(&info.payload)?;
    assert!(info["sources"][0].get("error").is_none(), "{info}");
    Ok(())
}
