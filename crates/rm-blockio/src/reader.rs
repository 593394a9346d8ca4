//! The provider side: [`BlockReader`] yields the blocks of `(root, selector)` from a
//! blockstore in traversal order, one at a time, holding only the traversal stack.

use crate::blockstore::{self, Blockstore};
use crate::codec;
use crate::selector::Selector;
use crate::traversal::{self, Limits, Traversal};
use cid::Cid;
use rm_types::Block;

/// Default largest block the reader hands out (the deal protocol's limit, `docs/protocol.md`).
pub const DEFAULT_MAX_BLOCK_SIZE: usize = 2 << 20;

/// Errors of the block reader.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A block the traversal needs is not in the blockstore.
    #[error("block {0} is not in the blockstore")]
    NotFound(Cid),
    /// A stored block does not hash to its CID (unless [`BlockReader::verify_hashes`] is off).
    #[error("stored block {0} does not match its CID")]
    Corrupt(Cid),
    /// A stored block is larger than the configured maximum.
    #[error("block {cid} is {size} bytes, over the limit of {max}")]
    TooLarge {
        /// The block.
        cid: Cid,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The traversal failed (undecodable block, budget, skip beyond the end).
    #[error(transparent)]
    Traversal(#[from] traversal::Error),
    /// The blockstore failed.
    #[error(transparent)]
    Blockstore(#[from] blockstore::Error),
    /// A hash the crate cannot compute (unless [`BlockReader::verify_hashes`] is off).
    #[error(transparent)]
    Codec(#[from] codec::Error),
}

/// Reads the blocks of a selector traversal from a blockstore, in order.
///
/// ```
/// use rm_blockio::{blockstore::MemoryBlockstore, reader::BlockReader, selector::Selector};
/// use rm_blockio::unixfs::{Importer, Preset};
///
/// let store = MemoryBlockstore::new();
/// let root = Importer::import_bytes(&store, Preset::GO_FIL_MARKETS, &[7u8; 3000])?.root;
/// let blocks = BlockReader::new(&store, root, &Selector::explore_all_recursively())?
///     .collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(blocks.len(), 4); // the root and three 1 KiB leaves
/// assert_eq!(blocks[0].cid()?, root);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BlockReader<S> {
    store: S,
    traversal: Traversal,
    max_block_size: usize,
    verify: bool,
    failed: bool,
}

impl<S> std::fmt::Debug for BlockReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockReader")
            .field("traversal", &self.traversal)
            .finish_non_exhaustive()
    }
}

impl<S: Blockstore> BlockReader<S> {
    /// A reader of the whole traversal.
    pub fn new(store: S, root: Cid, selector: &Selector) -> Result<Self, Error> {
        Self::with_limits(store, root, selector, Limits::default())
    }

    /// Like [`BlockReader::new`] with explicit traversal bounds.
    pub fn with_limits(
        store: S,
        root: Cid,
        selector: &Selector,
        limits: Limits,
    ) -> Result<Self, Error> {
        Ok(Self {
            store,
            traversal: Traversal::with_limits(root, selector, limits)?,
            max_block_size: DEFAULT_MAX_BLOCK_SIZE,
            verify: true,
            failed: false,
        })
    }

    /// A reader that starts after the first `skip` blocks (a resumed deal). Leaves among
    /// the skipped blocks are not read at all; inner nodes are read to learn their links.
    pub fn resume(store: S, root: Cid, selector: &Selector, skip: u64) -> Result<Self, Error> {
        let mut reader = Self::new(store, root, selector)?;
        reader.skip_blocks(skip)?;
        Ok(reader)
    }

    /// Sets the largest block handed out (default [`DEFAULT_MAX_BLOCK_SIZE`]).
    pub fn max_block_size(mut self, max: usize) -> Self {
        self.max_block_size = max;
        self
    }

    /// Re-hash every block read from the store against its CID (on by default: stored bytes
    /// can go bad, see [`crate::blockstore`]; the cost is in `benches/blockio_read.rs`).
    /// Turn it off only for a store that cannot lose bytes.
    pub fn verify_hashes(mut self, verify: bool) -> Self {
        self.verify = verify;
        self
    }

    /// Skips the next `n` blocks without yielding them.
    pub fn skip_blocks(&mut self, n: u64) -> Result<(), Error> {
        Ok(self.traversal.skip(n, &self.store, false)?)
    }

    /// Whether every block has been read.
    pub fn is_done(&self) -> bool {
        self.traversal.is_done()
    }

    /// Blocks read or skipped so far.
    pub fn position(&self) -> u64 {
        self.traversal.blocks_visited()
    }

    /// The CID of the next block, if any.
    pub fn next_cid(&self) -> Option<&Cid> {
        self.traversal.next_link()
    }

    /// The next block in traversal order, or `None` at the end.
    pub fn next_block(&mut self) -> Result<Option<Block>, Error> {
        let Some(cid) = self.traversal.next_link().copied() else {
            return Ok(None);
        };
        let data = self.store.get(&cid)?.ok_or(Error::NotFound(cid))?;
        if data.len() > self.max_block_size {
            return Err(Error::TooLarge {
                cid,
                size: data.len(),
                max: self.max_block_size,
            });
        }
        if self.verify {
            codec::verify(&cid, &data).map_err(|e| match e {
                codec::Error::HashMismatch(c) => Error::Corrupt(c),
                other => Error::Codec(other),
            })?;
        }
        self.traversal.advance(&data)?;
        Ok(Some(Block::new(&cid, data)))
    }
}

impl<S: Blockstore> Iterator for BlockReader<S> {
    type Item = Result<Block, Error>;

    /// Yields blocks until the end; after an error it yields the error once, then `None`.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_block() {
            Ok(block) => block.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl<S: Blockstore + 'static> BlockReader<S> {
    /// Runs the reader on tokio's blocking pool and returns a stream of its blocks, with at
    /// most `buffer` blocks read ahead (bounded channel). Must be called inside a tokio
    /// runtime. Dropping the stream stops the reader.
    pub fn into_stream(
        mut self,
        buffer: usize,
    ) -> impl futures::Stream<Item = Result<Block, Error>> + Send + Unpin {
        let (tx, mut rx) = tokio::sync::mpsc::channel(buffer.max(1));
        tokio::task::spawn_blocking(move || {
            for item in &mut self {
                if tx.blocking_send(item).is_err() {
                    break;
                }
            }
        });
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
