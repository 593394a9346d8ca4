//! Content-addressed block storage: the [`Blockstore`] trait, blocks as values in a
//! keyspace of the node's database ([`DbBlockstore`]), block data in a file indexed in a
//! keyspace ([`FileBlockstore`]), a temporary-file one for staging ([`ScratchBlockstore`])
//! and an in-memory one ([`MemoryBlockstore`]). The keyspaces are `rm_store`'s: RocksDB in
//! a node (cargo feature `rocksdb`), or memory.
//!
//! **Keys are multihashes**, not whole CIDs (as in boxo's blockstore): the same bytes are
//! stored once whatever CID version or codec names them, so after `put` under a CIDv0,
//! `has`/`get` with the CIDv1 of the same multihash (any codec) succeed. A block's bytes do
//! not depend on the codec used to interpret them, so this loses nothing.
//!
//! **Identity CIDs** carry their data inline: `put` of an identity CID stores nothing and
//! `get`/`has`/`size` answer from the CID itself.
//!
//! `put` does not hash the data; callers store only blocks they have verified (the
//! [`SelectorVerifier`](crate::verifier::SelectorVerifier), the CAR reader and the UnixFS
//! importer all do).
//!
//! **Right or absent.** Stored bytes can still go bad (a [`FileBlockstore`] after a power
//! loss with the default durability), so a block read to be sent, exported or written out
//! is checked against its CID: [`Blockstore::get_verified`] (which the
//! [`BlockReader`](crate::reader::BlockReader), the CAR export and the UnixFS export use)
//! returns [`Error::Corrupt`] for bytes that do not hash to it. A [`FileBlockstore`] whose
//! index names missing or wrong bytes writes them again on the next `put` of that block.

use crate::codec::IDENTITY;
use bytes::Bytes;
use cid::Cid;
use rm_store::{Durability, Keyspace, WriteBatch};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// Errors of a blockstore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database failed (or lacks the keyspace).
    #[error(transparent)]
    Db(#[from] rm_store::Error),
    /// The data file failed.
    #[error("block data file: {0}")]
    Io(#[from] std::io::Error),
    /// The index points past the end of the data file (the file lost writes in a crash of
    /// the machine).
    #[error("block data file is shorter than its index says")]
    Truncated,
    /// A stored block does not hash to its CID ([`Blockstore::get_verified`]).
    #[error("stored block {0} does not match its CID")]
    Corrupt(Box<Cid>),
    /// A stored block's CID names a hash function this crate cannot compute, so the block
    /// cannot be checked ([`Blockstore::get_verified`]).
    #[error("cannot check block {cid}: unsupported multihash code {code:#x}")]
    Unverifiable {
        /// The block.
        cid: Box<Cid>,
        /// Its multihash code.
        code: u64,
    },
}

/// A store of blocks by CID (keyed by multihash; see the module docs).
pub trait Blockstore: Send + Sync {
    /// The block's bytes, if present.
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, Error>;
    /// Whether the block is present.
    fn has(&self, cid: &Cid) -> Result<bool, Error>;
    /// The block's size in bytes, if present.
    fn size(&self, cid: &Cid) -> Result<Option<u64>, Error>;
    /// Stores a block (idempotent; the data is not hashed).
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), Error>;
    /// Stores several blocks, atomically where the implementation can.
    fn put_many(&self, blocks: &[(Cid, Bytes)]) -> Result<(), Error> {
        blocks
            .iter()
            .try_for_each(|(cid, data)| self.put(cid, data))
    }
    /// Removes a block (absent blocks are fine).
    fn delete(&self, cid: &Cid) -> Result<(), Error>;
    /// The block's bytes, if present, checked against its CID: bytes that do not hash to
    /// it are [`Error::Corrupt`], never handed out. Use it for every block that is sent,
    /// exported or written out.
    fn get_verified(&self, cid: &Cid) -> Result<Option<Vec<u8>>, Error> {
        let Some(data) = self.get(cid)? else {
            return Ok(None);
        };
        check(cid, &data)?;
        Ok(Some(data))
    }
}

