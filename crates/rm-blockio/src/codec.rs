//! Block codecs and hashes: dag-pb, dag-cbor, raw; sha2-256, blake2b-256 and identity.
//!
//! Two views of a block are offered:
//!
//! * [`Node`]: the IPLD data model **with map entries in the block's own order**. This is
//!   the view traversal uses, because go-ipld-prime visits map entries in the order the
//!   codec produced them (for DAG-CBOR: the encoded order; for dag-pb: the schema order
//!   `Links`, `Data` and `Hash`, `Name`, `Tsize`).
//! * [`Ipld`] (ipld-core): the usual Rust data model, maps sorted by key. [`decode_ipld`]
//!   and [`encode_ipld`] use `serde_ipld_dagcbor` and `ipld-dagpb`, and encode canonically.
//!
//! Hashing goes through [`digest`], which knows sha2-256, blake2b-256 and identity (plus
//! everything else in `multihash-codetable`'s enabled set). Identity digests are limited to
//! 64 bytes, the digest capacity of [`cid::Cid`].

use bytes::Bytes;
use cid::Cid;
use ipld_core::ipld::Ipld;
use multihash_codetable::{Code, MultihashDigest};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// Multicodec code of raw bytes.
pub const RAW: u64 = 0x55;
/// Multicodec code of dag-pb.
pub const DAG_PB: u64 = 0x70;
/// Multicodec code of DAG-CBOR.
pub const DAG_CBOR: u64 = 0x71;
/// Multihash code of the identity "hash" (the digest is the data itself).
pub const IDENTITY: u64 = 0x00;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;
/// Multihash code of blake2b-256.
pub const BLAKE2B_256: u64 = 0xb220;
/// Largest identity digest a [`Cid`] can hold.
pub const MAX_IDENTITY_LEN: usize = 64;

/// The multihash type used by [`Cid`].
pub type Multihash = multihash::Multihash<64>;

/// Errors of the codec layer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The multicodec is not one this crate decodes.
    #[error("unsupported codec {0:#x}")]
    UnsupportedCodec(u64),
    /// The multihash function is not one this crate computes.
    #[error("unsupported multihash code {0:#x}")]
    UnsupportedHash(u64),
    /// Identity "hashes" of more than [`MAX_IDENTITY_LEN`] bytes cannot be put in a CID.
    #[error("identity digest of {0} bytes exceeds {MAX_IDENTITY_LEN}")]
    IdentityTooLarge(usize),
    /// The bytes are not valid dag-pb, or a data-model value has no dag-pb form.
    #[error("invalid dag-pb: {0}")]
    DagPb(String),
    /// The bytes are not valid DAG-CBOR, or a value could not be encoded.
    #[error("invalid DAG-CBOR: {0}")]
    DagCbor(String),
    /// The data does not hash to the CID it was given for.
    #[error("data does not match CID {0}")]
    HashMismatch(Cid),
    /// A CID could not be built (e.g. CIDv0 with a codec other than dag-pb).
    #[error("invalid CID: {0}")]
    Cid(String),
}

/// An IPLD data-model value that keeps map entries in their original order.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer (DAG-CBOR range: -2^64 ..= 2^64-1).
    Integer(i128),
    /// A float.
    Float(f64),
    /// A UTF-8 string.
    String(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<Node>),
    /// A map with string keys, in the order the entries appeared.
    Map(Vec<(String, Node)>),
    /// A link (boxed: a CID is ~90 bytes, and keeping `Node` small bounds the memory a
    /// decoded block takes to a small multiple of its size).
    Link(Box<Cid>),
}

impl Node {
    /// A link node.
    pub fn link(cid: Cid) -> Node {
        Node::Link(Box::new(cid))
    }

    /// The value under `key` if this is a map holding it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Whether this is a map or a list (the kinds a selector can explore).
    pub fn is_recursive(&self) -> bool {
        matches!(self, Node::Map(_) | Node::List(_))
    }

    /// Sorts every map (recursively) into canonical DAG-CBOR key order: shorter keys first,
    /// then bytewise.
    pub fn canonicalize(&mut self) {
        match self {
            Node::Map(entries) => {
                entries.sort_by(|(a, _), (b, _)| canonical_key_order(a, b));
                for (_, v) in entries.iter_mut() {
                    v.canonicalize();
                }
            }
            Node::List(items) => items.iter_mut().for_each(Node::canonicalize),
            _ => {}
        }
    }

