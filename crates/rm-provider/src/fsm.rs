//! The provider deal machine: its state, its events and its transition table (data).
//!
//! `docs/state-machines/provider.md` is generated from [`table`] by `cargo xtask fsm-docs`.
//! The provider's "awaiting acceptance" status (the custom decider runs there) is
//! go-fil-markets' `WaitForAcceptance` number.

use rm_fsm::{Dest, EventKind, HasStatus, Rule, Source, Table};
use rm_types::{Address, DealStatus, ProviderDealState, TokenAmount};
use serde::{Deserialize, Serialize};

/// The status of a deal as the state machine keys it (a [`DealStatus`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub DealStatus);

impl rm_fsm::Status for Status {
    fn name(&self) -> &'static str {
        self.0.short_name()
    }
}

/// The channel lane a deal is paid on, fixed by its first voucher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentLane {
    /// The payment channel.
    #[serde(rename = "Channel")]
    pub channel: Address,
    /// The lane (a lane pays one deal only).
    #[serde(rename = "Lane")]
    pub lane: u64,
}

/// A provider deal as persisted: the go-fil-markets state plus the payment lane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderDeal {
    /// The deal in go-fil-markets' terms.
    #[serde(rename = "State")]
    pub state: ProviderDealState,
    /// The lane paying this deal, once the first voucher arrived.
    #[serde(rename = "PaymentLane", default)]
    pub lane: Option<PaymentLane>,
    /// Amounts newly received with each accepted voucher, in order (at most
    /// [`MAX_RECEIVED_KEPT`], the oldest dropped first).
    #[serde(rename = "Received", default)]
    pub received: Vec<TokenAmount>,
    /// How many times the client resumed the deal on a new stream.
    #[serde(rename = "Resumes", default)]
    pub resumes: u64,
}

impl ProviderDeal {
    /// The deal's status.
    pub fn status(&self) -> DealStatus {
        self.state.status
    }
}

impl HasStatus for ProviderDeal {
    type Status = Status;
    fn status(&self) -> Status {
        Status(self.state.status)
    }
    fn set_status(&mut self, status: Status) {
        self.state.status = status.0;
    }
}

/// What happens to a provider deal (go-fil-markets `ProviderEvent` names where they exist).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The proposal was read; the decider runs next.
    DealReceived,
    /// Accepted; data flows.
    DealAccepted,
    /// Accepted; the unseal price is due before any data.
    UnsealPaymentRequested,
    /// Rejected (terms, decider).
    DealRejected(String),
    /// The payload is not here.
    DealNotFound(String),
    /// The decider failed.
    DecisioningError(String),
    /// The client continues on a new stream from these totals.
    Resumed {
        /// Blocks the client has.
        blocks: u64,
        /// Bytes the client has.
        bytes: u64,
    },
    /// Blocks were read for the client: the totals so far.
    BlocksSent {
        /// Blocks sent so far.
        blocks: u64,
        /// Bytes sent so far.
        bytes: u64,
    },
    /// A payment point was reached.
    PaymentRequested,
    /// The last block was read.
    BlocksCompleted,
    /// Everything is sent; the rest is due.
    LastPaymentRequested,
    /// A voucher paid what was owed.
    PaymentReceived {
        /// The amount newly received.
        received: TokenAmount,
        /// The lane it came on.
        lane: PaymentLane,
    },
    /// A voucher paid part of what was owed.
    PartialPaymentReceived {
        /// The amount newly received.
        received: TokenAmount,
        /// The lane it came on.
        lane: PaymentLane,
    },
    /// A voucher was refused.
    SaveVoucherFailed(String),
    /// Unsealing finished.
    UnsealComplete,
    /// Unsealing failed.
    UnsealError(String),
    /// Reading the data failed.
    BlockErrored(String),
    /// Everything sent and paid.
    Complete,
    /// The client cancelled.
    ClientCancelled(String),
    /// Cancelling or failing finished.
    CancelComplete,
    /// The stream failed for good (no resume in time) or storage failed.
    DataTransferError(String),
}

impl EventKind for Event {
    fn kind(&self) -> &'static str {
        match self {
            Event::DealReceived => "DealReceived",
            Event::DealAccepted => "DealAccepted",
            Event::UnsealPaymentRequested => "UnsealPaymentRequested",
            Event::DealRejected(_) => "DealRejected",
            Event::DealNotFound(_) => "DealNotFound",
            Event::DecisioningError(_) => "DecisioningError",
            Event::Resumed { .. } => "Resumed",
            Event::BlocksSent { .. } => "BlocksSent",
            Event::PaymentRequested => "PaymentRequested",
            Event::BlocksCompleted => "BlocksCompleted",
            Event::LastPaymentRequested => "LastPaymentRequested",
            Event::PaymentReceived { .. } => "PaymentReceived",
            Event::PartialPaymentReceived { .. } => "PartialPaymentReceived",
            Event::SaveVoucherFailed(_) => "SaveVoucherFailed",
            Event::UnsealComplete => "UnsealComplete",
            Event::UnsealError(_) => "UnsealError",
            Event::BlockErrored(_) => "BlockErrored",
            Event::Complete => "Complete",
            Event::ClientCancelled(_) => "ClientCancelled",
            Event::CancelComplete => "CancelComplete",
            Event::DataTransferError(_) => "DataTransferError",
        }
    }
}

