//! Pure decisions of the client, kept apart from IO so they can be tested on their own.

use rm_types::TokenAmount;

use crate::fsm::ClientState;

/// What to do when the provider asks for money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payment {
    /// Make and send a voucher for this cumulative total.
    Pay(TokenAmount),
    /// Everything verified is paid for already: send the last voucher again (the provider
    /// may not have received it before a connection loss). Vouchers are cumulative, so the
    /// provider counts nothing twice.
    Resend,
    /// Refuse: the request is not owed. The reason becomes the deal's message.
    Refuse(String),
    /// The payment is owed but above the deal's budget (`TotalFunds`) by this much: wait for
    /// more funds.
    OverBudget(TokenAmount),
}

/// Decides how to answer a payment request for `owed`.
///
/// The client pays `verified bytes × price + unseal price` cumulatively — never for a byte
/// it has not verified, never at another price than agreed — and only if the provider does
/// not ask for more than that. `resent` says whether the last voucher was already re-sent on
/// the current stream (a second request for money that is not owed is refused).
pub fn decide_payment(deal: &ClientState, owed: &TokenAmount, resent: bool) -> Payment {
    let params = &deal.proposal.params;
    let total = params.amount_for_bytes(deal.bytes_received);
    let due = &total - &deal.funds_spent;
    if due.is_positive() {
        if owed > &due {
            return Payment::Refuse(format!(
                "provider asks for {owed}, but the {} verified bytes are worth only {due} more",
                deal.bytes_received
            ));
        }
        if total > deal.total_funds {
            // Pay what the budget allows if that covers what is asked.
            let allowed = &deal.total_funds - &deal.funds_spent;
            if allowed.is_positive() && &allowed >= owed {
                return Payment::Pay(deal.total_funds.clone());
            }
            return Payment::OverBudget(&total - &deal.total_funds);
        }
        return Payment::Pay(total);
    }
    if !resent && deal.funds_spent.is_positive() {
        return Payment::Resend;
    }
    Payment::Refuse(format!(
        "provider asks for {owed}, but every verified byte is paid for ({} spent)",
        deal.funds_spent
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rm_types::{Address, DealId, DealProposal, Params, PeerId, TokenAmount as T};

    fn deal(price: u64, unseal: u64, received: u64, spent: u64) -> ClientState {
        let mut params = Params::new(T::from_atto(price), 10_000, 1_000);
        params.unseal_price = T::from_atto(unseal);
        let cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
            .parse()
            .unwrap();
        let addr: Address = "f01000".parse().unwrap();
        let mut state = ClientState::new(
            DealProposal::new(cid, DealId(1), params),
            PeerId::default(),
            Vec::new(),
            addr.clone(),
            addr,
            T::from_atto(100_000_000u64),
        );
        state.bytes_received = received;
        state.funds_spent = T::from_atto(spent);
        state
    }

    #[test]
    fn pays_for_verified_bytes_only() {
        // lorem.txt's first payment point: 10,174 bytes verified, provider asks 10,000,000.
        let d = deal(1000, 0, 10_174, 0);
        assert_eq!(
            decide_payment(&d, &T::from_atto(10_000_000u64), false),
            Payment::Pay(T::from_atto(10_174_000u64))
        );
        // Asking for more than the verified bytes are worth is refused.
        assert!(matches!(
            decide_payment(&d, &T::from_atto(10_174_001u64), false),
            Payment::Refuse(_)
        ));
    }

    #[test]
    fn never_beyond_the_budget() {
        let mut d = deal(1000, 0, 10_174, 0);
        d.total_funds = T::from_atto(9_000_000u64);
        assert_eq!(
            decide_payment(&d, &T::from_atto(10_000_000u64), false),
            Payment::OverBudget(T::from_atto(1_174_000u64))
        );
        // What is asked fits the budget: pay the budget, not every verified byte.
        d.total_funds = T::from_atto(10_000_000u64);
        assert_eq!(
            decide_payment(&d, &T::from_atto(10_000_000u64), false),
            Payment::Pay(T::from_atto(10_000_000u64))
        );
    }

    #[test]
    fn the_unseal_price_comes_first() {
        let d = deal(1000, 100, 0, 0);
        assert_eq!(
            decide_payment(&d, &T::from_atto(100u64), false),
            Payment::Pay(T::from_atto(100u64))
        );
    }

    #[test]
    fn nothing_new_means_one_resend_then_refusal() {
        let d = deal(1000, 0, 10_174, 10_174_000);
        assert_eq!(
            decide_payment(&d, &T::from_atto(10_000_000u64), false),
            Payment::Resend
        );
        assert!(matches!(
            decide_payment(&d, &T::from_atto(10_000_000u64), true),
            Payment::Refuse(_)
        ));
        // Nothing ever paid: nothing to resend.
        let d = deal(1000, 0, 0, 0);
        assert!(matches!(
            decide_payment(&d, &T::from_atto(1u64), false),
            Payment::Refuse(_)
        ));
    }
}
