//! Request/reply: each requester keeps exactly one request in flight on its own connection,
//! responders echo the payload back, and every round trip is recorded in an HdrHistogram.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::{Client, Subject, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::{Barrier, watch};
use tokio::task::JoinHandle;

use crate::connect::{EventCounters, connect_many};
use crate::result::{BenchResult, Rates};
use crate::{Plan, progress};

const SUBJECT: &str = "natrix.bench.rpc";
const RESPONDER_GROUP: &str = "natrix-bench-responders";
/// Latencies above this are clamped; a minute is far past the request timeout.
const MAX_TRACKED_NS: u64 = 60_000_000_000;
const TICK: Duration = Duration::from_millis(50);

/// What one requester measured.
struct Requested {
    sent: u64,
    answered: u64,
    bytes: u64,
    finished: Instant,
    latency_ns: Histogram<u64>,
}

pub async fn run(plan: &Plan) -> Result<BenchResult> {
    let args = &plan.args;
    let events = Arc::new(EventCounters::default());

    let responder_clients = connect_many(
        &args.server,
        "responder",
        plan.subs,
        plan.sub_capacity(),
        &events,
    )
    .await?;
    let mut subscriptions = Vec::with_capacity(plan.subs);
    for client in &responder_clients {
        // With several responders, a queue group makes each request answered exactly once.
        let sub = if plan.subs > 1 {
            client
                .queue_subscribe(SUBJECT, RESPONDER_GROUP.to_owned())
                .await
        } else {
            client.subscribe(SUBJECT).await
        }
        .context("subscribing responder")?;
        subscriptions.push(sub);
    }
    for client in &responder_clients {
        client.flush().await.context("flushing responder")?;
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let responders: Vec<JoinHandle<()>> = responder_clients
        .iter()
        .zip(subscriptions)
        .map(|(client, sub)| tokio::spawn(respond_loop(client.clone(), sub, stop_rx.clone())))
        .collect();

    let requester_clients = connect_many(
        &args.server,
        "requester",
        plan.pubs,
        plan.sub_capacity(),
        &events,
    )
    .await?;
    let server_version = requester_clients
        .first()
        .map(|c| c.server_info().version)
        .unwrap_or_default();
    let payload = Bytes::from(vec![b'x'; args.size]);
    let barrier = Arc::new(Barrier::new(plan.pubs + 1));
    let counters: Vec<Arc<AtomicU64>> = (0..plan.pubs).map(|_| Arc::default()).collect();
    let window = plan.publish_window();
    let requesters: Vec<JoinHandle<Result<Requested>>> = requester_clients
        .iter()
        .enumerate()
        .map(|(i, client)| {
            tokio::spawn(request_loop(
                client.clone(),
                payload.clone(),
                plan.quota(i),
                window,
                Arc::clone(&counters[i]),
                Arc::clone(&barrier),
            ))
        })
        .collect();

    let bar = progress::bar(
        args.progress,
        args.duration.is_none().then_some(plan.msgs),
        "reqrep",
    );
    barrier.wait().await;
    let start = Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    // Requesters bound themselves by quota and window; this loop only drives the bar.
    while !requesters.iter().all(JoinHandle::is_finished) {
        ticker.tick().await;
        bar.set_position(counters.iter().map(|c| c.load(Ordering::Relaxed)).sum());
    }
    bar.finish_and_clear();

    let mut sent = 0;
    let mut answered = 0;
    let mut bytes = 0;
    let mut finished = start;
    let mut latency_ns = new_histogram()?;
    for task in requesters {
        let r = task.await.context("requester task panicked")??;
        sent += r.sent;
        answered += r.answered;
        bytes += r.bytes;
        finished = finished.max(r.finished);
        latency_ns
            .add(&r.latency_ns)
            .context("merging latency histograms")?;
    }
    let _ = stop_tx.send(true);
    for task in responders {
        task.await.context("responder task panicked")?;
    }

    let elapsed_s = finished.duration_since(start).as_secs_f64();
    let rates = Rates::new(sent, elapsed_s, answered, bytes, elapsed_s);
    let us =
        |q: f64| (!latency_ns.is_empty()).then(|| latency_ns.value_at_quantile(q) as f64 / 1000.0);
    Ok(BenchResult {
        scenario: plan.scenario.name().to_owned(),
        server: args.label.clone(),
        server_version,
        round: args.round,
        size: args.size,
        pubs: plan.pubs,
        subs: plan.subs,
        msgs: sent,
        expected: sent,
        received: answered,
        lost: sent.saturating_sub(answered),
        client_dropped: 0,
        bytes,
        elapsed_s,
        publish_elapsed_s: elapsed_s,
        publish_msgs_per_s: rates.publish_msgs_per_s,
        receive_msgs_per_s: rates.receive_msgs_per_s,
        receive_mb_per_s: rates.receive_mb_per_s,
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        max_us: (!latency_ns.is_empty()).then(|| latency_ns.max() as f64 / 1000.0),
        peak_rss_kib: None,
        client_cpu_s: crate::result::own_cpu_seconds(),
        server_cpu_s: None,
        other_cpu_pct: None,
        machine_busy: None,
        ..BenchResult::default()
    })
}

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3).context("creating latency histogram")
}

/// Echoes every request's payload to its reply subject until stopped.
async fn respond_loop(client: Client, mut sub: Subscriber, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            msg = sub.next() => {
                let Some(msg) = msg else { break };
                if let Some(reply) = msg.reply
                    && client.publish(reply, msg.payload).await.is_err()
                {
                    break;
                }
            }
            _ = stop.changed() => break,
        }
    }
}

async fn request_loop(
    client: Client,
    payload: Bytes,
    quota: u64,
    window: Duration,
    counter: Arc<AtomicU64>,
    barrier: Arc<Barrier>,
) -> Result<Requested> {
    let subject = Subject::from_static(SUBJECT);
    let mut latency_ns = new_histogram()?;
    barrier.wait().await;
    let deadline = Instant::now() + window;
    let (mut sent, mut answered, mut bytes) = (0u64, 0u64, 0u64);
    while sent < quota && Instant::now() < deadline {
        let t0 = Instant::now();
        sent += 1;
        // A timed-out or failed request counts as lost; the run goes on.
        if let Ok(reply) = client.request(subject.clone(), payload.clone()).await {
            let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
            latency_ns.saturating_record(ns.clamp(1, MAX_TRACKED_NS));
            answered += 1;
            bytes += reply.payload.len() as u64;
        }
        counter.store(sent, Ordering::Relaxed);
    }
    Ok(Requested {
        sent,
        answered,
        bytes,
        finished: Instant::now(),
        latency_ns,
    })
}
