//! Group commit: concurrent commits share write batches and fsyncs.

mod common;

use std::time::Duration;

use common::append;
use natrix_store::{Store, StoreOptions, SyncPolicy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_commits_share_far_fewer_fsyncs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreOptions::default())?;
    let commits: Vec<_> = (1..=200u64)
        .map(|id| tokio::spawn(store.commit(append(id, 1..=1))))
        .collect();
    for c in futures::future::join_all(commits).await {
        c??;
    }
    let stats = store.stats();
    println!("{stats:?}");
    assert_eq!(stats.commits, 200);
    // Each fsync covers every group written before it began (groups written while an fsync
    // runs share the next one), so there is at least one and never more than one per group.
    assert!(
        stats.syncs >= 1 && stats.syncs <= stats.groups,
        "SyncPolicy::Always syncs before answering: {stats:?}"
    );
    assert!(
        stats.groups < 200 / 4,
        "groups {} for 200 commits",
        stats.groups
    );
    for id in 1..=200 {
        assert_eq!(store.applied(id)?, Some(1));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_one_at_a_time_each_get_their_own_fsync() -> anyhow::Result<()> {
    // Nothing queued behind each and the syncer idle: the writer writes each with its fsync and
    // answers it itself (no hand-off to the syncer), still one fsync per commit, before the
    // answer.
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreOptions::default())?;
    for seq in 1..=50u64 {
        store.commit(append(1, seq..=seq)).await?;
        let stats = store.stats();
        assert_eq!((stats.commits, stats.groups, stats.syncs), (seq, seq, seq));
    }
    assert_eq!(store.applied(1)?, Some(50));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_queue_applies_backpressure_without_losing_commits() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let options = StoreOptions {
        queue_capacity: 4,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options)?;
    let commits: Vec<_> = (1..=64u64)
        .map(|id| tokio::spawn(store.commit(append(id, 1..=2))))
        .collect();
    for c in futures::future::join_all(commits).await {
        c??;
    }
    let stats = store.stats();
    assert_eq!(stats.commits, 64);
    assert!(
        stats.groups >= 64 / 4,
        "a group never exceeds the queue: {stats:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_sync_acknowledges_before_fsync_and_syncs_periodically() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let options = StoreOptions {
        sync: SyncPolicy::Interval(Duration::from_millis(20)),
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options)?;
    for seq in 1..=50 {
        store.commit(append(1, seq..=seq)).await?;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = store.stats();
    assert_eq!(stats.commits, 50);
    assert!(stats.syncs >= 1, "{stats:?}");
    assert!(stats.syncs < 50, "{stats:?}");
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default())?;
    assert_eq!(store.applied(1)?, Some(50));
    Ok(())
}
