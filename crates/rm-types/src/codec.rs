//! DAG-CBOR helpers: encoding, size-capped decoding, and finding where one item ends in a
//! byte stream.
//!
//! Messages on the retrieval protocols are DAG-CBOR items written back to back with no
//! length prefix (go-cbor-util framing). A reader therefore has to know where an item ends
//! before it can decode it; [`ItemScanner`] answers that incrementally, as bytes arrive,
//! without decoding and with a hard size cap, so a hostile peer can neither make the reader
//! buffer without limit nor make it rescan what it already saw.
//!
//! ```
//! use rm_types::codec::{ItemScanner, Scan};
//!
//! let bytes = [0x82, 0x01, 0x43, 0xaa, 0xbb, 0xcc]; // [1, h'aabbcc']
//! let mut scanner = ItemScanner::new(1024);
//! assert_eq!(scanner.feed(&bytes[..3])?, Scan::NeedMore);
//! assert_eq!(scanner.feed(&bytes)?, Scan::Complete(6));
//! # Ok::<(), rm_types::Error>(())
//! ```

use std::cell::RefCell;

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::Error;

/// Deepest nesting of arrays and maps a scanned item may have.
pub const MAX_NESTING: usize = 64;

/// Encodes `value` as DAG-CBOR (structs become maps with canonically ordered keys).
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| Error::Encode(e.to_string()))
}

/// Decodes one DAG-CBOR value that must fill `bytes` exactly.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_ipld_dagcbor::from_slice(bytes).map_err(|e| Error::Decode(e.to_string()))
}

thread_local! {
    /// The buffer [`from_bytes`] is decoding on this thread, whose slices byte strings
    /// decoded as [`Bytes`] become.
    static SOURCE: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Decodes one DAG-CBOR value that must fill `bytes` exactly, as [`from_slice`] does,
/// except that byte strings decoded as [`Bytes`] (every [`crate::Block`]'s data) are
/// slices of `bytes`, sharing its memory, instead of copies.
///
/// This is how a received `DealResponse` reaches verification and storage without its
/// blocks being copied:
///
/// ```
/// use bytes::Bytes;
/// use rm_types::{Block, codec};
///
/// let block = Block { prefix: vec![0x01, 0x55, 0x12, 0x20], data: Bytes::from(vec![7u8; 4096]) };
/// let wire = Bytes::from(codec::to_vec(&block)?);
/// let decoded: Block = codec::from_bytes(&wire)?;
/// assert_eq!(decoded, block);
/// // The data points into `wire`.
/// let inside = wire.as_ptr_range();
/// assert!(inside.contains(&decoded.data.as_ptr()));
/// # Ok::<(), rm_types::Error>(())
/// ```
pub fn from_bytes<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Error> {
    /// Puts back what was there before (a nested call, which does not happen today).
    struct Restore(Option<Bytes>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take();
            SOURCE.with(|s| *s.borrow_mut() = before);
        }
    }
    let _restore = Restore(SOURCE.with(|s| s.replace(Some(bytes.clone()))));
    from_slice(bytes)
}

/// `v` as a slice of the buffer [`from_bytes`] is decoding, or a copy when it is not part
/// of one.
fn shared_slice(v: &[u8]) -> Bytes {
    SOURCE.with(|s| {
        if let Some(source) = s.borrow().as_ref() {
            let start = source.as_ptr() as usize;
            let at = v.as_ptr() as usize;
            if at >= start && at + v.len() <= start + source.len() {
                return source.slice(at - start..at - start + v.len());
            }
        }
        Bytes::copy_from_slice(v)
    })
}

/// Serde glue for [`Bytes`] fields encoded as a CBOR byte string: decoded by
/// [`from_bytes`], they share the received buffer; decoded any other way, they are
/// copies. Only byte strings are accepted (not arrays of integers).
pub mod shared_bytes {
    use bytes::Bytes;
    use serde::{Deserializer, Serializer, de::Visitor};

