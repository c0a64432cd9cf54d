//! Users, bcrypt passwords, NKeys, `no_auth_user` and per-user permissions, through async-nats
//! and raw TCP. Error texts and behaviour (a violation leaves the connection open; a wildcard
//! subscription does not receive denied subjects; one response per request under
//! `allow_responses`) were checked against nats-server 2.9.10.

use std::time::Duration;

use async_nats::ConnectOptions;
use futures::StreamExt;
use natrix_server::{
    AuthConfig, PermissionsConfig, ResponsePermissionConfig, ServerConfig, SubjectPermissionConfig,
    UserConfig,
};
use natrix_testkit::{TestServer, test_config};

use crate::support::{self, within};

/// bcrypt of "s3cret" at cost 4.
const S3CRET_BCRYPT: &str = "$2b$04$xaBmIBJnThhjuylTwyw4F.1cryKdT0kzLF/dc.PyqdD90eixfkoeW";

fn list(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn rules(allow: Option<&[&str]>, deny: &[&str]) -> Option<SubjectPermissionConfig> {
    Some(SubjectPermissionConfig {
        allow: allow.map(list),
        deny: list(deny),
    })
}

fn user(name: &str, password: &str, permissions: Option<PermissionsConfig>) -> UserConfig {
    UserConfig {
        user: Some(name.into()),
        password: Some(password.into()),
        nkey: None,
        permissions,
    }
}

/// The users of these tests: alice (bcrypt, no limits), bob (limited), svc (a service that
/// may only answer requests), q (queue-group rules), and one NKey user.
fn users(nkey: &str) -> Vec<UserConfig> {
    vec![
        user("alice", S3CRET_BCRYPT, None),
        user(
            "bob",
            "pw",
            Some(PermissionsConfig {
                publish: rules(Some(&["foo.>", "req"]), &["foo.secret"]),
                subscribe: rules(Some(&["foo.*", "_INBOX.>"]), &["foo.bar"]),
                allow_responses: None,
            }),
        ),
        user(
            "svc",
            "pw",
            Some(PermissionsConfig {
                subscribe: rules(Some(&["req"]), &[]),
                allow_responses: Some(ResponsePermissionConfig::default()),
                ..PermissionsConfig::default()
            }),
        ),
        user(
            "q",
            "pw",
            Some(PermissionsConfig {
                subscribe: rules(Some(&["work workers"]), &[]),
                ..PermissionsConfig::default()
            }),
        ),
        UserConfig {
            nkey: Some(nkey.into()),
            permissions: Some(PermissionsConfig {
                publish: rules(Some(&["nk.>"]), &[]),
                ..PermissionsConfig::default()
            }),
            ..UserConfig::default()
        },
    ]
}

async fn start(nkey: &str, no_auth_user: Option<&str>) -> anyhow::Result<TestServer> {
    TestServer::start_with(ServerConfig {
        auth: AuthConfig {
            users: users(nkey),
            no_auth_user: no_auth_user.map(str::to_string),
            ..AuthConfig::default()
        },
        ..test_config()
    })
    .await
}

fn as_user(name: &str, password: &str) -> ConnectOptions {
    ConnectOptions::new().user_and_password(name.into(), password.into())
}

async fn rejected(server: &TestServer, options: ConnectOptions) -> anyhow::Result<()> {
    let result = within("connect", options.connect(server.url())).await?;
    let Err(err) = result else {
        anyhow::bail!("bad credentials must not connect");
    };
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation
    );
    Ok(())
}

#[tokio::test]
async fn users_sign_in_with_plain_and_bcrypt_passwords() -> anyhow::Result<()> {
    let key = nkeys::KeyPair::new_user();
    let server = start(&key.public_key(), None).await?;
    assert_eq!(server.raw().await?.info_json()?["auth_required"], true);
    for (name, password) in [("alice", "s3cret"), ("bob", "pw")] {
        let client = as_user(name, password).connect(server.url()).await?;
        client.flush().await?;
    }
    rejected(&server, as_user("alice", "wrong")).await?;
    rejected(&server, as_user("alice", S3CRET_BCRYPT)).await?;
    rejected(&server, as_user("mallory", "pw")).await?;
    rejected(&server, ConnectOptions::new()).await?;
    Ok(())
}

