//! The cluster SIGKILL test: three real `natrix-server` processes form a JetStream cluster, an R3
//! stream takes publishes from clients on every node, and the stream leader's process is
//! SIGKILLed while publishes are in flight. The survivors must elect a new leader that takes
//! publishes, and every acknowledged publish must be in the stream exactly once, at the sequence
//! its PubAck named. The killed node is restarted on the same store and ports, must catch up,
//! and every node must serve the same contents.
//!
//! Reads are answered by the stream leader from its own copy, so leadership is then moved by two
//! more SIGKILLs; the first of those victims stays down until the second kill and misses an
//! acknowledged marker publish. Every copy serves the whole stream as leader once, and the
//! election after the second kill must go to the node holding the marker, never to the one
//! that missed it.
//!
//! A second test freezes two of the three processes with SIGSTOP: the node left running is a
//! minority and acknowledges nothing; after SIGCONT publishing resumes and every node catches up.
//!
//! A third test (`soak.rs`) runs rounds of random faults from a seed: leader or follower killed,
//! a node frozen, every node killed at once.
//!
//! Every wait is bounded; a failure keeps the nodes' stores, configs and logs and says where.

mod soak;
#[path = "../support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use async_nats::jetstream::{self, stream};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

const STREAM: &str = "CCRASH";
const CLUSTER: &str = "c1";
const NODES: usize = 3;
/// How often stream groups snapshot (entries), when set; the default otherwise.
const SNAPSHOT_EVERY_VAR: &str = "NATRIX_CHAOS_SNAPSHOT_EVERY";
const PUBLISHERS: usize = 4;

/// The whole test, start to finish (the brief: under a minute on two cores).
const TEST_DEADLINE: Duration = Duration::from_secs(55);
/// How long a started process may take until it accepts clients.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long the stream create is retried while the meta group forms.
const CREATE_DEADLINE: Duration = Duration::from_secs(20);
/// Publishing before the leader is killed, and after.
const PUBLISH_BEFORE_KILL: Duration = Duration::from_secs(1);
const PUBLISH_AFTER_KILL: Duration = Duration::from_secs(2);
/// Publishing under the new leader, at least, before the publishers stop.
const PUBLISH_AFTER_ELECTION: Duration = Duration::from_secs(1);
/// How long one publish may wait for its PubAck; a slower one counts as unacknowledged.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Publishes per publisher, at most (the stop signal normally comes long before).
const MAX_PUBLISHES: u64 = 100_000;
/// Pause after a failed publish, so that a publisher without a leader does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(50);
/// From the SIGKILL until the survivors name a new leader.
const LEADER_DEADLINE: Duration = Duration::from_secs(10);
/// The same when the group had lost its quorum and a node restarted just now must vote (it
/// starts with a fresh leader lease, 2 s, during which it refuses votes: an election round or
/// two more).
const QUORUM_REGAINED_DEADLINE: Duration = Duration::from_secs(15);
/// From a restart until every node's local copy of the stream is the same.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(15);
/// One request (stream info, message get, /jsz).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts of one request while the cluster settles.
const REQUEST_ATTEMPTS: u32 = 10;
/// Message gets in flight while reading the stream.
const READ_CONCURRENCY: usize = 32;

/// The tests of this file run one at a time: each starts three processes on ports probed free
/// just before, and two clusters at once could take each other's ports.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A scenario run against a fresh three-node cluster; `Ok` carries its summary line.
type Scenario = for<'a> fn(&'a mut Cluster) -> BoxFuture<'a, anyhow::Result<String>>;

