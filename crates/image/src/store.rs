//! The image store: image records and tags in the daemon's redb database (tables
//! `image_meta`, `images`, `image_tags`), config and layer blobs in the content store, unpacked
//! layers in the snapshotter. `docker import`, list, resolve, tag and `rmi` semantics live here.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::apply::ApplyOptions;
use crate::content::{ContentStore, digest_hex};
use crate::error::ImageError;
use crate::layer::{self, LayerExpect, UnpackError};
use crate::manifest::{LayerCompression, Platform, parse_config};
use crate::reference::Reference;
use crate::snapshot::{Snapshotter, Upper, chain_id, chain_ids};
use crate::tarwalk::{Skip, TreeWriter};

/// The schema of the image tables this build writes.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("image_meta");
/// Image id -> JSON [`ImageRecord`].
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// Full reference (`docker.io/library/busybox:latest`) -> image id.
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("image_tags");
/// Chain id -> JSON [`LayerInfo`], for every unpacked layer.
const LAYERS: TableDefinition<&str, &[u8]> = TableDefinition::new("image_layers");
/// Chain ids and blob digests of an unfinished pull or load -> when they were made (unix
/// seconds): garbage collection leaves them for [`PENDING_TTL`] so that a retry resumes.
const PENDING: TableDefinition<&str, u64> = TableDefinition::new("image_pending");

/// Diff id of an uncompressed layer -> digest of its gzip-compressed blob, made once for
/// pushes.
const COMPRESSED: TableDefinition<&str, &str> = TableDefinition::new("image_compressed");

/// How long layers of an unfinished pull are kept for a retry.
const PENDING_TTL: u64 = 24 * 3600;

/// An image: its config and where its layers are.
#[derive(Debug, Clone)]
pub struct Image {
    /// `sha256:<hex>`, the digest of the config blob.
    pub id: String,
    /// Familiar references (`busybox:latest`), sorted.
    pub repo_tags: Vec<String>,
    /// When the image was made.
    pub created: DateTime<Utc>,
    /// Bytes of the unpacked layers.
    pub size: u64,
    /// The whole OCI image config.
    pub config: serde_json::Value,
    /// Diff ids, bottom layer first.
    pub layers: Vec<String>,
    /// Unpacked bytes of each layer, bottom first (0 where unknown).
    pub layer_sizes: Vec<u64>,
    /// `name@digest` of the manifests this image was pulled by or pushed as.
    pub repo_digests: Vec<String>,
    /// The image this one was committed from (`docker commit`), if any.
    pub parent: Option<String>,
    /// When it was last tagged by a tag, build, commit or import (`Metadata.LastTagTime`).
    pub last_tag_time: Option<DateTime<Utc>>,
}

/// A layer of an image: its blob as stored and its diff id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// Digest of the blob in the content store (compressed or not).
    pub blob: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
}

/// What the store knows of an unpacked layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// The blob as stored.
    pub blob: String,
    /// The blob's size.
    pub blob_size: u64,
    /// Bytes of file content the layer holds.
    pub size: u64,
    /// The blob's compression: `none`, `gzip` or `zstd`.
    pub compression: String,
}

/// `docker import` parameters.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Tag for the new image.
    pub reference: Option<Reference>,
    /// The Docker container config (`Cmd`, `Env`, ...) stored as the config's `config`.
    pub config: serde_json::Value,
    /// History comment (default `Imported from -`).
    pub message: Option<String>,
    /// `os/arch[/variant]` (default `linux/amd64`).
    pub platform: Option<String>,
}

/// `docker commit` parameters.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Tag for the new image.
    pub reference: Option<Reference>,
    /// The Docker container config of the new image.
    pub config: serde_json::Value,
    pub author: String,
    pub comment: String,
    /// The history entry's `created_by` (Docker: the container's command).
    pub created_by: String,
    /// The committed container's own config, kept as the image's `container_config`.
    pub container_config: Option<serde_json::Value>,
}

/// A container that uses an image, as `rmi` needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUser {
    /// The container's id.
    pub container: String,
    /// A running container blocks removal even with force.
    pub running: bool,
}

/// One row of an `rmi` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovedImage {
    /// A familiar reference that was removed.
    Untagged(String),
    /// An image id that was deleted.
    Deleted(String),
    /// A layer (by chain id) of the deleted image that no other image used, so went too.
    LayerDeleted(String),
}

/// What the database keeps per image (the config itself is the blob named by the id).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ImageRecord {
    id: String,
    created: DateTime<Utc>,
    size: u64,
    layers: Vec<String>,
    /// Compressed layer blobs as received, bottom first.
    layer_blobs: Vec<String>,
    #[serde(default)]
    repo_digests: Vec<String>,
    #[serde(default)]
    parent: Option<String>,
    /// When a tag was last put on it by a tag, build, commit or import (never by a pull or a
    /// load), as moby's `lastUpdated` metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_tag_time: Option<DateTime<Utc>>,
}

/// The image store. `Send + Sync`: every call may come from any thread.
pub struct ImageStore {
    pub(crate) db: Arc<Database>,
    pub(crate) content: ContentStore,
    pub(crate) snapshots: Snapshotter,
    /// Serializes the steps that decide what is referenced (commit of an import, tagging,
    /// removal and its garbage collection) so a delete never takes a snapshot an import is
    /// about to record.
    lock: Mutex<()>,
    /// Chain ids and blobs that running work (a build) holds, with how many holders: garbage
    /// collection keeps them.
    held: Arc<Mutex<BTreeMap<String, usize>>>,
}

/// Layers kept from garbage collection while alive ([`ImageStore::hold`]).
#[derive(Debug)]
pub struct Hold {
    held: Arc<Mutex<BTreeMap<String, usize>>>,
    keys: Vec<String>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut m = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for k in &self.keys {
            if let Some(n) = m.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    m.remove(k);
                }
            }
        }
    }
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("content", &self.content)
            .field("snapshots", &self.snapshots)
            .finish()
    }
}

