//! The server side of Raft traffic: the `natrix.raft.Raft` gRPC service, one per node, handing
//! each request to the running openraft instance of the group it names ([`RaftRegistry`]).
//! A request for a group this node does not run gets `NOT_FOUND`; a stopped group
//! `UNAVAILABLE` (the sender backs off and retries either way). It serves openraft's RPCs:
//! `AppendStream` (a leader's pipelined replication stream), `Vote`, `InstallSnapshot` (a
//! stream of chunks) and `TransferLeader` (see [`crate::RaftHost::transfer_leadership`]).

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt, future};
use natrix_proto::raft as pb;
use natrix_proto::raft::raft_server::RaftServer;
use openraft::async_runtime::WatchReceiver;
use openraft::raft::{TransferLeaderRequest, VoteRequest};
use parking_lot::{Mutex, RwLock};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::codec::{self, CodecError};
use crate::network::NetworkOptions;
use crate::types::{BufferedSnapshot, GroupId, Raft, Snapshot, SnapshotSink, SnapshotSinkFactory};

/// The groups running on this node, by group id.
#[derive(Clone, Default)]
pub struct RaftRegistry {
    groups: Arc<RwLock<HashMap<GroupId, Raft>>>,
    /// Groups whose machine receives snapshots its own way ([`crate::StateMachine::snapshot_sink`]).
    sinks: Arc<RwLock<HashMap<GroupId, SnapshotSinkFactory>>>,
}

impl RaftRegistry {
    /// Registers `raft` as group `group_id`; returns the handle it replaces, if any.
    pub fn insert(&self, group_id: GroupId, raft: Raft) -> Option<Raft> {
        self.groups.write().insert(group_id, raft)
    }

    pub fn remove(&self, group_id: GroupId) -> Option<Raft> {
        self.sinks.write().remove(&group_id);
        self.groups.write().remove(&group_id)
    }

    /// Sets how group `group_id` receives snapshots (see [`crate::StateMachine::snapshot_sink`]).
    pub fn set_snapshot_sink(&self, group_id: GroupId, sink: SnapshotSinkFactory) {
        self.sinks.write().insert(group_id, sink);
    }

    fn snapshot_sink(&self, group_id: GroupId) -> Option<SnapshotSinkFactory> {
        self.sinks.read().get(&group_id).cloned()
    }

    pub fn get(&self, group_id: GroupId) -> Option<Raft> {
        self.groups.read().get(&group_id).cloned()
    }

    pub fn contains(&self, group_id: GroupId) -> bool {
        self.groups.read().contains_key(&group_id)
    }