/// Checks that `data` hashes to `cid` ([`Error::Corrupt`] if not).
pub fn check(cid: &Cid, data: &[u8]) -> Result<(), Error> {
    match crate::codec::verify(cid, data) {
        Ok(()) => Ok(()),
        Err(crate::codec::Error::UnsupportedHash(code)) => Err(Error::Unverifiable {
            cid: Box::new(*cid),
            code,
        }),
        Err(_) => Err(Error::Corrupt(Box::new(*cid))),
    }
}

fn identity_data(cid: &Cid) -> Option<&[u8]> {
    (cid.hash().code() == IDENTITY).then(|| cid.hash().digest())
}

fn key(cid: &Cid) -> Vec<u8> {
    cid.hash().to_bytes()
}

macro_rules! forward_blockstore {
    ($($ty:ty),*) => {$(
        impl<T: Blockstore + ?Sized> Blockstore for $ty {
            fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, Error> { (**self).get(cid) }
            fn has(&self, cid: &Cid) -> Result<bool, Error> { (**self).has(cid) }
            fn size(&self, cid: &Cid) -> Result<Option<u64>, Error> { (**self).size(cid) }
            fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), Error> { (**self).put(cid, data) }
            fn put_many(&self, blocks: &[(Cid, Bytes)]) -> Result<(), Error> { (**self).put_many(blocks) }
            fn delete(&self, cid: &Cid) -> Result<(), Error> { (**self).delete(cid) }
            fn get_verified(&self, cid: &Cid) -> Result<Option<Vec<u8>>, Error> { (**self).get_verified(cid) }
        }
    )*};
}
forward_blockstore!(&T, Arc<T>, Box<T>);

