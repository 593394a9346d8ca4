//! [`Resolver`]: providers of a payload from the local registry first, then the DHT.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, stream::FuturesUnordered};
use rm_network::{
    Network,
    libp2p::{Multiaddr, PeerId},
};
use rm_types::{Cid, PeerResolver, Query, QueryResponseStatus, ResolverError, RetrievalPeer};
use tokio::time::Instant;

use crate::Registry;

/// Resolver settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResolverConfig {
    /// The longest a lookup takes in all (the DHT lookup, and for
    /// [`PeerResolver::get_peers`] the queries to DHT providers); when it runs out, the
    /// registry's entries are returned, and the DHT's only if its lookup had finished.
    /// Default: 45 s, longer than the network's own DHT lookup limit (query timeout 30 s
    /// plus the open timeout for dials, 10 s), so a slow lookup still returns what it
    /// found.
    pub timeout: Duration,
    /// Most providers returned. Default: 16.
    pub max_results: usize,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(45),
            max_results: 16,
        }
    }
}

impl ResolverConfig {
    /// Sets [`ResolverConfig::timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`ResolverConfig::max_results`].
    pub fn with_max_results(mut self, max_results: usize) -> Self {
        self.max_results = max_results;
        self
    }
}

/// Where a provider was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The local registry.
    Registry,
    /// A DHT provider record.
    Dht,
}

/// A provider found by [`Resolver::find`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its libp2p peer id.
    pub peer_id: PeerId,
    /// Addresses to dial it at: from the DHT (its provider record, the routing table or
    /// the connection the lookup opened). Empty for a registry entry the DHT did not also
    /// return; the network's address book may still know it.
    pub addrs: Vec<Multiaddr>,
    /// The registry's record (Filecoin address, peer id, piece), for a provider found
    /// there. `None` for a DHT provider: a provider record carries no Filecoin address or
    /// piece; ask the provider with a query.
    pub record: Option<RetrievalPeer>,
    /// Where it was found first.
    pub source: Source,
}

/// Combines the sources: the local registry first, then the DHT, within
/// [`ResolverConfig::timeout`], deduplicated by peer id, at most
/// [`ResolverConfig::max_results`]. Entries that cannot be used are skipped and logged: a
/// registry record that does not decode, a registry entry without a valid peer id (in
/// [`Resolver::find`]), a DHT provider with no address.
///
/// As a [`PeerResolver`] (what `rm_client::Client::find_providers` takes) it returns
/// `RetrievalPeer`s: registry entries as stored, and for each DHT provider the answer to a
/// query for the payload: `Address` is the payment address the provider gave, `ID` its
/// peer id, `PieceCID` unknown (`None`). DHT providers that do not answer in time or do
/// not have the payload are left out. The providers' addresses are in the network's
/// address book afterwards, so the client can query and retrieve by peer id.
#[derive(Debug, Clone)]
pub struct Resolver {
    registry: Option<Arc<Registry>>,
    network: Option<Network>,
    config: ResolverConfig,
}

impl Resolver {
    /// A resolver with no sources yet.
    pub fn new(config: ResolverConfig) -> Self {
        Self {
            registry: None,
            network: None,
            config,
        }
    }

