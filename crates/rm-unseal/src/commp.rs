//! Piece commitments (CommP) and piece CIDs.
//!
//! CommP is the root of a binary merkle tree over the Fr32-padded piece, zero-filled to the
//! piece's padded size. Leaves are the 32-byte chunks of the padded data; a parent is
//! SHA-256 of its two children with the two top bits of the last byte cleared
//! ("sha2-256-trunc254-padded"), so every node is a valid field element.
//!
//! A piece CID is a CIDv1 with codec `fil-commitment-unsealed` (0xf101) and multihash
//! `sha2-256-trunc254-padded` (0x1012) over the 32-byte root.
//!
//! [`Hasher`] computes CommP in one streaming pass with memory for one path of the tree;
//! zero subtrees are never hashed twice ([`zero_commitment`]).

use std::sync::OnceLock;

use cid::Cid;

use crate::Error;
use crate::fr32::{self, PADDED_CHUNK, PaddedPieceSize, UNPADDED_CHUNK};

/// Multicodec `fil-commitment-unsealed`.
pub const FIL_COMMITMENT_UNSEALED: u64 = 0xf101;
/// Multihash `sha2-256-trunc254-padded`.
pub const SHA2_256_TRUNC254_PADDED: u64 = 0x1012;

/// A 32-byte merkle node.
pub type Node = [u8; 32];

/// Largest tree depth: 2^64 bytes / 32-byte leaves.
const MAX_LEVELS: usize = 59;

/// The parent of two nodes: SHA-256 of both, top two bits cleared.
pub fn parent(left: &Node, right: &Node) -> Node {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(left);
    h.update(right);
    let mut out: Node = h.finalize().into();
    out[31] &= 0x3f;
    out
}

/// Roots of all-zero trees: `zeros()[k]` covers 2^k leaves (32 × 2^k bytes).
fn zeros() -> &'static [Node; MAX_LEVELS] {
    static ZEROS: OnceLock<[Node; MAX_LEVELS]> = OnceLock::new();
    ZEROS.get_or_init(|| {
        let mut z = [[0u8; 32]; MAX_LEVELS];
        for k in 1..MAX_LEVELS {
            z[k] = parent(&z[k - 1], &z[k - 1]);
        }
        z
    })
}

/// The commitment of a piece of zeros of padded size `size`.
pub fn zero_commitment(size: PaddedPieceSize) -> Node {
    zeros()[size.get().trailing_zeros() as usize - 5]
}

/// The piece CID of a commitment.
pub fn piece_cid(comm: &Node) -> Cid {
    // A 32-byte digest always fits a 64-byte multihash.
    let mh = multihash::Multihash::<64>::wrap(SHA2_256_TRUNC254_PADDED, comm).unwrap_or_default();
    Cid::new_v1(FIL_COMMITMENT_UNSEALED, mh)
}

/// The commitment inside a piece CID; an error for any other kind of CID.
pub fn commitment(piece_cid: &Cid) -> Result<Node, Error> {
    let mh = piece_cid.hash();
    if piece_cid.codec() != FIL_COMMITMENT_UNSEALED || mh.code() != SHA2_256_TRUNC254_PADDED {
        return Err(Error::NotAPieceCid(format!(
            "{piece_cid}: codec {:#x}, multihash {:#x}",
            piece_cid.codec(),
            mh.code()
        )));
    }
    mh.digest()
        .try_into()
        .map_err(|_| Error::NotAPieceCid(format!("{piece_cid}: digest is not 32 bytes")))
}

/// A finished commitment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commitment {
    /// The merkle root.
    pub comm: Node,
    /// The padded piece size it covers.
    pub size: PaddedPieceSize,
}

impl Commitment {
    /// The piece CID.
    pub fn cid(&self) -> Cid {
        piece_cid(&self.comm)
    }
}

