//! The meta group's state machine: the cluster's nodes, and every stream and consumer with the
//! nodes holding its replicas and the Raft group replicating it. Every voter of the meta group
//! applies the same committed [`MetaCommand`]s in the same order and so holds the same
//! [`MetaState`]; nodes read it to learn which stream groups they must run.
//!
//! Commands, replies and snapshots are JSON: they are rare and small, readable in a debugger, and
//! portable between x86_64, aarch64 and armv7 (no `usize`, no native byte order). Applying is
//! deterministic: ordered maps only, no clock (the leader puts `created_ns` in the command), no
//! randomness. A refused command changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use natrix_stream::{ApiError, ConsumerConfig, StreamConfig, subjects_overlap};
use serde::{Deserialize, Serialize};

use crate::peer::{NodeId, PeerInfo};
use crate::placement::{MAX_REPLICAS, PlacementError};

/// The Raft group id of the meta group itself; stream groups are numbered from 1.
pub const META_GROUP_ID: u64 = 0;

/// The snapshot layout this build writes and reads.
const SNAPSHOT_VERSION: u32 = 1;

/// One stream of the cluster: its config, its Raft group and where its replicas live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamAssignment {
    /// The stream's name (also its key in [`MetaState::streams`]).
    pub name: String,
    /// The stream config as `natrix_stream::StreamConfig` serialises it (validated and defaulted
    /// by the API front); [`StreamAssignment::stream_config`] turns it back.
    pub config: serde_json::Value,
    /// The id of the stream's Raft group, unique and never reused (the meta group is 0).
    pub group_id: u64,
    /// The nodes holding a replica, distinct; the first is the preferred leader.
    pub peers: Vec<NodeId>,
    /// Creation time, Unix nanoseconds, chosen by the meta leader.
    pub created_ns: i64,
    /// The stream's consumers by name; they live in the stream's group, on the same peers.
    pub consumers: BTreeMap<String, ConsumerAssignment>,
}

impl StreamAssignment {
    /// The stream config (10025 `invalid JSON` if the stored value does not decode, which only a
    /// newer or corrupt log can cause).
    pub fn stream_config(&self) -> Result<StreamConfig, ApiError> {
        StreamConfig::from_json(&json_bytes(&self.config))
    }

    /// Whether `node` holds a replica of the stream.
    pub fn has_peer(&self, node: NodeId) -> bool {
        self.peers.contains(&node)
    }
}

/// One consumer of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerAssignment {
    /// The consumer's name (also its key in [`StreamAssignment::consumers`]).
    pub name: String,
    /// The consumer config as `natrix_stream::ConsumerConfig` serialises it (validated and
    /// defaulted by the API front); [`ConsumerAssignment::consumer_config`] turns it back.
    pub config: serde_json::Value,
    /// Creation time, Unix nanoseconds, chosen by the meta leader.
    pub created_ns: i64,
}

impl ConsumerAssignment {
    /// The consumer config (10025 `invalid JSON` if the stored value does not decode).
    pub fn consumer_config(&self) -> Result<ConsumerConfig, ApiError> {
        ConsumerConfig::from_json(&json_bytes(&self.config))
    }
}

