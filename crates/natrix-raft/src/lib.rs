//! Raft for natrix (issue 4): openraft's type configuration, log and vote storage in the node's
//! RocksDB, and the network that carries every group's traffic over the one gRPC endpoint.
