//! IPLD selectors (<https://ipld.io/specs/selectors/>): the declarative form, decoded from
//! and encoded to DAG-CBOR with go-ipld-prime's key names.
//!
//! | selector | key | body |
//! |---|---|---|
//! | [`Selector::Matcher`] | `.` | `{}` (labels and conditions are ignored, as in Go) |
//! | [`Selector::ExploreAll`] | `a` | `{">": next}` |
//! | [`Selector::ExploreFields`] | `f` | `{"f>": {name: next, ...}}` |
//! | [`Selector::ExploreIndex`] | `i` | `{"i": index, ">": next}` |
//! | [`Selector::ExploreRange`] | `r` | `{"^": start, "$": end, ">": next}` |
//! | [`Selector::ExploreUnion`] | `\|` | `[selector, ...]` |
//! | [`Selector::ExploreRecursive`] | `R` | `{"l": {"none": {}} or {"depth": n}, ":>": sequence}` |
//! | [`Selector::ExploreRecursiveEdge`] | `@` | `{}` |
//!
//! A selector is a keyed union: a map with exactly one entry. Unknown extra keys inside a
//! body are ignored (as go-ipld-prime does); the stop-at condition `!`, conditionals `&` and
//! `~` (interpret-as) are rejected as unsupported.
//!
//! **Field order matters.** go-ipld-prime explores `ExploreFields` entries in the order
//! they appear in the selector document, so [`Selector::ExploreFields`] keeps them in a
//! `Vec`, decoding keeps the encoded order and [`Selector::to_dag_cbor`] writes them in the
//! listed order (every other key is written canonically). A selector and its bytes therefore
//! always describe the same traversal, on both sides of a deal.

use crate::codec::{self, Node};

/// Deepest selector nesting accepted when parsing.
pub const MAX_NESTING: usize = 128;

/// Most selector nodes (explore clauses and matchers) in one selector. Real selectors have
/// a handful; the cap bounds the work a peer's selector can cause per visited node (a union
/// is walked member by member at every node).
pub const MAX_SELECTOR_NODES: usize = 1024;

/// The explore-all-recursively selector as DAG-CBOR:
/// `{"R":{"l":{"none":{}},":>":{"a":{">":{"@":{}}}}}}`.
pub const EXPLORE_ALL_RECURSIVELY_DAG_CBOR: &[u8] = &[
    0xa1, 0x61, 0x52, 0xa2, 0x61, 0x6c, 0xa1, 0x64, 0x6e, 0x6f, 0x6e, 0x65, 0xa0, 0x62, 0x3a, 0x3e,
    0xa1, 0x61, 0x61, 0xa1, 0x61, 0x3e, 0xa1, 0x61, 0x40, 0xa0,
];

/// Errors while parsing a selector document.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The bytes are not DAG-CBOR.
    #[error("selector is not DAG-CBOR: {0}")]
    Codec(#[from] codec::Error),
    /// The document does not have the shape the selector spec requires.
    #[error("selector spec parse rejected: {0}")]
    Invalid(String),
    /// A valid selector feature this implementation does not support.
    #[error("unsupported selector feature: {0}")]
    Unsupported(&'static str),
    /// Nesting deeper than [`MAX_NESTING`].
    #[error("selector nesting deeper than {MAX_NESTING}")]
    TooDeep,
    /// More than [`MAX_SELECTOR_NODES`] selector nodes.
    #[error("selector has more than {MAX_SELECTOR_NODES} nodes")]
    TooLarge,
}

/// The recursion limit of an [`Selector::ExploreRecursive`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecursionLimit {
    /// No limit.
    None,
    /// Apply the sequence at most this many times along any path, the first application
    /// included (go-ipld-prime semantics: `Depth(1)` explores nothing through an edge).
    /// Depth counts data-model levels, not blocks: reaching the next block of a dag-pb
    /// file through `ExploreAll` takes three (`Links`, the index, `Hash`).
    Depth(i64),
}

