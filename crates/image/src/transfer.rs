//! `docker save` and `docker load`: images as one tar stream.
//!
//! Save writes the format Docker 25 and later write, which every Docker and every OCI tool
//! reads: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`) plus Docker's
//! `manifest.json` (whose `Layers` point into `blobs/`) and `repositories`. Layer blobs go
//! out as stored (gzip stays gzip; Docker's load decompresses), zstd ones decompressed for
//! older readers.
//!
//! Load reads that format, Docker's older one (`<id>/layer.tar`, `<id>.json`,
//! `manifest.json`) and a plain OCI layout. The archive is hostile: it is unpacked by the
//! hardened layer extraction into a staging directory under the data root, every file is
//! then opened inside that directory by the kernel (`RESOLVE_IN_ROOT`, so a symlink in the
//! archive cannot point outside it), and layers are unpacked with their diff ids checked
//! against the config before anything is recorded.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};

use crate::apply::{ApplyOptions, apply_layer};
use crate::content::{digest_hex, sha256_digest};
use crate::error::ImageError;
use crate::layer::{LayerExpect, decompress};
use crate::manifest::{
    self, Descriptor, Document, Index, LayerCompression, MAX_CONFIG, MAX_MANIFEST, OCI_CONFIG,
    OCI_INDEX, OCI_LAYER, OCI_LAYER_GZIP, OCI_MANIFEST, Platform,
};
use crate::reference::Reference;
use crate::snapshot::chain_id;
use crate::store::{Image, ImageStore, LayerRef};

/// One entry of Docker's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// One image to save, with the tags it is saved under.
#[derive(Debug, Clone)]
pub struct SaveItem {
    pub image: Image,
    pub tags: Vec<Reference>,
}

/// What a load made: one line per image, as Docker prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// `Loaded image: busybox:latest`
    Tagged(String),
    /// `Loaded image ID: sha256:...`
    Untagged(String),
    /// A tag that named another image before the load: moby's "renaming the old one" line.
    /// Reported before the image's `Loaded image` lines; never in `load`'s answer.
    Retagged { tag: String, previous: String },
}

impl std::fmt::Display for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tagged(t) => write!(f, "Loaded image: {t}"),
            Self::Untagged(id) => write!(f, "Loaded image ID: {id}"),
            Self::Retagged { tag, previous } => write!(
                f,
                "The image {tag} already exists, renaming the old one with ID {previous} to empty string"
            ),
        }
    }
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(size);
    h.set_mtime(0);
    h.set_cksum();
    h
}

fn blob_name(digest: &str) -> Result<String, ImageError> {
    Ok(format!("blobs/sha256/{}", digest_hex(digest)?))
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
) -> Result<(), ImageError> {
    tar.append_data(&mut header(data.len() as u64), name, data)
        .map_err(ImageError::io("write the archive"))
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(v).map_err(|e| ImageError::Corrupt(format!("encode: {e}")))
}