    /// Decodes DAG-CBOR, keeping map entries in encoded order. Duplicate map keys, trailing
    /// bytes, tags other than 42, indefinite lengths and nesting deeper than the decoder's
    /// limit are rejected.
    pub fn from_dag_cbor(bytes: &[u8]) -> Result<Node, Error> {
        serde_ipld_dagcbor::from_slice(bytes).map_err(|e| Error::DagCbor(e.to_string()))
    }

    /// Encodes as DAG-CBOR **in the node's own map order** (call [`Node::canonicalize`]
    /// first for canonical bytes). Floats are always written as 64-bit. Fails only for
    /// integers outside the DAG-CBOR range.
    pub fn to_dag_cbor(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        write_cbor(self, &mut out)?;
        Ok(out)
    }

    /// Decodes dag-pb into its data-model view: `{Links: [{Hash, Name?, Tsize?}], Data?}`
    /// in schema order (`Links` first, as go-codec-dagpb iterates it).
    pub fn from_dag_pb(bytes: &[u8]) -> Result<Node, Error> {
        let node = decode_dag_pb(bytes)?;
        Ok(pb_to_node(node, true))
    }

    /// Decodes a block of the given codec into its data-model view (raw: a bytes node).
    pub fn decode(codec: u64, bytes: &[u8]) -> Result<Node, Error> {
        match codec {
            RAW => Ok(Node::Bytes(bytes.to_vec())),
            DAG_PB => Node::from_dag_pb(bytes),
            DAG_CBOR => Node::from_dag_cbor(bytes),
            other => Err(Error::UnsupportedCodec(other)),
        }
    }
}

/// Canonical DAG-CBOR map key order (RFC 7049 length-first).
pub fn canonical_key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Decodes dag-pb bytes (via `ipld-dagpb`).
pub fn decode_dag_pb(bytes: &[u8]) -> Result<ipld_dagpb::PbNode, Error> {
    ipld_dagpb::PbNode::from_bytes(Bytes::copy_from_slice(bytes))
        .map_err(|e| Error::DagPb(e.to_string()))
}

/// Encodes a dag-pb node (links are sorted by name, stable, as the spec requires).
pub fn encode_dag_pb(node: ipld_dagpb::PbNode) -> Vec<u8> {
    node.into_bytes()
}

/// The data-model view of a decoded dag-pb node. With `with_data == false` the `Data`
/// bytes are replaced by an empty placeholder (traversal never looks inside them).
pub(crate) fn pb_to_node(node: ipld_dagpb::PbNode, with_data: bool) -> Node {
    let links = node
        .links
        .into_iter()
        .map(|l| {
            let mut m = Vec::with_capacity(3);
            m.push(("Hash".to_owned(), Node::link(l.cid)));
            if let Some(name) = l.name {
                m.push(("Name".to_owned(), Node::String(name)));
            }
            if let Some(size) = l.size {
                m.push(("Tsize".to_owned(), Node::Integer(i128::from(size))));
            }
            Node::Map(m)
        })
        .collect();
    let mut entries = vec![("Links".to_owned(), Node::List(links))];
    if let Some(data) = node.data {
        let data = if with_data { data.to_vec() } else { Vec::new() };
        entries.push(("Data".to_owned(), Node::Bytes(data)));
    }
    Node::Map(entries)
}

/// Decodes a block into ipld-core's [`Ipld`] (maps sorted by key).
pub fn decode_ipld(codec: u64, bytes: &[u8]) -> Result<Ipld, Error> {
    match codec {
        RAW => Ok(Ipld::Bytes(bytes.to_vec())),
        DAG_PB => ipld_dagpb::to_ipld(bytes).map_err(|e| Error::DagPb(e.to_string())),
        DAG_CBOR => {
            let ipld: Ipld =
                serde_ipld_dagcbor::from_slice(bytes).map_err(|e| Error::DagCbor(e.to_string()))?;
            if !finite(&ipld) {
                return Err(Error::DagCbor(NOT_FINITE.to_owned()));
            }
            Ok(ipld)
        }
        other => Err(Error::UnsupportedCodec(other)),
    }
}

