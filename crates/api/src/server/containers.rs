//! `/containers/...`: create, inspect, list, lifecycle, logs, attach, top, resize.

use berth_engine::container::fmt_time;
use berth_engine::{AttachOptions, ContainerRecord, ListOptions, LogOptions, Status};
use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::body::{self, Body, empty, json};
use super::{ApiError, Ctx, HandlerResult, Req, ok_json};
use super::{hijack, websocket};
use crate::models::{
    ContainerCreateRequest, ContainerCreateResponse, ContainerInspect, ContainerState,
    ContainerSummary, GraphDriver, SummaryHostConfig, SummaryNetworkSettings, TopResponse,
    WaitResponse,
};
use crate::stream::{StdStream, encode_frame};

pub(super) async fn create(ctx: &Ctx, r: &mut Req) -> HandlerResult {
    let name = r.q("name").map(String::from);
    let mut body: ContainerCreateRequest = r.json().await?;
    // What dockerd does for old clients: no auto-remove before 1.25, IPC shareable by default
    // before 1.40.
    if !r.at_least(1, 25) {
        body.host_config.auto_remove = false;
    }
    if !r.at_least(1, 40) && body.host_config.ipc_mode.is_empty() {
        body.host_config.ipc_mode = "shareable".into();
    }
    let endpoints = super::networks::endpoints_of(body.networking_config.as_ref())?;
    let (id, warnings) = ctx
        .engine
        .create(name.as_deref(), body.config, body.host_config, endpoints)
        .await?;
    Ok(json(
        StatusCode::CREATED,
        &ContainerCreateResponse { id, warnings },
    ))
}

/// `Mounts` of inspect (and `ps`), as Docker shapes them: `Name` and `Driver` only for
/// volumes, `Propagation` only for binds.
pub(super) fn mounts_view(ctx: &Ctx, rec: &ContainerRecord) -> Vec<serde_json::Value> {
    use berth_engine::volumes::mounts::MountType;
    rec.mounts
        .iter()
        .map(|m| match m.kind {
            MountType::Volume => json!({
                "Type": "volume", "Name": m.name,
                "Source": ctx.engine.volume_path(&m.name), "Destination": m.destination,
                "Driver": "local", "Mode": m.mode, "RW": m.rw, "Propagation": "",
            }),
            MountType::Bind => json!({
                "Type": "bind", "Source": m.source, "Destination": m.destination,
                "Mode": m.mode, "RW": m.rw, "Propagation": m.propagation,
            }),
            MountType::Tmpfs => json!({
                "Type": "tmpfs", "Source": "", "Destination": m.destination,
                "Mode": m.mode, "RW": m.rw, "Propagation": "",
            }),
        })
        .collect()
}

/// Inspect's view of a record. It takes the record by value: the engine's copy is made once,
/// under its lock, and its big parts (`Config`, `HostConfig`) move into the answer.
pub(super) fn inspect_record(ctx: &Ctx, rec: ContainerRecord, r: &Req) -> ContainerInspect {
    let (log, hostname, hosts, resolv) = ctx.engine.container_paths(&rec.id);
    let graph_driver = GraphDriver {
        name: "overlay2".into(),
        data: ctx.engine.graph_driver_data(&rec),
    };
    let mounts = mounts_view(ctx, &rec);
    let network_settings = super::networks::settings(ctx, &rec, r);
    let (size_rw, size_root_fs) = if r.flag("size") {
        let (rw, root) = ctx.engine.container_sizes(&rec);
        (Some(rw as i64), Some(root as i64))
    } else {
        (None, None)
    };
    let log_path = if rec.host_config.log_config.kind == "none" {
        String::new()
    } else {
        log.display().to_string()
    };
    let mut host_config = rec.host_config;
    // Moby dropped `KernelMemory` from the API at 1.42 (`omitempty` since).
    if r.at_least(1, 42) {
        host_config.kernel_memory.take_if(|k| *k == 0);
    } else {
        host_config.kernel_memory.get_or_insert(0);
    }
    let s = rec.state;
    let exec_ids = Some(ctx.engine.exec_ids_of(&rec.id)).filter(|ids| !ids.is_empty());
    ContainerInspect {
        id: rec.id,
        created: fmt_time(Some(rec.created)),
        path: rec.path,
        args: rec.args,
        state: ContainerState {
            status: s.status.as_str().into(),
            // dockerd keeps `Running` through the restart delay, with `Restarting`.
            running: matches!(
                s.status,
                Status::Running | Status::Paused | Status::Restarting
            ),
            paused: s.status == Status::Paused,
            restarting: s.status == Status::Restarting,
            oom_killed: s.oom_killed,
            dead: s.status == Status::Dead,
            pid: s.pid,
            exit_code: s.exit_code,
            error: s.error,
            started_at: fmt_time(s.started_at),
            finished_at: fmt_time(s.finished_at),
            health: s.health,
        },
        image: rec.image_id,
        resolv_conf_path: resolv.display().to_string(),
        hostname_path: hostname.display().to_string(),
        hosts_path: hosts.display().to_string(),
        log_path,
        name: format!("/{}", rec.name),
        restart_count: rec.restart_count,
        driver: "overlay2".into(),
        platform: "linux".into(),
        mount_label: String::new(),
        process_label: String::new(),
        app_armor_profile: String::new(),
        exec_ids,
        host_config,
        graph_driver,
        size_rw,
        size_root_fs,
        mounts,
        config: rec.config,
        network_settings,
    }
}

