//! The JetStream consumer as a pure state machine: where it starts in its stream, what it
//! delivers next (redeliveries first), how acks, naks, terms and progress change its state,
//! ack-wait expiry and max-deliver, and its portable persisted state. No clock, no I/O: every
//! call takes `now_ns`, and the stream is read through [`StreamView`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::consumer_config::{AckPolicy, ConsumerConfig, DeliverPolicy, ReplayPolicy};
use crate::index::MsgMeta;
use crate::stream::Stream;
use crate::subjects::{is_match_all, subject_matches};

/// What a consumer reads of its stream.
pub trait StreamView {
    /// First live sequence (`last_seq + 1` when empty).
    fn first_seq(&self) -> u64;
    fn last_seq(&self) -> u64;
    fn msg_meta(&self, seq: u64) -> Option<MsgMeta>;
    /// First live sequence `>= from` matching `filter` (empty: any).
    fn next_seq_matching(&self, from: u64, filter: &str) -> Option<u64>;
    fn last_seq_for_subject(&self, subject: &[u8]) -> Option<u64>;
    fn first_seq_at_or_after_time(&self, ts: i64) -> Option<u64>;
    /// Live subjects matching `filter` with their message counts.
    fn subjects_matching(&self, filter: &str) -> BTreeMap<String, u64>;

    /// First live sequence `>= from` matching any of `filters` (none: any).
    fn next_seq_matching_any(&self, from: u64, filters: &[String]) -> Option<u64> {
        if filters.is_empty() {
            return self.next_seq_matching(from, "");
        }
        filters
            .iter()
            .filter_map(|f| self.next_seq_matching(from, f))
            .min()
    }

    /// Live messages with `seq >= from` matching any of `filters` (which never overlap).
    fn num_matching_from(&self, from: u64, filters: &[String]) -> u64 {
        if from <= self.first_seq() {
            let all = [String::new()];
            let filters = if filters.is_empty() {
                &all[..]
            } else {
                filters
            };
            return filters
                .iter()
                .map(|f| self.subjects_matching(f).values().sum::<u64>())
                .sum();
        }
        let mut n = 0;
        let mut seq = from;
        while let Some(found) = self.next_seq_matching_any(seq, filters) {
            n += 1;
            seq = found + 1;
        }
        n
    }

    /// The last sequence of every subject matching `filters`, ascending.
    fn last_per_subject_seqs(&self, filters: &[String]) -> Vec<u64> {
        let all = [String::new()];
        let filters = if filters.is_empty() {
            &all[..]
        } else {
            filters
        };
        let mut seqs: Vec<u64> = filters
            .iter()
            .flat_map(|f| self.subjects_matching(f).into_keys())
            .filter_map(|s| self.last_seq_for_subject(s.as_bytes()))
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        seqs
    }
}

impl StreamView for Stream {
    fn first_seq(&self) -> u64 {
        Stream::first_seq(self)
    }
    fn last_seq(&self) -> u64 {
        Stream::last_seq(self)
    }
    fn msg_meta(&self, seq: u64) -> Option<MsgMeta> {
        Stream::msg_meta(self, seq)
    }
    fn next_seq_matching(&self, from: u64, filter: &str) -> Option<u64> {
        Stream::next_seq_matching(self, from, filter)
    }
    fn last_seq_for_subject(&self, subject: &[u8]) -> Option<u64> {
        Stream::last_seq_for_subject(self, subject)
    }
    fn first_seq_at_or_after_time(&self, ts: i64) -> Option<u64> {
        Stream::first_seq_at_or_after_time(self, ts)
    }
    fn subjects_matching(&self, filter: &str) -> BTreeMap<String, u64> {
        Stream::subjects_matching(self, filter)
    }
}

/// A (consumer sequence, stream sequence) pair: `delivered` and `ack_floor` of the info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SequencePair {
    pub consumer_seq: u64,
    pub stream_seq: u64,
}

/// A delivered message awaiting its ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingAck {
    /// Consumer sequence of the first delivery (nats-server keeps it across redeliveries).
    pub consumer_seq: u64,
    /// Deliveries so far (1 after the first).
    pub deliveries: u64,
    pub last_delivered_ns: i64,
    /// When it becomes due for redelivery.
    pub deadline_ns: i64,
    /// Due now (ack wait expired, or nak'd without delay), waiting for a delivery slot.
    pub due: bool,
}

/// Everything a consumer must persist to continue exactly where it was.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerState {
    /// Last delivery: its consumer sequence, and the highest stream sequence delivered.
    pub delivered: SequencePair,
    pub ack_floor: SequencePair,
    /// Unacknowledged deliveries by stream sequence.
    pub pending: BTreeMap<u64, PendingAck>,
    /// Delivered `max_deliver` times and never acknowledged: not redelivered again.
    pub exhausted: BTreeSet<u64>,
    /// deliver_policy last_per_subject: the sequences still to deliver before new messages.
    pub last_per_subject: VecDeque<u64>,
    /// The first sequence new messages are taken from (past the last-per-subject snapshot).
    pub resume_seq: u64,
    pub last_delivered_ns: Option<i64>,
    pub last_ack_ns: Option<i64>,
}

