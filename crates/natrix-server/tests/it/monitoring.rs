//! The HTTP monitoring endpoint as an operator sees it: real async-nats clients do real work,
//! and /varz, /connz, /subsz, /metrics and the rest must report exactly that, with
//! nats-server's field names, and never a credential.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use async_nats::ConnectOptions;
use futures::StreamExt;
use natrix_server::{AuthConfig, ServerConfig};
use natrix_testkit::{TestServer, test_config};
use serde_json::Value;

/// How long counters may take to appear (they are published once per read batch).
const SETTLE: Duration = Duration::from_secs(5);

async fn connect(server: &TestServer, name: &str) -> anyhow::Result<async_nats::Client> {
    Ok(ConnectOptions::new()
        .name(name)
        .connect(server.url())
        .await?)
}

/// Polls a JSON endpoint until `ready` holds, returning that answer (or the last one, failing).
async fn json_when(
    server: &TestServer,
    path: &str,
    ready: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    server.monitor_json_when(path, SETTLE, ready).await
}

async fn receive(sub: &mut async_nats::Subscriber, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        tokio::time::timeout(SETTLE, sub.next())
            .await
            .with_context(|| format!("message {i} of {n} not delivered"))?
            .context("subscription ended")?;
    }
    Ok(())
}

fn is_rfc3339_utc(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && text.ends_with('Z')
        && text[..4].bytes().all(|c| c.is_ascii_digit())
}

fn connection<'a>(connz: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    connz["connections"]
        .as_array()
        .context("connections is an array")?
        .iter()
        .find(|c| c["name"] == name)
        .with_context(|| format!("no connection named {name} in {connz:#}"))
}

