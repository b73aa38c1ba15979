//! What this host's cgroups can do (moby's `sysinfo`): probed once from the cgroup files, for
//! `info` to report and for create to drop, with dockerd's warnings, the settings the kernel
//! cannot apply (a container must still start where dockerd's would).

use std::path::Path;
use std::sync::OnceLock;

use crate::config::HostConfig;

/// The cgroup features Docker's `info` reports and its create checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysInfo {
    pub cgroup_v2: bool,
    pub swap_limit: bool,
    pub memory_swappiness: bool,
    pub oom_kill_disable: bool,
    pub blkio_weight: bool,
    pub blkio_weight_device: bool,
}

impl SysInfo {
    /// This host's, probed on first use.
    pub fn get() -> &'static SysInfo {
        static INFO: OnceLock<SysInfo> = OnceLock::new();
        INFO.get_or_init(|| SysInfo::probe(Path::new("/sys/fs/cgroup")))
    }

    /// Probes the cgroup tree at `root`: the unified hierarchy alone, or v1 controllers each
    /// in their directory.
    pub fn probe(root: &Path) -> SysInfo {
        let has = |p: &str| root.join(p).exists();
        if has("cgroup.controllers") {
            let controllers =
                std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            let memory = controllers.split_whitespace().any(|c| c == "memory");
            let io = controllers.split_whitespace().any(|c| c == "io");
            // As moby on v2: no swappiness and no OOM-killer switch; weights with `io`.
            return SysInfo {
                cgroup_v2: true,
                swap_limit: memory,
                memory_swappiness: false,
                oom_kill_disable: false,
                blkio_weight: io,
                blkio_weight_device: io,
            };
        }
        SysInfo {
            cgroup_v2: false,
            swap_limit: has("memory/memory.memsw.limit_in_bytes"),
            memory_swappiness: has("memory/memory.swappiness"),
            oom_kill_disable: has("memory/memory.oom_control"),
            blkio_weight: has("blkio/blkio.weight") || has("blkio/blkio.bfq.weight"),
            blkio_weight_device: has("blkio/blkio.weight_device")
                || has("blkio/blkio.bfq.weight_device"),
        }
    }

    /// Drops from `hc` what this host cannot apply; returns dockerd's warnings for them.
    pub fn discard_unsupported(&self, hc: &mut HostConfig) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut warn = |s: &str| warnings.push(s.to_owned());
        if hc.memory > 0 && hc.memory_swap != -1 && !self.swap_limit {
            warn(
                "Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.",
            );
            hc.memory_swap = -1;
        }
        if hc.memory_swappiness.is_some() && !self.memory_swappiness {
            warn(
                "Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded.",
            );
            hc.memory_swappiness = None;
        }
        if hc.oom_kill_disable == Some(true) && !self.oom_kill_disable {
            warn("Your kernel does not support OomKillDisable. OomKillDisable discarded.");
            hc.oom_kill_disable = Some(false);
        }
        if hc.blkio_weight > 0 && !self.blkio_weight {
            warn(
                "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.",
            );
            hc.blkio_weight = 0;
        }
        if hc
            .blkio_weight_device
            .as_ref()
            .is_some_and(|d| !d.is_empty())
            && !self.blkio_weight_device
        {
            warn(
                "Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded.",
            );
            hc.blkio_weight_device = Some(Vec::new());
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for f in files {
            let p = t.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        t
    }

    #[test]
    fn v1_probe_reads_the_controller_files() {
        let t = tree(&[
            "memory/memory.memsw.limit_in_bytes",
            "memory/memory.oom_control",
            "blkio/blkio.throttle.read_bps_device",
        ]);
        let s = SysInfo::probe(t.path());
        assert!(!s.cgroup_v2 && s.swap_limit && s.oom_kill_disable);
        assert!(!s.memory_swappiness && !s.blkio_weight && !s.blkio_weight_device);
    }

    #[test]
    fn v2_probe_reads_the_root_controllers() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        let s = SysInfo::probe(t.path());
        assert!(s.cgroup_v2 && s.swap_limit && s.blkio_weight);
        assert!(!s.memory_swappiness && !s.oom_kill_disable);
    }

    #[test]
    fn unsupported_settings_are_dropped_with_dockerds_warnings() {
        let s = SysInfo {
            cgroup_v2: false,
            swap_limit: false,
            memory_swappiness: true,
            oom_kill_disable: false,
            blkio_weight: false,
            blkio_weight_device: true,
        };
        let mut hc = HostConfig {
            memory: 64 << 20,
            memory_swap: 128 << 20,
            memory_swappiness: Some(10),
            oom_kill_disable: Some(true),
            blkio_weight: 300,
            ..Default::default()
        };
        let w = s.discard_unsupported(&mut hc);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("Memory limited without swap"));
        assert!(w[1].contains("OomKillDisable discarded"));
        assert!(w[2].contains("Weight discarded"));
        assert_eq!(hc.memory_swap, -1);
        assert_eq!(hc.memory_swappiness, Some(10));
        assert_eq!(hc.oom_kill_disable, Some(false));
        assert_eq!(hc.blkio_weight, 0);
    }
}
