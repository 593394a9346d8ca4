//! Integration tests of rm-paych (one binary: each module is one concern).

mod lane_sum;
mod node;
mod restart;
mod two_process;
mod vectors;
mod wallet_file;

use std::sync::Arc;

use rm_paych::{Ledger, ledger};
use tempfile::TempDir;

/// A ledger in a fresh temporary database.
pub(crate) fn temp_ledger() -> (TempDir, Arc<Ledger>) {
    let dir = tempfile::tempdir().unwrap();
    let db = ledger::open_db(dir.path().join("db"), &[ledger::DEFAULT_COLUMN_FAMILY]).unwrap();
    let ledger = Ledger::open(db, ledger::DEFAULT_COLUMN_FAMILY).unwrap();
    (dir, Arc::new(ledger))
}
