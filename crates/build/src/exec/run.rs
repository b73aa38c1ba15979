//! `RUN`: the command executed in the step's root by Berth's runtime (`berth runtime run`,
//! a single-threaded child process, as a container's runtime helper is), its output streamed
//! to the build's progress, and `RUN --mount` (cache, tmpfs, bind, secret) set up around it.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use berth_runtime::spec::{ContainerSpec, MountSpec as RtMount, NamespaceMode};
use sha2::{Digest, Sha256};

use super::ExecError;
use super::state::{DEFAULT_PATH, State};
use crate::ast::{Mount, MountType, RunCommand};

/// How RUN steps reach the runtime.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The program and leading arguments of the runtime CLI (`[<berth>, "runtime"]`).
    pub runtime: Vec<String>,
    /// The runtime's state root.
    pub runtime_root: PathBuf,
    /// Cgroup parent of build steps (`/berth`).
    pub cgroup_parent: String,
    /// Where `--mount=type=cache` directories live.
    pub cache_mounts: PathBuf,
}

/// What one `RUN` needs besides its root.
pub struct RunStep<'a> {
    pub command: RunCommand,
    pub env: Vec<(String, String)>,
    /// The network namespace: private (loopback only), the host's, or a prepared one.
    pub network: NamespaceMode,
    /// The step's `/etc/resolv.conf` (empty without a network).
    pub resolv_conf: String,
    /// Mounts already resolved to host paths (binds) or kinds (cache, tmpfs).
    pub mounts: Vec<RtMount>,
    /// The stage state (user, workdir, shell).
    pub state: &'a State,
}

/// A `--mount` made concrete for the runtime, or `None` when it is skipped (an optional
/// secret that was not given). `bind_source` resolves a bind's source to a host path.
pub fn runtime_mount(
    m: &Mount,
    cfg: &RunConfig,
    bind_source: &mut dyn FnMut(&Mount) -> Result<PathBuf, ExecError>,
) -> Result<Option<RtMount>, ExecError> {
    let target = if m.target.starts_with('/') {
        m.target.clone()
    } else {
        format!("/{}", m.target)
    };
    Ok(Some(match m.kind {
        MountType::Cache => {
            let id = if m.id.is_empty() { &target } else { &m.id };
            let dir = cfg
                .cache_mounts
                .join(hex::encode(Sha256::digest(id.as_bytes())));
            if !dir.exists() {
                std::fs::create_dir_all(&dir).map_err(ExecError::io(&dir))?;
                let mode = m.mode.unwrap_or(0o755);
                rustix::fs::chmod(&dir, rustix::fs::Mode::from_raw_mode(mode))
                    .map_err(|e| ExecError::io(&dir)(e.into()))?;
                rustix::fs::chown(
                    &dir,
                    Some(rustix::fs::Uid::from_raw(m.uid.unwrap_or(0))),
                    Some(rustix::fs::Gid::from_raw(m.gid.unwrap_or(0))),
                )
                .map_err(|e| ExecError::io(&dir)(e.into()))?;
            }
            let mut options = vec!["rbind".into(), "rprivate".into()];
            if m.readonly {
                options.push("ro".into());
            }
            RtMount {
                destination: target,
                source: dir.to_string_lossy().into_owned(),
                kind: "bind".into(),
                options,
            }
        }
        MountType::Tmpfs => {
            let mut options = vec!["nosuid".into(), "nodev".into()];
            if let Some(s) = m.size {
                options.push(format!("size={s}"));
            }
            RtMount {
                destination: target,
                source: "tmpfs".into(),
                kind: "tmpfs".into(),
                options,
            }
        }
        MountType::Bind => {
            // A writable bind shows a throw-away copy (`bind_source` makes it).
            let source = bind_source(m)?;
            let mut options = vec!["rbind".into(), "rprivate".into()];
            if m.readonly {
                options.push("ro".into());
            }
            RtMount {
                destination: target,
                source: source.to_string_lossy().into_owned(),
                kind: "bind".into(),
                options,
            }
        }
        MountType::Secret | MountType::Ssh => {
            if m.required {
                return Err(ExecError::Input(format!(
                    "{} {:?} is required but berthd was given none",
                    if m.kind == MountType::Secret {
                        "secret"
                    } else {
                        "ssh agent"
                    },
                    m.id
                )));
            }
            return Ok(None);
        }
    }))
}

/// Removes a directory tree when dropped (a step's bundle, its secrets).
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A host path naming an open fd of this process, for another process to bind.
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        fd.as_raw_fd()
    ))
}

