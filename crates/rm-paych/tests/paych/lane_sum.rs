//! Property: on a lane, the total received (sum of deltas) is the last cumulative amount.

use proptest::prelude::*;
use rm_paych::voucher;
use rm_paych::wallet::Wallet;
use rm_types::TokenAmount;

use crate::temp_ledger;

fn atto(n: u64) -> TokenAmount {
    TokenAmount::from_atto(n)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Any sequence of valid vouchers (increasing nonces with gaps, non-decreasing amounts,
    /// some re-sent): the deltas add up to the last amount.
    #[test]
    fn valid_vouchers_sum_to_the_last_amount(
        steps in prop::collection::vec((1u64..4, 0u64..5_000, any::<bool>()), 1..12),
        lane in prop_oneof![Just(0u64), 1u64..1000, Just(rm_types::paych::MAX_LANE)],
    ) {
        let (_dir, ledger) = temp_ledger();
        let wallet = Wallet::in_memory();
        let client = wallet.new_key().unwrap();
        let provider = wallet.new_key().unwrap();
        let (channel, _) = ledger.create_channel(&client, &provider, &atto(u64::MAX)).unwrap();
        let (mut nonce, mut amount) = (0u64, 0u64);
        let mut received = TokenAmount::zero();
        for (gap, increase, resend) in steps {
            nonce += gap;
            amount += increase;
            let v = voucher::create(&wallet, &client, channel.clone(), lane, nonce, atto(amount)).unwrap();
            let delta = ledger.save_voucher(&channel, &v, &provider).unwrap();
            prop_assert!(!delta.is_negative());
            received += &delta;
            if resend {
                prop_assert!(ledger.save_voucher(&channel, &v, &provider).unwrap().is_zero());
            }
        }
        prop_assert_eq!(&received, &atto(amount));
        let state = ledger.lane(&channel, lane).unwrap().unwrap();
        prop_assert_eq!((state.nonce, state.redeemed), (nonce, atto(amount)));
        prop_assert_eq!(ledger.channel(&channel).unwrap().unwrap().to_send, atto(amount));
    }

    /// Any sequence at all (stale nonces, decreasing amounts, over the funds): rejected
    /// vouchers change nothing, so the accepted deltas always add up to the lane's redeemed
    /// amount, and never exceed the funds.
    #[test]
    fn any_vouchers_keep_the_books_consistent(
        steps in prop::collection::vec((0u64..6, 0u64..1_500), 1..16),
    ) {
        let (_dir, ledger) = temp_ledger();
        let wallet = Wallet::in_memory();
        let client = wallet.new_key().unwrap();
        let provider = wallet.new_key().unwrap();
        let funds = atto(5_000);
        let (channel, _) = ledger.create_channel(&client, &provider, &funds).unwrap();
        let mut received = TokenAmount::zero();
        let mut accepted = 0;
        for (nonce, amount) in steps {
            let v = voucher::create(&wallet, &client, channel.clone(), 3, nonce, atto(amount)).unwrap();
            if let Ok(delta) = ledger.save_voucher(&channel, &v, &provider) {
                received += &delta;
                accepted += 1;
            }
            let redeemed = ledger.lane(&channel, 3).unwrap().map(|l| l.redeemed).unwrap_or_default();
            prop_assert_eq!(&received, &redeemed);
            prop_assert!(received <= funds);
        }
        if accepted == 0 {
            prop_assert!(ledger.lane(&channel, 3).unwrap().is_none());
        }
    }
}
