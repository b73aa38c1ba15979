//! The embedded runtime: youki's `libcontainer`, called in-process.
//!
//! libcontainer forks with raw `clone3` and makes its caller non-dumpable, so this runs only in
//! single-threaded processes (the shim's runtime helper `berth-shim-runtime`, and the
//! `berth runtime` CLI), never in the multi-threaded daemon.
//! The container's init is cloned as a child of the caller; a caller that exits hands it to its
//! nearest child subreaper (the shim), which collects it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;

use crate::{Runtime, RuntimeError, Status, Stdio, seccomp_bpf};

/// libcontainer with its state under one root directory.
pub struct Libcontainer {
    root: PathBuf,
}

fn lc_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Libcontainer(docker_wording(&e.to_string()))
}

/// Rephrases libcontainer's exec failures the way runc words them, which is what Docker's
/// clients match on to pick exit codes 127 (not found) and 126 (cannot invoke).
fn docker_wording(msg: &str) -> String {
    if let Some(rest) = msg.split("executable '").nth(1) {
        if let Some((exe, tail)) = rest.split_once('\'') {
            if tail.contains("correct permissions") {
                return format!(
                    "unable to start container process: exec: \"{exe}\": permission denied"
                );
            }
            if tail.contains("not found") {
                return format!(
                    "unable to start container process: exec: \"{exe}\": executable file not found in $PATH"
                );
            }
        }
    }
    msg.to_owned()
}

fn dev_null() -> Result<OwnedFd, RuntimeError> {
    std::fs::File::open("/dev/null")
        .map(OwnedFd::from)
        .map_err(RuntimeError::io("open", "/dev/null"))
}

impl Libcontainer {
    /// A runtime keeping container state under `root` (created if missing).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    fn builder(&self, id: &str, stdio: Stdio) -> Result<ContainerBuilder, RuntimeError> {
        std::fs::create_dir_all(&self.root).map_err(RuntimeError::io("create", &self.root))?;
        let b = ContainerBuilder::new(id.to_owned(), SyscallType::Linux)
            .with_root_path(&self.root)
            .map_err(lc_err)?;
        Ok(match stdio {
            Stdio::Pipes {
                stdin,
                stdout,
                stderr,
            } => {
                let stdin = match stdin {
                    Some(fd) => fd,
                    None => dev_null()?,
                };
                b.with_stdin(stdin).with_stdout(stdout).with_stderr(stderr)
            }
            Stdio::Console { socket } => b.with_console_socket(Some(socket)),
        })
    }

    fn load(&self, id: &str) -> Result<Container, RuntimeError> {
        let dir = self.root.join(id);
        if !dir.join("state.json").exists() {
            return Err(RuntimeError::NotFound(id.to_owned()));
        }
        Container::load(dir).map_err(lc_err)
    }
}

