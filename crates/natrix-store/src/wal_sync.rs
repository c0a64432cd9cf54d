//! Deferred fsyncs of the write-ahead log for Raft log appends. An append is written to RocksDB
//! at once without a sync (readable right away, so a Raft leader can replicate it while its own
//! copy is still reaching the disk) and its completion is handed to the syncer thread, which
//! fdatasyncs the log once for every completion queued so far (of every group of the node) and
//! only then calls them. RocksDB has one write-ahead log, written in order: a sync covers every
//! write that returned before it began.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Weak};

use rocksdb::DB;

/// Called once the write it follows is durable (`Ok`) or the sync failed (`Err`, the reason).
pub type SyncDone = Box<dyn FnOnce(Result<(), String>) + Send + 'static>;

/// The queue of the node's WAL syncer thread. Clones share the thread, which stops once every
/// clone is gone. The thread does not keep the database open: it holds it only while it syncs,
/// so a dropped store closes (and can be opened again) at once.
#[derive(Clone)]
pub(crate) struct WalSyncer {
    tx: Sender<SyncDone>,
}

impl WalSyncer {
    /// Starts the syncer thread of `db`.
    pub(crate) fn start(db: &Arc<DB>) -> std::io::Result<WalSyncer> {
        let db = Arc::downgrade(db);
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("natrix-wal-sync".to_owned())
            .spawn(move || run(&db, &rx))?;
        Ok(WalSyncer { tx })
    }

    /// Calls `done` once an fsync that began after this call finished. If the thread is gone
    /// (a panic), `done` is called at once with an error.
    pub(crate) fn after_next_sync(&self, done: SyncDone) {
        if let Err(mpsc::SendError(done)) = self.tx.send(done) {
            done(Err("the write-ahead log syncer stopped".to_owned()));
        }
    }
}

/// Bounded per round by what is queued when the round starts; every caller waits for at most
/// two fsyncs (the one running when it queued, and the next).
fn run(db: &Weak<DB>, rx: &Receiver<SyncDone>) {
    let mut waiting: Vec<SyncDone> = Vec::new();
    while let Ok(first) = rx.recv() {
        waiting.push(first);
        waiting.extend(rx.try_iter());
        let result = match db.upgrade() {
            Some(db) => db.flush_wal(true).map_err(|e| {
                let reason = format!("syncing the write-ahead log: {e}");
                tracing::error!(error = %reason, "store: raft log sync failed");
                reason
            }),
            None => Err("the store is closed".to_owned()),
        };
        for done in waiting.drain(..) {
            done(result.clone());
        }
    }
}
