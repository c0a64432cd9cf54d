//! `ConsumerConfig` with nats-server's JSON (2.9 field order, plus the 2.10 `filter_subjects` and
//! `metadata`), its defaults and validation (`setConsumerConfigDefaults`, `checkConsumerCfg`),
//! the rules for updating a live consumer, and the create request with the checks between the
//! API subject's tokens and the body. Codes and texts are nats-server 2.9.10's unless noted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::config::{RetentionPolicy, StreamConfig, is_valid_stream_name};
use crate::subjects::subjects_overlap;

/// Default `ack_wait` for explicit and all ack policies: 30 s.
pub const DEFAULT_ACK_WAIT_NS: i64 = 30_000_000_000;
/// Default `max_ack_pending` for explicit and all ack policies.
pub const DEFAULT_MAX_ACK_PENDING: i64 = 1000;
/// Default `max_waiting` of a pull consumer.
pub const DEFAULT_MAX_WAITING: i64 = 512;
/// Default `inactive_threshold` of an ephemeral consumer: 5 s.
pub const DEFAULT_EPHEMERAL_INACTIVE_NS: i64 = 5_000_000_000;
pub const MAX_CONSUMER_DESCRIPTION_LEN: usize = 4096;
const MIN_HEARTBEAT_NS: i64 = 100_000_000;
const MIN_MAX_EXPIRES_NS: i64 = 1_000_000;

/// `deliver_policy`: where a new consumer starts in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliverPolicy {
    #[default]
    All,
    Last,
    New,
    ByStartSequence,
    ByStartTime,
    LastPerSubject,
}

/// `ack_policy`. Go's zero value, and so the default of a bare config, is `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckPolicy {
    #[default]
    None,
    All,
    Explicit,
}

/// `replay_policy`: `original` paces deliveries by the messages' stored times
/// (`Consumer::next_delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayPolicy {
    #[default]
    Instant,
    Original,
}