/// An in-memory blockstore (tests, small tools).
#[derive(Debug, Default)]
pub struct MemoryBlockstore {
    blocks: RwLock<HashMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryBlockstore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored blocks.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Sum of the sizes of all stored blocks.
    pub fn total_bytes(&self) -> u64 {
        self.read().values().map(|v| v.len() as u64).sum()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Vec<u8>, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-updated (every write is a
        // single insert or remove), so a poisoned lock is still consistent.
        self.blocks.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Vec<u8>, Vec<u8>>> {
        self.blocks.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Blockstore for MemoryBlockstore {
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, Error> {
        if let Some(data) = identity_data(cid) {
            return Ok(Some(data.to_vec()));
        }
        Ok(self.read().get(&key(cid)).cloned())
    }

    fn has(&self, cid: &Cid) -> Result<bool, Error> {
        Ok(identity_data(cid).is_some() || self.read().contains_key(&key(cid)))
    }

    fn size(&self, cid: &Cid) -> Result<Option<u64>, Error> {
        if let Some(data) = identity_data(cid) {
            return Ok(Some(data.len() as u64));
        }
        Ok(self.read().get(&key(cid)).map(|v| v.len() as u64))
    }

    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), Error> {
        if identity_data(cid).is_none() {
            self.write()
                .entry(key(cid))
                .or_insert_with(|| data.to_vec());
        }
        Ok(())
    }

    fn delete(&self, cid: &Cid) -> Result<(), Error> {
        self.write().remove(&key(cid));
        Ok(())
    }
}

/// Blocks as values of one keyspace of a database (keyed by multihash).
///
/// On RocksDB, values of 16 KiB and more go to blob files (see `rm_store::Options`); for
/// large data a [`FileBlockstore`] writes less.
#[derive(Debug, Clone)]
pub struct DbBlockstore {
    keyspace: Keyspace,
}

impl DbBlockstore {
    /// The keyspace name tools use for a database of blocks alone.
    pub const DEFAULT_KEYSPACE: &'static str = "blocks";

    /// A blockstore in `keyspace`.
    pub fn new(keyspace: Keyspace) -> Self {
        Self { keyspace }
    }

    /// Its keyspace.
    pub fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }
}

impl Blockstore for DbBlockstore {
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, Error> {
        if let Some(data) = identity_data(cid) {
            return Ok(Some(data.to_vec()));
        }
        Ok(self.keyspace.get(&key(cid))?)
    }

    fn has(&self, cid: &Cid) -> Result<bool, Error> {
        if identity_data(cid).is_some() {
            return Ok(true);
        }
        Ok(self.keyspace.contains(&key(cid))?)
    }

    fn size(&self, cid: &Cid) -> Result<Option<u64>, Error> {
        if let Some(data) = identity_data(cid) {
            return Ok(Some(data.len() as u64));
        }
        Ok(self.keyspace.get_with(&key(cid), |v| v.len() as u64)?)
    }

    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), Error> {
        if identity_data(cid).is_some() {
            return Ok(());
        }
        Ok(self.keyspace.put(&key(cid), data)?)
    }

    fn put_many(&self, blocks: &[(Cid, Bytes)]) -> Result<(), Error> {
        let mut batch = WriteBatch::new();
        for (cid, data) in blocks {
            if identity_data(cid).is_none() {
                batch.put(&self.keyspace, &key(cid), data);
            }
        }
        Ok(self.keyspace.db().write(batch, Durability::Process)?)
    }

    fn delete(&self, cid: &Cid) -> Result<(), Error> {
        if identity_data(cid).is_some() {
            return Ok(());
        }
        Ok(self.keyspace.delete(&key(cid))?)
    }
}

/// Block data appended to one file, indexed by multihash in a keyspace.
///
/// Blocks are written once, sequentially, and read with positioned reads: no write-ahead
/// log copy, no memtable, no compaction of the data — what a client storing a retrieval as
/// it arrives needs (like go-fil-markets' per-deal CAR files). Each `put_many` appends the
/// blocks first and then writes their index entries in one batch, so after a crash of the
/// process the index never names data that is not in the file. A crash of the machine can
/// lose unsynced file data: reads then fail with [`Error::Truncated`] and the block counts
/// as absent for [`Blockstore::has`], or return bytes that do not match the CID, which
/// [`Blockstore::get_verified`] refuses ([`Error::Corrupt`]). Either way the next `put` of
/// the block finds the stored bytes differ from the ones given, appends them again and
/// points the index at the new copy: a lost block is repaired by storing it again.
/// [`FileBlockstore::with_sync`] syncs every write. `delete` removes the index entry and
/// gives the block's disk space back: the whole file-system blocks inside its bytes are
/// punched out of the file (which keeps its length; offsets never move), so deleting what
/// a piece or a retrieval stored shrinks `blocks.dat` on disk.
pub struct FileBlockstore {
    index: Keyspace,
    /// The append handle; its lock orders writers.
    file: std::sync::Mutex<std::fs::File>,
    /// A read-only handle for positioned reads, which need no lock.
    reader: std::fs::File,
    path: std::path::PathBuf,
    /// fsync the data file before the index entries are written.
    sync: bool,
}

impl std::fmt::Debug for FileBlockstore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBlockstore")
            .field("path", &self.path)
            .field("index", &self.index.name())
            .finish_non_exhaustive()
    }
}

/// An index entry: offset and length in the data file.
fn location(offset: u64, len: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&offset.to_be_bytes());
    v[8..].copy_from_slice(&len.to_be_bytes());
    v
}

fn parse_location(v: &[u8]) -> Option<(u64, u64)> {
    let offset = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let len = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
    Some((offset, len))
}

impl FileBlockstore {
    /// The keyspace name nodes use for the index.
    pub const DEFAULT_KEYSPACE: &'static str = "block-index";

