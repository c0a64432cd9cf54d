//! Configuration reload (`Server::reload`, what SIGHUP runs), as nats-server's: new users get
//! in, changed permissions apply to connected clients, clients the new settings no longer admit
//! are closed, new TLS certificates serve new handshakes, and a
//! change that needs a restart refuses the whole reload.

use std::time::Duration;

use natrix_server::{
    AuthConfig, PermissionsConfig, ServerConfig, SubjectPermissionConfig, TlsConfig, UserConfig,
};
use natrix_testkit::tls::TestCa;
use natrix_testkit::{RawClient, TestServer, test_config};

fn user(name: &str, deny_publish: &[&str]) -> UserConfig {
    UserConfig {
        user: Some(name.into()),
        password: Some(name.into()),
        permissions: (!deny_publish.is_empty()).then(|| PermissionsConfig {
            publish: Some(SubjectPermissionConfig {
                allow: None,
                deny: deny_publish.iter().map(|s| s.to_string()).collect(),
            }),
            ..PermissionsConfig::default()
        }),
        ..UserConfig::default()
    }
}

fn with_users(users: Vec<UserConfig>) -> ServerConfig {
    ServerConfig {
        auth: AuthConfig {
            users,
            ..AuthConfig::default()
        },
        ..test_config()
    }
}

/// Logs in as `name` (password = name); the first answer line: `PONG` or an `-ERR`.
async fn login(server: &TestServer, name: &str) -> anyhow::Result<(RawClient, String)> {
    let mut raw = RawClient::connect(server.addr()).await?;
    raw.send(format!(
        "CONNECT {{\"verbose\":false,\"user\":\"{name}\",\"pass\":\"{name}\"}}\r\nPING\r\n"
    ))
    .await?;
    let line = raw.line().await?;
    Ok((raw, line))
}

#[tokio::test]
async fn a_reload_admits_new_users_changes_permissions_and_closes_revoked_clients()
-> anyhow::Result<()> {
    let start = with_users(vec![user("a", &[]), user("b", &["secret"])]);
    let server = TestServer::start_with(start.clone()).await?;
    let (mut a, answer) = login(&server, "a").await?;
    assert_eq!(answer, "PONG");
    let (mut b, answer) = login(&server, "b").await?;
    assert_eq!(answer, "PONG");
    b.send("PUB secret 1\r\nx\r\nPING\r\n").await?;
    b.expect_err("Permissions Violation for Publish to \"secret\"")
        .await?;
    b.expect_line("PONG").await?;
    assert_eq!(
        login(&server, "c").await?.1,
        "-ERR 'Authorization Violation'"
    );

    let reloaded = ServerConfig {
        auth: AuthConfig {
            users: vec![user("b", &[]), user("c", &[])],
            ..AuthConfig::default()
        },
        ..start
    };
    let changed = server.server.reload(reloaded).await?;
    assert_eq!(changed, ["authorization"]);

    // a is no longer a user: closed, without an -ERR, as nats-server 2.9 closes it.
    let rest = a.expect_closed(Duration::from_secs(5)).await?;
    assert_eq!(rest, "");
    // b stays connected, under its new permissions (the decision it cached is not reused).
    b.send("PUB secret 1\r\nx\r\nPING\r\n").await?;
    b.expect_line("PONG").await?;
    assert_eq!(login(&server, "c").await?.1, "PONG");
    assert_eq!(
        login(&server, "a").await?.1,
        "-ERR 'Authorization Violation'"
    );
    Ok(())
}

#[tokio::test]
async fn a_reload_that_needs_a_restart_changes_nothing() -> anyhow::Result<()> {
    let start = with_users(vec![user("a", &[])]);
    let server = TestServer::start_with(start.clone()).await?;
    let refused = server
        .server
        .reload(ServerConfig {
            port: server.addr().port().wrapping_add(1),
            auth: AuthConfig {
                users: vec![user("b", &[])],
                ..AuthConfig::default()
            },
            ..start.clone()
        })
        .await;
    assert_eq!(
        refused.err().map(|e| e.to_string()),
        Some("config reload not supported for port".to_string())
    );
    assert_eq!(login(&server, "a").await?.1, "PONG");
    assert_eq!(
        login(&server, "b").await?.1,
        "-ERR 'Authorization Violation'"
    );
    // Nothing changed is a reload too.
    assert!(server.server.reload(start).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_reload_serves_new_tls_certificates_to_new_handshakes() -> anyhow::Result<()> {
    let (old_dir, new_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let old = TestCa::new("old")?.issue(old_dir.path(), "server")?;
    let new = TestCa::new("new")?.issue(new_dir.path(), "server")?;
    let start = ServerConfig {
        tls: Some(old.config()),
        ..test_config()
    };
    let server = TestServer::start_with(start.clone()).await?;
    let connect = |files: &natrix_testkit::tls::TlsFiles| {
        let options = async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(files.ca_file.clone())
            .connection_timeout(Duration::from_secs(2));
        let url = server.url();
        async move {
            match tokio::time::timeout(Duration::from_secs(5), options.connect(url)).await {
                Ok(result) => Ok(result?),
                Err(_) => anyhow::bail!("connect timed out"),
            }
        }
    };
    let _client: async_nats::Client = connect(&old).await?;
    let changed = server
        .server
        .reload(ServerConfig {
            tls: Some(TlsConfig {
                timeout: old.config().timeout,
                ..new.config()
            }),
            ..start
        })
        .await?;
    assert_eq!(changed, ["tls"]);
    // A client trusting only the new CA gets in; one trusting only the old one no longer does.
    connect(&new).await?;
    assert!(connect(&old).await.is_err());
    Ok(())
}
