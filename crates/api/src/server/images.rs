//! `/images/...`: import (`create?fromSrc=`), list, inspect, history, tag, remove.

use std::collections::BTreeMap;

use berth_engine::ImportRequest;
use berth_engine::commit::CommitRequest;
use bytes::Bytes;
use hyper::StatusCode;

use super::body::{self, empty};
use super::{ApiError, Ctx, HandlerResult, Req, ok_json};
use crate::models::{
    GraphDriver, ImageDeleteItem, ImageInspect, ImageSummary, JsonMessage, RootFs,
};

/// Largest image tarball accepted by import.
const MAX_IMPORT: u64 = 64 << 30;

pub(super) fn list(ctx: &Ctx, r: &Req) -> HandlerResult {
    let filters = r.filters()?;
    let all = r.flag("all");
    let images = ctx.engine.image_list(&filters, all)?;
    let rows: Vec<ImageSummary> = images.iter().map(|i| summary(i, -1, -1)).collect();
    ok_json(&rows)
}

/// An image as `GET /images/json` lists it; `containers` and `shared_size` are -1 when not
/// computed, as in Docker.
pub(super) fn summary(
    i: &berth_engine::ImageView,
    containers: i64,
    shared_size: i64,
) -> ImageSummary {
    ImageSummary {
        id: i.id.clone(),
        parent_id: i.parent.clone().unwrap_or_default(),
        repo_tags: i.repo_tags.clone(),
        repo_digests: i.repo_digests.clone(),
        created: i.created.timestamp(),
        size: i.size as i64,
        shared_size,
        virtual_size: i.size as i64,
        labels: i.labels.clone(),
        containers,
    }
}

pub(super) fn inspect(ctx: &Ctx, name: &str) -> HandlerResult {
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
        container: String::new(),
        docker_version: String::new(),
        author: i.author.clone(),
        config: Some(i.config.clone()),
        architecture: i.architecture.clone(),
        os: i.os.clone(),
        size: i.size as i64,
        virtual_size: i.size as i64,
        graph_driver: GraphDriver {
            name: "overlay2".into(),
            data: BTreeMap::new(),
        },
        root_fs: RootFs {
            kind: "layers".into(),
            layers: i.layers.clone(),
        },
        // Docker's zero time when the last tag time is unknown: clients parse this field
        // as a timestamp, and an empty string breaks `docker inspect`.
        metadata: BTreeMap::from([(
            "LastTagTime".to_owned(),
            serde_json::Value::String("0001-01-01T00:00:00Z".to_owned()),
        )]),
    })
}

pub(super) fn history(ctx: &Ctx, name: &str) -> HandlerResult {
    let i = ctx.engine.image_inspect(name)?;
    let rows: Vec<serde_json::Value> = i
        .history
        .iter()
        .rev()
        .enumerate()
        .map(|(n, h)| {
            serde_json::json!({
                "Id": if n == 0 { i.id.as_str() } else { "<missing>" },
                "Created": h.created.map(|t| t.timestamp()).unwrap_or(0),
                "CreatedBy": h.created_by,
                "Tags": if n == 0 { serde_json::json!(i.repo_tags) } else { serde_json::Value::Null },
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
    let removed = ctx.engine.image_remove(name, r.flag("force"))?;
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
    JsonMessage {
        error: Some(message.to_owned()),
        error_detail: Some(crate::models::ErrorResponse {
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

pub(super) async fn create(ctx: &Ctx, mut r: Req) -> HandlerResult {
    if let Some(image) = r.q("fromImage").filter(|s| !s.is_empty()) {
        let tag = r.q("tag").filter(|s| !s.is_empty()).unwrap_or("latest");
        return Err(ApiError {
            status: StatusCode::NOT_IMPLEMENTED,
            message: format!(
                "pulling {image}:{tag} from a registry is not supported by this Berth yet; import a root filesystem with `berth import` (or `docker import`)"
            ),
        });
    }
    let Some(src) = r.q("fromSrc").map(String::from) else {
        return Err(ApiError::bad("either fromSrc or fromImage must be given"));
    };
    if src != "-" {
        return Err(ApiError {
            status: StatusCode::NOT_IMPLEMENTED,
            message: "importing from a URL is not supported yet; send the tarball as the body (fromSrc=-)".into(),
        });
    }
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
    // Check the request before streaming, so that bad input is a plain 400.
    ctx.engine.check_import(&req)?;
    let incoming = r.body.take().ok_or_else(|| ApiError::bad("no body"))?;
    let chunks = body::forward(incoming, Some((MAX_IMPORT, "image tarball too large")));
    let engine = ctx.engine.clone();
    let (resp, tx) = body::stream(StatusCode::OK, "application/json");
    tokio::spawn(async move {
        let result = engine
            .import_image(Box::new(berth_engine::ChannelReader::new(chunks)), req)
            .await;
        let msg = match result {
            Ok(id) => JsonMessage {
                status: Some(id),
                ..JsonMessage::default()
            },
            Err(e) => error_message(&e.to_string()),
        };
        let _ = tx.send(progress_line(&msg)).await;
    });
    Ok(resp)
}
