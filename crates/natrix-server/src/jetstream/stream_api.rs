//! The stream requests of the JetStream API (`$JS.API.STREAM.*`): create, update, info, delete,
//! names, list, purge, message get and delete, with nats-server's request and response JSON.

use natrix_raft::WatchReceiver;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use natrix_stream::{
    ApiError, Command, PurgeRequest, Reply, StoredMsg, StreamConfig, rfc3339_nanos,
    subjects_overlap,
};
use serde::{Deserialize, Serialize};

use super::advisory::{self, Action};
use super::api::{ApiResponse, error_response};
use super::{JetStream, StreamHost};
use crate::state::ServerState;

/// Page sizes of nats-server's names and list responses.
const NAMES_LIMIT: usize = 1024;
const LIST_LIMIT: usize = 256;

/// Page size of the per-subject counts in a stream info (nats-server's `JSMaxSubjectDetails`).
const SUBJECTS_LIMIT: usize = 100_000;

/// A JSON response, with `<`, `>` and `&` escaped as Go's encoder does.
fn json(s: String) -> ApiResponse {
    let s = if s.contains(['<', '>', '&']) {
        s.replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
    } else {
        s
    };
    ApiResponse::Json(s)
}

/// An error response with the extra zero fields nats-server adds for `kind` (e.g. `"purged":0`).
fn error_with(kind: &str, err: &ApiError, extra: &str) -> ApiResponse {
    let error = serde_json::to_string(err).unwrap_or_default();
    json(format!("{{{},\"error\":{error}{extra}}}", type_field(kind)))
}

fn type_field(kind: &str) -> String {
    format!("\"type\":\"io.nats.jetstream.api.v1.{kind}_response\"")
}

/// `"config":..,"created":..,"state":..` of a stream info.
pub(crate) fn info_fields(
    host: &StreamHost,
    deleted_details: bool,
    subjects_filter: Option<&str>,
) -> String {
    info_page(host, deleted_details, subjects_filter, 0).1
}

/// A stream info with one page of per-subject counts (those after `offset`, in subject order):
/// the number of matching subjects and the fields.
fn info_page(
    host: &StreamHost,
    deleted_details: bool,
    subjects_filter: Option<&str>,
    offset: usize,
) -> (usize, String) {
    let (total, fields) = info_page_local(host, deleted_details, subjects_filter, offset);
    let cluster = host.js().and_then(|js| {
        let assignment = js.cluster()?.assignment(&host.name)?;
        Some(cluster_info(&js, &assignment, host.leader()))
    });
    let mut fields = match cluster {
        Some(cluster) => format!("{fields},\"cluster\":{cluster}"),
        None => fields,
    };
    copies_info(host, &mut fields);
    (total, fields)
}

/// The `mirror` or `sources` block of a stream that copies.
fn copies_info(host: &StreamHost, fields: &mut String) {
    let (mirror, sources) = super::sourcing::info_entries(host);
    if let Some(mirror) = mirror {
        fields.push_str(&format!(",\"mirror\":{mirror}"));
    }
    if !sources.is_empty() {
        fields.push_str(&format!(
            ",\"sources\":{}",
            serde_json::Value::Array(sources)
        ));
    }
}

fn info_page_local(
    host: &StreamHost,
    deleted_details: bool,
    subjects_filter: Option<&str>,
    offset: usize,
) -> (usize, String) {
    let (config, mut state) = host.with_stream(|s| {
        (
            s.config().to_json(),
            s.state(deleted_details, subjects_filter, host.consumer_count()),
        )
    });
    let subjects = state.subjects.take().unwrap_or_default();
    let total = subjects.len();
    let page: std::collections::BTreeMap<String, u64> = subjects
        .into_iter()
        .skip(offset)
        .take(SUBJECTS_LIMIT)
        .collect();
    state.subjects = (!page.is_empty()).then_some(page);
    let fields = format!(
        "\"config\":{config},\"created\":\"{}\",\"state\":{}",
        rfc3339_nanos(host.created_ns),
        serde_json::to_string(&state).unwrap_or_default()
    );
    (total, fields)
}

/// A create or update body (decoded in `natrix-stream`, where it is fuzzed).
fn parse_config(payload: &[u8]) -> Result<StreamConfig, ApiError> {
    StreamConfig::from_request_body(payload)
}

