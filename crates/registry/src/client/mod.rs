//! Pulling from and pushing to distribution registries.
//!
//! [`Client`] holds what is shared across operations: a pooled hyper 1 client with rustls (ring)
//! and the remembered scheme per host ([`transport`]), and the auth challenges and bearer
//! tokens per (host, scope, credentials) ([`auth`]). [`Client::repository`] gives a
//! [`Repository`] bound to one repository and one set of [`Credentials`], with the protocol's
//! operations: manifests (verified against their digest), blobs streamed from an offset with
//! redirects followed, existence checks, cross-repository mounts, uploads, tag lists; and
//! image search ([`search`]).
//!
//! Behaviour follows Docker's: `docker.io` means `registry-1.docker.io` and pulls from it try
//! the configured mirrors first; registries listed as insecure (by `host[:port]` or CIDR) and
//! loopback ones get HTTPS without certificate checks, falling back to plain HTTP when HTTPS
//! cannot be connected to. Everything the network sends is size-capped and time-bounded.

mod auth;
mod error;
mod names;
mod search;
mod tls;
mod transport;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderValue, LINK,
    LOCATION, RANGE,
};
use hyper::{Method, Request, Response, StatusCode, Uri};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};

pub use auth::Credentials;
pub use error::{ClientError, ErrorEntry, RemoteError};
pub use search::SearchResult;

use crate::media;
use auth::AuthCache;
use transport::{IdleBody, InsecurePolicy, ReqBody, Transport};

/// Largest manifest (or index) accepted, and largest tag-list page.
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;
/// Redirects followed for one blob request.
const MAX_REDIRECTS: usize = 5;
/// Tag-list pages followed.
const MAX_TAG_PAGES: usize = 1000;
/// Chunk size of streamed uploads.
const UPLOAD_CHUNK: usize = 64 * 1024;
/// Where `docker.io` references go.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// How the client connects. Build it explicitly; [`Default`] gives Docker's defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Registries to reach without certificate checks, with plain-HTTP fallback:
    /// `host[:port]` names or CIDRs (`10.0.0.0/8`). Loopback is always insecure.
    pub insecure_registries: Vec<String>,
    /// Pull-through mirrors for `docker.io` (`https://mirror.example`), tried in order before
    /// Docker Hub, for pulls only.
    pub mirrors: Vec<String>,
    /// `User-Agent` of every request.
    pub user_agent: String,
    /// Bound on DNS + TCP connect + TLS handshake.
    pub connect_timeout: Duration,
    /// Bound on waiting for a response head, and on a body (or an upload) making no progress.
    pub read_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            insecure_registries: Vec::new(),
            mirrors: Vec::new(),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).to_string(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// A registry (or mirror) base: fixed scheme for mirrors, probed for registries.
#[derive(Debug, Clone)]
struct Endpoint {
    scheme: Option<&'static str>,
    authority: String,
    mirror: bool,
}

struct Inner {
    transport: Transport,
    auth: AuthCache,
    mirrors: Vec<Endpoint>,
    /// The settings as given, for `info`.
    insecure_given: Vec<String>,
    mirrors_given: Vec<String>,
}

/// A paginated listing: its first path, what it is (for errors), and how many pages at most.
struct PageWalk<'a> {
    path: &'a str,
    what: &'static str,
    max: usize,
}

/// The distribution client. Cheap to clone; clones share connections, schemes and tokens.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("mirrors", &self.inner.mirrors)
            .finish_non_exhaustive()
    }
}

/// A manifest as fetched.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The bytes exactly as served (the digest is over these).
    pub bytes: Bytes,
    /// Media type: the `Content-Type`, or the JSON's `mediaType` when the header is generic.
    pub media_type: String,
    /// `sha256:...` of the bytes (or the algorithm of the digest asked for).
    pub digest: String,
}

/// A blob body being streamed. Yields the bytes from `offset` on; fails with
/// [`ClientError::Timeout`] when the registry goes silent for the read timeout. The caller
/// verifies the digest of what it reads.
pub struct BlobStream {
    /// Total size of the blob, when the registry said.
    pub size: Option<u64>,
    /// Offset of the first byte this stream yields.
    pub offset: u64,
    body: IdleBody,
    skip: u64,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("size", &self.size)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.body).poll_next(cx) {
                Poll::Ready(Some(Ok(mut chunk))) => {
                    if this.skip > 0 {
                        let n = this.skip.min(chunk.len() as u64);
                        this.skip -= n;
                        chunk = chunk.slice(n as usize..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(None) if this.skip > 0 => {
                    this.skip = 0;
                    return Poll::Ready(Some(Err(ClientError::Protocol(
                        "blob ended before the requested offset".into(),
                    ))));
                }
                other => return other,
            }
        }
    }
}

