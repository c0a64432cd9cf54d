//! Placement: the rules and nats-server's error texts (each checked against a running
//! 2.15.1 cluster), then properties over random clusters and requests.

use std::collections::{BTreeMap, BTreeSet};

use natrix_stream::{Placement, StreamConfig};
use proptest::prelude::*;

use super::*;

fn node(id: NodeId, tags: &[&str]) -> PeerInfo {
    PeerInfo {
        node_id: id,
        name: format!("n{id}"),
        cluster_addr: format!("127.0.0.1:{}", 6222 + id),
        client_urls: vec![format!("nats://127.0.0.1:{}", 4222 + id)],
        tags: tags.iter().map(|t| t.to_string()).collect(),
        cluster: "C1".to_string(),
        offline: false,
    }
}

/// Three nodes as in the reference cluster: `az:z<i>`, `ssd`, `node:<i>`.
fn three_nodes() -> Vec<PeerInfo> {
    (0..3)
        .map(|i| {
            let az = format!("az:z{i}");
            let n = format!("node:{i}");
            node(i, &[az.as_str(), "ssd", n.as_str()])
        })
        .collect()
}

fn request(replicas: u32, tags: &[&str]) -> PlacementRequest {
    PlacementRequest {
        replicas,
        placement: (!tags.is_empty()).then(|| Placement {
            cluster: String::new(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }),
        cluster: "C1".to_string(),
        ..PlacementRequest::default()
    }
}

fn error_text(result: Result<Vec<NodeId>, PlacementError>) -> String {
    let err = result.expect_err("placement should fail").to_api_error();
    assert_eq!((err.code, err.err_code), (400, 10005));
    err.description
}

#[test]
fn replicas_go_to_the_least_loaded_nodes_first() {
    let mut req = request(2, &[]);
    req.load = BTreeMap::from([(0, 4), (1, 1), (2, 2)]);
    assert_eq!(place(&three_nodes(), &req), Ok(vec![1, 2]));
}

#[test]
fn equal_load_is_broken_by_node_id_whatever_the_candidate_order() {
    let mut nodes = three_nodes();
    nodes.reverse();
    assert_eq!(place(&nodes, &request(3, &[])), Ok(vec![0, 1, 2]));
    assert_eq!(place(&nodes, &request(1, &[])), Ok(vec![0]));
}

#[test]
fn zero_replicas_means_one_as_in_nats_server() {
    assert_eq!(place(&three_nodes(), &request(0, &[])), Ok(vec![0]));
}

#[test]
fn more_replicas_than_nodes_finds_no_suitable_peers() {
    // nats-server 2.15.1 and 2.9.10, R4 and R5 on three nodes: the bare text.
    let text = error_text(place(&three_nodes(), &request(5, &[])));
    assert_eq!(text, "no suitable peers for placement");
}

#[test]
fn more_than_five_replicas_is_refused_as_nats_server_refuses_the_config() {
    let err = place(&three_nodes(), &request(6, &[])).expect_err("R6");
    let api = err.to_api_error();
    assert_eq!((api.code, api.err_code), (500, 10052));
    assert_eq!(api.description, "maximum replicas is 5");
}

#[test]
fn requests_are_built_from_the_stream_config() {
    let mut config = StreamConfig::named("ORDERS", &["orders.>"]);
    config.num_replicas = 3;
    config.placement = Some(Placement {
        cluster: "C1".to_string(),
        tags: vec!["ssd".to_string()],
    });
    let req = PlacementRequest::for_stream(&config, "C1").expect("valid R3");
    assert_eq!(req.replicas, 3);
    assert_eq!(req.placement, config.placement);
    assert_eq!(place(&three_nodes(), &req), Ok(vec![0, 1, 2]));

    config.num_replicas = -1;
    let err = PlacementRequest::for_stream(&config, "C1").expect_err("negative");
    assert_eq!(err.to_api_error().err_code, 10133);
    config.num_replicas = 7;
    let err = PlacementRequest::for_stream(&config, "C1").expect_err("R7");
    assert_eq!(err.to_api_error().description, "maximum replicas is 5");
}

#[test]
fn tags_match_whatever_their_case() {
    assert_eq!(place(&three_nodes(), &request(1, &["AZ:z1"])), Ok(vec![1]));
    assert_eq!(
        place(&three_nodes(), &request(3, &["SSD"])),
        Ok(vec![0, 1, 2])
    );
}

#[test]
fn a_tag_too_few_nodes_carry_is_reported_by_name() {
    let text = error_text(place(&three_nodes(), &request(2, &["az:z1"])));
    assert_eq!(
        text,
        "no suitable peers for placement, tags not matched ['az:z1']"
    );
    // The request's spelling is reported, as nats-server does.
    let text = error_text(place(&three_nodes(), &request(1, &["AZ:Q9"])));
    assert_eq!(
        text,
        "no suitable peers for placement, tags not matched ['AZ:Q9']"
    );
}

#[test]
fn only_the_first_missing_tag_of_each_node_is_reported() {
    let text = error_text(place(
        &three_nodes(),
        &request(1, &["nope", "az:z1", "zzz"]),
    ));
    assert_eq!(
        text,
        "no suitable peers for placement, tags not matched ['nope']"
    );
}

#[test]
fn excluded_tags_keep_their_nodes_out() {
    assert_eq!(
        place(&three_nodes(), &request(2, &["!az:z1"])),
        Ok(vec![0, 2])
    );
    let text = error_text(place(&three_nodes(), &request(3, &["!az:z1"])));
    assert_eq!(
        text,
        "no suitable peers for placement, tags excluded ['az:z1']"
    );
    let text = error_text(place(
        &three_nodes(),
        &request(3, &["!AZ:Z1", "!az:z2", "ssd"]),
    ));
    assert_eq!(
        text,
        "no suitable peers for placement, tags excluded ['AZ:Z1', 'az:z2']"
    );
    let text = error_text(place(&three_nodes(), &request(3, &["!az:z1", "nope"])));
    assert_eq!(
        text,
        "no suitable peers for placement, tags not matched ['nope'], tags excluded ['az:z1']"
    );
}

#[test]
fn a_placement_cluster_other_than_ours_finds_no_peers() {
    let mut req = request(1, &[]);
    req.placement = Some(Placement {
        cluster: "OTHER".to_string(),
        tags: Vec::new(),
    });
    let text = error_text(place(&three_nodes(), &req));
    assert_eq!(text, "no suitable peers for placement");
    req.placement = Some(Placement {
        cluster: "C1".to_string(),
        tags: Vec::new(),
    });
    assert_eq!(place(&three_nodes(), &req), Ok(vec![0]));
}

#[test]
fn nodes_of_another_cluster_are_never_chosen() {
    let mut nodes = three_nodes();
    nodes[0].cluster = "C2".to_string();
    assert_eq!(place(&nodes, &request(2, &[])), Ok(vec![1, 2]));
    let text = error_text(place(&nodes, &request(3, &[])));
    assert_eq!(text, "no suitable peers for placement");
}

#[test]
fn offline_nodes_receive_no_replicas() {
    let mut nodes = three_nodes();
    nodes[2].offline = true;
    assert_eq!(place(&nodes, &request(2, &[])), Ok(vec![0, 1]));
    // nats-server 2.15.1 says the same when the only matching node is down.
    let text = error_text(place(&nodes, &request(1, &["node:2"])));
    assert_eq!(
        text,
        "no suitable peers for placement, peer offline, tags not matched ['node:2']"
    );
}

#[test]
fn a_node_tagged_not_for_jetstream_is_skipped() {
    let mut nodes = three_nodes();
    nodes[0].tags.push("!jetstream".to_string());
    assert_eq!(place(&nodes, &request(2, &[])), Ok(vec![1, 2]));
    let text = error_text(place(&nodes, &request(3, &[])));
    assert_eq!(text, "no suitable peers for placement, exclude tag set");
}

#[test]
fn no_known_node_means_jetstream_is_not_clustered_yet() {
    let text = error_text(place(&[], &request(1, &[])));
    assert_eq!(
        text,
        "no suitable peers for placement, jetstream not enabled in cluster"
    );
}

#[test]
fn a_node_being_removed_gets_no_replica() {
    let mut req = request(2, &[]);
    req.exclude = BTreeSet::from([0]);
    assert_eq!(place(&three_nodes(), &req), Ok(vec![1, 2]));
}

#[test]
fn scale_up_keeps_the_current_peers_first() {
    let mut req = request(3, &[]);
    req.keep = vec![2];
    req.load = BTreeMap::from([(0, 9), (1, 0), (2, 5)]);
    assert_eq!(place(&three_nodes(), &req), Ok(vec![2, 1, 0]));
}

#[test]
fn kept_peers_stay_even_if_they_no_longer_match() {
    let mut nodes = three_nodes();
    nodes[2].offline = true;
    let mut req = request(2, &["az:z2"]);
    req.keep = vec![2];
    let text = error_text(place(&nodes, &req));
    assert_eq!(
        text,
        "no suitable peers for placement, tags not matched ['az:z2']"
    );
    let mut req = request(2, &[]);
    req.keep = vec![2];
    assert_eq!(place(&nodes, &req), Ok(vec![2, 0]));
}

#[test]
fn scale_down_keeps_the_first_peers() {
    let mut req = request(1, &[]);
    req.keep = vec![2, 0, 1];
    assert_eq!(place(&three_nodes(), &req), Ok(vec![2]));
}

#[test]
fn replacing_a_removed_peer_keeps_the_others() {
    let mut nodes = three_nodes();
    nodes.push(node(3, &["ssd"]));
    let mut req = request(3, &[]);
    req.keep = vec![0, 1, 2];
    req.exclude = BTreeSet::from([1]);
    assert_eq!(place(&nodes, &req), Ok(vec![0, 2, 3]));
}

// --- properties ---------------------------------------------------------------------------

const NODE_TAGS: [&str; 4] = ["az:1", "az:2", "ssd", "gpu"];
const REQUEST_TAGS: [&str; 6] = ["az:1", "AZ:2", "SSD", "!gpu", "!az:1", "nope"];
const CLUSTERS: [&str; 2] = ["C1", "C2"];

fn cluster_strategy() -> impl Strategy<Value = Vec<PeerInfo>> {
    proptest::collection::btree_map(
        0u64..12,
        (
            proptest::sample::subsequence(NODE_TAGS.to_vec(), 0..=NODE_TAGS.len()),
            proptest::bool::weighted(0.2),
            proptest::sample::select(CLUSTERS.to_vec()),
        ),
        0..9,
    )
    .prop_map(|nodes| {
        nodes
            .into_iter()
            .map(|(id, (tags, offline, cluster))| PeerInfo {
                offline,
                cluster: cluster.to_string(),
                ..node(id, &tags)
            })
            .collect()
    })
}

fn request_strategy() -> impl Strategy<Value = PlacementRequest> {
    (
        0u32..=6,
        proptest::option::of((
            proptest::sample::select(vec!["", "C1", "C2"]),
            proptest::sample::subsequence(REQUEST_TAGS.to_vec(), 0..=3),
        )),
        proptest::collection::btree_map(0u64..12, 0u64..4, 0..12),
        proptest::collection::btree_set(0u64..12, 0..3),
        proptest::collection::vec(0u64..12, 0..4),
    )
        .prop_map(
            |(replicas, placement, load, exclude, keep)| PlacementRequest {
                replicas,
                placement: placement.map(|(cluster, tags)| Placement {
                    cluster: cluster.to_string(),
                    tags: tags.into_iter().map(str::to_string).collect(),
                }),
                cluster: "C1".to_string(),
                load,
                exclude,
                keep,
            },
        )
}

/// The rules written the plain way: may `peer` receive a new replica?
fn suitable(peer: &PeerInfo, req: &PlacementRequest) -> bool {
    let lower: Vec<String> = peer.tags.iter().map(|t| t.to_lowercase()).collect();
    let tags_ok = req
        .placement
        .iter()
        .flat_map(|p| &p.tags)
        .all(|t| match t.strip_prefix('!') {
            Some(excluded) => !lower.contains(&excluded.to_lowercase()),
            None => lower.contains(&t.to_lowercase()),
        });
    peer.cluster == req.cluster
        && !peer.offline
        && !req.exclude.contains(&peer.node_id)
        && !lower.iter().any(|t| t == "!jetstream")
        && tags_ok
}

fn kept(req: &PlacementRequest) -> Vec<NodeId> {
    let mut kept = Vec::new();
    for id in &req.keep {
        if !req.exclude.contains(id) && !kept.contains(id) {
            kept.push(*id);
        }
    }
    kept
}

fn load_key(req: &PlacementRequest, id: NodeId) -> (u64, NodeId) {
    (req.load.get(&id).copied().unwrap_or(0), id)
}

proptest! {
    #[test]
    fn placement_returns_exactly_the_replicas_or_an_error(
        nodes in cluster_strategy(),
        req in request_strategy(),
    ) {
        let result = place(&nodes, &req);
        if req.replicas > MAX_REPLICAS {
            let is_invalid = matches!(result, Err(PlacementError::InvalidReplicas { .. }));
            prop_assert!(is_invalid);
            return Ok(());
        }
        let needed = req.replicas.max(1) as usize;
        let kept = kept(&req);
        let other_cluster = req
            .placement
            .as_ref()
            .is_some_and(|p| !p.cluster.is_empty() && p.cluster != req.cluster);
        let fresh: BTreeSet<NodeId> = nodes
            .iter()
            .filter(|p| !kept.contains(&p.node_id) && suitable(p, &req))
            .map(|p| p.node_id)
            .collect();
        let possible = !other_cluster && kept.len() + fresh.len() >= needed;
        match result {
            Ok(chosen) => {
                prop_assert!(possible);
                prop_assert_eq!(chosen.len(), needed);
                let distinct: BTreeSet<NodeId> = chosen.iter().copied().collect();
                prop_assert_eq!(distinct.len(), chosen.len(), "duplicates in {:?}", chosen);
                let prefix = kept.len().min(needed);
                prop_assert_eq!(&chosen[..prefix], &kept[..prefix]);
                for id in &chosen[prefix..] {
                    // Every newly chosen node honours tags, cluster, exclusions and liveness...
                    prop_assert!(fresh.contains(id), "{} is not suitable", id);
                    // ...and no suitable node left out is less loaded.
                    for other in fresh.iter().filter(|o| !chosen.contains(o)) {
                        prop_assert!(load_key(&req, *id) < load_key(&req, *other));
                    }
                }
            }
            Err(PlacementError::NoSuitablePeers(reasons)) => {
                prop_assert!(!possible, "placement failed although possible: {}", reasons);
                let text = reasons.to_string();
                prop_assert!(text.starts_with("no suitable peers for placement"));
            }
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn placement_does_not_depend_on_the_candidates_order(
        (nodes, shuffled) in cluster_strategy()
            .prop_flat_map(|nodes| (Just(nodes.clone()), Just(nodes).prop_shuffle())),
        req in request_strategy(),
    ) {
        let first = place(&nodes, &req);
        prop_assert_eq!(&first, &place(&nodes, &req));
        prop_assert_eq!(&first, &place(&shuffled, &req));
    }
}
