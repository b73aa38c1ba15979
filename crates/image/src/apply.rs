//! Hardened extraction of a layer tarball into a snapshot directory.
//!
//! The tarball is hostile. Every path is normalized lexically (leading `/` stripped, `..`
//! that would climb above the root refused), every parent directory is resolved by the kernel
//! with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from a descriptor of the root (so a
//! symlink planted by an earlier entry, `link -> /etc` or `link -> ../..`, resolves inside the
//! root), and the final component is always handled relative to that parent descriptor with
//! calls that never follow it. Hard link targets are resolved the same way and may not be
//! directories. Device nodes are made only when allowed; sizes, entry counts and path lengths
//! are capped.
//!
//! Whiteouts (`.wh.<name>`) remove the named entry; with
//! [`ApplyOptions::overlay_whiteouts`] they are also recorded the way overlayfs reads them (a
//! 0:0 character device, and `trusted.overlay.opaque=y` for `.wh..wh..opq`).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use rustix::fs::{
    self as rfs, AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps,
    Uid, XattrFlags,
};
use rustix::io::Errno;

use crate::error::ImageError;

/// The whiteout prefix of the layer format.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The entry that marks its directory opaque.
pub const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";

/// How a resolution from the root descriptor may go: never out of the root, never through
/// `/proc` magic links.
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Limits and permissions of one extraction.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Create character and block devices (otherwise they are skipped).
    pub allow_devices: bool,
    /// Give entries their uid/gid from the tarball (needs root).
    pub same_owner: bool,
    /// Record whiteouts as overlayfs does (0:0 char device, opaque xattr) so that the layer
    /// hides entries of the layers below it.
    pub overlay_whiteouts: bool,
    /// A plain archive, not a layer (`ADD` of a tarball, a build context): `.wh.` entries
    /// are files like any other, not deletions.
    pub plain_archive: bool,
    /// Cap on the bytes of regular files.
    pub max_bytes: u64,
    /// Cap on the number of entries.
    pub max_entries: u64,
    /// Cap on the length of an entry's path (and link target).
    pub max_path_len: usize,
    /// Decompressed bytes past which [`ApplyOptions::max_ratio`] applies.
    pub ratio_floor: u64,
    /// Most decompressed bytes per compressed byte (a decompression bomb beyond).
    pub max_ratio: u64,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            allow_devices: false,
            same_owner: false,
            overlay_whiteouts: false,
            plain_archive: false,
            max_bytes: 64 << 30,
            max_entries: 10_000_000,
            max_path_len: 4096,
            ratio_floor: 4 << 30,
            max_ratio: 1000,
        }
    }
}

/// What an extraction wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Bytes of regular file content.
    pub bytes: u64,
    /// Entries read from the tarball.
    pub entries: u64,
}

/// A directory whose mode and mtime are set once every entry is in (so that entries written
/// into it do not bump its mtime and a read-only mode does not get in the way).
struct DirMeta {
    comps: Vec<OsString>,
    mode: u32,
    mtime: u64,
}

/// Extracts the layer tarball `reader` into the existing directory `root`.
pub fn apply_layer(
    root: &Path,
    reader: impl Read,
    opts: &ApplyOptions,
) -> Result<ApplyStats, ImageError> {
    let rootfd = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(ImageError::errno(format!("open {}", root.display())))?;
    let mut archive = tar::Archive::new(MetaCap::new(reader, MAX_TAR_META));
    let mut stats = ApplyStats::default();
    let mut dirs = Vec::new();
    for entry in archive.entries().map_err(bad_tar)? {
        let mut entry = entry.map_err(bad_tar)?;
        stats.entries += 1;
        if stats.entries > opts.max_entries {
            return Err(ImageError::TooLarge(format!(
                "more than {} entries",
                opts.max_entries
            )));
        }
        apply_entry(rootfd.as_fd(), &mut entry, opts, &mut stats, &mut dirs)?;
    }
    for d in dirs.iter().rev() {
        // A directory replaced later by something else is skipped: O_NOFOLLOW refuses a
        // symlink, O_DIRECTORY anything else.
        let fd = if d.comps.is_empty() {
            rustix::io::dup(rootfd.as_fd())
        } else {
            open_in_root(rootfd.as_fd(), &d.comps, OFlags::NOFOLLOW)
        };
        let Ok(fd) = fd else { continue };
        rfs::fchmod(&fd, Mode::from_raw_mode(d.mode))
            .map_err(ImageError::errno(format!("chmod {}", show(&d.comps))))?;
        rfs::futimens(&fd, &times(d.mtime)).map_err(ImageError::errno(format!(
            "set times of {}",
            show(&d.comps)
        )))?;
    }
    Ok(stats)
}

