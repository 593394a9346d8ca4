//! Runtime selectors (go-ipld-prime's selector values) and the walk of one block, metered.
//!
//! Every unit of work is one *step* on a [`Meter`]: a data-model node visited, a link
//! collected, a map entry compared, a selector node examined, and a selector node built
//! (a "copy": exploring a union or a recursion builds new selector values). The meter
//! refuses the step that takes the total past its allowance, and the construction of a
//! selector node that takes the number alive past its cap; a refused step ends the walk
//! with a typed error. So no selector, however small, makes a walk run or allocate beyond
//! the budget its traversal was given (see the parent module and `docs/protocol.md`).

use super::Error;
use crate::selector::{RecursionLimit, Selector};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Deepest nesting of a selector value the engine examines. Parsed selectors nest at most
/// [`crate::selector::MAX_NESTING`] deep; exploring can add a level per data-model level
/// (unions inside recursions), and this bound keeps the recursion of the engine shallow.
pub(super) const MAX_SELECTOR_DEPTH: usize = 512;

/// A selector value at run time; its `Live` token counts it on its meter while it exists.
#[derive(Debug)]
pub(super) struct Sel {
    kind: Kind,
    _live: Live,
}

#[derive(Debug)]
enum Kind {
    Matcher,
    All(Arc<Sel>),
    Fields(Vec<(String, Arc<Sel>)>),
    Index(i64, Arc<Sel>),
    Range(i64, i64, Arc<Sel>),
    Union(Vec<Arc<Sel>>),
    Recursive {
        sequence: Arc<Sel>,
        current: Arc<Sel>,
        limit: RecursionLimit,
    },
    Edge,
}

/// One live selector node on a meter's count.
#[derive(Debug)]
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The work account of one traversal.
#[derive(Debug)]
pub(super) struct Meter {
    /// Steps spent so far.
    pub(super) spent: u64,
    /// Steps allowed so far (grows as blocks are advanced past).
    pub(super) allowance: u64,
    /// Selector nodes alive (shared with every node's [`Live`] token).
    live: Arc<AtomicUsize>,
    max_live: usize,
    /// Most selector nodes alive at once so far.
    pub(super) peak_live: usize,
}

impl Meter {
    pub(super) fn new(allowance: u64, max_live: usize) -> Self {
        Self {
            spent: 0,
            allowance,
            live: Arc::new(AtomicUsize::new(0)),
            max_live,
            peak_live: 0,
        }
    }

    /// Selector nodes alive now.
    pub(super) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Spends `n` steps.
    pub(super) fn charge(&mut self, n: u64) -> Result<(), Error> {
        self.spent = self.spent.saturating_add(n);
        if self.spent > self.allowance {
            return Err(Error::OverBudget {
                spent: self.spent,
                allowance: self.allowance,
            });
        }
        Ok(())
    }

    /// Builds a selector node: one step, and one more node alive.
    fn build(&mut self, kind: Kind) -> Result<Arc<Sel>, Error> {
        self.charge(1)?;
        let live = self.live.fetch_add(1, Ordering::Relaxed) + 1;
        let sel = Arc::new(Sel {
            kind,
            _live: Live(Arc::clone(&self.live)),
        });
        if live > self.max_live {
            return Err(Error::SelectorTooLarge(self.max_live));
        }
        self.peak_live = self.peak_live.max(live);
        Ok(sel)
    }
}

/// Compiles a declarative selector, one step and one live node per selector node.
pub(super) fn compile(s: &Selector, m: &mut Meter, depth: usize) -> Result<Arc<Sel>, Error> {
    if depth > MAX_SELECTOR_DEPTH {
        return Err(Error::SelectorTooDeep(MAX_SELECTOR_DEPTH));
    }
    let d = depth + 1;
    let kind = match s {
        Selector::Matcher => Kind::Matcher,
        Selector::ExploreAll { next } => Kind::All(compile(next, m, d)?),
        Selector::ExploreFields { fields } => Kind::Fields(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), compile(v, m, d)?)))
                .collect::<Result<_, Error>>()?,
        ),
        Selector::ExploreIndex { index, next } => Kind::Index(*index, compile(next, m, d)?),
        Selector::ExploreRange { start, end, next } => {
            Kind::Range(*start, *end, compile(next, m, d)?)
        }
        Selector::ExploreUnion(members) => Kind::Union(
            members
                .iter()
                .map(|s| compile(s, m, d))
                .collect::<Result<_, Error>>()?,
        ),
        Selector::ExploreRecursive { limit, sequence } => {
            let sequence = compile(sequence, m, d)?;
            Kind::Recursive {
                current: Arc::clone(&sequence),
                sequence,
                limit: *limit,
            }
        }
        Selector::ExploreRecursiveEdge => Kind::Edge,
    };
    m.build(kind)
}

