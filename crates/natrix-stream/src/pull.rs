//! Pull consumers: the `$JS.API.CONSUMER.MSG.NEXT` request, the bounded FIFO of waiting
//! requests (batch and byte budgets, expiry, idle heartbeats), the status replies nats-server
//! sends on them (header-only messages), and the ack reply subject of every delivery.

use std::collections::VecDeque;

use serde::Deserialize;

use crate::consumer::SequencePair;
use crate::consumer_config::{ConsumerConfig, go_duration};

/// A pull request (`{"batch":n,"expires":ns,"no_wait":b,"max_bytes":n,"idle_heartbeat":ns}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullRequest {
    pub batch: u64,
    /// Nanoseconds from receipt; 0: no expiry.
    pub expires_ns: i64,
    pub no_wait: bool,
    /// 0: no byte budget.
    pub max_bytes: u64,
    /// 0: no heartbeats.
    pub idle_heartbeat_ns: i64,
}

impl Default for PullRequest {
    fn default() -> PullRequest {
        PullRequest {
            batch: 1,
            expires_ns: 0,
            no_wait: false,
            max_bytes: 0,
            idle_heartbeat_ns: 0,
        }
    }
}

impl PullRequest {
    /// nats-server's `nextReqFromMsg`: an empty body is a batch of 1, a plain number is a batch,
    /// a JSON object is a full request; anything else is a batch of 1. A JSON error or a
    /// heartbeat longer than half the expiry is a 400.
    pub fn from_json(body: &[u8]) -> Result<PullRequest, StatusReply> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Body {
            batch: i64,
            expires: i64,
            no_wait: bool,
            max_bytes: i64,
            idle_heartbeat: i64,
        }
        let body = body.trim_ascii();
        if body.first() != Some(&b'{') {
            let batch = std::str::from_utf8(body)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(1);
            return Ok(PullRequest {
                batch: batch.max(1) as u64,
                ..PullRequest::default()
            });
        }
        let b: Body = serde_json::from_slice(body).map_err(|e| {
            let text = e.to_string();
            let text = text
                .rfind(" at line ")
                .map_or(text.as_str(), |i| &text[..i]);
            StatusReply::BadRequest(text.to_string())
        })?;
        if b.idle_heartbeat > 0 && b.idle_heartbeat.saturating_mul(2) > b.expires {
            return Err(StatusReply::BadRequest("heartbeat value too large".into()));
        }
        Ok(PullRequest {
            batch: b.batch.max(1) as u64,
            expires_ns: b.expires.max(0),
            no_wait: b.no_wait,
            max_bytes: b.max_bytes.max(0) as u64,
            idle_heartbeat_ns: b.idle_heartbeat.max(0),
        })
    }
}

/// A header-only status message nats-server sends to a pull request's reply subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusReply {
    /// `404 No Messages`: a no_wait request found nothing.
    NoMessages,
    /// `408 Request Timeout` with what was left of the request.
    RequestTimeout {
        pending_msgs: u64,
        pending_bytes: u64,
    },
    /// `408 Requests Pending`: a no_wait request behind others that will take the messages.
    RequestsPending,
    /// `409 Exceeded MaxWaiting`.
    ExceededMaxWaiting,
    /// `409 Exceeded MaxRequestBatch of N`.
    ExceededMaxRequestBatch(i64),
    /// `409 Exceeded MaxRequestExpires of 1s` (Go duration).
    ExceededMaxRequestExpires(i64),
    /// `409 Exceeded MaxRequestMaxBytes of N`.
    ExceededMaxRequestMaxBytes(i64),
    /// `409 Message Size Exceeds MaxBytes`: the next message does not fit what is left.
    MessageSizeExceedsMaxBytes {
        pending_msgs: u64,
        pending_bytes: u64,
    },
    /// `409 Consumer Deleted`.
    ConsumerDeleted,
    /// `409 Leadership Change`: the consumer's leader moved to another node (clients pull again).
    LeadershipChange,
    /// `409 Consumer is push based`.
    ConsumerIsPushBased,
    /// `400 Bad Request - <reason>`.
    BadRequest(String),
    /// `100 Idle Heartbeat` with the consumer's last delivery.
    IdleHeartbeat { last: SequencePair },
}

