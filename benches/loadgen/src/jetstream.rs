//! JetStream scenarios: publish with a bounded window of unacknowledged publishes (`js-pub`),
//! pull-consume a stored stream with acks (`js-consume`), and key-value put then get (`kv`).
//! Every run starts from a freshly created file-storage stream or bucket, so rounds do not
//! inherit each other's data.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use async_nats::jetstream::{self, Context, consumer, kv, stream};
use async_nats::{Client, Subject};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;

use crate::connect::{EventCounters, connect};
use crate::progress;
use crate::result::{BenchResult, Rates, own_cpu_seconds};

/// Subject the benchmark stream captures (`natrix.bench.js.>`); publishes go to `.msg`.
const SUBJECT: &str = "natrix.bench.js.msg";
const SUBJECTS: &str = "natrix.bench.js.>";
/// Latencies above this are clamped; a minute is far past any ack timeout.
const MAX_TRACKED_NS: u64 = 60_000_000_000;
/// Upper bound on `--in-flight`: every pending ack holds a client-side inbox entry.
const MAX_IN_FLIGHT: usize = 65_536;
/// The client buffer of the connection that receives pull batches and acks.
const SUB_CAPACITY: usize = 65_536;

/// Options shared by the JetStream scenarios.
#[derive(Args, Debug, Clone)]
pub struct JsArgs {
    /// Server URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub server: String,
    /// Label for this server in results (e.g. natrix, nats-2.15.1).
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Messages to publish (js-pub, js-consume: stored then consumed; kv: keys put then read).
    #[arg(long, alias = "msgs", default_value_t = 100_000)]
    pub count: u64,
    /// Payload (value) size in bytes.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Publishes (or KV operations) kept in flight, unacknowledged, at once.
    #[arg(long, default_value_t = 1)]
    pub in_flight: usize,
    /// Stream (js-pub, js-consume) or bucket (kv) name; deleted first if it exists.
    #[arg(long, default_value = "NATRIX_BENCH")]
    pub stream: String,
    /// Messages per pull request (js-consume).
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// How js-consume acknowledges: every message (the fair default), the last of each batch
    /// (AckPolicy::All), or not at all (AckPolicy::None).
    #[arg(long, value_enum, default_value_t = AckMode::Explicit)]
    pub ack: AckMode,
    /// Publishes in flight while js-consume fills the stream before consuming it.
    #[arg(long, default_value_t = 256)]
    pub fill_in_flight: usize,
    /// Replicas of the stream (js-pub, js-consume) or bucket (kv): 3 or 5 against a cluster.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// Where the stream's leader must be for js-pub against a cluster: on the node the client
    /// is connected to (`here`), on another node (`elsewhere`, every publish is forwarded), or
    /// wherever placement put it (`any`). Moved with `$JS.API.STREAM.LEADER.STEPDOWN`.
    #[arg(long, value_enum, default_value_t = LeaderPlace::Any)]
    pub leader: LeaderPlace,
    /// Print exactly one JSON result line per measured operation on stdout.
    #[arg(long)]
    pub json: bool,
    /// Show a progress bar on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Round number recorded in the JSON result (used by run-js.sh).
    #[arg(long, default_value_t = 0)]
    pub round: u32,
    /// Timeout of each JetStream API request and publish ack.
    #[arg(long, value_parser = crate::parse_duration, default_value = "30s")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AckMode {
    Explicit,
    All,
    None,
}

