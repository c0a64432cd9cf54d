//! The JetStream API error catalog: nats-server's `{code, err_code, description}` triples for the
//! stream operations natrix serves, with the texts of nats-server 2.15.1 (`server/errors.json`,
//! checked against a running 2.15.1 and 2.9.10).

use serde::{Deserialize, Serialize};

/// One JetStream API error, serialised exactly as nats-server nests it under `"error"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{description} ({code}/{err_code})")]
pub struct ApiError {
    /// HTTP-like status (400, 404, 500, 503).
    pub code: u16,
    /// JetStream error code (`err_code`, e.g. 10059).
    pub err_code: u16,
    pub description: String,
}

impl ApiError {
    pub fn new(code: u16, err_code: u16, description: impl Into<String>) -> ApiError {
        ApiError {
            code,
            err_code,
            description: description.into(),
        }
    }

    /// A whole API response carrying only this error:
    /// `{"type":"io.nats.jetstream.api.v1.<kind>_response","error":{...}}`.
    pub fn response_json(&self, kind: &str) -> String {
        let error = serde_json::to_string(self).unwrap_or_default();
        let kind = serde_json::to_string(&format!("io.nats.jetstream.api.v1.{kind}_response"))
            .unwrap_or_default();
        crate::info::go_json_escape(format!("{{\"type\":{kind},\"error\":{error}}}"))
    }

    // --- general -------------------------------------------------------------------------

    /// 10003 (400).
    pub fn bad_request() -> ApiError {
        ApiError::new(400, 10003, "bad request")
    }
    /// 10025 (400) `invalid JSON: {err}`.
    pub fn invalid_json(err: impl std::fmt::Display) -> ApiError {
        ApiError::new(400, 10025, format!("invalid JSON: {err}"))
    }
    /// 10023 (503).
    pub fn insufficient_resources() -> ApiError {
        ApiError::new(503, 10023, "insufficient resources")
    }
    /// 10047 (500).
    pub fn storage_resources_exceeded() -> ApiError {
        ApiError::new(500, 10047, "insufficient storage resources available")
    }
    /// 10028 (500).
    pub fn memory_resources_exceeded() -> ApiError {
        ApiError::new(500, 10028, "insufficient memory resources available")
    }

    // --- stream lifecycle ----------------------------------------------------------------

