//! Raft groups on three nodes over real gRPC on loopback, each node with its own RocksDB:
//! replication order, leader failover, restart recovery, snapshot catch-up, several groups
//! sharing one endpoint, and membership changes. Every wait is bounded.

use crate::common;
use natrix_raft::WatchReceiver;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use common::{Machine, TestCluster, expected, expected_runs, test_config};
use natrix_proto::raft as pb;
use natrix_proto::raft::raft_client::RaftClient;
use natrix_raft::LogStore;
use natrix_raft::openraft::RaftLogReader;
use natrix_raft::openraft::storage::RaftLogStorage;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_apply_writes_in_the_same_order() -> Result<()> {
    let mut cluster = TestCluster::start(3).await?;
    cluster.start_group(1, test_config(None)).await?;
    cluster.leader(1, WAIT).await?;

    let last = cluster.write(1, "a", 50).await?;
    cluster.wait_applied(1, last, WAIT).await?;
    for id in 1..=3 {
        assert_eq!(cluster.commands(id, 1), expected("a", 50), "node {id}");
    }
    for node in &cluster.nodes {
        // An in-memory machine's group stores the committed id, to re-apply up to it at start.
        assert!(node.stores_committed(1)?, "node {}", node.id);
    }
    let indexes: Vec<Vec<u64>> = (1..=3)
        .map(|id| {
            cluster.nodes[id - 1]
                .applied(1)
                .iter()
                .map(|(i, _)| *i)
                .collect()
        })
        .collect();
    assert!(
        indexes.iter().all(|i| *i == indexes[0]),
        "same log indexes everywhere"
    );
    cluster.stop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_over_when_the_leader_stops_and_writes_continue() -> Result<()> {
    let mut cluster = TestCluster::start(3).await?;
    cluster.start_group(1, test_config(None)).await?;
    let first = cluster.leader(1, WAIT).await?;
    let last = cluster.write(1, "before", 20).await?;
    cluster.wait_applied(1, last, WAIT).await?;

    cluster.node(first).stop().await?;
    let second = cluster.leader(1, WAIT).await?;
    assert_ne!(first, second, "a running node leads");

    let last = cluster.write(1, "after", 20).await?;
    cluster.wait_applied(1, last, WAIT).await?;
    let mut want = expected("before", 20);
    want.extend(expected("after", 20));
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        assert_eq!(cluster.commands(node.id, 1), want, "node {}", node.id);
    }
    cluster.stop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_recovers_its_log_and_vote_from_rocksdb_and_catches_up() -> Result<()> {
    let mut cluster = TestCluster::start(3).await?;
    cluster.start_group(1, test_config(None)).await?;
    let leader = cluster.leader(1, WAIT).await?;
    let last = cluster.write(1, "one", 30).await?;
    cluster.wait_applied(1, last, WAIT).await?;

    let follower = (1..=3).find(|id| *id != leader).context("a follower")?;
    let (vote_before, log_before) = {
        let raft = cluster.node(follower).group(1).context("group")?;
        let m = raft.metrics().borrow_watched().clone();
        (m.vote, m.last_log_index)
    };
    cluster.node(follower).stop().await?;
    let last = cluster.write(1, "two", 30).await?;

    let node = cluster.node(follower);
    node.restart().await?;
    // Straight from RocksDB, before the group runs again: the vote and the old log are there.
    let mut log = LogStore::new(node.store().context("store open")?.raft_log(1));
    let vote = log.read_vote().await?.context("a stored vote")?;
    assert!(
        vote >= vote_before,
        "vote {vote:?} recovered (was {vote_before:?})"
    );
    let state = log.get_log_state().await?;
    assert_eq!(
        state.last_log_id.map(|id| id.index),
        log_before,
        "log recovered"
    );
    node.start_group(1, test_config(None)).await?;

    cluster.wait_applied(1, last, WAIT).await?;
    let mut want = expected("one", 30);
    want.extend(expected("two", 30));
    for id in 1..=3 {
        assert_eq!(cluster.commands(id, 1), want, "node {id}");
    }
    cluster.stop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_missed_purged_entries_catches_up_from_a_snapshot() -> Result<()> {
    let config = test_config(Some(20));
    let mut cluster = TestCluster::start(3).await?;
    // The leader snapshotted and purged the entries the follower lacks.
    let (_, follower) = cluster
        .leave_a_follower_behind_a_purge(1, config.clone(), Machine::List)
        .await?;

    let node = cluster.node(follower);
    node.restart().await?;
    let raft = node.start_group(1, config.clone()).await?;
    raft.wait(Some(WAIT))
        .metrics(|m| m.snapshot.is_some(), "follower installs a snapshot")
        .await?;
    let last = cluster.write(1, "later", 5).await?;
    cluster.wait_applied(1, last, WAIT).await?;
    let mut want = expected("missed", 100);
    want.extend(expected("later", 5));
    for id in 1..=3 {
        assert_eq!(cluster.commands(id, 1), want, "node {id}");
    }

    // The snapshot is durable: restarted again, the follower starts from it, not from index 1.
    let node = cluster.node(follower);
    node.stop().await?;
    node.restart().await?;
    let raft = node.start_group(1, config).await?;
    // Restored synchronously from the stored snapshot while the group started.
    assert!(
        node.applied(1).len() >= 50,
        "restored {} commands",
        node.applied(1).len()
    );
    raft.wait(Some(WAIT))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= 60),
            "restarted follower reports its stored snapshot",
        )
        .await?;
    cluster.wait_applied(1, last, WAIT).await?;
    assert_eq!(cluster.commands(follower, 1), want);
    cluster.stop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_on_the_same_nodes_share_one_endpoint_and_stay_independent() -> Result<()> {
    let mut cluster = TestCluster::start(3).await?;
    cluster.start_group(7, test_config(None)).await?;
    cluster.start_group(8, test_config(None)).await?;
    cluster.leader(7, WAIT).await?;
    cluster.leader(8, WAIT).await?;

    let (last7, last8) =
        tokio::try_join!(cluster.write(7, "seven", 30), cluster.write(8, "eight", 10))?;
    cluster.wait_applied(7, last7, WAIT).await?;
    cluster.wait_applied(8, last8, WAIT).await?;
    for id in 1..=3 {
        assert_eq!(
            cluster.commands(id, 7),
            expected("seven", 30),
            "node {id} group 7"
        );
        assert_eq!(
            cluster.commands(id, 8),
            expected("eight", 10),
            "node {id} group 8"
        );
    }

    // Stopping group 8 on its leader leaves group 7 untouched.
    let leader8 = cluster.leader(8, WAIT).await?;
    cluster.node(leader8).host().stop_group(8).await;
    let last7 = cluster.write(7, "more", 5).await?;
    cluster.wait_applied(7, last7, WAIT).await?;
    let last8 = cluster.write(8, "more", 5).await?;
    for node in &cluster.nodes {
        if let Some(raft) = node.group(8) {
            raft.wait(Some(WAIT))
                .applied_index_at_least(Some(last8), "group 8 goes on without its old leader")
                .await?;
        }
    }
    cluster.stop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_retries_a_follower_it_cannot_reach_at_a_bounded_pace() -> Result<()> {
    let mut cluster = TestCluster::start(3).await?;
    cluster.start_group(1, test_config(None)).await?;
    let leader = cluster.leader(1, WAIT).await?;
    let follower = (1..=3).find(|id| *id != leader).context("a follower")?;
    let addr = cluster.node(follower).addr;
    cluster.node(follower).stop().await?;
    // In the follower's place, a listener that drops every connection it takes: each attempt
    // of the leader to reach the follower is one accepted connection.
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let watched = Duration::from_secs(2);
    let mut attempts = 0u32;
    let deadline = tokio::time::Instant::now() + watched;
    while let Ok(accepted) = tokio::time::timeout_at(deadline, listener.accept()).await {
        drop(accepted?);
        attempts += 1;
    }
    // Heartbeats every 50 ms and append streams paced by openraft's 200 ms backoff made 35-36
    // here; without the backoff the leader reconnected as fast as it could, 2,102 times.
    assert!(
        (1..=150).contains(&attempts),
        "{attempts} attempts to reach node {follower} in {watched:?}"
    );
    // The two others still form a quorum.
    let last = cluster.write(1, "still", 5).await?;
    cluster.wait_applied(1, last, WAIT).await?;
    cluster.stop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_a_group_the_node_does_not_run_is_refused_with_not_found() -> Result<()> {
    let mut cluster = TestCluster::start(1).await?;
    let addr = cluster.node(1).addr;
    let mut client = RaftClient::connect(format!("http://{addr}")).await?;
    let status = client
        .vote(pb::VoteRequest {
            group_id: 99,
            vote: Some(pb::Vote {
                term: 1,
                node_id: 2,
                committed: false,
            }),
            last_log_id: None,
            leadership_transfer: false,
        })
        .await
        .expect_err("no group 99 here");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(status.message().contains("99"), "{}", status.message());
    cluster.stop_all().await;
    Ok(())
}

/// A leader's append stream as a raw gRPC client sends it: requests pipelined (all sent before
/// any answer is read), answered one by one in order once stored; a conflict ends the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_stream_answers_pipelined_requests_in_order_and_refuses_bad_ones() -> Result<()> {
    let mut cluster = TestCluster::start(1).await?;
    let addr = cluster.node(1).addr;
    // Group 5 runs here uninitialized: it follows whichever leader writes to it.
    cluster.node(1).start_group(5, test_config(None)).await?;
    let mut client = RaftClient::connect(format!("http://{addr}")).await?;
    let vote = pb::Vote {
        term: 1,
        node_id: 2,
        committed: true,
    };
    let log_id = |index| pb::LogId {
        term: 1,
        node_id: 2,
        index,
    };
    let request = |group_id, index: u64| pb::AppendEntriesRequest {
        group_id,
        vote: Some(vote),
        // openraft's first log index is 0.
        prev_log_id: index.checked_sub(1).map(log_id),
        entries: vec![pb::Entry {
            log_id: Some(log_id(index)),
            payload: Some(pb::entry::Payload::Normal(format!("entry {index}").into())),
        }],
        leader_commit: None,
    };
    let open = |group: Option<&str>, requests: Vec<pb::AppendEntriesRequest>| {
        let mut call = tonic::Request::new(futures::stream::iter(requests));
        if let Some(group) = group {
            call.metadata_mut()
                .insert("natrix-raft-group", group.parse().expect("ascii"));
        }
        call
    };

    // Three requests in flight at once, then one whose previous entry the follower lacks.
    let requests = vec![request(5, 0), request(5, 1), request(5, 2), request(5, 10)];
    let mut answers = client
        .append_stream(open(Some("5"), requests))
        .await?
        .into_inner();
    for index in 0..=2 {
        let answer = answers.message().await?.context("an answer per request")?;
        assert_eq!(
            answer.result,
            Some(pb::append_stream_response::Result::Matched(pb::Matched {
                log_id: Some(log_id(index))
            })),
            "answer {index}"
        );
    }
    let answer = answers.message().await?.context("the conflict's answer")?;
    assert_eq!(
        answer.result,
        Some(pb::append_stream_response::Result::Conflict(log_id(9)))
    );
    assert!(
        answers.message().await?.is_none(),
        "a conflict ends the stream"
    );

    // Without the group's metadata, for a group not running here, for another group.
    let status = client
        .append_stream(open(None, vec![request(5, 4)]))
        .await
        .expect_err("no group named");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = client
        .append_stream(open(Some("99"), vec![request(99, 1)]))
        .await
        .expect_err("no group 99 here");
    assert_eq!(status.code(), tonic::Code::NotFound);
    let mut answers = client
        .append_stream(open(Some("5"), vec![request(6, 4)]))
        .await?
        .into_inner();
    let status = answers.message().await.expect_err("a request for group 6");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("group 6"), "{}", status.message());

    // Entries that do not follow the previous log id are refused before openraft sees them,
    // and the group goes on.
    let mut gap = request(5, 4);
    gap.prev_log_id = Some(log_id(2));
    let mut answers = client
        .append_stream(open(Some("5"), vec![gap, request(5, 3)]))
        .await?
        .into_inner();
    let status = answers.message().await.expect_err("a gap");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let mut answers = client
        .append_stream(open(Some("5"), vec![request(5, 3)]))
        .await?
        .into_inner();
    let answer = answers
        .message()
        .await?
        .context("the group still answers")?;
    assert_eq!(
        answer.result,
        Some(pb::append_stream_response::Result::Matched(pb::Matched {
            log_id: Some(log_id(3))
        }))
    );
    cluster.stop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_change_adds_a_learner_then_voter_and_removes_a_voter() -> Result<()> {
    let mut cluster = TestCluster::start(3).await?;
    cluster.start_group(1, test_config(None)).await?;
    let leader = cluster.leader(1, WAIT).await?;
    let last = cluster.write(1, "three", 10).await?;
    cluster.wait_applied(1, last, WAIT).await?;
    let raft = cluster.node(leader).group(1).context("leader group")?;

    // A fourth node joins the running group: first as a learner, which catches up.
    let fourth = cluster.add_node().await?;
    let node = cluster.node(fourth);
    node.start_group(1, test_config(None)).await?;
    let member = node.raft_node();
    raft.add_learner(fourth, member, true).await?;
    cluster.wait_applied(1, last, WAIT).await?;
    assert_eq!(cluster.commands(fourth, 1), expected("three", 10));
    let m = raft.metrics().borrow_watched().clone();
    assert_eq!(
        m.membership_config
            .membership()
            .learner_ids()
            .collect::<Vec<_>>(),
        vec![fourth]
    );

    // Then as a voter.
    raft.change_membership(BTreeSet::from([1, 2, 3, fourth]), false)
        .await?;
    let voters: BTreeSet<u64> = raft
        .metrics()
        .borrow_watched()
        .membership_config
        .voter_ids()
        .collect();
    assert_eq!(voters, BTreeSet::from([1, 2, 3, fourth]));
    let last = cluster.write(1, "four", 10).await?;
    cluster.wait_applied(1, last, WAIT).await?;
    let mut want = expected_runs(&[("three", 10), ("four", 10)]);
    for id in 1..=4 {
        assert_eq!(cluster.commands(id, 1), want, "node {id}");
    }

    // One of the original followers leaves; the other three go on committing without it.
    let removed = (1..=3).find(|id| *id != leader).context("a follower")?;
    let remaining: BTreeSet<u64> = [1, 2, 3, fourth]
        .into_iter()
        .filter(|id| *id != removed)
        .collect();
    raft.change_membership(remaining.clone(), false).await?;
    let m = raft.metrics().borrow_watched().clone();
    let voters: BTreeSet<u64> = m.membership_config.voter_ids().collect();
    assert_eq!(voters, remaining);
    assert!(
        m.membership_config
            .membership()
            .get_node(&removed)
            .is_none(),
        "the removed voter is not kept as a learner"
    );
    let last = cluster.write(1, "after", 10).await?;
    let remaining: Vec<u64> = remaining.into_iter().collect();
    cluster.wait_applied_on(&remaining, 1, last, WAIT).await?;
    want.extend(expected("after", 10));
    for id in &remaining {
        assert_eq!(cluster.commands(*id, 1), want, "node {id}");
    }
    assert!(
        !cluster
            .commands(removed, 1)
            .iter()
            .any(|c| c.starts_with("after-")),
        "the removed node gets no entries after it left"
    );
    cluster.stop_all().await;
    Ok(())
}
