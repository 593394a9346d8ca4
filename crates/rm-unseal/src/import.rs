//! Import: a CAR becomes a piece in a sector, recorded in the piece store.
//!
//! [`import_car`] reads the CAR once to verify every block, note where each block lies and
//! compute the piece commitment, then (unless the piece is stored already) writes it
//! Fr32-padded into a sector and records the deal and the block locations.
//! [`import_path`] first builds the UnixFS DAG of a file or directory (in a scratch
//! blockstore that holds no more than an index in memory) and exports it as a CAR in
//! traversal order, which is what a provider unseals and serves.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Mutex;

use cid::Cid;
use rm_blockio::blockstore::{Blockstore, ScratchBlockstore};
use rm_blockio::unixfs::{self, Preset};
use rm_blockio::{Selector, car};

use crate::Error;
use crate::commp::Hasher;
use crate::fr32::PaddedPieceSize;
use crate::piecestore::{BlockLocation, DealInfo, PieceStore};
use crate::sector::{FileSectorStore, Placement};

/// The deal id recorded for data imported locally (there is no storage deal).
pub const LOCAL_DEAL_ID: u64 = 0;

/// What an import produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// The payload root (the CAR's first root).
    pub payload_cid: Cid,
    /// The piece CID (CommP of the CAR).
    pub piece_cid: Cid,
    /// The CAR's size: the piece's data before padding.
    pub car_size: u64,
    /// The padded piece size.
    pub piece_size: PaddedPieceSize,
    /// Blocks in the CAR.
    pub blocks: u64,
    /// Where the piece lies.
    pub placement: Placement,
    /// False when the piece was stored already and nothing was written.
    pub written: bool,
}

/// Feeds every byte read through to a CommP hasher.
struct Hashing<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A stage of an import, as [`Progress`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Building the UnixFS DAG of a file or directory: bytes of blocks made.
    UnixFs,
    /// Writing the DAG as a CAR into the staging directory: bytes written.
    Car,
    /// Reading the CAR to verify it and compute its piece commitment.
    Verify,
    /// Writing the piece, Fr32-padded, into a sector.
    Write,
    /// Recording where each block lies.
    Index,
}

impl Stage {
    /// The stage's name: `unixfs`, `car`, `verify`, `write` or `index`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::UnixFs => "unixfs",
            Stage::Car => "car",
            Stage::Verify => "verify",
            Stage::Write => "write",
            Stage::Index => "index",
        }
    }
}

/// How far an import is: reported by [`import_path_with_progress`] and
/// [`import_car_with_progress`] at least every [`PROGRESS_STEP`] bytes of each stage and
/// when a stage ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The stage.
    pub stage: Stage,
    /// Bytes the stage has done.
    pub bytes: u64,
    /// Bytes the stage will do in all, when known (the input file's size for
    /// [`Stage::UnixFs`], the CAR's size for the last three stages).
    pub total_bytes: Option<u64>,
}

/// Bytes between two [`Progress`] reports of one stage.
pub const PROGRESS_STEP: u64 = 1 << 20;

/// Where progress reports go.
pub type Report<'a> = &'a mut (dyn FnMut(Progress) + Send);

/// Counts the bytes of a stage and reports them every [`PROGRESS_STEP`].
struct Counter<'a, 'r> {
    stage: Stage,
    bytes: u64,
    reported: u64,
    total_bytes: Option<u64>,
    report: &'a mut Report<'r>,
}

impl<'a, 'r> Counter<'a, 'r> {
    fn new(stage: Stage, total_bytes: Option<u64>, report: &'a mut Report<'r>) -> Self {
        report(Progress {
            stage,
            bytes: 0,
            total_bytes,
        });
        Counter {
            stage,
            bytes: 0,
            reported: 0,
            total_bytes,
            report,
        }
    }

    fn add(&mut self, n: u64) {
        self.bytes += n;
        if self.bytes - self.reported >= PROGRESS_STEP {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.reported = self.bytes;
        (self.report)(Progress {
            stage: self.stage,
            bytes: self.bytes,
            total_bytes: self.total_bytes,
        });
    }
}

impl Drop for Counter<'_, '_> {
    fn drop(&mut self) {
        if self.reported != self.bytes {
            self.flush();
        }
    }
}

/// A reader that counts what it reads.
struct Counting<'a, 'r, R> {
    inner: R,
    counter: Counter<'a, 'r>,
}

impl<R: Read> Read for Counting<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.add(n as u64);
        Ok(n)
    }
}

