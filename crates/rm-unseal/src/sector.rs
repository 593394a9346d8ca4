//! Sector access: reading a piece's unpadded bytes back out of a sector.
//!
//! [`SectorAccess`] is what a node plugs in: a Lotus or Curio node unseals through its
//! miner API; the embedded default is [`FileSectorStore`], which keeps *unsealed sector
//! files* named and laid out as Lotus keeps its data — `unsealed/s-t0<miner>-<sector>`, each piece
//! Fr32-padded at its padded offset, pieces aligned to their padded size. There is no
//! sealing (no replication, no proofs): the embedded store is for providers that keep
//! unsealed copies, and for development and tests.
//!
//! Reads go through a thread that reads padded chunks and unpads them, feeding a bounded
//! channel; the reader the caller gets is async and holds at most a few MiB.
//!
//! Lotus also appends a trailer to a partially unsealed file (a bitfield of the ranges that
//! hold data); these files have the same data layout without it.

use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rm_blockio::blockstore::punch_hole;
use rm_store::{Durability, Keyspace, WriteBatch};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

use crate::Error;
use crate::fr32::{self, PADDED_CHUNK, PaddedPieceSize, UNPADDED_CHUNK};
use crate::source::PieceData;

/// A sector number.
pub type SectorNumber = u64;

/// An async reader of a piece's unpadded bytes.
pub type PieceReader = Pin<Box<dyn AsyncRead + Send>>;

/// A boxed future, for the dyn-compatible [`SectorAccess`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Access to sectors: how the unsealing loader gets a piece's bytes.
///
/// Implementations must return exactly `length.unpadded()` bytes, or an error.
pub trait SectorAccess: Send + Sync + 'static {
    /// The unpadded bytes of the piece at padded `offset` and padded `length` in `sector`
    /// (`length.unpadded()` bytes: the piece's data followed by its zero fill).
    fn unseal(
        &self,
        sector: SectorNumber,
        offset: u64,
        length: PaddedPieceSize,
    ) -> BoxFuture<'_, Result<PieceReader, Error>>;

    /// Whether the piece can be read without a (slow) unseal.
    fn is_unsealed(
        &self,
        sector: SectorNumber,
        offset: u64,
        length: PaddedPieceSize,
    ) -> BoxFuture<'_, Result<bool, Error>>;

    /// Random access to the piece's unpadded bytes, when the store keeps an unsealed copy
    /// it can read at any offset ([`FileSectorStore`] does). `None` (the default): the
    /// piece must be read from the start with [`SectorAccess::unseal`], and a node caches
    /// it ([`crate::cache::UnsealedCache`]) to serve blocks from it.
    fn open_unsealed(
        &self,
        sector: SectorNumber,
        offset: u64,
        length: PaddedPieceSize,
    ) -> BoxFuture<'_, Result<Option<Arc<dyn PieceData>>, Error>> {
        let _ = (sector, offset, length);
        Box::pin(async { Ok(None) })
    }
}

/// Settings of a [`FileSectorStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The miner actor id in file names (`s-t0<miner>-<sector>`). Default 1000, the id of
    /// the first miner on a devnet.
    pub miner_id: u64,
    /// The sector size; a piece may not be larger. Default 32 GiB (files are sparse and
    /// grow with the pieces written).
    pub sector_size: PaddedPieceSize,
    /// Padded bytes read per chunk when unsealing. Default 1 MiB.
    pub read_chunk: usize,
    /// Whether deals read blocks straight from the sector files
    /// ([`SectorAccess::open_unsealed`]). Default true; false makes the store behave like
    /// one that can only stream a piece from its start (a sealed sector), so pieces are
    /// copied into the node's unsealed cache first: for sector files on slow storage.
    pub direct_reads: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            miner_id: 1000,
            sector_size: PaddedPieceSize::new(32 << 30).unwrap_or(PaddedPieceSize::MIN),
            read_chunk: 1 << 20,
            direct_reads: true,
        }
    }
}

impl Config {
    /// With another sector size.
    pub fn with_sector_size(mut self, size: PaddedPieceSize) -> Self {
        self.sector_size = size;
        self
    }

