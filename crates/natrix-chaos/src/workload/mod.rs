//! The clients of a run, each an async task with its own connection to one node (never moved to
//! another, so the history knows which node every operation went through): publishers of unique
//! ids, consumers of the durable pull consumer, and compare-and-set writers on a few KV keys.
//! Every operation is recorded with its outcome; every wait has a timeout and every loop stops on
//! its stop signal or its operation count.

mod consumer;
mod kv;
mod publisher;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use natrix_chaos::history::{Event, Phase, Recorder};

/// One publish, CAS or ack may wait this long for its answer.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Operations per client at most (the stop signal normally comes long before).
const MAX_OPS: u64 = 1_000_000;
/// Pause after an operation failed, so that a client without a leader does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The sequences the consumers have received, and how far they are received without a hole.
#[derive(Default)]
pub struct Coverage {
    inner: Mutex<(BTreeSet<u64>, u64)>,
}

impl Coverage {
    fn insert(&self, seq: u64) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (seen, contiguous) = &mut *guard;
        seen.insert(seq);
        while seen.contains(&(*contiguous + 1)) {
            *contiguous += 1;
        }
    }

    /// Every sequence up to this one was received.
    pub fn contiguous(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

/// Who connects where.
pub struct Plan {
    /// Client URL and name of every node, in index order.
    pub nodes: Vec<(String, String)>,
    pub publishers: usize,
    pub consumers: usize,
    pub kv_writers: usize,
    pub kv_keys: usize,
    pub seed: u64,
}

pub struct Workload {
    rec: Recorder,
    stop_writes: watch::Sender<bool>,
    stop_consumers: watch::Sender<bool>,
    writers: Vec<(String, JoinHandle<()>)>,
    consumers: Vec<(String, JoinHandle<()>)>,
    pub coverage: Arc<Coverage>,
}

impl Workload {
    pub async fn start(rec: &Recorder, plan: &Plan) -> anyhow::Result<Workload> {
        let (stop_writes, writes_rx) = watch::channel(false);
        let (stop_consumers, consumers_rx) = watch::channel(false);
        let coverage = Arc::new(Coverage::default());
        let home = |k: usize| &plan.nodes[k % plan.nodes.len()];
        let mut writers = Vec::new();
        let mut consumers = Vec::new();
        rec.record(|t| Event::Workload {
            t,
            phase: Phase::Started,
        });
        for k in 0..plan.publishers {
            let (url, node) = home(k);
            let client = crate::api::connect(url).await?;
            let process = format!("p{k}");
            let task = publisher::Publisher {
                rec: rec.clone(),
                process: process.clone(),
                node: node.clone(),
                client,
                stop: writes_rx.clone(),
                rng: fastrand::Rng::with_seed(plan.seed ^ (0x1000 + k as u64)),
            };
            writers.push((process, tokio::spawn(task.run())));
        }
        for k in 0..plan.kv_writers {
            // Offset so that writers and publishers do not all start on n1.
            let (url, node) = home(k + 1);
            let client = crate::api::connect(url).await?;
            let process = format!("w{k}");
            let task = kv::CasWriter {
                rec: rec.clone(),
                process: process.clone(),
                node: node.clone(),
                writer: u32::try_from(k).unwrap_or(u32::MAX),
                keys: plan.kv_keys.max(1),
                client,
                stop: writes_rx.clone(),
                rng: fastrand::Rng::with_seed(plan.seed ^ (0x2000 + k as u64)),
            };
            writers.push((process, tokio::spawn(task.run())));
        }
        for k in 0..plan.consumers {
            let (url, node) = home(k + 2);
            let client = crate::api::connect(url).await?;
            let process = format!("c{k}");
            let task = consumer::ConsumerWorker {
                rec: rec.clone(),
                process: process.clone(),
                node: node.clone(),
                client,
                stop: consumers_rx.clone(),
                coverage: Arc::clone(&coverage),
            };
            consumers.push((process, tokio::spawn(task.run())));
        }
        Ok(Workload {
            rec: rec.clone(),
            stop_writes,
            stop_consumers,
            writers,
            consumers,
            coverage,
        })
    }

    /// Stops the publishers and CAS writers (each finishes the operation it is in, bounded).
    pub async fn stop_writes(&mut self) -> Vec<String> {
        let _ = self.stop_writes.send(true);
        let problems = join_all(std::mem::take(&mut self.writers)).await;
        self.rec.record(|t| Event::Workload {
            t,
            phase: Phase::Stopped,
        });
        problems
    }

    pub async fn stop_consumers(&mut self) -> Vec<String> {
        let _ = self.stop_consumers.send(true);
        join_all(std::mem::take(&mut self.consumers)).await
    }
}

impl Drop for Workload {
    /// A run that ends early (an error, Ctrl-C) must not leave clients behind: the next run of
    /// the same process may reuse the same addresses.
    fn drop(&mut self) {
        for (_, task) in self.writers.iter().chain(&self.consumers) {
            task.abort();
        }
    }
}

/// Joins every task, bounded; returns what went wrong (a panic, a task that did not stop).
async fn join_all(tasks: Vec<(String, JoinHandle<()>)>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, handle) in tasks {
        let abort = handle.abort_handle();
        match tokio::time::timeout(OP_TIMEOUT * 3, handle).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => problems.push(format!("{name}: {err}")),
            Err(_) => {
                abort.abort();
                problems.push(format!("{name} did not stop within {:?}", OP_TIMEOUT * 3));
            }
        }
    }
    problems
}

/// Sleeps `pause` unless told to stop first; returns whether to go on.
async fn pause_or_stop(stop: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(pause) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}
