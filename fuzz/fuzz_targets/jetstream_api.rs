//! Arbitrary bytes as JetStream API request bodies, through the decode-and-validate path the
//! server runs (`natrix-server/src/jetstream/{stream,consumer}_api.rs` call exactly these
//! `natrix-stream` functions, in this order). The first byte `b` picks the request (`b % 8`)
//! and a variant (`b / 8`: the create subject, the stream's config); the rest is the body.
//!
//! 0 `STREAM.CREATE`, 1 `STREAM.UPDATE` (over one of five existing streams), 2 `CONSUMER.CREATE`
//! (five subject forms × three streams), 3 `CONSUMER.MSG.NEXT` pull bodies, 4 optional bodies
//! (purge), 5 ack payloads and ack subjects, 6 consumer create subjects, 7 a stream create body
//! and a consumer create body separated by a NUL byte (consumer validated against that stream).
//!
//! Checks, besides no panic: every accepted config or request decodes again from its own JSON to
//! an equal value; validation is idempotent (a validated config validates to itself, and an
//! update to itself is accepted unchanged); update rules hold (same name and storage, a sealed
//! stream stays sealed); a validated stream and consumer can be instantiated.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use natrix_stream::{
    AckKind, Command, Consumer, ConsumerConfig, CreateConsumerRequest, CreateSubject, PullRequest,
    PurgeRequest, RetentionPolicy, StorageType, Stream, StreamConfig, ack_reply_subject,
    decode_request_body, parse_ack_subject,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let variant = usize::from(selector / 8);
    match selector % 8 {
        0 => {
            stream_create(body);
        }
        1 => stream_update(variant, body),
        2 => {
            let stream = existing_stream(variant / 5, "ORDERS");
            consumer_create(&stream, variant % 5, body);
        }
        3 => pull_request(body),
        4 => purge_request(body),
        5 => ack(body),
        6 => {
            if let Some(subject) = CreateSubject::parse(&String::from_utf8_lossy(body)) {
                assert!(!subject.stream().is_empty());
            }
        }
        _ => {
            let (stream_body, consumer_body) = match body.iter().position(|&b| b == 0) {
                Some(i) => (&body[..i], &body[i + 1..]),
                None => (body, &b""[..]),
            };
            if let Some(stream) = stream_create(stream_body) {
                consumer_create(&stream, variant % 5, consumer_body);
            }
        }
    }
});

/// `STREAM.CREATE.<name>` with the body's own name (so the subject check passes).
fn stream_create(body: &[u8]) -> Option<StreamConfig> {
    let requested = StreamConfig::from_request_body(body).ok()?;
    assert_round_trips(&requested);
    let config = requested.validate_for_create().ok()?;
    assert_round_trips(&config);
    assert_eq!(
        config.validate_for_create().as_ref(),
        Ok(&config),
        "validation is not idempotent"
    );
    assert_eq!(
        StreamConfig::check_update(&config, &config).as_ref(),
        Ok(&config),
        "updating a stream to its own config changes it"
    );
    assert!((1..=5).contains(&config.num_replicas));
    assert!(config.duplicate_window > 0);
    assert!(!config.subjects.is_empty() || config.mirror.is_some() || config.sources.is_some());
    instantiate(&config);
    Some(config)
}

/// Existing streams an update or a consumer create is checked against.
fn existing_stream(variant: usize, name: &str) -> StreamConfig {
    let mut config = StreamConfig::named(name, &["orders.>", "audit"]);
    match variant % 5 {
        0 => {}
        1 => {
            config.retention = RetentionPolicy::WorkQueue;
            config.storage = StorageType::Memory;
        }
        2 => {
            config.num_replicas = 3;
            config.consumer_limits.inactive_threshold = 10_000_000_000;
            config.consumer_limits.max_ack_pending = 100;
            config.deny_delete = true;
            config.deny_purge = true;
        }
        3 => config.sealed = true,
        _ => {
            config.retention = RetentionPolicy::Interest;
            config.max_age = 3_600_000_000_000;
            config.max_msgs_per_subject = 10;
            config.discard = natrix_stream::DiscardPolicy::New;
            config.discard_new_per_subject = true;
        }
    }
    config.validate_and_default().unwrap_or(config)
}

/// `STREAM.UPDATE.<name>` over an existing stream of the body's name, in the server's order.
fn stream_update(variant: usize, body: &[u8]) {
    let Ok(requested) = StreamConfig::from_request_body(body) else {
        return;
    };
    let Ok(validated) = requested.validate_and_default() else {
        return;
    };
    let old = existing_stream(variant, &validated.name);
    let Ok(updated) = StreamConfig::check_update(&old, &requested) else {
        return;
    };
    assert_round_trips(&updated);
    assert_eq!(updated.name, old.name);
    assert_eq!(updated.storage, old.storage);
    assert!(!old.sealed || updated.sealed, "an update unsealed a stream");
    assert!(!old.deny_delete || updated.deny_delete);
    assert!(!old.deny_purge || updated.deny_purge);
    assert_eq!(
        updated.validate_and_default().as_ref(),
        Ok(&updated),
        "an accepted update does not validate to itself"
    );
    assert_eq!(
        StreamConfig::check_update(&updated, &updated).as_ref(),
        Ok(&updated),
        "updating a stream to its own config changes it"
    );
    let mut stream = Stream::new(old);
    let _ = stream.apply(Command::UpdateConfig(Box::new(requested)));
}

