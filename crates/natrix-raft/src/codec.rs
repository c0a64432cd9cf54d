//! The one encoding of Raft data, on disk and on the wire: openraft's log ids, votes, entries
//! and a durable state machine's [`AppliedState`] as the protobuf messages of
//! `proto/raft.proto`; membership in entries and snapshot metadata (rare, small) as openraft's
//! serde JSON. Fixed-width integers only, so any architecture reads what any other wrote.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use natrix_proto::raft as pb;
use openraft::raft::{AppendEntriesRequest, StreamAppendError, StreamAppendResult};
use prost::Message;

use crate::types::{
    Command, Entry, EntryPayload, LeaderId, LogId, Membership, RaftNode, SnapshotMeta,
    StoredMembership, TypeConfig, Vote,
};

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
    #[error("{what} is invalid: {reason}")]
    Invalid { what: &'static str, reason: String },
}

/// openraft's applied position of a group, as a durable [`crate::StateMachine`] stores it with
/// its effects: the last applied log id and the last applied membership, in the protobuf
/// `natrix.raft.AppliedState` encoding (fixed-width integers, no JSON). Opaque to the machine:
/// it stores [`AppliedState::bytes`] and hands them back through [`AppliedState::decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    bytes: Bytes,
}

impl AppliedState {
    pub fn new(last_applied: Option<LogId>, membership: StoredMembership) -> AppliedState {
        let message = pb::AppliedState {
            last_applied: opt_log_id_to_pb(last_applied.as_ref()),
            membership_log_id: opt_log_id_to_pb(membership.log_id().as_ref()),
            membership: Some(membership_to_pb(membership.membership())),
        };
        AppliedState {
            last_applied,
            membership,
            bytes: Bytes::from(message.encode_to_vec()),
        }
    }

    /// Reads what [`AppliedState::bytes`] gave; a truncated or foreign value is an error.
    pub fn decode(bytes: Bytes) -> Result<AppliedState, CodecError> {
        const WHAT: &str = "an applied state";
        let message = pb::AppliedState::decode(bytes.clone())
            .map_err(|source| CodecError::Protobuf { what: WHAT, source })?;
        let membership = message.membership.ok_or(CodecError::Missing {
            what: WHAT,
            field: "membership",
        })?;
        let membership = StoredMembership::new(
            opt_log_id_from_pb(message.membership_log_id.as_ref()),
            membership_from_pb(membership)?,
        );
        Ok(AppliedState {
            last_applied: opt_log_id_from_pb(message.last_applied.as_ref()),
            membership,
            bytes,
        })
    }

    /// The encoded state, to store.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The last applied log id (`None`: nothing applied yet).
    pub fn last_applied(&self) -> Option<LogId> {
        self.last_applied
    }

    /// The index of the last applied entry (`None`: nothing applied yet).
    pub fn last_applied_index(&self) -> Option<u64> {
        self.last_applied.map(|id| id.index)
    }

    /// The last applied membership and the log id of the entry that set it.
    pub fn membership(&self) -> &StoredMembership {
        &self.membership
    }
}

pub fn membership_to_pb(membership: &Membership) -> pb::Membership {
    pb::Membership {
        configs: membership
            .get_joint_config()
            .iter()
            .map(|voters| pb::VoterSet {
                node_ids: voters.iter().copied().collect(),
            })
            .collect(),
        nodes: membership
            .nodes()
            .map(|(id, node)| pb::MemberNode {
                node_id: *id,
                addr: node.addr.clone(),
                name: node.name.clone(),
            })
            .collect(),
    }
}

/// A membership read back; every voter must be one of its nodes (as openraft guarantees for
/// every membership it commits).
pub fn membership_from_pb(membership: pb::Membership) -> Result<Membership, CodecError> {
    let configs: Vec<BTreeSet<u64>> = membership
        .configs
        .into_iter()
        .map(|c| c.node_ids.into_iter().collect())
        .collect();
    let nodes: BTreeMap<u64, RaftNode> = membership
        .nodes
        .into_iter()
        .map(|n| (n.node_id, RaftNode::new(n.addr, n.name)))
        .collect();
    if let Some(voter) = configs.iter().flatten().find(|id| !nodes.contains_key(id)) {
        return Err(CodecError::Invalid {
            what: "a membership",
            reason: format!("voter {voter} is not one of its nodes"),
        });
    }
    Membership::new(configs, nodes).map_err(|e| CodecError::Invalid {
        what: "a membership",
        reason: e.to_string(),
    })
}

pub fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId {
        term: id.leader_id.term,
        node_id: id.leader_id.node_id,
        index: id.index,
    }
}

