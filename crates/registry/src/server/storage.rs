//! The registry's filesystem layout and every write to it.
//!
//! ```text
//! <root>/VERSION                                   layout version (see LAYOUT_VERSION)
//! <root>/blobs/<alg>/<hex>                         content, global, content-addressed
//! <root>/uploads/<uuid>/{data,repo}                uploads in progress
//! <root>/repositories/<name...>/_blobs/<alg>/<hex> which blobs the repository has
//! <root>/repositories/<name...>/_manifests/revisions/<alg>/<hex>   manifest record (JSON)
//! <root>/repositories/<name...>/_manifests/tags/<tag>              digest the tag points at
//! <root>/repositories/<name...>/_manifests/referrers/<alg>/<hex>/<alg>/<hex>
//!                                                  manifests whose subject is that digest
//! ```
//!
//! Repository names, tags, digests and upload ids reach here only as the validated types of
//! `super::names`, so no path can leave the root; names starting with `_` or `.` cannot be
//! repository components or tags, so the bookkeeping directories never clash with them. Every
//! file is written atomically (temporary file in the same directory, fsync, rename, fsync of
//! the directory). All functions are blocking; the server calls them on the blocking pool.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::error::ServerError;
use super::names::{Algorithm, Digest, RepoName, Tag, UploadId};

/// The storage layout this build reads and writes.
pub(crate) const LAYOUT_VERSION: u32 = 1;
const VERSION_FILE: &str = "VERSION";
const VERSION_PREFIX: &str = "berth-registry-storage ";

/// What a repository records about one of its manifests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ManifestRecord {
    #[serde(rename = "mediaType")]
    pub(crate) media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) subject: Option<String>,
}

/// The storage root.
#[derive(Debug, Clone)]
pub(crate) struct Storage {
    root: PathBuf,
}

type Result<T> = std::result::Result<T, ServerError>;

