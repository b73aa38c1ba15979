//! Busy-polling of an API connection between a response and the next request.
//!
//! Clients talk to the daemon in bursts of short sequential requests (the docker CLI sends
//! `HEAD /_ping` and then its call; compose and the SDKs send many in a row). Between two of
//! them the connection's task parks and its worker thread sleeps in `epoll_wait`; on a VM
//! whose idle CPUs halt, waking it again for the next request costs tens of microseconds,
//! more than the request itself. So once an answer is out (its body's end seen: a streamed
//! answer such as `logs -f` counts only when it closes) the connection polls its socket for a
//! short window (by default 100 µs) before parking, as Go's scheduler spins before it sleeps.
//!
//! The spin never takes a CPU from anyone: each turn yields the CPU (`sched_yield`), so a
//! runnable thread on the same CPU (the client, on a one-CPU machine) runs first. It is bounded
//! three ways:
//! - only one connection in the daemon spins at a time, so a worker is always free;
//! - a connection whose window passed without a request (an idle keep-alive connection)
//!   backs off: it skips its next 1, 3, 7 … 63 chances, and starts again after one that pays;
//! - on a single CPU, or with a window of 0, there is no spin at all.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

/// Default window: covers a client's turn-around (its own wake-up and the next request).
pub const DEFAULT_WINDOW: Duration = Duration::from_micros(100);

/// Most chances a connection skips after windows that passed without a request.
const MAX_BACKOFF_SHIFT: u32 = 6;

/// Requests a connection serves in one poll of its task before it yields to the worker's
/// other tasks.
const MAX_REQUESTS_PER_POLL: usize = 16;

/// Set while some connection is spinning.
static SPINNING: AtomicBool = AtomicBool::new(false);

/// What the connection's parts tell its poller: an answer's last frame went out (from the
/// response body); a request is there (to the stream).
#[derive(Debug, Default)]
struct Signals {
    answered: AtomicBool,
    readable: AtomicBool,
}

/// The connection's socket, noting writes and serving a read the poller saw arrive.
#[derive(Debug)]
pub struct PolledStream {
    inner: UnixStream,
    signals: Arc<Signals>,
}

/// A connection's future (hyper's) that spins on its socket before parking after a response.
pub struct Polled<F> {
    conn: Pin<Box<F>>,
    fd: RawFd,
    signals: Arc<Signals>,
    window: Duration,
    /// Windows in a row that passed without a request (the backoff's exponent).
    misses: u32,
    /// Chances still to skip.
    skip: u32,
}

/// Wraps `stream` for a connection served by the future that [`poll_with`]'s callback makes;
/// the callback's service passes each response body through [`Answers::track`].
pub fn poll_with<F, M>(stream: UnixStream, window: Duration, make: M) -> Polled<F>
where
    M: FnOnce(PolledStream, Answers) -> F,
{
    let signals = Arc::new(Signals::default());
    let fd = stream.as_raw_fd();
    let window = if several_cpus() {
        window
    } else {
        Duration::ZERO
    };
    let conn = make(
        PolledStream {
            inner: stream,
            signals: signals.clone(),
        },
        Answers(signals.clone()),
    );
    Polled {
        conn: Box::pin(conn),
        fd,
        signals,
        window,
        misses: 0,
        skip: 0,
    }
}

/// Whether the daemon may run on more than one CPU (read once: std reads the affinity mask
/// and the cgroup's CPU quota files to tell).
fn several_cpus() -> bool {
    static SEVERAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SEVERAL.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

impl<F: Future> Polled<F> {
    /// Spins until the socket has data (or its end), the window passes, or another connection
    /// is already spinning. True when there is something to read.
    fn spin(&mut self) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        if SPINNING.swap(true, Ordering::Acquire) {
            return false;
        }
        let start = Instant::now();
        let arrived = loop {
            if readable(self.fd) {
                break true;
            }
            if start.elapsed() >= self.window {
                break false;
            }
            // SAFETY: sched_yield takes no arguments and cannot fail on Linux.
            unsafe { libc::sched_yield() };
        };
        SPINNING.store(false, Ordering::Release);
        if arrived {
            self.misses = 0;
        } else {
            self.misses = (self.misses + 1).min(MAX_BACKOFF_SHIFT);
            self.skip = (1 << self.misses) - 1;
        }
        arrived
    }
}

