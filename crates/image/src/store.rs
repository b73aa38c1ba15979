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
use sha2::{Digest, Sha256};

use crate::apply::{ApplyOptions, apply_layer};
use crate::content::{BlobWriter, ContentStore, digest_hex, finish_digest};
use crate::error::ImageError;
use crate::reference::Reference;
use crate::snapshot::{Snapshotter, chain_ids};

/// The schema of the image tables this build writes.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("image_meta");
/// Image id -> JSON [`ImageRecord`].
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// Full reference (`docker.io/library/busybox:latest`) -> image id.
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("image_tags");

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
}

/// The image store. `Send + Sync`: every call may come from any thread.
pub struct ImageStore {
    db: Arc<Database>,
    content: ContentStore,
    snapshots: Snapshotter,
    /// Serializes the steps that decide what is referenced (commit of an import, tagging,
    /// removal and its garbage collection) so a delete never takes a snapshot an import is
    /// about to record.
    lock: Mutex<()>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("content", &self.content)
            .field("snapshots", &self.snapshots)
            .finish()
    }
}

/// Reads from a source and copies every byte into a blob on the way.
struct Tee<'a, R> {
    inner: R,
    blob: &'a mut BlobWriter,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        io::Write::write_all(self.blob, &buf[..n])?;
        Ok(n)
    }
}

/// Hashes what passes through (the diff id of the uncompressed tar).
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Compression of a layer stream, from its first bytes.
#[derive(Debug, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
}

fn detect_compression(head: &[u8]) -> Result<Compression, ImageError> {
    let unsupported = |name: &str| {
        Err(ImageError::InvalidArgument(format!(
            "{name}-compressed archives are not supported; use a plain or gzip-compressed tar"
        )))
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Compression::Gzip)
    } else if head.starts_with(b"BZh") {
        unsupported("bzip2")
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        unsupported("xz")
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        unsupported("zstd")
    } else {
        Ok(Compression::None)
    }
}

