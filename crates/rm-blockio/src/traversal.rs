//! The traversal engine shared by the provider's [`BlockReader`](crate::reader::BlockReader)
//! and the client's [`SelectorVerifier`](crate::verifier::SelectorVerifier).
//!
//! [`Traversal`] is a pull-style state machine over "the next block the walk needs":
//! [`Traversal::next_link`] names it, [`Traversal::advance`] feeds its bytes. Both sides of a
//! deal drive the same engine, so they agree on the order by construction.
//!
//! # Order
//!
//! The order is go-ipld-prime's `traversal.WalkAdv`: depth first; at a map or list the
//! selector's *interests* decide the iteration (none: every entry in the node's own order;
//! otherwise the listed segments in the selector's order, duplicates included); each child the
//! selector explores is visited, and an explored child that is a link is loaded **right
//! there**, its whole sub-walk done before the next sibling. A link reached twice is loaded
//! twice. Map order is the block's: encoded order for DAG-CBOR, `Links`, `Data` and `Hash`,
//! `Name`, `Tsize` for dag-pb. Raw blocks are byte strings and have no children.
//!
//! Because the walk inside one block never depends on other blocks, the engine walks each
//! block once, when it arrives, and keeps the links it will load (with their selectors) in a
//! frame on a stack: memory is the frames along the current path, never the whole DAG.
//!
//! # Deviations from go-ipld-prime (all deliberate)
//!
//! * **Identity CIDs** are resolved inline: their block is the digest, so it is never
//!   requested, sent or counted; its links are spliced in at its position.
//! * A block whose selector has no interests (e.g. a [`Matcher`](crate::selector::Selector::Matcher))
//!   is not decoded, so it may use any codec.
//! * `ExploreRecursiveEdge` outside a recursion explores nothing (Go panics; the parser
//!   rejects such selectors anyway), and `ExploreRange` interests are not materialised.
//! * Work per block ([`Limits::max_walk_steps`]) and stack depth ([`Limits::max_depth`]) are
//!   bounded, so hostile blocks or selectors cannot exhaust memory.

use crate::blockstore::{self, Blockstore};
use crate::codec::{self, IDENTITY, Node, RAW};
use crate::selector::{RecursionLimit, Selector};
use cid::Cid;
use std::sync::Arc;

/// Errors of the traversal engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The traversal is complete; no block is needed.
    #[error("traversal is complete")]
    Done,
    /// A block could not be decoded with its CID's codec.
    #[error("cannot decode block {cid}: {source}")]
    Decode {
        /// The block.
        cid: Box<Cid>,
        /// Why.
        #[source]
        source: codec::Error,
    },
    /// Walking one block took more steps than [`Limits::max_walk_steps`].
    #[error("walking block {0} exceeded the step budget")]
    WalkBudget(Cid),
    /// The stack of partially walked blocks grew beyond [`Limits::max_depth`].
    #[error("traversal deeper than {0} blocks")]
    TooDeep(usize),
    /// A block needed to skip ahead is missing from the blockstore.
    #[error("block {0} is not in the blockstore")]
    MissingBlock(Cid),
    /// Asked to skip more blocks than the traversal has.
    #[error("cannot skip {requested} blocks: the traversal has only {available}")]
    SkipBeyondEnd {
        /// Blocks asked to skip.
        requested: u64,
        /// Blocks there were.
        available: u64,
    },
    /// The blockstore failed.
    #[error(transparent)]
    Blockstore(#[from] blockstore::Error),
}

/// Resource bounds of a traversal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most data-model steps (nodes visited plus links collected) spent walking one block.
    pub max_walk_steps: usize,
    /// Most partially walked blocks held on the stack.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_walk_steps: 1 << 20,
            max_depth: 4096,
        }
    }
}

