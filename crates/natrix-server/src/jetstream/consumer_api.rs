//! The consumer requests of the JetStream API (`$JS.API.CONSUMER.*`): create (ephemeral, named,
//! durable), info, delete, names, list; and the routing of pull requests
//! (`CONSUMER.MSG.NEXT`) and acks (`$JS.ACK.>`) to the consumer tasks.

use std::sync::Arc;

use bytes::Bytes;
use natrix_stream::{
    AckKind, ApiError, Consumer, ConsumerConfig, CreateConsumerRequest, CreateSubject,
    check_workqueue_partition, parse_ack_subject,
};
use serde::Deserialize;

use super::advisory::{self, Action};
use super::api::{ApiResponse, error_response};
use super::consumer_host::{CommittedView, ConsumerHost, Event};
use super::record::ConsumerRecord;
use super::stream_api::parse_body;
use super::{JetStream, StreamHost, now_ns};
use crate::state::ServerState;

const NAMES_LIMIT: usize = 1024;
const LIST_LIMIT: usize = 256;

/// nats-server names unnamed ephemerals with 8 random characters.
pub(crate) fn ephemeral_name() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect()
}

fn info_json(
    kind: &str,
    stream: &StreamHost,
    consumer: &ConsumerHost,
    state: &ServerState,
) -> String {
    let mut info = consumer.info(stream, state);
    // A replicated stream's consumers run on its leader: they share its cluster block.
    if let Some(js) = stream.js()
        && let Some(assignment) = js.cluster().and_then(|c| c.assignment(&stream.name))
    {
        info.cluster = Some(super::stream_api::cluster_info(
            &js,
            &assignment,
            stream.leader(),
        ));
    }
    info.response_json(kind)
}

pub(crate) async fn create(
    state: &Arc<ServerState>,
    js: &Arc<JetStream>,
    subject: &str,
    payload: &[u8],
) -> ApiResponse {
    const KIND: &str = "consumer_create";
    let Some(target) = CreateSubject::parse(&format!("$JS.API.{subject}")) else {
        return ApiResponse::None;
    };
    let result = async {
        let req = CreateConsumerRequest::resolve(&target, payload)?;
        let stream = js
            .stream(target.stream())
            .ok_or_else(ApiError::stream_not_found)?;
        let limits = js.account_limits()?;
        let stream_config = stream.config();
        // The account's max_ack_pending caps and defaults the consumer's.
        let config = req
            .config
            .validate_and_default(&limits.consumer_view(&stream_config))?;
        let name = match config.consumer_name() {
            "" => ephemeral_name(),
            n => n.to_owned(),
        };
        let existing = stream.consumer(&name);
        req.action
            .check(existing.as_ref().map(|c| c.config()).as_ref(), &config)?;
        if let Some(existing) = existing {
            let old = existing.config();
            if old != config {
                ConsumerConfig::check_update(&old, &config)?;
                existing.update_config(config.clone());
                persist_config(&stream, &existing).await?;
            }
            return Ok((stream, existing));
        }
        let max_consumers = limits.max_consumers_for(&stream_config);
        if max_consumers > 0 && stream.consumer_count() >= max_consumers as u64 {
            return Err(ApiError::maximum_consumers_limit());
        }
        if stream_config.retention == natrix_stream::RetentionPolicy::WorkQueue {
            let others: Vec<ConsumerConfig> =
                stream.consumers().iter().map(|c| c.config()).collect();
            check_workqueue_partition(&config, others.iter())?;
        }
        let created_ns = now_ns();
        let upto = stream.committed_seq();
        let consumer = stream.with_stream(|s| {
            Consumer::new(
                config.clone(),
                created_ns,
                &CommittedView { stream: s, upto },
            )
        });
        let record = ConsumerRecord::encode(&config, created_ns, consumer.state());
        stream.put_consumer(&name, record, true).await?;
        let host = ConsumerHost::start(state, &stream, name, consumer);
        stream.add_consumer(host.clone());
        advisory::consumer_action(state, &stream.name, &host.name, Action::Create);
        Ok((stream, host))
    }
    .await;
    match result {
        Ok((stream, consumer)) => ApiResponse::Json(info_json(KIND, &stream, &consumer, state)),
        Err(err) => error_response(KIND, &err),
    }
}

/// Persists an updated consumer config right away (the task persists its state as it changes).
async fn persist_config(stream: &StreamHost, consumer: &ConsumerHost) -> Result<(), ApiError> {
    stream
        .put_consumer(&consumer.name, consumer.record(), true)
        .await
}

