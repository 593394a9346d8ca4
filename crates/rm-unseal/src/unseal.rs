//! The unsealer: from a payload CID to the piece that holds it, opened for reading
//! ([`Unsealer::open`]), or loaded block by block into a blockstore ([`Unsealer::load`]).
//!
//! [`Unsealer::open`] is what deals use: it returns a [`PieceBlocks`] that reads each
//! block where it lies — in the sector file when the sector store can read it at any
//! offset, else in the node's unsealed cache, which one unseal per piece fills while
//! blocks already written are served ([`crate::cache`]). Nothing is copied per deal and
//! the first block is read at once, whatever the size of the piece. Open pieces are
//! counted ([`Unsealer::in_use`]) so a piece is not removed while a deal reads it.
//!
//! [`Unsealer::load`] copies a whole piece into a blockstore:
//! As go-fil-markets' `blockunsealing` (`retrievalmarket/impl/blockunsealing`): find the pieces that hold the
//! payload (only the one the deal names, if it names one), unseal the first that works —
//! trying each sector that holds it, preferring sectors that need no unseal — read the
//! piece as a CAR, verify every block against its CID, and put them all in the
//! destination blockstore.
//!
//! A piece loaded into the node's blockstore is remembered (in its own keyspace), so
//! the next deal for the same payload starts at once. Concurrent loads of one piece wait
//! for each other instead of unsealing twice, and at most [`MAX_CONCURRENT_UNSEALS`]
//! pieces are unsealed at once. A load is accepted only if the CAR ends exactly where the
//! piece's data ends.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use cid::Cid;
use rm_blockio::Blockstore;
use rm_blockio::car;
use rm_store::Keyspace;
use tokio::io::AsyncReadExt;

use crate::Error;
use crate::cache::{Pin, UnsealedCache};
use crate::fr32::PaddedPieceSize;
use crate::piecestore::{PieceInfo, PieceStore};
use crate::sector::{FileSectorStore, PieceReader, SectorAccess};
use crate::source::{Lease, PieceBlocks, PieceData, SourceKind};

/// Keyspace of the pieces already loaded into the node's blockstore.
pub const LOADED_KEYSPACE: &str = "unsealed-pieces";

/// What a load did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The piece the blocks came from.
    pub piece_cid: Cid,
    /// Blocks put into the blockstore (0 when it held the piece already).
    pub blocks: u64,
    /// Bytes of block data put.
    pub bytes: u64,
    /// False when nothing had to be unsealed.
    pub unsealed: bool,
}

/// What [`Unsealer::remove_piece`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// The piece.
    pub piece_cid: Cid,
    /// The roots of its CAR (empty when its bytes could not be read).
    pub roots: Vec<Cid>,
    /// Block locations removed.
    pub blocks: u64,
    /// Blocks no piece holds any more (deleted from the blockstore the piece was loaded
    /// into, if any).
    pub orphaned: u64,
    /// Bytes of the cached copy removed.
    pub cache_bytes: u64,
    /// Bytes of disk freed in sector files.
    pub sector_bytes: u64,
}

/// Counts of a removal in progress.
#[derive(Default)]
struct Tally {
    blocks: u64,
    orphaned: u64,
}

impl Tally {
    fn remove(
        &mut self,
        shared: &Shared,
        piece: &Cid,
        cids: impl IntoIterator<Item = Cid>,
        loaded: &Option<Arc<dyn Blockstore>>,
    ) -> Result<(), Error> {
        let cids: Vec<Cid> = cids.into_iter().collect();
        if cids.is_empty() {
            return Ok(());
        }
        let (changed, gone) = shared.pieces.remove_piece_block_locations(piece, cids)?;
        self.blocks += changed as u64;
        self.orphaned += gone.len() as u64;
        if let Some(store) = loaded {
            for cid in &gone {
                store.delete(cid)?;
            }
        }
        Ok(())
    }
}

/// Most pieces unsealed at once by one [`Unsealer`]; further loads wait. Each holds two
/// blocking threads and a few MiB of buffers.
pub const MAX_CONCURRENT_UNSEALS: usize = 4;

/// Finds, unseals and loads pieces. Cheap to share (`Arc`).
pub struct Unsealer {
    shared: Arc<Shared>,
}

