//! From an HTTP request to what to serve (sans-IO): routes, content negotiation, the
//! trustless-gateway parameters, and every refusal with its status code.

use cid::Cid;
use http::{HeaderMap, Method, StatusCode, header};

use crate::walk::{EntityBytes, Scope, Spec};

/// `application/vnd.ipld.raw`.
pub const RAW_TYPE: &str = "application/vnd.ipld.raw";
/// `application/vnd.ipld.car`.
pub const CAR_TYPE: &str = "application/vnd.ipld.car";

/// Which piece-CID codec `/piece/` accepts: fil-commitment-unsealed.
const FIL_COMMITMENT_UNSEALED: u64 = 0xf101;

/// A request refused before any data is read: its status and a one-line reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Refusal {
    /// The status to answer with.
    pub status: StatusCode,
    /// Why (the response body).
    pub message: String,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

fn bad(message: impl Into<String>) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, message)
}

/// The response format of an `/ipfs/` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One raw block.
    Raw,
    /// A CAR v1 stream in DFS order.
    Car {
        /// `dups=y`: every occurrence of a block is sent.
        dups: bool,
    },
}

/// A parsed `/ipfs/` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpfsRequest {
    /// Root, path, scope and byte range.
    pub spec: Spec,
    /// Raw block or CAR.
    pub format: Format,
    /// `HEAD`: headers only.
    pub head: bool,
    /// `?filename=`.
    pub filename: Option<String>,
    /// `Cache-Control: only-if-cached`.
    pub only_if_cached: bool,
    /// `If-None-Match`.
    pub if_none_match: Option<String>,
    /// `Range` (raw blocks only).
    pub range: Option<String>,
    /// `If-Range`.
    pub if_range: Option<String>,
    /// `Content-Location` to return when the format came from `Accept` alone.
    pub content_location: Option<String>,
}