impl AckMode {
    fn name(self) -> &'static str {
        match self {
            AckMode::Explicit => "explicit",
            AckMode::All => "all",
            AckMode::None => "none",
        }
    }

    fn policy(self) -> consumer::AckPolicy {
        match self {
            AckMode::Explicit => consumer::AckPolicy::Explicit,
            AckMode::All => consumer::AckPolicy::All,
            AckMode::None => consumer::AckPolicy::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LeaderPlace {
    Here,
    Elsewhere,
    Any,
}

/// Step-downs tried before giving up on placing the leader.
const LEADER_MOVES_MAX: usize = 20;

/// Moves the leader of stream `name` until it is where `want` says, relative to the node
/// `client` is connected to.
async fn place_leader(client: &Client, js: &Context, name: &str, want: LeaderPlace) -> Result<()> {
    if want == LeaderPlace::Any {
        return Ok(());
    }
    let here = client.server_info().server_name;
    for _ in 0..LEADER_MOVES_MAX {
        let leader = current_leader(js, name).await?;
        if (leader == here) == (want == LeaderPlace::Here) {
            return Ok(());
        }
        let subject = format!("$JS.API.STREAM.LEADER.STEPDOWN.{name}");
        let _ = client.request(subject, Bytes::new()).await;
        // Until a new leader is elected.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match current_leader(js, name).await {
                Ok(now) if !now.is_empty() && now != leader => break,
                _ => {}
            }
        }
    }
    bail!("could not move the leader of {name} ({want:?} relative to {here})")
}

/// The server name of the stream's leader ("" if it has none right now).
async fn current_leader(js: &Context, name: &str) -> Result<String> {
    // Looking the stream up is one STREAM.INFO request; its answer is the info.
    let stream = js
        .get_stream(name)
        .await
        .with_context(|| format!("looking up stream {name}"))?;
    Ok(stream
        .cached_info()
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .unwrap_or_default())
}

impl JsArgs {
    pub fn validate(&self) -> Result<()> {
        if self.count == 0 {
            bail!("--count must be positive");
        }
        if self.size > crate::MAX_PAYLOAD {
            bail!("--size must be at most {} bytes", crate::MAX_PAYLOAD);
        }
        for (name, n) in [
            ("--in-flight", self.in_flight),
            ("--fill-in-flight", self.fill_in_flight),
        ] {
            if !(1..=MAX_IN_FLIGHT).contains(&n) {
                bail!("{name} must be between 1 and {MAX_IN_FLIGHT}");
            }
        }
        if !(1..=100_000).contains(&self.batch) {
            bail!("--batch must be between 1 and 100000");
        }
        Ok(())
    }

    fn base_result(&self, scenario: String, server_version: String) -> BenchResult {
        BenchResult {
            scenario,
            server: self.label.clone(),
            server_version,
            round: self.round,
            size: self.size,
            pubs: 1,
            subs: 0,
            ..BenchResult::default()
        }
    }
}

/// Connects one client and a JetStream context whose own in-flight limit matches ours.
pub async fn connect_js(
    server: &str,
    name: &str,
    in_flight: usize,
    timeout: Duration,
) -> Result<(Client, Context)> {
    let events = Arc::new(EventCounters::default());
    let client = connect(server, name, SUB_CAPACITY, &events).await?;
    let js = jetstream::ContextBuilder::new()
        .timeout(timeout)
        .ack_timeout(timeout)
        .max_ack_inflight(in_flight)
        .backpressure_on_inflight(true)
        .build(client.clone());
    Ok((client, js))
}

/// Deletes `name` if it exists and creates it as a file-storage, limits-retention stream with
/// `replicas` copies.
pub async fn fresh_stream(js: &Context, name: &str, replicas: usize) -> Result<stream::Stream> {
    if js.get_stream(name).await.is_ok() {
        match js.delete_stream(name).await {
            Ok(_) => {}
            // Gone in between (a previous run's delete still settling).
            Err(err) if err.to_string().contains("10059") => {}
            Err(err) => return Err(err).with_context(|| format!("deleting stream {name}")),
        }
    }
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating file stream {name}"))
}

pub fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3).context("creating latency histogram")
}

fn record(hist: &mut Histogram<u64>, elapsed: Duration) {
    let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    hist.saturating_record(ns.clamp(1, MAX_TRACKED_NS));
}

/// What one windowed publish run measured.
pub struct Published {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub latency_ns: Histogram<u64>,
}

