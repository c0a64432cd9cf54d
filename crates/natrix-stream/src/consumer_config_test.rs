use super::*;

fn stream(json: &str) -> StreamConfig {
    StreamConfig::from_json(json.as_bytes())
        .and_then(|s| s.validate_for_create())
        .expect("test stream config is valid")
}

fn s_stream() -> StreamConfig {
    stream(r#"{"name":"S","subjects":["s.>"]}"#)
}

fn validated(json: &str, on: &StreamConfig) -> Result<ConsumerConfig, ApiError> {
    ConsumerConfig::from_json(json.as_bytes())?.validate_and_default(on)
}

fn code(json: &str, on: &StreamConfig) -> (u16, String) {
    match validated(json, on) {
        Ok(c) => panic!("{json} unexpectedly valid: {}", c.to_json()),
        Err(e) => (e.err_code, e.description),
    }
}

#[test]
fn ephemeral_pull_defaults_read_exactly_as_nats_server_reports_them() {
    let c = validated(r#"{"ack_policy":"explicit"}"#, &s_stream()).expect("valid");
    assert_eq!(
        c.to_json(),
        r#"{"deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,"replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"inactive_threshold":5000000000,"num_replicas":0}"#
    );
}

#[test]
fn a_bare_config_is_an_ack_none_pull_consumer_without_ack_defaults() {
    let c = validated("{}", &s_stream()).expect("valid");
    assert_eq!(
        c.to_json(),
        r#"{"deliver_policy":"all","ack_policy":"none","max_deliver":-1,"replay_policy":"instant","max_waiting":512,"inactive_threshold":5000000000,"num_replicas":0}"#
    );
}

#[test]
fn durable_consumers_have_no_inactive_threshold_and_push_ones_no_max_waiting() {
    let c = validated(
        r#"{"durable_name":"D2","ack_policy":"explicit"}"#,
        &s_stream(),
    )
    .expect("valid");
    assert_eq!(
        c.to_json(),
        r#"{"durable_name":"D2","deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,"replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"num_replicas":0}"#
    );
    let p = validated(
        r#"{"deliver_subject":"dd3","ack_policy":"all"}"#,
        &s_stream(),
    )
    .expect("valid");
    assert_eq!(
        p.to_json(),
        r#"{"deliver_policy":"all","ack_policy":"all","ack_wait":30000000000,"max_deliver":-1,"replay_policy":"instant","max_ack_pending":1000,"deliver_subject":"dd3","inactive_threshold":5000000000,"num_replicas":0}"#
    );
}

#[test]
fn every_field_round_trips_in_nats_server_order() {
    let json = r#"{"description":"d","deliver_policy":"all","ack_policy":"explicit","ack_wait":5000000000,"max_deliver":5,"replay_policy":"original","sample_freq":"10","max_waiting":3,"max_ack_pending":10,"headers_only":true,"max_batch":4,"max_expires":5000000000,"max_bytes":100,"inactive_threshold":9000000000,"num_replicas":1,"mem_storage":true,"metadata":{"k":"v"}}"#;
    let c = validated(json, &s_stream()).expect("valid");
    assert_eq!(c.to_json(), json);
    let push = r#"{"deliver_policy":"all","ack_policy":"none","max_deliver":-1,"replay_policy":"instant","idle_heartbeat":1000000000,"flow_control":true,"deliver_subject":"dq","inactive_threshold":5000000000,"num_replicas":0}"#;
    assert_eq!(validated(push, &s_stream()).expect("valid").to_json(), push);
}

#[test]
fn backoff_sets_the_first_ack_wait() {
    let c = validated(
        r#"{"ack_policy":"explicit","backoff":[1000000000,2000000000],"max_deliver":3}"#,
        &s_stream(),
    )
    .expect("valid");
    assert_eq!(c.ack_wait, 1_000_000_000);
}

#[test]
fn invalid_configs_get_nats_server_codes_and_texts() {
    let s = s_stream();
    let cases: &[(&str, u16, &str)] = &[
        (
            r#"{"name":"a b"}"#,
            10103,
            "durable name can not contain '.', '*', '>'",
        ),
        (
            r#"{"durable_name":"a.b"}"#,
            10103,
            "durable name can not contain '.', '*', '>'",
        ),
        (
            r#"{"durable_name":"D","name":"X"}"#,
            10132,
            "Consumer Durable and Name have to be equal if both are provided",
        ),
        (
            r#"{"filter_subject":"x.y"}"#,
            10093,
            "consumer filter subject is not a valid subset of the interest subjects",
        ),
        (
            r#"{"filter_subject":"s..a"}"#,
            10093,
            "consumer filter subject is not a valid subset of the interest subjects",
        ),
        (
            r#"{"filter_subject":"*.a"}"#,
            10093,
            "consumer filter subject is not a valid subset of the interest subjects",
        ),
        (
            r#"{"deliver_subject":"d.*"}"#,
            10079,
            "consumer deliver subject has wildcards",
        ),
        (
            r#"{"deliver_subject":"d..x"}"#,
            10112,
            "invalid push consumer deliver subject",
        ),
        (
            r#"{"deliver_subject":"s.x"}"#,
            10081,
            "consumer deliver subject forms a cycle",
        ),
        (
            r#"{"deliver_subject":"dq","max_waiting":5}"#,
            10080,
            "consumer in push mode can not set max waiting",
        ),
        (
            r#"{"deliver_subject":"dq","max_ack_pending":5}"#,
            10082,
            "consumer requires ack policy for max ack pending",
        ),
        (
            r#"{"deliver_subject":"dq","idle_heartbeat":1000}"#,
            10083,
            "consumer idle heartbeat needs to be >= 100ms",
        ),
        (
            r#"{"deliver_subject":"dq","flow_control":true}"#,
            10108,
            "consumer with flow control also needs heartbeats",
        ),
        (
            r#"{"rate_limit_bps":100}"#,
            10086,
            "consumer in pull mode can not have rate limit set",
        ),
        (
            r#"{"max_waiting":-1}"#,
            10087,
            "consumer max waiting needs to be positive",
        ),
        (
            r#"{"idle_heartbeat":1000000000}"#,
            10088,
            "consumer idle heartbeat requires a push based consumer",
        ),
        (
            r#"{"flow_control":true}"#,
            10089,
            "consumer flow control requires a push based consumer",
        ),
        (
            r#"{"max_batch":-1}"#,
            10114,
            "consumer max request batch needs to be > 0",
        ),
        (
            r#"{"max_expires":1000}"#,
            10115,
            "consumer max request expires needs to be >= 1ms",
        ),
        (
            r#"{"ack_policy":"explicit","backoff":[1,2],"max_deliver":2}"#,
            10116,
            "max deliver is required to be > length of backoff values",
        ),
        (
            r#"{"backoff":[1]}"#,
            10116,
            "max deliver is required to be > length of backoff values",
        ),
        (
            r#"{"num_replicas":-1}"#,
            10133,
            "replicas count cannot be negative",
        ),
        (
            r#"{"num_replicas":3}"#,
            10074,
            "replicas > 1 not supported in non-clustered mode",
        ),
        (
            r#"{"opt_start_seq":3}"#,
            10094,
            "consumer delivery policy is deliver all, but optional start sequence is also set",
        ),
        (
            r#"{"opt_start_time":"2020-01-01T00:00:00Z"}"#,
            10094,
            "consumer delivery policy is deliver all, but optional start time is also set",
        ),
        (
            r#"{"deliver_policy":"last","opt_start_seq":3}"#,
            10094,
            "consumer delivery policy is deliver last, but optional start sequence is also set",
        ),
        (
            r#"{"deliver_policy":"new","opt_start_time":"2020-01-01T00:00:00Z"}"#,
            10094,
            "consumer delivery policy is deliver new, but optional start time is also set",
        ),
        (
            r#"{"deliver_policy":"last_per_subject"}"#,
            10094,
            "consumer delivery policy is deliver last per subject, but optional filter subject is not set",
        ),
        (
            r#"{"deliver_policy":"last_per_subject","opt_start_seq":1,"filter_subject":"s.*"}"#,
            10094,
            "consumer delivery policy is deliver last per subject, but optional start sequence is also set",
        ),
        (
            r#"{"deliver_policy":"by_start_sequence"}"#,
            10094,
            "consumer delivery policy is deliver by start sequence, but optional start sequence is not set",
        ),
        (
            r#"{"deliver_policy":"by_start_sequence","opt_start_seq":1,"opt_start_time":"2020-01-01T00:00:00Z"}"#,
            10094,
            "consumer delivery policy is deliver by start sequence, but optional start time is also set",
        ),
        (
            r#"{"deliver_policy":"by_start_time"}"#,
            10094,
            "consumer delivery policy is deliver by start time, but optional start time is not set",
        ),
        (
            r#"{"deliver_policy":"by_start_time","opt_start_seq":1,"opt_start_time":"2020-01-01T00:00:00Z"}"#,
            10094,
            "consumer delivery policy is deliver by start time, but optional start start sequence is also set",
        ),
        (
            r#"{"sample_freq":"abc"}"#,
            10095,
            "failed to parse consumer sampling configuration: strconv.Atoi: parsing \"abc\": invalid syntax",
        ),
        (
            r#"{"sample_freq":"-5%"}"#,
            10095,
            "failed to parse consumer sampling configuration: <nil>",
        ),
        (
            r#"{"filter_subjects":["s.a","s.*"]}"#,
            10138,
            "consumer subject filters cannot overlap",
        ),
        (
            r#"{"filter_subject":"s.a","filter_subjects":["s.b"]}"#,
            10136,
            "consumer cannot have both FilterSubject and FilterSubjects specified",
        ),
        (
            r#"{"ack_policy":"explicit","ack_wait":-1}"#,
            10183,
            "consumer ack wait needs to be positive",
        ),
        // Found by the jetstream_api fuzz target: the first step became a negative ack wait
        // (immediate redelivery, forever), and validating the result again failed.
        (
            r#"{"ack_policy":"explicit","backoff":[-1],"max_deliver":5,"ack_wait":-1}"#,
            10184,
            "consumer backoff needs to be positive",
        ),
        (
            r#"{"ack_policy":"explicit","backoff":[1000000000,-5],"max_deliver":5}"#,
            10184,
            "consumer backoff needs to be positive",
        ),
        (
            r#"{"description":"__LONG__"}"#,
            10107,
            "consumer description is too long, maximum allowed is 4096",
        ),
    ];
    let long = "x".repeat(4097);
    for (json, want_code, want_text) in cases {
        let json = json.replace("__LONG__", &long);
        assert_eq!(
            code(&json, &s),
            (*want_code, want_text.to_string()),
            "{json}"
        );
    }
}

#[test]
fn filters_inside_or_wider_than_the_stream_subjects_are_accepted() {
    for f in ["s.a", "s.*", ">", "s.*.>", "s.a.>"] {
        validated(&format!(r#"{{"filter_subject":"{f}"}}"#), &s_stream())
            .unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    let c = validated(r#"{"filter_subjects":["s.a","s.b"]}"#, &s_stream()).expect("valid");
    assert_eq!(c.filters(), vec!["s.a".to_string(), "s.b".to_string()]);
}

#[test]
fn bad_enums_and_times_are_json_errors() {
    let e = ConsumerConfig::from_json(br#"{"deliver_policy":"bogus"}"#).expect_err("bad enum");
    assert_eq!(e.err_code, 10025);
    assert_eq!(
        e.description,
        r#"invalid JSON: can not unmarshal "\"bogus\"""#
    );
    let e = ConsumerConfig::from_json(br#"{"opt_start_time":"garbage"}"#).expect_err("bad time");
    assert_eq!(e.err_code, 10025);
}

#[test]
fn stream_consumer_limits_fill_defaults_and_cap_the_config() {
    let s = stream(
        r#"{"name":"L","subjects":["l.>"],"consumer_limits":{"max_ack_pending":100,"inactive_threshold":10000000000}}"#,
    );
    let c = validated(r#"{"ack_policy":"explicit"}"#, &s).expect("valid");
    assert_eq!(
        (c.max_ack_pending, c.inactive_threshold),
        (100, 10_000_000_000)
    );
    assert_eq!(
        code(r#"{"ack_policy":"explicit","max_ack_pending":101}"#, &s),
        (
            10121,
            "consumer max ack pending exceeds system limit of 100".into()
        )
    );
    assert_eq!(
        code(r#"{"inactive_threshold":20000000000}"#, &s),
        (
            10153,
            "consumer inactive threshold exceeds system limit of 10s".into()
        )
    );
    // Found by the round-trip property test (tests/api_decoding.rs): the limit became the
    // max_ack_pending of a push consumer without acks, a config that validating again refused.
    // nats-server fills the default first and refuses it at once.
    assert_eq!(
        code(r#"{"deliver_subject":"dq"}"#, &s),
        (
            10082,
            "consumer requires ack policy for max ack pending".into()
        )
    );
    let pull = validated("{}", &s).expect("a pull consumer without acks is valid");
    assert_eq!(pull.validate_and_default(&s), Ok(pull));
    // Also found by it: a durable's negative inactive_threshold became 0 and, validated again,
    // the stream's limit. It is unset from the start now, so both passes agree.
    let durable = validated(r#"{"durable_name":"A","inactive_threshold":-5}"#, &s)
        .expect("a durable with a negative threshold is valid");
    assert_eq!(durable.inactive_threshold, 10_000_000_000);
    assert_eq!(durable.validate_and_default(&s), Ok(durable));
}

#[test]
fn workqueue_streams_require_explicit_ack_deliver_all_and_disjoint_filters() {
    let w = stream(r#"{"name":"W","subjects":["w.>"],"retention":"workqueue"}"#);
    assert_eq!(code("{}", &w).0, 10084);
    assert_eq!(code(r#"{"ack_policy":"all"}"#, &w).0, 10098);
    assert_eq!(code(r#"{"deliver_subject":"x"}"#, &w).0, 10098);
    assert_eq!(
        code(r#"{"ack_policy":"explicit","deliver_policy":"new"}"#, &w).0,
        10101
    );
    let star = validated(r#"{"ack_policy":"explicit","filter_subject":"w.*"}"#, &w).expect("valid");
    let a = validated(r#"{"ack_policy":"explicit","filter_subject":"w.a"}"#, &w).expect("valid");
    let deep =
        validated(r#"{"ack_policy":"explicit","filter_subject":"w.b.c"}"#, &w).expect("valid");
    let all = validated(r#"{"ack_policy":"explicit"}"#, &w).expect("valid");
    assert_eq!(
        check_workqueue_partition(&a, [&star]).map_err(|e| e.err_code),
        Err(10100)
    );
    assert_eq!(
        check_workqueue_partition(&star, [&a]).map_err(|e| e.err_code),
        Err(10100)
    );
    assert_eq!(
        check_workqueue_partition(&all, [&star]).map_err(|e| e.err_code),
        Err(10099)
    );
    assert_eq!(
        check_workqueue_partition(&a, [&all]).map_err(|e| e.err_code),
        Err(10100)
    );
    assert!(check_workqueue_partition(&deep, [&star]).is_ok());
    assert!(check_workqueue_partition(&all, []).is_ok());
}

/// `{base}` with the fields of `{change}` set (later fields win, as in Go's decoder).
fn merged(base: &str, change: &str) -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(&format!("{{{base}}}")).expect("base is JSON");
    let c: serde_json::Value = serde_json::from_str(&format!("{{{change}}}")).expect("JSON");
    if let (Some(v), Some(c)) = (v.as_object_mut(), c.as_object()) {
        v.extend(c.clone());
    }
    v.to_string()
}

#[test]
fn updates_may_change_only_what_nats_server_allows() {
    let s = s_stream();
    let base = r#""durable_name":"U","ack_policy":"explicit","deliver_subject":"ud","filter_subject":"s.a""#;
    let old = validated(&format!("{{{base}}}"), &s).expect("valid");
    let allowed = [
        r#""description":"x""#,
        r#""ack_wait":5000000000"#,
        r#""max_deliver":9"#,
        r#""sample_freq":"5""#,
        r#""max_ack_pending":7"#,
        r#""headers_only":true"#,
        r#""rate_limit_bps":1000"#,
        r#""inactive_threshold":3000000000"#,
        r#""metadata":{"a":"b"}"#,
        r#""filter_subject":"s.b""#,
        r#""deliver_subject":"ud2""#,
        r#""deliver_group":"g""#,
        r#""num_replicas":1"#,
        r#""mem_storage":true"#,
    ];
    for change in allowed {
        let json = merged(base, change);
        let new = validated(&json, &s).unwrap_or_else(|e| panic!("{json}: {e}"));
        ConsumerConfig::check_update(&old, &new).unwrap_or_else(|e| panic!("{change}: {e}"));
    }
    let refused = [
        (
            r#""deliver_policy":"new""#,
            "deliver policy can not be updated",
        ),
        (r#""ack_policy":"all""#, "ack policy can not be updated"),
        (
            r#""replay_policy":"original""#,
            "replay policy can not be updated",
        ),
        (
            r#""idle_heartbeat":2000000000"#,
            "heart beats can not be updated",
        ),
        (
            r#""flow_control":true,"idle_heartbeat":1000000000"#,
            "heart beats can not be updated",
        ),
    ];
    for (change, text) in refused {
        let new = validated(&merged(base, change), &s).expect("valid");
        let e = ConsumerConfig::check_update(&old, &new).expect_err(change);
        assert_eq!(
            (e.code, e.err_code, e.description.as_str()),
            (500, 10012, text)
        );
    }
    let pull = validated(r#"{"durable_name":"PU","ack_policy":"explicit"}"#, &s).expect("valid");
    let waiting = validated(
        r#"{"durable_name":"PU","ack_policy":"explicit","max_waiting":9}"#,
        &s,
    )
    .expect("valid");
    let pushed = validated(
        r#"{"durable_name":"PU","ack_policy":"explicit","deliver_subject":"x"}"#,
        &s,
    )
    .expect("valid");
    let batch = validated(r#"{"durable_name":"PU","ack_policy":"explicit","max_batch":3,"max_expires":5000000000,"max_bytes":100}"#, &s).expect("valid");
    let text =
        |n: &ConsumerConfig| ConsumerConfig::check_update(&pull, n).map_err(|e| e.description);
    assert_eq!(text(&waiting), Err("max waiting can not be updated".into()));
    // As in nats-server 2.9: the push config has no max_waiting default, so that is what differs.
    assert_eq!(text(&pushed), Err("max waiting can not be updated".into()));
    assert_eq!(text(&batch), Ok(()));
}

#[test]
fn create_subjects_and_bodies_are_reconciled_as_nats_server_does() {
    let resolve = |subject: &str, body: &str| {
        let subject = CreateSubject::parse(subject).expect("create subject");
        CreateConsumerRequest::resolve(&subject, body.as_bytes())
    };
    let err = |subject: &str, body: &str| resolve(subject, body).expect_err(body).err_code;
    assert_eq!(
        err(
            "$JS.API.CONSUMER.CREATE.S",
            r#"{"stream_name":"S","config":{"durable_name":"D"}}"#
        ),
        10020
    );
    assert_eq!(
        err(
            "$JS.API.CONSUMER.CREATE.S",
            r#"{"stream_name":"T","config":{}}"#
        ),
        10056
    );
    assert_eq!(err("$JS.API.CONSUMER.CREATE.S", r#"{"config":{}}"#), 10056);
    assert_eq!(
        err(
            "$JS.API.CONSUMER.CREATE.S.D5",
            r#"{"stream_name":"S","config":{"durable_name":"X5"}}"#
        ),
        10017
    );
    assert_eq!(
        err(
            "$JS.API.CONSUMER.DURABLE.CREATE.S.D3",
            r#"{"stream_name":"S","config":{"durable_name":"X3"}}"#
        ),
        10017
    );
    assert_eq!(
        err(
            "$JS.API.CONSUMER.DURABLE.CREATE.S.D4",
            r#"{"stream_name":"S","config":{}}"#
        ),
        10018
    );
    assert_eq!(
        err(
            "$JS.API.CONSUMER.CREATE.S.F2.s.a",
            r#"{"stream_name":"S","config":{"filter_subject":"s.b"}}"#
        ),
        10131
    );
    assert_eq!(
        err(
            "$JS.API.CONSUMER.CREATE.S.F3.s.a",
            r#"{"stream_name":"S","config":{}}"#
        ),
        10131
    );
    assert_eq!(err("$JS.API.CONSUMER.CREATE.S", "{"), 10025);
    let named = resolve(
        "$JS.API.CONSUMER.CREATE.S.D6",
        r#"{"stream_name":"S","config":{"name":"X6"}}"#,
    )
    .expect("ok");
    assert_eq!(named.config.name, "D6");
    let durable = resolve(
        "$JS.API.CONSUMER.CREATE.S.D9",
        r#"{"stream_name":"S","config":{"durable_name":"D9","name":"Y9"}}"#,
    )
    .expect("ok");
    assert_eq!(
        (
            durable.config.durable_name.as_str(),
            durable.config.name.as_str()
        ),
        ("D9", "D9")
    );
    let filtered = resolve(
        "$JS.API.CONSUMER.CREATE.S.F1.s.a",
        r#"{"stream_name":"S","config":{"filter_subject":"s.a"}}"#,
    )
    .expect("ok");
    assert_eq!(filtered.config.consumer_name(), "F1");
    let d = resolve(
        "$JS.API.CONSUMER.DURABLE.CREATE.S.D2",
        r#"{"stream_name":"S","config":{"durable_name":"D2"}}"#,
    )
    .expect("ok");
    assert_eq!(
        d.config.name, "",
        "nats-server 2.9 leaves name unset on the durable subject"
    );
    assert_eq!(
        CreateSubject::parse("$JS.API.CONSUMER.DURABLE.CREATE.S.a.b"),
        None
    );
    assert_eq!(CreateSubject::parse("$JS.API.CONSUMER.INFO.S.a"), None);
}

#[test]
fn create_actions_refuse_existing_or_missing_consumers() {
    let req =
        CreateConsumerRequest::from_json(br#"{"stream_name":"S","config":{},"action":"create"}"#)
            .expect("ok");
    assert_eq!(req.action, CreateAction::Create);
    let a = ConsumerConfig::default();
    let b = ConsumerConfig {
        max_batch: 3,
        ..ConsumerConfig::default()
    };
    assert_eq!(
        CreateAction::Create
            .check(Some(&a), &b)
            .map_err(|e| e.err_code),
        Err(10148)
    );
    assert!(CreateAction::Create.check(Some(&a), &a).is_ok());
    assert_eq!(
        CreateAction::Update.check(None, &a).map_err(|e| e.err_code),
        Err(10149)
    );
    assert!(CreateAction::CreateOrUpdate.check(None, &a).is_ok());
    assert!(CreateConsumerRequest::from_json(br#"{"stream_name":"S","action":"bogus"}"#).is_err());
}

#[test]
fn go_durations_and_rfc3339_times_read_like_go() {
    assert_eq!(go_duration(1_000_000_000), "1s");
    assert_eq!(go_duration(10_000_000_000), "10s");
    assert_eq!(go_duration(1_500_000_000), "1.5s");
    assert_eq!(go_duration(500_000_000), "500ms");
    assert_eq!(go_duration(120_000_000_000), "2m0s");
    assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    assert_eq!(go_duration(1_500), "1.5µs");
    assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339_nanos("2026-11-26T01:16:24.511727425Z"),
        Some(1_795_655_784_511_727_425)
    );
    assert_eq!(
        parse_rfc3339_nanos("2020-01-01T00:00:00.5+01:00"),
        Some(1_577_833_200_500_000_000)
    );
    assert_eq!(parse_rfc3339_nanos("garbage"), None);
}