/// A parsed `/piece/` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieceRequest {
    /// The piece CID.
    pub piece: Cid,
    /// `HEAD`: headers only.
    pub head: bool,
    /// `Range`.
    pub range: Option<String>,
    /// `If-Range`.
    pub if_range: Option<String>,
    /// `If-None-Match`.
    pub if_none_match: Option<String>,
}

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/ipfs/{cid}[/{path}]`.
    Ipfs(Box<IpfsRequest>),
    /// `/piece/{pieceCid}`.
    Piece(PieceRequest),
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Query parameters, percent-decoded (`+` is a space, as in forms).
fn query_pairs(query: &str) -> Result<Vec<(String, String)>, Refusal> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| bad("a query parameter is not UTF-8"))
        };
        out.push((decode(k)?, decode(v)?));
        if out.len() > 64 {
            return Err(bad("too many query parameters"));
        }
    }
    Ok(out)
}

/// A media type with its parameters, from one element of an `Accept` list.
#[derive(Debug)]
struct MediaRange {
    essence: String,
    params: Vec<(String, String)>,
    q: f32,
}

fn parse_accept(value: &str) -> Vec<MediaRange> {
    value
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let essence = parts.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let mut params = Vec::new();
            let mut q = 1.0;
            for p in parts {
                let (k, v) = p.split_once('=')?;
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim().trim_matches('"').to_owned();
                if k == "q" {
                    q = v.parse().ok()?;
                } else {
                    params.push((k, v));
                }
            }
            Some(MediaRange { essence, params, q })
        })
        .collect()
}

/// Parses a request line and headers into a [`Route`], or a [`Refusal`].
///
/// `max_path_depth` bounds the number of path segments after the CID.
pub fn parse(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    max_path_depth: usize,
) -> Result<Route, Refusal> {
    let head = match *method {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            return Err(refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD are served",
            ));
        }
    };
    let query = query_pairs(query.unwrap_or(""))?;
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut segments = path.split('/').skip(1);
    let namespace = segments.next().unwrap_or("");
    let rest: Vec<&str> = segments.collect();
    match namespace {
        "ipfs" => {}
        "piece" => return parse_piece(head, &rest, headers),
        "ipns" => {
            return Err(refuse(
                StatusCode::NOT_IMPLEMENTED,
                "/ipns/ is not served: this gateway serves immutable /ipfs/ content",
            ));
        }
        _ => {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "no such route: /ipfs/ and /piece/ are served",
            ));
        }
    }
    let Some((cid_text, path_segments)) = rest.split_first() else {
        return Err(bad("no CID after /ipfs/"));
    };
    let root: Cid = cid_text
        .parse()
        .map_err(|e| bad(format!("{cid_text:?} is not a valid CID: {e}")))?;
    let mut segments = Vec::new();
    for s in path_segments.iter().filter(|s| !s.is_empty()) {
        let s = percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map_err(|_| bad("a path segment is not UTF-8"))?;
        if s == "." || s == ".." {
            return Err(bad("path segments . and .. are not allowed"));
        }
        segments.push(s.into_owned());
        if segments.len() > max_path_depth {
            return Err(bad(format!(
                "the path is deeper than {max_path_depth} segments"
            )));
        }
    }
    if header_str(headers, header::HeaderName::from_static("service-worker")) == Some("script") {
        return Err(bad("service worker registration is not allowed"));
    }

    // Content negotiation: ?format wins over Accept; Accept's parameters count only when
    // its type is the one chosen.
    let from_param = match param("format") {
        None | Some("") => None,
        Some("raw") => Some(RAW_TYPE),
        Some("car") => Some(CAR_TYPE),
        Some(other) => {
            return Err(bad(format!(
                "format={other} is not served: this trustless gateway serves raw and car"
            )));
        }
    };
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_accept)
        .collect::<Vec<_>>();
    let mut best: Option<&MediaRange> = None;
    for m in &accept {
        if (m.essence == RAW_TYPE || m.essence == CAR_TYPE)
            && m.q > 0.0
            && best.is_none_or(|b| m.q > b.q)
        {
            best = Some(m);
        }
    }
    let chosen = match (from_param, best) {
        (Some(p), _) => p,
        (None, Some(b)) if b.essence == RAW_TYPE => RAW_TYPE,
        (None, Some(_)) => CAR_TYPE,
        (None, None) if headers.get(header::ACCEPT).is_none() => {
            return Err(bad(
                "this trustless gateway needs Accept: application/vnd.ipld.raw or \
                 application/vnd.ipld.car (or ?format=raw|car)",
            ));
        }
        (None, None) => {
            return Err(refuse(
                StatusCode::NOT_ACCEPTABLE,
                "only trustless responses are served: application/vnd.ipld.raw or \
                 application/vnd.ipld.car",
            ));
        }
    };
    let accept_params: &[(String, String)] = match best {
        Some(b) if b.essence == chosen => &b.params,
        _ => &[],
    };
    let car_param = |name: &str, query_name: &str| {
        param(query_name).filter(|v| !v.is_empty()).or_else(|| {
            accept_params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        })
    };
    let format = if chosen == RAW_TYPE {
        if !segments.is_empty() {
            return Err(bad("a raw block request takes no path: ask for a CAR"));
        }
        Format::Raw
    } else {
        match car_param("version", "car-version") {
            None | Some("1") => {}
            Some(v) => return Err(bad(format!("CAR version {v} is not served (only 1)"))),
        }
        match car_param("order", "car-order") {
            None | Some("dfs") | Some("unk") | Some("") => {}
            Some(o) => return Err(bad(format!("CAR order {o} is not served (dfs)"))),
        }
        let dups = match car_param("dups", "car-dups") {
            None | Some("n") | Some("") => false,
            Some("y") => true,
            Some(d) => return Err(bad(format!("dups={d}: use y or n"))),
        };
        Format::Car { dups }
    };
    let bytes = match param("entity-bytes") {
        None => None,
        Some(text) => Some(EntityBytes::parse(text).ok_or_else(|| {
            bad(format!(
                "entity-bytes={text} is not a range from:to (integers, to may be *)"
            ))
        })?),
    };
    let scope = match param("dag-scope") {
        None => {
            if bytes.is_some() {
                Scope::Entity
            } else {
                Scope::All
            }
        }
        Some(s) => Scope::parse(s)
            .ok_or_else(|| bad(format!("dag-scope={s}: use block, entity or all")))?,
    };
    if bytes.is_some() && scope != Scope::Entity && format != Format::Raw {
        return Err(bad("entity-bytes implies dag-scope=entity"));
    }
    let content_location = from_param.is_none().then(|| {
        let f = if chosen == RAW_TYPE { "raw" } else { "car" };
        let mut q: Vec<String> = vec![format!("format={f}")];
        if let Some(raw) = param("dag-scope") {
            q.push(format!("dag-scope={raw}"));
        }
        if let Some(b) = &bytes {
            q.push(format!("entity-bytes={b}"));
        }
        format!("{path}?{}", q.join("&"))
    });
    let only_if_cached = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("only-if-cached"))
        });
    Ok(Route::Ipfs(Box::new(IpfsRequest {
        spec: Spec {
            root,
            path: segments,
            scope,
            bytes: if format == Format::Raw { None } else { bytes },
        },
        format,
        head,
        filename: param("filename").map(str::to_owned),
        only_if_cached,
        if_none_match: header_str(headers, header::IF_NONE_MATCH).map(str::to_owned),
        range: header_str(headers, header::RANGE).map(str::to_owned),
        if_range: header_str(headers, header::IF_RANGE).map(str::to_owned),
        content_location,
    })))
}

fn parse_piece(head: bool, rest: &[&str], headers: &HeaderMap) -> Result<Route, Refusal> {
    let [cid_text] = rest else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "a piece is served at /piece/{pieceCid}, with nothing after it",
        ));
    };
    let piece: Cid = cid_text
        .parse()
        .map_err(|e| bad(format!("{cid_text:?} is not a valid CID: {e}")))?;
    if piece.codec() != FIL_COMMITMENT_UNSEALED {
        return Err(bad(format!("{piece} is not a piece CID (baga…)")));
    }
    Ok(Route::Piece(PieceRequest {
        piece,
        head,
        range: header_str(headers, header::RANGE).map(str::to_owned),
        if_range: header_str(headers, header::IF_RANGE).map(str::to_owned),
        if_none_match: header_str(headers, header::IF_NONE_MATCH).map(str::to_owned),
    }))
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, `*` matches).
pub fn none_match(if_none_match: Option<&str>, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    if_none_match.is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim() == "*" || strip(t) == strip(etag))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "bafkreie5noke3mb7hqxukzcy73nl23k6lxszxi5w3dtmuwz62wnvkpsscm";

    fn get(path: &str, query: Option<&str>, accept: Option<&str>) -> Result<Route, Refusal> {
        let mut h = HeaderMap::new();
        if let Some(a) = accept {
            h.insert(header::ACCEPT, a.parse().unwrap());
        }
        parse(&Method::GET, path, query, &h, 8)
    }

    fn ipfs(r: Result<Route, Refusal>) -> IpfsRequest {
        match r.unwrap() {
            Route::Ipfs(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn negotiation_and_parameters() {
        let p = format!("/ipfs/{CID}");
        let r = ipfs(get(&p, Some("format=raw"), None));
        assert_eq!(r.format, Format::Raw);
        assert_eq!(r.content_location, None);
        let r = ipfs(get(&p, None, Some(RAW_TYPE)));
        assert_eq!(r.format, Format::Raw);
        assert_eq!(r.content_location, Some(format!("{p}?format=raw")));
        // ?format wins over Accept; Accept's params apply only to its own type.
        let r = ipfs(get(&p, Some("format=car"), Some(RAW_TYPE)));
        assert_eq!(r.format, Format::Car { dups: false });
        let r = ipfs(get(&p, Some("format=raw"), Some(CAR_TYPE)));
        assert_eq!(r.format, Format::Raw);
        let r = ipfs(get(
            &p,
            Some("format=car"),
            Some("application/vnd.ipld.car; version=1; order=dfs; dups=y"),
        ));
        assert_eq!(r.format, Format::Car { dups: true });
        // car-dups and car-order in the URL win over Accept.
        let r = ipfs(get(
            &p,
            Some("format=car&car-dups=y"),
            Some("application/vnd.ipld.car; dups=n"),
        ));
        assert_eq!(r.format, Format::Car { dups: true });
        let r = ipfs(get(
            &p,
            Some("car-order=dfs"),
            Some("application/vnd.ipld.car; order=unk"),
        ));
        assert_eq!(r.format, Format::Car { dups: false });
        // q-values pick among the two trustless types.
        let r = ipfs(get(
            &p,
            None,
            Some("application/vnd.ipld.raw;q=0.1, application/vnd.ipld.car;q=0.5"),
        ));
        assert_eq!(r.format, Format::Car { dups: false });
        // Scope and entity-bytes.
        let r = ipfs(get(
            &format!("{p}/a/b%20c/"),
            Some("format=car&dag-scope=block"),
            None,
        ));
        assert_eq!(r.spec.path, vec!["a".to_owned(), "b c".to_owned()]);
        assert_eq!(r.spec.scope, Scope::Block);
        let r = ipfs(get(&p, Some("format=car&entity-bytes=-5:*"), None));
        assert_eq!(r.spec.scope, Scope::Entity);
        assert_eq!(r.spec.bytes, EntityBytes::parse("-5:*"));
        let r = ipfs(get(&p, Some("format=car&filename=x.car"), None));
        assert_eq!(r.filename.as_deref(), Some("x.car"));
        assert_eq!(r.spec.scope, Scope::All);
    }

    #[test]
    fn refusals_have_their_status() {
        let p = format!("/ipfs/{CID}");
        let status = |r: Result<Route, Refusal>| r.unwrap_err().status;
        assert_eq!(status(get(&p, None, None)), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(get(&p, None, Some("*/*"))),
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            status(get(&p, None, Some("text/html"))),
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            status(get("/ipfs/nope", Some("format=raw"), None)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(get("/ipfs/", Some("format=raw"), None)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(get(&format!("{p}/x"), Some("format=raw"), None)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(get(&p, Some("format=tar"), None)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(get(&p, Some("format=car&dag-scope=most"), None)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(get(&p, Some("format=car&entity-bytes=9:1"), None)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(get(
                &p,
                Some("format=car&entity-bytes=1:9&dag-scope=all"),
                None
            )),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(get(&p, Some("format=car&car-version=2"), None)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(get(&p, Some("format=car&car-order=bfs"), None)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(get(&p, Some("format=car&car-dups=maybe"), None)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(get(&format!("{p}/a/../b"), Some("format=car"), None)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(get(
                &format!("{p}/1/2/3/4/5/6/7/8/9"),
                Some("format=car"),
                None
            )),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(get("/ipns/example.org", Some("format=car"), None)),
            StatusCode::NOT_IMPLEMENTED
        );
        assert_eq!(status(get("/elsewhere", None, None)), StatusCode::NOT_FOUND);
        assert_eq!(
            status(get(&format!("/piece/{CID}"), None, None)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status(get("/piece/a/b", None, None)), StatusCode::NOT_FOUND);
        let post = parse(&Method::POST, &p, None, &HeaderMap::new(), 8);
        assert_eq!(status(post), StatusCode::METHOD_NOT_ALLOWED);
        let mut sw = HeaderMap::new();
        sw.insert("service-worker", "script".parse().unwrap());
        sw.insert(header::ACCEPT, CAR_TYPE.parse().unwrap());
        assert_eq!(
            status(parse(&Method::GET, &p, None, &sw, 8)),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn etag_matching() {
        assert!(none_match(Some("\"a\""), "\"a\""));
        assert!(none_match(Some("W/\"a\", \"b\""), "\"a\""));
        assert!(none_match(Some("*"), "\"a\""));
        assert!(!none_match(Some("\"b\""), "\"a\""));
        assert!(!none_match(None, "\"a\""));
    }
}