/// The provider machine's table type.
pub type ProviderTable = Table<ProviderDeal, Event>;

use DealStatus as D;

fn s(status: DealStatus) -> Status {
    Status(status)
}

fn of<const N: usize>(statuses: [DealStatus; N]) -> Source<Status> {
    Source::of(statuses.map(Status))
}

fn record_message(deal: &mut ProviderDeal, event: &Event) -> Result<(), String> {
    let text = match event {
        Event::DealRejected(m)
        | Event::DealNotFound(m)
        | Event::DecisioningError(m)
        | Event::SaveVoucherFailed(m)
        | Event::UnsealError(m)
        | Event::BlockErrored(m)
        | Event::DataTransferError(m) => m.clone(),
        Event::ClientCancelled(m) if m.is_empty() => "client cancelled retrieval".to_owned(),
        Event::ClientCancelled(m) => format!("client cancelled retrieval: {m}"),
        _ => return Ok(()),
    };
    deal.state.message = text;
    Ok(())
}

fn record_resume(deal: &mut ProviderDeal, event: &Event) -> Result<(), String> {
    let Event::Resumed { blocks, bytes } = event else {
        return Err("not Resumed".into());
    };
    if *blocks > deal.state.blocks_sent || *bytes > deal.state.total_sent {
        return Err(format!(
            "client claims {blocks} blocks / {bytes} bytes, only {} / {} were sent",
            deal.state.blocks_sent, deal.state.total_sent
        ));
    }
    deal.state.blocks_sent = *blocks;
    deal.state.total_sent = *bytes;
    deal.resumes += 1;
    Ok(())
}

fn record_sent(deal: &mut ProviderDeal, event: &Event) -> Result<(), String> {
    let Event::BlocksSent { blocks, bytes } = event else {
        return Err("not BlocksSent".into());
    };
    deal.state.blocks_sent = *blocks;
    deal.state.total_sent = *bytes;
    Ok(())
}

/// At most this many received amounts are kept in a deal's record (the oldest go first).
pub const MAX_RECEIVED_KEPT: usize = 1024;

fn record_payment(deal: &mut ProviderDeal, event: &Event) -> Result<(), String> {
    let (Event::PaymentReceived { received, lane }
    | Event::PartialPaymentReceived { received, lane }) = event
    else {
        return Err("not a payment".into());
    };
    if received.is_negative() {
        return Err("negative payment".into());
    }
    match &deal.lane {
        Some(known) if known.channel != lane.channel || known.lane != lane.lane => {
            return Err("payment on another lane".into());
        }
        Some(_) => {}
        None => deal.lane = Some(lane.clone()),
    }
    deal.state.funds_received += received;
    if received.is_positive() {
        if deal.received.len() >= MAX_RECEIVED_KEPT {
            deal.received.remove(0);
        }
        deal.received.push(received.clone());
    }
    let params = &deal.state.proposal.params;
    if matches!(event, Event::PaymentReceived { .. }) && deal.state.status != D::FundsNeededUnseal {
        let paid = params.bytes_paid_for(&deal.state.funds_received);
        deal.state.current_interval = params.next_interval(paid);
    }
    Ok(())
}

/// Statuses in which the provider may be sending data or waiting for money.
const LIVE_DATA: [DealStatus; 7] = [
    D::Accepted,
    D::Unsealed,
    D::Ongoing,
    D::FundsNeeded,
    D::BlocksComplete,
    D::FundsNeededLastPayment,
    D::Finalizing,
];

