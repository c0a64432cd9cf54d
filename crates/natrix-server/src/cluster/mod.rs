//! The cluster endpoint and the core-message route mesh: one tonic gRPC server on the cluster
//! listen address (other services join it through [`ClusterServices`]), a route session to every
//! other node (dialled from the configured routes and from gossip, accepted from peers), the
//! registry of established sessions, and the advertisement of local subject interest to them.
//!
//! The pure interest bookkeeping is in `interest`; one session's I/O in `session`; dialling and
//! retries in `dial`.

mod dial;
pub(crate) mod interest;
pub(crate) mod link;
mod service;
mod session;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use natrix_proto::node::NodeInfo;
use natrix_proto::route::{Interest, Peers, RouteFrame, RouteHello, route_frame};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::ServerState;
use interest::LocalInterest;
pub(crate) use link::Link;

/// Extra gRPC services served on the cluster endpoint next to the route mesh (e.g. Raft).
pub type ClusterServices = tonic::service::RoutesBuilder;

/// Errors starting the cluster endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot listen for cluster connections on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// The route mesh of one node: its identity on the cluster, its local interest and the
/// established sessions.
#[derive(Debug)]
pub(crate) struct Mesh {
    pub server_id: String,
    pub server_name: String,
    pub cluster_name: String,
    /// No name was configured: peers of any name are accepted (nats-server's dynamic name).
    pub dynamic_name: bool,
    /// The bound cluster address.
    pub cluster_addr: SocketAddr,
    /// host:port peers are told to dial (an unspecified host is replaced by what they see).
    pub advertised_cluster_addr: String,
    /// This node's client URLs (host:port).
    pub own_client_urls: Vec<String>,
    /// This node's id in Raft groups (0 without JetStream).
    pub node_id: u64,
    /// Placement tags: the automatic `arch:` tag and `server_tags`.
    pub tags: Vec<String>,
    pub configured_routes: Vec<String>,
    /// Bytes queued to one peer before its session is cut off.
    pub max_pending: usize,
    /// Largest gRPC message accepted or sent.
    pub max_message: usize,
    inner: Mutex<MeshInner>,
    /// Bumped whenever the set of sessions changes.
    pub changed: watch::Sender<u64>,
    next_rid: AtomicU64,
    /// Set when the node stops: dial loops end.
    pub shutdown: watch::Receiver<bool>,
}

#[derive(Debug, Default)]
struct MeshInner {
    local: LocalInterest,
    links: HashMap<String, Arc<Link>>,
    /// Cluster addresses with a dial loop running.
    dialing: HashSet<String>,
    /// Node ids (JetStream's) of every peer a session was registered with since the start.
    ever_linked: HashSet<u64>,
}

/// Why a session was not registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A preferred session to the same peer exists.
    Duplicate,
    /// This node is stopping: a session that arrives after [`Mesh::close_all`] would keep the
    /// peer's route (and this node's state) alive after the node is gone.
    ShuttingDown,
}

impl Mesh {
    fn new(
        state: &ServerState,
        cluster_addr: SocketAddr,
        client_addr: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let config = &state.config;
        let cluster = config.cluster.clone().unwrap_or_default();
        let (cluster_name, dynamic_name) = match &cluster.name {
            Some(name) => (name.clone(), false),
            None => (state.server_id.clone(), true),
        };
        let (client_host, client_port) = config.advertised_client(client_addr.port());
        let own_client_urls = client_urls(&client_host, client_port, interface_ips);
        let max_message = (2 * config.limits.max_payload as usize + 64 * 1024).max(8 << 20);
        Self {
            server_id: state.server_id.clone(),
            server_name: state.server_name.clone(),
            cluster_name,
            dynamic_name,
            cluster_addr,
            advertised_cluster_addr: {
                let (host, port) = cluster.advertised(cluster_addr.port());
                host_port(&host, port)
            },
            own_client_urls,
            node_id: state.jetstream.get().map_or(0, |js| js.node_id()),
            tags: natrix_cluster::node_tags(&config.tags),
            configured_routes: cluster.routes.clone(),
            max_pending: usize::try_from(config.limits.max_pending).unwrap_or(usize::MAX),
            max_message,
            inner: Mutex::new(MeshInner::default()),
            changed: watch::channel(0).0,
            next_rid: AtomicU64::new(0),
            shutdown,
        }
    }

