//! The server's storage limits (`max_file_store`, `max_memory_store`): streams may not reserve
//! more than the server may store, and a publish that would exceed the limit is refused with
//! nats-server's "insufficient resources" error, using no sequence number. (Account limits are
//! `jetstream_accounts.rs`'s.)

use crate::support::api_request as api;
use async_nats::jetstream::{self, stream};
use natrix_server::{JetStreamConfig, ServerConfig};
use natrix_testkit::{TestServer, test_config};

async fn start(dir: &tempfile::TempDir, max_file: i64, max_mem: i64) -> anyhow::Result<TestServer> {
    TestServer::start_with(ServerConfig {
        jetstream: Some(JetStreamConfig {
            store_dir: Some(dir.path().to_path_buf()),
            max_file_store: Some(max_file),
            max_memory_store: Some(max_mem),
            ..JetStreamConfig::default()
        }),
        ..test_config()
    })
    .await
}

#[tokio::test]
async fn a_stream_may_not_reserve_more_than_the_account_may_store() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start(&dir, 10_000, 5_000).await?;
    let client = async_nats::connect(server.url()).await?;
    let file = api(
        &client,
        "$JS.API.STREAM.CREATE.BIG",
        r#"{"name":"BIG","subjects":["big"],"max_bytes":20000}"#,
    )
    .await?;
    assert_eq!(file["error"]["err_code"], 10047, "{file}");
    assert_eq!(
        file["error"]["description"],
        "insufficient storage resources available"
    );
    let mem = api(
        &client,
        "$JS.API.STREAM.CREATE.MEM",
        r#"{"name":"MEM","subjects":["mem"],"storage":"memory","max_bytes":6000}"#,
    )
    .await?;
    assert_eq!(mem["error"]["err_code"], 10028, "{mem}");
    // The account has no limits of its own: nats-server shows -1 beside server limits.
    let info = api(&client, "$JS.API.INFO", "").await?;
    assert_eq!(info["limits"]["max_storage"], -1);
    assert_eq!(info["limits"]["max_memory"], -1);
    Ok(())
}

#[tokio::test]
async fn publishes_beyond_the_server_limit_are_refused_without_using_a_sequence()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start(&dir, 2_000, 2_000).await?;
    let client = async_nats::connect(server.url()).await?;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "FILL".into(),
        subjects: vec!["fill".into()],
        ..Default::default()
    })
    .await?;
    let payload = vec![b'x'; 200];
    let mut stored = 0u64;
    let mut refused = None;
    for _ in 0..50 {
        match js.publish("fill", payload.clone().into()).await?.await {
            Ok(ack) => {
                stored += 1;
                assert_eq!(ack.sequence, stored);
            }
            Err(err) => {
                refused = Some(err.to_string());
                break;
            }
        }
    }
    let refused = refused.ok_or_else(|| anyhow::anyhow!("the limit was never enforced"))?;
    assert!(refused.contains("insufficient resources"), "{refused}");
    // Each message counts 4 + 200 + 30 bytes: eight fit in 2,000.
    assert_eq!(stored, 8);
    let info = api(&client, "$JS.API.STREAM.INFO.FILL", "").await?;
    assert_eq!(
        info["state"]["last_seq"], 8,
        "a refused publish used a sequence"
    );
    assert_eq!(info["state"]["messages"], 8);
    Ok(())
}

/// Without `max_memory_store` / `max_file_store`, the server takes three quarters of the
/// machine's memory and of its store's file system, as nats-server does, and shows them in
/// `/varz` and `/jsz` with the store directory (`<store_dir>/jetstream`).
#[tokio::test]
async fn unset_server_limits_are_derived_from_memory_and_disk_as_nats_server_does()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(ServerConfig {
        http_port: Some(0),
        jetstream: Some(JetStreamConfig {
            store_dir: Some(dir.path().to_path_buf()),
            ..JetStreamConfig::default()
        }),
        ..test_config()
    })
    .await?;
    let varz = server.monitor_json("/varz").await?;
    let config = &varz["jetstream"]["config"];
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let mem_total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no MemTotal in /proc/meminfo"))?;
    assert_eq!(
        config["max_memory"],
        mem_total_kib * 1024 / 4 * 3,
        "{config}"
    );
    let max_storage = config["max_storage"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no max_storage: {config}"))?;
    assert!(max_storage > 0, "{config}");
    let store_dir = dir.path().join("jetstream");
    assert_eq!(config["store_dir"], store_dir.display().to_string());
    let jsz = server.monitor_json("/jsz").await?;
    assert_eq!(jsz["config"]["max_memory"], config["max_memory"]);
    assert_eq!(jsz["config"]["max_storage"], max_storage);
    // The account itself still has no limits.
    let client = async_nats::connect(server.url()).await?;
    let info = api(&client, "$JS.API.INFO", "").await?;
    assert_eq!(info["limits"]["max_storage"], -1);
    // `/varz` also shows what is stored and the API's counts, as nats-server's `stats`.
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: "V".into(),
        subjects: vec!["v".into()],
        ..Default::default()
    })
    .await?;
    js.publish("v", "hello".into()).await?.await?;
    let varz = server.monitor_json("/varz").await?;
    let stats = &varz["jetstream"]["stats"];
    assert_eq!(stats["memory"], 0, "{stats}");
    assert!(stats["storage"].as_u64().is_some_and(|b| b > 0), "{stats}");
    assert_eq!(stats["accounts"], 1, "{stats}");
    assert!(
        stats["api"]["total"].as_u64().is_some_and(|n| n >= 2),
        "{stats}"
    );
    assert_eq!(stats["api"]["errors"], 0, "{stats}");
    Ok(())
}
