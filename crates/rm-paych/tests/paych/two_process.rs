//! Client and provider with separate ledgers and no chain: the provider learns a channel
//! from its first voucher, when the channel address derives from the signer and itself.

use rm_paych::LedgerError;
use rm_paych::ledger::{self, MAX_LEARN_NONCE, Origin};
use rm_paych::voucher::{self, VoucherError};
use rm_paych::wallet::{SignatureError, Wallet};
use rm_types::TokenAmount;

use crate::temp_ledger;

fn atto(n: u64) -> TokenAmount {
    TokenAmount::from_atto(n)
}

#[test]
fn provider_learns_channel_from_first_voucher() {
    let (_c, client_ledger) = temp_ledger();
    let (_p, provider_ledger) = temp_ledger();
    let client_wallet = Wallet::in_memory();
    let provider_wallet = Wallet::in_memory();
    let client = client_wallet.new_key().unwrap();
    let provider = provider_wallet.new_key().unwrap();

    let (channel, _) = client_ledger
        .create_channel(&client, &provider, &atto(10_000))
        .unwrap();
    assert_eq!(
        channel,
        ledger::derive_channel_address(&client, &provider, 0)
    );
    let lane = client_ledger.allocate_lane(&channel).unwrap();
    let v1 = client_ledger
        .create_voucher(&client_wallet, &channel, lane, &atto(4000))
        .unwrap();
    assert!(provider_ledger.channel(&channel).unwrap().is_none());
    assert_eq!(
        provider_ledger
            .save_voucher(&channel, &v1, &provider)
            .unwrap(),
        atto(4000)
    );

    let learned = provider_ledger.channel(&channel).unwrap().unwrap();
    assert_eq!(learned.origin, Origin::Learned);
    assert_eq!(
        (
            learned.from.clone(),
            learned.to.clone(),
            learned.creation_nonce
        ),
        (client.clone(), provider.clone(), 0)
    );
    let v2 = client_ledger
        .create_voucher(&client_wallet, &channel, lane, &atto(9000))
        .unwrap();
    assert_eq!(
        provider_ledger
            .save_voucher(&channel, &v2, &provider)
            .unwrap(),
        atto(5000)
    );
    assert!(
        provider_ledger
            .save_voucher(&channel, &v2, &provider)
            .unwrap()
            .is_zero()
    );
    assert!(matches!(
        provider_ledger.save_voucher(&channel, &v1, &provider),
        Err(LedgerError::Voucher(VoucherError::StaleNonce { .. }))
    ));
    // the provider cannot send on a channel it only learned
    assert!(matches!(
        provider_ledger.allocate_lane(&channel),
        Err(LedgerError::NotOutbound(_))
    ));

    // once learned, the sender is fixed: another key's voucher is refused
    let intruder = client_wallet.new_key().unwrap();
    let forged = voucher::create(
        &client_wallet,
        &intruder,
        channel.clone(),
        lane,
        3,
        atto(9500),
    )
    .unwrap();
    assert!(matches!(
        provider_ledger.save_voucher(&channel, &forged, &provider),
        Err(LedgerError::Voucher(VoucherError::Signature(
            SignatureError::WrongSigner { .. }
        )))
    ));

    // the provider settles and collects its own record
    let at = provider_ledger.settle(&channel).unwrap();
    provider_ledger.set_epoch(at).unwrap();
    let payout = provider_ledger.collect(&channel).unwrap();
    assert_eq!(payout.to_recipient, atto(9000));
}

#[test]
fn provider_refuses_channels_it_cannot_derive() {
    let (_p, provider_ledger) = temp_ledger();
    let wallet = Wallet::in_memory();
    let client = wallet.new_key().unwrap();
    let provider = wallet.new_key().unwrap();
    let someone = wallet.new_key().unwrap();
    let refused = |channel: rm_types::Address, signer: &rm_types::Address| {
        let v = voucher::create(&wallet, signer, channel.clone(), 0, 1, atto(10)).unwrap();
        let before = provider_ledger.channels().unwrap();
        let err = provider_ledger
            .save_voucher(&channel, &v, &provider)
            .unwrap_err();
        assert!(
            matches!(err, LedgerError::Voucher(VoucherError::UnknownChannel(_))),
            "{err:?}"
        );
        assert_eq!(provider_ledger.channels().unwrap(), before);
    };
    // a channel client -> someone else: not ours
    refused(
        ledger::derive_channel_address(&client, &someone, 0),
        &client,
    );
    // our channel, but the voucher is signed by another key than its sender
    refused(
        ledger::derive_channel_address(&client, &provider, 0),
        &someone,
    );
    // a creation nonce beyond what the provider searches
    refused(
        ledger::derive_channel_address(&client, &provider, MAX_LEARN_NONCE),
        &client,
    );
    // the last searched nonce is found
    let channel = ledger::derive_channel_address(&client, &provider, MAX_LEARN_NONCE - 1);
    let v = voucher::create(&wallet, &client, channel.clone(), 0, 1, atto(10)).unwrap();
    assert_eq!(
        provider_ledger
            .save_voucher(&channel, &v, &provider)
            .unwrap(),
        atto(10)
    );
}
