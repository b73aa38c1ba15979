//! The engine: domain services behind the API — containers, exec, images, restart policies,
//! events — and the state database.
//!
//! [`Engine`] owns the state. Each container has one [`ContainerHandle`]; lifecycle operations
//! take its operation lock, state reads take only its record lock. Running containers are
//! supervised by their shims; the engine watches each through one connection and reacts to
//! exits (restart policies, auto-remove). The engine never runs container code itself.

mod archive;
pub mod build;
pub mod changes;
pub mod commit;
pub mod config;
pub mod container;
mod containers;
pub mod db;
pub mod distribution;
pub mod error;
pub mod events;
mod exec;
mod fsutil;
pub mod health;
mod images;
mod links;
pub mod logs;
mod netns;
pub mod networks;
pub mod prune;
pub mod shim_client;
mod shimbin;
pub mod spec;
pub mod stats;
pub mod sysinfo;
mod transfer;
pub mod update;
pub mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use berth_image::ImageStore;
use berth_runtime::RuntimeKind;
use tokio::sync::watch;

pub use archive::{ChannelReader, PathStat, PutOptions};
pub use berth_image::reference::names_tag_or_digest;
pub use container::{ContainerRecord, State, Status};
pub use containers::{AttachOptions, IoSession, ListOptions, LogOptions};
pub use error::{EngineError, ErrorKind, Result};
pub use exec::{ExecConfig, ExecInfo};
pub use images::{ImageView, ImportRequest, check_reference};

/// How the daemon was configured.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Persistent state (`--data-root`).
    pub data_root: PathBuf,
    /// Runtime state: sockets, netns files, shim files (`--exec-root`).
    pub exec_root: PathBuf,
    /// The `berth-shim` binary.
    pub shim_binary: PathBuf,
    /// Named runtimes (`runtimes` in daemon.json); "berth" is the embedded one.
    pub runtimes: BTreeMap<String, RuntimeKind>,
    pub default_runtime: String,
    /// Parent cgroup of every container (`--cgroup-parent`), e.g. "/berth".
    pub cgroup_parent: String,
    /// Default log options (`log-opts` in daemon.json): max-size, max-file.
    pub log_opts: BTreeMap<String, String>,
    /// The log driver of a container that names none (`log-driver`): `json-file` or `none`.
    pub log_driver: String,
    /// Registries reached without certificate checks (`insecure-registries`).
    pub insecure_registries: Vec<String>,
    /// Pull-through mirrors of Docker Hub (`registry-mirrors`).
    pub registry_mirrors: Vec<String>,
    /// `bridge` of daemon.json: `none` turns the default bridge off (containers on the
    /// default network get only loopback).
    pub bridge: String,
    /// `bip`: the default bridge's address and prefix (`192.168.5.1/24`).
    pub bip: String,
    /// `default-address-pools`: where new networks' subnets come from.
    pub address_pools: Vec<berth_network::ipam::AddressPool>,
    /// `host-gateway-ip`: what `host-gateway` in `--add-host` stands for; unset, the
    /// default bridge's gateway.
    pub host_gateway_ip: Option<std::net::IpAddr>,
}

impl EngineConfig {
    pub fn new(data_root: PathBuf, exec_root: PathBuf, shim_binary: PathBuf) -> Self {
        let mut runtimes = BTreeMap::new();
        runtimes.insert("berth".to_owned(), RuntimeKind::Embedded);
        runtimes.insert(
            "runc".to_owned(),
            RuntimeKind::Binary {
                path: PathBuf::from("runc"),
                args: Vec::new(),
            },
        );
        Self {
            data_root,
            exec_root,
            shim_binary,
            runtimes,
            default_runtime: "berth".into(),
            cgroup_parent: "/berth".into(),
            log_opts: BTreeMap::new(),
            log_driver: "json-file".into(),
            insecure_registries: Vec::new(),
            registry_mirrors: Vec::new(),
            bridge: String::new(),
            bip: String::new(),
            address_pools: Vec::new(),
            host_gateway_ip: None,
        }
    }
}

/// A distribution client with the given registry settings.
fn registry_client(
    insecure: &[String],
    mirrors: &[String],
) -> Result<berth_registry::client::Client> {
    berth_registry::client::Client::new(berth_registry::client::ClientConfig {
        insecure_registries: insecure.to_vec(),
        mirrors: mirrors.to_vec(),
        user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).to_owned(),
        ..Default::default()
    })
    .map_err(|e| EngineError::InvalidArgument(format!("registry settings: {e}")))
}

