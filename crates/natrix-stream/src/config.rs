//! `StreamConfig` with nats-server's JSON (field names, order, omitted empties, enum strings),
//! its validation and defaults (`checkStreamCfg`), and the rules for updating a live stream.
//! Texts and codes are those of nats-server 2.15.1; the JSON shape is the 2.10 one (no
//! `allow_msg_ttl`, no `_nats.*` metadata).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::api_error::ApiError;
use crate::republish::RePublish;
use crate::source::{self, StreamSource};
use crate::subject_transform::SubjectTransformConfig;
use crate::subjects::subjects_overlap;

/// nats-server's default `duplicate_window`: two minutes.
pub const DEFAULT_DUPLICATE_WINDOW_NS: i64 = 120_000_000_000;
/// Smallest non-zero `max_age` nats-server accepts.
pub const MIN_MAX_AGE_NS: i64 = 100_000_000;
pub const MAX_STREAM_NAME_LEN: usize = 255;
pub const MAX_DESCRIPTION_LEN: usize = 4096;
pub const MAX_REPLICAS: i64 = 5;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $default:ident = $dtext:literal $(, $variant:ident = $text:literal)+ $(,)? }, $err:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            #[default]
            $default,
            $($variant),+
        }
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $name::$default => $dtext,
                    $($name::$variant => $text),+
                }
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                if text == $dtext {
                    return Ok($name::$default);
                }
                $(if text == $text { return Ok($name::$variant); })+
                let f: fn(&str) -> String = $err;
                Err(serde::de::Error::custom(f(&text)))
            }
        }
    };
}

/// Go's `fmt.Errorf("can not unmarshal %q", data)` where data is the raw JSON string.
fn cannot_unmarshal(text: &str) -> String {
    let raw = serde_json::to_string(text).unwrap_or_default();
    format!(
        "can not unmarshal {}",
        serde_json::to_string(&raw).unwrap_or_default()
    )
}

