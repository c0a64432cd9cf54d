//! One route session, dialled or accepted: the hello exchange and its checks (self, cluster
//! name, duplicates), then reading the peer's frames (interest, messages, pings, gossip) until
//! the stream ends, and the cleanup that removes the peer's interest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use natrix_proto::route::{RouteBatch, RouteFrame, RouteMsg, RoutePing, RoutePong, route_frame};
use parking_lot::Mutex;
use tonic::Status;

use super::interest::PeerInterest;
use super::link::{Link, LinkQueue, LinkStats};
use super::{Mesh, Refusal, announce_connect_urls, dial, resolve_unspecified};
use crate::internal::InternalMsg;
use crate::router::MatchCache;
use crate::state::ServerState;

/// The hello must arrive this soon after the stream opens.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A ping goes out this often; a session silent for `IDLE_LIMIT` is dropped.
const PING_INTERVAL: Duration = Duration::from_secs(2);
const IDLE_LIMIT: Duration = Duration::from_secs(10);
/// A session replaced by a preferred one reads what the peer still sends on it for at most
/// this long (the peer ends its side once it switched too).
const RETIRE_LIMIT: Duration = Duration::from_secs(2);

/// How a session ended, which tells a dial loop what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The peer is this node: stop dialling that route.
    SelfRoute,
    /// A preferred session to this peer exists: dial again once it is gone.
    Duplicate(String),
    /// The peer belongs to another cluster.
    ClusterMismatch,
    /// The stream ended; `established` if it got past the hello.
    Closed { established: bool },
}

/// Which side of the session this node is.
#[derive(Debug, Clone)]
pub(crate) enum Role {
    /// Dialled by this node; its hello (with `nonce`) is already queued.
    Dialer {
        nonce: u64,
        configured: bool,
    },
    Acceptor,
}

