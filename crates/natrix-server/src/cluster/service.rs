//! The route mesh's gRPC service: accepts a peer's session stream and runs it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use natrix_proto::route::RouteBatch;
use natrix_proto::route::route_server::Route;
use tonic::{Request, Response, Status, Streaming};

use super::Mesh;
use super::link::LinkQueue;
use super::session::{self, Role};
use crate::state::ServerState;

pub(crate) struct RouteService {
    pub state: Arc<ServerState>,
    pub mesh: Arc<Mesh>,
}

type BatchStream = Pin<Box<dyn Stream<Item = Result<RouteBatch, Status>> + Send>>;

#[tonic::async_trait]
impl Route for RouteService {
    type SessionStream = BatchStream;

    async fn session(
        &self,
        request: Request<Streaming<RouteBatch>>,
    ) -> Result<Response<BatchStream>, Status> {
        let remote_addr = request
            .remote_addr()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let inbound = request.into_inner();
        let queue = LinkQueue::new(self.mesh.max_pending);
        let outbound = queue.stream().map(Ok);
        tokio::spawn(session::run(
            self.state.clone(),
            self.mesh.clone(),
            queue,
            inbound,
            remote_addr,
            Role::Acceptor,
        ));
        Ok(Response::new(Box::pin(outbound)))
    }
}
