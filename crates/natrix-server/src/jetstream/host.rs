//! One stream on this node. A task owns the order of its commands: it takes every publish and API
//! command queued so far, applies them to the pure [`Stream`] state machine, queues their effects
//! as ONE store commit (file storage) and hands the answers to a settle task that sends them only
//! when the commit is durable. While a commit is being fsynced the next batch is already being
//! applied, and commits queued meanwhile share the committer's next fsync (group commit).
//!
//! Reads (info, message get) lock the state machine briefly and read messages from the store
//! (file) or the in-memory map (memory storage).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use natrix_store::{CommitTicket, ConsumerUpdate, StoreError, StreamBatch};
use natrix_stream::{
    ApiError, Applied, Command, PubAck, RecoveredMsg, Reply, Republished, RetentionPolicy,
    StorageType, StoreOp, StoredMsg, Stream, StreamConfig, StreamPosition,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, watch};

use super::cluster::entry::{ConsumerWrite, EntryCommand};
use super::consumer_host::{ConsumerHost, Event};
use super::record::{ConsumerRecord, StreamRecord};
use super::{JetStream, now_ns};
use crate::internal::{InternalHandler, InternalMsg};
use crate::router::Subscription;
use crate::state::ServerState;

mod received;
pub(crate) use received::{StagedSnapshot, remove_staged};
mod replicated;

/// Most commands applied and committed as one batch.
const MAX_BATCH: usize = 1024;

/// Bytes of publishes queued for a stream and not yet applied, at most. Beyond it publishes are
/// refused (with an error to their reply subject) instead of growing the queue without bound.
const MAX_QUEUED_BYTES: u64 = 256 << 20;

/// How long a read waits for a counted message's batch to commit before it reads what the store
/// has (see [`StreamHost::read_msg`]).
const READ_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A publish or API command waiting for the stream task.
pub(crate) enum Inbound {
    Publish {
        subject: Bytes,
        reply: Option<Bytes>,
        headers: Option<Bytes>,
        payload: Bytes,
    },
    Command {
        cmd: Command,
        done: oneshot::Sender<Result<Reply, ApiError>>,
    },
    /// A replicated stream's consumer record to write through the stream's log.
    Consumer {
        write: ConsumerWrite,
        done: oneshot::Sender<Result<(), ApiError>>,
    },
    /// The stream was deleted: stop.
    Stop,
}

impl Inbound {
    fn queued_bytes(&self) -> u64 {
        match self {
            Inbound::Publish {
                subject,
                headers,
                payload,
                ..
            } => (subject.len() + headers.as_ref().map_or(0, Bytes::len) + payload.len()) as u64,
            _ => 0,
        }
    }
}

/// An answer to send once the batch it belongs to is durable.
enum Answer {
    PubAck {
        reply: Bytes,
        json: String,
    },
    /// A refused publish: no effect to wait for, but sent in order with the rest.
    PubError {
        reply: Bytes,
        json: String,
    },
    Command {
        done: oneshot::Sender<Result<Reply, ApiError>>,
        result: Result<Reply, ApiError>,
    },
    Consumer {
        done: oneshot::Sender<Result<(), ApiError>>,
        result: Result<(), ApiError>,
    },
    /// A stored message's copy for the stream's `republish` subject (dropped if the batch
    /// fails).
    Republish(Republished),
}

/// One applied batch on its way to disk.
struct Settle {
    ticket: Option<CommitTicket>,
    answers: Vec<Answer>,
    last_seq: u64,
    /// A replicated stream's batch: answered from the replicas' state machine once its log
    /// entry is committed on a quorum and applied.
    proposal: Option<Proposal>,
}

/// Where the answer to one command of a proposed entry goes.
enum Slot {
    Publish(Option<Bytes>),
    Command(oneshot::Sender<Result<Reply, ApiError>>),
    Consumer(oneshot::Sender<Result<(), ApiError>>),
    /// A command the leader added itself (an expiry): nobody waits for it.
    Internal,
}

/// A batch proposed to the stream's Raft group.
struct Proposal {
    commands: Vec<EntryCommand>,
    slots: Vec<Slot>,
    /// The replicas' results (encoded), or why the entry was not committed; the settle task
    /// awaits it in batch order (no task of its own: one hand-off less per publish).
    answer: ProposalAnswer,
}

/// The outcome of a proposal: the replicas' encoded results, or why it was not committed.
type ProposalAnswer =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, ApiError>> + Send>>;

