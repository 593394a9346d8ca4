//! The piece store: which sectors hold a piece, and which pieces hold a block.
//!
//! Two records, as go-fil-markets' `piecestore` keeps them (go-fil-markets `piecestore/types.go`):
//!
//! - [`PieceInfo`] by piece CID: the deals (sector, offset, length) holding the piece;
//! - [`CidInfo`] by block: where the block lies in each piece that holds it.
//!
//! Both live in keyspaces of the node's database (with a third, for
//! the data size of pieces whose size is known), encoded as
//! DAG-CBOR maps with go-fil-markets' field names. Block records are keyed by multihash, so
//! a CIDv0 and a CIDv1 of the same bytes share one (as the blockstore does). Adds are
//! idempotent; each block keeps at most [`MAX_LOCATIONS_PER_CID`] locations.

use std::sync::Mutex;

use cid::Cid;
use rm_store::{Db, Durability, Keyspace, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Keyspace of [`PieceInfo`] records.
pub const PIECES_KEYSPACE: &str = "piece-infos";
/// Keyspace of [`CidInfo`] records.
pub const CIDS_KEYSPACE: &str = "cid-infos";
/// Keyspace of the data size (unpadded bytes before the zero fill: the CAR's length)
/// of pieces whose size is known, such as those imported here.
pub const SIZES_KEYSPACE: &str = "piece-data-sizes";

/// Most deals kept for one piece; adding more is an error ([`Error::TooManyDeals`]).
pub const MAX_DEALS_PER_PIECE: usize = 256;

/// Most piece locations kept for one block; further ones are ignored (a block common to
/// many pieces, such as an empty directory, must not grow one record without bound).
pub const MAX_LOCATIONS_PER_CID: usize = 1024;

/// Largest record decoded (a record with [`MAX_LOCATIONS_PER_CID`] entries is ~100 KiB).
const MAX_RECORD: usize = 1 << 20;

/// One deal holding a piece: where in which sector it lies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealInfo {
    /// The storage deal's id (0 for data imported locally, with no storage deal).
    #[serde(rename = "DealID")]
    pub deal_id: u64,
    /// The sector number.
    #[serde(rename = "SectorID")]
    pub sector_id: u64,
    /// Padded offset of the piece in the sector.
    #[serde(rename = "Offset")]
    pub offset: u64,
    /// Padded length of the piece.
    #[serde(rename = "Length")]
    pub length: u64,
}

/// What the store knows of a piece.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceInfo {
    /// The piece CID.
    #[serde(rename = "PieceCID")]
    pub piece_cid: Cid,
    /// The deals holding the piece.
    #[serde(rename = "Deals")]
    pub deals: Vec<DealInfo>,
}

/// Where a block lies inside a piece's unpadded bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockLocation {
    /// Offset of the block's bytes from the start of the piece (the CAR).
    #[serde(rename = "RelOffset")]
    pub rel_offset: u64,
    /// The block's size.
    #[serde(rename = "BlockSize")]
    pub block_size: u64,
}

/// A block's location in one piece.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceBlockLocation {
    /// Where in the piece.
    #[serde(rename = "BlockLocation")]
    pub location: BlockLocation,
    /// The piece.
    #[serde(rename = "PieceCID")]
    pub piece_cid: Cid,
}

/// Which pieces hold a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidInfo {
    /// The block's CID (as first recorded).
    #[serde(rename = "CID")]
    pub cid: Cid,
    /// Its locations.
    #[serde(rename = "PieceBlockLocations")]
    pub piece_block_locations: Vec<PieceBlockLocation>,
}

/// The piece store: three keyspaces of one database.
pub struct PieceStore {
    pieces: Keyspace,
    cids: Keyspace,
    sizes: Keyspace,
    /// Serialises read-modify-write of records.
    write: Mutex<()>,
}

impl std::fmt::Debug for PieceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceStore")
            .field("pieces", &self.pieces.name())
            .field("cids", &self.cids.name())
            .finish_non_exhaustive()
    }
}

impl PieceStore {
    /// The store in keyspaces [`PIECES_KEYSPACE`], [`CIDS_KEYSPACE`] and [`SIZES_KEYSPACE`]
    /// of `db`.
    pub fn open(db: &Db) -> Result<Self, Error> {
        Ok(Self::with_keyspaces(
            db.keyspace(PIECES_KEYSPACE)?,
            db.keyspace(CIDS_KEYSPACE)?,
            db.keyspace(SIZES_KEYSPACE)?,
        ))
    }

