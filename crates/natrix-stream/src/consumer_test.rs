//! Tests of the consumer state machine, against a real [`Stream`].

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::{Command, ConsumerInfo, PurgeRequest, StreamConfig};

const SEC: i64 = 1_000_000_000;

fn publish(s: &mut Stream, subject: &str, ts: i64) -> u64 {
    s.apply(Command::Publish {
        subject: Bytes::copy_from_slice(subject.as_bytes()),
        headers: None,
        payload: Bytes::from_static(b"x"),
        timestamp_ns: ts,
    })
    .expect("publish is stored");
    s.last_seq()
}

/// Stream `S` on `s.>` (or `t.>`-style subjects given), message i at second i+1.
fn stream_with(subjects: &[&str]) -> Stream {
    let cfg = StreamConfig::named("S", &[">"]);
    let cfg = StreamConfig {
        no_ack: true,
        ..cfg
    }
    .validate_for_create()
    .expect("valid stream");
    let mut s = Stream::new(cfg);
    for (i, subject) in subjects.iter().enumerate() {
        publish(&mut s, subject, (i as i64 + 1) * SEC);
    }
    s
}

fn consumer(json: &str, s: &Stream) -> Consumer {
    let cfg = ConsumerConfig::from_json(json.as_bytes())
        .and_then(|c| c.validate_and_default(s.config()))
        .expect("valid consumer config");
    Consumer::new(cfg, 0, s)
}

/// Delivers until nothing is left: (stream seq, consumer seq, delivery count, pending).
fn drain(c: &mut Consumer, s: &Stream, now: i64) -> Vec<(u64, u64, u64, u64)> {
    let mut out = Vec::new();
    while let Some(d) = c.next_delivery(s, now) {
        out.push((d.stream_seq, d.consumer_seq, d.delivery_count, d.pending));
        assert!(out.len() < 10_000, "runaway delivery loop");
    }
    out
}

fn seqs(ds: &[(u64, u64, u64, u64)]) -> Vec<u64> {
    ds.iter().map(|d| d.0).collect()
}

const TRACE: [&str; 6] = ["t.a", "t.b", "t.a", "t.c", "t.b", "t.a"];

