//! The one-way throughput scenarios (pubsub, fanout, fanin, queue): publishers flood one
//! subject, subscribers count deliveries, and throughput is deliveries divided by the time
//! from the first publish to the last delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::{Client, Subject, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Barrier, watch};
use tokio::task::JoinHandle;

use crate::connect::{EventCounters, connect_many};
use crate::result::{BenchResult, Rates};
use crate::{Plan, Scenario, progress};

const SUBJECT: &str = "natrix.bench.flow";
const QUEUE_GROUP: &str = "natrix-bench";
/// Publishers report progress and check their deadline once per this many messages.
const PUBLISH_BATCH: u64 = 1024;
/// Time for a subscription on one cluster node to reach the publishers' node.
const ROUTE_INTEREST_SETTLE: Duration = Duration::from_millis(500);
/// How often the coordinator samples counters.
const TICK: Duration = Duration::from_millis(20);

/// What one subscriber saw by the time it was told to stop.
struct Delivered {
    received: u64,
    bytes: u64,
    last: Option<Instant>,
}

/// What one publisher did.
struct Published {
    sent: u64,
    flushed: Instant,
}

pub async fn run(plan: &Plan) -> Result<BenchResult> {
    let args = &plan.args;
    let events = Arc::new(EventCounters::default());
    let queue = plan.scenario == Scenario::Queue;
    let deliveries_per_msg = if queue { 1 } else { plan.subs as u64 };

    // Subscribers first, each on its own connection, flushed so the server has registered
    // every interest before the first publish.
    let sub_server = args.sub_server.as_deref().unwrap_or(&args.server);
    let sub_clients =
        connect_many(sub_server, "sub", plan.subs, plan.sub_capacity(), &events).await?;
    let mut subscribers = Vec::with_capacity(plan.subs);
    for client in &sub_clients {
        let sub = if queue {
            client
                .queue_subscribe(SUBJECT, QUEUE_GROUP.to_owned())
                .await
        } else {
            client.subscribe(SUBJECT).await
        }
        .context("subscribing")?;
        subscribers.push(sub);
    }
    for client in &sub_clients {
        client.flush().await.context("flushing subscriptions")?;
    }
    let pub_clients =
        connect_many(&args.server, "pub", plan.pubs, plan.sub_capacity(), &events).await?;
    if sub_server != args.server {
        // The subscribers' node announces their interest to the publishers' node over the
        // route asynchronously; messages published before it arrives would count as lost.
        tokio::time::sleep(ROUTE_INTEREST_SETTLE).await;
    }
    let server_version = pub_clients
        .first()
        .map(|c| c.server_info().version)
        .unwrap_or_default();

    let (stop_tx, stop_rx) = watch::channel(false);
    let sub_counters: Vec<Arc<AtomicU64>> = (0..plan.subs).map(|_| Arc::default()).collect();
    let sub_tasks: Vec<JoinHandle<Delivered>> = subscribers
        .into_iter()
        .zip(&sub_counters)
        .map(|(sub, counter)| {
            tokio::spawn(subscribe_loop(sub, Arc::clone(counter), stop_rx.clone()))
        })
        .collect();

    let payload = Bytes::from(vec![b'x'; args.size]);
    let barrier = Arc::new(Barrier::new(plan.pubs + 1));
    let pub_counters: Vec<Arc<AtomicU64>> = (0..plan.pubs).map(|_| Arc::default()).collect();
    let pubs_done = Arc::new(AtomicU64::new(0));
    let pub_failed = Arc::new(AtomicBool::new(false));
    let window = plan.publish_window();
    let pub_tasks: Vec<JoinHandle<Result<Published>>> = pub_clients
        .iter()
        .enumerate()
        .map(|(i, client)| {
            let job = PublishJob {
                client: client.clone(),
                payload: payload.clone(),
                quota: plan.quota(i),
                window,
                counter: Arc::clone(&pub_counters[i]),
                barrier: Arc::clone(&barrier),
            };
            let done = Arc::clone(&pubs_done);
            let failed = Arc::clone(&pub_failed);
            tokio::spawn(async move {
                let outcome = job.run().await;
                if outcome.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Release);
                outcome
            })
        })
        .collect();

    let expected_hint = args
        .duration
        .is_none()
        .then(|| plan.msgs * deliveries_per_msg);
    let bar = progress::bar(args.progress, expected_hint, plan.scenario.name());
    barrier.wait().await;
    let start = Instant::now();
    let hard_deadline = start + args.max_time;

    // Wait until every publisher is done and every delivery arrived, or deliveries stall for
    // the drain timeout, or the hard deadline passes. Counters are sampled, never locked.
    let sum = |counters: &[Arc<AtomicU64>]| -> u64 {
        counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    };
    let mut last_received = 0;
    let mut last_change = Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let received = sum(&sub_counters);
        bar.set_position(received);
        if received != last_received {
            last_received = received;
            last_change = now;
        }
        let publishing_done = pubs_done.load(Ordering::Acquire) == plan.pubs as u64;
        if publishing_done {
            let expected = sum(&pub_counters) * deliveries_per_msg;
            if received >= expected || now.duration_since(last_change) >= args.drain_timeout {
                break;
            }
        }
        if pub_failed.load(Ordering::Relaxed) || now >= hard_deadline {
            break;
        }
    }
    let _ = stop_tx.send(true);
    bar.finish_and_clear();

    let mut published = 0;
    let mut publish_end = start;
    let mut first_error = None;
    for task in pub_tasks {
        match task.await.context("publisher task panicked")? {
            Ok(p) => {
                published += p.sent;
                publish_end = publish_end.max(p.flushed);
            }
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    if let Some(e) = first_error {
        return Err(e.context("publishing failed"));
    }
    let mut received = 0;
    let mut bytes = 0;
    let mut last_delivery = None;
    for task in sub_tasks {
        let d = task.await.context("subscriber task panicked")?;
        received += d.received;
        bytes += d.bytes;
        last_delivery = last_delivery.max(d.last);
    }
    // Messages the client read off the socket but could not hand to our task.
    let client_in: u64 = sub_clients
        .iter()
        .map(|c| c.statistics().in_messages.load(Ordering::Relaxed))
        .sum();
    let client_dropped = client_in.saturating_sub(received);

    let expected = published * deliveries_per_msg;
    let elapsed_s = last_delivery.map_or(0.0, |t| t.duration_since(start).as_secs_f64());
    let publish_elapsed_s = publish_end.duration_since(start).as_secs_f64();
    let rates = Rates::new(published, publish_elapsed_s, received, bytes, elapsed_s);
    if events.slow_consumer_events() > 0 && !args.json {
        eprintln!(
            "natrix-bench: {} slow-consumer events in the client (raise --sub-capacity)",
            events.slow_consumer_events()
        );
    }
    Ok(BenchResult {
        scenario: plan.scenario.name().to_owned(),
        server: args.label.clone(),
        server_version,
        round: args.round,
        size: args.size,
        pubs: plan.pubs,
        subs: plan.subs,
        msgs: published,
        expected,
        received,
        lost: expected.saturating_sub(received),
        client_dropped,
        bytes,
        elapsed_s,
        publish_elapsed_s,
        publish_msgs_per_s: rates.publish_msgs_per_s,
        receive_msgs_per_s: rates.receive_msgs_per_s,
        receive_mb_per_s: rates.receive_mb_per_s,
        p50_us: None,
        p99_us: None,
        p999_us: None,
        max_us: None,
        peak_rss_kib: None,
        client_cpu_s: crate::result::own_cpu_seconds(),
        server_cpu_s: None,
        other_cpu_pct: None,
        machine_busy: None,
        ..BenchResult::default()
    })
}

/// Counts deliveries until told to stop. Draining ready messages takes priority over the stop
/// signal, which only arrives once everything expected is in (or we gave up).
async fn subscribe_loop(
    mut sub: Subscriber,
    counter: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Delivered {
    let mut received = 0u64;
    let mut bytes = 0u64;
    let mut last = None;
    loop {
        tokio::select! {
            biased;
            msg = sub.next() => match msg {
                Some(msg) => {
                    received += 1;
                    bytes += msg.payload.len() as u64;
                    last = Some(Instant::now());
                    counter.store(received, Ordering::Relaxed);
                }
                None => break,
            },
            _ = stop.changed() => break,
        }
    }
    Delivered {
        received,
        bytes,
        last,
    }
}

/// One publisher's share of the load.
struct PublishJob {
    client: Client,
    payload: Bytes,
    quota: u64,
    window: Duration,
    counter: Arc<AtomicU64>,
    barrier: Arc<Barrier>,
}

impl PublishJob {
    async fn run(self) -> Result<Published> {
        let subject = Subject::from_static(SUBJECT);
        self.barrier.wait().await;
        let deadline = Instant::now() + self.window;
        let mut sent = 0u64;
        while sent < self.quota {
            if sent.is_multiple_of(PUBLISH_BATCH) {
                self.counter.store(sent, Ordering::Relaxed);
                if Instant::now() >= deadline {
                    break;
                }
            }
            self.client
                .publish(subject.clone(), self.payload.clone())
                .await
                .context("publish")?;
            sent += 1;
        }
        self.client.flush().await.context("flushing publisher")?;
        let flushed = Instant::now();
        self.counter.store(sent, Ordering::Relaxed);
        Ok(Published { sent, flushed })
    }
}
