//! Opens benchmark connections with the options every scenario shares, and counts the client
//! events (slow consumer, disconnects, server errors) that explain a lossy run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::{Client, ConnectOptions, Event};

/// Client-side events seen across all connections of one run.
#[derive(Debug, Default)]
pub struct EventCounters {
    slow_consumer: AtomicU64,
    other: AtomicU64,
}

/// How many non-slow-consumer events we echo to stderr before going quiet.
const MAX_REPORTED_EVENTS: u64 = 10;

impl EventCounters {
    pub fn slow_consumer_events(&self) -> u64 {
        self.slow_consumer.load(Ordering::Relaxed)
    }

    fn record(&self, event: &Event) {
        match event {
            Event::SlowConsumer(_) => {
                self.slow_consumer.fetch_add(1, Ordering::Relaxed);
            }
            // Connection lifecycle at the start and end of every run is expected.
            Event::Connected | Event::Closed | Event::Draining => {}
            other => {
                if self.other.fetch_add(1, Ordering::Relaxed) < MAX_REPORTED_EVENTS {
                    eprintln!("natrix-bench: client event: {other}");
                }
            }
        }
    }
}

/// Connects one client named `name`; every benchmark role gets its own connection.
pub async fn connect(
    server: &str,
    name: &str,
    sub_capacity: usize,
    events: &Arc<EventCounters>,
) -> Result<Client> {
    let events = Arc::clone(events);
    ConnectOptions::new()
        .name(name)
        .skip_subject_validation(true)
        .subscription_capacity(sub_capacity)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(5)))
        // A benchmark against a dead server should fail, not retry forever.
        .max_reconnects(Some(0))
        .event_callback(move |event| {
            let events = Arc::clone(&events);
            async move { events.record(&event) }
        })
        .connect(server)
        .await
        .with_context(|| format!("connecting {name} to {server}"))
}

/// Connects `count` clients named `{role}-{i}`.
pub async fn connect_many(
    server: &str,
    role: &str,
    count: usize,
    sub_capacity: usize,
    events: &Arc<EventCounters>,
) -> Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(count);
    for i in 0..count {
        clients.push(
            connect(
                server,
                &format!("natrix-bench-{role}-{i}"),
                sub_capacity,
                events,
            )
            .await?,
        );
    }
    Ok(clients)
}