/// A selector in declarative form.
#[derive(Clone, Debug, PartialEq)]
pub enum Selector {
    /// Matches the current node; explores nothing further.
    Matcher,
    /// Explores every entry of a map or list with `next`.
    ExploreAll {
        /// Selector for each child.
        next: Box<Selector>,
    },
    /// Explores the named fields, in this order.
    ExploreFields {
        /// `(field name, selector)` pairs.
        fields: Vec<(String, Selector)>,
    },
    /// Explores one list index.
    ExploreIndex {
        /// The index.
        index: i64,
        /// Selector for that element.
        next: Box<Selector>,
    },
    /// Explores list indices `start..end`.
    ExploreRange {
        /// First index (inclusive).
        start: i64,
        /// Last index (exclusive); must be greater than `start`.
        end: i64,
        /// Selector for each element in range.
        next: Box<Selector>,
    },
    /// Applies several selectors to the same node.
    ExploreUnion(Vec<Selector>),
    /// Applies `sequence` repeatedly: each [`Selector::ExploreRecursiveEdge`] inside it
    /// starts the sequence again one level deeper.
    ExploreRecursive {
        /// Recursion limit.
        limit: RecursionLimit,
        /// The repeated selector; must contain at least one edge bound to this recursion.
        sequence: Box<Selector>,
    },
    /// Marks where an enclosing [`Selector::ExploreRecursive`] repeats.
    ExploreRecursiveEdge,
}

impl Selector {
    /// `ExploreRecursive(no limit, ExploreAll(ExploreRecursiveEdge))`: every block of the DAG
    /// reachable from the root, depth first. The selector go-fil-markets uses by default.
    pub fn explore_all_recursively() -> Selector {
        Selector::ExploreRecursive {
            limit: RecursionLimit::None,
            sequence: Box::new(Selector::ExploreAll {
                next: Box::new(Selector::ExploreRecursiveEdge),
            }),
        }
    }

    /// Decodes a selector from DAG-CBOR bytes.
    pub fn from_dag_cbor(bytes: &[u8]) -> Result<Selector, ParseError> {
        Selector::from_node(&Node::from_dag_cbor(bytes)?)
    }

    /// Encodes as DAG-CBOR (field order of `ExploreFields` as listed; see the module docs).
    pub fn to_dag_cbor(&self) -> Vec<u8> {
        // Integers in a selector are i64, always in DAG-CBOR range, so encoding cannot fail.
        self.to_node().to_dag_cbor().unwrap_or_default()
    }

    /// Parses a selector from its data-model form.
    pub fn from_node(node: &Node) -> Result<Selector, ParseError> {
        let mut parser = Parser {
            recursions: Vec::new(),
            depth: 0,
            nodes: 0,
        };
        parser.parse(node)
    }

    /// The data-model form (fixed keys in canonical order).
    pub fn to_node(&self) -> Node {
        let map = |k: &str, v: Node| Node::Map(vec![(k.to_owned(), v)]);
        match self {
            Selector::Matcher => map(".", Node::Map(vec![])),
            Selector::ExploreAll { next } => map("a", map(">", next.to_node())),
            Selector::ExploreFields { fields } => map(
                "f",
                map(
                    "f>",
                    Node::Map(
                        fields
                            .iter()
                            .map(|(k, s)| (k.clone(), s.to_node()))
                            .collect(),
                    ),
                ),
            ),
            Selector::ExploreIndex { index, next } => map(
                "i",
                Node::Map(vec![
                    (">".into(), next.to_node()),
                    ("i".into(), Node::Integer(i128::from(*index))),
                ]),
            ),
            Selector::ExploreRange { start, end, next } => map(
                "r",
                Node::Map(vec![
                    ("$".into(), Node::Integer(i128::from(*end))),
                    (">".into(), next.to_node()),
                    ("^".into(), Node::Integer(i128::from(*start))),
                ]),
            ),
            Selector::ExploreUnion(members) => map(
                "|",
                Node::List(members.iter().map(Selector::to_node).collect()),
            ),
            Selector::ExploreRecursive { limit, sequence } => {
                let limit = match limit {
                    RecursionLimit::None => map("none", Node::Map(vec![])),
                    RecursionLimit::Depth(d) => map("depth", Node::Integer(i128::from(*d))),
                };
                map(
                    "R",
                    Node::Map(vec![("l".into(), limit), (":>".into(), sequence.to_node())]),
                )
            }
            Selector::ExploreRecursiveEdge => map("@", Node::Map(vec![])),
        }
    }
}

