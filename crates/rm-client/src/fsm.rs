//! The client deal machine as data: its statuses, its events, the record it persists and
//! its transition table.
//!
//! `docs/state-machines/client.md` is generated from [`table`] by `cargo xtask fsm-docs`.
//! The statuses are the client's own; [`ClientStatus::wire`] maps them to go-fil-markets'
//! `DealStatus` numbers where a status must be shown in their terms.

use std::sync::OnceLock;

use rm_fsm::{Dest, HasStatus, Rule, Source, Table};
use rm_types::{
    Address, Cid, DealError, DealProposal, DealStatus, Outcome, PaymentInfo, PeerId, SignedVoucher,
    TokenAmount,
};
use serde::{Deserialize, Serialize};

rm_fsm::named_enum! {
    /// Where a client deal is. The last five are final.
    pub enum ClientStatus: Status {
        /// Begun; the proposal is not written yet.
        New,
        /// Proposed; waiting for the provider's answer.
        WaitForAcceptance,
        /// Accepted; the payment channel is set up next.
        Accepted,
        /// A new payment channel is being created.
        PaymentChannelCreating,
        /// An existing channel gets the deal's funds.
        PaymentChannelAddingInitialFunds,
        /// A lane is being allocated for the deal's vouchers.
        PaymentChannelAllocatingLane,
        /// Blocks flow.
        Ongoing,
        /// The provider stopped at a payment point; a voucher is being made.
        FundsNeeded,
        /// Every block arrived; the last payment is being made.
        FundsNeededLastPayment,
        /// Every block arrived and was verified; waiting for the provider's last word.
        BlocksComplete,
        /// The last payment was sent; waiting for `Completed`.
        Finalizing,
        /// A voucher could not be made; checking what the channel holds.
        CheckFunds,
        /// The deal's budget or the channel ran out: waiting for funds or a cancel.
        InsufficientFunds,
        /// More funds are on their way to the channel.
        PaymentChannelAddingFunds,
        /// Failing: telling the provider, then `Errored`.
        Failing,
        /// Cancelling: telling the provider, then `Cancelled`.
        Cancelling,
        /// Every block verified, everything owed paid.
        Completed,
        /// Failed (the error says why).
        Errored,
        /// The provider rejected the proposal.
        Rejected,
        /// The provider does not have the payload.
        DealNotFound,
        /// Cancelled by either side.
        Cancelled,
    }
}

use ClientStatus as S;

impl ClientStatus {
    /// The statuses a deal ends in.
    pub const FINAL: [ClientStatus; 5] = [
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
            S::Accepted => DealStatus::Accepted,
            S::PaymentChannelCreating => DealStatus::PaymentChannelCreating,
            S::PaymentChannelAddingInitialFunds => DealStatus::PaymentChannelAddingInitialFunds,
            S::PaymentChannelAllocatingLane => DealStatus::PaymentChannelAllocatingLane,
            S::Ongoing => DealStatus::Ongoing,
            S::FundsNeeded => DealStatus::FundsNeeded,
            S::FundsNeededLastPayment => DealStatus::FundsNeededLastPayment,
            S::BlocksComplete => DealStatus::BlocksComplete,
            S::Finalizing => DealStatus::Finalizing,
            S::CheckFunds => DealStatus::CheckFunds,
            S::InsufficientFunds => DealStatus::InsufficientFunds,
            S::PaymentChannelAddingFunds => DealStatus::PaymentChannelAddingFunds,
            S::Failing => DealStatus::Failing,
            S::Cancelling => DealStatus::Cancelling,
            S::Completed => DealStatus::Completed,
            S::Errored => DealStatus::Errored,
            S::Rejected => DealStatus::Rejected,
            S::DealNotFound => DealStatus::DealNotFound,
            S::Cancelled => DealStatus::Cancelled,
        }
    }

    /// Statuses in which the payment channel is not set up yet.
    pub(crate) fn before_channel(self) -> bool {
        matches!(
            self,
            S::Accepted
                | S::PaymentChannelCreating
                | S::PaymentChannelAddingInitialFunds
                | S::PaymentChannelAllocatingLane
        )
    }
}

