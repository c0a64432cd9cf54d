//! Crash test: a child process commits batches concurrently and prints every acknowledged
//! position; the parent SIGKILLs it at a random (seeded) moment, reopens the store and checks that
//! every acknowledged batch is there, byte for byte, and that no batch is half there. Streams with
//! an even id also carry a Raft applied state in each batch, which must match the messages too.
//!
//! SIGKILL keeps the operating system's page cache, so this proves atomicity of a batch and that
//! acks come only after the write, not that the fsync reached the disk (that needs a power cut,
//! e.g. a VM killed with its disk on `cache=none`).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::msg;
use natrix_store::{ConsumerUpdate, RaftApplied, Store, StoreOp, StoreOptions, StreamBatch};

const CHILD_ENV: &str = "NATRIX_STORE_CRASH_CHILD_DIR";
const STREAMS: u64 = 16;
const PER_BATCH: u64 = 3;
/// Every 10th batch of a stream also trims it to its last `KEEP` messages.
const TRIM_EVERY: u64 = 10;
const KEEP: u64 = 50;

/// What a stream holds once batch `b` (1-based) is applied: seqs `first..=PER_BATCH*b`.
fn expected_first_seq(batches: u64) -> u64 {
    let last_trim = batches - batches % TRIM_EVERY;
    if last_trim == 0 {
        1
    } else {
        (PER_BATCH * last_trim).saturating_sub(KEEP).max(1)
    }
}

fn batch(stream_id: u64, b: u64) -> StreamBatch {
    let last = PER_BATCH * b;
    let mut ops: Vec<StoreOp> = (last - PER_BATCH + 1..=last)
        .map(|s| StoreOp::Append(msg(stream_id, s)))
        .collect();
    if b.is_multiple_of(TRIM_EVERY) {
        ops.push(StoreOp::RemoveBelow {
            seq: last.saturating_sub(KEEP).max(1),
        });
    }
    StreamBatch {
        stream_id,
        ops,
        applied: last,
        position: None,
        consumer_updates: vec![ConsumerUpdate::Put {
            name: "tracker".into(),
            state: Bytes::copy_from_slice(&last.to_be_bytes()),
        }],
    }
}

/// The Raft applied state an even stream's batch carries: its Raft group is the stream id, the
/// state its applied position.
fn raft_applied(stream_id: u64, applied: u64) -> RaftApplied {
    RaftApplied {
        group_id: stream_id,
        state: Bytes::copy_from_slice(&applied.to_be_bytes()),
    }
}

/// The child: one task per stream commits batch after batch and prints `ack <stream> <applied>`
/// as soon as each commit resolves. Exits on its own after 30 s if nobody kills it.
fn run_child(dir: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = Arc::new(Store::open(dir, StoreOptions::default())?);
        println!("ready");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut tasks = tokio::task::JoinSet::new();
        for id in 1..=STREAMS {
            let store = Arc::clone(&store);
            tasks.spawn(async move {
                let mut b = 1;
                while Instant::now() < deadline {
                    let batch = batch(id, b);
                    if id.is_multiple_of(2) {
                        let raft = raft_applied(id, batch.applied);
                        store.commit_with_raft_applied(batch, raft).await?;
                    } else {
                        store.commit(batch).await?;
                    }
                    // Rust's stdout is line-buffered: the line leaves with its newline.
                    println!("ack {id} {}", PER_BATCH * b);
                    b += 1;
                }
                anyhow::Ok(())
            });
        }
        while let Some(task) = tasks.join_next().await {
            task??;
        }
        anyhow::Ok(())
    })
}

