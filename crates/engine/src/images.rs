//! The engine's image service: import with `--change`, list with filters, inspect, tag,
//! remove (refused while a container uses the image), and container root filesystems.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use berth_image::snapshot::Upper;
use berth_image::{Image, ImageUser, ImportOptions, Reference};
use chrono::{DateTime, Utc};

use crate::config::{Config, HealthConfig};
use crate::error::{EngineError, Result};
use crate::{Engine, lock};

/// `POST /images/create?fromSrc=-` parameters.
#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    /// `repo[:tag]`.
    pub reference: Option<String>,
    /// Dockerfile instructions applied to the config (`--change "CMD ..."`).
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub platform: Option<String>,
}

/// One row of an image removal, as Docker reports it: the tag untagged, or the id deleted.
pub type RemovedRow = (Option<String>, Option<String>);

/// An image as the API shows it.
#[derive(Debug, Clone)]
pub struct ImageView {
    pub id: String,
    /// Familiar names (`busybox:latest`).
    pub repo_tags: Vec<String>,
    pub created: DateTime<Utc>,
    pub size: u64,
    pub labels: BTreeMap<String, String>,
    pub config: Config,
    pub architecture: String,
    pub os: String,
    pub author: String,
    pub comment: String,
    pub layers: Vec<String>,
    pub history: Vec<HistoryView>,
    /// The image this one was committed from.
    pub parent: Option<String>,
    /// Chain ids of its layers, bottom first (equal ids: a shared layer).
    pub chain_ids: Vec<String>,
    /// Unpacked bytes of each layer, bottom first.
    pub layer_sizes: Vec<u64>,
    /// `name@digest` of the manifests it was pulled by or pushed as.
    pub repo_digests: Vec<String>,
    /// The config of the container it was made from (`container_config`; empty when the
    /// image has none, and in lists), shown as inspect's `ContainerConfig`.
    pub container_config: Config,
    /// `docker_version` of the image config: the engine version that made it, if recorded.
    pub docker_version: String,
    /// The id of the container it was committed from, if it was.
    pub container: String,
    /// When it was last tagged (not by a pull or load), as `Metadata.LastTagTime`.
    pub last_tag_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct HistoryView {
    /// Bytes of the layer this step made (0 for steps that made none).
    pub size: u64,
    pub created: Option<DateTime<Utc>>,
    pub created_by: String,
    pub comment: String,
}

pub(crate) fn parse_reference(s: &str) -> Result<Reference> {
    Reference::parse(s).map_err(EngineError::from)
}

/// A `HEALTHCHECK` change line (`NONE`, or options and `CMD ...`), read by the Dockerfile
/// parser so it means what it means in a Dockerfile.
fn healthcheck_change(line: &str) -> Result<HealthConfig> {
    use berth_build::ast::Healthcheck;
    let df = berth_build::Dockerfile::parse("change", format!("FROM scratch\n{line}\n").as_bytes())
        .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
    let parsed = df
        .stages
        .first()
        .and_then(|s| s.commands.first())
        .map(|c| &c.instruction);
    let nanos = |d: std::time::Duration| {
        Some(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)).filter(|&n| n > 0)
    };
    match parsed {
        Some(berth_build::Instruction::Healthcheck(Healthcheck::Disable)) => Ok(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..HealthConfig::default()
        }),
        Some(berth_build::Instruction::Healthcheck(Healthcheck::Check(h))) => Ok(HealthConfig {
            test: Some(h.test.clone()),
            interval: nanos(h.interval),
            timeout: nanos(h.timeout),
            start_period: nanos(h.start_period),
            retries: Some(i64::from(h.retries)).filter(|&r| r > 0),
        }),
        _ => Err(EngineError::InvalidArgument(format!(
            "invalid HEALTHCHECK change: {line}"
        ))),
    }
}

/// Checks that `name` is a valid image reference (Docker's error when it is not).
pub fn check_reference(name: &str) -> Result<()> {
    parse_reference(name).map(|_| ())
}

