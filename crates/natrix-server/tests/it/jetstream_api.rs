//! The JetStream API as raw requests: account info, stream requests and their error replies, a
//! PubAck naming the domain, and a node without JetStream, where nobody answers and requesters
//! get no-responders. Texts and
//! codes were checked against nats-server 2.15.1.

use std::time::Duration;

use natrix_testkit::TestServer;

#[tokio::test]
async fn without_jetstream_api_requests_get_no_responders() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = async_nats::connect(server.url()).await?;
    let result = tokio::time::timeout(
        Duration::from_secs(2),
        client.request("$JS.API.INFO", "".into()),
    )
    .await?;
    let err = result.expect_err("nobody serves the JetStream API");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    Ok(())
}

use crate::support;
use support::{Node, within};

/// Sends a raw API request and returns the JSON reply.
async fn api(node: &Node, subject: &str, body: &str) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(&api_text(node, subject, body).await?)?)
}

/// Sends a raw API request and returns the reply's text.
async fn api_text(node: &Node, subject: &str, body: &str) -> anyhow::Result<String> {
    let reply = within(
        subject,
        node.client
            .request(format!("$JS.API.{subject}"), body.to_owned().into()),
    )
    .await??;
    Ok(String::from_utf8(reply.payload.to_vec())?)
}

/// Asserts the reply is exactly the error `code`/`err_code`/`description`.
fn assert_error(reply: &serde_json::Value, code: u64, err_code: u64, description: &str) {
    assert_eq!(
        reply["error"],
        serde_json::json!({"code": code, "err_code": err_code, "description": description}),
        "{reply}"
    );
}

#[tokio::test]
async fn account_info_reports_usage_after_streams_are_created_and_written() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("A", &["a.>"]).await?;
    node.stream("B", &["b"]).await?;
    node.publish("a.x", "0123456789").await?;
    let info = api(&node, "INFO", "").await?;
    assert_eq!(
        info["type"],
        "io.nats.jetstream.api.v1.account_info_response"
    );
    assert_eq!(info["streams"], 2);
    assert_eq!(info["consumers"], 0);
    assert_eq!(info["storage"], 3 + 10 + 30);
    assert_eq!(info["memory"], 0);
    assert_eq!(info["limits"]["max_streams"], -1);
    Ok(())
}

