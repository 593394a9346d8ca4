//! Machines described as data: a transition table of rules.
//!
//! A [`Table`] is a list of [`Rule`]s, each naming an event kind, the statuses it applies in
//! ([`Source`]), where it goes ([`Dest`]) and an optional [`Action`] that records the event's data
//! in the state. Lookup follows go-statemachine: a rule for `(event, current status)` wins over a
//! rule for `(event, any status)`. A `Table` implements [`Machine`], and [`Table::rows`] /
//! [`Table::to_markdown`] render it for documentation.
//!
//! The state type is usually a struct holding a status enum plus data (a deal); it exposes the
//! status through [`HasStatus`]. An enum with no data can implement [`HasStatus`] on itself.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::machine::{Invalid, Machine, Transition};

/// A status: the part of a state that transitions are keyed on (a fieldless enum).
pub trait Status: Copy + Eq + Hash + fmt::Debug + Send + Sync + 'static {
    /// The status' name as shown in errors and documentation.
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

/// An event that can name its kind (usually its enum variant's name).
pub trait EventKind {
    /// The event's kind, matched against [`Rule`] event names.
    fn kind(&self) -> &'static str;
}

/// A rule's action: records the event's data in the (copied) state, or refuses the event with a
/// reason, which turns it into an [`Invalid`] transition that leaves the state untouched.
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
    /// Move to this status and run its entry action ([`Transition::To`]).
    To(St),
    /// Keep the status and run its entry action again ([`Transition::NoChange`]).
    NoChange,
    /// Keep the status and only record the event's data ([`Transition::JustRecord`]).
    JustRecord,
}

/// One row of a transition table.
pub struct Rule<S: HasStatus, E> {
    event: &'static str,
    from: Source<S::Status>,
    to: Dest<S::Status>,
    action: Option<Action<S, E>>,
    doc: &'static str,
}

impl<S: HasStatus, E> Clone for Rule<S, E> {
    fn clone(&self) -> Self {
        Rule {
            event: self.event,
            from: self.from.clone(),
            to: self.to,
            action: self.action,
            doc: self.doc,
        }
    }
}

impl<S: HasStatus, E> fmt::Debug for Rule<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("event", &self.event)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("action", &self.action.is_some())
            .field("doc", &self.doc)
            .finish()
    }
}

