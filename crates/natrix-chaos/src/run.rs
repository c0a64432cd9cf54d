//! One chaos run from its seed: the cluster is built and started, the streams created, the
//! workload started, the nemesis carries out its plan, everything is healed, the consumers
//! drain, the replicas catch up, the nodes stop, every replica's copy is read from its store,
//! and the checker judges the history. Every phase has a deadline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use async_nats::jetstream::{self, consumer, stream};

use natrix_chaos::checker::{self, CheckOptions, Observed, Verdict};
use natrix_chaos::history::{self, Event, Recorder};
use natrix_chaos::schedule::{self, Step};
use natrix_chaos::{CONSUMER, KV_BUCKET, KV_STREAM, STREAM, STREAM_SUBJECTS};

use crate::api::{self, LocalState};
use crate::cluster::{Cluster, STOP_DEADLINE};
use crate::nemesis::{Findings, Nemesis};
use crate::netns::{self, Netns};
use crate::replicas;
use crate::say;
use crate::workload::{Plan, Workload};

/// Creating the streams and the consumer, while the meta group forms.
const SETUP_DEADLINE: Duration = Duration::from_secs(90);
/// Workload before the first fault, and after the last one is healed.
const WARM_UP: Duration = Duration::from_secs(2);
const COOL_DOWN: Duration = Duration::from_secs(3);
/// The consumer's ack wait: longer than any partition (see `schedule::MAX_PARTITION_MS`).
const ACK_WAIT: Duration = Duration::from_secs(10);
/// The final drain may have to wait out an ack wait or two (deliveries whose ack was lost).
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);
/// Every replica's copy catching up with the leader's after the heal.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);
/// Stream leader known again after the heal.
const LEADER_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub server_bin: PathBuf,
    pub seed: u64,
    pub duration: Duration,
    pub nodes: usize,
    pub replicas: usize,
    /// The run's own directory (configs, stores, logs, history).
    pub dir: PathBuf,
    pub history: Option<PathBuf>,
    pub keep: bool,
    /// Run on loopback even where namespaces would work.
    pub loopback: bool,
}

/// How a run ended.
pub struct RunReport {
    pub verdict: Verdict,
    pub findings: Findings,
    pub summary: String,
    pub history: PathBuf,
}

impl RunReport {
    pub fn violations(&self) -> usize {
        self.verdict.violations.len()
    }
}

/// Runs one seed; `Err` when the run could not be carried out (the cluster did not form, a node
/// would not restart, a deadline passed), which counts as a failed run too.
pub async fn run(opts: &RunOptions) -> anyhow::Result<RunReport> {
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("creating {}", opts.dir.display()))?;
    let rec = Recorder::new();
    let history_path = opts
        .history
        .clone()
        .unwrap_or_else(|| opts.dir.join("history.jsonl"));
    let (netns, isolation) = isolation(opts)?;
    say(&rec, &format!("isolation: {isolation}"));
    let mut cluster = Cluster::prepare(&opts.dir, &opts.server_bin, opts.nodes, netns).await?;
    rec.record(|t| Event::Run {
        t,
        seed: opts.seed,
        nodes: cluster.names(),
        isolation: isolation.clone(),
    });
    let started = Instant::now();
    // Generous: the plan's faults take longer than their nominal time, and so do the phases.
    let bound = SETUP_DEADLINE
        + opts.duration * 3
        + DRAIN_DEADLINE
        + CONVERGE_DEADLINE
        + LEADER_DEADLINE
        + Duration::from_secs(120);
    let outcome = tokio::time::timeout(bound, phases(opts, &rec, &mut cluster)).await;
    let events = rec.events();
    history::write_jsonl(&history_path, &events)
        .with_context(|| format!("writing {}", history_path.display()))?;
    let (verdict, findings) = match outcome {
        Ok(Ok(done)) => done,
        Ok(Err(err)) => {
            let logs = cluster.log_tails(25);
            drop(cluster);
            return Err(err.context(format!(
                "seed {} (history {}, work dir {})\n{logs}",
                opts.seed,
                history_path.display(),
                opts.dir.display()
            )));
        }
        Err(_) => {
            let logs = cluster.log_tails(25);
            drop(cluster);
            bail!(
                "seed {}: the run exceeded its bound of {bound:?} (history {}, work dir {})\n{logs}",
                opts.seed,
                history_path.display(),
                opts.dir.display()
            );
        }
    };
    drop(cluster);
    let took = started.elapsed();
    let summary = summary(opts, &isolation, &verdict, &findings, took);
    Ok(RunReport {
        verdict,
        findings,
        summary,
        history: history_path,
    })
}

