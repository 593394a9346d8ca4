//! # rm-paych: wallet keys, vouchers and a local payment-channel ledger
//!
//! Deals in rm pay as they go with Filecoin payment-channel vouchers. This crate is the
//! embedded default behind the node traits of rm-types ([`RetrievalClientNode`],
//! [`RetrievalProviderNode`]): real secp256k1 keys with Filecoin `f1` addresses and Filecoin
//! signature bytes, vouchers checked by the paych actor's rules, and a payment-channel
//! ledger in the node's database instead of a chain. A Lotus- or Forest-backed node can replace it
//! behind the same traits.
//!
//! Layer 1 of the workspace: among the rm crates it depends only on `rm-types` and
//! `rm-store` (the keyspace the ledger lives in); `rm-node` wires it to the client and the
//! provider. Keys, vouchers and every rule of the ledger build without RocksDB; the cargo
//! feature `rocksdb` (off by default) adds `rm-store`'s RocksDB backend for a ledger that
//! persists.
//!
//! | module | what |
//! |---|---|
//! | [`wallet`] | [`Wallet`] of secp256k1 keys, owner-only keystore file, Filecoin sign / recover / verify |
//! | [`voucher`] | create and sign vouchers; the paych rules a received voucher must pass, in order |
//! | [`ledger`] | [`Ledger`]: channels, lanes, vouchers, settle and collect in a keyspace |
//! | [`node`] | [`PaychNode`]: the node traits on a ledger and a wallet |
//!
//! ## Example: one process, client and provider sharing a ledger
//!
//! ```
//! use std::sync::Arc;
//! use rm_paych::{ledger, Ledger, PaychNode, Wallet};
//! use rm_types::{ChannelSetup, RetrievalClientNode, RetrievalProviderNode, TokenAmount};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let home = tempfile::tempdir()?;
//! // A node keeps the ledger in a keyspace of its RocksDB database; here, in memory.
//! let ledger = Arc::new(Ledger::open(rm_store::Keyspace::memory(ledger::DEFAULT_KEYSPACE)));
//!
//! // Two wallets, each with one key kept in its own owner-only keystore file.
//! let client_wallet = Arc::new(Wallet::open(home.path().join("client"))?);
//! let provider_wallet = Arc::new(Wallet::open(home.path().join("provider"))?);
//! let payer = client_wallet.new_key()?;
//! provider_wallet.new_key()?;
//! let client = PaychNode::new(ledger.clone(), client_wallet);
//! let provider = PaychNode::new(ledger.clone(), provider_wallet);
//!
//! let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! rt.block_on(async {
//!     let head = RetrievalClientNode::chain_head(&client).await?;
//!     let payee = provider.payment_address(&head).await?;
//!
//!     // Create a channel holding 20,000,000 attoFIL and wait for its creation message.
//!     let funds = TokenAmount::from_atto(20_000_000u64);
//!     let setup = client.get_or_create_payment_channel(&payer, &payee, &funds, &head).await?;
//!     let ChannelSetup::Creating { wait } = setup else { unreachable!("new pair") };
//!     let channel = client.wait_for_payment_channel_ready(&wait).await?;
//!     let lane = client.allocate_lane(&channel).await?;
//!
//!     // Pay twice with cumulative vouchers; the provider counts only what is new.
//!     let mut received = Vec::new();
//!     for total in [10_174_000u64, 19_958_000] {
//!         let amount = TokenAmount::from_atto(total);
//!         let voucher = client.create_payment_voucher(&channel, &amount, lane, &head).await?;
//!         received.push(provider.save_payment_voucher(&channel, &voucher, &amount, &head).await?);
//!     }
//!     assert_eq!(received, [TokenAmount::from_atto(10_174_000u64), TokenAmount::from_atto(9_784_000u64)]);
//!
//!     // Asking for more than the channel holds is a shortfall the client can act on.
//!     let too_much = TokenAmount::from_atto(30_000_000u64);
//!     let err = client.create_payment_voucher(&channel, &too_much, lane, &head).await.unwrap_err();
//!     assert!(matches!(err, rm_types::NodeError::Shortfall { .. }));
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Two processes: what a provider can and cannot check without a chain
//!
//! When client and provider run on different machines, each has its own ledger and there is
//! no chain between them. The client creates the channel in its ledger; the provider hears
//! of it for the first time when the first voucher arrives
//! ([`Ledger::save_voucher`], via [`RetrievalProviderNode::save_payment_voucher`]).
//!
//! The provider **can** check, and does:
//! - the signature: it recovers the signer's `f1` address from the voucher (secp256k1,
//!   Filecoin bytes), so it knows who signed without being told;
//! - that the channel is from that signer to itself: channel addresses are
//!   [`derive_channel_address`](ledger::derive_channel_address)`(from, to, creation nonce)`,
//!   and the provider accepts an unknown channel only if the voucher's signer, its own
//!   payment address and some creation nonce below [`MAX_LEARN_NONCE`](ledger::MAX_LEARN_NONCE)
//!   re-derive the channel address. From then on the channel is recorded with that `from`,
//!   and every later voucher must be signed by it;
//! - every per-voucher rule of the actor it has state for: channel address, lane range,
//!   strictly increasing nonces per lane, cumulative amounts never going down, merges, time
//!   locks against its own epoch, settlement of its own record, and it counts only the delta.
//!
//! The provider **cannot** check:
//! - that the channel exists on any chain or holds any funds: nothing backs the client's
//!   promise but the client's ledger. Learned channels are recorded with
//!   [`Origin::Learned`](ledger::Origin::Learned) and the funds rule is skipped for them;
//!   what bounds the provider's risk is the deal itself (it stops sending after each payment
//!   interval until paid, so it loses at most one interval);
//! - that the client does not issue conflicting vouchers from another ledger holding the
//!   same key (double spending is a chain-level question);
//! - the client's settlement: each side settles and collects its own record.
//!
//! In one process (tests, the demo, benchmarks) the channel was created in the same ledger,
//! so the funds rule applies too.
//!
//! ## Errors
//!
//! Each module has its own `thiserror` enum: [`WalletError`] and
//! [`SignatureError`](wallet::SignatureError) (keys, keystore file, signatures),
//! [`VoucherError`] (one variant per voucher rule), [`LedgerError`] (storage and channel
//! operations; wraps the other two). [`PaychNode`] maps them onto
//! [`NodeError`](rm_types::NodeError) (see [`node`]). Nothing panics on data read from disk
//! or received from a peer; a rejected operation leaves the ledger unchanged.
//!
//! [`RetrievalClientNode`]: rm_types::RetrievalClientNode
//! [`RetrievalProviderNode`]: rm_types::RetrievalProviderNode
//! [`RetrievalProviderNode::save_payment_voucher`]: rm_types::RetrievalProviderNode::save_payment_voucher

pub mod ledger;
pub mod node;
pub mod voucher;
pub mod wallet;

pub use ledger::{Channel, Ledger, LedgerError};
pub use node::PaychNode;
pub use voucher::{LaneState, VoucherError};
pub use wallet::{Keypair, Wallet, WalletError};
