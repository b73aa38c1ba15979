//! Manifest endpoints (`/v2/<name>/manifests/<reference>`), tag listing, the catalog and the
//! referrers API.

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, LINK, LOCATION};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::State;
use super::blobs::{blocking, parse_digest};
use super::error::{ApiError, ErrorCode};
use super::http::{Body, Reply, full, query_get};
use super::names::{Algorithm, Digest, Reference, RepoName, Tag};
use super::storage::{ManifestRecord, Storage};
use crate::media;

/// Largest manifest accepted.
pub(crate) const MAX_MANIFEST: usize = 4 * 1024 * 1024;

fn parse_reference(s: &str) -> Result<Reference, ApiError> {
    if s.contains(':') {
        return parse_digest(s).map(Reference::Digest);
    }
    Tag::parse(s).map(Reference::Tag).ok_or_else(|| {
        ApiError::new(ErrorCode::TagInvalid, "invalid tag").with_detail(json!({ "tag": s }))
    })
}

fn manifest_unknown(reference: &str) -> ApiError {
    ApiError::new(ErrorCode::ManifestUnknown, "manifest unknown")
        .with_detail(json!({ "reference": reference }))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ManifestInvalid, message)
}

/// `GET`/`HEAD /v2/<name>/manifests/<reference>`.
pub(crate) async fn get(
    state: &State,
    name: &RepoName,
    reference: &str,
    head: bool,
) -> Result<Response<Body>, ApiError> {
    let r = parse_reference(reference)?;
    let storage = state.storage.clone();
    let n = name.clone();
    let found = blocking(move || {
        let d = match r {
            Reference::Digest(d) => d,
            Reference::Tag(t) => match storage.resolve_tag(&n, &t)? {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        Ok(storage
            .get_manifest(&n, &d)?
            .map(|(rec, body)| (d, rec, body)))
    })
    .await?;
    let Some((d, rec, body)) = found else {
        return Err(manifest_unknown(reference));
    };
    let reply = Reply::new(StatusCode::OK)
        .header(CONTENT_TYPE, &rec.media_type)
        .named("docker-content-digest", d.to_string())
        .header(CONTENT_LENGTH, body.len().to_string());
    Ok(if head { reply } else { reply.body(full(body)) }.build())
}

/// `PUT /v2/<name>/manifests/<reference>`.
pub(crate) async fn put(
    state: &State,
    name: &RepoName,
    reference: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let r = parse_reference(reference)?;
    let too_large = || {
        ApiError::new(ErrorCode::TooLarge, "manifest too large")
            .with_detail(json!({ "limit": MAX_MANIFEST }))
    };
    let announced = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|l| l > MAX_MANIFEST as u64) {
        return Err(too_large());
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
        .filter(|v| !v.is_empty());
    let body = match Limited::new(req.into_body(), MAX_MANIFEST).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(too_large());
            }
            return Err(invalid(format!("reading manifest: {e}")));
        }
    };

    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(invalid("manifest is not a JSON object"));
    }
    let body_type = v.get("mediaType").and_then(Value::as_str);
    let media_type = match (content_type.as_deref(), body_type) {
        (Some(ct), Some(bt)) if ct != bt => {
            return Err(invalid(format!(
                "Content-Type {ct} does not match mediaType {bt}"
            )));
        }
        (Some(ct), _) => ct.to_owned(),
        (None, Some(bt)) => bt.to_owned(),
        (None, None) => return Err(invalid("manifest media type unknown")),
    };

    let digest = match &r {
        Reference::Digest(d) => {
            let actual = d.algorithm().digest(&body);
            if actual != *d {
                return Err(ApiError::new(
                    ErrorCode::DigestInvalid,
                    "manifest digest does not match reference",
                )
                .with_detail(json!({ "expected": d.to_string(), "actual": actual.to_string() })));
            }
            actual
        }
        Reference::Tag(_) => Algorithm::Sha256.digest(&body),
    };
    let subject = match v.get("subject") {
        None | Some(Value::Null) => None,
        Some(s) => Some(descriptor_digest(s)?),
    };
    let refs = references(&media_type, &v)?;

    let storage = state.storage.clone();
    let (n, d, tag) = (
        name.clone(),
        digest.clone(),
        match r {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        },
    );
    let record = ManifestRecord {
        media_type,
        subject: subject.as_ref().map(Digest::to_string),
    };
    blocking(move || {
        let _guard = super::gc::SharedLock::acquire(storage.root())?;
        check_references(&storage, &n, &refs)?;
        storage.put_manifest(&n, &body, &d, &record, tag.as_ref())?;
        Ok(())
    })
    .await?;

    let mut reply = Reply::new(StatusCode::CREATED)
        .header(LOCATION, format!("/v2/{name}/manifests/{digest}"))
        .named("docker-content-digest", digest.to_string())
        .header(CONTENT_LENGTH, "0");
    if let Some(s) = subject {
        reply = reply.named("oci-subject", s.to_string());
    }
    Ok(reply.build())
}