/// Namespaces when they can be had, else loopback and why.
fn isolation(opts: &RunOptions) -> anyhow::Result<(Option<Netns>, String)> {
    if opts.loopback {
        return Ok((
            None,
            "loopback (--loopback): partition faults are skipped".to_owned(),
        ));
    }
    if let Some(why) = netns::unavailable_reason() {
        return Ok((
            None,
            format!("loopback ({why}): partition faults are skipped"),
        ));
    }
    let removed = netns::remove_stale();
    if !removed.is_empty() {
        println!("removed leftovers of earlier runs: {}", removed.join(", "));
    }
    let netns = Netns::create(opts.nodes).context("creating the network namespaces")?;
    let described = format!("netns: {}", netns.describe());
    Ok((Some(netns), described))
}

async fn phases(
    opts: &RunOptions,
    rec: &Recorder,
    cluster: &mut Cluster,
) -> anyhow::Result<(Verdict, Findings)> {
    cluster.start_all_stopped().await?;
    say(rec, "every node accepts clients");
    setup(cluster, opts.replicas).await?;
    say(rec, "streams, bucket and consumer created");

    let plan = Plan {
        nodes: cluster
            .nodes
            .iter()
            .map(|n| (n.url(), n.name.clone()))
            .collect(),
        publishers: opts.nodes + 1,
        consumers: 2,
        kv_writers: 3,
        kv_keys: 2,
        seed: opts.seed,
    };
    let mut workload = Workload::start(rec, &plan).await?;
    tokio::time::sleep(WARM_UP).await;

    let steps: Vec<Step> = schedule::plan(opts.seed, opts.nodes, opts.duration);
    say(rec, &format!("nemesis: {} faults planned", steps.len()));
    let mut nemesis = Nemesis {
        cluster,
        rec: rec.clone(),
        findings: Findings::default(),
    };
    let nemesis_deadline = Instant::now() + opts.duration * 2 + Duration::from_secs(30);
    let ran = nemesis.run(&steps, nemesis_deadline).await;
    // Heal whatever the plan left (also after an error, so the history ends healed).
    let healed = nemesis.heal_all().await;
    ran?;
    healed?;
    let Nemesis {
        cluster,
        mut findings,
        ..
    } = nemesis;
    say(rec, "healed; the workload goes on a little");
    tokio::time::sleep(COOL_DOWN).await;
    for problem in workload.stop_writes().await {
        findings.warnings.push(format!("workload: {problem}"));
    }
    say(rec, "publishers and writers stopped");

    let last_seq = drain(rec, cluster, &workload).await?;
    for problem in workload.stop_consumers().await {
        findings.warnings.push(format!("workload: {problem}"));
    }
    say(rec, &format!("consumers drained to {last_seq}"));

    let voters = converge(rec, cluster, &mut findings).await?;
    for (i, why) in cluster.reap_unexpected_exits() {
        findings.violation(
            "node-crashed",
            format!(
                "{} exited by itself after the heal: {why}",
                cluster.nodes[i].name
            ),
        );
    }
    findings
        .warnings
        .extend(cluster.terminate_all(STOP_DEADLINE).await);
    say(rec, "nodes stopped; reading every replica's store");
    let observed = read_replicas(cluster, &voters).await?;
    let mut verdict = checker::check(&rec.events(), &observed, &CheckOptions::default());
    verdict
        .violations
        .extend(findings.violations.values().cloned());
    Ok((verdict, findings))
}

