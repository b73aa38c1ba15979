//! `build` and `builder prune`. Berth's CLI does not tar the context: it names the context
//! directory (`contextdir=`) and sends the Dockerfile alone; the daemon, on the same machine,
//! reads the files in place. A context of `-` is a tar or a Dockerfile on STDIN, sent as is.

use std::collections::BTreeMap;
use std::path::Path;

use berth_api::client::{Client, RequestBody};
use berth_api::models::JsonMessage;
use bytes::Bytes;
use hyper::Method;
use serde_json::Value;

use super::build_view::{Mode, View};
use crate::args::{BuildArgs, BuilderPruneArgs};
use crate::error::{CliError, Result};

fn io(what: String) -> impl FnOnce(std::io::Error) -> CliError {
    move |e| CliError::Precondition(format!("{what}: {e}"))
}

/// `KEY=value`, or `KEY` alone taking the value from the environment (skipped when unset).
fn build_args(raw: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for a in raw {
        match a.split_once('=') {
            Some((k, v)) => {
                out.insert(k.to_owned(), v.to_owned());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    out
}

fn labels(raw: &[String]) -> BTreeMap<String, String> {
    raw.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

/// Reads STDIN whole.
async fn read_stdin() -> Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut data = Vec::new();
    tokio::io::stdin()
        .read_to_end(&mut data)
        .await
        .map_err(io("read STDIN".into()))?;
    Ok(data)
}

/// `build [OPTIONS] PATH | -`.
pub async fn build(client: &Client, a: BuildArgs) -> Result<i32> {
    let mut query: Vec<(String, String)> = Vec::new();
    for t in &a.tags {
        query.push(("t".into(), t.clone()));
    }
    let args = build_args(&a.build_args);
    if !args.is_empty() {
        query.push((
            "buildargs".into(),
            serde_json::to_string(&args).unwrap_or_default(),
        ));
    }
    let labels = labels(&a.labels);
    if !labels.is_empty() {
        query.push((
            "labels".into(),
            serde_json::to_string(&labels).unwrap_or_default(),
        ));
    }
    if let Some(t) = &a.target {
        query.push(("target".into(), t.clone()));
    }
    if a.no_cache {
        query.push(("nocache".into(), "1".into()));
    }
    if a.pull {
        query.push(("pull".into(), "1".into()));
    }
    if a.quiet {
        query.push(("q".into(), "1".into()));
    }
    if let Some(o) = &a.output {
        query.push(("outputs".into(), output_spec(o)?));
    }
    if a.network != "default" {
        query.push(("networkmode".into(), a.network.clone()));
    }
    let mode = Mode::from_flag(&a.progress).map_err(CliError::Precondition)?;
    let body = if a.context == "-" {
        if a.file.is_some() {
            return Err(CliError::Precondition(
                "-f cannot be used with a context from STDIN".into(),
            ));
        }
        RequestBody::Full {
            data: Bytes::from(read_stdin().await?),
            content_type: "application/x-tar",
        }
    } else {
        let context = std::fs::canonicalize(&a.context).map_err(io(format!(
            "unable to prepare context: path {:?} not found",
            a.context
        )))?;
        if !context.is_dir() {
            return Err(CliError::Precondition(format!(
                "unable to prepare context: context must be a directory: {}",
                context.display()
            )));
        }
        let (data, name) = match a.file.as_deref() {
            Some("-") => (read_stdin().await?, "Dockerfile".to_owned()),
            Some(f) => {
                let p = std::fs::canonicalize(f).map_err(io(format!(
                    "unable to prepare context: the Dockerfile {f:?} is missing"
                )))?;
                let data = std::fs::read(&p).map_err(io(format!("read {}", p.display())))?;
                (data, dockerfile_name(&context, &p))
            }
            None => {
                let p = context.join("Dockerfile");
                let data = std::fs::read(&p).map_err(|_| {
                    CliError::Precondition(format!(
                        "unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {}: no such file or directory",
                        p.display()
                    ))
                })?;
                (data, "Dockerfile".to_owned())
            }
        };
        query.push(("dockerfile".into(), name));
        query.push(("contextdir".into(), context.to_string_lossy().into_owned()));
        RequestBody::Full {
            data: Bytes::from(data),
            content_type: "application/octet-stream",
        }
    };
    let pairs: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let qs = berth_api::client::query(&pairs);
    let secrets = secrets_header(&a.secrets)?;
    let headers: Vec<(&'static str, &str)> = secrets
        .as_deref()
        .map(|h| ("x-berth-build-secrets", h))
        .into_iter()
        .collect();
    let mut s = client
        .stream_with_headers(Method::POST, &format!("/build?{qs}"), body, &headers)
        .await?;
    let mut id = None;
    let mut view = View::new(mode);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        let m = tokio::select! {
            m = s.next_json::<JsonMessage>() => m?,
            _ = tick.tick(), if mode == Mode::Tty => {
                view.redraw();
                continue;
            }
        };
        let Some(m) = m else { break };
        let code = m
            .error_detail
            .as_ref()
            .and_then(|d| d.code)
            .and_then(|c| i32::try_from(c).ok())
            .filter(|&c| c > 0);
        if let Some(e) = m.error.or(m.error_detail.map(|d| d.message)) {
            view.failed();
            return Err(match code {
                Some(code) => CliError::StreamCode { message: e, code },
                None => CliError::Stream(e),
            });
        }
        if let Some(aux) = &m.aux {
            if let Some(i) = aux["ID"].as_str() {
                id = Some(i.to_owned());
            }
        }
        if let Some(line) = m.stream {
            if !a.quiet {
                view.feed(&line);
            }
        }
    }
    view.done();
    let Some(id) = id else {
        return Err(CliError::Stream("the build ended without an image".into()));
    };
    if a.quiet {
        outln!("{id}");
    }
    if let Some(f) = &a.iidfile {
        std::fs::write(f, &id).map_err(io(format!("write {f}")))?;
    }
    Ok(0)
}

/// `--secret id=X[,src=FILE|,env=VAR]` (`type=file` accepted) as the daemon's header: base64
/// of a JSON map of id -> base64 content. With neither `src` nor `env`, the variable named
/// like the id, else the file named like it.
fn secrets_header(raw: &[String]) -> Result<Option<String>> {
    use base64::Engine as _;
    if raw.is_empty() {
        return Ok(None);
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut map = BTreeMap::new();
    for spec in raw {
        let (mut id, mut src, mut env) = (None, None, None);
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_owned()),
                Some(("src" | "source", v)) => src = Some(v.to_owned()),
                Some(("env", v)) => env = Some(v.to_owned()),
                Some(("type", "file" | "env")) => {}
                _ => {
                    return Err(CliError::Precondition(format!(
                        "invalid secret {spec:?}: unexpected {field:?}"
                    )));
                }
            }
        }
        let id = id
            .or_else(|| src.clone())
            .or_else(|| env.clone())
            .ok_or_else(|| CliError::Precondition(format!("invalid secret {spec:?}: no id")))?;
        let data = match (src, env) {
            (Some(f), _) => std::fs::read(&f).map_err(io(format!("secret {id}: read {f}")))?,
            (None, Some(v)) => std::env::var(&v)
                .map_err(|_| CliError::Precondition(format!("secret {id}: ${v} is not set")))?
                .into_bytes(),
            (None, None) => match std::env::var(&id) {
                Ok(v) => v.into_bytes(),
                Err(_) => std::fs::read(&id).map_err(io(format!("secret {id}")))?,
            },
        };
        map.insert(id, b64.encode(data));
    }
    Ok(Some(
        b64.encode(serde_json::to_vec(&map).unwrap_or_default()),
    ))
}

/// `--output` as BuildKit's `outputs` JSON, `dest` made absolute.
fn output_spec(raw: &str) -> Result<String> {
    let mut kind = "local".to_owned();
    let mut dest = None;
    if raw.contains('=') {
        for field in raw.split(',') {
            match field.split_once('=') {
                Some(("type", v)) => kind = v.to_owned(),
                Some(("dest", v)) => dest = Some(v.to_owned()),
                _ => {
                    return Err(CliError::Precondition(format!(
                        "invalid output {raw:?}: unknown field {field:?}"
                    )));
                }
            }
        }
    } else {
        dest = Some(raw.to_owned());
    }
    let dest = dest.filter(|d| !d.is_empty() && d != "-").ok_or_else(|| {
        CliError::Precondition(format!("invalid output {raw:?}: a dest path is required"))
    })?;
    if !matches!(kind.as_str(), "local" | "tar") {
        return Err(CliError::Precondition(format!(
            "output type {kind:?} is not supported (local, tar)"
        )));
    }
    let abs = std::path::absolute(&dest).map_err(io(format!("resolve {dest}")))?;
    Ok(serde_json::json!([{ "Type": kind, "Attrs": { "dest": abs } }]).to_string())
}

/// The Dockerfile's name as the daemon sees it: its path in the context, or its base name
/// when it lies outside.
fn dockerfile_name(context: &Path, file: &Path) -> String {
    match file.strip_prefix(context) {
        Ok(rel) => rel.to_string_lossy().into_owned(),
        Err(_) => file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Dockerfile".into()),
    }
}

/// `builder prune`.
pub async fn prune(client: &Client, a: BuilderPruneArgs) -> Result<i32> {
    if !a.force && !super::system::confirm("WARNING! This will remove all dangling build cache.") {
        return Ok(0);
    }
    let (keys, space) = prune_cache(client, &a.filters).await?;
    if !keys.is_empty() {
        outln!("Deleted build cache objects:");
        for k in &keys {
            outln!("{k}");
        }
        outln!();
    }
    outln!(
        "Total reclaimed space: {}",
        crate::format::human_size(space as f64)
    );
    Ok(0)
}

/// `POST /build/prune`: the removed entries and the bytes reclaimed.
pub async fn prune_cache(client: &Client, filters: &[String]) -> Result<(Vec<String>, u64)> {
    let v: Value = client
        .post(
            &super::system::filters_query("/build/prune", filters, None)?,
            None::<&Value>,
        )
        .await?;
    let keys = v["CachesDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect();
    Ok((keys, v["SpaceReclaimed"].as_u64().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn dockerfile_names_are_relative_to_the_context() {
        let ctx = PathBuf::from("/src/app");
        assert_eq!(
            dockerfile_name(&ctx, Path::new("/src/app/build/Dockerfile.dev")),
            "build/Dockerfile.dev"
        );
        assert_eq!(
            dockerfile_name(&ctx, Path::new("/tmp/Dockerfile.x")),
            "Dockerfile.x"
        );
    }

    #[test]
    fn outputs_become_buildkit_exporters() {
        let v: Value =
            serde_json::from_str(&output_spec("type=tar,dest=/tmp/x.tar").unwrap()).unwrap();
        assert_eq!(v[0]["Type"], "tar");
        assert_eq!(v[0]["Attrs"]["dest"], "/tmp/x.tar");
        let v: Value = serde_json::from_str(&output_spec("/srv/out").unwrap()).unwrap();
        assert_eq!(v[0]["Type"], "local");
        assert!(output_spec("type=registry,dest=/x").is_err());
        assert!(output_spec("-").is_err());
    }

    #[test]
    fn build_args_take_unset_values_from_the_environment() {
        let a = build_args(&["A=1".into(), "B=".into(), "BERTH_SURELY_UNSET_VAR".into()]);
        assert_eq!(a.get("A").map(String::as_str), Some("1"));
        assert_eq!(a.get("B").map(String::as_str), Some(""));
        assert!(!a.contains_key("BERTH_SURELY_UNSET_VAR"));
    }
}
