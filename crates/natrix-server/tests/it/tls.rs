//! TLS for clients and mutual TLS between cluster nodes, with certificates each test makes
//! (rcgen): async-nats over TLS, client certificates, TLS-first, plain-text clients refused,
//! the handshake timeout, bad files refused at start; a 3-node cluster whose routes and Raft
//! traffic need a certificate from the cluster CA, and a node from another CA kept out.

use std::time::{Duration, Instant};

use async_nats::jetstream::stream;
use futures::StreamExt;
use natrix_proto::jetstream::GroupLeaderRequest;
use natrix_proto::jetstream::jet_stream_cluster_client::JetStreamClusterClient;
use natrix_server::{Server, ServerConfig, TlsConfig};
use natrix_testkit::tls::{TestCa, TlsFiles};
use natrix_testkit::{RawClient, TestServer, test_config};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::js_cluster::{
    CLUSTER_WAIT, JsNode, create_stream, node_config, publish_acked, read_all, seed_routes,
    stream_info, wait_for_meta_leader,
};

const WAIT: Duration = Duration::from_secs(5);

fn tls_server_config(tls: TlsConfig) -> ServerConfig {
    ServerConfig {
        http_port: Some(0),
        tls: Some(tls),
        ..test_config()
    }
}

/// async-nats options trusting `files`' CA, TLS required, failing fast.
fn tls_client(files: &TlsFiles) -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(files.ca_file.clone())
        .connection_timeout(Duration::from_secs(2))
}

/// Connects, bounded; `Err` whether the client gives up or the bound passes.
async fn connect(
    options: async_nats::ConnectOptions,
    server: &TestServer,
) -> anyhow::Result<async_nats::Client> {
    match tokio::time::timeout(WAIT, options.connect(server.url())).await {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!("connect timed out"),
    }
}

async fn roundtrip(client: &async_nats::Client, subject: &str) -> anyhow::Result<()> {
    let mut sub = client.subscribe(subject.to_string()).await?;
    client.flush().await?;
    client
        .publish(subject.to_string(), "over tls".into())
        .await?;
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
    assert_eq!(&msg.payload[..], b"over tls");
    Ok(())
}

#[tokio::test]
async fn a_tls_client_publishes_and_receives_and_info_says_tls_is_required() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let files = TestCa::new("clients")?.issue(dir.path(), "server")?;
    let server = TestServer::start_with(tls_server_config(files.config())).await?;

    let client = connect(tls_client(&files), &server).await?;
    let info = client.server_info();
    assert!(info.tls_required, "{info:?}");
    roundtrip(&client, "tls.hello").await?;

    // The INFO before the handshake is plain text and says so, as nats-server's does.
    let raw = RawClient::connect(server.addr()).await?;
    let info = raw.info_json()?;
    assert_eq!(info["tls_required"], true);
    assert!(info.get("tls_verify").is_none(), "{info}");
    let varz = server.monitor_json("/varz").await?;
    assert_eq!(varz["tls_required"], true);
    assert_eq!(varz["tls_timeout"], 2.0);
    // As nats-server with TLS: the authorization timeout defaults to the TLS timeout plus 1 s
    // (set by the binary's option handling; an in-process node keeps what it is given).

    // /connz shows the session in Go's names; the plain-text probe above shows none.
    let connz = server.monitor_json("/connz").await?;
    let conns = connz["connections"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("no connections: {connz}"))?;
    let tls_conn = conns
        .iter()
        .find(|c| c.get("tls_version").is_some())
        .ok_or_else(|| anyhow::anyhow!("no TLS session in /connz: {connz}"))?;
    assert_eq!(tls_conn["tls_version"], "1.3", "{connz}");
    let suite = tls_conn["tls_cipher_suite"].as_str().unwrap_or_default();
    assert!(
        [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256"
        ]
        .contains(&suite),
        "{connz}"
    );
    Ok(())
}

