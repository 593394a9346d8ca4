//! # rm-store: the one place rm keeps records
//!
//! Layer 0 of the `rm` workspace, next to `rm-types`: it depends on no other `rm-*` crate,
//! and every crate that persists something (deal machines in `rm-fsm`, the block index in
//! `rm-blockio`, the payment-channel ledger in `rm-paych`, pieces in `rm-unseal`, the peer
//! registry in `rm-discovery`) keeps it through this crate. It is the only crate of the
//! workspace that depends on `rocksdb`.
//!
//! A node keeps all its records in one database ([`Db`]), split into named keyspaces
//! ([`Keyspace`], a RocksDB column family): each crate owns the keyspaces it names. A
//! [`WriteBatch`] writes to any keyspaces of one database atomically, and a
//! [`Durability`] says whether the write must reach stable storage (fsync) before it
//! returns.
//!
//! Two backends sit behind the same handle:
//!
//! - [`Db::memory`]: a map in memory. Always available; it is what unit tests, the
//!   in-memory deal harness and programs that do not need to persist use. Every keyspace
//!   exists.
//! - [`Db::open`] (cargo feature `rocksdb`, on by default): RocksDB, tuned for a node that
//!   keeps blocks next to small records ([`Options`]). Only the keyspaces named when it is
//!   opened exist (plus those already in the database).
//!
//! A crate that wants persistence without RocksDB (a Lotus or Forest node with its own
//! store) can build with `default-features = false` and use the memory backend, or take
//! the records out through [`Keyspace::iter`].
//!
//! ## Example
//!
//! ```
//! use rm_store::{Db, Durability, WriteBatch};
//!
//! let db = Db::memory(); // or Db::open(path, &["deals", "meta"], &Options::default())
//! let deals = db.keyspace("deals")?;
//! let meta = db.keyspace("meta")?;
//!
//! // One atomic write over two keyspaces, fsynced before it returns.
//! let mut batch = WriteBatch::new();
//! batch.put(&deals, b"deal/1", b"Ongoing");
//! batch.put(&deals, b"deal/2", b"Completed");
//! batch.put(&meta, b"next-id", b"3");
//! db.write(batch, Durability::Machine)?;
//!
//! assert_eq!(meta.get(b"next-id")?.as_deref(), Some(&b"3"[..]));
//! let keys: Vec<Box<[u8]>> = deals.prefix(b"deal/").map(|e| e.map(|(k, _)| k)).collect::<Result<_, _>>()?;
//! assert_eq!(keys.len(), 2);
//! # Ok::<(), rm_store::Error>(())
//! ```
//!
//! ## Errors
//!
//! Every call returns [`Error`]: the backend failed, a keyspace does not exist, or the
//! database is locked by another process ([`Error::Locked`]). Nothing here panics on what
//! is stored; decoding values is the caller's job.

mod error;
mod memory;
#[cfg(feature = "rocksdb")]
mod rocks;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use error::Error;

/// A key and its value, as iterators yield them.
pub type Entry = (Box<[u8]>, Box<[u8]>);

/// Whether a write must be on stable storage before it returns.
///
/// Every write is atomic whatever the durability; the question is only what survives
/// which crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// In the database's write-ahead log, not fsynced: survives a crash of the process
    /// (the kernel has the data), not a power loss. The default; fast.
    #[default]
    Process,
    /// fsynced before the write returns: survives a power loss. About 1 ms per write on
    /// the project's machine.
    Machine,
}

impl Durability {
    /// Whether the write is fsynced.
    pub fn sync(self) -> bool {
        self == Durability::Machine
    }
}

/// Settings of a RocksDB database ([`Db::open`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The most memory all memtables of the database take together. Default 16 MiB
    /// ([`MEMTABLE_BUDGET`]), so memory does not grow with what is written.
    pub memtable_budget: usize,
    /// Values of this size and more (blocks) go to blob files, written once when the
    /// memtable is flushed and never rewritten by compaction. Default 16 KiB.
    pub min_blob_size: u64,
}

/// The default of [`Options::memtable_budget`].
pub const MEMTABLE_BUDGET: usize = 16 << 20;

impl Default for Options {
    fn default() -> Self {
        Options {
            memtable_budget: MEMTABLE_BUDGET,
            min_blob_size: 16 * 1024,
        }
    }
}

