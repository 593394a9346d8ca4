//! The order of a Trustless Gateway CAR, as a sans-IO state machine both sides drive.
//!
//! A request `/ipfs/{root}/{path}?dag-scope=…&entity-bytes=…` names a sequence of blocks:
//! the blocks that resolve the path (UnixFS directories, HAMT shards on the way to a name,
//! DAG-CBOR blocks whose fields lead to a link), then the blocks of the terminal element's
//! scope — `block`: only it; `entity`: a whole UnixFS file (or the part `entity-bytes`
//! needs), a directory's own block, every shard of a sharded directory, any other block
//! alone; `all`: the whole DAG below it in explore-all order. [`Walk`] names the next block
//! needed ([`Walk::expected`]) and is fed blocks one at a time ([`Walk::accept`]).
//!
//! The walk is a stack of tasks, each a [`Cursor`] over part of the DAG: a single block
//! (an IPLD `Matcher` selector), whose bytes then decide what follows it, or a whole
//! sub-DAG (explore-all-recursively). The provider runs the walk on
//! [`rm_blockio::Traversal`] cursors, reading trusted blocks from its store; the client
//! runs the same walk on [`rm_blockio::SelectorVerifier`] cursors, which hash every block
//! and accept it only if it is the one needed next. So both sides follow one traversal
//! engine and agree on the order by construction.
//!
//! A client that lost its connection asks only for what is missing: [`Walk::next_ask`]
//! turns the task on top of the stack into a request of its own (a sub-DAG by its CID, a
//! file node with the `entity-bytes` still needed, a path's remaining segments), whose
//! response continues the same walk.

use cid::Cid;
use ipld_dagpb::PbNode;
use rm_blockio::codec::{self, DAG_CBOR, DAG_PB, IDENTITY, Node, RAW};
use rm_blockio::unixfs::{DataType, UnixFsData};
use rm_blockio::{Blockstore, Selector, SelectorVerifier, Traversal};
use rm_types::Block;

use crate::hamt::Shard;

/// Most tasks on a walk's stack (bounds memory against hostile DAGs).
pub const MAX_TASKS: usize = 1 << 20;

/// Why a walk cannot go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalkError {
    /// The walk is complete; no block is needed.
    #[error("the walk is complete")]
    Done,
    /// A path segment names nothing in its block.
    #[error("path segment {segment:?} not found under {cid}")]
    NotFound {
        /// The block the segment was looked up in.
        cid: Box<Cid>,
        /// The segment.
        segment: String,
    },
    /// The path ends inside a block rather than at a link (pathing into a non-link value).
    #[error("the path ends inside block {0}, not at a link")]
    NotALink(Box<Cid>),
    /// A block is not valid UnixFS where UnixFS is needed.
    #[error("invalid UnixFS: {0}")]
    InvalidUnixFs(String),
    /// Something valid this implementation does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A block could not be decoded with its codec.
    #[error("cannot decode block {cid}: {source}")]
    Decode {
        /// The block.
        cid: Box<Cid>,
        /// Why.
        #[source]
        source: codec::Error,
    },
    /// The client's verifier rejected a block (wrong, out of order, too large).
    #[error(transparent)]
    Verify(#[from] rm_blockio::verifier::Error),
    /// The provider's traversal failed.
    #[error(transparent)]
    Traversal(#[from] rm_blockio::traversal::Error),
    /// A block needed to skip ahead is missing from the store.
    #[error("block {0} is not in the blockstore")]
    Missing(Box<Cid>),
    /// The store failed.
    #[error(transparent)]
    Blockstore(#[from] rm_blockio::blockstore::Error),
    /// More than [`MAX_TASKS`] tasks.
    #[error("the walk holds more than {MAX_TASKS} pending tasks")]
    TooLarge,
}

/// `dag-scope`: what of the terminal element is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    /// Only the terminal block.
    Block,
    /// What is needed to read the terminal element (a whole file, a directory listing).
    Entity,
    /// The whole DAG below the terminal element.
    All,
}

impl Scope {
    /// The query-parameter value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Block => "block",
            Scope::Entity => "entity",
            Scope::All => "all",
        }
    }

    /// Parses a query-parameter value.
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "block" => Some(Scope::Block),
            "entity" => Some(Scope::Entity),
            "all" => Some(Scope::All),
            _ => None,
        }
    }
}

