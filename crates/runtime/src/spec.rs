//! A runtime-neutral description of one container ([`ContainerSpec`]) and its translation into
//! an explicit OCI runtime spec with Docker's defaults ([`build_spec`]).
//!
//! Nothing here comes from `oci_spec`'s `Default` security settings: capabilities, seccomp,
//! masked and read-only paths, devices, mounts and namespaces are all set explicitly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{RuntimeError, defaults};

/// What the engine asks of the runtime for one container. Built by the engine from the image
/// config and the Docker create request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The container's root filesystem (already mounted by the engine: overlay of the image).
    pub rootfs: PathBuf,
    /// argv of the process (entrypoint + cmd, already resolved). Never empty.
    pub args: Vec<String>,
    /// `KEY=value` pairs, image env merged with the request's.
    pub env: Vec<String>,
    /// Working directory inside the container (absolute); "/" if unset.
    pub cwd: String,
    /// The user as Docker writes it: "", "name", "uid", "name:group", "uid:gid".
    /// Resolved against the rootfs's /etc/passwd and /etc/group (see [`crate::user`]).
    pub user: String,
    /// Extra groups (`--group-add`), names or gids.
    pub group_add: Vec<String>,
    pub hostname: String,
    pub domainname: String,
    pub tty: bool,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    /// `--cap-add` / `--cap-drop` as Docker takes them ("NET_ADMIN", "CAP_NET_ADMIN", "ALL").
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub seccomp: SeccompMode,
    pub no_new_privileges: bool,
    pub resources: Resources,
    pub ulimits: Vec<Ulimit>,
    /// Size of /dev/shm in bytes (Docker's default: 64 MiB).
    pub shm_size: Option<i64>,
    /// A host directory to bind at /dev/shm instead of a new tmpfs: a shareable IPC
    /// container's own (a tmpfs the engine mounted) or, joining one, its donor's.
    #[serde(default)]
    pub shm_source: Option<PathBuf>,
    pub sysctls: BTreeMap<String, String>,
    /// `--device host[:container[:perms]]`.
    pub devices: Vec<DeviceMapping>,
    /// Run the tiny init as PID 1 (`--init`): it forwards signals to and reaps the command.
    /// The init binary on the host is bind-mounted read-only at `/sbin/docker-init`.
    pub init: Option<PathBuf>,
    pub network: NamespaceMode,
    pub ipc: NamespaceMode,
    pub pid: NamespaceMode,
    pub uts: NamespaceMode,
    /// The cgroup namespace: a new one, or the host's (`--cgroupns host`); never a path.
    #[serde(default)]
    pub cgroupns: NamespaceMode,
    /// Extra mounts (hosts, resolv.conf, hostname files; later volumes and binds).
    pub mounts: Vec<MountSpec>,
    /// Cgroup path for the container (e.g. "/berth/<id>"), relative to the cgroup root(s).
    pub cgroups_path: String,
    /// Signal the process uses to stop (informational for the engine; not in the OCI spec).
    pub oom_score_adj: Option<i32>,
    /// Docker's `--security-opt` masks: `systempaths=unconfined` clears masked/read-only paths.
    pub unmask_system_paths: bool,
    /// `HostConfig.MaskedPaths` / `ReadonlyPaths` when the client gave them: these instead of
    /// Docker's defaults (for an unprivileged container).
    #[serde(default)]
    pub masked_paths: Option<Vec<String>>,
    #[serde(default)]
    pub readonly_paths: Option<Vec<String>>,
    /// Propagation of the root mount (`rslave`, `rshared`...), for binds that ask for shared
    /// or slave propagation; the runtime's default when `None`.
    pub rootfs_propagation: Option<String>,
    /// OCI annotations (Docker's `HostConfig.Annotations`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Seccomp as asked by `--security-opt seccomp=...`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub enum SeccompMode {
    /// Docker's default profile.
    #[default]
    Default,
    /// No seccomp filter.
    Unconfined,
    /// A profile in Docker's JSON format (the content, not a path).
    Profile(String),
}

