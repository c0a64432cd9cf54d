//! The running node: binds the client and monitoring listeners, accepts connections, and shuts
//! down gracefully (stop accepting, flush what is queued, close every client).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use natrix_wire::{ServerInfo, write_info};
use parking_lot::RwLock;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::Authenticator;
use crate::client::{Client, CloseReason, TlsSession};
use crate::connection::Connection;
use crate::jetstream::JetStream;
use crate::monitor;
use crate::reload::ReloadError;
use crate::router::Router;
use crate::state::{ServerState, Stats, generate_server_id};
use crate::tls::{ClientTls, ClusterTls};
use crate::writer::run_writer;
use crate::{ClusterServices, ServerConfig};

/// The nats-server version whose client protocol and behaviour natrix implements; clients use
/// it to decide which features they may use.
pub const VERSION: &str = "2.10.0";

/// How long a graceful shutdown waits for connections to flush and close.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("JetStream: {0}")]
    JetStream(#[from] crate::jetstream::JetStreamError),
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("tls: {0}")]
    Tls(crate::tls::TlsError),
    #[error("cluster tls: {0}")]
    ClusterTls(crate::tls::TlsError),
}

/// A running node. Dropping it closes its client and monitoring listeners and its clients but
/// leaves JetStream and the cluster endpoint running; call [`Server::shutdown`] to stop it.
pub struct Server {
    state: Arc<ServerState>,
    client_addr: SocketAddr,
    monitor_addr: Option<SocketAddr>,
    cluster: tokio::sync::Mutex<Option<crate::cluster::ClusterHandle>>,
    cluster_addr: Option<SocketAddr>,
    shutdown_tx: watch::Sender<bool>,
    lame_duck_tx: watch::Sender<bool>,
    stopped_rx: watch::Receiver<bool>,
    /// The configuration in force (as started, then as last reloaded); held by a reload.
    applied: tokio::sync::Mutex<ServerConfig>,
}

