//! The shim binary as containers could reach it: every process the runtime forks for a
//! container (its init, exec'd processes) runs the shim's image until it execs the user's
//! command, so its `/proc/<pid>/exe` is the shim binary. To make the CVE-2019-5736 class of
//! attack (a container process writing the host binary through that link) impossible, the
//! daemon runs shims from a read-only bind mount of the binaries' directory under the exec
//! root: a write through `/proc/<pid>/exe` resolves to that mount and fails with `EROFS`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::error::{EngineError, Result};

/// Makes `<exec_root>/bin` a read-only bind mount of the directory holding the shim binary
/// `src` (so the shim's sibling binaries come along), reusing one a previous daemon left if it
/// still shows the same directory; returns the shim's path under it.
pub fn protect(src: &Path, exec_root: &Path) -> Result<PathBuf> {
    let (Some(src_dir), Some(name)) = (src.parent(), src.file_name()) else {
        return Err(EngineError::InvalidArgument(format!(
            "shim binary path {} has no directory",
            src.display()
        )));
    };
    let target = exec_root.join("bin");
    std::fs::create_dir_all(&target)
        .map_err(EngineError::io(format!("create {}", target.display())))?;
    let src_meta = std::fs::metadata(src_dir)
        .map_err(EngineError::io(format!("stat {}", src_dir.display())))?;
    if is_mount_point(&target) {
        let same = std::fs::metadata(&target)
            .map(|m| m.dev() == src_meta.dev() && m.ino() == src_meta.ino())
            .unwrap_or(false);
        if same && is_read_only(&target) {
            return Ok(target.join(name));
        }
        // Another directory (the binaries moved): detach it; shims running from it keep it.
        umount2(&target, MntFlags::MNT_DETACH)
            .map_err(|e| EngineError::Runtime(format!("unmount {}: {e}", target.display())))?;
    }
    let fail = |what: &str, e: nix::Error| {
        EngineError::Runtime(format!(
            "{what} {} on {}: {e}",
            src_dir.display(),
            target.display()
        ))
    };
    mount(
        Some(src_dir),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| fail("bind-mount", e))?;
    let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NODEV;
    if let Err(e) = mount(None::<&str>, &target, None::<&str>, ro, None::<&str>) {
        let _ = umount2(&target, MntFlags::MNT_DETACH);
        return Err(fail("remount read-only", e));
    }
    Ok(target.join(name))
}

/// Unmounts `<exec_root>/bin` (when no shim runs from it any more).
pub fn release(exec_root: &Path) {
    let target = exec_root.join("bin");
    if is_mount_point(&target) {
        if let Err(e) = umount2(&target, MntFlags::MNT_DETACH) {
            tracing::warn!("unmount {}: {e}", target.display());
        }
    }
}

/// Whether `path` is a mount point in our mount namespace.
fn is_mount_point(path: &Path) -> bool {
    let want = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| unescape(p) == want)
}

/// Undoes mountinfo's octal escapes (`\040` for a space...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_read_only(path: &Path) -> bool {
    nix::sys::statvfs::statvfs(path)
        .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\"), "/end\\");
    }
}
