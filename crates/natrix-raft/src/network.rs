//! The client side of Raft traffic: openraft's [`RaftNetworkFactory`]/[`RaftNetwork`] over the
//! `natrix.raft.Raft` gRPC service. Every group on this node shares one lazily connected tonic
//! [`Channel`] per peer address ([`PeerChannels`]); each request names its group id. Transport
//! failures become openraft's `Unreachable` (back off, then retry) or `NetworkError` (retry).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{self, BoxFuture};
use futures::stream::{self, BoxStream, Stream, StreamExt};
use natrix_proto::raft as pb;
use natrix_proto::raft::raft_client::RaftClient;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::errors::ErrorSource;
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkFactory, RaftNetworkV2};
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::mpsc;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status, Streaming};

use crate::codec::{self, CodecError};
use crate::service::GROUP_METADATA;
use crate::types::{
    GroupId, LogId, NodeId, RaftNode, Snapshot, SnapshotData, StorageError, TypeConfig, Vote,
};

/// Limits of the Raft transport, shared by the client and the server side.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// How long a connection attempt to a peer may take.
    pub connect_timeout: Duration,
    /// The largest encoded request or response; larger append-entries batches are sent as
    /// several requests, snapshots in chunks of at most openraft's `snapshot_max_chunk_size`
    /// (keep it well below this).
    pub max_message_bytes: usize,
    /// The largest snapshot a node accepts from a leader (it is assembled in memory).
    pub max_snapshot_bytes: u64,
    /// The deadline of an RPC when openraft gives none shorter.
    pub rpc_timeout: Duration,
    /// Mutual TLS to peers (`cluster { tls { } }`): channels dial `https://` and check the
    /// peer's certificate against the host of its address; `None` is plain HTTP/2.
    pub tls: Option<ClientTlsConfig>,
}

impl Default for NetworkOptions {
    fn default() -> NetworkOptions {
        NetworkOptions {
            connect_timeout: Duration::from_secs(2),
            max_message_bytes: 64 << 20,
            max_snapshot_bytes: 4 << 30,
            rpc_timeout: Duration::from_secs(10),
            tls: None,
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
        let scheme = if self.options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
            .connect_timeout(self.options.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        if let Some(tls) = &self.options.tls {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
        let channel = endpoint.connect_lazy();
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
#[derive(Clone)]
pub struct PeerClient {
    group_id: GroupId,
    target: NodeId,
    addr: String,
    channels: PeerChannels,
}

/// openraft's error of an RPC.
type RpcError = RPCError<TypeConfig>;

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
    fn client(&self) -> Result<RaftClient<Channel>, Unreachable<TypeConfig>> {
        self.channels.client(&self.addr).map_err(|source| {
            Unreachable::new(&TransportError::Address {
                group_id: self.group_id,
                target: self.target,
                addr: self.addr.clone(),
                source,
            })
        })
    }

    fn request<T>(&self, message: T, option: &RPCOption) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(option.hard_ttl().min(self.channels.options.rpc_timeout));
        request
    }

    fn status_error(&self, status: Status) -> TransportFailure {
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
            | Code::ResourceExhausted => TransportFailure::Unreachable(Unreachable::new(&err)),
            _ => TransportFailure::Network(NetworkError::new(&err)),
        }
    }

    /// The largest encoded message to send, leaving room for HTTP/2 and gRPC framing below the
    /// receiver's limit.
    fn message_limit(&self) -> usize {
        self.channels
            .options
            .max_message_bytes
            .saturating_sub(64 << 10)
    }

    fn decode_error(&self, source: CodecError) -> NetworkError<TypeConfig> {
        NetworkError::new(&TransportError::Decode {
            group_id: self.group_id,
            target: self.target,
            addr: self.addr.clone(),
            source,
        })
    }

    fn incomplete(&self, field: &'static str) -> NetworkError<TypeConfig> {
        NetworkError::new(&TransportError::Incomplete {
            group_id: self.group_id,
            target: self.target,
            addr: self.addr.clone(),
            field,
        })
    }

    fn encode_error(&self, source: CodecError) -> NetworkError<TypeConfig> {
        NetworkError::new(&TransportError::Encode {
            group_id: self.group_id,
            target: self.target,
            source,
        })
    }

    /// The requests of the leader's replication stream, encoded as openraft hands them over;
    /// `parts` learns how many messages each became (or that it could not be encoded, which
    /// ends the requests). Dropping `parts` when the requests end tells the answers so.
    fn outbound<S>(
        &self,
        input: S,
        parts: mpsc::UnboundedSender<Parts>,
    ) -> impl Stream<Item = pb::AppendEntriesRequest> + Send + 'static
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        let group_id = self.group_id;
        let limit = self.message_limit();
        stream::unfold((input, parts), move |(mut input, parts)| async move {
            let rpc = input.next().await?;
            match encode_append(group_id, &rpc, limit) {
                Ok(messages) => {
                    // The answers side is gone only when openraft dropped the stream.
                    parts.send(Parts::Messages(messages.len())).ok()?;
                    Some((stream::iter(messages), (input, parts)))
                }
                Err(e) => {
                    let _ = parts.send(Parts::Unencodable(e));
                    None
                }
            }
        })
        .flatten()
    }

    /// The receiving half of this peer's append stream.
    fn answers(
        &self,
        inbound: Streaming<pb::AppendStreamResponse>,
        parts: mpsc::UnboundedReceiver<Parts>,
        wait: Duration,
    ) -> Answers {
        Answers {
            peer: self.clone(),
            inbound,
            parts,
            wait,
        }
    }
}

/// How many messages one openraft request became on the wire, in request order.
enum Parts {
    Messages(usize),
    /// The request could not be encoded (it was not sent; the stream ends).
    Unencodable(CodecError),
}

/// The receiving half of an append stream: one answer per openraft request, merged from the
/// answers to the messages it was split into.
struct Answers {
    peer: PeerClient,
    inbound: Streaming<pb::AppendStreamResponse>,
    parts: mpsc::UnboundedReceiver<Parts>,
    /// How long each answer may take once its request is sent.
    wait: Duration,
}

impl Answers {
    fn into_stream(self) -> BoxStream<'static, Result<StreamAppendResult<TypeConfig>, RpcError>> {
        Box::pin(stream::unfold(Some(self), |answers| async move {
            let mut answers = answers?;
            let answer = answers.next().await?;
            // An error or a refusal ends the stream (the follower ends its side too).
            let more = matches!(answer, Ok(Ok(_)));
            Some((answer, more.then_some(answers)))
        }))
    }