const STATE_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateDecodeError {
    #[error("consumer state is truncated")]
    Truncated,
    #[error("unknown consumer state version {0}")]
    Version(u8),
    #[error("consumer state has {0} trailing bytes")]
    Trailing(usize),
}

impl ConsumerState {
    /// Big-endian layout: version byte, delivered, ack floor, resume, the two optional times
    /// (flag + i64), then counted lists of pending entries (seq, consumer seq, deliveries, last
    /// delivered, deadline, due flag), exhausted sequences and last-per-subject sequences.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.pending.len() * 41);
        out.push(STATE_VERSION);
        for v in [
            self.delivered.consumer_seq,
            self.delivered.stream_seq,
            self.ack_floor.consumer_seq,
            self.ack_floor.stream_seq,
            self.resume_seq,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for t in [self.last_delivered_ns, self.last_ack_ns] {
            out.push(u8::from(t.is_some()));
            out.extend_from_slice(&t.unwrap_or(0).to_be_bytes());
        }
        out.extend_from_slice(&(self.pending.len() as u64).to_be_bytes());
        for (seq, p) in &self.pending {
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&p.consumer_seq.to_be_bytes());
            out.extend_from_slice(&p.deliveries.to_be_bytes());
            out.extend_from_slice(&p.last_delivered_ns.to_be_bytes());
            out.extend_from_slice(&p.deadline_ns.to_be_bytes());
            out.push(u8::from(p.due));
        }
        for list in [
            self.exhausted.iter().copied().collect::<Vec<_>>(),
            self.last_per_subject.iter().copied().collect(),
        ] {
            out.extend_from_slice(&(list.len() as u64).to_be_bytes());
            for seq in list {
                out.extend_from_slice(&seq.to_be_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<ConsumerState, StateDecodeError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != STATE_VERSION {
            return Err(StateDecodeError::Version(version));
        }
        let mut s = ConsumerState {
            delivered: SequencePair {
                consumer_seq: r.u64()?,
                stream_seq: r.u64()?,
            },
            ack_floor: SequencePair {
                consumer_seq: r.u64()?,
                stream_seq: r.u64()?,
            },
            resume_seq: r.u64()?,
            ..ConsumerState::default()
        };
        s.last_delivered_ns = r.opt_i64()?;
        s.last_ack_ns = r.opt_i64()?;
        for _ in 0..r.count(41)? {
            let seq = r.u64()?;
            let p = PendingAck {
                consumer_seq: r.u64()?,
                deliveries: r.u64()?,
                last_delivered_ns: r.i64()?,
                deadline_ns: r.i64()?,
                due: r.u8()? != 0,
            };
            s.pending.insert(seq, p);
        }
        for _ in 0..r.count(8)? {
            s.exhausted.insert(r.u64()?);
        }
        for _ in 0..r.count(8)? {
            s.last_per_subject.push_back(r.u64()?);
        }
        if !r.0.is_empty() {
            return Err(StateDecodeError::Trailing(r.0.len()));
        }
        Ok(s)
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], StateDecodeError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(StateDecodeError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, StateDecodeError> {
        Ok(self.take::<1>()?[0])
    }
    fn u64(&mut self) -> Result<u64, StateDecodeError> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, StateDecodeError> {
        Ok(i64::from_be_bytes(self.take()?))
    }
    fn opt_i64(&mut self) -> Result<Option<i64>, StateDecodeError> {
        let set = self.u8()? != 0;
        let v = self.i64()?;
        Ok(set.then_some(v))
    }
    /// A list length, refused when the remaining bytes cannot hold it (no allocation driven
    /// by a corrupt count).
    fn count(&mut self, item_len: usize) -> Result<u64, StateDecodeError> {
        let n = self.u64()?;
        if n > (self.0.len() / item_len) as u64 {
            return Err(StateDecodeError::Truncated);
        }
        Ok(n)
    }
}

/// One message to send to the consumer's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub stream_seq: u64,
    /// The delivery sequence: increments on every delivery, redeliveries included.
    pub consumer_seq: u64,
    /// 1 for the first delivery.
    pub delivery_count: u64,
    /// Messages still pending for the consumer after this one (the ack subject's last token).
    pub pending: u64,
    pub subject: Bytes,
    /// The message's stored timestamp (the ack subject's timestamp token).
    pub timestamp_ns: i64,
    /// Its stored size (what `rate_limit_bps` counts).
    pub size: u64,
}

/// An ack payload, as clients send them to the ack subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckKind {
    /// `+ACK`, `+OK` or an empty payload.
    Ack,
    /// `-NAK`, `-NAK {"delay":ns}`.
    Nak { delay_ns: Option<i64> },
    /// `+TERM`, `+TERM reason` (reasons are nats-server 2.10+).
    Term { reason: Option<String> },
    /// `+WPI`: work in progress, restart the ack wait.
    Progress,
    /// `+NXT`, `+NXT <pull request>`: ack, then treat the ack's reply subject as a pull request
    /// with this body (see `PullRequest::from_json`).
    Next { request: Vec<u8> },
}

impl AckKind {
    /// nats-server's dispatch on the payload; None for a payload it ignores.
    pub fn parse(payload: &[u8]) -> Option<AckKind> {
        if payload.is_empty() || payload == b"+ACK" || payload == b"+OK" {
            return Some(AckKind::Ack);
        }
        if let Some(rest) = payload.strip_prefix(b"+NXT") {
            return Some(AckKind::Next {
                request: rest.trim_ascii().to_vec(),
            });
        }
        if let Some(rest) = payload.strip_prefix(b"-NAK") {
            #[derive(serde::Deserialize)]
            struct Delay {
                delay: i64,
            }
            let delay_ns = serde_json::from_slice::<Delay>(rest.trim_ascii())
                .ok()
                .map(|d| d.delay)
                .filter(|d| *d > 0);
            return Some(AckKind::Nak { delay_ns });
        }
        if payload == b"+WPI" {
            return Some(AckKind::Progress);
        }
        if let Some(rest) = payload.strip_prefix(b"+TERM") {
            let reason = String::from_utf8_lossy(rest.trim_ascii()).into_owned();
            return Some(AckKind::Term {
                reason: (!reason.is_empty()).then_some(reason),
            });
        }
        None
    }
}

/// An advisory the consumer asks its host to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advisory {
    /// A message reached `max_deliver` without an ack.
    MaxDeliveries { stream_seq: u64, deliveries: u64 },
    /// `+TERM`.
    Terminated {
        stream_seq: u64,
        consumer_seq: u64,
        deliveries: u64,
        reason: Option<String>,
    },
    /// An ack of a consumer with `sample_freq` (a candidate: the host samples by the frequency):
    /// nats-server's `consumer_ack` metric, with the time from delivery to ack.
    AckSample {
        stream_seq: u64,
        consumer_seq: u64,
        deliveries: u64,
        ack_time_ns: i64,
    },
}