    /// Looks in `registry` first.
    pub fn with_registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Looks up DHT provider records through `network` (and queries DHT providers through
    /// it in [`PeerResolver::get_peers`]).
    pub fn with_network(mut self, network: Network) -> Self {
        self.network = Some(network);
        self
    }

    /// The settings.
    pub fn config(&self) -> &ResolverConfig {
        &self.config
    }

    /// Registry entries for `payload`, as stored; a record that fails to decode is logged
    /// and skipped.
    fn local(&self, payload: &Cid) -> Vec<RetrievalPeer> {
        let Some(registry) = &self.registry else {
            return Vec::new();
        };
        match registry.get_peers(payload) {
            Ok(peers) => peers,
            Err(e) => {
                tracing::warn!(%payload, %e, "skipping the registry record");
                Vec::new()
            }
        }
    }

    /// DHT providers of `payload`, within `deadline`; on failure or timeout, none.
    async fn dht(&self, payload: &Cid, deadline: Instant) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let Some(network) = &self.network else {
            return Vec::new();
        };
        let lookup = network.get_providers(payload, self.config.max_results);
        match tokio::time::timeout_at(deadline, lookup).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::debug!(%payload, %e, "DHT lookup failed");
                Vec::new()
            }
            Err(_) => {
                tracing::debug!(%payload, "DHT lookup timed out");
                Vec::new()
            }
        }
    }

    /// Providers of `payload`: registry entries first, then DHT providers, deduplicated
    /// by peer id (a DHT result for a registry peer adds its addresses), at most
    /// [`ResolverConfig::max_results`], within [`ResolverConfig::timeout`]. Never fails:
    /// a source that fails or runs out of time contributes nothing.
    pub async fn find(&self, payload: &Cid) -> Vec<Found> {
        let deadline = Instant::now() + self.config.timeout;
        let local = self.local(payload);
        let mut found = merge(
            local_found(payload, local),
            Vec::new(),
            self.config.max_results,
        );
        if self.network.is_some() {
            let dht = self.dht(payload, deadline).await;
            found = merge(found, dht, self.config.max_results);
        }
        found
    }
}

/// Registry entries as [`Found`]s; entries whose peer id is not a libp2p peer id are
/// logged and skipped.
fn local_found(payload: &Cid, peers: Vec<RetrievalPeer>) -> Vec<Found> {
    peers
        .into_iter()
        .filter_map(|peer| match rm_network::from_rm_peer(&peer.id) {
            Ok(peer_id) => Some(Found {
                peer_id,
                addrs: Vec::new(),
                record: Some(peer),
                source: Source::Registry,
            }),
            Err(_) => {
                tracing::debug!(%payload, address = %peer.address, "registry entry without a usable peer id");
                None
            }
        })
        .collect()
}

/// Appends DHT results to `found`: a peer already there gains the addresses it lacked, a
/// new peer with no address is skipped, and the list stops at `max`. Registry entries
/// beyond `max` are dropped too; duplicates among them keep the first.
pub(crate) fn merge(
    found: Vec<Found>,
    dht: Vec<(PeerId, Vec<Multiaddr>)>,
    max: usize,
) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::with_capacity(max.min(found.len() + dht.len()));
    for f in found {
        if out.len() >= max {
            break;
        }
        if !out.iter().any(|o| o.peer_id == f.peer_id) {
            out.push(f);
        }
    }
    for (peer_id, addrs) in dht {
        if let Some(existing) = out.iter_mut().find(|o| o.peer_id == peer_id) {
            for addr in addrs {
                if !existing.addrs.contains(&addr) {
                    existing.addrs.push(addr);
                }
            }
            continue;
        }
        if addrs.is_empty() {
            tracing::debug!(%peer_id, "skipping a DHT provider with no address");
            continue;
        }
        if out.len() >= max {
            continue;
        }
        out.push(Found {
            peer_id,
            addrs,
            record: None,
            source: Source::Dht,
        });
    }
    out
}