/// A change to the cluster's metadata, proposed by the meta leader and applied by every voter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MetaCommand {
    /// A node joins, or its details (addresses, tags, state) change: inserted or replaced by id.
    AddPeer(PeerInfo),
    /// A node leaves the cluster for good. Streams with a replica on it keep their other peers;
    /// placing a replacement is the caller's job ([`MetaCommand::SetStreamPeers`]).
    RemovePeer {
        /// The node to remove.
        node_id: NodeId,
    },
    /// A node became unreachable, or reachable again.
    SetPeerOffline {
        /// The node.
        node_id: NodeId,
        /// Its new state.
        offline: bool,
    },
    /// A new stream on `peers`. The same name with an identical config answers the existing
    /// assignment (create is idempotent, as in nats-server).
    CreateStream {
        /// The stream's name; must equal the config's.
        name: String,
        /// The stream config (see [`StreamAssignment::config`]).
        config: serde_json::Value,
        /// The nodes placement chose, preferred leader first.
        peers: Vec<NodeId>,
        /// Creation time, Unix nanoseconds.
        created_ns: i64,
        /// The account's stream limit (0 or less: none), checked when the command applies so
        /// that concurrent creates through different nodes cannot pass it together. Missing in
        /// entries written before it existed.
        #[serde(default, skip_serializing_if = "is_unlimited")]
        max_streams: i64,
    },
    /// A new config for an existing stream, and new peers when the update moves or scales it.
    UpdateStream {
        /// The stream's name; must equal the config's.
        name: String,
        /// The new stream config (checked against the old one by the API front).
        config: serde_json::Value,
        /// The new peers, if they change.
        peers: Option<Vec<NodeId>>,
    },
    /// The stream and its consumers are deleted.
    DeleteStream {
        /// The stream's name.
        name: String,
    },
    /// New peers for a stream (replacing a removed node, moving the stream).
    SetStreamPeers {
        /// The stream's name.
        name: String,
        /// The new peers, preferred leader first.
        peers: Vec<NodeId>,
    },
    /// A consumer is created, or its config replaced (the API front has checked that the
    /// update is allowed). An identical config answers the existing assignment.
    CreateConsumer {
        /// The stream's name.
        stream: String,
        /// The consumer's name.
        name: String,
        /// The consumer config (see [`ConsumerAssignment::config`]).
        config: serde_json::Value,
        /// Creation time, Unix nanoseconds (kept from the first create on updates).
        created_ns: i64,
    },
    /// The consumer is deleted.
    DeleteConsumer {
        /// The stream's name.
        stream: String,
        /// The consumer's name.
        name: String,
    },
}

impl MetaCommand {
    /// [`MetaCommand::CreateStream`] for a typed config.
    pub fn create_stream(
        config: &StreamConfig,
        peers: Vec<NodeId>,
        created_ns: i64,
        max_streams: i64,
    ) -> MetaCommand {
        MetaCommand::CreateStream {
            name: config.name.clone(),
            config: json_value(config),
            peers,
            created_ns,
            max_streams,
        }
    }

    /// [`MetaCommand::UpdateStream`] for a typed config.
    pub fn update_stream(config: &StreamConfig, peers: Option<Vec<NodeId>>) -> MetaCommand {
        MetaCommand::UpdateStream {
            name: config.name.clone(),
            config: json_value(config),
            peers,
        }
    }

    /// [`MetaCommand::CreateConsumer`] for a typed config.
    pub fn create_consumer(
        stream: &str,
        name: &str,
        config: &ConsumerConfig,
        created_ns: i64,
    ) -> MetaCommand {
        MetaCommand::CreateConsumer {
            stream: stream.to_string(),
            name: name.to_string(),
            config: json_value(config),
            created_ns,
        }
    }
}

/// What applying a command produced: the affected entry, or why nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum MetaReply {
    /// `AddPeer`, `SetPeerOffline`: the node as it is now.
    Peer(PeerInfo),
    /// `RemovePeer`: the node as it was, and the streams (by name) that lost a replica on it.
    PeerRemoved {
        /// The removed node.
        peer: PeerInfo,
        /// The streams that had a replica on it, in name order.
        streams: Vec<String>,
    },
    /// `CreateStream`, `UpdateStream`, `SetStreamPeers`: the assignment as it is now;
    /// `DeleteStream`: as it was.
    Stream(StreamAssignment),
    /// `CreateConsumer`: the consumer as it is now; `DeleteConsumer`: as it was.
    Consumer {
        /// The stream's name.
        stream: String,
        /// The stream's Raft group, where the consumer lives.
        group_id: u64,
        /// The consumer.
        consumer: ConsumerAssignment,
    },
    /// The command was refused; the state did not change.
    Error(ApiError),
}

impl MetaReply {
    /// The error, if the command was refused.
    pub fn error(&self) -> Option<&ApiError> {
        match self {
            MetaReply::Error(e) => Some(e),
            _ => None,
        }
    }
}

/// Why bytes could not be turned into a command, reply or state.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A command or reply that does not decode.
    #[error("meta {what} does not decode: {source}")]
    Decode {
        /// What was being decoded (`command`, `reply`, `snapshot`).
        what: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A snapshot written by a build with another layout.
    #[error(
        "meta snapshot version {found} is not supported (this build reads {})",
        SNAPSHOT_VERSION
    )]
    UnsupportedVersion {
        /// The version in the snapshot.
        found: u32,
    },
    /// A snapshot that decodes but breaks the state's invariants.
    #[error("meta snapshot is inconsistent: {0}")]
    Inconsistent(String),
}

