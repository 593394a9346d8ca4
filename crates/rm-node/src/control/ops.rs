//! [`Operations`]: what the control interface does, on a node served by `rm serve` or on
//! a node a command opened itself. Both give the same results.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rm_network::libp2p::{Multiaddr, PeerId};
use rm_paych::PaychNode;
use rm_provider::Provider;
use rm_types::{Address, Ask, Cid, Query, QueryParams};
use tokio::sync::OnceCell;

use super::api::{
    AddedView, AskChange, AskView, ChannelView, DealView, DealsRequest, FundRequest, FundView,
    ImportProgress, ImportRequest, ImportView, LaneView, PieceDealView, PieceRemovedView,
    PieceView, PiecesView, QueryRequest, QueryView,
};
use crate::{Config, Error, Node};

/// Where import progress goes.
pub type ProgressSink = Box<dyn FnMut(ImportProgress) + Send>;

/// The operations of the control interface on one node.
///
/// Serving (`rm serve`): the provider is the running one, so a new ask applies to the
/// next query and deal at once, and an import is served as soon as it is done. Local (no
/// server runs): the node was opened by the command, and the provider is opened only
/// when the ask is asked for.
pub struct Operations {
    node: Arc<Node>,
    config: Config,
    provider: OnceCell<Provider<PaychNode>>,
    serving: bool,
}

impl std::fmt::Debug for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operations")
            .field("node", &self.node)
            .field("serving", &self.serving)
            .finish_non_exhaustive()
    }
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::Request(what.to_string())
}

impl Operations {
    /// The operations of a serving node with its running `provider`.
    pub fn serving(node: Arc<Node>, config: Config, provider: Provider<PaychNode>) -> Self {
        Operations {
            node,
            config,
            provider: OnceCell::new_with(Some(provider)),
            serving: true,
        }
    }

    /// The operations of a node a command opened (no server runs).
    pub fn local(node: Arc<Node>, config: Config) -> Self {
        Operations {
            node,
            config,
            provider: OnceCell::new(),
            serving: false,
        }
    }

    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Whether these are a serving node's operations.
    pub fn is_serving(&self) -> bool {
        self.serving
    }

    async fn provider(&self) -> Result<&Provider<PaychNode>, Error> {
        self.provider
            .get_or_try_init(|| async {
                let config = self.config.provider_config()?;
                self.node.provider(config).await
            })
            .await
    }

    /// Shows the ask after storing the values of `change` (a serving provider uses them
    /// for the next query and deal; deals under way keep their terms).
    pub async fn ask(&self, change: AskChange) -> Result<AskView, Error> {
        let provider = self.provider().await?;
        let mut ask: Ask = provider.ask();
        let changed = !change.is_empty();
        if let Some(p) = change.price_per_byte {
            ask.price_per_byte = p;
        }
        if let Some(p) = change.unseal_price {
            ask.unseal_price = p;
        }
        if let Some(i) = change.payment_interval {
            ask.payment_interval = i;
        }
        if let Some(i) = change.payment_interval_increase {
            ask.payment_interval_increase = i;
        }
        if changed {
            provider.set_ask(ask.clone())?;
        }
        Ok(AskView {
            price_per_byte: ask.price_per_byte,
            unseal_price: ask.unseal_price,
            payment_interval: ask.payment_interval,
            payment_interval_increase: ask.payment_interval_increase,
            changed,
        })
    }

    /// Imports a file, directory or CAR as a piece and provides its payload (on a serving
    /// node: announced on the DHT and served at once), reporting progress to `progress`.
    /// The import runs on a blocking thread; it finishes even if the caller goes away.
    pub async fn import(
        &self,
        request: ImportRequest,
        mut progress: ProgressSink,
    ) -> Result<ImportView, Error> {
        if !request.path.is_absolute() {
            return Err(bad(format!(
                "the path to import must be absolute: {}",
                request.path.display()
            )));
        }
        let preset_name = (!request.car).then(|| {
            request
                .preset
                .clone()
                .unwrap_or_else(|| self.config.import.preset.clone())
        });
        let preset = preset_name
            .as_deref()
            .map(crate::config::preset)
            .transpose()?;
        let node = Arc::clone(&self.node);
        let path = request.path.clone();
        let imported = tokio::task::spawn_blocking(move || {
            let mut report = |p: rm_unseal::import::Progress| progress(p.into());
            match preset {
                Some(preset) => node.import_piece_with_progress(&path, preset, &mut report),
                None => node.import_car_with_progress(&path, &mut report),
            }
        })
        .await
        .map_err(|e| bad(format!("the import task failed: {e}")))??;
        let p = &imported.placement;
        Ok(ImportView {
            payload_cid: imported.payload_cid.to_string(),
            piece_cid: imported.piece_cid.to_string(),
            car_size: imported.car_size,
            piece_size: imported.piece_size.get(),
            blocks: imported.blocks,
            sector: p.sector,
            offset: p.offset,
            new: imported.written,
            preset: preset_name,
        })
    }

