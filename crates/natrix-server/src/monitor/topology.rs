//! `/routez`, `/gatewayz`, `/leafz` and `/accountz` in nats-server's shapes. natrix has no
//! NATS routes, gateways, leaf nodes or multiple accounts (its cluster traffic runs over gRPC),
//! so these report what a standalone nats-server reports: none, and the global account.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Serialize;

use super::time::rfc3339_nano;
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
        routes: Vec<Empty>,
    }
    let state = &monitor.state;
    let routez = Routez {
        server_id: state.server_id.clone(),
        server_name: state.server_name.clone(),
        now: rfc3339_nano(SystemTime::now()),
        num_routes: 0,
        routes: Vec::new(),
    };
    json(&Params(query), &routez)
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
        accounts: Vec<&'static str>,
    }
    let accountz = Accountz {
        server_id: monitor.state.server_id.clone(),
        now: rfc3339_nano(SystemTime::now()),
        accounts: vec![GLOBAL_ACCOUNT],
    };
    json(&Params(query), &accountz)
}
