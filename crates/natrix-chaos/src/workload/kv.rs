//! A compare-and-set writer on a few keys of the KV bucket: read the key's latest revision, then
//! `update(key, "w<writer>-<n>-e<revision>", revision)` (revision 0: the key must not exist).
//! Several writers share the keys, so many CASes lose; each operation number is sent once (a
//! CAS with an unknown outcome is never retried: its retry would be refused or applied twice).

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use tokio::sync::watch;

use natrix_chaos::KV_BUCKET;
use natrix_chaos::checker::kv_value;
use natrix_chaos::history::{Call, Outcome, Recorder};

use super::{ERROR_PAUSE, MAX_OPS, OP_TIMEOUT, pause_or_stop};

pub struct CasWriter {
    pub rec: Recorder,
    pub process: String,
    pub node: String,
    pub writer: u32,
    pub keys: usize,
    pub client: async_nats::Client,
    pub stop: watch::Receiver<bool>,
    pub rng: fastrand::Rng,
}

impl CasWriter {
    pub async fn run(mut self) {
        let js = jetstream::ContextBuilder::new()
            .timeout(OP_TIMEOUT)
            .build(self.client.clone());
        let Some(store) = self.bind(&js).await else {
            return;
        };
        for n in 1..=MAX_OPS {
            let key = format!("k{}", self.rng.usize(0..self.keys));
            let went_on = match self.read(&store, &key).await {
                Some(revision) => self.cas(&store, &key, n, revision).await,
                None => false,
            };
            let pause = if went_on {
                Duration::from_millis(self.rng.u64(0..=10))
            } else {
                ERROR_PAUSE
            };
            if !pause_or_stop(&mut self.stop, pause).await {
                return;
            }
        }
    }

    async fn bind(&mut self, js: &jetstream::Context) -> Option<kv::Store> {
        loop {
            if let Ok(Ok(store)) =
                tokio::time::timeout(OP_TIMEOUT, js.get_key_value(KV_BUCKET)).await
            {
                return Some(store);
            }
            if !pause_or_stop(&mut self.stop, ERROR_PAUSE).await {
                return None;
            }
        }
    }

    /// The key's latest revision (0 when it has none), or `None` when the read failed.
    async fn read(&self, store: &kv::Store, key: &str) -> Option<u64> {
        let op = self.rec.invoke(
            &self.process,
            &self.node,
            Call::KvGet {
                key: key.to_owned(),
            },
        );
        let (outcome, revision) = match tokio::time::timeout(OP_TIMEOUT, store.entry(key)).await {
            Ok(Ok(entry)) => {
                let revision = entry.map(|e| e.revision);
                (Outcome::KvRead { revision }, Some(revision.unwrap_or(0)))
            }
            Ok(Err(err)) => (
                Outcome::Failed {
                    error: err.to_string(),
                },
                None,
            ),
            Err(_) => (
                Outcome::Unknown {
                    error: format!("no answer within {OP_TIMEOUT:?}"),
                },
                None,
            ),
        };
        self.rec.complete(op, outcome);
        revision
    }

    /// One CAS; returns whether it got an answer (applied or refused).
    async fn cas(&self, store: &kv::Store, key: &str, n: u64, expected: u64) -> bool {
        let op = self.rec.invoke(
            &self.process,
            &self.node,
            Call::KvCas {
                key: key.to_owned(),
                writer: self.writer,
                n,
                expected,
            },
        );
        let value = Bytes::from(kv_value(self.writer, n, expected));
        let outcome =
            match tokio::time::timeout(OP_TIMEOUT, store.update(key, value, expected)).await {
                Ok(Ok(revision)) => Outcome::KvWritten { revision },
                Ok(Err(err)) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    Outcome::Refused {
                        error: err.to_string(),
                    }
                }
                Ok(Err(err)) if err.kind() == kv::UpdateErrorKind::TimedOut => Outcome::Unknown {
                    error: err.to_string(),
                },
                Ok(Err(err)) => Outcome::Failed {
                    error: format!("{err}: {:?}", std::error::Error::source(&err)),
                },
                Err(_) => Outcome::Unknown {
                    error: format!("no answer within {OP_TIMEOUT:?}"),
                },
            };
        let answered = matches!(outcome, Outcome::KvWritten { .. } | Outcome::Refused { .. });
        self.rec.complete(op, outcome);
        answered
    }
}