impl Client {
    /// Builds a client. Fails on an unparsable insecure-registry entry or mirror URL.
    pub fn new(cfg: ClientConfig) -> Result<Client, ClientError> {
        let policy = InsecurePolicy::parse(&cfg.insecure_registries)?;
        let mut mirrors = Vec::new();
        for m in &cfg.mirrors {
            mirrors.push(parse_mirror(m)?);
        }
        let transport = Transport::new(
            policy,
            &cfg.user_agent,
            cfg.connect_timeout,
            cfg.read_timeout,
        )?;
        Ok(Client {
            inner: Arc::new(Inner {
                transport,
                auth: AuthCache::default(),
                mirrors,
                insecure_given: cfg.insecure_registries,
                mirrors_given: cfg.mirrors,
            }),
        })
    }

    /// The insecure registries (names and CIDRs) and the mirrors this client was made with.
    pub fn settings(&self) -> (&[String], &[String]) {
        (&self.inner.insecure_given, &self.inner.mirrors_given)
    }

    /// A handle on `repo` (`library/busybox`) at `domain` (as in references: `docker.io`,
    /// `localhost:5000`). A one-component repository on Docker Hub gets `library/`.
    pub fn repository(
        &self,
        domain: &str,
        repo: &str,
        creds: Credentials,
    ) -> Result<Repository, ClientError> {
        let (authority, hub) = normalize_domain(domain)?;
        let repo = if hub && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo.to_string()
        };
        names::check_repository(&repo)?;
        let upstream = Endpoint {
            scheme: None,
            authority,
            mirror: false,
        };
        let mut pull = if hub {
            self.inner.mirrors.clone()
        } else {
            Vec::new()
        };
        pull.push(upstream.clone());
        Ok(Repository {
            client: self.clone(),
            upstream,
            pull,
            repo,
            creds,
        })
    }

    /// Streams any `http(s)://` URL (`docker import URL`), redirects followed, with the
    /// same TLS, timeouts and size reporting as blobs. Certificates are always checked.
    pub async fn get_url(&self, url: &str) -> Result<BlobStream, ClientError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| ClientError::InvalidArgument(format!("invalid URL {url:?}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(ClientError::InvalidArgument(format!(
                "invalid URL {url:?}: only http and https are supported"
            )));
        }
        let inner = &self.inner;
        let req = build_uri(Method::GET, uri.clone(), None, transport::empty())?;
        let resp = inner.transport.send(req).await?;
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_ascii_lowercase())
            .unwrap_or_default();
        let a = Authed {
            resp,
            auth: None,
            uri,
        };
        let resp = inner.follow(&authority, a, Method::GET, None).await?;
        if resp.status() != StatusCode::OK {
            return Err(inner.status_error(resp).await);
        }
        let body = IdleBody::new(resp.into_body(), inner.transport.read_timeout);
        Ok(BlobStream {
            size: body.exact_len(),
            offset: 0,
            body,
            skip: 0,
        })
    }

    /// Login check: `GET /v2/` with the credentials, answering the challenge; Ok on 200.
    /// `server` may be a host (`localhost:5000`), a URL, or Docker's
    /// `https://index.docker.io/v1/`.
    pub async fn check_login(&self, server: &str, creds: &Credentials) -> Result<(), ClientError> {
        let s = server.trim();
        let s = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s);
        let host = s.split('/').next().unwrap_or("");
        let (authority, _) = normalize_domain(host)?;
        let ep = Endpoint {
            scheme: None,
            authority,
            mirror: false,
        };
        let mut mk = |base: &str, auth: Option<&HeaderValue>| {
            build(
                Method::GET,
                &format!("{base}/v2/"),
                auth,
                transport::empty(),
            )
        };
        let a = self.inner.request(&ep, creds, &[], &mut mk).await?;
        let t = &self.inner.transport;
        if a.resp.status() == StatusCode::OK {
            transport::drain(a.resp, t.read_timeout).await;
            return Ok(());
        }
        Err(self.inner.status_error(a.resp).await)
    }
}