#[tokio::test]
async fn varz_reports_identity_limits_and_the_traffic_clients_caused() -> anyhow::Result<()> {
    let server = TestServer::start_with_monitoring().await?;
    let publisher = connect(&server, "publisher").await?;
    let subscriber = connect(&server, "subscriber").await?;
    let mut a = subscriber.subscribe("orders.new").await?;
    let mut b = publisher.subscribe("orders.*").await?;
    subscriber.flush().await?;
    publisher.flush().await?;
    for _ in 0..5 {
        publisher.publish("orders.new", "hello".into()).await?;
    }
    publisher.flush().await?;
    receive(&mut a, 5).await?;
    receive(&mut b, 5).await?;

    let varz = json_when(&server, "/varz", |v| {
        v["in_msgs"] == 5 && v["out_msgs"] == 10
    })
    .await?;
    assert_eq!(varz["server_id"], server.server.server_id());
    assert_eq!(varz["server_name"], server.server.server_name());
    assert_eq!(varz["port"], server.addr().port());
    let http_port = server
        .server
        .monitor_addr()
        .context("monitoring on")?
        .port();
    assert_eq!(varz["http_port"], http_port);
    assert_eq!(varz["in_bytes"], 25);
    assert_eq!(varz["out_bytes"], 50);
    assert_eq!(varz["in_client_msgs"], 5);
    assert_eq!(varz["connections"], 2);
    assert_eq!(varz["total_connections"], 2);
    assert_eq!(varz["subscriptions"], 2);
    assert_eq!(varz["slow_consumers"], 0);
    assert_eq!(varz["max_payload"], 1024 * 1024);
    assert_eq!(varz["max_control_line"], 4096);
    assert_eq!(varz["max_pending"], 64 * 1024 * 1024);
    assert_eq!(
        varz["ping_interval"], 120_000_000_000u64,
        "a Go duration in nanoseconds"
    );
    assert_eq!(
        varz["auth_timeout"].to_string(),
        "2",
        "Go prints integral floats without .0"
    );
    assert_eq!(varz["cluster"], serde_json::json!({}));
    assert_eq!(varz["jetstream"], serde_json::json!({}));
    assert!(varz.get("auth_required").is_none(), "omitted without auth");
    assert!(
        varz["mem"].as_u64().unwrap_or(0) > 0,
        "RSS is read from procfs"
    );
    assert!(varz["cores"].as_u64().unwrap_or(0) >= 1);
    assert!(
        varz["http_req_stats"]["/varz"].as_u64().unwrap_or(0) >= 1,
        "counts itself"
    );
    for field in ["start", "now", "config_load_time"] {
        let text = varz[field].as_str().context("a string")?;
        assert!(is_rfc3339_utc(text), "{field} = {text}");
    }
    assert!(varz["uptime"].as_str().is_some_and(|u| u.ends_with('s')));

    // Closing a connection is visible too; the total keeps counting.
    drop(a);
    drop(subscriber);
    let varz = json_when(&server, "/varz", |v| v["connections"] == 1).await?;
    assert_eq!(varz["total_connections"], 2);
    assert_eq!(varz["subscriptions"], 1);
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn connz_lists_named_clients_with_their_subscriptions() -> anyhow::Result<()> {
    let server = TestServer::start_with_monitoring().await?;
    let alpha = connect(&server, "alpha").await?;
    let beta = connect(&server, "beta").await?;
    let _foo = alpha.subscribe("foo").await?;
    let _bar = alpha.queue_subscribe("bar", "workers".to_string()).await?;
    alpha.flush().await?;
    beta.publish("foo", "12345678".into()).await?;
    beta.flush().await?;

    let connz = json_when(&server, "/connz?subs=1", |v| {
        // The writer subtracts what it wrote after the write returns, so the client can see a
        // PONG before the server's count of pending bytes drops back to 0.
        connection(v, "alpha").is_ok_and(|c| c["out_msgs"] == 1 && c["pending_bytes"] == 0)
            && connection(v, "beta").is_ok_and(|c| c["in_msgs"] == 1)
    })
    .await?;
    assert_eq!(connz["server_id"], server.server.server_id());
    assert_eq!(connz["num_connections"], 2);
    assert_eq!(connz["total"], 2);
    assert_eq!(connz["offset"], 0);
    assert_eq!(connz["limit"], 1024);
    let a = connection(&connz, "alpha")?;
    assert_eq!(a["kind"], "Client");
    assert_eq!(a["type"], "nats");
    assert_eq!(a["ip"], "127.0.0.1");
    assert_eq!(a["lang"], "rust");
    assert!(a["version"].as_str().is_some_and(|v| !v.is_empty()));
    assert_eq!(a["subscriptions"], 2);
    assert_eq!(a["out_bytes"], 8);
    let mut list: Vec<&str> = a["subscriptions_list"]
        .as_array()
        .context("list")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    list.sort_unstable();
    assert_eq!(list, ["bar", "foo"]);
    assert!(a.get("subscriptions_list_detail").is_none());
    assert!(
        a["rtt"].as_str().is_some_and(|r| r != "0s"),
        "RTT estimated at CONNECT: {}",
        a["rtt"]
    );
    for field in ["start", "last_activity"] {
        assert!(
            is_rfc3339_utc(a[field].as_str().unwrap_or_default()),
            "{field}"
        );
    }
    let b = connection(&connz, "beta")?;
    assert_eq!(b["in_bytes"], 8);
    assert_eq!(b["subscriptions"], 0);
    assert!(
        b.get("subscriptions_list").is_none(),
        "omitted when empty, as nats-server does"
    );

    let detail = server.monitor_json("/connz?subs=detail").await?;
    let a = connection(&detail, "alpha")?;
    let subs = a["subscriptions_list_detail"]
        .as_array()
        .context("detail list")?;
    let bar = subs
        .iter()
        .find(|s| s["subject"] == "bar")
        .context("bar listed")?;
    assert_eq!(bar["qgroup"], "workers");
    assert_eq!(bar["cid"], a["cid"]);
    let foo = subs
        .iter()
        .find(|s| s["subject"] == "foo")
        .context("foo listed")?;
    assert!(foo.get("qgroup").is_none());
    assert!(foo["sid"].as_str().is_some_and(|s| !s.is_empty()));
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn connz_sorts_pages_and_filters_like_nats_server() -> anyhow::Result<()> {
    let server = TestServer::start_with_monitoring().await?;
    let mut clients = Vec::new();
    // c1 publishes 1 message, c2 two, c3 three.
    for (i, name) in ["c1", "c2", "c3"].into_iter().enumerate() {
        let client = connect(&server, name).await?;
        for _ in 0..=i {
            client.publish("nowhere", "x".into()).await?;
        }
        client.flush().await?;
        clients.push(client);
    }
    let by_cid = json_when(&server, "/connz", |v| {
        connection(v, "c3").is_ok_and(|c| c["in_msgs"] == 3)
    })
    .await?;
    let cids: Vec<u64> = by_cid["connections"]
        .as_array()
        .context("list")?
        .iter()
        .filter_map(|c| c["cid"].as_u64())
        .collect();
    assert!(
        cids.windows(2).all(|w| w[0] < w[1]),
        "default order is ascending cid: {cids:?}"
    );

    let names = |v: &Value| -> Vec<String> {
        v["connections"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let sorted = server.monitor_json("/connz?sort=msgs_from").await?;
    assert_eq!(
        names(&sorted),
        ["c3", "c2", "c1"],
        "msgs_from sorts by in_msgs, largest first"
    );
    let sorted = server.monitor_json("/connz?sort=bytes_from").await?;
    assert_eq!(names(&sorted), ["c3", "c2", "c1"]);
    let sorted = server.monitor_json("/connz?sort=uptime").await?;
    assert_eq!(names(&sorted), ["c3", "c2", "c1"], "shortest uptime first");

    let page = server
        .monitor_json("/connz?sort=msgs_from&offset=1&limit=1")
        .await?;
    assert_eq!(names(&page), ["c2"]);
    assert_eq!(page["num_connections"], 1);
    assert_eq!(page["total"], 3);
    assert_eq!(page["offset"], 1);
    assert_eq!(page["limit"], 1);
    let past_end = server.monitor_json("/connz?offset=10").await?;
    assert_eq!(past_end["num_connections"], 0);
    assert_eq!(past_end["connections"], serde_json::json!([]));

    let one = server
        .monitor_json(&format!("/connz?cid={}", cids[1]))
        .await?;
    assert_eq!(names(&one), ["c2"]);
    assert_eq!(one["limit"], 1);
    let none = server.monitor_json("/connz?cid=999999").await?;
    assert_eq!(none["num_connections"], 0);

    let closed = server.monitor_json("/connz?state=closed").await?;
    assert_eq!(
        closed["connections"],
        serde_json::json!([]),
        "nothing closed yet"
    );

    for (query, error) in [
        ("/connz?sort=bogus", "invalid sorting option: bogus"),
        (
            "/connz?sort=stop",
            "sort by stop only valid on closed connections",
        ),
        ("/connz?limit=abc", "Error decoding int for 'limit'"),
        ("/connz?subs=maybe", "Error decoding boolean for 'subs'"),
        ("/connz?cid=-1", "Error decoding uint64 for 'cid'"),
        ("/connz?state=sleeping", "Error decoding state for sleeping"),
    ] {
        let response = server.monitor_get(query).await?;
        assert_eq!(response.status, 400, "{query}");
        assert!(
            response.body.starts_with(error),
            "{query}: {}",
            response.body
        );
    }
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn subsz_counts_inserts_removes_matches_and_lists_subscriptions() -> anyhow::Result<()> {
    let server = TestServer::start_with_monitoring().await?;
    let client = connect(&server, "subs").await?;
    let mut keep = client.subscribe("events.>").await?;
    let queue = client
        .queue_subscribe("events.created", "q".to_string())
        .await?;
    let mut gone = client.subscribe("other").await?;
    client.flush().await?;
    gone.unsubscribe().await?;
    for _ in 0..3 {
        client.publish("events.created", "x".into()).await?;
    }
    client.flush().await?;
    receive(&mut keep, 3).await?;

    let subsz = json_when(&server, "/subsz", |v| {
        v["num_removes"] == 1 && v["num_matches"] == 3
    })
    .await?;
    assert_eq!(subsz["num_subscriptions"], 2);
    assert_eq!(subsz["num_inserts"], 3);
    assert_eq!(subsz["num_cache"], 1, "one subject cached");
    assert_eq!(
        subsz["max_fanout"], 2,
        "one plain subscriber and one queue group"
    );
    assert_eq!(subsz["avg_fanout"], 2);
    let hit_rate = subsz["cache_hit_rate"].as_f64().context("a number")?;
    assert!(
        (hit_rate - 2.0 / 3.0).abs() < 1e-9,
        "2 of 3 lookups hit the cache: {hit_rate}"
    );
    assert!(subsz.get("subscriptions_list").is_none());

    let listed = server.monitor_json("/subsz?subs=1").await?;
    assert_eq!(listed["total"], 2);
    let list = listed["subscriptions_list"].as_array().context("list")?;
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|s| s["account"] == "$G"));
    assert!(
        list.iter()
            .any(|s| s["subject"] == "events.created" && s["qgroup"] == "q")
    );

    let tested = server
        .monitor_json("/subsz?subs=1&test=events.deleted")
        .await?;
    assert_eq!(
        tested["total"], 1,
        "only events.> matches events.deleted: {tested:#}"
    );
    assert_eq!(tested["subscriptions_list"][0]["subject"], "events.>");
    let bad = server.monitor_get("/subsz?subs=1&test=events.*").await?;
    assert_eq!(bad.status, 400, "a test subject must be a publish subject");

    let paged = server
        .monitor_json("/subsz?subs=1&offset=1&limit=5")
        .await?;
    assert_eq!(
        paged["subscriptions_list"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(paged["offset"], 1);
    assert_eq!(paged["limit"], 5);

    // A connection's cache entries leave the statistics with it (async-nats closes the
    // connection once the client and all its subscribers are gone).
    drop((keep, queue, gone, client));
    json_when(&server, "/subsz", |v| {
        v["num_subscriptions"] == 0 && v["num_cache"] == 0
    })
    .await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn closed_connections_are_kept_with_their_reason_and_final_counters() -> anyhow::Result<()> {
    let server = TestServer::start_with_monitoring().await?;
    let stayer = connect(&server, "stayer").await?;
    let leaver = connect(&server, "leaver").await?;
    let sub = leaver.subscribe("bye").await?;
    leaver.publish("bye", "12345".into()).await?;
    leaver.flush().await?;
    let open = json_when(&server, "/connz", |v| {
        connection(v, "leaver").is_ok_and(|c| c["in_msgs"] == 1)
    })
    .await?;
    let cid = connection(&open, "leaver")?["cid"].clone();
    drop((sub, leaver));

    let closed = json_when(&server, "/connz?state=closed&subs=1", |v| {
        v["num_connections"] == 1
    })
    .await?;
    assert_eq!(closed["total"], 1);
    let c = connection(&closed, "leaver")?;
    assert_eq!(c["cid"], cid);
    assert_eq!(c["reason"], "Client Closed");
    assert!(
        is_rfc3339_utc(c["stop"].as_str().unwrap_or_default()),
        "stop = {}",
        c["stop"]
    );
    assert_eq!(c["in_msgs"], 1);
    assert_eq!(c["in_bytes"], 5);
    assert_eq!(c["out_msgs"], 1, "it received its own message");
    assert_eq!(c["subscriptions"], 1);
    assert_eq!(c["subscriptions_list"], serde_json::json!(["bye"]));

    let all = server.monitor_json("/connz?state=all").await?;
    assert_eq!(all["total"], 2);
    assert!(
        connection(&all, "stayer")?.get("stop").is_none(),
        "open connections have no stop"
    );
    assert!(connection(&all, "leaver")?.get("stop").is_some());
    let open = server.monitor_json("/connz").await?;
    assert_eq!(open["total"], 1);
    assert!(connection(&open, "leaver").is_err());
    let by_cid = server
        .monitor_json(&format!("/connz?state=closed&cid={cid}"))
        .await?;
    assert_eq!(by_cid["num_connections"], 1);
    let by_stop = server.monitor_get("/connz?state=closed&sort=stop").await?;
    assert_eq!(by_stop.status, 200);
    let by_reason = server
        .monitor_get("/connz?state=closed&sort=reason")
        .await?;
    assert_eq!(by_reason.status, 200);
    drop(stayer);
    server.shutdown().await;
    Ok(())
}

/// `name{labels} value` lines of a Prometheus text exposition, keyed by name.
fn parse_prometheus(text: &str) -> anyhow::Result<HashMap<String, (String, f64)>> {
    let mut samples = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .with_context(|| format!("no value: {line}"))?;
        let value: f64 = value
            .parse()
            .with_context(|| format!("bad value: {line}"))?;
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        ensure!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name {name}"
        );
        samples.insert(
            name.to_string(),
            (labels.trim_end_matches('}').to_string(), value),
        );
    }
    Ok(samples)
}

#[tokio::test]
async fn metrics_expose_the_varz_counters_in_prometheus_text() -> anyhow::Result<()> {
    let server = TestServer::start_with_monitoring().await?;
    let client = connect(&server, "metrics").await?;
    let mut sub = client.subscribe("m").await?;
    client.flush().await?;
    for _ in 0..7 {
        client.publish("m", "abc".into()).await?;
    }
    client.flush().await?;
    receive(&mut sub, 7).await?;
    json_when(&server, "/varz", |v| v["in_msgs"] == 7).await?;

    let response = server.monitor_get("/metrics").await?;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain"))
    );
    let samples = parse_prometheus(&response.body)?;
    let value = |name: &str| samples.get(name).map(|(_, v)| *v);
    assert_eq!(value("nats_varz_in_msgs"), Some(7.0));
    assert_eq!(value("nats_varz_out_msgs"), Some(7.0));
    assert_eq!(value("nats_varz_in_bytes"), Some(21.0));
    assert_eq!(value("nats_varz_out_bytes"), Some(21.0));
    assert_eq!(value("nats_varz_connections"), Some(1.0));
    assert_eq!(value("nats_varz_total_connections"), Some(1.0));
    assert_eq!(value("nats_varz_subscriptions"), Some(1.0));
    assert_eq!(value("nats_varz_slow_consumers"), Some(0.0));
    assert!(value("nats_varz_mem").is_some_and(|m| m > 0.0));
    assert_eq!(value("nats_subsz_num_subscriptions"), Some(1.0));
    assert_eq!(value("nats_connz_num_connections"), Some(1.0));
    assert_eq!(value("nats_connz_in_msgs"), Some(7.0));
    assert_eq!(value("nats_varz_version"), Some(1.0));
    let (labels, _) = &samples["nats_varz_in_msgs"];
    assert_eq!(
        labels,
        &format!("server_id=\"{}\"", server.server.server_id())
    );
    let (labels, _) = &samples["nats_varz_version"];
    assert!(labels.contains(&format!("value=\"{}\"", natrix_server::VERSION)));
    assert!(response.body.contains("# TYPE nats_varz_in_msgs gauge"));

    // Values are read at scrape time.
    client.publish("m", "abc".into()).await?;
    client.flush().await?;
    receive(&mut sub, 1).await?;
    json_when(&server, "/varz", |v| v["in_msgs"] == 8).await?;
    let samples = parse_prometheus(&server.monitor_get("/metrics").await?.body)?;
    assert_eq!(samples.get("nats_varz_in_msgs").map(|(_, v)| *v), Some(8.0));
    server.shutdown().await;
    Ok(())
}

const ALL_ENDPOINTS: &[&str] = &[
    "/",
    "/varz",
    "/connz",
    "/connz?auth=true&subs=detail",
    "/connz?auth=1&subs=1",
    "/subsz?subs=1",
    "/routez",
    "/gatewayz",
    "/leafz",
    "/accountz",
    "/jsz",
    "/healthz",
    "/metrics",
];

#[tokio::test]
async fn monitoring_never_reveals_a_password() -> anyhow::Result<()> {
    let password = "pa55-w0rd-never-shown";
    let auth = AuthConfig {
        user: Some("alice".into()),
        password: Some(password.into()),
        ..AuthConfig::default()
    };
    let server = TestServer::start_with(ServerConfig {
        http_port: Some(0),
        auth,
        ..test_config()
    })
    .await?;
    let client = ConnectOptions::with_user_and_password("alice".into(), password.into())
        .name("authed")
        .connect(server.url())
        .await?;
    let sub = client.subscribe("secret.stuff").await?;
    client.flush().await?;

    for path in ALL_ENDPOINTS {
        let response = server.monitor_get(path).await?;
        assert_eq!(response.status, 200, "{path}");
        assert!(
            !response.body.contains(password),
            "{path} shows the password"
        );
    }
    let connz = server.monitor_json("/connz?auth=true").await?;
    let c = connection(&connz, "authed")?;
    assert_eq!(c["authorized_user"], "alice");
    assert_eq!(c["name_tag"], "$G");
    let connz = server.monitor_json("/connz").await?;
    assert!(
        connection(&connz, "authed")?
            .get("authorized_user")
            .is_none(),
        "only with auth=true"
    );
    let varz = server.monitor_json("/varz").await?;
    assert_eq!(varz["auth_required"], true);

    // Nor once the connection is closed.
    drop((sub, client));
    let closed = json_when(&server, "/connz?state=closed&auth=true&subs=detail", |v| {
        v["num_connections"] == 1
    })
    .await?;
    assert_eq!(connection(&closed, "authed")?["authorized_user"], "alice");
    for path in ALL_ENDPOINTS
        .iter()
        .copied()
        .chain(["/connz?state=all&auth=true&subs=detail"])
    {
        let response = server.monitor_get(path).await?;
        assert!(
            !response.body.contains(password),
            "{path} shows the password"
        );
    }
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn monitoring_never_reveals_a_token() -> anyhow::Result<()> {
    let token = "t0ken-never-shown";
    let auth = AuthConfig {
        token: Some(token.into()),
        ..AuthConfig::default()
    };
    let server = TestServer::start_with(ServerConfig {
        http_port: Some(0),
        auth,
        ..test_config()
    })
    .await?;
    let client = ConnectOptions::with_token(token.into())
        .name("tokened")
        .connect(server.url())
        .await?;
    client.flush().await?;
    for path in ALL_ENDPOINTS {
        let response = server.monitor_get(path).await?;
        assert_eq!(response.status, 200, "{path}");
        assert!(!response.body.contains(token), "{path} shows the token");
    }
    let connz = server.monitor_json("/connz?auth=true").await?;
    assert!(
        connection(&connz, "tokened")?
            .get("authorized_user")
            .is_none()
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn health_and_topology_endpoints_answer_like_a_standalone_nats_server() -> anyhow::Result<()>
{
    let server = TestServer::start_with_monitoring().await?;
    let id = server.server.server_id().to_string();

    for path in [
        "/healthz",
        "/healthz?js-enabled-only=true",
        "/healthz?js-server-only=true",
    ] {
        let response = server.monitor_get(path).await?;
        assert_eq!(response.body, r#"{"status":"ok"}"#, "{path}");
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    }
    let routez = server.monitor_json("/routez").await?;
    assert_eq!(routez["server_id"], id);
    assert_eq!(routez["num_routes"], 0);
    assert_eq!(routez["routes"], serde_json::json!([]));
    let gatewayz = server.monitor_json("/gatewayz").await?;
    assert_eq!(gatewayz["outbound_gateways"], serde_json::json!({}));
    assert_eq!(gatewayz["inbound_gateways"], serde_json::json!({}));
    let leafz = server.monitor_json("/leafz").await?;
    assert_eq!(leafz["leafnodes"], 0);
    assert_eq!(leafz["leafs"], serde_json::json!([]));
    let accountz = server.monitor_json("/accountz").await?;
    assert_eq!(accountz["accounts"], serde_json::json!(["$G"]));
    let jsz = server.monitor_json("/jsz").await?;
    assert_eq!(jsz["disabled"], true);
    assert_eq!(jsz["streams"], 0);
    assert_eq!(jsz["server_id"], id);

    let index = server.monitor_get("/").await?;
    assert_eq!(index.status, 200);
    assert!(
        index
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
    );
    for endpoint in ["varz", "connz", "subsz", "healthz"] {
        assert!(
            index.body.contains(&format!("href=./{endpoint}")),
            "index links {endpoint}"
        );
    }
    let missing = server.monitor_get("/nope").await?;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body, "404 page not found\n");

    let jsonp = server.monitor_get("/varz?callback=show").await?;
    assert!(jsonp.body.starts_with("show({") && jsonp.body.ends_with("})"));

    let varz = server.monitor_json("/varz").await?;
    for path in ["/healthz", "/routez", "/jsz", "/"] {
        assert!(
            varz["http_req_stats"][path].as_u64().unwrap_or(0) >= 1,
            "{path} counted"
        );
    }
    server.shutdown().await;
    Ok(())
}
