//! `COPY` and `ADD` of local files: resolving sources in the build context (or another
//! stage's root) with globs and `.dockerignore`, hashing them for the cache key, and copying
//! them into a step's root with Docker's destination rules.
//!
//! Sources are resolved by the kernel inside their root (`openat2` with `RESOLVE_IN_ROOT`),
//! so neither `../x` nor a symlink pointing out of the context reaches outside it; trees are
//! walked through directory fds with `O_NOFOLLOW`. Destination directories are resolved the
//! same way inside the step's root, as a container would see them.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use super::ExecError;
use crate::ignore::Ignore;

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
/// Deepest tree a copy walks.
const MAX_DEPTH: usize = 256;

/// A directory files are copied from: the build context, or a stage's or image's root.
pub struct SourceRoot<'a> {
    fd: OwnedFd,
    /// `.dockerignore` of the context (none for stages and images).
    ignore: Option<&'a Ignore>,
    /// Whether files keep their owners (stages and images) or become root's (the context).
    keep_owner: bool,
    /// What to call it in errors.
    label: String,
}

/// An entry of a directory being walked.
struct Child {
    /// Path in the root.
    ctx_rel: String,
    /// Path under the source.
    rel: String,
    name: String,
}

/// One resolved source: a path in its root.
#[derive(Debug, Clone)]
pub struct Source {
    /// Path relative to the root as named, cleaned; "" is the root itself.
    pub rel: String,
    /// Where it really is (symlinks followed inside the root): what `.dockerignore` rules
    /// are checked against while walking it.
    walk: String,
    st: Stat,
}

impl Source {
    /// Whether the source is a directory (its contents are copied).
    pub fn is_dir(&self) -> bool {
        FileType::from_raw_mode(self.st.st_mode) == FileType::Directory
    }

    /// Whether the source is a regular file.
    pub fn is_regular(&self) -> bool {
        FileType::from_raw_mode(self.st.st_mode) == FileType::RegularFile
    }

    /// The last component (the name a file gets inside a destination directory).
    pub fn base_name(&self) -> &str {
        self.rel.rsplit('/').next().unwrap_or(&self.rel)
    }
}

/// Content digests of files by inode and change time, kept by the builder across builds so
/// an unchanged context is not read again.
#[derive(Debug, Default)]
pub struct HashCache {
    map: Mutex<Digests>,
}

/// `(device, inode)` -> the stamp the digest was taken at, and the digest.
type Digests = HashMap<(u64, u64), (Stamp, [u8; 32])>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// Entries the cache keeps before it starts over.
const HASH_CACHE_MAX: usize = 500_000;

impl HashCache {
    fn digest(&self, fd: BorrowedFd<'_>, st: &Stat) -> io::Result<[u8; 32]> {
        let key = (st.st_dev, st.st_ino);
        let stamp = Stamp {
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime, st.st_ctime_nsec as i64),
        };
        if let Some((s, d)) = self.lock().get(&key) {
            if *s == stamp {
                return Ok(*d);
            }
        }
        let mut file = std::fs::File::from(rustix::io::fcntl_dupfd_cloexec(fd, 0)?);
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let d: [u8; 32] = h.finalize().into();
        let mut map = self.lock();
        if map.len() >= HASH_CACHE_MAX {
            map.clear();
        }
        map.insert(key, (stamp, d));
        Ok(d)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Digests> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether `s` has glob characters (`*`, `?`, `[`).
fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// One element of a component pattern.
enum Tok {
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `[...]`
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Parses a component pattern; `None` when it is malformed (an unterminated class).
fn tokens(pattern: &str) -> Option<Vec<Tok>> {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::One),
            '\\' if i + 1 < p.len() => {
                i += 1;
                out.push(Tok::Lit(p[i]));
            }
            '[' => {
                i += 1;
                let negated = matches!(p.get(i), Some('^' | '!'));
                if negated {
                    i += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let c = *p.get(i)?;
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    let mut lo = c;
                    if lo == '\\' {
                        i += 1;
                        lo = *p.get(i)?;
                    }
                    let mut hi = lo;
                    if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|c| *c != ']') {
                        i += 2;
                        hi = p[i];
                        if hi == '\\' {
                            i += 1;
                            hi = *p.get(i)?;
                        }
                    }
                    ranges.push((lo, hi));
                    i += 1;
                }
                out.push(Tok::Class { negated, ranges });
            }
            c => out.push(Tok::Lit(c)),
        }
        i += 1;
    }
    Some(out)
}

