//! go-cbor-util framing: DAG-CBOR items back to back, no length prefix.
//!
//! Reading: bytes go into one buffer per stream; [`rm_types::codec::ItemScanner`] says where
//! the first item ends (or that it exceeds the cap), so the reader never holds more than
//! the cap and never decodes a partial item. Bytes after the item stay buffered for the
//! next read. When the scanner is inside a long byte string it reports how far the item
//! reaches at least, and the reader reads straight up to there (block data arrives in a
//! few large reads instead of many small ones). A complete item is split off the buffer
//! as [`Bytes`] ([`FrameReader::take`]), so the blocks decoded from it are slices of the
//! received bytes: nothing is copied between the socket read and the blockstore write.
//!
//! Writing: small messages are encoded with `rm_types::codec` and written at once. A
//! `DealResponse` is encoded by [`encode_deal_response`] into a small head buffer of CBOR
//! headers plus references to the block data, which is then written without being copied.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use rm_types::{
    DealResponse,
    codec::{ItemScanner, Scan},
};

use crate::Error;

/// Most bytes read at a time when the scanner cannot tell how long the item is.
const CHUNK: usize = 64 * 1024;

/// Fewest bytes read at a time: a stream of small messages (a provider reading payments)
/// reads, and holds, this much rather than [`CHUNK`]; a stream of large ones reads up to
/// [`CHUNK`] at a time (the chunk follows the length of the last item).
const MIN_CHUNK: usize = 4 * 1024;

/// Block data shorter than this is copied into the head buffer rather than written as a
/// separate piece.
const INLINE_DATA: usize = 4 * 1024;

/// Reads DAG-CBOR items from a byte stream, one at a time, with a size cap.
///
/// Items are split off the front of the buffer, so an item handed out with
/// [`FrameReader::take`] keeps its part of the allocation alive while the reader goes on
/// in the rest. When the rest is too small for the next item, a new allocation of the cap
/// is made, sized for an item as long as the last one plus a read chunk (so a stream of
/// like-sized responses allocates about once per response, and nothing is copied but the
/// start of the next item), and the unconsumed bytes move there; the old one is freed
/// when the last item from it is dropped.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    /// `buf[..filled]` holds received, unconsumed bytes; `buf[filled..]` is zeroed space
    /// to read into.
    buf: BytesMut,
    filled: usize,
    /// The length of the last item taken.
    last: usize,
}

impl FrameReader {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Reads until the buffer starts with one complete item of at most `cap` bytes and
    /// returns its length. The item is `self.item(len)`; call [`FrameReader::consume`]
    /// after decoding it.
    ///
    /// The buffer never grows beyond `cap` bytes. Errors: [`Error::TooLarge`] as soon as
    /// the item is known to exceed `cap`, [`Error::Malformed`] for bytes that cannot start
    /// a DAG-CBOR item, [`Error::Closed`] for end of stream before any byte of the item,
    /// [`Error::Truncated`] for end of stream inside it, [`Error::Io`].
    pub(crate) async fn next_item<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        cap: usize,
    ) -> Result<usize, Error> {
        let mut scanner = ItemScanner::new(cap);
        loop {
            if self.filled > 0 {
                match scanner
                    .feed(&self.buf[..self.filled])
                    .map_err(Error::from_codec)?
                {
                    Scan::Complete(len) => return Ok(len),
                    Scan::NeedMore => {}
                }
            }
            if self.filled >= cap {
                // The scanner would have found an item ending within the cap.
                return Err(Error::TooLarge {
                    what: "message",
                    len: self.filled as u64 + 1,
                    limit: cap as u64,
                });
            }
            // Read at least up to where the item is known to reach, and a chunk otherwise.
            let chunk = self.last.clamp(MIN_CHUNK, CHUNK);
            let want = scanner.position().max(self.filled + chunk).min(cap);
            if self.buf.len() < want {
                if self.buf.capacity() < want {
                    // Earlier items may still hold the old allocation: start a new one
                    // with what is unconsumed.
                    let size = self.last.saturating_add(chunk).clamp(want, cap.max(want));
                    let mut fresh = BytesMut::with_capacity(size);
                    fresh.extend_from_slice(&self.buf[..self.filled]);
                    self.buf = fresh;
                }
                self.buf.resize(want, 0);
            }
            let n = io.read(&mut self.buf[self.filled..want]).await?;
            if n == 0 {
                return Err(if self.filled == 0 {
                    Error::Closed
                } else {
                    Error::Truncated {
                        received: self.filled,
                    }
                });
            }
            self.filled += n;
        }
    }

    /// The first `len` buffered bytes (an item found by [`FrameReader::next_item`]).
    pub(crate) fn item(&self, len: usize) -> &[u8] {
        &self.buf[..len.min(self.filled)]
    }

    /// Splits the first `len` buffered bytes (an item found by
    /// [`FrameReader::next_item`]) off the buffer, without copying them; what follows stays
    /// for the next item.
    pub(crate) fn take(&mut self, len: usize) -> Bytes {
        let len = len.min(self.filled);
        self.filled -= len;
        self.last = len;
        self.buf.split_to(len).freeze()
    }

    /// Drops the first `len` buffered bytes, keeping what follows for the next item.
    #[cfg(test)]
    pub(crate) fn consume(&mut self, len: usize) {
        drop(self.take(len));
    }

    /// Bytes of storage held for reading (never more than the largest cap used).
    #[cfg(test)]
    pub(crate) fn storage(&self) -> usize {
        self.buf.capacity()
    }

    /// Received bytes not yet consumed.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.filled
    }
}

