//! Clustered JetStream on real 3-node clusters on loopback (in-process nodes, real gRPC and
//! client sockets), through async-nats: the meta group forms by itself, streams are placed and
//! replicated by Raft, any node answers any client, acknowledged messages survive the leader.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Context, stream};
use natrix_testkit::TestServer;

use crate::js_cluster::{
    CLUSTER_WAIT, JsNode, Tune, create_stream, node_config, publish_acked, read_all, start_cluster,
    start_cluster_with, stream_info,
};

/// Polls the stream info's replicas (bounded) until `done` holds for them.
async fn wait_for_replicas(
    js: &Context,
    name: &str,
    done: impl Fn(&[stream::PeerInfo]) -> bool,
) -> anyhow::Result<Vec<stream::PeerInfo>> {
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let replicas = stream_info(js, name)
            .await
            .ok()
            .and_then(|i| i.cluster)
            .map(|c| c.replicas)
            .unwrap_or_default();
        if done(&replicas) {
            return Ok(replicas);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("stream {name}'s replicas stayed {replicas:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn r3_stream_created_on_one_node_is_published_on_another_and_read_on_a_third()
-> anyhow::Result<()> {
    let nodes = start_cluster(3).await?;
    let created = create_stream(
        &nodes[0].js,
        stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await?;
    let cluster = created
        .cached_info()
        .cluster
        .clone()
        .ok_or_else(|| anyhow::anyhow!("a replicated stream's info has a cluster block"))?;
    assert_eq!(cluster.name.as_deref(), Some("js"));
    assert!(cluster.leader.is_some(), "the new stream has a leader");
    // As nats-server: the group's name (`S-R3F-...` for an R3 file stream).
    assert!(
        cluster
            .raft_group
            .as_deref()
            .is_some_and(|g| g.starts_with("S-R3F-")),
        "{cluster:?}"
    );

    for i in 1..=50u64 {
        let seq = publish_acked(&nodes[1].js, &format!("orders.{i}"), format!("m{i}")).await?;
        assert_eq!(seq, i, "sequences are assigned in publish order");
    }
    let info = stream_info(&nodes[2].js, "ORDERS").await?;
    assert_eq!(info.state.messages, 50);
    assert_eq!(info.state.last_sequence, 50);
    // Answered by the leader, which says since when it leads.
    assert!(
        info.cluster
            .as_ref()
            .is_some_and(|c| c.leader_since.is_some()),
        "{:?}",
        info.cluster
    );
    // The leader reports both followers caught up (no lag) and recently heard from.
    let replicas = wait_for_replicas(&nodes[2].js, "ORDERS", |r| {
        r.len() == 2 && r.iter().all(|p| p.current && p.lag.is_none())
    })
    .await?;
    assert!(
        replicas
            .iter()
            .all(|p| p.active < Duration::from_secs(5) && !p.offline),
        "{replicas:?}"
    );
    let expected: Vec<String> = (1..=50).map(|i| format!("m{i}")).collect();
    for node in &nodes {
        assert_eq!(read_all(&node.js, "ORDERS", 50).await?, expected);
    }

    // Every node lists the stream, whether or not it holds a replica, with the leader's state.
    for node in &nodes {
        let names: Vec<String> = futures::TryStreamExt::try_collect(node.js.stream_names()).await?;
        assert_eq!(names, vec!["ORDERS".to_string()]);
        let infos: Vec<stream::Info> =
            futures::TryStreamExt::try_collect(node.js.streams()).await?;
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0].config.name, "ORDERS");
        assert_eq!(infos[0].state.messages, 50);
    }
    for node in nodes {
        drop(node.client);
        node.server.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn an_r1_stream_takes_publishes_from_every_node() -> anyhow::Result<()> {
    let nodes = start_cluster(3).await?;
    create_stream(
        &nodes[2].js,
        stream::Config {
            name: "ONE".into(),
            subjects: vec!["one".into()],
            num_replicas: 1,
            ..Default::default()
        },
    )
    .await?;
    let mut seq = 0;
    for round in 0..3 {
        for (i, node) in nodes.iter().enumerate() {
            seq += 1;
            let got = publish_acked(&node.js, "one", format!("{round}-{i}")).await?;
            assert_eq!(got, seq);
        }
    }
    let info = stream_info(&nodes[0].js, "ONE").await?;
    assert_eq!(info.state.messages, 9);
    assert_eq!(info.config.num_replicas, 1);

    // Deleting it through any node removes it everywhere.
    assert!(nodes[1].js.delete_stream("ONE").await?.success);
    for node in &nodes {
        let names: Vec<String> = futures::TryStreamExt::try_collect(node.js.stream_names()).await?;
        assert!(names.is_empty(), "deleted stream still listed: {names:?}");
    }
    for node in nodes {
        node.server.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn a_replicated_pub_ack_names_the_jetstream_domain() -> anyhow::Result<()> {
    let tune: Tune = |js| js.domain = Some("hub".into());
    let nodes = start_cluster_with(3, tune).await?;
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "DOM".into(),
            subjects: vec!["dom".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await?;
    // The bytes nats-server 2.15.1 answers with `jetstream { domain: hub }`, from every node.
    for (i, node) in nodes.iter().enumerate() {
        let ack = node.client.request("dom", "hi".into()).await?;
        let want = format!(r#"{{"stream":"DOM","domain":"hub","seq":{}}}"#, i + 1);
        assert_eq!(std::str::from_utf8(&ack.payload)?, want);
    }
    crate::js_cluster::shutdown(nodes).await;
    Ok(())
}

/// A client of a cluster that is still forming is never told JetStream works and then refused:
/// requests sent while the meta group forms are answered once it is ready, and as soon as
/// `$JS.API.INFO` succeeds on a node an R3 stream can be created through it (before, INFO
/// succeeded at once and the create was refused with 10008, then 10005 `jetstream not enabled
/// in cluster` while the leader recorded the peers).
#[tokio::test]
async fn a_forming_cluster_answers_the_api_only_once_it_can_serve_it() -> anyhow::Result<()> {
    let first = crate::js_cluster::start_node(&[]).await?;
    let seed = crate::js_cluster::seed_routes(std::slice::from_ref(&first))?;
    let second = crate::js_cluster::start_node(&seed).await?;
    let third = crate::js_cluster::start_node(&seed).await?;
    let deadline = Instant::now() + CLUSTER_WAIT;
    for node in [&third, &second, &first] {
        loop {
            let answer = tokio::time::timeout(
                Duration::from_secs(15),
                node.client.request("$JS.API.INFO", "".into()),
            )
            .await??;
            let answer: serde_json::Value = serde_json::from_slice(&answer.payload)?;
            if answer.get("error").is_none() {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "no account info: {answer}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let request = serde_json::json!({"name": "EARLY", "subjects": ["early"], "num_replicas": 3});
    let answer = third
        .client
        .request(
            "$JS.API.STREAM.CREATE.EARLY",
            serde_json::to_vec(&request)?.into(),
        )
        .await?;
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload)?;
    assert!(answer.get("error").is_none(), "{answer}");
    assert_eq!(
        answer["cluster"]["replicas"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
    crate::js_cluster::shutdown(vec![first, second, third]).await;
    Ok(())
}

/// `max_age` ages out a replicated stream's last message by itself, with nothing published after
/// it (before, the leader looked for the message to age out before it had applied it, found
/// none, and waited for the next request), and the account info counts every replica's bytes
/// and every stream and consumer of the cluster, whichever node answers it (as nats-server).
#[tokio::test]
async fn a_replicated_stream_ages_out_its_last_message_and_the_account_counts_the_cluster()
-> anyhow::Result<()> {
    let nodes = start_cluster(3).await?;
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "AGE".into(),
            subjects: vec!["age".into()],
            num_replicas: 3,
            max_age: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await?;
    create_stream(
        &nodes[1].js,
        stream::Config {
            name: "KEEP".into(),
            subjects: vec!["keep".into()],
            ..Default::default()
        },
    )
    .await?;
    create_stream(
        &nodes[2].js,
        stream::Config {
            name: "KEEP3".into(),
            subjects: vec!["keep3".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await?;
    nodes[2]
        .js
        .create_consumer_on_stream(
            jetstream::consumer::pull::Config {
                durable_name: Some("reader".into()),
                ..Default::default()
            },
            "KEEP",
        )
        .await?;
    publish_acked(&nodes[1].js, "keep", "kept".into()).await?;
    publish_acked(&nodes[1].js, "keep3", "kept".into()).await?;
    let one = stream_info(&nodes[0].js, "KEEP").await?.state.bytes;
    let three = stream_info(&nodes[0].js, "KEEP3").await?.state.bytes;
    for node in &nodes {
        let answer = node.client.request("$JS.API.INFO", "".into()).await?;
        let info: serde_json::Value = serde_json::from_slice(&answer.payload)?;
        assert_eq!(info["streams"], 3, "{info}");
        assert_eq!(info["consumers"], 1, "{info}");
        // An R1 and an R3 stream of one message each: four stored copies.
        assert_eq!(info["storage"], one + 3 * three, "{info}");
    }

    publish_acked(&nodes[1].js, "age", "old".into()).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let state = loop {
        let state = stream_info(&nodes[2].js, "AGE").await?.state;
        if state.messages == 0 || Instant::now() >= deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (state.messages, state.first_sequence, state.last_sequence),
        (0, 2, 1)
    );
    crate::js_cluster::shutdown(nodes).await;
    Ok(())
}

/// A node with no route to any replica of a stream stops taking its subjects: a publish there
/// is answered "no responders" at once (as nats-server, which has no interest to route it by),
/// not captured and dropped for the client to time out (as a node that just restarted did
/// before its route sessions were up).
#[tokio::test]
async fn a_publish_no_replica_can_be_reached_from_is_answered_no_responders() -> anyhow::Result<()>
{
    let mut nodes = start_cluster(3).await?;
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "FAR".into(),
            subjects: vec!["far".into()],
            ..Default::default()
        },
    )
    .await?;
    publish_acked(&nodes[0].js, "far", "first".into()).await?;
    let leader = crate::js_cluster::stream_leader(&nodes[0].js, "FAR")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no leader"))?;
    let at = nodes
        .iter()
        .position(|n| n.server.server.server_name() == leader)
        .ok_or_else(|| anyhow::anyhow!("leader {leader} is not a node"))?;
    let replica = nodes.remove(at);
    crate::js_cluster::shutdown(vec![replica]).await;

    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let answer = tokio::time::timeout(
            Duration::from_secs(1),
            nodes[0].client.request("far", "lost?".into()),
        )
        .await;
        match answer {
            Ok(Err(err)) if err.kind() == async_nats::RequestErrorKind::NoResponders => break,
            other => anyhow::ensure!(
                Instant::now() < deadline,
                "never answered no responders: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    crate::js_cluster::shutdown(nodes).await;
    Ok(())
}

/// A node cut off from the rest (here: the only one left) has no meta leader: a stream create
/// is answered at once with nats-server's 10008, and the stream is not made.
#[tokio::test]
async fn a_node_without_a_meta_leader_answers_stream_create_with_unavailable() -> anyhow::Result<()>
{
    let mut nodes = start_cluster(3).await?;
    let leader = crate::js_cluster::wait_for_meta_leader(&nodes, None).await?;
    // Keep a follower of the meta group: a leader that lost its quorum may still think it leads.
    let survivor = nodes
        .iter()
        .position(|n| n.server.server.server_name() != leader)
        .ok_or_else(|| anyhow::anyhow!("no meta follower"))?;
    let node = nodes.remove(survivor);
    crate::js_cluster::shutdown(nodes).await;
    let request = serde_json::json!({"name": "LONE", "subjects": ["lone"], "num_replicas": 3});
    let deadline = Instant::now() + CLUSTER_WAIT;
    let answer = loop {
        // Once the old leader's term has run out here, the answer is at once.
        let started = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            node.client.request(
                "$JS.API.STREAM.CREATE.LONE",
                serde_json::to_vec(&request)?.into(),
            ),
        )
        .await??;
        let answer: serde_json::Value = serde_json::from_slice(&answer.payload)?;
        if answer["error"]["err_code"] == 10008 && started.elapsed() < Duration::from_secs(1) {
            break answer;
        }
        assert!(
            answer["error"].is_object(),
            "created without a quorum: {answer}"
        );
        if Instant::now() >= deadline {
            anyhow::bail!("never answered 10008 at once: {answer}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        answer["error"]["description"], "JetStream system temporarily unavailable",
        "{answer}"
    );
    assert_eq!(answer["error"]["code"], 503, "{answer}");
    crate::js_cluster::shutdown(vec![node]).await;
    Ok(())
}

/// A stream info that waits for a quorum which is gone (its leader cannot confirm that it still
/// leads) does not hold up the node's other API requests: the account info asked after it is
/// answered first.
#[tokio::test]
async fn an_api_request_waiting_for_a_lost_quorum_does_not_hold_up_the_others() -> anyhow::Result<()>
{
    use futures::StreamExt;

    let mut nodes = start_cluster(3).await?;
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "STUCK".into(),
            subjects: vec!["stuck".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await?;
    let leader = leader_index(&nodes, "STUCK").await?;
    let node = nodes.remove(leader);
    crate::js_cluster::shutdown(nodes).await;
    // Past the leader's read lease: a stream info now has to reach a quorum to be answered.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let inbox = node.client.new_inbox();
    let mut answers = node.client.subscribe(format!("{inbox}.*")).await?;
    node.client
        .publish_with_reply(
            "$JS.API.STREAM.INFO.STUCK",
            format!("{inbox}.stream_info"),
            "".into(),
        )
        .await?;
    node.client
        .publish_with_reply("$JS.API.INFO", format!("{inbox}.account_info"), "".into())
        .await?;
    let mut order = Vec::new();
    while order.len() < 2 {
        let answer = tokio::time::timeout(Duration::from_secs(10), answers.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
        order.push(answer.subject.to_string());
    }
    assert_eq!(
        order,
        [
            format!("{inbox}.account_info"),
            format!("{inbox}.stream_info")
        ]
    );
    crate::js_cluster::shutdown(vec![node]).await;
    Ok(())
}

/// An R3 stream's republished copies come from its leader only: a subscriber on any node gets
/// each stored message once, in order, with the replicated sequence.
#[tokio::test]
async fn an_r3_stream_republishes_each_stored_message_once() -> anyhow::Result<()> {
    use futures::StreamExt;

    let nodes = start_cluster(3).await?;
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "EVENTS".into(),
            subjects: vec!["events.>".into()],
            num_replicas: 3,
            republish: Some(stream::Republish {
                source: ">".into(),
                destination: "feed.>".into(),
                headers_only: false,
            }),
            ..Default::default()
        },
    )
    .await?;
    let leader = leader_index(&nodes, "EVENTS").await?;
    let watcher = &nodes[(leader + 1) % nodes.len()];
    let mut feed = watcher.client.subscribe("feed.>").await?;
    watcher.client.flush().await?;
    // The subscription's interest reaches the leader over its route: wait until a core message
    // published there arrives.
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        nodes[leader]
            .client
            .publish("feed.probe", "".into())
            .await?;
        nodes[leader].client.flush().await?;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), feed.next()).await {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "no interest across the route");
    }
    let publisher = &nodes[(leader + 2) % nodes.len()];
    for i in 1..=20u64 {
        publish_acked(&publisher.js, &format!("events.{i}"), format!("e{i}")).await?;
    }
    // (A probe that came late is not a copy.)
    let mut copies = feed.filter(|m| std::future::ready(m.subject.as_str() != "feed.probe"));
    for i in 1..=20u64 {
        let copy = tokio::time::timeout(Duration::from_secs(10), copies.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
        assert_eq!(copy.subject.as_str(), format!("feed.events.{i}"));
        let sequence = copy
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Sequence"))
            .map(|v| v.as_str().to_owned());
        assert_eq!(sequence, Some(i.to_string()));
    }
    // No second copy from a follower.
    let extra = tokio::time::timeout(Duration::from_millis(500), copies.next()).await;
    assert!(extra.is_err(), "an extra copy: {extra:?}");
    crate::js_cluster::shutdown(nodes).await;
    Ok(())
}

#[tokio::test]
async fn acknowledged_messages_survive_the_loss_of_the_stream_leader() -> anyhow::Result<()> {
    let mut nodes = start_cluster(3).await?;
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "EVENTS".into(),
            subjects: vec!["events".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await?;
    let mut acked = Vec::new();
    for i in 0..100 {
        let payload = format!("e{i}");
        publish_acked(&nodes[0].js, "events", payload.clone()).await?;
        acked.push(payload);
    }
    let info = stream_info(&nodes[0].js, "EVENTS").await?;
    let leader = info
        .cluster
        .and_then(|c| c.leader)
        .ok_or_else(|| anyhow::anyhow!("no leader"))?;
    let index = crate::js_cluster::node_named(&nodes, &leader)?;
    let gone = nodes.remove(index);
    gone.server.shutdown().await;

    // The survivors elect a new leader and go on; nothing acknowledged is missing.
    for i in 100..150 {
        let payload = format!("e{i}");
        publish_acked(&nodes[0].js, "events", payload.clone()).await?;
        acked.push(payload);
    }
    // The new leader sees that the old one is gone: not current.
    let replicas = wait_for_replicas(&nodes[0].js, "EVENTS", |r| {
        r.iter().any(|p| p.name == leader && !p.current)
    })
    .await?;
    assert!(
        replicas.iter().any(|p| p.name != leader && p.current),
        "{replicas:?}"
    );
    for node in &nodes {
        let info = stream_info(&node.js, "EVENTS").await?;
        assert_eq!(info.state.messages, acked.len() as u64);
        assert_ne!(info.cluster.and_then(|c| c.leader), Some(leader.clone()));
        assert_eq!(
            read_all(&node.js, "EVENTS", acked.len() as u64).await?,
            acked
        );
    }
    for node in nodes {
        node.server.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn a_replicated_stream_survives_restarting_every_node() -> anyhow::Result<()> {
    let nodes = start_cluster(3).await?;
    create_stream(
        &nodes[1].js,
        stream::Config {
            name: "KEEP".into(),
            subjects: vec!["keep.*".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await?;
    let mut expected = Vec::new();
    for i in 1..=40u64 {
        let payload = format!("k{i}");
        assert_eq!(
            publish_acked(&nodes[i as usize % 3].js, "keep.a", payload.clone()).await?,
            i
        );
        expected.push(payload);
    }

    // Stop every node, then start each again on its store and cluster port (the meta group
    // and the stream group remember their members by address).
    let mut stopped = Vec::new();
    for node in nodes {
        let cluster_port = node
            .server
            .server
            .cluster_addr()
            .ok_or_else(|| anyhow::anyhow!("no cluster address"))?
            .port();
        drop(node.client);
        node.server.shutdown().await;
        stopped.push((cluster_port, node._dir));
    }
    let seed = format!("127.0.0.1:{}", stopped[0].0);
    let mut nodes = Vec::new();
    for (i, (port, dir)) in stopped.into_iter().enumerate() {
        let routes = if i == 0 {
            Vec::new()
        } else {
            vec![seed.clone()]
        };
        let mut config = node_config(&routes, dir.path());
        if let Some(cluster) = config.cluster.as_mut() {
            cluster.port = port;
        }
        let server = TestServer::start_with(config).await?;
        let client = async_nats::connect(server.url()).await?;
        let js = jetstream::new(client.clone());
        nodes.push(JsNode {
            server,
            client,
            js,
            _dir: dir,
        });
    }

    // Everything acknowledged before is there, and the sequence goes on where it stopped.
    for i in 41..=50u64 {
        let payload = format!("k{i}");
        assert_eq!(
            publish_acked(&nodes[0].js, "keep.b", payload.clone()).await?,
            i
        );
        expected.push(payload);
    }
    for node in &nodes {
        assert_eq!(read_all(&node.js, "KEEP", 50).await?, expected);
    }
    for node in nodes {
        node.server.shutdown().await;
    }
    Ok(())
}

/// A node stopped by [`stop_node`]: its store and ports, to start it again.
struct StoppedNode {
    client_port: u16,
    cluster_port: u16,
    dir: tempfile::TempDir,
}

async fn stop_node(node: JsNode) -> anyhow::Result<StoppedNode> {
    let client_port = node.server.addr().port();
    let cluster_port = node
        .server
        .server
        .cluster_addr()
        .ok_or_else(|| anyhow::anyhow!("no cluster address"))?
        .port();
    drop(node.client);
    node.server.shutdown().await;
    Ok(StoppedNode {
        client_port,
        cluster_port,
        dir: node._dir,
    })
}

/// Starts a stopped node again on its store, client port and cluster port, joining through
/// `seed` (another node's cluster address); `tune` as the cluster was started with.
async fn start_again(stopped: StoppedNode, seed: &str, tune: Tune) -> anyhow::Result<JsNode> {
    let mut config = node_config(&[seed.to_string()], stopped.dir.path());
    config.port = stopped.client_port;
    if let Some(cluster) = config.cluster.as_mut() {
        cluster.port = stopped.cluster_port;
    }
    if let Some(js) = config.jetstream.as_mut() {
        tune(js);
    }
    let server = TestServer::start_with(config).await?;
    let client = async_nats::connect(server.url()).await?;
    let js = jetstream::new(client.clone());
    Ok(JsNode {
        server,
        client,
        js,
        _dir: stopped.dir,
    })
}

/// The index of the node that leads `stream` (as `nodes[0]` reports it).
async fn leader_index(nodes: &[JsNode], stream: &str) -> anyhow::Result<usize> {
    let leader = stream_info(&nodes[0].js, stream)
        .await?
        .cluster
        .and_then(|c| c.leader)
        .ok_or_else(|| anyhow::anyhow!("stream {stream} has no leader"))?;
    crate::js_cluster::node_named(nodes, &leader)
}

/// Waits until every node's own copy holds `messages` messages (`/jsz`).
async fn wait_for_copies(nodes: &[JsNode], messages: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let mut held = Vec::new();
        for node in nodes {
            held.push(node.server.monitor_json("/jsz").await?["messages"].as_u64());
        }
        if held.iter().all(|m| *m == Some(messages)) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "copies hold {held:?}, not {messages}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_follower_that_missed_many_entries_catches_up_from_a_snapshot() -> anyhow::Result<()> {
    catches_up_from_a_snapshot(stream::StorageType::File).await
}

/// A memory stream's snapshots are whole (its messages are nowhere else): the leader sends its
/// stored one, and a restarted replica rebuilds the stream from its own before catching up.
#[tokio::test]
async fn a_memory_stream_follower_catches_up_from_a_snapshot() -> anyhow::Result<()> {
    catches_up_from_a_snapshot(stream::StorageType::Memory).await
}

async fn catches_up_from_a_snapshot(storage: stream::StorageType) -> anyhow::Result<()> {
    // Snapshot and compact the stream's log every 20 entries, keeping 20.
    let tune: Tune = |js| js.raft_snapshot_every = Some(20);
    let mut nodes = start_cluster_with(3, tune).await?;
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "SNAP".into(),
            subjects: vec!["snap".into()],
            num_replicas: 3,
            storage,
            ..Default::default()
        },
    )
    .await?;
    // 10 KB each: the 210 messages make a snapshot of about 2 MB, which the leader reads and
    // sends in several pieces.
    let body = |i: u32| format!("s{i}:{}", ".".repeat(10_000));
    let mut expected = Vec::new();
    for i in 1..=10 {
        publish_acked(&nodes[0].js, "snap", body(i)).await?;
        expected.push(body(i));
    }
    let leader = leader_index(&nodes, "SNAP").await?;
    let follower = (leader + 1) % 3;
    let stopped = stop_node(nodes.remove(follower)).await?;
    // 200 entries (one publish each) while it is away: its log position is long compacted away
    // on the others, so only a snapshot can bring it back.
    for i in 11..=210 {
        publish_acked(&nodes[0].js, "snap", body(i)).await?;
        expected.push(body(i));
    }
    let seed = nodes[0]
        .server
        .cluster_addr()
        .ok_or_else(|| anyhow::anyhow!("no cluster address"))?;
    nodes.insert(follower, start_again(stopped, &seed, tune).await?);
    wait_for_copies(&nodes, 210).await?;
    // Restarted once more, it finds the installed stream whole in its own store (a file
    // stream's follower writes the received messages under a new store id, which the install
    // makes the stream's).
    let seed = nodes[(follower + 1) % 3]
        .server
        .cluster_addr()
        .ok_or_else(|| anyhow::anyhow!("no cluster address"))?;
    let stopped = stop_node(nodes.remove(follower)).await?;
    nodes.insert(follower, start_again(stopped, &seed, tune).await?);
    wait_for_copies(&nodes, 210).await?;
    // It serves the whole stream as its leader: the third node stops, so the leader's
    // stepdown can only hand the group to it.
    let third = 3 - leader - follower;
    let third_stopped = stop_node(nodes.remove(third)).await?;
    let (leader, follower) = (
        leader - usize::from(leader > third),
        follower - usize::from(follower > third),
    );
    let deadline = Instant::now() + CLUSTER_WAIT;
    while leader_index(&nodes, "SNAP").await.ok() != Some(follower) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "leadership never reached the follower"
        );
        let subject = "$JS.API.STREAM.LEADER.STEPDOWN.SNAP".to_string();
        let _ = nodes[leader].client.request(subject, "".into()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(read_all(&nodes[follower].js, "SNAP", 210).await?, expected);
    publish_acked(&nodes[follower].js, "snap", "s211".to_string()).await?;
    // Back up, the third node holds every message it had (a file stream's are in its store, a
    // memory stream's in its stored snapshot and log), and it gets the one it missed.
    let seed = nodes[follower]
        .server
        .cluster_addr()
        .ok_or_else(|| anyhow::anyhow!("no cluster address"))?;
    nodes.push(start_again(third_stopped, &seed, tune).await?);
    wait_for_copies(&nodes, 211).await?;
    crate::js_cluster::shutdown(nodes).await;
    Ok(())
}

#[tokio::test]
async fn a_rolling_restart_under_publish_load_loses_nothing() -> anyhow::Result<()> {
    let mut nodes = start_cluster(3).await?;
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "ROLL".into(),
            subjects: vec!["roll".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await?;
    let urls: Vec<String> = nodes.iter().map(|n| n.server.url()).collect();
    // One publisher for the whole restart, with every node's URL: it fails over by itself.
    let client = async_nats::ConnectOptions::new()
        .retain_servers_order()
        .connect(urls.as_slice())
        .await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let publisher = tokio::spawn(async move {
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(2))
            .build(client);
        let mut acked = Vec::new();
        let mut failed = 0u64;
        let mut n = 0u64;
        while !*stop_rx.borrow() && n < 100_000 {
            n += 1;
            let payload = format!("r{n}");
            let attempt = async {
                let ack = js.publish("roll", payload.clone().into()).await?;
                anyhow::Ok(ack.await?)
            };
            match tokio::time::timeout(Duration::from_secs(3), attempt).await {
                Ok(Ok(ack)) => acked.push((ack.sequence, payload)),
                _ => {
                    failed += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        (acked, failed)
    });

    // Every node in turn: stopped, started again on its store, back in the meta group before
    // the next one goes (what a StatefulSet's rolling update does, waiting for readiness).
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let seed = nodes[(i + 1) % 3]
            .server
            .cluster_addr()
            .ok_or_else(|| anyhow::anyhow!("no cluster address"))?;
        let stopped = stop_node(nodes.remove(i)).await?;
        nodes.insert(i, start_again(stopped, &seed, |_| {}).await?);
        crate::js_cluster::wait_for_meta_leader(&nodes, None).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);
    let (acked, failed) = publisher.await?;
    assert!(acked.len() > 20, "{} acked, {failed} failed", acked.len());

    // Every acknowledged publish is in the stream once, at its sequence (read through each node).
    let last = stream_info(&nodes[0].js, "ROLL").await?.state.last_sequence;
    for node in &nodes {
        let stored = read_all(&node.js, "ROLL", last).await?;
        for (seq, payload) in &acked {
            let at = usize::try_from(*seq - 1)?;
            assert_eq!(stored.get(at), Some(payload), "sequence {seq}");
        }
        let mut unique = stored.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), stored.len(), "a payload is stored twice");
    }
    // And every node's own copy has caught up to all of it.
    wait_for_copies(&nodes, last).await?;
    crate::js_cluster::shutdown(nodes).await;
    Ok(())
}