fn bad_tar(e: io::Error) -> ImageError {
    ImageError::InvalidLayer(format!("reading tar archive: {}", tar_error_text(&e)))
}

/// A tar reading error as text fit for a client. The tar crate quotes the bytes of a header
/// it cannot parse, which for garbage input is garbage in the message: such errors read as
/// Go's `archive/tar` puts it.
fn tar_error_text(e: &io::Error) -> String {
    let text = e.to_string();
    if text.contains("when getting cksum") || text.contains("did not have utf-8") {
        return "invalid tar header".into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() || c == char::REPLACEMENT_CHARACTER {
                '?'
            } else {
                c
            }
        })
        .take(300)
        .collect()
}

/// An error of a filesystem call made for an entry: the ones a hostile or inconsistent layer
/// causes are the layer's fault, the rest are ours.
fn entry_err<'a>(op: &'static str, comps: &'a [OsString]) -> impl FnOnce(Errno) -> ImageError + 'a {
    move |e| match e {
        Errno::NOTDIR
        | Errno::LOOP
        | Errno::EXIST
        | Errno::NOENT
        | Errno::ISDIR
        | Errno::XDEV
        | Errno::NAMETOOLONG
        | Errno::NOTEMPTY => ImageError::InvalidLayer(format!("{op} {}: {e}", show(comps))),
        _ => ImageError::Io {
            context: format!("{op} {}", show(comps)),
            source: e.into(),
        },
    }
}

fn show(comps: &[OsString]) -> String {
    String::from_utf8_lossy(&join(comps)).into_owned()
}

fn join(comps: &[OsString]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c.as_bytes());
    }
    out
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Splits an entry path into components inside the root: empty and `.` components dropped, a
/// leading `/` ignored, `..` applied lexically and refused when it would leave the root.
pub fn normalize_path(raw: &[u8], max_len: usize) -> Result<Vec<OsString>, ImageError> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    if raw.len() > max_len {
        return Err(ImageError::TooLarge(format!(
            "path longer than {max_len} bytes"
        )));
    }
    if raw.contains(&0) {
        return Err(ImageError::InvalidLayer(format!(
            "path {:?} contains a NUL byte",
            shown()
        )));
    }
    let mut comps: Vec<OsString> = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if comps.pop().is_none() {
                    return Err(ImageError::InvalidLayer(format!(
                        "path {:?} escapes the root",
                        shown()
                    )));
                }
            }
            c => comps.push(OsString::from_vec(c.to_vec())),
        }
    }
    Ok(comps)
}

/// Opens a directory below the root, resolved by the kernel inside the root.
fn open_in_root(root: BorrowedFd<'_>, comps: &[OsString], extra: OFlags) -> Result<OwnedFd, Errno> {
    if comps.is_empty() {
        return rustix::io::dup(root);
    }
    let path = join(comps);
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | extra;
    let mut attempts = 0;
    loop {
        match rfs::openat2(root, path.as_slice(), flags, Mode::empty(), RESOLVE) {
            // The kernel asks for a retry when a rename raced with the resolution.
            Err(Errno::AGAIN) if attempts < 8 => attempts += 1,
            r => return r,
        }
    }
}

/// Opens the directory `comps` below the root, creating missing components (0755).
fn ensure_dir(root: BorrowedFd<'_>, comps: &[OsString]) -> Result<OwnedFd, ImageError> {
    match open_in_root(root, comps, OFlags::empty()) {
        Err(Errno::NOENT) => {}
        r => return r.map_err(entry_err("open directory", comps)),
    }
    let mut cur = rustix::io::dup(root).map_err(ImageError::errno("dup"))?;
    for i in 0..comps.len() {
        let prefix = &comps[..=i];
        cur = match open_in_root(root, prefix, OFlags::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                // `cur` is the resolved parent, inside the root; mkdir never follows its last
                // component. A dangling symlink there makes this EEXIST and the open below
                // fail: the layer is refused rather than creating the symlink's target.
                match rfs::mkdirat(&cur, comps[i].as_os_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(entry_err("create directory", prefix)(e)),
                }
                open_in_root(root, prefix, OFlags::empty())
                    .map_err(entry_err("open directory", prefix))?
            }
            Err(e) => return Err(entry_err("open directory", prefix)(e)),
        };
    }
    Ok(cur)
}

