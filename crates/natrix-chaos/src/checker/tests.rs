//! Small hand-made histories: a clean one passes, and each kind of broken promise is caught.

use super::*;
use crate::KV_BUCKET;
use crate::history::FaultDetail;

const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// A history under construction; times are in milliseconds here, microseconds in the events.
struct H {
    events: Vec<Event>,
    next_op: u64,
}

fn ms(t: u64) -> u64 {
    t * 1_000
}

impl H {
    fn new() -> H {
        H {
            events: vec![
                Event::Run {
                    t: 0,
                    seed: 1,
                    nodes: NODES.iter().map(|n| (*n).to_owned()).collect(),
                    isolation: "netns".into(),
                },
                Event::Workload {
                    t: 0,
                    phase: Phase::Started,
                },
            ],
            next_op: 0,
        }
    }

    fn op(&mut self, node: &str, call: Call, invoked: u64, done: Option<(u64, Outcome)>) -> u64 {
        self.next_op += 1;
        let op = self.next_op;
        self.events.push(Event::Invoke {
            t: ms(invoked),
            op,
            process: "p0".into(),
            node: node.into(),
            call,
        });
        if let Some((t, outcome)) = done {
            self.events.push(Event::Complete {
                t: ms(t),
                op,
                outcome,
            });
        }
        op
    }

    fn publish(&mut self, node: &str, id: &str, invoked: u64, answered: u64, outcome: Outcome) {
        let call = Call::Publish {
            id: id.into(),
            attempt: 1,
        };
        self.op(node, call, invoked, Some((answered, outcome)));
    }

    /// `id` published via n2 at `t` and acknowledged at `seq` one millisecond later.
    fn acked(&mut self, id: &str, t: u64, seq: u64) {
        self.publish("n2", id, t, t + 1, published(seq));
    }

    fn cas(&mut self, writer: u32, n: u64, key: &str, expected: u64, t: u64, outcome: Outcome) {
        let call = Call::KvCas {
            key: key.into(),
            writer,
            n,
            expected,
        };
        self.op("n2", call, t, Some((t + 1, outcome)));
    }

    fn deliver(&mut self, t: u64, seq: u64, delivered: u64, id: &str) {
        self.events.push(Event::Deliver {
            t: ms(t),
            process: "c0".into(),
            node: "n1".into(),
            seq,
            delivered,
            id: id.into(),
        });
    }

    fn ack(&mut self, seq: u64, t: u64, answered: u64) {
        let call = Call::Ack { seq, delivered: 1 };
        self.op("n1", call, t, Some((answered, Outcome::Acked)));
    }

    fn partition(&mut self, start: u64, end: u64, cut: &[(&str, &str)]) {
        let fault = 100 + self.events.len() as u64;
        let all: Vec<String> = NODES.iter().map(|n| (*n).to_owned()).collect();
        self.events.push(Event::FaultStart {
            t: ms(start),
            fault,
            kind: "partition".into(),
            detail: FaultDetail {
                cut: cut
                    .iter()
                    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                    .collect(),
                voters: [
                    (STREAM.to_owned(), all.clone()),
                    (KV_STREAM.to_owned(), all),
                ]
                .into_iter()
                .collect(),
                ..FaultDetail::default()
            },
        });
        self.events.push(Event::FaultEnd {
            t: ms(end),
            fault,
            note: String::new(),
        });
    }

    fn finish(&mut self, t: u64, drained_to: u64) {
        self.events.push(Event::Workload {
            t: ms(t),
            phase: Phase::Stopped,
        });
        self.events.push(Event::Drained {
            t: ms(t + 1),
            last_seq: drained_to,
            covered: true,
        });
        // Keep time order, as a recorder does.
        self.events.sort_by_key(Event::time);
    }
}

fn published(seq: u64) -> Outcome {
    Outcome::Published {
        seq,
        duplicate: false,
    }
}

fn record(seq: u64, id: &str) -> StoredRecord {
    StoredRecord {
        seq,
        subject: "chaos.p0".into(),
        headers: format!("NATS/1.0\r\nNats-Msg-Id: {id}\r\n\r\n").into_bytes(),
        payload: id.as_bytes().to_vec(),
        timestamp_ns: seq as i64 * 1_000,
    }
}

