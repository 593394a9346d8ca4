//! Vouchers as a provider receives them: decoding a `SignedVoucher` (DAG-CBOR tuple), the
//! shape rules, signature recovery and the signer check, then the whole ledger path
//! (`Ledger::save_voucher`) against a channel from a fixed key to a fixed recipient.
//!
//! The corpus holds vouchers signed with that key ([`secret`]), so the fuzzer starts from
//! inputs that pass the signature check and mutates them from there.

use rm_paych::ledger::Ledger;
use rm_paych::voucher;
use rm_paych::wallet::Keypair;
use rm_store::Keyspace;
use rm_types::{Address, SignedVoucher, TokenAmount, codec};

use crate::stable;

/// The secret key of the channel's sender in the fuzz corpus (not a real key).
pub fn secret() -> [u8; 32] {
    [7; 32]
}

/// The channel's recipient.
pub fn recipient() -> Address {
    Address::new_id(1000)
}

/// The ledger the corpus vouchers pay into: a channel from [`secret`]'s address to
/// [`recipient`] holding 10^18 attoFIL, and its address.
pub fn ledger() -> (Ledger, Address, Address) {
    let from = Keypair::from_secret_bytes(&secret())
        .expect("a valid key")
        .address()
        .clone();
    let ledger = Ledger::open(Keyspace::memory(rm_paych::ledger::DEFAULT_KEYSPACE));
    let (channel, _) = ledger
        .create_channel(
            &from,
            &recipient(),
            &TokenAmount::from_atto(1_000_000_000_000_000_000u64),
        )
        .expect("a channel in a fresh ledger");
    (ledger, channel, from)
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let Some(v) = stable(data, codec::from_slice::<SignedVoucher>, codec::to_vec) else {
        return;
    };
    let _ = v.signing_bytes();
    let _ = voucher::check_shape(&v, &v.channel_addr);
    let (ledger, channel, from) = ledger();
    if let Ok(signer) = voucher::signer(&v) {
        assert!(
            voucher::verify(&v, &signer).is_ok(),
            "the recovered signer verifies"
        );
    }
    let _ = voucher::verify(&v, &from);
    if let Ok(delta) = ledger.save_voucher(&channel, &v, &recipient()) {
        // Accepted once: the same voucher again is a no-op.
        assert!(!delta.is_negative());
        let again = ledger
            .save_voucher(&channel, &v, &recipient())
            .expect("a copy is a no-op");
        assert!(again.is_zero());
    }
}
