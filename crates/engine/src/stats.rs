//! Resource usage of containers, read from their cgroups (the v1 controllers, or the v2
//! unified hierarchy when that is all the host has), in the shape of Docker's
//! `GET /containers/{id}/stats`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Docker's "zero" time, sent as `read` for a container that is not running.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// USER_HZ: the unit of `cpuacct.stat` and `/proc/stat`.
const TICK_NS: u64 = 10_000_000;

/// One stats sample, as Docker's API sends it.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub read: String,
    pub preread: String,
    pub pids_stats: PidsStats,
    pub blkio_stats: BlkioStats,
    pub num_procs: u32,
    pub storage_stats: BTreeMap<String, u64>,
    pub cpu_stats: CpuStats,
    pub precpu_stats: CpuStats,
    pub memory_stats: MemoryStats,
    pub name: String,
    pub id: String,
    /// Per interface of the container's own network namespace (not `lo`); absent without
    /// one (`none`, `host`, `container:`), as dockerd leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub networks: Option<BTreeMap<String, NetworkStats>>,
}

/// One interface's counters, as `/proc/<pid>/net/dev` has them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NetworkStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// The interfaces of a `/proc/net/dev` table but loopback.
pub fn parse_net_dev(text: &str) -> BTreeMap<String, NetworkStats> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if name == "lo" || f.len() < 12 {
            continue;
        }
        out.insert(
            name.to_owned(),
            NetworkStats {
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_dropped: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_dropped: f[11],
            },
        );
    }
    out
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PidsStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// Docker sends every list, `null` when the host does not report it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BlkioStats {
    pub io_service_bytes_recursive: Option<Vec<BlkioEntry>>,
    pub io_serviced_recursive: Option<Vec<BlkioEntry>>,
    pub io_queue_recursive: Option<Vec<BlkioEntry>>,
    pub io_service_time_recursive: Option<Vec<BlkioEntry>>,
    pub io_wait_time_recursive: Option<Vec<BlkioEntry>>,
    pub io_merged_recursive: Option<Vec<BlkioEntry>>,
    pub io_time_recursive: Option<Vec<BlkioEntry>>,
    pub sectors_recursive: Option<Vec<BlkioEntry>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuStats {
    pub cpu_usage: CpuUsage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_cpu_usage: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_cpus: Option<u32>,
    pub throttling_data: Throttling,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUsage {
    pub total_usage: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percpu_usage: Option<Vec<u64>>,
    pub usage_in_kernelmode: u64,
    pub usage_in_usermode: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

/// Empty (`{}`) for a container that is not running, as Docker sends it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_usage: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

impl Stats {
    /// The sample of a container that is not running: zeros, as Docker sends them.
    pub fn idle(id: &str, name: &str) -> Self {
        Stats {
            read: ZERO_TIME.into(),
            preread: ZERO_TIME.into(),
            pids_stats: PidsStats::default(),
            blkio_stats: BlkioStats::default(),
            num_procs: 0,
            storage_stats: BTreeMap::new(),
            cpu_stats: CpuStats::default(),
            precpu_stats: CpuStats::default(),
            memory_stats: MemoryStats::default(),
            name: format!("/{}", name.trim_start_matches('/')),
            id: id.to_owned(),
            networks: None,
        }
    }

    /// Carries `prev`'s CPU figures and time over as this sample's `precpu_stats`/`preread`,
    /// from which clients compute the CPU percentage.
    pub fn after(mut self, prev: &Stats) -> Self {
        self.precpu_stats = prev.cpu_stats.clone();
        self.preread = prev.read.clone();
        self
    }
}

/// Where the host keeps its cgroups.
#[derive(Debug, Clone)]
pub enum Hierarchy {
    /// One mount per controller under the root (`<root>/memory/...`); cgroup v1 and hybrid.
    V1(PathBuf),
    /// The unified hierarchy alone at the root.
    V2(PathBuf),
}

impl Hierarchy {
    /// This host's layout under `/sys/fs/cgroup`.
    pub fn detect() -> Self {
        let root = PathBuf::from("/sys/fs/cgroup");
        // (Probed once per daemon, with the host's other cgroup features.)
        if crate::sysinfo::SysInfo::get().cgroup_v2 {
            Hierarchy::V2(root)
        } else {
            Hierarchy::V1(root)
        }
    }

    /// Reads a sample for the cgroup at `rel` (relative to each hierarchy's root). `None` when
    /// the cgroup does not exist (the container is not running).
    pub fn sample(&self, rel: &str, id: &str, name: &str) -> Option<Stats> {
        let rel = rel.trim_matches('/');
        let mut s = Stats::idle(id, name);
        match self {
            Hierarchy::V1(root) => {
                let dir = |c: &str| root.join(c).join(rel);
                if !dir("memory").exists() && !dir("cpuacct").exists() {
                    return None;
                }
                s.cpu_stats = cpu_v1(&dir("cpuacct"), &dir("cpu"));
                s.memory_stats = memory_v1(&dir("memory"));
                s.pids_stats = pids(&dir("pids"));
                // dockerd sends every list on cgroup v1, `[]` when there was no I/O.
                let throttle = |f: &str| Some(blkio_v1(&dir("blkio").join(f)).unwrap_or_default());
                let none = || Some(Vec::new());
                s.blkio_stats = BlkioStats {
                    io_service_bytes_recursive: throttle(
                        "blkio.throttle.io_service_bytes_recursive",
                    ),
                    io_serviced_recursive: throttle("blkio.throttle.io_serviced_recursive"),
                    io_queue_recursive: none(),
                    io_service_time_recursive: none(),
                    io_wait_time_recursive: none(),
                    io_merged_recursive: none(),
                    io_time_recursive: none(),
                    sectors_recursive: none(),
                };
            }
            Hierarchy::V2(root) => {
                let dir = root.join(rel);
                if !dir.join("cgroup.procs").exists() {
                    return None;
                }
                s.cpu_stats = cpu_v2(&dir);
                s.memory_stats = memory_v2(&dir);
                s.pids_stats = pids(&dir);
                s.blkio_stats.io_service_bytes_recursive = io_v2(&dir);
            }
        }
        s.cpu_stats.system_cpu_usage = system_cpu_usage();
        s.cpu_stats.online_cpus = Some(online_cpus());
        s.read = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        Some(s)
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn read_u64(path: &Path) -> Option<u64> {
    read(path)?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat).
fn kv(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn cpu_v1(cpuacct: &Path, cpu: &Path) -> CpuStats {
    let stat = read(&cpuacct.join("cpuacct.stat"))
        .map(|t| kv(&t))
        .unwrap_or_default();
    let percpu: Vec<u64> = read(&cpuacct.join("cpuacct.usage_percpu"))
        .map(|t| {
            t.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let throttle = read(&cpu.join("cpu.stat"))
        .map(|t| kv(&t))
        .unwrap_or_default();
    CpuStats {
        cpu_usage: CpuUsage {
            total_usage: read_u64(&cpuacct.join("cpuacct.usage")).unwrap_or(0),
            percpu_usage: (!percpu.is_empty()).then_some(percpu),
            usage_in_kernelmode: stat.get("system").copied().unwrap_or(0) * TICK_NS,
            usage_in_usermode: stat.get("user").copied().unwrap_or(0) * TICK_NS,
        },
        throttling_data: Throttling {
            periods: throttle.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: throttle.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: throttle.get("throttled_time").copied().unwrap_or(0),
        },
        ..Default::default()
    }
}

fn cpu_v2(dir: &Path) -> CpuStats {
    let stat = read(&dir.join("cpu.stat"))
        .map(|t| kv(&t))
        .unwrap_or_default();
    let us = |k: &str| stat.get(k).copied().unwrap_or(0) * 1000;
    CpuStats {
        cpu_usage: CpuUsage {
            total_usage: us("usage_usec"),
            percpu_usage: None,
            usage_in_kernelmode: us("system_usec"),
            usage_in_usermode: us("user_usec"),
        },
        throttling_data: Throttling {
            periods: stat.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: stat.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: us("throttled_usec"),
        },
        ..Default::default()
    }
}

/// A limit no lower than the host's memory means "no limit": Docker reports the host's.
fn effective_limit(limit: Option<u64>) -> Option<u64> {
    let host = host_memory();
    match (limit, host) {
        (Some(l), Some(h)) => Some(l.min(h)),
        (l, h) => l.or(h),
    }
}

/// The `memory.stat` keys dockerd reports on cgroup v1 (containerd's v1 metrics), each also
/// as `total_<key>`; the kernel's others (shmem, swap, workingset_*) it leaves out.
const V1_MEMORY_KEYS: &[&str] = &[
    "active_anon",
    "active_file",
    "cache",
    "dirty",
    "inactive_anon",
    "inactive_file",
    "mapped_file",
    "pgfault",
    "pgmajfault",
    "pgpgin",
    "pgpgout",
    "rss",
    "rss_huge",
    "unevictable",
    "writeback",
];

fn memory_v1(dir: &Path) -> MemoryStats {
    let keep = |k: &str| {
        matches!(k, "hierarchical_memory_limit" | "hierarchical_memsw_limit")
            || V1_MEMORY_KEYS.contains(&k.strip_prefix("total_").unwrap_or(k))
    };
    MemoryStats {
        usage: read_u64(&dir.join("memory.usage_in_bytes")),
        max_usage: read_u64(&dir.join("memory.max_usage_in_bytes")),
        stats: read(&dir.join("memory.stat")).map(|t| {
            let mut m = kv(&t);
            m.retain(|k, _| keep(k));
            m
        }),
        limit: effective_limit(read_u64(&dir.join("memory.limit_in_bytes"))),
    }
}

fn memory_v2(dir: &Path) -> MemoryStats {
    MemoryStats {
        usage: read_u64(&dir.join("memory.current")),
        max_usage: None,
        stats: read(&dir.join("memory.stat")).map(|t| kv(&t)),
        // "max" does not parse: no limit.
        limit: effective_limit(read_u64(&dir.join("memory.max"))),
    }
}

fn pids(dir: &Path) -> PidsStats {
    PidsStats {
        current: read_u64(&dir.join("pids.current")),
        // "max" does not parse: no limit, which Docker leaves out.
        limit: read_u64(&dir.join("pids.max")),
    }
}

/// `blkio.throttle.*_recursive` lines: `8:0 Read 4096`, one entry each as runc reads them;
/// the device-less grand `Total` line is dropped.
fn blkio_v1(path: &Path) -> Option<Vec<BlkioEntry>> {
    let text = read(path)?;
    let out: Vec<BlkioEntry> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (major, minor) = f.next()?.split_once(':')?;
            let op = f.next()?;
            let value = f.next()?.parse().ok()?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_owned(),
                value,
            })
        })
        .collect();
    (!out.is_empty()).then_some(out)
}

/// `io.stat` lines: `8:0 rbytes=4096 wbytes=0 rios=1 wios=0 ...`, as Docker maps them
/// (`read`/`write` entries of bytes).
fn io_v2(dir: &Path) -> Option<Vec<BlkioEntry>> {
    let text = read(&dir.join("io.stat"))?;
    let mut out = Vec::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let op = match k {
                "rbytes" => "read",
                "wbytes" => "write",
                _ => continue,
            };
            if let Ok(value) = v.parse() {
                out.push(BlkioEntry {
                    major,
                    minor,
                    op: op.into(),
                    value,
                });
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The host's CPU time in nanoseconds, as Docker computes it from the `cpu` line of
/// `/proc/stat` (user, nice, system, idle, iowait, irq, softirq).
fn system_cpu_usage() -> Option<u64> {
    let text = read(Path::new("/proc/stat"))?;
    parse_system_cpu(&text)
}

fn parse_system_cpu(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: u64 = line
        .split_whitespace()
        .skip(1)
        .take(7)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Some(ticks * TICK_NS)
}

fn online_cpus() -> u32 {
    // SAFETY: sysconf only reads a system setting.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as u32
}

fn host_memory() -> Option<u64> {
    let text = read(Path::new("/proc/meminfo"))?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_memory_stats_keep_dockerds_keys() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("memory.stat"),
            "cache 10\nrss 20\nshmem 5\nswap 0\nworkingset_refault_anon 1\n\
             hierarchical_memory_limit 99\ntotal_cache 10\ntotal_shmem 5\n",
        )
        .unwrap();
        let keys: Vec<String> = memory_v1(d.path()).stats.unwrap().into_keys().collect();
        assert_eq!(
            keys,
            ["cache", "hierarchical_memory_limit", "rss", "total_cache"]
        );
    }

    #[test]
    fn system_cpu_sums_the_first_seven_fields() {
        let s = "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 1 1 1 1 1 1 0 0 0\n";
        assert_eq!(parse_system_cpu(s), Some(28 * TICK_NS));
    }

    #[test]
    fn idle_sample_has_docker_zero_shape() {
        let v = serde_json::to_value(Stats::idle("abc", "web")).unwrap();
        assert_eq!(v["read"], ZERO_TIME);
        assert_eq!(v["name"], "/web");
        assert_eq!(v["memory_stats"], serde_json::json!({}));
        assert!(v["blkio_stats"]["io_service_bytes_recursive"].is_null());
        assert_eq!(v["cpu_stats"]["cpu_usage"]["total_usage"], 0);
        assert_eq!(v["pids_stats"], serde_json::json!({}));
    }

    #[test]
    fn net_dev_lines_parse_without_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0:     656       8    1    2    0     0          0         0       90       1    3    4    0     0       0          0
";
        let m = parse_net_dev(text);
        assert_eq!(m.len(), 1);
        assert_eq!(
            m["eth0"],
            NetworkStats {
                rx_bytes: 656,
                rx_packets: 8,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 90,
                tx_packets: 1,
                tx_errors: 3,
                tx_dropped: 4,
            }
        );
    }

    #[test]
    fn blkio_and_io_stat_lines_parse() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b");
        std::fs::write(
            &p,
            "8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n",
        )
        .unwrap();
        let e = blkio_v1(&p).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].op, "Write");
        assert_eq!(e[1].value, 512);
        std::fs::write(
            dir.path().join("io.stat"),
            "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n",
        )
        .unwrap();
        let e = io_v2(dir.path()).unwrap();
        assert_eq!(
            e.iter()
                .map(|x| (x.op.as_str(), x.value))
                .collect::<Vec<_>>(),
            vec![("read", 100), ("write", 200)]
        );
    }
}
