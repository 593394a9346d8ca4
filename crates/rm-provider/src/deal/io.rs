//! The core's inputs and outputs: its limits ([`DealConfig`]), the actions it asks the
//! driver for ([`ProviderAction`]) and the answers that carry data back to it.

use std::time::Duration;

use rm_fsm::Snapshot;
use rm_types::{
    Address, Block, DealProposal, DealResponse, DealStatus, Outcome, SignedVoucher, TokenAmount,
};

use crate::fsm::{ProviderEvent, ProviderState, ProviderStatus as S};

/// Limits and deadlines of one deal.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DealConfig {
    /// Most bytes of block data per response (must fit the network's message size).
    /// Default 4 MiB.
    pub max_response_bytes: usize,
    /// Most blocks per response. Default 1024.
    pub max_blocks_per_response: usize,
    /// How long the provider waits for a payment (the client may be adding funds).
    /// Default 10 minutes.
    pub payment_timeout: Duration,
    /// How long a deal whose stream broke waits for the client to resume it. Default 10
    /// minutes.
    pub resume_window: Duration,
    /// Most bytes of block data per second, or no limit (the default).
    pub max_bytes_per_second: Option<u64>,
    /// Most times a client may resume the deal on a new stream; one more fails the deal,
    /// unless the deal is being cancelled or failed already (the client comes back to hear
    /// that it is through, and the deal ends). Default 32.
    pub max_resumes: u32,
    /// While the piece is unsealed (which may take hours for a sealed sector), the
    /// provider repeats a `DealResponse` with status `Unsealing` this often, so the
    /// client's read deadline (30 s by default) sees the deal alive. Default 10 s.
    pub unsealing_interval: Duration,
    /// How many bytes of blocks sent may be counted in memory before they are written on
    /// their own. Progress is otherwise written with the next event that must be written
    /// anyway (a payment request or receipt, the last block, the end of the deal), so a
    /// crash forgets at most this much of what was sent, or one payment interval if that is
    /// smaller. What the client paid is never forgotten: payments are written when they
    /// arrive. Zero writes every response's progress. Default 16 MiB.
    pub progress_write_bytes: u64,
    /// Payment intervals of at least this many bytes are asked for early: when half of
    /// the interval is sent unpaid, the response carries the amount owed for everything
    /// sent (status `Ongoing`, `PaymentOwed` set) and blocks keep going, so the client's
    /// voucher travels while the rest of the interval does and the provider stops only if
    /// it has not arrived when the interval is used up. A client that does not pay early
    /// (an rm client older than early requests, or one with `pay_early` off in its
    /// `rm_client::DealConfig`) is asked again at the stop, as always. Never more than one interval is sent unpaid either way
    /// ([`Params::credit_limit`](rm_types::Params::credit_limit)). `None` never asks
    /// early. Default 2 MiB: go-fil-markets' default first interval (1 MiB) and smaller
    /// ones stop as go-fil-markets' providers do.
    pub ask_early_from: Option<u64>,
}

impl Default for DealConfig {
    fn default() -> Self {
        DealConfig {
            max_response_bytes: 4 << 20,
            max_blocks_per_response: 1024,
            payment_timeout: Duration::from_secs(600),
            resume_window: Duration::from_secs(600),
            max_bytes_per_second: None,
            max_resumes: 32,
            unsealing_interval: Duration::from_secs(10),
            progress_write_bytes: 16 << 20,
            ask_early_from: Some(2 << 20),
        }
    }
}