    /// 10059 (404).
    pub fn stream_not_found() -> ApiError {
        ApiError::new(404, 10059, "stream not found")
    }
    /// 10058 (400).
    pub fn stream_name_exists() -> ApiError {
        ApiError::new(
            400,
            10058,
            "stream name already in use with a different configuration",
        )
    }
    /// 10065 (400).
    pub fn stream_subject_overlap() -> ApiError {
        ApiError::new(400, 10065, "subjects overlap with an existing stream")
    }
    /// 10056 (400): the name in the API subject differs from the config's.
    pub fn stream_mismatch() -> ApiError {
        ApiError::new(400, 10056, "stream name in subject does not match request")
    }
    /// 10052 (500) with nats-server's validation text.
    pub fn stream_invalid_config(text: impl Into<String>) -> ApiError {
        ApiError::new(500, 10052, text)
    }
    /// 10155 (400): the stream's `subject_transform` source is not a subject.
    pub fn stream_transform_invalid_source(text: impl std::fmt::Display) -> ApiError {
        ApiError::new(400, 10155, format!("stream transform source: {text}"))
    }
    /// 10156 (400): the stream's `subject_transform` destination is not valid.
    pub fn stream_transform_invalid_destination(text: impl std::fmt::Display) -> ApiError {
        ApiError::new(400, 10156, format!("stream transform: {text}"))
    }
    /// 10128 (400).
    pub fn stream_name_contains_path_separators() -> ApiError {
        ApiError::new(400, 10128, "Stream name can not contain path separators")
    }
    /// 10133 (400).
    pub fn replicas_negative() -> ApiError {
        ApiError::new(400, 10133, "replicas count cannot be negative")
    }
    /// 10074 (500): the node decides this (it knows whether it is clustered).
    pub fn replicas_not_supported() -> ApiError {
        ApiError::new(
            500,
            10074,
            "replicas > 1 not supported in non-clustered mode",
        )
    }
    /// 10061 (400).
    pub fn replicas_not_updatable() -> ApiError {
        ApiError::new(400, 10061, "Replicas configuration can not be updated")
    }
    /// 10055 (400).
    pub fn mirror_not_updatable() -> ApiError {
        ApiError::new(400, 10055, "stream mirror configuration can not be updated")
    }
    /// 10027 (400).
    pub fn maximum_streams_limit() -> ApiError {
        ApiError::new(400, 10027, "maximum number of streams reached")
    }
    /// 10026 (400).
    pub fn maximum_consumers_limit() -> ApiError {
        ApiError::new(400, 10026, "maximum consumers limit reached")
    }
    /// 10002 (400): a publish would take the account past its JetStream storage limit.
    pub fn account_resources_exceeded() -> ApiError {
        ApiError::new(400, 10002, "resource limits exceeded for account")
    }
    /// 10039 (503): the client's account has no JetStream.
    pub fn jetstream_not_enabled_for_account() -> ApiError {
        ApiError::new(503, 10039, "JetStream not enabled for account")
    }
    /// 10113 (400).
    pub fn stream_max_bytes_required() -> ApiError {
        ApiError::new(
            400,
            10113,
            "account requires a stream config to have max bytes set",
        )
    }
    /// 10122 (400).
    pub fn stream_max_stream_bytes_exceeded() -> ApiError {
        ApiError::new(
            400,
            10122,
            "stream max bytes exceeds account limit max stream bytes",
        )
    }

    // --- publish -------------------------------------------------------------------------

    /// 10109 (400).
    pub fn stream_sealed() -> ApiError {
        ApiError::new(400, 10109, "invalid operation on sealed stream")
    }
    /// 10054 (400).
    pub fn message_exceeds_maximum() -> ApiError {
        ApiError::new(400, 10054, "message size exceeds maximum allowed")
    }
    /// 10097 (400).
    pub fn header_exceeds_maximum() -> ApiError {
        ApiError::new(400, 10097, "header size exceeds maximum allowed of 64k")
    }
    /// 10060 (400).
    pub fn expected_stream_mismatch() -> ApiError {
        ApiError::new(400, 10060, "expected stream does not match")
    }
    /// 10071 (400) `wrong last sequence: {seq}` (the stream's, or the subject's, last sequence).
    pub fn wrong_last_sequence(seq: u64) -> ApiError {
        ApiError::new(400, 10071, format!("wrong last sequence: {seq}"))
    }
    /// 10070 (400) `wrong last msg ID: {id}` (the stream's last message id, possibly empty).
    pub fn wrong_last_msg_id(id: &str) -> ApiError {
        ApiError::new(400, 10070, format!("wrong last msg ID: {id}"))
    }
    /// 10111 (500) `rollup not permitted`.
    pub fn rollup_not_permitted() -> ApiError {
        ApiError::new(500, 10111, "rollup not permitted")
    }
    /// 10111 (500) `rollup value invalid: "{value}"`.
    pub fn rollup_value_invalid(value: &str) -> ApiError {
        let quoted = serde_json::to_string(value).unwrap_or_default();
        ApiError::new(500, 10111, format!("rollup value invalid: {quoted}"))
    }
    /// 10077 (503) with a store error text such as `maximum messages exceeded`.
    pub fn store_failed(text: impl Into<String>) -> ApiError {
        ApiError::new(503, 10077, text)
    }
    /// 10077 `maximum messages exceeded` (discard new, max_msgs).
    pub fn max_msgs_exceeded() -> ApiError {
        ApiError::store_failed("maximum messages exceeded")
    }
    /// 10077 `maximum bytes exceeded` (discard new, max_bytes).
    pub fn max_bytes_exceeded() -> ApiError {
        ApiError::store_failed("maximum bytes exceeded")
    }
    /// 10077 `maximum messages per subject exceeded` (discard_new_per_subject).
    pub fn max_msgs_per_subject_exceeded() -> ApiError {
        ApiError::store_failed("maximum messages per subject exceeded")
    }

