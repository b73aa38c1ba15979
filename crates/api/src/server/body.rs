//! Response bodies: whole (JSON, text, empty) or streamed from a channel (logs, events,
//! progress, wait).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

/// The body of every response.
pub enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

fn with_type(status: StatusCode, ctype: &str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

pub fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response<Body> {
    json_bytes(status, to_json(v))
}

/// `v` as a JSON body: the document and a newline, as dockerd ends its own.
pub fn to_json<T: serde::Serialize>(v: &T) -> Bytes {
    // Sized for an inspect at once: growing from serde_json's 128 bytes costs a handful of
    // reallocations, and glibc consolidates its fast bins on each one past 1 KiB.
    let mut data = Vec::with_capacity(8192);
    if serde_json::to_writer(&mut data, v).is_err() {
        data.clear();
        data.extend_from_slice(b"{}");
    }
    data.push(b'\n');
    Bytes::from(data)
}

/// A response of a JSON body already made by [`to_json`].
pub fn json_bytes(status: StatusCode, data: Bytes) -> Response<Body> {
    with_type(status, "application/json", Body::Full(Some(data)))
}

pub fn text(status: StatusCode, s: &str) -> Response<Body> {
    with_type(
        status,
        "text/plain; charset=utf-8",
        Body::Full(Some(Bytes::copy_from_slice(s.as_bytes()))),
    )
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::Full(None));
    *r.status_mut() = status;
    r
}

/// Docker's error body.
pub fn message(status: StatusCode, msg: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "message": msg }))
}

/// A streamed response fed by `rx`; it ends when the sender is dropped.
pub fn from_receiver(status: StatusCode, ctype: &str, rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    with_type(status, ctype, Body::Stream(rx))
}

/// A streamed response; the returned sender feeds it, dropping it ends it.
pub fn stream(status: StatusCode, ctype: &str) -> (Response<Body>, mpsc::Sender<Bytes>) {
    let (tx, rx) = mpsc::channel(64);
    (from_receiver(status, ctype, rx), tx)
}

/// Forwards a request body, chunk by chunk, to a bounded channel (the reader side is
/// [`berth_engine::ChannelReader`] on a blocking thread). A failed upload, or one past `limit`
/// bytes, ends with an error item, never a short and so silently truncated stream.
pub fn forward(
    mut incoming: hyper::body::Incoming,
    limit: Option<(u64, &'static str)>,
) -> mpsc::Receiver<std::io::Result<Bytes>> {
    use http_body_util::BodyExt;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut total = 0u64;
        while let Some(frame) = incoming.frame().await {
            let item = match frame {
                Ok(f) => match f.into_data() {
                    Ok(d) => {
                        total += d.len() as u64;
                        match limit {
                            Some((max, msg)) if total > max => Err(std::io::Error::other(msg)),
                            _ => Ok(d),
                        }
                    }
                    Err(_) => continue,
                },
                Err(e) => Err(std::io::Error::other(format!(
                    "reading the request body failed: {e}"
                ))),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() {
                // The reader stopped early (it refused what it read). The rest is read and
                // dropped, up to a bound, so that the client finishes sending and reads the
                // answer instead of failing its write on a closed connection.
                let mut drained = 0u64;
                while let Some(Ok(f)) = incoming.frame().await {
                    drained += f.data_ref().map_or(0, |d| d.len() as u64);
                    if drained > DRAIN_MAX {
                        return;
                    }
                }
                return;
            }
            if failed {
                return;
            }
        }
    });
    rx
}

/// How much of a request body is still read after its consumer stopped early.
const DRAIN_MAX: u64 = 64 << 20;