/// A selector compiled for execution (go-ipld-prime's runtime selector values).
#[derive(Debug)]
enum Sel {
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

fn compile(s: &Selector) -> Arc<Sel> {
    Arc::new(match s {
        Selector::Matcher => Sel::Matcher,
        Selector::ExploreAll { next } => Sel::All(compile(next)),
        Selector::ExploreFields { fields } => Sel::Fields(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), compile(v)))
                .collect(),
        ),
        Selector::ExploreIndex { index, next } => Sel::Index(*index, compile(next)),
        Selector::ExploreRange { start, end, next } => Sel::Range(*start, *end, compile(next)),
        Selector::ExploreUnion(members) => Sel::Union(members.iter().map(compile).collect()),
        Selector::ExploreRecursive { limit, sequence } => {
            let sequence = compile(sequence);
            Sel::Recursive {
                current: sequence.clone(),
                sequence,
                limit: *limit,
            }
        }
        Selector::ExploreRecursiveEdge => Sel::Edge,
    })
}

/// A path segment: a map key or a list index.
#[derive(Clone, Copy, Debug)]
enum Seg<'a> {
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

enum Interest<'a> {
    Key(&'a str),
    Index(i64),
    Range(i64, i64),
}

/// `Selector.Interests()`: `None` means "all".
fn interests(sel: &Sel) -> Option<Vec<Interest<'_>>> {
    match sel {
        Sel::Matcher | Sel::Edge => Some(Vec::new()),
        Sel::All(_) => None,
        Sel::Fields(fields) => Some(fields.iter().map(|(k, _)| Interest::Key(k)).collect()),
        Sel::Index(i, _) => Some(vec![Interest::Index(*i)]),
        Sel::Range(s, e, _) => Some(vec![Interest::Range(*s, *e)]),
        Sel::Union(members) => {
            let mut all = Vec::new();
            for m in members {
                all.extend(interests(m)?);
            }
            Some(all)
        }
        Sel::Recursive { current, .. } => interests(current),
    }
}

fn has_no_interests(sel: &Sel) -> bool {
    interests(sel).is_some_and(|i| i.is_empty())
}

/// `Selector.Explore(node, segment)`.
fn explore(sel: &Arc<Sel>, is_list: bool, seg: Seg<'_>) -> Option<Arc<Sel>> {
    match &**sel {
        Sel::Matcher | Sel::Edge => None,
        Sel::All(next) => Some(next.clone()),
        Sel::Fields(fields) => fields
            .iter()
            .find(|(k, _)| seg.matches_key(k))
            .map(|(_, s)| s.clone()),
        Sel::Index(i, next) => (is_list && seg.index() == Some(*i)).then(|| next.clone()),
        Sel::Range(s, e, next) => {
            (is_list && seg.index().is_some_and(|i| i >= *s && i < *e)).then(|| next.clone())
        }
        Sel::Union(members) => {
            let mut results: Vec<Arc<Sel>> = members
                .iter()
                .filter_map(|m| explore(m, is_list, seg))
                .collect();
            match results.len() {
                0 => None,
                1 => results.pop(),
                _ => Some(Arc::new(Sel::Union(results))),
            }
        }
        Sel::Recursive {
            sequence,
            current,
            limit,
        } => {
            let next = explore(current, is_list, seg)?;
            if !has_edge(&next) {
                return Some(Arc::new(Sel::Recursive {
                    sequence: sequence.clone(),
                    current: next,
                    limit: *limit,
                }));
            }
            match limit {
                RecursionLimit::Depth(d) if *d < 2 => replace_edge(&next, None),
                RecursionLimit::Depth(d) => Some(Arc::new(Sel::Recursive {
                    sequence: sequence.clone(),
                    current: replace_edge(&next, Some(sequence))?,
                    limit: RecursionLimit::Depth(d - 1),
                })),
                RecursionLimit::None => Some(Arc::new(Sel::Recursive {
                    sequence: sequence.clone(),
                    current: replace_edge(&next, Some(sequence))?,
                    limit: RecursionLimit::None,
                })),
            }
        }
    }
}

fn has_edge(sel: &Sel) -> bool {
    match sel {
        Sel::Edge => true,
        Sel::Union(members) => members.iter().any(|m| has_edge(m)),
        _ => false,
    }
}

