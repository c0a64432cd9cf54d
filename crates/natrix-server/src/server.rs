//! CONTRACT stub: the running node. (Being implemented by the lead.)

use std::net::SocketAddr;

use crate::ServerConfig;

/// The version reported in INFO and /varz (nats-server compatible protocol level).
pub const VERSION: &str = "2.10.0";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A running node. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    _config: ServerConfig,
}

impl Server {
    /// Binds the client (and monitoring) listeners and starts serving.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        let _ = config;
        todo!()
    }

    /// The bound client address (useful with port 0).
    pub fn client_addr(&self) -> SocketAddr {
        todo!()
    }

    /// The bound monitoring address, if monitoring is enabled.
    pub fn monitor_addr(&self) -> Option<SocketAddr> {
        todo!()
    }

    /// The generated server id (as in INFO).
    pub fn server_id(&self) -> &str {
        todo!()
    }

    /// Graceful shutdown: stop accepting, flush what is queued to clients, close them.
    pub async fn shutdown(&self) {
        todo!()
    }

    /// Resolves once the server has fully stopped.
    pub async fn stopped(&self) {
        todo!()
    }
}
