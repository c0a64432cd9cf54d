//! Rule 7: per key, the KV stream is one chain of compare-and-sets matching what the writers
//! were told.

use std::collections::{BTreeMap, HashMap};

use super::{Findings, Op, Stats, StoredRecord};
use crate::history::{Call, Outcome};
use crate::{KV_BUCKET, KV_STREAM};

/// `w<writer>-<n>-e<expected>`.
pub fn parse_kv_value(payload: &[u8]) -> Option<(u32, u64, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.strip_prefix('w')?.splitn(3, '-');
    let writer = parts.next()?.parse().ok()?;
    let n = parts.next()?.parse().ok()?;
    let expected = parts.next()?.strip_prefix('e')?.parse().ok()?;
    Some((writer, n, expected))
}

/// The value a CAS writer writes.
pub fn kv_value(writer: u32, n: u64, expected: u64) -> String {
    format!("w{writer}-{n}-e{expected}")
}

/// Rule 7.
pub(super) fn check_kv(
    ops: &BTreeMap<u64, Op<'_>>,
    kv: Option<&[StoredRecord]>,
    findings: &mut Findings,
    stats: &mut Stats,
) {
    // (writer, n) -> (key, expected, outcome)
    let mut cas: HashMap<(u32, u64), (&str, u64, Option<&Outcome>)> = HashMap::new();
    for op in ops.values() {
        let Call::KvCas {
            key,
            writer,
            n,
            expected,
        } = op.call
        else {
            continue;
        };
        let outcome = op.completed.map(|(_, o)| o);
        match outcome {
            Some(Outcome::KvWritten { .. }) => stats.kv_written += 1,
            Some(Outcome::Refused { .. }) => stats.kv_refused += 1,
            _ => stats.kv_unknown += 1,
        }
        cas.insert((*writer, *n), (key, *expected, outcome));
    }
    let Some(kv) = kv else {
        return;
    };
    stats.kv_entries = kv.len();
    let prefix = format!("$KV.{KV_BUCKET}.");
    let mut last_rev: HashMap<&str, u64> = HashMap::new();
    // (writer, n) -> (key, revision)
    let mut applied: HashMap<(u32, u64), Vec<(&str, u64)>> = HashMap::new();
    for record in kv {
        let Some(key) = record.subject.strip_prefix(&prefix) else {
            findings.add("kv-unknown-entry", || {
                format!("{KV_STREAM} seq {}: subject {}", record.seq, record.subject)
            });
            continue;
        };
        let Some((writer, n, expected)) = parse_kv_value(&record.payload) else {
            findings.add("kv-unknown-entry", || {
                format!(
                    "{KV_STREAM} seq {}: value {:?} is not a writer's",
                    record.seq,
                    String::from_utf8_lossy(&record.payload)
                )
            });
            continue;
        };
        let previous = last_rev.insert(key, record.seq).unwrap_or(0);
        if expected != previous {
            findings.add("kv-chain", || {
                format!(
                    "key {key}: w{writer}-{n} at revision {} expected revision {expected}, but \
                     the key's previous entry is at {previous}",
                    record.seq
                )
            });
        }
        match cas.get(&(writer, n)) {
            Some((k, e, _)) if *k == key && *e == expected => {}
            other => findings.add("kv-unknown-entry", || {
                format!(
                    "{KV_STREAM} seq {} (key {key}): w{writer}-{n} expecting {expected} was \
                     never sent as such ({other:?})",
                    record.seq
                )
            }),
        }
        applied
            .entry((writer, n))
            .or_default()
            .push((key, record.seq));
    }
    for ((writer, n), at) in &applied {
        if at.len() > 1 {
            findings.add("kv-duplicate-op", || {
                format!("w{writer}-{n} is applied {} times: {at:?}", at.len())
            });
        }
    }
    for ((writer, n), (key, expected, outcome)) in &cas {
        let at = applied.get(&(*writer, *n));
        match outcome {
            Some(Outcome::KvWritten { revision })
                if !at.is_some_and(|at| at.iter().any(|(k, r)| k == key && r == revision)) =>
            {
                findings.add("kv-ok-missing", || {
                    format!(
                        "w{writer}-{n} on key {key} (expecting {expected}) was acknowledged at \
                         revision {revision} but is stored at {at:?}"
                    )
                });
            }
            Some(Outcome::Refused { error }) if at.is_some() => {
                findings.add("kv-refused-present", || {
                    format!(
                        "w{writer}-{n} on key {key} (expecting {expected}) was refused ({error}) \
                         but is stored at {at:?}"
                    )
                });
            }
            _ => {}
        }
    }
}
