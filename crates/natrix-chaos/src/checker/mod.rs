//! The checker: judges a run's history against what every replica holds at the end. Each rule is
//! a claim natrix makes to its clients (design §6, `docs/reliability.md`); a violation names the
//! rule and the first few examples. Pure: the history and the replicas' copies in, a verdict out.
//!
//! The rules:
//! 1. `acked-lost` / `acked-misplaced`: every acknowledged publish is in the stream at the
//!    sequence its PubAck named (a duplicate PubAck, `duplicate: true`, names the original's).
//! 2. `duplicate`, `unknown-message`, `stream-gap`: no id is stored twice, every stored message
//!    was published by the workload (payload and `Nats-Msg-Id` agree), and sequences run from 1
//!    to the last without holes (nothing in the run deletes).
//! 3. `replica-divergence`, `replica-unreadable`: every replica holds the same messages at the
//!    same sequences, byte for byte (subject, headers, payload, timestamp).
//! 4. `minority-ack`: a client connected to a node that a partition has cut off from a majority
//!    of the stream's voters gets no PubAck (nor CAS success) for a write it *sent after the
//!    partition was in place* and that was answered *before the partition healed*. Only the send
//!    time is bounded: a write sent earlier may have committed before the cut, and its answer may
//!    arrive late; a write sent later reaches the node after the cut, and from there neither a
//!    leader with a quorum can get it nor its answer come back until the heal. Duplicate PubAcks
//!    are not new writes and are left to rule 1.
//! 5. `real-time-order`: writes are linearizable: when a write's acknowledgement came before
//!    another write was sent, the first has the lower sequence (stream and KV alike).
//! 6. `consumer-skip`, `delivered-wrong-content`, `redelivered-after-ack`: by the end of the final
//!    drain the consumers received every sequence up to the drain's target, each delivery carries
//!    the stored message of its sequence, and a message whose ack was answered is not delivered
//!    again later than `redelivery_slack` after that answer (a delivery already on its way when
//!    the ack was answered can arrive a little after it).
//! 7. `kv-chain`, `kv-ok-missing`, `kv-refused-present`, `kv-duplicate-op`, `kv-unknown-entry`:
//!    per key, the KV stream's entries form one chain of compare-and-sets (each entry expected the
//!    revision of the key's previous entry, the first expected none), every acknowledged CAS is
//!    at the revision it was told, a CAS refused for a wrong revision is absent, no CAS is applied
//!    twice and every entry was written by a writer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

mod consumer;
mod kv;
mod minority;
mod order;
mod publishes;

pub use kv::{kv_value, parse_kv_value};

use crate::history::{Call, Event, Outcome, Phase};
use crate::{KV_STREAM, STREAM};

/// One message as a replica stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub seq: u64,
    pub subject: String,
    /// The whole header block, empty when the message has none.
    pub headers: Vec<u8>,
    pub payload: Vec<u8>,
    pub timestamp_ns: i64,
}

/// A replica's copy of a stream, or why it could not be read.
pub type ReplicaCopy = Result<Vec<StoredRecord>, String>;

/// What the run read at the end: per stream, per node holding a replica, that node's copy.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub copies: BTreeMap<String, BTreeMap<String, ReplicaCopy>>,
}

#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// How long after an ack's answer a delivery of the same message may still arrive (one that
    /// was already on its way).
    pub redelivery_slack_us: u64,
    /// Examples kept per rule.
    pub examples: usize,
}

impl Default for CheckOptions {
    fn default() -> CheckOptions {
        CheckOptions {
            redelivery_slack_us: 1_000_000,
            examples: 8,
        }
    }
}

