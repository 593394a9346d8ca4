//! [`Block`]: one IPLD block as it travels inside a `DealResponse` (bitswap format).

use bytes::Bytes;
use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Largest multihash digest a [`Block`] prefix may announce, in bytes.
///
/// Filecoin and IPFS use 32-byte digests (sha2-256, blake2b-256); 64 covers every hash in
/// the multihash code table while keeping hostile prefixes from asking for absurd lengths.
pub const MAX_DIGEST_LEN: u64 = 64;

/// One IPLD block on the wire: the CID prefix and the block bytes.
///
/// `prefix` is the CID without its digest (`cid.Prefix().Bytes()` in Go): varints of the
/// CID version, the codec, the multihash code and the digest length. The receiver recomputes
/// the CID from `prefix` and a fresh hash of `data`, so a tampered payload never matches the
/// link it claims to be.
///
/// CBOR: a map `{"Prefix": bytes, "Data": bytes}` (keys in canonical order: `Data`, `Prefix`),
/// or a 2-tuple `[Prefix, Data]` in the legacy tuple encoding.
///
/// `data` is [`Bytes`]: a block decoded with [`crate::codec::from_bytes`] is a slice of the
/// received message, not a copy, and cloning a block shares its bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// CID prefix: version, codec, multihash code, digest length (unsigned varints).
    #[serde(rename = "Prefix", with = "serde_bytes")]
    pub prefix: Vec<u8>,
    /// The block's bytes.
    #[serde(rename = "Data", with = "crate::codec::shared_bytes")]
    pub data: Bytes,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("prefix", &self.prefix)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// The parts of a CID prefix (a CID without its digest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// CID version (0 or 1).
    pub version: cid::Version,
    /// IPLD codec (multicodec code), e.g. `0x55` raw, `0x70` dag-pb, `0x71` dag-cbor.
    pub codec: u64,
    /// Multihash function code, e.g. `0x12` sha2-256, `0xb220` blake2b-256.
    pub mh_code: u64,
    /// Digest length in bytes.
    pub mh_len: u64,
}

impl Prefix {
    /// The prefix of `cid`.
    pub fn of(cid: &Cid) -> Self {
        Self {
            version: cid.version(),
            codec: cid.codec(),
            mh_code: cid.hash().code(),
            mh_len: u64::from(cid.hash().size()),
        }
    }

    /// Encodes the prefix as Go's `cid.Prefix().Bytes()`: four unsigned varints.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12);
        let mut buf = unsigned_varint::encode::u64_buffer();
        let version: u64 = self.version.into();
        for v in [version, self.codec, self.mh_code, self.mh_len] {
            out.extend_from_slice(unsigned_varint::encode::u64(v, &mut buf));
        }
        out
    }

    /// Decodes the four varints of a prefix; trailing bytes, unknown versions and digest
    /// lengths above [`MAX_DIGEST_LEN`] are rejected.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |why: &'static str| Error::InvalidPrefix(why);
        let (version, rest) = unsigned_varint::decode::u64(bytes).map_err(|_| bad("version"))?;
        let (codec, rest) = unsigned_varint::decode::u64(rest).map_err(|_| bad("codec"))?;
        let (mh_code, rest) = unsigned_varint::decode::u64(rest).map_err(|_| bad("hash code"))?;
        let (mh_len, rest) = unsigned_varint::decode::u64(rest).map_err(|_| bad("hash length"))?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let version = cid::Version::try_from(version).map_err(|_| bad("unknown CID version"))?;
        if mh_len > MAX_DIGEST_LEN {
            return Err(bad("digest length too large"));
        }
        if version == cid::Version::V0 && (codec != 0x70 || mh_code != 0x12 || mh_len != 32) {
            return Err(bad("CIDv0 must be dag-pb sha2-256"));
        }
        Ok(Self {
            version,
            codec,
            mh_code,
            mh_len,
        })
    }

    /// Hashes `data` with this prefix's hash function and builds the CID.
    ///
    /// Fails with [`Error::UnsupportedHash`] for a hash code outside the multihash code
    /// table and with [`Error::InvalidPrefix`] when the announced digest length does not
    /// match the function's. Identity hashes (`0x00`) embed the data itself.
    pub fn sum(&self, data: &[u8]) -> Result<Cid, Error> {
        let code =
            Code::try_from(self.mh_code).map_err(|_| Error::UnsupportedHash(self.mh_code))?;
        let mh = code.digest(data);
        if u64::from(mh.size()) != self.mh_len {
            return Err(Error::InvalidPrefix(
                "digest length does not match the hash",
            ));
        }
        match self.version {
            cid::Version::V0 => Cid::new_v0(mh).map_err(|_| Error::InvalidPrefix("CIDv0")),
            cid::Version::V1 => Ok(Cid::new_v1(self.codec, mh)),
        }
    }
}

impl Block {
    /// Builds the wire block for `cid` and its `data` (does not check that they match). A
    /// `Vec<u8>` or a [`Bytes`] becomes the block's data without a copy.
    pub fn new(cid: &Cid, data: impl Into<Bytes>) -> Self {
        Self {
            prefix: Prefix::of(cid).to_bytes(),
            data: data.into(),
        }
    }

    /// Recomputes this block's CID from its prefix and a hash of its data.
    pub fn cid(&self) -> Result<Cid, Error> {
        Prefix::from_bytes(&self.prefix)?.sum(&self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_round_trip_and_sum() {
        let data = b"hello world\n".to_vec();
        let cid = Cid::new_v1(0x55, Code::Sha2_256.digest(&data));
        let block = Block::new(&cid, data);
        assert_eq!(block.prefix, vec![0x01, 0x55, 0x12, 0x20]);
        assert_eq!(block.cid().unwrap(), cid);
        let v0 = Cid::new_v0(Code::Sha2_256.digest(b"x")).unwrap();
        assert_eq!(
            Prefix::from_bytes(&Prefix::of(&v0).to_bytes()).unwrap(),
            Prefix::of(&v0)
        );
    }

    #[test]
    fn blake2b_prefix() {
        let data = vec![7u8; 1024];
        let cid = Cid::new_v1(0x55, Code::Blake2b256.digest(&data));
        let block = Block::new(&cid, data);
        assert_eq!(block.cid().unwrap(), cid);
    }

    #[test]
    fn hostile_prefixes_are_rejected() {
        assert!(Prefix::from_bytes(&[]).is_err());
        assert!(Prefix::from_bytes(&[0x01, 0x55, 0x12]).is_err());
        assert!(Prefix::from_bytes(&[0x01, 0x55, 0x12, 0x20, 0x00]).is_err());
        assert!(Prefix::from_bytes(&[0x02, 0x55, 0x12, 0x20]).is_err());
        assert!(Prefix::from_bytes(&[0x01, 0x55, 0x12, 0x80, 0x01]).is_err());
        assert!(Prefix::from_bytes(&[0x00, 0x55, 0x12, 0x20]).is_err());
        let wrong_len = Prefix::from_bytes(&[0x01, 0x55, 0x12, 0x10]).unwrap();
        assert!(matches!(wrong_len.sum(b"x"), Err(Error::InvalidPrefix(_))));
        let unknown_hash = Prefix::from_bytes(&[0x01, 0x55, 0x7f, 0x20]).unwrap();
        assert!(matches!(
            unknown_hash.sum(b"x"),
            Err(Error::UnsupportedHash(0x7f))
        ));
    }
}
