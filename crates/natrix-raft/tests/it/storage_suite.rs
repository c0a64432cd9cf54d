//! openraft's own storage test suite against natrix's RocksDB log storage and state machine
//! adapter (each test case on a fresh store in a temp dir), with an in-memory machine and with a
//! durable one that persists openraft's applied state in the store.

use crate::common;

use std::sync::Arc;

use common::{CounterMachine, ListMachine};
use natrix_raft::openraft::testing::{StoreBuilder, Suite};
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

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<ListMachine>, Guard> for InMemoryMachine {
    async fn build(
        &self,
    ) -> Result<(Guard, LogStore, StateMachineStore<ListMachine>), StorageError> {
        let (dir, store) = open_store();
        let log = store.raft_log(42);
        let sm = StateMachineStore::open(log.clone(), ListMachine::default()).await?;
        Ok(((dir, store), LogStore::new(log), sm))
    }
}

struct DurableMachine;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<CounterMachine>, Guard>
    for DurableMachine
{
    async fn build(
        &self,
    ) -> Result<(Guard, LogStore, StateMachineStore<CounterMachine>), StorageError> {
        let (dir, store) = open_store();
        let log = store.raft_log(42);
        let machine = CounterMachine::open(Arc::clone(&store), 42).expect("open the counter");
        let sm = StateMachineStore::open(log.clone(), machine).await?;
        Ok(((dir, store), LogStore::new(log), sm))
    }
}

#[test]
fn rocksdb_log_storage_and_state_machine_pass_openraft_storage_suite() {
    Suite::test_all(InMemoryMachine).expect("openraft storage suite");
}

#[test]
fn a_durable_state_machine_passes_openraft_storage_suite() {
    Suite::test_all(DurableMachine).expect("openraft storage suite, durable machine");
}
