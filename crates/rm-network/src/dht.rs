//! The Kademlia DHT: provider records keyed by the multihash of a payload CID.
//!
//! The swarm task owns the `kad::Behaviour`. [`crate::Network`]'s DHT methods send a
//! [`Command`]; [`Dht`] keeps who waits for which query (at most
//! [`Config::dht_max_queries`]) and replies when the query ends. A provider lookup also
//! dials each provider it finds whose address it does not know yet: kad hands out the
//! addresses that came with a provider record only while the query runs, so the dial is
//! how they reach the address book, and the connection is warm for the query that
//! usually follows.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use cid::Cid;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol,
    core::ConnectedPoint,
    identify,
    kad::{
        self, GetProvidersOk, QueryId, QueryResult, RecordKey,
        store::{MemoryStore, MemoryStoreConfig, RecordStore},
    },
    swarm::{
        DialError, Swarm,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use tokio::sync::oneshot;

use crate::{Config, Error, host::Host};

/// The DHT behaviour the host runs.
pub(crate) type Kad = kad::Behaviour<MemoryStore>;

/// Providers found by a lookup and their known addresses.
pub(crate) type Providers = Vec<(PeerId, Vec<Multiaddr>)>;

/// Most listen addresses taken from one identify message.
const MAX_IDENTIFY_ADDRS: usize = 16;

/// The DHT key of a payload: the bytes of its CID's multihash, as IPFS keys provider
/// records, so that a CIDv0 and a CIDv1 of the same content share one record.
///
/// ```
/// use rm_network::record_key;
///
/// let v0: rm_types::Cid = "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb".parse().unwrap();
/// let v1 = rm_types::Cid::new_v1(0x70, *v0.hash());
/// assert_eq!(record_key(&v0), record_key(&v1));
/// ```
pub fn record_key(payload: &Cid) -> RecordKey {
    RecordKey::new(&payload.hash().to_bytes())
}

/// Builds the DHT behaviour from the host's configuration.
pub(crate) fn behaviour(local: PeerId, config: &Config) -> Kad {
    let mut kad_config = kad::Config::new(config.dht_protocol.clone());
    kad_config
        .set_query_timeout(config.dht_query_timeout)
        .set_provider_record_ttl(Some(config.dht_provider_record_ttl))
        // What this host provides is re-announced by its owner (rm-discovery's announcer,
        // which also persists it), not by kad.
        .set_provider_publication_interval(None)
        // No value records are stored: nothing to replicate, republish or cache.
        .set_replication_interval(None)
        .set_publication_interval(None)
        .set_caching(kad::Caching::Disabled);
    let store = MemoryStore::with_config(
        local,
        MemoryStoreConfig {
            max_records: 0,
            max_value_bytes: 0,
            max_providers_per_key: config.dht_max_providers_per_key.max(1),
            max_provided_keys: config.dht_max_provider_keys,
        },
    );
    let mut kad = kad::Behaviour::with_config(local, store, kad_config);
    kad.set_mode(Some(if config.listen_addrs.is_empty() {
        kad::Mode::Client
    } else {
        kad::Mode::Server
    }));
    kad
}

/// DHT requests to the swarm task.
#[derive(Debug)]
pub(crate) enum Command {
    AddPeer {
        peer: PeerId,
        addr: Multiaddr,
        reply: oneshot::Sender<()>,
    },
    Bootstrap {
        reply: oneshot::Sender<Result<(), Error>>,
    },
    StartProviding {
        key: RecordKey,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    StopProviding {
        key: RecordKey,
        reply: oneshot::Sender<()>,
    },
    GetProviders {
        key: RecordKey,
        limit: usize,
        reply: oneshot::Sender<Result<Providers, Error>>,
    },
    StoredProviders {
        key: RecordKey,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    RoutingTable {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
}

/// Who waits for a query.
enum Pending {
    Bootstrap(oneshot::Sender<Result<(), Error>>),
    Provide(oneshot::Sender<Result<(), Error>>),
    Lookup(Lookup),
}

impl Pending {
    fn is_closed(&self) -> bool {
        match self {
            Pending::Bootstrap(reply) | Pending::Provide(reply) => reply.is_closed(),
            Pending::Lookup(lookup) => lookup.reply.is_closed(),
        }
    }
}

/// A provider lookup: the providers found so far (at most `limit`), the dials still
/// running to learn their addresses, and whether the kad query has ended.
struct Lookup {
    limit: usize,
    found: Vec<PeerId>,
    dialing: HashSet<PeerId>,
    /// When the kad query ended; dials get [`Config::open_timeout`] after that.
    done: Option<Instant>,
    reply: oneshot::Sender<Result<Providers, Error>>,
}

/// The DHT side of the swarm task.
pub(crate) struct Dht {
    protocol: StreamProtocol,
    max_queries: usize,
    max_providers: usize,
    query_timeout: Duration,
    dial_timeout: Duration,
    pending: HashMap<QueryId, Pending>,
}

impl Dht {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            protocol: config.dht_protocol.clone(),
            max_queries: config.dht_max_queries.max(1),
            max_providers: config.dht_max_providers_per_key.max(1),
            query_timeout: config.dht_query_timeout,
            dial_timeout: config.open_timeout,
            pending: HashMap::new(),
        }
    }

    /// Forgets callers that stopped waiting (their timeout fired) and ends their queries.
    fn prune(&mut self, swarm: &mut Swarm<Host>) {
        let kad = &mut swarm.behaviour_mut().kad;
        self.pending.retain(|id, pending| {
            let keep = !pending.is_closed();
            if !keep && let Some(mut query) = kad.query_mut(id) {
                query.finish();
            }
            keep
        });
    }

    /// Whether one more query may start; prunes first.
    fn has_room(&mut self, swarm: &mut Swarm<Host>) -> Result<(), Error> {
        self.prune(swarm);
        if self.pending.len() < self.max_queries {
            Ok(())
        } else {
            Err(Error::Dht(format!(
                "{} DHT operations already in progress",
                self.pending.len()
            )))
        }
    }

    pub(crate) fn on_command(&mut self, swarm: &mut Swarm<Host>, command: Command) {
        match command {
            Command::AddPeer { peer, addr, reply } => {
                let behaviour = swarm.behaviour_mut();
                behaviour.addresses.add(peer, addr.clone());
                behaviour.kad.add_address(&peer, addr);
                let _ = reply.send(());
            }
            Command::Bootstrap { reply } => {
                if let Err(e) = self.has_room(swarm) {
                    let _ = reply.send(Err(e));
                    return;
                }
                match swarm.behaviour_mut().kad.bootstrap() {
                    Ok(id) => {
                        self.pending.insert(id, Pending::Bootstrap(reply));
                    }
                    Err(kad::NoKnownPeers()) => {
                        let _ = reply.send(Err(Error::Dht("no known DHT peers".into())));
                    }
                }
            }
            Command::StartProviding { key, reply } => {
                if let Err(e) = self.has_room(swarm) {
                    let _ = reply.send(Err(e));
                    return;
                }
                match swarm.behaviour_mut().kad.start_providing(key) {
                    Ok(id) => {
                        self.pending.insert(id, Pending::Provide(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(Error::Dht(format!("provider store: {e}"))));
                    }
                }
            }
            Command::StopProviding { key, reply } => {
                swarm.behaviour_mut().kad.stop_providing(&key);
                let _ = reply.send(());
            }
            Command::GetProviders { key, limit, reply } => {
                let limit = limit.min(self.max_providers);
                if limit == 0 {
                    let _ = reply.send(Ok(Vec::new()));
                    return;
                }
                if let Err(e) = self.has_room(swarm) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let behaviour = swarm.behaviour_mut();
                // Records this host stores carry their provider's addresses; kad reports
                // only the peer ids.
                for record in behaviour.kad.store_mut().providers(&key) {
                    for addr in record.addresses {
                        behaviour.addresses.add(record.provider, addr);
                    }
                }
                let id = behaviour.kad.get_providers(key);
                self.pending.insert(
                    id,
                    Pending::Lookup(Lookup {
                        limit,
                        found: Vec::new(),
                        dialing: HashSet::new(),
                        done: None,
                        reply,
                    }),
                );
            }
            Command::StoredProviders { key, reply } => {
                let providers = swarm
                    .behaviour_mut()
                    .kad
                    .store_mut()
                    .providers(&key)
                    .into_iter()
                    .map(|record| record.provider)
                    .collect();
                let _ = reply.send(providers);
            }
            Command::RoutingTable { reply } => {
                let mut peers = Vec::new();
                for bucket in swarm.behaviour_mut().kad.kbuckets() {
                    peers.extend(bucket.iter().map(|entry| *entry.node.key.preimage()));
                }
                let _ = reply.send(peers);
            }
        }
    }

    pub(crate) fn on_kad_event(&mut self, swarm: &mut Swarm<Host>, event: kad::Event) {
        match event {
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => match result {
                QueryResult::Bootstrap(result) => {
                    if (step.last || result.is_err())
                        && let Some(Pending::Bootstrap(reply)) = self.pending.remove(&id)
                    {
                        let _ = reply.send(result.map(drop).map_err(|_| Error::Timeout {
                            what: "DHT bootstrap",
                            after: self.query_timeout,
                        }));
                    }
                }
                QueryResult::StartProviding(result) => {
                    if let Some(Pending::Provide(reply)) = self.pending.remove(&id) {
                        let _ = reply.send(result.map(drop).map_err(|_| Error::Timeout {
                            what: "announcing a provider record",
                            after: self.query_timeout,
                        }));
                    }
                }
                QueryResult::GetProviders(result) => {
                    let Some(Pending::Lookup(lookup)) = self.pending.get_mut(&id) else {
                        return;
                    };
                    match result {
                        Ok(GetProvidersOk::FoundProviders { providers, .. }) => {
                            for provider in providers {
                                lookup.add(swarm, provider);
                            }
                            if lookup.found.len() >= lookup.limit
                                && let Some(mut query) = swarm.behaviour_mut().kad.query_mut(&id)
                            {
                                query.finish();
                            }
                        }
                        // A timed-out lookup returns what it found.
                        Ok(GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) | Err(_) => {
                            lookup.done.get_or_insert_with(Instant::now);
                        }
                    }
                    if step.last {
                        lookup.done.get_or_insert_with(Instant::now);
                    }
                    self.complete(swarm);
                }
                _ => {}
            },
            kad::Event::RoutingUpdated {
                peer, addresses, ..
            } => {
                let book = &mut swarm.behaviour_mut().addresses;
                for addr in addresses.iter() {
                    book.add(peer, addr.clone());
                }
            }
            _ => {}
        }
    }

    /// A peer's listen addresses reach the address book, and the routing table when the
    /// peer speaks our DHT protocol.
    pub(crate) fn on_identified(
        &mut self,
        swarm: &mut Swarm<Host>,
        peer: PeerId,
        info: &identify::Info,
    ) {
        let dht_peer = info.protocols.contains(&self.protocol);
        let behaviour = swarm.behaviour_mut();
        for addr in info.listen_addrs.iter().take(MAX_IDENTIFY_ADDRS) {
            behaviour.addresses.add(peer, addr.clone());
            if dht_peer {
                behaviour.kad.add_address(&peer, addr.clone());
            }
        }
    }

    /// A connection is up: remembers the address it was dialed at and stops waiting for
    /// a dial to `peer`.
    pub(crate) fn on_connected(
        &mut self,
        swarm: &mut Swarm<Host>,
        peer: PeerId,
        endpoint: &ConnectedPoint,
    ) {
        if let ConnectedPoint::Dialer { address, .. } = endpoint {
            swarm.behaviour_mut().addresses.add(peer, address.clone());
        }
        self.dial_ended(swarm, peer);
    }

    /// A dial to `peer` ended (connected or failed).
    pub(crate) fn dial_ended(&mut self, swarm: &mut Swarm<Host>, peer: PeerId) {
        let mut any = false;
        for pending in self.pending.values_mut() {
            if let Pending::Lookup(lookup) = pending {
                any |= lookup.dialing.remove(&peer);
            }
        }
        if any {
            self.complete(swarm);
        }
    }

    /// Called every second or so: forgets callers that gave up, and stops waiting for the
    /// dials of lookups that ended more than the open timeout ago.
    pub(crate) fn on_tick(&mut self, swarm: &mut Swarm<Host>) {
        self.prune(swarm);
        let now = Instant::now();
        for pending in self.pending.values_mut() {
            if let Pending::Lookup(lookup) = pending
                && lookup
                    .done
                    .is_some_and(|done| now.duration_since(done) >= self.dial_timeout)
            {
                lookup.dialing.clear();
            }
        }
        self.complete(swarm);
    }

    /// Replies to every lookup whose query ended and whose dials are done.
    fn complete(&mut self, swarm: &mut Swarm<Host>) {
        let ready: Vec<QueryId> = self
            .pending
            .iter()
            .filter_map(|(id, pending)| match pending {
                Pending::Lookup(lookup) if lookup.done.is_some() && lookup.dialing.is_empty() => {
                    Some(*id)
                }
                _ => None,
            })
            .collect();
        for id in ready {
            if let Some(Pending::Lookup(lookup)) = self.pending.remove(&id) {
                let book = &mut swarm.behaviour_mut().addresses;
                let providers = lookup
                    .found
                    .into_iter()
                    .map(|peer| (peer, book.get(&peer)))
                    .collect();
                let _ = lookup.reply.send(Ok(providers));
            }
        }
    }
}

impl Lookup {
    /// Records a provider (up to the limit, never this host) and dials it when its address
    /// is not known yet.
    fn add(&mut self, swarm: &mut Swarm<Host>, provider: PeerId) {
        if provider == *swarm.local_peer_id()
            || self.found.len() >= self.limit
            || self.found.contains(&provider)
        {
            return;
        }
        self.found.push(provider);
        if swarm.is_connected(&provider)
            || !swarm.behaviour_mut().addresses.get(&provider).is_empty()
        {
            return;
        }
        // Kad offers the addresses that came with the provider record while the query runs.
        let opts = DialOpts::peer_id(provider)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .allocate_new_port()
            .build();
        match swarm.dial(opts) {
            Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {
                self.dialing.insert(provider);
            }
            Err(e) => tracing::debug!(%provider, %e, "cannot dial a provider"),
        }
    }
}
