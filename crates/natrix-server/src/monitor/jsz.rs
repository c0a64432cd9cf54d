//! `/jsz` in nats-server's shape. Until the JetStream engine reports its own figures, the
//! counters are zero and `disabled` says whether JetStream is configured at all.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Serialize;

use super::time::rfc3339_nano;
use super::{Monitor, Params, json};

#[derive(Serialize)]
struct Jsz {
    memory: u64,
    storage: u64,
    reserved_memory: u64,
    reserved_storage: u64,
    accounts: u64,
    ha_assets: u64,
    api: ApiStats,
    server_id: String,
    now: String,
    disabled: bool,
    config: JszConfig,
    streams: u64,
    consumers: u64,
    messages: u64,
    bytes: u64,
    total: u64,
}

#[derive(Serialize)]
struct ApiStats {
    level: u32,
    total: u64,
    errors: u64,
}

#[derive(Serialize)]
struct JszConfig {
    max_memory: i64,
    max_storage: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    store_dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
}

pub(crate) async fn handle(
    State(monitor): State<Arc<Monitor>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    monitor.count_request("/jsz");
    let state = &monitor.state;
    let js = state.config.jetstream.as_ref();
    let jsz = Jsz {
        memory: 0,
        storage: 0,
        reserved_memory: 0,
        reserved_storage: 0,
        accounts: 0,
        ha_assets: 0,
        api: ApiStats {
            level: 0,
            total: 0,
            errors: 0,
        },
        server_id: state.server_id.clone(),
        now: rfc3339_nano(SystemTime::now()),
        disabled: js.is_none(),
        config: JszConfig {
            max_memory: js.and_then(|j| j.max_memory_store).unwrap_or(0),
            max_storage: js.and_then(|j| j.max_file_store).unwrap_or(0),
            store_dir: js
                .and_then(|j| j.store_dir.as_ref())
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            domain: js.and_then(|j| j.domain.clone()),
        },
        streams: 0,
        consumers: 0,
        messages: 0,
        bytes: 0,
        total: 0,
    };
    json(&Params(query), &jsz)
}