fn check_name(name: &str, config: &StreamConfig) -> Result<(), ApiError> {
    if config.name != name {
        return Err(ApiError::stream_mismatch());
    }
    Ok(())
}

/// A single node stores one copy: more replicas are refused, as by a non-clustered nats-server.
fn check_replicas(js: &JetStream, config: &StreamConfig) -> Result<(), ApiError> {
    if js.cluster().is_none() && config.num_replicas > 1 {
        return Err(ApiError::replicas_not_supported());
    }
    Ok(())
}

/// Refuses subjects that one of `others` already captures.
fn check_overlap_with(others: &[StreamConfig], config: &StreamConfig) -> Result<(), ApiError> {
    for other in others {
        let collides = config.subjects.iter().any(|mine| {
            other
                .subjects
                .iter()
                .any(|t| subjects_overlap(mine.as_bytes(), t.as_bytes()))
        });
        if collides {
            return Err(ApiError::stream_subject_overlap());
        }
    }
    Ok(())
}

/// The configs of the account's streams other than `name`: the meta group's (the whole
/// cluster's) in a cluster, this node's otherwise.
fn other_streams(js: &JetStream, name: &str) -> Vec<StreamConfig> {
    match js.cluster() {
        Some(cluster) => cluster
            .meta_state
            .read()
            .streams
            .values()
            .filter(|a| a.name != name)
            .filter_map(|a| a.stream_config().ok())
            .collect(),
        None => js
            .streams()
            .iter()
            .filter(|h| h.name != name)
            .map(|h| h.config())
            .collect(),
    }
}

pub(crate) async fn create(
    state: &Arc<ServerState>,
    js: &Arc<JetStream>,
    name: &str,
    payload: &[u8],
) -> ApiResponse {
    const KIND: &str = "stream_create";
    if js.cluster().is_some() {
        return create_clustered(state, js, name, payload).await;
    }
    let result = async {
        let requested = parse_config(payload)?;
        check_name(name, &requested)?;
        let config = requested.validate_for_create()?;
        check_replicas(js, &config)?;
        if let Some(existing) = js.stream(name) {
            if existing.config() == config {
                return Ok(existing);
            }
            return Err(ApiError::stream_name_exists());
        }
        let others = other_streams(js, name);
        check_overlap_with(&others, &config)?;
        js.check_stream_limits(&config, &others, true)?;
        let host = StreamHost::create(state, js, config).await?;
        advisory::stream_action(state, &host.name, Action::Create);
        Ok(host)
    }
    .await;
    match result {
        Ok(host) => json(format!(
            "{{{},{},\"did_create\":true}}",
            type_field(KIND),
            info_fields(&host, false, None)
        )),
        Err(err) => error_response(KIND, &err),
    }
}

/// `STREAM.CREATE` in a cluster: any node places the replicas and records the stream in the
/// meta group; the answer describes the new (empty) stream and its group.
async fn create_clustered(
    state: &Arc<ServerState>,
    js: &Arc<JetStream>,
    name: &str,
    payload: &[u8],
) -> ApiResponse {
    const KIND: &str = "stream_create";
    let Some(cluster) = js.cluster() else {
        return error_response(KIND, &super::cluster::not_available());
    };
    let result = async {
        let requested = parse_config(payload)?;
        check_name(name, &requested)?;
        let config = requested.validate_for_create()?;
        if let Some(existing) = cluster.assignment(name) {
            let existing_config = existing.stream_config()?;
            if existing_config == config {
                return Ok((existing, false));
            }
            return Err(ApiError::stream_name_exists());
        }
        let others = other_streams(js, name);
        check_overlap_with(&others, &config)?;
        js.check_stream_limits(&config, &others, true)?;
        let assignment = cluster.create_stream(state, js, &config).await?;
        Ok((assignment, true))
    }
    .await;
    match result {
        Ok((assignment, created)) => {
            // A leader replica here describes itself (its info has the cluster block); any
            // other node describes the new, empty stream from its assignment.
            let fields = match js.stream(name).filter(|h| h.is_leader()) {
                Some(host) => info_fields(&host, false, None),
                None => {
                    let leader = cluster.group_leader(js, &assignment).await;
                    assignment_fields(js, &assignment, leader)
                }
            };
            if created {
                advisory::stream_action(state, name, Action::Create);
            }
            json(format!(
                "{{{},{fields},\"did_create\":{created}}}",
                type_field(KIND)
            ))
        }
        Err(err) => error_response(KIND, &err),
    }
}