impl StatusReply {
    /// The header block to send (`HMSG` with an empty payload).
    pub fn header_bytes(&self) -> Vec<u8> {
        let pending = |status: &str, msgs: u64, bytes: u64| {
            format!(
                "NATS/1.0 {status}\r\nNats-Pending-Messages: {msgs}\r\nNats-Pending-Bytes: {bytes}\r\n\r\n"
            )
        };
        let plain = |status: &str| format!("NATS/1.0 {status}\r\n\r\n");
        match self {
            StatusReply::NoMessages => plain("404 No Messages"),
            StatusReply::RequestTimeout {
                pending_msgs,
                pending_bytes,
            } => pending("408 Request Timeout", *pending_msgs, *pending_bytes),
            StatusReply::RequestsPending => plain("408 Requests Pending"),
            StatusReply::ExceededMaxWaiting => plain("409 Exceeded MaxWaiting"),
            StatusReply::ExceededMaxRequestBatch(n) => {
                plain(&format!("409 Exceeded MaxRequestBatch of {n}"))
            }
            StatusReply::ExceededMaxRequestExpires(ns) => plain(&format!(
                "409 Exceeded MaxRequestExpires of {}",
                go_duration(*ns)
            )),
            StatusReply::ExceededMaxRequestMaxBytes(n) => {
                plain(&format!("409 Exceeded MaxRequestMaxBytes of {n}"))
            }
            StatusReply::MessageSizeExceedsMaxBytes {
                pending_msgs,
                pending_bytes,
            } => pending(
                "409 Message Size Exceeds MaxBytes",
                *pending_msgs,
                *pending_bytes,
            ),
            StatusReply::ConsumerDeleted => plain("409 Consumer Deleted"),
            StatusReply::LeadershipChange => plain("409 Leadership Change"),
            StatusReply::ConsumerIsPushBased => plain("409 Consumer is push based"),
            StatusReply::BadRequest(reason) => plain(&format!("400 Bad Request - {reason}")),
            StatusReply::IdleHeartbeat { last } => format!(
                "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: {}\r\nNats-Last-Stream: {}\r\n\r\n",
                last.consumer_seq, last.stream_seq
            ),
        }
        .into_bytes()
    }
}

/// A pull request waiting for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingRequest {
    pub reply: String,
    /// Messages still wanted.
    pub remaining: u64,
    /// Bytes still allowed (meaningful when `max_bytes` was set).
    pub remaining_bytes: u64,
    pub has_byte_budget: bool,
    pub no_wait: bool,
    pub expires_at_ns: Option<i64>,
    pub heartbeat_ns: i64,
    pub next_heartbeat_ns: Option<i64>,
    /// Messages delivered to it so far.
    pub delivered: u64,
}

impl WaitingRequest {
    fn timeout(&self) -> StatusReply {
        StatusReply::RequestTimeout {
            pending_msgs: self.remaining,
            pending_bytes: self.remaining_bytes,
        }
    }
}

/// Where the host sends the next message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextWaiting {
    /// The reply subject to deliver to; None when no waiting request can take the message.
    pub reply: Option<String>,
    /// Requests that had to be closed on the way (message larger than their byte budget).
    pub closed: Vec<(String, StatusReply)>,
}

/// The FIFO of a pull consumer's waiting requests, bounded by `max_waiting`. Requests take
/// messages in turn (a request that still wants more goes to the back).
#[derive(Debug, Clone)]
pub struct WaitingQueue {
    queue: VecDeque<WaitingRequest>,
    max_waiting: usize,
    max_batch: i64,
    max_expires: i64,
    max_bytes: i64,
}

impl WaitingQueue {
    /// The queue of a pull consumer with (validated) `config`.
    pub fn new(config: &ConsumerConfig) -> WaitingQueue {
        WaitingQueue {
            queue: VecDeque::new(),
            max_waiting: usize::try_from(config.max_waiting.max(1)).unwrap_or(usize::MAX),
            max_batch: config.max_batch,
            max_expires: config.max_expires,
            max_bytes: config.max_bytes,
        }
    }

