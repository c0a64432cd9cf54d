//! A replicated stream's side of [`StreamHost`]. On the leader, the stream task turns each batch
//! of publishes and API commands into ONE Raft log entry (leader-only checks first: account
//! limits, the timestamp, interest retention without consumers); the answers come back from the
//! state machine once the entry is committed on a quorum and applied. On every replica the
//! state machine ([`StreamHost::apply_entry`]) applies committed entries to the same pure
//! `Stream`, and [`StreamHost::persist`] writes their effects together with the group's applied
//! position in one store batch, so a restart resumes exactly where the store is.

use std::ops::ControlFlow;

use bytes::BytesMut;
use natrix_proto::jetstream::{ConsumerSnapshot, StreamSnapshot};
use natrix_raft::openraft::Instant as _;
use natrix_raft::openraft::impls::ProgressResponder;
use natrix_raft::{SnapshotData, SnapshotPieces, WatchReceiver};
use natrix_store::RaftApplied;
use prost::Message;

use super::*;
use crate::jetstream::cluster::entry::ConsumerWrite;
use crate::jetstream::cluster::entry::{
    EntryResult, decode_entry, decode_results, encode_entry, encode_results,
};
use crate::jetstream::cluster::not_leader;

/// How long a new leader waits for a quorum to confirm it before it starts the consumers.
const LEADERSHIP_CONFIRM: std::time::Duration = std::time::Duration::from_secs(2);

/// How recent a quorum's acknowledgement must be for a leader to serve a read without asking the
/// quorum again: half of natrix-raft's minimum election timeout (1 s).
const READ_LEASE: std::time::Duration = std::time::Duration::from_millis(500);

