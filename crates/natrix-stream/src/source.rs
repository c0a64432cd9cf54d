//! Mirrors and sources in a stream's config (`mirror`, `sources`): which streams a stream copies
//! from, and nats-server's checks of them with its codes and texts.

use natrix_subject::TransformError;
use serde::{Deserialize, Serialize};

use crate::subject_transform::SubjectTransformConfig;
use crate::subjects::subjects_overlap;
use crate::{ApiError, is_valid_stream_name, parse_rfc3339_nanos};

/// One mirror or source: the stream to copy from and what of it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamSource {
    pub name: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub opt_start_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_transforms: Vec<SubjectTransformConfig>,
    /// Another account's or domain's API prefix (accepted and shown; natrix has one account
    /// and copies from its own streams only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStream>,
}

/// `external` of a mirror or source.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExternalStream {
    #[serde(default)]
    pub api: String,
    #[serde(default)]
    pub deliver: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// What a check is about: nats-server words the same checks differently for the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Mirror,
    Source,
}

impl StreamSource {
    /// `opt_start_time` in Unix nanoseconds (None when unset).
    pub fn opt_start_time_ns(&self) -> Option<i64> {
        self.opt_start_time.as_deref().and_then(parse_rfc3339_nanos)
    }

    /// The filter the copy takes: the subject filter, or `>` for everything.
    pub fn effective_filter(&self) -> &str {
        if self.filter_subject.is_empty() {
            ">"
        } else {
            &self.filter_subject
        }
    }

    /// Go parses `opt_start_time` while decoding, so a bad one is a JSON error.
    pub(crate) fn check_start_time_parses(&self) -> Result<(), ApiError> {
        match &self.opt_start_time {
            Some(t) if parse_rfc3339_nanos(t).is_none() => Err(ApiError::invalid_json(format!(
                "parsing time {} as \"2006-01-02T15:04:05Z07:00\": cannot parse {} as \"2006\"",
                serde_json::to_string(t).unwrap_or_default(),
                serde_json::to_string(t).unwrap_or_default()
            ))),
            _ => Ok(()),
        }
    }

    fn check(&self, role: Role) -> Result<(), ApiError> {
        if !is_valid_stream_name(&self.name) {
            return Err(match role {
                Role::Mirror => ApiError::new(400, 10142, "mirrored stream name is invalid"),
                Role::Source => ApiError::new(400, 10141, "sourced stream name is invalid"),
            });
        }
        if !self.filter_subject.is_empty()
            && !natrix_subject::is_valid_subject(self.filter_subject.as_bytes())
        {
            let what = match role {
                Role::Mirror => "the mirror",
                Role::Source => "the source:",
            };
            return Err(ApiError::new(
                500,
                10049,
                format!(
                    "subject filter '{}' for {what} invalid subject",
                    self.filter_subject
                ),
            ));
        }
        if !self.filter_subject.is_empty() && !self.subject_transforms.is_empty() {
            return Err(match role {
                Role::Mirror => ApiError::new(
                    400,
                    10150,
                    "mirror with multiple subject transforms cannot also have a single subject \
                     filter",
                ),
                Role::Source => ApiError::new(
                    400,
                    10144,
                    "source with multiple subject transforms cannot also have a single subject \
                     filter",
                ),
            });
        }
        for (i, transform) in self.subject_transforms.iter().enumerate() {
            transform.transform().map_err(|err| {
                let (source_code, dest_code, word) = match role {
                    Role::Mirror => (10151, 10154, "mirror"),
                    Role::Source => (10145, 10146, "source"),
                };
                match err {
                    TransformError::InvalidSource(_) => {
                        ApiError::new(400, source_code, format!("{word} transform source: {err}"))
                    }
                    err => ApiError::new(400, dest_code, format!("{word} transform: {err}")),
                }
            })?;
            let src = transform.source();
            if self.subject_transforms[i + 1..]
                .iter()
                .any(|other| subjects_overlap(src.as_bytes(), other.source().as_bytes()))
            {
                return Err(match role {
                    Role::Mirror => {
                        ApiError::new(400, 10152, "mirror subject filters can not overlap")
                    }
                    Role::Source => ApiError::new(400, 10147, "source filters can not overlap"),
                });
            }
        }
        Ok(())
    }

