//! `$JS.API.DIRECT.GET.<stream>[.<subject>]`: a stored message answered as itself, with the
//! `Nats-Stream`, `Nats-Subject`, `Nats-Sequence` and `Nats-Time-Stamp` headers nats-server adds,
//! or a status-only reply (`404 Message Not Found`; `408 Empty Request`, `408 Malformed Request`
//! or `408 Bad Request` for a request without, with unreadable or with conflicting options). Only
//! streams with `allow_direct` answer.

use bytes::Bytes;
use natrix_stream::{StoredMsg, headers_with, rfc3339_nanos};

use super::JetStream;
use super::api::ApiResponse;
use super::stream_api::{MsgGetRequest, find_msg};

const NO_RESPONDERS: &[u8] = b"NATS/1.0 503\r\n\r\n";
const NOT_FOUND: &[u8] = b"NATS/1.0 404 Message Not Found\r\n\r\n";
const EMPTY: &[u8] = b"NATS/1.0 408 Empty Request\r\n\r\n";
const MALFORMED: &[u8] = b"NATS/1.0 408 Malformed Request\r\n\r\n";
const BAD: &[u8] = b"NATS/1.0 408 Bad Request\r\n\r\n";

fn status(headers: &'static [u8]) -> ApiResponse {
    ApiResponse::Msg {
        headers: Some(Bytes::from_static(headers)),
        payload: Bytes::new(),
    }
}

pub(crate) async fn get(
    js: &JetStream,
    stream: &str,
    last_by_subject: Option<&str>,
    payload: &[u8],
) -> ApiResponse {
    // nats-server subscribes the direct-get subjects only for streams with `allow_direct`: any
    // other requester gets the no-responders status, so answer with exactly that.
    let Some(host) = js.stream(stream) else {
        return status(NO_RESPONDERS);
    };
    if !host.config().allow_direct {
        return status(NO_RESPONDERS);
    }
    let req = match last_by_subject {
        Some(subject) => MsgGetRequest {
            last_by_subj: subject.to_owned(),
            ..MsgGetRequest::default()
        },
        None if payload.is_empty() => return status(EMPTY),
        None => match serde_json::from_slice::<MsgGetRequest>(payload) {
            Ok(req) if req.is_empty() => return status(EMPTY),
            Ok(req) if req.conflicts() => return status(BAD),
            Ok(req) => req,
            Err(_) => return status(MALFORMED),
        },
    };
    match find_msg(&host, &req).await {
        Ok(Some(msg)) => message(stream, msg),
        _ => status(NOT_FOUND),
    }
}

/// The stored message with the direct-get headers appended to its own.
fn message(stream: &str, msg: StoredMsg) -> ApiResponse {
    let seq = msg.seq.to_string();
    let time = rfc3339_nanos(msg.timestamp_ns);
    let h = headers_with(
        msg.headers.as_deref(),
        &[
            ("Nats-Stream", stream.as_bytes()),
            ("Nats-Subject", &msg.subject),
            ("Nats-Sequence", seq.as_bytes()),
            ("Nats-Time-Stamp", time.as_bytes()),
        ],
    );
    ApiResponse::Msg {
        headers: Some(h),
        payload: msg.payload,
    }
}
