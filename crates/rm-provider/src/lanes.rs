//! Which deal each payment lane pays: a lane pays one deal only, for good.
//!
//! The bindings are stored in the provider's meta keyspace (`lane/` + channel address
//! bytes + lane number → deal key), written when a deal's first voucher on a lane is
//! accepted, and read per voucher: nothing is loaded at startup, and the provider keeps no
//! in-memory map that grows with the number of deals ever paid.

use rm_fsm::Key;
use rm_store::Keyspace;
use rm_types::Address;

use crate::provider::DealKey;

const PREFIX: &[u8] = b"lane/";

/// The persistent lane → deal bindings.
pub(crate) struct Lanes {
    meta: Keyspace,
    /// Held from the check of a lane's owner through the voucher's save to the binding, so
    /// two deals cannot both take one lane.
    pub(crate) guard: tokio::sync::Mutex<()>,
}

fn key(channel: &Address, lane: u64) -> Vec<u8> {
    let channel = channel.to_bytes();
    let mut key = Vec::with_capacity(PREFIX.len() + channel.len() + 8);
    key.extend_from_slice(PREFIX);
    key.extend_from_slice(&channel);
    key.extend_from_slice(&lane.to_be_bytes());
    key
}

impl Lanes {
    pub(crate) fn new(meta: Keyspace) -> Self {
        Lanes {
            meta,
            guard: tokio::sync::Mutex::new(()),
        }
    }

    /// The deal `lane` of `channel` pays, if any.
    pub(crate) fn owner(&self, channel: &Address, lane: u64) -> Result<Option<DealKey>, String> {
        match self.meta.get(&key(channel, lane)) {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => DealKey::from_key_bytes(&bytes)
                .map(Some)
                .ok_or_else(|| "a stored lane binding does not decode".to_owned()),
            Err(e) => Err(format!("reading a lane binding: {e}")),
        }
    }

    /// Binds `lane` of `channel` to `deal` (call with [`Lanes::guard`] held, after checking
    /// [`Lanes::owner`]).
    pub(crate) fn bind(&self, channel: &Address, lane: u64, deal: &DealKey) -> Result<(), String> {
        let mut batch = rm_store::WriteBatch::new();
        batch.put(&self.meta, &key(channel, lane), &deal.to_key_bytes());
        self.meta
            .db()
            .write(batch, rm_store::Durability::Machine)
            .map_err(|e| format!("writing a lane binding: {e}"))
    }
}
