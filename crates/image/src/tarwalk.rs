//! Writing a directory tree as a tar stream through file descriptors: `docker cp` and
//! `export` archive a container's files with it, and `commit` (and builds) turn a container's
//! overlay upper directory into a layer, translating overlayfs whiteouts into the layer
//! format's `.wh.` entries.
//!
//! The tree may be a running container's: every entry is opened from its parent's fd with
//! `O_NOFOLLOW`, regular files are read through a reopened `O_PATH` fd and checked to be the
//! same inode that was listed, so a symlink swapped in during the walk never leads outside.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Stat};

use crate::apply::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};

/// Deeper trees are refused rather than walked (each level holds fds and a stack frame).
pub const MAX_DEPTH: usize = 128;

/// Extended attributes carried into layers (as PAX `SCHILY.xattr.*` records).
const KEPT_XATTRS: &[&str] = &["security.capability"];

/// Reopens an `O_PATH` fd for reading (a file's content or a directory's entries). The fd
/// names a file or directory, never a symlink: the magic link /proc/self/fd/N is that very
/// inode, whatever its path is now.
pub fn reopen(fd: BorrowedFd<'_>, flags: OFlags) -> io::Result<OwnedFd> {
    let p = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&fd));
    Ok(rustix::fs::open(
        p.as_str(),
        flags | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Decides, for an entry of the tree (its path relative to the walk's top and its stat),
/// whether to leave it out.
pub type Skip = Box<dyn Fn(&Path, &Stat) -> bool + Send>;

/// Writes trees as tar entries.
pub struct TreeWriter<W: Write> {
    tar: tar::Builder<W>,
    /// (dev, inode) of files with several links already written, for hard link entries.
    seen: HashMap<(u64, u64), PathBuf>,
    /// Directories open above the current one.
    depth: usize,
    /// Read the tree as an overlay upper directory: 0:0 character devices are whiteouts and
    /// `trusted.overlay.opaque=y` marks an opaque directory.
    overlay_upper: bool,
    skip: Option<Skip>,
}

impl<W: Write> TreeWriter<W> {
    /// A writer of plain trees (`docker cp`, `export`).
    pub fn new(out: W) -> Self {
        let mut tar = tar::Builder::new(out);
        tar.follow_symlinks(false);
        Self {
            tar,
            seen: HashMap::new(),
            depth: 0,
            overlay_upper: false,
            skip: None,
        }
    }

    /// A writer of layers from an overlay upper directory; `skip` leaves out entries (the
    /// runtime's mount points, say).
    pub fn for_layer(out: W, skip: Skip) -> Self {
        let mut w = Self::new(out);
        w.overlay_upper = true;
        w.skip = Some(skip);
        w
    }

    /// Finishes the archive and returns the writer.
    pub fn finish(self) -> io::Result<W> {
        self.tar.into_inner()
    }

    fn header(st: &Stat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        // With the file-type bits, as moby's archives carry them (`fillGo18FileTypeBits`):
        // a regular file's mode reads 0o100644 to tools that look.
        h.set_mode(st.st_mode & (libc::S_IFMT | 0o7777));
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        h
    }

    /// Adds what the directory `fd` holds, named under `name` (`""`: at the archive's top).
    pub fn add_children(&mut self, fd: &OwnedFd, name: &Path) -> io::Result<()> {
        if self.depth >= MAX_DEPTH {
            return Err(io::Error::other(format!(
                "{} is more than {MAX_DEPTH} directories deep",
                name.display()
            )));
        }
        // The kernel's own trees (/proc, /sys) are not the container's files: their
        // directory entries are archived, not their content.
        if let Ok(fs) = rustix::fs::fstatfs(fd) {
            if matches!(fs.f_type, libc::PROC_SUPER_MAGIC | libc::SYSFS_MAGIC) {
                return Ok(());
            }
        }
        self.depth += 1;
        let r = self.add_children_inner(fd, name);
        self.depth -= 1;
        r
    }

    fn add_children_inner(&mut self, fd: &OwnedFd, name: &Path) -> io::Result<()> {
        let dir = reopen(fd.as_fd(), OFlags::RDONLY | OFlags::DIRECTORY)?;
        let mut names: Vec<OsString> = Vec::new();
        for e in rustix::fs::Dir::read_from(&dir)? {
            let e = e?;
            let n = OsStr::from_bytes(e.file_name().to_bytes());
            if n != "." && n != ".." {
                names.push(n.to_owned());
            }
        }
        names.sort();
        for n in names {
            // A single name from the directory itself, never followed.
            let child = match rustix::fs::openat(
                &dir,
                n.as_os_str(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(c) => c,
                // Gone since the listing.
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            let cst = rustix::fs::fstat(&child)?;
            self.add(&child, &cst, &name.join(&n))?;
        }
        Ok(())
    }

    /// Adds one entry (and, for a directory, everything below it) under `name`.
    pub fn add(&mut self, fd: &OwnedFd, st: &Stat, name: &Path) -> io::Result<()> {
        if self.skip.as_ref().is_some_and(|s| s(name, st)) {
            return Ok(());
        }
        let ft = FileType::from_raw_mode(st.st_mode);
        if self.overlay_upper && ft == FileType::CharacterDevice && st.st_rdev == 0 {
            // An overlay whiteout: the layer format's `.wh.<name>`.
            let base = name.file_name().unwrap_or_default();
            let mut wh = OsString::from(OsStr::from_bytes(WHITEOUT_PREFIX));
            wh.push(base);
            let mut h = Self::header(st, tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            return self
                .tar
                .append_data(&mut h, name.with_file_name(wh), io::empty());
        }
        match ft {
            FileType::Directory => {
                let mut h = Self::header(st, tar::EntryType::Directory);
                self.append_xattrs(fd)?;
                // `dir/`, as Docker's archives name directories (tar keeps the slash).
                let mut dir_name = name.as_os_str().to_owned();
                dir_name.push("/");
                self.put(&mut h, Path::new(&dir_name), io::empty())?;
                if self.overlay_upper && is_opaque(fd) {
                    let mut h = Self::header(st, tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_uid(0);
                    h.set_gid(0);
                    let opq = name.join(OsStr::from_bytes(OPAQUE_WHITEOUT));
                    self.tar.append_data(&mut h, opq, io::empty())?;
                }
                self.add_children(fd, name)
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.seen.get(&key) {
                        let mut h = Self::header(st, tar::EntryType::Link);
                        let first = first.clone();
                        return self.put_link(&mut h, name, first.as_os_str());
                    }
                    self.seen.insert(key, name.to_owned());
                }
                let file = std::fs::File::from(reopen(fd.as_fd(), OFlags::RDONLY)?);
                let now = rustix::fs::fstat(&file)?;
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
                    return Err(io::Error::other(format!(
                        "{} changed during the copy",
                        name.display()
                    )));
                }
                let size = now.st_size.max(0) as u64;
                let mut h = Self::header(&now, tar::EntryType::Regular);
                h.set_size(size);
                self.append_xattrs(&file)?;
                // Exactly `size` bytes, even if the file changes meanwhile.
                let body = file.take(size).chain(io::repeat(0).take(size));
                self.put(&mut h, name, body.take(size))
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(fd, "", Vec::new())?;
                let mut h = Self::header(st, tar::EntryType::Symlink);
                self.put_link(&mut h, name, OsStr::from_bytes(target.as_bytes()))
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                let kind = match ft {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = Self::header(st, kind);
                h.set_device_major(rustix::fs::major(st.st_rdev))?;
                h.set_device_minor(rustix::fs::minor(st.st_rdev))?;
                self.put(&mut h, name, io::empty())
            }
            // Sockets and the like have no place in an archive.
            _ => Ok(()),
        }
    }

    /// Appends an entry named `name`. Names under a `.` root (`docker cp c:/dir/. -`) keep
    /// their leading `./`, as Docker's archives do and the docker CLI's rebasing expects; the
    /// tar crate would drop it, so such names are written into the header directly (a GNU
    /// long-name entry first when they do not fit).
    fn put(&mut self, h: &mut tar::Header, name: &Path, body: impl io::Read) -> io::Result<()> {
        let bytes = name.as_os_str().as_bytes();
        if !(bytes.starts_with(b"./") && bytes.len() > 2) {
            return self.tar.append_data(h, name, body);
        }
        self.raw_name(h, bytes)?;
        self.tar.append(h, body)
    }

    /// [`Self::put`] for links: `target` is the link's target (a hard link's first name).
    fn put_link(&mut self, h: &mut tar::Header, name: &Path, target: &OsStr) -> io::Result<()> {
        let bytes = name.as_os_str().as_bytes();
        if !(bytes.starts_with(b"./") && bytes.len() > 2) || h.set_link_name(target).is_err() {
            return self.tar.append_link(h, name, target);
        }
        self.raw_name(h, bytes)?;
        self.tar.append(h, io::empty())
    }

    /// Writes `bytes` as the header's name, with a GNU long-name entry before it when they do
    /// not fit the 100-byte field; sets the checksum.
    fn raw_name(&mut self, h: &mut tar::Header, bytes: &[u8]) -> io::Result<()> {
        if bytes.contains(&0) {
            return Err(io::Error::other("a NUL byte in an archive name"));
        }
        let field = &mut h.as_old_mut().name;
        if bytes.len() > field.len() {
            let mut long = tar::Header::new_gnu();
            let tag = b"././@LongLink";
            long.as_old_mut().name[..tag.len()].copy_from_slice(tag);
            long.set_entry_type(tar::EntryType::GNULongName);
            long.set_mode(0o644);
            long.set_size(bytes.len() as u64 + 1);
            long.set_cksum();
            let mut data = bytes.to_vec();
            data.push(0);
            self.tar.append(&long, &data[..])?;
        }
        let field = &mut h.as_old_mut().name;
        let n = bytes.len().min(field.len());
        field.fill(0);
        field[..n].copy_from_slice(&bytes[..n]);
        h.set_cksum();
        Ok(())
    }

    /// Layers keep file capabilities (`ping` needs its `cap_net_raw`); plain archives do not
    /// carry xattrs, as Docker's `cp` does not.
    fn append_xattrs(&mut self, fd: impl AsFd) -> io::Result<()> {
        if !self.overlay_upper {
            return Ok(());
        }
        let mut records: Vec<(String, Vec<u8>)> = Vec::new();
        for name in KEPT_XATTRS {
            let mut buf = vec![0u8; 4096];
            // An O_PATH fd cannot read xattrs; a plain one (regular files) can. Directories
            // come here as O_PATH, read through a reopen.
            let got = rustix::fs::fgetxattr(&fd, *name, &mut buf).or_else(|_| {
                reopen(fd.as_fd(), OFlags::RDONLY)
                    .map_err(|_| rustix::io::Errno::BADF)
                    .and_then(|f| rustix::fs::fgetxattr(&f, *name, &mut buf))
            });
            if let Ok(n) = got {
                buf.truncate(n);
                records.push((format!("SCHILY.xattr.{name}"), buf));
            }
        }
        if !records.is_empty() {
            self.tar
                .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        Ok(())
    }
}

/// Whether an overlay upper directory is opaque (hides the layers below it).
pub fn is_opaque(dir: impl AsFd) -> bool {
    let mut buf = [0u8; 4];
    let read = |fd: BorrowedFd<'_>, buf: &mut [u8]| {
        rustix::fs::fgetxattr(fd, "trusted.overlay.opaque", buf)
    };
    let got = read(dir.as_fd(), &mut buf).or_else(|_| {
        reopen(dir.as_fd(), OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|_| rustix::io::Errno::BADF)
            .and_then(|f| read(f.as_fd(), &mut buf))
    });
    matches!(got, Ok(1) if buf[0] == b'y')
}
