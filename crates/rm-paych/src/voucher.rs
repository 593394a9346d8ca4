//! Creating, signing and checking payment-channel vouchers.
//!
//! A voucher ([`SignedVoucher`]) promises the channel's recipient a **cumulative** amount on
//! one lane; each new voucher on a lane carries a higher nonce and the new total. The sender
//! signs blake2b-256 of the voucher's signing bytes (the 11-tuple with a null signature).
//!
//! [`Ledger::save_voucher`](crate::ledger::Ledger::save_voucher) applies the paych actor's
//! `UpdateChannelState` rules (builtin-actors `actors/paych`, `update_channel_state`) to a
//! received voucher, in this order; the first rule broken is reported as a [`VoucherError`]
//! and nothing is stored:
//!
//! | # | rule | error |
//! |---|---|---|
//! | 1 | the voucher names the channel it is presented for | [`ChannelMismatch`](VoucherError::ChannelMismatch) |
//! | 2 | `lane <= 2^63 - 1` | [`LaneOutOfRange`](VoucherError::LaneOutOfRange) |
//! | 3 | `amount >= 0` | [`NegativeAmount`](VoucherError::NegativeAmount) |
//! | 4 | no secret hash (rm has no way to carry the secret) | [`SecretHashUnsupported`](VoucherError::SecretHashUnsupported) |
//! | 5 | no `extra` call (there is no actor to call without a chain) | [`ExtraUnsupported`](VoucherError::ExtraUnsupported) |
//! | 6 | at most [`MAX_MERGES`] merges | [`TooManyMerges`](VoucherError::TooManyMerges) |
//! | 7 | signed, secp256k1, and the signature recovers a key | [`MissingSignature`](VoucherError::MissingSignature), [`Signature`](VoucherError::Signature) |
//! | 8 | the channel is known, or (provider, two processes) its address derives from the signer and the recipient | [`UnknownChannel`](VoucherError::UnknownChannel) |
//! | 9 | the channel pays the node that checks it | [`NotRecipient`](VoucherError::NotRecipient) |
//! | — | a voucher identical to the lane's latest stored voucher is a **no-op returning 0** | — |
//! | 10 | the signer is the channel's `from` | [`Signature`](VoucherError::Signature) (`WrongSigner`) |
//! | 11 | not collected; not settled (`settling_at == 0 or epoch < settling_at`) | [`ChannelCollected`](VoucherError::ChannelCollected), [`ChannelSettled`](VoucherError::ChannelSettled) |
//! | 12 | `time_lock_min <= epoch`; `time_lock_max == 0 or epoch <= time_lock_max` | [`NotYetValid`](VoucherError::NotYetValid), [`Expired`](VoucherError::Expired) |
//! | 13 | `nonce > lane.nonce` (strictly) | [`StaleNonce`](VoucherError::StaleNonce) |
//! | 14 | each merge: not the own lane, lane exists, `merge.nonce > lane.nonce` | [`MergeOwnLane`](VoucherError::MergeOwnLane), [`MergeUnknownLane`](VoucherError::MergeUnknownLane), [`MergeStaleNonce`](VoucherError::MergeStaleNonce) |
//! | 15 | `delta = amount − (lane.redeemed + Σ merged redeemed) >= 0` | [`AmountBelowRedeemed`](VoucherError::AmountBelowRedeemed) |
//! | 16 | `to_send + delta <= funds` (channels whose funds the ledger knows) | [`InsufficientFunds`](VoucherError::InsufficientFunds) |
//!
//! Effects of an accepted voucher (as the actor): `lane.nonce = nonce`, `lane.redeemed =
//! amount`, each merged lane's nonce set to the merge nonce, `to_send += delta`,
//! `min_settle_height` raised (and `settling_at` pushed to it if the channel is settling).
//! The delta is what the recipient newly received.
//!
//! Deliberate differences from the actor: rule 15 — the actor accepts a voucher that lowers
//! a lane's amount as long as `to_send` stays non-negative; a provider must never accept a
//! payment that takes money back, so rm rejects any negative delta. Rules 4–5 — the actor
//! supports secrets and extra calls; rm rejects such vouchers with typed errors instead of
//! accepting promises it cannot check. The re-sent voucher — the actor rejects an equal nonce;
//! markets treat a re-sent voucher as already received (go-fil-markets #540, Lotus
//! `AddVoucherInbound`), so an exact copy of the lane's latest voucher returns 0 and changes
//! nothing. A different voucher with the same nonce is still [`StaleNonce`](VoucherError::StaleNonce).

