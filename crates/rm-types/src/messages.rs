//! The retrieval protocol messages (SPEC §3), in go-fil-markets v1 field names.
//!
//! `Serialize`/`Deserialize` give the **map** encoding used by `/fil/retrieval/qry/1.0.0`
//! and the deal stream: keys in canonical DAG-CBOR order on encode (what go-fil-markets
//! HEAD emits), any order and unknown keys skipped on decode, missing optional keys read as
//! zero values. The legacy **tuple** encoding of `/fil/retrieval/qry/0.0.1` lives in
//! [`crate::tuple`].
//!
//! ```
//! use rm_types::{codec, DealResponse, DealStatus, DealId, TokenAmount};
//!
//! let r = DealResponse {
//!     status: DealStatus::Accepted,
//!     id: DealId(12),
//!     payment_owed: TokenAmount::from_atto(222u64),
//!     message: "message".into(),
//!     blocks: vec![],
//! };
//! let bytes = codec::to_vec(&r)?;
//! assert_eq!(bytes[0], 0xa4); // four keys: no "Blocks" key when there are none
//! assert_eq!(codec::from_slice::<DealResponse>(&bytes)?, r);
//! # Ok::<(), rm_types::Error>(())
//! ```

use cid::Cid;
use ipld_core::ipld::Ipld;
use serde::{Deserialize, Serialize};

use crate::{
    Address, Block, DealStatus, QueryItemStatus, QueryResponseStatus, SignedVoucher, TokenAmount,
};

/// An IPLD selector, carried as the DAG-CBOR node it is on the wire.
pub type Selector = Ipld;

/// The DAG-CBOR bytes of the explore-all-recursively selector
/// `{"R":{"l":{"none":{}},":>":{"a":{">":{"@":{}}}}}}`.
pub const EXPLORE_ALL_SELECTOR_BYTES: &[u8] = &[
    0xa1, 0x61, 0x52, 0xa2, 0x61, 0x6c, 0xa1, 0x64, 0x6e, 0x6f, 0x6e, 0x65, 0xa0, 0x62, 0x3a, 0x3e,
    0xa1, 0x61, 0x61, 0xa1, 0x61, 0x3e, 0xa1, 0x61, 0x40, 0xa0,
];

/// The explore-all-recursively selector: every block of the DAG, depth first.
pub fn explore_all_selector() -> Selector {
    use std::collections::BTreeMap;
    fn map(entries: Vec<(&str, Ipld)>) -> Ipld {
        Ipld::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<BTreeMap<_, _>>(),
        )
    }
    map(vec![(
        "R",
        map(vec![
            ("l", map(vec![("none", map(vec![]))])),
            (
                ":>",
                map(vec![("a", map(vec![(">", map(vec![("@", map(vec![]))]))]))]),
            ),
        ]),
    )])
}

/// A client-chosen deal identifier, unique per client.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct DealId(pub u64);

impl std::fmt::Display for DealId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Optional query parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryParams {
    /// Restrict the query to one piece.
    #[serde(rename = "PieceCID", default)]
    pub piece_cid: Option<Cid>,
}

/// A query: does the provider have this payload, and on what terms?
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// The root of the wanted DAG.
    #[serde(rename = "PayloadCID")]
    pub payload_cid: Cid,
    /// Optional parameters.
    #[serde(rename = "QueryParams", default)]
    pub params: QueryParams,
}

impl Query {
    /// A query for `payload_cid` in any piece.
    pub fn new(payload_cid: Cid) -> Self {
        Self {
            payload_cid,
            params: QueryParams::default(),
        }
    }
}

