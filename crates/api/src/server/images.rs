//! `/images/...`: import (`create?fromSrc=`), list, inspect, history, tag, remove.

use std::collections::BTreeMap;

use berth_engine::ImportRequest;
use berth_engine::commit::CommitRequest;
use berth_engine::distribution::{Progress, ProgressTx};
use berth_registry::client::Credentials;
use bytes::Bytes;
use hyper::StatusCode;

use super::body::{self, empty};
use super::{ApiError, Ctx, HandlerResult, Req, ok_json};
use crate::models::{
    GraphDriver, ImageDeleteItem, ImageInspect, ImageSummary, JsonMessage, ProgressDetail, RootFs,
};

/// Largest image tarball accepted by import.
const MAX_IMPORT: u64 = 64 << 30;

pub(super) fn list(ctx: &Ctx, r: &Req) -> HandlerResult {
    let mut filters = r.filters()?;
    // Before 1.41, `filter=<pattern>` was a reference filter.
    if !r.at_least(1, 41) {
        if let Some(f) = r.q("filter").filter(|f| !f.is_empty()) {
            filters
                .entry("reference".into())
                .or_default()
                .push(f.to_owned());
        }
    }
    let all = r.flag("all");
    let images = ctx.engine.image_list(&filters, all)?;
    let rows: Vec<ImageSummary> = images.iter().map(|i| summary(i, -1, -1, r)).collect();
    ok_json(&rows)
}

/// An image as `GET /images/json` lists it; `containers` and `shared_size` are -1 when not
/// computed, as in Docker.
pub(super) fn summary(
    i: &berth_engine::ImageView,
    containers: i64,
    shared_size: i64,
    r: &Req,
) -> ImageSummary {
    let (mut repo_tags, mut repo_digests) = (i.repo_tags.clone(), i.repo_digests.clone());
    // Before 1.43 an untagged image had moby's placeholders instead of empty lists.
    if !r.at_least(1, 43) && repo_tags.is_empty() && repo_digests.is_empty() {
        repo_tags.push("<none>:<none>".into());
        repo_digests.push("<none>@<none>".into());
    }
    ImageSummary {
        id: i.id.clone(),
        parent_id: i.parent.clone().unwrap_or_default(),
        repo_tags,
        repo_digests: (r.at_least(1, 43) || !repo_digests.is_empty()).then_some(repo_digests),
        created: i.created.timestamp(),
        size: i.size as i64,
        shared_size,
        // Gone from the API in 1.44.
        virtual_size: (!r.at_least(1, 44)).then_some(i.size as i64),
        // null without labels, as dockerd sends it.
        labels: (!i.labels.is_empty()).then(|| i.labels.clone()),
        containers,
    }
}

pub(super) fn inspect(ctx: &Ctx, r: &Req, name: &str) -> HandlerResult {
    let i = ctx.engine.image_inspect(name)?;
    ok_json(&ImageInspect {
        id: i.id.clone(),
        repo_tags: i.repo_tags.clone(),
        repo_digests: i.repo_digests.clone(),
        parent: i.parent.clone().unwrap_or_default(),
        comment: i.comment.clone(),
        created: i
            .created
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        container: (!r.at_least(1, 45)).then(|| i.container.clone()),
        // Kept past 1.44 on purpose: docker-compose 1.x negotiates the newest version and
        // then reads `ContainerConfig` whenever it recreates a container (a KeyError without
        // it, as against Docker 25+); newer clients ignore the field.
        container_config: Some(image_config(&i.container_config, r)),
        docker_version: i.docker_version.clone(),
        author: i.author.clone(),
        config: Some(image_config(&i.config, r)),
        architecture: i.architecture.clone(),
        os: i.os.clone(),
        size: i.size as i64,
        // Gone from the API in 1.44, and `Container` in 1.45.
        virtual_size: (!r.at_least(1, 44)).then_some(i.size as i64),
        graph_driver: GraphDriver {
            name: "overlay2".into(),
            data: ctx.engine.image_graph_driver(&i),
        },
        root_fs: RootFs {
            kind: "layers".into(),
            layers: i.layers.clone(),
        },
        // Docker's zero time for an image never tagged here (pulled or loaded): clients parse
        // this field as a timestamp, and an empty string breaks `docker inspect`.
        metadata: BTreeMap::from([(
            "LastTagTime".to_owned(),
            serde_json::Value::String(i.last_tag_time.map_or_else(
                || "0001-01-01T00:00:00Z".to_owned(),
                |t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            )),
        )]),
    })
}

