//! The HTTP server: accepts connections on the unix socket, routes each request (versioned or
//! not) to a handler, and maps every engine error to Docker's status and `{"message": ...}`.
//!
//! Routing is by hand: Docker's paths hold image names with slashes
//! (`/images/docker.io/library/busybox/json`), which pattern routers do not express.

mod body;
mod build;
pub mod busypoll;
mod containers;
mod exec;
mod hijack;
mod images;
mod networks;
mod swarm;
mod system;
mod volumes;
mod websocket;

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use berth_engine::{Engine, EngineError, ErrorKind};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

pub use body::Body;
use body::{empty, json, message};

/// Largest JSON request body accepted.
const MAX_JSON_BODY: usize = 16 << 20;

/// Facts about the daemon that `/info` and `/version` show.
#[derive(Debug, Clone, Default)]
pub struct DaemonInfo {
    pub version: String,
    pub warnings: Vec<String>,
}

pub(crate) struct Ctx {
    pub engine: Engine,
    pub info: DaemonInfo,
    pub inspect_cache: containers::InspectCache,
}

/// A request's parts after routing.
pub(crate) struct Req {
    pub method: Method,
    /// Path segments after the version prefix.
    pub segs: Vec<String>,
    pub query: HashMap<String, String>,
    pub api_version: (u32, u32),
    pub parts: hyper::http::request::Parts,
    pub body: Option<Incoming>,
}

impl Req {
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// Every value of a repeated query key (`changes=a&changes=b`).
    pub fn all(&self, key: &str) -> Vec<String> {
        self.parts
            .uri
            .query()
            .map(|q| {
                serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(k, _)| k == key)
                    .map(|(_, v)| v)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Docker's boolean query values: 1/true/True/yes are true; absent, 0, false are false.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.q(key), Some(v) if !matches!(v, "" | "0" | "false" | "False" | "no"))
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.q(key) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad(format!("invalid value for {key}: {v}"))),
        }
    }

    /// `filters` as Docker sends them: `{"k":["v"]}` or the legacy `{"k":{"v":true}}`.
    pub fn filters(&self) -> Result<HashMap<String, Vec<String>>, ApiError> {
        let Some(raw) = self.q("filters").filter(|s| !s.is_empty()) else {
            return Ok(HashMap::new());
        };
        let v: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| ApiError::bad(format!("invalid filter: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::bad("invalid filter: not an object"))?;
        let mut out = HashMap::new();
        for (k, vals) in obj {
            let list = match vals {
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                serde_json::Value::Object(o) => o
                    .iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(false))
                    .map(|(k, _)| k.clone())
                    .collect(),
                _ => return Err(ApiError::bad("invalid filter: bad value")),
            };
            out.insert(k.clone(), list);
        }
        Ok(out)
    }

    /// Reads and parses a JSON body (an empty body is `T::default()`).
    pub async fn json<T: serde::de::DeserializeOwned + Default>(&mut self) -> Result<T, ApiError> {
        let body = self.bytes(MAX_JSON_BODY).await?;
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(T::default());
        }
        let mut v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad(format!("invalid JSON: {e}")))?;
        strip_nulls(&mut v);
        serde_json::from_value(v).map_err(|e| ApiError::bad(format!("invalid JSON: {e}")))
    }

    pub async fn bytes(&mut self, limit: usize) -> Result<Bytes, ApiError> {
        let Some(body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        let limited = http_body_util::Limited::new(body, limit);
        match limited.collect().await {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) => Err(ApiError::bad(format!("reading request body: {e}"))),
        }
    }

    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.api_version >= (major, minor)
    }
}

/// Drops `null` members of every object in `v`, so a body decodes as Go's decoder reads it:
/// there a `null` leaves the field at its zero value, and SDKs send them (docker-py's
/// `IPAMPool` sends `"IPRange": null`, `"Gateway": null`), also for fields that are plain
/// strings here.
fn strip_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// An error on its way to the client.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: msg.into(),
        }
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: msg.into(),
        }
    }
}

/// The one place where an engine error becomes an HTTP status.
impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match e.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorKind::NotModified => StatusCode::NOT_MODIFIED,
            ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            status,
            message: e.to_string(),
        }
    }
}

pub(crate) type HandlerResult = Result<Response<Body>, ApiError>;

/// Serves the API on `listener` until the process ends. Each connection busy-polls for its
/// next request for `busy_poll` after a response ([`busypoll`]; zero turns it off).
pub async fn serve(
    engine: Engine,
    info: DaemonInfo,
    listener: UnixListener,
    busy_poll: std::time::Duration,
) {
    let ctx = Arc::new(Ctx {
        engine,
        info,
        inspect_cache: Default::default(),
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        let fd = hijack::ConnFd(std::os::fd::AsRawFd::as_raw_fd(&stream));
        tokio::spawn(async move {
            let conn = busypoll::poll_with(stream, busy_poll, |io, answers| {
                let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    let ctx = ctx.clone();
                    let answers = answers.clone();
                    req.extensions_mut().insert(fd);
                    async move {
                        let resp = handle(ctx, req).await;
                        Ok::<_, Infallible>(resp.map(|b| answers.track(b)))
                    }
                });
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), svc)
                    .with_upgrades()
            });
            if let Err(e) = conn.await {
                tracing::debug!("connection: {e}");
            }
        });
    }
}