/// The state machine and, for memory storage, the messages.
pub(crate) struct StreamCore {
    pub stream: Stream,
    memory: Option<BTreeMap<u64, StoredMsg>>,
    /// Commands applied so far (the store's `applied` position).
    applied: u64,
    /// Replicated stream: the last Raft log index applied (entries at or below it are skipped:
    /// they are already in this replica's state, e.g. after installing a newer snapshot).
    raft_index: u64,
    /// Replicated stream: effects applied from the log and not yet persisted.
    pending_ops: Vec<StoreOp>,
    /// Replicated stream: a config update applied and not yet persisted.
    pending_config: Option<StreamConfig>,
    /// Replicated stream: every consumer's record as last written through the log (the same
    /// on every replica; the leader runs the consumers, a new leader starts them from here).
    consumer_records: BTreeMap<String, Bytes>,
    /// Replicated stream: consumer record changes applied and not yet persisted.
    pending_consumers: Vec<ConsumerUpdate>,
    /// Replicated stream, on the leader: copies of applied messages to republish once persisted.
    pending_republish: Vec<Republished>,
}

pub(crate) struct StreamHost {
    pub name: String,
    /// The store's stream id (file storage) or a node-local id (memory storage). A replica that
    /// installs a snapshot received from its leader gets the id the snapshot was stored under.
    id: AtomicU64,
    pub created_ns: i64,
    storage: StorageType,
    /// The JetStream domain PubAcks name (`jetstream { domain }`), as nats-server's do.
    domain: Option<String>,
    js: Weak<JetStream>,
    /// The node, for republished messages sent from the state machine.
    server: Weak<ServerState>,
    core: Mutex<StreamCore>,
    inbound: mpsc::UnboundedSender<Inbound>,
    queued_bytes: Arc<AtomicU64>,
    subs: Mutex<Vec<Arc<Subscription>>>,
    /// The last sequence whose batch is durable: what consumers may deliver.
    committed: watch::Sender<u64>,
    consumers: RwLock<BTreeMap<String, Arc<ConsumerHost>>>,
    stored_msgs: AtomicU64,
    stored_bytes: AtomicU64,
    /// Set for a stream replicated by Raft (clustered JetStream).
    pub replica: Option<Replica>,
    /// The running copies of its mirror or sources (where it leads).
    pub(super) copiers: Mutex<Vec<Arc<super::sourcing::Copier>>>,
}

/// A replicated stream's Raft group on this node.
pub(crate) struct Replica {
    pub group_id: u64,
    pub node_id: u64,
    /// Set once the group runs.
    pub raft: std::sync::OnceLock<natrix_raft::Raft>,
    /// What the store held for the group's applied position when the stream was recovered.
    pub recovered_applied: Option<Bytes>,
    /// While this replica serves as the leader: since when (Unix ns; 0 while it does not), for
    /// the `leader_since` of the cluster block.
    pub leader_since_ns: std::sync::atomic::AtomicI64,
}

impl StreamHost {
    /// Creates a new stream: stores its record (file storage) and starts serving it.
    pub async fn create(
        state: &Arc<ServerState>,
        js: &Arc<JetStream>,
        config: StreamConfig,
    ) -> Result<Arc<StreamHost>, ApiError> {
        let host = Self::create_local(state, js, config, now_ns(), None).await?;
        js.insert(host.clone());
        Ok(host)
    }

    /// Creates this node's replica of a stream replicated by Raft group `group_id` (its log
    /// then fills it); the caller starts the group and registers the host.
    pub async fn create_replica(
        state: &Arc<ServerState>,
        js: &Arc<JetStream>,
        config: StreamConfig,
        created_ns: i64,
        group_id: u64,
    ) -> Result<Arc<StreamHost>, ApiError> {
        Self::create_local(state, js, config, created_ns, Some(group_id)).await
    }

    async fn create_local(
        state: &Arc<ServerState>,
        js: &Arc<JetStream>,
        config: StreamConfig,
        created_ns: i64,
        group_id: Option<u64>,
    ) -> Result<Arc<StreamHost>, ApiError> {
        let id = match config.storage {
            StorageType::File => {
                let record = StreamRecord {
                    config: config.clone(),
                    created_ns,
                    group_id,
                    staging: false,
                };
                js.store()
                    .create_stream(record.encode())
                    .await
                    .map_err(|e| store_failed(&e))?
            }
            StorageType::Memory => js.next_memory_id(),
        };
        let replica = group_id.map(|group_id| Replica {
            group_id,
            node_id: js.node_id(),
            raft: std::sync::OnceLock::new(),
            recovered_applied: None,
            leader_since_ns: Default::default(),
        });
        StreamHost::start(state, js, id, created_ns, Stream::new(config), 0, replica)
            .map_err(ApiError::stream_invalid_config)
    }

