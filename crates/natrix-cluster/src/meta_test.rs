//! The meta state machine: every command and its refusals, the encodings, snapshots, and
//! properties over random command sequences (replicas agree, snapshots are faithful, refusals
//! change nothing).

use natrix_stream::{AckPolicy, ConsumerConfig, StreamConfig};
use proptest::prelude::*;

use super::*;

fn peer(id: NodeId) -> PeerInfo {
    PeerInfo {
        node_id: id,
        name: format!("n{id}"),
        cluster_addr: format!("127.0.0.1:{}", 6222 + id),
        client_urls: vec![format!("nats://127.0.0.1:{}", 4222 + id)],
        tags: vec!["arch:x86_64".to_string()],
        cluster: "C1".to_string(),
        offline: false,
    }
}

fn stream_config(name: &str, subjects: &[&str]) -> StreamConfig {
    StreamConfig::named(name, subjects)
        .validate_and_default()
        .expect("test configs are valid")
}

fn consumer_config(durable: &str, description: &str) -> ConsumerConfig {
    ConsumerConfig {
        durable_name: durable.to_string(),
        description: description.to_string(),
        ack_policy: AckPolicy::Explicit,
        ..ConsumerConfig::default()
    }
}

/// A state with nodes 1, 2 and 3.
fn three_peers() -> MetaState {
    let mut state = MetaState::new();
    for id in 1..=3 {
        ok(state.apply(&MetaCommand::AddPeer(peer(id))));
    }
    state
}

fn ok(reply: MetaReply) -> MetaReply {
    assert!(reply.error().is_none(), "refused: {reply:?}");
    reply
}

fn stream_reply(reply: MetaReply) -> StreamAssignment {
    match reply {
        MetaReply::Stream(sa) => sa,
        other => panic!("expected a stream assignment, got {other:?}"),
    }
}

fn create(state: &mut MetaState, name: &str, subjects: &[&str], peers: &[NodeId]) -> MetaReply {
    let command =
        MetaCommand::create_stream(&stream_config(name, subjects), peers.to_vec(), 1_000, 0);
    state.apply(&command)
}

/// Applies `command`, expects it refused with `err_code`, and checks nothing changed.
fn refused(state: &mut MetaState, command: MetaCommand, err_code: u16) -> ApiError {
    let before = state.clone();
    let reply = state.apply(&command);
    let err = reply.error().cloned().expect("command should be refused");
    assert_eq!(err.err_code, err_code, "{err:?}");
    assert_eq!(*state, before, "a refused command changed the state");
    err
}

// --- peers ----------------------------------------------------------------------------------

#[test]
fn add_peer_inserts_then_updates_by_id() {
    let mut state = MetaState::new();
    assert_eq!(
        state.apply(&MetaCommand::AddPeer(peer(7))),
        MetaReply::Peer(peer(7))
    );
    let mut moved = peer(7);
    moved.cluster_addr = "10.0.0.7:6222".to_string();
    state.apply(&MetaCommand::AddPeer(moved.clone()));
    assert_eq!(state.peers.len(), 1);
    assert_eq!(state.peer(7), Some(&moved));
}

#[test]
fn removing_a_peer_drops_it_from_its_streams_and_names_them() {
    let mut state = three_peers();
    ok(create(&mut state, "A", &["a"], &[1, 2, 3]));
    ok(create(&mut state, "B", &["b"], &[2]));
    ok(create(&mut state, "C", &["c"], &[3, 1]));
    let reply = state.apply(&MetaCommand::RemovePeer { node_id: 1 });
    assert_eq!(
        reply,
        MetaReply::PeerRemoved {
            peer: peer(1),
            streams: vec!["A".to_string(), "C".to_string()],
        }
    );
    assert!(state.peer(1).is_none());
    assert_eq!(
        state.stream("A").map(|sa| sa.peers.clone()),
        Some(vec![2, 3])
    );
    assert_eq!(state.stream("B").map(|sa| sa.peers.clone()), Some(vec![2]));
    assert_eq!(state.stream("C").map(|sa| sa.peers.clone()), Some(vec![3]));
}

