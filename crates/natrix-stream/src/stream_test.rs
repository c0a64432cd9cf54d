use super::*;
use crate::config::RetentionPolicy;

fn stream(f: impl FnOnce(&mut StreamConfig)) -> Stream {
    let mut c = StreamConfig::named("S", &["s.>"]);
    f(&mut c);
    Stream::new(c.validate_for_create().expect("test config valid"))
}

fn hdrs(pairs: &[(&str, &str)]) -> Option<Bytes> {
    let mut h = String::from("NATS/1.0\r\n");
    for (k, v) in pairs {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    Some(Bytes::from(h))
}

fn publish(
    s: &mut Stream,
    subject: &str,
    h: &[(&str, &str)],
    ts: i64,
) -> Result<Applied, ApiError> {
    s.apply(Command::Publish {
        subject: Bytes::copy_from_slice(subject.as_bytes()),
        headers: if h.is_empty() { None } else { hdrs(h) },
        payload: Bytes::from_static(b"x"),
        timestamp_ns: ts,
    })
}

fn seq_of(r: Result<Applied, ApiError>) -> u64 {
    match r.expect("publish accepted").reply {
        Reply::PubAck(a) => a.seq,
        other => panic!("not a pub ack: {other:?}"),
    }
}

fn err(r: Result<Applied, ApiError>) -> (u16, String) {
    let e = r.expect_err("rejected");
    (e.err_code, e.description)
}

#[test]
fn publishes_take_consecutive_sequences_and_file_store_sizes() {
    let mut s = stream(|_| {});
    assert_eq!(seq_of(publish(&mut s, "s.a", &[], 1)), 1);
    assert_eq!(seq_of(publish(&mut s, "s.a", &[("A", "b")], 2)), 2);
    // nats-server 2.15.1: "s.a"+"x" = 34 bytes; with an 18-byte header block 56.
    assert_eq!(s.bytes(), 34 + 56);
    let st = s.state(false, None, 0);
    assert_eq!(
        (st.messages, st.first_seq, st.last_seq, st.num_subjects),
        (2, 1, 2, 1)
    );
}

#[test]
fn a_new_stream_reports_zero_sequences_and_go_zero_times() {
    let s = stream(|_| {});
    let st = s.state(false, None, 0);
    assert_eq!((st.first_seq, st.last_seq), (0, 0));
    assert_eq!(st.first_ts, ZERO_TIME);
    let s = stream(|c| c.first_seq = 100);
    let st = s.state(false, None, 0);
    assert_eq!((st.first_seq, st.last_seq), (100, 99));
}

#[test]
fn duplicate_msg_id_in_window_returns_original_seq_and_stores_nothing() {
    let mut s = stream(|c| c.duplicate_window = 2_000_000_000);
    assert_eq!(
        seq_of(publish(&mut s, "s.a", &[("Nats-Msg-Id", "m1")], 0)),
        1
    );
    let dup = publish(&mut s, "s.b", &[("Nats-Msg-Id", "m1")], 1_000_000_000).expect("dup");
    assert!(dup.ops.is_empty());
    assert_eq!(
        dup.reply,
        Reply::PubAck(PubAck {
            stream: "S".into(),
            seq: 1,
            duplicate: true,
            domain: None
        })
    );
    // The window is measured with the command's time.
    assert_eq!(
        seq_of(publish(
            &mut s,
            "s.a",
            &[("Nats-Msg-Id", "m1")],
            2_000_000_000
        )),
        2
    );
}

#[test]
fn expected_headers_are_checked_in_nats_server_order_and_use_no_sequence() {
    let mut s = stream(|_| {});
    publish(&mut s, "s.a", &[("Nats-Msg-Id", "a1")], 1).expect("ok");
    publish(&mut s, "s.b", &[], 2).expect("ok");
    assert_eq!(
        err(publish(&mut s, "s.a", &[("Nats-Expected-Stream", "Z")], 3)).0,
        10060
    );
    assert_eq!(
        err(publish(
            &mut s,
            "s.a",
            &[
                ("Nats-Expected-Last-Subject-Sequence", "5"),
                ("Nats-Expected-Last-Sequence", "7")
            ],
            3
        )),
        (10071, "wrong last sequence: 1".into())
    );
    assert_eq!(
        err(publish(
            &mut s,
            "s.a",
            &[
                ("Nats-Expected-Last-Msg-Id", "zz"),
                ("Nats-Expected-Last-Sequence", "7")
            ],
            3
        )),
        (10071, "wrong last sequence: 2".into())
    );
    assert_eq!(
        err(publish(
            &mut s,
            "s.a",
            &[("Nats-Expected-Last-Msg-Id", "zz")],
            3
        )),
        (10070, "wrong last msg ID: ".into())
    );
    assert_eq!(
        err(publish(
            &mut s,
            "s.a",
            &[("Nats-Msg-Id", "a1"), ("Nats-Expected-Last-Sequence", "7")],
            3
        ))
        .0,
        10071,
        "2.15.1 checks expectations before de-duplication"
    );
    assert_eq!(
        err(publish(
            &mut s,
            "s.a",
            &[("Nats-Expected-Last-Sequence", "abc")],
            3
        ))
        .0,
        10071
    );
    assert_eq!(
        seq_of(publish(
            &mut s,
            "s.zz",
            &[("Nats-Expected-Last-Subject-Sequence", "0")],
            3
        )),
        3
    );
    assert_eq!(
        seq_of(publish(
            &mut s,
            "s.a",
            &[("Nats-Expected-Last-Sequence", "3")],
            4
        )),
        4
    );
}

#[test]
fn size_sealed_and_rollup_permissions_reject_publishes() {
    let mut s = stream(|c| c.max_msg_size = 40);
    let big = s.apply(Command::Publish {
        subject: Bytes::from_static(b"s.a"),
        headers: None,
        payload: Bytes::from(vec![b'x'; 41]),
        timestamp_ns: 0,
    });
    assert_eq!(err(big).0, 10054);
    assert_eq!(
        err(publish(&mut s, "s.a", &[("Nats-Rollup", "sub")], 0)),
        (10111, "rollup not permitted".into())
    );
    s.apply(Command::Seal).expect("seal");
    assert_eq!(err(publish(&mut s, "s.a", &[], 0)).0, 10109);
    assert_eq!(s.last_seq(), 0, "rejected publishes use no sequence");
}

#[test]
fn rollups_keep_only_the_new_message_of_the_subject_or_stream() {
    let mut s = stream(|c| c.allow_rollup_hdrs = true);
    for (i, subj) in ["s.a", "s.a", "s.b", "s.c"].iter().enumerate() {
        publish(&mut s, subj, &[], i as i64).expect("ok");
    }
    publish(&mut s, "s.a", &[("Nats-Rollup", "sub")], 9).expect("rollup");
    let st = s.state(false, Some(">"), 0);
    assert_eq!((st.messages, st.first_seq), (3, 3));
    let r = publish(&mut s, "s.b", &[("Nats-Rollup", "all")], 10).expect("rollup all");
    assert_eq!(r.ops.last(), Some(&StoreOp::RemoveBelow { seq: 6 }));
    assert_eq!(s.messages(), 1);
    assert_eq!(
        err(publish(&mut s, "s.b", &[("Nats-Rollup", "bogus")], 11)),
        (10111, "rollup value invalid: \"bogus\"".into())
    );
}

#[test]
fn discard_new_rejects_at_limits_but_replaces_at_the_subject_limit() {
    let mut s = stream(|c| {
        c.max_msgs = 2;
        c.discard = DiscardPolicy::New;
    });
    publish(&mut s, "s.a", &[], 0).expect("ok");
    publish(&mut s, "s.a", &[], 0).expect("ok");
    assert_eq!(
        err(publish(&mut s, "s.a", &[], 0)),
        (10077, "maximum messages exceeded".into())
    );
    let mut s = stream(|c| {
        c.max_bytes = 68;
        c.discard = DiscardPolicy::New;
    });
    publish(&mut s, "s.a", &[], 0).expect("ok");
    publish(&mut s, "s.a", &[], 0).expect("exactly at max_bytes is allowed");
    assert_eq!(
        err(publish(&mut s, "s.a", &[], 0)),
        (10077, "maximum bytes exceeded".into())
    );
    let mut s = stream(|c| {
        c.max_msgs = 1;
        c.max_msgs_per_subject = 1;
        c.discard = DiscardPolicy::New;
    });
    publish(&mut s, "s.a", &[], 0).expect("ok");
    assert_eq!(err(publish(&mut s, "s.b", &[], 0)).0, 10077);
    assert_eq!(
        seq_of(publish(&mut s, "s.a", &[], 0)),
        2,
        "replaces its own subject"
    );
    let mut s = stream(|c| {
        c.max_msgs_per_subject = 1;
        c.discard = DiscardPolicy::New;
        c.discard_new_per_subject = true;
    });
    publish(&mut s, "s.a", &[], 0).expect("ok");
    assert_eq!(
        err(publish(&mut s, "s.a", &[], 0)),
        (10077, "maximum messages per subject exceeded".into())
    );
}

#[test]
fn discard_old_trims_and_a_message_larger_than_max_bytes_is_stored_then_dropped() {
    let mut s = stream(|c| c.max_bytes = 50);
    let r = s
        .apply(Command::Publish {
            subject: Bytes::from_static(b"s.a"),
            headers: None,
            payload: Bytes::from(vec![b'x'; 100]),
            timestamp_ns: 0,
        })
        .expect("accepted");
    assert!(matches!(r.ops[0], StoreOp::Append(_)));
    assert_eq!(r.ops[1], StoreOp::RemoveBelow { seq: 2 });
    let st = s.state(false, None, 0);
    assert_eq!((st.messages, st.first_seq, st.last_seq), (0, 2, 1));
}

#[test]
fn deletes_and_purges_follow_permissions_and_nats_server_errors() {
    let mut s = stream(|_| {});
    for i in 0..5 {
        publish(&mut s, if i % 2 == 0 { "s.0" } else { "s.1" }, &[], i).expect("ok");
    }
    let del = |s: &mut Stream, seq| {
        s.apply(Command::DeleteMsg {
            seq,
            no_erase: false,
        })
    };
    assert_eq!(
        del(&mut s, 2).expect("deleted").ops,
        vec![StoreOp::Remove { seq: 2 }]
    );
    assert_eq!(err(del(&mut s, 2)), (10043, "sequence 2 not found".into()));
    assert_eq!(err(del(&mut s, 99)), (10057, "stream store EOF".into()));
    assert_eq!(err(del(&mut s, 0)), (10057, "no message found".into()));
    let st = s.state(true, None, 0);
    assert_eq!((st.num_deleted, st.deleted), (1, Some(vec![2])));
    let purge = |s: &mut Stream, filter: &str, seq, keep| {
        s.apply(Command::Purge(PurgeRequest {
            filter: filter.into(),
            seq,
            keep,
        }))
    };
    assert_eq!(err(purge(&mut s, "", 1, 1)).0, 10003);
    assert_eq!(
        purge(&mut s, "s.0", 0, 1).expect("ok").reply,
        Reply::Purged { purged: 2 }
    );
    assert_eq!(
        purge(&mut s, "", 0, 0).expect("ok").reply,
        Reply::Purged { purged: 2 }
    );
    let st = s.state(false, None, 0);
    assert_eq!(
        (st.messages, st.first_seq, st.last_seq, st.first_ts.as_str()),
        (0, 6, 5, ZERO_TIME)
    );
    purge(&mut s, "", 10, 0).expect("compact beyond the end");
    assert_eq!(seq_of(publish(&mut s, "s.a", &[], 9)), 10);

    let mut d = stream(|c| {
        c.deny_delete = true;
        c.deny_purge = true;
    });
    publish(&mut d, "s.a", &[], 0).expect("ok");
    assert_eq!(
        err(del(&mut d, 1)),
        (10057, "message delete not permitted".into())
    );
    assert_eq!(
        err(purge(&mut d, "", 0, 0)),
        (10110, "stream purge not permitted".into())
    );
}

#[test]
fn keep_purge_keeps_exactly_the_newest_messages() {
    let mut s = stream(|_| {});
    for i in 0..6 {
        publish(&mut s, "s.a", &[], i).expect("ok");
    }
    s.apply(Command::DeleteMsg {
        seq: 5,
        no_erase: true,
    })
    .expect("ok");
    let r = s.apply(Command::Purge(PurgeRequest {
        keep: 3,
        ..PurgeRequest::default()
    }));
    assert_eq!(r.expect("ok").reply, Reply::Purged { purged: 2 });
    assert_eq!((s.messages(), s.first_seq()), (3, 3));
}

#[test]
fn max_age_expires_by_command_time_and_updates_trim() {
    let mut s = stream(|c| c.max_age = 1_000_000_000);
    for i in 0..4 {
        publish(&mut s, "s.a", &[], i * 500_000_000).expect("ok");
    }
    let r = s
        .apply(Command::Expire {
            now_ns: 1_600_000_000,
        })
        .expect("ok");
    assert_eq!(r.reply, Reply::Expired { removed: 2 });
    assert_eq!(r.ops, vec![StoreOp::RemoveBelow { seq: 3 }]);

    let mut s = stream(|_| {});
    for i in 0..10 {
        publish(&mut s, &format!("s.{}", i % 3), &[], i).expect("ok");
    }
    let mut c = s.config().clone();
    c.max_msgs = 4;
    s.apply(Command::UpdateConfig(Box::new(c.clone())))
        .expect("ok");
    assert_eq!((s.messages(), s.first_seq()), (4, 7));
    c.max_msgs_per_subject = 1;
    s.apply(Command::UpdateConfig(Box::new(c))).expect("ok");
    assert_eq!(s.messages(), 3);
    assert_eq!(s.subjects_matching(">").values().sum::<u64>(), 3);
}

#[test]
fn queries_for_consumers_and_the_api() {
    let mut s = stream(|c| c.retention = RetentionPolicy::WorkQueue);
    for i in 0..6 {
        publish(
            &mut s,
            if i % 2 == 0 { "s.even" } else { "s.odd" },
            &[],
            i * 10,
        )
        .expect("ok");
    }
    assert_eq!(s.last_seq_for_subject(b"s.odd"), Some(6));
    assert_eq!(s.next_seq_matching(3, "s.even"), Some(3));
    assert_eq!(s.next_seq_matching(4, "s.even"), Some(5));
    assert_eq!(s.first_seq_at_or_after_time(25), Some(4));
    let r = s
        .apply(Command::RemoveAcked {
            seqs: vec![1, 3, 99],
        })
        .expect("ok");
    assert_eq!(r.reply, Reply::RemovedAcked { removed: 2 });
    assert_eq!(
        r.ops,
        vec![StoreOp::RemoveBelow { seq: 2 }, StoreOp::Remove { seq: 3 }]
    );
    assert_eq!(s.subjects_matching("s.even").get("s.even"), Some(&1));
}

#[test]
fn recovery_rebuilds_index_dedup_window_and_position() {
    let mut s = stream(|_| {});
    let mut stored = std::collections::BTreeMap::new();
    for i in 0..5 {
        let id = format!("id{i}");
        let r = publish(&mut s, "s.a", &[("Nats-Msg-Id", id.as_str())], i).expect("ok");
        apply_ops(&mut stored, r.ops);
    }
    let r = s
        .apply(Command::DeleteMsg {
            seq: 3,
            no_erase: false,
        })
        .expect("ok");
    apply_ops(&mut stored, r.ops);
    let metas = stored
        .values()
        .map(|m| RecoveredMsg::from_stored(m, StorageType::File));
    let mut back =
        Stream::recover(s.config().clone(), Some(s.position()), metas).expect("recovers");
    assert_eq!(back.state(true, Some(">"), 0), s.state(true, Some(">"), 0));
    let dup = publish(&mut back, "s.a", &[("Nats-Msg-Id", "id4")], 6).expect("dup");
    assert!(dup.ops.is_empty(), "dedup window survives recovery");
}

pub(crate) fn apply_ops(
    stored: &mut std::collections::BTreeMap<u64, StoredMsg>,
    ops: Vec<StoreOp>,
) {
    for op in ops {
        match op {
            StoreOp::Append(m) => {
                stored.insert(m.seq, m);
            }
            StoreOp::Remove { seq } => {
                stored.remove(&seq);
            }
            StoreOp::RemoveBelow { seq } => {
                *stored = stored.split_off(&seq);
            }
        }
    }
}

#[path = "stream_model_test.rs"]
mod model;

#[test]
fn stream_position_round_trips_through_its_portable_encoding() {
    let cases = [
        StreamPosition::default(),
        StreamPosition {
            last_seq: u64::MAX,
            last_timestamp_ns: Some(-5),
            last_msg_id: Some(String::new()),
        },
        StreamPosition {
            last_seq: 42,
            last_timestamp_ns: Some(1_700_000_000_000_000_000),
            last_msg_id: Some("order-7".into()),
        },
    ];
    for p in cases {
        assert_eq!(StreamPosition::decode(p.encode()), Ok(p));
    }
}

#[test]
fn a_truncated_or_unknown_stream_position_is_an_error_not_a_guess() {
    let encoded = StreamPosition {
        last_seq: 9,
        last_timestamp_ns: None,
        last_msg_id: Some("id".into()),
    }
    .encode();
    for n in 0..encoded.len() {
        assert!(
            StreamPosition::decode(encoded.slice(..n)).is_err(),
            "prefix {n}"
        );
    }
    let mut wrong = encoded.to_vec();
    wrong[0] = 9;
    assert_eq!(
        StreamPosition::decode(Bytes::from(wrong)),
        Err(MessageDecodeError::UnknownVersion(9))
    );
}

#[test]
fn republish_copies_stored_messages_with_the_subjects_previous_sequence() {
    let mut s = stream(|c| {
        c.republish = Some(crate::RePublish {
            src: "s.*".into(),
            dest: "rp.$1".into(),
            headers_only: false,
        });
    });
    let first = publish(&mut s, "s.a", &[], 1).expect("stored");
    let copy = first.republish.expect("republished");
    assert_eq!(copy.subject, "rp.a");
    assert!(
        std::str::from_utf8(&copy.headers).is_ok_and(|h| h.contains("Nats-Last-Sequence: 0\r\n"))
    );
    publish(&mut s, "s.b", &[], 2).expect("stored");
    let third = publish(&mut s, "s.a", &[], 3).expect("stored");
    let copy = third.republish.expect("republished");
    assert!(std::str::from_utf8(&copy.headers).is_ok_and(
        |h| h.contains("Nats-Sequence: 3\r\n") && h.contains("Nats-Last-Sequence: 1\r\n")
    ));
    // Outside `src`: stored, not republished; a duplicate is neither.
    let deep = publish(&mut s, "s.a.b", &[("Nats-Msg-Id", "m1")], 4).expect("stored");
    assert_eq!(deep.republish, None);
    assert_eq!(seq_of(Ok(deep)), 4);
    let dup = publish(&mut s, "s.a", &[("Nats-Msg-Id", "m1")], 5).expect("duplicate");
    assert_eq!(dup.republish, None);
    // An update changes the transform; removing it stops republishing.
    let mut config = s.config().clone();
    config.republish = Some(crate::RePublish {
        src: String::new(),
        dest: "all.>".into(),
        headers_only: true,
    });
    s.apply(Command::UpdateConfig(Box::new(config.clone())))
        .expect("updated");
    let copy = publish(&mut s, "s.a.b", &[], 6)
        .expect("stored")
        .republish
        .expect("republished");
    assert_eq!(copy.subject, "all.s.a.b");
    assert!(copy.payload.is_empty());
    config.republish = None;
    s.apply(Command::UpdateConfig(Box::new(config)))
        .expect("updated");
    assert_eq!(
        publish(&mut s, "s.a", &[], 7).expect("stored").republish,
        None
    );
}

#[test]
fn a_subject_transform_renames_what_is_stored_before_every_rule_sees_it() {
    let mut s = stream(|c| {
        c.max_msgs_per_subject = 1;
        c.subject_transform = Some(crate::SubjectTransformConfig {
            src: "s.*".into(),
            dest: "t.$1".into(),
        });
        c.republish = Some(crate::RePublish {
            src: "t.>".into(),
            dest: "rp.>".into(),
            headers_only: false,
        });
    });
    let first = publish(&mut s, "s.a", &[], 1).expect("stored");
    let stored = |applied: &Applied| {
        applied.ops.iter().find_map(|op| match op {
            StoreOp::Append(m) => Some(m.subject.clone()),
            _ => None,
        })
    };
    assert_eq!(stored(&first).as_deref(), Some(&b"t.a"[..]));
    assert_eq!(
        first.republish.map(|r| r.subject),
        Some(Bytes::from_static(b"rp.a"))
    );
    // Outside `src`: stored as published.
    let deep = publish(&mut s, "s.a.b", &[], 2).expect("stored");
    assert_eq!(stored(&deep).as_deref(), Some(&b"s.a.b"[..]));
    // The expected last subject sequence and the per-subject limit count the stored subject.
    let second = publish(
        &mut s,
        "s.a",
        &[("Nats-Expected-Last-Subject-Sequence", "1")],
        3,
    )
    .expect("the stored subject's last sequence is 1");
    assert!(
        second.ops.contains(&StoreOp::Remove { seq: 1 })
            || second.ops.contains(&StoreOp::RemoveBelow { seq: 2 })
    );
    assert_eq!(s.last_seq_for_subject(b"t.a"), Some(3));
    assert_eq!(s.last_seq_for_subject(b"s.a"), None);
}

#[test]
fn a_mirror_stores_its_origins_sequences_and_times_and_skips_what_it_has() {
    let mut s = Stream::new(
        StreamConfig {
            mirror: Some(crate::StreamSource {
                name: "ORIGIN".into(),
                ..Default::default()
            }),
            ..StreamConfig::named("M", &[])
        }
        .validate_for_create()
        .expect("valid mirror"),
    );
    let mirror = |s: &mut Stream, seq: u64, ts: i64| {
        s.apply(Command::Mirror {
            seq,
            subject: Bytes::from_static(b"o.a"),
            headers: hdrs(&[("Nats-Msg-Id", "same")]),
            payload: Bytes::from_static(b"x"),
            timestamp_ns: ts,
        })
        .expect("mirrored")
    };
    // The origin's first message is 5 (the first four are gone there).
    let first = mirror(&mut s, 5, 50);
    assert!(matches!(
        first.reply,
        Reply::PubAck(PubAck {
            seq: 5,
            duplicate: false,
            ..
        })
    ));
    assert_eq!((s.first_seq(), s.last_seq()), (5, 5));
    // No de-duplication: the same Nats-Msg-Id is stored again.
    mirror(&mut s, 6, 60);
    // A jump leaves the sequences between as deleted.
    mirror(&mut s, 9, 90);
    assert_eq!((s.first_seq(), s.last_seq(), s.messages()), (5, 9, 3));
    assert_eq!(s.msg_meta(9).map(|m| m.timestamp_ns), Some(90));
    assert_eq!(s.msg_meta(7), None);
    // What it has already is skipped.
    let again = mirror(&mut s, 6, 60);
    assert!(again.ops.is_empty());
    assert!(matches!(
        again.reply,
        Reply::PubAck(PubAck {
            duplicate: true,
            ..
        })
    ));
    assert_eq!(s.messages(), 3);
}
