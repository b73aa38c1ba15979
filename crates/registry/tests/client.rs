//! The distribution client against fake registries (hyper servers on 127.0.0.1 that check
//! credentials, lie about digests, ignore ranges, redirect, stall), and against the real
//! distribution registry when `/usr/bin/docker-registry` is installed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use berth_registry::client::{Client, ClientConfig, ClientError, Credentials, Repository};
use berth_registry::media;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

type Body = UnsyncBoxBody<Bytes, Infallible>;
type Reply = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
type Handler = Arc<dyn Fn(Req) -> Reply + Send + Sync>;

/// A request as the fake registry saw it (body read whole).
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    query: HashMap<String, Vec<String>>,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn q(&self, k: &str) -> Option<&str> {
        self.query
            .get(k)
            .and_then(|v| v.first())
            .map(|s| s.as_str())
    }
}

struct Fake {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Req>>>,
    conns: Arc<AtomicUsize>,
}

impl Fake {
    fn host(&self) -> String {
        self.addr.to_string()
    }
    fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }
}

/// Starts a fake registry; `make` gets the bound address (for realms and redirects).
async fn serve<F, H, Fut>(make: F) -> Fake
where
    F: FnOnce(SocketAddr) -> H,
    H: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = make(addr);
    let handler: Handler = Arc::new(move |r| Box::pin(h(r)));
    let log = Arc::new(Mutex::new(Vec::new()));
    let conns = Arc::new(AtomicUsize::new(0));
    let (log2, conns2) = (log.clone(), conns.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            conns2.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let log = log2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    let log = log.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let mut query: HashMap<String, Vec<String>> = HashMap::new();
                        if let Some(q) = parts.uri.query() {
                            let pairs: Vec<(String, String)> =
                                serde_urlencoded::from_str(q).unwrap_or_default();
                            for (k, v) in pairs {
                                query.entry(k).or_default().push(v);
                            }
                        }
                        let r = Req {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_string(),
                            query,
                            headers: parts.headers,
                            body,
                        };
                        log.lock().unwrap().push(r.clone());
                        Ok::<_, Infallible>(handler(r).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Fake { addr, log, conns }
}

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<Body> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(body.into()).boxed_unsync()).unwrap()
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn client() -> Client {
    Client::new(ClientConfig {
        read_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    })
    .unwrap()
}

fn creds(user: &str, pass: &str) -> Credentials {
    Credentials {
        username: user.into(),
        password: pass.into(),
        ..Credentials::default()
    }
}

fn repo(c: &Client, fake: &Fake, name: &str, creds: Credentials) -> Repository {
    c.repository(&fake.host(), name, creds).unwrap()
}

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;

fn unauthorized(challenge: &str) -> Response<Body> {
    reply(
        401,
        &[
            ("www-authenticate", challenge),
            ("content-type", "application/json"),
        ],
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#,
    )
}