/// Streaming CommP of unpadded data: feed bytes with [`Hasher::update`] (or `io::Write`),
/// then [`Hasher::finish`].
#[derive(Clone)]
pub struct Hasher {
    /// `stack[k]`: a complete left subtree of 2^k leaves waiting for its right sibling.
    stack: Vec<Option<Node>>,
    buf: [u8; UNPADDED_CHUNK],
    buf_len: usize,
    bytes: u64,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher {
    /// An empty hasher.
    pub fn new() -> Self {
        Self {
            stack: Vec::with_capacity(40),
            buf: [0; UNPADDED_CHUNK],
            buf_len: 0,
            bytes: 0,
        }
    }

    /// Unpadded bytes fed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Feeds unpadded bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.bytes += data.len() as u64;
        if self.buf_len > 0 {
            let take = (UNPADDED_CHUNK - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
            if self.buf_len < UNPADDED_CHUNK {
                return;
            }
            let chunk = self.buf;
            self.chunk(&chunk);
            self.buf_len = 0;
        }
        let mut chunks = data.chunks_exact(UNPADDED_CHUNK);
        for chunk in &mut chunks {
            if let Ok(chunk) = chunk.try_into() {
                self.chunk(chunk);
            }
        }
        let rest = chunks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    fn chunk(&mut self, chunk: &[u8; UNPADDED_CHUNK]) {
        let mut padded = [0u8; PADDED_CHUNK];
        fr32::pad_chunk(chunk, &mut padded);
        // The four leaves of a chunk make one subtree of level 2.
        let mut leaves = padded.chunks_exact(32).map(|l| {
            let mut n = [0u8; 32];
            n.copy_from_slice(l);
            n
        });
        let (Some(a), Some(b), Some(c), Some(d)) =
            (leaves.next(), leaves.next(), leaves.next(), leaves.next())
        else {
            return;
        };
        let node = parent(&parent(&a, &b), &parent(&c, &d));
        self.push(2, node);
    }

    /// Adds the root of a whole subtree of `2^level` leaves covering `bytes` unpadded
    /// bytes. Only at a position where such a subtree starts: nothing buffered and no
    /// pending subtree below `level` (the caller feeds whole units only).
    fn push_subtree(&mut self, level: usize, node: Node, bytes: u64) {
        debug_assert_eq!(self.buf_len, 0);
        debug_assert!(self.stack.iter().take(level).all(Option::is_none));
        self.bytes += bytes;
        self.push(level, node);
    }

    fn push(&mut self, mut level: usize, mut node: Node) {
        loop {
            if self.stack.len() <= level {
                self.stack.resize(level + 1, None);
            }
            match self.stack[level].take() {
                Some(left) => {
                    node = parent(&left, &node);
                    level += 1;
                }
                None => {
                    self.stack[level] = Some(node);
                    return;
                }
            }
        }
    }

    /// The commitment over the smallest piece that holds the data.
    pub fn finish(self) -> Result<Commitment, Error> {
        let size = PaddedPieceSize::for_data(self.bytes)?;
        self.finish_with_size(size)
    }

    /// The commitment over a piece of padded size `size` (zero-filled after the data).
    pub fn finish_with_size(mut self, size: PaddedPieceSize) -> Result<Commitment, Error> {
        if size.unpadded().get() < self.bytes {
            return Err(Error::InvalidSize(format!(
                "{} bytes do not fit a piece of {size} bytes",
                self.bytes
            )));
        }
        if self.buf_len > 0 {
            let mut chunk = [0u8; UNPADDED_CHUNK];
            chunk[..self.buf_len].copy_from_slice(&self.buf[..self.buf_len]);
            self.chunk(&chunk);
        }
        let top = size.get().trailing_zeros() as usize - 5; // levels above the leaves
        let zeros = zeros();
        // Fold the pending left subtrees with zero right siblings, lowest first.
        let mut carry: Option<Node> = None;
        for (level, zero) in zeros.iter().enumerate().take(top) {
            let left = self.stack.get(level).copied().flatten();
            carry = match (left, carry) {
                (Some(l), Some(c)) => Some(parent(&l, &c)),
                (Some(l), None) => Some(parent(&l, zero)),
                (None, Some(c)) => Some(parent(&c, zero)),
                (None, None) => None,
            };
        }
        let comm = match (carry, self.stack.get(top).copied().flatten()) {
            (Some(c), _) => c,
            // Exactly 2^top leaves of data: the whole tree is one pushed subtree.
            (None, Some(full)) => full,
            (None, None) => zeros[top],
        };
        Ok(Commitment { comm, size })
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fr32 chunks in one unit of [`ParallelHasher`] work, as a power of two (2^15 chunks: 4 MiB
/// padded, a subtree of 2^17 leaves).
const UNIT_CHUNKS_LOG2: usize = 15;

/// Unpadded bytes in one unit of [`ParallelHasher`] work: 4,161,536 (2^15 Fr32 chunks, 4 MiB
/// padded). A multiple of 127, so a reader cutting its input into units also cuts it at
/// Fr32 chunk boundaries.
pub const PARALLEL_UNIT: usize = UNPADDED_CHUNK << UNIT_CHUNKS_LOG2;

type Job = (u64, Vec<u8>);
/// A unit's index, its root (`None`: the worker panicked) and its buffer back.
type Done = (u64, Option<Node>, Vec<u8>);

/// CommP on several threads, equal to [`Hasher`]'s by construction.
///
/// The data is cut into units of [`PARALLEL_UNIT`] bytes. A unit covers a whole subtree of
/// the piece's tree (2^17 leaves at an aligned position), so worker threads hash units
/// independently and the caller folds their roots in order into a [`Hasher`], which also
/// takes the last, partial unit. At most two units per worker are in flight: memory is
/// about 8 MiB per worker, however large the piece.
///
/// ```
/// use rm_unseal::commp::{Hasher, ParallelHasher};
/// let data = vec![7u8; 10_000_000];
/// let mut serial = Hasher::new();
/// serial.update(&data);
/// let mut parallel = ParallelHasher::new(2);
/// parallel.update(&data);
/// assert_eq!(parallel.finish().unwrap(), serial.finish().unwrap());
/// ```
pub struct ParallelHasher {
    hasher: Hasher,
    /// Unpadded bytes per unit, and the tree level of a unit's root.
    unit: usize,
    level: usize,
    /// The unit being filled.
    fill: Vec<u8>,
    jobs: Option<std::sync::mpsc::SyncSender<Job>>,
    results: std::sync::mpsc::Receiver<Done>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// Units sent, units folded into `hasher`, units received out of order.
    sent: u64,
    folded: u64,
    ready: std::collections::BTreeMap<u64, Node>,
    in_flight: usize,
    max_in_flight: usize,
    spare: Vec<Vec<u8>>,
    failed: bool,
}

impl std::fmt::Debug for ParallelHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelHasher")
            .field("workers", &self.workers.len())
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

/// The root of the subtree over `unit`, a whole number of chunks filling 2^`level` leaves.
fn subtree_root(unit: &[u8], level: usize) -> Node {
    let mut h = Hasher::new();
    h.update(unit);
    h.stack.get(level).copied().flatten().unwrap_or_default()
}

impl ParallelHasher {
    /// A hasher with `threads` workers (0 or 1: everything on the caller's thread).
    pub fn new(threads: usize) -> Self {
        Self::with_unit(threads, UNIT_CHUNKS_LOG2)
    }

    /// A hasher with one worker per available core.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    fn with_unit(threads: usize, chunks_log2: usize) -> Self {
        let (results_tx, results) = std::sync::mpsc::channel::<Done>();
        // Only workers hold senders: if they all die, `recv` ends instead of waiting.
        let level = chunks_log2 + 2;
        let mut workers = Vec::new();
        let mut jobs = None;
        if threads > 1 {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(threads);
            let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
            for i in 0..threads {
                let rx = std::sync::Arc::clone(&rx);
                let done = results_tx.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("commp-{i}"))
                    .spawn(move || {
                        loop {
                            let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                            let Ok((index, unit)) = job else { return };
                            let root =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    subtree_root(&unit, level)
                                }))
                                .ok();
                            if done.send((index, root, unit)).is_err() {
                                return;
                            }
                        }
                    });
                if let Ok(handle) = spawned {
                    workers.push(handle);
                }
            }
            if !workers.is_empty() {
                jobs = Some(tx);
            }
        }
        drop(results_tx);
        let max_in_flight = 2 * workers.len().max(1);
        Self {
            hasher: Hasher::new(),
            unit: UNPADDED_CHUNK << chunks_log2,
            level,
            fill: Vec::new(),
            jobs,
            results,
            workers,
            sent: 0,
            folded: 0,
            ready: Default::default(),
            in_flight: 0,
            max_in_flight,
            spare: Vec::new(),
            failed: false,
        }
    }