/// Go's `filepath.Match` for one path component: `*`, `?`, `[...]` with `^`/`!` negation
/// and ranges, `\` escapes. Matching is linear in pattern × name (no backtracking blow-up).
pub fn component_match(pattern: &str, name: &str) -> bool {
    let Some(toks) = tokens(pattern) else {
        return false;
    };
    let n: Vec<char> = name.chars().collect();
    // ok[j]: the tokens from i on match n[j..]; computed from the last token back.
    let mut ok = vec![false; n.len() + 1];
    ok[n.len()] = true;
    for t in toks.iter().rev() {
        let mut next = vec![false; n.len() + 1];
        for j in (0..=n.len()).rev() {
            next[j] = match t {
                Tok::Star => ok[j] || (j < n.len() && next[j + 1]),
                Tok::One => j < n.len() && ok[j + 1],
                Tok::Lit(c) => j < n.len() && n[j] == *c && ok[j + 1],
                Tok::Class { negated, ranges } => {
                    j < n.len()
                        && ranges.iter().any(|(lo, hi)| *lo <= n[j] && n[j] <= *hi) != *negated
                        && ok[j + 1]
                }
            };
        }
        ok = next;
    }
    ok[0]
}

/// Cleans a source path: relative to the root, no `.`; `None` if it climbs out of it.
fn clean_source(raw: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}/{b}"),
    }
}

fn read_names(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(&fd)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_owned());
        }
    }
    names.sort();
    Ok(names)
}

impl<'a> SourceRoot<'a> {
    /// The build context at `dir` with its `.dockerignore`.
    pub fn context(dir: &Path, ignore: &'a Ignore) -> Result<Self, ExecError> {
        Self::open(dir, Some(ignore), false, "build context")
    }

    /// A plain directory whose files become root's (downloads).
    pub fn open_dir(dir: &Path, label: &str) -> Result<Self, ExecError> {
        Self::open(dir, None, false, label)
    }

    /// Another stage's or an image's root, mounted at `dir`.
    pub fn stage(dir: &Path, label: &str) -> Result<Self, ExecError> {
        Self::open(dir, None, true, label)
    }

