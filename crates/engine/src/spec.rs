//! From a Docker container (merged `Config` + `HostConfig`) to the runtime's
//! [`ContainerSpec`]: entrypoint/cmd, env, user, resources, security options, namespaces.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_runtime::spec::{
    ContainerSpec, DeviceMapping, MountSpec, NamespaceMode, Resources, SeccompMode, Ulimit,
};

use crate::config::{Config, HostConfig};
use crate::error::{EngineError, Result};
use crate::volumes::mounts::{self, MountPoint, MountType};

/// Merges the image's config into the request's, as Docker's daemon does at create.
pub fn merge_image_config(user: &mut Config, image: &Config) -> Result<()> {
    if user.entrypoint.as_ref().is_none_or(|e| e.is_empty()) {
        if user.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            user.cmd = image.cmd.clone();
            user.args_escaped = image.args_escaped;
        }
        if user.entrypoint.is_none() {
            user.entrypoint = image.entrypoint.clone();
        }
    }
    // As moby's merge: the request's env, then the image's entries it does not set; none at
    // all (inspect's `null`) when neither has any.
    match user.env.as_mut().filter(|e| !e.is_empty()) {
        None => user.env = image.env.clone(),
        Some(env) => {
            let key = |e: &str| e.split('=').next().unwrap_or("").to_owned();
            for e in image.env.iter().flatten() {
                if !env.iter().any(|u| key(u) == key(e)) {
                    env.push(e.clone());
                }
            }
        }
    }
    if user.working_dir.is_empty() {
        user.working_dir = image.working_dir.clone();
    }
    if !user.working_dir.is_empty() {
        // As moby's SetupWorkingDirectory: the path, cleaned (`/a/./b/../c` is `/a/c`).
        user.working_dir = mounts::clean(&user.working_dir);
    }
    if user.user.is_empty() {
        user.user = image.user.clone();
    }
    if user.stop_signal.is_none() {
        user.stop_signal = image.stop_signal.clone();
    }
    let mut labels = image.labels.clone().unwrap_or_default();
    labels.extend(user.labels.clone().unwrap_or_default());
    user.labels = Some(labels);
    // The image's EXPOSEd ports and the request's together (`-P` publishes them all).
    if let Some(p) = &image.exposed_ports {
        let mut all = p.clone();
        all.extend(user.exposed_ports.clone().unwrap_or_default());
        user.exposed_ports = Some(all);
    }
    // The image's VOLUMEs and the request's anonymous volumes together; none is `null`, as
    // dockerd shows it (the docker CLI sends `{}`).
    if let Some(v) = &image.volumes {
        let mut all = v.clone();
        all.extend(user.volumes.clone().unwrap_or_default());
        user.volumes = Some(all);
    }
    if user.volumes.as_ref().is_some_and(|v| v.is_empty()) {
        user.volumes = None;
    }
    if user.healthcheck.is_none() {
        user.healthcheck = image.healthcheck.clone();
    }
    if user.on_build.is_none() {
        user.on_build = image.on_build.clone();
    }
    // `--entrypoint ""` sends `[""]`: no entrypoint at all, and (as it was not empty above)
    // neither the image's entrypoint nor its cmd. As moby's mergeAndVerifyConfig.
    if user
        .entrypoint
        .as_deref()
        .is_some_and(|e| e.len() == 1 && e[0].is_empty())
    {
        user.entrypoint = None;
    }
    let entry = user.entrypoint.clone().unwrap_or_default();
    let cmd = user.cmd.clone().unwrap_or_default();
    if entry.iter().chain(cmd.iter()).next().is_none() {
        return Err(EngineError::InvalidArgument("No command specified".into()));
    }
    Ok(())
}

/// The process argv: entrypoint then cmd.
pub fn argv(config: &Config) -> Vec<String> {
    let mut args = config.entrypoint.clone().unwrap_or_default();
    args.extend(config.cmd.clone().unwrap_or_default());
    args
}