impl<S: HasStatus, E> Rule<S, E> {
    /// A rule: on `event` in `from`, go to `to`, with no action.
    pub fn new(event: &'static str, from: Source<S::Status>, to: Dest<S::Status>) -> Self {
        Rule {
            event,
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
    pub fn event(&self) -> &'static str {
        self.event
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
    /// The destination status name, `(no change)` or `(record only)`.
    pub to: String,
    /// The rule's description (empty if none).
    pub doc: &'static str,
}

/// An error in a table's definition (found by [`Table::new`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// Two rules apply to the same event in the same status.
    #[error("two rules for event `{event}` in status `{status}`")]
    Duplicate {
        /// The event kind.
        event: &'static str,
        /// The status name (`*` for two any-status rules).
        status: &'static str,
    },
    /// A rule applies in a final status, where no event is ever applied.
    #[error("rule for event `{event}` starts in final status `{status}`")]
    FromFinal {
        /// The event kind.
        event: &'static str,
        /// The final status.
        status: &'static str,
    },
    /// A rule has an empty event name or an empty list of statuses.
    #[error("rule for event `{0}` is empty (no event name or no source status)")]
    Empty(&'static str),
}

/// A machine defined as data: rules plus the set of final statuses.
///
/// See the [crate documentation](crate) for an example.
pub struct Table<S: HasStatus, E> {
    rules: Vec<Rule<S, E>>,
    finals: Vec<S::Status>,
    specific: HashMap<(&'static str, S::Status), usize>,
    any: HashMap<&'static str, usize>,
}

impl<S: HasStatus, E> fmt::Debug for Table<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("rules", &self.rules)
            .field("finals", &self.finals)
            .finish()
    }
}

impl<S: HasStatus, E> Clone for Table<S, E> {
    fn clone(&self) -> Self {
        Table {
            rules: self.rules.clone(),
            finals: self.finals.clone(),
            specific: self.specific.clone(),
            any: self.any.clone(),
        }
    }
}

impl<S: HasStatus, E> Table<S, E> {
    /// Builds a table, checking that no two rules apply to the same `(event, status)`, that no
    /// rule starts in a final status and that no rule is empty.
    pub fn new(
        rules: Vec<Rule<S, E>>,
        finals: impl IntoIterator<Item = S::Status>,
    ) -> Result<Self, TableError> {
        let finals: Vec<S::Status> = finals.into_iter().collect();
        let mut specific = HashMap::new();
        let mut any = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            if rule.event.is_empty() {
                return Err(TableError::Empty(rule.event));
            }
            match &rule.from {
                Source::Any => {
                    if any.insert(rule.event, i).is_some() {
                        return Err(TableError::Duplicate {
                            event: rule.event,
                            status: "*",
                        });
                    }
                }
                Source::In(statuses) => {
                    if statuses.is_empty() {
                        return Err(TableError::Empty(rule.event));
                    }
                    for &status in statuses {
                        if finals.contains(&status) {
                            return Err(TableError::FromFinal {
                                event: rule.event,
                                status: status.name(),
                            });
                        }
                        if specific.insert((rule.event, status), i).is_some() {
                            return Err(TableError::Duplicate {
                                event: rule.event,
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

    /// The rule that applies to `event` in `status`: the specific one if any, else the
    /// any-status one. `None` in a final status.
    pub fn lookup(&self, event: &'static str, status: S::Status) -> Option<&Rule<S, E>> {
        if self.finals.contains(&status) {
            return None;
        }
        let index = self
            .specific
            .get(&(event, status))
            .or_else(|| self.any.get(event))?;
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

    /// The rules rendered as strings, in definition order (for generated docs).
    pub fn rows(&self) -> Vec<Row> {
        self.rules
            .iter()
            .map(|rule| Row {
                event: rule.event,
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
                    Dest::NoChange => "(no change)".to_owned(),
                    Dest::JustRecord => "(record only)".to_owned(),
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
}

impl<S, E> Table<S, E>
where
    S: HasStatus + Clone,
    E: EventKind,
{
    /// Applies `event` to `state` by the table: finds the rule, runs its action on a copy of
    /// the state and sets the destination status. The state is never changed in place.
    ///
    /// For `NoChange` and `JustRecord` rules the status is kept even if the action changed it.
    pub fn apply(&self, state: &S, event: &E) -> Result<Transition<S>, Invalid> {
        let kind = event.kind();
        let status = state.status();
        let Some(rule) = self.lookup(kind, status) else {
            let reason = if self.is_final_status(status) {
                "final state"
            } else {
                "no transition"
            };
            return Err(Invalid::new(kind, status.name(), reason));
        };
        let mut next = state.clone();
        if let Some(action) = rule.action {
            action(&mut next, event).map_err(|reason| Invalid::new(kind, status.name(), reason))?;
        }
        Ok(match rule.to {
            Dest::To(to) => {
                next.set_status(to);
                Transition::To(next)
            }
            Dest::NoChange => {
                next.set_status(status);
                Transition::NoChange(next)
            }
            Dest::JustRecord => {
                next.set_status(status);
                Transition::JustRecord(next)
            }
        })
    }
}

impl<S, E> Machine for Table<S, E>
where
    S: HasStatus + Clone + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
    E: EventKind + Clone + fmt::Debug + Send + Sync + 'static,
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

/// Keeps a generated file (a table's markdown) in step with the code, for a test that
/// guards it: with the environment variable `RM_UPDATE_FSM_DOCS` set, writes `contents` to
/// `path`; otherwise fails with a message naming the file when it differs.
pub fn check_generated(path: &std::path::Path, contents: &str) -> Result<(), String> {
    if std::env::var_os("RM_UPDATE_FSM_DOCS").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        return std::fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()));
    }
    match std::fs::read_to_string(path) {
        Ok(actual) if actual == contents => Ok(()),
        _ => Err(format!(
            "{} is stale: run `cargo xtask fsm-docs`",
            path.display()
        )),
    }
}

/// Statuses that some rule moves to, are not final, and that no rule names as a source:
/// a machine entering one could leave it only through a rule for any status. A
/// well-formed table has none.
pub fn dead_ends<S, E>(table: &Table<S, E>) -> Vec<&'static str>
where
    S: HasStatus,
{
    let named = |st: &S::Status| {
        table
            .rules()
            .iter()
            .any(|r| matches!(r.from(), Source::In(v) if v.contains(st)))
    };
    let mut out: Vec<&'static str> = table
        .rules()
        .iter()
        .filter_map(|r| match r.to() {
            Dest::To(st) if !table.is_final_status(st) && !named(&st) => Some(st.name()),
            _ => None,
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}