    /// Unpadded bytes fed so far.
    pub fn bytes(&self) -> u64 {
        self.sent * self.unit as u64 + self.fill.len() as u64
    }

    /// Feeds unpadded bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.fill.capacity() < self.unit {
                self.fill = self
                    .spare
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(self.unit));
                self.fill.clear();
            }
            let take = (self.unit - self.fill.len()).min(data.len());
            self.fill.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.fill.len() == self.unit {
                self.dispatch();
            }
        }
    }

    /// Sends the full unit to a worker (or hashes it here without workers).
    fn dispatch(&mut self) {
        let unit = std::mem::take(&mut self.fill);
        let index = self.sent;
        self.sent += 1;
        if self.in_flight >= self.max_in_flight {
            self.receive_one();
        }
        let unit = match &self.jobs {
            Some(jobs) => match jobs.send((index, unit)) {
                Ok(()) => {
                    self.in_flight += 1;
                    return;
                }
                Err(std::sync::mpsc::SendError((_, unit))) => unit,
            },
            None => unit,
        };
        let root = subtree_root(&unit, self.level);
        self.spare.push(unit);
        self.ready.insert(index, root);
        self.fold();
    }

    fn receive_one(&mut self) {
        match self.results.recv() {
            Ok((index, Some(root), unit)) => {
                self.in_flight -= 1;
                self.spare.push(unit);
                self.ready.insert(index, root);
                self.fold();
            }
            Ok((_, None, _)) | Err(_) => {
                // A worker panicked (or every worker is gone): the commitment is lost.
                self.failed = true;
                self.in_flight = 0;
            }
        }
    }

    /// Folds the roots that are next in order into the serial hasher.
    fn fold(&mut self) {
        while let Some(root) = self.ready.remove(&self.folded) {
            self.hasher.push_subtree(self.level, root, self.unit as u64);
            self.folded += 1;
        }
    }

    fn drain(&mut self) -> Result<Hasher, Error> {
        while self.in_flight > 0 && !self.failed {
            self.receive_one();
        }
        if self.failed || self.folded != self.sent {
            return Err(Error::Import("a CommP worker failed".into()));
        }
        let mut hasher = std::mem::take(&mut self.hasher);
        hasher.update(&self.fill);
        self.fill.clear();
        Ok(hasher)
    }

    /// The commitment over the smallest piece that holds the data.
    pub fn finish(mut self) -> Result<Commitment, Error> {
        self.drain()?.finish()
    }

    /// The commitment over a piece of padded size `size` (zero-filled after the data).
    pub fn finish_with_size(mut self, size: PaddedPieceSize) -> Result<Commitment, Error> {
        self.drain()?.finish_with_size(size)
    }
}

