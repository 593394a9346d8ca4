//! Numbered enums: deal status, query status, client and provider events.
//!
//! The numbers are go-fil-markets v1's (v0.5.1 through v1.28.3). [`DealStatus`] travels on
//! the wire in `DealResponse.Status`, so its numbers must never change; new states are
//! only ever appended.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

macro_rules! numbered_enum {
    (
        $(#[$meta:meta])*
        $name:ident, prefix = $prefix:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $num:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $num, )*
        }

        impl $name {
            /// Every value, in numeric order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )* ];

            /// The wire number.
            pub fn number(self) -> u64 {
                self as u64
            }

            /// The Go name, e.g. `DealStatusNew`.
            pub fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => concat!($prefix, stringify!($variant)), )*
                }
            }

            /// The name without the Go prefix, e.g. `New`.
            pub fn short_name(self) -> &'static str {
                match self {
                    $( $name::$variant => stringify!($variant), )*
                }
            }
        }

        impl TryFrom<u64> for $name {
            type Error = Error;
            fn try_from(value: u64) -> Result<Self, Error> {
                match value {
                    $( $num => Ok($name::$variant), )*
                    _ => Err(Error::UnknownEnum { what: stringify!($name), value }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u64(self.number())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let n = u64::deserialize(d)?;
                $name::try_from(n).map_err(serde::de::Error::custom)
            }
        }
    };
}

numbered_enum! {
    /// Whether a queried payload is available (`QueryResponse.Status`).
    QueryResponseStatus, prefix = "QueryResponse" {
        /// The provider has the data and will serve it.
        Available = 0,
        /// The provider does not have the data or will not serve it.
        Unavailable = 1,
        /// The provider could not answer.
        Error = 2,
    }
}

numbered_enum! {
    /// Whether a requested part of a piece is available (`QueryResponse.PieceCIDFound`).
    QueryItemStatus, prefix = "QueryItem" {
        /// Available.
        Available = 0,
        /// Not available.
        Unavailable = 1,
        /// The provider cannot tell.
        Unknown = 2,
    }
}

numbered_enum! {
    /// The status of a retrieval deal, on the wire and in both deal state machines.
    DealStatus, prefix = "DealStatus" {
        /// Just created.
        New = 0,
        /// The provider is unsealing the data.
        Unsealing = 1,
        /// The provider has unsealed the data.
        Unsealed = 2,
        /// The client waits for the provider to accept.
        WaitForAcceptance = 3,
        /// The client is creating a payment channel.
        PaymentChannelCreating = 4,
        /// The client is adding funds to a payment channel.
        PaymentChannelAddingFunds = 5,
        /// The provider accepted the deal.
        Accepted = 6,
        /// The provider waits for the unseal payment.
        FundsNeededUnseal = 7,
        /// The deal is failing and cleaning up.
        Failing = 8,
        /// The provider rejected the deal.
        Rejected = 9,
        /// The provider waits for a payment.
        FundsNeeded = 10,
        /// The client is sending a payment.
        SendFunds = 11,
        /// The client is sending the last payment.
        SendFundsLastPayment = 12,
        /// Data is flowing.
        Ongoing = 13,
        /// The provider waits for the last payment.
        FundsNeededLastPayment = 14,
        /// The deal completed.
        Completed = 15,
        /// The provider does not have the payload.
        DealNotFound = 16,
        /// The deal ended in an error.
        Errored = 17,
        /// All blocks were sent or received.
        BlocksComplete = 18,
        /// The last payment arrived; finishing.
        Finalizing = 19,
        /// The provider is cleaning up after completion.
        Completing = 20,
        /// The client checks the provider's completion claim.
        CheckComplete = 21,
        /// The client checks its channel's funds.
        CheckFunds = 22,
        /// The client lacks funds; `add_more_funds` resumes it.
        InsufficientFunds = 23,
        /// The client is allocating a payment lane.
        PaymentChannelAllocatingLane = 24,
        /// The deal is being cancelled.
        Cancelling = 25,
        /// The deal was cancelled.
        Cancelled = 26,
        /// Go only: retrying with the legacy protocol.
        RetryLegacy = 27,
        /// Go only: waiting for acceptance on the legacy protocol.
        WaitForAcceptanceLegacy = 28,
        /// The client waits for the last blocks of a free deal.
        ClientWaitingForLastBlocks = 29,
        /// The client is adding initial funds to an existing channel.
        PaymentChannelAddingInitialFunds = 30,
        /// The deal is erroring and cleaning up.
        Erroring = 31,
        /// The deal is being rejected and cleaning up.
        Rejecting = 32,
        /// Not found; cleaning up.
        DealNotFoundCleanup = 33,
        /// The client is finalizing its blockstore.
        FinalizingBlockstore = 34,
    }
}