    /// The answer to the next request sent; `None` once the requests ended and every answer
    /// came.
    async fn next(&mut self) -> Option<Result<StreamAppendResult<TypeConfig>, RpcError>> {
        let count = match self.parts.recv().await? {
            Parts::Messages(count) => count,
            Parts::Unencodable(e) => {
                return Some(Err(RpcError::Network(self.peer.encode_error(e))));
            }
        };
        let mut matched = None;
        for _ in 0..count {
            let message = match tokio::time::timeout(self.wait, self.inbound.message()).await {
                Ok(Ok(Some(message))) => message,
                Ok(Ok(None)) => return Some(Err(self.peer.incomplete("answer").into())),
                Ok(Err(status)) => return Some(Err(self.peer.status_error(status).into())),
                Err(_) => {
                    let status = Status::deadline_exceeded(format!(
                        "no append answer within {:?}",
                        self.wait
                    ));
                    return Some(Err(self.peer.status_error(status).into()));
                }
            };
            self.peer
                .channels
                .contacted(self.peer.group_id, self.peer.target);
            match codec::stream_result_from_pb(&message) {
                Ok(Ok(log_id)) => matched = Some(log_id),
                Ok(Err(refusal)) => return Some(Ok(Err(refusal))),
                Err(e) => return Some(Err(RpcError::Network(self.peer.decode_error(e)))),
            }
        }
        matched.map(|log_id| Ok(Ok(log_id)))
    }
}

/// One openraft append request as the messages of an append stream: entries that do not fit
/// in one message go as several, each continuing where the previous one ended (the follower
/// answers each as a whole append would).
fn encode_append(
    group_id: GroupId,
    rpc: &AppendEntriesRequest<TypeConfig>,
    limit: usize,
) -> Result<Vec<pb::AppendEntriesRequest>, CodecError> {
    let log_ids: Vec<LogId> = rpc.entries.iter().map(|e| e.log_id).collect();
    let entries = rpc
        .entries
        .iter()
        .map(codec::entry_to_pb)
        .collect::<Result<Vec<_>, _>>()?;
    let runs = split_by_size(entries, limit);
    let last_run = runs.len() - 1;
    let vote = codec::vote_to_pb(&rpc.vote);
    let mut prev = rpc.prev_log_id;
    let mut sent = 0usize;
    let mut messages = Vec::with_capacity(runs.len());
    for (i, run) in runs.into_iter().enumerate() {
        let n = run.len();
        let run_last = if n == 0 {
            prev
        } else {
            Some(log_ids[sent + n - 1])
        };
        // An earlier run commits no further than its own last entry.
        let commit = if i == last_run {
            rpc.leader_commit
        } else {
            rpc.leader_commit.min(run_last)
        };
        messages.push(pb::AppendEntriesRequest {
            group_id,
            vote: Some(vote),
            prev_log_id: codec::opt_log_id_to_pb(prev.as_ref()),
            entries: run,
            leader_commit: codec::opt_log_id_to_pb(commit.as_ref()),
        });
        sent += n;
        prev = run_last;
    }
    Ok(messages)
}