#[tokio::test]
async fn stream_create_replies_with_the_config_nats_server_reports() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let text = api_text(
        &node,
        "STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>"]}"#,
    )
    .await?;
    // nats-server 2.10's config fields, byte for byte (Go escapes `>`).
    assert!(
        text.contains(r#""config":{"name":"S","subjects":["s.\u003e"],"retention":"limits","max_consumers":-1,"max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msgs_per_subject":-1,"max_msg_size":-1,"discard":"old","storage":"file","num_replicas":1,"duplicate_window":120000000000,"compression":"none","allow_direct":false,"mirror_direct":false,"sealed":false,"deny_delete":false,"deny_purge":false,"allow_rollup_hdrs":false,"consumer_limits":{}}"#),
        "{text}"
    );
    assert!(text.contains(r#""state":{"messages":0,"bytes":0,"first_seq":0,"first_ts":"0001-01-01T00:00:00Z","last_seq":0,"last_ts":"0001-01-01T00:00:00Z","consumer_count":0}"#), "{text}");
    assert!(text.ends_with(r#","did_create":true}"#), "{text}");
    Ok(())
}

#[tokio::test]
async fn stream_create_refuses_invalid_requests_with_nats_server_errors() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("S", &["s.>"]).await?;
    let create = |name: &'static str, body: &'static str| {
        let node = &node;
        async move { api(node, &format!("STREAM.CREATE.{name}"), body).await }
    };
    let r = create("S", r#"{"name":"S","subjects":["s.>"],"max_msgs":5}"#).await?;
    assert_error(
        &r,
        400,
        10058,
        "stream name already in use with a different configuration",
    );
    let r = create("T", r#"{"name":"T","subjects":["s.x"]}"#).await?;
    assert_error(&r, 400, 10065, "subjects overlap with an existing stream");
    let r = create("T", r#"{"name":"U","subjects":["t"]}"#).await?;
    assert_error(
        &r,
        400,
        10056,
        "stream name in subject does not match request",
    );
    // nats-server 2.15: an empty body is an empty config, whose name does not match.
    let r = create("T", "").await?;
    assert_error(
        &r,
        400,
        10056,
        "stream name in subject does not match request",
    );
    let r = create("T", "{bad").await?;
    assert_eq!(r["error"]["err_code"], 10025, "{r}");
    assert!(
        r["error"]["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("invalid JSON: ")),
        "{r}"
    );
    let r = create("T*", r#"{"name":"T*"}"#).await?;
    assert_error(
        &r,
        500,
        10052,
        r"stream name is required and can not contain '.', '*', '>', '\', '/'",
    );
    let r = create("T", r#"{"name":"T","subjects":["t..x"]}"#).await?;
    assert_error(&r, 500, 10052, "invalid subject");
    let r = create("T", r#"{"name":"T","subjects":[">"]}"#).await?;
    assert_error(
        &r,
        500,
        10052,
        "capturing all subjects requires no-ack to be true",
    );
    let r = create("T", r#"{"name":"T","subjects":["t.*","t.x"]}"#).await?;
    assert_error(&r, 500, 10052, r#"subject "t.*" overlaps with "t.x""#);
    let r = create("T", r#"{"name":"T","max_age":1000}"#).await?;
    assert_error(&r, 500, 10052, "max age needs to be >= 100ms");
    let r = create("T", r#"{"name":"T","num_replicas":3}"#).await?;
    assert_error(
        &r,
        500,
        10074,
        "replicas > 1 not supported in non-clustered mode",
    );
    let r = create("T", r#"{"name":"T","sealed":true}"#).await?;
    assert_error(
        &r,
        500,
        10052,
        "stream configuration for create can not be sealed",
    );
    // None of them created anything.
    let names = api(&node, "STREAM.NAMES", "").await?;
    assert_eq!(names["streams"], serde_json::json!(["S"]));
    Ok(())
}

#[tokio::test]
async fn stream_update_checks_the_name_storage_and_replicas() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("S", &["s.>"]).await?;
    let r = api(
        &node,
        "STREAM.UPDATE.S",
        r#"{"name":"S","subjects":["s.>"],"storage":"memory"}"#,
    )
    .await?;
    assert_error(
        &r,
        500,
        10052,
        "stream configuration update can not change storage type",
    );
    let r = api(
        &node,
        "STREAM.UPDATE.S",
        r#"{"name":"S","subjects":["s.>"],"num_replicas":3}"#,
    )
    .await?;
    assert_error(
        &r,
        500,
        10074,
        "replicas > 1 not supported in non-clustered mode",
    );
    let r = api(&node, "STREAM.UPDATE.S", r#"{"name":"X"}"#).await?;
    assert_error(
        &r,
        400,
        10056,
        "stream name in subject does not match request",
    );
    let r = api(&node, "STREAM.UPDATE.S", "").await?;
    assert_error(
        &r,
        500,
        10052,
        r"stream name is required and can not contain '.', '*', '>', '\', '/'",
    );
    let r = api(&node, "STREAM.UPDATE.Z", r#"{"name":"Z"}"#).await?;
    assert_error(&r, 404, 10059, "stream not found");
    Ok(())
}

#[tokio::test]
async fn stream_info_pages_subjects_and_lists_deleted_sequences() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("S", &["s.>"]).await?;
    for subject in ["s.a", "s.b", "s.a", "s.c"] {
        node.publish(subject, "x").await?;
    }
    let r = api(&node, "STREAM.MSG.DELETE.S", r#"{"seq":2}"#).await?;
    assert_eq!(r["success"], true, "{r}");
    let r = api(
        &node,
        "STREAM.INFO.S",
        r#"{"deleted_details":true,"subjects_filter":"s.>"}"#,
    )
    .await?;
    assert_eq!(
        (r["total"].clone(), r["offset"].clone(), r["limit"].clone()),
        (2.into(), 0.into(), 100_000.into()),
        "{r}"
    );
    assert_eq!(
        r["state"]["subjects"],
        serde_json::json!({"s.a": 2, "s.c": 1})
    );
    assert_eq!(r["state"]["deleted"], serde_json::json!([2]));
    assert_eq!(r["state"]["num_deleted"], 1);
    let r = api(
        &node,
        "STREAM.INFO.S",
        r#"{"subjects_filter":">","offset":1}"#,
    )
    .await?;
    assert_eq!(r["state"]["subjects"], serde_json::json!({"s.c": 1}), "{r}");
    let r = api(&node, "STREAM.INFO.S", r#"{"subjects_filter":"zz"}"#).await?;
    assert!(
        r["state"].get("subjects").is_none(),
        "no matching subject: omitted, {r}"
    );
    let r = api(&node, "STREAM.INFO.S", "").await?;
    assert!(
        r["state"].get("deleted").is_none() && r["state"].get("subjects").is_none(),
        "{r}"
    );
    let r = api(&node, "STREAM.INFO.Z", "").await?;
    assert_error(&r, 404, 10059, "stream not found");
    Ok(())
}

#[tokio::test]
async fn stream_names_filter_by_subject_and_report_none_as_null() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("A", &["a.>"]).await?;
    node.stream("B", &["b.*"]).await?;
    let r = api(&node, "STREAM.NAMES", r#"{"subject":"b.x"}"#).await?;
    assert_eq!(r["streams"], serde_json::json!(["B"]));
    assert_eq!(
        (r["total"].clone(), r["limit"].clone()),
        (1.into(), 1024.into())
    );
    let r = api(&node, "STREAM.NAMES", r#"{"subject":"zz"}"#).await?;
    assert_eq!(
        (r["total"].clone(), r["streams"].clone()),
        (0.into(), serde_json::Value::Null)
    );
    let r = api(&node, "STREAM.NAMES", r#"{"offset":10}"#).await?;
    assert_eq!(r["offset"], 2, "the offset is clamped to the total");
    let r = api(&node, "STREAM.LIST", "").await?;
    assert_eq!(r["total"], 2);
    assert_eq!(r["streams"][1]["config"]["name"], "B");
    let text = api_text(&node, "STREAM.NAMES", "{bad").await?;
    assert!(
        text.ends_with(r#","total":0,"offset":0,"limit":0,"streams":null}"#),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn purge_get_and_delete_answer_with_nats_server_codes() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("S", &["s.>"]).await?;
    for i in 0..6 {
        node.publish(if i % 2 == 0 { "s.even" } else { "s.odd" }, i.to_string())
            .await?;
    }
    let r = api(&node, "STREAM.PURGE.S", r#"{"filter":"s.odd","keep":1}"#).await?;
    assert_eq!(
        (r["success"].clone(), r["purged"].clone()),
        (true.into(), 2.into()),
        "{r}"
    );
    let r = api(&node, "STREAM.PURGE.S", r#"{"seq":3,"keep":1}"#).await?;
    assert_error(&r, 400, 10003, "bad request");
    assert_eq!(
        r["purged"], 0,
        "nats-server's error reply carries purged 0: {r}"
    );
    let r = api(&node, "STREAM.PURGE.S", r#"{"seq":3}"#).await?;
    assert_eq!(r["purged"], 1, "{r}");

    let text = api_text(&node, "STREAM.MSG.GET.S", r#"{"seq":5}"#).await?;
    assert!(
        text.contains(r#""message":{"subject":"s.even","seq":5,"data":"NA==","time":""#),
        "{text}"
    );
    let r = api(&node, "STREAM.MSG.GET.S", r#"{"last_by_subj":"s.even"}"#).await?;
    assert_eq!(r["message"]["seq"], 5);
    let r = api(
        &node,
        "STREAM.MSG.GET.S",
        r#"{"next_by_subj":"s.odd","seq":1}"#,
    )
    .await?;
    assert_eq!(r["message"]["seq"], 6);
    let r = api(&node, "STREAM.MSG.GET.S", r#"{"seq":1}"#).await?;
    assert_error(&r, 404, 10037, "no message found");
    let r = api(
        &node,
        "STREAM.MSG.GET.S",
        r#"{"seq":5,"last_by_subj":"s.even"}"#,
    )
    .await?;
    assert_error(&r, 400, 10003, "bad request");
    let r = api(&node, "STREAM.MSG.GET.S", "").await?;
    assert_error(&r, 400, 10003, "bad request");

    let r = api(&node, "STREAM.MSG.DELETE.S", r#"{"seq":5}"#).await?;
    assert_eq!(r["success"], true, "{r}");
    let r = api(&node, "STREAM.MSG.DELETE.S", r#"{"seq":5}"#).await?;
    assert_error(&r, 400, 10043, "sequence 5 not found");
    let r = api(&node, "STREAM.MSG.DELETE.S", r#"{"seq":99}"#).await?;
    assert_error(&r, 500, 10057, "stream store EOF");
    let r = api(&node, "STREAM.MSG.DELETE.S", r#"{"seq":1}"#).await?;
    assert_error(&r, 500, 10057, "no message found");
    Ok(())
}

#[tokio::test]
async fn direct_get_answers_with_headers_or_a_status() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream_with(async_nats::jetstream::stream::Config {
        name: "D".into(),
        subjects: vec!["d.>".into()],
        allow_direct: true,
        ..Default::default()
    })
    .await?;
    node.publish("d.a", "one").await?;
    node.publish("d.a", "two").await?;
    let get = |subject: &'static str, body: &'static str| {
        let node = &node;
        async move {
            within(
                subject,
                node.client
                    .request(format!("$JS.API.DIRECT.GET.{subject}"), body.into()),
            )
            .await?
            .map_err(anyhow::Error::from)
        }
    };
    let m = get("D", r#"{"seq":1}"#).await?;
    assert_eq!(m.payload, "one");
    let h = m
        .headers
        .ok_or_else(|| anyhow::anyhow!("direct get reply without headers"))?;
    assert_eq!(h.get("Nats-Sequence").map(|v| v.as_str()), Some("1"));
    assert_eq!(h.get("Nats-Subject").map(|v| v.as_str()), Some("d.a"));
    let m = get("D.d.a", "").await?;
    assert_eq!(
        m.payload, "two",
        "last message of the subject in the request subject"
    );
    for (body, status, text) in [
        (r#"{"seq":9}"#, 404, "Message Not Found"),
        ("", 408, "Empty Request"),
        (r#"{"seq":0}"#, 408, "Empty Request"),
        ("{bad", 408, "Malformed Request"),
        (r#"{"seq":1,"last_by_subj":"d.a"}"#, 408, "Bad Request"),
    ] {
        let m = get("D", body).await?;
        assert_eq!(m.status.map(|s| s.as_u16()), Some(status), "{body}");
        assert_eq!(m.description.as_deref(), Some(text), "{body}");
    }
    Ok(())
}

#[tokio::test]
async fn direct_get_without_allow_direct_or_stream_gets_no_responders() -> anyhow::Result<()> {
    let node = Node::start().await?;
    node.stream("PLAIN", &["plain.>"]).await?;
    node.publish("plain.a", "x").await?;
    for subject in ["$JS.API.DIRECT.GET.PLAIN", "$JS.API.DIRECT.GET.MISSING"] {
        let result = within(subject, node.client.request(subject, r#"{"seq":1}"#.into())).await?;
        let err = result.expect_err("nobody serves direct get here");
        assert_eq!(
            err.kind(),
            async_nats::RequestErrorKind::NoResponders,
            "{subject}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_pub_ack_names_the_jetstream_domain() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(natrix_server::ServerConfig {
        jetstream: Some(natrix_server::JetStreamConfig {
            store_dir: Some(dir.path().to_path_buf()),
            domain: Some("hub".into()),
            ..natrix_server::JetStreamConfig::default()
        }),
        ..natrix_testkit::test_config()
    })
    .await?;
    let client = async_nats::connect(server.url()).await?;
    let created = crate::support::api_request(
        &client,
        "$JS.API.STREAM.CREATE.D",
        r#"{"name":"D","subjects":["d"]}"#,
    )
    .await?;
    assert!(created["error"].is_null(), "{created}");
    // The bytes nats-server 2.15.1 answers with `jetstream { domain: hub }`.
    let ack = client.request("d", "hi".into()).await?;
    assert_eq!(
        std::str::from_utf8(&ack.payload)?,
        r#"{"stream":"D","domain":"hub","seq":1}"#
    );
    server.shutdown().await;
    Ok(())
}