/// A piece of an encoded message: bytes of the head buffer or borrowed block data.
#[derive(Debug, Clone)]
pub(crate) enum Piece<'a> {
    /// `head[range]`.
    Head(Range<usize>),
    /// Block data, written as it is.
    Data(&'a [u8]),
}

/// Appends a CBOR header (major type and argument, shortest form) to `out`.
pub(crate) fn write_header(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u64::from(u8::MAX) {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= u64::from(u16::MAX) {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u64::from(u32::MAX) {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn write_text(out: &mut Vec<u8>, s: &str) {
    write_header(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn append_encoded<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    let bytes = rm_types::codec::to_vec(value).map_err(Error::Encode)?;
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Encodes `response` exactly as `rm_types::codec::to_vec` does (canonical key order:
/// `ID`, `Blocks`, `Status`, `Message`, `PaymentOwed`; `Blocks` left out when empty;
/// each block `{Data, Prefix}`), as head bytes plus borrowed block data. Returns the
/// encoded length.
pub(crate) fn encode_deal_response<'a>(
    response: &'a DealResponse,
    head: &mut Vec<u8>,
    pieces: &mut Vec<Piece<'a>>,
) -> Result<usize, Error> {
    // Destructured so that a new field in rm-types fails to compile here instead of
    // silently going missing from the wire.
    let DealResponse {
        status,
        id,
        payment_owed,
        message,
        blocks,
    } = response;
    head.clear();
    pieces.clear();
    let mut start = 0;
    let mut total = 0;
    fn flush(head: &[u8], pieces: &mut Vec<Piece<'_>>, start: &mut usize) {
        if head.len() > *start {
            pieces.push(Piece::Head(*start..head.len()));
            *start = head.len();
        }
    }

    write_header(head, 5, if blocks.is_empty() { 4 } else { 5 });
    write_text(head, "ID");
    append_encoded(head, id)?;
    if !blocks.is_empty() {
        write_text(head, "Blocks");
        write_header(head, 4, blocks.len() as u64);
        for block in blocks {
            write_header(head, 5, 2);
            write_text(head, "Data");
            write_header(head, 2, block.data.len() as u64);
            if block.data.len() < INLINE_DATA {
                head.extend_from_slice(&block.data);
            } else {
                flush(head, pieces, &mut start);
                pieces.push(Piece::Data(&block.data));
                total += block.data.len();
            }
            write_text(head, "Prefix");
            write_header(head, 2, block.prefix.len() as u64);
            head.extend_from_slice(&block.prefix);
        }
    }
    write_text(head, "Status");
    append_encoded(head, status)?;
    write_text(head, "Message");
    write_text(head, message);
    write_text(head, "PaymentOwed");
    append_encoded(head, payment_owed)?;
    flush(head, pieces, &mut start);
    Ok(total + head.len())
}

/// Writes `pieces` (see [`encode_deal_response`]) and flushes.
pub(crate) async fn write_pieces<W: AsyncWrite + Unpin>(
    io: &mut W,
    head: &[u8],
    pieces: &[Piece<'_>],
) -> Result<(), Error> {
    for piece in pieces {
        let bytes = match piece {
            Piece::Head(range) => head.get(range.clone()).unwrap_or_default(),
            Piece::Data(data) => *data,
        };
        io.write_all(bytes).await?;
    }
    io.flush().await?;
    Ok(())
}

/// Writes one encoded message and flushes.
pub(crate) async fn write_message<W: AsyncWrite + Unpin>(
    io: &mut W,
    bytes: &[u8],
) -> Result<(), Error> {
    io.write_all(bytes).await?;
    io.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{
        pin::Pin,
        task::{Context, Poll},
    };

    use futures::io::Cursor;
    use proptest::prelude::*;
    use rm_types::{Block, DealId, DealStatus, TokenAmount, codec};

    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    /// A reader that returns at most `step` bytes per call.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = self.step.min(buf.len()).min(self.data.len() - self.pos);
            let pos = self.pos;
            buf[..n].copy_from_slice(&self.data[pos..pos + n]);
            self.pos += n;
            Poll::Ready(Ok(n))
        }
    }

    /// A reader that yields endless bytes of one value.
    struct Endless(u8);

    impl AsyncRead for Endless {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            buf.fill(self.0);
            Poll::Ready(Ok(buf.len()))
        }
    }

    fn response(blocks: Vec<Block>) -> DealResponse {
        DealResponse {
            status: DealStatus::FundsNeeded,
            id: DealId(7),
            payment_owed: TokenAmount::from_atto(123_456u64),
            message: "more money".into(),
            blocks,
        }
    }

    fn read_all(
        reader: &mut FrameReader,
        io: &mut (impl AsyncRead + Unpin),
        cap: usize,
    ) -> Vec<Vec<u8>> {
        let mut items = Vec::new();
        loop {
            match block_on(reader.next_item(io, cap)) {
                Ok(len) => {
                    items.push(reader.item(len).to_vec());
                    reader.consume(len);
                }
                Err(Error::Closed) => return items,
                Err(e) => panic!("unexpected {e}"),
            }
        }
    }

    #[test]
    fn back_to_back_items_keep_their_leftovers() {
        let a = codec::to_vec(&(1u8, "one")).unwrap();
        let b = codec::to_vec(&vec![7u8; 100_000]).unwrap();
        let c = codec::to_vec(&response(vec![])).unwrap();
        let all = [a.clone(), b.clone(), c.clone()].concat();
        for step in [1, 3, 1000, usize::MAX] {
            let mut io = Trickle {
                data: all.clone(),
                pos: 0,
                step,
            };
            let mut reader = FrameReader::new();
            assert_eq!(
                read_all(&mut reader, &mut io, 1 << 20),
                vec![a.clone(), b.clone(), c.clone()],
                "step {step}"
            );
            assert_eq!(reader.buffered(), 0);
        }
    }

    #[test]
    fn oversized_item_is_rejected_without_growing_past_the_cap() {
        let cap = 10_000;
        // A byte string that announces more than the cap: rejected from its header.
        let mut io = Cursor::new(vec![0x5a, 0x00, 0x10, 0x00, 0x00]);
        let mut reader = FrameReader::new();
        assert!(matches!(
            block_on(reader.next_item(&mut io, cap)),
            Err(Error::TooLarge { .. })
        ));
        // An array claiming more items than the cap has bytes: rejected from its header.
        let mut reader = FrameReader::new();
        let r =
            block_on(reader.next_item(&mut Cursor::new(vec![0x9a, 0x00, 0x01, 0x00, 0x00]), cap));
        assert!(matches!(r, Err(Error::TooLarge { .. })), "{r:?}");
        // An array of 2000 three-byte items that only crosses the cap as bytes arrive.
        let mut many = vec![0x99, 0x07, 0xd0];
        for _ in 0..2000 {
            many.extend_from_slice(&[0x19, 0x01, 0x00]);
        }
        let mut reader = FrameReader::new();
        let r = block_on(reader.next_item(
            &mut Trickle {
                data: many,
                pos: 0,
                step: 700,
            },
            5000,
        ));
        assert!(matches!(r, Err(Error::TooLarge { .. })), "{r:?}");
        assert!(reader.storage() <= 5000);
        // Endless arrays nested in arrays: rejected for depth.
        let mut reader = FrameReader::new();
        assert!(block_on(reader.next_item(&mut Endless(0x81), cap)).is_err());
        assert!(reader.storage() <= cap);
        // Endless bytes inside a text string claiming just under 4 GiB.
        let mut reader = FrameReader::new();
        let r =
            block_on(reader.next_item(&mut Cursor::new(vec![0x7a, 0xff, 0xff, 0xff, 0x00]), cap));
        assert!(matches!(r, Err(Error::TooLarge { .. })));
        assert!(reader.storage() <= cap);
    }

    #[test]
    fn truncated_and_garbage_inputs_are_typed_errors() {
        let bytes = codec::to_vec(&response(vec![])).unwrap();
        let mut reader = FrameReader::new();
        let r = block_on(
            reader.next_item(&mut Cursor::new(bytes[..bytes.len() - 3].to_vec()), 1 << 16),
        );
        assert!(matches!(r, Err(Error::Truncated { received }) if received == bytes.len() - 3));
        for garbage in [
            vec![0xff, 0x00],
            vec![0x9f, 0x01],
            vec![0xc1, 0x00],
            vec![0xf7],
        ] {
            let mut reader = FrameReader::new();
            let r = block_on(reader.next_item(&mut Cursor::new(garbage), 1 << 16));
            assert!(matches!(r, Err(Error::Malformed(_))), "{r:?}");
        }
        let mut reader = FrameReader::new();
        assert!(matches!(
            block_on(reader.next_item(&mut Cursor::new(vec![]), 16)),
            Err(Error::Closed)
        ));
    }

    #[test]
    fn a_large_item_is_read_to_its_end_and_storage_stays_within_the_cap() {
        let big = codec::to_vec(&serde_bytes_like(3 << 20)).unwrap();
        let small = codec::to_vec(&5u8).unwrap();
        let mut io = Cursor::new([big.clone(), small.clone(), small].concat());
        let mut reader = FrameReader::new();
        let cap = 4 << 20;
        let len = block_on(reader.next_item(&mut io, cap)).unwrap();
        assert_eq!(len, big.len());
        reader.consume(len);
        assert!(reader.storage() <= cap);
        for _ in 0..2 {
            let len = block_on(reader.next_item(&mut io, cap)).unwrap();
            assert_eq!(reader.item(len), &[5]);
            reader.consume(len);
        }
        assert!(matches!(
            block_on(reader.next_item(&mut io, cap)),
            Err(Error::Closed)
        ));
    }

    #[test]
    fn blocks_of_a_taken_response_are_slices_of_the_received_bytes() {
        let blocks: Vec<Block> = (0..3u8)
            .map(|i| Block {
                prefix: vec![0x01, 0x55, 0x12, 0x20],
                data: vec![i; 300_000].into(),
            })
            .collect();
        let first = response(blocks.clone());
        let second = response(vec![]);
        let wire = [
            codec::to_vec(&first).unwrap(),
            codec::to_vec(&second).unwrap(),
        ]
        .concat();
        let mut io = Trickle {
            data: wire,
            pos: 0,
            step: 70_000,
        };
        let mut reader = FrameReader::new();
        let cap = 1 << 20;
        let len = block_on(reader.next_item(&mut io, cap)).unwrap();
        let item = reader.take(len);
        let decoded: DealResponse = codec::from_bytes(&item).unwrap();
        assert_eq!(decoded, first);
        let inside = item.as_ptr_range();
        for block in &decoded.blocks {
            let data = block.data.as_ptr_range();
            assert!(
                inside.start <= data.start && data.end <= inside.end,
                "copied"
            );
        }
        // The reader goes on after the item it handed out, which stays intact.
        let len = block_on(reader.next_item(&mut io, cap)).unwrap();
        let next: DealResponse = codec::from_bytes(&reader.take(len)).unwrap();
        assert_eq!(next, second);
        assert_eq!(decoded.blocks, blocks);
        assert!(reader.storage() <= cap);
        // Decoded from a plain slice, the data is a copy (and equal).
        let copied: DealResponse = codec::from_slice(&item).unwrap();
        assert_eq!(copied, first);
        assert!(!inside.contains(&copied.blocks[0].data.as_ptr()));
    }

    /// A CBOR byte string of `n` bytes (via `Block`, whose data is a byte string).
    fn serde_bytes_like(n: usize) -> Block {
        Block {
            prefix: vec![],
            data: vec![1u8; n].into(),
        }
    }

    fn encode_pieces(r: &DealResponse) -> Vec<u8> {
        let mut head = Vec::new();
        let mut pieces = Vec::new();
        let len = encode_deal_response(r, &mut head, &mut pieces).unwrap();
        let mut out = Vec::new();
        block_on(write_pieces(&mut out, &head, &pieces)).unwrap();
        assert_eq!(out.len(), len);
        out
    }

    #[test]
    fn hand_encoding_matches_the_codec_for_big_blocks() {
        let blocks = vec![
            Block {
                prefix: vec![1, 0x55, 0x12, 0x20],
                data: vec![9u8; 1 << 20].into(),
            },
            Block {
                prefix: vec![1, 0x71, 0x12, 0x20],
                data: vec![].into(),
            },
            Block {
                prefix: vec![1, 0x55, 0x12, 0x20],
                data: vec![3u8; 100].into(),
            },
        ];
        let r = response(blocks);
        assert_eq!(encode_pieces(&r), codec::to_vec(&r).unwrap());
        let empty = response(vec![]);
        assert_eq!(encode_pieces(&empty), codec::to_vec(&empty).unwrap());
    }

    #[test]
    fn headers_use_the_shortest_form() {
        for (n, want) in [
            (0u64, vec![0x40]),
            (23, vec![0x57]),
            (24, vec![0x58, 24]),
            (255, vec![0x58, 255]),
            (256, vec![0x59, 1, 0]),
            (65_536, vec![0x5a, 0, 1, 0, 0]),
            (1 << 32, vec![0x5b, 0, 0, 0, 1, 0, 0, 0, 0]),
        ] {
            let mut out = Vec::new();
            write_header(&mut out, 2, n);
            assert_eq!(out, want, "{n}");
        }
    }

    fn arb_block() -> impl Strategy<Value = Block> {
        (
            proptest::collection::vec(any::<u8>(), 0..40),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..300),
                (INLINE_DATA - 2..INLINE_DATA + 2, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
                (60_000usize..70_000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
            ],
        )
            .prop_map(|(prefix, data)| Block {
                prefix,
                data: data.into(),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn hand_encoding_matches_the_codec(
            status in 0u64..=26,
            id in any::<u64>(),
            owed in any::<u64>(),
            message in ".{0,40}",
            blocks in proptest::collection::vec(arb_block(), 0..6),
        ) {
            let Ok(status) = DealStatus::try_from(status) else { return Ok(()) };
            let r = DealResponse { status, id: DealId(id), payment_owed: TokenAmount::from_atto(owed), message, blocks };
            prop_assert_eq!(encode_pieces(&r), codec::to_vec(&r).unwrap());
        }

        #[test]
        fn any_split_of_a_message_sequence_decodes_the_same(
            sizes in proptest::collection::vec(0usize..3000, 1..6),
            step in 1usize..9000,
        ) {
            let items: Vec<Vec<u8>> = sizes.iter().map(|&n| codec::to_vec(&(n as u64, vec![n as u8; n])).unwrap()).collect();
            let mut io = Trickle { data: items.concat(), pos: 0, step };
            let mut reader = FrameReader::new();
            prop_assert_eq!(read_all(&mut reader, &mut io, 8192), items);
            prop_assert!(reader.storage() <= 8192);
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_overgrow(bytes in proptest::collection::vec(any::<u8>(), 0..2000), cap in 1usize..1500) {
            let mut reader = FrameReader::new();
            let mut io = Cursor::new(bytes);
            for _ in 0..2000 {
                match block_on(reader.next_item(&mut io, cap)) {
                    Ok(len) => { prop_assert!(len <= cap); reader.consume(len) }
                    Err(_) => break,
                }
            }
            prop_assert!(reader.storage() <= cap);
        }
    }
}
