//! The deal's money: vouchers taken from the client's messages and saved beside the read
//! in flight, what a saved voucher covers (a stop is over once the credit limit the new
//! funds give is past what was sent), and where payment is asked for early.

use std::time::Instant;

use rm_types::{DealError, NodeError, TokenAmount};

use super::{ProviderAction, ProviderDeal, Saving};
use crate::fsm::{PaymentLane, ProviderEvent, ProviderStatus as S};

/// Vouchers in a row that pay nothing new before the deal fails: an honest client sends its
/// last voucher again at most once per request it cannot add to, and each voucher costs
/// the provider a signature check and a ledger read.
const MAX_VOUCHERS_FOR_NOTHING: u32 = 16;

impl ProviderDeal {
    /// The result of [`ProviderAction::SaveVoucher`]: the amount newly received (zero
    /// for a voucher already saved).
    pub fn handle_voucher_saved(&mut self, now: Instant, result: Result<TokenAmount, NodeError>) {
        let Some(Saving { lane, amount }) = self.saving.take() else {
            return;
        };
        let delta = match result {
            Ok(delta) => delta,
            Err(_) if self.ending() => return self.drive(now),
            Err(e) => return self.fail(now, DealError::payment(e)),
        };
        if self.ending() {
            // Saved while the deal ends: the money is recorded, nothing more is sent.
            if delta.is_positive() {
                self.apply(
                    now,
                    ProviderEvent::PartialPaymentReceived {
                        received: delta,
                        lane,
                    },
                );
            }
            return self.drive(now);
        }
        let state = &self.snapshot.state;
        // A lane pays one deal, so its cumulative amount is what this deal received. A
        // voucher saved before a crash comes back with a zero delta: the deal is credited
        // what is above what it has. That holds for its first voucher too (the crash came
        // before the deal recorded its lane): the save just checked that the lane pays no
        // other deal and bound it to this one.
        let received = if delta.is_positive() {
            delta
        } else {
            (&amount - &state.funds_received).clamp_non_negative()
        };
        if received.is_zero() && state.lane.is_some() {
            // A voucher already counted (sent twice, or again after a reconnect): the
            // request already out stands. Asking again would only race the client's next
            // voucher, and a client that already paid takes a second request as a
            // provider asking for what it has.
            self.vouchers_for_nothing += 1;
            if self.vouchers_for_nothing > MAX_VOUCHERS_FOR_NOTHING {
                return self.fail(
                    now,
                    DealError::protocol(format!(
                        "{} vouchers in a row paid nothing new",
                        self.vouchers_for_nothing
                    )),
                );
            }
            return self.drive(now);
        }
        self.vouchers_for_nothing = 0;
        let mut after = state.clone();
        after.funds_received = &after.funds_received + &received;
        let finishing = state.status == S::FundsNeededLastPayment;
        let status = state.status;
        self.asked_early = false;
        let covered = match status {
            // Paid while blocks go out (asked early): counted, and they go on.
            S::Ongoing => true,
            // Going on needs room under the credit limit the new funds give.
            S::FundsNeeded => {
                let params = &after.proposal.params;
                params
                    .credit_limit(&after.funds_received)
                    .is_none_or(|limit| after.bytes_sent < limit)
            }
            _ => !self.owed(&after, finishing).is_positive(),
        };
        if covered {
            if status != S::Ongoing {
                self.asked_at = None;
            }
            self.apply(now, ProviderEvent::PaymentReceived { received, lane });
        } else {
            let owed = self.owed(&after, finishing);
            if self.apply(
                now,
                ProviderEvent::PartialPaymentReceived { received, lane },
            ) {
                let mut r = self.response(status.wire());
                r.payment_owed = owed;
                self.send(r);
            }
        }
        self.drive(now);
    }

    /// Takes the payment that arrived, if the deal is waiting for one or sending blocks
    /// (a payment asked for early, or one the client makes for what it verified), and no
    /// other voucher is being saved.
    pub(super) fn take_payment(&mut self, now: Instant) {
        if !self.takes_payment() {
            return;
        }
        let Some(payment) = self.early_payment.take() else {
            return;
        };
        let state = &self.snapshot.state;
        if payment.id != self.id {
            return self.fail(
                now,
                DealError::protocol(format!(
                    "payment for deal {} on this deal's stream",
                    payment.id.0
                )),
            );
        }
        let Some(voucher) = payment.payment_voucher else {
            return self.fail(now, DealError::protocol("payment without a voucher"));
        };
        let lane = PaymentLane {
            channel: payment.payment_channel,
            lane: voucher.lane,
        };
        if state.lane.as_ref().is_some_and(|known| known != &lane) {
            return self.fail(
                now,
                DealError::payment("voucher on another lane than the deal's"),
            );
        }
        if !voucher.merges.is_empty() {
            // A merge moves value between lanes; a lane's amount would no longer be what
            // this deal was paid.
            return self.fail(
                now,
                DealError::payment("vouchers with merges are not accepted"),
            );
        }
        // While blocks go out, what every byte sent is worth.
        let finishing = matches!(state.status, S::Ongoing | S::FundsNeededLastPayment);
        let expected = self.owed(state, finishing);
        self.saving = Some(Saving {
            lane: lane.clone(),
            amount: voucher.amount.clone(),
        });
        self.actions.push_back(ProviderAction::SaveVoucher {
            channel: lane.channel,
            voucher: Box::new(voucher),
            expected,
        });
    }

    /// Whether a payment that arrived is taken now: the deal sends blocks or waits for
    /// money, and no other voucher is being saved.
    pub(super) fn takes_payment(&self) -> bool {
        self.saving.is_none()
            && matches!(
                self.status(),
                S::Ongoing | S::FundsNeeded | S::FundsNeededLastPayment | S::FundsNeededUnseal
            )
    }

    /// Whether a voucher from the client is being saved or waits to be: at the credit
    /// limit the provider then waits for it instead of asking for money it may bring.
    pub(super) fn voucher_on_hand(&self) -> bool {
        self.saving.is_some() || self.early_payment.is_some()
    }

    /// Where payment is asked for early in the current interval, unless it was already or
    /// a voucher is on its way: halfway through an interval of at least
    /// [`DealConfig::ask_early_from`] bytes.
    pub(super) fn early_point(
        &self,
        params: &rm_types::Params,
        funds: &TokenAmount,
    ) -> Option<u64> {
        if self.asked_early || self.voucher_on_hand() {
            return None;
        }
        let least = self.config.ask_early_from?;
        let limit = params.credit_limit(funds)?;
        let paid = params.bytes_paid_for(funds);
        let interval = limit.saturating_sub(paid);
        (interval >= least).then(|| paid.saturating_add(interval / 2))
    }
}
