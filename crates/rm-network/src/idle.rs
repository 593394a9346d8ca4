//! Inactivity deadlines for stream I/O.
//!
//! A deal stream carries messages of up to several MiB. A fixed deadline for a whole
//! message would fail every large response on a slow but healthy link, so reads and writes
//! of deal messages are bounded twice instead: the peer must make progress at least every
//! `idle` (a stalled peer is cut after that long), and a whole message may take at most
//! `total` (a peer trickling one byte at a time cannot hold a stream forever). The total
//! counts from the call, or, for a message the peer may rightly take long to start (a
//! payment after funding a channel), from its first byte
//! ([`Deadlines::with_total_from_first_byte`]): waiting for it is bounded by `idle` alone.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

/// How many idle periods one whole message may take.
pub(crate) const TOTAL_PER_IDLE: u32 = 10;

/// Wraps a stream for one message's read or write.
pub(crate) struct Deadlines<'a, S> {
    inner: &'a mut S,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    total_timer: Pin<Box<Sleep>>,
    /// Set until the first byte when the total counts from there.
    total_pending: Option<Duration>,
}

impl<'a, S> Deadlines<'a, S> {
    pub(crate) fn new(inner: &'a mut S, idle: Duration) -> Self {
        Self::with_total(inner, idle, idle * TOTAL_PER_IDLE)
    }

    /// Deadlines of `idle` between progress and `total` for the whole message.
    pub(crate) fn with_total(inner: &'a mut S, idle: Duration, total: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            idle,
            idle_timer: Box::pin(tokio::time::sleep_until(now + idle)),
            total_timer: Box::pin(tokio::time::sleep_until(now + total)),
            total_pending: None,
        }
    }

    /// Deadlines of `idle` between progress and `total` for the whole message, counted
    /// from its first byte.
    pub(crate) fn with_total_from_first_byte(
        inner: &'a mut S,
        idle: Duration,
        total: Duration,
    ) -> Self {
        let mut deadlines = Self::with_total(inner, idle, total);
        // Never before the idle deadline; armed for real by the first byte.
        let now = Instant::now();
        deadlines
            .total_timer
            .as_mut()
            .reset(now + idle.saturating_add(total));
        deadlines.total_pending = Some(total);
        deadlines
    }

    /// Counts a read or write of `n > 0` bytes as progress; a pending one checks the
    /// deadlines.
    fn observe(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match poll {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.expired(cx).map(Err),
        }
    }

    fn progressed(&mut self) {
        let now = Instant::now();
        self.idle_timer.as_mut().reset(now + self.idle);
        if let Some(total) = self.total_pending.take() {
            self.total_timer.as_mut().reset(now + total);
        }
    }

    /// `Ready(Err(TimedOut))` once a deadline passed; registers the waker otherwise.
    fn expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.idle_timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "peer made no progress",
            ));
        }
        if self.total_timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "message took too long",
            ));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlines<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut *this.inner).poll_read(cx, buf);
        this.observe(cx, poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlines<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut *this.inner).poll_write(cx, buf);
        this.observe(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut *this.inner).poll_flush(cx) {
            Poll::Pending => this.expired(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut *this.inner).poll_close(cx) {
            Poll::Pending => this.expired(cx).map(Err),
            ready => ready,
        }
    }
}

/// Whether `error` is a deadline of [`Deadlines`].
pub(crate) fn is_timeout(error: &crate::Error) -> bool {
    matches!(error, crate::Error::Io(e) if e.kind() == io::ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use futures::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Yields one byte per `period`, forever.
    struct Trickle {
        period: Duration,
        next: Pin<Box<Sleep>>,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let period = self.period;
            if self.next.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.next.as_mut().reset(Instant::now() + period);
            buf[0] = 0;
            Poll::Ready(Ok(1))
        }
    }

    fn trickle(period: Duration) -> Trickle {
        Trickle {
            period,
            next: Box::pin(tokio::time::sleep(period)),
        }
    }

    #[tokio::test]
    async fn slow_progress_is_fine_until_the_total_deadline() {
        // one byte every 10 ms with a 200 ms idle limit: progress keeps it alive ...
        let mut io = trickle(Duration::from_millis(10));
        let mut buf = [0u8; 8];
        let mut d = Deadlines::new(&mut io, Duration::from_millis(200));
        d.read_exact(&mut buf).await.unwrap();
        // ... but not beyond ten idle periods in all
        // (2 s in all; 400 more bytes would take another 4 s)
        let mut big = vec![0u8; 400];
        let err = d.read_exact(&mut big).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_stalled_peer_is_cut_after_the_idle_limit() {
        let mut io = trickle(Duration::from_secs(5));
        let mut buf = [0u8; 1];
        let start = Instant::now();
        let err = Deadlines::new(&mut io, Duration::from_millis(100))
            .read_exact(&mut buf)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(100) && waited < Duration::from_secs(4),
            "cut after {waited:?}"
        );
    }

    #[tokio::test]
    async fn the_total_can_count_from_the_first_byte() {
        let ms = Duration::from_millis;
        // The first byte after 300 ms, then one every 10 ms; idle limit 400 ms, total 200 ms.
        let late = || Trickle {
            period: ms(10),
            next: Box::pin(tokio::time::sleep(ms(300))),
        };
        let mut buf = [0u8; 5];
        // Counted from the call, the wait alone is over the total.
        let mut io = late();
        let err = Deadlines::with_total(&mut io, ms(400), ms(200))
            .read_exact(&mut buf)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // Counted from the first byte, the message is in time ...
        let mut io = late();
        let mut d = Deadlines::with_total_from_first_byte(&mut io, ms(400), ms(200));
        d.read_exact(&mut buf).await.unwrap();
        // ... and trickling on (1 s more) is still cut by the total.
        let mut big = vec![0u8; 100];
        let err = d.read_exact(&mut big).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn writes_that_progress_complete() {
        let mut sink = futures::io::Cursor::new(Vec::new());
        let mut d = Deadlines::new(&mut sink, Duration::from_millis(50));
        d.write_all(&[7u8; 1000]).await.unwrap();
        d.flush().await.unwrap();
        assert_eq!(sink.into_inner().len(), 1000);
    }
}