/// `entity-bytes=from:to`: inclusive byte offsets, negative ones counted from the end;
/// `to = None` is `*` (the end of the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct EntityBytes {
    /// First byte (negative: from the end).
    pub from: i64,
    /// Last byte, inclusive (negative: from the end); `None` for `*`.
    pub to: Option<i64>,
}

impl EntityBytes {
    /// Parses `from:to` (`to` may be `*`); rejects ranges that are empty whatever the
    /// size (`from > to` with both on the same side).
    pub fn parse(text: &str) -> Option<EntityBytes> {
        let (from, to) = text.split_once(':')?;
        let from: i64 = from.parse().ok()?;
        let to = match to {
            "*" => None,
            t => Some(t.parse::<i64>().ok()?),
        };
        if let Some(to) = to
            && (from >= 0) == (to >= 0)
            && from > to
        {
            return None;
        }
        Some(EntityBytes { from, to })
    }

    /// The inclusive range `[first, last]` of a file of `size` bytes, or `None` when it
    /// selects nothing.
    pub fn resolve(&self, size: u64) -> Option<(u64, u64)> {
        if size == 0 {
            return None;
        }
        let size_i = i128::from(size);
        let from = if self.from < 0 {
            (size_i + i128::from(self.from)).max(0)
        } else {
            i128::from(self.from)
        };
        let to = match self.to {
            None => size_i - 1,
            Some(t) if t < 0 => size_i + i128::from(t),
            Some(t) => i128::from(t).min(size_i - 1),
        };
        if from > to || from >= size_i || to < 0 {
            return None;
        }
        Some((from as u64, to as u64))
    }
}

impl std::fmt::Display for EntityBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to {
            Some(t) => write!(f, "{}:{t}", self.from),
            None => write!(f, "{}:*", self.from),
        }
    }
}

/// What a request asks for: a root, a path below it, a scope and an optional byte range.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Spec {
    /// The root CID.
    pub root: Cid,
    /// Path segments below the root (already percent-decoded).
    pub path: Vec<String>,
    /// `dag-scope`.
    pub scope: Scope,
    /// `entity-bytes` (only with [`Scope::Entity`]).
    pub bytes: Option<EntityBytes>,
}

impl Spec {
    /// The whole DAG under `root`.
    pub fn all(root: Cid) -> Spec {
        Spec {
            root,
            path: Vec::new(),
            scope: Scope::All,
            bytes: None,
        }
    }
}

/// One side's view of part of the DAG: the provider's traversal or the client's verifier.
pub trait Cursor: Sized {
    /// A cursor over `(root, selector)`.
    fn start(root: Cid, selector: &Selector) -> Result<Self, WalkError>;
    /// The next block needed, if any.
    fn expected(&self) -> Option<Cid>;
    /// Takes the next block (the client verifies it first).
    fn take(&mut self, block: &Block) -> Result<(), WalkError>;
    /// Moves past the next block using `store` (inner nodes are read to learn their links).
    fn skip_one(&mut self, store: &dyn Blockstore) -> Result<(), WalkError>;
    /// The links still to come, in order.
    fn pending(&self) -> Vec<Cid>;
}

impl Cursor for Traversal {
    fn start(root: Cid, selector: &Selector) -> Result<Self, WalkError> {
        Ok(Traversal::new(root, selector)?)
    }
    fn expected(&self) -> Option<Cid> {
        self.next_link().copied()
    }
    fn take(&mut self, block: &Block) -> Result<(), WalkError> {
        Ok(self.advance(&block.data)?)
    }
    fn skip_one(&mut self, store: &dyn Blockstore) -> Result<(), WalkError> {
        Ok(self.skip(1, store, false)?)
    }
    fn pending(&self) -> Vec<Cid> {
        self.pending_links().copied().collect()
    }
}

impl Cursor for SelectorVerifier {
    fn start(root: Cid, selector: &Selector) -> Result<Self, WalkError> {
        Ok(SelectorVerifier::new(root, selector)?)
    }
    fn expected(&self) -> Option<Cid> {
        self.next_expected().copied()
    }
    fn take(&mut self, block: &Block) -> Result<(), WalkError> {
        self.verify(block)?;
        Ok(())
    }
    fn skip_one(&mut self, store: &dyn Blockstore) -> Result<(), WalkError> {
        Ok(self.fast_forward(1, store)?)
    }
    fn pending(&self) -> Vec<Cid> {
        self.pending_links().copied().collect()
    }
}

