//! Property tests: no decoder panics on any input, and the payment math invariants.

use proptest::prelude::*;
use rm_types::codec::{ItemScanner, Scan};
use rm_types::{
    Address, Block, DealId, DealPayment, DealProposal, DealResponse, DealStatus, Params, Prefix,
    Query, QueryResponse, Signature, SignedVoucher, TokenAmount, codec, tuple,
};

/// Runs every decoder over `bytes`; none may panic (errors are fine).
fn decode_everything(bytes: &[u8]) {
    let _ = codec::from_slice::<Query>(bytes);
    let _ = codec::from_slice::<QueryResponse>(bytes);
    let _ = codec::from_slice::<DealProposal>(bytes);
    let _ = codec::from_slice::<DealResponse>(bytes);
    let _ = codec::from_slice::<DealPayment>(bytes);
    let _ = codec::from_slice::<SignedVoucher>(bytes);
    let _ = codec::from_slice::<TokenAmount>(bytes);
    let _ = codec::from_slice::<Address>(bytes);
    let _ = codec::from_slice::<Signature>(bytes);
    let _ = codec::from_slice::<rm_types::ClientDealState>(bytes);
    let _ = codec::from_slice::<rm_types::ProviderDealState>(bytes);
    let _ = codec::from_slice::<rm_types::RetrievalPeer>(bytes);
    let _ = tuple::from_slice::<Query>(bytes);
    let _ = tuple::from_slice::<QueryResponse>(bytes);
    let _ = tuple::from_slice::<DealProposal>(bytes);
    let _ = tuple::from_slice::<DealResponse>(bytes);
    let _ = tuple::from_slice::<DealPayment>(bytes);
    let _ = Address::from_bytes(bytes);
    let _ = TokenAmount::from_cbor_bytes(bytes);
    let _ = Signature::from_bytes(bytes);
    let _ = Prefix::from_bytes(bytes);
    let _ = Block {
        prefix: bytes.to_vec(),
        data: bytes.to_vec().into(),
    }
    .cid();
    if let Ok(s) = std::str::from_utf8(bytes) {
        let _ = s.parse::<Address>();
        let _ = s.parse::<TokenAmount>();
    }
    let mut scanner = ItemScanner::new(1 << 16);
    if let Ok(Scan::Complete(n)) = scanner.feed(bytes) {
        assert!(n <= bytes.len());
    }
}

fn sample_messages() -> Vec<Vec<u8>> {
    let cid: cid::Cid = "bafkqaaa".parse().unwrap();
    let addr: Address = "f01000".parse().unwrap();
    let mut params = Params::new(TokenAmount::from_atto(1000u64), 10_000, 1_000);
    params.selector = Some(rm_types::explore_all_selector());
    let proposal = DealProposal {
        payload_cid: cid,
        id: DealId(3),
        params,
        resume: None,
    };
    let response = DealResponse {
        status: DealStatus::FundsNeeded,
        id: DealId(3),
        payment_owed: TokenAmount::from_atto(10_174_000u64),
        message: "pay".into(),
        blocks: vec![Block {
            prefix: vec![1, 0x55, 0x12, 0x20],
            data: vec![9; 40].into(),
        }],
    };
    let payment = DealPayment {
        id: DealId(3),
        payment_channel: addr.clone(),
        payment_voucher: Some(SignedVoucher::new(addr, 0, 1, TokenAmount::from_atto(5u64))),
    };
    vec![
        codec::to_vec(&Query::new(cid)).unwrap(),
        codec::to_vec(&proposal).unwrap(),
        codec::to_vec(&response).unwrap(),
        codec::to_vec(&payment).unwrap(),
        tuple::to_vec(&proposal).unwrap(),
        tuple::to_vec(&response).unwrap(),
        tuple::to_vec(&payment).unwrap(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(
        which in 0usize..7,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = sample_messages()[which].clone();
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        decode_everything(&bytes);
        let end = cut.index(bytes.len() + 1);
        decode_everything(&bytes[..end]);
    }

    #[test]
    fn boundaries_strictly_increase(pi in 1u64..1_000_000, inc in 0u64..1_000_000, x in 0u64..(1u64 << 40)) {
        let p = Params::new(TokenAmount::from_atto(1u64), pi, inc);
        let next = p.next_interval(x);
        prop_assert!(next > x);
        prop_assert!(p.next_interval(next) > next);
        let lower = p.interval_lower_bound(x);
        prop_assert!(lower <= x);
        prop_assert!(p.next_interval(lower) > lower);
        // the next boundary above the lower bound is the next boundary above x
        prop_assert_eq!(p.next_interval(lower), next);
    }

    #[test]
    fn outstanding_balance_is_never_negative_and_paying_it_clears_it(
        price in 0u64..10_000,
        unseal in 0u64..1_000_000,
        pi in 1u64..100_000,
        inc in 0u64..100_000,
        sent in 0u64..10_000_000,
        funds in 0u64..100_000_000_000,
        finalizing in any::<bool>(),
    ) {
        let mut p = Params::new(TokenAmount::from_atto(price), pi, inc);
        p.unseal_price = TokenAmount::from_atto(unseal);
        let funds = TokenAmount::from_atto(funds);
        let owed = p.outstanding_balance(&funds, sent, finalizing);
        prop_assert!(!owed.is_negative());
        let paid = &funds + &owed;
        if funds >= p.unseal_price || owed.is_zero() {
            prop_assert!(p.outstanding_balance(&paid, sent, finalizing).is_zero());
        } else {
            // the unseal price is settled first; data may then be owed on top
            prop_assert!(p.outstanding_balance(&paid, sent, finalizing) <= p.amount_for_bytes(sent));
        }
        prop_assert!(!p.client_owes(sent, &funds).is_negative());
    }

    #[test]
    fn messages_round_trip(id in any::<u64>(), owed in any::<u64>(), msg in ".{0,40}", n in 0usize..4) {
        let r = DealResponse {
            status: DealStatus::Ongoing,
            id: DealId(id),
            payment_owed: TokenAmount::from_atto(owed),
            message: msg,
            blocks: (0..n).map(|i| Block { prefix: vec![1, 0x55, 0x12, 0x20], data: vec![i as u8; i * 7].into() }).collect(),
        };
        prop_assert_eq!(codec::from_slice::<DealResponse>(&codec::to_vec(&r).unwrap()).unwrap(), r.clone());
        prop_assert_eq!(tuple::from_slice::<DealResponse>(&tuple::to_vec(&r).unwrap()).unwrap(), r);
    }
}

#[test]
fn malformed_vouchers_are_rejected() {
    let addr: Address = "f01000".parse().unwrap();
    let good = codec::to_vec(&SignedVoucher::new(
        addr,
        0,
        1,
        TokenAmount::from_atto(5u64),
    ))
    .unwrap();
    assert_eq!(good[0], 0x8b);
    let mut short = good.clone();
    short[0] = 0x8a; // 10 elements claimed
    assert!(codec::from_slice::<SignedVoucher>(&short).is_err());
    let mut as_map = good.clone();
    as_map[0] = 0xab;
    assert!(codec::from_slice::<SignedVoucher>(&as_map).is_err());
    // signature: empty byte string, unknown type byte
    let mut empty_sig = good[..good.len() - 1].to_vec();
    empty_sig.push(0x40);
    assert!(codec::from_slice::<SignedVoucher>(&empty_sig).is_err());
    let mut bad_type = good[..good.len() - 1].to_vec();
    bad_type.extend_from_slice(&[0x42, 0x09, 0x00]);
    assert!(codec::from_slice::<SignedVoucher>(&bad_type).is_err());
}