/// A path segment: a map key or a list index.
#[derive(Clone, Copy, Debug)]
pub(super) enum Seg<'a> {
    Key(&'a str),
    Index(i64),
}

impl Seg<'_> {
    /// go-ipld-prime's `PathSegment.Index()`.
    fn index(&self) -> Option<i64> {
        match self {
            Seg::Index(i) => Some(*i),
            Seg::Key(k) => k.parse().ok(),
        }
    }
    fn matches_key(&self, key: &str) -> bool {
        match self {
            Seg::Key(k) => *k == key,
            Seg::Index(i) => key == i.to_string(),
        }
    }
}

/// One entry of `Selector.Interests()`.
pub(super) enum Interest<'a> {
    Key(&'a str),
    Index(i64),
    Range(i64, i64),
}

fn enter(m: &mut Meter, depth: usize) -> Result<(), Error> {
    if depth > MAX_SELECTOR_DEPTH {
        return Err(Error::SelectorTooDeep(MAX_SELECTOR_DEPTH));
    }
    m.charge(1)
}

/// `Selector.Interests()`: `None` means "all". One step per selector node examined and per
/// interest listed.
pub(super) fn interests<'a>(
    sel: &'a Sel,
    m: &mut Meter,
    depth: usize,
) -> Result<Option<Vec<Interest<'a>>>, Error> {
    enter(m, depth)?;
    Ok(match &sel.kind {
        Kind::Matcher | Kind::Edge => Some(Vec::new()),
        Kind::All(_) => None,
        Kind::Fields(fields) => {
            m.charge(fields.len() as u64)?;
            Some(fields.iter().map(|(k, _)| Interest::Key(k)).collect())
        }
        Kind::Index(i, _) => Some(vec![Interest::Index(*i)]),
        Kind::Range(s, e, _) => Some(vec![Interest::Range(*s, *e)]),
        Kind::Union(members) => {
            let mut all = Vec::new();
            for member in members {
                match interests(member, m, depth + 1)? {
                    Some(i) => all.extend(i),
                    None => return Ok(None),
                }
            }
            Some(all)
        }
        Kind::Recursive { current, .. } => interests(current, m, depth + 1)?,
    })
}

/// Whether `sel` selects nothing below the node it applies to.
pub(super) fn has_no_interests(sel: &Sel, m: &mut Meter) -> Result<bool, Error> {
    Ok(interests(sel, m, 0)?.is_some_and(|i| i.is_empty()))
}

