//! One client connection's read side: reads the socket, parses operations and carries them out
//! (subscribe, publish to matching subscribers, ping/pong, auth), and enforces the per-connection
//! limits and timers. Delivery appends to the receivers' outbound buffers; their writers are woken
//! once per read batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use natrix_subject::{is_valid_literal_subject, is_valid_queue_name, is_valid_subject};
use natrix_wire::{
    ClientOp, ClientParser, ConnectInfo, NO_RESPONDERS_HEADER, OK, PING, PONG, ParseError,
    ParserLimits, Publish,
};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;

use crate::auth;
use crate::client::{Client, CloseReason, Enqueued};
use crate::router::{MatchCache, SubRef, Subscription};
use crate::state::{ServerState, Stats};

const TRACE: &str = "natrix_server::trace";
/// First read buffer size; it doubles while reads fill it, up to `READ_BUF_MAX`.
const READ_BUF_MIN: usize = 16 * 1024;
const READ_BUF_MAX: usize = 512 * 1024;

pub(crate) struct Connection {
    state: Arc<ServerState>,
    client: Arc<Client>,
    parser: ClientParser,
    cache: MatchCache,
    connected: bool,
    verbose: bool,
    pedantic: bool,
    echo: bool,
    no_responders: bool,
    headers: bool,
    pings_out: u32,
    ping_sent_at: Option<Instant>,
    /// Receivers whose writers must be woken at the end of this read batch.
    touched: Vec<Arc<Client>>,
    batch: BatchStats,
}

#[derive(Default)]
struct BatchStats {
    in_msgs: u64,
    in_bytes: u64,
    out_msgs: u64,
    out_bytes: u64,
}

impl Connection {
    pub fn new(state: Arc<ServerState>, client: Arc<Client>) -> Self {
        let limits = &state.config.limits;
        let parser = ClientParser::new(ParserLimits {
            max_control_line: limits.max_control_line,
            max_payload: limits.max_payload,
        });
        Self {
            state,
            client,
            parser,
            cache: MatchCache::default(),
            connected: false,
            verbose: false,
            pedantic: false,
            echo: true,
            no_responders: false,
            headers: false,
            pings_out: 0,
            ping_sent_at: None,
            touched: Vec::with_capacity(16),
            batch: BatchStats::default(),
        }
    }

    /// Serves the connection until it closes, then removes its subscriptions.
    pub async fn run(mut self, mut socket: OwnedReadHalf) {
        let limits = self.state.config.limits.clone();
        let auth_required = self.state.config.auth.required();
        let mut buf = BytesMut::with_capacity(READ_BUF_MIN);
        let mut read_size = READ_BUF_MIN;
        let start = tokio::time::Instant::now();
        let mut ping_timer =
            tokio::time::interval_at(start + limits.ping_interval, limits.ping_interval);
        ping_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let auth_timer = tokio::time::sleep(limits.auth_timeout);
        tokio::pin!(auth_timer);

        while !self.client.is_closed() {
            if buf.capacity() - buf.len() < read_size / 2 {
                buf.reserve(read_size);
            }
            tokio::select! {
                biased;
                _ = self.client.closed_wake.notified() => break,
                read = socket.read_buf(&mut buf) => match read {
                    Ok(0) => {
                        self.client.close(CloseReason::ClientClosed);
                        break;
                    }
                    Ok(n) => {
                        if n >= read_size && read_size < READ_BUF_MAX {
                            read_size *= 2;
                        }
                        self.client.touch();
                        self.process(&mut buf);
                    }
                    Err(err) => {
                        tracing::debug!(cid = self.client.id, %err, "read error");
                        self.client.close(CloseReason::ReadError);
                        break;
                    }
                },
                _ = ping_timer.tick() => self.on_ping_timer(),
                _ = &mut auth_timer, if auth_required && !self.connected => {
                    tracing::debug!(cid = self.client.id, "authentication timeout");
                    self.client.send_err_and_close("Authentication Timeout", CloseReason::AuthenticationTimeout);
                    break;
                }
            }
        }
        self.cleanup();
    }

