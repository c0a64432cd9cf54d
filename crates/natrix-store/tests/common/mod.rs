//! Helpers shared by the integration tests.
#![allow(dead_code)]

use bytes::Bytes;
use natrix_store::{StoreOp, StoredMsg, StreamBatch};

/// A message whose bytes are a function of `(stream_id, seq)`, so a reader can check them.
pub fn msg(stream_id: u64, seq: u64) -> StoredMsg {
    let payload = format!("stream {stream_id} seq {seq} ").repeat(6);
    StoredMsg {
        seq,
        timestamp_ns: 1_764_115_200_000_000_000 + seq as i64,
        subject: Bytes::from(format!("orders.{stream_id}.{}", seq % 7)),
        headers: (!seq.is_multiple_of(2))
            .then(|| Bytes::from(format!("NATS/1.0\r\nSeq: {seq}\r\n\r\n"))),
        payload: Bytes::from(payload),
    }
}

pub fn append(stream_id: u64, seqs: std::ops::RangeInclusive<u64>) -> StreamBatch {
    let applied = *seqs.end();
    StreamBatch {
        stream_id,
        ops: seqs.map(|s| StoreOp::Append(msg(stream_id, s))).collect(),
        applied,
        position: Some(Bytes::copy_from_slice(&applied.to_be_bytes())),
        consumer_updates: Vec::new(),
    }
}