/// What a backend does. Private: the two backends are this crate's.
trait Backend: Send + Sync {
    fn has_keyspace(&self, name: &str) -> bool;
    fn keyspaces(&self) -> Vec<String>;
    /// Calls `read` with the value if there is one; returns whether there was.
    fn read(&self, ks: &str, key: &[u8], read: &mut dyn FnMut(&[u8])) -> Result<bool, Error>;
    /// False only if the key is certainly absent (may say true for an absent key).
    fn may_contain(&self, ks: &str, key: &[u8]) -> Result<bool, Error>;
    fn write(&self, batch: &WriteBatch, durability: Durability) -> Result<(), Error>;
    /// Entries of `ks` from `from` (inclusive) in ascending key order.
    fn iter<'a>(&'a self, ks: &str, from: &[u8]) -> Result<BoxIter<'a>, Error>;
    fn path(&self) -> Option<&Path>;
}

type BoxIter<'a> = Box<dyn Iterator<Item = Result<Entry, Error>> + Send + 'a>;

/// A database: named keyspaces, written atomically in batches. Cheap to clone; clones
/// share the database, which is closed (and its lock released) when the last clone and
/// the last [`Keyspace`] of it are dropped.
#[derive(Clone)]
pub struct Db {
    backend: Arc<dyn Backend>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.backend.path() {
            Some(path) => f.debug_struct("Db").field("path", &path).finish(),
            None => f.debug_struct("Db").field("path", &"(memory)").finish(),
        }
    }
}

impl Db {
    /// A new, empty database in memory, in which every keyspace exists. Clones share it;
    /// it is gone when the last one is dropped.
    pub fn memory() -> Db {
        Db {
            backend: Arc::new(memory::Memory::default()),
        }
    }

    /// Opens (creating if needed) the RocksDB database at `path` with at least the
    /// keyspaces `keyspaces`; keyspaces already in the database are opened too.
    ///
    /// Fails with [`Error::Locked`] when another process has it open.
    #[cfg(feature = "rocksdb")]
    pub fn open(
        path: impl AsRef<Path>,
        keyspaces: &[&str],
        options: &Options,
    ) -> Result<Db, Error> {
        Ok(Db {
            backend: Arc::new(rocks::Rocks::open(path.as_ref(), keyspaces, options)?),
        })
    }

    /// The keyspace `name`; [`Error::MissingKeyspace`] if the database does not have it.
    pub fn keyspace(&self, name: &str) -> Result<Keyspace, Error> {
        if !self.backend.has_keyspace(name) {
            return Err(Error::MissingKeyspace(name.to_owned()));
        }
        Ok(Keyspace {
            db: self.clone(),
            name: Arc::from(name),
        })
    }

    /// The names of the keyspaces the database has (a memory database: those written to).
    pub fn keyspaces(&self) -> Vec<String> {
        self.backend.keyspaces()
    }

    /// Applies `batch` atomically with the given durability. An empty batch writes
    /// nothing.
    pub fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(op) = batch
            .ops
            .iter()
            .find(|op| !Arc::ptr_eq(&op.db, &self.backend))
        {
            return Err(Error::ForeignKeyspace(op.keyspace.to_string()));
        }
        self.backend.write(&batch, durability)
    }

    /// Where the database lives on disk; `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.backend.path()
    }

    /// Whether this is an in-memory database.
    pub fn is_memory(&self) -> bool {
        self.backend.path().is_none()
    }
}

/// One keyspace of a [`Db`] (a RocksDB column family). Cheap to clone.
#[derive(Clone)]
pub struct Keyspace {
    db: Db,
    name: Arc<str>,
}

impl fmt::Debug for Keyspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyspace")
            .field("db", &self.db)
            .field("name", &self.name)
            .finish()
    }
}

impl Keyspace {
    /// A keyspace `name` of a new memory database of its own (tests, tools).
    pub fn memory(name: &str) -> Keyspace {
        Keyspace {
            db: Db::memory(),
            name: Arc::from(name),
        }
    }

