//! CAR v1 framing for HTTP bodies: the provider's section encoder and the client's
//! push-style decoder, a sans-IO state machine fed whatever chunks the body brings.
//!
//! The decoder checks every length against its caps before it buffers anything, never
//! holds more than one section (plus a CID's worth of look-ahead), and hands each block's
//! bytes out in a buffer of exactly their size: the verifier hashes them there and the
//! store writes them from there, without further copies. It does not hash: verifying is
//! the walk's job (the client's `SelectorVerifier`), so every byte is hashed once.

use bytes::{Buf, Bytes, BytesMut};
use cid::Cid;

/// Errors of the CAR decoder.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CarError {
    /// The body ended inside the header or a section.
    #[error("truncated CAR: the body ended inside {0}")]
    Truncated(&'static str),
    /// A length varint is malformed (overlong, non-minimal, more than 9 bytes).
    #[error("malformed varint in {0}")]
    BadVarint(&'static str),
    /// A length is over its cap.
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Header or section.
        what: &'static str,
        /// Claimed length.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// The header is not a CAR v1 header.
    #[error("invalid CAR header: {0}")]
    BadHeader(String),
    /// A section does not start with a valid CID.
    #[error("invalid CID in a section: {0}")]
    BadCid(String),
}

/// Caps of the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest header (default 64 KiB: a header is a few CIDs).
    pub max_header: u64,
    /// Largest section, CID included (default 2 MiB + 128 bytes: the largest block a
    /// trustless client accepts, and its CID).
    pub max_section: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header: 64 << 10,
            max_section: (2 << 20) + 128,
        }
    }
}

/// What the decoder found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The header's roots.
    Header(Vec<Cid>),
    /// One section: a block as the body claims it (not yet verified).
    Section {
        /// The CID the section names.
        cid: Cid,
        /// The block's bytes.
        data: Vec<u8>,
    },
}

enum State {
    Header,
    Head,
    Data { cid: Cid, buf: Vec<u8>, want: usize },
}

/// A push-style CAR v1 decoder (see the module docs).
pub struct Decoder {
    limits: Limits,
    state: State,
    /// Bytes not yet consumed (at most a header or a section head, plus one chunk).
    pending: BytesMut,
    /// Chunks waiting to be consumed, in order.
    queue: std::collections::VecDeque<Bytes>,
    consumed: u64,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("consumed", &self.consumed)
            .finish_non_exhaustive()
    }
}

/// Reads a minimal varint from the front of `buf`: `Ok(None)` when more bytes are needed.
fn varint(buf: &[u8], what: &'static str) -> Result<Option<(u64, usize)>, CarError> {
    let mut value = 0u64;
    for i in 0..9 {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err(CarError::BadVarint(what));
            }
            return Ok(Some((value, i + 1)));
        }
    }
    Err(CarError::BadVarint(what))
}

