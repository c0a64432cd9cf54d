//! The SIGKILL crash test: many publishers keep acknowledged publishes in flight, the real
//! `natrix-server` process is SIGKILLed at a seeded random moment and restarted on the same store,
//! and then every acknowledged message must be there exactly once, at its acknowledged sequence,
//! with its subject, payload and headers; sequences have no gaps other than deletions; the
//! duplicate window still knows the acknowledged message ids.
//!
//! Every message's content is a pure function of its `Nats-Msg-Id`, so any stored message, acked
//! or not, can be checked for integrity. `NATRIX_CRASH_SEED` replays a run, `NATRIX_CRASH_ROUNDS`
//! sets the number of kills (default 3; `scripts/crash-test.sh` runs the long version). What this
//! proves and what it cannot is in `docs/durability.md`.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fmt;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;

const STREAM: &str = "CRASH";
const DEFAULT_ROUNDS: u32 = 3;
/// Kills in one run, at most, whatever `NATRIX_CRASH_ROUNDS` asks for.
const MAX_ROUNDS: u32 = 10_000;

/// How long a started node may take until its JetStream API answers.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// Attempts to start on a free port before giving up (another process may take the port between
/// our probe and the server's bind).
const START_ATTEMPTS: u32 = 5;
/// How long one publish may wait for its PubAck; a slower ack only counts as unacknowledged.
const ACK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long publishers may keep draining acks that were already on the wire at the kill.
const DRAIN_AFTER_KILL: Duration = Duration::from_millis(300);
/// Publishes per publisher per round, at most (the kill normally comes long before).
const MAX_PUBLISHES: u64 = 200_000;
/// Message deletes per round in the delete variant, at most.
const MAX_DELETES: usize = 24;
/// Older sequences re-read after each restart (all of them are re-read after the last one).
const SAMPLE_OLDER: usize = 256;
/// Sends of the duplicate re-publish whose PubAck timed out, at most.
const DUPLICATE_ATTEMPTS: u32 = 3;
/// Message gets in flight while scanning the stream.
const SCAN_CONCURRENCY: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_publishes_survive_sigkill_exactly_once() {
    crash_test(Variant::PublishOnly).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_publishes_survive_sigkill_with_interleaved_deletes() {
    crash_test(Variant::WithDeletes).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    PublishOnly,
    /// A task deletes acknowledged messages while the publishers run: the only gaps allowed are
    /// the deleted sequences, and an acknowledged delete must stay deleted.
    WithDeletes,
}

async fn crash_test(variant: Variant) {
    let seed = env_u64("NATRIX_CRASH_SEED").unwrap_or_else(|| fastrand::u64(..));
    let rounds = env_u64("NATRIX_CRASH_ROUNDS")
        .map_or(DEFAULT_ROUNDS, |r| u32::try_from(r).unwrap_or(MAX_ROUNDS))
        .clamp(1, MAX_ROUNDS);
    println!(
        "jetstream crash test {variant:?}: NATRIX_CRASH_SEED={seed} NATRIX_CRASH_ROUNDS={rounds}"
    );
    let dir = tempfile::tempdir().expect("a temporary directory for the store");
    let mut run = CrashRun::new(seed, variant, dir.path());
    match run.run(rounds).await {
        Ok(()) => println!("{variant:?} seed {seed}: {}", run.stats),
        Err(err) => {
            let log = run.log_tail(60);
            let kept = dir.keep();
            panic!(
                "{variant:?} crash test failed with NATRIX_CRASH_SEED={seed} \
                 (NATRIX_CRASH_ROUNDS={rounds}): {err:#}\nstore and server log kept in {}\n\
                 last lines of the server log:\n{log}",
                kept.display()
            );
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={value:?} is not a whole number"),
    }
}

/// Which message a publish is: its id and content are derived from these alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct MsgId {
    round: u32,
    publisher: u32,
    counter: u64,
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}-p{}-{}", self.round, self.publisher, self.counter)
    }
}

impl MsgId {
    fn parse(s: &str) -> Option<MsgId> {
        let mut parts = s.strip_prefix('r')?.split('-');
        let round = parts.next()?.parse().ok()?;
        let publisher = parts.next()?.strip_prefix('p')?.parse().ok()?;
        let counter = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(MsgId {
            round,
            publisher,
            counter,
        })
    }