/// What a single-block task's bytes decide.
#[derive(Clone, Debug)]
enum Role {
    /// A block on the path; the segments still to resolve (at least one).
    Path(Vec<String>),
    /// A HAMT shard below the one that began resolving `rest[0]`.
    Hamt { rest: Vec<String>, depth: u32 },
    /// The terminal element, in `entity` scope.
    Terminal,
    /// A file node inside `entity-bytes`, whose bytes begin at `start` in the file.
    Range { start: u64 },
    /// A child shard of a sharded directory in `entity` scope.
    HamtEntity,
    /// Nothing follows.
    Leaf,
}

enum Task<C> {
    Node { cid: Cid, cursor: C, role: Role },
    Dag { cid: Cid, cursor: C, started: bool },
}

/// A request for the task on top of a walk's stack (see [`Walk::next_ask`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    /// What to request.
    pub spec: Spec,
    /// The block alone answers it (the blocks after it are asked for separately).
    pub one_block: bool,
    base: usize,
    steps: u64,
}

/// The walk of one request (see the module docs).
pub struct Walk<C> {
    stack: Vec<Task<C>>,
    scope: Scope,
    bytes: Option<EntityBytes>,
    /// The resolved `entity-bytes` range, once the terminal file's size is known.
    range: Option<(u64, u64)>,
    terminal: Option<Cid>,
    steps: u64,
}

impl<C> std::fmt::Debug for Walk<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walk")
            .field("tasks", &self.stack.len())
            .field("steps", &self.steps)
            .field("terminal", &self.terminal)
            .finish()
    }
}

fn matcher() -> Selector {
    Selector::Matcher
}

fn decode_pb(cid: &Cid, data: &[u8]) -> Result<PbNode, WalkError> {
    codec::decode_dag_pb(data).map_err(|source| WalkError::Decode {
        cid: Box::new(*cid),
        source,
    })
}

fn unixfs(cid: &Cid, node: &PbNode) -> Option<UnixFsData> {
    let _ = cid;
    UnixFsData::decode(node.data.as_deref()?).ok()
}

impl<C: Cursor> Walk<C> {
    /// The walk of `spec`.
    pub fn new(spec: &Spec) -> Result<Self, WalkError> {
        let mut walk = Walk {
            stack: Vec::new(),
            scope: spec.scope,
            bytes: spec.bytes.filter(|_| spec.scope == Scope::Entity),
            range: None,
            terminal: None,
            steps: 0,
        };
        let first = if spec.path.is_empty() {
            walk.terminal_task(spec.root)?
        } else {
            Task::Node {
                cid: spec.root,
                cursor: C::start(spec.root, &matcher())?,
                role: Role::Path(spec.path.clone()),
            }
        };
        walk.stack.push(first);
        walk.settle()?;
        Ok(walk)
    }

    fn terminal_task(&mut self, cid: Cid) -> Result<Task<C>, WalkError> {
        self.terminal = Some(cid);
        Ok(match self.scope {
            Scope::All => Task::Dag {
                cid,
                cursor: C::start(cid, &Selector::explore_all_recursively())?,
                started: false,
            },
            Scope::Block => Task::Node {
                cid,
                cursor: C::start(cid, &matcher())?,
                role: Role::Leaf,
            },
            Scope::Entity => Task::Node {
                cid,
                cursor: C::start(cid, &matcher())?,
                role: Role::Terminal,
            },
        })
    }

    fn node(cid: Cid, role: Role) -> Result<Task<C>, WalkError> {
        Ok(Task::Node {
            cid,
            cursor: C::start(cid, &matcher())?,
            role,
        })
    }

    fn dag(cid: Cid) -> Result<Task<C>, WalkError> {
        Ok(Task::Dag {
            cid,
            cursor: C::start(cid, &Selector::explore_all_recursively())?,
            started: false,
        })
    }

    /// The next block needed, or `None` when the walk is complete.
    pub fn expected(&self) -> Option<Cid> {
        match self.stack.last()? {
            Task::Node { cursor, .. } | Task::Dag { cursor, .. } => cursor.expected(),
        }
    }

    /// Whether every block has been taken.
    pub fn is_done(&self) -> bool {
        self.stack.is_empty()
    }

    /// Blocks taken or skipped so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The CID of the terminal element, once the path is resolved.
    pub fn terminal(&self) -> Option<Cid> {
        self.terminal
    }