/// Validates what can be checked at create time, with Docker's messages.
pub fn validate_host_config(hc: &HostConfig) -> Result<()> {
    let bad = |m: &str| Err(EngineError::InvalidArgument(m.to_owned()));
    if hc.memory != 0 && hc.memory < 6 * 1024 * 1024 {
        return bad("Minimum memory limit allowed is 6MB");
    }
    if hc.memory_swap > 0 && hc.memory > 0 && hc.memory_swap < hc.memory {
        return bad("Minimum memoryswap limit should be larger than memory limit, see usage");
    }
    if hc.memory_swap > 0 && hc.memory == 0 {
        return bad(
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        );
    }
    if let Some(sw) = hc
        .memory_swappiness
        .filter(|&s| s != -1 && !(0..=100).contains(&s))
    {
        return Err(EngineError::InvalidArgument(format!(
            "Invalid value: {sw}, valid memory swappiness range is 0-100"
        )));
    }
    let ipc = hc.ipc_mode.as_str();
    if !matches!(ipc, "" | "private" | "shareable" | "host" | "none")
        && ipc.strip_prefix("container:").is_none_or(str::is_empty)
    {
        return Err(EngineError::InvalidArgument(format!(
            "invalid IPC mode: {ipc}"
        )));
    }
    let pid = hc.pid_mode.as_str();
    if !matches!(pid, "" | "host") && pid.strip_prefix("container:").is_none_or(str::is_empty) {
        return Err(EngineError::InvalidArgument(format!(
            "invalid PID mode: {pid}"
        )));
    }
    if !matches!(hc.cgroupns_mode.as_str(), "" | "host" | "private") {
        return Err(EngineError::InvalidArgument(format!(
            "invalid cgroup namespace mode: {}",
            hc.cgroupns_mode
        )));
    }
    if hc.nano_cpus < 0 {
        return bad("Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available");
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as i64;
    if hc.nano_cpus > cpus * 1_000_000_000 {
        return Err(EngineError::InvalidArgument(format!(
            "Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"
        )));
    }
    if hc.nano_cpus > 0 && hc.cpu_period > 0 {
        return bad("Conflicting options: Nano CPUs and CPU Period cannot both be set");
    }
    if hc.nano_cpus > 0 && hc.cpu_quota > 0 {
        return bad("Conflicting options: Nano CPUs and CPU Quota cannot both be set");
    }
    if hc.cpu_period != 0 && !(1000..=1_000_000).contains(&hc.cpu_period) {
        return bad(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        );
    }
    if hc.cpu_quota > 0 && hc.cpu_quota < 1000 {
        return bad("CPU cfs quota can not be less than 1ms (i.e. 1000)");
    }
    if hc.memory_reservation != 0 && hc.memory_reservation < 6 * 1024 * 1024 {
        return bad("Minimum memory reservation allowed is 6MB");
    }
    if hc.memory > 0 && hc.memory_reservation > 0 && hc.memory < hc.memory_reservation {
        return bad(
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        );
    }
    if !(-1000..=1000).contains(&hc.oom_score_adj) {
        return Err(EngineError::InvalidArgument(format!(
            "Invalid value {}, range for oom score adj is [-1000, 1000]",
            hc.oom_score_adj
        )));
    }
    for (list, what) in [(&hc.cap_add, "CapAdd"), (&hc.cap_drop, "CapDrop")] {
        for cap in list.iter().flatten() {
            if berth_runtime::defaults::normalize_capability(cap).is_err() {
                let upper = cap.trim().to_ascii_uppercase();
                let full = if upper.starts_with("CAP_") {
                    upper
                } else {
                    format!("CAP_{upper}")
                };
                return Err(EngineError::InvalidArgument(format!(
                    "invalid {what}: unknown capability: {full:?}"
                )));
            }
        }
    }
    for host in hc.extra_hosts.iter().flatten() {
        match host.split_once(':') {
            Some((name, ip)) if !name.is_empty() => {
                if ip != "host-gateway" && ip.parse::<std::net::IpAddr>().is_err() {
                    return Err(EngineError::InvalidArgument(format!(
                        "invalid IP address in add-host: {ip:?}"
                    )));
                }
            }
            _ => {
                return Err(EngineError::InvalidArgument(format!(
                    "bad format for add-host: {host:?}"
                )));
            }
        }
    }
    if hc.cpu_shares < 0 {
        return bad("invalid CPU shares: must be positive");
    }
    if hc.blkio_weight != 0 && !(10..=1000).contains(&hc.blkio_weight) {
        return bad("Range of blkio weight is from 10 to 1000");
    }
    if hc.shm_size < 0 {
        return bad("SHM size can not be less than 0");
    }
    for (given, kind, file) in [
        (&hc.cpuset_cpus, "cpus", "cpuset.cpus"),
        (&hc.cpuset_mems, "mems", "cpuset.mems"),
    ] {
        if given.is_empty() {
            continue;
        }
        let Some(want) = parse_cpu_list(given) else {
            return Err(EngineError::InvalidArgument(format!(
                "Invalid value {given} for cpuset {kind}"
            )));
        };
        // What the host offers, as dockerd reads it (the root cpuset; online CPUs on v2).
        let avail_text = ["/sys/fs/cgroup/cpuset/", "/sys/fs/cgroup/"]
            .iter()
            .find_map(|d| {
                std::fs::read_to_string(format!("{d}{file}.effective"))
                    .ok()
                    .or_else(|| std::fs::read_to_string(format!("{d}{file}")).ok())
            })
            .or_else(|| {
                (kind == "cpus")
                    .then(|| std::fs::read_to_string("/sys/devices/system/cpu/online").ok())
                    .flatten()
            });
        if let Some(avail) = avail_text
            .as_deref()
            .map(str::trim)
            .and_then(parse_cpu_list)
        {
            if !want.iter().all(|c| avail.contains(c)) {
                let what = if kind == "cpus" {
                    "CPUs"
                } else {
                    "memory nodes"
                };
                return Err(EngineError::InvalidArgument(format!(
                    "Requested {what} are not available - requested {given}, available: {}",
                    avail_text.as_deref().unwrap_or_default().trim()
                )));
            }
        }
    }
    match hc.restart_policy.name.as_str() {
        "" | "no" | "always" | "unless-stopped" => {
            if hc.restart_policy.maximum_retry_count != 0 {
                return bad("maximum retry count cannot be used with restart policy 'always'");
            }
        }
        "on-failure" => {
            if hc.restart_policy.maximum_retry_count < 0 {
                return bad("maximum retry count cannot be negative");
            }
        }
        other => {
            return Err(EngineError::InvalidArgument(format!(
                "invalid restart policy '{other}'"
            )));
        }
    }
    if hc.auto_remove && !matches!(hc.restart_policy.name.as_str(), "" | "no") {
        return bad("can't create 'AutoRemove' container with restart policy");
    }
    if hc.network_mode() == "container:" {
        return bad("invalid network mode: container: needs a container name or id");
    }
    // Published ports, checked as dockerd checks them at create (a bad one would otherwise
    // only fail the start, leaving the container behind).
    for (key, bindings) in hc.port_bindings.iter().flatten() {
        crate::networks::parse_port_key(key).map_err(|_| {
            EngineError::InvalidArgument(format!(
                "invalid port specification: \"{}\"",
                key.split('/').next().unwrap_or(key)
            ))
        })?;
        for b in bindings.iter().flatten() {
            let hp = &b.host_port;
            let ok = hp.is_empty()
                || hp.split('-').all(|p| p.parse::<u16>().is_ok()) && hp.split('-').count() <= 2;
            if !ok {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid port specification: \"{hp}\""
                )));
            }
        }
    }
    for opt in hc.security_opt.iter().flatten() {
        parse_security_opt(opt)?;
    }
    Ok(())
}