fn lookup(
    js: &JetStream,
    stream: &str,
    consumer: &str,
) -> Result<(Arc<StreamHost>, Arc<ConsumerHost>), ApiError> {
    let stream = js.stream(stream).ok_or_else(ApiError::stream_not_found)?;
    let Some(found) = stream.consumer(consumer) else {
        // A new stream leader starts the consumers a moment after it is elected.
        return Err(if stream.has_consumer_record(consumer) {
            super::cluster::not_available()
        } else {
            ApiError::consumer_not_found()
        });
    };
    Ok((stream, found))
}

pub(crate) fn info(
    state: &ServerState,
    js: &JetStream,
    stream: &str,
    consumer: &str,
) -> ApiResponse {
    const KIND: &str = "consumer_info";
    match lookup(js, stream, consumer) {
        Ok((stream, consumer)) => ApiResponse::Json(info_json(KIND, &stream, &consumer, state)),
        Err(err) => error_response(KIND, &err),
    }
}

pub(crate) async fn delete(
    state: &ServerState,
    js: &JetStream,
    stream: &str,
    consumer: &str,
) -> ApiResponse {
    const KIND: &str = "consumer_delete";
    match lookup(js, stream, consumer) {
        Ok((stream, consumer)) => {
            stream.remove_consumer(state, &consumer.name).await;
            advisory::consumer_action(state, &stream.name, &consumer.name, Action::Delete);
            ApiResponse::Json(format!(
                "{{\"type\":\"io.nats.jetstream.api.v1.{KIND}_response\",\"success\":true}}"
            ))
        }
        Err(err) => error_response(KIND, &err),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListRequest {
    offset: usize,
}

pub(crate) fn names(js: &JetStream, stream: &str, payload: &[u8]) -> ApiResponse {
    const KIND: &str = "consumer_names";
    let result = parse_body::<ListRequest>(payload).and_then(|req| {
        let stream = js.stream(stream).ok_or_else(ApiError::stream_not_found)?;
        Ok((req.offset, stream.listed_consumers()))
    });
    match result {
        Ok((offset, consumers)) => {
            let names: Vec<&str> = consumers
                .iter()
                .skip(offset)
                .take(NAMES_LIMIT)
                .map(|c| c.name.as_str())
                .collect();
            ApiResponse::Json(format!(
                "{{\"type\":\"io.nats.jetstream.api.v1.{KIND}_response\",\"total\":{},\"offset\":{offset},\"limit\":{NAMES_LIMIT},\"consumers\":{}}}",
                consumers.len(),
                serde_json::to_string(&names).unwrap_or_default()
            ))
        }
        Err(err) => error_response(KIND, &err),
    }
}

pub(crate) fn list(
    state: &ServerState,
    js: &JetStream,
    stream: &str,
    payload: &[u8],
) -> ApiResponse {
    const KIND: &str = "consumer_list";
    let result = parse_body::<ListRequest>(payload).and_then(|req| {
        let stream = js.stream(stream).ok_or_else(ApiError::stream_not_found)?;
        Ok((req.offset, stream))
    });
    match result {
        Ok((offset, stream)) => {
            let consumers = stream.listed_consumers();
            let infos: Vec<String> = consumers
                .iter()
                .skip(offset)
                .take(LIST_LIMIT)
                .map(|c| serde_json::to_string(&c.info(&stream, state)).unwrap_or_default())
                .collect();
            ApiResponse::Json(format!(
                "{{\"type\":\"io.nats.jetstream.api.v1.{KIND}_response\",\"total\":{},\"offset\":{offset},\"limit\":{LIST_LIMIT},\"consumers\":[{}]}}",
                consumers.len(),
                infos.join(",")
            ))
        }
        Err(err) => error_response(KIND, &err),
    }
}

/// `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`: queued on the consumer, answered by it.
pub(crate) fn pull(js: &JetStream, stream: &str, consumer: &str, reply: &[u8], body: &[u8]) {
    if let Ok((_, consumer)) = lookup(js, stream, consumer) {
        consumer.send(Event::Pull {
            reply: String::from_utf8_lossy(reply).into_owned(),
            body: Bytes::copy_from_slice(body),
        });
    }
}

/// An ack on `$JS.ACK.<stream>.<consumer>.<...>`.
pub(crate) fn ack(js: &JetStream, subject: &[u8], reply: Option<&[u8]>, payload: &[u8]) {
    let Ok(subject) = std::str::from_utf8(subject) else {
        return;
    };
    let Some(parsed) = parse_ack_subject(subject) else {
        return;
    };
    let Some(kind) = AckKind::parse(payload) else {
        return;
    };
    if let Ok((_, consumer)) = lookup(js, &parsed.stream, &parsed.consumer) {
        consumer.send(Event::Ack {
            kind,
            stream_seq: parsed.stream_seq,
            consumer_seq: parsed.consumer_seq,
            reply: reply.map(Bytes::copy_from_slice),
        });
    }
}