#[tokio::test]
async fn nkey_users_sign_the_nonce() -> anyhow::Result<()> {
    let key = nkeys::KeyPair::new_user();
    let server = start(&key.public_key(), None).await?;
    let info = server.raw().await?.info_json()?;
    assert_eq!(info["nonce"].as_str().map(str::len), Some(15), "{info}");
    let seed = key.seed()?;
    let client = ConnectOptions::with_nkey(seed)
        .connect(server.url())
        .await?;
    client.publish("nk.ok", "x".into()).await?;
    client.flush().await?;
    let stranger = nkeys::KeyPair::new_user().seed()?;
    rejected(&server, ConnectOptions::with_nkey(stranger)).await?;
    // A signature of another nonce does not do.
    let mut raw = server.raw().await?;
    let old_nonce = info["nonce"].as_str().unwrap_or_default();
    let sig = key.sign(old_nonce.as_bytes())?;
    use base64::Engine;
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
    raw.send(format!(
        "CONNECT {{\"nkey\":\"{}\",\"sig\":\"{sig}\"}}\r\n",
        key.public_key()
    ))
    .await?;
    assert_eq!(
        raw.expect_closed(Duration::from_secs(2)).await?,
        "-ERR 'Authorization Violation'\r\n"
    );
    Ok(())
}

#[tokio::test]
async fn no_auth_user_admits_clients_without_credentials() -> anyhow::Result<()> {
    let key = nkeys::KeyPair::new_user();
    let server = start(&key.public_key(), Some("bob")).await?;
    let mut raw = server.raw().await?;
    assert!(raw.info_json()?.get("auth_required").is_none());
    // Before CONNECT already, the client acts as bob.
    raw.send("SUB bar 1\r\nPING\r\n").await?;
    raw.expect_err("Permissions Violation for Subscription to \"bar\"")
        .await?;
    raw.expect_line("PONG").await?;
    let guest = async_nats::connect(server.url()).await?;
    guest.publish("foo.a", "x".into()).await?;
    guest.flush().await?;
    // Credentials, when given, must be right: they are not replaced by bob's.
    rejected(&server, as_user("alice", "wrong")).await?;
    as_user("alice", "s3cret")
        .connect(server.url())
        .await?
        .flush()
        .await?;
    Ok(())
}

