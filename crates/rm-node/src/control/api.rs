//! What the control interface carries: one [`Request`] per connection, answered by
//! [`Reply`] lines. The result types are also what `rm --json` prints, so every command
//! names a concept the same way (the table is in `docs/operations.md`).
//!
//! Amounts are attoFIL as decimal strings; CIDs, peer ids and addresses are strings.

use std::path::PathBuf;

use rm_types::TokenAmount;
use serde::{Deserialize, Serialize};

/// A request, as one JSON object on one line: `{"op":"ask"}`,
/// `{"op":"ask","price_per_byte":"3"}`, `{"op":"deals","follow":true}` …
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// Show the provider's ask, after changing the values given.
    Ask(AskChange),
    /// Import a file, a directory or a CAR as a piece; replies [`Reply::Progress`] lines.
    Import(ImportRequest),
    /// List deals ([`Reply::Deal`] lines, then [`Reply::Listed`]); with `follow`, then
    /// every status change.
    Deals(DealsRequest),
    /// List payment channels, after adding funds to one.
    Fund(FundRequest),
    /// Ask a provider about a payload.
    Query(QueryRequest),
    /// List the pieces, show one or remove one.
    Pieces(PiecesRequest),
}

impl Request {
    /// The operation's name (the `op` field; a metrics label).
    pub fn op(&self) -> &'static str {
        match self {
            Request::Ask(_) => "ask",
            Request::Import(_) => "import",
            Request::Deals(_) => "deals",
            Request::Fund(_) => "fund",
            Request::Query(_) => "query",
            Request::Pieces(_) => "pieces",
        }
    }
}

/// One line of an answer. The last line of every answer is [`Reply::Done`] or
/// [`Reply::Error`] (a followed deal list ends when either side closes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reply {
    /// How far an import is.
    Progress(ImportProgress),
    /// A deal: listed, or (following) one whose status changed.
    Deal(DealView),
    /// The listing is complete; this many deals were listed.
    Listed {
        /// Deals listed.
        count: u64,
    },
    /// Following fell behind: this many notifications were skipped.
    Lagged {
        /// Notifications skipped.
        missed: u64,
    },
    /// The result (`null` for a listing).
    Done(serde_json::Value),
    /// The request failed.
    Error(ErrorReply),
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// `too_large`, `timeout`, `bad_request`, `busy`, `forbidden` (the request was
    /// refused before it ran) or `failed` (it ran and failed).
    pub kind: String,
    /// One sentence.
    pub message: String,
    /// The chain of causes.
    #[serde(default)]
    pub causes: Vec<String>,
}

/// attoFIL as a decimal string.
pub mod atto {
    use rm_types::TokenAmount;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as a decimal string of attoFIL.
    pub fn serialize<S: Serializer>(amount: &TokenAmount, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(amount.atto())
    }

    /// Parses a decimal string of attoFIL (or `"<n> attoFIL"`, `"<d> FIL"`).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TokenAmount, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }

    /// The same for an optional amount.
    pub mod option {
        use super::*;

        /// Serializes as a decimal string of attoFIL, or null.
        pub fn serialize<S: Serializer>(
            amount: &Option<TokenAmount>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match amount {
                Some(a) => s.collect_str(a.atto()),
                None => s.serialize_none(),
            }
        }

        /// Parses a decimal string of attoFIL, or null.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<TokenAmount>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|t| t.parse().map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

/// New values for the ask; none shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AskChange {
    /// attoFIL per byte of block data.
    #[serde(with = "atto::option")]
    pub price_per_byte: Option<TokenAmount>,
    /// attoFIL for unsealing, paid before any data.
    #[serde(with = "atto::option")]
    pub unseal_price: Option<TokenAmount>,
    /// Bytes sent before the first payment is due.
    pub payment_interval: Option<u64>,
    /// How much each later interval grows, in bytes.
    pub payment_interval_increase: Option<u64>,
}

impl AskChange {
    /// Whether it changes anything.
    pub fn is_empty(&self) -> bool {
        self == &AskChange::default()
    }
}

/// The ask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AskView {
    /// attoFIL per byte.
    #[serde(with = "atto")]
    pub price_per_byte: TokenAmount,
    /// attoFIL for unsealing.
    #[serde(with = "atto")]
    pub unseal_price: TokenAmount,
    /// Bytes before the first payment.
    pub payment_interval: u64,
    /// Growth of each later interval, in bytes.
    pub payment_interval_increase: u64,
    /// Whether this request changed it.
    pub changed: bool,
}

/// What to import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// An absolute path the node can read.
    pub path: PathBuf,
    /// UnixFS preset (`v1-1mib`, `kubo-v1`, `kubo-v0`); `None`: the config's.
    #[serde(default)]
    pub preset: Option<String>,
    /// `path` is a CAR (v1), stored as it is.
    #[serde(default)]
    pub car: bool,
}

