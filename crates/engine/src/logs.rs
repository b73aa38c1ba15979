//! Container logs: the json-file log read back with Docker's options (stdout/stderr, tail,
//! since, until) and followed while the container runs; and the attributes (`--log-opt
//! labels/env/tag`) each line carries.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_shim::jsonlog::{self, Entry, Follower, Stream};
use tokio::sync::mpsc;

use crate::Engine;
use crate::containers::LogOptions;
use crate::error::{EngineError, Result};

impl Engine {
    /// Streams a container's log entries. Returns whether the container has a tty (the output
    /// is then raw) and the entries; with `follow` the channel stays open until the container
    /// stops and its last lines are read.
    pub fn logs(&self, key: &str, opts: LogOptions) -> Result<(bool, mpsc::Receiver<Entry>)> {
        let h = self.resolve(key)?;
        let rec = h.record();
        if rec.host_config.log_config.kind == "none" {
            return Err(EngineError::InvalidArgument(
                "configured logging driver does not support reading".into(),
            ));
        }
        if !opts.stdout && !opts.stderr {
            return Err(EngineError::InvalidArgument(
                "Bad parameters: you must choose at least one stream".into(),
            ));
        }
        let (path, ..) = self.container_paths(&rec.id);
        let keep = move |e: &Entry| {
            (match e.stream {
                Stream::Stdout => opts.stdout,
                Stream::Stderr => opts.stderr,
            }) && opts.since.is_none_or(|t| e.time >= t)
                && opts.until.is_none_or(|t| e.time <= t)
        };
        // Start following before reading the backlog, so nothing falls in between.
        let mut follower = Follower::at_end(&path);
        let mut backlog: Vec<Entry> = jsonlog::read_all(&path)
            .map_err(EngineError::io(format!("read {}", path.display())))?;
        // As moby's json-file reader: the last `tail` lines of the file, then the time and
        // stream filters over them.
        if let Some(n) = opts.tail {
            let skip = backlog.len().saturating_sub(n);
            backlog.drain(..skip);
        }
        backlog.retain(&keep);
        let (tx, rx) = mpsc::channel(256);
        let follow = opts.follow
            && rec.state.is_running()
            && opts.until.is_none_or(|t| t > chrono::Utc::now());
        let mut watch = h.watch.subscribe();
        let until = opts.until;
        tokio::spawn(async move {
            for e in backlog {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
            if !follow {
                return;
            }
            loop {
                let stopped = {
                    let w = watch.borrow_and_update();
                    !w.running || w.removed
                };
                let fresh = match follower.read_new() {
                    Ok(v) => v,
                    Err(_) => return,
                };
                for e in fresh.into_iter().filter(&keep) {
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
                if stopped || until.is_some_and(|t| chrono::Utc::now() > t) {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = watch.changed() => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok((rec.config.tty, rx))
    }
}

/// The attributes a container's log lines carry, as moby's json-file writes them: the labels
/// named by `labels` (or matching `labels-regex`), the variables named by `env` (or matching
/// `env-regex`) with their values, and `tag` (a template of `{{.ID}}`, `{{.FullID}}`,
/// `{{.Name}}`, `{{.ImageID}}`, `{{.ImageFullID}}`, `{{.ImageName}}`, `{{.DaemonName}}`).
pub(crate) fn log_attributes(
    rec: &crate::ContainerRecord,
    opts: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let list = |key: &str| -> Vec<String> {
        opts.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let regex = |key: &str| {
        opts.get(key)
            .and_then(|p| regex::RegexBuilder::new(p).size_limit(1 << 20).build().ok())
    };
    let labels = rec.config.labels.clone().unwrap_or_default();
    let wanted = list("labels");
    let labels_re = regex("labels-regex");
    for (k, v) in &labels {
        if wanted.contains(k) || labels_re.as_ref().is_some_and(|r| r.is_match(k)) {
            out.insert(k.clone(), v.clone());
        }
    }
    let env: Vec<(&str, &str)> = rec
        .config
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.split_once('='))
        .collect();
    let wanted = list("env");
    let env_re = regex("env-regex");
    for (k, v) in env {
        if wanted.iter().any(|w| w == k) || env_re.as_ref().is_some_and(|r| r.is_match(k)) {
            out.insert(k.to_owned(), v.to_owned());
        }
    }
    if let Some(tag) = opts.get("tag").filter(|t| !t.is_empty()) {
        let image_hex = rec.image_id.trim_start_matches("sha256:");
        let tag = tag
            .replace("{{.ID}}", &rec.id[..12.min(rec.id.len())])
            .replace("{{.FullID}}", &rec.id)
            .replace("{{.Name}}", &rec.name)
            .replace("{{.ImageID}}", &image_hex[..12.min(image_hex.len())])
            .replace("{{.ImageFullID}}", &rec.image_id)
            .replace("{{.ImageName}}", &rec.config.image)
            .replace("{{.DaemonName}}", "docker");
        out.insert("tag".into(), tag);
    }
    out
}

/// `logs --details`' prefix: the attributes as `k=v` pairs, query-escaped, by key, then a
/// space (the space alone without attributes).
pub fn details_prefix(attrs: Option<&BTreeMap<String, String>>) -> String {
    let pairs: Vec<String> = attrs
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect();
    format!("{} ", pairs.join(","))
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_come_from_labels_env_and_tag() {
        let rec: crate::ContainerRecord = serde_json::from_value(serde_json::json!({
            "id": "0123456789abcdef", "name": "web", "created": "2024-01-01T00:00:00Z",
            "config": {"Image": "busybox", "Env": ["E1=x", "E2=y", "OTHER=z"],
                       "Labels": {"a": "1", "b": "with space", "zz": "no"}},
            "host_config": {}, "image_id": "sha256:feedfacecafe0000", "path": "", "args": [],
            "state": crate::container::State::default(), "restart_count": 0,
            "has_been_started": false
        }))
        .unwrap();
        let opts: BTreeMap<String, String> = [
            ("labels", "a"),
            ("labels-regex", "^b$"),
            ("env", "E1"),
            ("env-regex", "^E2"),
            ("tag", "{{.Name}}/{{.ID}}/{{.ImageID}}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let attrs = log_attributes(&rec, &opts);
        assert_eq!(
            attrs,
            [
                ("E1", "x"),
                ("E2", "y"),
                ("a", "1"),
                ("b", "with space"),
                ("tag", "web/0123456789ab/feedfacecafe")
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
        );
        assert_eq!(
            details_prefix(Some(&attrs)),
            "E1=x,E2=y,a=1,b=with+space,tag=web%2F0123456789ab%2Ffeedfacecafe "
        );
        assert_eq!(details_prefix(None), " ");
        assert!(log_attributes(&rec, &BTreeMap::new()).is_empty());
    }
}