/// Why a DAG-CBOR float is refused: the spec forbids NaN and the infinities (found by the
/// `dag_cbor` fuzz target: serde_ipld_dagcbor decodes them but will not encode them).
const NOT_FINITE: &str = "DAG-CBOR forbids NaN and infinite floats";

/// Whether every float in `ipld` is finite (nesting is bounded by the decoder's limit).
fn finite(ipld: &Ipld) -> bool {
    match ipld {
        Ipld::Float(f) => f.is_finite(),
        Ipld::List(items) => items.iter().all(finite),
        Ipld::Map(map) => map.values().all(finite),
        _ => true,
    }
}

/// Encodes an [`Ipld`] value with the given codec (canonical DAG-CBOR; dag-pb requires the
/// `{Data?, Links}` form and rejects anything else).
pub fn encode_ipld(codec: u64, ipld: &Ipld) -> Result<Vec<u8>, Error> {
    match codec {
        RAW => match ipld {
            Ipld::Bytes(b) => Ok(b.clone()),
            _ => Err(Error::UnsupportedCodec(RAW)),
        },
        DAG_PB => {
            // ipld-dagpb accepts a missing `Links`; the dag-pb spec does not.
            match ipld {
                Ipld::Map(m) if matches!(m.get("Links"), Some(Ipld::List(_))) => {}
                _ => return Err(Error::DagPb("Links must be a list".into())),
            }
            ipld_dagpb::from_ipld(ipld).map_err(|e| Error::DagPb(e.to_string()))
        }
        DAG_CBOR => serde_ipld_dagcbor::to_vec(ipld).map_err(|e| Error::DagCbor(e.to_string())),
        other => Err(Error::UnsupportedCodec(other)),
    }
}

/// Hashes `data` with the multihash function `code`.
pub fn digest(code: u64, data: &[u8]) -> Result<Multihash, Error> {
    if code == IDENTITY {
        if data.len() > MAX_IDENTITY_LEN {
            return Err(Error::IdentityTooLarge(data.len()));
        }
        return Multihash::wrap(IDENTITY, data).map_err(|e| Error::Cid(e.to_string()));
    }
    let code = Code::try_from(code).map_err(|_| Error::UnsupportedHash(code))?;
    Ok(code.digest(data))
}

/// Builds the CID of `data` for a CID version, codec and hash function.
pub fn cid_of(version: cid::Version, codec: u64, hash: u64, data: &[u8]) -> Result<Cid, Error> {
    let mh = digest(hash, data)?;
    Cid::new(version, codec, mh).map_err(|e| Error::Cid(e.to_string()))
}

/// Checks that `data` hashes to `cid` (identity CIDs: that the data equals the digest).
pub fn verify(cid: &Cid, data: &[u8]) -> Result<(), Error> {
    let mh = cid.hash();
    let ok = if mh.code() == IDENTITY {
        mh.digest() == data
    } else {
        let computed = digest(mh.code(), data)?;
        computed.digest() == mh.digest() && computed.size() == mh.size()
    };
    if ok {
        Ok(())
    } else {
        Err(Error::HashMismatch(*cid))
    }
}

impl From<Ipld> for Node {
    fn from(ipld: Ipld) -> Node {
        match ipld {
            Ipld::Null => Node::Null,
            Ipld::Bool(b) => Node::Bool(b),
            Ipld::Integer(i) => Node::Integer(i),
            Ipld::Float(f) => Node::Float(f),
            Ipld::String(s) => Node::String(s),
            Ipld::Bytes(b) => Node::Bytes(b),
            Ipld::List(l) => Node::List(l.into_iter().map(Node::from).collect()),
            Ipld::Map(m) => Node::Map(m.into_iter().map(|(k, v)| (k, Node::from(v))).collect()),
            Ipld::Link(c) => Node::link(c),
        }
    }
}

