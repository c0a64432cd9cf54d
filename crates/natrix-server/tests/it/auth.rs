//! Single-user authentication (`--user/--pass`, `--auth` token): good credentials connect, bad
//! or missing ones get 'Authorization Violation' and are closed, and a client that never
//! sends CONNECT is timed out. A flood of wrong bcrypt passwords does not keep a right one out.

use std::time::Duration;

use async_nats::ConnectOptions;
use natrix_server::{AuthConfig, Limits, ServerConfig, UserConfig};
use natrix_testkit::{TestServer, test_config};

const CLOSE_WITHIN: Duration = Duration::from_secs(2);

fn user_pass() -> ServerConfig {
    ServerConfig {
        auth: AuthConfig {
            user: Some("alice".into()),
            password: Some("s3cret".into()),
            ..AuthConfig::default()
        },
        ..test_config()
    }
}

fn token() -> ServerConfig {
    ServerConfig {
        auth: AuthConfig {
            token: Some("t0ken".into()),
            ..AuthConfig::default()
        },
        ..test_config()
    }
}

async fn rejected(server: &TestServer, input: &str) -> anyhow::Result<()> {
    let mut raw = server.raw().await?;
    raw.send(input).await?;
    let rest = raw.expect_closed(CLOSE_WITHIN).await?;
    assert_eq!(
        rest, "-ERR 'Authorization Violation'\r\n",
        "reply to {input:?}"
    );
    Ok(())
}

#[tokio::test]
async fn info_says_auth_is_required() -> anyhow::Result<()> {
    let server = TestServer::start_with(user_pass()).await?;
    assert_eq!(server.raw().await?.info_json()?["auth_required"], true);
    Ok(())
}

#[tokio::test]
async fn right_user_and_password_are_accepted() -> anyhow::Result<()> {
    let server = TestServer::start_with(user_pass()).await?;
    let mut raw = server.raw().await?;
    raw.send("CONNECT {\"verbose\":true,\"user\":\"alice\",\"pass\":\"s3cret\"}\r\nPING\r\n")
        .await?;
    raw.expect_line("+OK").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_an_authorization_violation() -> anyhow::Result<()> {
    let server = TestServer::start_with(user_pass()).await?;
    for input in [
        "CONNECT {\"user\":\"alice\",\"pass\":\"nope\"}\r\n",
        "CONNECT {\"user\":\"bob\",\"pass\":\"s3cret\"}\r\n",
        "CONNECT {\"user\":\"alice\"}\r\n",
        "CONNECT {\"auth_token\":\"s3cret\"}\r\n",
        "CONNECT {}\r\n",
    ] {
        rejected(&server, input).await?;
    }
    Ok(())
}

#[tokio::test]
async fn any_operation_before_connect_is_an_authorization_violation() -> anyhow::Result<()> {
    let server = TestServer::start_with(user_pass()).await?;
    for input in [
        "PING\r\n",
        "SUB foo 1\r\n",
        "PUB foo 1\r\nx\r\n",
        "FOO\r\n",
        "PUB foo\r\n",
    ] {
        rejected(&server, input).await?;
    }
    Ok(())
}

#[tokio::test]
async fn right_token_is_accepted_and_others_are_not() -> anyhow::Result<()> {
    let server = TestServer::start_with(token()).await?;
    let mut raw = server.raw().await?;
    raw.handshake(r#"{"verbose":false,"auth_token":"t0ken"}"#)
        .await?;
    for input in [
        "CONNECT {\"auth_token\":\"t0ke\"}\r\n",
        "CONNECT {\"user\":\"t0ken\"}\r\n",
        "CONNECT {\"pass\":\"t0ken\"}\r\n",
    ] {
        rejected(&server, input).await?;
    }
    Ok(())
}

#[tokio::test]
async fn async_nats_connects_with_user_and_password() -> anyhow::Result<()> {
    let server = TestServer::start_with(user_pass()).await?;
    let client = ConnectOptions::new()
        .user_and_password("alice".into(), "s3cret".into())
        .connect(server.url())
        .await?;
    client.flush().await?;
    Ok(())
}

#[tokio::test]
async fn async_nats_connects_with_a_token() -> anyhow::Result<()> {
    let server = TestServer::start_with(token()).await?;
    let client = ConnectOptions::new()
        .token("t0ken".into())
        .connect(server.url())
        .await?;
    client.flush().await?;
    Ok(())
}

#[tokio::test]
async fn async_nats_with_wrong_credentials_fails_to_connect() -> anyhow::Result<()> {
    let server = TestServer::start_with(user_pass()).await?;
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        ConnectOptions::new()
            .user_and_password("alice".into(), "wrong".into())
            .connect(server.url()),
    )
    .await?;
    let err = result.expect_err("wrong password must not connect");
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation
    );
    Ok(())
}

