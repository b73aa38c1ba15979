//! The daemon's entry: flags named as dockerd's, `daemon.json`, logging, the engine and the API
//! server, and a clean shutdown on SIGTERM/SIGINT that leaves containers running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use berth_engine::{Engine, EngineConfig};
use berth_runtime::RuntimeKind;
use clap::Parser;
use serde::Deserialize;

/// berthd: a Docker-compatible container engine daemon.
#[derive(Debug, Parser)]
#[command(name = "berthd", version, about)]
pub struct Flags {
    /// Daemon socket to listen on (unix:///path).
    #[arg(short = 'H', long = "host")]
    pub host: Vec<String>,
    /// Root of persistent state.
    #[arg(long = "data-root")]
    pub data_root: Option<PathBuf>,
    /// Root of runtime state (sockets, namespaces).
    #[arg(long = "exec-root")]
    pub exec_root: Option<PathBuf>,
    /// Daemon configuration file (dockerd's daemon.json keys where they apply).
    #[arg(long = "config-file", default_value = "/etc/berth/daemon.json")]
    pub config_file: PathBuf,
    /// Log level: debug, info, warn, error.
    #[arg(short = 'l', long = "log-level")]
    pub log_level: Option<String>,
    /// Parent cgroup for all containers.
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// Default OCI runtime.
    #[arg(long = "default-runtime")]
    pub default_runtime: Option<String>,
    /// Enable debug logging.
    #[arg(short = 'D', long = "debug")]
    pub debug: bool,
    /// Registry reached without certificate checks, falling back to plain HTTP (repeatable).
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Preferred Docker Hub mirror (repeatable).
    #[arg(long = "registry-mirror")]
    pub registry_mirrors: Vec<String>,
    /// The default bridge; `none` turns it off (containers on the default network get
    /// loopback only).
    #[arg(short = 'b', long = "bridge")]
    pub bridge: Option<String>,
    /// The default bridge's address and prefix, e.g. 192.168.5.1/24.
    #[arg(long = "bip")]
    pub bip: Option<String>,
    /// The address `host-gateway` stands for in `--add-host` (default: the default
    /// bridge's gateway).
    #[arg(long = "host-gateway-ip")]
    pub host_gateway_ip: Option<std::net::IpAddr>,
    /// Microseconds an API connection polls for its next request after a response before
    /// its thread sleeps (0: never). Lower latency for sequential clients on machines whose
    /// idle CPUs are slow to wake, for at most that much CPU per response.
    #[arg(long = "api-busy-poll")]
    pub api_busy_poll: Option<u64>,
}

/// The keys of daemon.json Berth reads (others are accepted and ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct DaemonJson {
    pub hosts: Vec<String>,
    pub data_root: Option<PathBuf>,
    pub exec_root: Option<PathBuf>,
    pub log_level: Option<String>,
    pub debug: bool,
    pub cgroup_parent: Option<String>,
    pub default_runtime: Option<String>,
    pub runtimes: BTreeMap<String, RuntimeEntry>,
    pub log_opts: BTreeMap<String, String>,
    pub log_driver: Option<String>,
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<String>,
    pub bridge: Option<String>,
    pub bip: Option<String>,
    pub host_gateway_ip: Option<std::net::IpAddr>,
    pub default_address_pools: Vec<AddressPoolEntry>,
    pub api_busy_poll: Option<u64>,
}

/// One `default-address-pools` entry: `{"base": "10.10.0.0/16", "size": 24}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AddressPoolEntry {
    pub base: String,
    pub size: u8,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RuntimeEntry {
    pub path: String,
    pub runtime_args: Vec<String>,
}

