//! Clustered JetStream (issue 4): the meta Raft group (group 0: which nodes exist, which streams
//! exist and where their replicas live, `natrix-cluster`'s `MetaState`) and one Raft group per
//! stream whose state machine is the stream's `StreamHost` on each replica.
//!
//! Every node runs a reconciler that makes the node match the meta state: it captures every
//! stream's subjects (a publish on any node is handed to the stream's leader over the route
//! session, after the interest changes queued before it, so the PubAck finds its way back), starts
//! the replicas assigned to it (the first peer of a new group initialises it), and removes
//! replicas that are no longer assigned once its meta state has caught up.
//!
//! The meta group forms by itself: a node without meta state waits until its set of JetStream
//! peers has been stable for a moment; the one with the smallest node id, if no peer already
//! belongs to a meta group, initialises it with all of them. From then on the meta leader adds
//! every JetStream node that connects as a voter and records it (address, tags) in the meta state.

pub(crate) mod entry;
mod machines;
mod membership;
pub(crate) mod operations;
mod service;

use natrix_raft::WatchReceiver;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use natrix_cluster::{
    META_GROUP_ID, MetaCommand, MetaReply, MetaState, PeerInfo, StreamAssignment, decode_reply,
    encode_command, place,
};
use natrix_proto::jetstream::jet_stream_cluster_client::JetStreamClusterClient;
use natrix_proto::jetstream::{
    AccountUsageRequest, GroupLeaderRequest, GroupLeaderResponse, MetaProposal, MetaStatusRequest,
};
use natrix_raft::openraft::ChangeMembers;
use natrix_raft::{NetworkOptions, Raft, RaftHost, RaftNode};
use natrix_store::Store;
use natrix_stream::{ApiError, StreamConfig};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, watch};

pub(crate) use machines::{MetaMachine, StreamMachine};
pub(crate) use service::service;

use super::{JetStream, StreamHost, now_ns};
use crate::cluster::Mesh;
use crate::internal::{InternalHandler, InternalMsg};
use crate::router::Subscription;
use crate::state::ServerState;

/// Most node-to-node hand-overs of one message (publish, API request, ack) before it is dropped:
/// a non-replica hands it to a replica, which hands it to the leader it knows.
pub(crate) const MAX_HOPS: u32 = 2;

/// How long a node's set of JetStream peers must stay the same before the meta group is formed.
const BOOTSTRAP_SETTLE: Duration = Duration::from_secs(1);

/// How often the reconciler looks at the cluster when nothing wakes it.
const RECONCILE_INTERVAL: Duration = Duration::from_millis(250);

/// Longest wait for a meta proposal, its local application, or a new stream's leader.
const META_TIMEOUT: Duration = Duration::from_secs(10);

/// A create placed on a peer that left before the meta group applied it is placed again, at
/// most this many times, after this pause (the removal reaches this node's view meanwhile).
const PLACEMENT_RETRIES: u32 = 3;
const PLACEMENT_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Deadline of one node-to-node call of this module.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// For this long after a node starts, a JetStream API request that reaches it before its meta
/// group is ready waits for it instead of being answered 10008. nats-server does not answer at
/// all in that window (its `lostQuorumIntervalDefault`, 10 s), and 10008 after it.
const API_START_WINDOW: Duration = Duration::from_secs(10);

/// Longest wait in the start-up window for a route session to the node a request goes to.
const LINK_WAIT: Duration = Duration::from_secs(2);

/// nats-server's `JSClusterNotLeaderErr` (10009): the request reached a node that cannot serve
/// it now (no leader, or leadership moved while it was in flight).
pub(crate) fn not_leader() -> ApiError {
    ApiError::new(500, 10009, "JetStream cluster can not handle request")
}

/// nats-server's `JSClusterNotAvailErr` (10008): the meta group has no leader.
pub(crate) fn not_available() -> ApiError {
    ApiError::new(503, 10008, "JetStream system temporarily unavailable")
}

/// Clustered JetStream on one node.
pub(crate) struct JsCluster {
    pub node_id: u64,
    pub cluster_name: String,
    pub raft: RaftHost,
    pub meta: Raft,
    pub meta_state: Arc<RwLock<MetaState>>,
    meta_applied: watch::Receiver<u64>,
    changed: Arc<Notify>,
    /// The internal subscriptions capturing each stream's subjects on this node.
    captures: Mutex<BTreeMap<String, Capture>>,
    /// Stream groups this node initialised (or found initialised).
    initialized: Mutex<HashSet<u64>>,
    /// One reconciliation at a time (the reconciler task and API handlers both run it).
    reconciling: tokio::sync::Mutex<()>,
    /// Stream groups whose replicas this node (their leader) is moving right now.
    moving: Arc<Mutex<HashSet<u64>>>,
    stopped: std::sync::atomic::AtomicBool,
    /// When this node's meta group member started (the start of [`API_START_WINDOW`]).
    started: Instant,
    /// Set once [`JsCluster::api_ready`] held; later losses of the meta leader are answered
    /// 10008 at once, as nats-server does.
    api_was_ready: std::sync::atomic::AtomicBool,
}