    pub fn group_ids(&self) -> Vec<GroupId> {
        let mut ids: Vec<_> = self.groups.read().keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

/// The tonic service of the Raft transport; add it to the node's cluster gRPC server with
/// [`RaftService::into_server`].
#[derive(Clone)]
pub struct RaftService {
    registry: RaftRegistry,
    options: NetworkOptions,
}

impl RaftService {
    pub fn new(registry: RaftRegistry, options: &NetworkOptions) -> RaftService {
        RaftService {
            registry,
            options: options.clone(),
        }
    }

    /// The service wrapped for `tonic::transport::Server::add_service`, with the transport's
    /// message size limits.
    pub fn into_server(self) -> RaftServer<RaftService> {
        let max = self.options.max_message_bytes;
        RaftServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    fn group(&self, group_id: GroupId) -> Result<Raft, Status> {
        self.registry.get(group_id).ok_or_else(|| {
            Status::not_found(format!("raft group {group_id} is not running on this node"))
        })
    }
}

/// The metadata naming the group of an `AppendStream` call.
pub(crate) const GROUP_METADATA: &str = "natrix-raft-group";

fn stream_group(metadata: &MetadataMap) -> Result<GroupId, Status> {
    metadata
        .get(GROUP_METADATA)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| {
            Status::invalid_argument(format!("an append stream without a valid {GROUP_METADATA}"))
        })
}

fn bad_request(group_id: GroupId, e: &CodecError) -> Status {
    Status::invalid_argument(format!("raft group {group_id}: {e}"))
}

fn raft_failed(group_id: GroupId, e: &impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft group {group_id}: {e}"))
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    type AppendStreamStream = BoxStream<'static, Result<pb::AppendStreamResponse, Status>>;

    /// A leader's replication stream for one group: requests go to openraft's pipelined
    /// `stream_append` as they arrive, and its answers go back in order. A request that does not
    /// decode, or names another group, ends the stream with `INVALID_ARGUMENT`.
    async fn append_stream(
        &self,
        request: Request<Streaming<pb::AppendEntriesRequest>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        let group_id = stream_group(request.metadata())?;
        let raft = self.group(group_id)?;
        let failure: Arc<Mutex<Option<Status>>> = Arc::default();
        let input_failure = Arc::clone(&failure);
        // The requests end when the group stops here (its metrics channel closes): an idle
        // leader sends nothing for a long time, and the stream must not outlive the group
        // (it would hold the node's gRPC server open through its shutdown).
        let mut metrics = raft.metrics();
        let stopped = async move { while metrics.changed().await.is_ok() {} };
        let input = request
            .into_inner()
            .take_until(stopped)
            .scan((), move |(), message| {
                let decoded = match message {
                    Ok(req) if req.group_id != group_id => Err(Status::invalid_argument(format!(
                        "raft group {group_id}: a request for group {} in its append stream",
                        req.group_id
                    ))),
                    Ok(req) => {
                        codec::append_request_from_pb(req).map_err(|e| bad_request(group_id, &e))
                    }
                    Err(status) => Err(status),
                };
                future::ready(match decoded {
                    Ok(rpc) => Some(rpc),
                    Err(status) => {
                        *input_failure.lock() = Some(status);
                        None
                    }
                })
            });
        let answers = raft.stream_append(input).map(move |result| match result {
            Ok(result) => Ok(codec::stream_result_to_pb(&result)),
            Err(fatal) => Err(raft_failed(group_id, &fatal)),
        });
        // After the last answer: why the requests stopped, if they did not just end.
        let failed = stream::once(async move { failure.lock().take() })
            .filter_map(|status| future::ready(status.map(Err)));
        Ok(Response::new(Box::pin(answers.chain(failed))))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let req = request.into_inner();
        let group_id = req.group_id;
        let raft = self.group(group_id)?;
        let rpc = VoteRequest {
            vote: codec::required_vote(req.vote.as_ref(), "a vote request")
                .map_err(|e| bad_request(group_id, &e))?,
            last_log_id: codec::opt_log_id_from_pb(req.last_log_id.as_ref()),
            leadership_transfer: req.leadership_transfer,
        };
        let response = raft
            .vote(rpc)
            .await
            .map_err(|e| raft_failed(group_id, &e))?;
        Ok(Response::new(pb::VoteResponse {
            vote: Some(codec::vote_to_pb(&response.vote)),
            vote_granted: response.vote_granted,
            last_log_id: codec::opt_log_id_to_pb(response.last_log_id.as_ref()),
        }))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let mut chunks = request.into_inner();
        let first = chunks
            .try_next()
            .await?
            .ok_or_else(|| Status::invalid_argument("a snapshot stream without chunks"))?;
        let group_id = first.group_id;
        let raft = self.group(group_id)?;
        let vote = codec::required_vote(first.vote.as_ref(), "a snapshot")
            .map_err(|e| bad_request(group_id, &e))?;
        let meta =
            codec::decode_snapshot_meta(&first.meta_json).map_err(|e| bad_request(group_id, &e))?;
        let mut sink: Box<dyn SnapshotSink> = match self.registry.snapshot_sink(group_id) {
            Some(make) => make(),
            None => Box::new(BufferedSnapshot::new(self.options.max_snapshot_bytes)),
        };
        let refused = |e: String| {
            Status::resource_exhausted(format!("raft group {group_id}: receiving a snapshot: {e}"))
        };
        sink.write(first.data).await.map_err(refused)?;
        while let Some(chunk) = chunks.try_next().await? {
            sink.write(chunk.data).await.map_err(refused)?;
        }
        let snapshot = Snapshot {
            meta,
            snapshot: sink.finish().await.map_err(refused)?,
        };
        let response = raft.install_full_snapshot(vote, snapshot).await;
        sink.done(response.is_ok());
        let response = response.map_err(|e| raft_failed(group_id, &e))?;
        Ok(Response::new(pb::SnapshotResponse {
            vote: Some(codec::vote_to_pb(&response.vote)),
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let req = request.into_inner();
        let group_id = req.group_id;
        let raft = self.group(group_id)?;
        let from = codec::required_vote(req.from_leader.as_ref(), "a transfer-leader request")
            .map_err(|e| bad_request(group_id, &e))?;
        let rpc = TransferLeaderRequest::new(
            from,
            req.to_node_id,
            codec::opt_log_id_from_pb(req.last_log_id.as_ref()),
        );
        let error_json = match raft
            .handle_transfer_leader(rpc)
            .await
            .map_err(|e| raft_failed(group_id, &e))?
        {
            Ok(()) => Default::default(),
            Err(refusal) => codec::to_json(&refusal, "a transfer-leader refusal")
                .map_err(|e| Status::internal(format!("raft group {group_id}: {e}")))?,
        };
        Ok(Response::new(pb::TransferLeaderResponse { error_json }))
    }
}