fn parse_mirror(m: &str) -> Result<Endpoint, ClientError> {
    let bad = |why: &str| ClientError::InvalidArgument(format!("registry mirror {m:?}: {why}"));
    let uri: Uri = m.trim().parse().map_err(|_| bad("not a URL"))?;
    let scheme = match uri.scheme_str() {
        Some("https") => "https",
        Some("http") => "http",
        _ => return Err(bad("scheme must be http or https")),
    };
    let authority = uri.authority().ok_or_else(|| bad("no host"))?.as_str();
    if authority.contains('@') {
        return Err(bad("credentials in the URL"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("must not have a path or query"));
    }
    names::check_authority(authority)?;
    Ok(Endpoint {
        scheme: Some(scheme),
        authority: authority.to_ascii_lowercase(),
        mirror: true,
    })
}

/// `(authority to connect to, is Docker Hub)`.
fn normalize_domain(domain: &str) -> Result<(String, bool), ClientError> {
    let d = domain.trim().to_ascii_lowercase();
    match d.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            Ok((DOCKER_HUB_HOST.to_string(), true))
        }
        _ => {
            names::check_authority(&d)?;
            Ok((d, false))
        }
    }
}

fn build(
    method: Method,
    url: &str,
    auth: Option<&HeaderValue>,
    body: ReqBody,
) -> Result<Request<ReqBody>, ClientError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| ClientError::InvalidArgument(format!("bad URL {url:?}")))?;
    build_uri(method, uri, auth, body)
}

fn build_uri(
    method: Method,
    uri: Uri,
    auth: Option<&HeaderValue>,
    body: ReqBody,
) -> Result<Request<ReqBody>, ClientError> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        b = b.header(AUTHORIZATION, a.clone());
    }
    b.body(body)
        .map_err(|e| ClientError::InvalidArgument(e.to_string()))
}

/// A response obtained through the auth dance, with the `Authorization` it carried.
struct Authed {
    resp: Response<Incoming>,
    auth: Option<HeaderValue>,
    uri: Uri,
}

type MakeRequest<'a> =
    dyn FnMut(&str, Option<&HeaderValue>) -> Result<Request<ReqBody>, ClientError> + Send + 'a;

impl Inner {
    /// GETs `walk.path` and then each page its `Link: <...>; rel="next"` names on the same
    /// host, at most `walk.max` pages, handing each page's body (size-capped) to `page`,
    /// which says whether to go on. True when the pages ended (or `page` stopped), false at
    /// the limit.
    async fn paginate(
        &self,
        ep: &Endpoint,
        creds: &Credentials,
        scopes: &[String],
        walk: PageWalk<'_>,
        page: &mut (dyn FnMut(&[u8]) -> Result<bool, ClientError> + Send),
    ) -> Result<bool, ClientError> {
        let PageWalk { path, what, max } = walk;
        let mut next: Option<Uri> = None;
        for _ in 0..max {
            let target = next.clone();
            let mut mk = |base: &str, auth: Option<&HeaderValue>| match &target {
                Some(u) => build_uri(Method::GET, u.clone(), auth, transport::empty()),
                None => build(
                    Method::GET,
                    &format!("{base}{path}"),
                    auth,
                    transport::empty(),
                ),
            };
            let a = self.request(ep, creds, scopes, &mut mk).await?;
            if a.resp.status() != StatusCode::OK {
                return Err(self.status_error(a.resp).await);
            }
            let link = a
                .resp
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(names::next_link)
                .map(|l| names::resolve(&a.uri, l));
            let body = transport::read_limited(
                a.resp,
                MAX_MANIFEST_SIZE,
                what,
                self.transport.read_timeout,
            )
            .await?;
            if !page(&body)? {
                return Ok(true);
            }
            match link {
                None => return Ok(true),
                Some(l) => {
                    let l = l?;
                    if l.authority().map(|x| x.as_str().to_ascii_lowercase())
                        != a.uri.authority().map(|x| x.as_str().to_ascii_lowercase())
                    {
                        return Err(ClientError::Protocol(format!(
                            "{what} pagination points at another host"
                        )));
                    }
                    next = Some(l);
                }
            }
        }
        Ok(false)
    }

