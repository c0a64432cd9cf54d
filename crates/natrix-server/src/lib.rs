//! A natrix node: accepts NATS clients, routes core messages, serves monitoring.

mod auth;
mod client;
mod cluster;
pub mod config;
mod connection;
mod internal;
mod jetstream;
mod monitor;
mod reload;
mod router;
mod server;
mod stall;
mod state;
pub mod tls;
mod trace;
mod writer;

pub use auth::{AuthConfigError, check_config as check_auth_config};
pub use cluster::{ClusterError, ClusterServices};
pub use config::{
    AccountConfig, AuthConfig, ClusterConfig, GLOBAL_ACCOUNT, JetStreamConfig, Limits,
    PermissionsConfig, ResponsePermissionConfig, ServerConfig, SubjectPermissionConfig, UserConfig,
};
pub use config::{DEFAULT_TLS_TIMEOUT, TlsConfig};
pub use jetstream::JetStreamError;
pub use monitor::log_timestamp;
pub use natrix_stream::AccountLimits;
pub use reload::ReloadError;
pub use server::{LEADERSHIP_HANDOFF, Server, ServerError, VERSION};