impl DealStatus {
    /// Statuses that end a deal for good.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Errored | Self::Rejected | Self::DealNotFound | Self::Cancelled
        )
    }
}

numbered_enum! {
    /// Client deal events (go-fil-markets v1 numbering; never on the wire).
    ClientEvent, prefix = "ClientEvent" {
        /// A deal was opened.
        Open = 0,
        /// Writing the proposal failed.
        WriteDealProposalErrored = 1,
        /// The proposal was sent.
        DealProposed = 2,
        /// The provider rejected the deal.
        DealRejected = 3,
        /// The provider does not have the payload.
        DealNotFound = 4,
        /// The provider accepted the deal.
        DealAccepted = 5,
        /// The provider cancelled.
        ProviderCancelled = 6,
        /// A response with an unexpected status arrived.
        UnknownResponseReceived = 7,
        /// Setting up the payment channel failed.
        PaymentChannelErrored = 8,
        /// Allocating a lane failed.
        AllocateLaneErrored = 9,
        /// Payment channel creation started.
        PaymentChannelCreateInitiated = 10,
        /// The payment channel is ready.
        PaymentChannelReady = 11,
        /// Funds are being added to the channel.
        PaymentChannelAddingFunds = 12,
        /// Adding funds failed.
        PaymentChannelAddFundsErrored = 13,
        /// The provider asked for the last payment.
        LastPaymentRequested = 14,
        /// Every block arrived and was verified.
        AllBlocksReceived = 15,
        /// The provider asked for a payment.
        PaymentRequested = 16,
        /// The provider asked for the unseal payment.
        UnsealPaymentRequested = 17,
        /// Blocks arrived and were verified.
        BlocksReceived = 18,
        /// The client decided to pay.
        SendFunds = 19,
        /// The client ran out of funds.
        FundsExpended = 20,
        /// The provider asked for more than it is owed.
        BadPaymentRequested = 21,
        /// Creating a voucher failed.
        CreateVoucherFailed = 22,
        /// Writing a payment failed.
        WriteDealPaymentErrored = 23,
        /// A payment was sent.
        PaymentSent = 24,
        /// The provider said the deal is complete.
        Complete = 25,
        /// The transfer failed.
        DataTransferError = 26,
        /// Cancellation finished.
        CancelComplete = 27,
        /// The provider ended early.
        EarlyTermination = 28,
        /// Completion verified.
        CompleteVerified = 29,
        /// A lane was allocated.
        LaneAllocated = 30,
        /// A voucher could not be made for lack of funds.
        VoucherShortfall = 31,
        /// Funds should be checked again.
        RecheckFunds = 32,
        /// The client cancelled.
        Cancel = 33,
        /// Wait for the last blocks of a free deal.
        WaitForLastBlocks = 34,
        /// A free deal skips the payment channel.
        PaymentChannelSkip = 35,
        /// No payment was needed.
        PaymentNotSent = 36,
        /// The blockstore was finalized.
        BlockstoreFinalized = 37,
        /// Finalizing the blockstore failed.
        FinalizeBlockstoreErrored = 38,
    }
}

numbered_enum! {
    /// Provider deal events (go-fil-markets v1.28 numbering; never on the wire).
    ProviderEvent, prefix = "ProviderEvent" {
        /// A deal was opened.
        Open = 0,
        /// The payload was not found.
        DealNotFound = 1,
        /// The deal was rejected.
        DealRejected = 2,
        /// The deal was accepted.
        DealAccepted = 3,
        /// Blocks were sent.
        BlockSent = 4,
        /// Every block was sent.
        BlocksCompleted = 5,
        /// A payment was requested.
        PaymentRequested = 6,
        /// Saving a voucher failed.
        SaveVoucherFailed = 7,
        /// Part of the owed amount arrived.
        PartialPaymentReceived = 8,
        /// The owed amount arrived.
        PaymentReceived = 9,
        /// The deal completed.
        Complete = 10,
        /// Unsealing failed.
        UnsealError = 11,
        /// Unsealing finished.
        UnsealComplete = 12,
        /// The transfer failed.
        DataTransferError = 13,
        /// Cancellation finished.
        CancelComplete = 14,
        /// Cleanup finished.
        CleanupComplete = 15,
        /// The deal's store failed.
        MultiStoreError = 16,
        /// The client cancelled.
        ClientCancelled = 17,
        /// The last payment was requested.
        LastPaymentRequested = 18,
        /// A payment is to be processed.
        ProcessPayment = 19,
    }
}
