//! [`Node`]: a whole node in one home directory — libp2p host, database, wallet,
//! payment-channel ledger, blockstore, piece store and sector files, peer registry and DHT
//! announcer; what an `rm` process runs, and what the end-to-end tests start several of.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rm_blockio::unixfs::{self, Preset};
use rm_blockio::{Blockstore, FileBlockstore};
use rm_client::Client;
use rm_discovery::{Announcer, AnnouncerConfig, Registry, Resolver, ResolverConfig};
use rm_network::Network;
use rm_network::libp2p::{Multiaddr, PeerId};
use rm_paych::{Ledger, PaychNode, Wallet, ledger};
use rm_provider::Provider;
use rm_store::{Db, Durability};
use rm_types::{Address, Cid};
use rm_unseal::{FileSectorStore, Imported, PieceStore, Unsealer};

use crate::metrics::{MeteredSectors, Metrics};
use crate::{Config, Error, Home};

/// Every keyspace a node's database holds.
pub fn keyspaces() -> Vec<&'static str> {
    let mut names = vec![FileBlockstore::DEFAULT_KEYSPACE, ledger::DEFAULT_KEYSPACE];
    names.extend(rm_client::KEYSPACES);
    names.extend(rm_provider::KEYSPACES);
    names.extend(rm_discovery::KEYSPACES);
    names.extend(rm_unseal::KEYSPACES);
    names.extend(rm_http::KEYSPACES);
    names
}

/// Everything [`Node::open_options`] can be told.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The libp2p host (listen addresses, limits, timeouts).
    pub network: rm_network::Config,
    /// Sector files (miner id, sector size).
    pub sectors: rm_unseal::sector::Config,
    /// DHT announcements.
    pub announcer: AnnouncerConfig,
    /// When ledger, block and sector writes reach the disk (`Machine`: fsynced before
    /// they count; deal machines follow their own `rm_fsm::Config`).
    pub durability: Durability,
    /// Cap of the unsealed cache in bytes (default 32 GiB).
    pub unsealed_cache_size: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            network: Default::default(),
            sectors: Default::default(),
            announcer: Default::default(),
            durability: Default::default(),
            unsealed_cache_size: DEFAULT_UNSEALED_CACHE_SIZE,
        }
    }
}

/// The unsealed cache's default cap: 32 GiB, one piece of the default sector size.
pub const DEFAULT_UNSEALED_CACHE_SIZE: u64 = 32 << 30;

/// One node: what an `rm` process has, in one home directory.
pub struct Node {
    /// The home directory.
    pub home: PathBuf,
    /// The node's database (every keyspace of [`keyspaces`]).
    pub db: Db,
    /// The libp2p host.
    pub network: Network,
    /// The wallet (one key, the default address).
    pub wallet: Arc<Wallet>,
    /// The default wallet address.
    pub address: Address,
    /// The payment-channel ledger.
    pub ledger: Arc<Ledger>,
    /// The node traits on ledger and wallet.
    pub paych: PaychNode,
    /// The blockstore: block data in `blocks.dat`, indexed in the database.
    pub blocks: Arc<FileBlockstore>,
    /// The local peer registry.
    pub registry: Arc<Registry>,
    /// What the node provides, announced on the DHT ([`Node::import`] adds to it).
    pub announcer: Announcer,
    /// The piece store.
    pub pieces: Arc<PieceStore>,
    /// Unsealed sector files in `sectors/`.
    pub sectors: Arc<FileSectorStore>,
    /// The unsealer: opens pieces for deals (from sector files, or through the unsealed
    /// cache in `unsealed-cache/`); its unseals are timed into [`Node::metrics`].
    pub unsealer: Arc<Unsealer>,
    /// The node's metrics ([`crate::metrics`]).
    pub metrics: Arc<Metrics>,
    /// Leftovers of imports cut short that were removed from `staging/` when the node
    /// opened.
    pub swept: u64,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("home", &self.home)
            .field("peer", &self.network.local_peer_id())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Opens (or creates) a node in `home`, listening on a free 127.0.0.1 port.
    pub async fn open(home: &Path) -> Result<Node, Error> {
        Self::open_with(home, "/ip4/127.0.0.1/tcp/0", rm_network::Config::default()).await
    }

    /// Opens (or creates) a node in `home` listening on `listen`, with network settings.
    pub async fn open_with(
        home: &Path,
        listen: &str,
        config: rm_network::Config,
    ) -> Result<Node, Error> {
        let listen: Multiaddr = listen.parse().map_err(|e| crate::ConfigError::Invalid {
            key: "listen".to_owned(),
            reason: format!("{listen:?} is not a multiaddr: {e}"),
        })?;
        let options = Options {
            network: config.with_listen_addrs([listen]),
            ..Options::default()
        };
        Self::open_options(home, options).await
    }

