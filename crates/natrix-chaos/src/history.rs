//! What a run did, in the order it happened: every operation's invocation and completion, every
//! message a consumer received, every fault's start and end. Times are microseconds since the run
//! started (one monotonic clock for every task). A history is written as JSON lines, one event a
//! line, so it can be read with `jq` and fed back to the checker.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The run's parameters (the first event).
    Run {
        t: u64,
        seed: u64,
        /// Every node's name, in index order.
        nodes: Vec<String>,
        /// `netns` or `loopback`.
        isolation: String,
    },
    /// A client starts an operation through `node` (the one node its connection goes to).
    Invoke {
        t: u64,
        op: u64,
        process: String,
        node: String,
        call: Call,
    },
    /// The operation `op` ended (an operation without one never completed).
    Complete { t: u64, op: u64, outcome: Outcome },
    /// A consumer received the message at `seq` (its `delivered`-th delivery).
    Deliver {
        t: u64,
        process: String,
        node: String,
        seq: u64,
        delivered: u64,
        /// The message's payload (the publish id), lossy UTF-8.
        id: String,
    },
    /// A fault is in place from `t` on.
    FaultStart {
        t: u64,
        fault: u64,
        kind: String,
        detail: FaultDetail,
    },
    /// The fault `fault` starts healing at `t` (its effects may last a little longer: a restarted
    /// node still has to catch up).
    FaultEnd { t: u64, fault: u64, note: String },
    /// The workload (publishers and CAS writers) started or stopped.
    Workload { t: u64, phase: Phase },
    /// The consumers' final drain ended: every sequence up to `last_seq` was received
    /// (`covered`), or the drain's deadline passed first.
    Drained {
        t: u64,
        last_seq: u64,
        covered: bool,
    },
}

impl Event {
    pub fn time(&self) -> u64 {
        match self {
            Event::Run { t, .. }
            | Event::Invoke { t, .. }
            | Event::Complete { t, .. }
            | Event::Deliver { t, .. }
            | Event::FaultStart { t, .. }
            | Event::FaultEnd { t, .. }
            | Event::Workload { t, .. }
            | Event::Drained { t, .. } => *t,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Started,
    Stopped,
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// A publish to the stream with payload and `Nats-Msg-Id` both `id`; `attempt` counts the
    /// tries of the same id (a retry after an unknown outcome must be de-duplicated).
    Publish { id: String, attempt: u32 },
    /// A consumer's acknowledgement of the delivery of `seq`, with a reply (AckSync).
    Ack { seq: u64, delivered: u64 },
    /// A read of the key's latest entry.
    KvGet { key: String },
    /// `update(key, "w<writer>-<n>-e<expected>", expected)`: a compare-and-set on the key's
    /// revision (0: the key must not exist yet).
    KvCas {
        key: String,
        writer: u32,
        n: u64,
        expected: u64,
    },
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// A PubAck: the stream holds the message at `seq`.
    Published { seq: u64, duplicate: bool },
    /// The ack was answered: the consumer will not deliver the message again.
    Acked,
    /// A read's answer: the key's latest revision, or none.
    KvRead { revision: Option<u64> },
    /// The CAS was applied at `revision`.
    KvWritten { revision: u64 },
    /// A definite refusal: the CAS's expected revision was not the key's last one, and nothing
    /// was written.
    Refused { error: String },
    /// An error answer that promises nothing either way (the write may still be applied).
    Failed { error: String },
    /// No answer (timeout, connection lost): the outcome is unknown.
    Unknown { error: String },
}

/// What a fault did, as the checker needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultDetail {
    /// The nodes the fault acted on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Node pairs that cannot reach each other while the fault lasts (a network partition).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cut: Vec<(String, String)>,
    /// Per stream, the Raft voters (leader and replicas) when the fault began; the minority rule
    /// needs them. Empty when unknown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub voters: BTreeMap<String, Vec<String>>,
    /// Anything else worth keeping (the stream leader, the damaged file, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// Records events from every task of a run, with one clock.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    events: Vec<Event>,
    next_op: u64,
    next_fault: u64,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    /// Microseconds since the run started.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Events are pushed under the lock with the time read under it too, so the list is in time
    /// order.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking task cannot leave the list half-written: pushes are single calls.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an invocation and returns its operation id.
    pub fn invoke(&self, process: &str, node: &str, call: Call) -> u64 {
        let mut inner = self.lock();
        inner.next_op += 1;
        let op = inner.next_op;
        let t = self.now();
        inner.events.push(Event::Invoke {
            t,
            op,
            process: process.to_owned(),
            node: node.to_owned(),
            call,
        });
        op
    }

    pub fn complete(&self, op: u64, outcome: Outcome) {
        let mut inner = self.lock();
        let t = self.now();
        inner.events.push(Event::Complete { t, op, outcome });
    }

    /// Records a fault that is in place now and returns its id.
    pub fn fault_start(&self, kind: &str, detail: FaultDetail) -> u64 {
        let mut inner = self.lock();
        inner.next_fault += 1;
        let fault = inner.next_fault;
        let t = self.now();
        inner.events.push(Event::FaultStart {
            t,
            fault,
            kind: kind.to_owned(),
            detail,
        });
        fault
    }

    pub fn fault_end(&self, fault: u64, note: impl Into<String>) {
        let mut inner = self.lock();
        let t = self.now();
        inner.events.push(Event::FaultEnd {
            t,
            fault,
            note: note.into(),
        });
    }

    /// Records an event built with the current time.
    pub fn record(&self, event: impl FnOnce(u64) -> Event) {
        let mut inner = self.lock();
        let t = self.now();
        inner.events.push(event(t));
    }

    /// A copy of every event so far, in recording order.
    pub fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

/// Writes `events` as JSON lines.
pub fn write_jsonl(path: &Path, events: &[Event]) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut out = std::io::BufWriter::new(file);
    for event in events {
        serde_json::to_writer(&mut out, event)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Reads a history written by [`write_jsonl`].
pub fn read_jsonl(text: &str) -> Result<Vec<Event>, serde_json::Error> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(serde_json::from_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_reads_back_as_written() {
        let rec = Recorder::new();
        rec.record(|t| Event::Run {
            t,
            seed: 7,
            nodes: vec!["n1".into(), "n2".into()],
            isolation: "netns".into(),
        });
        let op = rec.invoke(
            "p0",
            "n1",
            Call::Publish {
                id: "p0-0".into(),
                attempt: 1,
            },
        );
        rec.complete(
            op,
            Outcome::Published {
                seq: 1,
                duplicate: false,
            },
        );
        let fault = rec.fault_start(
            "partition",
            FaultDetail {
                cut: vec![("n1".into(), "n2".into())],
                ..FaultDetail::default()
            },
        );
        rec.fault_end(fault, "healed");
        let events = rec.events();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("history.jsonl");
        write_jsonl(&path, &events).expect("writing the history");
        let text = std::fs::read_to_string(&path).expect("reading the history");
        assert_eq!(text.lines().count(), events.len());
        assert!(text.contains(r#""type":"invoke""#) && text.contains(r#""call":"publish""#));
        assert_eq!(read_jsonl(&text).expect("parsing the history"), events);
    }

    #[test]
    fn operation_ids_are_unique_and_times_never_go_back() {
        let rec = Recorder::new();
        let a = rec.invoke("p0", "n1", Call::KvGet { key: "k".into() });
        let b = rec.invoke("p1", "n2", Call::KvGet { key: "k".into() });
        assert_ne!(a, b);
        let times: Vec<u64> = rec.events().iter().map(Event::time).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }
}
