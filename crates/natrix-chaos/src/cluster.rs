//! The cluster under test: one `natrix-server` process per node, each in its own network
//! namespace (or all on loopback when namespaces are not available), with its config file, store
//! and log under the run's work directory. Owns the processes: start, SIGKILL, SIGSTOP/SIGCONT,
//! SIGTERM, noticing a node that died by itself, and killing everything on drop.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

use crate::api::{self, Json};
use crate::netns::Netns;

/// The Raft cluster's name in every config.
const CLUSTER_NAME: &str = "chaos";
/// How long a started node may take to accept clients (a debug build replaying its log on a
/// loaded machine has taken over 20 s).
pub const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a SIGTERMed node may take to exit (it first hands its leaderships over, ≤ 3 s).
pub const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// One node: where it listens, its files, and its process while it runs.
pub struct Node {
    pub name: String,
    pub client: SocketAddr,
    pub http: SocketAddr,
    pub namespace: Option<String>,
    pub config: PathBuf,
    pub log: PathBuf,
    /// The node's JetStream `store_dir`.
    pub store: PathBuf,
    child: Option<Child>,
    /// Where this start's output begins in the log.
    log_offset: u64,
    paused: bool,
}

impl Node {
    pub fn url(&self) -> String {
        format!("nats://{}", self.client)
    }

    /// The node's RocksDB directory.
    pub fn rocksdb(&self) -> PathBuf {
        self.store.join("jetstream").join("rocksdb")
    }
}

/// How a start ended.
pub enum Started {
    Serving(Duration),
    /// The process exited; its status and what it wrote since it was started.
    Exited(ExitStatus, String),
    TimedOut,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    server_bin: PathBuf,
    /// A client per node, for API requests through that node.
    control: Vec<async_nats::Client>,
    // Dropped after the processes are killed (see `Drop`).
    netns: Option<Netns>,
}