    /// Whether the path is resolved: every block still to come belongs to the terminal
    /// element's scope.
    pub fn path_resolved(&self) -> bool {
        !self.stack.iter().any(|t| {
            matches!(
                t,
                Task::Node {
                    role: Role::Path(_) | Role::Hamt { .. },
                    ..
                }
            )
        })
    }

    /// Takes the next block: the provider's (trusted, from its store) or the client's
    /// (verified by the cursor before anything changes).
    pub fn accept(&mut self, block: &Block) -> Result<(), WalkError> {
        match self.stack.last_mut() {
            None => return Err(WalkError::Done),
            Some(Task::Dag {
                cursor, started, ..
            }) => {
                cursor.take(block)?;
                *started = true;
            }
            Some(Task::Node { cursor, .. }) => {
                cursor.take(block)?;
                self.finish_node(&block.data)?;
            }
        }
        self.steps += 1;
        self.settle()
    }

    /// Moves past the next block without receiving it, reading it from `store` if its
    /// bytes are needed (a provider skipping a duplicate; a client replaying what it has).
    pub fn skip(&mut self, store: &dyn Blockstore) -> Result<(), WalkError> {
        match self.stack.last_mut() {
            None => return Err(WalkError::Done),
            Some(Task::Dag {
                cursor, started, ..
            }) => {
                cursor.skip_one(store)?;
                *started = true;
            }
            Some(Task::Node {
                cid, cursor, role, ..
            }) => {
                let cid = *cid;
                let needs_bytes = !matches!(role, Role::Leaf) && cid.codec() != RAW;
                cursor.skip_one(store)?;
                let data = if needs_bytes {
                    store
                        .get(&cid)?
                        .ok_or_else(|| WalkError::Missing(Box::new(cid)))?
                } else {
                    Vec::new()
                };
                self.finish_node(&data)?;
            }
        }
        self.steps += 1;
        self.settle()
    }

    /// Pops the finished single-block task on top and pushes what its bytes call for.
    fn finish_node(&mut self, data: &[u8]) -> Result<(), WalkError> {
        let Some(Task::Node { cid, role, .. }) = self.stack.pop() else {
            return Ok(());
        };
        let children = self.decide(&cid, role, data)?;
        if self.stack.len() + children.len() > MAX_TASKS {
            return Err(WalkError::TooLarge);
        }
        self.stack.extend(children.into_iter().rev());
        Ok(())
    }

    /// Pops finished tasks and resolves identity blocks inline (they are never sent).
    fn settle(&mut self) -> Result<(), WalkError> {
        loop {
            match self.stack.last() {
                Some(Task::Dag { cursor, .. }) if cursor.expected().is_none() => {
                    self.stack.pop();
                }
                Some(Task::Node { cid, .. }) if cid.hash().code() == IDENTITY => {
                    let data = cid.hash().digest().to_vec();
                    self.finish_node(&data)?;
                }
                _ => return Ok(()),
            }
        }
    }

    /// The tasks that follow a single block, in order.
    fn decide(&mut self, cid: &Cid, role: Role, data: &[u8]) -> Result<Vec<Task<C>>, WalkError> {
        match role {
            Role::Leaf => Ok(Vec::new()),
            Role::Path(rest) => self.resolve(cid, data, rest, 0),
            Role::Hamt { rest, depth } => self.resolve(cid, data, rest, depth),
            Role::Terminal => self.entity(cid, data),
            Role::Range { start } => {
                if cid.codec() != DAG_PB {
                    return Ok(Vec::new());
                }
                let node = decode_pb(cid, data)?;
                let fs = unixfs(cid, &node).ok_or_else(|| {
                    WalkError::InvalidUnixFs(format!("{cid}: a file node without UnixFS data"))
                })?;
                self.file_children(cid, &node, &fs, start)
            }
            Role::HamtEntity => self.entity(cid, data),
        }
    }