    /// With another miner id.
    pub fn with_miner_id(mut self, id: u64) -> Self {
        self.miner_id = id;
        self
    }

    /// With or without direct reads of pieces ([`Config::direct_reads`]).
    pub fn with_direct_reads(mut self, direct: bool) -> Self {
        self.direct_reads = direct;
        self
    }
}

/// Where a piece was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The sector.
    pub sector: SectorNumber,
    /// Padded offset in the sector.
    pub offset: u64,
    /// Padded length.
    pub length: PaddedPieceSize,
}

/// The open sector and the next free padded offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    sector: SectorNumber,
    next: u64,
}

const CURSOR_KEY: &[u8] = b"cursor";

/// Unsealed sector files in a directory, with the allocation cursor in a keyspace.
pub struct FileSectorStore {
    dir: PathBuf,
    config: Config,
    meta: Keyspace,
    /// The allocation cursor; its lock serialises writers.
    cursor: Mutex<Cursor>,
    /// Held while an import checks whether its piece is stored and records it, so two
    /// imports of the same piece record it once.
    pub(crate) recording: Mutex<()>,
}

impl std::fmt::Debug for FileSectorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSectorStore")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FileSectorStore {
    /// The keyspace name nodes use for the allocation cursor.
    pub const DEFAULT_KEYSPACE: &'static str = "sector-meta";

    /// Opens the store in `dir` (sector files go to `dir/unsealed/`), keeping its cursor in
    /// `meta`.
    pub fn open(dir: impl AsRef<Path>, meta: Keyspace, config: Config) -> Result<Self, Error> {
        let cursor = match meta.get(CURSOR_KEY)? {
            Some(v) if v.len() == 16 => Cursor {
                sector: u64::from_be_bytes(v[..8].try_into().unwrap_or_default()),
                next: u64::from_be_bytes(v[8..].try_into().unwrap_or_default()),
            },
            Some(_) => return Err(Error::Corrupt("sector cursor".into())),
            None => Cursor { sector: 1, next: 0 },
        };
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(dir.join("unsealed"))?;
        Ok(Self {
            dir,
            config,
            meta,
            cursor: Mutex::new(cursor),
            recording: Mutex::new(()),
        })
    }

    /// The store's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The unsealed file of `sector`: `unsealed/s-t0<miner>-<sector>`, as Lotus names it.
    pub fn path(&self, sector: SectorNumber) -> PathBuf {
        self.dir
            .join("unsealed")
            .join(format!("s-t0{}-{}", self.config.miner_id, sector))
    }

    /// Reserves room for a piece of padded size `length` (aligned to its size) and
    /// persists the reservation before anything is written: a crash can waste the room,
    /// never hand it out twice.
    fn allocate(&self, length: PaddedPieceSize) -> Result<Placement, Error> {
        if length > self.config.sector_size {
            return Err(Error::PieceTooLarge {
                piece: length.get(),
                sector: self.config.sector_size.get(),
            });
        }
        let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let size = length.get();
        let mut at = Cursor {
            sector: cursor.sector,
            next: cursor.next.div_ceil(size) * size,
        };
        if at.next + size > self.config.sector_size.get() {
            at = Cursor {
                sector: cursor.sector + 1,
                next: 0,
            };
        }
        let after = Cursor {
            sector: at.sector,
            next: at.next + size,
        };
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&after.sector.to_be_bytes());
        v[8..].copy_from_slice(&after.next.to_be_bytes());
        let mut batch = WriteBatch::new();
        batch.put(&self.meta, CURSOR_KEY, &v);
        self.meta.db().write(batch, Durability::Machine)?;
        *cursor = after;
        Ok(Placement {
            sector: at.sector,
            offset: at.next,
            length,
        })
    }

    /// Writes `len` unpadded bytes from `data` as a piece of padded size `length`: Fr32
    /// padded at a fresh aligned offset, zero-filled to the end of the piece, and synced
    /// to disk before returning.
    pub fn write_piece(
        &self,
        mut data: impl Read,
        len: u64,
        length: PaddedPieceSize,
    ) -> Result<Placement, Error> {
        if len > length.unpadded().get() {
            return Err(Error::InvalidSize(format!(
                "{len} bytes do not fit a piece of {length} bytes"
            )));
        }
        let mut writer = self.piece_writer(length)?;
        let mut input = vec![0u8; (1 << 20) / UNPADDED_CHUNK * UNPADDED_CHUNK];
        let mut left = len;
        while left > 0 {
            let want = (input.len() as u64).min(left) as usize;
            data.read_exact(&mut input[..want])?;
            writer.write(&input[..want])?;
            left -= want as u64;
        }
        writer.finish()
    }

    /// Allocates room for a piece of padded size `length` and returns a writer of its
    /// unpadded bytes. Dropped without [`PieceWriter::finish`], it frees what it wrote
    /// ([`FileSectorStore::discard`]); the allocated offsets are not handed out again.
    pub fn piece_writer(&self, length: PaddedPieceSize) -> Result<PieceWriter<'_>, Error> {
        let placement = self.allocate(length)?;
        let path = self.path(placement.sector);
        let created = !path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        Ok(PieceWriter {
            store: self,
            file,
            placement,
            created,
            data: 0,
            padded: 0,
            tail: Vec::with_capacity(UNPADDED_CHUNK),
            buf: Vec::new(),
            finished: false,
        })
    }

    /// Frees the disk space of the piece at `placement` (punches it out of the sector
    /// file; the file keeps its length and reads zeros there) and returns the bytes of
    /// disk freed. Only whole file-system blocks inside the piece are freed; the offsets
    /// are not reused. Nothing to free (no file) is 0.
    pub fn discard(&self, placement: &Placement) -> Result<u64, Error> {
        let path = self.path(placement.sector);
        let file = match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let before = disk_usage(&file)?;
        punch_hole(&file, placement.offset, placement.length.get())?;
        Ok(before.saturating_sub(disk_usage(&file)?))
    }
}

