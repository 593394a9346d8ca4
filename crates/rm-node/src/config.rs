//! `config.toml`: a node's settings, every one optional.
//!
//! [`Home::init`](crate::Home::init) (`rm init`) writes [`DEFAULT_TOML`] (every key with
//! its default and what it does); a key left out takes its default, an unknown key is an
//! error (a typo must not be ignored).

use std::path::Path;
use std::time::Duration;

use rm_network::libp2p::Multiaddr;
use rm_network::libp2p::multiaddr::Protocol;
use serde::{Deserialize, Serialize};

use crate::ConfigError;

type Result<T> = std::result::Result<T, ConfigError>;

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// The file `rm init` writes: the defaults, documented.
pub const DEFAULT_TOML: &str = r#"# rm node settings. Every key is optional: a key left out takes the value shown here.

[network]
# Where `rm serve` listens (libp2p multiaddrs). Port 0 picks a free port.
listen = ["/ip4/0.0.0.0/tcp/24001"]
# Peers to join the DHT through: multiaddrs ending in /p2p/<peer id>.
bootstrap = []
# Deal streams served at once, in all and per client peer.
max_inbound_deals = 64
max_inbound_deals_per_peer = 8
# ... and from the peers of one IP address (peer ids cost nothing, addresses do).
max_inbound_deals_per_ip = 16

[provider]
# Bytes of block data per second sent on one deal; 0 = no limit.
max_bytes_per_second = 0
# How long a deal waits for a payment, and for a client that lost its stream to resume.
payment_timeout_secs = 600
resume_window_secs = 600

[client]
# How many times in a row a lost deal stream is re-established before the deal fails.
max_reconnects = 5
# The most a retrieval may cost (attoFIL, or e.g. "0.01 FIL"): terms over a cap are
# refused before any payment channel is funded. `rm retrieve --max-price, --max-unseal-price,
# --max-total` override them for one retrieval.
max_price_per_byte = "1000000"
max_unseal_price = "0.001 FIL"
max_total = "0.01 FIL"

[storage]
# When deal state, payments and retrieved blocks reach the disk: "process" (no fsync:
# survives a crash of rm, not of the machine; fastest) or "machine" (fsync, grouped for
# deal state: survives power loss).
durability = "process"
# Finished deals (both sides) are deleted this many days after they ended; their numbers
# are kept as totals (`rm deals` shows them). 0 keeps every deal forever.
deal_retention_days = 30
# Unsealed sector files: the miner actor id in their names, and the largest sector.
miner_id = 1000
sector_size = "32GiB"
# Deals read blocks straight from the sector files. false: each piece is first copied
# into the unsealed cache (one unseal per piece, served while it fills), as for sealed
# sectors; for sector files on slow storage.
direct_reads = true
# Most bytes the unsealed cache (<home>/unsealed-cache) holds; least recently used pieces
# go first, never one a deal is reading.
unsealed_cache_size = "32GiB"

[metrics]
# Where `rm serve` serves Prometheus metrics (GET /metrics), HOST:PORT; "" serves none.
# Loopback by default: the metrics name peers and payloads, keep them off the network.
listen = "127.0.0.1:24090"

[import]
# UnixFS layout of `rm import`: "v1-1mib" (CIDv1, raw leaves, 1 MiB chunks, 1024 links),
# "kubo-v1" (CIDv1, raw leaves, 256 KiB chunks) or "kubo-v0" (CIDv0, 256 KiB chunks).
preset = "v1-1mib"
"#;

/// A node's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The libp2p host.
    pub network: Network,
    /// Serving deals.
    pub provider: Provider,
    /// Making deals.
    pub client: Client,
    /// Durability and sectors.
    pub storage: Storage,
    /// `rm import`.
    pub import: Import,
    /// Prometheus metrics.
    pub metrics: MetricsSettings,
}

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    /// Listen multiaddrs of `rm serve`.
    pub listen: Vec<String>,
    /// DHT bootstrap peers (multiaddrs with `/p2p/<peer>`).
    pub bootstrap: Vec<String>,
    /// Deal streams served at once.
    pub max_inbound_deals: usize,
    /// Deal streams served at once per client peer.
    pub max_inbound_deals_per_peer: usize,
    /// Deal streams served at once to the peers of one IP address.
    pub max_inbound_deals_per_ip: usize,
}

