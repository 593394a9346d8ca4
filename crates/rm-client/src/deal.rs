//! [`ClientDeal`]: the sans-IO core of one client deal.
//!
//! It decides everything about a deal and does nothing itself: no I/O, no async, no clock
//! reads. Its inputs are method calls (`handle_*`, with the time passed in); its outputs
//! are [`ClientAction`]s the driver takes with [`ClientDeal::poll_action`] and carries out
//! in order, and a deadline ([`ClientDeal::poll_timeout`]) at which the driver calls
//! [`ClientDeal::handle_timeout`]. quinn-proto's `Connection` is the model.
//!
//! The driver's contract:
//!
//! - Carry out actions in the order they come. A [`ClientAction::Persist`] must be on
//!   disk before any later action is carried out: that is how a voucher is recorded
//!   before it is sent, and how a crash is survived (rebuild the core from the last
//!   persisted snapshot with [`ClientDeal::restore`]).
//! - Feed back the result of every request ([`ClientAction::Connect`], `Verify`, the node
//!   calls) exactly once, with the matching `handle_*` method. At most one of each is in
//!   flight.
//! - Read the next provider message only while [`ClientDeal::wants_message`] is true, and
//!   report a failed read or write with [`ClientDeal::handle_stream_lost`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rm_fsm::{Rejection, Snapshot, step};
use rm_types::{
    Address, Block, ChannelAvailableFunds, ChannelSetup, Cid, DealCancel, DealError, DealId,
    DealPayment, DealProposal, DealResponse, DealStatus, NodeError, Outcome, Resume, SignedVoucher,
    TokenAmount,
};

use crate::fsm::{self, ClientEvent, ClientState, ClientStatus as S};
use crate::logic::{Payment, decide_payment};

mod decide;

/// Timing and retry settings of one deal.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DealConfig {
    /// How many times in a row a lost stream is re-established before the deal fails.
    /// Default 5.
    pub max_reconnects: u32,
    /// Pause before the first reconnect; doubles each time up to `max_backoff`. Default
    /// 100 ms.
    pub reconnect_backoff: Duration,
    /// Longest pause between reconnects. Default 2 s.
    pub max_backoff: Duration,
    /// Longest wait for the provider's next message when it owes one; then the stream is
    /// dropped and the deal resumed on a new one. Default 30 s.
    pub read_timeout: Duration,
    /// Longest a deal may go without progress (a verified block, a status change, a
    /// payment) while it waits for the provider; then it fails. Default 10 minutes.
    pub progress_timeout: Duration,
    /// How long a cancelled deal keeps trying to tell the provider (reconnecting as often
    /// as it takes); then it ends `Cancelled` untold. Default 10 minutes, the provider's
    /// default resume window: a provider reachable in that time hears of the cancel.
    pub cancel_delivery: Duration,
    /// How long the provider's `Unsealing` responses count as progress, from the first:
    /// a sealed sector takes hours to unseal, and the provider says it still works on it
    /// (its `unsealing_interval`, 10 s by default). After this, only blocks and status
    /// changes are progress again, so a provider that only ever says `Unsealing` fails the
    /// deal `progress_timeout` later. Default 3 hours.
    pub max_unseal_wait: Duration,
    /// How many bytes of verified blocks may be counted in memory before they are written
    /// on their own. Progress is otherwise written with the next event that must be
    /// written anyway (a voucher, the last block, the end of the deal), so a crash loses at
    /// most this much counted progress, or one payment interval if that is smaller: those
    /// blocks are in the blockstore and are asked for again on resume, never paid twice.
    /// Zero writes every response's progress. Default 16 MiB.
    pub progress_write_bytes: u64,
    /// Pay a provider's early request at once: an `Ongoing` response that names an amount
    /// (`PaymentOwed`) asks for payment before the provider has to stop, while blocks keep
    /// coming. The client then pays for every byte it has verified, as at a stop, and the
    /// voucher travels while the rest of the interval does. Off, such requests are ignored
    /// and the client pays when the provider stops, as go-fil-markets' clients do. Nothing
    /// is owed before the stop either way: a request that cannot be paid at once (the
    /// deal's budget, a call in flight, nothing new verified) is left for it. Default on.
    pub pay_early: bool,
}

