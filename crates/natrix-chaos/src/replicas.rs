//! Each replica's own copy of a stream, read from its node's RocksDB after the node stopped.
//! Over the protocol every read of a replicated stream (`STREAM.MSG.GET`, `DIRECT.GET`) is
//! answered by the stream leader from its copy, so the followers' copies can only be compared
//! here, with the store code the node itself uses (which also verifies every block's checksum
//! when it opens).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use natrix_store::{Store, StoreOptions};

use natrix_chaos::checker::StoredRecord;

/// The messages of each of `streams` the store in `rocksdb` holds (a stream it holds no replica
/// of is absent from the map).
pub fn read_copies(
    rocksdb: &Path,
    streams: &[&str],
) -> anyhow::Result<BTreeMap<String, Vec<StoredRecord>>> {
    let store = Store::open(rocksdb, StoreOptions::default())
        .with_context(|| format!("opening {}", rocksdb.display()))?;
    let mut out = BTreeMap::new();
    for (id, record) in store.stream_configs().context("reading stream configs")? {
        let record: serde_json::Value = serde_json::from_slice(&record)
            .with_context(|| format!("stream record {id} is not JSON"))?;
        let Some(name) = record["config"]["name"].as_str() else {
            continue;
        };
        if !streams.contains(&name) {
            continue;
        }
        let mut messages = Vec::new();
        for msg in store
            .scan_msgs(id, 1)
            .with_context(|| format!("scanning {name}"))?
        {
            let msg = msg.with_context(|| format!("reading {name}"))?;
            messages.push(StoredRecord {
                seq: msg.seq,
                subject: String::from_utf8_lossy(&msg.subject).into_owned(),
                headers: msg.headers.map(|h| h.to_vec()).unwrap_or_default(),
                payload: msg.payload.to_vec(),
                timestamp_ns: msg.timestamp_ns,
            });
        }
        out.insert(name.to_owned(), messages);
    }
    Ok(out)
}
