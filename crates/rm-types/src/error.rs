//! The error type of rm-types.

/// Everything that can go wrong while building, parsing or decoding an rm-types value.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A Filecoin address was malformed.
    #[error("invalid address: {0}")]
    Address(#[from] crate::address::AddressError),
    /// A big integer / token amount was malformed or too large.
    #[error("invalid token amount: {0}")]
    TokenAmount(&'static str),
    /// A signature was malformed (empty, unknown type byte, too long).
    #[error("invalid signature: {0}")]
    Signature(&'static str),
    /// Deal terms are unacceptable on their face (negative price, ...).
    #[error("invalid deal parameters: {0}")]
    InvalidParams(&'static str),
    /// A CID prefix was malformed.
    #[error("invalid CID prefix: {0}")]
    InvalidPrefix(&'static str),
    /// A block announced a multihash function rm does not implement.
    #[error("unsupported multihash code {0:#x}")]
    UnsupportedHash(u64),
    /// A DAG-CBOR value could not be decoded into the expected type.
    #[error("DAG-CBOR decode: {0}")]
    Decode(String),
    /// A value could not be encoded as DAG-CBOR.
    #[error("DAG-CBOR encode: {0}")]
    Encode(String),
    /// A message or value exceeded a size limit before it was decoded.
    #[error("{what} is {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size in bytes (at least this many).
        len: u64,
        /// The limit that applied.
        limit: u64,
    },
    /// A CBOR stream did not hold a well-formed DAG-CBOR item.
    #[error("malformed CBOR: {0}")]
    MalformedCbor(&'static str),
    /// An enum number arrived that this version does not know.
    #[error("unknown {what} value {value}")]
    UnknownEnum {
        /// The enum's name.
        what: &'static str,
        /// The number received.
        value: u64,
    },
}
