//! The monitoring endpoint as an attacker who can reach it would see it: no endpoint, with any
//! detail asked for, shows a password or token (nats-server shows the user name in /connz only
//! with `auth=true`, and never a credential), not even one a rejected client tried; and the
//! endpoint can listen on loopback only while clients connect from anywhere.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_nats::ConnectOptions;
use async_nats::jetstream::{self, consumer, stream};
use natrix_server::{AuthConfig, JetStreamConfig, ServerConfig, UserConfig};
use natrix_testkit::{TestServer, test_config};
use tokio::net::TcpStream;

/// Every endpoint, with every detail it can be asked for.
const ENDPOINTS: &[&str] = &[
    "/",
    "/varz",
    "/connz",
    "/connz?auth=true",
    "/connz?auth=true&subs=1",
    "/connz?auth=true&subs=detail&state=all",
    "/connz?auth=true&subs=detail&state=closed",
    "/subsz",
    "/subsz?subs=1",
    "/routez?subs=1",
    "/gatewayz",
    "/leafz",
    "/accountz",
    "/jsz",
    "/jsz?accounts=true&streams=true&consumers=true&config=true",
    "/healthz",
    "/metrics",
];

fn secured(auth: AuthConfig, dir: &tempfile::TempDir) -> ServerConfig {
    ServerConfig {
        http_port: Some(0),
        auth,
        jetstream: Some(JetStreamConfig {
            store_dir: Some(dir.path().to_path_buf()),
            ..JetStreamConfig::default()
        }),
        ..test_config()
    }
}

