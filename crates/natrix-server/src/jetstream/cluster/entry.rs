//! The log entries of a replicated stream: the commands a stream leader accepted, encoded as
//! `natrix.jetstream.StreamEntry` (protobuf, portable across architectures), and the results
//! every replica's state machine answers for them.

use bytes::Bytes;
use natrix_proto::jetstream::{
    self as pb, PubAckResult, StreamCommand, StreamEntry, StreamResult, StreamResults,
    stream_command::Kind, stream_result,
};
use natrix_stream::{ApiError, Command, PubAck, PurgeRequest, Reply, StreamConfig};
use prost::Message;

/// One command of an entry, as the state machine applies it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EntryCommand {
    /// A publish; `drop_at_once`: interest retention with no consumer when the leader took it.
    Publish {
        command: Command,
        drop_at_once: bool,
    },
    Other(Command),
    /// A consumer's record as the stream leader wrote it (kept by every replica).
    Consumer(ConsumerWrite),
}

/// A change to the consumer records a replicated stream's replicas keep (see `ConsumerPut` in
/// `proto/jetstream.proto`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ConsumerWrite {
    /// `record`: natrix-server's `ConsumerRecord` encoding. `create`: creates (or replaces) the
    /// consumer; otherwise only updates one that still exists.
    Put {
        name: String,
        record: Bytes,
        create: bool,
    },
    Delete {
        name: String,
    },
}

/// What applying one command answers: the stream's reply, or nothing for a consumer write.
pub(crate) type EntryResult = Result<Option<Reply>, ApiError>;

impl EntryCommand {
    /// A stream command and whether it is a publish to drop at once; `None` for a consumer write.
    pub(crate) fn parts(&self) -> Option<(&Command, bool)> {
        match self {
            EntryCommand::Publish {
                command,
                drop_at_once,
            } => Some((command, *drop_at_once)),
            EntryCommand::Other(command) => Some((command, false)),
            EntryCommand::Consumer(_) => None,
        }
    }
}

/// Encodes the commands of one entry.
pub(crate) fn encode_entry(commands: &[EntryCommand]) -> Bytes {
    let commands = commands.iter().map(encode_command).collect();
    Bytes::from(StreamEntry { commands }.encode_to_vec())
}

fn encode_command(command: &EntryCommand) -> StreamCommand {
    let (command, drop_at_once) = match command {
        EntryCommand::Consumer(write) => {
            let kind = match write {
                ConsumerWrite::Put {
                    name,
                    record,
                    create,
                } => Kind::ConsumerPut(pb::ConsumerPut {
                    name: name.clone(),
                    record: record.clone(),
                    create: *create,
                }),
                ConsumerWrite::Delete { name } => {
                    Kind::ConsumerDelete(pb::ConsumerDelete { name: name.clone() })
                }
            };
            return StreamCommand { kind: Some(kind) };
        }
        EntryCommand::Publish {
            command,
            drop_at_once,
        } => (command, *drop_at_once),
        EntryCommand::Other(command) => (command, false),
    };
    let kind = match command {
        Command::Publish {
            subject,
            headers,
            payload,
            timestamp_ns,
        } => Kind::Publish(pb::Publish {
            subject: subject.clone(),
            headers: headers.clone(),
            payload: payload.clone(),
            timestamp_ns: *timestamp_ns,
            drop_at_once,
        }),
        Command::Mirror {
            seq,
            subject,
            headers,
            payload,
            timestamp_ns,
        } => Kind::Mirror(pb::Mirror {
            seq: *seq,
            subject: subject.clone(),
            headers: headers.clone(),
            payload: payload.clone(),
            timestamp_ns: *timestamp_ns,
        }),
        Command::DeleteMsg { seq, no_erase } => Kind::DeleteMsg(pb::DeleteMsg {
            seq: *seq,
            no_erase: *no_erase,
        }),
        Command::Purge(request) => {
            Kind::PurgeJson(Bytes::from(serde_json::to_vec(request).unwrap_or_default()))
        }
        Command::Expire { now_ns } => Kind::ExpireNowNs(*now_ns),
        Command::UpdateConfig(config) => Kind::UpdateConfigJson(Bytes::from(config.to_json())),
        Command::Seal => Kind::Seal(pb::Seal {}),
        Command::RemoveAcked { seqs } => Kind::RemoveAcked(pb::RemoveAcked { seqs: seqs.clone() }),
    };
    StreamCommand { kind: Some(kind) }
}

/// Why an entry could not be decoded (a corrupt or foreign log entry).
#[derive(Debug, thiserror::Error)]
pub(crate) enum EntryError {
    #[error("stream entry: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("stream entry: command {0} is empty")]
    Empty(usize),
    #[error("stream entry: command {index}: {reason}")]
    Invalid { index: usize, reason: String },
}

/// Decodes the commands of one entry.
pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Vec<EntryCommand>, EntryError> {
    let entry = StreamEntry::decode(bytes)?;
    entry
        .commands
        .into_iter()
        .enumerate()
        .map(|(index, c)| decode_command(index, c))
        .collect()
}

