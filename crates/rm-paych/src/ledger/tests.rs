//! Ledger tests: every voucher rule (rejected with its typed error, ledger unchanged) and the
//! channel operations.

use rm_types::{Merge, ModVerifyParams, Signature, SignatureType};

use super::*;
use crate::voucher::VoucherError;
use crate::wallet::SignatureError;

fn atto(n: u64) -> TokenAmount {
    TokenAmount::from_atto(n)
}

struct Fixture {
    ledger: Ledger,
    wallet: Wallet,
    client: Address,
    provider: Address,
    channel: Address,
}

/// A ledger with a 1000 attoFIL channel client -> provider and one voucher (lane 0, nonce 1,
/// 100) already accepted, so that "changes nothing" has something to change.
fn fixture() -> Fixture {
    let ledger = Ledger::open(Keyspace::memory(DEFAULT_KEYSPACE));
    let wallet = Wallet::in_memory();
    let client = wallet.new_key().unwrap();
    let provider = wallet.new_key().unwrap();
    let (channel, _) = ledger
        .create_channel(&client, &provider, &atto(1000))
        .unwrap();
    let fx = Fixture {
        ledger,
        wallet,
        client,
        provider,
        channel,
    };
    assert_eq!(fx.save(&fx.signed(0, 1, 100)).unwrap(), atto(100));
    fx
}

impl Fixture {
    fn unsigned(&self, lane: u64, nonce: u64, amount: u64) -> SignedVoucher {
        SignedVoucher::new(self.channel.clone(), lane, nonce, atto(amount))
    }

    fn signed(&self, lane: u64, nonce: u64, amount: u64) -> SignedVoucher {
        let mut v = self.unsigned(lane, nonce, amount);
        self.sign(&mut v);
        v
    }

    fn sign(&self, v: &mut SignedVoucher) {
        voucher::sign(v, &self.wallet, &self.client).unwrap();
    }

    fn save(&self, v: &SignedVoucher) -> Result<TokenAmount, LedgerError> {
        self.ledger.save_voucher(&self.channel, v, &self.provider)
    }

    /// Saves `v` expecting an error that `expected` accepts, and checks that nothing changed.
    fn rejects(&self, v: &SignedVoucher, expected: impl Fn(&LedgerError) -> bool) {
        self.rejects_for(&self.channel.clone(), v, &self.provider.clone(), expected);
    }

    fn rejects_for(
        &self,
        channel: &Address,
        v: &SignedVoucher,
        recipient: &Address,
        expected: impl Fn(&LedgerError) -> bool,
    ) {
        let before = self.ledger.raw_entries();
        let err = self
            .ledger
            .save_voucher(channel, v, recipient)
            .expect_err("voucher must be rejected");
        assert!(expected(&err), "unexpected error: {err:?}");
        assert_eq!(
            self.ledger.raw_entries(),
            before,
            "a rejected voucher changed the ledger ({err})"
        );
    }
}

macro_rules! voucher_err {
    ($pattern:pat $(if $guard:expr)?) => {
        |e: &LedgerError| matches!(e, LedgerError::Voucher($pattern) $(if $guard)?)
    };
}

// ---- rule 1-6: shape ----

#[test]
fn rejects_voucher_for_another_channel() {
    let fx = fixture();
    let (other, _) = fx
        .ledger
        .create_channel(&fx.client, &fx.provider, &atto(1000))
        .unwrap();
    let v = fx.signed(0, 2, 200);
    fx.rejects_for(
        &other,
        &v,
        &fx.provider,
        voucher_err!(VoucherError::ChannelMismatch { .. }),
    );
}

#[test]
fn rejects_lane_above_max() {
    let fx = fixture();
    fx.rejects(
        &fx.signed(MAX_LANE + 1, 1, 10),
        voucher_err!(VoucherError::LaneOutOfRange(l) if *l == MAX_LANE + 1),
    );
    fx.rejects(
        &fx.signed(u64::MAX, 1, 10),
        voucher_err!(VoucherError::LaneOutOfRange(_)),
    );
}

#[test]
fn accepts_the_highest_lane() {
    let fx = fixture();
    assert_eq!(fx.save(&fx.signed(MAX_LANE, 1, 10)).unwrap(), atto(10));
}

