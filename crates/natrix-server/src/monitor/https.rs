//! Monitoring over HTTPS (`https_port`, `-ms`), with the client listener's certificate, as
//! nats-server serves it. Handshakes run concurrently (a silent socket cannot hold up the
//! others), each within the TLS timeout, and at most `MAX_PENDING_HANDSHAKES` at once.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Handshakes in progress at once; sockets beyond are closed at accept.
const MAX_PENDING_HANDSHAKES: usize = 64;

type Handshake = Option<(TlsStream<TcpStream>, SocketAddr)>;

/// A TCP listener whose connections come out of a finished TLS handshake, for `axum::serve`.
pub(crate) struct HttpsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    timeout: Duration,
    handshakes: JoinSet<Handshake>,
}

impl HttpsListener {
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor, timeout: Duration) -> Self {
        Self {
            tcp,
            acceptor,
            timeout,
            handshakes: JoinSet::new(),
        }
    }

    fn start_handshake(&mut self, stream: TcpStream, addr: SocketAddr) {
        if self.handshakes.len() >= MAX_PENDING_HANDSHAKES {
            tracing::debug!(%addr, "too many monitoring TLS handshakes in progress; closing");
            return;
        }
        let acceptor = self.acceptor.clone();
        let timeout = self.timeout;
        self.handshakes.spawn(async move {
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some((tls, addr)),
                Ok(Err(err)) => {
                    tracing::debug!(%addr, %err, "monitoring TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%addr, "monitoring TLS handshake timed out");
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, addr)) => self.start_handshake(stream, addr),
                    Err(err) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::error!(%err, "error accepting monitoring connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
