//! The core's decisions: how events are applied and persisted, what each provider
//! response means, and what the deal does next from where it stands.

use super::*;

impl ClientDeal {
    /// Applies `event` to the record and asks for it to be persisted; false (and the deal
    /// errors) if the table refuses it, which is a bug of this core.
    pub(super) fn apply(&mut self, now: Instant, event: ClientEvent) -> bool {
        match step(fsm::table(), &self.snapshot, &event) {
            Ok(next) => {
                if next.state.status != self.snapshot.state.status {
                    self.progress_at = now;
                }
                self.snapshot = next;
                self.persist(event);
                true
            }
            Err(Rejection::Final) => false,
            Err(Rejection::Invalid(invalid)) => {
                let error = ClientEvent::Errored(DealError::internal(invalid));
                if let Ok(next) = step(fsm::table(), &self.snapshot, &error) {
                    self.snapshot = next;
                    self.persist(error);
                }
                false
            }
        }
    }

    /// Applies verified blocks (`BlocksReceived`): written at once only when the progress
    /// not yet written reaches `progress_write_bytes`; otherwise only published, and
    /// written with the next event that is (every `Persist` carries the whole snapshot).
    pub(super) fn apply_progress(&mut self, now: Instant, event: ClientEvent, bytes: u64) -> bool {
        self.unwritten = self.unwritten.saturating_add(bytes);
        if self.unwritten >= self.config.progress_write_bytes {
            return self.apply(now, event);
        }
        match step(fsm::table(), &self.snapshot, &event) {
            Ok(next) => {
                self.snapshot = next;
                let snapshot = Box::new(self.snapshot.clone());
                self.actions
                    .push_back(ClientAction::Publish { event, snapshot });
                true
            }
            // Refused: `apply` turns it into the error and writes that.
            Err(_) => self.apply(now, event),
        }
    }

    /// Asks for the snapshot to be persisted. Events applied one after the other with no
    /// effect between them are written together, as one snapshot: a crash cannot come
    /// between them (verified blocks and "that was the last block" are one write).
    pub(super) fn persist(&mut self, event: ClientEvent) {
        self.unwritten = 0;
        let snapshot = Box::new(self.snapshot.clone());
        // The pending write, not carried out yet, is folded into this one: its event is
        // only published.
        if let Some(last) = self.actions.back_mut()
            && let ClientAction::Persist {
                event: pending_event,
                snapshot: pending,
            } = last
        {
            *last = ClientAction::Publish {
                event: pending_event.clone(),
                snapshot: pending.clone(),
            };
        }
        self.actions
            .push_back(ClientAction::Persist { event, snapshot });
    }

    /// Ends the deal as failed: the provider is told (when the stream is up), then
    /// `Errored`.
    pub(super) fn fail(&mut self, now: Instant, error: DealError) {
        if self.status().is_final() {
            return;
        }
        self.apply(now, ClientEvent::Failed(error));
        self.drive(now);
    }

    pub(super) fn send(&mut self, message: Outbound) {
        self.actions.push_back(ClientAction::Send(message));
    }

    /// Handles the next pending response, unless its blocks are being verified.
    pub(super) fn next_response(&mut self, now: Instant) {
        while self.verifying.is_none() && !self.finished && !self.status().is_final() {
            let Some(mut response) = self.pending.pop_front() else {
                break;
            };
            if self.status() == S::Cancelling && response.status == DealStatus::Completed {
                // The provider completed the deal before the cancel reached it: the last
                // blocks (paid for already) are taken, and the deal completes.
                self.completing = true;
            }
            if matches!(self.status(), S::Failing | S::Cancelling) && !self.completing {
                // Blocks the provider sent before it read the cancel: not kept.
                response.blocks.clear();
            }
            if !response.blocks.is_empty() {
                let status = self.status();
                let receiving = status.before_channel() || status == S::Ongoing || self.completing;
                if !receiving || self.snapshot.state.all_blocks_received {
                    return self.fail(
                        now,
                        DealError::protocol(format!("blocks while the deal is {status}")),
                    );
                }
                let blocks = std::mem::take(&mut response.blocks);
                let bytes = blocks.iter().map(|b| b.data.len() as u64).sum();
                self.verifying = Some((blocks.len() as u64, bytes));
                self.actions.push_back(ClientAction::Verify(blocks));
                // The status part waits for the verification.
                self.pending.push_front(response);
                return;
            }
            self.on_status(now, response);
        }
        self.drive(now);
    }