/// A client deal as persisted: everything needed to resume it after a restart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientState {
    /// Where the deal is.
    #[serde(rename = "Status")]
    pub status: ClientStatus,
    /// The proposal sent (without `Resume`).
    #[serde(rename = "Proposal")]
    pub proposal: DealProposal,
    /// The provider's peer id.
    #[serde(rename = "Provider")]
    pub provider: PeerId,
    /// The provider's addresses (multiaddr strings), to dial it again.
    #[serde(rename = "ProviderAddrs", default)]
    pub provider_addrs: Vec<String>,
    /// The client's wallet (payment channel sender).
    #[serde(rename = "ClientWallet")]
    pub client_wallet: Address,
    /// The provider's payment address.
    #[serde(rename = "MinerWallet")]
    pub miner_wallet: Address,
    /// The most the client will spend on this deal.
    #[serde(rename = "TotalFunds")]
    pub total_funds: TokenAmount,
    /// Channel and lane, once set up.
    #[serde(rename = "PaymentInfo", default)]
    pub payment_info: Option<PaymentInfo>,
    /// The chain message the client waits on (channel creation or top-up).
    #[serde(rename = "WaitMsg", default)]
    pub wait_msg: Option<Cid>,
    /// Blocks verified and stored so far (where a resumed deal continues).
    #[serde(rename = "BlocksReceived", default)]
    pub blocks_received: u64,
    /// Bytes of block data verified and stored so far.
    #[serde(rename = "BytesReceived", default)]
    pub bytes_received: u64,
    /// Whether the last block of the traversal was verified.
    #[serde(rename = "AllBlocksReceived", default)]
    pub all_blocks_received: bool,
    /// What the provider asked for and was not paid yet.
    #[serde(rename = "PaymentRequested", default)]
    pub payment_requested: TokenAmount,
    /// Whether that request is for the last payment.
    #[serde(rename = "LastPaymentRequested", default)]
    pub last_payment_requested: bool,
    /// The cumulative amount of the last voucher made.
    #[serde(rename = "FundsSpent", default)]
    pub funds_spent: TokenAmount,
    /// How much the channel lacked when a voucher could not be made.
    #[serde(rename = "VoucherShortfall", default)]
    pub voucher_shortfall: TokenAmount,
    /// The last voucher made, sent again as is when the provider did not get it.
    #[serde(rename = "LastVoucher", default)]
    pub last_voucher: Option<SignedVoucher>,
    /// Every voucher amount made, in order (cumulative; at most [`MAX_VOUCHERS_KEPT`], the
    /// oldest dropped first).
    #[serde(rename = "Vouchers", default)]
    pub vouchers: Vec<TokenAmount>,
    /// Why the deal is failing or failed, or who cancelled it.
    #[serde(rename = "Error", default)]
    pub error: Option<DealError>,
}

/// At most this many voucher amounts are kept in a deal's record.
pub const MAX_VOUCHERS_KEPT: usize = 1024;

