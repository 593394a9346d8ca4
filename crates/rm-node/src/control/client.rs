//! The control socket's client, and [`Session`]: a command's way to a node, through the
//! running server when there is one, else by opening the home itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::api::{
    AskChange, AskView, DealView, DealsRequest, FundRequest, FundView, ImportRequest, ImportView,
    PieceRemovedView, PieceView, PiecesRequest, PiecesView, QueryRequest, QueryView, Reply,
    Request,
};
use super::ops::{Operations, ProgressSink};
use super::server::read_line;
use super::{
    CONNECT_TIMEOUT, ControlError, MAX_REPLY_BYTES, REPLY_TIMEOUT, WRITE_TIMEOUT, check_path,
};
use crate::{Config, Error, Home, Node};

/// One request's connection to a running server.
#[derive(Debug)]
pub struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Connection {
    /// Connects to the control socket at `path`: `Ok(None)` when no server listens there
    /// (no socket, or one left by a server that is gone).
    pub async fn connect(path: &Path) -> Result<Option<Connection>, ControlError> {
        check_path(path)?;
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(path)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None);
            }
            Ok(Err(e)) => return Err(ControlError::Io(e)),
            Err(_) => return Err(ControlError::Timeout("connecting to the control socket")),
        };
        let (r, w) = stream.into_split();
        Ok(Some(Connection {
            reader: BufReader::new(r),
            writer: w,
        }))
    }

    /// Sends the request (one line).
    pub async fn send(&mut self, request: &Request) -> Result<(), ControlError> {
        let mut line =
            serde_json::to_vec(request).map_err(|e| ControlError::Encode(e.to_string()))?;
        line.push(b'\n');
        tokio::time::timeout(WRITE_TIMEOUT, self.writer.write_all(&line))
            .await
            .map_err(|_| ControlError::Timeout("sending the request"))?
            .map_err(ControlError::Io)
    }

    /// The next reply line; `None` when the server closed the connection. Waits at most
    /// `timeout` (`None`: as long as it takes, for a followed listing).
    pub async fn next(
        &mut self,
        timeout: Option<std::time::Duration>,
    ) -> Result<Option<Reply>, ControlError> {
        let read = read_line(&mut self.reader, MAX_REPLY_BYTES);
        let line = match timeout {
            Some(t) => tokio::time::timeout(t, read)
                .await
                .map_err(|_| ControlError::Timeout("waiting for the server's reply"))??,
            None => read.await?,
        };
        if line.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&line)
            .map(Some)
            .map_err(|e| ControlError::BadReply(e.to_string()))
    }

    /// Reads replies up to the result, giving progress lines to `progress`.
    async fn result<T: DeserializeOwned>(
        &mut self,
        mut progress: Option<&mut ProgressSink>,
    ) -> Result<T, ControlError> {
        loop {
            match self.next(Some(REPLY_TIMEOUT)).await? {
                Some(Reply::Done(value)) => {
                    return serde_json::from_value(value)
                        .map_err(|e| ControlError::BadReply(e.to_string()));
                }
                Some(Reply::Error(e)) => return Err(ControlError::Server(Box::new(e))),
                Some(Reply::Progress(p)) => {
                    if let Some(sink) = progress.as_mut() {
                        sink(p);
                    }
                }
                Some(other) => {
                    return Err(ControlError::BadReply(format!("unexpected {other:?}")));
                }
                None => return Err(ControlError::Closed),
            }
        }
    }
}

/// How a command reaches its node: through the running server, or by opening the home.
///
/// Every method gives the same result either way. Adding an operation: a variant of
/// [`Request`] and its types (`api.rs`), a method of [`Operations`] (`ops.rs`), one arm
/// in the server's `run` (`server.rs`), and a method here that sends the request or
/// calls the operation.
#[derive(Debug)]
pub enum Session {
    /// `rm serve` runs on the home: requests go to its control socket.
    Served(PathBuf),
    /// No server: the command opened the node.
    Local(Box<Operations>),
}

impl Session {
    /// Connects to the server of `home`, or opens its node (with `config`) when none
    /// runs. [`Error::InUse`] when the home is open in another process that does not
    /// serve (another command).
    pub async fn open(home: &Home, config: Config) -> Result<Session, Error> {
        let path = home.control_socket();
        if Connection::connect(&path).await?.is_some() {
            return Ok(Session::Served(path));
        }
        let node = Node::open_home(home, &[]).await?;
        Ok(Session::Local(Box::new(Operations::local(
            Arc::new(node),
            config,
        ))))
    }

    /// Whether requests go to a running server.
    pub fn is_served(&self) -> bool {
        matches!(self, Session::Served(_))
    }

    async fn call<T: DeserializeOwned>(
        path: &Path,
        request: Request,
        progress: Option<&mut ProgressSink>,
    ) -> Result<T, Error> {
        let mut c = Connection::connect(path).await?.ok_or(ControlError::Gone)?;
        c.send(&request).await?;
        Ok(c.result(progress).await?)
    }

