//! The `$JS.API.>` front: one internal subscription copies each request onto a bounded queue. One
//! task takes them off in arrival order: requests that change streams or consumers go on to the
//! ordered lane, which answers them one at a time in that order; everything else (reads,
//! stepdowns, peer and server removal) is answered in a task of its own, so a read waiting for a
//! quorum that is gone, or a removal waiting for replicas to move, holds up no other request
//! (nats-server likewise answers API requests on several workers). Requests for unknown API
//! subjects get no answer, like nats-server.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use natrix_stream::ApiError;
use tokio::sync::{Semaphore, mpsc};

use super::cluster::operations;
use super::{JetStream, JetStreamError, consumer_api, direct, stream_api};
use crate::internal::{InternalHandler, InternalMsg};
use crate::state::ServerState;

/// API requests waiting for the API task, at most; more are dropped with a warning (nats-server
/// drops requests beyond its API queue limit the same way).
const API_QUEUE: usize = 10_000;

/// Requests of the concurrent lane being answered at once, at most; the next waits for a slot.
const CONCURRENT_API: usize = 64;

/// Changes waiting for the ordered lane, at most; the API task waits while it is full.
const ORDERED_QUEUE: usize = 1_024;

/// One API request, copied out of the publisher's buffers.
pub(crate) struct ApiRequest {
    /// The subject after `$JS.API.`.
    pub subject: String,
    pub reply: Bytes,
    pub payload: Bytes,
    /// The requesting client, for logs.
    pub client_id: u64,
    /// Hand-overs between nodes so far (clustered JetStream).
    pub hops: u32,
}

/// What a handler answers: JSON, or a whole message with headers (direct get).
pub(crate) enum ApiResponse {
    Json(String),
    Msg {
        headers: Option<Bytes>,
        payload: Bytes,
    },
    /// Nothing to send (e.g. an unknown API subject).
    None,
}

pub(crate) fn serve(state: &Arc<ServerState>, js: &Arc<JetStream>) -> Result<(), JetStreamError> {
    let (tx, rx) = mpsc::channel::<ApiRequest>(API_QUEUE);
    let subject = "$JS.API.>";
    let weak = Arc::downgrade(js);
    let weak_state = Arc::downgrade(state);
    state
        .subscribe_internal(
            subject,
            None,
            InternalHandler::new(move |msg| {
                let Some(reply) = msg.reply else { return };
                let Some(rest) = msg.subject.strip_prefix(b"$JS.API.") else {
                    return;
                };
                // Pull requests go straight to their consumer: they are not API calls that
                // wait their turn behind stream creations.
                if let Some(target) = rest.strip_prefix(b"CONSUMER.MSG.NEXT.") {
                    if let (Some(js), Ok(target)) = (weak.upgrade(), std::str::from_utf8(target))
                        && let Some((stream, consumer)) = target.split_once('.')
                    {
                        if let (Some(cluster), Some(state)) = (js.cluster(), weak_state.upgrade())
                            && cluster.route_to_leader(&state, &js, stream, &msg)
                        {
                            return;
                        }
                        consumer_api::pull(&js, stream, consumer, reply, msg.payload);
                    }
                    return;
                }
                let request = ApiRequest {
                    subject: String::from_utf8_lossy(rest).into_owned(),
                    reply: Bytes::copy_from_slice(reply),
                    payload: Bytes::copy_from_slice(msg.payload),
                    client_id: msg.client_id,
                    hops: msg.hops,
                };
                if tx.try_send(request).is_err() {
                    tracing::warn!("JetStream API queue limit reached, dropping API request");
                }
            }),
        )
        .map_err(|e| JetStreamError::Subscribe {
            subject: subject.to_owned(),
            reason: e.to_string(),
        })?;
    let weak = Arc::downgrade(js);
    let weak_state = Arc::downgrade(state);
    let acks = "$JS.ACK.>";
    state
        .subscribe_internal(
            acks,
            None,
            InternalHandler::new(move |msg| {
                if let Some(js) = weak.upgrade() {
                    if let (Some(cluster), Some(state)) = (js.cluster(), weak_state.upgrade())
                        && let Some(stream) = ack_stream(msg.subject)
                        && cluster.route_to_leader(&state, &js, stream, &msg)
                    {
                        return;
                    }
                    consumer_api::ack(&js, msg.subject, msg.reply, msg.payload);
                }
            }),
        )
        .map_err(|e| JetStreamError::Subscribe {
            subject: acks.to_owned(),
            reason: e.to_string(),
        })?;
    let (ordered_tx, ordered_rx) = mpsc::channel::<ApiRequest>(ORDERED_QUEUE);
    tokio::spawn(run_ordered(
        Arc::downgrade(state),
        Arc::downgrade(js),
        ordered_rx,
    ));
    tokio::spawn(run(
        Arc::downgrade(state),
        Arc::downgrade(js),
        rx,
        ordered_tx,
    ));
    Ok(())
}

