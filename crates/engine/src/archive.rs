//! `docker cp`: paths inside a container, read as tar archives and written from them
//! (`GET`/`HEAD`/`PUT /containers/{id}/archive`).
//!
//! A running container is reached through `/proc/<pid>/root`, so the copy sees what the
//! container sees (its bind mounts included); a stopped one through its root filesystem,
//! mounted for the copy under the container's operation lock. Every path is resolved by the
//! kernel inside that root (`openat2` with `RESOLVE_IN_ROOT`, exactly as the container would
//! resolve it), and trees are walked and written through directory fds with `O_NOFOLLOW`: no
//! symlink, not even one the container swaps in during the copy, leads outside its root.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps};
use serde::Serialize;
use tokio::sync::mpsc;

use berth_image::tarwalk::TreeWriter;

use crate::error::{EngineError, Result};
use crate::{ContainerHandle, Engine, Status};

/// What `HEAD` answers (and `GET` sends too), in Docker's `X-Docker-Container-Path-Stat`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode` bits, which Docker's clients decode.
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// Options of `PUT /containers/{id}/archive`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PutOptions {
    /// Refuse to replace a directory with a non-directory or the other way round.
    pub no_overwrite_dir_non_dir: bool,
    /// `docker cp -a`: files belong to the container's user (`Config.User`) when it has
    /// one. Either way, without such a user the archive's owners are kept, as moby does
    /// (the docker CLI's own tar carries the host file's owners).
    pub copy_uid_gid: bool,
    /// With `copy_uid_gid`: the container user's uid and gid, filled by the engine.
    pub owner: Option<(u32, u32)>,
}

const GO_DIR: u32 = 1 << 31;
const GO_SYMLINK: u32 = 1 << 27;
const GO_DEVICE: u32 = 1 << 26;
const GO_PIPE: u32 = 1 << 25;
const GO_SOCKET: u32 = 1 << 24;
const GO_SETUID: u32 = 1 << 23;
const GO_SETGID: u32 = 1 << 22;
const GO_CHARDEV: u32 = 1 << 21;
const GO_STICKY: u32 = 1 << 20;

fn go_mode(st: &Stat) -> u32 {
    let m = st.st_mode;
    let mut out = m & 0o777;
    match FileType::from_raw_mode(m) {
        FileType::Directory => out |= GO_DIR,
        FileType::Symlink => out |= GO_SYMLINK,
        FileType::Fifo => out |= GO_PIPE,
        FileType::Socket => out |= GO_SOCKET,
        FileType::CharacterDevice => out |= GO_DEVICE | GO_CHARDEV,
        FileType::BlockDevice => out |= GO_DEVICE,
        _ => {}
    }
    if m & 0o4000 != 0 {
        out |= GO_SETUID;
    }
    if m & 0o2000 != 0 {
        out |= GO_SETGID;
    }
    if m & 0o1000 != 0 {
        out |= GO_STICKY;
    }
    out
}

fn not_found(path: &str, container: &str) -> EngineError {
    EngineError::NotFound(format!(
        "Could not find the file {path} in container {container}"
    ))
}

fn io_err(what: &str, path: &str) -> impl FnOnce(rustix::io::Errno) -> EngineError {
    let ctx = format!("{what} {path}");
    move |e| EngineError::io(ctx)(io::Error::from(e))
}

/// The name Docker gives the archive's top entry: the requested path's last element, `.` for
/// a path ending in `/.`, `/` for the root.
fn base_name(path: &str) -> String {
    if path.ends_with("/.") || path == "." {
        return ".".into();
    }
    match Path::new(path).file_name() {
        Some(n) => n.to_string_lossy().into_owned(),
        None => "/".into(),
    }
}

/// A container's root directory, held open.
pub(crate) struct Root {
    fd: OwnedFd,
    /// The container as the client named it, for messages.
    label: String,
}

/// A path resolved inside a [`Root`]: an `O_PATH` fd to it and the directory holding it.
struct Resolved {
    fd: OwnedFd,
    stat: Stat,
}