impl ClientState {
    /// A new deal's record.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        proposal: DealProposal,
        provider: PeerId,
        provider_addrs: Vec<String>,
        client_wallet: Address,
        miner_wallet: Address,
        total_funds: TokenAmount,
    ) -> Self {
        ClientState {
            status: S::New,
            proposal,
            provider,
            provider_addrs,
            client_wallet,
            miner_wallet,
            total_funds,
            payment_info: None,
            wait_msg: None,
            blocks_received: 0,
            bytes_received: 0,
            all_blocks_received: false,
            payment_requested: TokenAmount::zero(),
            last_payment_requested: false,
            funds_spent: TokenAmount::zero(),
            voucher_shortfall: TokenAmount::zero(),
            last_voucher: None,
            vouchers: Vec::new(),
            error: None,
        }
    }

    /// The deal's status.
    pub fn status(&self) -> ClientStatus {
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

impl HasStatus for ClientState {
    type Status = ClientStatus;
    fn status(&self) -> ClientStatus {
        self.status
    }
    fn set_status(&mut self, status: ClientStatus) {
        self.status = status;
    }
}

rm_fsm::named_enum! {
    /// The kinds of [`ClientEvent`], one per variant: what the table's rules name.
    pub enum ClientEventKind: Kind {
        Proposed, Accepted, Rejected, NotFound, ChannelSkipped, ChannelCreating,
        ChannelAddingFunds, ChannelReady, LaneAllocated, BlocksReceived, AllBlocksReceived,
        PaymentRequested, LastPaymentRequested, PaymentSent, VoucherShortfall, FundsExpended,
        FundsAdded, Completed, Failed, Errored, Cancelled, ProviderCancelled, Closed,
    }
}

/// What happens to a client deal.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// The proposal was written.
    Proposed,
    /// The provider accepted; it wants this much first (the unseal price) or nothing.
    Accepted(TokenAmount),
    /// The provider rejected the proposal.
    Rejected(DealError),
    /// The provider does not have the payload.
    NotFound(DealError),
    /// Nothing to pay: no payment channel.
    ChannelSkipped,
    /// A new payment channel is being created; wait for this message.
    ChannelCreating(Cid),
    /// Funds are being added to an existing channel; wait for this message.
    ChannelAddingFunds {
        /// The channel.
        channel: Address,
        /// The message to wait for.
        wait: Cid,
        /// Funds added to the deal's budget, if any.
        added: TokenAmount,
    },
    /// The payment channel holds the funds.
    ChannelReady(Address),
    /// A lane was allocated for the deal's vouchers.
    LaneAllocated(u64),
    /// Verified blocks were stored: the totals so far.
    BlocksReceived {
        /// Blocks verified and stored so far.
        blocks: u64,
        /// Bytes of block data verified and stored so far.
        bytes: u64,
    },
    /// The last block of the traversal was verified.
    AllBlocksReceived,
    /// The provider stopped at a payment point and asks this much.
    PaymentRequested(TokenAmount),
    /// The provider sent everything and asks for the rest.
    LastPaymentRequested(TokenAmount),
    /// A voucher for this cumulative total was made (recorded before it is sent).
    PaymentSent {
        /// The voucher.
        voucher: SignedVoucher,
        /// Its cumulative amount.
        total: TokenAmount,
    },
    /// The channel cannot cover the voucher; this much is missing.
    VoucherShortfall(TokenAmount),
    /// Nothing more can be paid until funds are added; this much is missing.
    FundsExpended(TokenAmount),
    /// Funds were added to the deal's budget (the channel holds them): check again.
    FundsAdded(TokenAmount),
    /// The provider said `Completed` and every block was verified.
    Completed,
    /// The deal fails; the provider is told before it ends `Errored`.
    Failed(DealError),
    /// The deal ends `Errored` at once (the provider knows, or cannot be told).
    Errored(DealError),
    /// The user cancelled; the provider is told before it ends `Cancelled`.
    Cancelled(String),
    /// The provider cancelled.
    ProviderCancelled(String),
    /// Failing or cancelling finished (the provider was told, or could not be).
    Closed,
}

impl rm_fsm::Event for ClientEvent {
    type Kind = ClientEventKind;
    fn kind(&self) -> ClientEventKind {
        use ClientEventKind as K;
        match self {
            ClientEvent::Proposed => K::Proposed,
            ClientEvent::Accepted(_) => K::Accepted,
            ClientEvent::Rejected(_) => K::Rejected,
            ClientEvent::NotFound(_) => K::NotFound,
            ClientEvent::ChannelSkipped => K::ChannelSkipped,
            ClientEvent::ChannelCreating(_) => K::ChannelCreating,
            ClientEvent::ChannelAddingFunds { .. } => K::ChannelAddingFunds,
            ClientEvent::ChannelReady(_) => K::ChannelReady,
            ClientEvent::LaneAllocated(_) => K::LaneAllocated,
            ClientEvent::BlocksReceived { .. } => K::BlocksReceived,
            ClientEvent::AllBlocksReceived => K::AllBlocksReceived,
            ClientEvent::PaymentRequested(_) => K::PaymentRequested,
            ClientEvent::LastPaymentRequested(_) => K::LastPaymentRequested,
            ClientEvent::PaymentSent { .. } => K::PaymentSent,
            ClientEvent::VoucherShortfall(_) => K::VoucherShortfall,
            ClientEvent::FundsExpended(_) => K::FundsExpended,
            ClientEvent::FundsAdded(_) => K::FundsAdded,
            ClientEvent::Completed => K::Completed,
            ClientEvent::Failed(_) => K::Failed,
            ClientEvent::Errored(_) => K::Errored,
            ClientEvent::Cancelled(_) => K::Cancelled,
            ClientEvent::ProviderCancelled(_) => K::ProviderCancelled,
            ClientEvent::Closed => K::Closed,
        }
    }
}

/// The client machine's table type.
pub type ClientTable = Table<ClientState, ClientEvent>;

type R = Rule<ClientState, ClientEvent>;