fn kv_record(seq: u64, key: &str, writer: u32, n: u64, expected: u64) -> StoredRecord {
    StoredRecord {
        seq,
        subject: format!("$KV.{KV_BUCKET}.{key}"),
        headers: Vec::new(),
        payload: kv_value(writer, n, expected).into_bytes(),
        timestamp_ns: seq as i64,
    }
}

/// Every node holds `stream` and `kv`.
fn observed(stream: Vec<StoredRecord>, kv: Vec<StoredRecord>) -> Observed {
    let mut copies = BTreeMap::new();
    for (name, records) in [(STREAM, stream), (KV_STREAM, kv)] {
        let per_node = NODES
            .iter()
            .map(|n| ((*n).to_owned(), Ok(records.clone())))
            .collect();
        copies.insert(name.to_owned(), per_node);
    }
    Observed { copies }
}

/// Three acknowledged publishes, delivered and acknowledged, and a two-entry CAS chain.
fn clean() -> (H, Observed) {
    let mut h = H::new();
    h.acked("p0-0", 10, 1);
    h.acked("p0-1", 20, 2);
    h.acked("p0-2", 30, 3);
    for seq in 1..=3 {
        h.deliver(40 + seq, seq, 1, &format!("p0-{}", seq - 1));
        h.ack(seq, 40 + seq, 41 + seq);
    }
    h.cas(0, 1, "k0", 0, 50, Outcome::KvWritten { revision: 1 });
    h.cas(
        1,
        1,
        "k0",
        0,
        52,
        Outcome::Refused {
            error: "wrong last sequence".into(),
        },
    );
    h.cas(1, 2, "k0", 1, 54, Outcome::KvWritten { revision: 2 });
    h.finish(60, 3);
    let stream = vec![record(1, "p0-0"), record(2, "p0-1"), record(3, "p0-2")];
    let kv = vec![kv_record(1, "k0", 0, 1, 0), kv_record(2, "k0", 1, 2, 1)];
    (h, observed(stream, kv))
}

fn rules(verdict: &Verdict) -> Vec<&'static str> {
    verdict.violations.iter().map(|v| v.rule).collect()
}

fn check_default(h: &H, o: &Observed) -> Verdict {
    check(&h.events, o, &CheckOptions::default())
}

#[test]
fn a_clean_history_passes_with_its_counts() {
    let (h, o) = clean();
    let verdict = check_default(&h, &o);
    assert!(verdict.ok(), "{}", verdict.describe());
    let s = &verdict.stats;
    assert_eq!(
        (s.publishes, s.acked, s.stored, s.lost, s.duplicated),
        (3, 3, 3, 0, 0)
    );
    assert_eq!((s.deliveries, s.acks_confirmed), (3, 3));
    assert_eq!((s.kv_written, s.kv_refused, s.kv_entries), (2, 1, 2));
    // Acks at 11, 21, 31 ms; the workload stopped at 60 ms.
    assert_eq!(
        (s.max_unavailability_us, s.max_unavailability_from_us),
        (ms(29), ms(31))
    );
}

#[test]
fn an_acknowledged_publish_missing_from_the_stream_is_lost() {
    let (h, mut o) = clean();
    for records in o
        .copies
        .get_mut(STREAM)
        .expect("copies")
        .values_mut()
        .flatten()
    {
        records.retain(|r| r.seq != 2);
    }
    let verdict = check_default(&h, &o);
    assert_eq!(verdict.stats.lost, 1);
    let found = rules(&verdict);
    assert!(found.contains(&"acked-lost"), "{found:?}");
    // The hole at 2 is a gap too, and the consumer received a message the stream lost.
    assert!(found.contains(&"stream-gap") && found.contains(&"delivered-wrong-content"));
}

#[test]
fn an_ack_naming_another_sequence_is_misplaced() {
    let (mut h, o) = clean();
    // A duplicate ack of p0-1 naming sequence 3.
    h.publish(
        "n2",
        "p0-1",
        35,
        36,
        Outcome::Published {
            seq: 3,
            duplicate: true,
        },
    );
    h.events.sort_by_key(Event::time);
    assert_eq!(rules(&check_default(&h, &o)), vec!["acked-misplaced"]);
}