    /// A seed for the content, different for every id.
    fn content_seed(self) -> u64 {
        (u64::from(self.round) << 48) ^ (u64::from(self.publisher) << 40) ^ self.counter
    }
}

/// What a message with a given id must look like wherever it is stored.
#[derive(Debug, PartialEq)]
struct Content {
    subject: String,
    /// Header lines in the order of names (a name's values in the order sent).
    headers: Vec<(String, String)>,
    payload: Bytes,
}

impl Content {
    fn of(id: MsgId) -> Content {
        let mut rng = fastrand::Rng::with_seed(id.content_seed());
        let subject = match id.counter % 3 {
            0 => "crash.a".to_owned(),
            1 => format!("crash.b.{}", id.publisher),
            _ => format!("crash.c.{}.{}", id.publisher, id.counter % 7),
        };
        // Mostly small payloads, some empty, a few large enough to span many blocks.
        let len = match rng.u32(..100) {
            0..=4 => 0,
            5..=7 => rng.usize(16 << 10..=64 << 10),
            _ => rng.usize(1..=1024),
        };
        let payload: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
        let mut headers = vec![
            ("Crash-Len".to_owned(), len.to_string()),
            (
                "Crash-Origin".to_owned(),
                format!("{}/{}", id.publisher, id.counter),
            ),
            ("Nats-Msg-Id".to_owned(), id.to_string()),
        ];
        if id.counter.is_multiple_of(5) {
            headers.push(("Crash-Multi".to_owned(), "one".to_owned()));
            headers.push(("Crash-Multi".to_owned(), "two".to_owned()));
        }
        headers.sort_by(|a, b| a.0.cmp(&b.0));
        Content {
            subject,
            headers,
            payload: Bytes::from(payload),
        }
    }

    fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            map.append(name.as_str(), value.as_str());
        }
        map
    }

    /// Publishes this content; the returned future resolves to the PubAck.
    async fn publish(
        self,
        js: &jetstream::Context,
    ) -> Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError> {
        let headers = self.header_map();
        js.publish_with_headers(self.subject, headers, self.payload)
            .await
    }
}

/// The lines of a stored header block (`NATS/1.0\r\nName: value\r\n…\r\n`), in the order of
/// names. (async-nats' own parser keeps only the last value of a repeated name.)
fn parse_header_block(block: &[u8]) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::str::from_utf8(block).context("header block is not UTF-8")?;
    let body = text
        .strip_prefix("NATS/1.0\r\n")
        .and_then(|t| t.strip_suffix("\r\n\r\n"))
        .ok_or_else(|| anyhow!("malformed header block {text:?}"))?;
    let mut lines = Vec::new();
    for line in body.split("\r\n") {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| anyhow!("malformed header line {line:?} in {text:?}"))?;
        lines.push((name.to_owned(), value.trim().to_owned()));
    }
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(lines)
}

/// What the test knows happened: acknowledged publishes and deletes, attempted deletes.
#[derive(Default)]
struct Ledger {
    /// Every acknowledged publish and the sequence its PubAck named.
    acked: BTreeMap<MsgId, u64>,
    /// Sequences a delete was sent for, acknowledged or not.
    delete_attempted: BTreeSet<u64>,
    /// Sequences whose delete was acknowledged: they must never come back.
    delete_confirmed: BTreeSet<u64>,
    /// Sequences known stored, and the id stored there.
    present: BTreeMap<u64, MsgId>,
    /// Where each present id is stored (the inverse of `present`).
    seq_of: HashMap<MsgId, u64>,
    /// Sequences verified so far: every one up to here is in `present` or known missing.
    verified_up_to: u64,
}

#[derive(Default)]
struct Stats {
    rounds: u32,
    kills: u32,
    starts: u32,
    acked: u64,
    unacked: u64,
    stored_unacked: u64,
    deletes_confirmed: u64,
    deletes_attempted: u64,
    duplicate_checks: u32,
    recovery: Vec<Duration>,
    stored: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = self.recovery.iter().max().copied().unwrap_or_default();
        let total: Duration = self.recovery.iter().sum();
        let mean = total / u32::try_from(self.recovery.len().max(1)).unwrap_or(1);
        write!(
            f,
            "{} rounds, {} SIGKILLs, {} starts; {} publishes acked, {} not acked \
             ({} of those stored anyway); {} messages stored at the end; deletes {} acked of {} sent; \
             {} duplicate re-publishes checked; recovery (spawn to first JetStream answer) \
             mean {:.0} ms, max {:.0} ms",
            self.rounds,
            self.kills,
            self.starts,
            self.acked,
            self.unacked,
            self.stored_unacked,
            self.stored,
            self.deletes_confirmed,
            self.deletes_attempted,
            self.duplicate_checks,
            mean.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
        )
    }
}

