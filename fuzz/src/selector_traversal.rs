//! Selector parsing plus traversal over small DAGs built from the fuzz bytes: the
//! provider's [`BlockReader`] and the client's [`SelectorVerifier`] run the same
//! `(root, selector)`; every block the reader yields, the verifier must accept, in order,
//! and both must end (done or a typed error) within the work budget.
//!
//! Input: a little-endian u16 length, that many bytes of selector (DAG-CBOR), then the DAG
//! description ([`crate::dag`]).

use rm_blockio::blockstore::MemoryBlockstore;
use rm_blockio::{BlockReader, Selector, SelectorVerifier};

use crate::{Bytes, dag};

/// Most blocks taken from one traversal.
const MAX_BLOCKS: usize = 20_000;

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let mut input = Bytes(data);
    let len = usize::from(input.u16());
    let Ok(selector) = Selector::from_dag_cbor(input.take(len)) else {
        return;
    };
    // A parsed selector re-encodes to bytes that parse to the same selector.
    assert_eq!(
        Selector::from_dag_cbor(&selector.to_dag_cbor()).as_ref(),
        Ok(&selector)
    );
    let store = MemoryBlockstore::new();
    let Some(root) = dag::build(&mut input, &store) else {
        return;
    };
    let Ok(reader) = BlockReader::new(&store, root, &selector) else {
        return;
    };
    let mut verifier = SelectorVerifier::new(root, &selector).expect("the reader started");
    for block in reader.take(MAX_BLOCKS) {
        let Ok(block) = block else {
            return;
        };
        verifier
            .verify(&block)
            .expect("the verifier accepts what the reader yields");
    }
}
