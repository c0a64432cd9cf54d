//! The client side of Raft traffic: openraft's [`RaftNetworkFactory`]/[`RaftNetwork`] over the
//! `natrix.raft.Raft` gRPC service. Every group on this node shares one lazily connected tonic
//! [`Channel`] per peer address ([`PeerChannels`]); each request names its group id. Transport
//! failures become openraft's `Unreachable` (back off, then retry) or `NetworkError` (retry).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use natrix_proto::raft as pb;
use natrix_proto::raft::raft_client::RaftClient;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use parking_lot::Mutex;
use prost::Message;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::codec::{self, CodecError};
use crate::types::{GroupId, NodeId, RaftNode, TypeConfig};

/// Limits of the Raft transport, shared by the client and the server side.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// How long a connection attempt to a peer may take.
    pub connect_timeout: Duration,
    /// The largest encoded request or response; larger append-entries batches are split
    /// (openraft retries with fewer entries). Keep openraft's `snapshot_max_chunk_size` well
    /// below it.
    pub max_message_bytes: usize,
    /// The deadline of an RPC when openraft gives none shorter.
    pub rpc_timeout: Duration,
}

impl Default for NetworkOptions {
    fn default() -> NetworkOptions {
        NetworkOptions {
            connect_timeout: Duration::from_secs(2),
            max_message_bytes: 64 << 20,
            rpc_timeout: Duration::from_secs(10),
        }
    }
}

/// One tonic channel per peer address, created on first use and connected lazily (and
/// reconnected by tonic after failures); shared by every group on this node.
#[derive(Clone, Default)]
pub struct PeerChannels {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    options: NetworkOptions,
    /// When each group's leader here last heard an `AppendEntries` answer from each peer.
    contacts: Arc<Mutex<HashMap<(GroupId, NodeId), Instant>>>,
}

impl PeerChannels {
    pub fn new(options: NetworkOptions) -> PeerChannels {
        PeerChannels {
            channels: Arc::default(),
            options,
            contacts: Arc::default(),
        }
    }

    pub fn options(&self) -> &NetworkOptions {
        &self.options
    }

    /// The channel to `addr` (`host:port`), creating it if this is the first request there.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock();
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(self.options.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    /// How long ago this node (leading `group_id`) last heard an answer to `AppendEntries`
    /// (entries or a heartbeat) from `target`; `None` if it never has.
    pub fn since_contact(&self, group_id: GroupId, target: NodeId) -> Option<Duration> {
        self.contacts
            .lock()
            .get(&(group_id, target))
            .map(Instant::elapsed)
    }

    /// Forgets the contacts of a group that stopped here.
    pub fn forget_group(&self, group_id: GroupId) {
        self.contacts
            .lock()
            .retain(|(group, _), _| *group != group_id);
    }

    fn contacted(&self, group_id: GroupId, target: NodeId) {
        self.contacts
            .lock()
            .insert((group_id, target), Instant::now());
    }

    /// Forgets the channel to `addr` (a peer that left the cluster).
    pub fn remove(&self, addr: &str) {
        self.channels.lock().remove(addr);
    }

    /// Asks the node at `addr` to start an election in a group at once (the last step of a
    /// leadership transfer). The deadline is `timeout`, capped by `rpc_timeout`.
    pub async fn timeout_now(
        &self,
        addr: &str,
        request: pb::TimeoutNowRequest,
        timeout: Duration,
    ) -> Result<pb::TimeoutNowResponse, Status> {
        let mut client = self
            .client(addr)
            .map_err(|e| Status::invalid_argument(format!("peer address {addr}: {e}")))?;
        let mut request = tonic::Request::new(request);
        request.set_timeout(timeout.min(self.options.rpc_timeout));
        Ok(client.timeout_now(request).await?.into_inner())
    }

    fn client(&self, addr: &str) -> Result<RaftClient<Channel>, tonic::transport::Error> {
        let max = self.options.max_message_bytes;
        Ok(RaftClient::new(self.channel(addr)?)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max))
    }
}