impl Cluster {
    /// Writes every node's config under `dir` and connects the control clients (nothing is
    /// started). With `netns`, node `i` listens on its namespace's address; without, on
    /// loopback ports probed free now.
    pub async fn prepare(
        dir: &Path,
        server_bin: &Path,
        nodes: usize,
        netns: Option<Netns>,
    ) -> anyhow::Result<Cluster> {
        let addrs: Vec<(SocketAddr, SocketAddr, SocketAddr)> = match &netns {
            Some(ns) => (0..nodes)
                .map(|i| {
                    let ip = ns.node_addr(i);
                    (
                        SocketAddr::from((ip, 4222)),
                        SocketAddr::from((ip, 6222)),
                        SocketAddr::from((ip, 8222)),
                    )
                })
                .collect(),
            None => {
                let ports = free_ports(nodes * 3)?;
                let at = |p: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, p));
                (0..nodes)
                    .map(|i| (at(ports[i * 3]), at(ports[i * 3 + 1]), at(ports[i * 3 + 2])))
                    .collect()
            }
        };
        let mut routes = String::new();
        for (_, cluster, _) in &addrs {
            writeln!(routes, "    \"nats-route://{cluster}\"")?;
        }
        let mut list = Vec::new();
        for (i, (client, cluster, http)) in addrs.into_iter().enumerate() {
            let name = format!("n{}", i + 1);
            let node_dir = dir.join(&name);
            let store = node_dir.join("store");
            std::fs::create_dir_all(&store)
                .with_context(|| format!("creating {}", store.display()))?;
            let config = node_dir.join("server.conf");
            let text = format!(
                "server_name: \"{name}\"\n\
                 listen: \"{client}\"\n\
                 http: \"{http}\"\n\
                 jetstream {{\n  store_dir: \"{}\"\n}}\n\
                 cluster {{\n  name: \"{CLUSTER_NAME}\"\n  listen: \"{cluster}\"\n  \
                 routes: [\n{routes}  ]\n}}\n",
                store.display()
            );
            std::fs::write(&config, text)
                .with_context(|| format!("writing {}", config.display()))?;
            list.push(Node {
                name,
                client,
                http,
                namespace: netns.as_ref().map(|ns| ns.namespace(i)),
                config,
                log: node_dir.join("server.log"),
                store,
                child: None,
                log_offset: 0,
                paused: false,
            });
        }
        let mut control = Vec::new();
        for node in &list {
            control.push(api::connect(&node.url()).await?);
        }
        Ok(Cluster {
            nodes: list,
            server_bin: server_bin.to_path_buf(),
            control,
            netns,
        })
    }

    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    pub fn control(&self, i: usize) -> &async_nats::Client {
        &self.control[i]
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.is_running(*i))
            .collect()
    }

    /// Starts node `i`'s process (it must not be running) without waiting for it.
    pub fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        if node.child.is_some() {
            bail!("{} is already running", node.name);
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("opening {}", node.log.display()))?;
        writeln!(log, "==== natrix-chaos: start {} ====", node.name)?;
        node.log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = log.try_clone()?;
        let mut cmd = match &node.namespace {
            Some(ns) => {
                // `ip netns exec` execs the server, so the pid is the server's.
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(&self.server_bin);
                cmd
            }
            None => Command::new(&self.server_bin),
        };
        let child = cmd
            .arg("-c")
            .arg(&node.config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("starting {} ({})", node.name, self.server_bin.display()))?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Waits until node `i` accepts clients, exits, or `within` passes.
    pub async fn wait_started(&mut self, i: usize, within: Duration) -> anyhow::Result<Started> {
        let since = Instant::now();
        loop {
            let node = &mut self.nodes[i];
            let Some(child) = node.child.as_mut() else {
                bail!("{} is not running", node.name);
            };
            if let Some(status) = child.try_wait()? {
                node.child = None;
                return Ok(Started::Exited(status, self.output_since_start(i)));
            }
            if api::accepts_clients(node.client).await {
                return Ok(Started::Serving(since.elapsed()));
            }
            if since.elapsed() >= within {
                return Ok(Started::TimedOut);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts node `i` and waits until it accepts clients.
    pub async fn start(&mut self, i: usize) -> anyhow::Result<Duration> {
        self.spawn(i)?;
        let started = self.wait_started(i, START_DEADLINE).await?;
        self.serving_or_error(i, started)
    }

    /// How long node `i` took to serve, or why it does not (a node that timed out is killed).
    fn serving_or_error(&mut self, i: usize, started: Started) -> anyhow::Result<Duration> {
        match started {
            Started::Serving(took) => Ok(took),
            Started::Exited(status, output) => bail!(
                "{} exited during its start ({status}):\n{}",
                self.nodes[i].name,
                tail(&output, 30)
            ),
            Started::TimedOut => {
                self.kill(i);
                bail!(
                    "{} did not accept clients within {START_DEADLINE:?}:\n{}",
                    self.nodes[i].name,
                    tail(&self.output_since_start(i), 30)
                )
            }
        }
    }

    /// Starts every node that is not running, all at once, and waits for each.
    pub async fn start_all_stopped(&mut self) -> anyhow::Result<()> {
        let stopped: Vec<usize> = (0..self.nodes.len())
            .filter(|i| !self.is_running(*i))
            .collect();
        for &i in &stopped {
            self.spawn(i)?;
        }
        for &i in &stopped {
            let started = self.wait_started(i, START_DEADLINE).await?;
            self.serving_or_error(i, started)?;
        }
        Ok(())
    }

    /// SIGKILLs node `i` (a no-op when it is not running) and reaps it.
    pub fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused = false;
    }

    /// Sends `signal` to node `i`'s process.
    pub fn signal(&mut self, i: usize, signal: i32) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let child = node
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("{} is not running", node.name))?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!(
                "signal {signal} to {}: {}",
                node.name,
                std::io::Error::last_os_error()
            );
        }
        match signal {
            libc::SIGSTOP => node.paused = true,
            libc::SIGCONT => node.paused = false,
            _ => {}
        }
        Ok(())
    }

    /// SIGTERMs node `i` and waits for it to exit; SIGKILLs it after `within`. Returns whether it
    /// exited by itself, and its status.
    pub async fn terminate(
        &mut self,
        i: usize,
        within: Duration,
    ) -> anyhow::Result<(bool, Option<ExitStatus>)> {
        if !self.is_running(i) {
            return Ok((true, None));
        }
        if self.nodes[i].paused {
            self.signal(i, libc::SIGCONT)?;
        }
        self.signal(i, libc::SIGTERM)?;
        let since = Instant::now();
        loop {
            let node = &mut self.nodes[i];
            let Some(child) = node.child.as_mut() else {
                return Ok((true, None));
            };
            if let Some(status) = child.try_wait()? {
                node.child = None;
                return Ok((true, Some(status)));
            }
            if since.elapsed() >= within {
                self.kill(i);
                return Ok((false, None));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERMs every running node at once and waits for each, SIGKILLing those still running
    /// after `within`; returns a warning per node that did not stop cleanly.
    pub async fn terminate_all(&mut self, within: Duration) -> Vec<String> {
        let mut warnings = Vec::new();
        for i in self.running() {
            if self.nodes[i].paused {
                let _ = self.signal(i, libc::SIGCONT);
            }
            if let Err(err) = self.signal(i, libc::SIGTERM) {
                warnings.push(format!("{err:#}"));
            }
        }
        let deadline = Instant::now() + within;
        for i in 0..self.nodes.len() {
            loop {
                let node = &mut self.nodes[i];
                let Some(child) = node.child.as_mut() else {
                    break;
                };
                match child.try_wait() {
                    Ok(Some(status)) => {
                        node.child = None;
                        if !status.success() {
                            warnings.push(format!("{} exited with {status} on SIGTERM", node.name));
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    _ => {
                        warnings.push(format!(
                            "{} did not exit within {within:?} of SIGTERM (SIGKILLed)",
                            node.name
                        ));
                        self.kill(i);
                        break;
                    }
                }
            }
        }
        warnings
    }

    /// Nodes whose process exited although nobody stopped it, with the status and the end of
    /// what they wrote; they are marked as not running.
    pub fn reap_unexpected_exits(&mut self) -> Vec<(usize, String)> {
        let mut exited = Vec::new();
        for i in 0..self.nodes.len() {
            let node = &mut self.nodes[i];
            let Some(child) = node.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                node.child = None;
                let output = self.output_since_start(i);
                exited.push((i, format!("{status}:\n{}", tail(&output, 20))));
            }
        }
        exited
    }

    /// SIGCONTs every paused node.
    pub fn resume_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                let _ = self.signal(i, libc::SIGCONT);
            }
        }
    }

    pub fn kill_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }

    /// What node `i` wrote to its log since its last start.
    pub fn output_since_start(&self, i: usize) -> String {
        let node = &self.nodes[i];
        let text = std::fs::read(&node.log).unwrap_or_default();
        let from = usize::try_from(node.log_offset)
            .unwrap_or(0)
            .min(text.len());
        String::from_utf8_lossy(&text[from..]).into_owned()
    }

    /// The last `lines` lines of every node's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let text = std::fs::read_to_string(&node.log).unwrap_or_default();
            let _ = writeln!(
                out,
                "---- {} ({}) ----\n{}",
                node.name,
                node.log.display(),
                tail(&text, lines)
            );
        }
        out
    }

    /// `STREAM.INFO` of `stream` through the first running node that answers.
    pub async fn stream_info(&self, stream: &str) -> anyhow::Result<Json> {
        let mut last = anyhow!("no node is running");
        for i in self.running() {
            if self.nodes[i].paused {
                continue;
            }
            match api::request(self.control(i), &format!("STREAM.INFO.{stream}"), "").await {
                Ok(info) => return Ok(info),
                Err(err) => last = err.context(format!("through {}", self.nodes[i].name)),
            }
        }
        Err(last)
    }

    /// The index of the node leading `stream`, asking until `within` passes.
    pub async fn leader(&self, stream: &str, within: Duration) -> Option<usize> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(info) = self.stream_info(stream).await
                && let (Some(leader), _) = api::leader_and_replicas(&info)
                && let Some(i) = self.index_of(&leader)
            {
                return Some(i);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The names of `stream`'s voters (its leader and replicas); empty when no node can say.
    pub async fn voters(&self, stream: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(info) = self.stream_info(stream).await
                && let (Some(leader), replicas) = api::leader_and_replicas(&info)
            {
                let mut all: Vec<String> = replicas;
                all.push(leader);
                all.sort();
                all.dedup();
                return all;
            }
            if Instant::now() >= deadline {
                return Vec::new();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Processes first, then the namespaces they run in.
        self.kill_all();
        if let Some(mut netns) = self.netns.take() {
            netns.destroy();
        }
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Loopback ports nothing listens on right now, all different.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .context("probing free loopback ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}
