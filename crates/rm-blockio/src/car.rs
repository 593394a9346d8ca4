//! CAR v1 (<https://ipld.io/specs/transport/car/carv1/>): a streaming [`Reader`] that
//! verifies every block, and a streaming [`Writer`].
//!
//! Layout: `varint(len) || header` where the header is DAG-CBOR `{"roots": [CID...],
//! "version": 1}`, then sections `varint(len) || CID bytes || block bytes`.
//!
//! The reader is defensive: lengths are checked against caps ([`Limits`]) before anything
//! is allocated, buffers grow only as bytes actually arrive, varints must be minimal and at
//! most 9 bytes, and every block is hashed and compared with its CID. Input ending exactly
//! between sections is the end of the CAR; anywhere else it is [`Error::Truncated`].
//! I/O is synchronous (`std::io`); async callers wrap it in `spawn_blocking`.

use crate::blockstore::{self, Blockstore};
use crate::codec::{self, Node};
use crate::reader::{self, BlockReader};
use crate::selector::Selector;
use bytes::Bytes;
use cid::Cid;
use std::collections::HashSet;
use std::io::{self, BufReader, Read, Write};

/// Errors of CAR reading and writing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error other than a premature end of input.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The input ended inside the header or a section.
    #[error("truncated CAR: input ended inside {0}")]
    Truncated(&'static str),
    /// A length varint is malformed (overlong, non-minimal, or more than 9 bytes).
    #[error("malformed varint in {0}")]
    BadVarint(&'static str),
    /// A length is larger than the configured cap.
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Header or section.
        what: &'static str,
        /// Claimed length.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// A zero-length section.
    #[error("zero-length section")]
    EmptySection,
    /// The header is not a valid CAR v1 header.
    #[error("invalid CAR header: {0}")]
    BadHeader(String),
    /// The header announces a version other than 1.
    #[error("unsupported CAR version {0}")]
    UnsupportedVersion(i128),
    /// A section does not start with a valid CID.
    #[error("invalid CID in section: {0}")]
    BadCid(String),
    /// A block does not hash to its CID, or its hash function is unsupported.
    #[error("block verification failed: {0}")]
    Verify(#[from] codec::Error),
    /// The blockstore failed (import/export).
    #[error(transparent)]
    Blockstore(#[from] blockstore::Error),
    /// Reading the DAG for export failed.
    #[error(transparent)]
    Reader(#[from] reader::Error),
}

/// Caps applied while reading: 1 MiB header (go-car allows 32 MiB; a real header is a
/// few CIDs), 8 MiB section (as go-car).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest header accepted.
    pub max_header_size: u64,
    /// Largest section (CID + block) accepted.
    pub max_section_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_size: 1 << 20,
            max_section_size: 8 << 20,
        }
    }
}

/// Reads a varint; `Ok(None)` on a clean end of input before its first byte.
fn read_varint<R: Read>(r: &mut R, what: &'static str) -> Result<Option<u64>, Error> {
    let mut value: u64 = 0;
    for i in 0..9 {
        let mut b = [0u8; 1];
        loop {
            match r.read(&mut b) {
                Ok(0) if i == 0 => return Ok(None),
                Ok(0) => return Err(Error::Truncated(what)),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        value |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            if b[0] == 0 && i > 0 {
                return Err(Error::BadVarint(what));
            }
            return Ok(Some(value));
        }
    }
    Err(Error::BadVarint(what))
}

/// Reads exactly `len` bytes into a buffer that grows only as data arrives.
fn read_exact_bounded<R: Read>(r: &mut R, len: u64, what: &'static str) -> Result<Vec<u8>, Error> {
    // Allocate up front at most 1 MiB; beyond that the buffer grows with the data.
    let mut buf = Vec::with_capacity(len.min(1 << 20) as usize);
    let got = r.take(len).read_to_end(&mut buf)?;
    if (got as u64) < len {
        return Err(Error::Truncated(what));
    }
    Ok(buf)
}

/// Reads a CID from the stream; returns it and its encoded length.
fn read_cid<R: Read>(r: &mut R) -> Result<(Cid, u64), Error> {
    const WHAT: &str = "section CID";
    let mut consumed = 0u64;
    let mut varint = |r: &mut R| -> Result<u64, Error> {
        let v = read_varint(r, WHAT)?.ok_or(Error::Truncated(WHAT))?;
        consumed += varint_len(v);
        Ok(v)
    };
    let version = varint(r)?;
    let codec = varint(r)?;
    let v0 = (version, codec) == (0x12, 0x20); // CIDv0: a bare sha2-256 multihash
    if !v0 && version != 1 {
        return Err(Error::BadCid(format!("unsupported CID version {version}")));
    }
    let (code, size) = if v0 {
        (0x12, 32)
    } else {
        (varint(r)?, varint(r)?)
    };
    if size > codec::MAX_IDENTITY_LEN as u64 {
        return Err(Error::BadCid(format!("digest of {size} bytes")));
    }
    let digest = read_exact_bounded(r, size, WHAT)?;
    consumed += size;
    let mh = codec::Multihash::wrap(code, &digest).map_err(|e| Error::BadCid(e.to_string()))?;
    let cid = if v0 {
        Cid::new_v0(mh)
    } else {
        Ok(Cid::new_v1(codec, mh))
    }
    .map_err(|e| Error::BadCid(e.to_string()))?;
    Ok((cid, consumed))
}

fn varint_len(v: u64) -> u64 {
    let bits = 64 - u64::from(v.leading_zeros());
    bits.div_ceil(7).max(1)
}

/// The CAR v1 header. Decoded into this typed form rather than a generic tree, so unknown
/// keys are skipped without being built in memory.
#[derive(serde::Deserialize)]
struct Header {
    // Absent in a CAR v2 pragma (`{"version": 2}`), which must report the version.
    #[serde(default)]
    roots: Vec<Cid>,
    version: i64,
}

/// Decodes a CAR v1 header block.
fn parse_header(bytes: &[u8]) -> Result<Vec<Cid>, Error> {
    let header: Header =
        serde_ipld_dagcbor::from_slice(bytes).map_err(|e| Error::BadHeader(e.to_string()))?;
    if header.version != 1 {
        return Err(Error::UnsupportedVersion(header.version.into()));
    }
    if header.roots.is_empty() {
        return Err(Error::BadHeader("no roots".into()));
    }
    Ok(header.roots)
}

/// Streaming CAR v1 reader; iterate it for `(cid, data)` pairs, each verified.
pub struct Reader<R> {
    inner: BufReader<R>,
    roots: Vec<Cid>,
    limits: Limits,
    failed: bool,
    /// Bytes of the CAR consumed so far.
    position: u64,
    zero_length_as_eof: bool,
}

/// One section of a CAR with where its block data lies (see [`Reader::next_section`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The block's CID.
    pub cid: Cid,
    /// The block's bytes (verified against the CID).
    pub data: Vec<u8>,
    /// Offset of the block's bytes from the start of the CAR.
    pub data_offset: u64,
}

impl<R> std::fmt::Debug for Reader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Reader<R> {
    /// Reads and checks the header.
    pub fn new(input: R) -> Result<Self, Error> {
        Self::with_limits(input, Limits::default())
    }

    /// Like [`Reader::new`] with explicit caps.
    pub fn with_limits(input: R, limits: Limits) -> Result<Self, Error> {
        let mut inner = BufReader::with_capacity(64 << 10, input);
        let len =
            read_varint(&mut inner, "header length")?.ok_or(Error::Truncated("header length"))?;
        if len > limits.max_header_size {
            return Err(Error::TooLarge {
                what: "header",
                len,
                max: limits.max_header_size,
            });
        }
        if len == 0 {
            return Err(Error::BadHeader("empty header".into()));
        }
        let header = read_exact_bounded(&mut inner, len, "header")?;
        let roots = parse_header(&header)?;
        Ok(Self {
            inner,
            roots,
            limits,
            failed: false,
            position: varint_len(len) + len,
            zero_length_as_eof: false,
        })
    }

    /// Treats a zero section length as the end of the CAR (go-car's `ZeroLengthSectionAsEOF`):
    /// a CAR read back from an unsealed piece is followed by the piece's zero padding.
    pub fn zero_length_as_eof(mut self, yes: bool) -> Self {
        self.zero_length_as_eof = yes;
        self
    }

    /// Bytes of the CAR consumed so far (header and whole sections).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The header's roots.
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// The next section, or `None` at a clean end of input.
    pub fn next_block(&mut self) -> Result<Option<(Cid, Vec<u8>)>, Error> {
        Ok(self.next_section()?.map(|s| (s.cid, s.data)))
    }

    /// The next section with the offset of its block data, or `None` at a clean end of
    /// input.
    pub fn next_section(&mut self) -> Result<Option<Section>, Error> {
        let Some(len) = read_varint(&mut self.inner, "section length")? else {
            return Ok(None);
        };
        if len == 0 {
            if self.zero_length_as_eof {
                return Ok(None);
            }
            return Err(Error::EmptySection);
        }
        if len > self.limits.max_section_size {
            return Err(Error::TooLarge {
                what: "section",
                len,
                max: self.limits.max_section_size,
            });
        }
        let (cid, cid_len) = read_cid(&mut self.inner)?;
        let Some(remaining) = len.checked_sub(cid_len) else {
            return Err(Error::BadCid("CID longer than its section".into()));
        };
        let data = read_exact_bounded(&mut self.inner, remaining, "section data")?;
        codec::verify(&cid, &data)?;
        let data_offset = self.position + varint_len(len) + cid_len;
        self.position += varint_len(len) + len;
        Ok(Some(Section {
            cid,
            data,
            data_offset,
        }))
    }

    /// Unwraps the underlying reader.
    pub fn into_inner(self) -> BufReader<R> {
        self.inner
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<(Cid, Vec<u8>), Error>;

    /// Yields sections until the end; after an error it yields the error once, then `None`.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_block() {
            Ok(s) => s.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn write_varint<W: Write>(w: &mut W, v: u64) -> io::Result<usize> {
    let mut buf = unsigned_varint::encode::u64_buffer();
    let bytes = unsigned_varint::encode::u64(v, &mut buf);
    w.write_all(bytes)?;
    Ok(bytes.len())
}

/// The bytes [`Writer::new`] writes for `roots`: the header and its length prefix.
pub fn header_size(roots: &[Cid]) -> u64 {
    let header = header_bytes(roots).len() as u64;
    varint_len(header) + header
}

/// The bytes [`Writer::write`] writes for one block: its length prefix, CID and data. With
/// [`header_size`], the size of a CAR is known before it is written.
pub fn section_size(cid: &Cid, data_len: usize) -> u64 {
    let len = (cid.encoded_len() + data_len) as u64;
    varint_len(len) + len
}

/// The header bytes (without the length prefix) for `roots`.
pub fn header_bytes(roots: &[Cid]) -> Vec<u8> {
    let node = Node::Map(vec![
        (
            "roots".into(),
            Node::List(roots.iter().map(|c| Node::link(*c)).collect()),
        ),
        ("version".into(), Node::Integer(1)),
    ]);
    // Only links and a small integer: encoding cannot fail.
    node.to_dag_cbor().unwrap_or_default()
}

/// Streaming CAR v1 writer.
#[derive(Debug)]
pub struct Writer<W: Write> {
    inner: W,
    written: u64,
}

impl<W: Write> Writer<W> {
    /// Writes the header for `roots`.
    pub fn new(mut inner: W, roots: &[Cid]) -> Result<Self, Error> {
        let header = header_bytes(roots);
        let mut written = write_varint(&mut inner, header.len() as u64)? as u64;
        inner.write_all(&header)?;
        written += header.len() as u64;
        Ok(Self { inner, written })
    }

    /// Appends one block (not hashed: write only blocks you trust).
    pub fn write(&mut self, cid: &Cid, data: &[u8]) -> Result<(), Error> {
        let cid_bytes = cid.to_bytes();
        let len = (cid_bytes.len() + data.len()) as u64;
        self.written += write_varint(&mut self.inner, len)? as u64;
        self.inner.write_all(&cid_bytes)?;
        self.inner.write_all(data)?;
        self.written += len;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> Result<W, Error> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// Writes the blocks of `(root, selector)` from `store` as a CAR with `root` as its only
/// root, in traversal order, each block once and checked against its CID (a stored block
/// that does not match is an error, never written). Returns the bytes written.
pub fn export<W: Write>(
    store: &dyn Blockstore,
    root: Cid,
    selector: &Selector,
    out: W,
) -> Result<u64, Error> {
    let mut writer = Writer::new(out, &[root])?;
    let mut seen = HashSet::new();
    // The reader checks every block against the link it was read for (its CID).
    let mut reader = BlockReader::new(store, root, selector)?;
    while let Some(cid) = reader.next_cid().copied() {
        let Some(block) = reader.next_block()? else {
            break;
        };
        if seen.insert(cid) {
            writer.write(&cid, &block.data)?;
        }
    }
    let n = writer.bytes_written();
    writer.finish()?;
    Ok(n)
}

/// Reads a whole CAR into `store` (each block verified), in batches; returns its roots.
pub fn import<R: Read>(input: R, store: &dyn Blockstore) -> Result<Vec<Cid>, Error> {
    let mut reader = Reader::new(input)?;
    let mut batch = Vec::new();
    let mut batch_bytes = 0usize;
    while let Some((cid, data)) = reader.next_block()? {
        batch_bytes += data.len();
        batch.push((cid, Bytes::from(data)));
        if batch_bytes >= 8 << 20 || batch.len() >= 1024 {
            store.put_many(&batch)?;
            batch.clear();
            batch_bytes = 0;
        }
    }
    store.put_many(&batch)?;
    Ok(reader.roots)
}

/// What [`inspect`] found in a CAR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The header's roots.
    pub roots: Vec<Cid>,
    /// `(cid, block size)` of every section, in order.
    pub sections: Vec<(Cid, usize)>,
}

/// Reads the whole of `input` until a clean end, checking every block. Handy for tests and
/// `rm` diagnostics.
pub fn inspect<R: Read>(input: R) -> Result<Summary, Error> {
    let mut reader = Reader::new(input)?;
    let mut sections = Vec::new();
    while let Some((cid, data)) = reader.next_block()? {
        sections.push((cid, data.len()));
    }
    Ok(Summary {
        roots: reader.roots,
        sections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{DAG_CBOR, RAW, SHA2_256, cid_of};

    fn sample() -> (Vec<u8>, Vec<(Cid, Vec<u8>)>) {
        let blocks: Vec<(Cid, Vec<u8>)> = (0..5u8)
            .map(|i| {
                let d = vec![i; 10 + usize::from(i) * 100];
                (cid_of(cid::Version::V1, RAW, SHA2_256, &d).unwrap(), d)
            })
            .collect();
        let mut w = Writer::new(Vec::new(), &[blocks[0].0]).unwrap();
        for (c, d) in &blocks {
            w.write(c, d).unwrap();
        }
        let n = w.bytes_written();
        let out = w.finish().unwrap();
        assert_eq!(n, out.len() as u64);
        (out, blocks)
    }

    /// The size of a CAR is known before it is written: header plus sections, across
    /// the length prefixes' one-, two- and three-byte forms.
    #[test]
    fn sizes_add_up_to_what_the_writer_writes() {
        let (bytes, blocks) = sample();
        let sections: u64 = blocks.iter().map(|(c, d)| section_size(c, d.len())).sum();
        assert_eq!(header_size(&[blocks[0].0]) + sections, bytes.len() as u64);
        for len in [0usize, 90, 91, 16_345, 16_346, 2_000_000] {
            let data = vec![7u8; len];
            let cid = cid_of(cid::Version::V1, RAW, SHA2_256, &data).unwrap();
            let mut w = Writer::new(Vec::new(), &[cid]).unwrap();
            let header = w.bytes_written();
            w.write(&cid, &data).unwrap();
            assert_eq!(header, header_size(&[cid]));
            assert_eq!(w.bytes_written() - header, section_size(&cid, len), "{len}");
        }
    }

    #[test]
    fn sections_know_where_their_data_is() {
        let (bytes, blocks) = sample();
        let mut reader = Reader::new(&bytes[..]).unwrap();
        let mut n = 0;
        while let Some(section) = reader.next_section().unwrap() {
            let at = section.data_offset as usize;
            assert_eq!(&bytes[at..at + section.data.len()], &section.data[..]);
            assert_eq!(section.cid, blocks[n].0);
            n += 1;
        }
        assert_eq!(n, blocks.len());
        assert_eq!(reader.position(), bytes.len() as u64);
    }

    #[test]
    fn zero_padding_ends_the_car_only_when_asked() {
        let (mut bytes, blocks) = sample();
        let len = bytes.len();
        bytes.extend_from_slice(&[0u8; 300]);
        let strict: Result<Vec<_>, _> = Reader::new(&bytes[..]).unwrap().collect();
        assert!(matches!(strict, Err(Error::EmptySection)));
        let mut padded = Reader::new(&bytes[..]).unwrap().zero_length_as_eof(true);
        let mut read = Vec::new();
        while let Some(b) = padded.next_block().unwrap() {
            read.push(b);
        }
        assert_eq!(read, blocks);
        assert_eq!(padded.position(), len as u64);
    }

    #[test]
    fn write_then_read() {
        let (bytes, blocks) = sample();
        let reader = Reader::new(&bytes[..]).unwrap();
        assert_eq!(reader.roots(), &[blocks[0].0]);
        let read: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(read, blocks);
        let summary = inspect(&bytes[..]).unwrap();
        assert_eq!(summary.roots, vec![blocks[0].0]);
        assert_eq!(summary.sections.len(), 5);
        assert_eq!(summary.sections[4], (blocks[4].0, 410));
        // The header is canonical DAG-CBOR {roots, version}.
        let h = header_bytes(&[blocks[0].0]);
        let mut canon = Node::from_dag_cbor(&h).unwrap();
        canon.canonicalize();
        assert_eq!(canon.to_dag_cbor().unwrap(), h);
    }

    #[test]
    fn malformed_input_is_rejected_with_typed_errors() {
        let (bytes, _) = sample();
        // Truncated anywhere inside: typed error, never a panic.
        for cut in 1..bytes.len() {
            let r = Reader::new(&bytes[..cut]).and_then(|r| r.collect::<Result<Vec<_>, _>>());
            if let Err(e) = r {
                assert!(matches!(e, Error::Truncated(_)), "cut {cut}: {e}");
            }
        }
        assert!(matches!(Reader::new(&[][..]), Err(Error::Truncated(_))));
        // Header length beyond the cap: rejected before reading it.
        let huge = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            Reader::new(&huge[..]),
            Err(Error::TooLarge { .. })
        ));
        // Non-minimal and overlong varints.
        assert!(matches!(
            Reader::new(&[0x81, 0x00][..]),
            Err(Error::BadVarint(_))
        ));
        assert!(matches!(
            Reader::new(&[0xff; 12][..]),
            Err(Error::BadVarint(_))
        ));
        // Version 2 and bad headers.
        let v2 = Node::Map(vec![("version".into(), Node::Integer(2))])
            .to_dag_cbor()
            .unwrap();
        let mut car = vec![v2.len() as u8];
        car.extend_from_slice(&v2);
        assert!(matches!(
            Reader::new(&car[..]),
            Err(Error::UnsupportedVersion(2))
        ));
        let no_roots = Node::Map(vec![
            ("roots".into(), Node::List(vec![])),
            ("version".into(), Node::Integer(1)),
        ])
        .to_dag_cbor()
        .unwrap();
        let mut car = vec![no_roots.len() as u8];
        car.extend_from_slice(&no_roots);
        assert!(matches!(Reader::new(&car[..]), Err(Error::BadHeader(_))));
        // Unknown header keys are skipped (and never built into a tree).
        let root: Cid = "bafkqaaa".parse().unwrap();
        let extra = Node::Map(vec![
            ("roots".into(), Node::List(vec![Node::link(root)])),
            ("version".into(), Node::Integer(1)),
            ("x".into(), Node::List(vec![Node::Null; 100])),
        ])
        .to_dag_cbor()
        .unwrap();
        let mut car = vec![0x80 | (extra.len() & 0x7f) as u8, (extra.len() >> 7) as u8];
        car.extend_from_slice(&extra);
        assert_eq!(Reader::new(&car[..]).unwrap().roots(), &[root]);
        // A section whose data was tampered with.
        let (mut bytes, blocks) = sample();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let r: Result<Vec<_>, _> = Reader::new(&bytes[..]).unwrap().collect();
        assert!(matches!(r, Err(Error::Verify(codec::Error::HashMismatch(c))) if c == blocks[4].0));
        // A section claiming more than the cap.
        let mut car = Writer::new(Vec::new(), &[blocks[0].0])
            .unwrap()
            .finish()
            .unwrap();
        car.extend_from_slice(&[0x80, 0x80, 0x80, 0x10]);
        let r: Result<Vec<_>, _> = Reader::new(&car[..]).unwrap().collect();
        assert!(matches!(
            r,
            Err(Error::TooLarge {
                what: "section",
                ..
            })
        ));
        car.truncate(car.len() - 4);
        car.push(0);
        let r: Result<Vec<_>, _> = Reader::new(&car[..]).unwrap().collect();
        assert!(matches!(r, Err(Error::EmptySection)));
        // A section whose CID is garbage.
        let mut car = Writer::new(Vec::new(), &[blocks[0].0])
            .unwrap()
            .finish()
            .unwrap();
        car.extend_from_slice(&[3, 0x05, 0x71, 0x12]);
        let r: Result<Vec<_>, _> = Reader::new(&car[..]).unwrap().collect();
        assert!(matches!(r, Err(Error::BadCid(_))), "{r:?}");
        // Unsupported hash functions fail verification rather than passing unchecked.
        let odd = Cid::new_v1(DAG_CBOR, codec::Multihash::wrap(0x7f, &[0u8; 32]).unwrap());
        let mut w = Writer::new(Vec::new(), &[odd]).unwrap();
        w.write(&odd, &[0xf6]).unwrap();
        let car = w.finish().unwrap();
        let r: Result<Vec<_>, _> = Reader::new(&car[..]).unwrap().collect();
        assert!(matches!(
            r,
            Err(Error::Verify(codec::Error::UnsupportedHash(0x7f)))
        ));
    }
}
