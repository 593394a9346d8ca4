//! The bodies of rm's fuzz targets (one module per target in `fuzz_targets/`), and what
//! they share: the stream framing as `rm-network` applies it, a DAG built from fuzz bytes.
//!
//! Each `run` must never panic on any input: every decoder answers bad bytes with a typed
//! error. Where a decoder accepts bytes, the target also checks a property that must hold
//! for every accepted input (re-encoding is stable; the provider's reader and the client's
//! verifier agree), so the fuzzer looks for wrong answers as well as crashes.

use rm_types::codec::{ItemScanner, Scan};

/// The caps `rm-network` reads with (`docs/protocol.md`, "Limits").
pub mod caps {
    /// `max_proposal_size`.
    pub const PROPOSAL: usize = 16 << 10;
    /// `max_message_size` (a `DealResponse`).
    pub const MESSAGE: usize = 8 << 20;
    /// `max_control_message_size` (`QueryResponse`, `DealPayment`).
    pub const CONTROL: usize = 256 << 10;
    /// `max_query_size`.
    pub const QUERY: usize = 8 << 10;
}

/// Splits `stream` into DAG-CBOR items as a deal or query stream does: an
/// [`ItemScanner`] with `cap`, fed `chunk` more bytes at a time. Calls `item` with each
/// complete item; stops at the first error, at a partial item, or after `max_items`.
pub fn frames(
    stream: &[u8],
    cap: usize,
    chunk: usize,
    max_items: usize,
    mut item: impl FnMut(&[u8]),
) {
    let chunk = chunk.max(1);
    let mut rest = stream;
    for _ in 0..max_items {
        if rest.is_empty() {
            return;
        }
        let mut scanner = ItemScanner::new(cap);
        let mut fed = 0;
        let len = loop {
            fed = (fed + chunk).min(rest.len());
            match scanner.feed(&rest[..fed]) {
                Ok(Scan::Complete(len)) => break len,
                Ok(Scan::NeedMore) if fed == rest.len() => return,
                Ok(Scan::NeedMore) => {}
                Err(_) => return,
            }
        };
        assert!(
            len > 0 && len <= cap && len <= rest.len(),
            "item of {len} bytes"
        );
        item(&rest[..len]);
        rest = &rest[len..];
    }
}

/// Decodes `bytes` as `T` with `decode`; if it decodes, checks that encoding is stable:
/// the bytes of the decoded value decode again, to a value with the same bytes.
pub fn stable<T>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, rm_types::Error>,
    encode: impl Fn(&T) -> Result<Vec<u8>, rm_types::Error>,
) -> Option<T> {
    let value = decode(bytes).ok()?;
    let once = encode(&value).expect("a decoded value encodes");
    let again = decode(&once).expect("re-encoded bytes decode");
    assert_eq!(
        encode(&again).expect("encodes twice"),
        once,
        "encoding is not stable"
    );
    Some(value)
}

/// A cursor over fuzz bytes that yields zeros when they run out.
pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    /// The next byte (0 at the end).
    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    /// Up to `n` next bytes.
    pub fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from(self.byte()) | (u16::from(self.byte()) << 8)
    }
}

pub mod car_reader;
pub mod dag;
pub mod dag_cbor;
pub mod dag_pb;
pub mod deal_stream;
pub mod query;
pub mod selector_traversal;
pub mod unixfs_export;
pub mod voucher;