#[test]
fn rejects_negative_amount() {
    let fx = fixture();
    let mut v = fx.unsigned(0, 2, 0);
    v.amount = TokenAmount::from_atto(-5i64);
    fx.sign(&mut v);
    fx.rejects(&v, voucher_err!(VoucherError::NegativeAmount(_)));
}

#[test]
fn rejects_secret_hash() {
    let fx = fixture();
    let mut v = fx.unsigned(0, 2, 200);
    v.secret_hash = crate::wallet::digest(b"secret").to_vec();
    fx.sign(&mut v);
    fx.rejects(&v, voucher_err!(VoucherError::SecretHashUnsupported));
}

#[test]
fn rejects_extra_call() {
    let fx = fixture();
    let mut v = fx.unsigned(0, 2, 200);
    v.extra = Some(ModVerifyParams {
        actor: Address::new_id(1024),
        method: 2,
        data: vec![0xde, 0xad],
    });
    fx.sign(&mut v);
    fx.rejects(&v, voucher_err!(VoucherError::ExtraUnsupported));
}

#[test]
fn rejects_too_many_merges() {
    let fx = fixture();
    let mut v = fx.unsigned(5, 1, 200);
    v.merges = (0..=voucher::MAX_MERGES as u64)
        .map(|lane| Merge {
            lane: lane + 100,
            nonce: 1,
        })
        .collect();
    fx.sign(&mut v);
    fx.rejects(
        &v,
        voucher_err!(VoucherError::TooManyMerges(n) if *n == voucher::MAX_MERGES + 1),
    );
}

// ---- rule 7-10: signature, channel, recipient ----

#[test]
fn rejects_unsigned_voucher() {
    let fx = fixture();
    fx.rejects(
        &fx.unsigned(0, 2, 200),
        voucher_err!(VoucherError::MissingSignature),
    );
}

#[test]
fn rejects_bls_and_malformed_signatures() {
    let fx = fixture();
    let mut v = fx.unsigned(0, 2, 200);
    v.signature = Some(Signature {
        sig_type: SignatureType::Bls,
        bytes: vec![0xab; 96],
    });
    fx.rejects(
        &v,
        voucher_err!(VoucherError::Signature(SignatureError::UnsupportedType(
            SignatureType::Bls
        ))),
    );
    v.signature = Some(Signature::new_secp256k1(vec![0; 65]));
    fx.rejects(
        &v,
        voucher_err!(VoucherError::Signature(SignatureError::Malformed)),
    );
    v.signature = Some(Signature::new_secp256k1(vec![1; 64]));
    fx.rejects(
        &v,
        voucher_err!(VoucherError::Signature(SignatureError::WrongLength(64))),
    );
}

#[test]
fn rejects_voucher_signed_by_someone_else() {
    let fx = fixture();
    let mut v = fx.unsigned(0, 2, 200);
    // signed by the provider's key instead of the channel's sender
    voucher::sign(&mut v, &fx.wallet, &fx.provider).unwrap();
    fx.rejects(
        &v,
        voucher_err!(VoucherError::Signature(SignatureError::WrongSigner { .. })),
    );
}

#[test]
fn rejects_voucher_altered_after_signing() {
    let fx = fixture();
    let mut v = fx.signed(0, 2, 200);
    v.amount = atto(900);
    // The signature now recovers some other key (or none): never the sender.
    fx.rejects(
        &v,
        voucher_err!(VoucherError::Signature(
            SignatureError::WrongSigner { .. } | SignatureError::RecoveryFailed
        )),
    );
}

#[test]
fn rejects_unknown_channel() {
    let fx = fixture();
    let stranger = Address::new_actor(b"not derived from anyone");
    let mut v = fx.unsigned(0, 1, 10);
    v.channel_addr = stranger.clone();
    fx.sign(&mut v);
    fx.rejects_for(
        &stranger,
        &v,
        &fx.provider,
        voucher_err!(VoucherError::UnknownChannel(_)),
    );
}

#[test]
fn rejects_voucher_for_a_channel_paying_someone_else() {
    let fx = fixture();
    let someone = fx.wallet.new_key().unwrap();
    let v = fx.signed(0, 2, 200);
    fx.rejects_for(
        &fx.channel,
        &v,
        &someone,
        voucher_err!(VoucherError::NotRecipient { .. }),
    );
}

// ---- re-sent voucher ----