    /// Sends a (replayable) request to an endpoint: picks the scheme, attaches what the auth
    /// cache has, and on a 401 answers the challenge and retries once. The returned response
    /// can still be any status.
    async fn request(
        &self,
        ep: &Endpoint,
        creds: &Credentials,
        scopes: &[String],
        mk: &mut MakeRequest<'_>,
    ) -> Result<Authed, ClientError> {
        let t = &self.transport;
        let scheme = match ep.scheme {
            Some(s) => s,
            None => t.scheme(&ep.authority).await?,
        };
        let base = format!("{scheme}://{}", ep.authority);
        // Mirrors are pull-through caches configured by the daemon's owner: the user's
        // Docker Hub credentials are not handed to them.
        let anonymous = Credentials::default();
        let creds = if ep.mirror { &anonymous } else { creds };
        let auth = self
            .auth
            .authorization(t, &ep.authority, scopes, &[], creds, false)
            .await?;
        let req = mk(&base, auth.as_ref())?;
        let uri = req.uri().clone();
        let resp = t.send(req).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(Authed { resp, auth, uri });
        }
        let Some(challenge) = auth::pick_challenge(resp.headers()) else {
            return Ok(Authed { resp, auth, uri });
        };
        let extra: Vec<String> = match &challenge {
            auth::Challenge::Bearer { scope: Some(s), .. } => s
                .split(' ')
                .filter(|s| !s.is_empty())
                .take(8)
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        };
        self.auth.set_challenge(&ep.authority, challenge);
        let retry = self
            .auth
            .authorization(t, &ep.authority, scopes, &extra, creds, true)
            .await?;
        if retry.is_none() || retry == auth {
            return Ok(Authed { resp, auth, uri });
        }
        transport::drain(resp, t.read_timeout).await;
        let req = mk(&base, retry.as_ref())?;
        let uri = req.uri().clone();
        let resp = t.send(req).await?;
        Ok(Authed {
            resp,
            auth: retry,
            uri,
        })
    }

    /// Follows redirects (GET/HEAD of blobs): up to [`MAX_REDIRECTS`], keeping `Range`,
    /// sending `Authorization` only to the registry's own host.
    async fn follow(
        &self,
        ep_authority: &str,
        mut a: Authed,
        method: Method,
        range: Option<HeaderValue>,
    ) -> Result<Response<Incoming>, ClientError> {
        let t = &self.transport;
        for _ in 0..MAX_REDIRECTS {
            let status = a.resp.status();
            if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                return Ok(a.resp);
            }
            let loc = a
                .resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| ClientError::Protocol(format!("{status} without a Location")))?;
            let next = names::resolve(&a.uri, loc)?;
            transport::drain(a.resp, t.read_timeout).await;
            let same_host = next.authority().map(|x| x.as_str().to_ascii_lowercase())
                == Some(ep_authority.to_string());
            let auth = if same_host { a.auth.as_ref() } else { None };
            let mut req = build_uri(method.clone(), next.clone(), auth, transport::empty())?;
            if let Some(r) = &range {
                req.headers_mut().insert(RANGE, r.clone());
            }
            tracing::debug!(to = %next.authority().map(|a| a.as_str()).unwrap_or(""), "following redirect");
            let resp = t.send(req).await?;
            a = Authed {
                resp,
                auth: auth.cloned(),
                uri: next,
            };
        }
        if a.resp.status().is_redirection() {
            return Err(ClientError::Protocol(format!(
                "more than {MAX_REDIRECTS} redirects"
            )));
        }
        Ok(a.resp)
    }

    /// The typed error for a failing response, with the registry's error body.
    async fn status_error(&self, resp: Response<Incoming>) -> ClientError {
        let status = resp.status().as_u16();
        let body = transport::error_body(resp, self.transport.read_timeout).await;
        let remote = RemoteError::from_body(status, &body);
        match status {
            404 => ClientError::NotFound(remote),
            401 | 403 => ClientError::Unauthorized(remote),
            _ => ClientError::Status(remote),
        }
    }
}

/// One repository on one registry, with the credentials its operations use.
#[derive(Clone)]
pub struct Repository {
    client: Client,
    upstream: Endpoint,
    /// Mirrors (Docker Hub only), then the registry.
    pull: Vec<Endpoint>,
    repo: String,
    creds: Credentials,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("registry", &self.upstream.authority)
            .field("repo", &self.repo)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct MediaTypeProbe {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    layers: Option<serde_json::Value>,
}

impl Repository {
    /// The registry host requests go to (`registry-1.docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        &self.upstream.authority
    }

    /// The repository path (`library/busybox`).
    pub fn name(&self) -> &str {
        &self.repo
    }

    fn scope_pull(&self) -> Vec<String> {
        vec![format!("repository:{}:pull", self.repo)]
    }

    fn scope_push(&self) -> Vec<String> {
        vec![format!("repository:{}:pull,push", self.repo)]
    }

