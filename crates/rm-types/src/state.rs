//! Domain records shared by client, provider and discovery: peers, asks, deal states.

use std::fmt;

use cid::Cid;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Address, DealId, DealProposal, DealStatus, TokenAmount};

/// A libp2p peer ID as its raw bytes (a multihash). rm-types does not depend on libp2p;
/// rm-network converts to and from `libp2p::PeerId`.
///
/// CBOR: a byte string. go-fil-markets writes the raw bytes inside a *text* string, which is
/// not valid DAG-CBOR (text must be UTF-8) and cannot be produced by a conforming encoder;
/// rm writes a byte string and, when decoding, accepts a byte string or a valid UTF-8 text
/// string. No protocol message carries a peer ID, so this only affects stored records.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PeerId(pub Vec<u8>);

impl PeerId {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl Serialize for PeerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PeerId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("peer ID bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<PeerId, E> {
                Ok(PeerId(v.to_vec()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PeerId, E> {
                Ok(PeerId(v.as_bytes().to_vec()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A provider: its payment address, optional peer ID and the piece it holds the data in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RetrievalPeer {
    /// The provider's (miner's) address.
    #[serde(rename = "Address")]
    pub address: Address,
    /// The provider's libp2p peer ID.
    #[serde(rename = "ID", default)]
    pub id: PeerId,
    /// The piece holding the payload, when known.
    #[serde(rename = "PieceCID", default)]
    pub piece_cid: Option<Cid>,
}

/// A provider's current terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    /// Price per byte.
    #[serde(rename = "PricePerByte")]
    pub price_per_byte: TokenAmount,
    /// Price of unsealing.
    #[serde(rename = "UnsealPrice")]
    pub unseal_price: TokenAmount,
    /// Bytes before the first payment.
    #[serde(rename = "PaymentInterval")]
    pub payment_interval: u64,
    /// Growth of each later interval.
    #[serde(rename = "PaymentIntervalIncrease")]
    pub payment_interval_increase: u64,
}

impl Default for Ask {
    /// go-fil-markets' defaults: 2 attoFIL/byte, no unseal price, 1 MiB intervals.
    fn default() -> Self {
        Self {
            price_per_byte: TokenAmount::from_atto(2u64),
            unseal_price: TokenAmount::zero(),
            payment_interval: 1 << 20,
            payment_interval_increase: 1 << 20,
        }
    }
}

/// The payment channel and lane a client pays a deal from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentInfo {
    /// The channel's address.
    #[serde(rename = "PayCh")]
    pub pay_ch: Address,
    /// The lane.
    #[serde(rename = "Lane")]
    pub lane: u64,
}

/// How a provider names a deal: the client's peer and the client's deal ID.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProviderDealIdentifier {
    /// The client's peer ID.
    #[serde(rename = "Receiver")]
    pub receiver: PeerId,
    /// The client's deal ID.
    #[serde(rename = "DealID")]
    pub deal_id: DealId,
}

/// A retrieval deal as the client tracks it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientDealState {
    /// The proposal sent.
    #[serde(rename = "DealProposal")]
    pub proposal: DealProposal,
    /// Most the client will spend on this deal.
    #[serde(rename = "TotalFunds")]
    pub total_funds: TokenAmount,
    /// The client's wallet (payment channel sender).
    #[serde(rename = "ClientWallet")]
    pub client_wallet: Address,
    /// The provider's payment address.
    #[serde(rename = "MinerWallet")]
    pub miner_wallet: Address,
    /// Channel and lane, once set up.
    #[serde(rename = "PaymentInfo", default)]
    pub payment_info: Option<PaymentInfo>,
    /// Current status.
    #[serde(rename = "Status")]
    pub status: DealStatus,
    /// The provider's peer ID.
    #[serde(rename = "Sender", default)]
    pub sender: PeerId,
    /// Verified bytes received so far.
    #[serde(rename = "TotalReceived", default)]
    pub total_received: u64,
    /// Verified blocks received so far (where a resumed deal continues).
    #[serde(rename = "BlocksReceived", default)]
    pub blocks_received: u64,
    /// Detail of the last error or rejection.
    #[serde(rename = "Message", default)]
    pub message: String,
    /// Bytes covered by payments so far.
    #[serde(rename = "BytesPaidFor", default)]
    pub bytes_paid_for: u64,
    /// The next payment boundary.
    #[serde(rename = "CurrentInterval", default)]
    pub current_interval: u64,
    /// What the provider has asked for and not yet been paid.
    #[serde(rename = "PaymentRequested", default)]
    pub payment_requested: TokenAmount,
    /// Cumulative amount of the last voucher sent.
    #[serde(rename = "FundsSpent", default)]
    pub funds_spent: TokenAmount,
    /// Part of `funds_spent` that paid the unseal price.
    #[serde(rename = "UnsealFundsPaid", default)]
    pub unseal_funds_paid: TokenAmount,
    /// Chain message the client waits on (channel creation or top-up).
    #[serde(rename = "WaitMsgCID", default)]
    pub wait_msg_cid: Option<Cid>,
    /// How much the channel lacked when the last voucher could not be made.
    #[serde(rename = "VoucherShortfall", default)]
    pub voucher_shortfall: TokenAmount,
    /// Whether the provider asked for the last payment.
    #[serde(rename = "LastPaymentRequested", default)]
    pub last_payment_requested: bool,
    /// Whether every block arrived and was verified.
    #[serde(rename = "AllBlocksReceived", default)]
    pub all_blocks_received: bool,
}

/// A retrieval deal as the provider tracks it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderDealState {
    /// The accepted proposal.
    #[serde(rename = "DealProposal")]
    pub proposal: DealProposal,
    /// Current status.
    #[serde(rename = "Status")]
    pub status: DealStatus,
    /// The client's peer ID.
    #[serde(rename = "Receiver", default)]
    pub receiver: PeerId,
    /// Bytes sent so far.
    #[serde(rename = "TotalSent", default)]
    pub total_sent: u64,
    /// Blocks sent so far.
    #[serde(rename = "BlocksSent", default)]
    pub blocks_sent: u64,
    /// Cumulative payments received.
    #[serde(rename = "FundsReceived", default)]
    pub funds_received: TokenAmount,
    /// Detail of the last error or rejection.
    #[serde(rename = "Message", default)]
    pub message: String,
    /// The next payment boundary.
    #[serde(rename = "CurrentInterval", default)]
    pub current_interval: u64,
    /// The piece the data is served from, once chosen.
    #[serde(rename = "PieceCID", default)]
    pub piece_cid: Option<Cid>,
}

impl ProviderDealState {
    /// The provider's key for this deal.
    pub fn identifier(&self) -> ProviderDealIdentifier {
        ProviderDealIdentifier {
            receiver: self.receiver.clone(),
            deal_id: self.proposal.id,
        }
    }
}