/// An image's `Config` as the client's API version has it: from 1.46 on, without the fields
/// that only make sense for containers.
fn image_config(config: &berth_engine::config::Config, r: &Req) -> serde_json::Value {
    let mut v = serde_json::to_value(config).unwrap_or_default();
    if r.at_least(1, 46) {
        if let Some(o) = v.as_object_mut() {
            for k in [
                "Hostname",
                "Domainname",
                "AttachStdin",
                "AttachStdout",
                "AttachStderr",
                "Tty",
                "OpenStdin",
                "StdinOnce",
                "Image",
                "NetworkDisabled",
                "MacAddress",
                "StopTimeout",
            ] {
                o.remove(k);
            }
        }
    }
    v
}

pub(super) fn history(ctx: &Ctx, name: &str) -> HandlerResult {
    let i = ctx.engine.image_inspect(name)?;
    // Rows name the image, then its parents as far as they are here (moby's walk); older
    // rows are `<missing>`.
    let mut owner = Some(i.clone());
    let rows: Vec<serde_json::Value> = i
        .history
        .iter()
        .rev()
        .map(|h| {
            let (id, tags) = match owner.take() {
                Some(img) => {
                    owner = img
                        .parent
                        .as_deref()
                        .and_then(|p| ctx.engine.image_inspect(p).ok());
                    // null for an untagged image, as dockerd.
                    let tags = (!img.repo_tags.is_empty()).then(|| img.repo_tags.clone());
                    (img.id.clone(), serde_json::json!(tags))
                }
                None => ("<missing>".to_owned(), serde_json::Value::Null),
            };
            serde_json::json!({
                "Id": id,
                "Created": h.created.map(|t| t.timestamp()).unwrap_or(0),
                "CreatedBy": h.created_by,
                "Tags": tags,
                "Size": h.size as i64,
                "Comment": h.comment,
            })
        })
        .collect();
    ok_json(&rows)
}

pub(super) fn tag(ctx: &Ctx, r: &Req, name: &str) -> HandlerResult {
    let repo = r.q("repo").unwrap_or("");
    if repo.is_empty() {
        return Err(ApiError::bad(
            "repository name must have at least one component",
        ));
    }
    let tag = r.q("tag").filter(|t| !t.is_empty());
    ctx.engine.image_tag(name, repo, tag)?;
    Ok(empty(StatusCode::CREATED))
}

pub(super) async fn remove(ctx: &Ctx, r: &Req, name: &str) -> HandlerResult {
    let removed = ctx
        .engine
        .image_remove(name, r.flag("force"), !r.flag("noprune"))?;
    let rows: Vec<ImageDeleteItem> = removed
        .into_iter()
        .map(|(untagged, deleted)| ImageDeleteItem { untagged, deleted })
        .collect();
    ok_json(&rows)
}

