//! Public signed-voucher vectors (Zondax/filecoin-signing-tools' voucher test vectors, and a
//! vector derived from the go-state-types SignedVoucher encoding), kept in
//! `testdata/paych_signed_voucher.json` (sources in `testdata/SOURCES.md`): signatures verify
//! and recover the stated signer, every single-bit flip fails, encodings round-trip. A
//! missing file fails the tests. Each `vectors_*` test prints
//! `vectors rm-paych/paych_signed_voucher.json (<part>): <N> checked`.

use rm_paych::voucher::{self, VoucherError};
use rm_paych::wallet::{self, SignatureError};
use rm_types::{Address, Network, Signature, SignatureType, SignedVoucher, TokenAmount, codec};
use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/paych_signed_voucher.json"
);

/// The vector file; missing, unreadable or invalid, the test fails.
fn load() -> Value {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("vector file {VECTORS} cannot be read: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("vector file {VECTORS} is not JSON: {e}"))
}

/// Prints the count line CI looks for, and fails a test that checked nothing.
fn report(part: &str, checked: usize) {
    println!("vectors rm-paych/paych_signed_voucher.json ({part}): {checked} checked");
    assert!(
        checked > 0,
        "paych_signed_voucher.json ({part}): no vectors checked"
    );
}

fn vector<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["vectors"]
        .as_array()
        .expect("vectors array")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("vector {name} missing"))
}

fn bytes(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} missing")),
    )
    .unwrap()
}

/// The zondax-sign voucher, its signing bytes and its stated signer.
fn zondax(doc: &Value) -> (SignedVoucher, Vec<u8>, Address) {
    let v = vector(doc, "zondax-sign");
    let voucher: SignedVoucher = codec::from_slice(&bytes(v, "cbor_hex")).unwrap();
    let signer: Address = v["recovered_signer"]["t"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (voucher, bytes(v, "signing_bytes_hex"), signer)
}

#[test]
fn vectors_zondax_signature_verifies_and_recovers_the_stated_signer() {
    let doc = load();
    let mut checked = 0usize;
    let v = vector(&doc, "zondax-sign");
    let (voucher, signing, signer) = zondax(&doc);
    assert_eq!(
        signer.to_string_with(Network::Testnet),
        "t1d2xrzcslx7xlbbylc5c3d5lvandqw4iwl6epxba"
    );
    assert_eq!(codec::to_vec(&voucher).unwrap(), bytes(v, "cbor_hex"));
    assert_eq!(voucher.signing_bytes().unwrap(), signing);
    assert_eq!(
        hex::encode(wallet::digest(&signing)),
        v["signing_digest_blake2b256_hex"].as_str().unwrap()
    );
    let sig = voucher.signature.clone().unwrap();
    assert_eq!(sig.sig_type, SignatureType::Secp256k1);
    assert_eq!(
        hex::encode(wallet::recover_public_key(&signing, &sig).unwrap()),
        v["recovered_signer"]["pubkey_uncompressed_hex"]
            .as_str()
            .unwrap()
    );
    assert_eq!(wallet::recover(&signing, &sig).unwrap(), signer);
    wallet::verify(&signing, &sig, &signer).unwrap();
    assert_eq!(voucher::signer(&voucher).unwrap(), signer);
    voucher::verify(&voucher, &signer).unwrap();
    // the declared fields
    let declared = &v["declared_fields"];
    assert_eq!(
        voucher.channel_addr.to_string_with(Network::Testnet),
        declared["payment_channel_address"].as_str().unwrap()
    );
    assert_eq!(voucher.lane, declared["lane"].as_u64().unwrap());
    assert_eq!(voucher.nonce, declared["nonce"].as_u64().unwrap());
    assert_eq!(
        voucher.amount,
        declared["amount"]
            .as_str()
            .unwrap()
            .parse::<TokenAmount>()
            .unwrap()
    );
    // a different key is not the signer
    let other = wallet::Keypair::generate();
    assert!(matches!(
        voucher::verify(&voucher, other.address()),
        Err(VoucherError::Signature(SignatureError::WrongSigner { .. }))
    ));
    checked += 1; // zondax-sign
    report("zondax signer", checked);
}

#[test]
fn vectors_zondax_every_single_bit_flip_fails() {
    let doc = load();
    let (voucher, signing, signer) = zondax(&doc);
    let sig = voucher.signature.clone().unwrap();
    let serialized = sig.to_bytes(); // type byte + r || s || v
    let mut checked = 0usize;
    for bit in 0..serialized.len() * 8 {
        let mut flipped = serialized.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let accepted = match Signature::from_bytes(&flipped) {
            Ok(s) => wallet::verify(&signing, &s, &signer).is_ok(),
            Err(_) => false,
        };
        assert!(
            !accepted,
            "flipping bit {bit} of the signature still verifies"
        );
        checked += 1;
    }
    for bit in 0..signing.len() * 8 {
        let mut flipped = signing.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(
            wallet::verify(&flipped, &sig, &signer).is_err(),
            "flipping bit {bit} of the signing bytes still verifies"
        );
        checked += 1;
    }
    assert_eq!(checked, (66 + signing.len()) * 8);
    eprintln!(
        "zondax-sign: {checked} single-bit flips ({} of the signature, {} of the signing bytes) all rejected",
        serialized.len() * 8,
        signing.len() * 8
    );
    let vectors_checked = usize::from(checked > 0); // zondax-sign, flipped bit by bit
    report("zondax bit flips", vectors_checked);
}

#[test]
fn vectors_all_round_trip_and_are_judged() {
    let doc = load();
    let vectors = doc["vectors"].as_array().unwrap();
    let mut checked = 0;
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let cbor = bytes(v, "cbor_hex");
        let voucher: SignedVoucher = codec::from_slice(&cbor).unwrap();
        assert_eq!(
            codec::to_vec(&voucher).unwrap(),
            cbor,
            "{name}: re-encoding"
        );
        assert_eq!(
            voucher.signing_bytes().unwrap(),
            bytes(v, "signing_bytes_hex"),
            "{name}: signing bytes"
        );
        match name {
            "zondax-sign" => {
                voucher::check_shape(&voucher, &voucher.channel_addr).unwrap();
                assert!(voucher::signer(&voucher).is_ok());
            }
            "zondax-unsigned-create" => {
                assert!(matches!(
                    voucher::signer(&voucher),
                    Err(VoucherError::MissingSignature)
                ));
                assert_eq!(voucher.time_lock_min, 1234);
            }
            "derived-full" => {
                // secret hash and extra are present: rejected before the (dummy BLS) signature
                assert!(matches!(
                    voucher::check_shape(&voucher, &voucher.channel_addr),
                    Err(VoucherError::SecretHashUnsupported)
                ));
                assert!(matches!(
                    voucher::signer(&voucher),
                    Err(VoucherError::Signature(SignatureError::UnsupportedType(
                        SignatureType::Bls
                    )))
                ));
            }
            other => panic!("unexpected vector {other}: add a judgement for it"),
        }
        checked += 1;
    }
    report("all", checked);
    assert_eq!(checked, 3);
}