#[test]
fn an_id_stored_twice_is_a_duplicate_and_an_unpublished_one_is_unknown() {
    let (h, _) = clean();
    let stream = vec![
        record(1, "p0-0"),
        record(2, "p0-1"),
        record(3, "p0-2"),
        record(4, "p0-1"),
        record(5, "p9-9"),
    ];
    let kv = vec![kv_record(1, "k0", 0, 1, 0), kv_record(2, "k0", 1, 2, 1)];
    let verdict = check_default(&h, &observed(stream, kv));
    assert_eq!(verdict.stats.duplicated, 1);
    assert_eq!(rules(&verdict), vec!["duplicate", "unknown-message"]);
}

#[test]
fn a_payload_that_disagrees_with_its_msg_id_is_unknown() {
    let (h, mut o) = clean();
    for records in o
        .copies
        .get_mut(STREAM)
        .expect("copies")
        .values_mut()
        .flatten()
    {
        records[0].headers = b"NATS/1.0\r\nNats-Msg-Id: p0-7\r\n\r\n".to_vec();
    }
    assert_eq!(rules(&check_default(&h, &o)), vec!["unknown-message"]);
}

#[test]
fn replicas_that_differ_or_cannot_be_read_are_violations() {
    let (h, mut o) = clean();
    let copies = o.copies.get_mut(STREAM).expect("stream copies");
    if let Some(Ok(records)) = copies.get_mut("n3") {
        records[2].timestamp_ns += 1;
    }
    copies.insert(
        "n2".into(),
        Err("Corruption: block checksum mismatch".into()),
    );
    let verdict = check_default(&h, &o);
    assert_eq!(
        rules(&verdict),
        vec!["replica-divergence", "replica-unreadable"]
    );
    assert!(verdict.violations[0].examples[0].contains("seq 3"));
}

#[test]
fn an_ack_through_a_minority_node_during_a_partition_is_a_violation() {
    let (mut h, mut o) = clean();
    h.partition(100, 200, &[("n1", "n2"), ("n1", "n3")]);
    // Sent via the cut-off n1 after the cut, answered before the heal: forbidden.
    h.publish("n1", "p1-0", 120, 150, published(4));
    // Sent before the cut, answered during it: allowed (it may have committed before).
    h.publish("n1", "p1-1", 99, 130, published(5));
    // Sent during, answered after the heal: allowed.
    h.publish("n1", "p1-2", 150, 201, published(6));
    // Via the majority side during the cut: allowed.
    h.publish("n2", "p1-3", 150, 151, published(7));
    // A duplicate ack of an earlier message: not a new write.
    h.publish(
        "n1",
        "p0-0",
        160,
        161,
        Outcome::Published {
            seq: 1,
            duplicate: true,
        },
    );
    // A CAS through n1 acknowledged inside the partition.
    h.cas(2, 1, "k1", 0, 170, Outcome::KvWritten { revision: 3 });
    h.events.sort_by_key(Event::time);
    // The drain target stays 3: the consumer rule is not under test here.
    for records in o
        .copies
        .get_mut(STREAM)
        .expect("copies")
        .values_mut()
        .flatten()
    {
        for (seq, id) in [(4, "p1-0"), (5, "p1-1"), (6, "p1-2"), (7, "p1-3")] {
            records.push(record(seq, id));
        }
    }
    for records in o
        .copies
        .get_mut(KV_STREAM)
        .expect("copies")
        .values_mut()
        .flatten()
    {
        records.push(kv_record(3, "k1", 2, 1, 0));
    }
    // The CAS was sent via n2 by `cas`; move it to n1.
    for e in &mut h.events {
        if let Event::Invoke {
            node,
            call: Call::KvCas { writer: 2, .. },
            ..
        } = e
        {
            *node = "n1".into();
        }
    }
    let verdict = check_default(&h, &o);
    let minority = verdict
        .violations
        .iter()
        .find(|v| v.rule == "minority-ack")
        .expect("a minority-ack violation");
    assert_eq!(minority.count, 2, "{}", verdict.describe());
    assert!(minority.examples[0].contains("via n1"));
    assert_eq!(rules(&verdict), vec!["minority-ack"]);
    assert_eq!(verdict.stats.minority_windows, 1);
    // Sent via n1 while it was cut off: p1-0, p1-2, the duplicate and the CAS (p1-1 was sent
    // before the cut).
    assert_eq!(verdict.stats.minority_writes, 4);
}

