//! Test nodes for natrix-raft: a RocksDB store in a temp dir, a `RaftHost` and its gRPC service
//! on a loopback port, and two state machines: an append-only list in memory, and a durable
//! counter that keeps its commands in the node's store the way the stream machine keeps messages.

use natrix_raft::WatchReceiver;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use natrix_raft::openraft::{self, ServerState};
use natrix_raft::{
    AppliedState, GroupId, NetworkOptions, NodeId, Raft, RaftHost, RaftNode, SnapshotData,
    SnapshotPieces, StateMachine, StateMachineError,
};
use natrix_store::{RaftApplied, Store, StoreOp, StoreOptions, StoredMsg, StreamBatch};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The commands a replica applied, in order, as `(log index, command)`.
pub type Applied = Arc<Mutex<Vec<(u64, Bytes)>>>;

/// An append-only list: the simplest state machine whose order is observable.
#[derive(Default)]
pub struct ListMachine {
    pub applied: Applied,
}

impl StateMachine for ListMachine {
    fn apply(&mut self, index: u64, command: &[u8]) -> Bytes {
        let mut list = self.applied.lock();
        list.push((index, Bytes::copy_from_slice(command)));
        Bytes::copy_from_slice(&(list.len() as u64).to_be_bytes())
    }

    fn snapshot(&self) -> Bytes {
        let list = self.applied.lock();
        encode_list(
            list.len() as u64,
            list.iter().map(|(index, cmd)| (*index, &cmd[..])),
        )
    }

    async fn install(
        &mut self,
        snapshot: Bytes,
        _applied: &AppliedState,
    ) -> Result<(), StateMachineError> {
        *self.applied.lock() = decode_list(&snapshot)?;
        Ok(())
    }
}

/// `count u64 · (index u64 · len u32 · bytes)*`: the list machine's snapshot, and the durable
/// counter's (with message sequences for indexes).
fn encode_list<'a>(count: u64, items: impl Iterator<Item = (u64, &'a [u8])>) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u64(count);
    for (index, cmd) in items {
        out.put_u64(index);
        out.put_u32(cmd.len() as u32);
        out.put_slice(cmd);
    }
    out.freeze()
}

fn decode_list(snapshot: &[u8]) -> Result<Vec<(u64, Bytes)>, StateMachineError> {
    let mut buf = snapshot;
    let mut list = Vec::new();
    if buf.remaining() < 8 {
        return Err("snapshot shorter than its count".into());
    }
    let count = buf.get_u64();
    for _ in 0..count {
        if buf.remaining() < 12 {
            return Err("truncated snapshot".into());
        }
        let index = buf.get_u64();
        let len = buf.get_u32() as usize;
        if buf.remaining() < len {
            return Err("truncated snapshot command".into());
        }
        list.push((index, Bytes::copy_from_slice(&buf[..len])));
        buf.advance(len);
    }
    if buf.has_remaining() {
        return Err("bytes after the snapshot's last command".into());
    }
    Ok(list)
}

/// A durable machine shaped like the stream state machine: each command is appended as message
/// `count` of stream `group_id` in the node's store, the count is the stream's position, and
/// openraft's applied state goes into the same commit (`persist`, once per applied batch). A
/// restart reads all of it back instead of being replayed; a command applied twice would show up
/// as a second stored message.
pub struct CounterMachine {
    store: Arc<Store>,
    group_id: GroupId,
    /// Commands applied so far (in the store once persisted).
    count: Arc<AtomicU64>,
    /// Effects of the commands applied since the last `persist`.
    pending: Vec<StoreOp>,
    durable: Option<AppliedState>,
    /// The `apply` calls of this incarnation only, as `(log index, command)`.
    pub applied: Applied,
    /// When set, the snapshots this machine sends to followers are read only once it opens.
    gate: Option<TransferGate>,
}

/// Holds back the snapshots durable counters send to followers until it is opened, as a large
/// state still being read would, and counts the snapshots asked for.
#[derive(Clone)]
pub struct TransferGate {
    open: Arc<tokio::sync::Semaphore>,
    asked: Arc<AtomicU64>,
}

impl Default for TransferGate {
    fn default() -> TransferGate {
        TransferGate {
            open: Arc::new(tokio::sync::Semaphore::new(0)),
            asked: Arc::default(),
        }
    }
}

impl TransferGate {
    /// Lets every snapshot held back, and every later one, be read.
    pub fn open(&self) {
        self.open
            .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }

    /// How many snapshots for followers the machines were asked for.
    pub fn asked(&self) -> u64 {
        self.asked.load(Ordering::Relaxed)
    }
}