impl Storage {
    /// Opens the storage under `root`, creating it (and its `VERSION` file) when new.
    pub(crate) fn open(root: &Path) -> Result<Storage> {
        ensure_dir(root)?;
        let s = Storage {
            root: root.to_path_buf(),
        };
        let vpath = root.join(VERSION_FILE);
        match fs::read_to_string(&vpath) {
            Ok(text) => {
                let found = text.trim();
                let version = found
                    .strip_prefix(VERSION_PREFIX)
                    .and_then(|v| v.parse::<u32>().ok());
                // Future migrations go here, ordered by version.
                if version != Some(LAYOUT_VERSION) {
                    return Err(ServerError::StorageVersion {
                        path: root.to_path_buf(),
                        found: found.to_owned(),
                        expected: LAYOUT_VERSION,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_atomic(
                    &vpath,
                    format!("{VERSION_PREFIX}{LAYOUT_VERSION}\n").as_bytes(),
                )?;
            }
            Err(e) => return Err(ServerError::io("reading", vpath)(e)),
        }
        for d in ["blobs", "uploads", "repositories"] {
            ensure_dir(&root.join(d))?;
        }
        Ok(s)
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    // ---- paths ------------------------------------------------------------------------

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    pub(crate) fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.algorithm().name()).join(d.hex())
    }

    pub(crate) fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub(crate) fn upload_dir(&self, id: &UploadId) -> PathBuf {
        self.uploads_dir().join(id.as_str())
    }

    pub(crate) fn upload_data(&self, id: &UploadId) -> PathBuf {
        self.upload_dir(id).join("data")
    }

    pub(crate) fn repos_dir(&self) -> PathBuf {
        self.root.join("repositories")
    }

    fn repo_dir(&self, name: &RepoName) -> PathBuf {
        let mut p = self.repos_dir();
        for c in name.components() {
            p.push(c);
        }
        p
    }

    fn blob_link(&self, name: &RepoName, d: &Digest) -> PathBuf {
        digest_path(&self.repo_dir(name).join("_blobs"), d)
    }

    fn revisions_dir(&self, name: &RepoName) -> PathBuf {
        self.repo_dir(name).join("_manifests").join("revisions")
    }

    fn revision_link(&self, name: &RepoName, d: &Digest) -> PathBuf {
        digest_path(&self.revisions_dir(name), d)
    }

    fn tags_dir(&self, name: &RepoName) -> PathBuf {
        self.repo_dir(name).join("_manifests").join("tags")
    }

    fn referrers_dir(&self, name: &RepoName, subject: &Digest) -> PathBuf {
        digest_path(
            &self.repo_dir(name).join("_manifests").join("referrers"),
            subject,
        )
    }

    // ---- blobs ------------------------------------------------------------------------

    /// Size of a blob in the global store.
    pub(crate) fn blob_size(&self, d: &Digest) -> Result<Option<u64>> {
        file_size(&self.blob_path(d))
    }

    /// Size of a blob, if the repository has it.
    pub(crate) fn repo_blob_size(&self, name: &RepoName, d: &Digest) -> Result<Option<u64>> {
        if !exists(&self.blob_link(name, d))? {
            return Ok(None);
        }
        self.blob_size(d)
    }

    /// Records that the repository has the blob.
    pub(crate) fn link_blob(&self, name: &RepoName, d: &Digest) -> Result<()> {
        let link = self.blob_link(name, d);
        if exists(&link)? {
            return Ok(());
        }
        write_atomic(&link, d.to_string().as_bytes())
    }

    /// Forgets that the repository has the blob; the content stays until garbage collection.
    pub(crate) fn unlink_blob(&self, name: &RepoName, d: &Digest) -> Result<bool> {
        remove_file(&self.blob_link(name, d))
    }

    /// Moves a fully written, verified upload file into the blob store.
    pub(crate) fn commit_blob(&self, data: &Path, d: &Digest) -> Result<()> {
        let dest = self.blob_path(d);
        if exists(&dest)? {
            // Same content already stored (a concurrent upload of the same blob, say).
            touch(&dest);
            remove_file(data)?;
            return Ok(());
        }
        let f = File::open(data).map_err(ServerError::io("opening", data))?;
        f.sync_all().map_err(ServerError::io("syncing", data))?;
        drop(f);
        let dir = parent(&dest);
        ensure_dir(dir)?;
        fs::rename(data, &dest).map_err(ServerError::io("renaming into", &dest))?;
        sync_dir(dir)
    }

    /// Marks a blob as recently used so that a collection running concurrently keeps it.
    pub(crate) fn touch_blob(&self, d: &Digest) {
        touch(&self.blob_path(d));
    }

    // ---- manifests ----------------------------------------------------------------------

    /// Stores a manifest (already validated) and links it into the repository.
    pub(crate) fn put_manifest(
        &self,
        name: &RepoName,
        body: &[u8],
        digest: &Digest,
        record: &ManifestRecord,
        tag: Option<&Tag>,
    ) -> Result<()> {
        let blob = self.blob_path(digest);
        if exists(&blob)? {
            touch(&blob);
        } else {
            write_atomic(&blob, body)?;
        }
        let rec = serde_json::to_vec(record).unwrap_or_default();
        write_atomic(&self.revision_link(name, digest), &rec)?;
        self.link_blob(name, digest)?;
        if let Some(subject) = record.subject.as_deref().and_then(Digest::parse) {
            let link = digest_path(&self.referrers_dir(name, &subject), digest);
            if !exists(&link)? {
                write_atomic(&link, digest.to_string().as_bytes())?;
            }
        }
        if let Some(tag) = tag {
            write_atomic(
                &self.tags_dir(name).join(tag.as_str()),
                digest.to_string().as_bytes(),
            )?;
        }
        Ok(())
    }

    /// The repository's record of a manifest.
    pub(crate) fn manifest_record(
        &self,
        name: &RepoName,
        d: &Digest,
    ) -> Result<Option<ManifestRecord>> {
        let Some(bytes) = read_opt(&self.revision_link(name, d))? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// A manifest of the repository: its record and bytes.
    pub(crate) fn get_manifest(
        &self,
        name: &RepoName,
        d: &Digest,
    ) -> Result<Option<(ManifestRecord, Vec<u8>)>> {
        let Some(rec) = self.manifest_record(name, d)? else {
            return Ok(None);
        };
        Ok(read_opt(&self.blob_path(d))?.map(|b| (rec, b)))
    }

    /// The digest a tag points at.
    pub(crate) fn resolve_tag(&self, name: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        let Some(bytes) = read_opt(&self.tags_dir(name).join(tag.as_str()))? else {
            return Ok(None);
        };
        Ok(std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| Digest::parse(s.trim())))
    }

    /// Removes a tag; false when the repository had no such tag.
    pub(crate) fn delete_tag(&self, name: &RepoName, tag: &Tag) -> Result<bool> {
        remove_file(&self.tags_dir(name).join(tag.as_str()))
    }

    /// Removes a manifest from the repository, with every tag pointing at it.
    pub(crate) fn delete_manifest(&self, name: &RepoName, d: &Digest) -> Result<bool> {
        let Some(rec) = self.manifest_record(name, d)? else {
            return Ok(false);
        };
        for tag in self.list_tags(name)?.unwrap_or_default() {
            if let Some(tag) = Tag::parse(&tag) {
                if self.resolve_tag(name, &tag)?.as_ref() == Some(d) {
                    self.delete_tag(name, &tag)?;
                }
            }
        }
        if let Some(subject) = rec.subject.as_deref().and_then(Digest::parse) {
            remove_file(&digest_path(&self.referrers_dir(name, &subject), d))?;
        }
        self.unlink_blob(name, d)?;
        remove_file(&self.revision_link(name, d))
    }

    /// Digests of the manifests in the repository whose subject is `subject`.
    pub(crate) fn referrers(&self, name: &RepoName, subject: &Digest) -> Result<Vec<Digest>> {
        let mut out = list_digests(&self.referrers_dir(name, subject))?;
        out.sort();
        Ok(out)
    }

    /// Whether the repository exists (has ever received a blob or manifest).
    pub(crate) fn repo_exists(&self, name: &RepoName) -> Result<bool> {
        let dir = self.repo_dir(name);
        Ok(exists(&dir.join("_manifests"))? || exists(&dir.join("_blobs"))?)
    }

    /// The repository's tags, sorted; `None` when the repository does not exist.
    pub(crate) fn list_tags(&self, name: &RepoName) -> Result<Option<Vec<String>>> {
        if !self.repo_exists(name)? {
            return Ok(None);
        }
        let mut tags: Vec<String> = read_dir_names(&self.tags_dir(name))?
            .into_iter()
            .filter(|t| Tag::parse(t).is_some())
            .collect();
        tags.sort();
        Ok(Some(tags))
    }

    /// Every repository name, sorted.
    pub(crate) fn catalog(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        walk_repos(&self.repos_dir(), "", &mut out)?;
        out.sort();
        Ok(out)
    }

    /// Every repository as a validated name (for garbage collection).
    pub(crate) fn repos(&self) -> Result<Vec<RepoName>> {
        Ok(self
            .catalog()?
            .iter()
            .filter_map(|n| RepoName::parse(n))
            .collect())
    }

    /// Every manifest digest recorded in the repository.
    pub(crate) fn manifest_digests(&self, name: &RepoName) -> Result<Vec<Digest>> {
        list_digests(&self.revisions_dir(name))
    }

    /// Every blob digest the repository links.
    pub(crate) fn blob_links(&self, name: &RepoName) -> Result<Vec<Digest>> {
        list_digests(&self.repo_dir(name).join("_blobs"))
    }
}

fn walk_repos(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    for child in read_dir_names(dir)? {
        if !super::names::valid_component(&child) {
            continue;
        }
        let path = dir.join(&child);
        if !path.is_dir() {
            continue;
        }
        let name = if prefix.is_empty() {
            child.clone()
        } else {
            format!("{prefix}/{child}")
        };
        if path.join("_manifests").is_dir() || path.join("_blobs").is_dir() {
            out.push(name.clone());
        }
        walk_repos(&path, &name, out)?;
    }
    Ok(())
}

/// `<base>/<alg>/<hex>`.
fn digest_path(base: &Path, d: &Digest) -> PathBuf {
    base.join(d.algorithm().name()).join(d.hex())
}

/// The digests under a `<base>/<alg>/<hex>` tree; anything else there is skipped.
pub(crate) fn list_digests(base: &Path) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for alg in Algorithm::ALL {
        for hex in read_dir_names(&base.join(alg.name()))? {
            if let Some(d) = Digest::from_parts(alg, &hex) {
                out.push(d);
            }
        }
    }
    Ok(out)
}

/// File names in a directory; empty when it does not exist.
pub(crate) fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ServerError::io("listing", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(ServerError::io("listing", dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push(name);
        }
    }
    Ok(out)
}

fn parent(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("."))
}

