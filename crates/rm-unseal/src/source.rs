//! Serving a piece's blocks where they lie: [`PieceBlocks`] is a read-only [`Blockstore`]
//! over a piece's unpadded bytes ([`PieceData`]), finding each block by the location the
//! piece store recorded at import and checking it against its CID before handing it out.
//!
//! Nothing is loaded ahead: the first block of a deal is read (a few KiB to a few MiB) as
//! soon as the piece is open, whatever the piece's size. The bytes come from the sector
//! file itself when the sector store can read it at any offset
//! ([`SectorAccess::open_unsealed`](crate::SectorAccess::open_unsealed)), else from the
//! node's unsealed cache, which the unseal fills from the start while blocks already
//! written are served ([`crate::cache`]).

use std::io;
use std::sync::Arc;

use cid::Cid;
use rm_blockio::Blockstore;
use rm_blockio::blockstore::Error as StoreError;

use crate::Error;
use crate::piecestore::{BlockLocation, PieceStore};

/// Random access to a piece's unpadded bytes.
pub trait PieceData: Send + Sync {
    /// How many bytes can be read (the piece's unpadded size, or, for a cached piece, its
    /// data without the zero fill).
    fn size(&self) -> u64;

    /// Reads exactly `buf.len()` bytes at unpadded offset `at`. May block until they are
    /// available (a piece still being unsealed); call it from a blocking thread.
    fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// Largest block location followed: a CAR section's cap (go-car's 8 MiB).
pub const MAX_BLOCK_READ: u64 = 8 << 20;

/// Where a piece's bytes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// Straight from an unsealed sector file.
    Sector,
    /// From the node's unsealed cache (filled by an unseal).
    Cache,
}

/// What keeps a piece open: counted by the [`Unsealer`](crate::Unsealer) so a piece is not
/// removed while read, and pinning its cache entry so it is not evicted.
pub(crate) trait Lease: Send + Sync {
    /// The bytes read were wrong: forget them (a cached copy is dropped, so the next
    /// reader unseals again).
    fn invalidate(&self);
    /// Waits until bytes `..upto` can be read without blocking (at once when they can).
    fn ready(&self, upto: u64) -> futures::future::BoxFuture<'_, Result<(), Error>>;
}

/// A read-only [`Blockstore`] over one piece (see the module docs); blocks not in the
/// piece come from an optional fallback store (the node's own blocks).
///
/// Every block read from the piece is hashed and compared with the CID asked for: bytes
/// from disk are not trusted. A mismatch is an error (and drops a cached copy).
pub struct PieceBlocks {
    piece_cid: Cid,
    kind: SourceKind,
    data: Arc<dyn PieceData>,
    pieces: Arc<PieceStore>,
    fallback: Option<Arc<dyn Blockstore>>,
    lease: Box<dyn Lease>,
}

impl std::fmt::Debug for PieceBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceBlocks")
            .field("piece_cid", &self.piece_cid)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

fn store_error(e: Error) -> StoreError {
    match e {
        Error::Db(e) => StoreError::Db(e),
        Error::Io(e) => StoreError::Io(e),
        Error::Blockstore(e) => e,
        other => StoreError::Io(io::Error::other(other.to_string())),
    }
}

impl PieceBlocks {
    pub(crate) fn new(
        piece_cid: Cid,
        kind: SourceKind,
        data: Arc<dyn PieceData>,
        pieces: Arc<PieceStore>,
        lease: Box<dyn Lease>,
    ) -> Self {
        Self {
            piece_cid,
            kind,
            data,
            pieces,
            fallback: None,
            lease,
        }
    }

    /// With `store` answering for blocks the piece does not hold.
    pub fn with_fallback(mut self, store: Arc<dyn Blockstore>) -> Self {
        self.fallback = Some(store);
        self
    }

    /// The piece.
    pub fn piece_cid(&self) -> &Cid {
        &self.piece_cid
    }

    /// Where the bytes come from.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// The piece's bytes, for reads of raw ranges (no verification: the caller checks).
    pub fn data(&self) -> &Arc<dyn PieceData> {
        &self.data
    }

    /// Where `cid` lies in this piece, if it does.
    pub fn location(&self, cid: &Cid) -> Result<Option<BlockLocation>, Error> {
        let info = match self.pieces.get_cid_info(cid) {
            Ok(info) => info,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(info
            .piece_block_locations
            .iter()
            .find(|l| l.piece_cid == self.piece_cid)
            .map(|l| l.location))
    }

    /// Waits (without blocking a thread) until the block of `cid` can be read at once; a
    /// block outside the piece is ready.
    pub async fn ready_for(&self, cid: &Cid) -> Result<(), Error> {
        match self.location(cid)? {
            Some(l) => {
                self.lease
                    .ready(l.rel_offset.saturating_add(l.block_size))
                    .await
            }
            None => Ok(()),
        }
    }

    /// Waits until the whole piece can be read at once.
    pub async fn ready_all(&self) -> Result<(), Error> {
        self.lease.ready(self.data.size()).await
    }

    /// Reads and verifies the block at `location`.
    fn read(&self, cid: &Cid, location: BlockLocation) -> Result<Vec<u8>, StoreError> {
        let end = location.rel_offset.saturating_add(location.block_size);
        if location.block_size > MAX_BLOCK_READ || end > self.data.size() {
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "block {cid}: location {}+{} is outside piece {} ({} bytes) or too large",
                    location.rel_offset,
                    location.block_size,
                    self.piece_cid,
                    self.data.size()
                ),
            )));
        }
        let mut buf = vec![0u8; location.block_size as usize];
        self.data.read_at(location.rel_offset, &mut buf)?;
        if let Err(e) = rm_blockio::codec::verify(cid, &buf) {
            tracing::warn!(piece = %self.piece_cid, block = %cid, error = %e, "a block read from a piece does not match its CID");
            self.lease.invalidate();
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "block {cid} read from piece {} does not match its CID: {e}",
                    self.piece_cid
                ),
            )));
        }
        Ok(buf)
    }
}