impl CounterMachine {
    /// The machine of group `group_id` as `store` holds it.
    pub fn open(store: Arc<Store>, group_id: GroupId) -> Result<CounterMachine> {
        let count = match store.stream_position(group_id)? {
            Some(bytes) => u64::from_be_bytes(
                bytes[..]
                    .try_into()
                    .context("the counter's position is not a u64")?,
            ),
            None => 0,
        };
        let durable = store
            .raft_log(group_id)
            .read_applied()?
            .map(AppliedState::decode)
            .transpose()?;
        Ok(CounterMachine {
            store,
            group_id,
            count: Arc::new(AtomicU64::new(count)),
            pending: Vec::new(),
            durable,
            applied: Applied::default(),
            gate: None,
        })
    }

    fn batch(&self, ops: Vec<StoreOp>, applied: &AppliedState) -> (StreamBatch, RaftApplied) {
        let count = self.count.load(Ordering::Relaxed);
        let batch = StreamBatch {
            stream_id: self.group_id,
            ops,
            applied: applied.last_applied_index().unwrap_or(0),
            position: Some(Bytes::copy_from_slice(&count.to_be_bytes())),
            consumer_updates: Vec::new(),
        };
        let raft = RaftApplied {
            group_id: self.group_id,
            state: applied.bytes().clone(),
        };
        (batch, raft)
    }
}

/// The commands group `group_id`'s counter stored in `store`, as `(seq, command)`.
pub fn stored_commands(store: &Store, group_id: GroupId) -> Result<Vec<(u64, String)>> {
    store
        .scan_msgs(group_id, 0)?
        .map(|m| {
            let m = m?;
            Ok((m.seq, String::from_utf8_lossy(&m.payload).into_owned()))
        })
        .collect()
}

fn counter_msg(seq: u64, command: Bytes) -> StoreOp {
    StoreOp::Append(StoredMsg {
        seq,
        timestamp_ns: 0,
        subject: Bytes::from_static(b"counter"),
        headers: None,
        payload: command,
    })
}

impl StateMachine for CounterMachine {
    fn apply(&mut self, index: u64, command: &[u8]) -> Bytes {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let command = Bytes::copy_from_slice(command);
        self.pending.push(counter_msg(count, command.clone()));
        self.applied.lock().push((index, command));
        Bytes::copy_from_slice(&count.to_be_bytes())
    }

    /// `None` (the stored snapshot is whole) unless a gate holds snapshots back: then the state
    /// is taken now and handed over once the gate opens.
    async fn transfer_snapshot(&self) -> Result<Option<SnapshotData>, StateMachineError> {
        let Some(gate) = self.gate.clone() else {
            return Ok(None);
        };
        let data = self.snapshot();
        gate.asked.fetch_add(1, Ordering::Relaxed);
        let size_hint = data.len() as u64;
        let reading = async move {
            let _open = gate.open.acquire().await.map_err(|e| e.to_string())?;
            Ok(data)
        };
        Ok(Some(SnapshotData::Reading(SnapshotPieces {
            size_hint,
            pieces: Box::pin(futures::stream::once(reading)),
        })))
    }

    fn snapshot(&self) -> Bytes {
        // Called between applied batches, so everything applied is in the store.
        let stored = stored_commands(&self.store, self.group_id)
            .expect("reading the counter's commands for a snapshot");
        encode_list(
            self.count.load(Ordering::Relaxed),
            stored.iter().map(|(seq, cmd)| (*seq, cmd.as_bytes())),
        )
    }

    async fn install(
        &mut self,
        snapshot: Bytes,
        applied: &AppliedState,
    ) -> Result<(), StateMachineError> {
        let list = decode_list(&snapshot)?;
        let mut ops = vec![StoreOp::RemoveBelow { seq: u64::MAX }];
        ops.extend(list.iter().map(|(seq, cmd)| counter_msg(*seq, cmd.clone())));
        self.count.store(list.len() as u64, Ordering::Relaxed);
        self.pending.clear();
        let (batch, raft) = self.batch(ops, applied);
        self.store.commit_with_raft_applied(batch, raft).await?;
        Ok(())
    }

    async fn persist(&mut self, applied: &AppliedState) -> Result<(), StateMachineError> {
        let ops = std::mem::take(&mut self.pending);
        let (batch, raft) = self.batch(ops, applied);
        self.store
            .enqueue_commit_with_raft_applied(batch, raft)
            .await?
            .await?;
        Ok(())
    }