/// Runs `scenario` on a fresh cluster within `deadline`; on failure keeps the stores and logs
/// and panics with where they are and the logs' last lines.
async fn run_cluster_test(what: &str, deadline: Duration, scenario: Scenario) {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("a temporary directory for the nodes");
    let mut cluster = match Cluster::new(dir.path()) {
        Ok(cluster) => cluster,
        Err(err) => panic!("preparing the cluster: {err:#}"),
    };
    let started = Instant::now();
    let outcome = tokio::time::timeout(deadline, scenario(&mut cluster)).await;
    let err = match outcome {
        Ok(Ok(report)) => {
            println!("passed in {:?}: {report}", started.elapsed());
            return;
        }
        Ok(Err(err)) => err,
        Err(_) => anyhow!("the test exceeded its deadline of {deadline:?}"),
    };
    let logs = cluster.log_tails(40);
    cluster.kill_all();
    let kept = dir.keep();
    panic!(
        "{what} failed after {:?}: {err:#}\nstores and logs kept in {}\n{logs}",
        started.elapsed(),
        kept.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_publishes_survive_sigkill_of_the_stream_leader() {
    run_cluster_test("cluster crash test", TEST_DEADLINE, |cluster| {
        Box::pin(async move { Ok(run(cluster).await?.to_string()) })
    })
    .await;
}

/// Publishing through the running minority while the majority is stopped.
const MINORITY_PUBLISHING: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_acknowledges_nothing_and_catches_up_when_the_majority_returns() {
    run_cluster_test("minority test", TEST_DEADLINE, |cluster| {
        Box::pin(run_minority(cluster))
    })
    .await;
}

/// Two of the three nodes are stopped with SIGSTOP (frozen, their sockets open): the one left
/// running is a minority, and a client on it gets no PubAck, whichever node led. After SIGCONT
/// the cluster takes publishes again, nothing acknowledged is missing, and the stopped nodes
/// catch up to the same contents.
async fn run_minority(cluster: &mut Cluster) -> anyhow::Result<String> {
    for i in 0..NODES {
        cluster.start(i).await?;
    }
    create_stream(cluster).await?;
    let mut ledger = Ledger::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let before = tokio::spawn(publish(0, publisher_client(cluster, 0).await?, stop_rx));
    tokio::time::sleep(PUBLISH_BEFORE_KILL).await;
    let _ = stop_tx.send(true);
    let published = before.await.context("publisher 0 panicked")?;
    let acked_before = published.acked.len();
    ensure!(acked_before > 0, "nothing was acknowledged before the stop");
    ledger.add(0, published, Instant::now(), Instant::now())?;

    // The majority freezes; a client on the remaining node publishes (its own client only).
    cluster.signal(1, "STOP")?;
    cluster.signal(2, "STOP")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let minority = tokio::spawn(publish(1, cluster.client(0)?.clone(), stop_rx));
    tokio::time::sleep(MINORITY_PUBLISHING).await;
    let _ = stop_tx.send(true);
    // Its last publish waits out its ack timeout before the majority returns.
    let published = minority.await.context("publisher 1 panicked")?;
    let attempted = published.sent;
    ensure!(
        published.acked.is_empty(),
        "a minority acknowledged {} of {attempted} publishes: {:?}",
        published.acked.len(),
        published.acked.iter().map(|a| &a.0).collect::<Vec<_>>()
    );
    ledger.add(1, published, Instant::now(), Instant::now())?;
    cluster.signal(1, "CONT")?;
    cluster.signal(2, "CONT")?;
    // The stream group elects again (a round can fail: the thawed nodes' logs differ, and each
    // refuses votes while its leader lease runs); publishing is timed from the agreement.
    let (leader, took) = cluster
        .wait_leader(None, Instant::now(), QUORUM_REGAINED_DEADLINE)
        .await?;
    println!(
        "after SIGCONT every node names {} after {took:?}",
        cluster.nodes[leader].name
    );

    // Back to a majority: publishes are acknowledged again through every node.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut after = Vec::new();
    for p in 2..2 + NODES {
        let client = publisher_client(cluster, p % NODES).await?;
        after.push(tokio::spawn(publish(p, client, stop_rx.clone())));
    }
    tokio::time::sleep(PUBLISH_AFTER_KILL).await;
    let _ = stop_tx.send(true);
    let mut acked_after = 0;
    for (k, handle) in after.into_iter().enumerate() {
        let published = tokio::time::timeout(ACK_TIMEOUT * 3, handle)
            .await
            .with_context(|| format!("publisher {} did not stop", k + 2))?
            .with_context(|| format!("publisher {} panicked", k + 2))?;
        acked_after += published.acked.len();
        ledger.add(k + 2, published, Instant::now(), Instant::now())?;
    }
    ensure!(acked_after > 0, "nothing was acknowledged after SIGCONT");
    let leader = cluster
        .index_of(&leader_of(cluster).await?)
        .ok_or_else(|| anyhow!("the stream leader is not one of the nodes"))?;
    let contents = read_stream(cluster.client(leader)?).await?;
    ledger.check(&contents)?;
    let caught_up = cluster.wait_caught_up(&contents).await?;
    Ok(format!(
        "{acked_before} acked before the stop, 0 of {attempted} through the minority, \
         {acked_after} after SIGCONT; {} stored; every node caught up after {caught_up:?}",
        contents.len()
    ))
}

/// What the run saw, for the success line.
#[derive(Default)]
struct Report {
    acked_before_kill: usize,
    acked_in_election: usize,
    acked_after_election: usize,
    unacked: u64,
    stored: u64,
    stored_unacked: usize,
    elections: Vec<Duration>,
    catch_ups: Vec<Duration>,
    kills: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} publishes acked before the kill, {} during the election, {} after, {} not \
             acked; {} messages stored ({} of them not acked); {} SIGKILLs of the leader, new \
             leader after {:?}, restarted node caught up after {:?}",
            self.acked_before_kill,
            self.acked_in_election,
            self.acked_after_election,
            self.unacked,
            self.stored,
            self.stored_unacked,
            self.kills,
            self.elections,
            self.catch_ups,
        )
    }
}

