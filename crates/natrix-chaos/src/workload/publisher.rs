//! A publisher: unique ids `p<k>-<n>`, each the payload and the `Nats-Msg-Id` of a publish to
//! `chaos.p<k>`, one in flight. An id whose publish got no acknowledgement is tried again (up to
//! `ATTEMPTS` times, well inside the duplicate window), so a retry of a publish that was in fact
//! stored must come back as a duplicate naming the same sequence.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use bytes::Bytes;
use tokio::sync::watch;

use natrix_chaos::history::{Call, Outcome, Recorder};

use super::{ERROR_PAUSE, MAX_OPS, OP_TIMEOUT, pause_or_stop};

/// Tries per id.
const ATTEMPTS: u32 = 3;

pub struct Publisher {
    pub rec: Recorder,
    pub process: String,
    pub node: String,
    pub client: async_nats::Client,
    pub stop: watch::Receiver<bool>,
    pub rng: fastrand::Rng,
}

impl Publisher {
    pub async fn run(mut self) {
        let js = jetstream::ContextBuilder::new()
            .timeout(OP_TIMEOUT)
            .build(self.client.clone());
        let subject = format!("chaos.{}", self.process);
        for n in 0..MAX_OPS {
            let id = format!("{}-{n}", self.process);
            for attempt in 1..=ATTEMPTS {
                let op = self.rec.invoke(
                    &self.process,
                    &self.node,
                    Call::Publish {
                        id: id.clone(),
                        attempt,
                    },
                );
                let publish = PublishMessage::build()
                    .payload(Bytes::from(id.clone()))
                    .message_id(&id);
                let sent = async {
                    let ack = js.send_publish(subject.clone(), publish).await?;
                    ack.await
                };
                let outcome = match tokio::time::timeout(OP_TIMEOUT, sent).await {
                    Ok(Ok(ack)) => Outcome::Published {
                        seq: ack.sequence,
                        duplicate: ack.duplicate,
                    },
                    Ok(Err(err)) => match err.kind() {
                        PublishErrorKind::TimedOut
                        | PublishErrorKind::BrokenPipe
                        | PublishErrorKind::MaxAckPending => Outcome::Unknown {
                            error: err.to_string(),
                        },
                        _ => Outcome::Failed {
                            error: format!("{err}: {:?}", std::error::Error::source(&err)),
                        },
                    },
                    Err(_) => Outcome::Unknown {
                        error: format!("no answer within {OP_TIMEOUT:?}"),
                    },
                };
                let acked = matches!(outcome, Outcome::Published { .. });
                let failed = matches!(outcome, Outcome::Failed { .. });
                self.rec.complete(op, outcome);
                if acked {
                    break;
                }
                let pause = if failed { ERROR_PAUSE } else { Duration::ZERO };
                if !pause_or_stop(&mut self.stop, pause).await {
                    return;
                }
            }
            let pace = Duration::from_millis(self.rng.u64(0..=4));
            if !pause_or_stop(&mut self.stop, pace).await {
                return;
            }
        }
    }
}
