//! # rm-unseal: pieces, sectors and unsealing
//!
//! Layer 2 of the `rm` workspace: it depends on `rm-types`, `rm-store` and `rm-blockio`
//! and is used by `rm-provider` and `rm-node`. Filecoin providers keep deal data as *pieces* inside
//! *sectors*; a retrieval must find the piece that holds the payload, unseal it and load
//! its blocks. This crate holds everything between a CAR and those blocks:
//!
//! | module | what |
//! |---|---|
//! | [`fr32`] | Fr32 padding (127 bytes → 128) and padded/unpadded piece sizes |
//! | [`commp`] | piece commitments (CommP) and piece CIDs (`baga…`), streaming |
//! | [`piecestore`] | [`PieceStore`]: piece → deals/sectors/offsets; block → pieces (keyspaces of the node's database) |
//! | [`sector`] | [`SectorAccess`], the trait a node plugs in, and [`FileSectorStore`], unsealed sector files with Lotus's data layout |
//! | [`import`] | a CAR, file or directory → a piece in a sector, recorded in the piece store (one pass, CommP on every core: [`ParallelHasher`]) |
//! | [`source`] | [`PieceBlocks`]: a read-only blockstore over a piece's bytes, each block read at its recorded location and verified |
//! | [`cache`] | [`UnsealedCache`]: pieces that cannot be read at random, unsealed once each, size-capped with least-recently-used eviction |
//! | [`unseal`] | [`Unsealer`]: payload CID → its piece opened for a deal ([`Unsealer::open`]), or loaded into a blockstore; piece removal |
//!
//! Storage follows the workspace rule: one database per node ([`rm_store::Db`]), each
//! record kind in its own keyspace ([`KEYSPACES`]); sector files live in a directory of
//! the node home. Fr32 and CommP need neither; the cargo feature `rocksdb` (off by
//! default) adds `rm-store`'s RocksDB backend for a piece store that persists.
//!
//! ## Example
//!
//! Import a file as a piece, then load its blocks back from the sector:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use rm_blockio::{Blockstore, MemoryBlockstore, unixfs::Preset};
//! use rm_unseal::{FileSectorStore, PieceStore, Unsealer, import, sector};
//!
//! let home = tempfile::tempdir()?;
//! // A node opens its RocksDB database with every keyspace: rm_store::Db::open(path,
//! // &rm_unseal::KEYSPACES, &Default::default()). In memory here:
//! let db = rm_store::Db::memory();
//! let pieces = Arc::new(PieceStore::open(&db)?);
//! let sectors = Arc::new(FileSectorStore::open(
//!     home.path().join("sectors"), db.keyspace(FileSectorStore::DEFAULT_KEYSPACE)?,
//!     sector::Config::default())?);
//!
//! let file = home.path().join("hello.txt");
//! std::fs::write(&file, b"hello, pieces")?;
//! let imported = import::import_path(&pieces, &sectors, &file, Preset::KUBO_V1_RAW_LEAVES,
//!     &home.path().join("staging"))?;
//! assert!(imported.piece_cid.to_string().starts_with("baga"));
//!
//! let unsealer = Unsealer::new(pieces, sectors, db.keyspace(rm_unseal::unseal::LOADED_KEYSPACE)?);
//! let blocks = Arc::new(MemoryBlockstore::new());
//! let loaded = unsealer.load(&imported.payload_cid, None, blocks.clone()).await?;
//! assert_eq!(loaded.piece_cid, imported.piece_cid);
//! assert!(blocks.has(&imported.payload_cid)?);
//! # Ok(()) }
//! ```
//!
//! ## Errors
//!
//! One [`Error`] enum. Not-found answers are typed ([`Error::PieceNotFound`],
//! [`Error::PayloadNotFound`], see [`Error::is_not_found`]); the loader's failures carry
//! go-fil-markets' messages ("error looking up information on CID", "no sectors found to
//! unseal from", "Unable to unseal piece", "attempting to read Car file"). Nothing read
//! from disk is trusted: CAR sections are size-capped and every block is verified before
//! it is stored.

pub mod cache;
pub mod commp;
pub mod fr32;
pub mod import;
pub mod piecestore;
pub mod sector;
pub mod source;
pub mod unseal;

