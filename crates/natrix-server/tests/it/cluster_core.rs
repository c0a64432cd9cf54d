//! Core messaging across a cluster of in-process nodes over real loopback sockets (gRPC route
//! mesh), through async-nats: pub/sub with plain and wildcard subjects, queue groups spanning
//! nodes, request/reply and no-responders, interest removal, nodes joining later, discovery of
//! client URLs and failover, and refusal of another cluster's nodes.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use natrix_testkit::{TestCluster, TestServer, cluster_config, wait_until};

/// Upper bound for any single await in these tests.
const WAIT: Duration = Duration::from_secs(10);

async fn within<F: std::future::Future>(what: &str, f: F) -> anyhow::Result<F::Output> {
    tokio::time::timeout(WAIT, f)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {WAIT:?} waiting for {what}"))
}

async fn connect(node: &TestServer) -> anyhow::Result<async_nats::Client> {
    Ok(within("connect", async_nats::connect(node.url())).await??)
}

async fn next_payload(sub: &mut async_nats::Subscriber) -> anyhow::Result<String> {
    let msg = within("a message", sub.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
    Ok(String::from_utf8_lossy(&msg.payload).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_on_one_node_reaches_subscribers_on_the_others() -> anyhow::Result<()> {
    let cluster = TestCluster::start("core", 3).await?;
    let c1 = connect(&cluster.nodes[0]).await?;
    let c2 = connect(&cluster.nodes[1]).await?;
    let c3 = connect(&cluster.nodes[2]).await?;
    let mut plain = c2.subscribe("orders.new").await?;
    let mut star = c3.subscribe("orders.*").await?;
    let mut tail = c3.subscribe("orders.>").await?;
    c2.flush().await?;
    c3.flush().await?;
    cluster.wait_for_interest(1, "orders.new").await?;
    cluster.wait_for_interest(2, "orders.*").await?;
    cluster.wait_for_interest(2, "orders.>").await?;

    for i in 0..10 {
        c1.publish("orders.new", format!("m{i}").into()).await?;
    }
    c1.flush().await?;
    for i in 0..10 {
        assert_eq!(next_payload(&mut plain).await?, format!("m{i}"));
        assert_eq!(next_payload(&mut star).await?, format!("m{i}"));
        assert_eq!(next_payload(&mut tail).await?, format!("m{i}"));
    }
    // Two matching wildcards on one node: each subscription once, the node got it once.
    let routes = cluster.nodes[0].monitor_json("/routez").await?;
    let out: u64 = routes["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["out_msgs"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(out, 20, "one copy per interested peer: {routes}");
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_group_spanning_three_nodes_gets_each_message_exactly_once() -> anyhow::Result<()> {
    let cluster = TestCluster::start("queues", 3).await?;
    let clients = [
        connect(&cluster.nodes[0]).await?,
        connect(&cluster.nodes[1]).await?,
        connect(&cluster.nodes[2]).await?,
    ];
    let mut members = Vec::new();
    for client in &clients {
        members.push(client.queue_subscribe("work", "workers".into()).await?);
        client.flush().await?;
    }
    for i in 0..3 {
        cluster.wait_for_interest(i, "work workers").await?;
    }
    // Published on every node in turn: each message goes to exactly one member.
    let n = 60;
    for i in 0..n {
        clients[i % 3].publish("work", i.to_string().into()).await?;
    }
    for client in &clients {
        client.flush().await?;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.values().sum::<usize>() < n && tokio::time::Instant::now() < deadline {
        for member in &mut members {
            if let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_millis(20), member.next()).await
            {
                *seen
                    .entry(String::from_utf8_lossy(&msg.payload).into_owned())
                    .or_default() += 1;
            }
        }
    }
    assert_eq!(seen.len(), n, "every message delivered");
    assert!(seen.values().all(|c| *c == 1), "no message twice: {seen:?}");
    // Nothing arrives late as a duplicate.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for member in &mut members {
        assert!(
            tokio::time::timeout(Duration::from_millis(10), member.next())
                .await
                .is_err()
        );
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_group_on_other_nodes_only_is_served_by_one_of_them() -> anyhow::Result<()> {
    let cluster = TestCluster::start("remote-queues", 3).await?;
    let publisher = connect(&cluster.nodes[0]).await?;
    let c2 = connect(&cluster.nodes[1]).await?;
    let c3 = connect(&cluster.nodes[2]).await?;
    let mut m2 = c2.queue_subscribe("jobs", "g".into()).await?;
    let mut m3 = c3.queue_subscribe("jobs", "g".into()).await?;
    // A plain subscriber next to a queue member gets every message, and the member no extra.
    let mut watcher = c2.subscribe("jobs").await?;
    c2.flush().await?;
    c3.flush().await?;
    cluster.wait_for_interest(1, "jobs g").await?;
    cluster.wait_for_interest(2, "jobs g").await?;
    cluster.wait_for_interest(1, "jobs").await?;
    let n = 40;
    for i in 0..n {
        publisher.publish("jobs", i.to_string().into()).await?;
    }
    publisher.flush().await?;
    for i in 0..n {
        assert_eq!(next_payload(&mut watcher).await?, i.to_string());
    }
    let mut total = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while total < n && tokio::time::Instant::now() < deadline {
        for member in [&mut m2, &mut m3] {
            if let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(20), member.next()).await
            {
                total += 1;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for member in [&mut m2, &mut m3] {
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(10), member.next()).await
        {
            total += 1;
        }
    }
    assert_eq!(total, n);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_answered_by_a_responder_on_another_node() -> anyhow::Result<()> {
    let cluster = TestCluster::start("reqrep", 3).await?;
    let requester = connect(&cluster.nodes[0]).await?;
    let responder = connect(&cluster.nodes[2]).await?;
    let mut service = responder.subscribe("svc.echo").await?;
    responder.flush().await?;
    cluster.wait_for_interest(2, "svc.echo").await?;
    let handle = tokio::spawn({
        let responder = responder.clone();
        async move {
            while let Some(msg) = service.next().await {
                if let Some(reply) = msg.reply {
                    let mut body = b"echo:".to_vec();
                    body.extend_from_slice(&msg.payload);
                    let _ = responder.publish(reply, body.into()).await;
                }
            }
        }
    });
    for i in 0..5 {
        let answer = within(
            "the reply",
            requester.request("svc.echo", format!("r{i}").into()),
        )
        .await??;
        assert_eq!(&answer.payload[..], format!("echo:r{i}").as_bytes());
    }
    handle.abort();
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_nobody_in_the_cluster_serves_gets_no_responders_quickly() -> anyhow::Result<()> {
    let cluster = TestCluster::start("noresp", 3).await?;
    let requester = connect(&cluster.nodes[0]).await?;
    let started = std::time::Instant::now();
    let err = within(
        "no responders",
        requester.request("nobody.home", "x".into()),
    )
    .await?
    .expect_err("nobody subscribes anywhere");
    assert_eq!(
        err.kind(),
        async_nats::RequestErrorKind::NoResponders,
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // Subscribed only on another node: answered, not refused.
    let responder = connect(&cluster.nodes[1]).await?;
    let mut service = responder.subscribe("only.there").await?;
    responder.flush().await?;
    cluster.wait_for_interest(1, "only.there").await?;
    let handle = tokio::spawn({
        let responder = responder.clone();
        async move {
            if let Some(msg) = service.next().await
                && let Some(reply) = msg.reply
            {
                let _ = responder.publish(reply, "here".into()).await;
                let _ = responder.flush().await;
            }
        }
    });
    let answer = within("the reply", requester.request("only.there", "x".into())).await??;
    assert_eq!(&answer.payload[..], b"here");
    handle.abort();
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribing_on_a_remote_node_stops_forwarding() -> anyhow::Result<()> {
    let cluster = TestCluster::start("unsub", 2).await?;
    let publisher = connect(&cluster.nodes[0]).await?;
    let subscriber = connect(&cluster.nodes[1]).await?;
    let mut sub = subscriber.subscribe("temp.>").await?;
    subscriber.flush().await?;
    cluster.wait_for_interest(1, "temp.>").await?;
    publisher.publish("temp.a", "1".into()).await?;
    publisher.flush().await?;
    assert_eq!(next_payload(&mut sub).await?, "1");
    sub.unsubscribe().await?;
    subscriber.flush().await?;
    cluster.wait_for_no_interest(1, "temp.>").await?;
    let before = out_msgs(&cluster.nodes[0]).await?;
    for _ in 0..5 {
        publisher.publish("temp.a", "2".into()).await?;
    }
    publisher.flush().await?;
    assert_eq!(
        out_msgs(&cluster.nodes[0]).await?,
        before,
        "nothing forwarded"
    );
    cluster.shutdown().await;
    Ok(())
}

async fn out_msgs(node: &TestServer) -> anyhow::Result<u64> {
    let routes = node.monitor_json("/routez").await?;
    Ok(routes["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["out_msgs"].as_u64().unwrap_or(0))
        .sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_later_joins_the_mesh_and_learns_existing_interest() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start("late", 2).await?;
    let early = connect(&cluster.nodes[1]).await?;
    let mut sub = early.subscribe("late.news").await?;
    early.flush().await?;
    cluster.wait_for_interest(1, "late.news").await?;
    // The third node lists only the seed, yet connects to node 2 through gossip and learns
    // node 2's interest from its first frames.
    cluster.add_node().await?;
    cluster.wait_for_full_mesh().await?;
    cluster.wait_for_interest(1, "late.news").await?;
    let late = connect(&cluster.nodes[2]).await?;
    late.publish("late.news", "hello".into()).await?;
    late.flush().await?;
    assert_eq!(next_payload(&mut sub).await?, "hello");

    // Restarted (a new node in its place): joins again.
    let node = cluster.nodes.remove(2);
    drop(late);
    node.shutdown().await;
    wait_until("the stopped node to leave", || {
        cluster
            .nodes
            .iter()
            .all(|n| n.server.connected_routes().len() == 1)
    })
    .await?;
    cluster.add_node().await?;
    cluster.wait_for_full_mesh().await?;
    cluster.wait_for_interest(1, "late.news").await?;
    let again = connect(&cluster.nodes[2]).await?;
    again.publish("late.news", "again".into()).await?;
    again.flush().await?;
    assert_eq!(next_payload(&mut sub).await?, "again");
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_listing_every_route_including_their_own_form_one_session_per_pair()
-> anyhow::Result<()> {
    // Reserve three cluster ports, then start every node with all three routes (its own too).
    let mut ports = Vec::new();
    for _ in 0..3 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        ports.push(l.local_addr()?.port());
    }
    let routes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut nodes = Vec::new();
    for port in &ports {
        let mut config = cluster_config("all", &routes);
        if let Some(c) = config.cluster.as_mut() {
            c.port = *port;
        }
        nodes.push(TestServer::start_with(config).await?);
    }
    wait_until("a full mesh", || {
        nodes.iter().all(|n| n.server.connected_routes().len() == 2)
    })
    .await?;
    // Stable: still one session per peer after the duplicate dials settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for node in &nodes {
        let routez = node.monitor_json("/routez").await?;
        assert_eq!(routez["num_routes"], 2, "{routez}");
    }
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_learn_every_node_and_fail_over_when_theirs_shuts_down() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start("failover", 3).await?;
    // INFO lists the client URLs of all three nodes.
    let mut raw = cluster.nodes[0].raw().await?;
    raw.send(b"CONNECT {\"protocol\":1,\"verbose\":false}\r\nPING\r\n")
        .await?;
    raw.expect_line("PONG").await?;
    drop(raw);
    let info = info_of(&cluster.nodes[0]).await?;
    let urls = info["connect_urls"].as_array().cloned().unwrap_or_default();
    for node in &cluster.nodes {
        let url = node.addr().to_string();
        assert!(urls.iter().any(|u| u == &url), "{url} missing in {info}");
    }
    assert_eq!(info["cluster"], "failover");

    // A client that knows only node 1 moves to another node when node 1 goes away.
    let (tx, mut reconnected) = tokio::sync::mpsc::channel(4);
    let client = within(
        "connect",
        async_nats::ConnectOptions::new()
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    if matches!(event, async_nats::Event::Connected) {
                        let _ = tx.send(()).await;
                    }
                }
            })
            .connect(cluster.nodes[0].url()),
    )
    .await??;
    let mut sub = client.subscribe("after.failover").await?;
    client.flush().await?;
    let node1 = cluster.nodes.remove(0);
    node1.shutdown().await;
    within("reconnection", reconnected.recv()).await?;
    let other = connect(&cluster.nodes[0]).await?;
    // The resubscription reaches whichever node the client chose, then the other node.
    let mut delivered = false;
    for _ in 0..100 {
        other.publish("after.failover", "moved".into()).await?;
        other.flush().await?;
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
            assert_eq!(&msg.payload[..], b"moved");
            delivered = true;
            break;
        }
    }
    assert!(
        delivered,
        "the client got messages again after failing over"
    );
    cluster.shutdown().await;
    Ok(())
}

/// The INFO a fresh raw connection to `node` receives, as JSON.
async fn info_of(node: &TestServer) -> anyhow::Result<serde_json::Value> {
    let stream = tokio::net::TcpStream::connect(node.addr()).await?;
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    within(
        "INFO",
        tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut line),
    )
    .await??;
    let json = line
        .strip_prefix("INFO ")
        .ok_or_else(|| anyhow::anyhow!("not an INFO: {line}"))?;
    Ok(serde_json::from_str(json.trim())?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_clients_get_an_async_info_when_a_node_joins() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start("async-info", 1).await?;
    let mut raw = cluster.nodes[0].raw().await?;
    raw.send(b"CONNECT {\"protocol\":1,\"verbose\":false}\r\nPING\r\n")
        .await?;
    raw.expect_line("PONG").await?;
    cluster.add_node().await?;
    cluster.wait_for_full_mesh().await?;
    let mut line = raw.line().await?;
    for _ in 0..5 {
        if line.starts_with("INFO ") {
            break;
        }
        line = raw.line().await?;
    }
    assert_lists_node(&line, &cluster.nodes[1])?;
    cluster.shutdown().await;
    Ok(())
}

/// nats.go and nats.py read the line after their CONNECT+PING as the PONG: an INFO there fails
/// or hangs them. As nats-server, a cluster change before the first PONG is told after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_change_before_the_first_pong_is_sent_after_it() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start("first-pong", 1).await?;
    let mut raw = cluster.nodes[0].raw().await?;
    raw.send(b"CONNECT {\"protocol\":1,\"verbose\":false}\r\n")
        .await?;
    cluster.add_node().await?;
    cluster.wait_for_full_mesh().await?;
    raw.send(b"PING\r\n").await?;
    raw.expect_line("PONG").await?;
    assert_lists_node(&raw.line().await?, &cluster.nodes[1])?;
    cluster.shutdown().await;
    Ok(())
}

/// Checks that `line` is an INFO whose `connect_urls` has `node`'s client URL.
fn assert_lists_node(line: &str, node: &TestServer) -> anyhow::Result<()> {
    let Some(json) = line.strip_prefix("INFO ") else {
        anyhow::bail!("expected an INFO, got {line}");
    };
    let info: serde_json::Value = serde_json::from_str(json.trim())?;
    let url = node.addr().to_string();
    assert!(
        info["connect_urls"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u == &url)),
        "{url} missing in {info}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_different_clusters_do_not_connect() -> anyhow::Result<()> {
    let a = TestServer::start_with(cluster_config("alpha", &[])).await?;
    let seed = a
        .cluster_addr()
        .ok_or_else(|| anyhow::anyhow!("no cluster endpoint"))?;
    let b = TestServer::start_with(cluster_config("beta", &[seed])).await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(a.server.connected_routes().is_empty());
    assert!(b.server.connected_routes().is_empty());
    let routez = a.monitor_json("/routez").await?;
    assert_eq!(routez["num_routes"], 0);
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routez_and_varz_describe_the_routes() -> anyhow::Result<()> {
    let cluster = TestCluster::start("monitor", 2).await?;
    let c2 = connect(&cluster.nodes[1]).await?;
    let _sub = c2.subscribe("seen.by.peer").await?;
    c2.flush().await?;
    cluster.wait_for_interest(1, "seen.by.peer").await?;
    let routez = cluster.nodes[0].monitor_json("/routez?subs=1").await?;
    assert_eq!(routez["num_routes"], 1);
    let route = &routez["routes"][0];
    assert_eq!(route["remote_id"], cluster.nodes[1].server.server_id());
    assert_eq!(route["remote_name"], cluster.nodes[1].server.server_name());
    assert_eq!(route["did_solicit"], false);
    assert_eq!(route["ip"], "127.0.0.1");
    assert_eq!(route["subscriptions"], 1);
    assert_eq!(route["subscriptions_list"][0], "seen.by.peer");
    for key in [
        "rid",
        "port",
        "in_msgs",
        "out_msgs",
        "in_bytes",
        "out_bytes",
        "pending_size",
    ] {
        assert!(route[key].is_u64(), "{key} in {route}");
    }
    let varz = cluster.nodes[0].monitor_json("/varz").await?;
    assert_eq!(varz["cluster"]["name"], "monitor");
    let port = cluster.nodes[0]
        .server
        .cluster_addr()
        .map(|a| a.port())
        .unwrap_or_default();
    assert_eq!(varz["cluster"]["cluster_port"], port);
    assert_eq!(varz["routes"], 1);
    cluster.shutdown().await;
    Ok(())
}
