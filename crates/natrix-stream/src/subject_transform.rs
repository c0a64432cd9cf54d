//! A stream's `subject_transform` (nats-server 2.10+): every message the stream takes in whose
//! subject matches `src` is stored under the subject the `src` → `dest` transform makes of it.
//! The stored subject is the one every later rule sees (per-subject limits, expected last
//! subject sequence, consumer filters, republish).

use natrix_subject::{SubjectTransform, TransformError};
use serde::{Deserialize, Serialize};

use crate::ApiError;

/// `subject_transform` in a stream's config. Both fields are always shown, as nats-server does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubjectTransformConfig {
    /// The subjects to transform; empty means all.
    #[serde(default)]
    pub src: String,
    /// The subject template; empty transforms nothing.
    #[serde(default)]
    pub dest: String,
}

impl SubjectTransformConfig {
    /// The subjects it takes: `src`, or everything (`>`) when empty.
    pub fn source(&self) -> &str {
        if self.src.is_empty() { ">" } else { &self.src }
    }

    /// The compiled transform (`None` for an empty destination) or why it is not one; each
    /// user words the error its own way.
    pub fn transform(&self) -> Result<Option<SubjectTransform>, TransformError> {
        if self.dest.is_empty() {
            return Ok(None);
        }
        SubjectTransform::new(self.source(), &self.dest).map(Some)
    }

    /// [`transform`](Self::transform) with nats-server's errors for a stream's own transform:
    /// 10155 for the source, 10156 for the destination.
    pub(crate) fn compile(&self) -> Result<Option<SubjectTransform>, ApiError> {
        self.transform().map_err(|err| match err {
            TransformError::InvalidSource(_) => ApiError::stream_transform_invalid_source(err),
            err => ApiError::stream_transform_invalid_destination(err),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::SubjectTransformConfig;

    fn config(src: &str, dest: &str) -> SubjectTransformConfig {
        SubjectTransformConfig {
            src: src.into(),
            dest: dest.into(),
        }
    }

    #[test]
    fn errors_carry_nats_servers_codes_and_texts() {
        let source = config("foo..", "bar.x").compile().expect_err("bad source");
        assert_eq!(
            (source.code, source.err_code, source.description.as_str()),
            (400, 10155, "stream transform source: invalid subject foo..")
        );
        let dest = config("foo.*", "bar.$2")
            .compile()
            .expect_err("bad destination");
        assert_eq!(
            (dest.code, dest.err_code, dest.description.as_str()),
            (
                400,
                10156,
                "stream transform: invalid mapping destination: wildcard index out of range in \
                 $2: [2]"
            )
        );
        let star = config("foo.*", "bar.*").compile().expect_err("a wildcard");
        assert_eq!(star.description, "stream transform: invalid subject");
    }

    #[test]
    fn an_empty_destination_transforms_nothing_and_an_empty_source_everything() {
        assert_eq!(config("foo.*", "").compile(), Ok(None));
        assert_eq!(config("", "").compile(), Ok(None));
        let all = config("", "bar.>")
            .compile()
            .ok()
            .flatten()
            .expect("a transform");
        assert_eq!(all.apply(b"any.thing"), Some(b"bar.any.thing".to_vec()));
    }
}
