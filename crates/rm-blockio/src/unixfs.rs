//! UnixFS import and export, producing the same CIDs as kubo (`ipfs add`).
//!
//! Files are split into fixed-size chunks and laid out as boxo's *balanced* DAG
//! (`importer/balanced`): leaves in order under dag-pb nodes of at most `max_links` links,
//! every subtree full except the last, a single-chunk file being just its leaf. Leaves are
//! raw blocks or dag-pb UnixFS `File` nodes; inner nodes are dag-pb with UnixFS
//! `Data{Type: File, filesize, blocksizes}` and links `{Hash, Name: "", Tsize}` where
//! `Tsize` is the cumulative size of the child's blocks. Plain directories are dag-pb
//! `Data{Type: Directory}` with one named link per entry (no HAMT sharding: kubo shards
//! directories whose links exceed 256 KiB, so only smaller ones have kubo's CIDs).
//!
//! [`Importer`] is push-style (it implements [`std::io::Write`]) and keeps only the current
//! chunk and the links of the partially filled nodes, so files of any size stream through.
//! [`export_file`] and [`export_path`] stream the content back out, checking every block's
//! hash on the way.

use crate::blockstore::{self, Blockstore};
use crate::codec::{self, BLAKE2B_256, DAG_PB, RAW, SHA2_256};
use bytes::Bytes;
use cid::{Cid, Version};
use ipld_dagpb::{PbLink, PbNode};
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

/// Largest chunk size accepted (boxo's chunker limit).
pub const MAX_CHUNK_SIZE: usize = 1 << 20;
/// Deepest directory nesting imported or exported.
pub const MAX_DIR_DEPTH: usize = 256;

/// Errors of UnixFS import and export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on the local file system.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The blockstore failed.
    #[error(transparent)]
    Blockstore(#[from] blockstore::Error),
    /// A block could not be hashed, decoded or verified.
    #[error(transparent)]
    Codec(#[from] codec::Error),
    /// The preset's parameters are out of range.
    #[error("invalid preset: {0}")]
    InvalidPreset(&'static str),
    /// A block of the DAG is not in the blockstore.
    #[error("block {0} is not in the blockstore")]
    NotFound(Cid),
    /// A node is not valid UnixFS.
    #[error("invalid UnixFS node {cid}: {why}")]
    InvalidNode {
        /// The node.
        cid: Cid,
        /// What is wrong.
        why: String,
    },
    /// Something UnixFS allows that this crate does not handle (symlinks, HAMT shards,
    /// non-UTF-8 file names, codecs other than raw and dag-pb, ...).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A directory entry name that would escape or break the target directory.
    #[error("unsafe directory entry name {0:?}")]
    UnsafeName(String),
    /// Nesting beyond [`MAX_DIR_DEPTH`] or an export stack beyond its bound.
    #[error("DAG too deep")]
    TooDeep,
}

/// Import parameters. The associated constants are the supported profiles; the `with_*`
/// methods derive variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Preset {
    /// CID version of dag-pb nodes (and of leaves, except raw leaves under CIDv0, which are
    /// CIDv1 as in boxo).
    pub cid_version: Version,
    /// Multihash function (CIDv0 requires sha2-256).
    pub hash: u64,
    /// Chunk size in bytes (1 ..= [`MAX_CHUNK_SIZE`]).
    pub chunk_size: usize,
    /// Most links per dag-pb node (at least 2).
    pub max_links: usize,
    /// Raw leaves (codec 0x55) instead of dag-pb UnixFS `File` leaves.
    pub raw_leaves: bool,
}

impl Preset {
    /// kubo `ipfs add` legacy default (`unixfs-v0-2015`): CIDv0, dag-pb leaves,
    /// 256 KiB chunks, 174 links.
    pub const KUBO_V0: Preset = Preset {
        cid_version: Version::V0,
        hash: SHA2_256,
        chunk_size: 262_144,
        max_links: 174,
        raw_leaves: false,
    };
    /// kubo `ipfs add --cid-version=1`: CIDv1, raw leaves, 256 KiB chunks, 174 links.
    pub const KUBO_V1_RAW_LEAVES: Preset = Preset {
        cid_version: Version::V1,
        hash: SHA2_256,
        chunk_size: 262_144,
        max_links: 174,
        raw_leaves: true,
    };
    /// IPIP-499 `unixfs-v1-2025`: CIDv1, raw leaves, 1 MiB chunks, 1024 links.
    pub const UNIXFS_V1_2025: Preset = Preset {
        cid_version: Version::V1,
        hash: SHA2_256,
        chunk_size: 1 << 20,
        max_links: 1024,
        raw_leaves: true,
    };
    /// go-fil-markets' test DAG builder: CIDv1, BLAKE2b-256, 1 KiB chunks, raw leaves,
    /// 1024 links. (Go also inlines blocks of at most 126 bytes as identity CIDs; a
    /// [`Cid`] holds at most 64 digest bytes, so that is not reproduced: DAGs with blocks
    /// that small differ from Go's. `lorem.txt` has none.)
    pub const GO_FIL_MARKETS: Preset = Preset {
        cid_version: Version::V1,
        hash: BLAKE2B_256,
        chunk_size: 1024,
        max_links: 1024,
        raw_leaves: true,
    };

    /// The same preset with another chunk size.
    pub const fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// The same preset with another link limit.
    pub const fn with_max_links(mut self, max_links: usize) -> Self {
        self.max_links = max_links;
        self
    }

    /// The same preset with or without raw leaves.
    pub const fn with_raw_leaves(mut self, raw_leaves: bool) -> Self {
        self.raw_leaves = raw_leaves;
        self
    }

    /// The same preset with another CID version.
    pub const fn with_cid_version(mut self, cid_version: Version) -> Self {
        self.cid_version = cid_version;
        self
    }

    /// The same preset with another multihash function.
    pub const fn with_hash(mut self, hash: u64) -> Self {
        self.hash = hash;
        self
    }

    fn validate(&self) -> Result<(), Error> {
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            return Err(Error::InvalidPreset("chunk size must be 1 ..= 1 MiB"));
        }
        if self.max_links < 2 || self.max_links > 65_536 {
            return Err(Error::InvalidPreset("max links must be 2 ..= 65536"));
        }
        if self.cid_version == Version::V0 && self.hash != SHA2_256 {
            return Err(Error::InvalidPreset("CIDv0 requires sha2-256"));
        }
        codec::digest(self.hash, b"")?;
        Ok(())
    }

    fn node_cid(&self, data: &[u8]) -> Result<Cid, Error> {
        Ok(codec::cid_of(self.cid_version, DAG_PB, self.hash, data)?)
    }

    fn raw_cid(&self, data: &[u8]) -> Result<Cid, Error> {
        Ok(codec::cid_of(Version::V1, RAW, self.hash, data)?)
    }
}

