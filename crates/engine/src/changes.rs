//! `docker diff`: what a container changed in its filesystem, read from its overlay upper
//! directory and compared with the image's layers (`GET /containers/{id}/changes`).
//!
//! The upper directory holds what the container wrote, so nothing in it is trusted: it is
//! walked without following symlinks, and lookups in the layers refuse any symlink on the way
//! (a link the image planted never sends a lookup to the host's own files).

use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use serde::Serialize;

use crate::Engine;
use crate::error::{EngineError, Result};

/// One change, as Docker sends it: `Kind` 0 modified, 1 added, 2 deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Change {
    pub path: String,
    pub kind: u8,
}

const MODIFIED: u8 = 0;
const ADDED: u8 = 1;
const DELETED: u8 = 2;

/// Whether `rel` exists in one of the layers (as itself, not through any symlink).
fn in_layers(layers: &[OwnedFd], rel: &Path) -> bool {
    layers.iter().any(|l| {
        rustix::fs::openat2(
            l,
            rel,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .is_ok()
    })
}

/// Deeper trees are refused rather than walked (each level holds an fd and a stack frame).
const MAX_DEPTH: usize = 128;

fn is_opaque(dir: &OwnedFd) -> bool {
    let mut buf = [0u8; 4];
    matches!(
        rustix::fs::fgetxattr(dir, "trusted.overlay.opaque", &mut buf),
        Ok(1) if buf[0] == b'y'
    )
}

/// The changes recorded in `upper` against `lowers`, sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> std::io::Result<Vec<Change>> {
    let layers: Vec<OwnedFd> = lowers
        .iter()
        .filter_map(|l| {
            rustix::fs::open(
                l,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()
        })
        .collect();
    let top = rustix::fs::open(
        upper,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    let _ = walk(&top, Path::new(""), &layers, false, &mut out, 0)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Files the runtime creates as mount points for what it binds into every container. Docker
/// keeps them in an "init" layer below the container's, so they never show in its diff.
pub(crate) const MOUNT_POINTS: [&str; 6] = [
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
    "etc/mtab",
    "dev/console",
    ".dockerenv",
];

/// Walks one upper directory through its fd (a running container may swap any entry for a
/// symlink: nothing is followed); returns whether it held anything but mount points.
fn walk(
    dir: &OwnedFd,
    rel: &Path,
    layers: &[OwnedFd],
    under_new: bool,
    out: &mut Vec<Change>,
    depth: usize,
) -> std::io::Result<bool> {
    if depth > MAX_DEPTH {
        return Err(std::io::Error::other(format!(
            "{} is more than {MAX_DEPTH} directories deep",
            rel.display()
        )));
    }
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let n = std::ffi::OsStr::from_bytes(e.file_name().to_bytes());
        if n != "." && n != ".." {
            names.push(n.to_owned());
        }
    }
    names.sort();
    let mut real = false;
    for name in names {
        let r = rel.join(&name);
        let shown = format!("/{}", r.display());
        let Ok(st) = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue; // gone since the listing
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        let mount_point = ft == FileType::RegularFile
            && st.st_size == 0
            && MOUNT_POINTS.iter().any(|m| r == Path::new(m));
        if !under_new && mount_point && !in_layers(layers, &r) {
            continue;
        }
        real = true;
        if ft == FileType::CharacterDevice && st.st_rdev == 0 {
            // A whiteout: the file was deleted.
            out.push(Change {
                path: shown,
                kind: DELETED,
            });
            continue;
        }
        let existed = !under_new && in_layers(layers, &r);
        let at = out.len();
        out.push(Change {
            path: shown,
            kind: if existed { MODIFIED } else { ADDED },
        });
        if ft != FileType::Directory {
            continue;
        }
        let Ok(child) = rustix::fs::openat(
            dir,
            &name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            continue; // swapped for something else since the stat
        };
        // Below an added or opaque directory, everything is new.
        let fresh = !existed || is_opaque(&child);
        let held = walk(&child, &r, layers, under_new || fresh, out, depth + 1)?;
        // A directory in the upper layer only to hold mount points is no change.
        if !held && existed && out.len() == at + 1 {
            let empty = rustix::fs::Dir::read_from(&child)
                .map(|d| {
                    d.flatten()
                        .all(|e| matches!(e.file_name().to_bytes(), b"." | b".."))
                })
                .unwrap_or(true);
            if !empty {
                out.truncate(at);
            }
        }
    }
    Ok(real)
}

impl Engine {
    /// `GET /containers/{id}/changes` (the walk runs on a blocking thread).
    pub async fn container_changes(&self, key: &str) -> Result<Vec<Change>> {
        let h = self.resolve(key)?;
        let rec = h.record();
        let image = self.inner.images.get(&rec.image_id)?;
        let (upper, lowers) = self.inner.images.container_layers(&rec.id, &image)?;
        if !upper.exists() {
            return Ok(Vec::new());
        }
        changes(&upper, &lowers).map_err(EngineError::io(format!("read the changes of {}", rec.id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_modified_deleted_like_docker() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        let upper = t.path().join("upper");
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::write(lower.join("etc/passwd"), "x").unwrap();
        std::fs::write(lower.join("gone"), "x").unwrap();
        std::os::unix::fs::symlink("/", lower.join("hostlink")).unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/passwd"), "y").unwrap();
        // Mount points the runtime made: not changes (and an upper dir holding only them).
        std::fs::write(upper.join("etc/hosts"), "").unwrap();
        std::fs::create_dir_all(lower.join("var")).unwrap();
        std::fs::create_dir_all(upper.join("var")).unwrap();
        std::fs::create_dir_all(upper.join("dev")).unwrap();
        std::fs::create_dir_all(lower.join("dev")).unwrap();
        std::fs::write(upper.join("dev/console"), "").unwrap();
        std::fs::create_dir_all(upper.join("new/deep")).unwrap();
        std::fs::write(upper.join("new/deep/f"), "z").unwrap();
        // /hostlink/tmp "exists" only through the image's symlink to the host's root: the
        // lookup must not follow it.
        std::fs::create_dir_all(upper.join("hostlink/tmp")).unwrap();
        nix::sys::stat::mknod(
            &upper.join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        let got: Vec<(String, u8)> = changes(&upper, &[lower])
            .unwrap()
            .into_iter()
            .map(|c| (c.path, c.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/etc".into(), MODIFIED),
                ("/etc/passwd".into(), MODIFIED),
                ("/gone".into(), DELETED),
                ("/hostlink".into(), MODIFIED),
                ("/hostlink/tmp".into(), ADDED),
                ("/new".into(), ADDED),
                ("/new/deep".into(), ADDED),
                ("/new/deep/f".into(), ADDED),
                // An upper dir with nothing in it was changed (its mode, its times).
                ("/var".into(), MODIFIED),
            ]
        );
    }
}