#[test]
fn resent_voucher_is_a_no_op() {
    let fx = fixture();
    let v = fx.signed(0, 2, 300);
    assert_eq!(fx.save(&v).unwrap(), atto(200));
    let before = fx.ledger.raw_entries();
    assert_eq!(fx.save(&v).unwrap(), TokenAmount::zero());
    assert_eq!(fx.ledger.raw_entries(), before);
    assert_eq!(fx.ledger.latest_voucher(&fx.channel, 0).unwrap(), Some(v));
}

// ---- rule 11: settlement ----

#[test]
fn accepts_vouchers_while_settling_and_rejects_once_settled() {
    let fx = fixture();
    let at = fx.ledger.settle(&fx.channel).unwrap();
    assert_eq!(at, SETTLE_DELAY);
    // Still before settling_at: redeemable, as on chain.
    assert_eq!(fx.save(&fx.signed(0, 2, 150)).unwrap(), atto(50));
    fx.ledger.set_epoch(at).unwrap();
    fx.rejects(&fx.signed(0, 3, 200), voucher_err!(VoucherError::ChannelSettled { settling_at, epoch } if *settling_at == at && *epoch == at));
}

#[test]
fn rejects_vouchers_on_collected_channel() {
    let fx = fixture();
    let at = fx.ledger.settle(&fx.channel).unwrap();
    fx.ledger.set_epoch(at).unwrap();
    let payout = fx.ledger.collect(&fx.channel).unwrap();
    assert_eq!(
        payout,
        Payout {
            to_recipient: atto(100),
            to_sender: atto(900)
        }
    );
    fx.rejects(
        &fx.signed(0, 2, 200),
        voucher_err!(VoucherError::ChannelCollected(_)),
    );
}

// ---- rule 12: time locks ----

#[test]
fn rejects_voucher_before_time_lock_min() {
    let fx = fixture();
    fx.ledger.set_epoch(10).unwrap();
    let mut v = fx.unsigned(0, 2, 200);
    v.time_lock_min = 11;
    fx.sign(&mut v);
    fx.rejects(
        &v,
        voucher_err!(VoucherError::NotYetValid {
            time_lock_min: 11,
            epoch: 10
        }),
    );
    v.time_lock_min = 10;
    fx.sign(&mut v);
    assert_eq!(fx.save(&v).unwrap(), atto(100));
}

#[test]
fn rejects_voucher_after_time_lock_max() {
    let fx = fixture();
    fx.ledger.set_epoch(10).unwrap();
    let mut v = fx.unsigned(0, 2, 200);
    v.time_lock_max = 9;
    fx.sign(&mut v);
    fx.rejects(
        &v,
        voucher_err!(VoucherError::Expired {
            time_lock_max: 9,
            epoch: 10
        }),
    );
    v.time_lock_max = 10;
    fx.sign(&mut v);
    assert_eq!(fx.save(&v).unwrap(), atto(100));
}

// ---- rule 13: nonces ----

#[test]
fn rejects_equal_or_lower_nonce() {
    let fx = fixture();
    assert_eq!(fx.save(&fx.signed(0, 5, 200)).unwrap(), atto(100));
    // same nonce, different amount: not a re-send
    fx.rejects(
        &fx.signed(0, 5, 300),
        voucher_err!(VoucherError::StaleNonce {
            lane: 0,
            latest: 5,
            nonce: 5
        }),
    );
    fx.rejects(
        &fx.signed(0, 4, 300),
        voucher_err!(VoucherError::StaleNonce {
            latest: 5,
            nonce: 4,
            ..
        }),
    );
    // nonce 0 on a fresh lane is not above the default 0
    fx.rejects(
        &fx.signed(1, 0, 10),
        voucher_err!(VoucherError::StaleNonce {
            lane: 1,
            latest: 0,
            nonce: 0
        }),
    );
}

// ---- rule 14: merges ----

#[test]
fn rejects_merge_of_own_lane() {
    let fx = fixture();
    let mut v = fx.unsigned(0, 2, 200);
    v.merges = vec![Merge { lane: 0, nonce: 9 }];
    fx.sign(&mut v);
    fx.rejects(&v, voucher_err!(VoucherError::MergeOwnLane(0)));
}

#[test]
fn rejects_merge_of_unknown_lane() {
    let fx = fixture();
    let mut v = fx.unsigned(1, 1, 200);
    v.merges = vec![Merge { lane: 7, nonce: 1 }];
    fx.sign(&mut v);
    fx.rejects(&v, voucher_err!(VoucherError::MergeUnknownLane(7)));
}

