//! Client of the Engine API over a unix socket (used by the CLI and, later, compose).
//!
//! One HTTP/1.1 connection per request (the socket is local, so this costs microseconds). The
//! first request negotiates the API version with `GET /_ping`: the client speaks
//! `min(API_VERSION, server's Api-Version)` and prefixes every path with `/v<version>`.
//! Non-2xx answers become [`ClientError::Daemon`] carrying the daemon's `{"message": ...}`.
//!
//! Three shapes of call: JSON in/JSON out ([`Client::get`], [`Client::post`],
//! [`Client::delete`]), streamed bodies ([`Client::stream`] for logs, progress and events), and
//! hijacked connections ([`Client::hijack`]) for attach and exec, where the socket becomes a raw
//! bidirectional byte stream after `101 Switching Protocols`.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::UnixStream;
use tokio::sync::OnceCell;

/// The daemon address used when neither a flag nor an environment variable names one.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// The API version assumed when the daemon's `_ping` names none (Docker's fallback).
const FALLBACK_API_VERSION: &str = "1.24";

/// Everything that can go wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The host is not a `unix://` address.
    #[error("unsupported host {0:?}: berth only connects to unix:// sockets")]
    UnsupportedHost(String),
    /// The socket could not be reached.
    #[error(
        "Cannot connect to the Berth daemon at {host}. Is the berth daemon running? ({source})"
    )]
    Connect { host: String, source: io::Error },
    /// The socket exists but we may not use it.
    #[error(
        "permission denied while trying to connect to the Berth daemon socket at {host}: {source}"
    )]
    PermissionDenied { host: String, source: io::Error },
    /// The daemon answered with an error status.
    #[error("Error response from daemon: {message}")]
    Daemon { status: u16, message: String },
    /// The HTTP exchange failed (connection reset, malformed response...).
    #[error("error during connect: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (bad characters in a path or header).
    #[error("invalid request: {0}")]
    InvalidRequest(#[from] hyper::http::Error),
    /// A request body could not be encoded.
    #[error("encoding the request: {0}")]
    Encode(#[source] serde_json::Error),
    /// A response body was not what its type says.
    #[error("decoding the daemon's response: {0}")]
    Decode(#[source] serde_json::Error),
    /// The daemon did not switch the connection to a raw stream.
    #[error("the daemon did not upgrade the connection (HTTP {0})")]
    NoUpgrade(u16),
    /// Reading or writing the socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl ClientError {
    /// The HTTP status of a daemon error, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Daemon { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for a daemon `404` (no such container, image, exec...).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// Result of client calls.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Picks the daemon address: the flag, then `BERTH_HOST`, then `DOCKER_HOST`, then
/// [`DEFAULT_HOST`]. Empty values count as unset.
pub fn resolve_host(flag: Option<&str>) -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    flag.filter(|v| !v.is_empty())
        .map(str::to_owned)
        .or_else(|| env("BERTH_HOST"))
        .or_else(|| env("DOCKER_HOST"))
        .unwrap_or_else(|| DEFAULT_HOST.to_owned())
}

/// Encodes `pairs` as a query string (without the leading `?`).
pub fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// Parses `major.minor` into a comparable pair.
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (maj, min) = v.trim().split_once('.')?;
    Some((maj.parse().ok()?, min.parse().ok()?))
}

/// The version both sides speak: the lower of ours and the server's.
pub fn negotiate_version(ours: &str, server: Option<&str>) -> String {
    let Some(server) = server.filter(|s| !s.is_empty()) else {
        return FALLBACK_API_VERSION.to_owned();
    };
    match (parse_version(ours), parse_version(server)) {
        (Some(a), Some(b)) if b < a => server.trim().to_owned(),
        (Some(_), Some(_)) => ours.to_owned(),
        _ => FALLBACK_API_VERSION.to_owned(),
    }
}

/// What `GET /_ping` told us.
#[derive(Debug, Clone, Default)]
pub struct Ping {
    pub api_version: Option<String>,
    pub os_type: Option<String>,
}

/// A request body.
pub enum RequestBody {
    /// No body.
    Empty,
    /// A complete body with its content type.
    Full {
        data: Bytes,
        content_type: &'static str,
    },
    /// A body streamed from a reader (chunked transfer encoding), e.g. an image tarball.
    Reader {
        reader: Box<dyn AsyncRead + Send + Unpin>,
        content_type: &'static str,
    },
}

impl RequestBody {
    /// A JSON body.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        let data = serde_json::to_vec(value).map_err(ClientError::Encode)?;
        Ok(RequestBody::Full {
            data: data.into(),
            content_type: "application/json",
        })
    }

    fn content_type(&self) -> Option<&'static str> {
        match self {
            RequestBody::Empty => None,
            RequestBody::Full { content_type, .. } | RequestBody::Reader { content_type, .. } => {
                Some(content_type)
            }
        }
    }
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestBody::Empty => f.write_str("Empty"),
            RequestBody::Full { data, .. } => write!(f, "Full({} bytes)", data.len()),
            RequestBody::Reader { .. } => f.write_str("Reader"),
        }
    }
}

