//! The public ipld/codec-fixtures vectors (DAG-PB and DAG-CBOR blocks with their CIDs, and
//! the negative fixtures), kept in `testdata/ipld_codec_fixtures.json` (source in
//! `testdata/SOURCES.md`): positive fixtures decode and re-encode to identical bytes with the
//! right CID; negative ones fail. A missing file fails the tests. Each `vectors_*` test
//! prints `vectors rm-blockio/ipld_codec_fixtures.json (<part>): <N> checked`.

use cid::Cid;
use ipld_core::ipld::Ipld;
use rm_blockio::codec::{self, DAG_CBOR, DAG_PB, Node, SHA2_256};
use rm_blockio::selector::Selector;
use rm_blockio::traversal::Traversal;
use serde_json::Value;
use std::collections::BTreeMap;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/ipld_codec_fixtures.json"
);

/// The vector file; missing, unreadable or invalid, the test fails.
fn load() -> Value {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("vector file {VECTORS} cannot be read: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("vector file {VECTORS} is not JSON: {e}"))
}

/// Prints the count line CI looks for, and fails a test that checked nothing.
fn report(part: &str, checked: usize) {
    println!("vectors rm-blockio/ipld_codec_fixtures.json ({part}): {checked} checked");
    assert!(
        checked > 0,
        "ipld_codec_fixtures.json ({part}): no vectors checked"
    );
}

/// DAG-JSON (as serde_json) to the IPLD data model.
fn dag_json(v: &Value) -> Ipld {
    match v {
        Value::Null => Ipld::Null,
        Value::Bool(b) => Ipld::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Ipld::Integer(i128::from(i)),
            (_, Some(u)) => Ipld::Integer(i128::from(u)),
            _ => Ipld::Float(n.as_f64().unwrap()),
        },
        Value::String(s) => Ipld::String(s.clone()),
        Value::Array(a) => Ipld::List(a.iter().map(dag_json).collect()),
        Value::Object(m) => {
            if m.len() == 1 {
                match m.get("/") {
                    Some(Value::String(c)) => return Ipld::Link(c.parse::<Cid>().unwrap()),
                    Some(Value::Object(b)) if b.len() == 1 => {
                        if let Some(Value::String(b64)) = b.get("bytes") {
                            return Ipld::Bytes(
                                data_encoding::BASE64_NOPAD.decode(b64.as_bytes()).unwrap(),
                            );
                        }
                    }
                    _ => {}
                }
            }
            Ipld::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), dag_json(v)))
                    .collect::<BTreeMap<_, _>>(),
            )
        }
    }
}

#[test]
fn vectors_positive_fixtures_round_trip_with_matching_cids() {
    let v = load();
    let mut checked = 0usize;
    for (section, codec) in [("dag_pb", DAG_PB), ("dag_cbor", DAG_CBOR)] {
        for f in v[section].as_array().unwrap() {
            let name = f["name"].as_str().unwrap();
            let bytes = hex::decode(f["hex"].as_str().unwrap()).unwrap();
            let cid: Cid = f["cid"].as_str().unwrap().parse().unwrap();
            assert_eq!(cid.codec(), codec, "{name}");
            assert_eq!(
                codec::cid_of(cid::Version::V1, codec, SHA2_256, &bytes).unwrap(),
                cid,
                "{name}: CID"
            );
            codec::verify(&cid, &bytes).unwrap();

            // ipld-core view: decode, re-encode canonically, identical bytes.
            let ipld = codec::decode_ipld(codec, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                codec::encode_ipld(codec, &ipld).unwrap(),
                bytes,
                "{name}: re-encode"
            );
            if let Some(json) = f.get("decoded_as_dag_json") {
                assert_eq!(ipld, dag_json(json), "{name}: decoded form");
            }

            // Ordered view: same value, and for DAG-CBOR the same bytes in the same order.
            let node = Node::decode(codec, &bytes).unwrap();
            if codec == DAG_CBOR {
                assert_eq!(
                    node.to_dag_cbor().unwrap(),
                    bytes,
                    "{name}: ordered re-encode"
                );
            }
            assert_eq!(Ipld::from(node), ipld, "{name}: ordered view");

            // The traversal accepts it as a root block.
            let mut t = Traversal::new(cid, &Selector::explore_all_recursively()).unwrap();
            t.advance(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            checked += 1;
        }
    }
    report("positive", checked);
    assert!(checked >= 20, "only {checked} fixtures");
}

#[test]
fn vectors_negative_fixtures_fail() {
    let v = load();
    let mut checked = 0usize;
    for (file, cases) in v["negative"].as_object().unwrap() {
        for case in cases.as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            if file.contains("/encode/") {
                let ipld = dag_json(&case["dag-json"]);
                let codec = if file.contains("dag-pb") {
                    DAG_PB
                } else {
                    DAG_CBOR
                };
                assert!(
                    codec::encode_ipld(codec, &ipld).is_err(),
                    "{file} {name}: encoded {ipld:?}"
                );
            } else {
                let bytes = hex::decode(case["hex"].as_str().unwrap()).unwrap();
                let codec = if file.contains("dag-pb") {
                    DAG_PB
                } else {
                    DAG_CBOR
                };
                assert!(
                    codec::decode_ipld(codec, &bytes).is_err(),
                    "{file} {name}: decoded"
                );
                assert!(
                    Node::decode(codec, &bytes).is_err(),
                    "{file} {name}: decoded (ordered)"
                );
                // The traversal refuses it as well, and stays where it was.
                let cid = codec::cid_of(cid::Version::V1, codec, SHA2_256, &bytes).unwrap();
                let mut t = Traversal::new(cid, &Selector::explore_all_recursively()).unwrap();
                assert!(t.advance(&bytes).is_err(), "{file} {name}: traversed");
                assert_eq!(t.next_link(), Some(&cid));
            }
            checked += 1;
        }
    }
    report("negative", checked);
    assert!(checked >= 30, "only {checked} negative fixtures");
}
