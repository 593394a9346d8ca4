//! Machine ids and their byte encoding in the store.

use std::fmt;
use std::hash::Hash;

/// A machine id: anything that maps to and from bytes one-to-one.
///
/// The bytes are the machine's key in its journal's keyspace, so the encoding must be
/// stable across versions. Implemented for `u64` (8 bytes big-endian, so keys sort numerically),
/// `String` (UTF-8), `Vec<u8>` (as is) and `(Vec<u8>, u64)` (the bytes followed by 8 bytes
/// big-endian; e.g. a peer id and a deal id).
pub trait Key: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static {
    /// The id's bytes.
    fn to_key_bytes(&self) -> Vec<u8>;
    /// Parses bytes written by [`Key::to_key_bytes`]; `None` if they are not a valid id.
    fn from_key_bytes(bytes: &[u8]) -> Option<Self>;
}

impl Key for u64 {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }

    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        Some(u64::from_be_bytes(bytes.try_into().ok()?))
    }
}

impl Key for String {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl Key for Vec<u8> {
    fn to_key_bytes(&self) -> Vec<u8> {
        self.clone()
    }

    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        Some(bytes.to_vec())
    }
}

impl Key for (Vec<u8>, u64) {
    fn to_key_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() + 8);
        out.extend_from_slice(&self.0);
        out.extend_from_slice(&self.1.to_be_bytes());
        out
    }

    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        let split = bytes.len().checked_sub(8)?;
        let (head, tail) = bytes.split_at(split);
        Some((head.to_vec(), u64::from_be_bytes(tail.try_into().ok()?)))
    }
}
