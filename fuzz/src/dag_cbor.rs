//! DAG-CBOR blocks: the order-keeping data model traversal uses ([`Node`]) and ipld-core's
//! ([`rm_blockio::codec::decode_ipld`]); what one accepts, the other must too, and
//! re-encoding a decoded block is stable.

use rm_blockio::codec::{self, DAG_CBOR, Node};

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let node = Node::from_dag_cbor(data);
    let ipld = codec::decode_ipld(DAG_CBOR, data);
    assert_eq!(
        node.is_ok(),
        ipld.is_ok(),
        "the two decoders disagree: {node:?} / {ipld:?}"
    );
    if let Ok(node) = node {
        let once = node.to_dag_cbor().expect("a decoded node encodes");
        let again = Node::from_dag_cbor(&once).expect("its bytes decode");
        assert_eq!(again.to_dag_cbor().expect("encodes twice"), once);
        let mut canonical = node;
        canonical.canonicalize();
        let canonical = canonical.to_dag_cbor().expect("canonical encodes");
        let ipld = codec::encode_ipld(DAG_CBOR, &ipld.expect("checked")).expect("ipld encodes");
        assert_eq!(canonical, ipld, "canonical forms differ");
    }
}
