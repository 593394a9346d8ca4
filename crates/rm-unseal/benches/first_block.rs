//! Time to the first verified block of a deal, over piece sizes: the provider's side of
//! time to first byte.
//!
//! For pieces of 16 MiB, 256 MiB, 1 GiB and 4 GiB (pseudo-random data, UnixFS v1 1 MiB raw
//! leaves, in a `FileSectorStore`), two ways, in the same run:
//!
//! - `open`: `Unsealer::open` (the piece read where it lies) and the first two blocks of
//!   the traversal (the root and the first leaf), each verified against its CID — what a
//!   deal does now before its first response;
//! - `load`: `Unsealer::load` of the whole piece into a fresh blockstore, then the same two
//!   blocks — what a deal did before.
//!
//! `cargo bench -p rm-unseal --bench first_block` (run as a test, only 16 MiB). Sizes can be narrowed with
//! `RM_BENCH_SIZES=16MiB,1GiB`; `RM_BENCH_LOAD=0` skips `load` (4 GiB of it takes ~1 min
//! and 4 GiB of scratch disk per sample). Setup needs about three times the largest size
//! on disk while it imports, and the size itself afterwards.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rm_blockio::unixfs::{Importer, Preset};
use rm_blockio::{BlockReader, Blockstore, ScratchBlockstore, Selector};
use rm_unseal::{FileSectorStore, PieceStore, SectorAccess, Unsealer, import, sector, unseal};

/// Pseudo-random bytes (xorshift), so nothing compresses or dedupes.
struct Random {
    x: u64,
    left: u64,
}

impl std::io::Read for Random {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize / 8 * 8;
        let n = if n == 0 {
            self.left.min(buf.len() as u64) as usize
        } else {
            n
        };
        for chunk in buf[..n].chunks_mut(8) {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            let bytes = self.x.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn sizes() -> Vec<(String, u64)> {
    // `cargo test --all-targets` runs this once as a test (without `--bench`): the
    // smallest size only, so tests do not import gigabytes.
    let all = if std::env::args().any(|a| a == "--bench") {
        "16MiB,256MiB,1GiB,4GiB"
    } else {
        "16MiB"
    };
    std::env::var("RM_BENCH_SIZES")
        .unwrap_or_else(|_| all.to_owned())
        .split(',')
        .map(|s| {
            let s = s.trim();
            let (n, shift) = if let Some(n) = s.strip_suffix("GiB") {
                (n, 30)
            } else if let Some(n) = s.strip_suffix("MiB") {
                (n, 20)
            } else {
                (s, 0)
            };
            (
                s.to_owned(),
                n.parse::<u64>().expect("a size such as 256MiB") << shift,
            )
        })
        .collect()
}

fn first_two(store: Arc<dyn Blockstore>, root: cid::Cid) -> usize {
    let mut reader = BlockReader::new(store, root, &Selector::explore_all_recursively()).unwrap();
    let a = reader.next_block().unwrap().unwrap();
    let b = reader.next_block().unwrap().unwrap();
    a.data.len() + b.data.len()
}

fn bench(c: &mut Criterion) {
    let home = tempfile::tempdir().unwrap();
    let db = rm_store::Db::memory();
    let pieces = Arc::new(PieceStore::open(&db).unwrap());
    let sectors = Arc::new(
        FileSectorStore::open(
            home.path().join("sectors"),
            db.keyspace(FileSectorStore::DEFAULT_KEYSPACE).unwrap(),
            sector::Config::default(),
        )
        .unwrap(),
    );
    let staging = home.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let access: Arc<dyn SectorAccess> = sectors.clone();
    let unsealer = Unsealer::new(
        Arc::clone(&pieces),
        access,
        db.keyspace(unseal::LOADED_KEYSPACE).unwrap(),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let load = std::env::var("RM_BENCH_LOAD").map_or(true, |v| v != "0");

    let mut group = c.benchmark_group("first_block");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for (name, size) in sizes() {
        let scratch = ScratchBlockstore::new_in(&staging).unwrap();
        let input = Random {
            x: 0x9e37_79b9_7f4a_7c15 ^ size,
            left: size,
        };
        let root = Importer::import_reader(&scratch, Preset::UNIXFS_V1_2025, input)
            .unwrap()
            .root;
        let imported = import::import_dag(&pieces, &sectors, &scratch, root, &staging).unwrap();
        drop(scratch);
        let payload = imported.payload_cid;
        eprintln!(
            "{name}: piece {} of {} bytes ({} blocks)",
            imported.piece_cid, imported.car_size, imported.blocks
        );
        group.bench_function(BenchmarkId::new("open", &name), |b| {
            b.iter(|| {
                let blocks = runtime.block_on(unsealer.open(&payload, None)).unwrap();
                black_box(first_two(Arc::new(blocks), payload))
            })
        });
        if load {
            group.bench_function(BenchmarkId::new("load", &name), |b| {
                b.iter(|| {
                    let into = Arc::new(ScratchBlockstore::new_in(&staging).unwrap());
                    runtime
                        .block_on(unsealer.load(&payload, None, into.clone()))
                        .unwrap();
                    black_box(first_two(into, payload))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
