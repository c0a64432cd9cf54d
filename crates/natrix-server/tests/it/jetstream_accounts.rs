//! JetStream limits of an account (`accounts { APP { jetstream { max_streams, max_consumers,
//! max_file, max_mem, max_ack_pending, ... } } }`): the API answers the same limit errors as
//! nats-server (checked side by side against the reference server on 127.0.0.1:19230), a publish
//! past the account's storage is refused with 10002 without using a sequence, an account
//! without JetStream gets 10039, and monitoring names the account.

use crate::support::api_request as api;
use async_nats::ConnectOptions;
use async_nats::jetstream::{self, stream};
use natrix_server::{
    AccountConfig, AccountLimits, AuthConfig, JetStreamConfig, ServerConfig, UserConfig,
};
use natrix_testkit::{ReferenceServer, TestServer, test_config};

const ORACLE_PORT: u16 = 19230;

fn account_config(dir: &tempfile::TempDir, jetstream: Option<AccountLimits>) -> ServerConfig {
    ServerConfig {
        auth: AuthConfig {
            users: vec![UserConfig {
                user: Some("a".into()),
                password: Some("a".into()),
                ..UserConfig::default()
            }],
            ..AuthConfig::default()
        },
        account: AccountConfig {
            name: "APP".into(),
            jetstream,
        },
        jetstream: Some(JetStreamConfig {
            store_dir: Some(dir.path().to_path_buf()),
            ..JetStreamConfig::default()
        }),
        ..test_config()
    }
}

async fn connect(url: &str) -> anyhow::Result<async_nats::Client> {
    Ok(
        ConnectOptions::with_user_and_password("a".into(), "a".into())
            .connect(url)
            .await?,
    )
}

