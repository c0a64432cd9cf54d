//! One route session's sending half and identity: the ordered, bounded queue of frames to the
//! peer (drained in batches into the gRPC stream), who the peer is, and its /routez counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::Stream;
use natrix_proto::node::NodeInfo;
use natrix_proto::route::{RouteBatch, RouteFrame, RouteMsg, route_frame};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::interest::{PeerInterest, PeerKey};
use crate::stall::{Backpressure, stall_wait};

/// Most bytes one gRPC message (a batch of frames) carries, unless a single frame is larger.
const BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Frames per batch at most.
const BATCH_FRAMES_MAX: usize = 4096;

/// Upper bound of a route's stall threshold (half of `max_pending` below that, as nats-server):
/// several full batches, so the sender always has the next one ready while publishers wait.
const STALL_AT_MAX: usize = 8 * 1024 * 1024;

#[derive(Debug, Default)]
struct QueueState {
    frames: Vec<RouteFrame>,
    bytes: usize,
    closed: bool,
    /// Replaced by a preferred session to the same peer: what is queued still goes out.
    retiring: bool,
    /// While retiring: end the stream once the queue is empty (the dialer's request stream);
    /// otherwise it stays open until the session closes it (the acceptor's response stream,
    /// whose end would end the whole call, the dialer's last frames with it).
    end_when_empty: bool,
}

/// What became of a frame offered to a [`LinkQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Queued, but the queue is over its stall threshold: the publisher should pause until it
    /// drains (see [`Backpressure`]), as nats-server stalls a client publishing into a route.
    Stalled,
    /// The queue is closed, or this frame overflowed it and closed it: not queued.
    Closed,
}

/// Frames waiting to go to the peer, in order. Bounded by bytes: past the stall threshold
/// publishers are paced to what the route sends; a peer that still does not keep up is cut
/// off at `max_bytes` (nats-server closes a route that exceeds max_pending) and
/// resynchronises on reconnect.
#[derive(Debug)]
pub(crate) struct LinkQueue {
    state: Mutex<QueueState>,
    wake: Notify,
    max_bytes: usize,
    stall_at: usize,
    /// Set when a publisher was told to stall; taking a batch then signals `drained`.
    stall_requested: AtomicBool,
    drained: Notify,
    /// Set once the queue overflowed.
    pub overflowed: AtomicBool,
    /// Woken when the queue closes.
    pub closed: Notify,
    /// Woken (one permit) when the queue starts retiring.
    pub retired: Notify,
}

impl LinkQueue {
    pub fn new(max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(QueueState::default()),
            wake: Notify::new(),
            max_bytes,
            stall_at: (max_bytes / 2).min(STALL_AT_MAX),
            stall_requested: AtomicBool::new(false),
            drained: Notify::new(),
            overflowed: AtomicBool::new(false),
            closed: Notify::new(),
            retired: Notify::new(),
        })
    }

    /// Queues a control frame (hello, ping, interest, gossip); false if the queue is closed.
    pub fn push(&self, frame: RouteFrame, size: usize) -> bool {
        self.offer(frame, size) != Pushed::Closed
    }

    /// Queues a frame and says whether its publisher should stall.
    pub fn offer(&self, frame: RouteFrame, size: usize) -> Pushed {
        let stalled = {
            let mut state = self.state.lock();
            if state.closed {
                return Pushed::Closed;
            }
            state.bytes += size;
            if state.bytes > self.max_bytes {
                state.closed = true;
                state.frames.clear();
                self.overflowed.store(true, Ordering::Relaxed);
                drop(state);
                self.wake_all_on_close();
                return Pushed::Closed;
            }
            state.frames.push(frame);
            let stalled = state.bytes > self.stall_at;
            if stalled {
                // Under the lock: the next batch taken sees the request.
                self.stall_requested.store(true, Ordering::Release);
            }
            stalled
        };
        self.wake.notify_one();
        if stalled {
            Pushed::Stalled
        } else {
            Pushed::Queued
        }
    }

    pub fn close(&self) {
        self.state.lock().closed = true;
        self.wake_all_on_close();
    }

    /// The session was replaced by a preferred one to the same peer: frames already queued
    /// still go out (a message handed to this session before the switch is not lost), then
    /// the stream ends (`end_when_empty`, the dialer's side) or waits for the session to close
    /// it once the peer ended its side.
    pub fn retire(&self, end_when_empty: bool) {
        {
            let mut state = self.state.lock();
            state.retiring = true;
            state.end_when_empty = end_when_empty;
        }
        self.wake.notify_one();
        self.retired.notify_one();
    }

    pub fn is_retiring(&self) -> bool {
        self.state.lock().retiring
    }

    fn wake_all_on_close(&self) {
        self.wake.notify_one();
        self.closed.notify_waiters();
        self.drained.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    pub fn pending_bytes(&self) -> usize {
        self.state.lock().bytes
    }

    /// The next batch, waiting for one; `None` once closed.
    async fn next_batch(&self) -> Option<RouteBatch> {
        loop {
            {
                let mut state = self.state.lock();
                if state.closed {
                    return None;
                }
                if !state.frames.is_empty() {
                    let mut bytes = 0;
                    let mut n = 0;
                    for frame in &state.frames {
                        let size = frame_size(frame);
                        if n > 0 && (bytes + size > BATCH_BYTES_MAX || n >= BATCH_FRAMES_MAX) {
                            break;
                        }
                        bytes += size;
                        n += 1;
                    }
                    let frames: Vec<RouteFrame> = if n == state.frames.len() {
                        std::mem::take(&mut state.frames)
                    } else {
                        state.frames.drain(..n).collect()
                    };
                    state.bytes = state.bytes.saturating_sub(bytes);
                    let drained = state.bytes <= self.stall_at;
                    drop(state);
                    if drained && self.stall_requested.swap(false, Ordering::AcqRel) {
                        self.drained.notify_waiters();
                    }
                    return Some(RouteBatch { frames });
                }
                if state.retiring && state.end_when_empty {
                    return None;
                }
            }
            self.wake.notified().await;
        }
    }

    /// The queue as the stream of batches a gRPC call sends; ends when the queue closes.
    pub fn stream(self: &Arc<Self>) -> impl Stream<Item = RouteBatch> + Send + 'static {
        futures::stream::unfold(self.clone(), |queue| async move {
            let batch = queue.next_batch().await?;
            Some((batch, queue))
        })
    }
}

