//! One client connection's read side: reads the socket, parses operations and carries them out
//! (subscribe, publish to matching subscribers, ping/pong, auth), and enforces the per-connection
//! limits and timers. Delivery appends to the receivers' outbound buffers; their writers are woken
//! once per read batch.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use natrix_subject::is_valid_literal_subject;
use natrix_wire::{
    ClientOp, ClientParser, ConnectInfo, NO_RESPONDERS_HEADER, OK, PING, PONG, ParseError,
    ParserLimits, Publish,
};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::auth::{Identity, Verdict};
use crate::client::{Client, CloseReason, Credentials, Enqueued};
use crate::cluster::link::Pushed;
use crate::internal::InternalMsg;
use crate::router::{
    ForwardScratch, MatchCache, SubRef, Subscription, deliver_to_matches, route_to_matches,
};
use crate::stall::Backpressure;
use crate::state::{ServerState, Stats};
use crate::trace;

/// First read buffer size; it doubles while reads fill it, up to `READ_BUF_MAX`.
const READ_BUF_MIN: usize = 16 * 1024;
const READ_BUF_MAX: usize = 512 * 1024;

pub(crate) struct Connection {
    state: Arc<ServerState>,
    client: Arc<Client>,
    parser: ClientParser,
    cache: MatchCache,
    /// Scratch of the clustered delivery path (untouched without a cluster).
    forward: ForwardScratch,
    connected: bool,
    verbose: bool,
    pedantic: bool,
    echo: bool,
    no_responders: bool,
    headers: bool,
    pings_out: u32,
    ping_sent_at: Option<Instant>,
    /// Whether an RTT is known (measured at CONNECT or from a PONG), and when the last RTT PING
    /// went out: as nats-server, a PING is due on a timer tick only if an RTT is needed or the
    /// client showed no activity (messages or subscriptions in) for a whole ping interval.
    rtt_known: bool,
    rtt_ping_at: Option<Instant>,
    last_activity: tokio::time::Instant,
    /// Subscriptions made in the current read batch (activity for the ping timer).
    batch_subs: u32,
    /// Receivers whose writers must be woken at the end of this read batch.
    touched: Vec<Arc<Client>>,
    /// Receivers (clients and routes) over their stall threshold after this read batch.
    stalled: Vec<Arc<dyn Backpressure>>,
    batch: BatchStats,
    /// The nonce this connection's INFO carried (NKey users sign it).
    nonce: Option<String>,
    /// Publish decisions by subject under the client's current permissions (`client.access`;
    /// allow and deny lists only, responses are not cached). Cleared when they change.
    publish_verdicts: HashMap<Bytes, bool>,
    /// The `client.access` generation `publish_verdicts` were decided under.
    verdicts_generation: u64,
    /// A CONNECT waiting for its bcrypt check; nothing after it is read until it is decided.
    pending_auth: Option<PendingAuth>,
}

/// A CONNECT whose password (or token) is checked against a bcrypt hash off this task.
struct PendingAuth {
    info: ConnectInfo,
    password: String,
    hash: String,
    identity: Identity,
}

/// At most this many publish decisions are cached per connection (nats-server keeps 128).
const PUBLISH_VERDICTS_MAX: usize = 256;

#[derive(Default)]
struct BatchStats {
    in_msgs: u64,
    in_bytes: u64,
    out_msgs: u64,
    out_bytes: u64,
}

impl Connection {
    pub fn new(state: Arc<ServerState>, client: Arc<Client>, nonce: Option<String>) -> Self {
        let limits = &state.config.limits;
        let mut parser = ClientParser::new(ParserLimits {
            max_control_line: limits.max_control_line,
            max_payload: limits.max_payload,
        });
        // Until CONNECT says otherwise a client gets nats-server's defaults: verbose, pedantic,
        // echo, and no headers (HPUB closes the connection).
        let defaults = ConnectInfo::default();
        // Under no_auth_user, operations (and deliveries) before CONNECT already act as that
        // user, as in nats-server.
        client.access.set(
            state
                .auth()
                .no_auth_identity()
                .and_then(|identity| identity.permissions),
        );
        parser.set_headers_supported(defaults.headers);
        Self {
            state,
            client,
            parser,
            cache: MatchCache::default(),
            forward: ForwardScratch::default(),
            connected: false,
            verbose: defaults.verbose,
            pedantic: defaults.pedantic,
            echo: defaults.echo(),
            no_responders: defaults.no_responders,
            headers: defaults.headers,
            pings_out: 0,
            ping_sent_at: None,
            rtt_known: false,
            rtt_ping_at: None,
            last_activity: tokio::time::Instant::now(),
            batch_subs: 0,
            touched: Vec::with_capacity(16),
            stalled: Vec::new(),
            batch: BatchStats::default(),
            nonce,
            publish_verdicts: HashMap::new(),
            verdicts_generation: 0,
            pending_auth: None,
        }
    }