    /// [`Operations::ask`].
    pub async fn ask(&self, change: AskChange) -> Result<AskView, Error> {
        match self {
            Session::Served(p) => Self::call(p, Request::Ask(change), None).await,
            Session::Local(ops) => ops.ask(change).await,
        }
    }

    /// [`Operations::import`]; `request.path` is made absolute first.
    pub async fn import(
        &self,
        mut request: ImportRequest,
        mut progress: ProgressSink,
    ) -> Result<ImportView, Error> {
        request.path = std::path::absolute(&request.path)?;
        match self {
            Session::Served(p) => {
                Self::call(p, Request::Import(request), Some(&mut progress)).await
            }
            Session::Local(ops) => ops.import(request, progress).await,
        }
    }

    /// [`Operations::deals`].
    pub async fn deals(&self, request: DealsRequest) -> Result<Vec<DealView>, Error> {
        let request = DealsRequest {
            follow: false,
            ..request
        };
        match self {
            Session::Local(ops) => ops.deals(&request).await,
            Session::Served(p) => {
                let mut c = Connection::connect(p).await?.ok_or(ControlError::Gone)?;
                c.send(&Request::Deals(request)).await?;
                let mut deals = Vec::new();
                loop {
                    match c.next(Some(REPLY_TIMEOUT)).await? {
                        Some(Reply::Deal(d)) => deals.push(d),
                        Some(Reply::Listed { .. }) => {}
                        Some(Reply::Done(_)) => return Ok(deals),
                        Some(Reply::Error(e)) => {
                            return Err(ControlError::Server(Box::new(e)).into());
                        }
                        Some(other) => {
                            return Err(
                                ControlError::BadReply(format!("unexpected {other:?}")).into()
                            );
                        }
                        None => return Err(ControlError::Closed.into()),
                    }
                }
            }
        }
    }

    /// Lists deals, then gives each status change to `on_change` until the server stops
    /// (`Ok(())`); `on_listed` is called once, after the listing. Only a served home has
    /// changes: a local session lists and returns [`ControlError::NotServing`].
    pub async fn follow_deals(
        &self,
        request: DealsRequest,
        mut on_deal: impl FnMut(DealView),
        mut on_listed: impl FnMut(u64),
        mut on_lagged: impl FnMut(u64),
    ) -> Result<(), Error> {
        let path = match self {
            Session::Local(ops) => {
                let deals = ops.deals(&request).await?;
                let n = deals.len() as u64;
                deals.into_iter().for_each(&mut on_deal);
                on_listed(n);
                return Err(ControlError::NotServing.into());
            }
            Session::Served(p) => p,
        };
        let mut c = Connection::connect(path).await?.ok_or(ControlError::Gone)?;
        c.send(&Request::Deals(DealsRequest {
            follow: true,
            ..request
        }))
        .await?;
        loop {
            match c.next(None).await? {
                Some(Reply::Deal(d)) => on_deal(d),
                Some(Reply::Listed { count }) => on_listed(count),
                Some(Reply::Lagged { missed }) => on_lagged(missed),
                Some(Reply::Done(_)) | None => return Ok(()),
                Some(Reply::Error(e)) => return Err(ControlError::Server(Box::new(e)).into()),
                Some(other) => {
                    return Err(ControlError::BadReply(format!("unexpected {other:?}")).into());
                }
            }
        }
    }

    /// [`Operations::fund`].
    pub async fn fund(&self, request: FundRequest) -> Result<FundView, Error> {
        match self {
            Session::Served(p) => Self::call(p, Request::Fund(request), None).await,
            Session::Local(ops) => ops.fund(request).await,
        }
    }

    /// [`Operations::query`].
    pub async fn query(&self, request: QueryRequest) -> Result<QueryView, Error> {
        match self {
            Session::Served(p) => Self::call(p, Request::Query(request), None).await,
            Session::Local(ops) => ops.query(request).await,
        }
    }

    /// [`Operations::pieces`].
    pub async fn pieces(&self) -> Result<PiecesView, Error> {
        match self {
            Session::Served(p) => {
                Self::call(p, Request::Pieces(PiecesRequest::default()), None).await
            }
            Session::Local(ops) => ops.pieces().await,
        }
    }

    /// [`Operations::piece`].
    pub async fn piece(&self, piece_cid: &str) -> Result<PieceView, Error> {
        match self {
            Session::Served(p) => {
                let request = PiecesRequest {
                    show: Some(piece_cid.to_owned()),
                    remove: None,
                };
                Self::call(p, Request::Pieces(request), None).await
            }
            Session::Local(ops) => ops.piece(piece_cid).await,
        }
    }

    /// [`Operations::remove_piece`].
    pub async fn remove_piece(&self, piece_cid: &str) -> Result<PieceRemovedView, Error> {
        match self {
            Session::Served(p) => {
                let request = PiecesRequest {
                    show: None,
                    remove: Some(piece_cid.to_owned()),
                };
                Self::call(p, Request::Pieces(request), None).await
            }
            Session::Local(ops) => ops.remove_piece(piece_cid).await,
        }
    }

    /// Closes a local node (its provider, its host); nothing for a served one.
    pub async fn close(self) {
        if let Session::Local(ops) = self {
            ops.close().await;
        }
    }
}
