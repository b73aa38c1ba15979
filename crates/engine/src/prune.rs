//! Disk use of containers: `container prune` (removing every stopped container a filter
//! selects, with the space their writable layers held) and the sizes `ps -s` and
//! `system df` report.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::{Engine, Status};

/// What a prune removed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub ids: Vec<String>,
    pub space: u64,
}

/// Whether `labels` satisfy Docker's `label` / `label!` prune filters.
pub(crate) fn labels_pass(
    labels: &BTreeMap<String, String>,
    want: &[String],
    negated: &[String],
) -> bool {
    let has = |v: &str| match v.split_once('=') {
        Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
        None => labels.contains_key(v),
    };
    want.iter().all(|v| has(v)) && !negated.iter().any(|v| has(v))
}

impl Engine {
    /// A container's size as Docker reports it: what it wrote (its writable layer), and that
    /// plus its image.
    pub fn container_sizes(&self, rec: &crate::ContainerRecord) -> (u64, u64) {
        let Ok(image) = self.inner.images.get(&rec.image_id) else {
            return (0, 0);
        };
        let rw = self
            .inner
            .images
            .container_layers(&rec.id, &image)
            .map(|(upper, _)| crate::fsutil::dir_size(&upper))
            .unwrap_or(0);
        (rw, rw + image.size)
    }

    /// How many containers use each image id.
    pub fn image_use_counts(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for h in self.handles() {
            *out.entry(h.record().image_id).or_insert(0) += 1;
        }
        out
    }

    /// The `prune` event of a prune, with the bytes it freed where it counts them.
    pub(crate) fn emit_prune(&self, kind: &str, reclaimed: Option<u64>) {
        let attrs = reclaimed
            .map(|r| BTreeMap::from([("reclaimed".to_owned(), r.to_string())]))
            .unwrap_or_default();
        self.inner.events.publish(kind, "prune", "", attrs);
    }

    /// Removes the images no container uses: only untagged ("dangling") ones unless `all`,
    /// created before `until`, with labels as for containers. Returns Docker's
    /// untagged/deleted rows and the bytes freed.
    pub fn prune_images(
        &self,
        all: bool,
        until: Option<DateTime<Utc>>,
        want: &[String],
        negated: &[String],
    ) -> Result<(Vec<crate::images::RemovedRow>, u64)> {
        let used = self.image_use_counts();
        let mut rows = Vec::new();
        let mut space = 0;
        for img in self.image_list(&HashMap::new(), true)? {
            if used.contains_key(&img.id)
                || (!all && !img.repo_tags.is_empty())
                || until.is_some_and(|u| img.created >= u)
                || !labels_pass(&img.labels, want, negated)
            {
                continue;
            }
            match self.image_remove(&img.id, true, true) {
                Ok(r) => {
                    // What is freed is the layers that went, not those other images share.
                    let gone: HashSet<&str> = r.iter().filter_map(|(_, d)| d.as_deref()).collect();
                    space += img
                        .chain_ids
                        .iter()
                        .zip(&img.layer_sizes)
                        .filter(|(c, _)| gone.contains(c.as_str()))
                        .map(|(_, s)| s)
                        .sum::<u64>();
                    rows.extend(r);
                }
                Err(e) => tracing::debug!(image = %img.id, "prune skipped: {e}"),
            }
        }
        self.emit_prune("image", Some(space));
        Ok((rows, space))
    }

    /// Removes the stopped containers created before `until` whose labels match `want`
    /// (`key` or `key=value`, all of them) and none of `negated`.
    pub async fn prune_containers(
        &self,
        until: Option<DateTime<Utc>>,
        want: &[String],
        negated: &[String],
    ) -> Result<Pruned> {
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
            if !labels_pass(&labels, want, negated) {
                continue;
            }
            let (size, _) = self.container_sizes(&rec);
            match self.remove(&rec.id, false, false).await {
                Ok(()) => {
                    out.ids.push(rec.id.clone());
                    out.space += size;
                }
                // Started meanwhile, or removed by someone else: not ours to prune.
                Err(e) => tracing::debug!(id = %rec.id, "prune skipped: {e}"),
            }
        }
        self.emit_prune("container", Some(out.space));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