impl Server {
    /// Binds the client (and monitoring) listeners and starts serving.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        Self::start_with_services(config, ClusterServices::default()).await
    }

    /// Like [`Server::start`], serving `services` on the cluster endpoint next to the route
    /// mesh (ignored without a `cluster` configuration).
    pub async fn start_with_services(
        config: ServerConfig,
        services: ClusterServices,
    ) -> Result<Server, ServerError> {
        let auth =
            Authenticator::new(&config.auth).map_err(|err| ServerError::Config(err.to_string()))?;
        let applied = tokio::sync::Mutex::new(config.clone());
        let tls = match &config.tls {
            Some(tls) => Some(ClientTls::load(tls).map_err(ServerError::Tls)?),
            None => None,
        };
        let cluster_tls = match config.cluster.as_ref().and_then(|c| c.tls.as_ref()) {
            Some(tls) => Some(ClusterTls::load(tls).map_err(ServerError::ClusterTls)?),
            None => None,
        };
        let listener = bind(&config.host, config.port).await?;
        let client_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: format!("{}:{}", config.host, config.port),
            source,
        })?;

        let server_id = generate_server_id();
        let server_name = config
            .server_name
            .clone()
            .unwrap_or_else(|| server_id.clone());
        let (advertised_host, advertised_port) = config.advertised_client(client_addr.port());
        let info = ServerInfo {
            server_id: server_id.clone(),
            server_name: server_name.clone(),
            version: VERSION.to_string(),
            proto: 1,
            go: "go1.22".to_string(),
            host: advertised_host,
            port: advertised_port,
            headers: true,
            auth_required: auth.advertise_required(),
            max_payload: i64::from(config.limits.max_payload),
            // As nats-server: a server running JetStream says so to every client.
            jetstream: config.jetstream.is_some(),
            cluster: config
                .cluster
                .as_ref()
                .map(|c| c.name.clone().unwrap_or_else(|| server_id.clone())),
            cluster_dynamic: config.cluster.as_ref().is_some_and(|c| c.name.is_none()),
            tls_required: tls.is_some(),
            tls_verify: tls.as_ref().is_some_and(|t| t.verify),
            ..ServerInfo::default()
        };
        let state = Arc::new(ServerState {
            config,
            auth: RwLock::new(Arc::new(auth)),
            tls: RwLock::new(tls.map(Arc::new)),
            cluster_tls,
            server_id,
            server_name,
            info,
            router: Router::default(),
            clients: Default::default(),
            system_client: Arc::new(Client::new(
                0,
                SocketAddr::from(([0, 0, 0, 0], 0)),
                u64::MAX,
            )),
            stats: Stats::default(),
            next_cid: Default::default(),
            started: SystemTime::now(),
            started_instant: Instant::now(),
            listener_closed: AtomicBool::new(false),
            info_generation: AtomicU64::new(0),
            closed: Default::default(),
            jetstream: Default::default(),
        });

        let mut services = services;
        if state.config.jetstream.is_some() {
            let js = JetStream::start(&state).await?;
            if let Some(cluster) = js.cluster() {
                services.add_service(cluster.raft.service());
                services.add_service(crate::jetstream::cluster::service(&js));
            }
            tracing::info!("Starting JetStream");
            tracing::info!(
                "  Max Memory:      {}",
                crate::jetstream::friendly_limit(js.config.max_memory_store)
            );
            tracing::info!(
                "  Max Storage:     {}",
                crate::jetstream::friendly_limit(js.config.max_file_store)
            );
            tracing::info!("  Store Directory: \"{}\"", js.store_dir.display());
            let _ = state.jetstream.set(js);
        }
        let cluster = match state.config.cluster.clone() {
            Some(cluster) => {
                Some(crate::cluster::start(&state, cluster, client_addr, services).await?)
            }
            None => None,
        };
        let cluster_addr = cluster.as_ref().map(|c| c.addr);
        if let Some(js) = state.jetstream.get()
            && let Some(js_cluster) = js.cluster()
        {
            js_cluster.spawn(&state, js);
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let (lame_duck_tx, lame_duck_rx) = watch::channel(false);

        let monitor_addr = start_monitoring(&state, &shutdown_rx).await?;

        tracing::info!("Listening for client connections on {client_addr}");
        if state.tls().is_some() {
            tracing::info!("TLS required for client connections");
        }
        tracing::info!("Server is ready");
        tokio::spawn(accept_loop(
            listener,
            state.clone(),
            shutdown_rx,
            lame_duck_rx,
            stopped_tx,
        ));
        Ok(Server {
            state,
            client_addr,
            monitor_addr,
            cluster: tokio::sync::Mutex::new(cluster),
            cluster_addr,
            shutdown_tx,
            lame_duck_tx,
            stopped_rx,
            applied,
        })
    }

    /// Applies a new configuration (a reload, SIGHUP): new users, passwords, tokens, NKeys and
    /// permissions (every connected client is checked again, see [`crate::reload`]) and new
    /// client TLS certificates (for handshakes from now on). Returns what changed; a change to
    /// anything else, or settings that do not load, refuse the whole reload and change nothing.
    pub async fn reload(&self, new: ServerConfig) -> Result<Vec<&'static str>, ReloadError> {
        let mut applied = self.applied.lock().await;
        let changed = crate::reload::changes(&applied, &new)?;
        // Everything is loaded before anything is replaced.
        let auth = if changed.contains(&"authorization") {
            let auth = Authenticator::new(&new.auth)
                .map_err(|err| ReloadError::Authorization(err.to_string()))?;
            Some(Arc::new(auth))
        } else {
            None
        };
        let tls = match &new.tls {
            Some(config) if changed.contains(&"tls") => Some(Arc::new(ClientTls::load(config)?)),
            _ => None,
        };
        if let Some(tls) = tls {
            *self.state.tls.write() = Some(tls);
        }
        if let Some(auth) = auth {
            *self.state.auth.write() = auth.clone();
            crate::reload::reauthorize(&self.state, &auth).await;
        }
        *applied = new;
        Ok(changed)
    }

    /// The bound client address (useful with port 0).
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The bound monitoring address, if monitoring is enabled.
    pub fn monitor_addr(&self) -> Option<SocketAddr> {
        self.monitor_addr
    }

    /// The bound cluster (gRPC) address, when clustering is configured (useful with port 0).
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.cluster_addr
    }

    /// Server ids of the peers with an established route session.
    pub fn connected_routes(&self) -> Vec<String> {
        self.state
            .router
            .mesh()
            .map(|m| m.links().iter().map(|l| l.peer.server_id.clone()).collect())
            .unwrap_or_default()
    }

    /// The interest each connected peer advertised (`subject` or `subject queue`), by peer
    /// server id, as /routez `subscriptions_list` shows it.
    pub fn peer_interest(&self) -> Vec<(String, Vec<String>)> {
        self.state
            .router
            .mesh()
            .map(|m| {
                m.links()
                    .iter()
                    .map(|l| (l.peer.server_id.clone(), l.interest.lock().subjects()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The generated server id (as in INFO).
    pub fn server_id(&self) -> &str {
        &self.state.server_id
    }

    /// The server name (as in INFO).
    pub fn server_name(&self) -> &str {
        &self.state.server_name
    }

    /// Graceful shutdown: stop accepting, flush what is queued to clients, close them.
    pub async fn shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
        self.stopped().await;
        if let Some(js) = self.state.jetstream.get() {
            js.shutdown().await;
        }
        if let Some(cluster) = self.cluster.lock().await.take() {
            cluster.stop().await;
        }
    }

    /// Lame duck mode (nats-server's SIGUSR2 / `--signal ldm`): stop accepting clients, tell
    /// connected clients with an INFO carrying `"ldm":true` so they move elsewhere, wait
    /// `lame_duck_grace_period`, then close the remaining clients spread over the rest of
    /// `lame_duck_duration`, and stop. Returns at once; [`Server::stopped`] resolves at the end.
    /// A [`Server::shutdown`] meanwhile cuts the waits short.
    pub fn enter_lame_duck(&self) {
        let _ = self.lame_duck_tx.send(true);
    }

    /// Hands the Raft leaderships this node holds to other nodes (bounded by `timeout`): the
    /// first step of a graceful shutdown, so that the node's streams keep taking writes.
    pub async fn hand_off_leadership(&self, timeout: Duration) {
        if let Some(js) = self.state.jetstream.get() {
            js.hand_off_leadership(&self.state, timeout).await;
        }
    }

    /// Drops the (shut down) server and waits, at most `timeout`, until its tasks have let go of
    /// it, so that its store is closed and another server may open the same directory in this
    /// process; `false` if something still held it then. After [`Server::shutdown`] a task that
    /// was finishing a write (a consumer's state, say) may hold the store a moment longer.
    pub async fn released(self, timeout: Duration) -> bool {
        let state = Arc::downgrade(&self.state);
        drop(self);
        let deadline = tokio::time::Instant::now() + timeout;
        while state.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Resolves once the server has fully stopped.
    pub async fn stopped(&self) {
        let mut rx = self.stopped_rx.clone();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

/// Binds and serves monitoring over HTTP (`http_port`) or HTTPS (`https_port`), if configured.
async fn start_monitoring(
    state: &Arc<ServerState>,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<SocketAddr>, ServerError> {
    let config = &state.config;
    let (port, https) = match (config.http_port, config.https_port) {
        (None, None) => return Ok(None),
        (Some(http), Some(https)) => {
            return Err(ServerError::Config(format!(
                "Can't start monitoring: can't specify both HTTP ({http}) and HTTPs ({https}) ports"
            )));
        }
        (Some(port), None) => (port, false),
        (None, Some(port)) => (port, true),
    };
    let host = config
        .http_host
        .clone()
        .unwrap_or_else(|| config.host.clone());
    let listener = bind(&host, port).await?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: format!("{host}:{port}"),
        source,
    })?;
    if https {
        let Some(tls) = state.tls() else {
            return Err(ServerError::Config(
                "Can't start monitoring: TLS cert and key required for HTTPS".into(),
            ));
        };
        tracing::info!("Starting https monitor on {addr}");
        let listener = monitor::HttpsListener::new(listener, tls.acceptor.clone(), tls.timeout);
        tokio::spawn(monitor::serve(listener, state.clone(), shutdown.clone()));
    } else {
        tracing::info!("Starting http monitor on {addr}");
        tokio::spawn(monitor::serve(listener, state.clone(), shutdown.clone()));
    }
    Ok(Some(addr))
}

async fn bind(host: &str, port: u16) -> Result<TcpListener, ServerError> {
    TcpListener::bind((host, port))
        .await
        .map_err(|source| ServerError::Bind {
            addr: format!("{host}:{port}"),
            source,
        })
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    mut shutdown: watch::Receiver<bool>,
    mut lame_duck: watch::Receiver<bool>,
    stopped: watch::Sender<bool>,
) {
    let mut connections = JoinSet::new();
    let mut entering_lame_duck = false;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            // A dropped handle (the sender gone) is no request for lame duck mode.
            changed = lame_duck.changed() => {
                entering_lame_duck = changed.is_ok();
                break;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    connections.spawn(serve_client(state.clone(), stream, addr));
                }
                Err(err) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::error!(%err, "error accepting client connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    state.listener_closed.store(true, Ordering::Relaxed);
    if entering_lame_duck {
        run_lame_duck(&state, &mut connections, &mut shutdown).await;
    }
    tracing::info!("Initiating Shutdown...");
    let clients: Vec<Arc<Client>> = state.clients.read().values().cloned().collect();
    for client in clients {
        client.close(CloseReason::ServerShutdown);
    }
    let drained = tokio::time::timeout(SHUTDOWN_FLUSH_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    tracing::info!("Server Exiting..");
    let _ = stopped.send(true);
}

/// How long lame duck mode and a graceful shutdown wait for leaderships to move away.
pub const LEADERSHIP_HANDOFF: Duration = Duration::from_secs(3);

/// The lame-duck sequence after the listener closed; returns early on shutdown.
async fn run_lame_duck(
    state: &ServerState,
    connections: &mut JoinSet<()>,
    shutdown: &mut watch::Receiver<bool>,
) {
    let config = &state.config;
    tracing::info!(
        "Entering lame duck mode, stop accepting new clients (grace period {:?}, duration {:?})",
        config.lame_duck_grace_period,
        config.lame_duck_duration
    );
    // As nats-server: only clients that take async INFO get it.
    let mut info = state.client_info();
    info.ldm = true;
    state.send_async_info(info);
    // As nats-server: leaderships move to other nodes before the clients are let go.
    if let Some(js) = state.jetstream.get() {
        js.hand_off_leadership(state, LEADERSHIP_HANDOFF).await;
    }
    if !wait_unless_shutdown(config.lame_duck_grace_period, connections, shutdown).await {
        return;
    }
    let clients: Vec<Arc<Client>> = state.clients.read().values().cloned().collect();
    if clients.is_empty() {
        return;
    }
    let spread = config
        .lame_duck_duration
        .saturating_sub(config.lame_duck_grace_period);
    let interval = (spread / clients.len().max(1) as u32).min(Duration::from_secs(1));
    for client in clients {
        client.close(CloseReason::ServerShutdown);
        if !wait_unless_shutdown(interval, connections, shutdown).await {
            return;
        }
    }
}

/// Sleeps for `wait` while reaping finished connections; false if shutdown was requested.
async fn wait_unless_shutdown(
    wait: Duration,
    connections: &mut JoinSet<()>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return true,
            _ = shutdown.changed() => return false,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_client(state: Arc<ServerState>, stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let limits = &state.config.limits;
    let cid = state.next_client_id();
    let client = Arc::new(Client::new(cid, addr, limits.max_pending));
    let over_limit = {
        let mut clients = state.clients.write();
        if clients.len() >= limits.max_connections as usize {
            true
        } else {
            clients.insert(cid, client.clone());
            false
        }
    };
    state
        .stats
        .total_connections
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!("{addr} - cid:{cid} - Client connection created");

    // The generation is read before the INFO is built: a change after this read is sent again
    // after the client's first PONG.
    client.info_generation.store(
        state.info_generation.load(Ordering::SeqCst),
        Ordering::Relaxed,
    );
    let mut info = state.client_info_for(&client);
    // NKey users sign this connection's nonce in CONNECT.
    let nonce = state.auth().needs_nonce().then(crate::auth::new_nonce);
    info.nonce = nonce.clone();
    let mut buf = BytesMut::with_capacity(512);
    write_info(&mut buf, &info);

    // A client over the connection limit is told so in plain text, TLS or not: nats-server
    // refuses it before any handshake.
    let tls = state.tls().filter(|_| !over_limit);
    let Some(tls) = tls else {
        client.send_proto(&buf);
        let (read_half, write_half) = stream.into_split();
        run_client(&state, &client, read_half, write_half, over_limit, nonce).await;
        return;
    };
    match tls_handshake(&tls, &client, stream, &buf, cid, addr).await {
        Some(stream) => {
            if tls.handshake_first {
                client.send_proto(&buf);
            }
            let (read_half, write_half) = tokio::io::split(stream);
            run_client(&state, &client, read_half, write_half, false, nonce).await;
        }
        None => {
            // As nats-server: no -ERR (the client speaks TLS or nothing we could answer in).
            client.close(CloseReason::TlsHandshakeError);
            state.closed.record(&client);
            state.clients.write().remove(&cid);
        }
    }
}

/// Runs a client's writer task and its connection until it closes, over any transport.
async fn run_client<R, W>(
    state: &Arc<ServerState>,
    client: &Arc<Client>,
    read_half: R,
    write_half: W,
    over_limit: bool,
    nonce: Option<String>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let writer = tokio::spawn(run_writer(
        state.clone(),
        client.clone(),
        write_half,
        state.config.limits.write_deadline,
    ));
    if over_limit {
        tracing::error!(cid = client.id, addr = %client.addr, "maximum connections exceeded");
        client.send_err_and_close(
            "maximum connections exceeded",
            CloseReason::MaxConnectionsExceeded,
        );
    } else {
        Connection::new(state.clone(), client.clone(), nonce)
            .run(read_half)
            .await;
    }
    client.close(CloseReason::ClientClosed);
    let _ = writer.await;
}

/// The server side of a client's TLS handshake, bounded by the TLS timeout: after the plain
/// text INFO `info` (nats-server's default), or before anything with `handshake_first`. A
/// failure is logged with nats-server's wording; the caller closes the socket by dropping it.
async fn tls_handshake(
    tls: &ClientTls,
    client: &Client,
    mut stream: TcpStream,
    info: &[u8],
    cid: u64,
    addr: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    tracing::debug!(cid, %addr, "Starting TLS client connection handshake");
    let handshake = async {
        if !tls.handshake_first {
            stream.write_all(info).await?;
        }
        tls.acceptor.accept(stream).await
    };
    match tokio::time::timeout(tls.timeout, handshake).await {
        Ok(Ok(stream)) => {
            let (_, session) = stream.get_ref();
            tracing::debug!(
                cid,
                %addr,
                version = ?session.protocol_version(),
                cipher = ?session.negotiated_cipher_suite().map(|s| s.suite()),
                "TLS handshake complete"
            );
            client.meta.lock().tls = TlsSession::of(session);
            Some(stream)
        }
        Ok(Err(err)) => {
            tracing::error!(cid, %addr, "TLS handshake error: {err}");
            None
        }
        Err(_) => {
            tracing::error!(cid, %addr, "TLS handshake timeout");
            None
        }
    }
}
