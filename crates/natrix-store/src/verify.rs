//! Checking a store's files before the node serves anything from them.
//!
//! RocksDB checksums every block of every table file and every write-ahead log record, but it
//! reads a table's data blocks only when something asks for them: a file damaged in the middle
//! opens fine and fails, or worse goes unread, long after the node rejoined its cluster. So the
//! store reads every live key of every column family once at open, with checksum verification
//! and without filling the block cache; any damaged block stops the open with the file's name.
//! Table files that were truncated, and write-ahead log records damaged before the log's tail,
//! are already refused by RocksDB's own open (file sizes checked against the manifest;
//! `TolerateCorruptedTailRecords` recovery, see `store::db_options`).

use std::path::Path;
use std::time::{Duration, Instant};

use rocksdb::{DB, ErrorKind, ReadOptions};

use crate::{StoreError, keys};

/// Read-ahead of the verification scan: large sequential reads, the scan touches every block.
const VERIFY_READAHEAD_BYTES: usize = 2 << 20;

/// What the open-time verification read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verified {
    /// Live keys read, over every column family.
    pub(crate) keys: u64,
    pub(crate) took: Duration,
}

/// Reads every live key and value of every column family, verifying block checksums.
pub(crate) fn verify_store(db: &DB, path: &Path) -> Result<Verified, StoreError> {
    let started = Instant::now();
    let mut total = 0u64;
    for cf_name in keys::ALL_CFS {
        let cf = db
            .cf_handle(cf_name)
            .ok_or_else(|| StoreError::MissingColumnFamily {
                path: path.to_path_buf(),
                cf: cf_name,
            })?;
        let mut opts = ReadOptions::default();
        opts.set_verify_checksums(true);
        opts.fill_cache(false);
        opts.set_readahead_size(VERIFY_READAHEAD_BYTES);
        let mut it = db.raw_iterator_cf_opt(cf, opts);
        it.seek_to_first();
        while it.valid() {
            total += 1;
            it.next();
        }
        it.status()
            .map_err(|source| damaged(path, cf_name, source))?;
    }
    Ok(Verified {
        keys: total,
        took: started.elapsed(),
    })
}

/// The error for a failed read during verification: corruption is named as such.
fn damaged(path: &Path, cf: &'static str, source: rocksdb::Error) -> StoreError {
    if source.kind() == ErrorKind::Corruption {
        StoreError::Damaged {
            path: path.to_path_buf(),
            detail: format!("column family {cf}: {source}"),
        }
    } else {
        StoreError::Read {
            what: format!("every key of column family {cf} (verifying checksums)"),
            source,
        }
    }
}

/// The error for a failed `DB::open`: corruption found by RocksDB's own checks is named as such.
pub(crate) fn open_failed(path: &Path, source: rocksdb::Error) -> StoreError {
    if source.kind() == ErrorKind::Corruption {
        StoreError::Damaged {
            path: path.to_path_buf(),
            detail: source.to_string(),
        }
    } else {
        StoreError::Open {
            path: path.to_path_buf(),
            source,
        }
    }
}
