//! openraft's own storage test suite against natrix's RocksDB log storage and state machine
//! adapter (each test case on a fresh store in a temp dir), with an in-memory machine and with a
//! durable one that persists openraft's applied state in the store.

use crate::common;

use std::sync::Arc;

use common::{CounterMachine, ListMachine};
use natrix_raft::openraft::error::ErrorSource;
use natrix_raft::openraft::impls::BoxedErrorSource;
use natrix_raft::openraft::testing::log::{StoreBuilder, Suite};
use natrix_raft::{LogStore, StateMachineStore, StorageError, TypeConfig};
use natrix_store::{Store, StoreOptions};

/// Keeps the temp dir and the store open while a test case runs.
type Guard = (tempfile::TempDir, Arc<Store>);

fn open_store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open store");
    (dir, Arc::new(store))
}

struct InMemoryMachine;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, Guard> for InMemoryMachine {
    async fn build(&self) -> Result<(Guard, LogStore, StateMachineStore), StorageError> {
        let (dir, store) = open_store();
        let log = store.raft_log(42);
        let sm = StateMachineStore::open(log.clone(), ListMachine::default())
            .await
            .map_err(|e| StorageError::read_state_machine(BoxedErrorSource::from_error(&e)))?;
        Ok(((dir, store), LogStore::new(log), sm))
    }
}

struct DurableMachine;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, Guard> for DurableMachine {
    async fn build(&self) -> Result<(Guard, LogStore, StateMachineStore), StorageError> {
        let (dir, store) = open_store();
        let log = store.raft_log(42);
        let machine = CounterMachine::open(Arc::clone(&store), 42).expect("open the counter");
        let sm = StateMachineStore::open(log.clone(), machine)
            .await
            .map_err(|e| StorageError::read_state_machine(BoxedErrorSource::from_error(&e)))?;
        Ok(((dir, store), LogStore::new(log), sm))
    }
}

#[tokio::test]
async fn rocksdb_log_storage_and_state_machine_pass_openraft_storage_suite() {
    Suite::test_all(InMemoryMachine)
        .await
        .expect("openraft storage suite");
}

#[tokio::test]
async fn a_durable_state_machine_passes_openraft_storage_suite() {
    Suite::test_all(DurableMachine)
        .await
        .expect("openraft storage suite, durable machine");
}