fn replace_edge(sel: &Arc<Sel>, replacement: Option<&Arc<Sel>>) -> Option<Arc<Sel>> {
    match &**sel {
        Sel::Edge => replacement.cloned(),
        Sel::Union(members) => {
            let mut kept: Vec<Arc<Sel>> = members
                .iter()
                .filter_map(|m| replace_edge(m, replacement))
                .collect();
            match kept.len() {
                0 => None,
                1 => kept.pop(),
                _ => Some(Arc::new(Sel::Union(kept))),
            }
        }
        _ => Some(sel.clone()),
    }
}

type Link = (Cid, Arc<Sel>);

struct Walker<'a> {
    out: Vec<Link>,
    steps: usize,
    limits: &'a Limits,
}

impl Walker<'_> {
    fn step(&mut self) -> bool {
        self.steps += 1;
        self.steps <= self.limits.max_walk_steps
    }

    /// `walkAdv` on one node of a block, collecting the links it would load, in order.
    /// Returns false when the step budget ran out.
    fn walk(&mut self, node: &Node, sel: &Arc<Sel>) -> bool {
        if !self.step() {
            return false;
        }
        let is_list = matches!(node, Node::List(_));
        match (node, interests(sel)) {
            (Node::Map(_) | Node::List(_), None) => match node {
                Node::Map(entries) => entries
                    .iter()
                    .all(|(k, v)| self.visit(v, explore(sel, false, Seg::Key(k)))),
                Node::List(items) => items
                    .iter()
                    .enumerate()
                    .all(|(i, v)| self.visit(v, explore(sel, true, Seg::Index(i as i64)))),
                _ => true,
            },
            (Node::Map(entries), Some(wanted)) => wanted.iter().all(|interest| match interest {
                Interest::Key(k) => match entries.iter().find(|(key, _)| key == k) {
                    Some((_, v)) => self.visit(v, explore(sel, false, Seg::Key(k))),
                    None => true,
                },
                Interest::Index(i) => {
                    let key = i.to_string();
                    match entries.iter().find(|(k, _)| *k == key) {
                        Some((_, v)) => self.visit(v, explore(sel, false, Seg::Index(*i))),
                        None => true,
                    }
                }
                Interest::Range(s, e) => {
                    // Go looks up every index of the range as a key; only canonical decimal
                    // keys can match, so visit those, in index order.
                    let mut hits: Vec<(i64, &Node)> = entries
                        .iter()
                        .filter_map(|(k, v)| {
                            let i: i64 = k.parse().ok()?;
                            (i >= *s && i < *e && i.to_string() == *k).then_some((i, v))
                        })
                        .collect();
                    hits.sort_by_key(|(i, _)| *i);
                    hits.into_iter()
                        .all(|(i, v)| self.visit(v, explore(sel, false, Seg::Index(i))))
                }
            }),
            (Node::List(items), Some(wanted)) => wanted.iter().all(|interest| {
                let (from, to) = match interest {
                    Interest::Key(k) => match k.parse::<i64>() {
                        Ok(i) => (i, i.saturating_add(1)),
                        Err(_) => return true,
                    },
                    Interest::Index(i) => (*i, i.saturating_add(1)),
                    Interest::Range(s, e) => (*s, *e),
                };
                let len = items.len() as i64;
                let (from, to) = (from.max(0), to.min(len));
                (from..to).all(|i| {
                    let seg = match interest {
                        Interest::Key(k) => Seg::Key(k),
                        _ => Seg::Index(i),
                    };
                    // `from..to` lies inside the list, so the index is in bounds.
                    items
                        .get(i as usize)
                        .is_none_or(|v| self.visit(v, explore(sel, is_list, seg)))
                })
            }),
            _ => true,
        }
    }

    fn visit(&mut self, child: &Node, next: Option<Arc<Sel>>) -> bool {
        let Some(next) = next else { return true };
        match child {
            Node::Link(cid) => {
                if !self.step() {
                    return false;
                }
                self.out.push((**cid, next));
                true
            }
            other => self.walk(other, &next),
        }
    }
}

