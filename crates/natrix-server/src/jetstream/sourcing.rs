//! Mirrors and sources at work: where a stream with a `mirror` or `sources` leads (always, for a
//! single-node stream), one task per copy reads the origin stream through an ephemeral push
//! consumer it creates with the ordinary JetStream API (`ack_policy: none`, flow control, idle
//! heartbeats), as nats-server does. The API request reaches the origin's leader wherever it is
//! in the cluster, and the deliveries come back to the copying node's internal subscription over
//! the route mesh like any message.
//!
//! Each delivered message becomes a command of the copying stream, queued in order: a mirror
//! stores it under the origin's sequence and time ([`Command::Mirror`]), a source republishes it
//! with a `Nats-Stream-Source` header. A gap in the consumer sequence, a missed heartbeat, a
//! failed write or an API error ends the consumer; the task creates a new one from the first
//! sequence it does not have, after a pause that doubles up to [`RETRY_MAX`]. Flow-control
//! requests are answered only once everything queued before them is stored, which bounds how
//! far the origin runs ahead.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use natrix_stream::{
    ApiError, Command, Reply, StreamSource, SubjectTransformConfig, header_value,
    parse_ack_subject, sourced_from, sourced_headers,
};
use natrix_subject::SubjectTransform;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use super::host::StreamHost;
use super::now_ns;
use crate::internal::InternalHandler;
use crate::state::ServerState;

/// Idle heartbeat asked of the origin's consumer; three missed ones restart the copy.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long the origin keeps a consumer nobody reads (after a crash of the copying node).
const INACTIVE: Duration = Duration::from_secs(10);
/// How long the consumer create request may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// Copied messages queued on the stream and not yet stored, at most.
const MAX_QUEUED: usize = 1024;

/// One mirror or source of a stream, and how it is doing (for stream info).
pub(crate) struct Copier {
    source: StreamSource,
    mirror: bool,
    status: Mutex<CopyStatus>,
    stop: watch::Sender<bool>,
}

#[derive(Debug, Default, Clone)]
struct CopyStatus {
    lag: u64,
    active_ns: Option<i64>,
    error: Option<ApiError>,
}

impl Copier {
    fn note(&self, f: impl FnOnce(&mut CopyStatus)) {
        f(&mut self.status.lock());
    }
}

/// A stream info's `mirror` entry and `sources` entries, in config order: with each copy's
/// progress where it runs here, with none where it does not (a follower answering).
pub(crate) fn info_entries(
    host: &StreamHost,
) -> (Option<serde_json::Value>, Vec<serde_json::Value>) {
    let config = host.config();
    let running = host.copiers.lock();
    let entry = |source: &StreamSource, mirror: bool| {
        let status = running
            .iter()
            .find(|c| c.mirror == mirror && c.source == *source)
            .map(|c| c.status.lock().clone())
            .unwrap_or_default();
        info_json(source, &status)
    };
    let mirror = config.mirror.as_ref().map(|m| entry(m, true));
    let sources = config
        .sources
        .iter()
        .flatten()
        .map(|s| entry(s, false))
        .collect();
    (mirror, sources)
}

/// A stream info's entry for a mirror or source (nats-server's field order).
fn info_json(source: &StreamSource, status: &CopyStatus) -> serde_json::Value {
    let mut info = serde_json::Map::new();
    info.insert("name".into(), source.name.clone().into());
    if let Some(external) = &source.external {
        info.insert(
            "external".into(),
            serde_json::to_value(external).unwrap_or_default(),
        );
    }
    info.insert("lag".into(), status.lag.into());
    let active = status
        .active_ns
        .map_or(-1, |at| now_ns().saturating_sub(at).max(0));
    info.insert("active".into(), active.into());
    if let Some(err) = &status.error {
        info.insert(
            "error".into(),
            serde_json::to_value(err).unwrap_or_default(),
        );
    }
    if !source.filter_subject.is_empty() {
        info.insert(
            "filter_subject".into(),
            source.filter_subject.clone().into(),
        );
    }
    if !source.subject_transforms.is_empty() {
        info.insert(
            "subject_transforms".into(),
            serde_json::to_value(&source.subject_transforms).unwrap_or_default(),
        );
    }
    serde_json::Value::Object(info)
}

