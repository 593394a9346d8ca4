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
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use rm_store::{Durability, Keyspace, WriteBatch};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

use crate::Error;
use crate::fr32::{self, PADDED_CHUNK, PaddedPieceSize, UNPADDED_CHUNK};

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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            miner_id: 1000,
            sector_size: PaddedPieceSize::new(32 << 30).unwrap_or(PaddedPieceSize::MIN),
            read_chunk: 1 << 20,
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
        let placement = self.allocate(length)?;
        let path = self.path(placement.sector);
        let created = !path.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.seek(SeekFrom::Start(placement.offset))?;
        let chunks = (1 << 20) / UNPADDED_CHUNK;
        let mut input = vec![0u8; chunks * UNPADDED_CHUNK];
        let mut output = vec![0u8; chunks * PADDED_CHUNK];
        let mut left = len;
        let mut written = 0u64;
        while left > 0 {
            let want = (input.len() as u64).min(left) as usize;
            data.read_exact(&mut input[..want])?;
            left -= want as u64;
            let whole = want.div_ceil(UNPADDED_CHUNK);
            input[want..whole * UNPADDED_CHUNK].fill(0);
            fr32::pad_into(
                &input[..whole * UNPADDED_CHUNK],
                &mut output[..whole * PADDED_CHUNK],
            )?;
            file.write_all(&output[..whole * PADDED_CHUNK])?;
            written += (whole * PADDED_CHUNK) as u64;
        }
        // The rest of the piece is zeros: bytes the file already has there are overwritten,
        // the rest is a hole.
        let end = placement.offset + length.get();
        let data_end = placement.offset + written;
        let old_len = file.metadata()?.len();
        if old_len > data_end {
            let stale = old_len.min(end) - data_end;
            file.seek(SeekFrom::Start(data_end))?;
            io::copy(&mut io::repeat(0).take(stale), &mut file)?;
        }
        if old_len < end {
            file.set_len(end)?;
        }
        file.sync_all()?;
        if created {
            // The new file's directory entry must reach the disk too.
            std::fs::File::open(self.dir.join("unsealed"))?.sync_all()?;
        }
        Ok(placement)
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