pub(crate) async fn run<S>(
    state: Arc<ServerState>,
    mesh: Arc<Mesh>,
    queue: Arc<LinkQueue>,
    mut inbound: S,
    remote_addr: SocketAddr,
    role: Role,
) -> SessionEnd
where
    S: Stream<Item = Result<RouteBatch, Status>> + Unpin + Send,
{
    let first = match tokio::time::timeout(HELLO_TIMEOUT, inbound.next()).await {
        Ok(Some(Ok(batch))) => batch,
        Ok(Some(Err(status))) => {
            tracing::debug!(%remote_addr, %status, "route stream failed before hello");
            queue.close();
            return SessionEnd::Closed { established: false };
        }
        Ok(None) | Err(_) => {
            tracing::debug!(%remote_addr, "route stream ended or timed out before hello");
            queue.close();
            return SessionEnd::Closed { established: false };
        }
    };
    let mut frames = first.frames.into_iter();
    let hello = match frames.next().and_then(|f| f.kind) {
        Some(route_frame::Kind::Hello(hello)) => hello,
        _ => {
            tracing::warn!(%remote_addr, "route session did not start with a hello");
            queue.close();
            return SessionEnd::Closed { established: false };
        }
    };
    let Some(peer) = hello.node.clone() else {
        tracing::warn!(%remote_addr, "route hello without node info");
        queue.close();
        return SessionEnd::Closed { established: false };
    };
    let (nonce, dialer_id, did_solicit, configured) = match role {
        Role::Dialer { nonce, configured } => (nonce, mesh.server_id.clone(), true, configured),
        Role::Acceptor => {
            queue.push(mesh.hello_frame(hello.session_nonce, &hello.dialer_id), 256);
            (hello.session_nonce, hello.dialer_id.clone(), false, false)
        }
    };
    if peer.server_id == mesh.server_id {
        tracing::debug!(%remote_addr, "detected route to self, ignoring");
        queue.close();
        return SessionEnd::SelfRoute;
    }
    if peer.cluster != mesh.cluster_name && !peer.cluster_dynamic && !mesh.dynamic_name {
        tracing::error!(
            %remote_addr,
            "Rejecting connection, cluster name {:?} does not match {:?}",
            peer.cluster,
            mesh.cluster_name
        );
        queue.close();
        return SessionEnd::ClusterMismatch;
    }
    let seen = remote_addr.ip();
    let link = Arc::new(Link {
        rid: mesh.next_rid(),
        peer_cluster_addr: resolve_unspecified(&peer.cluster_addr, seen),
        peer_client_urls: peer
            .client_urls
            .iter()
            .map(|u| resolve_unspecified(u, seen))
            .collect(),
        peer,
        did_solicit,
        is_configured: configured,
        remote_addr,
        dialer_id,
        nonce,
        started: SystemTime::now(),
        started_instant: Instant::now(),
        queue: queue.clone(),
        stats: LinkStats::default(),
        interest: Mutex::new(PeerInterest::default()),
    });
    match mesh.register(&link) {
        Ok(replaced) => {
            // The replaced session's interest goes now (the peer sends all of it again on
            // this one), so a message matches one session to the peer, not two.
            if let Some(replaced) = replaced {
                state.router.remove_peer_interest(&replaced);
            }
        }
        Err(Refusal::Duplicate) => {
            tracing::debug!(peer = %link.peer.server_id, "dropping duplicate route session");
            queue.close();
            return SessionEnd::Duplicate(link.peer.server_id.clone());
        }
        Err(Refusal::ShuttingDown) => {
            tracing::debug!(peer = %link.peer.server_id, "refusing a route session: stopping");
            queue.close();
            return SessionEnd::Closed { established: false };
        }
    }
    tracing::info!(
        rid = link.rid,
        peer = %link.peer.server_name,
        %remote_addr,
        solicited = did_solicit,
        "Route connection created"
    );
    announce_connect_urls(&state, &mesh);

    let mut reader = Reader {
        state: &state,
        mesh: &mesh,
        link: &link,
        cache: MatchCache::default(),
        ping_sent: None,
    };
    let rest: Vec<RouteFrame> = frames.collect();
    reader.handle_batch(rest);
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_read = Instant::now();
    let mut retire_deadline: Option<tokio::time::Instant> = None;
    loop {
        if queue.is_closed() {
            break;
        }
        if retire_deadline.is_none() && queue.is_retiring() {
            retire_deadline = Some(tokio::time::Instant::now() + RETIRE_LIMIT);
        }
        tokio::select! {
            next = inbound.next() => match next {
                Some(Ok(batch)) => {
                    last_read = Instant::now();
                    reader.handle_batch(batch.frames);
                }
                Some(Err(status)) => {
                    tracing::debug!(rid = link.rid, %status, "route stream error");
                    break;
                }
                None => break,
            },
            _ = ping.tick(), if retire_deadline.is_none() => {
                if last_read.elapsed() > IDLE_LIMIT {
                    tracing::warn!(rid = link.rid, "Stale route connection - closing");
                    break;
                }
                reader.ping_sent.get_or_insert_with(Instant::now);
                queue.push(RouteFrame { kind: Some(route_frame::Kind::Ping(RoutePing {})) }, 16);
            }
            _ = queue.closed.notified() => break,
            _ = queue.retired.notified(), if retire_deadline.is_none() => {}
            () = sleep_until_some(retire_deadline) => {
                tracing::debug!(rid = link.rid, "replaced route session: the peer did not end it");
                break;
            }
        }
    }
    queue.close();
    if queue.overflowed.load(Ordering::Relaxed) {
        tracing::warn!(
            rid = link.rid,
            "route slow consumer: pending bytes exceeded, closing"
        );
    }
    mesh.unregister(&link);
    state.router.remove_peer_interest(&link);
    tracing::info!(rid = link.rid, peer = %link.peer.server_name, "Route connection closed");
    announce_connect_urls(&state, &mesh);
    if queue.is_retiring() {
        // Replaced by a preferred session: the dial loop waits for that one to end.
        return SessionEnd::Duplicate(link.peer.server_id.clone());
    }
    SessionEnd::Closed { established: true }
}

