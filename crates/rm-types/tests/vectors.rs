//! rm-types against public test vectors and golden bytes.
//!
//! The vectors are JSON files in this crate's `testdata/` (each file's public source is in
//! `testdata/SOURCES.md`): Filecoin addresses and big integers (go-address, ref-fvm,
//! serialization-vectors, izari-filecoin), signed payment-channel vouchers
//! (filecoin-signing-tools, go-state-types) and the go-fil-markets retrieval types. A missing
//! or unreadable file fails the test. Every `vectors_*` test prints one line per file,
//! `vectors rm-types/<file>: <N> checked`, N being the vectors it asserted on.
//!
//! The `golden_*` tests check messages against bytes encoded by go-fil-markets, as asserted
//! in filecoin-project/cpp-filecoin's retrieval-market tests (inline below).

use rm_types::{
    Address, AddressError, DealId, DealPayment, DealProposal, DealResponse, DealStatus, Network,
    Params, Query, QueryItemStatus, QueryResponse, QueryResponseStatus, SignedVoucher, TokenAmount,
    codec, tuple,
};
use serde_json::Value;

const ADDRESSES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/filecoin_addresses.json"
);
const BIGINTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/filecoin_bigint.json");
const VOUCHERS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/paych_signed_voucher.json"
);
const RETRIEVALMARKET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/retrievalmarket_types.json"
);

/// A vector file; missing, unreadable or invalid, the test fails.
fn vectors(path: &str) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("vector file {path} cannot be read: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("vector file {path} is not JSON: {e}"))
}

/// Prints the count line CI looks for, and fails a test that checked nothing.
fn report(label: &str, checked: usize) {
    println!("vectors rm-types/{label}: {checked} checked");
    assert!(checked > 0, "{label}: no vectors checked");
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s}: {e}"))
}

fn go_error_kind(name: &str) -> Option<AddressError> {
    Some(match name {
        "ErrUnknownNetwork" => AddressError::UnknownNetwork,
        "ErrInvalidChecksum" => AddressError::InvalidChecksum,
        "ErrInvalidPayload" => AddressError::InvalidPayload,
        "ErrInvalidLength" => AddressError::InvalidLength,
        "ErrInvalidEncoding" => AddressError::InvalidEncoding,
        n if n.starts_with("base32") => AddressError::InvalidEncoding,
        n if n.starts_with("ErrUnknownProtocol") => return None, // carries the protocol number
        _ => return None,
    })
}

