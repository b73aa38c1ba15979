//! The container service: create, start, stop, kill, restart, wait, remove, list, rename,
//! pause, top, resize, attach; exit handling, restart policies and reconciliation at start-up.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_shim::ShimConfig;
use berth_shim::protocol::{ExitStatus, Request};
use chrono::Utc;
use rand::Rng;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::oneshot;

use crate::config::{Config, HostConfig};
use crate::container::{ContainerRecord, State, Status};
use crate::error::{EngineError, Result};
use crate::shim_client::{self, Frame, FrameReader, ShimConn};
use crate::volumes::mounts::MountType;
use crate::{ContainerHandle, Engine, Watch, lock, netns, spec};

/// Whether `path` is a mount point: another device than its parent directory's.
fn is_mount_point(path: &Path) -> bool {
    let dev = |p: &Path| rustix::fs::lstat(p).map(|st| st.st_dev).ok();
    match (dev(path), path.parent().and_then(dev)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

/// How many parents the `ancestor` filter follows from a container's image (a bound against a
/// parent cycle in corrupt records).
const MAX_IMAGE_DEPTH: usize = 512;

/// A stream of a container's (or exec's) output, with its stdin.
pub struct IoSession {
    frames: Option<FrameReader>,
    /// Raw stdin to the process; dropping (or shutting down) it is stdin EOF.
    pub stdin: Option<OwnedWriteHalf>,
    /// Whether the process has a tty (output is then raw, all on stream 1).
    pub tty: bool,
    on_exit: Option<Box<dyn FnOnce(ExitStatus) + Send>>,
    /// Which of stdout and stderr the client asked for; the others' frames are dropped.
    wanted: [bool; 2],
}

impl IoSession {
    pub(crate) fn new(
        frames: FrameReader,
        stdin: Option<OwnedWriteHalf>,
        tty: bool,
        on_exit: Box<dyn FnOnce(ExitStatus) + Send>,
    ) -> Self {
        Self {
            frames: Some(frames),
            stdin,
            tty,
            on_exit: Some(on_exit),
            wanted: [true, true],
        }
    }

    /// Only these of stdout and stderr reach the client (`AttachStdout`/`AttachStderr`).
    pub(crate) fn streams(mut self, stdout: bool, stderr: bool) -> Self {
        self.wanted = [stdout, stderr];
        self
    }

    /// The next frame; `None` once the stream ended.
    pub async fn next(&mut self) -> Option<Frame> {
        let frame = loop {
            let frame = self.frames.as_mut()?.next().await;
            match &frame {
                Some(Frame::Output(stream, _)) if !self.wanted[usize::from(*stream == 2)] => {}
                _ => break frame,
            }
        };
        match &frame {
            Some(Frame::Exit(status)) => {
                if let Some(f) = self.on_exit.take() {
                    f(status.clone());
                }
                self.frames = None;
            }
            None => self.frames = None,
            _ => {}
        }
        frame
    }
}

impl Drop for IoSession {
    fn drop(&mut self) {
        // A client that leaves early must not lose the exit status: drain in the background.
        if let (Some(mut frames), Some(on_exit)) = (self.frames.take(), self.on_exit.take()) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    while let Some(f) = frames.next().await {
                        if let Frame::Exit(status) = f {
                            on_exit(status);
                            return;
                        }
                    }
                });
            }
        }
    }
}

pub(crate) type AttachWaiter = oneshot::Sender<(PathBuf, oneshot::Sender<()>)>;

/// Where an attach to a container connects: the shim of the process that runs now, or, while
/// none does, a place in line for the next start. One lock holds both, so an attach never
/// falls between a start taking the line and the record saying the container runs (it would
/// wait for a start that had already happened).
#[derive(Default)]
pub(crate) struct AttachPoint {
    pub waiters: Vec<AttachWaiter>,
    /// The shim's socket while the container's process lives: set when a start takes the
    /// line (or the daemon reconnects to a running container), cleared when it exits.
    pub live: Option<PathBuf>,
}

/// What to attach to.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// `GET /containers/json` options; filters as Docker's (`id`, `name`, `status`, `label`,
/// `ancestor`, `exited`, `before`, `since`).
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub all: bool,
    pub limit: Option<usize>,
    pub filters: HashMap<String, Vec<String>>,
}

/// `GET /containers/{id}/logs` options.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    pub tail: Option<usize>,
    pub since: Option<chrono::DateTime<Utc>>,
    pub until: Option<chrono::DateTime<Utc>>,
}

const ADJECTIVES: &[&str] = &[
    "admiring",
    "brave",
    "calm",
    "clever",
    "dreamy",
    "eager",
    "festive",
    "gentle",
    "happy",
    "jolly",
    "keen",
    "lucid",
    "modest",
    "nifty",
    "optimistic",
    "quirky",
    "serene",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "zealous",
];
const NAMES: &[&str] = &[
    "babbage", "curie", "darwin", "euler", "fermi", "galileo", "hopper", "kepler", "lovelace",
    "mayer", "newton", "noether", "pascal", "ritchie", "shannon", "tesla", "thompson", "turing",
    "wozniak", "yonath",
];

/// A free `adjective_name`, as Docker names containers. After a few collisions a number is
/// appended, as Docker does; the container's short id is the last resort, so this always
/// ends however many containers exist.
fn random_name(map: &HashMap<String, Arc<ContainerHandle>>, id: &str) -> String {
    let mut rng = rand::rng();
    for attempt in 0..64 {
        let mut n = format!(
            "{}_{}",
            ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
            NAMES[rng.random_range(0..NAMES.len())]
        );
        if attempt >= 8 {
            n.push_str(&rng.random_range(0..10u32.pow(1 + attempt / 16)).to_string());
        }
        if name_free(map, &n).is_ok() {
            return n;
        }
    }
    id[..12].to_owned()
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Parses a signal as Docker takes it: "SIGKILL", "KILL", "9", "SIGRTMIN+3".
pub fn parse_signal(s: &str) -> Result<i32> {
    let bad = || EngineError::InvalidArgument(format!("Invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.trim_start_matches('+').parse().map_err(|_| bad())?
        };
        return Ok(libc::SIGRTMIN() + off);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.trim_start_matches('-').parse().map_err(|_| bad())?
        };
        return Ok(libc::SIGRTMAX() - off);
    }
    let full = format!("SIG{name}");
    full.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| bad())
}