    /// Opens (creating if needed) the data file at `path`, indexed in `index`.
    pub fn open(path: impl AsRef<Path>, index: Keyspace) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let reader = std::fs::File::open(&path)?;
        Ok(Self {
            index,
            file: std::sync::Mutex::new(file),
            reader,
            path,
            sync: false,
        })
    }

    /// With `sync`, every `put_many` fsyncs the block data before it writes the index
    /// entries (synced too): once it returns, the blocks survive a power loss. Costs an
    /// fsync or two per call. Off by default (a crash of the process loses nothing either
    /// way).
    pub fn with_sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }

    fn locate(&self, cid: &Cid) -> Result<Option<(u64, u64)>, Error> {
        Ok(self.index.get_with(&key(cid), parse_location)?.flatten())
    }

    fn file(&self) -> std::sync::MutexGuard<'_, std::fs::File> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
        use std::os::unix::fs::FileExt;
        let len = usize::try_from(len).map_err(|_| Error::Truncated)?;
        if self.reader.metadata()?.len() < offset.saturating_add(len as u64) {
            return Err(Error::Truncated);
        }
        let mut buf = vec![0u8; len];
        self.reader.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Whether the bytes the index names for a block are exactly `data` (a `put` of a block
    /// already indexed writes nothing only then).
    fn holds(&self, (offset, len): (u64, u64), data: &[u8]) -> Result<bool, Error> {
        if len != data.len() as u64 {
            return Ok(false);
        }
        match self.read(offset, len) {
            Ok(stored) => Ok(stored == data),
            Err(Error::Truncated) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Blockstore for FileBlockstore {
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, Error> {
        if let Some(data) = identity_data(cid) {
            return Ok(Some(data.to_vec()));
        }
        match self.locate(cid)? {
            None => Ok(None),
            Some((offset, len)) => self.read(offset, len).map(Some),
        }
    }

    fn has(&self, cid: &Cid) -> Result<bool, Error> {
        if identity_data(cid).is_some() {
            return Ok(true);
        }
        let Some((offset, len)) = self.locate(cid)? else {
            return Ok(false);
        };
        Ok(self.reader.metadata()?.len() >= offset.saturating_add(len))
    }

    fn size(&self, cid: &Cid) -> Result<Option<u64>, Error> {
        if let Some(data) = identity_data(cid) {
            return Ok(Some(data.len() as u64));
        }
        Ok(self.locate(cid)?.map(|(_, len)| len))
    }

    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), Error> {
        self.put_many(&[(*cid, Bytes::copy_from_slice(data))])
    }

    fn put_many(&self, blocks: &[(Cid, Bytes)]) -> Result<(), Error> {
        use std::io::Write;
        let mut batch = WriteBatch::new();
        let mut file = self.file();
        let mut offset = file.metadata()?.len();
        let mut seen = std::collections::HashSet::new();
        for (cid, data) in blocks {
            if identity_data(cid).is_some() || !seen.insert(key(cid)) {
                continue;
            }
            // Already stored, and intact: nothing to write. Missing or wrong bytes (lost in
            // a crash of the machine) are written again below, and the index moves to them.
            if let Some(at) = self.locate(cid)?
                && self.holds(at, data)?
            {
                continue;
            }
            file.write_all(data)?;
            batch.put(&self.index, &key(cid), &location(offset, data.len() as u64));
            offset += data.len() as u64;
        }
        // Data first, then the index: the index never names bytes the file lacks.
        if self.sync && !batch.is_empty() {
            file.sync_data()?;
            return Ok(self.index.db().write(batch, Durability::Machine)?);
        }
        Ok(self.index.db().write(batch, Durability::Process)?)
    }

    fn delete(&self, cid: &Cid) -> Result<(), Error> {
        if identity_data(cid).is_some() {
            return Ok(());
        }
        // Under the writers' lock: a put of the same block either sees it indexed (and
        // is done before the delete) or appends a fresh copy after the hole.
        let file = self.file();
        let Some((offset, len)) = self.locate(cid)? else {
            return Ok(());
        };
        self.index.delete(&key(cid))?;
        punch_hole(&file, offset, len)?;
        Ok(())
    }
}

/// Frees the whole file-system blocks of `file` inside `offset..offset + len`, keeping its
/// length (they read as zeros). Partial blocks at either end are left alone, so the
/// bytes of neighbouring blocks never change. Where the platform or file system cannot,
/// nothing is freed. Also what `rm-unseal` frees sector bytes with.
pub fn punch_hole(file: &std::fs::File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let block = file.metadata()?.blksize().max(512);
    let start = offset.div_ceil(block) * block;
    let end = offset.saturating_add(len) / block * block;
    if end <= start {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::FallocateFlags;
        match rustix::fs::fallocate(
            file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            start,
            end - start,
        ) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(())
    }
}

/// A throwaway blockstore: block data in an anonymous temporary file (gone when the store
/// is dropped or the process dies), indexed in memory.
///
/// For staging a DAG on its way elsewhere, such as a UnixFS import that is then written out
/// as a CAR into a piece: memory use is the index only (about 100 bytes a block), however
/// large the data.
pub struct ScratchBlockstore {
    file: std::sync::Mutex<std::fs::File>,
    index: RwLock<HashMap<Vec<u8>, (u64, u64)>>,
}

impl std::fmt::Debug for ScratchBlockstore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchBlockstore")
            .field("blocks", &self.index().len())
            .finish_non_exhaustive()
    }
}

