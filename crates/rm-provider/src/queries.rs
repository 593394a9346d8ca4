//! Answering queries, and where a payload is: the piece store first, then the
//! blockstore. Shared by the query answerer and the deal driver.

use std::sync::Arc;

use rm_blockio::{BlockReader, Blockstore, Selector as DagSelector};
use rm_types::{
    Cid, QueryItemStatus, QueryResponse, QueryResponseStatus, RetrievalProviderNode, TokenAmount,
};
use rm_unseal::PieceBlocks;

use crate::provider::{DealKey, Inner, lock};

/// go-fil-markets' answer when no piece holds the payload.
pub(crate) const NOT_FOUND_MESSAGE: &str =
    "piece info for cid not found (deal has not been added to a piece yet)";

/// Where a payload is held.
pub(crate) enum Located {
    /// In these pieces.
    Pieces(Vec<rm_unseal::PieceInfo>),
    /// In the blockstore only.
    Blockstore,
    /// Not here.
    Nowhere,
}

impl<N: RetrievalProviderNode> Inner<N> {
    /// The answer to a query: from the piece store (as go-fil-markets: `Size` is the
    /// unpadded size of the first piece holding the payload), else from the blockstore
    /// (`Size` is the DAG's block bytes).
    pub(crate) async fn answer(&self, query: &rm_types::Query) -> QueryResponse {
        // As go-fil-markets v1.28.3 (`retrievalmarket/impl/provider.go`, HandleQueryStream):
        // the ask's fields are filled in only when the payload is available; otherwise
        // they stay zero and `PieceCIDFound` is `Unavailable`, whether a piece was named
        // or not (docs/protocol.md, "Query answers").
        let mut answer = QueryResponse {
            status: QueryResponseStatus::Unavailable,
            piece_cid_found: QueryItemStatus::Unavailable,
            size: 0,
            payment_address: rm_types::Address::new_id(0),
            min_price_per_byte: TokenAmount::zero(),
            max_payment_interval: 0,
            max_payment_interval_increase: 0,
            message: String::new(),
            unseal_price: TokenAmount::zero(),
        };
        let address = async {
            let head = self.node.chain_head().await?;
            self.node.payment_address(&head).await
        }
        .await;
        match address {
            Ok(a) => answer.payment_address = a,
            Err(e) => {
                answer.status = QueryResponseStatus::Error;
                answer.message = format!("failed to look up payment address: {e}");
                return answer;
            }
        }
        let located = self.locate(&query.payload_cid, query.params.piece_cid.as_ref());
        let ask = self.current_ask();
        let fill_ask = |answer: &mut QueryResponse| {
            answer.status = QueryResponseStatus::Available;
            answer.min_price_per_byte = ask.price_per_byte.clone();
            answer.max_payment_interval = ask.payment_interval;
            answer.max_payment_interval_increase = ask.payment_interval_increase;
            answer.unseal_price = ask.unseal_price.clone();
        };
        match located {
            Ok(Located::Pieces(infos)) => {
                let length = infos.iter().flat_map(|i| &i.deals).next().map(|d| d.length);
                match length.map(rm_unseal::PaddedPieceSize::new) {
                    Some(Ok(size)) => {
                        fill_ask(&mut answer);
                        answer.piece_cid_found = QueryItemStatus::Available;
                        answer.size = size.unpadded().get();
                    }
                    Some(Err(e)) => {
                        answer.status = QueryResponseStatus::Error;
                        answer.message = format!("invalid piece record: {e}");
                    }
                    None => {
                        answer.status = QueryResponseStatus::Error;
                        answer.message = format!(
                            "failed to fetch storage deals containing payload [{}]",
                            query.payload_cid
                        );
                    }
                }
            }
            // rm's own case (no piece involved): `PieceCIDFound` is `Unknown`.
            Ok(Located::Blockstore) => match self.dag_size(&query.payload_cid) {
                Ok(Some(size)) => {
                    fill_ask(&mut answer);
                    answer.piece_cid_found = QueryItemStatus::Unknown;
                    answer.size = size;
                }
                Ok(None) => answer.message = NOT_FOUND_MESSAGE.to_owned(),
                Err(e) => {
                    answer.status = QueryResponseStatus::Error;
                    answer.message = e;
                }
            },
            Ok(Located::Nowhere) => answer.message = NOT_FOUND_MESSAGE.to_owned(),
            Err(e) => {
                answer.status = QueryResponseStatus::Error;
                answer.message = format!("failed to fetch piece to retrieve from: {e}");
            }
        }
        answer
    }

