//! Shared by the integration tests: fixtures, a plain HTTP client, and an independent
//! reading of DAGs (not the crate's walk) to say which blocks a response must hold.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rm_blockio::codec::{self, DAG_CBOR, DAG_PB, Node};
use rm_blockio::{Blockstore, MemoryBlockstore};

/// A fixture CAR from `testdata/`, loaded into a store; returns the store and the roots.
/// A missing file fails the test.
pub fn fixture(name: &str) -> (Arc<MemoryBlockstore>, Vec<Cid>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let store = Arc::new(MemoryBlockstore::new());
    let roots = rm_blockio::car::import(&bytes[..], store.as_ref()).unwrap();
    (store, roots)
}

/// A response as a plain HTTP client sees it.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body ended with an error (the server cut the response).
    pub cut: bool,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as a CAR, read with rm-blockio's verifying reader: (roots, block CIDs).
    pub fn car(&self) -> (Vec<Cid>, Vec<Cid>) {
        let summary = rm_blockio::car::inspect(&self.body[..]).expect("a valid CAR");
        (
            summary.roots,
            summary.sections.into_iter().map(|(c, _)| c).collect(),
        )
    }
}

/// One request over a fresh connection (bounded by 30 s).
pub async fn request(
    addr: std::net::SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Got {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "test");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = sender
            .send_request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let (parts, mut body) = response.into_parts();
        let mut bytes = Vec::new();
        let mut cut = false;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Ok(d) = f.into_data() {
                        bytes.extend_from_slice(&d);
                    }
                }
                Err(_) => {
                    cut = true;
                    break;
                }
            }
        }
        Got {
            status: parts.status,
            headers: parts.headers,
            body: Bytes::from(bytes),
            cut,
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("the request finished within 30 s")
}

pub async fn get(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
    request(addr, Method::GET, path, headers).await
}

/// The CID a UnixFS/DAG-CBOR path names, resolved by hand (basic directories, one-layer
/// HAMTs by scanning entry names, DAG-CBOR fields).
pub fn cid_at(store: &dyn Blockstore, root: Cid, path: &[&str]) -> Cid {
    let mut cid = root;
    let mut i = 0;
    while i < path.len() {
        let data = store.get(&cid).unwrap().expect("block in the fixture");
        match cid.codec() {
            DAG_PB if is_hamt(&data) => {
                cid = *hamt_path(store, cid, path[i])
                    .unwrap_or_else(|| panic!("no {} in {cid}", path[i]))
                    .last()
                    .unwrap();
                i += 1;
            }
            DAG_PB => {
                let node = codec::decode_dag_pb(&data).unwrap();
                let link = node
                    .links
                    .iter()
                    .find(|l| l.name.as_deref() == Some(path[i]))
                    .unwrap_or_else(|| panic!("no {} in {cid}", path[i]));
                cid = link.cid;
                i += 1;
            }
            DAG_CBOR => {
                let mut node = Node::from_dag_cbor(&data).unwrap();
                loop {
                    let next = node.get(path[i]).cloned().expect("field");
                    i += 1;
                    if let Node::Link(c) = next {
                        cid = *c;
                        break;
                    }
                    node = next;
                }
            }
            other => panic!("codec {other:#x} on a path"),
        }
    }
    cid
}

/// Every block below `cid` (not itself), depth first in link order, duplicates included.
pub fn descendants(store: &dyn Blockstore, cid: Cid) -> Vec<Cid> {
    let mut out = Vec::new();
    if cid.codec() != DAG_PB {
        return out;
    }
    let data = store.get(&cid).unwrap().expect("block");
    for link in codec::decode_dag_pb(&data).unwrap().links {
        out.push(link.cid);
        out.extend(descendants(store, link.cid));
    }
    out
}

/// Whether a dag-pb block is a HAMT shard (UnixFS type 5).
pub fn is_hamt(data: &[u8]) -> bool {
    let node = codec::decode_dag_pb(data).unwrap();
    node.data
        .as_deref()
        .and_then(|d| rm_blockio::unixfs::UnixFsData::decode(d).ok())
        .is_some_and(|u| u.kind == rm_blockio::unixfs::DataType::HamtShard)
}

/// The shards below `shard` on the way to `name`, then the entry: found by searching
/// every shard (two-character names are child shards), not by hashing.
pub fn hamt_path(store: &dyn Blockstore, shard: Cid, name: &str) -> Option<Vec<Cid>> {
    let data = store.get(&shard).unwrap()?;
    for link in codec::decode_dag_pb(&data).unwrap().links {
        let n = link.name.as_deref().unwrap_or("");
        if n.len() == 2 {
            if let Some(mut rest) = hamt_path(store, link.cid, name) {
                rest.insert(0, link.cid);
                return Some(rest);
            }
        } else if &n[2..] == name {
            return Some(vec![link.cid]);
        }
    }
    None
}

/// Every shard below a HAMT root, depth first in link order.
pub fn hamt_shards(store: &dyn Blockstore, shard: Cid) -> Vec<Cid> {
    let data = store.get(&shard).unwrap().unwrap();
    let mut out = Vec::new();
    for link in codec::decode_dag_pb(&data).unwrap().links {
        if link.name.as_deref().unwrap_or("").len() == 2 {
            out.push(link.cid);
            out.extend(hamt_shards(store, link.cid));
        }
    }
    out
}
