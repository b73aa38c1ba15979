//! Read-only cgroup v1 mounts in a created container.
//!
//! On a cgroup v1 host libcontainer mounts a tmpfs at `/sys/fs/cgroup` and each hierarchy under
//! it without the spec's `ro` (its v2 path honours it). A container could then write its own
//! limits (`pids.max`, `cpu.cfs_quota_us`...) and escape what it was given. Docker's containers
//! see these mounts read-only unless privileged, so once the container exists (its init waits
//! for `start`) this makes the whole `/sys/fs/cgroup` tree read-only in its mount namespace.

use std::path::Path;

use crate::RuntimeError;

/// The spec's `/sys/fs/cgroup` mount, if it is a read-only `cgroup` mount.
pub fn wants_readonly(spec: &serde_json::Value) -> bool {
    spec["mounts"].as_array().is_some_and(|mounts| {
        mounts.iter().any(|m| {
            m["destination"] == "/sys/fs/cgroup"
                && m["type"] == "cgroup"
                && m["options"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|x| x == "ro"))
        })
    })
}

/// Whether this host's `/sys/fs/cgroup` is cgroup v2 (then libcontainer's mount is right).
fn host_is_unified() -> bool {
    rustix::fs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.f_type == libc::CGROUP2_SUPER_MAGIC)
}

/// Makes `/sys/fs/cgroup` and every mount under it read-only in the mount namespace of `pid`
/// (a created container's init) when the spec at `config` asks for it and the host is on
/// cgroup v1. Runs in a forked child, so the caller stays in its own namespace.
pub fn apply(pid: i32, config: &Path) -> Result<(), RuntimeError> {
    if host_is_unified() {
        return Ok(());
    }
    let data = std::fs::read(config).map_err(RuntimeError::io("read", config))?;
    let spec: serde_json::Value = serde_json::from_slice(&data)
        .map_err(|e| RuntimeError::InvalidSpec(format!("{}: {e}", config.display())))?;
    if !wants_readonly(&spec) {
        return Ok(());
    }
    // The container's mounts under /sys/fs/cgroup, deepest last, from the host's procfs (for
    // kernels without mount_setattr).
    let info_path = format!("/proc/{pid}/mountinfo");
    let info = std::fs::read_to_string(&info_path).map_err(RuntimeError::io("read", &info_path))?;
    let mut targets: Vec<std::ffi::CString> = Vec::new();
    for line in info.lines() {
        let Some(point) = line.split(' ').nth(4) else {
            continue;
        };
        if point == "/sys/fs/cgroup" || point.starts_with("/sys/fs/cgroup/") {
            if let Ok(c) = std::ffi::CString::new(unescape_mountinfo(point)) {
                targets.push(c);
            }
        }
    }
    let ns_path = format!("/proc/{pid}/ns/mnt");
    let ns = std::fs::File::open(&ns_path).map_err(RuntimeError::io("open", &ns_path))?;
    let ns_fd = std::os::fd::AsRawFd::as_raw_fd(&ns);
    // SAFETY: the embedded runtime only runs in single-threaded processes (see
    // `libcontainer_rt`), so the child may run anything; it still makes only raw syscalls on
    // memory prepared before the fork, then `_exit`s.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(RuntimeError::io("fork", "cgroup remount")(
            std::io::Error::last_os_error(),
        ));
    }
    if child == 0 {
        // SAFETY: raw syscalls on valid fds and NUL-terminated strings; `_exit` never returns.
        unsafe {
            if libc::setns(ns_fd, libc::CLONE_NEWNS) != 0 {
                libc::_exit(1);
            }
            libc::_exit(remount_readonly(&targets));
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
/// `/sys/fs/cgroup`, or a read-only bind remount of each target where the kernel lacks it
/// (before 5.12). Returns the child's exit status.
///
/// # Safety
/// Only raw syscalls: callable in a child forked from a multi-threaded parent.
unsafe fn remount_readonly(targets: &[std::ffi::CString]) -> i32 {
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
    // SAFETY: reads this thread's errno.
    if unsafe { *libc::__errno_location() } != libc::ENOSYS {
        return 2;
    }
    for t in targets {
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
                t.as_ptr(),
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
        let spec = |opts: &[&str]| {
            serde_json::json!({"mounts": [
                {"destination": "/proc", "type": "proc", "options": ["ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "options": opts},
            ]})
        };
        assert!(wants_readonly(&spec(&["nosuid", "ro"])));
        assert!(!wants_readonly(&spec(&["nosuid", "rw"])));
        assert!(!wants_readonly(&serde_json::json!({})));
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), b"/a b");
        assert_eq!(unescape_mountinfo("/plain"), b"/plain");
        assert_eq!(unescape_mountinfo("/end\\04"), b"/end\\04");
    }
}