/// The body as hyper sends it.
struct WireBody {
    full: Option<Bytes>,
    reader: Option<Box<dyn AsyncRead + Send + Unpin>>,
    buf: Vec<u8>,
}

impl WireBody {
    fn new(body: RequestBody) -> Self {
        match body {
            RequestBody::Empty => WireBody {
                full: None,
                reader: None,
                buf: Vec::new(),
            },
            RequestBody::Full { data, .. } => WireBody {
                full: Some(data),
                reader: None,
                buf: Vec::new(),
            },
            RequestBody::Reader { reader, .. } => WireBody {
                full: None,
                reader: Some(reader),
                buf: vec![0; 64 * 1024],
            },
        }
    }
}

impl Body for WireBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(data) = this.full.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(reader) = this.reader.as_mut() else {
            return Poll::Ready(None);
        };
        let mut rb = ReadBuf::new(&mut this.buf);
        match Pin::new(reader).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                this.reader = None;
                Poll::Ready(None)
            }
            Poll::Ready(Ok(())) => {
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(rb.filled())))))
            }
            Poll::Ready(Err(e)) => {
                this.reader = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.full.is_none() && self.reader.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.full, &self.reader) {
            (Some(d), _) => SizeHint::with_exact(d.len() as u64),
            (None, None) => SizeHint::with_exact(0),
            (None, Some(_)) => SizeHint::default(),
        }
    }
}

/// A streamed response body (logs, progress messages, events).
#[derive(Debug)]
pub struct BodyStream {
    body: Incoming,
    headers: HeaderMap,
    pending: Vec<u8>,
}

impl BodyStream {
    /// A response header, if present.
    pub fn header(&self, name: &str) -> Option<&hyper::header::HeaderValue> {
        self.headers.get(name)
    }

    /// The response's `Content-Type`, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }

    /// True when the body uses Docker's stdio framing (no tty).
    pub fn is_multiplexed(&self) -> bool {
        self.content_type()
            .is_some_and(|c| c.contains("multiplexed-stream"))
    }

    /// The next chunk of data, `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        if !self.pending.is_empty() {
            return Ok(Some(Bytes::from(std::mem::take(&mut self.pending))));
        }
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The next JSON value of a stream of concatenated (usually newline-separated) values;
    /// `None` at the end. A truncated value at the end is an error.
    pub async fn next_json<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        loop {
            let start = self.pending.iter().position(|b| !b.is_ascii_whitespace());
            if let Some(start) = start {
                let slice = &self.pending[start..];
                let mut it = serde_json::Deserializer::from_slice(slice).into_iter::<T>();
                match it.next() {
                    Some(Ok(v)) => {
                        let used = start + it.byte_offset();
                        self.pending.drain(..used);
                        return Ok(Some(v));
                    }
                    Some(Err(e)) if !e.is_eof() => return Err(ClientError::Decode(e)),
                    _ => {}
                }
            } else {
                self.pending.clear();
            }
            let mut done = true;
            while let Some(frame) = self.body.frame().await {
                let frame = frame?;
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    self.pending.extend_from_slice(&data);
                    done = false;
                    break;
                }
            }
            if done {
                if self.pending.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                let err = serde_json::from_slice::<T>(&self.pending);
                self.pending.clear();
                return match err {
                    Ok(v) => Ok(Some(v)),
                    Err(e) => Err(ClientError::Decode(e)),
                };
            }
        }
    }

    /// Reads the whole remaining body.
    pub async fn collect(mut self) -> Result<Bytes> {
        let mut out = std::mem::take(&mut self.pending);
        while let Some(c) = self.chunk().await? {
            out.extend_from_slice(&c);
        }
        Ok(out.into())
    }
}

