//! The provider deal machine as data: its statuses, its events, the record it persists
//! and its transition table.
//!
//! `docs/state-machines/provider.md` is generated from [`table`] by `cargo xtask fsm-docs`.
//! The statuses are the provider's own; [`ProviderStatus::wire`] maps them to
//! go-fil-markets' `DealStatus` numbers, which is what a `DealResponse` carries.

use std::sync::OnceLock;

use rm_fsm::{Dest, HasStatus, Rule, Source, Table};
use rm_types::{Address, DealError, DealProposal, DealStatus, Outcome, PeerId, TokenAmount};
use serde::{Deserialize, Serialize};

rm_fsm::named_enum! {
    /// Where a provider deal is. The last five are final.
    pub enum ProviderStatus: Status {
        /// The proposal was read; the payload is being looked up.
        New,
        /// The payload is here; the terms and the custom decider are checked.
        WaitForAcceptance,
        /// Accepted; the unseal price is due before any data.
        FundsNeededUnseal,
        /// The payload's piece is being unsealed.
        Unsealing,
        /// The data is ready to be read.
        Unsealed,
        /// Blocks flow.
        Ongoing,
        /// Stopped at a payment point, waiting for a voucher.
        FundsNeeded,
        /// Every block was read; the rest of the money is due next.
        BlocksComplete,
        /// Every block sent; waiting for the last voucher.
        FundsNeededLastPayment,
        /// Paid in full; completing.
        Finalizing,
        /// Failing: telling the client, then `Errored`.
        Failing,
        /// Cancelled by the client: ending.
        Cancelling,
        /// Every block sent, everything owed paid.
        Completed,
        /// Failed (the error says why).
        Errored,
        /// The proposal was rejected.
        Rejected,
        /// The payload is not here.
        DealNotFound,
        /// Cancelled by the client.
        Cancelled,
    }
}

use ProviderStatus as S;

impl ProviderStatus {
    /// The statuses a deal ends in.
    pub const FINAL: [ProviderStatus; 5] = [
        S::Completed,
        S::Errored,
        S::Rejected,
        S::DealNotFound,
        S::Cancelled,
    ];

    /// Whether the deal has ended.
    pub fn is_final(self) -> bool {
        Self::FINAL.contains(&self)
    }

    /// The go-fil-markets `DealStatus` with the same meaning.
    pub fn wire(self) -> DealStatus {
        match self {
            S::New => DealStatus::New,
            S::WaitForAcceptance => DealStatus::WaitForAcceptance,
            S::FundsNeededUnseal => DealStatus::FundsNeededUnseal,
            S::Unsealing => DealStatus::Unsealing,
            S::Unsealed => DealStatus::Unsealed,
            S::Ongoing => DealStatus::Ongoing,
            S::FundsNeeded => DealStatus::FundsNeeded,
            S::BlocksComplete => DealStatus::BlocksComplete,
            S::FundsNeededLastPayment => DealStatus::FundsNeededLastPayment,
            S::Finalizing => DealStatus::Finalizing,
            S::Failing => DealStatus::Failing,
            S::Cancelling => DealStatus::Cancelling,
            S::Completed => DealStatus::Completed,
            S::Errored => DealStatus::Errored,
            S::Rejected => DealStatus::Rejected,
            S::DealNotFound => DealStatus::DealNotFound,
            S::Cancelled => DealStatus::Cancelled,
        }
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

/// A provider deal as persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderState {
    /// Where the deal is.
    #[serde(rename = "Status")]
    pub status: ProviderStatus,
    /// The accepted proposal (without `Resume`).
    #[serde(rename = "Proposal")]
    pub proposal: DealProposal,
    /// The client's peer id.
    #[serde(rename = "Client")]
    pub client: PeerId,
    /// Blocks sent so far (where the client continues after a resume).
    #[serde(rename = "BlocksSent", default)]
    pub blocks_sent: u64,
    /// Bytes of block data sent so far.
    #[serde(rename = "BytesSent", default)]
    pub bytes_sent: u64,
    /// Everything received, cumulatively.
    #[serde(rename = "FundsReceived", default)]
    pub funds_received: TokenAmount,
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
    /// Why the deal is failing or failed, or who cancelled it.
    #[serde(rename = "Error", default)]
    pub error: Option<DealError>,
}

/// At most this many received amounts are kept in a deal's record.
pub const MAX_RECEIVED_KEPT: usize = 1024;

impl ProviderState {
    /// A new deal's record, for a proposal from `client`.
    pub fn new(proposal: DealProposal, client: PeerId) -> Self {
        ProviderState {
            status: S::New,
            proposal: DealProposal {
                resume: None,
                ..proposal
            },
            client,
            blocks_sent: 0,
            bytes_sent: 0,
            funds_received: TokenAmount::zero(),
            lane: None,
            received: Vec::new(),
            resumes: 0,
            error: None,
        }
    }