/// Pause before a new leader that could not confirm its leadership looks again.
const LEADERSHIP_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a proposal waits for a newly elected leader's first quorum acknowledgement.
const WRITE_LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl StreamHost {
    /// The stream's Raft group on this node, once started.
    pub fn raft(&self) -> Option<&natrix_raft::Raft> {
        self.replica.as_ref()?.raft.get()
    }

    /// The group's leader as this replica knows it.
    pub fn leader(&self) -> Option<u64> {
        self.raft()?.metrics().borrow_watched().current_leader
    }

    /// Whether this node may take writes for the stream: always for a single-node stream, for a
    /// replicated one while it is the group's leader.
    pub fn is_leader(&self) -> bool {
        match &self.replica {
            None => true,
            Some(replica) => self.leader() == Some(replica.node_id),
        }
    }

    /// Runs the stream's consumers where its leader is, for as long as the group runs. When this
    /// replica becomes the leader it first confirms that with a quorum and applies everything
    /// committed before (`ensure_linearizable`), so the consumer records are the latest, then
    /// starts every consumer from its record; when it stops leading it stops them (pull
    /// requests waiting here get `409 Leadership Change`).
    pub(crate) fn follow_leadership(self: &Arc<Self>, state: &Arc<ServerState>) {
        let (Some(raft), Some(node_id)) = (
            self.raft().cloned(),
            self.replica.as_ref().map(|r| r.node_id),
        ) else {
            return;
        };
        let host = Arc::downgrade(self);
        let state = Arc::downgrade(state);
        tokio::spawn(async move {
            let mut metrics = raft.metrics();
            let mut serving = false;
            loop {
                let leading = {
                    let m = metrics.borrow_and_update();
                    m.current_leader == Some(node_id) && m.state.is_leader()
                };
                let Some(host) = host.upgrade() else { return };
                if leading && !serving {
                    let confirmed = tokio::time::timeout(
                        LEADERSHIP_CONFIRM,
                        raft.ensure_linearizable(natrix_raft::openraft::ReadPolicy::ReadIndex),
                    )
                    .await;
                    if !matches!(confirmed, Ok(Ok(_))) {
                        drop(host);
                        tokio::time::sleep(LEADERSHIP_RETRY).await;
                        continue;
                    }
                    let Some(state) = state.upgrade() else { return };
                    host.start_consumers(&state);
                    crate::jetstream::sourcing::start(&host, &state);
                    host.note_leading(true);
                    serving = true;
                } else if !leading && serving {
                    host.step_down_consumers();
                    crate::jetstream::sourcing::stop(&host);
                    host.note_leading(false);
                    serving = false;
                }
                drop(host);
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    fn note_leading(&self, leading: bool) {
        if let Some(replica) = &self.replica {
            let since = if leading { now_ns().max(1) } else { 0 };
            replica.leader_since_ns.store(since, Ordering::Release);
        }
    }

    /// Since when this replica serves as the stream's leader (Unix ns), if it does.
    pub(crate) fn leader_since_ns(&self) -> Option<i64> {
        let since = self
            .replica
            .as_ref()?
            .leader_since_ns
            .load(Ordering::Acquire);
        (since > 0).then_some(since)
    }

    /// Before a read served from this replica's state: whether it still leads. A leader that a
    /// quorum acknowledged within [`READ_LEASE`] does (no other node can have been elected since:
    /// elections wait at least twice as long); otherwise a quorum must confirm it now
    /// (`ensure_linearizable`, bounded). A restarted former leader, which believes it leads its
    /// old term until it hears of the new one, and a leader cut off from its quorum both fail
    /// here instead of answering from stale state. Streams without replicas always lead.
    pub(crate) async fn confirm_leader(&self) -> bool {
        let (Some(raft), Some(node_id)) = (self.raft(), self.replica.as_ref().map(|r| r.node_id))
        else {
            return self.replica.is_none();
        };
        // `last_quorum_acked` is when a quorum last acknowledged this leader (openraft's own
        // clock reading, not the age it had when the metrics were reported).
        let leased = {
            let metrics = raft.metrics();
            let metrics = metrics.borrow_watched();
            metrics.current_leader == Some(node_id)
                && metrics
                    .last_quorum_acked
                    .as_ref()
                    .is_some_and(|at| at.elapsed() < READ_LEASE)
        };
        leased
            || matches!(
                tokio::time::timeout(
                    LEADERSHIP_CONFIRM,
                    raft.ensure_linearizable(natrix_raft::openraft::ReadPolicy::ReadIndex)
                )
                .await,
                Ok(Ok(_))
            )
    }

    /// Whether the replicated records hold this consumer (it may not run here yet).
    pub(crate) fn has_consumer_record(&self, name: &str) -> bool {
        self.core.lock().consumer_records.contains_key(name)
    }

    /// Starts every consumer of the replicated records that does not run here yet.
    fn start_consumers(self: &Arc<Self>, state: &Arc<ServerState>) {
        let records = self.core.lock().consumer_records.clone();
        for (name, bytes) in records {
            if self.consumers.read().contains_key(&name) {
                continue;
            }
            match ConsumerRecord::decode(&bytes) {
                Ok(record) => {
                    let consumer = natrix_stream::Consumer::restore(
                        record.config,
                        record.created_ns,
                        record.state,
                    );
                    let consumer = ConsumerHost::start(state, self, name, consumer);
                    self.add_consumer(consumer);
                }
                Err(err) => tracing::error!(
                    "JetStream consumer '{} > {name}': record unreadable, not started: {err}",
                    self.name
                ),
            }
        }
    }

    /// Stops the consumers running here (their records stay: the next leader starts them).
    fn step_down_consumers(&self) {
        for consumer in std::mem::take(&mut *self.consumers.write()).into_values() {
            consumer.step_down();
        }
    }

    /// Leader side: turns a batch of inbound items into one log entry and proposes it.
    pub(super) async fn propose(&self, items: Vec<Inbound>, timer_fired: bool) -> Settle {
        let js = self.js.upgrade();
        let mut commands = Vec::with_capacity(items.len());
        let mut slots = Vec::with_capacity(items.len());
        let mut answers = Vec::new();
        {
            let core = self.core.lock();
            let config = core.stream.config();
            let mut now = now_ns().max(core.stream.position().last_timestamp_ns.unwrap_or(0));
            // From the replicated records, not the running consumers: a new leader proposes
            // before its consumers are started.
            let drop_at_once =
                config.retention == RetentionPolicy::Interest && core.consumer_records.is_empty();
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
                            Some(js) => js.check_resources(self.storage, batch_bytes, size),
                            None => Err(stopped()),
                        };
                        match allowed {
                            Ok(()) => {
                                batch_bytes += size;
                                commands.push(EntryCommand::Publish {
                                    command: Command::Publish {
                                        subject,
                                        headers,
                                        payload,
                                        timestamp_ns: now,
                                    },
                                    drop_at_once,
                                });
                                slots.push(Slot::Publish(reply));
                                now += 1;
                            }
                            Err(err) => answers.extend(reply.map(|reply| Answer::PubError {
                                reply,
                                json: PubAck::error_json(&self.name, &err),
                            })),
                        }
                    }
                    Inbound::Command { cmd, done } => {
                        commands.push(EntryCommand::Other(cmd));
                        slots.push(Slot::Command(done));
                    }
                    Inbound::Consumer { write, done } => {
                        commands.push(EntryCommand::Consumer(write));
                        slots.push(Slot::Consumer(done));
                    }
                    Inbound::Stop => {}
                }
            }
            if config.max_age > 0 && (timer_fired || !commands.is_empty()) {
                let now = now_ns();
                let due = core
                    .stream
                    .msg_meta(core.stream.first_seq())
                    .is_some_and(|m| m.timestamp_ns.saturating_add(config.max_age) <= now);
                if due {
                    commands.push(EntryCommand::Other(Command::Expire { now_ns: now }));
                    slots.push(Slot::Internal);
                }
            }
        }
        let mut settle = Settle {
            ticket: None,
            answers,
            last_seq: 0,
            proposal: None,
        };
        if commands.is_empty() {
            return settle;
        }
        let refused = |commands: Vec<EntryCommand>, slots: Vec<Slot>, err: ApiError| Proposal {
            commands,
            slots,
            answer: Box::pin(std::future::ready(Err::<Bytes, ApiError>(err))),
        };
        let Some(raft) = self.raft().filter(|_| self.is_leader()) else {
            settle.proposal = Some(refused(commands, slots, not_leader()));
            return settle;
        };
        let entry = natrix_raft::Command(encode_entry(&commands));
        // A leader just elected takes writes once a quorum answered it (bounded wait; if it
        // loses the lease or the leadership meanwhile, openraft refuses the write below).
        natrix_raft::wait_write_lease(raft, WRITE_LEASE_WAIT).await;
        let (responder, rx) = ProgressResponder::complete_only();
        settle.proposal = Some(match raft.client_write_ff(entry, Some(responder)).await {
            Ok(()) => Proposal {
                commands,
                slots,
                answer: Box::pin(async move {
                    match rx.await {
                        Ok(Ok(response)) => Ok(response.data.0),
                        Ok(Err(err)) => {
                            tracing::debug!("stream proposal not committed: {err}");
                            Err(not_leader())
                        }
                        Err(_) => Err(not_leader()),
                    }
                }),
            },
            Err(err) => refused(commands, slots, ApiError::store_failed(err.to_string())),
        });
        settle
    }

    /// State machine: applies the committed entry at log `index` to this replica's stream and
    /// returns the results (encoded) for the proposer. Effects wait for [`StreamHost::persist`].
    pub(crate) fn apply_entry(&self, index: u64, entry: &[u8]) -> Bytes {
        let mut guard = self.core.lock();
        let core = &mut *guard;
        if index <= core.raft_index {
            // Already part of this replica's state (a snapshot newer than the log position).
            return Bytes::new();
        }
        core.raft_index = index;
        let commands = match decode_entry(entry) {
            Ok(commands) => commands,
            Err(err) => {
                tracing::error!(
                    "JetStream stream '{}': log entry {index} skipped: {err}",
                    self.name
                );
                return encode_results(&[]);
            }
        };
        let mut results: Vec<EntryResult> = Vec::with_capacity(commands.len());
        let mut ops = Vec::new();
        for command in commands {
            let (command, drop_at_once) = match command {
                EntryCommand::Publish {
                    command,
                    drop_at_once,
                } => (command, drop_at_once),
                EntryCommand::Other(command) => (command, false),
                EntryCommand::Consumer(write) => {
                    apply_consumer_write(core, write);
                    results.push(Ok(None));
                    continue;
                }
            };
            let result = match core.stream.apply(command) {
                Ok(applied) => {
                    ops.extend(applied.ops);
                    // Only the leader republishes (as in nats-server), once the entry is
                    // persisted.
                    if let Some(copy) = applied.republish
                        && self.is_leader()
                    {
                        core.pending_republish.push(copy);
                    }
                    match &applied.reply {
                        Reply::PubAck(ack) if drop_at_once && !ack.duplicate => {
                            let seqs = vec![ack.seq];
                            if let Ok(removed) = core.stream.apply(Command::RemoveAcked { seqs }) {
                                ops.extend(removed.ops);
                            }
                        }
                        Reply::ConfigUpdated(config) => {
                            core.pending_config = Some((**config).clone());
                        }
                        _ => {}
                    }
                    Ok(Some(applied.reply))
                }
                Err(err) => Err(err),
            };
            results.push(result);
        }
        self.note_usage(&core.stream);
        self.notify_removed_by(&ops);
        match &mut core.memory {
            Some(memory) => apply_to_memory(memory, ops),
            None => core.pending_ops.extend(ops),
        }
        encode_results(&results)
    }

    /// State machine: writes what was applied since the last call together with the group's
    /// applied position (`applied`, natrix-raft's encoding) in one store batch, then lets
    /// consumers see the new messages.
    pub(crate) async fn persist(&self, applied: Vec<u8>) -> Result<(), StoreError> {
        let Some(replica) = &self.replica else {
            return Ok(());
        };
        let (batch, config, last_seq, republish) = {
            let mut core = self.core.lock();
            let last_seq = core.stream.last_seq();
            let republish = std::mem::take(&mut core.pending_republish);
            if core.memory.is_some() {
                core.pending_consumers.clear();
                (None, None, last_seq, republish)
            } else {
                core.applied += 1;
                let batch = StreamBatch {
                    stream_id: self.id(),
                    ops: std::mem::take(&mut core.pending_ops),
                    applied: core.applied,
                    position: Some(core.stream.position().encode()),
                    consumer_updates: std::mem::take(&mut core.pending_consumers),
                };
                (Some(batch), core.pending_config.take(), last_seq, republish)
            }
        };
        if let Some(batch) = batch {
            let js = self.js.upgrade().ok_or(StoreError::Closed)?;
            if let Some(config) = config {
                // Before the batch: if the node dies in between, the update is applied again.
                let record = StreamRecord {
                    config,
                    created_ns: self.created_ns,
                    group_id: Some(replica.group_id),
                    staging: false,
                };
                js.store()
                    .put_stream_config(self.id(), record.encode())
                    .await?;
            }
            let applied = RaftApplied {
                group_id: replica.group_id,
                state: Bytes::from(applied),
            };
            // Not fsynced again: the Raft log holds these entries durably on a quorum; the batch
            // is synced with the next log write (see `Store::write_with_raft_applied`).
            js.store().write_with_raft_applied(batch, applied)?;
        }
        self.committed.send_if_modified(|seq| {
            let moved = last_seq > *seq;
            *seq = (*seq).max(last_seq);
            moved
        });
        if !republish.is_empty()
            && let Some(server) = self.server.upgrade()
        {
            for copy in republish {
                server.publish_internal(&copy.subject, None, Some(&copy.headers), &copy.payload);
            }
        }
        Ok(())
    }

    /// State machine: the stream at the current log position (portable bytes), to store as the
    /// group's snapshot. A file stream's messages are left out (`partial`): they stay in this
    /// node's store, written with each applied batch.
    pub(crate) fn stored_snapshot(&self) -> Bytes {
        let core = self.core.lock();
        let head = self.snapshot_head(&core);
        match &core.memory {
            Some(memory) => {
                let mut snapshot = head.begin(0);
                for m in memory.values() {
                    push_snapshot_msg(&mut snapshot, m);
                }
                snapshot.freeze()
            }
            None => head.encode(Vec::new(), true),
        }
    }

    /// State machine: the whole stream at the current log position, every message included
    /// (read from the store for a file stream), for a replica that needs a snapshot; `None` for
    /// a memory stream, whose stored snapshot is whole already. Resolves once the store read is
    /// pinned to this position (a RocksDB snapshot, taken on a blocking thread) and the
    /// stream's in-memory parts are taken, both inside this one state machine call, so nothing
    /// is applied in between; the messages are then read and encoded on that thread, piece by
    /// piece as the task sending the snapshot takes them (a few pieces ahead at most), while
    /// the group goes on applying. The read stops when the sender drops the pieces.
    pub(crate) async fn transfer_snapshot(&self) -> Result<Option<SnapshotData>, String> {
        if self.core.lock().memory.is_some() {
            return Ok(None);
        }
        let js = self.js.upgrade().ok_or("JetStream stopped")?;
        let store = Arc::clone(js.store());
        let id = self.id();
        let (pinned_tx, pinned_rx) = tokio::sync::oneshot::channel();
        let (head_tx, head_rx) = std::sync::mpsc::sync_channel::<SnapshotHead>(1);
        let (pieces_tx, pieces_rx) = tokio::sync::mpsc::channel(SNAPSHOT_PIECES_AHEAD);
        let reading = tokio::task::spawn_blocking(move || {
            let read = store.fold_msgs_pinned(
                id,
                move || {
                    let _ = pinned_tx.send(());
                    // `None`: the state machine call gave up; nothing more is read.
                    let head = head_rx.recv().ok()?;
                    Some((head.begin(SNAPSHOT_PIECE), pieces_tx))
                },
                |(piece, pieces), m| {
                    push_snapshot_msg(piece, &m);
                    if piece.len() < SNAPSHOT_PIECE {
                        return ControlFlow::Continue(());
                    }
                    let full = piece.split().freeze();
                    piece.reserve(SNAPSHOT_PIECE);
                    match pieces.blocking_send(Ok(full)) {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(_) => ControlFlow::Break(()),
                    }
                },
            )?;
            if let Some((last, pieces)) = read
                && !last.is_empty()
            {
                let _ = pieces.blocking_send(Ok(last.freeze()));
            }
            Ok::<_, natrix_store::StoreError>(())
        });
        let failed = |e: &dyn std::fmt::Display| format!("reading the messages: {e}");
        if pinned_rx.await.is_err() {
            // The read failed before it was pinned: its error says why.
            return Err(match reading.await {
                Ok(Err(e)) => failed(&e),
                Ok(Ok(())) => failed(&"the read ended before it was pinned"),
                Err(e) => failed(&e),
            });
        }
        let (head, size_hint) = {
            let core = self.core.lock();
            // The messages' sizes plus their records' own fields; an estimate.
            let estimate = core
                .stream
                .bytes()
                .saturating_add(core.stream.messages().saturating_mul(32));
            (self.snapshot_head(&core), estimate)
        };
        head_tx
            .send(head)
            .map_err(|_| failed(&"the reading thread stopped"))?;
        let name = self.name.clone();
        // The pieces, then how the read ended: a read that failed or stopped short (a panic)
        // ends in an error, never as if the snapshot were whole.
        let pieces = futures::stream::unfold(
            (pieces_rx, Some(reading)),
            move |(mut pieces_rx, reading)| {
                let name = name.clone();
                async move {
                    if let Some(piece) = pieces_rx.recv().await {
                        return Some((piece, (pieces_rx, reading)));
                    }
                    let ended = match reading?.await {
                        Ok(Ok(())) => return None,
                        Ok(Err(e)) => failed(&e),
                        Err(e) => failed(&e),
                    };
                    Some((Err(format!("stream '{name}': {ended}")), (pieces_rx, None)))
                }
            },
        );
        Ok(Some(SnapshotData::Reading(SnapshotPieces {
            size_hint,
            pieces: Box::pin(pieces),
        })))
    }

    /// Everything of a snapshot but the messages, as the stream is now.
    fn snapshot_head(&self, core: &StreamCore) -> SnapshotHead {
        SnapshotHead {
            config_json: Bytes::from(core.stream.config().to_json()),
            created_ns: self.created_ns,
            position: core.stream.position().encode(),
            raft_index: core.raft_index,
            consumers: core
                .consumer_records
                .iter()
                .map(|(name, record)| ConsumerSnapshot {
                    name: name.clone(),
                    record: record.clone(),
                })
                .collect(),
        }
    }

    /// State machine: replaces this replica's stream with a snapshot (from any node), together
    /// with the group's applied position, in one store batch. The messages come either in the
    /// snapshot (decoded as slices of it, no copy before the store batch) or, for a file stream
    /// received from the leader, already in the store under the staging id the snapshot names
    /// (see [`super::received`]): that id then becomes the stream's.
    pub(crate) async fn install_snapshot(
        &self,
        snapshot: Bytes,
        applied: Vec<u8>,
    ) -> Result<(), String> {
        let mut snapshot =
            StreamSnapshot::decode(snapshot).map_err(|e| format!("snapshot: {e}"))?;
        if snapshot.partial {
            // Only a node's own stored snapshot is partial, and a node with a stored snapshot
            // restarts from its store; installing one would drop every message.
            return Err("a snapshot without the stream's messages cannot be installed".into());
        }
        let config = StreamConfig::from_json(&snapshot.config_json)
            .map_err(|e| format!("snapshot config: {e}"))?;
        let position = StreamPosition::decode(snapshot.position.clone())
            .map_err(|e| format!("snapshot position: {e}"))?;
        let storage = config.storage;
        let staged = snapshot.staged_stream_id;
        let js = self.js.upgrade().ok_or("stopped")?;
        let (stream, msgs) = if staged != 0 {
            if storage != StorageType::File || self.core.lock().memory.is_some() {
                return Err("a staged snapshot is only installed into a file stream".into());
            }
            let store = Arc::clone(js.store());
            let config = config.clone();
            let stream = tokio::task::spawn_blocking(move || {
                super::stream_from_store(&store, staged, config, Some(position))
            })
            .await
            .map_err(|e| format!("reading the received messages: {e}"))?
            .map_err(|e| format!("reading the received messages: {e}"))?;
            (stream, Vec::new())
        } else {
            // Taken, not cloned: once the store batch is built from the messages, nothing
            // holds the received snapshot any more and its memory is freed before the batch
            // is written.
            let msgs = std::mem::take(&mut snapshot.msgs)
                .into_iter()
                .map(StoredMsg::decode)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("snapshot message: {e}"))?;
            let stream = Stream::recover(
                config.clone(),
                Some(position),
                msgs.iter().map(|m| RecoveredMsg::from_stored(m, storage)),
            )
            .map_err(|e| format!("snapshot: {e}"))?;
            (stream, msgs)
        };
        let last_seq = stream.last_seq();
        let consumers: BTreeMap<String, Bytes> = snapshot
            .consumers
            .into_iter()
            .map(|c| (c.name, c.record))
            .collect();
        let batch = {
            let mut core = self.core.lock();
            core.stream = stream;
            core.raft_index = snapshot.raft_index;
            core.pending_ops.clear();
            core.pending_config = None;
            core.pending_consumers.clear();
            // A staged stream has no consumers yet; the stream it replaces goes whole.
            let mut consumer_updates: Vec<ConsumerUpdate> = core
                .consumer_records
                .keys()
                .filter(|name| staged == 0 && !consumers.contains_key(*name))
                .map(|name| ConsumerUpdate::Delete { name: name.clone() })
                .collect();
            consumer_updates.extend(consumers.iter().map(|(name, record)| ConsumerUpdate::Put {
                name: name.clone(),
                state: record.clone(),
            }));
            core.consumer_records = consumers;
            self.note_usage(&core.stream);
            match &mut core.memory {
                Some(memory) => {
                    *memory = msgs.into_iter().map(|m| (m.seq, m)).collect();
                    None
                }
                None => {
                    core.applied += 1;
                    let mut ops = Vec::new();
                    if staged == 0 {
                        ops.push(StoreOp::RemoveBelow { seq: u64::MAX });
                        ops.extend(msgs.into_iter().map(StoreOp::Append));
                    }
                    Some(StreamBatch {
                        stream_id: if staged == 0 { self.id() } else { staged },
                        ops,
                        applied: core.applied,
                        position: Some(core.stream.position().encode()),
                        consumer_updates,
                    })
                }
            }
        };
        if let Some(batch) = batch {
            let record = StreamRecord {
                config,
                created_ns: snapshot.created_ns,
                group_id: self.replica.as_ref().map(|r| r.group_id),
                staging: false,
            };
            let store = js.store();
            let group_id = self.replica.as_ref().map_or(0, |r| r.group_id);
            let applied = RaftApplied {
                group_id,
                state: Bytes::from(applied),
            };
            if staged == 0 {
                store
                    .put_stream_config(self.id(), record.encode())
                    .await
                    .map_err(|e| e.to_string())?;
                store
                    .commit_with_raft_applied(batch, applied)
                    .await
                    .map_err(|e| e.to_string())?;
            } else {
                store
                    .adopt_stream(self.id(), record.encode(), batch, applied)
                    .await
                    .map_err(|e| e.to_string())?;
                self.id.store(staged, Ordering::Release);
                tracing::info!(
                    "JetStream stream '{}': took over the {} messages of a received snapshot from the store",
                    self.name,
                    self.messages()
                );
            }
        }
        self.committed.send_replace(last_seq);
        Ok(())
    }
}

