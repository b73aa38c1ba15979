//! Read-only cgroup v1 mounts in a created container.
//!
//! On a cgroup v1 host libcontainer mounts a tmpfs at `/sys/fs/cgroup` and each hierarchy under
//! it without the spec's `ro` (its v2 path honours it). A container could then write its own
//! limits (`pids.max`, `cpu.cfs_quota_us`...) and escape what it was given. Docker's containers
//! see these mounts read-only unless privileged, so once the container exists (its init waits
//! for `start`) this makes the whole `/sys/fs/cgroup` tree read-only in its mount namespace.

use std::path::Path;

use crate::RuntimeError;

/// Whether the spec's `/sys/fs/cgroup` mount is a read-only `cgroup` mount.
pub fn wants_readonly(spec: &oci_spec::runtime::Spec) -> bool {
    spec.mounts().iter().flatten().any(|m| {
        m.destination() == Path::new("/sys/fs/cgroup")
            && m.typ().as_deref() == Some("cgroup")
            && m.options().iter().flatten().any(|o| o == "ro")
    })
}

/// Whether this host's `/sys/fs/cgroup` is cgroup v2 (then libcontainer's mount is right).
fn host_is_unified() -> bool {
    rustix::fs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.f_type == libc::CGROUP2_SUPER_MAGIC)
}

/// Makes `/sys/fs/cgroup` and every mount under it read-only in the mount namespace of `pid`
/// (a created container's init) when its spec asks for it (`wanted`, from
/// [`wants_readonly`]) and the host is on cgroup v1. Runs in a forked child, so the caller
/// stays in its own namespace.
pub fn apply(pid: i32, wanted: bool) -> Result<(), RuntimeError> {
    if !wanted || host_is_unified() {
        return Ok(());
    }
    // Opened here and read only where mount_setattr is missing: after the child's setns,
    // /proc would be the container's.
    let info_path = format!("/proc/{pid}/mountinfo");
    let info = std::fs::File::open(&info_path).map_err(RuntimeError::io("open", &info_path))?;
    let ns_path = format!("/proc/{pid}/ns/mnt");
    let ns = std::fs::File::open(&ns_path).map_err(RuntimeError::io("open", &ns_path))?;
    let ns_fd = std::os::fd::AsRawFd::as_raw_fd(&ns);
    // SAFETY: the embedded runtime only runs in single-threaded processes (see
    // `libcontainer_rt`), so the forked child is a whole copy of the only thread.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(RuntimeError::io("fork", "cgroup remount")(
            std::io::Error::last_os_error(),
        ));
    }
    if child == 0 {
        // SAFETY: setns on a valid namespace fd; `_exit` never returns.
        unsafe {
            if libc::setns(ns_fd, libc::CLONE_NEWNS) != 0 {
                libc::_exit(1);
            }
            libc::_exit(remount_readonly(info));
        }
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    let r = unsafe { libc::waitpid(child, &mut status, 0) };
    if r != child || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(RuntimeError::Libcontainer(format!(
            "could not make the container's cgroup mounts read-only (status {status:#x})"
        )));
    }
    Ok(())
}

/// In the container's mount namespace: `mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)` on
/// `/sys/fs/cgroup`, or a read-only bind remount of each mount under it (listed by `info`,
/// the container's mountinfo opened before the `setns`) where the kernel lacks it (before
/// 5.12). Returns the child's exit status.
///
/// # Safety
/// Only for the child [`apply`] forks from a single-threaded process.
unsafe fn remount_readonly(mut info: std::fs::File) -> i32 {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let root = c"/sys/fs/cgroup";
    // SAFETY: a valid path and attribute struct of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            root.as_ptr(),
            libc::AT_RECURSIVE | libc::AT_SYMLINK_NOFOLLOW,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r == 0 {
        return 0;
    }
    if std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
        return 2;
    }
    let mut text = String::new();
    if std::io::Read::read_to_string(&mut info, &mut text).is_err() {
        return 4;
    }
    for line in text.lines() {
        let Some(point) = line.split(' ').nth(4) else {
            continue;
        };
        if point != "/sys/fs/cgroup" && !point.starts_with("/sys/fs/cgroup/") {
            continue;
        }
        let Ok(target) = std::ffi::CString::new(unescape_mountinfo(point)) else {
            continue;
        };
        // A bind remount must keep the flags a mount has locked; these are the ones Docker's
        // cgroup mounts carry.
        let flags = libc::MS_REMOUNT
            | libc::MS_BIND
            | libc::MS_RDONLY
            | libc::MS_NOSUID
            | libc::MS_NODEV
            | libc::MS_NOEXEC;
        // SAFETY: NUL-terminated target; null source, type and data are allowed for remounts.
        let r = unsafe {
            libc::mount(
                std::ptr::null(),
                target.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            )
        };
        if r != 0 {
            return 3;
        }
    }
    0
}

/// A mountinfo field with its octal escapes (`\040` for a space) decoded.
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readonly_is_asked_by_the_cgroup_mounts_options() {
        let spec = |opts: &[&str]| -> oci_spec::runtime::Spec {
            serde_json::from_value(serde_json::json!({"ociVersion": "1.0.2", "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc", "options": ["ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": opts},
            ]}))
            .unwrap()
        };
        assert!(wants_readonly(&spec(&["nosuid", "ro"])));
        assert!(!wants_readonly(&spec(&["nosuid", "rw"])));
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), b"/a b");
        assert_eq!(unescape_mountinfo("/plain"), b"/plain");
        assert_eq!(unescape_mountinfo("/end\\04"), b"/end\\04");
    }
}
