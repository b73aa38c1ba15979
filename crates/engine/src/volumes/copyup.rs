//! Copy-up: a new, empty volume mounted over a directory that holds image content is first
//! filled with that content, as Docker does (unless `nocopy`).
//!
//! The image side is opened inside the container's root by the kernel (`RESOLVE_IN_ROOT`, so
//! a symlink at the destination resolves as the container would see it and never to the
//! host), and both trees are then walked only through directory descriptors with
//! `O_NOFOLLOW`: symlinks are copied as symlinks, never followed, on either side. Owners,
//! modes, times, extended attributes, device nodes, fifos and hard links are kept.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dev, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};

/// Deeper trees are refused rather than walked (each level holds two descriptors).
const MAX_DEPTH: usize = 256;

fn ctx(what: &str, name: &Path, e: impl Into<io::Error>) -> io::Error {
    let e: io::Error = e.into();
    io::Error::new(e.kind(), format!("{what} {}: {e}", name.display()))
}

/// Opens `path` (absolute, as in the container) as a directory inside `root`; `None` when it
/// does not exist or is not a directory (nothing to copy).
pub fn open_in_root(root: &Path, path: &str) -> io::Result<Option<OwnedFd>> {
    let rootfd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    match rustix::fs::openat2(
        &rootfd,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Ok(None),
        Err(e) => Err(ctx("open", Path::new(path), e)),
    }
}

/// Whether the directory holds nothing.
pub fn is_empty_dir(dir: BorrowedFd<'_>) -> io::Result<bool> {
    let mut d = rustix::fs::Dir::read_from(dir)?;
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies the tree under `src` into `dst` (an empty directory), then gives `dst` the owner
/// and mode of `src`.
pub fn copy_tree(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    let mut c = Copier {
        links: HashMap::new(),
        dst_root: dst,
    };
    c.dir(src, dst, &PathBuf::new(), 0)?;
    let st = rustix::fs::fstat(src)?;
    rustix::fs::fchown(
        dst,
        Some(rustix::process::Uid::from_raw(st.st_uid)),
        Some(rustix::process::Gid::from_raw(st.st_gid)),
    )?;
    rustix::fs::fchmod(dst, Mode::from_raw_mode(st.st_mode))?;
    Ok(())
}

struct Copier<'a> {
    /// (dev, ino) of a file with several links -> where its first copy went (relative).
    links: HashMap<(u64, u64), PathBuf>,
    dst_root: BorrowedFd<'a>,
}

fn names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut d = rustix::fs::Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_owned());
        }
    }
    Ok(out)
}