#[test]
fn removing_or_marking_an_unknown_peer_is_refused() {
    let mut state = three_peers();
    let err = refused(&mut state, MetaCommand::RemovePeer { node_id: 9 }, 10044);
    assert_eq!(
        (err.code, err.description.as_str()),
        (400, "server is not a member of the cluster")
    );
    let offline = MetaCommand::SetPeerOffline {
        node_id: 9,
        offline: true,
    };
    refused(&mut state, offline, 10044);
}

#[test]
fn a_peer_goes_offline_and_comes_back() {
    let mut state = three_peers();
    let reply = state.apply(&MetaCommand::SetPeerOffline {
        node_id: 2,
        offline: true,
    });
    let mut down = peer(2);
    down.offline = true;
    assert_eq!(reply, MetaReply::Peer(down));
    state.apply(&MetaCommand::SetPeerOffline {
        node_id: 2,
        offline: false,
    });
    assert_eq!(state.peer(2), Some(&peer(2)));
}

// --- streams --------------------------------------------------------------------------------

#[test]
fn streams_get_group_ids_from_one_in_creation_order() {
    let mut state = three_peers();
    let a = stream_reply(ok(create(&mut state, "A", &["a"], &[1, 2, 3])));
    let b = stream_reply(ok(create(&mut state, "B", &["b"], &[2])));
    assert_eq!((a.group_id, b.group_id), (1, 2));
    assert_eq!(a.peers, vec![1, 2, 3]);
    assert_eq!(a.created_ns, 1_000);
    assert_eq!(state.next_group_id, 3);
    assert_eq!(
        state.stream_for_group(2).map(|sa| sa.name.as_str()),
        Some("B")
    );
    assert!(state.stream_for_group(META_GROUP_ID).is_none());
}

#[test]
fn the_stored_config_turns_back_into_the_stream_config() {
    let mut state = three_peers();
    let mut config = stream_config("ORDERS", &["orders.>"]);
    config.description = "<orders & more>".to_string();
    config.max_msgs = 10;
    ok(state.apply(&MetaCommand::create_stream(&config, vec![1], 5, 0)));
    let stored = state.stream("ORDERS").expect("created");
    assert_eq!(stored.stream_config(), Ok(config));
}

#[test]
fn creating_an_identical_stream_again_answers_the_existing_assignment() {
    let mut state = three_peers();
    let first = stream_reply(ok(create(&mut state, "A", &["a"], &[1, 2, 3])));
    let command = MetaCommand::create_stream(&stream_config("A", &["a"]), vec![3], 2_000, 0);
    let again = stream_reply(ok(state.apply(&command)));
    assert_eq!(again, first);
    assert_eq!(state.next_group_id, 2);
}

#[test]
fn creating_a_stream_under_a_taken_name_with_another_config_is_refused() {
    let mut state = three_peers();
    ok(create(&mut state, "A", &["a"], &[1]));
    let command = MetaCommand::create_stream(&stream_config("A", &["other"]), vec![1], 1, 0);
    let err = refused(&mut state, command, 10058);
    assert_eq!(
        err.description,
        "stream name already in use with a different configuration"
    );
}

#[test]
fn a_stream_config_must_decode_and_carry_the_streams_name() {
    let mut state = three_peers();
    let mismatch = MetaCommand::CreateStream {
        name: "A".to_string(),
        config: json_value(&stream_config("B", &["b"])),
        peers: vec![1],
        created_ns: 0,
        max_streams: 0,
    };
    refused(&mut state, mismatch, 10056);
    let garbage = MetaCommand::CreateStream {
        name: "A".to_string(),
        config: serde_json::json!({"name": "A", "retention": "sometimes"}),
        peers: vec![1],
        created_ns: 0,
        max_streams: 0,
    };
    refused(&mut state, garbage, 10025);
}

#[test]
fn streams_capturing_the_same_subjects_are_refused() {
    let mut state = three_peers();
    ok(create(&mut state, "A", &["orders.*"], &[1]));
    let command = MetaCommand::create_stream(&stream_config("B", &["orders.eu"]), vec![1], 0, 0);
    let err = refused(&mut state, command, 10065);
    assert_eq!(err.description, "subjects overlap with an existing stream");
}