struct Shared {
    pieces: Arc<PieceStore>,
    sectors: Arc<dyn SectorAccess>,
    loaded: Keyspace,
    /// One lock per piece being loaded; entries are removed when no load holds them.
    locks: Mutex<HashMap<Cid, Arc<tokio::sync::Mutex<()>>>>,
    /// Bounds the unseals running at once.
    permits: Arc<tokio::sync::Semaphore>,
    /// Where pieces that cannot be read at random are unsealed to.
    cache: Option<UnsealedCache>,
    /// Sector files open for direct reads, shared by the deals reading a piece.
    open: Mutex<HashMap<Cid, std::sync::Weak<dyn PieceData>>>,
    /// Readers of each piece ([`PieceBlocks`] alive).
    readers: Mutex<HashMap<Cid, usize>>,
}

/// An open piece's hold: counts it as read, and pins its cache entry.
struct PieceLease {
    shared: Arc<Shared>,
    piece: Cid,
    pin: Option<Arc<Pin>>,
}

impl PieceLease {
    fn new(shared: &Arc<Shared>, piece: Cid) -> Self {
        *lock(&shared.readers).entry(piece).or_default() += 1;
        Self {
            shared: Arc::clone(shared),
            piece,
            pin: None,
        }
    }
}

impl Drop for PieceLease {
    fn drop(&mut self) {
        let mut readers = lock(&self.shared.readers);
        if let Some(n) = readers.get_mut(&self.piece) {
            *n -= 1;
            if *n == 0 {
                readers.remove(&self.piece);
            }
        }
    }
}

impl Lease for PieceLease {
    fn invalidate(&self) {
        match &self.pin {
            Some(pin) => pin.invalidate(),
            None => {
                lock(&self.shared.open).remove(&self.piece);
            }
        }
    }

    fn ready(&self, upto: u64) -> futures::future::BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            match &self.pin {
                Some(pin) => pin.ready(upto).await,
                None => Ok(()),
            }
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A piece reader that holds an unseal permit until it is dropped.
struct Permitted {
    inner: PieceReader,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for Permitted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner.as_mut().poll_read(cx, buf)
    }
}

impl std::fmt::Debug for Unsealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsealer")
            .field("pieces", &self.shared.pieces)
            .finish_non_exhaustive()
    }
}

/// A blocking `Read` over an async reader, for the CAR parser on a blocking thread.
struct Blocking {
    inner: PieceReader,
    handle: tokio::runtime::Handle,
}

impl Read for Blocking {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.handle.block_on(self.inner.read(buf))
    }
}

impl Unsealer {
    /// An unsealer over `pieces` and `sectors`, remembering pieces loaded by
    /// [`Unsealer::load`] in `loaded` (for a node: [`LOADED_KEYSPACE`] of its database),
    /// with no unsealed cache: [`Unsealer::open`] then serves only pieces the sector
    /// store can read at random.
    pub fn new(pieces: Arc<PieceStore>, sectors: Arc<dyn SectorAccess>, loaded: Keyspace) -> Self {
        Self::with_cache(pieces, sectors, loaded, None)
    }

    /// Like [`Unsealer::new`], unsealing pieces that cannot be read at random into
    /// `cache`.
    pub fn with_cache(
        pieces: Arc<PieceStore>,
        sectors: Arc<dyn SectorAccess>,
        loaded: Keyspace,
        cache: Option<UnsealedCache>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                pieces,
                sectors,
                loaded,
                locks: Mutex::new(HashMap::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_UNSEALS)),
                cache,
                open: Mutex::new(HashMap::new()),
                readers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The unsealed cache, if there is one.
    pub fn cache(&self) -> Option<&UnsealedCache> {
        self.shared.cache.as_ref()
    }

    /// How many readers ([`PieceBlocks`]) have `piece` open.
    pub fn in_use(&self, piece: &Cid) -> usize {
        lock(&self.shared.readers).get(piece).copied().unwrap_or(0)
    }

    /// Whether a piece was loaded into a blockstore by [`Unsealer::load`].
    pub fn is_loaded(&self, piece: &Cid) -> Result<bool, Error> {
        self.shared.loaded(piece)
    }