    /// Rebuilds a file-stored stream from the store at start.
    pub fn recover(
        state: &Arc<ServerState>,
        js: &Arc<JetStream>,
        id: u64,
        record: &[u8],
    ) -> Result<Arc<StreamHost>, String> {
        let record = StreamRecord::decode(record)?;
        let store = js.store();
        let position = store
            .stream_position(id)
            .map_err(|e| e.to_string())?
            .map(StreamPosition::decode)
            .transpose()
            .map_err(|e| format!("stream position: {e}"))?;
        let applied = store.applied(id).map_err(|e| e.to_string())?.unwrap_or(0);
        let stream = stream_from_store(store, id, record.config, position)?;
        let replica = match record.group_id {
            Some(group_id) => Some(Replica {
                group_id,
                node_id: js.node_id(),
                raft: std::sync::OnceLock::new(),
                recovered_applied: store
                    .raft_log(group_id)
                    .read_applied()
                    .map_err(|e| format!("raft group {group_id}: applied position: {e}"))?,
                leader_since_ns: Default::default(),
            }),
            None => None,
        };
        let raft_index = replica
            .as_ref()
            .and_then(|r| r.recovered_applied.clone())
            .and_then(|b| natrix_raft::AppliedState::decode(b).ok())
            .and_then(|a| a.last_applied_index())
            .unwrap_or(0);
        let host = StreamHost::start(state, js, id, record.created_ns, stream, applied, replica)?;
        host.core.lock().raft_index = raft_index;
        let consumers = store.consumers(id).map_err(|e| e.to_string())?;
        if host.replica.is_some() {
            // The consumers run where the stream's leader is: they start when this replica
            // becomes the leader (see `StreamHost::follow_leadership`).
            host.core.lock().consumer_records = consumers.into_iter().collect();
            return Ok(host);
        }
        for (name, bytes) in consumers {
            let record =
                ConsumerRecord::decode(&bytes).map_err(|e| format!("consumer {name:?}: {e}"))?;
            let consumer =
                natrix_stream::Consumer::restore(record.config, record.created_ns, record.state);
            let consumer = ConsumerHost::start(state, &host, name.clone(), consumer);
            host.consumers.write().insert(name, consumer);
        }
        Ok(host)
    }

    fn start(
        state: &Arc<ServerState>,
        js: &Arc<JetStream>,
        id: u64,
        created_ns: i64,
        stream: Stream,
        applied: u64,
        replica: Option<Replica>,
    ) -> Result<Arc<StreamHost>, String> {
        let config = stream.config().clone();
        let (inbound, rx) = mpsc::unbounded_channel();
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        let last_seq = stream.last_seq();
        let host = Arc::new(StreamHost {
            name: config.name.clone(),
            id: AtomicU64::new(id),
            created_ns,
            storage: config.storage,
            domain: js.config.domain.clone(),
            js: Arc::downgrade(js),
            server: Arc::downgrade(state),
            core: Mutex::new(StreamCore {
                stream,
                memory: (config.storage == StorageType::Memory).then(BTreeMap::new),
                applied,
                raft_index: 0,
                pending_ops: Vec::new(),
                pending_config: None,
                consumer_records: BTreeMap::new(),
                pending_consumers: Vec::new(),
                pending_republish: Vec::new(),
            }),
            inbound,
            queued_bytes: Arc::new(AtomicU64::new(0)),
            subs: Mutex::new(Vec::new()),
            committed: watch::Sender::new(last_seq),
            consumers: RwLock::new(BTreeMap::new()),
            stored_msgs: AtomicU64::new(0),
            stored_bytes: AtomicU64::new(0),
            replica,
            copiers: Mutex::new(Vec::new()),
        });
        host.note_usage(&host.core.lock().stream);
        // A replicated stream's subjects are captured by the cluster layer on every node, which
        // hands publishes to the leader's host.
        if host.replica.is_none() {
            host.subscribe(state, &config.subjects)?;
            super::sourcing::start(&host, state);
        }
        tokio::spawn(host.clone().run(rx, settle_tx));
        tokio::spawn(settle(
            Arc::downgrade(&host),
            Arc::downgrade(state),
            settle_rx,
        ));
        Ok(host)
    }

    /// Queues a publish on one of the stream's subjects for the stream task (refused with an
    /// error reply while the queue holds [`MAX_QUEUED_BYTES`]).
    pub(crate) fn enqueue_publish(&self, state: &ServerState, msg: InternalMsg<'_>) {
        let item = Inbound::Publish {
            subject: Bytes::copy_from_slice(msg.subject),
            reply: msg.reply.map(Bytes::copy_from_slice),
            headers: msg.headers.map(Bytes::copy_from_slice),
            payload: Bytes::copy_from_slice(msg.payload),
        };
        let size = item.queued_bytes();
        if self.queued_bytes.fetch_add(size, Ordering::AcqRel) + size > MAX_QUEUED_BYTES {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            if let Some(reply) = msg.reply {
                let json = PubAck::error_json(&self.name, &ApiError::insufficient_resources());
                state.publish_internal(reply, None, None, json.as_bytes());
            }
            return;
        }
        // A closed channel means the stream was just deleted: the publish is dropped, as
        // nats-server drops a publish to a subject nobody captures any more.
        let _ = self.inbound.send(item);
    }

