//! Long unseals over real libp2p: a provider whose sectors take longer to unseal than the
//! client's read deadline keeps the deal alive with `Unsealing` responses, so the client
//! neither reconnects nor gives up (issue 20, item 3).
//!
//! The sector store is the node's own `FileSectorStore` behind a wrapper that behaves like
//! sealed storage: it has no unsealed copy to read in place, and every unseal waits
//! before its first byte. The client may not reconnect even once, so a single silence
//! longer than its read deadline would fail the deal.

use std::sync::Arc;
use std::time::Duration;

use rm_blockio::Blockstore;
use rm_blockio::unixfs::Preset;
use rm_client::ClientStatus;
use rm_e2e::{Node, lorem_path};
use rm_provider::{Provider, ProviderStatus};
use rm_types::{Ask, QueryParams, TokenAmount};
use rm_unseal::sector::{BoxFuture, PieceReader, SectorNumber};
use rm_unseal::{PaddedPieceSize, SectorAccess, UnsealedCache, Unsealer};

/// Sealed-sector behaviour over real sector files: no reads in place, and each unseal
/// takes `delay` before its data starts.
struct SlowSectors {
    inner: Arc<dyn SectorAccess>,
    delay: Duration,
}

impl SectorAccess for SlowSectors {
    fn unseal(
        &self,
        sector: SectorNumber,
        offset: u64,
        length: PaddedPieceSize,
    ) -> BoxFuture<'_, Result<PieceReader, rm_unseal::Error>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.unseal(sector, offset, length).await
        })
    }

    fn is_unsealed(
        &self,
        _sector: SectorNumber,
        _offset: u64,
        _length: PaddedPieceSize,
    ) -> BoxFuture<'_, Result<bool, rm_unseal::Error>> {
        Box::pin(async { Ok(false) })
    }
}

/// A paid retrieval of lorem.txt from a provider whose unseal takes `unseal`, with the
/// provider repeating `Unsealing` every `interval`, and a client with a 1 s read deadline
/// and no reconnects. Returns how the client's deal ended and the provider's count of
/// resumes.
async fn retrieve(unseal: Duration, interval: Duration) -> (ClientStatus, String, u64) {
    let dir = tempfile::tempdir().unwrap();
    let pnode = Node::open(&dir.path().join("provider")).await.unwrap();
    let cnode = Node::open(&dir.path().join("client")).await.unwrap();
    let root = pnode.import(&lorem_path(), Preset::GO_FIL_MARKETS).unwrap();
    // The payload is in the piece only: a deal must unseal it.
    assert!(!pnode.blocks.has(&root).unwrap());

    let sectors = Arc::new(SlowSectors {
        inner: pnode.sectors.clone(),
        delay: unseal,
    });
    let unsealer = Arc::new(Unsealer::with_cache(
        Arc::clone(&pnode.pieces),
        sectors,
        pnode
            .db
            .keyspace(rm_unseal::unseal::LOADED_KEYSPACE)
            .unwrap(),
        Some(UnsealedCache::open(dir.path().join("slow-cache"), 1 << 30).unwrap()),
    ));
    let mut pconfig = rm_provider::Config::default();
    pconfig.deal.unsealing_interval = interval;
    let blocks: Arc<dyn Blockstore> = pnode.blocks.clone();
    let provider = Provider::with_pieces(
        pnode.network.clone(),
        pnode.paych.clone(),
        blocks,
        unsealer,
        &pnode.db,
        pconfig,
    )
    .await
    .unwrap();
    provider
        .set_ask(Ask {
            price_per_byte: TokenAmount::from_atto(1000u64),
            unseal_price: TokenAmount::zero(),
            payment_interval: 10_000,
            payment_interval_increase: 1_000,
        })
        .unwrap();
    provider.start();

    let mut cconfig = rm_client::Config::default();
    cconfig.deal.read_timeout = Duration::from_secs(1);
    cconfig.deal.max_reconnects = 0;
    let client = cnode.client(cconfig).await.unwrap();
    let addrs = pnode.addrs().await.unwrap();
    let terms = client
        .query(pnode.peer_id(), addrs.clone(), root, QueryParams::default())
        .await
        .unwrap();
    let retrieval = rm_client::Retrieval::from_query(root, pnode.peer_id(), addrs, &terms);
    let id = client.retrieve(retrieval).await.unwrap();
    let state = tokio::time::timeout(Duration::from_secs(60), client.wait(id))
        .await
        .expect("the deal ends")
        .unwrap();
    let key = (cnode.peer_id().to_bytes(), id.0);
    // The provider's side ends once it has heard the client's last word.
    let mut resumes = 0;
    for _ in 0..100 {
        let p = provider.deal(&key).unwrap().unwrap();
        resumes = p.resumes;
        if p.status.is_final() {
            if state.status == ClientStatus::Completed {
                assert_eq!(p.status, ProviderStatus::Completed);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if state.status == ClientStatus::Completed {
        assert_eq!(
            cnode.export(&root).unwrap(),
            std::fs::read(lorem_path()).unwrap()
        );
    }
    (state.status, state.message(), resumes)
}

/// A 3 s unseal against a 1 s read deadline: `Unsealing` every 300 ms keeps the one
/// stream alive, and the deal completes with no resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_unseal_completes_on_one_stream() {
    let (status, message, resumes) =
        retrieve(Duration::from_secs(3), Duration::from_millis(300)).await;
    assert_eq!(status, ClientStatus::Completed, "{message}");
    assert_eq!(resumes, 0);
}

/// The control: the same unseal with the provider silent meanwhile (its interval longer
/// than the unseal) loses the client at its read deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_slow_unseal_loses_the_client() {
    let (status, message, _) = retrieve(Duration::from_secs(3), Duration::from_secs(60)).await;
    assert_eq!(status, ClientStatus::Errored, "{message}");
    assert!(message.contains("sent nothing"), "{message}");
}
