//! Group-commit throughput: commits/s and fsyncs/s with 1, 16 and 256 concurrent committers, each
//! committing one 128-byte message per batch to its own stream (`SyncPolicy::Always`).
//!
//! `cargo run --release -p natrix-store --example commit_bench -- [seconds per run]`
//! The store lives in a temporary directory under `$NATRIX_BENCH_DIR` (default: `target/`), not
//! `/tmp`, which may be a tmpfs where fsync costs nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use natrix_store::{Store, StoreOp, StoreOptions, StoredMsg, StreamBatch};

fn main() -> anyhow::Result<()> {
    let secs: u64 = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 3,
    };
    let parent = std::env::var("NATRIX_BENCH_DIR").unwrap_or_else(|_| "target".to_owned());
    std::fs::create_dir_all(&parent)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!("concurrency  commits/s  fsyncs/s  commits/fsync  p50 µs  p99 µs");
    for concurrency in [1u64, 16, 256] {
        let dir = tempfile::tempdir_in(&parent)?;
        let store = Arc::new(Store::open(dir.path(), StoreOptions::default())?);
        let run = Duration::from_secs(secs);
        let (elapsed, mut latencies) = rt.block_on(run_committers(&store, concurrency, run))?;
        let stats = store.stats();
        latencies.sort_unstable();
        let pct = |p: f64| {
            let i = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
            latencies.get(i).copied().unwrap_or(0)
        };
        let s = elapsed.as_secs_f64();
        println!(
            "{concurrency:>11}  {:>9.0}  {:>8.0}  {:>13.1}  {:>6}  {:>6}",
            stats.commits as f64 / s,
            stats.syncs as f64 / s,
            stats.commits as f64 / stats.syncs.max(1) as f64,
            pct(0.50),
            pct(0.99),
        );
    }
    Ok(())
}

/// Runs `concurrency` tasks committing back to back for `run`; returns the elapsed time and every
/// commit's latency in microseconds.
async fn run_committers(
    store: &Arc<Store>,
    concurrency: u64,
    run: Duration,
) -> anyhow::Result<(Duration, Vec<u64>)> {
    let payload = Bytes::from(vec![b'x'; 128]);
    let start = Instant::now();
    let deadline = start + run;
    let mut tasks = tokio::task::JoinSet::new();
    for stream_id in 1..=concurrency {
        let store = Arc::clone(store);
        let payload = payload.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut seq = 0;
            while Instant::now() < deadline {
                seq += 1;
                let msg = StoredMsg {
                    seq,
                    timestamp_ns: 0,
                    subject: Bytes::from_static(b"bench.commit"),
                    headers: None,
                    payload: payload.clone(),
                };
                let batch = StreamBatch {
                    stream_id,
                    ops: vec![StoreOp::Append(msg)],
                    applied: seq,
                    position: None,
                    consumer_updates: Vec::new(),
                };
                let t = Instant::now();
                store.commit(batch).await?;
                latencies.push(t.elapsed().as_micros() as u64);
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(task) = tasks.join_next().await {
        all.extend(task??);
    }
    Ok((start.elapsed(), all))
}
