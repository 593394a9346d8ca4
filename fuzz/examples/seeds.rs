//! Writes a seed corpus, `fuzz/corpus/<target>/<name>`, from the repository's own test
//! vectors and fixtures (sources in each `testdata/SOURCES.md`):
//!
//! ```text
//! cd fuzz && cargo run --example seeds
//! ```
//!
//! The files are committed; rerun this when a target's input format changes.

use std::path::{Path, PathBuf};

use cid::Cid;
use rm_blockio::blockstore::MemoryBlockstore;
use rm_blockio::selector::{RecursionLimit, Selector};
use rm_blockio::unixfs::{Importer, Preset};
use rm_blockio::{BlockReader, car};
use rm_fuzz::voucher as fuzz_voucher;
use rm_paych::wallet::Wallet;
use rm_types::{
    Address, Block, ClientMessage, DealCancel, DealId, DealPayment, DealProposal, DealResponse,
    DealStatus, Params, Query, QueryItemStatus, QueryResponse, QueryResponseStatus, Resume,
    TokenAmount, codec, tuple,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(path: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(path)).unwrap()
}

struct Corpus {
    dir: PathBuf,
    written: usize,
}

impl Corpus {
    fn write(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.dir.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        self.written += 1;
    }
}

fn with_mode(mode: u8, items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![mode];
    for item in items {
        out.extend_from_slice(item);
    }
    out
}

/// lorem.txt imported with go-fil-markets' preset: its root, blocks and store.
fn lorem() -> (MemoryBlockstore, Cid, Vec<Block>) {
    let store = MemoryBlockstore::new();
    let data = fixture("crates/rm-blockio/testdata/lorem.txt");
    let root = Importer::import_bytes(&store, Preset::GO_FIL_MARKETS, &data)
        .unwrap()
        .root;
    let blocks = BlockReader::new(&store, root, &Selector::explore_all_recursively())
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (store, root, blocks)
}