/// A writer that counts what it writes.
struct CountingWriter<'a, 'r, W> {
    inner: W,
    counter: Counter<'a, 'r>,
}

impl<W: Write> Write for CountingWriter<'_, '_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.counter.add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A blockstore that counts the bytes of the blocks put into it.
struct CountingStore<'a, 'b, 'r> {
    inner: &'b dyn Blockstore,
    counter: Mutex<Counter<'a, 'r>>,
}

impl CountingStore<'_, '_, '_> {
    fn count(&self, n: u64) {
        self.counter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(n);
    }
}

impl Blockstore for CountingStore<'_, '_, '_> {
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, rm_blockio::blockstore::Error> {
        self.inner.get(cid)
    }
    fn has(&self, cid: &Cid) -> Result<bool, rm_blockio::blockstore::Error> {
        self.inner.has(cid)
    }
    fn size(&self, cid: &Cid) -> Result<Option<u64>, rm_blockio::blockstore::Error> {
        self.inner.size(cid)
    }
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), rm_blockio::blockstore::Error> {
        self.inner.put(cid, data)?;
        self.count(data.len() as u64);
        Ok(())
    }
    fn put_many(&self, blocks: &[(Cid, Vec<u8>)]) -> Result<(), rm_blockio::blockstore::Error> {
        self.inner.put_many(blocks)?;
        self.count(blocks.iter().map(|(_, d)| d.len() as u64).sum());
        Ok(())
    }
    fn delete(&self, cid: &Cid) -> Result<(), rm_blockio::blockstore::Error> {
        self.inner.delete(cid)
    }
}

/// Block locations recorded per piece-store write while importing.
const LOCATION_BATCH: usize = 8192;

/// Imports the CAR file at `path` as a piece (see the module docs).
///
/// The file is read three times: to verify it and compute its commitment; to write it
/// into a sector (hashed again: a file that changed in between is refused); and to record
/// where each block lies, in batches, so memory does not grow with the number of blocks.
/// The piece's deal is recorded last: a piece is found only once everything is in place.
pub fn import_car(
    pieces: &PieceStore,
    sectors: &FileSectorStore,
    path: &Path,
) -> Result<Imported, Error> {
    import_car_with_progress(pieces, sectors, path, &mut |_| {})
}

/// [`import_car`], reporting its progress ([`Stage::Verify`], [`Stage::Write`],
/// [`Stage::Index`]) to `report`.
pub fn import_car_with_progress(
    pieces: &PieceStore,
    sectors: &FileSectorStore,
    path: &Path,
    mut report: Report<'_>,
) -> Result<Imported, Error> {
    let file = std::fs::File::open(path)?;
    let size = Some(file.metadata()?.len());
    // The verify stage, in its own scope: its progress counter ends with it.
    let (payload_cid, blocks, car_size, commitment) = {
        let mut input = Hashing {
            inner: Counting {
                inner: file,
                counter: Counter::new(Stage::Verify, size, &mut report),
            },
            hasher: Hasher::new(),
        };
        let mut reader = car::Reader::new(&mut input)?;
        let payload_cid = *reader
            .roots()
            .first()
            .ok_or_else(|| Error::Import("the CAR has no root".into()))?;
        let mut blocks = 0u64;
        let mut has_root = false;
        while let Some(section) = reader.next_section()? {
            has_root |= section.cid.hash() == payload_cid.hash();
            blocks += 1;
        }
        let car_size = reader.position();
        drop(reader);
        if !has_root {
            return Err(Error::Import(format!(
                "the CAR does not hold its root {payload_cid}"
            )));
        }
        if input.hasher.bytes() != car_size {
            return Err(Error::Import("trailing bytes after the CAR".into()));
        }
        (payload_cid, blocks, car_size, input.hasher.finish()?)
    };
    let size = Some(car_size);
    let piece_cid = commitment.cid();
    let piece_size = commitment.size;

    let reuse = stored_placement(pieces, sectors, &piece_cid)?;
    let written = reuse.is_none();
    let placement = match reuse {
        Some(p) => p,
        None => {
            let mut again = Hashing {
                inner: Counting {
                    inner: std::fs::File::open(path)?,
                    counter: Counter::new(Stage::Write, size, &mut report),
                },
                hasher: Hasher::new(),
            };
            let placement = sectors.write_piece(&mut again, car_size, piece_size)?;
            if again.hasher.finish_with_size(piece_size)? != commitment {
                return Err(Error::Import(
                    "the CAR changed while it was being imported".into(),
                ));
            }
            placement
        }
    };
    pieces.set_data_size(&piece_cid, car_size)?;
    let mut reader = car::Reader::new(Counting {
        inner: std::fs::File::open(path)?,
        counter: Counter::new(Stage::Index, size, &mut report),
    })?;
    let mut batch = Vec::with_capacity(LOCATION_BATCH);
    while let Some(section) = reader.next_section()? {
        batch.push((
            section.cid,
            BlockLocation {
                rel_offset: section.data_offset,
                block_size: section.data.len() as u64,
            },
        ));
        if batch.len() == LOCATION_BATCH {
            pieces.add_piece_block_locations(&piece_cid, batch.drain(..))?;
        }
    }
    pieces.add_piece_block_locations(&piece_cid, batch)?;
    if written {
        pieces.add_deal_for_piece(
            &piece_cid,
            DealInfo {
                deal_id: LOCAL_DEAL_ID,
                sector_id: placement.sector,
                offset: placement.offset,
                length: placement.length.get(),
            },
        )?;
    }
    Ok(Imported {
        payload_cid,
        piece_cid,
        car_size,
        piece_size,
        blocks,
        placement,
        written,
    })
}