    pub fn next_rid(&self) -> u64 {
        self.next_rid.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Who this node is, as sent in its hello.
    pub fn node_info(&self) -> NodeInfo {
        NodeInfo {
            server_id: self.server_id.clone(),
            server_name: self.server_name.clone(),
            cluster: self.cluster_name.clone(),
            cluster_addr: self.advertised_cluster_addr.clone(),
            client_urls: self.own_client_urls.clone(),
            tags: self.tags.clone(),
            cluster_dynamic: self.dynamic_name,
            node_id: self.node_id,
            jetstream: self.node_id != 0,
        }
    }

    pub fn hello_frame(&self, nonce: u64, dialer_id: &str) -> RouteFrame {
        RouteFrame {
            kind: Some(route_frame::Kind::Hello(RouteHello {
                node: Some(self.node_info()),
                session_nonce: nonce,
                dialer_id: dialer_id.to_string(),
            })),
        }
    }

    /// A local (client) subscription was added (`delta` 1) or removed (-1). Called under the
    /// router's write lock, so every peer sees interest changes in the order they happened,
    /// and before any message published after them.
    pub fn local_interest_changed(&self, subject: &[u8], queue: Option<&[u8]>, delta: i64) {
        let mut inner = self.inner.lock();
        if let Some(count) = inner.local.change(subject, queue, delta) {
            let frame = interest_frame(
                Bytes::copy_from_slice(subject),
                queue.map(Bytes::copy_from_slice),
                count,
            );
            for link in inner.links.values() {
                link.queue.push(frame.clone(), link::frame_size(&frame));
            }
        }
    }

    /// Registers an established session: keeps one session per peer (the one dialled by the
    /// smaller server id; between two dialled by the same node, the smaller nonce), sends the
    /// new peer the whole local interest, and gossips peers' addresses both ways. Returns the
    /// session it replaced, now retiring: its queued frames still go out and its session
    /// still reads what the peer sent on it, but nothing new is routed to it (the caller
    /// removes its interest).
    pub fn register(&self, link: &Arc<Link>) -> Result<Option<Arc<Link>>, Refusal> {
        let mut inner = self.inner.lock();
        // Checked under the lock `close_all` takes after raising the flag: a session is either
        // refused here or registered in time to be closed there.
        if *self.shutdown.borrow() {
            return Err(Refusal::ShuttingDown);
        }
        let mut replaced = None;
        if let Some(existing) = inner.links.get(&link.peer.server_id) {
            if !self.preferred(link, existing) {
                return Err(Refusal::Duplicate);
            }
            tracing::debug!(
                peer = %link.peer.server_id,
                "replacing duplicate route session rid {} by rid {}",
                existing.rid,
                link.rid
            );
            existing.queue.retire(existing.did_solicit);
            replaced = Some(existing.clone());
        }
        for (subject, queue, count) in inner.local.snapshot() {
            let frame = interest_frame(subject, queue, count);
            let size = link::frame_size(&frame);
            link.queue.push(frame, size);
        }
        let others: Vec<String> = inner
            .links
            .values()
            .filter(|l| l.peer.server_id != link.peer.server_id)
            .map(|l| l.peer_cluster_addr.clone())
            .collect();
        if !others.is_empty() {
            link.queue.push(peers_frame(others), 256);
        }
        let announce = peers_frame(vec![link.peer_cluster_addr.clone()]);
        for other in inner.links.values() {
            if other.peer.server_id != link.peer.server_id {
                other.queue.push(announce.clone(), 256);
            }
        }
        inner
            .links
            .insert(link.peer.server_id.clone(), link.clone());
        inner.ever_linked.insert(link.peer.node_id);
        drop(inner);
        self.changed.send_modify(|v| *v += 1);
        Ok(replaced)
    }

    /// Removes a session if it is the registered one for its peer.
    pub fn unregister(&self, link: &Arc<Link>) -> bool {
        let mut inner = self.inner.lock();
        let registered = inner
            .links
            .get(&link.peer.server_id)
            .is_some_and(|l| l.rid == link.rid);
        if registered {
            inner.links.remove(&link.peer.server_id);
        }
        drop(inner);
        if registered {
            self.changed.send_modify(|v| *v += 1);
        }
        registered
    }

    fn preferred(&self, new: &Link, existing: &Link) -> bool {
        let smaller = std::cmp::min(self.server_id.as_str(), new.peer.server_id.as_str());
        let rank = |l: &Link| (l.dialer_id != smaller, l.nonce);
        rank(new) < rank(existing)
    }

    pub fn is_connected(&self, server_id: &str) -> bool {
        self.inner.lock().links.contains_key(server_id)
    }

    pub fn is_connected_addr(&self, addr: &str) -> bool {
        self.inner
            .lock()
            .links
            .values()
            .any(|l| l.peer_cluster_addr == addr)
    }

    /// Marks `addr` as being dialled; false if a dial loop already runs for it.
    fn start_dialing(&self, addr: &str) -> bool {
        self.inner.lock().dialing.insert(addr.to_string())
    }

    fn stop_dialing(&self, addr: &str) {
        self.inner.lock().dialing.remove(addr);
    }

    /// The session to the node with Raft node id `node_id`, if connected.
    /// Whether a session with the node (JetStream node id) was ever registered since this node
    /// started: a node just starting waits for a first session, not for one that went away.
    pub fn was_linked(&self, node_id: u64) -> bool {
        self.inner.lock().ever_linked.contains(&node_id)
    }

    pub fn link_for_node(&self, node_id: u64) -> Option<Arc<Link>> {
        if node_id == 0 {
            return None;
        }
        self.inner
            .lock()
            .links
            .values()
            .find(|l| l.peer.node_id == node_id)
            .cloned()
    }

    pub fn links(&self) -> Vec<Arc<Link>> {
        let mut links: Vec<Arc<Link>> = self.inner.lock().links.values().cloned().collect();
        links.sort_by_key(|l| l.rid);
        links
    }

    /// The client URLs of this node and every connected peer (INFO `connect_urls`).
    pub fn connect_urls(&self) -> Vec<String> {
        let mut urls = self.own_client_urls.clone();
        for link in self.links() {
            for url in &link.peer_client_urls {
                if !urls.contains(url) {
                    urls.push(url.clone());
                }
            }
        }
        urls
    }

    /// Closes every session (shutdown).
    pub fn close_all(&self) {
        for link in self.links() {
            link.queue.close();
        }
    }
}

fn interest_frame(subject: Bytes, queue: Option<Bytes>, count: u32) -> RouteFrame {
    RouteFrame {
        kind: Some(route_frame::Kind::Interest(Interest {
            subject,
            queue: queue.unwrap_or_default(),
            count,
        })),
    }
}

fn peers_frame(cluster_addrs: Vec<String>) -> RouteFrame {
    RouteFrame {
        kind: Some(route_frame::Kind::Peers(Peers { cluster_addrs })),
    }
}

/// `host:port`, bracketing IPv6 literals.
/// This node's client URLs for `connect_urls`, as nats-server builds them: the advertised
/// `host:port`, except that an unspecified host (`0.0.0.0`, `::`) stands for every global
/// unicast address of the machine's interfaces (`interfaces` lists them), so that clients and
/// peers elsewhere get addresses they can dial. None at all when the machine has none.
pub(crate) fn client_urls(
    host: &str,
    port: u16,
    interfaces: impl FnOnce() -> Vec<std::net::IpAddr>,
) -> Vec<String> {
    let unspecified = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified());
    if !unspecified {
        return vec![host_port(host, port)];
    }
    interfaces()
        .into_iter()
        .filter(is_global_unicast)
        .map(|ip| host_port(&ip.to_string(), port))
        .collect()
}