impl Drop for ParallelHasher {
    fn drop(&mut self) {
        // Workers end when the job channel closes.
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// CommP of `data` in the smallest piece that holds it.
pub fn commp(data: &[u8]) -> Result<Commitment, Error> {
    let mut h = Hasher::new();
    h.update(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// CommP by the definition: pad, zero-fill, hash level by level.
    fn naive(data: &[u8], size: u64) -> Node {
        let mut padded = fr32::pad(data);
        padded.resize(size as usize, 0);
        let mut level: Vec<Node> = padded.chunks(32).map(|c| c.try_into().unwrap()).collect();
        while level.len() > 1 {
            level = level.chunks(2).map(|p| parent(&p[0], &p[1])).collect();
        }
        level[0]
    }

    #[test]
    fn parent_is_truncated_sha256() {
        use sha2::Digest;
        let (l, r) = ([1u8; 32], [2u8; 32]);
        let mut expected: [u8; 32] = sha2::Sha256::new()
            .chain_update(l)
            .chain_update(r)
            .finalize()
            .into();
        expected[31] &= 0x3f;
        assert_eq!(parent(&l, &r), expected);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn streaming_matches_the_definition(
            data in proptest::collection::vec(any::<u8>(), 0..5000),
            split in any::<prop::sample::Index>(),
            extra in 0u32..3,
        ) {
            let natural = PaddedPieceSize::for_data(data.len() as u64).unwrap();
            let size = PaddedPieceSize::new(natural.get() << extra).unwrap();
            let mut h = Hasher::new();
            let at = split.index(data.len() + 1);
            h.update(&data[..at]);
            h.update(&data[at..]);
            let c = h.finish_with_size(size).unwrap();
            prop_assert_eq!(c.comm, naive(&data, size.get()));
            prop_assert_eq!(c.size, size);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn parallel_matches_serial(
            // Units of 2 chunks (254 bytes): many units, and partial ones, in small data.
            data in proptest::collection::vec(any::<u8>(), 0..6000),
            splits in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
            threads in 0usize..4,
            extra in 0u32..2,
        ) {
            let natural = PaddedPieceSize::for_data(data.len() as u64).unwrap();
            let size = PaddedPieceSize::new(natural.get() << extra).unwrap();
            let mut serial = Hasher::new();
            serial.update(&data);
            let mut parallel = ParallelHasher::with_unit(threads, 1);
            let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut at = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                parallel.update(&data[at..cut]);
                at = cut;
            }
            prop_assert_eq!(parallel.bytes(), data.len() as u64);
            prop_assert_eq!(
                parallel.finish_with_size(size).unwrap(),
                serial.finish_with_size(size).unwrap()
            );
        }
    }

    #[test]
    fn parallel_units_of_full_size() {
        // Two whole units and a bit: the real unit size, against the serial hasher.
        let data: Vec<u8> = (0..2 * PARALLEL_UNIT + 1000)
            .map(|i| (i as u64).wrapping_mul(2_654_435_761) as u8)
            .collect();
        let mut parallel = ParallelHasher::new(2);
        parallel.update(&data);
        assert_eq!(parallel.finish().unwrap(), commp(&data).unwrap());
    }

    #[test]
    fn exact_power_of_two_data() {
        // 4 chunks fill a 512-byte piece exactly.
        let data: Vec<u8> = (0..127 * 4).map(|i| (i * 7) as u8).collect();
        assert_eq!(commp(&data).unwrap().comm, naive(&data, 512));
        assert_eq!(commp(&data).unwrap().size.get(), 512);
    }

    #[test]
    fn too_small_a_piece_is_refused() {
        let mut h = Hasher::new();
        h.update(&[1u8; 200]);
        assert!(h.finish_with_size(PaddedPieceSize::MIN).is_err());
    }

    #[test]
    fn piece_cids_round_trip() {
        let c = commp(b"hello").unwrap();
        let cid = c.cid();
        assert_eq!(commitment(&cid).unwrap(), c.comm);
        assert!(cid.to_string().starts_with("baga6ea4sea"));
        let other = Cid::new_v1(0x55, cid.hash().to_owned());
        assert!(matches!(commitment(&other), Err(Error::NotAPieceCid(_))));
    }
}