/// Go's `omitempty`: the zero value is left out.
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A consumer's configuration as the JetStream API carries it. Durations are nanoseconds.
/// Fields are declared in nats-server 2.9's order so that the JSON reads the same.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub durable_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub deliver_policy: DeliverPolicy,
    #[serde(skip_serializing_if = "is_default")]
    pub opt_start_seq: u64,
    /// RFC 3339, as the client sent it (nats-server echoes it in its own format; see
    /// [`ConsumerConfig::opt_start_time_ns`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    pub ack_policy: AckPolicy,
    #[serde(skip_serializing_if = "is_default")]
    pub ack_wait: i64,
    #[serde(skip_serializing_if = "is_default")]
    pub max_deliver: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backoff: Vec<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    /// nats-server 2.10+: several filters, none overlapping.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter_subjects: Vec<String>,
    pub replay_policy: ReplayPolicy,
    #[serde(skip_serializing_if = "is_default")]
    pub rate_limit_bps: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sample_freq: String,
    #[serde(skip_serializing_if = "is_default")]
    pub max_waiting: i64,
    #[serde(skip_serializing_if = "is_default")]
    pub max_ack_pending: i64,
    #[serde(skip_serializing_if = "is_default")]
    pub idle_heartbeat: i64,
    #[serde(skip_serializing_if = "is_default")]
    pub flow_control: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub headers_only: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub max_batch: i64,
    #[serde(skip_serializing_if = "is_default")]
    pub max_expires: i64,
    #[serde(skip_serializing_if = "is_default")]
    pub max_bytes: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub deliver_subject: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub deliver_group: String,
    #[serde(skip_serializing_if = "is_default")]
    pub inactive_threshold: i64,
    pub num_replicas: i64,
    #[serde(skip_serializing_if = "is_default")]
    pub mem_storage: bool,
    /// A server's own consumer (a mirror's or source's copy): not listed, not counted.
    #[serde(skip_serializing_if = "is_default")]
    pub direct: bool,
    /// nats-server 2.10+ (2.9 drops it).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl ConsumerConfig {
    /// Parses a config object: unknown fields ignored, missing fields zero, malformed JSON or
    /// enum values answered with 10025.
    pub fn from_json(body: &[u8]) -> Result<ConsumerConfig, ApiError> {
        let c: ConsumerConfig = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
        c.check_start_time_parses()?;
        Ok(c)
    }

    /// Go parses `opt_start_time` while decoding, so a bad one is a JSON error.
    fn check_start_time_parses(&self) -> Result<(), ApiError> {
        match &self.opt_start_time {
            Some(t) if parse_rfc3339_nanos(t).is_none() => Err(ApiError::invalid_json(format!(
                "parsing time {} as \"2006-01-02T15:04:05Z07:00\"",
                serde_json::to_string(t).unwrap_or_default()
            ))),
            _ => Ok(()),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `sample_freq` as a percentage, 0 when unset; above 100 means all.
    pub fn sample_percent(&self) -> u32 {
        sample_freq_digits(&self.sample_freq)
            .parse::<i64>()
            .map_or(0, |v| u32::try_from(v.clamp(0, 100)).unwrap_or(0))
    }

    /// Pull consumers have no deliver subject.
    pub fn is_pull(&self) -> bool {
        self.deliver_subject.is_empty()
    }

    /// Durable consumers have a `durable_name`; all others are ephemeral (even when named).
    pub fn is_durable(&self) -> bool {
        !self.durable_name.is_empty()
    }

    /// The consumer's name: `name`, else `durable_name` (empty for an unnamed ephemeral, whose
    /// name the caller generates).
    pub fn consumer_name(&self) -> &str {
        if self.name.is_empty() {
            &self.durable_name
        } else {
            &self.name
        }
    }

    /// The filters the consumer selects with (empty: the whole stream).
    pub fn filters(&self) -> Vec<String> {
        if !self.filter_subjects.is_empty() {
            self.filter_subjects.clone()
        } else if self.filter_subject.is_empty() || self.filter_subject == ">" {
            Vec::new()
        } else {
            vec![self.filter_subject.clone()]
        }
    }

    /// `opt_start_time` in Unix nanoseconds (None when unset or unparsable).
    pub fn opt_start_time_ns(&self) -> Option<i64> {
        self.opt_start_time.as_deref().and_then(parse_rfc3339_nanos)
    }

    /// Validates the config against its stream and applies nats-server's defaults: the config a
    /// consumer runs with and reports. Rules that need the other consumers of the stream (the
    /// work-queue partitions) are [`check_workqueue_partition`]'s; limits of the account and
    /// of a clustered deployment (replicas > 1 outside a cluster, 10074) are the caller's.
    pub fn validate_and_default(&self, stream: &StreamConfig) -> Result<ConsumerConfig, ApiError> {
        let mut c = self.clone();
        c.check_names()?;
        c.check(stream)?;
        c.apply_defaults(stream);
        // nats-server applies its defaults before it checks, so a stream's `max_ack_pending`
        // limit makes a push consumer without acks invalid (10082). Checked after the defaults
        // here too, or the config would be accepted once and refused when sent back.
        if !c.is_pull() && c.max_ack_pending > 0 && c.ack_policy == AckPolicy::None {
            return Err(ApiError::consumer_max_pending_ack_policy_required());
        }
        if stream.retention == RetentionPolicy::WorkQueue {
            if c.ack_policy != AckPolicy::Explicit {
                return Err(ApiError::consumer_wq_requires_explicit_ack());
            }
            if c.deliver_policy != DeliverPolicy::All {
                return Err(ApiError::consumer_wq_not_deliver_all());
            }
        }
        Ok(c)
    }

    fn check_names(&self) -> Result<(), ApiError> {
        for name in [&self.durable_name, &self.name] {
            if !name.is_empty() && !is_valid_stream_name(name) {
                return Err(ApiError::consumer_bad_durable_name());
            }
        }
        if !self.durable_name.is_empty() && !self.name.is_empty() && self.durable_name != self.name
        {
            return Err(ApiError::consumer_durable_and_name_mismatch());
        }
        Ok(())
    }

    /// `checkConsumerCfg`, in nats-server's order.
    fn check(&self, stream: &StreamConfig) -> Result<(), ApiError> {
        if self.num_replicas < 0 {
            return Err(ApiError::replicas_negative());
        }
        if self.num_replicas > 0 && self.num_replicas > stream.num_replicas.max(1) {
            return Err(ApiError::replicas_not_supported());
        }
        // nats-server 2.11+ (2.9 accepts both and redelivers at once, forever). The first
        // backoff step becomes the ack wait, so a negative step is refused too.
        if self.backoff.iter().any(|&step| step < 0) {
            return Err(ApiError::consumer_backoff_negative());
        }
        if self.ack_wait < 0 {
            return Err(ApiError::consumer_ack_wait_negative());
        }
        self.check_backoff()?;
        if self.description.len() > MAX_CONSUMER_DESCRIPTION_LEN {
            return Err(ApiError::consumer_description_too_long());
        }
        if self.is_pull() {
            self.check_pull(stream)?;
        } else {
            self.check_push(stream)?;
        }
        let limits = &stream.consumer_limits;
        if limits.max_ack_pending > 0 && self.max_ack_pending > limits.max_ack_pending {
            return Err(ApiError::consumer_max_ack_pending_excess(
                limits.max_ack_pending,
            ));
        }
        if limits.inactive_threshold > 0 && self.inactive_threshold > limits.inactive_threshold {
            return Err(ApiError::consumer_inactive_threshold_excess(
                limits.inactive_threshold,
            ));
        }
        self.check_filters(stream)?;
        self.check_start()?;
        if !self.sample_freq.is_empty() {
            check_sample_freq(&self.sample_freq)?;
        }
        if self.flow_control && self.idle_heartbeat == 0 {
            return Err(ApiError::consumer_flow_control_needs_heartbeats());
        }
        Ok(())
    }

    /// Every backoff step must come before the last delivery.
    fn check_backoff(&self) -> Result<(), ApiError> {
        let backoffs = self.backoff.len() as i64;
        if backoffs > 0 && self.max_deliver != -1 && self.max_deliver <= backoffs {
            return Err(ApiError::consumer_max_deliver_backoff());
        }
        Ok(())
    }

    fn check_push(&self, stream: &StreamConfig) -> Result<(), ApiError> {
        let subject = self.deliver_subject.as_bytes();
        if !natrix_subject::subject_is_literal(subject) {
            return Err(ApiError::consumer_deliver_to_wildcards());
        }
        if !natrix_subject::is_valid_subject(subject) {
            return Err(ApiError::consumer_invalid_deliver_subject());
        }
        if stream
            .subjects
            .iter()
            .any(|s| is_subset(subject, s.as_bytes()))
        {
            return Err(ApiError::consumer_deliver_cycle());
        }
        if self.max_waiting != 0 {
            return Err(ApiError::consumer_push_max_waiting());
        }
        if self.max_ack_pending > 0 && self.ack_policy == AckPolicy::None {
            return Err(ApiError::consumer_max_pending_ack_policy_required());
        }
        if self.idle_heartbeat > 0 && self.idle_heartbeat < MIN_HEARTBEAT_NS {
            return Err(ApiError::consumer_small_heartbeat());
        }
        Ok(())
    }

    fn check_pull(&self, stream: &StreamConfig) -> Result<(), ApiError> {
        if self.ack_policy == AckPolicy::None && stream.retention == RetentionPolicy::WorkQueue {
            return Err(ApiError::consumer_pull_requires_ack());
        }
        if self.rate_limit_bps > 0 {
            return Err(ApiError::consumer_pull_with_rate_limit());
        }
        if self.max_waiting < 0 {
            return Err(ApiError::consumer_max_waiting_negative());
        }
        if self.idle_heartbeat > 0 {
            return Err(ApiError::consumer_heartbeat_requires_push());
        }
        if self.flow_control {
            return Err(ApiError::consumer_flow_control_requires_push());
        }
        if self.max_batch < 0 {
            return Err(ApiError::consumer_max_request_batch_negative());
        }
        if self.max_expires != 0 && self.max_expires < MIN_MAX_EXPIRES_NS {
            return Err(ApiError::consumer_max_request_expires_too_small());
        }
        Ok(())
    }

    fn check_filters(&self, stream: &StreamConfig) -> Result<(), ApiError> {
        if !self.filter_subject.is_empty() && !self.filter_subjects.is_empty() {
            return Err(ApiError::consumer_duplicate_filter_subjects());
        }
        let filters: Vec<&String> = if self.filter_subject.is_empty() {
            self.filter_subjects.iter().collect()
        } else {
            vec![&self.filter_subject]
        };
        // A stream that transforms subjects stores messages outside its own subjects: nats-server
        // then takes any valid filter.
        let within: &[String] = match stream.subject_transform {
            Some(_) => &[],
            None => &stream.subjects,
        };
        for (i, f) in filters.iter().enumerate() {
            if !valid_filtered_subject(f.as_bytes(), within) {
                return Err(ApiError::consumer_filter_not_matching());
            }
            if filters[i + 1..]
                .iter()
                .any(|o| subjects_overlap(f.as_bytes(), o.as_bytes()))
            {
                return Err(ApiError::consumer_overlapping_filter_subjects());
            }
        }
        Ok(())
    }

    fn check_start(&self) -> Result<(), ApiError> {
        let has_seq = self.opt_start_seq > 0;
        let has_time = self.opt_start_time.is_some();
        let (policy, seq_allowed, time_allowed) = match self.deliver_policy {
            DeliverPolicy::All => ("all", false, false),
            DeliverPolicy::Last => ("last", false, false),
            DeliverPolicy::New => ("new", false, false),
            DeliverPolicy::LastPerSubject => ("last per subject", false, false),
            DeliverPolicy::ByStartSequence => ("by start sequence", true, false),
            DeliverPolicy::ByStartTime => ("by start time", false, true),
        };
        let bad = |text: String| Err(ApiError::consumer_invalid_policy(text));
        let also = |what: &str| {
            format!(
                "consumer delivery policy is deliver {policy}, but optional start {what} is also set"
            )
        };
        let not_set = |what: &str| {
            format!("consumer delivery policy is deliver {policy}, but optional {what} is not set")
        };
        if seq_allowed && !has_seq {
            return bad(not_set("start sequence"));
        }
        if time_allowed && !has_time {
            return bad(not_set("start time"));
        }
        if !seq_allowed && has_seq {
            // nats-server's text for by_start_time says "start start sequence".
            return bad(also(if time_allowed {
                "start sequence"
            } else {
                "sequence"
            }));
        }
        if !time_allowed && has_time {
            return bad(also("time"));
        }
        if self.deliver_policy == DeliverPolicy::LastPerSubject && self.filters().is_empty() {
            return bad(not_set("filter subject"));
        }
        Ok(())
    }

    /// `setConsumerConfigDefaults`, with the stream's `consumer_limits` (nats-server 2.10+).
    fn apply_defaults(&mut self, stream: &StreamConfig) {
        let acks = self.ack_policy != AckPolicy::None;
        if self.is_pull() && self.max_waiting == 0 {
            self.max_waiting = DEFAULT_MAX_WAITING;
        }
        if self.ack_wait == 0 && acks {
            self.ack_wait = DEFAULT_ACK_WAIT_NS;
        }
        if self.max_deliver == 0 {
            self.max_deliver = -1;
        }
        if let Some(first) = self.backoff.first() {
            self.ack_wait = *first;
        }
        let limits = &stream.consumer_limits;
        if self.max_ack_pending == 0 {
            self.max_ack_pending = limits.max_ack_pending;
        }
        // A negative threshold counts as unset first, so that defaulting is idempotent: a
        // config validated again (on update, at restart) must come out unchanged.
        if self.inactive_threshold < 0 {
            self.inactive_threshold = 0;
        }
        if self.inactive_threshold == 0 {
            self.inactive_threshold = limits.inactive_threshold;
        }
        if self.inactive_threshold <= 0 && !self.is_durable() {
            self.inactive_threshold = DEFAULT_EPHEMERAL_INACTIVE_NS;
        }
        if acks && self.max_ack_pending == 0 {
            self.max_ack_pending = DEFAULT_MAX_ACK_PENDING;
        }
    }

    /// Checks that a running consumer with config `old` may take `new` (both as validated by
    /// [`validate_and_default`](Self::validate_and_default)), in nats-server's order and with
    /// its texts (10012). Changing the deliver subject of a push consumer that has active
    /// interest on it is refused by nats-server with 10013: the caller knows the interest.
    pub fn check_update(old: &ConsumerConfig, new: &ConsumerConfig) -> Result<(), ApiError> {
        if old == new {
            return Ok(());
        }
        let pull_push = (old.is_pull(), new.is_pull());
        let refused = [
            (
                old.deliver_policy != new.deliver_policy,
                "deliver policy can not be updated",
            ),
            (
                old.opt_start_seq != new.opt_start_seq,
                "start sequence can not be updated",
            ),
            (
                old.opt_start_time_ns() != new.opt_start_time_ns(),
                "start time can not be updated",
            ),
            (
                old.ack_policy != new.ack_policy,
                "ack policy can not be updated",
            ),
            (
                old.replay_policy != new.replay_policy,
                "replay policy can not be updated",
            ),
            (
                old.idle_heartbeat != new.idle_heartbeat,
                "heart beats can not be updated",
            ),
            (
                old.flow_control != new.flow_control,
                "flow control can not be updated",
            ),
            (
                old.max_waiting != new.max_waiting,
                "max waiting can not be updated",
            ),
            (
                pull_push == (true, false),
                "can not update pull consumer to push based",
            ),
            (
                pull_push == (false, true),
                "can not update push consumer to pull based",
            ),
        ];
        if let Some((_, text)) = refused.iter().find(|(changed, _)| *changed) {
            return Err(ApiError::consumer_create(*text));
        }
        new.check_backoff()
    }
}

/// Work-queue streams: a new consumer must not share messages with the existing ones (`others`,
/// the configs of the stream's other consumers). 10099 when either side is unfiltered, 10100
/// when filters overlap (nats-server 2.10's rule; 2.9 also refuses a narrower filter under a
/// wider one, and both refuse a wider one over a narrower one).
pub fn check_workqueue_partition<'a>(
    new: &ConsumerConfig,
    others: impl IntoIterator<Item = &'a ConsumerConfig>,
) -> Result<(), ApiError> {
    let mine = new.filters();
    for other in others {
        if mine.is_empty() {
            return Err(ApiError::consumer_wq_multiple_unfiltered());
        }
        let theirs = other.filters();
        if theirs.is_empty()
            || mine.iter().any(|m| {
                theirs
                    .iter()
                    .any(|t| subjects_overlap(m.as_bytes(), t.as_bytes()))
            })
        {
            return Err(ApiError::consumer_wq_not_unique());
        }
    }
    Ok(())
}

