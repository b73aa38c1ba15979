//! End-to-end tests of the registry server over real HTTP/1.1 on loopback.

use std::net::SocketAddr;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_registry::media;
use berth_registry::server::{GcOptions, Server, ServerConfig, collect_garbage_with};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256, Sha512};

/// A running server on a temporary root.
struct Registry {
    addr: SocketAddr,
    root: PathBuf,
    _dir: Option<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    auth: Option<String>,
}

impl Registry {
    async fn start() -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let mut r = Registry::start_at(&root, None).await;
        r._dir = Some(dir);
        r
    }

    async fn start_at(root: &Path, htpasswd: Option<PathBuf>) -> Registry {
        let server = Server::bind(ServerConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            root: root.to_path_buf(),
            htpasswd,
            tls_cert: None,
            tls_key: None,
        })
        .await
        .expect("bind");
        let addr = server.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(async move {
                    let _ = rx.await;
                })
                .await
                .expect("serve");
        });
        Registry {
            addr,
            root: root.to_path_buf(),
            _dir: None,
            stop: Some(tx),
            task: Some(task),
            auth: None,
        }
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .expect("server stops")
                .expect("server task");
        }
    }

    async fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &self.auth {
            all.push(("authorization", a));
        }
        request(self.addr, method, path, &all, body).await
    }

    async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[], b"").await
    }

    /// Monolithic upload; returns the digest.
    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = sha256(data);
        let r = self
            .req(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[("content-type", "application/octet-stream")],
                data,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        d
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Resp {
        self.req(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            body,
        )
        .await
    }

    /// Pushes config + one layer and an image manifest tagged `tag`; returns the manifest
    /// bytes and digest.
    async fn push_image(&self, repo: &str, tag: &str, seed: &str) -> (Vec<u8>, String) {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
        let layer = format!("layer of {seed}").into_bytes();
        let cd = self.push_blob(repo, config.as_bytes()).await;
        let ld = self.push_blob(repo, &layer).await;
        let m = image_manifest(
            media::OCI_MANIFEST,
            media::OCI_CONFIG,
            &cd,
            config.len(),
            &ld,
            layer.len(),
        );
        let r = self.put_manifest(repo, tag, media::OCI_MANIFEST, &m).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let d = sha256(&m);
        assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
        (m, d)
    }
}

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }

    fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// One request on a fresh HTTP/1.1 connection.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    let resp = sender.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn image_manifest(mt: &str, config_mt: &str, cd: &str, cl: usize, ld: &str, ll: usize) -> Vec<u8> {
    let layer_mt = if mt == media::DOCKER_MANIFEST {
        media::DOCKER_LAYER_GZIP
    } else {
        media::OCI_LAYER
    };
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "config": {"mediaType": config_mt, "digest": cd, "size": cl},
        "layers": [{"mediaType": layer_mt, "digest": ld, "size": ll}],
    }))
    .expect("json")
}

#[tokio::test]
async fn ping() {
    let mut r = Registry::start().await;
    let resp = r.get("/v2/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "{}");
    assert_eq!(
        resp.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert!(r.root.join("VERSION").is_file());
    let resp = r.get("/nope").await;
    assert_eq!(resp.status, 404);
    r.stop().await;
}

#[tokio::test]
async fn monolithic_upload_get_head_and_ranges() {
    let mut r = Registry::start().await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = r.push_blob("lib/app", &data).await;

    let head = r
        .req("HEAD", &format!("/v2/lib/app/blobs/{d}"), &[], b"")
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("100000"));
    assert_eq!(head.header("docker-content-digest"), Some(d.as_str()));
    assert!(head.body.is_empty());

    let get = r.get(&format!("/v2/lib/app/blobs/{d}")).await;
    assert_eq!(get.status, 200);
    assert_eq!(get.header("content-type"), Some("application/octet-stream"));
    assert_eq!(get.body, data);

    let part = r
        .req(
            "GET",
            &format!("/v2/lib/app/blobs/{d}"),
            &[("range", "bytes=10-19")],
            b"",
        )
        .await;
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 10-19/100000"));
    assert_eq!(part.body, &data[10..20]);

    let tail = r
        .req(
            "GET",
            &format!("/v2/lib/app/blobs/{d}"),
            &[("range", "bytes=99990-")],
            b"",
        )
        .await;
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, &data[99990..]);

    let bad = r
        .req(
            "GET",
            &format!("/v2/lib/app/blobs/{d}"),
            &[("range", "bytes=100000-")],
            b"",
        )
        .await;
    assert_eq!(bad.status, 416);
    assert_eq!(bad.header("content-range"), Some("bytes */100000"));

    // Another repository never got the blob.
    let other = r.get(&format!("/v2/other/blobs/{d}")).await;
    assert_eq!(other.status, 404);
    assert_eq!(other.error_code(), "BLOB_UNKNOWN");

    // Bad digests.
    let bad = r
        .get("/v2/lib/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e")
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_code(), "DIGEST_INVALID");
    let bad = r
        .get(&format!("/v2/lib/app/blobs/sha256:{}", "Z".repeat(64)))
        .await;
    assert_eq!(bad.error_code(), "DIGEST_INVALID");
    r.stop().await;
}

