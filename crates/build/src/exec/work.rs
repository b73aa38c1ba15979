//! A step's working root: an overlay of the stage's layers under a fresh upper directory,
//! mounted for the step and turned into a layer of what the step changed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_image::snapshot::{BUILD_PREFIX, Upper};
use berth_image::store::{ImageStore, LayerRef};
use berth_image::tarwalk::{Skip, TreeWriter};
use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use sha2::{Digest, Sha256};

use super::ExecError;

/// Files the runtime makes as mount points (bind targets); never part of a layer.
const MOUNT_POINTS: [&str; 4] = [
    "etc/hosts",
    "etc/resolv.conf",
    "etc/hostname",
    "dev/console",
];
/// Directories the runtime mounts over.
const MOUNT_DIRS: [&str; 3] = ["proc", "sys", "dev"];

fn skip() -> Skip {
    Box::new(
        |rel: &Path, st: &Stat| match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                st.st_size == 0 && MOUNT_POINTS.iter().any(|m| rel == Path::new(m))
            }
            FileType::Directory => MOUNT_DIRS.iter().any(|m| rel == Path::new(m)),
            _ => false,
        },
    )
}

/// The diff id of a layer with no entries: a step that changed nothing makes no layer.
fn empty_diff_id() -> &'static str {
    static EMPTY: OnceLock<String> = OnceLock::new();
    EMPTY.get_or_init(|| {
        let w = TreeWriter::for_layer(Vec::new(), skip());
        let bytes = w.finish().unwrap_or_default();
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
    })
}

const RESOLVE: rustix::fs::ResolveFlags =
    rustix::fs::ResolveFlags::IN_ROOT.union(rustix::fs::ResolveFlags::NO_MAGICLINKS);

/// The paths from `path` up that do not exist in `root` (deepest first): what a runtime
/// makes as the mount point of `path`.
pub fn missing_chain(root: &OwnedFd, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = path.trim_end_matches('/').to_owned();
    while !p.is_empty() && p != "/" {
        let rel = p.trim_start_matches('/');
        let exists = rustix::fs::openat2(
            root,
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
        .is_ok();
        if exists {
            break;
        }
        out.push(p.clone());
        p = match p.rsplit_once('/') {
            Some((parent, _)) => parent.to_owned(),
            None => String::new(),
        };
    }
    out
}

/// Removes the mount points [`missing_chain`] listed, deepest first, if they are still an
/// empty file or an empty directory (a step may have put something there itself).
pub fn remove_stubs(root: &OwnedFd, stubs: &[String]) {
    for p in stubs {
        let (parent, name) = match p.rsplit_once('/') {
            Some((parent, name)) if !name.is_empty() => (parent.trim_start_matches('/'), name),
            _ => continue,
        };
        let parent = if parent.is_empty() { "." } else { parent };
        let Ok(dir) = rustix::fs::openat2(
            root,
            parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        ) else {
            continue;
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st)
                if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                    && st.st_size == 0 =>
            {
                let _ = rustix::fs::unlinkat(&dir, name, AtFlags::empty());
            }
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                // Fails (and stays) when not empty.
                let _ = rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR);
            }
            _ => {}
        }
    }
}

/// A mounted working root; unmounted and removed on drop.
pub struct Work<'a> {
    store: &'a ImageStore,
    id: String,
    rootfs: PathBuf,
    mounted: bool,
}

impl<'a> Work<'a> {
    /// Mounts the layers `diff_ids` under a fresh upper directory at `<dir>/<id>`.
    pub fn mount(
        store: &'a ImageStore,
        dir: &Path,
        diff_ids: &[String],
    ) -> Result<Self, ExecError> {
        let id = format!("{BUILD_PREFIX}{:016x}", rand::random::<u64>());
        let rootfs = dir.join(&id);
        std::fs::create_dir_all(&rootfs).map_err(ExecError::io(&rootfs))?;
        let mut w = Work {
            store,
            id,
            rootfs,
            mounted: false,
        };
        // A step's upper only feeds the layer made from it, then goes: no sync on unmount.
        store.mount_layers(&w.id, diff_ids, &w.rootfs, Upper::Volatile)?;
        w.mounted = true;
        Ok(w)
    }

    /// Where the root is mounted.
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// A short id for messages (`Running in ...`).
    pub fn short_id(&self) -> &str {
        let hex = &self.id[BUILD_PREFIX.len()..];
        &hex[..12.min(hex.len())]
    }

    /// Unmounts the root and makes a layer of what changed on top of `parent`; `None` when
    /// nothing did. Returns the layer and its size in bytes.
    pub fn commit(mut self, parent: &[String]) -> Result<Option<(LayerRef, u64)>, ExecError> {
        self.unmount()?;
        let layer = self.store.layer_from_container(&self.id, parent, skip())?;
        if layer.diff_id == empty_diff_id() {
            return Ok(None);
        }
        let mut ids = parent.to_vec();
        ids.push(layer.diff_id.clone());
        let chain = berth_image::snapshot::chain_ids(&ids)
            .pop()
            .unwrap_or_default();
        let size = self.store.layer(&chain)?.map_or(0, |i| i.size);
        Ok(Some((layer, size)))
    }

    fn unmount(&mut self) -> Result<(), ExecError> {
        if self.mounted {
            self.store.unmount_container(&self.rootfs)?;
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for Work<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            tracing::warn!(error = %e, "unmounting a build root");
        }
        if let Err(e) = self.store.remove_container(&self.id) {
            tracing::warn!(error = %e, "removing a build root's upper directory");
        }
        let _ = std::fs::remove_dir(&self.rootfs);
    }
}