/// Starts the copies of the stream's current config (stopping any running ones first).
pub(crate) fn start(host: &Arc<StreamHost>, state: &Arc<ServerState>) {
    stop(host);
    let config = host.config();
    let copies: Vec<(StreamSource, bool)> = config
        .mirror
        .iter()
        .map(|m| (m.clone(), true))
        .chain(config.sources.iter().flatten().map(|s| (s.clone(), false)))
        .collect();
    let mut running = host.copiers.lock();
    for (source, mirror) in copies {
        let (stop, _) = watch::channel(false);
        let copier = Arc::new(Copier {
            source,
            mirror,
            status: Mutex::new(CopyStatus::default()),
            stop,
        });
        tokio::spawn(run(
            copier.clone(),
            Arc::downgrade(host),
            Arc::downgrade(state),
        ));
        running.push(copier);
    }
}

/// Stops the stream's copies (its leadership moved, it was deleted or its config changed).
pub(crate) fn stop(host: &StreamHost) {
    for copier in host.copiers.lock().drain(..) {
        copier.stop.send_replace(true);
    }
}

/// Copies queued on the stream, waiting to be stored, oldest first.
type Queued = VecDeque<oneshot::Receiver<Result<Reply, ApiError>>>;

/// Why one consumer of the origin ended.
enum Ended {
    Stopped,
    /// Create the next consumer at once (a gap or a missed heartbeat).
    Restart,
    /// Create the next consumer after a pause.
    Retry,
    /// A copy could not be stored: after a pause, start again from what is stored.
    StoreFailed,
}