/// Runs one child, kills it after a seeded random delay and returns the highest acknowledged
/// position per stream.
fn crash_child(dir: &std::path::Path, seed: u64) -> anyhow::Result<(u64, HashMap<u64, u64>)> {
    let child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "acknowledged_batches_survive_sigkill_whole",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut child = KillOnDrop(child);
    let stdout = child
        .0
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("child has no stdout"))?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        // Only complete lines count: a line cut by the kill was never fully printed.
        while matches!(stdout.read_line(&mut line), Ok(n) if n > 0) {
            if line.ends_with('\n') && tx.send(line.trim_end().to_owned()).is_err() {
                break;
            }
            line.clear();
        }
    });

    let started = Instant::now();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(20).saturating_sub(started.elapsed()))?;
        // libtest prints "test <name> ... " without a newline before the child's first line.
        if line.ends_with("ready") {
            break;
        }
    }
    let kill_after = fastrand::Rng::with_seed(seed).u64(10..400);
    std::thread::sleep(Duration::from_millis(kill_after));
    child.0.kill()?; // SIGKILL
    child.0.wait()?;
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("stdout reader panicked"))?;

    let mut acked = HashMap::new();
    for line in rx.try_iter() {
        let Some((_, ack)) = line.split_once("ack ") else {
            continue;
        };
        let mut words = ack.split(' ');
        let (Some(id), Some(pos)) = (words.next(), words.next()) else {
            anyhow::bail!("malformed ack line {line:?}");
        };
        let (id, pos): (u64, u64) = (id.parse()?, pos.parse()?);
        let best = acked.entry(id).or_insert(0);
        *best = pos.max(*best);
    }
    Ok((kill_after, acked))
}

/// Kills the child if the parent gives up early, so it never outlives the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn check_store(dir: &std::path::Path, acked: &HashMap<u64, u64>) -> anyhow::Result<u64> {
    let store = Store::open(dir, StoreOptions::default())?;
    let mut total = 0;
    for id in 1..=STREAMS {
        let applied = store.applied(id)?.unwrap_or(0);
        let acked = acked.get(&id).copied().unwrap_or(0);
        assert!(
            applied >= acked,
            "stream {id}: acked {acked} but applied {applied}"
        );
        assert!(
            applied.is_multiple_of(PER_BATCH),
            "stream {id}: applied {applied}"
        );
        let batches = applied / PER_BATCH;
        let expected: Vec<u64> = if batches == 0 {
            Vec::new()
        } else {
            (expected_first_seq(batches)..=applied).collect()
        };
        let mut stored = Vec::new();
        for m in store.scan_msgs(id, 0)? {
            let m = m?;
            assert_eq!(m, msg(id, m.seq), "stream {id}: bytes of seq {}", m.seq);
            stored.push(m.seq);
        }
        assert_eq!(
            stored, expected,
            "stream {id}: messages vs applied {applied}"
        );
        let tracker = store.consumer_state(id, "tracker")?;
        let expected_tracker =
            (batches > 0).then(|| Bytes::copy_from_slice(&applied.to_be_bytes()));
        assert_eq!(
            tracker, expected_tracker,
            "stream {id}: consumer state vs applied"
        );
        let raft = store.raft_log(id).read_applied()?;
        let expected_raft =
            (id.is_multiple_of(2) && batches > 0).then(|| raft_applied(id, applied).state);
        assert_eq!(
            raft, expected_raft,
            "stream {id}: raft applied state vs applied"
        );
        total += batches;
    }
    Ok(total)
}

#[test]
fn acknowledged_batches_survive_sigkill_whole() -> anyhow::Result<()> {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        return run_child(&dir);
    }
    let base = match std::env::var("NATRIX_CRASH_SEED") {
        Ok(s) => s.parse()?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    };
    for seed in base..base + 4 {
        println!("crash seed {seed} (rerun with NATRIX_CRASH_SEED={seed})");
        let dir = tempfile::tempdir()?;
        let (kill_after, acked) = crash_child(dir.path(), seed)?;
        let acks: u64 = acked.values().map(|pos| pos / PER_BATCH).sum();
        let stored = check_store(dir.path(), &acked)?;
        println!(
            "seed {seed}: killed after {kill_after} ms, {acks} batches acknowledged, {stored} on disk"
        );
        assert!(stored >= acks);
    }
    Ok(())
}
