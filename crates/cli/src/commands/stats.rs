//! `stats`: containers' resource usage, from the daemon's samples, computed and shown as
//! Docker's CLI does (CPU % from the sample and its baseline, memory without the inactive
//! page cache, block I/O summed by direction).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use berth_api::client::{Client, RequestBody, query};
use serde_json::{Value, json};

use super::seg;
use crate::args::StatsArgs;
use crate::error::{CliError, Result};
use crate::format::{bytes_size, human_size_prec, short_id};
use crate::template::render_rows;

const DEFAULT_FORMAT: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

fn headers() -> Value {
    json!({
        "Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
        "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
        "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
    })
}

fn u(v: &Value) -> f64 {
    v.as_u64().unwrap_or(0) as f64
}

/// The template context of one row: Docker's field names and formatting.
pub fn row(container: &str, s: &Value, trunc: bool) -> Value {
    let id = s["id"].as_str().unwrap_or_default();
    let name = s["name"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches('/');
    let cpu = &s["cpu_stats"];
    let pre = &s["precpu_stats"];
    let cpu_delta = u(&cpu["cpu_usage"]["total_usage"]) - u(&pre["cpu_usage"]["total_usage"]);
    let sys_delta = u(&cpu["system_cpu_usage"]) - u(&pre["system_cpu_usage"]);
    let cpus = match cpu["online_cpus"].as_u64() {
        Some(n) if n > 0 => n as f64,
        _ => cpu["cpu_usage"]["percpu_usage"]
            .as_array()
            .map_or(1.0, |a| a.len().max(1) as f64),
    };
    let cpu_perc = if cpu_delta > 0.0 && sys_delta > 0.0 {
        cpu_delta / sys_delta * cpus * 100.0
    } else {
        0.0
    };
    let mem = &s["memory_stats"];
    let usage = u(&mem["usage"]);
    // cgroup v1 names it total_inactive_file, v2 inactive_file.
    let inactive = ["total_inactive_file", "inactive_file"]
        .iter()
        .map(|k| u(&mem["stats"][*k]))
        .find(|v| *v > 0.0 && *v < usage)
        .unwrap_or(0.0);
    let used = usage - inactive;
    let limit = u(&mem["limit"]);
    let mem_perc = if limit > 0.0 {
        used / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    if let Some(nets) = s["networks"].as_object() {
        for n in nets.values() {
            rx += u(&n["rx_bytes"]);
            tx += u(&n["tx_bytes"]);
        }
    }
    let (mut read, mut write) = (0.0, 0.0);
    for e in s["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => read += u(&e["value"]),
            Some("write") => write += u(&e["value"]),
            _ => {}
        }
    }
    let running = s["read"].as_str().is_some_and(|r| !r.starts_with("0001-"));
    let (mem_usage, pids) = if running {
        (
            format!("{} / {}", bytes_size(used), bytes_size(limit)),
            s["pids_stats"]["current"].as_u64().unwrap_or(0).to_string(),
        )
    } else {
        ("0B / 0B".to_owned(), "0".to_owned())
    };
    json!({
        "Container": container,
        "ID": if trunc { short_id(id) } else { id.to_owned() },
        "Name": if name.is_empty() { "--" } else { name },
        "CPUPerc": format!("{cpu_perc:.2}%"),
        "MemUsage": mem_usage,
        "MemPerc": format!("{mem_perc:.2}%"),
        "NetIO": format!("{} / {}", human_size_prec(rx, 3), human_size_prec(tx, 3)),
        "BlockIO": format!("{} / {}", human_size_prec(read, 3), human_size_prec(write, 3)),
        "PIDs": pids,
    })
}

/// The containers to watch: those named, or every running one (every one with `-a`).
async fn targets(client: &Client, a: &StatsArgs) -> Result<Vec<String>> {
    if !a.containers.is_empty() {
        return Ok(a.containers.clone());
    }
    let all = if a.all { "1" } else { "0" };
    let list: Vec<Value> = client
        .get(&format!("/containers/json?{}", query(&[("all", all)])))
        .await?;
    Ok(list
        .iter()
        .filter_map(|c| c["Id"].as_str().map(str::to_owned))
        .collect())
}

/// `stats [OPTIONS] [CONTAINER...]`.
pub async fn stats(client: &Client, a: StatsArgs) -> Result<i32> {
    let format = match a.format.as_deref() {
        Some(f) if !f.is_empty() && f != "table" => f.to_owned(),
        _ => DEFAULT_FORMAT.to_owned(),
    };
    let trunc = !a.no_trunc;
    let names = targets(client, &a).await?;
    if a.no_stream {
        let samples = futures_util::future::join_all(names.iter().map(|n| async move {
            let path = format!("/containers/{}/stats?{}", seg(n), query(&[("stream", "0")]));
            client.get::<Value>(&path).await
        }))
        .await;
        let mut rows = Vec::new();
        let mut failed = None;
        for (n, s) in names.iter().zip(samples) {
            match s {
                Ok(s) => rows.push(row(n, &s, trunc)),
                Err(e) => failed = Some(CliError::from(e)),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        out!("{}", render_rows(&format, &headers(), &rows)?);
        return Ok(0);
    }
    // Streaming: one reader per container keeps its latest row; the screen is redrawn each
    // second, as Docker's CLI does.
    let latest: Arc<Mutex<BTreeMap<usize, Value>>> = Arc::default();
    let mut streams = Vec::new();
    for n in &names {
        let path = format!("/containers/{}/stats?{}", seg(n), query(&[("stream", "1")]));
        streams.push(
            client
                .stream(hyper::Method::GET, &path, RequestBody::Empty)
                .await?,
        );
    }
    let mut readers = Vec::new();
    for (i, (n, mut s)) in names.iter().cloned().zip(streams).enumerate() {
        let latest = latest.clone();
        readers.push(tokio::spawn(async move {
            while let Ok(Some(v)) = s.next_json::<Value>().await {
                latest
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(i, row(&n, &v, trunc));
            }
            latest.lock().unwrap_or_else(|e| e.into_inner()).remove(&i);
        }));
    }
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        let rows: Vec<Value> = latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        out!("\x1b[2J\x1b[H{}", render_rows(&format, &headers(), &rows)?);
        if readers.iter().all(|r| r.is_finished()) {
            return Ok(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_compute_like_docker() {
        let s = json!({
            "id": "0123456789abcdef0123", "name": "/web", "read": "2026-11-23T10:00:01Z",
            "cpu_stats": {"cpu_usage": {"total_usage": 300_000_000u64}, "system_cpu_usage": 2_000_000_000u64, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100_000_000u64}, "system_cpu_usage": 1_000_000_000u64},
            "memory_stats": {"usage": 3_145_728u64, "limit": 1_073_741_824u64, "stats": {"total_inactive_file": 1_048_576u64}},
            "pids_stats": {"current": 3},
            "blkio_stats": {"io_service_bytes_recursive": [
                {"major": 8, "minor": 0, "op": "Read", "value": 4096},
                {"major": 8, "minor": 0, "op": "Write", "value": 1_500_000},
                {"major": 8, "minor": 0, "op": "Total", "value": 1_504_096}]},
        });
        let r = row("web", &s, true);
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Name"], "web");
        // (200M / 1000M) * 2 CPUs.
        assert_eq!(r["CPUPerc"], "40.00%");
        assert_eq!(r["MemUsage"], "2MiB / 1GiB");
        assert_eq!(r["MemPerc"], "0.20%");
        assert_eq!(r["BlockIO"], "4.1kB / 1.5MB");
        assert_eq!(r["NetIO"], "0B / 0B");
        assert_eq!(r["PIDs"], "3");
    }

    #[test]
    fn a_stopped_container_reads_as_zeros() {
        let s =
            json!({"id": "abc", "name": "/x", "read": "0001-01-01T00:00:00Z", "memory_stats": {}});
        let r = row("x", &s, true);
        assert_eq!(r["CPUPerc"], "0.00%");
        assert_eq!(r["MemUsage"], "0B / 0B");
        assert_eq!(r["PIDs"], "0");
    }
}