pub(super) fn inspect(ctx: &Ctx, r: &Req, id: &str) -> HandlerResult {
    let h = ctx.engine.resolve(id)?;
    if r.flag("size") {
        // Sizes walk the filesystem, which no stamp follows.
        return ok_json(&inspect_record(ctx, h.record(), r));
    }
    let id = h.id();
    // The stamps are read before the record: a change in between leaves the body stored
    // under stamps that no longer match, never an old body under new stamps.
    let key = InspectKey {
        record: h.stamp(),
        execs: ctx.engine.exec_stamp_of(&id),
        sandbox: super::networks::sandbox_exists(ctx, &id),
        api: r.api_version,
    };
    if let Some(data) = ctx.inspect_cache.get(&id, key) {
        return Ok(body::json_bytes(StatusCode::OK, data));
    }
    let data = body::to_json(&inspect_record(ctx, h.record(), r));
    ctx.inspect_cache.put(id, key, data.clone());
    Ok(body::json_bytes(StatusCode::OK, data))
}

/// Inspect bodies already made, by container id, each with what it was made from. A body is
/// served again while none of that has changed: pollers (compose waiting for health, scripts
/// looping on `docker inspect -f`) then cost a lookup instead of a rebuild.
///
/// What an inspect body shows comes from the container's record, the container's execs
/// (`ExecIDs`), whether its network namespace is mounted (`SandboxKey`) and the request's
/// API version; the record and the execs carry stamps that change on every change to them.
/// The rest is fixed for the container's life (its paths, its layers, its volumes' paths)
/// or cannot change while it runs (whether its networks are user-defined). Sizes (`?size=1`)
/// are never cached.
#[derive(Default)]
pub(crate) struct InspectCache(
    std::sync::Mutex<std::collections::HashMap<String, (InspectKey, Bytes)>>,
);

/// What a cached inspect body was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InspectKey {
    record: u64,
    execs: (usize, u64),
    sandbox: bool,
    api: (u32, u32),
}

/// Entries kept at most: past that the cache starts over (containers removed leave theirs).
const INSPECT_CACHE_MAX: usize = 256;

impl InspectCache {
    fn get(&self, id: &str, key: InspectKey) -> Option<Bytes> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id)
            .filter(|(k, _)| *k == key)
            .map(|(_, data)| data.clone())
    }

    fn put(&self, id: String, key: InspectKey, data: Bytes) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= INSPECT_CACHE_MAX && !map.contains_key(&id) {
            map.clear();
        }
        map.insert(id, (key, data));
    }
}

pub(super) fn list(ctx: &Ctx, r: &Req) -> HandlerResult {
    let limit = r.int("limit")?.filter(|&l| l > 0).map(|l| l as usize);
    let opts = ListOptions {
        all: r.flag("all"),
        limit,
        filters: r.filters()?,
    };
    let recs = ctx.engine.list(&opts)?;
    ok_json(&summaries(ctx, &recs, r.flag("size"), r))
}