/// Bytes of disk a file occupies (allocated blocks, not its length).
pub fn disk_usage(file: &std::fs::File) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(file.metadata()?.blocks() * 512)
}

/// Writes one piece's unpadded bytes into its sector, Fr32-padding them on the way
/// ([`FileSectorStore::piece_writer`]).
pub struct PieceWriter<'a> {
    store: &'a FileSectorStore,
    file: std::fs::File,
    placement: Placement,
    created: bool,
    /// Unpadded bytes taken, and padded bytes written.
    data: u64,
    padded: u64,
    /// Bytes short of a whole 127-byte chunk, kept for the next write.
    tail: Vec<u8>,
    buf: Vec<u8>,
    finished: bool,
}

impl std::fmt::Debug for PieceWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceWriter")
            .field("placement", &self.placement)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

impl PieceWriter<'_> {
    /// Where the piece goes.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Appends unpadded bytes; more than the piece holds is an error.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), Error> {
        if self.data + data.len() as u64 > self.placement.length.unpadded().get() {
            return Err(Error::InvalidSize(format!(
                "more than {} bytes for a piece of {} bytes",
                self.placement.length.unpadded().get(),
                self.placement.length
            )));
        }
        self.data += data.len() as u64;
        if !self.tail.is_empty() {
            let take = (UNPADDED_CHUNK - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < UNPADDED_CHUNK {
                return Ok(());
            }
            let chunk = std::mem::take(&mut self.tail);
            self.write_chunks(&chunk)?;
            self.tail = chunk;
            self.tail.clear();
        }
        let whole = data.len() / UNPADDED_CHUNK * UNPADDED_CHUNK;
        self.write_chunks(&data[..whole])?;
        self.tail.extend_from_slice(&data[whole..]);
        Ok(())
    }

    /// Pads and writes whole chunks.
    fn write_chunks(&mut self, chunks: &[u8]) -> Result<(), Error> {
        use std::os::unix::fs::FileExt;
        if chunks.is_empty() {
            return Ok(());
        }
        let out = chunks.len() / UNPADDED_CHUNK * PADDED_CHUNK;
        self.buf.resize(out, 0);
        fr32::pad_into(chunks, &mut self.buf)?;
        self.file
            .write_all_at(&self.buf, self.placement.offset + self.padded)?;
        self.padded += out as u64;
        Ok(())
    }

    /// Zero-fills the rest of the piece (a hole where the file had nothing), syncs the
    /// file (and its directory when it is new) and returns where the piece is.
    pub fn finish(mut self) -> Result<Placement, Error> {
        if !self.tail.is_empty() {
            let mut chunk = std::mem::take(&mut self.tail);
            chunk.resize(UNPADDED_CHUNK, 0);
            self.write_chunks(&chunk)?;
        }
        let file = &mut self.file;
        // The rest of the piece is zeros: bytes the file already has there are
        // overwritten, the rest is a hole.
        let end = self.placement.offset + self.placement.length.get();
        let data_end = self.placement.offset + self.padded;
        let old_len = file.metadata()?.len();
        if old_len > data_end {
            let stale = old_len.min(end) - data_end;
            file.seek(SeekFrom::Start(data_end))?;
            io::copy(&mut io::repeat(0).take(stale), file)?;
        }
        if old_len < end {
            file.set_len(end)?;
        }
        file.sync_all()?;
        if self.created {
            // The new file's directory entry must reach the disk too.
            std::fs::File::open(self.store.dir.join("unsealed"))?.sync_all()?;
        }
        self.finished = true;
        Ok(self.placement)
    }
}