/// Walks one block: the links its selector loads, in order, with identity links expanded.
fn expand(cid: &Cid, data: &[u8], sel: &Arc<Sel>, limits: &Limits) -> Result<Vec<Link>, Error> {
    expand_at(cid, data, sel, limits, 0)
}

fn expand_at(
    cid: &Cid,
    data: &[u8],
    sel: &Arc<Sel>,
    limits: &Limits,
    nesting: usize,
) -> Result<Vec<Link>, Error> {
    if cid.codec() == RAW || has_no_interests(sel) {
        return Ok(Vec::new());
    }
    let node = match cid.codec() {
        codec::DAG_PB => codec::decode_dag_pb(data).map(|pb| codec::pb_to_node(pb, false)),
        codec::DAG_CBOR => Node::from_dag_cbor(data),
        other => Err(codec::Error::UnsupportedCodec(other)),
    }
    .map_err(|source| Error::Decode {
        cid: Box::new(*cid),
        source,
    })?;
    let mut walker = Walker {
        out: Vec::new(),
        steps: 0,
        limits,
    };
    if !walker.walk(&node, sel) {
        return Err(Error::WalkBudget(*cid));
    }
    let links = walker.out;
    if !links.iter().any(|(c, _)| is_identity(c)) {
        return Ok(links);
    }
    // Splice the links of inline (identity) blocks in at their position. Each level of
    // nesting is strictly smaller than the last (at most 64 bytes), so this terminates fast.
    if nesting > 64 {
        return Err(Error::TooDeep(nesting));
    }
    let mut out = Vec::with_capacity(links.len());
    for (c, s) in links {
        if is_identity(&c) {
            out.extend(expand_at(&c, c.hash().digest(), &s, limits, nesting + 1)?);
        } else {
            out.push((c, s));
        }
        if out.len() > limits.max_walk_steps {
            return Err(Error::WalkBudget(*cid));
        }
    }
    Ok(out)
}

fn is_identity(cid: &Cid) -> bool {
    cid.hash().code() == IDENTITY
}

struct Frame {
    links: Vec<Link>,
    pos: usize,
}

/// A selector traversal of a DAG, one block at a time (see the module docs).
pub struct Traversal {
    /// Invariant: every frame on the stack has at least one link left.
    stack: Vec<Frame>,
    limits: Limits,
    visited: u64,
}

impl std::fmt::Debug for Traversal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traversal")
            .field("next", &self.next_link())
            .field("depth", &self.stack.len())
            .field("visited", &self.visited)
            .finish()
    }
}

impl Traversal {
    /// Starts a traversal of the DAG under `root` with `selector`.
    pub fn new(root: Cid, selector: &Selector) -> Result<Self, Error> {
        Self::with_limits(root, selector, Limits::default())
    }

    /// Like [`Traversal::new`] with explicit resource bounds.
    pub fn with_limits(root: Cid, selector: &Selector, limits: Limits) -> Result<Self, Error> {
        let sel = compile(selector);
        let links = if is_identity(&root) {
            expand(&root, root.hash().digest(), &sel, &limits)?
        } else {
            vec![(root, sel)]
        };
        let mut t = Self {
            stack: Vec::new(),
            limits,
            visited: 0,
        };
        if !links.is_empty() {
            t.stack.push(Frame { links, pos: 0 });
        }
        Ok(t)
    }

    /// The CID of the next block the traversal needs, or `None` when it is complete.
    pub fn next_link(&self) -> Option<&Cid> {
        self.stack
            .last()
            .and_then(|f| f.links.get(f.pos))
            .map(|(c, _)| c)
    }

    /// Whether the traversal is complete.
    pub fn is_done(&self) -> bool {
        self.stack.is_empty()
    }

    /// The links still to be loaded, in the order the traversal loads them; in a full
    /// traversal each is followed by the blocks below it before the next one. With a
    /// selector that is the same at every link (explore-all-recursively), the rest of the
    /// traversal is the traversal of each of these links in turn: what a resumed
    /// retrieval asks for.
    pub fn pending_links(&self) -> impl Iterator<Item = &Cid> {
        self.stack
            .iter()
            .rev()
            .flat_map(|f| f.links[f.pos..].iter().map(|(c, _)| c))
    }

