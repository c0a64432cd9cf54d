//! TLS for the client listener, the cluster endpoint and HTTPS monitoring: turns a
//! [`TlsConfig`]'s PEM files into rustls configurations (ring provider) once, at start-up, so
//! that a bad file stops the node with a clear error instead of failing every handshake later.
//! When the client handshake happens relative to INFO is the listener's business (`server.rs`);
//! [`TlsListener`], the accept loop that hands only finished TLS streams to tonic (cluster) and
//! axum (monitoring), is here.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::config::TlsConfig;

/// Cluster handshakes in progress at once; connections beyond are dropped at accept, so that a
/// flood of silent sockets cannot pile up tasks (each is bounded by the TLS timeout anyway).
const MAX_PENDING_CLUSTER_HANDSHAKES: usize = 256;

/// After a failed TCP accept (typically EMFILE), wait this long instead of spinning.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Why a TLS configuration cannot be used (worded after nats-server's messages).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("error parsing X509 certificate/key pair: open {}: {source}", path.display())]
    ReadPair {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("error parsing X509 certificate/key pair: no PEM certificate in {}", path.display())]
    NoCertificate { path: std::path::PathBuf },
    #[error("error parsing X509 certificate/key pair: no PEM private key in {}: {reason}", path.display())]
    NoKey {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("error parsing X509 certificate/key pair: {0}")]
    Pair(String),
    #[error("open {}: {source}", path.display())]
    ReadCa {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("failed to parse root ca certificate {}: {reason}", path.display())]
    Ca {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error(
        "TLS verify needs 'ca_file': natrix does not verify client certificates against the system roots"
    )]
    VerifyWithoutCa,
    #[error("cluster TLS needs 'ca_file': peers' certificates are always verified against it")]
    ClusterWithoutCa,
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The ring provider, named explicitly so that no process-wide default is needed (or changed).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pair_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::ReadPair {
        path: path.to_path_buf(),
        source,
    })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pair_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::Pair(format!("{}: {err}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pair_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| TlsError::NoKey {
        path: path.to_path_buf(),
        reason: err.to_string(),
    })
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::ReadCa {
        path: path.to_path_buf(),
        source,
    })?;
    let ca_err = |reason: String| TlsError::Ca {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|err| ca_err(err.to_string()))?;
        roots.add(cert).map_err(|err| ca_err(err.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_err("no PEM certificate".into()));
    }
    Ok(roots)
}

/// A rustls server configuration for `config`; with `require_client_cert`, clients must
/// present a certificate that chains to `ca_file`.
fn server_config(
    config: &TlsConfig,
    require_client_cert: bool,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError::Config(err.to_string()))?;
    let builder = if require_client_cert {
        let ca_file = config.ca_file.as_deref().ok_or(TlsError::VerifyWithoutCa)?;
        let roots = Arc::new(load_roots(ca_file)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|err| TlsError::Config(err.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let certs = load_certs(&config.cert_file)?;
    let key = load_key(&config.key_file)?;
    // rustls checks that the key belongs to the leaf certificate here.
    let mut server = builder
        .with_single_cert(certs, key)
        .map_err(|err| TlsError::Pair(err.to_string()))?;
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(server))
}

/// The client listener's TLS, loaded: clients handshake before (`handshake_first`) or right
/// after INFO, within `timeout`.
#[derive(Clone)]
pub struct ClientTls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) timeout: Duration,
    pub(crate) handshake_first: bool,
    pub(crate) verify: bool,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("timeout", &self.timeout)
            .field("handshake_first", &self.handshake_first)
            .field("verify", &self.verify)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Reads the files of a top-level `tls { }` block.
    pub fn load(config: &TlsConfig) -> Result<ClientTls, TlsError> {
        if config.verify && config.ca_file.is_none() {
            return Err(TlsError::VerifyWithoutCa);
        }
        // Unused without `verify`, but a broken file is still an error, as in nats-server.
        if let (Some(ca_file), false) = (&config.ca_file, config.verify) {
            load_roots(ca_file)?;
        }
        let server = server_config(config, config.verify, &[])?;
        Ok(ClientTls {
            acceptor: TlsAcceptor::from(server),
            timeout: config.timeout,
            handshake_first: config.handshake_first,
            verify: config.verify,
        })
    }
}