impl Advisory {
    /// `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>` or `...MSG_TERMINATED...`.
    pub fn subject(&self, stream: &str, consumer: &str) -> String {
        let kind = match self {
            Advisory::MaxDeliveries { .. } => "MAX_DELIVERIES",
            Advisory::Terminated { .. } => "MSG_TERMINATED",
            Advisory::AckSample { .. } => {
                return format!("$JS.EVENT.METRIC.CONSUMER.ACK.{stream}.{consumer}");
            }
        };
        format!("$JS.EVENT.ADVISORY.CONSUMER.{kind}.{stream}.{consumer}")
    }

    /// The advisory body as nats-server writes it; `id` and the time are the host's.
    pub fn to_json(&self, stream: &str, consumer: &str, id: &str, now_ns: i64) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let head = |kind: &str| {
            format!(
                "{{\"type\":\"io.nats.jetstream.{kind}\",\"id\":{},\"timestamp\":{},\"stream\":{},\"consumer\":{}",
                q(id),
                q(&crate::info::rfc3339_nanos(now_ns)),
                q(stream),
                q(consumer)
            )
        };
        match self {
            Advisory::MaxDeliveries {
                stream_seq,
                deliveries,
            } => format!(
                "{},\"stream_seq\":{stream_seq},\"deliveries\":{deliveries}}}",
                head("advisory.v1.max_deliver")
            ),
            Advisory::Terminated {
                stream_seq,
                consumer_seq,
                deliveries,
                reason,
            } => {
                let mut out = format!(
                    "{},\"consumer_seq\":{consumer_seq},\"stream_seq\":{stream_seq},\"deliveries\":{deliveries}",
                    head("advisory.v1.terminated")
                );
                if let Some(r) = reason {
                    out.push_str(&format!(",\"reason\":{}", q(r)));
                }
                out.push('}');
                out
            }
            Advisory::AckSample {
                stream_seq,
                consumer_seq,
                deliveries,
                ack_time_ns,
            } => format!(
                "{},\"consumer_seq\":{consumer_seq},\"stream_seq\":{stream_seq},\"ack_time\":{ack_time_ns},\"deliveries\":{deliveries}}}",
                head("metric.v1.consumer_ack")
            ),
        }
    }
}

/// What an ack changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AckOutcome {
    /// Stream sequences this consumer no longer needs (acked or terminated): candidates for
    /// removal under interest and work-queue retention.
    pub acked: Vec<u64>,
    pub ack_floor_moved: bool,
    pub advisories: Vec<Advisory>,
}

