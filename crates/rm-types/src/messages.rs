//! The retrieval protocol messages (`docs/protocol.md`), in go-fil-markets v1 field names.
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

/// Decodes an optional selector and refuses one that holds a float DAG-CBOR does not allow
/// (NaN, infinities): decoded, it could not be encoded again (found by the `deal_stream`
/// fuzz target).
fn deserialize_finite_selector<'de, D>(deserializer: D) -> Result<Option<Selector>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let selector = Option::<Selector>::deserialize(deserializer)?;
    // Walked with a stack of its own: the decoder already bounds the depth, this adds none.
    let mut todo: Vec<&Ipld> = selector.iter().collect();
    while let Some(node) = todo.pop() {
        match node {
            Ipld::Float(f) if !f.is_finite() => {
                return Err(serde::de::Error::custom(
                    "a selector with a NaN or infinite float",
                ));
            }
            Ipld::List(items) => todo.extend(items),
            Ipld::Map(entries) => todo.extend(entries.values()),
            _ => {}
        }
    }
    Ok(selector)
}

/// The terms of a deal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Which part of the DAG to retrieve; `None` means everything. A selector holding a
    /// NaN or infinite float (which DAG-CBOR does not allow, and which could not be encoded
    /// again) is refused when decoded.
    #[serde(
        rename = "Selector",
        default,
        deserialize_with = "deserialize_finite_selector"
    )]
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
    /// Set when the client continues an interrupted deal: how far it got. Left out of the
    /// encoding when absent, so a fresh proposal is byte-identical to go-fil-markets'.
    #[serde(rename = "Resume", default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
}

impl DealProposal {
    /// A fresh proposal (not a resumption).
    pub fn new(payload_cid: Cid, id: DealId, params: Params) -> Self {
        Self {
            payload_cid,
            id,
            params,
            resume: None,
        }
    }
}

/// How far a client got in a deal it continues on a new stream (an rm extension of the
/// deal protocol; see `docs/protocol.md`, "Resuming a deal").
///
/// The counts are of blocks the client verified and stored, in traversal order. The
/// provider continues with block number `blocks`; both sides count `bytes` as received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// Blocks verified and stored by the client.
    #[serde(rename = "Blocks")]
    pub blocks: u64,
    /// Bytes of block data in those blocks.
    #[serde(rename = "Bytes")]
    pub bytes: u64,
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

/// A client's cancellation of a deal on the deal stream (an rm extension; see
/// `docs/protocol.md`). The provider ends the deal as `Cancelled`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealCancel {
    /// The client's deal ID.
    #[serde(rename = "ID")]
    pub id: DealId,
    /// Why the client cancelled.
    #[serde(rename = "Cancel")]
    pub reason: String,
    /// Set when the client ends the deal because it failed (a wrong block, a request for
    /// money it does not owe) rather than because its user cancelled: the provider then
    /// ends the deal as failed too. Left out when false.
    #[serde(rename = "Failed", default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
}

/// What a client writes on the deal stream after its proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// A payment (boxed: a voucher is large next to a cancellation).
    Payment(Box<DealPayment>),
    /// A cancellation.
    Cancel(DealCancel),
}

impl ClientMessage {
    /// The deal the message is about.
    pub fn id(&self) -> DealId {
        match self {
            ClientMessage::Payment(p) => p.id,
            ClientMessage::Cancel(c) => c.id,
        }
    }
}