/// Whether `fd` has bytes to read or has reached its end (a peek: nothing is consumed).
fn readable(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: a peek of at most one byte into a local. The fd is the connection's socket,
    // which hyper's connection future owns until it completes (an upgrade hands the stream
    // on only then), and the poller only peeks while that future is pending.
    let n = unsafe {
        libc::recv(
            fd,
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    // An error other than "nothing yet" is also something for the read to report.
    n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock
}

impl<F: Future> Future for Polled<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // `Polled` is Unpin: its only pinned part is boxed.
        let this = self.get_mut();
        for _ in 0..MAX_REQUESTS_PER_POLL {
            if let Poll::Ready(out) = this.conn.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            // Parked with an answer just finished: spin for the next request before sleeping.
            // (Not while a streamed answer is under way: its client has nothing to send.) The
            // waker the connection registered stays, so a request that comes later still
            // wakes it.
            if this.window.is_zero() || !this.signals.answered.swap(false, Ordering::Relaxed) {
                return Poll::Pending;
            }
            if !this.spin() {
                return Poll::Pending;
            }
            this.signals.readable.store(true, Ordering::Relaxed);
        }
        // A client that keeps sending has had its turn: the task goes to the back of the run
        // queue, so the worker's other tasks and its I/O driver get theirs.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl PolledStream {
    /// Reads what the poller saw arrive. tokio's readiness for the socket was cleared when
    /// the connection parked and no event has set it yet, so tokio's own read would not try
    /// the socket; this one does, once.
    fn read_seen(&mut self, buf: &mut ReadBuf<'_>) -> Option<io::Result<()>> {
        if !self.signals.readable.swap(false, Ordering::Relaxed) {
            return None;
        }
        // A request head fits; zeroing all of a large buffer would cost more than it reads.
        let unfilled = buf.initialize_unfilled_to(buf.remaining().min(16 << 10));
        // SAFETY: recv writes at most `unfilled.len()` bytes into the slice, which is
        // initialised memory owned by `buf`.
        let n = unsafe {
            libc::recv(
                self.inner.as_raw_fd(),
                unfilled.as_mut_ptr().cast(),
                unfilled.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match usize::try_from(n) {
            Ok(n) => {
                buf.advance(n);
                Some(Ok(()))
            }
            Err(_) => match io::Error::last_os_error() {
                // Nothing after all: tokio's read decides, and registers the waker.
                e if e.kind() == io::ErrorKind::WouldBlock => None,
                e => Some(Err(e)),
            },
        }
    }
}

impl AsyncRead for PolledStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(r) = this.read_seen(buf) {
            return Poll::Ready(r);
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PolledStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The handle a connection's service marks its answers through.
#[derive(Debug, Clone)]
pub struct Answers(Arc<Signals>);

impl Answers {
    /// `body`, telling the poller when its last frame has been taken.
    pub fn track<B>(&self, body: B) -> Tracked<B> {
        Tracked {
            inner: body,
            signals: self.0.clone(),
        }
    }
}

/// A response body that tells the connection's poller when its last frame is out: hyper has
/// seen its end (a whole body after its one frame, a stream when it closes).
#[derive(Debug)]
pub struct Tracked<B> {
    inner: B,
    signals: Arc<Signals>,
}

impl<B> Tracked<B> {
    fn mark(&self) {
        self.signals.answered.store(true, Ordering::Relaxed);
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || (r.is_ready() && this.inner.is_end_stream()) {
            this.mark();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.mark();
        }
        end
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn readable_sees_data_and_the_end_and_consumes_nothing() {
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!readable(a.as_raw_fd()));
        b.write_all(b"GET").unwrap();
        assert!(readable(a.as_raw_fd()));
        assert!(readable(a.as_raw_fd()), "a peek leaves the bytes");
        let mut got = [0u8; 3];
        a.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"GET");
        assert!(!readable(a.as_raw_fd()));
        drop(b);
        assert!(
            readable(a.as_raw_fd()),
            "the peer's end is for the read to see"
        );
    }

    #[tokio::test]
    async fn windows_without_a_request_back_off_and_one_that_pays_resets() {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let stream = UnixStream::from_std(a).unwrap();
        // The connection's future holds the stream, as hyper's does.
        let mut polled = poll_with(stream, Duration::from_micros(200), |s, _| async move {
            let _held = s;
            std::future::pending::<()>().await
        });
        // Each window that passes empty doubles the chances skipped after it, up to 63.
        let mut skipped = Vec::new();
        for _ in 0..7 {
            assert!(!polled.spin());
            skipped.push(polled.skip);
            while polled.skip > 0 {
                assert!(!polled.spin());
            }
        }
        assert_eq!(skipped, [1, 3, 7, 15, 31, 63, 63]);
        // A request within the window is seen, and the backoff starts over.
        b.write_all(b"GET").unwrap();
        assert!(polled.spin());
        assert_eq!((polled.misses, polled.skip), (0, 0));
    }

    #[tokio::test]
    async fn a_request_seen_while_spinning_is_read_once_then_tokio_reads() {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let signals = Arc::new(Signals::default());
        let mut s = PolledStream {
            inner: UnixStream::from_std(a).unwrap(),
            signals: signals.clone(),
        };
        b.write_all(b"first").unwrap();
        signals.readable.store(true, Ordering::Relaxed);
        let mut buf = [0u8; 16];
        let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
            .await
            .unwrap();
        assert_eq!(&buf[..n], b"first");
        assert!(!signals.readable.load(Ordering::Relaxed));
        b.write_all(b"second").unwrap();
        let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
            .await
            .unwrap();
        assert_eq!(&buf[..n], b"second");
        tokio::io::AsyncWriteExt::write_all(&mut s, b"answer")
            .await
            .unwrap();
        let mut got = [0u8; 6];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"answer");
    }

    #[tokio::test]
    async fn an_answer_counts_once_its_body_has_ended() {
        use http_body_util::BodyExt;
        let signals = Arc::new(Signals::default());
        let answers = Answers(signals.clone());
        let answered = || signals.answered.swap(false, Ordering::Relaxed);
        // A whole body: done once its one frame is taken.
        let mut whole = answers.track(crate::server::Body::Full(Some(bytes::Bytes::from("x"))));
        assert!(!hyper::body::Body::is_end_stream(&whole) && !answered());
        assert!(whole.frame().await.is_some());
        assert!(answered());
        // A stream: not while its frames come, only when it closes.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let mut streamed = answers.track(crate::server::Body::Stream(rx));
        tx.send(bytes::Bytes::from("a")).await.unwrap();
        assert!(streamed.frame().await.is_some());
        assert!(!answered(), "a streamed answer under way is not done");
        drop(tx);
        assert!(streamed.frame().await.is_none());
        assert!(answered());
        // An empty body is done from the start.
        let empty = answers.track(crate::server::Body::Full(None));
        assert!(hyper::body::Body::is_end_stream(&empty) && answered());
    }
}