/// The stream, the KV bucket's stream and the durable consumer, created through node 1 (retried
/// while the meta group forms; a create that already happened is answered as a success).
async fn setup(cluster: &Cluster, replicas: usize) -> anyhow::Result<()> {
    let js = jetstream::ContextBuilder::new()
        .timeout(api::REQUEST_TIMEOUT * 3)
        .build(cluster.control(0).clone());
    let deadline = Instant::now() + SETUP_DEADLINE;
    let mut last = anyhow!("not tried");
    while Instant::now() < deadline {
        match try_setup(&js, replicas).await {
            Ok(()) => return Ok(()),
            Err(err) => last = err,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last.context(format!("creating the streams within {SETUP_DEADLINE:?}")))
}

async fn try_setup(js: &jetstream::Context, replicas: usize) -> anyhow::Result<()> {
    let dedup = Duration::from_secs(120);
    let chaos = js
        .get_or_create_stream(stream::Config {
            name: STREAM.to_owned(),
            subjects: vec![STREAM_SUBJECTS.to_owned()],
            num_replicas: replicas,
            storage: stream::StorageType::File,
            allow_direct: true,
            duplicate_window: dedup,
            ..Default::default()
        })
        .await
        .context("creating the stream")?;
    // The bucket's stream as async-nats would create it, but with unlimited history per key, so
    // that every CAS stays in it for the checker.
    js.get_or_create_stream(stream::Config {
        name: KV_STREAM.to_owned(),
        subjects: vec![format!("$KV.{KV_BUCKET}.>")],
        num_replicas: replicas,
        storage: stream::StorageType::File,
        allow_direct: true,
        allow_rollup: true,
        deny_delete: true,
        discard: stream::DiscardPolicy::New,
        max_messages_per_subject: 10_000_000,
        duplicate_window: dedup,
        ..Default::default()
    })
    .await
    .context("creating the bucket's stream")?;
    chaos
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: 100_000,
                ..Default::default()
            },
        )
        .await
        .context("creating the consumer")?;
    js.get_key_value(KV_BUCKET)
        .await
        .context("binding the bucket")?;
    Ok(())
}