#[derive(Default)]
struct SecurityOpts {
    seccomp: Option<SeccompMode>,
    no_new_privileges: bool,
    unmask: bool,
}

fn parse_security_opt(opt: &str) -> Result<SecurityOpts> {
    let mut out = SecurityOpts::default();
    let (key, value) = opt.split_once(['=', ':']).unwrap_or((opt, ""));
    match key {
        "seccomp" => {
            out.seccomp = Some(match value {
                "unconfined" => SeccompMode::Unconfined,
                "" => {
                    return Err(EngineError::InvalidArgument(
                        "invalid --security-opt: seccomp needs a value".into(),
                    ));
                }
                profile if profile.trim_start().starts_with('{') => {
                    SeccompMode::Profile(profile.to_owned())
                }
                path => {
                    // The docker CLI sends the file's content; a path is read on the daemon's host.
                    let data = std::fs::read_to_string(path).map_err(|e| {
                        EngineError::InvalidArgument(format!(
                            "opening seccomp profile ({path}) failed: {e}"
                        ))
                    })?;
                    SeccompMode::Profile(data)
                }
            })
        }
        "no-new-privileges" => {
            out.no_new_privileges = matches!(value, "" | "true");
        }
        "systempaths" if value == "unconfined" => out.unmask = true,
        "apparmor" | "label" => {}
        _ => {
            return Err(EngineError::InvalidArgument(format!(
                "invalid --security-opt 2: \"{opt}\""
            )));
        }
    }
    Ok(out)
}

/// What the engine prepared on the host for one start.
pub struct Prepared<'a> {
    pub rootfs: &'a Path,
    pub netns: Option<&'a Path>,
    pub container_dir: &'a Path,
    pub init_binary: &'a Path,
    pub cgroups_path: String,
    /// The container's mount points, each with the host path it binds (empty for tmpfs).
    pub mounts: &'a [(MountPoint, String)],
    /// The IPC and PID namespaces of the containers `container:<name>` modes join.
    pub ipc_ns: Option<PathBuf>,
    pub pid_ns: Option<PathBuf>,
    /// The /dev/shm to bind (a shareable IPC container's, or its donor's).
    pub shm_source: Option<PathBuf>,
    /// The container's hostname (the host's on its network, a `container:` network's
    /// owner's, or its own).
    pub hostname: &'a str,
}

