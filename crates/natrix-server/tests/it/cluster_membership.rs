//! Moving a stream's replicas on real clusters on loopback, through async-nats and the
//! JetStream API: scaling a stream up and down by update, replacing one replica
//! (`STREAM.PEER.REMOVE`) and removing a dead server (`SERVER.REMOVE`). Each node's `/jsz`
//! says what it holds: the stream and its messages arrive on the new replicas (copied from
//! snapshot + log) and leave the removed ones.

use std::time::{Duration, Instant};

use async_nats::jetstream::stream;

use crate::js_cluster::{
    CLUSTER_WAIT, JsNode, create_stream, publish_acked, read_all, shutdown, start_cluster,
    start_node, stream_info, wait_for_meta_leader,
};

/// What a node's `/jsz` reports it holds: (streams, messages).
async fn holds(node: &JsNode) -> anyhow::Result<(u64, u64)> {
    let jsz = node.server.monitor_json("/jsz").await?;
    Ok((
        jsz["streams"].as_u64().unwrap_or(u64::MAX),
        jsz["messages"].as_u64().unwrap_or(u64::MAX),
    ))
}

/// Waits until every node holds what `expected` says (in node order).
async fn wait_for_holdings(nodes: &[JsNode], expected: &[(u64, u64)]) -> anyhow::Result<()> {
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let mut seen = Vec::new();
        for node in nodes {
            seen.push(holds(node).await?);
        }
        if seen == expected {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("nodes hold {seen:?}, expected {expected:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends an API request with a JSON body and returns the JSON answer.
async fn api_with(
    client: &async_nats::Client,
    subject: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        client.request(subject.to_string(), body.to_string().into()),
    )
    .await??;
    Ok(serde_json::from_slice(&answer.payload)?)
}

/// The stream's config with a new replica count, applied through `node`.
async fn scale(node: &JsNode, name: &str, replicas: usize) -> anyhow::Result<stream::Info> {
    let mut config = stream_info(&node.js, name).await?.config;
    config.num_replicas = replicas;
    Ok(node.js.update_stream(config).await?)
}

fn config(name: &str, subjects: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: name.into(),
        subjects: vec![subjects.into()],
        num_replicas: replicas,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_stream_scaled_up_gets_its_messages_on_every_new_replica_and_scaled_down_drops_them()
-> anyhow::Result<()> {
    let nodes = start_cluster(3).await?;
    create_stream(&nodes[0].js, config("GROW", "grow.>", 1)).await?;
    for i in 1..=25 {
        publish_acked(&nodes[1].js, "grow.x", format!("g{i}")).await?;
    }
    let one = |i: usize| {
        let mut held = vec![(0, 0); 3];
        held[i] = (1, 25);
        held
    };
    let home = {
        let mut home = None;
        for (i, node) in nodes.iter().enumerate() {
            if holds(node).await? == (1, 25) {
                home = Some(i);
            }
        }
        home.ok_or_else(|| anyhow::anyhow!("no node holds the R1 stream"))?
    };
    wait_for_holdings(&nodes, &one(home)).await?;

    let info = scale(&nodes[2], "GROW", 3).await?;
    assert_eq!(info.config.num_replicas, 3);
    wait_for_holdings(&nodes, &[(1, 25); 3]).await?;
    // The three replicas take and keep new messages together.
    for i in 26..=30 {
        publish_acked(&nodes[0].js, "grow.x", format!("g{i}")).await?;
    }
    wait_for_holdings(&nodes, &[(1, 30); 3]).await?;

    let info = scale(&nodes[0], "GROW", 1).await?;
    assert_eq!(info.config.num_replicas, 1);
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let mut held = Vec::new();
        for node in &nodes {
            held.push(holds(node).await?);
        }
        if held.iter().filter(|h| **h == (1, 30)).count() == 1
            && held.iter().filter(|h| **h == (0, 0)).count() == 2
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "after scaling down the nodes hold {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let expected: Vec<String> = (1..=30).map(|i| format!("g{i}")).collect();
    assert_eq!(read_all(&nodes[1].js, "GROW", 30).await?, expected);
    shutdown(nodes).await;
    Ok(())
}

#[tokio::test]
async fn scaling_beyond_the_cluster_is_refused_with_no_suitable_peers() -> anyhow::Result<()> {
    let nodes = start_cluster(3).await?;
    create_stream(&nodes[0].js, config("WIDE", "wide.>", 3)).await?;
    let mut config = stream_info(&nodes[0].js, "WIDE").await?.config;
    config.num_replicas = 5;
    let answer = api_with(
        &nodes[1].client,
        "$JS.API.STREAM.UPDATE.WIDE",
        serde_json::to_value(&config)?,
    )
    .await?;
    assert_eq!(answer["error"]["err_code"], 10005, "{answer}");
    assert_eq!(
        stream_info(&nodes[2].js, "WIDE").await?.config.num_replicas,
        3
    );
    shutdown(nodes).await;
    Ok(())
}

#[tokio::test]
async fn stream_peer_remove_moves_the_replica_to_another_server() -> anyhow::Result<()> {
    let nodes = start_cluster(4).await?;
    create_stream(&nodes[0].js, config("MOVE", "move.>", 3)).await?;
    for i in 1..=15 {
        publish_acked(&nodes[3].js, "move.x", format!("m{i}")).await?;
    }
    let mut held = Vec::new();
    for node in &nodes {
        held.push(holds(node).await?);
    }
    let spare = held
        .iter()
        .position(|h| *h == (0, 0))
        .ok_or_else(|| anyhow::anyhow!("an R3 stream on 4 nodes leaves one free: {held:?}"))?;
    // The stream's leader leaves: it hands the group to a staying replica, which finishes.
    let name = stream_info(&nodes[0].js, "MOVE")
        .await?
        .cluster
        .and_then(|c| c.leader)
        .ok_or_else(|| anyhow::anyhow!("stream MOVE has no leader"))?;
    let leaving = crate::js_cluster::node_named(&nodes, &name)?;

    let answer = api_with(
        &nodes[spare].client,
        "$JS.API.STREAM.PEER.REMOVE.MOVE",
        serde_json::json!({ "peer": name }),
    )
    .await?;
    assert_eq!(
        answer["type"], "io.nats.jetstream.api.v1.stream_remove_peer_response",
        "{answer}"
    );
    assert_eq!(answer["success"], true, "{answer}");
    let mut expected = vec![(1, 15); 4];
    expected[leaving] = (0, 0);
    wait_for_holdings(&nodes, &expected).await?;
    let info = stream_info(&nodes[0].js, "MOVE").await?;
    let cluster = info.cluster.unwrap_or_default();
    let mut names: Vec<String> = cluster.replicas.iter().map(|r| r.name.clone()).collect();
    names.extend(cluster.leader);
    assert!(!names.contains(&name), "{names:?} still lists {name}");

    let answer = api_with(
        &nodes[0].client,
        "$JS.API.STREAM.PEER.REMOVE.MOVE",
        serde_json::json!({ "peer": name }),
    )
    .await?;
    assert_eq!(answer["error"]["err_code"], 10040, "{answer}");
    shutdown(nodes).await;
    Ok(())
}

#[tokio::test]
async fn server_remove_takes_a_dead_server_out_and_replaces_its_replicas() -> anyhow::Result<()> {
    let mut nodes = start_cluster(4).await?;
    create_stream(&nodes[0].js, config("KEEP", "keep.>", 3)).await?;
    for i in 1..=12 {
        publish_acked(&nodes[0].js, "keep.x", format!("k{i}")).await?;
    }
    let mut held = Vec::new();
    for node in &nodes {
        held.push(holds(node).await?);
    }
    let spare = held
        .iter()
        .position(|h| *h == (0, 0))
        .ok_or_else(|| anyhow::anyhow!("an R3 stream on 4 nodes leaves one free: {held:?}"))?;
    // A replica's server dies for good.
    let dead_index = (spare + 1) % 4;
    let dead = nodes.remove(dead_index);
    let dead_name = dead.server.server.server_name().to_string();
    drop(dead.client);
    dead.server.shutdown().await;

    // The dead server may have led the meta group: ask again while a new leader is elected.
    let deadline = Instant::now() + CLUSTER_WAIT;
    let answer = loop {
        let answer = api_with(
            &nodes[0].client,
            "$JS.API.SERVER.REMOVE",
            serde_json::json!({ "peer": dead_name }),
        )
        .await?;
        let code = answer["error"]["err_code"].as_u64();
        if !matches!(code, Some(10008 | 10009)) || Instant::now() >= deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        answer["type"], "io.nats.jetstream.api.v1.meta_server_remove_response",
        "{answer}"
    );
    assert_eq!(answer["success"], true, "{answer}");
    wait_for_meta_leader(&nodes, None).await?;
    wait_for_holdings(&nodes, &[(1, 12); 3]).await?;
    for i in 13..=15 {
        publish_acked(&nodes[1].js, "keep.x", format!("k{i}")).await?;
    }
    let expected: Vec<String> = (1..=15).map(|i| format!("k{i}")).collect();
    assert_eq!(read_all(&nodes[2].js, "KEEP", 15).await?, expected);

    let answer = api_with(
        &nodes[0].client,
        "$JS.API.SERVER.REMOVE",
        serde_json::json!({ "peer": "no-such-server" }),
    )
    .await?;
    assert_eq!(answer["error"]["err_code"], 10044, "{answer}");
    shutdown(nodes).await;
    Ok(())
}

#[tokio::test]
async fn five_nodes_with_many_r3_streams_lose_a_node_and_a_new_one_takes_its_place()
-> anyhow::Result<()> {
    const STREAMS: u64 = 8;
    let mut nodes = start_cluster(5).await?;
    for s in 0..STREAMS {
        create_stream(
            &nodes[(s % 5) as usize].js,
            config(&format!("S{s}"), &format!("s{s}.>"), 3),
        )
        .await?;
        for i in 1..=4 {
            publish_acked(
                &nodes[(i % 5) as usize].js,
                &format!("s{s}.x"),
                format!("{s}-{i}"),
            )
            .await?;
        }
    }
    // Placement spreads the 24 replicas over the five nodes.
    let mut held = Vec::new();
    for node in &nodes {
        held.push(holds(node).await?);
    }
    assert_eq!(
        held.iter().map(|h| h.0).sum::<u64>(),
        STREAMS * 3,
        "{held:?}"
    );
    assert!(held.iter().all(|h| h.0 >= 4), "{held:?}");

    // One node dies for good and is removed; its replicas are re-created on the others.
    let dead = nodes.remove(2);
    let dead_name = dead.server.server.server_name().to_string();
    drop(dead.client);
    dead.server.shutdown().await;
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let answer = api_with(
            &nodes[0].client,
            "$JS.API.SERVER.REMOVE",
            serde_json::json!({ "peer": dead_name }),
        )
        .await?;
        if answer["success"] == true {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "server remove: {answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let mut held = Vec::new();
        for node in &nodes {
            held.push(holds(node).await?);
        }
        let (streams, messages) = held.iter().fold((0, 0), |(s, m), h| (s + h.0, m + h.1));
        if streams == STREAMS * 3 && messages == STREAMS * 3 * 4 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "after the removal the nodes hold {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A new node joins in its place: it becomes a meta voter and takes new replicas.
    let seed = nodes[0]
        .server
        .cluster_addr()
        .ok_or_else(|| anyhow::anyhow!("no cluster address"))?;
    nodes.push(start_node(&[seed]).await?);
    wait_for_meta_leader(&nodes, None).await?;
    create_stream(&nodes[4].js, config("WIDE", "wide.>", 5)).await?;
    publish_acked(&nodes[4].js, "wide.x", "w".to_string()).await?;
    let deadline = Instant::now() + CLUSTER_WAIT;
    while holds(&nodes[4]).await?.0 == 0 {
        anyhow::ensure!(Instant::now() < deadline, "the new node holds no replica");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for s in 0..STREAMS {
        let expected: Vec<String> = (1..=4).map(|i| format!("{s}-{i}")).collect();
        assert_eq!(read_all(&nodes[4].js, &format!("S{s}"), 4).await?, expected);
    }
    shutdown(nodes).await;
    Ok(())
}