/// How an API request waits for its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// Creations, updates and deletions of streams and consumers, purges and message deletions:
    /// answered one at a time in arrival order, so changes apply in the order they were asked.
    Ordered,
    /// Everything else: answered at once, beside the ordered lane and each other.
    Concurrent,
}

/// The lane of an API subject (after `$JS.API.`).
fn lane(subject: &str) -> Lane {
    let tokens: Vec<&str> = subject.split('.').collect();
    match tokens.as_slice() {
        ["STREAM", "CREATE" | "UPDATE" | "DELETE" | "PURGE", _]
        | ["STREAM", "MSG", "DELETE", _]
        | ["CONSUMER", "CREATE", ..]
        | ["CONSUMER", "DURABLE", "CREATE", ..]
        | ["CONSUMER", "DELETE", _, _] => Lane::Ordered,
        _ => Lane::Concurrent,
    }
}

/// Takes requests off the queue in arrival order: answers the ones JetStream cannot serve here,
/// hands the ones for a stream or the meta group to their leader's node, and passes the rest to
/// their lane.
async fn run(
    state: std::sync::Weak<ServerState>,
    js: std::sync::Weak<JetStream>,
    mut rx: mpsc::Receiver<ApiRequest>,
    ordered: mpsc::Sender<ApiRequest>,
) {
    let slots = Arc::new(Semaphore::new(CONCURRENT_API));
    while let Some(request) = rx.recv().await {
        let (Some(state), Some(js)) = (state.upgrade(), js.upgrade()) else {
            return;
        };
        if let Err(err) = js.account_limits() {
            // JetStream is not enabled for the account: every API request is answered with
            // 10039 where it stands, as nats-server does.
            let response = match response_kind(&request.subject) {
                Some(kind) => error_response(kind, &err),
                None => ApiResponse::None,
            };
            reply(&state, &js, &request, response);
            continue;
        }
        if let Some(cluster) = js.cluster() {
            // A node that just started answers nothing before its meta state is ready (this
            // queue waits, in order); nats-server does not answer in that window either.
            cluster.wait_until_api_ready().await;
            let subject = format!("$JS.API.{}", request.subject);
            let msg = InternalMsg {
                subject: subject.as_bytes(),
                reply: Some(&request.reply),
                headers: None,
                payload: &request.payload,
                client_id: request.client_id,
                hops: request.hops,
            };
            let handed_over = match stream_of(&request.subject) {
                Some(stream) => {
                    cluster.wait_for_route(&state, &js, Some(stream)).await;
                    cluster.route_to_leader(&state, &js, stream, &msg)
                }
                None if matches!(
                    request.subject.as_str(),
                    "STREAM.NAMES" | "META.LEADER.STEPDOWN" | "SERVER.REMOVE"
                ) =>
                {
                    cluster.wait_for_route(&state, &js, None).await;
                    cluster.route_to_meta_leader(&state, &msg)
                }
                None => false,
            };
            if handed_over {
                continue;
            }
        }
        match lane(&request.subject) {
            Lane::Ordered => {
                if ordered.send(request).await.is_err() {
                    return;
                }
            }
            Lane::Concurrent => {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                tokio::spawn(async move {
                    answer(&state, &js, &request).await;
                    drop(slot);
                });
            }
        }
    }
}

