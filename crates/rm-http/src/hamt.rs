//! HAMT-sharded UnixFS directories: which shard link holds a name.
//!
//! A sharded directory (UnixFS `Data.Type = HAMTShard`) spreads its entries over a tree of
//! dag-pb shards. Each shard has `fanout` slots; a link's name starts with its slot as
//! upper-case hex padded to the width of `fanout - 1`. A link whose name is only that
//! prefix is a child shard; otherwise the rest of the name is the entry's name. The slot
//! of a name at depth `d` is the `d`-th group of `log2(fanout)` bits (most significant
//! first) of the 64-bit murmur3 x64/128 hash of the name (its first half, big-endian), as
//! boxo's `hamt` package computes it.

use crate::walk::WalkError;

/// The multicodec of murmur3-x64-64, the only HAMT hash function UnixFS uses.
pub const MURMUR3_X64_64: u64 = 0x22;

/// Largest fanout accepted (boxo's default is 256).
pub const MAX_FANOUT: u64 = 1 << 12;

/// murmur3 x64/128 with seed 0: the two 64-bit halves.
pub fn murmur3_x64_128(data: &[u8]) -> (u64, u64) {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let (mut h1, mut h2) = (0u64, 0u64);
    let mut chunks = data.chunks_exact(16);
    for block in &mut chunks {
        let (a, b) = block.split_at(8);
        let mut k1 = u64::from_le_bytes(a.try_into().unwrap_or_default());
        let mut k2 = u64::from_le_bytes(b.try_into().unwrap_or_default());
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = chunks.remainder();
    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, b) in tail.iter().enumerate().skip(8) {
        k2 ^= u64::from(*b) << ((i - 8) * 8);
    }
    if tail.len() > 8 {
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
    }
    for (i, b) in tail.iter().enumerate().take(8) {
        k1 ^= u64::from(*b) << (i * 8);
    }
    if !tail.is_empty() {
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

fn fmix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The parameters of one shard, from its UnixFS `Data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Slots per shard (a power of two).
    pub fanout: u64,
}

impl Shard {
    /// Reads `hashType` (field 5) and `fanout` (field 6) from a UnixFS `Data` message.
    pub fn from_unixfs(mut bytes: &[u8]) -> Result<Shard, WalkError> {
        let bad = |why: &str| WalkError::InvalidUnixFs(format!("HAMT shard: {why}"));
        let (mut fanout, mut hash) = (None, None);
        while !bytes.is_empty() {
            let (tag, rest) = unsigned_varint::decode::u64(bytes).map_err(|_| bad("tag"))?;
            bytes = rest;
            match tag & 7 {
                0 => {
                    let (v, rest) =
                        unsigned_varint::decode::u64(bytes).map_err(|_| bad("varint"))?;
                    bytes = rest;
                    match tag >> 3 {
                        5 => hash = Some(v),
                        6 => fanout = Some(v),
                        _ => {}
                    }
                }
                2 => {
                    let (n, rest) =
                        unsigned_varint::decode::u64(bytes).map_err(|_| bad("length"))?;
                    let n = usize::try_from(n).map_err(|_| bad("length"))?;
                    if n > rest.len() {
                        return Err(bad("field runs past the end"));
                    }
                    bytes = &rest[n..];
                }
                1 if bytes.len() >= 8 => bytes = &bytes[8..],
                5 if bytes.len() >= 4 => bytes = &bytes[4..],
                _ => return Err(bad("wire type")),
            }
        }
        if hash != Some(MURMUR3_X64_64) {
            return Err(WalkError::Unsupported(format!(
                "HAMT hash function {hash:?} (only murmur3-x64-64)"
            )));
        }
        let fanout = fanout.ok_or_else(|| bad("no fanout"))?;
        if !fanout.is_power_of_two() || !(2..=MAX_FANOUT).contains(&fanout) {
            return Err(bad("fanout must be a power of two up to 4096"));
        }
        Ok(Shard { fanout })
    }

    /// Hex digits of a slot prefix.
    pub fn prefix_width(&self) -> usize {
        format!("{:X}", self.fanout - 1).len()
    }

    /// The slot prefix of `name` in a shard at `depth` (0 for the directory's root shard),
    /// or `None` when the hash has no bits left for that depth.
    pub fn prefix(&self, name: &str, depth: u32) -> Option<String> {
        let bits = self.fanout.trailing_zeros();
        let start = depth.checked_mul(bits)?;
        if start + bits > 64 {
            return None;
        }
        let (h1, _) = murmur3_x64_128(name.as_bytes());
        let slot = (h1 << start) >> (64 - bits);
        Some(format!("{slot:0width$X}", width = self.prefix_width()))
    }

    /// Whether a link name is a child shard (only a prefix).
    pub fn is_shard_link(&self, name: &str) -> bool {
        name.len() == self.prefix_width()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_known_values() {
        assert_eq!(murmur3_x64_128(b""), (0, 0));
        // Reference values of the x64/128 variant, seed 0 (both halves).
        assert_eq!(
            murmur3_x64_128(b"hello"),
            (0xcbd8_a7b3_41bd_9b02, 0x5b1e_906a_48ae_1d19)
        );
        // Tails of every length and a full block go through different code.
        let mut seen = std::collections::HashSet::new();
        for n in 0..40 {
            assert!(seen.insert(murmur3_x64_128(&vec![7u8; n])));
        }
    }

    #[test]
    fn shard_data_is_read_and_checked() {
        // Type=HAMTShard(5), hashType=0x22, fanout=256
        let ok = [0x08, 0x05, 0x28, 0x22, 0x30, 0x80, 0x02];
        let shard = Shard::from_unixfs(&ok).unwrap();
        assert_eq!(shard.fanout, 256);
        assert_eq!(shard.prefix_width(), 2);
        assert!(shard.is_shard_link("0A"));
        assert!(!shard.is_shard_link("0Afile"));
        assert_eq!(shard.prefix("x", 0).unwrap().len(), 2);
        assert!(
            shard.prefix("x", 8).is_none(),
            "64 bits = 8 levels of 8 bits"
        );
        let bad_hash = [0x08, 0x05, 0x28, 0x23, 0x30, 0x80, 0x02];
        assert!(Shard::from_unixfs(&bad_hash).is_err());
        let bad_fanout = [0x08, 0x05, 0x28, 0x22, 0x30, 0x03];
        assert!(Shard::from_unixfs(&bad_fanout).is_err());
        assert!(Shard::from_unixfs(&[0x12, 0x09, 0x01]).is_err());
    }
}