/// A registry whose token endpoint wants alice:secret and the pull scope of foo/bar.
async fn bearer_registry(token_requests: Arc<AtomicUsize>) -> Fake {
    serve(move |addr| {
        move |r: Req| {
            let token_requests = token_requests.clone();
            async move {
                if r.path == "/token" {
                    token_requests.fetch_add(1, Ordering::SeqCst);
                    let scopes = r.query.get("scope").cloned().unwrap_or_default();
                    if r.header("authorization") != Some(&basic("alice", "secret"))
                        || r.q("service") != Some("fake-registry")
                        || !(scopes.is_empty()
                            || scopes == vec!["repository:foo/bar:pull".to_string()])
                    {
                        return reply(401, &[], r#"{"details":"incorrect username or password"}"#);
                    }
                    return reply(200, &[], r#"{"token":"tok-1","expires_in":300}"#);
                }
                if r.header("authorization") != Some("Bearer tok-1") {
                    let scope = if r.path == "/v2/" {
                        String::new()
                    } else {
                        ",scope=\"repository:foo/bar:pull\"".into()
                    };
                    return unauthorized(&format!(
                        "Bearer realm=\"http://{addr}/token\",service=\"fake-registry\"{scope}"
                    ));
                }
                match r.path.as_str() {
                    "/v2/" => reply(200, &[], "{}"),
                    "/v2/foo/bar/manifests/latest" => {
                        reply(200, &[("content-type", media::OCI_MANIFEST)], MANIFEST)
                    }
                    _ => reply(404, &[], ""),
                }
            }
        }
    })
    .await
}

#[tokio::test]
async fn bearer_token_dance_and_cache() {
    let token_requests = Arc::new(AtomicUsize::new(0));
    let fake = bearer_registry(token_requests.clone()).await;
    let c = client();
    let r = repo(&c, &fake, "foo/bar", creds("alice", "secret"));
    let m = r.get_manifest("latest").await.unwrap();
    assert_eq!(m.media_type, media::OCI_MANIFEST);
    assert_eq!(m.digest, sha(MANIFEST.as_bytes()));
    assert_eq!(&m.bytes[..], MANIFEST.as_bytes());
    // Second fetch: the token is cached and sent up front.
    r.get_manifest("latest").await.unwrap();
    assert_eq!(token_requests.load(Ordering::SeqCst), 1);
    let manifest_gets: Vec<Req> = fake
        .requests()
        .into_iter()
        .filter(|q| q.path == "/v2/foo/bar/manifests/latest")
        .collect();
    assert_eq!(manifest_gets.len(), 3, "401, retry, cached");
    assert!(manifest_gets[0].header("authorization").is_none());
    assert_eq!(
        manifest_gets[1].header("authorization"),
        Some("Bearer tok-1")
    );
    assert_eq!(
        manifest_gets[2].header("authorization"),
        Some("Bearer tok-1")
    );
    let accept = manifest_gets[0].header("accept").unwrap();
    for t in media::MANIFEST_TYPES {
        assert!(accept.contains(t), "{accept}");
    }

    // Wrong password: the token endpoint's message comes through.
    let r = repo(&c, &fake, "foo/bar", creds("alice", "wrong"));
    let e = r.get_manifest("latest").await.unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized(_)), "{e:?}");
    assert!(
        e.to_string().contains("incorrect username or password"),
        "{e}"
    );

    // Login check does the same dance on /v2/.
    c.check_login(
        &format!("http://{}/", fake.host()),
        &creds("alice", "secret"),
    )
    .await
    .unwrap();
    let e = c
        .check_login(&fake.host(), &creds("alice", "nope"))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized(_)), "{e:?}");
}

#[tokio::test]
async fn basic_auth_and_registry_token() {
    let fake = serve(|_| {
        |r: Req| async move {
            let a = r.header("authorization").map(String::from);
            if a.as_deref() == Some(basic("bob", "pw").as_str())
                || a.as_deref() == Some("Bearer rt-9")
            {
                reply(200, &[("content-type", media::OCI_MANIFEST)], MANIFEST)
            } else {
                unauthorized("Basic realm=\"fake\"")
            }
        }
    })
    .await;
    let c = client();
    repo(&c, &fake, "x/y", creds("bob", "pw"))
        .get_manifest("v1")
        .await
        .unwrap();
    let e = repo(&c, &fake, "x/y", creds("bob", "bad"))
        .get_manifest("v1")
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized(_)), "{e:?}");
    assert_eq!(e.to_string(), "unauthorized: authentication required");
    let e = repo(&c, &fake, "x/y", Credentials::default())
        .get_manifest("v1")
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized(_)), "{e:?}");

    let before = fake.requests().len();
    let rt = Credentials {
        registry_token: "rt-9".into(),
        ..Credentials::default()
    };
    repo(&c, &fake, "x/y", rt).get_manifest("v1").await.unwrap();
    let after = fake.requests();
    assert_eq!(after.len(), before + 1, "registry token sent up front");
    assert_eq!(after[before].header("authorization"), Some("Bearer rt-9"));
}

#[tokio::test]
async fn manifest_digest_is_verified() {
    let other = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let fake = serve(|_| {
        |r: Req| async move {
            // Lies: always serves this index, with a generic content type (and, for the tag
            // "claims", a Docker-Content-Digest of other bytes).
            let claim = sha(MANIFEST.as_bytes());
            let mut headers = vec![("content-type", "application/json")];
            if r.path.ends_with("/claims") {
                headers.push(("docker-content-digest", &claim));
            }
            reply(
                200,
                &headers,
                &br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#[..],
            )
        }
    })
    .await;
    let c = client();
    let r = repo(&c, &fake, "a/b", Credentials::default());
    let asked = sha(MANIFEST.as_bytes());
    match r.get_manifest(&asked).await.unwrap_err() {
        ClientError::DigestMismatch { expected, actual } => {
            assert_eq!(expected, asked);
            assert_eq!(actual, sha(other));
        }
        e => panic!("{e:?}"),
    }
    assert!(matches!(
        r.get_manifest("claims").await.unwrap_err(),
        ClientError::DigestMismatch { .. }
    ));
    assert_eq!(r.get_manifest("latest").await.unwrap().digest, sha(other));
    let m = r.get_manifest(&sha(other)).await.unwrap();
    assert_eq!(
        m.media_type,
        media::OCI_INDEX,
        "from the JSON when the header is generic"
    );
    assert_eq!(m.digest, sha(other));
    assert!(matches!(
        r.get_manifest("../../etc").await.unwrap_err(),
        ClientError::InvalidArgument(_)
    ));
}

