//! Fr32 padding and piece sizes.
//!
//! Filecoin proofs work on 254-bit field elements, so data is stored with two zero bits
//! after every 254 bits: every 127 bytes (4 × 254 bits) become 128 bytes (4 × 256 bits).
//! Bits are numbered little-endian within each byte: bit `i` of a stream is bit `i % 8` of
//! byte `i / 8`, and the two zero bits are the top bits of every 32nd byte.
//!
//! A piece's *padded* size is a power of two of at least 128 bytes; its *unpadded* size is
//! `padded - padded / 128` (the data it can hold).

use crate::Error;

/// Bytes of data in one Fr32 chunk.
pub const UNPADDED_CHUNK: usize = 127;
/// Bytes of one padded Fr32 chunk.
pub const PADDED_CHUNK: usize = 128;

/// A padded piece size: a power of two, at least 128 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PaddedPieceSize(u64);

/// An unpadded piece size: `padded - padded / 128` for a valid padded size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnpaddedPieceSize(u64);

impl PaddedPieceSize {
    /// The smallest padded size.
    pub const MIN: PaddedPieceSize = PaddedPieceSize(128);

    /// Checks `size`: a power of two of at least 128 bytes.
    pub fn new(size: u64) -> Result<Self, Error> {
        if size < 128 || !size.is_power_of_two() {
            return Err(Error::InvalidSize(format!(
                "padded piece size {size} is not a power of two of at least 128 bytes"
            )));
        }
        Ok(Self(size))
    }

    /// The smallest padded size whose unpadded size holds `len` bytes.
    pub fn for_data(len: u64) -> Result<Self, Error> {
        let chunks = len.div_ceil(UNPADDED_CHUNK as u64).max(1);
        let padded = chunks
            .checked_mul(PADDED_CHUNK as u64)
            .and_then(u64::checked_next_power_of_two)
            .ok_or_else(|| Error::InvalidSize(format!("{len} bytes do not fit any piece")))?;
        Ok(Self(padded))
    }

    /// The size in bytes.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The data this size holds.
    pub fn unpadded(self) -> UnpaddedPieceSize {
        UnpaddedPieceSize(self.0 - self.0 / 128)
    }
}

impl UnpaddedPieceSize {
    /// Checks `size`: `padded - padded / 128` for some valid padded size.
    pub fn new(size: u64) -> Result<Self, Error> {
        // The padded size (size + size / 127) must fit a u64.
        let ok = size >= 127
            && size.is_multiple_of(127)
            && (size / 127).is_power_of_two()
            && size / 127 <= 1 << 56;
        if !ok {
            return Err(Error::InvalidSize(format!(
                "unpadded piece size {size} is not 127 × a power of two"
            )));
        }
        Ok(Self(size))
    }

    /// The size in bytes.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The padded size.
    pub fn padded(self) -> PaddedPieceSize {
        PaddedPieceSize(self.0 + self.0 / 127)
    }
}

impl std::fmt::Display for PaddedPieceSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for UnpaddedPieceSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Pads one 127-byte chunk into 128 bytes.
pub fn pad_chunk(input: &[u8; UNPADDED_CHUNK], out: &mut [u8; PADDED_CHUNK]) {
    // Field element j takes input bits [254j, 254j + 254) into output bits [256j, 256j + 254).
    out[..31].copy_from_slice(&input[..31]);
    out[31] = input[31] & 0x3f;
    // Element 1 starts at input bit 254 (byte 31, bit 6).
    for k in 0..32 {
        let hi = if 32 + k < UNPADDED_CHUNK {
            input[32 + k]
        } else {
            0
        };
        out[32 + k] = (input[31 + k] >> 6) | (hi << 2);
    }
    out[63] &= 0x3f;
    // Element 2 starts at input bit 508 (byte 63, bit 4).
    for k in 0..32 {
        let hi = if 64 + k < UNPADDED_CHUNK {
            input[64 + k]
        } else {
            0
        };
        out[64 + k] = (input[63 + k] >> 4) | (hi << 4);
    }
    out[95] &= 0x3f;
    // Element 3 starts at input bit 762 (byte 95, bit 2).
    for k in 0..32 {
        let hi = if 96 + k < UNPADDED_CHUNK {
            input[96 + k]
        } else {
            0
        };
        out[96 + k] = (input[95 + k] >> 2) | (hi << 6);
    }
    out[127] &= 0x3f;
}

/// Unpads one 128-byte chunk into 127 bytes (the two padding bits of each element are
/// ignored).
pub fn unpad_chunk(input: &[u8; PADDED_CHUNK], out: &mut [u8; UNPADDED_CHUNK]) {
    out[..31].copy_from_slice(&input[..31]);
    // Byte 31: element 0's last 6 bits, element 1's first 2.
    out[31] = (input[31] & 0x3f) | (input[32] << 6);
    for k in 0..31 {
        out[32 + k] = (input[32 + k] >> 2) | (input[33 + k] << 6);
    }
    // Byte 63: element 1's last 4 bits, element 2's first 4.
    out[63] = ((input[63] >> 2) & 0x0f) | (input[64] << 4);
    for k in 0..31 {
        out[64 + k] = (input[64 + k] >> 4) | (input[65 + k] << 4);
    }
    // Byte 95: element 2's last 2 bits, element 3's first 6.
    out[95] = ((input[95] >> 4) & 0x03) | (input[96] << 2);
    for k in 0..31 {
        out[96 + k] = (input[96 + k] >> 6) | (input[97 + k] << 2);
    }
}

