//! The shared half of a client connection: its identity, the outbound buffer other connections
//! append messages to, its subscriptions, counters, and how it is closed. The connection task
//! (`connection.rs`) owns the socket's read half; the writer task (`writer.rs`) the write half.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use natrix_wire::{write_err, write_hmsg, write_msg};
use parking_lot::{MappedRwLockReadGuard, Mutex, RwLock, RwLockReadGuard};
use tokio::sync::Notify;

use crate::auth::{Permissions, ReplyTracker};
use crate::router::Subscription;
use crate::stall::{Backpressure, stall_wait};
use crate::trace;

/// Why a connection was closed (names as in nats-server's /connz `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    ClientClosed,
    ReadError,
    WriteError,
    SlowConsumerPendingBytes,
    SlowConsumerWriteDeadline,
    ProtocolViolation,
    AuthenticationTimeout,
    AuthenticationViolation,
    MaxConnectionsExceeded,
    MaxPayloadExceeded,
    MaxControlLineExceeded,
    StaleConnection,
    ServerShutdown,
    TlsHandshakeError,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "Client Closed",
            CloseReason::ReadError => "Read Error",
            CloseReason::WriteError => "Write Error",
            CloseReason::SlowConsumerPendingBytes => "Slow Consumer (Pending Bytes)",
            CloseReason::SlowConsumerWriteDeadline => "Slow Consumer (Write Deadline)",
            CloseReason::ProtocolViolation => "Protocol Violation",
            CloseReason::AuthenticationTimeout => "Authentication Timeout",
            CloseReason::AuthenticationViolation => "Authentication Failure",
            CloseReason::MaxConnectionsExceeded => "Maximum Connections Exceeded",
            CloseReason::MaxPayloadExceeded => "Maximum Message Payload Exceeded",
            CloseReason::MaxControlLineExceeded => "Maximum Control Line Exceeded",
            CloseReason::StaleConnection => "Stale Connection",
            CloseReason::ServerShutdown => "Server Shutdown",
            CloseReason::TlsHandshakeError => "TLS Handshake Failure",
        }
    }

    /// Whether what is already queued is still written before the socket closes.
    fn flushes(self) -> bool {
        !matches!(
            self,
            CloseReason::ReadError
                | CloseReason::WriteError
                | CloseReason::SlowConsumerPendingBytes
                | CloseReason::SlowConsumerWriteDeadline
        )
    }
}

/// Bytes queued for the socket.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    pub buf: BytesMut,
    /// Bytes queued or being written (the writer subtracts after each write).
    pub pending: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    /// Set once the connection is closing: nothing more is queued.
    pub closing: Option<CloseReason>,
}

/// What the client told us in CONNECT, for monitoring.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientMeta {
    pub name: String,
    pub lang: String,
    pub version: String,
    pub user: Option<String>,
    /// The TLS session, for a client connected over TLS.
    pub tls: Option<TlsSession>,
}

/// What `/connz` shows of a client's TLS session, in nats-server's (Go's) names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSession {
    /// `1.2` or `1.3`.
    pub version: String,
    /// The IANA name, e.g. `TLS_AES_128_GCM_SHA256`.
    pub cipher_suite: String,
}

impl TlsSession {
    /// The session of a finished rustls handshake.
    pub fn of(session: &rustls::ServerConnection) -> Option<TlsSession> {
        let version = match session.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "1.3".to_string(),
            rustls::ProtocolVersion::TLSv1_2 => "1.2".to_string(),
            other => format!("{other:?}"),
        };
        let suite = session.negotiated_cipher_suite()?.suite();
        // rustls prefixes TLS 1.3 suites with `TLS13_`; Go (and the IANA registry) use `TLS_`.
        let name = format!("{suite:?}");
        let cipher_suite = match name.strip_prefix("TLS13_") {
            Some(rest) => format!("TLS_{rest}"),
            None => name,
        };
        Some(TlsSession {
            version,
            cipher_suite,
        })
    }
}