    /// Captures the stream's subjects: every publish on them is queued for the stream task.
    fn subscribe(
        self: &Arc<Self>,
        state: &Arc<ServerState>,
        subjects: &[String],
    ) -> Result<(), String> {
        let mut subs = self.subs.lock();
        for subject in subjects {
            let host = Arc::downgrade(self);
            let weak = Arc::downgrade(state);
            let handler = InternalHandler::new(move |msg| {
                if let (Some(host), Some(state)) = (host.upgrade(), weak.upgrade()) {
                    host.enqueue_publish(&state, msg);
                }
            });
            let sub = state
                .subscribe_internal(subject, None, handler)
                .map_err(|e| format!("subject {subject:?}: {e}"))?;
            subs.push(sub);
        }
        Ok(())
    }

    fn unsubscribe(&self, state: &ServerState) {
        for sub in self.subs.lock().drain(..) {
            crate::connection::remove_subscription(state, &sub);
        }
    }

    /// Re-captures the subjects after an update changed them.
    fn resubscribe(
        self: &Arc<Self>,
        state: &Arc<ServerState>,
        subjects: &[String],
    ) -> Result<(), String> {
        self.unsubscribe(state);
        self.subscribe(state, subjects)
    }

    /// The node's JetStream, unless it is stopping.
    pub fn js(&self) -> Option<Arc<JetStream>> {
        self.js.upgrade()
    }

    pub fn storage(&self) -> StorageType {
        self.storage
    }

    pub fn config(&self) -> StreamConfig {
        self.core.lock().stream.config().clone()
    }

    /// Messages stored, as of the last applied batch (no lock: account checks run while a
    /// stream task holds its own state).
    pub fn messages(&self) -> u64 {
        self.stored_msgs.load(Ordering::Relaxed)
    }

    /// Bytes stored (nats-server's accounting), as of the last applied batch.
    pub fn bytes(&self) -> u64 {
        self.stored_bytes.load(Ordering::Relaxed)
    }

    fn note_usage(&self, stream: &Stream) {
        self.stored_msgs.store(stream.messages(), Ordering::Relaxed);
        self.stored_bytes.store(stream.bytes(), Ordering::Relaxed);
    }

    /// The consumers clients see (a copy's own consumer is not one of them).
    pub fn consumer_count(&self) -> u64 {
        self.consumers.read().values().filter(|c| !c.direct).count() as u64
    }

    /// The consumers clients see, by name.
    pub fn listed_consumers(&self) -> Vec<Arc<ConsumerHost>> {
        self.consumers
            .read()
            .values()
            .filter(|c| !c.direct)
            .cloned()
            .collect()
    }

    pub fn consumers(&self) -> Vec<Arc<ConsumerHost>> {
        self.consumers.read().values().cloned().collect()
    }

    pub fn consumer(&self, name: &str) -> Option<Arc<ConsumerHost>> {
        self.consumers.read().get(name).cloned()
    }

    pub fn add_consumer(&self, consumer: Arc<ConsumerHost>) {
        let replaced = self
            .consumers
            .write()
            .insert(consumer.name.clone(), consumer);
        // A new stream leader may have started the consumer from its record meanwhile: one
        // task per consumer.
        if let Some(replaced) = replaced {
            replaced.step_down();
        }
    }

    /// Stops a consumer and removes its state; false if there is no such consumer.
    pub async fn remove_consumer(&self, _state: &ServerState, name: &str) -> bool {
        let Some(consumer) = self.consumers.write().remove(name) else {
            return false;
        };
        consumer.stop();
        let result = if self.replica.is_some() {
            self.write_consumer(ConsumerWrite::Delete {
                name: name.to_owned(),
            })
            .await
        } else if self.storage == StorageType::File
            && let Some(js) = self.js.upgrade()
        {
            js.store()
                .delete_consumer(self.id(), name)
                .await
                .map_err(|e| store_failed(&e))
        } else {
            Ok(())
        };
        if let Err(err) = result {
            tracing::error!(
                "JetStream consumer '{} > {name}': delete failed: {err}",
                self.name
            );
        }
        true
    }

