//! The sans-IO core: what a machine is, and the pure function that applies one event.
//!
//! Nothing here does IO or knows about tasks, stores or time. [`step`] takes the current
//! [`Snapshot`] and an event and returns the next snapshot. Whoever drives a machine (a
//! deal core in `rm-client` or `rm-provider`, or a [`Journal`](crate::Journal) for simple
//! users) decides what to do next, and persists the snapshot before any effect of the
//! event.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A state machine description: a state type, an event type and a pure transition function.
///
/// Implement it directly, or describe the machine as data with a [`Table`](crate::Table),
/// which implements `Machine`.
pub trait Machine: Send + Sync + 'static {
    /// The persisted state of one machine (stored as DAG-CBOR).
    type State: Clone + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The events the machine reacts to.
    type Event: Clone + fmt::Debug + Send + Sync + 'static;

    /// Applies `event` to `state`. Must be pure and deterministic: it is the only thing that
    /// decides the next state.
    ///
    /// Returning [`Invalid`] leaves the state untouched.
    fn transition(
        &self,
        state: &Self::State,
        event: &Self::Event,
    ) -> Result<Transition<Self::State>, Invalid>;

    /// Whether `state` is final. A final machine absorbs no more events; it stays in the
    /// store for introspection.
    fn is_final(&self, state: &Self::State) -> bool;
}

/// The outcome of a valid transition: the next state, and whether its status changed.
///
/// In both kinds the carried state may differ from the previous one (the event's data was
/// recorded in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition<S> {
    /// Moved to another status (or the same one, named explicitly).
    To(S),
    /// Kept the status; only the event's data was recorded.
    Stay(S),
}

impl<S> Transition<S> {
    /// The next state.
    pub fn state(&self) -> &S {
        match self {
            Transition::To(s) | Transition::Stay(s) => s,
        }
    }

    /// The next state, by value.
    pub fn into_state(self) -> S {
        match self {
            Transition::To(s) | Transition::Stay(s) => s,
        }
    }
}

/// An event that has no transition from the current state, or that a rule's action refused.
///
/// The state is left untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid transition: event `{event}` in state `{state}`: {reason}")]
pub struct Invalid {
    /// The event's name.
    pub event: String,
    /// The name of the state the machine was in.
    pub state: String,
    /// Why the event was refused.
    pub reason: String,
}

impl Invalid {
    /// An invalid-transition error.
    pub fn new(
        event: impl Into<String>,
        state: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Invalid {
            event: event.into(),
            state: state.into(),
            reason: reason.into(),
        }
    }
}

/// A machine's state together with the number of events applied to it since it began.
///
/// This is what is persisted: the DAG-CBOR array `[seq, state]`. `seq` is 0 when a machine
/// begins and grows by one for every applied event (invalid events do not count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot<S> {
    /// The number of events applied so far.
    pub seq: u64,
    /// The state.
    pub state: S,
}

/// Why [`step`] refused an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The machine is already in a final state.
    #[error("the machine is in a final state")]
    Final,
    /// The transition function refused the event.
    #[error(transparent)]
    Invalid(Invalid),
}

/// Applies one event to a snapshot: the pure heart of the engine.
///
/// A final state absorbs nothing ([`Rejection::Final`]); an invalid event changes nothing
/// ([`Rejection::Invalid`]); a valid one returns the next snapshot (`seq + 1`).
pub fn step<M: Machine>(
    machine: &M,
    current: &Snapshot<M::State>,
    event: &M::Event,
) -> Result<Snapshot<M::State>, Rejection> {
    if machine.is_final(&current.state) {
        return Err(Rejection::Final);
    }
    let state = machine
        .transition(&current.state, event)
        .map_err(Rejection::Invalid)?
        .into_state();
    Ok(Snapshot {
        seq: current.seq.saturating_add(1),
        state,
    })
}