#[tokio::test]
async fn chunked_upload_with_out_of_order_chunk() {
    let mut r = Registry::start().await;
    let data = b"0123456789abcdefghij".to_vec();
    let d = sha256(&data);
    let start = r.req("POST", "/v2/chunky/blobs/uploads/", &[], b"").await;
    assert_eq!(start.status, 202);
    assert_eq!(start.header("range"), Some("0-0"));
    assert!(start.header("docker-upload-uuid").is_some());
    let loc = start.header("location").expect("location").to_owned();

    let c1 = r
        .req(
            "PATCH",
            &loc,
            &[
                ("content-range", "0-9"),
                ("content-type", "application/octet-stream"),
            ],
            &data[..10],
        )
        .await;
    assert_eq!(c1.status, 202, "{}", c1.text());
    assert_eq!(c1.header("range"), Some("0-9"));
    let loc = c1.header("location").expect("location").to_owned();

    // A chunk that does not start at the current offset.
    let ooo = r
        .req("PATCH", &loc, &[("content-range", "12-19")], &data[12..])
        .await;
    assert_eq!(ooo.status, 416);
    assert_eq!(ooo.error_code(), "BLOB_UPLOAD_INVALID");

    let status = r.get(&loc).await;
    assert_eq!(status.status, 204);
    assert_eq!(status.header("range"), Some("0-9"));

    // Chunk without Content-Range is appended.
    let c2 = r.req("PATCH", &loc, &[], &data[10..15]).await;
    assert_eq!(c2.status, 202);
    assert_eq!(c2.header("range"), Some("0-14"));

    // Final chunk with the PUT.
    let put = r
        .req(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[("content-range", "15-19")],
            &data[15..],
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(put.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        put.header("location"),
        Some(format!("/v2/chunky/blobs/{d}").as_str())
    );
    assert_eq!(r.get(&format!("/v2/chunky/blobs/{d}")).await.body, data);
    // The upload is gone.
    assert_eq!(r.get(&loc).await.status, 404);

    // Cancel an upload.
    let start = r.req("POST", "/v2/chunky/blobs/uploads/", &[], b"").await;
    let loc = start.header("location").expect("location").to_owned();
    assert_eq!(r.req("DELETE", &loc, &[], b"").await.status, 204);
    assert_eq!(r.get(&loc).await.status, 404);
    // Someone else's upload id in another repository.
    let start = r.req("POST", "/v2/chunky/blobs/uploads/", &[], b"").await;
    let id = start.header("docker-upload-uuid").expect("uuid").to_owned();
    let wrong = r.get(&format!("/v2/elsewhere/blobs/uploads/{id}")).await;
    assert_eq!(wrong.status, 404);
    assert_eq!(wrong.error_code(), "BLOB_UPLOAD_UNKNOWN");
    r.stop().await;
}

#[tokio::test]
async fn digest_mismatch_stores_nothing() {
    let mut r = Registry::start().await;
    let claimed = sha256(b"something else");
    let start = r.req("POST", "/v2/m/blobs/uploads/", &[], b"").await;
    let loc = start.header("location").expect("location").to_owned();
    let put = r
        .req(
            "PUT",
            &format!("{loc}?digest={claimed}"),
            &[],
            b"actual bytes",
        )
        .await;
    assert_eq!(put.status, 400);
    assert_eq!(put.error_code(), "DIGEST_INVALID");
    assert_eq!(r.get(&loc).await.status, 404, "upload discarded");
    assert_eq!(
        r.req("HEAD", &format!("/v2/m/blobs/{claimed}"), &[], b"")
            .await
            .status,
        404
    );
    let actual = sha256(b"actual bytes");
    assert_eq!(
        r.req("HEAD", &format!("/v2/m/blobs/{actual}"), &[], b"")
            .await
            .status,
        404
    );
    // Monolithic too.
    let mono = r
        .req(
            "POST",
            &format!("/v2/m/blobs/uploads/?digest={claimed}"),
            &[],
            b"actual bytes",
        )
        .await;
    assert_eq!(mono.status, 400);
    assert_eq!(mono.error_code(), "DIGEST_INVALID");
    let blobs = r.root.join("blobs/sha256");
    let stored = std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(stored, 0, "nothing stored");
    let uploads = std::fs::read_dir(r.root.join("uploads"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(uploads, 0, "no upload left behind");
    r.stop().await;
}

#[tokio::test]
async fn sha512_blob() {
    let mut r = Registry::start().await;
    let data = b"hashed with sha512";
    let d = format!("sha512:{}", hex::encode(Sha512::digest(data)));
    // Chunked, so the server hashes with sha256 first and must rehash.
    let start = r.req("POST", "/v2/big/blobs/uploads/", &[], b"").await;
    let loc = start.header("location").expect("location").to_owned();
    let put = r.req("PUT", &format!("{loc}?digest={d}"), &[], data).await;
    assert_eq!(put.status, 201, "{}", put.text());
    let get = r.get(&format!("/v2/big/blobs/{d}")).await;
    assert_eq!(get.status, 200);
    assert_eq!(get.body, data);
    assert_eq!(get.header("docker-content-digest"), Some(d.as_str()));
    // Monolithic with sha512.
    let data2 = b"second";
    let d2 = format!("sha512:{}", hex::encode(Sha512::digest(data2)));
    let mono = r
        .req(
            "POST",
            &format!("/v2/big/blobs/uploads/?digest={d2}"),
            &[],
            data2,
        )
        .await;
    assert_eq!(mono.status, 201);
    // Short sha512 hex is invalid.
    let bad = r
        .get(&format!("/v2/big/blobs/sha512:{}", "a".repeat(64)))
        .await;
    assert_eq!(bad.error_code(), "DIGEST_INVALID");
    r.stop().await;
}

#[tokio::test]
async fn manifests_by_tag_and_digest() {
    let mut r = Registry::start().await;
    let (m, d) = r.push_image("lib/app", "v1", "one").await;
    for reference in ["v1", d.as_str()] {
        let get = r
            .req(
                "GET",
                &format!("/v2/lib/app/manifests/{reference}"),
                &[("accept", media::OCI_MANIFEST)],
                b"",
            )
            .await;
        assert_eq!(get.status, 200);
        assert_eq!(get.body, m);
        assert_eq!(get.header("content-type"), Some(media::OCI_MANIFEST));
        assert_eq!(get.header("docker-content-digest"), Some(d.as_str()));
        let head = r
            .req(
                "HEAD",
                &format!("/v2/lib/app/manifests/{reference}"),
                &[],
                b"",
            )
            .await;
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("content-length"),
            Some(m.len().to_string().as_str())
        );
        assert!(head.body.is_empty());
    }
    assert_eq!(
        r.get("/v2/lib/app/manifests/nope").await.error_code(),
        "MANIFEST_UNKNOWN"
    );

    // Docker schema 2, pushed by digest.
    let config = br#"{"os":"linux","docker":true}"#;
    let layer = b"docker layer";
    let cd = r.push_blob("lib/app", config).await;
    let ld = r.push_blob("lib/app", layer).await;
    let dm = image_manifest(
        media::DOCKER_MANIFEST,
        media::DOCKER_CONFIG,
        &cd,
        config.len(),
        &ld,
        layer.len(),
    );
    let dd = sha256(&dm);
    let put = r
        .put_manifest("lib/app", &dd, media::DOCKER_MANIFEST, &dm)
        .await;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(
        put.header("location"),
        Some(format!("/v2/lib/app/manifests/{dd}").as_str())
    );
    let get = r.get(&format!("/v2/lib/app/manifests/{dd}")).await;
    assert_eq!(get.header("content-type"), Some(media::DOCKER_MANIFEST));
    assert_eq!(get.body, dm);

    // Pushed by a digest that is not the body's.
    let wrong = r
        .put_manifest("lib/app", &d, media::DOCKER_MANIFEST, &dm)
        .await;
    assert_eq!(wrong.status, 400);
    assert_eq!(wrong.error_code(), "DIGEST_INVALID");

    // A manifest referencing a missing blob.
    let missing = sha256(b"never pushed");
    let bad = image_manifest(
        media::OCI_MANIFEST,
        media::OCI_CONFIG,
        &cd,
        config.len(),
        &missing,
        12,
    );
    let put = r
        .put_manifest("lib/app", "broken", media::OCI_MANIFEST, &bad)
        .await;
    assert_eq!(put.status, 400);
    assert_eq!(put.error_code(), "MANIFEST_BLOB_UNKNOWN");
    // Blobs of another repository do not count.
    let put = r
        .put_manifest("other/repo", "v1", media::OCI_MANIFEST, &m)
        .await;
    assert_eq!(put.error_code(), "MANIFEST_BLOB_UNKNOWN");

    // Not JSON; media type mismatch.
    let put = r
        .put_manifest("lib/app", "junk", media::OCI_MANIFEST, b"not json")
        .await;
    assert_eq!(put.error_code(), "MANIFEST_INVALID");
    let put = r
        .put_manifest("lib/app", "junk", media::DOCKER_MANIFEST, &m)
        .await;
    assert_eq!(put.error_code(), "MANIFEST_INVALID");
    // Too large.
    let huge = vec![b' '; 4 * 1024 * 1024 + 1];
    let put = r
        .put_manifest("lib/app", "huge", media::OCI_MANIFEST, &huge)
        .await;
    assert_eq!(put.status, 413);

    // An index over both manifests, and one over a missing manifest.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [
            {"mediaType": media::OCI_MANIFEST, "digest": d, "size": m.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": media::DOCKER_MANIFEST, "digest": dd, "size": dm.len(),
             "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }))
    .expect("json");
    let put = r
        .put_manifest("lib/app", "multi", media::OCI_INDEX, &index)
        .await;
    assert_eq!(put.status, 201, "{}", put.text());
    let get = r.get("/v2/lib/app/manifests/multi").await;
    assert_eq!(get.header("content-type"), Some(media::OCI_INDEX));
    assert_eq!(get.body, index);
    let bad_index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": missing, "size": 1}],
    }))
    .expect("json");
    let put = r
        .put_manifest("lib/app", "badidx", media::OCI_INDEX, &bad_index)
        .await;
    assert_eq!(put.status, 404);
    assert_eq!(put.error_code(), "MANIFEST_UNKNOWN");
    r.stop().await;
}