    /// Writes a consumer's record (config, created time, state) durably before it resolves: in
    /// the store (file storage), or for a replicated stream through its log, which every replica
    /// applies. `create`: the consumer is new or its config changed; a state write (`false`)
    /// never brings back a consumer deleted meanwhile.
    pub async fn put_consumer(
        &self,
        name: &str,
        record: Bytes,
        create: bool,
    ) -> Result<(), ApiError> {
        if self.replica.is_some() {
            return self
                .write_consumer(ConsumerWrite::Put {
                    name: name.to_owned(),
                    record,
                    create,
                })
                .await;
        }
        if self.storage != StorageType::File {
            return Ok(());
        }
        let js = self.js.upgrade().ok_or_else(stopped)?;
        let update = ConsumerUpdate::Put {
            name: name.to_owned(),
            state: record,
        };
        js.store()
            .update_consumers(self.id(), vec![update])
            .await
            .map_err(|e| store_failed(&e))
    }

    /// A replicated stream's consumer write, in order with the publishes, answered once the
    /// entry carrying it is committed on a quorum and applied.
    async fn write_consumer(&self, write: ConsumerWrite) -> Result<(), ApiError> {
        let (done, answer) = oneshot::channel();
        self.inbound
            .send(Inbound::Consumer { write, done })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Retention: removes messages every consumer is done with; resolves once the removal is
    /// durable.
    pub async fn remove_acked(&self, seqs: Vec<u64>) {
        if !seqs.is_empty()
            && let Err(err) = self.command(Command::RemoveAcked { seqs }).await
        {
            tracing::warn!("JetStream stream '{}': retention removal: {err}", self.name);
        }
    }

    /// Tells the consumers which messages just left the stream.
    /// Tells the consumers which messages a batch's effects remove (if there are consumers).
    fn notify_removed_by(&self, ops: &[StoreOp]) {
        if self.consumers.read().is_empty() {
            return;
        }
        let mut removed = Vec::new();
        let mut below = None;
        for op in ops {
            match op {
                StoreOp::Remove { seq } => removed.push(*seq),
                StoreOp::RemoveBelow { seq } => below = Some(below.unwrap_or(0).max(*seq)),
                StoreOp::Append(_) => {}
            }
        }
        self.notify_removed(removed, below);
    }

    fn notify_removed(&self, removed: Vec<u64>, below: Option<u64>) {
        if removed.is_empty() && below.is_none() {
            return;
        }
        for consumer in self.consumers.read().values() {
            if let Some(floor) = below {
                consumer.send(Event::RemovedBelow(floor));
            }
            if !removed.is_empty() {
                consumer.send(Event::Removed(removed.clone()));
            }
        }
    }

    /// Runs `f` on the state machine (reads only; commands go through [`StreamHost::command`]).
    pub fn with_stream<T>(&self, f: impl FnOnce(&Stream) -> T) -> T {
        f(&self.core.lock().stream)
    }

    /// The stream's id in the store (see the field).
    pub fn id(&self) -> u64 {
        self.id.load(Ordering::Acquire)
    }

    /// The last sequence that is durable.
    pub fn committed_seq(&self) -> u64 {
        *self.committed.borrow()
    }

    pub fn subscribe_committed(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// A stored message by sequence as a reader asks for it: one the stream already counts (as
    /// STREAM.INFO does once it is applied) is first waited for until its batch is committed, as
    /// the store's writer thread may not have written it yet; bounded by [`READ_WAIT`] (a failed
    /// write never commits).
    pub async fn read_msg(&self, seq: u64) -> Result<Option<StoredMsg>, ApiError> {
        let mut committed = self.subscribe_committed();
        let wait = seq > *committed.borrow_and_update()
            && self.storage == StorageType::File
            && self.with_stream(|s| s.msg_meta(seq).is_some());
        if wait {
            let _ = tokio::time::timeout(READ_WAIT, committed.wait_for(|c| *c >= seq)).await;
        }
        self.get_msg(seq)
    }

    /// A stored message by sequence, as far as the store has it now (see [`Self::read_msg`]).
    pub fn get_msg(&self, seq: u64) -> Result<Option<StoredMsg>, ApiError> {
        {
            let core = self.core.lock();
            if let Some(memory) = &core.memory {
                return Ok(memory.get(&seq).cloned());
            }
            if core.stream.msg_meta(seq).is_none() {
                return Ok(None);
            }
        }
        let js = self.js.upgrade().ok_or_else(stopped)?;
        js.store()
            .get_msg(self.id(), seq)
            .map_err(|e| store_failed(&e))
    }

    /// Applies an API command in order with the publishes and answers once it is durable.
    pub async fn command(&self, cmd: Command) -> Result<Reply, ApiError> {
        let answer = self.submit(cmd).ok_or_else(stopped)?;
        answer.await.map_err(|_| stopped())?
    }

    /// Queues a command in order with the publishes without waiting: its answer comes on the
    /// returned channel once it is durable (`None`: the stream stopped).
    pub fn submit(&self, cmd: Command) -> Option<oneshot::Receiver<Result<Reply, ApiError>>> {
        let (done, answer) = oneshot::channel();
        self.inbound.send(Inbound::Command { cmd, done }).ok()?;
        Some(answer)
    }

    /// Applies a config update and re-captures subjects if they changed. A replicated stream's
    /// update is recorded in the meta group too, with the stream's new `peers` if they change.
    pub async fn update(
        self: &Arc<Self>,
        state: &Arc<ServerState>,
        config: StreamConfig,
        peers: Option<Vec<u64>>,
    ) -> Result<StreamConfig, ApiError> {
        let old = self.config();
        let reply = self
            .command(Command::UpdateConfig(Box::new(config)))
            .await?;
        let Reply::ConfigUpdated(new) = reply else {
            return Err(ApiError::store_failed(
                "unexpected reply to a config update",
            ));
        };
        if self.replica.is_some() {
            // Every replica stored the new config when it applied the update; the meta group
            // records it for the whole cluster (captures follow the new subjects).
            let js = self.js.upgrade().ok_or_else(stopped)?;
            if let Some(cluster) = js.cluster() {
                cluster
                    .propose(&natrix_cluster::MetaCommand::update_stream(&new, peers))
                    .await?;
            }
            if copies_changed(&old, &new) && self.is_leader() {
                super::sourcing::start(self, state);
            }
            return Ok(*new);
        }
        if new.storage == StorageType::File {
            let js = self.js.upgrade().ok_or_else(stopped)?;
            let record = StreamRecord {
                config: (*new).clone(),
                created_ns: self.created_ns,
                group_id: None,
                staging: false,
            };
            js.store()
                .put_stream_config(self.id(), record.encode())
                .await
                .map_err(|e| store_failed(&e))?;
        }
        if old.subjects != new.subjects {
            self.resubscribe(state, &new.subjects)
                .map_err(ApiError::stream_invalid_config)?;
        }
        if copies_changed(&old, &new) {
            super::sourcing::start(self, state);
        }
        Ok(*new)
    }

    /// Stops capturing, stops the task and removes the stream's data.
    pub async fn delete(&self, state: &ServerState) -> Result<(), ApiError> {
        self.unsubscribe(state);
        super::sourcing::stop(self);
        for consumer in std::mem::take(&mut *self.consumers.write()).into_values() {
            consumer.stop();
        }
        let _ = self.inbound.send(Inbound::Stop);
        if self.storage == StorageType::File {
            let js = self.js.upgrade().ok_or_else(stopped)?;
            js.store()
                .delete_stream(self.id())
                .await
                .map_err(|e| store_failed(&e))?;
        }
        Ok(())
    }

    /// When the oldest message reaches `max_age` (none: no expiry pending).
    fn next_expiry(&self) -> Option<tokio::time::Instant> {
        if self.replica.is_some() && !self.is_leader() {
            // Only the leader proposes expiries; look again in a while (it may become leader).
            return Some(tokio::time::Instant::now() + std::time::Duration::from_secs(1));
        }
        let core = self.core.lock();
        let max_age = core.stream.config().max_age;
        if max_age <= 0 {
            return None;
        }
        let Some(first) = core.stream.msg_meta(core.stream.first_seq()) else {
            // A replicated stream applies a publish after this task proposed it, so the
            // message this task just handed on may not be here yet: look again by the time it
            // could age out (before, it aged out only when the next request woke this task).
            let wait = std::time::Duration::from_nanos(u64::try_from(max_age).unwrap_or(0));
            return self.replica.is_some().then(|| {
                tokio::time::Instant::now() + wait.min(std::time::Duration::from_secs(1))
            });
        };
        let due_ns = first.timestamp_ns.saturating_add(max_age);
        let wait = u64::try_from(due_ns.saturating_sub(now_ns())).unwrap_or(0);
        Some(tokio::time::Instant::now() + std::time::Duration::from_nanos(wait))
    }

    async fn run(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Inbound>,
        settle_tx: mpsc::UnboundedSender<Settle>,
    ) {
        loop {
            let expiry = self.next_expiry();
            let first: Option<Inbound> = tokio::select! {
                item = rx.recv() => match item {
                    Some(item) => Some(item),
                    None => break,
                },
                () = sleep_until(expiry) => None,
            };
            let timer_fired = first.is_none();
            let mut items = Vec::with_capacity(16);
            items.extend(first);
            while items.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(item) => items.push(item),
                    Err(_) => break,
                }
            }
            let stop = items.iter().any(|i| matches!(i, Inbound::Stop));
            if self.replica.is_some() {
                let settle = self.propose(items, timer_fired).await;
                if settle_tx.send(settle).is_err() || stop {
                    break;
                }
                continue;
            }
            let (batch, mut settle) = self.apply(items);
            if let Some(batch) = batch {
                match self.enqueue(batch).await {
                    Ok(ticket) => settle.ticket = Some(ticket),
                    Err(err) => {
                        fail(&mut settle.answers, &err, &self.name);
                    }
                }
            }
            if settle_tx.send(settle).is_err() || stop {
                break;
            }
        }
    }