pub fn log_id_from_pb(id: &pb::LogId) -> LogId {
    LogId::new(
        LeaderId {
            term: id.term,
            node_id: id.node_id,
        },
        id.index,
    )
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
        leader_id: LeaderId {
            term: vote.term,
            node_id: vote.node_id,
        },
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

/// An append-entries request as it arrives from a leader. It must be one a Raft leader can
/// send: entries that follow its `prev_log_id` index by index, with terms that never decrease
/// and never exceed the leader's own. openraft takes that for granted (a debug assertion would
/// stop the group; a release build would store a log with holes), so it is checked here.
pub fn append_request_from_pb(
    req: pb::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<TypeConfig>, CodecError> {
    let vote = required_vote(req.vote.as_ref(), "an append-entries request")?;
    let prev_log_id = opt_log_id_from_pb(req.prev_log_id.as_ref());
    let entries = req
        .entries
        .into_iter()
        .map(entry_from_pb)
        .collect::<Result<Vec<_>, _>>()?;
    let invalid = |reason: &str| CodecError::Invalid {
        what: "an append-entries request",
        reason: reason.to_owned(),
    };
    let mut expected_index = prev_log_id.map_or(Some(0), |prev| prev.index.checked_add(1));
    let mut term = prev_log_id.map_or(0, |prev| prev.leader_id.term);
    if term > vote.leader_id.term {
        return Err(invalid(
            "its previous log id is of a later term than its leader's",
        ));
    }
    for entry in &entries {
        if expected_index != Some(entry.log_id.index) {
            return Err(invalid(
                "its entries do not follow its previous log id one by one",
            ));
        }
        let entry_term = entry.log_id.leader_id.term;
        if entry_term < term || entry_term > vote.leader_id.term {
            return Err(invalid(
                "its entries' terms decrease or exceed its leader's term",
            ));
        }
        term = entry_term;
        expected_index = entry.log_id.index.checked_add(1);
    }
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id,
        entries,
        leader_commit: opt_log_id_from_pb(req.leader_commit.as_ref()),
    })
}

/// A follower's answer to one request of an append stream.
pub fn stream_result_to_pb(result: &StreamAppendResult<TypeConfig>) -> pb::AppendStreamResponse {
    use pb::append_stream_response::Result as R;
    let result = match result {
        Ok(matched) => R::Matched(pb::Matched {
            log_id: opt_log_id_to_pb(matched.as_ref()),
        }),
        Err(StreamAppendError::Conflict(log_id)) => R::Conflict(log_id_to_pb(log_id)),
        Err(StreamAppendError::HigherVote(vote)) => R::HigherVote(vote_to_pb(vote)),
    };
    pb::AppendStreamResponse {
        result: Some(result),
    }
}