    fn open(
        dir: &Path,
        ignore: Option<&'a Ignore>,
        keep_owner: bool,
        label: &str,
    ) -> Result<Self, ExecError> {
        let fd = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ExecError::io(dir)(e.into()))?;
        Ok(SourceRoot {
            fd,
            ignore,
            keep_owner,
            label: label.to_owned(),
        })
    }

    fn ignored(&self, rel: &str) -> bool {
        self.ignore
            .is_some_and(|i| !rel.is_empty() && i.matches(rel))
    }

    /// Whether `rel` is ignored with nothing under it that an exception could bring back
    /// (checked before opening it).
    fn may_skip(&self, rel: &str) -> bool {
        self.ignore
            .is_some_and(|i| !i.has_exceptions() && !rel.is_empty() && i.matches(rel))
    }

    /// Whether an entry is left out: an ignored file, or an ignored directory no exception
    /// reaches into (one an exception reaches into is walked, as the docker CLI does).
    fn excluded(&self, rel: &str, st: &Stat) -> bool {
        let Some(i) = self.ignore else { return false };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            i.can_skip_dir(rel)
        } else {
            i.matches(rel)
        }
    }

    fn open_rel(&self, rel: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
        let p = if rel.is_empty() { "." } else { rel };
        rustix::fs::openat2(&self.fd, p, flags | OFlags::CLOEXEC, Mode::empty(), RESOLVE)
    }

    /// Resolves the sources of a `COPY`/`ADD`: plain paths and globs, each followed (as a
    /// path) inside the root. A source that matches nothing is an error.
    pub fn resolve(&self, patterns: &[String]) -> Result<Vec<Source>, ExecError> {
        let mut out = Vec::new();
        for raw in patterns {
            let Some(clean) = clean_source(raw) else {
                return Err(ExecError::Input(format!(
                    "forbidden path outside the {}: {raw}",
                    self.label
                )));
            };
            let before = out.len();
            if has_glob(&clean) {
                self.glob(&clean, &mut out)?;
            } else if !self.ignored(&clean) {
                match self.open_rel(&clean, OFlags::PATH) {
                    Ok(fd) => {
                        if let Some(src) = self.source(clean.clone(), &fd)? {
                            out.push(src);
                        }
                    }
                    Err(Errno::NOENT | Errno::NOTDIR) => {}
                    Err(e) => return Err(ExecError::io(raw)(e.into())),
                }
            }
            if out.len() == before {
                return Err(ExecError::Input(format!(
                    "failed to compute cache key: \"/{clean}\": not found in the {}",
                    self.label
                )));
            }
        }
        Ok(out)
    }

    fn glob(&self, pattern: &str, out: &mut Vec<Source>) -> Result<(), ExecError> {
        let comps: Vec<&str> = pattern.split('/').collect();
        let mut current = vec![String::new()];
        for (i, comp) in comps.iter().enumerate() {
            let mut next = Vec::new();
            for dir in &current {
                if !has_glob(comp) {
                    next.push(join(dir, comp));
                    continue;
                }
                let Ok(fd) = self.open_rel(dir, OFlags::PATH | OFlags::DIRECTORY) else {
                    continue;
                };
                for name in read_names(&fd).map_err(ExecError::io(dir))? {
                    let name = name.to_string_lossy().into_owned();
                    if component_match(comp, &name) {
                        next.push(join(dir, &name));
                    }
                }
            }
            if i + 1 < comps.len() {
                next.retain(|p| self.open_rel(p, OFlags::PATH | OFlags::DIRECTORY).is_ok());
            }
            current = next;
        }
        for rel in current {
            if self.ignored(&rel) {
                continue;
            }
            if let Ok(fd) = self.open_rel(&rel, OFlags::PATH) {
                if let Some(src) = self.source(rel, &fd)? {
                    out.push(src);
                }
            }
        }
        Ok(())
    }

    /// A source named `rel`, opened as `fd`; `None` when, through a symlink, it is really
    /// something `.dockerignore` leaves out (the docker CLI would not have sent it).
    fn source(&self, rel: String, fd: &OwnedFd) -> Result<Option<Source>, ExecError> {
        let st = rustix::fs::fstat(fd).map_err(|e| ExecError::io(&rel)(e.into()))?;
        let mut walk = rel.clone();
        if self.ignore.is_some() {
            let real = |fd: &OwnedFd| {
                std::fs::read_link(format!(
                    "/proc/self/fd/{}",
                    rustix::fd::AsRawFd::as_raw_fd(fd)
                ))
            };
            if let (Ok(root), Ok(me)) = (real(&self.fd), real(fd)) {
                if let Ok(r) = me.strip_prefix(&root) {
                    walk = r.to_string_lossy().into_owned();
                }
            }
            if walk != rel && self.excluded(&walk, &st) {
                return Ok(None);
            }
        }
        Ok(Some(Source { rel, walk, st }))
    }

    /// Feeds `h` with everything of `src` that a copy would write: names, types, modes,
    /// owners (when kept), sizes, contents and link targets; not times.
    pub fn hash(
        &self,
        src: &Source,
        exclude: Option<&Ignore>,
        cache: &HashCache,
        h: &mut Sha256,
    ) -> Result<(), ExecError> {
        let fd = self
            .open_rel(&src.rel, OFlags::PATH)
            .map_err(|e| ExecError::io(&src.rel)(e.into()))?;
        h.update(src.rel.as_bytes());
        h.update([0]);
        self.hash_node(&fd, &src.st, &src.walk, "", exclude, cache, h, 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn hash_node(
        &self,
        fd: &OwnedFd,
        st: &Stat,
        ctx_rel: &str,
        rel: &str,
        exclude: Option<&Ignore>,
        cache: &HashCache,
        h: &mut Sha256,
        depth: usize,
    ) -> Result<(), ExecError> {
        if depth > MAX_DEPTH {
            return Err(ExecError::Input(format!("{ctx_rel}: tree too deep")));
        }
        let ft = FileType::from_raw_mode(st.st_mode);
        h.update(rel.as_bytes());
        h.update(format!("\0{:o}\0", st.st_mode).as_bytes());
        if self.keep_owner {
            h.update(format!("{}:{}\0", st.st_uid, st.st_gid).as_bytes());
        }
        match ft {
            FileType::RegularFile => {
                let file = reopen(fd, OFlags::RDONLY).map_err(ExecError::io(ctx_rel))?;
                let d = cache
                    .digest(file.as_fd(), st)
                    .map_err(ExecError::io(ctx_rel))?;
                h.update(st.st_size.to_le_bytes());
                h.update(d);
            }
            FileType::Symlink => {
                let t = rustix::fs::readlinkat(fd, "", Vec::new())
                    .map_err(|e| ExecError::io(ctx_rel)(e.into()))?;
                h.update(t.as_bytes());
            }
            FileType::Directory => {
                for c in self.children(fd, ctx_rel, rel, exclude)? {
                    let (cfd, st) = self.open_child(fd, &c)?;
                    self.hash_node(&cfd, &st, &c.ctx_rel, &c.rel, exclude, cache, h, depth + 1)?;
                }
            }
            _ => {}
        }
        h.update(b"\n");
        Ok(())
    }

    /// The entries of the directory `fd` a copy takes, in name order: what `.dockerignore`
    /// and `--exclude` leave out is skipped. `ctx_rel` is the directory's path in the root,
    /// `rel` its path under the source being copied.
    fn children(
        &self,
        fd: &OwnedFd,
        ctx_rel: &str,
        rel: &str,
        exclude: Option<&Ignore>,
    ) -> Result<Vec<Child>, ExecError> {
        let mut out = Vec::new();
        for name in read_names(fd).map_err(ExecError::io(ctx_rel))? {
            let n = name.to_string_lossy().into_owned();
            let child_ctx = join(ctx_rel, &n);
            let child_rel = join(rel, &n);
            if self.may_skip(&child_ctx) || exclude.is_some_and(|e| e.matches(&child_rel)) {
                continue;
            }
            let st = rustix::fs::statat(fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| ExecError::io(&child_ctx)(e.into()))?;
            if self.excluded(&child_ctx, &st) {
                continue;
            }
            out.push(Child {
                ctx_rel: child_ctx,
                rel: child_rel,
                name: n,
            });
        }
        Ok(out)
    }

    /// Opens an entry [`SourceRoot::children`] listed (never following a symlink); returns
    /// it with what it is now.
    fn open_child(&self, dir: &OwnedFd, c: &Child) -> Result<(OwnedFd, Stat), ExecError> {
        let fd = rustix::fs::openat(
            dir,
            c.name.as_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ExecError::io(&c.ctx_rel)(e.into()))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| ExecError::io(&c.ctx_rel)(e.into()))?;
        Ok((fd, st))
    }

    /// Copies `src` to `dest` inside `dest_root`: a directory's contents into the directory
    /// `dest`, anything else to the path `dest` (the caller appends the base name when the
    /// destination is a directory).
    pub fn copy(
        &self,
        src: &Source,
        dest: &Dest<'_>,
        exclude: Option<&Ignore>,
    ) -> Result<(), ExecError> {
        let fd = self
            .open_rel(&src.rel, OFlags::PATH)
            .map_err(|e| ExecError::io(&src.rel)(e.into()))?;
        if src.is_dir() {
            let (dir, created) = dest.ensure_dir(&dest.path)?;
            self.copy_children(&fd, &src.walk, "", &dest.path, dest, exclude, 0)?;
            if created {
                dest.set_meta_dir(&dir, &src.st, self.keep_owner)?;
            }
            Ok(())
        } else {
            let (parent, name) = split_parent(&dest.path)?;
            let (dir, _) = dest.ensure_dir(&parent)?;
            self.copy_node(&fd, &src.st, &src.rel, &dir, &name, dest)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_children(
        &self,
        fd: &OwnedFd,
        ctx_rel: &str,
        rel: &str,
        dest_dir: &str,
        dest: &Dest<'_>,
        exclude: Option<&Ignore>,
        depth: usize,
    ) -> Result<(), ExecError> {
        if depth > MAX_DEPTH {
            return Err(ExecError::Input(format!("{ctx_rel}: tree too deep")));
        }
        let (dir, _) = dest.ensure_dir(dest_dir)?;
        for c in self.children(fd, ctx_rel, rel, exclude)? {
            let (child, st) = self.open_child(fd, &c)?;
            let (child_ctx, child_rel, n) = (c.ctx_rel, c.rel, c.name);
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let sub = format!("{}/{}", dest_dir.trim_end_matches('/'), n);
                let (subdir, _) = dest.ensure_dir(&sub)?;
                self.copy_children(
                    &child,
                    &child_ctx,
                    &child_rel,
                    &sub,
                    dest,
                    exclude,
                    depth + 1,
                )?;
                dest.set_meta_dir(&subdir, &st, self.keep_owner)?;
            } else {
                self.copy_node(&child, &st, &child_ctx, &dir, &n, dest)?;
            }
        }
        Ok(())
    }

    /// Copies one non-directory entry into `dir` as `name`, replacing what is there.
    fn copy_node(
        &self,
        fd: &OwnedFd,
        st: &Stat,
        ctx_rel: &str,
        dir: &OwnedFd,
        name: &str,
        dest: &Dest<'_>,
    ) -> Result<(), ExecError> {
        let ft = FileType::from_raw_mode(st.st_mode);
        let what = || format!("{}/{name}", dest.path);
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(old) if FileType::from_raw_mode(old.st_mode) == FileType::Directory => {
                return Err(ExecError::Input(format!(
                    "cannot replace the directory {} with a file",
                    what()
                )));
            }
            Ok(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty())
                .map_err(|e| ExecError::io(what())(e.into()))?,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(ExecError::io(what())(e.into())),
        }
        let (uid, gid) = dest.owner(st, self.keep_owner);
        let times = times_of(st);
        match ft {
            FileType::RegularFile => {
                let mut src = std::fs::File::from(
                    reopen(fd, OFlags::RDONLY).map_err(ExecError::io(ctx_rel))?,
                );
                let out = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| ExecError::io(what())(e.into()))?;
                let mut out = std::fs::File::from(out);
                io::copy(&mut src, &mut out).map_err(ExecError::io(what()))?;
                chown_fd(&out, uid, gid).map_err(|e| ExecError::io(what())(e.into()))?;
                let mode = dest.mode(st);
                rustix::fs::fchmod(&out, Mode::from_raw_mode(mode))
                    .map_err(|e| ExecError::io(what())(e.into()))?;
                // After chown, which clears file capabilities.
                copy_xattrs(&src, &out);
                rustix::fs::futimens(&out, &times).map_err(|e| ExecError::io(what())(e.into()))?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(fd, "", Vec::new())
                    .map_err(|e| ExecError::io(ctx_rel)(e.into()))?;
                rustix::fs::symlinkat(target.as_c_str(), dir, name)
                    .map_err(|e| ExecError::io(what())(e.into()))?;
                lchown_at(dir, name, uid, gid).map_err(|e| ExecError::io(what())(e.into()))?;
                let _ = rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW);
            }
            FileType::Fifo if !dest.host_safe => {
                let mode = dest.mode(st);
                rustix::fs::mknodat(dir, name, FileType::Fifo, Mode::from_raw_mode(mode), 0)
                    .map_err(|e| ExecError::io(what())(e.into()))?;
                lchown_at(dir, name, uid, gid).map_err(|e| ExecError::io(what())(e.into()))?;
            }
            _ => tracing::debug!(
                path = ctx_rel,
                "skipping a socket or device in a copy source"
            ),
        }
        Ok(())
    }
}

