//! Snapshots: one directory per unpacked layer, `snapshots/<chain-id hex>/fs`, and overlay
//! mounts for containers (the image's layers as lower dirs under a per-container upper dir,
//! `snapshots/ctr-<container-id>/{fs,work}`). A container's stack also has an init layer
//! between the image and the upper dir, as Docker's: the files every container gets
//! (`/.dockerenv`, `/etc/mtab`, mount points), seen in the container and by `export` but not
//! among its changes (`diff`, `commit` read the upper dir alone). It depends only on the image,
//! so it is made once per top layer, in `snapshots/<chain-id hex>/init`, and shared.
//!
//! A layer is unpacked into `snapshots/tmp-<random>/fs` and renamed into place once complete,
//! so a snapshot directory under a chain id is always whole; leftovers of an interrupted
//! unpack are removed when the snapshotter opens.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};
use sha2::{Digest, Sha256};

use crate::content::{digest_hex, finish_digest};
use crate::error::ImageError;

const TEMP_PREFIX: &str = "tmp-";
const CONTAINER_PREFIX: &str = "ctr-";
/// What overlay leaves in a work directory after a `volatile` mount; the kernel refuses to
/// mount that work directory again while it is there.
const VOLATILE_MARK: &str = "work/incompat";

/// Whether an overlay's upper directory must survive a host crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upper {
    /// Writes reach the disk as the container's `fsync`s and the final unmount ask (the
    /// unmount syncs the whole upper filesystem).
    Durable,
    /// Overlay's `volatile` option: no sync ever reaches the upper filesystem, so neither the
    /// container's `fsync`s nor the unmount wait on the disk. Only for uppers that are thrown
    /// away after use (an auto-remove container, a build step's scratch layer); a kernel
    /// without the option (before 5.10) mounts them durable.
    Volatile,
}

/// The chain id of a layer on top of `parent` (the chain id of the layers below it):
/// the diff id itself for a bottom layer, else `sha256(parent + " " + diff_id)`.
pub fn chain_id(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => diff_id.to_owned(),
        Some(p) => finish_digest(Sha256::new_with_prefix(format!("{p} {diff_id}"))),
    }
}

/// The chain ids of a stack of layers, bottom first.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = chain_id(out.last().map(String::as_str), d);
        out.push(next);
    }
    out
}

/// A container id usable as a directory name.
fn check_container_id(id: &str) -> Result<(), ImageError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ImageError::InvalidArgument(format!(
            "invalid container id {id:?}"
        )))
    }
}

/// Working containers of builds have ids starting with this; any left at start is debris.
pub const BUILD_PREFIX: &str = "build-";

/// The directory of layer snapshots.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    root: PathBuf,
}

/// A layer being unpacked; removed on drop unless committed.
#[derive(Debug)]
pub struct TempSnapshot {
    dir: PathBuf,
    committed: bool,
}

impl TempSnapshot {
    /// The directory to unpack into.
    pub fn fs(&self) -> PathBuf {
        self.dir.join("fs")
    }
}

impl Drop for TempSnapshot {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.dir.display(), error = %e, "removing temp snapshot");
                }
            }
        }
    }
}

