//! The control socket's server: accepts connections on `<home>/control.sock`, reads one
//! request from each under the limits of [`super`], runs it with [`Operations`] and writes
//! the reply lines.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::api::{ErrorReply, ImportProgress, Reply, Request};
use super::ops::{Change, Operations};
use super::{
    ControlError, MAX_CONNECTIONS, MAX_REQUEST_BYTES, PROGRESS_INTERVAL, REQUEST_TIMEOUT,
    WRITE_TIMEOUT, check_path,
};
use crate::{Error, Home};

/// The running control server; [`ControlServer::shutdown`] stops it and removes the
/// socket.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl ControlServer {
    /// Listens on `home`'s control socket (mode 0600; a socket left by a process that
    /// died is replaced: the caller holds the home's database, so no server runs) and
    /// serves `ops`.
    pub async fn bind(home: &Home, ops: Arc<Operations>) -> Result<Self, Error> {
        let path = home.control_socket();
        check_path(&path)?;
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "removed a stale control socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ControlError::Io(e).into()),
        }
        let listener = UnixListener::bind(&path).map_err(ControlError::Io)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(ControlError::Io)?;
        let uid = std::fs::metadata(&path).map_err(ControlError::Io)?.uid();
        let task = tokio::spawn(accept(listener, ops, uid));
        Ok(ControlServer { path, task })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops serving (requests under way are dropped; an import on its blocking thread
    /// finishes) and removes the socket.
    pub fn shutdown(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn accept(listener: UnixListener, ops: Arc<Operations>, uid: u32) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Dropped with this task: every connection ends with the server.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "control: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let ops = Arc::clone(&ops);
        match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => {
                connections.spawn(async move {
                    let _permit = permit;
                    serve(stream, &ops, uid).await;
                });
            }
            Err(_) => {
                // Told why, within the write deadline, by a task not counted: the
                // answer is one short line.
                connections.spawn(async move {
                    let (_, mut w) = stream.into_split();
                    let _ = write(
                        &mut w,
                        &refusal("busy", "too many control connections; try again"),
                    )
                    .await;
                });
            }
        }
    }
}

fn refusal(kind: &str, message: impl Into<String>) -> Reply {
    Reply::Error(ErrorReply {
        kind: kind.into(),
        message: message.into(),
        causes: Vec::new(),
    })
}

fn failure(error: &Error) -> Reply {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    Reply::Error(ErrorReply {
        kind: "failed".into(),
        message: error.to_string(),
        causes,
    })
}

/// Writes one reply line within [`WRITE_TIMEOUT`].
async fn write<W: AsyncWrite + Unpin>(w: &mut W, reply: &Reply) -> Result<(), ControlError> {
    let mut line = serde_json::to_vec(reply).map_err(|e| ControlError::Encode(e.to_string()))?;
    line.push(b'\n');
    match tokio::time::timeout(WRITE_TIMEOUT, w.write_all(&line)).await {
        Ok(r) => r.map_err(ControlError::Io),
        Err(_) => Err(ControlError::Timeout("writing a reply")),
    }
}

/// Reads one request line of at most `cap` bytes (the newline may be left out at the end
/// of the stream).
pub(crate) async fn read_line<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    cap: usize,
) -> Result<Vec<u8>, ControlError> {
    let mut line = Vec::new();
    let n = r
        .take(cap as u64 + 1)
        .read_until(b'\n', &mut line)
        .await
        .map_err(ControlError::Io)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if n > cap {
        return Err(ControlError::TooLarge { limit: cap });
    }
    Ok(line)
}

async fn serve(stream: UnixStream, ops: &Operations, uid: u32) {
    let metrics = Arc::clone(&ops.node().metrics);
    let allowed = stream.peer_cred().map(|c| c.uid() == uid).unwrap_or(false);
    let (r, mut w) = stream.into_split();
    if !allowed {
        let _ = write(
            &mut w,
            &refusal("forbidden", "the control socket serves its owner only"),
        )
        .await;
        return;
    }
    let mut r = BufReader::new(r);
    let line =
        match tokio::time::timeout(REQUEST_TIMEOUT, read_line(&mut r, MAX_REQUEST_BYTES)).await {
            Ok(Ok(line)) => line,
            Ok(Err(ControlError::TooLarge { limit })) => {
                let message = format!("the request is larger than {limit} bytes");
                let _ = write(&mut w, &refusal("too_large", message)).await;
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "control: reading a request failed");
                return;
            }
            Err(_) => {
                let message = format!("no whole request within {} s", REQUEST_TIMEOUT.as_secs());
                let _ = write(&mut w, &refusal("timeout", message)).await;
                return;
            }
        };
    if line.is_empty() {
        // Closed without a request: a command checking that the server is there.
        return;
    }
    let request: Request = match serde_json::from_slice(&line) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("not a request: {e}");
            let _ = write(&mut w, &refusal("bad_request", message)).await;
            return;
        }
    };
    let op = request.op();
    let ok = run(request, ops, &mut r, &mut w).await;
    metrics.observe_control(op, ok);
}