/// A namespace: a new one, the host's, or one at a path (another container's netns).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum NamespaceMode {
    #[default]
    Private,
    Host,
    Path(PathBuf),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resources {
    /// Bytes; `None` or 0 is unlimited.
    pub memory: Option<i64>,
    /// Memory + swap in bytes; -1 unlimited swap.
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    /// 0-100; `None` keeps the kernel's (cgroup v1 only).
    #[serde(default)]
    pub memory_swappiness: Option<u64>,
    /// The OOM killer spares the container's processes (cgroup v1 only).
    #[serde(default)]
    pub oom_kill_disable: bool,
    /// CPUs in units of 1e-9 (`--cpus 1.5` = 1_500_000_000).
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
    /// Per-device weights and throttles: (major, minor, weight or rate).
    #[serde(default)]
    pub blkio_weight_device: Vec<(i64, i64, u16)>,
    #[serde(default)]
    pub throttle_read_bps: Vec<(i64, i64, u64)>,
    #[serde(default)]
    pub throttle_write_bps: Vec<(i64, i64, u64)>,
    #[serde(default)]
    pub throttle_read_iops: Vec<(i64, i64, u64)>,
    #[serde(default)]
    pub throttle_write_iops: Vec<(i64, i64, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ulimit {
    /// Name as Docker writes it: "nofile", "nproc", ...
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceMapping {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    /// "rwm" or a subset.
    pub permissions: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountSpec {
    pub destination: String,
    pub source: String,
    /// "bind", "tmpfs", ...
    pub kind: String,
    pub options: Vec<String>,
}

/// Kernel parameters a container may set (Docker's `--sysctl` whitelist): IPC ones unless the
/// IPC namespace is the host's, network ones unless the network namespace is the host's.
fn check_sysctl(key: &str, spec: &ContainerSpec) -> Result<(), RuntimeError> {
    const IPC: [&str; 6] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
    ];
    let ipc = IPC.contains(&key)
        || key == "kernel.shmmni"
        || key == "kernel.shm_rmid_forced"
        || key.starts_with("fs.mqueue.");
    if ipc {
        if spec.ipc == NamespaceMode::Host {
            return Err(RuntimeError::InvalidSpec(format!(
                "sysctl {key:?} is not allowed when sharing the host's IPC namespace"
            )));
        }
        return Ok(());
    }
    if key.starts_with("net.") {
        if spec.network == NamespaceMode::Host {
            return Err(RuntimeError::InvalidSpec(format!(
                "sysctl {key:?} is not allowed in host network mode"
            )));
        }
        return Ok(());
    }
    if key == "kernel.domainname" || key == "kernel.hostname" {
        return Err(RuntimeError::InvalidSpec(format!(
            "sysctl {key:?} is not allowed: use --hostname / --domainname"
        )));
    }
    Err(RuntimeError::InvalidSpec(format!(
        "sysctl {key:?} is not allowed in a container"
    )))
}

/// `RLIMIT_*` for a Docker ulimit name.
fn rlimit_type(name: &str) -> Result<(&'static str, rustix::process::Resource), RuntimeError> {
    use rustix::process::Resource as R;
    Ok(match name {
        "core" => ("RLIMIT_CORE", R::Core),
        "cpu" => ("RLIMIT_CPU", R::Cpu),
        "data" => ("RLIMIT_DATA", R::Data),
        "fsize" => ("RLIMIT_FSIZE", R::Fsize),
        "locks" => ("RLIMIT_LOCKS", R::Locks),
        "memlock" => ("RLIMIT_MEMLOCK", R::Memlock),
        "msgqueue" => ("RLIMIT_MSGQUEUE", R::Msgqueue),
        "nice" => ("RLIMIT_NICE", R::Nice),
        "nofile" => ("RLIMIT_NOFILE", R::Nofile),
        "nproc" => ("RLIMIT_NPROC", R::Nproc),
        "rss" => ("RLIMIT_RSS", R::Rss),
        "rtprio" => ("RLIMIT_RTPRIO", R::Rtprio),
        "rttime" => ("RLIMIT_RTTIME", R::Rttime),
        "sigpending" => ("RLIMIT_SIGPENDING", R::Sigpending),
        "stack" => ("RLIMIT_STACK", R::Stack),
        "as" => ("RLIMIT_AS", R::As),
        _ => {
            return Err(RuntimeError::InvalidSpec(format!(
                "invalid ulimit type: {name}"
            )));
        }
    })
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Value {
    json!({ "destination": dest, "type": kind, "source": source, "options": options })
}

/// Host devices for a privileged container: every char and block device under /dev (not
/// /dev/pts, /dev/shm, /dev/mqueue), as Docker does.
fn host_devices() -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from("/dev")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                if !matches!(
                    path.to_str(),
                    Some("/dev/pts" | "/dev/shm" | "/dev/mqueue" | "/dev/fd")
                ) {
                    stack.push(path);
                }
                continue;
            }
            let kind = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            if path == Path::new("/dev/console") || path == Path::new("/dev/ptmx") {
                continue;
            }
            let rdev = meta.rdev();
            out.push(json!({
                "path": path, "type": kind,
                "major": rustix::fs::major(rdev), "minor": rustix::fs::minor(rdev),
                "fileMode": meta.mode() & 0o7777, "uid": meta.uid(), "gid": meta.gid(),
            }));
        }
    }
    out
}

