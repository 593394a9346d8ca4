//! Where journals and counters keep their bytes: a key-value [`Store`] per keyspace.
//!
//! The real one is a keyspace of the node's database ([`rm_store::Keyspace`]: RocksDB, or
//! memory). [`MemStore`] keeps a map in memory for unit tests (clones share the map, so
//! "reopening" a journal on a clone sees what was written); tests wrap either to inject
//! failures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

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

    /// Calls `visit` for every entry whose key starts with `prefix`, in key order, until it
    /// returns `false`. The default scans everything; stores that can seek override it.
    fn scan_prefix(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.scan(&mut |key, value| !key.starts_with(prefix) || visit(key, value))
    }
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

    fn scan_prefix(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        (**self).scan_prefix(prefix, visit)
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

/// A keyspace of an [`rm_store::Db`] is a store: RocksDB in a node, memory in tests.
impl Store for rm_store::Keyspace {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(rm_store::Keyspace::get(self, key)?)
    }

    fn write(&self, batch: &Batch, sync: bool) -> Result<(), StoreError> {
        let mut wb = rm_store::WriteBatch::new();
        for (key, value) in batch.ops() {
            match value {
                Some(value) => wb.put(self, key, value),
                None => wb.delete(self, key),
            }
        }
        let durability = if sync {
            rm_store::Durability::Machine
        } else {
            rm_store::Durability::Process
        };
        Ok(self.db().write(wb, durability)?)
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        for item in self.iter() {
            let (key, value) = item?;
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        for item in self.prefix(prefix) {
            let (key, value) = item?;
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }
}
