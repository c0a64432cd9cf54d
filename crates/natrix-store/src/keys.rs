//! Column families and the byte layout of every key and value this crate writes. All integers
//! are big-endian and fixed-width (never `usize`), so byte order is numeric order and the same
//! files are read by any machine.
//!
//! | CF          | key                                        | value                              |
//! |-------------|--------------------------------------------|------------------------------------|
//! | `msgs`      | `stream_id u64 | seq u64`                  | `StoredMsg::encode` (natrix-stream) |
//! | `consumers` | `stream_id u64 | consumer name (UTF-8)`    | opaque consumer state (caller's)   |
//! | `meta`      | `"stream_applied/" | stream_id u64`        | applied position `u64`             |
//! | `meta`      | `"stream_cfg/" | stream_id u64`            | opaque stream config (caller's)    |
//! | `meta`      | `"stream_pos/" | stream_id u64`            | opaque stream position (caller's)  |
//! | `meta`      | `"next_stream_id"`                         | next id to allocate `u64`          |
//! | `meta`      | `"node_id"`                                | this node's id `u64` (random, non-zero) |
//! | `subj_idx`  | reserved: `stream_id u64 | subject | seq u64` | (not written yet)                 |
//! | `raft_log`  | `group_id u64 | index u64`                 | Raft entry (natrix-raft's protobuf) |
//! | `raft_meta` | `group_id u64 | tag u8` (`RaftMetaTag`)    | vote, committed, last purged id, snapshot, applied state (natrix-raft's encodings) |
//!
//! Every per-stream key starts with the 8-byte stream id, so one stream's keys are one
//! contiguous range: a scan bounded by [`stream_range`] never sees another stream.

pub const CF_RAFT_LOG: &str = "raft_log";
pub const CF_RAFT_META: &str = "raft_meta";
pub const CF_MSGS: &str = "msgs";
pub const CF_SUBJ_IDX: &str = "subj_idx";
pub const CF_CONSUMERS: &str = "consumers";
pub const CF_META: &str = "meta";

/// Every column family the store opens (missing ones are created).
pub const ALL_CFS: [&str; 6] = [
    CF_RAFT_LOG,
    CF_RAFT_META,
    CF_MSGS,
    CF_SUBJ_IDX,
    CF_CONSUMERS,
    CF_META,
];

pub const APPLIED_PREFIX: &[u8] = b"stream_applied/";
pub const CONFIG_PREFIX: &[u8] = b"stream_cfg/";
pub const POSITION_PREFIX: &[u8] = b"stream_pos/";
pub const NEXT_STREAM_ID_KEY: &[u8] = b"next_stream_id";
pub const NODE_ID_KEY: &[u8] = b"node_id";

pub fn msg_key(stream_id: u64, seq: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&stream_id.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// `(stream_id, seq)` of a `msgs` key, or `None` if it is not 16 bytes.
pub fn decode_msg_key(key: &[u8]) -> Option<(u64, u64)> {
    let (id, seq) = key.split_first_chunk::<8>()?;
    let seq: &[u8; 8] = seq.try_into().ok()?;
    Some((u64::from_be_bytes(*id), u64::from_be_bytes(*seq)))
}

/// The half-open key range `[start, end)` holding every key of `stream_id` in a CF whose keys
/// start with the stream id.
pub fn stream_range(stream_id: u64) -> (Vec<u8>, Vec<u8>) {
    prefix_range(&stream_id.to_be_bytes())
}

/// `[prefix, successor)`: the successor is the shortest key greater than every key starting with
/// `prefix`. An all-`0xFF` prefix has no such successor; there the end is the prefix followed by
/// more `0xFF` bytes than any key of ours carries after it (a `u64` seq and a terminator), which
/// covers fixed-width keys (`msgs`) and, in practice, UTF-8 names (which never contain `0xFF`).
pub fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return (prefix.to_vec(), end);
        }
    }
    let mut end = prefix.to_vec();
    end.extend_from_slice(&[0xFF; 9]);
    (prefix.to_vec(), end)
}

