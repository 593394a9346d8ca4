//! [`Config`]: the host's listen addresses, protocol versions, limits and timeouts.

use std::time::Duration;

use libp2p::{Multiaddr, StreamProtocol};

use crate::{BehaviourConfig, query::QueryProtocol};

/// 1 MiB.
const MIB: usize = 1 << 20;

/// The default Kademlia protocol id ([`Config::dht_protocol`]).
pub const DEFAULT_DHT_PROTOCOL: &str = "/ipfs/kad/1.0.0";

/// Host configuration. Every limit has a documented default ([`Config::default`]); tests
/// and tools change fields directly or with the `with_*` methods.
///
/// The fields from `serve_query_protocols` to `handler_timeout` are those of the
/// retrieval behaviour the host runs ([`Config::behaviour`], [`crate::BehaviourConfig`]);
/// the others are the host's own (listening, connections, ping, identify, the DHT).
///
/// ```
/// use std::time::Duration;
/// use rm_network::{Config, QueryProtocol};
///
/// let config = Config::default()
///     .with_listen_addrs(["/ip4/127.0.0.1/tcp/0".parse().unwrap()])
///     .with_serve_query_protocols([QueryProtocol::V1])
///     .with_read_timeout(Duration::from_secs(5));
/// assert_eq!(config.max_block_size, 2 << 20);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Addresses to listen on. Default: none (a client-only host that only dials out).
    pub listen_addrs: Vec<Multiaddr>,
    /// Query protocol versions this host answers. Default: `[V1, V0]` (both).
    pub serve_query_protocols: Vec<QueryProtocol>,
    /// Query protocol versions this host tries, in order, when it queries. Default:
    /// `[V1, V0]` (1.0.0 first, 0.0.1 when the peer does not support 1.0.0).
    pub query_protocols: Vec<QueryProtocol>,
    /// Whether this host accepts inbound deal streams. Default: `true`.
    pub serve_deals: bool,
    /// Largest `DealResponse` accepted or sent, in bytes of DAG-CBOR. Default: 8 MiB
    /// (a response carries up to ~4 MiB of blocks; twice that leaves headroom).
    pub max_message_size: usize,
    /// Largest `QueryResponse`, `DealPayment` and other deal-stream control message.
    /// Default: 256 KiB.
    pub max_control_message_size: usize,
    /// Largest inbound `Query`. Default: 8 KiB (every query in progress may hold this much).
    pub max_query_size: usize,
    /// Largest `DealProposal`. Default: 16 KiB. Kept small because a proposal's selector is
    /// decoded into a data-model tree several times larger than its bytes, and a provider
    /// holds one per open deal stream; real proposals are a few hundred bytes.
    pub max_proposal_size: usize,
    /// Largest block data in a `DealResponse`. Default: 2 MiB.
    pub max_block_size: usize,
    /// Most blocks in one `DealResponse`. Default: 8192.
    pub max_blocks_per_response: usize,
    /// Most inbound deal streams open at once from one peer. Default: 8.
    pub max_inbound_deals_per_peer: usize,
    /// Most inbound deal streams open at once in total. Default: 128.
    pub max_inbound_deals: usize,
    /// Most inbound deal streams open at once from the peers of one remote IP address
    /// (peer ids cost nothing; with this, holding every slot takes four addresses).
    /// Default: 32.
    pub max_inbound_deals_per_ip: usize,
    /// Most inbound queries in progress at once from one peer (separate from the deal
    /// streams' limits; a query over it is refused with a clean close). Default: 32.
    pub max_inbound_queries_per_peer: usize,
    /// Most inbound queries in progress at once from the peers of one remote IP address.
    /// Default: 256 (half the total).
    pub max_inbound_queries_per_ip: usize,
    /// Most inbound queries in progress at once in total. Default: 512.
    pub max_inbound_queries: usize,
    /// Inbound queries and deal streams admitted but not yet handed on to the delegate;
    /// beyond this a new one is refused (a query cleanly, a deal stream by a reset).
    /// Default: 64.
    pub inbound_queue: usize,
    /// Longest a read may go without progress. Default: 30 s. On a deal stream a read
    /// fails when the peer sends nothing for this long, or when one message takes more than
    /// ten times this long in all (so a slow link can carry large responses, but a peer
    /// trickling bytes cannot hold a stream forever); queries use it for the whole message.
    /// [`crate::DealStream::set_read_timeout`] changes it per stream (e.g. while a
    /// provider unseals).
    pub read_timeout: Duration,
    /// Longest a write may go without progress (a `DealResponse` may take ten times this
    /// in all; other messages this long in all). Default: 30 s.
    pub write_timeout: Duration,
    /// Longest time to open a stream, including a dial if not connected. Default: 10 s.
    pub open_timeout: Duration,
    /// How long the delegate has to answer a query (and to take an inbound deal stream
    /// off the delegate channel). Default: 10 s.
    pub handler_timeout: Duration,
    /// Longest a provider waits for a whole `DealProposal`. Default: 20 s.
    pub proposal_timeout: Duration,
    /// Longest one whole control message (payment, cancel) may take, from its first byte
    /// (waiting for it to start is bounded by the read timeout: the payment timeout while
    /// a payment is due). Default: 60 s.
    pub control_message_timeout: Duration,
    /// A connection with no open stream is closed after this long. Open streams (a deal
    /// in progress) keep the connection alive however long they last. Default: 60 s.
    pub idle_timeout: Duration,
    /// How often each connection is pinged (`/ipfs/ping/1.0.0`), or never (`None`).
    /// Inbound pings are answered either way, also when the peer does not answer ours; a
    /// failed ping never closes a connection. Default: 15 s.
    pub ping_interval: Option<Duration>,
    /// How long a ping (opening its stream, then the echo) may take. Default: 20 s.
    pub ping_timeout: Duration,
    /// Most established inbound connections in total (libp2p's connection-limits).
    /// Default: 512.
    pub max_connections: usize,
    /// Most inbound connections being set up (handshakes) at once. Default: 128.
    pub max_pending_connections: usize,
    /// Most established connections with one peer id. Default: 4.
    pub max_connections_per_peer: usize,
    /// Most established inbound connections from one IP address (peer ids are free to
    /// make, addresses are not). Default: 64.
    pub max_connections_per_ip: usize,
    /// New connections are refused while the process uses more memory than this
    /// (libp2p's memory-connection-limits; its measure is the process's physical memory,
    /// refreshed at most every 100 ms). Default: 2 GiB.
    pub max_memory_bytes: usize,
    /// Most inbound streams negotiating their protocol at once on one connection (the
    /// swarm's limit; beyond it a new stream is reset). Default: 256.
    pub max_negotiating_inbound_streams: usize,
    /// Peers whose addresses are remembered (least recently used are forgotten; at most
    /// 10 addresses per peer). Default: 1024.
    pub address_book_size: usize,
    /// The identify agent version. Default: `rm/<crate version>`.
    pub agent_version: String,
    /// The Kademlia DHT protocol id. Default: `/ipfs/kad/1.0.0` (the IPFS DHT's). Only peers
    /// speaking the same id share provider records. A host with listen addresses runs the
    /// DHT in server mode (answers lookups, stores other peers' provider records); a
    /// client-only host runs it in client mode.
    pub dht_protocol: StreamProtocol,
    /// Longest a DHT query (bootstrap, announcing a provider record, a provider lookup) may
    /// run. Default: 30 s.
    pub dht_query_timeout: Duration,
    /// How long this host keeps provider records that other peers put on it. Default: 48 h
    /// (the IPFS DHT's). The announcer above (rm-discovery) re-announces well before this.
    pub dht_provider_record_ttl: Duration,
    /// Most keys with provider records in the host's store, its own and other peers'
    /// (announcing beyond it fails; further records from peers are dropped).
    /// Default: 65,536.
    pub dht_max_provider_keys: usize,
    /// Most providers kept per key, and most a lookup returns. Default: 20 (Kademlia's K).
    pub dht_max_providers_per_key: usize,
    /// Most DHT operations (bootstraps, announces, lookups) in progress at once; beyond it a
    /// call fails at once with [`crate::Error::Dht`]. Default: 64.
    pub dht_max_queries: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addrs: Vec::new(),
            serve_query_protocols: vec![QueryProtocol::V1, QueryProtocol::V0],
            query_protocols: vec![QueryProtocol::V1, QueryProtocol::V0],
            serve_deals: true,
            max_message_size: 8 * MIB,
            max_control_message_size: 256 * 1024,
            max_query_size: 8 * 1024,
            max_proposal_size: 16 * 1024,
            max_block_size: 2 * MIB,
            max_blocks_per_response: 8192,
            max_inbound_deals_per_peer: 8,
            max_inbound_deals_per_ip: 32,
            max_inbound_queries_per_ip: 256,
            max_inbound_deals: 128,
            max_inbound_queries_per_peer: 32,
            max_inbound_queries: 512,
            inbound_queue: 64,
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            open_timeout: Duration::from_secs(10),
            handler_timeout: Duration::from_secs(10),
            proposal_timeout: Duration::from_secs(20),
            control_message_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            ping_interval: Some(Duration::from_secs(15)),
            ping_timeout: Duration::from_secs(20),
            max_connections: 512,
            max_pending_connections: 128,
            max_connections_per_peer: 4,
            max_connections_per_ip: 64,
            max_memory_bytes: 2 << 30,
            max_negotiating_inbound_streams: 256,
            address_book_size: 1024,
            agent_version: concat!("rm/", env!("CARGO_PKG_VERSION")).to_owned(),
            dht_protocol: StreamProtocol::new(DEFAULT_DHT_PROTOCOL),
            dht_query_timeout: Duration::from_secs(30),
            dht_provider_record_ttl: Duration::from_secs(48 * 60 * 60),
            dht_max_provider_keys: 65_536,
            dht_max_providers_per_key: 20,
            dht_max_queries: 64,
        }
    }
}

