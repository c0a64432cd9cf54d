//! Property tests of the JetStream API request decoding, the same paths the `jetstream_api` fuzz
//! target drives (`fuzz/`): arbitrary JSON bodies never panic the decode-and-validate path the
//! server runs, and generated configs survive the JSON round trip and validate to themselves.

use std::collections::BTreeMap;

use natrix_stream::{
    AckPolicy, Compression, ConsumerConfig, ConsumerLimits, CreateConsumerRequest, CreateSubject,
    DeliverPolicy, DiscardPolicy, Placement, PullRequest, PurgeRequest, ReplayPolicy,
    RetentionPolicy, StorageType, StreamConfig, decode_request_body,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

// ---- arbitrary JSON, biased towards the fields the API knows ----

const FIELDS: &[&str] = &[
    "name",
    "subjects",
    "retention",
    "max_msgs",
    "max_age",
    "storage",
    "num_replicas",
    "duplicate_window",
    "sealed",
    "deny_purge",
    "allow_rollup_hdrs",
    "mirror",
    "mirror_direct",
    "discard",
    "discard_new_per_subject",
    "max_msgs_per_subject",
    "consumer_limits",
    "inactive_threshold",
    "max_ack_pending",
    "no_ack",
    "stream_name",
    "config",
    "action",
    "durable_name",
    "deliver_policy",
    "opt_start_seq",
    "opt_start_time",
    "ack_policy",
    "ack_wait",
    "max_deliver",
    "backoff",
    "filter_subject",
    "filter_subjects",
    "deliver_subject",
    "idle_heartbeat",
    "flow_control",
    "max_waiting",
    "sample_freq",
    "batch",
    "expires",
    "filter",
    "keep",
    "seq",
];

fn json_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just(-1i64),
            Just(0),
            1..10i64,
            100_000_000..200_000_000_000i64
        ]
        .prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![
            "S",
            "ORDERS",
            "limits",
            "workqueue",
            "memory",
            "new",
            "explicit",
            "all",
            "last",
            "by_start_time",
            "create",
            "update",
            ">",
            "s.*",
            "s.a",
            "$JS.API.>",
            "",
            "2024-02-29T12:00:00Z",
            "50%",
        ])
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_scalar().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(FIELDS).prop_map(str::to_string),
                        "[a-z_]{0,8}"
                    ],
                    inner
                ),
                0..8
            )
            .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn stream(retention: RetentionPolicy) -> StreamConfig {
    StreamConfig {
        retention,
        consumer_limits: ConsumerLimits {
            inactive_threshold: 10_000_000_000,
            max_ack_pending: 100,
        },
        ..StreamConfig::named("S", &["s.>"])
    }
    .validate_for_create()
    .expect("a valid stream")
}

/// Every decoder the API runs on a request body, in the server's order; only the outcome of
/// "does it panic" matters here.
fn decode_everything(body: &[u8]) {
    if let Ok(requested) = StreamConfig::from_request_body(body) {
        if let Ok(config) = requested.validate_for_create() {
            let _ = StreamConfig::check_update(&config, &requested);
        }
        let _ = StreamConfig::check_update(&stream(RetentionPolicy::WorkQueue), &requested);
    }
    for subject in [
        "$JS.API.CONSUMER.CREATE.S",
        "$JS.API.CONSUMER.CREATE.S.C",
        "$JS.API.CONSUMER.CREATE.S.C.s.a",
        "$JS.API.CONSUMER.DURABLE.CREATE.S.C",
    ] {
        let subject = CreateSubject::parse(subject).expect("a create subject");
        if let Ok(req) = CreateConsumerRequest::resolve(&subject, body) {
            for retention in [RetentionPolicy::Limits, RetentionPolicy::WorkQueue] {
                if let Ok(config) = req.config.validate_and_default(&stream(retention)) {
                    let _ = req.action.check(Some(&config), &config);
                }
            }
        }
    }
    let _ = decode_request_body::<PurgeRequest>(body);
    let _ = PullRequest::from_json(body);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_json_bodies_never_panic_the_api_decoders(value in json_value()) {
        decode_everything(value.to_string().as_bytes());
        // The same object as a consumer create request's config.
        let wrapped = json!({"stream_name": "S", "config": value});
        decode_everything(wrapped.to_string().as_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_api_decoders(body in prop::collection::vec(any::<u8>(), 0..64)) {
        decode_everything(&body);
    }
}

// ---- generated configs ----

fn limit() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0i64), Just(-1), 1..1_000_000i64, any::<i64>()]
}

fn nanos() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        1..200_000_000i64,
        100_000_000..7_200_000_000_000i64,
        any::<i64>()
    ]
}