#[test]
fn stream_peers_must_be_one_to_five_distinct_members() {
    let mut state = three_peers();
    let with =
        |peers: Vec<NodeId>| MetaCommand::create_stream(&stream_config("A", &["a"]), peers, 0, 0);
    let err = refused(&mut state, with(vec![]), 10005);
    assert_eq!(err.description, "no suitable peers for placement");
    refused(&mut state, with(vec![1, 1]), 10003);
    let err = refused(&mut state, with(vec![1, 9]), 10040);
    assert_eq!(err.description, "peer not a member");
    for id in 4..=6 {
        state.apply(&MetaCommand::AddPeer(peer(id)));
    }
    let err = refused(&mut state, with(vec![1, 2, 3, 4, 5, 6]), 10052);
    assert_eq!(err.description, "maximum replicas is 5");
}

#[test]
fn updating_a_stream_replaces_its_config_and_keeps_its_group() {
    let mut state = three_peers();
    ok(create(&mut state, "A", &["a"], &[1]));
    let mut config = stream_config("A", &["a", "a2"]);
    config.max_msgs = 5;
    let updated = stream_reply(ok(state.apply(&MetaCommand::update_stream(&config, None))));
    assert_eq!((updated.group_id, updated.created_ns), (1, 1_000));
    assert_eq!(updated.peers, vec![1]);
    assert_eq!(updated.stream_config(), Ok(config.clone()));
    let scaled = state.apply(&MetaCommand::update_stream(&config, Some(vec![1, 2, 3])));
    assert_eq!(stream_reply(scaled).peers, vec![1, 2, 3]);
}

#[test]
fn updating_is_refused_for_missing_streams_overlaps_and_bad_peers() {
    let mut state = three_peers();
    ok(create(&mut state, "A", &["a"], &[1]));
    ok(create(&mut state, "B", &["b"], &[1]));
    let missing = MetaCommand::update_stream(&stream_config("C", &["c"]), None);
    refused(&mut state, missing, 10059);
    let overlap = MetaCommand::update_stream(&stream_config("A", &["a", "b"]), None);
    refused(&mut state, overlap, 10065);
    let bad_peers = MetaCommand::update_stream(&stream_config("A", &["a"]), Some(vec![8]));
    refused(&mut state, bad_peers, 10040);
    let renamed = MetaCommand::UpdateStream {
        name: "A".to_string(),
        config: json_value(&stream_config("B", &["b"])),
        peers: None,
    };
    refused(&mut state, renamed, 10056);
}

#[test]
fn deleting_a_stream_answers_what_it_was_and_never_reuses_its_group_id() {
    let mut state = three_peers();
    let created = stream_reply(ok(create(&mut state, "A", &["a"], &[1, 2])));
    let deleted = state.apply(&MetaCommand::DeleteStream {
        name: "A".to_string(),
    });
    assert_eq!(stream_reply(deleted), created);
    assert!(state.stream("A").is_none());
    let again = stream_reply(ok(create(&mut state, "A", &["a"], &[1])));
    assert_eq!(again.group_id, 2);
    let missing = MetaCommand::DeleteStream {
        name: "Z".to_string(),
    };
    let err = refused(&mut state, missing, 10059);
    assert_eq!(
        (err.code, err.description.as_str()),
        (404, "stream not found")
    );
}

#[test]
fn stream_peers_can_be_replaced() {
    let mut state = three_peers();
    ok(create(&mut state, "A", &["a"], &[1, 2]));
    let set = |peers: Vec<NodeId>| MetaCommand::SetStreamPeers {
        name: "A".to_string(),
        peers,
    };
    let moved = stream_reply(ok(state.apply(&set(vec![3, 2]))));
    assert_eq!((moved.peers, moved.group_id), (vec![3, 2], 1));
    refused(&mut state, set(vec![4]), 10040);
    let missing = MetaCommand::SetStreamPeers {
        name: "Z".to_string(),
        peers: vec![1],
    };
    refused(&mut state, missing, 10059);
}