impl Serialize for ClientMessage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ClientMessage::Payment(p) => p.serialize(s),
            ClientMessage::Cancel(c) => c.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ClientMessage {
    /// A map with a `Cancel` key is a [`DealCancel`]; anything else must be a
    /// [`DealPayment`].
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(rename = "ID")]
            id: DealId,
            #[serde(rename = "PaymentChannel", default)]
            payment_channel: Option<Address>,
            #[serde(rename = "PaymentVoucher", default)]
            payment_voucher: Option<SignedVoucher>,
            #[serde(rename = "Cancel", default)]
            cancel: Option<String>,
            #[serde(rename = "Failed", default)]
            failed: bool,
        }
        let wire = Wire::deserialize(d)?;
        if let Some(reason) = wire.cancel {
            return Ok(ClientMessage::Cancel(DealCancel {
                id: wire.id,
                reason,
                failed: wire.failed,
            }));
        }
        let payment_channel = wire
            .payment_channel
            .ok_or_else(|| serde::de::Error::missing_field("PaymentChannel"))?;
        Ok(ClientMessage::Payment(Box::new(DealPayment {
            id: wire.id,
            payment_channel,
            payment_voucher: wire.payment_voucher,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    /// A proposal whose selector holds a NaN decodes to an error, not to a value that
    /// cannot be encoded again (the `deal_stream` fuzz target found one; its input is in
    /// the fuzz corpus).
    #[test]
    fn a_selector_with_a_nan_or_an_infinity_is_refused() {
        let mut params = Params::new(TokenAmount::from_atto(1u64), 1024, 1024);
        let finite = Ipld::Map([("a".to_owned(), Ipld::Float(1.5))].into_iter().collect());
        params.selector = Some(finite);
        let proposal = DealProposal::new(cid(), DealId(7), params);
        let good = codec::to_vec(&proposal).unwrap();
        let decoded: DealProposal = codec::from_slice(&good).unwrap();
        assert_eq!(decoded, proposal);
        let one_and_a_half = [0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0];
        let at = good
            .windows(9)
            .position(|w| w == one_and_a_half)
            .expect("the float's bytes");
        for bad_float in [
            [0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0], // NaN
            [0xfb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0], // +infinity
            [0xfb, 0xff, 0xf0, 0, 0, 0, 0, 0, 0], // -infinity
        ] {
            let mut bad = good.clone();
            bad[at..at + 9].copy_from_slice(&bad_float);
            let err = codec::from_slice::<DealProposal>(&bad).unwrap_err();
            assert!(err.to_string().contains("NaN or infinite"), "{err}");
        }
    }

    fn cid() -> Cid {
        "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
            .parse()
            .unwrap()
    }

    #[test]
    fn resume_round_trips_and_is_absent_from_fresh_proposals() {
        let params = Params::new(TokenAmount::from_atto(1000u64), 10_000, 1_000);
        let fresh = DealProposal::new(cid(), DealId(4), params);
        let bytes = codec::to_vec(&fresh).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"Resume"));
        let resumed = DealProposal {
            resume: Some(Resume {
                blocks: 3,
                bytes: 2_006,
            }),
            ..fresh.clone()
        };
        let bytes = codec::to_vec(&resumed).unwrap();
        assert_eq!(codec::from_slice::<DealProposal>(&bytes).unwrap(), resumed);
        // A decoder that does not know the key still reads the proposal.
        assert_eq!(
            codec::from_slice::<DealProposal>(&bytes).unwrap().id,
            DealId(4)
        );
    }

    #[test]
    fn client_messages_decode_by_their_keys() {
        let cancel = ClientMessage::Cancel(DealCancel {
            id: DealId(9),
            reason: "user".into(),
            failed: false,
        });
        let bytes = codec::to_vec(&cancel).unwrap();
        assert_eq!(codec::from_slice::<ClientMessage>(&bytes).unwrap(), cancel);
        // A failing client says so; go-fil-markets ignores the extra key.
        let failing = ClientMessage::Cancel(DealCancel {
            id: DealId(9),
            reason: "block did not verify".into(),
            failed: true,
        });
        let bytes = codec::to_vec(&failing).unwrap();
        assert_eq!(codec::from_slice::<ClientMessage>(&bytes).unwrap(), failing);

        let payment = ClientMessage::Payment(Box::new(DealPayment {
            id: DealId(9),
            payment_channel: "f01000".parse().unwrap(),
            payment_voucher: None,
        }));
        let bytes = codec::to_vec(&payment).unwrap();
        assert_eq!(codec::from_slice::<ClientMessage>(&bytes).unwrap(), payment);
        // The same bytes are a plain DealPayment for a Go reader.
        assert!(codec::from_slice::<DealPayment>(&bytes).is_ok());

        // Neither a channel nor a cancel: refused with an error, no panic.
        let bytes = codec::to_vec(&DealCancelLess { id: DealId(1) }).unwrap();
        assert!(codec::from_slice::<ClientMessage>(&bytes).is_err());
    }

    #[derive(Serialize)]
    struct DealCancelLess {
        #[serde(rename = "ID")]
        id: DealId,
    }
}
