//! The `$JS.API.>` front: one internal subscription copies each request onto a bounded queue; one
//! task answers them in arrival order (as nats-server's API queue does). Requests for unknown API
//! subjects get no answer, like nats-server.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use natrix_stream::ApiError;
use tokio::sync::mpsc;

use super::{JetStream, JetStreamError, consumer_api, direct, stream_api};
use crate::internal::InternalHandler;
use crate::state::ServerState;

/// API requests waiting for the API task, at most; more are dropped with a warning (nats-server
/// drops requests beyond its API queue limit the same way).
const API_QUEUE: usize = 10_000;

/// One API request, copied out of the publisher's buffers.
pub(crate) struct ApiRequest {
    /// The subject after `$JS.API.`.
    pub subject: String,
    pub reply: Bytes,
    pub payload: Bytes,
    /// The requesting client, for logs.
    pub client_id: u64,
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
                        consumer_api::pull(&js, stream, consumer, reply, msg.payload);
                    }
                    return;
                }
                let request = ApiRequest {
                    subject: String::from_utf8_lossy(rest).into_owned(),
                    reply: Bytes::copy_from_slice(reply),
                    payload: Bytes::copy_from_slice(msg.payload),
                    client_id: msg.client_id,
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
    let acks = "$JS.ACK.>";
    state
        .subscribe_internal(
            acks,
            None,
            InternalHandler::new(move |msg| {
                if let Some(js) = weak.upgrade() {
                    consumer_api::ack(&js, msg.subject, msg.reply, msg.payload);
                }
            }),
        )
        .map_err(|e| JetStreamError::Subscribe {
            subject: acks.to_owned(),
            reason: e.to_string(),
        })?;
    tokio::spawn(run(Arc::downgrade(state), Arc::downgrade(js), rx));
    Ok(())
}

async fn run(
    state: std::sync::Weak<ServerState>,
    js: std::sync::Weak<JetStream>,
    mut rx: mpsc::Receiver<ApiRequest>,
) {
    while let Some(request) = rx.recv().await {
        let (Some(state), Some(js)) = (state.upgrade(), js.upgrade()) else {
            return;
        };
        let response = dispatch(&state, &js, &request).await;
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
}

async fn dispatch(state: &Arc<ServerState>, js: &Arc<JetStream>, req: &ApiRequest) -> ApiResponse {
    let tokens: Vec<&str> = req.subject.split('.').collect();
    match tokens.as_slice() {
        ["INFO"] => ApiResponse::Json(account_info(js)),
        ["STREAM", "CREATE", name] => stream_api::create(state, js, name, &req.payload).await,
        ["STREAM", "UPDATE", name] => stream_api::update(state, js, name, &req.payload).await,
        ["STREAM", "INFO", name] => stream_api::info(js, name, &req.payload),
        ["STREAM", "DELETE", name] => stream_api::delete(state, js, name).await,
        ["STREAM", "NAMES"] => stream_api::names(js, &req.payload),
        ["STREAM", "LIST"] => stream_api::list(js, &req.payload),
        ["STREAM", "PURGE", name] => stream_api::purge(js, name, &req.payload).await,
        ["STREAM", "MSG", "GET", name] => stream_api::msg_get(js, name, &req.payload),
        ["STREAM", "MSG", "DELETE", name] => stream_api::msg_delete(js, name, &req.payload).await,
        ["CONSUMER", "CREATE", ..] | ["CONSUMER", "DURABLE", "CREATE", ..] => {
            consumer_api::create(state, js, &req.subject, &req.payload).await
        }
        ["CONSUMER", "INFO", stream, consumer] => consumer_api::info(state, js, stream, consumer),
        ["CONSUMER", "DELETE", stream, consumer] => {
            consumer_api::delete(state, js, stream, consumer).await
        }
        ["CONSUMER", "NAMES", stream] => consumer_api::names(js, stream, &req.payload),
        ["CONSUMER", "LIST", stream] => consumer_api::list(state, js, stream, &req.payload),
        ["DIRECT", "GET", name] => direct::get(js, name, None, &req.payload),
        ["DIRECT", "GET", name, subject @ ..] if !subject.is_empty() => {
            direct::get(js, name, Some(&subject.join(".")), &req.payload)
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

/// `$JS.API.INFO`: the account's usage and limits.
fn account_info(js: &JetStream) -> String {
    let usage = js.usage();
    let mut body = serde_json::json!({
        "type": "io.nats.jetstream.api.v1.account_info_response",
        "memory": usage.memory,
        "storage": usage.storage,
        // nats-server 2.10+ sends these and async-nats requires them (nothing is reserved here).
        "reserved_memory": 0,
        "reserved_storage": 0,
        "streams": usage.streams,
        "consumers": usage.consumers,
        "limits": {
            "max_memory": js.config.max_memory_store.unwrap_or(-1),
            "max_storage": js.config.max_file_store.unwrap_or(-1),
            "max_streams": -1,
            "max_consumers": -1,
            "max_ack_pending": -1,
            "memory_max_stream_bytes": -1,
            "storage_max_stream_bytes": -1,
            "max_bytes_required": false,
        },
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

/// `{"type":...,"error":{...}}` for `kind` (e.g. `stream_create`).
pub(crate) fn error_response(kind: &str, err: &ApiError) -> ApiResponse {
    ApiResponse::Json(err.response_json(kind))
}