impl Runtime for Libcontainer {
    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<i32, RuntimeError> {
        let builder = self.builder(id, stdio)?;
        let prepared = seccomp_bpf::prepare(&self.root, bundle)?;
        let builder = match prepared.spec {
            Some((dir, Some(executor))) => builder.with_executor(executor).as_init(dir),
            Some((dir, None)) => builder.as_init(dir),
            None => builder.as_init(bundle),
        };
        let container = builder
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(lc_err)?;
        let pid = container
            .pid()
            .map(|p| p.as_raw())
            .ok_or_else(|| RuntimeError::Libcontainer("created container has no pid".into()))?;
        // libcontainer leaves cgroup v1 mounts writable whatever the spec says, and always
        // enables the OOM killer.
        let fixed = crate::cgroup_ro::apply(pid, prepared.readonly_cgroups).and_then(|()| {
            if prepared.disable_oom_killer {
                disable_oom_killer(pid)
            } else {
                Ok(())
            }
        });
        if let Err(e) = fixed {
            if let Ok(mut c) = self.load(id) {
                let _ = c.delete(true);
            }
            return Err(e);
        }
        Ok(pid)
    }

    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id)?.start().map_err(lc_err)
    }

    fn exec(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        stdio: Stdio,
    ) -> Result<i32, RuntimeError> {
        let container = self.load(id)?;
        let mut process = process.clone();
        // No empty HOME for libcontainer's glibc lookup inside the container (see `prepare`).
        let rootfs = rootfs_of(container.bundle()).unwrap_or_default();
        crate::user::fill_home(&mut process, &rootfs);
        let executor = seccomp_bpf::prepare_exec(&self.root, container.bundle(), &mut process)?;
        let dir = self.root.join(id);
        let path = dir.join(format!("exec-{}.json", rand_suffix()));
        let json = serde_json::to_vec(&process).map_err(|e| RuntimeError::Spec(e.to_string()))?;
        std::fs::write(&path, json).map_err(RuntimeError::io("write", &path))?;
        let result = self
            .builder(id, stdio)
            .map(|b| match executor {
                Some(e) => b.with_executor(e),
                None => b,
            })
            .and_then(|b| {
                b.as_tenant()
                    .with_process(Some(&path))
                    .with_detach(true)
                    .build()
                    .map_err(lc_err)
            })
            .map(|pid| pid.as_raw());
        let _ = std::fs::remove_file(&path);
        result
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let sig = Signal::try_from(signal).map_err(lc_err)?;
        self.load(id)?.kill(sig, all).map_err(lc_err)
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id)?.pause().map_err(lc_err)
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id)?.resume().map_err(lc_err)
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        match self.load(id) {
            Ok(mut c) => c.delete(force).map_err(lc_err),
            Err(RuntimeError::NotFound(_)) => {
                // A half-created container leaves a directory without state: remove it.
                let _ = std::fs::remove_dir_all(self.root.join(id));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn state(&self, id: &str) -> Result<(Status, Option<i32>), RuntimeError> {
        let mut c = self.load(id)?;
        c.refresh_status().map_err(lc_err)?;
        let status = match c.status() {
            ContainerStatus::Creating => Status::Creating,
            ContainerStatus::Created => Status::Created,
            ContainerStatus::Running => Status::Running,
            ContainerStatus::Paused => Status::Paused,
            ContainerStatus::Stopped => Status::Stopped,
        };
        Ok((status, c.pid().map(|p| p.as_raw())))
    }
}

/// The root filesystem path of the bundle at `bundle`, made absolute.
/// Turns the OOM killer off for the cgroup v1 memory cgroup of `pid` (a created container's
/// init). On cgroup v2 there is no such switch, and the engine never asks for it there.
fn disable_oom_killer(pid: i32) -> Result<(), RuntimeError> {
    let path = format!("/proc/{pid}/cgroup");
    let cgroups = std::fs::read_to_string(&path).map_err(RuntimeError::io("read", &path))?;
    let rel = cgroups
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':').skip(1);
            Some((parts.next()?, parts.next()?))
        })
        .find(|(controllers, _)| controllers.split(',').any(|c| c == "memory"))
        .map(|(_, rel)| rel.trim_start_matches('/'))
        .ok_or_else(|| {
            RuntimeError::Libcontainer(
                "the container has no memory cgroup to disable the OOM killer in".into(),
            )
        })?;
    let file = Path::new("/sys/fs/cgroup/memory")
        .join(rel)
        .join("memory.oom_control");
    std::fs::write(&file, "1").map_err(RuntimeError::io("write", &file))
}

fn rootfs_of(bundle: &Path) -> Option<PathBuf> {
    let spec = oci_spec::runtime::Spec::load(bundle.join("config.json")).ok()?;
    let root = spec.root().as_ref()?.path().clone();
    Some(if root.is_relative() {
        bundle.join(root)
    } else {
        root
    })
}

/// A short random suffix for per-call files.
pub(crate) fn rand_suffix() -> String {
    let mut b = [0u8; 6];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Libcontainer {
    /// The bundle the container was created from.
    pub fn bundle(&self, id: &str) -> Option<PathBuf> {
        let b = self.load(id).ok()?.bundle().clone();
        // A container on the cached-seccomp path runs from a prepared copy inside its bundle.
        if b.file_name()
            .is_some_and(|n| n == seccomp_bpf::PREPARED_BUNDLE)
        {
            return b.parent().map(Path::to_path_buf);
        }
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn not_found_reads_like_runc() {
        let m = super::docker_wording(
            "exec process failed with error error in executing process : executable 'nope' not found in $PATH",
        );
        assert!(
            m.contains("exec: \"nope\": executable file not found in $PATH"),
            "{m}"
        );
    }
}