/// Parses a CID at the front of `buf`: `Ok(None)` when more bytes are needed.
fn cid_prefix(buf: &[u8]) -> Result<Option<(Cid, usize)>, CarError> {
    const WHAT: &str = "section CID";
    let mut at = 0;
    let mut next = |buf: &[u8]| -> Result<Option<u64>, CarError> {
        Ok(varint(&buf[at..], WHAT)?.map(|(v, n)| {
            at += n;
            v
        }))
    };
    let Some(version) = next(buf)? else {
        return Ok(None);
    };
    let Some(codec) = next(buf)? else {
        return Ok(None);
    };
    let v0 = (version, codec) == (0x12, 0x20);
    if !v0 && version != 1 {
        return Err(CarError::BadCid(format!(
            "unsupported CID version {version}"
        )));
    }
    let (code, size) = if v0 {
        (0x12, 32)
    } else {
        let Some(code) = next(buf)? else {
            return Ok(None);
        };
        let Some(size) = next(buf)? else {
            return Ok(None);
        };
        (code, size)
    };
    if size > rm_blockio::codec::MAX_IDENTITY_LEN as u64 {
        return Err(CarError::BadCid(format!("digest of {size} bytes")));
    }
    let size = size as usize;
    if buf.len() < at + size {
        return Ok(None);
    }
    let mh = rm_blockio::codec::Multihash::wrap(code, &buf[at..at + size])
        .map_err(|e| CarError::BadCid(e.to_string()))?;
    let cid = if v0 {
        Cid::new_v0(mh)
    } else {
        Ok(Cid::new_v1(codec, mh))
    }
    .map_err(|e| CarError::BadCid(e.to_string()))?;
    Ok(Some((cid, at + size)))
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Decoder {
    /// A decoder with `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Header,
            pending: BytesMut::new(),
            queue: std::collections::VecDeque::new(),
            consumed: 0,
        }
    }

    /// Adds the next chunk of the body.
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.queue.push_back(chunk);
        }
    }

    /// Bytes of the body decoded into whole events so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Moves queued bytes into `pending` until it holds `n` bytes or the queue is empty.
    fn fill(&mut self, n: usize) {
        while self.pending.len() < n {
            let Some(mut chunk) = self.queue.pop_front() else {
                return;
            };
            let take = (n - self.pending.len()).min(chunk.len());
            self.pending.extend_from_slice(&chunk[..take]);
            chunk.advance(take);
            if !chunk.is_empty() {
                self.queue.push_front(chunk);
            }
        }
    }

    /// The next event, or `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, CarError> {
        loop {
            match &mut self.state {
                State::Header => {
                    self.fill(10);
                    let Some((len, n)) = varint(&self.pending, "header length")? else {
                        return Ok(None);
                    };
                    if len > self.limits.max_header {
                        return Err(CarError::TooLarge {
                            what: "header",
                            len,
                            max: self.limits.max_header,
                        });
                    }
                    let total = n + len as usize;
                    self.fill(total);
                    if self.pending.len() < total {
                        return Ok(None);
                    }
                    let header = self.pending.split_to(total);
                    let roots = parse_header(&header[n..])?;
                    self.consumed += total as u64;
                    self.state = State::Head;
                    return Ok(Some(Event::Header(roots)));
                }
                State::Head => {
                    // varint(len) + CID: at most 9 + 4 * 9 + 64 bytes.
                    self.fill(9 + 36 + 64);
                    let Some((len, n)) = varint(&self.pending, "section length")? else {
                        return Ok(None);
                    };
                    if len == 0 {
                        return Err(CarError::BadCid("zero-length section".into()));
                    }
                    if len > self.limits.max_section {
                        return Err(CarError::TooLarge {
                            what: "section",
                            len,
                            max: self.limits.max_section,
                        });
                    }
                    let Some((cid, cid_len)) = cid_prefix(&self.pending[n..])? else {
                        if self.pending.len() >= 9 + 36 + 64 {
                            return Err(CarError::BadCid("unreadable".into()));
                        }
                        return Ok(None);
                    };
                    let Some(want) = (len as usize).checked_sub(cid_len) else {
                        return Err(CarError::BadCid("CID longer than its section".into()));
                    };
                    self.pending.advance(n + cid_len);
                    self.consumed += (n + cid_len) as u64;
                    let mut buf = Vec::with_capacity(want);
                    let from_pending = want.min(self.pending.len());
                    buf.extend_from_slice(&self.pending[..from_pending]);
                    self.pending.advance(from_pending);
                    self.state = State::Data { cid, buf, want };
                }
                State::Data { cid, buf, want } => {
                    while buf.len() < *want {
                        let Some(mut chunk) = self.queue.pop_front() else {
                            return Ok(None);
                        };
                        let take = (*want - buf.len()).min(chunk.len());
                        buf.extend_from_slice(&chunk[..take]);
                        chunk.advance(take);
                        if !chunk.is_empty() {
                            self.queue.push_front(chunk);
                        }
                    }
                    let cid = *cid;
                    let data = std::mem::take(buf);
                    self.consumed += data.len() as u64;
                    self.state = State::Head;
                    return Ok(Some(Event::Section { cid, data }));
                }
            }
        }
    }

    /// Called at the end of the body: an error unless it ended between two sections.
    pub fn finish(&mut self) -> Result<(), CarError> {
        let leftover = !self.pending.is_empty() || self.queue.iter().any(|c| !c.is_empty());
        match self.state {
            State::Header => Err(CarError::Truncated("the header")),
            State::Data { .. } => Err(CarError::Truncated("a section")),
            State::Head if leftover => Err(CarError::Truncated("a section")),
            State::Head => Ok(()),
        }
    }
}

struct Header {
    roots: Vec<Cid>,
    version: i64,
}

fn parse_header(bytes: &[u8]) -> Result<Vec<Cid>, CarError> {
    let header = decode_header(bytes)?;
    if header.version != 1 {
        return Err(CarError::BadHeader(format!(
            "version {} (only 1)",
            header.version
        )));
    }
    Ok(header.roots)
}