use std::collections::BTreeMap;

use rm_types::address::Protocol;
use rm_types::paych::MAX_LANE;
use rm_types::{Address, ChainEpoch, SignatureType, SignedVoucher, TokenAmount};
use serde::{Deserialize, Serialize};

use crate::ledger::{Channel, Origin};
use crate::wallet::{self, SignatureError, Wallet, WalletError};

/// Most merges rm checks in one voucher (the actor has no limit of its own; decoding caps
/// them at 8192).
pub const MAX_MERGES: usize = 64;

/// The redeemed state of one lane (the actor's `LaneState`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneState {
    /// The nonce of the latest voucher accepted on the lane (0: none yet).
    pub nonce: u64,
    /// The cumulative amount of that voucher.
    pub redeemed: TokenAmount,
}

/// Why a voucher was rejected (or could not be made).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VoucherError {
    /// The voucher names another channel than the one it was presented for.
    #[error("voucher is for channel {voucher}, presented for {expected}")]
    ChannelMismatch {
        /// The channel it was presented for.
        expected: Address,
        /// The channel in the voucher.
        voucher: Address,
    },
    /// The lane is above `2^63 - 1`.
    #[error("lane {0} is above the maximum lane 2^63-1")]
    LaneOutOfRange(u64),
    /// The amount is negative.
    #[error("voucher amount {0:?} is negative")]
    NegativeAmount(TokenAmount),
    /// The voucher needs a secret; rm cannot receive one.
    #[error("vouchers with a secret hash are not supported")]
    SecretHashUnsupported,
    /// The voucher asks for a call to another actor; there is no chain to make it.
    #[error("vouchers with an extra verification call are not supported")]
    ExtraUnsupported,
    /// More than [`MAX_MERGES`] merges.
    #[error("voucher merges {0} lanes, more than {MAX_MERGES}")]
    TooManyMerges(usize),
    /// The voucher is not signed.
    #[error("voucher is not signed")]
    MissingSignature,
    /// The signature is malformed, of an unsupported type, or not by the channel's sender.
    #[error("voucher signature: {0}")]
    Signature(#[from] SignatureError),
    /// The channel is not in the ledger and its address does not derive from the signer and
    /// the recipient.
    #[error("unknown payment channel {0}")]
    UnknownChannel(Address),
    /// The channel pays someone else than the node checking the voucher.
    #[error("channel pays {to}, not {recipient}")]
    NotRecipient {
        /// The channel's recipient.
        to: Address,
        /// The node that received the voucher.
        recipient: Address,
    },
    /// The channel has been collected.
    #[error("channel {0} has been collected")]
    ChannelCollected(Address),
    /// The channel settled at `settling_at`; no voucher is accepted any more.
    #[error("channel settled at epoch {settling_at} (now {epoch})")]
    ChannelSettled {
        /// When it settled.
        settling_at: ChainEpoch,
        /// The current epoch.
        epoch: ChainEpoch,
    },
    /// `time_lock_min` is in the future.
    #[error("voucher cannot be used before epoch {time_lock_min} (now {epoch})")]
    NotYetValid {
        /// The voucher's `time_lock_min`.
        time_lock_min: ChainEpoch,
        /// The current epoch.
        epoch: ChainEpoch,
    },
    /// `time_lock_max` has passed.
    #[error("voucher expired at epoch {time_lock_max} (now {epoch})")]
    Expired {
        /// The voucher's `time_lock_max`.
        time_lock_max: ChainEpoch,
        /// The current epoch.
        epoch: ChainEpoch,
    },
    /// The nonce is not above the lane's latest nonce.
    #[error("outdated nonce {nonce} on lane {lane} (latest {latest})")]
    StaleNonce {
        /// The lane.
        lane: u64,
        /// The lane's latest nonce.
        latest: u64,
        /// The voucher's nonce.
        nonce: u64,
    },
    /// A merge names the voucher's own lane.
    #[error("voucher merges its own lane {0}")]
    MergeOwnLane(u64),
    /// A merge names a lane that has no voucher yet.
    #[error("voucher merges unknown lane {0}")]
    MergeUnknownLane(u64),
    /// A merge nonce is not above the merged lane's nonce.
    #[error("merge of lane {lane} has outdated nonce {nonce} (latest {latest})")]
    MergeStaleNonce {
        /// The merged lane.
        lane: u64,
        /// Its latest nonce.
        latest: u64,
        /// The merge nonce.
        nonce: u64,
    },
    /// The voucher would pay less than already redeemed on the lane (and merged lanes).
    #[error("voucher amount {amount:?} is below the {redeemed:?} already redeemed")]
    AmountBelowRedeemed {
        /// Already redeemed (lane plus merged lanes).
        redeemed: TokenAmount,
        /// The voucher's amount.
        amount: TokenAmount,
    },
    /// The channel's funds cannot cover the voucher.
    #[error("not enough funds in channel: shortfall {shortfall:?}")]
    InsufficientFunds {
        /// How much is missing.
        shortfall: TokenAmount,
    },
    /// The wallet could not sign.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// The voucher could not be encoded.
    #[error("voucher encoding: {0}")]
    Encode(#[from] rm_types::Error),
}

/// Signs `voucher` in place with the key of `signer`.
pub fn sign(
    voucher: &mut SignedVoucher,
    wallet: &Wallet,
    signer: &Address,
) -> Result<(), VoucherError> {
    let bytes = voucher.signing_bytes()?;
    voucher.signature = Some(wallet.sign(signer, &bytes)?);
    Ok(())
}

/// A voucher on `channel` for the cumulative `amount` on `lane` with `nonce`, signed by
/// `signer` (no time locks, secret, extra call or merges).
pub fn create(
    wallet: &Wallet,
    signer: &Address,
    channel: Address,
    lane: u64,
    nonce: u64,
    amount: TokenAmount,
) -> Result<SignedVoucher, VoucherError> {
    let mut voucher = SignedVoucher::new(channel, lane, nonce, amount);
    sign(&mut voucher, wallet, signer)?;
    Ok(voucher)
}

/// The `f1` address whose key signed `voucher`.
pub fn signer(voucher: &SignedVoucher) -> Result<Address, VoucherError> {
    let signature = voucher
        .signature
        .as_ref()
        .ok_or(VoucherError::MissingSignature)?;
    if signature.sig_type != SignatureType::Secp256k1 {
        return Err(SignatureError::UnsupportedType(signature.sig_type).into());
    }
    Ok(wallet::recover(&voucher.signing_bytes()?, signature)?)
}

/// Checks that `voucher` is signed by the key of `expected`.
pub fn verify(voucher: &SignedVoucher, expected: &Address) -> Result<(), VoucherError> {
    if expected.protocol() != Protocol::Secp256k1 {
        return Err(SignatureError::SignerNotSecp256k1(expected.clone()).into());
    }
    let recovered = signer(voucher)?;
    if recovered == *expected {
        Ok(())
    } else {
        Err(SignatureError::WrongSigner {
            expected: expected.clone(),
            recovered,
        }
        .into())
    }
}

/// Rules 1–6 of the [module table](self): those that need no state and no signature check.
pub fn check_shape(voucher: &SignedVoucher, channel: &Address) -> Result<(), VoucherError> {
    if voucher.channel_addr != *channel {
        return Err(VoucherError::ChannelMismatch {
            expected: channel.clone(),
            voucher: voucher.channel_addr.clone(),
        });
    }
    if voucher.lane > MAX_LANE {
        return Err(VoucherError::LaneOutOfRange(voucher.lane));
    }
    if voucher.amount.is_negative() {
        return Err(VoucherError::NegativeAmount(voucher.amount.clone()));
    }
    if !voucher.secret_hash.is_empty() {
        return Err(VoucherError::SecretHashUnsupported);
    }
    if voucher.extra.is_some() {
        return Err(VoucherError::ExtraUnsupported);
    }
    if voucher.merges.len() > MAX_MERGES {
        return Err(VoucherError::TooManyMerges(voucher.merges.len()));
    }
    Ok(())
}

/// What accepting a voucher changes.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// Newly received amount.
    pub(crate) delta: TokenAmount,
    /// The voucher's lane after the voucher.
    pub(crate) lane: LaneState,
    /// Merged lanes after the voucher.
    pub(crate) merged: BTreeMap<u64, LaneState>,
    /// The channel after the voucher.
    pub(crate) channel: Channel,
}

