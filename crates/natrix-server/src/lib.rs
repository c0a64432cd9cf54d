//! A natrix node: accepts NATS clients, routes core messages, serves monitoring.

mod auth;
mod client;
mod cluster;
pub mod config;
mod connection;
mod internal;
mod jetstream;
mod monitor;
mod router;
mod server;
mod stall;
mod state;
mod writer;

pub use cluster::{ClusterError, ClusterServices};
pub use config::{AuthConfig, ClusterConfig, JetStreamConfig, Limits, ServerConfig};
pub use jetstream::JetStreamError;
pub use monitor::log_timestamp;
pub use server::{LEADERSHIP_HANDOFF, Server, ServerError, VERSION};
