//! `/varz`: the node's identity, configuration limits, resource usage and traffic counters,
//! in nats-server's field order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Serialize;

use super::jsz::JetStreamStats;
use super::time::{rfc3339_nano, uptime};
use super::{Empty, Monitor, Params, go_float, is_false, json, process};

/// Without TLS nats-server reports its default handshake timeout regardless.
const TLS_TIMEOUT_SECS: f64 = 2.0;

#[derive(Serialize)]
pub(crate) struct Varz {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: i32,
    pub go: String,
    pub host: String,
    pub port: u16,
    #[serde(skip_serializing_if = "is_false")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_verify: bool,
    pub max_connections: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_subscriptions: u64,
    /// Nanoseconds (a Go `time.Duration`).
    pub ping_interval: u64,
    pub ping_max: u32,
    pub http_host: String,
    pub http_port: u16,
    pub http_base_path: &'static str,
    pub https_port: u16,
    /// Seconds.
    #[serde(serialize_with = "go_float")]
    pub auth_timeout: f64,
    pub max_control_line: u32,
    pub max_payload: u32,
    pub max_pending: u64,
    pub cluster: ClusterVarz,
    pub gateway: Empty,
    pub leaf: Empty,
    pub mqtt: Empty,
    pub websocket: Empty,
    pub jetstream: JetStreamVarz,
    #[serde(serialize_with = "go_float")]
    pub tls_timeout: f64,
    /// Nanoseconds.
    pub write_deadline: u64,
    pub start: String,
    pub now: String,
    pub uptime: String,
    pub mem: u64,
    pub cores: usize,
    pub gomaxprocs: usize,
    #[serde(serialize_with = "go_float")]
    pub cpu: f64,
    pub connections: usize,
    pub total_connections: u64,
    pub routes: u64,
    pub remotes: u64,
    pub leafnodes: u64,
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub in_client_msgs: u64,
    pub in_client_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub out_client_msgs: u64,
    pub out_client_bytes: u64,
    pub slow_consumers: u64,
    pub stale_connections: u64,
    pub stalled_clients: u64,
    pub subscriptions: usize,
    pub http_req_stats: BTreeMap<&'static str, u64>,
    pub config_load_time: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub config_digest: &'static str,
    pub slow_consumer_stats: KindCounts,
    pub stale_connection_stats: KindCounts,
}

