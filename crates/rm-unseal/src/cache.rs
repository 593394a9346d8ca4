//! The unsealed cache: pieces a sector store can only stream from their start (a sealed
//! sector, or sector files read with [`Config::direct_reads`](crate::sector::Config)
//! off), copied once into one file per piece so every deal for the piece reads blocks
//! from it at any offset.
//!
//! - **One unseal per piece.** The first deal starts it; later deals join it. Readers
//!   follow the unseal as it writes: a block is read as soon as the bytes up to its end
//!   are written, so a deal's first block does not wait for the whole piece.
//! - **A size cap** (`storage.unsealed_cache_size` of a node): before a piece is added,
//!   the least recently used pieces nobody reads are removed until it fits. A piece that
//!   is being read (pinned by a deal in flight) is never removed; when those alone fill
//!   the cap, the new piece is refused ([`Error::CacheFull`]) rather than going over it.
//! - **On disk**: `<dir>/<piece CID>`, written as `<piece CID>.part` and renamed when
//!   complete. When the cache opens, `.part` files (an unseal cut by a crash) and anything
//!   else that is not a piece are removed; complete files are kept, most recently used
//!   last by their modification time (touched on every use).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use cid::Cid;
use tokio::sync::watch;

use crate::Error;
use crate::source::PieceData;

/// How long a reader waits for an unseal that makes no progress before it gives up.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Where an entry's unseal stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fill {
    /// This many bytes from the start are written.
    Writing(u64),
    /// Complete.
    Done,
    /// The unseal failed; the entry is gone from the cache.
    Failed(String),
}

/// One cached piece.
pub(crate) struct Entry {
    piece: Cid,
    path: PathBuf,
    size: u64,
    file: std::fs::File,
    state: Mutex<Fill>,
    changed: Condvar,
    progress: watch::Sender<Fill>,
    pins: AtomicUsize,
    last_used: AtomicU64,
}

impl Entry {
    fn state(&self) -> std::sync::MutexGuard<'_, Fill> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, fill: Fill) {
        *self.state() = fill.clone();
        self.changed.notify_all();
        self.progress.send_replace(fill);
    }

    fn is_done(&self) -> bool {
        *self.state() == Fill::Done
    }

    /// Blocks until bytes `..upto` are written (or the fill fails, or stalls).
    fn wait(&self, upto: u64) -> io::Result<()> {
        let mut state = self.state();
        loop {
            let before = match &*state {
                Fill::Done => return Ok(()),
                Fill::Writing(n) if *n >= upto => return Ok(()),
                Fill::Failed(e) => return Err(io::Error::other(format!("unseal failed: {e}"))),
                Fill::Writing(n) => *n,
            };
            let (next, waited) = self
                .changed
                .wait_timeout(state, STALL_TIMEOUT)
                .unwrap_or_else(|e| e.into_inner());
            state = next;
            if waited.timed_out() && *state == Fill::Writing(before) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the unseal of piece {} made no progress in {} s",
                        self.piece,
                        STALL_TIMEOUT.as_secs()
                    ),
                ));
            }
        }
    }

    /// Waits without blocking a thread until bytes `..upto` are written; for the whole
    /// piece, until the copy is complete (synced and in place).
    async fn wait_async(&self, upto: u64) -> Result<(), Error> {
        let mut rx = self.progress.subscribe();
        let whole = upto >= self.size;
        let waited = rx.wait_for(|f| match f {
            Fill::Done | Fill::Failed(_) => true,
            Fill::Writing(n) => !whole && *n >= upto,
        });
        let fill = match tokio::time::timeout(STALL_TIMEOUT, waited).await {
            Ok(Ok(f)) => f.clone(),
            Ok(Err(_)) => return Err(Error::Unseal("the unseal stopped".into())),
            Err(_) => {
                return Err(Error::Unseal(format!(
                    "the unseal of piece {} is too slow",
                    self.piece
                )));
            }
        };
        match fill {
            Fill::Failed(e) => Err(Error::Unseal(e)),
            _ => Ok(()),
        }
    }
}