/// Containers as `GET /containers/json` lists them; with their sizes when asked.
pub(super) fn summaries(
    ctx: &Ctx,
    recs: &[ContainerRecord],
    sizes: bool,
    r: &Req,
) -> Vec<ContainerSummary> {
    // The image a name in a container's config stands for now, once per name.
    let mut named: std::collections::HashMap<&str, Option<String>> = Default::default();
    let mut link_names = ctx.engine.link_names();
    recs.iter()
        .map(|rec| {
            // As moby: once its name no longer leads to the container's image (untagged,
            // or moved to another), the image is shown by id.
            let name = rec.config.image.as_str();
            let image = if name == rec.image_id
                || named
                    .entry(name)
                    .or_insert_with(|| ctx.engine.image_id_of(name))
                    .as_deref()
                    == Some(rec.image_id.as_str())
            {
                rec.config.image.clone()
            } else {
                rec.image_id.clone()
            };
            let (size_rw, size_root_fs) = if sizes {
                let (rw, root) = ctx.engine.container_sizes(rec);
                // `SizeRw` is left out when 0, as moby's `omitempty`.
                ((rw > 0).then_some(rw as i64), Some(root as i64))
            } else {
                (None, None)
            };
            // As moby's list: arguments with a space are single-quoted.
            let mut command = vec![rec.path.clone()];
            command.extend(rec.args.iter().map(|a| {
                if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            }));
            let networks = super::networks::summary_networks(ctx, rec, r);
            ContainerSummary {
                id: rec.id.clone(),
                names: {
                    // With the names links give it, sorted as moby's name index lists them.
                    let mut names = link_names.remove(&rec.name).unwrap_or_default();
                    names.push(format!("/{}", rec.name));
                    names.sort();
                    names
                },
                image,
                image_id: rec.image_id.clone(),
                command: command.join(" "),
                created: rec.created.timestamp(),
                ports: super::networks::summary_ports(rec),
                labels: rec.config.labels.clone().unwrap_or_default(),
                state: rec.state.status.as_str().into(),
                status: rec.state.human(),
                host_config: SummaryHostConfig {
                    network_mode: rec.host_config.network_mode.clone(),
                },
                network_settings: SummaryNetworkSettings { networks },
                mounts: mounts_view(ctx, rec),
                size_rw,
                size_root_fs,
            }
        })
        .collect()
}

