//! Stream republish (nats-server's `RePublish`, ADR-28): every message a stream stores whose
//! subject matches `src` is published again, at most once, to the subject the `src` → `dest`
//! transform makes of it, with headers naming where it is stored. Pure: the stream builds the
//! message, the node sends it once the message is stored (on the leader only, once replicated).

use bytes::Bytes;
use natrix_subject::SubjectTransform;
use serde::{Deserialize, Serialize};

use crate::{ApiError, StoredMsg, headers_with, rfc3339_nanos, subjects_overlap};

/// `republish` in a stream's config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RePublish {
    /// The subjects to republish; empty means all (`>`, which validation fills in).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub src: String,
    /// The subject template; empty republishes nothing (as in nats-server).
    #[serde(default)]
    pub dest: String,
    /// Republish the headers only, with the body's size in `Nats-Msg-Size`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub headers_only: bool,
}

impl RePublish {
    /// nats-server's checks (`checkStreamCfg`), with its texts: the destination may not feed the
    /// stream again and must form a valid transform with the source. Fills in the default source.
    pub(crate) fn validate(&mut self, subjects: &[String]) -> Result<(), ApiError> {
        if self.src.is_empty() {
            self.src = ">".into();
        }
        if subjects
            .iter()
            .any(|s| subjects_overlap(self.dest.as_bytes(), s.as_bytes()))
        {
            return Err(ApiError::stream_invalid_config(
                "stream configuration for republish destination forms a cycle",
            ));
        }
        self.compile().map(|_| ())
    }

    /// The compiled transform; `None` when nothing is republished (an empty destination).
    pub(crate) fn compile(&self) -> Result<Option<Republisher>, ApiError> {
        if self.dest.is_empty() {
            return Ok(None);
        }
        let src = if self.src.is_empty() { ">" } else { &self.src };
        let transform = SubjectTransform::new(src, &self.dest).map_err(|_| {
            ApiError::stream_invalid_config(format!(
                "stream configuration for republish with transform from '{src}' to '{}' not valid",
                self.dest
            ))
        })?;
        Ok(Some(Republisher {
            transform,
            headers_only: self.headers_only,
        }))
    }
}

/// A stream's compiled republish setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Republisher {
    transform: SubjectTransform,
    headers_only: bool,
}

/// A message to publish again, built by the stream for a message it stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Republished {
    pub subject: Bytes,
    pub headers: Bytes,
    pub payload: Bytes,
}

impl Republisher {
    /// The republished copy of `msg` (stored in `stream`, the subject's previous message at
    /// `last_subject_seq`, 0 for none), or `None` if `src` does not match its subject. The
    /// message's own headers come first, then nats-server's, in its order.
    pub(crate) fn message(
        &self,
        stream: &str,
        msg: &StoredMsg,
        last_subject_seq: u64,
    ) -> Option<Republished> {
        let subject = self.transform.apply(&msg.subject)?;
        let seq = msg.seq.to_string();
        let time = rfc3339_nanos(msg.timestamp_ns);
        let last = last_subject_seq.to_string();
        let size = msg.payload.len().to_string();
        let mut lines: Vec<(&str, &[u8])> = vec![
            ("Nats-Stream", stream.as_bytes()),
            ("Nats-Subject", &msg.subject),
            ("Nats-Sequence", seq.as_bytes()),
            ("Nats-Time-Stamp", time.as_bytes()),
            ("Nats-Last-Sequence", last.as_bytes()),
        ];
        let payload = if self.headers_only {
            lines.push(("Nats-Msg-Size", size.as_bytes()));
            Bytes::new()
        } else {
            msg.payload.clone()
        };
        Some(Republished {
            subject: Bytes::from(subject),
            headers: headers_with(msg.headers.as_deref(), &lines),
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::RePublish;
    use crate::StoredMsg;

    fn republish(src: &str, dest: &str, headers_only: bool) -> RePublish {
        RePublish {
            src: src.into(),
            dest: dest.into(),
            headers_only,
        }
    }

    fn stored(subject: &str, headers: Option<&str>, payload: &str) -> StoredMsg {
        StoredMsg {
            seq: 7,
            timestamp_ns: 1_700_000_000_123_456_789,
            subject: Bytes::copy_from_slice(subject.as_bytes()),
            headers: headers.map(|h| Bytes::copy_from_slice(h.as_bytes())),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
        }
    }

    #[test]
    fn validation_matches_nats_server() {
        let subjects = vec!["foo.>".to_string()];
        let mut defaulted = republish("", "rp.>", false);
        assert_eq!(defaulted.validate(&subjects), Ok(()));
        assert_eq!(defaulted.src, ">");
        for (src, dest) in [("foo.>", "foo.bar"), ("foo.>", "foo.>"), ("foo.*", ">")] {
            let err = republish(src, dest, false)
                .validate(&subjects)
                .expect_err("a cycle");
            assert_eq!(
                err.description,
                "stream configuration for republish destination forms a cycle"
            );
            assert_eq!(err.err_code, 10052);
        }
        let err = republish("foo.*", "rp.*", false)
            .validate(&subjects)
            .expect_err("not a transform");
        assert_eq!(
            err.description,
            "stream configuration for republish with transform from 'foo.*' to 'rp.*' not valid"
        );
        // An empty destination is accepted and republishes nothing.
        let mut empty = republish("foo.*", "", false);
        assert_eq!(empty.validate(&subjects), Ok(()));
        assert_eq!(empty.compile(), Ok(None));
    }

    #[test]
    fn the_copy_carries_where_the_message_is_stored() -> Result<(), Box<dyn std::error::Error>> {
        let republisher = republish("foo.*", "rp.$1", false)
            .compile()?
            .ok_or("no republisher")?;
        let copy = republisher
            .message("M", &stored("foo.a", None, "hello"), 3)
            .ok_or("not republished")?;
        assert_eq!(copy.subject, "rp.a");
        assert_eq!(copy.payload, "hello");
        assert_eq!(
            copy.headers,
            "NATS/1.0\r\nNats-Stream: M\r\nNats-Subject: foo.a\r\nNats-Sequence: 7\r\n\
             Nats-Time-Stamp: 2023-11-14T22:13:20.123456789Z\r\nNats-Last-Sequence: 3\r\n\r\n"
        );
        assert_eq!(
            republisher.message("M", &stored("foo.a.b", None, "x"), 0),
            None
        );
        Ok(())
    }

    #[test]
    fn own_headers_stay_first_and_headers_only_sends_the_size()
    -> Result<(), Box<dyn std::error::Error>> {
        let republisher = republish("", "ho.>", true)
            .compile()?
            .ok_or("no republisher")?;
        let copy = republisher
            .message(
                "M",
                &stored("foo.x", Some("NATS/1.0\r\nX-A: 1\r\n\r\n"), "12345"),
                0,
            )
            .ok_or("not republished")?;
        assert_eq!(copy.subject, "ho.foo.x");
        assert!(copy.payload.is_empty());
        assert_eq!(
            copy.headers,
            "NATS/1.0\r\nX-A: 1\r\nNats-Stream: M\r\nNats-Subject: foo.x\r\nNats-Sequence: 7\r\n\
             Nats-Time-Stamp: 2023-11-14T22:13:20.123456789Z\r\nNats-Last-Sequence: 0\r\n\
             Nats-Msg-Size: 5\r\n\r\n"
        );
        Ok(())
    }
}