impl Default for DealConfig {
    fn default() -> Self {
        DealConfig {
            max_reconnects: 5,
            reconnect_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            read_timeout: Duration::from_secs(30),
            progress_timeout: Duration::from_secs(600),
            cancel_delivery: Duration::from_secs(600),
            max_unseal_wait: Duration::from_secs(3 * 3600),
            progress_write_bytes: 16 << 20,
            pay_early: true,
        }
    }
}

/// A message the client writes on the deal stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// The proposal, first on every stream (with `Resume` when the deal is not new).
    Proposal(DealProposal),
    /// A voucher.
    Payment(DealPayment),
    /// The end of the deal: cancelled, or failed (`DealCancel::failed`).
    Cancel(DealCancel),
}

/// What the driver must do next (see the [module docs](self) for the contract).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientAction {
    /// Write `snapshot` (reached by `event`, and by the events before it that came with no
    /// effect between them) to the deal's journal before anything else.
    Persist {
        /// The event applied last.
        event: ClientEvent,
        /// The deal's new snapshot (boxed: a record is large, the other actions small).
        snapshot: Box<Snapshot<ClientState>>,
    },
    /// Tell the journal's subscribers of `event` and the snapshot it led to without
    /// writing anything: an event whose snapshot is persisted together with a later
    /// one's, by a [`ClientAction::Persist`] that follows (at once when events were folded;
    /// at the next payment, the end, or after `progress_write_bytes` for verified blocks).
    Publish {
        /// The event.
        event: ClientEvent,
        /// The snapshot it led to.
        snapshot: Box<Snapshot<ClientState>>,
    },
    /// Open a deal stream to the provider (dialling it if needed); answer with
    /// [`ClientDeal::handle_connected`] or [`ClientDeal::handle_stream_lost`].
    Connect,
    /// Write this message on the stream.
    Send(Outbound),
    /// Finish the stream gracefully and drop it.
    Close,
    /// Drop the stream without finishing it.
    Reset,
    /// Verify these blocks as the next ones of the traversal (from the deal's
    /// `blocks_received` on) and store them; answer with [`ClientDeal::handle_verified`].
    Verify(Vec<Block>),
    /// Ask the node for a payment channel holding `funds`; answer with
    /// [`ClientDeal::handle_channel_setup`].
    SetupChannel {
        /// The paying wallet.
        client: Address,
        /// The provider's wallet.
        miner: Address,
        /// The deal's budget.
        funds: TokenAmount,
    },
    /// Wait for a channel message; answer with [`ClientDeal::handle_channel_ready`].
    WaitChannel(Cid),
    /// Allocate a lane; answer with [`ClientDeal::handle_lane`].
    AllocateLane(Address),
    /// Make a voucher for a cumulative amount; answer with [`ClientDeal::handle_voucher`].
    CreateVoucher {
        /// The channel.
        channel: Address,
        /// The lane.
        lane: u64,
        /// The cumulative amount.
        amount: TokenAmount,
    },
    /// Ask what the channel can still pay; answer with
    /// [`ClientDeal::handle_available_funds`].
    CheckFunds(Address),
    /// The deal has ended; the driver may stop.
    Finished(Outcome),
}

/// Why blocks handed over with [`ClientAction::Verify`] were not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// A block is not the next one of the traversal, or does not match its CID.
    Block(String),
    /// Storing verified blocks failed.
    Storage(String),
}

/// Why [`ClientDeal::add_funds`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddFundsError {
    /// The deal is not waiting for funds.
    #[error("the deal is {0}, not InsufficientFunds")]
    WrongStatus(S),
    /// The node did something else than adding funds to the deal's channel.
    #[error("{0}")]
    WrongChannel(String),
}

