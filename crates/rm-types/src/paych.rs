//! Payment-channel vouchers: [`SignedVoucher`], [`ModVerifyParams`], [`Merge`].
//!
//! The voucher is the specs-actors / builtin-actors `SignedVoucher`: an 11-element CBOR
//! array. Its signing bytes are the same array with the signature set to null; secp256k1
//! signers sign blake2b-256 of those bytes. Amounts are cumulative per lane.
//!
//! ```
//! use rm_types::{Address, SignedVoucher, TokenAmount};
//!
//! let mut v = SignedVoucher::new(Address::new_id(1001), 0, 1, TokenAmount::from_atto(410_000u64));
//! let unsigned = v.signing_bytes()?;
//! assert_eq!(unsigned.last(), Some(&0xf6)); // null signature
//! # Ok::<(), rm_types::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::{Address, Error, Signature, TokenAmount, codec};

/// A Filecoin epoch number (may be negative in vouchers).
pub type ChainEpoch = i64;

/// The highest lane number the paych actor accepts (`i64::MAX`).
pub const MAX_LANE: u64 = i64::MAX as u64;

/// Largest `SecretHash` accepted on decode (go-state-types).
pub const MAX_SECRET_HASH_LEN: usize = 2 << 20;

/// Most merges accepted on decode (go-state-types).
pub const MAX_MERGES: usize = 8192;

/// An optional call to another actor that must succeed before the voucher is redeemed.
/// CBOR: `[Actor, Method, Data]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModVerifyParams {
    /// Actor to call.
    pub actor: Address,
    /// Method number.
    pub method: u64,
    /// Parameters.
    pub data: Vec<u8>,
}

impl Serialize for ModVerifyParams {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (
            &self.actor,
            self.method,
            serde_bytes::Bytes::new(&self.data),
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ModVerifyParams {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (actor, method, data): (Address, u64, serde_bytes::ByteBuf) =
            Deserialize::deserialize(d)?;
        Ok(Self {
            actor,
            method,
            data: data.into_vec(),
        })
    }
}

/// A lane folded into the voucher's lane. CBOR: `[Lane, Nonce]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Merge {
    /// The merged lane.
    pub lane: u64,
    /// Its nonce.
    pub nonce: u64,
}

/// A payment-channel voucher (11-tuple, in this field order on the wire).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedVoucher {
    /// The payment channel the voucher draws on.
    pub channel_addr: Address,
    /// Not redeemable before this epoch.
    pub time_lock_min: ChainEpoch,
    /// Not redeemable after this epoch (0: no limit).
    pub time_lock_max: ChainEpoch,
    /// blake2b-256 of a secret that must be revealed to redeem (empty: none).
    pub secret_hash: Vec<u8>,
    /// Optional verification call.
    pub extra: Option<ModVerifyParams>,
    /// Lane number (at most [`MAX_LANE`]).
    pub lane: u64,
    /// Strictly increasing per lane.
    pub nonce: u64,
    /// Cumulative amount for the lane.
    pub amount: TokenAmount,
    /// Settlement cannot happen before this epoch.
    pub min_settle_height: ChainEpoch,
    /// Lanes merged into this one.
    pub merges: Vec<Merge>,
    /// The sender's signature over [`SignedVoucher::signing_bytes`].
    pub signature: Option<Signature>,
}

crate::codec::tuple_serde!(Merge {
    lane: u64,
    nonce: u64
});

type VoucherTuple = (
    Address,
    ChainEpoch,
    ChainEpoch,
    serde_bytes::ByteBuf,
    Option<ModVerifyParams>,
    u64,
    u64,
    TokenAmount,
    ChainEpoch,
    Vec<Merge>,
    Option<Signature>,
);

impl SignedVoucher {
    /// An unsigned voucher with no time locks, secret, extra call or merges.
    pub fn new(channel_addr: Address, lane: u64, nonce: u64, amount: TokenAmount) -> Self {
        Self {
            channel_addr,
            time_lock_min: 0,
            time_lock_max: 0,
            secret_hash: Vec::new(),
            extra: None,
            lane,
            nonce,
            amount,
            min_settle_height: 0,
            merges: Vec::new(),
            signature: None,
        }
    }

    /// The bytes the sender signs: this voucher's CBOR with a null signature.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, Error> {
        let unsigned = Self {
            signature: None,
            ..self.clone()
        };
        codec::to_vec(&unsigned)
    }
}

impl Serialize for SignedVoucher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (
            &self.channel_addr,
            self.time_lock_min,
            self.time_lock_max,
            serde_bytes::Bytes::new(&self.secret_hash),
            &self.extra,
            self.lane,
            self.nonce,
            &self.amount,
            self.min_settle_height,
            &self.merges,
            &self.signature,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SignedVoucher {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let t: VoucherTuple = Deserialize::deserialize(d)?;
        if t.3.len() > MAX_SECRET_HASH_LEN {
            return Err(D::Error::custom("secret hash too long"));
        }
        if t.9.len() > MAX_MERGES {
            return Err(D::Error::custom("too many merges"));
        }
        Ok(Self {
            channel_addr: t.0,
            time_lock_min: t.1,
            time_lock_max: t.2,
            secret_hash: t.3.into_vec(),
            extra: t.4,
            lane: t.5,
            nonce: t.6,
            amount: t.7,
            min_settle_height: t.8,
            merges: t.9,
            signature: t.10,
        })
    }
}