/// The read half of a hijacked connection.
pub struct HijackReader {
    inner: ReaderInner,
}

enum ReaderInner {
    Upgraded(ReadHalf<TokioIo<hyper::upgrade::Upgraded>>),
    /// A daemon that answered 200 streams the output as the response body.
    Body {
        body: Incoming,
        leftover: Bytes,
    },
}

impl std::fmt::Debug for HijackReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HijackReader")
    }
}

impl AsyncRead for HijackReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            ReaderInner::Upgraded(r) => Pin::new(r).poll_read(cx, buf),
            ReaderInner::Body { body, leftover } => loop {
                if !leftover.is_empty() {
                    let n = leftover.len().min(buf.remaining());
                    buf.put_slice(&leftover.split_to(n));
                    return Poll::Ready(Ok(()));
                }
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            *leftover = data;
                        }
                    }
                }
            },
        }
    }
}

/// The write half of a hijacked connection. [`HijackWriter::close_write`] half-closes it so the
/// daemon sees stdin's end while output keeps flowing.
pub struct HijackWriter {
    inner: Option<WriteHalf<TokioIo<hyper::upgrade::Upgraded>>>,
}

impl std::fmt::Debug for HijackWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HijackWriter")
    }
}

impl HijackWriter {
    /// Whether input can be sent (false when the daemon streamed a plain response).
    pub fn is_writable(&self) -> bool {
        self.inner.is_some()
    }

    /// Half-closes the connection: the daemon reads EOF on stdin.
    pub async fn close_write(&mut self) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match self.inner.as_mut() {
            Some(w) => w.shutdown().await,
            None => Ok(()),
        }
    }
}

fn not_writable() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the daemon did not open the connection for input",
    )
}

impl AsyncWrite for HijackWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().inner.as_mut() {
            Some(w) => Pin::new(w).poll_write(cx, buf),
            None => Poll::Ready(Err(not_writable())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().inner.as_mut() {
            Some(w) => Pin::new(w).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().inner.as_mut() {
            Some(w) => Pin::new(w).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// A hijacked attach/exec connection.
#[derive(Debug)]
pub struct Hijacked {
    /// From the response's `Content-Type`: `Some(true)` for multiplexed frames, `Some(false)`
    /// for a raw (tty) stream, `None` when the daemon did not say.
    pub multiplexed: Option<bool>,
    pub reader: HijackReader,
    pub writer: HijackWriter,
}

fn multiplexed_from(headers: &HeaderMap) -> Option<bool> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    if ct.contains("multiplexed-stream") {
        Some(true)
    } else if ct.contains("raw-stream") {
        Some(false)
    } else {
        None
    }
}

/// A connection to the daemon.
#[derive(Debug)]
pub struct Client {
    host: String,
    socket: PathBuf,
    version: OnceCell<String>,
}

impl Client {
    /// A client of `host` (`unix:///path`). Nothing is connected until the first call.
    pub fn new(host: &str) -> Result<Self> {
        let socket = match host.strip_prefix("unix://") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => return Err(ClientError::UnsupportedHost(host.to_owned())),
        };
        Ok(Client {
            host: host.to_owned(),
            socket,
            version: OnceCell::new(),
        })
    }

    /// A client with an already known API version (no `_ping` round trip).
    pub fn with_version(host: &str, version: &str) -> Result<Self> {
        let c = Self::new(host)?;
        let _ = c.version.set(version.to_owned());
        Ok(c)
    }

    /// The address this client talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The negotiated API version (pings the daemon the first time).
    pub async fn api_version(&self) -> Result<&str> {
        self.version
            .get_or_try_init(|| async {
                let ping = self.ping().await?;
                Ok::<_, ClientError>(negotiate_version(
                    crate::API_VERSION,
                    ping.api_version.as_deref(),
                ))
            })
            .await
            .map(String::as_str)
    }

    async fn connect(&self) -> Result<TokioIo<UnixStream>> {
        match UnixStream::connect(&self.socket).await {
            Ok(s) => Ok(TokioIo::new(s)),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                Err(ClientError::PermissionDenied {
                    host: self.host.clone(),
                    source: e,
                })
            }
            Err(e) => Err(ClientError::Connect {
                host: self.host.clone(),
                source: e,
            }),
        }
    }

    fn build(
        &self,
        method: Method,
        uri: &str,
        body: RequestBody,
        upgrade: bool,
    ) -> Result<Request<WireBody>> {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "berth");
        b = b.header(
            header::USER_AGENT,
            concat!("Berth-Client/", env!("CARGO_PKG_VERSION")),
        );
        if let Some(ct) = body.content_type() {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        if let RequestBody::Full { data, .. } = &body {
            b = b.header(header::CONTENT_LENGTH, data.len());
        }
        if upgrade {
            b = b
                .header(header::CONNECTION, HeaderValue::from_static("Upgrade"))
                .header(header::UPGRADE, HeaderValue::from_static("tcp"));
        }
        Ok(b.body(WireBody::new(body))?)
    }

    /// Sends one request on a fresh connection and returns the raw response, whatever its
    /// status. `path` is unversioned (`/containers/json?all=1`).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: RequestBody,
    ) -> Result<Response<Incoming>> {
        let version = self.api_version().await?.to_owned();
        let uri = format!("/v{version}{path}");
        self.send_raw(method, &uri, body).await
    }

