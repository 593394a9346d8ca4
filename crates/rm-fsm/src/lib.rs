//! A generic, persistent state-machine engine with a stored counter.
//!
//! `rm-fsm` is layer 1 of the `rm` workspace: among the `rm-*` crates it depends only on
//! `rm-store` (where the records live), and it knows nothing about retrieval. `rm-client`
//! and `rm-provider` write their deal machines with it. The design follows
//! go-statemachine (transition lookup, final states, notifications) and fixes what it
//! lacked: transitions are checked at compile time and by [`Table::check`], the machines
//! left unfinished by a crash are found without reading the finished ones, every channel
//! is bounded, and an invalid event is an error to its sender instead of a log line.
//!
//! # The model
//!
//! * A [`Machine`] is data: a state type, an event type, a pure transition function
//!   `(state, event) -> Transition | Invalid` and a set of final states. [`step`] applies
//!   one event to a [`Snapshot`] and returns the next one; nothing here does IO or reads
//!   a clock. A [`Table`] of [`Rule`]s is the usual way to write a machine: statuses and
//!   event kinds are enums ([`named_enum!`]), so a rule for a kind that does not exist does
//!   not compile, [`Table::check`] proves every status reachable and every non-final
//!   status a way out, and [`Table::to_markdown`] renders the table for the docs.
//! * A [`Journal`] keeps the snapshots of many machines of one kind, keyed by id (any
//!   [`Key`]: `u64` deal ids, `(peer bytes, u64)` provider keys…), in a [`Store`] (a
//!   keyspace of the node's [`rm_store::Db`], or [`MemStore`] in tests). Each write is
//!   atomic and, with a [`Durability`], fsynced or group-committed before it returns;
//!   subscribers hear of it after. [`Journal::unfinished`] finds the machines a restart
//!   has to resume without reading the finished ones.
//! * Who drives a machine decides what happens: `rm-client` and `rm-provider` keep each
//!   deal's snapshot in a sans-IO core that applies events with [`step`] and asks its
//!   driver to persist each one ([`Journal::record`]) before any effect of it. Simple
//!   users call [`Journal::apply`], which steps and persists in one call.
//! * [`Counter`] hands out persistent sequence numbers (deal ids) with go-storedcounter
//!   semantics: first 0, persisted before returned.
//!
//! # Example
//!
//! ```
//! use rm_fsm::{Config, Dest, HasStatus, Journal, MemStore, Rule, Source, Table};
//! use serde::{Deserialize, Serialize};
//!
//! rm_fsm::named_enum! {
//!     /// Where an order is.
//!     pub enum OrderStatus: Status { Open, Shipped, Delivered }
//! }
//! rm_fsm::named_enum! {
//!     /// What happens to an order.
//!     pub enum OrderKind: Kind { Add, Ship, Deliver }
//! }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Order { status: u8, items: u32 }
//!
//! impl HasStatus for Order {
//!     type Status = OrderStatus;
//!     fn status(&self) -> OrderStatus { OrderStatus::ALL[usize::from(self.status)] }
//!     fn set_status(&mut self, s: OrderStatus) { self.status = s as u8 }
//! }
//! # use rm_fsm::Status;
//!
//! #[derive(Debug, Clone)]
//! enum Event { Add(u32), Ship, Deliver }
//!
//! impl rm_fsm::Event for Event {
//!     type Kind = OrderKind;
//!     fn kind(&self) -> OrderKind {
//!         match self { Event::Add(_) => OrderKind::Add, Event::Ship => OrderKind::Ship,
//!                      Event::Deliver => OrderKind::Deliver }
//!     }
//! }
//!
//! fn add(order: &mut Order, event: &Event) -> Result<(), String> {
//!     let Event::Add(n) = event else { return Err("not an Add".into()) };
//!     if *n == 0 { return Err("nothing to add".into()) }
//!     order.items += n;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use OrderStatus::*;
//! let table = Table::new(
//!     vec![
//!         Rule::new(OrderKind::Add, Source::one(Open), Dest::Stay).action(add).doc("items += n"),
//!         Rule::new(OrderKind::Ship, Source::one(Open), Dest::To(Shipped)),
//!         Rule::new(OrderKind::Deliver, Source::one(Shipped), Dest::To(Delivered)),
//!     ],
//!     [Delivered],
//! )?;
//! assert!(table.check(Open).is_ok());
//! println!("{}", table.to_markdown());
//!
//! // In production: a keyspace of the node's database, `db.keyspace("orders")?`.
//! let orders = Journal::open(table, MemStore::new(), Config::default());
//! orders.begin(7, Order { status: 0, items: 0 }).await?;
//! orders.apply(&7, Event::Add(2)).await?;
//! // Invalid events change nothing.
//! assert!(orders.apply(&7, Event::Add(0)).await.is_err());
//! assert!(orders.apply(&7, Event::Deliver).await.is_err());
//! orders.apply(&7, Event::Ship).await?;
//! let done = orders.apply(&7, Event::Deliver).await?;
//! assert_eq!((done.seq, done.state.items), (3, 2));
//! // A final machine absorbs nothing, and is not among the unfinished ones.
//! assert!(matches!(orders.apply(&7, Event::Add(1)).await, Err(rm_fsm::Error::Final(_))));
//! assert!(orders.unfinished()?.is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! Journal, store and counter errors are one enum, [`Error`]; store failures carry a
//! [`StoreError`]; table definitions are checked by [`Table::new`] and [`Table::check`]
//! ([`TableError`]). An invalid event is [`Error::Invalid`]. Nothing that comes from disk
//! panics: undecodable records are [`Error::Decode`].
//!
//! More: `docs/fsm.md` in the repository.

mod counter;
mod error;
mod generated;
mod journal;
mod key;
mod machine;
mod store;
mod table;

pub use counter::Counter;
pub use error::{Error, StoreError};
pub use generated::check_generated;
pub use journal::{Config, Durability, Journal, Notification, RecvError, Subscription};
pub use key::Key;
pub use machine::{Invalid, Machine, Rejection, Snapshot, Transition, step};
pub use store::{Batch, MemStore, Store};
pub use table::{
    Action, Dest, Event, HasStatus, Kind, Row, Rule, Source, Status, Table, TableError,
};

/// The storage crate this one keeps its records in.
pub use rm_store;

/// For [`named_enum!`]: the serde its expansion names.
#[doc(hidden)]
pub use serde as __serde;
