//! A natrix node: accepts NATS clients, routes core messages, serves monitoring.

pub mod config;
mod server;

pub use config::{AuthConfig, ClusterConfig, JetStreamConfig, Limits, ServerConfig};
pub use server::{Server, ServerError, VERSION};