/// Applies `--change` instructions (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME,
/// WORKDIR, STOPSIGNAL, ONBUILD) to a config, as `docker import -c` does.
pub fn apply_changes(config: &mut Config, changes: &[String]) -> Result<()> {
    for change in changes {
        let change = change.trim();
        if change.is_empty() {
            continue;
        }
        let (instr, rest) = change
            .split_once(char::is_whitespace)
            .unwrap_or((change, ""));
        let rest = rest.trim();
        let list = || -> Vec<String> {
            if rest.starts_with('[') {
                if let Ok(v) = serde_json::from_str::<Vec<String>>(rest) {
                    return v;
                }
            }
            vec!["/bin/sh".into(), "-c".into(), rest.to_owned()]
        };
        match instr.to_ascii_uppercase().as_str() {
            "CMD" => config.cmd = Some(list()),
            "ENTRYPOINT" => config.entrypoint = Some(list()),
            "ENV" => {
                let env = config.env.get_or_insert_with(Vec::new);
                for (k, v) in key_values(rest)? {
                    env.retain(|e| e.split('=').next() != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                }
            }
            "LABEL" => {
                let labels = config.labels.get_or_insert_with(BTreeMap::new);
                labels.extend(key_values(rest)?);
            }
            "EXPOSE" => {
                let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_owned()
                    } else {
                        format!("{p}/tcp")
                    };
                    ports.insert(p, serde_json::json!({}));
                }
            }
            "USER" => config.user = rest.to_owned(),
            "WORKDIR" => config.working_dir = rest.to_owned(),
            "STOPSIGNAL" => config.stop_signal = Some(rest.to_owned()),
            "VOLUME" => {
                let vols = config.volumes.get_or_insert_with(BTreeMap::new);
                let paths: Vec<String> = if rest.starts_with('[') {
                    serde_json::from_str(rest)
                        .map_err(|e| EngineError::InvalidArgument(format!("VOLUME: {e}")))?
                } else {
                    rest.split_whitespace().map(String::from).collect()
                };
                for p in paths {
                    vols.insert(p, serde_json::json!({}));
                }
            }
            "ONBUILD" => config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(rest.to_owned()),
            "HEALTHCHECK" => config.healthcheck = Some(healthcheck_change(change)?),
            other => {
                return Err(EngineError::InvalidArgument(format!(
                    "{} is not a valid change command",
                    other.to_ascii_lowercase()
                )));
            }
        }
    }
    Ok(())
}

/// `k=v k2="v 2"` or the legacy `k v`.
fn key_values(s: &str) -> Result<Vec<(String, String)>> {
    if !s.contains('=') {
        let (k, v) = s
            .split_once(char::is_whitespace)
            .ok_or_else(|| EngineError::InvalidArgument(format!("{s}: needs a key and a value")))?;
        return Ok(vec![(k.to_owned(), v.trim().to_owned())]);
    }
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let mut val = String::new();
        let mut quote = None;
        while let Some(&c) = chars.peek() {
            chars.next();
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => break,
                (_, '\\') => {
                    if let Some(n) = chars.next() {
                        val.push(n);
                    }
                }
                (_, c) => val.push(c),
            }
        }
        if key.is_empty() {
            return Err(EngineError::InvalidArgument(format!(
                "invalid key=value: {s}"
            )));
        }
        out.push((key, val));
    }
    Ok(out)
}

impl Engine {
    /// Validates an import request before its body is read.
    pub fn check_import(&self, req: &ImportRequest) -> Result<()> {
        if let Some(r) = &req.reference {
            parse_reference(r)?;
        }
        apply_changes(&mut Config::default(), &req.changes)?;
        Ok(())
    }

    /// Imports a root filesystem tarball as a one-layer image; returns the image id.
    pub async fn import_image(
        &self,
        reader: Box<dyn std::io::Read + Send>,
        req: ImportRequest,
    ) -> Result<String> {
        let reference = req.reference.as_deref().map(parse_reference).transpose()?;
        let mut config = Config::default();
        apply_changes(&mut config, &req.changes)?;
        let config_json = serde_json::to_value(&config)
            .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
        let opts = ImportOptions {
            reference,
            config: config_json,
            message: req.message.clone(),
            platform: req.platform.clone(),
        };
        let engine = self.clone();
        let image = tokio::task::spawn_blocking(move || engine.inner.images.import(reader, &opts))
            .await
            .map_err(|e| EngineError::Runtime(format!("import task: {e}")))??;
        self.emit_image("import", &image.id, &image.id);
        Ok(image.id)
    }