pub(super) async fn start(ctx: &Ctx, r: &mut Req, id: &str) -> HandlerResult {
    // A host config at start was dropped in 1.24; older clients' is ignored, as dockerd
    // leaves it unused since create takes it.
    // (dockerd's test: more than 7 bytes, the shortest object with a member; `{}` and
    // `null`, which some clients send, pass.)
    let body = r.bytes(super::MAX_JSON_BODY).await?;
    if r.at_least(1, 24) && body.trim_ascii().len() > 7 {
        return Err(ApiError::bad(
            "starting container with non-empty request body was deprecated since API v1.22 and removed in v1.24",
        ));
    }
    ctx.engine.start(id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

fn stop_timeout(r: &Req) -> Result<Option<i64>, ApiError> {
    // `t` before 1.42, `t` still accepted after; `timeout` is not Docker's, but harmless.
    r.int("t")
}

pub(super) async fn stop(ctx: &Ctx, r: &Req, id: &str) -> HandlerResult {
    ctx.engine
        .stop(
            id,
            stop_timeout(r)?,
            r.q("signal").filter(|s| !s.is_empty()),
        )
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub(super) async fn restart(ctx: &Ctx, r: &Req, id: &str) -> HandlerResult {
    ctx.engine
        .restart(
            id,
            stop_timeout(r)?,
            r.q("signal").filter(|s| !s.is_empty()),
        )
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub(super) async fn kill(ctx: &Ctx, r: &Req, id: &str) -> HandlerResult {
    ctx.engine.kill(id, r.q("signal")).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub(super) async fn pause(ctx: &Ctx, id: &str, paused: bool) -> HandlerResult {
    ctx.engine.set_paused(id, paused).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub(super) async fn rename(ctx: &Ctx, r: &Req, id: &str) -> HandlerResult {
    let name = r.q("name").unwrap_or("");
    if name.is_empty() {
        return Err(ApiError::bad("Neither old nor new names may be empty"));
    }
    ctx.engine.rename(id, name).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

fn size(r: &Req) -> Result<(u16, u16), ApiError> {
    let h = r.int("h")?.unwrap_or(0);
    let w = r.int("w")?.unwrap_or(0);
    if !(0..=u16::MAX as i64).contains(&h) || !(0..=u16::MAX as i64).contains(&w) {
        return Err(ApiError::bad("invalid tty size"));
    }
    Ok((h as u16, w as u16))
}

pub(super) async fn resize(ctx: &Ctx, r: &Req, id: &str) -> HandlerResult {
    let (h, w) = size(r)?;
    ctx.engine.resize(id, h, w).await?;
    Ok(empty(StatusCode::OK))
}

pub(super) async fn top(ctx: &Ctx, r: &Req, id: &str) -> HandlerResult {
    let (titles, processes) = ctx.engine.top(id, r.q("ps_args").unwrap_or("")).await?;
    ok_json(&TopResponse { titles, processes })
}

pub(super) async fn remove(ctx: &Ctx, r: &Req, id: &str) -> HandlerResult {
    if r.flag("link") {
        return Err(ApiError::bad("links are not supported"));
    }
    ctx.engine.remove(id, r.flag("force"), r.flag("v")).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub(super) fn wait(ctx: &Ctx, r: &Req, id: &str) -> HandlerResult {
    // `condition` exists since API 1.30; older clients always wait for "not-running", and so
    // does an unknown one, as dockerd reads it.
    let condition = match r.q("condition") {
        Some(c @ ("next-exit" | "removed")) if r.at_least(1, 30) => c.to_owned(),
        _ => String::new(),
    };
    // Looked up and watched now: a missing container is a plain 404, and one that goes
    // after this point still answers with its exit code.
    let waiter = ctx.engine.waiter(id, &condition)?;
    let (resp, tx) = body::stream(StatusCode::OK, "application/json");
    tokio::spawn(async move {
        let out = WaitResponse {
            status_code: waiter.await,
            error: None,
        };
        let mut line = serde_json::to_vec(&out).unwrap_or_default();
        line.push(b'\n');
        let _ = tx.send(Bytes::from(line)).await;
    });
    Ok(resp)
}

/// Docker's time arguments (`since`, `until` of logs): see [`crate::timefmt::parse_time`];
/// absent, empty or "0" mean none.
fn parse_time(v: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_empty() && *v != "0") else {
        return Ok(None);
    };
    // A negative Unix time is before 1970, as Go reads it (`since=-1`: everything).
    if let Some(secs) = v
        .strip_prefix('-')
        .and_then(|n| n.parse::<f64>().ok())
        .filter(|n| n.is_finite())
    {
        return Ok(chrono::DateTime::from_timestamp(-(secs.ceil() as i64), 0));
    }
    crate::timefmt::parse_time(v)
        .map(Some)
        .ok_or_else(|| ApiError::bad(format!("invalid time value: {v}")))
}

pub(super) fn logs(ctx: &Ctx, r: &Req, id: &str) -> HandlerResult {
    // As moby: a tail that is not a number (or is negative) means all of it.
    let tail = r.q("tail").and_then(|n| n.parse::<usize>().ok());
    let opts = LogOptions {
        stdout: r.flag("stdout"),
        stderr: r.flag("stderr"),
        follow: r.flag("follow"),
        tail,
        since: parse_time(r.q("since"))?,
        until: parse_time(r.q("until"))?,
    };
    let timestamps = r.flag("timestamps");
    // `details`: each line is preceded by its attributes (`--log-opt labels/env/tag`) and a
    // space, as Docker's.
    let details = r.flag("details");
    let (tty, mut rx) = ctx.engine.logs(id, opts)?;
    let ctype = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let (resp, tx) = body::stream(StatusCode::OK, ctype);
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            let chunk = log_chunk(&e, tty, timestamps, details);
            if tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
        }
    });
    Ok(resp)
}

/// One log entry as the logs and attach streams carry it: framed without a tty.
fn log_chunk(
    e: &berth_shim::jsonlog::Entry,
    tty: bool,
    timestamps: bool,
    details: bool,
) -> Vec<u8> {
    let mut payload = Vec::new();
    if timestamps {
        payload.extend_from_slice(
            e.time
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                .as_bytes(),
        );
        payload.push(b' ');
    }
    if details {
        payload.extend_from_slice(berth_engine::logs::details_prefix(e.attrs.as_ref()).as_bytes());
    }
    payload.extend_from_slice(e.log.as_bytes());
    if tty {
        payload
    } else {
        let stream = match e.stream {
            berth_shim::jsonlog::Stream::Stdout => StdStream::Stdout,
            berth_shim::jsonlog::Stream::Stderr => StdStream::Stderr,
        };
        encode_frame(stream, &payload)
    }
}

/// The `path` of an archive request (`docker cp`), relative paths taken from `/`.
fn archive_path(r: &Req) -> Result<String, ApiError> {
    match r.q("path") {
        Some(p) if !p.is_empty() => Ok(if p.starts_with('/') {
            p.to_owned()
        } else {
            format!("/{p}")
        }),
        _ => Err(ApiError::bad("the path parameter is required")),
    }
}

/// Docker's `X-Docker-Container-Path-Stat` header: the path's stat, JSON in base64.
fn with_path_stat(mut resp: Response<Body>, st: &berth_engine::PathStat) -> Response<Body> {
    use base64::Engine as _;
    let json = serde_json::to_vec(st).unwrap_or_default();
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    if let Ok(v) = hyper::header::HeaderValue::from_str(&encoded) {
        resp.headers_mut().insert("X-Docker-Container-Path-Stat", v);
    }
    resp
}

/// `POST /containers/{id}/update`: new resource limits and restart policy.
pub(super) async fn update(ctx: &Ctx, r: &mut Req, id: &str) -> HandlerResult {
    let u: berth_engine::update::UpdateConfig = r.json().await?;
    let warnings = ctx.engine.update(id, &u).await?;
    // null without warnings, as dockerd sends it.
    let warnings = (!warnings.is_empty()).then_some(warnings);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "Warnings": warnings }),
    ))
}