    async fn send_raw(
        &self,
        method: Method,
        uri: &str,
        body: RequestBody,
    ) -> Result<Response<Incoming>> {
        self.send_raw_with(method, uri, body, &[]).await
    }

    async fn send_raw_with(
        &self,
        method: Method,
        uri: &str,
        body: RequestBody,
        headers: &[(&'static str, &str)],
    ) -> Result<Response<Incoming>> {
        let io = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = self.build(method, uri, body, false)?;
        for (k, v) in headers {
            let v = HeaderValue::from_str(v).map_err(hyper::http::Error::from)?;
            req.headers_mut().insert(*k, v);
        }
        Ok(sender.send_request(req).await?)
    }

    /// Like [`Client::stream`], with extra request headers (`X-Registry-Auth`).
    pub async fn stream_with_headers(
        &self,
        method: Method,
        path: &str,
        body: RequestBody,
        headers: &[(&'static str, &str)],
    ) -> Result<BodyStream> {
        let version = self.api_version().await?.to_owned();
        let uri = format!("/v{version}{path}");
        let resp = self.send_raw_with(method, &uri, body, headers).await?;
        let resp = if resp.status().is_success() {
            resp
        } else {
            return Err(daemon_error(resp).await);
        };
        let (parts, body) = resp.into_parts();
        Ok(BodyStream {
            body,
            headers: parts.headers,
            pending: Vec::new(),
        })
    }

    /// `GET /_ping` (unversioned).
    pub async fn ping(&self) -> Result<Ping> {
        let resp = self
            .send_raw(Method::GET, "/_ping", RequestBody::Empty)
            .await?;
        let header = |k: &str| {
            resp.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let ping = Ping {
            api_version: header("Api-Version"),
            os_type: header("Ostype"),
        };
        if !resp.status().is_success() && ping.api_version.is_none() {
            return Err(daemon_error(resp).await);
        }
        Ok(ping)
    }

    /// Sends a request and turns an error status into [`ClientError::Daemon`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: RequestBody,
    ) -> Result<Response<Incoming>> {
        let resp = self.send(method, path, body).await?;
        if resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED {
            Ok(resp)
        } else {
            Err(daemon_error(resp).await)
        }
    }

    async fn json_call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: RequestBody,
    ) -> Result<T> {
        let resp = self.request(method, path, body).await?;
        let data = resp.into_body().collect().await?.to_bytes();
        let data: &[u8] = if data.iter().all(u8::is_ascii_whitespace) {
            b"null"
        } else {
            &data
        };
        serde_json::from_slice(data).map_err(ClientError::Decode)
    }

    /// `GET path`, decoding the JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.json_call(Method::GET, path, RequestBody::Empty).await
    }

    /// `POST path` with an optional JSON body, decoding the JSON answer.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let body = match body {
            Some(b) => RequestBody::json(b)?,
            None => RequestBody::Empty,
        };
        self.json_call(Method::POST, path, body).await
    }