    /// What makes two sources the same copy: the stream, and the subjects taken and how.
    fn identity(&self) -> (String, Vec<(String, String)>) {
        let transforms = if self.subject_transforms.is_empty() {
            vec![(self.effective_filter().to_owned(), String::new())]
        } else {
            self.subject_transforms
                .iter()
                .map(|t| (t.source().to_owned(), t.dest.clone()))
                .collect()
        };
        (self.name.clone(), transforms)
    }
}

/// The header a sourced message carries: where it came from (`<stream> <seq> <filter> <dest>
/// <subject>`, nats-server's order), so a restarted stream finds where each source stopped.
pub const STREAM_SOURCE: &str = "Nats-Stream-Source";

/// Where a stored message came from, read back from its [`STREAM_SOURCE`] header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedFrom {
    /// `<stream> <filter> <dest>`: which source of the stream copied it.
    pub key: String,
    pub seq: u64,
}

impl StreamSource {
    /// This source's key in [`STREAM_SOURCE`] headers: its stream, filter and destination.
    pub fn source_key(&self) -> String {
        let (filter, dest) = match self.subject_transforms.first() {
            Some(t) if !t.dest.is_empty() => (t.source(), t.dest.as_str()),
            Some(t) => (t.source(), ">"),
            None => (self.effective_filter(), ">"),
        };
        format!("{} {filter} {dest}", self.name)
    }
}

/// The headers of a message copied by a source: the origin's own, without the
/// `Nats-Expected-*` checks that were meant for the origin, and the [`STREAM_SOURCE`] line.
pub fn sourced_headers(own: Option<&[u8]>, key: &str, seq: u64, subject: &[u8]) -> bytes::Bytes {
    let mut out = Vec::with_capacity(64 + own.map_or(0, <[u8]>::len));
    out.extend_from_slice(b"NATS/1.0\r\n");
    if let Some(block) = own {
        for line in block.split(|&b| b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break;
            }
            if line.starts_with(b"Nats-Expected-") || line.starts_with(STREAM_SOURCE.as_bytes()) {
                continue;
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    let (stream, rest) = key.split_once(' ').unwrap_or((key, "> >"));
    out.extend_from_slice(format!("{STREAM_SOURCE}: {stream} {seq} {rest} ").as_bytes());
    out.extend_from_slice(subject);
    out.extend_from_slice(b"\r\n\r\n");
    bytes::Bytes::from(out)
}

/// The source a stored message came from, if it has a [`STREAM_SOURCE`] header.
pub fn sourced_from(headers: &[u8]) -> Option<SourcedFrom> {
    let value = std::str::from_utf8(crate::header_value(headers, STREAM_SOURCE)?).ok()?;
    let tokens: Vec<&str> = value.split(' ').collect();
    match tokens.as_slice() {
        [stream, seq, filter, dest, ..] => Some(SourcedFrom {
            key: format!("{stream} {filter} {dest}"),
            seq: seq.parse().ok()?,
        }),
        _ => None,
    }
}

/// nats-server's checks of `mirror` and `sources` (`checkStreamCfg`), in its order.
pub(crate) fn check(
    mirror: Option<&StreamSource>,
    sources: Option<&[StreamSource]>,
    subjects: &[String],
) -> Result<(), ApiError> {
    if let Some(mirror) = mirror {
        if !subjects.is_empty() {
            return Err(ApiError::new(
                400,
                10034,
                "stream mirrors can not contain subjects",
            ));
        }
        if sources.is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::new(
                400,
                10031,
                "stream mirrors can not also contain other sources",
            ));
        }
        mirror.check(Role::Mirror)?;
    }
    let sources = sources.unwrap_or_default();
    for (i, source) in sources.iter().enumerate() {
        source.check(Role::Source)?;
        let identity = source.identity();
        if sources[..i]
            .iter()
            .any(|other| other.identity() == identity)
        {
            return Err(ApiError::new(
                400,
                10140,
                "duplicate source configuration detected",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "source_test.rs"]
mod tests;