/// What a manifest refers to that must already be in the repository.
enum Refs {
    /// Blobs (config and layers of an image manifest).
    Blobs(Vec<Digest>),
    /// Manifests (children of an index).
    Manifests(Vec<Digest>),
    None,
}

fn descriptor_digest(desc: &Value) -> Result<Digest, ApiError> {
    let s = desc
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("descriptor without a digest"))?;
    Digest::parse(s).ok_or_else(|| {
        ApiError::new(ErrorCode::DigestInvalid, "invalid digest in descriptor")
            .with_detail(json!({ "digest": s }))
    })
}

/// Layers a registry never receives (Docker foreign layers, OCI non-distributable ones).
fn is_external(desc: &Value) -> bool {
    desc.get("mediaType")
        .and_then(Value::as_str)
        .is_some_and(|t| t.contains("foreign") || t.contains("nondistributable"))
}

fn references(media_type: &str, v: &Value) -> Result<Refs, ApiError> {
    if media::is_manifest(media_type) {
        let config = v
            .get("config")
            .filter(|c| c.is_object())
            .ok_or_else(|| invalid("image manifest without config"))?;
        let layers = v
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("image manifest without layers"))?;
        let mut blobs = vec![descriptor_digest(config)?];
        for l in layers {
            let d = descriptor_digest(l)?;
            if !is_external(l) {
                blobs.push(d);
            }
        }
        return Ok(Refs::Blobs(blobs));
    }
    if media::is_index(media_type) {
        let list = v
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("index without manifests"))?;
        let children = list
            .iter()
            .map(descriptor_digest)
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Refs::Manifests(children));
    }
    Ok(Refs::None)
}

fn check_references(storage: &Storage, name: &RepoName, refs: &Refs) -> Result<(), ApiError> {
    match refs {
        Refs::Blobs(blobs) => {
            for d in blobs {
                if storage.repo_blob_size(name, d)?.is_none() {
                    return Err(ApiError::new(
                        ErrorCode::ManifestBlobUnknown,
                        "manifest references a blob unknown to the repository",
                    )
                    .with_detail(json!({ "digest": d.to_string() })));
                }
            }
        }
        Refs::Manifests(children) => {
            for d in children {
                if storage.manifest_record(name, d)?.is_none() {
                    return Err(ApiError::new(
                        ErrorCode::ManifestUnknown,
                        "index references a manifest unknown to the repository",
                    )
                    .with_detail(json!({ "digest": d.to_string() })));
                }
            }
        }
        Refs::None => {}
    }
    Ok(())
}

/// `DELETE /v2/<name>/manifests/<reference>`: by digest removes the manifest (and its tags),
/// by tag removes only the tag.
pub(crate) async fn delete(
    state: &State,
    name: &RepoName,
    reference: &str,
) -> Result<Response<Body>, ApiError> {
    let r = parse_reference(reference)?;
    let storage = state.storage.clone();
    let n = name.clone();
    let removed = blocking(move || {
        Ok(match r {
            Reference::Digest(d) => storage.delete_manifest(&n, &d)?,
            Reference::Tag(t) => storage.delete_tag(&n, &t)?,
        })
    })
    .await?;
    if !removed {
        return Err(manifest_unknown(reference));
    }
    Ok(Reply::new(StatusCode::ACCEPTED)
        .header(CONTENT_LENGTH, "0")
        .build())
}