/// `POST /images/prune`: removes unused images, only untagged ones unless `dangling=false`.
pub(super) fn prune(ctx: &Ctx, r: &Req) -> HandlerResult {
    let f = super::containers::prune_filters(r, &["dangling"])?;
    let all = r
        .filters()?
        .get("dangling")
        .is_some_and(|v| v.iter().any(|x| matches!(x.as_str(), "false" | "0")));
    let (rows, space) = ctx
        .engine
        .prune_images(all, f.until, &f.labels, &f.not_labels)?;
    let rows: Vec<ImageDeleteItem> = rows
        .into_iter()
        .map(|(untagged, deleted)| ImageDeleteItem { untagged, deleted })
        .collect();
    let rows = (!rows.is_empty()).then_some(rows);
    ok_json(&serde_json::json!({ "ImagesDeleted": rows, "SpaceReclaimed": space }))
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`, the body an
/// optional container config.
pub(super) async fn commit(ctx: &Ctx, mut r: Req) -> HandlerResult {
    let container = r
        .q("container")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad("container is required"))?
        .to_owned();
    let reference = match (
        r.q("repo").filter(|s| !s.is_empty()),
        r.q("tag").filter(|s| !s.is_empty()),
    ) {
        (Some(repo), Some(tag)) => Some(format!("{repo}:{tag}")),
        (Some(repo), None) => Some(repo.to_owned()),
        (None, Some(_)) => return Err(ApiError::bad("a tag needs a repository")),
        (None, None) => None,
    };
    let req = CommitRequest {
        reference,
        comment: r.q("comment").unwrap_or("").to_owned(),
        author: r.q("author").unwrap_or("").to_owned(),
        changes: r.all("changes"),
        // Docker pauses unless told not to.
        pause: r.q("pause").is_none_or(|_| r.flag("pause")),
        config: r.json::<Option<berth_engine::config::Config>>().await?,
    };
    let id = ctx.engine.commit(&container, req).await?;
    Ok(body::json(
        StatusCode::CREATED,
        &serde_json::json!({ "Id": id }),
    ))
}

/// `GET /images/get?names=...` and `GET /images/{name}/get`: a tar archive of the images.
pub(super) async fn save(ctx: &Ctx, names: Vec<String>) -> HandlerResult {
    let rx = ctx.engine.image_save(&names).await?;
    Ok(body::from_receiver(StatusCode::OK, "application/x-tar", rx))
}

/// `POST /images/load?quiet=`: the images of a tar archive; the answer streams Docker's
/// `{"stream":"Loaded image: ...\n"}` lines.
pub(super) async fn load(ctx: &Ctx, mut r: Req) -> HandlerResult {
    let incoming = r.body.take().ok_or_else(|| ApiError::bad("no body"))?;
    let chunks = body::forward(incoming, Some((MAX_IMPORT, "image archive too large")));
    let engine = ctx.engine.clone();
    let (resp, tx) = body::stream(StatusCode::OK, "application/json");
    tokio::spawn(async move {
        let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let load = engine.image_load(Box::new(berth_engine::ChannelReader::new(chunks)), ptx);
        tokio::pin!(load);
        let result = loop {
            tokio::select! {
                r = &mut load => break r,
                Some(line) = prx.recv() => {
                    let msg = JsonMessage { stream: Some(format!("{line}\n")), ..JsonMessage::default() };
                    if tx.send(progress_line(&msg)).await.is_err() {
                        // The client went away; the load still completes.
                    }
                }
            }
        };
        while let Ok(line) = prx.try_recv() {
            let msg = JsonMessage {
                stream: Some(format!("{line}\n")),
                ..JsonMessage::default()
            };
            let _ = tx.send(progress_line(&msg)).await;
        }
        if let Err(e) = result {
            let _ = tx.send(progress_line(&error_message(&e.to_string()))).await;
        }
    });
    Ok(resp)
}

/// A progress-stream error line, as Docker's clients read it.
pub(super) fn error_message(message: &str) -> JsonMessage {
    error_with_code(message, None)
}

/// A stream's error line; `code` is an exit code for the client to exit with.
pub(super) fn error_with_code(message: &str, code: Option<i64>) -> JsonMessage {
    JsonMessage {
        error: Some(message.to_owned()),
        error_detail: Some(crate::models::ErrorResponse {
            code,
            message: message.to_owned(),
        }),
        ..JsonMessage::default()
    }
}

fn progress_line(msg: &JsonMessage) -> Bytes {
    let mut v = serde_json::to_vec(msg).unwrap_or_default();
    v.push(b'\r');
    v.push(b'\n');
    Bytes::from(v)
}

/// `GET /distribution/{name}/json`: the registry's descriptor of an image and its platforms,
/// without pulling it (docker-py's `get_registry_data`, `docker manifest`-like tools).
pub(super) async fn distribution(ctx: &Ctx, r: &Req, name: &str) -> HandlerResult {
    let (descriptor, platforms) = ctx
        .engine
        .distribution_inspect(name, registry_auth(r)?)
        .await?;
    ok_json(&serde_json::json!({
        "Descriptor": {
            "mediaType": descriptor.media_type,
            "digest": descriptor.digest,
            "size": descriptor.size,
        },
        "Platforms": platforms,
    }))
}

/// `GET /images/search?term=&limit=&filters=`: the registry's hits, as `docker search`
/// reads them.
pub(super) async fn search(ctx: &Ctx, r: &Req) -> HandlerResult {
    let term = r.q("term").unwrap_or("");
    let limit = match r.int("limit")? {
        None => 25,
        Some(n) => usize::try_from(n).unwrap_or(0),
    };
    let mut filters = berth_engine::distribution::SearchFilters::default();
    for (key, values) in r.filters()? {
        for v in values {
            let bad = || ApiError::bad(format!("invalid filter '{key}={v}'"));
            let flag = || match v.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(bad()),
            };
            match key.as_str() {
                "is-official" => filters.is_official = Some(flag()?),
                "is-automated" => filters.is_automated = Some(flag()?),
                "stars" => filters.stars = v.parse().map_err(|_| bad())?,
                _ => return Err(ApiError::bad(format!("invalid filter '{key}'"))),
            }
        }
    }
    let results = ctx
        .engine
        .image_search(term, limit, &filters, registry_auth(r)?)
        .await?;
    ok_json(&results)
}

/// The credentials of `X-Registry-Auth` (anonymous when absent).
fn registry_auth(r: &Req) -> Result<Credentials, ApiError> {
    match r.parts.headers.get("x-registry-auth").map(|v| v.to_str()) {
        None => Ok(Credentials::default()),
        Some(Ok(v)) => Credentials::from_registry_auth_header(v)
            .map_err(|e| ApiError::bad(format!("invalid X-Registry-Auth header: {e}"))),
        Some(Err(_)) => Err(ApiError::bad("invalid X-Registry-Auth header")),
    }
}

/// Docker's text progress bar: `[=====>     ]  1.2MB/3.4MB`.
fn progress_bar(current: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    let size = |n: u64| {
        let units = ["B", "kB", "MB", "GB", "TB"];
        let mut v = n as f64;
        let mut u = 0;
        while v >= 1000.0 && u + 1 < units.len() {
            v /= 1000.0;
            u += 1;
        }
        format!("{}{}", (v * 1000.0).round() / 1000.0, units[u])
    };
    if total == 0 {
        return size(current);
    }
    let done = (current.min(total) * WIDTH / total) as usize;
    let mut bar = "=".repeat(done);
    if done < WIDTH as usize {
        bar.push('>');
        bar.push_str(&" ".repeat(WIDTH as usize - done - 1));
    }
    format!("[{bar}]  {}/{}", size(current), size(total))
}

fn progress_message(p: Progress) -> JsonMessage {
    let detail = p.current.map(|c| ProgressDetail {
        current: Some(c),
        total: p.total,
    });
    JsonMessage {
        progress: p.current.map(|c| progress_bar(c, p.total.unwrap_or(0))),
        progress_detail: detail
            .or_else(|| (p.id.is_some() || p.aux.is_some()).then(ProgressDetail::default)),
        status: (!p.status.is_empty()).then_some(p.status),
        id: p.id,
        aux: p.aux,
        ..JsonMessage::default()
    }
}

/// Streams an operation's progress lines, then its error, if any, as the last line.
fn stream_progress<F>(work: impl FnOnce(ProgressTx) -> F + Send + 'static) -> HandlerResult
where
    F: std::future::Future<Output = berth_engine::Result<()>> + Send + 'static,
{
    let (resp, tx) = body::stream(StatusCode::OK, "application/json");
    tokio::spawn(async move {
        let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
        let fut = work(ptx);
        tokio::pin!(fut);
        let mut gone = false;
        let result = loop {
            tokio::select! {
                r = &mut fut => break r,
                Some(p) = prx.recv() => {
                    // A client that went away does not stop the work.
                    if !gone && tx.send(progress_line(&progress_message(p))).await.is_err() {
                        gone = true;
                    }
                }
            }
        };
        while let Ok(p) = prx.try_recv() {
            let _ = tx.send(progress_line(&progress_message(p))).await;
        }
        if let Err(e) = result {
            let _ = tx.send(progress_line(&error_message(&e.to_string()))).await;
        }
    });
    Ok(resp)
}

/// `POST /images/create?fromImage=&tag=&platform=`: a pull. Errors found before any layer
/// moves (bad reference, unknown manifest, refused credentials) are the response's status.
async fn pull(ctx: &Ctx, r: &Req, image: &str) -> HandlerResult {
    let tag = r.q("tag").filter(|s| !s.is_empty());
    let platform = r.q("platform").filter(|s| !s.is_empty());
    let creds = registry_auth(r)?;
    // A name without tag or digest, and no tag given: every tag (`pull --all-tags`; the CLI
    // sends `tag=latest` for a plain pull).
    let references = match tag {
        Some(t) if t.contains(':') => vec![format!("{image}@{t}")],
        Some(t) => vec![format!("{image}:{t}")],
        None if berth_engine::names_tag_or_digest(image) => vec![image.to_owned()],
        None => {
            let tags = ctx.engine.repository_tags(image, creds.clone()).await?;
            if tags.is_empty() {
                return Err(berth_engine::EngineError::NotFound(format!(
                    "repository {image} has no tags"
                ))
                .into());
            }
            tags.iter().map(|t| format!("{image}:{t}")).collect()
        }
    };
    // The first manifest is resolved before the stream starts (a missing one is an error
    // status); every other tag's in the stream, so a long list starts at once.
    let first = ctx
        .engine
        .pull_plan(&references[0], platform, creds.clone())
        .await?;
    let rest = references[1..].to_vec();
    let platform = platform.map(str::to_owned);
    let engine = ctx.engine.clone();
    stream_progress(move |p| async move {
        engine.pull(first, p.clone()).await?;
        for reference in rest {
            let plan = engine
                .pull_plan(&reference, platform.as_deref(), creds.clone())
                .await?;
            engine.pull(plan, p.clone()).await?;
        }
        Ok(())
    })
}

/// `POST /images/{name}/push?tag=`.
pub(super) async fn push(ctx: &Ctx, r: &Req, name: &str) -> HandlerResult {
    let creds = registry_auth(r)?;
    let tag = r.q("tag").filter(|s| !s.is_empty()).map(str::to_owned);
    // A malformed name is a plain error status; a missing image (or, without a tag, a
    // repository with no tags here) is an error in the stream, as dockerd sends it.
    berth_engine::check_reference(&match &tag {
        Some(t) => format!("{name}:{t}"),
        None => name.to_owned(),
    })?;
    let engine = ctx.engine.clone();
    let name = name.to_owned();
    stream_progress(move |p| async move { engine.push(&name, tag.as_deref(), creds, p).await })
}

/// `POST /auth`: checks credentials against a registry.
pub(super) async fn auth(ctx: &Ctx, mut r: Req) -> HandlerResult {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct AuthConfig {
        username: String,
        password: String,
        serveraddress: String,
        identitytoken: String,
    }
    let body: AuthConfig = r.json().await?;
    let creds = Credentials {
        username: body.username,
        password: body.password,
        identity_token: body.identitytoken,
        ..Credentials::default()
    };
    ctx.engine
        .registry_login(&body.serveraddress, creds)
        .await?;
    ok_json(&serde_json::json!({ "Status": "Login Succeeded", "IdentityToken": "" }))
}

pub(super) async fn create(ctx: &Ctx, mut r: Req) -> HandlerResult {
    if let Some(image) = r.q("fromImage").filter(|s| !s.is_empty()) {
        let image = image.to_owned();
        return pull(ctx, &r, &image).await;
    }
    let Some(src) = r.q("fromSrc").map(String::from) else {
        return Err(ApiError::bad("either fromSrc or fromImage must be given"));
    };
    let reference = match (
        r.q("repo").filter(|s| !s.is_empty()),
        r.q("tag").filter(|s| !s.is_empty()),
    ) {
        (Some(repo), Some(tag)) => Some(format!("{repo}:{tag}")),
        (Some(repo), None) => Some(repo.to_owned()),
        _ => None,
    };
    let changes = r.all("changes");
    let req = ImportRequest {
        reference,
        changes,
        message: r.q("message").filter(|s| !s.is_empty()).map(String::from),
        platform: r.q("platform").filter(|s| !s.is_empty()).map(String::from),
    };
    if src != "-" {
        if !(src.starts_with("http://") || src.starts_with("https://")) {
            return Err(ApiError::bad(format!(
                "fromSrc must be - or an http(s) URL, not {src:?}"
            )));
        }
        let engine = ctx.engine.clone();
        let id = engine.import_url(&src, req).await?;
        let msg = JsonMessage {
            status: Some(id),
            ..JsonMessage::default()
        };
        let (resp, tx) = body::stream(StatusCode::OK, "application/json");
        tokio::spawn(async move {
            let _ = tx.send(progress_line(&msg)).await;
        });
        return Ok(resp);
    }
    // Check the request before streaming, so that bad input is a plain 400. The tarball the
    // client is sending is read and dropped meanwhile (bounded): refused unread, its upload
    // would fail with a broken pipe and the client would never see the message.
    let incoming = r.body.take().ok_or_else(|| ApiError::bad("no body"))?;
    if let Err(e) = ctx.engine.check_import(&req) {
        drop(body::forward(incoming, None));
        return Err(e.into());
    }
    let chunks = body::forward(incoming, Some((MAX_IMPORT, "image tarball too large")));
    // The answer waits for the import, so that a bad tarball is an error status (as dockerd's,
    // which has written nothing yet) rather than a 200 whose body says so: SDKs only raise on
    // the status.
    let id = ctx
        .engine
        .import_image(Box::new(berth_engine::ChannelReader::new(chunks)), req)
        .await?;
    let msg = JsonMessage {
        status: Some(id),
        ..JsonMessage::default()
    };
    let (resp, tx) = body::stream(StatusCode::OK, "application/json");
    tokio::spawn(async move {
        let _ = tx.send(progress_line(&msg)).await;
    });
    Ok(resp)
}