/// `Selector.Explore(node, segment)`.
pub(super) fn explore(
    sel: &Arc<Sel>,
    is_list: bool,
    seg: Seg<'_>,
    m: &mut Meter,
    depth: usize,
) -> Result<Option<Arc<Sel>>, Error> {
    enter(m, depth)?;
    Ok(match &sel.kind {
        Kind::Matcher | Kind::Edge => None,
        Kind::All(next) => Some(Arc::clone(next)),
        Kind::Fields(fields) => {
            let found = fields.iter().position(|(k, _)| seg.matches_key(k));
            m.charge(found.map_or(fields.len(), |i| i + 1) as u64)?;
            found.map(|i| Arc::clone(&fields[i].1))
        }
        Kind::Index(i, next) => (is_list && seg.index() == Some(*i)).then(|| Arc::clone(next)),
        Kind::Range(s, e, next) => {
            (is_list && seg.index().is_some_and(|i| i >= *s && i < *e)).then(|| Arc::clone(next))
        }
        Kind::Union(members) => {
            let mut results = Vec::new();
            for member in members {
                if let Some(r) = explore(member, is_list, seg, m, depth + 1)? {
                    results.push(r);
                }
            }
            match results.len() {
                0 => None,
                1 => results.pop(),
                _ => Some(m.build(Kind::Union(results))?),
            }
        }
        Kind::Recursive {
            sequence,
            current,
            limit,
        } => {
            let Some(next) = explore(current, is_list, seg, m, depth + 1)? else {
                return Ok(None);
            };
            let recursive = |m: &mut Meter, current: Arc<Sel>, limit: RecursionLimit| {
                m.build(Kind::Recursive {
                    sequence: Arc::clone(sequence),
                    current,
                    limit,
                })
            };
            if !has_edge(&next, m, depth + 1)? {
                return Ok(Some(recursive(m, next, *limit)?));
            }
            match limit {
                RecursionLimit::Depth(d) if *d < 2 => replace_edge(&next, None, m, depth + 1)?,
                RecursionLimit::Depth(d) => {
                    match replace_edge(&next, Some(sequence), m, depth + 1)? {
                        Some(current) => Some(recursive(m, current, RecursionLimit::Depth(d - 1))?),
                        None => None,
                    }
                }
                RecursionLimit::None => {
                    match replace_edge(&next, Some(sequence), m, depth + 1)? {
                        // Back at the start of the sequence, unlimited: the same selector
                        // (explore-all-recursively builds nothing per node).
                        Some(c) if Arc::ptr_eq(&c, sequence) && Arc::ptr_eq(current, sequence) => {
                            Some(Arc::clone(sel))
                        }
                        Some(current) => Some(recursive(m, current, RecursionLimit::None)?),
                        None => None,
                    }
                }
            }
        }
    })
}

fn has_edge(sel: &Sel, m: &mut Meter, depth: usize) -> Result<bool, Error> {
    enter(m, depth)?;
    Ok(match &sel.kind {
        Kind::Edge => true,
        Kind::Union(members) => {
            for member in members {
                if has_edge(member, m, depth + 1)? {
                    return Ok(true);
                }
            }
            false
        }
        _ => false,
    })
}

fn replace_edge(
    sel: &Arc<Sel>,
    replacement: Option<&Arc<Sel>>,
    m: &mut Meter,
    depth: usize,
) -> Result<Option<Arc<Sel>>, Error> {
    enter(m, depth)?;
    Ok(match &sel.kind {
        Kind::Edge => replacement.cloned(),
        Kind::Union(members) => {
            let mut kept = Vec::with_capacity(members.len());
            for member in members {
                if let Some(r) = replace_edge(member, replacement, m, depth + 1)? {
                    kept.push(r);
                }
            }
            let unchanged = kept.len() == members.len()
                && kept.iter().zip(members).all(|(a, b)| Arc::ptr_eq(a, b));
            match kept.len() {
                _ if unchanged => Some(Arc::clone(sel)),
                0 => None,
                1 => kept.pop(),
                _ => Some(m.build(Kind::Union(kept))?),
            }
        }
        _ => Some(Arc::clone(sel)),
    })
}

/// A link a block's walk loads, with the selector it is loaded with.
pub(super) struct Link {
    pub(super) cid: cid::Cid,
    pub(super) sel: Arc<Sel>,
    /// A leaf: the block needs no bytes to advance past (raw, or nothing selected below).
    pub(super) leaf: bool,
}

impl Link {
    pub(super) fn new(cid: cid::Cid, sel: Arc<Sel>, m: &mut Meter) -> Result<Self, Error> {
        let leaf = cid.codec() == crate::codec::RAW || has_no_interests(&sel, m)?;
        Ok(Self { cid, sel, leaf })
    }
}

/// `walkAdv` over the nodes of one block, collecting the links it would load, in order.
pub(super) struct Walker<'a> {
    pub(super) out: Vec<Link>,
    /// Data-model steps in this block (against `max_walk_steps`).
    pub(super) steps: usize,
    pub(super) max_steps: usize,
    pub(super) cid: cid::Cid,
    pub(super) meter: &'a mut Meter,
}