// --- consumers ------------------------------------------------------------------------------

fn consumer_reply(reply: MetaReply) -> (String, u64, ConsumerAssignment) {
    match reply {
        MetaReply::Consumer {
            stream,
            group_id,
            consumer,
        } => (stream, group_id, consumer),
        other => panic!("expected a consumer, got {other:?}"),
    }
}

#[test]
fn consumers_live_in_their_streams_group() {
    let mut state = three_peers();
    ok(create(&mut state, "A", &["a"], &[1]));
    ok(create(&mut state, "B", &["b"], &[2]));
    let config = consumer_config("worker", "");
    let command = MetaCommand::create_consumer("B", "worker", &config, 77);
    let (stream, group_id, consumer) = consumer_reply(ok(state.apply(&command)));
    assert_eq!((stream.as_str(), group_id), ("B", 2));
    assert_eq!(
        (consumer.name.as_str(), consumer.created_ns),
        ("worker", 77)
    );
    assert_eq!(consumer.consumer_config(), Ok(config));
    let stored = state.stream("B").and_then(|sa| sa.consumers.get("worker"));
    assert_eq!(stored, Some(&consumer));
}

#[test]
fn creating_a_consumer_again_is_idempotent_and_an_update_keeps_its_creation_time() {
    let mut state = three_peers();
    ok(create(&mut state, "A", &["a"], &[1]));
    let first = MetaCommand::create_consumer("A", "w", &consumer_config("w", ""), 10);
    let (_, _, created) = consumer_reply(ok(state.apply(&first)));
    let same = MetaCommand::create_consumer("A", "w", &consumer_config("w", ""), 20);
    assert_eq!(consumer_reply(ok(state.apply(&same))).2, created);
    let changed = consumer_config("w", "now described");
    let update = MetaCommand::create_consumer("A", "w", &changed, 30);
    let (_, _, updated) = consumer_reply(ok(state.apply(&update)));
    assert_eq!(updated.created_ns, 10);
    assert_eq!(updated.consumer_config(), Ok(changed));
}

#[test]
fn consumer_commands_are_refused_without_their_stream_or_with_bad_input() {
    let mut state = three_peers();
    ok(create(&mut state, "A", &["a"], &[1]));
    let no_stream = MetaCommand::create_consumer("Z", "w", &consumer_config("w", ""), 0);
    refused(&mut state, no_stream, 10059);
    let bad_config = MetaCommand::CreateConsumer {
        stream: "A".to_string(),
        name: "w".to_string(),
        config: serde_json::json!({"ack_policy": "sometimes"}),
        created_ns: 0,
    };
    refused(&mut state, bad_config, 10025);
    let unnamed = MetaCommand::create_consumer("A", "", &consumer_config("", ""), 0);
    refused(&mut state, unnamed, 10003);
}

#[test]
fn deleting_a_consumer_answers_what_it_was() {
    let mut state = three_peers();
    ok(create(&mut state, "A", &["a"], &[1]));
    let command = MetaCommand::create_consumer("A", "w", &consumer_config("w", ""), 0);
    let (_, _, created) = consumer_reply(ok(state.apply(&command)));
    let delete = |stream: &str, name: &str| MetaCommand::DeleteConsumer {
        stream: stream.to_string(),
        name: name.to_string(),
    };
    assert_eq!(
        consumer_reply(ok(state.apply(&delete("A", "w")))).2,
        created
    );
    let err = refused(&mut state, delete("A", "w"), 10014);
    assert_eq!(
        (err.code, err.description.as_str()),
        (404, "consumer not found")
    );
    refused(&mut state, delete("Z", "w"), 10059);
}