fn record_error(deal: &mut ClientState, event: &ClientEvent) -> Result<(), String> {
    deal.error = Some(match event {
        ClientEvent::Rejected(e)
        | ClientEvent::NotFound(e)
        | ClientEvent::Failed(e)
        | ClientEvent::Errored(e) => e.clone(),
        ClientEvent::Cancelled(reason) => DealError::cancelled(rm_types::Side::Client, reason),
        ClientEvent::ProviderCancelled(reason) => {
            DealError::cancelled(rm_types::Side::Provider, reason)
        }
        ClientEvent::FundsExpended(short) => DealError::payment(format!(
            "not enough current or pending funds in payment channel, shortfall of {short}"
        )),
        _ => return Err("not an error event".into()),
    });
    Ok(())
}

fn record_accepted(deal: &mut ClientState, event: &ClientEvent) -> Result<(), String> {
    let ClientEvent::Accepted(owed) = event else {
        return Err("not Accepted".into());
    };
    deal.payment_requested = owed.clone();
    Ok(())
}

fn record_wait(deal: &mut ClientState, event: &ClientEvent) -> Result<(), String> {
    match event {
        ClientEvent::ChannelCreating(wait) => deal.wait_msg = Some(*wait),
        ClientEvent::ChannelAddingFunds {
            channel,
            wait,
            added,
        } => {
            if let Some(info) = &deal.payment_info
                && &info.pay_ch != channel
            {
                return Err(format!(
                    "funds added to channel {channel}, not the deal's channel {}",
                    info.pay_ch
                ));
            }
            deal.wait_msg = Some(*wait);
            if deal.payment_info.is_none() {
                deal.payment_info = Some(PaymentInfo {
                    pay_ch: channel.clone(),
                    lane: 0,
                });
            }
            deal.total_funds += added;
        }
        _ => return Err("not a channel event".into()),
    }
    Ok(())
}

fn record_channel(deal: &mut ClientState, event: &ClientEvent) -> Result<(), String> {
    let ClientEvent::ChannelReady(channel) = event else {
        return Err("not ChannelReady".into());
    };
    let lane = match &deal.payment_info {
        Some(info)
            if &info.pay_ch != channel
                && matches!(deal.status, S::PaymentChannelAddingFunds | S::CheckFunds) =>
        {
            return Err(format!(
                "channel {channel} is not the deal's channel {}",
                info.pay_ch
            ));
        }
        Some(info) => info.lane,
        None => 0,
    };
    deal.payment_info = Some(PaymentInfo {
        pay_ch: channel.clone(),
        lane,
    });
    deal.wait_msg = None;
    deal.voucher_shortfall = TokenAmount::zero();
    Ok(())
}

fn record_lane(deal: &mut ClientState, event: &ClientEvent) -> Result<(), String> {
    let ClientEvent::LaneAllocated(lane) = event else {
        return Err("not LaneAllocated".into());
    };
    let info = deal
        .payment_info
        .as_mut()
        .ok_or("lane allocated without a payment channel")?;
    info.lane = *lane;
    Ok(())
}

fn record_blocks(deal: &mut ClientState, event: &ClientEvent) -> Result<(), String> {
    let ClientEvent::BlocksReceived { blocks, bytes } = event else {
        return Err("not BlocksReceived".into());
    };
    if *blocks < deal.blocks_received || *bytes < deal.bytes_received {
        return Err("received totals may not decrease".into());
    }
    if deal.all_blocks_received {
        return Err("every block was received already".into());
    }
    deal.blocks_received = *blocks;
    deal.bytes_received = *bytes;
    Ok(())
}

fn record_all_blocks(deal: &mut ClientState, _: &ClientEvent) -> Result<(), String> {
    deal.all_blocks_received = true;
    Ok(())
}

fn record_request(deal: &mut ClientState, event: &ClientEvent) -> Result<(), String> {
    match event {
        ClientEvent::PaymentRequested(owed) => deal.payment_requested = owed.clone(),
        ClientEvent::LastPaymentRequested(owed) => {
            deal.payment_requested = owed.clone();
            deal.last_payment_requested = true;
        }
        _ => return Err("not a payment request".into()),
    }
    Ok(())
}

