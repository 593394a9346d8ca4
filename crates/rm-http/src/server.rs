//! The provider: an HTTP/1.1 server (hyper on tokio) answering `/ipfs/` as a Trustless
//! Gateway and `/piece/` with Range, from the node's blockstore, piece store and unsealer.
//!
//! Every request is admitted against two limits before anything is read — requests at
//! once per client IP (429 with `Retry-After`) and in all (503) — and holds its permits
//! until its body is finished or dropped. Request headers must arrive within
//! [`Config::header_timeout`]; the whole exchange, body included, must end within
//! [`Config::request_timeout`] or the connection is closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rm_blockio::Blockstore;
use rm_unseal::Unsealer;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::body::Body;
use crate::piece::PieceCache;
use crate::request::{self, Route};
use crate::{Error, ipfs};

/// The server's limits and settings; every one has a default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Requests served at once, in all (default 1024); more get 503.
    pub max_concurrent_requests: usize,
    /// Requests served at once per client IP (default 64); more get 429.
    pub max_requests_per_ip: usize,
    /// Open connections (default 4096); more are closed at once.
    pub max_connections: usize,
    /// Time for a request's headers to arrive, including the wait on an idle kept-alive
    /// connection (default 10 s).
    pub header_timeout: Duration,
    /// Time for a whole exchange: finding and unsealing the data, and sending all of it
    /// (default 30 min).
    pub request_timeout: Duration,
    /// Path segments after the CID (default 64).
    pub max_path_depth: usize,
    /// Largest raw block served as `application/vnd.ipld.raw` (default 2 MiB); larger
    /// ones get 410.
    pub max_raw_block: u64,
    /// Blocks read ahead of the connection per CAR response (default 16).
    pub read_ahead: usize,
    /// Where unsealed pieces are kept for `/piece/` (default: a directory in the system
    /// temporary directory).
    pub piece_cache_dir: Option<PathBuf>,
    /// Bytes of unsealed pieces kept for `/piece/` (default 8 GiB); the least recently
    /// used are removed beyond it.
    pub piece_cache_bytes: u64,
    /// Bytes per second sent on one CAR response; 0 (the default) is no limit.
    pub max_bytes_per_second: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 1024,
            max_requests_per_ip: 64,
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30 * 60),
            max_path_depth: 64,
            max_raw_block: 2 << 20,
            read_ahead: 16,
            piece_cache_dir: None,
            piece_cache_bytes: 8 << 30,
            max_bytes_per_second: 0,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) blocks: Arc<dyn Blockstore>,
    pub(crate) unsealer: Option<Arc<Unsealer>>,
    pub(crate) pieces: Option<PieceCache>,
    pub(crate) config: Config,
    permits: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// The gateway: what the server answers with, usable without a socket