    /// Takes the limits of an updated config (max_waiting cannot change).
    pub fn update_limits(&mut self, config: &ConsumerConfig) {
        self.max_batch = config.max_batch;
        self.max_expires = config.max_expires;
        self.max_bytes = config.max_bytes;
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
    pub fn requests(&self) -> impl Iterator<Item = &WaitingRequest> {
        self.queue.iter()
    }

    /// Queues a request received at `now_ns` with reply subject `reply`, or says why not, as
    /// nats-server's `processNextMsgRequest`. `available` is what the consumer could deliver
    /// now ([`Consumer::num_available`](crate::Consumer::num_available)). Expired requests
    /// are closed first when the queue is full; their replies come back in `Ok`.
    pub fn push(
        &mut self,
        req: PullRequest,
        reply: &str,
        now_ns: i64,
        available: u64,
    ) -> Result<Vec<(String, StatusReply)>, StatusReply> {
        if self.max_batch > 0 && req.batch > self.max_batch as u64 {
            return Err(StatusReply::ExceededMaxRequestBatch(self.max_batch));
        }
        if req.expires_ns > 0 && self.max_expires > 0 && req.expires_ns > self.max_expires {
            return Err(StatusReply::ExceededMaxRequestExpires(self.max_expires));
        }
        if req.max_bytes > 0 && self.max_bytes > 0 && req.max_bytes > self.max_bytes as u64 {
            return Err(StatusReply::ExceededMaxRequestMaxBytes(self.max_bytes));
        }
        let mut closed = Vec::new();
        if self.queue.len() >= self.max_waiting {
            closed = self.expire_requests(now_ns);
        }
        if req.no_wait {
            if available == 0 && req.expires_ns == 0 {
                return Err(StatusReply::NoMessages);
            }
            let wanted: u64 = self.queue.iter().map(|w| w.remaining).sum();
            if available > 0 && available < wanted {
                return Err(StatusReply::RequestsPending);
            }
        }
        if self.queue.len() >= self.max_waiting {
            return Err(StatusReply::ExceededMaxWaiting);
        }
        let hb = req.idle_heartbeat_ns;
        self.queue.push_back(WaitingRequest {
            reply: reply.to_string(),
            remaining: req.batch,
            remaining_bytes: req.max_bytes,
            has_byte_budget: req.max_bytes > 0,
            no_wait: req.no_wait,
            expires_at_ns: (req.expires_ns > 0).then(|| now_ns.saturating_add(req.expires_ns)),
            heartbeat_ns: hb,
            next_heartbeat_ns: (hb > 0).then(|| now_ns.saturating_add(hb)),
            delivered: 0,
        });
        Ok(closed)
    }

    /// Picks the request that receives a message of `size` bytes (subject + ack reply +
    /// headers + payload, as nats-server counts it) at `now_ns`, charging its batch and byte
    /// budget. Requests whose remaining bytes cannot hold the message are closed with 409.
    pub fn next_waiting(&mut self, size: u64, now_ns: i64) -> NextWaiting {
        let mut closed = Vec::new();
        while let Some(mut w) = self.queue.pop_front() {
            if w.expires_at_ns.is_some_and(|t| t <= now_ns) {
                closed.push((w.reply.clone(), w.timeout()));
                continue;
            }
            if w.has_byte_budget && size > w.remaining_bytes {
                let status = StatusReply::MessageSizeExceedsMaxBytes {
                    pending_msgs: w.remaining,
                    pending_bytes: w.remaining_bytes,
                };
                closed.push((w.reply.clone(), status));
                continue;
            }
            w.remaining -= 1;
            w.delivered += 1;
            if w.has_byte_budget {
                w.remaining_bytes -= size;
            }
            if w.heartbeat_ns > 0 {
                w.next_heartbeat_ns = Some(now_ns.saturating_add(w.heartbeat_ns));
            }
            let reply = w.reply.clone();
            let spent = w.has_byte_budget && w.remaining_bytes == 0;
            if w.remaining > 0 && !spent {
                self.queue.push_back(w);
            }
            return NextWaiting {
                reply: Some(reply),
                closed,
            };
        }
        NextWaiting {
            reply: None,
            closed,
        }
    }

    /// The consumer has nothing more to deliver now: no_wait requests end. nats-server 2.9
    /// closes those that received messages with 408; one that received nothing and has no
    /// expiry gets 404 (it cannot be left waiting).
    pub fn end_of_messages(&mut self) -> Vec<(String, StatusReply)> {
        let mut out = Vec::new();
        self.queue.retain(|w| {
            if !w.no_wait {
                return true;
            }
            if w.delivered > 0 {
                out.push((w.reply.clone(), w.timeout()));
                return false;
            }
            if w.expires_at_ns.is_none() {
                out.push((w.reply.clone(), StatusReply::NoMessages));
                return false;
            }
            true
        });
        out
    }

    fn expire_requests(&mut self, now_ns: i64) -> Vec<(String, StatusReply)> {
        let mut out = Vec::new();
        self.queue.retain(|w| {
            if w.expires_at_ns.is_some_and(|t| t <= now_ns) {
                out.push((w.reply.clone(), w.timeout()));
                return false;
            }
            true
        });
        out
    }

    /// Closes expired requests with 408 and emits the idle heartbeats due by `now_ns`
    /// (`last` is the consumer's last delivery, carried in the heartbeat headers).
    pub fn expire(&mut self, now_ns: i64, last: SequencePair) -> Vec<(String, StatusReply)> {
        let mut out = self.expire_requests(now_ns);
        for w in &mut self.queue {
            if let Some(t) = w.next_heartbeat_ns
                && t <= now_ns
            {
                out.push((w.reply.clone(), StatusReply::IdleHeartbeat { last }));
                w.next_heartbeat_ns = Some(now_ns.saturating_add(w.heartbeat_ns));
            }
        }
        out
    }

    /// The next expiry or heartbeat, for the host's timer.
    pub fn next_deadline(&self) -> Option<i64> {
        self.queue
            .iter()
            .flat_map(|w| [w.expires_at_ns, w.next_heartbeat_ns])
            .flatten()
            .min()
    }

    /// Removes every request with the same status (409 Consumer Deleted when the consumer
    /// goes).
    pub fn close_all(&mut self, status: &StatusReply) -> Vec<(String, StatusReply)> {
        self.queue
            .drain(..)
            .map(|w| (w.reply, status.clone()))
            .collect()
    }
}

/// The reply subject of a delivery, nats-server 2.9's format (which every client parses):
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>`.
pub fn ack_reply_subject(
    stream: &str,
    consumer: &str,
    delivery_count: u64,
    stream_seq: u64,
    consumer_seq: u64,
    timestamp_ns: i64,
    pending: u64,
) -> String {
    format!(
        "$JS.ACK.{stream}.{consumer}.{delivery_count}.{stream_seq}.{consumer_seq}.{timestamp_ns}.{pending}"
    )
}

/// The tokens of an ack subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckSubject {
    pub stream: String,
    pub consumer: String,
    pub delivery_count: u64,
    pub stream_seq: u64,
    pub consumer_seq: u64,
    pub timestamp_ns: i64,
    pub pending: u64,
}

/// Parses the 2.9 form above and the 2.10+ form with domain and account hash
/// (`$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>[.<token>]`).
pub fn parse_ack_subject(subject: &str) -> Option<AckSubject> {
    let rest = subject.strip_prefix("$JS.ACK.")?;
    let tokens: Vec<&str> = rest.split('.').collect();
    let t = match tokens.len() {
        7 => &tokens[..],
        9 | 10 => &tokens[2..9],
        _ => return None,
    };
    Some(AckSubject {
        stream: t[0].to_string(),
        consumer: t[1].to_string(),
        delivery_count: t[2].parse().ok()?,
        stream_seq: t[3].parse().ok()?,
        consumer_seq: t[4].parse().ok()?,
        timestamp_ns: t[5].parse().ok()?,
        pending: t[6].parse().ok()?,
    })
}

#[cfg(test)]
#[path = "pull_test.rs"]
mod tests;