/// Prune filters: `until`, `label` and `label!`.
pub(super) struct PruneFilters {
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub labels: Vec<String>,
    pub not_labels: Vec<String>,
}

/// Reads the prune filters, refusing keys other than those and the `extra` ones the caller
/// handles itself.
pub(super) fn prune_filters(r: &Req, extra: &[&str]) -> Result<PruneFilters, ApiError> {
    let filters = r.filters()?;
    if let Some(key) = filters.keys().find(|k| {
        !matches!(k.as_str(), "until" | "label" | "label!") && !extra.contains(&k.as_str())
    }) {
        return Err(ApiError::bad(format!("invalid filter '{key}'")));
    }
    let now = chrono::Utc::now();
    let mut until = None;
    for v in filters.get("until").into_iter().flatten() {
        until = Some(
            crate::timefmt::parse_filter_time(v, now)
                .ok_or_else(|| ApiError::bad(format!("invalid until value: {v}")))?,
        );
    }
    let list = |k: &str| filters.get(k).cloned().unwrap_or_default();
    Ok(PruneFilters {
        until,
        labels: list("label"),
        not_labels: list("label!"),
    })
}

/// `POST /containers/prune`: removes the stopped containers the filters select.
pub(super) async fn prune(ctx: &Ctx, r: &Req) -> HandlerResult {
    let f = prune_filters(r, &[])?;
    let pruned = ctx
        .engine
        .prune_containers(f.until, &f.labels, &f.not_labels)
        .await?;
    let ids = (!pruned.ids.is_empty()).then_some(pruned.ids);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "ContainersDeleted": ids, "SpaceReclaimed": pruned.space }),
    ))
}

/// `GET /containers/{id}/changes`: what the container changed in its filesystem.
pub(super) async fn changes(ctx: &Ctx, id: &str) -> HandlerResult {
    let changes = ctx.engine.container_changes(id).await?;
    // null when nothing changed, as dockerd sends it (docker-py hands that on as None).
    Ok(json(
        StatusCode::OK,
        &(!changes.is_empty()).then_some(changes),
    ))
}

/// `GET /containers/{id}/export`: the container's filesystem as a tar stream.
pub(super) async fn export(ctx: &Ctx, id: &str) -> HandlerResult {
    let rx = ctx.engine.export(id).await?;
    Ok(body::from_receiver(StatusCode::OK, "application/x-tar", rx))
}