fn decode_command(index: usize, command: StreamCommand) -> Result<EntryCommand, EntryError> {
    let invalid = |reason: String| EntryError::Invalid { index, reason };
    let command = match command.kind.ok_or(EntryError::Empty(index))? {
        Kind::Publish(p) => {
            return Ok(EntryCommand::Publish {
                command: Command::Publish {
                    subject: p.subject,
                    headers: p.headers,
                    payload: p.payload,
                    timestamp_ns: p.timestamp_ns,
                },
                drop_at_once: p.drop_at_once,
            });
        }
        Kind::Mirror(m) => Command::Mirror {
            seq: m.seq,
            subject: m.subject,
            headers: m.headers,
            payload: m.payload,
            timestamp_ns: m.timestamp_ns,
        },
        Kind::DeleteMsg(d) => Command::DeleteMsg {
            seq: d.seq,
            no_erase: d.no_erase,
        },
        Kind::PurgeJson(json) => Command::Purge(
            serde_json::from_slice::<PurgeRequest>(&json).map_err(|e| invalid(e.to_string()))?,
        ),
        Kind::ExpireNowNs(now_ns) => Command::Expire { now_ns },
        Kind::UpdateConfigJson(json) => Command::UpdateConfig(Box::new(
            StreamConfig::from_json(&json).map_err(|e| invalid(e.to_string()))?,
        )),
        Kind::Seal(_) => Command::Seal,
        Kind::RemoveAcked(r) => Command::RemoveAcked { seqs: r.seqs },
        Kind::ConsumerPut(p) => {
            return Ok(EntryCommand::Consumer(ConsumerWrite::Put {
                name: p.name,
                record: p.record,
                create: p.create,
            }));
        }
        Kind::ConsumerDelete(d) => {
            return Ok(EntryCommand::Consumer(ConsumerWrite::Delete {
                name: d.name,
            }));
        }
    };
    Ok(EntryCommand::Other(command))
}

/// Encodes what applying an entry answered, one result per command.
pub(crate) fn encode_results(results: &[EntryResult]) -> Bytes {
    let results = results
        .iter()
        .map(|r| StreamResult {
            kind: Some(match r {
                Ok(Some(reply)) => reply_kind(reply),
                Ok(None) => stream_result::Kind::OkJson(Bytes::from_static(b"{}")),
                Err(err) => stream_result::Kind::ErrorJson(Bytes::from(
                    serde_json::to_vec(err).unwrap_or_default(),
                )),
            }),
        })
        .collect();
    Bytes::from(StreamResults { results }.encode_to_vec())
}

/// A reply as its result: a publish's acknowledgement in binary (most results), others as
/// JSON: the new config for an update, the count for a purge; `{}` otherwise.
fn reply_kind(reply: &Reply) -> stream_result::Kind {
    let json = match reply {
        Reply::PubAck(ack) => {
            return stream_result::Kind::PubAck(PubAckResult {
                seq: ack.seq,
                duplicate: ack.duplicate,
                domain: ack.domain.clone(),
            });
        }
        Reply::ConfigUpdated(config) => config.to_json(),
        Reply::Purged { purged } => format!("{{\"purged\":{purged}}}"),
        Reply::Expired { removed } | Reply::RemovedAcked { removed } => {
            format!("{{\"removed\":{removed}}}")
        }
        Reply::Deleted | Reply::Sealed => "{}".to_string(),
    };
    stream_result::Kind::OkJson(Bytes::from(json))
}

/// Decodes the results of an entry whose commands are `commands`, of stream `stream` (the
/// proposer knows both).
pub(crate) fn decode_results(
    bytes: &[u8],
    commands: &[EntryCommand],
    stream: &str,
) -> Result<Vec<EntryResult>, EntryError> {
    let results = StreamResults::decode(bytes)?;
    if results.results.len() != commands.len() {
        return Err(EntryError::Invalid {
            index: results.results.len(),
            reason: format!(
                "{} results for {} commands",
                results.results.len(),
                commands.len()
            ),
        });
    }
    results
        .results
        .into_iter()
        .zip(commands)
        .enumerate()
        .map(|(index, (result, command))| {
            let invalid = |reason: String| EntryError::Invalid { index, reason };
            match result.kind.ok_or(EntryError::Empty(index))? {
                stream_result::Kind::ErrorJson(json) => {
                    Ok(Err(serde_json::from_slice::<ApiError>(&json)
                        .map_err(|e| invalid(e.to_string()))?))
                }
                stream_result::Kind::PubAck(ack) => match command.parts() {
                    Some((Command::Publish { .. } | Command::Mirror { .. }, _)) => {
                        Ok(Ok(Some(Reply::PubAck(PubAck {
                            stream: stream.to_owned(),
                            seq: ack.seq,
                            duplicate: ack.duplicate,
                            domain: ack.domain,
                        }))))
                    }
                    _ => Err(invalid(
                        "a publish's acknowledgement for another command".into(),
                    )),
                },
                stream_result::Kind::OkJson(json) => match command.parts() {
                    Some((command, _)) => decode_reply(&json, command)
                        .map(|reply| Ok(Some(reply)))
                        .map_err(invalid),
                    None => Ok(Ok(None)),
                },
            }
        })
        .collect()
}