impl ScratchBlockstore {
    /// A new empty store whose temporary file lives in `dir`.
    pub fn new_in(dir: impl AsRef<Path>) -> Result<Self, Error> {
        Ok(Self {
            file: std::sync::Mutex::new(tempfile::tempfile_in(dir)?),
            index: RwLock::new(HashMap::new()),
        })
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Vec<u8>, (u64, u64)>> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of blocks stored.
    pub fn len(&self) -> usize {
        self.index().len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.index().is_empty()
    }
}

impl Blockstore for ScratchBlockstore {
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, Error> {
        use std::os::unix::fs::FileExt;
        if let Some(data) = identity_data(cid) {
            return Ok(Some(data.to_vec()));
        }
        let Some((offset, len)) = self.index().get(&key(cid)).copied() else {
            return Ok(None);
        };
        let mut buf = vec![0u8; usize::try_from(len).map_err(|_| Error::Truncated)?];
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.read_exact_at(&mut buf, offset)?;
        Ok(Some(buf))
    }

    fn has(&self, cid: &Cid) -> Result<bool, Error> {
        Ok(identity_data(cid).is_some() || self.index().contains_key(&key(cid)))
    }

    fn size(&self, cid: &Cid) -> Result<Option<u64>, Error> {
        if let Some(data) = identity_data(cid) {
            return Ok(Some(data.len() as u64));
        }
        Ok(self.index().get(&key(cid)).map(|(_, len)| *len))
    }

    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), Error> {
        use std::io::{Seek, SeekFrom, Write};
        if identity_data(cid).is_some() || self.has(cid)? {
            return Ok(());
        }
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let offset = file.seek(SeekFrom::End(0))?;
        file.write_all(data)?;
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key(cid), (offset, data.len() as u64));
        Ok(())
    }

    fn delete(&self, cid: &Cid) -> Result<(), Error> {
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(cid));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{DAG_PB, Multihash, RAW, SHA2_256, cid_of};

    fn exercise(store: &dyn Blockstore) {
        let data = b"some block".to_vec();
        let v1 = cid_of(cid::Version::V1, RAW, SHA2_256, &data).unwrap();
        let v0 = cid_of(cid::Version::V0, DAG_PB, SHA2_256, &data).unwrap();
        assert!(!store.has(&v1).unwrap());
        assert_eq!(store.get(&v1).unwrap(), None);
        assert_eq!(store.size(&v1).unwrap(), None);
        store.put(&v1, &data).unwrap();
        store.put(&v1, &data).unwrap();
        assert!(store.has(&v1).unwrap());
        assert_eq!(store.get(&v1).unwrap(), Some(data.clone()));
        assert_eq!(store.size(&v1).unwrap(), Some(data.len() as u64));
        // Keyed by multihash: the CIDv0 of the same digest finds the same bytes.
        assert!(store.has(&v0).unwrap());
        store.delete(&v0).unwrap();
        assert!(!store.has(&v1).unwrap());
        store.delete(&v0).unwrap();

        let blocks: Vec<(Cid, Bytes)> = (0u8..10)
            .map(|i| {
                let d = vec![i; 100 + usize::from(i)];
                (
                    cid_of(cid::Version::V1, RAW, SHA2_256, &d).unwrap(),
                    d.into(),
                )
            })
            .collect();
        store.put_many(&blocks).unwrap();
        for (cid, d) in &blocks {
            assert_eq!(store.get(cid).unwrap().as_deref(), Some(&d[..]));
        }

        let id = cid_of(cid::Version::V1, RAW, IDENTITY, b"inline").unwrap();
        assert!(store.has(&id).unwrap());
        assert_eq!(store.get(&id).unwrap(), Some(b"inline".to_vec()));
        assert_eq!(store.size(&id).unwrap(), Some(6));
        store.put(&id, b"inline").unwrap();
        store.delete(&id).unwrap();
        assert!(store.has(&id).unwrap());
    }

    #[test]
    fn memory_blockstore() {
        let store = MemoryBlockstore::new();
        exercise(&store);
        assert_eq!(store.len(), 10);
        exercise(&Arc::new(MemoryBlockstore::new()));
    }

    #[test]
    fn scratch_blockstore() {
        let dir = tempfile::tempdir().unwrap();
        let store = ScratchBlockstore::new_in(dir.path()).unwrap();
        exercise(&store);
        assert_eq!(store.len(), 10);
        // The data file is anonymous: nothing is left in the directory.
        drop(store);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn db_blockstore() {
        let store = DbBlockstore::new(Keyspace::memory("blocks"));
        exercise(&store);
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn db_blockstore_on_rocksdb_keeps_keyspaces_apart() {
        let dir = tempfile::tempdir().unwrap();
        let db = rm_store::Db::open(dir.path(), &["a", "b"], &Default::default()).unwrap();
        let a = DbBlockstore::new(db.keyspace("a").unwrap());
        exercise(&a);
        let b = DbBlockstore::new(db.keyspace("b").unwrap());
        let cid = cid_of(cid::Version::V1, RAW, SHA2_256, b"x").unwrap();
        a.put(&cid, b"x").unwrap();
        assert!(a.has(&cid).unwrap());
        assert!(!b.has(&cid).unwrap(), "keyspaces are separate");
    }

    #[test]
    fn file_blockstore() {
        let dir = tempfile::tempdir().unwrap();
        let index = Keyspace::memory(FileBlockstore::DEFAULT_KEYSPACE);
        let path = dir.path().join("blocks.dat");
        // The synced mode behaves the same (what it adds, surviving a power loss, is not
        // something a test can observe).
        {
            let dir = tempfile::tempdir().unwrap();
            let synced = FileBlockstore::open(
                dir.path().join("blocks.dat"),
                Keyspace::memory(FileBlockstore::DEFAULT_KEYSPACE),
            )
            .unwrap()
            .with_sync(true);
            exercise(&synced);
        }
        let store = FileBlockstore::open(&path, index.clone()).unwrap();
        exercise(&store);
        let d = b"persisted".to_vec();
        let cid = cid_of(cid::Version::V1, RAW, SHA2_256, &d).unwrap();
        store.put(&cid, &d).unwrap();
        drop(store);
        // Reopened: the index and the data are still there.
        let store = FileBlockstore::open(&path, index).unwrap();
        assert_eq!(store.get(&cid).unwrap(), Some(d));
        // A data file shorter than its index (lost writes) reads as truncated, not garbage.
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        assert!(matches!(store.get(&cid), Err(Error::Truncated)));
        assert!(!store.has(&cid).unwrap());
    }

    fn block(n: u8) -> (Cid, Bytes) {
        let data = vec![n; 1000 + usize::from(n)];
        (
            cid_of(cid::Version::V1, RAW, SHA2_256, &data).unwrap(),
            data.into(),
        )
    }

    /// Overwrites the data file's bytes in `range` (what a power loss can leave).
    fn clobber(path: &Path, at: u64, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(bytes, at).unwrap();
    }

    #[test]
    fn get_verified_refuses_bytes_that_do_not_match() {
        let store = MemoryBlockstore::new();
        let (cid, data) = block(1);
        // `put` trusts its caller: wrong bytes get in, and are never handed out checked.
        store.put(&cid, b"not the block").unwrap();
        assert_eq!(
            store.get(&cid).unwrap().as_deref(),
            Some(&b"not the block"[..])
        );
        assert!(matches!(store.get_verified(&cid), Err(Error::Corrupt(c)) if *c == cid));
        let (other, _) = block(2);
        assert_eq!(store.get_verified(&other).unwrap(), None);
        store.delete(&cid).unwrap();
        store.put(&cid, &data).unwrap();
        assert_eq!(
            store.get_verified(&cid).unwrap().as_deref(),
            Some(&data[..])
        );
        let odd = Cid::new_v1(RAW, Multihash::wrap(0x7f, &[1; 32]).unwrap());
        store.put(&odd, b"x").unwrap();
        assert!(matches!(
            store.get_verified(&odd),
            Err(Error::Unverifiable { code: 0x7f, .. })
        ));
    }

    #[test]
    fn file_blockstore_repairs_wrong_bytes_on_the_next_put() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocks.dat");
        let store = FileBlockstore::open(&path, Keyspace::memory(FileBlockstore::DEFAULT_KEYSPACE))
            .unwrap();
        let blocks: Vec<_> = (1..=3).map(block).collect();
        store.put_many(&blocks).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        // The second block's bytes are zeroed (a power loss that kept the file's length).
        let (cid, data) = &blocks[1];
        clobber(&path, blocks[0].1.len() as u64, &vec![0; data.len()]);
        assert!(store.has(cid).unwrap(), "the index still names it");
        assert!(matches!(store.get_verified(cid), Err(Error::Corrupt(c)) if *c == *cid));
        // Stored again: the bytes differ from what the index names, so they are rewritten.
        store.put(cid, data).unwrap();
        assert_eq!(store.get_verified(cid).unwrap().as_deref(), Some(&data[..]));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            len + data.len() as u64
        );
        // The other blocks were untouched, and an intact block is not written twice.
        store.put_many(&blocks).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            len + data.len() as u64
        );
        for (c, d) in &blocks {
            assert_eq!(store.get_verified(c).unwrap().as_deref(), Some(&d[..]));
        }
    }

    #[test]
    fn file_blockstore_repairs_lost_bytes_on_the_next_put() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocks.dat");
        let index = Keyspace::memory(FileBlockstore::DEFAULT_KEYSPACE);
        let store = FileBlockstore::open(&path, index.clone()).unwrap();
        let blocks: Vec<_> = (1..=3).map(block).collect();
        store.put_many(&blocks).unwrap();
        drop(store);
        // A power loss kept the index but lost the tail of the data file.
        let keep = blocks[0].1.len() as u64 + 10;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(keep)
            .unwrap();
        let store = FileBlockstore::open(&path, index).unwrap();
        for (cid, _) in &blocks[1..] {
            assert!(!store.has(cid).unwrap());
            assert!(matches!(store.get(cid), Err(Error::Truncated)));
        }
        store.put_many(&blocks).unwrap();
        for (cid, data) in &blocks {
            assert!(store.has(cid).unwrap());
            assert_eq!(store.get_verified(cid).unwrap().as_deref(), Some(&data[..]));
        }
    }

    #[test]
    fn file_blockstore_delete_gives_the_space_back() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocks.dat");
        let store = FileBlockstore::open(&path, Keyspace::memory(FileBlockstore::DEFAULT_KEYSPACE))
            .unwrap();
        let used = || std::fs::metadata(&path).unwrap().blocks() * 512;
        let blocks: Vec<(Cid, Bytes)> = (0..3u8)
            .map(|i| {
                let d: Vec<u8> = (0..1_000_000u32).map(|j| (j as u8) ^ i).collect();
                (
                    cid_of(cid::Version::V1, RAW, SHA2_256, &d).unwrap(),
                    d.into(),
                )
            })
            .collect();
        store.put_many(&blocks).unwrap();
        let before = used();
        assert!(before >= 3_000_000, "{before}");
        store.delete(&blocks[1].0).unwrap();
        let after = used();
        // All but the partial file-system blocks at its two ends are freed.
        assert!(
            before - after >= 1_000_000 - 2 * 4096,
            "{before} -> {after}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3_000_000);
        assert!(!store.has(&blocks[1].0).unwrap());
        // Its neighbours, sharing those partial blocks, are intact.
        assert_eq!(store.get(&blocks[0].0).unwrap().unwrap(), blocks[0].1);
        assert_eq!(store.get(&blocks[2].0).unwrap().unwrap(), blocks[2].1);
        // Stored again, it is appended afresh.
        store.put(&blocks[1].0, &blocks[1].1).unwrap();
        assert_eq!(store.get(&blocks[1].0).unwrap().unwrap(), blocks[1].1);
    }
}
