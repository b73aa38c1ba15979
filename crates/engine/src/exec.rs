//! Exec instances: processes started inside a running container (`docker exec`). The shim runs
//! them; the engine keeps their configuration and exit code in memory, as Docker does.

use std::sync::{Arc, Mutex};

use berth_shim::protocol::Request;
use rand::Rng;

use crate::containers::IoSession;
use crate::error::{EngineError, Result};
use crate::shim_client::ShimConn;
use crate::{Engine, lock};

/// What `POST /containers/{id}/exec` asks for.
#[derive(Debug, Clone, Default)]
pub struct ExecConfig {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
    pub tty: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub privileged: bool,
    pub detach_keys: String,
}

/// An exec instance's state, as `GET /exec/{id}/json` shows it.
#[derive(Debug, Clone, Default)]
pub struct ExecInfo {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
}

pub(crate) struct ExecInstance {
    pub container_id: String,
    pub info: Mutex<crate::Stamped<ExecInfo>>,
}

impl Engine {
    /// An exec's event on its container, with the container's attributes (name, image,
    /// labels) and the exec's id, as dockerd's: `exec_create: <cmd>`, `exec_start: <cmd>`,
    /// `exec_die` (with `exitCode`).
    fn exec_event(
        &self,
        rec: &crate::ContainerRecord,
        action: &str,
        exec_id: &str,
        exit_code: Option<i64>,
    ) {
        let mut attrs = rec.config.labels.clone().unwrap_or_default();
        attrs.insert("execID".into(), exec_id.to_owned());
        attrs.insert("name".into(), rec.name.clone());
        attrs.insert("image".into(), rec.config.image.clone());
        if let Some(code) = exit_code {
            attrs.insert("exitCode".into(), code.to_string());
        }
        self.inner
            .events
            .publish("container", action, &rec.id, attrs);
    }

    /// Registers an exec instance in a running container; returns its id.
    pub fn exec_create(&self, key: &str, config: ExecConfig) -> Result<String> {
        let h = self.resolve(key)?;
        // The request is checked before the container's state, as dockerd.
        if config.cmd.is_empty() {
            return Err(EngineError::InvalidArgument(
                "No exec command specified".into(),
            ));
        }
        let rec = h.record();
        if rec.state.status == crate::Status::Paused {
            // (Named as the client named it, as dockerd does.)
            return Err(EngineError::Conflict(format!(
                "Container {key} is paused, unpause the container before exec"
            )));
        }
        if !rec.state.is_running() {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        let id = {
            let mut bytes = [0u8; 32];
            rand::rng().fill(&mut bytes);
            hex::encode(bytes)
        };
        let cmd_line = config.cmd.join(" ");
        let info = ExecInfo {
            id: id.clone(),
            container_id: rec.id.clone(),
            config,
            ..ExecInfo::default()
        };
        let inst = Arc::new(ExecInstance {
            container_id: rec.id.clone(),
            info: Mutex::new(crate::Stamped::new(info)),
        });
        lock(&self.inner.execs).insert(id.clone(), inst);
        self.exec_event(&rec, &format!("exec_create: {cmd_line}"), &id, None);
        Ok(id)
    }

    fn exec_instance(&self, id: &str) -> Result<Arc<ExecInstance>> {
        lock(&self.inner.execs)
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NoSuchExec(id.to_owned()))
    }

