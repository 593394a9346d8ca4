//! [`Signature`]: a Filecoin signature (type byte + raw bytes).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Longest serialized signature accepted (go-state-types).
pub const MAX_SIGNATURE_LEN: usize = 200;

/// Length of a secp256k1 recoverable signature `r || s || v`.
pub const SECP256K1_SIGNATURE_LEN: usize = 65;

/// Length of a BLS signature.
pub const BLS_SIGNATURE_LEN: usize = 96;

/// Signature schemes, by the type byte that starts the serialized form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureType {
    /// `1`: secp256k1 over blake2b-256 of the message, 65-byte recoverable.
    Secp256k1 = 1,
    /// `2`: BLS12-381.
    Bls = 2,
    /// `3`: delegated (Ethereum-style) signatures.
    Delegated = 3,
}

impl TryFrom<u8> for SignatureType {
    type Error = Error;
    fn try_from(b: u8) -> Result<Self, Error> {
        Ok(match b {
            1 => Self::Secp256k1,
            2 => Self::Bls,
            3 => Self::Delegated,
            _ => return Err(Error::Signature("unknown signature type byte")),
        })
    }
}

/// A signature. CBOR: one byte string, the type byte followed by the raw signature.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    /// The scheme.
    pub sig_type: SignatureType,
    /// The raw signature bytes (65 for secp256k1: `r || s || v`).
    pub bytes: Vec<u8>,
}

impl Signature {
    /// A secp256k1 signature from its 65 raw bytes.
    pub fn new_secp256k1(bytes: Vec<u8>) -> Self {
        Self {
            sig_type: SignatureType::Secp256k1,
            bytes,
        }
    }

    /// The serialized form: type byte followed by the raw bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.bytes.len());
        out.push(self.sig_type as u8);
        out.extend_from_slice(&self.bytes);
        out
    }

    /// Parses the serialized form; empty, unknown type and over-long inputs are rejected.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_SIGNATURE_LEN {
            return Err(Error::Signature("longer than 200 bytes"));
        }
        let (&t, raw) = bytes
            .split_first()
            .ok_or(Error::Signature("empty signature"))?;
        Ok(Self {
            sig_type: SignatureType::try_from(t)?,
            bytes: raw.to_vec(),
        })
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.to_bytes())
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}