impl Snapshotter {
    /// Opens (creating it if needed) `<data-root>/snapshots` and removes half-made snapshots.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        fs::create_dir_all(root).map_err(ImageError::io(format!("create {}", root.display())))?;
        let s = Self {
            root: root.to_owned(),
        };
        for name in s.entries()? {
            if name.starts_with(TEMP_PREFIX) {
                tracing::info!(snapshot = %name, "removing half-made snapshot");
                s.remove_dir(&root.join(&name))?;
            } else if name.starts_with(&format!("{CONTAINER_PREFIX}{BUILD_PREFIX}")) {
                tracing::info!(dir = %name, "removing the working directory of an ended build");
                s.remove_dir(&root.join(&name))?;
            }
        }
        Ok(s)
    }

    fn entries(&self) -> Result<Vec<String>, ImageError> {
        let ctx = || format!("read {}", self.root.display());
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(ImageError::io(ctx()))? {
            let entry = entry.map_err(ImageError::io(ctx()))?;
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    /// The chain ids of every layer snapshot present.
    pub fn list(&self) -> Result<Vec<String>, ImageError> {
        Ok(self
            .entries()?
            .into_iter()
            .map(|n| format!("sha256:{n}"))
            .filter(|d| digest_hex(d).is_ok())
            .collect())
    }

    /// `std::fs::remove_dir_all` never follows symlinks inside the tree.
    fn remove_dir(&self, dir: &Path) -> Result<(), ImageError> {
        match fs::remove_dir_all(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ImageError::Io {
                context: format!("remove {}", dir.display()),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// The unpacked layer of a chain id.
    pub fn layer_dir(&self, chain_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join(digest_hex(chain_id)?).join("fs"))
    }

    /// Whether the layer of a chain id is unpacked.
    pub fn exists(&self, chain_id: &str) -> bool {
        self.layer_dir(chain_id).is_ok_and(|d| d.is_dir())
    }

    /// A fresh directory to unpack a layer into.
    pub fn prepare(&self) -> Result<TempSnapshot, ImageError> {
        let dir = self
            .root
            .join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
        let fs_dir = dir.join("fs");
        fs::create_dir_all(&fs_dir)
            .map_err(ImageError::io(format!("create {}", fs_dir.display())))?;
        Ok(TempSnapshot {
            dir,
            committed: false,
        })
    }

    /// Moves an unpacked layer under its chain id. If that snapshot already exists the new
    /// copy is discarded (same chain id, same content).
    pub fn commit(&self, mut temp: TempSnapshot, chain_id: &str) -> Result<(), ImageError> {
        let target = self.root.join(digest_hex(chain_id)?);
        if target.join("fs").is_dir() {
            return Ok(());
        }
        // A target without `fs` is debris of an old failure.
        self.remove_dir(&target)?;
        match fs::rename(&temp.dir, &target) {
            Ok(()) => {
                temp.committed = true;
                crate::content::sync_dir(&self.root)
            }
            Err(e) if target.join("fs").is_dir() => {
                tracing::debug!(error = %e, "snapshot committed concurrently");
                Ok(())
            }
            Err(e) => Err(ImageError::Io {
                context: format!("rename to {}", target.display()),
                source: e,
            }),
        }
    }

    /// Removes a layer snapshot; a missing one is not an error. It is renamed to a temp name
    /// first, so a removal cut short never leaves a partial tree under the chain id (the
    /// temp name is swept at the next open).
    pub fn remove(&self, chain_id: &str) -> Result<(), ImageError> {
        let dir = self.root.join(digest_hex(chain_id)?);
        let doomed = self
            .root
            .join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
        match fs::rename(&dir, &doomed) {
            Ok(()) => self.remove_dir(&doomed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::Io {
                context: format!("rename {}", dir.display()),
                source: e,
            }),
        }
    }

    /// The upper and work directories of a container.
    fn container_dirs(
        &self,
        container_id: &str,
    ) -> Result<(PathBuf, PathBuf, PathBuf), ImageError> {
        check_container_id(container_id)?;
        let base = self.root.join(format!("{CONTAINER_PREFIX}{container_id}"));
        Ok((base.join("fs"), base.join("work"), base))
    }

    /// Mounts an overlay on `target`: `lowers` (top layer first) under the container's upper
    /// dir, created if missing and reused if present so a restarted container keeps its
    /// changes. With no layers an empty directory is the lower. With `init`, the init layer
    /// (shared by the image's containers, made at the first mount) goes on top of `lowers`.
    pub fn mount_container(
        &self,
        container_id: &str,
        lowers: &[PathBuf],
        target: &Path,
        upper_kind: Upper,
        init: bool,
    ) -> Result<(), ImageError> {
        let (upper, work, base) = self.container_dirs(container_id)?;
        for d in [&upper, &work] {
            fs::create_dir_all(d).map_err(ImageError::io(format!("create {}", d.display())))?;
        }
        let mut stack = Vec::with_capacity(lowers.len() + 1);
        if init {
            stack.push(init_layer(init_home(&base, lowers), lowers)?);
        }
        stack.extend_from_slice(lowers);
        if stack.is_empty() {
            let empty = base.join("empty");
            fs::create_dir_all(&empty)
                .map_err(ImageError::io(format!("create {}", empty.display())))?;
            stack.push(empty);
        }
        mount_overlay(&stack, &upper, &work, target, upper_kind)
    }

    /// Unmounts a container's root (lazily); a target that is not mounted is fine.
    pub fn unmount(&self, target: &Path) -> Result<(), ImageError> {
        match rustix::mount::unmount(target, UnmountFlags::DETACH) {
            Ok(()) | Err(Errno::INVAL | Errno::NOENT) => Ok(()),
            Err(e) => Err(ImageError::errno(format!("unmount {}", target.display()))(
                e,
            )),
        }
    }

    /// A container's upper directory (what it wrote).
    pub fn container_upper(&self, container_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.container_dirs(container_id)?.0)
    }

    /// The directories of a container's overlay over the image layers `lowers` (top first),
    /// as [`Self::mount_container`] with `init` stacks them; paths only, nothing is made.
    pub fn container_overlay(
        &self,
        container_id: &str,
        lowers: &[PathBuf],
    ) -> Result<OverlayDirs, ImageError> {
        let (upper, work, base) = self.container_dirs(container_id)?;
        let mut stack = vec![init_home(&base, lowers).join("init")];
        stack.extend_from_slice(lowers);
        Ok(OverlayDirs {
            upper,
            work,
            lowers: stack,
        })
    }

    /// Deletes a container's upper and work directories.
    pub fn remove_container(&self, container_id: &str) -> Result<(), ImageError> {
        let (_, _, base) = self.container_dirs(container_id)?;
        self.remove_dir(&base)
    }

    /// Takes a container's upper and work directories out of the store with one rename, for
    /// the caller to delete when it suits it; a crash before that leaves a temporary entry,
    /// which [`Snapshotter::open`] removes. `None` when the container has none.
    pub fn detach_container(&self, container_id: &str) -> Result<Option<PathBuf>, ImageError> {
        let (_, _, base) = self.container_dirs(container_id)?;
        let to = self
            .root
            .join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
        match fs::rename(&base, &to) {
            Ok(()) => Ok(Some(to)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io(format!("remove {}", base.display()))(e)),
        }
    }
}

/// A container's overlay directories: what it writes, overlay's work dir, and the read-only
/// layers under them (its init layer first, then the image's, top first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayDirs {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub lowers: Vec<PathBuf>,
}

/// Where the init layer for a container over `lowers` lives: beside the image's top layer's
/// `fs` (its chain id fixes everything below it, so the image's containers share it and it
/// goes with that layer), or in the container's own `base` for an image without layers.
fn init_home<'a>(base: &'a Path, lowers: &'a [PathBuf]) -> &'a Path {
    lowers.first().and_then(|top| top.parent()).unwrap_or(base)
}

/// What Docker's init layer holds (moby's `initlayer.Setup`): mount points and files every
/// container has, each made only when the image lacks it.
const INIT_ENTRIES: &[(&str, InitEntry)] = &[
    ("dev/pts", InitEntry::Dir),
    ("dev/shm", InitEntry::Dir),
    ("proc", InitEntry::Dir),
    ("sys", InitEntry::Dir),
    (".dockerenv", InitEntry::File),
    ("etc/resolv.conf", InitEntry::File),
    ("etc/hosts", InitEntry::File),
    ("etc/hostname", InitEntry::File),
    ("dev/console", InitEntry::File),
    ("etc/mtab", InitEntry::Link("/proc/mounts")),
];

#[derive(Clone, Copy)]
enum InitEntry {
    Dir,
    File,
    Link(&'static str),
}

/// The init layer for `lowers` in `home/init`, made once: [`INIT_ENTRIES`] the image lacks.
/// An entry whose parent in the image is not a plain directory (a symlink `/etc`) is left
/// out; a parent the image has is made with the image's mode, owner and times, since the
/// layer's directory is what the container sees. Built in a temporary directory and renamed
/// into place, so it is whole or absent; of two made at once, the first renamed stays.
fn init_layer(home: &Path, lowers: &[PathBuf]) -> Result<PathBuf, ImageError> {
    let init = home.join("init");
    if init.is_dir() {
        return Ok(init);
    }
    let tmp = home.join(format!("init.tmp-{:016x}", rand::random::<u64>()));
    let io = |what: &str, p: &Path| ImageError::io(format!("{what} {}", p.display()));
    fs::create_dir(&tmp).map_err(io("create", &tmp))?;
    let made = fill_init_layer(&tmp, lowers);
    let placed = made.and_then(|()| match fs::rename(&tmp, &init) {
        Ok(()) => Ok(()),
        // Another container of the image made it first.
        Err(_) if init.is_dir() => Ok(()),
        Err(e) => Err(io("rename", &tmp)(e)),
    });
    if tmp.exists() {
        let _ = fs::remove_dir_all(&tmp);
    }
    placed.map(|()| init)
}

/// Writes the init layer's entries into `tmp`.
fn fill_init_layer(tmp: &Path, lowers: &[PathBuf]) -> Result<(), ImageError> {
    let io = |what: &str, p: &Path| ImageError::io(format!("{what} {}", p.display()));
    // The image's own entry at `rel`: the topmost layer that has one decides (lstat). A
    // whiteout (a 0/0 character device) counts as present: the entry is then left alone.
    let in_image = |rel: &str| {
        lowers
            .iter()
            .find_map(|l| fs::symlink_metadata(l.join(rel)).ok())
    };
    // Directories made, with the image's attributes to give them once all entries are in
    // (an entry made later would change a directory's times).
    let mut dirs: Vec<(PathBuf, Option<fs::Metadata>)> = Vec::new();
    'entries: for (rel, kind) in INIT_ENTRIES {
        if in_image(rel).is_some() {
            continue;
        }
        // Parents: each must be a directory in the image or absent from it.
        let mut parent = String::new();
        for comp in Path::new(rel)
            .parent()
            .into_iter()
            .flat_map(Path::components)
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(&comp.as_os_str().to_string_lossy());
            let dir = tmp.join(&parent);
            if dir.is_dir() {
                continue;
            }
            match in_image(&parent) {
                Some(m) if !m.is_dir() => continue 'entries,
                image => {
                    fs::create_dir(&dir).map_err(io("create", &dir))?;
                    dirs.push((dir, image));
                }
            }
        }
        let path = tmp.join(rel);
        match kind {
            InitEntry::Dir => {
                fs::create_dir(&path).map_err(io("create", &path))?;
                dirs.push((path, None));
            }
            InitEntry::File => {
                fs::File::create(&path).map_err(io("create", &path))?;
                fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .map_err(io("chmod", &path))?;
            }
            InitEntry::Link(target) => {
                std::os::unix::fs::symlink(target, &path).map_err(io("create", &path))?;
            }
        }
    }
    // Deepest first: setting a directory's times does not touch its parent's.
    dirs.sort_by_key(|(d, _)| std::cmp::Reverse(d.components().count()));
    for (dir, image) in &dirs {
        copy_dir_attrs(dir, image.as_ref()).map_err(io("set up", dir))?;
    }
    Ok(())
}

