//! Network namespaces as handles, and running code inside one.
//!
//! A network namespace belongs to a thread, not a process: `setns(2)` moves only the calling
//! thread, and sockets (netlink ones included) stay bound to the namespace they were created
//! in, whichever thread uses them later. So [`Netns::run`] runs a closure on a short-lived
//! thread of its own that `setns`es first; the daemon's threads never change namespace, and
//! anything the closure opens (a netlink socket, the DNS server's sockets, a file under
//! `/proc/sys/net`) keeps pointing into the target namespace after the thread is gone.
//!
//! Child processes inherit the namespace of the thread that spawns them, so `nft` and test
//! helpers run from inside [`Netns::run`] act on that namespace too.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::error::{NetworkError, Result};

/// An open network namespace (an nsfs file: `/proc/<pid>/ns/net`, `/proc/thread-self/ns/net`
/// or a bind mount of one such as `/run/berth/netns/<id>`). The namespace lives at least as
/// long as this handle.
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
}

impl Netns {
    /// Opens the namespace at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path)
            .map_err(NetworkError::io(format!("open netns {}", path.display())))?;
        Ok(Self { fd: file.into() })
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<Self> {
        Self::open(Path::new("/proc/thread-self/ns/net"))
    }

    /// Wraps an fd that refers to a network namespace.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self { fd }
    }

    /// A fresh namespace with loopback up, held only by the returned handle: the kernel frees
    /// it (and every interface in it) when the last handle and process in it are gone.
    pub fn new_anonymous() -> Result<Self> {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("netns-new".into())
                .spawn_scoped(s, || -> Result<Self> {
                    // SAFETY: only CLONE_NEWNET is unshared, never CLONE_FILES, so this thread
                    // keeps sharing the fd table with the rest of the process. The thread ends
                    // right after, so no other work runs in the new namespace by accident.
                    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }
                        .map_err(|e| NetworkError::io("unshare netns")(e.into()))?;
                    loopback_up().map_err(NetworkError::io("set lo up"))?;
                    Self::current()
                })
                .map_err(NetworkError::io("spawn netns thread"))?
                .join()
                .unwrap_or_else(|_| Err(thread_panicked()))
        })
    }

    /// Another handle on the same namespace.
    pub fn try_clone(&self) -> Result<Self> {
        let fd = self
            .fd
            .try_clone()
            .map_err(NetworkError::io("dup netns fd"))?;
        Ok(Self { fd })
    }

    /// The path of this namespace through `/proc/self/fd`, usable wherever a namespace path is
    /// expected while this handle is open (e.g. by an OCI runtime in this process tree).
    pub fn proc_path(&self) -> std::path::PathBuf {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd()).into()
    }

    /// Runs `f` on a new thread inside this namespace and returns its result. Panics inside
    /// `f` become an error.
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> Result<T> {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("netns-run".into())
                .spawn_scoped(s, || -> Result<T> {
                    rustix::thread::move_into_link_name_space(
                        self.fd.as_fd(),
                        Some(LinkNameSpaceType::Network),
                    )
                    .map_err(|e| NetworkError::io("setns")(e.into()))?;
                    Ok(f())
                })
                .map_err(NetworkError::io("spawn netns thread"))?
                .join()
                .unwrap_or_else(|_| Err(thread_panicked()))
        })
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Netns {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn thread_panicked() -> NetworkError {
    NetworkError::Io {
        context: "netns thread".into(),
        source: std::io::Error::other("the thread panicked"),
    }
}

/// Sets `lo` up in the calling thread's network namespace (an ioctl; no netlink needed).
pub(crate) fn loopback_up() -> std::io::Result<()> {
    set_link_up_ioctl("lo")
}

/// Sets a link up by name with SIOCSIFFLAGS in the calling thread's namespace.
fn set_link_up_ioctl(name: &str) -> std::io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: plain socket(2); the result is checked and owned below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh socket fd that nothing else owns.
    let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data, for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags of the interface named in req into req.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifru_flags is the union member SIOCGIFFLAGS just filled in.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS sets the flags of the interface named in req; req is valid.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