impl From<Node> for Ipld {
    /// Converts to ipld-core's value; map order is lost (later duplicates win).
    fn from(node: Node) -> Ipld {
        match node {
            Node::Null => Ipld::Null,
            Node::Bool(b) => Ipld::Bool(b),
            Node::Integer(i) => Ipld::Integer(i),
            Node::Float(f) => Ipld::Float(f),
            Node::String(s) => Ipld::String(s),
            Node::Bytes(b) => Ipld::Bytes(b),
            Node::List(l) => Ipld::List(l.into_iter().map(Ipld::from).collect()),
            Node::Map(m) => Ipld::Map(
                m.into_iter()
                    .map(|(k, v)| (k, Ipld::from(v)))
                    .collect::<BTreeMap<_, _>>(),
            ),
            Node::Link(c) => Ipld::Link(*c),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an IPLD data-model value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Integer(i128::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Integer(i128::from(v)))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Integer(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        i128::try_from(v)
            .map(Node::Integer)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        if !v.is_finite() {
            return Err(E::custom(NOT_FINITE));
        }
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Bytes(v.to_vec()))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Node, E> {
        Ok(Node::Bytes(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        // Never trust the announced length beyond a small bound.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Node)> =
            Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some((k, v)) = map.next_entry::<String, Node>()? {
            entries.push((k, v));
        }
        let mut keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(de::Error::custom("duplicate map key"));
        }
        Ok(Node::Map(entries))
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        // serde_ipld_dagcbor hands tag 42 (a CID) to us as a newtype struct of bytes.
        d.deserialize_bytes(cid::serde::BytesToCidVisitor)
            .map(Node::link)
    }
}

fn write_head(major: u8, value: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    if value < 24 {
        out.push(m | value as u8);
    } else if value <= u64::from(u8::MAX) {
        out.push(m | 24);
        out.push(value as u8);
    } else if value <= u64::from(u16::MAX) {
        out.push(m | 25);
        out.extend_from_slice(&(value as u16).to_be_bytes());
    } else if value <= u64::from(u32::MAX) {
        out.push(m | 26);
        out.extend_from_slice(&(value as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

fn write_cbor(node: &Node, out: &mut Vec<u8>) -> Result<(), Error> {
    let range = || Error::DagCbor("integer outside the DAG-CBOR range".into());
    match node {
        Node::Null => out.push(0xf6),
        Node::Bool(false) => out.push(0xf4),
        Node::Bool(true) => out.push(0xf5),
        Node::Integer(i) => {
            if *i >= 0 {
                write_head(0, u64::try_from(*i).map_err(|_| range())?, out);
            } else {
                // Major type 1 holds -1 - n.
                write_head(1, u64::try_from(-1 - *i).map_err(|_| range())?, out);
            }
        }
        Node::Float(f) => {
            out.push(0xfb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Node::String(s) => {
            write_head(3, s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
        Node::Bytes(b) => {
            write_head(2, b.len() as u64, out);
            out.extend_from_slice(b);
        }
        Node::List(items) => {
            write_head(4, items.len() as u64, out);
            for item in items {
                write_cbor(item, out)?;
            }
        }
        Node::Map(entries) => {
            write_head(5, entries.len() as u64, out);
            for (k, v) in entries {
                write_head(3, k.len() as u64, out);
                out.extend_from_slice(k.as_bytes());
                write_cbor(v, out)?;
            }
        }
        Node::Link(cid) => {
            out.extend_from_slice(&[0xd8, 0x2a]);
            let bytes = cid.to_bytes();
            write_head(2, bytes.len() as u64 + 1, out);
            out.push(0x00);
            out.extend_from_slice(&bytes);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_dag_cbor_round_trip_keeps_order() {
        let cid = cid_of(cid::Version::V1, RAW, SHA2_256, b"alpha").unwrap();
        let node = Node::Map(vec![
            ("zz".into(), Node::Integer(-5)),
            ("a".into(), Node::link(cid)),
            (
                "list".into(),
                Node::List(vec![Node::Bool(true), Node::Null, Node::Float(1.5)]),
            ),
            ("b".into(), Node::Bytes(vec![1, 2, 3])),
            ("big".into(), Node::Integer(i128::from(u64::MAX))),
            ("neg".into(), Node::Integer(-(1i128 << 64))),
        ]);
        let bytes = node.to_dag_cbor().unwrap();
        let back = Node::from_dag_cbor(&bytes).unwrap();
        assert_eq!(back, node);
        // Canonical form equals serde_ipld_dagcbor's encoding of the ipld-core value.
        let mut canon = node.clone();
        canon.canonicalize();
        let ipld: Ipld = node.into();
        assert_eq!(
            canon.to_dag_cbor().unwrap(),
            serde_ipld_dagcbor::to_vec(&ipld).unwrap()
        );
    }

    #[test]
    fn nodes_stay_small() {
        // Bounds decoded-block memory: at most 32 bytes per CBOR item (each item is >= 1 byte).
        assert!(size_of::<Node>() <= 32);
    }

    #[test]
    fn duplicate_keys_and_trailing_bytes_are_rejected() {
        assert!(
            Node::from_dag_cbor(&hex::decode("a3636261720363666f6f0163666f6f02").unwrap()).is_err()
        );
        assert!(Node::from_dag_cbor(&[0xf6, 0xf6]).is_err());
        assert!(
            Node::from_dag_cbor(&[0x9f, 0xff]).is_err(),
            "indefinite length"
        );
        assert!(Node::from_dag_cbor(&[]).is_err());
    }

    #[test]
    fn nan_and_infinite_floats_are_rejected() {
        // The first is the `dag_cbor` fuzz target's crash (a NaN with a payload).
        for bad in [
            "fbffffffbebebebebe",
            "fb7ff8000000000000",
            "fb7ff0000000000000",
            "fbfff0000000000000",
            "82f6fb7ff0000000000000",
            "a16161fbfff0000000000000",
        ] {
            let bytes = hex::decode(bad).unwrap();
            assert!(Node::from_dag_cbor(&bytes).is_err(), "{bad}");
            assert!(decode_ipld(DAG_CBOR, &bytes).is_err(), "{bad}");
        }
        let fine = hex::decode("fb3ff8000000000000").unwrap();
        assert_eq!(Node::from_dag_cbor(&fine).unwrap(), Node::Float(1.5));
        assert_eq!(decode_ipld(DAG_CBOR, &fine).unwrap(), Ipld::Float(1.5));
    }

    #[test]
    fn digests_and_verification() {
        let data = b"hello world";
        for code in [SHA2_256, BLAKE2B_256, IDENTITY] {
            let cid = cid_of(cid::Version::V1, RAW, code, data).unwrap();
            verify(&cid, data).unwrap();
            assert_eq!(verify(&cid, b"hello worle"), Err(Error::HashMismatch(cid)));
        }
        assert_eq!(
            digest(IDENTITY, &[0u8; 65]),
            Err(Error::IdentityTooLarge(65))
        );
        assert_eq!(digest(0x7f, data), Err(Error::UnsupportedHash(0x7f)));
        assert!(cid_of(cid::Version::V0, RAW, SHA2_256, data).is_err());
        let v0 = cid_of(cid::Version::V0, DAG_PB, SHA2_256, data).unwrap();
        assert_eq!(v0.version(), cid::Version::V0);
    }

    #[test]
    fn dag_pb_view_is_in_schema_order() {
        let target = cid_of(cid::Version::V1, RAW, SHA2_256, b"x").unwrap();
        let pb = ipld_dagpb::PbNode {
            links: vec![ipld_dagpb::PbLink {
                cid: target,
                name: Some(String::new()),
                size: Some(1),
            }],
            data: Some(Bytes::from_static(b"\x08\x02")),
        };
        let bytes = encode_dag_pb(pb);
        let node = Node::from_dag_pb(&bytes).unwrap();
        let Node::Map(entries) = &node else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0, "Links");
        assert_eq!(entries[1], ("Data".to_owned(), Node::Bytes(vec![8, 2])));
        let link = &node.get("Links").unwrap();
        let Node::List(links) = link else {
            panic!("not a list")
        };
        let keys: Vec<_> = match &links[0] {
            Node::Map(m) => m.iter().map(|(k, _)| k.as_str()).collect(),
            _ => vec![],
        };
        assert_eq!(keys, ["Hash", "Name", "Tsize"]);
        assert_eq!(
            Node::decode(0x0129, &bytes),
            Err(Error::UnsupportedCodec(0x0129))
        );
    }
}