/// The type of `name` in `dir`, without following it; `None` when absent.
fn file_type_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<FileType>, Errno> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `rm -rf dir/name`, by descriptors only: symlinks are removed, never followed. A tree
/// deeper than [`MAX_REMOVE_DEPTH`] is refused (ELOOP) rather than walked: each level holds an
/// fd and a stack frame, and the tree may come from a hostile image or container.
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    remove_all_depth(dir, name, 0)
}

/// See [`remove_all_at`].
pub const MAX_REMOVE_DEPTH: usize = 256;

fn remove_all_depth(dir: BorrowedFd<'_>, name: &OsStr, depth: usize) -> Result<(), Errno> {
    match file_type_at(dir, name)? {
        None => Ok(()),
        Some(FileType::Directory) => {
            if depth >= MAX_REMOVE_DEPTH {
                return Err(Errno::LOOP);
            }
            let fd = rfs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let mut names = Vec::new();
            let mut entries = Dir::read_from(&fd)?;
            while let Some(entry) = entries.read() {
                let entry = entry?;
                let n = entry.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(OsString::from_vec(n.to_vec()));
                }
            }
            for n in names {
                remove_all_depth(fd.as_fd(), &n, depth + 1)?;
            }
            rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)
        }
        Some(_) => rfs::unlinkat(dir, name, AtFlags::empty()),
    }
}

/// The owner, mode, mtime and xattrs an entry asks for.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Self, ImageError> {
        let h = entry.header();
        let id = |v: io::Result<u64>| -> Result<u32, ImageError> {
            let v = v.map_err(bad_tar)?;
            u32::try_from(v)
                .map_err(|_| ImageError::InvalidLayer(format!("owner id {v} out of range")))
        };
        let uid = id(h.uid())?;
        let gid = id(h.gid())?;
        let mode = h.mode().map_err(bad_tar)? & 0o7777;
        let mtime = h.mtime().unwrap_or(0);
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(bad_tar)? {
            for ext in exts {
                let ext = ext.map_err(bad_tar)?;
                let Ok(key) = ext.key() else { continue };
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    if xattr_allowed(name) {
                        xattrs.push((name.to_owned(), ext.value_bytes().to_vec()));
                    }
                }
            }
        }
        Ok(Self {
            uid,
            gid,
            mode,
            mtime,
            xattrs,
        })
    }
}

/// Extended attributes a layer may carry: user ones, file capabilities, and trusted ones
/// except overlayfs' own (a layer must not steer the overlay with redirects or metacopy).
fn xattr_allowed(name: &str) -> bool {
    name.starts_with("user.")
        || name == "security.capability"
        || (name.starts_with("trusted.") && !name.starts_with("trusted.overlay."))
}

/// Sets owner, then mode (chown clears set-id bits), xattrs (after chown, which drops file
/// capabilities) and mtime on an open file or directory.
fn set_meta(
    fd: BorrowedFd<'_>,
    meta: &Meta,
    opts: &ApplyOptions,
    comps: &[OsString],
    mode: bool,
) -> Result<(), ImageError> {
    if opts.same_owner {
        rfs::fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(entry_err("chown", comps))?;
    }
    if mode {
        rfs::fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(entry_err("chmod", comps))?;
    }
    for (name, value) in &meta.xattrs {
        if let Err(e) = rfs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
            tracing::debug!(path = %show(comps), xattr = %name, error = %e, "xattr not set");
        }
    }
    Ok(())
}