/// True if every subject `a` matches is also matched by `b` (nats-server's
/// `subjectIsSubsetMatch(a, b)`).
pub(crate) fn is_subset(a: &[u8], b: &[u8]) -> bool {
    let mut x = a.split(|&c| c == b'.');
    let mut y = b.split(|&c| c == b'.');
    loop {
        match (x.next(), y.next()) {
            (Some(_), Some(b">")) => return true,
            (Some(b">"), Some(_)) => return false,
            (Some(b"*"), Some(q)) => {
                if q != b"*" {
                    return false;
                }
            }
            (Some(p), Some(q)) => {
                if q != b"*" && p != q {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// nats-server 2.9's `validFilteredSubject`: a valid subject inside one of the stream's, or a
/// wildcard filter wider than one of them. Streams without subjects (mirrors, sources) accept
/// any valid filter.
fn valid_filtered_subject(filter: &[u8], subjects: &[String]) -> bool {
    if !natrix_subject::is_valid_subject(filter) {
        return false;
    }
    if subjects.is_empty() {
        return true;
    }
    let wildcard = !natrix_subject::subject_is_literal(filter);
    subjects
        .iter()
        .any(|s| is_subset(filter, s.as_bytes()) || (wildcard && is_subset(s.as_bytes(), filter)))
}

/// `sample_freq`'s number (`"50%"` or `"50"`).
fn sample_freq_digits(text: &str) -> &str {
    text.strip_suffix('%').unwrap_or(text)
}

fn check_sample_freq(text: &str) -> Result<(), ApiError> {
    let digits = sample_freq_digits(text);
    match digits.parse::<i64>() {
        Ok(v) if v >= 0 => Ok(()),
        Ok(_) => Err(ApiError::consumer_invalid_sampling("<nil>")),
        Err(_) => Err(ApiError::consumer_invalid_sampling(&format!(
            "strconv.Atoi: parsing {}: invalid syntax",
            serde_json::to_string(digits).unwrap_or_default()
        ))),
    }
}

/// Which create the request asks for (`action`, nats-server 2.10+; absent: create or update).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CreateAction {
    #[default]
    #[serde(rename = "")]
    CreateOrUpdate,
    #[serde(rename = "create")]
    Create,
    #[serde(rename = "update")]
    Update,
}

impl CreateAction {
    fn is_default(&self) -> bool {
        *self == CreateAction::CreateOrUpdate
    }

    /// 10148 when creating over an existing consumer with another config, 10149 when updating
    /// a missing one.
    pub fn check(
        &self,
        existing: Option<&ConsumerConfig>,
        new: &ConsumerConfig,
    ) -> Result<(), ApiError> {
        match (self, existing) {
            (CreateAction::Create, Some(old)) if old != new => {
                Err(ApiError::consumer_already_exists())
            }
            (CreateAction::Update, None) => Err(ApiError::consumer_does_not_exist()),
            _ => Ok(()),
        }
    }
}

/// The body of `$JS.API.CONSUMER.CREATE.<stream>[.<name>[.<filter>]]` and
/// `$JS.API.CONSUMER.DURABLE.CREATE.<stream>.<durable>`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateConsumerRequest {
    pub stream_name: String,
    pub config: ConsumerConfig,
    #[serde(skip_serializing_if = "CreateAction::is_default")]
    pub action: CreateAction,
}

/// The consumer-naming part of a create subject, after `$JS.API.CONSUMER.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateSubject {
    /// `CREATE.<stream>`: an ephemeral, named by the body or by the caller.
    Ephemeral { stream: String },
    /// `CREATE.<stream>.<name>` or `CREATE.<stream>.<name>.<filter>`.
    Named {
        stream: String,
        name: String,
        filter: Option<String>,
    },
    /// `DURABLE.CREATE.<stream>.<durable>`.
    Durable { stream: String, durable: String },
}

impl CreateSubject {
    /// Parses a full API subject; None when it is not a consumer create subject (nats-server
    /// does not answer those).
    pub fn parse(subject: &str) -> Option<CreateSubject> {
        if let Some(rest) = subject.strip_prefix("$JS.API.CONSUMER.DURABLE.CREATE.") {
            let (stream, durable) = rest.split_once('.')?;
            if stream.is_empty() || durable.is_empty() || durable.contains('.') {
                return None;
            }
            return Some(CreateSubject::Durable {
                stream: stream.to_string(),
                durable: durable.to_string(),
            });
        }
        let rest = subject.strip_prefix("$JS.API.CONSUMER.CREATE.")?;
        let mut parts = rest.splitn(3, '.');
        let stream = parts.next().filter(|s| !s.is_empty())?.to_string();
        match parts.next() {
            None => Some(CreateSubject::Ephemeral { stream }),
            Some(name) if !name.is_empty() => Some(CreateSubject::Named {
                stream,
                name: name.to_string(),
                filter: parts.next().map(str::to_string),
            }),
            Some(_) => None,
        }
    }

    pub fn stream(&self) -> &str {
        match self {
            CreateSubject::Ephemeral { stream }
            | CreateSubject::Named { stream, .. }
            | CreateSubject::Durable { stream, .. } => stream,
        }
    }
}

impl CreateConsumerRequest {
    pub fn from_json(body: &[u8]) -> Result<CreateConsumerRequest, ApiError> {
        let req: CreateConsumerRequest =
            serde_json::from_slice(body).map_err(|e| json_error(&e))?;
        req.config.check_start_time_parses()?;
        Ok(req)
    }

    /// Parses the body of a create request sent to `subject` and reconciles the two as
    /// nats-server does: 10056 stream mismatch, 10020 durable on the ephemeral subject, 10018
    /// durable subject without a durable, 10017 name mismatch, 10131 filter mismatch. The
    /// subject's name becomes `config.name`. The config is not yet validated. An empty body is
    /// 10025 `invalid JSON`, as in nats-server.
    pub fn resolve(
        subject: &CreateSubject,
        body: &[u8],
    ) -> Result<CreateConsumerRequest, ApiError> {
        if body.is_empty() {
            return Err(ApiError::new(400, 10025, "invalid JSON"));
        }
        let mut req = CreateConsumerRequest::from_json(body)?;
        if req.stream_name != subject.stream() {
            return Err(ApiError::stream_mismatch());
        }
        let c = &mut req.config;
        match subject {
            CreateSubject::Ephemeral { .. } => {
                if c.is_durable() {
                    return Err(ApiError::consumer_ephemeral_with_durable_name());
                }
            }
            CreateSubject::Named { name, filter, .. } => {
                if c.is_durable() && c.durable_name != *name {
                    return Err(ApiError::consumer_durable_name_not_match_subject());
                }
                if let Some(filter) = filter
                    && *filter != c.filter_subject
                {
                    return Err(ApiError::consumer_create_filter_subject_mismatch());
                }
                c.name = name.clone();
            }
            CreateSubject::Durable { durable, .. } => {
                if !c.is_durable() {
                    return Err(ApiError::consumer_durable_name_not_set());
                }
                if c.durable_name != *durable {
                    return Err(ApiError::consumer_durable_name_not_match_subject());
                }
            }
        }
        Ok(req)
    }
}

/// 10025 with serde's text (nats-server 2.9 says only `invalid JSON`; 2.15 appends Go's
/// decoder text, which serde's cannot match word for word). An unknown enum value reads as
/// 2.15's `can not unmarshal "\"value\""`.
fn json_error(e: &serde_json::Error) -> ApiError {
    let text = e.to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => &text,
    };
    if let Some(rest) = text.strip_prefix("unknown variant `")
        && let Some(value) = rest.split('`').next()
    {
        let raw = serde_json::to_string(value).unwrap_or_default();
        return ApiError::invalid_json(format!(
            "can not unmarshal {}",
            serde_json::to_string(&raw).unwrap_or_default()
        ));
    }
    ApiError::invalid_json(text)
}

/// Parses RFC 3339 (`2006-01-02T15:04:05.999999999Z07:00`) into Unix nanoseconds.
pub fn parse_rfc3339_nanos(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &text[start..i];
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        nanos = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
    }
    let offset = match &text[i..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6
            && matches!(tz.as_bytes()[0], b'+' | b'-')
            && tz.as_bytes()[3] == b':' =>
        {
            let secs = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if tz.starts_with('-') { -secs } else { secs }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Howard Hinnant's days-from-civil: (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats nanoseconds as Go's `time.Duration.String()` (`1s`, `1.5s`, `2m0s`, `500ms`), which
/// nats-server prints in some errors and status lines.
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    let frac = |v: u64, unit: u64| -> String {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let digits = format!("{rest:0width$}", width = unit.ilog10() as usize);
        format!("{whole}.{}", digits.trim_end_matches('0'))
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 1_000));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 1_000_000));
    }
    let secs_total = u / 1_000_000_000;
    let sub = u % 1_000_000_000;
    let (h, m, s) = (secs_total / 3600, (secs_total / 60) % 60, secs_total % 60);
    let secs = frac(s * 1_000_000_000 + sub, 1_000_000_000);
    if h > 0 {
        format!("{sign}{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{sign}{m}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

#[cfg(test)]
#[path = "consumer_config_test.rs"]
mod tests;