    /// Parses and executes every complete operation in `buf`.
    fn process(&mut self, buf: &mut BytesMut) {
        loop {
            match self.parser.next_op(buf) {
                Ok(Some(op)) => {
                    if !self.execute(op) {
                        break;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    self.parse_error(err);
                    break;
                }
            }
        }
        self.finish_batch();
    }

    fn finish_batch(&mut self) {
        for receiver in self.touched.drain(..) {
            receiver.wake_pending.store(false, Ordering::SeqCst);
            receiver.writer_wake.notify_one();
        }
        let stats = &self.state.stats;
        let b = std::mem::take(&mut self.batch);
        Stats::add(&stats.in_msgs, b.in_msgs);
        Stats::add(&stats.in_bytes, b.in_bytes);
        Stats::add(&stats.out_msgs, b.out_msgs);
        Stats::add(&stats.out_bytes, b.out_bytes);
        Stats::add(&self.client.in_msgs, b.in_msgs);
        Stats::add(&self.client.in_bytes, b.in_bytes);
        self.cache.report(&self.state.router);
    }

    fn parse_error(&mut self, err: ParseError) {
        tracing::debug!(cid = self.client.id, %err, "client parser error");
        let reason = match err {
            ParseError::MaxPayloadViolation => CloseReason::MaxPayloadExceeded,
            ParseError::MaxControlLineExceeded => CloseReason::MaxControlLineExceeded,
            _ => CloseReason::ProtocolViolation,
        };
        self.client.send_err_and_close(err.client_text(), reason);
    }

    /// Carries out one operation; false once the connection is closing.
    fn execute(&mut self, op: ClientOp) -> bool {
        if !self.connected
            && !matches!(op, ClientOp::Connect(_))
            && self.state.config.auth.required()
        {
            self.client.send_err_and_close(
                "Authorization Violation",
                CloseReason::AuthenticationViolation,
            );
            return false;
        }
        match op {
            ClientOp::Pub(publish) => self.on_publish(publish),
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => self.on_subscribe(subject, queue, sid),
            ClientOp::Unsub { sid, max } => self.on_unsubscribe(sid, max),
            ClientOp::Ping => {
                tracing::trace!(target: TRACE, cid = self.client.id, "<<- [PING]");
                self.client.send_proto(PONG);
            }
            ClientOp::Pong => {
                tracing::trace!(target: TRACE, cid = self.client.id, "<<- [PONG]");
                self.pings_out = 0;
                if let Some(sent) = self.ping_sent_at.take() {
                    self.client
                        .rtt_us
                        .store(sent.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
            }
            ClientOp::Connect(json) => return self.on_connect(&json),
            ClientOp::Info(_) | ClientOp::Ok => {}
            ClientOp::Err(text) => {
                tracing::debug!(cid = self.client.id, text = %String::from_utf8_lossy(&text), "client sent -ERR");
            }
        }
        !self.client.is_closed()
    }

    fn ok(&self) {
        if self.verbose {
            self.client.send_proto(OK);
        }
    }

    fn on_connect(&mut self, json: &[u8]) -> bool {
        tracing::trace!(target: TRACE, cid = self.client.id, "<<- [CONNECT {}]", String::from_utf8_lossy(json));
        let info: ConnectInfo = match serde_json::from_slice(json) {
            Ok(info) => info,
            Err(err) => {
                tracing::debug!(cid = self.client.id, %err, "invalid CONNECT json");
                self.client.close(CloseReason::ProtocolViolation);
                return false;
            }
        };
        if self.state.config.auth.required() && !auth::check(&self.state.config.auth, &info) {
            tracing::warn!(cid = self.client.id, addr = %self.client.addr, "authorization violation");
            self.client.send_err_and_close(
                "Authorization Violation",
                CloseReason::AuthenticationViolation,
            );
            return false;
        }
        if info.no_responders && !info.headers {
            self.client.send_err_and_close(
                "no responders requires headers support",
                CloseReason::ProtocolViolation,
            );
            return false;
        }
        self.connected = true;
        // As nats-server: the first RTT estimate is the time from accept to CONNECT (floored at
        // 1µs, so that monitoring never shows an unmeasured 0 afterwards).
        let since_accept = (self.client.started_instant.elapsed().as_micros() as u64).max(1);
        let _ = self.client.rtt_us.compare_exchange(
            0,
            since_accept,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.verbose = info.verbose;
        self.pedantic = info.pedantic;
        self.echo = info.echo.unwrap_or(true);
        self.no_responders = info.no_responders;
        self.headers = info.headers;
        self.client
            .flags
            .headers
            .store(info.headers, Ordering::Relaxed);
        self.client.flags.echo.store(self.echo, Ordering::Relaxed);
        {
            let mut meta = self.client.meta.lock();
            meta.name = info.name.unwrap_or_default();
            meta.lang = info.lang.unwrap_or_default();
            meta.version = info.version.unwrap_or_default();
            meta.user = info.user;
        }
        self.ok();
        true
    }

    fn on_subscribe(&mut self, subject: Bytes, queue: Option<Bytes>, sid: Bytes) {
        tracing::trace!(target: TRACE, cid = self.client.id, "<<- [SUB {} {} {}]",
            String::from_utf8_lossy(&subject),
            queue.as_deref().map(String::from_utf8_lossy).unwrap_or_default(),
            String::from_utf8_lossy(&sid));
        if !is_valid_subject(&subject) {
            self.client.send_err("Invalid Subject");
            return;
        }
        if let Some(q) = &queue
            && !is_valid_queue_name(q)
        {
            self.client.send_err("Invalid Queue Name");
            return;
        }
        let max_subs = self.state.config.limits.max_subscriptions;
        {
            let subs = self.client.subs.lock();
            if subs.contains_key(&sid) {
                drop(subs);
                self.ok();
                return;
            }
            if max_subs > 0 && subs.len() >= max_subs as usize {
                drop(subs);
                tracing::debug!(cid = self.client.id, "maximum subscriptions exceeded");
                self.client.send_err("maximum subscriptions exceeded");
                return;
            }
        }
        let sub = Arc::new(Subscription {
            id: self.state.router.next_sub_id(),
            client: self.client.clone(),
            subject: copy(&subject),
            queue: queue.as_deref().map(Bytes::copy_from_slice),
            sid: copy(&sid),
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        });
        if self.state.router.insert(&sub).is_err() {
            self.client.send_err("Invalid Subject");
            return;
        }
        self.client.subs.lock().insert(sub.sid.clone(), sub);
        self.ok();
    }

    fn on_unsubscribe(&mut self, sid: Bytes, max: Option<u64>) {
        tracing::trace!(target: TRACE, cid = self.client.id, "<<- [UNSUB {} {:?}]", String::from_utf8_lossy(&sid), max);
        let sub = self.client.subs.lock().get(&sid).cloned();
        if let Some(sub) = sub {
            match max {
                Some(max) if max > 0 && sub.delivered.load(Ordering::Acquire) < max => {
                    sub.max.store(max, Ordering::Release);
                }
                _ => remove_subscription(&self.state, &sub),
            }
        }
        self.ok();
    }

    fn on_publish(&mut self, p: Publish) {
        let hdr_len = p.headers.as_ref().map_or(0, |h| h.len());
        if tracing::enabled!(target: TRACE, tracing::Level::TRACE) {
            tracing::trace!(target: TRACE, cid = self.client.id, "<<- [{}PUB {} {} {}]",
                if p.headers.is_some() { "H" } else { "" },
                String::from_utf8_lossy(&p.subject),
                p.reply.as_deref().map(String::from_utf8_lossy).unwrap_or_default(),
                p.payload.len() + hdr_len);
        }
        self.batch.in_msgs += 1;
        self.batch.in_bytes += (p.payload.len() + hdr_len) as u64;
        if p.headers.is_some() && !self.headers {
            self.client
                .send_err_and_close("Headers Not Supported", CloseReason::ProtocolViolation);
            return;
        }
        if self.pedantic && !is_valid_literal_subject(&p.subject) {
            self.client.send_err("Invalid Publish Subject");
            return;
        }
        let matches = self.cache.lookup(&self.state.router, &p.subject);
        for sub in &matches.plain {
            self.deliver(sub, &p);
        }
        for group in &matches.queues {
            let n = group.members.len();
            if n == 0 {
                continue;
            }
            let start = fastrand::usize(..n);
            for i in 0..n {
                if self.deliver(&group.members[(start + i) % n], &p) {
                    break;
                }
            }
        }
        if matches.is_empty()
            && self.no_responders
            && let Some(reply) = &p.reply
        {
            self.send_no_responders(reply);
        }
        self.ok();
    }

    /// Queues the message for one subscription; false if it was not delivered.
    fn deliver(&mut self, sub: &SubRef, p: &Publish) -> bool {
        let sub = &sub.0;
        let receiver = &sub.client;
        if !self.echo && receiver.id == self.client.id {
            return false;
        }
        if receiver.is_closed() {
            return false;
        }
        let max = sub.max.load(Ordering::Acquire);
        let mut last = false;
        if max > 0 {
            let n = sub.delivered.fetch_add(1, Ordering::AcqRel) + 1;
            if n > max {
                return false;
            }
            last = n == max;
        }
        let result = receiver.enqueue_msg(
            &p.subject,
            &sub.sid,
            p.reply.as_deref(),
            p.headers.as_deref(),
            &p.payload,
        );
        if last {
            remove_subscription(&self.state, sub);
        }
        match result {
            Enqueued::Queued => {
                self.batch.out_msgs += 1;
                self.batch.out_bytes +=
                    (p.payload.len() + p.headers.as_ref().map_or(0, |h| h.len())) as u64;
                self.wake_later(receiver);
                true
            }
            Enqueued::SlowConsumer => {
                tracing::warn!(
                    cid = receiver.id,
                    "Slow Consumer Detected: MaxPending of {} Exceeded",
                    receiver.max_pending
                );
                self.state
                    .stats
                    .slow_consumers
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
            Enqueued::Dropped => false,
        }
    }

    fn wake_later(&mut self, receiver: &Arc<Client>) {
        if !receiver.wake_pending.swap(true, Ordering::SeqCst) {
            self.touched.push(receiver.clone());
        }
    }

    /// The `NATS/1.0 503` status message to the publisher's own inbox subscription.
    fn send_no_responders(&mut self, reply: &Bytes) {
        let matches = self.cache.lookup(&self.state.router, reply);
        let own = matches
            .plain
            .iter()
            .chain(matches.queues.iter().flat_map(|g| g.members.iter()))
            .find(|s| s.0.client.id == self.client.id);
        if let Some(sub) = own {
            let sub = sub.0.clone();
            if self
                .client
                .enqueue_msg(reply, &sub.sid, None, Some(NO_RESPONDERS_HEADER), b"")
                == Enqueued::Queued
            {
                let me = self.client.clone();
                self.wake_later(&me);
            }
        }
    }

    fn on_ping_timer(&mut self) {
        let max = self.state.config.limits.ping_max;
        if self.pings_out + 1 > max {
            tracing::debug!(cid = self.client.id, "Stale Client Connection - Closing");
            self.state
                .stats
                .stale_connections
                .fetch_add(1, Ordering::Relaxed);
            self.client
                .send_err_and_close("Stale Connection", CloseReason::StaleConnection);
            return;
        }
        self.pings_out += 1;
        self.ping_sent_at = Some(Instant::now());
        self.client.send_proto(PING);
    }

    fn cleanup(&mut self) {
        self.finish_batch();
        self.cache.release(&self.state.router);
        let subs: Vec<Arc<Subscription>> =
            self.client.subs.lock().drain().map(|(_, s)| s).collect();
        for sub in &subs {
            self.state.router.remove(sub);
        }
        self.state.clients.write().remove(&self.client.id);
        tracing::debug!(
            cid = self.client.id,
            reason = self
                .client
                .close_reason()
                .map(|r| r.as_str())
                .unwrap_or("unknown"),
            "client connection closed"
        );
    }
}

fn copy(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// Removes a subscription from the router and from its client (after UNSUB or when an
/// auto-unsubscribe limit is reached).
pub(crate) fn remove_subscription(state: &ServerState, sub: &Arc<Subscription>) {
    let removed = {
        let mut subs = sub.client.subs.lock();
        match subs.get(&sub.sid) {
            Some(existing) if existing.id == sub.id => subs.remove(&sub.sid).is_some(),
            _ => false,
        }
    };
    if removed {
        state.router.remove(sub);
    }
}