/// Gives the monitoring endpoints something to show: a stream, a consumer, messages, a
/// subscription, a request.
async fn exercise(client: &async_nats::Client) -> anyhow::Result<()> {
    let js = jetstream::new(client.clone());
    let orders = js
        .create_stream(stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await?;
    js.publish("orders.1", "x".into()).await?.await?;
    orders
        .create_consumer(consumer::pull::Config {
            durable_name: Some("worker".into()),
            ..Default::default()
        })
        .await?;
    let _sub = client.subscribe("watch.>").await?;
    client.flush().await?;
    Ok(())
}

/// Fetches every endpoint and fails if any body contains one of `secrets`.
async fn assert_no_endpoint_shows(server: &TestServer, secrets: &[&str]) -> anyhow::Result<()> {
    for path in ENDPOINTS {
        let response = server.monitor_get(path).await?;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        for secret in secrets {
            assert!(
                !response.body.contains(secret),
                "{path} shows the secret {secret:?}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn no_monitoring_endpoint_shows_a_password_even_with_every_detail() -> anyhow::Result<()> {
    let password = "Pw4monitoringOnlyNeverShown";
    let guess = "GuessedPwOfARejectedClient";
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(secured(
        AuthConfig {
            user: Some("alice".into()),
            password: Some(password.into()),
            ..AuthConfig::default()
        },
        &dir,
    ))
    .await?;
    let client = ConnectOptions::with_user_and_password("alice".into(), password.into())
        .name("authed")
        .connect(server.url())
        .await?;
    exercise(&client).await?;
    let rejected = ConnectOptions::with_user_and_password("alice".into(), guess.into())
        .max_reconnects(1)
        .connect(server.url())
        .await;
    assert!(rejected.is_err(), "a wrong password is refused");

    assert_no_endpoint_shows(&server, &[password, guess]).await?;
    let connz = server.monitor_json("/connz?auth=true").await?;
    let authed = connz["connections"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "authed"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(authed["authorized_user"], "alice", "{connz:#}");

    // Nor after the client is gone (closed connections are kept for /connz).
    drop(client);
    assert_no_endpoint_shows(&server, &[password, guess]).await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn no_monitoring_endpoint_shows_a_token_even_with_every_detail() -> anyhow::Result<()> {
    let token = "Tok4monitoringOnlyNeverShown";
    let guess = "GuessedTokOfARejectedClient";
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(secured(
        AuthConfig {
            token: Some(token.into()),
            ..AuthConfig::default()
        },
        &dir,
    ))
    .await?;
    let client = ConnectOptions::with_token(token.into())
        .name("tokened")
        .connect(server.url())
        .await?;
    exercise(&client).await?;
    let rejected = ConnectOptions::with_token(guess.into())
        .max_reconnects(1)
        .connect(server.url())
        .await;
    assert!(rejected.is_err(), "a wrong token is refused");

    assert_no_endpoint_shows(&server, &[token, guess]).await?;
    drop(client);
    assert_no_endpoint_shows(&server, &[token, guess]).await?;
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn no_monitoring_endpoint_shows_the_passwords_or_hashes_of_configured_users()
-> anyhow::Result<()> {
    let plain = "PlainUserPw4monitoring";
    // bcrypt (cost 4) of "HashedUserPw4monitoring".
    let password = "HashedUserPw4monitoring";
    let hash = "$2b$04$Dyu1JYCUbcLyN5tV5sv1u.QrKwH9oLcvYRd2RQLBtRYQ3CHdDQN8m";
    let dir = tempfile::tempdir()?;
    let user = |name: &str, password: &str| UserConfig {
        user: Some(name.into()),
        password: Some(password.into()),
        ..UserConfig::default()
    };
    let server = TestServer::start_with(secured(
        AuthConfig {
            users: vec![user("plain", plain), user("hashed", hash)],
            ..AuthConfig::default()
        },
        &dir,
    ))
    .await?;
    let first = ConnectOptions::with_user_and_password("plain".into(), plain.into())
        .name("plain-user")
        .connect(server.url())
        .await?;
    exercise(&first).await?;
    let second = ConnectOptions::with_user_and_password("hashed".into(), password.into())
        .name("hashed-user")
        .connect(server.url())
        .await?;
    second.flush().await?;
    // The hash itself is not a password: presenting it is refused.
    let rejected = ConnectOptions::with_user_and_password("hashed".into(), hash.into())
        .max_reconnects(1)
        .connect(server.url())
        .await;
    assert!(
        rejected.is_err(),
        "a bcrypt hash is not accepted as the password"
    );

    let secrets = [plain, password, hash, "$2b$04$"];
    assert_no_endpoint_shows(&server, &secrets).await?;
    drop((first, second));
    assert_no_endpoint_shows(&server, &secrets).await?;
    server.shutdown().await;
    Ok(())
}

/// A non-loopback address of this machine, if it has one.
fn external_ip() -> Option<IpAddr> {
    if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .map(|i| i.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
}

#[tokio::test]
async fn monitoring_can_listen_on_loopback_only_while_clients_connect_from_anywhere()
-> anyhow::Result<()> {
    let server = TestServer::start_with(ServerConfig {
        host: "0.0.0.0".into(),
        http_host: Some("127.0.0.1".into()),
        http_port: Some(0),
        ..test_config()
    })
    .await?;
    let monitor = server.server.monitor_addr().expect("monitoring enabled");
    assert!(monitor.ip().is_loopback(), "monitoring bound to {monitor}");
    assert!(server.addr().ip().is_unspecified());
    let varz = server.monitor_json("/varz").await?;
    assert_eq!(varz["http_host"], "127.0.0.1");
    assert_eq!(varz["host"], "0.0.0.0");

    if let Some(ip) = external_ip() {
        // The client port answers on the machine's address; the monitoring port does not.
        let client_port = SocketAddr::new(ip, server.addr().port());
        let client =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(client_port)).await?;
        assert!(client.is_ok(), "clients reach {client_port}");
        let monitor_there = SocketAddr::new(ip, monitor.port());
        let refused =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(monitor_there)).await?;
        assert!(
            refused.is_err(),
            "monitoring must not be reachable at {monitor_there}"
        );
    } else {
        eprintln!("no non-loopback IPv4 interface: only the bound address was checked");
    }
    server.shutdown().await;
    Ok(())
}