/// A broken rule: how often, and the first examples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub count: usize,
    pub examples: Vec<String>,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every invoked operation (publishes, acks, KV reads and writes).
    pub operations: usize,
    pub publishes: usize,
    /// Distinct ids with a PubAck.
    pub acked: usize,
    pub publish_errors: usize,
    pub publish_unknown: usize,
    /// Messages in the stream at the end.
    pub stored: usize,
    /// Acknowledged ids stored nowhere.
    pub lost: usize,
    /// Ids stored more than once.
    pub duplicated: usize,
    /// Publishes answered with an error whose message is stored all the same (allowed: an error
    /// promises nothing; counted to show it happens).
    pub errored_but_stored: usize,
    pub deliveries: usize,
    pub redeliveries: usize,
    pub acks_confirmed: usize,
    pub kv_written: usize,
    pub kv_refused: usize,
    pub kv_unknown: usize,
    pub kv_entries: usize,
    /// The longest time without a PubAck while the workload ran, in microseconds, and when it
    /// began.
    pub max_unavailability_us: u64,
    pub max_unavailability_from_us: u64,
    /// Faults by kind.
    pub faults: BTreeMap<String, usize>,
    /// Partitions the minority rule was applied to, and writes sent from a minority node
    /// during them (what the rule had to judge).
    pub minority_windows: usize,
    pub minority_writes: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub violations: Vec<Violation>,
    pub stats: Stats,
    /// Rules that could not be applied, and why.
    pub notes: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// A human-readable list of the violations, with their examples.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for v in &self.violations {
            let _ = writeln!(out, "VIOLATION {} ({}x)", v.rule, v.count);
            for e in &v.examples {
                let _ = writeln!(out, "    {e}");
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

/// Collects violations, keeping the first examples of each rule.
struct Findings {
    keep: usize,
    by_rule: BTreeMap<&'static str, Violation>,
}

impl Findings {
    fn add(&mut self, rule: &'static str, example: impl FnOnce() -> String) {
        let v = self.by_rule.entry(rule).or_insert_with(|| Violation {
            rule,
            count: 0,
            examples: Vec::new(),
        });
        v.count += 1;
        if v.examples.len() < self.keep {
            v.examples.push(example());
        }
    }
}

/// An invoked operation with its completion, if any.
struct Op<'a> {
    invoked: u64,
    process: &'a str,
    node: &'a str,
    call: &'a Call,
    completed: Option<(u64, &'a Outcome)>,
}

/// A partition as the minority rule sees it.
struct Window<'a> {
    start: u64,
    end: u64,
    cut: &'a [(String, String)],
    voters: &'a BTreeMap<String, Vec<String>>,
}

/// Judges `events` against `observed`.
pub fn check(events: &[Event], observed: &Observed, options: &CheckOptions) -> Verdict {
    let mut findings = Findings {
        keep: options.examples.max(1),
        by_rule: BTreeMap::new(),
    };
    let mut stats = Stats::default();
    let mut notes = Vec::new();

    let ops = collect_ops(events);
    stats.operations = ops.len();
    for e in events {
        if let Event::FaultStart { kind, .. } = e {
            *stats.faults.entry(kind.clone()).or_default() += 1;
        }
    }

    let stream = reference_copy(observed, STREAM, &mut findings, &mut notes);
    let kv = reference_copy(observed, KV_STREAM, &mut findings, &mut notes);

    publishes::check_publishes(&ops, stream, &mut findings, &mut stats);
    if stream.is_none() {
        notes.push(format!(
            "no readable copy of {STREAM}: acknowledged publishes could not be checked"
        ));
    }
    minority::check_minority(events, &ops, &mut findings, &mut stats, &mut notes);
    order::check_real_time(&ops, &mut findings);
    consumer::check_consumer(
        events,
        &ops,
        stream,
        options,
        &mut findings,
        &mut stats,
        &mut notes,
    );
    kv::check_kv(&ops, kv, &mut findings, &mut stats);
    (
        stats.max_unavailability_us,
        stats.max_unavailability_from_us,
    ) = max_unavailability(events);

    Verdict {
        violations: findings.by_rule.into_values().collect(),
        stats,
        notes,
    }
}