/// Turns a committed proposal's results (or its failure) into the answers of its commands.
pub(super) async fn settle_proposal(
    stream: &str,
    domain: Option<&str>,
    proposal: Proposal,
    answers: &mut Vec<Answer>,
) {
    let results = match proposal.answer.await {
        Ok(bytes) => decode_results(&bytes, &proposal.commands, stream)
            .map_err(|e| ApiError::store_failed(e.to_string())),
        Err(err) => Err(err),
    };
    let mut results = match results {
        Ok(results) => results.into_iter().map(Some).collect::<Vec<_>>(),
        Err(err) => {
            tracing::warn!("JetStream stream '{stream}': batch not replicated: {err}");
            vec![Some(Err(err)); proposal.slots.len()]
        }
    };
    for (slot, result) in proposal.slots.into_iter().zip(results.iter_mut()) {
        let result = result.take().unwrap_or_else(|| Err(not_leader()));
        match slot {
            Slot::Publish(Some(reply)) => answers.push(match result {
                Ok(Some(Reply::PubAck(ack))) => Answer::PubAck {
                    reply,
                    json: ack.to_json_in(domain),
                },
                Ok(_) => Answer::PubError {
                    reply,
                    json: PubAck::error_json(stream, &ApiError::store_failed("unexpected reply")),
                },
                Err(err) => Answer::PubError {
                    reply,
                    json: PubAck::error_json(stream, &err),
                },
            }),
            Slot::Command(done) => answers.push(Answer::Command {
                done,
                result: result.and_then(|reply| {
                    reply.ok_or_else(|| ApiError::store_failed("no reply to a stream command"))
                }),
            }),
            Slot::Consumer(done) => answers.push(Answer::Consumer {
                done,
                result: result.map(drop),
            }),
            Slot::Publish(None) | Slot::Internal => {}
        }
    }
}

