//! [`Registry`]: the local peer registry (go-fil-markets `discovery`).
//!
//! One record per payload, in its own keyspace of the node's database: the key is the
//! payload CID's multihash bytes (so a CIDv0 and a CIDv1 of the same content share one
//! record, as go-fil-markets' `MultihashToDsKey`), the value is go-fil-markets'
//! `RetrievalPeers{Peers}` in DAG-CBOR. Adding a peer that is already there (same
//! address, peer id and piece) changes nothing; an unknown payload has no peers.
//!
//! Reading is tolerant per entry and strict per record: a record that is not a
//! `RetrievalPeers` map (or is over [`MAX_RECORD_LEN`]) is [`Error::Corrupt`]; a single
//! entry in it that does not decode as a `RetrievalPeer` (a bad address, say) is logged
//! and skipped, and dropped when the record is next written.

use std::sync::Mutex;

use rm_store::Keyspace;
use rm_types::{Cid, Ipld, PeerResolver, ResolverError, RetrievalPeer, codec};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The keyspace name a node uses for the registry.
pub const DEFAULT_KEYSPACE: &str = "peer-registry";

/// Most peers one payload's record holds.
pub const MAX_PEERS_PER_PAYLOAD: usize = 64;

/// Largest record read (64 peers take about 6 KiB).
pub const MAX_RECORD_LEN: usize = 64 * 1024;

/// go-fil-markets' `RetrievalPeers`.
#[derive(Serialize, Deserialize)]
struct Peers<T> {
    #[serde(rename = "Peers")]
    peers: Vec<T>,
}

/// The local registry: payload CID -> the peers known to serve it.
///
/// ```
/// use rm_discovery::registry::{self, Registry};
/// use rm_types::{Cid, RetrievalPeer};
///
/// // A node passes a keyspace of its RocksDB database.
/// let registry = Registry::open(rm_store::Keyspace::memory(registry::DEFAULT_KEYSPACE));
/// let payload: Cid = "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb".parse()?;
/// let peer = RetrievalPeer { address: "f01000".parse()?, id: Default::default(), piece_cid: None };
/// assert!(registry.add_peer(&payload, peer.clone())?);
/// assert!(!registry.add_peer(&payload, peer.clone())?); // already there
/// assert_eq!(registry.get_peers(&payload)?, vec![peer]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Registry {
    keyspace: Keyspace,
    /// Serialises read-modify-write cycles.
    write: Mutex<()>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("keyspace", &self.keyspace)
            .finish()
    }
}

/// The record key of a payload: its multihash bytes.
fn key(payload: &Cid) -> Vec<u8> {
    payload.hash().to_bytes()
}

impl Registry {
    /// The registry kept in `keyspace` (for a node: [`DEFAULT_KEYSPACE`] of its database).
    pub fn open(keyspace: Keyspace) -> Self {
        Self {
            keyspace,
            write: Mutex::new(()),
        }
    }

    /// Records that `peer` serves `payload`. Returns false when it was known already.
    /// Fails with [`Error::TooManyPeers`] when the record is full, and with
    /// [`Error::Corrupt`] when the stored record cannot be read (nothing is written;
    /// [`Registry::remove`] clears it).
    pub fn add_peer(&self, payload: &Cid, peer: RetrievalPeer) -> Result<bool, Error> {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut peers = self.get_peers(payload)?;
        if peers.contains(&peer) {
            return Ok(false);
        }
        if peers.len() >= MAX_PEERS_PER_PAYLOAD {
            return Err(Error::TooManyPeers {
                limit: MAX_PEERS_PER_PAYLOAD,
            });
        }
        peers.push(peer);
        let bytes = codec::to_vec(&Peers { peers }).map_err(|e| Error::Corrupt {
            what: "registry",
            reason: e.to_string(),
        })?;
        self.keyspace.put(&key(payload), &bytes)?;
        Ok(true)
    }

    /// The peers known to serve `payload` (under any CID with its multihash), in the
    /// order they were added; empty when none are.
    pub fn get_peers(&self, payload: &Cid) -> Result<Vec<RetrievalPeer>, Error> {
        let Some(bytes) = self.keyspace.get(&key(payload))? else {
            return Ok(Vec::new());
        };
        let corrupt = |reason: String| Error::Corrupt {
            what: "registry",
            reason,
        };
        let record: Peers<Ipld> = codec::from_slice_limited(&bytes, MAX_RECORD_LEN)
            .map_err(|e| corrupt(e.to_string()))?;
        let mut peers = Vec::with_capacity(record.peers.len());
        for entry in record.peers.into_iter().take(MAX_PEERS_PER_PAYLOAD) {
            match codec::to_vec(&entry).and_then(|b| codec::from_slice::<RetrievalPeer>(&b)) {
                Ok(peer) => peers.push(peer),
                Err(e) => tracing::warn!(%payload, %e, "skipping a malformed registry entry"),
            }
        }
        Ok(peers)
    }

    /// Removes `peer` from `payload`'s record. Returns whether it was there.
    pub fn remove_peer(&self, payload: &Cid, peer: &RetrievalPeer) -> Result<bool, Error> {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut peers = self.get_peers(payload)?;
        let before = peers.len();
        peers.retain(|p| p != peer);
        if peers.len() == before {
            return Ok(false);
        }
        if peers.is_empty() {
            self.keyspace.delete(&key(payload))?;
        } else {
            let bytes = codec::to_vec(&Peers { peers }).map_err(|e| Error::Corrupt {
                what: "registry",
                reason: e.to_string(),
            })?;
            self.keyspace.put(&key(payload), &bytes)?;
        }
        Ok(true)
    }

    /// Deletes `payload`'s record, whatever it holds (a corrupt one included).
    pub fn remove(&self, payload: &Cid) -> Result<(), Error> {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        self.keyspace.delete(&key(payload))?;
        Ok(())
    }
}

impl PeerResolver for Registry {
    async fn get_peers(&self, payload_cid: &Cid) -> Result<Vec<RetrievalPeer>, ResolverError> {
        Registry::get_peers(self, payload_cid).map_err(|e| ResolverError::Backend(Box::new(e)))
    }
}