#[test]
fn deleting_a_stream_deletes_its_consumers() {
    let mut state = three_peers();
    ok(create(&mut state, "A", &["a"], &[1]));
    let command = MetaCommand::create_consumer("A", "w", &consumer_config("w", ""), 0);
    ok(state.apply(&command));
    let deleted = stream_reply(ok(state.apply(&MetaCommand::DeleteStream {
        name: "A".to_string(),
    })));
    assert_eq!(deleted.consumers.len(), 1);
    ok(create(&mut state, "A", &["a"], &[1]));
    assert!(state.stream("A").is_some_and(|sa| sa.consumers.is_empty()));
}

// --- queries --------------------------------------------------------------------------------

#[test]
fn load_counts_replicas_per_node_including_idle_ones() {
    let mut state = three_peers();
    ok(create(&mut state, "A", &["a"], &[1, 2]));
    ok(create(&mut state, "B", &["b"], &[2]));
    assert_eq!(state.load(), BTreeMap::from([(1, 1), (2, 2), (3, 0)]));
    let on_two: Vec<&str> = state
        .streams_on(2)
        .iter()
        .map(|sa| sa.name.as_str())
        .collect();
    assert_eq!(on_two, vec!["A", "B"]);
    assert!(state.streams_on(3).is_empty());
}

#[test]
fn placement_reads_its_load_from_the_state() {
    let mut state = three_peers();
    ok(create(&mut state, "A", &["a"], &[1, 2]));
    let candidates: Vec<PeerInfo> = state.peers.values().cloned().collect();
    let request = crate::PlacementRequest {
        replicas: 2,
        cluster: "C1".to_string(),
        load: state.load(),
        ..crate::PlacementRequest::default()
    };
    assert_eq!(crate::place(&candidates, &request), Ok(vec![3, 1]));
}

// --- encodings ------------------------------------------------------------------------------

fn every_command() -> Vec<MetaCommand> {
    vec![
        MetaCommand::AddPeer(peer(1)),
        MetaCommand::RemovePeer { node_id: 1 },
        MetaCommand::SetPeerOffline {
            node_id: 2,
            offline: true,
        },
        MetaCommand::create_stream(&stream_config("A", &["a"]), vec![1, 2], -5, 0),
        MetaCommand::update_stream(&stream_config("A", &["a"]), Some(vec![u64::MAX])),
        MetaCommand::update_stream(&stream_config("A", &["a"]), None),
        MetaCommand::DeleteStream {
            name: "A".to_string(),
        },
        MetaCommand::SetStreamPeers {
            name: "A".to_string(),
            peers: vec![3],
        },
        MetaCommand::create_consumer("A", "w", &consumer_config("w", ""), i64::MIN),
        MetaCommand::DeleteConsumer {
            stream: "A".to_string(),
            name: "w".to_string(),
        },
    ]
}

#[test]
fn every_command_survives_encoding() {
    for command in every_command() {
        let bytes = encode_command(&command);
        assert_eq!(decode_command(&bytes).expect("decodes"), command);
    }
}