/// A transport failure, before it becomes the error type of the RPC that met it.
enum TransportFailure {
    Unreachable(Unreachable<TypeConfig>),
    Network(NetworkError<TypeConfig>),
}

impl From<TransportFailure> for RpcError {
    fn from(failure: TransportFailure) -> RpcError {
        match failure {
            TransportFailure::Unreachable(e) => RPCError::Unreachable(e),
            TransportFailure::Network(e) => RPCError::Network(e),
        }
    }
}

impl From<TransportFailure> for StreamingError<TypeConfig> {
    fn from(failure: TransportFailure) -> StreamingError<TypeConfig> {
        match failure {
            TransportFailure::Unreachable(e) => StreamingError::Unreachable(e),
            TransportFailure::Network(e) => StreamingError::Network(e),
        }
    }
}

/// Splits encoded entries into runs whose encoded size stays under `limit` (a run holds at
/// least one entry, however large).
fn split_by_size(entries: Vec<pb::Entry>, limit: usize) -> Vec<Vec<pb::Entry>> {
    let mut runs: Vec<Vec<pb::Entry>> = Vec::new();
    let mut current = Vec::new();
    let mut size = 0usize;
    for entry in entries {
        // The entry's own bytes plus its field tag and length prefix.
        let len = entry.encoded_len() + 10;
        if !current.is_empty() && size.saturating_add(len) > limit {
            runs.push(std::mem::take(&mut current));
            size = 0;
        }
        size = size.saturating_add(len);
        current.push(entry);
    }
    if !current.is_empty() || runs.is_empty() {
        runs.push(current);
    }
    runs
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    /// One request as a stream of one (openraft itself always streams).
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RpcError> {
        let answer = self
            .stream_append(stream::once(future::ready(rpc)), option)
            .await?
            .next()
            .await;
        match answer {
            Some(answer) => answer.map(AppendEntriesResponse::from),
            None => Err(self.incomplete("answer").into()),
        }
    }

    /// Opens the group's append stream to this peer: one gRPC call that carries openraft's
    /// requests as they come (pipelined, without waiting for answers) and yields the answers
    /// in order. Each answer may take `option`'s deadline once its request is sent; the call
    /// itself has no deadline.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RpcError>>, RpcError>,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            // openraft sleeps out its replication backoff while it produces a request, so the
            // first one is taken before connecting: a connect that fails takes no request, and a
            // peer that is down would otherwise be retried in a tight loop.
            let mut input = input;
            let Some(first) = input.next().await else {
                return Ok(stream::empty().boxed());
            };
            let input = stream::once(future::ready(first)).chain(input);
            let wait = option.hard_ttl().min(self.channels.options.rpc_timeout);
            let mut client = self.client()?;
            // Bounded by the connection's flow control: no more requests are taken than the
            // HTTP/2 window lets through until the follower reads them.
            let (parts_tx, parts_rx) = mpsc::unbounded_channel();
            let mut request = tonic::Request::new(self.outbound(input, parts_tx));
            request
                .metadata_mut()
                .insert(GROUP_METADATA, MetadataValue::from(self.group_id));
            let inbound = match tokio::time::timeout(wait, client.append_stream(request)).await {
                Ok(Ok(response)) => response.into_inner(),
                Ok(Err(status)) => return Err(self.status_error(status).into()),
                Err(_) => {
                    let status = Status::deadline_exceeded(format!(
                        "append stream not opened within {wait:?}"
                    ));
                    return Err(self.status_error(status).into());
                }
            };
            Ok(self.answers(inbound, parts_rx, wait).into_stream())
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RpcError> {
        let request = pb::VoteRequest {
            group_id: self.group_id,
            vote: Some(codec::vote_to_pb(&rpc.vote)),
            last_log_id: codec::opt_log_id_to_pb(rpc.last_log_id.as_ref()),
            leadership_transfer: rpc.leadership_transfer,
        };
        let response = self
            .client()?
            .vote(self.request(request, &option))
            .await
            .map_err(|s| RpcError::from(self.status_error(s)))?
            .into_inner();
        let vote = response
            .vote
            .as_ref()
            .map(codec::vote_from_pb)
            .ok_or_else(|| self.incomplete("vote"))?;
        Ok(VoteResponse {
            vote,
            vote_granted: response.vote_granted,
            last_log_id: codec::opt_log_id_from_pb(response.last_log_id.as_ref()),
        })
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RpcError> {
        let request = pb::TransferLeaderRequest {
            group_id: self.group_id,
            from_leader: Some(codec::vote_to_pb(req.from_leader())),
            to_node_id: *req.to_node_id(),
            last_log_id: codec::opt_log_id_to_pb(req.last_log_id()),
        };
        let response = self
            .client()?
            .transfer_leader(self.request(request, &option))
            .await
            .map_err(|s| RpcError::from(self.status_error(s)))?
            .into_inner();
        if response.error_json.is_empty() {
            return Ok(Ok(()));
        }
        match codec::from_json(&response.error_json, "a transfer-leader refusal") {
            Ok(refusal) => Ok(Err(refusal)),
            Err(e) => Err(RpcError::Network(self.decode_error(e))),
        }
    }

    /// Streams the snapshot in chunks of at most openraft's `snapshot_max_chunk_size`, each
    /// piece as the state machine reads it (so at most a few pieces of it are in memory here, and
    /// little is read at all when the peer cannot be reached); gives up when openraft closes
    /// the replication (`cancel`), and with a storage error when the state machine could not
    /// read the rest: the call is then cancelled, so the follower installs nothing.
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut cancel = std::pin::pin!(cancel);
        let meta_json = codec::encode_snapshot_meta(&snapshot.meta)
            .map_err(|e| StreamingError::Network(self.encode_error(e)))?;
        let signature = snapshot.meta.signature();
        let limit = self.message_limit();
        let chunk = option
            .snapshot_chunk_size()
            .unwrap_or(limit)
            .clamp(1, limit.max(1));
        let size_hint = snapshot.snapshot.size_hint();
        let (chunks, mut unreadable) = snapshot_chunks(
            pb::SnapshotChunk {
                group_id: self.group_id,
                vote: Some(codec::vote_to_pb(&vote)),
                meta_json,
                data: Bytes::new(),
            },
            snapshot.snapshot.into_pieces(),
            chunk,
        );
        let mut client = self.client().map_err(StreamingError::Unreachable)?;
        // One call carries the whole snapshot and returns once the follower installed it, so its
        // deadline grows with the size. openraft's `install_snapshot_timeout` (its deadline for
        // one chunk, 200 ms by default) cut a 100+ MB transfer short every time: the follower
        // installed it anyway and the leader read and sent a newer one, again and again.
        let mut request = tonic::Request::new(chunks);
        request.set_timeout(snapshot_deadline(
            option.hard_ttl(),
            self.channels.options.rpc_timeout,
            size_hint,
        ));
        let call = client.install_snapshot(request);
        let response = tokio::select! {
            closed = &mut cancel => return Err(StreamingError::Closed(closed)),
            Ok(e) = &mut unreadable => return Err(StreamingError::StorageError(
                StorageError::read_snapshot(
                    Some(signature),
                    ErrorSource::from_string(format!(
                        "raft group {}: reading the snapshot for peer {}: {e}",
                        self.group_id, self.target
                    )),
                ),
            )),
            response = call => response.map_err(|s| StreamingError::from(self.status_error(s)))?,
        };
        let response = response.into_inner();
        let vote = response
            .vote
            .as_ref()
            .map(codec::vote_from_pb)
            .ok_or_else(|| self.incomplete("vote"))?;
        Ok(SnapshotResponse { vote })
    }
}