/// Options from CONNECT that the delivery path reads on every message.
#[derive(Debug, Default)]
pub(crate) struct ClientFlags {
    pub headers: AtomicBool,
    pub echo: AtomicBool,
    /// CONNECT said `protocol` >= 1: the client takes asynchronous INFO (lame duck notice);
    /// nats-server sends none to protocol 0 clients.
    pub async_info: AtomicBool,
    /// The server answered the client's first PING after CONNECT. As nats-server, no async INFO
    /// goes out before: clients (nats.go, nats.py) read the line after their CONNECT+PING as
    /// the PONG and fail or hang on anything else. A change missed until then is sent right
    /// after that first PONG instead (see [`Client::info_generation`]).
    pub first_pong_sent: AtomicBool,
}

#[derive(Debug)]
pub(crate) struct Client {
    pub id: u64,
    pub addr: SocketAddr,
    pub started: SystemTime,
    pub started_instant: Instant,
    /// The server's INFO generation ([`crate::state::ServerState::info_generation`]) that the
    /// INFO this client got at accept reflects.
    pub info_generation: AtomicU64,
    pub max_pending: u64,
    /// Queued bytes above which publishers to this client are stalled (see `Enqueued::Stalled`).
    pub stall_at: u64,
    /// Set when a publisher was told to stall; the writer then signals `drained`.
    pub stall_requested: AtomicBool,
    /// Signalled when a write brings the queue back to `stall_at` or below, or on close.
    pub drained: Notify,
    pub flags: ClientFlags,
    pub out: Mutex<Outbound>,
    /// Wakes the writer task.
    pub writer_wake: Notify,
    /// Set while some publisher holds this client in its list of writers to wake.
    pub wake_pending: AtomicBool,
    /// Wakes the connection task when someone else closes the connection.
    pub closed_wake: Notify,
    pub closed: AtomicBool,
    pub subs: Mutex<HashMap<Bytes, Arc<Subscription>>>,
    pub meta: Mutex<ClientMeta>,
    pub in_msgs: AtomicU64,
    pub in_bytes: AtomicU64,
    /// Milliseconds since `started_instant` of the last inbound activity.
    pub last_activity_ms: AtomicU64,
    /// Round-trip of the first PING, in microseconds (0 unknown).
    pub rtt_us: AtomicU64,
    /// The user's permissions, the only copy: the connection's publish and subscribe checks and
    /// every delivery to this client read it.
    pub access: CurrentAccess,
    /// The credentials of the last accepted CONNECT (and the nonce they signed), kept as
    /// nats-server keeps them so that a configuration reload can check them again. Never shown
    /// by monitoring.
    pub credentials: Mutex<Option<Credentials>>,
}

/// What a configuration reload needs to authenticate a connected client again.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub connect: natrix_wire::ConnectInfo,
    pub nonce: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.connect.user)
            .finish_non_exhaustive()
    }
}

/// The permissions a client acts under now: `no_auth_user`'s from accept (as nats-server applies
/// them before CONNECT), then those of the user each CONNECT authenticates. A second CONNECT as
/// another user replaces them for everything after it, deliveries included.
#[derive(Debug, Default)]
pub(crate) struct CurrentAccess {
    /// Whether `access` holds permissions, so that deliveries to and publishes by unrestricted
    /// clients (the common case) cost one load instead of a lock.
    restricted: AtomicBool,
    access: RwLock<Option<ClientAccess>>,
    /// Counts replacements, so that a connection knows when decisions it cached are stale (a
    /// configuration reload replaces them from outside the connection).
    generation: AtomicU64,
}

impl CurrentAccess {
    /// Replaces the permissions (`None`: unrestricted). Replies recorded for `allow_responses`
    /// go with the old ones, as nats-server starts a new reply map when it sets permissions.
    pub fn set(&self, permissions: Option<Arc<Permissions>>) {
        let mut access = self.access.write();
        *access = permissions.map(ClientAccess::new);
        self.restricted.store(access.is_some(), Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// How many times the permissions were replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The permissions in force, `None` if unrestricted. Hold the guard briefly: a CONNECT
    /// replacing them waits for it.
    pub fn get(&self) -> Option<MappedRwLockReadGuard<'_, ClientAccess>> {
        if !self.restricted.load(Ordering::Acquire) {
            return None;
        }
        RwLockReadGuard::try_map(self.access.read(), Option::as_ref).ok()
    }
}

/// What the delivery path enforces for a client with permissions.
#[derive(Debug)]
pub(crate) struct ClientAccess {
    pub permissions: Arc<Permissions>,
    /// Reply subjects received, with `allow_responses`.
    pub replies: Option<Mutex<ReplyTracker>>,
}

impl ClientAccess {
    pub fn new(permissions: Arc<Permissions>) -> Self {
        let replies = permissions
            .responses
            .map(|limits| Mutex::new(ReplyTracker::new(limits, Instant::now())));
        Self {
            permissions,
            replies,
        }
    }