pub use cache::UnsealedCache;
pub use commp::{Commitment, Hasher, ParallelHasher, piece_cid};
pub use fr32::{PaddedPieceSize, UnpaddedPieceSize};
pub use import::Imported;
pub use piecestore::{BlockLocation, CidInfo, DealInfo, PieceBlockLocation, PieceInfo, PieceStore};
pub use sector::{FileSectorStore, SectorAccess};
pub use source::{PieceBlocks, PieceData, SourceKind};
pub use unseal::{Loaded, Removed, Unsealer};

use cid::Cid;

/// Every keyspace the crate's stores use by default (name them when opening the node's
/// database).
pub const KEYSPACES: [&str; 5] = [
    piecestore::PIECES_KEYSPACE,
    piecestore::CIDS_KEYSPACE,
    piecestore::SIZES_KEYSPACE,
    FileSectorStore::DEFAULT_KEYSPACE,
    unseal::LOADED_KEYSPACE,
];

/// Errors of pieces, sectors and unsealing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A piece size is not valid.
    #[error("invalid size: {0}")]
    InvalidSize(String),
    /// A CID is not a piece CID (fil-commitment-unsealed, sha2-256-trunc254-padded).
    #[error("not a piece CID: {0}")]
    NotAPieceCid(String),
    /// The piece store does not know the piece.
    #[error("piece with CID {0}: not found")]
    PieceNotFound(Box<Cid>),
    /// The piece store does not know the payload block.
    #[error("payload CID {0}: not found")]
    PayloadNotFound(Box<Cid>),
    /// The piece has [`piecestore::MAX_DEALS_PER_PIECE`] deals already.
    #[error("piece {0} has too many deals")]
    TooManyDeals(Box<Cid>),
    /// An unsealed piece does not hold the payload it was unsealed for.
    #[error("the piece does not hold payload {0}")]
    PayloadNotInPiece(Box<Cid>),
    /// Looking up the payload's pieces failed.
    #[error("error looking up information on CID: {0}")]
    Lookup(#[source] Box<Error>),
    /// The piece is in no sector.
    #[error("no sectors found to unseal from")]
    NoSectors,
    /// No sector holding the piece could be read.
    #[error("Unable to unseal piece: {0}")]
    UnsealPiece(#[source] Box<Error>),
    /// A sector could not be read.
    #[error("unseal: {0}")]
    Unseal(String),
    /// The unsealed piece is not a valid CAR.
    #[error("attempting to read Car file: {0}")]
    ReadCar(#[source] Box<rm_blockio::car::Error>),
    /// An imported CAR is not valid.
    #[error("CAR: {0}")]
    Car(#[source] Box<rm_blockio::car::Error>),
    /// An import could not be done.
    #[error("import: {0}")]
    Import(String),
    /// Building a UnixFS DAG failed.
    #[error(transparent)]
    UnixFs(#[from] rm_blockio::unixfs::Error),
    /// A piece is larger than a sector.
    #[error("a piece of {piece} bytes does not fit a sector of {sector} bytes")]
    PieceTooLarge {
        /// Padded piece size.
        piece: u64,
        /// Sector size.
        sector: u64,
    },
    /// The blockstore failed.
    #[error(transparent)]
    Blockstore(#[from] rm_blockio::blockstore::Error),
    /// The database failed (or lacks a keyspace).
    #[error(transparent)]
    Db(#[from] rm_store::Error),
    /// A stored record does not decode.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// File system.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The unsealed cache cannot make room: pieces being read fill it.
    #[error(
        "the unsealed cache is full: {needed} more bytes do not fit under its cap of {max} \
         ({in_use} held by pieces being read); raise storage.unsealed_cache_size"
    )]
    CacheFull {
        /// Bytes the new piece needs.
        needed: u64,
        /// The cap.
        max: u64,
        /// Bytes held that cannot be evicted.
        in_use: u64,
    },
    /// The piece is being read (a deal in flight) and cannot be removed now.
    #[error("piece {0} is being read by a deal in flight")]
    PieceInUse(Box<Cid>),
}

impl From<rm_blockio::car::Error> for Error {
    fn from(e: rm_blockio::car::Error) -> Self {
        Error::Car(Box::new(e))
    }
}

impl Error {
    /// Whether this says the piece or payload is unknown (rather than that a lookup
    /// failed).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::PieceNotFound(_) | Error::PayloadNotFound(_) => true,
            Error::Lookup(inner) => inner.is_not_found(),
            _ => false,
        }
    }
}