    /// The keyspace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database it belongs to.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The value at `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.get_with(key, <[u8]>::to_vec)
    }

    /// `read` applied to the value at `key`, without copying it first.
    pub fn get_with<T>(
        &self,
        key: &[u8],
        read: impl FnOnce(&[u8]) -> T,
    ) -> Result<Option<T>, Error> {
        let mut read = Some(read);
        let mut out = None;
        self.db.backend.read(&self.name, key, &mut |value| {
            if let Some(read) = read.take() {
                out = Some(read(value));
            }
        })?;
        Ok(out)
    }

    /// Whether there is a value at `key` (a bloom-filter check first on RocksDB).
    pub fn contains(&self, key: &[u8]) -> Result<bool, Error> {
        if !self.db.backend.may_contain(&self.name, key)? {
            return Ok(false);
        }
        Ok(self.get_with(key, |_| ())?.is_some())
    }

    /// Writes `value` at `key` ([`Durability::Process`]).
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        let mut batch = WriteBatch::new();
        batch.put(self, key, value);
        self.db.write(batch, Durability::Process)
    }

    /// Removes `key` ([`Durability::Process`]); an absent key is fine.
    pub fn delete(&self, key: &[u8]) -> Result<(), Error> {
        let mut batch = WriteBatch::new();
        batch.delete(self, key);
        self.db.write(batch, Durability::Process)
    }

    /// Every entry, in ascending key order.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_from(&[])
    }

    /// Every entry from `start` (inclusive), in ascending key order.
    pub fn iter_from(&self, start: &[u8]) -> Iter<'_> {
        Iter {
            inner: self.db.backend.iter(&self.name, start),
            prefix: None,
        }
    }

    /// Every entry whose key starts with `prefix`, in ascending key order.
    pub fn prefix(&self, prefix: &[u8]) -> Iter<'_> {
        Iter {
            inner: self.db.backend.iter(&self.name, prefix),
            prefix: Some(prefix.to_vec()),
        }
    }
}

/// Entries of a keyspace in ascending key order ([`Keyspace::iter`],
/// [`Keyspace::prefix`]). A backend error is yielded once, and the iterator ends.
pub struct Iter<'a> {
    inner: Result<BoxIter<'a>, Error>,
    prefix: Option<Vec<u8>>,
}

impl fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Iterator for Iter<'_> {
    type Item = Result<Entry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let inner = match &mut self.inner {
            Ok(inner) => inner,
            Err(e) => {
                let e = e.clone();
                self.inner = Ok(Box::new(std::iter::empty()));
                return Some(Err(e));
            }
        };
        match inner.next()? {
            Ok((key, value)) => {
                if let Some(prefix) = &self.prefix
                    && !key.starts_with(prefix)
                {
                    self.inner = Ok(Box::new(std::iter::empty()));
                    return None;
                }
                Some(Ok((key, value)))
            }
            Err(e) => {
                self.inner = Ok(Box::new(std::iter::empty()));
                Some(Err(e))
            }
        }
    }
}

/// One operation of a [`WriteBatch`].
struct Op {
    db: Arc<dyn Backend>,
    keyspace: Arc<str>,
    key: Vec<u8>,
    /// `None` deletes.
    value: Option<Vec<u8>>,
}

/// Writes to any keyspaces of one database, applied atomically by [`Db::write`] in the
/// order they were added.
#[derive(Default)]
pub struct WriteBatch {
    ops: Vec<Op>,
}