/// UnixFS `Data.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    /// Raw data (legacy leaves).
    Raw,
    /// A directory.
    Directory,
    /// A file (or a part of one).
    File,
    /// Metadata.
    Metadata,
    /// A symbolic link.
    Symlink,
    /// A HAMT-sharded directory.
    HamtShard,
}

impl DataType {
    fn code(self) -> u64 {
        match self {
            DataType::Raw => 0,
            DataType::Directory => 1,
            DataType::File => 2,
            DataType::Metadata => 3,
            DataType::Symlink => 4,
            DataType::HamtShard => 5,
        }
    }

    fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => DataType::Raw,
            1 => DataType::Directory,
            2 => DataType::File,
            3 => DataType::Metadata,
            4 => DataType::Symlink,
            5 => DataType::HamtShard,
            _ => return None,
        })
    }
}

/// The UnixFS protobuf `Data` message (the fields this crate uses; others are skipped on
/// decode and never written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixFsData {
    /// Node type.
    pub kind: DataType,
    /// Inline file data.
    pub data: Option<Vec<u8>>,
    /// Total file size under this node.
    pub filesize: Option<u64>,
    /// File size under each child link, in order.
    pub blocksizes: Vec<u64>,
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    let mut buf = unsigned_varint::encode::u64_buffer();
    out.extend_from_slice(unsigned_varint::encode::u64(v, &mut buf));
}

