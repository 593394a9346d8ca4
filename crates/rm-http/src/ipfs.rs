//! `/ipfs/{cid}[/{path}]`: raw blocks and CAR streams from the blockstore.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;
use http::{HeaderValue, Response, StatusCode, header};
use rm_blockio::{Blockstore, Traversal};
use rm_types::Block;
use tokio::sync::mpsc;

use crate::body::{Body, BodyError};
use crate::car;
use crate::range::{self, Resolved};
use crate::request::{self, CAR_TYPE, Format, IpfsRequest, RAW_TYPE};
use crate::server::{Shared, head_only, text};
use crate::walk::{Spec, Walk, WalkError};

/// `Cache-Control` of every immutable `/ipfs/` response.
pub const IMMUTABLE: &str = "public, max-age=29030400, immutable";

/// Most distinct blocks one `dups=n` response remembers (bounds its memory).
pub const MAX_SEEN: usize = 1 << 22;

/// Why a CAR cannot be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// A block the walk needs is not in the store.
    #[error("block {0} is not available")]
    Missing(Box<Cid>),
    /// The walk failed (path not found, invalid data).
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] rm_blockio::blockstore::Error),
    /// More distinct blocks than [`MAX_SEEN`] in one `dups=n` response.
    #[error("more than {MAX_SEEN} distinct blocks in one response")]
    TooManyBlocks,
}

