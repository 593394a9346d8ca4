//! Where groups and counters keep their bytes: a key-value [`Store`] per column family.
//!
//! [`RocksStore`] is the real one: one column family of a shared RocksDB handle. [`MemStore`]
//! keeps a map in memory for unit tests (clones share the map, so "reopening" a group on a
//! clone sees what was written).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rocksdb::{ColumnFamily, DB, IteratorMode, Options, WriteBatch, WriteOptions};

use crate::error::StoreError;

/// A set of writes applied atomically by [`Store::write`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds a put of `value` at `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    /// Adds a delete of `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    /// Appends the operations of `other` (applied after this batch's).
    pub fn append(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there are no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations in order: `(key, Some(value))` for a put, `(key, None)` for a delete.
    pub fn ops(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.ops.iter().map(|(k, v)| (k.as_slice(), v.as_deref()))
    }
}

/// A key-value keyspace (one column family). All methods are blocking and short.
pub trait Store: Send + Sync + 'static {
    /// The value at `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Applies `batch` atomically; with `sync`, the write is on stable storage (fsync) before
    /// this returns. Without it, the write survives a crash of the process, not of the machine.
    fn write(&self, batch: &Batch, sync: bool) -> Result<(), StoreError>;

    /// Calls `visit` for every entry in key order until it returns `false`.
    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError>;
}

impl<T: Store + ?Sized> Store for Arc<T> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(key)
    }

    fn write(&self, batch: &Batch, sync: bool) -> Result<(), StoreError> {
        (**self).write(batch, sync)
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        (**self).scan(visit)
    }
}

/// An in-memory store for tests. Clones share the same map.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    map: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        MemStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().get(key).cloned())
    }

    fn write(&self, batch: &Batch, _sync: bool) -> Result<(), StoreError> {
        let mut map = self.lock();
        for (key, value) in batch.ops() {
            match value {
                Some(value) => map.insert(key.to_vec(), value.to_vec()),
                None => map.remove(key),
            };
        }
        Ok(())
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        // Copy first so `visit` may use the store.
        let entries: Vec<(Vec<u8>, Vec<u8>)> = self
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, value) in &entries {
            if !visit(key, value) {
                break;
            }
        }
        Ok(())
    }
}

/// One column family of a shared RocksDB database.
///
/// Several stores (and other crates' users of the same database) share one `Arc<DB>`; each
/// owns its column family. The column family must exist: open the database with
/// [`open_db`] (or create it yourself).
#[derive(Clone)]
pub struct RocksStore {
    db: Arc<DB>,
    cf: String,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.db.path())
            .field("cf", &self.cf)
            .finish()
    }
}

impl RocksStore {
    /// The store for column family `cf` of `db`; fails if the column family does not exist.
    pub fn new(db: Arc<DB>, cf: impl Into<String>) -> Result<Self, StoreError> {
        let store = RocksStore { db, cf: cf.into() };
        store.handle()?;
        Ok(store)
    }

    /// The shared database.
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    /// The column family's name.
    pub fn column_family(&self) -> &str {
        &self.cf
    }

    fn handle(&self) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(&self.cf)
            .ok_or_else(|| StoreError::MissingColumnFamily(self.cf.clone()))
    }
}

impl Store for RocksStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.handle()?, key)?)
    }

    fn write(&self, batch: &Batch, sync: bool) -> Result<(), StoreError> {
        let cf = self.handle()?;
        let mut wb = WriteBatch::default();
        for (key, value) in batch.ops() {
            match value {
                Some(value) => wb.put_cf(cf, key, value),
                None => wb.delete_cf(cf, key),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        Ok(self.db.write_opt(wb, &opts)?)
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        for item in self.db.iterator_cf(self.handle()?, IteratorMode::Start) {
            let (key, value) = item?;
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }
}

/// The most memory all memtables of a database opened by [`open_db`] take together.
pub const MEMTABLE_BUDGET: usize = 16 << 20;

/// Opens (creating if needed) a RocksDB database at `path` with at least the column families
/// `cfs`; column families already in the database are opened too.
///
/// The node opens its one database this way with every crate's column family; tests open a
/// temporary one.
///
/// Tuned for a node that stores blocks next to small records: values of 16 KiB and more
/// (blocks) live in blob files, written once when the memtable is flushed and never
/// rewritten by compaction; all memtables together stay under [`MEMTABLE_BUDGET`], so
/// memory does not grow with what is written.
pub fn open_db(path: impl AsRef<Path>, cfs: &[&str]) -> Result<Arc<DB>, StoreError> {
    let path = path.as_ref();
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_enable_blob_files(true);
    opts.set_min_blob_size(16 * 1024);
    opts.set_enable_pipelined_write(true);
    opts.set_db_write_buffer_size(MEMTABLE_BUDGET);
    opts.set_write_buffer_size(MEMTABLE_BUDGET / 2);
    // A missing database has no column families yet; any other failure shows up in `open_cf`.
    let mut names = DB::list_cf(&opts, path).unwrap_or_default();
    for cf in cfs {
        if !names.iter().any(|n| n == cf) {
            names.push((*cf).to_owned());
        }
    }
    Ok(Arc::new(DB::open_cf(&opts, path, names)?))
}