impl Copier<'_> {
    fn dir(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        rel: &Path,
        depth: usize,
    ) -> io::Result<()> {
        if depth > MAX_DEPTH {
            return Err(io::Error::other(format!(
                "{}: deeper than {MAX_DEPTH} directories",
                rel.display()
            )));
        }
        for name in names(src)? {
            let path = rel.join(&name);
            self.entry(src, dst, &name, &path, depth)
                .map_err(|e| ctx("copy", &path, e))?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &OsStr,
        rel: &Path,
        depth: usize,
    ) -> io::Result<()> {
        let st = rustix::fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let kind = FileType::from_raw_mode(st.st_mode);
        let perm = Mode::from_raw_mode(st.st_mode & 0o7777);
        let key = (st.st_dev, st.st_ino);
        if kind != FileType::Directory && st.st_nlink > 1 {
            if let Some(first) = self.links.get(&key) {
                return self.link(first, dst, name);
            }
        }
        match kind {
            FileType::Directory => {
                match rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let s = rustix::fs::openat(src, name, flags, Mode::empty())?;
                let d = rustix::fs::openat(dst, name, flags, Mode::empty())?;
                self.dir(s.as_fd(), d.as_fd(), rel, depth + 1)?;
                owner_mode(d.as_fd(), &st, perm)?;
                copy_xattrs(s.as_fd(), d.as_fd());
            }
            FileType::RegularFile => {
                let s = rustix::fs::openat(
                    src,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let d = rustix::fs::openat(
                    dst,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                let mut from = std::fs::File::from(s);
                let mut to = std::fs::File::from(d);
                io::copy(&mut from, &mut to)?;
                owner_mode(to.as_fd(), &st, perm)?;
                copy_xattrs(from.as_fd(), to.as_fd());
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(src, name, Vec::new())?;
                rustix::fs::symlinkat(target.as_c_str(), dst, name)?;
                rustix::fs::chownat(
                    dst,
                    name,
                    Some(rustix::process::Uid::from_raw(st.st_uid)),
                    Some(rustix::process::Gid::from_raw(st.st_gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                rustix::fs::mknodat(dst, name, kind, perm, st.st_rdev as Dev)?;
                rustix::fs::chownat(
                    dst,
                    name,
                    Some(rustix::process::Uid::from_raw(st.st_uid)),
                    Some(rustix::process::Gid::from_raw(st.st_gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
                rustix::fs::chmodat(dst, name, perm, AtFlags::empty())?;
            }
            // Sockets and unknown kinds mean nothing in a copy.
            _ => return Ok(()),
        }
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: st.st_atime as _,
                tv_nsec: st.st_atime_nsec as _,
            },
            last_modification: Timespec {
                tv_sec: st.st_mtime as _,
                tv_nsec: st.st_mtime_nsec as _,
            },
        };
        let _ = rustix::fs::utimensat(dst, name, &times, AtFlags::SYMLINK_NOFOLLOW);
        if kind != FileType::Directory && st.st_nlink > 1 {
            self.links.insert(key, rel.to_owned());
        }
        Ok(())
    }

    /// Makes `name` in `dst` another link to the copy at `first` (relative to the root).
    fn link(&self, first: &Path, dst: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        let parent = first.parent().unwrap_or(Path::new(""));
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let base = first.file_name().unwrap_or_default();
        let pfd = rustix::fs::openat2(
            self.dst_root,
            parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )?;
        rustix::fs::linkat(&pfd, base, dst, name, AtFlags::empty())?;
        Ok(())
    }
}

/// Sets owner, then mode (a chown clears set-id bits, so the mode goes second).
fn owner_mode(fd: BorrowedFd<'_>, st: &rustix::fs::Stat, perm: Mode) -> io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(rustix::process::Uid::from_raw(st.st_uid)),
        Some(rustix::process::Gid::from_raw(st.st_gid)),
    )?;
    rustix::fs::fchmod(fd, perm)?;
    Ok(())
}

/// Copies extended attributes (file capabilities among them) where the kernel allows.
fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) {
    let mut list = vec![0u8; 4096];
    let Ok(n) = rustix::fs::flistxattr(src, &mut list) else {
        return;
    };
    for key in list[..n].split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let Ok(key) = CString::new(key) else { continue };
        let mut val = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::fgetxattr(src, key.as_c_str(), &mut val) {
            let _ = rustix::fs::fsetxattr(
                dst,
                key.as_c_str(),
                &val[..len],
                rustix::fs::XattrFlags::empty(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn dirfd(p: &Path) -> OwnedFd {
        rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    #[test]
    fn copies_content_modes_links_and_keeps_symlinks_as_links() {
        let root = tempfile::tempdir().unwrap();
        let img = root.path().join("rootfs");
        let data = img.join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("f"), b"hello").unwrap();
        std::fs::set_permissions(data.join("f"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::hard_link(data.join("f"), data.join("sub/f2")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", data.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", data.join("up")).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let vol = root.path().join("vol");
        std::fs::create_dir(&vol).unwrap();

        let src = open_in_root(&img, "/data").unwrap().unwrap();
        let dst = dirfd(&vol);
        assert!(is_empty_dir(dst.as_fd()).unwrap());
        copy_tree(src.as_fd(), dst.as_fd()).unwrap();

        assert_eq!(std::fs::read(vol.join("f")).unwrap(), b"hello");
        let md = std::fs::metadata(vol.join("f")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o640);
        assert_eq!(
            md.ino(),
            std::fs::metadata(vol.join("sub/f2")).unwrap().ino(),
            "hard link kept"
        );
        assert_eq!(
            std::fs::read_link(vol.join("abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(
            std::fs::symlink_metadata(vol.join("up"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            std::fs::metadata(&vol).unwrap().mode() & 0o7777,
            0o1777,
            "the volume root takes the image directory's mode"
        );
        assert!(!is_empty_dir(dst.as_fd()).unwrap());
    }

    #[test]
    fn destination_symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let img = root.path().join("rootfs");
        std::fs::create_dir_all(img.join("etc")).unwrap();
        std::fs::write(img.join("etc/inside"), b"in").unwrap();
        // /data -> /etc must mean the image's /etc, not the host's.
        std::os::unix::fs::symlink("/etc", img.join("data")).unwrap();
        let src = open_in_root(&img, "/data").unwrap().unwrap();
        assert_eq!(names(src.as_fd()).unwrap(), vec![OsString::from("inside")]);
        // Escapes by .. stay in the root too.
        std::os::unix::fs::symlink("../../../../../", img.join("up")).unwrap();
        let src = open_in_root(&img, "/up/etc").unwrap().unwrap();
        assert_eq!(names(src.as_fd()).unwrap(), vec![OsString::from("inside")]);
        assert!(open_in_root(&img, "/missing").unwrap().is_none());
        assert!(open_in_root(&img, "/etc/inside").unwrap().is_none());
    }
}