/// What a client can rely on in an API answer: the whole error, or the outcome and the limits
/// and defaults the request touched.
fn outcome(answer: &serde_json::Value) -> String {
    if let Some(error) = answer.get("error") {
        return format!("error {error}");
    }
    if let Some(limits) = answer.get("limits") {
        return format!("limits {limits}");
    }
    let config = &answer["config"];
    format!(
        "ok max_bytes={} max_consumers={} max_ack_pending={}",
        config["max_bytes"], config["max_consumers"], config["max_ack_pending"]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_limit_answers_match_nats_server() -> anyhow::Result<()> {
    let limits = AccountLimits {
        max_memory: 512 * 1024,
        max_storage: 1024 * 1024,
        max_streams: 3,
        max_consumers: 2,
        max_ack_pending: 100,
        memory_max_stream_bytes: 200_000,
        storage_max_stream_bytes: 300_000,
        max_bytes_required: true,
    };
    let reference_dir = tempfile::tempdir()?;
    let reference_config = format!(
        "jetstream {{ store_dir: {:?} }}\naccounts {{ APP: {{\n  jetstream: {{ max_streams: 3, \
         max_consumers: 2, max_file: 1MB, max_mem: 512KB, max_ack_pending: 100, \
         max_bytes_required: true, store_max_stream_bytes: 300000, \
         memory_max_stream_bytes: 200000 }}\n  users: [{{user: a, password: a}}]\n}} }}\n",
        reference_dir.path()
    );
    let reference = ReferenceServer::start(ORACLE_PORT, &[], Some(&reference_config)).await?;
    let dir = tempfile::tempdir()?;
    let ours = TestServer::start_with(account_config(&dir, Some(limits))).await?;
    let requests: &[(&str, &str)] = &[
        ("$JS.API.INFO", ""),
        (
            "$JS.API.STREAM.CREATE.S1",
            r#"{"name":"S1","subjects":["s1"]}"#,
        ),
        (
            "$JS.API.STREAM.CREATE.S1",
            r#"{"name":"S1","subjects":["s1"],"max_bytes":400000}"#,
        ),
        (
            "$JS.API.STREAM.CREATE.S1",
            r#"{"name":"S1","subjects":["s1"],"max_bytes":300000,"max_consumers":5}"#,
        ),
        (
            "$JS.API.STREAM.CREATE.S1",
            r#"{"name":"S1","subjects":["s1"],"max_bytes":300000}"#,
        ),
        (
            "$JS.API.STREAM.CREATE.M1",
            r#"{"name":"M1","subjects":["m1"],"storage":"memory","max_bytes":250000}"#,
        ),
        (
            "$JS.API.STREAM.CREATE.M1",
            r#"{"name":"M1","subjects":["m1"],"storage":"memory","max_bytes":200000}"#,
        ),
        (
            "$JS.API.CONSUMER.DURABLE.CREATE.S1.c1",
            r#"{"stream_name":"S1","config":{"durable_name":"c1","ack_policy":"explicit"}}"#,
        ),
        (
            "$JS.API.CONSUMER.DURABLE.CREATE.S1.c2",
            r#"{"stream_name":"S1","config":{"durable_name":"c2","ack_policy":"explicit","max_ack_pending":500}}"#,
        ),
        (
            "$JS.API.CONSUMER.DURABLE.CREATE.S1.c3",
            r#"{"stream_name":"S1","config":{"durable_name":"c3","ack_policy":"explicit","max_ack_pending":50}}"#,
        ),
        (
            "$JS.API.CONSUMER.DURABLE.CREATE.S1.c4",
            r#"{"stream_name":"S1","config":{"durable_name":"c4","ack_policy":"explicit"}}"#,
        ),
        (
            "$JS.API.CONSUMER.DURABLE.CREATE.S1.c1",
            r#"{"stream_name":"S1","config":{"durable_name":"c1","ack_policy":"explicit"}}"#,
        ),
        (
            "$JS.API.STREAM.UPDATE.S1",
            r#"{"name":"S1","subjects":["s1"],"max_bytes":350000}"#,
        ),
        (
            "$JS.API.STREAM.UPDATE.S1",
            r#"{"name":"S1","subjects":["s1"],"max_bytes":-1}"#,
        ),
        (
            "$JS.API.STREAM.CREATE.S2",
            r#"{"name":"S2","subjects":["s2"],"max_bytes":300000}"#,
        ),
        (
            "$JS.API.STREAM.CREATE.S3",
            r#"{"name":"S3","subjects":["s3"],"max_bytes":300000}"#,
        ),
        (
            "$JS.API.STREAM.CREATE.S4",
            r#"{"name":"S4","subjects":["s4"]}"#,
        ),
        ("$JS.API.STREAM.DELETE.S2", ""),
        (
            "$JS.API.STREAM.CREATE.S4",
            r#"{"name":"S4","subjects":["s4"],"max_bytes":300000}"#,
        ),
    ];
    let (theirs, mine) = (
        connect(&format!("nats://{}", reference.addr())).await?,
        connect(&ours.url()).await?,
    );
    let mut differences = Vec::new();
    for (subject, body) in requests {
        let expected = outcome(&api(&theirs, subject, body).await?);
        let got = outcome(&api(&mine, subject, body).await?);
        if expected != got {
            differences.push(format!(
                "{subject} {body}\n  nats-server: {expected}\n  natrix:      {got}"
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} answers differ from {}:\n{}",
        differences.len(),
        requests.len(),
        reference.describe(),
        differences.join("\n")
    );
    Ok(())
}

/// Publishes `size`-byte messages to `subject` until one is refused; returns how many were
/// stored and the refusal.
async fn fill(
    client: &async_nats::Client,
    subject: &str,
    size: usize,
) -> anyhow::Result<(u64, String)> {
    let js = jetstream::new(client.clone());
    let payload = vec![b'x'; size];
    for stored in 0..100u64 {
        if let Err(err) = js
            .publish(subject.to_owned(), payload.clone().into())
            .await?
            .await
        {
            return Ok((stored, err.to_string()));
        }
    }
    anyhow::bail!("the account limit was never enforced")
}

#[tokio::test]
async fn publishes_beyond_the_account_storage_get_10002_and_use_no_sequence() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let limits = AccountLimits {
        max_storage: 2_000,
        max_memory: 1_000,
        ..AccountLimits::default()
    };
    let server = TestServer::start_with(account_config(&dir, Some(limits))).await?;
    let client = connect(&server.url()).await?;
    let js = jetstream::new(client.clone());
    for (name, storage) in [
        ("FILE", stream::StorageType::File),
        ("MEM", stream::StorageType::Memory),
    ] {
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![name.to_lowercase()],
            storage,
            ..Default::default()
        })
        .await?;
    }
    let (stored, refused) = fill(&client, "file", 200).await?;
    assert!(
        refused.contains("resource limits exceeded for account"),
        "{refused}"
    );
    // Each message counts 4 + 200 + 30 bytes: eight fit in 2,000.
    assert_eq!(stored, 8);
    let info = api(&client, "$JS.API.STREAM.INFO.FILE", "").await?;
    assert_eq!(
        info["state"]["last_seq"], 8,
        "a refused publish used a sequence"
    );
    let (stored, refused) = fill(&client, "mem", 200).await?;
    assert!(
        refused.contains("resource limits exceeded for account"),
        "{refused}"
    );
    assert_eq!(stored, 4);
    let account = api(&client, "$JS.API.INFO", "").await?;
    assert_eq!(account["limits"]["max_storage"], 2_000);
    assert_eq!(account["limits"]["max_memory"], 1_000);
    assert_eq!(account["streams"], 2);
    Ok(())
}

#[tokio::test]
async fn an_account_without_jetstream_is_answered_10039() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(account_config(&dir, None)).await?;
    let client = connect(&server.url()).await?;
    for (subject, body, kind) in [
        ("$JS.API.INFO", "", "account_info"),
        (
            "$JS.API.STREAM.CREATE.S",
            r#"{"name":"S","subjects":["s"]}"#,
            "stream_create",
        ),
        ("$JS.API.STREAM.NAMES", "", "stream_names"),
        (
            "$JS.API.CONSUMER.CREATE.S",
            r#"{"stream_name":"S","config":{}}"#,
            "consumer_create",
        ),
    ] {
        let answer = api(&client, subject, body).await?;
        assert_eq!(
            answer,
            serde_json::json!({
                "type": format!("io.nats.jetstream.api.v1.{kind}_response"),
                "error": {"code": 503, "err_code": 10039, "description": "JetStream not enabled for account"},
            }),
            "{subject}"
        );
    }
    // Core messaging is unaffected.
    let mut sub = client.subscribe("core").await?;
    client.publish("core", "hi".into()).await?;
    let msg = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        futures::StreamExt::next(&mut sub),
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("subscription closed"))?;
    assert_eq!(&msg.payload[..], b"hi");
    Ok(())
}