/// The ordered lane: answers each request before it takes the next.
async fn run_ordered(
    state: std::sync::Weak<ServerState>,
    js: std::sync::Weak<JetStream>,
    mut rx: mpsc::Receiver<ApiRequest>,
) {
    while let Some(request) = rx.recv().await {
        let (Some(state), Some(js)) = (state.upgrade(), js.upgrade()) else {
            return;
        };
        answer(&state, &js, &request).await;
    }
}

async fn answer(state: &Arc<ServerState>, js: &Arc<JetStream>, request: &ApiRequest) {
    let response = dispatch(state, js, request).await;
    reply(state, js, request, response);
}

/// Sends an API response to the request's reply subject and counts it.
fn reply(state: &ServerState, js: &JetStream, request: &ApiRequest, response: ApiResponse) {
    match response {
        ApiResponse::Json(json) => {
            js.api_total.fetch_add(1, Ordering::Relaxed);
            if json.contains("\"error\":{\"code\"") {
                js.api_errors.fetch_add(1, Ordering::Relaxed);
            }
            state.publish_internal(&request.reply, None, None, json.as_bytes());
        }
        ApiResponse::Msg { headers, payload } => {
            js.api_total.fetch_add(1, Ordering::Relaxed);
            state.publish_internal(&request.reply, None, headers.as_deref(), &payload);
        }
        ApiResponse::None => {}
    }
}

/// The response type (`io.nats.jetstream.api.v1.<kind>_response`) of an API subject (after
/// `$JS.API.`), for answers given before any handler runs; `None` for unknown subjects.
fn response_kind(subject: &str) -> Option<&'static str> {
    let tokens: Vec<&str> = subject.split('.').collect();
    Some(match tokens.as_slice() {
        ["INFO"] => "account_info",
        ["STREAM", "CREATE", _] => "stream_create",
        ["STREAM", "UPDATE", _] => "stream_update",
        ["STREAM", "INFO", _] => "stream_info",
        ["STREAM", "DELETE", _] => "stream_delete",
        ["STREAM", "NAMES"] => "stream_names",
        ["STREAM", "LIST"] => "stream_list",
        ["STREAM", "PURGE", _] => "stream_purge",
        ["STREAM", "MSG", "GET", _] => "stream_msg_get",
        ["STREAM", "MSG", "DELETE", _] => "stream_msg_delete",
        ["STREAM", "LEADER", "STEPDOWN", _] => "stream_leader_stepdown",
        ["STREAM", "PEER", "REMOVE", _] => "stream_remove_peer",
        ["CONSUMER", "CREATE", ..] | ["CONSUMER", "DURABLE", "CREATE", ..] => "consumer_create",
        ["CONSUMER", "INFO", _, _] => "consumer_info",
        ["CONSUMER", "DELETE", _, _] => "consumer_delete",
        ["CONSUMER", "NAMES", _] => "consumer_names",
        ["CONSUMER", "LIST", _] => "consumer_list",
        ["CONSUMER", "LEADER", "STEPDOWN", _, _] => "consumer_leader_stepdown",
        ["META", "LEADER", "STEPDOWN"] => "meta_leader_stepdown",
        ["SERVER", "REMOVE"] => "meta_server_remove",
        _ => return None,
    })
}

