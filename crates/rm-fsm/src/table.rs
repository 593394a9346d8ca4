//! Machines described as data: a transition table of rules.
//!
//! A [`Table`] is a list of [`Rule`]s, each naming an event kind, the statuses it applies in
//! ([`Source`]), where it goes ([`Dest`]) and an optional [`Action`] that records the event's
//! data in the state. Lookup follows go-statemachine: a rule for `(event, current status)`
//! wins over a rule for `(event, any status)`. A `Table` implements [`Machine`], and
//! [`Table::rows`] / [`Table::to_markdown`] render it for documentation.
//!
//! Statuses and event kinds are enums ([`Status`], [`Kind`]), declared with
//! [`named_enum!`](crate::named_enum) so the table knows every value: a rule for a kind
//! that does not exist does not compile, and [`Table::check`] finds statuses a machine can
//! enter but never leave, statuses it can never reach and kinds no rule handles.
//!
//! The state type is usually a struct holding a status plus data (a deal); it exposes the
//! status through [`HasStatus`].

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::machine::{Invalid, Machine, Transition};

/// A status: the part of a state that transitions are keyed on (a fieldless enum, usually
/// declared with [`named_enum!`](crate::named_enum)).
pub trait Status: Copy + Eq + Hash + fmt::Debug + Send + Sync + 'static {
    /// Every value, in declaration order.
    const ALL: &'static [Self];
    /// The status' name as shown in errors and documentation.
    fn name(&self) -> &'static str;
}

/// An event kind: what [`Rule`]s are keyed on (a fieldless enum, usually declared with
/// [`named_enum!`](crate::named_enum), one value per event variant).
pub trait Kind: Copy + Eq + Hash + fmt::Debug + Send + Sync + 'static {
    /// Every value, in declaration order.
    const ALL: &'static [Self];
    /// The kind's name as shown in errors and documentation.
    fn name(&self) -> &'static str;
}

/// A state that carries a [`Status`].
pub trait HasStatus {
    /// The status type.
    type Status: Status;
    /// The current status.
    fn status(&self) -> Self::Status;
    /// Sets the status (called by the table when a rule moves to a new status).
    fn set_status(&mut self, status: Self::Status);
}

/// An event that knows its kind.
pub trait Event {
    /// The kind type.
    type Kind: Kind;
    /// The event's kind.
    fn kind(&self) -> Self::Kind;
}

/// Declares a fieldless enum with a name per value and the list of all values, and
/// implements [`Status`] or [`Kind`] for it, `Display`, and serde (as its name, so stored
/// records do not depend on the order of the values).
///
/// ```
/// rm_fsm::named_enum! {
///     /// Where an order is.
///     pub enum OrderStatus: Status { Open, Shipped, Delivered }
/// }
/// use rm_fsm::Status;
/// assert_eq!(OrderStatus::ALL.len(), 3);
/// assert_eq!(OrderStatus::Shipped.name(), "Shipped");
/// ```
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $trait:ident {
            $( $(#[$vmeta:meta])* $variant:ident ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $(
                $(#[$vmeta])*
                #[doc = concat!("(`", stringify!($variant), "`)")]
                $variant,
            )*
        }

        impl $crate::$trait for $name {
            const ALL: &'static [Self] = &[ $( $name::$variant, )* ];
            fn name(&self) -> &'static str {
                match self {
                    $( $name::$variant => stringify!($variant), )*
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::$trait::name(self))
            }
        }

        impl $crate::__serde::Serialize for $name {
            fn serialize<S: $crate::__serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($crate::$trait::name(self))
            }
        }

        impl<'de> $crate::__serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = <::std::borrow::Cow<'de, str> as $crate::__serde::Deserialize>::deserialize(d)?;
                <$name as $crate::$trait>::ALL
                    .iter()
                    .copied()
                    .find(|v| $crate::$trait::name(v) == name)
                    .ok_or_else(|| <D::Error as $crate::__serde::de::Error>::custom(
                        format!("unknown {} `{name}`", stringify!($name)),
                    ))
            }
        }
    };
}