#[tokio::test]
async fn monitoring_names_the_account_and_its_limits() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let limits = AccountLimits {
        max_storage: 1 << 20,
        max_memory: 1 << 19,
        ..AccountLimits::default()
    };
    let server = TestServer::start_with(ServerConfig {
        http_port: Some(0),
        ..account_config(&dir, Some(limits))
    })
    .await?;
    let client = connect(&server.url()).await?;
    let _sub = client.subscribe("watched").await?;
    client.flush().await?;
    let connz = server.monitor_json("/connz?auth=1").await?;
    let conn = &connz["connections"][0];
    assert_eq!(conn["account"], "APP", "{connz}");
    assert_eq!(conn["authorized_user"], "a");
    assert!(conn.get("name_tag").is_none(), "{connz}");
    let accountz = server.monitor_json("/accountz").await?;
    assert_eq!(accountz["accounts"], serde_json::json!(["$G", "APP"]));
    let subsz = server.monitor_json("/subsz?subs=1").await?;
    let list = subsz["subscriptions_list"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("no subscriptions_list: {subsz}"))?;
    assert!(
        list.iter()
            .any(|s| s["subject"] == "watched" && s["account"] == "APP")
    );
    // nats-server details a named account with JetStream even before it has a stream, and
    // shows its limits as the reservations.
    let jsz = server.monitor_json("/jsz?accounts=1").await?;
    let detail = &jsz["account_details"][0];
    assert_eq!(detail["name"], "APP", "{jsz}");
    assert_eq!(detail["reserved_storage"], 1 << 20);
    assert_eq!(detail["reserved_memory"], 1 << 19);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_limit_holds_across_a_cluster_whichever_node_creates() -> anyhow::Result<()> {
    let nodes = crate::js_cluster::start_cluster_configured(3, |config| {
        config.account.jetstream = Some(AccountLimits {
            max_streams: 2,
            ..AccountLimits::default()
        });
    })
    .await?;
    // Each create is retried (bounded) while the meta group has not yet registered every node
    // for placement (10005); answers past that are the test's.
    let create = |i: usize, name: &str| {
        let client = nodes[i].client.clone();
        let body = format!(r#"{{"name":"{name}","subjects":["{name}"]}}"#);
        let subject = format!("$JS.API.STREAM.CREATE.{name}");
        async move {
            let deadline = std::time::Instant::now() + crate::js_cluster::CLUSTER_WAIT;
            loop {
                let answer = api(&client, &subject, &body).await?;
                if answer["error"]["err_code"] != 10005 || std::time::Instant::now() > deadline {
                    return anyhow::Ok(answer);
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    // Three creates at once through three nodes: one of them must be refused.
    let (a, b, c) = tokio::join!(create(0, "A"), create(1, "B"), create(2, "C"));
    let answers = [a?, b?, c?];
    let refused: Vec<&serde_json::Value> = answers
        .iter()
        .filter(|answer| answer.get("error").is_some())
        .collect();
    assert_eq!(refused.len(), 1, "{answers:?}");
    assert_eq!(refused[0]["error"]["err_code"], 10027, "{answers:?}");
    // And later ones through any node too.
    for i in 0..3 {
        let answer = create(i, &format!("D{i}")).await?;
        assert_eq!(answer["error"]["err_code"], 10027, "{answer}");
    }
    Ok(())
}