impl ProduceError {
    /// The status a response gets when this happens before its first byte.
    pub fn status(&self) -> StatusCode {
        match self {
            ProduceError::Missing(_) => StatusCode::NOT_FOUND,
            ProduceError::Walk(WalkError::NotFound { .. } | WalkError::Missing(_)) => {
                StatusCode::NOT_FOUND
            }
            ProduceError::Walk(WalkError::NotALink(_) | WalkError::Unsupported(_)) => {
                StatusCode::NOT_IMPLEMENTED
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Produces the CAR of a [`Spec`] from a store, section by section (blocking reads): the
/// provider's side of the walk. The path is resolved in [`CarProducer::new`], so a path
/// that does not exist is known before the response starts.
pub struct CarProducer<S> {
    store: S,
    walk: Walk<Traversal>,
    dups: bool,
    seen: HashSet<Cid>,
    /// Sections of the path, read while resolving it, not yet handed out.
    ready: std::collections::VecDeque<(Cid, Bytes)>,
    /// The CIDs of the path's logical roots (for `X-Ipfs-Roots`).
    roots: Vec<Cid>,
}

impl<S> std::fmt::Debug for CarProducer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarProducer")
            .field("walk", &self.walk)
            .finish_non_exhaustive()
    }
}

impl<S: Blockstore> CarProducer<S> {
    /// Starts the walk of `spec` and resolves its path.
    pub fn new(store: S, spec: &Spec, dups: bool) -> Result<Self, ProduceError> {
        let mut p = Self {
            store,
            walk: Walk::new(spec)?,
            dups,
            seen: HashSet::new(),
            ready: Default::default(),
            roots: vec![spec.root],
        };
        while !p.walk.path_resolved() {
            match p.step()? {
                Some(section) => {
                    if p.walk.path_resolved()
                        && let Some(t) = p.walk.terminal()
                    {
                        p.roots.push(t);
                    }
                    p.ready.push_back(section);
                }
                None => break,
            }
        }
        if let Some(t) = p.walk.terminal()
            && p.roots.last() != Some(&t)
        {
            p.roots.push(t);
        }
        Ok(p)
    }

    /// The root, and the terminal element's CID once the path is resolved.
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// The terminal element's CID.
    pub fn terminal(&self) -> Option<Cid> {
        self.walk.terminal()
    }

    /// The next section to send, or `None` at the end.
    pub fn next_section(&mut self) -> Result<Option<(Cid, Bytes)>, ProduceError> {
        if let Some(s) = self.ready.pop_front() {
            return Ok(Some(s));
        }
        self.step()
    }

    fn step(&mut self) -> Result<Option<(Cid, Bytes)>, ProduceError> {
        loop {
            let Some(cid) = self.walk.expected() else {
                return Ok(None);
            };
            if !self.dups && self.seen.contains(&cid) {
                self.walk.skip(&self.store)?;
                continue;
            }
            // Checked against its CID: a block that went bad in the store is never sent.
            let data = self
                .store
                .get_verified(&cid)?
                .ok_or_else(|| ProduceError::Missing(Box::new(cid)))?;
            let block = Block::new(&cid, data);
            self.walk.accept(&block)?;
            if !self.dups {
                if self.seen.len() >= MAX_SEEN {
                    return Err(ProduceError::TooManyBlocks);
                }
                self.seen.insert(cid);
            }
            return Ok(Some((cid, block.data)));
        }
    }
}

/// Writes the CAR of `spec` from `store` to `out` (what the gateway would send); returns
/// the bytes written.
pub fn write_car<S: Blockstore, W: std::io::Write>(
    store: S,
    spec: &Spec,
    dups: bool,
    mut out: W,
) -> Result<u64, crate::Error> {
    let mut producer = CarProducer::new(store, spec, dups)?;
    let header = car::header(&[spec.root]);
    out.write_all(&header)?;
    let mut n = header.len() as u64;
    while let Some((cid, data)) = producer.next_section()? {
        let head = car::section_head(&cid, data.len());
        out.write_all(&head)?;
        out.write_all(&data)?;
        n += (head.len() + data.len()) as u64;
    }
    out.flush()?;
    Ok(n)
}

/// Makes sure `root` is in the blockstore, unsealing the piece that holds it if needed.
async fn ensure_root(shared: &Shared, root: &Cid) -> Result<(), Response<Body>> {
    let has = |blocks: &Arc<dyn Blockstore>| blocks.has(root);
    match has(&shared.blocks) {
        Ok(true) => return Ok(()),
        Ok(false) => {}
        Err(e) => return Err(text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
    }
    let not_found = || {
        text(
            StatusCode::NOT_FOUND,
            &format!("{root} is not available here"),
        )
    };
    let Some(unsealer) = &shared.unsealer else {
        return Err(not_found());
    };
    match unsealer.load(root, None, Arc::clone(&shared.blocks)).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Err(not_found()),
        Err(e) => Err(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("unsealing the piece of {root}: {e}"),
        )),
    }
}

/// FNV-1a: a stable hash for Etags.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(&[0u8]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The Etag of a CAR response: the root, and a hash of everything that shapes the bytes.
pub fn car_etag(spec: &Spec, dups: bool) -> String {
    let path = spec.path.join("/");
    let bytes = spec.bytes.map(|b| b.to_string()).unwrap_or_default();
    let h = fnv(&[
        path.as_bytes(),
        spec.scope.as_str().as_bytes(),
        if dups { b"dups=y" } else { b"dups=n" },
        bytes.as_bytes(),
    ]);
    format!("W/\"{}.car.{h:016x}\"", spec.root)
}

fn set(r: &mut Response<Body>, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

/// `attachment; filename="…"`, with an ASCII fallback and RFC 8187's UTF-8 form.
fn disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if ascii == name {
        format!("attachment; filename=\"{name}\"")
    } else {
        let encoded =
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
    }
}

/// Serves one parsed `/ipfs/` request.
pub(crate) async fn serve(shared: &Shared, req: IpfsRequest) -> Response<Body> {
    let root = req.spec.root;
    if req.only_if_cached {
        match shared.blocks.has(&root) {
            Ok(true) => {}
            _ => {
                return text(
                    StatusCode::PRECONDITION_FAILED,
                    "not in this gateway's store",
                );
            }
        }
    }
    if let Err(response) = ensure_root(shared, &root).await {
        return response;
    }
    let mut response = match req.format {
        Format::Raw => raw(shared, &req).await,
        Format::Car { dups } => car_response(shared, &req, dups).await,
    };
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        set(&mut response, header::CACHE_CONTROL, IMMUTABLE);
        set(
            &mut response,
            header::HeaderName::from_static("x-ipfs-path"),
            &format!(
                "/ipfs/{root}{}",
                req.spec
                    .path
                    .iter()
                    .map(|s| format!("/{s}"))
                    .collect::<String>()
            ),
        );
        if let Some(location) = &req.content_location {
            set(&mut response, header::CONTENT_LOCATION, location);
        }
    }
    if req.head {
        return head_only(response);
    }
    response
}