impl UnixFsData {
    /// Protobuf encoding (fields in number order, `blocksizes` unpacked, as Go writes it).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            16 + self.data.as_ref().map_or(0, Vec::len) + 5 * self.blocksizes.len(),
        );
        out.push(0x08);
        put_varint(&mut out, self.kind.code());
        if let Some(data) = &self.data {
            out.push(0x12);
            put_varint(&mut out, data.len() as u64);
            out.extend_from_slice(data);
        }
        if let Some(size) = self.filesize {
            out.push(0x18);
            put_varint(&mut out, size);
        }
        for bs in &self.blocksizes {
            out.push(0x20);
            put_varint(&mut out, *bs);
        }
        out
    }

    /// Decodes the protobuf; unknown fields are skipped, `Type` is required.
    pub fn decode(mut bytes: &[u8]) -> Result<Self, String> {
        fn varint(b: &mut &[u8]) -> Result<u64, String> {
            let (v, rest) = unsigned_varint::decode::u64(b).map_err(|e| e.to_string())?;
            *b = rest;
            Ok(v)
        }
        fn take<'a>(b: &mut &'a [u8], n: u64) -> Result<&'a [u8], String> {
            let n = usize::try_from(n).map_err(|_| "length overflow".to_string())?;
            if n > b.len() {
                return Err("field runs past the end".into());
            }
            let (head, rest) = b.split_at(n);
            *b = rest;
            Ok(head)
        }
        let (mut kind, mut data, mut filesize, mut blocksizes) = (None, None, None, Vec::new());
        while !bytes.is_empty() {
            let tag = varint(&mut bytes)?;
            match (tag >> 3, tag & 7) {
                (1, 0) => {
                    let code = varint(&mut bytes)?;
                    kind = Some(DataType::from_code(code).ok_or(format!("unknown type {code}"))?);
                }
                (2, 2) => {
                    let n = varint(&mut bytes)?;
                    data = Some(take(&mut bytes, n)?.to_vec());
                }
                (3, 0) => filesize = Some(varint(&mut bytes)?),
                (4, 0) => blocksizes.push(varint(&mut bytes)?),
                (4, 2) => {
                    let n = varint(&mut bytes)?;
                    let mut packed = take(&mut bytes, n)?;
                    while !packed.is_empty() {
                        blocksizes.push(varint(&mut packed)?);
                    }
                }
                (_, 0) => {
                    varint(&mut bytes)?;
                }
                (_, 1) => {
                    take(&mut bytes, 8)?;
                }
                (_, 2) => {
                    let n = varint(&mut bytes)?;
                    take(&mut bytes, n)?;
                }
                (_, 5) => {
                    take(&mut bytes, 4)?;
                }
                (field, wire) => {
                    return Err(format!("field {field} has unsupported wire type {wire}"));
                }
            }
        }
        Ok(Self {
            kind: kind.ok_or("missing Type")?,
            data,
            filesize,
            blocksizes,
        })
    }
}

/// A link to an imported subtree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Child {
    cid: Cid,
    /// Cumulative size of the subtree's blocks (dag-pb `Tsize`).
    tsize: u64,
    /// File bytes under it.
    file_size: u64,
}

/// The result of an import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Imported {
    /// The root CID.
    pub root: Cid,
    /// File bytes imported (for a directory: of all its files).
    pub size: u64,
    /// Cumulative size of the DAG's blocks, as the root's `Tsize` would say (blocks
    /// repeated in the DAG are counted each time).
    pub dag_size: u64,
}

/// Imports one file, streaming: write its bytes, then [`Importer::finish`].
pub struct Importer<S> {
    store: S,
    preset: Preset,
    chunk: Vec<u8>,
    /// `levels[h]`: finished children of the not-yet-built node at height `h + 1`.
    levels: Vec<Vec<Child>>,
    size: u64,
    pending: Vec<(Cid, Bytes)>,
    pending_bytes: usize,
}

