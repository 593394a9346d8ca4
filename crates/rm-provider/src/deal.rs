//! [`ProviderDeal`]: the sans-IO core of one provider deal.
//!
//! Like the client's core it decides everything and does nothing itself: inputs are
//! method calls with the time passed in, outputs are [`ProviderAction`]s taken with
//! [`ProviderDeal::poll_action`] and a deadline from [`ProviderDeal::poll_timeout`].
//!
//! The driver's contract:
//!
//! - Carry out actions in order; a [`ProviderAction::Persist`] is on disk before any later
//!   action (a deal is recorded `Completed` before `Completed` is written to the client).
//!   The exceptions: a [`ProviderAction::ReadBlocks`] or [`ProviderAction::SaveVoucher`]
//!   may start before the [`ProviderAction::Send`] queued ahead of it is written (neither
//!   has an effect the client or the journal sees; what a saved voucher changes is
//!   persisted by a later action, which waits for the write), so the disk read and the
//!   voucher check overlap the write.
//! - A voucher is saved beside the other request in flight: while blocks go out, a
//!   [`ProviderAction::SaveVoucher`] may be outstanding together with a
//!   [`ProviderAction::ReadBlocks`].
//! - Answer each request (`Locate`, `Decide`, `Unseal`, `ReadBlocks`, `CountBytes`,
//!   `SaveVoucher`) exactly once with its `handle_*` method.
//! - Read the client's next message only while [`ProviderDeal::wants_message`] is true;
//!   report a failed read or write with [`ProviderDeal::handle_stream_lost`].
//! - When the client comes back on a new stream, offer it with
//!   [`ProviderDeal::handle_resume`]: `Ok` means use the new stream from now on, `Err` is
//!   the response refusing it (written on the new stream, which is then closed).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rm_fsm::{Rejection, Snapshot, step};
use rm_types::{
    Ask, ClientMessage, DealError, DealId, DealPayment, DealProposal, DealResponse, DealStatus,
    Outcome, TokenAmount,
};

use crate::fsm::{self, PaymentLane, ProviderEvent, ProviderState, ProviderStatus as S};

mod io;
mod payments;

pub use io::{DealConfig, Finished, Located, ProviderAction, ReadBlocks, answer_finished};

/// A request in flight.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    Locate,
    Decide,
    Unseal,
    Read(u64),
    Count(rm_types::Resume),
}

/// A voucher being saved: its lane and amount. Saving runs beside the request in
/// flight, so that blocks keep being read while a voucher paid early is checked.
#[derive(Debug, Clone, PartialEq)]
struct Saving {
    lane: PaymentLane,
    amount: TokenAmount,
}

/// The sans-IO core of one provider deal (see the [module docs](self)).
#[derive(Debug)]
pub struct ProviderDeal {
    id: DealId,
    snapshot: Snapshot<ProviderState>,
    ask: Ask,
    config: DealConfig,
    /// Whether a stream is attached.
    attached: bool,
    /// Since when the deal has no stream.
    detached_at: Option<Instant>,
    /// Since when the deal waits for a payment.
    asked_at: Option<Instant>,
    /// Not before this instant is the next response read (the rate limit).
    next_send_at: Option<Instant>,
    /// When the client is next told that the unseal goes on.
    unsealing_at: Option<Instant>,
    pending: Option<Pending>,
    /// The voucher being saved, if any (at most one at a time).
    saving: Option<Saving>,
    /// Whether payment was asked for early in the current interval (an `Ongoing`
    /// response naming an amount); cleared by the next payment.
    asked_early: bool,
    /// Vouchers in a row that paid nothing new (bounded: see `deal/payments.rs`).
    vouchers_for_nothing: u32,
    /// A resume waiting for the request in flight to finish.
    resume: Option<rm_types::Resume>,
    /// A payment that arrived before it was asked for.
    early_payment: Option<DealPayment>,
    actions: VecDeque<ProviderAction>,
    finished: bool,
    /// Bytes of blocks sent applied to the snapshot since the last `Persist`.
    unwritten: u64,
    /// How far behind what was really sent the record may be, for a core restored from it:
    /// progress is written every `progress_write_bytes` or with the next payment, so up to
    /// that much plus one response may have gone out unwritten before a restart. A resume
    /// may claim that much more than the record; zero once a resume has set the totals
    /// (and for a core that never restarted, which knows exactly what it sent).
    forgotten: u64,
}