#[test]
fn deliver_all_sends_every_message_in_order_with_the_pending_count_of_the_ack_subject() {
    let s = stream_with(&["q.0", "q.1", "q.2"]);
    let mut c = consumer(r#"{"ack_policy":"explicit"}"#, &s);
    assert_eq!(c.num_pending(&s), 3);
    assert_eq!(
        drain(&mut c, &s, 0),
        vec![(1, 1, 1, 2), (2, 2, 1, 1), (3, 3, 1, 0)]
    );
    assert_eq!(c.num_ack_pending(), 3);
    assert_eq!(c.num_pending(&s), 0);
}

#[test]
fn new_messages_published_later_are_delivered_and_counted() {
    let mut s = stream_with(&["t.a"]);
    let mut c = consumer(r#"{"ack_policy":"none"}"#, &s);
    assert_eq!(seqs(&drain(&mut c, &s, 0)), vec![1]);
    publish(&mut s, "t.b", 10 * SEC);
    publish(&mut s, "t.c", 11 * SEC);
    assert_eq!(c.num_available(&s), 2);
    assert_eq!(drain(&mut c, &s, 0), vec![(2, 2, 1, 1), (3, 3, 1, 0)]);
}

#[test]
fn filtered_consumers_see_only_matching_subjects() {
    let s = stream_with(&TRACE);
    let mut c = consumer(r#"{"ack_policy":"explicit","filter_subject":"t.b"}"#, &s);
    assert_eq!(c.num_pending(&s), 2);
    assert_eq!(drain(&mut c, &s, 0), vec![(2, 1, 1, 1), (5, 2, 1, 0)]);
    let mut multi = consumer(
        r#"{"ack_policy":"none","filter_subjects":["t.b","t.c"]}"#,
        &s,
    );
    assert_eq!(seqs(&drain(&mut multi, &s, 0)), vec![2, 4, 5]);
}

#[test]
fn deliver_policies_start_where_nats_server_starts() {
    let s = stream_with(&TRACE);
    // (config, delivered.stream_seq, num_pending) as nats-server 2.9.10 reports them.
    let cases = [
        (r#"{"deliver_policy":"all"}"#, 0, 6),
        (r#"{"deliver_policy":"last"}"#, 5, 1),
        (r#"{"deliver_policy":"last","filter_subject":"t.b"}"#, 4, 1),
        (r#"{"deliver_policy":"new"}"#, 6, 0),
        (r#"{"deliver_policy":"new","filter_subject":"t.b"}"#, 6, 0),
        (
            r#"{"deliver_policy":"by_start_sequence","opt_start_seq":3}"#,
            2,
            4,
        ),
        (
            r#"{"deliver_policy":"by_start_sequence","opt_start_seq":3,"filter_subject":"t.c"}"#,
            2,
            1,
        ),
        (
            r#"{"deliver_policy":"by_start_sequence","opt_start_seq":100}"#,
            6,
            0,
        ),
        (
            r#"{"deliver_policy":"by_start_time","opt_start_time":"1970-01-01T00:00:04Z"}"#,
            3,
            3,
        ),
        (
            r#"{"deliver_policy":"last_per_subject","filter_subject":"t.*"}"#,
            3,
            3,
        ),
    ];
    for (json, delivered, pending) in cases {
        let c = consumer(json, &s);
        assert_eq!(
            (c.state().delivered.stream_seq, c.num_pending(&s)),
            (delivered, pending),
            "{json}"
        );
        assert_eq!(c.state().ack_floor.stream_seq, delivered, "{json}");
    }
}

#[test]
fn last_per_subject_delivers_each_subjects_last_message_then_new_ones() {
    let mut s = stream_with(&TRACE);
    let mut c = consumer(
        r#"{"deliver_policy":"last_per_subject","filter_subject":"t.*","ack_policy":"explicit"}"#,
        &s,
    );
    assert_eq!(
        drain(&mut c, &s, 0),
        vec![(4, 1, 1, 2), (5, 2, 1, 1), (6, 3, 1, 0)]
    );
    publish(&mut s, "t.d", 20 * SEC);
    assert_eq!(c.num_pending(&s), 1);
    assert_eq!(seqs(&drain(&mut c, &s, 0)), vec![7]);
}

#[test]
fn an_expired_ack_wait_redelivers_with_a_new_delivery_sequence() {
    let s = stream_with(&["q.0", "q.1"]);
    let mut c = consumer(r#"{"ack_policy":"explicit","ack_wait":1000000000}"#, &s);
    drain(&mut c, &s, 0);
    assert_eq!(c.next_deadline(), Some(SEC));
    assert_eq!(c.next_delivery(&s, SEC - 1), None);
    c.ack(&AckKind::Ack, 2, 2, SEC / 2);
    assert!(c.expire(SEC).is_empty());
    let d = c.next_delivery(&s, SEC).expect("redelivery");
    assert_eq!(
        (d.stream_seq, d.consumer_seq, d.delivery_count, d.pending),
        (1, 3, 2, 0)
    );
    assert_eq!(
        c.state().delivered,
        SequencePair {
            consumer_seq: 3,
            stream_seq: 2
        }
    );
    assert_eq!(c.num_redelivered(), 1);
    assert_eq!(c.next_deadline(), Some(2 * SEC));
}

#[test]
fn max_ack_pending_stalls_new_messages_but_not_redeliveries() {
    let s = stream_with(&["q.0", "q.1", "q.2"]);
    let mut c = consumer(
        r#"{"ack_policy":"explicit","ack_wait":1000000000,"max_ack_pending":2}"#,
        &s,
    );
    assert_eq!(seqs(&drain(&mut c, &s, 0)), vec![1, 2]);
    assert_eq!(seqs(&drain(&mut c, &s, SEC)), vec![1, 2], "redeliveries go");
    c.ack(&AckKind::Ack, 1, 1, SEC);
    assert_eq!(seqs(&drain(&mut c, &s, SEC)), vec![3]);
}

#[test]
fn explicit_acks_move_the_floor_only_over_a_contiguous_prefix() {
    // The nats-server 2.15.1 trace: deliver 1..3, ack 2, term 1.
    let s = stream_with(&["q.0", "q.1", "q.2"]);
    let mut c = consumer(r#"{"ack_policy":"explicit"}"#, &s);
    drain(&mut c, &s, 0);
    let out = c.ack(&AckKind::Ack, 2, 2, 5);
    assert_eq!((out.acked, out.ack_floor_moved), (vec![2], false));
    assert_eq!(c.state().ack_floor, SequencePair::default());
    let out = c.ack(
        &AckKind::Term {
            reason: Some("because".into()),
        },
        1,
        1,
        6,
    );
    assert!(out.ack_floor_moved);
    assert_eq!(
        c.state().ack_floor,
        SequencePair {
            consumer_seq: 2,
            stream_seq: 2
        }
    );
    assert_eq!(
        out.advisories,
        vec![Advisory::Terminated {
            stream_seq: 1,
            consumer_seq: 1,
            deliveries: 1,
            reason: Some("because".into())
        }]
    );
    assert_eq!(c.num_ack_pending(), 1);
    c.ack(&AckKind::Ack, 3, 3, 7);
    assert_eq!(c.state().ack_floor, c.state().delivered);
}

#[test]
fn acking_twice_or_acking_the_unknown_changes_nothing() {
    let s = stream_with(&["q.0", "q.1"]);
    let mut c = consumer(r#"{"ack_policy":"explicit"}"#, &s);
    drain(&mut c, &s, 0);
    assert_eq!(c.ack(&AckKind::Ack, 1, 1, 0).acked, vec![1]);
    let before = c.state().clone();
    assert_eq!(c.ack(&AckKind::Ack, 1, 1, 0).acked, Vec::<u64>::new());
    assert_eq!(c.ack(&AckKind::Ack, 99, 99, 0).acked, Vec::<u64>::new());
    assert_eq!(
        c.ack(&AckKind::Nak { delay_ns: None }, 1, 1, 0),
        AckOutcome::default()
    );
    assert_eq!(c.state().pending, before.pending);
    assert_eq!(c.state().ack_floor, before.ack_floor);
}

#[test]
fn ack_all_acknowledges_everything_up_to_the_sequence() {
    let s = stream_with(&TRACE);
    let mut c = consumer(r#"{"ack_policy":"all"}"#, &s);
    for _ in 0..4 {
        c.next_delivery(&s, 0);
    }
    let out = c.ack(&AckKind::Ack, 3, 3, 1);
    assert_eq!(out.acked, vec![1, 2, 3]);
    assert_eq!(
        c.state().ack_floor,
        SequencePair {
            consumer_seq: 3,
            stream_seq: 3
        }
    );
    assert_eq!((c.num_ack_pending(), c.num_pending(&s)), (1, 2));
    assert!(c.ack(&AckKind::Ack, 2, 2, 1).acked.is_empty());
}

#[test]
fn ack_none_tracks_nothing_and_its_floor_follows_deliveries() {
    let s = stream_with(&TRACE);
    let mut c = consumer(r#"{"ack_policy":"none"}"#, &s);
    c.next_delivery(&s, 0);
    c.next_delivery(&s, 0);
    assert_eq!(
        c.state().ack_floor,
        SequencePair {
            consumer_seq: 2,
            stream_seq: 2
        }
    );
    assert_eq!((c.num_ack_pending(), c.next_deadline()), (0, None));
    assert_eq!(c.ack(&AckKind::Ack, 3, 3, 0), AckOutcome::default());
}

#[test]
fn a_nak_redelivers_at_once_or_after_its_delay() {
    let s = stream_with(&["q.0", "q.1"]);
    let mut c = consumer(r#"{"ack_policy":"explicit","ack_wait":2000000000}"#, &s);
    drain(&mut c, &s, 0);
    c.ack(&AckKind::Nak { delay_ns: None }, 2, 2, 10);
    assert_eq!(drain(&mut c, &s, 10), vec![(2, 3, 2, 0)]);
    c.ack(
        &AckKind::Nak {
            delay_ns: Some(300),
        },
        1,
        1,
        20,
    );
    assert_eq!(c.next_delivery(&s, 319), None);
    assert_eq!(c.next_deadline(), Some(320));
    assert_eq!(seqs(&drain(&mut c, &s, 320)), vec![1]);
}

#[test]
fn progress_restarts_the_ack_wait() {
    let s = stream_with(&["q.0"]);
    let mut c = consumer(r#"{"ack_policy":"explicit","ack_wait":1000000000}"#, &s);
    drain(&mut c, &s, 0);
    c.ack(&AckKind::Progress, 1, 1, SEC / 2);
    assert_eq!(c.next_delivery(&s, SEC), None);
    assert_eq!(seqs(&drain(&mut c, &s, SEC + SEC / 2)), vec![1]);
}

#[test]
fn backoff_sets_each_redeliverys_wait_and_clamps_to_the_last_step() {
    let s = stream_with(&["q.0"]);
    let mut c = consumer(
        r#"{"ack_policy":"explicit","backoff":[1000000000,3000000000],"max_deliver":5}"#,
        &s,
    );
    let mut now = 0;
    let mut waits = Vec::new();
    for _ in 0..4 {
        c.next_delivery(&s, now).expect("delivery");
        let deadline = c.next_deadline().expect("deadline");
        waits.push(deadline - now);
        now = deadline;
    }
    assert_eq!(waits, vec![SEC, 3 * SEC, 3 * SEC, 3 * SEC]);
}

#[test]
fn max_deliver_retires_a_message_with_an_advisory_and_no_more_redeliveries() {
    let s = stream_with(&["q.0", "q.1", "q.2"]);
    let mut c = consumer(
        r#"{"ack_policy":"explicit","ack_wait":500000000,"max_deliver":2}"#,
        &s,
    );
    drain(&mut c, &s, 0);
    c.ack(&AckKind::Ack, 2, 2, 1);
    assert_eq!(seqs(&drain(&mut c, &s, SEC)), vec![1, 3]);
    assert_eq!(c.num_redelivered(), 2);
    let advisories = c.expire(2 * SEC);
    assert_eq!(
        advisories,
        vec![
            Advisory::MaxDeliveries {
                stream_seq: 1,
                deliveries: 2
            },
            Advisory::MaxDeliveries {
                stream_seq: 3,
                deliveries: 2
            }
        ]
    );
    assert!(drain(&mut c, &s, 10 * SEC).is_empty());
    // nats-server 2.9.10: nothing pending, both still counted as redelivered.
    assert_eq!((c.num_ack_pending(), c.num_redelivered()), (0, 2));
    assert!(
        c.needs(1, b"q.0"),
        "a retired message is still unacknowledged"
    );
    assert_eq!(
        c.ack(&AckKind::Ack, 1, 1, 0).acked,
        vec![1],
        "a late ack still counts"
    );
}

#[test]
fn advisories_serialise_as_nats_server_publishes_them() {
    let term = Advisory::Terminated {
        stream_seq: 1,
        consumer_seq: 1,
        deliveries: 1,
        reason: Some("because".into()),
    };
    assert_eq!(
        term.subject("Q", "R"),
        "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.Q.R"
    );
    assert_eq!(
        term.to_json("Q", "R", "id1", 0),
        r#"{"type":"io.nats.jetstream.advisory.v1.terminated","id":"id1","timestamp":"1970-01-01T00:00:00Z","stream":"Q","consumer":"R","consumer_seq":1,"stream_seq":1,"deliveries":1,"reason":"because"}"#
    );
    let max = Advisory::MaxDeliveries {
        stream_seq: 3,
        deliveries: 2,
    };
    assert_eq!(
        max.subject("Q", "R"),
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.Q.R"
    );
    assert_eq!(
        max.to_json("Q", "R", "id2", 0),
        r#"{"type":"io.nats.jetstream.advisory.v1.max_deliver","id":"id2","timestamp":"1970-01-01T00:00:00Z","stream":"Q","consumer":"R","stream_seq":3,"deliveries":2}"#
    );
}

#[test]
fn ack_payloads_parse_as_nats_server_reads_them() {
    let cases: &[(&[u8], Option<AckKind>)] = &[
        (b"", Some(AckKind::Ack)),
        (b"+ACK", Some(AckKind::Ack)),
        (b"+OK", Some(AckKind::Ack)),
        (b"-NAK", Some(AckKind::Nak { delay_ns: None })),
        (
            br#"-NAK {"delay": 300000000}"#,
            Some(AckKind::Nak {
                delay_ns: Some(300_000_000),
            }),
        ),
        (b"+TERM", Some(AckKind::Term { reason: None })),
        (
            b"+TERM because",
            Some(AckKind::Term {
                reason: Some("because".into()),
            }),
        ),
        (b"+WPI", Some(AckKind::Progress)),
        (
            b"+NXT",
            Some(AckKind::Next {
                request: Vec::new(),
            }),
        ),
        (
            br#"+NXT {"batch":2}"#,
            Some(AckKind::Next {
                request: br#"{"batch":2}"#.to_vec(),
            }),
        ),
        (b"bogus", None),
    ];
    for (payload, want) in cases {
        assert_eq!(
            &AckKind::parse(payload),
            want,
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
}

#[test]
fn a_consumer_needs_only_matching_messages_it_has_not_acknowledged() {
    let s = stream_with(&TRACE);
    let mut c = consumer(r#"{"ack_policy":"explicit","filter_subject":"t.a"}"#, &s);
    assert!(c.needs(1, b"t.a"));
    assert!(!c.needs(2, b"t.b"));
    c.next_delivery(&s, 0);
    assert!(c.needs(1, b"t.a"), "delivered but unacked");
    c.ack(&AckKind::Ack, 1, 1, 0);
    assert!(!c.needs(1, b"t.a"));
    assert!(c.needs(6, b"t.a"));
}

#[test]
fn messages_removed_from_the_stream_leave_pending_and_the_floor_moves_past_them() {
    let mut s = stream_with(&["q.0", "q.1", "q.2", "q.3"]);
    let mut c = consumer(r#"{"ack_policy":"explicit"}"#, &s);
    c.next_delivery(&s, 0);
    c.next_delivery(&s, 0);
    s.apply(Command::Purge(PurgeRequest {
        seq: 4,
        ..PurgeRequest::default()
    }))
    .expect("purge");
    c.on_stream_removed(&[1, 2, 3]);
    assert_eq!(c.num_ack_pending(), 0);
    assert_eq!(
        c.state().ack_floor,
        SequencePair {
            consumer_seq: 2,
            stream_seq: 2
        }
    );
    assert_eq!(c.num_pending(&s), 1);
    assert_eq!(seqs(&drain(&mut c, &s, 0)), vec![4]);
}

#[test]
fn a_delivery_the_host_could_not_send_is_taken_back() {
    let s = stream_with(&["q.0", "q.1"]);
    let mut c = consumer(r#"{"ack_policy":"explicit","ack_wait":1000000000}"#, &s);
    let before = c.state().clone();
    c.next_delivery(&s, 0).expect("first");
    c.cancel_last_delivery();
    assert_eq!(c.state(), &before);
    assert_eq!(c.next_deadline(), None);
    assert_eq!(drain(&mut c, &s, 0), vec![(1, 1, 1, 1), (2, 2, 1, 0)]);
    let after_first = c.state().clone();
    c.next_delivery(&s, SEC).expect("redelivery");
    c.cancel_last_delivery();
    assert_eq!(c.state(), &{
        let mut s = after_first.clone();
        // Both ack waits ended at SEC: both are due again.
        s.pending.values_mut().for_each(|p| p.due = true);
        s
    });
    assert_eq!(
        c.next_delivery(&s, SEC)
            .map(|d| (d.stream_seq, d.consumer_seq)),
        Some((1, 3))
    );
}

#[test]
fn info_reads_as_nats_server_reports_it() {
    let s = stream_with(&["q.0", "q.1", "q.2"]);
    let mut c = consumer(
        r#"{"durable_name":"R","ack_policy":"explicit","ack_wait":500000000,"max_deliver":2}"#,
        &s,
    );
    drain(&mut c, &s, 2 * SEC);
    c.ack(&AckKind::Ack, 2, 2, 3 * SEC);
    let info = c.info("Q", "R", &s, 4 * SEC, 1);
    assert_eq!(
        info.response_json("consumer_info"),
        r#"{"type":"io.nats.jetstream.api.v1.consumer_info_response","stream_name":"Q","name":"R","created":"1970-01-01T00:00:00Z","config":{"durable_name":"R","deliver_policy":"all","ack_policy":"explicit","ack_wait":500000000,"max_deliver":2,"replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"num_replicas":0},"delivered":{"consumer_seq":3,"stream_seq":3,"last_active":"1970-01-01T00:00:02Z"},"ack_floor":{"consumer_seq":0,"stream_seq":0,"last_active":"1970-01-01T00:00:03Z"},"num_ack_pending":2,"num_redelivered":0,"num_waiting":1,"num_pending":0,"ts":"1970-01-01T00:00:04Z"}"#
    );
    let parsed: ConsumerInfo =
        serde_json::from_str(&info.response_json("consumer_info")).expect("info parses");
    assert_eq!(parsed, info);
}

#[test]
fn a_restored_consumer_continues_exactly() {
    let s = stream_with(&TRACE);
    let mut c = consumer(
        r#"{"deliver_policy":"last_per_subject","filter_subject":"t.*","ack_policy":"explicit","ack_wait":1000000000,"max_deliver":3}"#,
        &s,
    );
    c.next_delivery(&s, 0);
    c.next_delivery(&s, 0);
    c.ack(&AckKind::Nak { delay_ns: None }, 4, 1, 0);
    let decoded = ConsumerState::decode(&c.state().encode()).expect("decodes");
    assert_eq!(&decoded, c.state());
    let mut r = Consumer::restore(c.config().clone(), 0, decoded);
    assert_eq!(drain(&mut r, &s, 5 * SEC), drain(&mut c, &s, 5 * SEC));
    assert_eq!(r.state(), c.state());
}

#[test]
fn corrupt_state_is_refused_without_panicking() {
    assert_eq!(ConsumerState::decode(&[]), Err(StateDecodeError::Truncated));
    assert_eq!(
        ConsumerState::decode(&[9]),
        Err(StateDecodeError::Version(9))
    );
    let mut bytes = ConsumerState::default().encode();
    bytes.push(0);
    assert_eq!(
        ConsumerState::decode(&bytes),
        Err(StateDecodeError::Trailing(1))
    );
    let mut huge = ConsumerState::default().encode();
    let at = 1 + 5 * 8 + 2 * 9;
    huge[at..at + 8].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(
        ConsumerState::decode(&huge),
        Err(StateDecodeError::Truncated)
    );
}

fn state_strategy() -> impl Strategy<Value = ConsumerState> {
    let pair = (any::<u64>(), any::<u64>()).prop_map(|(c, s)| SequencePair {
        consumer_seq: c,
        stream_seq: s,
    });
    let pending = (
        any::<u64>(),
        any::<u64>(),
        any::<i64>(),
        any::<i64>(),
        any::<bool>(),
    )
        .prop_map(
            |(consumer_seq, deliveries, last_delivered_ns, deadline_ns, due)| PendingAck {
                consumer_seq,
                deliveries,
                last_delivered_ns,
                deadline_ns,
                due,
            },
        );
    (
        pair.clone(),
        pair,
        proptest::collection::btree_map(any::<u64>(), pending, 0..8),
        proptest::collection::btree_set(any::<u64>(), 0..8),
        proptest::collection::vec_deque(any::<u64>(), 0..8),
        any::<u64>(),
        any::<Option<i64>>(),
        any::<Option<i64>>(),
    )
        .prop_map(
            |(delivered, ack_floor, pending, exhausted, lps, resume_seq, ld, la)| ConsumerState {
                delivered,
                ack_floor,
                pending,
                exhausted,
                last_per_subject: lps,
                resume_seq,
                last_delivered_ns: ld,
                last_ack_ns: la,
            },
        )
}

#[derive(Debug, Clone)]
enum Op {
    Publish(u8),
    Deliver,
    Ack(u8),
    Nak(u8),
    NakDelay(u8),
    Term(u8),
    Progress(u8),
    Advance(u8),
    Restore,
    Remove(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3).prop_map(Op::Publish),
        4 => Just(Op::Deliver),
        2 => any::<u8>().prop_map(Op::Ack),
        1 => any::<u8>().prop_map(Op::Nak),
        1 => any::<u8>().prop_map(Op::NakDelay),
        1 => any::<u8>().prop_map(Op::Term),
        1 => any::<u8>().prop_map(Op::Progress),
        2 => (1u8..4).prop_map(Op::Advance),
        1 => Just(Op::Restore),
        1 => any::<u8>().prop_map(Op::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn state_encoding_round_trips(state in state_strategy()) {
        prop_assert_eq!(ConsumerState::decode(&state.encode()), Ok(state));
    }

    /// Every message matching the filter is acknowledged, or delivered again after its ack wait,
    /// until it reaches max_deliver; nothing is delivered that does not match.
    #[test]
    fn no_unacknowledged_message_is_lost(
        ops in proptest::collection::vec(op(), 1..80),
        ack_all in any::<bool>(),
    ) {
        let subjects = ["m.a", "m.b", "x.c"];
        let mut s = stream_with(&[]);
        let policy = if ack_all { "all" } else { "explicit" };
        let json = format!(
            r#"{{"ack_policy":"{policy}","ack_wait":1000000000,"max_deliver":4,"max_ack_pending":5,"filter_subject":"m.*"}}"#
        );
        let mut c = consumer(&json, &s);
        let mut now = 0i64;
        let mut done: BTreeSet<u64> = BTreeSet::new();
        let mut retired: BTreeSet<u64> = BTreeSet::new();
        let mut removed: BTreeSet<u64> = BTreeSet::new();
        let mut delivered: Vec<Delivery> = Vec::new();
        let pick = |ds: &[Delivery], k: u8| (!ds.is_empty()).then(|| ds[k as usize % ds.len()].clone());
        for op in ops {
            match op {
                Op::Publish(i) => { publish(&mut s, subjects[i as usize], now); }
                Op::Deliver => {
                    if let Some(d) = c.next_delivery(&s, now) {
                        prop_assert!(d.subject.starts_with(b"m."));
                        prop_assert!(!done.contains(&d.stream_seq), "acked message redelivered");
                        delivered.push(d);
                    }
                }
                Op::Ack(k) | Op::Term(k) => {
                    if let Some(d) = pick(&delivered, k) {
                        let kind = if matches!(op, Op::Ack(_)) { AckKind::Ack } else { AckKind::Term { reason: None } };
                        let out = c.ack(&kind, d.stream_seq, d.consumer_seq, now);
                        done.extend(out.acked);
                    }
                }
                Op::Nak(k) | Op::NakDelay(k) | Op::Progress(k) => {
                    if let Some(d) = pick(&delivered, k) {
                        let kind = match op {
                            Op::Nak(_) => AckKind::Nak { delay_ns: None },
                            Op::NakDelay(_) => AckKind::Nak { delay_ns: Some(SEC / 2) },
                            _ => AckKind::Progress,
                        };
                        let out = c.ack(&kind, d.stream_seq, d.consumer_seq, now);
                        for a in out.advisories {
                            if let Advisory::MaxDeliveries { stream_seq, .. } = a { retired.insert(stream_seq); }
                        }
                    }
                }
                Op::Advance(secs) => {
                    now += i64::from(secs) * SEC / 2;
                    for a in c.expire(now) {
                        if let Advisory::MaxDeliveries { stream_seq, .. } = a { retired.insert(stream_seq); }
                    }
                }
                Op::Restore => {
                    let state = ConsumerState::decode(&c.state().encode()).expect("round trip");
                    c = Consumer::restore(c.config().clone(), 0, state);
                }
                Op::Remove(k) => {
                    let first = StreamView::first_seq(&s);
                    let seq = first + u64::from(k % 4);
                    if s.apply(Command::RemoveAcked { seqs: vec![seq] }).is_ok() && seq <= s.last_seq() {
                        removed.insert(seq);
                        c.on_stream_removed(&[seq]);
                    }
                }
            }
            for a in c.take_advisories() {
                if let Advisory::MaxDeliveries { stream_seq, .. } = a { retired.insert(stream_seq); }
            }
        }
        // Drain: deliver and ack everything, letting ack waits pass.
        for _ in 0..20 {
            now += 10 * SEC;
            for a in c.expire(now) {
                if let Advisory::MaxDeliveries { stream_seq, .. } = a { retired.insert(stream_seq); }
            }
            while let Some(d) = c.next_delivery(&s, now) {
                prop_assert!(!done.contains(&d.stream_seq), "acked message redelivered");
                done.extend(c.ack(&AckKind::Ack, d.stream_seq, d.consumer_seq, now).acked);
            }
        }
        for seq in 1..=s.last_seq() {
            let Some(meta) = StreamView::msg_meta(&s, seq) else { continue };
            if removed.contains(&seq) || !meta.subject.starts_with(b"m.") {
                continue;
            }
            prop_assert!(
                done.contains(&seq) || retired.contains(&seq),
                "message {} neither acknowledged nor retired at max_deliver", seq
            );
        }
        prop_assert_eq!(c.num_ack_pending(), 0);
        prop_assert_eq!(c.num_pending(&s), 0);
    }
}

#[test]
fn replay_original_holds_each_message_for_its_stored_gap() {
    // Messages at 1 s, 2 s, 3 s; a fourth 0.5 ms after the third.
    let mut s = stream_with(&["t.a", "t.b", "t.c"]);
    publish(&mut s, "t.d", 3 * SEC + 500_000);
    let mut c = consumer(r#"{"replay_policy":"original","ack_policy":"none"}"#, &s);
    let start = 100 * SEC;
    let first = c.next_delivery(&s, start).expect("the first goes at once");
    assert_eq!(first.stream_seq, 1);
    assert_eq!(c.next_delivery(&s, start), None, "held for the 1 s gap");
    assert_eq!(c.hold_until(), Some(start + SEC));
    assert_eq!(c.next_delivery(&s, start + SEC - 1), None);
    // Holding changed nothing: the same message comes once its time has come.
    let second = c.next_delivery(&s, start + SEC).expect("due");
    assert_eq!((second.stream_seq, second.consumer_seq), (2, 2));
    assert_eq!(c.hold_until(), None);
    // Late: the gap counts from when the previous one went out.
    let third = c.next_delivery(&s, start + 3 * SEC).expect("overdue");
    assert_eq!(third.stream_seq, 3);
    // A gap of 1 ms or less is not waited for.
    let fourth = c.next_delivery(&s, start + 3 * SEC).expect("no wait");
    assert_eq!(fourth.stream_seq, 4);

    let mut instant = consumer(r#"{"ack_policy":"none"}"#, &s);
    assert_eq!(seqs(&drain(&mut instant, &s, start)), [1, 2, 3, 4]);
    assert_eq!(instant.hold_until(), None);
}

#[test]
fn a_sampling_consumer_reports_each_ack_with_the_time_since_delivery() {
    let s = stream_with(&["t.a", "t.b"]);
    let mut c = consumer(
        r#"{"ack_policy":"explicit","sample_freq":"100%","durable_name":"C"}"#,
        &s,
    );
    assert_eq!(c.config().sample_percent(), 100);
    let d = c.next_delivery(&s, 10 * SEC).expect("a delivery");
    let outcome = c.ack(&AckKind::Ack, d.stream_seq, d.consumer_seq, 10 * SEC + 250);
    assert_eq!(
        outcome.advisories,
        vec![Advisory::AckSample {
            stream_seq: 1,
            consumer_seq: 1,
            deliveries: 1,
            ack_time_ns: 250
        }]
    );
    let json = outcome.advisories[0].to_json("S", "C", "ID", 0);
    assert_eq!(
        json,
        r#"{"type":"io.nats.jetstream.metric.v1.consumer_ack","id":"ID","timestamp":"1970-01-01T00:00:00Z","stream":"S","consumer":"C","consumer_seq":1,"stream_seq":1,"ack_time":250,"deliveries":1}"#
    );
    assert_eq!(
        outcome.advisories[0].subject("S", "C"),
        "$JS.EVENT.METRIC.CONSUMER.ACK.S.C"
    );
    // An ack of something no longer pending, or a consumer that does not sample: nothing.
    let again = c.ack(&AckKind::Ack, 1, 1, 11 * SEC);
    assert!(again.advisories.is_empty());
    let mut quiet = consumer(r#"{"ack_policy":"explicit","durable_name":"Q"}"#, &s);
    let d = quiet.next_delivery(&s, SEC).expect("a delivery");
    assert!(
        quiet
            .ack(&AckKind::Ack, d.stream_seq, d.consumer_seq, SEC)
            .advisories
            .is_empty()
    );
    assert_eq!(quiet.config().sample_percent(), 0);
}

#[test]
fn a_rate_limit_holds_deliveries_until_the_bytes_are_allowed() {
    let mut s = Stream::new(
        StreamConfig::named("R", &["t.>"])
            .validate_for_create()
            .expect("valid stream"),
    );
    for i in 0..3 {
        s.apply(Command::Publish {
            subject: Bytes::from_static(b"t.big"),
            headers: None,
            payload: Bytes::from(vec![0u8; 500 * 1024]),
            timestamp_ns: (i + 1) * SEC,
        })
        .expect("stored");
    }
    let size = s.msg_meta(1).expect("stored").size;
    // 8 Mbit/s: one byte per µs. The bucket starts full with 1 MiB: two messages go at once.
    let mut c = consumer(
        r#"{"deliver_subject":"d","ack_policy":"none","rate_limit_bps":8000000}"#,
        &s,
    );
    let now = 10 * SEC;
    assert_eq!(c.next_delivery(&s, now).map(|d| d.stream_seq), Some(1));
    assert_eq!(c.next_delivery(&s, now).map(|d| d.stream_seq), Some(2));
    assert_eq!(c.next_delivery(&s, now), None, "held for its bytes");
    let due = c.hold_until().expect("held");
    let missing = size * 3 - 1_048_576; // what the bucket lacks, in bytes = µs
    assert!(
        (due - now - (missing as i64) * 1_000).abs() <= 1_000,
        "due {} ns after now, expected about {} µs",
        due - now,
        missing
    );
    assert_eq!(c.next_delivery(&s, due - 10_000), None);
    assert_eq!(c.next_delivery(&s, due).map(|d| d.stream_seq), Some(3));
    assert_eq!(c.hold_until(), None);
    // No limit: no hold.
    let mut free = consumer(r#"{"deliver_subject":"d2","ack_policy":"none"}"#, &s);
    assert_eq!(seqs(&drain(&mut free, &s, now)), [1, 2, 3]);
}
