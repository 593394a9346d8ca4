//! Protocol identifiers.

/// Query protocol, map encoding (go-fil-markets v1).
pub const QUERY_PROTOCOL_V1: &str = "/fil/retrieval/qry/1.0.0";
/// Query protocol, legacy tuple encoding.
pub const QUERY_PROTOCOL_V0: &str = "/fil/retrieval/qry/0.0.1";
/// The deal stream: proposal, responses carrying blocks, payments.
pub const DEAL_PROTOCOL: &str = "/fil/retrieval/0.0.1";

/// go-data-transfer voucher type identifiers of the v1 messages (for Go interop notes).
pub mod voucher_types {
    /// `DealProposal`.
    pub const DEAL_PROPOSAL: &str = "RetrievalDealProposal/1";
    /// `DealResponse`.
    pub const DEAL_RESPONSE: &str = "RetrievalDealResponse/1";
    /// `DealPayment`.
    pub const DEAL_PAYMENT: &str = "RetrievalDealPayment/1";
}