    /// The container's execs not finished yet (created or running), as inspect's `ExecIDs`.
    pub fn exec_ids_of(&self, container_id: &str) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.inner.execs)
            .iter()
            .filter(|(_, e)| e.container_id == container_id)
            .filter(|(_, e)| lock(&e.info).exit_code.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// A fingerprint of what [`Engine::exec_ids_of`] reads for the container: how many execs
    /// it has and the newest stamp among them. Adding or changing one raises the newest
    /// stamp (stamps only grow); dropping one lowers the count. Other containers' execs (a
    /// healthcheck's probes, say) leave it as it is.
    pub fn exec_stamp_of(&self, container_id: &str) -> (usize, u64) {
        lock(&self.inner.execs)
            .values()
            .filter(|e| e.container_id == container_id)
            .fold((0, 0), |(n, newest), e| {
                (n + 1, newest.max(lock(&e.info).stamp()))
            })
    }

    /// Drops a finished exec instance (the healthcheck's, which nobody inspects).
    pub(crate) fn exec_forget(&self, id: &str) {
        lock(&self.inner.execs).remove(id);
    }

    pub fn exec_inspect(&self, id: &str) -> Result<ExecInfo> {
        Ok(lock(&self.exec_instance(id)?.info).clone())
    }

    /// Starts an exec instance. The session streams its output; its exit code is recorded even
    /// if the caller drops the session early. `console_size` (rows, columns) sizes a tty
    /// exec's terminal before the process runs.
    pub async fn exec_start(
        &self,
        id: &str,
        console_size: Option<(u16, u16)>,
    ) -> Result<IoSession> {
        let inst = self.exec_instance(id)?;
        let info = {
            let mut i = lock(&inst.info);
            if i.running || i.exit_code.is_some() {
                return Err(EngineError::Conflict(format!(
                    "Error: Exec command {id} has already run"
                )));
            }
            i.running = true;
            i.clone()
        };
        let fail = |e: EngineError| {
            let mut i = lock(&inst.info);
            i.running = false;
            e
        };
        let h = self.resolve(&info.container_id).map_err(fail)?;
        let rec = h.record();
        if let Err(e) = startable_in(&rec) {
            return Err(fail(e));
        }
        // From here a failure is the process failing to start: exit code 126, as dockerd
        // (`-u` of a user the image lacks, say), and the exec cannot be started again.
        let fail = |e: EngineError| {
            let mut i = lock(&inst.info);
            i.running = false;
            i.exit_code = Some(126);
            e
        };
        let mut process = self.exec_process(&rec, &info.config).map_err(fail)?;
        if let Some((h, w)) = console_size.filter(|&(h, w)| info.config.tty && h > 0 && w > 0) {
            let size = oci_spec::runtime::BoxBuilder::default()
                .height(u64::from(h))
                .width(u64::from(w))
                .build()
                .map_err(|e| fail(EngineError::Runtime(format!("console size: {e}"))))?;
            process.set_console_size(Some(size));
        }
        self.exec_event(
            &rec,
            &format!("exec_start: {}", info.config.cmd.join(" ")),
            id,
            None,
        );
        let mut conn = ShimConn::connect(&self.run_paths(&rec.id).socket())
            .await
            .map_err(fail)?;
        let resp = conn
            .request(&Request::Exec {
                exec_id: id.to_owned(),
                process: Box::new(process),
                tty: info.config.tty,
                stdin: info.config.attach_stdin,
            })
            .await
            .map_err(fail)?;
        if let Some(err) = resp.error {
            let mut i = lock(&inst.info);
            let msg = format!("OCI runtime exec failed: exec failed: {err}: unknown");
            i.running = false;
            // As Docker: 127 for a command not found, 126 for anything else that keeps it from
            // starting (a bad working directory included).
            i.exit_code = Some(match crate::containers::start_error_code(&msg) {
                127 if !msg.contains("chdir to cwd") => 127,
                _ => 126,
            });
            drop(i);
            return Err(EngineError::Runtime(msg));
        }
        lock(&inst.info).pid = resp.pid.unwrap_or(0) as i64;
        let (frames, write) = conn.into_stream();
        let record = inst.clone();
        let engine = self.clone();
        let exec_id = id.to_owned();
        Ok(IoSession::new(
            frames,
            info.config.attach_stdin.then_some(write),
            info.config.tty,
            Box::new(move |status| {
                let mut i = lock(&record.info);
                i.running = false;
                i.exit_code = Some(status.exit_code as i64);
                drop(i);
                engine.exec_event(&rec, "exec_die", &exec_id, Some(status.exit_code as i64));
            }),
        )
        .streams(info.config.attach_stdout, info.config.attach_stderr))
    }

    /// Whether an exec can start now: not run before, its container running. Checked before
    /// a client's stream is upgraded, so these come back as statuses.
    pub fn exec_check_startable(&self, id: &str) -> Result<()> {
        let inst = self.exec_instance(id)?;
        let info = lock(&inst.info).clone();
        if info.running || info.exit_code.is_some() {
            return Err(EngineError::Conflict(format!(
                "Error: Exec command {id} has already run"
            )));
        }
        let rec = self.resolve(&info.container_id)?.record();
        startable_in(&rec)
    }

    /// Resizes an exec's tty.
    pub async fn exec_resize(&self, id: &str, height: u16, width: u16) -> Result<()> {
        let inst = self.exec_instance(id)?;
        let socket = self.run_paths(&inst.container_id).socket();
        crate::shim_client::call(
            &socket,
            &Request::Resize {
                height,
                width,
                exec_id: Some(id.to_owned()),
            },
        )
        .await?;
        Ok(())
    }

    /// The OCI process for an exec: the container's process settings (capabilities, rlimits,
    /// no-new-privileges) with the exec's command, env, user, cwd and tty.
    fn exec_process(
        &self,
        rec: &crate::ContainerRecord,
        cfg: &ExecConfig,
    ) -> Result<oci_spec::runtime::Process> {
        let bundle = self.container_dir(&rec.id).join("config.json");
        let data = std::fs::read(&bundle)
            .map_err(EngineError::io(format!("read {}", bundle.display())))?;
        let spec: oci_spec::runtime::Spec = serde_json::from_slice(&data)
            .map_err(|e| EngineError::Runtime(format!("bundle spec: {e}")))?;
        let mut process = spec
            .process()
            .clone()
            .ok_or_else(|| EngineError::Runtime("bundle has no process".into()))?;
        // The container's process environment (image and create-time env plus PATH, HOSTNAME
        // and HOME as the spec builder filled them in), then the exec's own variables.
        let mut env = process.env().clone().unwrap_or_default();
        env.retain(|e| !e.starts_with("TERM="));
        // A HOME the spec builder chose is the container user's: the exec's user gets its
        // own (below), unless the image or `run -e` set one.
        let explicit_home = rec
            .config
            .env
            .iter()
            .flatten()
            .any(|e| e.starts_with("HOME="));
        if !explicit_home {
            env.retain(|e| !e.starts_with("HOME="));
        }
        if cfg.tty {
            env.push("TERM=xterm".into());
        }
        for e in &cfg.env {
            let key = e.split('=').next().unwrap_or("");
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        process.set_args(Some(cfg.cmd.clone()));
        process.set_env(Some(env));
        process.set_terminal(Some(cfg.tty));
        let cwd = if !cfg.working_dir.is_empty() {
            cfg.working_dir.clone()
        } else if !rec.config.working_dir.is_empty() {
            rec.config.working_dir.clone()
        } else {
            "/".to_owned()
        };
        process.set_cwd(cwd.into());
        let rootfs = self.container_dir(&rec.id).join("rootfs");
        if !cfg.user.is_empty() {
            let user = berth_runtime::user::resolve(&rootfs, &cfg.user, &[])
                .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
            process.set_user(user);
        }
        // An `-e HOME=` must not reach the runtime empty (see `berth_runtime::spec::set_home`):
        // it becomes the exec user's home, as runc makes it.
        berth_runtime::user::fill_home(&mut process, &rootfs);
        if cfg.privileged {
            let caps = berth_runtime::defaults::privileged_capabilities();
            let mut c = process.capabilities().clone().unwrap_or_default();
            c.set_bounding(Some(caps.clone()));
            c.set_effective(Some(caps.clone()));
            c.set_permitted(Some(caps));
            process.set_capabilities(Some(c));
        }
        Ok(process)
    }
}

/// Whether an exec can start in the container now: running, and not paused (the process
/// could not start in a frozen cgroup), in dockerd's words.
fn startable_in(rec: &crate::ContainerRecord) -> Result<()> {
    if rec.state.status == crate::Status::Paused {
        return Err(EngineError::Conflict(format!(
            "Container {} is paused, unpause the container before exec",
            rec.id
        )));
    }
    if !rec.state.is_running() {
        return Err(EngineError::Conflict(format!(
            "Container {} is not running",
            rec.id
        )));
    }
    Ok(())
}