/// The chunks of a snapshot transfer: `first` (the group, vote and metadata), then the pieces
/// cut to at most `chunk` bytes each. A piece that could not be read is reported on the
/// returned receiver and the chunks then never end: ending them would tell the follower it
/// has the whole snapshot, so the sender cancels the call instead.
fn snapshot_chunks(
    first: pb::SnapshotChunk,
    pieces: BoxStream<'static, Result<Bytes, String>>,
    chunk: usize,
) -> (
    impl Stream<Item = pb::SnapshotChunk> + Send + 'static,
    tokio::sync::oneshot::Receiver<String>,
) {
    let (unreadable_tx, unreadable_rx) = tokio::sync::oneshot::channel();
    let mut unreadable_tx = Some(unreadable_tx);
    let data = pieces.flat_map(move |piece| match piece {
        Ok(piece) => {
            let cuts = (0..piece.len()).step_by(chunk.max(1));
            stream::iter(cuts.map(move |at| pb::SnapshotChunk {
                data: piece.slice(at..piece.len().min(at.saturating_add(chunk))),
                ..Default::default()
            }))
            .left_stream()
        }
        Err(e) => {
            if let Some(tx) = unreadable_tx.take() {
                let _ = tx.send(e);
            }
            stream::pending().right_stream()
        }
    });
    (
        stream::once(future::ready(first)).chain(data),
        unreadable_rx,
    )
}