impl<S> std::fmt::Debug for Importer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer")
            .field("preset", &self.preset)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<S: Blockstore> Importer<S> {
    /// An importer writing blocks into `store`.
    pub fn new(store: S, preset: Preset) -> Result<Self, Error> {
        preset.validate()?;
        Ok(Self {
            store,
            preset,
            chunk: Vec::with_capacity(preset.chunk_size),
            levels: Vec::new(),
            size: 0,
            pending: Vec::new(),
            pending_bytes: 0,
        })
    }

    /// Imports a byte slice.
    pub fn import_bytes(store: S, preset: Preset, data: &[u8]) -> Result<Imported, Error> {
        let mut importer = Self::new(store, preset)?;
        importer.push(data)?;
        importer.finish()
    }

    /// Imports everything `input` yields.
    pub fn import_reader<R: Read>(
        store: S,
        preset: Preset,
        mut input: R,
    ) -> Result<Imported, Error> {
        let mut importer = Self::new(store, preset)?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            importer.push(&buf[..n])?;
        }
        importer.finish()
    }

    /// Adds file bytes.
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let room = self.preset.chunk_size - self.chunk.len();
            let n = room.min(data.len());
            self.chunk.extend_from_slice(&data[..n]);
            data = &data[n..];
            self.size += n as u64;
            if self.chunk.len() == self.preset.chunk_size {
                self.emit_leaf()?;
            }
        }
        Ok(())
    }

    /// File bytes pushed so far.
    pub fn bytes_pushed(&self) -> u64 {
        self.size
    }

    fn store_block(&mut self, cid: Cid, data: Vec<u8>) -> Result<(), Error> {
        self.pending_bytes += data.len();
        self.pending.push((cid, Bytes::from(data)));
        if self.pending_bytes >= 8 << 20 || self.pending.len() >= 256 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if !self.pending.is_empty() {
            self.store.put_many(&self.pending)?;
            self.pending.clear();
            self.pending_bytes = 0;
        }
        Ok(())
    }

    fn leaf(&mut self, chunk: Vec<u8>) -> Result<Child, Error> {
        let file_size = chunk.len() as u64;
        let (cid, block) = if self.preset.raw_leaves {
            (self.preset.raw_cid(&chunk)?, chunk)
        } else {
            // boxo leaves `Data` unset for the empty file, set otherwise.
            let data = (!chunk.is_empty()).then_some(chunk);
            let unixfs = UnixFsData {
                kind: DataType::File,
                data,
                filesize: Some(file_size),
                blocksizes: vec![],
            };
            let block = codec::encode_dag_pb(PbNode {
                links: vec![],
                data: Some(Bytes::from(unixfs.encode())),
            });
            (self.preset.node_cid(&block)?, block)
        };
        let tsize = block.len() as u64;
        self.store_block(cid, block)?;
        Ok(Child {
            cid,
            tsize,
            file_size,
        })
    }

    fn emit_leaf(&mut self) -> Result<(), Error> {
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(self.preset.chunk_size));
        let child = self.leaf(chunk)?;
        self.add_child(0, child)
    }

    /// Adds a child at `level`, building the node above as soon as it is full.
    fn add_child(&mut self, mut level: usize, mut child: Child) -> Result<(), Error> {
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(child);
            if self.levels[level].len() < self.preset.max_links {
                return Ok(());
            }
            let children = std::mem::take(&mut self.levels[level]);
            child = self.file_node(&children)?;
            level += 1;
        }
    }

    fn file_node(&mut self, children: &[Child]) -> Result<Child, Error> {
        let file_size = children.iter().map(|c| c.file_size).sum();
        let unixfs = UnixFsData {
            kind: DataType::File,
            data: None,
            filesize: Some(file_size),
            blocksizes: children.iter().map(|c| c.file_size).collect(),
        };
        let links = children
            .iter()
            .map(|c| PbLink {
                cid: c.cid,
                name: Some(String::new()),
                size: Some(c.tsize),
            })
            .collect();
        let block = codec::encode_dag_pb(PbNode {
            links,
            data: Some(Bytes::from(unixfs.encode())),
        });
        let cid = self.preset.node_cid(&block)?;
        let tsize = block.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>();
        self.store_block(cid, block)?;
        Ok(Child {
            cid,
            tsize,
            file_size,
        })
    }

    /// Builds the remaining nodes, stores every block and returns the root.
    pub fn finish(mut self) -> Result<Imported, Error> {
        let root = self.finish_inner()?;
        self.flush()?;
        Ok(Imported {
            root: root.cid,
            size: root.file_size,
            dag_size: root.tsize,
        })
    }

    fn finish_inner(&mut self) -> Result<Child, Error> {
        if !self.chunk.is_empty() || self.levels.is_empty() {
            // The last partial chunk, or the single empty leaf of an empty file.
            let chunk = std::mem::take(&mut self.chunk);
            let child = self.leaf(chunk)?;
            self.add_child(0, child)?;
        }
        let levels = std::mem::take(&mut self.levels);
        let top = levels.iter().rposition(|l| !l.is_empty()).unwrap_or(0);
        let lower_empty = levels[..top].iter().all(Vec::is_empty);
        if lower_empty && levels.get(top).is_some_and(|l| l.len() == 1) {
            // A full tree (or a single leaf): its top node is the root.
            return Ok(levels[top][0]);
        }
        // Close the partial nodes bottom-up; above the first partial node every level gets
        // a node (possibly with a single child), as boxo's fillNodeRec does.
        let mut carry: Option<Child> = None;
        for mut children in levels.into_iter().take(top + 1) {
            children.extend(carry.take());
            if !children.is_empty() {
                carry = Some(self.file_node(&children)?);
            }
        }
        carry.ok_or(Error::InvalidPreset("nothing to import"))
    }
}