fn blob_data() -> Vec<u8> {
    (0..100_000u32).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn ranged_blob_reads() {
    let data = Arc::new(blob_data());
    let digest = sha(&data);
    let d2 = data.clone();
    let honours = serve(move |_| {
        move |r: Req| {
            let data = d2.clone();
            async move {
                let len = data.len();
                match r
                    .header("range")
                    .and_then(|v| v.strip_prefix("bytes="))
                    .and_then(|v| v.strip_suffix('-'))
                {
                    Some(start) => {
                        let s: usize = start.parse().unwrap();
                        reply(
                            206,
                            &[("content-range", &format!("bytes {s}-{}/{len}", len - 1))],
                            data[s..].to_vec(),
                        )
                    }
                    None => reply(200, &[], data.to_vec()),
                }
            }
        }
    })
    .await;
    let d3 = data.clone();
    let ignores = serve(move |_| {
        move |_r: Req| {
            let data = d3.clone();
            async move { reply(200, &[], data.to_vec()) }
        }
    })
    .await;
    let c = client();
    for (fake, honoured) in [(&honours, true), (&ignores, false)] {
        let r = repo(&c, fake, "a/b", Credentials::default());
        let s = r.get_blob(&digest, 12_345).await.unwrap();
        assert_eq!(s.size, Some(data.len() as u64));
        assert_eq!(s.offset, 12_345);
        let got: Vec<u8> = s.map(|c| c.unwrap().to_vec()).concat().await;
        assert_eq!(got, data[12_345..], "honoured={honoured}");
        let whole: Vec<u8> = r
            .get_blob(&digest, 0)
            .await
            .unwrap()
            .map(|c| c.unwrap().to_vec())
            .concat()
            .await;
        assert_eq!(whole, *data);
        let last = fake.requests().into_iter().rev().nth(1).unwrap();
        assert_eq!(last.header("range"), Some("bytes=12345-"));
        assert_eq!(last.path, format!("/v2/a/b/blobs/{digest}"));
    }
    let r = repo(&c, &ignores, "a/b", Credentials::default());
    assert!(matches!(
        r.get_blob(&digest, 1 << 30).await.unwrap_err(),
        ClientError::InvalidArgument(_)
    ));
}

#[tokio::test]
async fn redirect_to_other_host_drops_authorization() {
    let data = Arc::new(blob_data());
    let digest = sha(&data);
    let d2 = data.clone();
    let storage = serve(move |_| {
        move |r: Req| {
            let data = d2.clone();
            async move {
                if r.q("sig") == Some("ok") {
                    reply(200, &[], data.to_vec())
                } else {
                    reply(403, &[], "")
                }
            }
        }
    })
    .await;
    let storage_host = storage.host();
    let registry = serve(move |addr| {
        move |r: Req| {
            let storage_host = storage_host.clone();
            async move {
                if r.header("authorization") != Some(&basic("u", "p")) {
                    return unauthorized("Basic realm=\"r\"");
                }
                if r.path.ends_with("/loop") || r.path.contains("/blobs/sha256:0000") {
                    return reply(
                        307,
                        &[("location", &format!("http://{addr}/v2/a/b/loop"))],
                        "",
                    );
                }
                reply(
                    307,
                    &[(
                        "location",
                        &format!("http://{storage_host}/bucket/blob?sig=ok"),
                    )],
                    "",
                )
            }
        }
    })
    .await;
    let c = client();
    let r = repo(&c, &registry, "a/b", creds("u", "p"));
    let got: Vec<u8> = r
        .get_blob(&digest, 0)
        .await
        .unwrap()
        .map(|c| c.unwrap().to_vec())
        .concat()
        .await;
    assert_eq!(got, *data);
    let s = storage.requests();
    assert_eq!(s.len(), 1);
    assert!(
        s[0].header("authorization").is_none(),
        "credentials leaked to storage"
    );
    assert_eq!(s[0].path, "/bucket/blob");

    let e = r
        .get_blob(&format!("sha256:{}", "0".repeat(64)), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Protocol(ref m) if m.contains("redirects")),
        "{e:?}"
    );
}

