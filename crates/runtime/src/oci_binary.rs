//! A runtime that drives any OCI runtime CLI (runc, crun, youki) the way containerd does:
//! `create --bundle --pid-file [--console-socket]`, `start`, `exec -d --process`, `kill`,
//! `pause`, `resume`, `delete`, `state`.
//!
//! The binary's own diagnostics go to a JSON log file (`--log`), so a failure reports the
//! runtime's message while the container's stdio stays the container's.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Runtime, RuntimeError, Status, Stdio};

/// An OCI runtime binary with extra global arguments and its state root.
pub struct OciBinary {
    path: PathBuf,
    args: Vec<String>,
    root: PathBuf,
}

impl OciBinary {
    pub fn new(path: &Path, args: Vec<String>, root: &Path) -> Self {
        Self {
            path: path.to_owned(),
            args,
            root: root.to_owned(),
        }
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.root.join(format!("{id}.log"))
    }

    fn command(&self, id: &str) -> Command {
        let mut c = Command::new(&self.path);
        c.args(&self.args)
            .arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(self.log_path(id))
            .arg("--log-format")
            .arg("json");
        c
    }

    /// The last error the runtime logged, or its stderr.
    fn failure(&self, id: &str, what: &str, stderr: &[u8]) -> RuntimeError {
        let log = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        let from_log = log
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["level"] == "error")
            .and_then(|v| v["msg"].as_str().map(str::to_owned));
        let message = from_log.unwrap_or_else(|| String::from_utf8_lossy(stderr).trim().to_owned());
        RuntimeError::Binary {
            runtime: self.path.display().to_string(),
            command: what.to_owned(),
            message,
        }
    }

    fn run(&self, id: &str, what: &str, mut cmd: Command) -> Result<Vec<u8>, RuntimeError> {
        let out = cmd
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(RuntimeError::io("run", &self.path))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(self.failure(id, what, &out.stderr))
        }
    }

    /// Runs a command with the container's stdio and reads the pid file it writes.
    fn run_with_stdio(
        &self,
        id: &str,
        what: &str,
        mut cmd: Command,
        stdio: Stdio,
        pid_file: &Path,
    ) -> Result<i32, RuntimeError> {
        cmd.arg("--pid-file").arg(pid_file);
        match stdio {
            Stdio::Pipes {
                stdin,
                stdout,
                stderr,
            } => {
                cmd.stdin(stdin.map_or(std::process::Stdio::null(), std::process::Stdio::from));
                cmd.stdout(std::process::Stdio::from(stdout));
                cmd.stderr(std::process::Stdio::from(stderr));
            }
            Stdio::Console { socket } => {
                cmd.arg("--console-socket").arg(socket);
                cmd.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
            }
        }
        cmd.arg(id);
        let status = cmd.status().map_err(RuntimeError::io("run", &self.path))?;
        if !status.success() {
            return Err(self.failure(id, what, b"exited with an error"));
        }
        let pid = std::fs::read_to_string(pid_file).map_err(RuntimeError::io("read", pid_file))?;
        let _ = std::fs::remove_file(pid_file);
        pid.trim()
            .parse()
            .map_err(|_| RuntimeError::Spec(format!("bad pid file content {pid:?}")))
    }
}

impl Runtime for OciBinary {
    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<i32, RuntimeError> {
        std::fs::create_dir_all(&self.root).map_err(RuntimeError::io("create", &self.root))?;
        let mut cmd = self.command(id);
        cmd.arg("create").arg("--bundle").arg(bundle);
        let pid_file = self.root.join(format!("{id}.pid"));
        self.run_with_stdio(id, "create", cmd, stdio, &pid_file)
    }

    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.command(id);
        cmd.arg("start").arg(id);
        self.run(id, "start", cmd).map(drop)
    }

    fn exec(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        stdio: Stdio,
    ) -> Result<i32, RuntimeError> {
        let suffix = crate::libcontainer_rt::rand_suffix();
        let proc_path = self.root.join(format!("{id}-exec-{suffix}.json"));
        let json = serde_json::to_vec(process).map_err(|e| RuntimeError::Spec(e.to_string()))?;
        std::fs::write(&proc_path, json).map_err(RuntimeError::io("write", &proc_path))?;
        let mut cmd = self.command(id);
        cmd.arg("exec")
            .arg("--detach")
            .arg("--process")
            .arg(&proc_path);
        let pid_file = self.root.join(format!("{id}-exec-{suffix}.pid"));
        let r = self.run_with_stdio(id, "exec", cmd, stdio, &pid_file);
        let _ = std::fs::remove_file(&proc_path);
        r
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let mut cmd = self.command(id);
        cmd.arg("kill");
        if all {
            cmd.arg("--all");
        }
        cmd.arg(id).arg(signal.to_string());
        self.run(id, "kill", cmd).map(drop)
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.command(id);
        cmd.arg("pause").arg(id);
        self.run(id, "pause", cmd).map(drop)
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.command(id);
        cmd.arg("resume").arg(id);
        self.run(id, "resume", cmd).map(drop)
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let mut cmd = self.command(id);
        cmd.arg("delete");
        if force {
            cmd.arg("--force");
        }
        cmd.arg(id);
        let r = self.run(id, "delete", cmd).map(drop);
        if r.is_ok() {
            let _ = std::fs::remove_file(self.log_path(id));
        }
        r
    }

    fn state(&self, id: &str) -> Result<(Status, Option<i32>), RuntimeError> {
        let mut cmd = self.command(id);
        cmd.arg("state").arg(id);
        let out = self.run(id, "state", cmd)?;
        let v: serde_json::Value =
            serde_json::from_slice(&out).map_err(|e| RuntimeError::Spec(e.to_string()))?;
        let status = match v["status"].as_str().unwrap_or("") {
            "creating" => Status::Creating,
            "created" => Status::Created,
            "running" => Status::Running,
            "paused" => Status::Paused,
            _ => Status::Stopped,
        };
        let pid = v["pid"].as_i64().filter(|p| *p > 0).map(|p| p as i32);
        Ok((status, pid))
    }
}