/// A reader's hold on a cached piece: while any exists, the piece is not evicted. Reads
/// wait for bytes the unseal has not written yet.
pub struct Pin {
    entry: Arc<Entry>,
    cache: Arc<Inner>,
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pin")
            .field("piece", &self.entry.piece)
            .finish_non_exhaustive()
    }
}

impl Pin {
    fn new(entry: Arc<Entry>, cache: Arc<Inner>) -> Self {
        entry.pins.fetch_add(1, Ordering::AcqRel);
        Self { entry, cache }
    }

    /// The piece.
    pub fn piece(&self) -> &Cid {
        &self.entry.piece
    }

    /// Whether the whole piece is in the cache.
    pub fn is_complete(&self) -> bool {
        self.entry.is_done()
    }

    /// Waits without blocking a thread until bytes `..upto` can be read.
    pub async fn ready(&self, upto: u64) -> Result<(), Error> {
        self.entry.wait_async(upto.min(self.entry.size)).await
    }

    /// Drops the cached copy (its bytes were found wrong): the next reader unseals again.
    pub fn invalidate(&self) {
        self.cache.forget(&self.entry);
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.entry.pins.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PieceData for Pin {
    fn size(&self) -> u64 {
        self.entry.size
    }

    fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let end = at.saturating_add(buf.len() as u64);
        if end > self.entry.size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("bytes {at}..{end} of a piece of {} bytes", self.entry.size),
            ));
        }
        self.entry.wait(end)?;
        self.entry.file.read_exact_at(buf, at)
    }
}

/// What the cache holds of one piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedPiece {
    /// The piece.
    pub piece_cid: Cid,
    /// Its bytes in the cache (when complete; the reserved size while unsealing).
    pub bytes: u64,
    /// Whether the unseal finished.
    pub complete: bool,
    /// Readers holding it (deals in flight).
    pub readers: usize,
}

/// The unsealed cache (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct UnsealedCache {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    entries: Mutex<HashMap<Cid, Arc<Entry>>>,
    clock: AtomicU64,
}

impl std::fmt::Debug for UnsealedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsealedCache")
            .field("dir", &self.inner.dir)
            .field("max_bytes", &self.inner.max_bytes)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Cid, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// Removes `entry` (if it is still the cache's entry for its piece) and its file.
    fn forget(&self, entry: &Arc<Entry>) {
        let mut entries = self.entries();
        if entries
            .get(&entry.piece)
            .is_some_and(|e| Arc::ptr_eq(e, entry))
        {
            entries.remove(&entry.piece);
            remove_files(&entry.path);
        }
    }
}

fn part_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

fn remove_files(path: &Path) {
    for p in [path.to_path_buf(), part_path(path)] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %p.display(), error = %e, "removing a cached piece"),
        }
    }
}

