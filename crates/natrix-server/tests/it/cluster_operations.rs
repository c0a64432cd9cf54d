//! Operating a running JetStream cluster, on real 3-node clusters on loopback (in-process nodes,
//! real gRPC, client and HTTP sockets): handing a stream's or the meta group's leadership to
//! another node through the API, and reading the cluster's readiness and meta group from the
//! monitoring endpoint, as nats-server's clients and tools (`nats stream cluster step-down`,
//! `nats server cluster step-down`, Kubernetes probes) expect them.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use natrix_server::{JetStreamConfig, ServerConfig};
use natrix_testkit::TestServer;

use crate::js_cluster::{
    CLUSTER_WAIT, JsNode, api, create_stream, meta_cluster, node_named, publish_acked, read_all,
    shutdown, start_cluster, start_node, stream_leader, wait_for_meta_leader,
};

#[tokio::test]
async fn stream_leader_stepdown_moves_leadership_and_publishing_goes_on() -> anyhow::Result<()> {
    let nodes = start_cluster(3).await?;
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.*".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await?;
    let mut expected = Vec::new();
    for i in 1..=20u64 {
        let payload = format!("o{i}");
        assert_eq!(
            publish_acked(&nodes[1].js, "orders.a", payload.clone()).await?,
            i
        );
        expected.push(payload);
    }
    let before = stream_leader(&nodes[0].js, "ORDERS")
        .await?
        .ok_or_else(|| anyhow::anyhow!("the stream has no leader"))?;

    // Asked through a node that does not lead the stream: the request finds the leader.
    let asker = nodes
        .iter()
        .find(|n| n.server.server.server_name() != before)
        .ok_or_else(|| anyhow::anyhow!("every node leads"))?;
    let answer = api(&asker.client, "$JS.API.STREAM.LEADER.STEPDOWN.ORDERS").await?;
    assert_eq!(
        answer,
        serde_json::json!({
            "type": "io.nats.jetstream.api.v1.stream_leader_stepdown_response",
            "success": true,
        })
    );
    let after = stream_leader(&nodes[2].js, "ORDERS").await?;
    assert!(
        after.is_some() && after.as_deref() != Some(before.as_str()),
        "leader after stepdown: {after:?}, before: {before}"
    );

    // Publishing goes on under the new leader, with no gap and no repeat in the sequence.
    for i in 21..=40u64 {
        let payload = format!("o{i}");
        assert_eq!(
            publish_acked(&nodes[0].js, "orders.b", payload.clone()).await?,
            i
        );
        expected.push(payload);
    }
    for node in &nodes {
        assert_eq!(read_all(&node.js, "ORDERS", 40).await?, expected);
    }
    shutdown(nodes).await;
    Ok(())
}

#[tokio::test]
async fn stepdown_of_an_unknown_stream_is_stream_not_found_and_of_a_single_replica_a_no_op()
-> anyhow::Result<()> {
    let nodes = start_cluster(3).await?;
    for node in &nodes {
        let answer = api(&node.client, "$JS.API.STREAM.LEADER.STEPDOWN.NOPE").await?;
        assert_eq!(
            answer,
            serde_json::json!({
                "type": "io.nats.jetstream.api.v1.stream_leader_stepdown_response",
                "error": {"code": 404, "err_code": 10059, "description": "stream not found"},
            })
        );
    }

    // One replica has no one to hand over to: nats-server answers success and nothing moves.
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "ONE".into(),
            subjects: vec!["one".into()],
            num_replicas: 1,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(publish_acked(&nodes[2].js, "one", "1".into()).await?, 1);
    let before = stream_leader(&nodes[0].js, "ONE").await?;
    assert!(before.is_some(), "the single replica leads its stream");
    let answer = api(&nodes[1].client, "$JS.API.STREAM.LEADER.STEPDOWN.ONE").await?;
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(stream_leader(&nodes[2].js, "ONE").await?, before);
    assert_eq!(publish_acked(&nodes[1].js, "one", "2".into()).await?, 2);
    shutdown(nodes).await;
    Ok(())
}