/// What waiters on a container see change.
#[derive(Debug, Clone, Default)]
pub(crate) struct Watch {
    pub running: bool,
    pub exit_code: i64,
    /// Counts exits, so `next-exit` waiters can tell a new one.
    pub exits: u64,
    /// Counts starts.
    pub starts: u64,
    pub removed: bool,
}

/// A value with a stamp that changes on every mutable access to it (through `DerefMut`).
/// A stamp is never reused, by any value: one that reads the same as before means nothing
/// changed. Inspect's response cache is keyed on the container record's stamp.
#[derive(Debug)]
pub(crate) struct Stamped<T> {
    value: T,
    stamp: u64,
}

/// The next stamp any [`Stamped`] takes.
static NEXT_STAMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_stamp() -> u64 {
    NEXT_STAMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl<T> Stamped<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            value,
            stamp: next_stamp(),
        }
    }

    /// The stamp: it changes whenever the value may have.
    pub(crate) fn stamp(&self) -> u64 {
        self.stamp
    }
}

impl<T> std::ops::Deref for Stamped<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> std::ops::DerefMut for Stamped<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.stamp = next_stamp();
        &mut self.value
    }
}

/// One container: its record and the locks around it.
pub struct ContainerHandle {
    pub(crate) rec: Mutex<Stamped<ContainerRecord>>,
    /// Serializes lifecycle operations (start, stop, remove, ...).
    pub(crate) op: tokio::sync::Mutex<()>,
    pub(crate) watch: watch::Sender<Watch>,
    /// Where attaches connect: the running process's shim, or a line for the next start
    /// (each in it gets the shim socket, connects, and acknowledges, so that start never
    /// races past them).
    pub(crate) attach: Mutex<containers::AttachPoint>,
    /// Set while `restart` stops the container: that exit does not auto-remove it (as in
    /// Docker, a restarted `--rm` container stays, with its filesystem).
    pub(crate) restarting: std::sync::atomic::AtomicBool,
}

