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
//! # Work is bounded by the blocks it yields
//!
//! A selector is small (the parser caps it at 1,024 nodes), but the work it causes is not:
//! exploring a union that holds several recursion edges builds a selector twice the size of
//! the last one at every data-model level, so `ExploreRecursive(ExploreUnion[ExploreAll(@),
//! ExploreAll(@)])` over a chain of *n* one-link blocks costs about 2^*n* steps and selector
//! nodes (go-ipld-prime behaves the same). The engine therefore meters its work: every
//! data-model node visited, link collected, map entry compared, and selector node examined
//! or built is one *step*, and a traversal may spend at most
//!
//! ```text
//! base_steps + steps_per_block * blocks + steps_per_byte * bytes
//! ```
//!
//! steps ([`Limits`]), where `blocks` and `bytes` count the blocks advanced past so far, the
//! one being walked included. At most [`Limits::max_selector_nodes`] selector nodes are
//! alive at once (memory). A traversal over its budget fails with
//! [`Error::OverBudget`] or [`Error::SelectorTooLarge`] at the step that crosses it, so its
//! time and memory stay proportional to what it has yielded (and the peer paid for) plus a
//! fixed allowance. Honest selectors stay far below: explore-all-recursively costs about 25
//! steps per dag-pb link and builds no selector nodes at all. The defaults are the same on
//! both sides of a deal, so the client's verifier fails at the same block the provider does.
//!
//! # Deviations from go-ipld-prime (all deliberate)
//!
//! * **Identity CIDs** are resolved inline: their block is the digest, so it is never
//!   requested, sent or counted; its links are spliced in at its position.
//! * A block whose selector has no interests (e.g. a [`Matcher`](crate::selector::Selector::Matcher))
//!   is not decoded, so it may use any codec.
//! * `ExploreRecursiveEdge` outside a recursion explores nothing (Go panics; the parser
//!   rejects such selectors anyway), and `ExploreRange` interests are not materialised.
//! * Work ([`Limits`], above), work per block ([`Limits::max_walk_steps`]) and stack depth
//!   ([`Limits::max_depth`]) are bounded, so hostile blocks or selectors cannot exhaust time
//!   or memory.

mod explore;

use crate::blockstore::{self, Blockstore};
use crate::codec::{self, IDENTITY, Node};
use crate::selector::Selector;
use cid::Cid;
use explore::{Link, Meter, Walker};

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
    /// The traversal spent more steps than the blocks it yielded allow (see the module
    /// docs): the selector causes more work than its blocks pay for.
    #[error("traversal over its work budget: {spent} steps, {allowance} allowed")]
    OverBudget {
        /// Steps spent, the refused one included.
        spent: u64,
        /// Steps allowed at that point.
        allowance: u64,
    },
    /// Exploring built more than [`Limits::max_selector_nodes`] live selector nodes.
    #[error("selector grew beyond {0} live nodes")]
    SelectorTooLarge(usize),
    /// Exploring built a selector nested deeper than the engine examines.
    #[error("selector grew deeper than {0} levels")]
    SelectorTooDeep(usize),
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

/// Resource bounds of a traversal (defaults: `docs/protocol.md`, "Limits"). Both sides of a
/// deal must use the same values, or a block one side accepts fails on the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most data-model steps (nodes visited plus links collected) spent walking one block.
    pub max_walk_steps: usize,
    /// Most partially walked blocks held on the stack.
    pub max_depth: usize,
    /// Steps allowed before any block is yielded (the fixed allowance).
    pub base_steps: u64,
    /// Steps each block advanced past adds to the allowance.
    pub steps_per_block: u64,
    /// Steps each byte of an advanced block adds to the allowance.
    pub steps_per_byte: u64,
    /// Most selector nodes alive at once (the parsed selector's included).
    pub max_selector_nodes: usize,
}

impl Limits {
    /// Default [`Limits::base_steps`].
    pub const BASE_STEPS: u64 = 1 << 20;
    /// Default [`Limits::steps_per_block`].
    pub const STEPS_PER_BLOCK: u64 = 1 << 12;
    /// Default [`Limits::steps_per_byte`].
    pub const STEPS_PER_BYTE: u64 = 16;
    /// Default [`Limits::max_selector_nodes`].
    pub const MAX_SELECTOR_NODES: usize = 1 << 17;

    /// The steps allowed after `blocks` blocks of `bytes` bytes in all.
    pub fn allowance(&self, blocks: u64, bytes: u64) -> u64 {
        self.base_steps
            .saturating_add(self.steps_per_block.saturating_mul(blocks))
            .saturating_add(self.steps_per_byte.saturating_mul(bytes))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_walk_steps: 1 << 20,
            max_depth: 4096,
            base_steps: Self::BASE_STEPS,
            steps_per_block: Self::STEPS_PER_BLOCK,
            steps_per_byte: Self::STEPS_PER_BYTE,
            max_selector_nodes: Self::MAX_SELECTOR_NODES,
        }
    }
}

/// What a traversal has spent so far ([`Traversal::work`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work {
    /// Steps spent.
    pub steps: u64,
    /// Steps allowed by the blocks advanced past so far.
    pub allowance: u64,
    /// Selector nodes alive now.
    pub selector_nodes: usize,
    /// Most selector nodes alive at once so far.
    pub peak_selector_nodes: usize,
}