    /// Runs `op` on each pull endpoint (mirrors first); a mirror's failure falls through to
    /// the next endpoint, the registry's is returned.
    async fn on_pull_endpoints<T, F, Fut>(&self, mut op: F) -> Result<T, ClientError>
    where
        F: FnMut(Endpoint) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut last = None;
        for ep in &self.pull {
            match op(ep.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if ep.mirror => {
                    tracing::info!(mirror = %ep.authority, error = %e, "mirror failed, trying next endpoint");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::InvalidArgument("no endpoint".into())))
    }

    /// Fetches a manifest or index by tag or digest (mirrors first for Docker Hub). The bytes
    /// are capped at [`MAX_MANIFEST_SIZE`]; by digest, they must hash to it.
    pub async fn get_manifest(&self, reference: &str) -> Result<Fetched, ClientError> {
        names::check_reference(reference)?;
        self.on_pull_endpoints(|ep| async move { self.get_manifest_at(&ep, reference).await })
            .await
    }

    async fn get_manifest_at(
        &self,
        ep: &Endpoint,
        reference: &str,
    ) -> Result<Fetched, ClientError> {
        let inner = &self.client.inner;
        let accept = media::MANIFEST_TYPES.join(", ");
        let path = format!("/v2/{}/manifests/{reference}", self.repo);
        let mut mk = |base: &str, auth: Option<&HeaderValue>| {
            let mut r = build(
                Method::GET,
                &format!("{base}{path}"),
                auth,
                transport::empty(),
            )?;
            r.headers_mut().insert(
                ACCEPT,
                HeaderValue::from_str(&accept)
                    .map_err(|_| ClientError::InvalidArgument("accept header".into()))?,
            );
            Ok(r)
        };
        let a = inner
            .request(ep, &self.creds, &self.scope_pull(), &mut mk)
            .await?;
        if a.resp.status() != StatusCode::OK {
            return Err(inner.status_error(a.resp).await);
        }
        let header_type = a
            .resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        // By tag, the registry's own `Docker-Content-Digest` (when well-formed) must agree
        // too, as containerd checks: a registry that names one digest and serves other
        // bytes is lying.
        let claimed = a
            .resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|d| names::digest_algorithm(d).is_some())
            .map(String::from);
        let bytes = transport::read_limited(
            a.resp,
            MAX_MANIFEST_SIZE,
            "manifest",
            inner.transport.read_timeout,
        )
        .await?;
        let digest = match names::digest_algorithm(reference) {
            Some(alg) => {
                let actual = names::digest_of(alg, &bytes);
                if actual != reference {
                    return Err(ClientError::DigestMismatch {
                        expected: reference.to_string(),
                        actual,
                    });
                }
                actual
            }
            None => {
                if let Some(claimed) = claimed {
                    let alg = names::digest_algorithm(&claimed).unwrap_or("sha256");
                    let actual = names::digest_of(alg, &bytes);
                    if actual != claimed {
                        return Err(ClientError::DigestMismatch {
                            expected: claimed,
                            actual,
                        });
                    }
                }
                names::digest_of("sha256", &bytes)
            }
        };
        let media_type = if is_generic_type(&header_type) {
            let probe: MediaTypeProbe = serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Protocol(format!("manifest is not JSON: {e}")))?;
            match probe.media_type.filter(|m| !m.is_empty()) {
                Some(m) => m,
                None if probe.manifests.is_some() => media::OCI_INDEX.to_string(),
                None if probe.layers.is_some() => media::OCI_MANIFEST.to_string(),
                None => {
                    return Err(ClientError::Protocol(
                        "cannot tell the manifest's media type".into(),
                    ));
                }
            }
        } else {
            header_type
        };
        Ok(Fetched {
            bytes,
            media_type,
            digest,
        })
    }

    /// Streams a blob from byte `offset` (a `Range` request; when the registry ignores it and
    /// sends everything, the first `offset` bytes are skipped here). Redirects are followed,
    /// without `Authorization` to other hosts. Mirrors first for Docker Hub.
    pub async fn get_blob(&self, digest: &str, offset: u64) -> Result<BlobStream, ClientError> {
        names::check_digest(digest)?;
        self.on_pull_endpoints(|ep| async move { self.get_blob_at(&ep, digest, offset).await })
            .await
    }

    async fn get_blob_at(
        &self,
        ep: &Endpoint,
        digest: &str,
        offset: u64,
    ) -> Result<BlobStream, ClientError> {
        let inner = &self.client.inner;
        let range = if offset > 0 {
            Some(
                HeaderValue::from_str(&format!("bytes={offset}-"))
                    .map_err(|_| ClientError::InvalidArgument("range".into()))?,
            )
        } else {
            None
        };
        let path = format!("/v2/{}/blobs/{digest}", self.repo);
        let mut mk = |base: &str, auth: Option<&HeaderValue>| {
            let mut r = build(
                Method::GET,
                &format!("{base}{path}"),
                auth,
                transport::empty(),
            )?;
            if let Some(range) = &range {
                r.headers_mut().insert(RANGE, range.clone());
            }
            Ok(r)
        };
        let a = inner
            .request(ep, &self.creds, &self.scope_pull(), &mut mk)
            .await?;
        let resp = inner
            .follow(&ep.authority, a, Method::GET, range.clone())
            .await?;
        let idle = inner.transport.read_timeout;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT if offset > 0 => {
                let (start, total) = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range)
                    .ok_or_else(|| {
                        ClientError::Protocol("206 without a valid Content-Range".into())
                    })?;
                if start != offset {
                    return Err(ClientError::Protocol(format!(
                        "asked for bytes from {offset}, got from {start}"
                    )));
                }
                Ok(BlobStream {
                    size: total,
                    offset,
                    body: IdleBody::new(resp.into_body(), idle),
                    skip: 0,
                })
            }
            StatusCode::OK => {
                let body = IdleBody::new(resp.into_body(), idle);
                let size = body.exact_len();
                if let Some(size) = size {
                    if offset > size {
                        return Err(ClientError::InvalidArgument(format!(
                            "offset {offset} is past the blob's end ({size})"
                        )));
                    }
                }
                Ok(BlobStream {
                    size,
                    offset,
                    body,
                    skip: offset,
                })
            }
            StatusCode::RANGE_NOT_SATISFIABLE => Err(ClientError::InvalidArgument(format!(
                "offset {offset} is past the blob's end"
            ))),
            _ => Err(inner.status_error(resp).await),
        }
    }

    /// `HEAD` of a blob: its size when present, `None` when the registry does not have it.
    pub async fn blob_exists(&self, digest: &str) -> Result<Option<u64>, ClientError> {
        names::check_digest(digest)?;
        let inner = &self.client.inner;
        let path = format!("/v2/{}/blobs/{digest}", self.repo);
        let mut mk = |base: &str, auth: Option<&HeaderValue>| {
            build(
                Method::HEAD,
                &format!("{base}{path}"),
                auth,
                transport::empty(),
            )
        };
        let a = inner
            .request(&self.upstream, &self.creds, &self.scope_push(), &mut mk)
            .await?;
        let resp = inner
            .follow(&self.upstream.authority, a, Method::HEAD, None)
            .await?;
        match resp.status() {
            StatusCode::OK => {
                let len = transport::content_length(resp.headers());
                transport::drain(resp, inner.transport.read_timeout).await;
                len.map(Some).ok_or_else(|| {
                    ClientError::Protocol("blob HEAD without a Content-Length".into())
                })
            }
            StatusCode::NOT_FOUND => {
                transport::drain(resp, inner.transport.read_timeout).await;
                Ok(None)
            }
            _ => Err(inner.status_error(resp).await),
        }
    }

    /// Cross-repository mount of `digest` from `from_repo` on the same registry. `Ok(true)`
    /// when mounted; `Ok(false)` when the registry opened an upload instead (cancelled here).
    pub async fn mount_blob(&self, digest: &str, from_repo: &str) -> Result<bool, ClientError> {
        names::check_digest(digest)?;
        names::check_repository(from_repo)?;
        let inner = &self.client.inner;
        let t = &inner.transport;
        let query = serde_urlencoded::to_string([("mount", digest), ("from", from_repo)])
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let path = format!("/v2/{}/blobs/uploads/?{query}", self.repo);
        let mut scopes = self.scope_push();
        scopes.push(format!("repository:{from_repo}:pull"));
        let mut mk = |base: &str, auth: Option<&HeaderValue>| {
            build(
                Method::POST,
                &format!("{base}{path}"),
                auth,
                transport::empty(),
            )
        };
        let a = inner
            .request(&self.upstream, &self.creds, &scopes, &mut mk)
            .await?;
        match a.resp.status() {
            StatusCode::CREATED => {
                transport::drain(a.resp, t.read_timeout).await;
                Ok(true)
            }
            StatusCode::ACCEPTED => {
                let location = a
                    .resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(|l| names::resolve(&a.uri, l));
                transport::drain(a.resp, t.read_timeout).await;
                if let Some(Ok(loc)) = location {
                    self.cancel_upload(loc, a.auth.as_ref()).await;
                }
                Ok(false)
            }
            _ => Err(inner.status_error(a.resp).await),
        }
    }

    async fn cancel_upload(&self, loc: Uri, auth: Option<&HeaderValue>) {
        let inner = &self.client.inner;
        let same = loc.authority().map(|a| a.as_str().to_ascii_lowercase())
            == Some(self.upstream.authority.clone());
        let Ok(req) = build_uri(
            Method::DELETE,
            loc,
            if same { auth } else { None },
            transport::empty(),
        ) else {
            return;
        };
        match inner.transport.send(req).await {
            Ok(resp) => transport::drain(resp, inner.transport.read_timeout).await,
            Err(e) => tracing::debug!(error = %e, "cancelling upload failed"),
        }
    }

    /// Uploads a blob of `size` bytes read from `body`: `POST` an upload, then one `PUT
    /// ?digest=` streaming the body. `progress` sees the bytes sent so far. The reader must
    /// yield exactly `size` bytes (fewer is [`ClientError::InvalidArgument`]; more are not
    /// read).
    pub async fn push_blob<R>(
        &self,
        digest: &str,
        size: u64,
        body: R,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), ClientError>
    where
        R: AsyncRead + Send + 'static,
    {
        names::check_digest(digest)?;
        let inner = &self.client.inner;
        let t = &inner.transport;
        let scopes = self.scope_push();
        let path = format!("/v2/{}/blobs/uploads/", self.repo);
        let mut mk = |base: &str, auth: Option<&HeaderValue>| {
            let mut r = build(
                Method::POST,
                &format!("{base}{path}"),
                auth,
                transport::empty(),
            )?;
            r.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            Ok(r)
        };
        let a = inner
            .request(&self.upstream, &self.creds, &scopes, &mut mk)
            .await?;
        if a.resp.status() != StatusCode::ACCEPTED {
            return Err(inner.status_error(a.resp).await);
        }
        let location = a
            .resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::Protocol("upload started without a Location".into()))?;
        let upload = names::resolve(&a.uri, location)?;
        transport::drain(a.resp, t.read_timeout).await;
        let put_uri = names::with_query(&upload, &[("digest", digest)])?;
        let same = put_uri.authority().map(|x| x.as_str().to_ascii_lowercase())
            == Some(self.upstream.authority.clone());

        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let failure: Arc<Mutex<Option<ClientError>>> = Arc::new(Mutex::new(None));
        let stream = upload_stream(Box::pin(body), size, tx, failure.clone());
        let body = StreamBody::new(stream).boxed_unsync();
        let mut req = build_uri(
            Method::PUT,
            put_uri,
            if same { a.auth.as_ref() } else { None },
            body,
        )?;
        req.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(size));
        req.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let result = t.send_with_progress(req, rx, progress).await;
        if let Some(e) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        let resp = result?;
        if resp.status() != StatusCode::CREATED {
            return Err(inner.status_error(resp).await);
        }
        transport::drain(resp, t.read_timeout).await;
        progress(size);
        Ok(())
    }

    /// Uploads a manifest under a tag or its digest; returns its digest. Capped at
    /// [`MAX_MANIFEST_SIZE`]; by digest, the bytes must hash to it.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<String, ClientError> {
        names::check_reference(reference)?;
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(ClientError::TooLarge {
                what: "manifest",
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let digest = match names::digest_algorithm(reference) {
            Some(alg) => {
                let d = names::digest_of(alg, &bytes);
                if d != reference {
                    return Err(ClientError::DigestMismatch {
                        expected: reference.to_string(),
                        actual: d,
                    });
                }
                d
            }
            None => names::digest_of("sha256", &bytes),
        };
        let ct = HeaderValue::from_str(media_type)
            .map_err(|_| ClientError::InvalidArgument(format!("media type {media_type:?}")))?;
        let inner = &self.client.inner;
        let path = format!("/v2/{}/manifests/{reference}", self.repo);
        let mut mk = |base: &str, auth: Option<&HeaderValue>| {
            let mut r = build(
                Method::PUT,
                &format!("{base}{path}"),
                auth,
                transport::full(bytes.clone()),
            )?;
            r.headers_mut().insert(CONTENT_TYPE, ct.clone());
            r.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            Ok(r)
        };
        let a = inner
            .request(&self.upstream, &self.creds, &self.scope_push(), &mut mk)
            .await?;
        if !a.resp.status().is_success() {
            return Err(inner.status_error(a.resp).await);
        }
        if let Some(theirs) = a
            .resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            if theirs != digest {
                tracing::warn!(ours = %digest, %theirs, "registry reports another manifest digest");
            }
        }
        transport::drain(a.resp, inner.transport.read_timeout).await;
        Ok(digest)
    }

    /// All tags, following `Link: <...>; rel="next"` pagination on the same registry.
    pub async fn list_tags(&self) -> Result<Vec<String>, ClientError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut tags = Vec::new();
        let path = format!("/v2/{}/tags/list", self.repo);
        let complete = self
            .client
            .inner
            .paginate(
                &self.upstream,
                &self.creds,
                &self.scope_pull(),
                PageWalk {
                    path: &path,
                    what: "tag list",
                    max: MAX_TAG_PAGES,
                },
                &mut |body| {
                    let page: Page = serde_json::from_slice(body)
                        .map_err(|e| ClientError::Protocol(format!("tag list: {e}")))?;
                    tags.extend(page.tags.unwrap_or_default());
                    Ok(true)
                },
            )
            .await?;
        if !complete {
            return Err(ClientError::Protocol(format!(
                "tag list longer than {MAX_TAG_PAGES} pages"
            )));
        }
        Ok(tags)
    }
}

