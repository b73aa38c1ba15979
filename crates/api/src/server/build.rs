//! `POST /build` (the legacy builder's API: a context tar in, Docker's JSON progress stream
//! out, as `DOCKER_BUILDKIT=0 docker build` reads it) and `POST /build/prune`.
//!
//! Berth's own CLI may instead name a context directory on this machine with
//! `contextdir=<absolute path>` and send only the Dockerfile as the body: the daemon reads
//! the context in place.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_engine::build::{BuildOptions, ContextSource, Event};
use bytes::Bytes;
use hyper::StatusCode;

use super::images::error_with_code;
use super::{ApiError, Ctx, HandlerResult, Req, body, ok_json};
use crate::models::JsonMessage;

/// Largest Dockerfile sent as a body with `contextdir`.
const MAX_DOCKERFILE: usize = 16 << 20;

fn json_map(r: &Req, key: &str) -> Result<BTreeMap<String, String>, ApiError> {
    match r.q(key).filter(|s| !s.is_empty()) {
        None => Ok(BTreeMap::new()),
        Some(raw) => {
            // Docker sends `{"A":"x","B":null}`: a null build arg takes the client's env,
            // which the client already resolved, so a null left here means "unset".
            let v: BTreeMap<String, Option<String>> = serde_json::from_str(raw)
                .map_err(|e| ApiError::bad(format!("invalid {key}: {e}")))?;
            Ok(v.into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect())
        }
    }
}

fn line(msg: &JsonMessage) -> Bytes {
    let mut v = serde_json::to_vec(msg).unwrap_or_default();
    v.push(b'\r');
    v.push(b'\n');
    Bytes::from(v)
}

fn stream_msg(s: String) -> JsonMessage {
    JsonMessage {
        stream: Some(s),
        ..JsonMessage::default()
    }
}

/// `outputs=[{"Type":"local|tar","Attrs":{"dest":"/abs/path"}}]`: one exporter at most; the
/// daemon writes on its own machine, so `dest` must be absolute.
fn outputs(r: &Req) -> Result<Option<berth_engine::build::Output>, ApiError> {
    use berth_engine::build::Output;
    let Some(raw) = r.q("outputs").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "Type")]
        kind: String,
        #[serde(rename = "Attrs", default)]
        attrs: BTreeMap<String, String>,
    }
    let list: Vec<Entry> =
        serde_json::from_str(raw).map_err(|e| ApiError::bad(format!("invalid outputs: {e}")))?;
    if list.len() > 1 {
        return Err(ApiError::bad("only one output is supported"));
    }
    let Some(e) = list.into_iter().next() else {
        return Ok(None);
    };
    let dest = PathBuf::from(e.attrs.get("dest").map(String::as_str).unwrap_or(""));
    if !dest.is_absolute() {
        return Err(ApiError::bad(
            "an output needs an absolute dest on the daemon's machine",
        ));
    }
    match e.kind.as_str() {
        "local" => Ok(Some(Output::Local(dest))),
        "tar" => Ok(Some(Output::Tar(dest))),
        other => Err(ApiError::bad(format!(
            "output type {other:?} is not supported (local, tar)"
        ))),
    }
}

