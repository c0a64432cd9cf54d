use super::*;

fn limits() -> AccountLimits {
    AccountLimits {
        max_memory: 512 * 1024,
        max_storage: 1024 * 1024,
        max_streams: 2,
        max_consumers: 2,
        max_ack_pending: 100,
        ..AccountLimits::default()
    }
}

fn stream(name: &str, max_bytes: i64) -> StreamConfig {
    StreamConfig {
        max_bytes,
        max_consumers: -1,
        num_replicas: 1,
        ..StreamConfig::named(name, &[name])
    }
}

fn err_code(result: Result<(), ApiError>) -> u16 {
    result.map_or_else(|e| e.err_code, |()| 0)
}

#[test]
fn default_limits_serialise_as_nats_server_reports_an_unlimited_account() {
    let json = serde_json::to_string(&AccountLimits::default()).unwrap_or_default();
    assert_eq!(
        json,
        r#"{"max_memory":-1,"max_storage":-1,"max_streams":-1,"max_consumers":-1,"max_ack_pending":-1,"memory_max_stream_bytes":-1,"storage_max_stream_bytes":-1,"max_bytes_required":false}"#
    );
}

#[test]
fn the_stream_count_is_checked_first_and_only_on_create() {
    let limits = AccountLimits {
        max_bytes_required: true,
        ..limits()
    };
    let (a, b) = (stream("A", 10), stream("B", 10));
    // A full account refuses a new stream with 10027 even when its config breaks other rules.
    assert_eq!(
        err_code(limits.check_stream(&stream("C", -1), [&a, &b], true)),
        10027
    );
    assert_eq!(
        err_code(limits.check_stream(&stream("C", 10), [&a], true)),
        0
    );
    // An update of one of the two is not a new stream.
    assert_eq!(
        err_code(limits.check_stream(&stream("B", 20), [&a], false)),
        0
    );
}

#[test]
fn stream_byte_rules_follow_nats_server_order() {
    let limits = AccountLimits {
        max_bytes_required: true,
        storage_max_stream_bytes: 300_000,
        memory_max_stream_bytes: 200_000,
        max_streams: -1,
        ..limits()
    };
    assert_eq!(
        err_code(limits.check_stream(&stream("S", -1), [], true)),
        10113
    );
    assert_eq!(
        err_code(limits.check_stream(&stream("S", 400_000), [], true)),
        10122
    );
    let too_many_consumers = StreamConfig {
        max_consumers: 5,
        ..stream("S", 300_000)
    };
    assert_eq!(
        err_code(limits.check_stream(&too_many_consumers, [], true)),
        10026
    );
    assert_eq!(
        err_code(limits.check_stream(&stream("S", 300_000), [], true)),
        0
    );
    let memory = StreamConfig {
        storage: StorageType::Memory,
        ..stream("M", 250_000)
    };
    assert_eq!(err_code(limits.check_stream(&memory, [], true)), 10122);
}

#[test]
fn reservations_of_one_storage_type_must_fit_its_limit() {
    let limits = AccountLimits {
        max_streams: -1,
        ..limits()
    };
    let big = stream("BIG", 900_000);
    assert_eq!(
        err_code(limits.check_stream(&stream("S", 2_000_000), [], true)),
        10047
    );
    assert_eq!(
        err_code(limits.check_stream(&stream("S", 600_000), [&big], true)),
        10047
    );
    assert_eq!(
        err_code(limits.check_stream(&stream("S", 100_000), [&big], true)),
        0
    );
    // A stream without max_bytes reserves nothing of its own, so it still fits.
    assert_eq!(
        err_code(limits.check_stream(&stream("S", -1), [&big], true)),
        0
    );
    // Memory streams do not count against file storage.
    let memory = StreamConfig {
        storage: StorageType::Memory,
        ..stream("M", 600_000)
    };
    assert_eq!(err_code(limits.check_stream(&memory, [&big], true)), 10028);
    // Each replica reserves max_bytes.
    let replicated = StreamConfig {
        num_replicas: 3,
        ..stream("R", 400_000)
    };
    assert_eq!(err_code(limits.check_stream(&replicated, [], true)), 10047);
}

#[test]
fn unlimited_account_accepts_any_stream() {
    let huge = stream("S", i64::MAX);
    let others: Vec<StreamConfig> = (0..100)
        .map(|i| stream(&format!("S{i}"), i64::MAX))
        .collect();
    assert_eq!(
        err_code(AccountLimits::default().check_stream(&huge, &others, true)),
        0
    );
}

#[test]
fn consumer_cap_is_the_smaller_of_stream_and_account() {
    let limits = limits();
    assert_eq!(limits.max_consumers_for(&stream("S", -1)), 2);
    let own = StreamConfig {
        max_consumers: 1,
        ..stream("S", -1)
    };
    assert_eq!(limits.max_consumers_for(&own), 1);
    let larger = StreamConfig {
        max_consumers: 5,
        ..stream("S", -1)
    };
    assert_eq!(limits.max_consumers_for(&larger), 2);
    assert_eq!(AccountLimits::default().max_consumers_for(&larger), 5);
    assert_eq!(
        AccountLimits::default().max_consumers_for(&stream("S", -1)),
        -1
    );
}

#[test]
fn account_max_ack_pending_caps_and_defaults_consumers() {
    use crate::{AckPolicy, ConsumerConfig};
    let limits = limits();
    let base = stream("S", -1);
    let view = limits.consumer_view(&base);
    let defaulted = ConsumerConfig {
        durable_name: "c1".into(),
        ack_policy: AckPolicy::Explicit,
        ..ConsumerConfig::default()
    }
    .validate_and_default(&view);
    assert_eq!(defaulted.map(|c| c.max_ack_pending).ok(), Some(100));
    let excess = ConsumerConfig {
        durable_name: "c2".into(),
        ack_policy: AckPolicy::Explicit,
        max_ack_pending: 500,
        ..ConsumerConfig::default()
    }
    .validate_and_default(&view);
    assert_eq!(
        excess.err().map(|e| e.description),
        Some("consumer max ack pending exceeds system limit of 100".to_string())
    );
    // A smaller limit of the stream's own wins.
    let mut own = base.clone();
    own.consumer_limits.max_ack_pending = 10;
    assert_eq!(
        limits.consumer_view(&own).consumer_limits.max_ack_pending,
        10
    );
}

#[test]
fn usage_beyond_the_account_limit_is_refused_with_10002() {
    let limits = limits();
    assert_eq!(
        err_code(limits.check_usage(StorageType::File, 1_000_000, 48_576)),
        0
    );
    assert_eq!(
        err_code(limits.check_usage(StorageType::File, 1_000_000, 48_577)),
        10002
    );
    assert_eq!(
        err_code(limits.check_usage(StorageType::Memory, 524_288, 1)),
        10002
    );
    assert_eq!(
        err_code(AccountLimits::default().check_usage(StorageType::File, u64::MAX, 1)),
        0
    );
}
