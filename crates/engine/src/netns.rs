//! Network namespaces made by the engine for `none` and the default network (until the
//! networking crate lands): a fresh netns with only loopback, up, kept alive by a bind mount
//! at `<exec-root>/netns/<id>` and handed to the runtime by path.
//!
//! Making a namespace costs a couple of milliseconds (a thread, `unshare`, loopback up), so
//! [`Pool`] keeps a few made in advance, held only by open fds: a start takes one and binds
//! it to the container's path, and a background thread makes the next. A daemon that dies
//! closes the fds and the kernel frees the spare namespaces; nothing is left on the host.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

use crate::error::{EngineError, Result};

/// Spare namespaces kept ready.
const SPARES: usize = 2;

/// Namespaces made in advance.
#[derive(Default)]
pub struct Pool {
    spares: Mutex<Vec<OwnedFd>>,
    refilling: AtomicBool,
}

impl Pool {
    /// Creates the namespace file for container `id` from a spare (or a new namespace when
    /// none is ready); returns its path. The pool is topped up in the background.
    pub fn create(self: &std::sync::Arc<Self>, exec_root: &Path, id: &str) -> Result<PathBuf> {
        let spare = self.spares.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let fd = match spare {
            Some(fd) => fd,
            None => make().map_err(EngineError::Runtime)?,
        };
        self.refill();
        let dir = exec_root.join("netns");
        std::fs::create_dir_all(&dir)
            .map_err(EngineError::io(format!("create {}", dir.display())))?;
        let path = dir.join(id);
        std::fs::File::create(&path)
            .map_err(EngineError::io(format!("create {}", path.display())))?;
        let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
        if let Err(e) = mount(
            Some(source.as_str()),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            remove(&path);
            return Err(EngineError::Runtime(format!("bind netns: {e}")));
        }
        Ok(path)
    }

    /// Makes spares up to [`SPARES`] on a thread of its own, unless one is at it already.
    fn refill(self: &std::sync::Arc<Self>) {
        if self.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = self.clone();
        let spawned = std::thread::Builder::new()
            .name("netns-pool".into())
            .spawn(move || {
                loop {
                    let have = pool.spares.lock().unwrap_or_else(|e| e.into_inner()).len();
                    if have >= SPARES {
                        break;
                    }
                    // This thread ends when the pool is full: it may move itself.
                    match make_in_this_thread() {
                        Ok(fd) => pool
                            .spares
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(fd),
                        Err(e) => {
                            tracing::warn!("netns pool: {e}");
                            break;
                        }
                    }
                }
                pool.refilling.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.refilling.store(false, Ordering::Release);
        }
    }
}

/// A new network namespace with loopback up, held by an fd.
fn make() -> std::result::Result<OwnedFd, String> {
    // unshare() moves only the calling thread, so a short-lived thread does it.
    std::thread::spawn(make_in_this_thread)
        .join()
        .map_err(|_| "netns thread panicked".to_owned())?
}

/// Moves the calling thread into a new namespace and returns it: only for threads that end
/// right after (the pool's refill thread, [`make`]'s own).
fn make_in_this_thread() -> std::result::Result<OwnedFd, String> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare netns: {e}"))?;
    loopback_up().map_err(|e| format!("loopback up: {e}"))?;
    std::fs::File::open("/proc/thread-self/ns/net")
        .map(OwnedFd::from)
        .map_err(|e| format!("open netns: {e}"))
}

/// Releases a namespace file made by [`Pool::create`]. Missing files are fine.
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
