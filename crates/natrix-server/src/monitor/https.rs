//! Monitoring over HTTPS (`https_port`, `-ms`), with the client listener's certificate, as
//! nats-server serves it: the shared TLS accept loop ([`TlsListener`]) with at most
//! `MAX_PENDING_HANDSHAKES` handshakes in progress, made an `axum::serve::Listener`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::tls::{TlsEndpoint, TlsListener};

/// Handshakes in progress at once; sockets beyond are closed at accept.
const MAX_PENDING_HANDSHAKES: usize = 64;

/// A TCP listener whose connections come out of a finished TLS handshake, for `axum::serve`.
pub(crate) struct HttpsListener(TlsListener);

impl HttpsListener {
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor, timeout: Duration) -> Self {
        Self(TlsListener::new(
            tcp,
            acceptor,
            timeout,
            MAX_PENDING_HANDSHAKES,
            TlsEndpoint::Monitoring,
        ))
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.0.accept().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}
