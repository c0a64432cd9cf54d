//! The `natrix.jetstream.JetStreamCluster` gRPC service on the node's cluster endpoint: what
//! other nodes ask this one about clustered JetStream (meta membership while the meta group
//! forms, meta proposals on the meta leader, a stream group's leader).

use natrix_raft::WatchReceiver;
use std::sync::{Arc, Weak};

use natrix_proto::jetstream::jet_stream_cluster_server::{
    JetStreamCluster, JetStreamClusterServer,
};
use natrix_proto::jetstream::{
    AccountUsageRequest, AccountUsageResponse, GroupLeaderRequest, GroupLeaderResponse,
    MetaOutcome, MetaProposal, MetaStatusRequest, MetaStatusResponse, StreamInfoRequest,
    StreamInfoResponse,
};
use tonic::{Request, Response, Status};

use crate::jetstream::JetStream;

/// The service for `js`'s node.
pub(crate) fn service(js: &Arc<JetStream>) -> JetStreamClusterServer<ClusterService> {
    JetStreamClusterServer::new(ClusterService {
        js: Arc::downgrade(js),
    })
}

pub(crate) struct ClusterService {
    js: Weak<JetStream>,
}

impl ClusterService {
    fn js(&self) -> Result<Arc<JetStream>, Status> {
        self.js
            .upgrade()
            .filter(|js| js.cluster().is_some())
            .ok_or_else(|| Status::unavailable("JetStream is stopping"))
    }
}

#[tonic::async_trait]
impl JetStreamCluster for ClusterService {
    async fn stream_info(
        &self,
        request: Request<StreamInfoRequest>,
    ) -> Result<Response<StreamInfoResponse>, Status> {
        let js = self.js()?;
        let stream = request.into_inner().stream;
        let fields_json = js
            .stream(&stream)
            .map(|host| crate::jetstream::stream_api::info_fields(&host, false, None))
            .unwrap_or_default();
        Ok(Response::new(StreamInfoResponse { fields_json }))
    }

    async fn group_leader(
        &self,
        request: Request<GroupLeaderRequest>,
    ) -> Result<Response<GroupLeaderResponse>, Status> {
        let js = self.js()?;
        let group_id = request.into_inner().group_id;
        let Some(raft) = js.cluster().and_then(|c| c.raft.group(group_id)) else {
            return Ok(Response::new(GroupLeaderResponse::default()));
        };
        let metrics = raft.metrics().borrow_watched().clone();
        let members = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        Ok(Response::new(GroupLeaderResponse {
            leader: metrics.current_leader.unwrap_or(0),
            members,
        }))
    }

    async fn propose_meta(
        &self,
        request: Request<MetaProposal>,
    ) -> Result<Response<MetaOutcome>, Status> {
        let js = self.js()?;
        let Some(cluster) = js.cluster() else {
            return Err(Status::unavailable("not clustered"));
        };
        if cluster.meta_leader() != Some(cluster.node_id) {
            return Err(Status::failed_precondition("not the meta leader"));
        }
        let command = request.into_inner().command;
        match cluster
            .meta
            .client_write(natrix_raft::Command(command))
            .await
        {
            Ok(response) => Ok(Response::new(MetaOutcome {
                reply: response.data.0,
                log_index: response.log_id.index,
            })),
            Err(err) => Err(Status::unavailable(err.to_string())),
        }
    }

    async fn meta_status(
        &self,
        _request: Request<MetaStatusRequest>,
    ) -> Result<Response<MetaStatusResponse>, Status> {
        let js = self.js()?;
        let Some(cluster) = js.cluster() else {
            return Err(Status::unavailable("not clustered"));
        };
        let metrics = cluster.meta.metrics().borrow_watched().clone();
        let member = metrics
            .membership_config
            .membership()
            .nodes()
            .next()
            .is_some();
        Ok(Response::new(MetaStatusResponse {
            member,
            leader: metrics.current_leader.unwrap_or(0),
        }))
    }

    async fn account_usage(
        &self,
        _request: Request<AccountUsageRequest>,
    ) -> Result<Response<AccountUsageResponse>, Status> {
        let usage = self.js()?.replica_usage();
        Ok(Response::new(AccountUsageResponse {
            memory: usage.memory,
            storage: usage.storage,
            consumers: usage.consumers,
        }))
    }
}
