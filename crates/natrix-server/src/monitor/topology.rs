//! `/routez`, `/gatewayz`, `/leafz` and `/accountz` in nats-server's shapes. `/routez` lists the
//! route mesh's sessions (over gRPC, with nats-server's route fields); natrix has no gateways,
//! leaf nodes or multiple accounts, so those report what a standalone nats-server reports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Serialize;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::response::IntoResponse;

use super::time::{go_duration, rfc3339_nano, uptime};
use super::{Empty, GLOBAL_ACCOUNT, Monitor, Params, json};

type QueryPairs = Query<Vec<(String, String)>>;

pub(crate) async fn routez(
    State(monitor): State<Arc<Monitor>>,
    Query(query): QueryPairs,
) -> Response {
    monitor.count_request("/routez");
    #[derive(Serialize)]
    struct Routez {
        server_id: String,
        server_name: String,
        now: String,
        num_routes: usize,
        routes: Vec<RouteInfo>,
    }
    #[derive(Serialize)]
    struct RouteInfo {
        rid: u64,
        remote_id: String,
        remote_name: String,
        did_solicit: bool,
        is_configured: bool,
        ip: String,
        port: u16,
        start: String,
        last_activity: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        rtt: String,
        uptime: String,
        idle: String,
        pending_size: usize,
        in_msgs: u64,
        out_msgs: u64,
        in_bytes: u64,
        out_bytes: u64,
        subscriptions: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        subscriptions_list: Option<Vec<String>>,
    }
    let params = Params(query);
    let with_subs = match params.subs() {
        Ok((subs, detail)) => subs || detail,
        Err(bad) => return bad.into_response(),
    };
    let state = &monitor.state;
    let now = SystemTime::now();
    let links = state.router.mesh().map(|m| m.links()).unwrap_or_default();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let routes: Vec<RouteInfo> = links
        .iter()
        .map(|l| {
            let last_ms = load(&l.stats.last_activity_ms);
            let last = l.started + Duration::from_millis(last_ms);
            let rtt_us = load(&l.stats.rtt_us);
            let interest = l.interest.lock();
            RouteInfo {
                rid: l.rid,
                remote_id: l.peer.server_id.clone(),
                remote_name: l.peer.server_name.clone(),
                did_solicit: l.did_solicit,
                is_configured: l.is_configured,
                ip: l.remote_addr.ip().to_string(),
                port: l.remote_addr.port(),
                start: rfc3339_nano(l.started),
                last_activity: rfc3339_nano(last),
                rtt: if rtt_us == 0 {
                    String::new()
                } else {
                    go_duration(Duration::from_micros(rtt_us))
                },
                uptime: uptime(l.started_instant.elapsed()),
                idle: uptime(now.duration_since(last).unwrap_or_default()),
                pending_size: l.queue.pending_bytes(),
                in_msgs: load(&l.stats.in_msgs),
                out_msgs: load(&l.stats.out_msgs),
                in_bytes: load(&l.stats.in_bytes),
                out_bytes: load(&l.stats.out_bytes),
                subscriptions: interest.len(),
                subscriptions_list: with_subs.then(|| interest.subjects()),
            }
        })
        .collect();
    let routez = Routez {
        server_id: state.server_id.clone(),
        server_name: state.server_name.clone(),
        now: rfc3339_nano(now),
        num_routes: routes.len(),
        routes,
    };
    json(&params, &routez)
}

pub(crate) async fn gatewayz(
    State(monitor): State<Arc<Monitor>>,
    Query(query): QueryPairs,
) -> Response {
    monitor.count_request("/gatewayz");
    #[derive(Serialize)]
    struct Gatewayz {
        server_id: String,
        now: String,
        outbound_gateways: BTreeMap<String, Empty>,
        inbound_gateways: BTreeMap<String, Empty>,
    }
    let gatewayz = Gatewayz {
        server_id: monitor.state.server_id.clone(),
        now: rfc3339_nano(SystemTime::now()),
        outbound_gateways: BTreeMap::new(),
        inbound_gateways: BTreeMap::new(),
    };
    json(&Params(query), &gatewayz)
}

pub(crate) async fn leafz(
    State(monitor): State<Arc<Monitor>>,
    Query(query): QueryPairs,
) -> Response {
    monitor.count_request("/leafz");
    #[derive(Serialize)]
    struct Leafz {
        server_id: String,
        now: String,
        leafnodes: usize,
        leafs: Vec<Empty>,
    }
    let leafz = Leafz {
        server_id: monitor.state.server_id.clone(),
        now: rfc3339_nano(SystemTime::now()),
        leafnodes: 0,
        leafs: Vec::new(),
    };
    json(&Params(query), &leafz)
}

/// The account list. natrix has no system account, so `system_account` is absent (nats-server
/// shows `$SYS` and lists it).
pub(crate) async fn accountz(
    State(monitor): State<Arc<Monitor>>,
    Query(query): QueryPairs,
) -> Response {
    monitor.count_request("/accountz");
    #[derive(Serialize)]
    struct Accountz {
        server_id: String,
        now: String,
        accounts: Vec<String>,
    }
    let accountz = Accountz {
        server_id: monitor.state.server_id.clone(),
        now: rfc3339_nano(SystemTime::now()),
        // nats-server lists the global account even when every client is in a named one.
        accounts: std::iter::once(GLOBAL_ACCOUNT.to_string())
            .chain(Some(monitor.state.config.account.name.clone()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    json(&Params(query), &accountz)
}
