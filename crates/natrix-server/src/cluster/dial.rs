//! Dialling peers: one loop per route address (configured, or learned by gossip) that resolves
//! the name, opens the gRPC stream and runs the session, retrying with bounded backoff. Names
//! that do not resolve yet (Kubernetes pods) are retried like refused connections.

use std::sync::Arc;
use std::time::Duration;

use natrix_proto::route::route_client::RouteClient;
use tonic::transport::Endpoint;

use super::Mesh;
use super::link::LinkQueue;
use super::session::{self, Role, SessionEnd};
use crate::state::ServerState;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// nats-server retries routes every second.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A gossiped address is tried this many times in a row before giving up (the peer, or
/// another peer's gossip, will bring it back if it returns).
const IMPLICIT_ATTEMPTS: u32 = 10;
/// How often a loop waiting behind a duplicate session rechecks, at the latest.
const DUPLICATE_RECHECK: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("opening the route stream to {0}: {1}")]
    Open(String, String),
}

/// `nats-route://[user:pass@]host:port[/]` (or `nats://`) as `host:port`.
pub(crate) fn parse_route_url(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hostport = rest.split('/').next()?.trim();
    if hostport.is_empty() {
        return None;
    }
    let has_port = match hostport.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && port.parse::<u16>().is_ok() && !hostport.ends_with(']')
        }
        None => false,
    };
    if has_port {
        Some(hostport.to_string())
    } else {
        Some(format!("{hostport}:6222"))
    }
}

/// The host of a `host:port` dial target, without the brackets of an IPv6 address.
fn target_host(target: &str) -> &str {
    let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Starts a dial loop for `target` unless one already runs.
pub(crate) fn spawn(state: Arc<ServerState>, mesh: Arc<Mesh>, target: String, configured: bool) {
    if !mesh.start_dialing(&target) {
        return;
    }
    tokio::spawn(async move {
        dial_loop(&state, &mesh, &target, configured).await;
        mesh.stop_dialing(&target);
    });
}

async fn dial_loop(state: &Arc<ServerState>, mesh: &Arc<Mesh>, target: &str, configured: bool) {
    let mut shutdown = mesh.shutdown.clone();
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if !configured && (failures >= IMPLICIT_ATTEMPTS || mesh.is_connected_addr(target)) {
            return;
        }
        match dial_once(state, mesh, target, configured).await {
            Ok(SessionEnd::SelfRoute) => return,
            Ok(SessionEnd::Duplicate(peer)) => {
                wait_until_disconnected(mesh, &peer).await;
                backoff = BACKOFF_MIN;
                continue;
            }
            Ok(SessionEnd::ClusterMismatch) => {
                failures += 1;
                backoff = BACKOFF_MAX;
            }
            Ok(SessionEnd::Closed { established: true }) => {
                failures = 0;
                backoff = BACKOFF_MIN;
            }
            Ok(SessionEnd::Closed { established: false }) => {
                failures += 1;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(err) => {
                tracing::debug!(%err, "route dial failed");
                failures += 1;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        let jitter = Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 4));
        tokio::select! {
            _ = tokio::time::sleep(backoff + jitter) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Waits (bounded by shutdown) until no session to `peer` is registered.
async fn wait_until_disconnected(mesh: &Mesh, peer: &str) {
    let mut changed = mesh.changed.subscribe();
    let mut shutdown = mesh.shutdown.clone();
    while mesh.is_connected(peer) && !*shutdown.borrow() {
        tokio::select! {
            _ = changed.changed() => {}
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(DUPLICATE_RECHECK) => {}
        }
    }
}

async fn dial_once(
    state: &Arc<ServerState>,
    mesh: &Arc<Mesh>,
    target: &str,
    configured: bool,
) -> Result<SessionEnd, DialError> {
    let resolved = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host(target))
        .await
        .map_err(|_| DialError::Resolve(target.to_string(), "timed out".into()))?
        .map_err(|e| DialError::Resolve(target.to_string(), e.to_string()))?
        .collect::<Vec<_>>();
    let Some(addr) = resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| resolved.first())
        .copied()
    else {
        return Err(DialError::Resolve(target.to_string(), "no address".into()));
    };
    let connect_err = |e: tonic::transport::Error| {
        DialError::Connect(target.to_string(), crate::tls::error_chain(&e))
    };
    let scheme = if state.cluster_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(connect_err)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if let Some(tls) = &state.cluster_tls {
        // The peer's certificate must name the host of the route URL (DNS name or IP), which
        // is what the operator configured, not the address it happened to resolve to.
        endpoint = endpoint
            .tls_config(tls.client_config(target_host(target)))
            .map_err(connect_err)?;
    }
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(err) => {
            // As nats-server, a refused certificate is an error worth an operator's attention
            // (the peer logs its side too); an unreachable peer is routine while nodes start.
            if crate::tls::is_tls_failure(&err) {
                tracing::error!(
                    peer = target,
                    "TLS route handshake error: {}",
                    crate::tls::error_chain(&err)
                );
            }
            return Err(connect_err(err));
        }
    };
    let mut client = RouteClient::new(channel)
        .max_decoding_message_size(mesh.max_message)
        .max_encoding_message_size(mesh.max_message);
    let queue = LinkQueue::new(mesh.max_pending);
    let nonce = fastrand::u64(..);
    queue.push(mesh.hello_frame(nonce, &mesh.server_id), 256);
    let response = match tokio::time::timeout(CONNECT_TIMEOUT, client.session(queue.stream())).await
    {
        Ok(Ok(response)) => response,
        Ok(Err(status)) => {
            queue.close();
            return Err(DialError::Open(target.to_string(), status.to_string()));
        }
        Err(_) => {
            queue.close();
            return Err(DialError::Open(target.to_string(), "timed out".into()));
        }
    };
    let inbound = response.into_inner();
    Ok(session::run(
        state.clone(),
        mesh.clone(),
        queue,
        inbound,
        addr,
        Role::Dialer { nonce, configured },
    )
    .await)
}

#[cfg(test)]
mod tests {
    use super::{parse_route_url, target_host};

    #[test]
    fn the_tls_name_of_a_target_is_its_host() {
        assert_eq!(target_host("127.0.0.1:6222"), "127.0.0.1");
        assert_eq!(target_host("nats-0.nats.svc:6222"), "nats-0.nats.svc");
        assert_eq!(target_host("[::1]:6222"), "::1");
    }

    #[test]
    fn route_urls_become_host_and_port() {
        assert_eq!(
            parse_route_url("nats-route://127.0.0.1:6223").as_deref(),
            Some("127.0.0.1:6223")
        );
        assert_eq!(
            parse_route_url("nats://user:pw@nats-0.nats.svc:7000/").as_deref(),
            Some("nats-0.nats.svc:7000")
        );
        assert_eq!(
            parse_route_url("nats-route://seed").as_deref(),
            Some("seed:6222")
        );
        assert_eq!(parse_route_url("nats-route://"), None);
    }
}