/// The cluster's metadata as the meta group replicates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    /// Every node of the cluster by id.
    pub peers: BTreeMap<NodeId, PeerInfo>,
    /// Every stream by name.
    pub streams: BTreeMap<String, StreamAssignment>,
    /// The group id the next new stream gets; starts at 1 and only grows, so ids are never
    /// reused (group 0 is the meta group).
    pub next_group_id: u64,
}

impl Default for MetaState {
    fn default() -> MetaState {
        MetaState::new()
    }
}

impl MetaState {
    /// An empty cluster.
    pub fn new() -> MetaState {
        MetaState {
            peers: BTreeMap::new(),
            streams: BTreeMap::new(),
            next_group_id: META_GROUP_ID + 1,
        }
    }

    /// Applies one committed command. Deterministic: the same commands in the same order give
    /// the same state and replies on every node. A refused command changes nothing.
    pub fn apply(&mut self, command: &MetaCommand) -> MetaReply {
        self.try_apply(command).unwrap_or_else(MetaReply::Error)
    }

    /// [`apply`](Self::apply) for a command as it travels in the log, returning the encoded
    /// reply: what a Raft state machine adapter needs. Bytes that do not decode (a log written by
    /// a newer build) are refused with 10003 `bad request` on every node alike.
    pub fn apply_encoded(&mut self, command: &[u8]) -> Vec<u8> {
        let reply = match decode_command(command) {
            Ok(command) => self.apply(&command),
            Err(_) => MetaReply::Error(ApiError::bad_request()),
        };
        encode_reply(&reply)
    }

    fn try_apply(&mut self, command: &MetaCommand) -> Result<MetaReply, ApiError> {
        match command {
            MetaCommand::AddPeer(info) => {
                self.peers.insert(info.node_id, info.clone());
                Ok(MetaReply::Peer(info.clone()))
            }
            MetaCommand::RemovePeer { node_id } => {
                let peer = self
                    .peers
                    .remove(node_id)
                    .ok_or_else(ApiError::cluster_server_not_member)?;
                let mut streams = Vec::new();
                for sa in self.streams.values_mut() {
                    if sa.has_peer(*node_id) {
                        sa.peers.retain(|p| p != node_id);
                        streams.push(sa.name.clone());
                    }
                }
                Ok(MetaReply::PeerRemoved { peer, streams })
            }
            MetaCommand::SetPeerOffline { node_id, offline } => {
                let peer = self
                    .peers
                    .get_mut(node_id)
                    .ok_or_else(ApiError::cluster_server_not_member)?;
                peer.offline = *offline;
                Ok(MetaReply::Peer(peer.clone()))
            }
            MetaCommand::CreateStream {
                name,
                config,
                peers,
                created_ns,
                max_streams,
            } => self.create_stream(name, config, peers, *created_ns, *max_streams),
            MetaCommand::UpdateStream {
                name,
                config,
                peers,
            } => {
                let sa = self
                    .streams
                    .get(name)
                    .ok_or_else(ApiError::stream_not_found)?;
                check_stream_config(name, config)?;
                if let Some(peers) = peers {
                    check_peers(&self.peers, peers)?;
                }
                self.check_no_overlap(name, config)?;
                let mut sa = sa.clone();
                sa.config = config.clone();
                if let Some(peers) = peers {
                    sa.peers = peers.clone();
                }
                self.streams.insert(name.clone(), sa.clone());
                Ok(MetaReply::Stream(sa))
            }
            MetaCommand::DeleteStream { name } => self
                .streams
                .remove(name)
                .map(MetaReply::Stream)
                .ok_or_else(ApiError::stream_not_found),
            MetaCommand::SetStreamPeers { name, peers } => {
                let sa = stream_mut(&mut self.streams, name)?;
                check_peers(&self.peers, peers)?;
                sa.peers = peers.clone();
                Ok(MetaReply::Stream(sa.clone()))
            }
            MetaCommand::CreateConsumer {
                stream,
                name,
                config,
                created_ns,
            } => {
                let sa = stream_mut(&mut self.streams, stream)?;
                ConsumerConfig::from_json(&json_bytes(config))?;
                if name.is_empty() {
                    return Err(ApiError::bad_request());
                }
                let consumer = sa
                    .consumers
                    .entry(name.clone())
                    .and_modify(|ca| ca.config = config.clone())
                    .or_insert_with(|| ConsumerAssignment {
                        name: name.clone(),
                        config: config.clone(),
                        created_ns: *created_ns,
                    })
                    .clone();
                Ok(MetaReply::Consumer {
                    stream: stream.clone(),
                    group_id: sa.group_id,
                    consumer,
                })
            }
            MetaCommand::DeleteConsumer { stream, name } => {
                let sa = stream_mut(&mut self.streams, stream)?;
                let consumer = sa
                    .consumers
                    .remove(name)
                    .ok_or_else(ApiError::consumer_not_found)?;
                Ok(MetaReply::Consumer {
                    stream: stream.clone(),
                    group_id: sa.group_id,
                    consumer,
                })
            }
        }
    }