/// The runtime mounts for a container's mount points and `--tmpfs` paths, parents before
/// children, and the root propagation shared or slave binds need.
pub fn volume_mounts(
    points: &[(MountPoint, String)],
    tmpfs: Option<&BTreeMap<String, String>>,
) -> (Vec<MountSpec>, Option<String>) {
    let mut out = Vec::new();
    let mut propagation = None;
    for (m, source) in points {
        let mut options = Vec::new();
        match m.kind {
            MountType::Tmpfs => {
                options = mounts::tmpfs_options(&m.tmpfs_data);
                if !m.rw {
                    options.push("ro".into());
                }
                out.push(MountSpec {
                    destination: m.destination.clone(),
                    source: "tmpfs".into(),
                    kind: "tmpfs".into(),
                    options,
                });
                continue;
            }
            MountType::Bind | MountType::Volume => {
                options.push(if m.non_recursive { "bind" } else { "rbind" }.into());
                options.push(if m.rw { "rw" } else { "ro" }.into());
                let p = if m.propagation.is_empty() {
                    mounts::DEFAULT_PROPAGATION
                } else {
                    m.propagation.as_str()
                };
                // The root goes shared or slave (recursively) so such a bind's events flow;
                // runtimes all take the short names.
                match p {
                    "shared" | "rshared" => propagation = Some("shared".to_owned()),
                    "slave" | "rslave" if propagation.is_none() => {
                        propagation = Some("slave".to_owned())
                    }
                    _ => {}
                }
                options.push(p.to_owned());
            }
        }
        out.push(MountSpec {
            destination: m.destination.clone(),
            source: source.clone(),
            kind: "bind".into(),
            options,
        });
    }
    for (dest, data) in tmpfs.into_iter().flatten() {
        out.push(MountSpec {
            destination: mounts::clean(dest),
            source: "tmpfs".into(),
            kind: "tmpfs".into(),
            options: mounts::tmpfs_options(data),
        });
    }
    out.sort_by_key(|m| m.destination.split('/').filter(|c| !c.is_empty()).count());
    (out, propagation)
}

/// A cpuset list (`0-2,4`) as its members; `None` when it does not parse.
fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (a, z) = match part.split_once('-') {
            Some((a, z)) => (a.parse::<u32>().ok()?, z.parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        if a > z || z - a > 4096 {
            return None;
        }
        out.extend(a..=z);
    }
    Some(out)
}

/// The parts of a create's `Config` dockerd checks before anything is made: every variable
/// has a name, and a working directory is absolute.
pub fn validate_config(config: &Config) -> Result<()> {
    for e in config.env.iter().flatten() {
        if e.split('=').next().is_none_or(str::is_empty) {
            return Err(EngineError::InvalidArgument(format!(
                "invalid environment variable: {e}"
            )));
        }
    }
    if !config.working_dir.is_empty() && !config.working_dir.starts_with('/') {
        return Err(EngineError::InvalidArgument(format!(
            "the working directory '{}' is invalid, it needs to be an absolute path",
            config.working_dir
        )));
    }
    if let Some(sig) = config.stop_signal.as_deref().filter(|s| !s.is_empty()) {
        crate::containers::parse_signal(sig)?;
    }
    if let Some(h) = &config.healthcheck {
        // As moby: a duration of 0 means "the default"; anything else must be 1 ms or more.
        const MS: i64 = 1_000_000;
        for (d, what) in [
            (h.interval, "Interval"),
            (h.timeout, "Timeout"),
            (h.start_period, "StartPeriod"),
        ] {
            if d.is_some_and(|d| d != 0 && d < MS) {
                return Err(EngineError::InvalidArgument(format!(
                    "{what} in Healthcheck cannot be less than 1ms"
                )));
            }
        }
        if h.retries.is_some_and(|r| r < 0) {
            return Err(EngineError::InvalidArgument(
                "Retries in Healthcheck cannot be negative".into(),
            ));
        }
    }
    Ok(())
}

/// What dockerd writes into a new container's `HostConfig` where the client left things out,
/// so inspect shows what the container gets: no pids limit and default swappiness as `null`,
/// the cgroup namespace mode, and the masked and read-only paths (none when privileged or
/// with `systempaths=unconfined`).
pub fn fill_host_config_defaults(hc: &mut HostConfig) -> Result<()> {
    if hc.pids_limit.is_some_and(|p| p <= 0) {
        hc.pids_limit = None;
    }
    if hc.memory_swappiness == Some(-1) {
        hc.memory_swappiness = None;
    }
    // A memory limit alone allows as much swap again, as dockerd writes it down (and the
    // runtime sets it).
    if hc.memory > 0 && hc.memory_swap == 0 {
        hc.memory_swap = hc.memory.saturating_mul(2);
    }
    // Docker's default: the host's cgroup namespace on cgroup v1 (tools there read the
    // container's id from /proc/self/cgroup), a private one on v2.
    if hc.cgroupns_mode.is_empty() {
        hc.cgroupns_mode = if crate::sysinfo::SysInfo::get().cgroup_v2 {
            "private"
        } else {
            "host"
        }
        .into();
    }
    // dockerd's name for the daemon's default network (the bridge).
    if hc.network_mode.is_empty() {
        hc.network_mode = "default".into();
    }
    // What the runtime does anyway, written down as dockerd writes it.
    if hc.ipc_mode.is_empty() {
        hc.ipc_mode = "private".into();
    }
    if hc.shm_size == 0 {
        hc.shm_size = berth_runtime::defaults::DEFAULT_SHM_SIZE;
    }
    hc.oom_kill_disable.get_or_insert(false);
    hc.console_size.get_or_insert([0, 0]);
    // As moby: the host's IPC or PID namespace, or privilege, turns SELinux labelling off
    // unless the client chose a label.
    let labelled = hc
        .security_opt
        .iter()
        .flatten()
        .any(|o| o.split_once(['=', ':']).map_or(o.as_str(), |(k, _)| k) == "label");
    if !labelled && (hc.ipc_mode == "host" || hc.pid_mode == "host" || hc.privileged) {
        hc.security_opt
            .get_or_insert_with(Vec::new)
            .push("label=disable".into());
    }
    let mut unmask = false;
    for opt in hc.security_opt.iter().flatten() {
        unmask |= parse_security_opt(opt)?.unmask;
    }
    if !hc.privileged {
        let list = |paths: &[&str]| {
            Some(if unmask {
                Vec::new()
            } else {
                paths.iter().map(|p| (*p).to_owned()).collect()
            })
        };
        if hc.masked_paths.is_none() {
            hc.masked_paths = list(&berth_runtime::defaults::MASKED_PATHS);
        }
        if hc.readonly_paths.is_none() {
            hc.readonly_paths = list(&berth_runtime::defaults::READONLY_PATHS);
        }
    }
    Ok(())
}