async fn dispatch(state: &Arc<ServerState>, js: &Arc<JetStream>, req: &ApiRequest) -> ApiResponse {
    let tokens: Vec<&str> = req.subject.split('.').collect();
    match tokens.as_slice() {
        // In a cluster without a meta leader, as nats-server: the account's streams are not
        // known for sure.
        ["INFO"] if js.cluster().is_some_and(|c| c.meta_leader().is_none()) => {
            error_response("account_info", &super::cluster::not_available())
        }
        ["INFO"] => ApiResponse::Json(account_info(js).await),
        ["STREAM", "CREATE", name] => stream_api::create(state, js, name, &req.payload).await,
        ["STREAM", "UPDATE", name] => stream_api::update(state, js, name, &req.payload).await,
        ["STREAM", "INFO", name] => match confirm_leader(js, name).await {
            Ok(()) => stream_api::info(js, name, &req.payload),
            Err(err) => error_response("stream_info", &err),
        },
        ["STREAM", "DELETE", name] => stream_api::delete(state, js, name).await,
        ["STREAM", "NAMES"] => stream_api::names(js, &req.payload),
        ["STREAM", "LIST"] => stream_api::list(js, &req.payload).await,
        ["STREAM", "PURGE", name] => stream_api::purge(js, name, &req.payload).await,
        ["STREAM", "MSG", "GET", name] => match confirm_leader(js, name).await {
            Ok(()) => stream_api::msg_get(js, name, &req.payload).await,
            Err(err) => error_response("stream_msg_get", &err),
        },
        ["STREAM", "MSG", "DELETE", name] => stream_api::msg_delete(js, name, &req.payload).await,
        ["STREAM", "LEADER", "STEPDOWN", name] => {
            operations::stream_leader_stepdown(js, name, &req.payload).await
        }
        ["META", "LEADER", "STEPDOWN"] => operations::meta_leader_stepdown(js, &req.payload).await,
        ["SERVER", "REMOVE"] => operations::server_remove(js, &req.payload).await,
        ["STREAM", "PEER", "REMOVE", name] => {
            operations::stream_peer_remove(js, name, &req.payload).await
        }
        ["CONSUMER", "LEADER", "STEPDOWN", stream, consumer] => {
            operations::consumer_leader_stepdown(js, stream, consumer, &req.payload).await
        }
        ["CONSUMER", "CREATE", ..] | ["CONSUMER", "DURABLE", "CREATE", ..] => {
            consumer_api::create(state, js, &req.subject, &req.payload).await
        }
        ["CONSUMER", "INFO", stream, consumer] => consumer_api::info(state, js, stream, consumer),
        ["CONSUMER", "DELETE", stream, consumer] => {
            consumer_api::delete(state, js, stream, consumer).await
        }
        ["CONSUMER", "NAMES", stream] => consumer_api::names(js, stream, &req.payload),
        ["CONSUMER", "LIST", stream] => consumer_api::list(state, js, stream, &req.payload),
        ["DIRECT", "GET", name] => direct::get(js, name, None, &req.payload).await,
        ["DIRECT", "GET", name, subject @ ..] if !subject.is_empty() => {
            direct::get(js, name, Some(&subject.join(".")), &req.payload).await
        }
        _ => {
            tracing::debug!(
                cid = req.client_id,
                subject = %req.subject,
                "unknown JetStream API request"
            );
            ApiResponse::None
        }
    }
}

/// `$JS.API.INFO`: the account's usage (in a cluster, the whole cluster's) and limits.
async fn account_info(js: &JetStream) -> String {
    let usage = match js.cluster() {
        Some(cluster) => cluster.account_usage(js).await,
        None => js.usage(),
    };
    let mut body = serde_json::json!({
        "type": "io.nats.jetstream.api.v1.account_info_response",
        "memory": usage.memory,
        "storage": usage.storage,
        // nats-server 2.10+ sends these and async-nats requires them (nothing is reserved here).
        "reserved_memory": 0,
        "reserved_storage": 0,
        "streams": usage.streams,
        "consumers": usage.consumers,
        // The account's limits; the server's own (max_file_store, ...) are not shown here,
        // as in nats-server.
        "limits": js.account.jetstream.unwrap_or_default(),
        "api": {
            "total": js.api_total.load(Ordering::Relaxed),
            "errors": js.api_errors.load(Ordering::Relaxed),
        },
    });
    if let Some(domain) = &js.config.domain
        && let Some(obj) = body.as_object_mut()
    {
        obj.insert("domain".into(), domain.clone().into());
    }
    body.to_string()
}