/// Binds the API socket with mode 0660 (group `berth` if it exists), replacing a stale one.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = group_id("berth") {
        let _ = std::os::unix::fs::chown(path, None, Some(gid));
    }
    Ok(listener)
}

fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

fn parse_version(seg: &str) -> Option<(u32, u32)> {
    let v = seg.strip_prefix('v')?;
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(req.uri().query().unwrap_or("")).unwrap_or_default();
    let mut segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let max = parse_version(&format!("v{}", crate::API_VERSION)).unwrap_or((1, 50));
    let min = parse_version(&format!("v{}", crate::MIN_API_VERSION)).unwrap_or((1, 24));
    let mut api_version = max;
    if let Some(v) = segs.first().and_then(|s| parse_version(s)) {
        if v > max {
            return message(
                StatusCode::BAD_REQUEST,
                &format!(
                    "client version {}.{} is too new. Maximum supported API version is {}",
                    v.0,
                    v.1,
                    crate::API_VERSION
                ),
            );
        }
        if v < min {
            return message(
                StatusCode::BAD_REQUEST,
                &format!(
                    "client version {}.{} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
                    v.0,
                    v.1,
                    crate::MIN_API_VERSION
                ),
            );
        }
        api_version = v;
        segs.remove(0);
    }
    tracing::debug!(%method, %path, "request");
    let (parts, body) = req.into_parts();
    let r = Req {
        method,
        segs,
        query,
        api_version,
        parts,
        body: Some(body),
    };
    let result = route(&ctx, r).await;
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) if e.status == StatusCode::NOT_MODIFIED => {
            let mut r = empty(StatusCode::NOT_MODIFIED);
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        }
        Err(e) => message(e.status, &e.message),
    };
    let headers = resp.headers_mut();
    headers.insert(
        "Api-Version",
        hyper::header::HeaderValue::from_static(crate::API_VERSION),
    );
    headers.insert(
        "Docker-Experimental",
        hyper::header::HeaderValue::from_static("false"),
    );
    headers.insert("Ostype", hyper::header::HeaderValue::from_static("linux"));
    if let Ok(v) =
        hyper::header::HeaderValue::from_str(&format!("Berth/{} (linux)", ctx.info.version))
    {
        headers.insert("Server", v);
    }
    resp
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(
                std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                16,
            ) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn route(ctx: &Ctx, mut r: Req) -> HandlerResult {
    let segs: Vec<&str> = r.segs.iter().map(String::as_str).collect();
    let segs: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = r.method.clone();
    match (&m, s.as_slice()) {
        (&Method::GET | &Method::HEAD, ["_ping"]) => system::ping(&r),
        (&Method::GET, ["version"]) => system::version(ctx),
        (&Method::GET, ["info"]) => system::info(ctx, &r),
        (&Method::GET, ["events"]) => system::events(ctx, &r),
        (&Method::GET, ["system", "df"]) => system::df(ctx, &r),

        (&Method::GET, ["containers", "json"]) => containers::list(ctx, &r),
        (&Method::POST, ["containers", "create"]) => containers::create(ctx, &mut r).await,
        (&Method::POST, ["containers", "prune"]) => containers::prune(ctx, &r).await,
        (&Method::POST, ["images", "prune"]) => images::prune(ctx, &r),
        (&Method::POST, ["build", "prune"]) => build::prune(ctx, &r).await,
        (&Method::POST, ["build"]) => build::build(ctx, r).await,
        (&Method::POST, ["containers", id, "update"]) => {
            let id = id.to_string();
            containers::update(ctx, &mut r, &id).await
        }
        (&Method::GET, ["containers", id, "json"]) => containers::inspect(ctx, &r, id),
        (&Method::POST, ["containers", id, "start"]) => {
            let id = id.to_string();
            containers::start(ctx, &mut r, &id).await
        }
        (&Method::POST, ["containers", id, "stop"]) => containers::stop(ctx, &r, id).await,
        (&Method::POST, ["containers", id, "restart"]) => containers::restart(ctx, &r, id).await,
        (&Method::POST, ["containers", id, "kill"]) => containers::kill(ctx, &r, id).await,
        (&Method::POST, ["containers", id, "wait"]) => containers::wait(ctx, &r, id),
        (&Method::DELETE, ["containers", id]) => containers::remove(ctx, &r, id).await,
        (&Method::POST, ["containers", id, "pause"]) => containers::pause(ctx, id, true).await,
        (&Method::POST, ["containers", id, "unpause"]) => containers::pause(ctx, id, false).await,
        (&Method::POST, ["containers", id, "rename"]) => containers::rename(ctx, &r, id).await,
        (&Method::POST, ["containers", id, "resize"]) => containers::resize(ctx, &r, id).await,
        (&Method::GET, ["containers", id, "top"]) => containers::top(ctx, &r, id).await,
        (&Method::GET, ["containers", id, "logs"]) => containers::logs(ctx, &r, id),
        (&Method::GET, ["containers", id, "stats"]) => containers::stats(ctx, &r, id).await,
        (&Method::GET, ["containers", id, "changes"]) => containers::changes(ctx, id).await,
        (&Method::GET, ["containers", id, "export"]) => containers::export(ctx, id).await,
        (&Method::HEAD, ["containers", id, "archive"]) => {
            containers::archive_head(ctx, &r, id).await
        }
        (&Method::GET, ["containers", id, "archive"]) => containers::archive_get(ctx, &r, id).await,
        (&Method::PUT, ["containers", id, "archive"]) => {
            let id = id.to_string();
            containers::archive_put(ctx, r, &id).await
        }
        (&Method::GET, ["containers", id, "attach", "ws"]) => {
            let id = id.to_string();
            containers::attach_ws(ctx, r, &id)
        }
        (&Method::POST, ["containers", id, "attach"]) => {
            let id = id.to_string();
            containers::attach(ctx, r, &id)
        }
        (&Method::POST, ["containers", id, "exec"]) => exec::create(ctx, &mut r, id).await,
        (&Method::POST, ["exec", id, "start"]) => {
            let id = id.to_string();
            exec::start(ctx, r, &id).await
        }
        (&Method::POST, ["exec", id, "resize"]) => exec::resize(ctx, &r, id).await,
        (&Method::GET, ["exec", id, "json"]) => exec::inspect(ctx, id),

        (&Method::GET, ["networks"]) => networks::list(ctx, &r),
        (&Method::POST, ["networks", "create"]) => networks::create(ctx, &mut r).await,
        (&Method::POST, ["networks", "prune"]) => networks::prune(ctx, &r).await,
        (&Method::GET, ["networks", id]) => networks::inspect(ctx, &r, id),
        (&Method::DELETE, ["networks", id]) => networks::remove(ctx, id).await,
        (&Method::POST, ["networks", id, "connect"]) => {
            let id = id.to_string();
            networks::connect(ctx, &mut r, &id).await
        }
        (&Method::POST, ["networks", id, "disconnect"]) => {
            let id = id.to_string();
            networks::disconnect(ctx, &mut r, &id).await
        }
        (&Method::GET, ["volumes"]) => volumes::list(ctx, &r),
        (&Method::POST, ["volumes", "create"]) => volumes::create(ctx, &mut r).await,
        (&Method::POST, ["volumes", "prune"]) => volumes::prune(ctx, &r),
        (&Method::GET, ["volumes", name]) => volumes::inspect(ctx, name),
        (&Method::DELETE, ["volumes", name]) => volumes::remove(ctx, &r, name),

        (&Method::GET, ["images", "json"]) => images::list(ctx, &r),
        (&Method::GET, ["images", "search"]) => images::search(ctx, &r).await,
        (&Method::GET, ["images", "get"]) => images::save(ctx, r.all("names")).await,
        (&Method::POST, ["images", "load"]) => images::load(ctx, r).await,
        (&Method::POST, ["commit"]) => images::commit(ctx, r).await,
        (&Method::POST, ["auth"]) => images::auth(ctx, r).await,
        (&Method::POST, ["images", name @ .., "push"]) if !name.is_empty() => {
            images::push(ctx, &r, &name.join("/")).await
        }
        (&Method::GET, ["images", name @ .., "get"]) if !name.is_empty() => {
            images::save(ctx, vec![name.join("/")]).await
        }
        (&Method::POST, ["images", "create"]) => images::create(ctx, r).await,
        (&Method::GET, ["distribution", name @ .., "json"]) if !name.is_empty() => {
            images::distribution(ctx, &r, &name.join("/")).await
        }
        (&Method::GET, ["images", name @ .., "json"]) if !name.is_empty() => {
            images::inspect(ctx, &r, &name.join("/"))
        }
        (&Method::GET, ["images", name @ .., "history"]) if !name.is_empty() => {
            images::history(ctx, &name.join("/"))
        }
        (&Method::POST, ["images", name @ .., "tag"]) if !name.is_empty() => {
            images::tag(ctx, &r, &name.join("/"))
        }
        (&Method::DELETE, ["images", name @ ..]) if !name.is_empty() => {
            images::remove(ctx, &r, &name.join("/")).await
        }
        _ => swarm::route(&m, &s).unwrap_or_else(|| {
            Err(ApiError::not_found(format!(
                "page not found: {} {}",
                m,
                r.parts.uri.path()
            )))
        }),
    }
}

pub(crate) fn ok_json<T: serde::Serialize>(v: &T) -> HandlerResult {
    Ok(json(StatusCode::OK, v))
}