/// A rule's action: records the event's data in the (copied) state, or refuses the event
/// with a reason, which turns it into an [`Invalid`] transition that leaves the state
/// untouched.
pub type Action<S, E> = fn(&mut S, &E) -> Result<(), String>;

/// The statuses a rule applies in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source<St> {
    /// Any non-final status for which no specific rule exists.
    Any,
    /// These statuses.
    In(Vec<St>),
}

impl<St> Source<St> {
    /// Any status (go-statemachine's `FromAny`).
    pub fn any() -> Self {
        Source::Any
    }

    /// One status.
    pub fn one(status: St) -> Self {
        Source::In(vec![status])
    }

    /// Several statuses.
    pub fn of(statuses: impl IntoIterator<Item = St>) -> Self {
        Source::In(statuses.into_iter().collect())
    }
}

/// Where a rule goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest<St> {
    /// Move to this status.
    To(St),
    /// Keep the status; only the event's data is recorded.
    Stay,
}

/// One row of a transition table.
pub struct Rule<S: HasStatus, E: Event> {
    kind: E::Kind,
    from: Source<S::Status>,
    to: Dest<S::Status>,
    action: Option<Action<S, E>>,
    doc: &'static str,
}

impl<S: HasStatus, E: Event> Clone for Rule<S, E> {
    fn clone(&self) -> Self {
        Rule {
            kind: self.kind,
            from: self.from.clone(),
            to: self.to,
            action: self.action,
            doc: self.doc,
        }
    }
}

impl<S: HasStatus, E: Event> fmt::Debug for Rule<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("kind", &self.kind)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("action", &self.action.is_some())
            .field("doc", &self.doc)
            .finish()
    }
}

impl<S: HasStatus, E: Event> Rule<S, E> {
    /// A rule: on an event of `kind` in `from`, go to `to`, with no action.
    pub fn new(kind: E::Kind, from: Source<S::Status>, to: Dest<S::Status>) -> Self {
        Rule {
            kind,
            from,
            to,
            action: None,
            doc: "",
        }
    }

    /// Sets the action that records the event's data in the state.
    #[must_use]
    pub fn action(mut self, action: Action<S, E>) -> Self {
        self.action = Some(action);
        self
    }

    /// Sets a one-line description of the action, shown in the rendered table.
    #[must_use]
    pub fn doc(mut self, doc: &'static str) -> Self {
        self.doc = doc;
        self
    }

    /// The event kind this rule reacts to.
    pub fn kind(&self) -> E::Kind {
        self.kind
    }

    /// The statuses it applies in.
    pub fn from(&self) -> &Source<S::Status> {
        &self.from
    }

    /// Where it goes.
    pub fn to(&self) -> Dest<S::Status> {
        self.to
    }

    /// Its description.
    pub fn description(&self) -> &'static str {
        self.doc
    }

    /// Whether it has an action.
    pub fn has_action(&self) -> bool {
        self.action.is_some()
    }
}

/// A rendered row of a table, for documentation (see [`Table::rows`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The event kind.
    pub event: &'static str,
    /// `*` for any status, else the status names joined by `, `.
    pub from: String,
    /// The destination status name, or `(same)`.
    pub to: String,
    /// The rule's description (empty if none).
    pub doc: &'static str,
}