    /// The entity below a terminal block (or a child shard of a sharded directory).
    fn entity(&mut self, cid: &Cid, data: &[u8]) -> Result<Vec<Task<C>>, WalkError> {
        if cid.codec() != DAG_PB {
            return Ok(Vec::new()); // raw: the whole file; anything else: the block alone
        }
        let node = decode_pb(cid, data)?;
        let Some(fs) = unixfs(cid, &node) else {
            return Ok(Vec::new());
        };
        match fs.kind {
            DataType::File | DataType::Raw => {
                if let Some(bytes) = self.bytes {
                    let size = fs.filesize.unwrap_or_else(|| {
                        fs.data.as_ref().map_or(0, |d| d.len() as u64)
                            + fs.blocksizes.iter().sum::<u64>()
                    });
                    match bytes.resolve(size) {
                        None => return Ok(Vec::new()),
                        Some(r) => self.range = Some(r),
                    }
                    return self.file_children(cid, &node, &fs, 0);
                }
                node.links.iter().map(|l| Self::dag(l.cid)).collect()
            }
            DataType::HamtShard => {
                let shard = Shard::from_unixfs(node.data.as_deref().unwrap_or_default())?;
                node.links
                    .iter()
                    .filter(|l| shard.is_shard_link(l.name.as_deref().unwrap_or_default()))
                    .map(|l| Self::node(l.cid, Role::HamtEntity))
                    .collect()
            }
            _ => Ok(Vec::new()),
        }
    }

    /// The children of a file node starting at `start` that the resolved range needs.
    fn file_children(
        &self,
        cid: &Cid,
        node: &PbNode,
        fs: &UnixFsData,
        start: u64,
    ) -> Result<Vec<Task<C>>, WalkError> {
        let Some((first, last)) = self.range else {
            return Ok(Vec::new());
        };
        if fs.blocksizes.len() != node.links.len() {
            return Err(WalkError::InvalidUnixFs(format!(
                "{cid}: {} links but {} blocksizes",
                node.links.len(),
                fs.blocksizes.len()
            )));
        }
        let mut offset = start.saturating_add(fs.data.as_ref().map_or(0, |d| d.len() as u64));
        let mut out = Vec::new();
        for (link, size) in node.links.iter().zip(&fs.blocksizes) {
            let end = offset.saturating_add(*size); // exclusive
            if *size > 0 && offset <= last && end > first {
                let inside = offset >= first && end - 1 <= last;
                out.push(if inside {
                    Self::dag(link.cid)?
                } else if link.cid.codec() == RAW {
                    Self::node(link.cid, Role::Leaf)?
                } else {
                    Self::node(link.cid, Role::Range { start: offset })?
                });
            }
            offset = end;
        }
        Ok(out)
    }

