use super::*;

fn cfg(json: &str) -> StreamConfig {
    StreamConfig::from_json(json.as_bytes()).expect("test config parses")
}

fn invalid(c: &StreamConfig) -> String {
    match c.validate_for_create() {
        Ok(_) => panic!("config unexpectedly valid: {c:?}"),
        Err(e) => {
            assert_eq!(e.err_code, 10052, "{e:?}");
            e.description
        }
    }
}

#[test]
fn defaults_are_filled_exactly_as_nats_server_reports_them() {
    let c = cfg(r#"{"name":"S","subjects":["foo.>"]}"#)
        .validate_for_create()
        .expect("valid");
    assert_eq!(
        c.to_json(),
        r#"{"name":"S","subjects":["foo.\u003e"],"retention":"limits","max_consumers":-1,"max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msgs_per_subject":-1,"max_msg_size":-1,"discard":"old","storage":"file","num_replicas":1,"duplicate_window":120000000000,"compression":"none","allow_direct":false,"mirror_direct":false,"sealed":false,"deny_delete":false,"deny_purge":false,"allow_rollup_hdrs":false,"consumer_limits":{}}"#
    );
}

#[test]
fn zero_and_negative_limits_mean_unlimited_and_subjects_default_to_the_name() {
    let c = cfg(r#"{"name":"V","max_msgs":-5,"max_bytes":0,"max_consumers":0,"max_msg_size":0}"#)
        .validate_for_create()
        .expect("valid");
    assert_eq!(
        (c.max_msgs, c.max_bytes, c.max_consumers, c.max_msg_size),
        (-1, -1, -1, -1)
    );
    assert_eq!(c.subjects, vec!["V".to_string()]);
}

#[test]
fn short_max_age_lowers_the_default_duplicate_window() {
    let c = cfg(r#"{"name":"V","subjects":["v"],"max_age":1000000000}"#)
        .validate_for_create()
        .expect("valid");
    assert_eq!(c.duplicate_window, 1_000_000_000);
}

#[test]
fn optional_fields_round_trip() {
    let json = r#"{"name":"S","description":"d","subjects":["a"],"retention":"workqueue","max_consumers":2,"max_msgs":3,"max_bytes":4,"max_age":5000000000,"max_msgs_per_subject":6,"max_msg_size":7,"discard":"new","storage":"memory","num_replicas":1,"no_ack":true,"duplicate_window":1000000000,"placement":{"cluster":"c","tags":["t"]},"compression":"s2","first_seq":9,"allow_direct":true,"mirror_direct":false,"discard_new_per_subject":true,"sealed":false,"deny_delete":true,"deny_purge":true,"allow_rollup_hdrs":false,"consumer_limits":{"inactive_threshold":1,"max_ack_pending":2},"metadata":{"a":"b"}}"#;
    assert_eq!(cfg(json).to_json(), json);
}

#[test]
fn bad_enum_values_are_invalid_json_with_nats_server_text() {
    let e = StreamConfig::from_json(br#"{"name":"S","storage":"disk"}"#).expect_err("bad");
    assert_eq!(e.err_code, 10025);
    assert_eq!(
        e.description,
        r#"invalid JSON: can not unmarshal "\"disk\"""#
    );
    let e = StreamConfig::from_json(br#"{"name":"S","compression":"lz4"}"#).expect_err("bad");
    assert_eq!(e.description, "invalid JSON: unknown compression algorithm");
    assert_eq!(
        StreamConfig::from_json(b"{").expect_err("bad").err_code,
        10025
    );
}

#[test]
fn stream_names_follow_nats_server_rules() {
    let text = "stream name is required and can not contain '.', '*', '>', '\\', '/'";
    for name in ["", "A.B", "A*", "A>", "A B", "A\tB"] {
        assert_eq!(
            invalid(&StreamConfig::named(name, &["x"])),
            text,
            "{name:?}"
        );
    }
    for name in ["A/B", "A\\B"] {
        let e = StreamConfig::named(name, &["x"])
            .validate_and_default()
            .expect_err("bad");
        assert_eq!((e.code, e.err_code), (400, 10128));
    }
    assert_eq!(
        invalid(&StreamConfig::named(&"L".repeat(256), &["x"])),
        "stream name is too long, maximum allowed is 255"
    );
    let mut c = StreamConfig::named("S", &["x"]);
    c.description = "d".repeat(4097);
    assert_eq!(
        invalid(&c),
        "stream description is too long, maximum allowed is 4096"
    );
}

#[test]
fn subjects_must_be_valid_and_disjoint_and_stay_off_system_apis() {
    let cases: &[(&[&str], &str)] = &[
        (&["a b"], "invalid subject"),
        (&["a..b"], "invalid subject"),
        (&["a.>.b"], "invalid subject"),
        (&[""], "invalid subject"),
        (&["a.*", "a.b"], r#"subject "a.*" overlaps with "a.b""#),
        (&["a.b", "a.b"], r#"subject "a.b" overlaps with "a.b""#),
        (&[">"], "capturing all subjects requires no-ack to be true"),
        (
            &["$JS.API.>"],
            "subjects that overlap with jetstream api require no-ack to be true",
        ),
        (
            &["$JS.ACK.>"],
            "subjects that overlap with jetstream api require no-ack to be true",
        ),
        (
            &["$JSC.>"],
            "subjects that overlap with jetstream api require no-ack to be true",
        ),
        (
            &["$NRG.>"],
            "subjects that overlap with jetstream api require no-ack to be true",
        ),
        (
            &["$SYS.>"],
            "subjects that overlap with system api require no-ack to be true",
        ),
    ];
    for (subjects, text) in cases {
        assert_eq!(
            invalid(&StreamConfig::named("S", subjects)),
            *text,
            "{subjects:?}"
        );
    }
    let mut c = StreamConfig::named("S", &["$JS.API.>"]);
    c.no_ack = true;
    assert!(c.validate_for_create().is_ok());
}

#[test]
fn ages_windows_replicas_and_flags_are_checked() {
    let with = |f: &dyn Fn(&mut StreamConfig)| {
        let mut c = StreamConfig::named("S", &["s"]);
        f(&mut c);
        c
    };
    assert_eq!(
        invalid(&with(&|c| c.max_age = -5)),
        "max age can not be negative"
    );
    assert_eq!(
        invalid(&with(&|c| c.max_age = 1_000_000)),
        "max age needs to be >= 100ms"
    );
    assert_eq!(
        invalid(&with(&|c| c.duplicate_window = -5)),
        "duplicates window can not be negative"
    );
    assert_eq!(
        invalid(&with(&|c| {
            c.max_age = 10_000_000_000;
            c.duplicate_window = 20_000_000_000;
        })),
        "duplicates window can not be larger then max age"
    );
    assert_eq!(
        invalid(&with(&|c| c.num_replicas = 6)),
        "maximum replicas is 5"
    );
    let e = with(&|c| c.num_replicas = -1)
        .validate_for_create()
        .expect_err("bad");
    assert_eq!((e.code, e.err_code), (400, 10133));
    assert_eq!(
        invalid(&with(&|c| c.discard_new_per_subject = true)),
        "discard new per subject requires discard new policy to be set"
    );
    assert_eq!(
        invalid(&with(&|c| {
            c.discard_new_per_subject = true;
            c.discard = DiscardPolicy::New;
        })),
        "discard new per subject requires max msgs per subject > 0"
    );
    assert_eq!(
        invalid(&with(&|c| c.mirror_direct = true)),
        "stream has no mirror but does have mirror direct"
    );
    assert_eq!(
        invalid(&with(&|c| {
            c.allow_rollup_hdrs = true;
            c.deny_purge = true;
        })),
        "roll-ups require the purge permission"
    );
    assert_eq!(
        invalid(&with(&|c| c.sealed = true)),
        "stream configuration for create can not be sealed"
    );
}

#[test]
fn updates_may_change_limits_but_not_storage_workqueue_seal_or_denials() {
    let old = StreamConfig::named("U", &["u.>"])
        .validate_for_create()
        .expect("valid");
    let change = |f: &dyn Fn(&mut StreamConfig)| {
        let mut n = old.clone();
        f(&mut n);
        StreamConfig::check_update(&old, &n)
    };
    assert!(
        change(&|c| {
            c.max_msgs = 5;
            c.subjects = vec!["other.>".into()];
            c.retention = RetentionPolicy::Interest;
            c.deny_delete = true;
            c.sealed = true;
        })
        .is_ok()
    );
    let text = |r: Result<StreamConfig, ApiError>| r.expect_err("rejected").description;
    assert_eq!(
        text(change(&|c| c.storage = StorageType::Memory)),
        "stream configuration update can not change storage type"
    );
    assert_eq!(
        text(change(&|c| c.retention = RetentionPolicy::WorkQueue)),
        "stream configuration update can not change retention policy to/from workqueue"
    );
    assert_eq!(
        change(&|c| c.name = "X".into()).expect_err("bad").err_code,
        10056
    );

    let mut strict = old.clone();
    strict.sealed = true;
    strict.deny_delete = true;
    strict.deny_purge = true;
    let relax = |f: &dyn Fn(&mut StreamConfig)| {
        let mut n = strict.clone();
        f(&mut n);
        StreamConfig::check_update(&strict, &n)
            .expect_err("rejected")
            .description
    };
    assert_eq!(
        relax(&|c| c.sealed = false),
        "stream configuration update can not unseal a sealed stream"
    );
    strict.sealed = false;
    let relax = |f: &dyn Fn(&mut StreamConfig)| {
        let mut n = strict.clone();
        f(&mut n);
        StreamConfig::check_update(&strict, &n)
            .expect_err("rejected")
            .description
    };
    assert_eq!(
        relax(&|c| c.deny_delete = false),
        "stream configuration update can not cancel deny message deletes"
    );
    assert_eq!(
        relax(&|c| c.deny_purge = false),
        "stream configuration update can not cancel deny purge"
    );
}

#[test]
fn sealing_by_update_reports_the_limits_sealing_implies() {
    let old = StreamConfig {
        max_age: 60_000_000_000,
        allow_rollup_hdrs: true,
        ..StreamConfig::named("S", &["s.>"])
    }
    .validate_for_create()
    .expect("valid");
    let mut requested = old.clone();
    requested.sealed = true;
    let sealed = StreamConfig::check_update(&old, &requested).expect("sealing is an update");
    assert!(sealed.sealed);
    assert_eq!(sealed.max_age, 0);
    assert_eq!(sealed.discard, DiscardPolicy::New);
    assert!(sealed.deny_delete && sealed.deny_purge);
    assert!(!sealed.allow_rollup_hdrs);
}

#[test]
fn null_members_decode_as_absent_like_go() {
    let c = cfg(
        r#"{"name":"S","subjects":["a"],"consumer_limits":null,"placement":{"cluster":null},"max_msgs":null}"#,
    );
    assert_eq!(c.consumer_limits, ConsumerLimits::default());
    assert_eq!(c.max_msgs, 0);
    assert_eq!(c.placement, Some(Placement::default()));
}

#[test]
fn numbers_in_opaque_members_survive_the_json_round_trip_exactly() {
    // Found by the jetstream_api fuzz target: without exact float parsing, a long number in the
    // (opaque) mirror parsed to one double, printed, and parsed back to its neighbour, so a
    // stored config no longer equalled itself after a reload ("mirror can not be updated").
    let body = format!(
        r#"{{"name":"M","mirror":{{"name":"O","x":[100000000{}00, 0.1, 1e-300]}}}}"#,
        "7".repeat(108)
    );
    let c = cfg(&body);
    let again = cfg(&c.to_json());
    assert_eq!(again, c);
    assert_eq!(cfg(&again.to_json()), c);
}

#[test]
fn republish_is_reported_with_its_default_source_as_nats_server_does() {
    let c = cfg(r#"{"name":"S","subjects":["foo.>"],"republish":{"dest":"rp.>"}}"#)
        .validate_for_create()
        .expect("valid");
    assert!(
        c.to_json()
            .contains(r#""republish":{"src":"\u003e","dest":"rp.\u003e"}"#),
        "{}",
        c.to_json()
    );
    let c = cfg(
        r#"{"name":"S","subjects":["foo.>"],"republish":{"src":"foo.*","dest":"rp.x","headers_only":true}}"#,
    )
    .validate_for_create()
    .expect("valid");
    assert!(
        c.to_json()
            .contains(r#""republish":{"src":"foo.*","dest":"rp.x","headers_only":true}"#),
        "{}",
        c.to_json()
    );
    assert_eq!(
        invalid(&cfg(
            r#"{"name":"S","subjects":["foo.>"],"republish":{"dest":"foo.x"}}"#
        )),
        "stream configuration for republish destination forms a cycle"
    );
}

#[test]
fn subject_transform_is_shown_with_both_fields_and_checked_with_nats_servers_codes() {
    let c = cfg(r#"{"name":"S","subjects":["foo.>"],"subject_transform":{"dest":"bar.>"}}"#)
        .validate_for_create()
        .expect("valid");
    assert!(
        c.to_json()
            .contains(r#""subject_transform":{"src":"","dest":"bar.\u003e"}"#),
        "{}",
        c.to_json()
    );
    let err = cfg(
        r#"{"name":"S","subjects":["foo.>"],"subject_transform":{"src":"foo.*","dest":"bar.*"}}"#,
    )
    .validate_for_create()
    .expect_err("a wildcard destination");
    assert_eq!(
        (err.err_code, err.description.as_str()),
        (10156, "stream transform: invalid subject")
    );
}

#[test]
fn a_stream_that_copies_has_no_duplicate_window_unless_it_asks() {
    let window = |json: &str| {
        cfg(json)
            .validate_for_create()
            .expect("valid")
            .duplicate_window
    };
    assert_eq!(window(r#"{"name":"S","sources":[{"name":"A"}]}"#), 0);
    assert_eq!(
        window(r#"{"name":"S","subjects":["x.>"],"sources":[{"name":"A"}]}"#),
        0
    );
    assert_eq!(window(r#"{"name":"S","mirror":{"name":"A"}}"#), 0);
    assert_eq!(
        window(r#"{"name":"S","mirror":{"name":"A"},"duplicate_window":5000000000}"#),
        5_000_000_000
    );
    // An empty list of sources is no sources.
    let none = cfg(r#"{"name":"S6","sources":[]}"#)
        .validate_for_create()
        .expect("valid");
    assert_eq!(none.sources, None);
    assert_eq!(none.subjects, vec!["S6".to_string()]);
    assert_eq!(none.duplicate_window, DEFAULT_DUPLICATE_WINDOW_NS);
}
