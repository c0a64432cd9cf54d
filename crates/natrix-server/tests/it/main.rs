//! natrix-server's integration tests, one module per area, built as ONE test binary: each test
//! binary links the whole server and RocksDB (about 90 MB with line tables), so one per file
//! made the debug target several GB and the build link some twenty times.

mod js_cluster;
mod support;

mod auth;
mod backpressure;
mod cluster_consumers;
mod cluster_core;
mod cluster_jetstream;
mod cluster_membership;
mod cluster_operations;
mod headers;
mod hostile;
mod jetstream_accounts;
mod jetstream_api;
mod jetstream_consumers;
mod jetstream_kv;
mod jetstream_monitoring;
mod jetstream_resources;
mod jetstream_sources;
mod jetstream_streams;
mod lame_duck;
mod limits;
mod monitoring;
mod monitoring_security;
mod oracle;
mod permissions;
mod protocol;
mod protocol_errors;
mod pubsub;
mod queue_groups;
mod reload;
mod request_reply;
mod tls;
