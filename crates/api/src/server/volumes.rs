//! `/volumes/...`: create, list, inspect, remove, prune, with Docker's shapes.

use std::collections::BTreeMap;

use berth_engine::volumes::{CreateVolume, Volume};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::{empty, json};
use super::{ApiError, Ctx, HandlerResult, Req, ok_json};

/// `POST /volumes/create`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: String,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

/// A volume as the API shows it (`UsageData` only where `system df` asks).
pub(super) fn view(ctx: &Ctx, v: &Volume, usage: Option<(u64, usize)>) -> Value {
    let mut out = json!({
        "CreatedAt": v.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "Driver": v.driver,
        "Labels": if v.labels.is_empty() { Value::Null } else { json!(v.labels) },
        "Mountpoint": ctx.engine.volume_path(&v.name),
        "Name": v.name,
        "Options": if v.options.is_empty() { Value::Null } else { json!(v.options) },
        "Scope": "local",
    });
    if let Some((size, refs)) = usage {
        out["UsageData"] = json!({ "Size": size, "RefCount": refs });
    }
    out
}

pub(super) async fn create(ctx: &Ctx, r: &mut Req) -> HandlerResult {
    let body: CreateBody = r.json().await?;
    let v = ctx.engine.volume_create(CreateVolume {
        name: body.name,
        driver: body.driver,
        labels: body.labels.unwrap_or_default(),
        options: body.driver_opts.unwrap_or_default(),
    })?;
    Ok(json(StatusCode::CREATED, &view(ctx, &v, None)))
}

pub(super) fn list(ctx: &Ctx, r: &Req) -> HandlerResult {
    let filters = r.filters()?;
    let vols = ctx.engine.volume_list(&filters)?;
    let rows: Vec<Value> = vols.iter().map(|v| view(ctx, v, None)).collect();
    // Docker 20.10 sent null warnings; the current API has an empty list.
    let warnings = if r.at_least(1, 42) {
        json!([])
    } else {
        Value::Null
    };
    ok_json(&json!({ "Volumes": rows, "Warnings": warnings }))
}

pub(super) fn inspect(ctx: &Ctx, name: &str) -> HandlerResult {
    let v = ctx.engine.volume_inspect(name)?;
    ok_json(&view(ctx, &v, None))
}

pub(super) fn remove(ctx: &Ctx, r: &Req, name: &str) -> HandlerResult {
    ctx.engine.volume_remove(name, r.flag("force"))?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST /volumes/prune`: unused anonymous volumes (every unused one with `all=true`, or for
/// clients older than API 1.42, as Docker 20.10 pruned).
pub(super) fn prune(ctx: &Ctx, r: &Req) -> HandlerResult {
    let filters = r.filters()?;
    if let Some(key) = filters
        .keys()
        .find(|k| !matches!(k.as_str(), "label" | "label!" | "all"))
    {
        return Err(ApiError::bad(format!("invalid filter '{key}'")));
    }
    let mut all = !r.at_least(1, 42);
    for v in filters.get("all").into_iter().flatten() {
        match v.as_str() {
            "true" | "1" => all = true,
            "false" | "0" => {}
            other => return Err(ApiError::bad(format!("invalid filter 'all={other}'"))),
        }
    }
    let list = |k: &str| filters.get(k).cloned().unwrap_or_default();
    let (deleted, space) = ctx
        .engine
        .volume_prune(all, &list("label"), &list("label!"))?;
    ok_json(&json!({ "VolumesDeleted": deleted, "SpaceReclaimed": space }))
}