/// `os/arch[/variant]` as image config fields.
fn parse_platform(p: Option<&str>) -> Result<(String, String, Option<String>), ImageError> {
    let Some(p) = p.map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(("linux".into(), "amd64".into(), None));
    };
    let parts: Vec<&str> = p.split('/').collect();
    let bad = || ImageError::InvalidArgument(format!("invalid platform {p:?}"));
    let (os, arch, variant) = match parts.as_slice() {
        [os] => (*os, "amd64", None),
        [os, arch] => (*os, *arch, None),
        [os, arch, variant] => (*os, *arch, Some(*variant)),
        _ => return Err(bad()),
    };
    if os != "linux" {
        return Err(ImageError::InvalidArgument(format!(
            "operating system {os:?} is not supported"
        )));
    }
    if arch.is_empty() || !arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(bad());
    }
    let arch = match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    Ok((os.to_owned(), arch.to_owned(), variant.map(str::to_owned)))
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
        }
        txn.commit()?;
        let store = Self {
            db,
            content,
            snapshots,
            lock: Mutex::new(()),
        };
        store.collect_garbage()?;
        Ok(store)
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
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
        Ok(Image {
            id: rec.id,
            repo_tags,
            created: rec.created,
            size: rec.size,
            config,
            layers: rec.layers,
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

    /// Resolves a name; the reference is returned when the name matched a tag.
    fn resolve_inner(&self, name: &str) -> Result<(Image, Option<Reference>), ImageError> {
        if let Some(hex) = name.strip_prefix("sha256:") {
            return self.by_prefix(hex, name).map(|i| (i, None));
        }
        let parsed = Reference::parse(name);
        if let Ok(r) = &parsed {
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
        if self.record(id)?.is_none() {
            return Err(ImageError::NotFound(id.to_owned()));
        }
        let txn = self.db.begin_write()?;
        txn.open_table(TAGS)?
            .insert(reference.full().as_str(), id)?;
        txn.commit()?;
        Ok(())
    }

    /// `docker import`: one layer from a rootfs tarball (plain or gzip), streamed once.
    pub fn import(
        &self,
        reader: Box<dyn Read + Send>,
        opts: &ImportOptions,
    ) -> Result<Image, ImageError> {
        let (os, arch, variant) = parse_platform(opts.platform.as_deref())?;
        let mut blob = self.content.writer()?;
        let temp = self.snapshots.prepare()?;
        let apply_opts = ApplyOptions {
            allow_devices: rustix::process::geteuid().is_root(),
            same_owner: rustix::process::geteuid().is_root(),
            ..ApplyOptions::default()
        };
        let result = (|| {
            let mut tee = Tee {
                inner: reader,
                blob: &mut blob,
            };
            // Read the magic bytes, then hand them back in front of the rest of the stream.
            let mut head = Vec::with_capacity(6);
            (&mut tee)
                .take(6)
                .read_to_end(&mut head)
                .map_err(ImageError::io("read archive"))?;
            let compression = detect_compression(&head)?;
            let raw = io::Cursor::new(head).chain(tee);
            let decoded: Box<dyn Read + '_> = match compression {
                Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
                Compression::None => Box::new(raw),
            };
            let mut hashing = Hashing {
                inner: decoded,
                hasher: Sha256::new(),
            };
            let stats = apply_layer(&temp.fs(), &mut hashing, &apply_opts)?;
            // The digest covers the whole stream, including padding after the end of the tar;
            // trailing bytes are capped like the rest.
            let limit = apply_opts.max_bytes.saturating_sub(stats.bytes);
            let rest = io::copy(
                &mut (&mut hashing).take(limit.saturating_add(1)),
                &mut io::sink(),
            )
            .map_err(|e| ImageError::InvalidLayer(format!("reading archive: {e}")))?;
            if rest > limit {
                return Err(ImageError::TooLarge(format!(
                    "more than {} bytes",
                    apply_opts.max_bytes
                )));
            }
            Ok((stats, finish_digest(hashing.hasher)))
        })();
        let (stats, diff_id) = match result {
            Ok(v) => v,
            // A failed write of the blob surfaces as a read error of the tee: report it as what
            // it is.
            Err(e) => {
                return Err(match blob.take_error() {
                    Some(io) => ImageError::Io {
                        context: "write layer blob".into(),
                        source: io,
                    },
                    None => e,
                });
            }
        };
        let layer_blob = blob.commit(None)?;

        let now = Utc::now();
        let created = now.to_rfc3339_opts(SecondsFormat::Nanos, true);
        let container_config = match &opts.config {
            serde_json::Value::Null => serde_json::json!({}),
            v => v.clone(),
        };
        let mut config = serde_json::json!({
            "architecture": arch,
            "os": os,
            "config": container_config,
            "created": created,
            "history": [{
                "created": created,
                "created_by": "",
                "comment": opts.message.clone().unwrap_or_else(|| "Imported from -".into()),
            }],
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        });
        if let (Some(v), Some(obj)) = (variant, config.as_object_mut()) {
            obj.insert("variant".into(), serde_json::Value::String(v));
        }
        let config_bytes = serde_json::to_vec(&config)
            .map_err(|e| ImageError::Corrupt(format!("encode image config: {e}")))?;

        let _g = self.guard();
        let id = self.content.put(&config_bytes, None)?;
        self.snapshots.commit(temp, &diff_id)?;
        let rec = ImageRecord {
            id: id.clone(),
            created: now,
            size: stats.bytes,
            layers: vec![diff_id],
            layer_blobs: vec![layer_blob],
        };
        let data = serde_json::to_vec(&rec)
            .map_err(|e| ImageError::Corrupt(format!("encode image record: {e}")))?;
        let txn = self.db.begin_write()?;
        {
            txn.open_table(IMAGES)?
                .insert(id.as_str(), data.as_slice())?;
            if let Some(r) = &opts.reference {
                if r.digest().is_none() {
                    txn.open_table(TAGS)?
                        .insert(r.full().as_str(), id.as_str())?;
                }
            }
        }
        txn.commit()?;
        drop(_g);
        tracing::info!(id = %id, size = stats.bytes, entries = stats.entries, "imported image");
        self.get(&id)
    }

    /// `docker rmi`, following moby's `ImageDelete`: a reference is untagged, and the image
    /// goes with its last tag unless a container uses it (then the last tag stays, unless
    /// `force`). An id deletes the image with all its tags; tags in several repositories, or a
    /// stopped container using the image, need `force` (which untags and keeps a used image);
    /// a running container's image cannot be deleted, even with `force`. `in_use` names a
    /// container using the image, a running one if there is any.
    /// Snapshots and blobs no other image uses are removed with the image.
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        in_use: &dyn Fn(&str) -> Option<ImageUser>,
    ) -> Result<Vec<RemovedImage>, ImageError> {
        let _g = self.guard();
        let (img, by_ref) = self.resolve_inner(name)?;
        let id = img.id.clone();
        let mut refs = self.tags_of(&id)?;
        let user = in_use(&id);
        let mut records = Vec::new();
        let mut removed_ref = false;

        if let Some(r) = by_ref {
            if !force && refs.len() == 1 {
                if let Some(ctr) = &user {
                    return Err(ImageError::Conflict(format!(
                        "conflict: unable to remove repository reference {name:?} (must force) - container {} is using its referenced image {}",
                        short_id(&ctr.container),
                        short_id(&id)
                    )));
                }
            }
            self.untag(&r)?;
            records.push(RemovedImage::Untagged(r.familiar()));
            refs.retain(|x| x != &r);
            if !refs.is_empty() {
                return Ok(records);
            }
            removed_ref = true;
        } else {
            // By id: tags all in one repository go with the image; tags in several need force.
            let repos: HashSet<String> = refs.iter().map(Reference::name).collect();
            if repos.len() > 1 && !force {
                return Err(ImageError::Conflict(format!(
                    "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    short_id(&id)
                )));
            }
        }

        if let Some(ctr) = user {
            if removed_ref {
                // The last tag went; the image stays for its container (as Docker does).
                return Ok(records);
            }
            if ctr.running {
                return Err(ImageError::Conflict(format!(
                    "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                    short_id(&id),
                    short_id(&ctr.container)
                )));
            }
            if !force {
                return Err(ImageError::Conflict(format!(
                    "conflict: unable to delete {} (must be forced) - image is being used by stopped container {}",
                    short_id(&id),
                    short_id(&ctr.container)
                )));
            }
            for r in refs {
                self.untag(&r)?;
                records.push(RemovedImage::Untagged(r.familiar()));
            }
            return Ok(records);
        }

        for r in refs {
            self.untag(&r)?;
            records.push(RemovedImage::Untagged(r.familiar()));
        }
        let txn = self.db.begin_write()?;
        txn.open_table(IMAGES)?.remove(id.as_str())?;
        txn.commit()?;
        records.push(RemovedImage::Deleted(id.clone()));
        self.collect_garbage()?;
        Ok(records)
    }

    fn untag(&self, r: &Reference) -> Result<(), ImageError> {
        let txn = self.db.begin_write()?;
        txn.open_table(TAGS)?.remove(r.full().as_str())?;
        txn.commit()?;
        Ok(())
    }

    /// Removes snapshots and blobs no image record uses (the lock, or exclusive access at
    /// open, must be held).
    fn collect_garbage(&self) -> Result<(), ImageError> {
        let records = self.records()?;
        let mut chains = HashSet::new();
        let mut blobs = HashSet::new();
        for r in &records {
            chains.extend(chain_ids(&r.layers));
            blobs.insert(r.id.clone());
            blobs.extend(r.layer_blobs.iter().cloned());
        }
        for c in self.snapshots.list()? {
            if !chains.contains(&c) {
                tracing::debug!(chain_id = %c, "removing unused snapshot");
                self.snapshots.remove(&c)?;
            }
        }
        for b in self.content.list()? {
            if !blobs.contains(&b) {
                tracing::debug!(digest = %b, "removing unused blob");
                self.content.delete(&b)?;
            }
        }
        Ok(())
    }

    /// The unpacked layer directories of an image, top layer first (overlay's order).
    fn lower_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        let mut dirs = Vec::new();
        for c in chain_ids(&image.layers).iter().rev() {
            digest_hex(c)?;
            if !self.snapshots.exists(c) {
                return Err(ImageError::Corrupt(format!(
                    "layer {c} of image {} is not unpacked",
                    image.id
                )));
            }
            dirs.push(self.snapshots.layer_dir(c)?);
        }
        Ok(dirs)
    }

    /// Mounts a container's root filesystem on `target`: the image's layers under the
    /// container's own upper dir (kept across restarts).
    pub fn mount_container(
        &self,
        container_id: &str,
        image: &Image,
        target: &Path,
    ) -> Result<(), ImageError> {
        let lowers = self.lower_dirs(image)?;
        self.snapshots
            .mount_container(container_id, &lowers, target)
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
