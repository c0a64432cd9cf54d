use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use super::{ClientTls, TlsEndpoint, TlsListener, error_chain, is_tls_failure};
use crate::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
#[error("connecting: {0}")]
struct Outer(#[source] std::io::Error);

#[test]
fn a_rejected_certificate_is_told_apart_from_an_unreachable_peer() {
    let rejected = Outer(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
    ));
    assert!(is_tls_failure(&rejected));
    let refused = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
    assert!(!is_tls_failure(&refused));
}

#[test]
fn causes_are_shown_once() {
    let err = Outer(std::io::Error::other("bad certificate"));
    // The outer text already carries the io::Error's.
    assert_eq!(error_chain(&err), "connecting: bad certificate");
}

/// Upper bound for anything these tests wait for.
const WAIT: Duration = Duration::from_secs(5);

/// A [`TlsListener`] on loopback with a fresh certificate, served by a task that forwards
/// every finished connection; and a connector that trusts the certificate.
struct Served {
    addr: std::net::SocketAddr,
    finished: tokio::sync::mpsc::Receiver<tokio_rustls::server::TlsStream<TcpStream>>,
    connector: TlsConnector,
    _dir: tempfile::TempDir,
}

async fn serve(max_pending: usize, timeout: Duration) -> anyhow::Result<Served> {
    let dir = tempfile::tempdir()?;
    let files = natrix_testkit::tls::TestCa::new("listener")?.issue(dir.path(), "server")?;
    let tls = ClientTls::load(&TlsConfig {
        timeout,
        ..TlsConfig::new(&files.cert_file, &files.key_file)
    })?;
    let tcp = TcpListener::bind("127.0.0.1:0").await?;
    let addr = tcp.local_addr()?;
    let listener = TlsListener::new(
        tcp,
        tls.acceptor,
        timeout,
        max_pending,
        TlsEndpoint::Monitoring,
    );
    let (tx, finished) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut incoming = std::pin::pin!(listener.into_stream());
        while let Some(Ok(tls)) = incoming.next().await {
            if tx.send(tls).await.is_err() {
                break;
            }
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(&files.ca_file)?)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Served {
        addr,
        finished,
        connector: TlsConnector::from(Arc::new(config)),
        _dir: dir,
    })
}

/// Reads until the server closes the socket; errors if it stays open for [`WAIT`].
async fn closed_by_server(mut socket: TcpStream) -> anyhow::Result<()> {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(WAIT, socket.read(&mut buf)).await? {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn sockets_beyond_the_handshake_cap_are_closed_and_a_freed_slot_serves_a_client()
-> anyhow::Result<()> {
    // A handshake timeout far beyond the test's waits: a close can only be the cap's doing.
    let mut served = serve(1, Duration::from_secs(60)).await?;
    let silent = TcpStream::connect(served.addr).await?;
    let over_the_cap = TcpStream::connect(served.addr).await?;
    closed_by_server(over_the_cap).await?;
    // The silent socket gives up; its slot frees once the listener sees the failed handshake,
    // so a client may need a few tries.
    drop(silent);
    let deadline = tokio::time::Instant::now() + WAIT;
    let client = loop {
        let tcp = TcpStream::connect(served.addr).await?;
        let name = ServerName::try_from("localhost")?;
        match tokio::time::timeout(WAIT, served.connector.connect(name, tcp)).await? {
            Ok(client) => break client,
            Err(err) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%err, "retrying");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => anyhow::bail!("no slot freed: {err}"),
        }
    };
    let accepted = tokio::time::timeout(WAIT, served.finished.recv())
        .await?
        .ok_or_else(|| anyhow::anyhow!("listener ended"))?;
    assert_eq!(
        accepted.get_ref().0.peer_addr()?,
        client.get_ref().0.local_addr()?
    );
    Ok(())
}

#[tokio::test]
async fn a_silent_socket_is_closed_after_the_handshake_timeout() -> anyhow::Result<()> {
    let served = serve(4, Duration::from_millis(200)).await?;
    let started = tokio::time::Instant::now();
    closed_by_server(TcpStream::connect(served.addr).await?).await?;
    assert!(started.elapsed() >= Duration::from_millis(200));
    Ok(())
}