    /// Whether the next block is a leaf that needs no bytes to advance past (raw codec, or
    /// a selector with no interests there). Skipping ahead uses this to avoid reading it.
    pub fn next_is_leaf(&self) -> bool {
        self.stack
            .last()
            .and_then(|f| f.links.get(f.pos))
            .is_some_and(|(c, s)| c.codec() == RAW || has_no_interests(s))
    }

    /// Number of blocks advanced past so far (identity blocks not counted).
    pub fn blocks_visited(&self) -> u64 {
        self.visited
    }

    /// Current number of partially walked blocks on the stack.
    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    /// Feeds the bytes of the block named by [`Traversal::next_link`]. The caller is
    /// responsible for having checked that they hash to it. Leaves
    /// ([`Traversal::next_is_leaf`]) are never decoded, so any bytes (even none) do.
    ///
    /// On error nothing changes: the same block is still the next one needed.
    pub fn advance(&mut self, data: &[u8]) -> Result<(), Error> {
        let Some(frame) = self.stack.last() else {
            return Err(Error::Done);
        };
        let (cid, sel) = &frame.links[frame.pos];
        let children = expand(cid, data, sel, &self.limits)?;
        // Frames that will be exhausted are popped before pushing, so a long chain of
        // single-link blocks never grows the stack.
        let depth_after = self.depth_after_advance() + usize::from(!children.is_empty());
        if depth_after > self.limits.max_depth {
            return Err(Error::TooDeep(self.limits.max_depth));
        }
        if let Some(frame) = self.stack.last_mut() {
            frame.pos += 1;
        }
        self.pop_exhausted();
        if !children.is_empty() {
            self.stack.push(Frame {
                links: children,
                pos: 0,
            });
        }
        self.visited += 1;
        Ok(())
    }

    /// Stack depth once the top frame's current link is consumed (only the top frame can
    /// become exhausted: every frame below it still has links left, by the invariant).
    fn depth_after_advance(&self) -> usize {
        match self.stack.last() {
            Some(top) if top.pos + 1 >= top.links.len() => self.stack.len() - 1,
            _ => self.stack.len(),
        }
    }

    fn pop_exhausted(&mut self) {
        while self.stack.last().is_some_and(|f| f.pos >= f.links.len()) {
            self.stack.pop();
        }
    }

