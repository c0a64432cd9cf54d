//! JetStream as operators and tools see it: `/jsz` figures and details, the exporter-style
//! `jetstream_*` Prometheus metrics, and the stream/consumer action advisories.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use natrix_server::{JetStreamConfig, ServerConfig};
use natrix_testkit::{TestServer, test_config};

async fn start(dir: &tempfile::TempDir) -> anyhow::Result<TestServer> {
    TestServer::start_with(ServerConfig {
        http_port: Some(0),
        jetstream: Some(JetStreamConfig {
            store_dir: Some(dir.path().to_path_buf()),
            ..JetStreamConfig::default()
        }),
        ..test_config()
    })
    .await
}

#[tokio::test]
async fn jsz_reports_streams_consumers_and_their_details() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start(&dir).await?;
    let js = jetstream::new(async_nats::connect(server.url()).await?);
    let s = js
        .create_stream(stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await?;
    for i in 0..3 {
        js.publish(format!("orders.{i}"), "x".into()).await?.await?;
    }
    s.create_consumer(consumer::pull::Config {
        durable_name: Some("worker".into()),
        ..Default::default()
    })
    .await?;

    let jsz = server.monitor_json("/jsz").await?;
    assert!(jsz.get("disabled").is_none(), "{jsz}");
    assert_eq!(jsz["streams"], 1);
    assert_eq!(jsz["consumers"], 1);
    assert_eq!(jsz["messages"], 3);
    assert_eq!(jsz["bytes"], 3 * (8 + 1 + 30));
    assert_eq!(jsz["storage"], jsz["bytes"]);
    assert!(jsz["api"]["total"].as_u64().unwrap_or(0) >= 2, "{jsz}");
    assert!(jsz.get("account_details").is_none());

    let detailed = server
        .monitor_json("/jsz?streams=true&consumers=true&config=true")
        .await?;
    let stream = &detailed["account_details"][0]["stream_detail"][0];
    assert_eq!(detailed["account_details"][0]["name"], "$G");
    assert_eq!(stream["name"], "ORDERS");
    assert_eq!(stream["config"]["subjects"][0], "orders.>");
    assert_eq!(stream["state"]["messages"], 3);
    let consumer = &stream["consumer_detail"][0];
    assert_eq!(consumer["name"], "worker");
    assert_eq!(consumer["num_pending"], 3);
    assert_eq!(consumer["config"]["durable_name"], "worker");

    let no_config = server.monitor_json("/jsz?consumers=true").await?;
    let stream = &no_config["account_details"][0]["stream_detail"][0];
    assert!(stream.get("config").is_none(), "{stream}");
    assert!(stream["consumer_detail"][0].get("config").is_none());

    let bad = server.monitor_get("/jsz?streams=maybe").await?;
    assert_eq!(bad.status, 400);
    Ok(())
}

#[tokio::test]
async fn metrics_expose_stream_and_consumer_gauges_like_the_exporter() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start(&dir).await?;
    let js = jetstream::new(async_nats::connect(server.url()).await?);
    let s = js
        .create_stream(stream::Config {
            name: "EVENTS".into(),
            subjects: vec!["events.>".into()],
            ..Default::default()
        })
        .await?;
    for _ in 0..5 {
        js.publish("events.a", "y".into()).await?.await?;
    }
    s.create_consumer(consumer::pull::Config {
        durable_name: Some("reader".into()),
        ..Default::default()
    })
    .await?;
    let text = server.monitor_get("/metrics").await?.body;
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix) && !l.starts_with('#'))
            .map(str::to_owned)
    };
    let total = line("jetstream_stream_total_messages{").unwrap_or_default();
    assert!(
        total.contains("stream_name=\"EVENTS\"") && total.ends_with(" 5"),
        "{total}"
    );
    let pending = line("jetstream_consumer_num_pending{").unwrap_or_default();
    assert!(
        pending.contains("consumer_name=\"reader\"") && pending.ends_with(" 5"),
        "{pending}"
    );
    let streams = line("jetstream_server_total_streams{").unwrap_or_default();
    assert!(streams.ends_with(" 1"), "{streams}");
    // The group committer's counters: every acknowledged publish was a fsynced commit.
    let value = |prefix: &str| {
        line(prefix)
            .and_then(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()))
            .unwrap_or_default()
    };
    let commits = value("natrix_store_commits_total{");
    let syncs = value("natrix_store_syncs_total{");
    assert!(commits >= 5, "commits {commits}");
    assert!(
        syncs >= 1 && syncs <= commits,
        "syncs {syncs} commits {commits}"
    );
    assert_eq!(value("natrix_store_failed_groups_total{"), 0);
    Ok(())
}

#[tokio::test]
async fn stream_and_consumer_actions_are_advised() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start(&dir).await?;
    let client = async_nats::connect(server.url()).await?;
    let mut advisories = client.subscribe("$JS.EVENT.ADVISORY.>").await?;
    client.flush().await?;
    let js = jetstream::new(client.clone());
    let s = js
        .create_stream(stream::Config {
            name: "AUDIT".into(),
            subjects: vec!["audit.>".into()],
            ..Default::default()
        })
        .await?;
    s.create_consumer(consumer::pull::Config {
        durable_name: Some("c1".into()),
        ..Default::default()
    })
    .await?;
    s.delete_consumer("c1").await?;
    js.delete_stream("AUDIT").await?;

    let expected = [
        ("$JS.EVENT.ADVISORY.STREAM.CREATED.AUDIT", "create"),
        ("$JS.EVENT.ADVISORY.CONSUMER.CREATED.AUDIT.c1", "create"),
        ("$JS.EVENT.ADVISORY.CONSUMER.DELETED.AUDIT.c1", "delete"),
        ("$JS.EVENT.ADVISORY.STREAM.DELETED.AUDIT", "delete"),
    ];
    for (subject, action) in expected {
        let msg = tokio::time::timeout(Duration::from_secs(5), advisories.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("advisory subscription ended"))?;
        assert_eq!(msg.subject.as_str(), subject);
        let body: serde_json::Value = serde_json::from_slice(&msg.payload)?;
        assert_eq!(body["action"], action, "{body}");
        assert_eq!(body["stream"], "AUDIT");
        assert!(body["id"].as_str().is_some_and(|id| !id.is_empty()));
    }
    Ok(())
}