#[tokio::test]
async fn tags_pagination_and_catalog() {
    let mut r = Registry::start().await;
    let (m, _) = r.push_image("pag/repo", "a", "x").await;
    for tag in ["d", "c", "b", "e"] {
        let put = r
            .put_manifest("pag/repo", tag, media::OCI_MANIFEST, &m)
            .await;
        assert_eq!(put.status, 201);
    }
    let all = r.get("/v2/pag/repo/tags/list").await;
    assert_eq!(
        all.json(),
        json!({"name": "pag/repo", "tags": ["a", "b", "c", "d", "e"]})
    );
    assert!(all.header("link").is_none());

    let p1 = r.get("/v2/pag/repo/tags/list?n=2").await;
    assert_eq!(p1.json()["tags"], json!(["a", "b"]));
    let link = p1.header("link").expect("link").to_owned();
    assert_eq!(link, "</v2/pag/repo/tags/list?n=2&last=b>; rel=\"next\"");
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .expect("url")
        .to_owned();
    let p2 = r.get(&next).await;
    assert_eq!(p2.json()["tags"], json!(["c", "d"]));
    let p3 = r.get("/v2/pag/repo/tags/list?n=2&last=d").await;
    assert_eq!(p3.json()["tags"], json!(["e"]));
    assert!(p3.header("link").is_none());

    let bad_n = r.get("/v2/pag/repo/tags/list?n=-1").await;
    assert_eq!(bad_n.status, 400);
    assert_eq!(bad_n.error_code(), "PAGINATION_NUMBER_INVALID");

    let unknown = r.get("/v2/no/such/tags/list").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error_code(), "NAME_UNKNOWN");

    r.push_blob("zeta", b"z").await;
    let cat = r.get("/v2/_catalog").await;
    assert_eq!(cat.json(), json!({"repositories": ["pag/repo", "zeta"]}));
    let cat = r.get("/v2/_catalog?n=1").await;
    assert_eq!(cat.json(), json!({"repositories": ["pag/repo"]}));
    assert!(cat.header("link").is_some());
    r.stop().await;
}