    /// The deals of the sides asked for: provider deals first when both.
    pub async fn deals(&self, request: &DealsRequest) -> Result<Vec<DealView>, Error> {
        let (client, provider) = request.sides();
        let mut out = Vec::new();
        if client {
            for (id, deal) in self.node.client_deals().await? {
                out.push(client_view(id, &deal));
            }
        }
        if provider {
            let deals = match self.provider.get() {
                Some(p) => p.list_deals()?,
                None => self.node.provider_deals().await?,
            };
            for (key, deal) in deals {
                out.push(provider_view(&key, &deal));
            }
        }
        Ok(out)
    }

    /// Every status change of the running provider's deals, when serving.
    pub fn follow(&self) -> Option<DealChanges> {
        let provider = self.provider.get().filter(|_| self.serving)?;
        Some(DealChanges {
            events: provider.subscribe_to_events(),
            last: std::collections::HashMap::new(),
        })
    }

    /// Every piece the node holds (`rm pieces list`).
    pub async fn pieces(&self) -> Result<PiecesView, Error> {
        let pieces = self.node.pieces().await?;
        Ok(PiecesView {
            pieces: pieces.iter().map(piece_view).collect(),
        })
    }

    /// One piece (`rm pieces show`).
    pub async fn piece(&self, piece_cid: &str) -> Result<PieceView, Error> {
        let cid = parse_piece(piece_cid)?;
        Ok(piece_view(&self.node.piece(&cid).await?))
    }

    /// Removes a piece and frees its disk space (`rm pieces remove`); refused while a
    /// deal reads it.
    pub async fn remove_piece(&self, piece_cid: &str) -> Result<PieceRemovedView, Error> {
        let cid = parse_piece(piece_cid)?;
        let r = self.node.remove_piece(&cid).await?;
        let strings = |cids: &[Cid]| cids.iter().map(ToString::to_string).collect();
        Ok(PieceRemovedView {
            piece_cid: cid.to_string(),
            payload_cids: strings(&r.removed.roots),
            blocks: r.removed.blocks,
            orphaned_blocks: r.removed.orphaned,
            sector_bytes_freed: r.removed.sector_bytes,
            cache_bytes_freed: r.removed.cache_bytes,
            unprovided: strings(&r.unprovided),
            disk_bytes_before: r.disk_before,
            disk_bytes_after: r.disk_after,
        })
    }

    /// Lists the ledger's channels after adding `request.amount` to `request.channel`.
    pub async fn fund(&self, request: FundRequest) -> Result<FundView, Error> {
        let node = &self.node;
        let mut added = None;
        match (&request.channel, &request.amount) {
            (Some(channel), Some(amount)) => {
                let address: Address = channel
                    .parse()
                    .map_err(|e| bad(format!("{channel:?} is not a channel address: {e}")))?;
                if amount.is_negative() {
                    return Err(bad("amounts may not be negative"));
                }
                node.ledger.add_funds(&address, amount)?;
                added = Some(AddedView {
                    channel: address.to_string(),
                    amount: amount.clone(),
                });
            }
            (None, None) => {}
            _ => return Err(bad("adding funds needs a channel and an amount")),
        }
        let mine = node.address.clone();
        let mut channels = Vec::new();
        for c in node.ledger.channels()? {
            let mut lanes = Vec::new();
            if c.to == mine {
                for (lane, state) in node.ledger.lanes(&c.address)? {
                    let voucher = match node.ledger.latest_voucher(&c.address, lane)? {
                        Some(v) => Some(hex(&rm_types::codec::to_vec(&v)
                            .map_err(|e| bad(format!("a stored voucher does not encode: {e}")))?)),
                        None => None,
                    };
                    lanes.push(LaneView {
                        lane,
                        nonce: state.nonce,
                        redeemed: state.redeemed,
                        voucher,
                    });
                }
            }
            channels.push(ChannelView {
                channel: c.address.to_string(),
                from: c.from.to_string(),
                to: c.to.to_string(),
                available: c.available(),
                funds: c.funds,
                committed: c.committed,
                owed: c.to_send,
                ours: c.from == mine,
                lanes,
            });
        }
        Ok(FundView {
            wallet: mine.to_string(),
            added,
            channels,
        })
    }

