//! Import: a CAR becomes a piece in a sector, recorded in the piece store.
//!
//! [`import_car`] reads the CAR once. Each 4 MiB of it goes three ways at the same time:
//! to worker threads computing the piece commitment ([`ParallelHasher`], one per core), to
//! a thread that parses the CAR and verifies every block against its CID (noting where
//! each block lies), and, Fr32-padded, into the sector at a freshly allocated offset.
//! When the piece turns out to be stored already, the new copy is freed again (its
//! offsets are not reused); otherwise the data size, the block locations and last the
//! deal are recorded.
//! [`import_path`] first builds the UnixFS DAG of a file or directory (in a scratch
//! blockstore that holds no more than an index in memory) and exports it as a CAR in
//! traversal order, which is what a provider serves. A single file with raw leaves (every
//! preset here) takes a shorter way: its leaves stay in the file, read again from there when
//! the CAR is made, and the CAR streams from that export straight into the one pass above,
//! so the file's bytes are written once, into the sector (`import/file.rs`).

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use cid::Cid;
use rm_blockio::blockstore::{Blockstore, ScratchBlockstore};
use rm_blockio::unixfs::{self, Preset};
use rm_blockio::{Selector, car};

use crate::Error;
use crate::commp::{Commitment, PARALLEL_UNIT, ParallelHasher};
use crate::fr32::PaddedPieceSize;
use crate::piecestore::{BlockLocation, DealInfo, PieceStore};
use crate::sector::{FileSectorStore, PieceWriter, Placement};

mod file;

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
    /// False when the piece was stored already and nothing was kept of this import.
    pub written: bool,
}