/// Creates the per-peer clients of one group.
#[derive(Clone)]
pub struct NetworkFactory {
    group_id: GroupId,
    channels: PeerChannels,
}

impl NetworkFactory {
    pub fn new(group_id: GroupId, channels: PeerChannels) -> NetworkFactory {
        NetworkFactory { group_id, channels }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &RaftNode) -> PeerClient {
        PeerClient {
            group_id: self.group_id,
            target,
            addr: node.addr.clone(),
            channels: self.channels.clone(),
        }
    }
}

/// One group's connection to one peer.
pub struct PeerClient {
    group_id: GroupId,
    target: NodeId,
    addr: String,
    channels: PeerChannels,
}

/// openraft's RPC error for an RPC whose remote side fails with `E`.
type RpcError<E = ApiError> = RPCError<NodeId, RaftNode, E>;
type ApiError = RaftError<NodeId>;
type SnapshotApiError = RaftError<NodeId, InstallSnapshotError>;

#[derive(Debug, thiserror::Error)]
enum TransportError {
    #[error("raft group {group_id}: peer {target} at {addr}: {status}")]
    Status {
        group_id: GroupId,
        target: NodeId,
        addr: String,
        status: Status,
    },
    #[error("raft group {group_id}: peer {target} at {addr}: bad address: {source}")]
    Address {
        group_id: GroupId,
        target: NodeId,
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("raft group {group_id}: peer {target} at {addr}: bad response: {source}")]
    Decode {
        group_id: GroupId,
        target: NodeId,
        addr: String,
        source: CodecError,
    },
    #[error("raft group {group_id}: peer {target} at {addr}: response without a {field}")]
    Incomplete {
        group_id: GroupId,
        target: NodeId,
        addr: String,
        field: &'static str,
    },
    #[error("raft group {group_id}: encoding a request for peer {target}: {source}")]
    Encode {
        group_id: GroupId,
        target: NodeId,
        source: CodecError,
    },
}

impl PeerClient {
    fn client<E: std::error::Error>(&self) -> Result<RaftClient<Channel>, RpcError<E>> {
        self.channels.client(&self.addr).map_err(|source| {
            RPCError::Unreachable(Unreachable::new(&TransportError::Address {
                group_id: self.group_id,
                target: self.target,
                addr: self.addr.clone(),
                source,
            }))
        })
    }