/// State machine: a consumer record change, the same on every replica.
fn apply_consumer_write(core: &mut StreamCore, write: ConsumerWrite) {
    match write {
        ConsumerWrite::Put {
            name,
            record,
            create,
        } => {
            if create || core.consumer_records.contains_key(&name) {
                core.consumer_records.insert(name.clone(), record.clone());
                core.pending_consumers.push(ConsumerUpdate::Put {
                    name,
                    state: record,
                });
            }
        }
        ConsumerWrite::Delete { name } => {
            if core.consumer_records.remove(&name).is_some() {
                core.pending_consumers.push(ConsumerUpdate::Delete { name });
            }
        }
    }
}

/// A stream snapshot without its messages, taken at one log position; the messages (none for a
/// stored partial snapshot) are added when it is encoded.
struct SnapshotHead {
    config_json: Bytes,
    created_ns: i64,
    position: Bytes,
    raft_index: u64,
    consumers: Vec<ConsumerSnapshot>,
}

impl SnapshotHead {
    /// A whole snapshot being built: every field but the messages, encoded into a buffer of
    /// `capacity` bytes to start with; [`push_snapshot_msg`] appends the messages (protobuf
    /// fields may come in any order, and a repeated field's entries keep theirs).
    fn begin(self, capacity: usize) -> BytesMut {
        let head = self.encode(Vec::new(), false);
        let mut snapshot = BytesMut::with_capacity(capacity.max(head.len()));
        snapshot.extend_from_slice(&head);
        snapshot
    }

