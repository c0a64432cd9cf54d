//! The consumer info object (`consumer_info_response`, `consumer_create_response`) with
//! nats-server's field names and order, built from a [`Consumer`] and its stream.

use serde::{Deserialize, Serialize};

use crate::consumer::{Consumer, SequencePair, StreamView};
use crate::consumer_config::ConsumerConfig;
use crate::info::rfc3339_nanos;

/// `delivered` / `ack_floor` of a consumer info.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SequenceInfo {
    pub consumer_seq: u64,
    pub stream_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active: Option<String>,
}

impl SequenceInfo {
    fn new(pair: SequencePair, last_active_ns: Option<i64>) -> SequenceInfo {
        SequenceInfo {
            consumer_seq: pair.consumer_seq,
            stream_seq: pair.stream_seq,
            last_active: last_active_ns.map(rfc3339_nanos),
        }
    }
}

/// A consumer's info, as nats-server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    pub stream_name: String,
    pub name: String,
    pub created: String,
    pub config: ConsumerConfig,
    pub delivered: SequenceInfo,
    pub ack_floor: SequenceInfo,
    pub num_ack_pending: u64,
    pub num_redelivered: u64,
    pub num_waiting: u64,
    pub num_pending: u64,
    /// `{"name":..,"leader":..,"replicas":[..]}`: the host's (it knows the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<serde_json::Value>,
    /// A push consumer whose deliver subject has interest: the host's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub push_bound: bool,
    /// The time of the report (nats-server 2.10+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<String>,
}

impl ConsumerInfo {
    /// The whole API response: `{"type":"io.nats.jetstream.api.v1.<kind>_response",...}` with
    /// `kind` `consumer_info` or `consumer_create`.
    pub fn response_json(&self, kind: &str) -> String {
        let body = serde_json::to_string(self).unwrap_or_default();
        let kind = serde_json::to_string(&format!("io.nats.jetstream.api.v1.{kind}_response"))
            .unwrap_or_default();
        match body.strip_prefix('{') {
            Some(rest) => format!("{{\"type\":{kind},{rest}"),
            None => body,
        }
    }
}

impl Consumer {
    /// The info of this consumer (named `name`) of stream `stream_name` as of `now_ns`;
    /// `num_waiting` is the pull queue's length. `cluster` and `push_bound` are left for the host.
    pub fn info(
        &self,
        stream_name: &str,
        name: &str,
        view: &impl StreamView,
        now_ns: i64,
        num_waiting: u64,
    ) -> ConsumerInfo {
        let state = self.state();
        ConsumerInfo {
            stream_name: stream_name.to_string(),
            name: name.to_string(),
            created: rfc3339_nanos(self.created_ns()),
            config: self.config().clone(),
            delivered: SequenceInfo::new(state.delivered, state.last_delivered_ns),
            ack_floor: SequenceInfo::new(state.ack_floor, state.last_ack_ns),
            num_ack_pending: self.num_ack_pending(),
            num_redelivered: self.num_redelivered(),
            num_waiting,
            num_pending: self.num_pending(view),
            cluster: None,
            push_bound: false,
            ts: Some(rfc3339_nanos(now_ns)),
        }
    }
}
