//! The local peer registry: add/get, idempotence, CIDv0/CIDv1 sharing a record, unknown
//! payloads, persistence across a reopen, corrupt records.

use std::{collections::BTreeMap, sync::Arc};

use rm_discovery::{
    Error, Registry, Resolver, ResolverConfig,
    registry::{self, MAX_PEERS_PER_PAYLOAD},
};
use rm_store::Db;
use rm_types::{Address, Cid, Ipld, PeerResolver, RetrievalPeer, codec};

fn payload() -> Cid {
    "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb"
        .parse()
        .unwrap()
}

fn peer(n: u64) -> RetrievalPeer {
    RetrievalPeer {
        address: Address::new_id(1000 + n),
        id: rm_network::to_rm_peer(&rm_network::keys::generate().public().to_peer_id()),
        piece_cid: Some(payload()),
    }
}

/// The registry of a node database in `dir` (RocksDB: these tests reopen it).
fn open(dir: &std::path::Path) -> (Db, Registry) {
    let db = Db::open(dir, &rm_discovery::KEYSPACES, &Default::default()).unwrap();
    let registry = Registry::open(db.keyspace(registry::DEFAULT_KEYSPACE).unwrap());
    (db, registry)
}

#[test]
fn add_then_get_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, registry) = open(dir.path());
    let (a, b) = (peer(1), peer(2));
    assert!(registry.add_peer(&payload(), a.clone()).unwrap());
    assert!(registry.add_peer(&payload(), b.clone()).unwrap());
    assert_eq!(registry.get_peers(&payload()).unwrap(), vec![a.clone(), b]);
    assert!(registry.remove_peer(&payload(), &a).unwrap());
    assert!(!registry.remove_peer(&payload(), &a).unwrap());
    assert_eq!(registry.get_peers(&payload()).unwrap().len(), 1);
}

#[test]
fn adding_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, registry) = open(dir.path());
    let a = peer(1);
    assert!(registry.add_peer(&payload(), a.clone()).unwrap());
    assert!(!registry.add_peer(&payload(), a.clone()).unwrap());
    // Same provider, another piece: a different entry, as in go-fil-markets.
    let other_piece = RetrievalPeer {
        piece_cid: None,
        ..a.clone()
    };
    assert!(registry.add_peer(&payload(), other_piece).unwrap());
    assert_eq!(registry.get_peers(&payload()).unwrap().len(), 2);
}

#[test]
fn cid_v0_and_v1_of_one_multihash_share_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, registry) = open(dir.path());
    let v0 = payload();
    let v1 = Cid::new_v1(0x70, *v0.hash());
    let raw = Cid::new_v1(0x55, *v0.hash());
    let a = peer(1);
    registry.add_peer(&v0, a.clone()).unwrap();
    assert_eq!(registry.get_peers(&v1).unwrap(), vec![a.clone()]);
    assert_eq!(registry.get_peers(&raw).unwrap(), vec![a.clone()]);
    assert!(!registry.add_peer(&v1, a).unwrap());
}

#[test]
fn an_unknown_payload_has_no_peers() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, registry) = open(dir.path());
    registry.add_peer(&payload(), peer(1)).unwrap();
    let other: Cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
        .parse()
        .unwrap();
    assert!(registry.get_peers(&other).unwrap().is_empty());
}

#[test]
fn records_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let a = peer(1);
    {
        let (_db, registry) = open(dir.path());
        registry.add_peer(&payload(), a.clone()).unwrap();
    }
    let (_db, registry) = open(dir.path());
    assert_eq!(registry.get_peers(&payload()).unwrap(), vec![a]);
}

#[test]
fn a_record_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, registry) = open(dir.path());
    for n in 0..MAX_PEERS_PER_PAYLOAD as u64 {
        registry.add_peer(&payload(), peer(n)).unwrap();
    }
    assert!(matches!(
        registry.add_peer(&payload(), peer(9999)),
        Err(Error::TooManyPeers { .. })
    ));
}

fn put_raw(db: &Db, payload: &Cid, bytes: &[u8]) {
    let keyspace = db.keyspace(registry::DEFAULT_KEYSPACE).unwrap();
    keyspace.put(&payload.hash().to_bytes(), bytes).unwrap();
}

/// Decision: a record that is not a `RetrievalPeers` map is a typed error from the
/// registry (and skipped by the resolver); a bad entry inside a good record is skipped.
#[tokio::test]
async fn a_corrupt_record_is_an_error_and_the_resolver_skips_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, registry) = open(dir.path());
    put_raw(&db, &payload(), b"\xa1\x65Peers\x1b\xff");
    assert!(matches!(
        registry.get_peers(&payload()),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        registry.add_peer(&payload(), peer(1)),
        Err(Error::Corrupt { .. })
    ));
    let registry = Arc::new(registry);
    let resolver = Resolver::new(ResolverConfig::default()).with_registry(Arc::clone(&registry));
    assert!(resolver.find(&payload()).await.is_empty());
    assert!(resolver.get_peers(&payload()).await.unwrap().is_empty());
    // The trait impl of the registry itself reports it.
    assert!(
        PeerResolver::get_peers(registry.as_ref(), &payload())
            .await
            .is_err()
    );
    // `remove` clears it.
    registry.remove(&payload()).unwrap();
    assert!(registry.get_peers(&payload()).unwrap().is_empty());
}

#[test]
fn a_malformed_entry_is_skipped_and_dropped_on_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let (db, registry) = open(dir.path());
    let good = peer(1);
    let good_ipld: Ipld = codec::from_slice(&codec::to_vec(&good).unwrap()).unwrap();
    let bad = Ipld::Map(BTreeMap::from([
        ("Address".to_owned(), Ipld::Bytes(vec![0xff, 0xff])),
        ("ID".to_owned(), Ipld::Bytes(Vec::new())),
    ]));
    let record = Ipld::Map(BTreeMap::from([(
        "Peers".to_owned(),
        Ipld::List(vec![bad, good_ipld]),
    )]));
    put_raw(&db, &payload(), &codec::to_vec(&record).unwrap());
    assert_eq!(registry.get_peers(&payload()).unwrap(), vec![good.clone()]);
    let second = peer(2);
    registry.add_peer(&payload(), second.clone()).unwrap();
    assert_eq!(registry.get_peers(&payload()).unwrap(), vec![good, second]);
}

#[test]
fn the_record_is_go_fil_markets_retrieval_peers() {
    let dir = tempfile::tempdir().unwrap();
    let (db, registry) = open(dir.path());
    let a = peer(1);
    registry.add_peer(&payload(), a.clone()).unwrap();
    let keyspace = db.keyspace(registry::DEFAULT_KEYSPACE).unwrap();
    let bytes = keyspace.get(&payload().hash().to_bytes()).unwrap().unwrap();
    let record: Ipld = codec::from_slice(&bytes).unwrap();
    let Ipld::Map(map) = record else {
        panic!("not a map")
    };
    assert_eq!(map.keys().collect::<Vec<_>>(), vec!["Peers"]);
    let Some(Ipld::List(peers)) = map.get("Peers") else {
        panic!("no list")
    };
    assert_eq!(peers.len(), 1);
}