fn collect_ops(events: &[Event]) -> BTreeMap<u64, Op<'_>> {
    let mut ops: BTreeMap<u64, Op<'_>> = BTreeMap::new();
    for e in events {
        match e {
            Event::Invoke {
                t,
                op,
                process,
                node,
                call,
            } => {
                ops.insert(
                    *op,
                    Op {
                        invoked: *t,
                        process,
                        node,
                        call,
                        completed: None,
                    },
                );
            }
            Event::Complete { t, op, outcome } => {
                if let Some(o) = ops.get_mut(op) {
                    o.completed = Some((*t, outcome));
                }
            }
            _ => {}
        }
    }
    ops
}

/// The copy the history is checked against (the first readable one by node name), after
/// checking every copy of `stream` against it (rule 3).
fn reference_copy<'a>(
    observed: &'a Observed,
    stream: &str,
    findings: &mut Findings,
    notes: &mut Vec<String>,
) -> Option<&'a [StoredRecord]> {
    let Some(copies) = observed.copies.get(stream) else {
        notes.push(format!("no replica of {stream} was read"));
        return None;
    };
    let mut reference: Option<(&str, &[StoredRecord])> = None;
    for (node, copy) in copies {
        match copy {
            Err(why) => findings.add("replica-unreadable", || {
                format!("{stream} on {node}: {why}")
            }),
            Ok(records) => match reference {
                None => reference = Some((node, records)),
                Some((ref_node, ref_records)) => {
                    if records != ref_records {
                        findings.add("replica-divergence", || {
                            format!(
                                "{stream}: {node} differs from {ref_node}: {}",
                                first_differences(ref_records, records, 4)
                            )
                        });
                    }
                }
            },
        }
    }
    reference.map(|(_, records)| records)
}

fn first_differences(a: &[StoredRecord], b: &[StoredRecord], keep: usize) -> String {
    let a_by: BTreeMap<u64, &StoredRecord> = a.iter().map(|r| (r.seq, r)).collect();
    let b_by: BTreeMap<u64, &StoredRecord> = b.iter().map(|r| (r.seq, r)).collect();
    let seqs: BTreeSet<u64> = a_by.keys().chain(b_by.keys()).copied().collect();
    let mut out = format!("{} vs {} messages", a.len(), b.len());
    let describe = |r: Option<&&StoredRecord>| match r {
        None => "nothing".to_owned(),
        Some(r) => format!(
            "{}:{:?}@{}",
            r.subject,
            String::from_utf8_lossy(&r.payload),
            r.timestamp_ns
        ),
    };
    for seq in seqs
        .into_iter()
        .filter(|s| a_by.get(s) != b_by.get(s))
        .take(keep)
    {
        let _ = write!(
            out,
            "; seq {seq}: {} vs {}",
            describe(a_by.get(&seq)),
            describe(b_by.get(&seq))
        );
    }
    out
}

/// The value of the `Nats-Msg-Id` header in a header block.
fn msg_id_header(headers: &[u8]) -> Option<String> {
    String::from_utf8_lossy(headers).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("Nats-Msg-Id")
            .then(|| value.trim().to_owned())
    })
}

/// The longest stretch without a PubAck between the workload's start and stop, and its start.
fn max_unavailability(events: &[Event]) -> (u64, u64) {
    let start = events.iter().find_map(|e| match e {
        Event::Workload {
            t,
            phase: Phase::Started,
        } => Some(*t),
        _ => None,
    });
    let stop = events.iter().find_map(|e| match e {
        Event::Workload {
            t,
            phase: Phase::Stopped,
        } => Some(*t),
        _ => None,
    });
    let Some(start) = start else {
        return (0, 0);
    };
    let stop = stop.unwrap_or_else(|| events.last().map_or(start, Event::time));
    let mut last = start;
    let mut max = (0, start);
    for e in events {
        if let Event::Complete {
            t,
            outcome: Outcome::Published { .. },
            ..
        } = e
            && *t >= start
            && *t <= stop
        {
            if t - last > max.0 {
                max = (t - last, last);
            }
            last = *t;
        }
    }
    if stop.saturating_sub(last) > max.0 {
        max = (stop - last, last);
    }
    max
}

fn secs(us: u64) -> String {
    if us == u64::MAX {
        return "never".to_owned();
    }
    format!("{:.3}s", us as f64 / 1e6)
}

#[cfg(test)]
mod tests;