    async fn enqueue(&self, batch: StreamBatch) -> Result<CommitTicket, StoreError> {
        let js = self.js.upgrade().ok_or(StoreError::Closed)?;
        js.store().enqueue_commit(batch).await
    }

    /// Applies a batch of inbound items: the store batch to commit (file storage with effects)
    /// and the answers to send once it is durable.
    fn apply(&self, items: Vec<Inbound>) -> (Option<StreamBatch>, Settle) {
        let js = self.js.upgrade();
        let mut core = self.core.lock();
        let core = &mut *core;
        let mut ops = Vec::new();
        let mut answers = Vec::with_capacity(items.len());
        let mut changed = false;
        let mut now = now_ns().max(core.stream.position().last_timestamp_ns.unwrap_or(0));
        let mut batch_bytes = 0u64;
        for item in items {
            let size = item.queued_bytes();
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            match item {
                Inbound::Publish {
                    subject,
                    reply,
                    headers,
                    payload,
                } => {
                    let allowed = match &js {
                        // This batch's earlier publishes are not in the usage figures yet.
                        Some(js) => js.check_resources(self.storage, batch_bytes, size),
                        None => Err(stopped()),
                    };
                    let result = allowed.and_then(|()| {
                        core.stream.apply(Command::Publish {
                            subject,
                            headers,
                            payload,
                            timestamp_ns: now,
                        })
                    });
                    let answer = match result {
                        Ok(applied) => {
                            changed |= !applied.ops.is_empty();
                            let (json, stored) = match &applied.reply {
                                Reply::PubAck(ack) => {
                                    (ack.to_json_in(self.domain.as_deref()), !ack.duplicate)
                                }
                                _ => (String::new(), false),
                            };
                            if stored {
                                batch_bytes += size;
                            }
                            ops.extend(applied.ops);
                            answers.extend(applied.republish.map(Answer::Republish));
                            // Interest retention keeps a message only for the consumers that
                            // exist when it arrives; with none, nats-server drops it at once.
                            if stored
                                && core.stream.config().retention == RetentionPolicy::Interest
                                && self.consumers.read().is_empty()
                                && let Ok(removed) = core.stream.apply(Command::RemoveAcked {
                                    seqs: vec![core.stream.last_seq()],
                                })
                            {
                                ops.extend(removed.ops);
                            }
                            reply.map(|reply| Answer::PubAck { reply, json })
                        }
                        Err(err) => reply.map(|reply| Answer::PubError {
                            reply,
                            json: PubAck::error_json(&self.name, &err),
                        }),
                    };
                    answers.extend(answer);
                    now += 1;
                }
                Inbound::Command { cmd, done } => {
                    let result = core.stream.apply(cmd).map(|Applied { reply, ops: o, .. }| {
                        ops.extend(o);
                        reply
                    });
                    changed |= result.is_ok();
                    answers.push(Answer::Command { done, result });
                }
                Inbound::Consumer { done, .. } => {
                    // Only replicated streams queue consumer writes (`write_consumer`).
                    let _ = done.send(Err(ApiError::store_failed(
                        "consumer write queued on a stream without replicas",
                    )));
                }
                Inbound::Stop => {}
            }
        }
        // The expiry timer fired, or any batch: drop what max_age has aged out.
        if core.stream.config().max_age > 0
            && let Ok(applied) = core.stream.apply(Command::Expire { now_ns: now_ns() })
            && !applied.ops.is_empty()
        {
            changed = true;
            ops.extend(applied.ops);
        }
        let last_seq = core.stream.last_seq();
        self.note_usage(&core.stream);
        self.notify_removed_by(&ops);
        if !changed {
            return (
                None,
                Settle {
                    ticket: None,
                    answers,
                    last_seq,
                    proposal: None,
                },
            );
        }
        core.applied += 1;
        if let Some(memory) = &mut core.memory {
            apply_to_memory(memory, ops);
            return (
                None,
                Settle {
                    ticket: None,
                    answers,
                    last_seq,
                    proposal: None,
                },
            );
        }
        let batch = StreamBatch {
            stream_id: self.id(),
            ops,
            applied: core.applied,
            position: Some(core.stream.position().encode()),
            consumer_updates: Vec::new(),
        };
        (
            Some(batch),
            Settle {
                ticket: None,
                answers,
                last_seq,
                proposal: None,
            },
        )
    }
}

