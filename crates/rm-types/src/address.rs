//! Filecoin addresses: the five protocols, their byte, string and CBOR forms.
//!
//! ```
//! use rm_types::Address;
//!
//! let a: Address = "t01024".parse()?;
//! assert_eq!(a.id(), Some(1024));
//! assert_eq!(a.to_bytes(), vec![0x00, 0x80, 0x08]);
//! assert_eq!(a.to_string(), "f01024"); // Display uses the mainnet prefix ...
//! assert_eq!(a.to_string_with(rm_types::Network::Testnet), "t01024"); // ... unless asked
//! # Ok::<(), rm_types::Error>(())
//! ```
//!
//! An address is its bytes: the protocol byte followed by the payload. The network
//! character of the string form (`f` mainnet, `t` testnet) is not part of the address, so
//! parsing accepts both without any process-global setting, and [`Address::parse_with_network`]
//! tells which one a string used.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of a secp256k1 or actor payload (blake2b-160).
pub const PAYLOAD_HASH_LEN: usize = 20;
/// Length of a BLS public key payload.
pub const BLS_PUBLIC_KEY_LEN: usize = 48;
/// Longest sub-address of a delegated address.
pub const MAX_SUBADDRESS_LEN: usize = 54;
/// Length of the checksum in the string form.
pub const CHECKSUM_LEN: usize = 4;
/// Longest valid address string: a delegated address with a `u64::MAX` namespace and a
/// 54-byte sub-address (2 + 20 + 1 + 93 characters). go-address caps strings at 115 because
/// it limits IDs and namespaces to `< 2^63`; rm accepts the full `u64` range as ref-fvm does.
pub const MAX_ADDRESS_STRING_LEN: usize = 116;
/// The namespace of Ethereum-style delegated addresses (`f410…`).
pub const EAM_NAMESPACE: u64 = 10;

/// Address protocols (the first byte of the byte form).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// `0`: an actor ID.
    Id = 0,
    /// `1`: blake2b-160 of a secp256k1 public key.
    Secp256k1 = 1,
    /// `2`: blake2b-160 of actor-creation data.
    Actor = 2,
    /// `3`: a BLS public key.
    Bls = 3,
    /// `4`: a namespace actor ID and a sub-address.
    Delegated = 4,
}

impl Protocol {
    fn from_byte(b: u8) -> Result<Self, AddressError> {
        Ok(match b {
            0 => Self::Id,
            1 => Self::Secp256k1,
            2 => Self::Actor,
            3 => Self::Bls,
            4 => Self::Delegated,
            other => return Err(AddressError::UnknownProtocol(other)),
        })
    }
}

/// The network prefix of an address string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Network {
    /// `f`.
    #[default]
    Mainnet,
    /// `t`.
    Testnet,
}

impl Network {
    /// The prefix character.
    pub fn prefix(self) -> char {
        match self {
            Self::Mainnet => 'f',
            Self::Testnet => 't',
        }
    }
}

/// Why an address was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    /// The string did not start with `f` or `t`.
    #[error("unknown network")]
    UnknownNetwork,
    /// The protocol digit or byte is not 0-4.
    #[error("unknown protocol {0}")]
    UnknownProtocol(u8),
    /// Wrong length for the protocol, empty, or over the maximum string length.
    #[error("invalid length")]
    InvalidLength,
    /// The payload could not be parsed (not a decimal ID, bad varint, ...).
    #[error("invalid payload")]
    InvalidPayload,
    /// The base32 part was not canonical RFC 4648 lowercase base32.
    #[error("invalid base32 encoding")]
    InvalidEncoding,
    /// The checksum did not match the address bytes.
    #[error("invalid checksum")]
    InvalidChecksum,
}

/// A Filecoin address (network-independent).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    protocol: Protocol,
    /// The payload exactly as in the byte form (ID: uvarint; delegated: uvarint ns || sub).
    payload: Vec<u8>,
}

fn base32_encode(bytes: &[u8]) -> String {
    BASE32_NOPAD.encode(bytes).to_ascii_lowercase()
}

/// Decodes lowercase RFC 4648 base32 without padding, ignoring non-zero trailing bits (as
/// Go's decoder does); [`ensure_canonical`] rejects those once length and checksum passed,
/// so each malformed string gets the same error kind as go-address gives it.
fn base32_decode(s: &str) -> Result<Vec<u8>, AddressError> {
    if s.bytes()
        .any(|b| !(b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)))
    {
        return Err(AddressError::InvalidEncoding);
    }
    let mut spec = data_encoding::Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.check_trailing_bits = false;
    let lenient = spec.encoding().map_err(|_| AddressError::InvalidEncoding)?;
    lenient
        .decode(s.as_bytes())
        .map_err(|_| AddressError::InvalidEncoding)
}

fn ensure_canonical(text: &str, decoded: &[u8]) -> Result<(), AddressError> {
    if base32_encode(decoded) == text {
        Ok(())
    } else {
        Err(AddressError::InvalidEncoding)
    }
}