#[test]
fn rejects_merge_with_stale_nonce() {
    let fx = fixture();
    let mut v = fx.unsigned(1, 1, 200);
    v.merges = vec![Merge { lane: 0, nonce: 1 }];
    fx.sign(&mut v);
    fx.rejects(
        &v,
        voucher_err!(VoucherError::MergeStaleNonce {
            lane: 0,
            latest: 1,
            nonce: 1
        }),
    );
    // the same lane twice: the second merge meets the nonce the first one set
    v.merges = vec![Merge { lane: 0, nonce: 2 }, Merge { lane: 0, nonce: 2 }];
    fx.sign(&mut v);
    fx.rejects(
        &v,
        voucher_err!(VoucherError::MergeStaleNonce {
            lane: 0,
            latest: 2,
            nonce: 2
        }),
    );
}

#[test]
fn merge_counts_merged_lanes_once() {
    let fx = fixture(); // lane 0: nonce 1, redeemed 100
    assert_eq!(fx.save(&fx.signed(1, 1, 50)).unwrap(), atto(50));
    // lane 2 folds in lanes 0 and 1: 400 in all, of which 150 already redeemed
    let mut v = fx.unsigned(2, 1, 400);
    v.merges = vec![Merge { lane: 0, nonce: 2 }, Merge { lane: 1, nonce: 2 }];
    fx.sign(&mut v);
    assert_eq!(fx.save(&v).unwrap(), atto(250));
    let lanes = fx.ledger.lanes(&fx.channel).unwrap();
    assert_eq!(
        lanes,
        vec![
            (
                0,
                LaneState {
                    nonce: 2,
                    redeemed: atto(100)
                }
            ),
            (
                1,
                LaneState {
                    nonce: 2,
                    redeemed: atto(50)
                }
            ),
            (
                2,
                LaneState {
                    nonce: 1,
                    redeemed: atto(400)
                }
            ),
        ]
    );
    assert_eq!(
        fx.ledger.channel(&fx.channel).unwrap().unwrap().to_send,
        atto(400)
    );
    // a merged lane cannot replay its old nonce
    fx.rejects(
        &fx.signed(0, 2, 500),
        voucher_err!(VoucherError::StaleNonce {
            lane: 0,
            latest: 2,
            ..
        }),
    );
}

// ---- rule 15-16: amounts and funds ----

#[test]
fn rejects_amount_below_redeemed() {
    let fx = fixture();
    fx.rejects(
        &fx.signed(0, 2, 99),
        voucher_err!(VoucherError::AmountBelowRedeemed { redeemed, amount } if *redeemed == atto(100) && *amount == atto(99)),
    );
    // equal amount with a higher nonce is fine and pays nothing new
    assert_eq!(fx.save(&fx.signed(0, 2, 100)).unwrap(), TokenAmount::zero());
}

#[test]
fn rejects_total_over_channel_funds() {
    let fx = fixture(); // funds 1000, lane 0 has 100
    assert_eq!(fx.save(&fx.signed(1, 1, 800)).unwrap(), atto(800));
    fx.rejects(
        &fx.signed(2, 1, 101),
        voucher_err!(VoucherError::InsufficientFunds { shortfall } if *shortfall == atto(1)),
    );
    fx.rejects(
        &fx.signed(0, 2, 201),
        voucher_err!(VoucherError::InsufficientFunds { .. }),
    );
    // exactly the balance is fine
    assert_eq!(fx.save(&fx.signed(2, 1, 100)).unwrap(), atto(100));
    let ch = fx.ledger.channel(&fx.channel).unwrap().unwrap();
    assert_eq!(ch.to_send, ch.funds);
}

// ---- effects ----

#[test]
fn deltas_and_lane_state() {
    let fx = fixture();
    assert_eq!(fx.save(&fx.signed(0, 2, 250)).unwrap(), atto(150));
    assert_eq!(fx.save(&fx.signed(0, 7, 1000)).unwrap(), atto(750));
    assert_eq!(
        fx.ledger.lane(&fx.channel, 0).unwrap(),
        Some(LaneState {
            nonce: 7,
            redeemed: atto(1000)
        })
    );
    assert_eq!(fx.ledger.lane(&fx.channel, 1).unwrap(), None);
    assert_eq!(
        fx.ledger.channel(&fx.channel).unwrap().unwrap().to_send,
        atto(1000)
    );
}