#[tokio::test]
async fn client_that_never_sends_connect_is_timed_out() -> anyhow::Result<()> {
    let server = TestServer::start_with(ServerConfig {
        limits: Limits {
            auth_timeout: Duration::from_millis(200),
            ..Limits::default()
        },
        ..user_pass()
    })
    .await?;
    let mut raw = server.raw().await?;
    let started = tokio::time::Instant::now();
    let rest = raw.expect_closed(CLOSE_WITHIN).await?;
    assert_eq!(rest, "-ERR 'Authentication Timeout'\r\n");
    assert!(started.elapsed() >= Duration::from_millis(150));
    Ok(())
}

#[tokio::test]
async fn without_auth_there_is_no_connect_timeout() -> anyhow::Result<()> {
    let server = TestServer::start_with(ServerConfig {
        limits: Limits {
            auth_timeout: Duration::from_millis(100),
            ..Limits::default()
        },
        ..test_config()
    })
    .await?;
    let mut raw = server.raw().await?;
    raw.expect_silence(Duration::from_millis(400)).await?;
    raw.send("PING\r\n").await?;
    raw.expect_line("PONG").await?;
    Ok(())
}

/// bcrypt of "s3cret" at cost 4.
const S3CRET_BCRYPT: &str = "$2b$04$xaBmIBJnThhjuylTwyw4F.1cryKdT0kzLF/dc.PyqdD90eixfkoeW";

#[tokio::test]
async fn a_flood_of_wrong_bcrypt_passwords_does_not_keep_the_right_one_out() -> anyhow::Result<()> {
    let server = TestServer::start_with(ServerConfig {
        auth: AuthConfig {
            users: vec![UserConfig {
                user: Some("alice".into()),
                password: Some(S3CRET_BCRYPT.into()),
                ..UserConfig::default()
            }],
            ..AuthConfig::default()
        },
        // Checks queue for a few permits; a loaded test machine must not time the queue out.
        limits: Limits {
            auth_timeout: Duration::from_secs(10),
            ..Limits::default()
        },
        ..test_config()
    })
    .await?;
    // 64 guesses in flight at once: far more checks than the node runs at once (at most 16),
    // so most of them wait for a permit, and the right password queues behind them.
    let mut guesses = Vec::new();
    for i in 0..64 {
        let mut raw = server.raw().await?;
        raw.send(format!(
            "CONNECT {{\"verbose\":false,\"user\":\"alice\",\"pass\":\"guess{i}\"}}\r\n"
        ))
        .await?;
        guesses.push(raw);
    }
    let mut right = server.raw().await?;
    right
        .send("CONNECT {\"verbose\":false,\"user\":\"alice\",\"pass\":\"s3cret\"}\r\nPING\r\n")
        .await?;
    right.expect_line("PONG").await?;
    let client = ConnectOptions::new()
        .user_and_password("alice".into(), "s3cret".into())
        .connect(server.url())
        .await?;
    client.flush().await?;
    for mut guess in guesses {
        let rest = guess.expect_closed(Duration::from_secs(10)).await?;
        assert_eq!(rest, "-ERR 'Authorization Violation'\r\n");
    }
    Ok(())
}
