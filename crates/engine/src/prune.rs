//! `container prune`: removing every stopped container a filter selects, with the space
//! their writable layers held (`POST /containers/prune`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::error::{EngineError, Result};
use crate::{Engine, Status};

/// What a prune removed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub ids: Vec<String>,
    pub space: u64,
}

/// Docker's `until` (and `since`) values: a Unix time (seconds, fractions allowed), an
/// RFC 3339 time, or a Go duration back from `now` (`10m`, `1h30m`, `2h45m10s`).
pub fn parse_time(v: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Ok(secs) = v.parse::<f64>() {
        let whole = secs.trunc() as i64;
        let nanos = ((secs - secs.trunc()) * 1e9) as u32;
        return DateTime::from_timestamp(whole, nanos);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    let d = parse_go_duration(v)?;
    Some(now - d)
}

fn parse_go_duration(v: &str) -> Option<chrono::Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = v.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() || n == 'µ' {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let scale = match unit.as_str() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        any = true;
    }
    if !num.is_empty() || !any {
        return None;
    }
    chrono::Duration::try_milliseconds((total * 1000.0) as i64)
}

/// Bytes under `dir`, not following symlinks (a writable layer's size).
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Whether `labels` satisfy Docker's `label` / `label!` prune filters.
fn labels_pass(labels: &BTreeMap<String, String>, want: &[String], negated: &[String]) -> bool {
    let has = |v: &str| match v.split_once('=') {
        Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
        None => labels.contains_key(v),
    };
    want.iter().all(|v| has(v)) && !negated.iter().any(|v| has(v))
}

impl Engine {
    /// Removes the stopped containers that `filters` (`until`, `label`, `label!`) select.
    pub async fn prune_containers(&self, filters: &HashMap<String, Vec<String>>) -> Result<Pruned> {
        for key in filters.keys() {
            if !matches!(key.as_str(), "until" | "label" | "label!") {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid filter '{key}'"
                )));
            }
        }
        let now = Utc::now();
        let mut until = None;
        for v in filters.get("until").into_iter().flatten() {
            until = Some(parse_time(v, now).ok_or_else(|| {
                EngineError::InvalidArgument(format!("invalid until value: {v}"))
            })?);
        }
        let want = filters.get("label").cloned().unwrap_or_default();
        let negated = filters.get("label!").cloned().unwrap_or_default();
        let mut out = Pruned::default();
        for h in self.handles() {
            let rec = h.record();
            if !matches!(
                rec.state.status,
                Status::Exited | Status::Created | Status::Dead
            ) {
                continue;
            }
            if until.is_some_and(|u| rec.created >= u) {
                continue;
            }
            let labels = rec.config.labels.clone().unwrap_or_default();
            if !labels_pass(&labels, &want, &negated) {
                continue;
            }
            let image = self.inner.images.get(&rec.image_id).ok();
            let size = image
                .and_then(|i| self.inner.images.container_layers(&rec.id, &i).ok())
                .map(|(upper, _)| tree_size(&upper))
                .unwrap_or(0);
            match self.remove(&rec.id, false).await {
                Ok(()) => {
                    out.ids.push(rec.id.clone());
                    out.space += size;
                }
                // Started meanwhile, or removed by someone else: not ours to prune.
                Err(e) => tracing::debug!(id = %rec.id, "prune skipped: {e}"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_values_like_docker() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = |v: &str| parse_time(v, now).map(|t| t.to_rfc3339());
        assert_eq!(t("1h30m").unwrap(), "2026-11-23T10:30:00+00:00");
        assert_eq!(t("90s").unwrap(), "2026-11-23T11:58:30+00:00");
        assert_eq!(t("1795348800").unwrap(), "2026-11-22T12:00:00+00:00");
        assert_eq!(
            t("2026-11-01T00:00:00Z").unwrap(),
            "2026-11-01T00:00:00+00:00"
        );
        assert!(t("soon").is_none());
        assert!(t("10").is_some());
        assert!(t("5x").is_none());
    }

    #[test]
    fn label_filters() {
        let l: BTreeMap<String, String> = [("app".to_owned(), "web".to_owned())].into();
        assert!(labels_pass(&l, &["app".into()], &[]));
        assert!(labels_pass(&l, &["app=web".into()], &[]));
        assert!(!labels_pass(&l, &["app=db".into()], &[]));
        assert!(!labels_pass(&l, &[], &["app".into()]));
        assert!(labels_pass(&l, &[], &["tier".into()]));
    }
}
