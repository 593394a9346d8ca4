//! [`PaychNode`]: the node traits of rm-types implemented on a [`Ledger`] and a [`Wallet`].
//!
//! One `PaychNode` is one participant: its wallet holds the client's keys (to sign vouchers)
//! and/or the provider's payment key (its default address). Client and provider of one
//! process each get their own node over the same `Arc<Ledger>`.
//!
//! The chain head is a stand-in: the ledger's epoch, with the epoch's big-endian bytes as
//! tipset token. The `head` arguments of the trait methods are ignored; the ledger's own
//! epoch is what time locks and settlement are checked against. Funding messages are final
//! as soon as they are made, so waiting for one returns at once.
//!
//! The ledger work (a few RocksDB reads and one atomic write, a signature or a public-key
//! recovery) runs when a method is called, on the calling task; it takes well under a
//! millisecond unless the ledger was opened with synchronous writes.
//!
//! Errors map to [`NodeError`] as follows: a shortfall is [`NodeError::Shortfall`]; an unknown
//! channel [`NodeError::ChannelNotFound`]; a voucher rule [`NodeError::InvalidVoucher`] (the
//! text of the [`VoucherError`](crate::voucher::VoucherError)); a missing key
//! [`NodeError::Wallet`]; everything else [`NodeError::Backend`] carrying the
//! [`LedgerError`].

use std::future::Future;
use std::sync::Arc;

use rm_types::{
    Address, ChainHead, ChannelAvailableFunds, ChannelSetup, Cid, NodeError, RetrievalClientNode,
    RetrievalProviderNode, SignedVoucher, TokenAmount,
};

use crate::ledger::{Funding, Ledger, LedgerError};
use crate::wallet::{Wallet, WalletError};

/// A retrieval client and/or provider node backed by the local payment-channel ledger.
#[derive(Clone, Debug)]
pub struct PaychNode {
    ledger: Arc<Ledger>,
    wallet: Arc<Wallet>,
}

impl PaychNode {
    /// A node that signs with `wallet`'s keys and records channels in `ledger`.
    pub fn new(ledger: Arc<Ledger>, wallet: Arc<Wallet>) -> Self {
        Self { ledger, wallet }
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The wallet.
    pub fn wallet(&self) -> &Arc<Wallet> {
        &self.wallet
    }

    fn head(&self) -> Result<ChainHead, NodeError> {
        let epoch = self.ledger.epoch().map_err(node_error)?;
        Ok(ChainHead {
            tipset_token: epoch.to_be_bytes().to_vec(),
            epoch,
        })
    }

    fn payment_address_now(&self) -> Result<Address, NodeError> {
        self.wallet
            .default_address()
            .ok_or_else(|| NodeError::Wallet(WalletError::NoDefaultAddress.to_string()))
    }
}

/// Maps a ledger error onto the node traits' error (see the [module docs](self)).
pub fn node_error(error: LedgerError) -> NodeError {
    match error {
        LedgerError::Shortfall { shortfall } => NodeError::Shortfall { shortfall },
        LedgerError::ChannelNotFound(channel) => NodeError::ChannelNotFound(channel),
        LedgerError::Voucher(e) => NodeError::InvalidVoucher(e.to_string()),
        LedgerError::Wallet(e) => NodeError::Wallet(e.to_string()),
        other => NodeError::Backend(Box::new(other)),
    }
}

impl RetrievalClientNode for PaychNode {
    fn chain_head(&self) -> impl Future<Output = Result<ChainHead, NodeError>> + Send {
        let result = self.head();
        async move { result }
    }

    fn get_or_create_payment_channel(
        &self,
        client: &Address,
        miner: &Address,
        funds: &TokenAmount,
        _head: &ChainHead,
    ) -> impl Future<Output = Result<ChannelSetup, NodeError>> + Send {
        let result = if self.wallet.contains(client) {
            self.ledger
                .get_or_create_channel(client, miner, funds)
                .map(|funding| match funding {
                    Funding::Created { message, .. } => ChannelSetup::Creating { wait: message },
                    Funding::AddedFunds { channel, message } => ChannelSetup::AddingFunds {
                        channel,
                        wait: message,
                    },
                    Funding::Ready { channel } => ChannelSetup::Ready { channel },
                })
                .map_err(node_error)
        } else {
            Err(NodeError::Wallet(
                WalletError::KeyNotFound(client.clone()).to_string(),
            ))
        };
        async move { result }
    }

    fn wait_for_payment_channel_ready(
        &self,
        wait: &Cid,
    ) -> impl Future<Output = Result<Address, NodeError>> + Send {
        let result = self.ledger.message_channel(wait).map_err(node_error);
        async move { result }
    }

    fn allocate_lane(
        &self,
        channel: &Address,
    ) -> impl Future<Output = Result<u64, NodeError>> + Send {
        let result = self.ledger.allocate_lane(channel).map_err(node_error);
        async move { result }
    }

    fn create_payment_voucher(
        &self,
        channel: &Address,
        amount: &TokenAmount,
        lane: u64,
        _head: &ChainHead,
    ) -> impl Future<Output = Result<SignedVoucher, NodeError>> + Send {
        let result = self
            .ledger
            .create_voucher(&self.wallet, channel, lane, amount)
            .map_err(node_error);
        async move { result }
    }

    fn check_available_funds(
        &self,
        channel: &Address,
    ) -> impl Future<Output = Result<ChannelAvailableFunds, NodeError>> + Send {
        let result = self.ledger.available_funds(channel).map_err(node_error);
        async move { result }
    }
}

impl RetrievalProviderNode for PaychNode {
    fn chain_head(&self) -> impl Future<Output = Result<ChainHead, NodeError>> + Send {
        let result = self.head();
        async move { result }
    }

    fn payment_address(
        &self,
        _head: &ChainHead,
    ) -> impl Future<Output = Result<Address, NodeError>> + Send {
        let result = self.payment_address_now();
        async move { result }
    }

    /// Checks and stores the voucher for this node's payment address and returns the delta.
    ///
    /// `expected` is not a minimum: a smaller delta is returned as is and the provider's
    /// state machine asks for the rest (go-fil-markets' partial payments). A re-sent voucher
    /// returns 0.
    fn save_payment_voucher(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
        _expected: &TokenAmount,
        _head: &ChainHead,
    ) -> impl Future<Output = Result<TokenAmount, NodeError>> + Send {
        let result = self.payment_address_now().and_then(|recipient| {
            self.ledger
                .save_voucher(channel, voucher, &recipient)
                .map_err(node_error)
        });
        async move { result }
    }
}