fn apply_entry<R: Read>(
    root: BorrowedFd<'_>,
    entry: &mut tar::Entry<'_, R>,
    opts: &ApplyOptions,
    stats: &mut ApplyStats,
    dirs: &mut Vec<DirMeta>,
) -> Result<(), ImageError> {
    let kind = entry.header().entry_type();
    if kind.is_pax_global_extensions()
        || kind.is_pax_local_extensions()
        || kind.is_gnu_longname()
        || kind.is_gnu_longlink()
    {
        return Ok(());
    }
    let comps = normalize_path(&entry.path_bytes(), opts.max_path_len)?;
    let meta = Meta::read(entry)?;
    let Some((name, parent)) = comps.split_last() else {
        // The root itself (`./`): only its metadata applies.
        if kind.is_dir() {
            set_meta(root, &meta, opts, &comps, false)?;
            dirs.push(DirMeta {
                comps,
                mode: meta.mode,
                mtime: meta.mtime,
            });
        }
        return Ok(());
    };
    let name = name.as_os_str();
    let name_bytes = name.as_bytes();

    if let Some(target) = name_bytes
        .strip_prefix(WHITEOUT_PREFIX)
        .filter(|_| !opts.plain_archive)
    {
        let pdir = ensure_dir(root, parent)?;
        if name_bytes == OPAQUE_WHITEOUT {
            if opts.overlay_whiteouts {
                rfs::fsetxattr(&pdir, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                    .map_err(entry_err("mark opaque", parent))?;
            }
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(ImageError::InvalidLayer(format!(
                "bad whiteout {}",
                show(&comps)
            )));
        }
        let target = OsStr::from_bytes(target);
        remove_all_at(pdir.as_fd(), target).map_err(entry_err("remove", &comps))?;
        if opts.overlay_whiteouts {
            rfs::mknodat(
                &pdir,
                target,
                FileType::CharacterDevice,
                Mode::empty(),
                rfs::makedev(0, 0),
            )
            .map_err(entry_err("create whiteout", &comps))?;
        }
        return Ok(());
    }

    let pdir = ensure_dir(root, parent)?;
    let existing = file_type_at(pdir.as_fd(), name).map_err(entry_err("stat", &comps))?;

    if kind.is_dir() {
        match existing {
            Some(FileType::Directory) => {}
            other => {
                if other.is_some() {
                    remove_all_at(pdir.as_fd(), name).map_err(entry_err("remove", &comps))?;
                }
                rfs::mkdirat(&pdir, name, Mode::from_raw_mode(0o755))
                    .map_err(entry_err("create directory", &comps))?;
            }
        }
        let fd = rfs::openat(
            &pdir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(entry_err("open directory", &comps))?;
        set_meta(fd.as_fd(), &meta, opts, &comps, false)?;
        dirs.push(DirMeta {
            comps,
            mode: meta.mode,
            mtime: meta.mtime,
        });
        return Ok(());
    }

    if kind.is_hard_link() {
        let raw = entry.link_name_bytes().ok_or_else(|| {
            ImageError::InvalidLayer(format!("hard link {} has no target", show(&comps)))
        })?;
        let tcomps = normalize_path(&raw, opts.max_path_len)?;
        let Some((tname, tparent)) = tcomps.split_last() else {
            return Err(ImageError::InvalidLayer(format!(
                "hard link {} to the root",
                show(&comps)
            )));
        };
        let tdir = open_in_root(root, tparent, OFlags::empty())
            .map_err(entry_err("resolve hard link target", &tcomps))?;
        let tstat = rfs::statat(&tdir, tname.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(entry_err("resolve hard link target", &tcomps))?;
        if FileType::from_raw_mode(tstat.st_mode) == FileType::Directory {
            return Err(ImageError::InvalidLayer(format!(
                "hard link {} to directory {}",
                show(&comps),
                show(&tcomps)
            )));
        }
        if existing.is_some() {
            let st = rfs::statat(&pdir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(entry_err("stat", &comps))?;
            if st.st_dev == tstat.st_dev && st.st_ino == tstat.st_ino {
                return Ok(());
            }
            remove_all_at(pdir.as_fd(), name).map_err(entry_err("remove", &comps))?;
        }
        // Without AT_SYMLINK_FOLLOW a symlink target is linked itself, never followed.
        rfs::linkat(&tdir, tname.as_os_str(), &pdir, name, AtFlags::empty())
            .map_err(entry_err("hard link", &comps))?;
        return Ok(());
    }

    if existing.is_some() {
        remove_all_at(pdir.as_fd(), name).map_err(entry_err("remove", &comps))?;
    }

    if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
        let declared = entry.size();
        if stats.bytes.saturating_add(declared) > opts.max_bytes {
            return Err(ImageError::TooLarge(format!(
                "{} would take the layer past {} bytes",
                show(&comps),
                opts.max_bytes
            )));
        }
        let fd = rfs::openat(
            &pdir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(entry_err("create", &comps))?;
        let mut file = File::from(fd);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(bad_tar)?;
            if n == 0 {
                break;
            }
            stats.bytes += n as u64;
            if stats.bytes > opts.max_bytes {
                return Err(ImageError::TooLarge(format!(
                    "more than {} bytes",
                    opts.max_bytes
                )));
            }
            file.write_all(&buf[..n])
                .map_err(ImageError::io(format!("write {}", show(&comps))))?;
        }
        set_meta(file.as_fd(), &meta, opts, &comps, true)?;
        rfs::futimens(&file, &times(meta.mtime)).map_err(entry_err("set times", &comps))?;
        return Ok(());
    }

    if kind.is_symlink() {
        let target = entry.link_name_bytes().ok_or_else(|| {
            ImageError::InvalidLayer(format!("symlink {} has no target", show(&comps)))
        })?;
        if target.len() > opts.max_path_len {
            return Err(ImageError::TooLarge(format!(
                "link target longer than {} bytes",
                opts.max_path_len
            )));
        }
        // The target is data: it is stored as written and only ever resolved inside the root.
        rfs::symlinkat(OsStr::from_bytes(&target), &pdir, name)
            .map_err(entry_err("symlink", &comps))?;
        // A link's size is its target's length, as moby sizes layers.
        stats.bytes += target.len() as u64;
        finish_special(pdir.as_fd(), name, &meta, opts, &comps, false)?;
        return Ok(());
    }

    let (file_type, dev) = if kind.is_character_special() || kind.is_block_special() {
        if !opts.allow_devices {
            tracing::debug!(path = %show(&comps), "skipping device node");
            return Ok(());
        }
        let h = entry.header();
        let major = h.device_major().map_err(bad_tar)?.unwrap_or(0);
        let minor = h.device_minor().map_err(bad_tar)?.unwrap_or(0);
        let t = if kind.is_character_special() {
            FileType::CharacterDevice
        } else {
            FileType::BlockDevice
        };
        (t, rfs::makedev(major, minor))
    } else if kind.is_fifo() {
        (FileType::Fifo, 0)
    } else {
        tracing::debug!(path = %show(&comps), kind = ?kind, "skipping unsupported entry type");
        return Ok(());
    };
    rfs::mknodat(&pdir, name, file_type, Mode::from_raw_mode(0o600), dev)
        .map_err(entry_err("mknod", &comps))?;
    finish_special(pdir.as_fd(), name, &meta, opts, &comps, true)
}

/// Owner, mode and mtime of a symlink or a node, by name in its parent, never following it.
fn finish_special(
    pdir: BorrowedFd<'_>,
    name: &OsStr,
    meta: &Meta,
    opts: &ApplyOptions,
    comps: &[OsString],
    mode: bool,
) -> Result<(), ImageError> {
    if opts.same_owner {
        rfs::chownat(
            pdir,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(entry_err("chown", comps))?;
    }
    if mode {
        // The node was just made by us, so the name is not a symlink: fchmodat on it is safe.
        rfs::chmodat(pdir, name, Mode::from_raw_mode(meta.mode), AtFlags::empty())
            .map_err(entry_err("chmod", comps))?;
    }
    rfs::utimensat(pdir, name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(entry_err("set times", comps))?;
    Ok(())
}

/// The longest GNU long name/link or PAX header block accepted (the tar reader holds each
/// whole in memory before handing out the entry it describes).
pub const MAX_TAR_META: u64 = 1 << 20;

/// Where [`MetaCap`] is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TarPos {
    /// Collecting a 512-byte header.
    Header,
    /// Collecting a GNU sparse extension block (after an `S` header that says more follow).
    SparseExt,
    /// Passing over `n` bytes of entry data (padded to 512).
    Data(u64),
}

/// Watches a tar stream block by block, as the tar reader will read it, and refuses a GNU
/// long name/link (`L`, `K`) or PAX (`x`, `g`) entry larger than `cap` before the reader
/// buffers it: such an entry would otherwise make the daemon allocate whatever size a hostile
/// layer names. PAX `size` records are followed, so the blocks stay in step.
pub struct MetaCap<R> {
    inner: R,
    cap: u64,
    pos: TarPos,
    block: [u8; 512],
    filled: usize,
    /// The data of the PAX header being passed over (kept to read its `size`).
    pax: Option<Vec<u8>>,
    /// A size a PAX header set for the next entry.
    next_size: Option<u64>,
}

impl<R> MetaCap<R> {
    pub fn new(inner: R, cap: u64) -> Self {
        Self {
            inner,
            cap,
            pos: TarPos::Header,
            block: [0; 512],
            filled: 0,
            pax: None,
            next_size: None,
        }
    }
}

/// A tar number: octal text, or base-256 when the first byte's high bit is set.
fn tar_number(field: &[u8]) -> u64 {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let tail = &field[field.len().saturating_sub(8)..];
        return tail.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    std::str::from_utf8(&text)
        .ok()
        .and_then(|t| u64::from_str_radix(t, 8).ok())
        .unwrap_or(0)
}

/// The `size` record of PAX header data (`"<len> size=<n>\n"` records).
fn pax_size(data: &[u8]) -> Option<u64> {
    data.split(|b| *b == b'\n').find_map(|rec| {
        let (_, kv) = rec.split_at(rec.iter().position(|b| *b == b' ')? + 1);
        let v = kv.strip_prefix(b"size=")?;
        std::str::from_utf8(v).ok()?.parse().ok()
    })
}

impl<R: Read> MetaCap<R> {
    fn header_done(&mut self) -> io::Result<()> {
        let h = self.block;
        if h.iter().all(|b| *b == 0) {
            return Ok(()); // end-of-archive blocks
        }
        let kind = h[156];
        let mut size = tar_number(&h[124..136]);
        let meta = matches!(kind, b'L' | b'K' | b'x' | b'g');
        if !meta {
            if let Some(s) = self.next_size.take() {
                size = s;
            }
        }
        if meta && size > self.cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a tar header entry of {size} bytes (the limit is {})",
                    self.cap
                ),
            ));
        }
        if kind == b'x' {
            self.pax = Some(Vec::with_capacity(size as usize));
        }
        let padded = size.div_ceil(512).saturating_mul(512);
        self.pos = if kind == b'S' && h[482] != 0 {
            // Sparse extension blocks come before the data; the data length is counted
            // once they are through.
            self.next_size = Some(size);
            TarPos::SparseExt
        } else if padded > 0 {
            TarPos::Data(padded)
        } else {
            TarPos::Header
        };
        if kind == b'x' && padded == 0 {
            self.pax = None;
        }
        Ok(())
    }
}