impl Root {
    fn open(dir: &Path, label: &str) -> io::Result<Root> {
        let fd = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            label: label.to_owned(),
        })
    }

    /// `path` inside the root, with the container's own resolution of symlinks (scoped to the
    /// root, magic links refused). The last element is not followed unless the path ends in
    /// `/` or `/.`, as Docker resolves it.
    fn resolve(&self, path: &str) -> Result<Resolved> {
        let rel = path.trim_start_matches('/');
        let follow_last = path.ends_with('/') || path.ends_with("/.") || rel.is_empty();
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let fd = if follow_last {
            let target = if rel.is_empty() { "." } else { rel };
            rustix::fs::openat2(
                &self.fd,
                target,
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
                how,
            )
        } else {
            let p = Path::new(rel);
            let parent = p.parent().map(|x| x.as_os_str()).filter(|x| !x.is_empty());
            let name = p.file_name().unwrap_or(OsStr::new("."));
            let dir = rustix::fs::openat2(
                &self.fd,
                parent.unwrap_or(OsStr::new(".")),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                how,
            );
            dir.and_then(|d| {
                rustix::fs::openat(
                    &d,
                    name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            })
        };
        let fd = fd.map_err(|e| match e {
            rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP => {
                not_found(path, &self.label)
            }
            e => io_err("resolve", path)(e),
        })?;
        let stat = rustix::fs::fstat(&fd).map_err(io_err("stat", path))?;
        Ok(Resolved { fd, stat })
    }

    fn stat(&self, path: &str) -> Result<PathStat> {
        let mut st = self.resolve(path)?.path_stat(path);
        if !st.link_target.is_empty() {
            st.link_target = self.final_target(path, &st.link_target);
        }
        Ok(st)
    }

    /// Where a symlink finally leads, as an absolute path in the root, as moby's `linkTarget`
    /// gives it (the docker CLI's `cp -L` copies from there): each link read in turn, a
    /// relative one against its own directory, at most 40.
    fn final_target(&self, path: &str, first: &str) -> String {
        let mut cur = join_clean(parent_of(path), first);
        for _ in 0..40 {
            let Ok(r) = self.resolve(&cur) else { break };
            if FileType::from_raw_mode(r.stat.st_mode) != FileType::Symlink {
                break;
            }
            let Ok(t) = rustix::fs::readlinkat(&r.fd, "", Vec::new()) else {
                break;
            };
            cur = join_clean(parent_of(&cur), &t.to_string_lossy());
        }
        cur
    }
}

/// The directory part of a container path (`/` for a top-level name).
fn parent_of(path: &str) -> &str {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((dir, _)) => dir,
    }
}