#[tokio::test]
async fn stream_stepdown_without_a_cluster_asks_for_clustering() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(ServerConfig {
        jetstream: Some(JetStreamConfig {
            store_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        }),
        ..natrix_testkit::test_config()
    })
    .await?;
    let client = async_nats::connect(server.url()).await?;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "SOLO".into(),
        subjects: vec!["solo".into()],
        ..Default::default()
    })
    .await?;
    let answer = api(&client, "$JS.API.STREAM.LEADER.STEPDOWN.SOLO").await?;
    assert_eq!(
        answer,
        serde_json::json!({
            "type": "io.nats.jetstream.api.v1.stream_leader_stepdown_response",
            "error": {
                "code": 503,
                "err_code": 10010,
                "description": "JetStream clustering support required",
            },
        })
    );
    drop(client);
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn meta_leader_stepdown_hands_the_meta_group_to_another_node() -> anyhow::Result<()> {
    let nodes = start_cluster(3).await?;
    let before = wait_for_meta_leader(&nodes, None).await?;
    let meta = meta_cluster(&nodes[0]).await?;
    assert_eq!(meta["name"], "js");
    assert!(meta["peer"].as_str().is_some_and(|p| !p.is_empty()));

    // Asked through a node that is not the meta leader: the request finds the leader.
    let asker = nodes
        .iter()
        .find(|n| n.server.server.server_name() != before)
        .ok_or_else(|| anyhow::anyhow!("every node leads"))?;
    let answer = api(&asker.client, "$JS.API.META.LEADER.STEPDOWN").await?;
    assert_eq!(
        answer,
        serde_json::json!({
            "type": "io.nats.jetstream.api.v1.meta_leader_stepdown_response",
            "success": true,
        })
    );
    let after = wait_for_meta_leader(&nodes, Some(&before)).await?;
    assert_ne!(after, before);

    // The new meta leader takes meta requests: a stream can be created and is listed.
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "AFTER".into(),
            subjects: vec!["after".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(publish_acked(&nodes[1].js, "after", "a".into()).await?, 1);
    shutdown(nodes).await;
    Ok(())
}

/// Waits (bounded) until each node's `/healthz` answers 200, and asserts it does.
async fn assert_every_node_becomes_healthy(
    nodes: impl IntoIterator<Item = &JsNode>,
) -> anyhow::Result<()> {
    for node in nodes {
        let deadline = Instant::now() + CLUSTER_WAIT;
        let health = loop {
            let health = node.server.monitor_get("/healthz").await?;
            if health.status == 200 || Instant::now() >= deadline {
                break health;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(health.status, 200, "{}", health.body);
        assert_eq!(health.body, r#"{"status":"ok"}"#);
    }
    Ok(())
}

#[tokio::test]
async fn healthz_is_ok_once_the_cluster_has_a_meta_leader() -> anyhow::Result<()> {
    let nodes = start_cluster(3).await?;
    // A follower that has a meta entry not yet applied is briefly "not current".
    assert_every_node_becomes_healthy(&nodes).await?;
    shutdown(nodes).await;
    Ok(())
}

#[tokio::test]
async fn healthz_is_ok_on_every_node_once_its_stream_replicas_caught_up() -> anyhow::Result<()> {
    let nodes = start_cluster(3).await?;
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "HEALTH".into(),
            subjects: vec!["health".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await?;
    for i in 1..=100u64 {
        assert_eq!(
            publish_acked(&nodes[1].js, "health", format!("h{i}")).await?,
            i
        );
    }
    // Ready once each replica applied (nearly) everything its leader committed.
    assert_every_node_becomes_healthy(&nodes).await?;
    shutdown(nodes).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_unavailable_on_a_replica_whose_stream_lost_its_quorum() -> anyhow::Result<()> {
    // Five nodes: the meta group keeps its quorum when two of them stop, while an R3 stream
    // on three of them does not.
    let mut nodes = start_cluster(5).await?;
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "LOST".into(),
            subjects: vec!["lost".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(publish_acked(&nodes[0].js, "lost", "a".into()).await?, 1);
    let info = api(&nodes[0].client, "$JS.API.STREAM.INFO.LOST").await?;
    let leader = info["cluster"]["leader"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no leader: {info}"))?
        .to_owned();
    let followers: Vec<String> = info["cluster"]["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect();
    let [kept, stopped_follower] = followers.as_slice() else {
        anyhow::bail!("expected two followers: {info}");
    };
    assert_every_node_becomes_healthy(&nodes).await?;
    // Stop the stream's leader and one follower: the other follower's group has no leader and
    // can elect none, so that node is not ready; the two nodes without a replica stay ready.
    let mut stopped = Vec::new();
    for name in [&leader, stopped_follower] {
        let index = node_named(&nodes, name)?;
        stopped.push(nodes.remove(index));
    }
    shutdown(stopped).await;
    // (Until the meta group has a new leader and the node applied what it committed, every node
    // answers that first.)
    let kept_node = &nodes[node_named(&nodes, kept)?];
    let deadline = Instant::now() + CLUSTER_WAIT;
    let health = loop {
        let health = kept_node.server.monitor_get("/healthz").await?;
        if health.body.contains("> LOST' is not current") || Instant::now() >= deadline {
            break health;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health.status, 503, "{}", health.body);
    assert_eq!(
        health.body,
        r#"{"status":"unavailable","error":"JetStream stream '$G > LOST' is not current"}"#
    );
    // The kept node stays up: with it, three of the five meta voters run, a quorum.
    let others = nodes
        .iter()
        .filter(|n| n.server.server.server_name() != kept.as_str());
    assert_every_node_becomes_healthy(others).await?;
    shutdown(nodes).await;
    Ok(())
}

#[tokio::test]
async fn healthz_is_unavailable_while_a_node_has_no_meta_leader() -> anyhow::Result<()> {
    // A route to a port nothing listens on: the node waits for a peer that never comes. (It
    // would form a meta group of its own after a settling second; the check comes first.)
    let unused = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let node = start_node(&[unused.to_string()]).await?;
    let health = node.server.monitor_get("/healthz").await?;
    assert_eq!(health.status, 503, "{}", health.body);
    assert_eq!(
        health.body,
        r#"{"status":"unavailable","error":"JetStream has not established contact with a meta leader"}"#
    );
    let meta = meta_cluster(&node).await?;
    assert_eq!(meta["leader"], serde_json::Value::Null);
    // Asking only whether JetStream runs does not wait for the meta group.
    let enabled = node
        .server
        .monitor_get("/healthz?js-enabled-only=true")
        .await?;
    assert_eq!(enabled.status, 200, "{}", enabled.body);
    shutdown(vec![node]).await;
    Ok(())
}

#[tokio::test]
async fn a_stream_leader_cut_off_from_its_quorum_answers_no_reads() -> anyhow::Result<()> {
    let mut nodes = start_cluster(3).await?;
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "ALONE".into(),
            subjects: vec!["alone.>".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await?;
    for i in 1..=3 {
        publish_acked(&nodes[0].js, "alone.x", format!("a{i}")).await?;
    }
    let leader = stream_leader(&nodes[0].js, "ALONE")
        .await?
        .ok_or_else(|| anyhow::anyhow!("stream ALONE has no leader"))?;
    let index = crate::js_cluster::node_named(&nodes, &leader)?;
    let alone = nodes.remove(index);
    let info = api(&alone.client, "$JS.API.STREAM.INFO.ALONE").await?;
    assert_eq!(info["state"]["messages"], 3, "{info}");
    // The other replicas stop: the leader still believes it leads, but once its quorum's last
    // acknowledgement is older than the read lease it must not answer from its own state.
    shutdown(nodes).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    for subject in ["$JS.API.STREAM.INFO.ALONE", "$JS.API.STREAM.MSG.GET.ALONE"] {
        let answer = api(&alone.client, subject).await?;
        assert_eq!(answer["error"]["err_code"], 10009, "{subject}: {answer}");
    }
    drop(alone.client);
    alone.server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_node_going_away_first_hands_its_leaderships_to_other_nodes() -> anyhow::Result<()> {
    let nodes = start_cluster(3).await?;
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "HANDOFF".into(),
            subjects: vec!["handoff".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(publish_acked(&nodes[0].js, "handoff", "a".into()).await?, 1);
    let leader = stream_leader(&nodes[0].js, "HANDOFF")
        .await?
        .ok_or_else(|| anyhow::anyhow!("the stream has no leader"))?;
    let leaving = node_named(&nodes, &leader)?;

    // What SIGTERM and lame duck mode do first.
    nodes[leaving]
        .server
        .server
        .hand_off_leadership(Duration::from_secs(5))
        .await;

    let other = nodes
        .iter()
        .find(|n| n.server.server.server_name() != leader)
        .ok_or_else(|| anyhow::anyhow!("every node leads"))?;
    let after = stream_leader(&other.js, "HANDOFF").await?;
    assert!(
        after.is_some() && after.as_deref() != Some(leader.as_str()),
        "stream leader after the hand-off: {after:?}, before: {leader}"
    );
    let meta = wait_for_meta_leader(&nodes, None).await?;
    assert_ne!(
        meta, leader,
        "the leaving node does not lead the meta group"
    );
    // Every node's /jsz names the stream's real leader, as STREAM.INFO does.
    let new_leader = after.unwrap_or_default();
    for node in &nodes {
        let jsz = node.server.monitor_json("/jsz?streams=true").await?;
        let detail = &jsz["account_details"][0]["stream_detail"][0];
        assert_eq!(detail["name"], "HANDOFF");
        assert_eq!(detail["cluster"]["leader"], new_leader.as_str(), "{jsz}");
    }
    assert_eq!(publish_acked(&other.js, "handoff", "b".into()).await?, 2);
    shutdown(nodes).await;
    Ok(())
}