#[tokio::test]
async fn deletes() {
    let mut r = Registry::start().await;
    let (m, d) = r.push_image("del", "v1", "del").await;
    assert_eq!(
        r.put_manifest("del", "v2", media::OCI_MANIFEST, &m)
            .await
            .status,
        201
    );

    // Untag.
    assert_eq!(
        r.req("DELETE", "/v2/del/manifests/v2", &[], b"")
            .await
            .status,
        202
    );
    assert_eq!(r.get("/v2/del/manifests/v2").await.status, 404);
    assert_eq!(r.get("/v2/del/manifests/v1").await.status, 200);
    assert_eq!(
        r.req("DELETE", "/v2/del/manifests/v2", &[], b"")
            .await
            .status,
        404
    );

    // Delete by digest removes the remaining tag too.
    assert_eq!(
        r.req("DELETE", &format!("/v2/del/manifests/{d}"), &[], b"")
            .await
            .status,
        202
    );
    assert_eq!(r.get(&format!("/v2/del/manifests/{d}")).await.status, 404);
    assert_eq!(r.get("/v2/del/manifests/v1").await.status, 404);
    assert_eq!(r.get("/v2/del/tags/list").await.json()["tags"], json!([]));

    // Blob delete.
    let b = r.push_blob("del", b"to delete").await;
    assert_eq!(
        r.req("DELETE", &format!("/v2/del/blobs/{b}"), &[], b"")
            .await
            .status,
        202
    );
    let gone = r.get(&format!("/v2/del/blobs/{b}")).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.error_code(), "BLOB_UNKNOWN");

    // Unsupported method.
    let r405 = r.req("POST", "/v2/del/tags/list", &[], b"").await;
    assert_eq!(r405.status, 405);
    assert_eq!(r405.error_code(), "UNSUPPORTED");
    r.stop().await;
}