/// How far an import is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportProgress {
    /// `unixfs`, `car`, `verify`, `write` or `index` (see `rm_unseal::import::Stage`).
    pub stage: String,
    /// Bytes the stage has done.
    pub bytes: u64,
    /// Bytes the stage does in all, when known.
    pub total_bytes: Option<u64>,
}

impl From<rm_unseal::import::Progress> for ImportProgress {
    fn from(p: rm_unseal::import::Progress) -> Self {
        ImportProgress {
            stage: p.stage.name().to_owned(),
            bytes: p.bytes,
            total_bytes: p.total_bytes,
        }
    }
}

/// What an import made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportView {
    /// The payload root.
    pub payload_cid: String,
    /// The piece it is stored in.
    pub piece_cid: String,
    /// Bytes of the CAR (the piece's data).
    pub car_size: u64,
    /// The padded piece size.
    pub piece_size: u64,
    /// Blocks in the CAR.
    pub blocks: u64,
    /// The sector.
    pub sector: u64,
    /// The piece's padded offset in the sector.
    pub offset: u64,
    /// False when the piece was stored already.
    pub new: bool,
    /// The UnixFS preset (`None` for a CAR).
    pub preset: Option<String>,
}

/// Which deals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DealsRequest {
    /// Only this node's client deals.
    pub client: bool,
    /// Only this node's provider deals.
    pub provider: bool,
    /// Then stream every status change until the connection closes.
    pub follow: bool,
}

impl DealsRequest {
    /// (client side wanted, provider side wanted): neither flag means both.
    pub fn sides(&self) -> (bool, bool) {
        match (self.client, self.provider) {
            (false, false) => (true, true),
            (c, p) => (c, p),
        }
    }
}

/// A deal of either side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DealView {
    /// `client` or `provider`: which side this node is.
    pub side: String,
    /// The deal id (the client's).
    pub deal_id: u64,
    /// The other side's peer id.
    pub peer: String,
    /// The payload root.
    pub payload_cid: String,
    /// Where the deal is.
    pub status: String,
    /// Block bytes moved so far (sent by a provider, received by a client).
    pub bytes: u64,
    /// Blocks moved so far.
    pub blocks: u64,
    /// attoFIL paid so far (paid by a client, received by a provider).
    #[serde(with = "atto")]
    pub paid: TokenAmount,
    /// Why it failed, or empty.
    pub message: String,
}

/// Funds to add to a channel; nothing only lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FundRequest {
    /// The channel's address.
    pub channel: Option<String>,
    /// attoFIL to add.
    #[serde(with = "atto::option")]
    pub amount: Option<TokenAmount>,
}

/// The ledger's payment channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FundView {
    /// This node's wallet address.
    pub wallet: String,
    /// What this request added.
    pub added: Option<AddedView>,
    /// Every channel.
    pub channels: Vec<ChannelView>,
}

/// Funds added to a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddedView {
    /// The channel.
    pub channel: String,
    /// attoFIL added.
    #[serde(with = "atto")]
    pub amount: TokenAmount,
}

/// A payment channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelView {
    /// Its address.
    pub channel: String,
    /// The paying wallet.
    pub from: String,
    /// The paid wallet.
    pub to: String,
    /// attoFIL in the channel.
    #[serde(with = "atto")]
    pub funds: TokenAmount,
    /// attoFIL promised by vouchers.
    #[serde(with = "atto")]
    pub committed: TokenAmount,
    /// attoFIL not promised yet.
    #[serde(with = "atto")]
    pub available: TokenAmount,
    /// attoFIL owed to the recipient and not collected.
    #[serde(with = "atto")]
    pub owed: TokenAmount,
    /// Whether this node pays into it.
    pub ours: bool,
    /// The lanes paying this node, with the latest voucher of each.
    pub lanes: Vec<LaneView>,
}

/// A lane paying this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneView {
    /// The lane number.
    pub lane: u64,
    /// The latest voucher's nonce.
    pub nonce: u64,
    /// attoFIL the lane's vouchers add up to.
    #[serde(with = "atto")]
    pub redeemed: TokenAmount,
    /// The latest voucher, hex of its CBOR (what would be submitted on chain).
    pub voucher: Option<String>,
}

/// Whom to ask about what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// The provider's peer id.
    pub peer_id: String,
    /// Where to dial it; none: find it on the DHT.
    #[serde(default)]
    pub addrs: Vec<String>,
    /// The payload.
    pub payload_cid: String,
    /// Only in this piece.
    #[serde(default)]
    pub piece_cid: Option<String>,
}

