//! PaychNode through the node traits, as the client and provider state machines use it.

use std::sync::Arc;

use rm_paych::{PaychNode, Wallet};
use rm_types::{
    Address, ChannelSetup, NodeError, RetrievalClientNode, RetrievalProviderNode, TokenAmount,
};

use crate::temp_ledger;

fn atto(n: u64) -> TokenAmount {
    TokenAmount::from_atto(n)
}

struct Nodes {
    _dir: tempfile::TempDir,
    client: PaychNode,
    provider: PaychNode,
    payer: Address,
    payee: Address,
}

fn nodes() -> Nodes {
    let (dir, ledger) = temp_ledger();
    let client_wallet = Arc::new(Wallet::in_memory());
    let provider_wallet = Arc::new(Wallet::in_memory());
    let payer = client_wallet.new_key().unwrap();
    let payee = provider_wallet.new_key().unwrap();
    Nodes {
        _dir: dir,
        client: PaychNode::new(ledger.clone(), client_wallet),
        provider: PaychNode::new(ledger, provider_wallet),
        payer,
        payee,
    }
}

#[tokio::test]
async fn client_and_provider_flow() {
    let n = nodes();
    n.client.ledger().set_epoch(7).unwrap();
    let head = RetrievalClientNode::chain_head(&n.client).await.unwrap();
    assert_eq!(head.epoch, 7);
    assert_eq!(
        RetrievalProviderNode::chain_head(&n.provider)
            .await
            .unwrap(),
        head
    );
    assert_eq!(n.provider.payment_address(&head).await.unwrap(), n.payee);

    let setup = n
        .client
        .get_or_create_payment_channel(&n.payer, &n.payee, &atto(20_000_000), &head)
        .await
        .unwrap();
    let ChannelSetup::Creating { wait } = setup else {
        panic!("expected Creating, got {setup:?}")
    };
    let channel = n
        .client
        .wait_for_payment_channel_ready(&wait)
        .await
        .unwrap();
    let lane = n.client.allocate_lane(&channel).await.unwrap();

    // the lorem.txt payments of go-fil-markets' integration test (price 1000/byte)
    let first = n
        .client
        .create_payment_voucher(&channel, &atto(10_174_000), lane, &head)
        .await
        .unwrap();
    assert_eq!(first.nonce, 1);
    let second = n
        .client
        .create_payment_voucher(&channel, &atto(19_958_000), lane, &head)
        .await
        .unwrap();
    assert_eq!(second.nonce, 2);
    let got1 = n
        .provider
        .save_payment_voucher(&channel, &first, &atto(10_174_000), &head)
        .await
        .unwrap();
    let got2 = n
        .provider
        .save_payment_voucher(&channel, &second, &atto(9_784_000), &head)
        .await
        .unwrap();
    assert_eq!((got1, got2), (atto(10_174_000), atto(9_784_000)));
    let again = n
        .provider
        .save_payment_voucher(&channel, &second, &atto(0), &head)
        .await
        .unwrap();
    assert!(again.is_zero());

    // the same pair again: every request brings its own funds -> adding funds
    let setup = n
        .client
        .get_or_create_payment_channel(&n.payer, &n.payee, &atto(1_000_000), &head)
        .await
        .unwrap();
    let ChannelSetup::AddingFunds {
        channel: same,
        wait,
    } = setup
    else {
        panic!("expected AddingFunds, got {setup:?}")
    };
    assert_eq!(same, channel);
    assert_eq!(
        n.client
            .wait_for_payment_channel_ready(&wait)
            .await
            .unwrap(),
        channel
    );
    // asking for nothing returns the channel as it is
    let setup = n
        .client
        .get_or_create_payment_channel(&n.payer, &n.payee, &atto(0), &head)
        .await
        .unwrap();
    assert_eq!(
        setup,
        ChannelSetup::Ready {
            channel: channel.clone()
        }
    );

    let funds = n.client.check_available_funds(&channel).await.unwrap();
    assert_eq!(funds.confirmed, atto(21_000_000));
    assert_eq!(funds.voucher_redeemed, atto(19_958_000));
    assert!(funds.pending.is_zero() && funds.pending_wait_sentinel.is_none());
}