fn record_payment(deal: &mut ClientState, event: &ClientEvent) -> Result<(), String> {
    let ClientEvent::PaymentSent { voucher, total } = event else {
        return Err("not PaymentSent".into());
    };
    let params = &deal.proposal.params;
    if total < &deal.funds_spent {
        return Err(format!(
            "voucher total {total} is below what was already spent ({})",
            deal.funds_spent
        ));
    }
    if total > &params.amount_for_bytes(deal.bytes_received) {
        return Err(format!(
            "voucher total {total} pays for more than the {} verified bytes",
            deal.bytes_received
        ));
    }
    if total > &deal.total_funds {
        return Err(format!(
            "voucher total {total} is over the deal's budget {}",
            deal.total_funds
        ));
    }
    deal.funds_spent = total.clone();
    deal.payment_requested = TokenAmount::zero();
    if deal.last_voucher.as_ref() != Some(voucher) {
        if deal.vouchers.len() >= MAX_VOUCHERS_KEPT {
            deal.vouchers.remove(0);
        }
        deal.vouchers.push(total.clone());
    }
    deal.last_voucher = Some(voucher.clone());
    Ok(())
}

fn record_shortfall(deal: &mut ClientState, event: &ClientEvent) -> Result<(), String> {
    match event {
        ClientEvent::VoucherShortfall(short) => deal.voucher_shortfall = short.clone(),
        ClientEvent::FundsExpended(short) => {
            deal.voucher_shortfall = short.clone();
            record_error(deal, event)?;
        }
        _ => return Err("not a shortfall".into()),
    }
    Ok(())
}

fn record_added(deal: &mut ClientState, event: &ClientEvent) -> Result<(), String> {
    let ClientEvent::FundsAdded(added) = event else {
        return Err("not FundsAdded".into());
    };
    deal.total_funds += added;
    deal.error = None;
    Ok(())
}

/// Statuses from which a deal can fail or be cancelled (every non-final one but the two
/// that are already ending).
const LIVE: [ClientStatus; 14] = [
    S::New,
    S::WaitForAcceptance,
    S::Accepted,
    S::PaymentChannelCreating,
    S::PaymentChannelAddingInitialFunds,
    S::PaymentChannelAllocatingLane,
    S::Ongoing,
    S::FundsNeeded,
    S::FundsNeededLastPayment,
    S::BlocksComplete,
    S::Finalizing,
    S::CheckFunds,
    S::InsufficientFunds,
    S::PaymentChannelAddingFunds,
];

/// Statuses in which blocks may arrive: data flows from acceptance on, while the channel
/// is set up too, and the last blocks of a deal the provider completed before it heard of
/// a cancel.
const RECEIVING: [ClientStatus; 6] = [
    S::Accepted,
    S::PaymentChannelCreating,
    S::PaymentChannelAddingInitialFunds,
    S::PaymentChannelAllocatingLane,
    S::Ongoing,
    S::Cancelling,
];

fn of<const N: usize>(statuses: [ClientStatus; N]) -> Source<ClientStatus> {
    Source::of(statuses)
}