/// Writes `items` as one archive to `out` (blocking).
pub fn save(store: &ImageStore, items: &[SaveItem], out: impl Write) -> Result<(), ImageError> {
    let mut tar = tar::Builder::new(out);
    // Blobs already in the archive, with their sizes.
    let mut written: HashMap<String, u64> = HashMap::new();
    let mut index = Vec::new();
    let mut docker = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for item in items {
        let config = store.config_bytes(&item.image)?;
        let mut layers = Vec::new();
        for l in store.layer_refs(&item.image)? {
            // From the blob itself: whatever a record says, this is what the bytes are.
            let mut head = Vec::with_capacity(6);
            File::open(store.content().path(&l.blob)?)
                .and_then(|f| f.take(6).read_to_end(&mut head))
                .map_err(ImageError::io(format!("read blob {}", l.blob)))?;
            let compression = crate::layer::detect_compression(&head)?;
            // Older Docker cannot read zstd: such a layer goes out as its plain tar.
            let (digest, media) = match compression {
                LayerCompression::Zstd => (l.diff_id.clone(), OCI_LAYER),
                LayerCompression::Gzip => (l.blob.clone(), OCI_LAYER_GZIP),
                LayerCompression::None => (l.blob.clone(), OCI_LAYER),
            };
            let size = match written.get(&digest) {
                Some(size) => *size,
                None => {
                    let src = File::open(store.content().path(&l.blob)?)
                        .map_err(ImageError::io(format!("open blob {}", l.blob)))?;
                    let (size, body): (u64, File) = if compression == LayerCompression::Zstd {
                        let mut tmp = tempfile_in(store)?;
                        let size = io::copy(&mut decompress(src, compression)?, &mut tmp)
                            .map_err(ImageError::io(format!("decompress {}", l.blob)))?;
                        io::Seek::rewind(&mut tmp).map_err(ImageError::io("rewind"))?;
                        (size, tmp)
                    } else {
                        let size = src
                            .metadata()
                            .map_err(ImageError::io(format!("stat blob {}", l.blob)))?
                            .len();
                        (size, src)
                    };
                    tar.append_data(&mut header(size), blob_name(&digest)?, body.take(size))
                        .map_err(ImageError::io("write the archive"))?;
                    written.insert(digest.clone(), size);
                    size
                }
            };
            let mut d = Descriptor::of(media, b"");
            d.digest = digest;
            d.size = size;
            layers.push(d);
        }
        if !written.contains_key(&item.image.id) {
            append_bytes(&mut tar, &blob_name(&item.image.id)?, &config)?;
            written.insert(item.image.id.clone(), config.len() as u64);
        }
        let m = manifest::Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            config: Descriptor::of(OCI_CONFIG, &config),
            layers: layers.clone(),
            subject: None,
            annotations: None,
        };
        let m_bytes = to_json(&m)?;
        let m_desc = Descriptor::of(OCI_MANIFEST, &m_bytes);
        if !written.contains_key(&m_desc.digest) {
            append_bytes(&mut tar, &blob_name(&m_desc.digest)?, &m_bytes)?;
            written.insert(m_desc.digest.clone(), m_desc.size);
        }
        if item.tags.is_empty() {
            index.push(m_desc.clone());
        }
        for t in &item.tags {
            let mut d = m_desc.clone();
            let mut ann = BTreeMap::new();
            ann.insert("io.containerd.image.name".to_owned(), t.full());
            if let Some(tag) = t.tag() {
                ann.insert(
                    "org.opencontainers.image.ref.name".to_owned(),
                    tag.to_owned(),
                );
            }
            d.annotations = Some(ann);
            index.push(d);
            if let (Some(tag), Some(top)) = (t.tag(), layers.last()) {
                repositories
                    .entry(t.familiar_name())
                    .or_default()
                    .insert(tag.to_owned(), digest_hex(&top.digest)?.to_owned());
            }
        }
        docker.push(DockerManifestEntry {
            config: blob_name(&item.image.id)?,
            repo_tags: (!item.tags.is_empty())
                .then(|| item.tags.iter().map(Reference::familiar).collect()),
            layers: layers
                .iter()
                .map(|d| blob_name(&d.digest))
                .collect::<Result<_, _>>()?,
        });
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: index,
        annotations: None,
    };
    append_bytes(&mut tar, "index.json", &to_json(&index)?)?;
    append_bytes(&mut tar, "manifest.json", &to_json(&docker)?)?;
    append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    if !repositories.is_empty() {
        append_bytes(&mut tar, "repositories", &to_json(&repositories)?)?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(ImageError::io("write the archive"))
}

/// An anonymous temp file in the store's content directory (same filesystem, cleaned by
/// the kernel when closed).
fn tempfile_in(store: &ImageStore) -> Result<File, ImageError> {
    let dir = store
        .content()
        .path(&sha256_digest(b""))?
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| ImageError::Corrupt("content store has no directory".into()))?;
    let fd = rustix::fs::open(
        &dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(ImageError::errno(format!("temp file in {}", dir.display())))?;
    Ok(File::from(fd))
}