/// blake2b with a 4-byte digest over the address bytes.
fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let hash = blake2b_simd::Params::new()
        .hash_length(CHECKSUM_LEN)
        .hash(bytes);
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(hash.as_bytes());
    out
}

/// blake2b-160 of `data`, the payload of secp256k1 and actor addresses.
pub fn blake2b_160(data: &[u8]) -> [u8; PAYLOAD_HASH_LEN] {
    let hash = blake2b_simd::Params::new()
        .hash_length(PAYLOAD_HASH_LEN)
        .hash(data);
    let mut out = [0u8; PAYLOAD_HASH_LEN];
    out.copy_from_slice(hash.as_bytes());
    out
}

fn uvarint(v: u64) -> Vec<u8> {
    let mut buf = unsigned_varint::encode::u64_buffer();
    unsigned_varint::encode::u64(v, &mut buf).to_vec()
}

fn read_uvarint(bytes: &[u8]) -> Result<(u64, &[u8]), AddressError> {
    unsigned_varint::decode::u64(bytes).map_err(|_| AddressError::InvalidPayload)
}

impl Address {
    /// An ID address.
    pub fn new_id(id: u64) -> Self {
        Self {
            protocol: Protocol::Id,
            payload: uvarint(id),
        }
    }

    /// A secp256k1 address from a public key (65-byte uncompressed form expected; the
    /// payload is blake2b-160 of whatever bytes are given, as Filecoin defines it).
    pub fn new_secp256k1(public_key: &[u8]) -> Self {
        Self {
            protocol: Protocol::Secp256k1,
            payload: blake2b_160(public_key).to_vec(),
        }
    }

    /// An actor address: blake2b-160 of the actor-creation data.
    pub fn new_actor(data: &[u8]) -> Self {
        Self {
            protocol: Protocol::Actor,
            payload: blake2b_160(data).to_vec(),
        }
    }

    /// A BLS address from a 48-byte public key.
    pub fn new_bls(public_key: &[u8]) -> Result<Self, AddressError> {
        Self::from_parts(Protocol::Bls, public_key.to_vec())
    }

    /// A delegated address: namespace actor ID and a sub-address of at most 54 bytes.
    pub fn new_delegated(namespace: u64, subaddress: &[u8]) -> Result<Self, AddressError> {
        if subaddress.len() > MAX_SUBADDRESS_LEN {
            return Err(AddressError::InvalidLength);
        }
        let mut payload = uvarint(namespace);
        payload.extend_from_slice(subaddress);
        Ok(Self {
            protocol: Protocol::Delegated,
            payload,
        })
    }

    fn from_parts(protocol: Protocol, payload: Vec<u8>) -> Result<Self, AddressError> {
        match protocol {
            Protocol::Id => {
                let (_, rest) = read_uvarint(&payload)?;
                if !rest.is_empty() {
                    return Err(AddressError::InvalidLength);
                }
            }
            Protocol::Secp256k1 | Protocol::Actor => {
                if payload.len() != PAYLOAD_HASH_LEN {
                    return Err(AddressError::InvalidLength);
                }
            }
            Protocol::Bls => {
                if payload.len() != BLS_PUBLIC_KEY_LEN {
                    return Err(AddressError::InvalidLength);
                }
            }
            Protocol::Delegated => {
                let (_, sub) = read_uvarint(&payload)?;
                if sub.len() > MAX_SUBADDRESS_LEN {
                    return Err(AddressError::InvalidLength);
                }
            }
        }
        Ok(Self { protocol, payload })
    }