#[tokio::test]
async fn cross_repository_mount() {
    let mut r = Registry::start().await;
    let d = r.push_blob("src/repo", b"shared layer").await;
    let m = r
        .req(
            "POST",
            &format!("/v2/dst/repo/blobs/uploads/?mount={d}&from=src/repo"),
            &[],
            b"",
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text());
    assert_eq!(m.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        m.header("location"),
        Some(format!("/v2/dst/repo/blobs/{d}").as_str())
    );
    assert_eq!(
        r.get(&format!("/v2/dst/repo/blobs/{d}")).await.body,
        b"shared layer"
    );

    // From a repository that lacks the blob: a regular upload starts.
    let m = r
        .req(
            "POST",
            &format!("/v2/third/blobs/uploads/?mount={d}&from=empty/repo"),
            &[],
            b"",
        )
        .await;
    assert_eq!(m.status, 202);
    assert!(
        m.header("location")
            .is_some_and(|l| l.starts_with("/v2/third/blobs/uploads/"))
    );
    assert_eq!(r.get(&format!("/v2/third/blobs/{d}")).await.status, 404);
    r.stop().await;
}

#[tokio::test]
async fn referrers() {
    let mut r = Registry::start().await;
    let (m, subject) = r.push_image("ref", "v1", "subject").await;
    let empty = r.push_blob("ref", b"{}").await;
    let mut pushed = Vec::new();
    for (atype, note) in [
        ("application/vnd.example.sbom", "sbom"),
        ("application/vnd.example.sig", "sig"),
    ] {
        let art = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "artifactType": atype,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
            "subject": {"mediaType": media::OCI_MANIFEST, "digest": subject, "size": m.len()},
            "annotations": {"note": note},
        }))
        .expect("json");
        let ad = sha256(&art);
        let put = r.put_manifest("ref", &ad, media::OCI_MANIFEST, &art).await;
        assert_eq!(put.status, 201, "{}", put.text());
        assert_eq!(put.header("oci-subject"), Some(subject.as_str()));
        pushed.push((ad, art.len(), atype));
    }
    let list = r.get(&format!("/v2/ref/referrers/{subject}")).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.header("content-type"), Some(media::OCI_INDEX));
    let index = list.json();
    assert_eq!(index["mediaType"], media::OCI_INDEX);
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 2);
    for (d, size, atype) in &pushed {
        let desc = manifests
            .iter()
            .find(|m| m["digest"] == json!(d))
            .expect("referrer listed");
        assert_eq!(desc["size"], json!(size));
        assert_eq!(desc["artifactType"], json!(atype));
        assert_eq!(desc["mediaType"], media::OCI_MANIFEST);
        assert!(desc["annotations"]["note"].is_string());
    }
    let filtered = r
        .get(&format!(
            "/v2/ref/referrers/{subject}?artifactType=application/vnd.example.sig"
        ))
        .await;
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    let f = filtered.json();
    assert_eq!(f["manifests"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        f["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );

    // Nothing refers to the artifact itself.
    let none = r.get(&format!("/v2/ref/referrers/{}", pushed[0].0)).await;
    assert_eq!(none.json()["manifests"], json!([]));
    // Deleting a referrer removes it from the list.
    let del = r
        .req(
            "DELETE",
            &format!("/v2/ref/manifests/{}", pushed[0].0),
            &[],
            b"",
        )
        .await;
    assert_eq!(del.status, 202);
    let list = r.get(&format!("/v2/ref/referrers/{subject}")).await;
    assert_eq!(list.json()["manifests"].as_array().map(Vec::len), Some(1));
    r.stop().await;
}

#[tokio::test]
async fn path_traversal_is_rejected() {
    let mut r = Registry::start().await;
    let d = sha256(b"x");
    for path in [
        "/v2/../../etc/tags/list".to_owned(),
        "/v2/a/../../b/tags/list".to_owned(),
        "/v2/a/%2e%2e/tags/list".to_owned(),
        "/v2/A/tags/list".to_owned(),
        "/v2/a//b/tags/list".to_owned(),
        format!("/v2/../blobs/{d}"),
        "/v2/../blobs/uploads/".to_owned(),
    ] {
        let resp = r.get(&path).await;
        assert_eq!(resp.status, 400, "{path}: {}", resp.text());
        assert_eq!(resp.error_code(), "NAME_INVALID", "{path}");
    }
    let resp = r
        .req("POST", "/v2/..%2f..%2fetc/blobs/uploads/", &[], b"")
        .await;
    assert_eq!(resp.status, 400);

    let (m, _) = r.push_image("safe", "v1", "safe").await;
    for tag in ["..", ".hidden", "a%2f..%2f..%2fx", "-x"] {
        let put = r.put_manifest("safe", tag, media::OCI_MANIFEST, &m).await;
        assert_eq!(put.status, 400, "{tag}");
        assert_eq!(put.error_code(), "TAG_INVALID", "{tag}");
    }
    // Upload ids are ours only.
    for id in ["..", "..%2f..%2fVERSION", "abc"] {
        let resp = r.get(&format!("/v2/safe/blobs/uploads/{id}")).await;
        assert_eq!(resp.status, 404, "{id}");
        assert_eq!(resp.error_code(), "BLOB_UPLOAD_UNKNOWN");
    }
    // Nothing was written next to the root.
    let parent = r.root.parent().expect("parent");
    let entries: Vec<_> = std::fs::read_dir(parent)
        .expect("read")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("root")]);
    r.stop().await;
}