    /// `docker import URL`: the tarball is fetched by the daemon and streamed into the import.
    pub async fn import_url(&self, url: &str, mut req: ImportRequest) -> Result<String> {
        self.check_import(&req)?;
        let stream = self
            .registry()
            .get_url(url)
            .await
            .map_err(EngineError::Registry)?;
        req.message
            .get_or_insert_with(|| format!("Imported from {url}"));
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut stream = stream;
            while let Some(chunk) = stream.next().await {
                if tx.send(chunk.map_err(std::io::Error::other)).await.is_err() {
                    return;
                }
            }
        });
        self.import_image(Box::new(crate::ChannelReader::new(rx)), req)
            .await
    }

    pub(crate) fn image_container_config(&self, image: &Image) -> Config {
        image_config(image)
    }

    fn view(&self, image: &Image) -> ImageView {
        let config = image_config(image);
        let raw = &image.config;
        ImageView {
            id: image.id.clone(),
            repo_tags: image.repo_tags.clone(),
            created: image.created,
            size: image.size,
            labels: config.labels.clone().unwrap_or_default(),
            architecture: raw
                .get("architecture")
                .and_then(|v| v.as_str())
                .unwrap_or("amd64")
                .to_owned(),
            os: raw
                .get("os")
                .and_then(|v| v.as_str())
                .unwrap_or("linux")
                .to_owned(),
            author: raw
                .get("author")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned(),
            comment: raw
                .get("history")
                .and_then(|h| h.as_array())
                .and_then(|h| h.last())
                .and_then(|h| h.get("comment"))
                .and_then(|c| c.as_str())
                .unwrap_or("")
                .to_owned(),
            layers: image.layers.clone(),
            parent: image.parent.clone(),
            last_tag_time: image.last_tag_time,
            chain_ids: berth_image::snapshot::chain_ids(&image.layers),
            layer_sizes: image.layer_sizes.clone(),
            repo_digests: image.repo_digests.clone(),
            // Parsed by `image_inspect` only: lists have no use for it.
            container_config: Config::default(),
            docker_version: raw
                .get("docker_version")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned(),
            container: raw
                .get("container")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned(),
            history: raw
                .get("history")
                .and_then(|h| h.as_array())
                .map(|h| {
                    let mut sizes = image.layer_sizes.iter();
                    h.iter()
                        .map(|e| HistoryView {
                            size: if e.get("empty_layer").and_then(|v| v.as_bool()) == Some(true) {
                                0
                            } else {
                                sizes.next().copied().unwrap_or(0)
                            },
                            created: e
                                .get("created")
                                .and_then(|c| c.as_str())
                                .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
                                .map(|t| t.with_timezone(&Utc)),
                            created_by: e
                                .get("created_by")
                                .and_then(|c| c.as_str())
                                .unwrap_or("")
                                .to_owned(),
                            comment: e
                                .get("comment")
                                .and_then(|c| c.as_str())
                                .unwrap_or("")
                                .to_owned(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            config,
        }
    }

    /// Images, filtered as `docker images` does (`dangling`, `label`, `reference`, `before`,
    /// `since`). As in moby, a `reference` filter also narrows each image's tags and digests
    /// to the matching ones, and leaves out untagged images.
    pub fn image_list(
        &self,
        filters: &HashMap<String, Vec<String>>,
        _all: bool,
    ) -> Result<Vec<ImageView>> {
        for k in filters.keys() {
            if !matches!(
                k.as_str(),
                "dangling" | "label" | "reference" | "before" | "since"
            ) {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid filter '{k}'"
                )));
            }
        }
        let dangling_only = match filters.get("dangling").and_then(|d| d.first()) {
            None => None,
            Some(d) => match d.to_ascii_lowercase().as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => {
                    return Err(EngineError::InvalidArgument(format!(
                        "Invalid filter 'dangling={d}'"
                    )));
                }
            },
        };
        // `before` / `since`: strictly older / newer than the image named (the last one
        // given wins, as moby's walk keeps the last).
        let bound = |key: &str| -> Result<Option<DateTime<Utc>>> {
            let mut at = None;
            for name in filters.get(key).into_iter().flatten() {
                at = Some(self.inner.images.resolve(name)?.created);
            }
            Ok(at)
        };
        let before = bound("before")?;
        let since = bound("since")?;
        let mut images = self.inner.images.list()?;
        images.sort_by_key(|i| std::cmp::Reverse(i.created));
        let mut out = Vec::new();
        for img in images {
            let mut v = self.view(&img);
            if before.is_some_and(|b| v.created >= b) || since.is_some_and(|s| v.created <= s) {
                continue;
            }
            if let Some(refs) = filters.get("reference") {
                let matches = |r: &String| refs.iter().any(|pat| reference_matches(pat, r));
                v.repo_tags.retain(matches);
                v.repo_digests.retain(matches);
                if v.repo_tags.is_empty() && v.repo_digests.is_empty() {
                    continue;
                }
            }
            let dangling = v.repo_tags.is_empty();
            if dangling_only.is_some_and(|d| d != dangling) {
                continue;
            }
            if let Some(labels) = filters.get("label") {
                let ok = labels.iter().all(|l| match l.split_once('=') {
                    Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
                    None => v.labels.contains_key(l.as_str()),
                });
                if !ok {
                    continue;
                }
            }
            out.push(v);
        }
        Ok(out)
    }

    /// An image's layer directories with overlay2's keys, as Docker's image inspect shows
    /// them: `UpperDir` (its top layer) and `LowerDir` (the others, top first).
    pub fn image_graph_driver(&self, image: &ImageView) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let Ok(dirs) = self.inner.images.layer_dirs(&image.layers) else {
            return m;
        };
        let mut dirs = dirs.iter().map(|d| d.to_string_lossy().into_owned());
        if let Some(top) = dirs.next() {
            m.insert("UpperDir".into(), top);
        }
        let lower: Vec<String> = dirs.collect();
        if !lower.is_empty() {
            m.insert("LowerDir".into(), lower.join(":"));
        }
        m
    }

    pub fn image_inspect(&self, name: &str) -> Result<ImageView> {
        let img = self.inner.images.resolve(name)?;
        let mut v = self.view(&img);
        if let Some(c) = img.config.get("container_config") {
            v.container_config = serde_json::from_value(c.clone()).unwrap_or_default();
        }
        Ok(v)
    }

    /// Publishes an image event as moby does: the image's labels, then `name`, are the
    /// attributes (a deleted image has none left).
    pub(crate) fn emit_image(&self, action: &str, id: &str, name: &str) {
        self.emit_image_labelled(action, id, name, self.image_labels(id));
    }

    fn emit_image_labelled(
        &self,
        action: &str,
        id: &str,
        name: &str,
        mut attrs: BTreeMap<String, String>,
    ) {
        attrs.insert("name".into(), name.to_owned());
        self.inner.events.publish("image", action, id, attrs);
    }

    /// The id of the image `name` names now, if any.
    pub fn image_id_of(&self, name: &str) -> Option<String> {
        self.inner.images.resolve_id(name)
    }

    /// The `Config.Labels` of an image, none when it is not there.
    fn image_labels(&self, name: &str) -> BTreeMap<String, String> {
        self.inner
            .images
            .resolve(name)
            .map(|img| labels_of(&img))
            .unwrap_or_default()
    }

    pub fn image_tag(&self, name: &str, repo: &str, tag: Option<&str>) -> Result<()> {
        let full = match tag {
            Some(t) => format!("{repo}:{t}"),
            None => repo.to_owned(),
        };
        let reference = parse_reference(&full)?;
        // moby's reference store refuses both: `sha256:abc` would read as an image id.
        if reference.digest().is_some() {
            return Err(EngineError::InvalidArgument(
                "refusing to create a tag with a digest reference".into(),
            ));
        }
        if reference.familiar_name() == "sha256" {
            return Err(EngineError::InvalidArgument(
                "refusing to create an ambiguous tag using digest algorithm as name".into(),
            ));
        }
        let img = self.inner.images.resolve(name)?;
        self.inner.images.tag(&img.id, &reference)?;
        self.emit_image("tag", &img.id, &reference.familiar());
        Ok(())
    }

    /// Removes an image (or a tag of it); returns (untagged, deleted) rows.
    /// `prune`: parents left dangling go too (not with `--no-prune`).
    pub fn image_remove(&self, name: &str, force: bool, prune: bool) -> Result<Vec<RemovedRow>> {
        // Per image, one container using it: a running one if any.
        let mut users: HashMap<String, ImageUser> = HashMap::new();
        for h in self.handles() {
            let r = lock(&h.rec);
            let user = ImageUser {
                container: r.id.clone(),
                running: matches!(
                    r.state.status,
                    crate::Status::Running | crate::Status::Paused | crate::Status::Restarting
                ),
            };
            match users.get(&r.image_id) {
                Some(u) if u.running || !user.running => {}
                _ => {
                    users.insert(r.image_id.clone(), user);
                }
            }
        }
        let in_use = |id: &str| users.get(id).cloned();
        // dockerd's `untag` events name the image by its id, not by the tag, and carry its
        // labels (the image may be gone by then).
        let image = self.inner.images.resolve(name).ok();
        let labels = image.as_ref().map(labels_of).unwrap_or_default();
        let image_id = image.map(|i| i.id);
        let removed = self.inner.images.remove(name, force, prune, &in_use)?;
        let mut rows = Vec::new();
        for r in removed {
            match r {
                berth_image::RemovedImage::Untagged(t) => {
                    let id = image_id.clone().unwrap_or_else(|| t.clone());
                    self.emit_image_labelled("untag", &id, &id, labels.clone());
                    rows.push((Some(t), None));
                }
                berth_image::RemovedImage::Deleted(id) => {
                    // Gone: no labels left to look up.
                    self.emit_image_labelled("delete", &id, &id, BTreeMap::new());
                    rows.push((None, Some(id)));
                }
                // dockerd lists them, with no event of their own.
                berth_image::RemovedImage::LayerDeleted(chain) => rows.push((None, Some(chain))),
            }
        }
        Ok(rows)
    }

    /// Mounts a container's root: the image's layers under its upper dir. An auto-remove
    /// container's upper is volatile: it is deleted with the container, so neither its
    /// `fsync`s nor its unmount wait on the disk (the unmount of a durable overlay syncs the
    /// whole upper filesystem, on `run --rm`'s path).
    pub(crate) fn mount_rootfs(
        &self,
        rec: &crate::ContainerRecord,
        image: &Image,
        target: &Path,
    ) -> Result<()> {
        let upper_kind = if rec.host_config.auto_remove {
            Upper::Volatile
        } else {
            Upper::Durable
        };
        self.inner
            .images
            .mount_container(&rec.id, image, target, upper_kind)?;
        Ok(())
    }

    pub(crate) fn unmount_rootfs(&self, target: &Path) -> Result<()> {
        self.inner.images.unmount_container(target)?;
        Ok(())
    }
}