impl Drop for PieceWriter<'_> {
    fn drop(&mut self) {
        if !self.finished
            && let Err(e) = punch_hole(
                &self.file,
                self.placement.offset,
                self.placement.length.get(),
            )
        {
            tracing::warn!(error = %e, "freeing an abandoned piece write");
        }
    }
}

impl SectorAccess for FileSectorStore {
    fn unseal(
        &self,
        sector: SectorNumber,
        offset: u64,
        length: PaddedPieceSize,
    ) -> BoxFuture<'_, Result<PieceReader, Error>> {
        let path = self.path(sector);
        let chunk = self.config.read_chunk.max(PADDED_CHUNK) / PADDED_CHUNK * PADDED_CHUNK;
        Box::pin(async move {
            // Messages name the sector, not the path: they may reach a client.
            let file = std::fs::File::open(&path).map_err(|e| {
                tracing::warn!(path = %path.display(), error = %e, "sector file");
                Error::Unseal(format!("sector {sector}: {e}"))
            })?;
            let have = file.metadata()?.len();
            if have < offset.saturating_add(length.get()) {
                return Err(Error::Unseal(format!(
                    "sector {sector} holds {have} bytes, the piece ends at {}",
                    offset.saturating_add(length.get())
                )));
            }
            Ok(unpadding_reader(file, offset, length.get(), chunk))
        })
    }

    fn is_unsealed(
        &self,
        sector: SectorNumber,
        offset: u64,
        length: PaddedPieceSize,
    ) -> BoxFuture<'_, Result<bool, Error>> {
        let path = self.path(sector);
        Box::pin(async move {
            match std::fs::metadata(&path) {
                Ok(m) => Ok(m.len() >= offset.saturating_add(length.get())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn open_unsealed(
        &self,
        sector: SectorNumber,
        offset: u64,
        length: PaddedPieceSize,
    ) -> BoxFuture<'_, Result<Option<Arc<dyn PieceData>>, Error>> {
        let path = self.path(sector);
        let direct = self.config.direct_reads;
        Box::pin(async move {
            if !direct {
                return Ok(None);
            }
            let file = std::fs::File::open(&path).map_err(|e| {
                tracing::warn!(path = %path.display(), error = %e, "sector file");
                Error::Unseal(format!("sector {sector}: {e}"))
            })?;
            let have = file.metadata()?.len();
            if have < offset.saturating_add(length.get()) {
                return Err(Error::Unseal(format!(
                    "sector {sector} holds {have} bytes, the piece ends at {}",
                    offset.saturating_add(length.get())
                )));
            }
            let data: Arc<dyn PieceData> = Arc::new(SectorPiece {
                file,
                offset,
                length,
            });
            Ok(Some(data))
        })
    }
}

/// A piece read at any offset straight from an unsealed sector file: the padded chunks
/// covering a range are read and unpadded.
struct SectorPiece {
    file: std::fs::File,
    offset: u64,
    length: PaddedPieceSize,
}

impl PieceData for SectorPiece {
    fn size(&self) -> u64 {
        self.length.unpadded().get()
    }

    fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let end = at.saturating_add(buf.len() as u64);
        if end > self.size() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("bytes {at}..{end} of a piece of {} bytes", self.size()),
            ));
        }
        if buf.is_empty() {
            return Ok(());
        }
        let (first, last) = (
            at / UNPADDED_CHUNK as u64,
            end.div_ceil(UNPADDED_CHUNK as u64),
        );
        let chunks = usize::try_from(last - first)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "range too large"))?;
        let mut padded = vec![0u8; chunks * PADDED_CHUNK];
        self.file
            .read_exact_at(&mut padded, self.offset + first * PADDED_CHUNK as u64)?;
        let mut unpadded = vec![0u8; chunks * UNPADDED_CHUNK];
        fr32::unpad_into(&padded, &mut unpadded)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let skip = (at - first * UNPADDED_CHUNK as u64) as usize;
        buf.copy_from_slice(&unpadded[skip..skip + buf.len()]);
        Ok(())
    }
}