    /// Serves the connection until it closes, then removes its subscriptions.
    /// Generic over the transport (a TCP read half, or one of a TLS stream): monomorphized,
    /// so the plain path costs what it did.
    pub async fn run<R: AsyncRead + Unpin>(mut self, mut socket: R) {
        let limits = self.state.config.limits.clone();
        let auth_required = self.state.auth().advertise_required();
        let mut buf = BytesMut::with_capacity(READ_BUF_MIN);
        let mut read_size = READ_BUF_MIN;
        let start = tokio::time::Instant::now();
        let mut ping_timer = tokio::time::interval_at(
            start + first_ping_delay(limits.ping_interval),
            limits.ping_interval,
        );
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
                        while let Some(pending) = self.pending_auth.take() {
                            // The authentication timeout also bounds the wait for a bcrypt
                            // permit, so a flood of CONNECTs cannot queue without end.
                            let deadline = (auth_required && !self.connected)
                                .then_some(auth_timer.as_mut());
                            if !self.finish_bcrypt_auth(pending, deadline).await {
                                break;
                            }
                            self.process(&mut buf);
                        }
                        if self.client.close_if_over_max_pending() {
                            self.state.note_slow_consumer(&self.client);
                            break;
                        }
                        if !self.stalled.is_empty() {
                            self.wait_for_stalled_receivers().await;
                        }
                    }
                    Err(err) => {
                        tracing::debug!(cid = self.client.id, %err, "read error");
                        self.client.close(CloseReason::ReadError);
                        break;
                    }
                },
                _ = ping_timer.tick() => self.on_ping_timer(),
                _ = &mut auth_timer, if auth_required && !self.connected => {
                    self.authentication_timeout();
                    break;
                }
            }
        }
        self.cleanup();
    }

    /// Parses and executes every complete operation in `buf`.
    fn process(&mut self, buf: &mut BytesMut) {
        loop {
            // As nats-server: before an authenticated CONNECT, an operation that does not start
            // with `C` is an authorization violation, whatever else it is.
            if !self.connected
                && self.state.auth().advertise_required()
                && self.parser.is_idle()
                && buf.first().is_some_and(|b| !b.eq_ignore_ascii_case(&b'C'))
            {
                self.client.send_err_and_close(
                    "Authorization Violation",
                    CloseReason::AuthenticationViolation,
                );
                break;
            }
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
        if b.in_msgs > 0 || self.batch_subs > 0 {
            self.last_activity = tokio::time::Instant::now();
            self.batch_subs = 0;
        }
        self.cache.report(&self.state.router);
    }

    fn parse_error(&mut self, err: ParseError) {
        tracing::debug!(cid = self.client.id, %err, "client parser error");
        let reason = match err {
            ParseError::MaxPayloadViolation => CloseReason::MaxPayloadExceeded,
            ParseError::MaxControlLineExceeded => CloseReason::MaxControlLineExceeded,
            _ => CloseReason::ProtocolViolation,
        };
        // nats-server closes silently on malformed arguments of a known verb.
        match err.err_reply() {
            Some(text) => self.client.send_err_and_close(text, reason),
            None => self.client.close(reason),
        }
    }

    /// Carries out one operation; false once the connection is closing.
    fn execute(&mut self, op: ClientOp) -> bool {
        if !self.connected
            && !matches!(op, ClientOp::Connect(_))
            && self.state.auth().advertise_required()
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
                if trace::enabled() {
                    trace::inbound(&self.client.peer(), format_args!("PING"));
                }
                self.client.send_proto(PONG);
                if self.connected {
                    self.state.first_pong_sent(&self.client);
                }
            }
            ClientOp::Pong => {
                if trace::enabled() {
                    trace::inbound(&self.client.peer(), format_args!("PONG"));
                }
                self.pings_out = 0;
                if let Some(sent) = self.ping_sent_at.take() {
                    self.rtt_known = true;
                    self.client
                        .rtt_us
                        .store(sent.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
            }
            ClientOp::Connect(json) => return self.on_connect(&json),
            ClientOp::Ok => {}
            ClientOp::Info(json) => {
                // Ignored, but like nats-server a client INFO must at least be a JSON object.
                if serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&json)
                    .is_err()
                {
                    tracing::debug!(cid = self.client.id, "invalid INFO json from client");
                    self.client.close(CloseReason::ProtocolViolation);
                    return false;
                }
            }
            ClientOp::Err(text) => {
                // nats-server closes a client that sends -ERR, without a reply.
                tracing::debug!(cid = self.client.id, text = %String::from_utf8_lossy(&text), "client sent -ERR");
                self.client.close(CloseReason::ProtocolViolation);
                return false;
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
        if trace::enabled() {
            let connect = redacted_connect(json);
            trace::inbound(&self.client.peer(), format_args!("CONNECT {connect}"));
        }
        let info: ConnectInfo = match serde_json::from_slice(json) {
            Ok(info) => info,
            Err(err) => {
                tracing::debug!(cid = self.client.id, %err, "invalid CONNECT json");
                self.client.close(CloseReason::ProtocolViolation);
                return false;
            }
        };
        match self.state.auth().authenticate(&info, self.nonce.as_deref()) {
            Verdict::Accepted(identity) => self.finish_connect(info, identity),
            Verdict::Rejected => {
                self.authorization_violation();
                false
            }
            Verdict::NeedsBcrypt {
                password,
                hash,
                identity,
            } => {
                // Decided in `run` on a blocking thread; parsing stops here until then.
                self.pending_auth = Some(PendingAuth {
                    info,
                    password,
                    hash,
                    identity,
                });
                false
            }
        }
    }

    fn authentication_timeout(&self) {
        tracing::debug!(cid = self.client.id, "authentication timeout");
        self.client
            .send_err_and_close("Authentication Timeout", CloseReason::AuthenticationTimeout);
    }

    fn authorization_violation(&self) {
        tracing::warn!(cid = self.client.id, addr = %self.client.addr, "authorization violation");
        self.client.send_err_and_close(
            "Authorization Violation",
            CloseReason::AuthenticationViolation,
        );
    }

    /// Checks a bcrypt password off the runtime's workers (it costs milliseconds of CPU, and at
    /// most a few checks of the whole node run at once: `Authenticator::check_bcrypt`), then
    /// completes the CONNECT; false if the connection is closing. With a `deadline` (the
    /// authentication timer), a check not decided by then closes the connection as timed out.
    async fn finish_bcrypt_auth(
        &mut self,
        pending: PendingAuth,
        deadline: Option<Pin<&mut tokio::time::Sleep>>,
    ) -> bool {
        let PendingAuth {
            info,
            password,
            hash,
            identity,
        } = pending;
        let check = self.state.auth().check_bcrypt(password, hash);
        let matched = match deadline {
            Some(deadline) => tokio::select! {
                matched = check => matched,
                () = deadline => {
                    self.authentication_timeout();
                    return false;
                }
            },
            None => check.await,
        };
        if !matched {
            self.authorization_violation();
            return false;
        }
        self.finish_connect(info, identity) && !self.client.is_closed()
    }

    /// CONNECT after authentication: takes on the client's options and the user's permissions.
    fn finish_connect(&mut self, info: ConnectInfo, identity: Identity) -> bool {
        if info.no_responders && !info.headers {
            self.client.send_err_and_close(
                "no responders requires headers support",
                CloseReason::ProtocolViolation,
            );
            return false;
        }
        self.connected = true;
        self.rtt_known = true;
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
        self.echo = info.echo();
        self.no_responders = info.no_responders;
        self.headers = info.headers;
        self.parser.set_headers_supported(info.headers);
        self.client
            .flags
            .headers
            .store(info.headers, Ordering::Relaxed);
        self.client.flags.echo.store(self.echo, Ordering::Relaxed);
        self.client
            .flags
            .async_info
            .store(info.protocol >= 1, Ordering::Relaxed);
        {
            let mut meta = self.client.meta.lock();
            meta.name = info.name.clone().unwrap_or_default();
            meta.lang = info.lang.clone().unwrap_or_default();
            meta.version = info.version.clone().unwrap_or_default();
            meta.user = identity.user;
        }
        // As nats-server, a second CONNECT authenticates again and its user's permissions
        // replace the first's for everything after it: publishes, new subscriptions, and
        // deliveries (subscriptions already made stay).
        self.client.access.set(identity.permissions);
        *self.client.credentials.lock() = Some(Credentials {
            connect: info,
            nonce: self.nonce.clone(),
        });
        self.ok();
        true
    }

    fn on_subscribe(&mut self, subject: Bytes, queue: Option<Bytes>, sid: Bytes) {
        if trace::enabled() {
            let args = trace::args(&[Some(&subject), queue.as_deref(), Some(&sid)]);
            trace::inbound(&self.client.peer(), format_args!("SUB {args}"));
        }
        self.batch_subs += 1;
        // nats-server's order: permissions, the limit, then a reused sid (ignored, yet
        // acknowledged), then the subject (the trie rejects what is invalid).
        let denied =
            self.client.access.get().is_some_and(|access| {
                !access.permissions.can_subscribe(&subject, queue.as_deref())
            });
        if denied {
            let subject = String::from_utf8_lossy(&subject);
            let text = match &queue {
                Some(queue) => format!(
                    "Permissions Violation for Subscription to \"{subject}\" using queue \"{}\"",
                    String::from_utf8_lossy(queue)
                ),
                None => format!("Permissions Violation for Subscription to \"{subject}\""),
            };
            tracing::debug!(cid = self.client.id, "{text}");
            self.client.send_err(&text);
            return;
        }
        let max_subs = self.state.config.limits.max_subscriptions;
        {
            let subs = self.client.subs.lock();
            if max_subs > 0 && subs.len() >= max_subs as usize {
                drop(subs);
                tracing::debug!(cid = self.client.id, "maximum subscriptions exceeded");
                self.client.send_err("maximum subscriptions exceeded");
                return;
            }
            if subs.contains_key(&sid) {
                drop(subs);
                self.ok();
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
            internal: None,
            routed: false,
        });
        if self.state.router.insert(&sub).is_err() {
            self.client.send_err("Invalid Subject");
            return;
        }
        self.client.subs.lock().insert(sub.sid.clone(), sub);
        self.ok();
    }

    fn on_unsubscribe(&mut self, sid: Bytes, max: Option<u64>) {
        if trace::enabled() {
            let max = max.map(|m| m.to_string());
            let args = trace::args(&[Some(&sid), max.as_deref().map(str::as_bytes)]);
            trace::inbound(&self.client.peer(), format_args!("UNSUB {args}"));
        }
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
        if trace::enabled() {
            let peer = self.client.peer();
            let total = (p.payload.len() + hdr_len).to_string();
            let hdr = p.headers.as_ref().map(|_| hdr_len.to_string());
            let args = trace::args(&[
                Some(&p.subject),
                p.reply.as_deref(),
                hdr.as_deref().map(str::as_bytes),
                Some(total.as_bytes()),
            ]);
            let verb = if p.headers.is_some() { "HPUB" } else { "PUB" };
            trace::inbound(&peer, format_args!("{verb} {args}"));
            let mut body = p.headers.as_deref().unwrap_or_default().to_vec();
            body.extend_from_slice(&p.payload);
            trace::payload(&peer, &body);
        }
        self.batch.in_msgs += 1;
        self.batch.in_bytes += (p.payload.len() + hdr_len) as u64;
        if p.headers.is_some() && !self.headers {
            // The parser already refuses HPUB without headers support; nats-server closes
            // silently.
            self.client.close(CloseReason::ProtocolViolation);
            return;
        }
        if !self.may_publish(&p.subject) {
            let text = format!(
                "Permissions Violation for Publish to \"{}\"",
                String::from_utf8_lossy(&p.subject)
            );
            tracing::debug!(cid = self.client.id, "{text}");
            self.client.send_err(&text);
            return;
        }
        // As nats-server 2.9: pedantic mode only reports the bad subject; the message is still
        // acknowledged and routed.
        if self.pedantic && !is_valid_literal_subject(&p.subject) {
            self.client.send_err("Invalid Publish Subject");
        }
        // The +OK precedes any copy of the message the publisher itself receives.
        self.ok();
        let routed = self.cache.lookup(&self.state.router, &p.subject);
        let delivered = if routed.remote.is_empty() {
            deliver_to_matches(&routed.local, |sub| self.deliver(sub, &p))
        } else {
            let mut scratch = std::mem::take(&mut self.forward);
            let mut stalled_routes = Vec::new();
            let delivered = route_to_matches(
                &routed,
                &mut scratch,
                |sub| self.deliver(sub, &p),
                |link, queues| {
                    let pushed = link.send_msg(
                        p.subject.clone(),
                        p.reply.clone(),
                        p.headers.clone(),
                        p.payload.clone(),
                        queues,
                        None,
                    );
                    if pushed == Pushed::Stalled {
                        stalled_routes.push(link.queue.clone());
                    }
                },
            );
            self.forward = scratch;
            for queue in stalled_routes {
                self.stall_on(queue);
            }
            delivered
        };
        if !delivered
            && self.no_responders
            && let Some(reply) = &p.reply
        {
            self.send_no_responders(reply);
        }
    }

    /// The publish permission check: allow and deny lists (cached per subject), then, for a
    /// subject they refuse, `allow_responses`.
    fn may_publish(&mut self, subject: &Bytes) -> bool {
        let Some(access) = self.client.access.get() else {
            return true;
        };
        let generation = self.client.access.generation();
        if generation != self.verdicts_generation {
            self.publish_verdicts.clear();
            self.verdicts_generation = generation;
        }
        let allowed = match self.publish_verdicts.get(subject) {
            Some(&allowed) => allowed,
            None => {
                let allowed = access.permissions.can_publish(subject);
                if self.publish_verdicts.len() >= PUBLISH_VERDICTS_MAX {
                    self.publish_verdicts.clear();
                }
                self.publish_verdicts.insert(copy(subject), allowed);
                allowed
            }
        };
        allowed || access.allows_response(subject)
    }

    /// Queues the message for one subscription; false if it was not delivered.
    fn deliver(&mut self, sub: &SubRef, p: &Publish) -> bool {
        let sub = &sub.0;
        if let Some(handler) = &sub.internal {
            handler.call(InternalMsg {
                subject: &p.subject,
                reply: p.reply.as_deref(),
                headers: p.headers.as_deref(),
                payload: &p.payload,
                client_id: self.client.id,
                hops: 0,
            });
            self.batch.out_msgs += 1;
            return true;
        }
        let receiver = &sub.client;
        if !self.echo && receiver.id == self.client.id {
            return false;
        }
        if receiver.is_closed() {
            return false;
        }
        // Counted always: an UNSUB with a max counts what was delivered before it, as in
        // nats-server.
        let n = sub.delivered.fetch_add(1, Ordering::AcqRel) + 1;
        let max = sub.max.load(Ordering::Acquire);
        let mut last = false;
        if max > 0 {
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
            Enqueued::Queued | Enqueued::Stalled => {
                if result == Enqueued::Stalled {
                    self.stall_on(receiver.clone());
                }
                self.batch.out_msgs += 1;
                self.batch.out_bytes +=
                    (p.payload.len() + p.headers.as_ref().map_or(0, |h| h.len())) as u64;
                self.wake_later(receiver);
                true
            }
            Enqueued::SlowConsumer => {
                self.state.note_slow_consumer(receiver);
                false
            }
            Enqueued::Dropped => false,
        }
    }

    /// Remembers a receiver (client or route) that asked this publisher to stall.
    fn stall_on(&mut self, receiver: Arc<dyn Backpressure>) {
        let known = self
            .stalled
            .iter()
            .any(|r| std::ptr::addr_eq(Arc::as_ptr(r), Arc::as_ptr(&receiver)));
        if !known {
            self.stalled.push(receiver);
        }
    }

    /// Fast-producer backpressure, as nats-server's stall: when receivers' queues (clients' or
    /// routes') are over their stall threshold, stop reading this publisher until they drain
    /// (each wait bounded, see [`Backpressure::stall_timeout`]), so a fast publisher slows to
    /// its receivers' pace instead of them being cut off as slow consumers.
    async fn wait_for_stalled_receivers(&mut self) {
        for receiver in std::mem::take(&mut self.stalled) {
            let drained = receiver.drained().notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            let Some(timeout) = receiver.stall_timeout() else {
                continue;
            };
            if tokio::time::timeout(timeout, drained).await.is_err() {
                tracing::debug!(
                    cid = self.client.id,
                    "timed out of fast producer stall ({timeout:?})"
                );
            }
        }
    }

    fn wake_later(&mut self, receiver: &Arc<Client>) {
        if !receiver.wake_pending.swap(true, Ordering::SeqCst) {
            self.touched.push(receiver.clone());
        }
    }

    /// The `NATS/1.0 503` status message to the publisher's own (non-queue) subscription that
    /// matches the reply subject, as nats-server's `subForReply`.
    fn send_no_responders(&mut self, reply: &Bytes) {
        let matches = self.cache.lookup(&self.state.router, reply);
        let own = matches
            .local
            .plain
            .iter()
            .find(|s| s.0.client.id == self.client.id);
        if let Some(sub) = own {
            let sub = sub.0.clone();
            if self
                .client
                .enqueue_msg(reply, &sub.sid, None, Some(NO_RESPONDERS_HEADER), b"")
                != Enqueued::Dropped
            {
                let me = self.client.clone();
                self.wake_later(&me);
            }
        }
    }

    fn on_ping_timer(&mut self) {
        let limits = &self.state.config.limits;
        let need_rtt = !self.rtt_known
            || self
                .rtt_ping_at
                .is_none_or(|at| at.elapsed() > RTT_MEASUREMENT_INTERVAL);
        if !need_rtt && self.last_activity.elapsed() < limits.ping_interval {
            // Recent messages or subscriptions prove the client alive.
            return;
        }
        let max = limits.ping_max;
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
        let now = Instant::now();
        self.ping_sent_at = Some(now);
        self.rtt_ping_at = Some(now);
        self.client.send_proto(PING);
    }

    fn cleanup(&mut self) {
        self.finish_batch();
        self.cache.release(&self.state.router);
        self.state.closed.record(&self.client);
        let subs: Vec<Arc<Subscription>> =
            self.client.subs.lock().drain().map(|(_, s)| s).collect();
        for sub in &subs {
            self.state.router.remove(sub);
        }
        self.state.clients.write().remove(&self.client.id);
        let reason = self.client.close_reason().map_or("unknown", |r| r.as_str());
        tracing::debug!(
            "{} - Client connection closed: {reason}",
            self.client.peer()
        );
    }
}

/// nats-server re-measures a client's RTT with a PING at most this often while it is active.
const RTT_MEASUREMENT_INTERVAL: Duration = Duration::from_secs(3600);
/// The first PING goes out this soon (or after the ping interval, if shorter) to measure RTT.
const FIRST_PING_MAX: Duration = Duration::from_secs(2);

/// When the first PING is due: as nats-server, the ping interval capped at 2 s, plus up to 20%
/// random jitter so that reconnecting clients do not all get pinged at once.
fn first_ping_delay(ping_interval: Duration) -> Duration {
    let base = ping_interval.min(FIRST_PING_MAX);
    let jitter_ms = (base.as_millis() / 5) as u64;
    base + Duration::from_millis(fastrand::u64(0..=jitter_ms))
}

/// CONNECT JSON for the trace log with its secrets (`pass`, `auth_token`, `sig`) replaced by
/// `[REDACTED]`; nats-server redacts the password only.
fn redacted_connect(json: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(json) {
        Ok(mut map) => {
            for key in ["pass", "auth_token", "sig"] {
                if let Some(value) = map.get_mut(key) {
                    *value = serde_json::Value::String("[REDACTED]".into());
                }
            }
            serde_json::Value::Object(map).to_string()
        }
        Err(_) => format!("<{} bytes, not a JSON object>", json.len()),
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

#[cfg(test)]
mod tests {
    use super::redacted_connect;

    #[test]
    fn traced_connect_shows_no_secrets() {
        let traced = redacted_connect(
            br#"{"user":"alice","pass":"s3cret","auth_token":"t0ken","sig":"c2ln","verbose":true}"#,
        );
        for secret in ["s3cret", "t0ken", "c2ln"] {
            assert!(!traced.contains(secret), "{traced}");
        }
        assert!(traced.contains(r#""user":"alice""#), "{traced}");
        assert_eq!(redacted_connect(b"{x"), "<2 bytes, not a JSON object>");
    }
}