/// What the driver must do next (see the [module docs](crate::deal) for the contract).
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderAction {
    /// Write `snapshot` (reached by `event`, and by the events before it that came with no
    /// effect between them) to the deal's journal before anything else.
    Persist {
        /// The event applied last.
        event: ProviderEvent,
        /// The deal's new snapshot.
        snapshot: Box<Snapshot<ProviderState>>,
    },
    /// Tell the journal's subscribers of `event` and the snapshot it led to without
    /// writing anything: an event whose snapshot is persisted together with a later
    /// one's, by a [`ProviderAction::Persist`] that follows (at once when events were
    /// folded; at the next payment event, the end, or after `progress_write_bytes` for
    /// blocks sent).
    Publish {
        /// The event.
        event: ProviderEvent,
        /// The snapshot it led to.
        snapshot: Box<Snapshot<ProviderState>>,
    },
    /// Find out whether the payload (in the named piece, if any) is here; answer with
    /// [`ProviderDeal::handle_located`](super::ProviderDeal::handle_located).
    Locate,
    /// Ask the custom decider about the deal; answer with
    /// [`ProviderDeal::handle_decision`](super::ProviderDeal::handle_decision).
    Decide,
    /// Make the payload readable (unseal its piece); answer with
    /// [`ProviderDeal::handle_unsealed`](super::ProviderDeal::handle_unsealed).
    Unseal,
    /// Read the next blocks of the traversal, from block number `from`: at most
    /// `max_blocks` blocks and `max_bytes` bytes, and none after the block that brings the
    /// bytes read to `stop_after` or more. Answer with [`ProviderDeal::handle_read`](super::ProviderDeal::handle_read).
    ReadBlocks {
        /// The position in the traversal.
        from: u64,
        /// Most blocks.
        max_blocks: usize,
        /// Most bytes (the block that crosses it is the last).
        max_bytes: usize,
        /// Stop after the block that reaches this many bytes (the payment point).
        stop_after: Option<u64>,
    },
    /// Count the bytes of the traversal's first `blocks` blocks (a client's resume claim);
    /// answer with [`ProviderDeal::handle_counted`](super::ProviderDeal::handle_counted).
    CountBytes {
        /// How many blocks.
        blocks: u64,
    },
    /// Check and save a voucher through the node; answer with
    /// [`ProviderDeal::handle_voucher_saved`](super::ProviderDeal::handle_voucher_saved).
    SaveVoucher {
        /// Its channel.
        channel: Address,
        /// The voucher (boxed: it is the largest action by far).
        voucher: Box<SignedVoucher>,
        /// What the deal is owed (what the voucher should add).
        expected: TokenAmount,
    },
    /// Write this response on the stream.
    Send(DealResponse),
    /// Finish the stream gracefully and drop it.
    Close,
    /// Drop the stream without finishing it.
    Reset,
    /// The deal has ended; the driver may stop.
    Finished(Outcome),
}

/// Blocks read for [`ProviderAction::ReadBlocks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBlocks {
    /// The blocks, in traversal order.
    pub blocks: Vec<Block>,
    /// Whether the traversal is complete after them.
    pub done: bool,
}

/// Where the payload is ([`ProviderDeal::handle_located`](super::ProviderDeal::handle_located)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Located {
    /// Here (in a piece or in the blockstore).
    Here,
    /// Not here.
    Nowhere,
}

/// What a stream for a deal that has ended gets ([`answer_finished`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// This response, then the stream is closed.
    Refuse(DealResponse),
    /// `Accepted`, the blocks from number `from` up to (not including) `until`, several
    /// per response, and `Completed` with the last ones.
    Tail {
        /// The first block the client lacks.
        from: u64,
        /// How many blocks the deal sent (and was paid for).
        until: u64,
    },
}

/// The answer to `proposal` for a deal that has ended: a completed deal's client that lost
/// the last responses gets the blocks it lacks (it paid for them) and `Completed` again; a
/// fresh proposal reusing a completed deal's id is refused (no free copy of the data);
/// anything else hears how the deal ended.
pub fn answer_finished(state: &ProviderState, proposal: &DealProposal) -> Finished {
    let id = proposal.id;
    let refuse = |status: DealStatus, message: String| {
        Finished::Refuse(DealResponse {
            status,
            id,
            payment_owed: TokenAmount::zero(),
            message,
            blocks: Vec::new(),
        })
    };
    let completed = state.status == S::Completed;
    let same = state.proposal.payload_cid == proposal.payload_cid
        && state.proposal.params == proposal.params;
    match proposal.resume {
        None if completed => refuse(
            DealStatus::Errored,
            format!("deal id {} was already used (ended {})", id.0, state.status),
        ),
        Some(resume) if completed && same && resume.blocks < state.blocks_sent => Finished::Tail {
            from: resume.blocks,
            until: state.blocks_sent,
        },
        _ => refuse(state.status.wire(), state.message()),
    }
}