    fn create_stream(
        &mut self,
        name: &str,
        config: &serde_json::Value,
        peers: &[NodeId],
        created_ns: i64,
        max_streams: i64,
    ) -> Result<MetaReply, ApiError> {
        check_stream_config(name, config)?;
        if let Some(existing) = self.streams.get(name) {
            // nats-server compares the whole (defaulted) config: identical is idempotent.
            return if existing.config == *config {
                Ok(MetaReply::Stream(existing.clone()))
            } else {
                Err(ApiError::stream_name_exists())
            };
        }
        if u64::try_from(max_streams).is_ok_and(|max| max > 0 && self.streams.len() as u64 >= max) {
            return Err(ApiError::maximum_streams_limit());
        }
        self.check_no_overlap(name, config)?;
        check_peers(&self.peers, peers)?;
        let group_id = self.next_group_id;
        self.next_group_id = group_id
            .checked_add(1)
            .ok_or_else(ApiError::insufficient_resources)?;
        let sa = StreamAssignment {
            name: name.to_string(),
            config: config.clone(),
            group_id,
            peers: peers.to_vec(),
            created_ns,
            consumers: BTreeMap::new(),
        };
        self.streams.insert(name.to_string(), sa.clone());
        Ok(MetaReply::Stream(sa))
    }

    /// No two streams capture the same subject (10065), checked here as well as by the API
    /// front so that two concurrent creates cannot both pass.
    fn check_no_overlap(&self, name: &str, config: &serde_json::Value) -> Result<(), ApiError> {
        let subjects = subjects_of(config);
        let overlaps = self
            .streams
            .values()
            .filter(|other| other.name != name)
            .flat_map(|other| subjects_of(&other.config))
            .any(|theirs| {
                subjects
                    .iter()
                    .any(|ours| subjects_overlap(ours.as_bytes(), theirs.as_bytes()))
            });
        if overlaps {
            return Err(ApiError::stream_subject_overlap());
        }
        Ok(())
    }

    /// The stream named `name`.
    pub fn stream(&self, name: &str) -> Option<&StreamAssignment> {
        self.streams.get(name)
    }

    /// The stream replicated by Raft group `group_id`.
    pub fn stream_for_group(&self, group_id: u64) -> Option<&StreamAssignment> {
        self.streams.values().find(|sa| sa.group_id == group_id)
    }

    /// The node with id `node`.
    pub fn peer(&self, node: NodeId) -> Option<&PeerInfo> {
        self.peers.get(&node)
    }

    /// The streams with a replica on `node`, in name order.
    pub fn streams_on(&self, node: NodeId) -> Vec<&StreamAssignment> {
        self.streams
            .values()
            .filter(|sa| sa.has_peer(node))
            .collect()
    }

    /// Stream replicas per node, every known node included (0 for an idle one): the load
    /// placement balances.
    pub fn load(&self) -> BTreeMap<NodeId, u64> {
        let mut load: BTreeMap<NodeId, u64> = self.peers.keys().map(|id| (*id, 0)).collect();
        for peer in self.streams.values().flat_map(|sa| &sa.peers) {
            *load.entry(*peer).or_insert(0) += 1;
        }
        load
    }