/// `HEAD /containers/{id}/archive`: the stat of a path in the container.
pub(super) async fn archive_head(ctx: &Ctx, r: &Req, id: &str) -> HandlerResult {
    let st = ctx.engine.archive_stat(id, &archive_path(r)?).await?;
    Ok(with_path_stat(body::empty(StatusCode::OK), &st))
}

/// `GET /containers/{id}/archive`: a path in the container as a tar stream.
pub(super) async fn archive_get(ctx: &Ctx, r: &Req, id: &str) -> HandlerResult {
    let (st, rx) = ctx.engine.archive_get(id, &archive_path(r)?).await?;
    Ok(with_path_stat(
        body::from_receiver(StatusCode::OK, "application/x-tar", rx),
        &st,
    ))
}

/// `PUT /containers/{id}/archive`: extracts the tar body into a directory of the container.
pub(super) async fn archive_put(ctx: &Ctx, mut r: Req, id: &str) -> HandlerResult {
    let path = archive_path(&r)?;
    let opts = berth_engine::PutOptions {
        no_overwrite_dir_non_dir: r.flag("noOverwriteDirNonDir"),
        copy_uid_gid: r.flag("copyUIDGID"),
        owner: None,
    };
    let incoming = r.body.take().ok_or_else(|| ApiError::bad("no body"))?;
    let rx = body::forward(incoming, None);
    ctx.engine.archive_put(id, &path, opts, rx).await?;
    Ok(body::empty(StatusCode::OK))
}