/// The state of the deal stream, as the core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// No stream; `retry_at` says when to try again.
    Down,
    /// [`ClientAction::Connect`] is out.
    Connecting,
    /// A stream is open and the proposal was written on it.
    Up,
}

/// A node call in flight.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Channel,
    Voucher(TokenAmount),
    /// A voucher for an early request (sent only if the deal is still `Ongoing`).
    EarlyVoucher(TokenAmount),
    Funds,
}

/// The sans-IO core of one client deal (see the [module docs](self)).
#[derive(Debug)]
pub struct ClientDeal {
    id: DealId,
    snapshot: Snapshot<ClientState>,
    config: DealConfig,
    conn: Conn,
    /// Whether a payment request arrived on the current stream (after a reconnect the
    /// provider repeats its request; the client pays only an answer to that).
    asked_on_stream: bool,
    /// The last voucher was re-sent on the current stream.
    resent: bool,
    /// A voucher was sent early on the current stream (for an early request): a request
    /// that arrives may predate it, so asking for more than is due is not a violation.
    paid_early: bool,
    /// The cancel (or failure) was written on the current stream; its answer is awaited.
    cancel_sent: bool,
    /// A cancelled deal the provider had already completed: its last blocks are taken.
    completing: bool,
    /// When the deal started cancelling (or was restored cancelling).
    cancelled_at: Option<Instant>,
    reconnects: u32,
    retry_at: Option<Instant>,
    /// The last time the provider spoke, or the stream opened.
    heard_at: Instant,
    /// The last progress.
    progress_at: Instant,
    /// When the provider first said it was unsealing.
    unsealing_since: Option<Instant>,
    call: Option<Call>,
    /// Blocks handed to the driver for verification: their count and bytes.
    verifying: Option<(u64, u64)>,
    /// Responses read but not handled yet (their blocks are being verified, or the
    /// response came while another was). Bounded.
    pending: VecDeque<DealResponse>,
    actions: VecDeque<ClientAction>,
    finished: bool,
    /// Bytes of verified blocks applied to the snapshot since the last `Persist`.
    unwritten: u64,
}

/// Most responses held in memory: the one whose blocks are being verified (its status
/// part) and one read ahead. With the frame buffer, a deal holds at most three responses'
/// worth of blocks (`3 × max_message_size`).
const MAX_PENDING: usize = 2;

impl ClientDeal {
    /// The core of a deal just begun (its record at `seq` 0, already persisted).
    pub fn new(id: DealId, state: ClientState, now: Instant, config: DealConfig) -> Self {
        Self::restore(id, Snapshot { seq: 0, state }, now, config)
    }

    /// The core of a deal from its last persisted snapshot (after a restart, or to
    /// continue a deal whose driver stopped).
    pub fn restore(
        id: DealId,
        snapshot: Snapshot<ClientState>,
        now: Instant,
        config: DealConfig,
    ) -> Self {
        let mut deal = ClientDeal {
            id,
            snapshot,
            config,
            conn: Conn::Down,
            asked_on_stream: false,
            resent: false,
            paid_early: false,
            cancel_sent: false,
            completing: false,
            cancelled_at: None,
            reconnects: 0,
            retry_at: None,
            heard_at: now,
            progress_at: now,
            unsealing_since: None,
            call: None,
            verifying: None,
            pending: VecDeque::new(),
            actions: VecDeque::new(),
            finished: false,
            unwritten: 0,
        };
        deal.drive(now);
        deal
    }

    /// The deal's id.
    pub fn id(&self) -> DealId {
        self.id
    }

    /// The deal's current state (what the last `Persist` wrote, or newer).
    pub fn state(&self) -> &ClientState {
        &self.snapshot.state
    }