impl Backpressure for LinkQueue {
    fn drained(&self) -> &Notify {
        &self.drained
    }

    fn stall_timeout(&self) -> Option<Duration> {
        let state = self.state.lock();
        if state.closed {
            return None;
        }
        stall_wait(
            state.bytes as u64,
            self.stall_at as u64,
            self.max_bytes as u64,
        )
    }
}

/// Approximate encoded size of a frame, for the queue and batch bounds.
pub(crate) fn frame_size(frame: &RouteFrame) -> usize {
    match &frame.kind {
        Some(route_frame::Kind::Msg(m)) => {
            m.subject.len()
                + m.reply.as_ref().map_or(0, Bytes::len)
                + m.headers.as_ref().map_or(0, Bytes::len)
                + m.payload.len()
                + m.queues.iter().map(Bytes::len).sum::<usize>()
                + 16
        }
        Some(route_frame::Kind::Interest(i)) => i.subject.len() + i.queue.len() + 8,
        _ => 64,
    }
}

/// Per-route counters (as /routez reports them).
#[derive(Debug, Default)]
pub(crate) struct LinkStats {
    pub in_msgs: AtomicU64,
    pub in_bytes: AtomicU64,
    pub out_msgs: AtomicU64,
    pub out_bytes: AtomicU64,
    /// Milliseconds since the link started of the last frame received.
    pub last_activity_ms: AtomicU64,
    /// Round trip of the last ping, in microseconds.
    pub rtt_us: AtomicU64,
}

/// An established route session to one peer.
#[derive(Debug)]
pub(crate) struct Link {
    /// Route id, unique on this node (nats-server's `rid`).
    pub rid: u64,
    pub peer: NodeInfo,
    /// The peer's cluster address as this node can reach it (gossiped to others).
    pub peer_cluster_addr: String,
    /// The peer's client URLs, with an unspecified host replaced by the peer's address.
    pub peer_client_urls: Vec<String>,
    /// This node dialled the session.
    pub did_solicit: bool,
    /// Dialled because the route is in this node's configuration.
    pub is_configured: bool,
    /// The remote end of the connection.
    pub remote_addr: SocketAddr,
    /// The dialer's server id and nonce: which of two duplicate sessions is kept.
    pub dialer_id: String,
    pub nonce: u64,
    pub started: SystemTime,
    pub started_instant: Instant,
    pub queue: Arc<LinkQueue>,
    pub stats: LinkStats,
    /// What the peer advertised (the routing trie holds the same, for matching).
    pub interest: Mutex<PeerInterest>,
}

impl PeerKey for Arc<Link> {
    fn key(&self) -> u64 {
        self.rid
    }
}

impl Link {
    /// Queues a message for the peer.
    #[allow(clippy::too_many_arguments)]
    pub fn send_msg(
        &self,
        subject: Bytes,
        reply: Option<Bytes>,
        headers: Option<Bytes>,
        payload: Bytes,
        queues: Vec<Bytes>,
        delivered_subject: Option<Bytes>,
    ) -> Pushed {
        let bytes = (payload.len() + headers.as_ref().map_or(0, Bytes::len)) as u64;
        let frame = RouteFrame {
            kind: Some(route_frame::Kind::Msg(RouteMsg {
                subject,
                reply,
                headers,
                payload,
                queues,
                delivered_subject,
                to_internal: false,
                hops: 0,
            })),
        };
        self.push_msg(frame, bytes)
    }

    /// Hands a message to the peer's JetStream (its internal subscriptions only), after
    /// everything queued before it on this session, interest changes included: a reply the
    /// peer sends back finds this node's interest in the reply subject.
    pub fn send_to_internal(
        &self,
        subject: Bytes,
        reply: Option<Bytes>,
        headers: Option<Bytes>,
        payload: Bytes,
        hops: u32,
    ) -> bool {
        let bytes = (payload.len() + headers.as_ref().map_or(0, Bytes::len)) as u64;
        let frame = RouteFrame {
            kind: Some(route_frame::Kind::Msg(RouteMsg {
                subject,
                reply,
                headers,
                payload,
                queues: Vec::new(),
                delivered_subject: None,
                to_internal: true,
                hops,
            })),
        };
        self.push_msg(frame, bytes) != Pushed::Closed
    }

    fn push_msg(&self, frame: RouteFrame, bytes: u64) -> Pushed {
        let size = frame_size(&frame);
        let pushed = self.queue.offer(frame, size);
        if pushed != Pushed::Closed {
            self.stats.out_msgs.fetch_add(1, Ordering::Relaxed);
            self.stats.out_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        pushed
    }

    pub fn touch(&self) {
        let ms = self.started_instant.elapsed().as_millis() as u64;
        self.stats.last_activity_ms.store(ms, Ordering::Relaxed);
    }
}