    fn encode(self, msgs: Vec<Bytes>, partial: bool) -> Bytes {
        Bytes::from(
            StreamSnapshot {
                config_json: self.config_json,
                created_ns: self.created_ns,
                position: self.position,
                msgs,
                raft_index: self.raft_index,
                consumers: self.consumers,
                partial,
                staged_stream_id: 0,
            }
            .encode_to_vec(),
        )
    }
}

/// A snapshot for a follower is read in pieces of about this many bytes...
const SNAPSHOT_PIECE: usize = 1 << 20;
/// ...of which at most this many wait for the task that sends them.
const SNAPSHOT_PIECES_AHEAD: usize = 4;

/// `StreamSnapshot.msgs` (field 4): one more stored message, encoded in place.
fn push_snapshot_msg(snapshot: &mut BytesMut, m: &StoredMsg) {
    prost::encoding::encode_key(4, prost::encoding::WireType::LengthDelimited, snapshot);
    prost::encoding::encode_varint(m.encoded_len() as u64, snapshot);
    m.encode(snapshot);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored message in its portable encoding (natrix-stream's StoredMsg v1).
    fn encode_msg(m: &StoredMsg) -> Bytes {
        let mut out = BytesMut::with_capacity(m.encoded_len());
        m.encode(&mut out);
        out.freeze()
    }

    #[test]
    fn a_snapshot_built_in_place_decodes_as_one_encoded_whole()
    -> Result<(), Box<dyn std::error::Error>> {
        let msgs: Vec<StoredMsg> = (1..=3u8)
            .map(|seq| StoredMsg {
                seq: u64::from(seq),
                timestamp_ns: i64::from(seq),
                subject: Bytes::from(format!("orders.{seq}")),
                headers: (seq == 2).then(|| Bytes::from_static(b"NATS/1.0\r\nA: b\r\n\r\n")),
                payload: Bytes::from(vec![seq; 300]),
            })
            .collect();
        let head = || SnapshotHead {
            config_json: Bytes::from_static(b"{\"name\":\"ORDERS\"}"),
            created_ns: 7,
            position: Bytes::from_static(b"position"),
            raft_index: 42,
            consumers: vec![ConsumerSnapshot {
                name: "worker".into(),
                record: Bytes::from_static(b"record"),
            }],
        };
        let whole = head().encode(msgs.iter().map(encode_msg).collect(), false);
        let mut built = head().begin(16);
        for m in &msgs {
            push_snapshot_msg(&mut built, m);
        }
        let built = StreamSnapshot::decode(built.freeze())?;
        assert_eq!(built, StreamSnapshot::decode(whole)?);
        let decoded = built
            .msgs
            .iter()
            .map(|m| StoredMsg::decode(m.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        assert_eq!(decoded, msgs);
        assert!(!built.partial);
        assert_eq!(built.raft_index, 42);
        Ok(())
    }
}