/// An image's `Config.Labels`.
fn labels_of(image: &Image) -> BTreeMap<String, String> {
    image
        .config
        .pointer("/config/Labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default()
}

/// The Docker `Config` inside an image config blob.
fn image_config(image: &Image) -> Config {
    image
        .config
        .get("config")
        .cloned()
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default()
}

/// Whether a `reference` filter pattern matches a familiar reference (`name:tag` or
/// `name@digest`): against the whole of it or against its name alone, as moby's
/// `FamiliarMatch`.
fn reference_matches(pat: &str, familiar: &str) -> bool {
    let name = match familiar.split_once('@') {
        Some((name, _)) => name,
        None => {
            // The tag's colon is the last one after the last slash (a registry may have a port).
            let slash = familiar.rfind('/').map_or(0, |i| i + 1);
            match familiar[slash..].rfind(':') {
                Some(i) => &familiar[..slash + i],
                None => familiar,
            }
        }
    };
    glob_match(pat, familiar) || glob_match(pat, name)
}

/// Longest `reference` filter pattern taken (a name is at most 255 characters, a tag 128).
const MAX_PATTERN: usize = 1024;

/// One element of a [`glob_match`] pattern.
enum Glob {
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: any one character but `/`.
    Any,
    /// `[...]`: ranges, negated with `^`.
    Class(Vec<(char, char)>, bool),
    Lit(char),
}

/// Go's `path.Match` for `reference` filters: `*` any run and `?` any one character but
/// `/`, `[a-z]` and `[^...]` classes, `\` escapes. Matched by a table over pattern and name
/// positions (time bounded by their product, no recursion); a malformed or overlong pattern
/// matches nothing.
fn glob_match(pat: &str, s: &str) -> bool {
    if pat.len() > MAX_PATTERN {
        return false;
    }
    let Some(globs) = parse_glob(pat) else {
        return false;
    };
    let s: Vec<char> = s.chars().collect();
    let n = s.len();
    // `next[j]`: whether globs[i+1..] match s[j..]; built from the pattern's end.
    let mut next = vec![false; n + 1];
    next[n] = true;
    for g in globs.iter().rev() {
        let mut cur = vec![false; n + 1];
        for j in (0..=n).rev() {
            cur[j] = match g {
                Glob::Star => next[j] || (j < n && s[j] != '/' && cur[j + 1]),
                _ if j == n => false,
                Glob::Any => s[j] != '/' && next[j + 1],
                Glob::Class(ranges, negated) => {
                    let c = s[j];
                    let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                    c != '/' && inside != *negated && next[j + 1]
                }
                Glob::Lit(c) => s[j] == *c && next[j + 1],
            };
        }
        next = cur;
    }
    next[0]
}

/// A pattern's elements; `None` when malformed (an unclosed or empty class, a trailing `\`).
fn parse_glob(pat: &str) -> Option<Vec<Glob>> {
    let p: Vec<char> = pat.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '*' => {
                if !matches!(out.last(), Some(Glob::Star)) {
                    out.push(Glob::Star);
                }
            }
            '?' => out.push(Glob::Any),
            '\\' => {
                i += 1;
                out.push(Glob::Lit(*p.get(i)?));
            }
            '[' => {
                i += 1;
                let negated = p.get(i) == Some(&'^');
                if negated {
                    i += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    let lo = match *p.get(i)? {
                        ']' if !ranges.is_empty() => break,
                        '-' | ']' => return None,
                        '\\' => {
                            i += 1;
                            *p.get(i)?
                        }
                        c => c,
                    };
                    i += 1;
                    let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&c| c != ']') {
                        i += 1;
                        let h = match *p.get(i)? {
                            '\\' => {
                                i += 1;
                                *p.get(i)?
                            }
                            c => c,
                        };
                        i += 1;
                        h
                    } else {
                        lo
                    };
                    ranges.push((lo, hi));
                }
                out.push(Glob::Class(ranges, negated));
            }
            c => out.push(Glob::Lit(c)),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_filters_match_the_whole_reference_or_its_name() {
        assert!(reference_matches("busybox", "busybox:latest"));
        assert!(reference_matches("busybox:latest", "busybox:latest"));
        assert!(reference_matches("busy*", "busybox:1"));
        assert!(!reference_matches("busybox:1", "busybox:latest"));
        // A registry's port is not a tag.
        assert!(reference_matches(
            "localhost:5000/app",
            "localhost:5000/app:v1"
        ));
        assert!(!reference_matches("localhost", "localhost:5000/app:v1"));
        // `*` stays within one path component, as Go's path.Match.
        assert!(!reference_matches("*", "library/app:1"));
        assert!(reference_matches("*/app", "library/app:1"));
        // Digests match by name.
        assert!(reference_matches("app", "app@sha256:abc"));
    }

    #[test]
    fn changes_apply_like_docker_import() {
        let mut c = Config::default();
        apply_changes(
            &mut c,
            &[
                "CMD [\"/bin/sh\", \"-c\", \"echo hi\"]".into(),
                "ENV A=1 B=\"two words\"".into(),
                "WORKDIR /srv".into(),
                "EXPOSE 80 53/udp".into(),
                "LABEL k=v".into(),
                "ENTRYPOINT echo x".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.cmd.unwrap(), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.env.unwrap(), ["A=1", "B=two words"]);
        assert_eq!(c.working_dir, "/srv");
        assert!(c.exposed_ports.unwrap().contains_key("53/udp"));
        assert_eq!(c.labels.unwrap()["k"], "v");
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "echo x"]);
        assert!(apply_changes(&mut Config::default(), &["FROM x".into()]).is_err());
    }

    #[test]
    fn reference_globs() {
        assert!(glob_match("app:[5-6]", "app:5") && glob_match("app:[5-6]", "app:6"));
        assert!(!glob_match("app:[5-6]", "app:7") && glob_match("app:[^5-6]", "app:7"));
        assert!(glob_match("a?c", "abc") && !glob_match("a?c", "a/c"));
        assert!(glob_match("a\\*", "a*") && !glob_match("a\\*", "ab"));
        assert!(!glob_match("app:[5-", "app:5"), "malformed");
        // Many stars against a name that cannot match: answered at once, no recursion.
        let stars = format!("{}x", "*".repeat(5000));
        assert!(!glob_match(&stars, "busybox:latest"));
        assert!(glob_match("**b*", "busybox"));
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("busybox:*", "busybox:latest"));
        assert!(!glob_match("bus", "busybox"));
    }
}
