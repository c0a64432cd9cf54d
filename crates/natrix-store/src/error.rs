//! The errors of this crate, each with the context needed to act on it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("creating the store directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening the RocksDB store at {path}: {source}")]
    Open {
        path: PathBuf,
        source: rocksdb::Error,
    },
    /// A file of the store failed its checksums or does not match the store's manifest: the node
    /// must not serve from it (see `verify`).
    #[error(
        "the store at {path} is damaged ({detail}); refusing to open it rather than serve wrong \
         data: restore the directory from a backup, or move it aside so that the node starts \
         empty and its cluster peers copy the replicas to it again"
    )]
    Damaged { path: PathBuf, detail: String },
    #[error("opening the RocksDB store at {path}: column family {cf} is missing after open")]
    MissingColumnFamily { path: PathBuf, cf: &'static str },
    #[error("starting the committer thread: {0}")]
    SpawnCommitter(std::io::Error),
    #[error("starting the write-ahead log syncer thread: {0}")]
    SpawnWalSyncer(std::io::Error),
    #[error("starting the checksum verification thread: {0}")]
    SpawnVerifier(std::io::Error),
    /// The background checksum verification ended without a result (its thread panicked).
    #[error("the checksum verification of the store at {0} did not finish")]
    VerificationLost(PathBuf),
    /// The write of a commit group failed; none of the group's commits is acknowledged.
    #[error("writing a group of {requests} commits: {source}")]
    Write {
        requests: usize,
        source: rocksdb::Error,
    },
    /// A direct (not group-committed) write of one record, e.g. the node id.
    #[error("writing {what}: {source}")]
    WriteMeta {
        what: &'static str,
        source: rocksdb::Error,
    },
    #[error("syncing the write-ahead log to disk: {source}")]
    SyncWal { source: rocksdb::Error },
    /// After a failed write or fsync the store refuses every later write: what reached the disk
    /// is unknown until RocksDB recovers from its files, i.e. until the node restarts.
    #[error(
        "the store refuses writes since an earlier failure ({reason}); restart the node to recover from disk"
    )]
    Poisoned { reason: String },
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        source: rocksdb::Error,
    },
    #[error("corrupt record in column family {cf} at key {key}: {reason}")]
    Corrupt {
        cf: &'static str,
        key: String,
        reason: String,
    },
    #[error("reading RocksDB property {property} of column family {cf}: {source}")]
    Property {
        cf: &'static str,
        property: &'static str,
        source: rocksdb::Error,
    },
    #[error("measuring disk use of {path}: {source}")]
    DiskUsage {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stream ids are exhausted")]
    StreamIdsExhausted,
    /// The store was closed (dropped) before the request was written.
    #[error("the store is closed")]
    Closed,
}