/// Walks one block: the links its selector loads, in order, with identity links expanded.
fn expand(
    cid: &Cid,
    data: &[u8],
    link: &Link,
    limits: &Limits,
    meter: &mut Meter,
) -> Result<Vec<Link>, Error> {
    expand_at(cid, data, link, limits, meter, 0)
}

fn expand_at(
    cid: &Cid,
    data: &[u8],
    link: &Link,
    limits: &Limits,
    meter: &mut Meter,
    nesting: usize,
) -> Result<Vec<Link>, Error> {
    if link.leaf {
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
        max_steps: limits.max_walk_steps,
        cid: *cid,
        meter,
    };
    walker.walk(&node, &link.sel)?;
    let links = walker.out;
    if !links.iter().any(|l| is_identity(&l.cid)) {
        return Ok(links);
    }
    // Splice the links of inline (identity) blocks in at their position. Each level of
    // nesting is strictly smaller than the last (at most 64 bytes), so this terminates fast.
    if nesting > 64 {
        return Err(Error::TooDeep(nesting));
    }
    let mut out = Vec::with_capacity(links.len());
    for l in links {
        if is_identity(&l.cid) {
            let c = l.cid;
            out.extend(expand_at(
                &c,
                c.hash().digest(),
                &l,
                limits,
                meter,
                nesting + 1,
            )?);
        } else {
            out.push(l);
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
    /// Bytes of the blocks advanced past (what the allowance counts).
    bytes: u64,
    meter: Meter,
}

impl std::fmt::Debug for Traversal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traversal")
            .field("next", &self.next_link())
            .field("depth", &self.stack.len())
            .field("visited", &self.visited)
            .field("work", &self.work())
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
        let mut meter = Meter::new(limits.allowance(0, 0), limits.max_selector_nodes);
        let sel = explore::compile(selector, &mut meter, 0)?;
        let link = Link::new(root, sel, &mut meter)?;
        let links = if is_identity(&root) {
            expand(&root, root.hash().digest(), &link, &limits, &mut meter)?
        } else {
            vec![link]
        };
        let mut t = Self {
            stack: Vec::new(),
            limits,
            visited: 0,
            bytes: 0,
            meter,
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
            .map(|l| &l.cid)
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
            .flat_map(|f| f.links[f.pos..].iter().map(|l| &l.cid))
    }

    /// Whether the next block is a leaf that needs no bytes to advance past (raw codec, or
    /// a selector with no interests there). Skipping ahead uses this to avoid reading it.
    pub fn next_is_leaf(&self) -> bool {
        self.stack
            .last()
            .and_then(|f| f.links.get(f.pos))
            .is_some_and(|l| l.leaf)
    }

    /// Number of blocks advanced past so far (identity blocks not counted).
    pub fn blocks_visited(&self) -> u64 {
        self.visited
    }

    /// Current number of partially walked blocks on the stack.
    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    /// The work spent so far and the allowance (see the module docs).
    pub fn work(&self) -> Work {
        Work {
            steps: self.meter.spent,
            allowance: self.meter.allowance,
            selector_nodes: self.meter.live(),
            peak_selector_nodes: self.meter.peak_live,
        }
    }

    /// Feeds the bytes of the block named by [`Traversal::next_link`]. The caller is
    /// responsible for having checked that they hash to it. Leaves
    /// ([`Traversal::next_is_leaf`]) are never decoded, so any bytes (even none) do.
    ///
    /// On error nothing changes: the same block is still the next one needed (and the same
    /// bytes fail the same way again).
    pub fn advance(&mut self, data: &[u8]) -> Result<(), Error> {
        let Some(frame) = self.stack.last() else {
            return Err(Error::Done);
        };
        let link = &frame.links[frame.pos];
        let (spent, allowance) = (self.meter.spent, self.meter.allowance);
        let bytes = self.bytes.saturating_add(data.len() as u64);
        // The block being walked pays for its own walk.
        self.meter.allowance = self.limits.allowance(self.visited + 1, bytes);
        let children = match expand(&link.cid, data, link, &self.limits, &mut self.meter) {
            Ok(children) => children,
            Err(e) => {
                self.meter.spent = spent;
                self.meter.allowance = allowance;
                return Err(e);
            }
        };
        // Frames that will be exhausted are popped before pushing, so a long chain of
        // single-link blocks never grows the stack.
        let depth_after = self.depth_after_advance() + usize::from(!children.is_empty());
        if depth_after > self.limits.max_depth {
            self.meter.spent = spent;
            self.meter.allowance = allowance;
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
        self.bytes = bytes;
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
    /// learn their links; each is checked against its CID, [`blockstore::Error::Corrupt`]).
    /// With `check_leaves`, leaves must be present in the store too
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
                let data = store.get_verified(&cid)?.ok_or(Error::MissingBlock(cid))?;
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
    use crate::selector::{RecursionLimit, Selector};
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
            ..Limits::default()
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
            ..Limits::default()
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
            ..Limits::default()
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