#[tokio::test]
async fn errors_map_onto_node_errors() {
    let n = nodes();
    let head = RetrievalClientNode::chain_head(&n.client).await.unwrap();
    // the client node does not hold the payee's key
    let err = n
        .client
        .get_or_create_payment_channel(&n.payee, &n.payer, &atto(1), &head)
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::Wallet(_)), "{err:?}");

    let ChannelSetup::Creating { wait } = n
        .client
        .get_or_create_payment_channel(&n.payer, &n.payee, &atto(100), &head)
        .await
        .unwrap()
    else {
        panic!("expected Creating")
    };
    let channel = n
        .client
        .wait_for_payment_channel_ready(&wait)
        .await
        .unwrap();
    let lane = n.client.allocate_lane(&channel).await.unwrap();
    let err = n
        .client
        .create_payment_voucher(&channel, &atto(150), lane, &head)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NodeError::Shortfall { shortfall } if *shortfall == atto(50)),
        "{err:?}"
    );

    let missing = Address::new_actor(b"nowhere");
    let err = n.client.allocate_lane(&missing).await.unwrap_err();
    assert!(matches!(err, NodeError::ChannelNotFound(_)), "{err:?}");
    let err = n.client.check_available_funds(&missing).await.unwrap_err();
    assert!(matches!(err, NodeError::ChannelNotFound(_)), "{err:?}");

    // a voucher the provider refuses
    let mut voucher = n
        .client
        .create_payment_voucher(&channel, &atto(60), lane, &head)
        .await
        .unwrap();
    voucher.amount = atto(90);
    let err = n
        .provider
        .save_payment_voucher(&channel, &voucher, &atto(90), &head)
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::InvalidVoucher(_)), "{err:?}");

    // the wait for an unknown message fails instead of hanging
    let err = n
        .client
        .wait_for_payment_channel_ready(&rm_types::Cid::default())
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::Backend(_)), "{err:?}");

    // a provider without a key has no payment address
    let keyless = PaychNode::new(n.client.ledger().clone(), Arc::new(Wallet::in_memory()));
    assert!(matches!(
        keyless.payment_address(&head).await,
        Err(NodeError::Wallet(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_payments_on_many_lanes_add_up() {
    let n = nodes();
    let head = RetrievalClientNode::chain_head(&n.client).await.unwrap();
    let setup = n
        .client
        .get_or_create_payment_channel(&n.payer, &n.payee, &atto(1_000_000), &head)
        .await
        .unwrap();
    let ChannelSetup::Creating { wait } = setup else {
        panic!("expected Creating")
    };
    let channel = n
        .client
        .wait_for_payment_channel_ready(&wait)
        .await
        .unwrap();
    let client = Arc::new(n.client);
    let provider = Arc::new(n.provider);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, provider, channel, head) = (
            client.clone(),
            provider.clone(),
            channel.clone(),
            head.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let lane = client.allocate_lane(&channel).await.unwrap();
            let mut received = TokenAmount::zero();
            for step in 1..=10u64 {
                let v = client
                    .create_payment_voucher(&channel, &atto(step * 1000), lane, &head)
                    .await
                    .unwrap();
                received += &provider
                    .save_payment_voucher(&channel, &v, &atto(1000), &head)
                    .await
                    .unwrap();
            }
            (lane, received)
        }));
    }
    let mut lanes = Vec::new();
    let mut total = TokenAmount::zero();
    for task in tasks {
        let (lane, received) = task.await.unwrap();
        assert_eq!(received, atto(10_000));
        lanes.push(lane);
        total += &received;
    }
    lanes.sort_unstable();
    assert_eq!(lanes, (0..8).collect::<Vec<_>>());
    let ch = client.ledger().channel(&channel).unwrap().unwrap();
    assert_eq!(ch.to_send, total);
    assert_eq!(ch.committed, atto(80_000));
}