    /// The deal's status.
    pub fn status(&self) -> ProviderStatus {
        self.status
    }

    /// The error text, or empty (go-fil-markets' `Message`).
    pub fn message(&self) -> String {
        self.error
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// How the deal ended, once it has.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.status {
            S::Completed => Some(Outcome::Completed),
            S::Cancelled => Some(Outcome::Cancelled),
            S::Errored | S::Rejected | S::DealNotFound => Some(Outcome::Failed),
            _ => None,
        }
    }
}

impl HasStatus for ProviderState {
    type Status = ProviderStatus;
    fn status(&self) -> ProviderStatus {
        self.status
    }
    fn set_status(&mut self, status: ProviderStatus) {
        self.status = status;
    }
}

rm_fsm::named_enum! {
    /// The kinds of [`ProviderEvent`], one per variant: what the table's rules name.
    pub enum ProviderEventKind: Kind {
        Received, Accepted, UnsealPaymentRequested, Rejected, NotFound, Resumed, Unsealed,
        BlocksSent, PaymentRequested, BlocksCompleted, LastPaymentRequested, PaymentReceived,
        PartialPaymentReceived, Completed, Failed, Errored, ClientCancelled, Closed,
    }
}

/// What happens to a provider deal.
#[derive(Clone, Debug, PartialEq)]
pub enum ProviderEvent {
    /// The payload is here; the terms are checked next.
    Received,
    /// Accepted; the payload is unsealed before any data.
    Accepted,
    /// Accepted; the unseal price is due before any data.
    UnsealPaymentRequested,
    /// Rejected (terms, selector, the decider).
    Rejected(DealError),
    /// The payload is not here.
    NotFound(DealError),
    /// The client continues on a new stream from these totals.
    Resumed {
        /// Blocks the client has.
        blocks: u64,
        /// Bytes the client has.
        bytes: u64,
    },
    /// Unsealing finished; the data can be read.
    Unsealed,
    /// Blocks were read for the client: the totals after this response.
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
    /// Everything sent and paid.
    Completed,
    /// The deal fails; the client is told before it ends `Errored`.
    Failed(DealError),
    /// The deal ends `Errored` at once (the client knows, or cannot be told).
    Errored(DealError),
    /// The client cancelled.
    ClientCancelled(String),
    /// Failing or cancelling finished.
    Closed,
}

impl rm_fsm::Event for ProviderEvent {
    type Kind = ProviderEventKind;
    fn kind(&self) -> ProviderEventKind {
        use ProviderEventKind as K;
        match self {
            ProviderEvent::Received => K::Received,
            ProviderEvent::Accepted => K::Accepted,
            ProviderEvent::UnsealPaymentRequested => K::UnsealPaymentRequested,
            ProviderEvent::Rejected(_) => K::Rejected,
            ProviderEvent::NotFound(_) => K::NotFound,
            ProviderEvent::Resumed { .. } => K::Resumed,
            ProviderEvent::Unsealed => K::Unsealed,
            ProviderEvent::BlocksSent { .. } => K::BlocksSent,
            ProviderEvent::PaymentRequested => K::PaymentRequested,
            ProviderEvent::BlocksCompleted => K::BlocksCompleted,
            ProviderEvent::LastPaymentRequested => K::LastPaymentRequested,
            ProviderEvent::PaymentReceived { .. } => K::PaymentReceived,
            ProviderEvent::PartialPaymentReceived { .. } => K::PartialPaymentReceived,
            ProviderEvent::Completed => K::Completed,
            ProviderEvent::Failed(_) => K::Failed,
            ProviderEvent::Errored(_) => K::Errored,
            ProviderEvent::ClientCancelled(_) => K::ClientCancelled,
            ProviderEvent::Closed => K::Closed,
        }
    }
}

/// The provider machine's table type.
pub type ProviderTable = Table<ProviderState, ProviderEvent>;

type R = Rule<ProviderState, ProviderEvent>;

fn record_error(deal: &mut ProviderState, event: &ProviderEvent) -> Result<(), String> {
    deal.error = Some(match event {
        ProviderEvent::Rejected(e)
        | ProviderEvent::NotFound(e)
        | ProviderEvent::Failed(e)
        | ProviderEvent::Errored(e) => e.clone(),
        ProviderEvent::ClientCancelled(reason) => {
            DealError::cancelled(rm_types::Side::Client, reason)
        }
        _ => return Err("not an error event".into()),
    });
    Ok(())
}

fn record_resume(deal: &mut ProviderState, event: &ProviderEvent) -> Result<(), String> {
    let ProviderEvent::Resumed { blocks, bytes } = event else {
        return Err("not Resumed".into());
    };
    // The core bounds the claim before it gets here: at most what the record says was
    // sent, or, after a restart, at most what may have been sent unwritten
    // (`DealConfig::progress_write_bytes` and one response) beyond it.
    deal.blocks_sent = *blocks;
    deal.bytes_sent = *bytes;
    deal.resumes += 1;
    Ok(())
}