#[tokio::test]
async fn violations_are_reported_and_the_connection_stays_open() -> anyhow::Result<()> {
    let key = nkeys::KeyPair::new_user();
    let server = start(&key.public_key(), None).await?;
    let mut raw = server.raw().await?;
    raw.send("CONNECT {\"verbose\":true,\"user\":\"bob\",\"pass\":\"pw\"}\r\n")
        .await?;
    raw.expect_line("+OK").await?;
    raw.send("PUB foo.secret 1\r\nx\r\n").await?;
    raw.expect_err("Permissions Violation for Publish to \"foo.secret\"")
        .await?;
    raw.send("PUB bar 1\r\nx\r\n").await?;
    raw.expect_err("Permissions Violation for Publish to \"bar\"")
        .await?;
    raw.send("SUB foo.bar 1\r\n").await?;
    raw.expect_err("Permissions Violation for Subscription to \"foo.bar\"")
        .await?;
    raw.send("SUB bar q 2\r\n").await?;
    raw.expect_err("Permissions Violation for Subscription to \"bar\" using queue \"q\"")
        .await?;
    // Allowed operations still work on the same connection.
    raw.send("SUB foo.* 3\r\nPUB foo.a 2\r\nhi\r\n").await?;
    raw.expect_line("+OK").await?;
    raw.expect_line("+OK").await?;
    let (header, payload) = raw.expect_msg().await?;
    assert_eq!(header, "MSG foo.a 3 2");
    assert_eq!(payload, b"hi");
    raw.send("PING\r\n").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn a_wildcard_subscription_does_not_receive_denied_subjects() -> anyhow::Result<()> {
    let key = nkeys::KeyPair::new_user();
    let server = start(&key.public_key(), None).await?;
    let bob = as_user("bob", "pw").connect(server.url()).await?;
    let mut sub = bob.subscribe("foo.*").await?;
    bob.flush().await?;
    let alice = as_user("alice", "s3cret").connect(server.url()).await?;
    alice.publish("foo.bar", "denied".into()).await?;
    alice.publish("foo.baz", "allowed".into()).await?;
    alice.flush().await?;
    let msg = within("message", sub.next())
        .await?
        .expect("subscription open");
    assert_eq!(msg.subject.as_str(), "foo.baz");
    assert_eq!(&msg.payload[..], b"allowed");
    Ok(())
}

/// Publishes `(subject, payload)` pairs in order and waits until the server has them.
async fn publish_all(client: &async_nats::Client, messages: &[(&str, &str)]) -> anyhow::Result<()> {
    for (subject, payload) in messages {
        client
            .publish(subject.to_string(), payload.to_string().into())
            .await?;
    }
    client.flush().await?;
    Ok(())
}

/// A second CONNECT on a connection authenticates again, as in nats-server 2.9.10: wrong
/// credentials close the connection, right ones make it the new user for what follows, and
/// subscriptions already made stay. natrix filters deliveries with the current user's deny list
/// too; nats-server keeps the deny filter its connection built at the first wildcard
/// subscription (and drops it for a user without permissions), so in the last step it would
/// still deliver `foo.bar` (docs/compatibility.md).
#[tokio::test]
async fn a_second_connect_as_another_user_brings_that_users_permissions() -> anyhow::Result<()> {
    let key = nkeys::KeyPair::new_user();
    let server = start(&key.public_key(), None).await?;
    let publisher = as_user("alice", "s3cret").connect(server.url()).await?;
    let bob = "CONNECT {\"verbose\":false,\"user\":\"bob\",\"pass\":\"pw\"}\r\n";
    let mut raw = server.raw().await?;
    raw.send(format!("{bob}SUB foo.* 1\r\nPUB bar 1\r\nx\r\nPING\r\n"))
        .await?;
    raw.expect_err("Permissions Violation for Publish to \"bar\"")
        .await?;
    raw.expect_line("PONG").await?;
    publish_all(&publisher, &[("foo.bar", "1"), ("foo.baz", "2")]).await?;
    assert_eq!(
        raw.expect_msg().await?,
        ("MSG foo.baz 1 1".into(), b"2".to_vec())
    );

    // Alice has no permissions (and a bcrypt password, checked as on a first CONNECT).
    raw.send(
        "CONNECT {\"verbose\":false,\"user\":\"alice\",\"pass\":\"s3cret\"}\r\n\
         PUB bar 1\r\nx\r\nSUB bar 2\r\nPING\r\n",
    )
    .await?;
    raw.expect_line("PONG").await?;
    publish_all(&publisher, &[("foo.bar", "3"), ("bar", "4")]).await?;
    assert_eq!(
        raw.expect_msg().await?,
        ("MSG foo.bar 1 1".into(), b"3".to_vec())
    );
    assert_eq!(
        raw.expect_msg().await?,
        ("MSG bar 2 1".into(), b"4".to_vec())
    );

    // Bob again: his rules for publishing, subscribing and deliveries, on every subscription.
    raw.send(format!("{bob}PUB bar 1\r\nx\r\nSUB foo.bar 3\r\nPING\r\n"))
        .await?;
    raw.expect_err("Permissions Violation for Publish to \"bar\"")
        .await?;
    raw.expect_err("Permissions Violation for Subscription to \"foo.bar\"")
        .await?;
    raw.expect_line("PONG").await?;
    publish_all(
        &publisher,
        &[("foo.bar", "5"), ("foo.baz", "6"), ("bar", "7")],
    )
    .await?;
    assert_eq!(
        raw.expect_msg().await?,
        ("MSG foo.baz 1 1".into(), b"6".to_vec())
    );
    assert_eq!(
        raw.expect_msg().await?,
        ("MSG bar 2 1".into(), b"7".to_vec())
    );

    raw.send("CONNECT {\"user\":\"alice\",\"pass\":\"wrong\"}\r\n")
        .await?;
    assert_eq!(
        raw.expect_closed(Duration::from_secs(2)).await?,
        "-ERR 'Authorization Violation'\r\n"
    );
    Ok(())
}

#[tokio::test]
async fn queue_rules_admit_only_the_named_group() -> anyhow::Result<()> {
    let key = nkeys::KeyPair::new_user();
    let server = start(&key.public_key(), None).await?;
    let mut raw = server.raw().await?;
    raw.handshake(r#"{"verbose":false,"user":"q","pass":"pw"}"#)
        .await?;
    raw.send("SUB work workers 1\r\nSUB work others 2\r\nSUB work 3\r\nPING\r\n")
        .await?;
    raw.expect_err("Permissions Violation for Subscription to \"work\" using queue \"others\"")
        .await?;
    raw.expect_err("Permissions Violation for Subscription to \"work\"")
        .await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn allow_responses_lets_a_service_answer_once_per_request() -> anyhow::Result<()> {
    let key = nkeys::KeyPair::new_user();
    let server = start(&key.public_key(), None).await?;
    let mut svc = server.raw().await?;
    svc.handshake(r#"{"verbose":false,"user":"svc","pass":"pw"}"#)
        .await?;
    svc.send("SUB req 1\r\nPING\r\n").await?;
    svc.expect_line("PONG").await?;
    let bob = as_user("bob", "pw").connect(server.url()).await?;
    let mut inbox = bob.subscribe("_INBOX.x").await?;
    bob.publish_with_reply("req", "_INBOX.x", "hi".into())
        .await?;
    bob.flush().await?;
    let (header, _) = svc.expect_msg().await?;
    assert_eq!(header, "MSG req 1 _INBOX.x 2");
    svc.send("PUB _INBOX.x 3\r\none\r\nPUB _INBOX.x 3\r\ntwo\r\nPUB other 1\r\nx\r\nPING\r\n")
        .await?;
    svc.expect_err("Permissions Violation for Publish to \"_INBOX.x\"")
        .await?;
    svc.expect_err("Permissions Violation for Publish to \"other\"")
        .await?;
    svc.expect_line("PONG").await?;
    let msg = within("response", inbox.next()).await?.expect("inbox open");
    assert_eq!(&msg.payload[..], b"one");
    bob.flush().await?;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), inbox.next())
            .await
            .is_err(),
        "only the first response gets through"
    );
    Ok(())
}

#[tokio::test]
async fn jetstream_api_access_follows_publish_permissions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let readonly = PermissionsConfig {
        publish: rules(Some(&["$JS.API.INFO", "$JS.API.STREAM.INFO.>"]), &[]),
        ..PermissionsConfig::default()
    };
    let server = TestServer::start_with(ServerConfig {
        auth: AuthConfig {
            users: vec![
                user("admin", "pw", None),
                user("viewer", "pw", Some(readonly)),
            ],
            ..AuthConfig::default()
        },
        ..support::js_config(dir.path())
    })
    .await?;
    let admin = as_user("admin", "pw").connect(server.url()).await?;
    let admin_js = async_nats::jetstream::new(admin);
    admin_js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await?;
    let viewer = as_user("viewer", "pw").connect(server.url()).await?;
    let mut viewer_js = async_nats::jetstream::new(viewer.clone());
    // A refused request gets no reply (the server sends the publisher -ERR), so it times out.
    viewer_js.set_timeout(Duration::from_secs(1));
    let mut stream = viewer_js.get_stream("ORDERS").await?;
    assert_eq!(stream.info().await?.config.name, "ORDERS");
    let created = within(
        "stream create",
        viewer_js.create_stream(async_nats::jetstream::stream::Config {
            name: "MINE".into(),
            ..Default::default()
        }),
    )
    .await?;
    assert!(created.is_err(), "viewer may not create streams");
    assert!(
        within("stream info", admin_js.get_stream("MINE"))
            .await?
            .is_err(),
        "no stream was created"
    );
    Ok(())
}
