//! A persistent counter (go-storedcounter semantics), e.g. for deal ids.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, StoreError, hex};
use crate::store::{Batch, Store};

/// Read-modify-write of a counter runs under one of these, chosen by the key's hash, so two
/// counters on the same key in one process never hand out the same value.
static LOCKS: [Mutex<()>; 64] = [const { Mutex::new(()) }; 64];

/// A counter stored at one key of a [`Store`].
///
/// [`Counter::next`] returns 0 the first time, then 1, 2, …; the new value is written (with
/// fsync) before it is returned, so it survives restarts and power loss. Two counters on the
/// same store and key continue one sequence; different keys are independent. The value is
/// stored as an unsigned LEB128 varint, like go-storedcounter.
#[derive(Clone)]
pub struct Counter {
    store: Arc<dyn Store>,
    key: Vec<u8>,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter")
            .field("key", &hex(&self.key))
            .finish_non_exhaustive()
    }
}

impl Counter {
    /// A counter at `key` of `store`. Does no IO.
    pub fn new(store: impl Store, key: impl Into<Vec<u8>>) -> Self {
        Counter {
            store: Arc::new(store),
            key: key.into(),
        }
    }

    /// Hands out the next value, persisting it first. Blocking (one synced write); in async code
    /// prefer [`Counter::next_async`].
    pub fn next(&self) -> Result<u64, Error> {
        let mut hasher = DefaultHasher::new();
        self.key.hash(&mut hasher);
        let lock = &LOCKS[(hasher.finish() % LOCKS.len() as u64) as usize];
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let value = match self.current()? {
            None => 0,
            Some(last) => last.checked_add(1).ok_or(Error::CounterOverflow)?,
        };
        let mut batch = Batch::new();
        batch.put(self.key.clone(), encode_uvarint(value));
        self.store.write(&batch, true)?;
        Ok(value)
    }

    /// [`Counter::next`] on tokio's blocking pool.
    pub async fn next_async(&self) -> Result<u64, Error> {
        let counter = self.clone();
        tokio::task::spawn_blocking(move || counter.next())
            .await
            .map_err(|e| Error::Store(StoreError::Task(e.to_string())))?
    }

    /// The last value handed out, if any.
    pub fn current(&self) -> Result<Option<u64>, Error> {
        match self.store.get(&self.key)? {
            None => Ok(None),
            Some(bytes) => decode_uvarint(&bytes)
                .map(Some)
                .ok_or_else(|| Error::Decode {
                    key: hex(&self.key),
                    reason: "not a canonical unsigned varint".to_owned(),
                }),
        }
    }
}

/// Unsigned LEB128.
fn encode_uvarint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Unsigned LEB128, rejecting trailing bytes, overlong encodings and overflow.
fn decode_uvarint(bytes: &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        if i >= 10 {
            return None;
        }
        let part = u64::from(byte & 0x7f);
        if i == 9 && part > 1 {
            return None;
        }
        value |= part << (7 * i);
        if byte & 0x80 == 0 {
            // Last byte: must be the end of the input and not a redundant zero.
            if i + 1 != bytes.len() || (i > 0 && byte == 0) {
                return None;
            }
            return Some(value);
        }
    }
    None
}

/// Named `rm_fsm` so `cargo test --workspace --all-targets -- rm_fsm::` selects it.
#[cfg(test)]
mod rm_fsm {
    use super::*;

    #[test]
    fn uvarint_round_trips_and_rejects_bad_input() {
        for v in [0, 1, 127, 128, 300, 16_383, 16_384, u64::MAX / 3, u64::MAX] {
            assert_eq!(decode_uvarint(&encode_uvarint(v)), Some(v), "{v}");
        }
        assert_eq!(encode_uvarint(300), vec![0xac, 0x02]);
        assert_eq!(decode_uvarint(&[]), None, "empty");
        assert_eq!(decode_uvarint(&[0x80]), None, "unterminated");
        assert_eq!(decode_uvarint(&[0x80, 0x00]), None, "overlong");
        assert_eq!(decode_uvarint(&[0x01, 0x00]), None, "trailing");
        assert_eq!(decode_uvarint(&[0xff; 10]), None, "overflow");
        assert_eq!(
            decode_uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
    }
}