#[tokio::test]
async fn basic_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("# users\nalice:{hash}\n")).expect("write");
    let mut r = Registry::start_at(&dir.path().join("root"), Some(htpasswd)).await;

    let anon = r.get("/v2/").await;
    assert_eq!(anon.status, 401);
    assert_eq!(
        anon.header("www-authenticate"),
        Some("Basic realm=\"berth-registry\"")
    );
    assert_eq!(anon.error_code(), "UNAUTHORIZED");

    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    r.auth = Some(format!("Basic {}", b64("alice:wrong")));
    assert_eq!(r.get("/v2/").await.status, 401);
    r.auth = Some(format!("Basic {}", b64("mallory:s3cret")));
    assert_eq!(r.get("/v2/").await.status, 401);

    r.auth = Some(format!("Basic {}", b64("alice:s3cret")));
    assert_eq!(r.get("/v2/").await.status, 200);
    // Cached path and a real operation.
    r.push_image("auth/repo", "v1", "auth").await;
    assert_eq!(r.get("/v2/auth/repo/manifests/v1").await.status, 200);
    r.auth = None;
    assert_eq!(r.get("/v2/auth/repo/manifests/v1").await.status, 401);
    r.stop().await;
}

#[tokio::test]
async fn garbage_collection() {
    let mut r = Registry::start().await;
    let (_, md) = r.push_image("gc/keep", "v1", "keep").await;
    let config = br#"{"architecture":"amd64","os":"linux","seed":"keep"}"#;
    let kept_config = sha256(config);
    let loose = r.push_blob("gc/keep", b"unreferenced").await;
    // An untagged manifest stays (reachable by digest), with its blobs.
    let (_, untagged) = r.push_image("gc/other", "tmp", "untagged").await;
    assert_eq!(
        r.req("DELETE", "/v2/gc/other/manifests/tmp", &[], b"")
            .await
            .status,
        202
    );
    // A stale-looking upload.
    let start = r.req("POST", "/v2/gc/keep/blobs/uploads/", &[], b"").await;
    let loc = start.header("location").expect("location").to_owned();
    r.stop().await;

    // The default options keep everything new.
    let report = berth_registry::server::collect_garbage(&r.root).expect("gc");
    assert_eq!(report.blobs_removed, 0);
    assert_eq!(report.uploads_removed, 0);

    let report = collect_garbage_with(
        &r.root,
        &GcOptions {
            blob_grace: Duration::ZERO,
            upload_max_age: Duration::ZERO,
        },
    )
    .expect("gc");
    assert_eq!(report.blobs_removed, 1, "{report:?}");
    assert_eq!(report.uploads_removed, 1, "{report:?}");
    assert_eq!(report.links_removed, 1, "{report:?}");

    let r2 = Registry::start_at(&r.root, None).await;
    assert_eq!(
        r2.get(&format!("/v2/gc/keep/blobs/{loose}")).await.status,
        404
    );
    assert_eq!(
        r2.get(&format!("/v2/gc/keep/blobs/{kept_config}"))
            .await
            .status,
        200
    );
    assert_eq!(
        r2.get(&format!("/v2/gc/keep/manifests/{md}")).await.status,
        200
    );
    assert_eq!(
        r2.get(&format!("/v2/gc/other/manifests/{untagged}"))
            .await
            .status,
        200
    );
    assert_eq!(r2.get(&loc).await.status, 404);
    let mut r2 = r2;
    r2.stop().await;
    drop(r);
}

