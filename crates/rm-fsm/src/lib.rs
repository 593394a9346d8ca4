//! A generic, persistent state-machine engine with a stored counter.
//!
//! `rm-fsm` is layer 1 of the `rm` workspace: among the `rm-*` crates it depends only on
//! `rm-store` (where the records live), and it knows nothing about retrieval. `rm-client` and `rm-provider` run their deal machines
//! on it. The design follows go-statemachine (transition lookup, `To` / `NoChange` /
//! `JustRecord`, final states, notifications) and fixes what it lacked: machines are resumed
//! after a restart, queues are bounded, invalid events are reported instead of dropped.
//!
//! # The model
//!
//! * A [`Machine`] is data: a state type, an event type, a pure transition function
//!   `(state, event) -> Transition | Invalid` and a set of final states. The core is sans-IO:
//!   [`step`] applies one event to a [`Snapshot`] and returns the next snapshot plus the
//!   [`Effect`] to carry out. A [`Table`] of [`Rule`]s is the usual way to write a machine; it
//!   can render itself as a markdown table ([`Table::to_markdown`]).
//! * A [`Group`] drives many machines of one kind, keyed by id (any [`Key`]: `u64` deal ids,
//!   `(peer bytes, u64)` provider keys…). Events of one machine are applied strictly in order;
//!   machines run concurrently; every queue is bounded.
//! * [`Actions`] are the side effects: the entry action of a state runs after an event moved
//!   the machine into it (or re-entered it). It may [`Context::trigger`] further events.
//! * Every applied event is written to the [`Store`] (a keyspace of the node's
//!   [`rm_store::Db`], RocksDB or memory; or [`MemStore`] in tests) in one atomic write **before** the sender, the subscribers or
//!   the entry action see it. States are stored as DAG-CBOR `[seq, state]`. See
//!   [`Durability`] for when the write is on stable storage.
//! * Opening a group resumes every non-final machine by running its current state's entry
//!   action again, so a crashed process continues where it stopped.
//! * [`Group::subscribe`] yields every begun machine, applied event and invalid event, in
//!   order per machine, through a bounded channel; a subscriber that falls behind loses the
//!   oldest notifications and is told how many ([`RecvError::Lagged`]); the engine never waits
//!   for it.
//! * [`Counter`] hands out persistent sequence numbers (deal ids) with go-storedcounter
//!   semantics: first 0, persisted before returned.
//!
//! # Example
//!
//! ```
//! use rm_fsm::{Actions, Config, Context, Dest, EventKind, Group, HasStatus, MemStore, Rule,
//!              Source, Table};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
//! enum Status { Open, Shipped, Delivered }
//!
//! impl rm_fsm::Status for Status {
//!     fn name(&self) -> &'static str {
//!         match self { Status::Open => "Open", Status::Shipped => "Shipped",
//!                      Status::Delivered => "Delivered" }
//!     }
//! }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Order { status: Status, items: u32 }
//!
//! impl HasStatus for Order {
//!     type Status = Status;
//!     fn status(&self) -> Status { self.status }
//!     fn set_status(&mut self, status: Status) { self.status = status }
//! }
//!
//! #[derive(Debug, Clone)]
//! enum Event { Add(u32), Ship, Deliver }
//!
//! impl EventKind for Event {
//!     fn kind(&self) -> &'static str {
//!         match self { Event::Add(_) => "Add", Event::Ship => "Ship", Event::Deliver => "Deliver" }
//!     }
//! }
//!
//! type Orders = Table<Order, Event>;
//!
//! fn add(order: &mut Order, event: &Event) -> Result<(), String> {
//!     let Event::Add(n) = event else { return Err("not an Add".into()) };
//!     if *n == 0 { return Err("nothing to add".into()) }
//!     order.items += n;
//!     Ok(())
//! }
//!
//! /// Entry actions: a shipped order gets delivered.
//! struct Courier;
//!
//! impl Actions<Orders, u64> for Courier {
//!     async fn on_entry(&self, ctx: &mut Context<Orders, u64>, order: &Order) {
//!         if order.status == Status::Shipped {
//!             // Applied as soon as this entry action returns.
//!             ctx.trigger(Event::Deliver).ok();
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let table = Orders::new(
//!     vec![
//!         Rule::new("Add", Source::one(Status::Open), Dest::JustRecord).action(add).doc("items += n"),
//!         Rule::new("Ship", Source::one(Status::Open), Dest::To(Status::Shipped)),
//!         Rule::new("Deliver", Source::one(Status::Shipped), Dest::To(Status::Delivered)),
//!     ],
//!     [Status::Delivered],
//! )?;
//! println!("{}", table.to_markdown());
//!
//! // In production: a keyspace of the node's database, `db.keyspace("orders")?`.
//! let store = MemStore::new();
//! let orders = Group::open(table, Courier, store.clone(), Config::default()).await?;
//! let mut events = orders.subscribe();
//!
//! orders.begin(7, Order { status: Status::Open, items: 0 }).await?;
//! orders.send(&7, Event::Add(2)).await?;
//! // Invalid events change nothing; the sender and the subscribers hear of them.
//! assert!(orders.send(&7, Event::Add(0)).await.is_err());
//! assert!(orders.send(&7, Event::Deliver).await.is_err());
//! orders.send(&7, Event::Ship).await?; // Courier then triggers Deliver.
//!
//! // Wait for the final state through the subscription.
//! loop {
//!     if let rm_fsm::Notification::Applied { snapshot, .. } = events.recv().await? {
//!         if snapshot.state.status == Status::Delivered { break; }
//!     }
//! }
//! assert_eq!(orders.get(&7)?, Some(Order { status: Status::Delivered, items: 2 }));
//! // A final machine absorbs nothing.
//! assert!(matches!(orders.send(&7, Event::Add(1)).await, Err(rm_fsm::Error::Final(_))));
//! orders.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Writing entry actions
//!
//! The write of an event happens before its entry action; a crash can come at any point
//! after, and opening the group runs the entry action of every non-final machine again. So an
//! entry action may run more than once for the same state, and may find that part of its work
//! was already done. To be safe:
//!
//! * Make effects idempotent, or check before acting (read before write): look at the world
//!   (the blockstore, the ledger, the peer) and at the state, and only do what is missing.
//! * Prefer cumulative values: a payment voucher carries the total paid so far, not an
//!   increment, so sending the last voucher twice pays nothing twice.
//! * Record progress through events: anything learnt that later steps need goes into the
//!   state via an event, never only in memory.
//! * Keep it short; long waits belong in a spawned task that sends an event when done (get a
//!   handle with [`Context::group`]). The machine applies no other event while its entry
//!   action runs, and [`Group::close`] cancels it at its next await.
//! * Never await [`Group::send`] to the own machine inside the entry action (it cannot be
//!   applied until the entry action returns); use [`Context::trigger`].
//!
//! # Errors
//!
//! Engine, store and counter errors are one enum, [`Error`]; store failures carry a
//! [`StoreError`]; table definitions are checked by [`Table::new`] ([`TableError`]). An
//! invalid event is [`Error::Invalid`] to its sender and [`Notification::Invalid`] to
//! subscribers. Nothing that comes from disk panics: undecodable records are
//! [`Error::Decode`].
//!
//! More: `docs/fsm.md` in the repository.

mod counter;
mod error;
mod group;
mod key;
mod machine;
mod store;
mod table;

pub use counter::Counter;
pub use error::{Error, StoreError};
pub use group::{
    Actions, Config, Context, Durability, Group, Notification, Receipt, RecvError, Subscription,
};
pub use key::Key;
pub use machine::{Effect, Invalid, Machine, Rejection, Snapshot, Step, Transition, step};
pub use store::{Batch, MemStore, Store};
pub use table::{
    Action, Dest, EventKind, HasStatus, Row, Rule, Source, Status, Table, TableError,
    check_generated, dead_ends,
};

/// The storage crate this one keeps its records in.
pub use rm_store;
