//! Reopening the database: the ledger's state is intact and payments continue.

use rm_paych::wallet::Wallet;
use rm_paych::{Ledger, ledger};
use rm_types::TokenAmount;

fn atto(n: u64) -> TokenAmount {
    TokenAmount::from_atto(n)
}

#[test]
fn ledger_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let wallet = Wallet::open(dir.path().join("keys")).unwrap();
    let client = wallet.new_key().unwrap();
    let provider = wallet.new_key().unwrap();

    let open = || {
        let db = rm_store::Db::open(
            &path,
            &[ledger::DEFAULT_KEYSPACE, "someone-else"],
            &Default::default(),
        )
        .unwrap();
        // fsync every write: what a node that cannot afford to lose a voucher would use
        Ledger::open(db.keyspace(ledger::DEFAULT_KEYSPACE).unwrap())
            .with_durability(rm_store::Durability::Machine)
    };

    let (channel, message, voucher, snapshot) = {
        let ledger = open();
        ledger.set_epoch(42).unwrap();
        let (channel, message) = ledger
            .create_channel(&client, &provider, &atto(5000))
            .unwrap();
        let lane = ledger.allocate_lane(&channel).unwrap();
        let voucher = ledger
            .create_voucher(&wallet, &channel, lane, &atto(1200))
            .unwrap();
        assert_eq!(
            ledger.save_voucher(&channel, &voucher, &provider).unwrap(),
            atto(1200)
        );
        let snapshot = ledger.channel(&channel).unwrap().unwrap();
        (channel, message, voucher, snapshot)
    }; // ledger and database closed here

    let ledger = open();
    assert_eq!(ledger.epoch().unwrap(), 42);
    assert_eq!(ledger.channel(&channel).unwrap(), Some(snapshot.clone()));
    assert_eq!(snapshot.to_send, atto(1200));
    assert_eq!(snapshot.committed, atto(1200));
    assert_eq!(ledger.message_channel(&message).unwrap(), channel);
    assert_eq!(
        ledger.active_channel(&client, &provider).unwrap(),
        Some(channel.clone())
    );
    assert_eq!(
        ledger.latest_voucher(&channel, 0).unwrap(),
        Some(voucher.clone())
    );
    assert_eq!(
        ledger.lane(&channel, 0).unwrap().unwrap().redeemed,
        atto(1200)
    );
    assert_eq!(ledger.sent(&channel, 0).unwrap().unwrap().nonce, 1);
    // the client re-sends its last voucher after the restart: a no-op
    assert!(
        ledger
            .save_voucher(&channel, &voucher, &provider)
            .unwrap()
            .is_zero()
    );
    assert_eq!(
        ledger
            .create_voucher(&wallet, &channel, 0, &atto(1200))
            .unwrap(),
        voucher
    );
    // and continues where it stopped
    let next = ledger
        .create_voucher(&wallet, &channel, 0, &atto(2000))
        .unwrap();
    assert_eq!(next.nonce, 2);
    assert_eq!(
        ledger.save_voucher(&channel, &next, &provider).unwrap(),
        atto(800)
    );
    assert_eq!(ledger.allocate_lane(&channel).unwrap(), 1);
    assert_eq!(ledger.channels().unwrap().len(), 1);
}
