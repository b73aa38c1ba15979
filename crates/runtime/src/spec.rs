//! A runtime-neutral description of one container ([`ContainerSpec`]) and its translation into
//! an explicit OCI runtime spec with Docker's defaults ([`build_spec`]).
//!
//! Nothing here comes from `oci_spec`'s `Default` security settings: capabilities, seccomp,
//! masked and read-only paths, devices, mounts and namespaces are all set explicitly.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
    /// Extra mounts (hosts, resolv.conf, hostname files; later volumes and binds).
    pub mounts: Vec<MountSpec>,
    /// Cgroup path for the container (e.g. "/berth/<id>"), relative to the cgroup root(s).
    pub cgroups_path: String,
    /// Signal the process uses to stop (informational for the engine; not in the OCI spec).
    pub oom_score_adj: Option<i32>,
    /// Docker's `--security-opt` masks: `systempaths=unconfined` clears masked/read-only paths.
    pub unmask_system_paths: bool,
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
    /// CPUs in units of 1e-9 (`--cpus 1.5` = 1_500_000_000).
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
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