#[tokio::test]
async fn registry_errors_are_propagated() {
    let fake = serve(|_| {
        |r: Req| async move {
            match r.path.as_str() {
                p if p.ends_with("/manifests/missing") => reply(
                    404,
                    &[("content-type", "application/json")],
                    r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"missing"}}]}"#,
                ),
                p if p.ends_with("/manifests/denied") => reply(
                    403,
                    &[],
                    r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
                ),
                p if p.ends_with("/manifests/broken") => reply(500, &[], "<html>internal</html>"),
                _ => reply(400, &[], r#"{"errors":[{"code":"TAG_INVALID","message":"manifest tag did not match URI"}]}"#),
            }
        }
    })
    .await;
    let c = client();
    let r = repo(&c, &fake, "a/b", Credentials::default());
    let e = r.get_manifest("missing").await.unwrap_err();
    assert!(matches!(e, ClientError::NotFound(_)), "{e:?}");
    assert_eq!(e.to_string(), "manifest unknown: manifest unknown");
    assert_eq!(e.remote().unwrap().code(), Some("MANIFEST_UNKNOWN"));
    let e = r.get_manifest("denied").await.unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "denied: requested access to the resource is denied"
    );
    let e = r.get_manifest("broken").await.unwrap_err();
    assert!(
        matches!(e, ClientError::Status(ref x) if x.status == 500),
        "{e:?}"
    );
    let e = r
        .put_manifest(
            "other",
            media::OCI_MANIFEST,
            Bytes::from_static(MANIFEST.as_bytes()),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("tag invalid: manifest tag did not match URI"),
        "{e}"
    );
}

#[tokio::test]
async fn oversized_manifest_is_refused() {
    let fake = serve(|_| {
        |r: Req| async move {
            let big = vec![b' '; 5 * 1024 * 1024];
            if r.path.ends_with("/declared") {
                reply(200, &[("content-type", media::OCI_MANIFEST)], big)
            } else {
                // No Content-Length: chunked, so only counting catches it.
                let chunks = big
                    .chunks(64 * 1024)
                    .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::copy_from_slice(c))))
                    .collect::<Vec<_>>();
                let body = StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync();
                Response::builder()
                    .header("content-type", media::OCI_MANIFEST)
                    .body(body)
                    .unwrap()
            }
        }
    })
    .await;
    let c = client();
    let r = repo(&c, &fake, "a/b", Credentials::default());
    for tag in ["declared", "chunked"] {
        let e = r.get_manifest(tag).await.unwrap_err();
        assert!(
            matches!(
                e,
                ClientError::TooLarge {
                    what: "manifest",
                    ..
                }
            ),
            "{tag}: {e:?}"
        );
    }
}