/// A stage of an import, as [`Progress`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Building the UnixFS DAG of a file or directory: bytes of blocks made.
    UnixFs,
    /// Writing the DAG as a CAR into the staging directory: bytes written.
    Car,
    /// Reading the CAR once to verify it and compute its piece commitment, without
    /// writing: the CAR looks like a piece held already.
    Verify,
    /// Reading the CAR once to verify it, compute its piece commitment and write it,
    /// Fr32-padded, into a sector (one pass does all three).
    Write,
    /// Recording where each block lies: bytes of the location list the pass made.
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
    /// [`Stage::UnixFs`], the CAR's size for [`Stage::Verify`] and [`Stage::Write`], the
    /// location list's size for [`Stage::Index`]).
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
    fn put_many(
        &self,
        blocks: &[(Cid, rm_blockio::Bytes)],
    ) -> Result<(), rm_blockio::blockstore::Error> {
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

/// What the verifying parse of a CAR found.
struct Scan {
    payload_cid: Cid,
    blocks: u64,
    has_root: bool,
    /// Where the last section ends.
    end: u64,
    /// Every block's CID and location, in order (see [`write_location`]).
    locations: std::fs::File,
}

/// Imports the CAR file at `path` as a piece (see the module docs).
///
/// The CAR is read once; it must not change meanwhile (its length is checked). Memory
/// is a few units of 4 MiB per core, whatever the CAR's size: block locations go to an
/// unnamed temporary file until the piece CID is known. The piece's deal is recorded
/// last: a piece is found only once everything is in place.
pub fn import_car(
    pieces: &PieceStore,
    sectors: &FileSectorStore,
    path: &Path,
) -> Result<Imported, Error> {
    import_car_with_progress(pieces, sectors, path, &mut |_| {})
}

/// [`import_car`], reporting its progress ([`Stage::Verify`] or [`Stage::Write`], then
/// [`Stage::Index`]) to `report`.
pub fn import_car_with_progress(
    pieces: &PieceStore,
    sectors: &FileSectorStore,
    path: &Path,
    mut report: Report<'_>,
) -> Result<Imported, Error> {
    let file = std::fs::File::open(path)?;
    let car_size = file.metadata()?.len();
    if looks_stored(pieces, path, car_size)
        && let Some(stored) = find_stored(
            pieces,
            sectors,
            std::fs::File::open(path)?,
            car_size,
            &mut report,
        )?
    {
        return Ok(stored);
    }
    write_piece(
        pieces,
        sectors,
        std::fs::File::open(path)?,
        car_size,
        report,
    )
}

/// Reads the CAR `input` yields, `car_size` bytes, once to verify it and compute its piece
/// commitment, without writing: the piece held already, if it is one (then nothing more is
/// done), else `None`.
fn find_stored(
    pieces: &PieceStore,
    sectors: &FileSectorStore,
    input: impl Read,
    car_size: u64,
    report: &mut Report<'_>,
) -> Result<Option<Imported>, Error> {
    let piece_size = PaddedPieceSize::for_data(car_size)?;
    let mut counter = Counter::new(Stage::Verify, Some(car_size), report);
    let (scan, commitment, read) = one_pass(input, piece_size, None, &mut counter)?;
    drop(counter);
    if read == car_size
        && scan.has_root
        && scan.end == car_size
        && let Some(stored) = stored_placement(pieces, sectors, &commitment.cid())?
    {
        return Ok(Some(Imported {
            payload_cid: scan.payload_cid,
            piece_cid: commitment.cid(),
            car_size,
            piece_size,
            blocks: scan.blocks,
            placement: stored,
            written: false,
        }));
    }
    Ok(None)
}

/// Writes the CAR `input` yields, `car_size` bytes, as a new piece in one pass (verified,
/// CommP, Fr32-padded into a sector), then records it, unless the piece turns out to be
/// stored already.
fn write_piece(
    pieces: &PieceStore,
    sectors: &FileSectorStore,
    input: impl Read,
    car_size: u64,
    mut report: Report<'_>,
) -> Result<Imported, Error> {
    let piece_size = PaddedPieceSize::for_data(car_size)?;
    let mut writer = sectors.piece_writer(piece_size)?;
    let mut counter = Counter::new(Stage::Write, Some(car_size), &mut report);
    let (scan, commitment, read) = one_pass(input, piece_size, Some(&mut writer), &mut counter)?;
    drop(counter);
    if read != car_size {
        return Err(Error::Import(
            "the CAR changed while it was being imported".into(),
        ));
    }
    if !scan.has_root {
        return Err(Error::Import(format!(
            "the CAR does not hold its root {}",
            scan.payload_cid
        )));
    }
    if scan.end != car_size {
        return Err(Error::Import("trailing bytes after the CAR".into()));
    }
    let piece_cid = commitment.cid();
    let imported = |placement, written| Imported {
        payload_cid: scan.payload_cid,
        piece_cid,
        car_size,
        piece_size,
        blocks: scan.blocks,
        placement,
        written,
    };
    // One import at a time decides whether the piece is new and records it.
    let _recording = sectors.recording.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(stored) = stored_placement(pieces, sectors, &piece_cid)? {
        // Dropping the writer frees the copy just written.
        drop(writer);
        return Ok(imported(stored, false));
    }
    let placement = writer.finish()?;
    pieces.set_data_size(&piece_cid, car_size)?;
    let list_size = scan.locations.metadata()?.len();
    let mut locations = BufReader::with_capacity(
        1 << 16,
        Counting {
            inner: scan.locations,
            counter: Counter::new(Stage::Index, Some(list_size), &mut report),
        },
    );
    let mut batch = Vec::with_capacity(LOCATION_BATCH);
    while let Some(entry) = read_location(&mut locations)? {
        batch.push(entry);
        if batch.len() == LOCATION_BATCH {
            pieces.add_piece_block_locations(&piece_cid, batch.drain(..))?;
        }
    }
    pieces.add_piece_block_locations(&piece_cid, batch)?;
    pieces.add_deal_for_piece(
        &piece_cid,
        DealInfo {
            deal_id: LOCAL_DEAL_ID,
            sector_id: placement.sector,
            offset: placement.offset,
            length: placement.length.get(),
        },
    )?;
    Ok(imported(placement, true))
}

/// Whether the CAR at `path` has the root and the size of a piece held already (then an
/// import most likely finds it stored). Any doubt is a no.
fn looks_stored(pieces: &PieceStore, path: &Path, car_size: u64) -> bool {
    let root = std::fs::File::open(path)
        .ok()
        .and_then(|f| car::Reader::new(f).ok())
        .and_then(|r| r.roots().first().copied());
    root.is_some_and(|root| root_looks_stored(pieces, &root, car_size))
}

/// Whether a CAR of `car_size` bytes with `root` looks like a piece held already.
fn root_looks_stored(pieces: &PieceStore, root: &Cid, car_size: u64) -> bool {
    let Ok(info) = pieces.get_cid_info(root) else {
        return false;
    };
    info.piece_block_locations.iter().any(|l| {
        pieces.data_size(&l.piece_cid).ok().flatten() == Some(car_size)
            && pieces.get_piece_info(&l.piece_cid).is_ok()
    })
}

/// Reads `file` (a CAR) to its end in units of [`PARALLEL_UNIT`] bytes: CommP on every
/// core, the CAR parsed and verified on a thread of its own, the bytes padded into `writer` (if
/// any), the bytes read counted into `progress`. Returns the scan, the commitment over
/// `piece_size` and the bytes read.
fn one_pass(
    mut file: impl Read,
    piece_size: PaddedPieceSize,
    mut writer: Option<&mut PieceWriter<'_>>,
    progress: &mut Counter<'_, '_>,
) -> Result<(Scan, Commitment, u64), Error> {
    let (units, from_reader) = mpsc::sync_channel::<Arc<Vec<u8>>>(4);
    let (give_back, spare) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let verifier = scope.spawn(move || {
            let input = UnitReader {
                units: from_reader,
                current: None,
                pos: 0,
                give_back,
            };
            scan_car(input)
        });
        let mut hasher = ParallelHasher::per_core();
        let mut read = 0u64;
        let fed: Result<(), Error> = (|| {
            loop {
                let mut buf = spare
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(PARALLEL_UNIT));
                buf.resize(PARALLEL_UNIT, 0);
                let n = read_full(&mut file, &mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                read += n as u64;
                progress.add(n as u64);
                hasher.update(&buf);
                if let Some(w) = writer.as_mut() {
                    w.write(&buf)?;
                }
                if units.send(Arc::new(buf)).is_err() {
                    // The verifier stopped: its error says why.
                    return Ok(());
                }
            }
        })();
        drop(units);
        let scan = verifier
            .join()
            .unwrap_or_else(|_| Err(Error::Import("the CAR verifier panicked".into())));
        fed?;
        let scan = scan?;
        Ok((scan, hasher.finish_with_size(piece_size)?, read))
    })
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A `Read` over units arriving on a channel; each finished unit goes back for reuse.
struct UnitReader {
    units: mpsc::Receiver<Arc<Vec<u8>>>,
    current: Option<Arc<Vec<u8>>>,
    pos: usize,
    give_back: mpsc::Sender<Vec<u8>>,
}

