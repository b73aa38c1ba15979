//! Garbage collection: removes blobs that no stored manifest of any repository references
//! (and that are not manifests themselves), dangling per-repository blob links, and stale
//! uploads.
//!
//! Safe while a server runs on the same root: the collection holds an exclusive lock on
//! `<root>/gc.lock` while a server holds it shared around each manifest write and each blob
//! commit, so a manifest can never be stored while its blobs are being swept. A blob pushed
//! but not yet referenced is protected by a grace period on its modification time (the server
//! touches a blob whenever a client uploads, mounts or checks it).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::error::ServerError;
use super::names::Digest;
use super::storage::{self, Storage};

const LOCK_FILE: &str = "gc.lock";

/// What a collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed from the store.
    pub blobs_removed: usize,
    /// Bytes those blobs held.
    pub bytes_freed: u64,
    /// Blobs still stored afterwards.
    pub blobs_kept: usize,
    /// Per-repository links to removed blobs that were dropped.
    pub links_removed: usize,
    /// Stale uploads removed.
    pub uploads_removed: usize,
}

/// Knobs of a collection.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// An unreferenced blob younger than this is kept (it may be waiting for its manifest).
    pub blob_grace: Duration,
    /// An upload untouched for this long is removed.
    pub upload_max_age: Duration,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            blob_grace: Duration::from_secs(3600),
            upload_max_age: Duration::from_secs(3600),
        }
    }
}

/// Collects garbage under `root` with the default options (one hour of grace for new blobs
/// and for uploads).
pub fn collect_garbage(root: &Path) -> Result<GcReport, ServerError> {
    collect_garbage_with(root, &GcOptions::default())
}

/// Collects garbage under `root`.
pub fn collect_garbage_with(root: &Path, opts: &GcOptions) -> Result<GcReport, ServerError> {
    let storage = Storage::open(root)?;
    let lock_path = root.join(LOCK_FILE);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(ServerError::io("opening", &lock_path))?;
    lock.lock()
        .map_err(ServerError::io("locking", &lock_path))?;

    let now = SystemTime::now();
    let older_than = |p: &Path, age: Duration| -> bool {
        fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|d| d >= age)
    };

    // Mark.
    let repos = storage.repos()?;
    let mut marked: HashSet<Digest> = HashSet::new();
    for repo in &repos {
        for m in storage.manifest_digests(repo)? {
            if let Some((_, body)) = storage.get_manifest(repo, &m)? {
                marked.extend(references(&body));
            }
            marked.insert(m);
        }
    }

    // Sweep blobs.
    let mut report = GcReport::default();
    let blobs_dir = storage.blobs_dir();
    for d in storage::list_digests(&blobs_dir)? {
        if marked.contains(&d) {
            report.blobs_kept += 1;
            continue;
        }
        let path = storage.blob_path(&d);
        if !older_than(&path, opts.blob_grace) {
            report.blobs_kept += 1;
            continue;
        }
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if storage::remove_file(&path)? {
            report.blobs_removed += 1;
            report.bytes_freed += size;
        }
    }
    // Temporary files left by a crash.
    for alg in storage::read_dir_names(&blobs_dir)? {
        let dir = blobs_dir.join(&alg);
        for name in storage::read_dir_names(&dir)? {
            let p = dir.join(&name);
            if name.starts_with(".tmp-") && older_than(&p, opts.upload_max_age) {
                storage::remove_file(&p)?;
            }
        }
    }

    // Dangling links.
    for repo in &repos {
        for d in storage.blob_links(repo)? {
            if storage.blob_size(&d)?.is_none() && storage.unlink_blob(repo, &d)? {
                report.links_removed += 1;
            }
        }
    }

    // Stale uploads.
    let uploads = storage.uploads_dir();
    for name in storage::read_dir_names(&uploads)? {
        let dir = uploads.join(&name);
        let data = dir.join("data");
        let probe = if data.exists() { data } else { dir.clone() };
        if older_than(&probe, opts.upload_max_age) {
            match fs::remove_dir_all(&dir) {
                Ok(()) => report.uploads_removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ServerError::io("removing", dir)(e)),
            }
        }
    }
    if report.uploads_removed > 0 {
        storage::sync_dir(&uploads)?;
    }
    tracing::info!(?report, "registry garbage collection done");
    Ok(report)
}

/// Every digest a manifest or index refers to: config, layers, index children, the subject
/// and (for old artifact manifests) blobs. Unknown shapes refer to nothing.
fn references(body: &[u8]) -> Vec<Digest> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut push = |desc: &serde_json::Value| {
        if let Some(d) = desc
            .get("digest")
            .and_then(|d| d.as_str())
            .and_then(Digest::parse)
        {
            out.push(d);
        }
    };
    for key in ["config", "subject"] {
        if let Some(desc) = v.get(key) {
            push(desc);
        }
    }
    for key in ["layers", "manifests", "blobs"] {
        if let Some(list) = v.get(key).and_then(|l| l.as_array()) {
            list.iter().for_each(&mut push);
        }
    }
    out
}

/// A shared hold on the collection lock, taken by the server around writes that make a blob
/// referenced or present.
pub(crate) struct SharedLock(File);

impl SharedLock {
    pub(crate) fn acquire(root: &Path) -> Result<SharedLock, ServerError> {
        let path = root.join(LOCK_FILE);
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ServerError::io("opening", &path))?;
        f.lock_shared().map_err(ServerError::io("locking", &path))?;
        Ok(SharedLock(f))
    }
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}