    /// The store in the given keyspaces (of one database: records that change together
    /// are written in one batch).
    pub fn with_keyspaces(pieces: Keyspace, cids: Keyspace, sizes: Keyspace) -> Self {
        Self {
            pieces,
            cids,
            sizes,
            write: Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read<T: for<'de> Deserialize<'de>>(
        &self,
        keyspace: &Keyspace,
        key: &[u8],
    ) -> Result<Option<T>, Error> {
        keyspace
            .get_with(key, |bytes| {
                rm_types::codec::from_slice_limited(bytes, MAX_RECORD)
                    .map_err(|e| Error::Corrupt(format!("{} record: {e}", keyspace.name())))
            })?
            .transpose()
    }

    /// Records that `deal` holds `piece_cid` (nothing changes if it is known already).
    pub fn add_deal_for_piece(&self, piece_cid: &Cid, deal: DealInfo) -> Result<(), Error> {
        let _guard = self.lock();
        let key = piece_cid.to_bytes();
        let mut info = self
            .read::<PieceInfo>(&self.pieces, &key)?
            .unwrap_or_else(|| PieceInfo {
                piece_cid: *piece_cid,
                deals: Vec::new(),
            });
        if info.deals.contains(&deal) {
            return Ok(());
        }
        if info.deals.len() >= MAX_DEALS_PER_PIECE {
            return Err(Error::TooManyDeals(Box::new(*piece_cid)));
        }
        info.deals.push(deal);
        let bytes = rm_types::codec::to_vec(&info).map_err(|e| Error::Corrupt(e.to_string()))?;
        Ok(self.pieces.put(&key, &bytes)?)
    }

    /// Records where each block lies in `piece_cid` (locations already known are kept
    /// once), in one atomic batch.
    pub fn add_piece_block_locations(
        &self,
        piece_cid: &Cid,
        locations: impl IntoIterator<Item = (Cid, BlockLocation)>,
    ) -> Result<(), Error> {
        let _guard = self.lock();
        let mut batch = WriteBatch::new();
        // A block listed twice in one call is read once, from the pending batch copy.
        let mut pending: std::collections::HashMap<Vec<u8>, CidInfo> = Default::default();
        for (cid, location) in locations {
            let key = cid.hash().to_bytes();
            let info = match pending.remove(&key) {
                Some(info) => info,
                None => self.read::<CidInfo>(&self.cids, &key)?.unwrap_or(CidInfo {
                    cid,
                    piece_block_locations: Vec::new(),
                }),
            };
            let mut info = info;
            let entry = PieceBlockLocation {
                location,
                piece_cid: *piece_cid,
            };
            if !info.piece_block_locations.contains(&entry)
                && info.piece_block_locations.len() < MAX_LOCATIONS_PER_CID
            {
                info.piece_block_locations.push(entry);
            }
            pending.insert(key, info);
        }
        for (key, info) in pending {
            let bytes =
                rm_types::codec::to_vec(&info).map_err(|e| Error::Corrupt(e.to_string()))?;
            batch.put_owned(&self.cids, key, bytes);
        }
        Ok(self.cids.db().write(batch, Durability::Process)?)
    }

    /// The piece's record; [`Error::PieceNotFound`] when unknown.
    pub fn get_piece_info(&self, piece_cid: &Cid) -> Result<PieceInfo, Error> {
        self.read(&self.pieces, &piece_cid.to_bytes())?
            .ok_or_else(|| Error::PieceNotFound(Box::new(*piece_cid)))
    }

    /// The block's record; [`Error::PayloadNotFound`] when unknown.
    pub fn get_cid_info(&self, cid: &Cid) -> Result<CidInfo, Error> {
        self.read(&self.cids, &cid.hash().to_bytes())?
            .ok_or_else(|| Error::PayloadNotFound(Box::new(*cid)))
    }

    /// Records the data size of a piece: its unpadded bytes before the zero fill.
    pub fn set_data_size(&self, piece_cid: &Cid, size: u64) -> Result<(), Error> {
        Ok(self.sizes.put(&piece_cid.to_bytes(), &size.to_be_bytes())?)
    }

    /// The piece's data size, if recorded.
    pub fn data_size(&self, piece_cid: &Cid) -> Result<Option<u64>, Error> {
        self.sizes
            .get_with(&piece_cid.to_bytes(), |v| {
                <[u8; 8]>::try_from(v)
                    .map(u64::from_be_bytes)
                    .map_err(|_| Error::Corrupt("piece data size".into()))
            })?
            .transpose()
    }

    /// Removes `piece_cid`'s location from the records of `cids` (in one batch); a record
    /// left with no location is deleted. Returns how many records named the piece, and
    /// the blocks no piece holds any more.
    pub fn remove_piece_block_locations(
        &self,
        piece_cid: &Cid,
        cids: impl IntoIterator<Item = Cid>,
    ) -> Result<(usize, Vec<Cid>), Error> {
        let _guard = self.lock();
        let mut batch = WriteBatch::new();
        let mut gone = Vec::new();
        let mut changed = 0;
        let mut seen = std::collections::HashSet::new();
        for cid in cids {
            let key = cid.hash().to_bytes();
            if !seen.insert(key.clone()) {
                continue;
            }
            let Some(mut info) = self.read::<CidInfo>(&self.cids, &key)? else {
                continue;
            };
            let before = info.piece_block_locations.len();
            info.piece_block_locations
                .retain(|l| l.piece_cid != *piece_cid);
            if info.piece_block_locations.len() == before {
                continue;
            }
            changed += 1;
            if info.piece_block_locations.is_empty() {
                batch.delete(&self.cids, &key);
                gone.push(cid);
            } else {
                let bytes =
                    rm_types::codec::to_vec(&info).map_err(|e| Error::Corrupt(e.to_string()))?;
                batch.put_owned(&self.cids, key, bytes);
            }
        }
        self.cids.db().write(batch, Durability::Process)?;
        Ok((changed, gone))
    }

    /// Every block with a location in `piece_cid`, by reading every block record (for a
    /// piece whose data cannot be read any more).
    pub fn blocks_in_piece(&self, piece_cid: &Cid) -> Result<Vec<Cid>, Error> {
        let mut out = Vec::new();
        for item in self.cids.iter() {
            let (_, value) = item?;
            let info: CidInfo = rm_types::codec::from_slice_limited(&value, MAX_RECORD)
                .map_err(|e| Error::Corrupt(format!("{} record: {e}", self.cids.name())))?;
            if info
                .piece_block_locations
                .iter()
                .any(|l| l.piece_cid == *piece_cid)
            {
                out.push(info.cid);
            }
        }
        Ok(out)
    }

    /// Removes the piece's record and its data size (its block locations are removed
    /// with [`PieceStore::remove_piece_block_locations`] first).
    pub fn remove_piece(&self, piece_cid: &Cid) -> Result<(), Error> {
        let _guard = self.lock();
        let key = piece_cid.to_bytes();
        let mut batch = WriteBatch::new();
        batch.delete(&self.pieces, &key);
        batch.delete(&self.sizes, &key);
        Ok(self.pieces.db().write(batch, Durability::Process)?)
    }

    /// Every piece CID the store knows (for listings; reads the whole keyspace).
    pub fn list_pieces(&self) -> Result<Vec<Cid>, Error> {
        let mut out = Vec::new();
        for item in self.pieces.iter() {
            let (key, _) = item?;
            match Cid::try_from(&key[..]) {
                Ok(cid) => out.push(cid),
                Err(e) => tracing::warn!(error = %e, "piece store: skipping a malformed key"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commp;

    fn store() -> (Db, PieceStore) {
        let db = Db::memory();
        let store = PieceStore::open(&db).unwrap();
        (db, store)
    }

    fn block_cid(version: cid::Version, data: &[u8]) -> Cid {
        let codec = if version == cid::Version::V0 {
            0x70
        } else {
            0x55
        };
        rm_blockio::codec::cid_of(version, codec, rm_blockio::codec::SHA2_256, data).unwrap()
    }

    #[test]
    fn pieces_and_deals() {
        let (_db, store) = store();
        let piece = commp::commp(b"piece one").unwrap().cid();
        assert!(
            matches!(store.get_piece_info(&piece), Err(Error::PieceNotFound(c)) if *c == piece)
        );
        let deal = DealInfo {
            deal_id: 7,
            sector_id: 1,
            offset: 0,
            length: 128,
        };
        store.add_deal_for_piece(&piece, deal.clone()).unwrap();
        store.add_deal_for_piece(&piece, deal.clone()).unwrap();
        let second = DealInfo {
            sector_id: 2,
            ..deal.clone()
        };
        store.add_deal_for_piece(&piece, second.clone()).unwrap();
        let info = store.get_piece_info(&piece).unwrap();
        assert_eq!(info.piece_cid, piece);
        assert_eq!(info.deals, vec![deal, second]);
        assert_eq!(store.list_pieces().unwrap(), vec![piece]);
        assert_eq!(store.data_size(&piece).unwrap(), None);
        store.set_data_size(&piece, 100).unwrap();
        assert_eq!(store.data_size(&piece).unwrap(), Some(100));
    }

    #[test]
    fn deals_per_piece_are_bounded() {
        let (_db, store) = store();
        let piece = commp::commp(b"popular").unwrap().cid();
        for sector_id in 0..MAX_DEALS_PER_PIECE as u64 {
            let deal = DealInfo {
                deal_id: 0,
                sector_id,
                offset: 0,
                length: 128,
            };
            store.add_deal_for_piece(&piece, deal).unwrap();
        }
        let one_more = DealInfo {
            deal_id: 0,
            sector_id: 9999,
            offset: 0,
            length: 128,
        };
        assert!(matches!(
            store.add_deal_for_piece(&piece, one_more),
            Err(Error::TooManyDeals(_))
        ));
        // Still readable and re-adding a known deal is fine.
        assert_eq!(
            store.get_piece_info(&piece).unwrap().deals.len(),
            MAX_DEALS_PER_PIECE
        );
    }

    #[test]
    fn block_locations_are_keyed_by_multihash() {
        let (_db, store) = store();
        let piece = commp::commp(b"piece").unwrap().cid();
        let v0 = block_cid(cid::Version::V0, b"block");
        let v1 = Cid::new_v1(0x70, *v0.hash());
        assert!(matches!(
            store.get_cid_info(&v1),
            Err(Error::PayloadNotFound(_))
        ));
        let loc = BlockLocation {
            rel_offset: 100,
            block_size: 5,
        };
        store
            .add_piece_block_locations(&piece, [(v0, loc), (v0, loc)])
            .unwrap();
        store
            .add_piece_block_locations(&piece, [(v1, loc)])
            .unwrap();
        let info = store.get_cid_info(&v1).unwrap();
        assert_eq!(info.cid, v0);
        assert_eq!(
            info.piece_block_locations,
            vec![PieceBlockLocation {
                location: loc,
                piece_cid: piece
            }]
        );
    }

    #[test]
    fn locations_per_block_are_bounded() {
        let (_db, store) = store();
        let cid = block_cid(cid::Version::V1, b"common");
        for i in 0..(MAX_LOCATIONS_PER_CID as u64 + 10) {
            let loc = BlockLocation {
                rel_offset: i,
                block_size: 6,
            };
            let piece = commp::commp(&i.to_be_bytes()).unwrap().cid();
            store
                .add_piece_block_locations(&piece, [(cid, loc)])
                .unwrap();
        }
        let info = store.get_cid_info(&cid).unwrap();
        assert_eq!(info.piece_block_locations.len(), MAX_LOCATIONS_PER_CID);
    }

    #[test]
    fn removing_a_piece_keeps_other_pieces_locations() {
        let (_db, store) = store();
        let (a, b) = (
            commp::commp(b"a").unwrap().cid(),
            commp::commp(b"b").unwrap().cid(),
        );
        let shared = block_cid(cid::Version::V1, b"shared");
        let only_a = block_cid(cid::Version::V1, b"only a");
        let loc = BlockLocation {
            rel_offset: 1,
            block_size: 2,
        };
        store
            .add_piece_block_locations(&a, [(shared, loc), (only_a, loc)])
            .unwrap();
        store
            .add_piece_block_locations(&b, [(shared, loc)])
            .unwrap();
        store
            .add_deal_for_piece(
                &a,
                DealInfo {
                    deal_id: 0,
                    sector_id: 1,
                    offset: 0,
                    length: 128,
                },
            )
            .unwrap();
        store.set_data_size(&a, 10).unwrap();
        let mut found = store.blocks_in_piece(&a).unwrap();
        found.sort();
        let mut expected = vec![shared, only_a];
        expected.sort();
        assert_eq!(found, expected);
        let (changed, gone) = store
            .remove_piece_block_locations(&a, [shared, only_a, only_a])
            .unwrap();
        assert_eq!((changed, gone), (2, vec![only_a]));
        store.remove_piece(&a).unwrap();
        assert!(matches!(
            store.get_cid_info(&only_a),
            Err(Error::PayloadNotFound(_))
        ));
        let left = store.get_cid_info(&shared).unwrap().piece_block_locations;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].piece_cid, b);
        assert!(matches!(
            store.get_piece_info(&a),
            Err(Error::PieceNotFound(_))
        ));
        assert_eq!(store.data_size(&a).unwrap(), None);
        assert!(store.blocks_in_piece(&a).unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_record_is_a_typed_error() {
        let (db, store) = store();
        let piece = commp::commp(b"x").unwrap().cid();
        db.keyspace(PIECES_KEYSPACE)
            .unwrap()
            .put(&piece.to_bytes(), b"\xff\x00garbage")
            .unwrap();
        assert!(matches!(
            store.get_piece_info(&piece),
            Err(Error::Corrupt(_))
        ));
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn records_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Db::open(dir.path(), &crate::KEYSPACES, &Default::default()).unwrap();
        let good = commp::commp(b"y").unwrap().cid();
        let deal = DealInfo {
            deal_id: 0,
            sector_id: 3,
            offset: 256,
            length: 128,
        };
        PieceStore::open(&open())
            .unwrap()
            .add_deal_for_piece(&good, deal.clone())
            .unwrap();
        let store = PieceStore::open(&open()).unwrap();
        assert_eq!(store.get_piece_info(&good).unwrap().deals, vec![deal]);
    }
}
