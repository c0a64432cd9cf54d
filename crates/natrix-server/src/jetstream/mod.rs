//! JetStream on one node: the stream registry, the account's usage and limits, recovery of every
//! stream from the store at start, and the wiring of the `$JS.API` subjects to their handlers.
//!
//! Each stream is a [`StreamHost`]: a task that applies commands to the pure state machine of
//! `natrix-stream` and persists their effects through the store's group commit before it answers
//! (publish → apply → one write batch + fsync → PubAck).

mod advisory;
mod api;
pub(crate) mod cluster;
mod consumer_api;
mod consumer_host;
mod direct;
mod host;
mod record;
mod resources;
mod sourcing;
pub(crate) mod stream_api;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use natrix_store::{Store, StoreOptions, SyncPolicy};
use natrix_stream::{AccountLimits, ApiError, StorageType, StreamConfig};
use parking_lot::RwLock;
use record::StreamRecord;

use crate::config::{AccountConfig, JetStreamConfig};
use crate::state::ServerState;

pub(crate) use host::{StagedSnapshot, StreamHost};

/// Why JetStream could not start.
#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    #[error("opening the store in {path}: {source}")]
    Open {
        path: PathBuf,
        source: natrix_store::StoreError,
    },
    #[error("recovering stream {id} from the store: {reason}")]
    Recover { id: u64, reason: String },
    #[error("subscribing to {subject}: {reason}")]
    Subscribe { subject: String, reason: String },
    #[error("starting clustered JetStream: {0}")]
    Cluster(String),
}

/// How often the free space of the store's file system is sampled.
const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct JetStream {
    store: Arc<Store>,
    pub config: JetStreamConfig,
    /// The account the streams belong to, with its JetStream limits.
    pub account: AccountConfig,
    /// The directory JetStream keeps its data in (`<store_dir>/jetstream`).
    pub store_dir: PathBuf,
    streams: RwLock<BTreeMap<String, Arc<StreamHost>>>,
    /// Ids for memory streams, which the store never sees (counting down from the top so they
    /// never meet the store's ids).
    next_memory_id: AtomicU64,
    pub api_total: AtomicU64,
    pub api_errors: AtomicU64,
    /// Set while the store's file system has less free space than [`resources::disk_reserve`].
    disk_low: AtomicBool,
    /// When publishes check the server limits (derived ones only near them).
    limit_checks: resources::LimitChecks,
    /// Clustered JetStream (a `cluster {}` is configured): the meta group and stream groups.
    cluster: Option<Arc<cluster::JsCluster>>,
}

impl std::fmt::Debug for JetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStream")
            .field("store_dir", &self.store_dir)
            .field("streams", &self.streams.read().len())
            .finish_non_exhaustive()
    }
}

/// Bytes held by the account's streams, per storage type.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Usage {
    pub memory: u64,
    pub storage: u64,
    pub streams: u64,
    pub consumers: u64,
}