impl<R: Read> Read for MetaCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut i = 0;
        while i < n {
            match self.pos {
                TarPos::Data(left) => {
                    let k = (n - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    if let Some(p) = &mut self.pax {
                        p.extend_from_slice(&buf[i..i + k]);
                    }
                    i += k;
                    let left = left - k as u64;
                    self.pos = if left == 0 {
                        if let Some(p) = self.pax.take() {
                            self.next_size = pax_size(&p);
                        }
                        TarPos::Header
                    } else {
                        TarPos::Data(left)
                    };
                }
                TarPos::Header | TarPos::SparseExt => {
                    let k = (512 - self.filled).min(n - i);
                    self.block[self.filled..self.filled + k].copy_from_slice(&buf[i..i + k]);
                    self.filled += k;
                    i += k;
                    if self.filled == 512 {
                        self.filled = 0;
                        if self.pos == TarPos::SparseExt {
                            if self.block[504] == 0 {
                                let size = self.next_size.take().unwrap_or(0);
                                let padded = size.div_ceil(512).saturating_mul(512);
                                self.pos = if padded > 0 {
                                    TarPos::Data(padded)
                                } else {
                                    TarPos::Header
                                };
                            }
                        } else {
                            self.header_done()?;
                        }
                    }
                }
            }
        }
        Ok(n)
    }
}