    /// What a response's status means, once its blocks (if any) are verified.
    pub(super) fn on_status(&mut self, now: Instant, response: DealResponse) {
        let state = &self.snapshot.state;
        let status = state.status;
        let all = state.all_blocks_received;
        if matches!(status, S::Failing | S::Cancelling) {
            // The provider's answer to the cancel (or to a stream resumed to deliver it).
            let event = match response.status {
                DealStatus::Cancelled | DealStatus::Cancelling => ClientEvent::Closed,
                _ if status == S::Failing => ClientEvent::Closed,
                DealStatus::Completed if all => ClientEvent::Completed,
                DealStatus::Errored
                | DealStatus::Failing
                | DealStatus::Rejected
                | DealStatus::DealNotFound
                | DealStatus::Completed => ClientEvent::Errored(DealError::peer(&response.message)),
                // Anything else (the acceptance on a resumed stream): the cancel follows.
                _ => return,
            };
            self.apply(now, event);
            return;
        }
        let owed = response.payment_owed.clone();
        if response.status == DealStatus::Unsealing {
            // The provider still unseals: progress, for at most `max_unseal_wait`.
            let since = *self.unsealing_since.get_or_insert(now);
            if now <= since + self.config.max_unseal_wait {
                self.progress_at = now;
            }
        }
        match response.status {
            DealStatus::Accepted
            | DealStatus::Ongoing
            | DealStatus::Unsealing
            | DealStatus::Unsealed => {
                if status == S::WaitForAcceptance {
                    self.apply(now, ClientEvent::Accepted(TokenAmount::zero()));
                } else if response.status == DealStatus::Ongoing
                    && owed.is_positive()
                    && status == S::Ongoing
                {
                    self.pay_early();
                }
            }
            DealStatus::FundsNeededUnseal if status == S::WaitForAcceptance => {
                // The provider asked on this stream; it is paid once the channel is ready.
                self.asked_on_stream = true;
                self.apply(now, ClientEvent::Accepted(owed));
            }
            DealStatus::FundsNeeded
            | DealStatus::FundsNeededUnseal
            | DealStatus::FundsNeededLastPayment => {
                let last = response.status == DealStatus::FundsNeededLastPayment;
                if status == S::WaitForAcceptance {
                    return self.fail(
                        now,
                        DealError::protocol("a payment request before acceptance"),
                    );
                }
                if last && !all {
                    return self.fail(
                        now,
                        DealError::protocol(
                            "provider asked for the last payment before sending every block",
                        ),
                    );
                }
                if !last && response.status == DealStatus::FundsNeeded && self.request_is_paid() {
                    // Made before an early voucher on this stream arrived, which moves the
                    // provider's credit past what it sent: the blocks go on without more.
                    return;
                }
                self.asked_on_stream = true;
                let event = if all {
                    ClientEvent::LastPaymentRequested(owed)
                } else {
                    ClientEvent::PaymentRequested(owed)
                };
                self.apply(now, event);
            }
            DealStatus::Completed => {
                if !all {
                    return self.fail(
                        now,
                        DealError::protocol(
                            "provider sent complete status without sending all data",
                        ),
                    );
                }
                self.apply(now, ClientEvent::Completed);
            }
            DealStatus::Rejected if status == S::WaitForAcceptance => {
                self.apply(
                    now,
                    ClientEvent::Rejected(DealError::rejected(&response.message)),
                );
            }
            DealStatus::DealNotFound if status == S::WaitForAcceptance => {
                self.apply(
                    now,
                    ClientEvent::NotFound(DealError::not_found(&response.message)),
                );
            }
            DealStatus::Errored | DealStatus::Failing => {
                self.apply(
                    now,
                    ClientEvent::Errored(DealError::peer(&response.message)),
                );
            }
            DealStatus::Cancelled | DealStatus::Cancelling => {
                self.apply(now, ClientEvent::ProviderCancelled(response.message));
            }
            other => {
                self.fail(
                    now,
                    DealError::protocol(format!(
                        "unexpected deal response status {} while {status}",
                        other.short_name()
                    )),
                );
            }
        }
    }