#[test]
fn vectors_filecoin_addresses() {
    let v = vectors(ADDRESSES);
    let mut valid = 0usize;
    for case in v["valid"].as_array().unwrap() {
        let s = case["string"].as_str().unwrap();
        let bytes = unhex(case["bytes_hex"].as_str().unwrap());
        let cbor = unhex(case["cbor_hex"].as_str().unwrap());
        let (network, a) = Address::parse_with_network(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let want_net = if case["network"] == "t" {
            Network::Testnet
        } else {
            Network::Mainnet
        };
        assert_eq!(network, want_net, "{s}");
        assert_eq!(a.to_bytes(), bytes, "{s} bytes");
        assert_eq!(
            a.protocol() as u64,
            case["protocol"].as_u64().unwrap(),
            "{s}"
        );
        assert_eq!(Address::from_bytes(&bytes).unwrap(), a, "{s} from bytes");
        assert_eq!(a.to_string_with(network), s, "{s} to string");
        assert_eq!(codec::to_vec(&a).unwrap(), cbor, "{s} cbor");
        assert_eq!(
            codec::from_slice::<Address>(&cbor).unwrap(),
            a,
            "{s} from cbor"
        );
        if let Some(key) = case.get("key_input_hex").and_then(Value::as_str) {
            if case["protocol"] == 1 {
                assert_eq!(Address::new_secp256k1(&unhex(key)), a, "{s} from key");
            } else if case["protocol"] == 3 {
                assert_eq!(Address::new_bls(&unhex(key)).unwrap(), a, "{s} from key");
            }
        }
        valid += 1;
    }
    let mut invalid = 0usize;
    for case in v["invalid_strings"].as_array().unwrap() {
        let s = case["input"].as_str().unwrap();
        let err = s.parse::<Address>().expect_err(s);
        if let Some(want) = case["go_address_error"].as_str().and_then(go_error_kind) {
            assert_eq!(err, want, "{s}");
        }
        invalid += 1;
    }
    for case in v["invalid_bytes"].as_array().unwrap() {
        let bytes = unhex(case["input_hex"].as_str().unwrap());
        assert!(
            Address::from_bytes(&bytes).is_err(),
            "{bytes:?} must be rejected"
        );
        let mut cbor = vec![0x40 | bytes.len() as u8];
        if bytes.len() >= 24 {
            cbor = vec![0x58, bytes.len() as u8];
        }
        cbor.extend_from_slice(&bytes);
        assert!(codec::from_slice::<Address>(&cbor).is_err());
        invalid += 1;
    }
    eprintln!(
        "filecoin_addresses.json: {valid} valid vectors round-tripped, {invalid} invalid inputs rejected"
    );
    report("filecoin_addresses.json", valid + invalid);
    assert!(valid >= 90 && invalid >= 28);
}

#[test]
fn vectors_filecoin_bigint() {
    let v = vectors(BIGINTS);
    let mut n = 0usize;
    for case in v["vectors"].as_array().unwrap() {
        let decimal: num_bigint::BigInt = case["decimal"].as_str().unwrap().parse().unwrap();
        let t = TokenAmount::from_atto(decimal.clone());
        let bytes = unhex(case["bytes_hex"].as_str().unwrap());
        let cbor = unhex(case["cbor_hex"].as_str().unwrap());
        assert_eq!(t.to_cbor_bytes(), bytes, "{decimal}");
        assert_eq!(codec::to_vec(&t).unwrap(), cbor, "{decimal}");
        assert_eq!(
            codec::from_slice::<TokenAmount>(&cbor).unwrap(),
            t,
            "{decimal}"
        );
        n += 1;
    }
    let mut rejected = 0usize;
    for case in v["decode_must_reject"].as_array().unwrap() {
        let cbor = unhex(case["cbor_hex"].as_str().unwrap());
        assert!(
            codec::from_slice::<TokenAmount>(&cbor).is_err(),
            "{}",
            case["why"]
        );
        rejected += 1;
    }
    for case in v["encode_must_fail"].as_array().unwrap() {
        let decimal: num_bigint::BigInt = case["decimal"].as_str().unwrap().parse().unwrap();
        let t = TokenAmount::from_atto(decimal);
        assert!(codec::to_vec(&t).is_err(), "{}", case["why"]);
        assert!(t.check_size().is_err());
        rejected += 1;
    }
    let mut lenient = 0usize;
    for case in v["lenient_decode_observed"].as_array().unwrap() {
        let cbor = unhex(case["cbor_hex"].as_str().unwrap());
        let want: num_bigint::BigInt = case["decodes_to"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            codec::from_slice::<TokenAmount>(&cbor).unwrap(),
            TokenAmount::from_atto(want)
        );
        lenient += 1;
    }
    eprintln!(
        "filecoin_bigint.json: {n} vectors round-tripped, {rejected} must-reject cases rejected, {lenient} lenient forms decoded like Go"
    );
    report("filecoin_bigint.json", n + rejected + lenient);
    assert!(n >= 700);
}

#[test]
fn vectors_paych_signed_voucher() {
    let v = vectors(VOUCHERS);
    let mut n = 0usize;
    let mut malformed = 0usize;
    for case in v["vectors"].as_array().unwrap() {
        let Some(cbor_hex) = case["cbor_hex"].as_str() else {
            continue;
        };
        let cbor = unhex(cbor_hex);
        let use_as = case["use_as"].as_str().unwrap_or_default();
        if use_as.starts_with("INVALID") || use_as.contains("malformed") {
            assert!(
                codec::from_slice::<SignedVoucher>(&cbor).is_err(),
                "{}",
                case["name"]
            );
            malformed += 1;
            continue;
        }
        let sv: SignedVoucher =
            codec::from_slice(&cbor).unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        assert_eq!(
            codec::to_vec(&sv).unwrap(),
            cbor,
            "{} re-encodes identically",
            case["name"]
        );
        assert_eq!(
            sv.signing_bytes().unwrap(),
            unhex(case["signing_bytes_hex"].as_str().unwrap()),
            "{}",
            case["name"]
        );
        if let Some(d) = case.get("decoded") {
            let ch = d["ChannelAddr"]["bytes_hex"].as_str().unwrap();
            assert_eq!(sv.channel_addr.to_bytes(), unhex(ch));
            assert_eq!(sv.lane, d["Lane"].as_u64().unwrap());
            assert_eq!(sv.nonce, d["Nonce"].as_u64().unwrap());
            assert_eq!(
                sv.amount.atto().to_string(),
                d["Amount"]["decimal"].as_str().unwrap()
            );
        }
        n += 1;
    }
    eprintln!(
        "paych_signed_voucher.json: {n} vouchers decoded, re-encoded identically and signing bytes matched; {malformed} malformed rejected"
    );
    report("paych_signed_voucher.json", n + malformed);
    assert!(n >= 3);
}

#[test]
fn vectors_retrievalmarket_enums() {
    let v = vectors(RETRIEVALMARKET);
    // enum numbers and names
    let mut n = 0usize;
    for (enum_name, values) in v["enums"].as_object().unwrap() {
        for (name, num) in values.as_object().unwrap() {
            let num = num.as_u64().unwrap();
            let got = match enum_name.as_str() {
                "DealStatus" => DealStatus::try_from(num).unwrap().name(),
                "QueryResponseStatus" => QueryResponseStatus::try_from(num).unwrap().name(),
                "QueryItemStatus" => QueryItemStatus::try_from(num).unwrap().name(),
                other => panic!("unexpected enum {other}"),
            };
            assert_eq!(got, name);
            n += 1;
        }
    }
    assert_eq!(DealStatus::ALL.len(), 35);
    report("retrievalmarket_types.json (enums)", n);
}

#[test]
fn vectors_retrievalmarket_wire_format() {
    let v = vectors(RETRIEVALMARKET);
    // map keys in wire order
    let cid: cid::Cid = "bafkqaaa".parse().unwrap();
    let addr: Address = "f01000".parse().unwrap();
    let mut params = Params::new(TokenAmount::from_atto(1u64), 2, 3);
    params.selector = Some(rm_types::explore_all_selector());
    params.piece_cid = Some(cid);
    let samples: Vec<(&str, Vec<u8>)> = vec![
        ("Query", codec::to_vec(&Query::new(cid)).unwrap()),
        (
            "QueryParams",
            codec::to_vec(&Query::new(cid).params).unwrap(),
        ),
        (
            "QueryResponse",
            codec::to_vec(&sample_query_response(addr.clone())).unwrap(),
        ),
        (
            "DealProposal",
            codec::to_vec(&DealProposal {
                payload_cid: cid,
                id: DealId(1),
                params: params.clone(),
                resume: None,
            })
            .unwrap(),
        ),
        ("Params", codec::to_vec(&params).unwrap()),
        (
            "DealResponse",
            codec::to_vec(&DealResponse {
                status: DealStatus::Accepted,
                id: DealId(1),
                payment_owed: TokenAmount::zero(),
                message: String::new(),
                blocks: vec![],
            })
            .unwrap(),
        ),
        (
            "DealPayment",
            codec::to_vec(&DealPayment {
                id: DealId(1),
                payment_channel: addr.clone(),
                payment_voucher: None,
            })
            .unwrap(),
        ),
    ];
    let mut structs = 0usize;
    for (name, bytes) in samples {
        let want: Vec<String> = v["structs"][name]["fields_in_wire_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["key"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(top_level_keys(&bytes), want, "{name}");
        structs += 1;
    }
    for (name, bytes) in [
        (
            "PaymentInfo",
            codec::to_vec(&rm_types::PaymentInfo {
                pay_ch: addr.clone(),
                lane: 1,
            })
            .unwrap(),
        ),
        (
            "RetrievalPeer",
            codec::to_vec(&rm_types::RetrievalPeer {
                address: addr.clone(),
                id: rm_types::PeerId(vec![1]),
                piece_cid: None,
            })
            .unwrap(),
        ),
        ("Ask", codec::to_vec(&rm_types::Ask::default()).unwrap()),
    ] {
        let want: Vec<String> = v["other_structs_in_file"][name]["fields_in_wire_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["key"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(top_level_keys(&bytes), want, "{name}");
        structs += 1;
    }
    // protocol ids and the selector
    let mut ids = 0usize;
    assert!(
        v["protocols"]["query"]
            .as_str()
            .unwrap()
            .starts_with(rm_types::protocol::QUERY_PROTOCOL_V1)
    );
    ids += 1;
    for (name, ours) in [
        (
            "DealProposal",
            rm_types::protocol::voucher_types::DEAL_PROPOSAL,
        ),
        (
            "DealResponse",
            rm_types::protocol::voucher_types::DEAL_RESPONSE,
        ),
        (
            "DealPayment",
            rm_types::protocol::voucher_types::DEAL_PAYMENT,
        ),
    ] {
        assert_eq!(
            v["protocols"]["data_transfer_voucher_types"][name], ours,
            "{name}"
        );
        ids += 1;
    }
    let sel = unhex(
        v["selector_explore_all_recursively"]["dag_cbor_hex"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(
        codec::to_vec(&rm_types::explore_all_selector()).unwrap(),
        sel
    );
    assert_eq!(
        rm_types::messages::EXPLORE_ALL_SELECTOR_BYTES,
        sel.as_slice()
    );
    let selectors = 1usize;
    eprintln!(
        "retrievalmarket_types.json: {structs} struct key orders, {ids} protocol ids and {selectors} selector checked"
    );
    report(
        "retrievalmarket_types.json (wire format)",
        structs + ids + selectors,
    );
}

fn sample_query_response(payment_address: Address) -> QueryResponse {
    QueryResponse {
        status: QueryResponseStatus::Available,
        piece_cid_found: QueryItemStatus::Available,
        size: 64,
        payment_address,
        min_price_per_byte: TokenAmount::from_atto(22u64),
        max_payment_interval: 999,
        max_payment_interval_increase: 100,
        message: "message".into(),
        unseal_price: TokenAmount::from_atto(33u64),
    }
}

/// The keys of a top-level CBOR map, in encoded order.
fn top_level_keys(bytes: &[u8]) -> Vec<String> {
    assert_eq!(bytes[0] >> 5, 5, "a map");
    assert!(bytes[0] & 0x1f < 24, "small map");
    let next_item = |at: usize| match codec::ItemScanner::new(1 << 20).feed(&bytes[at..]).unwrap() {
        codec::Scan::Complete(len) => len,
        codec::Scan::NeedMore => panic!("truncated"),
    };
    let mut keys = Vec::new();
    let mut pos = 1;
    for _ in 0..(bytes[0] & 0x1f) {
        let key_len = next_item(pos);
        keys.push(codec::from_slice::<String>(&bytes[pos..pos + key_len]).unwrap());
        pos += key_len;
        pos += next_item(pos);
    }
    assert_eq!(pos, bytes.len());
    keys
}

// ---------------------------------------------------------------------------------------
// Golden bytes produced by go-fil-markets, as asserted in filecoin-project/cpp-filecoin's
// retrieval-market protocol tests (payload CID and address are the ones those tests use).

const CID_BYTES: &str =
    "d82a58230012204bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a";
const ADDR: &str = "t2i4llai5x72clnz643iydyplvjmni74x4vyme7ny";

fn golden_cid() -> cid::Cid {
    "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb"
        .parse()
        .unwrap()
}

fn golden_params() -> Params {
    Params {
        selector: Some(rm_types::explore_all_selector()),
        piece_cid: Some(golden_cid()),
        price_per_byte: TokenAmount::from_atto(12u64),
        payment_interval: 222,
        payment_interval_increase: 33,
        unseal_price: TokenAmount::from_atto(23u64),
    }
}

/// Re-encodes a (struct-order) Go map message through the generic data model, which
/// writes keys canonically: the canonical form of the Go bytes.
fn canonical(bytes: &[u8]) -> Vec<u8> {
    let ipld: ipld_core::ipld::Ipld = codec::from_slice(bytes).unwrap();
    codec::to_vec(&ipld).unwrap()
}

fn check_map<T>(go_hex: &str, want: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let go = unhex(go_hex);
    let decoded: T = codec::from_slice(&go).unwrap();
    assert_eq!(&decoded, want);
    let ours = codec::to_vec(&decoded).unwrap();
    assert_eq!(
        ours,
        canonical(&go),
        "same bytes once keys are in canonical order"
    );
}

fn check_tuple<T>(go_hex: &str, want: &T)
where
    T: tuple::TupleEncoding + PartialEq + std::fmt::Debug,
    tuple::Tuple<T>: serde::de::DeserializeOwned,
{
    let go = unhex(go_hex);
    let decoded: T = tuple::from_slice(&go).unwrap();
    assert_eq!(&decoded, want);
    assert_eq!(
        tuple::to_vec(&decoded).unwrap(),
        go,
        "tuple re-encodes identically"
    );
}

#[test]
fn golden_query() {
    let q = Query::new(golden_cid());
    check_map(
        &format!(
            "a26a5061796c6f6164434944{CID_BYTES}6b5175657279506172616d73a1685069656365434944f6"
        ),
        &q,
    );
    check_tuple(&format!("82{CID_BYTES}81f6"), &q);
}

#[test]
fn golden_query_response() {
    let r = sample_query_response(ADDR.parse().unwrap());
    check_map(
        "a966537461747573006d5069656365434944466f756e64006453697a6518406e5061796d656e744164647265737355024716b023b7fe84b6e7dcda303c3d754b1a8ff2fc6f4d696e507269636550657242797465420016724d61785061796d656e74496e74657276616c1903e7781a4d61785061796d656e74496e74657276616c496e6372656173651864674d657373616765676d6573736167656b556e7365616c5072696365420021",
        &r,
    );
    check_tuple(
        "890000184055024716b023b7fe84b6e7dcda303c3d754b1a8ff2fc4200161903e71864676d657373616765420021",
        &r,
    );
}

#[test]
fn golden_deal_proposal() {
    let p = DealProposal {
        payload_cid: golden_cid(),
        id: DealId(12),
        params: golden_params(),
        resume: None,
    };
    check_map(
        &format!(
            "a36a5061796c6f6164434944{CID_BYTES}6249440c66506172616d73a66853656c6563746f72a16152a2616ca1646e6f6e65a0623a3ea16161a1613ea16140a0685069656365434944{CID_BYTES}6c50726963655065724279746542000c6f5061796d656e74496e74657276616c18de775061796d656e74496e74657276616c496e63726561736518216b556e7365616c5072696365420017"
        ),
        &p,
    );
    check_tuple(
        &format!(
            "83{CID_BYTES}0c86a16152a2616ca1646e6f6e65a0623a3ea16161a1613ea16140a0{CID_BYTES}42000c18de1821420017"
        ),
        &p,
    );
}

#[test]
fn golden_deal_response() {
    let r = DealResponse {
        status: DealStatus::Accepted,
        id: DealId(12),
        payment_owed: TokenAmount::from_atto(222u64),
        message: "message".into(),
        blocks: vec![],
    };
    check_map(
        "a466537461747573066249440c6b5061796d656e744f7765644200de674d657373616765676d657373616765",
        &r,
    );
    check_tuple("84060c4200de676d657373616765", &r);
    // with blocks: 5 keys / 5 elements, and back
    let with = DealResponse {
        blocks: vec![rm_types::Block {
            prefix: vec![1, 0x55, 0x12, 0x20],
            data: vec![7; 3].into(),
        }],
        ..r
    };
    assert_eq!(
        codec::from_slice::<DealResponse>(&codec::to_vec(&with).unwrap()).unwrap(),
        with
    );
    let t = tuple::to_vec(&with).unwrap();
    assert_eq!(t[0], 0x85);
    assert_eq!(tuple::from_slice::<DealResponse>(&t).unwrap(), with);
}

#[test]
fn golden_deal_payment() {
    let addr: Address = ADDR.parse().unwrap();
    let mut voucher = SignedVoucher::new(addr.clone(), 42, 1, TokenAmount::from_atto(22u64));
    voucher.time_lock_min = 100;
    voucher.time_lock_max = 200;
    voucher.secret_hash = vec![0x12, 0x34];
    voucher.min_settle_height = 333;
    let p = DealPayment {
        id: DealId(12),
        payment_channel: addr,
        payment_voucher: Some(voucher),
    };
    check_map(
        "a36249440c6e5061796d656e744368616e6e656c55024716b023b7fe84b6e7dcda303c3d754b1a8ff2fc6e5061796d656e74566f75636865728b55024716b023b7fe84b6e7dcda303c3d754b1a8ff2fc186418c8421234f6182a0142001619014d80f6",
        &p,
    );
}

#[test]
fn map_decoding_is_tolerant() {
    // keys in any order, unknown keys skipped, optional keys missing
    let bytes = codec::to_vec(&ipld_core::ipld::Ipld::Map(
        [
            ("Zzz".to_owned(), ipld_core::ipld::Ipld::Integer(5)),
            ("ID".to_owned(), ipld_core::ipld::Ipld::Integer(7)),
            ("Status".to_owned(), ipld_core::ipld::Ipld::Integer(15)),
        ]
        .into_iter()
        .collect(),
    ))
    .unwrap();
    let r: DealResponse = codec::from_slice(&bytes).unwrap();
    assert_eq!(r.id, DealId(7));
    assert_eq!(r.status, DealStatus::Completed);
    assert!(r.payment_owed.is_zero() && r.message.is_empty() && r.blocks.is_empty());
    // unknown status number is a typed error
    let bad = unhex("a266537461747573186462494407");
    assert!(codec::from_slice::<DealResponse>(&bad).is_err());
}
