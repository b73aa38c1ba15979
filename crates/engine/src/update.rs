//! `docker update`: a container's resource limits and restart policy changed in place
//! (`POST /containers/{id}/update`). The new values are kept in its host config, so the next
//! start uses them, and written straight into a running container's cgroups, as runc does.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{HostConfig, RestartPolicy};
use crate::error::{EngineError, Result};
use crate::stats::Hierarchy;
use crate::{Engine, Status};

/// The fields of Docker's `UpdateConfig` Berth applies; a zero (or absent) value leaves the
/// setting as it is, as in Docker.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateConfig {
    pub cpu_shares: i64,
    pub memory: i64,
    pub memory_swap: i64,
    pub memory_reservation: i64,
    pub nano_cpus: i64,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// `None`: unchanged; 0 or -1: no limit.
    pub pids_limit: Option<i64>,
    pub blkio_weight: u16,
    pub restart_policy: Option<RestartPolicy>,
}

/// The new host config, with Docker's rules for what an update may do.
fn merged(hc: &HostConfig, u: &UpdateConfig) -> Result<HostConfig> {
    let mut n = hc.clone();
    if u.memory != 0 {
        n.memory = u.memory;
    }
    if u.memory_swap != 0 {
        n.memory_swap = u.memory_swap;
    } else if u.memory != 0 && hc.memory > 0 && hc.memory_swap == hc.memory.saturating_mul(2) {
        // A swap limit that was the default for the old memory limit (twice it) follows the
        // new one; dockerd 20.10 refuses the update instead (unless it shrinks).
        n.memory_swap = n.memory.saturating_mul(2);
    }
    if u.memory_reservation != 0 {
        n.memory_reservation = u.memory_reservation;
    }
    if u.cpu_shares != 0 {
        n.cpu_shares = u.cpu_shares;
    }
    if u.nano_cpus != 0 {
        n.nano_cpus = u.nano_cpus;
        n.cpu_quota = 0;
        n.cpu_period = 0;
    }
    if u.cpu_period != 0 {
        n.cpu_period = u.cpu_period;
    }
    if u.cpu_quota != 0 {
        n.cpu_quota = u.cpu_quota;
    }
    if (u.cpu_period != 0 || u.cpu_quota != 0) && u.nano_cpus == 0 {
        n.nano_cpus = 0;
    }
    if !u.cpuset_cpus.is_empty() {
        n.cpuset_cpus = u.cpuset_cpus.clone();
    }
    if !u.cpuset_mems.is_empty() {
        n.cpuset_mems = u.cpuset_mems.clone();
    }
    if let Some(p) = u.pids_limit {
        n.pids_limit = (p > 0).then_some(p);
    }
    if u.blkio_weight != 0 {
        n.blkio_weight = u.blkio_weight;
    }
    if let Some(rp) = &u.restart_policy {
        if !rp.name.is_empty() {
            if hc.auto_remove && !matches!(rp.name.as_str(), "no") {
                return Err(EngineError::InvalidArgument(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container"
                        .into(),
                ));
            }
            n.restart_policy = rp.clone();
        }
    }
    // Raising the memory limit past a swap limit that was set: the swap limit must move too.
    if u.memory != 0 && u.memory_swap == 0 && n.memory_swap > 0 && n.memory > n.memory_swap {
        return Err(EngineError::InvalidArgument(
            "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time"
                .into(),
        ));
    }
    Ok(n)
}

/// One cgroup file to write, in order.
type Write = (PathBuf, String);