async fn run(cluster: &mut Cluster) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for i in 0..NODES {
        cluster.start(i).await?;
    }
    create_stream(cluster).await?;

    // Publishers on every node; the leader is SIGKILLed while they run.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let client = publisher_client(cluster, p % NODES).await?;
        publishers.push(tokio::spawn(publish(p, client, stop_rx.clone())));
    }
    tokio::time::sleep(PUBLISH_BEFORE_KILL).await;
    let (killed, killed_at) = cluster.kill_leader().await?;
    report.kills += 1;
    // The publishers go on through the election and for a while under the new leader.
    let new_leader = cluster
        .wait_new_leader(killed, killed_at, LEADER_DEADLINE)
        .await;
    let elected_at = Instant::now();
    let publish_until =
        (killed_at + PUBLISH_AFTER_KILL).max(Instant::now() + PUBLISH_AFTER_ELECTION);
    tokio::time::sleep_until(publish_until.into()).await;
    let _ = stop_tx.send(true);
    let mut ledger = Ledger::default();
    for (p, handle) in publishers.into_iter().enumerate() {
        let published = tokio::time::timeout(ACK_TIMEOUT * 3, handle)
            .await
            .with_context(|| format!("publisher {p} did not stop"))?
            .with_context(|| format!("publisher {p} panicked"))?;
        ledger.add(p, published, killed_at, elected_at)?;
    }
    report.acked_before_kill = ledger.acked_before_kill;
    report.acked_after_election = ledger.acked_after_election;
    report.acked_in_election =
        ledger.acked.len() - ledger.acked_before_kill - ledger.acked_after_election;
    report.unacked = ledger.unacked;
    println!(
        "publishers: {} acked before the kill, {} during the election, {} after, {} not acked",
        report.acked_before_kill,
        report.acked_in_election,
        report.acked_after_election,
        report.unacked
    );
    // A new leader that takes publishes, and nothing acknowledged is lost or doubled.
    let (leader, took) = new_leader?;
    report.elections.push(took);
    ensure!(
        report.acked_before_kill > 0 && report.acked_after_election > 0,
        "{} publishes were acknowledged before the leader was killed and {} after the new \
         leader was known; both must be some",
        report.acked_before_kill,
        report.acked_after_election
    );
    let contents = read_stream(cluster.client(leader)?).await?;
    ledger
        .check(&contents)
        .with_context(|| format!("the stream as {} serves it", cluster.nodes[leader].name))?;
    report.stored = contents.len() as u64;
    report.stored_unacked = contents.len() - ledger.acked.len();

    // The killed node comes back on its store and catches up; every node serves the same stream.
    cluster.start(killed).await?;
    report
        .catch_ups
        .push(cluster.wait_caught_up(&contents).await?);
    every_node_serves(cluster, &contents).await?;

    // Reads are answered by the leader alone, from its own copy: to read the other two copies,
    // leadership moves. `b` (the leader now, just read) is killed and stays down; one of the
    // others, `x`, is elected, serves the stream and takes a marker publish, which is then
    // committed on `x` and the third node only.
    let mut expected = contents;
    let (b, killed_at) = cluster.kill_leader().await?;
    report.kills += 1;
    if b != leader {
        println!(
            "(the leader had moved from {} by itself)",
            cluster.nodes[leader].name
        );
    }
    let (x, took) = cluster
        .wait_new_leader(b, killed_at, LEADER_DEADLINE)
        .await?;
    report.elections.push(took);
    add_marker(cluster, x, "marker-1", &mut expected).await?;
    let seen = read_stream(cluster.client(x)?).await?;
    ensure!(
        seen == expected,
        "{} as leader serves a different stream: {}",
        cluster.nodes[x].name,
        difference(&expected, &seen)
    );

    // Then the leader (`x`) dies too and `b` comes back: `b` lacks the acknowledged marker, so
    // only the other survivor, `u`, can win the election (a node missing a committed entry must
    // not).
    let (x, killed_at) = cluster.kill_leader().await?;
    report.kills += 1;
    let u = (0..NODES)
        .find(|i| *i != b && *i != x)
        .ok_or_else(|| anyhow!("no third node"))?;
    cluster.start(b).await?;
    let (leader, took) = cluster
        .wait_new_leader(x, killed_at, QUORUM_REGAINED_DEADLINE)
        .await?;
    report.elections.push(took);
    ensure!(
        leader == u,
        "{} was elected although it lacks the acknowledged marker-1 that {} holds",
        cluster.nodes[leader].name,
        cluster.nodes[u].name
    );
    add_marker(cluster, u, "marker-2", &mut expected).await?;
    let seen = read_stream(cluster.client(u)?).await?;
    ensure!(
        seen == expected,
        "{} as leader serves a different stream: {}",
        cluster.nodes[u].name,
        difference(&expected, &seen)
    );

    // All three back: every copy catches up and every node serves the same stream.
    cluster.start(x).await?;
    report
        .catch_ups
        .push(cluster.wait_caught_up(&expected).await?);
    every_node_serves(cluster, &expected).await?;
    report.stored = expected.len() as u64;
    cluster.kill_all();
    Ok(report)
}