/// `[provider]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Provider {
    /// Block bytes per second per deal; 0 = unlimited.
    pub max_bytes_per_second: u64,
    /// Seconds a deal waits for a payment.
    pub payment_timeout_secs: u64,
    /// Seconds a deal waits for its client to resume a lost stream.
    pub resume_window_secs: u64,
}

/// `[client]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Client {
    /// Reconnects in a row before a deal fails.
    pub max_reconnects: u32,
    /// The highest price per byte accepted (an amount: attoFIL or "… FIL").
    pub max_price_per_byte: String,
    /// The highest unseal price accepted.
    pub max_unseal_price: String,
    /// The most one retrieval may cost in all.
    pub max_total: String,
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// `"process"` or `"machine"`.
    pub durability: String,
    /// Days finished deals are kept; 0 = forever.
    pub deal_retention_days: u64,
    /// Miner actor id in sector file names.
    pub miner_id: u64,
    /// Largest sector, e.g. `"32GiB"`.
    pub sector_size: String,
    /// Deals read blocks straight from sector files.
    pub direct_reads: bool,
    /// Cap of the unsealed cache, e.g. `"32GiB"`.
    pub unsealed_cache_size: String,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// `HOST:PORT` of `GET /metrics`; empty: none.
    pub listen: String,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_METRICS_LISTEN.into(),
        }
    }
}

/// Where `rm serve` serves metrics unless told otherwise.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:24090";

/// `[import]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Import {
    /// `"v1-1mib"`, `"kubo-v1"` or `"kubo-v0"`.
    pub preset: String,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            listen: vec!["/ip4/0.0.0.0/tcp/24001".into()],
            bootstrap: Vec::new(),
            max_inbound_deals: 64,
            max_inbound_deals_per_peer: 8,
            max_inbound_deals_per_ip: 16,
        }
    }
}

impl Default for Provider {
    fn default() -> Self {
        Self {
            max_bytes_per_second: 0,
            payment_timeout_secs: 600,
            resume_window_secs: 600,
        }
    }
}

impl Default for Client {
    fn default() -> Self {
        Self {
            max_reconnects: 5,
            max_price_per_byte: "1000000".into(),
            max_unseal_price: "0.001 FIL".into(),
            max_total: "0.01 FIL".into(),
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            durability: "process".into(),
            deal_retention_days: 30,
            miner_id: 1000,
            sector_size: "32GiB".into(),
            direct_reads: true,
            unsealed_cache_size: "32GiB".into(),
        }
    }
}

impl Default for Import {
    fn default() -> Self {
        Self {
            preset: "v1-1mib".into(),
        }
    }
}

impl Config {
    /// Reads and checks `config.toml` at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    /// Checks the values that have a fixed set of choices or a format.
    pub fn check(&self) -> Result<()> {
        self.durability()?;
        self.sector_size()?;
        self.unsealed_cache_size()?;
        preset(&self.import.preset)?;
        self.metrics_listen()?;
        for addr in &self.network.listen {
            parse_addr("network.listen", addr)?;
        }
        self.bootstrap_peers()?;
        self.client_caps()?;
        Ok(())
    }

    /// Where to serve metrics (`None`: `metrics.listen` is empty).
    pub fn metrics_listen(&self) -> Result<Option<std::net::SocketAddr>> {
        parse_listen("metrics.listen", &self.metrics.listen)
    }

    /// Whether writes are fsynced: `"process"` or `"machine"`.
    pub fn durability(&self) -> Result<rm_store::Durability> {
        match self.storage.durability.as_str() {
            "process" => Ok(rm_store::Durability::Process),
            "machine" => Ok(rm_store::Durability::Machine),
            other => Err(invalid(
                "storage.durability",
                format!("must be \"process\" or \"machine\", not {other:?}"),
            )),
        }
    }