use crate::codec::Node;

impl Walker<'_> {
    fn step(&mut self) -> Result<(), Error> {
        self.steps += 1;
        if self.steps > self.max_steps {
            return Err(Error::WalkBudget(self.cid));
        }
        self.meter.charge(1)
    }

    fn explore(
        &mut self,
        sel: &Arc<Sel>,
        is_list: bool,
        seg: Seg<'_>,
    ) -> Result<Option<Arc<Sel>>, Error> {
        explore(sel, is_list, seg, self.meter, 0)
    }

    /// The entry under `key`, one step per entry compared.
    fn lookup<'n>(
        &mut self,
        entries: &'n [(String, Node)],
        key: &str,
    ) -> Result<Option<&'n Node>, Error> {
        let found = entries.iter().position(|(k, _)| k == key);
        self.meter
            .charge(found.map_or(entries.len(), |i| i + 1) as u64)?;
        Ok(found.map(|i| &entries[i].1))
    }

    pub(super) fn walk(&mut self, node: &Node, sel: &Arc<Sel>) -> Result<(), Error> {
        self.step()?;
        let wanted = interests(sel, self.meter, 0)?;
        match (node, wanted) {
            (Node::Map(entries), None) => {
                for (k, v) in entries {
                    let next = self.explore(sel, false, Seg::Key(k))?;
                    self.visit(v, next)?;
                }
            }
            (Node::List(items), None) => {
                for (i, v) in items.iter().enumerate() {
                    let next = self.explore(sel, true, Seg::Index(i as i64))?;
                    self.visit(v, next)?;
                }
            }
            (Node::Map(entries), Some(wanted)) => {
                for interest in &wanted {
                    match interest {
                        Interest::Key(k) => {
                            if let Some(v) = self.lookup(entries, k)? {
                                let next = self.explore(sel, false, Seg::Key(k))?;
                                self.visit(v, next)?;
                            }
                        }
                        Interest::Index(i) => {
                            if let Some(v) = self.lookup(entries, &i.to_string())? {
                                let next = self.explore(sel, false, Seg::Index(*i))?;
                                self.visit(v, next)?;
                            }
                        }
                        Interest::Range(s, e) => {
                            // Go looks up every index of the range as a key; only canonical
                            // decimal keys can match, so visit those, in index order.
                            self.meter.charge(entries.len() as u64)?;
                            let mut hits: Vec<(i64, &Node)> = entries
                                .iter()
                                .filter_map(|(k, v)| {
                                    let i: i64 = k.parse().ok()?;
                                    (i >= *s && i < *e && i.to_string() == *k).then_some((i, v))
                                })
                                .collect();
                            hits.sort_by_key(|(i, _)| *i);
                            for (i, v) in hits {
                                let next = self.explore(sel, false, Seg::Index(i))?;
                                self.visit(v, next)?;
                            }
                        }
                    }
                }
            }
            (Node::List(items), Some(wanted)) => {
                let len = items.len() as i64;
                for interest in &wanted {
                    let (from, to) = match interest {
                        Interest::Key(k) => match k.parse::<i64>() {
                            Ok(i) => (i, i.saturating_add(1)),
                            Err(_) => continue,
                        },
                        Interest::Index(i) => (*i, i.saturating_add(1)),
                        Interest::Range(s, e) => (*s, *e),
                    };
                    for i in from.max(0)..to.min(len) {
                        let seg = match interest {
                            Interest::Key(k) => Seg::Key(k),
                            _ => Seg::Index(i),
                        };
                        // `from..to` lies inside the list, so the index is in bounds.
                        if let Some(v) = items.get(i as usize) {
                            let next = self.explore(sel, true, seg)?;
                            self.visit(v, next)?;
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn visit(&mut self, child: &Node, next: Option<Arc<Sel>>) -> Result<(), Error> {
        let Some(next) = next else { return Ok(()) };
        match child {
            Node::Link(cid) => {
                self.step()?;
                let link = Link::new(**cid, next, self.meter)?;
                self.out.push(link);
                Ok(())
            }
            other => self.walk(other, &next),
        }
    }
}