pub fn applied_key(stream_id: u64) -> Vec<u8> {
    prefixed_id(APPLIED_PREFIX, stream_id)
}

pub fn position_key(stream_id: u64) -> Vec<u8> {
    prefixed_id(POSITION_PREFIX, stream_id)
}

pub fn config_key(stream_id: u64) -> Vec<u8> {
    prefixed_id(CONFIG_PREFIX, stream_id)
}

/// The stream id at the end of a `stream_cfg/` key.
pub fn decode_config_key(key: &[u8]) -> Option<u64> {
    let id = key.strip_prefix(CONFIG_PREFIX)?;
    decode_u64(id)
}

pub fn consumer_key(stream_id: u64, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + name.len());
    key.extend_from_slice(&stream_id.to_be_bytes());
    key.extend_from_slice(name.as_bytes());
    key
}

pub fn encode_u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

/// A big-endian `u64` value, or `None` if it is not exactly 8 bytes.
pub fn decode_u64(bytes: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Keys and values in error messages, printable whatever bytes they hold.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A `raft_log` key: the same fixed layout as a `msgs` key, so [`decode_msg_key`] reads it.
pub fn raft_log_key(group_id: u64, index: u64) -> [u8; 16] {
    msg_key(group_id, index)
}

/// A `raft_meta` key: the group id, then the tag of the record.
pub fn raft_meta_key(group_id: u64, tag: u8) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[..8].copy_from_slice(&group_id.to_be_bytes());
    key[8] = tag;
    key
}

/// `[start, end)` holding every `raft_log` and `raft_meta` key of one group.
pub fn raft_group_range(group_id: u64) -> (Vec<u8>, Vec<u8>) {
    prefix_range(&group_id.to_be_bytes())
}

fn prefixed_id(prefix: &[u8], stream_id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&stream_id.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_keys_sort_by_stream_then_seq() {
        let mut keys = [
            msg_key(2, 1),
            msg_key(1, 256),
            msg_key(1, 2),
            msg_key(256, 0),
            msg_key(1, u64::MAX),
        ];
        keys.sort();
        let decoded: Vec<_> = keys.iter().filter_map(|k| decode_msg_key(k)).collect();
        assert_eq!(
            decoded,
            vec![(1, 2), (1, 256), (1, u64::MAX), (2, 1), (256, 0)]
        );
    }

    #[test]
    fn a_stream_range_holds_exactly_that_streams_keys() {
        for id in [0, 1, 255, 256, u64::MAX - 1, u64::MAX] {
            let (start, end) = stream_range(id);
            for seq in [0, 1, u64::MAX] {
                let key = msg_key(id, seq);
                assert!(start.as_slice() <= &key[..] && &key[..] < end.as_slice());
            }
            let consumer = consumer_key(id, "durable-é");
            assert!(start <= consumer && consumer < end);
            if id < u64::MAX {
                let next = msg_key(id + 1, 0);
                assert!(&next[..] >= end.as_slice(), "id {id}");
            }
            if id > 0 {
                let prev = msg_key(id - 1, u64::MAX);
                assert!(&prev[..] < start.as_slice(), "id {id}");
            }
        }
    }

    #[test]
    fn meta_keys_round_trip_and_reject_garbage() {
        assert_eq!(decode_config_key(&config_key(7)), Some(7));
        assert_eq!(decode_config_key(b"stream_cfg/short"), None);
        assert_eq!(decode_u64(&encode_u64(u64::MAX)), Some(u64::MAX));
        assert_eq!(decode_u64(&[1, 2, 3]), None);
        assert_eq!(decode_msg_key(&[0; 15]), None);
        assert_eq!(&applied_key(1)[..], b"stream_applied/\0\0\0\0\0\0\0\x01");
    }
}