    /// Issues whatever the deal's status calls for, unless something is in flight. Runs
    /// after every input; what it does depends only on the state, so running it twice
    /// does nothing twice.
    pub(super) fn drive(&mut self, now: Instant) {
        loop {
            if self.finished {
                return;
            }
            let status = self.status();
            if status.is_final() {
                if self.conn != Conn::Down {
                    self.actions.push_back(ClientAction::Close);
                    self.conn = Conn::Down;
                }
                let outcome = self.snapshot.state.outcome().unwrap_or(Outcome::Failed);
                self.actions.push_back(ClientAction::Finished(outcome));
                self.finished = true;
                return;
            }
            let before = self.snapshot.seq;
            match status {
                S::New | S::WaitForAcceptance | S::BlocksComplete | S::Finalizing => {
                    self.connect();
                }
                S::Accepted => {
                    self.connect();
                    if self.call.is_none() {
                        let state = &self.snapshot.state;
                        if state.proposal.params.is_free() {
                            self.apply(now, ClientEvent::ChannelSkipped);
                        } else {
                            self.call = Some(Call::Channel);
                            self.actions.push_back(ClientAction::SetupChannel {
                                client: state.client_wallet.clone(),
                                miner: state.miner_wallet.clone(),
                                funds: state.total_funds.clone(),
                            });
                        }
                    }
                }
                S::PaymentChannelCreating
                | S::PaymentChannelAddingInitialFunds
                | S::PaymentChannelAddingFunds => {
                    if status != S::PaymentChannelAddingFunds {
                        self.connect();
                    }
                    if self.call.is_none() {
                        match self.snapshot.state.wait_msg {
                            Some(wait) => {
                                self.call = Some(Call::Channel);
                                self.actions.push_back(ClientAction::WaitChannel(wait));
                            }
                            None => {
                                return self.fail(
                                    now,
                                    DealError::internal("no channel message to wait for"),
                                );
                            }
                        }
                    }
                }
                S::PaymentChannelAllocatingLane => {
                    self.connect();
                    if self.call.is_none() {
                        match &self.snapshot.state.payment_info {
                            Some(info) => {
                                self.call = Some(Call::Channel);
                                let channel = info.pay_ch.clone();
                                self.actions.push_back(ClientAction::AllocateLane(channel));
                            }
                            None => {
                                return self.fail(now, DealError::internal("no payment channel"));
                            }
                        }
                    }
                }
                S::Ongoing => {
                    let state = &self.snapshot.state;
                    if state.payment_requested.is_positive() {
                        // A request that came while the channel was set up or topped up.
                        let owed = state.payment_requested.clone();
                        let event = if state.last_payment_requested {
                            ClientEvent::LastPaymentRequested(owed)
                        } else {
                            ClientEvent::PaymentRequested(owed)
                        };
                        self.apply(now, event);
                    } else {
                        self.connect();
                    }
                }
                S::FundsNeeded | S::FundsNeededLastPayment => {
                    self.connect();
                    if self.conn == Conn::Up && self.asked_on_stream && self.call.is_none() {
                        self.pay(now);
                    }
                }
                S::CheckFunds => {
                    if self.call.is_none() {
                        match &self.snapshot.state.payment_info {
                            Some(info) => {
                                self.call = Some(Call::Funds);
                                let channel = info.pay_ch.clone();
                                self.actions.push_back(ClientAction::CheckFunds(channel));
                            }
                            None => {
                                return self.fail(now, DealError::internal("no payment channel"));
                            }
                        }
                    }
                }
                S::InsufficientFunds => {
                    // Waits for add_funds or cancel; the stream stays as it is.
                }
                S::Failing | S::Cancelling => {
                    if status == S::Cancelling && self.cancelled_at.is_none() {
                        self.cancelled_at = Some(now);
                    }
                    self.close(now);
                }
                S::Completed | S::Errored | S::Rejected | S::DealNotFound | S::Cancelled => {}
            }
            if self.snapshot.seq == before {
                return;
            }
        }
    }

    /// Asks for a stream when there is none and it is time to. Not while blocks are being
    /// verified: the new stream's proposal tells the provider where to resume, which must
    /// count them (verification ends by driving the deal again).
    pub(super) fn connect(&mut self) {
        if self.conn == Conn::Down && self.retry_at.is_none() && self.verifying.is_none() {
            self.conn = Conn::Connecting;
            self.actions.push_back(ClientAction::Connect);
        }
    }

