//! A consumer: fetches batches from the durable pull consumer, records each delivery (stream
//! sequence, delivery count, payload), and acknowledges every message with a reply (AckSync): an
//! answered ack is a promise that the message will not be delivered again.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::sync::watch;

use natrix_chaos::history::{Call, Event, Outcome, Recorder};
use natrix_chaos::{CONSUMER, STREAM};

use super::{Coverage, ERROR_PAUSE, OP_TIMEOUT, pause_or_stop};

/// Messages per fetch, and how long a fetch waits for them on the server.
const BATCH: usize = 64;
const FETCH_EXPIRES: Duration = Duration::from_secs(1);
/// Acks in flight per consumer.
const ACKS_IN_FLIGHT: usize = 32;
/// Fetches per consumer at most (the stop signal normally comes long before).
const MAX_FETCHES: u64 = 1_000_000;

pub struct ConsumerWorker {
    pub rec: Recorder,
    pub process: String,
    pub node: String,
    pub client: async_nats::Client,
    pub stop: watch::Receiver<bool>,
    pub coverage: Arc<Coverage>,
}

impl ConsumerWorker {
    pub async fn run(mut self) {
        let js = jetstream::ContextBuilder::new()
            .timeout(OP_TIMEOUT)
            .build(self.client.clone());
        let Some(consumer) = self.bind(&js).await else {
            return;
        };
        for _ in 0..MAX_FETCHES {
            if *self.stop.borrow() {
                return;
            }
            let messages = self.fetch(&consumer).await;
            if messages.is_empty() {
                if !pause_or_stop(&mut self.stop, ERROR_PAUSE).await {
                    return;
                }
                continue;
            }
            let mut acks = Vec::new();
            for msg in &messages {
                let Some(reply) = msg.reply.clone() else {
                    continue;
                };
                let Ok(info) = msg.info() else {
                    continue;
                };
                let (seq, delivered) = (info.stream_sequence, info.delivered.max(0) as u64);
                self.rec.record(|t| Event::Deliver {
                    t,
                    process: self.process.clone(),
                    node: self.node.clone(),
                    seq,
                    delivered,
                    id: String::from_utf8_lossy(&msg.payload).into_owned(),
                });
                self.coverage.insert(seq);
                acks.push((reply, seq, delivered));
            }
            futures::stream::iter(acks)
                .for_each_concurrent(ACKS_IN_FLIGHT, |(reply, seq, delivered)| {
                    self.ack(reply, seq, delivered)
                })
                .await;
        }
    }

    /// The consumer's handle (one `CONSUMER.INFO`), asked again until it answers or the worker
    /// is stopped.
    async fn bind(&mut self, js: &jetstream::Context) -> Option<PullConsumer> {
        loop {
            let found = tokio::time::timeout(OP_TIMEOUT, async {
                let stream = js.get_stream(STREAM).await.map_err(|e| e.to_string())?;
                stream
                    .get_consumer::<jetstream::consumer::pull::Config>(CONSUMER)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
            if let Ok(Ok(consumer)) = found {
                return Some(consumer);
            }
            if !pause_or_stop(&mut self.stop, ERROR_PAUSE).await {
                return None;
            }
        }
    }

    /// One batch: what arrives before the fetch expires (empty on any error).
    async fn fetch(&self, consumer: &PullConsumer) -> Vec<jetstream::Message> {
        let batch = tokio::time::timeout(
            OP_TIMEOUT,
            consumer
                .fetch()
                .max_messages(BATCH)
                .expires(FETCH_EXPIRES)
                .messages(),
        )
        .await;
        let Ok(Ok(mut batch)) = batch else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // Bounded by BATCH and by the timeout on each message.
        while out.len() < BATCH {
            match tokio::time::timeout(FETCH_EXPIRES + OP_TIMEOUT, batch.next()).await {
                Ok(Some(Ok(msg))) => out.push(msg),
                _ => break,
            }
        }
        out
    }

    /// `+ACK` with a reply inbox; the ack counts as confirmed only when the answer is an empty
    /// message (an error answer, a status or no answer does not).
    async fn ack(&self, reply: async_nats::Subject, seq: u64, delivered: u64) {
        let op = self
            .rec
            .invoke(&self.process, &self.node, Call::Ack { seq, delivered });
        let answer = tokio::time::timeout(
            OP_TIMEOUT,
            self.client.request(reply, Bytes::from_static(b"+ACK")),
        )
        .await;
        let outcome = match answer {
            Ok(Ok(msg)) if msg.payload.is_empty() && msg.status.is_none() => Outcome::Acked,
            Ok(Ok(msg)) => Outcome::Failed {
                error: format!(
                    "status {:?}: {}",
                    msg.status,
                    String::from_utf8_lossy(&msg.payload)
                ),
            },
            Ok(Err(err)) => Outcome::Unknown {
                error: err.to_string(),
            },
            Err(_) => Outcome::Unknown {
                error: format!("no answer within {OP_TIMEOUT:?}"),
            },
        };
        self.rec.complete(op, outcome);
    }
}