/// Berth's `X-Berth-Build-Secrets` header: base64 of a JSON map of id -> base64 content
/// (`berth build --secret`). The legacy API has no secrets; BuildKit's come by its session.
fn secrets(r: &Req) -> Result<BTreeMap<String, Vec<u8>>, ApiError> {
    use base64::Engine as _;
    let Some(raw) = r.parts.headers.get("x-berth-build-secrets") else {
        return Ok(BTreeMap::new());
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let bad = || ApiError::bad("invalid X-Berth-Build-Secrets header");
    let json = b64.decode(raw.as_bytes()).map_err(|_| bad())?;
    let map: BTreeMap<String, String> = serde_json::from_slice(&json).map_err(|_| bad())?;
    map.into_iter()
        .map(|(k, v)| Ok((k, b64.decode(v.as_bytes()).map_err(|_| bad())?)))
        .collect()
}

/// `POST /build`.
pub(super) async fn build(ctx: &Ctx, mut r: Req) -> HandlerResult {
    if r.q("remote").is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad(
            "remote build contexts (URLs, git) are not supported; send the context as a tar",
        ));
    }
    if r.q("version") == Some("2") {
        return Err(ApiError::bad(
            "BuildKit sessions (version=2) are not supported; use DOCKER_BUILDKIT=0 or berth build",
        ));
    }
    let dockerfile = r.q("dockerfile").unwrap_or("").to_owned();
    let context = match r.q("contextdir").filter(|s| !s.is_empty()) {
        Some(dir) => {
            let path = PathBuf::from(dir);
            if !path.is_absolute() || !path.is_dir() {
                return Err(ApiError::bad(format!(
                    "contextdir {dir}: not an absolute path to a directory"
                )));
            }
            let data = r.bytes(MAX_DOCKERFILE).await?;
            ContextSource::Dir {
                path,
                dockerfile: data.to_vec(),
            }
        }
        None => {
            let incoming = r
                .body
                .take()
                .ok_or_else(|| ApiError::bad("no build context"))?;
            let chunks = body::forward(incoming, None);
            ContextSource::Tar(Box::new(berth_engine::ChannelReader::new(chunks)))
        }
    };
    let quiet = r.flag("q");
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let output = outputs(&r)?;
    let secrets = secrets(&r)?;
    let opts = BuildOptions {
        context,
        dockerfile,
        tags: r.all("t"),
        build_args: json_map(&r, "buildargs")?,
        labels: json_map(&r, "labels")?,
        target: r.q("target").map(str::to_owned),
        no_cache: r.flag("nocache"),
        pull: r.flag("pull"),
        network_mode: r.q("networkmode").unwrap_or("").to_owned(),
        output,
        secrets,
        cancel: cancel.clone(),
    };
    let engine = ctx.engine.clone();
    let (ptx, mut prx) = tokio::sync::mpsc::channel::<Event>(256);
    let mut build = tokio::spawn(async move { engine.build(opts, ptx).await });
    // A client gone before the answer cancels the build too.
    let guard = CancelOnDrop(Some(cancel.clone()));
    // As dockerd: the status waits for the build's first output, so what fails before any
    // (a Dockerfile that does not parse, a missing one, an unknown target) is an error
    // status that SDKs raise, not a 200 whose stream says so.
    let first = tokio::select! {
        biased;
        Some(e) = prx.recv() => Some(e),
        done = &mut build => {
            let result = done.map_err(|e| ApiError::from(berth_engine::EngineError::Runtime(
                format!("build task: {e}"),
            )))?;
            match result {
                Err(e) if !matches!(e, berth_engine::EngineError::RunFailed { .. }) => {
                    return Err(e.into());
                }
                other => {
                    // Finished without output (quiet, say): answered below from the result.
                    let (resp, tx) = body::stream(StatusCode::OK, "application/json");
                    guard.disarm();
                    let mut rest = Vec::new();
                    while let Ok(e) = prx.try_recv() {
                        rest.push(e);
                    }
                    tokio::spawn(async move {
                        let mut progress = Progress::new(quiet);
                        for e in rest {
                            if let Some(b) = progress.line(e) {
                                let _ = tx.send(b).await;
                            }
                        }
                        finish(&tx, progress, other).await;
                    });
                    return Ok(resp);
                }
            }
        }
    };
    guard.disarm();
    let (resp, tx) = body::stream(StatusCode::OK, "application/json");
    tokio::spawn(async move {
        // A client that goes away cancels the build, as with dockerd.
        let stop = || cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut progress = Progress::new(quiet);
        if let Some(b) = first.and_then(|e| progress.line(e)) {
            if tx.send(b).await.is_err() {
                stop();
            }
        }
        let result = loop {
            tokio::select! {
                r = &mut build => break r,
                Some(e) = prx.recv() => {
                    if let Some(b) = progress.line(e) {
                        if tx.send(b).await.is_err() {
                            stop();
                        }
                    }
                }
                _ = tx.closed(), if !cancel.load(std::sync::atomic::Ordering::Relaxed) => stop(),
            }
        };
        while let Ok(e) = prx.try_recv() {
            if let Some(b) = progress.line(e) {
                let _ = tx.send(b).await;
            }
        }
        let result = result.unwrap_or_else(|e| {
            Err(berth_engine::EngineError::Runtime(format!(
                "build task: {e}"
            )))
        });
        finish(&tx, progress, result).await;
    });
    Ok(resp)
}