    /// May the client publish a response to `subject` (a reply subject it received)?
    pub fn allows_response(&self, subject: &[u8]) -> bool {
        self.replies
            .as_ref()
            .is_some_and(|r| r.lock().allow(subject, Instant::now()))
    }
}

/// Outcome of queueing a message for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueued {
    /// Queued; the writer must be woken (the caller batches wake-ups).
    Queued,
    /// The client is closing; nothing was queued.
    Dropped,
    /// This message pushed the client over `max_pending`: it was cut off as a slow consumer.
    SlowConsumer,
    /// Queued, but the client's queue is over its stall threshold: the publisher should pause
    /// (bounded by [`Backpressure::stall_timeout`]) until it drains, as nats-server stalls fast
    /// producers.
    Stalled,
}

/// Upper bound of a client's stall threshold (nats-server stalls at half of max_pending; natrix
/// earlier): small enough to keep memory per receiver low, large enough that one write per
/// wake-up moves a lot.
const STALL_AT_MAX: u64 = 2 * 1024 * 1024;

impl Client {
    pub fn new(id: u64, addr: SocketAddr, max_pending: u64) -> Self {
        Self {
            id,
            addr,
            started: SystemTime::now(),
            started_instant: Instant::now(),
            max_pending,
            stall_at: (max_pending / 2).min(STALL_AT_MAX),
            stall_requested: AtomicBool::new(false),
            drained: Notify::new(),
            flags: ClientFlags {
                headers: AtomicBool::new(false),
                echo: AtomicBool::new(true),
                async_info: AtomicBool::new(false),
                first_pong_sent: AtomicBool::new(false),
            },
            info_generation: AtomicU64::new(0),
            out: Mutex::new(Outbound {
                buf: BytesMut::with_capacity(4096),
                ..Outbound::default()
            }),
            writer_wake: Notify::new(),
            wake_pending: AtomicBool::new(false),
            closed_wake: Notify::new(),
            closed: AtomicBool::new(false),
            subs: Mutex::new(HashMap::new()),
            meta: Mutex::new(ClientMeta::default()),
            in_msgs: AtomicU64::new(0),
            in_bytes: AtomicU64::new(0),
            last_activity_ms: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
            access: CurrentAccess::default(),
            credentials: Mutex::new(None),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn touch(&self) {
        let ms = self.started_instant.elapsed().as_millis() as u64;
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// This client's prefix in protocol trace lines.
    pub fn peer(&self) -> trace::Peer {
        trace::Peer {
            addr: self.addr,
            cid: self.id,
        }
    }

    /// Queues a MSG/HMSG for subscription `sid`. Headers are dropped for clients that did not
    /// announce header support, as nats-server does.
    pub fn enqueue_msg(
        &self,
        subject: &[u8],
        sid: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> Enqueued {
        if let Some(access) = self.access.get() {
            // As nats-server: a wildcard subscription may be allowed while some subjects it
            // covers are denied; those messages are not delivered.
            if access.permissions.filters_delivery() && access.permissions.denies_delivery(subject)
            {
                return Enqueued::Dropped;
            }
            if let (Some(reply), Some(replies)) = (reply, &access.replies) {
                replies.lock().record(reply, Instant::now());
            }
            // The guard ends here, before `out` is locked.
        }
        let mut out = self.out.lock();
        if out.closing.is_some() {
            return Enqueued::Dropped;
        }
        let before = out.buf.len();
        let sent_headers = headers.filter(|_| self.flags.headers.load(Ordering::Relaxed));
        if trace::enabled() && self.id != 0 {
            trace_msg(&self.peer(), subject, sid, reply, sent_headers, payload);
        }
        match sent_headers {
            Some(h) => write_hmsg(&mut out.buf, subject, sid, reply, h, payload),
            None => write_msg(&mut out.buf, subject, sid, reply, payload),
        }
        let added = (out.buf.len() - before) as u64;
        out.pending += added;
        out.out_msgs += 1;
        out.out_bytes += payload.len() as u64 + headers.map_or(0, |h| h.len() as u64);
        if out.pending > self.max_pending {
            tracing::debug!(
                cid = self.id,
                pending = out.pending,
                "slow consumer: max_pending exceeded"
            );
            self.mark_closed(&mut out, CloseReason::SlowConsumerPendingBytes);
            return Enqueued::SlowConsumer;
        }
        if out.pending > self.stall_at {
            self.stall_requested.store(true, Ordering::Release);
            return Enqueued::Stalled;
        }
        Enqueued::Queued
    }

    /// Called by the writer after each write: releases stalled publishers once drained.
    pub fn after_write(&self, written: u64) {
        let pending = {
            let mut out = self.out.lock();
            out.pending -= written;
            out.pending
        };
        if pending <= self.stall_at && self.stall_requested.swap(false, Ordering::AcqRel) {
            self.drained.notify_waiters();
        }
    }

    /// Queues raw protocol bytes (INFO, PONG, +OK, PING) and wakes the writer.
    pub fn send_proto(&self, bytes: &[u8]) {
        if trace::enabled() && self.id != 0 {
            trace::outbound_proto(&self.peer(), bytes);
        }
        {
            let mut out = self.out.lock();
            if out.closing.is_some() {
                return;
            }
            out.buf.extend_from_slice(bytes);
            out.pending += bytes.len() as u64;
        }
        self.writer_wake.notify_one();
    }

    /// Cuts the client off as a slow consumer if its queue is over `max_pending`; true if this
    /// call did (so the caller counts it once). `send_proto` does not check, because its callers
    /// cannot count: the connection calls this after each read batch, so that a client that
    /// pipelines PINGs (or verbose PUBs, or refused SUBs) and never reads is bounded by
    /// `max_pending` plus one batch of replies, as nats-server bounds every queued byte.
    pub fn close_if_over_max_pending(&self) -> bool {
        let mut out = self.out.lock();
        if out.closing.is_some() || out.pending <= self.max_pending {
            return false;
        }
        self.mark_closed(&mut out, CloseReason::SlowConsumerPendingBytes);
        true
    }

    /// Queues `-ERR '<text>'` (connection stays open).
    pub fn send_err(&self, text: &str) {
        let mut buf = BytesMut::with_capacity(text.len() + 10);
        write_err(&mut buf, text);
        self.send_proto(&buf);
    }

    /// Queues `-ERR '<text>'`, then closes after flushing it.
    pub fn send_err_and_close(&self, text: &str, reason: CloseReason) {
        self.send_err(text);
        self.close(reason);
    }

    /// Closes the connection; idempotent. Queued bytes are flushed unless the reason says the
    /// socket is unusable or the client is a slow consumer.
    pub fn close(&self, reason: CloseReason) {
        let mut out = self.out.lock();
        self.mark_closed(&mut out, reason);
    }

    fn mark_closed(&self, out: &mut Outbound, reason: CloseReason) {
        if out.closing.is_some() {
            return;
        }
        out.closing = Some(reason);
        if !reason.flushes() {
            out.buf.clear();
        }
        self.closed.store(true, Ordering::Release);
        self.drained.notify_waiters();
        self.writer_wake.notify_one();
        self.closed_wake.notify_one();
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        self.out.lock().closing
    }
}

impl Backpressure for Client {
    fn drained(&self) -> &Notify {
        &self.drained
    }

    fn stall_timeout(&self) -> Option<Duration> {
        if self.is_closed() {
            return None;
        }
        let pending = self.out.lock().pending;
        stall_wait(pending, self.stall_at, self.max_pending)
    }
}

/// Traces a MSG/HMSG as nats-server does: `->> [MSG subject sid [reply] size]`,
/// `->> [HMSG subject sid [reply] hdr_size total_size]`.
fn trace_msg(
    peer: &trace::Peer,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
) {
    let hdr = headers.map(|h| h.len().to_string());
    let total = (payload.len() + headers.map_or(0, <[u8]>::len)).to_string();
    let args = trace::args(&[
        Some(subject),
        Some(sid),
        reply,
        hdr.as_deref().map(str::as_bytes),
        Some(total.as_bytes()),
    ]);
    let verb = if headers.is_some() { "HMSG" } else { "MSG" };
    trace::outbound(peer, format_args!("{verb} {args}"));
}
