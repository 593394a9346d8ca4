//! Integration tests of rm-paych (one binary: each module is one concern).

mod lane_sum;
mod node;
#[cfg(feature = "rocksdb")]
mod restart;
mod two_process;
mod vectors;
mod wallet_file;

use std::sync::Arc;

use rm_paych::{Ledger, ledger};
use tempfile::TempDir;

/// A ledger in a fresh database: RocksDB in a temporary directory when the crate is built
/// with its `rocksdb` feature, memory otherwise.
pub(crate) fn temp_ledger() -> (TempDir, Arc<Ledger>) {
    let dir = tempfile::tempdir().unwrap();
    #[cfg(feature = "rocksdb")]
    let keyspace = rm_store::Db::open(
        dir.path().join("db"),
        &[ledger::DEFAULT_KEYSPACE],
        &Default::default(),
    )
    .unwrap()
    .keyspace(ledger::DEFAULT_KEYSPACE)
    .unwrap();
    #[cfg(not(feature = "rocksdb"))]
    let keyspace = rm_store::Keyspace::memory(ledger::DEFAULT_KEYSPACE);
    (dir, Arc::new(Ledger::open(keyspace)))
}
