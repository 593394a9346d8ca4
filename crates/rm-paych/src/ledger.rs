//! A local payment-channel ledger: channels, lanes, vouchers, settlement.
//!
//! The ledger plays the paych actor without a chain. It lives in its own keyspace of the
//! node's database ([`Ledger::open`] takes an [`rm_store::Keyspace`]: RocksDB in a node,
//! memory in tests and in programs that need no persistence).
//!
//! What it records, per channel ([`Channel`]):
//!
//! - the sender side (client): declared funds, lanes allocated, and per lane the latest
//!   voucher it made ([`Ledger::sent`]), whose amounts add up to `committed`;
//! - the recipient side (provider): per lane the actor's [`LaneState`] (`nonce`,
//!   `redeemed`) and the latest voucher received ([`Ledger::latest_voucher`], what would be
//!   submitted on chain), whose deltas add up to `to_send`;
//! - settlement: `settling_at`, `min_settle_height`, `collected`, against an epoch the
//!   ledger keeps ([`Ledger::epoch`], 0 until someone sets it).
//!
//! Both sides of one process (tests, the demo, benchmarks) use the same ledger: the client's
//! bookkeeping and the provider's never share a field, so a voucher the client made is still
//! new to the provider. Channel addresses are actor-style addresses derived from the
//! creation data ([`derive_channel_address`]); funding messages are represented by real CIDs
//! (CIDv1, raw codec, blake2b-256 of the message's DAG-CBOR) that a client state machine
//! can wait on; in a local ledger they are final at once.
//!
//! Every mutation is one atomic write batch; a mutex serialises read-modify-write
//! cycles, so the ledger may be shared by any number of tasks (`Arc<Ledger>`). A rejected
//! operation writes nothing. Writes are not fsynced by default (they survive a crash of the
//! process, not of the machine); [`Ledger::with_durability`] (`Durability::Machine`) turns
//! fsync on at about 1 ms per write.
//!
//! ```
//! use std::sync::Arc;
//! use rm_paych::ledger::{self, Ledger};
//! use rm_paych::wallet::Wallet;
//! use rm_types::TokenAmount;
//!
//! // A node passes a keyspace of its RocksDB database (`db.keyspace(ledger::DEFAULT_KEYSPACE)`).
//! let ledger = Ledger::open(rm_store::Keyspace::memory(ledger::DEFAULT_KEYSPACE));
//! let wallet = Wallet::in_memory();
//! let (client, provider) = (wallet.new_key()?, wallet.new_key()?);
//!
//! let (channel, _message) = ledger.create_channel(&client, &provider, &TokenAmount::from_atto(100u64))?;
//! let lane = ledger.allocate_lane(&channel)?;
//! let voucher = ledger.create_voucher(&wallet, &channel, lane, &TokenAmount::from_atto(60u64))?;
//! assert_eq!(ledger.save_voucher(&channel, &voucher, &provider)?, TokenAmount::from_atto(60u64));
//! assert!(ledger.save_voucher(&channel, &voucher, &provider)?.is_zero()); // re-sent: no-op
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use rm_store::{Durability, Keyspace, WriteBatch};
use rm_types::paych::MAX_LANE;
use rm_types::{Address, ChainEpoch, ChannelAvailableFunds, Cid, SignedVoucher, TokenAmount};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::voucher::{self, LaneState, VoucherError};
use crate::wallet::{Wallet, WalletError};

/// The keyspace name the node uses for the ledger.
pub const DEFAULT_KEYSPACE: &str = "paych";

/// Epochs between `Settle` and the moment the channel can be collected: 12 hours of 30 s
/// epochs (builtin-actors `SETTLE_DELAY`).
pub const SETTLE_DELAY: ChainEpoch = 12 * 120;

/// A provider learns a channel it has never seen only if its address derives from (voucher
/// signer, provider, creation nonce) with a creation nonce below this bound.
pub const MAX_LEARN_NONCE: u64 = 256;

/// Largest stored record accepted when reading (records are far smaller).
const MAX_RECORD_LEN: usize = 256 * 1024;