    fn request<T>(&self, message: T, option: &RPCOption) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(option.hard_ttl().min(self.channels.options.rpc_timeout));
        request
    }

    /// Connection-level failures (peer down, group not hosted there yet, deadline) make
    /// openraft back off; anything else is retried at once.
    fn status_error<E: std::error::Error>(&self, status: Status) -> RpcError<E> {
        let code = status.code();
        let err = TransportError::Status {
            group_id: self.group_id,
            target: self.target,
            addr: self.addr.clone(),
            status,
        };
        match code {
            Code::Unavailable
            | Code::NotFound
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::ResourceExhausted => RPCError::Unreachable(Unreachable::new(&err)),
            _ => RPCError::Network(NetworkError::new(&err)),
        }
    }

    fn decode_error<E: std::error::Error>(&self, source: CodecError) -> RpcError<E> {
        RPCError::Network(NetworkError::new(&TransportError::Decode {
            group_id: self.group_id,
            target: self.target,
            addr: self.addr.clone(),
            source,
        }))
    }

    fn incomplete<E: std::error::Error>(&self, field: &'static str) -> RpcError<E> {
        RPCError::Network(NetworkError::new(&TransportError::Incomplete {
            group_id: self.group_id,
            target: self.target,
            addr: self.addr.clone(),
            field,
        }))
    }

    fn encode_error<E: std::error::Error>(&self, source: CodecError) -> RpcError<E> {
        RPCError::Network(NetworkError::new(&TransportError::Encode {
            group_id: self.group_id,
            target: self.target,
            source,
        }))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        let entries = rpc
            .entries
            .iter()
            .map(codec::entry_to_pb)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.encode_error::<ApiError>(e))?;
        let request = pb::AppendEntriesRequest {
            group_id: self.group_id,
            vote: Some(codec::vote_to_pb(&rpc.vote)),
            prev_log_id: codec::opt_log_id_to_pb(rpc.prev_log_id.as_ref()),
            entries,
            leader_commit: codec::opt_log_id_to_pb(rpc.leader_commit.as_ref()),
        };
        // Leave room for HTTP/2 and gRPC framing below the receiver's limit.
        let limit = self.channels.options.max_message_bytes.saturating_sub(1024);
        if request.encoded_len() > limit && request.entries.len() > 1 {
            let hint = (request.entries.len() / 2) as u64;
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        let response = self
            .client::<ApiError>()?
            .append_entries(self.request(request, &option))
            .await
            .map_err(|s| self.status_error::<ApiError>(s))?
            .into_inner();
        self.channels.contacted(self.group_id, self.target);
        use pb::append_entries_response::Result as R;
        match response.result {
            Some(R::Success(_)) => Ok(AppendEntriesResponse::Success),
            Some(R::PartialSuccess(p)) => Ok(AppendEntriesResponse::PartialSuccess(
                codec::opt_log_id_from_pb(p.matching.as_ref()),
            )),
            Some(R::Conflict(_)) => Ok(AppendEntriesResponse::Conflict),
            Some(R::HigherVote(v)) => {
                Ok(AppendEntriesResponse::HigherVote(codec::vote_from_pb(&v)))
            }
            None => Err(self.incomplete::<ApiError>("result")),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<SnapshotApiError>> {
        let meta_json = codec::encode_snapshot_meta(&rpc.meta)
            .map_err(|e| self.encode_error::<SnapshotApiError>(e))?;
        let request = pb::InstallSnapshotRequest {
            group_id: self.group_id,
            vote: Some(codec::vote_to_pb(&rpc.vote)),
            meta_json,
            offset: rpc.offset,
            data: rpc.data.into(),
            done: rpc.done,
        };
        let response = self
            .client::<SnapshotApiError>()?
            .install_snapshot(self.request(request, &option))
            .await
            .map_err(|s| self.status_error::<SnapshotApiError>(s))?
            .into_inner();
        if !response.error_json.is_empty() {
            let err: InstallSnapshotError =
                codec::from_json(&response.error_json, "an install-snapshot error")
                    .map_err(|e| self.decode_error::<SnapshotApiError>(e))?;
            return Err(RPCError::RemoteError(RemoteError::new(
                self.target,
                RaftError::APIError(err),
            )));
        }
        let vote = response
            .vote
            .as_ref()
            .map(codec::vote_from_pb)
            .ok_or_else(|| self.incomplete::<SnapshotApiError>("vote"))?;
        Ok(InstallSnapshotResponse { vote })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        let request = pb::VoteRequest {
            group_id: self.group_id,
            vote: Some(codec::vote_to_pb(&rpc.vote)),
            last_log_id: codec::opt_log_id_to_pb(rpc.last_log_id.as_ref()),
        };
        let response = self
            .client::<ApiError>()?
            .vote(self.request(request, &option))
            .await
            .map_err(|s| self.status_error::<ApiError>(s))?
            .into_inner();
        let vote = response
            .vote
            .as_ref()
            .map(codec::vote_from_pb)
            .ok_or_else(|| self.incomplete::<ApiError>("vote"))?;
        Ok(VoteResponse {
            vote,
            vote_granted: response.vote_granted,
            last_log_id: codec::opt_log_id_from_pb(response.last_log_id.as_ref()),
        })
    }
}