    /// Writes `b` as a byte string.
    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    /// Reads a byte string (see the [module docs](self)).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Bytes, E> {
                Ok(super::shared_slice(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes::copy_from_slice(v))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes::from(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// Decodes one value after checking `bytes` against `limit`.
pub fn from_slice_limited<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, Error> {
    if bytes.len() > limit {
        return Err(Error::TooLarge {
            what: "DAG-CBOR value",
            len: bytes.len() as u64,
            limit: limit as u64,
        });
    }
    from_slice(bytes)
}

/// What [`ItemScanner::feed`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// The first item of the buffer ends at this many bytes.
    Complete(usize),
    /// The item continues past the bytes seen so far.
    NeedMore,
}

/// Finds the end of the first CBOR item in a growing buffer.
///
/// Feed it the whole buffer each time more bytes arrive (the same prefix, extended); it
/// resumes where it stopped, so the total work is linear in the item's size. It checks the
/// structure DAG-CBOR allows (definite lengths only, tag 42 only, no reserved simple values)
/// and rejects an item as soon as it is known to exceed the size cap, e.g. from a byte
/// string header that claims more than the cap.
#[derive(Debug, Clone)]
pub struct ItemScanner {
    limit: usize,
    pos: usize,
    /// Items still expected at each open nesting level.
    pending: Vec<u64>,
    started: bool,
}

impl ItemScanner {
    /// A scanner that rejects items longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            pos: 0,
            pending: Vec::new(),
            started: false,
        }
    }

    /// The size cap.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes of the item examined so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn too_large(&self, len: u64) -> Error {
        Error::TooLarge {
            what: "message",
            len,
            limit: self.limit as u64,
        }
    }

    /// Continues scanning `buf` (which must start with the bytes fed before).
    pub fn feed(&mut self, buf: &[u8]) -> Result<Scan, Error> {
        loop {
            // `pos` may point past `buf` while a string's payload is still in flight.
            if self.pos > buf.len() {
                return Ok(Scan::NeedMore);
            }
            if self.started && self.pending.is_empty() {
                return Ok(Scan::Complete(self.pos));
            }
            if self.pos == buf.len() {
                return Ok(Scan::NeedMore);
            }
            let initial = buf[self.pos];
            let major = initial >> 5;
            let info = initial & 0x1f;
            let arg_len = match info {
                0..=23 => 0usize,
                24 => 1,
                25 => 2,
                26 => 4,
                27 => 8,
                31 => return Err(Error::MalformedCbor("indefinite length")),
                _ => return Err(Error::MalformedCbor("reserved additional information")),
            };
            let header = 1 + arg_len;
            if buf.len() < self.pos + header {
                if self.pos + header > self.limit {
                    return Err(self.too_large((self.pos + header) as u64));
                }
                return Ok(Scan::NeedMore);
            }
            let arg = if arg_len == 0 {
                u64::from(info)
            } else {
                let mut v = 0u64;
                for &b in &buf[self.pos + 1..self.pos + header] {
                    v = (v << 8) | u64::from(b);
                }
                v
            };
            // How many bytes this header consumes outright, and how many child items it opens.
            let (skip, children) = match major {
                0 | 1 => (header as u64, 0),
                2 | 3 => ((header as u64).saturating_add(arg), 0),
                4 => (header as u64, arg),
                5 => (
                    header as u64,
                    arg.checked_mul(2).ok_or(self.too_large(u64::MAX))?,
                ),
                6 => {
                    if arg != 42 {
                        return Err(Error::MalformedCbor("only tag 42 (CID) is allowed"));
                    }
                    (header as u64, 1)
                }
                _ => match info {
                    20..=22 | 27 => (header as u64, 0),
                    25 | 26 => return Err(Error::MalformedCbor("DAG-CBOR floats are 64-bit")),
                    _ => return Err(Error::MalformedCbor("unsupported simple value")),
                },
            };
            let end = (self.pos as u64).saturating_add(skip);
            if end > self.limit as u64 {
                return Err(self.too_large(end));
            }
            // Every child item takes at least one byte: reject counts that cannot fit.
            if (end.saturating_add(children)) > self.limit as u64 {
                return Err(self.too_large(end.saturating_add(children)));
            }
            self.started = true;
            self.pos = end as usize;
            // This header is one item of its parent ...
            if let Some(top) = self.pending.last_mut() {
                *top -= 1;
            }
            // ... and may open a new level.
            if children > 0 {
                if self.pending.len() >= MAX_NESTING {
                    return Err(Error::MalformedCbor("nested too deeply"));
                }
                self.pending.push(children);
            }
            while self.pending.last() == Some(&0) {
                self.pending.pop();
            }
        }
    }
}