fn decode_header(bytes: &[u8]) -> Result<Header, CarError> {
    let node = rm_blockio::codec::Node::from_dag_cbor(bytes)
        .map_err(|e| CarError::BadHeader(e.to_string()))?;
    let version = match node.get("version") {
        Some(rm_blockio::codec::Node::Integer(v)) => i64::try_from(*v).unwrap_or(-1),
        _ => return Err(CarError::BadHeader("no version".into())),
    };
    let roots = match node.get("roots") {
        Some(rm_blockio::codec::Node::List(items)) => items
            .iter()
            .map(|n| match n {
                rm_blockio::codec::Node::Link(c) => Ok(**c),
                _ => Err(CarError::BadHeader("a root is not a link".into())),
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
        _ => return Err(CarError::BadHeader("roots is not a list".into())),
    };
    Ok(Header { roots, version })
}

/// The bytes that start a CAR with `roots`: the length-prefixed header.
pub fn header(roots: &[Cid]) -> Bytes {
    let header = rm_blockio::car::header_bytes(roots);
    let mut buf = unsigned_varint::encode::u64_buffer();
    let len = unsigned_varint::encode::u64(header.len() as u64, &mut buf);
    let mut out = Vec::with_capacity(len.len() + header.len());
    out.extend_from_slice(len);
    out.extend_from_slice(&header);
    Bytes::from(out)
}

/// The bytes that precede a block's data in its section: `varint(len) || CID`.
pub fn section_head(cid: &Cid, data_len: usize) -> Bytes {
    let cid = cid.to_bytes();
    let mut buf = unsigned_varint::encode::u64_buffer();
    let len = unsigned_varint::encode::u64((cid.len() + data_len) as u64, &mut buf);
    let mut out = Vec::with_capacity(len.len() + cid.len());
    out.extend_from_slice(len);
    out.extend_from_slice(&cid);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rm_blockio::codec::{RAW, SHA2_256, cid_of};

    fn car(n: usize) -> (Vec<u8>, Vec<(Cid, Vec<u8>)>) {
        let blocks: Vec<(Cid, Vec<u8>)> = (0..n)
            .map(|i| {
                let d = vec![i as u8; 1 + i * 37];
                (cid_of(cid::Version::V1, RAW, SHA2_256, &d).unwrap(), d)
            })
            .collect();
        let mut out = header(&[blocks[0].0]).to_vec();
        for (c, d) in &blocks {
            out.extend_from_slice(&section_head(c, d.len()));
            out.extend_from_slice(d);
        }
        (out, blocks)
    }

    type Decoded = (Vec<Cid>, Vec<(Cid, Vec<u8>)>);

    fn decode(chunks: &[&[u8]]) -> Result<Decoded, CarError> {
        let mut d = Decoder::default();
        let mut roots = Vec::new();
        let mut got = Vec::new();
        for c in chunks {
            d.push(Bytes::copy_from_slice(c));
            while let Some(e) = d.next_event()? {
                match e {
                    Event::Header(r) => roots = r,
                    Event::Section { cid, data } => got.push((cid, data)),
                }
            }
        }
        d.finish()?;
        Ok((roots, got))
    }

    #[test]
    fn any_chunking_decodes_the_same() {
        let (bytes, blocks) = car(12);
        // Whole, byte by byte, and in odd-sized chunks.
        let (roots, got) = decode(&[&bytes]).unwrap();
        assert_eq!(roots, vec![blocks[0].0]);
        assert_eq!(got, blocks);
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode(&singles).unwrap().1, blocks);
        let odd: Vec<&[u8]> = bytes.chunks(7).collect();
        assert_eq!(decode(&odd).unwrap().1, blocks);
        // The same bytes as rm-blockio's reader sees them.
        let summary = rm_blockio::car::inspect(&bytes[..]).unwrap();
        assert_eq!(summary.sections.len(), blocks.len());
    }

    #[test]
    fn truncation_and_bad_lengths_are_typed_errors() {
        let (bytes, _) = car(3);
        for cut in 1..bytes.len() {
            match decode(&[&bytes[..cut]]) {
                Ok((_, got)) => assert!(got.len() < 3 || cut == bytes.len()),
                Err(e) => assert!(matches!(e, CarError::Truncated(_)), "cut {cut}: {e}"),
            }
        }
        assert_eq!(decode(&[]).unwrap_err(), CarError::Truncated("the header"));
        // A section claiming more than the cap is refused before anything is buffered.
        let mut big = header(&[car(1).1[0].0]).to_vec();
        big.extend_from_slice(&[0x80, 0x80, 0x80, 0x10]);
        assert!(matches!(
            decode(&[&big]),
            Err(CarError::TooLarge {
                what: "section",
                ..
            })
        ));
        assert!(matches!(
            decode(&[&[0xff, 0xff, 0xff, 0x0f]]),
            Err(CarError::TooLarge { what: "header", .. })
        ));
        assert!(matches!(
            decode(&[&[0x81, 0x00]]),
            Err(CarError::BadVarint(_))
        ));
        let mut junk = header(&[car(1).1[0].0]).to_vec();
        junk.extend_from_slice(&[5, 0x07, 1, 2, 3, 4]);
        assert!(matches!(decode(&[&junk]), Err(CarError::BadCid(_))));
    }
}
