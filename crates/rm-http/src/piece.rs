//! `/piece/{pieceCid}`: a piece's unpadded bytes (its data and zero fill, as the sector
//! holds them once Fr32 padding is removed), with single-range `Range` requests.
//!
//! A piece is unsealed once into a cache file however many requests ask for it at once:
//! the first request starts the unseal, every request (the first included) reads the file
//! as the unseal writes it, waiting only for the bytes of its own range. The length is the
//! deal's padded size unpadded, known before anything is unsealed, so `HEAD` and
//! `Content-Length` never wait. The cache keeps at most its byte budget of finished
//! pieces, dropping the least recently used.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cid::Cid;
use http::{HeaderValue, Response, StatusCode, header};
use rm_unseal::{PaddedPieceSize, PieceInfo, Unsealer};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

use crate::Error;
use crate::body::{Body, BodyError};
use crate::range::{self, Resolved};
use crate::request::{self, PieceRequest};
use crate::server::{Config, head_only, text};

/// Bytes read per chunk from the unsealer and from the cache file.
const CHUNK: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Progress {
    Written(u64),
    Done,
    Failed(String),
}

struct Entry {
    path: PathBuf,
    len: u64,
    progress: watch::Receiver<Progress>,
    last_used: AtomicU64,
}

/// Unsealed pieces on disk, one unseal per piece (see the module docs).
#[derive(Clone)]
pub struct PieceCache {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    unsealer: Arc<Unsealer>,
    max_bytes: u64,
    entries: Mutex<HashMap<Cid, Arc<Entry>>>,
    clock: AtomicU64,
    unseals: AtomicU64,
}

impl std::fmt::Debug for PieceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceCache")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// The unpadded length of a piece, from its first deal with a valid size.
fn piece_len(info: &PieceInfo) -> Option<u64> {
    info.deals
        .iter()
        .find_map(|d| PaddedPieceSize::new(d.length).ok())
        .map(|p| p.unpadded().get())
}

impl PieceCache {
    /// A cache in `dir` (created), unsealing with `unsealer`, keeping at most `max_bytes`.
    pub fn new(dir: PathBuf, unsealer: Arc<Unsealer>, max_bytes: u64) -> Result<Self, Error> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                unsealer,
                max_bytes,
                entries: Mutex::new(HashMap::new()),
                clock: AtomicU64::new(0),
                unseals: AtomicU64::new(0),
            }),
        })
    }

    /// Unseals started so far (one per piece while it stays cached).
    pub fn unseals(&self) -> u64 {
        self.inner.unseals.load(Ordering::Relaxed)
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Cid, Arc<Entry>>> {
        self.inner.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The piece's length, without unsealing it.
    fn info(&self, piece: &Cid) -> Result<(PieceInfo, u64), rm_unseal::Error> {
        let info = self.inner.unsealer.piece_store().get_piece_info(piece)?;
        let len = piece_len(&info).ok_or(rm_unseal::Error::NoSectors)?;
        Ok((info, len))
    }

    /// The cache entry of `piece`, starting its unseal if nobody has.
    fn open(&self, piece: &Cid, info: PieceInfo, len: u64) -> Arc<Entry> {
        let now = self.inner.clock.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.entries();
        if let Some(e) = entries.get(piece)
            && !matches!(*e.progress.borrow(), Progress::Failed(_))
        {
            e.last_used.store(now, Ordering::Relaxed);
            return Arc::clone(e);
        }
        let path = self.inner.dir.join(format!("{piece}.unsealed"));
        let (tx, rx) = watch::channel(Progress::Written(0));
        let entry = Arc::new(Entry {
            path: path.clone(),
            len,
            progress: rx,
            last_used: AtomicU64::new(now),
        });
        entries.insert(*piece, Arc::clone(&entry));
        self.evict(&mut entries);
        drop(entries);
        self.inner.unseals.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            if let Err(e) = unseal_into(&inner.unsealer, &info, &path, len, &tx).await {
                tracing::warn!(piece = %info.piece_cid, error = %e, "unsealing for /piece/ failed");
                let _ = tx.send(Progress::Failed(e));
            }
        });
        entry
    }

    /// Drops finished entries nobody reads, least recently used first, beyond the budget.
    fn evict(&self, entries: &mut HashMap<Cid, Arc<Entry>>) {
        let mut total: u64 = entries.values().map(|e| e.len).sum();
        if total <= self.inner.max_bytes {
            return;
        }
        let mut idle: Vec<(u64, Cid)> = entries
            .iter()
            .filter(|(_, e)| Arc::strong_count(e) == 1 && *e.progress.borrow() == Progress::Done)
            .map(|(c, e)| (e.last_used.load(Ordering::Relaxed), *c))
            .collect();
        idle.sort();
        for (_, cid) in idle {
            if total <= self.inner.max_bytes {
                break;
            }
            if let Some(e) = entries.remove(&cid) {
                total -= e.len;
                let _ = std::fs::remove_file(&e.path);
            }
        }
    }

    /// Serves one parsed `/piece/` request.
    pub(crate) async fn serve(&self, req: PieceRequest, _config: &Config) -> Response<Body> {
        let cache = self.clone();
        let piece = req.piece;
        let found = tokio::task::spawn_blocking(move || cache.info(&piece)).await;
        let (info, len) = match found {
            Ok(Ok(x)) => x,
            Ok(Err(e)) if e.is_not_found() || matches!(e, rm_unseal::Error::NoSectors) => {
                return text(StatusCode::NOT_FOUND, &format!("piece {piece} is not here"));
            }
            Ok(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let etag = format!("\"{piece}\"");
        let mut r = Response::new(Body::empty());
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(crate::ipfs::IMMUTABLE),
        );
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{piece}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        if request::none_match(req.if_none_match.as_deref(), &etag) {
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            return r;
        }
        let parsed = req
            .range
            .as_deref()
            .filter(|_| range::if_range_matches(req.if_range.as_deref(), &etag))
            .and_then(range::parse);
        let (start, end) = match range::resolve(parsed, len) {
            Resolved::Full => (0, len.saturating_sub(1)),
            Resolved::Partial { start, end } => {
                *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                (start, end)
            }
            Resolved::Unsatisfiable => {
                *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                return r;
            }
        };
        let count = if len == 0 { 0 } else { end - start + 1 };
        if let Ok(v) = HeaderValue::from_str(&count.to_string()) {
            r.headers_mut().insert(header::CONTENT_LENGTH, v);
        }
        if req.head || count == 0 {
            return head_only(r);
        }
        let entry = self.open(&piece, info, len);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(stream_range(entry, start, end, tx));
        *r.body_mut() = Body::stream(rx);
        r
    }
}