    fn durable_applied(&self) -> Option<AppliedState> {
        self.durable.clone()
    }

    fn stores_applied(&self) -> bool {
        true
    }
}

/// Which state machine a test group runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    List,
    Counter,
}

/// Fast timings for loopback tests; `snapshot_every` sets how many entries trigger a snapshot
/// (after which the log up to it is purged).
pub fn test_config(snapshot_every: Option<u64>) -> openraft::Config {
    let mut config = natrix_raft::default_config("natrix-raft-test");
    config.heartbeat_interval = 50;
    config.election_timeout_min = 300;
    config.election_timeout_max = 600;
    match snapshot_every {
        Some(n) => {
            config.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(n);
            config.max_in_snapshot_log_to_keep = 0;
            config.purge_batch_size = 1;
        }
        None => config.snapshot_policy = openraft::SnapshotPolicy::Never,
    }
    config
}

struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// One node: store, host, gRPC server. Stopping it keeps its directory and address, so it can
/// be started again from its RocksDB.
pub struct TestNode {
    pub id: NodeId,
    pub addr: SocketAddr,
    dir: PathBuf,
    store: Option<Arc<Store>>,
    host: RaftHost,
    server: Option<Server>,
    pub applied: HashMap<GroupId, Applied>,
    /// The durable counters' counts, by group.
    pub counts: HashMap<GroupId, Arc<AtomicU64>>,
    /// Given to the durable counters this node starts (kept across restarts).
    pub transfer_gate: Option<TransferGate>,
}

impl TestNode {
    /// Starts node `id` with its store in `dir`, serving on `addr` (port 0: any free port).
    pub async fn start(id: NodeId, dir: &Path, addr: SocketAddr) -> Result<TestNode> {
        let listener = bind_with_retry(addr).await?;
        let addr = listener.local_addr()?;
        let store = open_with_retry(dir).await?;
        let host = RaftHost::new(id, NetworkOptions::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let service = host.service();
        let task = tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let result = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = result {
                eprintln!("node {id}: server failed: {e}");
            }
        });
        Ok(TestNode {
            id,
            addr,
            dir: dir.to_path_buf(),
            store: Some(Arc::new(store)),
            host,
            server: Some(Server { stop, task }),
            applied: HashMap::new(),
            counts: HashMap::new(),
            transfer_gate: None,
        })
    }

    pub fn raft_node(&self) -> RaftNode {
        RaftNode::new(self.addr.to_string(), format!("n{}", self.id))
    }

    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    pub fn store(&self) -> Option<&Store> {
        self.store.as_deref()
    }

    pub fn host(&self) -> &RaftHost {
        &self.host
    }

    pub fn group(&self, group_id: GroupId) -> Option<Raft> {
        self.host.group(group_id)
    }

    /// Starts `group_id` here with a fresh list machine (restored from the store's snapshot and
    /// log if the node ran the group before).
    pub async fn start_group(
        &mut self,
        group_id: GroupId,
        config: openraft::Config,
    ) -> Result<Raft> {
        self.start_group_with(group_id, config, Machine::List).await
    }

    /// Starts `group_id` here with a durable counter machine (as the store holds it).
    pub async fn start_durable_group(
        &mut self,
        group_id: GroupId,
        config: openraft::Config,
    ) -> Result<Raft> {
        self.start_group_with(group_id, config, Machine::Counter)
            .await
    }

    pub async fn start_group_with(
        &mut self,
        group_id: GroupId,
        config: openraft::Config,
        machine: Machine,
    ) -> Result<Raft> {
        let store = self.store.as_ref().context("node is stopped")?;
        match machine {
            Machine::List => {
                let machine = ListMachine::default();
                self.applied.insert(group_id, Arc::clone(&machine.applied));
                Ok(self
                    .host
                    .start_group(store, group_id, config, machine)
                    .await?)
            }
            Machine::Counter => {
                let mut machine = CounterMachine::open(Arc::clone(store), group_id)?;
                machine.gate = self.transfer_gate.clone();
                self.applied.insert(group_id, Arc::clone(&machine.applied));
                self.counts.insert(group_id, Arc::clone(&machine.count));
                Ok(self
                    .host
                    .start_group(store, group_id, config, machine)
                    .await?)
            }
        }
    }

    /// The durable counter's count in group `group_id` (0 if it does not run here).
    pub fn count(&self, group_id: GroupId) -> u64 {
        self.counts
            .get(&group_id)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The commands this node's durable counter stored for group `group_id`, in order.
    pub fn stored_commands(&self, group_id: GroupId) -> Result<Vec<(u64, String)>> {
        stored_commands(self.store().context("node is stopped")?, group_id)
    }

    /// Whether group `group_id` stored openraft's committed log id on this node.
    pub fn stores_committed(&self, group_id: GroupId) -> Result<bool> {
        let store = self.store().context("node is stopped")?;
        Ok(store.raft_log(group_id).read_committed()?.is_some())
    }

    /// The applied state this node's store holds for group `group_id`.
    pub fn stored_applied(&self, group_id: GroupId) -> Result<Option<AppliedState>> {
        let store = self.store().context("node is stopped")?;
        Ok(store
            .raft_log(group_id)
            .read_applied()?
            .map(AppliedState::decode)
            .transpose()?)
    }

    pub fn applied(&self, group_id: GroupId) -> Vec<(u64, Bytes)> {
        self.applied
            .get(&group_id)
            .map(|a| a.lock().clone())
            .unwrap_or_default()
    }

    /// Stops every group, the gRPC server (gracefully, bounded) and closes the store.
    pub async fn stop(&mut self) -> Result<()> {
        self.host.shutdown().await;
        if let Some(server) = self.server.take() {
            let _ = server.stop.send(());
            let mut task = server.task;
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        // RocksDB closes once openraft's tasks drop their handles too; a restart retries the
        // open until then.
        self.store = None;
        Ok(())
    }

    /// Starts this node again from its directory, on the same address.
    pub async fn restart(&mut self) -> Result<()> {
        let mut node = TestNode::start(self.id, &self.dir, self.addr).await?;
        node.transfer_gate = self.transfer_gate.take();
        *self = node;
        Ok(())
    }
}

async fn bind_with_retry(addr: SocketAddr) -> Result<TcpListener> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("binding {addr}")),
        }
    }
}