    /// Forgets that a piece was loaded by [`Unsealer::load`].
    pub fn forget_loaded(&self, piece: &Cid) -> Result<(), Error> {
        Ok(self.shared.loaded.delete(&piece.to_bytes())?)
    }

    /// Removes a piece: its block locations and records from the piece store, its cached
    /// copy, its bytes in `sectors` (punched out of the sector files: see
    /// [`FileSectorStore::discard`]), and, if [`Unsealer::load`] copied it into
    /// `loaded_into`, the blocks there that no other piece holds. Refused while a deal
    /// reads the piece ([`Error::PieceInUse`]).
    ///
    /// The piece's blocks are found by walking its CAR's section headers where its bytes
    /// can be read without an unseal (a sector file, a cached copy), else by reading every
    /// block record. Block records go first and the piece record last: removing again
    /// after a crash finishes the job.
    pub async fn remove_piece(
        &self,
        piece: &Cid,
        sectors: Option<&FileSectorStore>,
        loaded_into: Option<Arc<dyn Blockstore>>,
    ) -> Result<Removed, Error> {
        let shared = &self.shared;
        let info = shared.pieces.get_piece_info(piece)?;
        if self.in_use(piece) > 0 {
            return Err(Error::PieceInUse(Box::new(*piece)));
        }
        let data_size = shared.pieces.data_size(piece)?;
        let data = self.readable(&info).await?;
        let loaded = match loaded_into {
            Some(store) if shared.loaded(piece)? => Some(store),
            _ => None,
        };
        let walk_shared = Arc::clone(shared);
        let walk_piece = *piece;
        let walk_loaded = loaded.clone();
        let walked = tokio::task::spawn_blocking(move || {
            let mut tally = Tally::default();
            let roots = match data {
                Some(data) => {
                    let mut batch = Vec::new();
                    let roots = crate::source::walk_sections(data.as_ref(), data_size, |cid, _| {
                        batch.push(cid);
                        if batch.len() >= 8192 {
                            tally.remove(&walk_shared, &walk_piece, batch.drain(..), &walk_loaded)?;
                        }
                        Ok(())
                    });
                    tally.remove(&walk_shared, &walk_piece, batch, &walk_loaded)?;
                    match roots {
                        Ok(roots) => Some(roots),
                        Err(e) => {
                            tracing::warn!(piece = %walk_piece, error = %e, "walking the piece failed; reading every block record");
                            None
                        }
                    }
                }
                None => None,
            };
            // Whatever the walk missed (or all of it): from the block records.
            let rest = walk_shared.pieces.blocks_in_piece(&walk_piece)?;
            tally.remove(&walk_shared, &walk_piece, rest, &walk_loaded)?;
            Ok::<_, Error>((tally, roots.unwrap_or_default()))
        })
        .await
        .map_err(|e| Error::Unseal(format!("removal task: {e}")))?;
        let (tally, roots) = walked?;
        shared.pieces.remove_piece(piece)?;
        lock(&shared.open).remove(piece);
        let cache_bytes = match &shared.cache {
            Some(cache) => cache.remove(piece)?,
            None => 0,
        };
        let mut sector_bytes = 0;
        if let Some(sectors) = sectors {
            for deal in &info.deals {
                let Ok(length) = PaddedPieceSize::new(deal.length) else {
                    continue;
                };
                sector_bytes += sectors.discard(&crate::sector::Placement {
                    sector: deal.sector_id,
                    offset: deal.offset,
                    length,
                })?;
            }
        }
        if loaded.is_some() {
            self.forget_loaded(piece)?;
        }
        Ok(Removed {
            piece_cid: *piece,
            roots,
            blocks: tally.blocks,
            orphaned: tally.orphaned,
            cache_bytes,
            sector_bytes,
        })
    }

    /// The piece's bytes if they can be read without an unseal: from a sector file, or a
    /// complete copy in the unsealed cache.
    pub async fn readable(&self, info: &PieceInfo) -> Result<Option<Arc<dyn PieceData>>, Error> {
        let shared = &self.shared;
        for (sector, offset, length) in shared.sectors_in_order(info).await {
            if let Ok(Some(d)) = shared.sectors.open_unsealed(sector, offset, length).await {
                return Ok(Some(d));
            }
        }
        if let Some(cache) = &shared.cache {
            let size = match shared.pieces.data_size(&info.piece_cid)? {
                Some(size) => size,
                None => piece_size(info)?.unpadded().get(),
            };
            if let Some(pin) = cache.get(&info.piece_cid, size).filter(Pin::is_complete) {
                return Ok(Some(Arc::new(pin)));
            }
        }
        Ok(None)
    }

