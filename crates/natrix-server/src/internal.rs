//! In-process subscribers and publishers: how services inside the node (the JetStream API,
//! streams) receive what clients publish and publish back, through the same router and with the
//! same semantics as client connections (nats-server's internal clients).
//!
//! An internal subscription is an ordinary [`Subscription`] of the node's system client (never
//! listed in /connz) whose `internal` handler is called, on the publisher's task, instead of
//! queueing a MSG. Handlers must not block: they copy what they need and hand it to their
//! service (e.g. `try_send` on a bounded channel).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use natrix_subject::TrieError;

use crate::client::Enqueued;
use crate::connection::remove_subscription;
use crate::router::{ForwardScratch, Subscription, deliver_to_matches, route_to_matches};
use crate::state::ServerState;

/// A message delivered to an internal subscription; borrowed from the publisher's buffers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InternalMsg<'a> {
    pub subject: &'a [u8],
    pub reply: Option<&'a [u8]>,
    pub headers: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// The publishing client (0: the node itself).
    pub client_id: u64,
    /// How many nodes handed this message on to another node's JetStream before it arrived
    /// here (0: published on this node). Bounds forwarding chains.
    pub hops: u32,
}

/// The callback of an internal subscription.
#[derive(Clone)]
pub(crate) struct InternalHandler(Arc<dyn Fn(InternalMsg<'_>) + Send + Sync>);

impl InternalHandler {
    pub fn new(f: impl Fn(InternalMsg<'_>) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    pub fn call(&self, msg: InternalMsg<'_>) {
        (self.0)(msg)
    }
}

impl std::fmt::Debug for InternalHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalHandler")
    }
}

impl ServerState {
    /// Subscribes a service inside the node to `subject` (optionally in a queue group); only
    /// messages published on this node reach it.
    pub fn subscribe_internal(
        &self,
        subject: &str,
        queue: Option<&str>,
        handler: InternalHandler,
    ) -> Result<Arc<Subscription>, TrieError> {
        self.subscribe_internal_with(subject, queue, handler, false)
    }

    /// Like [`ServerState::subscribe_internal`], also advertised to the other nodes so that
    /// matching messages published there reach it, as a client's subscription.
    pub fn subscribe_internal_routed(
        &self,
        subject: &str,
        handler: InternalHandler,
    ) -> Result<Arc<Subscription>, TrieError> {
        self.subscribe_internal_with(subject, None, handler, true)
    }

    fn subscribe_internal_with(
        &self,
        subject: &str,
        queue: Option<&str>,
        handler: InternalHandler,
        routed: bool,
    ) -> Result<Arc<Subscription>, TrieError> {
        let id = self.router.next_sub_id();
        let sub = Arc::new(Subscription {
            id,
            client: self.system_client.clone(),
            subject: Bytes::copy_from_slice(subject.as_bytes()),
            queue: queue.map(|q| Bytes::copy_from_slice(q.as_bytes())),
            sid: Bytes::from(id.to_string()),
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            internal: Some(handler),
            routed,
        });
        self.router.insert(&sub)?;
        self.system_client
            .subs
            .lock()
            .insert(sub.sid.clone(), sub.clone());
        Ok(sub)
    }

    /// Publishes a message from the node itself (replies, advisories, deliveries of stored
    /// messages) to every matching subscription, one member per queue group. Returns whether
    /// anyone received it.
    pub fn publish_internal(
        &self,
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> bool {
        self.publish_internal_to(subject, subject, reply, headers, payload)
    }

    /// Like [`ServerState::publish_internal`], routed on `route` while receivers see `subject`:
    /// JetStream delivers a stored message to a consumer's deliver subject (or a pull request's
    /// reply subject) under the subject it was published on, as nats-server does.
    pub fn publish_internal_to(
        &self,
        route: &[u8],
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> bool {
        let msg = InternalMsg {
            subject,
            reply,
            headers,
            payload,
            client_id: 0,
            hops: 0,
        };
        if self.router.mesh().is_none() {
            let matches = self.router.matches(route);
            return deliver_to_matches(&matches, |sub| self.deliver_internal(&sub.0, msg));
        }
        let routed = self.router.routed(route);
        let copy = |b: &[u8]| bytes::Bytes::copy_from_slice(b);
        route_to_matches(
            &routed,
            &mut ForwardScratch::default(),
            |sub| self.deliver_internal(&sub.0, msg),
            |link, queues| {
                // Internal publishers (JetStream deliveries) are not paced by routes: consumers
                // pace themselves by max_ack_pending and flow control.
                link.send_msg(
                    copy(route),
                    reply.map(copy),
                    headers.map(copy),
                    copy(payload),
                    queues,
                    (route != subject).then(|| copy(subject)),
                );
            },
        )
    }

    /// Whether any subscription matches `subject` (e.g. a push consumer's deliver subject).
    pub fn has_interest(&self, subject: &[u8]) -> bool {
        self.router.has_interest(subject)
    }

    /// Queues a message for one subscription (calls an internal handler instead); false if
    /// it was not delivered.
    pub(crate) fn deliver_internal(&self, sub: &Arc<Subscription>, msg: InternalMsg<'_>) -> bool {
        if let Some(handler) = &sub.internal {
            handler.call(msg);
            return true;
        }
        let receiver = &sub.client;
        if receiver.is_closed() {
            return false;
        }
        let n = sub.delivered.fetch_add(1, Ordering::AcqRel) + 1;
        let max = sub.max.load(Ordering::Acquire);
        if max > 0 && n > max {
            return false;
        }
        let result =
            receiver.enqueue_msg(msg.subject, &sub.sid, msg.reply, msg.headers, msg.payload);
        if max > 0 && n == max {
            remove_subscription(self, sub);
        }
        match result {
            Enqueued::Queued | Enqueued::Stalled => {
                receiver.writer_wake.notify_one();
                self.stats.out_msgs.fetch_add(1, Ordering::Relaxed);
                self.stats.out_bytes.fetch_add(
                    (msg.payload.len() + msg.headers.map_or(0, <[u8]>::len)) as u64,
                    Ordering::Relaxed,
                );
                true
            }
            Enqueued::SlowConsumer => {
                self.note_slow_consumer(receiver);
                false
            }
            Enqueued::Dropped => false,
        }
    }
}