struct Parser {
    /// One counter of bound edges per enclosing ExploreRecursive (innermost last).
    recursions: Vec<usize>,
    depth: usize,
    /// Selector nodes parsed so far.
    nodes: usize,
}

fn invalid(msg: &str) -> ParseError {
    ParseError::Invalid(msg.to_owned())
}

fn as_int(node: Option<&Node>, what: &str) -> Result<i64, ParseError> {
    match node {
        Some(Node::Integer(i)) => {
            i64::try_from(*i).map_err(|_| invalid(&format!("{what} does not fit in 64 bits")))
        }
        Some(_) => Err(invalid(&format!("{what} must be a number"))),
        None => Err(invalid(&format!("{what} must be present"))),
    }
}

impl Parser {
    fn parse(&mut self, node: &Node) -> Result<Selector, ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(ParseError::TooDeep);
        }
        self.nodes += 1;
        if self.nodes > MAX_SELECTOR_NODES {
            return Err(ParseError::TooLarge);
        }
        let result = self.parse_inner(node);
        self.depth -= 1;
        result
    }

    fn next(&mut self, body: &Node, what: &str) -> Result<Box<Selector>, ParseError> {
        match body.get(">") {
            Some(n) => Ok(Box::new(self.parse(n)?)),
            None => Err(invalid(&format!(
                "next field must be present in {what} selector"
            ))),
        }
    }

    fn parse_inner(&mut self, node: &Node) -> Result<Selector, ParseError> {
        let Node::Map(entries) = node else {
            return Err(invalid("selector is a keyed union and thus must be a map"));
        };
        let [(key, body)] = entries.as_slice() else {
            return Err(invalid(
                "selector is a keyed union and thus must be single-entry map",
            ));
        };
        if key != "|" && !matches!(body, Node::Map(_)) {
            return Err(invalid("selector body must be a map"));
        }
        match key.as_str() {
            "." => Ok(Selector::Matcher),
            "a" => Ok(Selector::ExploreAll {
                next: self.next(body, "ExploreAll")?,
            }),
            "f" => {
                let Some(Node::Map(fields)) = body.get("f>") else {
                    return Err(invalid(
                        "fields in ExploreFields selector must be present and a map",
                    ));
                };
                let fields = fields
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.parse(v)?)))
                    .collect::<Result<Vec<_>, ParseError>>()?;
                Ok(Selector::ExploreFields { fields })
            }
            "i" => {
                let index = as_int(body.get("i"), "index field of ExploreIndex")?;
                Ok(Selector::ExploreIndex {
                    index,
                    next: self.next(body, "ExploreIndex")?,
                })
            }
            "r" => {
                let start = as_int(body.get("^"), "start field of ExploreRange")?;
                let end = as_int(body.get("$"), "end field of ExploreRange")?;
                if start >= end {
                    return Err(invalid(
                        "end field must be greater than start field in ExploreRange selector",
                    ));
                }
                Ok(Selector::ExploreRange {
                    start,
                    end,
                    next: self.next(body, "ExploreRange")?,
                })
            }
            "|" => {
                let Node::List(members) = body else {
                    return Err(invalid("explore union selector must be a list"));
                };
                let members = members
                    .iter()
                    .map(|m| self.parse(m))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Selector::ExploreUnion(members))
            }
            "R" => {
                let limit = match body.get("l") {
                    Some(Node::Map(l)) => match l.as_slice() {
                        [(k, _)] if k == "none" => RecursionLimit::None,
                        [(k, v)] if k == "depth" => RecursionLimit::Depth(as_int(
                            Some(v),
                            "depth limit of ExploreRecursive",
                        )?),
                        [(k, _)] => {
                            return Err(invalid(&format!(
                                "{k:?} is not a known member of the limit union in ExploreRecursive"
                            )));
                        }
                        _ => {
                            return Err(invalid(
                                "limit in ExploreRecursive must be a single-entry map",
                            ));
                        }
                    },
                    Some(_) => {
                        return Err(invalid(
                            "limit in ExploreRecursive is a keyed union and thus must be a map",
                        ));
                    }
                    None => {
                        return Err(invalid(
                            "limit field must be present in ExploreRecursive selector",
                        ));
                    }
                };
                if body.get("!").is_some() {
                    return Err(ParseError::Unsupported("ExploreRecursive stopAt condition"));
                }
                let Some(seq) = body.get(":>") else {
                    return Err(invalid(
                        "sequence field must be present in ExploreRecursive selector",
                    ));
                };
                self.recursions.push(0);
                let sequence = self.parse(seq);
                let edges = self.recursions.pop().unwrap_or(0);
                let sequence = sequence?;
                if edges == 0 {
                    return Err(invalid(
                        "ExploreRecursive must have at least one ExploreRecursiveEdge",
                    ));
                }
                Ok(Selector::ExploreRecursive {
                    limit,
                    sequence: Box::new(sequence),
                })
            }
            "@" => match self.recursions.last_mut() {
                Some(count) => {
                    *count += 1;
                    Ok(Selector::ExploreRecursiveEdge)
                }
                None => Err(invalid(
                    "ExploreRecursiveEdge must be beneath ExploreRecursive",
                )),
            },
            "&" => Err(ParseError::Unsupported("ExploreConditional")),
            "~" => Err(ParseError::Unsupported("ExploreInterpretAs")),
            other => Err(invalid(&format!(
                "{other:?} is not a known member of the selector union"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explore_all_bytes() {
        let s = Selector::explore_all_recursively();
        assert_eq!(
            hex::encode(s.to_dag_cbor()),
            "a16152a2616ca1646e6f6e65a0623a3ea16161a1613ea16140a0"
        );
        assert_eq!(s.to_dag_cbor(), EXPLORE_ALL_RECURSIVELY_DAG_CBOR);
        assert_eq!(
            Selector::from_dag_cbor(EXPLORE_ALL_RECURSIVELY_DAG_CBOR).unwrap(),
            s
        );
    }

    fn round_trip(s: Selector) {
        let bytes = s.to_dag_cbor();
        assert_eq!(
            Selector::from_dag_cbor(&bytes).unwrap(),
            s,
            "{}",
            hex::encode(&bytes)
        );
    }

    #[test]
    fn every_selector_round_trips() {
        let m = || Box::new(Selector::Matcher);
        round_trip(Selector::Matcher);
        round_trip(Selector::ExploreAll { next: m() });
        round_trip(Selector::ExploreFields {
            fields: vec![
                (
                    "Links".into(),
                    Selector::ExploreIndex {
                        index: 0,
                        next: m(),
                    },
                ),
                ("Data".into(), Selector::Matcher),
            ],
        });
        round_trip(Selector::ExploreRange {
            start: 2,
            end: 10,
            next: m(),
        });
        round_trip(Selector::ExploreUnion(vec![
            Selector::Matcher,
            Selector::ExploreAll { next: m() },
        ]));
        round_trip(Selector::ExploreRecursive {
            limit: RecursionLimit::Depth(3),
            sequence: Box::new(Selector::ExploreUnion(vec![
                Selector::Matcher,
                Selector::ExploreAll {
                    next: Box::new(Selector::ExploreRecursiveEdge),
                },
            ])),
        });
        // Nested recursions: the inner edge binds to the inner recursion.
        round_trip(Selector::ExploreRecursive {
            limit: RecursionLimit::None,
            sequence: Box::new(Selector::ExploreFields {
                fields: vec![
                    ("x".into(), Selector::ExploreRecursiveEdge),
                    (
                        "y".into(),
                        Selector::ExploreRecursive {
                            limit: RecursionLimit::Depth(1),
                            sequence: Box::new(Selector::ExploreAll {
                                next: Box::new(Selector::ExploreRecursiveEdge),
                            }),
                        },
                    ),
                ],
            }),
        });
    }

    #[test]
    fn e10_partial_selector_bytes_decode() {
        // {"f":{"f>":{"Links":{"i":{">":{"f":{"f>":{"Hash":{".":{}}}}},"i":0}}}}}
        let s = Selector::ExploreFields {
            fields: vec![(
                "Links".into(),
                Selector::ExploreIndex {
                    index: 0,
                    next: Box::new(Selector::ExploreFields {
                        fields: vec![("Hash".into(), Selector::Matcher)],
                    }),
                },
            )],
        };
        let bytes = s.to_dag_cbor();
        let mut canon = Node::from_dag_cbor(&bytes).unwrap();
        canon.canonicalize();
        assert_eq!(
            canon.to_dag_cbor().unwrap(),
            bytes,
            "single-field selectors encode canonically"
        );
        round_trip(s);
    }

    #[test]
    fn malformed_selectors_are_rejected() {
        let cases: Vec<Node> = vec![
            Node::List(vec![]),
            Node::Map(vec![]),
            Node::Map(vec![
                (".".into(), Node::Map(vec![])),
                ("a".into(), Node::Map(vec![])),
            ]),
            Node::Map(vec![("x".into(), Node::Map(vec![]))]),
            Node::Map(vec![("a".into(), Node::Map(vec![]))]),
            Node::Map(vec![("a".into(), Node::Null)]),
            Node::Map(vec![("@".into(), Node::Map(vec![]))]),
            Node::Map(vec![("|".into(), Node::Map(vec![]))]),
        ];
        for c in cases {
            assert!(
                matches!(Selector::from_node(&c), Err(ParseError::Invalid(_))),
                "{c:?}"
            );
        }
        let range = Selector::ExploreRange {
            start: 5,
            end: 5,
            next: Box::new(Selector::Matcher),
        };
        assert!(Selector::from_dag_cbor(&range.to_dag_cbor()).is_err());
        let no_edge = Selector::ExploreRecursive {
            limit: RecursionLimit::None,
            sequence: Box::new(Selector::Matcher),
        };
        assert!(Selector::from_dag_cbor(&no_edge.to_dag_cbor()).is_err());
        let bad_limit = Node::Map(vec![(
            "R".into(),
            Node::Map(vec![
                (
                    "l".into(),
                    Node::Map(vec![("forever".into(), Node::Map(vec![]))]),
                ),
                (":>".into(), Selector::ExploreRecursiveEdge.to_node()),
            ]),
        )]);
        assert!(Selector::from_node(&bad_limit).is_err());
        let cond = Node::Map(vec![("&".into(), Node::Map(vec![]))]);
        assert!(matches!(
            Selector::from_node(&cond),
            Err(ParseError::Unsupported(_))
        ));
        let mut deep = Selector::Matcher.to_node();
        for _ in 0..200 {
            deep = Node::Map(vec![("a".into(), Node::Map(vec![(">".into(), deep)]))]);
        }
        assert_eq!(Selector::from_node(&deep), Err(ParseError::TooDeep));
        // A wide union (hostile: it is walked member by member at every node) is refused.
        let wide = Node::Map(vec![(
            "|".into(),
            Node::List(vec![Selector::Matcher.to_node(); MAX_SELECTOR_NODES + 1]),
        )]);
        assert_eq!(Selector::from_node(&wide), Err(ParseError::TooLarge));
        let fine = Node::Map(vec![(
            "|".into(),
            Node::List(vec![Selector::Matcher.to_node(); 8]),
        )]);
        assert!(Selector::from_node(&fine).is_ok());
    }
}