/// The provider's answer to a [`Query`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// Available, unavailable or error.
    #[serde(rename = "Status")]
    pub status: QueryResponseStatus,
    /// Whether the requested piece holds the payload.
    #[serde(rename = "PieceCIDFound", default = "item_unknown")]
    pub piece_cid_found: QueryItemStatus,
    /// Size of the data in bytes (unpadded).
    #[serde(rename = "Size", default)]
    pub size: u64,
    /// Where payments go.
    #[serde(rename = "PaymentAddress")]
    pub payment_address: Address,
    /// Lowest accepted price per byte.
    #[serde(rename = "MinPricePerByte", default)]
    pub min_price_per_byte: TokenAmount,
    /// Largest first payment interval the provider accepts.
    #[serde(rename = "MaxPaymentInterval", default)]
    pub max_payment_interval: u64,
    /// Largest interval increase the provider accepts.
    #[serde(rename = "MaxPaymentIntervalIncrease", default)]
    pub max_payment_interval_increase: u64,
    /// Human-readable detail.
    #[serde(rename = "Message", default)]
    pub message: String,
    /// Price of unsealing, paid before any data.
    #[serde(rename = "UnsealPrice", default)]
    pub unseal_price: TokenAmount,
}

fn item_unknown() -> QueryItemStatus {
    QueryItemStatus::Unknown
}

impl QueryResponse {
    /// `MinPricePerByte × Size + UnsealPrice`: what the whole payload costs.
    pub fn piece_retrieval_price(&self) -> TokenAmount {
        &(&self.min_price_per_byte * self.size) + &self.unseal_price
    }
}

/// The terms of a deal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Which part of the DAG to retrieve; `None` means everything.
    #[serde(rename = "Selector", default)]
    pub selector: Option<Selector>,
    /// Retrieve from this piece only.
    #[serde(rename = "PieceCID", default)]
    pub piece_cid: Option<Cid>,
    /// Agreed price per byte.
    #[serde(rename = "PricePerByte", default)]
    pub price_per_byte: TokenAmount,
    /// Bytes before the first payment.
    #[serde(rename = "PaymentInterval", default)]
    pub payment_interval: u64,
    /// How much each later interval grows.
    #[serde(rename = "PaymentIntervalIncrease", default)]
    pub payment_interval_increase: u64,
    /// Price of unsealing, paid before any data.
    #[serde(rename = "UnsealPrice", default)]
    pub unseal_price: TokenAmount,
}

impl Params {
    /// Terms for the whole DAG with no unseal price.
    pub fn new(
        price_per_byte: TokenAmount,
        payment_interval: u64,
        payment_interval_increase: u64,
    ) -> Self {
        Self {
            selector: None,
            piece_cid: None,
            price_per_byte,
            payment_interval,
            payment_interval_increase,
            unseal_price: TokenAmount::zero(),
        }
    }

    /// Whether a selector other than "everything" was given.
    pub fn selector_specified(&self) -> bool {
        self.selector.is_some()
    }

    /// The selector to traverse: the given one or explore-all.
    pub fn selector_or_all(&self) -> Selector {
        self.selector.clone().unwrap_or_else(explore_all_selector)
    }
}

/// A client's proposal for a deal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DealProposal {
    /// The root of the wanted DAG.
    #[serde(rename = "PayloadCID")]
    pub payload_cid: Cid,
    /// The client's deal ID.
    #[serde(rename = "ID")]
    pub id: DealId,
    /// The terms.
    #[serde(rename = "Params")]
    pub params: Params,
}

/// A provider's message on the deal stream: a status, what is owed, and blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealResponse {
    /// The deal's status from the provider's side.
    #[serde(rename = "Status")]
    pub status: DealStatus,
    /// The client's deal ID.
    #[serde(rename = "ID")]
    pub id: DealId,
    /// The payment needed to continue.
    #[serde(rename = "PaymentOwed", default)]
    pub payment_owed: TokenAmount,
    /// Human-readable detail (reason for a rejection or error).
    #[serde(rename = "Message", default)]
    pub message: String,
    /// Blocks in traversal order; the key is left out when there are none.
    #[serde(rename = "Blocks", default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<Block>,
}

/// A client's payment on the deal stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealPayment {
    /// The client's deal ID.
    #[serde(rename = "ID")]
    pub id: DealId,
    /// The payment channel the voucher draws on.
    #[serde(rename = "PaymentChannel")]
    pub payment_channel: Address,
    /// The voucher (cumulative amount for its lane).
    #[serde(rename = "PaymentVoucher")]
    pub payment_voucher: Option<SignedVoucher>,
}