    /// The roots of the piece's CAR, if its bytes can be read without an unseal
    /// ([`Unsealer::readable`]).
    pub async fn roots(&self, info: &PieceInfo) -> Result<Option<Vec<Cid>>, Error> {
        let Some(data) = self.readable(info).await? else {
            return Ok(None);
        };
        tokio::task::spawn_blocking(move || crate::source::car_roots(data.as_ref()).map(Some))
            .await
            .map_err(|e| Error::Unseal(format!("reading the CAR header: {e}")))?
    }

    /// Opens a piece holding `payload` (only `piece`, if given) for reading its blocks
    /// where they lie (see the module docs): the first piece that opens, in the piece
    /// store's order.
    pub async fn open(&self, payload: &Cid, piece: Option<&Cid>) -> Result<PieceBlocks, Error> {
        let infos = self.pieces_for(payload, piece)?;
        let mut last = Error::NoSectors;
        for info in infos {
            match self.open_piece(&info).await {
                Ok(blocks) => return Ok(blocks),
                Err(e) => {
                    tracing::warn!(piece = %info.piece_cid, error = %e, "piece did not open");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Opens the piece of `info` for reading: straight from a sector that can be read at
    /// random, else from the unsealed cache (starting its unseal unless it is there or
    /// under way).
    pub async fn open_piece(&self, info: &PieceInfo) -> Result<PieceBlocks, Error> {
        let shared = &self.shared;
        let piece = info.piece_cid;
        let mut lease = PieceLease::new(shared, piece);
        let blocks = |kind, data: Arc<dyn PieceData>, lease: PieceLease| {
            PieceBlocks::new(
                piece,
                kind,
                data,
                Arc::clone(&shared.pieces),
                Box::new(lease),
            )
        };
        let open = lock(&shared.open)
            .get(&piece)
            .and_then(std::sync::Weak::upgrade);
        if let Some(data) = open {
            return Ok(blocks(SourceKind::Sector, data, lease));
        }
        if info.deals.is_empty() {
            return Err(Error::NoSectors);
        }
        let mut last = Error::NoSectors;
        for (sector, offset, length) in shared.sectors_in_order(info).await {
            match shared.sectors.open_unsealed(sector, offset, length).await {
                Ok(Some(data)) => {
                    lock(&shared.open).insert(piece, Arc::downgrade(&data));
                    return Ok(blocks(SourceKind::Sector, data, lease));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(sector, error = %e, "direct read failed; trying the next sector");
                    last = e;
                }
            }
        }
        let Some(cache) = &shared.cache else {
            return Err(match last {
                Error::NoSectors => Error::Unseal(
                    "the sector store cannot read the piece at random and there is no unsealed cache"
                        .into(),
                ),
                e => Error::UnsealPiece(Box::new(e)),
            });
        };
        let size = match shared.pieces.data_size(&piece)? {
            Some(size) => size,
            None => piece_size(info)?.unpadded().get(),
        };
        let pin = match cache.get(&piece, size) {
            Some(pin) => pin,
            None => {
                let unsealer = Arc::clone(shared);
                let info = info.clone();
                let unseal = Box::pin(async move {
                    let permit = Arc::clone(&unsealer.permits)
                        .acquire_owned()
                        .await
                        .map_err(|e| Error::Unseal(e.to_string()))?;
                    let reader: PieceReader = Box::pin(Permitted {
                        inner: unsealer.unseal_piece(&info).await?,
                        _permit: permit,
                    });
                    Ok(reader)
                });
                cache.fill(piece, size, unseal)?
            }
        };
        let pin = Arc::new(pin);
        lease.pin = Some(Arc::clone(&pin));
        Ok(blocks(SourceKind::Cache, pin, lease))
    }

    /// The piece store.
    pub fn piece_store(&self) -> &PieceStore {
        &self.shared.pieces
    }

    /// The pieces holding `payload` (only `piece`, if given, and only if it holds it), in
    /// the piece store's order. Not found is an error ([`Error::is_not_found`]).
    pub fn pieces_for(&self, payload: &Cid, piece: Option<&Cid>) -> Result<Vec<PieceInfo>, Error> {
        let lookup = |e: Error| Error::Lookup(Box::new(e));
        let pieces = &self.shared.pieces;
        let cid_info = pieces.get_cid_info(payload).map_err(lookup)?;
        let mut out: Vec<PieceInfo> = Vec::new();
        for location in &cid_info.piece_block_locations {
            if piece.is_some_and(|p| *p != location.piece_cid)
                || out.iter().any(|i| i.piece_cid == location.piece_cid)
            {
                continue;
            }
            match pieces.get_piece_info(&location.piece_cid) {
                Ok(info) => out.push(info),
                // A location left by a piece removal cut short: not a piece any more.
                Err(Error::PieceNotFound(_)) => {}
                Err(e) => return Err(lookup(e)),
            }
        }
        match (out.is_empty(), piece) {
            (true, Some(p)) => Err(lookup(Error::PieceNotFound(Box::new(*p)))),
            (true, None) => Err(lookup(Error::PayloadNotFound(Box::new(*payload)))),
            _ => Ok(out),
        }
    }

    /// Unseals the piece of `info` from the first of its sectors that works, preferring
    /// sectors that hold it unsealed.
    pub async fn unseal_piece(&self, info: &PieceInfo) -> Result<PieceReader, Error> {
        self.shared.unseal_piece(info).await
    }

    /// Loads the blocks of a piece holding `payload` into `into` (see the module docs).
    ///
    /// Each piece's load runs as its own task: if the caller goes away (a deal's task is
    /// stopped when its client reconnects), the load still finishes and is remembered, and
    /// the next caller waits for it instead of unsealing again.
    pub async fn load(
        &self,
        payload: &Cid,
        piece: Option<&Cid>,
        into: Arc<dyn Blockstore>,
    ) -> Result<Loaded, Error> {
        let infos = self.pieces_for(payload, piece)?;
        let mut last = Error::NoSectors;
        for info in infos {
            let shared = Arc::clone(&self.shared);
            let into = Arc::clone(&into);
            let payload = *payload;
            let task = tokio::spawn(async move { shared.load_piece(info, payload, into).await });
            match task.await {
                Ok(Ok(loaded)) => return Ok(loaded),
                Ok(Err(e)) => last = e,
                Err(e) => last = Error::Unseal(format!("loader task: {e}")),
            }
        }
        Err(last)
    }
}

impl Shared {
    fn loaded(&self, piece: &Cid) -> Result<bool, Error> {
        Ok(self.loaded.contains(&piece.to_bytes())?)
    }

    fn mark_loaded(&self, piece: &Cid) -> Result<(), Error> {
        Ok(self.loaded.put(&piece.to_bytes(), &[])?)
    }

    fn lock_for(&self, piece: &Cid) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Forget locks nobody holds or waits for.
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        Arc::clone(locks.entry(*piece).or_default())
    }

    /// Unseals the piece of `info` from the first of its sectors that works, preferring
    /// sectors that hold it unsealed.
    /// The sectors holding the piece of `info` with valid sizes, those holding it
    /// unsealed first.
    async fn sectors_in_order(&self, info: &PieceInfo) -> Vec<(u64, u64, PaddedPieceSize)> {
        let mut deals = Vec::new();
        for deal in &info.deals {
            let Ok(length) = PaddedPieceSize::new(deal.length) else {
                continue;
            };
            let fast = self
                .sectors
                .is_unsealed(deal.sector_id, deal.offset, length)
                .await
                .unwrap_or(false);
            deals.push((!fast, deal.sector_id, deal.offset, length));
        }
        deals.sort_by_key(|d| d.0);
        deals.into_iter().map(|(_, s, o, l)| (s, o, l)).collect()
    }

    async fn unseal_piece(&self, info: &PieceInfo) -> Result<PieceReader, Error> {
        if info.deals.is_empty() {
            return Err(Error::NoSectors);
        }
        let mut last = info
            .deals
            .iter()
            .find_map(|d| PaddedPieceSize::new(d.length).err())
            .unwrap_or(Error::NoSectors);
        for (sector, offset, length) in self.sectors_in_order(info).await {
            match self.sectors.unseal(sector, offset, length).await {
                Ok(reader) => return Ok(reader),
                Err(e) => {
                    tracing::debug!(sector, error = %e, "unseal failed; trying the next sector");
                    last = e;
                }
            }
        }
        Err(Error::UnsealPiece(Box::new(last)))
    }

    async fn load_piece(
        &self,
        info: PieceInfo,
        payload: Cid,
        into: Arc<dyn Blockstore>,
    ) -> Result<Loaded, Error> {
        let lock = self.lock_for(&info.piece_cid);
        let _held = lock.lock().await;
        if self.loaded(&info.piece_cid)? && into.has(&payload)? {
            return Ok(Loaded {
                piece_cid: info.piece_cid,
                blocks: 0,
                bytes: 0,
                unsealed: false,
            });
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| Error::Unseal(e.to_string()))?;
        let reader = self.unseal_piece(&info).await?;
        let data_size = self.pieces.data_size(&info.piece_cid)?;
        match load_car(reader, into, payload, data_size).await {
            Ok((blocks, bytes)) => {
                self.mark_loaded(&info.piece_cid)?;
                Ok(Loaded {
                    piece_cid: info.piece_cid,
                    blocks,
                    bytes,
                    unsealed: true,
                })
            }
            Err(e) => {
                tracing::warn!(piece = %info.piece_cid, error = %e, "piece did not load");
                Err(e)
            }
        }
    }
}

/// The padded size of a piece, from its first deal with a valid size.
fn piece_size(info: &PieceInfo) -> Result<PaddedPieceSize, Error> {
    info.deals
        .iter()
        .find_map(|d| PaddedPieceSize::new(d.length).ok())
        .ok_or(Error::NoSectors)
}

/// Reads a CAR from `reader` on a blocking thread, putting its verified blocks into
/// `into` in batches; the payload must be among them. The CAR must end where the piece's
/// data ends: at `data_size` when known, else where only zero fill follows (a zero byte
/// where a section should start, from corruption, is then caught). Returns (blocks, bytes).
async fn load_car(
    reader: PieceReader,
    into: Arc<dyn Blockstore>,
    payload: Cid,
    data_size: Option<u64>,
) -> Result<(u64, u64), Error> {
    let handle = tokio::runtime::Handle::current();
    let read_car = |e| Error::ReadCar(Box::new(e));
    let work = move || -> Result<(u64, u64), Error> {
        let input = Blocking {
            inner: reader,
            handle,
        };
        let mut car = car::Reader::new(input)
            .map_err(read_car)?
            .zero_length_as_eof(true);
        let (mut blocks, mut bytes, mut has_payload) = (0u64, 0u64, false);
        let mut batch = Vec::new();
        let mut batch_bytes = 0usize;
        while let Some((cid, data)) = car.next_block().map_err(read_car)? {
            has_payload |= cid.hash() == payload.hash();
            blocks += 1;
            bytes += data.len() as u64;
            batch_bytes += data.len();
            batch.push((cid, rm_blockio::Bytes::from(data)));
            if batch_bytes >= 8 << 20 || batch.len() >= 1024 {
                into.put_many(&batch)?;
                batch.clear();
                batch_bytes = 0;
            }
        }
        into.put_many(&batch)?;
        let end = car.position();
        match data_size {
            Some(size) if size != end => {
                return Err(Error::Unseal(format!(
                    "the piece's CAR ends at byte {end}, its data is {size} bytes"
                )));
            }
            Some(_) => {}
            None => {
                // Everything after the CAR must be zero fill.
                let mut rest = car.into_inner();
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = rest.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    if buf[..n].iter().any(|b| *b != 0) {
                        return Err(Error::Unseal(format!(
                            "the piece's CAR ends at byte {end} but data follows"
                        )));
                    }
                }
            }
        }
        if !has_payload {
            return Err(Error::PayloadNotInPiece(Box::new(payload)));
        }
        Ok((blocks, bytes))
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Unseal(format!("loader task: {e}")))?
}