fn record_sent(deal: &mut ProviderState, event: &ProviderEvent) -> Result<(), String> {
    let ProviderEvent::BlocksSent { blocks, bytes } = event else {
        return Err("not BlocksSent".into());
    };
    if *blocks < deal.blocks_sent || *bytes < deal.bytes_sent {
        return Err("sent totals may not decrease".into());
    }
    deal.blocks_sent = *blocks;
    deal.bytes_sent = *bytes;
    Ok(())
}

fn record_payment(deal: &mut ProviderState, event: &ProviderEvent) -> Result<(), String> {
    let (ProviderEvent::PaymentReceived { received, lane }
    | ProviderEvent::PartialPaymentReceived { received, lane }) = event
    else {
        return Err("not a payment".into());
    };
    if received.is_negative() {
        return Err("negative payment".into());
    }
    match &deal.lane {
        Some(known) if known != lane => return Err("payment on another lane".into()),
        Some(_) => {}
        None => deal.lane = Some(lane.clone()),
    }
    deal.funds_received += received;
    if received.is_positive() {
        if deal.received.len() >= MAX_RECEIVED_KEPT {
            deal.received.remove(0);
        }
        deal.received.push(received.clone());
    }
    Ok(())
}

/// Statuses in which data may be sent or money awaited (a resume continues from there).
const DATA: [ProviderStatus; 6] = [
    S::Unsealed,
    S::Ongoing,
    S::FundsNeeded,
    S::BlocksComplete,
    S::FundsNeededLastPayment,
    S::Finalizing,
];

/// Statuses from which a deal can fail.
const LIVE: [ProviderStatus; 10] = [
    S::New,
    S::WaitForAcceptance,
    S::FundsNeededUnseal,
    S::Unsealing,
    S::Unsealed,
    S::Ongoing,
    S::FundsNeeded,
    S::BlocksComplete,
    S::FundsNeededLastPayment,
    S::Finalizing,
];

fn of<const N: usize>(statuses: [ProviderStatus; N]) -> Source<ProviderStatus> {
    Source::of(statuses)
}

fn build() -> ProviderTable {
    use ProviderEventKind as K;
    let rules: Vec<R> = vec![
        R::new(K::Received, of([S::New]), Dest::To(S::WaitForAcceptance))
            .doc("the payload is here; terms and the decider next"),
        R::new(
            K::Accepted,
            of([S::WaitForAcceptance]),
            Dest::To(S::Unsealing),
        )
        .doc("writes Accepted; the payload is unsealed before any data"),
        R::new(
            K::UnsealPaymentRequested,
            of([S::WaitForAcceptance]),
            Dest::To(S::FundsNeededUnseal),
        )
        .doc("writes FundsNeededUnseal, PaymentOwed = unseal price"),
        R::new(
            K::Rejected,
            of([S::WaitForAcceptance]),
            Dest::To(S::Rejected),
        )
        .action(record_error)
        .doc("terms below the ask, a bad selector, or the decider said no"),
        R::new(
            K::NotFound,
            of([S::New, S::WaitForAcceptance]),
            Dest::To(S::DealNotFound),
        )
        .action(record_error),
        R::new(K::Resumed, of(DATA), Dest::To(S::Ongoing))
            .action(record_resume)
            .doc("BlocksSent, BytesSent = the client's totals; continue from there"),
        R::new(
            K::Resumed,
            of([
                S::New,
                S::WaitForAcceptance,
                S::FundsNeededUnseal,
                S::Unsealing,
                S::Failing,
                S::Cancelling,
            ]),
            Dest::Stay,
        )
        .action(record_resume)
        .doc("nothing sent yet, or the new stream finishes the deal"),
        R::new(K::Unsealed, of([S::Unsealing]), Dest::To(S::Unsealed)),
        R::new(
            K::BlocksSent,
            of([S::Unsealed, S::Ongoing]),
            Dest::To(S::Ongoing),
        )
        .action(record_sent)
        .doc("BlocksSent, BytesSent = totals after this response"),
        R::new(
            K::PaymentRequested,
            of([S::Unsealed, S::Ongoing]),
            Dest::To(S::FundsNeeded),
        )
        .doc("credit used up: sent ≥ credit_limit(funds)"),
        R::new(
            K::BlocksCompleted,
            of([S::Unsealed, S::Ongoing]),
            Dest::To(S::BlocksComplete),
        ),
        R::new(
            K::LastPaymentRequested,
            of([S::BlocksComplete]),
            Dest::To(S::FundsNeededLastPayment),
        )
        .doc("everything sent; the full balance is due"),
        R::new(
            K::PaymentReceived,
            of([S::FundsNeeded]),
            Dest::To(S::Ongoing),
        )
        .action(record_payment)
        .doc("FundsReceived += received"),
        R::new(K::PaymentReceived, of([S::Ongoing]), Dest::Stay)
            .action(record_payment)
            .doc("paid while blocks go out (asked early): FundsReceived += received"),
        R::new(
            K::PaymentReceived,
            of([S::FundsNeededLastPayment]),
            Dest::To(S::Finalizing),
        )
        .action(record_payment),
        R::new(
            K::PaymentReceived,
            of([S::FundsNeededUnseal]),
            Dest::To(S::Unsealing),
        )
        .action(record_payment)
        .doc("unseal price paid"),
        R::new(
            K::PartialPaymentReceived,
            of([S::Failing, S::Cancelling]),
            Dest::Stay,
        )
        .action(record_payment)
        .doc("a voucher saved while the deal ends: the money is recorded"),
        R::new(
            K::PartialPaymentReceived,
            of([
                S::FundsNeeded,
                S::FundsNeededLastPayment,
                S::FundsNeededUnseal,
            ]),
            Dest::Stay,
        )
        .action(record_payment)
        .doc("FundsReceived += received; writes the remainder owed"),
        R::new(
            K::Completed,
            of([S::BlocksComplete, S::Finalizing]),
            Dest::To(S::Completed),
        )
        .doc("recorded before `Completed` is written"),
        R::new(K::Failed, of(LIVE), Dest::To(S::Failing))
            .action(record_error)
            .doc("writes Errored with the reason, then Errored"),
        R::new(K::Failed, of([S::Failing, S::Cancelling]), Dest::Stay),
        R::new(K::Errored, Source::any(), Dest::To(S::Errored))
            .action(record_error)
            .doc("the client failed, or did not resume in time"),
        R::new(K::ClientCancelled, of(LIVE), Dest::To(S::Cancelling)).action(record_error),
        R::new(
            K::ClientCancelled,
            of([S::Failing, S::Cancelling]),
            Dest::Stay,
        ),
        R::new(K::Closed, of([S::Cancelling]), Dest::To(S::Cancelled)),
        R::new(K::Closed, of([S::Failing]), Dest::To(S::Errored)),
    ];
    Table::new(rules, ProviderStatus::FINAL).expect("the provider table is well formed")
}

