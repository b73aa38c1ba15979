//! Network namespaces made by the engine for `none` and the default network (until the
//! networking crate lands): a fresh netns with only loopback, up, kept alive by a bind mount
//! at `<exec-root>/netns/<id>` and handed to the runtime by path.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

use crate::error::{EngineError, Result};

/// Creates the namespace file for container `id`; returns its path.
pub fn create(exec_root: &Path, id: &str) -> Result<PathBuf> {
    let dir = exec_root.join("netns");
    std::fs::create_dir_all(&dir).map_err(EngineError::io(format!("create {}", dir.display())))?;
    let path = dir.join(id);
    std::fs::File::create(&path).map_err(EngineError::io(format!("create {}", path.display())))?;
    let target = path.clone();
    // unshare() moves only the calling thread, so a short-lived thread does it.
    let made = std::thread::spawn(move || -> std::result::Result<(), String> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare netns: {e}"))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("bind netns: {e}"))?;
        loopback_up().map_err(|e| format!("loopback up: {e}"))
    })
    .join()
    .map_err(|_| EngineError::Runtime("netns thread panicked".into()))?;
    if let Err(e) = made {
        remove(&path);
        return Err(EngineError::Runtime(e));
    }
    Ok(path)
}

/// Releases a namespace file made by [`create`]. Missing files are fine.
pub fn remove(path: &Path) {
    let _ = umount2(path, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path);
}

/// Sets `lo` up in the calling thread's network namespace.
fn loopback_up() -> std::io::Result<()> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| {
        // Loopback is down, so binding may fail on some kernels; a raw socket() is enough.
        // SAFETY: plain socket(2) call; the fd is owned by the UdpSocket below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just created and is owned by nobody else.
        Ok(unsafe { <std::net::UdpSocket as std::os::fd::FromRawFd>::from_raw_fd(fd) })
    })?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags of the named interface into req.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifru_flags is the member SIOCGIFFLAGS just filled.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS sets the flags of the named interface from req.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