impl JetStream {
    /// Opens the store, recovers every stream and starts serving the JetStream API; with a
    /// cluster configured, also starts this node's Raft host and meta group member.
    pub async fn start(state: &Arc<ServerState>) -> Result<Arc<JetStream>, JetStreamError> {
        let config = state.config.jetstream.clone().unwrap_or_default();
        let store_dir = config
            .store_dir
            .clone()
            .unwrap_or_else(default_store_dir)
            .join("jetstream");
        let options = StoreOptions {
            sync: match config.sync_interval {
                Some(interval) => SyncPolicy::Interval(interval),
                None => SyncPolicy::Always,
            },
            // A single node checks every block's checksum while it rebuilds its streams (both
            // read the whole store; on two cores they overlap) and serves nothing before both
            // are done. A cluster node verifies first: its Raft groups start before recovery.
            verify_in_background: state.config.cluster.is_none(),
            ..StoreOptions::default()
        };
        let db_dir = store_dir.join("rocksdb");
        let store = Store::open(&db_dir, options).map_err(|source| JetStreamError::Open {
            path: db_dir.clone(),
            source,
        })?;
        let mut config = config;
        let limit_checks = resolve_server_limits(&mut config, &store);
        let cluster = match &state.config.cluster {
            Some(cluster) => {
                let name = cluster
                    .name
                    .clone()
                    .unwrap_or_else(|| state.server_id.clone());
                // Raft traffic goes over the cluster endpoint: same mutual TLS as the routes.
                let network = natrix_raft::NetworkOptions {
                    tls: state.cluster_tls.as_ref().map(|t| t.client_config_by_uri()),
                    ..Default::default()
                };
                Some(
                    cluster::JsCluster::start(&store, &name, network)
                        .await
                        .map_err(JetStreamError::Cluster)?,
                )
            }
            None => None,
        };
        let js = Arc::new(JetStream {
            store: Arc::new(store),
            config,
            account: state.config.account.clone(),
            store_dir,
            streams: RwLock::new(BTreeMap::new()),
            next_memory_id: AtomicU64::new(u64::MAX),
            api_total: AtomicU64::new(0),
            api_errors: AtomicU64::new(0),
            disk_low: AtomicBool::new(false),
            limit_checks,
            cluster,
        });
        let recovered = js.recover(state);
        // A damaged block is reported as such even when recovery tripped over it first.
        js.store
            .verified()
            .await
            .map_err(|source| JetStreamError::Open {
                path: db_dir.clone(),
                source,
            })?;
        recovered?;
        api::serve(state, &js)?;
        tokio::spawn(watch_disk(Arc::downgrade(&js)));
        Ok(js)
    }