    /// Opens the node of an initialised `home` with its `config.toml`, listening on
    /// `listen` (nothing: a node that only dials out).
    pub async fn open_home(home: &Home, listen: &[String]) -> Result<Node, Error> {
        let config = home.config()?;
        let options = Options {
            network: config.network_config(listen)?,
            sectors: rm_unseal::sector::Config::default()
                .with_miner_id(config.storage.miner_id)
                .with_sector_size(config.sector_size()?)
                .with_direct_reads(config.storage.direct_reads),
            durability: config.durability()?,
            unsealed_cache_size: config.unsealed_cache_size()?,
            ..Options::default()
        };
        Self::open_options(home.root(), options).await
    }

    /// Opens (or creates) a node in `home` with every setting given.
    pub async fn open_options(home: &Path, options: Options) -> Result<Node, Error> {
        let layout = Home::new(home);
        std::fs::create_dir_all(home)?;
        // The database first: its lock tells a second process on the same home to stop
        // before it touches the network.
        let db = Db::open(layout.db(), &keyspaces(), &rm_store::Options::default()).map_err(
            |e| match e {
                rm_store::Error::Locked(_) => Error::InUse(home.to_path_buf()),
                other => Error::Db(other),
            },
        )?;
        // The home is ours now: whatever an import left in staging/ is a leftover.
        let swept = sweep(&layout.staging())?;
        if swept > 0 {
            tracing::info!(
                entries = swept,
                "removed leftovers of interrupted imports from staging/"
            );
        }
        let keypair = rm_network::keys::load_or_generate(&layout.libp2p_key())?;
        let network = Network::new(keypair, options.network).await?;
        let wallet = Wallet::open(layout.wallet())?;
        let address = match wallet.default_address() {
            Some(a) => a,
            None => wallet.new_key()?,
        };
        let wallet = Arc::new(wallet);
        let ledger = Arc::new(
            Ledger::open(db.keyspace(ledger::DEFAULT_KEYSPACE)?)
                .with_durability(options.durability),
        );
        let paych = PaychNode::new(Arc::clone(&ledger), Arc::clone(&wallet));
        let blocks = Arc::new(
            FileBlockstore::open(
                layout.blocks(),
                db.keyspace(FileBlockstore::DEFAULT_KEYSPACE)?,
            )?
            .with_sync(options.durability.sync()),
        );
        let registry = Arc::new(Registry::open(
            db.keyspace(rm_discovery::registry::DEFAULT_KEYSPACE)?,
        ));
        let announcer = Announcer::open(
            network.clone(),
            db.keyspace(rm_discovery::announcer::DEFAULT_KEYSPACE)?,
            options.announcer,
        )?;
        let pieces = Arc::new(PieceStore::open(&db)?);
        let sectors = Arc::new(FileSectorStore::open(
            layout.sectors(),
            db.keyspace(FileSectorStore::DEFAULT_KEYSPACE)?,
            options.sectors,
        )?);
        let metrics = Arc::new(Metrics::new());
        metrics.watch_network(network.clone());
        let access: Arc<dyn rm_unseal::SectorAccess> =
            Arc::new(MeteredSectors::new(sectors.clone(), Arc::clone(&metrics)));
        let cache =
            rm_unseal::UnsealedCache::open(layout.unsealed_cache(), options.unsealed_cache_size)?;
        let unsealer = Arc::new(Unsealer::with_cache(
            Arc::clone(&pieces),
            access,
            db.keyspace(rm_unseal::unseal::LOADED_KEYSPACE)?,
            Some(cache),
        ));
        Ok(Node {
            home: home.to_path_buf(),
            db,
            network,
            wallet,
            address,
            ledger,
            paych,
            blocks,
            registry,
            announcer,
            pieces,
            sectors,
            unsealer,
            metrics,
            swept,
        })
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.network.local_peer_id()
    }

    /// The addresses the node listens on.
    pub async fn addrs(&self) -> Result<Vec<Multiaddr>, Error> {
        Ok(self.network.listen_addrs().await?)
    }

    /// Imports a file as UnixFS into a piece in a sector, as a storage provider holds
    /// deal data, and provides the payload on the DHT; returns the payload root. Deals
    /// unseal it before serving it.
    pub fn import(&self, path: &Path, preset: Preset) -> Result<Cid, Error> {
        Ok(self.import_piece(path, preset)?.payload_cid)
    }

    /// Like [`Node::import`], returning what the import made (piece CID, sizes, sector).
    ///
    /// One import of a given file or directory runs at a time, in this process or any
    /// other: a second waits for the first (an exclusive `flock` on the input), then
    /// finds the piece stored and writes nothing.
    pub fn import_piece(&self, path: &Path, preset: Preset) -> Result<Imported, Error> {
        self.import_piece_with_progress(path, preset, &mut |_| {})
    }

    /// Imports a CAR (v1) file as it is into a piece and provides its root; one import
    /// of a given CAR at a time, as [`Node::import_piece`].
    pub fn import_car(&self, path: &Path) -> Result<Imported, Error> {
        self.import_car_with_progress(path, &mut |_| {})
    }