/// A `--device` mapping: the host node's type and numbers, at the container path.
fn device_mapping(d: &DeviceMapping) -> Result<(Value, Value), RuntimeError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(&d.host_path).map_err(|e| {
        RuntimeError::InvalidSpec(format!(
            "error gathering device information while adding custom device {:?}: {}",
            d.host_path,
            crate::errno_text(&e)
        ))
    })?;
    let kind = if meta.file_type().is_char_device() {
        "c"
    } else if meta.file_type().is_block_device() {
        "b"
    } else {
        return Err(RuntimeError::InvalidSpec(format!(
            "{} is not a device node",
            d.host_path.display()
        )));
    };
    if d.permissions.is_empty() || !d.permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(RuntimeError::InvalidSpec(format!(
            "invalid device cgroup permissions {:?}",
            d.permissions
        )));
    }
    let (major, minor) = (
        rustix::fs::major(meta.rdev()),
        rustix::fs::minor(meta.rdev()),
    );
    Ok((
        json!({
            "path": d.container_path, "type": kind, "major": major, "minor": minor,
            "fileMode": meta.mode() & 0o7777, "uid": meta.uid(), "gid": meta.gid(),
        }),
        json!({ "allow": true, "type": kind, "major": major, "minor": minor, "access": d.permissions }),
    ))
}

fn namespace(kind: &str, mode: &NamespaceMode) -> Option<Value> {
    match mode {
        NamespaceMode::Private => Some(json!({ "type": kind })),
        NamespaceMode::Host => None,
        NamespaceMode::Path(p) => Some(json!({ "type": kind, "path": p })),
    }
}

/// Builds the OCI runtime spec for `spec`, with Docker's defaults written out explicitly.
pub fn build_spec(spec: &ContainerSpec) -> Result<oci_spec::runtime::Spec, RuntimeError> {
    serde_json::from_value(build_spec_json(spec)?).map_err(|e| RuntimeError::Spec(e.to_string()))
}

/// Replaces a missing or empty `HOME` in `env` with `home`; a non-empty one stays.
pub fn set_home(env: &mut Vec<String>, home: &str) {
    env.retain(|e| e != "HOME=");
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = if home.is_empty() { "/" } else { home };
        env.push(format!("HOME={home}"));
    }
}

