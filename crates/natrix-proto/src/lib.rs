//! The messages and gRPC services natrix nodes exchange, generated at build time from
//! `proto/*.proto`. One module per proto package.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Liveness and identity of a peer: the first call a node makes on a new connection.
pub mod node {
    tonic::include_proto!("natrix.node");
}

/// The core-message route mesh: subject interest and messages between nodes.
pub mod route {
    tonic::include_proto!("natrix.route");
}

/// Raft traffic of every group a node hosts, multiplexed by group id.
pub mod raft {
    tonic::include_proto!("natrix.raft");
}

/// Clustered JetStream: stream log entries and the calls between nodes about streams.
pub mod jetstream {
    tonic::include_proto!("natrix.jetstream");
}
