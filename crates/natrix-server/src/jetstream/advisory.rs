//! JetStream advisories on `$JS.EVENT.ADVISORY.>` that tools and clients listen for: stream and
//! consumer actions (created, updated, deleted), with nats-server's JSON.

use natrix_stream::rfc3339_nanos;
use serde::Serialize;

use super::now_ns;
use crate::state::ServerState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Create,
    Modify,
    Delete,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Modify => "modify",
            Action::Delete => "delete",
        }
    }

    fn subject_token(self) -> &'static str {
        match self {
            Action::Create => "CREATED",
            Action::Modify => "UPDATED",
            Action::Delete => "DELETED",
        }
    }
}

#[derive(Serialize)]
struct ActionAdvisory<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    timestamp: String,
    stream: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumer: Option<&'a str>,
    action: &'static str,
}

fn advisory_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// `$JS.EVENT.ADVISORY.STREAM.{CREATED,UPDATED,DELETED}.<stream>`.
pub(crate) fn stream_action(state: &ServerState, stream: &str, action: Action) {
    let body = ActionAdvisory {
        kind: "io.nats.jetstream.advisory.v1.stream_action",
        id: advisory_id(),
        timestamp: rfc3339_nanos(now_ns()),
        stream,
        consumer: None,
        action: action.as_str(),
    };
    let subject = format!(
        "$JS.EVENT.ADVISORY.STREAM.{}.{stream}",
        action.subject_token()
    );
    publish(state, &subject, &body);
}

/// `$JS.EVENT.ADVISORY.CONSUMER.{CREATED,DELETED}.<stream>.<consumer>`.
pub(crate) fn consumer_action(state: &ServerState, stream: &str, consumer: &str, action: Action) {
    let body = ActionAdvisory {
        kind: "io.nats.jetstream.advisory.v1.consumer_action",
        id: advisory_id(),
        timestamp: rfc3339_nanos(now_ns()),
        stream,
        consumer: Some(consumer),
        action: action.as_str(),
    };
    let subject = format!(
        "$JS.EVENT.ADVISORY.CONSUMER.{}.{stream}.{consumer}",
        action.subject_token()
    );
    publish(state, &subject, &body);
}

fn publish(state: &ServerState, subject: &str, body: &impl Serialize) {
    if let Ok(json) = serde_json::to_vec(body) {
        state.publish_internal(subject.as_bytes(), None, None, &json);
    }
}