fn load_config(path: &Path, explicit: bool) -> Result<DaemonJson> {
    match std::fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .with_context(|| format!("unable to configure the daemon from {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            Ok(DaemonJson::default())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn socket_path(host: &str) -> Result<PathBuf> {
    match host.strip_prefix("unix://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => bail!("unsupported host {host:?}: berthd listens on unix:///path only"),
    }
}

/// Runs the daemon with dockerd-style arguments (`args[0]` is the program name).
pub fn main(args: Vec<String>) -> ExitCode {
    let flags = match Flags::try_parse_from(&args) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(125)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berthd: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(flags: Flags) -> Result<()> {
    let explicit = flags.config_file != Path::new("/etc/berth/daemon.json");
    let file = load_config(&flags.config_file, explicit)?;
    let level = flags
        .log_level
        .clone()
        .or(file.log_level.clone())
        .unwrap_or_else(|| {
            if flags.debug || file.debug {
                "debug".into()
            } else {
                "info".into()
            }
        });
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "warn,berth={level},berth_engine={level},berth_api={level},berthd={level}"
    ))
    .with_context(|| format!("invalid log level {level:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let hosts = if !flags.host.is_empty() {
        flags.host.clone()
    } else {
        file.hosts.clone()
    };
    let host = hosts
        .first()
        .cloned()
        .unwrap_or_else(|| "unix:///run/berth/berth.sock".into());
    if hosts.len() > 1 {
        bail!("berthd listens on one socket; got {}", hosts.len());
    }
    let socket = socket_path(&host)?;
    let data_root = flags
        .data_root
        .clone()
        .or(file.data_root.clone())
        .unwrap_or_else(|| "/var/lib/berth".into());
    let exec_root = flags
        .exec_root
        .clone()
        .or(file.exec_root.clone())
        .unwrap_or_else(|| "/run/berth".into());
    let shim = std::env::current_exe()
        .context("locating berthd")?
        .parent()
        .map(|d| d.join("berth-shim"))
        .context("locating berth-shim")?;
    if !shim.exists() {
        bail!(
            "berth-shim not found next to the daemon at {}",
            shim.display()
        );
    }
    let mut cfg = EngineConfig::new(data_root, exec_root, shim);
    for (name, rt) in &file.runtimes {
        if rt.path.is_empty() {
            bail!("runtime {name}: path is required");
        }
        cfg.runtimes.insert(
            name.clone(),
            RuntimeKind::Binary {
                path: PathBuf::from(&rt.path),
                args: rt.runtime_args.clone(),
            },
        );
    }
    if let Some(rt) = flags
        .default_runtime
        .clone()
        .or(file.default_runtime.clone())
    {
        if !cfg.runtimes.contains_key(&rt) {
            bail!("default runtime {rt} is not configured");
        }
        cfg.default_runtime = rt;
    }
    if let Some(parent) = flags.cgroup_parent.clone().or(file.cgroup_parent.clone()) {
        cfg.cgroup_parent = if parent.starts_with('/') {
            parent
        } else {
            format!("/{parent}")
        };
    }
    cfg.log_opts = file.log_opts.clone();
    match file.log_driver.as_deref() {
        None => {}
        Some(d @ ("json-file" | "none")) => cfg.log_driver = d.to_owned(),
        Some(other) => tracing::warn!(
            "log-driver {other:?} is not supported (json-file, none): containers log as json-file"
        ),
    }
    cfg.insecure_registries = file.insecure_registries.clone();
    cfg.insecure_registries
        .extend(flags.insecure_registries.iter().cloned());
    cfg.registry_mirrors = file.registry_mirrors.clone();
    cfg.registry_mirrors
        .extend(flags.registry_mirrors.iter().cloned());
    cfg.bridge = flags
        .bridge
        .clone()
        .or(file.bridge.clone())
        .unwrap_or_default();
    if !matches!(cfg.bridge.as_str(), "" | "none" | "berth0") {
        bail!(
            "bridge {:?}: only the default berth0 or none are supported",
            cfg.bridge
        );
    }
    cfg.bip = flags.bip.clone().or(file.bip.clone()).unwrap_or_default();
    cfg.host_gateway_ip = flags.host_gateway_ip.or(file.host_gateway_ip);
    for p in &file.default_address_pools {
        let base = p
            .base
            .parse()
            .with_context(|| format!("default-address-pools: invalid base {:?}", p.base))?;
        let pool = berth_engine::networks::AddressPool::new(base, p.size)
            .with_context(|| format!("default-address-pools: {} with size {}", p.base, p.size))?;
        cfg.address_pools.push(pool);
    }

    let (flags_insecure, flags_mirrors) = (
        flags.insecure_registries.clone(),
        flags.registry_mirrors.clone(),
    );
    let config_path = flags.config_file.clone();
    let busy_poll = flags.api_busy_poll.or(file.api_busy_poll).map_or(
        berth_api::server::busypoll::DEFAULT_WINDOW,
        std::time::Duration::from_micros,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let engine = Engine::open(cfg).await.context("opening the engine state")?;
        // Handlers before the socket exists: a client that sees the socket may signal at once
        // (SIGHUP's default action would end the daemon).
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let listener = berth_api::server::bind(&socket)
            .with_context(|| format!("listening on {}", socket.display()))?;
        tracing::info!(socket = %socket.display(), data_root = %engine.data_root().display(), "berthd ready");
        let info = berth_api::server::DaemonInfo { version: env!("CARGO_PKG_VERSION").into(), warnings: Vec::new() };
        // The accept loop runs on a worker, not on this (block_on) thread: a connection's task
        // then starts on the worker that accepted it, with no hand-off to another thread (two
        // thread wake-ups less per connection, ~40 us on a small VM).
        let server = tokio::spawn(berth_api::server::serve(engine.clone(), info, listener, busy_poll));
        // Start-up faulted in code and constant data an idle daemon never touches again (the
        // state load, network set-up, the registry client's TLS roots...): those clean file
        // pages are dropped from the page tables once it is up; whatever is used later faults
        // back in from the page cache. (Not repeated while serving: a busy daemon would pay
        // those faults again on its hot paths.)
        tokio::task::spawn_blocking(berth_shim::memory::release_clean_file_pages);
        let reloader = {
            let engine = engine.clone();
            let flags_insecure = flags_insecure.clone();
            let flags_mirrors = flags_mirrors.clone();
            let path = config_path.clone();
            async move {
                while hup.recv().await.is_some() {
                    // As dockerd: a file that does not parse changes nothing.
                    match load_config(&path, explicit) {
                        Ok(file) => {
                            let mut insecure = file.insecure_registries.clone();
                            insecure.extend(flags_insecure.iter().cloned());
                            let mut mirrors = file.registry_mirrors.clone();
                            mirrors.extend(flags_mirrors.iter().cloned());
                            match engine.reload(insecure, mirrors) {
                                Ok(()) => tracing::info!("SIGHUP: configuration reloaded"),
                                Err(e) => tracing::error!("SIGHUP: reload refused: {e}"),
                            }
                        }
                        Err(e) => tracing::error!("SIGHUP: reload refused: {e:#}"),
                    }
                }
            }
        };
        tokio::select! {
            _ = server => {}
            _ = reloader => {}
            _ = term.recv() => tracing::info!("SIGTERM: shutting down, containers keep running"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down, containers keep running"),
        }
        let _ = std::fs::remove_file(&socket);
        engine.close();
        Ok::<(), anyhow::Error>(())
    })?;
    // Streams still open (follow, attach) are not waited for.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(())
}