    fn recover(self: &Arc<Self>, state: &Arc<ServerState>) -> Result<(), JetStreamError> {
        let started = std::time::Instant::now();
        let configs = self
            .store
            .stream_configs()
            .map_err(|e| JetStreamError::Recover {
                id: 0,
                reason: e.to_string(),
            })?;
        let mut messages = 0;
        for (id, bytes) in configs {
            if StreamRecord::is_staging(&bytes) {
                host::remove_staged(&self.store, id, "left by a transfer that never finished");
                continue;
            }
            let host = StreamHost::recover(state, self, id, &bytes)
                .map_err(|reason| JetStreamError::Recover { id, reason })?;
            messages += host.messages();
            tracing::info!(
                "  Restored {} messages for stream '{} > {}'",
                host.messages(),
                self.account.name,
                host.name
            );
            self.streams.write().insert(host.name.clone(), host);
        }
        let n = self.streams.read().len();
        if n > 0 {
            tracing::info!(
                "Recovered {n} streams with {messages} messages in {:.3}s",
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Clustered JetStream, when a cluster is configured.
    pub fn cluster(&self) -> Option<&Arc<cluster::JsCluster>> {
        self.cluster.as_ref()
    }

    /// This node's Raft node id (0 when not clustered).
    pub fn node_id(&self) -> u64 {
        self.cluster.as_ref().map_or(0, |c| c.node_id)
    }

    /// Hands every Raft leadership this node holds (the meta group's and each replicated
    /// stream's) to another voter, concurrently and within `timeout`, so that a node going away
    /// (shutdown, lame duck) stalls no writes for an election timeout. As nats-server does when
    /// it enters lame duck mode. Groups without another voter connected now keep their leader.
    pub async fn hand_off_leadership(&self, state: &ServerState, timeout: std::time::Duration) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        // Only a voter connected now can take over: one that just stopped (the whole cluster
        // stopping, say) may still look current, and waiting for it would only delay the
        // shutdown by the transfer's timeout.
        let connected: std::collections::HashSet<u64> = state
            .router
            .mesh()
            .map(|mesh| mesh.links().iter().map(|l| l.peer.node_id).collect())
            .unwrap_or_default();
        let mut groups: Vec<(String, u64)> = self
            .streams()
            .into_iter()
            .filter(|h| h.is_leader())
            .filter_map(|h| h.replica.as_ref().map(|r| (h.name.clone(), r.group_id)))
            .collect();
        if cluster.meta_leader() == Some(cluster.node_id) {
            groups.push(("the meta group".to_owned(), natrix_cluster::META_GROUP_ID));
        }
        if groups.is_empty() {
            return;
        }
        let connected = &connected;
        let transfers = groups.iter().map(|(what, group_id)| async move {
            let eligible = |id| connected.contains(&id);
            match cluster
                .raft
                .transfer_leadership_among(*group_id, None, eligible)
                .await
            {
                Ok(to) => tracing::info!(
                    "JetStream: leadership of {what} handed to {}",
                    cluster.node_name(to)
                ),
                Err(natrix_raft::TransferLeadershipError::NoOtherVoter { .. }) => {}
                Err(err) => tracing::warn!("JetStream: handing off leadership of {what}: {err}"),
            }
        });
        if tokio::time::timeout(timeout, futures::future::join_all(transfers))
            .await
            .is_err()
        {
            tracing::warn!("JetStream: leadership hand-off did not finish within {timeout:?}");
        }
    }

    /// Stops clustered JetStream's Raft groups (the store closes when the node is dropped).
    pub async fn shutdown(&self) {
        // Copies read other streams through consumers: stop them before anything else stops.
        for host in self.streams() {
            sourcing::stop(&host);
        }
        if let Some(cluster) = &self.cluster {
            cluster.shutdown().await;
        }
    }

    pub fn stream(&self, name: &str) -> Option<Arc<StreamHost>> {
        self.streams.read().get(name).cloned()
    }

    /// Every stream, ordered by name.
    pub fn streams(&self) -> Vec<Arc<StreamHost>> {
        self.streams.read().values().cloned().collect()
    }

    /// What this node's replicas hold, for a cluster's account info: the bytes of every
    /// replica here and the consumers of the streams this node leads (where they run; a
    /// follower's copy would count them twice). Its stream count is not the cluster's (the meta
    /// state has that).
    pub fn replica_usage(&self) -> Usage {
        self.usage_counting_consumers_of(StreamHost::is_leader)
    }

    /// What this node's streams hold: a single node's account info and limits.
    pub fn usage(&self) -> Usage {
        self.usage_counting_consumers_of(|_| true)
    }

    /// The bytes every stream of one storage type holds on this node.
    fn stored_bytes(&self, storage: StorageType) -> u64 {
        self.streams
            .read()
            .values()
            .filter(|host| host.storage() == storage)
            .map(|host| host.bytes())
            .sum()
    }

    fn usage_counting_consumers_of(&self, counted: impl Fn(&StreamHost) -> bool) -> Usage {
        let mut usage = Usage::default();
        for host in self.streams.read().values() {
            let bytes = host.bytes();
            match host.storage() {
                StorageType::Memory => usage.memory += bytes,
                StorageType::File => usage.storage += bytes,
            }
            usage.streams += 1;
            if counted(host) {
                usage.consumers += host.consumer_count();
            }
        }
        usage
    }

    /// The server's limit for a storage type (`max_memory_store`, `max_file_store`; -1:
    /// unlimited), which all accounts share.
    pub fn max_store(&self, storage: StorageType) -> i64 {
        match storage {
            StorageType::Memory => self.config.max_memory_store.unwrap_or(-1),
            StorageType::File => self.config.max_file_store.unwrap_or(-1),
        }
    }

    /// The account's JetStream limits, or 10039 when JetStream is not enabled for it.
    pub fn account_limits(&self) -> Result<&AccountLimits, ApiError> {
        self.account
            .jetstream
            .as_ref()
            .ok_or_else(ApiError::jetstream_not_enabled_for_account)
    }

    /// Whether a publish of `size` bytes of `storage` still fits after `batch` bytes its batch
    /// adds before it (not in the usage figures yet): the account's limit (10002, as
    /// nats-server), then the server's limit and (for files) the disk (10023).
    pub fn check_resources(
        &self,
        storage: StorageType,
        batch: u64,
        size: u64,
    ) -> Result<(), ApiError> {
        let more = batch.saturating_add(size);
        if storage == StorageType::File && self.disk_low.load(Ordering::Relaxed) {
            return Err(ApiError::insufficient_resources());
        }
        let account = self.account_limits()?;
        let server_max = u64::try_from(self.max_store(storage))
            .ok()
            .filter(|max| self.limit_checks.exact(storage, size, *max));
        // Summing every stream's bytes is work on the publish path: only when a limit applies.
        if account.max_store(storage) < 0 && server_max.is_none() {
            return Ok(());
        }
        let used = self.stored_bytes(storage);
        account.check_usage(storage, used, more)?;
        if server_max.is_some_and(|max| used.saturating_add(more) > max) {
            return Err(ApiError::insufficient_resources());
        }
        Ok(())
    }

    /// Checks a new (`creating`) or updated stream against the account's limits (given the
    /// account's `others` streams) and its `max_bytes` against the server's: a stream may not
    /// reserve more than the server may store.
    pub fn check_stream_limits(
        &self,
        config: &StreamConfig,
        others: &[StreamConfig],
        creating: bool,
    ) -> Result<(), ApiError> {
        self.account_limits()?
            .check_stream(config, others, creating)?;
        if let (Ok(max), Ok(want)) = (
            u64::try_from(self.max_store(config.storage)),
            u64::try_from(config.max_bytes),
        ) && want > max
        {
            return Err(match config.storage {
                StorageType::Memory => ApiError::memory_resources_exceeded(),
                StorageType::File => ApiError::storage_resources_exceeded(),
            });
        }
        Ok(())
    }

    fn next_memory_id(&self) -> u64 {
        self.next_memory_id.fetch_sub(1, Ordering::Relaxed)
    }

    pub(crate) fn insert(&self, host: Arc<StreamHost>) {
        self.streams.write().insert(host.name.clone(), host);
    }

    pub(crate) fn remove(&self, name: &str) -> Option<Arc<StreamHost>> {
        self.streams.write().remove(name)
    }
}

/// nats-server's default when no `store_dir` is configured: `<temp dir>/nats`.
fn default_store_dir() -> PathBuf {
    std::env::temp_dir().join("nats")
}

/// Sets the server limits the configuration leaves open as nats-server does: three quarters of
/// the machine's memory and of the store's file system (see [`resources`]).
fn resolve_server_limits(config: &mut JetStreamConfig, store: &Store) -> resources::LimitChecks {
    let checks = resources::LimitChecks::new(
        config.max_memory_store.is_none(),
        config.max_file_store.is_none(),
    );
    if config.max_memory_store.is_none() {
        config.max_memory_store = resources::default_max_memory_store(resources::total_memory());
    }
    if config.max_file_store.is_none() {
        match store.disk_usage() {
            Ok(usage) => {
                config.max_file_store = Some(resources::default_max_file_store(
                    usage.fs_available_bytes,
                    usage.dir_bytes,
                ));
            }
            Err(err) => tracing::warn!("JetStream store size unknown, no max_file_store: {err}"),
        }
    }
    checks
}

/// A server limit as the start-up banner shows it (`unlimited` when there is none).
pub(crate) fn friendly_limit(limit: Option<i64>) -> String {
    limit.map_or_else(|| "unlimited".to_string(), resources::friendly_bytes)
}

/// Samples, once a second, the free space of the store's file system, so that writes are refused
/// before the disk is full rather than failing in the middle of a batch, and the bytes stored
/// against the derived server limits ([`resources::LimitChecks`]).
async fn watch_disk(js: Weak<JetStream>) {
    let mut tick = tokio::time::interval(DISK_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        let Some(js) = js.upgrade() else { return };
        for storage in [StorageType::Memory, StorageType::File] {
            js.limit_checks.sample(storage, js.stored_bytes(storage));
        }
        match js.store.fs_space() {
            Ok((available, total)) => {
                let low = available < resources::disk_reserve(total);
                if js.disk_low.swap(low, Ordering::Relaxed) != low {
                    if low {
                        tracing::warn!(
                            "JetStream store file system has {available} bytes free: refusing file-stored writes"
                        );
                    } else {
                        tracing::info!("JetStream store file system has free space again");
                    }
                }
            }
            Err(err) => tracing::warn!("JetStream store free space: {err}"),
        }
    }
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