/// A read of a replicated stream is answered only by a replica that still leads (see
/// `StreamHost::confirm_leader`); 10009 otherwise, and the client asks again.
async fn confirm_leader(js: &JetStream, name: &str) -> Result<(), ApiError> {
    match js.stream(name) {
        Some(host) if !host.confirm_leader().await => Err(super::cluster::not_leader()),
        _ => Ok(()),
    }
}

/// The stream an API request is about, when only that stream's leader can answer it.
fn stream_of(subject: &str) -> Option<&str> {
    let tokens: Vec<&str> = subject.split('.').collect();
    match tokens.as_slice() {
        ["STREAM", "UPDATE" | "INFO" | "PURGE", name]
        | ["STREAM", "MSG", "GET" | "DELETE", name]
        | ["STREAM", "LEADER", "STEPDOWN", name]
        | ["STREAM", "PEER", "REMOVE", name]
        | ["DIRECT", "GET", name, ..]
        | ["CONSUMER", "CREATE", name, ..]
        | ["CONSUMER", "DURABLE", "CREATE", name, ..]
        | ["CONSUMER", "INFO" | "DELETE", name, _]
        | ["CONSUMER", "LEADER", "STEPDOWN", name, _]
        | ["CONSUMER", "NAMES" | "LIST", name] => Some(name),
        _ => None,
    }
}

/// The stream of an ack subject (`$JS.ACK.<stream>.<consumer>...`, with or without a domain
/// and account hash: `$JS.ACK.<domain>.<hash>.<stream>...`).
fn ack_stream(subject: &[u8]) -> Option<&str> {
    let rest = std::str::from_utf8(subject.strip_prefix(b"$JS.ACK.")?).ok()?;
    let tokens: Vec<&str> = rest.split('.').collect();
    match tokens.len() {
        // stream, consumer, delivered, sseq, cseq, tm, pending
        7 => tokens.first().copied(),
        // domain, account hash, stream, consumer, delivered, sseq, cseq, tm, pending, token
        n if n >= 9 => tokens.get(2).copied(),
        _ => None,
    }
}

/// `{"type":...,"error":{...}}` for `kind` (e.g. `stream_create`).
pub(crate) fn error_response(kind: &str, err: &ApiError) -> ApiResponse {
    ApiResponse::Json(err.response_json(kind))
}

#[cfg(test)]
mod tests {
    use super::{Lane, lane};

    #[test]
    fn changes_to_streams_and_consumers_are_ordered_and_the_rest_runs_beside_them() {
        for subject in [
            "STREAM.CREATE.S",
            "STREAM.UPDATE.S",
            "STREAM.DELETE.S",
            "STREAM.PURGE.S",
            "STREAM.MSG.DELETE.S",
            "CONSUMER.CREATE.S",
            "CONSUMER.CREATE.S.C",
            "CONSUMER.CREATE.S.C.filter.>",
            "CONSUMER.DURABLE.CREATE.S.C",
            "CONSUMER.DELETE.S.C",
        ] {
            assert_eq!(lane(subject), Lane::Ordered, "{subject}");
        }
        for subject in [
            "INFO",
            "STREAM.INFO.S",
            "STREAM.NAMES",
            "STREAM.LIST",
            "STREAM.MSG.GET.S",
            "STREAM.LEADER.STEPDOWN.S",
            "STREAM.PEER.REMOVE.S",
            "CONSUMER.INFO.S.C",
            "CONSUMER.NAMES.S",
            "CONSUMER.LIST.S",
            "CONSUMER.LEADER.STEPDOWN.S.C",
            "META.LEADER.STEPDOWN",
            "SERVER.REMOVE",
            "DIRECT.GET.S",
            "NO.SUCH.THING",
        ] {
            assert_eq!(lane(subject), Lane::Concurrent, "{subject}");
        }
    }
}
