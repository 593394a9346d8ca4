//! The in-memory backend: one ordered map per keyspace.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::{Backend, BoxIter, Durability, Entry, Error, WriteBatch};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Keyspaces by name. Every keyspace exists; an untouched one is empty.
#[derive(Default)]
pub(crate) struct Memory {
    keyspaces: Arc<RwLock<HashMap<String, Map>>>,
}

impl Memory {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Map>> {
        // Every write applies a whole batch under the lock and cannot panic halfway
        // (inserts and removes only), so a poisoned lock still guards consistent data.
        self.keyspaces.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, HashMap<String, Map>> {
        self.keyspaces.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for Memory {
    fn has_keyspace(&self, _: &str) -> bool {
        true
    }

    fn keyspaces(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        names.sort();
        names
    }

    fn read(&self, ks: &str, key: &[u8], read: &mut dyn FnMut(&[u8])) -> Result<bool, Error> {
        match self.read().get(ks).and_then(|map| map.get(key)) {
            Some(value) => {
                read(value);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn may_contain(&self, ks: &str, key: &[u8]) -> Result<bool, Error> {
        Ok(self.read().get(ks).is_some_and(|map| map.contains_key(key)))
    }

    fn write(&self, batch: &WriteBatch, _: Durability) -> Result<(), Error> {
        let mut keyspaces = self.write_lock();
        for (ks, key, value) in batch.ops() {
            let map = keyspaces.entry(ks.to_owned()).or_default();
            match value {
                Some(value) => map.insert(key.to_vec(), value.to_vec()),
                None => map.remove(key),
            };
        }
        Ok(())
    }

    fn iter<'a>(&'a self, ks: &str, from: &[u8]) -> Result<BoxIter<'a>, Error> {
        Ok(Box::new(MemIter {
            keyspaces: Arc::clone(&self.keyspaces),
            ks: ks.to_owned(),
            next: Bound::Included(from.to_vec()),
        }))
    }

    fn path(&self) -> Option<&Path> {
        None
    }
}

/// Walks a keyspace one entry at a time, taking the lock for each step only: no copy of
/// the keyspace, and writes may happen between steps (the iterator sees them, as a
/// RocksDB iterator sees a consistent snapshot instead; callers rely on neither).
struct MemIter {
    keyspaces: Arc<RwLock<HashMap<String, Map>>>,
    ks: String,
    next: Bound<Vec<u8>>,
}

impl Iterator for MemIter {
    type Item = Result<Entry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let keyspaces = self.keyspaces.read().unwrap_or_else(|e| e.into_inner());
        let map = keyspaces.get(&self.ks)?;
        let (key, value) = map
            .range::<Vec<u8>, _>((self.next.as_ref(), Bound::Unbounded))
            .next()?;
        let entry: Entry = (
            key.clone().into_boxed_slice(),
            value.clone().into_boxed_slice(),
        );
        self.next = Bound::Excluded(key.clone());
        Some(Ok(entry))
    }
}
