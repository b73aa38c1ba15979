//! Blob endpoints: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>` and the upload endpoints
//! under `/v2/<name>/blobs/uploads/` (start, monolithic, mount, chunk, status, finish,
//! cancel).

use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use hyper::{Request, Response, StatusCode};

use super::State;
use super::error::{ApiError, ErrorCode, ServerError};
use super::http::{Body, RangeRequest, Reply, file_body, parse_range, query_get};
use super::names::{Algorithm, Digest, RepoName, UploadId};
use super::upload::Session;

pub(crate) fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).ok_or_else(|| {
        ApiError::new(ErrorCode::DigestInvalid, "invalid digest")
            .with_detail(serde_json::json!({ "digest": s }))
    })
}

fn parse_upload_id(s: &str) -> Result<UploadId, ApiError> {
    UploadId::parse(s).ok_or_else(|| ApiError::new(ErrorCode::BlobUploadUnknown, "upload unknown"))
}

/// Runs blocking storage work on the blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::from(ServerError::from(e)))?
}

fn blob_unknown(d: &Digest) -> ApiError {
    ApiError::new(ErrorCode::BlobUnknown, "blob unknown to registry")
        .with_detail(serde_json::json!({ "digest": d.to_string() }))
}

/// `GET`/`HEAD /v2/<name>/blobs/<digest>`, with `Range` support on `GET`.
pub(crate) async fn get(
    state: &State,
    name: &RepoName,
    digest: &str,
    req: &Request<Incoming>,
    head: bool,
) -> Result<Response<Body>, ApiError> {
    let d = parse_digest(digest)?;
    let storage = state.storage.clone();
    let (n, d2) = (name.clone(), d.clone());
    let size = blocking(move || {
        let size = storage.repo_blob_size(&n, &d2)?;
        if size.is_some() && head {
            // A pusher checking for the blob is about to reference it.
            storage.touch_blob(&d2);
        }
        Ok(size)
    })
    .await?
    .ok_or_else(|| blob_unknown(&d))?;

    let reply = Reply::new(StatusCode::OK)
        .named("docker-content-digest", d.to_string())
        .header(CONTENT_TYPE, "application/octet-stream")
        .named("accept-ranges", "bytes");
    if head {
        return Ok(reply.header(CONTENT_LENGTH, size.to_string()).build());
    }
    let range = req
        .headers()
        .get(hyper::header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (status, start, len) = match parse_range(range, size) {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeRequest::Unsatisfiable => {
            return Ok(Reply::new(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(CONTENT_RANGE, format!("bytes */{size}"))
                .header(CONTENT_LENGTH, "0")
                .build());
        }
    };
    let path = state.storage.blob_path(&d);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(blob_unknown(&d)),
        Err(e) => return Err(ServerError::io("opening", path)(e).into()),
    };
    let body = file_body(file, start, len)
        .await
        .map_err(|e| ApiError::from(ServerError::io("reading", state.storage.blob_path(&d))(e)))?;
    let mut reply = reply;
    if status == StatusCode::PARTIAL_CONTENT {
        reply = reply.header(
            CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    Ok(reply
        .status(status)
        .header(CONTENT_LENGTH, len.to_string())
        .body(body)
        .build())
}

/// `DELETE /v2/<name>/blobs/<digest>`: unlinks the blob from the repository.
pub(crate) async fn delete(
    state: &State,
    name: &RepoName,
    digest: &str,
) -> Result<Response<Body>, ApiError> {
    let d = parse_digest(digest)?;
    let storage = state.storage.clone();
    let (n, d2) = (name.clone(), d.clone());
    let removed = blocking(move || Ok(storage.unlink_blob(&n, &d2)?)).await?;
    if !removed {
        return Err(blob_unknown(&d));
    }
    Ok(Reply::new(StatusCode::ACCEPTED)
        .header(CONTENT_LENGTH, "0")
        .build())
}

fn upload_location(name: &RepoName, id: &UploadId) -> String {
    format!("/v2/{name}/blobs/uploads/{}", id.as_str())
}

/// `Range: 0-<last>` of an upload (`0-0` when empty, as distribution answers).
fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn upload_reply(status: StatusCode, name: &RepoName, id: &UploadId, offset: u64) -> Response<Body> {
    Reply::new(status)
        .header(LOCATION, upload_location(name, id))
        .named("docker-upload-uuid", id.as_str())
        .named("range", upload_range(offset))
        .header(CONTENT_LENGTH, "0")
        .build()
}

fn created(name: &RepoName, d: &Digest) -> Response<Body> {
    Reply::new(StatusCode::CREATED)
        .header(LOCATION, format!("/v2/{name}/blobs/{d}"))
        .named("docker-content-digest", d.to_string())
        .header(CONTENT_LENGTH, "0")
        .build()
}

/// `POST /v2/<name>/blobs/uploads/[?digest=|?mount=&from=]`.
pub(crate) async fn start_upload(
    state: &State,
    name: &RepoName,
    query: &[(String, String)],
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if let Some(mount) = query_get(query, "mount") {
        let d = parse_digest(mount)?;
        if let Some(from) = query_get(query, "from") {
            let from = RepoName::parse(from).ok_or_else(|| {
                ApiError::new(ErrorCode::NameInvalid, "invalid repository name in from")
            })?;
            let storage = state.storage.clone();
            let (n, d2) = (name.clone(), d.clone());
            let mounted = blocking(move || {
                let _guard = super::gc::SharedLock::acquire(storage.root())?;
                if storage.repo_blob_size(&from, &d2)?.is_none() {
                    return Ok(false);
                }
                storage.touch_blob(&d2);
                storage.link_blob(&n, &d2)?;
                Ok(true)
            })
            .await?;
            if mounted {
                return Ok(created(name, &d));
            }
        }
        // Not mountable: fall back to a regular upload.
    }
    if let Some(digest) = query_get(query, "digest") {
        let d = parse_digest(digest)?;
        let (id, handle) = state.uploads.start(name, d.algorithm()).await?;
        let mut session = handle.lock().await;
        let len = content_length(&req);
        let result = async {
            state
                .uploads
                .append(&id, &mut session, req.into_body(), None, len)
                .await?;
            state.uploads.finish(&id, &mut session, &d).await
        }
        .await;
        if result.is_err() {
            state.uploads.cancel(&id, &mut session).await;
        }
        result?;
        return Ok(created(name, &d));
    }
    let (id, _) = state.uploads.start(name, Algorithm::Sha256).await?;
    Ok(upload_reply(StatusCode::ACCEPTED, name, &id, 0))
}

fn content_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// `Content-Range: <start>-<end>` of a chunk (a `bytes ` or `bytes=` prefix is tolerated).
fn chunk_range(req: &Request<Incoming>) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(v) = req.headers().get(CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || ApiError::new(ErrorCode::BlobUploadInvalid, "malformed Content-Range");
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    if b < a {
        return Err(ApiError::new(
            ErrorCode::RangeInvalid,
            "Content-Range end before start",
        ));
    }
    Ok(Some((a, b - a + 1)))
}

/// `PATCH /v2/<name>/blobs/uploads/<uuid>`: one chunk, streamed to disk.
pub(crate) async fn patch_upload(
    state: &State,
    name: &RepoName,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = parse_upload_id(id)?;
    let range = chunk_range(&req)?;
    let handle = state.uploads.get(name, &id).await?;
    let mut session = handle.lock().await;
    let (start, len) = match range {
        Some((start, len)) => (Some(start), Some(len)),
        None => (None, content_length(&req)),
    };
    let appended = state
        .uploads
        .append(&id, &mut session, req.into_body(), start, len)
        .await;
    if let Err(e) = appended {
        if e.code == ErrorCode::RangeInvalid {
            // Tell the client where the upload stands.
            let mut r: Response<Body> = e.into();
            let offset = session.offset;
            if let Ok(v) = upload_range(offset).parse() {
                r.headers_mut().insert("range", v);
            }
            if let Ok(v) = upload_location(name, &id).parse() {
                r.headers_mut().insert(LOCATION, v);
            }
            return Ok(r);
        }
        return Err(e);
    }
    Ok(upload_reply(
        StatusCode::ACCEPTED,
        name,
        &id,
        session.offset,
    ))
}

/// `GET /v2/<name>/blobs/uploads/<uuid>`: where the upload stands.
pub(crate) async fn upload_status(
    state: &State,
    name: &RepoName,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let id = parse_upload_id(id)?;
    let handle = state.uploads.get(name, &id).await?;
    let session = handle.lock().await;
    Ok(upload_reply(
        StatusCode::NO_CONTENT,
        name,
        &id,
        session.offset,
    ))
}

/// `PUT /v2/<name>/blobs/uploads/<uuid>?digest=`: optional last chunk, then verify and
/// store.
pub(crate) async fn put_upload(
    state: &State,
    name: &RepoName,
    id: &str,
    query: &[(String, String)],
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let id = parse_upload_id(id)?;
    let d = parse_digest(query_get(query, "digest").unwrap_or(""))?;
    let range = chunk_range(&req)?;
    let handle = state.uploads.get(name, &id).await?;
    let mut session = handle.lock().await;
    let (start, len) = match range {
        Some((start, len)) => (Some(start), Some(len)),
        None => (None, content_length(&req)),
    };
    finish(state, &id, &mut session, req, start, len, &d).await?;
    Ok(created(name, &d))
}

async fn finish(
    state: &State,
    id: &UploadId,
    session: &mut Session,
    req: Request<Incoming>,
    start: Option<u64>,
    len: Option<u64>,
    d: &Digest,
) -> Result<u64, ApiError> {
    state
        .uploads
        .append(id, session, req.into_body(), start, len)
        .await?;
    state.uploads.finish(id, session, d).await
}

/// `DELETE /v2/<name>/blobs/uploads/<uuid>`.
pub(crate) async fn cancel_upload(
    state: &State,
    name: &RepoName,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let id = parse_upload_id(id)?;
    let handle = state.uploads.get(name, &id).await?;
    let mut session = handle.lock().await;
    state.uploads.cancel(&id, &mut session).await;
    Ok(Reply::new(StatusCode::NO_CONTENT).build())
}