/// Publishes `count` messages keeping at most `in_flight` without a PubAck; each ack's latency
/// is measured from just before its publish to when this loop sees it.
pub async fn publish_window(
    js: &Context,
    payload: &Bytes,
    count: u64,
    in_flight: usize,
    bar: &indicatif::ProgressBar,
) -> Result<Published> {
    let subject = Subject::from_static(SUBJECT);
    let mut pending = FuturesUnordered::new();
    let mut latency_ns = new_histogram()?;
    let (mut sent, mut acked, mut failed) = (0u64, 0u64, 0u64);
    let mut first_error: Option<String> = None;
    let start = Instant::now();
    loop {
        if sent < count && pending.len() < in_flight {
            let t0 = Instant::now();
            let ack = js
                .publish(subject.clone(), payload.clone())
                .await
                .context("sending a JetStream publish")?;
            pending.push(async move { (t0, ack.await) });
            sent += 1;
            continue;
        }
        let Some((t0, result)) = pending.next().await else {
            break;
        };
        match result {
            Ok(_) => {
                acked += 1;
                record(&mut latency_ns, t0.elapsed());
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
        if (acked + failed).is_multiple_of(1024) {
            bar.set_position(acked + failed);
        }
    }
    let elapsed = start.elapsed();
    if let Some(e) = first_error {
        eprintln!("natrix-bench: {failed} publishes were not acknowledged; first error: {e}");
    }
    Ok(Published {
        sent,
        acked,
        failed,
        elapsed,
        latency_ns,
    })
}

fn latency_fields(result: &mut BenchResult, hist: &Histogram<u64>) {
    if hist.is_empty() {
        return;
    }
    let us = |q: f64| Some(hist.value_at_quantile(q) as f64 / 1000.0);
    result.p50_us = us(0.5);
    result.p99_us = us(0.99);
    result.p999_us = us(0.999);
    result.max_us = Some(hist.max() as f64 / 1000.0);
}

/// `js-pub`: publishes `--count` messages to a fresh file stream with `--in-flight` unacked.
pub async fn run_publish(args: &JsArgs) -> Result<Vec<BenchResult>> {
    let (client, js) = connect_js(
        &args.server,
        "natrix-bench-js-pub",
        args.in_flight,
        args.timeout,
    )
    .await?;
    let stream = fresh_stream(&js, &args.stream, args.replicas).await?;
    place_leader(&client, &js, &args.stream, args.leader).await?;
    let payload = Bytes::from(vec![b'x'; args.size]);
    let bar = progress::bar(args.progress, Some(args.count), "js-pub");
    let published = publish_window(&js, &payload, args.count, args.in_flight, &bar).await?;
    bar.finish_and_clear();
    let stored = stream
        .get_info()
        .await
        .context("reading stream info")?
        .state
        .messages;
    let _ = js.delete_stream(&args.stream).await;

    let secs = published.elapsed.as_secs_f64();
    let rates = Rates::new(
        published.sent,
        secs,
        published.acked,
        published.acked * args.size as u64,
        secs,
    );
    let placed = match args.leader {
        LeaderPlace::Any => "",
        LeaderPlace::Here => "@leader",
        LeaderPlace::Elsewhere => "@follower",
    };
    let mut result = args.base_result(
        format!("js-pub/{}{placed}", args.in_flight),
        client.server_info().version,
    );
    result.msgs = published.sent;
    result.expected = published.sent;
    result.received = published.acked;
    // A publish counts as lost if it was not acknowledged or the stream does not hold it.
    result.lost = published.sent - published.acked.min(stored);
    result.bytes = published.acked * args.size as u64;
    result.elapsed_s = secs;
    result.publish_elapsed_s = secs;
    result.publish_msgs_per_s = rates.publish_msgs_per_s;
    result.receive_msgs_per_s = rates.receive_msgs_per_s;
    result.receive_mb_per_s = rates.receive_mb_per_s;
    result.in_flight = Some(args.in_flight);
    latency_fields(&mut result, &published.latency_ns);
    result.client_cpu_s = own_cpu_seconds();
    if published.failed > 0 {
        eprintln!("natrix-bench: {} publishes failed", published.failed);
    }
    Ok(vec![result])
}

/// `js-consume`: fills a fresh file stream with `--count` messages, then drains it with a
/// durable pull consumer, `--batch` messages per pull, acknowledging as `--ack` says.
pub async fn run_consume(args: &JsArgs) -> Result<Vec<BenchResult>> {
    let (client, js) = connect_js(
        &args.server,
        "natrix-bench-js-consume",
        args.fill_in_flight,
        args.timeout,
    )
    .await?;
    let stream = fresh_stream(&js, &args.stream, args.replicas).await?;
    let payload = Bytes::from(vec![b'x'; args.size]);
    let bar = progress::bar(args.progress, Some(args.count), "fill");
    let filled = publish_window(&js, &payload, args.count, args.fill_in_flight, &bar).await?;
    bar.finish_and_clear();
    if filled.acked != args.count {
        bail!(
            "filling the stream: {} of {} publishes acknowledged",
            filled.acked,
            args.count
        );
    }

    let batch = args.batch;
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("natrix-bench".to_owned()),
            ack_policy: args.ack.policy(),
            // Room for a few batches whose acks are still on the wire.
            max_ack_pending: i64::try_from(batch.saturating_mul(4).max(1000)).unwrap_or(i64::MAX),
            ..Default::default()
        })
        .await
        .context("creating the pull consumer")?;

    let bar = progress::bar(args.progress, Some(args.count), "js-consume");
    let (mut received, mut bytes) = (0u64, 0u64);
    let mut stalled_pulls = 0u32;
    let start = Instant::now();
    while received < args.count {
        // Never ask for more than is left: a pull for more would wait out its expiry.
        let want = usize::try_from(args.count - received)
            .unwrap_or(usize::MAX)
            .min(batch);
        let mut messages = consumer
            .batch()
            .max_messages(want)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .context("sending a pull request")?;
        let mut got = 0u64;
        let mut last = None;
        while let Some(message) = messages.next().await {
            let message =
                message.map_err(|e| anyhow::anyhow!("receiving a pulled message: {e}"))?;
            got += 1;
            bytes += message.payload.len() as u64;
            match args.ack {
                AckMode::Explicit => message
                    .ack()
                    .await
                    .map_err(|e| anyhow::anyhow!("acking: {e}"))?,
                AckMode::All => last = Some(message),
                AckMode::None => {}
            }
        }
        if let Some(message) = last {
            message
                .ack()
                .await
                .map_err(|e| anyhow::anyhow!("acking: {e}"))?;
        }
        received += got;
        bar.set_position(received);
        if got == 0 {
            stalled_pulls += 1;
            if stalled_pulls >= 3 {
                eprintln!("natrix-bench: three pulls in a row returned nothing; giving up");
                break;
            }
        } else {
            stalled_pulls = 0;
        }
    }
    // The acks are on the wire once flushed; the clock stops there.
    client.flush().await.context("flushing acks")?;
    let secs = start.elapsed().as_secs_f64();
    bar.finish_and_clear();

    // Acks are fire-and-forget: check the server processed them all (bounded wait).
    let mut ack_pending = 0;
    if args.ack != AckMode::None {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info = consumer.get_info().await.context("reading consumer info")?;
            ack_pending = info.num_ack_pending;
            if ack_pending == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if ack_pending > 0 {
            eprintln!("natrix-bench: {ack_pending} acks still pending on the server after 10s");
        }
    }
    let _ = js.delete_stream(&args.stream).await;

    let rates = Rates::new(received, secs, received, bytes, secs);
    let mut result = args.base_result("js-consume".to_owned(), client.server_info().version);
    result.pubs = 0;
    result.subs = 1;
    result.msgs = args.count;
    result.expected = args.count;
    result.received = received;
    result.lost = args.count - received.min(args.count);
    result.bytes = bytes;
    result.elapsed_s = secs;
    // The publish fields describe the fill, which is measured too.
    result.publish_elapsed_s = filled.elapsed.as_secs_f64();
    result.publish_msgs_per_s = filled.acked as f64 / result.publish_elapsed_s.max(1e-9);
    result.receive_msgs_per_s = rates.receive_msgs_per_s;
    result.receive_mb_per_s = rates.receive_mb_per_s;
    result.ack = Some(args.ack.name().to_owned());
    result.in_flight = Some(batch);
    result.client_cpu_s = own_cpu_seconds();
    if ack_pending > 0 {
        result.lost = result.lost.max(ack_pending as u64);
    }
    Ok(vec![result])
}