#[tokio::test]
async fn upload_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let mut r = Registry::start_at(&root, None).await;
    let data = b"first half|second half";
    let start = r.req("POST", "/v2/restart/blobs/uploads/", &[], b"").await;
    let loc = start.header("location").expect("location").to_owned();
    let c1 = r
        .req("PATCH", &loc, &[("content-range", "0-10")], &data[..11])
        .await;
    assert_eq!(c1.status, 202);
    r.stop().await;

    let mut r = Registry::start_at(&root, None).await;
    let status = r.get(&loc).await;
    assert_eq!(status.status, 204);
    assert_eq!(status.header("range"), Some("0-10"));
    let d = sha256(data);
    let put = r
        .req(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[("content-range", "11-21")],
            &data[11..],
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(r.get(&format!("/v2/restart/blobs/{d}")).await.body, data);
    r.stop().await;
}

#[tokio::test]
async fn concurrent_uploads_of_the_same_blob() {
    let mut r = Registry::start().await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let d = sha256(&data);
    let addr = r.addr;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (data, d) = (data.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            let repo = format!("conc/r{}", i % 2);
            let start = request(
                addr,
                "POST",
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                b"",
            )
            .await;
            let loc = start.header("location").expect("location").to_owned();
            let half = data.len() / 2;
            let c = request(
                addr,
                "PATCH",
                &loc,
                &[("content-range", &format!("0-{}", half - 1))],
                &data[..half],
            )
            .await;
            assert_eq!(c.status, 202);
            let put = request(
                addr,
                "PUT",
                &format!("{loc}?digest={d}"),
                &[],
                &data[half..],
            )
            .await;
            put.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 201);
    }
    for repo in ["conc/r0", "conc/r1"] {
        assert_eq!(r.get(&format!("/v2/{repo}/blobs/{d}")).await.body, data);
    }
    r.stop().await;
}

// ---- skopeo ----------------------------------------------------------------------------

/// gzip with stored (uncompressed) deflate blocks, so the test needs no compressor.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let chunks: Vec<&[u8]> = data.chunks(65535).collect();
    for (i, c) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn write_blob(dir: &Path, data: &[u8]) -> String {
    let d = sha256(data);
    let hex = d.trim_start_matches("sha256:");
    std::fs::write(dir.join("blobs/sha256").join(hex), data).expect("write blob");
    d
}

/// Writes an OCI layout with one image tagged `latest`: (manifest, config, layer) digests.
fn oci_layout(src: &Path) -> (String, String, String) {
    std::fs::create_dir_all(src.join("blobs/sha256")).expect("mkdir");
    std::fs::write(src.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    // A one-file gzip layer.
    let mut tar = Vec::new();
    {
        let mut header = [0u8; 512];
        header[..5].copy_from_slice(b"hello");
        header[100..107].copy_from_slice(b"0000644");
        header[108..115].copy_from_slice(b"0000000");
        header[116..123].copy_from_slice(b"0000000");
        header[124..135].copy_from_slice(b"00000000006");
        header[136..147].copy_from_slice(b"00000000000");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        tar.extend_from_slice(&header);
        let mut content = [0u8; 512];
        content[..6].copy_from_slice(b"world\n");
        tar.extend_from_slice(&content);
        tar.extend_from_slice(&[0u8; 1024]);
    }
    let diff_id = sha256(&tar);
    let layer = gzip_stored(&tar);
    let layer_d = write_blob(src, &layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "config": {},
    }))
    .expect("json");
    let config_d = write_blob(src, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": media::OCI_LAYER_GZIP, "digest": layer_d, "size": layer.len()}],
    }))
    .expect("json");
    let manifest_d = write_blob(src, &manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [{
            "mediaType": media::OCI_MANIFEST,
            "digest": manifest_d,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    }))
    .expect("json");
    std::fs::write(src.join("index.json"), index).expect("index");
    (manifest_d, config_d, layer_d)
}

