//! What must hold after every step of the pair and at its end.

use super::*;

impl Sim {
    /// The invariants that hold after every step.
    pub(super) fn check(&self) -> Result<(), String> {
        let p = &self.params;
        for (who, c) in [
            ("client", self.client.as_ref().map(|c| c.state())),
            ("client disk", Some(&self.client_disk.state)),
        ] {
            let Some(c) = c else { continue };
            if c.funds_spent > p.amount_for_bytes(c.bytes_received) {
                return Err(format!(
                    "{who} paid {} for {} verified bytes",
                    c.funds_spent, c.bytes_received
                ));
            }
            if c.funds_spent > c.total_funds {
                return Err(format!(
                    "{who} paid {} over its budget {}",
                    c.funds_spent, c.total_funds
                ));
            }
        }
        let client = self
            .client
            .as_ref()
            .map(|c| c.state())
            .unwrap_or(&self.client_disk.state);
        if let Some(state) = self
            .provider
            .as_ref()
            .map(|p| p.state())
            .or(self.provider_disk.as_ref().map(|d| &d.state))
        {
            // Credit: never more than what is paid for plus one interval (the block that
            // crosses the credit limit included).
            if let Some(limit) = p.credit_limit(&state.funds_received) {
                let paid = p.bytes_paid_for(&state.funds_received);
                let allowed = limit.saturating_add(self.max_block);
                if state.bytes_sent > allowed {
                    return Err(format!(
                        "provider sent {} bytes with {paid} paid for (limit {allowed})",
                        state.bytes_sent
                    ));
                }
            }
            // Counted once: what the provider received is what the ledger redeemed on the
            // deal's lane, and never more than the client made.
            if let Some(lane) = &state.lane {
                let redeemed = self
                    .ledger
                    .lane(&lane.channel, lane.lane)
                    .unwrap()
                    .map(|l| l.redeemed)
                    .unwrap_or_default();
                if state.funds_received > redeemed {
                    return Err(format!(
                        "provider counted {} but the lane redeemed {redeemed}",
                        state.funds_received
                    ));
                }
            }
            if state.funds_received > client.funds_spent && !self.faults.dishonest() {
                return Err(format!(
                    "provider counted {} but the client spent {}",
                    state.funds_received, client.funds_spent
                ));
            }
            let sum = state
                .received
                .iter()
                .fold(TokenAmount::zero(), |a, b| &a + b);
            if sum != state.funds_received {
                return Err(format!(
                    "provider's received amounts add up to {sum}, not {}",
                    state.funds_received
                ));
            }
        }
        Ok(())
    }

    /// The invariants of a deal that has ended on both sides.
    pub(super) fn check_end(&self) -> Result<(), String> {
        let whole = self.params.amount_for_bytes(self.total_bytes);
        let client = self
            .client
            .as_ref()
            .map(|c| c.state())
            .unwrap_or(&self.client_disk.state);
        if self.client_outcome == Some(Outcome::Completed) {
            if client.bytes_received != self.total_bytes || client.funds_spent != whole {
                return Err(format!(
                    "client completed with {} of {} bytes, paid {} of {whole}",
                    client.bytes_received, self.total_bytes, client.funds_spent
                ));
            }
            // Every selected block is in the client's store, verified.
            for block in BlockReader::new(&self.client_store, self.root, &self.selector).unwrap() {
                block.map_err(|e| format!("client's store after completion: {e}"))?;
            }
        }
        if self.provider_outcome == Some(Outcome::Completed)
            && let Some(state) = self.provider.as_ref().map(|p| p.state())
            && (state.bytes_sent != self.total_bytes || state.funds_received != whole)
        {
            return Err(format!(
                "provider completed with {} of {} bytes sent, {} of {whole} received",
                state.bytes_sent, self.total_bytes, state.funds_received
            ));
        }
        if !self.faults.dishonest() && self.client_outcome != self.provider_outcome {
            return Err(format!(
                "the sides disagree: client {:?} ({}), provider {:?} ({})",
                self.client_outcome,
                client.message(),
                self.provider_outcome,
                self.provider
                    .as_ref()
                    .map(|p| p.state().message())
                    .unwrap_or_default(),
            ));
        }
        Ok(())
    }
}
