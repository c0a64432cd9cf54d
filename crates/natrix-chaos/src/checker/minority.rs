//! Rule 4: no write acknowledged through a node a partition left in a minority of the group.

use std::collections::{BTreeMap, HashMap};

use super::{Findings, Op, Stats, Window, secs};
use crate::history::{Call, Event, Outcome};
use crate::topology::in_minority;
use crate::{KV_STREAM, STREAM};

/// Rule 4.
pub(super) fn check_minority(
    events: &[Event],
    ops: &BTreeMap<u64, Op<'_>>,
    findings: &mut Findings,
    stats: &mut Stats,
    notes: &mut Vec<String>,
) {
    let Some(nodes) = events.iter().find_map(|e| match e {
        Event::Run { nodes, .. } => Some(nodes),
        _ => None,
    }) else {
        notes.push("no run event: the minority rule was not applied".to_owned());
        return;
    };
    let mut ends: HashMap<u64, u64> = HashMap::new();
    for e in events {
        if let Event::FaultEnd { t, fault, .. } = e {
            ends.entry(*fault).or_insert(*t);
        }
    }
    let mut windows = Vec::new();
    for e in events {
        if let Event::FaultStart {
            t, fault, detail, ..
        } = e
            && !detail.cut.is_empty()
        {
            windows.push(Window {
                start: *t,
                end: ends.get(fault).copied().unwrap_or(u64::MAX),
                cut: &detail.cut,
                voters: &detail.voters,
            });
        }
    }
    for w in &windows {
        let mut applied = false;
        for (op_id, op) in ops {
            let stream = match op.call {
                Call::Publish { .. } => STREAM,
                Call::KvCas { .. } => KV_STREAM,
                _ => continue,
            };
            if op.invoked < w.start || op.invoked >= w.end {
                continue;
            }
            let voters = w.voters.get(stream).map(Vec::as_slice).unwrap_or(&[]);
            let Some(true) = in_minority(nodes, w.cut, voters, op.node) else {
                continue;
            };
            applied = true;
            stats.minority_writes += 1;
            let Some((answered, outcome)) = op.completed else {
                continue;
            };
            let new_write = match outcome {
                Outcome::Published { duplicate, .. } => !duplicate,
                Outcome::KvWritten { .. } => true,
                _ => false,
            };
            if new_write && answered < w.end {
                findings.add("minority-ack", || {
                    format!(
                        "op {op_id} ({}, via {}) sent at {} and answered {outcome:?} at {}, \
                         inside a partition from {} to {} that left {} in a minority of \
                         {stream}'s voters {voters:?} (cut {:?})",
                        op.process,
                        op.node,
                        secs(op.invoked),
                        secs(answered),
                        secs(w.start),
                        secs(w.end),
                        op.node,
                        w.cut
                    )
                });
            }
        }
        if applied || w.voters.values().any(|v| !v.is_empty()) {
            stats.minority_windows += 1;
        } else {
            notes.push(format!(
                "partition at {}: voters unknown, minority rule not applied",
                secs(w.start)
            ));
        }
    }
}
