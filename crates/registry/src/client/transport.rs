//! The HTTP layer: a pooled hyper 1 client (keep-alive, several connections per host) over our
//! own connector (DNS, TCP, rustls), the insecure-registry policy, the HTTPS-then-HTTP scheme
//! choice remembered per host, and the timeouts and size caps every response goes through.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Incoming};
use hyper::header::{CONTENT_LENGTH, HeaderValue, USER_AGENT};
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::ClientError;
use super::tls::TlsConfigs;

/// Boxed error type of request bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The one request body type: empty, bytes, or a stream.
pub(crate) type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

/// Largest response head (status line + headers) accepted, through hyper's read buffer cap.
const MAX_READ_BUF: usize = 256 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 128;
/// Largest error body read to extract the registry's message.
pub(crate) const MAX_ERROR_BODY: u64 = 64 * 1024;

/// An empty request body.
pub(crate) fn empty() -> ReqBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A request body of known bytes.
pub(crate) fn full(b: Bytes) -> ReqBody {
    http_body_util::Full::new(b)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Hosts the user marked insecure (`host[:port]` names and CIDRs), plus loopback.
#[derive(Debug, Default)]
pub(crate) struct InsecurePolicy {
    names: Vec<String>,
    cidrs: Vec<(IpAddr, u8)>,
}

impl InsecurePolicy {
    pub(crate) fn parse(entries: &[String]) -> Result<InsecurePolicy, ClientError> {
        let mut p = InsecurePolicy::default();
        for raw in entries {
            let e = raw.trim();
            let e = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"))
                .unwrap_or(e)
                .trim_end_matches('/')
                .to_ascii_lowercase();
            if e.is_empty() {
                continue;
            }
            if let Some((ip, prefix)) = e.split_once('/') {
                let ip: IpAddr = ip.parse().map_err(|_| {
                    ClientError::InvalidArgument(format!("insecure registry {raw:?}: bad CIDR"))
                })?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
                    ClientError::InvalidArgument(format!(
                        "insecure registry {raw:?}: bad CIDR prefix"
                    ))
                })?;
                p.cidrs.push((ip, prefix));
            } else {
                p.names.push(e);
            }
        }
        Ok(p)
    }

    /// Whether the authority (`host[:port]`) is listed by name, or is a loopback name or IP.
    pub(crate) fn static_match(&self, authority: &str) -> bool {
        let authority = authority.to_ascii_lowercase();
        let host = host_of(&authority);
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            if self.addr_match(ip) {
                return true;
            }
        }
        self.names.iter().any(|n| *n == authority || *n == host)
    }

    /// Whether an address is loopback or inside a listed CIDR.
    pub(crate) fn addr_match(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        ip.is_loopback()
            || self
                .cidrs
                .iter()
                .any(|(net, prefix)| cidr_contains(*net, *prefix, ip))
    }
}

fn cidr_contains(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// The host part of `host[:port]` / `[v6]:port`, without brackets.
pub(crate) fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// A connection: plain TCP or TLS over TCP.
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Why a connection could not be made; found again in the error chain hyper returns.
#[derive(Debug)]
pub(crate) struct ConnectError {
    message: String,
    timeout: bool,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

/// The connector hyper's pool calls for each new connection.
#[derive(Clone)]
pub(crate) struct Connector {
    inner: Arc<ConnectorInner>,
}

struct ConnectorInner {
    tls: TlsConfigs,
    policy: Arc<InsecurePolicy>,
    connect_timeout: Duration,
}

impl ConnectorInner {
    async fn connect(&self, uri: Uri) -> Result<TokioIo<Conn>, ConnectError> {
        let fail = |message: String| ConnectError {
            message,
            timeout: false,
        };
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => return Err(fail(format!("unsupported scheme {other:?}"))),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| fail("URL without host".into()))?
            .as_str()
            .to_string();
        let host = host_of(&authority).to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let work = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| fail(format!("lookup {host}: {e}")))?
                .collect();
            let mut last = None;
            let mut stream = None;
            for addr in &addrs {
                match TcpStream::connect(addr).await {
                    Ok(s) => {
                        stream = Some((s, *addr));
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            let Some((tcp, addr)) = stream else {
                return Err(fail(match last {
                    Some(e) => format!("dial tcp {host}:{port}: {}", connect_text(&e)),
                    None => format!("lookup {host}: no addresses"),
                }));
            };
            let _ = tcp.set_nodelay(true);
            if !https {
                return Ok(Conn::Plain(tcp));
            }
            let insecure =
                self.policy.static_match(&authority) || self.policy.addr_match(addr.ip());
            let config = if insecure {
                self.tls.unverified.clone()
            } else {
                self.tls.verified.clone()
            };
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| fail(format!("TLS server name {host:?}: {e}")))?;
            let tls = TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| fail(format!("TLS handshake with {authority}: {e}")))?;
            Ok(Conn::Tls(Box::new(tls)))
        };
        match tokio::time::timeout(self.connect_timeout, work).await {
            Ok(Ok(conn)) => Ok(TokioIo::new(conn)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectError {
                message: format!("connecting to {authority} timed out"),
                timeout: true,
            }),
        }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Conn>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<TokioIo<Conn>, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { inner.connect(uri).await })
    }
}