/// Go's `net.IP.IsGlobalUnicast`, which nats-server uses to pick advertised addresses: not
/// unspecified, loopback, link-local, multicast or the IPv4 broadcast address (private
/// ranges count as global).
fn is_global_unicast(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast())
        }
        std::net::IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unicast_link_local())
        }
    }
}

/// The addresses of the machine's network interfaces (none if they cannot be listed).
fn interface_ips() -> Vec<std::net::IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces.into_iter().map(|i| i.ip()).collect(),
        Err(err) => {
            tracing::warn!("listing network interfaces for connect_urls: {err}");
            Vec::new()
        }
    }
}

pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Replaces an unspecified host (`0.0.0.0`, `::`, empty) in `host:port` by `seen`, the address
/// this node sees the peer at.
pub(crate) fn resolve_unspecified(url: &str, seen: std::net::IpAddr) -> String {
    let Some((host, port)) = url.rsplit_once(':') else {
        return url.to_string();
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let unspecified = bare.is_empty()
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
    if unspecified {
        match seen {
            std::net::IpAddr::V4(ip) => format!("{ip}:{port}"),
            std::net::IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        }
    } else {
        url.to_string()
    }
}

/// The running cluster endpoint.
pub(crate) struct ClusterHandle {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    mesh: Arc<Mesh>,
    server_task: tokio::task::JoinHandle<()>,
}

impl ClusterHandle {
    /// Closes every session, stops dialling and the gRPC server: gracefully for up to 5 s, then
    /// by dropping whatever calls are still open (a peer's stream must not keep this node's
    /// state, and its store, alive after it stopped).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.mesh.close_all();
        let mut server_task = self.server_task;
        let grace = std::time::Duration::from_secs(5);
        if tokio::time::timeout(grace, &mut server_task).await.is_err() {
            tracing::warn!("cluster endpoint: calls still open after {grace:?}; dropping them");
            server_task.abort();
            let _ = server_task.await;
        }
    }
}