fn build() -> ClientTable {
    use ClientEventKind as K;
    let rules: Vec<R> = vec![
        R::new(K::Proposed, of([S::New]), Dest::To(S::WaitForAcceptance))
            .doc("proposal written; wait for the provider's answer"),
        R::new(K::Accepted, of([S::WaitForAcceptance]), Dest::To(S::Accepted))
            .action(record_accepted)
            .doc("PaymentRequested = what is due first (the unseal price)"),
        R::new(K::Rejected, of([S::WaitForAcceptance]), Dest::To(S::Rejected))
            .action(record_error)
            .doc("Error = the provider's reason"),
        R::new(K::NotFound, of([S::WaitForAcceptance]), Dest::To(S::DealNotFound))
            .action(record_error),
        R::new(K::ChannelSkipped, of([S::Accepted]), Dest::To(S::Ongoing))
            .doc("zero total price: no channel, no vouchers"),
        R::new(
            K::ChannelCreating,
            of([S::Accepted]),
            Dest::To(S::PaymentChannelCreating),
        )
        .action(record_wait)
        .doc("WaitMsg = creation message"),
        R::new(
            K::ChannelAddingFunds,
            of([S::Accepted]),
            Dest::To(S::PaymentChannelAddingInitialFunds),
        )
        .action(record_wait)
        .doc("the pair's channel gets the deal's funds; WaitMsg"),
        R::new(
            K::ChannelAddingFunds,
            of([S::CheckFunds, S::InsufficientFunds]),
            Dest::To(S::PaymentChannelAddingFunds),
        )
        .action(record_wait)
        .doc("more funds on the way; TotalFunds += added"),
        R::new(
            K::ChannelReady,
            of([
                S::Accepted,
                S::PaymentChannelCreating,
                S::PaymentChannelAddingInitialFunds,
            ]),
            Dest::To(S::PaymentChannelAllocatingLane),
        )
        .action(record_channel)
        .doc("PaymentInfo.PayCh = channel"),
        R::new(
            K::ChannelReady,
            of([S::PaymentChannelAddingFunds, S::CheckFunds]),
            Dest::To(S::Ongoing),
        )
        .action(record_channel)
        .doc("funds available again; a pending payment request is answered next"),
        R::new(
            K::LaneAllocated,
            of([S::PaymentChannelAllocatingLane]),
            Dest::To(S::Ongoing),
        )
        .action(record_lane)
        .doc("PaymentInfo.Lane = lane; a request that came meanwhile is answered next"),
        R::new(K::BlocksReceived, of(RECEIVING), Dest::Stay)
            .action(record_blocks)
            .doc("verified totals, after the blocks are stored"),
        R::new(
            K::AllBlocksReceived,
            of([S::Ongoing]),
            Dest::To(S::BlocksComplete),
        )
        .action(record_all_blocks),
        R::new(
            K::AllBlocksReceived,
            of([
                S::Accepted,
                S::PaymentChannelCreating,
                S::PaymentChannelAddingInitialFunds,
                S::PaymentChannelAllocatingLane,
                S::Cancelling,
            ]),
            Dest::Stay,
        )
        .action(record_all_blocks)
        .doc("everything arrived before the channel was ready, or after a late cancel"),
        R::new(
            K::PaymentRequested,
            of([S::Ongoing]),
            Dest::To(S::FundsNeeded),
        )
        .action(record_request)
        .doc("PaymentRequested = owed"),
        R::new(
            K::PaymentRequested,
            of([
                S::Accepted,
                S::PaymentChannelCreating,
                S::PaymentChannelAddingInitialFunds,
                S::PaymentChannelAllocatingLane,
                S::FundsNeeded,
                S::CheckFunds,
                S::InsufficientFunds,
                S::PaymentChannelAddingFunds,
            ]),
            Dest::Stay,
        )
        .action(record_request)
        .doc("asked before the channel is ready or while funds are checked or added (answered once they are), or asked again on a new stream"),
        R::new(
            K::LastPaymentRequested,
            of([S::Ongoing, S::FundsNeeded, S::BlocksComplete, S::Finalizing]),
            Dest::To(S::FundsNeededLastPayment),
        )
        .action(record_request)
        .doc("PaymentRequested = owed; LastPaymentRequested"),
        R::new(
            K::LastPaymentRequested,
            of([
                S::Accepted,
                S::PaymentChannelCreating,
                S::PaymentChannelAddingInitialFunds,
                S::PaymentChannelAllocatingLane,
                S::FundsNeededLastPayment,
                S::CheckFunds,
                S::InsufficientFunds,
                S::PaymentChannelAddingFunds,
            ]),
            Dest::Stay,
        )
        .action(record_request),
        R::new(K::PaymentSent, of([S::FundsNeeded]), Dest::To(S::Ongoing))
            .action(record_payment)
            .doc("FundsSpent = total; LastVoucher; recorded before it is sent"),
        R::new(K::PaymentSent, of([S::Ongoing]), Dest::Stay)
            .action(record_payment)
            .doc("an early request paid while blocks come"),
        R::new(
            K::PaymentSent,
            of([S::FundsNeededLastPayment]),
            Dest::To(S::Finalizing),
        )
        .action(record_payment),
        R::new(
            K::VoucherShortfall,
            of([S::FundsNeeded, S::FundsNeededLastPayment]),
            Dest::To(S::CheckFunds),
        )
        .action(record_shortfall),
        R::new(
            K::FundsExpended,
            of([S::CheckFunds]),
            Dest::To(S::InsufficientFunds),
        )
        .action(record_shortfall)
        .doc("wait for funds or a cancel"),
        R::new(
            K::FundsAdded,
            of([S::InsufficientFunds]),
            Dest::To(S::CheckFunds),
        )
        .action(record_added)
        .doc("TotalFunds += added"),
        R::new(
            K::Completed,
            of([
                S::BlocksComplete,
                S::Finalizing,
                S::FundsNeededLastPayment,
                S::Cancelling,
            ]),
            Dest::To(S::Completed),
        )
        .doc("every block verified, everything owed paid"),
        R::new(K::Failed, of(LIVE), Dest::To(S::Failing))
            .action(record_error)
            .doc("tell the provider (a failed cancel), then Errored"),
        R::new(K::Failed, of([S::Failing, S::Cancelling]), Dest::Stay),
        R::new(K::Errored, Source::any(), Dest::To(S::Errored))
            .action(record_error)
            .doc("the provider knows, or cannot be told"),
        R::new(K::Cancelled, of(LIVE), Dest::To(S::Cancelling))
            .action(record_error)
            .doc("tell the provider, then Cancelled"),
        R::new(K::Cancelled, of([S::Failing, S::Cancelling]), Dest::Stay),
        R::new(K::ProviderCancelled, Source::any(), Dest::To(S::Cancelled))
            .action(record_error),
        R::new(K::Closed, of([S::Cancelling]), Dest::To(S::Cancelled)),
        R::new(K::Closed, of([S::Failing]), Dest::To(S::Errored)),
    ];
    Table::new(rules, ClientStatus::FINAL).expect("the client table is well formed")
}