#[tokio::test]
async fn a_plain_text_client_gets_nothing_but_info_and_is_closed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let files = TestCa::new("clients")?.issue(dir.path(), "server")?;
    let server = TestServer::start_with(tls_server_config(files.config())).await?;
    let tls = connect(tls_client(&files), &server).await?;
    let mut secrets = tls.subscribe("secret.>").await?;
    tls.flush().await?;

    let mut plain = RawClient::connect(server.addr()).await?;
    plain
        .send("CONNECT {\"verbose\":true}\r\nSUB secret.> 1\r\nPUB secret.x 4\r\nleak\r\nPING\r\n")
        .await?;
    // A TLS client publishing meanwhile must not reach the plain-text socket.
    tls.publish("secret.y", "hush".into()).await?;
    tls.flush().await?;
    let after_info = plain.expect_closed(WAIT).await?;
    // At most a TLS alert record (content type 21) telling the client its bytes were no TLS;
    // no protocol line, no message.
    assert!(
        after_info.is_empty() || after_info.as_bytes()[0] == 0x15 && after_info.len() <= 7,
        "plain text after INFO: {after_info:?}"
    );

    // Nor did the plain-text PUB get in.
    tls.publish("secret.z", "ok".into()).await?;
    let first = tokio::time::timeout(WAIT, secrets.next()).await?;
    assert_eq!(first.map(|m| m.payload), Some("hush".into()));
    let second = tokio::time::timeout(WAIT, secrets.next()).await?;
    assert_eq!(second.map(|m| m.payload), Some("ok".into()));

    let closed = server.monitor_json("/connz?state=closed").await?;
    let reasons: Vec<String> = closed["connections"]
        .as_array()
        .map(|c| c.iter().map(|c| c["reason"].to_string()).collect())
        .unwrap_or_default();
    assert!(
        reasons.iter().any(|r| r.contains("TLS Handshake Failure")),
        "{reasons:?}"
    );
    Ok(())
}

#[tokio::test]
async fn with_verify_only_a_client_certificate_from_the_ca_gets_in() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("clients")?;
    let server_files = ca.issue(dir.path(), "server")?;
    let alice = ca.issue(dir.path(), "alice")?;
    let mallory = TestCa::new("other")?.issue(dir.path(), "mallory")?;
    let server = TestServer::start_with(tls_server_config(TlsConfig {
        verify: true,
        ..server_files.config()
    }))
    .await?;

    let raw = RawClient::connect(server.addr()).await?;
    assert_eq!(raw.info_json()?["tls_verify"], true);

    let client = connect(
        tls_client(&server_files)
            .add_client_certificate(alice.cert_file.clone(), alice.key_file.clone()),
        &server,
    )
    .await?;
    roundtrip(&client, "verified").await?;

    let without = connect(tls_client(&server_files), &server).await;
    assert!(without.is_err(), "a client without a certificate connected");
    let foreign = connect(
        tls_client(&server_files)
            .add_client_certificate(mallory.cert_file.clone(), mallory.key_file.clone()),
        &server,
    )
    .await;
    assert!(
        foreign.is_err(),
        "a certificate from another CA was accepted"
    );
    Ok(())
}