pub(crate) fn exists(p: &Path) -> Result<bool> {
    p.try_exists().map_err(ServerError::io("checking", p))
}

fn file_size(p: &Path) -> Result<Option<u64>> {
    match fs::metadata(p) {
        Ok(m) if m.is_file() => Ok(Some(m.len())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServerError::io("stat", p)(e)),
    }
}

fn read_opt(p: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServerError::io("reading", p)(e)),
    }
}

/// Removes a file; false when it was not there. The directory is synced after a removal.
pub(crate) fn remove_file(p: &Path) -> Result<bool> {
    match fs::remove_file(p) {
        Ok(()) => {
            sync_dir(parent(p))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ServerError::io("removing", p)(e)),
    }
}

/// Sets a file's modification time to now; best effort (it only protects against a
/// concurrent garbage collection).
pub(crate) fn touch(p: &Path) {
    if let Ok(f) = OpenOptions::new().append(true).open(p) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Creates a directory and its missing parents, syncing each parent that gained an entry.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(p) = dir.parent() {
        if !p.as_os_str().is_empty() {
            ensure_dir(p)?;
        }
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some(p) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(p)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(ServerError::io("creating directory", dir)(e)),
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(ServerError::io("syncing directory", dir))
}

/// A fresh temporary file name in `dir` (names starting with `.tmp-` are never content).
pub(crate) fn temp_name(dir: &Path) -> PathBuf {
    let r: [u8; 8] = rand::random();
    dir.join(format!(".tmp-{}", hex::encode(r)))
}

/// Writes a file atomically: temporary file in the same directory, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = parent(path);
    ensure_dir(dir)?;
    let tmp = temp_name(dir);
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(ServerError::io("writing", path)(e));
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_file_is_written_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        Storage::open(dir.path()).expect("open new");
        Storage::open(dir.path()).expect("reopen");
        fs::write(dir.path().join(VERSION_FILE), "berth-registry-storage 99\n").expect("write");
        assert!(matches!(
            Storage::open(dir.path()),
            Err(ServerError::StorageVersion { .. })
        ));
    }

    #[test]
    fn tags_and_manifests_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Storage::open(dir.path()).expect("open");
        let name = RepoName::parse("a/b").expect("name");
        let tag = Tag::parse("v1").expect("tag");
        let body = br#"{"schemaVersion":2}"#;
        let d = Algorithm::Sha256.digest(body);
        let rec = ManifestRecord {
            media_type: crate::media::OCI_MANIFEST.into(),
            subject: None,
        };
        s.put_manifest(&name, body, &d, &rec, Some(&tag))
            .expect("put");
        assert_eq!(
            s.resolve_tag(&name, &tag).expect("resolve"),
            Some(d.clone())
        );
        assert_eq!(s.catalog().expect("catalog"), vec!["a/b".to_owned()]);
        assert!(s.delete_manifest(&name, &d).expect("delete"));
        assert_eq!(s.list_tags(&name).expect("tags"), Some(vec![]));
    }
}