/// `target` taken from `dir` (unless absolute), cleaned lexically and kept under `/`.
fn join_clean(dir: &str, target: &str) -> String {
    let joined = if target.starts_with('/') {
        target.to_owned()
    } else {
        format!("{dir}/{target}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

impl Resolved {
    /// Docker's stat of the resolved `path`.
    fn path_stat(&self, path: &str) -> PathStat {
        let link_target = if FileType::from_raw_mode(self.stat.st_mode) == FileType::Symlink {
            rustix::fs::readlinkat(&self.fd, "", Vec::new())
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let mtime =
            chrono::DateTime::from_timestamp(self.stat.st_mtime, self.stat.st_mtime_nsec as u32)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        PathStat {
            name: base_name(path),
            size: self.stat.st_size,
            mode: go_mode(&self.stat),
            mtime,
            link_target,
        }
    }
}

/// Access and modification times both at `secs`.
fn times_at(secs: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Writes a tar stream to `tx`: `fill` adds the entries, then the archive is finished.
fn tar_to_channel(
    tx: mpsc::Sender<Bytes>,
    fill: impl FnOnce(&mut TreeWriter<ChannelWriter>) -> io::Result<()>,
) -> io::Result<()> {
    let mut walk = TreeWriter::new(ChannelWriter::new(tx));
    fill(&mut walk)?;
    walk.finish()?.flush()
}

/// Logs a failed archive, unless the client just went away.
fn warn_unless_gone(what: &str, r: std::result::Result<io::Result<()>, tokio::task::JoinError>) {
    match r {
        Ok(Err(e)) if e.kind() != io::ErrorKind::BrokenPipe => tracing::warn!("{what}: {e}"),
        Err(e) => tracing::warn!("{what}: {e}"),
        _ => {}
    }
}

/// A `Write` that hands 64 KiB chunks to an async receiver.
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub(crate) fn new(tx: mpsc::Sender<Bytes>) -> Self {
        Self {
            tx,
            buf: Vec::new(),
        }
    }

    fn push(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 * 1024 {
            self.push()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push()
    }
}

/// A `Read` over chunks arriving from an async sender.
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        Self {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// Splits an archive entry's path into its normal components; `None` for one that climbs
/// (`..`) — such an archive is refused, as Docker refuses it.
fn entry_components(p: &Path) -> Option<Vec<OsString>> {
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n.to_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// An archive path's last name and the directory holding it, under `dest`: `None` for a
/// path that climbs out, `Some(None)` for the destination itself.
fn under(dest: &Path, p: &Path) -> Option<Option<(OsString, PathBuf)>> {
    let comps = entry_components(p)?;
    let Some((name, parents)) = comps.split_last() else {
        return Some(None);
    };
    let dir: PathBuf = std::iter::once(dest.as_os_str().to_owned())
        .chain(parents.iter().cloned())
        .collect();
    Some(Some((name.clone(), dir)))
}

/// Creates a container's working directory in its root filesystem when it is missing, as
/// moby's `SetupWorkingDirectory` does at start (owned by root, mode 0755), resolving the path
/// the way the container would (symlinks stay inside the root).
pub(crate) fn make_working_dir(rootfs: &Path, dir: &str) -> Result<()> {
    let clean = crate::volumes::mounts::clean(dir);
    let root =
        Root::open(rootfs, "").map_err(EngineError::io(format!("open {}", rootfs.display())))?;
    match root.dir_at(Path::new(clean.trim_start_matches('/'))) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Err(EngineError::InvalidArgument(
            format!("Cannot mkdir: {dir} is not a directory"),
        )),
        Err(e) => Err(EngineError::io(format!(
            "create the working directory {dir}"
        ))(e)),
    }
}

impl Root {
    /// Opens (creating missing directories) the directory `rel` inside the root, resolving
    /// like the container would.
    fn dir_at(&self, rel: &Path) -> io::Result<OwnedFd> {
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        match rustix::fs::openat2(&self.fd, rel, flags, Mode::empty(), how) {
            Ok(fd) => return Ok(fd),
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel
            .file_name()
            .ok_or_else(|| io::Error::other("bad directory path"))?;
        let p = self.dir_at(parent)?;
        match rustix::fs::mkdirat(&p, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(rustix::fs::openat(
            &p,
            name,
            flags | OFlags::NOFOLLOW,
            Mode::empty(),
        )?)
    }

    /// Extracts `input` (a tar stream) into the directory `dest`.
    fn extract(&self, dest: &str, input: impl Read, opts: PutOptions) -> Result<()> {
        let dest_rel = PathBuf::from(dest.trim_start_matches('/'));
        let mut archive = tar::Archive::new(input);
        let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
        let bad = |m: String| EngineError::InvalidArgument(m);
        for entry in archive
            .entries()
            .map_err(|e| bad(format!("reading the archive: {e}")))?
        {
            let mut entry = entry.map_err(|e| bad(format!("reading the archive: {e}")))?;
            let path = entry
                .path()
                .map_err(|e| bad(format!("bad archive entry path: {e}")))?
                .into_owned();
            let Some((name, parent_rel)) = under(&dest_rel, &path).ok_or_else(|| {
                bad(format!(
                    "archive entry {} leaves the destination",
                    path.display()
                ))
            })?
            else {
                continue;
            };
            let name = &name;
            let ctx = |what: &str| format!("{what} {}", path.display());
            let parent = self
                .dir_at(&parent_rel)
                .map_err(|e| EngineError::io(ctx("create parent of"))(e))?;
            let h = entry.header().clone();
            let kind = h.entry_type();
            let mode = Mode::from_raw_mode(h.mode().unwrap_or(0o644) & 0o7777);
            let existing =
                rustix::fs::statat(&parent, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW).ok();
            if let Some(st) = &existing {
                let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                let want_dir = kind == tar::EntryType::Directory;
                if opts.no_overwrite_dir_non_dir && is_dir != want_dir {
                    return Err(bad(format!(
                        "cannot overwrite {} {} with a {}",
                        if is_dir { "directory" } else { "non-directory" },
                        path.display(),
                        if want_dir {
                            "directory"
                        } else {
                            "non-directory"
                        },
                    )));
                }
                if !(is_dir && want_dir) {
                    berth_image::apply::remove_all_at(parent.as_fd(), name)
                        .map_err(|e| EngineError::io(ctx("replace"))(e.into()))?;
                }
            }
            let io = |what: &'static str| {
                let c = ctx(what);
                move |e: rustix::io::Errno| EngineError::io(c)(io::Error::from(e))
            };
            match kind {
                tar::EntryType::Directory => {
                    if existing.is_none() {
                        rustix::fs::mkdirat(&parent, name.as_os_str(), mode)
                            .map_err(io("mkdir"))?;
                    }
                    let full: PathBuf = parent_rel.join(name);
                    dir_times.push((full, h.mtime().unwrap_or(0) as i64));
                }
                // A sparse entry reads back as its whole content.
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => {
                    let fd = rustix::fs::openat(
                        &parent,
                        name.as_os_str(),
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        mode,
                    )
                    .map_err(io("create"))?;
                    let mut f = std::fs::File::from(fd);
                    io::copy(&mut entry, &mut f).map_err(EngineError::io(ctx("write")))?;
                }
                tar::EntryType::Symlink => {
                    let target = h
                        .link_name()
                        .ok()
                        .flatten()
                        .ok_or_else(|| bad(ctx("symlink without a target:")))?;
                    rustix::fs::symlinkat(target.as_os_str(), &parent, name.as_os_str())
                        .map_err(io("symlink"))?;
                }
                tar::EntryType::Link => {
                    let target = h
                        .link_name()
                        .ok()
                        .flatten()
                        .ok_or_else(|| bad(ctx("hard link without a target:")))?;
                    let (tname, tparent_rel) = under(&dest_rel, &target)
                        .ok_or_else(|| {
                            bad(format!(
                                "hard link {} leaves the destination",
                                path.display()
                            ))
                        })?
                        .ok_or_else(|| bad(ctx("hard link to the destination itself:")))?;
                    let tparent = self
                        .dir_at(&tparent_rel)
                        .map_err(|e| EngineError::io(ctx("link"))(e))?;
                    rustix::fs::linkat(
                        &tparent,
                        tname.as_os_str(),
                        &parent,
                        name.as_os_str(),
                        AtFlags::empty(),
                    )
                    .map_err(io("link"))?;
                    continue;
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    let ft = match kind {
                        tar::EntryType::Char => FileType::CharacterDevice,
                        tar::EntryType::Block => FileType::BlockDevice,
                        _ => FileType::Fifo,
                    };
                    let dev = rustix::fs::makedev(
                        h.device_major().ok().flatten().unwrap_or(0),
                        h.device_minor().ok().flatten().unwrap_or(0),
                    );
                    rustix::fs::mknodat(&parent, name.as_os_str(), ft, mode, dev)
                        .map_err(io("mknod"))?;
                }
                // Extended headers are consumed by the tar reader; anything else is skipped.
                _ => continue,
            }
            let (uid, gid) = match opts.owner {
                Some(owner) if opts.copy_uid_gid => owner,
                _ => (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32),
            };
            let times = times_at(h.mtime().unwrap_or(0) as i64);
            let owner = (
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            );
            if kind == tar::EntryType::Symlink {
                rustix::fs::chownat(
                    &parent,
                    name.as_os_str(),
                    owner.0,
                    owner.1,
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(io("chown"))?;
                let _ = rustix::fs::utimensat(
                    &parent,
                    name.as_os_str(),
                    &times,
                    AtFlags::SYMLINK_NOFOLLOW,
                );
                continue;
            }
            // Owner, mode and times through an fd to the very node made above: a running
            // container swapping a symlink in its place never redirects them (chmod by path
            // would follow it, out of the container).
            let node = rustix::fs::openat(
                &parent,
                name.as_os_str(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io("open"))?;
            let st = rustix::fs::fstat(&node).map_err(io("stat"))?;
            let made = match kind {
                tar::EntryType::Directory => FileType::Directory,
                tar::EntryType::Char => FileType::CharacterDevice,
                tar::EntryType::Block => FileType::BlockDevice,
                tar::EntryType::Fifo => FileType::Fifo,
                _ => FileType::RegularFile,
            };
            if FileType::from_raw_mode(st.st_mode) != made {
                return Err(EngineError::Conflict(format!(
                    "{} changed during the copy",
                    path.display()
                )));
            }
            rustix::fs::chownat(&node, "", owner.0, owner.1, AtFlags::EMPTY_PATH)
                .map_err(io("chown"))?;
            // After chown, which clears set-id bits. The magic link names this inode, which
            // is not a symlink: nothing is followed.
            let by_fd = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&node));
            rustix::fs::chmod(by_fd.as_str(), mode).map_err(io("chmod"))?;
            let _ = rustix::fs::utimensat(&node, "", &times, AtFlags::EMPTY_PATH);
        }
        // Directory times last: adding entries changed them.
        for (rel, mtime) in dir_times.into_iter().rev() {
            if let Ok(fd) = self.dir_at(&rel) {
                let _ = rustix::fs::utimensat(&fd, "", &times_at(mtime), AtFlags::EMPTY_PATH);
            }
        }
        Ok(())
    }
}

/// A container's root held for one copy: through `/proc/<pid>/root` while it runs, or its
/// root filesystem mounted for the copy (and unmounted after) while it does not.
struct Access {
    root: Root,
    mounted: Option<PathBuf>,
    engine: Engine,
}

impl Drop for Access {
    fn drop(&mut self) {
        if let Some(target) = self.mounted.take() {
            if let Err(e) = self.engine.unmount_rootfs(&target) {
                tracing::warn!("unmount after copy {}: {e}", target.display());
            }
        }
    }
}

/// Opens `rel` inside `root` (resolved there), making it if missing: its directories, and
/// the last element as an empty file when `file`, else as a directory.
fn mount_point(root: &OwnedFd, rel: &str, file: bool) -> rustix::io::Result<OwnedFd> {
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let open =
        |p: &str| rustix::fs::openat2(root, p, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), how);
    if let Ok(fd) = open(rel) {
        return Ok(fd);
    }
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for (i, _) in parts.iter().enumerate() {
        let sub = parts[..=i].join("/");
        if open(&sub).is_ok() {
            continue;
        }
        let parent = if i == 0 {
            ".".to_owned()
        } else {
            parts[..i].join("/")
        };
        let dir = rustix::fs::openat2(
            root,
            parent.as_str(),
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            how,
        )?;
        if file && i + 1 == parts.len() {
            let created = rustix::fs::openat(
                &dir,
                parts[i],
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            );
            drop(created);
        } else {
            let _ = rustix::fs::mkdirat(&dir, parts[i], Mode::from_raw_mode(0o755));
        }
    }
    open(rel)
}

impl Engine {
    /// Opens the container's root. For a container that is not running the caller must hold
    /// its operation lock for as long as the result lives.
    fn open_root(&self, h: &ContainerHandle, key: &str) -> Result<Access> {
        self.open_root_as(h, key, true)
    }

    /// With `as_seen`, a running container's root as its processes see it (its mounts
    /// included); without, its root filesystem alone (what `export` archives).
    fn open_root_as(&self, h: &ContainerHandle, key: &str, as_seen: bool) -> Result<Access> {
        let rec = h.record();
        let running = matches!(rec.state.status, Status::Running | Status::Paused);
        if running && !as_seen {
            let target = self.container_dir(&rec.id).join("rootfs");
            return Ok(Access {
                root: Root::open(&target, key)
                    .map_err(EngineError::io(format!("open {}", target.display())))?,
                mounted: None,
                engine: self.clone(),
            });
        }
        if running && rec.state.pid > 0 {
            let stopped = || EngineError::Conflict(format!("container {} is not running", rec.id));
            // The process directory first: once open it stays that process's, even if the pid
            // is reused meanwhile (its `root` then fails instead of naming another process's).
            let proc_dir = rustix::fs::open(
                format!("/proc/{}", rec.state.pid).as_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|_| stopped())?;
            // And it must be the container's process: in its cgroup.
            let cgroup = rustix::fs::openat(
                &proc_dir,
                "cgroup",
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|_| stopped())?;
            let mut membership = String::new();
            std::fs::File::from(cgroup)
                .read_to_string(&mut membership)
                .map_err(|_| stopped())?;
            if !membership.contains(&rec.id) {
                return Err(stopped());
            }
            let fd = rustix::fs::openat(
                &proc_dir,
                "root",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|_| stopped())?;
            // Never the host's own root.
            let (ours, theirs) = (rustix::fs::stat("/"), rustix::fs::fstat(&fd));
            if let (Ok(a), Ok(b)) = (ours, theirs) {
                if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
                    return Err(stopped());
                }
            }
            return Ok(Access {
                root: Root {
                    fd,
                    label: key.to_owned(),
                },
                mounted: None,
                engine: self.clone(),
            });
        }
        let image = self.inner.images.get(&rec.image_id)?;
        let target = self.container_dir(&rec.id).join("rootfs");
        std::fs::create_dir_all(&target)
            .map_err(EngineError::io(format!("create {}", target.display())))?;
        self.mount_rootfs(&rec, &image, &target)?;
        let access = Access {
            root: Root::open(&target, key)
                .map_err(EngineError::io(format!("open {}", target.display())))?,
            mounted: Some(target.clone()),
            engine: self.clone(),
        };
        // Its volumes and binds where it has them, as dockerd mounts them for a copy: the
        // unmount of the root (detached, with what is under it) takes them away again.
        if as_seen {
            self.bind_mounts_into(&rec, &access.root)?;
            // A read-only container's root is read-only to a copy too (its volumes are not).
            if rec.host_config.readonly_rootfs {
                rustix::mount::mount_remount(
                    &target,
                    rustix::mount::MountFlags::BIND | rustix::mount::MountFlags::RDONLY,
                    "",
                )
                .map_err(|e| EngineError::Runtime(format!("read-only root for the copy: {e}")))?;
            }
        }
        Ok(access)
    }

    /// Binds a stopped container's volumes and bind sources at their destinations under
    /// `root` (read-only where the container has them so). Each destination is opened inside
    /// the root (its symlinks resolved there, never on the host) and mounted on through its
    /// descriptor; a destination the container never made is left alone. Volumes with mount
    /// options (their filesystem is mounted only while a container uses them) are skipped.
    fn bind_mounts_into(&self, rec: &crate::ContainerRecord, root: &Root) -> Result<()> {
        let mut mounts: Vec<&crate::volumes::mounts::MountPoint> = rec
            .mounts
            .iter()
            .filter(|m| !matches!(m.kind, crate::volumes::mounts::MountType::Tmpfs))
            .collect();
        // Outer destinations first, so that inner ones land on top of them.
        mounts.sort_by_key(|m| m.destination.matches('/').count());
        for m in mounts {
            let source = match m.kind {
                crate::volumes::mounts::MountType::Volume => match self.volume_inspect(&m.name) {
                    Ok(v) if v.options.is_empty() => self.volume_path(&m.name),
                    _ => continue,
                },
                _ => PathBuf::from(&m.source),
            };
            let rel = m.destination.trim_start_matches('/');
            if rel.is_empty() {
                continue;
            }
            // A container that never started has no mount points yet: made as its start
            // would make them (a directory, or a file for a file's bind).
            let file = std::fs::metadata(&source).is_ok_and(|md| !md.is_dir());
            let Ok(dest) = mount_point(&root.fd, rel, file) else {
                continue;
            };
            let target = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dest));
            rustix::mount::mount_bind_recursive(&source, target.as_str()).map_err(|e| {
                EngineError::Runtime(format!("mount {} for the copy: {e}", m.destination))
            })?;
            if !m.rw {
                rustix::mount::mount_remount(
                    target.as_str(),
                    rustix::mount::MountFlags::BIND | rustix::mount::MountFlags::RDONLY,
                    "",
                )
                .map_err(|e| {
                    EngineError::Runtime(format!("read-only {} for the copy: {e}", m.destination))
                })?;
            }
        }
        Ok(())
    }

    /// `HEAD /containers/{id}/archive`.
    pub async fn archive_stat(&self, key: &str, path: &str) -> Result<PathStat> {
        let h = self.resolve(key)?;
        let _op = h.op.lock().await;
        let access = self.open_root(&h, key)?;
        let path = path.to_owned();
        // Path resolution touches the container's filesystem: not on an async worker.
        tokio::task::spawn_blocking(move || access.root.stat(&path))
            .await
            .map_err(|e| EngineError::Runtime(format!("stat: {e}")))?
    }

    /// `GET /containers/{id}/archive`: the path's stat and its tar stream.
    pub async fn archive_get(
        &self,
        key: &str,
        path: &str,
    ) -> Result<(PathStat, mpsc::Receiver<Bytes>)> {
        let h = self.resolve(key)?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (tx, rx) = mpsc::channel(8);
        let engine = self.clone();
        let path = path.to_owned();
        let key = key.to_owned();
        tokio::spawn(async move {
            let h: Arc<ContainerHandle> = h;
            // Held until the archive is written: no start or removal under the copy.
            let _op = h.op.lock().await;
            let prepared = engine.open_root(&h, &key).and_then(|a| {
                let r = a.root.resolve(&path)?;
                let st = r.path_stat(&path);
                Ok((a, st, r))
            });
            let (access, st, resolved) = match prepared {
                Ok(p) => p,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            if ready_tx.send(Ok(st.clone())).is_err() {
                return;
            }
            // The root itself is archived as "." (tar refuses absolute names).
            let name = PathBuf::from(if st.name == "/" {
                "."
            } else {
                st.name.as_str()
            });
            let hold = tx.clone();
            let written = tokio::task::spawn_blocking(move || {
                tar_to_channel(tx, |w| w.add(&resolved.fd, &resolved.stat, &name))
            })
            .await;
            warn_unless_gone(&format!("archive of {path}"), written);
            // The stream ends once the root is released.
            drop(access);
            drop(hold);
        });
        let st = ready_rx
            .await
            .map_err(|_| EngineError::Runtime("archive task ended".into()))??;
        Ok((st, rx))
    }

    /// `GET /containers/{id}/export`: the container's root filesystem as a tar stream
    /// (without what is mounted over it).
    pub async fn export(&self, key: &str) -> Result<mpsc::Receiver<Bytes>> {
        let h = self.resolve(key)?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (tx, rx) = mpsc::channel(8);
        let engine = self.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            let h: Arc<ContainerHandle> = h;
            let _op = h.op.lock().await;
            let access = match engine.open_root_as(&h, &key, false) {
                Ok(a) => a,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            if ready_tx.send(Ok(())).is_err() {
                return;
            }
            // The stream ends only once the root is unmounted again: a client that saw the
            // end may rely on the container's state being as before.
            let hold = tx.clone();
            let written = tokio::task::spawn_blocking(move || {
                let r = tar_to_channel(tx, |w| w.add_children(&access.root.fd, Path::new("")));
                drop(access);
                drop(hold);
                r
            })
            .await;
            warn_unless_gone(&format!("export of {key}"), written);
        });
        ready_rx
            .await
            .map_err(|_| EngineError::Runtime("export task ended".into()))??;
        Ok(rx)
    }

    /// `PUT /containers/{id}/archive`: extracts a tar stream into the directory `path`.
    pub async fn archive_put(
        &self,
        key: &str,
        path: &str,
        opts: PutOptions,
        body: mpsc::Receiver<io::Result<Bytes>>,
    ) -> Result<()> {
        let h = self.resolve(key)?;
        let rec = h.record();
        // A read-only container still takes files into its writable volumes and binds.
        // (Where it really lands is the kernel's to enforce: the root is mounted read-only.)
        let into_writable_mount = rec.mounts.iter().any(|m| {
            m.rw && !matches!(m.kind, crate::volumes::mounts::MountType::Tmpfs)
                && Path::new(path).starts_with(&m.destination)
        });
        if rec.host_config.readonly_rootfs && !into_writable_mount {
            return Err(EngineError::InvalidArgument(
                "container rootfs is marked read-only".into(),
            ));
        }
        let _op = h.op.lock().await;
        let access = self.open_root(&h, key)?;
        let path = path.to_owned();
        let user = h.record().config.user;
        // Path resolution and extraction touch the container's filesystem: not on an async
        // worker.
        tokio::task::spawn_blocking(move || {
            // The destination is always followed: it is a directory, or a link to one. One
            // that is there but is something else is refused in moby's words (a trailing `/`
            // on a file reads as "not found" otherwise).
            let not_dir =
                || EngineError::InvalidArgument("extraction point is not a directory".into());
            let r = match access
                .root
                .resolve(&format!("{}/", path.trim_end_matches('/')))
            {
                Ok(r) => r,
                Err(e) => {
                    return Err(if access.root.resolve(&path).is_ok() {
                        not_dir()
                    } else {
                        e
                    });
                }
            };
            if FileType::from_raw_mode(r.stat.st_mode) != FileType::Directory {
                return Err(not_dir());
            }
            let mut opts = opts;
            if opts.copy_uid_gid && !user.is_empty() {
                // The user as the container's own passwd and group files name it, read
                // through the root opened above.
                let root = format!(
                    "/proc/self/fd/{}",
                    std::os::fd::AsRawFd::as_raw_fd(&access.root.fd)
                );
                let u = berth_runtime::user::resolve_exec_user(Path::new(&root), &user, &[])
                    .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
                opts.owner = Some((u.uid, u.gid));
            }
            // As dockerd: the tar may come gzip-, bzip2-, xz- or zstd-compressed.
            let input = berth_image::layer::decompress_any(ChannelReader::new(body))
                .map_err(EngineError::io("reading the archive"))?;
            access.root.extract(&path, input, opts)
        })
        .await
        .map_err(|e| EngineError::Runtime(format!("extraction: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree deeper than the limit is refused, not walked until fds or stack run out.
    #[test]
    fn deep_trees_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut p = t.path().join("r");
        for _ in 0..(berth_image::tarwalk::MAX_DEPTH + 5) {
            p.push("d");
        }
        std::fs::create_dir_all(&p).unwrap();
        let root = Root::open(&t.path().join("r"), "c").unwrap();
        let (tx, mut rx) = mpsc::channel(1 << 16);
        let drain = std::thread::spawn(move || while rx.blocking_recv().is_some() {});
        let err = tar_to_channel(tx, |w| w.add_children(&root.fd, Path::new(""))).unwrap_err();
        drain.join().unwrap();
        assert!(err.to_string().contains("directories deep"), "{err}");
    }

    #[test]
    fn link_targets_are_joined_and_cleaned_under_the_root() {
        assert_eq!(join_clean(parent_of("/bin/sh"), "busybox"), "/bin/busybox");
        assert_eq!(join_clean(parent_of("/bin/sh"), "/usr/bin/x"), "/usr/bin/x");
        assert_eq!(join_clean(parent_of("/a/b/l"), "../../../../c"), "/c");
        assert_eq!(join_clean(parent_of("/top"), "./x/./y"), "/x/y");
    }

    #[test]
    fn base_names_follow_docker() {
        assert_eq!(base_name("/etc/hosts"), "hosts");
        assert_eq!(base_name("/etc/"), "etc");
        assert_eq!(base_name("/etc/."), ".");
        assert_eq!(base_name("/"), "/");
    }

    #[test]
    fn climbing_entries_are_refused() {
        assert!(entry_components(Path::new("a/../../b")).is_none());
        assert_eq!(
            entry_components(Path::new("./a/b")).unwrap(),
            vec![OsString::from("a"), OsString::from("b")]
        );
    }

    /// A symlink pointing at the host's root, inside the tree, in the destination path or in
    /// the archive, never lets a read or a write out of the root.
    #[test]
    fn symlinks_stay_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        let outside = host.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"host").unwrap();
        let root_dir = host.path().join("root");
        std::fs::create_dir_all(root_dir.join("etc")).unwrap();
        std::fs::write(root_dir.join("etc/secret"), b"container").unwrap();
        std::os::unix::fs::symlink(&outside, root_dir.join("escape")).unwrap();
        let root = Root::open(&root_dir, "c").unwrap();
        // Read through the link: resolved in the root, where `outside` does not exist.
        assert!(matches!(
            root.stat("/escape/secret"),
            Err(EngineError::NotFound(_))
        ));
        // Write through the link: lands inside the root, never in the host directory.
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        tar.append_data(&mut h, "x", &b"evil"[..]).unwrap();
        let data = tar.into_inner().unwrap();
        let _ = root.extract("/escape", &data[..], PutOptions::default());
        assert!(!outside.join("x").exists());
        // An archive symlink followed by an entry through it: resolved in the root, so a
        // link to the host directory goes nowhere (refused), and a link to `/` means the
        // container's root.
        for (target, lands) in [(outside.clone(), None), (PathBuf::from("/"), Some("y"))] {
            let mut tar = tar::Builder::new(Vec::new());
            let mut l = tar::Header::new_gnu();
            l.set_entry_type(tar::EntryType::Symlink);
            l.set_size(0);
            tar.append_link(&mut l, "up", &target).unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_size(4);
            h.set_mode(0o644);
            tar.append_data(&mut h, "up/y", &b"evil"[..]).unwrap();
            let data = tar.into_inner().unwrap();
            let r = root.extract("/etc", &data[..], PutOptions::default());
            assert_eq!(r.is_ok(), lands.is_some(), "{r:?}");
            assert!(!outside.join("y").exists());
            if let Some(f) = lands {
                assert_eq!(std::fs::read(root_dir.join(f)).unwrap(), b"evil");
            }
        }
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"host");
    }
}