fn read_only() -> StoreError {
    StoreError::Io(io::Error::new(
        io::ErrorKind::Unsupported,
        "a piece's blocks are read-only",
    ))
}

impl Blockstore for PieceBlocks {
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
        if cid.hash().code() == rm_blockio::codec::IDENTITY {
            return Ok(Some(cid.hash().digest().to_vec()));
        }
        match self.location(cid).map_err(store_error)? {
            Some(location) => self.read(cid, location).map(Some),
            None => match &self.fallback {
                Some(f) => f.get(cid),
                None => Ok(None),
            },
        }
    }

    fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        if cid.hash().code() == rm_blockio::codec::IDENTITY {
            return Ok(true);
        }
        if self.location(cid).map_err(store_error)?.is_some() {
            return Ok(true);
        }
        match &self.fallback {
            Some(f) => f.has(cid),
            None => Ok(false),
        }
    }

    fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        if cid.hash().code() == rm_blockio::codec::IDENTITY {
            return Ok(Some(cid.hash().digest().len() as u64));
        }
        match self.location(cid).map_err(store_error)? {
            Some(l) => Ok(Some(l.block_size)),
            None => match &self.fallback {
                Some(f) => f.size(cid),
                None => Ok(None),
            },
        }
    }

    fn put(&self, _cid: &Cid, _data: &[u8]) -> Result<(), StoreError> {
        Err(read_only())
    }

    fn delete(&self, _cid: &Cid) -> Result<(), StoreError> {
        Err(read_only())
    }
}

/// Reads a piece's CAR section by section without reading block data: the roots and
/// each block's CID with its location (random access makes this a few small reads per
/// block). Stops at the first zero length (the zero fill) or at `end` (the data size,
/// when known). Used to find a piece's blocks when it is removed.
pub(crate) fn walk_sections(
    data: &dyn PieceData,
    end: Option<u64>,
    mut each: impl FnMut(Cid, BlockLocation) -> Result<(), Error>,
) -> Result<Vec<Cid>, Error> {
    let limit = end.unwrap_or(data.size()).min(data.size());
    let (roots, mut at) = read_header(data, limit)?;
    let mut cid_buf = [0u8; 128];
    while at < limit {
        let Some((len, n)) = read_varint(data, at, limit)? else {
            break;
        };
        if len == 0 {
            break;
        }
        if len > MAX_BLOCK_READ || at + n + len > limit {
            return Err(bad(format!("section of {len} bytes at {at}")));
        }
        let want = (len as usize).min(cid_buf.len());
        data.read_at(at + n, &mut cid_buf[..want])?;
        let mut cursor = io::Cursor::new(&cid_buf[..want]);
        let cid = Cid::read_bytes(&mut cursor).map_err(|e| bad(format!("section at {at}: {e}")))?;
        let cid_len = cursor.position();
        each(
            cid,
            BlockLocation {
                rel_offset: at + n + cid_len,
                block_size: len - cid_len,
            },
        )?;
        at += n + len;
    }
    Ok(roots)
}

fn bad(what: String) -> Error {
    Error::ReadCar(Box::new(rm_blockio::car::Error::BadHeader(what)))
}

/// The roots in the CAR header at the start of a piece's bytes.
pub fn car_roots(data: &dyn PieceData) -> Result<Vec<Cid>, Error> {
    Ok(read_header(data, data.size())?.0)
}

/// The CAR header's roots, and where the first section starts.
fn read_header(data: &dyn PieceData, limit: u64) -> Result<(Vec<Cid>, u64), Error> {
    let (header_len, n) = read_varint(data, 0, limit)?.ok_or_else(|| bad("empty piece".into()))?;
    let max_header = rm_blockio::car::Limits::default().max_header_size;
    if header_len == 0 || header_len > max_header || n + header_len > limit {
        return Err(bad(format!("header of {header_len} bytes")));
    }
    let mut header = vec![0u8; header_len as usize];
    data.read_at(n, &mut header)?;
    Ok((header_roots(&header)?, n + header_len))
}

/// A CAR varint at `at`: (value, bytes), or `None` at `limit`.
fn read_varint(data: &dyn PieceData, at: u64, limit: u64) -> Result<Option<(u64, u64)>, Error> {
    if at >= limit {
        return Ok(None);
    }
    let n = (limit - at).min(10) as usize;
    let mut buf = [0u8; 10];
    data.read_at(at, &mut buf[..n])?;
    match unsigned_varint::decode::u64(&buf[..n]) {
        Ok((v, rest)) => Ok(Some((v, (n - rest.len()) as u64))),
        Err(e) => Err(Error::ReadCar(Box::new(rm_blockio::car::Error::BadHeader(
            format!("varint at {at}: {e}"),
        )))),
    }
}

/// The roots of a CAR v1 header.
fn header_roots(header: &[u8]) -> Result<Vec<Cid>, Error> {
    #[derive(serde::Deserialize)]
    struct Header {
        roots: Vec<Cid>,
    }
    let h: Header = rm_types::codec::from_slice_limited(header, header.len())
        .map_err(|e| Error::ReadCar(Box::new(rm_blockio::car::Error::BadHeader(e.to_string()))))?;
    Ok(h.roots)
}