/// Undo record of the last delivery (see [`Consumer::cancel_last_delivery`]).
#[derive(Debug, Clone)]
struct Undo {
    delivered: SequencePair,
    ack_floor: SequencePair,
    last_delivered_ns: Option<i64>,
    pending_before: Option<PendingAck>,
    stream_seq: u64,
    popped_last_per_subject: bool,
    pending_cache: Option<(u64, u64)>,
}

/// A consumer: its validated config and its state.
#[derive(Debug, Clone)]
pub struct Consumer {
    config: ConsumerConfig,
    filters: Vec<String>,
    created_ns: i64,
    state: ConsumerState,
    /// Ack-wait deadlines of the pending entries that are not due: (deadline, stream seq).
    timers: BTreeSet<(i64, u64)>,
    /// Pending entries due for redelivery, by stream sequence.
    due: BTreeSet<u64>,
    advisories: Vec<Advisory>,
    /// Messages pending as of a stream last sequence: (last_seq, count).
    pending_cache: Option<(u64, u64)>,
    undo: Option<Undo>,
    /// Replay policy `original`: when the last message went out and its stored time.
    replay_last: Option<(i64, i64)>,
    /// Replay pacing or the rate limit: when the next message may go out (held until then).
    hold_until: Option<i64>,
    /// `rate_limit_bps`: bytes that may go out now, and when they were counted.
    rate_tokens: Option<(f64, i64)>,
}

/// How many bytes a rate-limited consumer may send at once (nats-server's burst: the largest
/// message, by default the 1 MiB payload limit).
const RATE_BURST_BYTES: f64 = 1_048_576.0;

/// Gaps between stored times up to this are not waited for (nats-server's threshold).
const REPLAY_MIN_GAP_NS: i64 = 1_000_000;

impl Consumer {
    /// A new consumer over `view`, positioned by its deliver policy. `config` must already be
    /// validated ([`ConsumerConfig::validate_and_default`]).
    pub fn new(config: ConsumerConfig, created_ns: i64, view: &impl StreamView) -> Consumer {
        let filters = config.filters();
        let first = view.first_seq().max(1);
        let last = view.last_seq();
        let mut state = ConsumerState::default();
        let start = match config.deliver_policy {
            DeliverPolicy::All => first,
            DeliverPolicy::Last => {
                if filters.is_empty() {
                    last.max(first)
                } else {
                    filters
                        .iter()
                        .filter_map(|f| last_matching(view, f))
                        .max()
                        .unwrap_or(last + 1)
                }
            }
            DeliverPolicy::New => last + 1,
            DeliverPolicy::ByStartSequence => config.opt_start_seq,
            DeliverPolicy::ByStartTime => config
                .opt_start_time_ns()
                .and_then(|t| view.first_seq_at_or_after_time(t))
                .unwrap_or(last + 1),
            DeliverPolicy::LastPerSubject => {
                state.last_per_subject = view.last_per_subject_seqs(&filters).into();
                state.resume_seq = last + 1;
                state.last_per_subject.front().copied().unwrap_or(last + 1)
            }
        };
        // nats-server clamps the start into [first, last + 1].
        let start = start.clamp(first, last + 1);
        state.delivered.stream_seq = start - 1;
        state.ack_floor.stream_seq = start - 1;
        Consumer::restore(config, created_ns, state)
    }