/// A container's log driver and options, checked as dockerd checks them: `json-file` (and
/// `local`, which Berth keeps in the same format) with its own options, or `none`. Other
/// drivers are refused rather than silently logging somewhere else.
pub fn validate_log_config(lc: &crate::config::LogConfig) -> Result<()> {
    const JSON_FILE_OPTS: &[&str] = &[
        "max-size",
        "max-file",
        "compress",
        "labels",
        "labels-regex",
        "env",
        "env-regex",
        "tag",
        "mode",
        "max-buffer-size",
    ];
    match lc.kind.as_str() {
        "" | "json-file" | "local" => {
            for key in lc.config.keys() {
                if !JSON_FILE_OPTS.contains(&key.as_str()) {
                    return Err(EngineError::InvalidArgument(format!(
                        "unknown log opt '{key}' for {} log driver",
                        if lc.kind.is_empty() {
                            "json-file"
                        } else {
                            &lc.kind
                        }
                    )));
                }
            }
            if let Some(v) = lc.config.get("max-file") {
                if v.parse::<u32>().map_or(true, |n| n < 1) {
                    return Err(EngineError::InvalidArgument(format!(
                        "invalid value for max-file: {v}"
                    )));
                }
            }
            Ok(())
        }
        "none" => Ok(()),
        other => Err(EngineError::InvalidArgument(format!(
            "logging driver {other:?} is not supported by Berth (json-file, local, none)"
        ))),
    }
}

/// A block device's (major, minor), for blkio weights and throttles.
fn block_device(path: &str) -> Result<(i64, i64)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(path).map_err(|e| {
        EngineError::InvalidArgument(format!(
            "error gathering device information for {path:?}: {}",
            berth_runtime::errno_text(&e)
        ))
    })?;
    if !meta.file_type().is_block_device() {
        return Err(EngineError::InvalidArgument(format!(
            "{path} is not a block device"
        )));
    }
    let rdev = meta.rdev();
    Ok((
        i64::from(rustix::fs::major(rdev)),
        i64::from(rustix::fs::minor(rdev)),
    ))
}

/// `--device-{read,write}-{bps,iops}` as (major, minor, rate).
fn throttles(list: Option<&[crate::config::ThrottleDevice]>) -> Result<Vec<(i64, i64, u64)>> {
    list.unwrap_or_default()
        .iter()
        .map(|d| block_device(&d.path).map(|(ma, mi)| (ma, mi, d.rate)))
        .collect()
}