/// Reads `length` padded bytes at `offset` of `file` on a blocking thread, unpadding them
/// in chunks of `chunk` padded bytes (rounded to whole 128-byte chunks) into a channel of
/// four chunks. `length` must be a whole number of 128-byte chunks.
pub(crate) fn unpadding_reader(
    file: std::fs::File,
    offset: u64,
    length: u64,
    chunk: usize,
) -> PieceReader {
    let chunk = (chunk / PADDED_CHUNK).max(1) * PADDED_CHUNK;
    let expected = length / PADDED_CHUNK as u64 * UNPADDED_CHUNK as u64;
    let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>(4);
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let mut padded = vec![0u8; chunk];
        let mut at = offset;
        let end = offset.saturating_add(length);
        while at < end {
            let n = ((end - at) as usize).min(chunk);
            let result = file.read_exact_at(&mut padded[..n], at).and_then(|()| {
                let mut out = vec![0u8; n / PADDED_CHUNK * UNPADDED_CHUNK];
                fr32::unpad_into(&padded[..n], &mut out)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                Ok(out)
            });
            let failed = result.is_err();
            // The reader was dropped: stop.
            if tx.blocking_send(result).is_err() || failed {
                return;
            }
            at += n as u64;
        }
    });
    Box::pin(ChannelReader {
        rx,
        current: Vec::new(),
        pos: 0,
        remaining: expected,
    })
}