/// The stream state machine rebuilt from what the store holds for stream `id`: its messages (a
/// scan that reads their subjects, headers and sizes) and its sequence position.
fn stream_from_store(
    store: &natrix_store::Store,
    id: u64,
    config: StreamConfig,
    position: Option<StreamPosition>,
) -> Result<Stream, String> {
    let storage = config.storage;
    let mut scan_error = None;
    let msgs = store
        .scan_msg_refs(id, 0, |r| RecoveredMsg::from_ref(&r, storage))
        .map_err(|e| e.to_string())?
        .map_while(|m| match m {
            Ok(m) => Some(m),
            Err(e) => {
                scan_error = Some(e);
                None
            }
        });
    let stream = Stream::recover(config, position, msgs).map_err(|e| e.to_string())?;
    match scan_error {
        Some(e) => Err(e.to_string()),
        None => Ok(stream),
    }
}

/// Whether an update changed what the stream copies from (its copies then start again).
fn copies_changed(old: &StreamConfig, new: &StreamConfig) -> bool {
    old.mirror != new.mirror || old.sources != new.sources
}

fn apply_to_memory(memory: &mut BTreeMap<u64, StoredMsg>, ops: Vec<StoreOp>) {
    for op in ops {
        match op {
            StoreOp::Append(msg) => {
                memory.insert(msg.seq, msg);
            }
            StoreOp::Remove { seq } => {
                memory.remove(&seq);
            }
            StoreOp::RemoveBelow { seq } => {
                let rest = memory.split_off(&seq);
                *memory = rest;
            }
        }
    }
}