impl Engine {
    /// Finds a container by full id, name (with or without `/`), or unique id prefix.
    pub fn resolve(&self, key: &str) -> Result<Arc<ContainerHandle>> {
        let map = self
            .inner
            .containers
            .read()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(h) = map.get(key) {
            return Ok(h.clone());
        }
        let name = key.trim_start_matches('/');
        if let Some(h) = map.values().find(|h| lock(&h.rec).name == name) {
            return Ok(h.clone());
        }
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut found = map.iter().filter(|(id, _)| id.starts_with(key));
            if let Some((_, h)) = found.next() {
                if found.next().is_some() {
                    return Err(EngineError::InvalidArgument(format!(
                        "multiple containers found with provided prefix: {key}"
                    )));
                }
                return Ok(h.clone());
            }
        }
        Err(EngineError::NoSuchContainer(key.to_owned()))
    }

    /// A copy of a container's record.
    pub fn inspect(&self, key: &str) -> Result<ContainerRecord> {
        Ok(self.resolve(key)?.record())
    }

    /// Paths shown by inspect: (log, hostname, hosts, resolv.conf).
    pub fn container_paths(&self, id: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
        let dir = self.container_dir(id);
        (
            dir.join(format!("{id}-json.log")),
            dir.join("hostname"),
            dir.join("hosts"),
            dir.join("resolv.conf"),
        )
    }

    /// The overlay directories of a container, for inspect's GraphDriver, with overlay2's
    /// keys: `UpperDir` (what the container wrote), `WorkDir`, `LowerDir` (its init layer,
    /// then the image's layers, top first) and `MergedDir` (its root while it runs).
    pub fn graph_driver_data(&self, rec: &ContainerRecord) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let dir = self.container_dir(&rec.id);
        m.insert(
            "MergedDir".into(),
            dir.join("rootfs").to_string_lossy().into_owned(),
        );
        // An image's layer directories never change: looked up in the store once.
        let cached = lock(&self.inner.lower_dirs).get(&rec.image_id).cloned();
        let image_lowers = match cached {
            Some(l) => l,
            None => {
                let store = &self.inner.images;
                let Ok((_, lowers)) = store
                    .get(&rec.image_id)
                    .and_then(|image| store.container_layers(&rec.id, &image))
                else {
                    return m;
                };
                let lowers = Arc::new(lowers);
                lock(&self.inner.lower_dirs).insert(rec.image_id.clone(), lowers.clone());
                lowers
            }
        };
        let Ok(dirs) = self.inner.images.container_overlay(&rec.id, &image_lowers) else {
            return m;
        };
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let lower: Vec<String> = dirs.lowers.iter().map(|p| path(p)).collect();
        m.insert("LowerDir".into(), lower.join(":"));
        m.insert("UpperDir".into(), path(&dirs.upper));
        m.insert("WorkDir".into(), path(&dirs.work));
        m
    }

    /// Creates a container; returns its id and warnings. `endpoints` are the networks of
    /// `NetworkingConfig.EndpointsConfig` (aliases, static addresses) by network name.
    pub async fn create(
        &self,
        name: Option<&str>,
        mut config: Config,
        host_config: HostConfig,
        endpoints: BTreeMap<String, crate::networks::EndpointState>,
    ) -> Result<(String, Vec<String>)> {
        if config.image.is_empty() {
            return Err(EngineError::InvalidArgument(
                "config cannot be empty in order to create a container".into(),
            ));
        }
        spec::validate_config(&config)?;
        spec::validate_host_config(&host_config)?;
        if host_config.network_mode().starts_with("container:") && !config.hostname.is_empty() {
            return Err(EngineError::InvalidArgument(
                "conflicting options: hostname and the network mode".into(),
            ));
        }
        if !host_config.runtime.is_empty()
            && !self.inner.cfg.runtimes.contains_key(&host_config.runtime)
        {
            return Err(EngineError::InvalidArgument(format!(
                "Unknown runtime specified {}",
                host_config.runtime
            )));
        }
        let image = self.inner.images.resolve(&config.image)?;
        let image_config = self.image_container_config(&image);
        spec::merge_image_config(&mut config, &image_config)?;
        let id = {
            let mut bytes = [0u8; 32];
            rand::rng().fill(&mut bytes);
            hex::encode(bytes)
        };
        let given = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let n = n.trim_start_matches('/');
                if !valid_name(n) {
                    return Err(EngineError::InvalidArgument(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                Some(n.to_owned())
            }
            None => None,
        };
        let args = spec::argv(&config);
        // As dockerd, the hostname is written into the config at create: the short id, or the
        // host's name on the host's network (a `container:` one takes its peer's at start).
        if config.hostname.is_empty() {
            match host_config.network_mode() {
                "host" => {
                    config.hostname = rustix::system::uname()
                        .nodename()
                        .to_string_lossy()
                        .into_owned()
                }
                m if m.starts_with("container:") => {}
                _ => config.hostname = id[..12].to_owned(),
            }
        }
        let mut host_config = host_config;
        // `NetworkDisabled` (old clients): no network but loopback.
        if config.network_disabled == Some(true) && host_config.network_mode() == "bridge" {
            host_config.network_mode = "none".into();
        }
        spec::fill_host_config_defaults(&mut host_config)?;
        // What this host's cgroups cannot apply is dropped, with dockerd's warnings.
        let discarded = crate::sysinfo::SysInfo::get().discard_unsupported(&mut host_config);
        if host_config.runtime.is_empty() {
            host_config.runtime = self.inner.cfg.default_runtime.clone();
        }
        // As dockerd on a host whose info says `KernelMemory: false`.
        let kernel_memory_dropped = host_config.kernel_memory.is_some_and(|k| k > 0);
        if kernel_memory_dropped {
            host_config.kernel_memory = Some(0);
        }
        spec::validate_log_config(&host_config.log_config)?;
        // As dockerd: the daemon's default driver is written into the container's config.
        if host_config.log_config.kind.is_empty() {
            host_config.log_config.kind = self.inner.cfg.log_driver.clone();
        }
        // On a user-defined network a link is a name only the linker's DNS answers, kept on
        // its endpoint (`EndpointSettings.Links`): API 1.44+ clients leave the move to the
        // daemon. Its target need not exist yet, as with dockerd.
        let mut endpoints = endpoints;
        let mode = host_config.network_mode().to_owned();
        if host_config.links.as_ref().is_some_and(|l| !l.is_empty())
            && !matches!(mode.as_str(), "default" | "bridge" | "host" | "none")
            && !mode.starts_with("container:")
            && self.network_inspect(&mode).is_ok_and(|n| !n.predefined)
        {
            let ep = endpoints.entry(mode).or_default();
            for l in host_config.links.take().unwrap_or_default() {
                crate::links::parse(&l)?;
                if !ep.links.contains(&l) {
                    ep.links.push(l);
                }
            }
        }
        // Links: each target must exist; written down below once this container has a name.
        let links = host_config
            .links
            .iter()
            .flatten()
            .map(|l| {
                let link = crate::links::parse(l)?;
                let target = self.resolve(&link.target).map_err(|_| {
                    EngineError::InvalidArgument(format!(
                        "could not get container for {0}: No such container: {0}",
                        link.target
                    ))
                })?;
                Ok(crate::links::Link {
                    target: target.record().name,
                    alias: link.alias,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if !links.is_empty() && host_config.network_mode() == "host" {
            return Err(EngineError::InvalidArgument(
                "conflicting options: host type networking can't be used with links. This would result in undefined behavior".into(),
            ));
        }
        let mut planned = self.plan_mounts(&config, &host_config)?;
        // A missing network (or `container:` peer) is the request's fault, not a missing
        // resource: the docker CLI takes any 404 from create for a missing image and goes to
        // pull it. Docker itself only finds out at start; the same words come back here.
        // The old `Config.MacAddress` (API < 1.44, and SDKs that still send it) is the
        // primary network's.
        if let Some(mac) = config.mac_address.as_deref().filter(|m| !m.is_empty()) {
            let primary = match host_config.network_mode() {
                "default" => "bridge",
                m => m,
            };
            let ep = endpoints.entry(primary.to_owned()).or_default();
            if ep.requested_mac.is_empty() {
                ep.requested_mac = mac.to_owned();
            }
        }
        let networks = self
            .plan_container_networks(&host_config, &endpoints)
            .map_err(|e| match e.kind() {
                crate::ErrorKind::NotFound => EngineError::InvalidArgument(e.to_string()),
                _ => e,
            })?;
        let mut rec = ContainerRecord {
            id: id.clone(),
            // Chosen under the map's lock below, so two creates never take the same name.
            name: String::new(),
            created: Utc::now(),
            config,
            host_config,
            image_id: image.id.clone(),
            path: args.first().cloned().unwrap_or_default(),
            args: args.into_iter().skip(1).collect(),
            state: State::default(),
            restart_count: 0,
            has_been_started: false,
            mounts: Vec::new(),
            networks,
            published: Vec::new(),
        };
        {
            // Volumes are made and the container recorded under the volume lock, so no
            // `volume rm` or prune takes a volume this container is about to use.
            let mut vols = lock(&self.inner.volumes);
            let mut made = Vec::new();
            let result = (|| {
                self.ensure_volumes(&mut vols, &mut planned, &mut made)?;
                rec.mounts = std::mem::take(&mut planned);
                let mut map = self
                    .inner
                    .containers
                    .write()
                    .unwrap_or_else(|p| p.into_inner());
                rec.name = match &given {
                    Some(n) => {
                        name_free(&map, n)?;
                        n.clone()
                    }
                    None => random_name(&map, &id),
                };
                if !links.is_empty() {
                    rec.host_config.links = Some(
                        links
                            .iter()
                            .map(|l| crate::links::stored(l, &rec.name))
                            .collect(),
                    );
                }
                let dir = self.container_dir(&id);
                std::fs::create_dir_all(&dir)
                    .map_err(EngineError::io(format!("create {}", dir.display())))?;
                self.persist(&rec)?;
                map.insert(id.clone(), ContainerHandle::new(rec.clone()));
                Ok(())
            })();
            if let Err(e) = result {
                for name in made {
                    if let Err(e) = self.volume_delete_locked(&mut vols, &name) {
                        tracing::warn!(volume = %name, "undoing a failed create: {e}");
                    }
                }
                return Err(e);
            }
        }
        self.emit(&rec, "create");
        let mut warnings = discarded;
        if rec.host_config.network_mode() == "host"
            && rec
                .host_config
                .port_bindings
                .as_ref()
                .is_some_and(|p| !p.is_empty())
        {
            warnings.push("Published ports are discarded when using host network mode".to_owned());
        }
        if rec.host_config.oom_kill_disable == Some(true) && rec.host_config.memory == 0 {
            warnings.push(
                "OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources."
                    .to_owned(),
            );
        }
        if kernel_memory_dropped {
            warnings.push(
                "Your kernel does not support kernel memory limit capabilities or the cgroup is not mounted. Limitation discarded."
                    .to_owned(),
            );
        }
        Ok((id, warnings))
    }

    /// The `kill` event of a signal sent (by kill, and by stop: its signal, then SIGKILL).
    fn emit_kill(&self, rec: &ContainerRecord, sig: i32) {
        let mut attrs = rec.config.labels.clone().unwrap_or_default();
        attrs.insert("signal".into(), sig.to_string());
        attrs.insert("name".into(), rec.name.clone());
        attrs.insert("image".into(), rec.config.image.clone());
        self.inner
            .events
            .publish("container", "kill", &rec.id, attrs);
    }

    pub(crate) fn emit(&self, rec: &ContainerRecord, action: &str) {
        let mut attrs = rec.config.labels.clone().unwrap_or_default();
        attrs.insert("image".into(), rec.config.image.clone());
        attrs.insert("name".into(), rec.name.clone());
        if action == "die" {
            attrs.insert("exitCode".into(), rec.state.exit_code.to_string());
        }
        self.inner
            .events
            .publish("container", action, &rec.id, attrs);
    }

    /// Starts a container (304 NotModified if it runs already, 409 if it is paused).
    pub async fn start(&self, key: &str) -> Result<()> {
        let h = self.resolve(key)?;
        let op = h.op.lock().await;
        let result = self.start_locked(&h).await;
        drop(op);
        if let Err(e) = &result {
            // As Docker: a container that cannot start and asked for --rm is removed, so a
            // client waiting for `condition=removed` is answered.
            // (Not one that runs: a start refused because it runs or is paused.)
            let rec = h.record();
            let runs = matches!(rec.state.status, Status::Running | Status::Paused);
            if rec.host_config.auto_remove && !runs && !matches!(e, EngineError::NotModified(_)) {
                if let Err(e) = self.remove(&rec.id, true, true).await {
                    tracing::warn!(id = %rec.id, "auto-remove after a failed start: {e}");
                }
            }
        }
        result
    }

    async fn start_locked(&self, h: &Arc<ContainerHandle>) -> Result<()> {
        let rec = h.record();
        match rec.state.status {
            Status::Running => {
                return Err(EngineError::NotModified("container already started".into()));
            }
            Status::Paused => {
                return Err(EngineError::Conflict(
                    "cannot start a paused container, try unpause instead".into(),
                ));
            }
            Status::Removing | Status::Dead => {
                return Err(EngineError::Conflict(format!(
                    "cannot start container {}: it is being removed",
                    rec.id
                )));
            }
            _ => {}
        }
        match self.launch(h, &rec).await {
            Ok(pid) => {
                let mut r = lock(&h.rec);
                r.state.set_running(pid as i64);
                // Health starts over with the process, under the same lock, so an exit that
                // comes before the monitor does still finds it (and makes it unhealthy).
                let probe = crate::health::probe_command(
                    r.config.healthcheck.as_ref(),
                    r.config.shell.as_deref(),
                );
                if probe.is_some() {
                    r.state.health = Some(crate::health::Health {
                        status: crate::health::STARTING.into(),
                        ..Default::default()
                    });
                }
                r.has_been_started = true;
                let snapshot = r.clone();
                // Published under the record's lock: an exit takes that lock before it
                // publishes its `die`, so a quick container's `die` never comes first.
                self.emit(&snapshot, "start");
                drop(r);
                self.persist(&snapshot)?;
                h.watch.send_modify(|w| {
                    w.running = true;
                    w.starts += 1;
                });
                self.start_health(h);
                Ok(())
            }
            Err(e) => {
                // Attachers waiting for this start get their streams closed.
                {
                    let mut point = lock(&h.attach);
                    point.waiters.clear();
                    point.live = None;
                }
                self.net_detach(&rec.id).await;
                self.cleanup_after_exit(&rec.id);
                self.volumes_release(&rec.id, &rec.mounts);
                let code = start_error_code(&e.to_string());
                let mut r = lock(&h.rec);
                r.state.set_start_failed(code, e.to_string());
                let snapshot = r.clone();
                drop(r);
                let _ = self.persist(&snapshot);
                Err(e)
            }
        }
    }

    /// Mounts the rootfs, writes the bundle, spawns the shim, connects waiting attachers and
    /// the exit monitor, then starts the process. Returns the init pid.
    async fn launch(&self, h: &Arc<ContainerHandle>, rec: &ContainerRecord) -> Result<i32> {
        let id = rec.id.clone();
        let dir = self.container_dir(&id);
        let run = self.run_paths(&id);
        std::fs::create_dir_all(&run.dir)
            .map_err(EngineError::io(format!("create {}", run.dir.display())))?;
        let _ = std::fs::remove_file(run.exit_file());
        let rootfs = dir.join("rootfs");
        let image = self.inner.images.get(&rec.image_id)?;
        std::fs::create_dir_all(&rootfs)
            .map_err(EngineError::io(format!("create {}", rootfs.display())))?;
        self.mount_rootfs(rec, &image, &rootfs)?;
        if !rec.config.working_dir.is_empty() {
            crate::archive::make_working_dir(&rootfs, &rec.config.working_dir)?;
        }
        let mounts = self.prepare_mounts(h, rec, &rootfs)?;

        let hc = &rec.host_config;
        let mode = hc.network_mode();
        let netns = match mode {
            "host" => None,
            m if m.starts_with("container:") => Some(self.joined_netns(m)?),
            _ => Some(self.inner.netns.create(&self.inner.cfg.exec_root, &id)?),
        };
        let net_files = match &netns {
            Some(path) if !mode.starts_with("container:") => self.net_attach(h, rec, path).await?,
            _ => Default::default(),
        };
        // Legacy links on the default bridge: a hosts line and variables per running target.
        let linked = self.linked(rec)?;
        // Files the container sees at /etc/{hostname,hosts,resolv.conf}.
        let hostname = if hc.network_mode() == "host" {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        } else if let Some(peer) = mode.strip_prefix("container:") {
            // The namespace's owner's name, as moby gives a `container:` network: the one it
            // runs with (its own may come from yet another container).
            let peer = self.resolve(peer)?.record();
            std::fs::read_to_string(self.container_dir(&peer.id).join("hostname"))
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or(peer.config.hostname)
        } else if rec.config.hostname.is_empty() {
            rec.short_id().to_owned()
        } else {
            rec.config.hostname.clone()
        };
        let hosts = if hc.network_mode() == "host" {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            // The container's own names: `host.domain host` with a domain name, as Docker's.
            let names = match rec.config.domainname.as_str() {
                "" => hostname.clone(),
                domain => format!("{hostname}.{domain} {hostname}"),
            };
            // In dockerd's order: the defaults, `--add-host` lines, links, then the
            // container's own line on its network.
            let mut h = spec::hosts_file(&names);
            let own = net_files.primary_ip.map(|ip| {
                h = h.replace(&format!("127.0.0.1\t{names}\n"), "");
                format!("{ip}\t{names}\n")
            });
            for extra in hc.extra_hosts.iter().flatten() {
                if let Some((host, ip)) = extra.split_once(':') {
                    let ip = if ip == "host-gateway" {
                        self.host_gateway_ip()?.to_string()
                    } else {
                        ip.to_owned()
                    };
                    h.push_str(&format!("{ip}\t{host}\n"));
                }
            }
            for (line, _) in &linked {
                h.push_str(line);
            }
            h.push_str(own.as_deref().unwrap_or_default());
            h
        };
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolv = if net_files.embedded_dns {
            spec::embedded_resolv_conf(
                &host_resolv,
                hc.dns_search.as_deref().unwrap_or_default(),
                hc.dns_options.as_deref().unwrap_or_default(),
            )
        } else {
            spec::resolv_conf(
                &host_resolv,
                hc.dns.as_deref().unwrap_or_default(),
                hc.dns_search.as_deref().unwrap_or_default(),
                hc.dns_options.as_deref().unwrap_or_default(),
            )
        };
        crate::fsutil::write_replace(&dir.join("hostname"), format!("{hostname}\n").as_bytes())?;
        crate::fsutil::write_replace(&dir.join("hosts"), hosts.as_bytes())?;
        crate::fsutil::write_replace(&dir.join("resolv.conf"), resolv.as_bytes())?;

        let cgroups_path = format!(
            "{}/{}",
            self.inner.cfg.cgroup_parent.trim_end_matches('/'),
            id
        );
        // Held open until the container has started (its runtime joins them at create).
        let (ipc_ns, shm_source) = self.ipc_namespace(rec, &dir)?;
        let pid_ns = match hc.pid_mode.strip_prefix("container:") {
            Some(key) => Some(self.namespace_of(key, "pid")?.0),
            None => None,
        };
        let prepared = spec::Prepared {
            rootfs: &rootfs,
            netns: netns.as_deref(),
            container_dir: &dir,
            init_binary: &self.inner.init_binary,
            cgroups_path: cgroups_path.clone(),
            mounts: &mounts,
            ipc_ns: ipc_ns.as_ref().map(HeldNamespace::path),
            pid_ns: pid_ns.as_ref().map(HeldNamespace::path),
            shm_source,
            hostname: &hostname,
        };
        // The links' variables come first; the container's own override them, as moby's.
        let with_links;
        let config = if linked.is_empty() {
            &rec.config
        } else {
            let mut c = rec.config.clone();
            let own = c.env.take().unwrap_or_default();
            let key = |e: &str| e.split('=').next().unwrap_or("").to_owned();
            let mut env: Vec<String> = linked
                .iter()
                .flat_map(|(_, vars)| vars.iter())
                .filter(|v| !own.iter().any(|o| key(o) == key(v)))
                .cloned()
                .collect();
            env.extend(own);
            c.env = Some(env);
            with_links = c;
            &with_links
        };
        let cspec = spec::container_spec(config, hc, &prepared)?;
        let oci = berth_runtime::spec::build_spec(&cspec)
            .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
        let oci_json =
            serde_json::to_vec_pretty(&oci).map_err(|e| EngineError::Runtime(e.to_string()))?;
        crate::fsutil::write_replace(&dir.join("config.json"), &oci_json)?;

        let runtime_name = if hc.runtime.is_empty() {
            &self.inner.cfg.default_runtime
        } else {
            &hc.runtime
        };
        let runtime = self
            .inner
            .cfg
            .runtimes
            .get(runtime_name)
            .cloned()
            .ok_or_else(|| {
                EngineError::InvalidArgument(format!("Unknown runtime specified {runtime_name}"))
            })?;
        let runtime_root = self.inner.cfg.exec_root.join("runtime").join(runtime_name);
        let (log_path, max_size, max_file, log_attrs) = self.log_settings(rec);
        let shim_cfg = ShimConfig {
            id: id.clone(),
            bundle: dir.clone(),
            socket: run.socket(),
            exit_file: run.exit_file(),
            log_path,
            log_max_size: max_size,
            log_max_file: max_file,
            log_attrs,
            runtime,
            runtime_root,
            cgroups_path,
            tty: rec.config.tty,
            open_stdin: rec.config.open_stdin,
            stdin_once: rec.config.stdin_once,
        };
        let pid = shim_client::spawn(
            &self.inner.cfg.shim_binary,
            &shim_cfg,
            &run.shim_config(),
            &run.shim_log(),
        )
        .await?;

        // Attachers that were waiting for this start connect now, before the process runs;
        // later ones connect to it directly.
        let waiters: Vec<AttachWaiter> = {
            let mut point = lock(&h.attach);
            point.live = Some(run.socket());
            std::mem::take(&mut point.waiters)
        };
        for w in waiters {
            let (ack_tx, ack_rx) = oneshot::channel();
            if w.send((run.socket(), ack_tx)).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(5), ack_rx).await;
            }
        }
        // The exit monitor connects before the start, so no exit can slip by.
        let mut monitor = ShimConn::connect(&run.socket()).await?;
        monitor
            .request(&Request::Attach {
                stdin: false,
                stdout: false,
                stderr: false,
            })
            .await?;
        shim_client::call(&run.socket(), &Request::Start)
            .await
            .map_err(|e| match e {
                EngineError::Runtime(m) => EngineError::Runtime(shim_client::runtime_message(&m)),
                other => other,
            })?;
        self.spawn_monitor(h.clone(), monitor);
        drop((ipc_ns, pid_ns));
        Ok(pid)
    }

    /// The hosts line and variables of each of a starting container's links (on the default
    /// bridge only, as dockerd keeps them). A target that is not running stops the start.
    fn linked(&self, rec: &ContainerRecord) -> Result<Vec<(String, Vec<String>)>> {
        let mut out = Vec::new();
        for l in rec.host_config.links.iter().flatten() {
            let link = crate::links::parse(l)?;
            let target = self
                .resolve(&link.target)
                .map(|h| h.record())
                .map_err(|_| {
                    EngineError::InvalidArgument(format!(
                        "could not get container for {}",
                        link.target
                    ))
                })?;
            if !target.state.is_running() {
                return Err(EngineError::InvalidArgument(format!(
                    "Cannot link to a non running container: /{} AS /{}/{}",
                    target.name, rec.name, link.alias
                )));
            }
            if !matches!(rec.host_config.network_mode(), "bridge" | "default") {
                continue;
            }
            let Some(ip) = target
                .networks
                .get("bridge")
                .map(|ep| ep.ip_address.clone())
                .filter(|ip| !ip.is_empty())
            else {
                return Err(EngineError::InvalidArgument(format!(
                    "Cannot link to /{}, as it does not belong to the default network",
                    target.name
                )));
            };
            out.push((
                crate::links::hosts_line(&link, &ip, &target),
                crate::links::env(&link, &rec.name, &ip, &target),
            ));
        }
        Ok(out)
    }

    /// The json-file log of a container: its path (none with the `none` driver), rotation
    /// size and count, and the attributes on each line.
    fn log_settings(
        &self,
        rec: &ContainerRecord,
    ) -> (Option<PathBuf>, u64, u32, BTreeMap<String, String>) {
        let lc = &rec.host_config.log_config;
        if lc.kind == "none" {
            return (None, 0, 1, BTreeMap::new());
        }
        let mut opts = self.inner.cfg.log_opts.clone();
        opts.extend(lc.config.clone());
        let max_size = opts
            .get("max-size")
            .and_then(|s| parse_size(s))
            .unwrap_or(0);
        let max_file = opts
            .get("max-file")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let (log, ..) = self.container_paths(&rec.id);
        let attrs = crate::logs::log_attributes(rec, &opts);
        (Some(log), max_size, max_file, attrs)
    }

    /// Watches a running container through its shim and handles its exit.
    fn spawn_monitor(&self, h: Arc<ContainerHandle>, conn: ShimConn) {
        let engine = self.clone();
        tokio::spawn(async move {
            let (mut frames, _stdin) = conn.into_stream();
            let mut status = None;
            while let Some(f) = frames.next().await {
                if let Frame::Exit(s) = f {
                    status = Some(s);
                    break;
                }
            }
            let id = lock(&h.rec).id.clone();
            let status = match status {
                Some(s) => s,
                None => engine.read_exit_file(&id).await,
            };
            engine.on_exit(h, status).await;
        });
    }

    /// The exit file the shim leaves; waits briefly for it, since the shim writes it just
    /// before closing its connections. A shim that died without one is reported as 255.
    async fn read_exit_file(&self, id: &str) -> ExitStatus {
        let path = self.run_paths(id).exit_file();
        for _ in 0..50 {
            if let Ok(data) = std::fs::read(&path) {
                if let Ok(s) = serde_json::from_slice::<ExitStatus>(&data) {
                    return s;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ExitStatus {
            exit_code: 255,
            oom_killed: false,
            finished_at: String::new(),
        }
    }

    /// Records an exit, then applies the restart policy or auto-remove.
    async fn on_exit(&self, h: Arc<ContainerHandle>, status: ExitStatus) {
        lock(&h.attach).live = None;
        let at = chrono::DateTime::parse_from_rfc3339(&status.finished_at)
            .ok()
            .map(|t| t.with_timezone(&Utc));
        let rec = {
            let mut r = lock(&h.rec);
            if !r.state.is_running() {
                return;
            }
            r.state
                .set_exited(status.exit_code as i64, status.oom_killed, at);
            r.clone()
        };
        // `die` (and `oom`) come first, then the network's `disconnect`, as dockerd sends them.
        if rec.state.oom_killed {
            self.emit(&rec, "oom");
        }
        self.emit(&rec, "die");
        self.net_detach(&rec.id).await;
        self.cleanup_after_exit(&rec.id);
        self.volumes_release(&rec.id, &rec.mounts);
        let rec = h.record();
        let auto_remove =
            rec.host_config.auto_remove && !h.restarting.load(std::sync::atomic::Ordering::SeqCst);
        // An auto-remove container's record goes right after this (it has no restart policy):
        // its exit is not written on its own, which saves a durable commit on `run --rm`'s
        // path. A daemon that dies before the removal finds the record running, reads the exit
        // file, and removes the container then (a failed removal writes the exit below).
        if !auto_remove {
            let _ = self.persist(&rec);
        }
        h.watch.send_modify(|w| {
            w.running = false;
            w.exit_code = rec.state.exit_code;
            w.exits += 1;
        });
        let engine = self.clone();
        tokio::spawn(async move { engine.after_exit(h, auto_remove).await });
    }

    /// Restart policy (with Docker's backoff) or auto-remove, after an exit.
    ///
    /// Boxed with an explicit `Send` type: a failed restart schedules this again, and the
    /// recursion would otherwise leave the future's `Send`-ness uninferable.
    fn after_exit(
        &self,
        h: Arc<ContainerHandle>,
        auto_remove: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        let engine = self.clone();
        Box::pin(async move { engine.after_exit_inner(h, auto_remove).await })
    }

    async fn after_exit_inner(&self, h: Arc<ContainerHandle>, auto_remove: bool) {
        let rec = h.record();
        if let Some(delay) = restart_delay(&rec) {
            {
                let mut r = lock(&h.rec);
                r.state.status = Status::Restarting;
                r.restart_count += 1;
            }
            let starts_before = h.watch.borrow().starts;
            tokio::time::sleep(delay).await;
            let _op = h.op.lock().await;
            let current = h.record();
            // A stop, remove or manual start during the delay wins.
            if current.state.status != Status::Restarting
                || h.watch.borrow().starts != starts_before
            {
                return;
            }
            // Restarting until it runs, as dockerd shows it (a kill or rm meanwhile sees the
            // loop, not an exited container).
            if let Err(e) = self.start_locked(&h).await {
                {
                    let mut r = lock(&h.rec);
                    if r.state.status == Status::Restarting {
                        r.state.status = Status::Exited;
                    }
                }
                tracing::warn!(id = %current.id, "restart failed: {e}");
                let engine = self.clone();
                let h2 = h.clone();
                // A failed restart counts as an exit for the policy.
                let auto_remove = h2.record().host_config.auto_remove;
                tokio::spawn(engine.after_exit(h2, auto_remove));
            }
            // (A policy's restart is a `start` event only, as dockerd's; `restart` is for
            // `docker restart`.)
            return;
        }
        if auto_remove {
            // Noted before the removal: a wait arriving while the container leaves the
            // table finds the exit code instead of a 404.
            self.note_auto_removed(&h.record());
            match self.remove(&rec.id, true, true).await {
                Ok(()) => {}
                Err(e) => {
                    lock(&self.inner.auto_removed).retain(|(id, ..)| id != &rec.id);
                    tracing::warn!(id = %rec.id, "auto-remove failed: {e}");
                    let _ = self.persist(&h.record());
                }
            }
        }
    }

    /// Namespace `kind` of the running container `key` names, held open, with its record.
    ///
    /// The record's pid is checked after the namespace is opened: the process must still be
    /// in the container's cgroup. A pid that was the container's when the record was read
    /// and is still its own after the open was its own all along (a pid is not reused while
    /// its process lives), so the namespace held is the container's, even if the container
    /// exits and its pid is reused before the joiner's runtime opens [`HeldNamespace::path`].
    fn namespace_of(&self, key: &str, kind: &str) -> Result<(HeldNamespace, ContainerRecord)> {
        let other = self.resolve(key)?.record();
        let not_running = || {
            EngineError::Conflict(format!(
                "cannot join {kind} namespace of a non running container: {}",
                other.id
            ))
        };
        if !other.state.is_running() || other.state.pid <= 0 {
            return Err(not_running());
        }
        let pid = other.state.pid;
        let file =
            std::fs::File::open(format!("/proc/{pid}/ns/{kind}")).map_err(|_| not_running())?;
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if !in_container_cgroup(&cgroups, &other.id) {
            return Err(not_running());
        }
        Ok((HeldNamespace(file.into()), other))
    }

    /// The IPC namespace to join and the /dev/shm to bind, as moby shares them: a
    /// `shareable` container gets its /dev/shm as a tmpfs mounted on the host (under its
    /// directory), which a `container:<name>` joiner binds too, with the donor's namespace.
    fn ipc_namespace(
        &self,
        rec: &ContainerRecord,
        dir: &Path,
    ) -> Result<(Option<HeldNamespace>, Option<PathBuf>)> {
        let mode = rec.host_config.ipc_mode.as_str();
        if let Some(key) = mode.strip_prefix("container:") {
            let (ns, donor) = self.namespace_of(key, "ipc")?;
            let shm = self.container_dir(&donor.id).join("shm");
            if donor.host_config.ipc_mode != "shareable" || !is_mount_point(&shm) {
                return Err(EngineError::InvalidArgument(format!(
                    "can't join IPC of container {}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)",
                    donor.id
                )));
            }
            return Ok((Some(ns), Some(shm)));
        }
        if mode != "shareable" {
            return Ok((None, None));
        }
        let shm = dir.join("shm");
        std::fs::create_dir_all(&shm)
            .map_err(EngineError::io(format!("create {}", shm.display())))?;
        if !is_mount_point(&shm) {
            let size = match rec.host_config.shm_size {
                n if n > 0 => n,
                _ => berth_runtime::defaults::DEFAULT_SHM_SIZE,
            };
            rustix::mount::mount(
                "shm",
                &shm,
                "tmpfs",
                rustix::mount::MountFlags::NOSUID
                    | rustix::mount::MountFlags::NODEV
                    | rustix::mount::MountFlags::NOEXEC,
                Some(
                    std::ffi::CString::new(format!("mode=1777,size={size}"))
                        .map_err(|e| EngineError::Runtime(e.to_string()))?
                        .as_c_str(),
                ),
            )
            .map_err(|e| EngineError::Runtime(format!("mount the shareable /dev/shm: {e}")))?;
        }
        Ok((None, Some(shm)))
    }

    /// Unmounts a shareable IPC container's /dev/shm (its joiners hold their own mounts).
    fn unmount_shm(&self, id: &str) {
        let shm = self.container_dir(id).join("shm");
        if is_mount_point(&shm) {
            let _ = rustix::mount::unmount(&shm, rustix::mount::UnmountFlags::DETACH);
        }
    }

    /// Unmounts and releases what a running container held on the host.
    fn cleanup_after_exit(&self, id: &str) {
        let rootfs = self.container_dir(id).join("rootfs");
        if let Err(e) = self.unmount_rootfs(&rootfs) {
            tracing::warn!(id, "unmount rootfs: {e}");
        }
        netns::remove(&self.inner.cfg.exec_root.join("netns").join(id));
        let run = self.run_paths(id);
        let _ = std::fs::remove_file(run.socket());
        self.unmount_shm(id);
        // A stopped container's exec instances go with its process, as dockerd drops them.
        lock(&self.inner.execs).retain(|_, e| e.container_id != id);
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout` seconds.
    pub async fn stop(&self, key: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let h = self.resolve(key)?;
        let _op = h.op.lock().await;
        self.stop_locked(&h, timeout, signal).await
    }

    async fn stop_locked(
        &self,
        h: &Arc<ContainerHandle>,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let rec = h.record();
        if rec.state.status == Status::Restarting {
            let mut r = lock(&h.rec);
            r.state.status = Status::Exited;
            r.state.manually_stopped = true;
            let snap = r.clone();
            drop(r);
            self.persist(&snap)?;
            return Ok(());
        }
        if !rec.state.is_running() {
            return Err(EngineError::NotModified("container already stopped".into()));
        }
        {
            let mut r = lock(&h.rec);
            r.state.manually_stopped = true;
        }
        let sig = parse_signal(
            signal
                .or(rec.config.stop_signal.as_deref())
                .unwrap_or("SIGTERM"),
        )?;
        let timeout = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        let mut rx = h.watch.subscribe();
        let exits = rx.borrow().exits;
        let socket = self.run_paths(&rec.id).socket();
        if rec.state.status == Status::Paused {
            let _ = shim_client::call(&socket, &Request::Resume).await;
        }
        self.emit_kill(&rec, sig);
        let _ = shim_client::call(
            &socket,
            &Request::Kill {
                signal: sig,
                all: false,
            },
        )
        .await;
        let exited = |w: &Watch| w.exits > exits || !w.running;
        let waited = if timeout < 0 {
            rx.wait_for(exited).await.is_ok()
        } else {
            tokio::time::timeout(Duration::from_secs(timeout as u64), rx.wait_for(exited))
                .await
                .is_ok()
        };
        if !waited {
            self.emit_kill(&rec, libc::SIGKILL);
            shim_client::kill_all(&socket).await;
            if tokio::time::timeout(Duration::from_secs(30), rx.wait_for(exited))
                .await
                .is_err()
            {
                return Err(EngineError::Runtime(format!(
                    "container {} did not exit after SIGKILL",
                    rec.id
                )));
            }
        }
        self.persist(&h.record())?;
        self.emit(&h.record(), "stop");
        Ok(())
    }

    /// Sends a signal (default SIGKILL).
    pub async fn kill(&self, key: &str, signal: Option<&str>) -> Result<()> {
        let h = self.resolve(key).map_err(|e| match e {
            // Still a 404, in dockerd's words.
            EngineError::NoSuchContainer(_) => {
                EngineError::NotFound(format!("Cannot kill container: {key}: {e}"))
            }
            e => e,
        })?;
        let mut rec = h.record();
        let sig = parse_signal(signal.filter(|s| !s.is_empty()).unwrap_or("SIGKILL"))?;
        // A kill of a container between restarts ends the restarts, as dockerd's. (Once a
        // restart under way has it running, it is killed as any running container.)
        if rec.state.status == Status::Restarting {
            let op = h.op.lock().await;
            let ended = {
                let mut r = lock(&h.rec);
                (r.state.status == Status::Restarting).then(|| {
                    r.state.status = Status::Exited;
                    r.state.manually_stopped = true;
                    r.clone()
                })
            };
            drop(op);
            if let Some(snap) = ended {
                self.persist(&snap)?;
                return Ok(());
            }
            rec = h.record();
        }
        if !rec.state.is_running() {
            return Err(EngineError::Conflict(format!(
                "Cannot kill container: {key}: Container {} is not running",
                rec.id
            )));
        }
        let socket = self.run_paths(&rec.id).socket();
        let mut rx = h.watch.subscribe();
        let exits = rx.borrow().exits;
        // A user's kill is a manual stop: the restart policy leaves the container down
        // (dockerd marks it so whatever the signal).
        let snap = {
            let mut r = lock(&h.rec);
            r.state.manually_stopped = true;
            r.clone()
        };
        self.persist(&snap)?;
        // The event goes out as the signal does, so it always precedes the `die` it may
        // cause (the exit is reported on another task), as dockerd's.
        self.emit_kill(&rec, sig);
        shim_client::call(
            &socket,
            &Request::Kill {
                signal: sig,
                all: false,
            },
        )
        .await?;
        if sig == libc::SIGKILL {
            // docker kill returns once a SIGKILLed container is gone.
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                rx.wait_for(|w| w.exits > exits || !w.running),
            )
            .await;
        }
        Ok(())
    }

    /// Stops (if running) and starts again.
    pub async fn restart(
        &self,
        key: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let h = self.resolve(key)?;
        let _op = h.op.lock().await;
        // The exit this stop causes is seen (in `on_exit`) before `stop_locked` returns.
        h.restarting
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let stopped = self.stop_locked(&h, timeout, signal).await;
        h.restarting
            .store(false, std::sync::atomic::Ordering::SeqCst);
        match stopped {
            Ok(()) | Err(EngineError::NotModified(_)) => {}
            Err(e) => return Err(e),
        }
        self.start_locked(&h).await?;
        self.emit(&h.record(), "restart");
        Ok(())
    }

    /// Waits for a condition: `not-running` (default), `next-exit`, `removed`. Returns the
    /// exit code.
    pub async fn wait(&self, key: &str, condition: &str) -> Result<i64> {
        Ok(self.waiter(key, condition)?.await)
    }

    /// A wait as the API serves it: the container is looked up and watched now, and the
    /// future gives the exit code once `condition` holds. A container that removed itself
    /// (`--rm`) moments ago still answers `not-running` and `removed` waits with its exit
    /// code: docker-py's `run(detach=True, remove=True).wait()` races the removal.
    pub fn waiter(
        &self,
        key: &str,
        condition: &str,
    ) -> Result<std::pin::Pin<Box<dyn std::future::Future<Output = i64> + Send>>> {
        if !matches!(condition, "" | "not-running" | "next-exit" | "removed") {
            return Err(EngineError::InvalidArgument(format!(
                "invalid condition: \"{condition}\""
            )));
        }
        let h = match self.resolve(key) {
            Ok(h) => h,
            Err(e) => {
                if e.kind() == crate::ErrorKind::NotFound && condition != "next-exit" {
                    if let Some(code) = self.recently_auto_removed(key) {
                        return Ok(Box::pin(std::future::ready(code)));
                    }
                }
                return Err(e);
            }
        };
        let mut rx = h.watch.subscribe();
        let start = rx.borrow().clone();
        let condition = condition.to_owned();
        Ok(Box::pin(async move {
            let res = match condition.as_str() {
                "next-exit" => rx
                    .wait_for(|w| w.exits > start.exits || w.removed)
                    .await
                    .map(|w| w.exit_code),
                "removed" => rx.wait_for(|w| w.removed).await.map(|w| w.exit_code),
                _ => rx
                    .wait_for(|w| !w.running || w.removed)
                    .await
                    .map(|w| w.exit_code),
            };
            // The sender lives in the handle; when the handle is dropped the container is gone.
            res.unwrap_or(start.exit_code)
        }))
    }

    /// How long, and how many, self-removed containers' exit codes are kept for waits.
    const AUTO_REMOVED_KEEP: (Duration, usize) = (Duration::from_secs(60), 256);

    fn note_auto_removed(&self, rec: &ContainerRecord) {
        let mut q = lock(&self.inner.auto_removed);
        if q.len() >= Self::AUTO_REMOVED_KEEP.1 {
            q.pop_front();
        }
        q.push_back((
            rec.id.clone(),
            rec.name.clone(),
            rec.state.exit_code,
            std::time::Instant::now(),
        ));
    }

    fn recently_auto_removed(&self, key: &str) -> Option<i64> {
        let mut q = lock(&self.inner.auto_removed);
        q.retain(|(.., at)| at.elapsed() < Self::AUTO_REMOVED_KEEP.0);
        let name = key.trim_start_matches('/');
        q.iter()
            .rev()
            .find(|(id, n, ..)| n == name || (key.len() >= 12 && id.starts_with(key)))
            .map(|&(_, _, code, _)| code)
    }

    /// Removes a container; `force` kills a running one first; `volumes` removes its
    /// anonymous volumes too (named ones stay, as do those another container uses).
    pub async fn remove(&self, key: &str, force: bool, volumes: bool) -> Result<()> {
        let h = self.resolve(key)?;
        let _op = h.op.lock().await;
        let rec = h.record();
        // A container waiting out its restart delay counts as running, as in dockerd.
        if rec.state.is_running() || rec.state.status == Status::Restarting {
            if !force {
                let procedure = "top the container before attempting removal or force remove";
                let (state, procedure) = match rec.state.status {
                    Status::Paused => ("paused", format!("Unpause and then s{procedure}")),
                    Status::Restarting => ("restarting", format!("S{procedure}")),
                    _ => ("running", format!("S{procedure}")),
                };
                return Err(EngineError::Conflict(format!(
                    "You cannot remove a {state} container {}. {procedure}",
                    rec.id
                )));
            }
            {
                let mut r = lock(&h.rec);
                r.state.manually_stopped = true;
            }
            let mut rx = h.watch.subscribe();
            let socket = self.run_paths(&rec.id).socket();
            if rec.state.status == Status::Paused {
                let _ = shim_client::call(&socket, &Request::Resume).await;
            }
            shim_client::kill_all(&socket).await;
            if tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|w| !w.running))
                .await
                .is_err()
            {
                return Err(EngineError::Runtime(format!(
                    "could not kill running container {}",
                    rec.id
                )));
            }
        }
        {
            let mut r = lock(&h.rec);
            r.state.status = Status::Removing;
        }
        self.net_detach(&rec.id).await;
        self.cleanup_after_exit(&rec.id);
        // The directories leave the store by rename; the disk work happens in the background,
        // so `wait --condition=removed` (and `run --rm`) do not wait on it.
        if let Some(upper) = self.inner.images.detach_container(&rec.id)? {
            crate::fsutil::delete_in_background(upper);
        }
        crate::fsutil::remove_dir_later(&self.container_dir(&rec.id))?;
        let _ = crate::fsutil::remove_dir_later(&self.run_paths(&rec.id).dir);
        self.inner.db.delete(crate::db::CONTAINERS, &rec.id)?;
        self.inner
            .containers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rec.id);
        h.watch.send_modify(|w| w.removed = true);
        self.emit(&rec, "destroy");
        if volumes {
            for m in rec
                .mounts
                .iter()
                .filter(|m| m.kind == MountType::Volume && !m.named)
            {
                match self.volume_remove(&m.name, true) {
                    Ok(()) => {}
                    Err(e) if e.kind() == crate::ErrorKind::Conflict => {}
                    Err(e) => tracing::warn!(volume = %m.name, "removing with its container: {e}"),
                }
            }
        }
        Ok(())
    }

    /// Lists containers with Docker's options and filters, newest first.
    pub fn list(&self, opts: &ListOptions) -> Result<Vec<ContainerRecord>> {
        for key in opts.filters.keys() {
            if !matches!(
                key.as_str(),
                "id" | "name"
                    | "status"
                    | "label"
                    | "ancestor"
                    | "exited"
                    | "before"
                    | "since"
                    | "network"
                    | "health"
                    | "volume"
                    | "is-task"
                    | "publish"
                    | "expose"
                    | "isolation"
            ) {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid filter '{key}'"
                )));
            }
        }
        // Values checked as moby checks them (Go prints the list in brackets).
        let invalid = |key: &str| {
            let vals = opts.filters.get(key).cloned().unwrap_or_default();
            EngineError::InvalidArgument(format!("invalid filter '{key}=[{}]'", vals.join(" ")))
        };
        for s in opts.filters.get("status").into_iter().flatten() {
            if !matches!(
                s.as_str(),
                "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead"
            ) {
                return Err(invalid("status"));
            }
        }
        if let Some(v) = opts.filters.get("is-task") {
            if v.len() != 1 || !matches!(v[0].as_str(), "true" | "false") {
                return Err(invalid("is-task"));
            }
        }
        for v in opts.filters.get("exited").into_iter().flatten() {
            if v.parse::<i64>().is_err() {
                return Err(EngineError::InvalidArgument(format!(
                    "strconv.Atoi: parsing {v:?}: invalid syntax"
                )));
            }
        }
        for v in opts.filters.get("health").into_iter().flatten() {
            if !matches!(v.as_str(), "starting" | "healthy" | "unhealthy" | "none") {
                return Err(EngineError::InvalidArgument(format!(
                    "Unrecognised filter value for health: {v}"
                )));
            }
        }
        let mut recs: Vec<ContainerRecord> = self.handles().iter().map(|h| h.record()).collect();
        recs.sort_by_key(|r| std::cmp::Reverse(r.created));
        let before = self.filter_anchor(opts, "before")?;
        let since = self.filter_anchor(opts, "since")?;
        let all = opts.all || opts.limit.is_some() || opts.filters.contains_key("status");
        let mut out = Vec::new();
        for r in recs {
            if !all && !r.state.is_running() && r.state.status != Status::Restarting {
                continue;
            }
            if let Some(t) = before {
                if r.created >= t {
                    continue;
                }
            }
            if let Some(t) = since {
                if r.created <= t {
                    continue;
                }
            }
            if !self.matches_filters(&r, &opts.filters) {
                continue;
            }
            out.push(r);
            if opts.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    fn filter_anchor(
        &self,
        opts: &ListOptions,
        key: &str,
    ) -> Result<Option<chrono::DateTime<Utc>>> {
        match opts.filters.get(key).and_then(|v| v.first()) {
            Some(k) => Ok(Some(self.resolve(k)?.record().created)),
            None => Ok(None),
        }
    }

    fn matches_filters(&self, r: &ContainerRecord, filters: &HashMap<String, Vec<String>>) -> bool {
        let any = |key: &str, f: &dyn Fn(&str) -> bool| {
            filters
                .get(key)
                .is_none_or(|vals| vals.iter().any(|v| f(v)))
        };
        let labels = r.config.labels.clone().unwrap_or_default();
        // The ports as `ps` lists them: (host port if published, container port, protocol).
        let ports: Vec<(Option<u16>, u16, &str)> = r
            .listed_ports()
            .into_iter()
            .map(|p| {
                (
                    p.public.map(|(_, h)| h),
                    p.private_port,
                    p.protocol.as_str(),
                )
            })
            .collect();
        any("id", &|v| r.id.starts_with(v))
            && any("name", &|v| name_matches(v, &r.name))
            && any("status", &|v| r.state.status.as_str() == v)
            && any("exited", &|v| {
                r.state.status == Status::Exited
                    && v.parse::<i64>().is_ok_and(|c| c == r.state.exit_code)
            })
            && filters.get("label").is_none_or(|vals| {
                vals.iter().all(|v| match v.split_once('=') {
                    Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
                    None => labels.contains_key(v.as_str()),
                })
            })
            && any("ancestor", &|v| self.ancestor_matches(r, v))
            // By name or id (a prefix too), any network the container is on (connected later
            // too).
            && any("network", &|v| {
                r.host_config.network_mode() == v
                    || r.networks.iter().any(|(name, ep)| {
                        name == v || (!ep.network_id.is_empty() && ep.network_id.starts_with(v))
                    })
            })
            && any("publish", &|v| {
                port_filter(v).is_some_and(|want| {
                    ports.iter().any(|(host, _, proto)| {
                        host.is_some_and(|h| want.iter().any(|(p, pr)| *p == h && pr == proto))
                    })
                })
            })
            && any("expose", &|v| {
                port_filter(v).is_some_and(|want| {
                    ports
                        .iter()
                        .any(|(_, c, proto)| want.iter().any(|(p, pr)| p == c && pr == proto))
                })
            })
            // No swarm tasks here: only `is-task=false` matches.
            && any("is-task", &|v| v == "false")
            && any("isolation", &|v| {
                let iso = r.host_config.isolation.as_str();
                v == iso || (v == "default" && iso.is_empty())
            })
            && any("health", &|v| {
                let status = r
                    .state
                    .health
                    .as_ref()
                    .map_or("none", |h| h.status.as_str());
                status == v
            })
            // A volume by name, or any mount by its source or destination (Docker's rule).
            && any("volume", &|v| {
                r.mounts.iter().any(|m| {
                    (m.kind == MountType::Volume && m.name == v)
                        || (m.kind == MountType::Bind && m.source == v)
                        || m.destination == v
                })
            })
    }

    fn ancestor_matches(&self, r: &ContainerRecord, v: &str) -> bool {
        if r.config.image == v
            || r.image_id == v
            || r.image_id.trim_start_matches("sha256:").starts_with(v)
        {
            return true;
        }
        let Ok(img) = self.inner.images.resolve(v) else {
            return false;
        };
        // The image or any it descends from (a commit's parent), as moby walks them.
        let mut id = Some(r.image_id.clone());
        for _ in 0..MAX_IMAGE_DEPTH {
            match id {
                Some(cur) if cur == img.id => return true,
                Some(cur) => id = self.inner.images.get(&cur).ok().and_then(|i| i.parent),
                None => break,
            }
        }
        false
    }

    /// Renames a container.
    pub async fn rename(&self, key: &str, new_name: &str) -> Result<()> {
        let h = self.resolve(key)?;
        let new_name = new_name.trim_start_matches('/');
        if !valid_name(new_name) {
            return Err(EngineError::InvalidArgument(format!(
                "Error when allocating new name: Invalid container name (/{new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let old = lock(&h.rec).name.clone();
        if old == new_name {
            return Err(EngineError::InvalidArgument(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        let map = self
            .inner
            .containers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        name_free(&map, new_name).map_err(|e| match e {
            EngineError::Conflict(m) => {
                EngineError::Conflict(format!("Error when allocating new name: {m}"))
            }
            other => other,
        })?;
        let snap = {
            let mut r = lock(&h.rec);
            r.name = new_name.to_owned();
            r.clone()
        };
        drop(map);
        self.persist(&snap)?;
        let mut attrs = BTreeMap::new();
        attrs.insert("oldName".into(), format!("/{old}"));
        attrs.insert("name".into(), new_name.to_owned());
        self.inner
            .events
            .publish("container", "rename", &snap.id, attrs);
        Ok(())
    }

    /// Freezes or thaws a container.
    pub async fn set_paused(&self, key: &str, paused: bool) -> Result<()> {
        let h = self.resolve(key)?;
        let _op = h.op.lock().await;
        let rec = h.record();
        let mut probe = rec.state.clone();
        probe.set_paused(paused).map_err(|e| match e {
            EngineError::Conflict(m) => EngineError::Conflict(format!(
                "Container {} {}",
                rec.id,
                m.trim_start_matches("container ")
            )),
            other => other,
        })?;
        let socket = self.run_paths(&rec.id).socket();
        shim_client::call(
            &socket,
            if paused {
                &Request::Pause
            } else {
                &Request::Resume
            },
        )
        .await?;
        let snap = {
            let mut r = lock(&h.rec);
            r.state.set_paused(paused)?;
            r.clone()
        };
        self.persist(&snap)?;
        self.emit(&snap, if paused { "pause" } else { "unpause" });
        Ok(())
    }

    /// Resizes a container's tty.
    pub async fn resize(&self, key: &str, height: u16, width: u16) -> Result<()> {
        let h = self.resolve(key)?;
        let rec = h.record();
        if !rec.state.is_running() {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        // As dockerd: resizing a container without a tty does nothing, and is no error.
        if !rec.config.tty {
            return Ok(());
        }
        let socket = self.run_paths(&rec.id).socket();
        shim_client::call(
            &socket,
            &Request::Resize {
                height,
                width,
                exec_id: None,
            },
        )
        .await?;
        Ok(())
    }

    /// The container's processes, as `ps` on the host shows them: (titles, rows).
    pub async fn top(&self, key: &str, ps_args: &str) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        let h = self.resolve(key)?;
        let rec = h.record();
        if !rec.state.is_running() {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        let pids = self.container_pids(&rec.id);
        let args: Vec<&str> = if ps_args.is_empty() {
            vec!["-ef"]
        } else {
            ps_args.split_whitespace().collect()
        };
        let out = tokio::process::Command::new("ps")
            .args(&args)
            .output()
            .await
            .map_err(|e| EngineError::Runtime(format!("running ps: {e}")))?;
        if !out.status.success() {
            // ps's first line says what is wrong; its usage text after it is noise here.
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("failed");
            return Err(EngineError::InvalidArgument(format!(
                "ps: {}",
                first.trim()
            )));
        }
        parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
    }

    /// Pids in the container's cgroup (v1 or v2).
    /// One resource-usage sample of a container (zeros when it is not running).
    pub fn stats_sample(&self, key: &str) -> Result<crate::stats::Stats> {
        let h = self.resolve(key)?;
        let rec = h.record();
        let idle = || crate::stats::Stats::idle(&rec.id, &rec.name);
        if !matches!(rec.state.status, Status::Running | Status::Paused) {
            return Ok(idle());
        }
        let rel = format!(
            "{}/{}",
            self.inner.cfg.cgroup_parent.trim_matches('/'),
            rec.id
        );
        let mut sample = crate::stats::Hierarchy::detect()
            .sample(&rel, &rec.id, &rec.name)
            .unwrap_or_else(idle);
        // Its own namespace's interfaces, seen through its init's /proc.
        let own_netns = rec.networks.values().any(|ep| !ep.endpoint_id.is_empty());
        if own_netns && rec.state.pid > 0 {
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{}/net/dev", rec.state.pid)) {
                sample.networks = Some(crate::stats::parse_net_dev(&text));
            }
        }
        Ok(sample)
    }

    pub fn container_pids(&self, id: &str) -> Vec<i32> {
        let rel = format!("{}/{}", self.inner.cfg.cgroup_parent.trim_matches('/'), id);
        for base in [
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup",
        ] {
            if let Ok(s) = std::fs::read_to_string(format!("{base}/{rel}/cgroup.procs")) {
                return s.lines().filter_map(|l| l.trim().parse().ok()).collect();
            }
        }
        Vec::new()
    }

    /// Attaches to a container's streams. If it is not running, waits for its next start and
    /// connects before its process runs (as `docker run` needs).
    pub async fn attach(&self, key: &str, opts: AttachOptions) -> Result<IoSession> {
        let h = self.resolve(key)?;
        let rec = h.record();
        // Docker announces every attach, before the stream is set up.
        self.emit(&rec, "attach");
        let req = Request::Attach {
            stdin: opts.stdin,
            stdout: opts.stdout,
            stderr: opts.stderr,
        };
        /// Where this attach connects.
        enum Line {
            Live(PathBuf),
            Next(oneshot::Receiver<(PathBuf, oneshot::Sender<()>)>),
        }
        let line = {
            let mut point = lock(&h.attach);
            match point.live.clone() {
                Some(socket) => Line::Live(socket),
                None => {
                    let (tx, rx) = oneshot::channel();
                    point.waiters.push(tx);
                    Line::Next(rx)
                }
            }
        };
        // Not held while waiting: a container removed before it starts drops its line, and
        // the wait ends.
        drop(h);
        let (socket, ack) = match line {
            Line::Live(socket) => (socket, None),
            Line::Next(rx) => {
                let Ok((socket, ack)) = rx.await else {
                    return Err(EngineError::Conflict(format!(
                        "container {} was removed",
                        rec.id
                    )));
                };
                (socket, Some(ack))
            }
        };
        let mut conn = ShimConn::connect(&socket).await?;
        conn.request(&req).await?;
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
        let (frames, write) = conn.into_stream();
        Ok(IoSession {
            frames: Some(frames),
            stdin: opts.stdin.then_some(write),
            tty: rec.config.tty,
            on_exit: None,
            wanted: [true, true],
        })
    }

    /// Looks at every container the state says runs: still there (reconnect), exited while
    /// the daemon was away (record the exit), or gone. Then starts containers whose restart
    /// policy asks for it.
    pub(crate) async fn reconcile(&self) {
        for h in self.handles() {
            let rec = h.record();
            if !(rec.state.is_running() || rec.state.status == Status::Restarting) {
                continue;
            }
            let run = self.run_paths(&rec.id);
            let alive = match ShimConn::connect(&run.socket()).await {
                Ok(mut conn) => {
                    match conn
                        .request(&Request::Attach {
                            stdin: false,
                            stdout: false,
                            stderr: false,
                        })
                        .await
                    {
                        Ok(resp) if resp.running => {
                            lock(&h.attach).live = Some(run.socket());
                            self.spawn_monitor(h.clone(), conn);
                            true
                        }
                        _ => false,
                    }
                }
                Err(_) => false,
            };
            if alive {
                tracing::info!(id = %rec.id, "reconnected to running container");
                continue;
            }
            let status = self.read_exit_file(&rec.id).await;
            if rec.state.status == Status::Restarting {
                let mut r = lock(&h.rec);
                r.state.status = Status::Running;
            }
            tracing::info!(id = %rec.id, code = status.exit_code, "container exited while the daemon was down");
            self.on_exit(h.clone(), status).await;
        }
        // Docker starts `always` containers, and `unless-stopped` ones not stopped by hand.
        for h in self.handles() {
            let rec = h.record();
            let policy = rec.host_config.restart_policy.name.as_str();
            let wanted = rec.has_been_started
                && !rec.state.is_running()
                && rec.state.status != Status::Restarting
                && (policy == "always"
                    || (policy == "unless-stopped" && !rec.state.manually_stopped));
            if wanted {
                let engine = self.clone();
                tokio::spawn(async move {
                    let _op = h.op.lock().await;
                    if let Err(e) = engine.start_locked(&h).await {
                        tracing::warn!("restarting at daemon start: {e}");
                    }
                });
            }
        }
    }
}

/// Docker's restart decision and backoff: `None` means no restart.
fn restart_delay(rec: &ContainerRecord) -> Option<Duration> {
    let p = &rec.host_config.restart_policy;
    if rec.state.manually_stopped {
        return None;
    }
    let restart = match p.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => {
            rec.state.exit_code != 0
                && (p.maximum_retry_count == 0 || rec.restart_count < p.maximum_retry_count)
        }
        _ => false,
    };
    if !restart {
        return None;
    }
    // 100 ms doubling per restart, capped at a minute; reset after a run of 10 s or more.
    let ran = match (rec.state.started_at, rec.state.finished_at) {
        (Some(s), Some(f)) => (f - s).num_seconds(),
        _ => 0,
    };
    if ran >= 10 {
        return Some(Duration::from_millis(100));
    }
    let exp = rec.restart_count.clamp(0, 20) as u32;
    Some(Duration::from_millis(100u64.saturating_mul(1 << exp)).min(Duration::from_secs(60)))
}

/// Docker's conflict when another container already has `name`.
fn name_free(map: &HashMap<String, Arc<ContainerHandle>>, name: &str) -> Result<()> {
    match map.values().find(|h| lock(&h.rec).name == name) {
        Some(other) => Err(EngineError::Conflict(format!(
            "Conflict. The container name \"/{name}\" is already in use by container \"{}\". \
             You have to remove (or rename) that container to be able to reuse that name.",
            lock(&other.rec).id
        ))),
        None => Ok(()),
    }
}

/// The exit code Docker gives a container whose process could not start.
pub(crate) fn start_error_code(msg: &str) -> i64 {
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        127
    } else if msg.contains("permission denied") {
        126
    } else {
        128
    }
}

/// Parses a byte size as Docker's log options write them ("10m", "1g", "512k", "100").
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.trim_end_matches('b');
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

/// Keeps the rows of `ps` output whose PID column is one of `pids`.
fn parse_ps(out: &str, pids: &[i32]) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut lines = out.lines();
    let header = lines
        .next()
        .ok_or_else(|| EngineError::Runtime("ps printed nothing".into()))?;
    let titles: Vec<String> = header.split_whitespace().map(String::from).collect();
    let pid_col = titles.iter().position(|t| t == "PID").ok_or_else(|| {
        EngineError::InvalidArgument("Couldn't find PID field in ps output".into())
    })?;
    let mut rows = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < titles.len() {
            continue;
        }
        let Ok(pid) = fields[pid_col].parse::<i32>() else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        let mut row: Vec<String> = fields[..titles.len() - 1]
            .iter()
            .map(|s| s.to_string())
            .collect();
        row.push(fields[titles.len() - 1..].join(" "));
        rows.push(row);
    }
    Ok((titles, rows))
}

/// moby's `name` filter: a regular expression, matched against the name with and without its
/// leading `/`; one that does not compile matches nothing.
fn name_matches(pattern: &str, name: &str) -> bool {
    let Ok(re) = regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
    else {
        return false;
    };
    re.is_match(name) || re.is_match(&format!("/{name}"))
}

/// A `publish`/`expose` filter value: `80`, `80/udp`, `8000-8010/tcp`; as (port, protocol).
fn port_filter(v: &str) -> Option<Vec<(u16, &str)>> {
    let (ports, proto) = v.split_once('/').unwrap_or((v, "tcp"));
    let (a, z) = match ports.split_once('-') {
        Some((a, z)) => (a.parse::<u16>().ok()?, z.parse::<u16>().ok()?),
        None => {
            let p = ports.parse::<u16>().ok()?;
            (p, p)
        }
    };
    (a <= z).then(|| (a..=z).map(|p| (p, proto)).collect())
}

/// Whether a process whose `/proc/<pid>/cgroup` reads `proc_cgroup` is in container `id`'s
/// cgroup (or one below it, as a container that manages its own cgroups makes).
fn in_container_cgroup(proc_cgroup: &str, id: &str) -> bool {
    let (inside, below) = (format!("/{id}"), format!("/{id}/"));
    proc_cgroup.lines().any(|l| {
        let path = l.splitn(3, ':').nth(2).unwrap_or_default();
        path.ends_with(&inside) || path.contains(&below)
    })
}

/// A namespace of another container, held by an open descriptor of this process for as long
/// as a joiner's runtime may open it: [`HeldNamespace::path`] names that descriptor, so it
/// stays the same namespace whatever becomes of the pid it was found through.
struct HeldNamespace(std::os::fd::OwnedFd);

impl HeldNamespace {
    /// The descriptor's path for another process (the runtime helper) to open.
    fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.0.as_raw_fd()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_is_the_containers_only_in_its_cgroup() {
        let id = "4f1c0d2e";
        let v1 = "12:memory:/berth/4f1c0d2e\n0::/berth/4f1c0d2e\n";
        assert!(in_container_cgroup(v1, id));
        assert!(in_container_cgroup("0::/berth/4f1c0d2e/init.scope\n", id));
        // A pid reused by a process elsewhere, or in a container whose id merely starts so.
        assert!(!in_container_cgroup("0::/user.slice/session-1.scope\n", id));
        assert!(!in_container_cgroup("0::/berth/4f1c0d2e9\n", id));
        assert!(!in_container_cgroup("", id));
    }

    #[test]
    fn name_filters_are_regular_expressions() {
        assert!(name_matches("web", "my-web-1"));
        assert!(name_matches("^web$", "web"));
        assert!(name_matches("^/web$", "web"));
        assert!(!name_matches("^web$", "web2"));
        assert!(name_matches("w[ae]b", "web"));
        assert!(!name_matches("(", "web"), "a bad pattern matches nothing");
    }

    #[test]
    fn port_filters_take_ports_protocols_and_ranges() {
        assert_eq!(port_filter("80"), Some(vec![(80, "tcp")]));
        assert_eq!(port_filter("53/udp"), Some(vec![(53, "udp")]));
        assert_eq!(
            port_filter("8000-8002/tcp"),
            Some(vec![(8000, "tcp"), (8001, "tcp"), (8002, "tcp")])
        );
        assert_eq!(port_filter("x"), None);
        assert_eq!(port_filter("9-1"), None);
    }

    #[test]
    fn signals_parse_like_docker() {
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert_eq!(parse_signal("1").unwrap(), 1);
        assert_eq!(parse_signal("SIGRTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn names_follow_dockers_rule() {
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name("-bad"));
        assert!(!valid_name("a"));
        assert!(!valid_name("has space"));
    }

    #[test]
    fn restart_backoff_doubles_and_respects_policy() {
        let mut rec: ContainerRecord = serde_json::from_value(serde_json::json!({
            "id": "x", "name": "n", "created": "2024-01-01T00:00:00Z", "config": {}, "host_config": {},
            "image_id": "", "path": "", "args": [], "state": State::default(), "restart_count": 0,
            "has_been_started": true
        }))
        .unwrap();
        assert_eq!(restart_delay(&rec), None);
        rec.host_config.restart_policy.name = "on-failure".into();
        rec.host_config.restart_policy.maximum_retry_count = 2;
        rec.state.exit_code = 0;
        assert_eq!(restart_delay(&rec), None);
        rec.state.exit_code = 1;
        assert_eq!(restart_delay(&rec), Some(Duration::from_millis(100)));
        rec.restart_count = 1;
        assert_eq!(restart_delay(&rec), Some(Duration::from_millis(200)));
        rec.restart_count = 2;
        assert_eq!(restart_delay(&rec), None);
        rec.host_config.restart_policy.name = "always".into();
        rec.restart_count = 30;
        assert_eq!(restart_delay(&rec), Some(Duration::from_secs(60)));
        rec.state.manually_stopped = true;
        assert_eq!(restart_delay(&rec), None);
    }

    #[test]
    fn ps_rows_are_filtered_by_pid() {
        let out = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init\nroot 42 1 0 10:00 ? 00:00:00 sleep 100\n";
        let (titles, rows) = parse_ps(out, &[42]).unwrap();
        assert_eq!(titles.len(), 8);
        assert_eq!(
            rows,
            vec![vec![
                "root",
                "42",
                "1",
                "0",
                "10:00",
                "?",
                "00:00:00",
                "sleep 100"
            ]]
        );
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("x"), None);
    }
}
