//! The import of one file with raw leaves, the common case, in two reads of the file and
//! one write (the sector's).
//!
//! The general path ([`import_path`](super::import_path) of a directory, or of a file with
//! dag-pb leaves) writes the file three times: its blocks into a scratch store, the CAR
//! into `staging/`, and the padded piece into a sector. Here the leaves, which are the
//! file's own bytes, are never copied: the scratch store ([`LeavesInInput`]) notes where in
//! the file each leaf lies and reads it from there again when the CAR is made, and the CAR
//! goes straight from [`car::export`] on one thread into the one-pass import (verify, CommP
//! on every core, sector write) through a bounded channel, never to disk. Its size, which
//! the piece's padded size depends on, is added up while the DAG is built.
//!
//! A file that changes between the two reads fails the import: every leaf read again is
//! checked against its CID when the CAR is made, and once more by the import's verifier.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};

use cid::Cid;
use rm_blockio::blockstore::{self, Blockstore};
use rm_blockio::unixfs::{self, Preset};
use rm_blockio::{Bytes, Selector, car};

use super::{
    Counter, CountingStore, Imported, PARALLEL_UNIT, Report, Stage, find_stored, root_looks_stored,
    write_piece,
};
use crate::Error;
use crate::piecestore::PieceStore;
use crate::sector::FileSectorStore;

/// The raw codec (leaves).
const RAW: u64 = 0x55;
/// The identity multihash: the data is in the CID, nothing to read back.
const IDENTITY: u64 = 0x00;
/// CAR units in flight between the exporter and the import: with the import's own, the
/// CAR holds at most a few units of memory.
const UNITS_IN_FLIGHT: usize = 2;

/// Imports the file at `path` (a regular file; `preset` with raw leaves) as a piece: see
/// the module docs. `scratch` takes the DAG's inner nodes.
pub(super) fn import_file(
    pieces: &PieceStore,
    sectors: &FileSectorStore,
    path: &Path,
    preset: Preset,
    scratch: &dyn Blockstore,
    mut report: Report<'_>,
) -> Result<Imported, Error> {
    let input = std::fs::File::open(path)?;
    let input_size = input.metadata()?.len();
    let store = LeavesInInput::new(input, scratch);
    let root = {
        let counting = CountingStore {
            inner: &store,
            counter: Mutex::new(Counter::new(Stage::UnixFs, Some(input_size), &mut report)),
        };
        unixfs::import_path(&counting, preset, path)?.root
    };
    let car_size = store.car_size(&root);
    if root_looks_stored(pieces, &root, car_size) {
        // Most likely an import of a piece held already: hash it without writing.
        let found = stream_car(&store, root, car_size, |car| {
            find_stored(pieces, sectors, car, car_size, &mut report)
        })?;
        if let Some(stored) = found {
            return Ok(stored);
        }
    }
    stream_car(&store, root, car_size, |car| {
        write_piece(pieces, sectors, car, car_size, report)
    })
}

/// Makes the CAR of the DAG under `root` (`car_size` bytes) on a thread of its own and
/// hands `read` the reading end. The CAR writer's error comes first: it says why the CAR
/// ended early, which the reader only sees as an early end.
fn stream_car<T>(
    store: &LeavesInInput<'_>,
    root: Cid,
    car_size: u64,
    read: impl FnOnce(UnitReader) -> Result<T, Error>,
) -> Result<T, Error> {
    std::thread::scope(|scope| {
        let (units, arriving) = mpsc::sync_channel(UNITS_IN_FLIGHT);
        let (give_back, spare) = mpsc::channel();
        let exporter = scope.spawn(move || {
            let out = UnitWriter {
                unit: Vec::with_capacity(PARALLEL_UNIT),
                units,
                spare,
            };
            car::export(store, root, &Selector::explore_all_recursively(), out)
        });
        let result = read(UnitReader {
            arriving,
            unit: Vec::new(),
            pos: 0,
            give_back,
        });
        let exported = exporter.join().unwrap_or_else(|_| {
            Err(car::Error::Io(std::io::Error::other(
                "the CAR writer panicked",
            )))
        });
        match (exported, result) {
            (Ok(n), Ok(done)) if n == car_size => Ok(done),
            (Ok(n), Ok(_)) => Err(Error::Import(format!(
                "the CAR came to {n} bytes, not the {car_size} counted"
            ))),
            (Ok(_), Err(e)) => Err(e),
            (Err(e), _) => Err(e.into()),
        }
    })
}

/// The scratch store of a one-file import with raw leaves (see the module docs).
///
/// The importer puts the leaves in file order, so a running offset says where each lies;
/// everything else (the dag-pb nodes, a few KiB per GiB of file) goes to `inner`. It also
/// adds up the CAR sections of the distinct blocks.
struct LeavesInInput<'a> {
    file: std::fs::File,
    inner: &'a dyn Blockstore,
    index: Mutex<Index>,
}

