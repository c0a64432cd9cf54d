//! A natrix node: accepts NATS clients, routes core messages, serves monitoring.

pub mod config;

pub use config::{AuthConfig, ClusterConfig, JetStreamConfig, Limits, ServerConfig};
