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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use crate::history::{Call, Event, Outcome, Phase};
use crate::topology::in_minority;
use crate::{KV_BUCKET, KV_STREAM, STREAM};

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

    check_publishes(&ops, stream, &mut findings, &mut stats);
    if stream.is_none() {
        notes.push(format!(
            "no readable copy of {STREAM}: acknowledged publishes could not be checked"
        ));
    }
    check_minority(events, &ops, &mut findings, &mut stats, &mut notes);
    check_real_time(&ops, &mut findings);
    check_consumer(
        events,
        &ops,
        stream,
        options,
        &mut findings,
        &mut stats,
        &mut notes,
    );
    check_kv(&ops, kv, &mut findings, &mut stats);
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

/// Rules 1 and 2.
fn check_publishes(
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

/// Rule 4.
fn check_minority(
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

/// Rule 5: for acknowledged new writes of one kind, an answer before another's send means a
/// lower sequence.
fn check_real_time(ops: &BTreeMap<u64, Op<'_>>, findings: &mut Findings) {
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

/// Rule 6.
fn check_consumer(
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
fn check_kv(
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
#[path = "checker_test.rs"]
mod tests;