/// Gives a directory of the init layer the attributes of the image's directory at the same
/// path (mode, owner, times), or 0755 root's when the image has none.
fn copy_dir_attrs(dir: &Path, image: Option<&fs::Metadata>) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(m) = image else {
        return fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    };
    std::os::unix::fs::chown(dir, Some(m.uid()), Some(m.gid()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(m.mode() & 0o7777))?;
    let ts = |sec: i64, nsec: i64| rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts(m.atime(), m.atime_nsec()),
        last_modification: ts(m.mtime(), m.mtime_nsec()),
    };
    rustix::fs::utimensat(CWD, dir, &times, rustix::fs::AtFlags::empty())?;
    Ok(())
}

/// Mounts an overlay of `lowers` (top first) under `upper` (with its `work` dir) on
/// `target`: the new mount API, or mount(2) where that is missing.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    upper_kind: Upper,
) -> Result<(), ImageError> {
    if upper_kind == Upper::Volatile {
        // A volatile upper mounted before (a container started again, or opened for `cp`
        // after its exit) carries the kernel's mark; its contents are disposable by
        // definition, so the mark goes rather than the mount failing.
        let mark = work.join(VOLATILE_MARK);
        match fs::remove_dir_all(&mark) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io(format!("remove {}", mark.display()))(e)),
        }
    }
    match mount_overlay_fsopen(lowers, upper, work, target, upper_kind) {
        Ok(()) => Ok(()),
        Err(e @ (Errno::INVAL | Errno::NOSYS | Errno::NODEV)) => {
            tracing::debug!(error = %e, "new mount API failed, trying mount(2)");
            let data = legacy_mount_data(lowers, upper, work, upper_kind)?;
            let mounted = match mount_legacy(&data, target) {
                // A kernel without `volatile` (before 5.10) refuses the option.
                Err(Errno::INVAL) if upper_kind == Upper::Volatile => {
                    let data = legacy_mount_data(lowers, upper, work, Upper::Durable)?;
                    mount_legacy(&data, target)
                }
                other => other,
            };
            mounted.map_err(|e| mount_err(target, e))
        }
        Err(e) => Err(mount_err(target, e)),
    }
}