    // --- delete / purge ------------------------------------------------------------------

    /// 10057 (500) `message delete not permitted` (deny_delete).
    pub fn delete_not_permitted() -> ApiError {
        ApiError::new(500, 10057, "message delete not permitted")
    }
    /// 10057 (500) with a store text (`no message found`, `stream store EOF`).
    pub fn msg_delete_failed(text: impl Into<String>) -> ApiError {
        ApiError::new(500, 10057, text)
    }
    /// 10043 (400) `sequence {seq} not found`.
    pub fn sequence_not_found(seq: u64) -> ApiError {
        ApiError::new(400, 10043, format!("sequence {seq} not found"))
    }
    /// 10110 (500) `stream purge not permitted` (deny_purge).
    pub fn purge_not_permitted() -> ApiError {
        ApiError::new(500, 10110, "stream purge not permitted")
    }
    /// 10037 (404).
    pub fn no_message_found() -> ApiError {
        ApiError::new(404, 10037, "no message found")
    }
    /// 10117 (500).
    pub fn info_max_subjects() -> ApiError {
        ApiError::new(500, 10117, "subject details would exceed maximum allowed")
    }

    // --- consumers (nats-server 2.9.10's texts unless noted) -------------------------------

    /// 10014 (404).
    pub fn consumer_not_found() -> ApiError {
        ApiError::new(404, 10014, "consumer not found")
    }
    /// 10013 (400): a push consumer's deliver subject is bound, or the name is taken.
    pub fn consumer_name_exists() -> ApiError {
        ApiError::new(400, 10013, "consumer name already in use")
    }
    /// 10012 (500) with the reason (`deliver policy can not be updated`, ...).
    pub fn consumer_create(text: impl Into<String>) -> ApiError {
        ApiError::new(500, 10012, text)
    }
    /// 10103 (400).
    pub fn consumer_bad_durable_name() -> ApiError {
        ApiError::new(400, 10103, "durable name can not contain '.', '*', '>'")
    }
    /// 10132 (400).
    pub fn consumer_durable_and_name_mismatch() -> ApiError {
        ApiError::new(
            400,
            10132,
            "Consumer Durable and Name have to be equal if both are provided",
        )
    }
    /// 10183 (400), nats-server 2.11+.
    pub fn consumer_ack_wait_negative() -> ApiError {
        ApiError::new(400, 10183, "consumer ack wait needs to be positive")
    }
    /// 10184 (400), nats-server 2.11+.
    pub fn consumer_backoff_negative() -> ApiError {
        ApiError::new(400, 10184, "consumer backoff needs to be positive")
    }
    /// 10116 (400).
    pub fn consumer_max_deliver_backoff() -> ApiError {
        ApiError::new(
            400,
            10116,
            "max deliver is required to be > length of backoff values",
        )
    }
    /// 10107 (400).
    pub fn consumer_description_too_long() -> ApiError {
        ApiError::new(
            400,
            10107,
            "consumer description is too long, maximum allowed is 4096",
        )
    }
    /// 10079 (400).
    pub fn consumer_deliver_to_wildcards() -> ApiError {
        ApiError::new(400, 10079, "consumer deliver subject has wildcards")
    }
    /// 10112 (400).
    pub fn consumer_invalid_deliver_subject() -> ApiError {
        ApiError::new(400, 10112, "invalid push consumer deliver subject")
    }
    /// 10081 (400).
    pub fn consumer_deliver_cycle() -> ApiError {
        ApiError::new(400, 10081, "consumer deliver subject forms a cycle")
    }
    /// 10080 (400).
    pub fn consumer_push_max_waiting() -> ApiError {
        ApiError::new(400, 10080, "consumer in push mode can not set max waiting")
    }
    /// 10082 (400).
    pub fn consumer_max_pending_ack_policy_required() -> ApiError {
        ApiError::new(
            400,
            10082,
            "consumer requires ack policy for max ack pending",
        )
    }
    /// 10083 (400).
    pub fn consumer_small_heartbeat() -> ApiError {
        ApiError::new(400, 10083, "consumer idle heartbeat needs to be >= 100ms")
    }
    /// 10084 (400).
    pub fn consumer_pull_requires_ack() -> ApiError {
        ApiError::new(400, 10084, "consumer in pull mode requires ack policy")
    }
    /// 10086 (400).
    pub fn consumer_pull_with_rate_limit() -> ApiError {
        ApiError::new(
            400,
            10086,
            "consumer in pull mode can not have rate limit set",
        )
    }
    /// 10087 (400).
    pub fn consumer_max_waiting_negative() -> ApiError {
        ApiError::new(400, 10087, "consumer max waiting needs to be positive")
    }
    /// 10088 (400).
    pub fn consumer_heartbeat_requires_push() -> ApiError {
        ApiError::new(
            400,
            10088,
            "consumer idle heartbeat requires a push based consumer",
        )
    }
    /// 10089 (400).
    pub fn consumer_flow_control_requires_push() -> ApiError {
        ApiError::new(
            400,
            10089,
            "consumer flow control requires a push based consumer",
        )
    }
    /// 10114 (400).
    pub fn consumer_max_request_batch_negative() -> ApiError {
        ApiError::new(400, 10114, "consumer max request batch needs to be > 0")
    }
    /// 10115 (400).
    pub fn consumer_max_request_expires_too_small() -> ApiError {
        ApiError::new(
            400,
            10115,
            "consumer max request expires needs to be >= 1ms",
        )
    }
    /// 10121 (400), nats-server 2.10+ (stream `consumer_limits`).
    pub fn consumer_max_ack_pending_excess(limit: i64) -> ApiError {
        ApiError::new(
            400,
            10121,
            format!("consumer max ack pending exceeds system limit of {limit}"),
        )
    }
    /// 10153 (400), nats-server 2.10+ (stream `consumer_limits`).
    pub fn consumer_inactive_threshold_excess(limit_ns: i64) -> ApiError {
        ApiError::new(
            400,
            10153,
            format!(
                "consumer inactive threshold exceeds system limit of {}",
                crate::consumer_config::go_duration(limit_ns)
            ),
        )
    }
    /// 10093 (400).
    pub fn consumer_filter_not_matching() -> ApiError {
        ApiError::new(
            400,
            10093,
            "consumer filter subject is not a valid subset of the interest subjects",
        )
    }
    /// 10136 (400), nats-server 2.10+.
    pub fn consumer_duplicate_filter_subjects() -> ApiError {
        ApiError::new(
            400,
            10136,
            "consumer cannot have both FilterSubject and FilterSubjects specified",
        )
    }
    /// 10138 (400), nats-server 2.10+.
    pub fn consumer_overlapping_filter_subjects() -> ApiError {
        ApiError::new(400, 10138, "consumer subject filters cannot overlap")
    }
    /// 10094 (400) with the policy text.
    pub fn consumer_invalid_policy(text: impl Into<String>) -> ApiError {
        ApiError::new(400, 10094, text)
    }
    /// 10095 (400) with Go's parse error text.
    pub fn consumer_invalid_sampling(err: &str) -> ApiError {
        ApiError::new(
            400,
            10095,
            format!("failed to parse consumer sampling configuration: {err}"),
        )
    }
    /// 10108 (400).
    pub fn consumer_flow_control_needs_heartbeats() -> ApiError {
        ApiError::new(
            400,
            10108,
            "consumer with flow control also needs heartbeats",
        )
    }
    /// 10098 (400).
    pub fn consumer_wq_requires_explicit_ack() -> ApiError {
        ApiError::new(400, 10098, "workqueue stream requires explicit ack")
    }
    /// 10099 (400).
    pub fn consumer_wq_multiple_unfiltered() -> ApiError {
        ApiError::new(
            400,
            10099,
            "multiple non-filtered consumers not allowed on workqueue stream",
        )
    }
    /// 10100 (400).
    pub fn consumer_wq_not_unique() -> ApiError {
        ApiError::new(
            400,
            10100,
            "filtered consumer not unique on workqueue stream",
        )
    }
    /// 10101 (400).
    pub fn consumer_wq_not_deliver_all() -> ApiError {
        ApiError::new(
            400,
            10101,
            "consumer must be deliver all on workqueue stream",
        )
    }
    /// 10148 (400), nats-server 2.10+ (`action: create`).
    pub fn consumer_already_exists() -> ApiError {
        ApiError::new(400, 10148, "consumer already exists")
    }
    /// 10149 (400), nats-server 2.10+ (`action: update`).
    pub fn consumer_does_not_exist() -> ApiError {
        ApiError::new(400, 10149, "consumer does not exist")
    }
    /// 10020 (400).
    pub fn consumer_ephemeral_with_durable_name() -> ApiError {
        ApiError::new(
            400,
            10020,
            "consumer expected to be ephemeral but a durable name was set in request",
        )
    }
    /// 10017 (400).
    pub fn consumer_durable_name_not_match_subject() -> ApiError {
        ApiError::new(
            400,
            10017,
            "consumer name in subject does not match durable name in request",
        )
    }
    /// 10018 (400).
    pub fn consumer_durable_name_not_set() -> ApiError {
        ApiError::new(
            400,
            10018,
            "consumer expected to be durable but a durable name was not set",
        )
    }
    /// 10131 (400).
    pub fn consumer_create_filter_subject_mismatch() -> ApiError {
        ApiError::new(
            400,
            10131,
            "Consumer create request did not match filtered subject from create subject",
        )
    }