/// The client's transition table (built once).
pub fn table() -> &'static ClientTable {
    static TABLE: OnceLock<ClientTable> = OnceLock::new();
    TABLE.get_or_init(build)
}

/// The generated documentation of the table (`docs/state-machines/client.md`).
pub fn markdown() -> String {
    format!(
        "# Client deal state machine\n\n\
         <!-- Generated by `cargo xtask fsm-docs` from crates/rm-client/src/fsm.rs. Do not edit. -->\n\n\
         A deal starts in `New`. Each row: the event, the statuses it applies in (`*` = any \
         other non-final status), where it goes, and what it records. The deal core \
         (`crates/rm-client/src/deal.rs`) decides which event happens; this table decides \
         what it does to the record.\n\n{}",
        table().to_markdown()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rust-analyzer "sourcegen" pattern: `cargo xtask fsm-docs` runs this test with
    /// `RM_UPDATE_FSM_DOCS=1` to write the file; `cargo test` fails when it is stale.
    #[test]
    fn fsm_docs_are_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/state-machines/client.md");
        if let Err(stale) = rm_fsm::check_generated(&path, &markdown()) {
            panic!("{stale}");
        }
    }

    #[test]
    fn every_status_is_reachable_and_can_end_and_every_event_has_a_rule() {
        assert_eq!(table().check(S::New), Ok(()));
    }

    /// A provider that asks again (on a new stream, or for the last payment) while the
    /// client checks or adds funds: the request is recorded and answered once the funds
    /// are there, not an internal error (found by the pair harness under faults).
    #[test]
    fn a_payment_request_while_funds_are_checked_or_added_waits_for_them() {
        let proposal = DealProposal::new(
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
                .parse()
                .unwrap(),
            rm_types::DealId(1),
            rm_types::Params::new(TokenAmount::from_atto(1u64), 100, 100),
        );
        let mut state = ClientState::new(
            proposal,
            PeerId(vec![1]),
            Vec::new(),
            Address::new_id(100),
            Address::new_id(101),
            TokenAmount::from_atto(1000u64),
        );
        for status in [
            S::CheckFunds,
            S::InsufficientFunds,
            S::PaymentChannelAddingFunds,
        ] {
            state.status = status;
            state.last_payment_requested = false;
            let snapshot = rm_fsm::Snapshot {
                seq: 3,
                state: state.clone(),
            };
            let owed = TokenAmount::from_atto(70u64);
            for event in [
                ClientEvent::PaymentRequested(owed.clone()),
                ClientEvent::LastPaymentRequested(owed.clone()),
            ] {
                let next = rm_fsm::step(table(), &snapshot, &event)
                    .unwrap_or_else(|e| panic!("{status:?} {event:?}: {e:?}"));
                assert_eq!(next.state.status, status);
                assert_eq!(next.state.payment_requested, owed);
            }
        }
    }

    #[test]
    fn wire_statuses_are_distinct_and_finals_agree() {
        let mut seen = Vec::new();
        for &status in <ClientStatus as rm_fsm::Status>::ALL {
            let wire = status.wire();
            assert!(!seen.contains(&wire), "{status:?}");
            seen.push(wire);
            assert_eq!(status.is_final(), wire.is_terminal(), "{status:?}");
            assert_eq!(status.is_final(), table().is_final_status(status));
        }
    }
}