const CHANNEL: u8 = b'c';
const LANE: u8 = b'l';
const SENT: u8 = b'o';
const PAIR: u8 = b'p';
const MESSAGE: u8 = b'm';
const EPOCH_KEY: &[u8] = b"e";

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] rm_store::Error),
    /// A stored record could not be decoded (or encoded).
    #[error("corrupt {what} record: {reason}")]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// No such channel.
    #[error("payment channel {0} not found")]
    ChannelNotFound(Address),
    /// No funding message with this CID.
    #[error("unknown message {0}")]
    UnknownMessage(Cid),
    /// The channel was learned from a received voucher: this ledger only receives on it.
    #[error("channel {0} was not created by this ledger; it can only receive vouchers")]
    NotOutbound(Address),
    /// The lane was never allocated on this channel.
    #[error("lane {lane} is not allocated on channel {channel}")]
    LaneNotAllocated {
        /// The channel.
        channel: Address,
        /// The lane.
        lane: u64,
    },
    /// All `2^63` lanes are allocated.
    #[error("no lane left on channel {0}")]
    LanesExhausted(Address),
    /// The lane's nonce reached `u64::MAX`.
    #[error("no nonce left on lane {0}")]
    NonceExhausted(u64),
    /// No free channel address for this pair (more than [`MAX_LEARN_NONCE`] collisions).
    #[error("no free channel address for {from} -> {to}")]
    AddressExhausted {
        /// Sender.
        from: Address,
        /// Recipient.
        to: Address,
    },
    /// An amount was negative.
    #[error("amount {0:?} is negative")]
    NegativeAmount(TokenAmount),
    /// A voucher would lower the lane's cumulative amount.
    #[error("lane {lane} already promised {latest:?}; cannot promise less ({requested:?})")]
    AmountDecreased {
        /// The lane.
        lane: u64,
        /// The amount of the lane's latest voucher.
        latest: TokenAmount,
        /// The amount asked for.
        requested: TokenAmount,
    },
    /// The channel's funds cannot cover the vouchers.
    #[error("insufficient funds in channel: shortfall {shortfall:?}")]
    Shortfall {
        /// How much is missing.
        shortfall: TokenAmount,
    },
    /// The channel is settling or settled: no more funds, lanes or (once settled) vouchers.
    #[error("channel {channel} is settling (at epoch {settling_at})")]
    Settling {
        /// The channel.
        channel: Address,
        /// When it settles.
        settling_at: ChainEpoch,
    },
    /// The channel has been collected.
    #[error("channel {0} has been collected")]
    Collected(Address),
    /// Collect before the channel settled.
    #[error(
        "channel cannot be collected before epoch {settling_at} (now {epoch}; 0 = not settling)"
    )]
    NotSettled {
        /// When it settles (0: not settling).
        settling_at: ChainEpoch,
        /// The current epoch.
        epoch: ChainEpoch,
    },
    /// The epoch may only move forward.
    #[error("epoch cannot go back from {current} to {requested}")]
    EpochBackwards {
        /// The current epoch.
        current: ChainEpoch,
        /// The epoch asked for.
        requested: ChainEpoch,
    },
    /// A received voucher broke a rule.
    #[error("{0}")]
    Voucher(#[from] VoucherError),
    /// The wallet could not sign.
    #[error(transparent)]
    Wallet(#[from] WalletError),
}

/// How a channel came into this ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// Created here ([`Ledger::create_channel`]): its funds are known and enforced.
    Created,
    /// Learned from the first voucher received on it (provider, two processes): its funds
    /// are unknown, so the funds rule is not applied.
    Learned,
}

/// A payment channel as the ledger records it (lanes are read separately).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// The channel's actor-style address.
    pub address: Address,
    /// Sender (client); signs vouchers.
    pub from: Address,
    /// Recipient (provider).
    pub to: Address,
    /// The creation nonce the address derives from.
    pub creation_nonce: u64,
    /// Created here or learned from a voucher.
    pub origin: Origin,
    /// The channel's balance (declared funds; 0 and unchecked for learned channels).
    pub funds: TokenAmount,
    /// Recipient side: total of the deltas of accepted vouchers (owed to `to`).
    pub to_send: TokenAmount,
    /// Sender side: total of the latest voucher amount of every lane (promised to `to`).
    pub committed: TokenAmount,
    /// Sender side: the next lane [`Ledger::allocate_lane`] hands out.
    pub next_lane: u64,
    /// Epoch at which the channel settles (0: not settling).
    pub settling_at: ChainEpoch,
    /// Settlement cannot happen before this epoch (raised by vouchers).
    pub min_settle_height: ChainEpoch,
    /// Whether the channel has been collected (closed).
    pub collected: bool,
    /// Number of add-funds messages so far (makes their CIDs unique).
    pub messages: u64,
}

impl Channel {
    /// Funds not yet promised by the sender's vouchers (`funds − committed`).
    pub fn available(&self) -> TokenAmount {
        &self.funds - &self.committed
    }