#[tokio::test]
async fn handshake_first_takes_tls_before_info_and_sends_nothing_in_the_clear() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let files = TestCa::new("clients")?.issue(dir.path(), "server")?;
    let server = TestServer::start_with(tls_server_config(TlsConfig {
        handshake_first: true,
        ..files.config()
    }))
    .await?;

    let client = connect(tls_client(&files).tls_first(), &server).await?;
    assert!(client.server_info().tls_required);
    roundtrip(&client, "first").await?;

    // A client waiting for a plain-text INFO waits in vain.
    let mut plain = tokio::net::TcpStream::connect(server.addr()).await?;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::io::AsyncReadExt::read(&mut plain, &mut buf),
    )
    .await;
    assert!(
        read.is_err(),
        "the server sent {read:?} before the handshake"
    );
    Ok(())
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_tls_timeout() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let files = TestCa::new("clients")?.issue(dir.path(), "server")?;
    let timeout = Duration::from_millis(400);
    for handshake_first in [false, true] {
        let server = TestServer::start_with(tls_server_config(TlsConfig {
            timeout,
            handshake_first,
            ..files.config()
        }))
        .await?;
        let started = Instant::now();
        let mut socket = tokio::net::TcpStream::connect(server.addr()).await?;
        let mut received = Vec::new();
        let closed = tokio::time::timeout(
            WAIT,
            tokio::io::AsyncReadExt::read_to_end(&mut socket, &mut received),
        )
        .await;
        let elapsed = started.elapsed();
        assert!(closed.is_ok(), "still open after {WAIT:?}");
        assert!(
            elapsed >= timeout.saturating_sub(Duration::from_millis(50)),
            "closed after {elapsed:?}, before the timeout"
        );
        let text = String::from_utf8_lossy(&received);
        if handshake_first {
            assert_eq!(text, "", "handshake_first sends nothing in the clear");
        } else {
            assert!(
                text.starts_with("INFO ") && text.ends_with("\r\n"),
                "only the INFO: {text:?}"
            );
        }
        // The node is still serving.
        let options = tls_client(&files);
        let options = if handshake_first {
            options.tls_first()
        } else {
            options
        };
        connect(options, &server).await?;
        server.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn unusable_certificate_files_stop_the_node_at_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let files = TestCa::new("clients")?.issue(dir.path(), "server")?;
    let other = TestCa::new("other")?.issue(dir.path(), "other")?;
    let cases = [
        (
            TlsConfig::new(dir.path().join("missing.pem"), &files.key_file),
            "error parsing X509 certificate/key pair",
        ),
        // The key of another certificate.
        (
            TlsConfig::new(&files.cert_file, &other.key_file),
            "error parsing X509 certificate/key pair",
        ),
        // A key where the certificate should be.
        (
            TlsConfig::new(&files.key_file, &files.key_file),
            "no PEM certificate",
        ),
        (
            TlsConfig {
                verify: true,
                ..TlsConfig::new(&files.cert_file, &files.key_file)
            },
            "needs 'ca_file'",
        ),
        (
            TlsConfig {
                ca_file: Some(files.key_file.clone()),
                verify: true,
                ..TlsConfig::new(&files.cert_file, &files.key_file)
            },
            "failed to parse root ca certificate",
        ),
    ];
    for (tls, expected) in cases {
        let shown = format!("{tls:?}");
        match Server::start(tls_server_config(tls)).await {
            Ok(server) => {
                server.shutdown().await;
                panic!("started with {shown}");
            }
            Err(err) => assert!(err.to_string().contains(expected), "{shown}: {err}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn monitoring_over_https_uses_the_client_certificate() -> anyhow::Result<()> {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir()?;
    let files = TestCa::new("monitor")?.issue(dir.path(), "server")?;
    let server = TestServer::start_with(ServerConfig {
        https_port: Some(0),
        tls: Some(files.config()),
        ..test_config()
    })
    .await?;
    let addr = server
        .server
        .monitor_addr()
        .ok_or_else(|| anyhow::anyhow!("no monitoring address"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_file(
        &files.ca_file,
    )?)?;
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    // A silent socket first: it must not hold up the next client's handshake.
    let _silent = tokio::net::TcpStream::connect(addr).await?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    let mut tls = tokio::time::timeout(WAIT, connector.connect(name, tcp)).await??;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    tokio::time::timeout(WAIT, tls.read_to_string(&mut response)).await??;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    let mut tls = tokio::time::timeout(WAIT, connector.connect(name, tcp)).await??;
    tls.write_all(b"GET /varz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    tokio::time::timeout(WAIT, tls.read_to_string(&mut response)).await??;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let varz: serde_json::Value = serde_json::from_str(body)?;
    assert_eq!(varz["https_port"], addr.port(), "{varz}");
    assert_eq!(varz["http_port"], 0, "{varz}");
    // Plain HTTP on the HTTPS port gets no monitoring data.
    let plain = natrix_testkit::http_get(addr, "/varz").await;
    assert!(
        plain.is_err(),
        "plain HTTP was answered: {:?}",
        plain.map(|r| r.status)
    );
    Ok(())
}

#[tokio::test]
async fn https_monitoring_needs_tls_and_excludes_http() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let files = TestCa::new("monitor")?.issue(dir.path(), "server")?;
    let cases = [
        (
            ServerConfig {
                https_port: Some(0),
                ..test_config()
            },
            "Can't start monitoring: TLS cert and key required for HTTPS",
        ),
        (
            ServerConfig {
                http_port: Some(0),
                https_port: Some(0),
                tls: Some(files.config()),
                ..test_config()
            },
            "can't specify both HTTP (0) and HTTPs (0) ports",
        ),
    ];
    for (config, expected) in cases {
        match Server::start(config).await {
            Ok(server) => {
                server.shutdown().await;
                panic!("started; want {expected:?}");
            }
            Err(err) => assert!(err.to_string().contains(expected), "{err}"),
        }
    }
    Ok(())
}

// --- cluster mTLS --------------------------------------------------------------------------

/// A clustered JetStream node whose cluster endpoint uses `files` (mutual TLS).
async fn start_tls_node(routes: &[String], files: &TlsFiles) -> anyhow::Result<JsNode> {
    let dir = tempfile::tempdir()?;
    let mut config = node_config(routes, dir.path());
    if let Some(cluster) = config.cluster.as_mut() {
        cluster.tls = Some(files.config());
    }
    let server = TestServer::start_with(config).await?;
    let client = async_nats::connect(server.url()).await?;
    let js = async_nats::jetstream::new(client.clone());
    Ok(JsNode {
        server,
        client,
        js,
        _dir: dir,
    })
}

/// A gRPC client of a node's cluster endpoint with `tls` (or plain HTTP/2 without), asking for
/// the meta group's leader: what a node that wants to read Raft state would do.
async fn ask_meta_leader(cluster_addr: &str, tls: Option<ClientTlsConfig>) -> anyhow::Result<()> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{cluster_addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel = endpoint.connect().await?;
    JetStreamClusterClient::new(channel)
        .group_leader(GroupLeaderRequest { group_id: 0 })
        .await?;
    Ok(())
}

fn grpc_tls(ca: &TlsFiles, identity: Option<&TlsFiles>) -> ClientTlsConfig {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca.ca_pem));
    match identity {
        Some(id) => tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem)),
        None => tls,
    }
}