/// Reads the whole stream through every running node's client: each must serve `expected`.
async fn every_node_serves(
    cluster: &Cluster,
    expected: &BTreeMap<u64, String>,
) -> anyhow::Result<()> {
    for i in cluster.running() {
        let seen = read_stream(cluster.client(i)?).await?;
        ensure!(
            seen == *expected,
            "{} serves a different stream: {}",
            cluster.nodes[i].name,
            difference(expected, &seen)
        );
    }
    Ok(())
}

/// Publishes `marker` through node `i` until acknowledged (bounded; its Nats-Msg-Id is the
/// marker itself, so a retry cannot store it twice) and adds it to `expected`: it must take the
/// next sequence.
async fn add_marker(
    cluster: &Cluster,
    i: usize,
    marker: &str,
    expected: &mut BTreeMap<u64, String>,
) -> anyhow::Result<()> {
    let js = jetstream::ContextBuilder::new()
        .timeout(ACK_TIMEOUT)
        .ack_timeout(ACK_TIMEOUT)
        .build(cluster.client(i)?.clone());
    let deadline = Instant::now() + LEADER_DEADLINE;
    let mut attempts = 0u32;
    let seq = loop {
        attempts += 1;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", marker);
        let attempt = async {
            let ack = js
                .publish_with_headers("ccrash.marker", headers, Bytes::from(marker.to_owned()))
                .await?;
            anyhow::Ok(ack.await?)
        };
        let err = match tokio::time::timeout(ACK_TIMEOUT, attempt).await {
            Ok(Ok(ack)) if ack.stream == STREAM => break ack.sequence,
            Ok(Ok(ack)) => anyhow!("PubAck from another stream: {ack:?}"),
            Ok(Err(err)) => err,
            Err(_) => anyhow!("no PubAck within {ACK_TIMEOUT:?}"),
        };
        if Instant::now() >= deadline {
            return Err(err.context(format!(
                "publishing {marker} through {}, {attempts} attempts",
                cluster.nodes[i].name
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let next = expected.keys().next_back().map_or(1, |last| last + 1);
    ensure!(
        seq == next,
        "{marker} was acknowledged at sequence {seq}, the next free one is {next}"
    );
    expected.insert(seq, marker.to_owned());
    Ok(())
}

/// One node: its ports, store, config file and log, and the process while it runs.
struct Node {
    name: String,
    client_port: u16,
    cluster_port: u16,
    http_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    client: Option<async_nats::Client>,
}

struct Cluster {
    nodes: Vec<Node>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A failing test must not leave servers behind.
        self.kill_all();
    }
}

impl Cluster {
    /// Picks the ports and writes every node's config file (nothing is started).
    fn new(dir: &Path) -> anyhow::Result<Cluster> {
        let ports = free_ports(NODES * 3)?;
        let cluster_ports: Vec<u16> = (0..NODES).map(|i| ports[i * 3 + 1]).collect();
        let mut routes = String::new();
        for port in &cluster_ports {
            writeln!(routes, "    \"nats-route://127.0.0.1:{port}\"")?;
        }
        // `NATRIX_CHAOS_SNAPSHOT_EVERY=N`: stream groups snapshot every N entries, so a node
        // that was down catches up from a snapshot (received while faults go on).
        let snapshot_every = match std::env::var(SNAPSHOT_EVERY_VAR) {
            Ok(n) => format!("  raft_snapshot_every: {}\n", n.trim().parse::<u64>()?),
            Err(_) => String::new(),
        };
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let name = format!("n{}", i + 1);
            let node_dir = dir.join(&name);
            let store = node_dir.join("store");
            std::fs::create_dir_all(&store)?;
            let (client_port, cluster_port, http_port) =
                (ports[i * 3], ports[i * 3 + 1], ports[i * 3 + 2]);
            let config = node_dir.join("server.conf");
            let text = format!(
                "server_name: \"{name}\"\n\
                 listen: \"127.0.0.1:{client_port}\"\n\
                 http: \"127.0.0.1:{http_port}\"\n\
                 jetstream {{\n  store_dir: \"{}\"\n{snapshot_every}}}\n\
                 cluster {{\n  name: \"{CLUSTER}\"\n  listen: \"127.0.0.1:{cluster_port}\"\n  \
                 routes: [\n{routes}  ]\n}}\n",
                store.display()
            );
            std::fs::write(&config, text)?;
            nodes.push(Node {
                name,
                client_port,
                cluster_port,
                http_port,
                config,
                log: node_dir.join("server.log"),
                child: None,
                client: None,
            });
        }
        Ok(Cluster { nodes })
    }

    /// Starts node `i` (again, on the same store and ports) and connects a client to it.
    async fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let banner = format!(
            "cluster crash test: start {} (client {}, cluster {}, http {})",
            node.name, node.client_port, node.cluster_port, node.http_port
        );
        let mut child = support::spawn_logged(
            [std::ffi::OsStr::new("-c"), node.config.as_os_str()],
            &node.log,
            &banner,
        )?;
        let spawned = Instant::now();
        let deadline = spawned + START_DEADLINE;
        let client = loop {
            if let Some(status) = child.try_wait()? {
                bail!("{} exited during start: {status}", node.name);
            }
            if let Ok(client) = control_client(node.client_port).await {
                break client;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} did not accept clients within {START_DEADLINE:?}",
                    node.name
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        println!(
            "{} accepts clients after {:?}",
            node.name,
            spawned.elapsed()
        );
        node.child = Some(child);
        node.client = Some(client);
        Ok(())
    }

    fn client(&self, i: usize) -> anyhow::Result<&async_nats::Client> {
        self.nodes[i]
            .client
            .as_ref()
            .ok_or_else(|| anyhow!("{} is not running", self.nodes[i].name))
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..NODES).filter(|i| self.nodes[*i].child.is_some())
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// SIGKILLs the stream leader (as a running node names it) and returns its index and the
    /// moment it died.
    async fn kill_leader(&mut self) -> anyhow::Result<(usize, Instant)> {
        let name = leader_of(self).await?;
        let i = self
            .index_of(&name)
            .ok_or_else(|| anyhow!("the stream leader {name:?} is not one of the nodes"))?;
        let killed_at = self.kill(i)?;
        println!("SIGKILLed the stream leader {name}");
        Ok((i, killed_at))
    }

    /// SIGKILLs node `i` and returns the moment it died.
    fn kill(&mut self, i: usize) -> anyhow::Result<Instant> {
        let node = &mut self.nodes[i];
        let mut child = node
            .child
            .take()
            .ok_or_else(|| anyhow!("{} is not running", node.name))?;
        child.kill().context("SIGKILL")?;
        child.wait()?;
        node.client = None;
        Ok(Instant::now())
    }

    /// Waits until every running node names the same running stream leader, other than
    /// `killed`; returns its index and the time since the kill. Agreement, not one node's word:
    /// a restarted former leader names itself for a moment after its restart, before it hears
    /// of the newer term (conflicting claims seen on the way are printed).
    async fn wait_new_leader(
        &self,
        killed: usize,
        killed_at: Instant,
        within: Duration,
    ) -> anyhow::Result<(usize, Duration)> {
        self.wait_leader(Some(killed), killed_at, within).await
    }

    /// [`Cluster::wait_new_leader`], the leader any running node other than `excluded`.
    async fn wait_leader(
        &self,
        excluded: Option<usize>,
        killed_at: Instant,
        within: Duration,
    ) -> anyhow::Result<(usize, Duration)> {
        let old = excluded.map_or("", |k| self.nodes[k].name.as_str());
        let deadline = killed_at + within;
        let mut last = String::from("no answer");
        let mut conflicts = BTreeSet::new();
        while Instant::now() < deadline {
            let mut named = Vec::new();
            let mut errors = String::new();
            for i in self.running() {
                let leader = match stream_info(self.client(i)?).await {
                    Ok(info) => info["cluster"]["leader"].as_str().map(str::to_owned),
                    Err(err) => {
                        let _ = write!(errors, "; {}: {err:#}", self.nodes[i].name);
                        None
                    }
                };
                named.push((i, leader));
            }
            let claims: BTreeSet<&str> = named
                .iter()
                .filter_map(|(_, l)| l.as_deref())
                .filter(|l| {
                    *l != old
                        && self
                            .index_of(l)
                            .is_some_and(|i| self.nodes[i].child.is_some())
                })
                .collect();
            if claims.len() > 1 {
                conflicts.insert(self.describe(&named));
            }
            if let Some(leader) = named[0].1.as_deref()
                && leader != old
                && named.iter().all(|(_, l)| l.as_deref() == Some(leader))
                && let Some(index) = self.index_of(leader)
                && self.nodes[index].child.is_some()
            {
                let took = killed_at.elapsed();
                println!("new stream leader {leader} after {took:?}");
                for conflict in conflicts {
                    println!("  before that, running nodes named different leaders: {conflict}");
                }
                return Ok((index, took));
            }
            last = format!("{}{errors}", self.describe(&named));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("no new stream leader within {within:?} (not {old:?}; last: {last})")
    }

    /// `n1 names n2, n3 names none`.
    fn describe(&self, named: &[(usize, Option<String>)]) -> String {
        named
            .iter()
            .map(|(i, l)| {
                format!(
                    "{} names {}",
                    self.nodes[*i].name,
                    l.as_deref().unwrap_or("none")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Waits until every node's own copy of the stream (its /jsz, answered locally) holds what
    /// `contents` holds; returns how long that took.
    async fn wait_caught_up(&self, contents: &BTreeMap<u64, String>) -> anyhow::Result<Duration> {
        let since = Instant::now();
        let deadline = since + CATCH_UP_DEADLINE;
        let want = (contents.len() as u64, contents.keys().next_back().copied());
        let mut last = String::new();
        while Instant::now() < deadline {
            let mut states = Vec::new();
            for node in &self.nodes {
                states.push(match local_state(node.http_port).await {
                    Ok(state) => state,
                    Err(err) => {
                        last = format!("{}: {err:#}", node.name);
                        None
                    }
                });
            }
            let caught_up = states.iter().all(|s| {
                s.as_ref()
                    .is_some_and(|s| (s.messages, Some(s.last_seq)) == want)
            });
            if caught_up {
                let first = &states[0];
                ensure!(
                    states.iter().all(|s| s == first),
                    "the nodes hold the same number of messages but differ: {states:?}"
                );
                return Ok(since.elapsed());
            }
            last = format!("{last} {states:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "the nodes did not all hold {} messages up to {:?} within {CATCH_UP_DEADLINE:?}: {last}",
            want.0,
            want.1
        )
    }

    /// Sends `SIGSTOP`/`SIGCONT`/... (by name) to node `i`'s process.
    fn signal(&self, i: usize, signal: &str) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let pid = node
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("{} is not running", node.name))?
            .id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .context("running kill")?;
        ensure!(
            status.success(),
            "kill -{signal} {pid} ({}): {status}",
            node.name
        );
        println!("{}: SIG{signal}", node.name);
        Ok(())
    }

    fn kill_all(&mut self) {
        for node in &mut self.nodes {
            node.client = None;
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let text = std::fs::read_to_string(&node.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let _ = writeln!(
                out,
                "---- last lines of {}'s log ----\n{}",
                node.name,
                all[all.len().saturating_sub(lines)..].join("\n")
            );
        }
        out
    }
}

/// Ports nothing listens on right now, all different (held together while probing).
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .context("probing free ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// A client for the test's own requests, on one node only.
async fn control_client(port: u16) -> anyhow::Result<async_nats::Client> {
    Ok(async_nats::ConnectOptions::new()
        .connection_timeout(REQUEST_TIMEOUT)
        .ignore_discovered_servers()
        .connect(format!("nats://127.0.0.1:{port}"))
        .await?)
}

/// A publisher's client: on node `home` first, and on another node when that one dies.
async fn publisher_client(cluster: &Cluster, home: usize) -> anyhow::Result<async_nats::Client> {
    let urls: Vec<async_nats::ServerAddr> = (0..NODES)
        .map(|k| {
            let port = cluster.nodes[(home + k) % NODES].client_port;
            format!("nats://127.0.0.1:{port}").parse()
        })
        .collect::<Result<_, _>>()?;
    Ok(async_nats::ConnectOptions::new()
        .connection_timeout(REQUEST_TIMEOUT)
        .retain_servers_order()
        .ignore_discovered_servers()
        .reconnect_delay_callback(|attempts| Duration::from_millis(50 * attempts.min(4) as u64))
        .connect(urls)
        .await?)
}

/// Creates the R3 stream, retrying while the meta group forms.
async fn create_stream(cluster: &Cluster) -> anyhow::Result<()> {
    let js = jetstream::new(cluster.client(0)?.clone());
    let since = Instant::now();
    let deadline = since + CREATE_DEADLINE;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let created = tokio::time::timeout(
            REQUEST_TIMEOUT * 2,
            js.create_stream(stream::Config {
                name: STREAM.to_owned(),
                subjects: vec!["ccrash.*".to_owned()],
                num_replicas: 3,
                storage: stream::StorageType::File,
                ..Default::default()
            }),
        )
        .await;
        let err = match created {
            Ok(Ok(_)) => {
                println!(
                    "stream created after {:?} ({attempts} attempts)",
                    since.elapsed()
                );
                return Ok(());
            }
            Ok(Err(err)) => anyhow!(err),
            Err(_) => anyhow!("no answer"),
        };
        if Instant::now() >= deadline {
            return Err(err.context(format!(
                "creating the R3 stream, {attempts} attempts in {CREATE_DEADLINE:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one publisher did: the acknowledged payloads with their sequence and when the ack came.
#[derive(Default)]
struct Published {
    acked: Vec<(String, u64, Instant)>,
    /// Publishes sent: payloads `p<publisher>-0` up to this counter, exclusive.
    sent: u64,
    unacked: u64,
    /// PubAcks that were not plain acknowledgements from the stream (wrong stream, duplicate).
    wrong: Vec<String>,
}

/// Publishes unique payloads one at a time, each awaiting its PubAck, until told to stop.
async fn publish(
    publisher: usize,
    client: async_nats::Client,
    stop: watch::Receiver<bool>,
) -> Published {
    let js = jetstream::ContextBuilder::new()
        .timeout(ACK_TIMEOUT)
        .ack_timeout(ACK_TIMEOUT)
        .build(client);
    let subject = format!("ccrash.{publisher}");
    let mut out = Published::default();
    while !*stop.borrow() && out.sent < MAX_PUBLISHES {
        let payload = format!("p{publisher}-{}", out.sent);
        out.sent += 1;
        let attempt = async {
            let ack = js
                .publish(subject.clone(), Bytes::from(payload.clone()))
                .await?;
            anyhow::Ok(ack.await?)
        };
        match tokio::time::timeout(ACK_TIMEOUT, attempt).await {
            Ok(Ok(ack)) if ack.stream == STREAM && !ack.duplicate => {
                out.acked.push((payload, ack.sequence, Instant::now()));
            }
            Ok(Ok(ack)) => out.wrong.push(format!("{payload}: {ack:?}")),
            Ok(Err(_)) => {
                out.unacked += 1;
                tokio::time::sleep(ERROR_PAUSE).await;
            }
            Err(_) => out.unacked += 1,
        }
    }
    out
}

/// Everything acknowledged, and what may be stored.
#[derive(Default)]
struct Ledger {
    /// Acknowledged payload -> the sequence its PubAck named.
    acked: HashMap<String, u64>,
    /// Sequence -> the payload acknowledged there.
    by_seq: BTreeMap<u64, String>,
    acked_before_kill: usize,
    acked_after_election: usize,
    unacked: u64,
    /// Per publisher, how many payloads were sent.
    sent: Vec<u64>,
}

impl Ledger {
    fn add(
        &mut self,
        publisher: usize,
        published: Published,
        killed_at: Instant,
        elected_at: Instant,
    ) -> anyhow::Result<()> {
        ensure!(
            published.wrong.is_empty(),
            "publisher {publisher} got unexpected PubAcks for fresh payloads: {:?}",
            published.wrong
        );
        self.unacked += published.unacked;
        self.sent.push(published.sent);
        for (payload, seq, at) in published.acked {
            if at < killed_at {
                self.acked_before_kill += 1;
            } else if at >= elected_at {
                self.acked_after_election += 1;
            }
            if let Some(other) = self.by_seq.insert(seq, payload.clone()) {
                bail!("two publishes were acknowledged at sequence {seq}: {other} and {payload}");
            }
            ensure!(
                self.acked.insert(payload.clone(), seq).is_none(),
                "{payload} was acknowledged twice"
            );
        }
        Ok(())
    }

    /// Every acknowledged payload is stored exactly once, at its acknowledged sequence; every
    /// stored payload was sent, once; the stream has no gaps (nothing is deleted).
    fn check(&self, contents: &BTreeMap<u64, String>) -> anyhow::Result<()> {
        let mut seq_of: HashMap<&str, u64> = HashMap::new();
        for (seq, payload) in contents {
            if let Some(other) = seq_of.insert(payload, *seq) {
                bail!("{payload} is stored twice, at sequences {other} and {seq}");
            }
            let sent = payload
                .strip_prefix('p')
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(p, n)| Some((p.parse::<usize>().ok()?, n.parse::<u64>().ok()?)))
                .is_some_and(|(p, n)| self.sent.get(p).is_some_and(|sent| n < *sent));
            ensure!(
                sent,
                "sequence {seq} holds {payload:?}, which was never sent"
            );
        }
        let mut lost = Vec::new();
        for (seq, payload) in &self.by_seq {
            match seq_of.get(payload.as_str()) {
                Some(stored) if stored == seq => {}
                Some(stored) => bail!(
                    "{payload} was acknowledged at sequence {seq} but is stored at {stored} \
                     (sequence {seq} holds {:?})",
                    contents.get(seq)
                ),
                None => lost.push(format!("{payload}@{seq}")),
            }
        }
        ensure!(
            lost.is_empty(),
            "{} acknowledged publishes are lost: {}",
            lost.len(),
            lost.join(", ")
        );
        Ok(())
    }
}

/// The name of the stream leader as a running node reports it (retried while none is known).
async fn leader_of(cluster: &Cluster) -> anyhow::Result<String> {
    let mut last = String::from("no node running");
    for _ in 0..REQUEST_ATTEMPTS {
        for i in cluster.running() {
            match stream_info(cluster.client(i)?).await {
                Ok(info) => match info["cluster"]["leader"].as_str() {
                    Some(leader) => return Ok(leader.to_owned()),
                    None => last = format!("{} knows no leader: {info}", cluster.nodes[i].name),
                },
                Err(err) => last = format!("{}: {err:#}", cluster.nodes[i].name),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no stream leader known: {last}")
}

/// A JetStream API request, answered as JSON without an `error`.
async fn api(client: &async_nats::Client, subject: String, body: String) -> anyhow::Result<Json> {
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, client.request(subject, Bytes::from(body)))
        .await
        .context("timed out")??;
    let json: Json = serde_json::from_slice(&reply.payload).context("reply is not JSON")?;
    if let Some(error) = json.get("error") {
        bail!("{error}");
    }
    Ok(json)
}

type Json = serde_json::Value;

async fn stream_info(client: &async_nats::Client) -> anyhow::Result<Json> {
    api(
        client,
        format!("$JS.API.STREAM.INFO.{STREAM}"),
        String::new(),
    )
    .await
}

/// The whole stream as `client`'s node serves it: sequence -> payload, from the first sequence
/// to the last the stream info names; a missing sequence is an error (nothing is deleted).
async fn read_stream(client: &async_nats::Client) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut info = None;
    for attempt in 1..=REQUEST_ATTEMPTS {
        match stream_info(client).await {
            Ok(i) => {
                info = Some(i);
                break;
            }
            Err(err) if attempt == REQUEST_ATTEMPTS => return Err(err.context("stream info")),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let state = &info.ok_or_else(|| anyhow!("no stream info"))?["state"];
    let (messages, first, last) = (
        state["messages"].as_u64().unwrap_or_default(),
        state["first_seq"].as_u64().unwrap_or_default(),
        state["last_seq"].as_u64().unwrap_or_default(),
    );
    ensure!(
        messages == last && (first == 1 || messages == 0),
        "nothing was deleted, yet the stream holds {messages} messages from {first} to {last}"
    );
    let mut out = BTreeMap::new();
    read_range(client, 1, last, &mut out).await?;
    Ok(out)
}

/// Reads sequences `from..=to` into `out` (`READ_CONCURRENCY` at a time).
async fn read_range(
    client: &async_nats::Client,
    from: u64,
    to: u64,
    out: &mut BTreeMap<u64, String>,
) -> anyhow::Result<()> {
    let mut reads = futures::stream::iter(from..=to)
        .map(|seq| async move { (seq, read_msg(client, seq).await) })
        .buffer_unordered(READ_CONCURRENCY);
    while let Some((seq, payload)) = reads.next().await {
        out.insert(
            seq,
            payload.with_context(|| format!("reading sequence {seq}"))?,
        );
    }
    Ok(())
}

/// One `$JS.API.STREAM.MSG.GET` (retried a few times: a request can be lost while a node dies).
async fn read_msg(client: &async_nats::Client, seq: u64) -> anyhow::Result<String> {
    let mut attempt = 0;
    let reply = loop {
        attempt += 1;
        match api(
            client,
            format!("$JS.API.STREAM.MSG.GET.{STREAM}"),
            serde_json::json!({ "seq": seq }).to_string(),
        )
        .await
        {
            Ok(reply) => break reply,
            Err(err) if attempt >= 3 => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let msg = &reply["message"];
    ensure!(msg["seq"] == seq, "asked for sequence {seq}, got {msg}");
    let data = BASE64
        .decode(msg["data"].as_str().unwrap_or_default())
        .context("data is not base64")?;
    Ok(String::from_utf8(data)?)
}

/// A node's own state of the stream, from its /jsz (not forwarded to the leader).
#[derive(Debug, PartialEq, Eq)]
struct LocalState {
    messages: u64,
    bytes: u64,
    first_seq: u64,
    last_seq: u64,
}

async fn local_state(http_port: u16) -> anyhow::Result<Option<LocalState>> {
    let jsz = http_get_json(http_port, "/jsz?streams=true").await?;
    let Some(detail) = jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
        .find(|s| s["name"] == STREAM)
    else {
        return Ok(None);
    };
    let state = &detail["state"];
    let field = |name: &str| state[name].as_u64().unwrap_or_default();
    Ok(Some(LocalState {
        messages: field("messages"),
        bytes: field("bytes"),
        first_seq: field("first_seq"),
        last_seq: field("last_seq"),
    }))
}

/// A plain HTTP/1.1 GET on loopback with `Connection: close`, body read as JSON.
async fn http_get_json(port: u16, path: &str) -> anyhow::Result<Json> {
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        conn.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut response = Vec::new();
        conn.read_to_end(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .context("HTTP request timed out")??;
    let text = String::from_utf8(response)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response {text:?}"))?;
    ensure!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    serde_json::from_str(body).with_context(|| format!("GET {path}: body {body:?}"))
}

/// The first few sequences where two views of the stream differ.
fn difference(want: &BTreeMap<u64, String>, seen: &BTreeMap<u64, String>) -> String {
    let seqs: BTreeSet<u64> = want.keys().chain(seen.keys()).copied().collect();
    let diffs: Vec<String> = seqs
        .into_iter()
        .filter(|seq| want.get(seq) != seen.get(seq))
        .take(10)
        .map(|seq| format!("{seq}: {:?} vs {:?}", want.get(&seq), seen.get(&seq)))
        .collect();
    format!(
        "{} vs {} messages; first differences: {}",
        want.len(),
        seen.len(),
        diffs.join(", ")
    )
}
