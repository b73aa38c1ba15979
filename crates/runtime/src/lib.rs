//! The container runtime behind one trait.
//!
//! This crate owns everything between "what the container should be" and "a process running in
//! its namespaces and cgroups":
//! - [`spec`]: [`spec::ContainerSpec`], a runtime-neutral description of one container, and
//!   [`spec::build_spec`], which turns it into an explicit OCI runtime spec with Docker's
//!   security defaults ([`defaults`], [`seccomp`]).
//! - [`Runtime`]: create/start/exec/kill/pause/resume/delete, implemented by the embedded
//!   libcontainer ([`libcontainer_rt`]) and by any OCI runtime binary such as runc
//!   ([`oci_binary`]).
//!
//! The embedded runtime forks with raw `clone3` and marks its caller non-dumpable, so it is only
//! ever called from single-threaded processes (the shim's short-lived runtime helper,
//! `berth-shim-runtime`, and the `berth runtime` CLI), never from the daemon.

pub mod cgroup_ro;
pub mod defaults;
pub mod error;
pub mod libcontainer_rt;
pub mod oci_binary;
pub mod oci_cli;
pub mod seccomp;
pub mod seccomp_bpf;
pub mod spec;
pub mod user;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub use error::RuntimeError;

/// An OS error as Go prints it (and so as Docker's messages read, and clients match them):
/// the C library's text with a lowercase first letter, without Rust's `(os error N)`.
pub fn errno_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if e.raw_os_error().is_some() => &text[..i],
        _ => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// How the container's (or exec process's) stdio is wired.
pub enum Stdio {
    /// Plain file descriptors (usually pipe ends) that become fds 0, 1 and 2 of the process.
    /// `stdin: None` means the process gets `/dev/null` as stdin.
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// The process gets a new pty; the runtime sends the pty master over this unix socket
    /// (SCM_RIGHTS), as runc's `--console-socket`. The caller must already listen on it.
    Console { socket: PathBuf },
}

/// The status of a container as the runtime sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

/// A container runtime. Every call is synchronous; callers that fork (the embedded runtime)
/// must be single-threaded.
pub trait Runtime {
    /// Creates the container `id` from the OCI bundle at `bundle` (holding `config.json`; the
    /// spec's root path is absolute) and returns the pid of its init process, which waits for
    /// [`Runtime::start`]. The init process is a child of the caller (the caller should be a
    /// child subreaper).
    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<i32, RuntimeError>;
    /// Lets the created container's init run the user's process.
    fn start(&self, id: &str) -> Result<(), RuntimeError>;
    /// Runs `process` inside the running container `id`; returns the new process's pid (a child
    /// of the caller) once it runs.
    fn exec(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        stdio: Stdio,
    ) -> Result<i32, RuntimeError>;
    /// Sends `signal` to the container's init (or to all its processes with `all`).
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError>;
    /// Freezes every process of the container.
    fn pause(&self, id: &str) -> Result<(), RuntimeError>;
    /// Thaws a paused container.
    fn resume(&self, id: &str) -> Result<(), RuntimeError>;
    /// Removes the container's runtime state and cgroup; `force` kills it first if needed.
    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError>;
    /// The container's status and init pid.
    fn state(&self, id: &str) -> Result<(Status, Option<i32>), RuntimeError>;
}

/// Which runtime to use, as named in `--runtime` / daemon.json `runtimes`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RuntimeKind {
    /// The embedded libcontainer.
    Embedded,
    /// An OCI runtime CLI binary (runc, crun, youki) at this path, with extra arguments.
    Binary { path: PathBuf, args: Vec<String> },
}

/// Opens the runtime `kind`, keeping its state under `state_root`.
pub fn open(kind: &RuntimeKind, state_root: &Path) -> Box<dyn Runtime> {
    match kind {
        RuntimeKind::Embedded => Box::new(libcontainer_rt::Libcontainer::new(state_root)),
        RuntimeKind::Binary { path, args } => {
            Box::new(oci_binary::OciBinary::new(path, args.clone(), state_root))
        }
    }
}

#[cfg(test)]
mod errno_tests {
    #[test]
    fn errno_text_reads_as_go_prints_it() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(super::errno_text(&e), "no such file or directory");
        let e = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(super::errno_text(&e), "permission denied");
        // Not an OS error: the text as it is, first letter lowered.
        let e = std::io::Error::other("Odd (os error 9) inside");
        assert_eq!(super::errno_text(&e), "odd (os error 9) inside");
    }
}
