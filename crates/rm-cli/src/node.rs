//! A whole node in one home directory: libp2p host, RocksDB, wallet, payment-channel
//! ledger, blockstore, piece store and sector files, peer registry and DHT announcer — what
//! an `rm` process runs, and what the end-to-end tests start several of.
//!
//! ```text
//! <home>/config.toml   settings (crate::config)
//! <home>/libp2p.key    the node's libp2p identity (protobuf ed25519 key, 0600)
//! <home>/wallet/       secp256k1 wallet keys (0600)
//! <home>/db/           RocksDB: deals, ledger, block index, pieces, registry (column_families())
//! <home>/blocks.dat    block data, appended; indexed in the database
//! <home>/sectors/      unsealed sector files (sectors/unsealed/s-t0<miner>-<n>)
//! <home>/staging/      CARs being imported (removed when done)
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rm_blockio::unixfs::{self, Preset};
use rm_blockio::{Blockstore, FileBlockstore};
use rm_client::Client;
use rm_discovery::{Announcer, AnnouncerConfig, Registry, Resolver, ResolverConfig};
use rm_fsm::rocksdb::DB;
use rm_network::Network;
use rm_network::libp2p::{Multiaddr, PeerId};
use rm_paych::{Ledger, PaychNode, Wallet, ledger};
use rm_provider::Provider;
use rm_types::{Address, Cid};
use rm_unseal::{FileSectorStore, Imported, PieceStore, Unsealer};