/// Runs the step in `rootfs`; `output` gets its stdout and stderr as they come.
pub fn run(
    rootfs: &Path,
    id: &str,
    step: RunStep<'_>,
    cfg: &RunConfig,
    bundle: &Path,
    cancel: &AtomicBool,
    output: &mut dyn FnMut(&[u8]),
) -> Result<(), ExecError> {
    std::fs::create_dir_all(bundle).map_err(ExecError::io(bundle))?;
    let _bundle = RemoveOnDrop(bundle.to_owned());
    let state = step.state;
    let mut mounts = Vec::new();
    let hostname = "buildkitsandbox";
    let hosts =
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let resolv = step.resolv_conf.clone();
    for (name, dest, data) in [
        ("hosts", "/etc/hosts", hosts.as_str()),
        ("resolv.conf", "/etc/resolv.conf", resolv.as_str()),
    ] {
        let p = bundle.join(name);
        std::fs::write(&p, data).map_err(ExecError::io(&p))?;
        mounts.push(RtMount {
            destination: dest.into(),
            source: p.to_string_lossy().into_owned(),
            kind: "bind".into(),
            options: vec!["rbind".into(), "rprivate".into(), "ro".into()],
        });
    }
    let shown;
    let args = match &step.command {
        RunCommand::Exec(v) => {
            shown = v.join(" ");
            v.clone()
        }
        RunCommand::Shell(s) => {
            let mut v = state.shell();
            v.push(s.clone());
            shown = v.join(" ");
            v
        }
        RunCommand::Script(body) => {
            let p = bundle.join("script");
            std::fs::write(&p, body).map_err(ExecError::io(&p))?;
            rustix::fs::chmod(&p, rustix::fs::Mode::from_raw_mode(0o755))
                .map_err(|e| ExecError::io(&p)(e.into()))?;
            mounts.push(RtMount {
                destination: "/dev/pipes/script".into(),
                source: p.to_string_lossy().into_owned(),
                kind: "bind".into(),
                options: vec!["rbind".into(), "rprivate".into(), "ro".into()],
            });
            shown = body.lines().next().unwrap_or_default().to_owned();
            vec!["/dev/pipes/script".into()]
        }
    };
    if args.is_empty() {
        return Err(ExecError::Input("RUN has no command".into()));
    }
    mounts.extend(step.mounts);
    let mut env: Vec<String> = step.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !step.env.iter().any(|(k, _)| k == "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    let spec = ContainerSpec {
        rootfs: rootfs.to_owned(),
        args,
        env,
        cwd: state.workdir(),
        user: state.get_str("User"),
        hostname: hostname.into(),
        network: step.network.clone(),
        mounts,
        cgroups_path: format!("{}/{id}", cfg.cgroup_parent.trim_end_matches('/')),
        ..ContainerSpec::default()
    };
    let json = berth_runtime::spec::build_spec_json(&spec)
        .map_err(|e| ExecError::Input(format!("RUN: {e}")))?;
    let config = bundle.join("config.json");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // It may hold secret variables: root's only.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&config)
            .map_err(ExecError::io(&config))?;
        f.write_all(&serde_json::to_vec(&json).unwrap_or_default())
            .map_err(ExecError::io(&config))?;
    }

    let (mut reader, writer) = std::io::pipe().map_err(ExecError::io("pipe"))?;
    let writer2 = writer.try_clone().map_err(ExecError::io("pipe"))?;
    let (prog, lead) = cfg
        .runtime
        .split_first()
        .ok_or_else(|| ExecError::Input("no runtime configured for RUN".into()))?;
    let mut child = Command::new(prog)
        .args(lead)
        .arg("--root")
        .arg(&cfg.runtime_root)
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .spawn()
        .map_err(ExecError::io(prog))?;
    let kill = || {
        let _ = Command::new(prog)
            .args(lead)
            .arg("--root")
            .arg(&cfg.runtime_root)
            .args(["kill", "--all", id, "KILL"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    // Dropped when the step ends: wakes the watcher at once.
    let (finished, ended) = std::sync::mpsc::channel::<()>();
    let status = std::thread::scope(|s| {
        // Kills the step's processes if the build is cancelled while it runs.
        s.spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                ended.recv_timeout(std::time::Duration::from_millis(100))
            {
                if cancel.load(Ordering::Relaxed) {
                    kill();
                    return;
                }
            }
        });
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => output(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading RUN output");
                    break;
                }
            }
        }
        let status = child.wait();
        drop(finished);
        status
    })
    .map_err(ExecError::io(prog))?;
    // Whatever happened, no container of this step outlives it: `run` deletes its container
    // when it ends normally; state left behind (a runtime error, a kill) is deleted here.
    if cfg.runtime_root.join(id).exists() {
        let _ = Command::new(prog)
            .args(lead)
            .arg("--root")
            .arg(&cfg.runtime_root)
            .args(["delete", "--force", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(ExecError::Cancelled);
    }
    match status.code() {
        Some(0) => Ok(()),
        code => Err(ExecError::RunFailed {
            command: shown,
            code: code.unwrap_or(-1),
        }),
    }
}