/// `CONSUMER.CREATE.<stream>[...]` / `CONSUMER.DURABLE.CREATE.<stream>.<durable>`, as the
/// server handles it: resolve subject and body, validate against the stream, check the action.
fn consumer_create(stream: &StreamConfig, variant: usize, body: &[u8]) {
    let name = &stream.name;
    let subject = match variant % 5 {
        0 => format!("$JS.API.CONSUMER.CREATE.{name}"),
        1 => format!("$JS.API.CONSUMER.CREATE.{name}.C1"),
        2 => format!("$JS.API.CONSUMER.CREATE.{name}.C1.orders.new"),
        3 => format!("$JS.API.CONSUMER.DURABLE.CREATE.{name}.D1"),
        _ => format!("$JS.API.CONSUMER.CREATE.{name}.C1.orders.*"),
    };
    let Some(target) = CreateSubject::parse(&subject) else {
        return;
    };
    let Ok(req) = CreateConsumerRequest::resolve(&target, body) else {
        return;
    };
    let json = serde_json::to_vec(&req).expect("a request serialises");
    assert_eq!(
        CreateConsumerRequest::from_json(&json).as_ref(),
        Ok(&req),
        "a create request does not round-trip: {}",
        String::from_utf8_lossy(&json)
    );
    let Ok(config) = req.config.validate_and_default(stream) else {
        return;
    };
    assert_eq!(
        ConsumerConfig::from_json(config.to_json().as_bytes()).as_ref(),
        Ok(&config),
        "a validated consumer config does not round-trip: {}",
        config.to_json()
    );
    assert_eq!(
        config.validate_and_default(stream).as_ref(),
        Ok(&config),
        "consumer validation is not idempotent"
    );
    assert!(req.action.check(Some(&config), &config).is_ok());
    assert!(ConsumerConfig::check_update(&config, &config).is_ok());
    let mut s = Stream::new(stream.clone());
    for (i, subject) in ["orders.new", "audit", "orders.new", "orders.old"]
        .into_iter()
        .enumerate()
    {
        let _ = s.apply(Command::Publish {
            subject: Bytes::from_static(subject.as_bytes()),
            headers: None,
            payload: Bytes::from_static(b"x"),
            timestamp_ns: (i as i64 + 1) * 1_000_000_000,
        });
    }
    let mut consumer = Consumer::new(config, 1, &s);
    let _ = consumer.next_delivery(&s, 5_000_000_000);
    let _ = consumer.num_pending(&s);
}

fn pull_request(body: &[u8]) {
    if let Ok(req) = PullRequest::from_json(body) {
        assert!(req.batch >= 1);
        assert!(req.expires_ns >= 0 && req.idle_heartbeat_ns >= 0);
        assert!(
            req.idle_heartbeat_ns == 0 || req.idle_heartbeat_ns.saturating_mul(2) <= req.expires_ns
        );
    }
}

fn purge_request(body: &[u8]) {
    if let Ok(req) = decode_request_body::<PurgeRequest>(body) {
        let json = serde_json::to_vec(&req).expect("a purge request serialises");
        assert_eq!(
            decode_request_body::<PurgeRequest>(&json).as_ref(),
            Ok(&req)
        );
    }
}

fn ack(body: &[u8]) {
    let _ = AckKind::parse(body);
    if let Some(ack) = parse_ack_subject(&String::from_utf8_lossy(body)) {
        let subject = ack_reply_subject(
            &ack.stream,
            &ack.consumer,
            ack.delivery_count,
            ack.stream_seq,
            ack.consumer_seq,
            ack.timestamp_ns,
            ack.pending,
        );
        // The 2.9 form: the domain form's domain, account hash and token are not kept.
        assert_eq!(parse_ack_subject(&subject), Some(ack));
    }
}

fn assert_round_trips(config: &StreamConfig) {
    let json = config.to_json();
    assert_eq!(
        StreamConfig::from_json(json.as_bytes()).as_ref(),
        Ok(config),
        "a stream config does not round-trip: {json}"
    );
}

/// A validated config runs a stream that takes a message and reports its state.
fn instantiate(config: &StreamConfig) {
    let mut stream = Stream::new(config.clone());
    if let Some(subject) = config.subjects.first() {
        let _ = stream.apply(Command::Publish {
            subject: Bytes::copy_from_slice(subject.as_bytes()),
            headers: None,
            payload: Bytes::from_static(b"x"),
            timestamp_ns: 1,
        });
    }
    let _ = stream.state(true, Some(">"), 0);
}