impl UnsealedCache {
    /// Opens the cache in `dir` (created), holding at most `max_bytes`: removes unseals
    /// cut short by a crash and anything else that is not a cached piece, and the least
    /// recently used pieces beyond the cap.
    pub fn open(dir: impl AsRef<Path>, max_bytes: u64) -> Result<Self, Error> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let mut found = Vec::new();
        for item in std::fs::read_dir(&dir)? {
            let item = item?;
            let path = item.path();
            let piece = item
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Cid>().ok())
                .filter(|c| c.codec() == crate::commp::FIL_COMMITMENT_UNSEALED);
            let meta = item.metadata()?;
            match piece {
                Some(piece) if meta.is_file() => {
                    let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    found.push((used, piece, path, meta.len()));
                }
                _ => {
                    tracing::info!(path = %path.display(), "unsealed cache: removing a leftover");
                    if meta.is_dir() {
                        std::fs::remove_dir_all(&path)?;
                    } else {
                        std::fs::remove_file(&path)?;
                    }
                }
            }
        }
        found.sort();
        let inner = Arc::new(Inner {
            dir,
            max_bytes,
            entries: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
        });
        {
            let mut entries = inner.entries();
            for (_, piece, path, size) in found {
                let file = std::fs::File::open(&path)?;
                let (progress, _) = watch::channel(Fill::Done);
                entries.insert(
                    piece,
                    Arc::new(Entry {
                        piece,
                        path,
                        size,
                        file,
                        state: Mutex::new(Fill::Done),
                        changed: Condvar::new(),
                        progress,
                        pins: AtomicUsize::new(0),
                        last_used: AtomicU64::new(inner.tick()),
                    }),
                );
            }
            // A lowered cap applies at once.
            let _ = evict(&mut entries, max_bytes, 0);
        }
        Ok(Self { inner })
    }

    /// The cap in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Bytes held (complete pieces, and the full size of pieces being unsealed).
    pub fn total_bytes(&self) -> u64 {
        self.inner.entries().values().map(|e| e.size).sum()
    }

    /// Every piece held.
    pub fn list(&self) -> Vec<CachedPiece> {
        let mut out: Vec<CachedPiece> = self
            .inner
            .entries()
            .values()
            .map(|e| CachedPiece {
                piece_cid: e.piece,
                bytes: e.size,
                complete: e.is_done(),
                readers: e.pins.load(Ordering::Acquire),
            })
            .collect();
        out.sort_by_key(|c| c.piece_cid.to_string());
        out
    }

    /// A hold on the cached piece (complete or being unsealed) of `size` bytes, if the
    /// cache has it; a copy of another size is dropped.
    pub fn get(&self, piece: &Cid, size: u64) -> Option<Pin> {
        self.get_locked(&mut self.inner.entries(), piece, size)
    }

    fn get_locked(
        &self,
        entries: &mut HashMap<Cid, Arc<Entry>>,
        piece: &Cid,
        size: u64,
    ) -> Option<Pin> {
        let entry = Arc::clone(entries.get(piece)?);
        if entry.size != size {
            tracing::warn!(piece = %piece, cached = entry.size, expected = size, "unsealed cache: dropping a copy of the wrong size");
            if entry.pins.load(Ordering::Acquire) == 0 {
                entries.remove(piece);
                remove_files(&entry.path);
            }
            return None;
        }
        entry.last_used.store(self.inner.tick(), Ordering::Relaxed);
        if entry.is_done() {
            let _ = entry.file.set_modified(SystemTime::now());
        }
        Some(Pin::new(entry, Arc::clone(&self.inner)))
    }

    /// Adds `piece` (`size` bytes) and fills it from `unseal` on a blocking thread; the
    /// hold returned reads it as it fills. Makes room by evicting (see the module docs);
    /// [`Error::CacheFull`] when it cannot. If the piece is there already, that copy is
    /// returned and `unseal` is not run.
    pub fn fill(
        &self,
        piece: Cid,
        size: u64,
        unseal: futures::future::BoxFuture<'static, Result<crate::sector::PieceReader, Error>>,
    ) -> Result<Pin, Error> {
        let mut entries = self.inner.entries();
        if let Some(pin) = self.get_locked(&mut entries, &piece, size) {
            return Ok(pin);
        }
        evict(&mut entries, self.inner.max_bytes, size)?;
        let path = self.inner.dir.join(piece.to_string());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(part_path(&path))?;
        let (progress, _) = watch::channel(Fill::Writing(0));
        let entry = Arc::new(Entry {
            piece,
            path,
            size,
            file,
            state: Mutex::new(Fill::Writing(0)),
            changed: Condvar::new(),
            progress,
            pins: AtomicUsize::new(0),
            last_used: AtomicU64::new(self.inner.tick()),
        });
        entries.insert(piece, Arc::clone(&entry));
        let pin = Pin::new(Arc::clone(&entry), Arc::clone(&self.inner));
        drop(entries);
        let inner = Arc::clone(&self.inner);
        let handle = tokio::runtime::Handle::current();
        tokio::spawn(async move {
            let result = match unseal.await {
                Ok(reader) => {
                    let writer = Arc::clone(&entry);
                    tokio::task::spawn_blocking(move || copy_in(reader, &writer, handle))
                        .await
                        .unwrap_or_else(|e| Err(Error::Unseal(format!("unseal task: {e}"))))
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => entry.set(Fill::Done),
                Err(e) => {
                    tracing::warn!(piece = %entry.piece, error = %e, "unsealing into the cache failed");
                    inner.forget(&entry);
                    entry.set(Fill::Failed(e.to_string()));
                }
            }
        });
        Ok(pin)
    }

    /// Removes the cached copy of `piece` and returns the bytes it held (0 when there is
    /// none); [`Error::PieceInUse`] while a deal reads it.
    pub fn remove(&self, piece: &Cid) -> Result<u64, Error> {
        let mut entries = self.inner.entries();
        let Some(entry) = entries.get(piece) else {
            return Ok(0);
        };
        if entry.pins.load(Ordering::Acquire) > 0 {
            return Err(Error::PieceInUse(Box::new(*piece)));
        }
        let size = entry.size;
        let path = entry.path.clone();
        entries.remove(piece);
        remove_files(&path);
        Ok(size)
    }
}