impl ProviderDeal {
    /// The core of a deal whose proposal just arrived on a stream (its record at `seq` 0,
    /// already persisted), judged against `ask`.
    pub fn new(
        id: DealId,
        state: ProviderState,
        ask: Ask,
        now: Instant,
        config: DealConfig,
    ) -> Self {
        let mut deal = Self::build(id, Snapshot { seq: 0, state }, ask, config);
        deal.attached = true;
        deal.drive(now);
        deal
    }

    /// The core of a deal from its last persisted snapshot (after a restart): it has no
    /// stream and waits for the client to resume within the resume window.
    pub fn restore(
        id: DealId,
        snapshot: Snapshot<ProviderState>,
        ask: Ask,
        now: Instant,
        config: DealConfig,
    ) -> Self {
        let forgotten = config
            .progress_write_bytes
            .saturating_add(config.max_response_bytes as u64);
        let mut deal = Self::build(id, snapshot, ask, config);
        deal.forgotten = forgotten;
        deal.detached_at = Some(now);
        deal.drive(now);
        deal
    }

    fn build(id: DealId, snapshot: Snapshot<ProviderState>, ask: Ask, config: DealConfig) -> Self {
        ProviderDeal {
            id,
            snapshot,
            ask,
            config,
            attached: false,
            detached_at: None,
            asked_at: None,
            next_send_at: None,
            unsealing_at: None,
            pending: None,
            saving: None,
            asked_early: false,
            vouchers_for_nothing: 0,
            resume: None,
            early_payment: None,
            actions: VecDeque::new(),
            finished: false,
            unwritten: 0,
            forgotten: 0,
        }
    }

    /// The deal's id (the client's).
    pub fn id(&self) -> DealId {
        self.id
    }

    /// The deal's current state.
    pub fn state(&self) -> &ProviderState {
        &self.snapshot.state
    }

