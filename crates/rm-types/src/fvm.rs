//! Lossless conversions to and from `fvm_shared` 4 (feature `fvm`), for Forest and ref-fvm
//! users who hold their own `Address`, `TokenAmount` and `Signature` values.
//!
//! ```
//! use rm_types::{Address, TokenAmount};
//!
//! let ours: Address = "t01024".parse()?;
//! let theirs = fvm_shared::address::Address::try_from(&ours)?;
//! assert_eq!(Address::try_from(&theirs)?, ours);
//!
//! let amount = TokenAmount::from_atto(19_958_000u64);
//! let fvm_amount = fvm_shared::econ::TokenAmount::from(&amount);
//! assert_eq!(TokenAmount::from(&fvm_amount), amount);
//! # Ok::<(), rm_types::Error>(())
//! ```
//!
//! Addresses convert through their byte form, token amounts through the attoFIL big
//! integer, signatures through type byte and raw bytes. The only conversion that can fail
//! on a valid rm value is a delegated (type 3) signature, which fvm_shared 4 cannot hold.

use fvm_shared::address::Address as FvmAddress;
use fvm_shared::crypto::signature::{Signature as FvmSignature, SignatureType as FvmSignatureType};
use fvm_shared::econ::TokenAmount as FvmTokenAmount;

use crate::{Address, AddressError, Error, Signature, SignatureType, TokenAmount};

impl TryFrom<&Address> for FvmAddress {
    type Error = Error;
    fn try_from(a: &Address) -> Result<Self, Error> {
        FvmAddress::from_bytes(&a.to_bytes())
            .map_err(|_| Error::Address(AddressError::InvalidPayload))
    }
}

impl TryFrom<&FvmAddress> for Address {
    type Error = Error;
    fn try_from(a: &FvmAddress) -> Result<Self, Error> {
        Ok(Address::from_bytes(&a.to_bytes())?)
    }
}

impl From<&TokenAmount> for FvmTokenAmount {
    fn from(t: &TokenAmount) -> Self {
        FvmTokenAmount::from_atto(t.atto().clone())
    }
}

impl From<&FvmTokenAmount> for TokenAmount {
    fn from(t: &FvmTokenAmount) -> Self {
        TokenAmount::from_atto(t.atto().clone())
    }
}

impl TryFrom<&Signature> for FvmSignature {
    type Error = Error;
    fn try_from(s: &Signature) -> Result<Self, Error> {
        let sig_type = match s.sig_type {
            SignatureType::Secp256k1 => FvmSignatureType::Secp256k1,
            SignatureType::Bls => FvmSignatureType::BLS,
            SignatureType::Delegated => {
                return Err(Error::Signature(
                    "fvm_shared 4 has no delegated signature type",
                ));
            }
        };
        Ok(FvmSignature {
            sig_type,
            bytes: s.bytes.clone(),
        })
    }
}

impl From<&FvmSignature> for Signature {
    fn from(s: &FvmSignature) -> Self {
        let sig_type = match s.sig_type {
            FvmSignatureType::Secp256k1 => SignatureType::Secp256k1,
            FvmSignatureType::BLS => SignatureType::Bls,
        };
        Signature {
            sig_type,
            bytes: s.bytes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_every_protocol_round_trip_with_identical_strings() {
        let addrs = [
            Address::new_id(0),
            Address::new_id(u64::MAX),
            Address::new_secp256k1(&[4u8; 65]),
            Address::new_actor(b"actor"),
            Address::new_bls(&[7u8; 48]).unwrap(),
            Address::new_delegated(10, &[0xcc; 20]).unwrap(),
        ];
        for a in addrs {
            let f = FvmAddress::try_from(&a).unwrap();
            assert_eq!(f.to_bytes(), a.to_bytes());
            // fvm_shared prints with its process-wide default network, mainnet.
            assert_eq!(f.to_string(), a.to_string());
            assert_eq!(Address::try_from(&f).unwrap(), a);
        }
    }

    #[test]
    fn amounts_and_signatures_round_trip() {
        for atto in [0i64, 1, -1, 19_958_000, i64::MAX] {
            let t = TokenAmount::from_atto(atto);
            assert_eq!(TokenAmount::from(&FvmTokenAmount::from(&t)), t);
        }
        let s = Signature::new_secp256k1(vec![9; 65]);
        let f = FvmSignature::try_from(&s).unwrap();
        assert_eq!(Signature::from(&f), s);
        // same CBOR bytes on both sides
        assert_eq!(
            crate::codec::to_vec(&s).unwrap(),
            fvm_ipld_encoding_bytes(&f)
        );
        let d = Signature {
            sig_type: SignatureType::Delegated,
            bytes: vec![1; 65],
        };
        assert!(FvmSignature::try_from(&d).is_err());
    }

    fn fvm_ipld_encoding_bytes(s: &FvmSignature) -> Vec<u8> {
        serde_ipld_dagcbor::to_vec(s).unwrap()
    }
}