fn encode_record(rec: &ImageRecord) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(rec).map_err(|e| ImageError::Corrupt(format!("encode image record: {e}")))
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}

impl ImageStore {
    /// Opens the store under `data_root` with its tables in `db`: checks the schema version,
    /// removes temp files of interrupted imports and snapshots no image owns.
    pub fn open(data_root: &Path, db: Arc<Database>) -> Result<Self, ImageError> {
        let content = ContentStore::open(&data_root.join("content"))?;
        let snapshots = Snapshotter::open(&data_root.join("snapshots"))?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let version = meta.get("schema_version")?.map(|v| v.value());
            match version {
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(ImageError::Db(format!(
                        "image tables have schema version {v}, newer than this build's {SCHEMA_VERSION}"
                    )));
                }
                Some(_) => {}
            }
            txn.open_table(IMAGES)?;
            txn.open_table(TAGS)?;
            txn.open_table(LAYERS)?;
            txn.open_table(PENDING)?;
            txn.open_table(COMPRESSED)?;
            txn.open_table(crate::buildcache::BUILD_CACHE)?;
        }
        txn.commit()?;
        let store = Self {
            db,
            content,
            snapshots,
            lock: Mutex::new(()),
            held: Arc::new(Mutex::new(BTreeMap::new())),
        };
        store.collect_garbage()?;
        Ok(store)
    }

    pub(crate) fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn records(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(IMAGES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            match serde_json::from_slice::<ImageRecord>(v.value()) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(id = k.value(), error = %e, "skipping unreadable image record")
                }
            }
        }
        Ok(out)
    }

    fn record(&self, id: &str) -> Result<Option<ImageRecord>, ImageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(IMAGES)?;
        let Some(v) = table.get(id)? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| ImageError::Corrupt(format!("image record {id}: {e}")))
    }

    /// Tag -> image id, every tag.
    fn tags(&self) -> Result<BTreeMap<String, String>, ImageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TAGS)?;
        let mut out = BTreeMap::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.insert(k.value().to_owned(), v.value().to_owned());
        }
        Ok(out)
    }

    /// The full references that name an image.
    fn tags_of(&self, id: &str) -> Result<Vec<Reference>, ImageError> {
        Ok(self
            .tags()?
            .into_iter()
            .filter(|(_, v)| v == id)
            .filter_map(|(k, _)| Reference::parse(&k).ok())
            .collect())
    }

    fn image(
        &self,
        rec: ImageRecord,
        tags: &BTreeMap<String, String>,
    ) -> Result<Image, ImageError> {
        let raw = self.content.read(&rec.id)?;
        let config = serde_json::from_slice(&raw)
            .map_err(|e| ImageError::Corrupt(format!("config of {}: {e}", rec.id)))?;
        let mut repo_tags: Vec<String> = tags
            .iter()
            .filter(|(_, v)| **v == rec.id)
            .filter_map(|(k, _)| Reference::parse(k).ok().map(|r| r.familiar()))
            .collect();
        repo_tags.sort();
        let layer_sizes = match self.layer_infos(&rec.layers) {
            Ok(infos) => infos
                .iter()
                .map(|l| l.as_ref().map_or(0, |l| l.size))
                .collect(),
            Err(_) => vec![0; rec.layers.len()],
        };
        Ok(Image {
            id: rec.id,
            repo_tags,
            created: rec.created,
            size: rec.size,
            config,
            layers: rec.layers,
            layer_sizes,
            repo_digests: rec.repo_digests,
            parent: rec.parent,
            last_tag_time: rec.last_tag_time,
        })
    }

    /// Every image.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let tags = self.tags()?;
        self.records()?
            .into_iter()
            .map(|r| self.image(r, &tags))
            .collect()
    }

    /// An image by its full id (`sha256:<hex>`).
    pub fn get(&self, id: &str) -> Result<Image, ImageError> {
        let rec = self
            .record(id)?
            .ok_or_else(|| ImageError::NotFound(id.to_owned()))?;
        self.image(rec, &self.tags()?)
    }

    /// An image by reference, full id, `sha256:<prefix>` or hex id prefix.
    pub fn resolve(&self, name: &str) -> Result<Image, ImageError> {
        self.resolve_inner(name).map(|(img, _)| img)
    }

    /// The id of the image `name` names, if any: [`Self::resolve`]'s answer, with a tag looked
    /// up alone (no image record read or config parsed), as listings ask it per row.
    pub fn resolve_id(&self, name: &str) -> Option<String> {
        if let Ok(r) = Reference::parse(name) {
            if r.digest().is_none() && !name.starts_with("sha256:") {
                let id = self.db.begin_read().ok().and_then(|txn| {
                    let table = txn.open_table(TAGS).ok()?;
                    let v = table.get(r.full().as_str()).ok()??;
                    Some(v.value().to_owned())
                });
                if id.is_some() {
                    return id;
                }
            }
        }
        self.resolve(name).ok().map(|i| i.id)
    }

    /// Resolves a name; the reference is returned when the name matched a tag.
    fn resolve_inner(&self, name: &str) -> Result<(Image, Option<Reference>), ImageError> {
        if let Some(hex) = name.strip_prefix("sha256:") {
            return self.by_prefix(hex, name).map(|i| (i, None));
        }
        let parsed = Reference::parse(name);
        if let Ok(r) = &parsed {
            if let Some(d) = r.digest() {
                let want = format!("{}@{d}", r.name());
                if let Some(rec) = self
                    .records()?
                    .into_iter()
                    .find(|rec| rec.repo_digests.contains(&want))
                {
                    return Ok((self.image(rec, &self.tags()?)?, Some(r.clone())));
                }
            }
            if r.digest().is_none() {
                let id = {
                    let txn = self.db.begin_read()?;
                    let table = txn.open_table(TAGS)?;
                    table.get(r.full().as_str())?.map(|v| v.value().to_owned())
                };
                if let Some(id) = id {
                    return Ok((self.get(&id)?, Some(r.clone())));
                }
            }
        }
        let is_hex = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if is_hex {
            match self.by_prefix(name, name) {
                Err(ImageError::NotFound(_)) => {}
                r => return r.map(|i| (i, None)),
            }
        }
        match parsed {
            Ok(r) => Err(ImageError::NotFound(r.familiar())),
            Err(_) if is_hex => Err(ImageError::NotFound(name.to_owned())),
            Err(e) => Err(e),
        }
    }

    fn by_prefix(&self, hex: &str, name: &str) -> Result<Image, ImageError> {
        if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ImageError::NotFound(name.to_owned()));
        }
        let hex = hex.to_ascii_lowercase();
        let mut found = self.records()?.into_iter().filter(|r| {
            r.id.strip_prefix("sha256:")
                .is_some_and(|h| h.starts_with(&hex))
        });
        match (found.next(), found.next()) {
            (Some(rec), None) => self.image(rec, &self.tags()?),
            (Some(_), Some(_)) => Err(ImageError::AmbiguousPrefix(name.to_owned())),
            (None, _) => Err(ImageError::NotFound(name.to_owned())),
        }
    }

    /// Points a reference at an image (moving it from any other image).
    pub fn tag(&self, id: &str, reference: &Reference) -> Result<(), ImageError> {
        if reference.digest().is_some() {
            return Err(ImageError::InvalidArgument(
                "refusing to create a tag with a digest reference".into(),
            ));
        }
        let _g = self.guard();
        let Some(mut rec) = self.record(id)? else {
            return Err(ImageError::NotFound(id.to_owned()));
        };
        rec.last_tag_time = Some(Utc::now());
        let data = encode_record(&rec)?;
        let txn = self.db.begin_write()?;
        txn.open_table(TAGS)?
            .insert(reference.full().as_str(), id)?;
        txn.open_table(IMAGES)?.insert(id, data.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// `docker import`: one layer from a rootfs tarball (plain, gzip or zstd), streamed once.
    pub fn import(
        &self,
        reader: Box<dyn Read + Send>,
        opts: &ImportOptions,
    ) -> Result<Image, ImageError> {
        let platform = Platform::parse(opts.platform.as_deref())?;
        let layer = self
            .unpack_layer(None, reader, &LayerExpect::default(), false)
            .map_err(|e| e.error)?;
        let now = Utc::now();
        let created = now.to_rfc3339_opts(SecondsFormat::Nanos, true);
        let container_config = match &opts.config {
            serde_json::Value::Null => serde_json::json!({}),
            v => v.clone(),
        };
        let mut config = serde_json::json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "config": container_config,
            "created": created,
            "history": [{
                "created": created,
                "created_by": "",
                "comment": opts.message.clone().unwrap_or_else(|| "Imported from -".into()),
            }],
            "rootfs": { "type": "layers", "diff_ids": [layer.diff_id] },
        });
        if let (Some(v), Some(obj)) = (platform.variant, config.as_object_mut()) {
            obj.insert("variant".into(), serde_json::Value::String(v));
        }
        let config_bytes = serde_json::to_vec(&config)
            .map_err(|e| ImageError::Corrupt(format!("encode image config: {e}")))?;
        let tags: Vec<Reference> = opts.reference.iter().cloned().collect();
        let image = self.add_image(&config_bytes, &[layer], &tags, None, None)?;
        tracing::info!(id = %image.id, size = image.size, "imported image");
        Ok(image)
    }

    /// Infos of the layers of a stack of diff ids, bottom first (`None` where unrecorded).
    fn layer_infos(&self, diff_ids: &[String]) -> Result<Vec<Option<LayerInfo>>, ImageError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LAYERS)?;
        let mut out = Vec::with_capacity(diff_ids.len());
        for c in chain_ids(diff_ids) {
            out.push(match table.get(c.as_str())? {
                Some(v) => serde_json::from_slice(v.value()).ok(),
                None => None,
            });
        }
        Ok(out)
    }

    /// The recorded layer of a chain id, when it is unpacked and its blob is present (a pull
    /// or load can skip it).
    pub fn layer(&self, chain_id: &str) -> Result<Option<LayerInfo>, ImageError> {
        let info: Option<LayerInfo> = {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(LAYERS)?;
            match table.get(chain_id)? {
                Some(v) => serde_json::from_slice(v.value()).ok(),
                None => None,
            }
        };
        Ok(info.filter(|l| self.snapshots.exists(chain_id) && self.content.exists(&l.blob)))
    }

    /// Like [`ImageStore::layer`], and the layer (its snapshot and blob) is leased as a pull's
    /// own are, in the same step: no collection can take it before the image is recorded.
    pub fn lease_layer(&self, chain_id: &str) -> Result<Option<LayerInfo>, ImageError> {
        let _g = self.guard();
        let Some(info) = self.layer(chain_id)? else {
            return Ok(None);
        };
        let now = Utc::now().timestamp().max(0) as u64;
        let txn = self.db.begin_write()?;
        {
            let mut pending = txn.open_table(PENDING)?;
            pending.insert(chain_id, now)?;
            pending.insert(info.blob.as_str(), now)?;
        }
        txn.commit()?;
        Ok(Some(info))
    }

    /// The content store (blobs for save and push).
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// Stores and unpacks one layer on top of the layers whose chain id is `parent`. The new
    /// snapshot and blob are kept (for [`PENDING_TTL`]) until an image names them with
    /// [`ImageStore::add_image`]. `resume` continues an interrupted download of
    /// `expect.digest`. Blocking: call from a blocking thread.
    pub fn unpack_layer(
        &self,
        parent: Option<&str>,
        source: impl Read,
        expect: &LayerExpect,
        resume: bool,
    ) -> Result<LayerRef, UnpackError> {
        let root = rustix::process::geteuid().is_root();
        let opts = ApplyOptions {
            allow_devices: root,
            same_owner: root,
            overlay_whiteouts: true,
            ..ApplyOptions::default()
        };
        let u = layer::unpack(
            &self.content,
            &self.snapshots,
            source,
            expect,
            resume,
            &opts,
        )?;
        let chain = chain_id(parent, &u.diff_id);
        let info = LayerInfo {
            diff_id: u.diff_id.clone(),
            blob: u.blob.clone(),
            blob_size: u.blob_size,
            size: u.stats.bytes,
            compression: match u.compression {
                LayerCompression::None => "none",
                LayerCompression::Gzip => "gzip",
                LayerCompression::Zstd => "zstd",
            }
            .into(),
        };
        let data = serde_json::to_vec(&info)
            .map_err(|e| ImageError::Corrupt(format!("encode layer record: {e}")))?;
        let _g = self.guard();
        let now = Utc::now().timestamp().max(0) as u64;
        let txn = self.db.begin_write().map_err(ImageError::from)?;
        {
            let mut pending = txn.open_table(PENDING).map_err(ImageError::from)?;
            pending
                .insert(chain.as_str(), now)
                .map_err(ImageError::from)?;
            pending
                .insert(u.blob.as_str(), now)
                .map_err(ImageError::from)?;
            let mut layers = txn.open_table(LAYERS).map_err(ImageError::from)?;
            // A layer unpacked before keeps its record (and its blob) when it still exists.
            let keep = self.snapshots.exists(&chain)
                && match layers.get(chain.as_str()).map_err(ImageError::from)? {
                    Some(v) => serde_json::from_slice::<LayerInfo>(v.value())
                        .is_ok_and(|old| self.content.exists(&old.blob)),
                    None => false,
                };
            if !keep {
                layers
                    .insert(chain.as_str(), data.as_slice())
                    .map_err(ImageError::from)?;
            }
        }
        txn.commit().map_err(ImageError::from)?;
        // Still under the lock: no collection runs between the lease and the commits.
        u.writer.commit(Some(&u.blob))?;
        self.snapshots.commit(u.snapshot, &chain)?;
        Ok(LayerRef {
            blob: u.blob,
            diff_id: u.diff_id,
        })
    }

    /// Gives up the pending layers (chain ids) and blobs of a pull that failed for a reason a
    /// retry would not cure: unless an image uses them, they are removed now.
    pub fn release(&self, keys: &[String]) -> Result<(), ImageError> {
        let _g = self.guard();
        let txn = self.db.begin_write()?;
        {
            let mut pending = txn.open_table(PENDING)?;
            for k in keys {
                pending.remove(k.as_str())?;
            }
        }
        txn.commit()?;
        self.collect_garbage().map(drop)
    }

    /// Records an image: its config (stored as a blob; its digest is the image id) and its
    /// layers, bottom first, each already unpacked (by [`ImageStore::unpack_layer`] or an
    /// earlier image). The config's diff ids must be the layers'. `tags` point at it;
    /// `repo_digest` (`name@sha256:...`) records the manifest it came by; without one, tags
    /// given set the image's last tag time (a build, commit or import).
    pub fn add_image(
        &self,
        config: &[u8],
        layers: &[LayerRef],
        tags: &[Reference],
        repo_digest: Option<String>,
        parent: Option<String>,
    ) -> Result<Image, ImageError> {
        let tagged = repo_digest.is_none() && !tags.is_empty();
        self.add_image_as(config, layers, tags, repo_digest, parent, tagged)
    }

    /// [`Self::add_image`], saying whether the tags count as tagging (not for a load).
    pub(crate) fn add_image_as(
        &self,
        config: &[u8],
        layers: &[LayerRef],
        tags: &[Reference],
        repo_digest: Option<String>,
        parent: Option<String>,
        tagged: bool,
    ) -> Result<Image, ImageError> {
        let head = parse_config(config)?;
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        if head.rootfs.diff_ids != diff_ids {
            return Err(ImageError::InvalidArgument(format!(
                "image config lists {} layers that do not match the {} layers given",
                head.rootfs.diff_ids.len(),
                layers.len()
            )));
        }
        let created = serde_json::from_slice::<serde_json::Value>(config)
            .ok()
            .and_then(|v| v.get("created").and_then(|c| c.as_str()).map(str::to_owned))
            .and_then(|c| DateTime::parse_from_rfc3339(&c).ok())
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
        let chains = chain_ids(&diff_ids);
        let _g = self.guard();
        for c in &chains {
            if !self.snapshots.exists(c) {
                return Err(ImageError::Corrupt(format!("layer {c} is not unpacked")));
            }
        }
        for l in layers {
            if !self.content.exists(&l.blob) {
                return Err(ImageError::Corrupt(format!(
                    "blob {} of a layer is missing",
                    l.blob
                )));
            }
        }
        let id = self.content.put(config, None)?;
        let infos = self.layer_infos(&diff_ids)?;
        let size = infos.iter().map(|i| i.as_ref().map_or(0, |i| i.size)).sum();
        let mut rec = match self.record(&id)? {
            Some(old) => old,
            None => ImageRecord {
                id: id.clone(),
                created,
                size,
                layers: diff_ids,
                layer_blobs: layers.iter().map(|l| l.blob.clone()).collect(),
                repo_digests: Vec::new(),
                parent,
                last_tag_time: None,
            },
        };
        if tagged {
            rec.last_tag_time = Some(Utc::now());
        }
        if let Some(d) = repo_digest {
            if !rec.repo_digests.contains(&d) {
                rec.repo_digests.push(d);
                rec.repo_digests.sort();
            }
        }
        let data = encode_record(&rec)?;
        let txn = self.db.begin_write()?;
        {
            txn.open_table(IMAGES)?
                .insert(id.as_str(), data.as_slice())?;
            let mut t = txn.open_table(TAGS)?;
            for r in tags {
                if r.digest().is_none() {
                    t.insert(r.full().as_str(), id.as_str())?;
                }
            }
            let mut pending = txn.open_table(PENDING)?;
            for c in &chains {
                pending.remove(c.as_str())?;
            }
            for l in &rec.layer_blobs {
                pending.remove(l.as_str())?;
            }
        }
        txn.commit()?;
        drop(_g);
        self.get(&id)
    }

    /// The layers of an image as stored, bottom first.
    pub fn layer_refs(&self, image: &Image) -> Result<Vec<LayerRef>, ImageError> {
        let rec = self
            .record(&image.id)?
            .ok_or_else(|| ImageError::NotFound(image.id.clone()))?;
        Ok(rec
            .layer_blobs
            .into_iter()
            .zip(rec.layers)
            .map(|(blob, diff_id)| LayerRef { blob, diff_id })
            .collect())
    }

    /// The blob a registry gets for a layer: as stored when compressed, else a gzip
    /// version made once and kept. Returns its digest, size and compression. Blocking.
    pub fn distributable_blob(
        &self,
        chain: &str,
    ) -> Result<(String, u64, LayerCompression), ImageError> {
        let info = self
            .layer(chain)?
            .ok_or_else(|| ImageError::Corrupt(format!("layer {chain} is not recorded")))?;
        match info.compression.as_str() {
            "gzip" => return Ok((info.blob, info.blob_size, LayerCompression::Gzip)),
            "zstd" => return Ok((info.blob, info.blob_size, LayerCompression::Zstd)),
            _ => {}
        }
        let known = {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(COMPRESSED)?;
            table
                .get(info.diff_id.as_str())?
                .map(|v| v.value().to_owned())
        };
        if let Some(d) = known.filter(|d| self.content.exists(d)) {
            let size = std::fs::metadata(self.content.path(&d)?)
                .map_err(ImageError::io(format!("stat blob {d}")))?
                .len();
            return Ok((d, size, LayerCompression::Gzip));
        }
        let src = std::fs::File::open(self.content.path(&info.blob)?)
            .map_err(ImageError::io(format!("open blob {}", info.blob)))?;
        let mut w = self.content.writer()?;
        {
            // gzip's default level, as dockerd pushes: the blob is made once per layer and
            // every pull downloads it (level 1 made layers up to a third larger).
            let mut gz = flate2::write::GzEncoder::new(&mut w, flate2::Compression::default());
            io::copy(&mut io::BufReader::with_capacity(1 << 20, src), &mut gz)
                .map_err(ImageError::io(format!("compress {}", info.blob)))?;
            gz.finish()
                .map_err(ImageError::io(format!("compress {}", info.blob)))?;
        }
        let size = w.size();
        let _g = self.guard();
        let digest = w.commit(None)?;
        let txn = self.db.begin_write()?;
        txn.open_table(COMPRESSED)?
            .insert(info.diff_id.as_str(), digest.as_str())?;
        txn.commit()?;
        Ok((digest, size, LayerCompression::Gzip))
    }

    /// The raw config blob of an image (its digest is the image id).
    pub fn config_bytes(&self, image: &Image) -> Result<Vec<u8>, ImageError> {
        self.content.read(&image.id)
    }

    /// `docker commit`: a new layer from a container's upper directory on top of `image`,
    /// and an image whose config is `image`'s with `container_config`, a history entry and
    /// the new diff id. `skip` leaves out the runtime's mount points.
    pub fn commit_container(
        &self,
        container_id: &str,
        image: &Image,
        commit: &CommitOptions,
        skip: Skip,
    ) -> Result<Image, ImageError> {
        let layer = self.layer_from_container(container_id, &image.layers, skip)?;

        let mut config = image.config.clone();
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
        let obj = config.as_object_mut().ok_or_else(|| {
            ImageError::Corrupt(format!("config of {} is not an object", image.id))
        })?;
        obj.insert("config".into(), commit.config.clone());
        obj.insert("created".into(), now.clone().into());
        obj.insert("container".into(), container_id.into());
        match &commit.container_config {
            Some(c) => obj.insert("container_config".into(), c.clone()),
            None => obj.remove("container_config"),
        };
        if !commit.author.is_empty() {
            obj.insert("author".into(), commit.author.clone().into());
        } else {
            obj.remove("author");
        }
        let mut entry = serde_json::json!({ "created": now, "created_by": commit.created_by });
        if !commit.author.is_empty() {
            entry["author"] = commit.author.clone().into();
        }
        if !commit.comment.is_empty() {
            entry["comment"] = commit.comment.clone().into();
        }
        match obj.get_mut("history").and_then(|h| h.as_array_mut()) {
            Some(h) => h.push(entry),
            None => {
                obj.insert("history".into(), serde_json::Value::Array(vec![entry]));
            }
        }
        let mut diff_ids = image.layers.clone();
        diff_ids.push(layer.diff_id.clone());
        obj.insert(
            "rootfs".into(),
            serde_json::json!({ "type": "layers", "diff_ids": diff_ids }),
        );
        let config_bytes = serde_json::to_vec(&config)
            .map_err(|e| ImageError::Corrupt(format!("encode image config: {e}")))?;
        let mut layers = self.layer_refs(image)?;
        layers.push(layer);
        let tags: Vec<Reference> = commit.reference.iter().cloned().collect();
        self.add_image(&config_bytes, &layers, &tags, None, Some(image.id.clone()))
    }

    /// A layer made of what a container wrote (its upper directory) on top of the layers
    /// `parent` (diff ids, bottom first); `skip` leaves out the runtime's mount points. The
    /// layer is pending until an image or the build cache names it. Blocking.
    pub fn layer_from_container(
        &self,
        container_id: &str,
        parent: &[String],
        skip: Skip,
    ) -> Result<LayerRef, ImageError> {
        let upper = self.snapshots.container_upper(container_id)?;
        // A container that never started has no upper directory yet: it changed nothing.
        std::fs::create_dir_all(&upper)
            .map_err(ImageError::io(format!("create {}", upper.display())))?;
        let upper_fd = rustix::fs::open(
            &upper,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(ImageError::errno(format!("open {}", upper.display())))?;
        let (reader, writer) = io::pipe().map_err(ImageError::io("pipe"))?;
        let walker = std::thread::Builder::new()
            .name("commit-tar".into())
            .spawn(move || -> io::Result<()> {
                let mut w = TreeWriter::for_layer(writer, skip);
                w.add_children(&upper_fd, Path::new(""))?;
                w.finish()?;
                Ok(())
            })
            .map_err(ImageError::io("spawn the layer writer"))?;
        let parent_chain = chain_ids(parent).pop();
        let unpacked = self.unpack_layer(
            parent_chain.as_deref(),
            reader,
            &LayerExpect {
                compression: Some(LayerCompression::None),
                ..LayerExpect::default()
            },
            false,
        );
        let walked = walker
            .join()
            .map_err(|_| ImageError::Corrupt("the layer writer panicked".into()))?;
        walked.map_err(ImageError::io(format!(
            "read the changes of {container_id}"
        )))?;
        let layer = unpacked.map_err(|e| e.error)?;
        Ok(layer)
    }

    /// Keeps `layers` (their snapshots and blobs) from garbage collection until the returned
    /// value is dropped: a build holds what it stands on, so a concurrent `rmi` or `builder
    /// prune` cannot take it away mid-build.
    pub fn hold(&self, layers: &[LayerRef]) -> Hold {
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let mut keys = chain_ids(&diff_ids);
        keys.extend(layers.iter().map(|l| l.blob.clone()));
        let mut m = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for k in &keys {
            *m.entry(k.clone()).or_insert(0) += 1;
        }
        Hold {
            held: self.held.clone(),
            keys,
        }
    }

    /// Mounts an overlay of the layers `diff_ids` (bottom first) under the upper directory
    /// of `container_id` on `target`, as [`ImageStore::mount_container`] does for an image.
    pub fn mount_layers(
        &self,
        container_id: &str,
        diff_ids: &[String],
        target: &Path,
        upper_kind: Upper,
    ) -> Result<(), ImageError> {
        let lowers = self.layer_dirs(diff_ids)?;
        self.snapshots
            .mount_container(container_id, &lowers, target, upper_kind, false)
    }

    /// `docker rmi`, following moby's `ImageDelete`: a reference is untagged, and the image
    /// goes with its last reference unless a container uses it or images were committed
    /// from it (then it stays, untagged). An id deletes the image with all its references
    /// when they are one tag (and digests of its repository); more references, or a stopped
    /// container using the image, need `force`. A running container's image, or one with
    /// child images, cannot be deleted, even with `force`. Unlike dockerd, a forced delete
    /// of an image a stopped container uses untags it and keeps it, since the container's
    /// root is made of its layers. `in_use` names a container using the image, a running
    /// one if there is any. Snapshots and blobs no other image uses go with the image; with
    /// `prune`, so do the parents it leaves dangling (untagged, unused, childless), as
    /// moby's default (`--no-prune` keeps them).
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        prune: bool,
        in_use: &dyn Fn(&str) -> Option<ImageUser>,
    ) -> Result<Vec<RemovedImage>, ImageError> {
        let _g = self.guard();
        let (img, by_ref) = self.resolve_inner(name)?;
        let id = img.id.clone();
        let mut refs = self.tags_of(&id)?;
        // Every record, read once: the image's digests, its children, the parents to prune.
        let all = self.records()?;
        let mut digests = all
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.repo_digests.clone())
            .unwrap_or_default();
        let user = in_use(&id);
        let children_of = |p: &str, gone: &[(String, Vec<String>)]| {
            all.iter()
                .filter(|r| r.parent.as_deref() == Some(p) && !gone.iter().any(|(d, _)| d == &r.id))
                .count()
        };
        let children = children_of(&id, &[]);
        let mut records = Vec::new();
        let mut removed_ref = false;

        if let Some(r) = by_ref {
            if !force && is_single_reference(&refs, &digests) {
                if let Some(ctr) = &user {
                    return Err(ImageError::Conflict(format!(
                        "conflict: unable to remove repository reference {name:?} (must force) - container {} is using its referenced image {}",
                        short_id(&ctr.container),
                        short_id(&id)
                    )));
                }
            }
            let named_digest = r.digest().map(|d| format!("{}@{d}", r.name()));
            if named_digest.is_none() {
                self.untag(&r)?;
            }
            records.push(RemovedImage::Untagged(r.familiar()));
            refs.retain(|x| x != &r);
            // The digest named goes; with a repository's last tag go its digests (Docker).
            let last_of_repo = !refs.iter().any(|x| x.name() == r.name());
            let before = digests.len();
            digests.retain(|d| {
                let gone = match &named_digest {
                    Some(n) => d == n,
                    None => last_of_repo && d.split('@').next() == Some(r.name().as_str()),
                };
                if gone && named_digest.is_none() {
                    if let Ok(x) = Reference::parse(d) {
                        records.push(RemovedImage::Untagged(x.familiar()));
                    }
                }
                !gone
            });
            if digests.len() != before {
                self.set_repo_digests(&id, &digests)?;
            }
            if !refs.is_empty() || !digests.is_empty() {
                return Ok(records);
            }
            removed_ref = true;
        } else if is_single_reference(&refs, &digests) {
            // By id, one tag (with its repository's digests): the references go first,
            // unless something the references do not decide keeps the image.
            let conflict = delete_conflict(&id, children, user.as_ref(), false, !force);
            if let Some(c) = conflict {
                return Err(c);
            }
            self.untag_all(&mut refs, &mut digests, &id, &mut records)?;
        }

        let conflict = delete_conflict(
            &id,
            children,
            user.as_ref(),
            !force && (!refs.is_empty() || !digests.is_empty()),
            !force,
        );
        if let Some(c) = conflict {
            // The last reference went by name: an image still used or still a parent
            // stays, untagged, as with dockerd.
            if removed_ref && (children > 0 || user.is_some()) {
                return Ok(records);
            }
            return Err(c);
        }
        self.untag_all(&mut refs, &mut digests, &id, &mut records)?;
        if user.is_some() {
            // Forced, with a stopped container on it: untagged and kept for the container.
            return Ok(records);
        }
        let mut deleted = vec![(id.clone(), img.layers.clone())];
        let mut next = img.parent.clone();
        while let Some(p) = next.take().filter(|_| prune) {
            let Some(parent) = all.iter().find(|r| r.id == p) else {
                break;
            };
            let dangling = parent.repo_digests.is_empty()
                && self.tags_of(&p)?.is_empty()
                && children_of(&p, &deleted) == 0;
            if !dangling || in_use(&p).is_some() {
                break;
            }
            next = parent.parent.clone();
            deleted.push((p, parent.layers.clone()));
        }
        let txn = self.db.begin_write()?;
        {
            let mut images = txn.open_table(IMAGES)?;
            for (d, _) in &deleted {
                images.remove(d.as_str())?;
            }
        }
        txn.commit()?;
        // As moby lists them: each image, then its own layers that went with it, top first
        // (a layer its pruned parent shares is the parent's).
        let gone = self.collect_garbage()?;
        for (i, (d, layers)) in deleted.iter().enumerate() {
            records.push(RemovedImage::Deleted(d.clone()));
            let later: HashSet<String> = deleted[i + 1..]
                .iter()
                .flat_map(|(_, l)| chain_ids(l))
                .collect();
            for chain in chain_ids(layers).into_iter().rev() {
                if gone.contains(&chain) && !later.contains(&chain) {
                    records.push(RemovedImage::LayerDeleted(chain));
                }
            }
        }
        Ok(records)
    }

    /// Removes every tag and digest reference of an image, listing each as untagged.
    fn untag_all(
        &self,
        refs: &mut Vec<Reference>,
        digests: &mut Vec<String>,
        id: &str,
        records: &mut Vec<RemovedImage>,
    ) -> Result<(), ImageError> {
        for r in refs.drain(..) {
            self.untag(&r)?;
            records.push(RemovedImage::Untagged(r.familiar()));
        }
        if !digests.is_empty() {
            for d in digests.drain(..) {
                if let Ok(x) = Reference::parse(&d) {
                    records.push(RemovedImage::Untagged(x.familiar()));
                }
            }
            self.set_repo_digests(id, &[])?;
        }
        Ok(())
    }

    fn set_repo_digests(&self, id: &str, digests: &[String]) -> Result<(), ImageError> {
        let Some(mut rec) = self.record(id)? else {
            return Ok(());
        };
        rec.repo_digests = digests.to_vec();
        let data = encode_record(&rec)?;
        let txn = self.db.begin_write()?;
        txn.open_table(IMAGES)?.insert(id, data.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn untag(&self, r: &Reference) -> Result<(), ImageError> {
        let txn = self.db.begin_write()?;
        txn.open_table(TAGS)?.remove(r.full().as_str())?;
        txn.commit()?;
        Ok(())
    }

    /// Removes snapshots and blobs no image record uses (the lock, or exclusive access at
    /// open, must be held). Returns the chain ids of the layers that went.
    pub(crate) fn collect_garbage(&self) -> Result<HashSet<String>, ImageError> {
        let records = self.records()?;
        let mut chains = HashSet::new();
        let mut blobs = HashSet::new();
        for r in &records {
            chains.extend(chain_ids(&r.layers));
            blobs.insert(r.id.clone());
            blobs.extend(r.layer_blobs.iter().cloned());
        }
        // Layers running builds hold stay.
        for k in self.held.lock().unwrap_or_else(|p| p.into_inner()).keys() {
            chains.insert(k.clone());
            blobs.insert(k.clone());
        }
        // Layers the build cache holds stay too.
        for layers in self.cached_layers()? {
            let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
            chains.extend(chain_ids(&diff_ids));
            blobs.extend(layers.into_iter().map(|l| l.blob));
        }
        // What an unfinished pull made stays for a while; expired entries go.
        let now = Utc::now().timestamp().max(0) as u64;
        let mut gone = HashSet::new();
        let txn = self.db.begin_write()?;
        {
            let mut pending = txn.open_table(PENDING)?;
            let mut expired = Vec::new();
            for row in pending.iter()? {
                let (k, v) = row?;
                if now.saturating_sub(v.value()) > PENDING_TTL {
                    expired.push(k.value().to_owned());
                } else {
                    chains.insert(k.value().to_owned());
                    blobs.insert(k.value().to_owned());
                }
            }
            for k in expired {
                pending.remove(k.as_str())?;
            }
            let mut layers = txn.open_table(LAYERS)?;
            for row in layers.iter()? {
                let (k, v) = row?;
                if chains.contains(k.value()) {
                    if let Ok(info) = serde_json::from_slice::<LayerInfo>(v.value()) {
                        blobs.insert(info.blob);
                    }
                } else {
                    gone.insert(k.value().to_owned());
                }
            }
            for k in &gone {
                layers.remove(k.as_str())?;
            }
            let diff_ids: HashSet<&String> = records.iter().flat_map(|r| r.layers.iter()).collect();
            let mut compressed = txn.open_table(COMPRESSED)?;
            let mut stale = Vec::new();
            for row in compressed.iter()? {
                let (k, v) = row?;
                if diff_ids.contains(&k.value().to_owned()) {
                    blobs.insert(v.value().to_owned());
                } else {
                    stale.push(k.value().to_owned());
                }
            }
            for k in stale {
                compressed.remove(k.as_str())?;
            }
        }
        txn.commit()?;
        for c in self.snapshots.list()? {
            if !chains.contains(&c) {
                tracing::debug!(chain_id = %c, "removing unused snapshot");
                self.snapshots.remove(&c)?;
                gone.insert(c);
            }
        }
        for b in self.content.list()? {
            if !blobs.contains(&b) {
                tracing::debug!(digest = %b, "removing unused blob");
                self.content.delete(&b)?;
            }
        }
        Ok(gone)
    }

    /// The unpacked layer directories of an image, top layer first (overlay's order).
    fn lower_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        self.layer_dirs(&image.layers)
            .map_err(|e| ImageError::Corrupt(format!("image {}: {e}", image.id)))
    }

    /// The directories of the layers with these diff ids (bottom first), top first as
    /// overlay stacks them.
    pub fn layer_dirs(&self, diff_ids: &[String]) -> Result<Vec<PathBuf>, ImageError> {
        let mut dirs = Vec::new();
        for c in chain_ids(diff_ids).iter().rev() {
            digest_hex(c)?;
            if !self.snapshots.exists(c) {
                return Err(ImageError::Corrupt(format!("layer {c} is not unpacked")));
            }
            dirs.push(self.snapshots.layer_dir(c)?);
        }
        Ok(dirs)
    }

    /// Mounts a container's root filesystem on `target`: the image's layers and the
    /// container's init layer under its own upper dir (kept across restarts).
    pub fn mount_container(
        &self,
        container_id: &str,
        image: &Image,
        target: &Path,
        upper_kind: Upper,
    ) -> Result<(), ImageError> {
        let lowers = self.lower_dirs(image)?;
        self.snapshots
            .mount_container(container_id, &lowers, target, upper_kind, true)
    }

    /// A container's overlay directories over `image`'s layers (see
    /// [`crate::snapshot::Snapshotter::container_overlay`]).
    pub fn container_overlay(
        &self,
        container_id: &str,
        image_lowers: &[PathBuf],
    ) -> Result<crate::snapshot::OverlayDirs, ImageError> {
        self.snapshots.container_overlay(container_id, image_lowers)
    }

    /// A container's layers as overlay stacks them: its upper directory (written by the
    /// container) and the image's layer directories, top first.
    pub fn container_layers(
        &self,
        container_id: &str,
        image: &Image,
    ) -> Result<(PathBuf, Vec<PathBuf>), ImageError> {
        let upper = self.snapshots.container_upper(container_id)?;
        Ok((upper, self.lower_dirs(image)?))
    }

    /// Unmounts a container's root; not mounted is fine.
    pub fn unmount_container(&self, target: &Path) -> Result<(), ImageError> {
        self.snapshots.unmount(target)
    }

    /// Deletes a container's upper and work directories.
    pub fn remove_container(&self, container_id: &str) -> Result<(), ImageError> {
        self.snapshots.remove_container(container_id)
    }

    /// See [`crate::snapshot::Snapshotter::detach_container`].
    pub fn detach_container(&self, container_id: &str) -> Result<Option<PathBuf>, ImageError> {
        self.snapshots.detach_container(container_id)
    }
}