#[test]
fn min_settle_height_delays_settlement() {
    let fx = fixture();
    let mut v = fx.unsigned(0, 2, 200);
    v.min_settle_height = 5000;
    fx.sign(&mut v);
    fx.save(&v).unwrap();
    assert_eq!(
        fx.ledger
            .channel(&fx.channel)
            .unwrap()
            .unwrap()
            .min_settle_height,
        5000
    );
    assert_eq!(fx.ledger.settle(&fx.channel).unwrap(), 5000);
    // a voucher raising it while settling pushes settling_at
    let mut v = fx.unsigned(0, 3, 300);
    v.min_settle_height = 6000;
    fx.sign(&mut v);
    fx.save(&v).unwrap();
    assert_eq!(
        fx.ledger.channel(&fx.channel).unwrap().unwrap().settling_at,
        6000
    );
}

// ---- sender side ----

#[test]
fn sender_vouchers_pick_nonces_and_enforce_funds() {
    let fx = fixture();
    let lane = fx.ledger.allocate_lane(&fx.channel).unwrap();
    assert_eq!(lane, 0);
    assert_eq!(fx.ledger.allocate_lane(&fx.channel).unwrap(), 1);
    let v1 = fx
        .ledger
        .create_voucher(&fx.wallet, &fx.channel, 1, &atto(300))
        .unwrap();
    assert_eq!((v1.lane, v1.nonce, v1.amount.clone()), (1, 1, atto(300)));
    voucher::verify(&v1, &fx.client).unwrap();
    // same amount again: the same voucher, byte for byte
    assert_eq!(
        fx.ledger
            .create_voucher(&fx.wallet, &fx.channel, 1, &atto(300))
            .unwrap(),
        v1
    );
    let v2 = fx
        .ledger
        .create_voucher(&fx.wallet, &fx.channel, 1, &atto(600))
        .unwrap();
    assert_eq!(v2.nonce, 2);
    assert_eq!(
        fx.ledger.sent(&fx.channel, 1).unwrap(),
        Some(LaneState {
            nonce: 2,
            redeemed: atto(600)
        })
    );

    let before = fx.ledger.raw_entries();
    let err = fx
        .ledger
        .create_voucher(&fx.wallet, &fx.channel, 0, &atto(401))
        .unwrap_err();
    assert!(
        matches!(&err, LedgerError::Shortfall { shortfall } if *shortfall == atto(1)),
        "{err:?}"
    );
    let err = fx
        .ledger
        .create_voucher(&fx.wallet, &fx.channel, 1, &atto(599))
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::AmountDecreased { lane: 1, .. }),
        "{err:?}"
    );
    let err = fx
        .ledger
        .create_voucher(&fx.wallet, &fx.channel, 2, &atto(1))
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::LaneNotAllocated { lane: 2, .. }),
        "{err:?}"
    );
    let err = fx
        .ledger
        .create_voucher(&Wallet::in_memory(), &fx.channel, 0, &atto(1))
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::Wallet(WalletError::KeyNotFound(_))),
        "{err:?}"
    );
    assert_eq!(fx.ledger.raw_entries(), before);

    let funds = fx.ledger.available_funds(&fx.channel).unwrap();
    assert_eq!(funds.confirmed, atto(1000));
    assert_eq!(funds.voucher_redeemed, atto(600));
    // the sender's voucher is new to the recipient side of the same ledger
    assert_eq!(fx.save(&v2).unwrap(), atto(600));
}