/// Pads `input` (a whole number of 127-byte chunks) into `out` (the same number of
/// 128-byte chunks).
pub fn pad_into(input: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let chunks = input.len() / UNPADDED_CHUNK;
    if !input.len().is_multiple_of(UNPADDED_CHUNK) || out.len() != chunks * PADDED_CHUNK {
        return Err(Error::InvalidSize(format!(
            "cannot pad {} bytes into {} bytes",
            input.len(),
            out.len()
        )));
    }
    for (i, o) in input
        .chunks_exact(UNPADDED_CHUNK)
        .zip(out.chunks_exact_mut(PADDED_CHUNK))
    {
        if let (Ok(i), Ok(o)) = (i.try_into(), o.try_into()) {
            pad_chunk(i, o);
        }
    }
    Ok(())
}

/// Unpads `input` (a whole number of 128-byte chunks) into `out` (the same number of
/// 127-byte chunks).
pub fn unpad_into(input: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let chunks = input.len() / PADDED_CHUNK;
    if !input.len().is_multiple_of(PADDED_CHUNK) || out.len() != chunks * UNPADDED_CHUNK {
        return Err(Error::InvalidSize(format!(
            "cannot unpad {} bytes into {} bytes",
            input.len(),
            out.len()
        )));
    }
    for (i, o) in input
        .chunks_exact(PADDED_CHUNK)
        .zip(out.chunks_exact_mut(UNPADDED_CHUNK))
    {
        if let (Ok(i), Ok(o)) = (i.try_into(), o.try_into()) {
            unpad_chunk(i, o);
        }
    }
    Ok(())
}

/// Pads `data`, zero-filling its last chunk: `ceil(len / 127) × 128` bytes.
pub fn pad(data: &[u8]) -> Vec<u8> {
    let chunks = data.len().div_ceil(UNPADDED_CHUNK);
    let mut input = data.to_vec();
    input.resize(chunks * UNPADDED_CHUNK, 0);
    let mut out = vec![0u8; chunks * PADDED_CHUNK];
    // Lengths are whole chunks by construction.
    let _ = pad_into(&input, &mut out);
    out
}

/// Unpads `padded` (a whole number of 128-byte chunks).
pub fn unpad(padded: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; padded.len() / PADDED_CHUNK * UNPADDED_CHUNK];
    unpad_into(padded, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, bit by bit.
    fn pad_bitwise(input: &[u8; 127]) -> [u8; 128] {
        let mut out = [0u8; 128];
        for s in 0..1016 {
            let bit = (input[s / 8] >> (s % 8)) & 1;
            let p = s + 2 * (s / 254);
            out[p / 8] |= bit << (p % 8);
        }
        out
    }

    proptest! {
        #[test]
        fn pad_matches_the_bitwise_definition(input in proptest::collection::vec(any::<u8>(), 127)) {
            let input: [u8; 127] = input.try_into().unwrap();
            let mut out = [0u8; 128];
            pad_chunk(&input, &mut out);
            prop_assert_eq!(out, pad_bitwise(&input));
        }

        #[test]
        fn unpad_inverts_pad(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let padded = pad(&data);
            prop_assert_eq!(padded.len() % 128, 0);
            // Every 32nd byte has its two top bits clear.
            for element in padded.chunks(32) {
                prop_assert_eq!(element[31] & 0xc0, 0);
            }
            let back = unpad(&padded).unwrap();
            prop_assert_eq!(&back[..data.len()], &data[..]);
            prop_assert!(back[data.len()..].iter().all(|b| *b == 0));
        }

        #[test]
        fn unpad_ignores_the_padding_bits(chunk in proptest::collection::vec(any::<u8>(), 128)) {
            let mut cleared = chunk.clone();
            for i in [31, 63, 95, 127] {
                cleared[i] &= 0x3f;
            }
            prop_assert_eq!(unpad(&chunk).unwrap(), unpad(&cleared).unwrap());
            prop_assert_eq!(pad(&unpad(&cleared).unwrap()), cleared);
        }
    }

    #[test]
    fn all_ones_keep_the_zero_bits() {
        let out = pad(&[0xff; 127]);
        for (i, b) in out.iter().enumerate() {
            let expected = if i % 32 == 31 { 0x3f } else { 0xff };
            assert_eq!(*b, expected, "byte {i}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(PaddedPieceSize::new(128).unwrap().unpadded().get(), 127);
        assert_eq!(
            PaddedPieceSize::new(1 << 30).unwrap().unpadded().get(),
            (1 << 30) / 128 * 127
        );
        assert!(PaddedPieceSize::new(127).is_err());
        assert!(PaddedPieceSize::new(192).is_err());
        assert!(PaddedPieceSize::new(0).is_err());
        assert_eq!(UnpaddedPieceSize::new(1016).unwrap().padded().get(), 1024);
        assert!(UnpaddedPieceSize::new(1000).is_err());
        assert!(UnpaddedPieceSize::new(381).is_err());
        assert!(UnpaddedPieceSize::new(127 << 57).is_err());
        assert_eq!(
            UnpaddedPieceSize::new(127 << 56).unwrap().padded().get(),
            1 << 63
        );
        for (len, padded) in [
            (0, 128),
            (1, 128),
            (127, 128),
            (128, 256),
            (254, 256),
            (255, 512),
            (19_958, 32_768),
        ] {
            assert_eq!(
                PaddedPieceSize::for_data(len).unwrap().get(),
                padded,
                "{len}"
            );
        }
        assert!(PaddedPieceSize::for_data(u64::MAX).is_err());
        assert!(unpad(&[0u8; 100]).is_err());
        assert!(pad_into(&[0u8; 127], &mut [0u8; 127]).is_err());
    }
}