/// Rules 10–16: checks a voucher (already shape-checked, signer recovered) against the
/// channel, the voucher's lane and the lanes it merges (`merged` holds the existing ones).
pub(crate) fn check_state(
    channel: &Channel,
    signer: &Address,
    voucher: &SignedVoucher,
    lane: &LaneState,
    merged: &BTreeMap<u64, LaneState>,
    epoch: ChainEpoch,
) -> Result<Accepted, VoucherError> {
    if *signer != channel.from {
        return Err(SignatureError::WrongSigner {
            expected: channel.from.clone(),
            recovered: signer.clone(),
        }
        .into());
    }
    if channel.collected {
        return Err(VoucherError::ChannelCollected(channel.address.clone()));
    }
    if channel.settling_at != 0 && epoch >= channel.settling_at {
        return Err(VoucherError::ChannelSettled {
            settling_at: channel.settling_at,
            epoch,
        });
    }
    if voucher.time_lock_min > epoch {
        return Err(VoucherError::NotYetValid {
            time_lock_min: voucher.time_lock_min,
            epoch,
        });
    }
    if voucher.time_lock_max != 0 && epoch > voucher.time_lock_max {
        return Err(VoucherError::Expired {
            time_lock_max: voucher.time_lock_max,
            epoch,
        });
    }
    if voucher.nonce <= lane.nonce {
        return Err(VoucherError::StaleNonce {
            lane: voucher.lane,
            latest: lane.nonce,
            nonce: voucher.nonce,
        });
    }
    // Merges, in order, each against the state the previous ones left (as the actor does).
    let mut after: BTreeMap<u64, LaneState> = BTreeMap::new();
    let mut redeemed = lane.redeemed.clone();
    for merge in &voucher.merges {
        if merge.lane == voucher.lane {
            return Err(VoucherError::MergeOwnLane(merge.lane));
        }
        let mut other = match after.get(&merge.lane).or_else(|| merged.get(&merge.lane)) {
            Some(other) => other.clone(),
            None => return Err(VoucherError::MergeUnknownLane(merge.lane)),
        };
        if merge.nonce <= other.nonce {
            return Err(VoucherError::MergeStaleNonce {
                lane: merge.lane,
                latest: other.nonce,
                nonce: merge.nonce,
            });
        }
        redeemed += &other.redeemed;
        other.nonce = merge.nonce;
        after.insert(merge.lane, other);
    }
    let delta = &voucher.amount - &redeemed;
    if delta.is_negative() {
        return Err(VoucherError::AmountBelowRedeemed {
            redeemed,
            amount: voucher.amount.clone(),
        });
    }
    let to_send = &channel.to_send + &delta;
    if channel.origin == Origin::Created && to_send > channel.funds {
        return Err(VoucherError::InsufficientFunds {
            shortfall: &to_send - &channel.funds,
        });
    }
    let mut next = channel.clone();
    next.to_send = to_send;
    if voucher.min_settle_height != 0 {
        if next.settling_at != 0 && next.settling_at < voucher.min_settle_height {
            next.settling_at = voucher.min_settle_height;
        }
        if next.min_settle_height < voucher.min_settle_height {
            next.min_settle_height = voucher.min_settle_height;
        }
    }
    Ok(Accepted {
        delta,
        lane: LaneState {
            nonce: voucher.nonce,
            redeemed: voucher.amount.clone(),
        },
        merged: after,
        channel: next,
    })
}