string_enum!(
    /// `retention`: when messages leave the stream besides limits.
    RetentionPolicy { Limits = "limits", Interest = "interest", WorkQueue = "workqueue" }, cannot_unmarshal
);
string_enum!(
    /// `discard`: what happens when a limit is reached.
    DiscardPolicy { Old = "old", New = "new" }, cannot_unmarshal
);
string_enum!(
    /// `storage`.
    StorageType { File = "file", Memory = "memory" }, cannot_unmarshal
);
string_enum!(
    /// `compression` (accepted and reported; natrix's store compresses on its own terms).
    Compression { None = "none", S2 = "s2" }, |_| "unknown compression algorithm".to_string()
);

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Placement {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerLimits {
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub inactive_threshold: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_ack_pending: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// A stream's configuration as the JetStream API carries it (`config` in create, update and
/// info). Durations are nanoseconds; `-1` means unlimited once defaults are applied.
/// Fields are declared in nats-server's order so that the JSON reads the same.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamConfig {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    pub retention: RetentionPolicy,
    pub max_consumers: i64,
    pub max_msgs: i64,
    pub max_bytes: i64,
    pub max_age: i64,
    pub max_msgs_per_subject: i64,
    pub max_msg_size: i64,
    pub discard: DiscardPolicy,
    pub storage: StorageType,
    pub num_replicas: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub no_ack: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub duplicate_window: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// The stream this one mirrors (copies whole, with its sequences).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSource>,
    /// The streams this one copies messages from, under new sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<StreamSource>>,
    pub compression: Compression,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub first_seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<SubjectTransformConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub republish: Option<RePublish>,
    pub allow_direct: bool,
    pub mirror_direct: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub discard_new_per_subject: bool,
    pub sealed: bool,
    pub deny_delete: bool,
    pub deny_purge: bool,
    pub allow_rollup_hdrs: bool,
    pub consumer_limits: ConsumerLimits,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl StreamConfig {
    /// A config with only a name and subjects set (other fields at their JSON zero values).
    pub fn named(name: &str, subjects: &[&str]) -> StreamConfig {
        StreamConfig {
            name: name.to_string(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            ..StreamConfig::default()
        }
    }

    /// Parses a request body as nats-server does: unknown fields ignored, missing fields zero,
    /// malformed JSON or enum values answered with 10025 `invalid JSON: ...`.
    /// `null` leaves a field at its zero value, as in Go (async-nats sends
    /// `"consumer_limits":null`).
    pub fn from_json(body: &[u8]) -> Result<StreamConfig, ApiError> {
        let invalid = |e: serde_json::Error| ApiError::invalid_json(strip_position(&e));
        let mut value: serde_json::Value = serde_json::from_slice(body).map_err(invalid)?;
        drop_nulls(&mut value);
        let config: StreamConfig = serde_json::from_value(value).map_err(invalid)?;
        for copy in config.mirror.iter().chain(config.sources.iter().flatten()) {
            copy.check_start_time_parses()?;
        }
        Ok(config)
    }

    /// Decodes the body of a stream create or update request as nats-server 2.15 does: an empty
    /// (or all-blank) body is an empty config, whose missing name then fails validation;
    /// anything else is [`from_json`](Self::from_json). A missing name is not taken from the
    /// request subject.
    pub fn from_request_body(payload: &[u8]) -> Result<StreamConfig, ApiError> {
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Ok(StreamConfig::default());
        }
        StreamConfig::from_json(payload)
    }

    /// The config as nats-server prints it (Go's escaping of `<`, `>`, `&` included).
    pub fn to_json(&self) -> String {
        crate::info::go_json_escape(serde_json::to_string(self).unwrap_or_default())
    }

    /// Normalises zero values to nats-server's defaults and validates the result: the config a
    /// stream runs with and reports. Cross-stream rules (subject overlap with other streams,
    /// account limits, replicas on a non-clustered node) are the caller's.
    pub fn validate_and_default(&self) -> Result<StreamConfig, ApiError> {
        let mut c = self.clone();
        if c.name.contains(['/', '\\']) {
            return Err(ApiError::stream_name_contains_path_separators());
        }
        if !is_valid_stream_name(&c.name) {
            return Err(ApiError::stream_invalid_config(
                "stream name is required and can not contain '.', '*', '>', '\\', '/'",
            ));
        }
        if c.name.len() > MAX_STREAM_NAME_LEN {
            return Err(ApiError::stream_invalid_config(format!(
                "stream name is too long, maximum allowed is {MAX_STREAM_NAME_LEN}"
            )));
        }
        if c.description.len() > MAX_DESCRIPTION_LEN {
            return Err(ApiError::stream_invalid_config(format!(
                "stream description is too long, maximum allowed is {MAX_DESCRIPTION_LEN}"
            )));
        }
        for limit in [
            &mut c.max_consumers,
            &mut c.max_msgs,
            &mut c.max_bytes,
            &mut c.max_msgs_per_subject,
            &mut c.max_msg_size,
        ] {
            if *limit <= 0 {
                *limit = -1;
            }
        }
        if c.max_age < 0 {
            return Err(ApiError::stream_invalid_config(
                "max age can not be negative",
            ));
        }
        if c.max_age > 0 && c.max_age < MIN_MAX_AGE_NS {
            return Err(ApiError::stream_invalid_config(
                "max age needs to be >= 100ms",
            ));
        }
        if c.duplicate_window < 0 {
            return Err(ApiError::stream_invalid_config(
                "duplicates window can not be negative",
            ));
        }
        if c.sources.as_ref().is_some_and(Vec::is_empty) {
            c.sources = None;
        }
        // A stream that copies from others has no duplicate window unless it asks for one.
        if c.duplicate_window == 0 && c.mirror.is_none() && c.sources.is_none() {
            c.duplicate_window = if c.max_age > 0 && c.max_age < DEFAULT_DUPLICATE_WINDOW_NS {
                c.max_age
            } else {
                DEFAULT_DUPLICATE_WINDOW_NS
            };
        }
        if c.max_age > 0 && c.duplicate_window > c.max_age {
            return Err(ApiError::stream_invalid_config(
                "duplicates window can not be larger then max age",
            ));
        }
        if c.num_replicas < 0 {
            return Err(ApiError::replicas_negative());
        }
        if c.num_replicas == 0 {
            c.num_replicas = 1;
        }
        if c.num_replicas > MAX_REPLICAS {
            return Err(ApiError::stream_invalid_config(format!(
                "maximum replicas is {MAX_REPLICAS}"
            )));
        }
        if c.discard_new_per_subject {
            if c.discard != DiscardPolicy::New {
                return Err(ApiError::stream_invalid_config(
                    "discard new per subject requires discard new policy to be set",
                ));
            }
            if c.max_msgs_per_subject <= 0 {
                return Err(ApiError::stream_invalid_config(
                    "discard new per subject requires max msgs per subject > 0",
                ));
            }
        }
        if c.mirror_direct && c.mirror.is_none() {
            return Err(ApiError::stream_invalid_config(
                "stream has no mirror but does have mirror direct",
            ));
        }
        if c.allow_rollup_hdrs && c.deny_purge {
            return Err(ApiError::stream_invalid_config(
                "roll-ups require the purge permission",
            ));
        }
        source::check(c.mirror.as_ref(), c.sources.as_deref(), &c.subjects)?;
        if c.subjects.is_empty()
            && c.mirror.is_none()
            && c.sources.as_ref().is_none_or(Vec::is_empty)
        {
            c.subjects = vec![c.name.clone()];
        }
        check_subjects(&c.subjects, c.no_ack)?;
        if let Some(transform) = &c.subject_transform {
            transform.compile()?;
        }
        if let Some(republish) = &mut c.republish {
            republish.validate(&c.subjects)?;
        }
        Ok(c)
    }

    /// [`validate_and_default`](Self::validate_and_default) plus the rules that apply only to a
    /// new stream.
    pub fn validate_for_create(&self) -> Result<StreamConfig, ApiError> {
        let c = self.validate_and_default()?;
        if c.sealed {
            return Err(ApiError::stream_invalid_config(
                "stream configuration for create can not be sealed",
            ));
        }
        Ok(c)
    }

    /// Checks that a running stream with config `old` may take `new`, and returns `new` with
    /// defaults applied. Errors are nats-server's (`stream configuration update can not ...`).
    pub fn check_update(old: &StreamConfig, new: &StreamConfig) -> Result<StreamConfig, ApiError> {
        let new = new.validate_and_default()?;
        if new.name != old.name {
            return Err(ApiError::stream_mismatch());
        }
        if old.sealed && !new.sealed {
            return Err(ApiError::stream_invalid_config(
                "stream configuration update can not unseal a sealed stream",
            ));
        }
        if old.deny_delete && !new.deny_delete {
            return Err(ApiError::stream_invalid_config(
                "stream configuration update can not cancel deny message deletes",
            ));
        }
        if old.deny_purge && !new.deny_purge {
            return Err(ApiError::stream_invalid_config(
                "stream configuration update can not cancel deny purge",
            ));
        }
        if new.storage != old.storage {
            return Err(ApiError::stream_invalid_config(
                "stream configuration update can not change storage type",
            ));
        }
        let wq = RetentionPolicy::WorkQueue;
        if new.retention != old.retention && (new.retention == wq || old.retention == wq) {
            return Err(ApiError::stream_invalid_config(
                "stream configuration update can not change retention policy to/from workqueue",
            ));
        }
        // A mirror may be removed (the stream then takes publishes), not added or changed.
        if new.mirror.is_some() && new.mirror != old.mirror {
            return Err(ApiError::mirror_not_updatable());
        }
        let mut new = new;
        if new.sealed {
            new.seal();
        }
        Ok(new)
    }

    /// Seals the config as nats-server does, so that it says what sealing means: nothing leaves
    /// the stream (no age limit, no deletes or purges) and nothing more enters it.
    pub fn seal(&mut self) {
        self.sealed = true;
        self.max_age = 0;
        self.discard = DiscardPolicy::New;
        self.deny_delete = true;
        self.deny_purge = true;
        self.allow_rollup_hdrs = false;
    }

    pub fn limit(value: i64) -> Option<u64> {
        (value > 0).then_some(value as u64)
    }
}

/// nats-server's `isValidName`: non-empty, none of `.`, `*`, `>` or whitespace.
pub fn is_valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .bytes()
            .any(|b| matches!(b, b'.' | b'*' | b'>' | b' ' | b'\t' | b'\r' | b'\n' | 0x0c))
}

fn check_subjects(subjects: &[String], no_ack: bool) -> Result<(), ApiError> {
    for (i, subject) in subjects.iter().enumerate() {
        let s = subject.as_bytes();
        if !natrix_subject::is_valid_subject(s) {
            return Err(ApiError::stream_invalid_config("invalid subject"));
        }
        if !no_ack {
            if s == b">" {
                return Err(ApiError::stream_invalid_config(
                    "capturing all subjects requires no-ack to be true",
                ));
            }
            if [b"$JS.>".as_slice(), b"$JSC.>", b"$NRG.>"]
                .iter()
                .any(|api| subjects_overlap(s, api))
            {
                return Err(ApiError::stream_invalid_config(
                    "subjects that overlap with jetstream api require no-ack to be true",
                ));
            }
            if subjects_overlap(s, b"$SYS.>") {
                return Err(ApiError::stream_invalid_config(
                    "subjects that overlap with system api require no-ack to be true",
                ));
            }
        }
        for other in &subjects[i + 1..] {
            if subjects_overlap(s, other.as_bytes()) {
                return Err(ApiError::stream_invalid_config(format!(
                    "subject {} overlaps with {}",
                    serde_json::to_string(subject).unwrap_or_default(),
                    serde_json::to_string(other).unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

/// Removes `null` members of objects (at any depth), so that they decode as absent fields.
fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// serde_json appends ` at line L column C` to data errors; Go's messages have no position.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
#[path = "config_test.rs"]
mod tests;