#[derive(Default)]
struct Index {
    /// Where the next leaf starts in the file.
    next: u64,
    /// Each distinct leaf: its offset and length in the file.
    leaves: HashMap<Cid, (u64, usize)>,
    /// The distinct other blocks.
    nodes: HashSet<Cid>,
    /// Bytes of the CAR sections of the distinct blocks.
    sections: u64,
}

impl<'a> LeavesInInput<'a> {
    fn new(file: std::fs::File, inner: &'a dyn Blockstore) -> Self {
        LeavesInInput {
            file,
            inner,
            index: Mutex::default(),
        }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The size of the CAR of the DAG under `root`: the header and every block put, once
    /// (every block a one-file import puts is in its DAG).
    fn car_size(&self, root: &Cid) -> u64 {
        car::header_size(&[*root]) + self.index().sections
    }

    fn leaf(&self, cid: &Cid) -> Option<(u64, usize)> {
        self.index().leaves.get(cid).copied()
    }

    /// Notes a block put; true when it is a leaf left in the file (not to be stored).
    fn note(&self, cid: &Cid, data: &[u8]) -> bool {
        let mut index = self.index();
        let section = car::section_size(cid, data.len());
        if cid.codec() == RAW {
            // Every leaf is the next piece of the file, an inlined one too.
            let at = index.next;
            index.next += data.len() as u64;
            if cid.hash().code() != IDENTITY {
                if let std::collections::hash_map::Entry::Vacant(e) = index.leaves.entry(*cid) {
                    e.insert((at, data.len()));
                    index.sections += section;
                }
                return true;
            }
        }
        if index.nodes.insert(*cid) {
            index.sections += section;
        }
        false
    }
}

impl Blockstore for LeavesInInput<'_> {
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, blockstore::Error> {
        let Some((at, len)) = self.leaf(cid) else {
            return self.inner.get(cid);
        };
        let mut data = vec![0u8; len];
        self.file.read_exact_at(&mut data, at)?;
        Ok(Some(data))
    }
    fn has(&self, cid: &Cid) -> Result<bool, blockstore::Error> {
        Ok(self.leaf(cid).is_some() || self.inner.has(cid)?)
    }
    fn size(&self, cid: &Cid) -> Result<Option<u64>, blockstore::Error> {
        match self.leaf(cid) {
            Some((_, len)) => Ok(Some(len as u64)),
            None => self.inner.size(cid),
        }
    }
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), blockstore::Error> {
        if self.note(cid, data) {
            return Ok(());
        }
        self.inner.put(cid, data)
    }
    fn put_many(&self, blocks: &[(Cid, Bytes)]) -> Result<(), blockstore::Error> {
        let nodes: Vec<(Cid, Bytes)> = blocks
            .iter()
            .filter(|(cid, data)| !self.note(cid, data))
            .cloned()
            .collect();
        self.inner.put_many(&nodes)
    }
    fn delete(&self, cid: &Cid) -> Result<(), blockstore::Error> {
        self.inner.delete(cid)
    }
}

/// A `Write` that sends what it is given in units of [`PARALLEL_UNIT`] bytes; the last,
/// shorter unit on `flush` (which [`car::export`] calls when it is done).
struct UnitWriter {
    unit: Vec<u8>,
    units: mpsc::SyncSender<Vec<u8>>,
    /// Units the reader is done with, to fill again.
    spare: mpsc::Receiver<Vec<u8>>,
}

impl UnitWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let next = match self.spare.try_recv() {
            Ok(mut unit) => {
                unit.clear();
                unit
            }
            Err(_) => Vec::with_capacity(PARALLEL_UNIT),
        };
        let unit = std::mem::replace(&mut self.unit, next);
        self.units
            .send(unit)
            .map_err(|_| std::io::Error::other("the import stopped reading the CAR"))
    }
}

impl Write for UnitWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = (PARALLEL_UNIT - self.unit.len()).min(buf.len());
        self.unit.extend_from_slice(&buf[..n]);
        if self.unit.len() == PARALLEL_UNIT {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.unit.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

/// A `Read` over the units a [`UnitWriter`] sends, each given back when read; the end when
/// the writer is gone.
struct UnitReader {
    arriving: mpsc::Receiver<Vec<u8>>,
    unit: Vec<u8>,
    pos: usize,
    give_back: mpsc::Sender<Vec<u8>>,
}

impl Read for UnitReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.unit.len() {
            match self.arriving.recv() {
                Ok(unit) => {
                    let done = std::mem::replace(&mut self.unit, unit);
                    if done.capacity() > 0 {
                        // The writer may be gone already: then the unit is dropped.
                        let _ = self.give_back.send(done);
                    }
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = (self.unit.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.unit[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