fn mount_err(target: &Path, e: Errno) -> ImageError {
    ImageError::errno(format!("mount overlay on {}", target.display()))(e)
}

/// `fsopen("overlay")` with one `lowerdir+` per layer: no limit on the number of layers and
/// no escaping of `:` or `,` in paths.
fn mount_overlay_fsopen(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    upper_kind: Upper,
) -> Result<(), Errno> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for l in lowers {
        rustix::mount::fsconfig_set_string(&fs, "lowerdir+", l.as_path())?;
    }
    rustix::mount::fsconfig_set_string(&fs, "upperdir", upper)?;
    rustix::mount::fsconfig_set_string(&fs, "workdir", work)?;
    // The upper directory must hold whole files and plain directories for `commit` and
    // `diff` to read it (no metadata-only copies, no renamed-directory redirects), whatever
    // the kernel's defaults are; a kernel without one of these options has it off anyway.
    for (key, value) in [
        ("redirect_dir", "off"),
        ("metacopy", "off"),
        ("index", "off"),
    ] {
        let _ = rustix::mount::fsconfig_set_string(&fs, key, value);
    }
    if upper_kind == Upper::Volatile {
        // Refused by kernels before 5.10: the mount is then simply durable.
        let _ = rustix::mount::fsconfig_set_flag(&fs, "volatile");
    }
    rustix::mount::fsconfig_create(&fs)?;
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
    rustix::mount::move_mount(
        &mnt,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

/// The data of a `mount(2)` with `lowerdir=a:b,...`, for kernels without `lowerdir+`.
fn legacy_mount_data(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    upper_kind: Upper,
) -> Result<std::ffi::CString, ImageError> {
    let mut parts = Vec::new();
    for p in lowers.iter().map(PathBuf::as_path).chain([upper, work]) {
        let s = p.to_str().filter(|s| !s.contains([':', ',']));
        let s = s.ok_or_else(|| {
            ImageError::InvalidArgument(format!(
                "overlay path {} cannot be passed to mount(2)",
                p.display()
            ))
        })?;
        parts.push(s);
    }
    let (dirs, rest) = parts.split_at(lowers.len());
    let volatile = if upper_kind == Upper::Volatile {
        ",volatile"
    } else {
        ""
    };
    let data = format!(
        "lowerdir={},upperdir={},workdir={}{volatile}",
        dirs.join(":"),
        rest[0],
        rest[1]
    );
    // The kernel copies at most one page of mount data.
    if data.len() >= 4096 {
        return Err(ImageError::InvalidArgument(format!(
            "too many layers ({}) for mount(2) on this kernel",
            lowers.len()
        )));
    }
    std::ffi::CString::new(data)
        .map_err(|_| ImageError::InvalidArgument("overlay paths contain a NUL byte".into()))
}

fn mount_legacy(data: &std::ffi::CStr, target: &Path) -> Result<(), Errno> {
    rustix::mount::mount("overlay", target, "overlay", MountFlags::empty(), data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        assert_eq!(chain_id(None, &a), a);
        let ab = chain_id(Some(&a), &b);
        let expected = crate::content::sha256_digest(format!("{a} {b}").as_bytes());
        assert_eq!(ab, expected);
        assert_eq!(chain_ids(&[a.clone(), b.clone()]), vec![a, ab]);
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn temp_snapshots_commit_or_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::open(&dir.path().join("snapshots")).unwrap();
        let id = format!("sha256:{}", "c".repeat(64));
        let t = s.prepare().unwrap();
        fs::write(t.fs().join("f"), b"1").unwrap();
        s.commit(t, &id).unwrap();
        assert!(s.exists(&id));
        assert_eq!(s.list().unwrap(), vec![id.clone()]);
        // A second copy of the same chain id is discarded; the first stays.
        let t = s.prepare().unwrap();
        fs::write(t.fs().join("f"), b"2").unwrap();
        s.commit(t, &id).unwrap();
        assert_eq!(fs::read(s.layer_dir(&id).unwrap().join("f")).unwrap(), b"1");
        // Dropped uncommitted: gone. Left behind by a crash: removed on open.
        drop(s.prepare().unwrap());
        std::mem::forget(s.prepare().unwrap());
        let s = Snapshotter::open(&dir.path().join("snapshots")).unwrap();
        assert_eq!(s.entries().unwrap().len(), 1);
        s.remove(&id).unwrap();
        assert!(!s.exists(&id));
        assert!(
            s.mount_container("../x", &[], dir.path(), Upper::Durable, true)
                .is_err()
        );
    }

    #[test]
    fn init_layer_adds_what_the_image_lacks_with_the_images_attributes() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let (plain, with_mtab, etc_link) = (
            dir.path().join("plain"),
            dir.path().join("with-mtab"),
            dir.path().join("etc-link"),
        );
        fs::create_dir_all(plain.join("etc")).unwrap();
        fs::create_dir_all(plain.join("tmp")).unwrap();
        fs::set_permissions(plain.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::chown(plain.join("etc"), Some(7), Some(8)).unwrap();
        fs::write(plain.join("etc/hosts"), b"image's").unwrap();
        // An old mtime, so one the layer's own writes gave could not pass for it.
        let old = rustix::fs::Timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            CWD,
            plain.join("etc"),
            &rustix::fs::Timestamps {
                last_access: old,
                last_modification: old,
            },
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
        fs::create_dir_all(with_mtab.join("etc")).unwrap();
        fs::write(with_mtab.join("etc/mtab"), b"").unwrap();
        fs::create_dir_all(&etc_link).unwrap();
        std::os::unix::fs::symlink("/elsewhere", etc_link.join("etc")).unwrap();
        for (name, lowers, mtab) in [
            ("a", vec![plain.clone()], true),
            ("b", vec![plain.clone(), with_mtab.clone()], false),
            ("c", vec![etc_link.clone(), plain.clone()], false),
            ("d", vec![], true),
        ] {
            let base = dir.path().join(name);
            fs::create_dir_all(&base).unwrap();
            let init = init_layer(&base, &lowers).unwrap();
            let env = fs::metadata(init.join(".dockerenv")).unwrap();
            assert_eq!(env.len(), 0);
            assert_eq!(env.permissions().mode() & 0o777, 0o755);
            assert_eq!(
                fs::read_link(init.join("etc/mtab")).ok(),
                mtab.then(|| PathBuf::from("/proc/mounts")),
                "{name}"
            );
            for d in ["dev/pts", "dev/shm", "proc", "sys"] {
                assert!(init.join(d).is_dir(), "{name}: {d}");
            }
            assert!(init.join("dev/console").is_file(), "{name}");
            // Made once: a second call finds it whole.
            assert_eq!(init_layer(&base, &lowers).unwrap(), init);
            let left: Vec<_> = fs::read_dir(&base)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(left, ["init"], "{name}: no temporary left");
        }
        // What the image has stays the image's; a parent the image has keeps its attributes.
        let a = dir.path().join("a/init");
        assert!(!a.join("etc/hosts").exists());
        assert!(a.join("etc/hostname").is_file());
        let etc = fs::metadata(a.join("etc")).unwrap();
        assert_eq!(
            (etc.permissions().mode() & 0o7777, etc.uid(), etc.gid()),
            (0o750, 7, 8)
        );
        assert_eq!(etc.mtime(), 1_000_000_000);
        // Behind a symlinked /etc, nothing under etc/ is made.
        assert!(!dir.path().join("c/init/etc").exists());
    }
}