/// Copies the extended attributes a copy keeps (`security.capability`, `user.*`, `trusted.*`)
/// from `src` to `dst`; attributes the destination refuses are skipped.
fn copy_xattrs(src: &impl AsFd, dst: &impl AsFd) {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::flistxattr(src, &mut names) else {
        return;
    };
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let keep = name == b"security.capability"
            || name.starts_with(b"user.")
            || name.starts_with(b"trusted.");
        if !keep {
            continue;
        }
        let Ok(cname) = std::ffi::CString::new(name) else {
            continue;
        };
        let mut value = vec![0u8; 64 * 1024];
        if let Ok(len) = rustix::fs::fgetxattr(src, cname.as_c_str(), &mut value) {
            let _ = rustix::fs::fsetxattr(
                dst,
                cname.as_c_str(),
                &value[..len],
                rustix::fs::XattrFlags::empty(),
            );
        }
    }
}

/// `fchown` to numeric ids.
fn chown_fd(fd: impl AsFd, uid: u32, gid: u32) -> Result<(), Errno> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
}

/// `lchown` of `name` in `dir` (a symlink itself, never its target) to numeric ids.
fn lchown_at(dir: impl AsFd, name: &str, uid: u32, gid: u32) -> Result<(), Errno> {
    rustix::fs::chownat(
        dir,
        name,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
}

fn times_of(st: &Stat) -> Timestamps {
    let t = Timespec {
        tv_sec: st.st_mtime,
        tv_nsec: st.st_mtime_nsec as _,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// A regular fd to the inode `fd` (an `O_PATH` fd) names.
fn reopen(fd: &OwnedFd, flags: OFlags) -> io::Result<OwnedFd> {
    berth_image::tarwalk::reopen(fd.as_fd(), flags)
}

/// Splits an absolute destination into its parent directory and last name.
fn split_parent(path: &str) -> Result<(String, String), ExecError> {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((p, n)) if !n.is_empty() && n != "." && n != ".." => Ok((
            if p.is_empty() {
                "/".into()
            } else {
                p.to_owned()
            },
            n.to_owned(),
        )),
        _ => Err(ExecError::Input(format!("invalid destination {path:?}"))),
    }
}

/// Where a copy writes: a path in a step's root, with the owner and mode it gives.
pub struct Dest<'a> {
    /// The root of the step (its mounted overlay), an `O_PATH` fd.
    pub root: BorrowedFd<'a>,
    /// Absolute path inside the root.
    pub path: String,
    /// `--chown` resolved, or `None` to keep (stages) / give root (context).
    pub chown: Option<(u32, u32)>,
    /// `--chmod` bits.
    pub chmod: Option<u32>,
    /// Writing onto the host (`--output`): set-uid/set-gid bits dropped, FIFOs skipped.
    pub host_safe: bool,
}

impl Dest<'_> {
    /// The mode a copied entry gets.
    fn mode(&self, st: &Stat) -> u32 {
        let m = self.chmod.unwrap_or(st.st_mode & 0o7777);
        if self.host_safe { m & !0o6000 } else { m }
    }

    fn owner(&self, st: &Stat, keep: bool) -> (u32, u32) {
        match self.chown {
            Some(o) => o,
            None if keep => (st.st_uid, st.st_gid),
            None => (0, 0),
        }
    }

    /// Opens the directory `path` inside the root (following symlinks as the container
    /// would), making missing directories (0755, owned by the `--chown` user or root).
    /// Returns a readable fd and whether the last directory was made now.
    pub fn ensure_dir(&self, path: &str) -> Result<(OwnedFd, bool), ExecError> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match rustix::fs::openat2(self.root, rel, flags, Mode::empty(), RESOLVE) {
            Ok(fd) => return Ok((fd, false)),
            Err(Errno::NOENT) => {}
            Err(Errno::NOTDIR) => {
                return Err(ExecError::Input(format!(
                    "{path}: a path component is not a directory"
                )));
            }
            Err(e) => return Err(ExecError::io(path)(e.into())),
        }
        let (parent, name) = split_parent(&format!("/{rel}"))?;
        let (p, _) = self.ensure_dir(&parent)?;
        match rustix::fs::mkdirat(&p, name.as_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) => {
                let (uid, gid) = self.chown.unwrap_or((0, 0));
                lchown_at(&p, name.as_str(), uid, gid)
                    .map_err(|e| ExecError::io(path)(e.into()))?;
            }
            Err(Errno::EXIST) => {}
            Err(e) => return Err(ExecError::io(path)(e.into())),
        }
        let fd = rustix::fs::openat(&p, name.as_str(), flags | OFlags::NOFOLLOW, Mode::empty())
            .map_err(|e| match e {
                Errno::LOOP | Errno::NOTDIR => {
                    ExecError::Input(format!("{path}: exists and is not a directory"))
                }
                e => ExecError::io(path)(e.into()),
            })?;
        Ok((fd, true))
    }

    /// Gives a copied directory its source's mode (or `--chmod`), owner and time.
    fn set_meta_dir(&self, fd: &OwnedFd, st: &Stat, keep: bool) -> Result<(), ExecError> {
        let (uid, gid) = self.owner(st, keep);
        let e = |e: Errno| ExecError::io(&self.path)(e.into());
        chown_fd(fd, uid, gid).map_err(e)?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(self.mode(st))).map_err(e)?;
        rustix::fs::futimens(fd, &times_of(st)).map_err(e)?;
        Ok(())
    }

    /// Writes `data` as the file `path` (an inline `COPY <<EOF`), mode 0644 or `--chmod`.
    pub fn write_file(&self, path: &str, data: &[u8]) -> Result<(), ExecError> {
        use std::io::Write;
        let (parent, name) = split_parent(path)?;
        let (dir, _) = self.ensure_dir(&parent)?;
        match rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::ISDIR) => {
                return Err(ExecError::Input(format!(
                    "cannot replace the directory {path} with a file"
                )));
            }
            Err(e) => return Err(ExecError::io(path)(e.into())),
        }
        let fd = rustix::fs::openat(
            &dir,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| ExecError::io(path)(e.into()))?;
        let mut f = std::fs::File::from(fd);
        f.write_all(data).map_err(ExecError::io(path))?;
        let (uid, gid) = self.chown.unwrap_or((0, 0));
        let e = |e: Errno| ExecError::io(path)(e.into());
        chown_fd(&f, uid, gid).map_err(e)?;
        rustix::fs::fchmod(&f, Mode::from_raw_mode(self.chmod.unwrap_or(0o644))).map_err(e)?;
        Ok(())
    }

    /// Whether `path` is an existing directory in the root.
    pub fn is_dir(&self, path: &str) -> bool {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        rustix::fs::openat2(
            self.root,
            rel,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
        .is_ok()
    }
}