/// moby's `isSingleReference`: at most one tag, and any digests all of that tag's repository
/// (or one digest alone). False without references.
fn is_single_reference(tags: &[Reference], digests: &[String]) -> bool {
    if tags.len() + digests.len() <= 1 {
        return tags.len() + digests.len() == 1;
    }
    if tags.len() > 1 {
        return false;
    }
    let repo_of = |d: &String| d.split('@').next().unwrap_or("").to_owned();
    let single = match tags.first() {
        Some(t) => t.name(),
        None => repo_of(&digests[0]),
    };
    let repos: HashSet<String> = digests.iter().map(repo_of).collect();
    repos.len() == 1 && repos.contains(&single)
}

/// moby's `checkImageDeleteConflict`, in its order: child images and a running container
/// always conflict ("cannot be forced"); remaining references (`references`) and a stopped
/// container (`stopped`) when asked ("must be forced").
fn delete_conflict(
    id: &str,
    children: usize,
    user: Option<&ImageUser>,
    references: bool,
    stopped: bool,
) -> Option<ImageError> {
    let conflict = |hard: bool, why: String| {
        let how = if hard {
            "cannot be forced"
        } else {
            "must be forced"
        };
        Some(ImageError::Conflict(format!(
            "conflict: unable to delete {} ({how}) - {why}",
            short_id(id)
        )))
    };
    if children > 0 {
        return conflict(true, "image has dependent child images".into());
    }
    if let Some(u) = user.filter(|u| u.running) {
        return conflict(
            true,
            format!(
                "image is being used by running container {}",
                short_id(&u.container)
            ),
        );
    }
    if references {
        return conflict(false, "image is referenced in multiple repositories".into());
    }
    if let Some(u) = user.filter(|u| stopped && !u.running) {
        return conflict(
            false,
            format!(
                "image is being used by stopped container {}",
                short_id(&u.container)
            ),
        );
    }
    None
}
