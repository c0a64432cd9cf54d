//! How a store is opened: durability policy, queue bound and RocksDB sizing.

use std::time::Duration;

/// When a commit is acknowledged relative to reaching the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// Every commit group is written with `sync = true` (one fdatasync of the write-ahead log)
    /// before any of its commits is acknowledged. An acknowledged commit survives power loss.
    #[default]
    Always,
    /// Commits are acknowledged once written to the write-ahead log in the OS page cache; the log
    /// is fsynced every interval. A process crash loses nothing, but a power cut or kernel crash
    /// loses up to one interval of acknowledged commits (nats-server's default behaviour, with
    /// its 2-minute interval).
    Interval(Duration),
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub sync: SyncPolicy,
    /// Commits queued and not yet acknowledged, at most. Callers beyond it wait (backpressure).
    pub queue_capacity: usize,
    /// Memtable size of the `msgs` and `raft_log` column families.
    pub msgs_write_buffer_bytes: usize,
    /// Memtable size of the small column families (meta, consumers, ...).
    pub small_write_buffer_bytes: usize,
    /// Write-ahead log size that forces memtables holding old log records to flush, so that a
    /// rarely written column family cannot keep every log file alive.
    pub max_total_wal_bytes: u64,
    /// The block cache shared by all column families.
    pub block_cache_bytes: usize,
    /// Check every block's checksum on a thread of its own instead of inside `Store::open`,
    /// so that the caller can read (rebuild its indexes) meanwhile; it must then await
    /// `Store::verified` before it serves anything it read.
    pub verify_in_background: bool,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            sync: SyncPolicy::Always,
            queue_capacity: 4096,
            msgs_write_buffer_bytes: 64 << 20,
            small_write_buffer_bytes: 4 << 20,
            max_total_wal_bytes: 256 << 20,
            block_cache_bytes: 64 << 20,
            verify_in_background: false,
        }
    }
}