impl Resolver {
    async fn resolve(&self, payload: &Cid) -> Vec<RetrievalPeer> {
        let deadline = Instant::now() + self.config.timeout;
        // Every registry entry counts here, those without a usable peer id included.
        let local = self.local(payload);
        let mut peers: Vec<RetrievalPeer> = Vec::new();
        for peer in local {
            let duplicate = peers.iter().any(|p| {
                if peer.id.as_bytes().is_empty() {
                    p.id.as_bytes().is_empty() && p.address == peer.address
                } else {
                    p.id == peer.id
                }
            });
            if !duplicate && peers.len() < self.config.max_results {
                peers.push(peer);
            }
        }
        let Some(network) = &self.network else {
            return peers;
        };
        if peers.len() >= self.config.max_results {
            return peers;
        }
        let dht = self.dht(payload, deadline).await;
        let mut queries = FuturesUnordered::new();
        for (peer_id, addrs) in dht {
            let id = rm_network::to_rm_peer(&peer_id);
            if peers.iter().any(|p| p.id == id) {
                continue;
            }
            if addrs.is_empty() {
                tracing::debug!(%peer_id, "skipping a DHT provider with no address");
                continue;
            }
            if queries.len() + peers.len() >= self.config.max_results {
                break;
            }
            let network = network.clone();
            let query = Query::new(*payload);
            queries.push(async move {
                let answer = async {
                    network.dial(peer_id, addrs).await?;
                    network.query(peer_id, &query).await
                };
                (peer_id, tokio::time::timeout_at(deadline, answer).await)
            });
        }
        while let Some((peer_id, answer)) = queries.next().await {
            match answer {
                Ok(Ok(response)) if response.status != QueryResponseStatus::Unavailable => {
                    peers.push(RetrievalPeer {
                        address: response.payment_address,
                        id: rm_network::to_rm_peer(&peer_id),
                        piece_cid: None,
                    });
                }
                Ok(Ok(response)) => {
                    tracing::debug!(%peer_id, status = ?response.status, "DHT provider does not have the payload");
                }
                Ok(Err(e)) => tracing::debug!(%peer_id, %e, "DHT provider did not answer"),
                Err(_) => tracing::debug!(%peer_id, "DHT provider did not answer in time"),
            }
        }
        peers
    }
}

impl PeerResolver for Resolver {
    async fn get_peers(&self, payload_cid: &Cid) -> Result<Vec<RetrievalPeer>, ResolverError> {
        Ok(self.resolve(payload_cid).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        rm_network::keys::generate().public().to_peer_id()
    }

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    fn local(peer_id: PeerId) -> Found {
        Found {
            peer_id,
            addrs: Vec::new(),
            record: Some(RetrievalPeer {
                address: "f01000".parse().unwrap(),
                id: rm_network::to_rm_peer(&peer_id),
                piece_cid: None,
            }),
            source: Source::Registry,
        }
    }

    #[test]
    fn registry_entries_come_first_and_dht_duplicates_only_add_addresses() {
        let (a, b, c) = (peer(), peer(), peer());
        let out = merge(
            vec![local(a)],
            vec![(b, vec![addr(2)]), (a, vec![addr(1)]), (c, vec![addr(3)])],
            10,
        );
        let ids: Vec<_> = out.iter().map(|f| f.peer_id).collect();
        assert_eq!(ids, vec![a, b, c]);
        assert_eq!(out[0].source, Source::Registry);
        assert_eq!(out[0].addrs, vec![addr(1)]);
        assert!(out[0].record.is_some());
        assert_eq!(out[1].source, Source::Dht);
        assert!(out[1].record.is_none());
    }

    #[test]
    fn results_are_bounded_and_deduplicated() {
        let peers: Vec<PeerId> = (0..6).map(|_| peer()).collect();
        let local_entries = vec![local(peers[0]), local(peers[0]), local(peers[1])];
        let dht = peers[1..]
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, vec![addr(i as u16 + 1)]))
            .collect();
        let out = merge(local_entries, dht, 4);
        let ids: Vec<_> = out.iter().map(|f| f.peer_id).collect();
        assert_eq!(ids, peers[..4].to_vec());
        // A full list still merges addresses into the peers it holds.
        assert_eq!(out[1].addrs, vec![addr(1)]);
        assert!(merge(vec![local(peers[0])], Vec::new(), 0).is_empty());
    }

    #[test]
    fn dht_providers_without_addresses_are_ignored() {
        let (a, b) = (peer(), peer());
        let out = merge(Vec::new(), vec![(a, Vec::new()), (b, vec![addr(7)])], 10);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].peer_id, b);
    }
}
