//! The one encoding of Raft data, on disk and on the wire: openraft's log ids, votes and
//! entries as the protobuf messages of `proto/raft.proto`; membership and snapshot metadata
//! (rare, small) as openraft's serde JSON. Fixed-width integers only, so any architecture reads
//! what any other wrote.

use bytes::Bytes;
use natrix_proto::raft as pb;
use openraft::{CommittedLeaderId, EntryPayload, LeaderId};
use prost::Message;

use crate::types::{Command, Entry, LogId, Membership, SnapshotMeta, Vote};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("decoding {what} (protobuf): {source}")]
    Protobuf {
        what: &'static str,
        source: prost::DecodeError,
    },
    #[error("{what} is missing its {field}")]
    Missing {
        what: &'static str,
        field: &'static str,
    },
    #[error("{what} as JSON: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
}

pub fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId {
        term: id.leader_id.term,
        node_id: id.leader_id.node_id,
        index: id.index,
    }
}

pub fn log_id_from_pb(id: &pb::LogId) -> LogId {
    LogId::new(CommittedLeaderId::new(id.term, id.node_id), id.index)
}

pub fn opt_log_id_to_pb(id: Option<&LogId>) -> Option<pb::LogId> {
    id.map(log_id_to_pb)
}

pub fn opt_log_id_from_pb(id: Option<&pb::LogId>) -> Option<LogId> {
    id.map(log_id_from_pb)
}

pub fn vote_to_pb(vote: &Vote) -> pb::Vote {
    pb::Vote {
        term: vote.leader_id.term,
        node_id: vote.leader_id.node_id,
        committed: vote.committed,
    }
}

pub fn vote_from_pb(vote: &pb::Vote) -> Vote {
    Vote {
        leader_id: LeaderId::new(vote.term, vote.node_id),
        committed: vote.committed,
    }
}

/// A required vote field of a wire message.
pub fn required_vote(vote: Option<&pb::Vote>, what: &'static str) -> Result<Vote, CodecError> {
    vote.map(vote_from_pb).ok_or(CodecError::Missing {
        what,
        field: "vote",
    })
}

pub fn entry_to_pb(entry: &Entry) -> Result<pb::Entry, CodecError> {
    let payload = match &entry.payload {
        EntryPayload::Blank => pb::entry::Payload::Blank(pb::Blank {}),
        EntryPayload::Normal(command) => pb::entry::Payload::Normal(command.0.clone()),
        EntryPayload::Membership(membership) => {
            pb::entry::Payload::MembershipJson(to_json(membership, "a membership")?)
        }
    };
    Ok(pb::Entry {
        log_id: Some(log_id_to_pb(&entry.log_id)),
        payload: Some(payload),
    })
}

pub fn entry_from_pb(entry: pb::Entry) -> Result<Entry, CodecError> {
    let log_id = entry
        .log_id
        .as_ref()
        .map(log_id_from_pb)
        .ok_or(CodecError::Missing {
            what: "a log entry",
            field: "log id",
        })?;
    let payload = match entry.payload {
        Some(pb::entry::Payload::Blank(_)) => EntryPayload::Blank,
        Some(pb::entry::Payload::Normal(bytes)) => EntryPayload::Normal(Command(bytes)),
        Some(pb::entry::Payload::MembershipJson(json)) => {
            EntryPayload::Membership(from_json::<Membership>(&json, "a membership")?)
        }
        None => {
            return Err(CodecError::Missing {
                what: "a log entry",
                field: "payload",
            });
        }
    };
    Ok(Entry { log_id, payload })
}

/// An entry as stored in `raft_log`.
pub fn encode_entry(entry: &Entry) -> Result<Vec<u8>, CodecError> {
    Ok(entry_to_pb(entry)?.encode_to_vec())
}

