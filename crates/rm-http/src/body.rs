//! The response body: empty, one buffer, or a bounded stream of chunks under a deadline,
//! carrying the request's admission permits until it is finished or dropped.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::mpsc;

/// Why a streamed body ended early (the connection is then closed: the client sees a
/// truncated response, as the trustless-gateway spec prescribes for failures mid-stream).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The whole exchange took longer than the request timeout.
    #[error("the response took longer than {0:?}")]
    Deadline(Duration),
    /// Producing the body failed (a missing block, a failed read).
    #[error("{0}")]
    Failed(String),
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Result<Bytes, BodyError>>),
}

/// A response body (see the module docs).
pub struct Body {
    kind: Kind,
    deadline: Option<(Pin<Box<tokio::time::Sleep>>, Duration)>,
    /// An error held back briefly so the bytes before it reach the socket first.
    failing: Option<(BodyError, Pin<Box<tokio::time::Sleep>>)>,
    guards: Vec<Box<dyn Send + Sync>>,
}

/// How long an error waits behind the bytes already handed to the connection.
const DRAIN: Duration = Duration::from_millis(20);

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

impl Body {
    /// No body.
    pub fn empty() -> Self {
        Self {
            kind: Kind::Empty,
            deadline: None,
            failing: None,
            guards: Vec::new(),
        }
    }

    /// One buffer.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self {
            kind: Kind::Full(Some(bytes.into())),
            deadline: None,
            failing: None,
            guards: Vec::new(),
        }
    }

    /// Chunks from a channel; the sender ends the body by dropping it.
    pub fn stream(rx: mpsc::Receiver<Result<Bytes, BodyError>>) -> Self {
        Self {
            kind: Kind::Stream(rx),
            deadline: None,
            failing: None,
            guards: Vec::new(),
        }
    }

    /// Ends the body with [`BodyError::Deadline`] after `after`.
    pub fn with_deadline(mut self, after: Duration) -> Self {
        self.deadline = Some((Box::pin(tokio::time::sleep(after)), after));
        self
    }

    /// Keeps `guard` alive as long as the body.
    pub fn with_guard(mut self, guard: impl Send + Sync + 'static) -> Self {
        self.guards.push(Box::new(guard));
        self
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some((_, sleep)) = &mut this.failing {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let (e, _) = this.failing.take().expect("checked above");
            return Poll::Ready(Some(Err(e)));
        }
        if let Some((sleep, after)) = &mut this.deadline
            && sleep.as_mut().poll(cx).is_ready()
            && matches!(this.kind, Kind::Stream(_))
        {
            let after = *after;
            this.kind = Kind::Empty;
            return Poll::Ready(Some(Err(BodyError::Deadline(after))));
        }
        match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(rx) => match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Poll::Ready(Some(Err(e))) => {
                    this.kind = Kind::Empty;
                    let mut sleep = Box::pin(tokio::time::sleep(DRAIN));
                    let _ = sleep.as_mut().poll(cx);
                    this.failing = Some((e, sleep));
                    Poll::Pending
                }
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => self.failing.is_none(),
            Kind::Full(b) => b.is_none(),
            Kind::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.kind {
            Kind::Empty => http_body::SizeHint::with_exact(0),
            Kind::Full(Some(b)) => http_body::SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => http_body::SizeHint::with_exact(0),
            Kind::Stream(_) => http_body::SizeHint::default(),
        }
    }
}

use std::future::Future;