/// Generates `Serialize`/`Deserialize` for a struct encoded as a CBOR array of its fields in
/// declaration order (cbor-gen's tuple encoding). Field types must serialize the way the
/// wire wants (use `serde_bytes::ByteBuf` for byte strings).
macro_rules! tuple_serde {
    ($ty:ident { $($field:ident : $fty:ty),* $(,)? }) => {
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                ( $( &self.$field, )* ).serialize(s)
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let ( $( $field, )* ): ( $( $fty, )* ) = ::serde::Deserialize::deserialize(d)?;
                Ok(Self { $( $field, )* })
            }
        }
    };
}
pub(crate) use tuple_serde;

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(bytes: &[u8], limit: usize) -> Result<Scan, Error> {
        ItemScanner::new(limit).feed(bytes)
    }

    #[test]
    fn finds_item_ends() {
        assert_eq!(scan_all(&[0x01, 0xff], 10).unwrap(), Scan::Complete(1));
        assert_eq!(
            scan_all(&[0xa1, 0x61, 0x61, 0x80, 0x00], 10).unwrap(),
            Scan::Complete(4)
        );
        assert_eq!(scan_all(&[0x80], 10).unwrap(), Scan::Complete(1));
        assert_eq!(scan_all(&[0x40], 10).unwrap(), Scan::Complete(1));
        assert_eq!(scan_all(&[0xf6], 10).unwrap(), Scan::Complete(1));
        assert_eq!(scan_all(&[0x83, 0x01, 0x02], 10).unwrap(), Scan::NeedMore);
        assert_eq!(scan_all(&[0x43, 0x01], 10).unwrap(), Scan::NeedMore);
    }

    #[test]
    fn incremental_feeding_matches_one_shot() {
        let value = (1u64, vec![0u8; 300], "hello", vec![(1u8, 2u8); 40]);
        let bytes = to_vec(&value).unwrap();
        let mut scanner = ItemScanner::new(10_000);
        let mut result = Scan::NeedMore;
        for end in 1..=bytes.len() {
            result = scanner.feed(&bytes[..end]).unwrap();
            if end < bytes.len() {
                assert_eq!(result, Scan::NeedMore, "at {end}");
            }
        }
        assert_eq!(result, Scan::Complete(bytes.len()));
    }

    #[test]
    fn rejects_hostile_headers() {
        // byte string claiming 2^32 bytes
        assert!(matches!(
            scan_all(&[0x5a, 0xff, 0xff, 0xff, 0xff], 1 << 20),
            Err(Error::TooLarge { .. })
        ));
        // byte and text strings claiming ~2^64 bytes (must not overflow)
        for major in [0x5b, 0x7b] {
            let hostile = [major, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
            assert!(matches!(
                scan_all(&hostile, 1 << 20),
                Err(Error::TooLarge { .. })
            ));
            assert!(matches!(
                scan_all(
                    &[
                        0x81, hostile[0], 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0
                    ],
                    1 << 20
                ),
                Err(Error::TooLarge { .. })
            ));
        }
        // array claiming 2^64-1 items
        assert!(
            scan_all(
                &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                1 << 20
            )
            .is_err()
        );
        // indefinite length, other tags, half floats, undefined
        assert!(scan_all(&[0x9f], 10).is_err());
        assert!(scan_all(&[0xc0, 0x00], 10).is_err());
        assert!(scan_all(&[0xf9, 0x00, 0x00], 10).is_err());
        assert!(scan_all(&[0xf7], 10).is_err());
        // too deep
        assert!(scan_all(&[0x81; 100], 1000).is_err());
    }

    #[test]
    fn limit_is_enforced_while_waiting() {
        // Five children cannot fit in four bytes: rejected from the header alone.
        assert!(matches!(
            ItemScanner::new(4).feed(&[0x85]),
            Err(Error::TooLarge { .. })
        ));
        // A string whose payload would cross the limit is rejected before it arrives.
        assert!(matches!(
            ItemScanner::new(8).feed(&[0x48]),
            Err(Error::TooLarge { .. })
        ));
        assert_eq!(ItemScanner::new(9).feed(&[0x48]).unwrap(), Scan::NeedMore);
    }
}