    /// The deal's current snapshot.
    pub fn snapshot(&self) -> &Snapshot<ProviderState> {
        &self.snapshot
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<ProviderAction> {
        self.actions.pop_front()
    }

    /// When [`ProviderDeal::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(t) = self.detached_at {
            consider(t + self.config.resume_window);
        }
        if let Some(t) = self.asked_at {
            consider(t + self.config.payment_timeout);
        }
        if let Some(t) = self.next_send_at {
            consider(t);
        }
        if let Some(t) = self.unsealing_at {
            consider(t);
        }
        next
    }

    /// Whether the driver should read the client's next message.
    pub fn wants_message(&self) -> bool {
        !self.finished && self.attached && self.early_payment.is_none()
    }

    /// Whether the deal has ended.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn status(&self) -> S {
        self.snapshot.state.status
    }

    fn response(&self, status: DealStatus) -> DealResponse {
        DealResponse {
            status,
            id: self.id,
            payment_owed: TokenAmount::zero(),
            message: String::new(),
            blocks: Vec::new(),
        }
    }

    fn owed(&self, state: &ProviderState, finishing: bool) -> TokenAmount {
        let params = &state.proposal.params;
        if state.status == S::FundsNeededUnseal {
            (&params.unseal_price - &state.funds_received).clamp_non_negative()
        } else {
            params.outstanding_balance(&state.funds_received, state.bytes_sent, finishing)
        }
    }

    // ---- inputs ----

    /// The result of [`ProviderAction::Locate`].
    pub fn handle_located(&mut self, now: Instant, result: Result<Located, String>) {
        if self.pending.take() != Some(Pending::Locate) {
            return;
        }
        if self.ending() {
            // The deal is being cancelled or failed meanwhile: the result is moot.
            return self.drive(now);
        }
        match result {
            Ok(Located::Here) => {
                self.apply(now, ProviderEvent::Received);
            }
            Ok(Located::Nowhere) => {
                let error = DealError::not_found("not found");
                let mut r = self.response(DealStatus::DealNotFound);
                r.message = error.wire_message();
                if self.apply(now, ProviderEvent::NotFound(error)) {
                    self.send(r);
                }
            }
            Err(e) => {
                self.fail(
                    now,
                    DealError::storage(format!("looking up the payload: {e}")),
                );
                return;
            }
        }
        self.drive(now);
    }

    /// The custom decider's answer ([`ProviderAction::Decide`]).
    pub fn handle_decision(&mut self, now: Instant, decision: Result<(), String>) {
        if self.pending.take() != Some(Pending::Decide) {
            return;
        }
        if self.ending() {
            // The deal is being cancelled or failed meanwhile: the result is moot.
            return self.drive(now);
        }
        match decision {
            Ok(()) => self.accept(now),
            Err(reason) => self.reject(now, reason),
        }
        self.drive(now);
    }

    /// The result of [`ProviderAction::Unseal`].
    pub fn handle_unsealed(&mut self, now: Instant, result: Result<(), String>) {
        if self.pending.take() != Some(Pending::Unseal) {
            return;
        }
        self.unsealing_at = None;
        if self.ending() {
            // The deal is being cancelled or failed meanwhile: the result is moot.
            return self.drive(now);
        }
        match result {
            Ok(()) => {
                self.apply(now, ProviderEvent::Unsealed);
            }
            Err(e) => return self.fail(now, DealError::unseal(e)),
        }
        self.drive(now);
    }

    /// The result of [`ProviderAction::ReadBlocks`]: sends them, and asks for payment
    /// when they reach a payment point or the end.
    pub fn handle_read(&mut self, now: Instant, result: Result<ReadBlocks, String>) {
        let Some(Pending::Read(from)) = self.pending.take() else {
            return;
        };
        if self.ending() {
            // The deal is being cancelled or failed meanwhile: the result is moot.
            return self.drive(now);
        }
        // Read for a stream that is gone, or from before a resume: not sent, read again.
        if !self.attached || from != self.snapshot.state.blocks_sent || self.resume.is_some() {
            return self.drive(now);
        }
        let read = match result {
            Ok(read) => read,
            Err(e) => return self.fail(now, DealError::storage(format!("reading blocks: {e}"))),
        };
        let count = read.blocks.len() as u64;
        let bytes: u64 = read.blocks.iter().map(|b| b.data.len() as u64).sum();
        if count == 0 && !read.done {
            return self.fail(now, DealError::internal("the reader returned no block"));
        }
        let state = &self.snapshot.state;
        let sent = state.bytes_sent + bytes;
        let funds = state.funds_received.clone();
        let params = state.proposal.params.clone();
        if count > 0 {
            let event = ProviderEvent::BlocksSent {
                blocks: state.blocks_sent + count,
                bytes: sent,
            };
            if !self.apply_progress(now, event, bytes) {
                return;
            }
        }
        let mut response = self.response(DealStatus::Ongoing);
        response.blocks = read.blocks;
        if read.done {
            self.apply(now, ProviderEvent::BlocksCompleted);
            let owed = params.outstanding_balance(&funds, sent, true);
            if owed.is_positive() {
                self.apply(now, ProviderEvent::LastPaymentRequested);
                self.asked_at = Some(now);
                response.status = DealStatus::FundsNeededLastPayment;
                response.payment_owed = owed;
            } else {
                // Recorded before the client hears of it.
                self.apply(now, ProviderEvent::Completed);
                response.status = DealStatus::Completed;
            }
        } else if params
            .credit_limit(&funds)
            .is_some_and(|limit| sent >= limit)
            && !self.voucher_on_hand()
        {
            // (With a voucher being saved, these blocks go out as they are and the saved
            // voucher decides: on, or a request then.)
            self.apply(now, ProviderEvent::PaymentRequested);
            self.asked_at = Some(now);
            response.status = DealStatus::FundsNeeded;
            response.payment_owed = params.outstanding_balance(&funds, sent, false);
        } else if self.early_point(&params, &funds).is_some_and(|p| sent >= p) {
            // Half the interval is out: ask for everything sent so far, and go on.
            self.asked_early = true;
            response.payment_owed = params.outstanding_balance(&funds, sent, true);
        }
        self.send(response);
        if let Some(rate) = self.config.max_bytes_per_second.filter(|r| *r > 0) {
            self.next_send_at = Some(now + Duration::from_secs_f64(bytes as f64 / rate as f64));
        }
        self.drive(now);
    }

    /// The client's next message.
    pub fn handle_message(&mut self, now: Instant, message: ClientMessage) {
        if self.finished || !self.attached {
            return;
        }
        match message {
            ClientMessage::Cancel(cancel) => {
                if cancel.id != self.id {
                    return self.fail(
                        now,
                        DealError::protocol(format!(
                            "a cancel for deal {} on the stream of deal {}",
                            cancel.id.0, self.id.0
                        )),
                    );
                }
                let event = if cancel.failed {
                    ProviderEvent::Failed(DealError::peer(&cancel.reason))
                } else {
                    ProviderEvent::ClientCancelled(cancel.reason)
                };
                self.apply(now, event);
                self.drive(now);
            }
            ClientMessage::Payment(payment) => {
                if self.early_payment.is_some() {
                    return self.fail(
                        now,
                        DealError::protocol("the client sent payments it was not asked for"),
                    );
                }
                self.early_payment = Some(*payment);
                self.drive(now);
            }
        }
    }

    /// The client is back on a new stream with `proposal` (carrying how far it got).
    /// `Ok`: the driver uses the new stream from now on (the old one is dropped). `Err`:
    /// the response refusing it; the deal is unchanged, unless it was resumed
    /// [`DealConfig::max_resumes`] times already: then it fails.
    pub fn handle_resume(
        &mut self,
        now: Instant,
        proposal: &DealProposal,
    ) -> Result<(), DealResponse> {
        if self.finished {
            let mut r = self.response(self.status().wire());
            r.message = self.snapshot.state.message();
            return Err(r);
        }
        let stored = &self.snapshot.state.proposal;
        if stored.payload_cid != proposal.payload_cid || stored.params != proposal.params {
            return Err(self.refusal("the resumed proposal differs from the deal's".into()));
        }
        // A deal that is ending takes the stream whatever the count: the client comes back
        // to hear that its cancel (or the failure) is through, and the deal ends then.
        if self.snapshot.state.resumes >= u64::from(self.config.max_resumes) && !self.ending() {
            let message = format!(
                "the deal was resumed {} times, the most allowed",
                self.snapshot.state.resumes
            );
            self.fail(now, DealError::protocol(&message));
            return Err(self.refusal(message));
        }
        let claim = proposal.resume.unwrap_or_default();
        let sent = &self.snapshot.state;
        // Blocks the record does not count can only be claimed after a restart, and only
        // as many bytes as may have gone out unwritten (the claim's bytes are then checked
        // against the DAG).
        if claim.blocks > sent.blocks_sent
            && (self.forgotten == 0 || claim.bytes > sent.bytes_sent.saturating_add(self.forgotten))
        {
            return Err(self.refusal(format!(
                "the client claims {} blocks, {} were sent",
                claim.blocks, self.snapshot.state.blocks_sent
            )));
        }
        // The old stream, and whatever was queued for it, is gone.
        self.actions.retain(|a| {
            !matches!(
                a,
                ProviderAction::Send(_) | ProviderAction::Close | ProviderAction::Reset
            )
        });
        self.attached = true;
        self.detached_at = None;
        self.early_payment = None;
        self.asked_early = false;
        self.resume = Some(claim);
        self.drive(now);
        Ok(())
    }

    /// Whether the deal is ending (cancelling, failing) or over.
    fn ending(&self) -> bool {
        let status = self.status();
        status.is_final() || matches!(status, S::Failing | S::Cancelling)
    }

    fn refusal(&self, message: String) -> DealResponse {
        let mut r = self.response(DealStatus::Errored);
        r.message = message;
        r
    }

    /// The result of [`ProviderAction::CountBytes`] for a resume claim.
    pub fn handle_counted(&mut self, now: Instant, result: Result<u64, String>) {
        let Some(Pending::Count(claim)) = self.pending.take() else {
            return;
        };
        if self.ending() {
            // The deal is being cancelled or failed meanwhile: the result is moot.
            return self.drive(now);
        }
        if !self.attached {
            // That stream is gone too; wait for the next resume.
            return self.drive(now);
        }
        match result {
            Ok(bytes) if bytes == claim.bytes => self.resumed(now, claim),
            Ok(bytes) => self.fail(
                now,
                DealError::protocol(format!(
                    "the client claims {} bytes in its first {} blocks; they hold {bytes}",
                    claim.bytes, claim.blocks
                )),
            ),
            Err(e) => self.fail(now, DealError::storage(format!("counting bytes: {e}"))),
        }
    }

    /// The stream broke: the deal waits for the client to resume.
    pub fn handle_stream_lost(&mut self, now: Instant) {
        if !self.attached {
            return;
        }
        self.detach(now);
        self.drive(now);
    }

    /// The client sent bytes that are no valid message (malformed, or over a size cap): a
    /// protocol violation. The stream is gone (the driver resets it) and the deal fails at
    /// once instead of waiting for a resume, so the slot is free again.
    pub fn handle_bad_message(&mut self, now: Instant, reason: impl std::fmt::Display) {
        if self.finished || !self.attached {
            return;
        }
        self.detach(now);
        match self.status() {
            // Ending already: nothing more to tell a client that broke the protocol.
            S::Failing | S::Cancelling => self.drive(now),
            _ => self.fail(
                now,
                DealError::protocol(format!("the client sent a bad message: {reason}")),
            ),
        }
    }

    /// Forgets the stream and everything queued for it or read from it.
    fn detach(&mut self, now: Instant) {
        self.attached = false;
        self.detached_at = Some(now);
        self.early_payment = None;
        self.asked_early = false;
        self.resume = None;
        self.actions.retain(|a| {
            !matches!(
                a,
                ProviderAction::Send(_) | ProviderAction::Close | ProviderAction::Reset
            )
        });
    }

    /// Time passed: a resume window or a payment deadline may be over, a rate limit lifted.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        if let Some(t) = self.detached_at
            && now >= t + self.config.resume_window
        {
            let error = DealError::timeout(format!(
                "the client did not resume the deal within {:?}",
                self.config.resume_window
            ));
            self.apply(now, ProviderEvent::Errored(error));
            return self.drive(now);
        }
        if let Some(t) = self.asked_at
            && now >= t + self.config.payment_timeout
        {
            self.asked_at = None;
            let error = DealError::timeout(format!(
                "no payment within {:?}",
                self.config.payment_timeout
            ));
            return self.fail(now, error);
        }
        if self.next_send_at.is_some_and(|t| now >= t) {
            self.next_send_at = None;
        }
        if self.unsealing_at.is_some_and(|t| now >= t) {
            self.tell_unsealing(now);
        }
        self.drive(now);
    }

    /// Tells the client the unseal goes on (a `DealResponse` with status `Unsealing` and
    /// nothing else), now and every [`DealConfig::unsealing_interval`] until it ends.
    fn tell_unsealing(&mut self, now: Instant) {
        if self.pending != Some(Pending::Unseal) || self.ending() {
            self.unsealing_at = None;
            return;
        }
        self.send(self.response(DealStatus::Unsealing));
        self.unsealing_at = Some(now + self.config.unsealing_interval);
    }

    /// The ask changed: a deal not decided yet is judged against the new one.
    pub fn set_ask(&mut self, ask: Ask) {
        self.ask = ask;
    }

    // ---- decisions ----

    fn apply(&mut self, _now: Instant, event: ProviderEvent) -> bool {
        match step(fsm::table(), &self.snapshot, &event) {
            Ok(next) => {
                self.snapshot = next;
                self.persist(event);
                true
            }
            Err(Rejection::Final) => false,
            Err(Rejection::Invalid(invalid)) => {
                let error = ProviderEvent::Errored(DealError::internal(invalid));
                if let Ok(next) = step(fsm::table(), &self.snapshot, &error) {
                    self.snapshot = next;
                    self.persist(error);
                }
                false
            }
        }
    }

    /// Applies blocks about to be sent (`BlocksSent`): written at once only when the
    /// progress not yet written reaches `progress_write_bytes`; otherwise only published,
    /// and written with the next event that is (a payment request or receipt, the last
    /// block, the end), since every `Persist` carries the whole snapshot.
    fn apply_progress(&mut self, now: Instant, event: ProviderEvent, bytes: u64) -> bool {
        self.unwritten = self.unwritten.saturating_add(bytes);
        if self.unwritten >= self.config.progress_write_bytes {
            return self.apply(now, event);
        }
        match step(fsm::table(), &self.snapshot, &event) {
            Ok(next) => {
                self.snapshot = next;
                let snapshot = Box::new(self.snapshot.clone());
                self.actions
                    .push_back(ProviderAction::Publish { event, snapshot });
                true
            }
            // Refused: `apply` turns it into the error and writes that.
            Err(_) => self.apply(now, event),
        }
    }

    /// Asks for the snapshot to be persisted; events with no effect between them are
    /// written together (blocks sent, "that was the last block" and `Completed` are one
    /// write, so a crash cannot come between them).
    fn persist(&mut self, event: ProviderEvent) {
        self.unwritten = 0;
        let snapshot = Box::new(self.snapshot.clone());
        // The pending write, not carried out yet, is folded into this one: its event is
        // only published.
        if let Some(last) = self.actions.back_mut()
            && let ProviderAction::Persist {
                event: pending_event,
                snapshot: pending,
            } = last
        {
            *last = ProviderAction::Publish {
                event: pending_event.clone(),
                snapshot: pending.clone(),
            };
        }
        self.actions
            .push_back(ProviderAction::Persist { event, snapshot });
    }

    fn send(&mut self, response: DealResponse) {
        if self.attached {
            self.actions.push_back(ProviderAction::Send(response));
        }
    }

    fn fail(&mut self, now: Instant, error: DealError) {
        self.pending = None;
        self.saving = None;
        self.apply(now, ProviderEvent::Failed(error));
        self.drive(now);
    }

    /// The ask checks (go-fil-markets `CheckDealParams`) and the selector.
    fn check_terms(&self) -> Result<(), String> {
        let params = &self.snapshot.state.proposal.params;
        let ask = &self.ask;
        params.validate().map_err(|e| e.to_string())?;
        if params.price_per_byte < ask.price_per_byte {
            return Err("Price per byte too low".into());
        }
        if params.payment_interval > ask.payment_interval {
            return Err("Payment interval too large".into());
        }
        if params.payment_interval_increase > ask.payment_interval_increase {
            return Err("Payment interval increase too large".into());
        }
        if params.unseal_price < ask.unseal_price {
            return Err("Unseal price too small".into());
        }
        crate::provider::dag_selector(params)?;
        Ok(())
    }

    fn reject(&mut self, now: Instant, reason: String) {
        let error = DealError::rejected(&reason);
        let mut r = self.response(DealStatus::Rejected);
        r.message = error.wire_message();
        if self.apply(now, ProviderEvent::Rejected(error)) {
            self.send(r);
        }
    }

    fn accept(&mut self, now: Instant) {
        let unseal = self.snapshot.state.proposal.params.unseal_price.clone();
        if unseal.is_positive() {
            if self.apply(now, ProviderEvent::UnsealPaymentRequested) {
                self.asked_at = Some(now);
                let mut r = self.response(DealStatus::FundsNeededUnseal);
                r.payment_owed = unseal;
                self.send(r);
            }
        } else if self.apply(now, ProviderEvent::Accepted) {
            self.send(self.response(DealStatus::Accepted));
        }
    }

    /// A resume claim checked: continue from the client's totals.
    fn resumed(&mut self, now: Instant, claim: rm_types::Resume) {
        let before = self.status();
        let event = ProviderEvent::Resumed {
            blocks: claim.blocks,
            bytes: claim.bytes,
        };
        if !self.apply(now, event) {
            return self.drive(now);
        }
        self.forgotten = 0;
        match before {
            S::New | S::WaitForAcceptance | S::Failing | S::Cancelling => {}
            S::FundsNeededUnseal => {
                let mut r = self.response(DealStatus::FundsNeededUnseal);
                r.payment_owed = self.owed(&self.snapshot.state, false);
                self.asked_at = Some(now);
                self.send(r);
            }
            // The stream starts with the acceptance again, so a client that never saw it
            // can go on; a client further along ignores it.
            _ => self.send(self.response(DealStatus::Accepted)),
        }
        self.drive(now);
    }

    /// Issues whatever the deal's status calls for, unless a request is in flight.
    fn drive(&mut self, now: Instant) {
        loop {
            if self.finished {
                return;
            }
            if self.status().is_final() {
                if self.attached {
                    self.actions.push_back(ProviderAction::Close);
                    self.attached = false;
                }
                let outcome = self.snapshot.state.outcome().unwrap_or(Outcome::Failed);
                self.actions.push_back(ProviderAction::Finished(outcome));
                self.finished = true;
                return;
            }
            // A payment is saved beside whatever else is in flight.
            if self.early_payment.is_some() && self.takes_payment() {
                self.take_payment(now);
                continue;
            }
            if self.pending.is_some() {
                return;
            }
            if let Some(claim) = self.resume.take() {
                if claim.blocks == 0 {
                    if claim.bytes != 0 {
                        return self.fail(
                            now,
                            DealError::protocol("the client claims bytes in no blocks"),
                        );
                    }
                    self.resumed(now, claim);
                } else {
                    self.pending = Some(Pending::Count(claim));
                    self.actions.push_back(ProviderAction::CountBytes {
                        blocks: claim.blocks,
                    });
                }
                return;
            }
            let before = self.snapshot.seq;
            match self.status() {
                S::New => {
                    self.pending = Some(Pending::Locate);
                    self.actions.push_back(ProviderAction::Locate);
                }
                S::WaitForAcceptance => match self.check_terms() {
                    Err(reason) => self.reject(now, reason),
                    Ok(()) => {
                        self.pending = Some(Pending::Decide);
                        self.actions.push_back(ProviderAction::Decide);
                    }
                },
                S::Unsealing => {
                    self.pending = Some(Pending::Unseal);
                    self.actions.push_back(ProviderAction::Unseal);
                    self.unsealing_at = Some(now + self.config.unsealing_interval);
                }
                S::Unsealed | S::Ongoing => {
                    if self.attached && self.next_send_at.is_none() {
                        self.read_next(now);
                    }
                }
                S::BlocksComplete => {
                    if self.attached {
                        let owed = self.owed(&self.snapshot.state, true);
                        if owed.is_positive() {
                            if self.apply(now, ProviderEvent::LastPaymentRequested) {
                                self.asked_at = Some(now);
                                let mut r = self.response(DealStatus::FundsNeededLastPayment);
                                r.payment_owed = owed;
                                self.send(r);
                            }
                        } else if self.apply(now, ProviderEvent::Completed) {
                            self.send(self.response(DealStatus::Completed));
                        }
                    }
                }
                // Payments are taken above, as they arrive.
                S::FundsNeeded | S::FundsNeededLastPayment | S::FundsNeededUnseal => {}
                S::Finalizing => {
                    if self.apply(now, ProviderEvent::Completed) {
                        self.send(self.response(DealStatus::Completed));
                    }
                }
                S::Failing => {
                    let mut r = self.response(DealStatus::Errored);
                    r.message = self
                        .snapshot
                        .state
                        .error
                        .as_ref()
                        .map(DealError::wire_message)
                        .unwrap_or_default();
                    // The deal ends Errored whether or not the client hears why.
                    self.send(r);
                    self.apply(now, ProviderEvent::Closed);
                }
                S::Cancelling => {
                    // The client waits for this answer before it ends its side.
                    self.send(self.response(DealStatus::Cancelled));
                    self.apply(now, ProviderEvent::Closed);
                }
                S::Completed | S::Errored | S::Rejected | S::DealNotFound | S::Cancelled => {}
            }
            if self.snapshot.seq == before {
                return;
            }
        }
    }

    /// Sends the next blocks, or stops for payment when the credit is used up.
    fn read_next(&mut self, now: Instant) {
        let state = &self.snapshot.state;
        let params = &state.proposal.params;
        let point = params.credit_limit(&state.funds_received);
        if point.is_some_and(|p| state.bytes_sent >= p) {
            if self.voucher_on_hand() {
                // The voucher being saved may move the limit: its result drives the deal.
                return;
            }
            // A resumed deal can owe money before anything else is sent.
            let owed = params.outstanding_balance(&state.funds_received, state.bytes_sent, false);
            if self.apply(now, ProviderEvent::PaymentRequested) {
                self.asked_at = Some(now);
                let mut r = self.response(DealStatus::FundsNeeded);
                r.payment_owed = owed;
                self.send(r);
            }
            return;
        }
        let from = state.blocks_sent;
        // The read ends at the credit limit, and at the early request's point when it is
        // still ahead (the request goes with the block that reaches it).
        let early = self
            .early_point(params, &state.funds_received)
            .filter(|p| *p > state.bytes_sent);
        let stop_after = match (point, early) {
            (Some(p), Some(e)) => Some(p.min(e) - state.bytes_sent),
            (p, _) => p.map(|p| p - state.bytes_sent),
        };
        self.pending = Some(Pending::Read(from));
        self.actions.push_back(ProviderAction::ReadBlocks {
            from,
            max_blocks: self.config.max_blocks_per_response.max(1),
            max_bytes: self.config.max_response_bytes,
            stop_after,
        });
    }
}