    /// Answers the provider's payment request.
    pub(super) fn pay(&mut self, now: Instant) {
        let state = &self.snapshot.state;
        let mut owed = state.payment_requested.clone();
        let Some(info) = state.payment_info.clone() else {
            return self.fail(
                now,
                DealError::protocol("payment requested for a deal without a payment channel"),
            );
        };
        let mut resent = self.resent;
        if self.paid_early {
            // The request may have been made before an early voucher arrived: it is paid
            // with what the verified bytes are worth, or the last voucher again when
            // nothing more is due, and never more.
            let due = state
                .proposal
                .params
                .client_owes(state.bytes_received, &state.funds_spent);
            owed = owed.min(due);
            resent = false;
        }
        match decide_payment(state, &owed, resent) {
            Payment::Pay(total) => {
                self.call = Some(Call::Voucher(total.clone()));
                self.actions.push_back(ClientAction::CreateVoucher {
                    channel: info.pay_ch,
                    lane: info.lane,
                    amount: total,
                });
            }
            Payment::Resend => {
                let Some(voucher) = state.last_voucher.clone() else {
                    return self.fail(now, DealError::internal("no voucher to send again"));
                };
                let total = state.funds_spent.clone();
                self.resent = true;
                self.asked_on_stream = false;
                let payment = DealPayment {
                    id: self.id,
                    payment_channel: info.pay_ch,
                    payment_voucher: Some(voucher.clone()),
                };
                if self.apply(now, ClientEvent::PaymentSent { voucher, total }) {
                    self.send(Outbound::Payment(payment));
                }
            }
            Payment::Refuse(reason) => self.fail(now, DealError::protocol(reason)),
            Payment::OverBudget(short) => {
                self.apply(now, ClientEvent::VoucherShortfall(short));
            }
        }
    }

    /// Whether the vouchers already sent on this stream, once the provider has them, leave
    /// it room to send more than the client has received: a stop request then crossed an
    /// early voucher on the way and needs no answer. The provider decides the same way
    /// with the same numbers (`Params::credit_limit` of the cumulative amount).
    fn request_is_paid(&self) -> bool {
        let state = &self.snapshot.state;
        self.paid_early
            && state
                .proposal
                .params
                .credit_limit(&state.funds_spent)
                .is_some_and(|limit| state.bytes_received < limit)
    }

    /// Answers an early request (an `Ongoing` response naming an amount) with a voucher for
    /// every verified byte, unless it cannot be paid at once: then the provider asks again
    /// when it stops, and the usual checks apply there.
    pub(super) fn pay_early(&mut self) {
        let state = &self.snapshot.state;
        if !self.config.pay_early || self.call.is_some() || state.all_blocks_received {
            return;
        }
        let Some(info) = &state.payment_info else {
            return;
        };
        let total = state.proposal.params.amount_for_bytes(state.bytes_received);
        if total > state.total_funds || total <= state.funds_spent {
            return;
        }
        self.call = Some(Call::EarlyVoucher(total.clone()));
        self.actions.push_back(ClientAction::CreateVoucher {
            channel: info.pay_ch.clone(),
            lane: info.lane,
            amount: total,
        });
    }

    /// Failing or cancelling: tell the provider on the stream, or on a new one when the
    /// deal is cancelled (a bounded number of tries), then end.
    pub(super) fn close(&mut self, now: Instant) {
        let failed = self.status() == S::Failing;
        match self.conn {
            Conn::Up if self.cancel_sent => {}
            Conn::Up => {
                let reason = match &self.snapshot.state.error {
                    Some(DealError::Cancelled { reason, .. }) => reason.clone(),
                    Some(error) => error.to_string(),
                    None => String::new(),
                };
                self.send(Outbound::Cancel(DealCancel {
                    id: self.id,
                    reason,
                    failed,
                }));
                // The provider answers with how the deal ended; then it is over.
                self.cancel_sent = true;
                self.heard_at = now;
            }
            Conn::Connecting => {}
            Conn::Down if !failed && self.status() != S::New => self.connect(),
            Conn::Down => {
                self.apply(now, ClientEvent::Closed);
            }
        }
    }
}
