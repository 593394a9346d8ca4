//! The legacy **tuple** encoding of the retrieval messages (go-fil-markets v0.5/v0.6
//! `migrations.*0` types), spoken on `/fil/retrieval/qry/0.0.1`.
//!
//! Each message becomes a CBOR array of its fields in Go declaration order; nested structs
//! are nested arrays. `DealResponse` has 4 fields, or 5 when it carries blocks (the January 2020
//! deal stream of go-fil-markets).
//!
//! ```
//! use rm_types::{tuple, Query};
//!
//! let cid: cid::Cid = "bafkqaaa".parse().unwrap();
//! let bytes = tuple::to_vec(&Query::new(cid))?;
//! assert_eq!(bytes[0], 0x82); // [PayloadCID, [PieceCID]]
//! assert_eq!(tuple::from_slice::<Query>(&bytes)?, Query::new(cid));
//! # Ok::<(), rm_types::Error>(())
//! ```

use cid::Cid;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};

use crate::{
    Address, Block, DealId, DealPayment, DealProposal, DealResponse, DealStatus, Error, Params,
    Query, QueryItemStatus, QueryParams, QueryResponse, QueryResponseStatus, Selector,
    SignedVoucher, TokenAmount, codec,
};

/// A message with a tuple encoding.
pub trait TupleEncoding: Sized {
    /// Serializes `self` as a CBOR array.
    fn serialize_tuple<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
    /// Deserializes from a CBOR array.
    fn deserialize_tuple<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

/// Wraps a value so that serde uses its tuple encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuple<T>(pub T);

impl<T: TupleEncoding> Serialize for Tuple<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_tuple(s)
    }
}

impl<'de, T: TupleEncoding> Deserialize<'de> for Tuple<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize_tuple(d).map(Tuple)
    }
}

struct Ref<'a, T>(&'a T);

impl<T: TupleEncoding> Serialize for Ref<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_tuple(s)
    }
}

/// Encodes `value` in its tuple encoding.
pub fn to_vec<T: TupleEncoding>(value: &T) -> Result<Vec<u8>, Error> {
    codec::to_vec(&Ref(value))
}

/// Decodes a tuple-encoded value that fills `bytes` exactly.
pub fn from_slice<T: TupleEncoding>(bytes: &[u8]) -> Result<T, Error>
where
    Tuple<T>: DeserializeOwned,
{
    codec::from_slice::<Tuple<T>>(bytes).map(|t| t.0)
}

impl TupleEncoding for QueryParams {
    fn serialize_tuple<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.piece_cid,).serialize(s)
    }
    fn deserialize_tuple<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (piece_cid,): (Option<Cid>,) = Deserialize::deserialize(d)?;
        Ok(Self { piece_cid })
    }
}

impl TupleEncoding for Query {
    fn serialize_tuple<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.payload_cid, Ref(&self.params)).serialize(s)
    }
    fn deserialize_tuple<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (payload_cid, params): (Cid, Tuple<QueryParams>) = Deserialize::deserialize(d)?;
        Ok(Self {
            payload_cid,
            params: params.0,
        })
    }
}

impl TupleEncoding for QueryResponse {
    fn serialize_tuple<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (
            self.status,
            self.piece_cid_found,
            self.size,
            &self.payment_address,
            &self.min_price_per_byte,
            self.max_payment_interval,
            self.max_payment_interval_increase,
            &self.message,
            &self.unseal_price,
        )
            .serialize(s)
    }
    fn deserialize_tuple<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        type T = (
            QueryResponseStatus,
            QueryItemStatus,
            u64,
            Address,
            TokenAmount,
            u64,
            u64,
            String,
            TokenAmount,
        );
        let t: T = Deserialize::deserialize(d)?;
        Ok(Self {
            status: t.0,
            piece_cid_found: t.1,
            size: t.2,
            payment_address: t.3,
            min_price_per_byte: t.4,
            max_payment_interval: t.5,
            max_payment_interval_increase: t.6,
            message: t.7,
            unseal_price: t.8,
        })
    }
}