    /// The whole state, portable (JSON with a version), for a Raft snapshot.
    pub fn snapshot(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Snapshot<'a> {
            version: u32,
            state: &'a MetaState,
        }
        json_bytes(&Snapshot {
            version: SNAPSHOT_VERSION,
            state: self,
        })
    }

    /// The state a [`snapshot`](Self::snapshot) holds, after checking its invariants.
    pub fn install(snapshot: &[u8]) -> Result<MetaState, MetaError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        #[derive(Deserialize)]
        struct Snapshot {
            state: MetaState,
        }
        let decode = |source: serde_json::Error| MetaError::Decode {
            what: "snapshot",
            source,
        };
        let Version { version } = serde_json::from_slice(snapshot).map_err(decode)?;
        if version != SNAPSHOT_VERSION {
            return Err(MetaError::UnsupportedVersion { found: version });
        }
        let Snapshot { state } = serde_json::from_slice(snapshot).map_err(decode)?;
        state.check_invariants().map_err(MetaError::Inconsistent)?;
        Ok(state)
    }

    /// What every applied state satisfies; a snapshot breaking it was not written by us.
    fn check_invariants(&self) -> Result<(), String> {
        if self.next_group_id == META_GROUP_ID {
            return Err(format!("next group id {}", self.next_group_id));
        }
        for (id, peer) in &self.peers {
            if peer.node_id != *id {
                return Err(format!("peer {} filed under id {id}", peer.node_id));
            }
        }
        let mut groups = BTreeSet::new();
        for (name, sa) in &self.streams {
            if sa.name != *name {
                return Err(format!("stream {:?} filed under {name:?}", sa.name));
            }
            if sa.group_id == META_GROUP_ID || sa.group_id >= self.next_group_id {
                return Err(format!("stream {name:?} has group id {}", sa.group_id));
            }
            if !groups.insert(sa.group_id) {
                return Err(format!("group id {} used twice", sa.group_id));
            }
            if let Some((key, ca)) = sa.consumers.iter().find(|(key, ca)| ca.name != **key) {
                return Err(format!("consumer {:?} filed under {key:?}", ca.name));
            }
        }
        Ok(())
    }
}

fn is_unlimited(max: &i64) -> bool {
    *max <= 0
}

/// A command as it travels in the meta group's log.
pub fn encode_command(command: &MetaCommand) -> Vec<u8> {
    json_bytes(command)
}

/// A command from the log.
pub fn decode_command(bytes: &[u8]) -> Result<MetaCommand, MetaError> {
    serde_json::from_slice(bytes).map_err(|source| MetaError::Decode {
        what: "command",
        source,
    })
}

/// A reply as the state machine returns it to the proposer.
pub fn encode_reply(reply: &MetaReply) -> Vec<u8> {
    json_bytes(reply)
}

/// A reply returned by the state machine.
pub fn decode_reply(bytes: &[u8]) -> Result<MetaReply, MetaError> {
    serde_json::from_slice(bytes).map_err(|source| MetaError::Decode {
        what: "reply",
        source,
    })
}

/// The stream named `name`, or 10059.
fn stream_mut<'a>(
    streams: &'a mut BTreeMap<String, StreamAssignment>,
    name: &str,
) -> Result<&'a mut StreamAssignment, ApiError> {
    streams.get_mut(name).ok_or_else(ApiError::stream_not_found)
}

/// A stream's peers: 1 to 5 distinct nodes, all of them members of the cluster.
fn check_peers(members: &BTreeMap<NodeId, PeerInfo>, peers: &[NodeId]) -> Result<(), ApiError> {
    if peers.is_empty() {
        return Err(ApiError::cluster_no_peers(
            "no suitable peers for placement",
        ));
    }
    if peers.len() > MAX_REPLICAS as usize {
        let requested = i64::try_from(peers.len()).unwrap_or(i64::MAX);
        return Err(PlacementError::InvalidReplicas { requested }.to_api_error());
    }
    if peers.iter().collect::<BTreeSet<_>>().len() != peers.len() {
        return Err(ApiError::bad_request());
    }
    if peers.iter().any(|p| !members.contains_key(p)) {
        return Err(ApiError::cluster_peer_not_member());
    }
    Ok(())
}

/// The config must decode (so that [`StreamAssignment::stream_config`] always works) and name
/// the stream it is filed under (10056).
fn check_stream_config(name: &str, config: &serde_json::Value) -> Result<(), ApiError> {
    let decoded = StreamConfig::from_json(&json_bytes(config))?;
    if decoded.name != name {
        return Err(ApiError::stream_mismatch());
    }
    Ok(())
}

/// The subjects a stream config captures, read straight from its JSON (no full decode per
/// stream on every create).
fn subjects_of(config: &serde_json::Value) -> Vec<&str> {
    config
        .get("subjects")
        .and_then(|s| s.as_array())
        .map(|subjects| subjects.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default()
}

fn json_bytes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value)
        .expect("meta types serialise to JSON: string or integer map keys, no failing serialisers")
}

fn json_value<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value)
        .expect("configs serialise to JSON: string map keys, no failing serialisers")
}

#[cfg(test)]
#[path = "meta_test.rs"]
mod tests;