impl Config {
    /// The settings of the retrieval behaviour the host runs.
    pub fn behaviour(&self) -> BehaviourConfig {
        let mut b = BehaviourConfig::default()
            .with_serve_query_protocols(self.serve_query_protocols.iter().copied())
            .with_query_protocols(self.query_protocols.iter().copied())
            .with_serve_deals(self.serve_deals)
            .with_read_timeout(self.read_timeout);
        b.max_message_size = self.max_message_size;
        b.max_control_message_size = self.max_control_message_size;
        b.max_query_size = self.max_query_size;
        b.max_proposal_size = self.max_proposal_size;
        b.max_block_size = self.max_block_size;
        b.max_blocks_per_response = self.max_blocks_per_response;
        b.max_inbound_deals_per_peer = self.max_inbound_deals_per_peer;
        b.max_inbound_deals = self.max_inbound_deals;
        b.max_inbound_deals_per_ip = self.max_inbound_deals_per_ip;
        b.max_inbound_queries_per_ip = self.max_inbound_queries_per_ip;
        b.max_inbound_queries_per_peer = self.max_inbound_queries_per_peer;
        b.max_inbound_queries = self.max_inbound_queries;
        b.inbound_queue = self.inbound_queue;
        b.write_timeout = self.write_timeout;
        b.open_timeout = self.open_timeout;
        b.handler_timeout = self.handler_timeout;
        b.proposal_timeout = self.proposal_timeout;
        b.control_message_timeout = self.control_message_timeout;
        b
    }

    /// Sets the listen addresses.
    pub fn with_listen_addrs(mut self, addrs: impl IntoIterator<Item = Multiaddr>) -> Self {
        self.listen_addrs = addrs.into_iter().collect();
        self
    }

    /// Sets the query versions this host answers.
    pub fn with_serve_query_protocols(
        mut self,
        protocols: impl IntoIterator<Item = QueryProtocol>,
    ) -> Self {
        self.serve_query_protocols = protocols.into_iter().collect();
        self
    }

    /// Sets the query versions this host tries, in order.
    pub fn with_query_protocols(
        mut self,
        protocols: impl IntoIterator<Item = QueryProtocol>,
    ) -> Self {
        self.query_protocols = protocols.into_iter().collect();
        self
    }

    /// Sets [`Config::read_timeout`].
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Sets [`Config::dht_query_timeout`].
    pub fn with_dht_query_timeout(mut self, timeout: Duration) -> Self {
        self.dht_query_timeout = timeout;
        self
    }

    /// Sets [`Config::dht_provider_record_ttl`].
    pub fn with_dht_provider_record_ttl(mut self, ttl: Duration) -> Self {
        self.dht_provider_record_ttl = ttl;
        self
    }

    /// Sets [`Config::idle_timeout`].
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }
}