fn subject() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop_oneof![4 => "[a-z]{1,3}", 1 => Just("*".to_string())],
            1..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(mut tokens, wide)| {
            if wide {
                tokens.push(">".to_string());
            }
            tokens.join(".")
        })
}

fn metadata() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[a-z_.]{1,8}", "\\PC{0,8}", 0..3)
}

fn stream_config() -> impl Strategy<Value = StreamConfig> {
    let names = (
        "[A-Za-z0-9_-]{1,16}",
        "\\PC{0,16}",
        prop::collection::vec(subject(), 0..4),
        prop::sample::select(vec![
            RetentionPolicy::Limits,
            RetentionPolicy::Interest,
            RetentionPolicy::WorkQueue,
        ]),
        prop::sample::select(vec![StorageType::File, StorageType::Memory]),
        prop::sample::select(vec![DiscardPolicy::Old, DiscardPolicy::New]),
        prop::sample::select(vec![Compression::None, Compression::S2]),
    );
    let limits = (
        limit(),
        limit(),
        limit(),
        limit(),
        limit(),
        nanos(),
        nanos(),
        -1..7i64,
    );
    let flags = prop::collection::vec(any::<bool>(), 9);
    let extra = (
        proptest::option::of((
            "[a-z0-9]{0,6}",
            prop::collection::vec("[a-z:0-9]{1,6}", 0..3),
        )),
        prop_oneof![Just(0u64), any::<u64>()],
        (nanos(), limit()),
        metadata(),
    );
    (names, limits, flags, extra).prop_map(
        |(
            (name, description, subjects, retention, storage, discard, compression),
            (max_consumers, max_msgs, max_bytes, per_subject, max_msg_size, max_age, dup, replicas),
            flags,
            (placement, first_seq, (inactive, max_ack_pending), metadata),
        )| StreamConfig {
            name,
            description,
            subjects,
            retention,
            max_consumers,
            max_msgs,
            max_bytes,
            max_age,
            max_msgs_per_subject: per_subject,
            max_msg_size,
            discard,
            storage,
            num_replicas: replicas,
            no_ack: flags[0],
            duplicate_window: dup,
            placement: placement.map(|(cluster, tags)| Placement { cluster, tags }),
            compression,
            first_seq,
            allow_direct: flags[1],
            discard_new_per_subject: flags[2],
            sealed: flags[3] && flags[4],
            deny_delete: flags[5],
            deny_purge: flags[6],
            allow_rollup_hdrs: flags[7],
            consumer_limits: ConsumerLimits {
                inactive_threshold: if flags[8] { inactive } else { 0 },
                max_ack_pending: if flags[8] { max_ack_pending } else { 0 },
            },
            metadata,
            ..StreamConfig::default()
        },
    )
}

fn rfc3339() -> impl Strategy<Value = String> {
    (
        1970u32..2100,
        1u32..13,
        1u32..29,
        0u32..24,
        0u32..60,
        0u32..60,
        0u32..1_000_000_000,
    )
        .prop_map(|(y, mo, d, h, mi, s, ns)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ns:09}Z")
        })
}

fn consumer_config() -> impl Strategy<Value = ConsumerConfig> {
    let names = (
        prop_oneof![Just(String::new()), "[A-Za-z0-9_-]{1,12}"],
        prop_oneof![Just(String::new()), "[A-Za-z0-9_-]{1,12}"],
        prop::sample::select(vec![
            DeliverPolicy::All,
            DeliverPolicy::Last,
            DeliverPolicy::New,
            DeliverPolicy::ByStartSequence,
            DeliverPolicy::ByStartTime,
            DeliverPolicy::LastPerSubject,
        ]),
        prop_oneof![Just(0u64), 1..100u64],
        proptest::option::of(rfc3339()),
        prop::sample::select(vec![AckPolicy::None, AckPolicy::All, AckPolicy::Explicit]),
        prop::sample::select(vec![ReplayPolicy::Instant, ReplayPolicy::Original]),
    );
    let timing = (
        nanos(),
        prop_oneof![Just(0i64), Just(-1), 1..10i64],
        prop::collection::vec(prop_oneof![1..10_000_000_000i64, any::<i64>()], 0..3),
        limit(),
        limit(),
        nanos(),
        nanos(),
        -1..4i64,
    );
    let filters = (
        prop_oneof![
            Just(String::new()),
            subject().prop_map(|s| format!("s.{s}"))
        ],
        prop::collection::vec(subject().prop_map(|s| format!("s.{s}")), 0..3),
        prop_oneof![Just(String::new()), "[a-z]{1,4}(\\.[a-z]{1,4}){0,2}"],
        prop::collection::vec(any::<bool>(), 3),
        metadata(),
    );
    (names, timing, filters).prop_map(
        |(
            (durable_name, name, deliver_policy, opt_start_seq, opt_start_time, ack_policy, replay),
            (
                ack_wait,
                max_deliver,
                backoff,
                max_waiting,
                max_ack_pending,
                idle,
                inactive,
                replicas,
            ),
            (filter_subject, filter_subjects, deliver_subject, flags, metadata),
        )| ConsumerConfig {
            durable_name,
            name,
            deliver_policy,
            opt_start_seq,
            opt_start_time,
            ack_policy,
            ack_wait,
            max_deliver,
            backoff,
            filter_subject,
            filter_subjects,
            replay_policy: replay,
            max_waiting,
            max_ack_pending,
            idle_heartbeat: idle,
            flow_control: flags[0],
            headers_only: flags[1],
            deliver_subject,
            inactive_threshold: inactive,
            num_replicas: replicas,
            mem_storage: flags[2],
            metadata,
            ..ConsumerConfig::default()
        },
    )
}

