//! What the store keeps about a stream besides its messages: its config and creation time, as
//! JSON (the API's own encoding, portable across architectures and readable in a dump).

use bytes::{BufMut, Bytes, BytesMut};
use natrix_stream::{ConsumerConfig, ConsumerState, StreamConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StreamRecord {
    pub config: StreamConfig,
    /// Creation time, Unix nanoseconds.
    pub created_ns: i64,
    /// The stream's Raft group when it is replicated (clustered JetStream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u64>,
    /// A snapshot being received from the stream's leader is stored under this record's id
    /// until it replaces the stream; a staging record found at start is left over from a
    /// transfer that never finished, and is removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staging: bool,
}

impl StreamRecord {
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(bytes: &[u8]) -> Result<StreamRecord, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("stream record: {e}"))
    }

    /// Whether `bytes` are a staging record, whatever else they hold.
    pub fn is_staging(bytes: &[u8]) -> bool {
        #[derive(Deserialize)]
        struct Flag {
            #[serde(default)]
            staging: bool,
        }
        serde_json::from_slice::<Flag>(bytes).is_ok_and(|f| f.staging)
    }
}

/// A consumer as the store keeps it: `u32` big-endian length of a JSON header (config and
/// creation time), the header, then the state machine's own portable state encoding.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerRecord {
    pub config: ConsumerConfig,
    pub created_ns: i64,
    pub state: ConsumerState,
}

#[derive(Serialize, Deserialize)]
struct ConsumerHeader {
    config: ConsumerConfig,
    created_ns: i64,
}

impl ConsumerRecord {
    pub fn encode(config: &ConsumerConfig, created_ns: i64, state: &ConsumerState) -> Bytes {
        let header = serde_json::to_vec(&ConsumerHeader {
            config: config.clone(),
            created_ns,
        })
        .unwrap_or_default();
        let state = state.encode();
        let mut out = BytesMut::with_capacity(4 + header.len() + state.len());
        // A config is a few KiB at most, far below u32::MAX.
        out.put_u32(u32::try_from(header.len()).unwrap_or(u32::MAX));
        out.put_slice(&header);
        out.put_slice(&state);
        out.freeze()
    }

    pub fn decode(bytes: &[u8]) -> Result<ConsumerRecord, String> {
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or("consumer record is truncated")?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err("consumer record header is truncated".into());
        }
        let (header, state) = rest.split_at(len);
        let header: ConsumerHeader =
            serde_json::from_slice(header).map_err(|e| format!("consumer record: {e}"))?;
        let state = ConsumerState::decode(state).map_err(|e| format!("consumer state: {e}"))?;
        Ok(ConsumerRecord {
            config: header.config,
            created_ns: header.created_ns,
            state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_record_round_trips_and_truncation_is_an_error() {
        let config = ConsumerConfig {
            durable_name: "worker".into(),
            ..ConsumerConfig::default()
        };
        let mut state = ConsumerState::default();
        state.delivered.stream_seq = 7;
        state.delivered.consumer_seq = 9;
        let bytes = ConsumerRecord::encode(&config, 42, &state);
        let back = ConsumerRecord::decode(&bytes).expect("decodes");
        assert_eq!(back.config, config);
        assert_eq!(back.created_ns, 42);
        assert_eq!(back.state, state);
        for n in 0..bytes.len() {
            assert!(ConsumerRecord::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn a_stream_record_round_trips_and_garbage_is_an_error() {
        let record = StreamRecord {
            config: StreamConfig::named("ORDERS", &["orders.>"]),
            created_ns: 1_700_000_000_123_456_789,
            group_id: Some(7),
            staging: false,
        };
        let back = StreamRecord::decode(&record.encode()).expect("decodes");
        assert_eq!(back.config, record.config);
        assert_eq!(back.created_ns, record.created_ns);
        assert_eq!(back.group_id, Some(7));
        // Records written before streams were replicated have no group.
        let old =
            StreamRecord::decode(br#"{"config":{"name":"S"},"created_ns":1}"#).expect("decodes");
        assert_eq!(old.group_id, None);
        assert!(StreamRecord::decode(b"{not json").is_err());
    }
}