fn run(args: Vec<String>) -> Vec<u8> {
    let out = std::process::Command::new(SKOPEO)
        .args(&args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const SKOPEO: &str = "/usr/bin/skopeo";

#[tokio::test]
async fn skopeo_round_trip() {
    if !Path::new(SKOPEO).exists() {
        eprintln!("SKIPPED skopeo_round_trip: /usr/bin/skopeo is not installed");
        return;
    }
    let mut r = Registry::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src");
    let (manifest_d, config_d, layer_d) = oci_layout(&src);

    let dest = format!("docker://{}/test/img:latest", r.addr);
    let copy_src = format!("oci:{}:latest", src.display());
    let dest2 = dest.clone();
    tokio::task::spawn_blocking(move || {
        run(vec![
            "copy".into(),
            "--dest-tls-verify=false".into(),
            copy_src,
            dest2,
        ]);
    })
    .await
    .expect("copy up");

    let got = r.get("/v2/test/img/manifests/latest").await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.header("docker-content-digest"),
        Some(manifest_d.as_str())
    );

    let back = work.path().join("back");
    let back_ref = format!("oci:{}:latest", back.display());
    let dest3 = dest.clone();
    let inspect = tokio::task::spawn_blocking(move || {
        let inspect = run(vec![
            "inspect".into(),
            "--tls-verify=false".into(),
            dest3.clone(),
        ]);
        run(vec![
            "copy".into(),
            "--src-tls-verify=false".into(),
            dest3,
            back_ref,
        ]);
        inspect
    })
    .await
    .expect("inspect and copy back");
    let inspect: Value = serde_json::from_slice(&inspect).expect("inspect json");
    assert_eq!(inspect["Digest"], json!(manifest_d));
    assert_eq!(inspect["Layers"], json!([layer_d]));

    let back_index: Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).expect("index"))
            .expect("json");
    assert_eq!(back_index["manifests"][0]["digest"], json!(manifest_d));
    for d in [&manifest_d, &config_d, &layer_d] {
        let hex = d.trim_start_matches("sha256:");
        let bytes = std::fs::read(back.join("blobs/sha256").join(hex)).expect("blob copied back");
        assert_eq!(&sha256(&bytes), d);
    }
    r.stop().await;
}

#[tokio::test]
async fn tls_with_skopeo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    // Half a TLS configuration is refused.
    let half = Server::bind(ServerConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        root: dir.path().join("root"),
        htpasswd: None,
        tls_cert: Some(cert.clone()),
        tls_key: None,
    })
    .await;
    assert!(matches!(
        half,
        Err(berth_registry::server::ServerError::TlsIncomplete)
    ));

    if !Path::new(SKOPEO).exists() {
        eprintln!("SKIPPED tls_with_skopeo: needs /usr/bin/skopeo");
        return;
    }
    let Some((cert, key)) = common::self_signed_cert(dir.path()) else {
        eprintln!("SKIPPED tls_with_skopeo: needs /usr/bin/openssl");
        return;
    };
    let server = Server::bind(ServerConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        root: dir.path().join("root"),
        htpasswd: None,
        tls_cert: Some(cert),
        tls_key: Some(key),
    })
    .await
    .expect("bind with TLS");
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = rx.await;
    }));

    // Plain HTTP gets no HTTP answer.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(
            !buf.starts_with(b"HTTP/"),
            "plain HTTP answered on a TLS port"
        );
    }

    let src = dir.path().join("src");
    let (manifest_d, _, _) = oci_layout(&src);
    let dest = format!("docker://{addr}/tls/img:latest");
    let src_ref = format!("oci:{}:latest", src.display());
    let inspect = tokio::task::spawn_blocking(move || {
        run(vec![
            "copy".into(),
            "--dest-tls-verify=false".into(),
            src_ref,
            dest.clone(),
        ]);
        run(vec!["inspect".into(), "--tls-verify=false".into(), dest])
    })
    .await
    .expect("skopeo over TLS");
    let inspect: Value = serde_json::from_slice(&inspect).expect("inspect json");
    assert_eq!(inspect["Digest"], json!(manifest_d));

    let _ = tx.send(());
    task.await.expect("join").expect("serve");
}
