//! State shared by every task of a node: configuration, identity, the router, the client table
//! and server-wide counters.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use natrix_wire::ServerInfo;
use parking_lot::RwLock;

use crate::ServerConfig;
use crate::client::Client;
use crate::router::Router;

/// Server-wide counters (as in /varz).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub in_msgs: AtomicU64,
    pub out_msgs: AtomicU64,
    pub in_bytes: AtomicU64,
    pub out_bytes: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub stale_connections: AtomicU64,
    pub total_connections: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
pub(crate) struct ServerState {
    pub config: ServerConfig,
    /// `config.auth`, compiled; replaced by a configuration reload (read it with [`Self::auth`]).
    pub auth: RwLock<Arc<crate::auth::Authenticator>>,
    /// `config.tls`, loaded: clients must handshake TLS; its certificates are replaced by a
    /// configuration reload (read it with [`Self::tls`]).
    pub tls: RwLock<Option<Arc<crate::tls::ClientTls>>>,
    /// `config.cluster.tls`, loaded: the cluster endpoint and every channel to a peer use it.
    pub cluster_tls: Option<crate::tls::ClusterTls>,
    pub server_id: String,
    pub server_name: String,
    /// INFO sent to clients, without the per-client fields.
    pub info: ServerInfo,
    pub router: Router,
    pub clients: RwLock<HashMap<u64, Arc<Client>>>,
    /// The node's own client: owner of internal subscriptions (cid 0, never in /connz).
    pub system_client: Arc<Client>,
    pub stats: Stats,
    pub next_cid: AtomicU64,
    pub started: SystemTime,
    pub started_instant: Instant,
    /// The last closed client connections, for /connz.
    pub closed: crate::monitor::ClosedConnections,
    /// JetStream, when enabled (set once at start, after the state exists).
    pub jetstream: std::sync::OnceLock<Arc<crate::jetstream::JetStream>>,
    /// Set once the client listener closed (lame duck mode, shutdown): `/healthz` then fails as
    /// nats-server's does, so that load balancers and readiness probes stop sending clients.
    pub listener_closed: AtomicBool,
    /// Counts the async INFOs sent (cluster changes, lame duck): a client accepted before one
    /// but not yet past its first PONG gets a fresh INFO after that PONG.
    pub info_generation: AtomicU64,
}

impl ServerState {
    /// The authentication settings in force.
    pub fn auth(&self) -> Arc<crate::auth::Authenticator> {
        self.auth.read().clone()
    }

    /// INFO for clients, without the per-client fields, as the settings in force have it (a
    /// configuration reload may change `auth_required`).
    pub fn client_info(&self) -> ServerInfo {
        let mut info = self.info.clone();
        info.auth_required = self.auth().advertise_required();
        info
    }

    /// The INFO a client gets now, with its own fields and the cluster's `connect_urls`.
    pub fn client_info_for(&self, client: &Client) -> ServerInfo {
        let mut info = self.client_info();
        if let Some(mesh) = self.router.mesh() {
            info.connect_urls = mesh.connect_urls();
        }
        info.client_id = client.id;
        info.client_ip = client.addr.ip().to_string();
        info
    }

    /// The client TLS settings in force, if clients must use TLS.
    pub fn tls(&self) -> Option<Arc<crate::tls::ClientTls>> {
        self.tls.read().clone()
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_cid.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Sends `info` as an async INFO to every client that takes one (CONNECT `protocol: 1`) and
    /// got its first PONG, each with its own client_id and client_ip, as nats-server does
    /// (nats.go replaces its whole server info with it). Clients not that far yet get the news
    /// after their first PONG ([`Self::first_pong_sent`]).
    pub fn send_async_info(&self, mut info: ServerInfo) {
        // Counted before the clients are looked at, and each client's flag set before it reads
        // the count (both SeqCst): a client either is sent the INFO here or sees the new count.
        self.info_generation.fetch_add(1, Ordering::SeqCst);
        let clients: Vec<Arc<Client>> = self.clients.read().values().cloned().collect();
        let mut buf = bytes::BytesMut::with_capacity(512);
        for client in clients {
            if !client.flags.async_info.load(Ordering::Relaxed)
                || !client.flags.first_pong_sent.load(Ordering::SeqCst)
            {
                continue;
            }
            info.client_id = client.id;
            info.client_ip = client.addr.ip().to_string();
            buf.clear();
            natrix_wire::write_info(&mut buf, &info);
            client.send_proto(&buf);
        }
    }

    /// The client (past CONNECT) was just sent its first PONG: from now on it takes async INFO,
    /// and it gets one at once if the cluster changed since its INFO at accept, as nats-server's
    /// `processPing` does.
    pub fn first_pong_sent(&self, client: &Client) {
        if client.flags.first_pong_sent.swap(true, Ordering::SeqCst)
            || !client.flags.async_info.load(Ordering::Relaxed)
            || self.info_generation.load(Ordering::SeqCst)
                == client.info_generation.load(Ordering::Relaxed)
        {
            return;
        }
        let mut buf = bytes::BytesMut::with_capacity(512);
        natrix_wire::write_info(&mut buf, &self.client_info_for(client));
        client.send_proto(&buf);
    }

    /// Logs and counts a receiver cut off for exceeding `max_pending`.
    pub fn note_slow_consumer(&self, receiver: &Client) {
        tracing::warn!(
            cid = receiver.id,
            "Slow Consumer Detected: MaxPending of {} Exceeded",
            receiver.max_pending
        );
        self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }
}

/// A server id in nats-server's shape: 56 upper-case base32 characters starting with `N`.
pub(crate) fn generate_server_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut id = String::with_capacity(56);
    id.push('N');
    for _ in 1..56 {
        id.push(ALPHABET[fastrand::usize(..ALPHABET.len())] as char);
    }
    id
}