#[test]
fn commands_are_tagged_json_objects() {
    let bytes = encode_command(&MetaCommand::RemovePeer { node_id: 3 });
    assert_eq!(bytes, br#"{"op":"remove_peer","node_id":3}"#);
    let bytes = encode_command(&MetaCommand::AddPeer(peer(1)));
    let text = String::from_utf8(bytes).expect("JSON is UTF-8");
    assert!(
        text.starts_with(r#"{"op":"add_peer","node_id":1,"name":"n1""#),
        "{text}"
    );
}

#[test]
fn replies_survive_encoding() {
    let mut state = three_peers();
    let replies = vec![
        create(&mut state, "A", &["a"], &[1]),
        state.apply(&MetaCommand::create_consumer(
            "A",
            "w",
            &consumer_config("w", ""),
            0,
        )),
        state.apply(&MetaCommand::RemovePeer { node_id: 1 }),
        state.apply(&MetaCommand::RemovePeer { node_id: 1 }),
        state.apply(&MetaCommand::AddPeer(peer(1))),
    ];
    for reply in replies {
        assert_eq!(decode_reply(&encode_reply(&reply)).expect("decodes"), reply);
    }
}

#[test]
fn undecodable_log_entries_are_refused_alike_everywhere() {
    assert!(matches!(
        decode_command(b"{\"op\":\"launch_rockets\"}"),
        Err(MetaError::Decode {
            what: "command",
            ..
        })
    ));
    let mut state = three_peers();
    let before = state.clone();
    let reply = decode_reply(&state.apply_encoded(b"not json")).expect("reply decodes");
    assert_eq!(reply.error().map(|e| e.err_code), Some(10003));
    assert_eq!(state, before);
    let command = encode_command(&MetaCommand::RemovePeer { node_id: 3 });
    let reply = decode_reply(&state.apply_encoded(&command)).expect("reply decodes");
    assert!(matches!(reply, MetaReply::PeerRemoved { .. }));
}

// --- snapshots ------------------------------------------------------------------------------

#[test]
fn a_snapshot_installs_as_the_same_state() {
    let mut state = three_peers();
    ok(create(&mut state, "A", &["a"], &[1, 2, 3]));
    ok(create(&mut state, "B", &["b"], &[2]));
    ok(state.apply(&MetaCommand::create_consumer(
        "A",
        "w",
        &consumer_config("w", "x"),
        9,
    )));
    state.apply(&MetaCommand::SetPeerOffline {
        node_id: 3,
        offline: true,
    });
    let installed = MetaState::install(&state.snapshot()).expect("installs");
    assert_eq!(installed, state);
    assert_eq!(
        MetaState::install(&MetaState::new().snapshot()).ok(),
        Some(MetaState::new())
    );
}

#[test]
fn snapshots_of_other_versions_or_broken_ones_are_refused() {
    let state = three_peers();
    let mut value: serde_json::Value =
        serde_json::from_slice(&state.snapshot()).expect("snapshot is JSON");
    value["version"] = serde_json::json!(2);
    let bytes = serde_json::to_vec(&value).expect("re-encodes");
    assert!(matches!(
        MetaState::install(&bytes),
        Err(MetaError::UnsupportedVersion { found: 2 })
    ));
    assert!(matches!(
        MetaState::install(b"{\"version\":1}"),
        Err(MetaError::Decode {
            what: "snapshot",
            ..
        })
    ));

    let mut broken = three_peers();
    ok(create(&mut broken, "A", &["a"], &[1]));
    broken.next_group_id = 1;
    assert!(matches!(
        MetaState::install(&broken.snapshot()),
        Err(MetaError::Inconsistent(_))
    ));
    let mut misfiled = three_peers();
    if let Some(p) = misfiled.peers.get_mut(&2) {
        p.node_id = 5;
    }
    assert!(matches!(
        MetaState::install(&misfiled.snapshot()),
        Err(MetaError::Inconsistent(_))
    ));
}

// --- properties -----------------------------------------------------------------------------

const NAMES: [&str; 3] = ["A", "B", "C"];
const SUBJECTS: [&str; 6] = ["a.>", "a.b", "b.*", "c", "d", "e"];

/// Mostly valid peer sets (distinct members), sometimes anything.
fn peers_strategy() -> impl Strategy<Value = Vec<NodeId>> {
    prop_oneof![
        6 => proptest::sample::subsequence(vec![1u64, 2, 3, 4], 1..=3).prop_shuffle(),
        1 => proptest::collection::vec(1u64..6, 0..4),
    ]
}

/// Nodes 1 to 3 join, then random commands.
fn log_strategy() -> impl Strategy<Value = Vec<MetaCommand>> {
    proptest::collection::vec(command_strategy(), 0..40).prop_map(|commands| {
        (1..=3)
            .map(|id| MetaCommand::AddPeer(peer(id)))
            .chain(commands)
            .collect()
    })
}

fn command_strategy() -> impl Strategy<Value = MetaCommand> {
    let name = || proptest::sample::select(NAMES.to_vec());
    let subject = || proptest::sample::select(SUBJECTS.to_vec());
    prop_oneof![
        2 => (1u64..6, any::<bool>()).prop_map(|(id, offline)| {
            MetaCommand::AddPeer(PeerInfo { offline, ..peer(id) })
        }),
        1 => (1u64..6).prop_map(|node_id| MetaCommand::RemovePeer { node_id }),
        1 => (1u64..6, any::<bool>())
            .prop_map(|(node_id, offline)| MetaCommand::SetPeerOffline { node_id, offline }),
        4 => (name(), subject(), peers_strategy(), any::<i64>()).prop_map(
            |(name, subject, peers, ts)| {
                MetaCommand::create_stream(&stream_config(name, &[subject]), peers, ts, 0)
            }
        ),
        2 => (name(), subject(), 0i64..3, proptest::option::of(peers_strategy())).prop_map(
            |(name, subject, max_msgs, peers)| {
                let mut config = stream_config(name, &[subject]);
                config.max_msgs = max_msgs;
                MetaCommand::update_stream(&config, peers)
            }
        ),
        1 => name().prop_map(|name| MetaCommand::DeleteStream { name: name.to_string() }),
        1 => (name(), peers_strategy()).prop_map(|(name, peers)| {
            MetaCommand::SetStreamPeers { name: name.to_string(), peers }
        }),
        2 => (name(), proptest::sample::select(vec!["w", "x"]), 0u8..2, any::<i64>()).prop_map(
            |(stream, consumer, description, ts)| {
                let config = consumer_config(consumer, &"d".repeat(description.into()));
                MetaCommand::create_consumer(stream, consumer, &config, ts)
            }
        ),
        1 => (name(), proptest::sample::select(vec!["w", "x"])).prop_map(|(stream, name)| {
            MetaCommand::DeleteConsumer { stream: stream.to_string(), name: name.to_string() }
        }),
    ]
}

proptest! {
    #[test]
    fn replicas_applying_the_same_log_agree(
        commands in log_strategy(),
    ) {
        let mut one = MetaState::new();
        let mut two = MetaState::new();
        for command in &commands {
            // One replica applies the value, the other the bytes, as they travel in the log.
            let reply = one.apply(command);
            let encoded = two.apply_encoded(&encode_command(command));
            prop_assert_eq!(encode_reply(&reply), encoded);
            prop_assert_eq!(&one, &two);
            prop_assert_eq!(one.check_invariants(), Ok(()));
        }
    }

    #[test]
    fn a_snapshot_taken_anywhere_continues_identically(
        commands in log_strategy(),
        cut in any::<prop::sample::Index>(),
    ) {
        let cut = cut.index(commands.len() + 1);
        let mut whole = MetaState::new();
        for command in &commands[..cut] {
            whole.apply(command);
        }
        let installed = MetaState::install(&whole.snapshot());
        prop_assert_eq!(installed.as_ref().ok(), Some(&whole));
        let Ok(mut restored) = installed else { return Ok(()) };
        for command in &commands[cut..] {
            prop_assert_eq!(whole.apply(command), restored.apply(command));
        }
        prop_assert_eq!(whole, restored);
    }

    #[test]
    fn a_refused_command_changes_nothing(
        commands in log_strategy(),
    ) {
        let mut state = MetaState::new();
        for command in &commands {
            let before = state.clone();
            if state.apply(command).error().is_some() {
                prop_assert_eq!(&state, &before);
            }
        }
    }
}

#[test]
fn the_account_stream_limit_holds_when_the_command_applies() {
    let mut state = three_peers();
    let limited =
        |name: &str| MetaCommand::create_stream(&stream_config(name, &[name]), vec![1], 0, 2);
    ok(state.apply(&limited("A")));
    ok(state.apply(&limited("B")));
    // A create checked against an older view of the state still stops here.
    refused(&mut state, limited("C"), 10027);
    // Creating an existing stream again is not a new stream.
    ok(state.apply(&limited("A")));
    // Entries written before the limit existed decode as unlimited.
    let old = br#"{"op":"create_stream","name":"C","config":{"name":"C","subjects":["c"]},"peers":[1],"created_ns":0}"#;
    let decoded = decode_command(old);
    assert!(
        matches!(
            decoded,
            Ok(MetaCommand::CreateStream { max_streams: 0, .. })
        ),
        "{decoded:?}"
    );
}