/// The stream's last sequence as its leader reports it (asked until `within` passes).
async fn last_seq(cluster: &Cluster, within: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + within;
    loop {
        match cluster.stream_info(STREAM).await {
            Ok(info) => return Ok(info["state"]["last_seq"].as_u64().unwrap_or_default()),
            Err(err) if Instant::now() >= deadline => {
                return Err(err.context(format!("no stream info within {within:?} of the heal")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Lets the consumers run until they have received every sequence up to the stream's last (read
/// again until it stops moving), or the drain deadline passes; records the outcome.
async fn drain(rec: &Recorder, cluster: &Cluster, workload: &Workload) -> anyhow::Result<u64> {
    let deadline = Instant::now() + DRAIN_DEADLINE;
    let mut target = last_seq(cluster, LEADER_DEADLINE).await?;
    let covered = loop {
        if workload.coverage.contiguous() >= target {
            // Late publishes (sent before the stop, stored after) move the target.
            match last_seq(cluster, Duration::from_secs(5)).await {
                Ok(now) if now > target => target = now,
                _ => break true,
            }
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    rec.record(|t| Event::Drained {
        t,
        last_seq: target,
        covered,
    });
    if !covered {
        say(
            rec,
            &format!(
                "drain: received without a hole up to {} of {target} when the deadline passed",
                workload.coverage.contiguous()
            ),
        );
    }
    Ok(target)
}

/// Waits until every voter of both streams holds the same state as the others (its own `/jsz`);
/// returns the voters by stream. Not converging in time is a violation.
async fn converge(
    rec: &Recorder,
    cluster: &Cluster,
    findings: &mut Findings,
) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let since = Instant::now();
    let deadline = since + CONVERGE_DEADLINE;
    let mut voters = BTreeMap::new();
    for stream in [STREAM, KV_STREAM] {
        let names = cluster.voters(stream, LEADER_DEADLINE).await;
        if names.is_empty() {
            bail!("{stream}: no leader known within {LEADER_DEADLINE:?} after the heal");
        }
        voters.insert(stream.to_owned(), names);
    }
    loop {
        let mut states: BTreeMap<&str, Vec<Option<LocalState>>> = BTreeMap::new();
        for (stream, names) in &voters {
            for name in names {
                let state = match cluster.index_of(name) {
                    Some(i) => api::local_state(cluster.nodes[i].http, stream)
                        .await
                        .unwrap_or(None),
                    None => None,
                };
                states.entry(stream).or_default().push(state);
            }
        }
        let equal = states
            .values()
            .all(|s| s.iter().all(|x| x.is_some() && *x == s[0]));
        if equal {
            say(
                rec,
                &format!("every replica caught up after {:?}", since.elapsed()),
            );
            return Ok(voters);
        }
        if Instant::now() >= deadline {
            findings.violation(
                "replicas-not-converged",
                format!("replicas still differ {CONVERGE_DEADLINE:?} after the heal: {states:?}"),
            );
            return Ok(voters);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every node's copy of each stream, from its store; a voter without a copy is a violation.
async fn read_replicas(
    cluster: &Cluster,
    voters: &BTreeMap<String, Vec<String>>,
) -> anyhow::Result<Observed> {
    let mut observed = Observed::default();
    for node in &cluster.nodes {
        let dir = node.rocksdb();
        let name = node.name.clone();
        let read =
            tokio::task::spawn_blocking(move || replicas::read_copies(&dir, &[STREAM, KV_STREAM]))
                .await
                .context("store reading task")?;
        for stream in [STREAM, KV_STREAM] {
            let is_voter = voters.get(stream).is_some_and(|v| v.contains(&name));
            let copy = match &read {
                Ok(copies) => match copies.get(stream) {
                    Some(records) => Some(Ok(records.clone())),
                    None if is_voter => Some(Err("the voter's store holds no copy".to_owned())),
                    None => None,
                },
                Err(err) => is_voter.then(|| Err(format!("{err:#}"))),
            };
            if let Some(copy) = copy {
                observed
                    .copies
                    .entry(stream.to_owned())
                    .or_default()
                    .insert(name.clone(), copy);
            }
        }
    }
    Ok(observed)
}

/// The summary line of a run.
fn summary(
    opts: &RunOptions,
    isolation: &str,
    verdict: &Verdict,
    findings: &Findings,
    took: Duration,
) -> String {
    let s = &verdict.stats;
    let faults = s
        .faults
        .iter()
        .map(|(k, n)| format!("{k}:{n}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = format!(
        "seed={} nodes={} R{} took={:.1}s ops={} faults={} [{faults}] acked={} lost={} \
         duplicated={} stored={} max_unavailability={:.2}s(from {:.1}s) deliveries={} redeliveries={} \
         acks_confirmed={} kv_written={} kv_refused={} kv_unknown={} minority_windows={} \
         minority_writes={} violations={}",
        opts.seed,
        opts.nodes,
        opts.replicas,
        took.as_secs_f64(),
        s.operations,
        s.faults.values().sum::<usize>(),
        s.acked,
        s.lost,
        s.duplicated,
        s.stored,
        s.max_unavailability_us as f64 / 1e6,
        s.max_unavailability_from_us as f64 / 1e6,
        s.deliveries,
        s.redeliveries,
        s.acks_confirmed,
        s.kv_written,
        s.kv_refused,
        s.kv_unknown,
        s.minority_windows,
        s.minority_writes,
        verdict.violations.len(),
    );
    if !isolation.starts_with("netns") {
        let _ = write!(out, " isolation=LOOPBACK(partitions skipped)");
    }
    if !findings.skipped.is_empty() {
        let skipped = findings
            .skipped
            .iter()
            .map(|(k, n)| format!("{k}:{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(out, " skipped=[{skipped}]");
    }
    out
}