/// Errors opening or using a node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// File system.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Database.
    #[error("database: {0}")]
    Store(#[from] rm_fsm::StoreError),
    /// Network.
    #[error("network: {0}")]
    Network(#[from] rm_network::Error),
    /// Wallet.
    #[error("wallet: {0}")]
    Wallet(#[from] rm_paych::WalletError),
    /// Ledger.
    #[error("ledger: {0}")]
    Ledger(#[from] rm_paych::LedgerError),
    /// Blockstore.
    #[error("blockstore: {0}")]
    Blocks(#[from] rm_blockio::blockstore::Error),
    /// UnixFS import.
    #[error("import: {0}")]
    Import(#[from] unixfs::Error),
    /// Client.
    #[error("client: {0}")]
    Client(#[from] rm_client::Error),
    /// Provider.
    #[error("provider: {0}")]
    Provider(#[from] rm_provider::Error),
    /// Discovery (registry, announcer).
    #[error("discovery: {0}")]
    Discovery(#[from] rm_discovery::Error),
    /// Pieces and sectors.
    #[error("pieces: {0}")]
    Pieces(#[from] rm_unseal::Error),
}

/// Every column family a node's database holds.
pub fn column_families() -> Vec<&'static str> {
    let mut cfs = vec![FileBlockstore::DEFAULT_CF, ledger::DEFAULT_COLUMN_FAMILY];
    cfs.extend(rm_client::COLUMN_FAMILIES);
    cfs.extend(rm_provider::COLUMN_FAMILIES);
    cfs.extend(rm_discovery::COLUMN_FAMILIES);
    cfs.extend(rm_unseal::COLUMN_FAMILIES);
    cfs
}

/// Everything [`Node::open_options`] can be told.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Options {
    /// The libp2p host (listen addresses, limits, timeouts).
    pub network: rm_network::Config,
    /// Sector files (miner id, sector size).
    pub sectors: rm_unseal::sector::Config,
    /// DHT announcements.
    pub announcer: AnnouncerConfig,
    /// fsync every payment-channel ledger write and every block write before it is
    /// counted (durability "machine").
    pub sync_writes: bool,
}

/// One node: what an `rm` process has, in one home directory.
pub struct Node {
    /// The home directory.
    pub home: PathBuf,
    /// The node's database (every column family of [`column_families`]).
    pub db: Arc<DB>,
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
    /// The unsealing loader (pieces into [`Node::blocks`]).
    pub unsealer: Arc<Unsealer>,
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
        let listen: Multiaddr = listen
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
        let options = Options {
            network: config.with_listen_addrs([listen]),
            ..Options::default()
        };
        Self::open_options(home, options).await
    }

    /// Opens (or creates) a node in `home` with every setting given.
    pub async fn open_options(home: &Path, options: Options) -> Result<Node, Error> {
        std::fs::create_dir_all(home)?;
        // The database first: its lock tells a second process on the same home to stop
        // before it touches the network.
        let db = rm_fsm::open_db(home.join("db"), &column_families())?;
        let keypair = rm_network::keys::load_or_generate(&home.join("libp2p.key"))?;
        let network = Network::new(keypair, options.network).await?;
        let wallet = Wallet::open(home.join("wallet"))?;
        let address = match wallet.default_address() {
            Some(a) => a,
            None => wallet.new_key()?,
        };
        let wallet = Arc::new(wallet);
        let ledger = Arc::new(
            Ledger::open(Arc::clone(&db), ledger::DEFAULT_COLUMN_FAMILY)?
                .with_sync_writes(options.sync_writes),
        );
        let paych = PaychNode::new(Arc::clone(&ledger), Arc::clone(&wallet));
        let blocks = Arc::new(
            FileBlockstore::open(
                home.join("blocks.dat"),
                Arc::clone(&db),
                FileBlockstore::DEFAULT_CF,
            )?
            .with_sync(options.sync_writes),
        );
        let registry = Arc::new(Registry::open(
            Arc::clone(&db),
            rm_discovery::registry::DEFAULT_CF,
        )?);
        let announcer = Announcer::open(
            network.clone(),
            Arc::clone(&db),
            rm_discovery::announcer::DEFAULT_CF,
            options.announcer,
        )?;
        let pieces = Arc::new(PieceStore::open(Arc::clone(&db))?);
        let sectors = Arc::new(FileSectorStore::open(
            home.join("sectors"),
            Arc::clone(&db),
            FileSectorStore::DEFAULT_CF,
            options.sectors,
        )?);
        let access: Arc<dyn rm_unseal::SectorAccess> = sectors.clone();
        let unsealer = Arc::new(Unsealer::new(
            Arc::clone(&pieces),
            access,
            Arc::clone(&db),
            rm_unseal::unseal::LOADED_CF,
        )?);
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
    pub fn import_piece(&self, path: &Path, preset: Preset) -> Result<Imported, Error> {
        let imported = rm_unseal::import::import_path(
            &self.pieces,
            &self.sectors,
            path,
            preset,
            &self.home.join("staging"),
        )?;
        self.announcer.provide(&imported.payload_cid)?;
        Ok(imported)
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

    /// A provider on this node.
    pub async fn provider(
        &self,
        config: rm_provider::Config,
    ) -> Result<Provider<PaychNode>, Error> {
        let blocks: Arc<dyn Blockstore> = self.blocks.clone();
        Ok(Provider::with_pieces(
            self.network.clone(),
            self.paych.clone(),
            blocks,
            Arc::clone(&self.unsealer),
            Arc::clone(&self.db),
            config,
        )
        .await?)
    }

    /// A client on this node, paying from the default address.
    pub async fn client(&self, config: rm_client::Config) -> Result<Client<PaychNode>, Error> {
        let blocks: Arc<dyn Blockstore> = self.blocks.clone();
        Ok(Client::new(
            self.network.clone(),
            self.paych.clone(),
            blocks,
            Arc::clone(&self.db),
            self.address.clone(),
            config,
        )
        .await?)
    }

    /// Exports the file under `root` from the blockstore into memory (small files; stream
    /// larger ones with `rm_blockio::unixfs::export_file`).
    pub fn export(&self, root: &Cid) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        unixfs::export_file(self.blocks.as_ref(), root, &mut out)?;
        Ok(out)
    }
}