/// An entry read from `raft_log`; a normal entry's command shares `bytes`' buffer.
pub fn decode_entry(bytes: Bytes) -> Result<Entry, CodecError> {
    let entry = pb::Entry::decode(bytes).map_err(|source| CodecError::Protobuf {
        what: "a log entry",
        source,
    })?;
    entry_from_pb(entry)
}

pub fn encode_vote(vote: &Vote) -> Vec<u8> {
    vote_to_pb(vote).encode_to_vec()
}

pub fn decode_vote(bytes: &[u8]) -> Result<Vote, CodecError> {
    pb::Vote::decode(bytes)
        .map(|v| vote_from_pb(&v))
        .map_err(|source| CodecError::Protobuf {
            what: "a vote",
            source,
        })
}

pub fn encode_log_id(id: &LogId) -> Vec<u8> {
    log_id_to_pb(id).encode_to_vec()
}

pub fn decode_log_id(bytes: &[u8]) -> Result<LogId, CodecError> {
    pb::LogId::decode(bytes)
        .map(|id| log_id_from_pb(&id))
        .map_err(|source| CodecError::Protobuf {
            what: "a log id",
            source,
        })
}

pub fn encode_snapshot_meta(meta: &SnapshotMeta) -> Result<Bytes, CodecError> {
    to_json(meta, "snapshot metadata")
}

pub fn decode_snapshot_meta(bytes: &[u8]) -> Result<SnapshotMeta, CodecError> {
    from_json(bytes, "snapshot metadata")
}

pub fn to_json<T: serde::Serialize>(value: &T, what: &'static str) -> Result<Bytes, CodecError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|source| CodecError::Json { what, source })
}

pub fn from_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, CodecError> {
    serde_json::from_slice(bytes).map_err(|source| CodecError::Json { what, source })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::types::RaftNode;

    fn id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    #[test]
    fn entries_of_every_kind_round_trip_through_their_stored_bytes() {
        let nodes = BTreeMap::from([
            (1, RaftNode::new("10.0.0.1:6222", "n1")),
            (u64::MAX, RaftNode::new("[::1]:6222", "n-max")),
        ]);
        let membership = Membership::new(vec![BTreeSet::from([1, u64::MAX])], nodes);
        let entries = [
            Entry {
                log_id: id(1, 2, 3),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: id(u64::MAX, u64::MAX, u64::MAX),
                payload: EntryPayload::Normal(Command(Bytes::from_static(b"\x00cmd\xff"))),
            },
            Entry {
                log_id: id(4, 5, 6),
                payload: EntryPayload::Membership(membership),
            },
        ];
        for entry in entries {
            let bytes = encode_entry(&entry).unwrap();
            let back = decode_entry(Bytes::from(bytes)).unwrap();
            assert_eq!(back.log_id, entry.log_id);
            assert_eq!(back.payload, entry.payload);
        }
    }

    #[test]
    fn a_stored_entry_has_the_same_bytes_on_every_architecture() {
        let entry = Entry {
            log_id: id(1, 2, 3),
            payload: EntryPayload::Normal(Command(Bytes::from_static(b"x"))),
        };
        // field 1 (log id: 08 01 10 02 18 03), field 3 (normal: "x").
        assert_eq!(
            encode_entry(&entry).unwrap(),
            vec![
                0x0a, 0x06, 0x08, 0x01, 0x10, 0x02, 0x18, 0x03, 0x1a, 0x01, b'x'
            ]
        );
    }

    #[test]
    fn votes_and_log_ids_round_trip_and_garbage_is_an_error() {
        let vote = Vote {
            leader_id: LeaderId::new(7, 3),
            committed: true,
        };
        assert_eq!(decode_vote(&encode_vote(&vote)).unwrap(), vote);
        assert_eq!(
            decode_log_id(&encode_log_id(&id(9, 8, 7))).unwrap(),
            id(9, 8, 7)
        );
        assert!(decode_entry(Bytes::from_static(b"\xff\xff\xff")).is_err());
        assert!(
            decode_entry(Bytes::new()).is_err(),
            "an entry without a log id"
        );
    }
}
