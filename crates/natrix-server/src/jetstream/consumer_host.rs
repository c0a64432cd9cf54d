//! One consumer on this node: a task that drives the pure [`Consumer`] state machine. It takes
//! pull requests, acks and stream changes from its event queue, delivers what the state machine
//! picks (only messages whose write is durable), persists the consumer state through the store's
//! group commit before it answers acks that asked for a reply, and publishes advisories.
//!
//! Lock order: a consumer's own state, then the stream's state machine. The stream task never
//! takes a consumer lock while it holds its own.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use natrix_stream::{
    AckKind, Advisory, ApiError, Consumer, ConsumerConfig, ConsumerInfo, MsgMeta, PullRequest,
    RetentionPolicy, StatusReply, StorageType, Stream, StreamView, WaitingQueue, ack_reply_subject,
    headers_with,
};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::host::StreamHost;
use super::now_ns;
use super::record::ConsumerRecord;
use crate::state::ServerState;

/// Deliveries per round before the task looks at its queue again.
const MAX_DELIVERIES_PER_ROUND: usize = 512;

/// Flow-control requests to a push consumer's client after this many bytes delivered.
const FLOW_CONTROL_BYTES: u64 = 1 << 20;

/// How often an ephemeral consumer checks whether it is still in use.
const INACTIVITY_CHECK: Duration = Duration::from_secs(1);

/// nats-server's inactive threshold of an ephemeral consumer that sets none.
const DEFAULT_EPHEMERAL_INACTIVE_NS: i64 = 5_000_000_000;

/// What a consumer task is told.
pub(crate) enum Event {
    Pull {
        reply: String,
        body: Bytes,
    },
    Ack {
        kind: AckKind,
        stream_seq: u64,
        consumer_seq: u64,
        reply: Option<Bytes>,
    },
    /// Messages left the stream (purge, limits, deletes).
    Removed(Vec<u64>),
    /// Everything below this sequence left the stream.
    RemovedBelow(u64),
    /// Stop; pull requests still waiting get this status.
    Stop(StatusReply),
}

/// A message or status to publish.
struct Out {
    route: Bytes,
    subject: Bytes,
    reply: Option<Bytes>,
    headers: Option<Bytes>,
    payload: Bytes,
}

/// The stream's state machine limited to what is durable: consumers never see a message whose
/// write batch has not been fsynced yet.
pub(crate) struct CommittedView<'a> {
    pub stream: &'a Stream,
    pub upto: u64,
}

impl StreamView for CommittedView<'_> {
    fn first_seq(&self) -> u64 {
        self.stream.first_seq()
    }
    fn last_seq(&self) -> u64 {
        self.stream.last_seq().min(self.upto)
    }
    fn msg_meta(&self, seq: u64) -> Option<MsgMeta> {
        (seq <= self.upto)
            .then(|| self.stream.msg_meta(seq))
            .flatten()
    }
    fn next_seq_matching(&self, from: u64, filter: &str) -> Option<u64> {
        self.stream
            .next_seq_matching(from, filter)
            .filter(|s| *s <= self.upto)
    }
    fn last_seq_for_subject(&self, subject: &[u8]) -> Option<u64> {
        self.stream
            .last_seq_for_subject(subject)
            .filter(|s| *s <= self.upto)
    }
    fn first_seq_at_or_after_time(&self, ts: i64) -> Option<u64> {
        self.stream
            .first_seq_at_or_after_time(ts)
            .filter(|s| *s <= self.upto)
    }
    fn subjects_matching(&self, filter: &str) -> BTreeMap<String, u64> {
        self.stream.subjects_matching(filter)
    }
}

struct Inner {
    consumer: Consumer,
    waiting: WaitingQueue,
    /// State changed since it was last persisted.
    dirty: bool,
    /// Push: bytes delivered since the last flow-control request.
    fc_bytes: u64,
    fc_count: u64,
    /// Unix ns of the last delivery or heartbeat (push idle heartbeats).
    last_send_ns: i64,
    /// Unix ns since when nobody has used the consumer (no interest / no pull request).
    idle_since_ns: Option<i64>,
}