    // --- cluster (texts checked against running 2.15.1 and 2.9.10 clusters) -----------------

    /// 10005 (400) with the placement failure, e.g. `no suitable peers for placement, tags not
    /// matched ['az:1']` (`natrix_cluster::NoSuitablePeers` builds it).
    pub fn cluster_no_peers(text: impl Into<String>) -> ApiError {
        ApiError::new(400, 10005, text)
    }
    /// 10040 (400): a peer named in an assignment is not a node of the cluster.
    pub fn cluster_peer_not_member() -> ApiError {
        ApiError::new(400, 10040, "peer not a member")
    }
    /// 10044 (400): the server to remove (or mark offline) is not a node of the cluster.
    pub fn cluster_server_not_member() -> ApiError {
        ApiError::new(400, 10044, "server is not a member of the cluster")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_matches_nats_server_bytes() {
        assert_eq!(
            ApiError::stream_not_found().response_json("stream_info"),
            r#"{"type":"io.nats.jetstream.api.v1.stream_info_response","error":{"code":404,"err_code":10059,"description":"stream not found"}}"#
        );
    }

    #[test]
    fn formatted_texts_match_nats_server() {
        assert_eq!(
            ApiError::wrong_last_sequence(3).description,
            "wrong last sequence: 3"
        );
        assert_eq!(
            ApiError::wrong_last_msg_id("").description,
            "wrong last msg ID: "
        );
        assert_eq!(
            ApiError::rollup_value_invalid("bogus").description,
            "rollup value invalid: \"bogus\""
        );
        assert_eq!(
            ApiError::sequence_not_found(2).description,
            "sequence 2 not found"
        );
        assert_eq!(ApiError::max_msgs_exceeded().code, 503);
        assert_eq!(ApiError::max_msgs_exceeded().err_code, 10077);
    }
}