    /// Where the provider holds `payload`: in pieces (only `piece`, if named), or only in
    /// its blockstore.
    pub(crate) fn locate(&self, payload: &Cid, piece: Option<&Cid>) -> Result<Located, String> {
        if payload.hash().code() == rm_blockio::codec::IDENTITY {
            return self.locate_identity(payload, piece);
        }
        if let Some(unsealer) = &self.unsealer {
            match unsealer.pieces_for(payload, piece) {
                Ok(infos) => return Ok(Located::Pieces(infos)),
                Err(e) if e.is_not_found() => {
                    if piece.is_some() {
                        return Ok(Located::Nowhere);
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        match self.blockstore.has(payload) {
            Ok(true) => Ok(Located::Blockstore),
            Ok(false) => Ok(Located::Nowhere),
            Err(e) => Err(format!("blockstore: {e}")),
        }
    }

    /// Where an identity payload CID (its block inline, e.g. `bafkqaaa`) is held: where
    /// every link inside it is held, as go-fil-markets' `provider_pieces.go` resolves it.
    /// The piece store is asked about the CID itself first; then the pieces holding all of
    /// its links; nowhere when it has no links. (The blockstore "has" every identity CID,
    /// so it is not asked about the CID itself.)
    fn locate_identity(&self, payload: &Cid, piece: Option<&Cid>) -> Result<Located, String> {
        if let Some(unsealer) = &self.unsealer {
            match unsealer.pieces_for(payload, piece) {
                Ok(infos) => return Ok(Located::Pieces(infos)),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        let mut linked = Vec::new();
        identity_links(payload, &mut linked)?;
        if linked.is_empty() {
            return Ok(Located::Nowhere);
        }
        let Some(unsealer) = &self.unsealer else {
            for link in &linked {
                if !self
                    .blockstore
                    .has(link)
                    .map_err(|e| format!("blockstore: {e}"))?
                {
                    return Ok(Located::Nowhere);
                }
            }
            return Ok(Located::Blockstore);
        };
        let mut common: Option<Vec<rm_unseal::PieceInfo>> = None;
        for link in &linked {
            let infos = match unsealer.pieces_for(link, piece) {
                Ok(infos) => infos,
                Err(e) if e.is_not_found() => return Ok(Located::Nowhere),
                Err(e) => return Err(e.to_string()),
            };
            common = Some(match common {
                None => infos,
                Some(c) => c
                    .into_iter()
                    .filter(|i| infos.iter().any(|j| j.piece_cid == i.piece_cid))
                    .collect(),
            });
        }
        match common {
            Some(infos) if !infos.is_empty() => Ok(Located::Pieces(infos)),
            _ => Ok(Located::Nowhere),
        }
    }

    /// Makes the deal's payload readable: opens the piece that holds it (where the deal
    /// reads its blocks until it ends, [`Inner::release`]) and waits until its first block
    /// can be read, unless the blockstore alone serves it.
    pub(crate) async fn unseal(
        &self,
        key: &DealKey,
        proposal: &rm_types::DealProposal,
    ) -> Result<(), String> {
        let (source, blocks) = self.open_source(proposal).await?;
        if let Some(blocks) = blocks {
            blocks
                .ready_for(&proposal.payload_cid)
                .await
                .map_err(|e| e.to_string())?;
            tracing::debug!(piece = %blocks.piece_cid(), kind = ?blocks.kind(), "payload ready");
        }
        lock(&self.sources).insert(key.clone(), source);
        Ok(())
    }

    /// Where the deal `key` reads its blocks: the piece it opened, or, for a deal that
    /// did not open one in this process (it was running when the provider restarted),
    /// the piece opened now.
    pub(crate) async fn source(
        &self,
        key: &DealKey,
        proposal: &rm_types::DealProposal,
    ) -> Result<Arc<dyn Blockstore>, String> {
        if let Some(s) = lock(&self.sources).get(key) {
            return Ok(Arc::clone(s));
        }
        let (source, _) = self.open_source(proposal).await?;
        lock(&self.sources).insert(key.clone(), Arc::clone(&source));
        Ok(source)
    }

    /// Closes the deal's piece.
    pub(crate) fn release(&self, key: &DealKey) {
        lock(&self.sources).remove(key);
    }

    /// The store a deal for `proposal` reads from: its piece (with the blockstore for
    /// blocks the piece lacks), or the blockstore alone.
    pub(crate) async fn open_source(
        &self,
        proposal: &rm_types::DealProposal,
    ) -> Result<(Arc<dyn Blockstore>, Option<Arc<PieceBlocks>>), String> {
        let piece = proposal.params.piece_cid.as_ref();
        match (self.locate(&proposal.payload_cid, piece)?, &self.unsealer) {
            (Located::Pieces(_), Some(unsealer)) => {
                let blocks = unsealer
                    .open(&proposal.payload_cid, piece)
                    .await
                    .map_err(|e| e.to_string())?
                    .with_fallback(Arc::clone(&self.blockstore));
                let blocks = Arc::new(blocks);
                let source: Arc<dyn Blockstore> = blocks.clone();
                Ok((source, Some(blocks)))
            }
            (Located::Pieces(_), None) | (Located::Blockstore, _) => {
                Ok((Arc::clone(&self.blockstore), None))
            }
            (Located::Nowhere, _) => Err(NOT_FOUND_MESSAGE.to_owned()),
        }
    }

    /// The total block bytes of the whole DAG under `root`, if the root is here.
    pub(crate) fn dag_size(&self, root: &Cid) -> Result<Option<u64>, String> {
        if let Some(size) = lock(&self.sizes).get(root) {
            return Ok(Some(*size));
        }
        if !self.blockstore.has(root).map_err(|e| e.to_string())? {
            return Ok(None);
        }
        let selector = DagSelector::explore_all_recursively();
        let reader = BlockReader::new(Arc::clone(&self.blockstore), *root, &selector)
            .map_err(|e| e.to_string())?;
        let mut size = 0u64;
        for block in reader {
            match block {
                Ok(block) => size += block.data.len() as u64,
                Err(e) => return Err(format!("reading the DAG: {e}")),
            }
        }
        let mut sizes = lock(&self.sizes);
        if sizes.len() >= self.config.size_cache {
            sizes.clear();
        }
        sizes.insert(*root, size);
        Ok(Some(size))
    }
}

/// The links inside identity CID `cid`'s inline block (and inside identity CIDs it links
/// to), each once, in order. The inline block is at most a CID's digest long (64 bytes),
/// so the walk is bounded by it.
fn identity_links(cid: &Cid, out: &mut Vec<Cid>) -> Result<(), String> {
    use rm_blockio::codec::{IDENTITY, Node};
    let node = Node::decode(cid.codec(), cid.hash().digest())
        .map_err(|e| format!("decoding identity CID {cid}: {e}"))?;
    let mut stack = vec![&node];
    while let Some(node) = stack.pop() {
        match node {
            Node::Link(link) if link.hash().code() == IDENTITY => identity_links(link, out)?,
            Node::Link(link) if !out.contains(link) => out.push(**link),
            Node::List(items) => stack.extend(items.iter().rev()),
            Node::Map(entries) => stack.extend(entries.iter().rev().map(|(_, v)| v)),
            _ => {}
        }
    }
    Ok(())
}