/// Resolves the conflicts between fields that a random config almost always has (start
/// options against the deliver policy, push-only options on a pull consumer, values above the
/// stream's consumer limits), so that validation gets past them to the rest, half of the time.
fn make_plausible(mut c: ConsumerConfig) -> ConsumerConfig {
    if !c.durable_name.is_empty() && !c.name.is_empty() {
        c.name = c.durable_name.clone();
    }
    if c.deliver_policy != DeliverPolicy::ByStartSequence {
        c.opt_start_seq = 0;
    } else if c.opt_start_seq == 0 {
        c.opt_start_seq = 1;
    }
    if c.deliver_policy != DeliverPolicy::ByStartTime {
        c.opt_start_time = None;
    } else if c.opt_start_time.is_none() {
        c.opt_start_time = Some("2024-02-29T12:00:00Z".into());
    }
    if c.deliver_policy == DeliverPolicy::LastPerSubject && c.filters().is_empty() {
        c.filter_subject = "s.a".into();
    }
    if c.is_pull() {
        c.idle_heartbeat = 0;
        c.flow_control = false;
        c.max_waiting = c.max_waiting.max(0);
    } else {
        c.max_waiting = 0;
        c.deliver_subject = format!("deliver.{}", c.deliver_subject);
        c.idle_heartbeat = if c.flow_control { 1_000_000_000 } else { 0 };
    }
    c.max_ack_pending = c.max_ack_pending.clamp(0, 100);
    c.inactive_threshold = c.inactive_threshold.clamp(0, 10_000_000_000);
    c.num_replicas = c.num_replicas.clamp(0, 1);
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn stream_configs_round_trip_and_validate_to_themselves(config in stream_config()) {
        let json = config.to_json();
        prop_assert_eq!(StreamConfig::from_json(json.as_bytes()), Ok(config.clone()), "{}", json);
        if let Ok(valid) = config.validate_for_create() {
            let json = valid.to_json();
            prop_assert_eq!(StreamConfig::from_json(json.as_bytes()), Ok(valid.clone()), "{}", json);
            prop_assert_eq!(valid.validate_for_create(), Ok(valid.clone()));
            prop_assert_eq!(StreamConfig::check_update(&valid, &valid), Ok(valid.clone()));
            prop_assert!((1..=5).contains(&valid.num_replicas));
            prop_assert!(valid.duplicate_window > 0);
            prop_assert!(!valid.subjects.is_empty());
        }
    }

    #[test]
    fn consumer_configs_round_trip_and_validate_to_themselves(
        config in consumer_config(),
        workqueue in any::<bool>(),
        plausible in any::<bool>(),
    ) {
        let config = if plausible { make_plausible(config) } else { config };
        let json = config.to_json();
        prop_assert_eq!(ConsumerConfig::from_json(json.as_bytes()), Ok(config.clone()), "{}", json);
        let retention = if workqueue { RetentionPolicy::WorkQueue } else { RetentionPolicy::Limits };
        let stream = stream(retention);
        if let Ok(valid) = config.validate_and_default(&stream) {
            let json = valid.to_json();
            prop_assert_eq!(ConsumerConfig::from_json(json.as_bytes()), Ok(valid.clone()), "{}", json);
            prop_assert_eq!(valid.validate_and_default(&stream), Ok(valid.clone()));
            prop_assert_eq!(ConsumerConfig::check_update(&valid, &valid), Ok(()));
            prop_assert!(valid.ack_wait >= 0);
            prop_assert!(valid.backoff.iter().all(|&step| step >= 0));
        }
        // The same config in a create request, on the subject that names it.
        let req = CreateConsumerRequest { stream_name: "S".into(), config, ..Default::default() };
        let body = serde_json::to_vec(&req).expect("a request serialises");
        prop_assert_eq!(CreateConsumerRequest::from_json(&body), Ok(req));
    }
}