/// An error in a table's definition (found by [`Table::new`] or [`Table::check`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// Two rules apply to the same event kind in the same status.
    #[error("two rules for event `{kind}` in status `{status}`")]
    Duplicate {
        /// The event kind.
        kind: &'static str,
        /// The status name (`*` for two any-status rules).
        status: &'static str,
    },
    /// A rule applies in a final status, where no event is ever applied.
    #[error("rule for event `{kind}` starts in final status `{status}`")]
    FromFinal {
        /// The event kind.
        kind: &'static str,
        /// The final status.
        status: &'static str,
    },
    /// A rule has an empty list of statuses.
    #[error("rule for event `{0}` applies in no status")]
    Empty(&'static str),
    /// A non-final status has no rule leading to another status: a machine in it could
    /// never end.
    #[error("status `{0}` is not final and no rule leads out of it")]
    NoWayOut(&'static str),
    /// A status other than the initial one that no rule leads to.
    #[error("status `{0}` cannot be reached from the initial status")]
    Unreachable(&'static str),
    /// An event kind that no rule handles (dead code in the event type).
    #[error("event kind `{0}` has no rule")]
    UnusedKind(&'static str),
}

/// A machine defined as data: rules plus the set of final statuses.
pub struct Table<S: HasStatus, E: Event> {
    rules: Vec<Rule<S, E>>,
    finals: Vec<S::Status>,
    specific: HashMap<(E::Kind, S::Status), usize>,
    any: HashMap<E::Kind, usize>,
}

impl<S: HasStatus, E: Event> fmt::Debug for Table<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("rules", &self.rules)
            .field("finals", &self.finals)
            .finish()
    }
}

impl<S: HasStatus, E: Event> Clone for Table<S, E> {
    fn clone(&self) -> Self {
        Table {
            rules: self.rules.clone(),
            finals: self.finals.clone(),
            specific: self.specific.clone(),
            any: self.any.clone(),
        }
    }
}

impl<S: HasStatus, E: Event> Table<S, E> {
    /// Builds a table, checking that no two rules apply to the same `(kind, status)`, that
    /// no rule starts in a final status and that no rule has an empty source.
    pub fn new(
        rules: Vec<Rule<S, E>>,
        finals: impl IntoIterator<Item = S::Status>,
    ) -> Result<Self, TableError> {
        let finals: Vec<S::Status> = finals.into_iter().collect();
        let mut specific = HashMap::new();
        let mut any = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            let kind = rule.kind.name();
            match &rule.from {
                Source::Any => {
                    if any.insert(rule.kind, i).is_some() {
                        return Err(TableError::Duplicate { kind, status: "*" });
                    }
                }
                Source::In(statuses) => {
                    if statuses.is_empty() {
                        return Err(TableError::Empty(kind));
                    }
                    for &status in statuses {
                        if finals.contains(&status) {
                            return Err(TableError::FromFinal {
                                kind,
                                status: status.name(),
                            });
                        }
                        if specific.insert((rule.kind, status), i).is_some() {
                            return Err(TableError::Duplicate {
                                kind,
                                status: status.name(),
                            });
                        }
                    }
                }
            }
        }
        Ok(Table {
            rules,
            finals,
            specific,
            any,
        })
    }

    /// The rule that applies to `kind` in `status`: the specific one if any, else the
    /// any-status one. `None` in a final status.
    pub fn lookup(&self, kind: E::Kind, status: S::Status) -> Option<&Rule<S, E>> {
        if self.finals.contains(&status) {
            return None;
        }
        let index = self
            .specific
            .get(&(kind, status))
            .or_else(|| self.any.get(&kind))?;
        self.rules.get(*index)
    }

    /// Whether `status` is final.
    pub fn is_final_status(&self, status: S::Status) -> bool {
        self.finals.contains(&status)
    }

    /// The rules, in definition order.
    pub fn rules(&self) -> &[Rule<S, E>] {
        &self.rules
    }

    /// The final statuses.
    pub fn finals(&self) -> &[S::Status] {
        &self.finals
    }

    /// The statuses a machine in `status` can move to with one event (itself excluded).
    pub fn successors(&self, status: S::Status) -> Vec<S::Status> {
        if self.is_final_status(status) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for &kind in E::Kind::ALL {
            if let Some(rule) = self.lookup(kind, status)
                && let Dest::To(to) = rule.to
                && to != status
                && !out.contains(&to)
            {
                out.push(to);
            }
        }
        out
    }

    /// Checks the whole machine: every non-final status has a rule leading out of it
    /// ([`TableError::NoWayOut`]), from every status some final status can be reached
    /// (else the first status on the way that cannot is reported as `NoWayOut`), every
    /// status is reachable from `initial` ([`TableError::Unreachable`]), and every event
    /// kind has a rule ([`TableError::UnusedKind`]). Returns every problem found.
    pub fn check(&self, initial: S::Status) -> Result<(), Vec<TableError>> {
        let mut problems = Vec::new();
        let statuses = S::Status::ALL;
        // Reachability from the initial status.
        let mut reached = vec![initial];
        let mut i = 0;
        while i < reached.len() {
            for next in self.successors(reached[i]) {
                if !reached.contains(&next) {
                    reached.push(next);
                }
            }
            i += 1;
        }
        for &status in statuses {
            if !reached.contains(&status) {
                problems.push(TableError::Unreachable(status.name()));
            }
        }
        // Every non-final status leads, through some rules, to a final status.
        let mut ends: Vec<S::Status> = self.finals.clone();
        loop {
            let before = ends.len();
            for &status in statuses {
                if !ends.contains(&status)
                    && self.successors(status).iter().any(|s| ends.contains(s))
                {
                    ends.push(status);
                }
            }
            if ends.len() == before {
                break;
            }
        }
        for &status in statuses {
            if !ends.contains(&status) {
                problems.push(TableError::NoWayOut(status.name()));
            }
        }
        for &kind in E::Kind::ALL {
            if !self.rules.iter().any(|r| r.kind == kind) {
                problems.push(TableError::UnusedKind(kind.name()));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The rules rendered as strings, in definition order (for generated docs).
    pub fn rows(&self) -> Vec<Row> {
        self.rules
            .iter()
            .map(|rule| Row {
                event: rule.kind.name(),
                from: match &rule.from {
                    Source::Any => "*".to_owned(),
                    Source::In(statuses) => statuses
                        .iter()
                        .map(Status::name)
                        .collect::<Vec<_>>()
                        .join(", "),
                },
                to: match rule.to {
                    Dest::To(status) => status.name().to_owned(),
                    Dest::Stay => "(same)".to_owned(),
                },
                doc: rule.doc,
            })
            .collect()
    }

    /// The table as a markdown table (`| Event | From | To | Action |`), followed by a line
    /// naming the final statuses.
    pub fn to_markdown(&self) -> String {
        fn cell(s: &str) -> String {
            s.replace('|', "\\|")
        }
        let mut out = String::from("| Event | From | To | Action |\n|---|---|---|---|\n");
        for row in self.rows() {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                cell(row.event),
                cell(&row.from),
                cell(&row.to),
                cell(row.doc)
            ));
        }
        let finals: Vec<&str> = self.finals.iter().map(Status::name).collect();
        out.push_str(&format!("\nFinal states: {}.\n", finals.join(", ")));
        out
    }

    /// Applies `event` to `state` by the table: finds the rule, runs its action on a copy
    /// of the state and sets the destination status. The state is never changed in place.
    /// For `Stay` rules the status is kept even if the action changed it.
    pub fn apply(&self, state: &S, event: &E) -> Result<Transition<S>, Invalid>
    where
        S: Clone,
    {
        let kind = event.kind();
        let status = state.status();
        let Some(rule) = self.lookup(kind, status) else {
            let reason = if self.is_final_status(status) {
                "final state"
            } else {
                "no transition"
            };
            return Err(Invalid::new(kind.name(), status.name(), reason));
        };
        let mut next = state.clone();
        if let Some(action) = rule.action {
            action(&mut next, event)
                .map_err(|reason| Invalid::new(kind.name(), status.name(), reason))?;
        }
        Ok(match rule.to {
            Dest::To(to) => {
                next.set_status(to);
                Transition::To(next)
            }
            Dest::Stay => {
                next.set_status(status);
                Transition::Stay(next)
            }
        })
    }
}

impl<S, E> Machine for Table<S, E>
where
    S: HasStatus + Clone + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
    E: Event + Clone + fmt::Debug + Send + Sync + 'static,
{
    type State = S;
    type Event = E;

    fn transition(&self, state: &S, event: &E) -> Result<Transition<S>, Invalid> {
        self.apply(state, event)
    }

    fn is_final(&self, state: &S) -> bool {
        self.is_final_status(state.status())
    }
}