    /// The deal's current snapshot.
    pub fn snapshot(&self) -> &Snapshot<ClientState> {
        &self.snapshot
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<ClientAction> {
        self.actions.pop_front()
    }

    /// When [`ClientDeal::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        let mut next = self.retry_at;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if self.awaiting_provider() {
            consider(self.heard_at + self.config.read_timeout);
        }
        if self.expects_progress() {
            consider(self.progress_at + self.config.progress_timeout);
        }
        next
    }

    /// Whether the driver should read the provider's next message. While a response's
    /// blocks are being verified, one more response is read (so reading overlaps
    /// verifying and storing), but only after a response that says more follows
    /// (`Ongoing` and the like): after `Completed`, a payment request or an error the
    /// provider sends nothing more until the client acts, and a read there would only
    /// meet the end of the stream; then reading waits.
    pub fn wants_message(&self) -> bool {
        !self.finished
            && self.conn == Conn::Up
            && match self.pending.back() {
                None => true,
                Some(last) => {
                    self.pending.len() < MAX_PENDING
                        && matches!(
                            last.status,
                            DealStatus::Accepted
                                | DealStatus::Ongoing
                                | DealStatus::Unsealing
                                | DealStatus::Unsealed
                        )
                }
            }
            && (!matches!(self.status(), S::Failing | S::Cancelling) || self.cancel_sent)
    }

    /// Whether the deal has ended (the last action is [`ClientAction::Finished`]).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn status(&self) -> S {
        self.snapshot.state.status
    }

    /// Failing, cancelling or ended: results of requests made before no longer count.
    fn ending(&self) -> bool {
        matches!(self.status(), S::Failing | S::Cancelling) || self.status().is_final()
    }

    /// The provider owes a message now: nothing local is in flight.
    fn awaiting_provider(&self) -> bool {
        self.conn == Conn::Up
            && self.verifying.is_none()
            && self.pending.is_empty()
            && self.call.is_none()
            && match self.status() {
                S::WaitForAcceptance | S::Ongoing | S::BlocksComplete | S::Finalizing => true,
                S::FundsNeeded | S::FundsNeededLastPayment => !self.asked_on_stream,
                S::Failing | S::Cancelling => self.cancel_sent,
                _ => false,
            }
    }

    /// The deal waits on the provider (not on the user, the chain or local work).
    fn expects_progress(&self) -> bool {
        matches!(
            self.status(),
            S::New
                | S::WaitForAcceptance
                | S::Ongoing
                | S::BlocksComplete
                | S::Finalizing
                | S::FundsNeeded
                | S::FundsNeededLastPayment
        ) && self.call.is_none()
    }

    // ---- inputs ----

    /// The stream asked for with [`ClientAction::Connect`] is open. False when the deal
    /// no longer wants it (the driver drops it then).
    pub fn handle_connected(&mut self, now: Instant) -> bool {
        if self.conn != Conn::Connecting || self.finished {
            return false;
        }
        self.conn = Conn::Up;
        self.asked_on_stream = false;
        self.resent = false;
        self.paid_early = false;
        self.cancel_sent = false;
        self.heard_at = now;
        let mut proposal = self.snapshot.state.proposal.clone();
        if self.status() != S::New {
            proposal.resume = Some(Resume {
                blocks: self.snapshot.state.blocks_received,
                bytes: self.snapshot.state.bytes_received,
            });
        }
        self.actions
            .push_back(ClientAction::Send(Outbound::Proposal(proposal)));
        if self.status() == S::New {
            self.apply(now, ClientEvent::Proposed);
        }
        self.drive(now);
        true
    }

    /// Connecting failed, or the stream broke (a read or write failed, or the peer reset
    /// it). The deal resumes on a new stream after a pause, a bounded number of times in
    /// a row.
    pub fn handle_stream_lost(&mut self, now: Instant, reason: impl std::fmt::Display) {
        if self.finished || self.conn == Conn::Down {
            return;
        }
        self.drop_stream();
        self.reconnects += 1;
        let cancelling = self.status() == S::Cancelling;
        let delivering = cancelling
            && self
                .cancelled_at
                .is_none_or(|t| now < t + self.config.cancel_delivery);
        if cancelling && !delivering {
            self.apply(now, ClientEvent::Closed);
        } else if !delivering && self.reconnects > self.config.max_reconnects {
            let error =
                DealError::network(format!("{reason} ({} attempts in a row)", self.reconnects));
            match self.status() {
                S::Failing | S::Cancelling => self.apply(now, ClientEvent::Closed),
                _ => self.apply(now, ClientEvent::Errored(error)),
            };
        } else {
            let shift = (self.reconnects - 1).min(16);
            let pause = self
                .config
                .reconnect_backoff
                .saturating_mul(1 << shift)
                .min(self.config.max_backoff);
            self.retry_at = Some(now + pause);
        }
        self.drive(now);
    }

    /// The provider sent bytes that are no valid response (malformed, or over a size or
    /// count cap): a protocol violation, not a network failure. The stream is gone (the
    /// driver resets it) and the deal fails without reconnecting; a deal being cancelled
    /// or failing already ends at once.
    pub fn handle_bad_message(&mut self, now: Instant, reason: impl std::fmt::Display) {
        if self.finished || self.status().is_final() {
            return;
        }
        self.drop_stream();
        match self.status() {
            S::Failing | S::Cancelling => {
                self.apply(now, ClientEvent::Closed);
            }
            _ => {
                let error =
                    DealError::protocol(format!("the provider sent a bad message: {reason}"));
                self.apply(now, ClientEvent::Failed(error));
            }
        }
        self.drive(now);
    }

    /// Forgets the stream and everything queued for it or read from it.
    fn drop_stream(&mut self) {
        self.conn = Conn::Down;
        self.cancel_sent = false;
        // Nothing queued for the old stream may reach a new one.
        self.actions.retain(|a| {
            !matches!(
                a,
                ClientAction::Send(_) | ClientAction::Close | ClientAction::Reset
            )
        });
        self.pending.clear();
    }

    /// The provider's next message arrived.
    pub fn handle_response(&mut self, now: Instant, response: DealResponse) {
        if self.finished || self.conn != Conn::Up {
            return;
        }
        self.heard_at = now;
        self.reconnects = 0;
        if response.id != self.id {
            self.fail(
                now,
                DealError::protocol(format!(
                    "response for deal {} on the stream of deal {}",
                    response.id.0, self.id.0
                )),
            );
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.fail(
                now,
                DealError::protocol("the provider sent responses faster than it may"),
            );
            return;
        }
        self.pending.push_back(response);
        self.next_response(now);
    }

    /// The result of [`ClientAction::Verify`]: every block handed over was the next one
    /// and is stored (`done` when the traversal is complete), or none is kept.
    pub fn handle_verified(&mut self, now: Instant, result: Result<bool, VerifyError>) {
        let Some((blocks, bytes)) = self.verifying.take() else {
            return;
        };
        if self.status() == S::Cancelling
            && self
                .pending
                .front()
                .is_some_and(|r| r.status == DealStatus::Completed)
        {
            // These blocks came with the provider's `Completed`: the deal completes.
            self.completing = true;
        }
        let ending = matches!(self.status(), S::Failing | S::Cancelling) && !self.completing;
        if ending || self.status().is_final() {
            // The deal is ending: whatever was verified meanwhile is not counted.
            return self.next_response(now);
        }
        match result {
            Ok(done) => {
                let state = &self.snapshot.state;
                let event = ClientEvent::BlocksReceived {
                    blocks: state.blocks_received + blocks,
                    bytes: state.bytes_received + bytes,
                };
                self.progress_at = now;
                self.apply_progress(now, event, bytes);
                if done {
                    self.apply(now, ClientEvent::AllBlocksReceived);
                }
                self.next_response(now);
            }
            Err(VerifyError::Block(reason)) => {
                self.pending.clear();
                self.fail(
                    now,
                    DealError::protocol(format!("provider sent a wrong block: {reason}")),
                );
            }
            Err(VerifyError::Storage(reason)) => {
                self.pending.clear();
                self.fail(now, DealError::storage(format!("storing blocks: {reason}")));
            }
        }
    }

    /// The result of [`ClientAction::SetupChannel`].
    pub fn handle_channel_setup(&mut self, now: Instant, result: Result<ChannelSetup, NodeError>) {
        if self.call.take() != Some(Call::Channel) {
            return;
        }
        if self.ending() {
            return self.drive(now);
        }
        let event = match result {
            Ok(ChannelSetup::Creating { wait }) => ClientEvent::ChannelCreating(wait),
            Ok(ChannelSetup::AddingFunds { channel, wait }) => ClientEvent::ChannelAddingFunds {
                channel,
                wait,
                added: TokenAmount::zero(),
            },
            Ok(ChannelSetup::Ready { channel }) => ClientEvent::ChannelReady(channel),
            Err(e) => {
                return self.fail(
                    now,
                    DealError::payment(format!("error from payment channel: {e}")),
                );
            }
        };
        self.apply(now, event);
        self.drive(now);
    }

    /// The result of [`ClientAction::WaitChannel`].
    pub fn handle_channel_ready(&mut self, now: Instant, result: Result<Address, NodeError>) {
        if self.call.take() != Some(Call::Channel) {
            return;
        }
        if self.ending() {
            return self.drive(now);
        }
        match result {
            Ok(channel) => {
                self.apply(now, ClientEvent::ChannelReady(channel));
            }
            Err(e) => {
                return self.fail(
                    now,
                    DealError::payment(format!("error from payment channel: {e}")),
                );
            }
        }
        self.drive(now);
    }

    /// The result of [`ClientAction::AllocateLane`].
    pub fn handle_lane(&mut self, now: Instant, result: Result<u64, NodeError>) {
        if self.call.take() != Some(Call::Channel) {
            return;
        }
        if self.ending() {
            return self.drive(now);
        }
        match result {
            Ok(lane) => {
                self.apply(now, ClientEvent::LaneAllocated(lane));
            }
            Err(e) => {
                return self.fail(
                    now,
                    DealError::payment(format!("allocating payment lane: {e}")),
                );
            }
        }
        self.drive(now);
    }

    /// The result of [`ClientAction::CreateVoucher`]. The voucher is recorded (persisted)
    /// before it is sent.
    pub fn handle_voucher(&mut self, now: Instant, result: Result<SignedVoucher, NodeError>) {
        let (total, early) = match self.call.take() {
            Some(Call::Voucher(total)) => (total, false),
            Some(Call::EarlyVoucher(total)) => (total, true),
            _ => return,
        };
        if self.ending() {
            // Not sent: the deal is ending.
            return self.drive(now);
        }
        if early && (self.status() != S::Ongoing || result.is_err()) {
            // Not sent: a request came meanwhile (the provider stopped, or the last block
            // came) and is paid the usual way, for all that is verified by then; a voucher
            // that could not be made is left for the stop, where the budget is checked.
            return self.drive(now);
        }
        match result {
            Ok(voucher) => {
                if voucher.amount != total {
                    return self.fail(
                        now,
                        DealError::internal(format!(
                            "the node made a voucher for {}, not {total}",
                            voucher.amount
                        )),
                    );
                }
                let Some(info) = self.snapshot.state.payment_info.clone() else {
                    return self.fail(now, DealError::internal("no payment channel"));
                };
                let payment = DealPayment {
                    id: self.id,
                    payment_channel: info.pay_ch,
                    payment_voucher: Some(voucher.clone()),
                };
                if self.apply(now, ClientEvent::PaymentSent { voucher, total }) {
                    self.progress_at = now;
                    if early {
                        self.paid_early = true;
                    } else {
                        self.asked_on_stream = false;
                    }
                    self.send(Outbound::Payment(payment));
                }
            }
            Err(NodeError::Shortfall { shortfall }) => {
                self.apply(now, ClientEvent::VoucherShortfall(shortfall));
            }
            Err(e) => {
                return self.fail(
                    now,
                    DealError::payment(format!("creating payment voucher: {e}")),
                );
            }
        }
        self.drive(now);
    }

    /// The result of [`ClientAction::CheckFunds`].
    pub fn handle_available_funds(
        &mut self,
        now: Instant,
        result: Result<ChannelAvailableFunds, NodeError>,
    ) {
        if self.call.take() != Some(Call::Funds) {
            return;
        }
        if self.ending() {
            return self.drive(now);
        }
        let available = match result {
            Ok(a) => a,
            Err(e) => {
                return self.fail(
                    now,
                    DealError::payment(format!("error from payment channel: {e}")),
                );
            }
        };
        let state = &self.snapshot.state;
        let Some(info) = &state.payment_info else {
            return self.fail(now, DealError::internal("no payment channel"));
        };
        let params = &state.proposal.params;
        let total = params.amount_for_bytes(state.bytes_received);
        let over_budget = &total - &state.total_funds;
        let event = if over_budget.is_positive() {
            // The deal's own budget is the limit, whatever the channel holds.
            ClientEvent::FundsExpended(over_budget)
        } else {
            let need = &total - &state.funds_spent;
            // A voucher raising this lane to the new total needs `need` more than every
            // lane's latest voucher already commits.
            let unredeemed = &available.confirmed - &available.voucher_redeemed;
            let shortfall = &need - &unredeemed;
            if !shortfall.is_positive() {
                ClientEvent::ChannelReady(info.pay_ch.clone())
            } else if let Some(wait) = available.pending_wait_sentinel {
                if (&available.pending + &available.queued) >= shortfall {
                    ClientEvent::ChannelAddingFunds {
                        channel: info.pay_ch.clone(),
                        wait,
                        added: TokenAmount::zero(),
                    }
                } else {
                    ClientEvent::FundsExpended(
                        &shortfall - &(&available.pending + &available.queued),
                    )
                }
            } else {
                ClientEvent::FundsExpended(shortfall)
            }
        };
        self.apply(now, event);
        self.drive(now);
    }

    /// Funds were added for this deal (the node already did it, as `setup` says):
    /// `amount` more in the budget, and a deal waiting in `InsufficientFunds` goes on.
    pub fn add_funds(
        &mut self,
        now: Instant,
        amount: TokenAmount,
        setup: ChannelSetup,
    ) -> Result<(), AddFundsError> {
        if self.status() != S::InsufficientFunds {
            return Err(AddFundsError::WrongStatus(self.status()));
        }
        let channel = self.snapshot.state.payment_info.as_ref().map(|p| &p.pay_ch);
        let event = match setup {
            ChannelSetup::AddingFunds { channel: c, wait } if Some(&c) == channel => {
                ClientEvent::ChannelAddingFunds {
                    channel: c,
                    wait,
                    added: amount,
                }
            }
            ChannelSetup::Ready { channel: c } if Some(&c) == channel => {
                ClientEvent::FundsAdded(amount)
            }
            other => {
                return Err(AddFundsError::WrongChannel(format!(
                    "the node answered {other:?}, not a top-up of the deal's channel"
                )));
            }
        };
        self.apply(now, event);
        self.drive(now);
        Ok(())
    }

    /// The user cancels: the provider is told, and the deal ends `Cancelled`.
    pub fn cancel(&mut self, now: Instant, reason: impl Into<String>) {
        if self.finished || self.status().is_final() {
            return;
        }
        self.apply(now, ClientEvent::Cancelled(reason.into()));
        self.drive(now);
    }

    /// Time passed: reconnect, give up on a silent stream, or fail a deal that stopped
    /// moving.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        if self.expects_progress() && now >= self.progress_at + self.config.progress_timeout {
            let error = DealError::timeout(format!(
                "no progress for {:?}",
                self.config.progress_timeout
            ));
            return self.fail(now, error);
        }
        if self.awaiting_provider() && now >= self.heard_at + self.config.read_timeout {
            let reason = format!(
                "the provider sent nothing for {:?}",
                self.config.read_timeout
            );
            self.handle_stream_lost(now, reason);
            // The silent stream is dropped before anything else happens.
            self.actions.push_front(ClientAction::Reset);
            return;
        }
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
        }
        self.drive(now);
    }
}