    /// Skips the next `n` blocks, loading the ones that are not leaves from `store` (to
    /// learn their links). With `check_leaves`, leaves must be present in the store too
    /// (a client resuming from its own blockstore); without it they are not touched (a
    /// provider skipping what the client already has).
    pub fn skip(
        &mut self,
        n: u64,
        store: &dyn Blockstore,
        check_leaves: bool,
    ) -> Result<(), Error> {
        for done in 0..n {
            let Some(cid) = self.next_link().copied() else {
                return Err(Error::SkipBeyondEnd {
                    requested: n,
                    available: done,
                });
            };
            if self.next_is_leaf() {
                if check_leaves && !store.has(&cid)? {
                    return Err(Error::MissingBlock(cid));
                }
                self.advance(&[])?;
            } else {
                let data = store.get(&cid)?.ok_or(Error::MissingBlock(cid))?;
                self.advance(&data)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{DAG_CBOR, SHA2_256, cid_of};
    use crate::selector::Selector;
    use std::collections::HashMap;

    fn put(store: &mut HashMap<Cid, Vec<u8>>, node: &Node) -> Cid {
        let bytes = node.to_dag_cbor().unwrap();
        let cid = cid_of(cid::Version::V1, DAG_CBOR, SHA2_256, &bytes).unwrap();
        store.insert(cid, bytes);
        cid
    }

    fn order(root: Cid, sel: &Selector, store: &HashMap<Cid, Vec<u8>>) -> Vec<Cid> {
        let mut t = Traversal::new(root, sel).unwrap();
        let mut seen = Vec::new();
        while let Some(c) = t.next_link().copied() {
            seen.push(c);
            t.advance(&store[&c]).unwrap();
            assert!(seen.len() < 1000);
        }
        seen
    }

    #[test]
    fn depth_limit_follows_go_semantics() {
        // chain: a -> b -> c -> d, each {"next": link}
        let mut store = HashMap::new();
        let d = put(&mut store, &Node::Map(vec![]));
        let c = put(&mut store, &Node::Map(vec![("next".into(), Node::link(d))]));
        let b = put(&mut store, &Node::Map(vec![("next".into(), Node::link(c))]));
        let a = put(&mut store, &Node::Map(vec![("next".into(), Node::link(b))]));
        let sel = |depth| Selector::ExploreRecursive {
            limit: RecursionLimit::Depth(depth),
            sequence: Box::new(Selector::ExploreAll {
                next: Box::new(Selector::ExploreRecursiveEdge),
            }),
        };
        assert_eq!(order(a, &sel(1), &store), vec![a]);
        assert_eq!(order(a, &sel(2), &store), vec![a, b]);
        assert_eq!(order(a, &sel(3), &store), vec![a, b, c]);
        assert_eq!(order(a, &sel(10), &store), vec![a, b, c, d]);
        assert_eq!(
            order(a, &Selector::explore_all_recursively(), &store),
            vec![a, b, c, d]
        );
        assert_eq!(order(a, &Selector::Matcher, &store), vec![a]);
    }

    #[test]
    fn pending_links_are_the_rest_of_the_walk() {
        let mut store = HashMap::new();
        let leaves: Vec<Cid> = (0..3).map(|i| put(&mut store, &Node::Integer(i))).collect();
        let inner = put(
            &mut store,
            &Node::List(vec![Node::link(leaves[0]), Node::link(leaves[1])]),
        );
        let root = put(
            &mut store,
            &Node::List(vec![Node::link(inner), Node::link(leaves[2])]),
        );
        let all = Selector::explore_all_recursively();
        let mut t = Traversal::new(root, &all).unwrap();
        assert_eq!(t.pending_links().copied().collect::<Vec<_>>(), vec![root]);
        t.advance(&store[&root]).unwrap();
        t.advance(&store[&inner]).unwrap();
        // Inside `inner`: its two leaves, then the root's last link.
        assert_eq!(
            t.pending_links().copied().collect::<Vec<_>>(),
            vec![leaves[0], leaves[1], leaves[2]]
        );
        t.advance(&store[&leaves[0]]).unwrap();
        assert_eq!(
            t.pending_links().copied().collect::<Vec<_>>(),
            vec![leaves[1], leaves[2]]
        );
    }

    #[test]
    fn union_duplicates_visit_twice_and_fields_follow_selector_order() {
        let mut store = HashMap::new();
        let x = put(&mut store, &Node::String("x".into()));
        let y = put(&mut store, &Node::String("y".into()));
        let root = put(
            &mut store,
            &Node::Map(vec![
                ("x".into(), Node::link(x)),
                ("y".into(), Node::link(y)),
            ]),
        );
        let m = || Selector::Matcher;
        let fields = Selector::ExploreFields {
            fields: vec![("y".into(), m()), ("x".into(), m()), ("nope".into(), m())],
        };
        assert_eq!(order(root, &fields, &store), vec![root, y, x]);
        let dup = Selector::ExploreUnion(vec![
            Selector::ExploreFields {
                fields: vec![("x".into(), m())],
            },
            Selector::ExploreFields {
                fields: vec![("x".into(), m())],
            },
        ]);
        assert_eq!(order(root, &dup, &store), vec![root, x, x]);
        let all_union = Selector::ExploreUnion(vec![
            Selector::ExploreAll {
                next: Box::new(m()),
            },
            fields,
        ]);
        assert_eq!(order(root, &all_union, &store), vec![root, x, y]);
    }

    #[test]
    fn list_selectors_and_identity_links() {
        let mut store = HashMap::new();
        let leaves: Vec<Cid> = (0..5).map(|i| put(&mut store, &Node::Integer(i))).collect();
        // An identity link to a small list holding one more link: resolved inline.
        let inline = Node::List(vec![Node::link(leaves[4])])
            .to_dag_cbor()
            .unwrap();
        let id = cid_of(cid::Version::V1, DAG_CBOR, IDENTITY, &inline).unwrap();
        let mut items: Vec<Node> = leaves[..4].iter().map(|c| Node::link(*c)).collect();
        items.push(Node::link(id));
        let root = put(&mut store, &Node::List(items));
        let m = || Box::new(Selector::Matcher);
        let range = Selector::ExploreRange {
            start: 1,
            end: 3,
            next: m(),
        };
        assert_eq!(
            order(root, &range, &store),
            vec![root, leaves[1], leaves[2]]
        );
        let index = Selector::ExploreIndex {
            index: 3,
            next: m(),
        };
        assert_eq!(order(root, &index, &store), vec![root, leaves[3]]);
        let field = Selector::ExploreFields {
            fields: vec![("0".into(), *m())],
        };
        assert_eq!(order(root, &field, &store), vec![root, leaves[0]]);
        let mut expected = vec![root];
        expected.extend_from_slice(&leaves);
        assert_eq!(
            order(root, &Selector::explore_all_recursively(), &store),
            expected
        );
        // Out-of-range and map-only selectors on a list select nothing more.
        let far = Selector::ExploreRange {
            start: 10,
            end: i64::MAX,
            next: m(),
        };
        assert_eq!(order(root, &far, &store), vec![root]);
    }

    #[test]
    fn errors_leave_state_unchanged() {
        let mut store = HashMap::new();
        let leaf = put(&mut store, &Node::Null);
        let root = put(&mut store, &Node::List(vec![Node::link(leaf)]));
        let mut t = Traversal::new(root, &Selector::explore_all_recursively()).unwrap();
        assert!(matches!(t.advance(&[0xff]), Err(Error::Decode { .. })));
        assert_eq!(t.next_link(), Some(&root));
        t.advance(&store[&root]).unwrap();
        assert_eq!(t.next_link(), Some(&leaf));
        t.advance(&store[&leaf]).unwrap();
        assert!(t.is_done());
        assert!(matches!(t.advance(&[]), Err(Error::Done)));
        assert_eq!(t.blocks_visited(), 2);
    }

    #[test]
    fn budgets_bound_hostile_work() {
        let mut store = HashMap::new();
        let leaf = put(&mut store, &Node::Null);
        let root = put(&mut store, &Node::List(vec![Node::link(leaf); 100]));
        let limits = Limits {
            max_walk_steps: 50,
            max_depth: 4,
        };
        let mut t =
            Traversal::with_limits(root, &Selector::explore_all_recursively(), limits).unwrap();
        assert!(matches!(
            t.advance(&store[&root]),
            Err(Error::WalkBudget(_))
        ));
        // A chain of single-link blocks never grows the stack.
        let mut next = leaf;
        for _ in 0..20 {
            next = put(&mut store, &Node::List(vec![Node::link(next)]));
        }
        let limits = Limits {
            max_walk_steps: 50,
            max_depth: 1,
        };
        let mut t =
            Traversal::with_limits(next, &Selector::explore_all_recursively(), limits).unwrap();
        let mut n = 0;
        while let Some(c) = t.next_link().copied() {
            t.advance(&store[&c]).unwrap();
            assert!(t.depth() <= 1);
            n += 1;
        }
        assert_eq!(n, 21);
        // Two links per block: the stack grows and hits the limit.
        let mut next = leaf;
        for _ in 0..5 {
            next = put(
                &mut store,
                &Node::List(vec![Node::link(next), Node::link(leaf)]),
            );
        }
        let limits = Limits {
            max_walk_steps: 50,
            max_depth: 3,
        };
        let mut t =
            Traversal::with_limits(next, &Selector::explore_all_recursively(), limits).unwrap();
        let err = loop {
            let c = *t.next_link().unwrap();
            if let Err(e) = t.advance(&store[&c]) {
                break e;
            }
        };
        assert!(matches!(err, Error::TooDeep(3)));
    }
}