struct CrashRun {
    rng: fastrand::Rng,
    variant: Variant,
    store_dir: PathBuf,
    log_path: PathBuf,
    ledger: Ledger,
    stats: Stats,
}

/// A `natrix-server` process and a client connected to it.
struct Node {
    child: Child,
    client: async_nats::Client,
    js: jetstream::Context,
}

impl Drop for Node {
    fn drop(&mut self) {
        // A failing test must not leave a server behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one publisher saw in one round.
#[derive(Default)]
struct PublisherReport {
    acked: Vec<(MsgId, u64)>,
    unacked: u64,
    /// A PubAck that claimed a fresh id was a duplicate, or named another stream.
    wrong: Vec<String>,
}

impl CrashRun {
    fn new(seed: u64, variant: Variant, dir: &Path) -> CrashRun {
        CrashRun {
            rng: fastrand::Rng::with_seed(seed),
            variant,
            store_dir: dir.join("store"),
            log_path: dir.join("server.log"),
            ledger: Ledger::default(),
            stats: Stats::default(),
        }
    }

    async fn run(&mut self, rounds: u32) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60 + 30 * u64::from(rounds));
        for round in 0..rounds {
            ensure!(
                Instant::now() < deadline,
                "round {round}: the run exceeded its deadline"
            );
            let node = self.start(round).await?;
            if round == 0 {
                create_stream(&node.js).await?;
            } else {
                self.verify(&node, round, false)
                    .await
                    .with_context(|| format!("after the SIGKILL of round {}", round - 1))?;
            }
            self.publish_and_kill(node, round)
                .await
                .with_context(|| format!("round {round}"))?;
            self.stats.rounds += 1;
        }
        let node = self.start(rounds).await?;
        self.verify(&node, rounds, true)
            .await
            .with_context(|| format!("after the last SIGKILL (round {})", rounds - 1))?;
        drop(node);
        Ok(())
    }

    /// Starts the server on the store and waits until its JetStream API answers.
    async fn start(&mut self, round: u32) -> anyhow::Result<Node> {
        let mut last_err = anyhow!("no attempt");
        for attempt in 0..START_ATTEMPTS {
            match self.try_start(round).await {
                Ok(node) => return Ok(node),
                Err(err) => {
                    println!("round {round}: start attempt {attempt} failed: {err:#}");
                    last_err = err;
                }
            }
        }
        Err(last_err.context(format!(
            "round {round}: natrix-server did not start in {START_ATTEMPTS} attempts"
        )))
    }