/// Binds the cluster endpoint, installs the mesh in the router, and starts serving and dialling.
pub(crate) async fn start(
    state: &Arc<ServerState>,
    cluster: crate::ClusterConfig,
    client_addr: SocketAddr,
    services: ClusterServices,
) -> Result<ClusterHandle, ClusterError> {
    let bind_err = |source| ClusterError::Bind {
        addr: host_port(&cluster.host, cluster.port),
        source,
    };
    let listener = TcpListener::bind((cluster.host.as_str(), cluster.port))
        .await
        .map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mesh = Arc::new(Mesh::new(state, addr, client_addr, shutdown_rx.clone()));
    state.router.install_mesh(mesh.clone());

    let mut services = services;
    services.add_service(
        natrix_proto::route::route_server::RouteServer::new(service::RouteService {
            state: state.clone(),
            mesh: mesh.clone(),
        })
        .max_decoding_message_size(mesh.max_message)
        .max_encoding_message_size(mesh.max_message),
    );
    let routes = services.routes();
    let router = tonic::transport::Server::builder().add_routes(routes);
    let mut shutdown_signal = shutdown_rx.clone();
    let stopped = async move {
        let _ = shutdown_signal.wait_for(|s| *s).await;
    };
    let server_task = match &state.cluster_tls {
        // Mutual TLS: only peers with a certificate from the cluster CA get to HTTP/2, so
        // neither the route mesh nor Raft traffic is reachable without one.
        Some(tls) => {
            let incoming = tls.incoming(listener);
            tokio::spawn(async move {
                let result = router.serve_with_incoming_shutdown(incoming, stopped).await;
                if let Err(err) = result {
                    tracing::error!(%err, "cluster endpoint stopped");
                }
            })
        }
        None => {
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            tokio::spawn(async move {
                let result = router.serve_with_incoming_shutdown(incoming, stopped).await;
                if let Err(err) = result {
                    tracing::error!(%err, "cluster endpoint stopped");
                }
            })
        }
    };
    tracing::info!("Cluster name is {}", mesh.cluster_name);
    tracing::info!("Listening for route connections on {addr}");

    for url in &mesh.configured_routes {
        match dial::parse_route_url(url) {
            Some(target) => dial::spawn(state.clone(), mesh.clone(), target, true),
            None => tracing::error!(url, "ignoring unparsable route URL"),
        }
    }
    Ok(ClusterHandle {
        addr,
        shutdown: shutdown_tx,
        mesh,
        server_task,
    })
}

/// Tells connected clients (those that take async INFO) the new `connect_urls`, as
/// nats-server does when routes come and go.
pub(crate) fn announce_connect_urls(state: &ServerState, mesh: &Mesh) {
    let mut info = state.client_info();
    info.connect_urls = mesh.connect_urls();
    state.send_async_info(info);
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::client_urls;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().expect("an IP")).collect()
    }

    #[test]
    fn a_named_or_specific_host_is_advertised_as_given() {
        let never = || panic!("interfaces listed for a specific host");
        assert_eq!(client_urls("10.1.2.3", 4222, never), ["10.1.2.3:4222"]);
        assert_eq!(
            client_urls("nats-0.nats", 4222, never),
            ["nats-0.nats:4222"]
        );
        assert_eq!(client_urls("fd00::1", 4223, never), ["[fd00::1]:4223"]);
    }

    #[test]
    fn an_unspecified_host_stands_for_every_global_unicast_interface_address() {
        let interfaces = || {
            ips(&[
                "127.0.0.1",
                "10.0.0.7",
                "169.254.1.1",
                "172.17.0.1",
                "::1",
                "fe80::1",
                "2001:db8::7",
            ])
        };
        assert_eq!(
            client_urls("0.0.0.0", 4222, interfaces),
            ["10.0.0.7:4222", "172.17.0.1:4222", "[2001:db8::7]:4222"]
        );
        assert_eq!(
            client_urls("::", 4222, interfaces),
            ["10.0.0.7:4222", "172.17.0.1:4222", "[2001:db8::7]:4222"]
        );
        assert!(client_urls("0.0.0.0", 4222, || ips(&["127.0.0.1"])).is_empty());
    }
}