/// Applies `n` and `last` to a sorted list: the page, and whether more remain.
fn paginate(all: Vec<String>, query: &[(String, String)]) -> Result<(Vec<String>, bool), ApiError> {
    let last = query_get(query, "last");
    let n = match query_get(query, "n") {
        None | Some("") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::new(
                ErrorCode::PaginationInvalid,
                "n must be a non-negative integer",
            )
            .with_detail(json!({ "n": n }))
        })?),
    };
    let mut items: Vec<String> = match last {
        Some(last) => all.into_iter().filter(|t| t.as_str() > last).collect(),
        None => all,
    };
    let more = n.is_some_and(|n| items.len() > n);
    if let Some(n) = n {
        items.truncate(n);
    }
    Ok((items, more))
}

fn next_link(base: &str, n: &[(String, String)], last: Option<&String>) -> Option<String> {
    let n = query_get(n, "n")?;
    let last = last?;
    let q = serde_urlencoded::to_string([("n", n), ("last", last.as_str())]).ok()?;
    Some(format!("<{base}?{q}>; rel=\"next\""))
}

/// `GET /v2/<name>/tags/list?n=&last=`.
pub(crate) async fn tags(
    state: &State,
    name: &RepoName,
    query: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let storage = state.storage.clone();
    let n = name.clone();
    let all = blocking(move || Ok(storage.list_tags(&n)?))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NameUnknown,
                "repository name not known to registry",
            )
            .with_detail(json!({ "name": name.as_str() }))
        })?;
    let (page, more) = paginate(all, query)?;
    let link = if more {
        next_link(&format!("/v2/{name}/tags/list"), query, page.last())
    } else {
        None
    };
    let body =
        serde_json::to_vec(&json!({ "name": name.as_str(), "tags": page })).unwrap_or_default();
    let mut reply = Reply::new(StatusCode::OK).json("application/json", body);
    if let Some(l) = link {
        reply = reply.header(LINK, l);
    }
    Ok(reply.build())
}

/// `GET /v2/_catalog?n=&last=`.
pub(crate) async fn catalog(
    state: &State,
    query: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let storage = state.storage.clone();
    let all = blocking(move || Ok(storage.catalog()?)).await?;
    let (page, more) = paginate(all, query)?;
    let link = if more {
        next_link("/v2/_catalog", query, page.last())
    } else {
        None
    };
    let body = serde_json::to_vec(&json!({ "repositories": page })).unwrap_or_default();
    let mut reply = Reply::new(StatusCode::OK).json("application/json", body);
    if let Some(l) = link {
        reply = reply.header(LINK, l);
    }
    Ok(reply.build())
}

/// `GET /v2/<name>/referrers/<digest>[?artifactType=]`.
pub(crate) async fn referrers(
    state: &State,
    name: &RepoName,
    digest: &str,
    query: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let subject = parse_digest(digest)?;
    let filter = query_get(query, "artifactType")
        .filter(|f| !f.is_empty())
        .map(str::to_owned);
    let storage = state.storage.clone();
    let (n, f) = (name.clone(), filter.clone());
    let descriptors = blocking(move || {
        let mut out = Vec::new();
        for d in storage.referrers(&n, &subject)? {
            let Some((rec, body)) = storage.get_manifest(&n, &d)? else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                continue;
            };
            let artifact_type = v
                .get("artifactType")
                .and_then(Value::as_str)
                .or_else(|| {
                    v.get("config")
                        .and_then(|c| c.get("mediaType"))
                        .and_then(Value::as_str)
                })
                .map(str::to_owned);
            if let Some(f) = &f {
                if artifact_type.as_deref() != Some(f.as_str()) {
                    continue;
                }
            }
            let mut desc = json!({
                "mediaType": rec.media_type,
                "digest": d.to_string(),
                "size": body.len(),
            });
            if let Some(t) = artifact_type {
                desc["artifactType"] = Value::String(t);
            }
            if let Some(a) = v.get("annotations").filter(|a| a.is_object()) {
                desc["annotations"] = a.clone();
            }
            out.push(desc);
        }
        Ok(out)
    })
    .await?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": descriptors,
    });
    let mut reply = Reply::new(StatusCode::OK).json(
        media::OCI_INDEX,
        serde_json::to_vec(&index).unwrap_or_default(),
    );
    if filter.is_some() {
        reply = reply.named("oci-filters-applied", "artifactType");
    }
    Ok(reply.build())
}