/// Unseals `info` into `path`, reporting each chunk written.
async fn unseal_into(
    unsealer: &Unsealer,
    info: &PieceInfo,
    path: &std::path::Path,
    len: u64,
    progress: &watch::Sender<Progress>,
) -> Result<(), String> {
    let mut reader = unsealer
        .unseal_piece(info)
        .await
        .map_err(|e| e.to_string())?;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; CHUNK];
    let mut written = 0u64;
    use tokio::io::AsyncWriteExt;
    while written < len {
        let want = CHUNK.min((len - written) as usize);
        let n = reader
            .read(&mut buf[..want])
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("the sector gave {written} of {len} bytes"));
        }
        file.write_all(&buf[..n]).await.map_err(|e| e.to_string())?;
        file.flush().await.map_err(|e| e.to_string())?;
        written += n as u64;
        let _ = progress.send(Progress::Written(written));
    }
    let _ = progress.send(Progress::Done);
    Ok(())
}

/// Sends bytes `start..=end` of an entry's file as the unseal makes them available.
async fn stream_range(
    entry: Arc<Entry>,
    start: u64,
    end: u64,
    tx: mpsc::Sender<Result<Bytes, BodyError>>,
) {
    let mut progress = entry.progress.clone();
    let mut pos = start;
    while pos <= end {
        let available = loop {
            let state = progress.borrow_and_update().clone();
            match state {
                Progress::Done => break entry.len,
                Progress::Written(n) if n > pos => break n,
                Progress::Failed(e) => {
                    let _ = tx.send(Err(BodyError::Failed(e))).await;
                    return;
                }
                Progress::Written(_) => {
                    if progress.changed().await.is_err() {
                        // The unseal task is gone: Done or Failed was its last word.
                        if *progress.borrow() == Progress::Done {
                            break entry.len;
                        }
                        let _ = tx
                            .send(Err(BodyError::Failed("the unseal stopped".into())))
                            .await;
                        return;
                    }
                }
            }
        };
        let n = (CHUNK as u64).min(available - pos).min(end + 1 - pos) as usize;
        let path = entry.path.clone();
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            use std::os::unix::fs::FileExt;
            let file = std::fs::File::open(path)?;
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, pos)?;
            Ok(buf)
        })
        .await;
        match read {
            Ok(Ok(buf)) => {
                pos += buf.len() as u64;
                if tx.send(Ok(Bytes::from(buf))).await.is_err() {
                    return;
                }
            }
            Ok(Err(e)) => {
                let _ = tx.send(Err(BodyError::Failed(e.to_string()))).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(BodyError::Failed(e.to_string()))).await;
                return;
            }
        }
    }
}