/// Sends each batch's answers once its commit is durable, in batch order.
async fn settle(
    host: Weak<StreamHost>,
    state: Weak<ServerState>,
    mut rx: mpsc::UnboundedReceiver<Settle>,
) {
    while let Some(mut batch) = rx.recv().await {
        let (name, domain) = host
            .upgrade()
            .map(|h| (h.name.clone(), h.domain.clone()))
            .unwrap_or_default();
        if let Some(proposal) = batch.proposal.take() {
            replicated::settle_proposal(&name, domain.as_deref(), proposal, &mut batch.answers)
                .await;
        }
        let outcome = match batch.ticket.take() {
            Some(ticket) => ticket.await,
            None => Ok(()),
        };
        match outcome {
            Ok(()) => {
                if let Some(host) = host.upgrade() {
                    host.committed.send_if_modified(|seq| {
                        let moved = batch.last_seq > *seq;
                        *seq = (*seq).max(batch.last_seq);
                        moved
                    });
                }
            }
            Err(err) => {
                tracing::error!("JetStream stream '{name}': write failed: {err}");
                fail(&mut batch.answers, &err, &name);
            }
        }
        let Some(state) = state.upgrade() else { return };
        for answer in batch.answers {
            match answer {
                Answer::PubAck { reply, json } | Answer::PubError { reply, json } => {
                    state.publish_internal(&reply, None, None, json.as_bytes());
                }
                Answer::Command { done, result } => {
                    let _ = done.send(result);
                }
                Answer::Consumer { done, result } => {
                    let _ = done.send(result);
                }
                Answer::Republish(copy) => {
                    state.publish_internal(&copy.subject, None, Some(&copy.headers), &copy.payload);
                }
            }
        }
    }
}

/// Turns a batch's answers into failures: nothing of it may be reported as stored (or
/// republished).
fn fail(answers: &mut Vec<Answer>, err: &StoreError, stream: &str) {
    answers.retain(|answer| !matches!(answer, Answer::Republish(_)));
    let api = store_failed(err);
    for answer in answers.iter_mut() {
        match answer {
            Answer::PubAck { reply, .. } => {
                *answer = Answer::PubError {
                    reply: reply.clone(),
                    json: PubAck::error_json(stream, &api),
                };
            }
            Answer::Command { result, .. } => *result = Err(api.clone()),
            Answer::Consumer { result, .. } => *result = Err(api.clone()),
            Answer::PubError { .. } | Answer::Republish(_) => {}
        }
    }
}

fn store_failed(err: &StoreError) -> ApiError {
    ApiError::store_failed(err.to_string())
}

fn stopped() -> ApiError {
    ApiError::stream_not_found()
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