/// Runs a request, writing its replies; returns whether it succeeded.
async fn run<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    request: Request,
    ops: &Operations,
    r: &mut BufReader<R>,
    w: &mut W,
) -> bool {
    let result = match request {
        Request::Ask(change) => done(ops.ask(change).await),
        Request::Fund(request) => done(ops.fund(request).await),
        Request::Query(request) => done(ops.query(request).await),
        Request::Pieces(request) => match (request.show, request.remove) {
            (None, None) => done(ops.pieces().await),
            (Some(cid), None) => done(ops.piece(&cid).await),
            (None, Some(cid)) => done(ops.remove_piece(&cid).await),
            (Some(_), Some(_)) => Err(Error::Request(
                "pieces: show or remove, not both".to_owned(),
            )),
        },
        Request::Import(request) => import(ops, request, w).await,
        Request::Deals(request) => {
            let follow = request.follow;
            let listed = match ops.deals(&request).await {
                Ok(deals) => deals,
                Err(e) => {
                    let _ = write(w, &failure(&e)).await;
                    return false;
                }
            };
            // Subscribed before the listing is written: no change falls in between.
            let changes = if follow { ops.follow() } else { None };
            let count = listed.len() as u64;
            for deal in listed {
                if write(w, &Reply::Deal(deal)).await.is_err() {
                    return false;
                }
            }
            if write(w, &Reply::Listed { count }).await.is_err() {
                return false;
            }
            match changes {
                Some(changes) => return follow_deals(changes, r, w).await,
                None => Ok(serde_json::Value::Null),
            }
        }
    };
    let reply = match &result {
        Ok(value) => Reply::Done(value.clone()),
        Err(e) => failure(e),
    };
    write(w, &reply).await.is_ok() && result.is_ok()
}

fn done<T: Serialize>(result: Result<T, Error>) -> Result<serde_json::Value, Error> {
    result.and_then(|v| {
        serde_json::to_value(v).map_err(|e| Error::Request(format!("encoding a reply: {e}")))
    })
}

/// Streams status changes until the client closes the connection or the provider stops.
async fn follow_deals<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut changes: super::ops::DealChanges,
    r: &mut BufReader<R>,
    w: &mut W,
) -> bool {
    let mut byte = [0u8; 1];
    loop {
        tokio::select! {
            // Anything the client sends, or its close, ends the stream.
            _ = r.read(&mut byte) => return true,
            change = changes.next() => {
                let reply = match change {
                    Some(Change::Deal(view)) => Reply::Deal(*view),
                    Some(Change::Lagged(missed)) => Reply::Lagged { missed },
                    None => return write(w, &Reply::Done(serde_json::Value::Null)).await.is_ok(),
                };
                if write(w, &reply).await.is_err() {
                    return false;
                }
            }
        }
    }
}

/// Runs an import, writing its progress at most every [`PROGRESS_INTERVAL`].
async fn import<W: AsyncWrite + Unpin>(
    ops: &Operations,
    request: super::api::ImportRequest,
    w: &mut W,
) -> Result<serde_json::Value, Error> {
    let (tx, mut rx) = tokio::sync::watch::channel::<Option<ImportProgress>>(None);
    let sink = Box::new(move |p: ImportProgress| {
        let _ = tx.send(Some(p));
    });
    let run = ops.import(request, sink);
    tokio::pin!(run);
    let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
    let mut client_gone = false;
    loop {
        tokio::select! {
            result = &mut run => return done(result),
            _ = tick.tick(), if !client_gone => {
                let latest = match rx.has_changed() {
                    Ok(true) => rx.borrow_and_update().clone(),
                    _ => None,
                };
                if let Some(p) = latest
                    && write(w, &Reply::Progress(p)).await.is_err()
                {
                    // The import goes on without an audience.
                    client_gone = true;
                }
            }
        }
    }
}