    /// The sector size.
    pub fn sector_size(&self) -> Result<rm_unseal::PaddedPieceSize> {
        let bytes = parse_size(&self.storage.sector_size)
            .map_err(|reason| invalid("storage.sector_size", reason))?;
        rm_unseal::PaddedPieceSize::new(bytes)
            .map_err(|e| invalid("storage.sector_size", e.to_string()))
    }

    /// The unsealed cache's cap in bytes.
    pub fn unsealed_cache_size(&self) -> Result<u64> {
        parse_size(&self.storage.unsealed_cache_size)
            .map_err(|reason| invalid("storage.unsealed_cache_size", reason))
    }

    /// The DHT bootstrap peers: each address must end in `/p2p/<peer id>`.
    pub fn bootstrap_peers(&self) -> Result<Vec<(rm_network::libp2p::PeerId, Multiaddr)>> {
        let mut peers = Vec::new();
        for text in &self.network.bootstrap {
            let addr = parse_addr("network.bootstrap", text)?;
            let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                return Err(invalid(
                    "network.bootstrap",
                    format!("{text:?} needs the peer id: /ip4/…/tcp/…/p2p/<peer id>"),
                ));
            };
            peers.push((peer, addr));
        }
        Ok(peers)
    }

    /// The network settings for `listen` (none for a node that only dials out).
    pub fn network_config(&self, listen: &[String]) -> Result<rm_network::Config> {
        let addrs = listen
            .iter()
            .map(|a| parse_addr("listen", a))
            .collect::<Result<Vec<_>>>()?;
        let mut config = rm_network::Config::default().with_listen_addrs(addrs);
        config.max_inbound_deals = self.network.max_inbound_deals;
        config.max_inbound_deals_per_peer = self.network.max_inbound_deals_per_peer;
        config.max_inbound_deals_per_ip = self.network.max_inbound_deals_per_ip;
        Ok(config)
    }

    /// The deal machines' settings: group commit when writes must reach the disk.
    pub fn fsm(&self) -> Result<rm_fsm::Config> {
        let durability = match self.durability()? {
            rm_store::Durability::Process => rm_fsm::Durability::NoSync,
            rm_store::Durability::Machine => rm_fsm::Durability::group_commit(),
        };
        Ok(rm_fsm::Config::default().with_durability(durability))
    }

    /// How long finished deals are kept (`[storage] deal_retention_days`; `None` =
    /// forever).
    pub fn deal_retention(&self) -> Option<Duration> {
        match self.storage.deal_retention_days {
            0 => None,
            days => Some(Duration::from_secs(days.saturating_mul(24 * 3600))),
        }
    }

    /// The provider's settings.
    pub fn provider_config(&self) -> Result<rm_provider::Config> {
        let mut c = rm_provider::Config::default();
        c.fsm = self.fsm()?;
        c.deal_retention = self.deal_retention();
        c.deal.payment_timeout = Duration::from_secs(self.provider.payment_timeout_secs);
        c.deal.resume_window = Duration::from_secs(self.provider.resume_window_secs);
        if self.provider.max_bytes_per_second > 0 {
            c.deal.max_bytes_per_second = Some(self.provider.max_bytes_per_second);
            // Small responses, so a limited deal moves (and can be paid) steadily.
            c.deal.max_blocks_per_response = 1;
        }
        Ok(c)
    }

    /// The client's spending caps (`[client] max_*`).
    pub fn client_caps(&self) -> Result<rm_client::Caps> {
        let amount = |key: &str, text: &str| -> Result<rm_types::TokenAmount> {
            let a: rm_types::TokenAmount = text
                .parse()
                .map_err(|e| invalid(key, format!("{text:?} is not an amount: {e}")))?;
            if a.is_negative() {
                return Err(invalid(key, "may not be negative"));
            }
            Ok(a)
        };
        let c = &self.client;
        Ok(rm_client::Caps::default()
            .with_max_price_per_byte(amount("client.max_price_per_byte", &c.max_price_per_byte)?)
            .with_max_unseal_price(amount("client.max_unseal_price", &c.max_unseal_price)?)
            .with_max_total(amount("client.max_total", &c.max_total)?))
    }

    /// The client's settings.
    pub fn client_config(&self) -> Result<rm_client::Config> {
        let mut c = rm_client::Config::default();
        c.fsm = self.fsm()?;
        c.deal_retention = self.deal_retention();
        c.deal.max_reconnects = self.client.max_reconnects;
        Ok(c)
    }
}

