//! Payment math (`docs/payments.md`): one implementation for client and provider.
//!
//! Payment points are cumulative byte counts. With payment interval `PI` and increase
//! `INC` the boundaries are `b1 = PI`, `b(k+1) = b(k) + PI + k·INC` — intervals of `PI`,
//! `PI+INC`, `PI+2·INC`, … bytes. The provider sends until the transfer crosses the next
//! boundary above what it has been paid for, then asks for money; the client pays for every
//! verified byte it holds (plus the unseal price), cumulatively.
//!
//! ```
//! use rm_types::{Params, TokenAmount};
//!
//! // go-fil-markets' integration test: lorem.txt, 1000 attoFIL/byte, PI 10000, INC 1000.
//! let p = Params::new(TokenAmount::from_atto(1000u64), 10_000, 1_000);
//! assert_eq!(p.next_interval(0), 10_000);
//! assert_eq!(p.next_interval(10_174), 21_000);
//! assert_eq!(p.amount_for_bytes(10_174), TokenAmount::from_atto(10_174_000u64));
//! ```
//!
//! Every division by the price is guarded: a zero-price deal has no payment points.

use crate::{Params, TokenAmount};

impl Params {
    /// The `k`-th boundary (`k >= 1`), saturating at `u128::MAX`.
    fn boundary(&self, k: u128) -> u128 {
        let pi = u128::from(self.payment_interval);
        let inc = u128::from(self.payment_interval_increase);
        // k·PI + INC·k(k−1)/2
        let tri = k.saturating_mul(k.saturating_sub(1)) / 2;
        k.saturating_mul(pi).saturating_add(inc.saturating_mul(tri))
    }