/// The provider's transition table.
pub fn table() -> ProviderTable {
    let r = Rule::new;
    Table::new(
        vec![
            r(
                "DealReceived",
                of([D::New]),
                Dest::To(s(D::WaitForAcceptance)),
            )
            .doc("proposal read; the decider runs (awaiting acceptance)"),
            r(
                "DealAccepted",
                of([D::WaitForAcceptance]),
                Dest::To(s(D::Unsealing)),
            )
            .doc("writes Accepted; the payload is unsealed before any data"),
            r(
                "UnsealPaymentRequested",
                of([D::WaitForAcceptance]),
                Dest::To(s(D::FundsNeededUnseal)),
            )
            .doc("writes FundsNeededUnseal, PaymentOwed = unseal price"),
            r(
                "DealRejected",
                of([D::WaitForAcceptance]),
                Dest::To(s(D::Rejected)),
            )
            .action(record_message)
            .doc("terms below the ask, or the decider said no"),
            r(
                "DealNotFound",
                of([D::New, D::WaitForAcceptance]),
                Dest::To(s(D::DealNotFound)),
            )
            .action(record_message)
            .doc("payload not in the blockstore"),
            r(
                "DecisioningError",
                of([D::WaitForAcceptance]),
                Dest::To(s(D::Errored)),
            )
            .action(record_message),
            r("Resumed", of(LIVE_DATA), Dest::To(s(D::Ongoing)))
                .action(record_resume)
                .doc("TotalSent, BlocksSent = the client's totals; continue from there"),
            r(
                "Resumed",
                of([
                    D::New,
                    D::WaitForAcceptance,
                    D::FundsNeededUnseal,
                    D::Unsealing,
                ]),
                Dest::JustRecord,
            )
            .action(record_resume)
            .doc("nothing sent yet"),
            r("Resumed", of([D::Failing, D::Cancelling]), Dest::JustRecord)
                .action(record_resume)
                .doc("the new stream finishes the failure or cancel"),
            r(
                "BlocksSent",
                of([D::Accepted, D::Unsealed, D::Ongoing]),
                Dest::To(s(D::Ongoing)),
            )
            .action(record_sent)
            .doc("TotalSent, BlocksSent = totals after this response"),
            r(
                "PaymentRequested",
                of([D::Accepted, D::Unsealed, D::Ongoing]),
                Dest::To(s(D::FundsNeeded)),
            )
            .doc("payment point reached: sent ≥ NextInterval(funds)"),
            r(
                "BlocksCompleted",
                of([D::Accepted, D::Unsealed, D::Ongoing]),
                Dest::To(s(D::BlocksComplete)),
            ),
            r(
                "LastPaymentRequested",
                of([D::BlocksComplete]),
                Dest::To(s(D::FundsNeededLastPayment)),
            )
            .doc("everything sent; the full balance is due"),
            r(
                "PaymentReceived",
                of([D::FundsNeeded]),
                Dest::To(s(D::Ongoing)),
            )
            .action(record_payment)
            .doc("FundsReceived += received; CurrentInterval advances"),
            r(
                "PaymentReceived",
                of([D::FundsNeededLastPayment]),
                Dest::To(s(D::Finalizing)),
            )
            .action(record_payment),
            r(
                "PaymentReceived",
                of([D::FundsNeededUnseal]),
                Dest::To(s(D::Unsealing)),
            )
            .action(record_payment)
            .doc("unseal price paid"),
            r(
                "PartialPaymentReceived",
                of([
                    D::FundsNeeded,
                    D::FundsNeededLastPayment,
                    D::FundsNeededUnseal,
                ]),
                Dest::JustRecord,
            )
            .action(record_payment)
            .doc("FundsReceived += received; writes the remainder owed"),
            r(
                "SaveVoucherFailed",
                of([
                    D::FundsNeeded,
                    D::FundsNeededLastPayment,
                    D::FundsNeededUnseal,
                ]),
                Dest::To(s(D::Failing)),
            )
            .action(record_message),
            r(
                "UnsealComplete",
                of([D::Unsealing]),
                Dest::To(s(D::Unsealed)),
            ),
            r("UnsealError", of([D::Unsealing]), Dest::To(s(D::Failing))).action(record_message),
            r(
                "BlockErrored",
                of([D::Accepted, D::Unsealed, D::Ongoing]),
                Dest::To(s(D::Failing)),
            )
            .action(record_message),
            r(
                "Complete",
                of([D::BlocksComplete, D::Finalizing]),
                Dest::To(s(D::Completed)),
            )
            .doc("writes Completed"),
            r(
                "ClientCancelled",
                of([D::Failing, D::Cancelling]),
                Dest::JustRecord,
            ),
            r("ClientCancelled", Source::any(), Dest::To(s(D::Cancelling))).action(record_message),
            r(
                "CancelComplete",
                of([D::Cancelling]),
                Dest::To(s(D::Cancelled)),
            ),
            r("CancelComplete", of([D::Failing]), Dest::To(s(D::Errored)))
                .doc("writes Errored with the message"),
            r("DataTransferError", Source::any(), Dest::To(s(D::Errored)))
                .action(record_message)
                .doc("the client did not resume in time, or storage failed"),
        ],
        [
            s(D::Completed),
            s(D::Errored),
            s(D::Rejected),
            s(D::DealNotFound),
            s(D::Cancelled),
        ],
    )
    .expect("the provider table is well formed")
}

/// The generated documentation of the table (`docs/state-machines/provider.md`).
pub fn markdown() -> String {
    format!(
        "# Provider deal state machine\n\n\
         <!-- Generated by `cargo xtask fsm-docs` from crates/rm-provider/src/fsm.rs. Do not edit. -->\n\n\
         A deal starts in `New` when a proposal is read. `WaitForAcceptance` is where the \
         custom decider runs. Each row: the event, the statuses it applies in (`*` = any \
         other non-final status), where it goes, and what it records or writes.\n\n{}",
        table().to_markdown()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo xtask fsm-docs` runs this with `RM_UPDATE_FSM_DOCS=1` to write the file;
    /// `cargo test` fails when it is stale.
    #[test]
    fn fsm_docs_are_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/state-machines/provider.md");
        if let Err(stale) = rm_fsm::check_generated(&path, &markdown()) {
            panic!("{stale}");
        }
    }

    #[test]
    fn every_status_reached_has_its_own_way_out() {
        assert_eq!(rm_fsm::dead_ends(&table()), Vec::<&str>::new());
    }
}
