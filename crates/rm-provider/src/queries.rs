//! Answering queries, and where a payload is: the piece store first, then the
//! blockstore. Shared by the query answerer and the deal driver.

use std::sync::Arc;

use rm_blockio::{BlockReader, Selector as DagSelector};
use rm_types::{Cid, QueryItemStatus, QueryResponse, QueryResponseStatus, RetrievalProviderNode};

use crate::provider::{Inner, lock};

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
        let ask = self.current_ask();
        let mut answer = QueryResponse {
            status: QueryResponseStatus::Unavailable,
            piece_cid_found: if query.params.piece_cid.is_some() {
                QueryItemStatus::Unavailable
            } else {
                QueryItemStatus::Unknown
            },
            size: 0,
            payment_address: rm_types::Address::new_id(0),
            min_price_per_byte: ask.price_per_byte.clone(),
            max_payment_interval: ask.payment_interval,
            max_payment_interval_increase: ask.payment_interval_increase,
            message: String::new(),
            unseal_price: ask.unseal_price.clone(),
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
        match located {
            Ok(Located::Pieces(infos)) => {
                let length = infos.iter().flat_map(|i| &i.deals).next().map(|d| d.length);
                match length.map(rm_unseal::PaddedPieceSize::new) {
                    Some(Ok(size)) => {
                        answer.status = QueryResponseStatus::Available;
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
            Ok(Located::Blockstore) => match self.dag_size(&query.payload_cid) {
                Ok(Some(size)) => {
                    answer.status = QueryResponseStatus::Available;
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

    /// Makes the deal's payload readable from the blockstore: unseals and loads its piece
    /// unless the blockstore alone serves it.
    pub(crate) async fn unseal(&self, proposal: &rm_types::DealProposal) -> Result<(), String> {
        let piece = proposal.params.piece_cid.as_ref();
        match (self.locate(&proposal.payload_cid, piece)?, &self.unsealer) {
            (Located::Pieces(_), Some(unsealer)) => {
                let loaded = unsealer
                    .load(&proposal.payload_cid, piece, Arc::clone(&self.blockstore))
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::debug!(
                    piece = %loaded.piece_cid,
                    blocks = loaded.blocks,
                    unsealed = loaded.unsealed,
                    "payload ready"
                );
                Ok(())
            }
            (Located::Pieces(_), None) | (Located::Blockstore, _) => Ok(()),
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
