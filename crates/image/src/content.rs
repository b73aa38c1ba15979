//! The content store: blobs addressed by their sha256 digest under
//! `content/blobs/sha256/<hex>`. Bytes are hashed as they stream in; a blob becomes visible
//! only once complete and verified (temp file in the same directory, fsync, rename, fsync of
//! the directory), so a crash leaves no partial blob under its digest.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::ImageError;

/// Prefix of in-progress blob files, removed when the store opens.
const TEMP_PREFIX: &str = ".tmp-";

/// The hex part of a `sha256:<64 hex>` digest, or an error naming the bad digest.
pub fn digest_hex(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(hex)
        }
        _ => Err(ImageError::InvalidArgument(format!(
            "invalid digest {digest:?}"
        ))),
    }
}

/// `sha256:<hex>` of the bytes a hasher has seen.
pub fn finish_digest(hasher: Sha256) -> String {
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// `sha256:<hex>` of a byte slice.
pub fn sha256_digest(data: &[u8]) -> String {
    finish_digest(Sha256::new_with_prefix(data))
}

/// Fsyncs a directory so a rename or unlink in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ImageError::io(format!("sync {}", dir.display())))
}

/// A directory of content-addressed blobs.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    /// Downloads in progress, `ingest/<hex>` by the digest they must end with: kept across
    /// a daemon restart so an interrupted pull resumes where it stopped.
    ingest: PathBuf,
}

/// Partial downloads older than this are dropped when the store opens.
const INGEST_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl ContentStore {
    /// Opens (creating it if needed) the store rooted at `root` (`<data-root>/content`) and
    /// removes blobs left half-written by an interrupted write.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs)
            .map_err(ImageError::io(format!("create {}", blobs.display())))?;
        let legacy_tmp = root.join("tmp");
        if legacy_tmp.exists() {
            fs::remove_dir_all(&legacy_tmp)
                .map_err(ImageError::io(format!("remove {}", legacy_tmp.display())))?;
        }
        let entries =
            fs::read_dir(&blobs).map_err(ImageError::io(format!("read {}", blobs.display())))?;
        for entry in entries {
            let entry = entry.map_err(ImageError::io(format!("read {}", blobs.display())))?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                tracing::info!(path = %entry.path().display(), "removing partial blob");
                fs::remove_file(entry.path())
                    .map_err(ImageError::io(format!("remove {}", entry.path().display())))?;
            }
        }
        let ingest = root.join("ingest");
        fs::create_dir_all(&ingest)
            .map_err(ImageError::io(format!("create {}", ingest.display())))?;
        for entry in
            fs::read_dir(&ingest).map_err(ImageError::io(format!("read {}", ingest.display())))?
        {
            let entry = entry.map_err(ImageError::io(format!("read {}", ingest.display())))?;
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age > INGEST_TTL);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self { blobs, ingest })
    }

    /// Bytes an interrupted download of `expected` already stored (0 when none).
    pub fn partial_size(&self, expected: &str) -> u64 {
        digest_hex(expected)
            .ok()
            .and_then(|hex| fs::metadata(self.ingest.join(hex)).ok())
            .map_or(0, |m| m.len())
    }

    /// Drops the partial download of `expected` (it cannot be resumed).
    pub fn discard_partial(&self, expected: &str) {
        if let Ok(hex) = digest_hex(expected) {
            let _ = fs::remove_file(self.ingest.join(hex));
        }
    }

    /// Resumes (or starts) the download of the blob `expected`: the writer appends to what
    /// an earlier attempt stored, and the returned file reads those bytes back (`None` when
    /// starting afresh). The partial file survives a failed or dropped writer unless
    /// [`BlobWriter::discard`] is called; a commit checks the whole blob's digest.
    pub fn resume(&self, expected: &str) -> Result<(BlobWriter, Option<File>), ImageError> {
        let path = self.ingest.join(digest_hex(expected)?);
        let mut file = File::options()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(ImageError::io(format!("open {}", path.display())))?;
        let mut hasher = Sha256::new();
        let size = io::copy(&mut file, &mut HashSink(&mut hasher))
            .map_err(ImageError::io(format!("read {}", path.display())))?;
        let prefix = if size > 0 {
            Some(File::open(&path).map_err(ImageError::io(format!("open {}", path.display())))?)
        } else {
            None
        };
        Ok((
            BlobWriter {
                file: Some(file),
                temp: path,
                dir: self.blobs.clone(),
                hasher,
                size,
                failed: None,
                keep_partial: true,
            },
            prefix,
        ))
    }

    /// Where a blob lives (whether or not it exists).
    pub fn path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.blobs.join(digest_hex(digest)?))
    }

    /// Whether a blob is present.
    pub fn exists(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.is_file())
    }

    /// Every blob digest in the store.
    pub fn list(&self) -> Result<Vec<String>, ImageError> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.blobs)
            .map_err(ImageError::io(format!("read {}", self.blobs.display())))?;
        for entry in entries {
            let entry = entry.map_err(ImageError::io(format!("read {}", self.blobs.display())))?;
            let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
            if digest_hex(&digest).is_ok() {
                out.push(digest);
            }
        }
        Ok(out)
    }

    /// Starts a new blob; write to it, then [`BlobWriter::commit`].
    pub fn writer(&self) -> Result<BlobWriter, ImageError> {
        let name = format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>());
        let path = self.blobs.join(name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(ImageError::io(format!("create {}", path.display())))?;
        Ok(BlobWriter {
            file: Some(file),
            temp: path,
            dir: self.blobs.clone(),
            hasher: Sha256::new(),
            size: 0,
            failed: None,
            keep_partial: false,
        })
    }

    /// Stores a blob held in memory; returns its digest. With `expected`, bytes that hash to
    /// something else are refused.
    pub fn put(&self, data: &[u8], expected: Option<&str>) -> Result<String, ImageError> {
        let mut w = self.writer()?;
        w.write_all(data).map_err(ImageError::io("write blob"))?;
        w.commit(expected)
    }

    /// Reads a whole blob, checking that it still hashes to its digest.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.path(digest)?;
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => ImageError::Corrupt(format!("missing blob {digest}")),
                _ => ImageError::Io {
                    context: format!("read {}", path.display()),
                    source: e,
                },
            })?;
        let actual = sha256_digest(&data);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                expected: digest.to_owned(),
                actual,
            });
        }
        Ok(data)
    }

    /// Deletes a blob; a missing blob is not an error.
    pub fn delete(&self, digest: &str) -> Result<(), ImageError> {
        let path = self.path(digest)?;
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.blobs),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::Io {
                context: format!("remove {}", path.display()),
                source: e,
            }),
        }
    }
}