struct Capture {
    subjects: Vec<String>,
    subs: Vec<Arc<Subscription>>,
}

impl JsCluster {
    /// Starts the node's Raft host and its meta group member (from what the store holds).
    pub async fn start(
        store: &Store,
        cluster_name: &str,
        network: NetworkOptions,
    ) -> Result<Arc<JsCluster>, String> {
        let node_id = store
            .node_id()
            .map_err(|e| format!("node id in the store: {e}"))?;
        let raft = RaftHost::new(node_id, network);
        let meta_state = Arc::new(RwLock::new(MetaState::new()));
        let changed = Arc::new(Notify::new());
        let (applied, meta_applied) = watch::channel(0);
        let machine = MetaMachine {
            state: meta_state.clone(),
            changed: changed.clone(),
            applied,
        };
        let meta = raft
            .start_group(
                store,
                META_GROUP_ID,
                natrix_raft::default_config(format!("{cluster_name}/meta")),
                machine,
            )
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!("JetStream cluster node id {node_id:016x}");
        Ok(Arc::new(JsCluster {
            node_id,
            cluster_name: cluster_name.to_string(),
            raft,
            meta,
            meta_state,
            meta_applied,
            changed,
            captures: Mutex::new(BTreeMap::new()),
            initialized: Mutex::new(HashSet::new()),
            reconciling: tokio::sync::Mutex::new(()),
            moving: Arc::new(Mutex::new(HashSet::new())),
            stopped: std::sync::atomic::AtomicBool::new(false),
            started: Instant::now(),
            api_was_ready: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Starts the reconciler (once the route mesh is up).
    pub fn spawn(self: &Arc<Self>, state: &Arc<ServerState>, js: &Arc<JetStream>) {
        tokio::spawn(run(self.clone(), Arc::downgrade(state), Arc::downgrade(js)));
    }

    /// Stops every Raft group of this node.
    pub async fn shutdown(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.changed.notify_one();
        self.raft.shutdown().await;
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The meta leader as this node knows it.
    pub fn meta_leader(&self) -> Option<u64> {
        self.meta.metrics().borrow_watched().current_leader
    }

    /// Whether this node's meta state is current: it has a leader and applied its whole log.
    /// The machine's own applied index counts too: openraft's metrics report an apply a moment
    /// after the machine did it.
    pub fn meta_caught_up(&self) -> bool {
        let metrics = self.meta.metrics();
        let metrics = metrics.borrow_watched();
        let applied = metrics
            .last_applied
            .map(|id| id.index)
            .max(Some(*self.meta_applied.borrow()));
        metrics.current_leader.is_some() && applied >= metrics.last_log_index
    }

    /// Whether this node can serve the JetStream API from its meta state: the state is current
    /// (see [`JsCluster::meta_caught_up`]) and records every member of the meta group as a peer,
    /// so placement sees them all. Before that, a fresh cluster answered `$JS.API.INFO` and
    /// then refused a stream create with 10008 (no meta leader yet) or 10005 (`jetstream not
    /// enabled in cluster`: the leader had not recorded the peers yet).
    pub fn api_ready(&self) -> bool {
        if !self.meta_caught_up() {
            return false;
        }
        let metrics = self.meta.metrics();
        let metrics = metrics.borrow_watched();
        let meta = self.meta_state.read();
        metrics
            .membership_config
            .membership()
            .nodes()
            .all(|(id, _)| meta.peer(*id).is_some())
    }

    /// Waits until the API can be served ([`JsCluster::api_ready`]), at most until the end of
    /// the start-up window; at once after it was ready once or after the window: a request
    /// is then answered as the meta state stands (10008 without a meta leader).
    pub async fn wait_until_api_ready(&self) {
        use std::sync::atomic::Ordering;
        if self.api_was_ready.load(Ordering::Relaxed) {
            return;
        }
        let until = self.started + API_START_WINDOW;
        loop {
            if self.api_ready() {
                self.api_was_ready.store(true, Ordering::Relaxed);
                return;
            }
            if Instant::now() >= until || self.is_stopped() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The stream's assignment, if the meta state has it.
    pub fn assignment(&self, stream: &str) -> Option<StreamAssignment> {
        self.meta_state.read().stream(stream).cloned()
    }

    /// Whether the meta state assigns `stream`; on the path of every forwarded message, so it
    /// reads under the lock instead of copying the assignment (its config is a JSON tree).
    fn is_assigned(&self, stream: &str) -> bool {
        self.meta_state.read().stream(stream).is_some()
    }

    /// Server name of a node, from the meta state.
    pub fn peer_name(&self, node_id: u64) -> Option<String> {
        self.meta_state.read().peer(node_id).map(|p| p.name.clone())
    }

    fn peer_addr(&self, node_id: u64) -> Option<String> {
        self.meta_state
            .read()
            .peer(node_id)
            .map(|p| p.cluster_addr.clone())
            .or_else(|| self.meta_member(node_id).map(|n| n.addr))
    }

    /// A node of the meta group's membership (known before the meta state records it).
    fn meta_member(&self, node_id: u64) -> Option<RaftNode> {
        let metrics = self.meta.metrics().borrow_watched().clone();
        metrics
            .membership_config
            .membership()
            .get_node(&node_id)
            .cloned()
    }

    fn client(&self, addr: &str) -> Option<JetStreamClusterClient<tonic::transport::Channel>> {
        self.raft
            .channels()
            .channel(addr)
            .ok()
            .map(JetStreamClusterClient::new)
    }

    // --- meta proposals ----------------------------------------------------------------

    /// Proposes a meta command through the meta leader (this node or another) and waits until
    /// this node has applied it, so that its own reads see the outcome.
    pub async fn propose(&self, command: &MetaCommand) -> Result<MetaReply, ApiError> {
        let bytes = Bytes::from(encode_command(command));
        let (reply, index) = self.propose_bytes(bytes).await?;
        let mut applied = self.meta_applied.clone();
        let _ = tokio::time::timeout(META_TIMEOUT, applied.wait_for(|i| *i >= index)).await;
        let reply = decode_reply(&reply).map_err(|e| ApiError::store_failed(e.to_string()))?;
        match reply {
            MetaReply::Error(err) => Err(err),
            reply => Ok(reply),
        }
    }

    /// Proposes encoded meta command bytes: locally when this node leads, else on the leader.
    pub(crate) async fn propose_bytes(&self, command: Bytes) -> Result<(Bytes, u64), ApiError> {
        let deadline = Instant::now() + META_TIMEOUT;
        loop {
            match self.meta_leader() {
                Some(leader) if leader == self.node_id => {
                    match self
                        .meta
                        .client_write(natrix_raft::Command(command.clone()))
                        .await
                    {
                        Ok(response) => return Ok((response.data.0, response.log_id.index)),
                        Err(err) => tracing::debug!("meta proposal: {err}"),
                    }
                }
                Some(leader) => {
                    if let Some(mut client) = self.peer_addr(leader).and_then(|a| self.client(&a)) {
                        let request = MetaProposal {
                            command: command.clone(),
                        };
                        let call = tokio::time::timeout(META_TIMEOUT, client.propose_meta(request));
                        match call.await {
                            Ok(Ok(outcome)) => {
                                let outcome = outcome.into_inner();
                                return Ok((outcome.reply, outcome.log_index));
                            }
                            Ok(Err(status)) => {
                                tracing::debug!("meta proposal on {leader}: {status}")
                            }
                            Err(_) => tracing::debug!("meta proposal on {leader}: timed out"),
                        }
                    }
                }
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(not_available());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // --- streams -------------------------------------------------------------------------

    /// `$JS.API.STREAM.CREATE` in a cluster: places the replicas, records the assignment in the
    /// meta group and waits for the new group's leader. Returns the assignment (and whether it
    /// already existed with the same config).
    pub async fn create_stream(
        &self,
        state: &Arc<ServerState>,
        js: &Arc<JetStream>,
        config: &StreamConfig,
    ) -> Result<StreamAssignment, ApiError> {
        // Before the meta group has a leader (forming, or lost its quorum) no node knows the
        // peers to place on: the client is told to come back (10008), as nats-server does,
        // not that the cluster lacks JetStream peers.
        if self.meta_leader().is_none() {
            return Err(not_available());
        }
        let max_streams = js.account_limits()?.max_streams;
        let mut attempts = 0;
        let assignment = loop {
            let (peers, request) = self.placement_for(config)?;
            let chosen = place(&peers, &request).map_err(|e| e.to_api_error())?;
            let command = MetaCommand::create_stream(config, chosen, now_ns(), max_streams);
            match self.propose(&command).await {
                Ok(MetaReply::Stream(assignment)) => break assignment,
                Ok(other) => {
                    return Err(ApiError::store_failed(format!(
                        "unexpected meta reply {other:?}"
                    )));
                }
                // A peer this node placed on left the cluster (`SERVER.REMOVE`) before the
                // meta group applied the create: place again once this node's view of the
                // peers has caught up.
                Err(err)
                    if err.err_code == ApiError::cluster_peer_not_member().err_code
                        && attempts < PLACEMENT_RETRIES =>
                {
                    attempts += 1;
                    tokio::time::sleep(PLACEMENT_RETRY_PAUSE).await;
                }
                Err(err) => return Err(err),
            }
        };
        self.reconcile(state, js).await;
        self.wait_for_leader(js, &assignment).await;
        Ok(assignment)
    }

    /// `$JS.API.STREAM.DELETE` in a cluster.
    pub async fn delete_stream(
        &self,
        state: &Arc<ServerState>,
        js: &Arc<JetStream>,
        name: &str,
    ) -> Result<(), ApiError> {
        let group_id = self.assignment(name).map(|a| a.group_id);
        self.propose(&MetaCommand::DeleteStream {
            name: name.to_string(),
        })
        .await?;
        // Applied here now, so this node's replica of that group is gone for good (group ids
        // are never reused): removed before the answer, so the client's next request about
        // the stream finds none, even when this node's meta state is not caught up at this
        // instant (the reconciliation below then leaves removals for later).
        if let Some(host) = js.stream(name)
            && host.replica.as_ref().map(|r| r.group_id) == group_id
        {
            let _one_at_a_time = self.reconciling.lock().await;
            self.remove_replica(state, js, &host).await;
        }
        self.reconcile(state, js).await;
        Ok(())
    }

    /// Waits (bounded) until the stream's group has a leader.
    async fn wait_for_leader(&self, js: &JetStream, assignment: &StreamAssignment) {
        let deadline = Instant::now() + META_TIMEOUT;
        while Instant::now() < deadline {
            if self.group_leader(js, assignment).await.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The leader of a stream's group: known locally on a replica, asked of a replica otherwise.
    pub async fn group_leader(&self, js: &JetStream, assignment: &StreamAssignment) -> Option<u64> {
        if let Some(host) = js.stream(&assignment.name)
            && host.replica.as_ref().map(|r| r.group_id) == Some(assignment.group_id)
        {
            return host.leader();
        }
        self.ask_group_peers(assignment, |_, answer| {
            (answer.leader != 0).then_some(answer.leader)
        })
        .await
    }

    /// Asks the assignment's peers in turn (`GroupLeader` RPC, bounded) about its group and
    /// returns the first answer `accept` takes (given the peer that answered).
    pub(super) async fn ask_group_peers<T>(
        &self,
        assignment: &StreamAssignment,
        mut accept: impl FnMut(u64, GroupLeaderResponse) -> Option<T>,
    ) -> Option<T> {
        for peer in &assignment.peers {
            let Some(mut client) = self.peer_addr(*peer).and_then(|a| self.client(&a)) else {
                continue;
            };
            let request = GroupLeaderRequest {
                group_id: assignment.group_id,
            };
            if let Ok(Ok(answer)) =
                tokio::time::timeout(CALL_TIMEOUT, client.group_leader(request)).await
                && let Some(found) = accept(*peer, answer.into_inner())
            {
                return Some(found);
            }
        }
        None
    }

    /// The account's usage across the cluster, as nats-server reports it in `$JS.API.INFO`:
    /// every stream of the meta state, the bytes of every replica and the consumers of every
    /// stream, gathered from each node (`AccountUsage` RPC, asked of all at once, bounded); a
    /// node that does not answer is left out.
    pub async fn account_usage(&self, js: &JetStream) -> super::Usage {
        let (streams, others) = {
            let meta = self.meta_state.read();
            let others: Vec<(u64, String)> = meta
                .peers
                .values()
                .filter(|p| p.node_id != self.node_id)
                .map(|p| (p.node_id, p.cluster_addr.clone()))
                .collect();
            (meta.streams.len() as u64, others)
        };
        let asks = others.into_iter().map(|(node, addr)| async move {
            let mut client = self.client(&addr)?;
            let call = client.account_usage(AccountUsageRequest {});
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(answer)) => Some(answer.into_inner()),
                Ok(Err(status)) => {
                    tracing::debug!("account usage of {node:016x}: {status}");
                    None
                }
                Err(_) => {
                    tracing::debug!("account usage of {node:016x}: timed out");
                    None
                }
            }
        });
        let mut usage = js.replica_usage();
        usage.streams = streams;
        for answer in futures::future::join_all(asks).await.into_iter().flatten() {
            usage.memory += answer.memory;
            usage.storage += answer.storage;
            usage.consumers += answer.consumers;
        }
        usage
    }

    /// A stream's info fields as its leader reports them (asked over gRPC when the leader is
    /// another node); `None` when no node answers.
    pub async fn leader_info_fields(
        &self,
        js: &JetStream,
        assignment: &StreamAssignment,
    ) -> Option<String> {
        let leader = self.group_leader(js, assignment).await?;
        if leader == self.node_id {
            return js
                .stream(&assignment.name)
                .map(|host| super::stream_api::info_fields(&host, false, None));
        }
        let mut client = self.peer_addr(leader).and_then(|a| self.client(&a))?;
        let request = natrix_proto::jetstream::StreamInfoRequest {
            stream: assignment.name.clone(),
        };
        let answer = tokio::time::timeout(CALL_TIMEOUT, client.stream_info(request))
            .await
            .ok()?
            .ok()?;
        let fields = answer.into_inner().fields_json;
        (!fields.is_empty()).then_some(fields)
    }

    /// Where to hand a message for `stream` that this node cannot serve: the leader when this
    /// node is a replica that knows it, else a replica.
    fn forward_target(&self, js: &JetStream, stream: &str) -> Option<u64> {
        if let Some(host) = js.stream(stream)
            && host.replica.is_some()
            && let Some(leader) = host.leader()
            && leader != self.node_id
        {
            return Some(leader);
        }
        let meta = self.meta_state.read();
        let assignment = meta.stream(stream)?;
        assignment
            .peers
            .iter()
            .copied()
            .find(|p| *p != self.node_id)
    }

    /// In the start-up window, waits (at most [`LINK_WAIT`]) until this node has its first
    /// route session to the node a request about `stream` (or, without one, for the meta
    /// leader) would be handed to: a node that just started has its meta state before its
    /// route sessions, and a request handed to a node it has no session with is dropped.
    pub async fn wait_for_route(&self, state: &ServerState, js: &JetStream, stream: Option<&str>) {
        let Some(mesh) = state.router.mesh() else {
            return;
        };
        let now = Instant::now();
        if now >= self.started + API_START_WINDOW {
            return;
        }
        let deadline = now + LINK_WAIT;
        loop {
            let target = match stream {
                Some(stream) => self.forward_target(js, stream),
                None => self.meta_leader(),
            };
            // Only for a first session: a node that was linked and went away (killed, cut
            // off) is not waited for; its request is handled as before (dropped, or answered
            // here by a replica).
            match target {
                Some(node)
                    if node != self.node_id
                        && !mesh.was_linked(node)
                        && mesh.link_for_node(node).is_none() => {}
                _ => return,
            }
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Hands a message to `node`'s JetStream over the route session. False if not connected.
    fn hand_over(&self, state: &ServerState, node: u64, msg: &InternalMsg<'_>) -> bool {
        let Some(mesh) = state.router.mesh() else {
            return false;
        };
        let Some(link) = mesh.link_for_node(node) else {
            return false;
        };
        link.send_to_internal(
            Bytes::copy_from_slice(msg.subject),
            msg.reply.map(Bytes::copy_from_slice),
            msg.headers.map(Bytes::copy_from_slice),
            Bytes::copy_from_slice(msg.payload),
            msg.hops + 1,
        )
    }

    /// A message for a replicated stream arrived on this node (a publish to its subjects, an
    /// API request about it, an ack or a pull request): true if it was handed on to the node
    /// that serves it (or dropped), false if this node serves it itself.
    pub fn route_to_leader(
        &self,
        state: &ServerState,
        js: &JetStream,
        stream: &str,
        msg: &InternalMsg<'_>,
    ) -> bool {
        if let Some(host) = js.stream(stream)
            && host.replica.is_some()
            && host.raft().is_some()
            && host.is_leader()
        {
            return false;
        }
        if !self.is_assigned(stream) {
            return false;
        }
        if msg.hops >= MAX_HOPS {
            tracing::debug!(
                stream,
                "JetStream: no leader reached after {} hops",
                msg.hops
            );
            return js.stream(stream).is_none();
        }
        match self.forward_target(js, stream) {
            Some(node) if self.hand_over(state, node, msg) => true,
            _ => js.stream(stream).is_none(),
        }
    }

    /// A request only the meta leader answers consistently (stream names and lists): true if it
    /// was handed to the meta leader, false if this node answers it.
    pub fn route_to_meta_leader(&self, state: &ServerState, msg: &InternalMsg<'_>) -> bool {
        match self.meta_leader() {
            Some(leader) if leader != self.node_id && msg.hops < MAX_HOPS => {
                self.hand_over(state, leader, msg)
            }
            _ => false,
        }
    }

    /// A publish captured on one of a replicated stream's subjects.
    fn capture(
        &self,
        state: &Arc<ServerState>,
        js: &JetStream,
        stream: &str,
        msg: InternalMsg<'_>,
    ) {
        if self.route_to_leader(state, js, stream, &msg) {
            return;
        }
        if let Some(host) = js.stream(stream) {
            host.enqueue_publish(state, msg);
        }
    }

    // --- reconciling this node with the meta state ----------------------------------------

    /// A copy of every stream assignment of the meta state, taken under one read lock.
    fn stream_assignments(&self) -> Vec<StreamAssignment> {
        self.meta_state.read().streams.values().cloned().collect()
    }

    /// Makes this node match the meta state: captures, replicas started, replicas removed.
    pub async fn reconcile(&self, state: &Arc<ServerState>, js: &Arc<JetStream>) {
        let _one_at_a_time = self.reconciling.lock().await;
        let assignments = self.stream_assignments();
        self.update_captures(state, js, &assignments);
        for assignment in &assignments {
            if assignment.has_peer(self.node_id)
                && let Err(err) = self.start_replica(state, js, assignment).await
            {
                tracing::warn!(
                    "JetStream stream '{}': replica not started: {err}",
                    assignment.name
                );
            }
        }
        if !self.meta_caught_up() {
            return;
        }
        self.drive_memberships(js, &assignments);
        for host in js.streams() {
            let Some(replica) = &host.replica else {
                continue;
            };
            let assigned = assignments
                .iter()
                .find(|a| a.name == host.name && a.group_id == replica.group_id);
            if assigned.is_some_and(|a| a.has_peer(self.node_id)) {
                continue;
            }
            if let Some(assignment) = assigned
                && self.still_member(&host, assignment).await
            {
                continue;
            }
            self.remove_replica(state, js, &host).await;
        }
    }

    /// Stops a replica this node no longer holds and deletes its data and Raft keys.
    async fn remove_replica(&self, state: &Arc<ServerState>, js: &JetStream, host: &StreamHost) {
        let Some(replica) = &host.replica else {
            return;
        };
        tracing::info!(
            "JetStream stream '{}': replica no longer assigned here, removing it",
            host.name
        );
        self.raft.stop_group(replica.group_id).await;
        if let Some(removed) = js.remove(&host.name) {
            if let Err(err) = removed.delete(state).await {
                tracing::warn!("JetStream stream '{}': removal: {err}", host.name);
            }
            if let Err(err) = js.store().raft_log(replica.group_id).delete_group() {
                tracing::warn!("JetStream stream '{}': raft log removal: {err}", host.name);
            }
        }
    }

    async fn start_replica(
        &self,
        state: &Arc<ServerState>,
        js: &Arc<JetStream>,
        assignment: &StreamAssignment,
    ) -> Result<(), String> {
        let host = match js.stream(&assignment.name) {
            Some(host) => {
                if host.replica.as_ref().map(|r| r.group_id) != Some(assignment.group_id) {
                    return Err("a different stream of that name exists on this node".into());
                }
                host
            }
            None => {
                let config = assignment.stream_config().map_err(|e| e.to_string())?;
                let host = StreamHost::create_replica(
                    state,
                    js,
                    config,
                    assignment.created_ns,
                    assignment.group_id,
                )
                .await
                .map_err(|e| e.to_string())?;
                js.insert(host.clone());
                host
            }
        };
        let raft = match host
            .raft()
            .cloned()
            .or_else(|| self.raft.group(assignment.group_id))
        {
            Some(raft) => {
                if let Some(replica) = &host.replica
                    && replica.raft.set(raft.clone()).is_ok()
                {
                    host.follow_leadership(state);
                }
                raft
            }
            None => {
                let mut config = natrix_raft::default_config(format!(
                    "{}/{}",
                    self.cluster_name, assignment.name
                ));
                if let Some(every) = js.config.raft_snapshot_every {
                    let every = every.max(1);
                    config.snapshot_policy =
                        natrix_raft::openraft::SnapshotPolicy::LogsSinceLast(every);
                    config.max_in_snapshot_log_to_keep = every.min(1_000);
                }
                let machine = StreamMachine { host: host.clone() };
                let raft = self
                    .raft
                    .start_group(js.store(), assignment.group_id, config, machine)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(replica) = &host.replica
                    && replica.raft.set(raft.clone()).is_ok()
                {
                    host.follow_leadership(state);
                }
                raft
            }
        };
        if assignment.peers.first() != Some(&self.node_id)
            || self.initialized.lock().contains(&assignment.group_id)
        {
            return Ok(());
        }
        if raft.is_initialized().await.unwrap_or(true) {
            self.initialized.lock().insert(assignment.group_id);
            return Ok(());
        }
        let members = {
            let meta = self.meta_state.read();
            let mut members = BTreeMap::new();
            for peer in &assignment.peers {
                let info = meta
                    .peer(*peer)
                    .ok_or_else(|| format!("peer {peer:016x} is not known yet"))?;
                members.insert(*peer, RaftNode::new(&info.cluster_addr, &info.name));
            }
            members
        };
        match raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(
                    "JetStream stream '{}': Raft group {} formed",
                    assignment.name,
                    assignment.group_id
                );
            }
            Err(err) => tracing::debug!("stream group init: {err}"),
        }
        self.initialized.lock().insert(assignment.group_id);
        Ok(())
    }

    fn update_captures(
        &self,
        state: &Arc<ServerState>,
        js: &Arc<JetStream>,
        assignments: &[StreamAssignment],
    ) {
        // Only streams this node can hand a publish to: a replica here, or a route session to
        // one. Otherwise (a node that just started, before its sessions are up, or one cut off)
        // a publish matches nothing and its client hears "no responders" at once, as from
        // nats-server, instead of waiting for an answer that cannot come.
        let mesh = state.router.mesh();
        let reachable = |a: &StreamAssignment| {
            a.has_peer(self.node_id)
                || mesh.as_ref().is_none_or(|mesh| {
                    a.peers
                        .iter()
                        .any(|peer| mesh.link_for_node(*peer).is_some())
                })
        };
        let wanted: BTreeMap<String, Vec<String>> = assignments
            .iter()
            .filter(|a| reachable(a))
            .filter_map(|a| {
                let config = a.stream_config().ok()?;
                Some((a.name.clone(), config.subjects))
            })
            .collect();
        let mut captures = self.captures.lock();
        let stale: Vec<String> = captures
            .iter()
            .filter(|(name, c)| wanted.get(*name) != Some(&c.subjects))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(capture) = captures.remove(&name) {
                for sub in capture.subs {
                    crate::connection::remove_subscription(state, &sub);
                }
            }
        }
        for (name, subjects) in wanted {
            if captures.contains_key(&name) {
                continue;
            }
            let mut subs = Vec::new();
            for subject in &subjects {
                let weak_state = Arc::downgrade(state);
                let weak_js = Arc::downgrade(js);
                let stream = name.clone();
                let handler = InternalHandler::new(move |msg| {
                    let (Some(state), Some(js)) = (weak_state.upgrade(), weak_js.upgrade()) else {
                        return;
                    };
                    if let Some(cluster) = js.cluster() {
                        cluster.capture(&state, &js, &stream, msg);
                    }
                });
                match state.subscribe_internal(subject, None, handler) {
                    Ok(sub) => subs.push(sub),
                    Err(err) => {
                        tracing::warn!("JetStream stream '{name}': capturing {subject:?}: {err}");
                    }
                }
            }
            captures.insert(name, Capture { subjects, subs });
        }
    }

    // --- the meta group's membership ------------------------------------------------------

    /// One look at the cluster: form the meta group, grow it, record peers.
    async fn tick(&self, mesh: &Mesh, bootstrap: &mut Bootstrap) {
        let peers = jetstream_peers(mesh);
        let metrics = self.meta.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership().clone();
        let initialized = membership.nodes().next().is_some();
        if !initialized {
            let ids: BTreeSet<u64> = peers.iter().map(|p| p.node_id).collect();
            if ids != bootstrap.peers || bootstrap.since.is_none() {
                bootstrap.peers = ids;
                bootstrap.since = Some(Instant::now());
            }
            if !bootstrap.settled()
                || bootstrap.peers.iter().any(|id| *id < self.node_id)
                || self.any_peer_in_meta(&peers).await
            {
                return;
            }
            let mut members = BTreeMap::new();
            members.insert(
                self.node_id,
                RaftNode::new(own_cluster_addr(mesh), &mesh.server_name),
            );
            for peer in &peers {
                members.insert(peer.node_id, RaftNode::new(&peer.cluster_addr, &peer.name));
            }
            let n = members.len();
            match self.meta.initialize(members).await {
                Ok(()) => tracing::info!("JetStream cluster: meta group formed with {n} nodes"),
                Err(err) => tracing::debug!("meta group init: {err}"),
            }
            return;
        }
        if metrics.current_leader != Some(self.node_id) {
            return;
        }
        // Record every node (this one included) in the meta state.
        let mut infos = peers.clone();
        infos.push(own_peer_info(mesh, self.node_id));
        for info in infos {
            let known = self.meta_state.read().peer(info.node_id).cloned();
            if known.as_ref() != Some(&info)
                && let Err(err) = self.propose(&MetaCommand::AddPeer(info.clone())).await
            {
                tracing::debug!("recording peer {}: {err}", info.name);
            }
        }
        // Every connected JetStream node becomes a voter.
        for peer in &peers {
            if membership.voter_ids().any(|id| id == peer.node_id) {
                continue;
            }
            let node = RaftNode::new(&peer.cluster_addr, &peer.name);
            if let Err(err) = self.meta.add_learner(peer.node_id, node, true).await {
                tracing::debug!("meta group: adding {} as learner: {err}", peer.name);
                continue;
            }
            let add = ChangeMembers::AddVoterIds(BTreeSet::from([peer.node_id]));
            match self.meta.change_membership(add, false).await {
                Ok(_) => tracing::info!("JetStream cluster: {} joined the meta group", peer.name),
                Err(err) => tracing::debug!("meta group: adding {} as voter: {err}", peer.name),
            }
        }
    }

    /// Whether any of `peers` already belongs to a meta group (or cannot tell: then this node
    /// must not start a second one).
    async fn any_peer_in_meta(&self, peers: &[PeerInfo]) -> bool {
        for peer in peers {
            let Some(mut client) = self.client(&peer.cluster_addr) else {
                return true;
            };
            match tokio::time::timeout(CALL_TIMEOUT, client.meta_status(MetaStatusRequest {})).await
            {
                Ok(Ok(status)) if !status.get_ref().member => {}
                _ => return true,
            }
        }
        false
    }
}

#[derive(Default)]
struct Bootstrap {
    peers: BTreeSet<u64>,
    since: Option<Instant>,
}

impl Bootstrap {
    fn settled(&self) -> bool {
        self.since.is_some_and(|s| s.elapsed() >= BOOTSTRAP_SETTLE)
    }
}

async fn run(cluster: Arc<JsCluster>, state: Weak<ServerState>, js: Weak<JetStream>) {
    let mut bootstrap = Bootstrap::default();
    let mut links = state
        .upgrade()
        .and_then(|s| s.router.mesh().map(|m| m.changed.subscribe()));
    loop {
        let mut links_changed = false;
        tokio::select! {
            () = cluster.changed.notified() => {}
            () = tokio::time::sleep(RECONCILE_INTERVAL) => {}
            () = next_change(&mut links) => links_changed = true,
        }
        if cluster.is_stopped() {
            return;
        }
        let (Some(state), Some(js)) = (state.upgrade(), js.upgrade()) else {
            return;
        };
        if links_changed {
            // Which streams this node can hand publishes to changed: take their subjects
            // (or stop) at once, not after the meta membership work below.
            cluster.update_captures(&state, &js, &cluster.stream_assignments());
        }
        if let Some(mesh) = state.router.mesh() {
            cluster.tick(mesh, &mut bootstrap).await;
        }
        cluster.reconcile(&state, &js).await;
    }
}

/// The next change of the route sessions; never without a route mesh (or once it is gone).
async fn next_change(links: &mut Option<watch::Receiver<u64>>) {
    if let Some(rx) = links
        && rx.changed().await.is_ok()
    {
        return;
    }
    *links = None;
    std::future::pending().await
}

/// The connected peers that run JetStream, as the meta state records them.
fn jetstream_peers(mesh: &Mesh) -> Vec<PeerInfo> {
    mesh.links()
        .iter()
        .filter(|l| l.peer.jetstream && l.peer.node_id != 0)
        .map(|l| PeerInfo {
            node_id: l.peer.node_id,
            name: l.peer.server_name.clone(),
            cluster_addr: l.peer_cluster_addr.clone(),
            client_urls: l.peer_client_urls.clone(),
            tags: l.peer.tags.clone(),
            cluster: l.peer.cluster.clone(),
            offline: false,
        })
        .collect()
}

/// This node's cluster address as its peers reach it: the advertised one, or, when it listens on
/// an unspecified address (`0.0.0.0:6222`), the local IP this host uses towards a connected peer
/// (a UDP socket's route lookup; nothing is sent), else loopback for a node alone.
fn own_cluster_addr(mesh: &Mesh) -> String {
    let seen = mesh
        .links()
        .iter()
        .find_map(|link| {
            let socket = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).ok()?;
            socket.connect(link.remote_addr).ok()?;
            socket.local_addr().ok().map(|a| a.ip())
        })
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    crate::cluster::resolve_unspecified(&mesh.advertised_cluster_addr, seen)
}

fn own_peer_info(mesh: &Mesh, node_id: u64) -> PeerInfo {
    PeerInfo {
        node_id,
        name: mesh.server_name.clone(),
        cluster_addr: own_cluster_addr(mesh),
        client_urls: mesh.own_client_urls.clone(),
        tags: mesh.tags.clone(),
        cluster: mesh.cluster_name.clone(),
        offline: false,
    }
}