/// A `HOST:PORT` socket address; empty text is `None`.
pub fn parse_listen(key: &str, text: &str) -> Result<Option<std::net::SocketAddr>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| invalid(key, format!("{text:?} is not HOST:PORT: {e}")))
}

fn parse_addr(key: &str, text: &str) -> Result<Multiaddr> {
    text.parse::<Multiaddr>()
        .map_err(|e| invalid(key, format!("{text:?} is not a multiaddr: {e}")))
}

/// A UnixFS preset by name: `"v1-1mib"`, `"kubo-v1"` or `"kubo-v0"`.
pub fn preset(name: &str) -> Result<rm_blockio::unixfs::Preset> {
    use rm_blockio::unixfs::Preset;
    match name {
        "v1-1mib" => Ok(Preset::UNIXFS_V1_2025),
        "kubo-v1" => Ok(Preset::KUBO_V1_RAW_LEAVES),
        "kubo-v0" => Ok(Preset::KUBO_V0),
        other => Err(invalid(
            "import.preset",
            format!("unknown preset {other:?}: use v1-1mib, kubo-v1 or kubo-v0"),
        )),
    }
}

/// Parses `"32GiB"`, `"512MiB"`, `"8 KiB"`, `"1000"` (bytes); the error says why not.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 32GiB"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use B, KiB, MiB, GiB or TiB"
            ));
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_file_is_the_defaults() {
        let parsed: Config = toml::from_str(DEFAULT_TOML).unwrap();
        assert_eq!(parsed, Config::default());
        parsed.check().unwrap();
        let empty: Config = toml::from_str("").unwrap();
        assert_eq!(empty, Config::default());
    }

    #[test]
    fn the_default_caps_are_the_clients() {
        assert_eq!(
            Config::default().client_caps().unwrap(),
            rm_client::Caps::default()
        );
        let mut c = Config::default();
        c.client.max_total = "a lot".into();
        assert!(
            matches!(c.check(), Err(ConfigError::Invalid { key, .. }) if key == "client.max_total")
        );
    }

    #[test]
    fn mistakes_are_errors() {
        assert!(toml::from_str::<Config>("[network]\nlisten_on = []").is_err());
        let mut c = Config::default();
        c.storage.durability = "sometimes".into();
        assert!(c.check().is_err());
        let mut c = Config::default();
        c.storage.sector_size = "3GiB".into();
        assert!(c.check().is_err());
        let mut c = Config::default();
        c.storage.unsealed_cache_size = "lots".into();
        assert!(
            matches!(c.check(), Err(ConfigError::Invalid { key, .. }) if key == "storage.unsealed_cache_size")
        );
        let parsed: Config =
            toml::from_str("[storage]\nunsealed_cache_size = \"512MiB\"\ndirect_reads = false")
                .unwrap();
        assert_eq!(parsed.unsealed_cache_size().unwrap(), 512 << 20);
        assert!(!parsed.storage.direct_reads);
        let mut c = Config::default();
        c.network.bootstrap = vec!["not an address".into()];
        assert!(c.check().is_err());
        let mut m = Config::default();
        m.metrics.listen = "localhost".into();
        assert!(
            matches!(m.check(), Err(ConfigError::Invalid { key, .. }) if key == "metrics.listen")
        );
        m.metrics.listen = String::new();
        assert_eq!(m.metrics_listen().unwrap(), None);
        c.network.bootstrap = vec!["/ip4/127.0.0.1/tcp/1".into()];
        assert!(
            matches!(c.check(), Err(ConfigError::Invalid { key, .. }) if key == "network.bootstrap")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32GiB").unwrap(), 32 << 30);
        assert_eq!(parse_size("8 KiB").unwrap(), 8 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("1 GB").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }
}
