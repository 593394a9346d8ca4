//! The pieces a node holds: list them, show one, remove one (`rm pieces`), and what
//! removing one frees on disk.

use std::path::Path;
use std::sync::Arc;

use rm_blockio::Blockstore;
use rm_types::Cid;
use rm_unseal::cache::CachedPiece;
use rm_unseal::{DealInfo, PaddedPieceSize};

use crate::{Error, Home, Node};

/// What a node holds of one piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieceSummary {
    /// The piece CID.
    pub piece_cid: Cid,
    /// The roots of its CAR: the payloads it holds (empty when its bytes cannot be read
    /// without an unseal).
    pub payloads: Vec<Cid>,
    /// Its data size (the CAR's length), when known.
    pub data_size: Option<u64>,
    /// Its padded size.
    pub piece_size: Option<u64>,
    /// Where it is stored.
    pub deals: Vec<DealInfo>,
    /// Its copy in the unsealed cache, if any.
    pub cached: Option<CachedPiece>,
    /// Readers (deals in flight) holding it open.
    pub readers: usize,
}

/// What [`Node::remove_piece`] freed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieceRemoval {
    /// What the unsealer removed.
    pub removed: rm_unseal::Removed,
    /// Payloads no longer provided on the DHT (no piece holds them any more).
    pub unprovided: Vec<Cid>,
    /// Bytes of disk the node's data used before and after: sector files, the unsealed
    /// cache and the block data file ([`data_usage`]; not the database, whose files
    /// RocksDB preallocates and compacts on its own schedule).
    pub disk_before: u64,
    /// See `disk_before`.
    pub disk_after: u64,
}

/// Bytes of disk used by everything under `path` (allocated blocks: sparse files and
/// punched holes count for what they hold).
pub fn disk_usage(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            match disk_usage(&entry?.path()) {
                Ok(n) => total += n,
                // Removed while we looked (RocksDB's own files come and go).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(total)
}

/// Bytes of disk used by a home's data: `sectors/`, `unsealed-cache/` and `blocks.dat`
/// (what [`Node::remove_piece`] frees).
pub fn data_usage(home: &Home) -> std::io::Result<u64> {
    let mut total = 0;
    for path in [home.sectors(), home.unsealed_cache(), home.blocks()] {
        match disk_usage(&path) {
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

impl Node {
    /// Every piece in the piece store, with what the node holds of it.
    pub async fn pieces(&self) -> Result<Vec<PieceSummary>, Error> {
        let mut out = Vec::new();
        for cid in self.pieces.list_pieces()? {
            out.push(self.piece(&cid).await?);
        }
        Ok(out)
    }

    /// One piece; [`rm_unseal::Error::PieceNotFound`] when the store does not know it.
    pub async fn piece(&self, piece_cid: &Cid) -> Result<PieceSummary, Error> {
        let info = self.pieces.get_piece_info(piece_cid)?;
        let payloads = match self.unsealer.roots(&info).await {
            Ok(roots) => roots.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(piece = %piece_cid, error = %e, "reading the piece's CAR header");
                Vec::new()
            }
        };
        let cached = self
            .unsealer
            .cache()
            .and_then(|c| c.list().into_iter().find(|p| p.piece_cid == *piece_cid));
        Ok(PieceSummary {
            piece_cid: *piece_cid,
            payloads,
            data_size: self.pieces.data_size(piece_cid)?,
            piece_size: info
                .deals
                .iter()
                .find_map(|d| PaddedPieceSize::new(d.length).ok())
                .map(PaddedPieceSize::get),
            deals: info.deals,
            cached,
            readers: self.unsealer.in_use(piece_cid),
        })
    }

    /// Removes a piece and frees its disk space: its records in the piece store, its
    /// bytes in the sector files (punched out), its copy in the unsealed cache, and the
    /// blocks an older `rm` loaded into `blocks.dat` for it that no other piece holds
    /// (punched out too); payloads no piece holds any more are no longer provided.
    /// Refused while a deal reads the piece. Returns what was freed, measured.
    pub async fn remove_piece(&self, piece_cid: &Cid) -> Result<PieceRemoval, Error> {
        let home = Home::new(&self.home);
        let disk_before = data_usage(&home)?;
        let loaded: Arc<dyn Blockstore> = self.blocks.clone();
        let removed = self
            .unsealer
            .remove_piece(piece_cid, Some(&self.sectors), Some(loaded))
            .await?;
        let mut unprovided = Vec::new();
        for root in &removed.roots {
            let still_held = match self.pieces.get_cid_info(root) {
                Ok(_) => true,
                Err(e) if e.is_not_found() => false,
                Err(e) => return Err(e.into()),
            };
            if !still_held && !self.blocks.has(root)? && self.announcer.unprovide(root).await? {
                unprovided.push(*root);
            }
        }
        let disk_after = data_usage(&home)?;
        Ok(PieceRemoval {
            removed,
            unprovided,
            disk_before,
            disk_after,
        })
    }
}