    /// Whether vouchers are no longer accepted at `epoch`.
    pub fn is_settled(&self, epoch: ChainEpoch) -> bool {
        self.settling_at != 0 && epoch >= self.settling_at
    }
}

/// Result of [`Ledger::get_or_create_channel`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Funding {
    /// A new channel was created by `message`.
    Created {
        /// The channel.
        channel: Address,
        /// The creation message.
        message: Cid,
    },
    /// The existing channel was topped up by `message`.
    AddedFunds {
        /// The channel.
        channel: Address,
        /// The add-funds message.
        message: Cid,
    },
    /// The existing channel already had the funds available.
    Ready {
        /// The channel.
        channel: Address,
    },
}

/// What [`Ledger::collect`] paid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payout {
    /// Paid to the recipient (`to_send`).
    pub to_recipient: TokenAmount,
    /// Returned to the sender (`funds − to_send`; 0 for learned channels).
    pub to_sender: TokenAmount,
}

#[derive(Serialize, Deserialize)]
struct LaneRecord {
    state: LaneState,
    voucher: Option<SignedVoucher>,
}

#[derive(Serialize, Deserialize)]
struct SentRecord {
    nonce: u64,
    amount: TokenAmount,
    voucher: SignedVoucher,
}

#[derive(Default, Serialize, Deserialize)]
struct PairRecord {
    next_nonce: u64,
    active: Option<Address>,
}

#[derive(Serialize, Deserialize)]
struct MessageRecord {
    channel: Address,
    amount: TokenAmount,
}

/// The actor-style address of the channel `from` -> `to` with creation nonce `nonce`:
/// `Address::new_actor` (blake2b-160) of the DAG-CBOR array `[from, to, nonce]` (addresses
/// as byte strings).
pub fn derive_channel_address(from: &Address, to: &Address, nonce: u64) -> Address {
    let from = from.to_bytes();
    let to = to.to_bytes();
    let mut cbor = Vec::with_capacity(6 + from.len() + to.len() + 9);
    cbor.push(0x83);
    cbor_header(&mut cbor, 2, from.len() as u64);
    cbor.extend_from_slice(&from);
    cbor_header(&mut cbor, 2, to.len() as u64);
    cbor.extend_from_slice(&to);
    cbor_header(&mut cbor, 0, nonce);
    Address::new_actor(&cbor)
}

