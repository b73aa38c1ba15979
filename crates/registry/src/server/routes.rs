//! Request routing: the path is parsed (from its end, since repository names have several
//! segments) into a typed [`Route`], authentication is checked, and the route and method pick
//! one handler in [`super::blobs`] or [`super::manifests`].

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::State;
use super::error::{ApiError, ErrorCode};
use super::http::{Body, Reply, query_pairs};
use super::names::RepoName;
use super::{blobs, manifests};

/// A parsed `/v2/` path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepoName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepoName, String),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepoName, String),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(RepoName),
    /// `/v2/<name>/blobs/uploads/<uuid>`
    Upload(RepoName, String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepoName, String),
}

fn name(segments: &[&str]) -> Result<RepoName, ApiError> {
    let joined = segments.join("/");
    RepoName::parse(&joined).ok_or_else(|| {
        ApiError::new(ErrorCode::NameInvalid, "invalid repository name")
            .with_detail(serde_json::json!({ "name": joined }))
    })
}

/// Minimal percent-decoding of a last path segment (clients may encode `:` in a digest).
fn decode_segment(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                // Two hex digits make at most 255.
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a request path; `Ok(None)` for a path outside the API.
pub(crate) fn parse(path: &str) -> Result<Option<Route>, ApiError> {
    let Some(rest) = path.strip_prefix("/v2") else {
        return Ok(None);
    };
    if rest.is_empty() || rest == "/" {
        return Ok(Some(Route::Base));
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Ok(None);
    };
    if rest == "_catalog" {
        return Ok(Some(Route::Catalog));
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let route = match segs.as_slice() {
        [head @ .., "tags", "list"] if !head.is_empty() => Route::Tags(name(head)?),
        [head @ .., "blobs", "uploads", ""] | [head @ .., "blobs", "uploads"]
            if !head.is_empty() =>
        {
            Route::UploadStart(name(head)?)
        }
        [head @ .., "blobs", "uploads", id] if !head.is_empty() => {
            Route::Upload(name(head)?, decode_segment(id))
        }
        [head @ .., "manifests", reference] if !head.is_empty() && !reference.is_empty() => {
            Route::Manifest(name(head)?, decode_segment(reference))
        }
        [head @ .., "blobs", digest] if !head.is_empty() && !digest.is_empty() => {
            Route::Blob(name(head)?, decode_segment(digest))
        }
        [head @ .., "referrers", digest] if !head.is_empty() && !digest.is_empty() => {
            Route::Referrers(name(head)?, decode_segment(digest))
        }
        _ => return Ok(None),
    };
    Ok(Some(route))
}

/// Answers one request.
pub(crate) async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let mut resp = match route(state, req).await {
        Ok(r) => r,
        Err(e) => e.into(),
    };
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        hyper::header::HeaderValue::from_static("registry/2.0"),
    );
    resp
}

async fn route(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if let Some(auth) = &state.auth {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !auth.check(header).await {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "authentication required",
            ));
        }
    }
    let path = req.uri().path().to_owned();
    let query = query_pairs(req.uri().query());
    let Some(route) = parse(&path)? else {
        return Ok(Reply::new(StatusCode::NOT_FOUND)
            .json(
                "application/json",
                ApiError::new(ErrorCode::Unsupported, "no such endpoint").body(),
            )
            .build());
    };
    let method = req.method().clone();
    let unsupported = || {
        Err(ApiError::new(
            ErrorCode::Unsupported,
            format!("{method} is not supported here"),
        ))
    };
    match route {
        Route::Base => match method {
            Method::GET | Method::HEAD => Ok(Reply::new(StatusCode::OK)
                .json("application/json", b"{}".to_vec())
                .build()),
            _ => unsupported(),
        },
        Route::Catalog => match method {
            Method::GET => manifests::catalog(&state, &query).await,
            _ => unsupported(),
        },
        Route::Tags(name) => match method {
            Method::GET => manifests::tags(&state, &name, &query).await,
            _ => unsupported(),
        },
        Route::Manifest(name, reference) => match method {
            Method::GET => manifests::get(&state, &name, &reference, false).await,
            Method::HEAD => manifests::get(&state, &name, &reference, true).await,
            Method::PUT => manifests::put(&state, &name, &reference, req).await,
            Method::DELETE => manifests::delete(&state, &name, &reference).await,
            _ => unsupported(),
        },
        Route::Referrers(name, digest) => match method {
            Method::GET => manifests::referrers(&state, &name, &digest, &query).await,
            _ => unsupported(),
        },
        Route::Blob(name, digest) => match method {
            Method::GET => blobs::get(&state, &name, &digest, &req, false).await,
            Method::HEAD => blobs::get(&state, &name, &digest, &req, true).await,
            Method::DELETE => blobs::delete(&state, &name, &digest).await,
            _ => unsupported(),
        },
        Route::UploadStart(name) => match method {
            Method::POST => blobs::start_upload(&state, &name, &query, req).await,
            _ => unsupported(),
        },
        Route::Upload(name, id) => match method {
            Method::GET => blobs::upload_status(&state, &name, &id).await,
            Method::PATCH => blobs::patch_upload(&state, &name, &id, req).await,
            Method::PUT => blobs::put_upload(&state, &name, &id, &query, req).await,
            Method::DELETE => blobs::cancel_upload(&state, &name, &id).await,
            _ => unsupported(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> RepoName {
        RepoName::parse(s).expect("name")
    }

    #[test]
    fn paths() {
        assert_eq!(parse("/v2/").ok().flatten(), Some(Route::Base));
        assert_eq!(parse("/v2").ok().flatten(), Some(Route::Base));
        assert_eq!(parse("/v2/_catalog").ok().flatten(), Some(Route::Catalog));
        assert_eq!(
            parse("/v2/a/b/tags/list").ok().flatten(),
            Some(Route::Tags(n("a/b")))
        );
        assert_eq!(
            parse("/v2/a/manifests/latest").ok().flatten(),
            Some(Route::Manifest(n("a"), "latest".into()))
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads/").ok().flatten(),
            Some(Route::UploadStart(n("a")))
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads/abc").ok().flatten(),
            Some(Route::Upload(n("a"), "abc".into()))
        );
        assert_eq!(
            parse("/v2/x/blobs/uploads/blobs/sha256:00").ok().flatten(),
            Some(Route::Blob(n("x/blobs/uploads"), "sha256:00".into()))
        );
        assert_eq!(
            parse("/v2/a/blobs/sha256%3A00").ok().flatten(),
            Some(Route::Blob(n("a"), "sha256:00".into()))
        );
        assert_eq!(
            parse("/v2/manifests/manifests/x").ok().flatten(),
            Some(Route::Manifest(n("manifests"), "x".into()))
        );
        assert!(parse("/v2/../etc/blobs/sha256:00").is_err());
        assert!(parse("/v2/a//b/tags/list").is_err());
        assert_eq!(parse("/other").ok().flatten(), None);
        assert_eq!(parse("/v2/a").ok().flatten(), None);
    }
}
