//! The stored counter (go-storedcounter semantics).

/// Named `rm_fsm` so `cargo test --workspace --all-targets -- rm_fsm::` selects these tests.
mod rm_fsm {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use rm_fsm::{Batch, Counter, Error, MemStore, Store};

    fn put(store: &MemStore, key: &[u8], value: &[u8]) {
        let mut batch = Batch::new();
        batch.put(key.to_vec(), value.to_vec());
        store.write(&batch, true).unwrap();
    }

    #[test]
    fn the_first_value_is_zero_and_each_next_is_one_more() {
        let counter = Counter::new(MemStore::new(), "deal-ids");
        assert_eq!(counter.current().unwrap(), None);
        let values: Vec<u64> = (0..5).map(|_| counter.next().unwrap()).collect();
        assert_eq!(values, vec![0, 1, 2, 3, 4]);
        assert_eq!(counter.current().unwrap(), Some(4));
    }

    #[test]
    fn the_value_is_persisted_as_a_uvarint_before_it_is_returned() {
        let store = MemStore::new();
        let counter = Counter::new(store.clone(), "c");
        assert_eq!(counter.next().unwrap(), 0);
        assert_eq!(store.get(b"c").unwrap(), Some(vec![0x00]));
        assert_eq!(counter.next().unwrap(), 1);
        assert_eq!(store.get(b"c").unwrap(), Some(vec![0x01]));
        // A value written by go-storedcounter (uvarint 300) continues.
        put(&store, b"c", &[0xac, 0x02]);
        assert_eq!(counter.next().unwrap(), 301);
        assert_eq!(store.get(b"c").unwrap(), Some(vec![0xad, 0x02]));
    }

    #[test]
    fn the_counter_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = rm_store::Db::open(dir.path(), &["counters"], &Default::default()).unwrap();
            let counter = Counter::new(db.keyspace("counters").unwrap(), "deal-ids");
            for expected in 0..3 {
                assert_eq!(counter.next().unwrap(), expected);
            }
        }
        let db = rm_store::Db::open(dir.path(), &["counters"], &Default::default()).unwrap();
        let counter = Counter::new(db.keyspace("counters").unwrap(), "deal-ids");
        assert_eq!(counter.current().unwrap(), Some(2));
        assert_eq!(counter.next().unwrap(), 3);
    }

    #[test]
    fn two_counters_on_one_key_continue_one_sequence() {
        let store = MemStore::new();
        let a = Counter::new(store.clone(), "k");
        let b = Counter::new(store, "k");
        assert_eq!(
            [a.next(), b.next(), a.next(), b.next()].map(Result::unwrap),
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn concurrent_counters_on_one_key_never_repeat_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let db = rm_store::Db::open(dir.path(), &["counters"], &Default::default()).unwrap();
        let store = Arc::new(db.keyspace("counters").unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                // A separate Counter per thread, all on the same key.
                let counter = Counter::new(store.clone(), "shared");
                std::thread::spawn(move || {
                    (0..25).map(|_| counter.next().unwrap()).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = BTreeSet::new();
        for t in threads {
            for v in t.join().unwrap() {
                assert!(all.insert(v), "{v} handed out twice");
            }
        }
        assert_eq!(all, (0..100).collect::<BTreeSet<u64>>());
    }

    #[test]
    fn different_keys_are_independent() {
        let store = MemStore::new();
        let a = Counter::new(store.clone(), "a");
        let b = Counter::new(store, "b");
        assert_eq!(a.next().unwrap(), 0);
        assert_eq!(a.next().unwrap(), 1);
        assert_eq!(b.next().unwrap(), 0);
        assert_eq!(a.next().unwrap(), 2);
    }

    #[test]
    fn a_corrupt_or_exhausted_counter_is_an_error_not_a_panic() {
        let store = MemStore::new();
        let counter = Counter::new(store.clone(), "c");
        put(&store, b"c", &[0x80]);
        assert!(matches!(counter.next(), Err(Error::Decode { .. })));
        put(&store, b"c", &[0x01, 0x02]);
        assert!(matches!(counter.current(), Err(Error::Decode { .. })));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        put(&store, b"c", &max);
        assert_eq!(counter.current().unwrap(), Some(u64::MAX));
        assert_eq!(counter.next(), Err(Error::CounterOverflow));
        assert_eq!(store.get(b"c").unwrap(), Some(max.to_vec()), "unchanged");
    }

    #[tokio::test]
    async fn next_async_runs_on_the_blocking_pool() {
        let counter = Counter::new(MemStore::new(), "c");
        assert_eq!(counter.next_async().await.unwrap(), 0);
        assert_eq!(counter.next_async().await.unwrap(), 1);
    }
}