/// The deadline of a whole-snapshot transfer of `bytes`: the longer of openraft's and the
/// transport's RPC deadline, plus one second per 8 MiB (sending, then installing on the follower).
fn snapshot_deadline(openraft_ttl: Duration, rpc_timeout: Duration, bytes: u64) -> Duration {
    let per_size = Duration::from_secs(bytes / (8 << 20));
    openraft_ttl.max(rpc_timeout).saturating_add(per_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_transfer_gets_time_for_its_size() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        // openraft's 200 ms chunk deadline never shortens the transport's own deadline.
        assert_eq!(snapshot_deadline(ms(200), s(10), 1 << 20), s(10));
        assert_eq!(snapshot_deadline(s(30), s(10), 0), s(30));
        // 160 MiB: 20 s more.
        assert_eq!(snapshot_deadline(ms(200), s(10), 160 << 20), s(30));
    }

    fn first_chunk() -> pb::SnapshotChunk {
        pb::SnapshotChunk {
            group_id: 7,
            meta_json: Bytes::from_static(b"{}"),
            ..Default::default()
        }
    }

    #[test]
    fn a_snapshot_is_sent_in_chunks_no_larger_than_asked_in_its_order() {
        let pieces = stream::iter(
            [&b"abcde"[..], b"", b"fgh"]
                .map(|p| Ok(Bytes::from_static(p)))
                .to_vec(),
        )
        .boxed();
        let (chunks, mut unreadable) = snapshot_chunks(first_chunk(), pieces, 2);
        let chunks: Vec<pb::SnapshotChunk> = futures::executor::block_on(chunks.collect());
        assert_eq!(chunks[0].group_id, 7);
        assert!(chunks[0].data.is_empty());
        let data: Vec<&[u8]> = chunks[1..].iter().map(|c| &c.data[..]).collect();
        assert_eq!(data, [&b"ab"[..], b"cd", b"e", b"fg", b"h"]);
        assert!(
            chunks[1..]
                .iter()
                .all(|c| c.group_id == 0 && c.meta_json.is_empty())
        );
        // Everything was read: nothing is reported.
        assert!(unreadable.try_recv().is_err());
    }

    #[test]
    fn a_snapshot_that_could_not_be_read_never_looks_complete() {
        let pieces =
            stream::iter([Ok(Bytes::from_static(b"abc")), Err("disk on fire".into())]).boxed();
        let (chunks, mut unreadable) = snapshot_chunks(first_chunk(), pieces, 16);
        let mut chunks = std::pin::pin!(chunks);
        let mut next = || futures::executor::block_on(future::poll_immediate(chunks.next()));
        assert!(matches!(next(), Some(Some(c)) if c.group_id == 7));
        assert!(matches!(next(), Some(Some(c)) if c.data == Bytes::from_static(b"abc")));
        // The failed read: the chunks neither go on nor end, and the error is reported.
        assert!(next().is_none());
        assert!(next().is_none());
        assert_eq!(unreadable.try_recv().ok().as_deref(), Some("disk on fire"));
    }

    fn entry(len: usize) -> pb::Entry {
        pb::Entry {
            log_id: Some(pb::LogId {
                term: 1,
                node_id: 1,
                index: 1,
            }),
            payload: Some(pb::entry::Payload::Normal(vec![0u8; len].into())),
        }
    }

    #[test]
    fn append_batches_split_into_runs_under_the_message_limit() {
        let sizes: Vec<usize> = split_by_size(vec![entry(400), entry(400), entry(400)], 1000)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![2, 1]);
        // An entry larger than the limit still goes, alone.
        let sizes: Vec<usize> = split_by_size(vec![entry(10), entry(5000), entry(10)], 1000)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![1, 1, 1]);
        // A heartbeat is one request without entries.
        assert_eq!(split_by_size(Vec::new(), 1000).len(), 1);
    }
}
