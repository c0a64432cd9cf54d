//! Durable state machines over real gRPC on loopback, each node with its own RocksDB: a machine
//! that stores its effects and openraft's applied state in one commit restarts from them, is not
//! fed again the entries they cover (and its group stores no committed id beside it), and
//! persists a received snapshot's applied state with the snapshot's data. Every wait is bounded.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::{Machine, TestCluster, TransferGate, expected, expected_runs, test_config};

const WAIT: Duration = Duration::from_secs(15);

/// `(seq, command)` for commands `commands`, numbered from 1.
fn numbered(commands: &[String]) -> Vec<(u64, String)> {
    (1..).zip(commands.iter().cloned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_durable_machine_is_not_replayed() -> Result<()> {
    let mut cluster = TestCluster::start(3).await?;
    cluster.start_durable_group(1, test_config(None)).await?;
    let last = cluster.write(1, "one", 30).await?;
    cluster.wait_applied(1, last, WAIT).await?;
    let before = expected("one", 30);
    for node in &cluster.nodes {
        assert_eq!(
            node.stored_commands(1)?,
            numbered(&before),
            "node {}",
            node.id
        );
        let stored = node.stored_applied(1)?.context("a stored applied state")?;
        assert!(
            stored.last_applied_index() >= Some(last),
            "node {}: stored {:?}, applied {last}",
            node.id,
            stored.last_applied()
        );
        assert_eq!(
            stored.membership().voter_ids().count(),
            3,
            "the membership is stored with the position"
        );
        assert!(
            !node.stores_committed(1)?,
            "node {}: a machine that stores its position needs no committed id",
            node.id
        );
    }

    // Restart the whole group: every node starts from what its own store holds.
    cluster.stop_all().await;
    let mut persisted = HashMap::new();
    for node in &mut cluster.nodes {
        node.restart().await?;
        let stored = node.stored_applied(1)?.context("a stored applied state")?;
        let index = stored.last_applied_index().context("an applied index")?;
        persisted.insert(node.id, index);
        node.start_durable_group(1, test_config(None)).await?;
        assert_eq!(
            node.count(1),
            30,
            "node {}: state read from the store",
            node.id
        );
    }

    let last = cluster.write(1, "two", 10).await?;
    cluster.wait_applied(1, last, WAIT).await?;
    let all = expected_runs(&[("one", 30), ("two", 10)]);
    for node in &cluster.nodes {
        let id = node.id;
        let calls = node.applied(1);
        let floor = persisted[&id];
        ensure!(
            calls.iter().all(|(index, _)| *index > floor),
            "node {id} re-applied entries at or below its persisted index {floor}: {:?}",
            calls.iter().map(|(i, _)| *i).collect::<Vec<_>>()
        );
        let commands: Vec<String> = calls
            .iter()
            .map(|(_, c)| String::from_utf8_lossy(c).into_owned())
            .collect();
        assert_eq!(
            commands,
            expected("two", 10),
            "node {id}: only the new commands"
        );
        assert_eq!(
            node.stored_commands(1)?,
            numbered(&all),
            "node {id}: stored once each"
        );
        assert_eq!(node.count(1), 40, "node {id}");
        let stored = node.stored_applied(1)?.context("a stored applied state")?;
        assert!(stored.last_applied_index() >= Some(last), "node {id}");
    }
    cluster.stop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_snapshot_persists_applied_state() -> Result<()> {
    let config = test_config(Some(20));
    let mut cluster = TestCluster::start(3).await?;
    let (_, follower) = cluster
        .leave_a_follower_behind_a_purge(1, config.clone(), Machine::Counter)
        .await?;

    // The lagging follower can only catch up from a snapshot.
    let node = cluster.node(follower);
    node.restart().await?;
    let raft = node.start_durable_group(1, config.clone()).await?;
    let m = raft
        .wait(Some(WAIT))
        .metrics(|m| m.snapshot.is_some(), "follower installs a snapshot")
        .await?;
    let snapshot = m.snapshot.context("a snapshot")?.index;
    let node = cluster.node(follower);
    let calls: Vec<u64> = node.applied(1).iter().map(|(i, _)| *i).collect();
    ensure!(
        calls.iter().all(|i| *i > snapshot),
        "entries up to the snapshot ({snapshot}) came by the snapshot, not by apply: {calls:?}"
    );
    let stored = node.stored_applied(1)?.context("a stored applied state")?;
    assert!(
        stored.last_applied_index() >= Some(snapshot),
        "the snapshot's applied state was stored: {:?} vs snapshot {snapshot}",
        stored.last_applied()
    );
    assert_eq!(stored.membership().voter_ids().count(), 3);

    let last = cluster.write(1, "later", 5).await?;
    cluster.wait_applied(1, last, WAIT).await?;
    let mut all = expected_runs(&[("missed", 100), ("later", 5)]);
    for node in &cluster.nodes {
        assert_eq!(node.stored_commands(1)?, numbered(&all), "node {}", node.id);
        assert_eq!(node.count(1), 105, "node {}", node.id);
    }

    // Restarted again, the follower starts from its own stored state: nothing is installed or
    // replayed.
    let node = cluster.node(follower);
    node.stop().await?;
    node.restart().await?;
    let persisted = node
        .stored_applied(1)?
        .and_then(|s| s.last_applied_index())
        .context("a stored applied index")?;
    node.start_durable_group(1, config).await?;
    assert_eq!(node.count(1), 105, "state read from the store");
    let last = cluster.write(1, "again", 3).await?;
    cluster.wait_applied(1, last, WAIT).await?;
    let node = cluster.node(follower);
    let calls = node.applied(1);
    ensure!(
        calls.iter().all(|(i, _)| *i > persisted),
        "re-applied at or below {persisted}: {calls:?}"
    );
    all.extend(expected("again", 3));
    for node in &cluster.nodes {
        assert_eq!(node.stored_commands(1)?, numbered(&all), "node {}", node.id);
    }
    cluster.stop_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_goes_on_applying_while_a_followers_snapshot_is_read() -> Result<()> {
    let config = test_config(Some(20));
    let mut cluster = TestCluster::start(3).await?;
    let gate = TransferGate::default();
    for node in &mut cluster.nodes {
        node.transfer_gate = Some(gate.clone());
    }
    let (leader, follower) = cluster
        .leave_a_follower_behind_a_purge(1, config.clone(), Machine::Counter)
        .await?;
    let node = cluster.node(follower);
    node.restart().await?;
    node.start_durable_group(1, config).await?;

    // The leader asks its machine for a snapshot to send; the machine holds the read back.
    let deadline = std::time::Instant::now() + WAIT;
    while gate.asked() == 0 {
        ensure!(
            std::time::Instant::now() < deadline,
            "the leader never asked for a snapshot to send"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Meanwhile writes are committed and applied (a write returns once the leader applied it).
    tokio::time::timeout(WAIT, cluster.write(1, "during", 5))
        .await
        .context("writes while a snapshot is being read")??;
    let other = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != leader && *id != follower)
        .context("a third node")?;
    assert_eq!(cluster.node(leader).count(1), 105, "the leader applied on");
    ensure!(
        cluster.node(follower).count(1) < 100,
        "the follower cannot have the snapshot yet: {}",
        cluster.node(follower).count(1)
    );

    // Once read, the snapshot gets the follower there too.
    gate.open();
    let last = cluster.write(1, "after", 1).await?;
    cluster.wait_applied(1, last, WAIT).await?;
    let all = expected_runs(&[("missed", 100), ("during", 5), ("after", 1)]);
    for id in [leader, other, follower] {
        let node = cluster.node(id);
        assert_eq!(node.stored_commands(1)?, numbered(&all), "node {id}");
        assert_eq!(node.count(1), 106, "node {id}");
    }
    cluster.stop_all().await;
    Ok(())
}