pub(crate) struct ConsumerHost {
    pub name: String,
    stream: Weak<StreamHost>,
    inner: Mutex<Inner>,
    /// Held from picking deliveries until they are queued to their subscribers (taken before
    /// `inner`): info never shows a message as delivered that its subscriber could still
    /// receive after the info's answer, as nats-server sends under the consumer's lock (a KV
    /// watcher takes "nothing pending, nothing received" for "caught up").
    delivering: Mutex<()>,
    events: mpsc::UnboundedSender<Event>,
    stopped: AtomicBool,
    /// A copy's consumer (`direct`): left out of names, lists and counts, as in nats-server.
    pub direct: bool,
}

impl ConsumerHost {
    /// Starts a consumer task for `consumer` of `stream`.
    pub fn start(
        state: &Arc<ServerState>,
        stream: &Arc<StreamHost>,
        name: String,
        consumer: Consumer,
    ) -> Arc<ConsumerHost> {
        let (events, rx) = mpsc::unbounded_channel();
        let waiting = WaitingQueue::new(consumer.config());
        let direct = consumer.config().direct;
        let host = Arc::new(ConsumerHost {
            name,
            stream: Arc::downgrade(stream),
            inner: Mutex::new(Inner {
                consumer,
                waiting,
                dirty: true,
                fc_bytes: 0,
                fc_count: 0,
                last_send_ns: now_ns(),
                idle_since_ns: None,
            }),
            delivering: Mutex::new(()),
            events,
            stopped: AtomicBool::new(false),
            direct,
        });
        tokio::spawn(host.clone().run(Arc::downgrade(state), rx));
        host
    }