/// The shared HTTP client: pool, policy, remembered schemes, timeouts.
pub(crate) struct Transport {
    client: legacy::Client<Connector, ReqBody>,
    policy: Arc<InsecurePolicy>,
    schemes: Mutex<HashMap<String, Arc<OnceCell<&'static str>>>>,
    user_agent: HeaderValue,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
}

impl Transport {
    pub(crate) fn new(
        policy: InsecurePolicy,
        user_agent: &str,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<Transport, ClientError> {
        let policy = Arc::new(policy);
        let connector = Connector {
            inner: Arc::new(ConnectorInner {
                tls: TlsConfigs::new()?,
                policy: policy.clone(),
                connect_timeout,
            }),
        };
        let client = legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(16)
            .http1_max_buf_size(MAX_READ_BUF)
            .http1_max_headers(MAX_HEADERS)
            .build(connector);
        let user_agent = HeaderValue::from_str(user_agent)
            .map_err(|_| ClientError::InvalidArgument("user agent is not a header value".into()))?;
        Ok(Transport {
            client,
            policy,
            schemes: Mutex::new(HashMap::new()),
            user_agent,
            connect_timeout,
            read_timeout,
        })
    }

    /// Sends a request (absolute URI) and waits for the response head, bounded by the connect
    /// and read timeouts.
    pub(crate) async fn send(
        &self,
        req: Request<ReqBody>,
    ) -> Result<Response<Incoming>, ClientError> {
        let what = describe(&req);
        match self.send_raw(req).await {
            Ok(r) => Ok(r),
            Err(e) => Err(e.into_client_error(&what)),
        }
    }

    async fn send_raw(&self, mut req: Request<ReqBody>) -> Result<Response<Incoming>, SendError> {
        if !req.headers().contains_key(USER_AGENT) {
            req.headers_mut()
                .insert(USER_AGENT, self.user_agent.clone());
        }
        let limit = self.connect_timeout + self.read_timeout;
        match tokio::time::timeout(limit, self.client.request(req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(SendError::Hyper(e)),
            Err(_) => Err(SendError::Timeout),
        }
    }

    /// Sends a request whose body reports progress through `progress`; instead of one deadline
    /// the request fails when neither a body byte went out nor the response came for the read
    /// timeout. `on_progress` sees each new total.
    pub(crate) async fn send_with_progress(
        &self,
        mut req: Request<ReqBody>,
        mut progress: tokio::sync::watch::Receiver<u64>,
        on_progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Response<Incoming>, ClientError> {
        let what = describe(&req);
        if !req.headers().contains_key(USER_AGENT) {
            req.headers_mut()
                .insert(USER_AGENT, self.user_agent.clone());
        }
        let fut = self.client.request(req);
        tokio::pin!(fut);
        let idle = self.read_timeout;
        let deadline = tokio::time::sleep(self.connect_timeout + idle);
        tokio::pin!(deadline);
        let mut watching = true;
        loop {
            tokio::select! {
                r = &mut fut => {
                    return r.map_err(|e| SendError::Hyper(e).into_client_error(&what));
                }
                changed = progress.changed(), if watching => {
                    match changed {
                        Ok(()) => {
                            let n = *progress.borrow_and_update();
                            on_progress(n);
                            deadline.as_mut().reset(Instant::now() + idle);
                        }
                        Err(_) => watching = false,
                    }
                }
                _ = &mut deadline => {
                    return Err(ClientError::Timeout(format!("{what}: no progress for {idle:?}")));
                }
            }
        }
    }

    /// The scheme to use for a registry host: `https`, unless the host is insecure and HTTPS
    /// cannot be connected to (refused, TLS handshake failure), then `http`. Remembered; one
    /// probe per host even when many requests start at once.
    pub(crate) async fn scheme(&self, authority: &str) -> Result<&'static str, ClientError> {
        let cell = {
            let mut m = self.schemes.lock().unwrap_or_else(|p| p.into_inner());
            if m.len() >= 4096 && !m.contains_key(authority) {
                m.retain(|_, c| c.initialized());
            }
            m.entry(authority.to_string()).or_default().clone()
        };
        cell.get_or_try_init(|| self.probe_scheme(authority))
            .await
            .copied()
    }

    async fn probe_scheme(&self, authority: &str) -> Result<&'static str, ClientError> {
        if !self.is_insecure(authority).await {
            return Ok("https");
        }
        let mut last_err = None;
        for scheme in ["https", "http"] {
            let what = format!("GET {scheme}://{authority}/v2/");
            let uri: Uri = format!("{scheme}://{authority}/v2/").parse().map_err(|_| {
                ClientError::InvalidArgument(format!("bad registry host {authority:?}"))
            })?;
            let req = Request::get(uri)
                .body(empty())
                .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
            match self.send_raw(req).await {
                Ok(resp) => {
                    drain(resp, self.read_timeout).await;
                    return Ok(scheme);
                }
                Err(e) if e.is_connect() => {
                    tracing::debug!(%authority, scheme, error = %e.describe(), "registry ping failed, trying next scheme");
                    last_err = Some(e.into_client_error(&what));
                }
                Err(e) => return Err(e.into_client_error(&what)),
            }
        }
        Err(last_err.unwrap_or_else(|| ClientError::Transport(format!("cannot reach {authority}"))))
    }

    /// Docker's rule: listed by name, loopback, or resolving into a listed CIDR.
    async fn is_insecure(&self, authority: &str) -> bool {
        if self.policy.static_match(authority) {
            return true;
        }
        let host = host_of(authority);
        if host.parse::<IpAddr>().is_ok() {
            return false;
        }
        let lookup = tokio::net::lookup_host((host, 0));
        match tokio::time::timeout(self.connect_timeout, lookup).await {
            Ok(Ok(addrs)) => addrs.into_iter().any(|a| self.policy.addr_match(a.ip())),
            _ => false,
        }
    }
}

fn describe<B>(req: &Request<B>) -> String {
    let uri = req.uri();
    format!(
        "{} {}://{}{}",
        req.method(),
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map(|a| a.as_str()).unwrap_or("?"),
        uri.path()
    )
}

enum SendError {
    Hyper(legacy::Error),
    Timeout,
}

impl SendError {
    fn is_connect(&self) -> bool {
        match self {
            SendError::Hyper(e) => e.is_connect(),
            SendError::Timeout => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            SendError::Timeout => "timed out".into(),
            SendError::Hyper(e) => {
                let mut msg = String::new();
                let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
                while let Some(s) = src {
                    // The connector's message is the useful one; hyper's wrappers are generic.
                    if let Some(c) = s.downcast_ref::<ConnectError>() {
                        return c.message.clone();
                    }
                    if !msg.is_empty() {
                        msg.push_str(": ");
                    }
                    msg.push_str(&s.to_string());
                    src = s.source();
                }
                msg
            }
        }
    }