pub fn stream_result_from_pb(
    response: &pb::AppendStreamResponse,
) -> Result<StreamAppendResult<TypeConfig>, CodecError> {
    use pb::append_stream_response::Result as R;
    match &response.result {
        Some(R::Matched(m)) => Ok(Ok(opt_log_id_from_pb(m.log_id.as_ref()))),
        Some(R::Conflict(log_id)) => Ok(Err(StreamAppendError::Conflict(log_id_from_pb(log_id)))),
        Some(R::HigherVote(vote)) => Ok(Err(StreamAppendError::HigherVote(vote_from_pb(vote)))),
        None => Err(CodecError::Missing {
            what: "an append-stream response",
            field: "result",
        }),
    }
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
    use super::*;

    fn id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(
            LeaderId {
                term,
                node_id: node,
            },
            index,
        )
    }

    /// An append request with `prev` before entries of the given (term, index), from a leader
    /// of term 5.
    fn append(prev: Option<(u64, u64)>, entries: &[(u64, u64)]) -> pb::AppendEntriesRequest {
        pb::AppendEntriesRequest {
            group_id: 1,
            vote: Some(pb::Vote {
                term: 5,
                node_id: 1,
                committed: true,
            }),
            prev_log_id: prev.map(|(term, index)| log_id_to_pb(&id(term, 1, index))),
            entries: entries
                .iter()
                .map(|&(term, index)| pb::Entry {
                    log_id: Some(log_id_to_pb(&id(term, 1, index))),
                    payload: Some(pb::entry::Payload::Blank(pb::Blank {})),
                })
                .collect(),
            leader_commit: None,
        }
    }

    #[test]
    fn only_append_requests_a_leader_can_send_are_accepted() {
        let ok = [
            append(None, &[]),
            append(None, &[(1, 0), (1, 1), (5, 2)]),
            append(Some((2, 7)), &[(2, 8), (3, 9)]),
            append(Some((5, 7)), &[]),
        ];
        for req in ok {
            assert!(append_request_from_pb(req.clone()).is_ok(), "{req:?}");
        }
        let refused = [
            // A gap, a repeated index, a start that does not follow prev.
            append(None, &[(1, 0), (1, 2)]),
            append(Some((1, 3)), &[(1, 4), (1, 4)]),
            append(Some((1, 3)), &[(1, 3)]),
            append(None, &[(1, 1)]),
            // Terms going back, or beyond the leader's.
            append(Some((3, 3)), &[(2, 4)]),
            append(None, &[(2, 0), (1, 1)]),
            append(None, &[(6, 0)]),
            append(Some((6, 3)), &[]),
            // An index that would overflow.
            append(Some((1, u64::MAX)), &[(1, 0)]),
        ];
        for req in refused {
            assert!(
                matches!(
                    append_request_from_pb(req.clone()),
                    Err(CodecError::Invalid { .. })
                ),
                "{req:?}"
            );
        }
    }

    #[test]
    fn entries_of_every_kind_round_trip_through_their_stored_bytes() {
        let nodes = BTreeMap::from([
            (1, RaftNode::new("10.0.0.1:6222", "n1")),
            (u64::MAX, RaftNode::new("[::1]:6222", "n-max")),
        ]);
        let membership = Membership::new(vec![BTreeSet::from([1, u64::MAX])], nodes).unwrap();
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

    fn membership() -> Membership {
        let nodes = BTreeMap::from([
            (1, RaftNode::new("10.0.0.1:6222", "n1")),
            (2, RaftNode::new("10.0.0.2:6222", "n2")),
            (u64::MAX, RaftNode::new("[::1]:6222", "learner")),
        ]);
        Membership::new(vec![BTreeSet::from([1]), BTreeSet::from([1, 2])], nodes).unwrap()
    }

    #[test]
    fn an_applied_state_round_trips_through_its_bytes() {
        let cases = [
            AppliedState::new(None, StoredMembership::default()),
            AppliedState::new(
                Some(id(3, 2, u64::MAX)),
                StoredMembership::new(Some(id(1, 1, 1)), membership()),
            ),
        ];
        for state in cases {
            let back = AppliedState::decode(state.bytes().clone()).unwrap();
            assert_eq!(back, state);
            assert_eq!(back.last_applied(), state.last_applied());
            assert_eq!(back.membership(), state.membership());
        }
        assert!(AppliedState::decode(Bytes::from_static(b"\xff\xff")).is_err());
        assert!(
            AppliedState::decode(Bytes::new()).is_err(),
            "an applied state without a membership"
        );
    }

    #[test]
    fn an_applied_state_has_the_same_bytes_on_every_architecture() {
        let nodes = BTreeMap::from([(2, RaftNode::new("a:1", "n"))]);
        let state = AppliedState::new(
            Some(id(1, 2, 300)),
            StoredMembership::new(
                Some(id(1, 2, 1)),
                Membership::new(vec![BTreeSet::from([2])], nodes).unwrap(),
            ),
        );
        #[rustfmt::skip]
        let want = vec![
            0x0a, 0x07, 0x08, 0x01, 0x10, 0x02, 0x18, 0xac, 0x02, // last applied 1-2-300
            0x12, 0x06, 0x08, 0x01, 0x10, 0x02, 0x18, 0x01,       // membership log id 1-2-1
            0x1a, 0x11,                                           // membership:
            0x0a, 0x03, 0x0a, 0x01, 0x02,                         //   voters {2} (packed)
            0x12, 0x0a, 0x08, 0x02, 0x12, 0x03, b'a', b':', b'1', 0x1a, 0x01, b'n', // node 2
        ];
        assert_eq!(&state.bytes()[..], &want[..]);
    }

    #[test]
    fn a_membership_whose_voter_has_no_node_is_refused() {
        let bad = pb::Membership {
            configs: vec![pb::VoterSet {
                node_ids: vec![1, 2],
            }],
            nodes: vec![pb::MemberNode {
                node_id: 1,
                addr: "a:1".into(),
                name: "n1".into(),
            }],
        };
        assert!(membership_from_pb(bad).is_err());
        assert_eq!(
            membership_from_pb(membership_to_pb(&membership())).unwrap(),
            membership()
        );
    }

    #[test]
    fn votes_and_log_ids_round_trip_and_garbage_is_an_error() {
        let vote = Vote {
            leader_id: LeaderId {
                term: 7,
                node_id: 3,
            },
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
