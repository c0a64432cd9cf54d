//! Rule 6: the durable consumer skips nothing and does not deliver a message again after its
//! ack was answered.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{CheckOptions, Findings, Op, Stats, StoredRecord, secs};
use crate::history::{Call, Event, Outcome};

/// Rule 6.
pub(super) fn check_consumer(
    events: &[Event],
    ops: &BTreeMap<u64, Op<'_>>,
    stream: Option<&[StoredRecord]>,
    options: &CheckOptions,
    findings: &mut Findings,
    stats: &mut Stats,
    notes: &mut Vec<String>,
) {
    let stored: HashMap<u64, &[u8]> = stream
        .unwrap_or(&[])
        .iter()
        .map(|r| (r.seq, r.payload.as_slice()))
        .collect();
    let mut confirmed: HashMap<u64, u64> = HashMap::new();
    for op in ops.values() {
        if let (Call::Ack { seq, .. }, Some((t, Outcome::Acked))) = (op.call, op.completed) {
            stats.acks_confirmed += 1;
            let first = confirmed.entry(*seq).or_insert(t);
            *first = (*first).min(t);
        }
    }
    let mut delivered: BTreeSet<u64> = BTreeSet::new();
    for e in events {
        let Event::Deliver {
            t,
            process,
            seq,
            delivered: count,
            id,
            ..
        } = e
        else {
            continue;
        };
        stats.deliveries += 1;
        if *count > 1 {
            stats.redeliveries += 1;
        }
        delivered.insert(*seq);
        if stream.is_some() && stored.get(seq).copied() != Some(id.as_bytes()) {
            findings.add("delivered-wrong-content", || {
                format!(
                    "{process} received {id:?} as seq {seq}; the stream holds {:?}",
                    stored.get(seq).map(|p| String::from_utf8_lossy(p))
                )
            });
        }
        if let Some(acked_at) = confirmed.get(seq)
            && *t > acked_at.saturating_add(options.redelivery_slack_us)
        {
            findings.add("redelivered-after-ack", || {
                format!(
                    "seq {seq} delivered to {process} at {} (delivery {count}), its ack was \
                     answered at {}",
                    secs(*t),
                    secs(*acked_at)
                )
            });
        }
    }
    let drained = events.iter().rev().find_map(|e| match e {
        Event::Drained {
            last_seq, covered, ..
        } => Some((*last_seq, *covered)),
        _ => None,
    });
    match drained {
        None => notes.push("no final drain: the skip rule was not applied".to_owned()),
        Some((last_seq, covered)) => {
            let missing: Vec<u64> = (1..=last_seq).filter(|s| !delivered.contains(s)).collect();
            for seq in &missing {
                findings.add("consumer-skip", || {
                    format!(
                        "seq {seq} (of 1..={last_seq}) was never delivered (drain {})",
                        if covered {
                            "finished"
                        } else {
                            "ran out of time"
                        }
                    )
                });
            }
            if let Some(stream) = stream
                && let Some(last) = stream.last()
                && last.seq > last_seq
            {
                notes.push(format!(
                    "{} messages were stored after the drain's target {last_seq}",
                    last.seq - last_seq
                ));
            }
        }
    }
}