impl ContainerHandle {
    fn new(rec: ContainerRecord) -> Arc<Self> {
        let w = Watch {
            running: rec.state.is_running(),
            exit_code: rec.state.exit_code,
            ..Watch::default()
        };
        Arc::new(Self {
            rec: Mutex::new(Stamped::new(rec)),
            op: tokio::sync::Mutex::new(()),
            watch: watch::channel(w).0,
            attach: Mutex::new(containers::AttachPoint::default()),
            restarting: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A copy of the record.
    pub fn record(&self) -> ContainerRecord {
        lock(&self.rec).clone()
    }

    /// The container's id.
    pub fn id(&self) -> String {
        lock(&self.rec).id.clone()
    }

    /// The record's stamp: it changes whenever the record does.
    pub fn stamp(&self) -> u64 {
        lock(&self.rec).stamp
    }
}

/// Locks a std mutex, recovering from poisoning (a panicked holder leaves consistent data:
/// every critical section here is a plain field update).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) struct Inner {
    pub cfg: EngineConfig,
    pub db: db::Db,
    pub images: Arc<ImageStore>,
    /// Runs builds (`POST /build`).
    pub builder: berth_build::exec::Builder,
    pub containers: RwLock<HashMap<String, Arc<ContainerHandle>>>,
    pub execs: Mutex<HashMap<String, Arc<exec::ExecInstance>>>,
    pub events: events::EventBus,
    pub init_binary: PathBuf,
    pub netns: Arc<netns::Pool>,
    /// The distribution client; replaced whole when a reload changes registry settings.
    pub registry: RwLock<berth_registry::client::Client>,
    /// Blob digest -> the lock its one download at a time holds.
    pub downloads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Volume records by name; its lock orders volume removal against container creation.
    pub volumes: Mutex<BTreeMap<String, volumes::Volume>>,
    /// Networks by id, with their address allocations.
    pub networks: Mutex<BTreeMap<String, networks::NetState>>,
    /// Bridges, ports, nftables and DNS, when the host allows networking.
    pub net: Mutex<Option<Arc<networks::NetRuntime>>>,
    /// Image id -> its layer directories (top first), for inspect's `GraphDriver`: an
    /// image's layers never change, and inspect stays off the store.
    pub lower_dirs: Mutex<HashMap<String, Arc<Vec<PathBuf>>>>,
    /// Containers that removed themselves (`--rm`) lately: (id, name, exit code, when), so a
    /// `wait` that arrives just after the removal still gets the exit code.
    pub auto_removed: Mutex<std::collections::VecDeque<(String, String, i64, std::time::Instant)>>,
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl Engine {
    /// Opens the state under the configured roots, reconciles containers that changed while
    /// the daemon was away, and restarts those whose policy says so.
    pub async fn open(cfg: EngineConfig) -> Result<Self> {
        // Shim sockets live at <exec-root>/shims/<64-hex id>.sock.
        let longest = cfg
            .exec_root
            .join("shims")
            .join(format!("{}.sock", "0".repeat(64)));
        if longest.as_os_str().len() > shim_client::MAX_SOCKET_PATH {
            return Err(EngineError::InvalidArgument(format!(
                "--exec-root {} is too long: shim sockets under it would exceed the {}-byte \
                 limit of unix socket paths",
                cfg.exec_root.display(),
                shim_client::MAX_SOCKET_PATH
            )));
        }
        for dir in [&cfg.data_root, &cfg.exec_root, &cfg.exec_root.join("shims")] {
            std::fs::create_dir_all(dir)
                .map_err(EngineError::io(format!("create {}", dir.display())))?;
        }
        let d = cfg.data_root.join("containers");
        std::fs::create_dir_all(&d).map_err(EngineError::io(format!("create {}", d.display())))?;
        fsutil::sweep_removing(&d);
        fsutil::sweep_removing(&cfg.exec_root.join("containers"));
        // Staging of loads a crash interrupted (and a removal of it that a crash cut short).
        fsutil::sweep_removing(&cfg.data_root);
        let tmp = cfg.data_root.join("tmp");
        if tmp.exists() {
            fsutil::remove_dir_later(&tmp)?;
        }
        let db = db::Db::open(&cfg.data_root.join("berth.redb"))?;
        let images = Arc::new(ImageStore::open(&cfg.data_root, db.database())?);
        let mut cfg = cfg;
        cfg.shim_binary = shimbin::protect(&cfg.shim_binary, &cfg.exec_root)?;
        let build_dir = cfg.exec_root.join("build");
        if build_dir.exists() {
            // Contexts and roots of builds a crash cut short.
            fsutil::remove_dir_later(&build_dir)?;
        }
        let builder = berth_build::exec::Builder::new(
            images.clone(),
            build_dir,
            cfg.data_root.join("tmp").join("build"),
            berth_build::exec::RunConfig {
                runtime: vec![
                    cfg.shim_binary
                        .with_file_name(berth_shim::helper::HELPER_BINARY)
                        .to_string_lossy()
                        .into_owned(),
                    "runtime".into(),
                ],
                runtime_root: cfg.exec_root.join("runtime").join("build"),
                cgroup_parent: cfg.cgroup_parent.clone(),
                cache_mounts: cfg.data_root.join("build").join("cache-mounts"),
            },
        );
        let init_binary = berth_runtime::defaults::install_init(&cfg.data_root.join("bin"))
            .map_err(|e| EngineError::Runtime(format!("installing the init binary: {e}")))?;
        let records: Vec<ContainerRecord> = db.all(db::CONTAINERS)?;
        let volumes = Engine::load_volumes(&db)?;
        fsutil::sweep_removing(&cfg.data_root.join("volumes"));
        let mut map = HashMap::new();
        for rec in records {
            map.insert(rec.id.clone(), ContainerHandle::new(rec));
        }
        let registry = registry_client(&cfg.insecure_registries, &cfg.registry_mirrors)?;
        let engine = Engine {
            inner: Arc::new(Inner {
                registry: RwLock::new(registry),
                downloads: Mutex::new(HashMap::new()),
                cfg,
                db,
                images,
                builder,
                containers: RwLock::new(map),
                execs: Mutex::new(HashMap::new()),
                events: events::EventBus::default(),
                init_binary,
                netns: Default::default(),
                volumes: Mutex::new(volumes),
                networks: Mutex::new(BTreeMap::new()),
                net: Mutex::new(None),
                lower_dirs: Mutex::new(HashMap::new()),
                auto_removed: Mutex::new(Default::default()),
            }),
        };
        if let Err(e) = engine.networks_init().await {
            tracing::warn!("networking: {e}");
        }
        engine.reconcile().await;
        engine.networks_ready().await;
        Ok(engine)
    }

    /// At a clean daemon shutdown: with no container left running (so no shim needs it),
    /// the read-only mount of the shim binaries goes too; otherwise it stays for the shims.
    pub fn close(&self) {
        let (_, running, paused, _) = self.counts();
        if running == 0 && paused == 0 {
            shimbin::release(&self.inner.cfg.exec_root);
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    /// The registry client in force (a cheap clone sharing connections).
    pub(crate) fn registry(&self) -> berth_registry::client::Client {
        self.inner
            .registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `RegistryConfig` as `info` shows it, from the settings in force (a reload changes
    /// them): CIDRs of insecure registries (loopback always), an index entry per insecure
    /// registry name, and Docker Hub's with the mirrors.
    pub fn registry_info(&self) -> serde_json::Value {
        let client = self.registry();
        let (insecure, mirrors) = client.settings();
        let mut cidrs = Vec::new();
        let mut indexes = serde_json::Map::new();
        for r in insecure {
            if r.parse::<ipnet::IpNet>().is_ok() {
                cidrs.push(r.clone());
            } else {
                indexes.insert(
                    r.clone(),
                    serde_json::json!({"Name": r, "Mirrors": [], "Secure": false, "Official": false}),
                );
            }
        }
        cidrs.push("127.0.0.0/8".to_owned());
        // As moby normalizes them: a trailing slash.
        let mirrors: Vec<String> = mirrors
            .iter()
            .map(|m| format!("{}/", m.trim_end_matches('/')))
            .collect();
        indexes.insert(
            "docker.io".to_owned(),
            serde_json::json!({"Name": "docker.io", "Mirrors": mirrors, "Secure": true, "Official": true}),
        );
        serde_json::json!({
            "AllowNondistributableArtifactsCIDRs": [],
            "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": cidrs,
            "IndexConfigs": indexes,
            "Mirrors": mirrors,
        })
    }

    /// A configuration reload (SIGHUP): the settings that can change while running take
    /// effect (registry mirrors and insecure registries; pulls under way keep the old ones),
    /// and a `daemon reload` event says what is now in force.
    pub fn reload(
        &self,
        insecure_registries: Vec<String>,
        registry_mirrors: Vec<String>,
    ) -> Result<()> {
        let client = registry_client(&insecure_registries, &registry_mirrors)?;
        *self
            .inner
            .registry
            .write()
            .unwrap_or_else(|p| p.into_inner()) = client;
        let hostname = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let json = |v: &[String]| serde_json::to_string(v).unwrap_or_default();
        self.inner.events.publish(
            "daemon",
            "reload",
            &self.daemon_id(),
            BTreeMap::from([
                ("name".to_owned(), hostname),
                ("insecure-registries".to_owned(), json(&insecure_registries)),
                ("registry-mirrors".to_owned(), json(&registry_mirrors)),
            ]),
        );
        Ok(())
    }

    /// The daemon's id as `info` shows it.
    pub fn daemon_id(&self) -> String {
        let hostname = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        format!("berth-{hostname}")
    }

    pub fn events(&self) -> &events::EventBus {
        &self.inner.events
    }

    pub fn images(&self) -> &ImageStore {
        &self.inner.images
    }

    /// Counts for `info`: (total, running, paused, stopped).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let map = self
            .inner
            .containers
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut c = (map.len(), 0, 0, 0);
        for h in map.values() {
            match lock(&h.rec).state.status {
                Status::Running | Status::Restarting => c.1 += 1,
                Status::Paused => c.2 += 1,
                _ => c.3 += 1,
            }
        }
        c
    }

    pub(crate) fn handles(&self) -> Vec<Arc<ContainerHandle>> {
        let map = self
            .inner
            .containers
            .read()
            .unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.inner.cfg.data_root.join("containers").join(id)
    }

    pub(crate) fn run_paths(&self, id: &str) -> shim_client::RunPaths {
        shim_client::RunPaths::new(&self.inner.cfg.exec_root, id)
    }

    pub(crate) fn persist(&self, rec: &ContainerRecord) -> Result<()> {
        self.inner.db.put(db::CONTAINERS, &rec.id, rec)
    }

    /// Data root, for diagnostics.
    pub fn data_root(&self) -> &Path {
        &self.inner.cfg.data_root
    }
}

#[cfg(test)]
mod tests {
    use super::Stamped;

    #[test]
    fn a_stamp_changes_on_every_mutable_access_and_only_then() {
        let mut a = Stamped::new(vec![1]);
        let b = Stamped::new(vec![1]);
        assert_ne!(a.stamp(), b.stamp(), "two values never share a stamp");
        let first = a.stamp();
        assert_eq!(a.len(), 1);
        assert_eq!(a.stamp(), first, "reads keep the stamp");
        a.push(2);
        let second = a.stamp();
        assert_ne!(second, first);
        a[0] = 5;
        assert_ne!(a.stamp(), second);
        assert!(a.stamp() > b.stamp(), "stamps only grow");
    }
}