/// The provider's transition table (built once).
pub fn table() -> &'static ProviderTable {
    static TABLE: OnceLock<ProviderTable> = OnceLock::new();
    TABLE.get_or_init(build)
}

/// The generated documentation of the table (`docs/state-machines/provider.md`).
pub fn markdown() -> String {
    format!(
        "# Provider deal state machine\n\n\
         <!-- Generated by `cargo xtask fsm-docs` from crates/rm-provider/src/fsm.rs. Do not edit. -->\n\n\
         A deal starts in `New` when a proposal is read. `WaitForAcceptance` is where the \
         terms and the custom decider are checked. Each row: the event, the statuses it \
         applies in (`*` = any other non-final status), where it goes, and what it records \
         or writes. The deal core (`crates/rm-provider/src/deal.rs`) decides which event \
         happens; this table decides what it does to the record.\n\n{}",
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
    fn every_status_is_reachable_and_can_end_and_every_event_has_a_rule() {
        assert_eq!(table().check(S::New), Ok(()));
    }

    #[test]
    fn wire_statuses_are_distinct_and_finals_agree() {
        let mut seen = Vec::new();
        for &status in <ProviderStatus as rm_fsm::Status>::ALL {
            let wire = status.wire();
            assert!(!seen.contains(&wire), "{status:?}");
            seen.push(wire);
            assert_eq!(status.is_final(), wire.is_terminal(), "{status:?}");
            assert_eq!(status.is_final(), table().is_final_status(status));
        }
    }

    #[test]
    fn a_huge_cancel_reason_is_cut_before_it_is_stored() {
        let cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
            .parse()
            .unwrap();
        let proposal = DealProposal::new(
            cid,
            rm_types::DealId(1),
            rm_types::Params::new(TokenAmount::zero(), 0, 0),
        );
        let mut state = ProviderState::new(proposal, PeerId::default());
        state.status = S::Ongoing;
        let start = rm_fsm::Snapshot { seq: 3, state };
        let reason = "x".repeat(256 << 10);
        let next = rm_fsm::step(table(), &start, &ProviderEvent::ClientCancelled(reason)).unwrap();
        let stored = rm_types::codec::to_vec(&next.state).unwrap();
        assert!(stored.len() < 2048, "{} bytes stored", stored.len());
        let error = next.state.error.unwrap();
        assert!(
            error.to_string().len() <= rm_types::MAX_REASON_LEN + 64,
            "{error}"
        );
    }
}