    /// Smallest `k >= 1` whose boundary is strictly greater than `x`, by binary search
    /// (boundaries grow with `k`), so huge transfers with tiny intervals stay O(log).
    fn first_boundary_above(&self, x: u64) -> Option<u128> {
        if self.payment_interval == 0 && self.payment_interval_increase == 0 {
            return None;
        }
        let x = u128::from(x);
        let (mut lo, mut hi) = (1u128, 1u128 << 64);
        if self.boundary(hi) <= x {
            return None;
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.boundary(mid) > x {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Some(lo)
    }

    /// The smallest payment boundary strictly greater than `bytes`; `u64::MAX` when there
    /// is none (both interval parameters zero).
    pub fn next_interval(&self, bytes: u64) -> u64 {
        self.first_boundary_above(bytes).map_or(u64::MAX, |k| {
            u64::try_from(self.boundary(k)).unwrap_or(u64::MAX)
        })
    }

    /// The largest payment boundary less than or equal to `bytes` (0 if none), as
    /// go-fil-markets HEAD defines `IntervalLowerBound`.
    pub fn interval_lower_bound(&self, bytes: u64) -> u64 {
        match self.first_boundary_above(bytes) {
            Some(k) if k > 1 => u64::try_from(self.boundary(k - 1)).unwrap_or(u64::MAX),
            Some(_) => 0,
            // No boundary above `bytes`: every boundary is at or below it (or none exists).
            None if self.payment_interval == 0 && self.payment_interval_increase == 0 => 0,
            None => bytes,
        }
    }

    /// `bytes × price + unseal price`: the cumulative amount that pays for `bytes`.
    pub fn amount_for_bytes(&self, bytes: u64) -> TokenAmount {
        &(&self.price_per_byte * bytes) + &self.unseal_price
    }

    /// How many bytes `funds` pay for once the unseal price is covered (0 when the price
    /// is zero or the funds do not cover the unseal price).
    pub fn bytes_paid_for(&self, funds: &TokenAmount) -> u64 {
        let after_unseal = funds - &self.unseal_price;
        if !after_unseal.is_positive() {
            return 0;
        }
        if !self.price_per_byte.is_positive() {
            return 0;
        }
        match after_unseal.div_floor(&self.price_per_byte) {
            Some(bytes) => u64::try_from(bytes).unwrap_or(u64::MAX),
            None => 0,
        }
    }

    /// The byte count at which the provider must next stop for payment, given what it has
    /// received so far (go-fil-markets HEAD `NextInterval(funds)`); `None` for a zero-price
    /// deal, which never stops.
    pub fn next_payment_point(&self, funds_received: &TokenAmount) -> Option<u64> {
        if self.price_per_byte.is_zero() {
            return None;
        }
        Some(self.next_interval(self.bytes_paid_for(funds_received)))
    }

    /// The length of the payment interval that byte position `x` lies in:
    /// `next_interval(x) − interval_lower_bound(x)` (`PI`, then `PI + INC`, …).
    pub fn interval_at(&self, x: u64) -> u64 {
        self.next_interval(x)
            .saturating_sub(self.interval_lower_bound(x))
    }

    /// How far the provider may send before it must stop for payment: one interval past
    /// the bytes paid for, the interval the paid-for position lies in
    /// (`p + interval_at(p)` for `p = bytes_paid_for(funds)`). On a boundary this is
    /// [`Params::next_payment_point`] (go-fil-markets HEAD's `NextInterval`); a payment
    /// that ends past one — the client pays for every byte it verified, and a payment asked
    /// for early arrives mid-interval — moves the limit with it, so the provider never has
    /// more than one interval unpaid, and never stops while that much is not yet used.
    /// `None` for a zero-price deal, which never stops.
    pub fn credit_limit(&self, funds_received: &TokenAmount) -> Option<u64> {
        if self.price_per_byte.is_zero() {
            return None;
        }
        let paid = self.bytes_paid_for(funds_received);
        Some(paid.saturating_add(self.interval_at(paid)))
    }

    /// What the provider may insist on before it continues (go-fil-markets HEAD
    /// `OutstandingBalance`): the unseal price first; then, for `sent` bytes, payment up to
    /// the last crossed boundary — or for every sent byte once the transfer is finishing.
    /// Never negative.
    pub fn outstanding_balance(
        &self,
        funds_received: &TokenAmount,
        sent: u64,
        in_finalization: bool,
    ) -> TokenAmount {
        if funds_received < &self.unseal_price {
            return &self.unseal_price - funds_received;
        }
        if self.price_per_byte.is_zero() {
            return TokenAmount::zero();
        }
        let bytes = if in_finalization {
            sent
        } else {
            self.interval_lower_bound(sent)
        };
        let need = &self.price_per_byte * bytes;
        let paid_for_data = funds_received - &self.unseal_price;
        (&need - &paid_for_data).clamp_non_negative()
    }

    /// What a client owes in all after verifying `received` bytes: `received × price +
    /// unseal price`, minus what it already spent, never negative. This is the most a
    /// client ever pays; it never pays for bytes it has not verified.
    pub fn client_owes(&self, received: u64, funds_spent: &TokenAmount) -> TokenAmount {
        (&self.amount_for_bytes(received) - funds_spent).clamp_non_negative()
    }

    /// Checks terms that arrive from a peer: prices may not be negative, and a paid deal
    /// needs a payment interval (else it would never stop for payment).
    pub fn validate(&self) -> Result<(), crate::Error> {
        if self.price_per_byte.is_negative() {
            return Err(crate::Error::InvalidParams("negative price per byte"));
        }
        if self.unseal_price.is_negative() {
            return Err(crate::Error::InvalidParams("negative unseal price"));
        }
        if self.price_per_byte.is_positive() && self.payment_interval == 0 {
            return Err(crate::Error::InvalidParams(
                "a paid deal needs a payment interval",
            ));
        }
        Ok(())
    }

    /// Whether a zero-price, zero-unseal deal (no payment channel needed).
    pub fn is_free(&self) -> bool {
        self.price_per_byte.is_zero() && self.unseal_price.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(price: u64, pi: u64, inc: u64) -> Params {
        Params::new(TokenAmount::from_atto(price), pi, inc)
    }

    /// go-fil-markets `retrievalmarket/types_test.go` (PI = 10, INC = 5, price 1).
    #[test]
    fn interval_table_of_go_fil_markets() {
        let p = params(1, 10, 5);
        for (x, lower, next) in [(0, 0, 10), (10, 10, 25), (25, 25, 45), (45, 45, 70)] {
            assert_eq!(p.interval_lower_bound(x), lower, "lower bound of {x}");
            assert_eq!(p.next_interval(x), next, "next interval of {x}");
        }
        assert_eq!(p.interval_lower_bound(9), 0);
        assert_eq!(p.interval_lower_bound(24), 10);
        assert_eq!(p.next_interval(9), 10);
    }

    /// Simulates the provider's payment points and the client's cumulative vouchers.
    fn vouchers(p: &Params, blocks: &[u64]) -> Vec<TokenAmount> {
        let mut funds = TokenAmount::zero();
        let mut sent = 0u64;
        let mut out = Vec::new();
        let mut next_stop = p.next_payment_point(&funds);
        for (i, len) in blocks.iter().enumerate() {
            sent += len;
            let last = i + 1 == blocks.len();
            let stop = next_stop.is_some_and(|b| sent >= b);
            if stop || last {
                let owed = p.outstanding_balance(&funds, sent, last);
                if owed.is_zero() && !last {
                    continue;
                }
                // the client pays for everything it verified
                let pay = p.client_owes(sent, &funds);
                if pay.is_zero() {
                    continue;
                }
                assert!(pay >= owed);
                funds = &funds + &pay;
                out.push(funds.clone());
                next_stop = p.next_payment_point(&funds);
            }
        }
        out
    }

    fn lorem_blocks() -> Vec<u64> {
        let mut b = vec![958];
        b.extend(std::iter::repeat_n(1024, 18));
        b.push(568);
        b
    }

    #[test]
    fn lorem_vouchers_match_go_fil_markets() {
        let p = params(1000, 10_000, 1_000);
        assert_eq!(lorem_blocks().iter().sum::<u64>(), 19_958);
        let v = vouchers(&p, &lorem_blocks());
        assert_eq!(
            v,
            vec![
                TokenAmount::from_atto(10_174_000u64),
                TokenAmount::from_atto(19_958_000u64)
            ]
        );
        // one block; partial selector (root + first leaf)
        assert_eq!(
            vouchers(&p, &[410]),
            vec![TokenAmount::from_atto(410_000u64)]
        );
        assert_eq!(
            vouchers(&p, &[958, 1024]),
            vec![TokenAmount::from_atto(1_982_000u64)]
        );
    }

    #[test]
    fn the_credit_limit_is_one_interval_past_what_is_paid_for() {
        let p = params(1000, 10_000, 1_000);
        let paid = |bytes: u64| TokenAmount::from_atto(bytes * 1000);
        // On a boundary: the next boundary (HEAD's NextInterval).
        assert_eq!(p.credit_limit(&TokenAmount::zero()), Some(10_000));
        assert_eq!(p.credit_limit(&paid(10_000)), Some(21_000));
        assert_eq!(p.credit_limit(&paid(21_000)), Some(33_000));
        // Past one: the interval it lies in, from where the payment ends.
        assert_eq!(p.interval_at(10_174), 11_000);
        assert_eq!(p.credit_limit(&paid(10_174)), Some(21_174));
        assert_eq!(p.credit_limit(&paid(5_000)), Some(15_000));
        assert_eq!(p.credit_limit(&paid(15_500)), Some(26_500));
        // Never below the next payment point, never past one interval unpaid.
        for bytes in (0..40_000).step_by(97) {
            let funds = paid(bytes);
            let limit = p.credit_limit(&funds).unwrap();
            assert!(limit >= p.next_payment_point(&funds).unwrap());
            assert_eq!(limit - bytes, p.interval_at(bytes));
        }
        // Free deals have none; an unpaid unseal price leaves the first interval.
        assert_eq!(params(0, 10_000, 1_000).credit_limit(&paid(5)), None);
        let mut unseal = params(1, 1000, 100);
        unseal.unseal_price = TokenAmount::from_atto(200u64);
        assert_eq!(unseal.credit_limit(&TokenAmount::zero()), Some(1000));
        assert_eq!(
            unseal.credit_limit(&TokenAmount::from_atto(700u64)),
            Some(1500)
        );
        // Huge positions saturate instead of overflowing.
        let tiny = params(1, 1, 0);
        assert_eq!(
            tiny.credit_limit(&TokenAmount::from_atto(u64::MAX)),
            Some(u64::MAX)
        );
    }

    #[test]
    fn zero_price_never_stops_and_never_divides_by_zero() {
        let p = params(0, 10_000, 1_000);
        assert_eq!(p.next_payment_point(&TokenAmount::zero()), None);
        assert_eq!(p.bytes_paid_for(&TokenAmount::from_atto(5u64)), 0);
        assert!(
            p.outstanding_balance(&TokenAmount::zero(), 1 << 40, true)
                .is_zero()
        );
        assert!(vouchers(&p, &lorem_blocks()).is_empty());
        assert!(p.is_free());
    }

    #[test]
    fn unseal_price_comes_first() {
        let mut p = params(1, 1000, 100);
        p.unseal_price = TokenAmount::from_atto(200u64);
        assert_eq!(
            p.outstanding_balance(&TokenAmount::zero(), 0, false),
            TokenAmount::from_atto(200u64)
        );
        assert_eq!(
            p.outstanding_balance(&TokenAmount::from_atto(150u64), 0, false),
            TokenAmount::from_atto(50u64)
        );
        assert_eq!(p.bytes_paid_for(&TokenAmount::from_atto(1200u64)), 1000);
        assert_eq!(
            p.next_payment_point(&TokenAmount::from_atto(1200u64)),
            Some(2100)
        );
        assert_eq!(
            p.client_owes(1000, &TokenAmount::from_atto(200u64)),
            TokenAmount::from_atto(1000u64)
        );
    }

    #[test]
    fn hostile_terms_are_rejected_and_never_make_data_free() {
        let negative = params(0, 10, 0);
        let negative = Params {
            price_per_byte: TokenAmount::from_atto(-1),
            ..negative
        };
        assert!(negative.validate().is_err());
        // even unvalidated, a negative price pays for no bytes
        assert_eq!(negative.bytes_paid_for(&TokenAmount::from_atto(1u64)), 0);
        let mut neg_unseal = params(1, 10, 0);
        neg_unseal.unseal_price = TokenAmount::from_atto(-5);
        assert!(neg_unseal.validate().is_err());
        assert!(params(1, 0, 0).validate().is_err());
        assert!(params(0, 0, 0).validate().is_ok());
        assert!(params(1000, 10_000, 1_000).validate().is_ok());
    }

    #[test]
    fn degenerate_intervals() {
        let p = params(1, 0, 0);
        assert_eq!(p.next_interval(5), u64::MAX);
        assert_eq!(p.interval_lower_bound(5), 0);
        let huge = params(1, 1, 0);
        assert_eq!(huge.next_interval(u64::MAX - 1), u64::MAX);
        assert_eq!(huge.next_interval(u64::MAX), u64::MAX);
        assert_eq!(huge.interval_lower_bound(1 << 50), 1 << 50);
    }
}
