//! openraft's own storage test suite against natrix's RocksDB log storage and state machine
//! adapter (each test case on a fresh store in a temp dir).

mod common;

use common::ListMachine;
use natrix_raft::openraft::testing::{StoreBuilder, Suite};
use natrix_raft::{LogStore, StateMachineStore, StorageError, TypeConfig};
use natrix_store::{Store, StoreOptions};

struct RocksBuilder;

/// Keeps the temp dir and the store open while a test case runs.
type Guard = (tempfile::TempDir, Store);

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<ListMachine>, Guard> for RocksBuilder {
    async fn build(
        &self,
    ) -> Result<(Guard, LogStore, StateMachineStore<ListMachine>), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("open store");
        let log = store.raft_log(42);
        let sm = StateMachineStore::open(log.clone(), ListMachine::default())?;
        Ok(((dir, store), LogStore::new(log), sm))
    }
}

#[test]
fn rocksdb_log_storage_and_state_machine_pass_openraft_storage_suite() {
    Suite::test_all(RocksBuilder).expect("openraft storage suite");
}