impl<S: Blockstore> Write for Importer<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Imports a file or a plain directory tree at `path` (entries sorted by name; every entry
/// included, hidden ones too, as `ipfs add -r --hidden`; symlinks are unsupported).
pub fn import_path(store: &dyn Blockstore, preset: Preset, path: &Path) -> Result<Imported, Error> {
    preset.validate()?;
    import_entry(store, preset, path, 0)
}

fn import_entry(
    store: &dyn Blockstore,
    preset: Preset,
    path: &Path,
    depth: usize,
) -> Result<Imported, Error> {
    if depth > MAX_DIR_DEPTH {
        return Err(Error::TooDeep);
    }
    let meta = fs::symlink_metadata(path)?;
    if meta.is_file() {
        return Importer::import_reader(store, preset, fs::File::open(path)?);
    }
    if !meta.is_dir() {
        return Err(Error::Unsupported(format!(
            "{} is neither a file nor a directory",
            path.display()
        )));
    }
    let mut entries = Vec::new();
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| Error::Unsupported(format!("non-UTF-8 file name {n:?}")))?;
        entries.push((name, entry.path()));
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut links = Vec::with_capacity(entries.len());
    let (mut size, mut dag_size) = (0u64, 0u64);
    for (name, child_path) in entries {
        let child = import_entry(store, preset, &child_path, depth + 1)?;
        size += child.size;
        dag_size += child.dag_size;
        links.push(PbLink {
            cid: child.root,
            name: Some(name),
            size: Some(child.dag_size),
        });
    }
    let unixfs = UnixFsData {
        kind: DataType::Directory,
        data: None,
        filesize: None,
        blocksizes: vec![],
    };
    let block = codec::encode_dag_pb(PbNode {
        links,
        data: Some(Bytes::from(unixfs.encode())),
    });
    let cid = preset.node_cid(&block)?;
    dag_size += block.len() as u64;
    store.put(&cid, &block)?;
    Ok(Imported {
        root: cid,
        size,
        dag_size,
    })
}

/// A verified block, decoded when it is dag-pb.
enum Loaded {
    Raw(Vec<u8>),
    Pb(PbNode, UnixFsData),
}

fn load(store: &dyn Blockstore, cid: &Cid) -> Result<Loaded, Error> {
    let data = store.get(cid)?.ok_or(Error::NotFound(*cid))?;
    codec::verify(cid, &data)?;
    match cid.codec() {
        RAW => Ok(Loaded::Raw(data)),
        DAG_PB => {
            let node = codec::decode_dag_pb(&data)?;
            let bytes = node.data.as_ref().ok_or_else(|| Error::InvalidNode {
                cid: *cid,
                why: "no Data".into(),
            })?;
            let unixfs =
                UnixFsData::decode(bytes).map_err(|why| Error::InvalidNode { cid: *cid, why })?;
            Ok(Loaded::Pb(node, unixfs))
        }
        other => Err(Error::Unsupported(format!(
            "codec {other:#x} in a UnixFS DAG"
        ))),
    }
}

/// Most CIDs waiting on the export stack (bounds memory on hostile DAGs).
const MAX_EXPORT_STACK: usize = 1 << 22;

/// Writes the content of the file at `root` to `out`, streaming; returns its size. Every
/// block's hash is checked.
pub fn export_file<W: Write>(
    store: &dyn Blockstore,
    root: &Cid,
    out: &mut W,
) -> Result<u64, Error> {
    let mut stack = vec![*root];
    let mut written = 0u64;
    while let Some(cid) = stack.pop() {
        match load(store, &cid)? {
            Loaded::Raw(data) => {
                out.write_all(&data)?;
                written += data.len() as u64;
            }
            Loaded::Pb(node, unixfs) => {
                if !matches!(unixfs.kind, DataType::File | DataType::Raw) {
                    return Err(Error::InvalidNode {
                        cid,
                        why: format!("{:?} node inside a file", unixfs.kind),
                    });
                }
                if let Some(data) = &unixfs.data {
                    out.write_all(data)?;
                    written += data.len() as u64;
                }
                if stack.len() + node.links.len() > MAX_EXPORT_STACK {
                    return Err(Error::TooDeep);
                }
                stack.extend(node.links.iter().rev().map(|l| l.cid));
            }
        }
    }
    out.flush()?;
    Ok(written)
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(Error::UnsafeName(name.to_owned()));
    }
    Ok(())
}