fn main() {
    let mut c = Corpus {
        dir: root().join("fuzz/corpus"),
        written: 0,
    };
    let (store, payload, blocks) = lorem();
    let explore_all =
        codec::from_slice(rm_blockio::selector::EXPLORE_ALL_RECURSIVELY_DAG_CBOR).unwrap();

    // Vouchers signed with the fuzz ledger's key on its channel.
    let (_, channel, from) = fuzz_voucher::ledger();
    let wallet = Wallet::in_memory();
    wallet.import(&fuzz_voucher::secret()).unwrap();
    let signed = |lane, nonce, amount: u64| {
        rm_paych::voucher::create(
            &wallet,
            &from,
            channel.clone(),
            lane,
            nonce,
            TokenAmount::from_atto(amount),
        )
        .unwrap()
    };
    let v1 = signed(0, 1, 1_000);
    let v2 = signed(1, 3, 25_000);

    // deal_stream
    let mut params = Params::new(TokenAmount::from_atto(2u64), 1 << 20, 1 << 20);
    params.selector = Some(explore_all);
    let proposal = DealProposal::new(payload, DealId(7), params);
    let mut resumed = proposal.clone();
    resumed.resume = Some(Resume {
        blocks: 3,
        bytes: 3000,
    });
    let p = codec::to_vec(&proposal).unwrap();
    c.write("deal_stream", "proposal", &with_mode(0, std::slice::from_ref(&p)));
    c.write(
        "deal_stream",
        "proposal-resume-twice",
        &with_mode(4, &[codec::to_vec(&resumed).unwrap(), p]),
    );
    let response = DealResponse {
        status: DealStatus::FundsNeeded,
        id: DealId(7),
        payment_owed: TokenAmount::from_atto(4096u64),
        message: String::new(),
        blocks: blocks[..3].to_vec(),
    };
    c.write(
        "deal_stream",
        "response-blocks",
        &with_mode(1, &[codec::to_vec(&response).unwrap()]),
    );
    let payment = ClientMessage::Payment(Box::new(DealPayment {
        id: DealId(7),
        payment_channel: channel.clone(),
        payment_voucher: Some(v1.clone()),
    }));
    let cancel = ClientMessage::Cancel(DealCancel {
        id: DealId(7),
        reason: "a wrong block".into(),
        failed: true,
    });
    c.write(
        "deal_stream",
        "payment-then-cancel",
        &with_mode(
            2,
            &[
                codec::to_vec(&payment).unwrap(),
                codec::to_vec(&cancel).unwrap(),
            ],
        ),
    );

    // query: both versions, both directions
    let query = Query::new(payload);
    let answer = QueryResponse {
        status: QueryResponseStatus::Available,
        piece_cid_found: QueryItemStatus::Available,
        size: 19000,
        payment_address: Address::new_id(1000),
        min_price_per_byte: TokenAmount::from_atto(2u64),
        max_payment_interval: 1 << 20,
        max_payment_interval_increase: 1 << 20,
        message: String::new(),
        unseal_price: TokenAmount::zero(),
    };
    c.write(
        "query",
        "query-map",
        &with_mode(0, &[codec::to_vec(&query).unwrap()]),
    );
    c.write(
        "query",
        "answer-map",
        &with_mode(1, &[codec::to_vec(&answer).unwrap()]),
    );
    c.write(
        "query",
        "query-tuple",
        &with_mode(2, &[tuple::to_vec(&query).unwrap()]),
    );
    c.write(
        "query",
        "answer-tuple",
        &with_mode(3, &[tuple::to_vec(&answer).unwrap()]),
    );

    // selector_traversal: real selectors over DAG descriptions
    let edge = || Selector::ExploreAll {
        next: Box::new(Selector::ExploreRecursiveEdge),
    };
    let selectors = [
        ("explore-all", Selector::explore_all_recursively()),
        (
            "depth-limited",
            Selector::ExploreRecursive {
                limit: RecursionLimit::Depth(3),
                sequence: Box::new(edge()),
            },
        ),
        (
            "fields",
            Selector::ExploreFields {
                fields: vec![
                    (
                        "Links".into(),
                        Selector::ExploreIndex {
                            index: 0,
                            next: Box::new(Selector::ExploreFields {
                                fields: vec![("Hash".into(), Selector::Matcher)],
                            }),
                        },
                    ),
                    ("a".into(), Selector::Matcher),
                ],
            },
        ),
        (
            "doubling-union",
            Selector::ExploreRecursive {
                limit: RecursionLimit::None,
                sequence: Box::new(Selector::ExploreUnion(vec![edge(), edge()])),
            },
        ),
    ];
    let dag: Vec<u8> = (0u8..=255)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    for (name, sel) in selectors {
        let bytes = sel.to_dag_cbor();
        let mut input = (bytes.len() as u16).to_le_bytes().to_vec();
        input.extend_from_slice(&bytes);
        input.extend_from_slice(&dag);
        c.write("selector_traversal", name, &input);
    }

    // dag_pb and dag_cbor: ipld/codec-fixtures, positive and negative
    let fixtures = json("crates/rm-blockio/testdata/ipld_codec_fixtures.json");
    for (key, target) in [("dag_pb", "dag_pb"), ("dag_cbor", "dag_cbor")] {
        for f in fixtures[key].as_array().unwrap() {
            let name = f["name"].as_str().unwrap().replace(['/', ' '], "_");
            c.write(
                target,
                &name,
                &hex::decode(f["hex"].as_str().unwrap()).unwrap(),
            );
        }
    }
    for (file, cases) in fixtures["negative"].as_object().unwrap() {
        let target = if file.contains("dag-pb") {
            "dag_pb"
        } else {
            "dag_cbor"
        };
        for (i, f) in cases.as_array().unwrap().iter().enumerate() {
            if let Some(h) = f["hex"].as_str() {
                c.write(target, &format!("negative-{i}"), &hex::decode(h).unwrap());
            }
        }
    }

    // car_reader and unixfs_export: the gateway fixtures and lorem.txt as a CAR
    let mut lorem_car = Vec::new();
    car::export(
        &store,
        payload,
        &Selector::explore_all_recursively(),
        &mut lorem_car,
    )
    .unwrap();
    let cars = [
        "dir-with-dag-cbor-with-links.car",
        "file-3k-and-3-blocks-missing-block.car",
        "gateway-raw-block.car",
        "subdir-with-two-single-block-files.car",
    ];
    for target in ["car_reader", "unixfs_export"] {
        c.write(target, "lorem", &lorem_car);
        for name in cars {
            c.write(
                target,
                name,
                &fixture(&format!("crates/rm-http/testdata/{name}")),
            );
        }
    }

    // voucher: the public vectors, and vouchers that pass the signature check
    let vectors = json("crates/rm-types/testdata/paych_signed_voucher.json");
    for (i, v) in vectors["vectors"].as_array().unwrap().iter().enumerate() {
        c.write(
            "voucher",
            &format!("vector-{i}"),
            &hex::decode(v["cbor_hex"].as_str().unwrap()).unwrap(),
        );
    }
    c.write("voucher", "signed-lane0", &codec::to_vec(&v1).unwrap());
    c.write("voucher", "signed-lane1", &codec::to_vec(&v2).unwrap());

    println!("wrote {} seed files under {}", c.written, c.dir.display());
}
