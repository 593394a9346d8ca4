//! [`TokenAmount`]: attoFIL amounts as Filecoin big integers.
//!
//! ```
//! use rm_types::TokenAmount;
//!
//! let price = TokenAmount::from_atto(1000u64);
//! let owed = &price * 19_958u64;
//! assert_eq!(owed, TokenAmount::from_atto(19_958_000u64));
//! assert_eq!(owed.to_string(), "0.000000000019958 FIL");
//! assert_eq!(TokenAmount::from_atto(12u64).to_cbor_bytes(), vec![0x00, 0x0c]);
//! ```

use std::fmt;
use std::ops::{Add, AddAssign, Mul, Sub, SubAssign};
use std::str::FromStr;

use num_bigint::{BigInt, Sign};
use num_traits::{Signed, Zero};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// The largest serialized big integer (sign byte included), as go-state-types and ref-fvm
/// enforce it.
pub const MAX_BIGINT_SIZE: usize = 128;

/// attoFIL per FIL.
pub const ATTO_PER_FIL: u64 = 1_000_000_000_000_000_000;

/// A signed amount of attoFIL (10^-18 FIL).
///
/// CBOR: a byte string; empty for zero, else a sign byte (`0x00` positive, `0x01`
/// negative) followed by the big-endian magnitude, at most 128 bytes in all.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenAmount {
    atto: BigInt,
}

impl TokenAmount {
    /// Zero attoFIL.
    pub fn zero() -> Self {
        Self::default()
    }

    /// An amount of attoFIL.
    pub fn from_atto(atto: impl Into<BigInt>) -> Self {
        Self { atto: atto.into() }
    }

    /// An amount of whole FIL.
    pub fn from_whole(fil: u64) -> Self {
        Self::from_atto(BigInt::from(fil) * ATTO_PER_FIL)
    }

    /// The amount in attoFIL.
    pub fn atto(&self) -> &BigInt {
        &self.atto
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.atto.is_zero()
    }

    /// Whether the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.atto.is_negative()
    }

    /// Whether the amount is above zero.
    pub fn is_positive(&self) -> bool {
        self.atto.is_positive()
    }

    /// `max(self, 0)`.
    pub fn clamp_non_negative(self) -> Self {
        if self.is_negative() {
            Self::zero()
        } else {
            self
        }
    }

    /// The amount as a `u64` if it fits (negative amounts do not).
    pub fn to_u64(&self) -> Option<u64> {
        u64::try_from(&self.atto).ok()
    }

    /// `self / divisor` in attoFIL, rounded toward zero; `None` when `divisor` is zero.
    pub fn div_floor(&self, divisor: &TokenAmount) -> Option<BigInt> {
        if divisor.is_zero() {
            None
        } else {
            Some(&self.atto / &divisor.atto)
        }
    }

    /// The Filecoin big-int byte form (empty for zero).
    pub fn to_cbor_bytes(&self) -> Vec<u8> {
        let (sign, magnitude) = self.atto.to_bytes_be();
        match sign {
            Sign::NoSign => Vec::new(),
            Sign::Plus | Sign::Minus => {
                let mut out = Vec::with_capacity(1 + magnitude.len());
                out.push(u8::from(sign == Sign::Minus));
                out.extend_from_slice(&magnitude);
                out
            }
        }
    }

    /// Parses the Filecoin big-int byte form.
    ///
    /// Rejects more than [`MAX_BIGINT_SIZE`] bytes and sign bytes other than 0 and 1. Like
    /// go-state-types and fvm_shared it accepts the non-canonical forms a sign byte with no
    /// magnitude (zero), "negative zero" and leading zero bytes, none of which it produces.
    pub fn from_cbor_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_BIGINT_SIZE {
            return Err(Error::TokenAmount("more than 128 bytes"));
        }
        let Some((&sign, magnitude)) = bytes.split_first() else {
            return Ok(Self::zero());
        };
        let sign = match sign {
            0 => Sign::Plus,
            1 => Sign::Minus,
            _ => return Err(Error::TokenAmount("sign byte is neither 0 nor 1")),
        };
        Ok(Self::from_atto(BigInt::from_bytes_be(sign, magnitude)))
    }

    /// Checks that the amount fits the 128-byte serialized limit.
    pub fn check_size(&self) -> Result<(), Error> {
        if self.atto.is_zero()
            || (self.atto.magnitude().bits().div_ceil(8) as usize) < MAX_BIGINT_SIZE
        {
            Ok(())
        } else {
            Err(Error::TokenAmount("more than 128 bytes"))
        }
    }

    /// Formats as `"<n> attoFIL"`.
    pub fn display_atto(&self) -> String {
        format!("{} attoFIL", self.atto)
    }
}

/// FIL with up to 18 decimals and no trailing zeros, e.g. `0.5 FIL`, `12 FIL`.
impl fmt::Display for TokenAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = BigInt::from(ATTO_PER_FIL);
        let neg = self.atto.is_negative();
        let abs = self.atto.abs();
        let whole = &abs / &per;
        let frac = &abs % &per;
        let sign = if neg { "-" } else { "" };
        if frac.is_zero() {
            write!(f, "{sign}{whole} FIL")
        } else {
            let frac = format!("{frac:0>18}");
            write!(f, "{sign}{whole}.{} FIL", frac.trim_end_matches('0'))
        }
    }
}

impl fmt::Debug for TokenAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenAmount({})", self.display_atto())
    }
}

