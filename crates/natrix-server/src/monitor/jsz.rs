//! `/jsz` in nats-server's shape: JetStream usage of the node, and with `accounts`, `streams`,
//! `consumers` (and `config`) the per-account, per-stream and per-consumer details.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::time::rfc3339_nano;
use super::{GLOBAL_ACCOUNT, Monitor, Params, json};
use crate::jetstream::{JetStream, Usage};
use crate::state::ServerState;

#[derive(Serialize)]
struct Jsz {
    server_id: String,
    now: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disabled: bool,
    config: JszConfig,
    #[serde(flatten)]
    stats: JetStreamStats,
    streams: u64,
    consumers: u64,
    messages: u64,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta_cluster: Option<MetaCluster>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    account_details: Vec<AccountDetail>,
}

/// nats-server's `MetaClusterInfo`: the meta group as this node sees it (clustered JetStream).
#[derive(Serialize)]
struct MetaCluster {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    peer: String,
    cluster_size: usize,
}

/// What JetStream stores and its API's counts: the figures `/jsz`, its account details and
/// `/varz`'s `jetstream.stats` share, in nats-server's order.
#[derive(Serialize, Default)]
pub(super) struct JetStreamStats {
    pub memory: u64,
    pub storage: u64,
    pub reserved_memory: u64,
    pub reserved_storage: u64,
    pub accounts: u64,
    pub ha_assets: u64,
    pub api: ApiStats,
}

/// The JetStream API's request and error counts (`/jsz`'s and `/varz`'s `api`).
#[derive(Serialize, Default)]
pub(super) struct ApiStats {
    total: u64,
    errors: u64,
}

impl JetStreamStats {
    /// This node's figures: one account, nothing reserved, no HA assets counted.
    pub(super) fn of_node(js: &JetStream, usage: &Usage) -> JetStreamStats {
        JetStreamStats {
            memory: usage.memory,
            storage: usage.storage,
            reserved_memory: 0,
            reserved_storage: 0,
            accounts: 1,
            ha_assets: 0,
            api: ApiStats::of(js),
        }
    }
}

impl ApiStats {
    pub(super) fn of(js: &JetStream) -> ApiStats {
        ApiStats {
            total: js.api_total.load(Ordering::Relaxed),
            errors: js.api_errors.load(Ordering::Relaxed),
        }
    }
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

#[derive(Serialize)]
struct AccountDetail {
    name: String,
    id: String,
    #[serde(flatten)]
    stats: JetStreamStats,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stream_detail: Vec<StreamDetail>,
}

#[derive(Serialize)]
struct StreamDetail {
    name: String,
    created: String,
    cluster: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<natrix_stream::StreamConfig>,
    state: natrix_stream::StreamState,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    consumer_detail: Vec<serde_json::Value>,
}

pub(crate) async fn handle(
    State(monitor): State<Arc<Monitor>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    monitor.count_request("/jsz");
    let params = Params(query);
    let flags = (|| {
        Ok::<_, super::BadRequest>((
            params.bool("accounts")?,
            params.bool("streams")?,
            params.bool("consumers")?,
            params.bool("config")?,
        ))
    })();
    let (accounts, streams, consumers, config) = match flags {
        Ok(f) => f,
        Err(bad) => return bad.into_response(),
    };
    let state = &monitor.state;
    let jsz = match state.jetstream.get() {
        Some(js) => enabled(
            state,
            js,
            accounts || streams || consumers,
            streams || consumers,
            consumers,
            config,
        ),
        None => Jsz {
            server_id: state.server_id.clone(),
            now: rfc3339_nano(SystemTime::now()),
            disabled: true,
            config: JszConfig {
                max_memory: 0,
                max_storage: 0,
                store_dir: String::new(),
                domain: None,
            },
            stats: JetStreamStats::default(),
            streams: 0,
            consumers: 0,
            messages: 0,
            bytes: 0,
            meta_cluster: None,
            account_details: Vec::new(),
        },
    };
    json(&params, &jsz)
}

fn enabled(
    state: &ServerState,
    js: &JetStream,
    accounts: bool,
    streams: bool,
    consumers: bool,
    config: bool,
) -> Jsz {
    let usage = js.usage();
    let api = || ApiStats::of(js);
    let hosts = js.streams();
    let (messages, bytes) = hosts
        .iter()
        .fold((0, 0), |(m, b), h| (m + h.messages(), b + h.bytes()));
    let stream_detail = if streams {
        hosts
            .iter()
            .map(|h| StreamDetail {
                name: h.name.clone(),
                created: natrix_stream::rfc3339_nanos(h.created_ns),
                cluster: stream_cluster(js, h, &state.server_name),
                config: config.then(|| h.config()),
                state: h.with_stream(|s| s.state(false, None, h.consumer_count())),
                consumer_detail: if consumers {
                    h.listed_consumers()
                        .iter()
                        .map(|c| {
                            let mut info =
                                serde_json::to_value(c.info(h, state)).unwrap_or_default();
                            if let Some(obj) = info.as_object_mut() {
                                obj.remove("ts");
                                if !config {
                                    obj.remove("config");
                                }
                            }
                            info
                        })
                        .collect()
                } else {
                    Vec::new()
                },
            })
            .collect()
    } else {
        Vec::new()
    };
    // nats-server details the global account once it has streams, a named account with
    // JetStream always; "reserved" is the account's limit (u64::MAX, i.e. -1, without one).
    let account = &js.account;
    let named = account.name != GLOBAL_ACCOUNT;
    let account_details = if accounts && (usage.streams > 0 || named) {
        let limits = account.jetstream.unwrap_or_default();
        vec![AccountDetail {
            name: account.name.clone(),
            id: account.name.clone(),
            stats: JetStreamStats {
                memory: usage.memory,
                storage: usage.storage,
                reserved_memory: u64::try_from(limits.max_memory).unwrap_or(u64::MAX),
                reserved_storage: u64::try_from(limits.max_storage).unwrap_or(u64::MAX),
                accounts: 0,
                ha_assets: 0,
                api: api(),
            },
            stream_detail,
        }]
    } else {
        Vec::new()
    };
    Jsz {
        server_id: state.server_id.clone(),
        now: rfc3339_nano(SystemTime::now()),
        disabled: false,
        config: JszConfig {
            max_memory: js.config.max_memory_store.unwrap_or(-1),
            max_storage: js.config.max_file_store.unwrap_or(-1),
            store_dir: js.store_dir.display().to_string(),
            domain: js.config.domain.clone(),
        },
        stats: JetStreamStats::of_node(js, &usage),
        streams: usage.streams,
        consumers: usage.consumers,
        messages,
        bytes,
        meta_cluster: js.cluster().map(|cluster| {
            let view = cluster.meta_cluster_view(state);
            MetaCluster {
                name: view.name,
                leader: view.leader,
                peer: view.peer,
                cluster_size: view.cluster_size,
            }
        }),
        account_details,
    }
}

/// A stream's `cluster` block as `STREAM.INFO` has it: its replicas and the leader this node
/// knows; a stream without replicas is led by this node.
fn stream_cluster(
    js: &crate::jetstream::JetStream,
    host: &crate::jetstream::StreamHost,
    server_name: &str,
) -> serde_json::Value {
    let assignment = js
        .cluster()
        .and_then(|cluster| cluster.assignment(&host.name))
        .filter(|_| host.replica.is_some());
    match assignment {
        Some(assignment) => {
            crate::jetstream::stream_api::cluster_info(js, &assignment, host.leader())
        }
        None => serde_json::json!({ "leader": server_name }),
    }
}