impl fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBatch")
            .field("ops", &self.ops.len())
            .finish()
    }
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// Adds a write of `value` at `key` in `keyspace`.
    pub fn put(&mut self, keyspace: &Keyspace, key: &[u8], value: &[u8]) {
        self.push(keyspace, key.to_vec(), Some(value.to_vec()));
    }

    /// Adds a removal of `key` from `keyspace`.
    pub fn delete(&mut self, keyspace: &Keyspace, key: &[u8]) {
        self.push(keyspace, key.to_vec(), None);
    }

    /// Like [`WriteBatch::put`], taking the key and value by value (no copy).
    pub fn put_owned(&mut self, keyspace: &Keyspace, key: Vec<u8>, value: Vec<u8>) {
        self.push(keyspace, key, Some(value));
    }

    fn push(&mut self, keyspace: &Keyspace, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.ops.push(Op {
            db: Arc::clone(&keyspace.db.backend),
            keyspace: Arc::clone(&keyspace.name),
            key,
            value,
        });
    }

    /// Appends the operations of `other`, applied after this batch's.
    pub fn append(&mut self, other: WriteBatch) {
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

    fn ops(&self) -> impl Iterator<Item = (&str, &[u8], Option<&[u8]>)> {
        self.ops
            .iter()
            .map(|op| (&*op.keyspace, op.key.as_slice(), op.value.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The behaviour both backends share, run against each.
    pub(crate) fn contract(db: &Db, a: &str, b: &str) {
        let ks = db.keyspace(a).unwrap();
        let other = db.keyspace(b).unwrap();
        assert_eq!(ks.get(b"k").unwrap(), None);
        assert!(!ks.contains(b"k").unwrap());
        ks.put(b"k", b"v").unwrap();
        assert_eq!(ks.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(ks.get_with(b"k", <[u8]>::len).unwrap(), Some(1));
        assert!(ks.contains(b"k").unwrap());
        assert_eq!(other.get(b"k").unwrap(), None, "keyspaces are separate");

        // A batch over two keyspaces; a delete after a put of the same key wins.
        let mut batch = WriteBatch::new();
        for i in 0u8..10 {
            batch.put(&ks, &[b'p', i], &[i]);
        }
        batch.put(&other, b"x", b"1");
        batch.delete(&ks, b"k");
        batch.put(&ks, b"q", b"");
        batch.delete(&ks, b"q");
        db.write(batch, Durability::Machine).unwrap();
        assert_eq!(ks.get(b"k").unwrap(), None);
        assert_eq!(ks.get(b"q").unwrap(), None);
        assert_eq!(other.get(b"x").unwrap().as_deref(), Some(&b"1"[..]));

        let all: Vec<Entry> = ks.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 10);
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "ascending");
        let from: Vec<Entry> = ks.iter_from(&[b'p', 7]).collect::<Result<_, _>>().unwrap();
        assert_eq!(from.len(), 3);
        ks.put(b"r", b"after").unwrap();
        ks.put(b"o", b"before").unwrap();
        let prefixed: Vec<Entry> = ks.prefix(b"p").collect::<Result<_, _>>().unwrap();
        assert_eq!(prefixed.len(), 10);
        assert_eq!(&*prefixed[3].1, &[3u8]);
        assert_eq!(ks.prefix(b"zz").count(), 0);

        // Writing while iterating is allowed.
        for entry in ks.prefix(b"p") {
            let (key, _) = entry.unwrap();
            ks.delete(&key).unwrap();
        }
        assert_eq!(ks.prefix(b"p").count(), 0);
        assert_eq!(ks.iter().count(), 2);
    }

    #[test]
    fn memory_backend_keeps_the_contract() {
        let db = Db::memory();
        contract(&db, "a", "b");
        assert!(db.is_memory());
        assert!(db.keyspaces().contains(&"a".to_owned()));
    }

    #[test]
    fn a_batch_for_another_database_is_refused() {
        let (one, two) = (Db::memory(), Db::memory());
        let mut batch = WriteBatch::new();
        batch.put(&two.keyspace("x").unwrap(), b"k", b"v");
        assert!(matches!(
            one.write(batch, Durability::Process),
            Err(Error::ForeignKeyspace(_))
        ));
    }

    #[test]
    fn memory_clones_share_and_separate_databases_do_not() {
        let db = Db::memory();
        db.clone().keyspace("a").unwrap().put(b"k", b"v").unwrap();
        assert!(db.keyspace("a").unwrap().contains(b"k").unwrap());
        assert!(!Keyspace::memory("a").contains(b"k").unwrap());
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn rocksdb_backend_keeps_the_contract_and_its_keyspaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let db = Db::open(&path, &["a", "b"], &Options::default()).unwrap();
            contract(&db, "a", "b");
            assert!(matches!(db.keyspace("c"), Err(Error::MissingKeyspace(_))));
            assert_eq!(db.path(), Some(path.as_path()));
            // A second open of the same database is refused while the first is open.
            let second = Db::open(&path, &["a"], &Options::default());
            assert!(
                matches!(&second, Err(Error::Locked(p)) if p == &path),
                "{second:?}"
            );
        }
        // Reopened with fewer names: what was there is still there.
        let db = Db::open(&path, &["a"], &Options::default()).unwrap();
        assert!(db.keyspaces().contains(&"b".to_owned()));
        assert_eq!(
            db.keyspace("b").unwrap().get(b"x").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(db.keyspace("a").unwrap().iter().count(), 2);
    }
}