/// ([`Gateway::handle`]).
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// One request's admission: a global permit and a per-IP slot, released on drop.
struct Admission {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = Response::new(Body::full(format!("{message}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

impl Gateway {
    /// A gateway serving the blocks of `blocks` (a provider's blockstore).
    pub fn new(blocks: Arc<dyn Blockstore>, config: Config) -> Self {
        Self::build(blocks, None, config)
    }

    /// A gateway that also unseals: `/ipfs/` loads the piece holding a CID into `blocks`
    /// when it is not there yet, and `/piece/` serves pieces.
    pub fn with_unsealer(
        blocks: Arc<dyn Blockstore>,
        unsealer: Arc<Unsealer>,
        config: Config,
    ) -> Result<Self, Error> {
        let dir = config
            .piece_cache_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("rm-http-pieces"));
        let cache = PieceCache::new(dir, Arc::clone(&unsealer), config.piece_cache_bytes)?;
        let mut gateway = Self::build(blocks, Some(unsealer), config);
        if let Some(shared) = Arc::get_mut(&mut gateway.shared) {
            shared.pieces = Some(cache);
        }
        Ok(gateway)
    }

    fn build(blocks: Arc<dyn Blockstore>, unsealer: Option<Arc<Unsealer>>, config: Config) -> Self {
        Self {
            shared: Arc::new(Shared {
                blocks,
                unsealer,
                pieces: None,
                permits: Arc::new(Semaphore::new(config.max_concurrent_requests.max(1))),
                per_ip: Arc::new(Mutex::new(HashMap::new())),
                config,
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    fn admit(&self, ip: IpAddr) -> Result<Admission, Box<Response<Body>>> {
        {
            let mut map = self.shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= self.shared.config.max_requests_per_ip {
                return Err(Box::new(text(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many requests at once from this address",
                )));
            }
            *n += 1;
        }
        let release = |shared: &Shared| {
            let mut map = shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        };
        match Arc::clone(&self.shared.permits).try_acquire_owned() {
            Ok(permit) => Ok(Admission {
                _permit: permit,
                ip,
                per_ip: Arc::clone(&self.shared.per_ip),
            }),
            Err(_) => {
                release(&self.shared);
                Err(Box::new(text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the gateway is serving as many requests as it can",
                )))
            }
        }
    }

    /// Answers one request from `client` (the HTTP server calls this for each request).
    pub async fn handle<B>(&self, req: Request<B>, client: IpAddr) -> Response<Body> {
        let admission = match self.admit(client) {
            Ok(a) => a,
            Err(refused) => return *refused,
        };
        let timeout = self.shared.config.request_timeout;
        let route = request::parse(
            req.method(),
            req.uri().path(),
            req.uri().query(),
            req.headers(),
            self.shared.config.max_path_depth,
        );
        let work = async {
            match route {
                Err(refusal) => text(refusal.status, &refusal.message),
                Ok(Route::Ipfs(r)) => ipfs::serve(&self.shared, *r).await,
                Ok(Route::Piece(r)) => match &self.shared.pieces {
                    Some(cache) => cache.serve(r, &self.shared.config).await,
                    None => text(StatusCode::NOT_FOUND, "this gateway serves no pieces"),
                },
            }
        };
        let response = match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => text(
                StatusCode::GATEWAY_TIMEOUT,
                "the data could not be made ready within the request timeout",
            ),
        };
        let (parts, body) = response.into_parts();
        Response::from_parts(parts, body.with_deadline(timeout).with_guard(admission))
    }

    /// Binds `addr` and serves until the returned [`Server`] is shut down or dropped.
    pub async fn bind(self, addr: SocketAddr) -> Result<Server, Error> {
        let listener = TcpListener::bind(addr).await.map_err(Error::Bind)?;
        let local = listener.local_addr().map_err(Error::Bind)?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(self, listener, stopped));
        Ok(Server {
            addr: local,
            stop,
            task: Some(task),
        })
    }
}

async fn accept_loop(gateway: Gateway, listener: TcpListener, mut stopped: watch::Receiver<bool>) {
    let connections = Arc::new(Semaphore::new(gateway.shared.config.max_connections.max(1)));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::debug!(%peer, "too many connections; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let mut stopped = stopped.clone();
        let header_timeout = gateway.shared.config.header_timeout;
        let request_timeout = gateway.shared.config.request_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let ip = peer.ip();
            // When the response in progress must be done by (0: none in progress).
            let busy = Arc::new(AtomicU64::new(0));
            let epoch = Instant::now();
            let in_service = Arc::clone(&busy);
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let gateway = gateway.clone();
                let busy = Arc::clone(&in_service);
                async move {
                    let due = epoch.elapsed() + request_timeout;
                    busy.store(due.as_millis().max(1) as u64, Ordering::Relaxed);
                    let guard = Busy(busy);
                    let (parts, body) = gateway.handle(req, ip).await.into_parts();
                    Ok::<_, std::convert::Infallible>(Response::from_parts(
                        parts,
                        body.with_guard(guard),
                    ))
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(64 << 10);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = overdue(&busy, epoch, request_timeout) => {
                    tracing::debug!(%peer, "a response outlived the request timeout; closing");
                }
                _ = stopped.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// Marks the connection idle again when its response body is done or dropped.
struct Busy(Arc<AtomicU64>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Resolves when the response in progress on a connection is past its deadline (a
/// reader too slow for the body to make progress never lets the body see its own).
async fn overdue(busy: &AtomicU64, epoch: Instant, timeout: Duration) {
    let tick = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        let due = busy.load(Ordering::Relaxed);
        if due != 0 && epoch.elapsed().as_millis() as u64 > due {
            return;
        }
    }
}

/// A running server; dropping it stops accepting connections.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// The address it listens on (with the port resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets requests in flight finish their current response, and waits
    /// for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// An empty body with headers only (HEAD), keeping `Content-Length`.
pub(crate) fn head_only(mut response: Response<Body>) -> Response<Body> {
    *response.body_mut() = Body::empty();
    response
}