/// Appends a canonical CBOR header of major type `major` with argument `arg`.
fn cbor_header(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    match arg {
        0..=23 => out.push(m | arg as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

/// CIDv1, raw codec, blake2b-256 multihash of `bytes`.
fn message_cid(bytes: &[u8]) -> Result<Cid, LedgerError> {
    let digest = crate::wallet::digest(bytes);
    // version 1, codec raw (0x55), multihash blake2b-256 (0xb220 as varint), length 32
    let mut raw = Vec::with_capacity(6 + digest.len());
    raw.extend_from_slice(&[0x01, 0x55, 0xa0, 0xe4, 0x02, 0x20]);
    raw.extend_from_slice(&digest);
    Cid::try_from(raw).map_err(|e| LedgerError::Corrupt {
        what: "message CID",
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, LedgerError> {
    rm_types::codec::to_vec(value).map_err(|e| LedgerError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, LedgerError> {
    rm_types::codec::from_slice_limited(bytes, MAX_RECORD_LEN).map_err(|e| LedgerError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

fn prefixed(tag: u8, address: &Address) -> Vec<u8> {
    let bytes = address.to_bytes();
    let mut key = Vec::with_capacity(2 + bytes.len() + 8);
    key.push(tag);
    // Address bytes are at most 66 bytes; the length keeps prefixes unambiguous.
    key.push(bytes.len() as u8);
    key.extend_from_slice(&bytes);
    key
}

fn channel_key(address: &Address) -> Vec<u8> {
    prefixed(CHANNEL, address)
}

fn lane_key(tag: u8, channel: &Address, lane: u64) -> Vec<u8> {
    let mut key = prefixed(tag, channel);
    key.extend_from_slice(&lane.to_be_bytes());
    key
}

fn pair_key(from: &Address, to: &Address) -> Vec<u8> {
    let mut key = prefixed(PAIR, from);
    key.extend_from_slice(&to.to_bytes());
    key
}

fn message_key(cid: &Cid) -> Vec<u8> {
    let mut key = vec![MESSAGE];
    key.extend_from_slice(&cid.to_bytes());
    key
}

/// The payment-channel ledger (see the [module docs](self)).
pub struct Ledger {
    keyspace: Keyspace,
    durability: Durability,
    lock: Mutex<()>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("keyspace", &self.keyspace)
            .field("durability", &self.durability)
            .finish()
    }
}

/// What [`Ledger::save_voucher`] decided under the lock.
enum Saved {
    Duplicate,
    Accepted(TokenAmount),
}

impl Ledger {
    /// The ledger kept in `keyspace` (for a node: [`DEFAULT_KEYSPACE`] of its database).
    pub fn open(keyspace: Keyspace) -> Self {
        Self {
            keyspace,
            durability: Durability::Process,
            lock: Mutex::new(()),
        }
    }

    /// Whether every write is fsynced ([`Durability::Machine`]) or not (the default).
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The keyspace the ledger lives in.
    pub fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        // The mutex guards no data (the state is in RocksDB, written in atomic batches), so a
        // panic while it was held left nothing half-done.
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get<T: DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, LedgerError> {
        self.keyspace
            .get_with(key, |bytes| decode(bytes, what))?
            .transpose()
    }

    fn put<T: Serialize>(
        &self,
        batch: &mut WriteBatch,
        key: &[u8],
        value: &T,
        what: &'static str,
    ) -> Result<(), LedgerError> {
        batch.put_owned(&self.keyspace, key.to_vec(), encode(value, what)?);
        Ok(())
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), LedgerError> {
        Ok(self.keyspace.db().write(batch, self.durability)?)
    }

    fn scan<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
        what: &'static str,
    ) -> Result<Vec<(Vec<u8>, T)>, LedgerError> {
        let mut out = Vec::new();
        for item in self.keyspace.prefix(prefix) {
            let (key, value) = item?;
            out.push((key[prefix.len()..].to_vec(), decode(&value, what)?));
        }
        Ok(out)
    }

    fn scan_lanes<T: DeserializeOwned>(
        &self,
        tag: u8,
        channel: &Address,
        what: &'static str,
    ) -> Result<Vec<(u64, T)>, LedgerError> {
        self.scan::<T>(&prefixed(tag, channel), what)?
            .into_iter()
            .map(|(rest, value)| {
                let lane: [u8; 8] =
                    rest.as_slice()
                        .try_into()
                        .map_err(|_| LedgerError::Corrupt {
                            what: "lane key",
                            reason: format!("{} bytes after the channel", rest.len()),
                        })?;
                Ok((u64::from_be_bytes(lane), value))
            })
            .collect()
    }

    fn existing(&self, channel: &Address) -> Result<Channel, LedgerError> {
        self.channel(channel)?
            .ok_or_else(|| LedgerError::ChannelNotFound(channel.clone()))
    }

    // ---- epoch ----

    /// The ledger's current epoch (0 until set).
    pub fn epoch(&self) -> Result<ChainEpoch, LedgerError> {
        Ok(self.get(EPOCH_KEY, "epoch")?.unwrap_or(0))
    }

    /// Moves the epoch forward to `epoch` (it cannot go back).
    pub fn set_epoch(&self, epoch: ChainEpoch) -> Result<(), LedgerError> {
        let _guard = self.guard();
        let current = self.epoch()?;
        if epoch < current {
            return Err(LedgerError::EpochBackwards {
                current,
                requested: epoch,
            });
        }
        let mut batch = WriteBatch::new();
        self.put(&mut batch, EPOCH_KEY, &epoch, "epoch")?;
        self.commit(batch)
    }

    // ---- reading ----

    /// The channel at `address`, if known.
    pub fn channel(&self, address: &Address) -> Result<Option<Channel>, LedgerError> {
        self.get(&channel_key(address), "channel")
    }

    /// Every channel in the ledger, in key order.
    pub fn channels(&self) -> Result<Vec<Channel>, LedgerError> {
        Ok(self
            .scan::<Channel>(&[CHANNEL], "channel")?
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }

    /// The channel `from` -> `to` that [`Ledger::get_or_create_channel`] would use.
    pub fn active_channel(
        &self,
        from: &Address,
        to: &Address,
    ) -> Result<Option<Address>, LedgerError> {
        Ok(self
            .get::<PairRecord>(&pair_key(from, to), "pair")?
            .and_then(|p| p.active))
    }

    /// Recipient side: the state of `lane` (None if no voucher was accepted on it).
    pub fn lane(&self, channel: &Address, lane: u64) -> Result<Option<LaneState>, LedgerError> {
        Ok(self
            .get::<LaneRecord>(&lane_key(LANE, channel, lane), "lane")?
            .map(|r| r.state))
    }

    /// Recipient side: every lane with an accepted voucher.
    pub fn lanes(&self, channel: &Address) -> Result<Vec<(u64, LaneState)>, LedgerError> {
        Ok(self
            .scan_lanes::<LaneRecord>(LANE, channel, "lane")?
            .into_iter()
            .map(|(lane, r)| (lane, r.state))
            .collect())
    }

    /// Recipient side: the latest voucher accepted on `lane` (the one to redeem on chain).
    pub fn latest_voucher(
        &self,
        channel: &Address,
        lane: u64,
    ) -> Result<Option<SignedVoucher>, LedgerError> {
        Ok(self
            .get::<LaneRecord>(&lane_key(LANE, channel, lane), "lane")?
            .and_then(|r| r.voucher))
    }

    /// Sender side: nonce and amount of the latest voucher this ledger made on `lane`.
    pub fn sent(&self, channel: &Address, lane: u64) -> Result<Option<LaneState>, LedgerError> {
        Ok(self
            .get::<SentRecord>(&lane_key(SENT, channel, lane), "sent voucher")?
            .map(|r| LaneState {
                nonce: r.nonce,
                redeemed: r.amount,
            }))
    }

    /// The channel that funding message `message` created or topped up.
    pub fn message_channel(&self, message: &Cid) -> Result<Address, LedgerError> {
        self.get::<MessageRecord>(&message_key(message), "message")?
            .map(|m| m.channel)
            .ok_or(LedgerError::UnknownMessage(*message))
    }

    /// What the sender can still promise on `channel`, in the node traits' terms: all funds
    /// are confirmed (nothing pending), `voucher_redeemed` is `committed`.
    pub fn available_funds(&self, channel: &Address) -> Result<ChannelAvailableFunds, LedgerError> {
        let ch = self.existing(channel)?;
        Ok(ChannelAvailableFunds {
            confirmed: ch.funds,
            pending: TokenAmount::zero(),
            pending_wait_sentinel: None,
            queued: TokenAmount::zero(),
            voucher_redeemed: ch.committed,
        })
    }

    // ---- sender side ----

    /// Creates a channel `from` -> `to` holding `funds` and makes it the active channel of
    /// the pair. Returns its address and the creation message's CID.
    pub fn create_channel(
        &self,
        from: &Address,
        to: &Address,
        funds: &TokenAmount,
    ) -> Result<(Address, Cid), LedgerError> {
        if funds.is_negative() {
            return Err(LedgerError::NegativeAmount(funds.clone()));
        }
        let _guard = self.guard();
        self.create_locked(from, to, funds)
    }

    fn create_locked(
        &self,
        from: &Address,
        to: &Address,
        funds: &TokenAmount,
    ) -> Result<(Address, Cid), LedgerError> {
        let key = pair_key(from, to);
        let mut pair: PairRecord = self.get(&key, "pair")?.unwrap_or_default();
        // Skip addresses already taken (e.g. a channel learned from another ledger that used
        // the same key): bounded, so a provider can still learn the channel.
        let mut nonce = pair.next_nonce;
        let address = loop {
            if nonce >= pair.next_nonce.saturating_add(MAX_LEARN_NONCE) {
                return Err(LedgerError::AddressExhausted {
                    from: from.clone(),
                    to: to.clone(),
                });
            }
            let candidate = derive_channel_address(from, to, nonce);
            if self.channel(&candidate)?.is_none() {
                break candidate;
            }
            nonce += 1;
        };
        let channel = Channel {
            address: address.clone(),
            from: from.clone(),
            to: to.clone(),
            creation_nonce: nonce,
            origin: Origin::Created,
            funds: funds.clone(),
            to_send: TokenAmount::zero(),
            committed: TokenAmount::zero(),
            next_lane: 0,
            settling_at: 0,
            min_settle_height: 0,
            collected: false,
            messages: 0,
        };
        let message = encode(&("paych/create", from, to, nonce, funds), "message")?;
        let cid = message_cid(&message)?;
        pair.next_nonce = nonce + 1;
        pair.active = Some(address.clone());
        let mut batch = WriteBatch::new();
        self.put(&mut batch, &channel_key(&address), &channel, "channel")?;
        self.put(&mut batch, &key, &pair, "pair")?;
        let record = MessageRecord {
            channel: address.clone(),
            amount: funds.clone(),
        };
        self.put(&mut batch, &message_key(&cid), &record, "message")?;
        self.commit(batch)?;
        Ok((address, cid))
    }

    /// Adds `amount` to the funds of `channel`; returns the add-funds message's CID.
    pub fn add_funds(&self, channel: &Address, amount: &TokenAmount) -> Result<Cid, LedgerError> {
        if amount.is_negative() {
            return Err(LedgerError::NegativeAmount(amount.clone()));
        }
        let _guard = self.guard();
        let ch = self.existing(channel)?;
        self.add_funds_locked(ch, amount)
    }

    fn add_funds_locked(&self, mut ch: Channel, amount: &TokenAmount) -> Result<Cid, LedgerError> {
        self.ensure_open_outbound(&ch)?;
        ch.funds += amount;
        ch.messages += 1;
        let message = encode(&("paych/add", &ch.address, ch.messages, amount), "message")?;
        let cid = message_cid(&message)?;
        let mut batch = WriteBatch::new();
        self.put(&mut batch, &channel_key(&ch.address), &ch, "channel")?;
        let record = MessageRecord {
            channel: ch.address.clone(),
            amount: amount.clone(),
        };
        self.put(&mut batch, &message_key(&cid), &record, "message")?;
        self.commit(batch)?;
        Ok(cid)
    }

    /// A channel created here, neither collected nor settling.
    fn ensure_open_outbound(&self, ch: &Channel) -> Result<(), LedgerError> {
        if ch.origin != Origin::Created {
            return Err(LedgerError::NotOutbound(ch.address.clone()));
        }
        if ch.collected {
            return Err(LedgerError::Collected(ch.address.clone()));
        }
        if ch.settling_at != 0 {
            return Err(LedgerError::Settling {
                channel: ch.address.clone(),
                settling_at: ch.settling_at,
            });
        }
        Ok(())
    }

    /// The pair's active channel with `funds` added to it (Lotus' `GetPaych`: every deal
    /// brings its own funds, so deals running at once never take each other's), or a new
    /// channel holding `funds`. Asking for zero returns the active channel unchanged.
    pub fn get_or_create_channel(
        &self,
        from: &Address,
        to: &Address,
        funds: &TokenAmount,
    ) -> Result<Funding, LedgerError> {
        if funds.is_negative() {
            return Err(LedgerError::NegativeAmount(funds.clone()));
        }
        let _guard = self.guard();
        let active = self
            .get::<PairRecord>(&pair_key(from, to), "pair")?
            .and_then(|p| p.active);
        if let Some(address) = active
            && let Some(ch) = self.channel(&address)?
            && self.ensure_open_outbound(&ch).is_ok()
        {
            if funds.is_zero() {
                return Ok(Funding::Ready { channel: address });
            }
            let message = self.add_funds_locked(ch, funds)?;
            return Ok(Funding::AddedFunds {
                channel: address,
                message,
            });
        }
        let (channel, message) = self.create_locked(from, to, funds)?;
        Ok(Funding::Created { channel, message })
    }

    /// Allocates the next lane of `channel` (sender side).
    pub fn allocate_lane(&self, channel: &Address) -> Result<u64, LedgerError> {
        let _guard = self.guard();
        let mut ch = self.existing(channel)?;
        self.ensure_open_outbound(&ch)?;
        let lane = ch.next_lane;
        if lane > MAX_LANE {
            return Err(LedgerError::LanesExhausted(channel.clone()));
        }
        ch.next_lane = lane + 1;
        let mut batch = WriteBatch::new();
        self.put(&mut batch, &channel_key(channel), &ch, "channel")?;
        self.commit(batch)?;
        Ok(lane)
    }

    /// Makes a voucher for the cumulative `amount` on `lane` of `channel`, signed with the
    /// `wallet` key of the channel's sender, with the lane's next nonce (sender side).
    ///
    /// Asking again for the amount of the lane's latest voucher returns that voucher
    /// unchanged (so a re-sent payment is byte-identical and the provider sees a no-op);
    /// a lower amount is [`LedgerError::AmountDecreased`]; an amount the channel's funds
    /// cannot cover, counting every lane's latest voucher, is [`LedgerError::Shortfall`].
    pub fn create_voucher(
        &self,
        wallet: &Wallet,
        channel: &Address,
        lane: u64,
        amount: &TokenAmount,
    ) -> Result<SignedVoucher, LedgerError> {
        if amount.is_negative() {
            return Err(LedgerError::NegativeAmount(amount.clone()));
        }
        let _guard = self.guard();
        let mut ch = self.existing(channel)?;
        if ch.origin != Origin::Created {
            return Err(LedgerError::NotOutbound(channel.clone()));
        }
        if ch.collected {
            return Err(LedgerError::Collected(channel.clone()));
        }
        let epoch = self.epoch()?;
        if ch.is_settled(epoch) {
            return Err(LedgerError::Settling {
                channel: channel.clone(),
                settling_at: ch.settling_at,
            });
        }
        if lane >= ch.next_lane {
            return Err(LedgerError::LaneNotAllocated {
                channel: channel.clone(),
                lane,
            });
        }
        let key = lane_key(SENT, channel, lane);
        let previous: Option<SentRecord> = self.get(&key, "sent voucher")?;
        let (last_nonce, last_amount) = match &previous {
            Some(p) => {
                if *amount == p.amount {
                    return Ok(p.voucher.clone());
                }
                (p.nonce, p.amount.clone())
            }
            None => (0, TokenAmount::zero()),
        };
        if *amount < last_amount {
            return Err(LedgerError::AmountDecreased {
                lane,
                latest: last_amount,
                requested: amount.clone(),
            });
        }
        let committed = &(&ch.committed - &last_amount) + amount;
        if committed > ch.funds {
            return Err(LedgerError::Shortfall {
                shortfall: &committed - &ch.funds,
            });
        }
        let nonce = last_nonce
            .checked_add(1)
            .ok_or(LedgerError::NonceExhausted(lane))?;
        let voucher = voucher::create(
            wallet,
            &ch.from,
            channel.clone(),
            lane,
            nonce,
            amount.clone(),
        )
        .map_err(|e| match e {
            VoucherError::Wallet(w) => LedgerError::Wallet(w),
            other => LedgerError::Voucher(other),
        })?;
        ch.committed = committed;
        let record = SentRecord {
            nonce,
            amount: amount.clone(),
            voucher: voucher.clone(),
        };
        let mut batch = WriteBatch::new();
        self.put(&mut batch, &key, &record, "sent voucher")?;
        self.put(&mut batch, &channel_key(channel), &ch, "channel")?;
        self.commit(batch)?;
        Ok(voucher)
    }

    // ---- recipient side ----

    /// Checks `voucher`, received by `recipient` for `channel`, against the paych rules
    /// (see [`voucher`] for the list and their order), stores it, and returns
    /// the amount newly received (0 for an exact copy of the lane's latest voucher).
    ///
    /// A channel the ledger does not know is learned (two processes: the provider never saw
    /// its creation) if its address is [`derive_channel_address`]`(signer, recipient, n)` for
    /// some `n <` [`MAX_LEARN_NONCE`]; its funds are unknown (see the crate docs).
    pub fn save_voucher(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
        recipient: &Address,
    ) -> Result<TokenAmount, LedgerError> {
        voucher::check_shape(voucher, channel)?;
        // The expensive part (public-key recovery) runs before taking the lock.
        let signer = voucher::signer(voucher)?;
        let _guard = self.guard();
        match self.save_locked(channel, voucher, recipient, &signer)? {
            Saved::Duplicate => Ok(TokenAmount::zero()),
            Saved::Accepted(delta) => Ok(delta),
        }
    }

    fn save_locked(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
        recipient: &Address,
        signer: &Address,
    ) -> Result<Saved, LedgerError> {
        let ch = match self.channel(channel)? {
            Some(ch) => ch,
            None => learn(channel, signer, recipient)?,
        };
        if ch.to != *recipient {
            return Err(VoucherError::NotRecipient {
                to: ch.to,
                recipient: recipient.clone(),
            }
            .into());
        }
        let key = lane_key(LANE, channel, voucher.lane);
        let record: Option<LaneRecord> = self.get(&key, "lane")?;
        if let Some(LaneRecord {
            voucher: Some(stored),
            ..
        }) = &record
            && stored == voucher
        {
            return Ok(Saved::Duplicate);
        }
        let lane = record.map(|r| r.state).unwrap_or_default();
        let mut merged = BTreeMap::new();
        let mut merged_records = BTreeMap::new();
        for merge in &voucher.merges {
            if merge.lane == voucher.lane || merged_records.contains_key(&merge.lane) {
                continue;
            }
            if let Some(other) =
                self.get::<LaneRecord>(&lane_key(LANE, channel, merge.lane), "lane")?
            {
                merged.insert(merge.lane, other.state.clone());
                merged_records.insert(merge.lane, other);
            }
        }
        let epoch = self.epoch()?;
        let accepted = voucher::check_state(&ch, signer, voucher, &lane, &merged, epoch)?;
        let mut batch = WriteBatch::new();
        self.put(
            &mut batch,
            &channel_key(channel),
            &accepted.channel,
            "channel",
        )?;
        let record = LaneRecord {
            state: accepted.lane,
            voucher: Some(voucher.clone()),
        };
        self.put(&mut batch, &key, &record, "lane")?;
        for (lane, state) in accepted.merged {
            let voucher = merged_records.remove(&lane).and_then(|r| r.voucher);
            let record = LaneRecord { state, voucher };
            self.put(&mut batch, &lane_key(LANE, channel, lane), &record, "lane")?;
        }
        self.commit(batch)?;
        Ok(Saved::Accepted(accepted.delta))
    }

    // ---- settlement ----

    /// Starts settling `channel`: it settles at `max(epoch + SETTLE_DELAY,
    /// min_settle_height)`, which is returned. Vouchers are accepted until then; no more
    /// funds or lanes are added, and the pair gets a new channel next time.
    pub fn settle(&self, channel: &Address) -> Result<ChainEpoch, LedgerError> {
        let _guard = self.guard();
        let mut ch = self.existing(channel)?;
        if ch.collected {
            return Err(LedgerError::Collected(channel.clone()));
        }
        if ch.settling_at != 0 {
            return Err(LedgerError::Settling {
                channel: channel.clone(),
                settling_at: ch.settling_at,
            });
        }
        let epoch = self.epoch()?;
        ch.settling_at = epoch.saturating_add(SETTLE_DELAY).max(ch.min_settle_height);
        let mut batch = WriteBatch::new();
        self.put(&mut batch, &channel_key(channel), &ch, "channel")?;
        let key = pair_key(&ch.from, &ch.to);
        if let Some(mut pair) = self.get::<PairRecord>(&key, "pair")?
            && pair.active.as_ref() == Some(channel)
        {
            pair.active = None;
            self.put(&mut batch, &key, &pair, "pair")?;
        }
        self.commit(batch)?;
        Ok(ch.settling_at)
    }

    /// Collects a settled channel: `to_send` goes to the recipient, the rest back to the
    /// sender; the channel is closed.
    pub fn collect(&self, channel: &Address) -> Result<Payout, LedgerError> {
        let _guard = self.guard();
        let mut ch = self.existing(channel)?;
        if ch.collected {
            return Err(LedgerError::Collected(channel.clone()));
        }
        let epoch = self.epoch()?;
        if !ch.is_settled(epoch) {
            return Err(LedgerError::NotSettled {
                settling_at: ch.settling_at,
                epoch,
            });
        }
        let payout = Payout {
            to_recipient: ch.to_send.clone(),
            to_sender: match ch.origin {
                Origin::Created => (&ch.funds - &ch.to_send).clamp_non_negative(),
                Origin::Learned => TokenAmount::zero(),
            },
        };
        ch.collected = true;
        let mut batch = WriteBatch::new();
        self.put(&mut batch, &channel_key(channel), &ch, "channel")?;
        self.commit(batch)?;
        Ok(payout)
    }

    /// Every key and value of the keyspace (tests compare snapshots).
    #[cfg(test)]
    pub(crate) fn raw_entries(&self) -> Vec<RawEntry> {
        self.keyspace.iter().map(|item| item.unwrap()).collect()
    }
}

/// A key and its value, as stored.
#[cfg(test)]
pub(crate) type RawEntry = (Box<[u8]>, Box<[u8]>);

/// A channel the recipient never saw, accepted if its address derives from the signer.
fn learn(
    channel: &Address,
    signer: &Address,
    recipient: &Address,
) -> Result<Channel, VoucherError> {
    let nonce = (0..MAX_LEARN_NONCE)
        .find(|&n| derive_channel_address(signer, recipient, n) == *channel)
        .ok_or_else(|| VoucherError::UnknownChannel(channel.clone()))?;
    Ok(Channel {
        address: channel.clone(),
        from: signer.clone(),
        to: recipient.clone(),
        creation_nonce: nonce,
        origin: Origin::Learned,
        funds: TokenAmount::zero(),
        to_send: TokenAmount::zero(),
        committed: TokenAmount::zero(),
        next_lane: 0,
        settling_at: 0,
        min_settle_height: 0,
        collected: false,
        messages: 0,
    })
}

#[cfg(test)]
mod tests;
