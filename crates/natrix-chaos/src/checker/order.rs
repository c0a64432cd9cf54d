//! Rule 5: acknowledged writes are ordered as they happened in real time.

use std::collections::BTreeMap;

use super::{Findings, Op, secs};
use crate::history::{Call, Outcome};
use crate::{KV_STREAM, STREAM};

/// Rule 5: for acknowledged new writes of one kind, an answer before another's send means a
/// lower sequence.
pub(super) fn check_real_time(ops: &BTreeMap<u64, Op<'_>>, findings: &mut Findings) {
    // (invoked, answered, seq, op id)
    let mut publishes = Vec::new();
    let mut kv = Vec::new();
    for (id, op) in ops {
        match (op.call, op.completed) {
            (
                Call::Publish { .. },
                Some((
                    answered,
                    Outcome::Published {
                        seq,
                        duplicate: false,
                    },
                )),
            ) => publishes.push((op.invoked, answered, *seq, *id)),
            (Call::KvCas { .. }, Some((answered, Outcome::KvWritten { revision }))) => {
                kv.push((op.invoked, answered, *revision, *id))
            }
            _ => {}
        }
    }
    for (what, mut writes) in [(STREAM, publishes), (KV_STREAM, kv)] {
        let mut by_answer = writes.clone();
        by_answer.sort_by_key(|w| w.1);
        writes.sort_by_key(|w| w.0);
        // Sweep the writes in send order; `highest` is the highest sequence answered before the
        // current one was sent.
        let mut highest: Option<(u64, u64, u64)> = None; // (seq, answered, op)
        let mut next = 0;
        for &(invoked, _, seq, op) in &writes {
            while next < by_answer.len() && by_answer[next].1 < invoked {
                let (_, answered, s, o) = by_answer[next];
                if highest.is_none_or(|(h, _, _)| s > h) {
                    highest = Some((s, answered, o));
                }
                next += 1;
            }
            if let Some((h, answered, earlier)) = highest
                && seq <= h
            {
                findings.add("real-time-order", || {
                    format!(
                        "{what}: op {op} sent at {} got seq {seq}, but op {earlier} had already \
                         been acknowledged at seq {h} (at {})",
                        secs(invoked),
                        secs(answered)
                    )
                });
            }
        }
    }
}
