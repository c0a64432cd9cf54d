//! Leadership transfer over real gRPC on loopback (`RaftHost::transfer_leadership`, openraft's
//! `TransferLeader`): to a chosen follower and back, to the most up-to-date follower, and the requests
//! that are refused. Every wait is bounded.

use crate::common;
use natrix_raft::WatchReceiver;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{TestCluster, expected_runs, test_config};
use natrix_raft::TransferLeadershipError;

const WAIT: Duration = Duration::from_secs(15);

fn followers(cluster: &TestCluster, leader: u64) -> Vec<u64> {
    cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id != leader)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_transfers_to_a_chosen_follower() -> Result<()> {
    let mut cluster = TestCluster::start(3).await?;
    cluster.start_group(1, test_config(None)).await?;
    let leader = cluster.leader(1, WAIT).await?;
    let last = cluster.write(1, "before", 10).await?;
    cluster.wait_applied(1, last, WAIT).await?;
    // The follower a "most up to date, lowest id" choice would not pick.
    let target = *followers(&cluster, leader).last().context("a follower")?;

    // Refusals first: not the leader, not a voter, to itself.
    let err = cluster
        .node(target)
        .host()
        .transfer_leadership(1, Some(leader))
        .await
        .expect_err("a follower cannot transfer");
    assert!(
        matches!(err, TransferLeadershipError::NotLeader { leader: Some(l), .. } if l == leader),
        "{err}"
    );
    let host = cluster.node(leader).host().clone();
    for bad in [99, leader] {
        let err = host
            .transfer_leadership(1, Some(bad))
            .await
            .expect_err("not another voter");
        assert!(
            matches!(err, TransferLeadershipError::NotAVoter { target, .. } if target == bad),
            "{err}"
        );
    }
    assert!(matches!(
        host.transfer_leadership(2, None).await,
        Err(TransferLeadershipError::NotRunning(2))
    ));
    assert_eq!(
        cluster.leader(1, WAIT).await?,
        leader,
        "refusals change nothing"
    );

    let new = host.transfer_leadership(1, Some(target)).await?;
    assert_eq!(new, target);
    assert_eq!(cluster.leader(1, WAIT).await?, target);
    let last = cluster.write(1, "after", 10).await?;
    cluster.wait_applied(1, last, WAIT).await?;

    // And back: the old leader leads again with its heartbeats on, so it keeps the lead well
    // past an election timeout.
    let back = cluster
        .node(target)
        .host()
        .transfer_leadership(1, Some(leader))
        .await?;
    assert_eq!(back, leader);
    tokio::time::sleep(Duration::from_millis(
        3 * test_config(None).election_timeout_max,
    ))
    .await;
    assert_eq!(cluster.leader(1, WAIT).await?, leader, "the lead holds");
    let term = cluster
        .node(leader)
        .group(1)
        .context("group")?
        .metrics()
        .borrow_watched()
        .current_term;
    let last = cluster.write(1, "back", 10).await?;
    cluster.wait_applied(1, last, WAIT).await?;
    let after = cluster
        .node(leader)
        .group(1)
        .context("group")?
        .metrics()
        .borrow_watched()
        .current_term;
    assert_eq!(term, after, "no election while writing");

    let want = expected_runs(&[("before", 10), ("after", 10), ("back", 10)]);
    for id in 1..=3 {
        assert_eq!(cluster.commands(id, 1), want, "node {id}");
    }
    cluster.stop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_transfers_to_the_most_up_to_date_follower() -> Result<()> {
    let mut cluster = TestCluster::start(3).await?;
    cluster.start_group(1, test_config(None)).await?;
    let leader = cluster.leader(1, WAIT).await?;
    let followers = followers(&cluster, leader);
    let (behind, ahead) = (followers[0], followers[1]);
    // The lower id (which wins ties) falls behind.
    cluster.node(behind).stop().await?;
    let last = cluster.write(1, "without", 20).await?;
    cluster.wait_applied(1, last, WAIT).await?;

    let host = cluster.node(leader).host().clone();
    let new = host.transfer_leadership(1, None).await?;
    assert_eq!(new, ahead, "the follower holding the whole log leads");
    assert_eq!(cluster.leader(1, WAIT).await?, ahead);

    // The stopped follower comes back and catches up from the new leader.
    let node = cluster.node(behind);
    node.restart().await?;
    node.start_group(1, test_config(None)).await?;
    let last = cluster.write(1, "with", 5).await?;
    cluster.wait_applied(1, last, WAIT).await?;
    let want = expected_runs(&[("without", 20), ("with", 5)]);
    for id in 1..=3 {
        assert_eq!(cluster.commands(id, 1), want, "node {id}");
    }
    cluster.stop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_voter_has_nobody_to_hand_leadership_to() -> Result<()> {
    let mut cluster = TestCluster::start(1).await?;
    cluster.start_group(1, test_config(None)).await?;
    cluster.leader(1, WAIT).await?;
    let err = cluster
        .node(1)
        .host()
        .transfer_leadership(1, None)
        .await
        .expect_err("no other voter");
    assert!(
        matches!(err, TransferLeadershipError::NoOtherVoter { group_id: 1 }),
        "{err}"
    );
    cluster.stop_all().await;
    Ok(())
}
