//! Query answers as go-fil-markets v1.28.3 gives them (`retrievalmarket/impl/provider.go`,
//! `provider_pieces.go`), over real libp2p on 127.0.0.1: an available payload, an unknown
//! payload, a piece that does not hold the payload, identity payload CIDs. The bytes of
//! each answer are the ones docs/protocol.md lists ("Query answers").

use std::time::Duration;

use rm_blockio::unixfs::Preset;
use rm_e2e::{Node, lorem_path};
use rm_network::{Config, Network, QueryProtocol, keys};
use rm_types::{
    Address, Ask, Cid, Query, QueryItemStatus, QueryParams, QueryResponse, QueryResponseStatus,
    TokenAmount,
};

/// The piece `lorem.txt` makes with go-fil-markets' test preset (as `tests/deals.rs`).
const LOREM_PIECE_CID: &str = "baga6ea4seaqfuolhqhanwfpvi74zcd2jxvrktjrrpczhiz2tenm6fzvibvzmoky";

/// Another piece CID, held by nobody.
const OTHER_PIECE_CID: &str = "baga6ea4seaqozp3abki6vgdf7ztbipcycmxfyt2o64cpuyvdkczsjxsg7bqmioi";

const NOT_FOUND: &str = "piece info for cid not found (deal has not been added to a piece yet)";

/// The documented bytes of the "not found" answer with payment address `f01000`, in the
/// map encoding (`/fil/retrieval/qry/1.0.0`) and the tuple encoding (`/0.0.1`).
const NOT_FOUND_V1: &str = "a96453697a65006653746174757301674d6573736167657845706965636520696e666f20666f7220636964206e6f7420666f756e6420286465616c20686173206e6f74206265656e20616464656420746f206120706965636520796574296b556e7365616c5072696365406d5069656365434944466f756e64016e5061796d656e74416464726573734300e8076f4d696e50726963655065724279746540724d61785061796d656e74496e74657276616c00781a4d61785061796d656e74496e74657276616c496e63726561736500";
const NOT_FOUND_V0: &str = "890101004300e8074000007845706965636520696e666f20666f7220636964206e6f7420666f756e6420286465616c20686173206e6f74206265656e20616464656420746f2061207069656365207965742940";

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("step timed out")
}

struct Setup {
    _dir: tempfile::TempDir,
    provider: Node,
    client: Network,
    root: Cid,
    address: Address,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(&dir.path().join("provider")).await.unwrap();
    let root = node.import(&lorem_path(), Preset::GO_FIL_MARKETS).unwrap();
    let provider = node.provider(rm_provider::Config::default()).await.unwrap();
    provider
        .set_ask(Ask {
            price_per_byte: TokenAmount::from_atto(1000u64),
            unseal_price: TokenAmount::from_atto(7u64),
            payment_interval: 10_000,
            payment_interval_increase: 1_000,
        })
        .unwrap();
    provider.start();
    let client = Network::new(keys::generate(), Config::default())
        .await
        .unwrap();
    let addr = node.addrs().await.unwrap().remove(0);
    client.add_address(node.peer_id(), addr).await.unwrap();
    let address = node.address.clone();
    Setup {
        _dir: dir,
        provider: node,
        client,
        root,
        address,
    }
}

impl Setup {
    /// Asks on both versions; both must give the same answer.
    async fn ask(&self, payload: Cid, piece: Option<&str>) -> QueryResponse {
        let query = Query {
            payload_cid: payload,
            params: QueryParams {
                piece_cid: piece.map(|p| p.parse().unwrap()),
            },
        };
        let peer = self.provider.peer_id();
        let (v1, _) = within(self.client.query_via(peer, &query, &[QueryProtocol::V1]))
            .await
            .unwrap();
        let (v0, _) = within(self.client.query_via(peer, &query, &[QueryProtocol::V0]))
            .await
            .unwrap();
        assert_eq!(v1, v0, "both versions answer alike");
        v1
    }

