//! The unsealing loader: from a payload CID to its blocks in a blockstore.
//!
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
use crate::fr32::PaddedPieceSize;
use crate::piecestore::{PieceInfo, PieceStore};
use crate::sector::{PieceReader, SectorAccess};

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
    permits: tokio::sync::Semaphore,
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
    /// A loader over `pieces` and `sectors`, remembering loaded pieces in `loaded` (for a
    /// node: [`LOADED_KEYSPACE`] of its database).
    pub fn new(pieces: Arc<PieceStore>, sectors: Arc<dyn SectorAccess>, loaded: Keyspace) -> Self {
        Self {
            shared: Arc::new(Shared {
                pieces,
                sectors,
                loaded,
                locks: Mutex::new(HashMap::new()),
                permits: tokio::sync::Semaphore::new(MAX_CONCURRENT_UNSEALS),
            }),
        }
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
            out.push(pieces.get_piece_info(&location.piece_cid).map_err(lookup)?);
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
    async fn unseal_piece(&self, info: &PieceInfo) -> Result<PieceReader, Error> {
        if info.deals.is_empty() {
            return Err(Error::NoSectors);
        }
        let mut deals = Vec::new();
        let mut last = Error::NoSectors;
        for deal in &info.deals {
            let length = match PaddedPieceSize::new(deal.length) {
                Ok(l) => l,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let fast = self
                .sectors
                .is_unsealed(deal.sector_id, deal.offset, length)
                .await
                .unwrap_or(false);
            deals.push((!fast, deal.sector_id, deal.offset, length));
        }
        deals.sort_by_key(|d| d.0);
        for (_, sector, offset, length) in deals {
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
            batch.push((cid, data));
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