/// A provider's answer to a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryView {
    /// `Available`, `Unavailable` or `Error`.
    pub status: String,
    /// Whether the piece asked for holds the payload: `Yes`, `No` or `Unknown`.
    pub piece_cid_found: String,
    /// Upper bound of the bytes a whole retrieval costs.
    pub size: u64,
    /// The provider's wallet, where payments go.
    pub wallet: String,
    /// attoFIL per byte.
    #[serde(with = "atto")]
    pub price_per_byte: TokenAmount,
    /// attoFIL for unsealing.
    #[serde(with = "atto")]
    pub unseal_price: TokenAmount,
    /// Largest first payment interval accepted, in bytes.
    pub payment_interval: u64,
    /// Largest interval growth accepted, in bytes.
    pub payment_interval_increase: u64,
    /// Detail from the provider.
    pub message: String,
}

impl QueryView {
    /// Whether the provider can serve the payload.
    pub fn available(&self) -> bool {
        self.status == "Available"
    }
}

impl From<&rm_types::QueryResponse> for QueryView {
    fn from(a: &rm_types::QueryResponse) -> Self {
        QueryView {
            status: format!("{:?}", a.status),
            piece_cid_found: format!("{:?}", a.piece_cid_found),
            size: a.size,
            wallet: a.payment_address.to_string(),
            price_per_byte: a.min_price_per_byte.clone(),
            unseal_price: a.unseal_price.clone(),
            payment_interval: a.max_payment_interval,
            payment_interval_increase: a.max_payment_interval_increase,
            message: a.message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_object() {
        let r: Request =
            serde_json::from_str(r#"{"op":"ask","price_per_byte":"3","payment_interval":10}"#)
                .unwrap();
        let Request::Ask(change) = &r else {
            panic!("{r:?}")
        };
        assert_eq!(change.price_per_byte, Some(TokenAmount::from_atto(3u64)));
        assert_eq!(change.payment_interval, Some(10));
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        assert!(serde_json::from_str::<Request>(r#"{"op":"ask","prize":"3"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"rm -rf"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"ask","price_per_byte":"-x"}"#).is_err());
        let d: Request = serde_json::from_str(r#"{"op":"deals","follow":true}"#).unwrap();
        assert_eq!(
            d,
            Request::Deals(DealsRequest {
                follow: true,
                ..DealsRequest::default()
            })
        );
    }

    #[test]
    fn replies_name_their_kind() {
        let done = Reply::Done(serde_json::json!({"x": 1}));
        assert_eq!(serde_json::to_string(&done).unwrap(), r#"{"done":{"x":1}}"#);
        let listed = Reply::Listed { count: 2 };
        assert_eq!(
            serde_json::to_string(&listed).unwrap(),
            r#"{"listed":{"count":2}}"#
        );
    }
}

/// `rm pieces`: every piece (no field), one piece (`show`), or the removal of one
/// (`remove`); at most one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PiecesRequest {
    /// The piece CID to show.
    pub show: Option<String>,
    /// The piece CID to remove, freeing its disk space.
    pub remove: Option<String>,
}

/// Every piece the node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiecesView {
    /// The pieces.
    pub pieces: Vec<PieceView>,
}

/// What the node holds of one piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceView {
    /// The piece CID.
    pub piece_cid: String,
    /// The payloads it holds (its CAR's roots; empty when they cannot be read without an
    /// unseal).
    pub payload_cids: Vec<String>,
    /// Its data size (the CAR's length), when known.
    pub data_size: Option<u64>,
    /// Its padded size, when known.
    pub piece_size: Option<u64>,
    /// Where it is stored.
    pub deals: Vec<PieceDealView>,
    /// Bytes of its copy in the unsealed cache, if it has one.
    pub cached_bytes: Option<u64>,
    /// Whether that copy is complete.
    pub cache_complete: Option<bool>,
    /// Deals reading it now.
    pub readers: u64,
}

/// Where a piece is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceDealView {
    /// The storage deal (0: imported locally).
    pub deal_id: u64,
    /// The sector.
    pub sector: u64,
    /// Padded offset in the sector.
    pub offset: u64,
    /// Padded length.
    pub length: u64,
}

/// What removing a piece freed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceRemovedView {
    /// The piece CID.
    pub piece_cid: String,
    /// The payloads it held.
    pub payload_cids: Vec<String>,
    /// Block locations removed.
    pub blocks: u64,
    /// Blocks no piece holds any more, deleted from the blockstore.
    pub orphaned_blocks: u64,
    /// Bytes of disk freed in sector files.
    pub sector_bytes_freed: u64,
    /// Bytes of the cached copy removed.
    pub cache_bytes_freed: u64,
    /// Payloads no longer provided on the DHT.
    pub unprovided: Vec<String>,
    /// Bytes of disk the node's data used before.
    pub disk_bytes_before: u64,
    /// And after.
    pub disk_bytes_after: u64,
}
