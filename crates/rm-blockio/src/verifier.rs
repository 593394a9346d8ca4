//! The client side: [`SelectorVerifier`] checks blocks arriving from a provider against the
//! traversal of `(root, selector)`.
//!
//! Each block's CID is recomputed from its prefix and a fresh hash of its data
//! ([`rm_types::Block::cid`]) and must equal the link the traversal needs next. A block that
//! is wrong, extra, out of order or too large is an error, and the verifier is left exactly
//! as it was: the next block needed is unchanged. Per block, the data is hashed once and
//! never copied; raw blocks are not decoded at all.

use crate::blockstore::Blockstore;
use crate::reader::DEFAULT_MAX_BLOCK_SIZE;
use crate::selector::Selector;
use crate::traversal::{self, Limits, Traversal};
use cid::Cid;
use rm_types::Block;

/// Why a block was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The traversal is complete: this block is one too many.
    #[error("unexpected extra block {0:?}: the traversal is complete")]
    ExtraBlock(Option<Cid>),
    /// The block is not the one the traversal needs now.
    #[error("unexpected block {got}: the traversal needs {expected}")]
    UnexpectedBlock {
        /// The link the traversal needs.
        expected: Box<Cid>,
        /// The CID the block hashed to.
        got: Box<Cid>,
    },
    /// The block is larger than the maximum block size.
    #[error("block of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The block's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The block's prefix is malformed or names a hash rm cannot compute.
    #[error("invalid block: {0}")]
    InvalidBlock(#[from] rm_types::Error),
    /// The block hashed correctly but the traversal could not use it (undecodable, budget),
    /// or resuming from the blockstore failed.
    #[error(transparent)]
    Traversal(#[from] traversal::Error),
}

/// What [`SelectorVerifier::verify`] learned about an accepted block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The block's CID.
    pub cid: Cid,
    /// Whether this was the last block of the traversal.
    pub done: bool,
}

/// Verifies that blocks arrive in the traversal order of `(root, selector)`.
///
/// ```
/// use rm_blockio::{blockstore::MemoryBlockstore, reader::BlockReader, selector::Selector};
/// use rm_blockio::{unixfs::{Importer, Preset}, verifier::SelectorVerifier};
///
/// let store = MemoryBlockstore::new();
/// let root = Importer::import_bytes(&store, Preset::GO_FIL_MARKETS, &[1u8; 2500])?.root;
/// let selector = Selector::explore_all_recursively();
/// let blocks: Vec<_> = BlockReader::new(&store, root, &selector)?.collect::<Result<_, _>>()?;
///
/// let mut verifier = SelectorVerifier::new(root, &selector)?;
/// assert!(verifier.verify(&blocks[1]).is_err(), "a leaf before the root is refused");
/// for block in &blocks {
///     verifier.verify(block)?;
/// }
/// assert!(verifier.is_done());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SelectorVerifier {
    traversal: Traversal,
    max_block_size: usize,
    bytes: u64,
}

impl SelectorVerifier {
    /// A verifier for the traversal of `root` with `selector`.
    pub fn new(root: Cid, selector: &Selector) -> Result<Self, Error> {
        Self::with_limits(root, selector, Limits::default())
    }

    /// Like [`SelectorVerifier::new`] with explicit traversal bounds.
    pub fn with_limits(root: Cid, selector: &Selector, limits: Limits) -> Result<Self, Error> {
        Ok(Self {
            traversal: Traversal::with_limits(root, selector, limits)?,
            max_block_size: DEFAULT_MAX_BLOCK_SIZE,
            bytes: 0,
        })
    }

    /// A verifier that resumes after the first `verified` blocks, which must be in the
    /// client's `store` (inner nodes are read back to learn their links; leaves are only
    /// checked for presence).
    pub fn resume(
        root: Cid,
        selector: &Selector,
        verified: u64,
        store: &dyn Blockstore,
    ) -> Result<Self, Error> {
        let mut v = Self::new(root, selector)?;
        v.fast_forward(verified, store)?;
        Ok(v)
    }

    /// Skips the next `n` blocks, taking them from `store` (see [`SelectorVerifier::resume`]).
    /// Their sizes are not added to [`SelectorVerifier::bytes_verified`].
    pub fn fast_forward(&mut self, n: u64, store: &dyn Blockstore) -> Result<(), Error> {
        Ok(self.traversal.skip(n, store, true)?)
    }

    /// Sets the largest block accepted (default 2 MiB).
    pub fn max_block_size(mut self, max: usize) -> Self {
        self.max_block_size = max;
        self
    }

    /// Checks one block. On success the traversal moves past it; on error nothing changes.
    pub fn verify(&mut self, block: &Block) -> Result<Verified, Error> {
        let Some(expected) = self.traversal.next_link().copied() else {
            return Err(Error::ExtraBlock(block.cid().ok()));
        };
        if block.data.len() > self.max_block_size {
            return Err(Error::TooLarge {
                size: block.data.len(),
                max: self.max_block_size,
            });
        }
        let got = block.cid()?;
        if got != expected {
            return Err(Error::UnexpectedBlock {
                expected: Box::new(expected),
                got: Box::new(got),
            });
        }
        self.traversal.advance(&block.data)?;
        self.bytes += block.data.len() as u64;
        Ok(Verified {
            cid: got,
            done: self.traversal.is_done(),
        })
    }

    /// The CID of the next block expected, or `None` when done.
    pub fn next_expected(&self) -> Option<&Cid> {
        self.traversal.next_link()
    }

    /// Whether every block of the traversal has been verified.
    pub fn is_done(&self) -> bool {
        self.traversal.is_done()
    }

    /// The links still to be verified, in order (see
    /// [`Traversal::pending_links`](crate::traversal::Traversal::pending_links)).
    pub fn pending_links(&self) -> impl Iterator<Item = &Cid> {
        self.traversal.pending_links()
    }

    /// Blocks accepted (or fast-forwarded over) so far.
    pub fn blocks_verified(&self) -> u64 {
        self.traversal.blocks_visited()
    }

    /// Bytes of block data accepted by [`SelectorVerifier::verify`].
    pub fn bytes_verified(&self) -> u64 {
        self.bytes
    }
}