    /// go-fil-markets' answer when the payload is not available: everything zero but the
    /// payment address, `PieceCIDFound` unavailable.
    fn not_found(&self) -> QueryResponse {
        QueryResponse {
            status: QueryResponseStatus::Unavailable,
            piece_cid_found: QueryItemStatus::Unavailable,
            size: 0,
            payment_address: self.address.clone(),
            min_price_per_byte: TokenAmount::zero(),
            max_payment_interval: 0,
            max_payment_interval_increase: 0,
            message: NOT_FOUND.into(),
            unseal_price: TokenAmount::zero(),
        }
    }
}

/// An identity CID (CIDv1, identity multihash) of `codec` holding `data`.
fn identity(codec: u64, data: &[u8]) -> Cid {
    Cid::new_v1(
        codec,
        rm_blockio::codec::digest(rm_blockio::codec::IDENTITY, data).unwrap(),
    )
}

/// A DAG-CBOR list of one link.
fn cbor_link_list(to: &Cid) -> Vec<u8> {
    let cid = to.to_bytes();
    let mut out = vec![0x81, 0xd8, 0x2a, 0x58, (cid.len() + 1) as u8, 0x00];
    out.extend_from_slice(&cid);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_go_fil_markets_for_known_unknown_and_identity_payloads() {
    let s = setup().await;
    let available = QueryResponse {
        status: QueryResponseStatus::Available,
        piece_cid_found: QueryItemStatus::Available,
        size: 32_512, // the 32 KiB piece, unpadded
        payment_address: s.address.clone(),
        min_price_per_byte: TokenAmount::from_atto(1000u64),
        max_payment_interval: 10_000,
        max_payment_interval_increase: 1_000,
        message: String::new(),
        unseal_price: TokenAmount::from_atto(7u64),
    };

    // Available, with and without naming its piece.
    assert_eq!(s.ask(s.root, None).await, available);
    assert_eq!(s.ask(s.root, Some(LOREM_PIECE_CID)).await, available);

    // A piece that does not hold the payload, and a payload nobody holds.
    assert_eq!(s.ask(s.root, Some(OTHER_PIECE_CID)).await, s.not_found());
    let unknown: Cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
        .parse()
        .unwrap();
    assert_eq!(s.ask(unknown, None).await, s.not_found());
    assert_eq!(s.ask(unknown, Some(LOREM_PIECE_CID)).await, s.not_found());

    // Identity CIDs: `bafkqaaa` (raw, empty) links nothing, so no piece holds it.
    let empty: Cid = "bafkqaaa".parse().unwrap();
    assert_eq!(empty, identity(rm_blockio::codec::RAW, b""));
    assert_eq!(s.ask(empty, None).await, s.not_found());
    // One whose block links the payload is held by the payload's piece.
    let linking = identity(rm_blockio::codec::DAG_CBOR, &cbor_link_list(&s.root));
    assert_eq!(s.ask(linking, None).await, available);
    assert_eq!(s.ask(linking, Some(OTHER_PIECE_CID)).await, s.not_found());
    // One that links something nobody holds is not found.
    let dangling = identity(rm_blockio::codec::DAG_CBOR, &cbor_link_list(&unknown));
    assert_eq!(s.ask(dangling, None).await, s.not_found());
    // One whose block cannot be decoded is an error, as in Go.
    let garbage = identity(rm_blockio::codec::DAG_CBOR, &[0xff]);
    let answer = s.ask(garbage, None).await;
    assert_eq!(answer.status, QueryResponseStatus::Error);
    assert!(
        answer
            .message
            .starts_with("failed to fetch piece to retrieve from: decoding identity CID"),
        "{}",
        answer.message
    );

    // The bytes docs/protocol.md shows for "not found" (payment address f01000).
    let documented = QueryResponse {
        payment_address: Address::new_id(1000),
        ..s.not_found()
    };
    println!(
        "V1 {}",
        hex(&QueryProtocol::V1.encode_response(&documented).unwrap())
    );
    println!(
        "V0 {}",
        hex(&QueryProtocol::V0.encode_response(&documented).unwrap())
    );
    assert_eq!(
        hex(&QueryProtocol::V1.encode_response(&documented).unwrap()),
        NOT_FOUND_V1
    );
    assert_eq!(
        hex(&QueryProtocol::V0.encode_response(&documented).unwrap()),
        NOT_FOUND_V0
    );
    s.client.shutdown().await;
    s.provider.network.shutdown().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