/// The cluster endpoint's mutual TLS, loaded: the gRPC server demands a client certificate
/// that chains to `ca_file`, and every outgoing channel presents this node's certificate and
/// verifies the peer's against the same file (nats-server mirrors its route CAs the same way).
#[derive(Clone)]
pub struct ClusterTls {
    acceptor: TlsAcceptor,
    client: ClientTlsConfig,
    timeout: Duration,
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTls")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// Reads the files of a `cluster { tls { } }` block. `verify` is not consulted: the cluster
    /// endpoint always verifies, as nats-server's routes do.
    pub fn load(config: &TlsConfig) -> Result<ClusterTls, TlsError> {
        let ca_file = config
            .ca_file
            .as_deref()
            .ok_or(TlsError::ClusterWithoutCa)?;
        let server = server_config(config, true, &[b"h2"])?;
        // tonic builds its own rustls client from PEM; the files were just checked above.
        let ca_pem = std::fs::read(ca_file).map_err(|source| TlsError::ReadCa {
            path: ca_file.to_path_buf(),
            source,
        })?;
        let cert_pem = read_pair_file(&config.cert_file)?;
        let key_pem = read_pair_file(&config.key_file)?;
        let client = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .identity(Identity::from_pem(cert_pem, key_pem))
            .timeout(config.timeout);
        // Build a connector once so that a configuration tonic rejects fails here, not on the
        // first dial.
        Endpoint::from_static("https://localhost")
            .tls_config(client.clone())
            .map_err(|err| TlsError::Config(error_chain(&err)))?;
        Ok(ClusterTls {
            acceptor: TlsAcceptor::from(server),
            client,
            timeout: config.timeout,
        })
    }

    /// The client side for a peer at `host` (a DNS name or an IP address): its certificate must
    /// carry `host` as a subject alternative name.
    pub fn client_config(&self, host: &str) -> ClientTlsConfig {
        self.client.clone().domain_name(host)
    }

    /// The client side, checking the peer against the host of the URI it is dialled at.
    pub fn client_config_by_uri(&self) -> ClientTlsConfig {
        self.client.clone()
    }

    /// Accepts TCP connections on `listener` and yields those whose TLS handshake succeeded
    /// within the timeout; failures are logged (as nats-server logs route handshake errors) and
    /// closed. Dropping the stream releases the listener and ends the handshakes in progress.
    pub(crate) fn incoming(
        &self,
        listener: TcpListener,
    ) -> impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>> + Send + 'static {
        TlsListener::new(
            listener,
            self.acceptor.clone(),
            self.timeout,
            MAX_PENDING_CLUSTER_HANDSHAKES,
            TlsEndpoint::Cluster,
        )
        .into_stream()
    }
}

/// Which endpoint a [`TlsListener`] serves: how it words its log lines and how loudly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsEndpoint {
    /// HTTPS monitoring: failed handshakes are routine (probes, browsers giving up), so they
    /// are logged at debug level.
    Monitoring,
    /// The cluster endpoint: a failed handshake is a misconfigured or foreign peer, logged at
    /// error level in nats-server's route wording; sockets get TCP_NODELAY for Raft traffic.
    Cluster,
}

impl TlsEndpoint {
    fn nodelay(self) -> bool {
        self == TlsEndpoint::Cluster
    }

    fn log_over_capacity(self, addr: SocketAddr) {
        match self {
            TlsEndpoint::Monitoring => {
                tracing::debug!(%addr, "too many monitoring TLS handshakes in progress; closing")
            }
            TlsEndpoint::Cluster => {
                tracing::warn!(%addr, "too many cluster TLS handshakes in progress, closing")
            }
        }
    }

    fn log_accept_error(self, err: &io::Error) {
        match self {
            TlsEndpoint::Monitoring => {
                tracing::error!(%err, "error accepting monitoring connection")
            }
            TlsEndpoint::Cluster => tracing::error!(%err, "error accepting cluster connection"),
        }
    }