/// Writes the file or directory tree at `root` to `dest` (created; an existing file is
/// overwritten). Returns the number of file bytes written.
pub fn export_path(store: &dyn Blockstore, root: &Cid, dest: &Path) -> Result<u64, Error> {
    export_entry(store, root, dest, 0)
}

fn export_entry(
    store: &dyn Blockstore,
    cid: &Cid,
    dest: &Path,
    depth: usize,
) -> Result<u64, Error> {
    if depth > MAX_DIR_DEPTH {
        return Err(Error::TooDeep);
    }
    if let Loaded::Pb(node, unixfs) = load(store, cid)? {
        match unixfs.kind {
            DataType::File | DataType::Raw => {}
            DataType::Directory => {
                fs::create_dir_all(dest)?;
                let mut total = 0;
                for link in &node.links {
                    let name = link.name.as_deref().unwrap_or("");
                    check_name(name)?;
                    total += export_entry(store, &link.cid, &dest.join(name), depth + 1)?;
                }
                return Ok(total);
            }
            other => return Err(Error::Unsupported(format!("UnixFS {other:?} node"))),
        }
    }
    let mut file = io::BufWriter::with_capacity(1 << 20, fs::File::create(dest)?);
    export_file(store, cid, &mut file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockstore::MemoryBlockstore;

    #[test]
    fn unixfs_data_round_trip() {
        let d = UnixFsData {
            kind: DataType::File,
            data: Some(b"abc".to_vec()),
            filesize: Some(3),
            blocksizes: vec![1, 300],
        };
        assert_eq!(UnixFsData::decode(&d.encode()).unwrap(), d);
        // packed blocksizes and unknown fields are accepted
        let bytes = [0x08, 0x02, 0x22, 0x02, 0x05, 0x06, 0x38, 0x7f, 0x18, 0x0b];
        let back = UnixFsData::decode(&bytes).unwrap();
        assert_eq!(back.blocksizes, vec![5, 6]);
        assert_eq!(back.filesize, Some(11));
        assert!(UnixFsData::decode(&[0x12, 0x05, 0x01]).is_err());
        assert!(
            UnixFsData::decode(&[0x18, 0x01]).is_err(),
            "Type is required"
        );
        assert!(UnixFsData::decode(&[0x08, 0x09]).is_err());
    }

    #[test]
    fn balanced_layout_shapes() {
        // Small links per node make the balanced shapes visible: m = 3, 1-byte chunks.
        let preset = Preset::GO_FIL_MARKETS.with_chunk_size(1).with_max_links(3);
        for n in 0..=30usize {
            let store = MemoryBlockstore::new();
            let data: Vec<u8> = (0..n as u8).collect();
            let imported = Importer::import_bytes(&store, preset, &data).unwrap();
            let mut out = Vec::new();
            assert_eq!(
                export_file(&store, &imported.root, &mut out).unwrap(),
                n as u64
            );
            assert_eq!(out, data);
            assert_eq!(imported.size, n as u64);
            // depth = ceil(log3(n)) for n >= 2: count levels along the leftmost path.
            let mut depth = 0;
            let mut cid = imported.root;
            while cid.codec() == DAG_PB {
                let Loaded::Pb(node, _) = load(&store, &cid).unwrap() else {
                    unreachable!()
                };
                assert!(node.links.len() <= 3);
                cid = node.links[0].cid;
                depth += 1;
            }
            let mut expected = 0;
            while n > 1 && 3usize.pow(expected) < n {
                expected += 1;
            }
            let expected = expected as usize;
            assert_eq!(depth, expected, "n = {n}");
        }
    }

    #[test]
    fn presets_are_validated() {
        let store = MemoryBlockstore::new();
        for bad in [
            Preset::KUBO_V0.with_chunk_size(0),
            Preset::KUBO_V0.with_chunk_size(MAX_CHUNK_SIZE + 1),
            Preset::KUBO_V0.with_max_links(1),
            Preset::KUBO_V0.with_hash(BLAKE2B_256),
            Preset::KUBO_V1_RAW_LEAVES.with_hash(0x7f),
        ] {
            assert!(Importer::new(&store, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unsafe_names_are_refused() {
        for name in ["", ".", "..", "a/b", "..\\x", "nul\0"] {
            assert!(check_name(name).is_err(), "{name:?}");
        }
        check_name("file.txt").unwrap();
    }
}