#[test]
fn get_or_create_reuses_and_tops_up() {
    let fx = fixture();
    let other = fx.wallet.new_key().unwrap();
    let Funding::Created { channel, message } = fx
        .ledger
        .get_or_create_channel(&fx.client, &other, &atto(500))
        .unwrap()
    else {
        panic!("expected a new channel");
    };
    assert_eq!(fx.ledger.message_channel(&message).unwrap(), channel);
    assert_eq!(message.codec(), 0x55);
    assert_eq!(message.hash().code(), 0xb220);
    assert_eq!(
        fx.ledger
            .get_or_create_channel(&fx.client, &other, &atto(0))
            .unwrap(),
        Funding::Ready {
            channel: channel.clone()
        }
    );
    let lane = fx.ledger.allocate_lane(&channel).unwrap();
    fx.ledger
        .create_voucher(&fx.wallet, &channel, lane, &atto(400))
        .unwrap();
    // every request brings its own funds: asking for 200 adds 200
    let Funding::AddedFunds {
        channel: same,
        message: top_up,
    } = fx
        .ledger
        .get_or_create_channel(&fx.client, &other, &atto(200))
        .unwrap()
    else {
        panic!("expected a top-up");
    };
    assert_eq!(same, channel);
    assert_ne!(top_up, message);
    assert_eq!(fx.ledger.message_channel(&top_up).unwrap(), channel);
    assert_eq!(
        fx.ledger.channel(&channel).unwrap().unwrap().funds,
        atto(700)
    );
    // a settling channel is not reused
    fx.ledger.settle(&channel).unwrap();
    assert_eq!(fx.ledger.active_channel(&fx.client, &other).unwrap(), None);
    let Funding::Created { channel: fresh, .. } = fx
        .ledger
        .get_or_create_channel(&fx.client, &other, &atto(1))
        .unwrap()
    else {
        panic!("expected a new channel");
    };
    assert_ne!(fresh, channel);
    assert_eq!(
        fx.ledger.channel(&fresh).unwrap().unwrap().creation_nonce,
        1
    );
    assert!(matches!(
        fx.ledger.add_funds(&channel, &atto(1)),
        Err(LedgerError::Settling { .. })
    ));
    assert!(matches!(
        fx.ledger.allocate_lane(&channel),
        Err(LedgerError::Settling { .. })
    ));
    let unknown = message_cid(b"never sent").unwrap();
    assert!(matches!(
        fx.ledger.message_channel(&unknown),
        Err(LedgerError::UnknownMessage(_))
    ));
}

#[test]
fn settle_and_collect_rules() {
    let fx = fixture();
    assert!(matches!(
        fx.ledger.collect(&fx.channel),
        Err(LedgerError::NotSettled { settling_at: 0, .. })
    ));
    fx.ledger.set_epoch(100).unwrap();
    let at = fx.ledger.settle(&fx.channel).unwrap();
    assert_eq!(at, 100 + SETTLE_DELAY);
    assert!(matches!(
        fx.ledger.settle(&fx.channel),
        Err(LedgerError::Settling { .. })
    ));
    assert!(matches!(
        fx.ledger.collect(&fx.channel),
        Err(LedgerError::NotSettled { .. })
    ));
    assert!(matches!(
        fx.ledger.set_epoch(99),
        Err(LedgerError::EpochBackwards {
            current: 100,
            requested: 99
        })
    ));
    fx.ledger.set_epoch(at).unwrap();
    assert_eq!(
        fx.ledger.collect(&fx.channel).unwrap().to_recipient,
        atto(100)
    );
    assert!(matches!(
        fx.ledger.collect(&fx.channel),
        Err(LedgerError::Collected(_))
    ));
    let missing = Address::new_actor(b"missing");
    assert!(matches!(
        fx.ledger.settle(&missing),
        Err(LedgerError::ChannelNotFound(_))
    ));
}

#[test]
fn rejects_negative_funding() {
    let fx = fixture();
    let minus = TokenAmount::from_atto(-1i64);
    assert!(matches!(
        fx.ledger.create_channel(&fx.client, &fx.provider, &minus),
        Err(LedgerError::NegativeAmount(_))
    ));
    assert!(matches!(
        fx.ledger.add_funds(&fx.channel, &minus),
        Err(LedgerError::NegativeAmount(_))
    ));
    assert!(matches!(
        fx.ledger.create_voucher(&fx.wallet, &fx.channel, 0, &minus),
        Err(LedgerError::NegativeAmount(_))
    ));
}

#[test]
fn derived_address_matches_dag_cbor_encoding() {
    let from = Address::new_secp256k1(&[4u8; 65]);
    let to = Address::new_id(1000);
    for nonce in [
        0u64,
        1,
        23,
        24,
        255,
        256,
        65_535,
        65_536,
        u32::MAX as u64 + 1,
        u64::MAX,
    ] {
        let cbor = rm_types::codec::to_vec(&(&from, &to, nonce)).unwrap();
        assert_eq!(
            derive_channel_address(&from, &to, nonce),
            Address::new_actor(&cbor),
            "nonce {nonce}"
        );
    }
    assert_ne!(
        derive_channel_address(&from, &to, 0),
        derive_channel_address(&to, &from, 0)
    );
}
