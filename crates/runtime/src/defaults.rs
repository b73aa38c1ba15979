//! Docker's defaults, written out: the 14 default capabilities, masked and read-only paths,
//! the default mounts, devices and device cgroup rules, and the tiny init for `--init`.
//!
//! `--privileged` lifts them: every capability in the host's own bounding set (on a host that
//! lacks some capability, asking for more would fail, as Docker 20.10 with runc does here),
//! every host device, no masked or read-only paths.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::RuntimeError;

/// Linux capabilities by number (`capability.h`), as OCI names them.
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default capability set (bounding = effective = permitted).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from the container (a file gets `/dev/null`, a directory an empty read-only
/// tmpfs).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths remounted read-only.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker's default `/dev/shm` size: 64 MiB.
pub const DEFAULT_SHM_SIZE: i64 = 64 * 1024 * 1024;

/// A device node every container gets: (path, type, major, minor).
pub const DEFAULT_DEVICES: [(&str, &str, i64, i64); 6] = [
    ("/dev/null", "c", 1, 3),
    ("/dev/zero", "c", 1, 5),
    ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8),
    ("/dev/urandom", "c", 1, 9),
    ("/dev/tty", "c", 5, 0),
];

/// Device cgroup rules after "deny all": (type, major, minor, access); `None` is `*`.
pub const DEFAULT_DEVICE_RULES: [(&str, Option<i64>, Option<i64>, &str); 11] = [
    ("c", None, None, "m"),
    ("b", None, None, "m"),
    ("c", Some(1), Some(3), "rwm"),
    ("c", Some(1), Some(8), "rwm"),
    ("c", Some(1), Some(7), "rwm"),
    ("c", Some(5), Some(0), "rwm"),
    ("c", Some(1), Some(5), "rwm"),
    ("c", Some(1), Some(9), "rwm"),
    ("c", Some(136), None, "rwm"),
    ("c", Some(5), Some(2), "rwm"),
    ("c", Some(10), Some(200), "rwm"),
];

/// Normalizes a capability name as Docker accepts it (`net_admin`, `NET_ADMIN`,
/// `CAP_NET_ADMIN`) to the OCI form; `ALL` stays `ALL`.
pub fn normalize_capability(name: &str) -> Result<String, RuntimeError> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(RuntimeError::InvalidSpec(format!(
            "unknown capability: {name:?}"
        )))
    }
}

/// The capability names set in a hex mask as `/proc/<pid>/status` shows it.
pub fn capabilities_from_mask(mask: u64) -> Vec<String> {
    CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

/// This process's capability bounding set (`CapBnd`), which bounds anything a container may
/// get; all known capabilities if it cannot be read.
pub fn host_bounding_mask() -> u64 {
    let all = (1u64 << CAPABILITIES.len()) - 1;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .map_or(all, |m| m & all)
}

/// The capabilities a privileged container gets: exactly the host's bounding set.
pub fn privileged_capabilities() -> oci_spec::runtime::Capabilities {
    capabilities_from_mask(host_bounding_mask())
        .iter()
        .filter_map(|c| serde_json::from_value(serde_json::Value::String(c.clone())).ok())
        .collect()
}

/// The default capability set adjusted by `--cap-add` / `--cap-drop` (Docker's rules: `ALL` in
/// add means every host capability, `ALL` in drop means start from nothing; a capability both
/// added and dropped is added). Capabilities the host lacks are refused.
pub fn adjust_capabilities(add: &[String], drop: &[String]) -> Result<Vec<String>, RuntimeError> {
    // Refusals name the list, in moby's words (`invalid CapAdd: unknown capability: ...`).
    let normalize = |list: &[String], what: &str| {
        list.iter()
            .map(|c| {
                normalize_capability(c)
                    .map_err(|e| RuntimeError::InvalidSpec(format!("invalid {what}: {e}")))
            })
            .collect::<Result<Vec<String>, _>>()
    };
    let add = normalize(add, "CapAdd")?;
    let drop = normalize(drop, "CapDrop")?;
    let host = capabilities_from_mask(host_bounding_mask());
    let mut caps: Vec<String> = if add.iter().any(|c| c == "ALL") {
        host.clone()
    } else if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| (*c).to_owned())
            .collect()
    };
    caps.retain(|c| !drop.contains(c) || add.contains(c));
    for c in add.iter().filter(|c| *c != "ALL") {
        if !host.contains(c) {
            return Err(RuntimeError::InvalidSpec(format!(
                "capability {c} is not in this host's bounding set and cannot be granted"
            )));
        }
        if !caps.contains(c) {
            caps.push(c.clone());
        }
    }
    Ok(caps)
}

/// The tiny init run as PID 1 with `--init`, statically linked (built by `build.rs`).
static INIT_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-init"));

/// Writes the init binary to `dir/berth-init` (mode 0755, atomically) unless an identical
/// copy is there; returns its path. The daemon bind-mounts it read-only at `/sbin/docker-init`.
pub fn install_init(dir: &Path) -> Result<PathBuf, RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(RuntimeError::io("create", dir))?;
    let path = dir.join("berth-init");
    if std::fs::read(&path).is_ok_and(|b| b == INIT_BINARY) {
        return Ok(path);
    }
    let tmp = dir.join(format!(".berth-init.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(RuntimeError::io("create", &tmp))?;
    f.write_all(INIT_BINARY)
        .map_err(RuntimeError::io("write", &tmp))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o755))
        .map_err(RuntimeError::io("chmod", &tmp))?;
    f.sync_all().map_err(RuntimeError::io("sync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(RuntimeError::io("rename", &path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_capabilities_are_dockers_mask() {
        let mask: u64 = DEFAULT_CAPABILITIES
            .iter()
            .map(|c| 1u64 << CAPABILITIES.iter().position(|x| x == c).unwrap())
            .sum();
        assert_eq!(mask, 0xa80425fb);
    }

    #[test]
    fn capability_names_normalize() {
        assert_eq!(normalize_capability("net_admin").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(
            normalize_capability("CAP_SYS_ADMIN").unwrap(),
            "CAP_SYS_ADMIN"
        );
        assert_eq!(normalize_capability("all").unwrap(), "ALL");
        assert!(normalize_capability("CAP_NOPE").is_err());
    }

    #[test]
    fn cap_add_and_drop_follow_docker() {
        let caps = adjust_capabilities(&[], &["chown".into()]).unwrap();
        assert_eq!(caps.len(), 13);
        assert!(!caps.contains(&"CAP_CHOWN".to_owned()));
        let caps = adjust_capabilities(&["CHOWN".into()], &["ALL".into()]).unwrap();
        assert_eq!(caps, vec!["CAP_CHOWN".to_owned()]);
        let caps = adjust_capabilities(&["NET_ADMIN".into()], &[]).unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_owned()));
    }

    #[test]
    fn mask_round_trips() {
        let caps = capabilities_from_mask(0xa80425fb);
        assert_eq!(caps.len(), 14);
        for c in DEFAULT_CAPABILITIES {
            assert!(caps.iter().any(|x| x == c), "{c}");
        }
    }

    #[test]
    fn init_installs_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = install_init(dir.path()).unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        assert!(meta.len() > 1000);
        assert_eq!(install_init(dir.path()).unwrap(), p);
    }
}
