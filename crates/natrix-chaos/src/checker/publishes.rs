//! Rules 1 and 2: acknowledged publishes are stored at their sequence; nothing is stored twice,
//! nothing unknown, no holes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Findings, Op, Stats, StoredRecord, msg_id_header};
use crate::STREAM;
use crate::history::{Call, Outcome};

/// Rules 1 and 2.
pub(super) fn check_publishes(
    ops: &BTreeMap<u64, Op<'_>>,
    stream: Option<&[StoredRecord]>,
    findings: &mut Findings,
    stats: &mut Stats,
) {
    let mut invoked: BTreeSet<&str> = BTreeSet::new();
    let mut errored: BTreeSet<&str> = BTreeSet::new();
    let mut acked_ids: BTreeSet<&str> = BTreeSet::new();
    // (id, seq, duplicate, process)
    let mut acks: Vec<(&str, u64, bool, &str)> = Vec::new();
    for op in ops.values() {
        let Call::Publish { id, .. } = op.call else {
            continue;
        };
        stats.publishes += 1;
        invoked.insert(id);
        match op.completed {
            Some((_, Outcome::Published { seq, duplicate })) => {
                acked_ids.insert(id);
                acks.push((id, *seq, *duplicate, op.process));
            }
            Some((_, Outcome::Failed { .. } | Outcome::Refused { .. })) => {
                stats.publish_errors += 1;
                errored.insert(id);
            }
            _ => stats.publish_unknown += 1,
        }
    }
    stats.acked = acked_ids.len();
    let Some(stream) = stream else {
        return;
    };
    stats.stored = stream.len();

    let mut at_seq: BTreeMap<u64, String> = BTreeMap::new();
    let mut seqs_of: HashMap<String, Vec<u64>> = HashMap::new();
    let mut expected_seq = 1u64;
    for record in stream {
        if record.seq != expected_seq {
            findings.add("stream-gap", || {
                format!(
                    "{STREAM}: sequence {} follows {} (nothing was deleted)",
                    record.seq,
                    expected_seq.saturating_sub(1)
                )
            });
        }
        expected_seq = record.seq + 1;
        let id = String::from_utf8_lossy(&record.payload).into_owned();
        match msg_id_header(&record.headers) {
            Some(header) if header == id => {}
            other => findings.add("unknown-message", || {
                format!(
                    "{STREAM} seq {}: payload {id:?} but Nats-Msg-Id {other:?}",
                    record.seq
                )
            }),
        }
        if !invoked.contains(id.as_str()) {
            findings.add("unknown-message", || {
                format!("{STREAM} seq {} holds {id:?}, never published", record.seq)
            });
        }
        seqs_of.entry(id.clone()).or_default().push(record.seq);
        at_seq.insert(record.seq, id);
    }
    for (id, seqs) in &seqs_of {
        if seqs.len() > 1 {
            stats.duplicated += 1;
            findings.add("duplicate", || {
                format!("{id} is stored {} times, at {seqs:?}", seqs.len())
            });
        }
    }
    for id in &errored {
        if seqs_of.contains_key(*id) && !acked_ids.contains(id) {
            stats.errored_but_stored += 1;
        }
    }
    let mut lost: BTreeSet<&str> = BTreeSet::new();
    for (id, seq, duplicate, process) in acks {
        if at_seq.get(&seq).map(String::as_str) == Some(id) {
            continue;
        }
        let dup = if duplicate { " (duplicate ack)" } else { "" };
        match seqs_of.get(id) {
            Some(stored) => findings.add("acked-misplaced", || {
                format!(
                    "{id} ({process}) acknowledged at seq {seq}{dup} but stored at {stored:?}; \
                     seq {seq} holds {:?}",
                    at_seq.get(&seq)
                )
            }),
            None => {
                lost.insert(id);
                findings.add("acked-lost", || {
                    format!(
                        "{id} ({process}) acknowledged at seq {seq}{dup} is not stored; seq \
                         {seq} holds {:?}",
                        at_seq.get(&seq)
                    )
                });
            }
        }
    }
    stats.lost = lost.len();
}