/// The info fields of a stream described from its assignment alone, with an empty state: a new
/// stream, or one whose leader did not answer.
fn assignment_fields(
    js: &JetStream,
    assignment: &natrix_cluster::StreamAssignment,
    leader: Option<u64>,
) -> String {
    let config = assignment.stream_config().unwrap_or_default();
    let state = natrix_stream::Stream::new(config.clone()).state(false, None, 0);
    format!(
        "\"config\":{},\"created\":\"{}\",\"state\":{},\"cluster\":{}",
        config.to_json(),
        rfc3339_nanos(assignment.created_ns),
        serde_json::to_string(&state).unwrap_or_default(),
        cluster_info(js, assignment, leader)
    )
}

/// The `cluster` block of a replicated stream's info: cluster name, leader, other replicas.
/// A follower the leader has not heard from for this long is reported offline (nats-server's
/// `offline`, after its own lost-quorum interval).
const REPLICA_ACTIVE: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) fn cluster_info(
    js: &JetStream,
    assignment: &natrix_cluster::StreamAssignment,
    leader: Option<u64>,
) -> serde_json::Value {
    let Some(cluster) = js.cluster() else {
        return serde_json::json!({});
    };
    let name_of = |id: u64| {
        cluster
            .peer_name(id)
            .unwrap_or_else(|| format!("{id:016x}"))
    };
    // The leader measures its followers: how far each one's log is behind (`lag`, entries),
    // and when it last answered (`active`). Elsewhere nothing is known about them.
    let leading_here = js
        .stream(&assignment.name)
        .filter(|h| h.replica.as_ref().map(|r| r.group_id) == Some(assignment.group_id))
        .filter(|h| leader == Some(cluster.node_id) && h.is_leader());
    let metrics = leading_here
        .as_ref()
        .and_then(|h| h.raft().map(|raft| raft.metrics().borrow_watched().clone()));
    let leader_since = leading_here.as_ref().and_then(|h| h.leader_since_ns());
    let replicas: Vec<serde_json::Value> = assignment
        .peers
        .iter()
        .filter(|p| Some(**p) != leader)
        .map(|p| {
            let mut replica =
                serde_json::json!({"name": name_of(*p), "current": false, "active": 0});
            let Some(metrics) = &metrics else {
                return replica;
            };
            let last = metrics.last_log_index.unwrap_or(0);
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(p).cloned().flatten())
                .map_or(0, |log_id| log_id.index);
            let lag = last.saturating_sub(matched);
            let since = cluster
                .raft
                .channels()
                .since_contact(assignment.group_id, *p);
            let active = since.filter(|d| *d < REPLICA_ACTIVE);
            replica["current"] = (lag == 0 && active.is_some()).into();
            if let Some(since) = since {
                replica["active"] = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX).into();
            }
            if lag > 0 {
                replica["lag"] = lag.into();
            }
            if active.is_none() {
                replica["offline"] = true.into();
            }
            replica
        })
        .collect();
    // nats-server names a stream's group `S-R<replicas><F|M>-<id>`; here the id is the
    // group's number (its consumers share the group).
    let storage = match assignment.config.get("storage").and_then(|v| v.as_str()) {
        Some("memory") => 'M',
        _ => 'F',
    };
    let mut block = serde_json::json!({
        "name": cluster.cluster_name,
        "raft_group": format!("S-R{}{storage}-{:x}", assignment.peers.len(), assignment.group_id),
    });
    if let Some(leader) = leader {
        block["leader"] = name_of(leader).into();
    }
    if let Some(since) = leader_since {
        block["leader_since"] = rfc3339_nanos(since).into();
    }
    if !replicas.is_empty() {
        block["replicas"] = replicas.into();
    }
    block
}

/// The cluster's streams a names/list request selects (all of them, or those whose subjects
/// overlap the request's subject), in name order.
fn cluster_select(
    cluster: &super::cluster::JsCluster,
    req: &ListRequest,
) -> Vec<natrix_cluster::StreamAssignment> {
    cluster
        .meta_state
        .read()
        .streams
        .values()
        .filter(|a| {
            req.subject.is_empty()
                || a.stream_config().is_ok_and(|c| {
                    c.subjects
                        .iter()
                        .any(|s| subjects_overlap(s.as_bytes(), req.subject.as_bytes()))
                })
        })
        .cloned()
        .collect()
}