/// Builds the runtime's spec for a container.
pub fn container_spec(config: &Config, hc: &HostConfig, p: &Prepared<'_>) -> Result<ContainerSpec> {
    let mut seccomp = SeccompMode::Default;
    let mut no_new_privileges = false;
    let mut unmask = false;
    for opt in hc.security_opt.iter().flatten() {
        let o = parse_security_opt(opt)?;
        if let Some(s) = o.seccomp {
            seccomp = s;
        }
        no_new_privileges |= o.no_new_privileges;
        unmask |= o.unmask;
    }
    let network = match hc.network_mode() {
        "host" => NamespaceMode::Host,
        _ => match p.netns {
            Some(path) => NamespaceMode::Path(path.to_owned()),
            None => NamespaceMode::Private,
        },
    };
    let ns = |mode: &str| {
        if mode == "host" {
            NamespaceMode::Host
        } else {
            NamespaceMode::Private
        }
    };
    let hostname = p.hostname.to_owned();
    let mut mounts = Vec::new();
    for (file, dest) in [
        ("hostname", "/etc/hostname"),
        ("hosts", "/etc/hosts"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        mounts.push(MountSpec {
            destination: dest.into(),
            source: p.container_dir.join(file).to_string_lossy().into_owned(),
            kind: "bind".into(),
            // Read-only with the root, as dockerd mounts them.
            options: ["rbind", "rprivate"]
                .into_iter()
                .chain(hc.readonly_rootfs.then_some("ro"))
                .map(str::to_owned)
                .collect(),
        });
    }
    let (volumes, rootfs_propagation) = volume_mounts(p.mounts, hc.tmpfs.as_ref());
    mounts.extend(volumes);
    // Parents before children, as moby sorts them: a volume on `/etc` goes under the
    // container's `/etc/hosts`, not over it. Stable, so a user's mount on `/etc/hosts` itself
    // still comes after (over) the daemon's.
    mounts.sort_by_key(|m| m.destination.split('/').filter(|c| !c.is_empty()).count());
    let ulimits = hc
        .ulimits
        .iter()
        .flatten()
        .map(|u| {
            if u.soft < 0 || u.hard < 0 {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid ulimit {}: negative value",
                    u.name
                )));
            }
            Ok(Ulimit {
                name: u.name.clone(),
                soft: u.soft as u64,
                hard: u.hard as u64,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let devices = hc
        .devices
        .iter()
        .flatten()
        .map(|d| DeviceMapping {
            host_path: PathBuf::from(&d.path_on_host),
            container_path: PathBuf::from(if d.path_in_container.is_empty() {
                &d.path_on_host
            } else {
                &d.path_in_container
            }),
            permissions: if d.cgroup_permissions.is_empty() {
                "rwm".into()
            } else {
                d.cgroup_permissions.clone()
            },
        })
        .collect();
    let pos = |v: i64| (v > 0).then_some(v);
    Ok(ContainerSpec {
        rootfs: p.rootfs.to_owned(),
        args: argv(config),
        env: config.env.clone().unwrap_or_default(),
        cwd: if config.working_dir.is_empty() {
            "/".into()
        } else {
            config.working_dir.clone()
        },
        user: config.user.clone(),
        group_add: hc.group_add.clone().unwrap_or_default(),
        hostname,
        domainname: config.domainname.clone(),
        tty: config.tty,
        readonly_rootfs: hc.readonly_rootfs,
        privileged: hc.privileged,
        cap_add: hc.cap_add.clone().unwrap_or_default(),
        cap_drop: hc.cap_drop.clone().unwrap_or_default(),
        seccomp,
        no_new_privileges,
        resources: Resources {
            memory: pos(hc.memory),
            memory_swap: (hc.memory_swap != 0).then_some(hc.memory_swap),
            memory_reservation: pos(hc.memory_reservation),
            // Only where the host has them (records from before create dropped them, or
            // from another host, may still ask).
            memory_swappiness: hc
                .memory_swappiness
                .and_then(|s| u64::try_from(s).ok())
                .filter(|_| crate::sysinfo::SysInfo::get().memory_swappiness),
            oom_kill_disable: hc.oom_kill_disable == Some(true)
                && crate::sysinfo::SysInfo::get().oom_kill_disable,
            nano_cpus: pos(hc.nano_cpus),
            cpu_shares: (hc.cpu_shares > 0).then_some(hc.cpu_shares as u64),
            cpu_period: (hc.cpu_period > 0).then_some(hc.cpu_period as u64),
            cpu_quota: pos(hc.cpu_quota),
            cpuset_cpus: (!hc.cpuset_cpus.is_empty()).then(|| hc.cpuset_cpus.clone()),
            cpuset_mems: (!hc.cpuset_mems.is_empty()).then(|| hc.cpuset_mems.clone()),
            pids_limit: hc.pids_limit.filter(|&p| p > 0),
            blkio_weight: (hc.blkio_weight > 0).then_some(hc.blkio_weight),
            blkio_weight_device: hc
                .blkio_weight_device
                .iter()
                .flatten()
                .map(|d| block_device(&d.path).map(|(ma, mi)| (ma, mi, d.weight)))
                .collect::<Result<_>>()?,
            throttle_read_bps: throttles(hc.blkio_device_read_bps.as_deref())?,
            throttle_write_bps: throttles(hc.blkio_device_write_bps.as_deref())?,
            throttle_read_iops: throttles(hc.blkio_device_read_iops.as_deref())?,
            throttle_write_iops: throttles(hc.blkio_device_write_iops.as_deref())?,
        },
        ulimits,
        shm_size: (hc.shm_size > 0).then_some(hc.shm_size),
        sysctls: hc
            .sysctls
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        devices,
        init: hc.init.unwrap_or(false).then(|| p.init_binary.to_owned()),
        network,
        ipc: match &p.ipc_ns {
            Some(path) => NamespaceMode::Path(path.clone()),
            None => ns(&hc.ipc_mode),
        },
        pid: match &p.pid_ns {
            Some(path) => NamespaceMode::Path(path.clone()),
            None => ns(&hc.pid_mode),
        },
        shm_source: p.shm_source.clone(),
        uts: ns(&hc.uts_mode),
        cgroupns: if hc.cgroupns_mode == "host" {
            NamespaceMode::Host
        } else {
            NamespaceMode::Private
        },
        mounts,
        cgroups_path: p.cgroups_path.clone(),
        oom_score_adj: (hc.oom_score_adj != 0).then_some(hc.oom_score_adj as i32),
        unmask_system_paths: unmask,
        masked_paths: hc.masked_paths.clone(),
        readonly_paths: hc.readonly_paths.clone(),
        rootfs_propagation,
        annotations: hc.annotations.clone().unwrap_or_default(),
    })
}

/// The `/etc/hosts` Docker writes for a container without a real network.
pub fn hosts_file(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.0.1\t{hostname}\n"
    )
}

/// resolv.conf for a container on a user-defined network: the embedded DNS server (which
/// forwards other names to the host's resolvers), the host's search domains unless given.
pub fn embedded_resolv_conf(host: &str, search: &[String], options: &[String]) -> String {
    let mut out = String::from("nameserver 127.0.0.11\n");
    let search: Vec<String> = if search.is_empty() {
        host.lines()
            .filter_map(|l| l.strip_prefix("search "))
            .flat_map(|s| s.split_whitespace().map(str::to_owned))
            .collect()
    } else {
        search.to_vec()
    };
    if !search.is_empty() && search != ["."] {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    let mut opts = vec!["ndots:0".to_owned()];
    for o in options {
        if o.starts_with("ndots:") {
            opts.retain(|x| !x.starts_with("ndots:"));
        }
        opts.push(o.clone());
    }
    out.push_str(&format!("options {}\n", opts.join(" ")));
    out
}

/// The host's resolv.conf with loopback resolvers dropped (they mean nothing in the
/// container's namespace); falls back to public resolvers when none is left, as Docker does.
pub fn resolv_conf(host: &str, dns: &[String], search: &[String], options: &[String]) -> String {
    let mut out = String::new();
    let mut servers: Vec<String> = dns.to_vec();
    if servers.is_empty() {
        for line in host.lines() {
            let mut words = line.split_whitespace();
            if words.next() == Some("nameserver") {
                if let Some(ip) = words.next() {
                    if !ip.starts_with("127.") && ip != "::1" {
                        servers.push(ip.to_owned());
                    }
                }
            }
        }
    }
    if servers.is_empty() {
        servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    let host_search = host
        .lines()
        .find_map(|l| l.strip_prefix("search "))
        .map(|s| s.split_whitespace().map(String::from).collect::<Vec<_>>())
        .unwrap_or_default();
    let search = if search.is_empty() {
        host_search
    } else {
        search.to_vec()
    };
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(entry: Option<&[&str]>, cmd: Option<&[&str]>) -> Config {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Config {
            entrypoint: entry.map(v),
            cmd: cmd.map(v),
            ..Config::default()
        }
    }

    #[test]
    fn merge_follows_dockers_entrypoint_cmd_rules() {
        let image = Config {
            env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
            ..cfg(Some(&["/ep"]), Some(&["dflt"]))
        };
        let mut c = cfg(None, None);
        merge_image_config(&mut c, &image).unwrap();
        assert_eq!(argv(&c), ["/ep", "dflt"]);
        let mut c = cfg(None, Some(&["x"]));
        merge_image_config(&mut c, &image).unwrap();
        assert_eq!(argv(&c), ["/ep", "x"]);
        let mut c = cfg(Some(&["/other"]), None);
        merge_image_config(&mut c, &image).unwrap();
        assert_eq!(argv(&c), ["/other"]);
        let mut c = Config {
            env: Some(vec!["A=2".into()]),
            ..cfg(None, Some(&["x"]))
        };
        merge_image_config(&mut c, &image).unwrap();
        assert_eq!(c.env.unwrap(), ["A=2", "PATH=/bin"]);
        let mut c = cfg(None, Some(&["x"]));
        merge_image_config(&mut c, &Config::default()).unwrap();
        assert_eq!(c.env, None);
        let mut c = cfg(None, None);
        let err = merge_image_config(&mut c, &Config::default()).unwrap_err();
        assert_eq!(err.to_string(), "No command specified");
        assert_eq!(mounts::clean("/a/./b/../c/"), "/a/c");
        assert_eq!(mounts::clean("/../x"), "/x");
        // `--entrypoint ""`: none at all, the cmd given runs; without one, nothing to run.
        let mut c = cfg(Some(&[""]), Some(&["echo", "hi"]));
        merge_image_config(&mut c, &image).unwrap();
        assert_eq!(c.entrypoint, None);
        assert_eq!(argv(&c), ["echo", "hi"]);
        let mut c = cfg(Some(&[""]), None);
        let err = merge_image_config(&mut c, &image).unwrap_err();
        assert_eq!(err.to_string(), "No command specified");
    }

    #[test]
    fn create_settings_are_refused_in_dockerds_words() {
        let refused = |hc: HostConfig| validate_host_config(&hc).unwrap_err().to_string();
        let d = HostConfig::default;
        assert_eq!(
            refused(HostConfig {
                nano_cpus: 1_000_000_000,
                cpu_quota: 50_000,
                ..d()
            }),
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        );
        assert_eq!(
            refused(HostConfig {
                cpu_period: 100,
                ..d()
            }),
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        );
        assert_eq!(
            refused(HostConfig {
                cpu_quota: 10,
                ..d()
            }),
            "CPU cfs quota can not be less than 1ms (i.e. 1000)"
        );
        assert_eq!(
            refused(HostConfig {
                memory: 64 << 20,
                memory_reservation: 128 << 20,
                ..d()
            }),
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        );
        assert_eq!(
            refused(HostConfig {
                oom_score_adj: 2000,
                ..d()
            }),
            "Invalid value 2000, range for oom score adj is [-1000, 1000]"
        );
        assert_eq!(
            refused(HostConfig {
                cap_add: Some(vec!["bogus".into()]),
                ..d()
            }),
            r#"invalid CapAdd: unknown capability: "CAP_BOGUS""#
        );
        assert_eq!(
            refused(HostConfig {
                extra_hosts: Some(vec!["nohostcolon".into()]),
                ..d()
            }),
            r#"bad format for add-host: "nohostcolon""#
        );
        assert_eq!(
            refused(HostConfig {
                extra_hosts: Some(vec!["h:1.2.3".into()]),
                ..d()
            }),
            r#"invalid IP address in add-host: "1.2.3""#
        );
        let fine = HostConfig {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            memory: 128 << 20,
            memory_reservation: 64 << 20,
            oom_score_adj: -500,
            cap_add: Some(vec!["net_admin".into(), "CAP_SYS_TIME".into()]),
            extra_hosts: Some(vec![
                "a:10.0.0.1".into(),
                "b:host-gateway".into(),
                "c:::1".into(),
            ]),
            ..d()
        };
        validate_host_config(&fine).unwrap();

        let refused = |c: Config| validate_config(&c).unwrap_err().to_string();
        assert_eq!(
            refused(Config {
                stop_signal: Some("SIGBOGUS".into()),
                ..Config::default()
            }),
            "Invalid signal: SIGBOGUS"
        );
        let health = |h: crate::config::HealthConfig| Config {
            healthcheck: Some(h),
            ..Config::default()
        };
        let hd = crate::config::HealthConfig::default;
        assert_eq!(
            refused(health(crate::config::HealthConfig {
                interval: Some(1),
                ..hd()
            })),
            "Interval in Healthcheck cannot be less than 1ms"
        );
        assert_eq!(
            refused(health(crate::config::HealthConfig {
                retries: Some(-1),
                ..hd()
            })),
            "Retries in Healthcheck cannot be negative"
        );
        validate_config(&health(crate::config::HealthConfig {
            interval: Some(0),
            timeout: Some(2_000_000_000),
            retries: Some(3),
            ..hd()
        }))
        .unwrap();
    }

    #[test]
    fn impossible_limits_are_refused() {
        let hc = HostConfig {
            memory: 1024,
            ..HostConfig::default()
        };
        assert_eq!(
            validate_host_config(&hc).unwrap_err().to_string(),
            "Minimum memory limit allowed is 6MB"
        );
        let hc = HostConfig {
            memory: 64 << 20,
            memory_swap: 32 << 20,
            ..HostConfig::default()
        };
        assert!(validate_host_config(&hc).is_err());
        let hc = HostConfig {
            nano_cpus: 1000 * 1_000_000_000,
            ..HostConfig::default()
        };
        assert!(
            validate_host_config(&hc)
                .unwrap_err()
                .to_string()
                .starts_with("Range of CPUs")
        );
        let hc = HostConfig {
            security_opt: Some(vec!["bogus".into()]),
            ..HostConfig::default()
        };
        assert!(validate_host_config(&hc).is_err());
        let mut hc = HostConfig::default();
        hc.restart_policy.name = "sometimes".into();
        assert!(validate_host_config(&hc).is_err());
        assert!(validate_host_config(&HostConfig::default()).is_ok());
    }

    #[test]
    fn resolv_conf_drops_loopback_resolvers() {
        let host = "search example.com\nnameserver 127.0.0.53\nnameserver 10.0.0.2\n";
        assert_eq!(
            resolv_conf(host, &[], &[], &[]),
            "search example.com\nnameserver 10.0.0.2\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.1\n", &[], &[], &[]),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf(
                host,
                &["1.1.1.1".into()],
                &["s".into()],
                &["ndots:2".into()]
            ),
            "search s\nnameserver 1.1.1.1\noptions ndots:2\n"
        );
    }
}
