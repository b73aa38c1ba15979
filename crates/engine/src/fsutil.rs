//! Small filesystem helpers: atomic file replacement, background removal, tree sizes. (Durable state lives in redb.)

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{EngineError, Result};

/// Replaces `path` with `data` atomically (temp file + rename) but without fsync: for files
/// rebuilt at every container start (bundle config, /etc files, shim config), where a crash
/// only means writing them again, and the fsyncs would cost every start milliseconds.
pub fn write_replace(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let ctx = || format!("write {}", path.display());
    std::fs::write(&tmp, data).map_err(EngineError::io(ctx()))?;
    std::fs::rename(&tmp, path).map_err(EngineError::io(ctx()))
}

/// The prefix of a directory waiting for [`remove_dir_later`]'s background deletion.
const REMOVING_PREFIX: &str = ".removing-";

/// Removes a directory tree without making the caller wait for the disk: one rename to a
/// hidden sibling (`.removing-<name>`), then the deletion on a blocking thread. A crash in
/// between leaves the sibling for [`sweep_removing`]. A missing `path` is fine.
pub fn remove_dir_later(path: &Path) -> Result<()> {
    let Some(name) = path.file_name() else {
        return Ok(());
    };
    let hidden = path.with_file_name(format!("{REMOVING_PREFIX}{}", name.to_string_lossy()));
    match std::fs::rename(path, &hidden) {
        Ok(()) => {
            delete_in_background(hidden);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::io(format!("remove {}", path.display()))(e)),
    }
}

/// Deletes `dir` (a tree nothing refers to any more) on a blocking thread.
pub fn delete_in_background(dir: std::path::PathBuf) {
    let work = move || {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("remove {}: {e}", dir.display());
            }
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) => drop(h.spawn_blocking(work)),
        Err(_) => work(),
    }
}

/// Deletes, in the background, what [`remove_dir_later`] left in `dir` when the daemon
/// stopped before finishing.
pub fn sweep_removing(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(REMOVING_PREFIX) {
            delete_in_background(e.path());
        }
    }
}

/// Bytes under `dir` as moby's `directory.Size` counts them: every entry but directories by
/// its size (a symlink's is its target's length), each inode once, never following symlinks
/// or leaving the directory's filesystem.
pub fn dir_size(dir: &Path) -> u64 {
    fn walk(dir: &Path, dev: u64, seen: &mut HashSet<(u64, u64)>, total: &mut u64) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.dev() != dev {
                continue;
            }
            if md.is_dir() {
                walk(&e.path(), dev, seen, total);
            } else if md.len() > 0 && seen.insert((md.dev(), md.ino())) {
                *total += md.len();
            }
        }
    }
    let Ok(md) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut total = 0;
    walk(dir, md.dev(), &mut HashSet::new(), &mut total);
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_count_hard_links_once_and_symlinks_by_their_target() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/c"), vec![0u8; 24]).unwrap();
        std::os::unix::fs::symlink("/usr", d.path().join("out")).unwrap();
        // (The link is 4 bytes, "/usr", and is not followed: moby's `directory.Size`.)
        assert_eq!(dir_size(d.path()), 1028);
    }

    #[tokio::test]
    async fn removed_dirs_vanish_and_leftovers_are_swept() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("c1");
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/f"), b"x").unwrap();
        remove_dir_later(&dir).unwrap();
        assert!(!dir.exists());
        // A leftover from a crash between the rename and the deletion.
        let left = root.path().join(".removing-c2");
        std::fs::create_dir_all(left.join("x")).unwrap();
        sweep_removing(root.path());
        // Missing paths are fine.
        remove_dir_later(&root.path().join("nope")).unwrap();
        for _ in 0..100 {
            if std::fs::read_dir(root.path()).unwrap().next().is_none() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!(
            "not deleted: {:?}",
            std::fs::read_dir(root.path()).unwrap().collect::<Vec<_>>()
        );
    }
}
