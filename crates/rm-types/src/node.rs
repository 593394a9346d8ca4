//! The node traits (seed: `RetrievalClientNode`, `RetrievalProviderNode`, `PeerResolver`).
//!
//! They are what the market needs from a Filecoin node: payment channels and vouchers on
//! the client side, voucher redemption and a payment address on the provider side, and a
//! way to find providers. rm-paych implements the node traits on a local ledger; a
//! Lotus- or Forest-backed implementation can plug in the same way. The methods return
//! `Send` futures so implementations can be driven from any tokio task.

use std::future::Future;

use cid::Cid;

use crate::{Address, RetrievalPeer, SignedVoucher, TokenAmount};

/// A chain position stand-in: an opaque tipset key and its height.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainHead {
    /// Opaque tipset key bytes.
    pub tipset_token: Vec<u8>,
    /// The epoch.
    pub epoch: crate::ChainEpoch,
}

/// What a payment channel can still pay (go-fil-markets `ChannelAvailableFunds`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelAvailableFunds {
    /// Funds confirmed on chain.
    pub confirmed: TokenAmount,
    /// Funds in messages not yet confirmed.
    pub pending: TokenAmount,
    /// The message to wait on for the pending funds.
    pub pending_wait_sentinel: Option<Cid>,
    /// Funds queued behind the pending message.
    pub queued: TokenAmount,
    /// Amount already redeemed by vouchers.
    pub voucher_redeemed: TokenAmount,
}

/// Result of asking for a payment channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelSetup {
    /// A channel is being created; wait for this message.
    Creating {
        /// The creation message.
        wait: Cid,
    },
    /// An existing channel is being topped up; wait for this message.
    AddingFunds {
        /// The channel.
        channel: Address,
        /// The top-up message.
        wait: Cid,
    },
    /// The channel exists and already holds the funds.
    Ready {
        /// The channel.
        channel: Address,
    },
}

/// Errors of the node traits.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The channel cannot cover the voucher; this much is missing.
    #[error("insufficient funds in payment channel, shortfall {shortfall}")]
    Shortfall {
        /// The missing amount.
        shortfall: TokenAmount,
    },
    /// The channel is unknown.
    #[error("payment channel {0} not found")]
    ChannelNotFound(Address),
    /// A voucher failed a check; the reason says which.
    #[error("invalid voucher: {0}")]
    InvalidVoucher(String),
    /// A wallet key is missing or unusable.
    #[error("wallet: {0}")]
    Wallet(String),
    /// The backend (ledger, RPC, chain) failed.
    #[error("node backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What a retrieval client needs from a Filecoin node.
pub trait RetrievalClientNode: Send + Sync + 'static {
    /// The current chain head.
    fn chain_head(&self) -> impl Future<Output = Result<ChainHead, NodeError>> + Send;

    /// Gets a channel from `client` to `miner` for a deal that needs `funds`: a new
    /// channel holding them, or the existing one with `funds` added (Lotus `GetPaych`
    /// semantics, so concurrent deals do not share one deal's money).
    fn get_or_create_payment_channel(
        &self,
        client: &Address,
        miner: &Address,
        funds: &TokenAmount,
        head: &ChainHead,
    ) -> impl Future<Output = Result<ChannelSetup, NodeError>> + Send;

    /// Waits for a creation or top-up message and returns the channel's address.
    fn wait_for_payment_channel_ready(
        &self,
        wait: &Cid,
    ) -> impl Future<Output = Result<Address, NodeError>> + Send;

    /// Allocates a new lane in `channel`.
    fn allocate_lane(
        &self,
        channel: &Address,
    ) -> impl Future<Output = Result<u64, NodeError>> + Send;

    /// Creates a signed voucher for the cumulative `amount` on `lane` (the node picks the
    /// nonce); fails with [`NodeError::Shortfall`] when the channel cannot cover it.
    fn create_payment_voucher(
        &self,
        channel: &Address,
        amount: &TokenAmount,
        lane: u64,
        head: &ChainHead,
    ) -> impl Future<Output = Result<SignedVoucher, NodeError>> + Send;

    /// What `channel` can still pay.
    fn check_available_funds(
        &self,
        channel: &Address,
    ) -> impl Future<Output = Result<ChannelAvailableFunds, NodeError>> + Send;
}

/// What a retrieval provider needs from a Filecoin node.
pub trait RetrievalProviderNode: Send + Sync + 'static {
    /// The current chain head.
    fn chain_head(&self) -> impl Future<Output = Result<ChainHead, NodeError>> + Send;

    /// The address clients should pay (the miner's worker).
    fn payment_address(
        &self,
        head: &ChainHead,
    ) -> impl Future<Output = Result<Address, NodeError>> + Send;

    /// Checks and stores `voucher` for `channel` and returns the amount newly received
    /// (zero for a voucher already seen: vouchers are cumulative).
    fn save_payment_voucher(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
        expected: &TokenAmount,
        head: &ChainHead,
    ) -> impl Future<Output = Result<TokenAmount, NodeError>> + Send;
}

/// Errors of a [`PeerResolver`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolverError {
    /// The lookup did not finish in time.
    #[error("provider lookup timed out")]
    Timeout,
    /// The source failed.
    #[error("provider lookup failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Finds providers that may hold a payload.
pub trait PeerResolver: Send + Sync + 'static {
    /// Providers for `payload_cid`; an empty list when none are known.
    fn get_peers(
        &self,
        payload_cid: &Cid,
    ) -> impl Future<Output = Result<Vec<RetrievalPeer>, ResolverError>> + Send;
}