    fn into_client_error(self, what: &str) -> ClientError {
        if let SendError::Hyper(e) = &self {
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
            while let Some(s) = src {
                if let Some(c) = s.downcast_ref::<ConnectError>() {
                    return if c.timeout {
                        ClientError::Timeout(c.message.clone())
                    } else {
                        ClientError::Transport(c.message.clone())
                    };
                }
                src = s.source();
            }
        }
        match self {
            SendError::Timeout => ClientError::Timeout(format!("{what}: no response")),
            e => ClientError::Transport(format!("{what}: {}", e.describe())),
        }
    }
}

/// A response body as a stream of data chunks that fails with [`ClientError::Timeout`] when no
/// byte arrives for `idle`.
pub(crate) struct IdleBody {
    body: Incoming,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    done: bool,
}

impl IdleBody {
    pub(crate) fn new(body: Incoming, idle: Duration) -> IdleBody {
        IdleBody {
            body,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            done: false,
        }
    }

    /// Total length the server declared for this body, if any.
    pub(crate) fn exact_len(&self) -> Option<u64> {
        self.body.size_hint().exact()
    }
}

impl Stream for IdleBody {
    type Item = Result<Bytes, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = Instant::now() + this.idle;
                    this.sleep.as_mut().reset(deadline);
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Poll::Ready(Some(Ok(data)));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(ClientError::Transport(format!(
                        "reading response body: {e}"
                    )))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        this.done = true;
                        return Poll::Ready(Some(Err(ClientError::Timeout(format!(
                            "no data from registry for {:?}",
                            this.idle
                        )))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Reads a whole (small) body, refusing more than `limit` bytes, declared or sent.
pub(crate) async fn read_limited(
    resp: Response<Incoming>,
    limit: u64,
    what: &'static str,
    idle: Duration,
) -> Result<Bytes, ClientError> {
    use futures_util::StreamExt;
    if let Some(len) = content_length(resp.headers()) {
        if len > limit {
            return Err(ClientError::TooLarge { what, limit });
        }
    }
    let mut body = IdleBody::new(resp.into_body(), idle);
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(ClientError::TooLarge { what, limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Reads an error body (capped, best effort; errors give an empty body).
pub(crate) async fn error_body(resp: Response<Incoming>, idle: Duration) -> Bytes {
    read_limited(resp, MAX_ERROR_BODY, "error body", idle)
        .await
        .unwrap_or_default()
}

/// Reads and discards a small body so the connection can go back to the pool.
pub(crate) async fn drain(resp: Response<Incoming>, idle: Duration) {
    let _ = read_limited(resp, MAX_ERROR_BODY, "body", idle).await;
}

/// The Content-Length header, when present and well-formed.
pub(crate) fn content_length(h: &hyper::HeaderMap) -> Option<u64> {
    h.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// A failed connect as Go words it (`connect: connection refused`), which scripts match.
fn connect_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(_) => {
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or_default();
            format!("connect: {}", text.to_lowercase())
        }
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn connect_failures_read_as_gos() {
        // ECONNREFUSED on Linux.
        let e = std::io::Error::from_raw_os_error(111);
        assert_eq!(super::connect_text(&e), "connect: connection refused");
    }

    use super::*;

    #[test]
    fn insecure_policy() {
        let p = InsecurePolicy::parse(&[
            "myreg:5000".into(),
            "10.1.0.0/16".into(),
            "http://plain.example".into(),
        ])
        .unwrap();
        assert!(p.static_match("myreg:5000"));
        assert!(!p.static_match("myreg:5001"));
        assert!(p.static_match("plain.example"));
        assert!(p.static_match("localhost:5000"));
        assert!(p.static_match("127.0.0.1:5000"));
        assert!(p.static_match("127.9.9.9"));
        assert!(p.static_match("[::1]:5000"));
        assert!(p.static_match("10.1.2.3:443"));
        assert!(!p.static_match("10.2.2.3:443"));
        assert!(!p.static_match("registry-1.docker.io"));
        assert!(p.addr_match("::ffff:10.1.9.9".parse().unwrap()));
        assert!(InsecurePolicy::parse(&["10.0.0.0/40".into()]).is_err());
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("a.b:5000"), "a.b");
        assert_eq!(host_of("a.b"), "a.b");
        assert_eq!(host_of("[::1]:5000"), "::1");
        assert_eq!(host_of("[::1]"), "::1");
    }
}