/// An `AsyncRead` over a channel of byte chunks that must add up to `remaining` bytes: a
/// producer that stops early (it failed, or the runtime is shutting down) is an
/// `UnexpectedEof`, never a short piece read as a whole one.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
    remaining: u64,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.pos < self.current.len() {
                let n = (self.current.len() - self.pos).min(buf.remaining());
                let pos = self.pos;
                buf.put_slice(&self.current[pos..pos + n]);
                self.pos += n;
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                    self.current = chunk;
                    self.pos = 0;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) if self.remaining > 0 => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the sector reader stopped {} bytes short", self.remaining),
                    )));
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn meta() -> Keyspace {
        Keyspace::memory(FileSectorStore::DEFAULT_KEYSPACE)
    }

    fn store(config: Config) -> (tempfile::TempDir, FileSectorStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSectorStore::open(dir.path(), meta(), config).unwrap();
        (dir, store)
    }

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    async fn read_all(mut r: PieceReader) -> Vec<u8> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn pieces_are_padded_at_aligned_offsets_and_read_back() {
        let small = PaddedPieceSize::new(4096).unwrap();
        let config = Config::default()
            .with_sector_size(PaddedPieceSize::new(16384).unwrap())
            .with_miner_id(1234);
        let dir = tempfile::tempdir().unwrap();
        let meta = meta();
        let store = FileSectorStore::open(dir.path(), meta.clone(), config).unwrap();
        let a = data(1000, 1);
        let pa = store
            .write_piece(
                &a[..],
                a.len() as u64,
                PaddedPieceSize::for_data(1000).unwrap(),
            )
            .unwrap();
        assert_eq!((pa.sector, pa.offset, pa.length.get()), (1, 0, 1024));
        let b = data(3000, 2);
        let pb = store.write_piece(&b[..], b.len() as u64, small).unwrap();
        // Aligned to its own size: after the 1 KiB piece, the next 4 KiB boundary.
        assert_eq!((pb.sector, pb.offset), (1, 4096));
        assert!(store.path(1).ends_with("unsealed/s-t01234-1"));
        // On disk: exactly the Fr32 padding of the data, then zeros.
        let file = std::fs::read(store.path(1)).unwrap();
        let padded = fr32::pad(&b);
        assert_eq!(&file[4096..4096 + padded.len()], &padded[..]);
        assert!(file[4096 + padded.len()..8192].iter().all(|x| *x == 0));

        let got = read_all(store.unseal(1, 4096, small).await.unwrap()).await;
        assert_eq!(got.len() as u64, small.unpadded().get());
        assert_eq!(&got[..b.len()], &b[..]);
        assert!(got[b.len()..].iter().all(|x| *x == 0));
        assert!(store.is_unsealed(1, 4096, small).await.unwrap());

        // Two more 4 KiB pieces fill sector 1; the next starts sector 2.
        store.write_piece(&b[..], b.len() as u64, small).unwrap();
        let last = store.write_piece(&b[..], b.len() as u64, small).unwrap();
        assert_eq!((last.sector, last.offset), (1, 12288));
        let next = store.write_piece(&b[..], b.len() as u64, small).unwrap();
        assert_eq!((next.sector, next.offset), (2, 0));
        let too_big = PaddedPieceSize::new(32768).unwrap();
        assert!(matches!(
            store.write_piece(&b[..], b.len() as u64, too_big),
            Err(Error::PieceTooLarge { .. })
        ));

        // The cursor survives a reopen.
        drop(store);
        let store = FileSectorStore::open(dir.path(), meta, config).unwrap();
        let after = store.write_piece(&b[..], b.len() as u64, small).unwrap();
        assert_eq!((after.sector, after.offset), (2, 4096));
    }

    #[tokio::test]
    async fn unsealing_a_missing_or_short_sector_fails_cleanly() {
        let (_dir, store) = store(Config::default());
        let size = PaddedPieceSize::new(1024).unwrap();
        assert!(matches!(
            store.unseal(9, 0, size).await,
            Err(Error::Unseal(_))
        ));
        assert!(!store.is_unsealed(9, 0, size).await.unwrap());
        let a = data(500, 3);
        let p = store.write_piece(&a[..], 500, size).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(store.path(p.sector))
            .unwrap();
        f.set_len(512).unwrap();
        assert!(matches!(
            store.unseal(p.sector, 0, size).await,
            Err(Error::Unseal(_))
        ));
    }

    #[tokio::test]
    async fn the_reader_streams_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let padded = fr32::pad(&data(127 * 100, 5));
        let path = dir.path().join("f");
        std::fs::write(&path, &padded).unwrap();
        let r = unpadding_reader(
            std::fs::File::open(&path).unwrap(),
            0,
            padded.len() as u64,
            384,
        );
        assert_eq!(read_all(r).await, data(127 * 100, 5));
    }

    #[tokio::test]
    async fn a_reader_cut_short_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, fr32::pad(&data(127 * 10, 1))).unwrap();
        // Ask for more than the file holds: the thread fails, the reader says so.
        let mut r = unpadding_reader(std::fs::File::open(&path).unwrap(), 0, 128 * 20, 256);
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_short_input_is_an_error() {
        let (_dir, store) = store(Config::default());
        let size = PaddedPieceSize::new(1024).unwrap();
        assert!(store.write_piece(&[1u8; 10][..], 500, size).is_err());
        assert!(store.write_piece(&[1u8; 10][..], 2000, size).is_err());
    }
}