/// RocksDB refuses a second open while the previous handle (held by stopping tasks) lives.
async fn open_with_retry(dir: &Path) -> Result<Store> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(dir, StoreOptions::default()) {
            Ok(s) => return Ok(s),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("opening store {}", dir.display())),
        }
    }
}

/// A cluster of `n` nodes (ids 1..=n) in one temp dir.
pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    dir: tempfile::TempDir,
}

impl TestCluster {
    pub async fn start(n: u64) -> Result<TestCluster> {
        let dir = tempfile::tempdir()?;
        let mut nodes = Vec::new();
        for id in 1..=n {
            let node_dir = dir.path().join(format!("n{id}"));
            nodes.push(TestNode::start(id, &node_dir, "127.0.0.1:0".parse()?).await?);
        }
        Ok(TestCluster { nodes, dir })
    }

    /// Starts one more node (the next id) that runs no group yet.
    pub async fn add_node(&mut self) -> Result<NodeId> {
        let id = self.nodes.len() as u64 + 1;
        let node_dir = self.dir.path().join(format!("n{id}"));
        self.nodes
            .push(TestNode::start(id, &node_dir, "127.0.0.1:0".parse()?).await?);
        Ok(id)
    }

    pub fn node(&mut self, id: NodeId) -> &mut TestNode {
        &mut self.nodes[(id - 1) as usize]
    }

    /// Starts `group_id` on every node and initializes it from node 1 with all nodes as voters.
    pub async fn start_group(&mut self, group_id: GroupId, config: openraft::Config) -> Result<()> {
        self.start_group_with(group_id, config, Machine::List).await
    }

    /// Like `start_group`, with durable counter machines.
    pub async fn start_durable_group(
        &mut self,
        group_id: GroupId,
        config: openraft::Config,
    ) -> Result<()> {
        self.start_group_with(group_id, config, Machine::Counter)
            .await
    }

    pub async fn start_group_with(
        &mut self,
        group_id: GroupId,
        config: openraft::Config,
        machine: Machine,
    ) -> Result<()> {
        let mut members = std::collections::BTreeMap::new();
        for node in &mut self.nodes {
            node.start_group_with(group_id, config.clone(), machine)
                .await?;
            members.insert(node.id, node.raft_node());
        }
        let raft = self.nodes[0].group(group_id).context("group not running")?;
        raft.initialize(members).await?;
        Ok(())
    }