/// Where the piece is stored already, in a sector file that still holds it.
fn stored_placement(
    pieces: &PieceStore,
    sectors: &FileSectorStore,
    piece_cid: &Cid,
) -> Result<Option<Placement>, Error> {
    let info = match pieces.get_piece_info(piece_cid) {
        Ok(info) => info,
        Err(Error::PieceNotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    for deal in &info.deals {
        let Ok(length) = PaddedPieceSize::new(deal.length) else {
            continue;
        };
        let present = std::fs::metadata(sectors.path(deal.sector_id))
            .map(|m| m.len() >= deal.offset.saturating_add(deal.length))
            .unwrap_or(false);
        if present {
            return Ok(Some(Placement {
                sector: deal.sector_id,
                offset: deal.offset,
                length,
            }));
        }
    }
    Ok(None)
}

/// Exports the DAG under `root` from `store` as a CAR (explore-all, traversal order) into
/// a temporary file in `staging`, and imports that as a piece.
pub fn import_dag(
    pieces: &PieceStore,
    sectors: &FileSectorStore,
    store: &dyn Blockstore,
    root: Cid,
    staging: &Path,
) -> Result<Imported, Error> {
    import_dag_with_progress(pieces, sectors, store, root, staging, &mut |_| {})
}

fn import_dag_with_progress(
    pieces: &PieceStore,
    sectors: &FileSectorStore,
    store: &dyn Blockstore,
    root: Cid,
    staging: &Path,
    mut report: Report<'_>,
) -> Result<Imported, Error> {
    std::fs::create_dir_all(staging)?;
    // Removed when dropped, whichever way the import ends.
    let file = tempfile::Builder::new()
        .prefix("import-")
        .suffix(".car")
        .tempfile_in(staging)?;
    {
        let out = CountingWriter {
            inner: std::io::BufWriter::with_capacity(1 << 20, file.as_file()),
            counter: Counter::new(Stage::Car, None, &mut report),
        };
        car::export(store, root, &Selector::explore_all_recursively(), out)?;
    }
    import_car_with_progress(pieces, sectors, file.path(), report)
}

/// Imports a file or directory as UnixFS with `preset`, then as a piece ([`import_dag`]).
/// The DAG is staged in `staging` and removed afterwards.
pub fn import_path(
    pieces: &PieceStore,
    sectors: &FileSectorStore,
    path: &Path,
    preset: Preset,
    staging: &Path,
) -> Result<Imported, Error> {
    import_path_with_progress(pieces, sectors, path, preset, staging, &mut |_| {})
}

/// [`import_path`], reporting its progress (every [`Stage`]) to `report`.
pub fn import_path_with_progress(
    pieces: &PieceStore,
    sectors: &FileSectorStore,
    path: &Path,
    preset: Preset,
    staging: &Path,
    mut report: Report<'_>,
) -> Result<Imported, Error> {
    std::fs::create_dir_all(staging)?;
    let scratch = ScratchBlockstore::new_in(staging)?;
    let input_size = std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let root = {
        let counting = CountingStore {
            inner: &scratch,
            counter: Mutex::new(Counter::new(Stage::UnixFs, input_size, &mut report)),
        };
        unixfs::import_path(&counting, preset, path)?.root
    };
    import_dag_with_progress(pieces, sectors, &scratch, root, staging, report)
}