#[tokio::test]
async fn stalled_responses_time_out() {
    let fake = serve(|_| {
        |r: Req| async move {
            if r.path.ends_with("/manifests/never") || r.method == "PUT" {
                std::future::pending::<()>().await;
            }
            if r.method == "POST" {
                return reply(202, &[("location", "/v2/a/b/blobs/uploads/u")], "");
            }
            let first = futures_util::stream::iter(vec![Ok::<_, Infallible>(Frame::data(
                Bytes::from_static(b"0123456789"),
            ))]);
            let body = StreamBody::new(first.chain(futures_util::stream::pending())).boxed_unsync();
            Response::builder()
                .header("content-length", "1000")
                .body(body)
                .unwrap()
        }
    })
    .await;
    let c = Client::new(ClientConfig {
        read_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    })
    .unwrap();
    let r = repo(&c, &fake, "a/b", Credentials::default());
    let started = std::time::Instant::now();
    let mut s = r.get_blob(&sha(b"x"), 0).await.unwrap();
    assert_eq!(&s.next().await.unwrap().unwrap()[..], b"0123456789");
    let e = s.next().await.unwrap().unwrap_err();
    assert!(matches!(e, ClientError::Timeout(_)), "{e:?}");
    assert!(s.next().await.is_none());
    let e = r.get_manifest("never").await.unwrap_err();
    assert!(matches!(e, ClientError::Timeout(_)), "{e:?}");
    // An upload whose response never comes fails once the body is out and nothing moves.
    let e = r
        .push_blob(
            &sha(b"abc"),
            3,
            std::io::Cursor::new(b"abc".to_vec()),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Timeout(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// What the fake registry kept: digest or tag -> (content type, body).
type Stored = HashMap<String, (Option<String>, Bytes)>;

#[tokio::test]
async fn push_blob_and_manifest() {
    let stored: Arc<Mutex<Stored>> = Arc::default();
    let st = stored.clone();
    let fake = serve(move |_| {
        move |r: Req| {
            let stored = st.clone();
            async move {
                match (r.method.as_str(), r.path.as_str()) {
                    ("POST", "/v2/foo/bar/blobs/uploads/") => reply(
                        202,
                        &[("location", "/v2/foo/bar/blobs/uploads/u-1?_state=abc")],
                        "",
                    ),
                    ("PUT", "/v2/foo/bar/blobs/uploads/u-1") => {
                        let digest = r.q("digest").unwrap_or_default().to_string();
                        assert_eq!(r.q("_state"), Some("abc"));
                        if sha(&r.body) != digest {
                            return reply(400, &[], r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#);
                        }
                        stored.lock().unwrap().insert(digest, (None, r.body.clone()));
                        reply(201, &[], "")
                    }
                    ("PUT", p) if p.starts_with("/v2/foo/bar/manifests/") => {
                        let tag = p.rsplit('/').next().unwrap().to_string();
                        let ct = r.header("content-type").map(String::from);
                        stored.lock().unwrap().insert(tag, (ct, r.body.clone()));
                        reply(201, &[("docker-content-digest", &sha(&r.body))], "")
                    }
                    _ => reply(404, &[], ""),
                }
            }
        }
    })
    .await;
    let c = client();
    let r = repo(&c, &fake, "foo/bar", Credentials::default());
    let data = blob_data();
    let digest = sha(&data);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let progress = move |n: u64| seen2.lock().unwrap().push(n);
    r.push_blob(
        &digest,
        data.len() as u64,
        std::io::Cursor::new(data.clone()),
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(stored.lock().unwrap()[&digest].1, data);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.last(), Some(&(data.len() as u64)));
    assert!(seen.windows(2).all(|w| w[0] <= w[1]));

    // A reader shorter than announced is the caller's mistake, said as such.
    let e = r
        .push_blob(
            &digest,
            data.len() as u64 + 10,
            std::io::Cursor::new(data.clone()),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::InvalidArgument(_)), "{e:?}");
    // A wrong digest is refused by the registry, with its message.
    let e = r
        .push_blob(
            &sha(b"other"),
            data.len() as u64,
            std::io::Cursor::new(data.clone()),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("digest invalid"), "{e}");

    let d = r
        .put_manifest(
            "v1",
            media::OCI_MANIFEST,
            Bytes::from_static(MANIFEST.as_bytes()),
        )
        .await
        .unwrap();
    assert_eq!(d, sha(MANIFEST.as_bytes()));
    let (ct, body) = stored.lock().unwrap()["v1"].clone();
    assert_eq!(ct.as_deref(), Some(media::OCI_MANIFEST));
    assert_eq!(body, MANIFEST.as_bytes());
    let e = r
        .put_manifest(
            &sha(b"nope"),
            media::OCI_MANIFEST,
            Bytes::from_static(MANIFEST.as_bytes()),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::DigestMismatch { .. }), "{e:?}");
}

#[tokio::test]
async fn mount_exists_and_tags() {
    let fake = serve(|_| {
        |r: Req| async move {
            match (r.method.as_str(), r.path.as_str()) {
                ("POST", "/v2/foo/bar/blobs/uploads/") => {
                    if r.q("from") == Some("foo/src") && r.q("mount").is_some() {
                        reply(201, &[], "")
                    } else {
                        reply(202, &[("location", "/v2/foo/bar/blobs/uploads/u-9")], "")
                    }
                }
                ("DELETE", "/v2/foo/bar/blobs/uploads/u-9") => reply(204, &[], ""),
                ("HEAD", p) if p.ends_with(&"1".repeat(64)) => {
                    reply(200, &[("content-length", "42")], "")
                }
                ("HEAD", _) => reply(404, &[], ""),
                ("GET", "/v2/foo/bar/tags/list") => match r.q("last") {
                    None => reply(
                        200,
                        &[("link", "</v2/foo/bar/tags/list?last=b&n=2>; rel=\"next\"")],
                        r#"{"name":"foo/bar","tags":["a","b"]}"#,
                    ),
                    Some("b") => reply(200, &[], r#"{"name":"foo/bar","tags":["c"]}"#),
                    _ => reply(400, &[], ""),
                },
                _ => reply(404, &[], ""),
            }
        }
    })
    .await;
    let c = client();
    let r = repo(&c, &fake, "foo/bar", Credentials::default());
    let d1 = format!("sha256:{}", "1".repeat(64));
    let d2 = format!("sha256:{}", "2".repeat(64));
    assert!(r.mount_blob(&d1, "foo/src").await.unwrap());
    assert!(!r.mount_blob(&d1, "elsewhere/x").await.unwrap());
    assert!(
        fake.requests()
            .iter()
            .any(|q| q.method == "DELETE" && q.path == "/v2/foo/bar/blobs/uploads/u-9")
    );
    assert_eq!(r.blob_exists(&d1).await.unwrap(), Some(42));
    assert_eq!(r.blob_exists(&d2).await.unwrap(), None);
    assert_eq!(r.list_tags().await.unwrap(), vec!["a", "b", "c"]);
}

#[tokio::test]
async fn parallel_pulls_reuse_connections() {
    let data = Arc::new(blob_data());
    let d2 = data.clone();
    let fake = serve(move |_| {
        move |_r: Req| {
            let data = d2.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                reply(200, &[], data.to_vec())
            }
        }
    })
    .await;
    let c = client();
    let r = repo(&c, &fake, "a/b", Credentials::default());
    let digest = sha(&data);
    for _ in 0..3 {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let r = r.clone();
            let digest = digest.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = r.get_blob(&digest, 0).await.unwrap();
                let mut n = 0;
                while let Some(c) = s.next().await {
                    n += c.unwrap().len();
                }
                n
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), data.len());
        }
        // Finished connections go back to the pool from their own tasks; give them a moment
        // (hyper races a new connection against the pool's idle ones).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..8 {
        r.blob_exists(&digest).await.unwrap();
    }
    // 4 parallel connections, plus the HTTPS probe and the plain-HTTP probe of the scheme.
    let conns = fake.conns.load(Ordering::SeqCst);
    assert!(conns <= 6, "{conns} connections for 20 requests");
}