/// How long before a single stats sample its CPU baseline (`precpu_stats`) is taken.
const STATS_BASELINE: std::time::Duration = std::time::Duration::from_millis(500);
/// The interval between samples of a stats stream, as Docker's.
const STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /containers/{id}/stats`: a sample a second while the client reads (`stream`, the
/// default), or one sample (`stream=false`) carrying a CPU baseline taken a moment before so
/// clients can compute the CPU percentage; `one-shot=true` skips the baseline. The stream ends
/// when the container is removed or the client goes.
pub(super) async fn stats(ctx: &Ctx, r: &Req, id: &str) -> HandlerResult {
    let stream = r.q("stream").is_none_or(|_| r.flag("stream"));
    if stream && r.flag("one-shot") {
        return Err(ApiError::bad("cannot have stream=true and one-shot=true"));
    }
    let first = ctx.engine.stats_sample(id)?;
    if !stream {
        let s = if r.flag("one-shot") {
            first
        } else {
            tokio::time::sleep(STATS_BASELINE).await;
            ctx.engine.stats_sample(id)?.after(&first)
        };
        return Ok(body::json(StatusCode::OK, &s));
    }
    let (resp, tx) = body::stream(StatusCode::OK, "application/json");
    let engine = ctx.engine.clone();
    let id = id.to_owned();
    tokio::spawn(async move {
        let mut sample = first;
        loop {
            let mut line = serde_json::to_vec(&sample).unwrap_or_default();
            line.push(b'\n');
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(STATS_INTERVAL) => {}
                _ = tx.closed() => return,
            }
            match engine.stats_sample(&id) {
                Ok(next) => sample = next.after(&sample),
                Err(_) => return,
            }
        }
    });
    Ok(resp)
}

/// `POST /containers/{id}/attach`, as moby serves it: with `logs`, what the container wrote
/// so far comes first; with `stream`, then the live streams (waiting for a start if it is not
/// running); with neither, the connection just closes. Bad detach keys are refused before
/// the upgrade, so the client gets a status instead of a stream that ends.
pub(super) fn attach(ctx: &Ctx, r: Req, id: &str) -> HandlerResult {
    let rec = ctx.engine.inspect(id)?;
    let opts = AttachOptions {
        stdin: r.flag("stdin"),
        stdout: r.flag("stdout"),
        stderr: r.flag("stderr"),
    };
    let detach_keys = detach_keys_of(&r)?;
    let stream = r.flag("stream");
    let replay = r.flag("logs").then(|| LogOptions {
        stdout: opts.stdout,
        stderr: opts.stderr,
        follow: false,
        tail: None,
        since: None,
        until: Some(chrono::Utc::now()),
    });
    let session = AttachSession {
        engine: ctx.engine.clone(),
        id: rec.id,
        tty: rec.config.tty,
        replay,
        stream,
        opts,
        detach_keys,
        mux: true,
    };
    hijack::upgrade(r, session.tty, move |io| session.run(io))
}

/// `GET /containers/{id}/attach/ws`: the same attach over a WebSocket, as moby serves it: all
/// three streams whatever the query says, the output never multiplexed (one frame per write),
/// binary frames from API 1.28 and text ones before.
pub(super) fn attach_ws(ctx: &Ctx, r: Req, id: &str) -> HandlerResult {
    let rec = ctx.engine.inspect(id)?;
    let accept = websocket::handshake_key(&r.parts.headers)?;
    let detach_keys = detach_keys_of(&r)?;
    let text = !r.at_least(1, 28);
    let session = AttachSession {
        engine: ctx.engine.clone(),
        id: rec.id,
        tty: rec.config.tty,
        replay: r.flag("logs").then(|| LogOptions {
            stdout: true,
            stderr: true,
            follow: false,
            tail: None,
            since: None,
            until: Some(chrono::Utc::now()),
        }),
        stream: r.flag("stream"),
        opts: AttachOptions {
            stdin: true,
            stdout: true,
            stderr: true,
        },
        detach_keys,
        mux: false,
    };
    let req = hyper::Request::from_parts(r.parts, ());
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => hyper_util::rt::TokioIo::new(u),
            Err(e) => return tracing::debug!("websocket upgrade failed: {e}"),
        };
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        tokio::join!(
            websocket::bridge(upgraded, ours, text),
            session.run(Box::new(theirs))
        );
    });
    Ok(websocket::switching(&accept))
}

/// The `detachKeys` of an attach, checked before the upgrade so that bad ones get a status.
fn detach_keys_of(r: &Req) -> Result<Option<String>, ApiError> {
    let keys = r
        .q("detachKeys")
        .filter(|k| !k.is_empty())
        .map(String::from);
    if let Some(k) = &keys {
        crate::detach::parse_detach_keys(k)
            .map_err(|_| ApiError::bad(format!("Invalid detach keys ({k}) provided")))?;
    }
    Ok(keys)
}

/// One attach on a hijacked connection: the log replay, then the live streams.
struct AttachSession {
    engine: berth_engine::Engine,
    id: String,
    tty: bool,
    replay: Option<LogOptions>,
    stream: bool,
    opts: AttachOptions,
    detach_keys: Option<String>,
    /// Docker's stdout/stderr framing when there is no tty (not on a WebSocket).
    mux: bool,
}

impl AttachSession {
    async fn run(self, mut io: Box<dyn hijack::Io>) {
        let raw = self.tty || !self.mux;
        // A container without a log to read (`--log-driver none`) replays nothing.
        // (The upgrade waited for the client to read the response head first.)
        if let Some(Ok((_, mut rx))) = self.replay.map(|o| self.engine.logs(&self.id, o)) {
            while let Some(e) = rx.recv().await {
                if io
                    .write_all(&log_chunk(&e, raw, false, false))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        if !self.stream {
            let _ = io.shutdown().await;
            return;
        }
        match self.engine.attach(&self.id, self.opts).await {
            Ok(session) => hijack::pump(io, session, self.detach_keys.as_deref(), self.mux).await,
            Err(e) => hijack::fail(io, &e.to_string()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_values_keep_their_nanoseconds() {
        let t = parse_time(Some("1763894390.123456789")).unwrap().unwrap();
        assert_eq!(t.timestamp(), 1763894390);
        assert_eq!(t.timestamp_subsec_nanos(), 123456789);
        let t = parse_time(Some("1763894390.5")).unwrap().unwrap();
        assert_eq!(t.timestamp_subsec_nanos(), 500_000_000);
        let t = parse_time(Some("1763894390")).unwrap().unwrap();
        assert_eq!(t.timestamp(), 1763894390);
        assert!(
            parse_time(Some("2026-11-23T10:00:00.5Z"))
                .unwrap()
                .is_some()
        );
        assert!(parse_time(Some("yesterday")).is_err());
        assert!(parse_time(Some("0")).unwrap().is_none());
        assert_eq!(
            parse_time(Some("-1")).unwrap().unwrap().timestamp(),
            -1,
            "before 1970, as Go reads it"
        );
    }
}