fn decode_reply(json: &[u8], command: &Command) -> Result<Reply, String> {
    #[derive(serde::Deserialize)]
    struct Count {
        #[serde(default)]
        purged: u64,
        #[serde(default)]
        removed: u64,
    }
    let count = || serde_json::from_slice::<Count>(json).map_err(|e| e.to_string());
    Ok(match command {
        Command::Publish { .. } | Command::Mirror { .. } => {
            return Err("a publish answered without an acknowledgement".into());
        }
        Command::DeleteMsg { .. } => Reply::Deleted,
        Command::Purge(_) => Reply::Purged {
            purged: count()?.purged,
        },
        Command::Expire { .. } => Reply::Expired {
            removed: count()?.removed,
        },
        Command::UpdateConfig(_) => Reply::ConfigUpdated(Box::new(
            StreamConfig::from_json(json).map_err(|e| e.to_string())?,
        )),
        Command::Seal => Reply::Sealed,
        Command::RemoveAcked { .. } => Reply::RemovedAcked {
            removed: count()?.removed,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(n: i64) -> EntryCommand {
        EntryCommand::Publish {
            command: Command::Publish {
                subject: Bytes::from_static(b"orders.1"),
                headers: Some(Bytes::from_static(b"NATS/1.0\r\nNats-Msg-Id: a\r\n\r\n")),
                payload: Bytes::from(vec![7u8; 10]),
                timestamp_ns: n,
            },
            drop_at_once: n % 2 == 0,
        }
    }

    #[test]
    fn every_command_kind_survives_the_log() {
        let commands = vec![
            publish(1),
            publish(2),
            EntryCommand::Other(Command::DeleteMsg {
                seq: 9,
                no_erase: true,
            }),
            EntryCommand::Other(Command::Purge(PurgeRequest {
                filter: "orders.>".into(),
                seq: 0,
                keep: 3,
            })),
            EntryCommand::Other(Command::Expire { now_ns: 42 }),
            EntryCommand::Other(Command::UpdateConfig(Box::new(StreamConfig::named(
                "S",
                &["a.>"],
            )))),
            EntryCommand::Other(Command::Seal),
            EntryCommand::Other(Command::Mirror {
                seq: 77,
                subject: Bytes::from_static(b"origin.a"),
                headers: None,
                payload: Bytes::from_static(b"copied"),
                timestamp_ns: 1_700_000_000_000_000_000,
            }),
            EntryCommand::Other(Command::RemoveAcked {
                seqs: vec![1, 5, u64::MAX],
            }),
            EntryCommand::Consumer(ConsumerWrite::Put {
                name: "C".into(),
                record: Bytes::from_static(b"\x01record"),
                create: true,
            }),
            EntryCommand::Consumer(ConsumerWrite::Put {
                name: "C".into(),
                record: Bytes::from_static(b"\x01state"),
                create: false,
            }),
            EntryCommand::Consumer(ConsumerWrite::Delete { name: "C".into() }),
        ];
        let decoded = decode_entry(&encode_entry(&commands)).expect("decodes");
        assert_eq!(decoded, commands);
    }

    #[test]
    fn results_come_back_typed_by_their_command() {
        let commands = vec![
            publish(1),
            EntryCommand::Other(Command::Purge(PurgeRequest::default())),
            publish(3),
            EntryCommand::Other(Command::Seal),
            EntryCommand::Consumer(ConsumerWrite::Delete { name: "C".into() }),
        ];
        let results = vec![
            Ok(Some(Reply::PubAck(PubAck {
                stream: "S".into(),
                seq: 7,
                duplicate: true,
                domain: None,
            }))),
            Ok(Some(Reply::Purged { purged: 12 })),
            Err(ApiError::wrong_last_sequence(3)),
            Ok(Some(Reply::Sealed)),
            Ok(None),
        ];
        let decoded = decode_results(&encode_results(&results), &commands, "S").expect("decodes");
        assert_eq!(decoded, results);
        // A domain travels with the acknowledgement.
        let with_domain = vec![Ok(Some(Reply::PubAck(PubAck {
            stream: "S".into(),
            seq: 8,
            duplicate: false,
            domain: Some("hub".into()),
        })))];
        let decoded = decode_results(&encode_results(&with_domain), &commands[..1], "S");
        assert_eq!(decoded.expect("decodes"), with_domain);
        // A publish's acknowledgement answers only a publish.
        let swapped = [commands[1].clone(), commands[0].clone()];
        let two = &results[..2];
        assert!(decode_results(&encode_results(two), &swapped, "S").is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_entry(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode_results(&[0x0a, 0x00], &[publish(1), publish(2)], "S").is_err());
    }
}