struct Reader<'a> {
    state: &'a Arc<ServerState>,
    mesh: &'a Arc<Mesh>,
    link: &'a Arc<Link>,
    cache: MatchCache,
    ping_sent: Option<Instant>,
}

impl Reader<'_> {
    fn handle_batch(&mut self, frames: Vec<RouteFrame>) {
        if frames.is_empty() {
            return;
        }
        self.link.touch();
        for frame in frames {
            match frame.kind {
                // A replaced session's interest is gone; the peer sends it on the new one.
                Some(route_frame::Kind::Interest(_)) if self.link.queue.is_retiring() => {}
                Some(route_frame::Kind::Interest(i)) => {
                    let queue = (!i.queue.is_empty()).then_some(i.queue);
                    self.state
                        .router
                        .apply_peer_interest(self.link, i.subject, queue, i.count);
                }
                Some(route_frame::Kind::Msg(msg)) => self.deliver(&msg),
                Some(route_frame::Kind::Ping(_)) => {
                    self.link.queue.push(
                        RouteFrame {
                            kind: Some(route_frame::Kind::Pong(RoutePong {})),
                        },
                        16,
                    );
                }
                Some(route_frame::Kind::Pong(_)) => {
                    if let Some(sent) = self.ping_sent.take() {
                        self.link
                            .stats
                            .rtt_us
                            .store(sent.elapsed().as_micros() as u64, Ordering::Relaxed);
                    }
                }
                Some(route_frame::Kind::Peers(peers)) => {
                    for addr in peers.cluster_addrs {
                        let addr = resolve_unspecified(&addr, self.link.remote_addr.ip());
                        if addr == self.mesh.advertised_cluster_addr
                            || self.mesh.is_connected_addr(&addr)
                        {
                            continue;
                        }
                        dial::spawn(self.state.clone(), self.mesh.clone(), addr, false);
                    }
                }
                Some(route_frame::Kind::Hello(_)) | None => {}
            }
        }
        self.cache.report(&self.state.router);
    }

    /// Delivers a forwarded message to local client subscribers only (never forwarded again):
    /// every plain subscriber, and one member of each queue group the sender named.
    fn deliver(&mut self, msg: &RouteMsg) {
        let stats = &self.link.stats;
        stats.in_msgs.fetch_add(1, Ordering::Relaxed);
        stats.in_bytes.fetch_add(
            (msg.payload.len() + msg.headers.as_ref().map_or(0, Bytes::len)) as u64,
            Ordering::Relaxed,
        );
        let routed = self.cache.lookup(&self.state.router, &msg.subject);
        let im = InternalMsg {
            subject: msg.delivered_subject.as_deref().unwrap_or(&msg.subject),
            reply: msg.reply.as_deref(),
            headers: msg.headers.as_deref(),
            payload: &msg.payload,
            client_id: 0,
            hops: msg.hops,
        };
        if msg.to_internal {
            // Handed to this node's JetStream: its internal subscriptions only.
            for sub in &routed.local.plain {
                if sub.0.internal.is_some() {
                    self.state.deliver_internal(&sub.0, im);
                }
            }
            return;
        }
        for sub in &routed.local.plain {
            if sub.0.advertised() {
                self.state.deliver_internal(&sub.0, im);
            }
        }
        for name in &msg.queues {
            let Some(group) = routed.local.queues.iter().find(|g| g.name == name) else {
                continue;
            };
            let n = group.members.len();
            if n == 0 {
                continue;
            }
            let start = fastrand::usize(..n);
            let _ = (0..n).any(|i| {
                let sub = &group.members[(start + i) % n].0;
                sub.advertised() && self.state.deliver_internal(sub, im)
            });
        }
    }
}

/// Sleeps until `deadline`; forever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