    /// Resolves `rest[0]` (and following segments inside a DAG-CBOR block) in `cid`.
    fn resolve(
        &mut self,
        cid: &Cid,
        data: &[u8],
        mut rest: Vec<String>,
        depth: u32,
    ) -> Result<Vec<Task<C>>, WalkError> {
        let not_found = |segment: &str| WalkError::NotFound {
            cid: Box::new(*cid),
            segment: segment.to_owned(),
        };
        let Some(segment) = rest.first().cloned() else {
            return Ok(Vec::new());
        };
        let next = match cid.codec() {
            DAG_PB => {
                let node = decode_pb(cid, data)?;
                let fs = unixfs(cid, &node);
                match fs.map(|f| f.kind) {
                    Some(DataType::HamtShard) => {
                        let shard = Shard::from_unixfs(node.data.as_deref().unwrap_or_default())?;
                        let prefix = shard
                            .prefix(&segment, depth)
                            .ok_or_else(|| not_found(&segment))?;
                        let mut found = None;
                        for l in &node.links {
                            let name = l.name.as_deref().unwrap_or_default();
                            if name == prefix {
                                found = Some(Self::node(
                                    l.cid,
                                    Role::Hamt {
                                        rest: rest.clone(),
                                        depth: depth + 1,
                                    },
                                )?);
                                break;
                            }
                            if name.strip_prefix(&prefix) == Some(segment.as_str()) {
                                rest.remove(0);
                                found = Some(self.step(l.cid, rest.clone())?);
                                break;
                            }
                        }
                        return Ok(vec![found.ok_or_else(|| not_found(&segment))?]);
                    }
                    // A UnixFS directory, or plain dag-pb: links by name.
                    Some(DataType::Directory) | None => node
                        .links
                        .iter()
                        .find(|l| l.name.as_deref() == Some(segment.as_str()))
                        .map(|l| l.cid)
                        .ok_or_else(|| not_found(&segment))?,
                    Some(_) => return Err(not_found(&segment)),
                }
            }
            DAG_CBOR => {
                let mut value = Node::from_dag_cbor(data).map_err(|source| WalkError::Decode {
                    cid: Box::new(*cid),
                    source,
                })?;
                loop {
                    let Some(seg) = rest.first() else {
                        return Err(WalkError::NotALink(Box::new(*cid)));
                    };
                    let child = match &value {
                        Node::Map(entries) => entries
                            .iter()
                            .find(|(k, _)| k == seg)
                            .map(|(_, v)| v.clone()),
                        Node::List(items) => seg
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| items.get(i).cloned()),
                        _ => None,
                    };
                    let child = child.ok_or_else(|| not_found(seg))?;
                    rest.remove(0);
                    if let Node::Link(link) = child {
                        break *link;
                    }
                    value = child;
                }
            }
            _ => return Err(not_found(&segment)),
        };
        if cid.codec() == DAG_PB {
            rest.remove(0);
        }
        Ok(vec![self.step(next, rest)?])
    }

    /// The task for `cid` reached with `rest` segments still to resolve.
    fn step(&mut self, cid: Cid, rest: Vec<String>) -> Result<Task<C>, WalkError> {
        if rest.is_empty() {
            self.terminal_task(cid)
        } else {
            Self::node(cid, Role::Path(rest))
        }
    }

    /// A request for the task on top of the stack, or `None` when the walk is done. A
    /// sub-DAG that is partly received is first split into the sub-DAGs of its pending
    /// links, so the request asks for nothing already taken.
    pub fn next_ask(&mut self) -> Result<Option<Ask>, WalkError> {
        if let Some(Task::Dag {
            cursor,
            started: true,
            ..
        }) = self.stack.last()
        {
            let pending = cursor.pending();
            self.stack.pop();
            if self.stack.len() + pending.len() > MAX_TASKS {
                return Err(WalkError::TooLarge);
            }
            for cid in pending.into_iter().rev() {
                self.stack.push(Self::dag(cid)?);
            }
            self.settle()?;
        }
        let base = self.stack.len();
        let Some(top) = self.stack.last() else {
            return Ok(None);
        };
        let spec = |root: Cid, path: Vec<String>, scope: Scope, bytes: Option<EntityBytes>| Spec {
            root,
            path,
            scope,
            bytes,
        };
        let (spec, one_block) = match top {
            Task::Dag { cid, .. } => (spec(*cid, vec![], Scope::All, None), false),
            Task::Node { cid, role, .. } => match role {
                Role::Leaf => (spec(*cid, vec![], Scope::Block, None), true),
                Role::Hamt { .. } => (spec(*cid, vec![], Scope::Block, None), true),
                Role::Terminal => (spec(*cid, vec![], Scope::Entity, self.bytes), false),
                Role::HamtEntity => (spec(*cid, vec![], Scope::Entity, None), false),
                Role::Path(rest) => (spec(*cid, rest.clone(), self.scope, self.bytes), false),
                Role::Range { start } => {
                    let (first, last) = self.range.unwrap_or((0, 0));
                    let bytes = EntityBytes {
                        from: first.saturating_sub(*start) as i64,
                        to: Some(last.saturating_sub(*start) as i64),
                    };
                    (spec(*cid, vec![], Scope::Entity, Some(bytes)), false)
                }
            },
        };
        Ok(Some(Ask {
            spec,
            one_block,
            base,
            steps: self.steps,
        }))
    }

    /// Whether the blocks taken since `ask` was made answer it completely.
    pub fn answers(&self, ask: &Ask) -> bool {
        if ask.one_block {
            self.steps > ask.steps
        } else {
            self.stack.len() < ask.base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_bytes_follow_the_spec() {
        let p = |s: &str| EntityBytes::parse(s).unwrap();
        assert_eq!(p("0:*").resolve(1026), Some((0, 1025)));
        assert_eq!(p("512:-256").resolve(1026), Some((512, 770)));
        assert_eq!(p("-5:*").resolve(1026), Some((1021, 1025)));
        assert_eq!(p("-9999:*").resolve(1026), Some((0, 1025)));
        assert_eq!(p("-9999:-3").resolve(1026), Some((0, 1023)));
        assert_eq!(p("0:0").resolve(1026), Some((0, 0)));
        assert_eq!(p("512:1023").resolve(1026), Some((512, 1023)));
        assert_eq!(p("2000:*").resolve(1026), None);
        assert_eq!(p("0:-2000").resolve(1026), None);
        assert_eq!(p("0:*").resolve(0), None);
        assert_eq!(p("499:-1000").resolve(2000), Some((499, 1000)));
        for bad in ["", "5", "a:b", "5:1", "-1:-5", "1:2:3", "*:5"] {
            assert!(EntityBytes::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(p("-5:*").to_string(), "-5:*");
        assert_eq!(p("3:7").to_string(), "3:7");
    }
}
