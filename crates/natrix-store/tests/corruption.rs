//! Damaged files: a store whose table file was overwritten in the middle or truncated, or whose
//! write-ahead log was damaged before its tail, must refuse to open with an error that says the
//! store is damaged, never open and serve what is left.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use natrix_store::{Store, StoreError, StoreOptions};

const STREAM_CONFIG: &[u8] = b"{}";
const BATCHES: u64 = 200;
const PER_BATCH: u64 = 10;

/// Small memtables so that the messages reach table (`.sst`) files.
fn small_memtables() -> StoreOptions {
    StoreOptions {
        msgs_write_buffer_bytes: 64 << 10,
        ..StoreOptions::default()
    }
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the store directory is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// Writes `BATCHES` batches of messages; returns the stream id. With `flush_to_tables`, waits
/// until table files exist.
fn fill(dir: &Path, options: StoreOptions, flush_to_tables: bool) -> u64 {
    let store = Store::open(dir, options).expect("a fresh store opens");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let id = runtime.block_on(async {
        let id = store
            .create_stream(Bytes::from_static(STREAM_CONFIG))
            .await
            .expect("create");
        for b in 0..BATCHES {
            let first = b * PER_BATCH + 1;
            store
                .commit(common::append(id, first..=first + PER_BATCH - 1))
                .await
                .expect("commit");
        }
        id
    });
    if flush_to_tables {
        let deadline = Instant::now() + Duration::from_secs(20);
        while files_ending(dir, ".sst").len() < 2 {
            assert!(Instant::now() < deadline, "no table file was written");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(store);
    id
}

/// Overwrites the middle half of `file` with bytes that are not what was there.
fn overwrite_middle(file: &Path) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .expect("open the file to damage");
    let len = f.metadata().expect("metadata").len();
    let (start, end) = (len / 4, len * 3 / 4);
    let mut bytes = vec![0u8; (end - start) as usize];
    f.seek(SeekFrom::Start(start)).expect("seek");
    f.read_exact(&mut bytes).expect("read");
    for b in &mut bytes {
        *b = !*b;
    }
    f.seek(SeekFrom::Start(start)).expect("seek");
    f.write_all(&bytes).expect("write");
    f.sync_all().expect("sync");
}

/// Overwrites the middle of the largest table file of the store in `dir`.
fn damage_the_largest_table(dir: &Path) {
    let tables = files_ending(dir, ".sst");
    let largest = tables
        .iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a table file");
    overwrite_middle(largest);
}

fn assert_refused_as_damaged(dir: &Path, what: &str) {
    match Store::open(dir, StoreOptions::default()) {
        Ok(_) => panic!("a store with {what} opened"),
        Err(err @ StoreError::Damaged { .. }) => {
            let text = err.to_string();
            assert!(text.contains("is damaged"), "unclear error: {text}");
            assert!(text.contains(&dir.display().to_string()), "no path: {text}");
        }
        Err(other) => panic!("a store with {what} failed with another error: {other}"),
    }
}

#[test]
fn a_table_file_damaged_in_the_middle_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), small_memtables(), true);
    damage_the_largest_table(dir.path());
    assert_refused_as_damaged(dir.path(), "a damaged table file");
}

#[test]
fn a_table_file_damaged_in_the_middle_is_reported_by_background_verification() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), small_memtables(), true);
    damage_the_largest_table(dir.path());
    let options = StoreOptions {
        verify_in_background: true,
        ..StoreOptions::default()
    };
    // The open itself succeeds (verification runs meanwhile); the verdict says damaged.
    let store = Store::open(dir.path(), options).expect("open with background verification");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    match runtime.block_on(store.verified()) {
        Err(err @ StoreError::Damaged { .. }) => {
            assert!(
                err.to_string().contains("is damaged"),
                "unclear error: {err}"
            );
        }
        other => panic!("background verification of a damaged table file: {other:?}"),
    }
    drop(store);
    // An intact store passes it.
    let intact = tempfile::tempdir().expect("tempdir");
    fill(intact.path(), small_memtables(), true);
    let store = Store::open(
        intact.path(),
        StoreOptions {
            verify_in_background: true,
            ..StoreOptions::default()
        },
    )
    .expect("open");
    runtime
        .block_on(store.verified())
        .expect("an intact store verifies");
}

#[test]
fn a_truncated_table_file_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), small_memtables(), true);
    let tables = files_ending(dir.path(), ".sst");
    let table = tables.first().expect("a table file");
    let len = std::fs::metadata(table).expect("metadata").len();
    File::options()
        .write(true)
        .open(table)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    assert_refused_as_damaged(dir.path(), "a truncated table file");
}

#[test]
fn a_write_ahead_log_damaged_before_its_tail_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Default memtables: everything stays in the log.
    fill(dir.path(), StoreOptions::default(), false);
    let logs = files_ending(dir.path(), ".log");
    let log = logs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a write-ahead log");
    overwrite_middle(log);
    assert_refused_as_damaged(dir.path(), "a damaged write-ahead log");
}

#[test]
fn an_intact_store_opens_and_serves_every_message_after_verification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = fill(dir.path(), small_memtables(), true);
    let store = Store::open(dir.path(), StoreOptions::default()).expect("an intact store opens");
    for seq in 1..=BATCHES * PER_BATCH {
        let got = store.get_msg(id, seq).expect("read").expect("present");
        assert_eq!(got, common::msg(id, seq));
    }
}