/// Parses `"<decimal> FIL"`, `"<integer> attoFIL"` or a bare integer (attoFIL).
impl FromStr for TokenAmount {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || Error::TokenAmount("expected '<n> attoFIL', '<decimal> FIL' or an integer");
        if let Some(n) = s.strip_suffix("attoFIL") {
            return BigInt::from_str(n.trim())
                .map(Self::from_atto)
                .map_err(|_| bad());
        }
        if let Some(n) = s.strip_suffix("FIL") {
            let n = n.trim();
            let (neg, n) = n.strip_prefix('-').map_or((false, n), |r| (true, r));
            let (whole, frac) = n.split_once('.').unwrap_or((n, ""));
            if whole.is_empty() && frac.is_empty() || frac.len() > 18 {
                return Err(bad());
            }
            if !whole
                .bytes()
                .chain(frac.bytes())
                .all(|b| b.is_ascii_digit())
            {
                return Err(bad());
            }
            let whole = if whole.is_empty() {
                BigInt::zero()
            } else {
                BigInt::from_str(whole).map_err(|_| bad())?
            };
            let frac = if frac.is_empty() {
                BigInt::zero()
            } else {
                BigInt::from_str(&format!("{frac:0<18}")).map_err(|_| bad())?
            };
            let atto = whole * ATTO_PER_FIL + frac;
            return Ok(Self::from_atto(if neg { -atto } else { atto }));
        }
        BigInt::from_str(s).map(Self::from_atto).map_err(|_| bad())
    }
}

impl Serialize for TokenAmount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = self.to_cbor_bytes();
        if bytes.len() > MAX_BIGINT_SIZE {
            return Err(serde::ser::Error::custom("token amount over 128 bytes"));
        }
        s.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for TokenAmount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        Self::from_cbor_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

impl Add<&TokenAmount> for &TokenAmount {
    type Output = TokenAmount;
    fn add(self, rhs: &TokenAmount) -> TokenAmount {
        TokenAmount::from_atto(&self.atto + &rhs.atto)
    }
}

impl Add for TokenAmount {
    type Output = TokenAmount;
    fn add(self, rhs: TokenAmount) -> TokenAmount {
        TokenAmount::from_atto(self.atto + rhs.atto)
    }
}

impl Sub<&TokenAmount> for &TokenAmount {
    type Output = TokenAmount;
    fn sub(self, rhs: &TokenAmount) -> TokenAmount {
        TokenAmount::from_atto(&self.atto - &rhs.atto)
    }
}

impl Sub for TokenAmount {
    type Output = TokenAmount;
    fn sub(self, rhs: TokenAmount) -> TokenAmount {
        TokenAmount::from_atto(self.atto - rhs.atto)
    }
}

impl AddAssign<&TokenAmount> for TokenAmount {
    fn add_assign(&mut self, rhs: &TokenAmount) {
        self.atto += &rhs.atto;
    }
}

impl SubAssign<&TokenAmount> for TokenAmount {
    fn sub_assign(&mut self, rhs: &TokenAmount) {
        self.atto -= &rhs.atto;
    }
}

impl Mul<u64> for &TokenAmount {
    type Output = TokenAmount;
    fn mul(self, rhs: u64) -> TokenAmount {
        TokenAmount::from_atto(&self.atto * rhs)
    }
}

impl Mul<u64> for TokenAmount {
    type Output = TokenAmount;
    fn mul(self, rhs: u64) -> TokenAmount {
        TokenAmount::from_atto(self.atto * rhs)
    }
}

impl From<u64> for TokenAmount {
    fn from(atto: u64) -> Self {
        Self::from_atto(atto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        for (n, hex) in [
            (0i64, ""),
            (1, "0001"),
            (12, "000c"),
            (-255, "01ff"),
            (-256, "010100"),
        ] {
            let t = TokenAmount::from_atto(n);
            let bytes = t.to_cbor_bytes();
            assert_eq!(bytes, hex_bytes(hex));
            assert_eq!(TokenAmount::from_cbor_bytes(&bytes).unwrap(), t);
        }
    }

    #[test]
    fn lenient_forms_decode_like_go() {
        assert!(TokenAmount::from_cbor_bytes(&[0x00]).unwrap().is_zero());
        assert!(TokenAmount::from_cbor_bytes(&[0x01]).unwrap().is_zero());
        assert_eq!(
            TokenAmount::from_cbor_bytes(&[0, 0, 1]).unwrap(),
            TokenAmount::from_atto(1)
        );
        assert!(TokenAmount::from_cbor_bytes(&[2, 1]).is_err());
        assert!(TokenAmount::from_cbor_bytes(&[0u8; 129]).is_err());
    }

    #[test]
    fn display_and_parse() {
        assert_eq!(TokenAmount::from_whole(12).to_string(), "12 FIL");
        assert_eq!(
            TokenAmount::from_atto(ATTO_PER_FIL / 2).to_string(),
            "0.5 FIL"
        );
        assert_eq!(
            TokenAmount::from_atto(-1).to_string(),
            "-0.000000000000000001 FIL"
        );
        for s in ["12 FIL", "0.5 FIL", "-0.000000000000000001 FIL", "7 FIL"] {
            assert_eq!(s.parse::<TokenAmount>().unwrap().to_string(), s);
        }
        assert_eq!(
            "10174000 attoFIL".parse::<TokenAmount>().unwrap(),
            TokenAmount::from_atto(10_174_000)
        );
        assert_eq!(
            "42".parse::<TokenAmount>().unwrap(),
            TokenAmount::from_atto(42)
        );
        for bad in [
            "",
            "FIL",
            "1.2.3 FIL",
            "x attoFIL",
            "0.0000000000000000001 FIL",
            "1e3",
        ] {
            assert!(bad.parse::<TokenAmount>().is_err(), "{bad}");
        }
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