/// `kv`: puts `--count` distinct keys into a fresh file bucket (history 1) with `--in-flight`
/// puts outstanding, then gets every key back the same way. Two results: `kv-put` and `kv-get`.
pub async fn run_kv(args: &JsArgs) -> Result<Vec<BenchResult>> {
    let (client, js) = connect_js(
        &args.server,
        "natrix-bench-kv",
        args.in_flight,
        args.timeout,
    )
    .await?;
    let bucket = args.stream.clone();
    if js.get_key_value(&bucket).await.is_ok() {
        js.delete_key_value(&bucket)
            .await
            .with_context(|| format!("deleting bucket {bucket}"))?;
    }
    let store = js
        .create_key_value(kv::Config {
            bucket: bucket.clone(),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: args.replicas,
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating file bucket {bucket}"))?;
    let payload = Bytes::from(vec![b'x'; args.size]);
    let version = client.server_info().version;

    let mut results = Vec::with_capacity(2);
    for op in ["put", "get"] {
        let bar = progress::bar(args.progress, Some(args.count), op);
        let mut latency_ns = new_histogram()?;
        let (mut ok, mut failed, mut bytes) = (0u64, 0u64, 0u64);
        let mut first_error: Option<String> = None;
        let start = Instant::now();
        let mut ops = futures::stream::iter(0..args.count)
            .map(|i| {
                let store = store.clone();
                let payload = payload.clone();
                async move {
                    let key = format!("k{i}");
                    let t0 = Instant::now();
                    let outcome: Result<u64> = if op == "put" {
                        store
                            .put(key, payload)
                            .await
                            .map(|_| 0)
                            .map_err(anyhow::Error::from)
                    } else {
                        match store.get(key).await {
                            Ok(Some(value)) => Ok(value.len() as u64),
                            Ok(None) => Err(anyhow::anyhow!("key missing")),
                            Err(e) => Err(e.into()),
                        }
                    };
                    (t0.elapsed(), outcome)
                }
            })
            .buffer_unordered(args.in_flight);
        while let Some((elapsed, outcome)) = ops.next().await {
            match outcome {
                Ok(n) => {
                    ok += 1;
                    bytes += n;
                    record(&mut latency_ns, elapsed);
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
            if (ok + failed).is_multiple_of(1024) {
                bar.set_position(ok + failed);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        if let Some(e) = first_error {
            eprintln!("natrix-bench: kv {op}: {failed} failed; first error: {e}");
        }
        let bytes = if op == "put" {
            ok * args.size as u64
        } else {
            bytes
        };
        let rates = Rates::new(args.count, secs, ok, bytes, secs);
        let mut result = args.base_result(format!("kv-{op}/{}", args.in_flight), version.clone());
        result.msgs = args.count;
        result.expected = args.count;
        result.received = ok;
        result.lost = failed;
        result.bytes = bytes;
        result.elapsed_s = secs;
        result.publish_elapsed_s = secs;
        result.publish_msgs_per_s = rates.publish_msgs_per_s;
        result.receive_msgs_per_s = rates.receive_msgs_per_s;
        result.receive_mb_per_s = rates.receive_mb_per_s;
        result.in_flight = Some(args.in_flight);
        latency_fields(&mut result, &latency_ns);
        result.client_cpu_s = own_cpu_seconds();
        results.push(result);
    }
    let _ = js.delete_key_value(&bucket).await;
    Ok(results)
}