    /// Imports a file as UnixFS straight into the blockstore (no piece) and provides it on
    /// the DHT; returns the root.
    pub fn import_blocks(&self, path: &Path, preset: Preset) -> Result<Cid, Error> {
        let root = unixfs::import_path(self.blocks.as_ref(), preset, path)?.root;
        self.announcer.provide(&root)?;
        Ok(root)
    }

    /// A resolver over this node's registry and the DHT.
    pub fn resolver(&self, config: ResolverConfig) -> Resolver {
        Resolver::new(config)
            .with_registry(Arc::clone(&self.registry))
            .with_network(self.network.clone())
    }

    /// A provider on this node; its deals and queries are counted in [`Node::metrics`].
    pub async fn provider(
        &self,
        config: rm_provider::Config,
    ) -> Result<Provider<PaychNode>, Error> {
        let blocks: Arc<dyn Blockstore> = self.blocks.clone();
        let provider = Provider::with_pieces(
            self.network.clone(),
            self.paych.clone(),
            blocks,
            Arc::clone(&self.unsealer),
            &self.db,
            config,
        )
        .await?;
        self.metrics.observe_provider(&provider);
        Ok(provider)
    }

    /// A client on this node, paying from the default address; its deals are counted in
    /// [`Node::metrics`].
    pub async fn client(&self, config: rm_client::Config) -> Result<Client<PaychNode>, Error> {
        let blocks: Arc<dyn Blockstore> = self.blocks.clone();
        let client = Client::new(
            self.network.clone(),
            self.paych.clone(),
            blocks,
            &self.db,
            self.address.clone(),
            config,
        )
        .await?;
        self.metrics.observe_client(&client);
        Ok(client)
    }

    /// Serves [`Node::metrics`] as `GET /metrics` on `addr` ([`crate::MetricsServer`]).
    pub async fn serve_metrics(
        &self,
        addr: std::net::SocketAddr,
    ) -> Result<crate::MetricsServer, Error> {
        Ok(crate::MetricsServer::bind(addr, Arc::clone(&self.metrics)).await?)
    }

    /// Exports the file under `root` from the blockstore into memory (small files; stream
    /// larger ones with `rm_blockio::unixfs::export_file`).
    pub fn export(&self, root: &Cid) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        unixfs::export_file(self.blocks.as_ref(), root, &mut out)?;
        Ok(out)
    }

    /// Dials the DHT bootstrap peers of `config` and starts a bootstrap; returns how many
    /// peers were added. A peer that cannot be reached is logged, not an error.
    pub async fn join_dht(&self, config: &Config) -> Result<usize, Error> {
        let mut joined = 0;
        for (peer, addr) in config.bootstrap_peers()? {
            match self.network.add_dht_peer(peer, addr).await {
                Ok(()) => joined += 1,
                Err(e) => tracing::warn!(peer = %peer, error = %e, "bootstrap peer not added"),
            }
        }
        if joined > 0
            && let Err(e) = self.network.bootstrap().await
        {
            tracing::warn!(error = %e, "DHT bootstrap failed");
        }
        Ok(joined)
    }

    /// Every client deal stored, read without starting the client: nothing is resumed
    /// or dialled.
    pub async fn client_deals(&self) -> Result<Vec<(u64, rm_client::ClientState)>, Error> {
        let keyspace = self.db.keyspace(rm_client::DEALS_KEYSPACE)?;
        let journal = rm_fsm::Journal::<_, u64>::open(
            rm_client::fsm::table().clone(),
            keyspace,
            rm_fsm::Config::default(),
        );
        let deals = journal.list(|_, _| true);
        journal.close().await;
        Ok(deals?)
    }

    /// Every provider deal stored, read without starting the provider.
    pub async fn provider_deals(
        &self,
    ) -> Result<Vec<(rm_provider::DealKey, rm_provider::ProviderState)>, Error> {
        let keyspace = self.db.keyspace(rm_provider::DEALS_KEYSPACE)?;
        let journal = rm_fsm::Journal::<_, rm_provider::DealKey>::open(
            rm_provider::fsm::table().clone(),
            keyspace,
            rm_fsm::Config::default(),
        );
        let deals = journal.list(|_, _| true);
        journal.close().await;
        Ok(deals?)
    }
}

/// Holds an exclusive advisory lock on the file or directory at `path` until dropped,
/// waiting for whoever holds it (another import of the same input).
pub(crate) fn lock_input(path: &Path) -> Result<std::fs::File, Error> {
    let file = std::fs::File::open(path)?;
    file.lock()?;
    Ok(file)
}

/// Removes everything in `dir` (created if missing); returns how many entries there were.
fn sweep(dir: &Path) -> Result<u64, Error> {
    std::fs::create_dir_all(dir)?;
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
        removed += 1;
    }
    Ok(removed)
}
