//! dag-pb blocks and the UnixFS data inside them: decoding, the data-model view, and
//! re-encoding (stable once decoded).

use rm_blockio::codec::{self, DAG_PB, Node};
use rm_blockio::unixfs::UnixFsData;

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let _ = UnixFsData::decode(data);
    let _ = codec::decode_ipld(DAG_PB, data);
    let Ok(node) = codec::decode_dag_pb(data) else {
        assert!(Node::from_dag_pb(data).is_err());
        return;
    };
    if let Some(d) = &node.data {
        let _ = UnixFsData::decode(d);
    }
    let view = Node::from_dag_pb(data).expect("decoded once, decodes again");
    assert!(matches!(view, Node::Map(_)));
    let once = codec::encode_dag_pb(node);
    let again = codec::decode_dag_pb(&once).expect("re-encoded dag-pb decodes");
    assert_eq!(codec::encode_dag_pb(again), once, "encoding is not stable");
}