#[tokio::test]
async fn docker_hub_pulls_go_to_the_mirror() {
    let fake = serve(|_| {
        |r: Req| async move {
            if r.path == "/v2/library/busybox/manifests/latest" {
                reply(200, &[("content-type", media::OCI_MANIFEST)], MANIFEST)
            } else {
                reply(404, &[], "")
            }
        }
    })
    .await;
    let c = Client::new(ClientConfig {
        mirrors: vec![format!("http://{}", fake.host())],
        ..ClientConfig::default()
    })
    .unwrap();
    let r = c
        .repository("docker.io", "busybox", creds("hubuser", "hubpass"))
        .unwrap();
    assert_eq!(r.name(), "library/busybox");
    assert_eq!(r.registry(), "registry-1.docker.io");
    let m = r.get_manifest("latest").await.unwrap();
    assert_eq!(m.digest, sha(MANIFEST.as_bytes()));
    assert!(
        fake.requests()
            .iter()
            .all(|q| q.header("authorization").is_none())
    );
}

#[test]
fn registry_auth_header_decoding() {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    let json = r#"{"username":"al?ce","password":"p>ss~~","serveraddress":"localhost:5000"}"#;
    for enc in [
        URL_SAFE.encode(json),
        URL_SAFE_NO_PAD.encode(json),
        STANDARD.encode(json),
    ] {
        let c = Credentials::from_registry_auth_header(&enc).unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("al?ce", "p>ss~~")
        );
    }
    let c = Credentials::from_registry_auth_header(
        &URL_SAFE.encode(r#"{"Username":"u","IdentityToken":"it","registrytoken":"rt"}"#),
    )
    .unwrap();
    assert_eq!(
        (
            c.username.as_str(),
            c.identity_token.as_str(),
            c.registry_token.as_str()
        ),
        ("u", "it", "rt")
    );
    let c = Credentials::from_registry_auth_header(
        &URL_SAFE.encode(format!(r#"{{"auth":"{}"}}"#, STANDARD.encode("x:y:z"))),
    )
    .unwrap();
    assert_eq!((c.username.as_str(), c.password.as_str()), ("x", "y:z"));
    for anon in [
        "",
        "{}",
        " ",
        &URL_SAFE.encode("{}"),
        &URL_SAFE.encode("null"),
    ] {
        assert!(
            Credentials::from_registry_auth_header(anon)
                .unwrap()
                .is_anonymous(),
            "{anon:?}"
        );
    }
    for bad in ["!!!", &URL_SAFE.encode("[1]"), &URL_SAFE.encode("not json")] {
        assert!(matches!(
            Credentials::from_registry_auth_header(bad),
            Err(ClientError::InvalidArgument(_))
        ));
    }
    let dbg = format!("{:?}", creds("u", "secret"));
    assert!(!dbg.contains("secret"), "{dbg}");
}

/// The real distribution registry as a child process, killed on drop.
struct RealRegistry {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_real_registry() -> Option<RealRegistry> {
    let bin = "/usr/bin/docker-registry";
    if !std::path::Path::new(bin).exists() {
        eprintln!("skipping: {bin} is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
        dir.path().join("data").display()
    );
    let cfg_path = dir.path().join("config.yml");
    std::fs::write(&cfg_path, config).unwrap();
    let child = std::process::Command::new(bin)
        .arg("serve")
        .arg(&cfg_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let reg = RealRegistry {
        child,
        addr: addr.clone(),
        _dir: dir,
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            return Some(reg);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("docker-registry did not start on {addr}");
}

#[tokio::test]
async fn real_distribution_registry_round_trip() {
    let Some(reg) = start_real_registry().await else {
        return;
    };
    let c = client();
    let r = c
        .repository(&reg.addr, "berth/test", Credentials::default())
        .unwrap();
    let layer: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let (ld, cd) = (sha(&layer), sha(&config));
    assert_eq!(r.blob_exists(&ld).await.unwrap(), None);
    for (d, b) in [(&ld, &layer), (&cd, &config)] {
        r.push_blob(d, b.len() as u64, std::io::Cursor::new(b.clone()), &|_| {})
            .await
            .unwrap();
    }
    assert_eq!(r.blob_exists(&ld).await.unwrap(), Some(layer.len() as u64));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{ld}","size":{}}}]}}"#,
        media::OCI_MANIFEST,
        media::OCI_CONFIG,
        config.len(),
        media::OCI_LAYER,
        layer.len()
    );
    let md = r
        .put_manifest("v1", media::OCI_MANIFEST, Bytes::from(manifest.clone()))
        .await
        .unwrap();
    r.put_manifest("v2", media::OCI_MANIFEST, Bytes::from(manifest.clone()))
        .await
        .unwrap();
    let mut tags = r.list_tags().await.unwrap();
    tags.sort();
    assert_eq!(tags, vec!["v1", "v2"]);

    let m = r.get_manifest("v1").await.unwrap();
    assert_eq!(m.bytes, manifest.as_bytes());
    assert_eq!(m.digest, md);
    assert_eq!(m.media_type, media::OCI_MANIFEST);
    assert_eq!(
        r.get_manifest(&md).await.unwrap().bytes,
        manifest.as_bytes()
    );
    let e = r.get_manifest("nope").await.unwrap_err();
    assert!(matches!(e, ClientError::NotFound(_)), "{e:?}");
    assert!(e.to_string().contains("manifest unknown"), "{e}");

    let got: Vec<u8> = r
        .get_blob(&cd, 0)
        .await
        .unwrap()
        .map(|c| c.unwrap().to_vec())
        .concat()
        .await;
    assert_eq!(got, config);
    let s = r.get_blob(&ld, 1000).await.unwrap();
    assert_eq!(s.size, Some(layer.len() as u64));
    let got: Vec<u8> = s.map(|c| c.unwrap().to_vec()).concat().await;
    assert_eq!(got, layer[1000..]);

    let other = c
        .repository(&reg.addr, "berth/other", Credentials::default())
        .unwrap();
    assert!(other.mount_blob(&ld, "berth/test").await.unwrap());
    assert_eq!(
        other.blob_exists(&ld).await.unwrap(),
        Some(layer.len() as u64)
    );
    let e = other
        .get_blob(&format!("sha256:{}", "3".repeat(64)), 0)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::NotFound(_)), "{e:?}");
}