/// [`build_spec`] as the JSON of `config.json`.
pub fn build_spec_json(spec: &ContainerSpec) -> Result<Value, RuntimeError> {
    if spec.args.is_empty() {
        return Err(RuntimeError::InvalidSpec("no command specified".into()));
    }
    if !spec.cwd.starts_with('/') {
        return Err(RuntimeError::InvalidSpec(format!(
            "the working directory '{}' is invalid, it needs to be an absolute path",
            spec.cwd
        )));
    }
    if spec.cwd.starts_with("/proc/self/fd") || spec.cwd.starts_with("/proc/thread-self/fd") {
        return Err(RuntimeError::InvalidSpec(format!(
            "the working directory {:?} is not allowed",
            spec.cwd
        )));
    }

    // Capabilities.
    let caps = if spec.privileged {
        defaults::capabilities_from_mask(defaults::host_bounding_mask())
    } else {
        defaults::adjust_capabilities(&spec.cap_add, &spec.cap_drop)?
    };

    // User, env.
    let user = crate::user::resolve_exec_user(&spec.rootfs, &spec.user, &spec.group_add)?;
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.insert(1.min(env.len()), format!("HOSTNAME={}", spec.hostname));
    }
    if spec.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    // As runc: a missing or empty HOME is the user's home from the container's passwd file
    // (read by `user`'s own parser). An empty one must never reach libcontainer: its init
    // would look the user up with glibc's NSS inside the container, which loads whatever
    // `libnss_*` module the image's /etc/nsswitch.conf names, into a process that still holds
    // capabilities and no seccomp filter yet. (An image's `ENV HOME=` is enough to ask.)
    set_home(&mut env, &user.home);

    // Rlimits: never above this process's hard limit (the host root here lacks
    // CAP_SYS_RESOURCE, and raising one would fail in the container's init anyway).
    let mut rlimits = Vec::new();
    for u in &spec.ulimits {
        let (name, res) = rlimit_type(&u.name)?;
        if u.soft > u.hard {
            return Err(RuntimeError::InvalidSpec(format!(
                "ulimit {}: soft limit {} is above the hard limit {}",
                u.name, u.soft, u.hard
            )));
        }
        let current = rustix::process::getrlimit(res);
        if let Some(max) = current.maximum
            && u.hard > max
        {
            return Err(RuntimeError::InvalidSpec(format!(
                "ulimit {}: hard limit {} is above this host's hard limit {max} \
                 (raising it needs CAP_SYS_RESOURCE)",
                u.name, u.hard
            )));
        }
        rlimits.push(json!({ "type": name, "soft": u.soft, "hard": u.hard }));
    }

    let mut args = spec.args.clone();
    if spec.init.is_some() {
        args.splice(0..0, ["/sbin/docker-init".to_owned(), "--".to_owned()]);
    }
    let mut process = json!({
        "terminal": spec.tty,
        "user": { "uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids },
        "args": args,
        "env": env,
        "cwd": spec.cwd,
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps,
            "inheritable": [], "ambient": [],
        },
        "rlimits": rlimits,
    });
    // Only present when asked for: libcontainer keys "load seccomp before dropping
    // capabilities" on the field's absence, and a late load without no_new_privs fails.
    if spec.no_new_privileges {
        process["noNewPrivileges"] = json!(true);
    }
    if let Some(adj) = spec.oom_score_adj {
        if !(-1000..=1000).contains(&adj) {
            return Err(RuntimeError::InvalidSpec(format!(
                "invalid --oom-score-adj {adj}: the range is -1000 to 1000"
            )));
        }
        process["oomScoreAdj"] = json!(adj);
    }

    // Mounts.
    let shm = spec.shm_size.unwrap_or(defaults::DEFAULT_SHM_SIZE);
    if shm <= 0 {
        return Err(RuntimeError::InvalidSpec(
            "--shm-size must be greater than 0".into(),
        ));
    }
    let ro_sys = if spec.privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
    ];
    if spec.network == NamespaceMode::Host {
        // sysfs cannot be mounted fresh outside a private network namespace: bind the host's.
        mounts.push(mount(
            "/sys",
            "bind",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", ro_sys],
        ));
    } else {
        mounts.push(mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", ro_sys],
        ));
    }
    mounts.push(mount(
        "/sys/fs/cgroup",
        "cgroup",
        "cgroup",
        &["nosuid", "noexec", "nodev", "relatime", ro_sys],
    ));
    mounts.push(mount(
        "/dev/mqueue",
        "mqueue",
        "mqueue",
        &["nosuid", "noexec", "nodev"],
    ));
    if spec.ipc == NamespaceMode::Host {
        mounts.push(mount(
            "/dev/shm",
            "bind",
            "/dev/shm",
            &["rbind", "nosuid", "noexec", "nodev"],
        ));
    } else if let Some(src) = &spec.shm_source {
        mounts.push(json!({
            "destination": "/dev/shm", "type": "bind", "source": src,
            "options": ["rbind", "nosuid", "noexec", "nodev"],
        }));
    } else {
        let size = format!("size={shm}");
        mounts.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &size],
        ));
    }
    if let Some(init) = &spec.init {
        mounts.push(json!({
            "destination": "/sbin/docker-init", "type": "bind", "source": init,
            "options": ["bind", "ro", "nosuid", "nodev"],
        }));
    }
    for m in &spec.mounts {
        if !m.destination.starts_with('/') {
            return Err(RuntimeError::InvalidSpec(format!(
                "invalid mount destination {:?}: it must be an absolute path",
                m.destination
            )));
        }
        mounts.push(json!({
            "destination": m.destination, "type": m.kind, "source": m.source, "options": m.options,
        }));
    }

    // Devices and their cgroup rules.
    let mut devices: Vec<Value> = Vec::new();
    let mut rules: Vec<Value> = vec![json!({ "allow": false, "access": "rwm" })];
    if spec.privileged {
        devices = host_devices();
        rules = vec![json!({ "allow": true, "access": "rwm" })];
    } else {
        for (path, kind, major, minor) in defaults::DEFAULT_DEVICES {
            devices.push(json!({
                "path": path, "type": kind, "major": major, "minor": minor,
                "fileMode": 0o666, "uid": 0, "gid": 0,
            }));
        }
        for (kind, major, minor, access) in defaults::DEFAULT_DEVICE_RULES {
            let mut r = json!({ "allow": true, "type": kind, "access": access });
            if let Some(m) = major {
                r["major"] = json!(m);
            }
            if let Some(m) = minor {
                r["minor"] = json!(m);
            }
            rules.push(r);
        }
    }
    for d in &spec.devices {
        let (dev, rule) = device_mapping(d)?;
        devices.retain(|x| x["path"] != dev["path"]);
        devices.push(dev);
        if !spec.privileged {
            rules.push(rule);
        }
    }

    // Resources.
    let r = &spec.resources;
    let mut resources = json!({ "devices": rules });
    if r.memory.is_some()
        || r.memory_reservation.is_some()
        || r.memory_swap.is_some()
        || r.memory_swappiness.is_some()
        || r.oom_kill_disable
    {
        let mut mem = json!({});
        if let Some(m) = r.memory {
            if m < 6 * 1024 * 1024 {
                return Err(RuntimeError::InvalidSpec(
                    "Minimum memory limit allowed is 6MB".into(),
                ));
            }
            mem["limit"] = json!(m);
            // Docker: unset swap means swap equal to the memory limit (memory+swap = 2x).
            let swap = r.memory_swap.unwrap_or(m * 2);
            if swap != -1 && swap < m {
                return Err(RuntimeError::InvalidSpec(
                    "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
                ));
            }
            mem["swap"] = json!(swap);
        } else if r.memory_swap.is_some_and(|s| s > 0) {
            return Err(RuntimeError::InvalidSpec(
                "You should always set the Memory limit when using Memoryswap limit, see usage"
                    .into(),
            ));
        }
        if let Some(res) = r.memory_reservation {
            mem["reservation"] = json!(res);
        }
        if let Some(sw) = r.memory_swappiness {
            if sw > 100 {
                return Err(RuntimeError::InvalidSpec(format!(
                    "Invalid value: {sw}, valid memory swappiness range is 0-100"
                )));
            }
            mem["swappiness"] = json!(sw);
        }
        if r.oom_kill_disable {
            mem["disableOOMKiller"] = json!(true);
        }
        resources["memory"] = mem;
    }
    let mut cpu = json!({});
    if let Some(n) = r.nano_cpus {
        if r.cpu_quota.is_some() || r.cpu_period.is_some() {
            return Err(RuntimeError::InvalidSpec(
                "Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set".into(),
            ));
        }
        let online = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        if n > online * 1_000_000_000 {
            return Err(RuntimeError::InvalidSpec(format!(
                "Range of CPUs is from 0.01 to {online}.00, as there are only {online} CPUs available"
            )));
        }
        let period: i64 = 100_000;
        cpu["period"] = json!(period);
        cpu["quota"] = json!((n * period / 1_000_000_000).max(1000));
    }
    if let Some(p) = r.cpu_period {
        cpu["period"] = json!(p);
    }
    if let Some(q) = r.cpu_quota {
        cpu["quota"] = json!(q);
    }
    if let Some(s) = r.cpu_shares {
        cpu["shares"] = json!(s.max(2));
    }
    if let Some(c) = &r.cpuset_cpus {
        cpu["cpus"] = json!(c);
    }
    if let Some(m) = &r.cpuset_mems {
        cpu["mems"] = json!(m);
    }
    if cpu.as_object().is_some_and(|o| !o.is_empty()) {
        resources["cpu"] = cpu;
    }
    if let Some(p) = r.pids_limit {
        resources["pids"] = json!({ "limit": p });
    }
    let mut block_io = json!({});
    if let Some(w) = r.blkio_weight {
        if !(10..=1000).contains(&w) {
            return Err(RuntimeError::InvalidSpec(
                "Range of blkio weight is from 10 to 1000".into(),
            ));
        }
        block_io["weight"] = json!(w);
    }
    if !r.blkio_weight_device.is_empty() {
        block_io["weightDevice"] = r
            .blkio_weight_device
            .iter()
            .map(
                |&(major, minor, weight)| json!({"major": major, "minor": minor, "weight": weight}),
            )
            .collect();
    }
    for (key, list) in [
        ("throttleReadBpsDevice", &r.throttle_read_bps),
        ("throttleWriteBpsDevice", &r.throttle_write_bps),
        ("throttleReadIOPSDevice", &r.throttle_read_iops),
        ("throttleWriteIOPSDevice", &r.throttle_write_iops),
    ] {
        if !list.is_empty() {
            block_io[key] = list
                .iter()
                .map(|&(major, minor, rate)| json!({"major": major, "minor": minor, "rate": rate}))
                .collect();
        }
    }
    if block_io.as_object().is_some_and(|o| !o.is_empty()) {
        resources["blockIO"] = block_io;
    }

    for key in spec.sysctls.keys() {
        check_sysctl(key, spec)?;
    }

    let mut namespaces: Vec<Value> = vec![json!({ "type": "mount" })];
    namespaces.extend(namespace("pid", &spec.pid));
    namespaces.extend(namespace("network", &spec.network));
    namespaces.extend(namespace("ipc", &spec.ipc));
    namespaces.extend(namespace("uts", &spec.uts));
    namespaces.extend(namespace("cgroup", &spec.cgroupns));

    let mut linux = json!({
        "namespaces": namespaces,
        "devices": devices,
        "resources": resources,
        "cgroupsPath": spec.cgroups_path,
        "sysctl": spec.sysctls,
    });
    if let Some(p) = &spec.rootfs_propagation {
        linux["rootfsPropagation"] = json!(p);
    }
    if !spec.privileged && !spec.unmask_system_paths {
        linux["maskedPaths"] = match &spec.masked_paths {
            Some(p) => json!(p),
            None => json!(defaults::MASKED_PATHS),
        };
        linux["readonlyPaths"] = match &spec.readonly_paths {
            Some(p) => json!(p),
            None => json!(defaults::READONLY_PATHS),
        };
    }
    if !spec.privileged {
        let profile = match &spec.seccomp {
            SeccompMode::Default => Some(crate::seccomp::DEFAULT_PROFILE),
            SeccompMode::Unconfined => None,
            SeccompMode::Profile(p) => Some(p.as_str()),
        };
        if let Some(p) = profile {
            linux["seccomp"] = crate::seccomp::to_oci(p, &caps)?;
        }
    }

    let mut out = json!({
        "ociVersion": "1.0.2",
        "root": { "path": spec.rootfs, "readonly": spec.readonly_rootfs },
        "process": process,
        "mounts": mounts,
        "linux": linux,
    });
    if !spec.annotations.is_empty() {
        out["annotations"] = json!(spec.annotations);
    }
    if spec.uts != NamespaceMode::Host {
        out["hostname"] = json!(spec.hostname);
        if !spec.domainname.is_empty() {
            out["domainname"] = json!(spec.domainname);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_missing_home_is_filled_and_a_set_one_stays() {
        let mut env = vec!["A=1".to_owned(), "HOME=".to_owned()];
        set_home(&mut env, "/root");
        assert_eq!(env, ["A=1", "HOME=/root"]);
        let mut env = vec!["HOME=/data".to_owned()];
        set_home(&mut env, "/root");
        assert_eq!(env, ["HOME=/data"]);
        let mut env = Vec::new();
        set_home(&mut env, "");
        assert_eq!(env, ["HOME=/"]);
    }

    fn base() -> (tempfile::TempDir, ContainerSpec) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n",
        )
        .unwrap();
        let spec = ContainerSpec {
            rootfs: dir.path().to_owned(),
            args: vec!["sh".into()],
            cwd: "/".into(),
            hostname: "abc".into(),
            cgroups_path: "/berth/abc".into(),
            ..Default::default()
        };
        (dir, spec)
    }

    #[test]
    fn defaults_are_dockers() {
        let (_d, spec) = base();
        let v = build_spec_json(&spec).unwrap();
        let caps = v["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(caps.len(), 14);
        assert_eq!(
            v["linux"]["maskedPaths"].as_array().unwrap().len(),
            defaults::MASKED_PATHS.len()
        );
        assert!(
            v["linux"]["readonlyPaths"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "/proc/sys")
        );
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["hostname"], "abc");
        assert_eq!(v["process"]["user"]["uid"], 0);
        let env = v["process"]["env"].as_array().unwrap();
        assert!(env.iter().any(|e| e == "HOME=/root"));
        assert!(env.iter().any(|e| e.as_str().unwrap().starts_with("PATH=")));
        let shm = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/dev/shm")
            .unwrap();
        assert!(
            shm["options"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o == "size=67108864")
        );
        build_spec(&spec).unwrap();
    }

    #[test]
    fn privileged_lifts_everything() {
        let (_d, mut spec) = base();
        spec.privileged = true;
        let v = build_spec_json(&spec).unwrap();
        assert!(v["linux"].get("seccomp").is_none());
        assert!(v["linux"].get("maskedPaths").is_none());
        let n = v["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(n as u32, defaults::host_bounding_mask().count_ones());
    }

    #[test]
    fn resources_translate() {
        let (_d, mut spec) = base();
        spec.resources.memory = Some(64 << 20);
        spec.resources.nano_cpus = Some(500_000_000);
        spec.resources.pids_limit = Some(100);
        let v = build_spec_json(&spec).unwrap();
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(v["linux"]["resources"]["memory"]["swap"], 128 << 20);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 100);
    }

    #[test]
    fn impossible_requests_are_refused() {
        let (_d, mut spec) = base();
        spec.resources.memory = Some(1024);
        assert!(build_spec_json(&spec).is_err());
        let (_d, mut spec) = base();
        spec.ulimits.push(Ulimit {
            name: "nofile".into(),
            soft: 10,
            hard: u64::MAX - 1,
        });
        let e = build_spec_json(&spec).unwrap_err().to_string();
        assert!(e.contains("hard limit"), "{e}");
        let (_d, mut spec) = base();
        spec.cwd = "/proc/self/fd/7".into();
        assert!(build_spec_json(&spec).is_err());
        let (_d, mut spec) = base();
        spec.sysctls.insert("kernel.panic".into(), "1".into());
        assert!(build_spec_json(&spec).is_err());
        let (_d, mut spec) = base();
        spec.resources.nano_cpus = Some(1_000_000_000_000);
        assert!(build_spec_json(&spec).is_err());
        let (_d, mut spec) = base();
        spec.cap_add.push("CAP_BOGUS".into());
        assert!(build_spec_json(&spec).is_err());
    }

    #[test]
    fn init_wraps_the_command() {
        let (_d, mut spec) = base();
        spec.init = Some("/usr/lib/berth/berth-init".into());
        let v = build_spec_json(&spec).unwrap();
        assert_eq!(v["process"]["args"][0], "/sbin/docker-init");
        assert_eq!(v["process"]["args"][2], "sh");
    }
}
