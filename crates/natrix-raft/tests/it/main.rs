//! natrix-raft's integration tests, one module per area, built as one test binary (each binary
//! links RocksDB and tonic; one keeps the target small and links once).

mod common;

mod cluster;
mod durable;
mod leadership;
mod storage_suite;