#[test]
fn a_bridge_leaves_nobody_in_a_minority() {
    let (mut h, o) = clean();
    h.partition(100, 200, &[("n1", "n3")]);
    h.publish(
        "n1",
        "p0-3",
        120,
        121,
        Outcome::Unknown {
            error: "timeout".into(),
        },
    );
    h.events.sort_by_key(Event::time);
    let verdict = check_default(&h, &o);
    assert!(verdict.ok(), "{}", verdict.describe());
    assert_eq!(verdict.stats.minority_writes, 0);
}

#[test]
fn a_write_acknowledged_below_an_earlier_acknowledged_one_breaks_real_time_order() {
    let (mut h, _) = clean();
    h.acked("p0-3", 70, 5);
    h.acked("p0-4", 80, 4);
    h.events.sort_by_key(Event::time);
    let stream = vec![
        record(1, "p0-0"),
        record(2, "p0-1"),
        record(3, "p0-2"),
        record(4, "p0-4"),
        record(5, "p0-3"),
    ];
    let kv = vec![kv_record(1, "k0", 0, 1, 0), kv_record(2, "k0", 1, 2, 1)];
    let verdict = check_default(&h, &observed(stream, kv));
    assert_eq!(
        rules(&verdict),
        vec!["real-time-order"],
        "{}",
        verdict.describe()
    );
}

#[test]
fn a_sequence_the_consumer_never_received_is_skipped() {
    let (mut h, o) = clean();
    h.events
        .retain(|e| !matches!(e, Event::Deliver { seq: 2, .. }));
    assert_eq!(rules(&check_default(&h, &o)), vec!["consumer-skip"]);
}

#[test]
fn a_delivery_long_after_its_ack_was_answered_is_a_violation_and_a_close_one_is_not() {
    let (mut h, o) = clean();
    // Seq 1's ack was answered at 42 ms.
    h.deliver(42 + 500, 1, 2, "p0-0");
    h.events.sort_by_key(Event::time);
    assert!(check_default(&h, &o).ok());
    h.deliver(42 + 2_000, 1, 3, "p0-0");
    h.events.sort_by_key(Event::time);
    let verdict = check_default(&h, &o);
    assert_eq!(rules(&verdict), vec!["redelivered-after-ack"]);
    assert_eq!(verdict.stats.redeliveries, 2);
}

#[test]
fn a_broken_cas_chain_is_caught() {
    let (h, mut o) = clean();
    // w1-2 expected 1 but lands after an entry at 2 that expected 0: two creates of k0.
    o.copies.insert(
        KV_STREAM.into(),
        NODES
            .iter()
            .map(|n| {
                let copy = vec![
                    kv_record(1, "k0", 0, 1, 0),
                    kv_record(2, "k0", 9, 9, 0),
                    kv_record(3, "k0", 1, 2, 1),
                ];
                ((*n).to_owned(), Ok(copy))
            })
            .collect(),
    );
    let verdict = check_default(&h, &o);
    assert_eq!(
        rules(&verdict),
        vec!["kv-chain", "kv-ok-missing", "kv-unknown-entry"],
        "{}",
        verdict.describe()
    );
}

#[test]
fn a_refused_cas_that_is_stored_and_a_cas_applied_twice_are_caught() {
    let (h, mut o) = clean();
    o.copies.insert(
        KV_STREAM.into(),
        NODES
            .iter()
            .map(|n| {
                let copy = vec![
                    kv_record(1, "k0", 0, 1, 0),
                    kv_record(2, "k0", 1, 1, 1),
                    kv_record(3, "k0", 1, 2, 2),
                    kv_record(4, "k0", 1, 2, 3),
                ];
                ((*n).to_owned(), Ok(copy))
            })
            .collect(),
    );
    let verdict = check_default(&h, &o);
    let found = rules(&verdict);
    for rule in ["kv-refused-present", "kv-duplicate-op", "kv-ok-missing"] {
        assert!(found.contains(&rule), "{rule} missing from {found:?}");
    }
}

#[test]
fn values_of_the_cas_writers_parse_back() {
    assert_eq!(
        parse_kv_value(kv_value(3, 17, 250).as_bytes()),
        Some((3, 17, 250))
    );
    assert_eq!(parse_kv_value(b"w3-17"), None);
    assert_eq!(parse_kv_value(b"x3-17-e2"), None);
}
