//! Small DAGs built from fuzz bytes: DAG-CBOR maps and lists, dag-pb nodes and raw blocks,
//! linking only to blocks built before them (so the graph is acyclic, but links may be
//! shared and repeated), with identity CIDs now and then.

use cid::Cid;
use rm_blockio::blockstore::{Blockstore, MemoryBlockstore};
use rm_blockio::codec::{self, DAG_CBOR, DAG_PB, IDENTITY, Node, RAW, SHA2_256};

use crate::Bytes;

/// Most blocks in one DAG.
pub const MAX_BLOCKS: usize = 16;

const KEYS: &[&str] = &["a", "b", "Links", "Hash", "Data", "0", "1", "x"];

/// Builds a DAG from `input` into `store`; returns its root (the last block built).
pub fn build(input: &mut Bytes<'_>, store: &MemoryBlockstore) -> Option<Cid> {
    let count = 1 + usize::from(input.byte()) % MAX_BLOCKS;
    let mut built: Vec<Cid> = Vec::new();
    for _ in 0..count {
        let kind = input.byte();
        let (codec_code, bytes) = match kind % 4 {
            0 => {
                let len = usize::from(input_len(input));
                (RAW, input.take(len).to_vec())
            }
            1 => {
                let links = usize::from(input.byte() % 6);
                let pb = ipld_dagpb_node(input, &built, links);
                (DAG_PB, pb)
            }
            _ => {
                let node = cbor_node(input, &built, 0);
                (DAG_CBOR, node.to_dag_cbor().ok()?)
            }
        };
        let hash = if kind & 0x80 != 0 && bytes.len() <= codec::MAX_IDENTITY_LEN {
            IDENTITY
        } else {
            SHA2_256
        };
        let cid = codec::cid_of(cid::Version::V1, codec_code, hash, &bytes).ok()?;
        store.put(&cid, &bytes).ok()?;
        built.push(cid);
    }
    built.last().copied()
}

fn input_len(input: &mut Bytes<'_>) -> u8 {
    input.byte() % 64
}

fn pick(input: &mut Bytes<'_>, built: &[Cid]) -> Option<Cid> {
    if built.is_empty() {
        return None;
    }
    Some(built[usize::from(input.byte()) % built.len()])
}

fn ipld_dagpb_node(input: &mut Bytes<'_>, built: &[Cid], links: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..links {
        if let Some(cid) = pick(input, built) {
            let name = KEYS[usize::from(input.byte()) % KEYS.len()].to_owned();
            out.push(ipld_dagpb::PbLink {
                cid,
                name: Some(name),
                size: Some(u64::from(input.byte())),
            });
        }
    }
    let len = usize::from(input.byte() % 16);
    let data = input.take(len).to_vec();
    codec::encode_dag_pb(ipld_dagpb::PbNode {
        links: out,
        data: Some(data.into()),
    })
}

fn cbor_node(input: &mut Bytes<'_>, built: &[Cid], depth: usize) -> Node {
    let b = input.byte();
    match b % 8 {
        0 | 1 => match pick(input, built) {
            Some(cid) => Node::link(cid),
            None => Node::Null,
        },
        2 if depth < 6 => Node::List(
            (0..b / 32)
                .map(|_| cbor_node(input, built, depth + 1))
                .collect(),
        ),
        3 if depth < 6 => {
            let mut entries: Vec<(String, Node)> = Vec::new();
            for _ in 0..b / 32 {
                let key = KEYS[usize::from(input.byte()) % KEYS.len()];
                if entries.iter().all(|(k, _)| k != key) {
                    entries.push((key.to_owned(), cbor_node(input, built, depth + 1)));
                }
            }
            Node::Map(entries)
        }
        4 => Node::Integer(i128::from(input.byte())),
        5 => Node::String(KEYS[usize::from(b >> 3) % KEYS.len()].to_owned()),
        6 => Node::Bytes(input.take(4).to_vec()),
        _ => Node::Bool(b & 0x80 != 0),
    }
}