fn is_generic_type(ct: &str) -> bool {
    matches!(
        ct,
        "" | "application/json" | "text/plain" | "application/octet-stream" | "binary/octet-stream"
    )
}

/// `bytes start-end/total` (total may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => {
            let t: u64 = t.parse().ok()?;
            if end >= t {
                return None;
            }
            Some(t)
        }
    };
    Some((start, total))
}

type UploadFrame = Result<Frame<Bytes>, transport::BoxError>;

/// The body of a streamed upload: exactly `size` bytes from `reader`, progress on `tx`; a
/// short or failing reader records why in `failure` and ends the body with an error.
fn upload_stream(
    reader: Pin<Box<dyn AsyncRead + Send>>,
    size: u64,
    tx: tokio::sync::watch::Sender<u64>,
    failure: Arc<Mutex<Option<ClientError>>>,
) -> impl Stream<Item = UploadFrame> + Send + 'static {
    struct State {
        reader: Pin<Box<dyn AsyncRead + Send>>,
        sent: u64,
        done: bool,
        tx: tokio::sync::watch::Sender<u64>,
        failure: Arc<Mutex<Option<ClientError>>>,
    }
    let state = State {
        reader,
        sent: 0,
        done: false,
        tx,
        failure,
    };
    futures_util::stream::unfold(state, move |mut st| async move {
        if st.done || st.sent >= size {
            return None;
        }
        let want = (size - st.sent).min(UPLOAD_CHUNK as u64) as usize;
        let mut buf = vec![0u8; want];
        let err = match st.reader.read(&mut buf).await {
            Ok(0) => ClientError::InvalidArgument(format!(
                "blob body ended after {} of {size} bytes",
                st.sent
            )),
            Ok(n) => {
                buf.truncate(n);
                st.sent += n as u64;
                let _ = st.tx.send(st.sent);
                return Some((Ok(Frame::data(Bytes::from(buf))), st));
            }
            Err(e) => ClientError::Transport(format!("reading blob body: {e}")),
        };
        let msg = err.to_string();
        *st.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
        st.done = true;
        Some((Err(msg.into()), st))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 10-99/*"), Some((10, None)));
        assert_eq!(parse_content_range("bytes 10-9/100"), None);
        assert_eq!(parse_content_range("bytes 10-100/100"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn domains_and_mirrors() {
        assert_eq!(
            normalize_domain("docker.io").unwrap(),
            (DOCKER_HUB_HOST.to_string(), true)
        );
        assert_eq!(
            normalize_domain("Localhost:5000").unwrap(),
            ("localhost:5000".to_string(), false)
        );
        assert!(normalize_domain("a/b").is_err());
        assert!(parse_mirror("https://mirror.example").is_ok());
        assert!(parse_mirror("https://mirror.example/").is_ok());
        assert!(parse_mirror("https://mirror.example/v2/x").is_err());
        assert!(parse_mirror("ftp://mirror.example").is_err());
        assert!(parse_mirror("https://u:p@mirror.example").is_err());
    }

    #[test]
    fn client_and_repository_are_send_sync() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Client>();
        check::<Repository>();
    }
}