/// The cgroup writes that bring a running container to `n` (only what the update touched).
fn writes(h: &Hierarchy, rel: &str, u: &UpdateConfig, n: &HostConfig) -> Vec<Write> {
    let mut w: Vec<Write> = Vec::new();
    let cpu_quota = if n.nano_cpus > 0 {
        Some((n.nano_cpus * 100_000 / 1_000_000_000, 100_000))
    } else if n.cpu_quota != 0 || n.cpu_period != 0 {
        Some((
            if n.cpu_quota == 0 { -1 } else { n.cpu_quota },
            if n.cpu_period == 0 {
                100_000
            } else {
                n.cpu_period
            },
        ))
    } else {
        None
    };
    let cpu_touched = u.nano_cpus != 0 || u.cpu_quota != 0 || u.cpu_period != 0;
    match h {
        Hierarchy::V1(root) => {
            let f = |c: &str, file: &str| root.join(c).join(rel).join(file);
            if u.memory != 0 || u.memory_swap != 0 {
                let swap = if n.memory_swap == 0 {
                    -1
                } else {
                    n.memory_swap
                };
                let mem = f("memory", "memory.limit_in_bytes");
                let memsw = f("memory", "memory.memsw.limit_in_bytes");
                let have_swap = memsw.exists();
                // memory ≤ memory+swap at every step: grow the swap limit first, shrink it last.
                let current_swap = std::fs::read_to_string(&memsw)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .unwrap_or(i64::MAX);
                let grow_swap_first = swap == -1 || n.memory > current_swap;
                if have_swap && grow_swap_first {
                    w.push((memsw.clone(), swap.to_string()));
                }
                w.push((mem, n.memory.to_string()));
                if have_swap && !grow_swap_first {
                    w.push((memsw, swap.to_string()));
                }
            }
            if u.memory_reservation != 0 {
                w.push((
                    f("memory", "memory.soft_limit_in_bytes"),
                    n.memory_reservation.to_string(),
                ));
            }
            if u.cpu_shares != 0 {
                w.push((f("cpu", "cpu.shares"), n.cpu_shares.to_string()));
            }
            if cpu_touched {
                let (quota, period) = cpu_quota.unwrap_or((-1, 100_000));
                w.push((f("cpu", "cpu.cfs_period_us"), period.to_string()));
                w.push((f("cpu", "cpu.cfs_quota_us"), quota.to_string()));
            }
            if !u.cpuset_cpus.is_empty() {
                w.push((f("cpuset", "cpuset.cpus"), n.cpuset_cpus.clone()));
            }
            if !u.cpuset_mems.is_empty() {
                w.push((f("cpuset", "cpuset.mems"), n.cpuset_mems.clone()));
            }
            if u.pids_limit.is_some() {
                let v = n.pids_limit.map_or("max".to_owned(), |p| p.to_string());
                w.push((f("pids", "pids.max"), v));
            }
            if u.blkio_weight != 0 {
                w.push((f("blkio", "blkio.weight"), n.blkio_weight.to_string()));
            }
        }
        Hierarchy::V2(root) => {
            let f = |file: &str| root.join(rel).join(file);
            if u.memory != 0 || u.memory_swap != 0 {
                w.push((f("memory.max"), n.memory.to_string()));
                let swap = if n.memory_swap <= 0 {
                    "max".to_owned()
                } else {
                    (n.memory_swap - n.memory).max(0).to_string()
                };
                if f("memory.swap.max").exists() {
                    w.push((f("memory.swap.max"), swap));
                }
            }
            if u.memory_reservation != 0 {
                w.push((f("memory.low"), n.memory_reservation.to_string()));
            }
            if u.cpu_shares != 0 {
                // Docker's mapping of shares (2-262144) onto weights (1-10000).
                let weight = 1 + ((n.cpu_shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
                w.push((f("cpu.weight"), weight.to_string()));
            }
            if cpu_touched {
                let v = match cpu_quota {
                    Some((q, p)) if q > 0 => format!("{q} {p}"),
                    Some((_, p)) => format!("max {p}"),
                    None => "max 100000".to_owned(),
                };
                w.push((f("cpu.max"), v));
            }
            if !u.cpuset_cpus.is_empty() {
                w.push((f("cpuset.cpus"), n.cpuset_cpus.clone()));
            }
            if !u.cpuset_mems.is_empty() {
                w.push((f("cpuset.mems"), n.cpuset_mems.clone()));
            }
            if u.pids_limit.is_some() {
                let v = n.pids_limit.map_or("max".to_owned(), |p| p.to_string());
                w.push((f("pids.max"), v));
            }
            if u.blkio_weight != 0 {
                w.push((f("io.weight"), format!("default {}", n.blkio_weight)));
            }
        }
    }
    w
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| {
        EngineError::InvalidArgument(format!(
            "failed to write {value:?} to {}: {e}",
            path.display()
        ))
    })
}

impl Engine {
    /// `POST /containers/{id}/update`; returns Docker's warnings.
    pub async fn update(&self, key: &str, u: &UpdateConfig) -> Result<Vec<String>> {
        let h = self.resolve(key)?;
        let _op = h.op.lock().await;
        let rec = h.record();
        // As moby: the settings' own checks answer as they are; what the container refuses
        // (its restart policy, its current limits, the cgroup writes) names the container.
        let cannot = |e: EngineError| match e {
            EngineError::InvalidArgument(m) => {
                EngineError::InvalidArgument(format!("Cannot update container {}: {m}", rec.id))
            }
            other => other,
        };
        let n = merged(&rec.host_config, u).map_err(cannot)?;
        crate::spec::validate_host_config(&n)?;
        let mut warnings = Vec::new();
        if matches!(rec.state.status, Status::Running | Status::Paused) {
            let rel = format!(
                "{}/{}",
                self.inner.cfg.cgroup_parent.trim_matches('/'),
                rec.id
            );
            let hier = Hierarchy::detect();
            for (path, value) in writes(&hier, &rel, u, &n) {
                if !path.exists() {
                    if path.ends_with("blkio.weight") || path.ends_with("io.weight") {
                        warnings.push(
                            "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
                                .to_owned(),
                        );
                        continue;
                    }
                    return Err(cannot(EngineError::InvalidArgument(format!(
                        "{} is not available on this host",
                        path.display()
                    ))));
                }
                write(&path, &value).map_err(cannot)?;
            }
        }
        let mut r = crate::lock(&h.rec);
        r.host_config = n;
        let snap = r.clone();
        drop(r);
        self.persist(&snap)?;
        self.emit(&snap, "update");
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_memory_writes_keep_memory_under_swap() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("memory/berth/c");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.memsw.limit_in_bytes"), "134217728\n").unwrap();
        let h = Hierarchy::V1(t.path().to_owned());
        let hc = HostConfig {
            memory: 64 << 20,
            memory_swap: 128 << 20,
            ..Default::default()
        };
        // Growing past the swap limit: swap first.
        let u = UpdateConfig {
            memory: 256 << 20,
            memory_swap: 512 << 20,
            ..Default::default()
        };
        let n = merged(&hc, &u).unwrap();
        let w = writes(&h, "berth/c", &u, &n);
        let names: Vec<_> = w
            .iter()
            .map(|(p, v)| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    v.clone(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                (
                    "memory.memsw.limit_in_bytes".into(),
                    (512u64 << 20).to_string()
                ),
                ("memory.limit_in_bytes".into(), (256u64 << 20).to_string()),
            ]
        );
        // Raising memory alone past a swap limit the user set is refused, as Docker refuses
        // it; a default swap limit (twice the memory) follows the memory limit instead.
        let u = UpdateConfig {
            memory: 256 << 20,
            ..Default::default()
        };
        let set = HostConfig {
            memory_swap: 160 << 20,
            ..hc.clone()
        };
        assert!(merged(&set, &u).is_err());
        let n = merged(&hc, &u).unwrap();
        assert_eq!((n.memory, n.memory_swap), (256 << 20, 512 << 20));
        let w = writes(&h, "berth/c", &u, &n);
        assert_eq!(w[0].1, (512u64 << 20).to_string(), "{w:?}");
    }

    #[test]
    fn cpus_and_pids_and_restart() {
        let hc = HostConfig {
            auto_remove: true,
            ..Default::default()
        };
        let u = UpdateConfig {
            restart_policy: Some(RestartPolicy {
                name: "always".into(),
                maximum_retry_count: 0,
            }),
            ..Default::default()
        };
        assert!(merged(&hc, &u).is_err());
        let t = tempfile::tempdir().unwrap();
        let h = Hierarchy::V2(t.path().to_owned());
        let u = UpdateConfig {
            nano_cpus: 500_000_000,
            pids_limit: Some(-1),
            ..Default::default()
        };
        let n = merged(&HostConfig::default(), &u).unwrap();
        let w: Vec<String> = writes(&h, "b/c", &u, &n)
            .into_iter()
            .map(|(p, v)| format!("{}={v}", p.file_name().unwrap().to_string_lossy()))
            .collect();
        assert_eq!(w, vec!["cpu.max=50000 100000", "pids.max=max"]);
    }
}