impl TupleEncoding for Params {
    fn serialize_tuple<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (
            &self.selector,
            &self.piece_cid,
            &self.price_per_byte,
            self.payment_interval,
            self.payment_interval_increase,
            &self.unseal_price,
        )
            .serialize(s)
    }
    fn deserialize_tuple<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        type T = (
            Option<Selector>,
            Option<Cid>,
            TokenAmount,
            u64,
            u64,
            TokenAmount,
        );
        let t: T = Deserialize::deserialize(d)?;
        Ok(Self {
            selector: t.0,
            piece_cid: t.1,
            price_per_byte: t.2,
            payment_interval: t.3,
            payment_interval_increase: t.4,
            unseal_price: t.5,
        })
    }
}

impl TupleEncoding for DealProposal {
    fn serialize_tuple<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.payload_cid, self.id, Ref(&self.params)).serialize(s)
    }
    fn deserialize_tuple<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (payload_cid, id, params): (Cid, DealId, Tuple<Params>) = Deserialize::deserialize(d)?;
        Ok(Self {
            payload_cid,
            id,
            params: params.0,
            resume: None,
        })
    }
}

impl TupleEncoding for Block {
    fn serialize_tuple<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (
            serde_bytes::Bytes::new(&self.prefix),
            serde_bytes::Bytes::new(&self.data),
        )
            .serialize(s)
    }
    fn deserialize_tuple<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The data, sharing the received buffer as in the map encoding.
        #[derive(Deserialize)]
        struct Data(#[serde(with = "crate::codec::shared_bytes")] bytes::Bytes);
        let (prefix, Data(data)): (serde_bytes::ByteBuf, Data) = Deserialize::deserialize(d)?;
        Ok(Self {
            prefix: prefix.into_vec(),
            data,
        })
    }
}

impl TupleEncoding for DealResponse {
    fn serialize_tuple<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let with_blocks = !self.blocks.is_empty();
        let mut t = s.serialize_tuple(if with_blocks { 5 } else { 4 })?;
        t.serialize_element(&self.status)?;
        t.serialize_element(&self.id)?;
        t.serialize_element(&self.payment_owed)?;
        t.serialize_element(&self.message)?;
        if with_blocks {
            let blocks: Vec<Ref<'_, Block>> = self.blocks.iter().map(Ref).collect();
            t.serialize_element(&blocks)?;
        }
        t.end()
    }
    fn deserialize_tuple<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = DealResponse;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a DealResponse tuple of 4 or 5 elements")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                use serde::de::Error as _;
                let missing = || A::Error::custom("DealResponse tuple needs 4 or 5 elements");
                let status: DealStatus = seq.next_element()?.ok_or_else(missing)?;
                let id: DealId = seq.next_element()?.ok_or_else(missing)?;
                let payment_owed: TokenAmount = seq.next_element()?.ok_or_else(missing)?;
                let message: String = seq.next_element()?.ok_or_else(missing)?;
                let blocks: Option<Vec<Tuple<Block>>> = seq.next_element()?;
                Ok(DealResponse {
                    status,
                    id,
                    payment_owed,
                    message,
                    blocks: blocks
                        .unwrap_or_default()
                        .into_iter()
                        .map(|b| b.0)
                        .collect(),
                })
            }
        }
        d.deserialize_seq(V)
    }
}

impl TupleEncoding for DealPayment {
    fn serialize_tuple<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.id, &self.payment_channel, &self.payment_voucher).serialize(s)
    }
    fn deserialize_tuple<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (id, payment_channel, payment_voucher): (DealId, Address, Option<SignedVoucher>) =
            Deserialize::deserialize(d)?;
        Ok(Self {
            id,
            payment_channel,
            payment_voucher,
        })
    }
}