impl Read for UnitReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(unit) = &self.current {
                if self.pos < unit.len() {
                    let n = (unit.len() - self.pos).min(buf.len());
                    buf[..n].copy_from_slice(&unit[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
                if let Some(done) = self.current.take().and_then(|u| Arc::try_unwrap(u).ok()) {
                    let _ = self.give_back.send(done);
                }
            }
            match self.units.recv() {
                Ok(unit) => {
                    self.current = Some(unit);
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
    }
}

/// Parses and verifies a CAR, writing every block's location to a temporary file.
fn scan_car(input: impl Read) -> Result<Scan, Error> {
    let mut reader = car::Reader::new(input)?;
    let payload_cid = *reader
        .roots()
        .first()
        .ok_or_else(|| Error::Import("the CAR has no root".into()))?;
    let mut out = BufWriter::with_capacity(1 << 16, tempfile::tempfile()?);
    let (mut blocks, mut has_root) = (0u64, false);
    while let Some(section) = reader.next_section()? {
        has_root |= section.cid.hash() == payload_cid.hash();
        blocks += 1;
        write_location(
            &mut out,
            &section.cid,
            BlockLocation {
                rel_offset: section.data_offset,
                block_size: section.data.len() as u64,
            },
        )?;
    }
    let end = reader.position();
    let mut locations = out.into_inner().map_err(|e| e.into_error())?;
    std::io::Seek::rewind(&mut locations)?;
    Ok(Scan {
        payload_cid,
        blocks,
        has_root,
        end,
        locations,
    })
}

/// One location entry: CID length (u16), CID bytes, offset and size (u64, big-endian).
fn write_location(out: &mut impl Write, cid: &Cid, at: BlockLocation) -> std::io::Result<()> {
    let bytes = cid.to_bytes();
    out.write_all(&(bytes.len() as u16).to_be_bytes())?;
    out.write_all(&bytes)?;
    out.write_all(&at.rel_offset.to_be_bytes())?;
    out.write_all(&at.block_size.to_be_bytes())
}

fn read_location(input: &mut impl BufRead) -> Result<Option<(Cid, BlockLocation)>, Error> {
    if input.fill_buf()?.is_empty() {
        return Ok(None);
    }
    let mut len = [0u8; 2];
    input.read_exact(&mut len)?;
    let mut cid = vec![0u8; u16::from_be_bytes(len) as usize];
    input.read_exact(&mut cid)?;
    let cid = Cid::try_from(&cid[..]).map_err(|e| Error::Corrupt(format!("location: {e}")))?;
    let mut n = [0u8; 8];
    input.read_exact(&mut n)?;
    let rel_offset = u64::from_be_bytes(n);
    input.read_exact(&mut n)?;
    let block_size = u64::from_be_bytes(n);
    Ok(Some((
        cid,
        BlockLocation {
            rel_offset,
            block_size,
        },
    )))
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
            inner: BufWriter::with_capacity(1 << 20, file.as_file()),
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
    if preset.raw_leaves && std::fs::symlink_metadata(path)?.is_file() {
        return file::import_file(pieces, sectors, path, preset, &scratch, report);
    }
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