/// Opens a file of the staged archive, resolved by the kernel inside the staging dir.
fn open_staged(root: &OwnedFd, path: &str) -> Result<File, ImageError> {
    let comps = crate::apply::normalize_path(path.as_bytes(), 4096)?;
    if comps.is_empty() {
        return Err(ImageError::InvalidArgument(format!(
            "invalid path {path:?} in the archive"
        )));
    }
    let rel: std::path::PathBuf = comps.iter().collect();
    // O_PATH first: a FIFO planted in the archive must not block the open.
    let fd = rustix::fs::openat2(
        root,
        &rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| {
        ImageError::InvalidArgument(format!("the archive's {path} cannot be opened: {e}"))
    })?;
    let st = rustix::fs::fstat(&fd).map_err(ImageError::errno(format!("stat {path}")))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(ImageError::InvalidArgument(format!(
            "the archive's {path} is not a file"
        )));
    }
    let file = crate::tarwalk::reopen(std::os::fd::AsFd::as_fd(&fd), OFlags::RDONLY)
        .map_err(ImageError::io(format!("open {path}")))?;
    Ok(File::from(file))
}

fn read_capped(root: &OwnedFd, path: &str, cap: u64) -> Result<Vec<u8>, ImageError> {
    let mut data = Vec::new();
    open_staged(root, path)?
        .take(cap + 1)
        .read_to_end(&mut data)
        .map_err(ImageError::io(format!("read {path}")))?;
    if data.len() as u64 > cap {
        return Err(ImageError::TooLarge(format!(
            "{path} is larger than {cap} bytes"
        )));
    }
    Ok(data)
}

/// One image found in a staged archive.
struct Found {
    config: Vec<u8>,
    /// Paths of the layer files, bottom first.
    layers: Vec<String>,
    /// Declared blob digests (OCI layouts), checked when given.
    digests: Vec<Option<String>>,
    tags: Vec<Reference>,
}

/// Loads every image of an archive (blocking). `staging` is an empty directory on the data
/// root's filesystem, removed by the caller afterwards; `progress` gets a line per image.
pub fn load(
    store: &ImageStore,
    reader: impl Read,
    staging: &Path,
    progress: &mut dyn FnMut(&Loaded),
) -> Result<Vec<Loaded>, ImageError> {
    let opts = ApplyOptions::default();
    apply_layer(staging, reader, &opts).map_err(|e| match e {
        ImageError::InvalidLayer(m) => ImageError::InvalidArgument(format!("invalid archive: {m}")),
        e => e,
    })?;
    let root = rustix::fs::open(
        staging,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(ImageError::errno(format!("open {}", staging.display())))?;
    let found = match read_capped(&root, "manifest.json", MAX_MANIFEST as u64) {
        Ok(data) => from_docker_manifest(&root, &data)?,
        Err(ImageError::InvalidArgument(_)) => from_oci_index(&root)?,
        Err(e) => return Err(e),
    };
    if found.is_empty() {
        return Err(ImageError::InvalidArgument(
            "the archive holds no image (no manifest.json or index.json)".into(),
        ));
    }
    let mut out = Vec::new();
    for f in found {
        let head = manifest::parse_config(&f.config)?;
        if head.rootfs.diff_ids.len() != f.layers.len() {
            return Err(ImageError::InvalidArgument(format!(
                "the image config lists {} layers, the archive {}",
                head.rootfs.diff_ids.len(),
                f.layers.len()
            )));
        }
        let mut refs = Vec::new();
        let mut parent: Option<String> = None;
        for ((path, diff_id), digest) in f.layers.iter().zip(&head.rootfs.diff_ids).zip(&f.digests)
        {
            let chain = chain_id(parent.as_deref(), diff_id);
            let layer = match store.layer(&chain)? {
                Some(info) => LayerRef {
                    blob: info.blob,
                    diff_id: info.diff_id,
                },
                None => {
                    let file = open_staged(&root, path)?;
                    let expect = LayerExpect {
                        digest: digest.clone(),
                        diff_id: Some(diff_id.clone()),
                        ..LayerExpect::default()
                    };
                    store
                        .unpack_layer(parent.as_deref(), file, &expect, false)
                        .map_err(|e| e.error)?
                }
            };
            refs.push(layer);
            parent = Some(chain);
        }
        let before: Vec<Option<String>> =
            f.tags.iter().map(|t| store.resolve_id(&t.full())).collect();
        // A load's tags leave the last tag time as it was, as moby's load.
        let image = store.add_image_as(&f.config, &refs, &f.tags, None, None, false)?;
        for (t, previous) in f.tags.iter().zip(before) {
            if let Some(previous) = previous.filter(|p| *p != image.id) {
                progress(&Loaded::Retagged {
                    tag: t.familiar(),
                    previous,
                });
            }
        }
        if f.tags.is_empty() {
            let l = Loaded::Untagged(image.id.clone());
            progress(&l);
            out.push(l);
        }
        for t in &f.tags {
            let l = Loaded::Tagged(t.familiar());
            progress(&l);
            out.push(l);
        }
    }
    Ok(out)
}

fn from_docker_manifest(root: &OwnedFd, data: &[u8]) -> Result<Vec<Found>, ImageError> {
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(data)
        .map_err(|e| ImageError::InvalidArgument(format!("invalid manifest.json: {e}")))?;
    let mut out = Vec::new();
    for e in entries {
        let config = read_capped(root, &e.config, MAX_CONFIG)?;
        let tags = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| Reference::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Found {
            config,
            digests: vec![None; e.layers.len()],
            layers: e.layers,
            tags,
        });
    }
    Ok(out)
}