    /// A consumer continuing from persisted state.
    pub fn restore(config: ConsumerConfig, created_ns: i64, state: ConsumerState) -> Consumer {
        let mut c = Consumer {
            filters: config.filters(),
            config,
            created_ns,
            state,
            timers: BTreeSet::new(),
            due: BTreeSet::new(),
            advisories: Vec::new(),
            pending_cache: None,
            undo: None,
            replay_last: None,
            hold_until: None,
            rate_tokens: None,
        };
        for (seq, p) in &c.state.pending {
            if p.due {
                c.due.insert(*seq);
            } else {
                c.timers.insert((p.deadline_ns, *seq));
            }
        }
        c
    }

    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }
    pub fn state(&self) -> &ConsumerState {
        &self.state
    }
    pub fn created_ns(&self) -> i64 {
        self.created_ns
    }

    /// Takes a new config that passed [`ConsumerConfig::check_update`]. Pending deadlines keep
    /// the ack wait they were given.
    pub fn update_config(&mut self, config: ConsumerConfig) {
        self.filters = config.filters();
        self.config = config;
        self.pending_cache = None;
    }

    fn tracks_acks(&self) -> bool {
        self.config.ack_policy != AckPolicy::None
    }

    fn matches(&self, subject: &[u8]) -> bool {
        self.filters.is_empty()
            || self
                .filters
                .iter()
                .any(|f| is_match_all(f.as_bytes()) || subject_matches(f.as_bytes(), subject))
    }

    /// Ack wait for a message delivered `deliveries` times: the backoff step, else ack_wait.
    fn ack_wait_for(&self, deliveries: u64) -> i64 {
        let b = &self.config.backoff;
        if b.is_empty() {
            return self.config.ack_wait;
        }
        let i = usize::try_from(deliveries.saturating_sub(1)).unwrap_or(usize::MAX);
        b[i.min(b.len() - 1)]
    }

    /// The first stream sequence new messages come from.
    fn next_new_seq(&self) -> u64 {
        (self.state.delivered.stream_seq + 1).max(self.state.resume_seq)
    }

    /// Messages not yet delivered (the info's `num_pending`), counted exactly.
    pub fn num_pending(&self, view: &impl StreamView) -> u64 {
        let lps = self
            .state
            .last_per_subject
            .iter()
            .filter(|s| view.msg_meta(**s).is_some())
            .count() as u64;
        lps + view.num_matching_from(self.next_new_seq(), &self.filters)
    }

    /// [`num_pending`](Self::num_pending), kept up to date incrementally as the stream grows.
    fn cached_pending(&mut self, view: &impl StreamView) -> u64 {
        let last = view.last_seq();
        let n = match self.pending_cache {
            Some((seen, n)) if seen == last => n,
            Some((seen, n)) if seen < last => {
                let from = (seen + 1).max(self.next_new_seq());
                n + view.num_matching_from(from, &self.filters)
            }
            _ => self.num_pending(view),
        };
        self.pending_cache = Some((last, n));
        n
    }

    /// Messages ready to go now: not yet delivered, plus due redeliveries (a no_wait pull
    /// request is answered 404 when this is zero).
    pub fn num_available(&mut self, view: &impl StreamView) -> u64 {
        self.cached_pending(view) + self.due.len() as u64
    }

    /// The next message to deliver as of `now_ns`: a due redelivery first, else the next new
    /// message matching the filters, unless `max_ack_pending` deliveries await their acks.
    /// Ack-wait expiries up to `now_ns` are processed first; their advisories are kept for
    /// [`take_advisories`](Self::take_advisories).
    ///
    /// With replay policy `original`, a message whose stored time is more than 1 ms after the
    /// previous delivered one's is held until that gap has passed since the previous delivery
    /// (as nats-server paces it); with `rate_limit_bps`, a message is held until the limit
    /// allows its size. [`hold_until`](Self::hold_until) says until when.
    pub fn next_delivery(&mut self, view: &impl StreamView, now_ns: i64) -> Option<Delivery> {
        let delivery = self.pick(view, now_ns)?;
        let replay = self.config.replay_policy == ReplayPolicy::Original;
        if replay && let Some((sent_ns, stored_ns)) = self.replay_last {
            let gap = delivery.timestamp_ns.saturating_sub(stored_ns);
            let due = sent_ns.saturating_add(gap);
            if gap > REPLAY_MIN_GAP_NS && now_ns < due {
                return self.hold(due);
            }
        }
        if let Some(due) = self.rate_limited(delivery.size, now_ns) {
            return self.hold(due);
        }
        if replay {
            self.replay_last = Some((now_ns, delivery.timestamp_ns));
        }
        self.hold_until = None;
        Some(delivery)
    }

    /// Takes back the pick and holds the next delivery until `due`.
    fn hold(&mut self, due: i64) -> Option<Delivery> {
        self.cancel_last_delivery();
        self.hold_until = Some(due);
        None
    }

    /// `rate_limit_bps` as a token bucket of bytes: spends `size` and answers `None` when the
    /// limit allows it now, else when it will.
    fn rate_limited(&mut self, size: u64, now_ns: i64) -> Option<i64> {
        let bps = self.config.rate_limit_bps;
        if bps == 0 {
            return None;
        }
        let per_ns = bps as f64 / 8.0 / 1e9;
        let (tokens, at) = self.rate_tokens.unwrap_or((RATE_BURST_BYTES, now_ns));
        let tokens = (tokens + (now_ns.saturating_sub(at)) as f64 * per_ns).min(RATE_BURST_BYTES);
        let size = (size as f64).min(RATE_BURST_BYTES);
        if tokens >= size {
            self.rate_tokens = Some((tokens - size, now_ns));
            return None;
        }
        self.rate_tokens = Some((tokens, now_ns));
        let wait_ns = ((size - tokens) / per_ns).ceil() as i64;
        Some(now_ns.saturating_add(wait_ns.max(1)))
    }

    /// Whether `max_ack_pending` deliveries await their acks, so no new message goes out (a
    /// waiting pull request then waits for acks or its expiry, as in nats-server, rather than
    /// ending as at the end of the messages).
    pub fn at_max_ack_pending(&self) -> bool {
        let max = self.config.max_ack_pending;
        self.tracks_acks() && max > 0 && self.state.pending.len() as u64 >= max as u64
    }

    /// When the held next message may be delivered (replay pacing or the rate limit), if one is.
    pub fn hold_until(&self) -> Option<i64> {
        self.hold_until
    }

    fn pick(&mut self, view: &impl StreamView, now_ns: i64) -> Option<Delivery> {
        self.expire_into(now_ns);
        self.undo = None;
        while let Some(seq) = self.due.first().copied() {
            let Some(meta) = view.msg_meta(seq) else {
                self.drop_pending(seq);
                continue;
            };
            return Some(self.redeliver(meta, view, now_ns));
        }
        if self.at_max_ack_pending() {
            return None;
        }
        let pending_cache = self.pending_cache;
        let pending = self.cached_pending(view);
        while let Some(seq) = self.state.last_per_subject.front().copied() {
            if let Some(meta) = view.msg_meta(seq) {
                self.state.last_per_subject.pop_front();
                return Some(self.deliver_new(meta, pending, true, pending_cache, now_ns));
            }
            self.state.last_per_subject.pop_front();
        }
        let seq = view.next_seq_matching_any(self.next_new_seq(), &self.filters)?;
        let meta = view.msg_meta(seq)?;
        Some(self.deliver_new(meta, pending, false, pending_cache, now_ns))
    }

    fn deliver_new(
        &mut self,
        meta: MsgMeta,
        pending: u64,
        from_last_per_subject: bool,
        pending_cache: Option<(u64, u64)>,
        now_ns: i64,
    ) -> Delivery {
        let previous = self.state.delivered;
        self.undo = Some(Undo {
            delivered: previous,
            ack_floor: self.state.ack_floor,
            last_delivered_ns: self.state.last_delivered_ns,
            pending_before: None,
            stream_seq: meta.seq,
            popped_last_per_subject: from_last_per_subject,
            pending_cache,
        });
        let pending = pending.saturating_sub(1);
        if let Some((seen, _)) = self.pending_cache {
            self.pending_cache = Some((seen, pending));
        }
        let consumer_seq = previous.consumer_seq + 1;
        self.state.delivered = SequencePair {
            consumer_seq,
            stream_seq: meta.seq.max(previous.stream_seq),
        };
        self.state.last_delivered_ns = Some(now_ns);
        if self.tracks_acks() {
            let deadline_ns = now_ns.saturating_add(self.ack_wait_for(1));
            self.state.pending.insert(
                meta.seq,
                PendingAck {
                    consumer_seq,
                    deliveries: 1,
                    last_delivered_ns: now_ns,
                    deadline_ns,
                    due: false,
                },
            );
            self.timers.insert((deadline_ns, meta.seq));
        } else {
            self.state.ack_floor = self.state.delivered;
        }
        Delivery {
            stream_seq: meta.seq,
            consumer_seq,
            delivery_count: 1,
            pending,
            size: meta.size,
            subject: meta.subject,
            timestamp_ns: meta.timestamp_ns,
        }
    }

    fn redeliver(&mut self, meta: MsgMeta, view: &impl StreamView, now_ns: i64) -> Delivery {
        let seq = meta.seq;
        let pending = self.cached_pending(view);
        let before = self.state.pending.get(&seq).copied();
        self.undo = Some(Undo {
            delivered: self.state.delivered,
            ack_floor: self.state.ack_floor,
            last_delivered_ns: self.state.last_delivered_ns,
            pending_before: before,
            stream_seq: seq,
            popped_last_per_subject: false,
            pending_cache: self.pending_cache,
        });
        self.due.remove(&seq);
        let deliveries = before.map_or(1, |p| p.deliveries) + 1;
        let deadline_ns = now_ns.saturating_add(self.ack_wait_for(deliveries));
        if let Some(p) = self.state.pending.get_mut(&seq) {
            p.deliveries = deliveries;
            p.last_delivered_ns = now_ns;
            p.deadline_ns = deadline_ns;
            p.due = false;
        }
        self.timers.insert((deadline_ns, seq));
        self.state.delivered.consumer_seq += 1;
        self.state.last_delivered_ns = Some(now_ns);
        Delivery {
            stream_seq: seq,
            consumer_seq: self.state.delivered.consumer_seq,
            delivery_count: deliveries,
            pending,
            size: meta.size,
            subject: meta.subject,
            timestamp_ns: meta.timestamp_ns,
        }
    }

    /// Takes back the delivery [`next_delivery`](Self::next_delivery) just returned, when the
    /// host could not send it (no waiting pull request could take its size). A no-op if
    /// anything else happened since.
    pub fn cancel_last_delivery(&mut self) {
        let Some(u) = self.undo.take() else {
            return;
        };
        self.state.delivered = u.delivered;
        self.state.ack_floor = u.ack_floor;
        self.state.last_delivered_ns = u.last_delivered_ns;
        self.pending_cache = u.pending_cache;
        if let Some(p) = self.state.pending.get(&u.stream_seq) {
            self.timers.remove(&(p.deadline_ns, u.stream_seq));
        }
        match u.pending_before {
            None => {
                self.state.pending.remove(&u.stream_seq);
            }
            Some(p) => {
                self.state.pending.insert(u.stream_seq, p);
                self.due.insert(u.stream_seq);
            }
        }
        if u.popped_last_per_subject {
            self.state.last_per_subject.push_front(u.stream_seq);
        }
    }

    /// Moves pending entries whose ack wait ended by `now_ns` to redelivery; those already
    /// delivered `max_deliver` times leave pending and produce a MaxDeliveries advisory.
    /// Returns every advisory not yet taken.
    pub fn expire(&mut self, now_ns: i64) -> Vec<Advisory> {
        self.expire_into(now_ns);
        self.take_advisories()
    }

    /// Advisories produced by deliveries and expiries since the last call.
    pub fn take_advisories(&mut self) -> Vec<Advisory> {
        std::mem::take(&mut self.advisories)
    }

    fn expire_into(&mut self, now_ns: i64) {
        while let Some(&(deadline, seq)) = self.timers.first() {
            if deadline > now_ns {
                break;
            }
            self.timers.pop_first();
            self.make_due(seq);
        }
    }

    /// The earliest ack-wait deadline, for the host's timer.
    pub fn next_deadline(&self) -> Option<i64> {
        self.timers.first().map(|t| t.0)
    }

    /// Queues a pending entry for redelivery, or retires it at max_deliver.
    fn make_due(&mut self, seq: u64) {
        let Some(p) = self.state.pending.get_mut(&seq) else {
            return;
        };
        let max = self.config.max_deliver;
        if max > 0 && p.deliveries >= max as u64 {
            let deliveries = p.deliveries;
            self.drop_pending(seq);
            self.state.exhausted.insert(seq);
            self.advisories.push(Advisory::MaxDeliveries {
                stream_seq: seq,
                deliveries,
            });
            return;
        }
        p.due = true;
        self.due.insert(seq);
    }

    /// Removes a pending entry and its timer or due slot (floor not touched).
    fn drop_pending(&mut self, seq: u64) -> Option<PendingAck> {
        let p = self.state.pending.remove(&seq)?;
        self.timers.remove(&(p.deadline_ns, seq));
        self.due.remove(&seq);
        Some(p)
    }

    /// The ack metric for a pending message, when the config samples acks.
    fn sampled(&self, stream_seq: u64, now_ns: i64) -> Option<Advisory> {
        if self.config.sample_freq.is_empty() {
            return None;
        }
        let p = self.state.pending.get(&stream_seq)?;
        Some(Advisory::AckSample {
            stream_seq,
            consumer_seq: p.consumer_seq,
            deliveries: p.deliveries,
            ack_time_ns: now_ns.saturating_sub(p.last_delivered_ns),
        })
    }

    /// Applies an ack sent to the ack subject of delivery (`stream_seq`, `consumer_seq`).
    /// Acks of unknown or already acknowledged sequences change nothing.
    pub fn ack(
        &mut self,
        kind: &AckKind,
        stream_seq: u64,
        consumer_seq: u64,
        now_ns: i64,
    ) -> AckOutcome {
        let mut out = AckOutcome::default();
        if !self.tracks_acks() {
            return out;
        }
        self.undo = None;
        let floor = self.state.ack_floor;
        match kind {
            AckKind::Ack | AckKind::Next { .. } => {
                self.state.last_ack_ns = Some(now_ns);
                let sampled = self.sampled(stream_seq, now_ns);
                if self.config.ack_policy == AckPolicy::All {
                    self.ack_all_up_to(stream_seq, consumer_seq, &mut out);
                } else if self.drop_pending(stream_seq).is_some()
                    || self.state.exhausted.remove(&stream_seq)
                {
                    out.acked.push(stream_seq);
                }
                out.advisories.extend(sampled);
            }
            AckKind::Term { reason } => {
                self.state.last_ack_ns = Some(now_ns);
                let deliveries = match self.drop_pending(stream_seq) {
                    Some(p) => Some(p.deliveries),
                    None => self.state.exhausted.remove(&stream_seq).then_some(0),
                };
                if let Some(deliveries) = deliveries {
                    out.acked.push(stream_seq);
                    out.advisories.push(Advisory::Terminated {
                        stream_seq,
                        consumer_seq,
                        deliveries: deliveries.max(1),
                        reason: reason.clone(),
                    });
                }
            }
            AckKind::Nak { delay_ns } => {
                let Some(p) = self.state.pending.get(&stream_seq).copied() else {
                    return out;
                };
                let delay = delay_ns.or_else(|| {
                    let b = &self.config.backoff;
                    let i = usize::try_from(p.deliveries).unwrap_or(usize::MAX);
                    (!b.is_empty()).then(|| b[i.min(b.len() - 1)])
                });
                self.timers.remove(&(p.deadline_ns, stream_seq));
                self.due.remove(&stream_seq);
                match delay {
                    Some(d) if d > 0 => self.set_deadline(stream_seq, now_ns.saturating_add(d)),
                    _ => {
                        self.make_due(stream_seq);
                        out.advisories.append(&mut self.advisories);
                    }
                }
            }
            AckKind::Progress => {
                if let Some(p) = self.state.pending.get(&stream_seq).copied() {
                    self.timers.remove(&(p.deadline_ns, stream_seq));
                    self.due.remove(&stream_seq);
                    let wait = self.ack_wait_for(p.deliveries);
                    self.set_deadline(stream_seq, now_ns.saturating_add(wait));
                }
            }
        }
        self.update_floor();
        out.ack_floor_moved = self.state.ack_floor != floor;
        out
    }

    fn set_deadline(&mut self, seq: u64, deadline_ns: i64) {
        if let Some(p) = self.state.pending.get_mut(&seq) {
            p.deadline_ns = deadline_ns;
            p.due = false;
            self.timers.insert((deadline_ns, seq));
        }
    }

    fn ack_all_up_to(&mut self, stream_seq: u64, consumer_seq: u64, out: &mut AckOutcome) {
        if stream_seq <= self.state.ack_floor.stream_seq {
            return;
        }
        let acked: Vec<u64> = self
            .state
            .pending
            .range(..=stream_seq)
            .map(|e| *e.0)
            .collect();
        for seq in &acked {
            self.drop_pending(*seq);
        }
        let retired: Vec<u64> = self.state.exhausted.range(..=stream_seq).copied().collect();
        for seq in &retired {
            self.state.exhausted.remove(seq);
        }
        out.acked.extend(acked);
        out.acked.extend(retired);
        out.acked.sort_unstable();
        self.state.ack_floor = SequencePair {
            consumer_seq: consumer_seq.min(self.state.delivered.consumer_seq),
            stream_seq: stream_seq.min(self.state.delivered.stream_seq),
        };
    }

    /// Everything below the floor is acknowledged or given up: with nothing pending the floor
    /// is the last delivery, else just below the oldest pending one. It never moves back.
    fn update_floor(&mut self) {
        let candidate = match self.state.pending.first_key_value() {
            None => self.state.delivered,
            Some((seq, p)) => SequencePair {
                consumer_seq: p.consumer_seq - 1,
                stream_seq: seq - 1,
            },
        };
        if candidate.stream_seq > self.state.ack_floor.stream_seq {
            self.state.ack_floor.stream_seq = candidate.stream_seq;
        }
        if candidate.consumer_seq > self.state.ack_floor.consumer_seq {
            self.state.ack_floor.consumer_seq = candidate.consumer_seq;
        }
    }

    /// Whether this consumer still needs message `stream_seq` (on `subject`): a message of an
    /// interest or work-queue stream can go when no consumer needs it.
    pub fn needs(&self, stream_seq: u64, subject: &[u8]) -> bool {
        if stream_seq <= self.state.ack_floor.stream_seq || !self.matches(subject) {
            return false;
        }
        if self.state.pending.contains_key(&stream_seq)
            || self.state.exhausted.contains(&stream_seq)
        {
            return true;
        }
        if self.state.last_per_subject.contains(&stream_seq) {
            return true;
        }
        stream_seq >= self.next_new_seq()
    }

    /// Messages removed from the stream under the consumer (purge, limits, deletes): their
    /// pending entries go and the ack floor moves past them.
    pub fn on_stream_removed(&mut self, seqs: &[u64]) {
        self.undo = None;
        let next = self.next_new_seq();
        for &seq in seqs {
            self.drop_pending(seq);
            self.state.exhausted.remove(&seq);
            if seq >= next {
                self.pending_cache = None;
            }
        }
        if !self.state.last_per_subject.is_empty() {
            let gone: BTreeSet<u64> = seqs.iter().copied().collect();
            self.state.last_per_subject.retain(|s| !gone.contains(s));
            self.pending_cache = None;
        }
        if self.tracks_acks() {
            self.update_floor();
        }
    }

    /// Deliveries awaiting their ack (`num_ack_pending`).
    pub fn num_ack_pending(&self) -> u64 {
        self.state.pending.len() as u64
    }

    /// Messages delivered more than once and not acknowledged (`num_redelivered`).
    pub fn num_redelivered(&self) -> u64 {
        self.state
            .pending
            .values()
            .filter(|p| p.deliveries > 1)
            .count() as u64
            + self.state.exhausted.len() as u64
    }
}

/// The last sequence matching `filter` (a literal subject or a wildcard).
fn last_matching(view: &impl StreamView, filter: &str) -> Option<u64> {
    if natrix_subject::subject_is_literal(filter.as_bytes()) {
        return view.last_seq_for_subject(filter.as_bytes());
    }
    view.subjects_matching(filter)
        .keys()
        .filter_map(|s| view.last_seq_for_subject(s.as_bytes()))
        .max()
}

#[cfg(test)]
#[path = "consumer_test.rs"]
mod tests;