    /// Waits until every running node of the group agrees on one running leader.
    pub async fn leader(&self, group_id: GroupId, timeout: Duration) -> Result<NodeId> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut leaders = Vec::new();
            for node in self.nodes.iter().filter(|n| n.is_running()) {
                if let Some(raft) = node.group(group_id) {
                    leaders.push(raft.metrics().borrow_watched().current_leader);
                }
            }
            if let Some(Some(first)) = leaders.first()
                && leaders.iter().all(|l| *l == Some(*first))
                && let Some(leader) = self.nodes.iter().find(|n| n.id == *first)
                && leader.is_running()
                && let Some(raft) = leader.group(group_id)
                && raft.metrics().borrow_watched().state == ServerState::Leader
                && natrix_raft::wait_write_lease(&raft, timeout).await
            {
                return Ok(*first);
            }
            if Instant::now() > deadline {
                bail!("group {group_id}: no agreed leader within {timeout:?}: {leaders:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts group `group_id` with `machine` and `config` (`test_config(Some(20))`: snapshots
    /// every 20 entries), stops a follower, writes `"missed-0"` .. `"missed-99"` and waits until
    /// the leader purged its log past what the stopped follower holds, so that it can only catch
    /// up from a snapshot. Returns `(leader, stopped follower)`.
    pub async fn leave_a_follower_behind_a_purge(
        &mut self,
        group_id: GroupId,
        config: openraft::Config,
        machine: Machine,
    ) -> Result<(NodeId, NodeId)> {
        let wait = Duration::from_secs(15);
        self.start_group_with(group_id, config, machine).await?;
        let leader = self.leader(group_id, wait).await?;
        let follower = self
            .nodes
            .iter()
            .map(|n| n.id)
            .find(|id| *id != leader)
            .context("a follower")?;
        self.node(follower).stop().await?;
        let last = self.write(group_id, "missed", 100).await?;
        self.wait_applied(group_id, last, wait).await?;
        let raft = self.node(leader).group(group_id).context("leader group")?;
        let m = raft
            .wait(Some(wait))
            .metrics(
                |m| m.purged.is_some_and(|p| p.index >= 60),
                "leader purges its log after snapshots",
            )
            .await?;
        anyhow::ensure!(m.snapshot.is_some(), "the leader has a snapshot");
        Ok((leader, follower))
    }

    /// Proposes `count` commands `"{prefix}-{i}"` through the leader; returns the last index.
    pub async fn write(&self, group_id: GroupId, prefix: &str, count: usize) -> Result<u64> {
        let leader = self.leader(group_id, Duration::from_secs(10)).await?;
        let raft = self.nodes[(leader - 1) as usize]
            .group(group_id)
            .context("leader has no group")?;
        let mut last = 0;
        for i in 0..count {
            let cmd = Bytes::from(format!("{prefix}-{i}"));
            let resp = tokio::time::timeout(
                Duration::from_secs(10),
                raft.client_write(natrix_raft::Command(cmd)),
            )
            .await
            .context("client_write timed out")??;
            last = resp.log_id.index;
        }
        Ok(last)
    }

    /// Waits until every running node applied the group's log up to `index`.
    pub async fn wait_applied(
        &self,
        group_id: GroupId,
        index: u64,
        timeout: Duration,
    ) -> Result<()> {
        let ids: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.id)
            .collect();
        self.wait_applied_on(&ids, group_id, index, timeout).await
    }

    /// Waits until nodes `ids` applied the group's log up to `index`.
    pub async fn wait_applied_on(
        &self,
        ids: &[NodeId],
        group_id: GroupId,
        index: u64,
        timeout: Duration,
    ) -> Result<()> {
        for node in self.nodes.iter().filter(|n| ids.contains(&n.id)) {
            let raft = node
                .group(group_id)
                .with_context(|| format!("group {group_id} not running on node {}", node.id))?;
            raft.wait(Some(timeout))
                .applied_index_at_least(Some(index), format!("node {} applies {index}", node.id))
                .await
                .with_context(|| format!("node {} group {group_id}", node.id))?;
        }
        Ok(())
    }

    /// The commands (without indexes) node `id` applied in group `group_id`.
    pub fn commands(&self, id: NodeId, group_id: GroupId) -> Vec<String> {
        self.nodes[(id - 1) as usize]
            .applied(group_id)
            .into_iter()
            .map(|(_, c)| String::from_utf8_lossy(&c).into_owned())
            .collect()
    }

    pub async fn stop_all(&mut self) {
        for node in &mut self.nodes {
            let _ = node.stop().await;
        }
    }
}

/// `"{prefix}-0"` .. `"{prefix}-{count-1}"`.
pub fn expected(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// The commands of several `write`s in order: `expected` of each `(prefix, count)`.
pub fn expected_runs(runs: &[(&str, usize)]) -> Vec<String> {
    runs.iter()
        .flat_map(|(prefix, count)| expected(prefix, *count))
        .collect()
}