async fn run(copier: Arc<Copier>, host: Weak<StreamHost>, state: Weak<ServerState>) {
    let mut stop = copier.stop.subscribe();
    let mut next_seq = 0;
    let mut pause = RETRY_MIN;
    let mut queued = VecDeque::new();
    loop {
        if *stop.borrow() {
            return;
        }
        let mut ended = copy_once(
            &copier,
            &host,
            &state,
            &mut stop,
            &mut queued,
            &mut next_seq,
        )
        .await;
        // What the ended consumer queued is stored before the next one starts after it.
        if let Err(failed) = drain(&copier, &mut queued, 0).await {
            ended = failed;
        }
        if matches!(ended, Ended::StoreFailed) {
            // Find the start again from what is stored.
            next_seq = 0;
            queued.clear();
        }
        let wait = match ended {
            Ended::Stopped => return,
            Ended::Restart => {
                pause = RETRY_MIN;
                Duration::from_millis(10)
            }
            Ended::Retry | Ended::StoreFailed => {
                let wait = pause;
                pause = (pause * 2).min(RETRY_MAX);
                wait
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// What the copy's internal subscription received.
struct Received {
    subject: Bytes,
    reply: Option<Bytes>,
    headers: Option<Bytes>,
    payload: Bytes,
}

/// One consumer of the origin, from creation until it ends. `next_seq` is the first origin
/// sequence not yet queued (0: not known yet).
async fn copy_once(
    copier: &Copier,
    host: &Weak<StreamHost>,
    state: &Weak<ServerState>,
    stop: &mut watch::Receiver<bool>,
    queued: &mut Queued,
    next_seq: &mut u64,
) -> Ended {
    let (Some(stream), Some(server)) = (host.upgrade(), state.upgrade()) else {
        return Ended::Stopped;
    };
    let origin = copier.source.name.clone();
    if *next_seq == 0 {
        // A source reads its stream backwards: off the async workers.
        let (mirror, key, from_config) = (
            copier.mirror,
            copier.source.source_key(),
            copier.source.opt_start_seq,
        );
        let host = stream.clone();
        let stored = tokio::task::spawn_blocking(move || stored_up_to(&host, mirror, &key))
            .await
            .unwrap_or(0);
        *next_seq = if stored > 0 { stored + 1 } else { from_config };
    }
    let prefix = format!("$JS.S.{}", super::consumer_api::ephemeral_name());
    let deliver = format!("{prefix}.d");
    let reply = format!("{prefix}.r");
    let (tx, mut rx) = mpsc::unbounded_channel::<Received>();
    let handler = InternalHandler::new(move |msg| {
        let copy = |b: &[u8]| Bytes::copy_from_slice(b);
        let _ = tx.send(Received {
            subject: copy(msg.subject),
            reply: msg.reply.map(copy),
            headers: msg.headers.map(copy),
            payload: copy(msg.payload),
        });
    });
    let sub = match server.subscribe_internal_routed(&format!("{prefix}.>"), handler) {
        Ok(sub) => sub,
        Err(err) => {
            tracing::warn!(
                "JetStream stream '{}': copy of '{origin}': {err}",
                stream.name
            );
            return Ended::Retry;
        }
    };
    let request = create_request(copier, &origin, &deliver, *next_seq);
    let create = format!("$JS.API.CONSUMER.CREATE.{origin}");
    drop(stream);
    // At start the JetStream API may not be listening yet.
    let asked = server.publish_internal(
        create.as_bytes(),
        Some(reply.as_bytes()),
        None,
        request.as_bytes(),
    );
    drop(server);
    if !asked {
        if let Some(server) = state.upgrade() {
            crate::connection::remove_subscription(&server, &sub);
        }
        return Ended::Retry;
    }
    let ended = follow(
        copier, host, state, stop, &mut rx, queued, &deliver, &reply, next_seq,
    )
    .await;
    if let Some(server) = state.upgrade() {
        crate::connection::remove_subscription(&server, &sub);
    }
    ended
}

/// Waits for the consumer's creation, then stores what it delivers until it ends.
#[allow(clippy::too_many_arguments)]
async fn follow(
    copier: &Copier,
    host: &Weak<StreamHost>,
    state: &Weak<ServerState>,
    stop: &mut watch::Receiver<bool>,
    rx: &mut mpsc::UnboundedReceiver<Received>,
    queued: &mut Queued,
    deliver: &str,
    reply: &str,
    next_seq: &mut u64,
) -> Ended {
    let origin = &copier.source.name;
    let transforms = compile_transforms(&copier.source.subject_transforms);
    let key = copier.source.source_key();
    let mut created = false;
    let mut consumer = String::new();
    let mut last_cseq = 0u64;
    loop {
        let wait = if created {
            HEARTBEAT * 3
        } else {
            CREATE_TIMEOUT
        };
        let msg = tokio::select! {
            _ = stop.changed() => return finish(state, origin, &consumer, Ended::Stopped),
            msg = tokio::time::timeout(wait, rx.recv()) => msg,
        };
        let Ok(Some(msg)) = msg else {
            // Silence: the consumer is gone (or never came); start again.
            let ended = if created {
                Ended::Restart
            } else {
                Ended::Retry
            };
            return finish(state, origin, &consumer, ended);
        };
        if msg.subject.as_ref() == reply.as_bytes() {
            match created_consumer(&msg.payload) {
                Ok(name) => {
                    created = true;
                    consumer = name;
                    copier.note(|s| s.error = None);
                }
                Err(err) => {
                    copier.note(|s| s.error = Some(err));
                    return Ended::Retry;
                }
            }
            continue;
        }
        if msg.subject.as_ref() != deliver.as_bytes() && msg.reply.is_none() {
            continue;
        }
        copier.note(|s| s.active_ns = Some(now_ns()));
        let status = msg
            .headers
            .as_deref()
            .is_some_and(|h| h.starts_with(b"NATS/1.0 100"));
        if status {
            let headers = msg.headers.as_deref().unwrap_or_default();
            if let Some(fc) = &msg.reply {
                // Flow control: answered once everything before it is stored.
                if let Err(ended) = drain(copier, queued, 0).await {
                    return finish(state, origin, &consumer, ended);
                }
                if let Some(server) = state.upgrade() {
                    server.publish_internal(fc, None, None, b"");
                }
            } else if let Some(last) = header_value(headers, "Nats-Last-Consumer")
                && std::str::from_utf8(last)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    != Some(last_cseq)
            {
                // A heartbeat that says we missed deliveries.
                return finish(state, origin, &consumer, Ended::Restart);
            }
            if let Some(stalled) = header_value(headers, "Nats-Consumer-Stalled")
                && let Some(server) = state.upgrade()
            {
                server.publish_internal(stalled, None, None, b"");
            }
            continue;
        }
        let Some(ack) = msg
            .reply
            .as_deref()
            .and_then(|r| std::str::from_utf8(r).ok())
            .and_then(parse_ack_subject)
        else {
            continue;
        };
        if ack.consumer_seq != last_cseq + 1 {
            return finish(state, origin, &consumer, Ended::Restart);
        }
        last_cseq = ack.consumer_seq;
        let subject = transform(&transforms, &msg.subject);
        let command = if copier.mirror {
            Command::Mirror {
                seq: ack.stream_seq,
                subject,
                headers: msg.headers,
                payload: msg.payload,
                timestamp_ns: ack.timestamp_ns,
            }
        } else {
            Command::Publish {
                headers: Some(sourced_headers(
                    msg.headers.as_deref(),
                    &key,
                    ack.stream_seq,
                    &msg.subject,
                )),
                subject,
                payload: msg.payload,
                timestamp_ns: now_ns(),
            }
        };
        match host.upgrade().and_then(|stream| stream.submit(command)) {
            Some(answer) => queued.push_back(answer),
            None => return Ended::Stopped,
        }
        *next_seq = ack.stream_seq + 1;
        copier.note(|s| s.lag = ack.pending);
        if let Err(ended) = drain(copier, queued, MAX_QUEUED).await {
            return finish(state, origin, &consumer, ended);
        }
    }
}

/// Waits until at most `keep` queued copies are not yet stored; a failed one ends the copy.
async fn drain(copier: &Copier, queued: &mut Queued, keep: usize) -> Result<(), Ended> {
    while queued.len() > keep {
        let Some(answer) = queued.pop_front() else {
            break;
        };
        match answer.await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                tracing::warn!(
                    "JetStream copy of '{}': storing failed: {}",
                    copier.source.name,
                    err.description
                );
                copier.note(|s| s.error = Some(err));
                return Err(Ended::StoreFailed);
            }
            Err(_) => return Err(Ended::Stopped),
        }
    }
    Ok(())
}

/// Deletes the origin's consumer (best effort: it also expires by itself) and passes `ended` on.
fn finish(state: &Weak<ServerState>, origin: &str, consumer: &str, ended: Ended) -> Ended {
    if !consumer.is_empty()
        && let Some(server) = state.upgrade()
    {
        server.publish_internal(
            format!("$JS.API.CONSUMER.DELETE.{origin}.{consumer}").as_bytes(),
            Some(b"$JS.S.deleted"),
            None,
            b"",
        );
    }
    ended
}

/// The last origin sequence stored: a mirror's last sequence; for a source, that of the newest
/// message whose `Nats-Stream-Source` names it (0: none, start where the config says).
fn stored_up_to(stream: &StreamHost, mirror: bool, key: &str) -> u64 {
    if mirror {
        stream.with_stream(|s| s.last_seq())
    } else {
        last_sourced(stream, key)
    }
}

/// The origin sequence of the newest stored message copied by the source with `key` (0: none).
fn last_sourced(stream: &StreamHost, key: &str) -> u64 {
    let (first, last) = stream.with_stream(|s| (s.first_seq(), s.last_seq()));
    let mut seq = last;
    while seq >= first.max(1) {
        if let Ok(Some(msg)) = stream.get_msg(seq)
            && let Some(from) = msg.headers.as_deref().and_then(sourced_from)
            && from.key == key
        {
            return from.seq;
        }
        seq -= 1;
    }
    0
}

/// The consumer create request: an ephemeral push consumer without acks, from `start`.
fn create_request(copier: &Copier, origin: &str, deliver: &str, start: u64) -> String {
    let source = &copier.source;
    let mut config = serde_json::json!({
        "description": format!("natrix {} of '{origin}'", if copier.mirror { "mirror" } else { "source" }),
        "ack_policy": "none",
        "deliver_subject": deliver,
        "flow_control": true,
        "idle_heartbeat": HEARTBEAT.as_nanos() as u64,
        "inactive_threshold": INACTIVE.as_nanos() as u64,
        "direct": true,
    });
    let object = config.as_object_mut();
    if let Some(c) = object {
        if start > 0 {
            c.insert("deliver_policy".into(), "by_start_sequence".into());
            c.insert("opt_start_seq".into(), start.into());
        } else if let Some(time) = &source.opt_start_time {
            c.insert("deliver_policy".into(), "by_start_time".into());
            c.insert("opt_start_time".into(), time.clone().into());
        } else {
            c.insert("deliver_policy".into(), "all".into());
        }
        if !source.filter_subject.is_empty() {
            c.insert(
                "filter_subject".into(),
                source.filter_subject.clone().into(),
            );
        }
        let filters: Vec<String> = source
            .subject_transforms
            .iter()
            .map(|t| t.source().to_owned())
            .filter(|f| f != ">")
            .collect();
        if !filters.is_empty() {
            c.insert("filter_subjects".into(), filters.into());
        }
    }
    serde_json::json!({ "stream_name": origin, "config": config }).to_string()
}

/// The consumer's name from a create response, or its error.
fn created_consumer(payload: &[u8]) -> Result<String, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| ApiError::store_failed(format!("consumer create answer: {e}")))?;
    if let Some(err) = value.get("error") {
        return Err(serde_json::from_value(err.clone())
            .unwrap_or_else(|_| ApiError::store_failed(err.to_string())));
    }
    Ok(value
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_owned())
}

/// The copy's transforms (validated with the config; none that do not compile).
fn compile_transforms(configs: &[SubjectTransformConfig]) -> Vec<SubjectTransform> {
    configs
        .iter()
        .filter_map(|t| t.transform().ok().flatten())
        .collect()
}

/// The subject a copy is stored under: the first transform that matches, else its own.
fn transform(transforms: &[SubjectTransform], subject: &Bytes) -> Bytes {
    transforms
        .iter()
        .find_map(|t| t.apply(subject))
        .map_or_else(|| subject.clone(), Bytes::from)
}
