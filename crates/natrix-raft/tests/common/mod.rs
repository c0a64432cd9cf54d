//! Test nodes for natrix-raft: a RocksDB store in a temp dir, a `RaftHost` and its gRPC service
//! on a loopback port, and an append-only list as the groups' state machine.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use natrix_raft::openraft::{self, ServerState};
use natrix_raft::{
    GroupId, NetworkOptions, NodeId, Raft, RaftHost, RaftNode, StateMachine, StateMachineError,
};
use natrix_store::{Store, StoreOptions};
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
        let mut out = BytesMut::new();
        out.put_u64(list.len() as u64);
        for (index, cmd) in list.iter() {
            out.put_u64(*index);
            out.put_u32(cmd.len() as u32);
            out.put_slice(cmd);
        }
        out.freeze()
    }

    fn install(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
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
        *self.applied.lock() = list;
        Ok(())
    }
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
    store: Option<Store>,
    host: RaftHost,
    server: Option<Server>,
    pub applied: HashMap<GroupId, Applied>,
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
            store: Some(store),
            host,
            server: Some(Server { stop, task }),
            applied: HashMap::new(),
        })
    }

    pub fn raft_node(&self) -> RaftNode {
        RaftNode::new(self.addr.to_string(), format!("n{}", self.id))
    }

    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
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
        let store = self.store.as_ref().context("node is stopped")?;
        let machine = ListMachine::default();
        self.applied.insert(group_id, Arc::clone(&machine.applied));
        Ok(self
            .host
            .start_group(store, group_id, config, machine)
            .await?)
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
        let node = TestNode::start(self.id, &self.dir, self.addr).await?;
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
    _dir: tempfile::TempDir,
}

impl TestCluster {
    pub async fn start(n: u64) -> Result<TestCluster> {
        let dir = tempfile::tempdir()?;
        let mut nodes = Vec::new();
        for id in 1..=n {
            let node_dir = dir.path().join(format!("n{id}"));
            nodes.push(TestNode::start(id, &node_dir, "127.0.0.1:0".parse()?).await?);
        }
        Ok(TestCluster { nodes, _dir: dir })
    }

    pub fn node(&mut self, id: NodeId) -> &mut TestNode {
        &mut self.nodes[(id - 1) as usize]
    }

    /// Starts `group_id` on every node and initializes it from node 1 with all nodes as voters.
    pub async fn start_group(&mut self, group_id: GroupId, config: openraft::Config) -> Result<()> {
        let mut members = std::collections::BTreeMap::new();
        for node in &mut self.nodes {
            node.start_group(group_id, config.clone()).await?;
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
                    leaders.push(raft.metrics().borrow().current_leader);
                }
            }
            if let Some(Some(first)) = leaders.first()
                && leaders.iter().all(|l| *l == Some(*first))
                && let Some(leader) = self.nodes.iter().find(|n| n.id == *first)
                && leader.is_running()
                && leader
                    .group(group_id)
                    .is_some_and(|r| r.metrics().borrow().state == ServerState::Leader)
            {
                return Ok(*first);
            }
            if Instant::now() > deadline {
                bail!("group {group_id}: no agreed leader within {timeout:?}: {leaders:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let raft = node.group(group_id).context("group not running")?;
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