    /// Parses the byte form: protocol byte followed by the payload.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AddressError> {
        let (&first, payload) = bytes.split_first().ok_or(AddressError::InvalidLength)?;
        Self::from_parts(Protocol::from_byte(first)?, payload.to_vec())
    }

    /// The byte form: protocol byte followed by the payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.payload.len());
        out.push(self.protocol as u8);
        out.extend_from_slice(&self.payload);
        out
    }

    /// The address protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The payload bytes as they appear in the byte form.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The actor ID of an ID address.
    pub fn id(&self) -> Option<u64> {
        match self.protocol {
            Protocol::Id => read_uvarint(&self.payload).ok().map(|(id, _)| id),
            _ => None,
        }
    }

    /// Namespace and sub-address of a delegated address.
    pub fn delegated(&self) -> Option<(u64, &[u8])> {
        match self.protocol {
            Protocol::Delegated => read_uvarint(&self.payload).ok(),
            _ => None,
        }
    }

    /// Parses a string of either network and says which network it named.
    pub fn parse_with_network(s: &str) -> Result<(Network, Self), AddressError> {
        // Only a delegated address with a namespace of 2^63 or more is longer than 115.
        let is_delegated = s.as_bytes().get(1) == Some(&b'4');
        if s.len() < 3 || s.len() > MAX_ADDRESS_STRING_LEN || (s.len() > 115 && !is_delegated) {
            return Err(AddressError::InvalidLength);
        }
        let network = match s.as_bytes()[0] {
            b'f' => Network::Mainnet,
            b't' => Network::Testnet,
            _ => return Err(AddressError::UnknownNetwork),
        };
        let protocol = match s.as_bytes()[1] {
            d @ b'0'..=b'4' => Protocol::from_byte(d - b'0')?,
            d if d.is_ascii_digit() => return Err(AddressError::UnknownProtocol(d - b'0')),
            _ => return Err(AddressError::UnknownProtocol(u8::MAX)),
        };
        // Both checked bytes are ASCII, so slicing at 2 is on a char boundary.
        let raw = &s[2..];
        let address = match protocol {
            Protocol::Id => {
                // go-address allows at most 19 characters (IDs below 2^63); rm also takes
                // the 20-digit IDs up to u64::MAX that ref-fvm accepts.
                let all_digits = raw.bytes().all(|b| b.is_ascii_digit());
                if raw.len() > 20 || (raw.len() == 20 && !all_digits) {
                    return Err(AddressError::InvalidLength);
                }
                Self::new_id(parse_decimal(raw)?)
            }
            Protocol::Delegated => {
                let (ns, rest) = raw.split_once('f').ok_or(AddressError::InvalidPayload)?;
                if ns.len() > 20 {
                    return Err(AddressError::InvalidLength);
                }
                let namespace = parse_decimal(ns)?;
                let decoded = base32_decode(rest)?;
                if decoded.len() < CHECKSUM_LEN {
                    return Err(AddressError::InvalidLength);
                }
                let (sub, sum) = decoded.split_at(decoded.len() - CHECKSUM_LEN);
                let address = Self::new_delegated(namespace, sub)?;
                if checksum(&address.to_bytes()) != sum {
                    return Err(AddressError::InvalidChecksum);
                }
                ensure_canonical(rest, &decoded)?;
                address
            }
            Protocol::Secp256k1 | Protocol::Actor | Protocol::Bls => {
                let decoded = base32_decode(raw)?;
                let want = if protocol == Protocol::Bls {
                    BLS_PUBLIC_KEY_LEN
                } else {
                    PAYLOAD_HASH_LEN
                };
                if decoded.len() != want + CHECKSUM_LEN {
                    return Err(AddressError::InvalidLength);
                }
                let (payload, sum) = decoded.split_at(want);
                let address = Self::from_parts(protocol, payload.to_vec())?;
                if checksum(&address.to_bytes()) != sum {
                    return Err(AddressError::InvalidChecksum);
                }
                ensure_canonical(raw, &decoded)?;
                address
            }
        };
        Ok((network, address))
    }

    /// The string form with the given network prefix.
    pub fn to_string_with(&self, network: Network) -> String {
        let mut s = String::with_capacity(48);
        s.push(network.prefix());
        s.push(char::from(b'0' + self.protocol as u8));
        match self.protocol {
            Protocol::Id => s.push_str(&self.id().unwrap_or_default().to_string()),
            Protocol::Delegated => {
                let (ns, sub) = self.delegated().unwrap_or((0, &[]));
                s.push_str(&ns.to_string());
                s.push('f');
                let mut body = sub.to_vec();
                body.extend_from_slice(&checksum(&self.to_bytes()));
                s.push_str(&base32_encode(&body));
            }
            _ => {
                let mut body = self.payload.clone();
                body.extend_from_slice(&checksum(&self.to_bytes()));
                s.push_str(&base32_encode(&body));
            }
        }
        s
    }
}

fn parse_decimal(s: &str) -> Result<u64, AddressError> {
    if s.is_empty() {
        return Err(AddressError::InvalidLength);
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::InvalidPayload);
    }
    s.parse().map_err(|_| AddressError::InvalidPayload)
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_with_network(s).map(|(_, a)| a)
    }
}

/// Displays with the mainnet prefix `f`; use [`Address::to_string_with`] for testnet.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_with(Network::Mainnet))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.to_bytes())
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        Address::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trip() {
        for id in [0u64, 1, 1024, u64::MAX] {
            let a = Address::new_id(id);
            assert_eq!(a.id(), Some(id));
            assert_eq!(Address::from_bytes(&a.to_bytes()).unwrap(), a);
            assert_eq!(a.to_string().parse::<Address>().unwrap(), a);
        }
    }

    #[test]
    fn both_networks_parse() {
        let (n, a) = Address::parse_with_network("t01024").unwrap();
        assert_eq!(n, Network::Testnet);
        let (m, b) = Address::parse_with_network("f01024").unwrap();
        assert_eq!(m, Network::Mainnet);
        assert_eq!(a, b);
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "", "f", "f0", "x01", "f9abc", "f0-1", "f0 1", "f1é", "t1234q",
        ] {
            assert!(s.parse::<Address>().is_err(), "{s}");
        }
        assert_eq!(Address::from_bytes(&[]), Err(AddressError::InvalidLength));
        assert_eq!(
            Address::from_bytes(&[9, 1]),
            Err(AddressError::UnknownProtocol(9))
        );
    }
}