/// A file's content decompressed as `ADD` reads archives (see
/// [`berth_image::layer::decompress_any`]).
fn decompressed(file: std::fs::File) -> io::Result<Box<dyn Read + Send>> {
    berth_image::layer::decompress_any(file)
}

/// Whether a file is a tar archive, plain or compressed (what `ADD` extracts).
pub fn looks_like_archive(fd: &OwnedFd) -> bool {
    let Ok(file) = reopen(fd, OFlags::RDONLY) else {
        return false;
    };
    let Ok(mut r) = decompressed(std::fs::File::from(file)) else {
        return false;
    };
    let mut plain = Vec::new();
    let _ = r.by_ref().take(512).read_to_end(&mut plain);
    plain.len() >= 512 && &plain[257..262] == b"ustar"
}

impl SourceRoot<'_> {
    /// An `O_PATH` fd of a resolved source.
    pub fn open_source(&self, src: &Source) -> Result<OwnedFd, ExecError> {
        self.open_rel(&src.rel, OFlags::PATH)
            .map_err(|e| ExecError::io(&src.rel)(e.into()))
    }

    /// `ADD` of a local archive: extracts it into the directory `dest.path`.
    pub fn extract(&self, src: &Source, dest: &Dest<'_>) -> Result<(), ExecError> {
        let fd = self.open_source(src)?;
        let file =
            std::fs::File::from(reopen(&fd, OFlags::RDONLY).map_err(ExecError::io(&src.rel))?);
        let reader = decompressed(file).map_err(ExecError::io(&src.rel))?;
        let (dir, _) = dest.ensure_dir(&dest.path)?;
        // The directory was resolved inside the root; its magic link names exactly it.
        let path = PathBuf::from(format!(
            "/proc/self/fd/{}",
            rustix::fd::AsRawFd::as_raw_fd(&dir)
        ));
        let opts = berth_image::apply::ApplyOptions {
            same_owner: true,
            plain_archive: true,
            ..Default::default()
        };
        berth_image::apply::apply_layer(&path, reader, &opts)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_globs_follow_go() {
        assert!(component_match("*.txt", "a.txt"));
        assert!(!component_match("*.txt", "a.txt.bak"));
        assert!(component_match("a?c", "abc"));
        assert!(component_match("[a-c]x", "bx"));
        assert!(!component_match("[^a-c]x", "bx"));
        assert!(component_match("[!a-c]x", "dx"));
        assert!(component_match("\\*", "*"));
        assert!(!component_match("[ab", "a"));
        assert!(component_match("*", ""));
        assert!(component_match("a*b*c", "axxbyyc"));
        assert!(!component_match("a*b*c", "axxbyy"));
        // No exponential backtracking.
        let name = "a".repeat(200);
        assert!(!component_match("*a*a*a*a*a*a*a*a*a*a*a*b", &name));
    }

    #[test]
    fn sources_cannot_climb_out() {
        assert_eq!(clean_source("./a/../b/").as_deref(), Some("b"));
        assert_eq!(clean_source("/a").as_deref(), Some("a"));
        assert_eq!(clean_source("../x"), None);
        assert_eq!(clean_source(".").as_deref(), Some(""));
    }
}