fn from_oci_index(root: &OwnedFd) -> Result<Vec<Found>, ImageError> {
    let data = match read_capped(root, "index.json", MAX_MANIFEST as u64) {
        Ok(d) => d,
        // Neither manifest.json nor index.json: the caller says the archive holds no image.
        Err(ImageError::InvalidArgument(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let Document::Index(index) = manifest::parse_document(OCI_INDEX, &data)? else {
        return Err(ImageError::InvalidArgument(
            "index.json is not an image index".into(),
        ));
    };
    let platform = Platform::host();
    let mut out = Vec::new();
    for d in &index.manifests {
        let mut desc = d.clone();
        let mut data = read_blob(root, &desc)?;
        if manifest::is_index_type(&desc.media_type) {
            let Document::Index(inner) = manifest::parse_document(&desc.media_type, &data)? else {
                return Err(ImageError::InvalidArgument(
                    "nested index is not an index".into(),
                ));
            };
            let Some(pick) = manifest::select_platform(&inner, &platform) else {
                return Err(ImageError::InvalidArgument(format!(
                    "no image for {platform} in the archive"
                )));
            };
            desc = pick.clone();
            data = read_blob(root, &desc)?;
        }
        let Document::Manifest(m) = manifest::parse_document(&desc.media_type, &data)? else {
            return Err(ImageError::InvalidArgument(
                "expected an image manifest in index.json".into(),
            ));
        };
        let config = read_blob(root, &m.config)?;
        let name = d
            .annotations
            .as_ref()
            .and_then(|a| a.get("io.containerd.image.name"))
            .cloned();
        let tags = match name {
            Some(n) => vec![Reference::parse(&n)?],
            None => Vec::new(),
        };
        out.push(Found {
            config,
            layers: m
                .layers
                .iter()
                .map(|l| blob_name(&l.digest))
                .collect::<Result<_, _>>()?,
            digests: m.layers.iter().map(|l| Some(l.digest.clone())).collect(),
            tags,
        });
    }
    Ok(out)
}

/// A small blob of a layout (manifest, config), checked against its descriptor.
fn read_blob(root: &OwnedFd, d: &Descriptor) -> Result<Vec<u8>, ImageError> {
    if d.size > MAX_CONFIG {
        return Err(ImageError::TooLarge(format!(
            "{} is {} bytes",
            d.digest, d.size
        )));
    }
    let data = read_capped(root, &blob_name(&d.digest)?, d.size)?;
    let actual = sha256_digest(&data);
    if actual != d.digest || data.len() as u64 != d.size {
        return Err(ImageError::DigestMismatch {
            expected: d.digest.clone(),
            actual,
        });
    }
    Ok(data)
}