async fn raw(shared: &Shared, req: &IpfsRequest) -> Response<Body> {
    let root = req.spec.root;
    let blocks = Arc::clone(&shared.blocks);
    let data = match tokio::task::spawn_blocking(move || blocks.get_verified(&root)).await {
        Ok(Ok(Some(d))) => d,
        Ok(Ok(None)) => {
            return text(
                StatusCode::NOT_FOUND,
                &format!("{root} is not available here"),
            );
        }
        Ok(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    if data.len() as u64 > shared.config.max_raw_block {
        return text(
            StatusCode::GONE,
            &format!(
                "the block is {} bytes, more than this gateway serves as a raw block ({})",
                data.len(),
                shared.config.max_raw_block
            ),
        );
    }
    let etag = format!("\"{root}.raw\"");
    let mut r = Response::new(Body::empty());
    set(&mut r, header::ETAG, &etag);
    set(&mut r, header::CONTENT_TYPE, RAW_TYPE);
    set(&mut r, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(&mut r, header::ACCEPT_RANGES, "bytes");
    set(
        &mut r,
        header::HeaderName::from_static("x-ipfs-roots"),
        &root.to_string(),
    );
    let name = req
        .filename
        .clone()
        .unwrap_or_else(|| format!("{root}.bin"));
    set(&mut r, header::CONTENT_DISPOSITION, &disposition(&name));
    if request::none_match(req.if_none_match.as_deref(), &etag) {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        return r;
    }
    respond_range(
        r,
        Bytes::from(data),
        req.range.as_deref(),
        req.if_range.as_deref(),
        &etag,
    )
}

/// Fills `r` with all of `data`, or the part a `Range` asks for (206, 416).
pub(crate) fn respond_range(
    mut r: Response<Body>,
    data: Bytes,
    range_header: Option<&str>,
    if_range: Option<&str>,
    etag: &str,
) -> Response<Body> {
    let len = data.len() as u64;
    let parsed = range_header
        .filter(|_| range::if_range_matches(if_range, etag))
        .and_then(range::parse);
    match range::resolve(parsed, len) {
        Resolved::Full => {
            set(&mut r, header::CONTENT_LENGTH, &len.to_string());
            *r.body_mut() = Body::full(data);
        }
        Resolved::Partial { start, end } => {
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            set(
                &mut r,
                header::CONTENT_RANGE,
                &format!("bytes {start}-{end}/{len}"),
            );
            set(
                &mut r,
                header::CONTENT_LENGTH,
                &(end - start + 1).to_string(),
            );
            *r.body_mut() = Body::full(data.slice(start as usize..=end as usize));
        }
        Resolved::Unsatisfiable => {
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            set(&mut r, header::CONTENT_RANGE, &format!("bytes */{len}"));
            set(&mut r, header::CONTENT_LENGTH, "0");
        }
    }
    r
}

async fn car_response(shared: &Shared, req: &IpfsRequest, dups: bool) -> Response<Body> {
    let spec = req.spec.clone();
    let etag = car_etag(&spec, dups);
    let blocks = Arc::clone(&shared.blocks);
    let (head_tx, head_rx) = tokio::sync::oneshot::channel();
    let (tx, rx) = mpsc::channel::<Result<Bytes, BodyError>>(shared.config.read_ahead.max(1) * 2);
    let streaming = !req.head && !request::none_match(req.if_none_match.as_deref(), &etag);
    let spec_for_task = spec.clone();
    let rate = shared.config.max_bytes_per_second;
    // One blocking task resolves the path, reports the outcome, then (for GET) streams.
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let mut sent = 0u64;
        let mut producer = match CarProducer::new(blocks, &spec_for_task, dups) {
            Ok(p) => p,
            Err(e) => {
                let _ = head_tx.send(Err(e));
                return;
            }
        };
        let _ = head_tx.send(Ok(producer.roots().to_vec()));
        if !streaming {
            return;
        }
        if tx
            .blocking_send(Ok(car::header(&[spec_for_task.root])))
            .is_err()
        {
            return;
        }
        loop {
            match producer.next_section() {
                Ok(Some((cid, data))) => {
                    if rate > 0 {
                        // Hold the block back until the rate allows it.
                        let due = std::time::Duration::from_secs_f64(sent as f64 / rate as f64);
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            std::thread::sleep(wait);
                        }
                        sent += data.len() as u64;
                    }
                    let head = car::section_head(&cid, data.len());
                    if tx.blocking_send(Ok(head)).is_err() || tx.blocking_send(Ok(data)).is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "CAR stream ends early");
                    let _ = tx.blocking_send(Err(BodyError::Failed(e.to_string())));
                    return;
                }
            }
        }
    });
    let roots = match head_rx.await {
        Ok(Ok(roots)) => roots,
        Ok(Err(e)) => return text(e.status(), &e.to_string()),
        Err(_) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the CAR producer stopped",
            );
        }
    };
    let mut r = Response::new(Body::empty());
    set(
        &mut r,
        header::CONTENT_TYPE,
        &format!(
            "{CAR_TYPE}; version=1; order=dfs; dups={}",
            if dups { "y" } else { "n" }
        ),
    );
    set(&mut r, header::ETAG, &etag);
    set(&mut r, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(&mut r, header::ACCEPT_RANGES, "none");
    let roots_text: Vec<String> = roots.iter().map(Cid::to_string).collect();
    set(
        &mut r,
        header::HeaderName::from_static("x-ipfs-roots"),
        &roots_text.join(","),
    );
    let name = req
        .filename
        .clone()
        .unwrap_or_else(|| match spec.path.last() {
            Some(last) => format!("{}_{last}.car", spec.root),
            None => format!("{}.car", spec.root),
        });
    set(&mut r, header::CONTENT_DISPOSITION, &disposition(&name));
    if !streaming && !req.head {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        return r;
    }
    *r.body_mut() = Body::stream(rx);
    r
}