/// Sets the build's cancel flag when dropped armed: the request went away mid-way.
struct CancelOnDrop(Option<std::sync::Arc<std::sync::atomic::AtomicBool>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl CancelOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

/// Bytes of a quiet build's output held for an error.
const MAX_HELD: usize = 4 << 20;

/// The build's progress lines: sent as they come, or held when quiet and sent only before an
/// error (as dockerd shows a failed quiet build's output).
struct Progress {
    quiet: bool,
    held: Vec<Bytes>,
    held_len: usize,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Self {
            quiet,
            held: Vec::new(),
            held_len: 0,
        }
    }

    /// An event as a stream line to send now (none when quiet).
    fn line(&mut self, e: Event) -> Option<Bytes> {
        let b = line(&stream_msg(match e {
            Event::Line(s) => s,
            Event::Output(b) => String::from_utf8_lossy(&b).into_owned(),
        }));
        if !self.quiet {
            return Some(b);
        }
        if self.held_len + b.len() <= MAX_HELD {
            self.held_len += b.len();
            self.held.push(b);
        }
        None
    }
}

/// The stream's end: the image id and what was tagged, or the error (with a failed RUN's
/// exit code, which the docker CLI exits with).
async fn finish(
    tx: &tokio::sync::mpsc::Sender<Bytes>,
    progress: Progress,
    result: berth_engine::Result<berth_engine::build::Built>,
) {
    let quiet = progress.quiet;
    match result {
        Ok(built) => {
            let aux = JsonMessage {
                aux: Some(serde_json::json!({ "ID": built.id })),
                ..JsonMessage::default()
            };
            let _ = tx.send(line(&aux)).await;
            if quiet {
                let _ = tx.send(line(&stream_msg(format!("{}\n", built.id)))).await;
            } else {
                let short = built.id.trim_start_matches("sha256:");
                let short = &short[..12.min(short.len())];
                let _ = tx
                    .send(line(&stream_msg(format!("Successfully built {short}\n"))))
                    .await;
                for t in built.tags.iter().filter(|t| !t.is_empty()) {
                    let _ = tx
                        .send(line(&stream_msg(format!("Successfully tagged {t}\n"))))
                        .await;
                }
            }
        }
        Err(e) => {
            for b in progress.held {
                let _ = tx.send(b).await;
            }
            let code = match &e {
                berth_engine::EngineError::RunFailed { code, .. } => Some(i64::from(*code)),
                _ => None,
            };
            let _ = tx.send(line(&error_with_code(&e.to_string(), code))).await;
        }
    }
}

/// `POST /build/prune?all=&filters=`: the build cache (`until` filters by last use).
pub(super) async fn prune(ctx: &Ctx, r: &Req) -> HandlerResult {
    let f = super::containers::prune_filters(r, &["type", "id", "inuse", "shared", "private"])?;
    let (keys, space) = ctx
        .engine
        .build_prune(f.until.map(|t| t.timestamp()))
        .await?;
    let keys = (!keys.is_empty()).then_some(keys);
    ok_json(&serde_json::json!({ "CachesDeleted": keys, "SpaceReclaimed": space }))
}