    fn log_failed(self, addr: SocketAddr, err: &io::Error) {
        match self {
            TlsEndpoint::Monitoring => {
                tracing::debug!(%addr, %err, "monitoring TLS handshake failed")
            }
            TlsEndpoint::Cluster => tracing::error!(%addr, "TLS route handshake error: {err}"),
        }
    }

    fn log_timed_out(self, addr: SocketAddr) {
        match self {
            TlsEndpoint::Monitoring => tracing::debug!(%addr, "monitoring TLS handshake timed out"),
            TlsEndpoint::Cluster => tracing::error!(%addr, "TLS route handshake timeout"),
        }
    }
}

/// A TCP listener whose connections come out of a finished TLS handshake. Handshakes run
/// concurrently (a silent socket cannot hold up the others), each within `timeout`, and at most
/// `max_pending` at once: sockets beyond are closed at accept, so a flood of silent sockets
/// costs at most that many tasks for at most that long. Serves the cluster endpoint (as a
/// stream, [`TlsListener::into_stream`]) and HTTPS monitoring (`monitor::HttpsListener`).
pub(crate) struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    timeout: Duration,
    max_pending: usize,
    endpoint: TlsEndpoint,
    handshakes: JoinSet<(SocketAddr, HandshakeOutcome)>,
}

impl TlsListener {
    pub fn new(
        tcp: TcpListener,
        acceptor: TlsAcceptor,
        timeout: Duration,
        max_pending: usize,
        endpoint: TlsEndpoint,
    ) -> Self {
        Self {
            tcp,
            acceptor,
            timeout,
            max_pending,
            endpoint,
            handshakes: JoinSet::new(),
        }
    }

    /// The next connection whose handshake finished. Cancel-safe: accepted sockets and
    /// handshakes in progress stay with the listener when the future is dropped.
    pub async fn accept(&mut self) -> (TlsStream<TcpStream>, SocketAddr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, addr)) => self.start_handshake(stream, addr),
                    Err(err) => {
                        self.endpoint.log_accept_error(&err);
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    }
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    match done {
                        Ok((addr, HandshakeOutcome::Done(tls))) => return (*tls, addr),
                        Ok((addr, HandshakeOutcome::Failed(err))) => {
                            self.endpoint.log_failed(addr, &err);
                        }
                        Ok((addr, HandshakeOutcome::TimedOut)) => self.endpoint.log_timed_out(addr),
                        Err(err) => tracing::debug!(%err, endpoint = ?self.endpoint, "TLS handshake task ended"),
                    }
                }
            }
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The finished connections as a stream, for tonic's `serve_with_incoming`; it never ends
    /// by itself, and dropping it drops the listener.
    pub fn into_stream(
        self,
    ) -> impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>> + Send + 'static {
        futures::stream::unfold(self, |mut listener| async move {
            let (tls, _) = listener.accept().await;
            Some((Ok(tls), listener))
        })
    }

    fn start_handshake(&mut self, stream: TcpStream, addr: SocketAddr) {
        if self.handshakes.len() >= self.max_pending {
            self.endpoint.log_over_capacity(addr);
            return;
        }
        if self.endpoint.nodelay() {
            let _ = stream.set_nodelay(true);
        }
        let acceptor = self.acceptor.clone();
        let timeout = self.timeout;
        self.handshakes.spawn(async move {
            let outcome = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => HandshakeOutcome::Done(Box::new(tls)),
                Ok(Err(err)) => HandshakeOutcome::Failed(err),
                Err(_) => HandshakeOutcome::TimedOut,
            };
            (addr, outcome)
        });
    }
}

enum HandshakeOutcome {
    Done(Box<TlsStream<TcpStream>>),
    Failed(io::Error),
    TimedOut,
}

/// An error with its sources, for messages (tonic's transport errors hide the cause); a cause
/// whose text is already shown is not repeated.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether a TLS failure (a certificate the peer or we rejected, a handshake alert) is among
/// `err`'s causes, as opposed to the peer being down or unreachable.
pub(crate) fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.is::<rustls::Error>() {
            return true;
        }
        // tokio-rustls reports rustls' errors inside io::Error.
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
#[path = "tls_test.rs"]
mod tests;