    async fn try_start(&mut self, round: u32) -> anyhow::Result<Node> {
        let port = free_port()?;
        let spawned = Instant::now();
        let port_arg = port.to_string();
        let args = ["-js", "-a", "127.0.0.1", "-p", &port_arg, "-sd"]
            .map(OsStr::new)
            .into_iter()
            .chain([self.store_dir.as_os_str()]);
        let mut child = support::spawn_logged(
            args,
            &self.log_path,
            &format!("crash test: round {round}, start on port {port}"),
        )?;
        let ready = wait_ready(&mut child, port).await;
        match ready {
            Ok(js) => {
                let took = spawned.elapsed();
                self.stats.starts += 1;
                self.stats.recovery.push(took);
                println!(
                    "round {round}: started on port {port}, JetStream answered after {took:?}"
                );
                Ok(Node {
                    child,
                    client: js.client(),
                    js,
                })
            }
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(err)
            }
        }
    }

    /// Runs the publishers (and the deleter) until a seeded moment, SIGKILLs the node and waits
    /// for it to be gone, recording every acknowledgement that arrived.
    async fn publish_and_kill(&mut self, mut node: Node, round: u32) -> anyhow::Result<()> {
        let publishers = self.rng.u32(3..=8);
        let window = self.rng.usize(8..=128);
        let kill_after = Duration::from_millis(self.rng.u64(50..=400));
        let (stop_tx, stop_rx) = watch::channel(false);
        let acked_seqs = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for publisher in 0..publishers {
            tasks.push(tokio::spawn(publish(
                node.js.clone(),
                round,
                publisher,
                window,
                stop_rx.clone(),
                acked_seqs.clone(),
            )));
        }
        let deleter = (self.variant == Variant::WithDeletes).then(|| {
            tokio::spawn(delete_acked(
                node.js.clone(),
                self.rng.u64(..),
                stop_rx.clone(),
                acked_seqs.clone(),
            ))
        });
        tokio::time::sleep(kill_after).await;
        node.child.kill().context("SIGKILL natrix-server")?;
        let status = node.child.wait().context("reaping natrix-server")?;
        let _ = stop_tx.send(true);
        self.stats.kills += 1;

        let mut acked = 0;
        let mut unacked = 0;
        for task in tasks {
            let report = task.await.context("a publisher task panicked")?;
            ensure!(report.wrong.is_empty(), "wrong PubAcks: {:?}", report.wrong);
            acked += report.acked.len();
            unacked += report.unacked;
            for (id, seq) in report.acked {
                if let Some(other) = self.ledger.acked.insert(id, seq) {
                    bail!("{id} was acknowledged twice, at {other} and {seq}");
                }
            }
        }
        if let Some(deleter) = deleter {
            let (attempted, confirmed) = deleter.await.context("the deleter task panicked")?;
            self.stats.deletes_attempted += attempted.len() as u64;
            self.stats.deletes_confirmed += confirmed.len() as u64;
            self.ledger.delete_attempted.extend(attempted);
            self.ledger.delete_confirmed.extend(confirmed);
        }
        self.stats.acked += acked as u64;
        self.stats.unacked += unacked;
        println!(
            "round {round}: {publishers} publishers × {window} in flight, SIGKILL after \
             {kill_after:?} ({status}); {acked} acked, {unacked} not acked"
        );
        drop(node);
        Ok(())
    }

    /// Checks the restarted node against the ledger. `full`: re-read every sequence.
    async fn verify(&mut self, node: &Node, round: u32, full: bool) -> anyhow::Result<()> {
        let mut stream = node.js.get_stream(STREAM).await.context("stream lookup")?;
        let info = stream.info().await.context("stream info")?.clone();
        let state = &info.state;
        let max_acked = self.ledger.acked.values().max().copied().unwrap_or(0);
        ensure!(
            state.last_sequence >= max_acked,
            "last_seq {} is below the highest acknowledged sequence {max_acked}",
            state.last_sequence
        );

        // Everything stored since the last check: no gap but deletions, every message intact,
        // no id twice.
        let from = self.ledger.verified_up_to + 1;
        let scanned = scan(&node.client, from..=state.last_sequence).await?;
        for (seq, found) in &scanned {
            match found {
                Some(id) => self.record_present(*seq, *id)?,
                None => ensure!(
                    self.ledger.delete_attempted.contains(seq),
                    "sequence {seq} is missing but was never deleted (a gap)"
                ),
            }
        }
        self.ledger.verified_up_to = state.last_sequence;

        // Deletes: acknowledged ones must stay deleted; unacknowledged ones either happened or
        // left the message intact.
        let deleted: Vec<u64> = self.ledger.delete_attempted.iter().copied().collect();
        for (seq, found) in scan_seqs(&node.client, &deleted).await? {
            match found {
                Some(id) => {
                    ensure!(
                        !self.ledger.delete_confirmed.contains(&seq),
                        "sequence {seq} ({id}) was deleted with an acknowledgement but came back"
                    );
                    ensure!(
                        self.ledger.present.get(&seq) == Some(&id),
                        "sequence {seq} holds {id}, expected {:?}",
                        self.ledger.present.get(&seq)
                    );
                }
                None => {
                    if let Some(id) = self.ledger.present.remove(&seq) {
                        self.ledger.seq_of.remove(&id);
                    }
                }
            }
        }

        // Older messages: a seeded sample (all of them on the last check) must be unchanged.
        let older: Vec<u64> = self
            .ledger
            .present
            .range(..from)
            .map(|(seq, _)| *seq)
            .collect();
        let mut sample = older;
        if !full {
            self.rng.shuffle(&mut sample);
            sample.truncate(SAMPLE_OLDER);
        }
        for (seq, found) in scan_seqs(&node.client, &sample).await? {
            let expected = self.ledger.present.get(&seq).copied();
            ensure!(
                found == expected,
                "sequence {seq} held {expected:?} before this restart and holds {found:?} now"
            );
        }

        // Every acknowledged publish is where its PubAck said, unless it was deleted since.
        for (id, seq) in &self.ledger.acked {
            match self.ledger.seq_of.get(id) {
                Some(stored) => ensure!(
                    stored == seq,
                    "{id} was acknowledged at sequence {seq} but is stored at {stored}"
                ),
                None => ensure!(
                    self.ledger.delete_attempted.contains(seq),
                    "{id}, acknowledged at sequence {seq}, is lost"
                ),
            }
        }

        // The stream's own accounting agrees with what is stored.
        let present = self.ledger.present.len() as u64;
        ensure!(
            state.messages == present,
            "stream state says {} messages, {present} are stored",
            state.messages
        );
        let first = self
            .ledger
            .present
            .keys()
            .next()
            .copied()
            .unwrap_or(state.last_sequence + 1);
        ensure!(
            state.messages == 0 || state.first_sequence == first,
            "stream state's first_seq {} is not the first stored sequence {first}",
            state.first_sequence
        );
        if self.variant == Variant::PublishOnly {
            ensure!(
                state.first_sequence == 1 && state.messages == state.last_sequence,
                "without deletes the stream must hold 1..={} but holds {} messages from {}",
                state.last_sequence,
                state.messages,
                state.first_sequence
            );
        }
        self.stats.stored = present;
        self.stats.stored_unacked = self
            .ledger
            .seq_of
            .keys()
            .filter(|id| !self.ledger.acked.contains_key(id))
            .count() as u64;

        self.check_duplicate_window(node, round).await?;
        println!(
            "round {round}: verified sequences {from}..={} ({present} stored, first {}, \
             {} older re-read)",
            state.last_sequence,
            state.first_sequence,
            if full { "all" } else { "sampled" }
        );
        Ok(())
    }

    fn record_present(&mut self, seq: u64, id: MsgId) -> anyhow::Result<()> {
        ensure!(
            !self.ledger.delete_confirmed.contains(&seq),
            "sequence {seq} ({id}) was deleted with an acknowledgement but is stored"
        );
        if let Some(other) = self.ledger.seq_of.insert(id, seq) {
            bail!("{id} is stored twice, at sequences {other} and {seq}");
        }
        self.ledger.present.insert(seq, id);
        Ok(())
    }

    /// Re-publishes a message acknowledged just before the kill: within the duplicate window it
    /// must come back as a duplicate of its original sequence, and store nothing.
    async fn check_duplicate_window(&mut self, node: &Node, round: u32) -> anyhow::Result<()> {
        let Some(previous) = round.checked_sub(1) else {
            return Ok(());
        };
        let candidates: Vec<(MsgId, u64)> = self
            .ledger
            .acked
            .iter()
            .filter(|(id, seq)| id.round == previous && self.ledger.present.get(seq) == Some(*id))
            .map(|(id, seq)| (*id, *seq))
            .collect();
        if candidates.is_empty() {
            println!("round {round}: no acked message of round {previous} to re-publish");
            return Ok(());
        }
        let (id, seq) = candidates[self.rng.usize(..candidates.len())];
        // A PubAck that times out leaves the outcome unknown; sending the same id again is the
        // same check.
        let mut attempt = 0;
        let ack = loop {
            attempt += 1;
            let result = Content::of(id)
                .publish(&node.js)
                .await
                .context("re-publishing an acknowledged id")?
                .await;
            match result {
                Ok(ack) => break ack,
                Err(err)
                    if err.kind() == jetstream::context::PublishErrorKind::TimedOut
                        && attempt < DUPLICATE_ATTEMPTS => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("PubAck of the re-published {id}"));
                }
            }
        };
        ensure!(
            ack.duplicate && ack.sequence == seq,
            "re-publishing {id} (acked at {seq}) after the restart answered seq {} duplicate {}",
            ack.sequence,
            ack.duplicate
        );
        self.stats.duplicate_checks += 1;
        Ok(())
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// A port nothing listens on right now (the server may still lose it to someone else: then the
/// start is retried on another).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("probing a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Connects once the node accepts clients and returns when its JetStream API answers.
async fn wait_ready(child: &mut Child, port: u16) -> anyhow::Result<jetstream::Context> {
    let deadline = Instant::now() + START_DEADLINE;
    let mut client = None;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!("natrix-server exited during start: {status}");
        }
        let connected = match &client {
            Some(c) => Some(c),
            None => {
                client = connect(port).await.ok();
                client.as_ref()
            }
        };
        if let Some(c) = connected
            && jetstream_answers(c).await
        {
            return Ok(context(c.clone()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!(
        "natrix-server on port {port} did not answer JetStream requests within {START_DEADLINE:?}"
    )
}

/// Whether `$JS.API.INFO` answers without an error. (Read as JSON rather than with async-nats'
/// `query_account`, which also requires fields this test does not depend on.)
async fn jetstream_answers(client: &async_nats::Client) -> bool {
    let reply = tokio::time::timeout(
        Duration::from_secs(2),
        client.request("$JS.API.INFO", Bytes::new()),
    )
    .await;
    let Ok(Ok(msg)) = reply else { return false };
    serde_json::from_slice::<serde_json::Value>(&msg.payload).is_ok_and(|v| {
        v["type"] == "io.nats.jetstream.api.v1.account_info_response" && v.get("error").is_none()
    })
}

async fn connect(port: u16) -> anyhow::Result<async_nats::Client> {
    // One reconnect attempt at most: after the kill the client must give up (failing the acks
    // still in flight) rather than replay its buffered publishes into the next node.
    let client = async_nats::ConnectOptions::new()
        .max_reconnects(1)
        .connection_timeout(Duration::from_secs(2))
        .connect(format!("nats://127.0.0.1:{port}"))
        .await?;
    Ok(client)
}

fn context(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .ack_timeout(ACK_TIMEOUT)
        .build(client)
}

async fn create_stream(js: &jetstream::Context) -> anyhow::Result<()> {
    js.create_stream(stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![
            "crash.a".to_owned(),
            "crash.b.*".to_owned(),
            "crash.c.>".to_owned(),
        ],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .context("creating the stream")?;
    Ok(())
}

/// One publisher: keeps `window` publishes in flight until the stop signal, then collects the
/// acks that were already on the wire.
async fn publish(
    js: jetstream::Context,
    round: u32,
    publisher: u32,
    window: usize,
    mut stop: watch::Receiver<bool>,
    acked_seqs: Arc<Mutex<Vec<u64>>>,
) -> PublisherReport {
    let mut report = PublisherReport::default();
    let mut in_flight = FuturesUnordered::new();
    let mut counter = 0;
    let mut stopped = false;
    while !stopped && counter < MAX_PUBLISHES {
        while in_flight.len() < window && counter < MAX_PUBLISHES {
            let id = MsgId {
                round,
                publisher,
                counter,
            };
            counter += 1;
            let sent = tokio::time::timeout(ACK_TIMEOUT, Content::of(id).publish(&js)).await;
            match sent {
                Ok(Ok(ack)) => in_flight.push(async move { (id, ack.await) }),
                _ => {
                    report.unacked += 1;
                    stopped = true;
                    break;
                }
            }
        }
        tokio::select! {
            Some((id, result)) = in_flight.next() => {
                note_ack(&mut report, &acked_seqs, id, result);
            }
            _ = stop.changed() => stopped = true,
        }
    }
    let drain = tokio::time::sleep(DRAIN_AFTER_KILL);
    tokio::pin!(drain);
    loop {
        tokio::select! {
            next = in_flight.next() => match next {
                Some((id, result)) => note_ack(&mut report, &acked_seqs, id, result),
                None => break,
            },
            () = &mut drain => break,
        }
    }
    report.unacked += in_flight.len() as u64;
    report
}

fn note_ack(
    report: &mut PublisherReport,
    acked_seqs: &Mutex<Vec<u64>>,
    id: MsgId,
    result: Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
) {
    match result {
        Ok(ack) if ack.stream == STREAM && !ack.duplicate => {
            report.acked.push((id, ack.sequence));
            if let Ok(mut seqs) = acked_seqs.lock() {
                seqs.push(ack.sequence);
            }
        }
        Ok(ack) => report.wrong.push(format!("{id}: {ack:?}")),
        Err(_) => report.unacked += 1,
    }
}

/// Deletes acknowledged messages at seeded moments while the publishers run; returns the
/// sequences it sent deletes for and those whose delete was acknowledged.
async fn delete_acked(
    js: jetstream::Context,
    seed: u64,
    mut stop: watch::Receiver<bool>,
    acked_seqs: Arc<Mutex<Vec<u64>>>,
) -> (Vec<u64>, Vec<u64>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut attempted = Vec::new();
    let mut confirmed = Vec::new();
    let Ok(stream) = js.get_stream(STREAM).await else {
        return (attempted, confirmed);
    };
    while attempted.len() < MAX_DELETES {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(rng.u64(5..=40))) => {}
            _ = stop.changed() => break,
        }
        let pick = acked_seqs
            .lock()
            .ok()
            .and_then(|seqs| (!seqs.is_empty()).then(|| seqs[rng.usize(..seqs.len())]));
        let Some(seq) = pick else { continue };
        if attempted.contains(&seq) {
            continue;
        }
        attempted.push(seq);
        let deleted = tokio::select! {
            r = stream.delete_message(seq) => r,
            _ = stop.changed() => break,
        };
        if let Ok(true) = deleted {
            confirmed.push(seq);
        }
    }
    (attempted, confirmed)
}

/// Reads sequences `range` (see [`scan_seqs`]).
async fn scan(
    client: &async_nats::Client,
    range: std::ops::RangeInclusive<u64>,
) -> anyhow::Result<BTreeMap<u64, Option<MsgId>>> {
    let seqs: Vec<u64> = range.collect();
    scan_seqs(client, &seqs).await
}

/// Reads each sequence: `None` when no message is stored there, else the id of an intact message
/// (any message whose subject, headers or payload differ from what its id derives is an error).
async fn scan_seqs(
    client: &async_nats::Client,
    seqs: &[u64],
) -> anyhow::Result<BTreeMap<u64, Option<MsgId>>> {
    let mut out = BTreeMap::new();
    let mut reads = futures::stream::iter(seqs.iter().copied())
        .map(|seq| async move { (seq, read(client, seq).await) })
        .buffer_unordered(SCAN_CONCURRENCY);
    while let Some((seq, found)) = reads.next().await {
        out.insert(seq, found.with_context(|| format!("sequence {seq}"))?);
    }
    Ok(out)
}

/// One `$JS.API.STREAM.MSG.GET`, read as JSON so that the stored header block is seen as stored.
async fn read(client: &async_nats::Client, seq: u64) -> anyhow::Result<Option<MsgId>> {
    let request = serde_json::json!({ "seq": seq }).to_string();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(
            format!("$JS.API.STREAM.MSG.GET.{STREAM}"),
            Bytes::from(request),
        ),
    )
    .await
    .context("message get timed out")?
    .context("message get")?;
    let body: serde_json::Value =
        serde_json::from_slice(&reply.payload).context("message get reply is not JSON")?;
    if let Some(error) = body.get("error") {
        if error["err_code"] == 10037 {
            return Ok(None);
        }
        bail!("message get: {error}");
    }
    let msg = &body["message"];
    ensure!(
        msg["seq"] == seq,
        "message get answered {msg} for sequence {seq}"
    );
    let decode = |field: &str| -> anyhow::Result<Vec<u8>> {
        match msg[field].as_str() {
            Some(b64) => BASE64
                .decode(b64)
                .with_context(|| format!("{field} is not base64")),
            None => Ok(Vec::new()),
        }
    };
    let headers = parse_header_block(&decode("hdrs")?)?;
    let raw_id = headers
        .iter()
        .find(|(name, _)| name == "Nats-Msg-Id")
        .map(|(_, value)| value.clone())
        .ok_or_else(|| anyhow!("stored message has no Nats-Msg-Id: {msg}"))?;
    let id = MsgId::parse(&raw_id).ok_or_else(|| anyhow!("unknown Nats-Msg-Id {raw_id:?}"))?;
    let found = Content {
        subject: msg["subject"].as_str().unwrap_or_default().to_owned(),
        headers,
        payload: Bytes::from(decode("data")?),
    };
    let expected = Content::of(id);
    if found != expected {
        bail!(
            "{id} is damaged: subject {:?} (expected {:?}), {} payload bytes (expected {}, \
             equal: {}), headers {:?} (expected {:?})",
            found.subject,
            expected.subject,
            found.payload.len(),
            expected.payload.len(),
            found.payload == expected.payload,
            found.headers,
            expected.headers
        );
    }
    Ok(Some(id))
}