/// nats-server's `ClusterOptsVarz`; `{}` without a cluster.
#[derive(Serialize, Default)]
pub(crate) struct ClusterVarz {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(rename = "addr", skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(rename = "cluster_port", skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    urls: Vec<String>,
}

/// `{}` while JetStream is off; its configuration and usage once enabled.
#[derive(Serialize, Default)]
pub(crate) struct JetStreamVarz {
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<JetStreamConfigVarz>,
    /// What JetStream stores on this node and its API's counts, as in `/jsz`.
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<JetStreamStats>,
}

#[derive(Serialize)]
pub(crate) struct JetStreamConfigVarz {
    max_memory: i64,
    max_storage: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    store_dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
}

/// A count split by connection kind; natrix has clients only.
#[derive(Serialize)]
pub(crate) struct KindCounts {
    clients: u64,
    routes: u64,
    gateways: u64,
    leafs: u64,
}

impl KindCounts {
    fn clients(clients: u64) -> Self {
        Self {
            clients,
            routes: 0,
            gateways: 0,
            leafs: 0,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub(crate) async fn handle(
    State(monitor): State<Arc<Monitor>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    // Counted first, so a /varz answer includes itself, as nats-server's does.
    monitor.count_request("/varz");
    json(&Params(query), &build(&monitor))
}

pub(crate) fn build(monitor: &Monitor) -> Varz {
    let state = &monitor.state;
    let config = &state.config;
    let limits = &config.limits;
    let stats = &state.stats;
    let now = SystemTime::now();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (in_msgs, in_bytes) = (load(&stats.in_msgs), load(&stats.in_bytes));
    let (out_msgs, out_bytes) = (load(&stats.out_msgs), load(&stats.out_bytes));
    let slow_consumers = load(&stats.slow_consumers);
    let stale_connections = load(&stats.stale_connections);
    let mesh = state.router.mesh();
    let cluster = config
        .cluster
        .as_ref()
        .map_or_else(ClusterVarz::default, |c| ClusterVarz {
            name: Some(mesh.map_or_else(
                || c.name.clone().unwrap_or_default(),
                |m| m.cluster_name.clone(),
            )),
            host: Some(c.host.clone()),
            // The bound port (differs from the configured one with port 0 / -1).
            port: Some(mesh.map_or(c.port, |m| m.cluster_addr.port())),
            // As nats-server: the configured routes as host:port.
            urls: c
                .routes
                .iter()
                .map(|r| {
                    let rest = r.split_once("://").map_or(r.as_str(), |(_, rest)| rest);
                    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
                    rest.trim_end_matches('/').to_string()
                })
                .collect(),
        });
    let jetstream = JetStreamVarz {
        // The running JetStream's limits (derived from memory and disk when the configuration
        // sets none) and directory, as nats-server shows them.
        config: state.jetstream.get().map(|js| JetStreamConfigVarz {
            max_memory: js.config.max_memory_store.unwrap_or(0),
            max_storage: js.config.max_file_store.unwrap_or(0),
            store_dir: js.store_dir.display().to_string(),
            domain: js.config.domain.clone(),
        }),
        stats: state
            .jetstream
            .get()
            .map(|js| JetStreamStats::of_node(js, &js.usage())),
    };
    Varz {
        server_id: state.server_id.clone(),
        server_name: state.server_name.clone(),
        version: state.info.version.clone(),
        proto: state.info.proto,
        go: state.info.go.clone(),
        host: config.host.clone(),
        port: state.info.port,
        auth_required: config.auth.required(),
        tls_required: state.tls().is_some(),
        tls_verify: state.tls().is_some_and(|t| t.verify),
        max_connections: limits.max_connections,
        max_subscriptions: u64::from(limits.max_subscriptions),
        ping_interval: limits.ping_interval.as_nanos() as u64,
        ping_max: limits.ping_max,
        http_host: config
            .http_host
            .clone()
            .unwrap_or_else(|| config.host.clone()),
        // One monitoring listener: HTTP or HTTPS (nats-server refuses both at once).
        http_port: if config.https_port.is_some() {
            0
        } else {
            monitor.http_addr.port()
        },
        http_base_path: "",
        https_port: if config.https_port.is_some() {
            monitor.http_addr.port()
        } else {
            0
        },
        auth_timeout: limits.auth_timeout.as_secs_f64(),
        max_control_line: limits.max_control_line,
        max_payload: limits.max_payload,
        max_pending: limits.max_pending,
        cluster,
        gateway: Empty {},
        leaf: Empty {},
        mqtt: Empty {},
        websocket: Empty {},
        jetstream,
        tls_timeout: config
            .tls
            .as_ref()
            .map_or(TLS_TIMEOUT_SECS, |t| t.timeout.as_secs_f64()),
        write_deadline: limits.write_deadline.as_nanos() as u64,
        start: rfc3339_nano(state.started),
        now: rfc3339_nano(now),
        uptime: uptime(state.started_instant.elapsed()),
        mem: process::resident_memory(),
        cores,
        gomaxprocs: cores,
        cpu: monitor.cpu.percent(),
        connections: state.clients.read().len(),
        total_connections: load(&stats.total_connections),
        routes: mesh.map_or(0, |m| m.links().len() as u64),
        remotes: 0,
        leafnodes: 0,
        in_msgs,
        in_bytes,
        in_client_msgs: in_msgs,
        in_client_bytes: in_bytes,
        out_msgs,
        out_bytes,
        out_client_msgs: out_msgs,
        out_client_bytes: out_bytes,
        slow_consumers,
        stale_connections,
        stalled_clients: 0,
        subscriptions: state.router.count(),
        http_req_stats: monitor.req_stats.lock().clone(),
        // Configuration is not reloadable yet: it was loaded when the server started.
        config_load_time: rfc3339_nano(state.started),
        // The tags placement uses (`server_tags` plus the automatic `arch:` tag), as nats-server
        // reports the tags it is placed by.
        tags: natrix_cluster::node_tags(&config.tags),
        config_digest: "",
        slow_consumer_stats: KindCounts::clients(slow_consumers),
        stale_connection_stats: KindCounts::clients(stale_connections),
    }
}
