//! Blocks are right or absent (issue 17, item 5): a block read to be sent (the provider's
//! `BlockReader`, resuming included) or exported (CAR, UnixFS) is checked against its CID,
//! and a `FileBlockstore` that lost or garbled a block's bytes (a power loss with the
//! default durability) gets them back on the next `put` of that block.

use cid::Cid;
use rm_blockio::blockstore::{self, Blockstore, FileBlockstore, MemoryBlockstore};
use rm_blockio::reader::{self, BlockReader};
use rm_blockio::selector::Selector;
use rm_blockio::traversal;
use rm_blockio::unixfs::{self, Importer, Preset};
use rm_blockio::{car, codec};
use rm_store::Keyspace;

fn data() -> Vec<u8> {
    (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// The file's blocks in traversal order.
fn cids(store: &dyn Blockstore, root: Cid) -> Vec<Cid> {
    BlockReader::new(store, root, &Selector::explore_all_recursively())
        .unwrap()
        .map(|b| b.unwrap().cid().unwrap())
        .collect()
}

/// Replaces a stored block's bytes with others (what `put` trusts its caller not to do).
fn garble(store: &MemoryBlockstore, cid: &Cid) {
    let mut bytes = store.get(cid).unwrap().unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    store.delete(cid).unwrap();
    store.put(cid, &bytes).unwrap();
}

#[test]
fn a_block_read_for_sending_or_export_is_checked() {
    let store = MemoryBlockstore::new();
    let root = Importer::import_bytes(&store, Preset::GO_FIL_MARKETS, &data())
        .unwrap()
        .root;
    let all = Selector::explore_all_recursively();
    let order = cids(&store, root);
    let leaf = order[3];
    garble(&store, &leaf);

    // Sending: the reader stops at the bad block, after the good ones before it.
    let mut reader = BlockReader::new(&store, root, &all).unwrap();
    for expected in &order[..3] {
        assert_eq!(reader.next().unwrap().unwrap().cid().unwrap(), *expected);
    }
    assert!(matches!(reader.next(), Some(Err(reader::Error::Corrupt(c))) if c == leaf));
    assert!(reader.next().is_none());

    // Exporting a CAR or a file: an error, never the bad bytes.
    let mut out = Vec::new();
    let err = car::export(&store, root, &all, &mut out).unwrap_err();
    assert!(
        matches!(err, car::Error::Reader(reader::Error::Corrupt(c)) if c == leaf),
        "{err}"
    );
    let err = unixfs::export_file(&store, &root, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");

    // The gateway's read: `get_verified`.
    assert!(matches!(store.get_verified(&leaf), Err(blockstore::Error::Corrupt(c)) if *c == leaf));

    // Resuming past a bad inner node (read to learn its links) fails too.
    let inner = Importer::import_bytes(&store, Preset::GO_FIL_MARKETS.with_max_links(2), &data())
        .unwrap()
        .root;
    garble(&store, &inner);
    let err = BlockReader::resume(&store, inner, &all, 1).unwrap_err();
    assert!(
        matches!(
            err,
            reader::Error::Traversal(traversal::Error::Blockstore(blockstore::Error::Corrupt(ref c)))
                if **c == inner
        ),
        "{err}"
    );
}

#[test]
fn a_file_blockstore_repairs_a_lost_block_when_it_is_stored_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.dat");
    let index = Keyspace::memory(FileBlockstore::DEFAULT_KEYSPACE);
    let store = FileBlockstore::open(&path, index.clone()).unwrap();
    let root = Importer::import_bytes(&store, Preset::GO_FIL_MARKETS, &data())
        .unwrap()
        .root;
    let order = cids(&store, root);
    let blocks: Vec<(Cid, rm_blockio::Bytes)> = order
        .iter()
        .map(|c| (*c, store.get(c).unwrap().unwrap().into()))
        .collect();
    drop(store);

    // A power loss: the index kept every entry, the data file lost its last 100 bytes and
    // the first block's bytes were zeroed.
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 100).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[0; 64], 0).unwrap();
    drop(file);
    let store = FileBlockstore::open(&path, index).unwrap();
    let all = Selector::explore_all_recursively();
    let read = |store: &FileBlockstore| -> Result<u64, reader::Error> {
        let mut n = 0;
        for block in BlockReader::new(store, root, &all)? {
            n += block?.data.len() as u64;
        }
        Ok(n)
    };
    assert!(read(&store).is_err(), "bad bytes are never handed out");
    let bad: Vec<&Cid> = order
        .iter()
        .filter(|c| store.get_verified(c).is_err())
        .collect();
    assert!(bad.len() >= 2, "the zeroed and the truncated block");

    // Stored again (a new retrieval, an import): repaired, and nothing else rewritten.
    store.put_many(&blocks).unwrap();
    let total: u64 = blocks.iter().map(|(_, d)| d.len() as u64).sum();
    assert_eq!(read(&store).unwrap(), total);
    for (cid, bytes) in &blocks {
        assert_eq!(
            store.get_verified(cid).unwrap().as_deref(),
            Some(&bytes[..])
        );
        codec::verify(cid, bytes).unwrap();
    }
    let after = std::fs::metadata(&path).unwrap().len();
    let rewritten: u64 = bad.iter().map(|c| store.size(c).unwrap().unwrap()).sum();
    assert_eq!(after, len - 100 + rewritten);
}