/// Removes the least recently used complete entries nobody holds until `extra` more bytes
/// fit under `max`.
fn evict(entries: &mut HashMap<Cid, Arc<Entry>>, max: u64, extra: u64) -> Result<(), Error> {
    let mut total: u64 = entries.values().map(|e| e.size).sum();
    if total.saturating_add(extra) <= max {
        return Ok(());
    }
    let mut idle: Vec<(u64, Cid)> = entries
        .values()
        .filter(|e| e.pins.load(Ordering::Acquire) == 0 && e.is_done())
        .map(|e| (e.last_used.load(Ordering::Relaxed), e.piece))
        .collect();
    idle.sort();
    for (_, piece) in idle {
        if total.saturating_add(extra) <= max {
            break;
        }
        if let Some(e) = entries.remove(&piece) {
            tracing::debug!(piece = %piece, bytes = e.size, "unsealed cache: evicting");
            total -= e.size;
            remove_files(&e.path);
        }
    }
    if total.saturating_add(extra) > max {
        return Err(Error::CacheFull {
            needed: extra,
            max,
            in_use: total,
        });
    }
    Ok(())
}

/// Copies the unsealed bytes into the entry's `.part` file in 1 MiB steps, publishing
/// each, then syncs and renames it to its final name.
fn copy_in(
    reader: crate::sector::PieceReader,
    entry: &Entry,
    handle: tokio::runtime::Handle,
) -> Result<(), Error> {
    use std::os::unix::fs::FileExt;
    use tokio::io::AsyncReadExt;
    let mut reader = reader;
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    while written < entry.size {
        let want = ((entry.size - written) as usize).min(buf.len());
        let mut got = 0;
        while got < want {
            let n = handle.block_on(reader.read(&mut buf[got..want]))?;
            if n == 0 {
                return Err(Error::Unseal(format!(
                    "the sector gave {} of {} bytes",
                    written + got as u64,
                    entry.size
                )));
            }
            got += n;
        }
        entry.file.write_all_at(&buf[..want], written)?;
        written += want as u64;
        entry.set(Fill::Writing(written));
    }
    entry.file.sync_data()?;
    std::fs::rename(part_path(&entry.path), &entry.path)?;
    // The time of use, from the clock uses are stamped with (writes stamp a coarser one).
    let _ = entry.file.set_modified(SystemTime::now());
    Ok(())
}