/// `STREAM.LIST` in a cluster: every stream of the meta state, each described by its leader
/// (or, when no leader answers, by the assignment with an empty state).
async fn list_clustered(js: &JetStream, payload: &[u8]) -> ApiResponse {
    const KIND: &str = "stream_list";
    let Some(cluster) = js.cluster() else {
        return error_response(KIND, &super::cluster::not_available());
    };
    let req = match parse_body::<ListRequest>(payload) {
        Ok(req) => req,
        Err(err) => return error_with(KIND, &err, LIST_ERROR_FIELDS),
    };
    let selected = cluster_select(cluster, &req);
    let total = selected.len();
    let mut infos = Vec::new();
    for assignment in selected.iter().skip(req.offset).take(LIST_LIMIT) {
        let fields = match cluster.leader_info_fields(js, assignment).await {
            Some(fields) => fields,
            None => assignment_fields(js, assignment, None),
        };
        infos.push(format!("{{{fields}}}"));
    }
    json(format!(
        "{{{},\"total\":{total},\"offset\":{},\"limit\":{LIST_LIMIT},\"streams\":[{}]}}",
        type_field(KIND),
        reported_offset(&req, total),
        infos.join(",")
    ))
}

pub(crate) async fn update(
    state: &Arc<ServerState>,
    js: &Arc<JetStream>,
    name: &str,
    payload: &[u8],
) -> ApiResponse {
    const KIND: &str = "stream_update";
    let result = async {
        // nats-server validates the update before it compares names (an empty body fails with
        // "stream name is required").
        let requested = parse_config(payload)?;
        let validated = requested.validate_and_default()?;
        check_name(name, &validated)?;
        check_replicas(js, &validated)?;
        let host = js.stream(name).ok_or_else(ApiError::stream_not_found)?;
        let checked = StreamConfig::check_update(&host.config(), &requested)?;
        let others = other_streams(js, name);
        check_overlap_with(&others, &checked)?;
        js.check_stream_limits(&checked, &others, false)?;
        // A new replica count: the new peers are placed before anything changes (too few
        // suitable nodes refuses the update); the stream's leader then moves its group there.
        let peers = match js.cluster().zip(host.replica.as_ref()) {
            Some((cluster, _)) if checked.num_replicas != host.config().num_replicas => {
                let assignment = cluster
                    .assignment(name)
                    .ok_or_else(ApiError::stream_not_found)?;
                Some(cluster.replan(&assignment, &checked, host.leader(), Default::default())?)
            }
            _ => None,
        };
        host.update(state, requested, peers).await?;
        advisory::stream_action(state, &host.name, Action::Modify);
        Ok(host)
    }
    .await;
    match result {
        Ok(host) => json(format!(
            "{{{},{}}}",
            type_field(KIND),
            info_fields(&host, false, None)
        )),
        Err(err) => error_response(KIND, &err),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InfoRequest {
    deleted_details: bool,
    subjects_filter: String,
    offset: usize,
}

/// Parses an optional JSON request body (see [`natrix_stream::decode_request_body`]).
pub(crate) fn parse_body<T: Default + for<'de> Deserialize<'de>>(
    payload: &[u8],
) -> Result<T, ApiError> {
    natrix_stream::decode_request_body(payload)
}

pub(crate) fn info(js: &JetStream, name: &str, payload: &[u8]) -> ApiResponse {
    const KIND: &str = "stream_info";
    let result = parse_body::<InfoRequest>(payload).and_then(|req| {
        let host = js.stream(name).ok_or_else(ApiError::stream_not_found)?;
        let filter = (!req.subjects_filter.is_empty()).then_some(req.subjects_filter.as_str());
        let (total, fields) = info_page(&host, req.deleted_details, filter, req.offset);
        // With a subjects filter, `total` counts the matching subjects and the page is one of
        // them (clients ask again from `offset` until they have `total`).
        let paging = if filter.is_some() {
            format!(
                "\"total\":{total},\"offset\":{},\"limit\":{SUBJECTS_LIMIT}",
                req.offset
            )
        } else {
            "\"total\":0,\"offset\":0,\"limit\":0".to_owned()
        };
        Ok((paging, fields))
    });
    match result {
        Ok((paging, fields)) => json(format!("{{{},{paging},{fields}}}", type_field(KIND))),
        Err(err) => error_with(KIND, &err, ",\"total\":0,\"offset\":0,\"limit\":0"),
    }
}

pub(crate) async fn delete(
    state: &Arc<ServerState>,
    js: &Arc<JetStream>,
    name: &str,
) -> ApiResponse {
    const KIND: &str = "stream_delete";
    if let Some(cluster) = js.cluster() {
        return match cluster.delete_stream(state, js, name).await {
            Ok(()) => {
                advisory::stream_action(state, name, Action::Delete);
                json(format!("{{{},\"success\":true}}", type_field(KIND)))
            }
            Err(err) => error_response(KIND, &err),
        };
    }
    let Some(host) = js.remove(name) else {
        return error_response(KIND, &ApiError::stream_not_found());
    };
    match host.delete(state).await {
        Ok(()) => {
            advisory::stream_action(state, &host.name, Action::Delete);
            json(format!("{{{},\"success\":true}}", type_field(KIND)))
        }
        Err(err) => error_response(KIND, &err),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListRequest {
    offset: usize,
    subject: String,
}

/// The streams a names/list request selects, after `offset`.
fn select(js: &JetStream, req: &ListRequest) -> (usize, Vec<Arc<StreamHost>>) {
    let all: Vec<Arc<StreamHost>> = js
        .streams()
        .into_iter()
        .filter(|host| {
            req.subject.is_empty()
                || host
                    .config()
                    .subjects
                    .iter()
                    .any(|s| subjects_overlap(s.as_bytes(), req.subject.as_bytes()))
        })
        .collect();
    let total = all.len();
    (total, all.into_iter().skip(req.offset).collect())
}

/// The offset a names/list response reports: nats-server clamps it to the total.
fn reported_offset(req: &ListRequest, total: usize) -> usize {
    req.offset.min(total)
}

const LIST_ERROR_FIELDS: &str = ",\"total\":0,\"offset\":0,\"limit\":0,\"streams\":null";

pub(crate) fn names(js: &JetStream, payload: &[u8]) -> ApiResponse {
    const KIND: &str = "stream_names";
    match parse_body::<ListRequest>(payload) {
        Ok(req) => {
            let (total, all) = match js.cluster() {
                // Every stream of the cluster, not only those with a replica here.
                Some(cluster) => {
                    let all: Vec<String> = cluster_select(cluster, &req)
                        .into_iter()
                        .map(|a| a.name)
                        .collect();
                    (
                        all.len(),
                        all.into_iter().skip(req.offset).collect::<Vec<_>>(),
                    )
                }
                None => {
                    let (total, hosts) = select(js, &req);
                    (total, hosts.iter().map(|h| h.name.clone()).collect())
                }
            };
            let names: Vec<&str> = all.iter().take(NAMES_LIMIT).map(String::as_str).collect();
            // Go's nil slice: no names is `null`.
            let streams = if names.is_empty() {
                "null".to_owned()
            } else {
                serde_json::to_string(&names).unwrap_or_default()
            };
            json(format!(
                "{{{},\"total\":{total},\"offset\":{},\"limit\":{NAMES_LIMIT},\"streams\":{streams}}}",
                type_field(KIND),
                reported_offset(&req, total),
            ))
        }
        Err(err) => error_with(KIND, &err, LIST_ERROR_FIELDS),
    }
}

pub(crate) async fn list(js: &JetStream, payload: &[u8]) -> ApiResponse {
    const KIND: &str = "stream_list";
    if js.cluster().is_some() {
        return list_clustered(js, payload).await;
    }
    match parse_body::<ListRequest>(payload) {
        Ok(req) => {
            let (total, hosts) = select(js, &req);
            let infos: Vec<String> = hosts
                .iter()
                .take(LIST_LIMIT)
                .map(|h| format!("{{{}}}", info_fields(h, false, None)))
                .collect();
            json(format!(
                "{{{},\"total\":{total},\"offset\":{},\"limit\":{LIST_LIMIT},\"streams\":[{}]}}",
                type_field(KIND),
                reported_offset(&req, total),
                infos.join(",")
            ))
        }
        Err(err) => error_with(KIND, &err, LIST_ERROR_FIELDS),
    }
}

pub(crate) async fn purge(js: &JetStream, name: &str, payload: &[u8]) -> ApiResponse {
    const KIND: &str = "stream_purge";
    let result = async {
        let req = parse_body::<PurgeRequest>(payload)?;
        let host = js.stream(name).ok_or_else(ApiError::stream_not_found)?;
        match host.command(Command::Purge(req)).await? {
            Reply::Purged { purged } => Ok(purged),
            _ => Err(ApiError::bad_request()),
        }
    }
    .await;
    match result {
        Ok(purged) => json(format!(
            "{{{},\"success\":true,\"purged\":{purged}}}",
            type_field(KIND)
        )),
        Err(err) => error_with(KIND, &err, ",\"purged\":0"),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct MsgGetRequest {
    pub seq: u64,
    pub last_by_subj: String,
    pub next_by_subj: String,
}

impl MsgGetRequest {
    /// Nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.seq == 0 && self.last_by_subj.is_empty() && self.next_by_subj.is_empty()
    }

    /// Options that exclude each other: a sequence or `next_by_subj` with `last_by_subj`.
    pub fn conflicts(&self) -> bool {
        !self.last_by_subj.is_empty() && (self.seq > 0 || !self.next_by_subj.is_empty())
    }
}

/// A stored message as `stream_msg_get_response` carries it, in nats-server's field order.
#[derive(Serialize)]
struct ApiMsg {
    subject: String,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    hdrs: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    time: String,
}

/// Finds the message a get request names (shared by the API get and direct get).
pub(crate) async fn find_msg(
    host: &StreamHost,
    req: &MsgGetRequest,
) -> Result<Option<StoredMsg>, ApiError> {
    let seq = if !req.last_by_subj.is_empty() {
        host.with_stream(|s| s.last_seq_matching(&req.last_by_subj))
    } else if !req.next_by_subj.is_empty() {
        host.with_stream(|s| s.next_seq_matching(req.seq.max(1), &req.next_by_subj))
    } else {
        Some(req.seq)
    };
    match seq {
        Some(seq) => host.read_msg(seq).await,
        None => Ok(None),
    }
}

pub(crate) async fn msg_get(js: &JetStream, name: &str, payload: &[u8]) -> ApiResponse {
    const KIND: &str = "stream_msg_get";
    let result = async {
        let req = parse_body::<MsgGetRequest>(payload)?;
        let host = js.stream(name).ok_or_else(ApiError::stream_not_found)?;
        if req.is_empty() {
            return Err(ApiError::bad_request());
        }
        if req.conflicts() {
            return Err(ApiError::bad_request());
        }
        find_msg(&host, &req)
            .await?
            .ok_or_else(ApiError::no_message_found)
    }
    .await;
    match result {
        Ok(msg) => {
            let message = ApiMsg {
                subject: String::from_utf8_lossy(&msg.subject).into_owned(),
                seq: msg.seq,
                hdrs: msg.headers.as_ref().map(|h| BASE64.encode(h)),
                data: (!msg.payload.is_empty()).then(|| BASE64.encode(&msg.payload)),
                time: rfc3339_nanos(msg.timestamp_ns),
            };
            json(format!(
                "{{{},\"message\":{}}}",
                type_field(KIND),
                serde_json::to_string(&message).unwrap_or_default()
            ))
        }
        Err(err) => error_response(KIND, &err),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MsgDeleteRequest {
    seq: u64,
    no_erase: bool,
}

pub(crate) async fn msg_delete(js: &JetStream, name: &str, payload: &[u8]) -> ApiResponse {
    const KIND: &str = "stream_msg_delete";
    let result = async {
        if payload.is_empty() {
            return Err(ApiError::bad_request());
        }
        let req = parse_body::<MsgDeleteRequest>(payload)?;
        let host = js.stream(name).ok_or_else(ApiError::stream_not_found)?;
        host.command(Command::DeleteMsg {
            seq: req.seq,
            no_erase: req.no_erase,
        })
        .await
    }
    .await;
    match result {
        Ok(_) => json(format!("{{{},\"success\":true}}", type_field(KIND))),
        Err(err) => error_response(KIND, &err),
    }
}
