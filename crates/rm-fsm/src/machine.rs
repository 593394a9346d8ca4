//! The sans-IO core: what a machine is, and the pure function that applies one event.
//!
//! Nothing here does IO or knows about tasks, stores or time. [`step`] takes the current
//! [`Snapshot`] and an event and returns the next snapshot plus the [`Effect`] the driver has to
//! carry out (run an entry action, nothing, or stop the machine). The async driver in
//! [`Group`](crate::Group) persists the new snapshot before it carries out the effect.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A state machine description: a state type, an event type and a pure transition function.
///
/// Implement it directly, or describe the machine as data with a [`Table`](crate::Table), which
/// implements `Machine`. Entry actions (the side effects) are not part of the machine; they are
/// given to the [`Group`](crate::Group) as [`Actions`](crate::Actions).
pub trait Machine: Send + Sync + 'static {
    /// The persisted state of one machine (stored as DAG-CBOR).
    type State: Clone + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The events the machine reacts to.
    type Event: Clone + fmt::Debug + Send + Sync + 'static;

    /// Applies `event` to `state`. Must be pure and deterministic: it is the only thing that
    /// decides the next state, and it is re-evaluated by nobody (the result is persisted).
    ///
    /// Returning [`Invalid`] leaves the state untouched.
    fn transition(
        &self,
        state: &Self::State,
        event: &Self::Event,
    ) -> Result<Transition<Self::State>, Invalid>;

    /// Whether `state` is final. A final machine absorbs no more events and runs no entry
    /// action; it stays in the store for introspection.
    fn is_final(&self, state: &Self::State) -> bool;
}

/// The outcome of a valid transition: the next state and whether its entry action runs.
///
/// The three kinds mirror go-statemachine's `To`, `ToNoChange` and `ToJustRecord`. In all three
/// the carried state may differ from the previous one (the event's data was recorded in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition<S> {
    /// Move to this state and run its entry action.
    To(S),
    /// Stay in the same state (possibly with updated data) and run its entry action again.
    NoChange(S),
    /// Only record the event's effect on the state; no entry action runs.
    JustRecord(S),
}

impl<S> Transition<S> {
    /// The next state.
    pub fn state(&self) -> &S {
        match self {
            Transition::To(s) | Transition::NoChange(s) | Transition::JustRecord(s) => s,
        }
    }

    /// The next state, by value.
    pub fn into_state(self) -> S {
        match self {
            Transition::To(s) | Transition::NoChange(s) | Transition::JustRecord(s) => s,
        }
    }

    /// Whether the entry action of the next state runs (`To` and `NoChange`).
    pub fn runs_entry(&self) -> bool {
        !matches!(self, Transition::JustRecord(_))
    }
}

/// An event that has no transition from the current state, or that a rule's action refused.
///
/// The state is left untouched. The engine returns this to the sender and publishes it to
/// subscribers as [`Notification::Invalid`](crate::Notification::Invalid).
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

/// A machine's state together with the number of events applied to it since `begin`.
///
/// This is what is persisted: the DAG-CBOR array `[seq, state]`. `seq` is 0 right after
/// `begin` and grows by one for every applied event (invalid events do not count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot<S> {
    /// The number of events applied so far.
    pub seq: u64,
    /// The state.
    pub state: S,
}

/// What the driver has to do after an event was applied and persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Run the entry action of the new state (`To` or `NoChange` into a non-final state).
    Enter,
    /// Nothing (`JustRecord` into a non-final state).
    Record,
    /// The new state is final: the machine stops, no entry action runs.
    Finish,
}

/// The result of [`step`]: the next snapshot and the effect to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<S> {
    /// The snapshot to persist.
    pub snapshot: Snapshot<S>,
    /// What to do once it is persisted.
    pub effect: Effect,
}

/// Why [`step`] refused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The machine is already in a final state.
    Final,
    /// The transition function refused the event.
    Invalid(Invalid),
}

/// Applies one event to a snapshot: the pure heart of the engine.
///
/// A final state absorbs nothing ([`Rejection::Final`]); an invalid event changes nothing
/// ([`Rejection::Invalid`]); a valid one returns the next snapshot (`seq + 1`) and its [`Effect`].
pub fn step<M: Machine>(
    machine: &M,
    current: &Snapshot<M::State>,
    event: &M::Event,
) -> Result<Step<M::State>, Rejection> {
    if machine.is_final(&current.state) {
        return Err(Rejection::Final);
    }
    let transition = machine
        .transition(&current.state, event)
        .map_err(Rejection::Invalid)?;
    let runs_entry = transition.runs_entry();
    let state = transition.into_state();
    let effect = if machine.is_final(&state) {
        Effect::Finish
    } else if runs_entry {
        Effect::Enter
    } else {
        Effect::Record
    };
    Ok(Step {
        snapshot: Snapshot {
            seq: current.seq.saturating_add(1),
            state,
        },
        effect,
    })
}