    pub fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }

    pub fn config(&self) -> ConsumerConfig {
        self.inner.lock().consumer.config().clone()
    }

    /// Replaces the config after a permitted update.
    pub fn update_config(&self, config: ConsumerConfig) {
        let mut inner = self.inner.lock();
        inner.waiting.update_limits(&config);
        inner.consumer.update_config(config);
        inner.dirty = true;
        drop(inner);
        self.send(Event::Removed(Vec::new()));
    }

    /// Whether this consumer still needs a message (interest retention).
    pub fn needs(&self, seq: u64, subject: &[u8]) -> bool {
        self.inner.lock().consumer.needs(seq, subject)
    }

    pub fn info(&self, stream: &StreamHost, state: &ServerState) -> ConsumerInfo {
        let _delivering = self.delivering.lock();
        let inner = self.inner.lock();
        let upto = stream.committed_seq();
        let mut info = stream.with_stream(|s| {
            inner.consumer.info(
                &stream.name,
                &self.name,
                &CommittedView { stream: s, upto },
                now_ns(),
                inner.waiting.len() as u64,
            )
        });
        let deliver = &inner.consumer.config().deliver_subject;
        if !deliver.is_empty() {
            info.push_bound = state.has_interest(deliver.as_bytes());
        }
        info
    }

    /// The bytes the store keeps for this consumer.
    pub fn record(&self) -> Bytes {
        Self::record_of(&self.inner.lock())
    }

    fn record_of(inner: &Inner) -> Bytes {
        ConsumerRecord::encode(
            inner.consumer.config(),
            inner.consumer.created_ns(),
            inner.consumer.state(),
        )
    }

    /// Stops the task; pull requests still waiting get `409 Consumer Deleted`.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.send(Event::Stop(StatusReply::ConsumerDeleted));
    }

    /// Stops the task because the stream's leadership moved: the consumer goes on at the new
    /// leader from its replicated record; pull requests still waiting here get
    /// `409 Leadership Change` (clients then pull again, reaching the new leader).
    pub fn step_down(&self) {
        self.stopped.store(true, Ordering::Release);
        self.send(Event::Stop(StatusReply::LeadershipChange));
    }

    async fn run(
        self: Arc<Self>,
        state: Weak<ServerState>,
        mut rx: mpsc::UnboundedReceiver<Event>,
    ) {
        let Some(stream) = self.stream.upgrade() else {
            return;
        };
        let mut committed = stream.subscribe_committed();
        drop(stream);
        let mut inactivity = tokio::time::interval(INACTIVITY_CHECK);
        inactivity.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events = Vec::new();
        loop {
            let (Some(stream), Some(state)) = (self.stream.upgrade(), state.upgrade()) else {
                return;
            };
            let mut out = Vec::new();
            let mut ack_replies = Vec::new();
            let mut removable = Vec::new();
            let mut stop = None;
            for event in events.drain(..) {
                match event {
                    Event::Stop(status) => stop = Some(status),
                    other => {
                        self.handle(&stream, other, &mut out, &mut ack_replies, &mut removable)
                    }
                }
            }
            if let Some(status) = stop {
                let mut inner = self.inner.lock();
                for (reply, status) in inner.waiting.close_all(&status) {
                    out.push(status_out(reply, &status));
                }
                drop(inner);
                send(&state, out);
                return;
            }
            // Armed before delivering: a subscriber to the deliver subject that arrives after
            // the interest check below still wakes the task.
            let subscribed = state.router.subscribed.clone();
            let notified = subscribed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let more = {
                let _delivering = self.delivering.lock();
                let more = self.deliver(&stream, &state, &mut out);
                self.timers(&stream, &state, &mut out);
                send(&state, std::mem::take(&mut out));
                more
            };
            // The consumer state and the retention removals are durable before an ack that
            // asked for a reply is answered: an answered ack is a consumed message.
            let (persisted, ()) =
                tokio::join!(self.persist(&stream), self.release(&stream, removable));
            match persisted {
                Ok(()) => {
                    for reply in ack_replies {
                        state.publish_internal(&reply, None, None, b"");
                    }
                }
                // Unanswered acks leave the client unsure, which is true: the next leader may
                // not know them and deliver the messages again. An answer would be a promise
                // that it does not.
                Err(err) => tracing::error!(
                    "JetStream consumer '{} > {}': state write failed, {} acks left unanswered: \
                     {err}",
                    stream.name,
                    self.name,
                    ack_replies.len()
                ),
            }
            if self.inactive(&stream, &state) {
                tracing::debug!(
                    "JetStream ephemeral consumer '{} > {}' inactive, deleting",
                    stream.name,
                    self.name
                );
                stream.remove_consumer(&state, &self.name).await;
                return;
            }
            let deadline = self.next_deadline();
            drop(stream);
            drop(state);
            if more {
                tokio::task::yield_now().await;
                while let Ok(e) = rx.try_recv() {
                    events.push(e);
                }
                continue;
            }
            tokio::select! {
                e = rx.recv() => match e {
                    Some(e) => events.push(e),
                    None => return,
                },
                changed = committed.changed() => if changed.is_err() { return },
                () = &mut notified => {}
                () = sleep_until_ns(deadline) => {}
                _ = inactivity.tick() => {}
            }
            while let Ok(e) = rx.try_recv() {
                events.push(e);
            }
        }
    }

    fn handle(
        &self,
        stream: &StreamHost,
        event: Event,
        out: &mut Vec<Out>,
        ack_replies: &mut Vec<Bytes>,
        removable: &mut Vec<u64>,
    ) {
        let follow_up = self.handle_one(stream, event, out, ack_replies, removable);
        if let Some(pull) = follow_up {
            self.handle_one(stream, pull, out, ack_replies, removable);
        }
    }

    /// Handles one event; an ack with `+NXT` returns the pull request it carries.
    fn handle_one(
        &self,
        stream: &StreamHost,
        event: Event,
        out: &mut Vec<Out>,
        ack_replies: &mut Vec<Bytes>,
        removable: &mut Vec<u64>,
    ) -> Option<Event> {
        let now = now_ns();
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        match event {
            Event::Pull { reply, body } => {
                if !inner.consumer.config().is_pull() {
                    out.push(status_out(reply, &StatusReply::ConsumerIsPushBased));
                    return None;
                }
                let req = match PullRequest::from_json(&body) {
                    Ok(req) => req,
                    Err(status) => {
                        out.push(status_out(reply, &status));
                        return None;
                    }
                };
                let upto = stream.committed_seq();
                let available = stream.with_stream(|s| {
                    inner
                        .consumer
                        .num_available(&CommittedView { stream: s, upto })
                });
                match inner.waiting.push(req, &reply, now, available) {
                    Ok(closed) => {
                        out.extend(closed.into_iter().map(|(r, s)| status_out(r, &s)));
                    }
                    Err(status) => out.push(status_out(reply, &status)),
                }
                inner.idle_since_ns = None;
            }
            Event::Ack {
                kind,
                stream_seq,
                consumer_seq,
                reply,
            } => {
                if let AckKind::Next { request } = &kind
                    && let Some(r) = &reply
                {
                    let outcome = inner
                        .consumer
                        .ack(&AckKind::Ack, stream_seq, consumer_seq, now);
                    removable.extend(outcome.acked);
                    inner.dirty = true;
                    let body = Bytes::copy_from_slice(request);
                    let reply = String::from_utf8_lossy(r).into_owned();
                    return Some(Event::Pull { reply, body });
                }
                let outcome = inner.consumer.ack(&kind, stream_seq, consumer_seq, now);
                removable.extend(outcome.acked);
                let percent = inner.consumer.config().sample_percent();
                for adv in outcome.advisories {
                    // Ack metrics go out at the sampling frequency (nats-server's `shouldSample`).
                    if matches!(adv, Advisory::AckSample { .. }) && fastrand::u32(..100) >= percent
                    {
                        continue;
                    }
                    out.push(advisory_out(&stream.name, &self.name, &adv, now));
                }
                inner.dirty = true;
                ack_replies.extend(reply);
            }
            Event::Removed(seqs) => {
                if !seqs.is_empty() {
                    inner.consumer.on_stream_removed(&seqs);
                    inner.dirty = true;
                }
            }
            Event::RemovedBelow(floor) => {
                let state = inner.consumer.state();
                let seqs: Vec<u64> = state
                    .pending
                    .keys()
                    .chain(state.exhausted.iter())
                    .chain(state.last_per_subject.iter())
                    .copied()
                    .filter(|s| *s < floor)
                    .collect();
                inner.consumer.on_stream_removed(&seqs);
                inner.dirty = true;
            }
            Event::Stop(_) => {}
        }
        None
    }

    /// Delivers what the state machine picks; true if it stopped at the per-round bound.
    fn deliver(&self, stream: &StreamHost, state: &ServerState, out: &mut Vec<Out>) -> bool {
        let now = now_ns();
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let config = inner.consumer.config().clone();
        let pull = config.is_pull();
        let deliver_subject = config.deliver_subject.clone();
        if !pull && !state.has_interest(deliver_subject.as_bytes()) {
            return false;
        }
        let upto = stream.committed_seq();
        for _ in 0..MAX_DELIVERIES_PER_ROUND {
            if pull && inner.waiting.is_empty() {
                return false;
            }
            let delivery = stream.with_stream(|s| {
                inner
                    .consumer
                    .next_delivery(&CommittedView { stream: s, upto }, now)
            });
            for adv in inner.consumer.take_advisories() {
                out.push(advisory_out(&stream.name, &self.name, &adv, now));
            }
            let Some(d) = delivery else {
                // A message held by replay pacing is not the end of the messages, nor is a
                // full max_ack_pending (nats-server leaves the requests waiting for acks).
                if pull
                    && inner.consumer.hold_until().is_none()
                    && !inner.consumer.at_max_ack_pending()
                {
                    let ended = inner.waiting.end_of_messages();
                    out.extend(ended.into_iter().map(|(r, s)| status_out(r, &s)));
                }
                return false;
            };
            inner.dirty = true;
            let msg = match stream.get_msg(d.stream_seq) {
                Ok(Some(msg)) => msg,
                Ok(None) => {
                    // Removed between the index lookup and the read: forget it.
                    inner.consumer.on_stream_removed(&[d.stream_seq]);
                    continue;
                }
                Err(err) => {
                    tracing::error!(
                        "JetStream consumer '{} > {}': reading message {}: {}",
                        stream.name,
                        self.name,
                        d.stream_seq,
                        err.description
                    );
                    inner.consumer.cancel_last_delivery();
                    return false;
                }
            };
            let ack = ack_reply_subject(
                &stream.name,
                &self.name,
                d.delivery_count,
                d.stream_seq,
                d.consumer_seq,
                d.timestamp_ns,
                d.pending,
            );
            let (headers, payload) = if config.headers_only {
                (
                    Some(headers_only(msg.headers.as_deref(), msg.payload.len())),
                    Bytes::new(),
                )
            } else {
                (msg.headers.clone(), msg.payload.clone())
            };
            let route = if pull {
                let size = (msg.subject.len()
                    + ack.len()
                    + headers.as_ref().map_or(0, Bytes::len)
                    + payload.len()) as u64;
                let next = inner.waiting.next_waiting(size, now);
                out.extend(next.closed.into_iter().map(|(r, s)| status_out(r, &s)));
                match next.reply {
                    Some(reply) => Bytes::from(reply),
                    None => {
                        inner.consumer.cancel_last_delivery();
                        return false;
                    }
                }
            } else {
                Bytes::from(deliver_subject.clone())
            };
            let size = (headers.as_ref().map_or(0, Bytes::len) + payload.len()) as u64;
            out.push(Out {
                route: route.clone(),
                subject: msg.subject.clone(),
                reply: Some(Bytes::from(ack)),
                headers,
                payload,
            });
            inner.last_send_ns = now;
            if !pull && config.flow_control {
                inner.fc_bytes += size;
                if inner.fc_bytes >= FLOW_CONTROL_BYTES {
                    inner.fc_bytes = 0;
                    inner.fc_count += 1;
                    let reply = format!("$JS.FC.{}.{}.{}", stream.name, self.name, inner.fc_count);
                    out.push(Out {
                        route: route.clone(),
                        subject: route,
                        reply: Some(Bytes::from(reply)),
                        headers: Some(Bytes::from_static(
                            b"NATS/1.0 100 FlowControl Request\r\n\r\n",
                        )),
                        payload: Bytes::new(),
                    });
                }
            }
        }
        true
    }

    /// Pull request expiries and heartbeats, push idle heartbeats, ack-wait expiries.
    fn timers(&self, stream: &StreamHost, state: &ServerState, out: &mut Vec<Out>) {
        let now = now_ns();
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        for adv in inner.consumer.expire(now) {
            out.push(advisory_out(&stream.name, &self.name, &adv, now));
        }
        let last = inner.consumer.state().delivered;
        for (reply, status) in inner.waiting.expire(now, last) {
            out.push(status_out(reply, &status));
        }
        let config = inner.consumer.config();
        let hb = config.idle_heartbeat;
        let deliver = &config.deliver_subject;
        if !deliver.is_empty()
            && hb > 0
            && now.saturating_sub(inner.last_send_ns) >= hb
            && state.has_interest(deliver.as_bytes())
        {
            let h = format!(
                "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: {}\r\nNats-Last-Stream: {}\r\n\r\n",
                last.consumer_seq, last.stream_seq
            );
            let route = Bytes::from(deliver.clone());
            out.push(Out {
                route: route.clone(),
                subject: route,
                reply: None,
                headers: Some(Bytes::from(h)),
                payload: Bytes::new(),
            });
            inner.last_send_ns = now;
        }
    }

    /// The earliest time the task must wake for a timer.
    fn next_deadline(&self) -> Option<i64> {
        let inner = self.inner.lock();
        let config = inner.consumer.config();
        let hb = (config.idle_heartbeat > 0 && !config.deliver_subject.is_empty())
            .then(|| inner.last_send_ns.saturating_add(config.idle_heartbeat));
        [
            inner.consumer.next_deadline(),
            inner.consumer.hold_until(),
            inner.waiting.next_deadline(),
            hb,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Writes the consumer record if it changed since the last write, durably (file storage; a
    /// replicated stream's replicas whatever the storage), before acks are answered. An error means the
    /// changes (acks among them) are not durable: a consumer stopped meanwhile (its stream's
    /// leadership moved, or it was deleted) writes nothing.
    async fn persist(&self, stream: &StreamHost) -> Result<(), ApiError> {
        let record = {
            let mut inner = self.inner.lock();
            let kept = stream.storage() == StorageType::File || stream.replica.is_some();
            if !inner.dirty || !kept {
                inner.dirty = false;
                return Ok(());
            }
            if self.stopped.load(Ordering::Acquire) {
                return Err(super::cluster::not_leader());
            }
            inner.dirty = false;
            Self::record_of(&inner)
        };
        let written = stream.put_consumer(&self.name, record, false).await;
        if written.is_err() {
            // Written again with the next round's changes, should this replica still lead.
            self.inner.lock().dirty = true;
        }
        written
    }

    /// Interest and work-queue retention: removes acknowledged messages nobody needs any more.
    async fn release(&self, stream: &StreamHost, acked: Vec<u64>) {
        if acked.is_empty() {
            return;
        }
        match stream.config().retention {
            RetentionPolicy::Limits => {}
            RetentionPolicy::WorkQueue => stream.remove_acked(acked).await,
            RetentionPolicy::Interest => {
                let removable: Vec<u64> = acked
                    .into_iter()
                    .filter(|&seq| {
                        let subject = stream.with_stream(|s| s.msg_meta(seq).map(|m| m.subject));
                        subject.is_some_and(|subject| {
                            stream
                                .consumers()
                                .iter()
                                .filter(|c| c.name != self.name)
                                .all(|c| !c.needs(seq, &subject))
                        })
                    })
                    .collect();
                stream.remove_acked(removable).await;
            }
        }
    }

    /// An ephemeral consumer nobody has used for its inactive threshold.
    fn inactive(&self, stream: &StreamHost, state: &ServerState) -> bool {
        let now = now_ns();
        let mut inner = self.inner.lock();
        let config = inner.consumer.config();
        if config.is_durable() {
            return false;
        }
        let threshold = if config.inactive_threshold > 0 {
            config.inactive_threshold
        } else {
            DEFAULT_EPHEMERAL_INACTIVE_NS
        };
        let deliver = &config.deliver_subject;
        let in_use = if deliver.is_empty() {
            !inner.waiting.is_empty()
        } else {
            state.has_interest(deliver.as_bytes())
        };
        let _ = stream;
        if in_use {
            inner.idle_since_ns = None;
            return false;
        }
        let since = *inner.idle_since_ns.get_or_insert(now);
        now.saturating_sub(since) >= threshold
    }
}

/// The headers of a `headers_only` delivery: the message's own plus `Nats-Msg-Size`.
fn headers_only(own: Option<&[u8]>, size: usize) -> Bytes {
    headers_with(own, &[("Nats-Msg-Size", size.to_string().as_bytes())])
}

fn status_out(reply: String, status: &StatusReply) -> Out {
    let route = Bytes::from(reply);
    Out {
        route: route.clone(),
        subject: route,
        reply: None,
        headers: Some(Bytes::from(status.header_bytes())),
        payload: Bytes::new(),
    }
}

fn advisory_out(stream: &str, consumer: &str, adv: &Advisory, now: i64) -> Out {
    let subject = Bytes::from(adv.subject(stream, consumer));
    let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    Out {
        route: subject.clone(),
        subject,
        reply: None,
        headers: None,
        payload: Bytes::from(adv.to_json(stream, consumer, &id, now)),
    }
}

fn send(state: &ServerState, out: Vec<Out>) {
    for o in out {
        state.publish_internal_to(
            &o.route,
            &o.subject,
            o.reply.as_deref(),
            o.headers.as_deref(),
            &o.payload,
        );
    }
}

async fn sleep_until_ns(deadline: Option<i64>) {
    match deadline {
        Some(at) => {
            let wait = u64::try_from(at.saturating_sub(now_ns())).unwrap_or(0);
            tokio::time::sleep(Duration::from_nanos(wait)).await;
        }
        None => std::future::pending().await,
    }
}
