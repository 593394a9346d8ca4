//! HTTP retrieval on a node: the Trustless Gateway and `/piece/` served from the node's
//! blockstore, piece store and unsealer (the same the libp2p provider serves from), and a
//! verifying fetcher storing into the node's blockstore with its progress in the node's
//! database.

use std::net::SocketAddr;
use std::sync::Arc;

use rm_blockio::Blockstore;
use rm_http::{FetchConfig, Gateway, HttpFetcher, Server};

use crate::{Error, Home, Node};

impl Node {
    /// The node's gateway: `/ipfs/` from its blockstore (unsealing the piece that holds a
    /// CID when it is not there yet) and `/piece/` from its sectors. Unsealed pieces for
    /// `/piece/` are kept in `<home>/piece-cache` unless `config` says otherwise.
    pub fn http_gateway(&self, mut config: rm_http::Config) -> Result<Gateway, Error> {
        if config.piece_cache_dir.is_none() {
            config.piece_cache_dir = Some(Home::new(&self.home).root().join("piece-cache"));
        }
        let blocks: Arc<dyn Blockstore> = self.blocks.clone();
        Ok(Gateway::with_unsealer(
            blocks,
            Arc::clone(&self.unsealer),
            config,
        )?)
    }

    /// Serves the node's gateway on `addr` until the returned server is shut down.
    pub async fn serve_http(
        &self,
        addr: SocketAddr,
        config: rm_http::Config,
    ) -> Result<Server, Error> {
        Ok(self.http_gateway(config)?.bind(addr).await?)
    }

    /// A fetcher verifying into the node's blockstore, resuming from the progress it
    /// keeps in the node's database.
    pub fn http_fetcher(&self, config: FetchConfig) -> Result<HttpFetcher, Error> {
        let blocks: Arc<dyn Blockstore> = self.blocks.clone();
        let progress = self.db.keyspace(rm_http::fetch::PROGRESS_KEYSPACE)?;
        Ok(HttpFetcher::new(blocks, Some(progress), config))
    }
}