#[tokio::test]
async fn a_cluster_with_mutual_tls_replicates_and_keeps_out_a_node_from_another_ca()
-> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    let ca = TestCa::new("cluster")?;
    let node_files: Vec<TlsFiles> = (1..=3)
        .map(|i| ca.issue(certs.path(), &format!("n{i}")))
        .collect::<anyhow::Result<_>>()?;

    let mut nodes: Vec<JsNode> = Vec::new();
    for files in &node_files {
        let routes = seed_routes(&nodes)?;
        nodes.push(start_tls_node(&routes, files).await?);
    }
    // Raft over TLS: the meta group forms.
    wait_for_meta_leader(&nodes, None).await?;

    // The route mesh over TLS: a message published on one node reaches a subscriber on another.
    let mut sub = nodes[2].client.subscribe("mesh.tls").await?;
    nodes[2].client.flush().await?;
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        nodes[0].client.publish("mesh.tls", "hop".into()).await?;
        nodes[0].client.flush().await?;
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            assert_eq!(&msg.payload[..], b"hop");
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no message across the TLS routes"
        );
    }

    // A replicated stream over TLS.
    create_stream(
        &nodes[0].js,
        stream::Config {
            name: "SECURE".into(),
            subjects: vec!["secure.>".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await?;
    for i in 1..=20u64 {
        let seq = publish_acked(&nodes[1].js, &format!("secure.{i}"), format!("m{i}")).await?;
        assert_eq!(seq, i);
    }
    let info = stream_info(&nodes[2].js, "SECURE").await?;
    assert_eq!(info.state.messages, 20);
    assert_eq!(
        info.cluster.map(|c| c.replicas.len()),
        Some(2),
        "a leader and two replicas"
    );

    // A node with a certificate from another CA dials the seed and is refused both ways.
    let intruder_ca = TestCa::new("intruder")?;
    let intruder_files = intruder_ca.issue(certs.path(), "n4")?;
    let seed = nodes[0]
        .server
        .cluster_addr()
        .ok_or_else(|| anyhow::anyhow!("no cluster address"))?;
    let intruder = start_tls_node(std::slice::from_ref(&seed), &intruder_files).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        intruder.server.server.connected_routes().is_empty(),
        "the intruder has routes: {:?}",
        intruder.server.server.connected_routes()
    );
    for node in &nodes {
        assert_eq!(node.server.server.connected_routes().len(), 2);
    }
    // The cluster keeps serving meanwhile, with its three members.
    for i in 21..=25u64 {
        publish_acked(&nodes[2].js, &format!("secure.{i}"), format!("m{i}")).await?;
    }
    assert_eq!(
        read_all(&nodes[0].js, "SECURE", 25).await?.len(),
        25,
        "every acknowledged message is readable"
    );
    wait_for_meta_leader(&nodes, None).await?;

    // Raft and cluster state are out of reach without a certificate from the cluster CA.
    let own = &node_files[0];
    ask_meta_leader(&seed, Some(grpc_tls(own, Some(own)))).await?;
    assert!(
        ask_meta_leader(&seed, Some(grpc_tls(own, None)))
            .await
            .is_err(),
        "answered a client without a certificate"
    );
    assert!(
        ask_meta_leader(&seed, Some(grpc_tls(own, Some(&intruder_files))))
            .await
            .is_err(),
        "answered a client with a certificate from another CA"
    );
    assert!(
        ask_meta_leader(&seed, None).await.is_err(),
        "answered plain-text HTTP/2"
    );

    intruder.server.shutdown().await;
    crate::js_cluster::shutdown(nodes).await;
    Ok(())
}

#[tokio::test]
async fn cluster_tls_needs_a_ca_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let files = TestCa::new("cluster")?.issue(dir.path(), "n1")?;
    let mut config = natrix_testkit::cluster_config("c", &[]);
    if let Some(cluster) = config.cluster.as_mut() {
        cluster.tls = Some(TlsConfig::new(&files.cert_file, &files.key_file));
    }
    match Server::start(config).await {
        Ok(server) => {
            server.shutdown().await;
            anyhow::bail!("a cluster without a CA to check peers against started");
        }
        Err(err) => assert!(err.to_string().contains("ca_file"), "{err}"),
    }
    Ok(())
}
