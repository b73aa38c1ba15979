//! Network namespaces made by the engine for `none` and the default network (until the
//! networking crate lands): a fresh netns with only loopback, up, kept alive by a bind mount
//! at `<exec-root>/netns/<id>` and handed to the runtime by path.
//!
//! Making a namespace costs a couple of milliseconds (a thread, `unshare`, loopback up), so
//! [`Pool`] keeps a few made in advance, held only by open fds: a start takes one and binds
//! it to the container's path, and a background thread makes the next. A daemon that dies
//! closes the fds and the kernel frees the spare namespaces; nothing is left on the host.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use berth_network::netns::Netns;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::error::{EngineError, Result};

/// Spare namespaces kept ready.
const SPARES: usize = 2;

/// Namespaces made in advance.
#[derive(Default)]
pub struct Pool {
    spares: Mutex<Vec<Netns>>,
    refilling: AtomicBool,
}

impl Pool {
    /// Creates the namespace file for container `id` from a spare (or a new namespace when
    /// none is ready); returns its path. The pool is topped up in the background.
    pub fn create(self: &std::sync::Arc<Self>, exec_root: &Path, id: &str) -> Result<PathBuf> {
        let spare = self.spares.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let fd = match spare {
            Some(fd) => fd,
            None => Netns::new_anonymous().map_err(|e| EngineError::Runtime(e.to_string()))?,
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
                    match Netns::new_anonymous() {
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

/// Releases a namespace file made by [`Pool::create`]. Missing files are fine.
pub fn remove(path: &Path) {
    let _ = umount2(path, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path);
}