    /// Asks a provider about a payload: at the addresses given, else where the DHT says
    /// (a local node joins it through the configured bootstrap peers first).
    pub async fn query(&self, request: QueryRequest) -> Result<QueryView, Error> {
        let peer: PeerId = request
            .peer_id
            .parse()
            .map_err(|e| bad(format!("{:?} is not a peer id: {e}", request.peer_id)))?;
        let payload = parse_cid(&request.payload_cid)?;
        let piece = request.piece_cid.as_deref().map(parse_cid).transpose()?;
        let mut addrs = request
            .addrs
            .iter()
            .map(|a| {
                a.parse::<Multiaddr>()
                    .map_err(|e| bad(format!("{a:?} is not a multiaddr: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let started = Instant::now();
        if addrs.is_empty() {
            addrs = self.find(peer, &payload).await?;
        }
        let query = Query {
            payload_cid: payload,
            params: QueryParams { piece_cid: piece },
        };
        let node = &self.node;
        let answer = match node.network.dial(peer, addrs).await {
            Ok(()) => node.network.query(peer, &query).await,
            Err(e) => Err(e),
        };
        node.metrics
            .observe_query("client", answer.as_ref().ok(), started.elapsed());
        Ok(QueryView::from(&answer?))
    }

    async fn find(&self, peer: PeerId, payload: &Cid) -> Result<Vec<Multiaddr>, Error> {
        self.node
            .find_provider(&self.config, peer, payload, !self.serving)
            .await
    }

    /// Stops what a local node started (its provider, if the ask was asked for) and its
    /// host. A serving node's parts are `rm serve`'s to stop.
    pub async fn close(&self) {
        if self.serving {
            return;
        }
        if let Some(p) = self.provider.get() {
            p.stop().await;
        }
        self.node.network.shutdown().await;
    }
}

fn parse_cid(text: &str) -> Result<Cid, Error> {
    text.trim()
        .parse()
        .map_err(|e| bad(format!("{text:?} is not a CID: {e}")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A client deal as listed.
pub fn client_view(id: u64, deal: &rm_client::ClientState) -> DealView {
    DealView {
        side: "client".into(),
        deal_id: id,
        peer: rm_network::from_rm_peer(&deal.provider)
            .map(|p| p.to_string())
            .unwrap_or_else(|_| "?".into()),
        payload_cid: deal.proposal.payload_cid.to_string(),
        status: deal.status().to_string(),
        bytes: deal.bytes_received,
        blocks: deal.blocks_received,
        paid: deal.funds_spent.clone(),
        message: deal.message(),
    }
}

/// A provider deal as listed.
pub fn provider_view(key: &rm_provider::DealKey, deal: &rm_provider::ProviderState) -> DealView {
    DealView {
        side: "provider".into(),
        deal_id: key.1,
        peer: PeerId::from_bytes(&key.0)
            .map(|p| p.to_string())
            .unwrap_or_else(|_| "?".into()),
        payload_cid: deal.proposal.payload_cid.to_string(),
        status: deal.status().to_string(),
        bytes: deal.bytes_sent,
        blocks: deal.blocks_sent,
        paid: deal.funds_received.clone(),
        message: deal.message(),
    }
}

/// The running provider's deals as they change status (one [`DealView`] per change).
pub struct DealChanges {
    events: rm_provider::ProviderSubscription,
    last: std::collections::HashMap<rm_provider::DealKey, rm_provider::ProviderStatus>,
}

/// What [`DealChanges::next`] found.
#[derive(Debug)]
pub enum Change {
    /// A deal's status changed.
    Deal(Box<DealView>),
    /// This many notifications were missed (the follower fell behind).
    Lagged(u64),
}

impl DealChanges {
    /// The next status change; `None` when the provider is gone.
    pub async fn next(&mut self) -> Option<Change> {
        loop {
            let note = match self.events.recv().await {
                Ok(note) => note,
                Err(rm_fsm::RecvError::Lagged(n)) => return Some(Change::Lagged(n)),
                Err(_) => return None,
            };
            let (key, snapshot) = match note {
                rm_fsm::Notification::Began { id, snapshot } => (id, snapshot),
                rm_fsm::Notification::Applied { id, snapshot, .. } => (id, snapshot),
                _ => continue,
            };
            let status = snapshot.state.status();
            if self.last.get(&key) == Some(&status) {
                continue;
            }
            let view = provider_view(&key, &snapshot.state);
            if status.is_final() {
                self.last.remove(&key);
            } else {
                self.last.insert(key, status);
            }
            return Some(Change::Deal(Box::new(view)));
        }
    }
}

impl Node {
    /// Where `peer` serves `payload`, as the DHT says; with `join`, the DHT is joined
    /// through the bootstrap peers of `config` first (a node that is not serving).
    pub async fn find_provider(
        &self,
        config: &Config,
        peer: PeerId,
        payload: &Cid,
        join: bool,
    ) -> Result<Vec<Multiaddr>, Error> {
        let peers = if join {
            self.join_dht(config).await?
        } else {
            self.network.dht_peers().await?.len()
        };
        if peers == 0 {
            return Err(bad(format!(
                "no address for {peer}: give a multiaddr ending in /p2p/{peer}, or list DHT \
                 bootstrap peers in config.toml"
            )));
        }
        let found = self
            .resolver(rm_discovery::ResolverConfig::default())
            .find(payload)
            .await;
        match found.into_iter().find(|f| f.peer_id == peer) {
            Some(f) if !f.addrs.is_empty() => Ok(f.addrs),
            _ => Err(bad(format!(
                "the DHT does not know {peer} as a provider of {payload}"
            ))),
        }
    }

    /// [`Node::import_piece`], reporting progress to `report`.
    pub fn import_piece_with_progress(
        &self,
        path: &Path,
        preset: rm_blockio::unixfs::Preset,
        report: rm_unseal::import::Report<'_>,
    ) -> Result<rm_unseal::Imported, Error> {
        let _one_at_a_time = crate::node::lock_input(path)?;
        let imported = rm_unseal::import::import_path_with_progress(
            &self.pieces,
            &self.sectors,
            path,
            preset,
            &crate::Home::new(&self.home).staging(),
            report,
        )?;
        self.announcer.provide(&imported.payload_cid)?;
        Ok(imported)
    }

    /// [`Node::import_car`], reporting progress to `report`.
    pub fn import_car_with_progress(
        &self,
        path: &Path,
        report: rm_unseal::import::Report<'_>,
    ) -> Result<rm_unseal::Imported, Error> {
        let _one_at_a_time = crate::node::lock_input(path)?;
        let imported =
            rm_unseal::import::import_car_with_progress(&self.pieces, &self.sectors, path, report)?;
        self.announcer.provide(&imported.payload_cid)?;
        Ok(imported)
    }
}

fn parse_piece(text: &str) -> Result<Cid, Error> {
    Cid::try_from(text).map_err(|e| bad(format!("{text:?} is not a piece CID: {e}")))
}

fn piece_view(p: &crate::PieceSummary) -> PieceView {
    PieceView {
        piece_cid: p.piece_cid.to_string(),
        payload_cids: p.payloads.iter().map(ToString::to_string).collect(),
        data_size: p.data_size,
        piece_size: p.piece_size,
        deals: p
            .deals
            .iter()
            .map(|d| PieceDealView {
                deal_id: d.deal_id,
                sector: d.sector_id,
                offset: d.offset,
                length: d.length,
            })
            .collect(),
        cached_bytes: p.cached.as_ref().map(|c| c.bytes),
        cache_complete: p.cached.as_ref().map(|c| c.complete),
        readers: p.readers as u64,
    }
}