    /// `POST path` with no body, ignoring the answer's body (`204 No Content` calls).
    pub async fn post_empty(&self, path: &str) -> Result<()> {
        let resp = self.request(Method::POST, path, RequestBody::Empty).await?;
        let _ = resp.into_body().collect().await;
        Ok(())
    }

    /// `DELETE path`, decoding the JSON answer (`()` accepts an empty body).
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.json_call(Method::DELETE, path, RequestBody::Empty)
            .await
    }

    /// Sends a request whose answer is read as a stream.
    pub async fn stream(
        &self,
        method: Method,
        path: &str,
        body: RequestBody,
    ) -> Result<BodyStream> {
        let resp = self.request(method, path, body).await?;
        let (parts, body) = resp.into_parts();
        Ok(BodyStream {
            body,
            headers: parts.headers,
            pending: Vec::new(),
        })
    }

    /// Sends a request asking to take over the connection (`Upgrade: tcp`) and returns the raw
    /// bidirectional stream: after `101 Switching Protocols`, or the response body of a daemon
    /// that answers `200` (then nothing can be written).
    pub async fn hijack(&self, method: Method, path: &str, body: RequestBody) -> Result<Hijacked> {
        let version = self.api_version().await?.to_owned();
        let uri = format!("/v{version}{path}");
        let io = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let req = self.build(method, &uri, body, true)?;
        let mut resp = sender.send_request(req).await?;
        let multiplexed = multiplexed_from(resp.headers());
        match resp.status() {
            StatusCode::SWITCHING_PROTOCOLS => {
                let upgraded = hyper::upgrade::on(&mut resp).await?;
                let (r, w) = tokio::io::split(TokioIo::new(upgraded));
                Ok(Hijacked {
                    multiplexed,
                    reader: HijackReader {
                        inner: ReaderInner::Upgraded(r),
                    },
                    writer: HijackWriter { inner: Some(w) },
                })
            }
            s if s.is_success() => Ok(Hijacked {
                multiplexed,
                reader: HijackReader {
                    inner: ReaderInner::Body {
                        body: resp.into_body(),
                        leftover: Bytes::new(),
                    },
                },
                writer: HijackWriter { inner: None },
            }),
            _ => Err(daemon_error(resp).await),
        }
    }
}

/// Turns an error response into [`ClientError::Daemon`], using `{"message": ...}` when the body
/// has one and the body text (or the status' reason) otherwise.
async fn daemon_error(resp: Response<Incoming>) -> ClientError {
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    ClientError::Daemon {
        status: status.as_u16(),
        message: error_message(status, &body),
    }
}

/// The human message of an error body.
pub fn error_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Msg {
        message: String,
    }
    if let Ok(m) = serde_json::from_slice::<Msg>(body) {
        return m.message;
    }
    let text = String::from_utf8_lossy(body).trim().to_owned();
    if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("unknown error")
            .to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_negotiation_takes_the_lower() {
        assert_eq!(negotiate_version("1.50", Some("1.43")), "1.43");
        assert_eq!(negotiate_version("1.50", Some("1.51")), "1.50");
        assert_eq!(negotiate_version("1.50", Some("1.50")), "1.50");
        assert_eq!(negotiate_version("1.50", None), "1.24");
        assert_eq!(negotiate_version("1.50", Some("garbage")), "1.24");
    }

    #[test]
    fn only_unix_hosts() {
        assert!(Client::new("unix:///run/x.sock").is_ok());
        assert!(matches!(
            Client::new("tcp://1.2.3.4:2375"),
            Err(ClientError::UnsupportedHost(_))
        ));
        assert!(matches!(
            Client::new("unix://"),
            Err(ClientError::UnsupportedHost(_))
        ));
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(
                StatusCode::NOT_FOUND,
                br#"{"message":"No such container: x"}"#
            ),
            "No such container: x"
        );
        assert_eq!(
            error_message(StatusCode::NOT_FOUND, b"page not found\n"),
            "page not found"
        );
        assert_eq!(error_message(StatusCode::CONFLICT, b""), "Conflict");
    }

    #[test]
    fn query_encoding() {
        assert_eq!(
            query(&[("name", "a b"), ("tag", "x&y")]),
            "name=a+b&tag=x%26y"
        );
    }
}