/// A blob being written: bytes are hashed and counted as they go to a temp file. Dropped
/// without [`commit`](BlobWriter::commit), the temp file is removed.
#[derive(Debug)]
pub struct BlobWriter {
    file: Option<File>,
    temp: PathBuf,
    dir: PathBuf,
    hasher: Sha256,
    size: u64,
    failed: Option<io::Error>,
    /// A resumable download: the partial file stays when the writer is dropped.
    keep_partial: bool,
}

/// Feeds what is written to a hasher.
struct HashSink<'a>(&'a mut Sha256);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWriter {
    /// The digest of what was written so far.
    pub fn digest(&self) -> String {
        finish_digest(self.hasher.clone())
    }

    /// Drops a resumable download's partial bytes (they are bad, not merely incomplete).
    pub fn discard(mut self) {
        self.keep_partial = false;
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The first write error, if a write failed (so a reader that tees into this writer can
    /// tell a disk error from bad input).
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.failed.take()
    }

    /// Makes the blob durable and visible under its digest, which it returns. With
    /// `expected`, a different digest is refused and nothing is stored.
    pub fn commit(mut self, expected: Option<&str>) -> Result<String, ImageError> {
        let file = self
            .file
            .take()
            .ok_or_else(|| ImageError::Corrupt("blob writer already committed".into()))?;
        let digest = finish_digest(std::mem::take(&mut self.hasher));
        if let Some(expected) = expected {
            if expected != digest {
                self.keep_partial = false;
                return Err(ImageError::DigestMismatch {
                    expected: expected.to_owned(),
                    actual: digest,
                });
            }
        }
        file.sync_all()
            .map_err(ImageError::io(format!("sync {}", self.temp.display())))?;
        drop(file);
        let target = self.dir.join(digest_hex(&digest)?);
        if target.is_file() {
            // Same digest, same bytes: keep the existing blob.
            return Ok(digest);
        }
        fs::rename(&self.temp, &target)
            .map_err(ImageError::io(format!("rename to {}", target.display())))?;
        sync_dir(&self.dir)?;
        Ok(digest)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob already committed"))?;
        match file.write(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.size += n as u64;
                Ok(n)
            }
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.failed.get_or_insert(e);
                Err(copy)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Committed or not, the temp name must not survive (after a commit it is either renamed
        // away or a duplicate of an existing blob); an interrupted resumable download stays.
        if self.keep_partial && self.file.is_some() {
            return;
        }
        if let Err(e) = fs::remove_file(&self.temp) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.temp.display(), error = %e, "removing temp blob");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_stored_under_their_digest_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("content")).unwrap();
        let d = store.put(b"hello", None).unwrap();
        assert_eq!(d, sha256_digest(b"hello"));
        assert!(store.exists(&d));
        assert_eq!(store.read(&d).unwrap(), b"hello");
        assert_eq!(store.list().unwrap(), vec![d.clone()]);

        // A wrong expected digest stores nothing.
        let other = sha256_digest(b"other");
        let e = store.put(b"hello!", Some(&other)).unwrap_err();
        assert!(matches!(e, ImageError::DigestMismatch { .. }));
        assert_eq!(store.list().unwrap().len(), 1);

        // A blob changed on disk is detected on read.
        fs::write(store.path(&d).unwrap(), b"tampered").unwrap();
        assert!(matches!(
            store.read(&d),
            Err(ImageError::DigestMismatch { .. })
        ));

        store.delete(&d).unwrap();
        store.delete(&d).unwrap();
        assert!(!store.exists(&d));
        assert!(store.path("sha256:xyz").is_err());
        assert!(store.path("md5:00").is_err());
    }

    #[test]
    fn partial_blobs_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("content");
        let store = ContentStore::open(&root).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(b"partial").unwrap();
        std::mem::forget(w); // a crash: the temp file stays
        let leftovers = fs::read_dir(root.join("blobs/sha256")).unwrap().count();
        assert_eq!(leftovers, 1);
        ContentStore::open(&root).unwrap();
        assert_eq!(fs::read_dir(root.join("blobs/sha256")).unwrap().count(), 0);
    }
}
