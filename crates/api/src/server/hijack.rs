//! Hijacked connections for attach and exec: the HTTP upgrade (`Upgrade: tcp`, 101), then raw
//! stdio both ways, with Docker's framing when there is no tty and its detach keys.

use std::future::Future;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use berth_engine::IoSession;
use berth_engine::shim_client::Frame;
use bytes::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::body::{self, Body};
use super::{HandlerResult, Req};
use crate::detach::{DEFAULT_DETACH_KEYS, DetachMatcher, parse_detach_keys};
use crate::stream::{StdStream, encode_frame};

/// The raw descriptor of a request's connection, for what hyper does not expose: how much
/// of what was sent the client has not read yet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnFd(pub RawFd);

/// Waits, a bounded while, until the client has read everything sent on `fd` (the upgrade's
/// response head). docker-py reads the head through a buffer and the stream from the raw
/// socket: output that arrived with the head was lost to it when the client was slow.
/// The caller holds the connection, so `fd` is open throughout.
async fn head_read(fd: RawFd) {
    const LIMIT: Duration = Duration::from_millis(500);
    let start = Instant::now();
    for round in 0u32.. {
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ on a socket) writes one int through the pointer, which
        // points at a live local; `fd` is an open socket (see above).
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
        if rc != 0 || queued == 0 || start.elapsed() >= LIMIT {
            return;
        }
        // A waiting client reads within microseconds; a busy one gets millisecond polls.
        if round < 64 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The bidirectional stream a handler works on.
pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Answers with `101 Switching Protocols` and runs `f` on the upgraded connection. A client
/// that did not ask for an upgrade gets the output as a plain streamed body.
pub(super) fn upgrade<F, Fut>(r: Req, tty: bool, f: F) -> HandlerResult
where
    F: FnOnce(Box<dyn Io>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ctype = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let wants_upgrade = r
        .parts
        .headers
        .get(hyper::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"tcp"));
    if wants_upgrade {
        let fd = r.parts.extensions.get::<ConnFd>().copied();
        let req = Request::from_parts(r.parts, ());
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    if let Some(ConnFd(fd)) = fd {
                        head_read(fd).await;
                    }
                    f(Box::new(TokioIo::new(upgraded))).await
                }
                Err(e) => tracing::debug!("upgrade failed: {e}"),
            }
        });
        let mut resp = Response::new(Body::Full(None));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("Upgrade"),
        );
        h.insert(
            hyper::header::UPGRADE,
            hyper::header::HeaderValue::from_static("tcp"),
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
            h.insert(hyper::header::CONTENT_TYPE, v);
        }
        return Ok(resp);
    }
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (resp, tx) = body::stream(StatusCode::OK, ctype);
    tokio::spawn(f(Box::new(theirs)));
    tokio::spawn(async move {
        let (mut rd, _wr) = tokio::io::split(ours);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(resp)
}

/// Writes an error on a hijacked stream and closes it.
pub(super) async fn fail(mut io: Box<dyn Io>, msg: &str) {
    let _ = io.write_all(format!("Error: {msg}\n").as_bytes()).await;
    let _ = io.shutdown().await;
}

/// Copies the session's output to the client (framed without a tty) and the client's input to
/// the session's stdin, until the process ends, the client detaches or goes away. Without
/// `mux` the output is never framed (a WebSocket attach), tty or not.
pub(super) async fn pump(
    io: Box<dyn Io>,
    mut session: IoSession,
    detach_keys: Option<&str>,
    mux: bool,
) {
    let keys = match parse_detach_keys(
        detach_keys
            .filter(|k| !k.is_empty())
            .unwrap_or(DEFAULT_DETACH_KEYS),
    ) {
        Ok(k) => k,
        Err(e) => return fail(io, &e).await,
    };
    let raw = session.tty || !mux;
    let (mut rd, mut wr) = tokio::io::split(io);
    let stdin = session.stdin.take();
    let output = async {
        while let Some(frame) = session.next().await {
            match frame {
                Frame::Output(stream, data) => {
                    let chunk = if raw {
                        data.to_vec()
                    } else {
                        let s = if stream == 2 {
                            StdStream::Stderr
                        } else {
                            StdStream::Stdout
                        };
                        encode_frame(s, &data)
                    };
                    if wr.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                Frame::Exit(_) => break,
            }
        }
        let _ = wr.flush().await;
    };
    let input = async {
        let Some(mut stdin) = stdin else {
            // No stdin: still notice the client leaving.
            std::future::pending::<()>().await;
            return;
        };
        let mut matcher = DetachMatcher::new(keys);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = stdin.shutdown().await;
                    // Input is over; output goes on until the process ends.
                    std::future::pending::<()>().await;
                }
                Ok(n) => {
                    let (fwd, detach) = matcher.feed(&buf[..n]);
                    if !fwd.is_empty() && stdin.write_all(&fwd).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    if detach {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = output => {}
        _ = input => {}
    }
}
