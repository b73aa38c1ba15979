//! `/_ping`, `/version`, `/info`, `/events`.

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;

use super::body::{self, empty, text};
use super::{Ctx, HandlerResult, Req, ok_json};
use crate::models::{Component, Platform, Version};

pub(super) fn ping(r: &Req) -> HandlerResult {
    let mut resp = if r.method == Method::HEAD {
        empty(StatusCode::OK)
    } else {
        text(StatusCode::OK, "OK")
    };
    let h = resp.headers_mut();
    h.insert(
        "Builder-Version",
        hyper::header::HeaderValue::from_static("1"),
    );
    h.insert(
        "Cache-Control",
        hyper::header::HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(
        "Pragma",
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    if r.method == Method::HEAD {
        h.insert(
            hyper::header::CONTENT_LENGTH,
            hyper::header::HeaderValue::from_static("0"),
        );
    }
    Ok(resp)
}

fn kernel() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub(super) fn version(ctx: &Ctx) -> HandlerResult {
    let mut details = std::collections::BTreeMap::new();
    details.insert("ApiVersion".to_owned(), crate::API_VERSION.to_owned());
    details.insert(
        "MinAPIVersion".to_owned(),
        crate::MIN_API_VERSION.to_owned(),
    );
    details.insert("Os".to_owned(), "linux".to_owned());
    details.insert("Arch".to_owned(), arch().to_owned());
    details.insert("KernelVersion".to_owned(), kernel());
    let v = Version {
        platform: Platform {
            name: "Berth".into(),
        },
        components: vec![Component {
            name: "Engine".into(),
            version: ctx.info.version.clone(),
            details,
        }],
        version: ctx.info.version.clone(),
        api_version: crate::API_VERSION.into(),
        min_api_version: crate::MIN_API_VERSION.into(),
        git_commit: option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown").into(),
        go_version: "n/a (Rust)".into(),
        os: "linux".into(),
        arch: arch().into(),
        kernel_version: kernel(),
        build_time: String::new(),
    };
    ok_json(&v)
}

fn meminfo_total() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "Linux".into())
}

fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

pub(super) fn info(ctx: &Ctx) -> HandlerResult {
    let e = &ctx.engine;
    let (total, running, paused, stopped) = e.counts();
    let images = e.images().list().map(|l| l.len()).unwrap_or(0);
    let cfg = e.config();
    let mut runtimes = serde_json::Map::new();
    for (name, kind) in &cfg.runtimes {
        let path = match kind {
            berth_runtime::RuntimeKind::Embedded => "berth-shim (embedded libcontainer)".to_owned(),
            berth_runtime::RuntimeKind::Binary { path, .. } => path.display().to_string(),
        };
        runtimes.insert(name.clone(), json!({ "path": path }));
    }
    let hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let mut warnings = ctx.info.warnings.clone();
    warnings.push(
        "WARNING: the default bridge network is loopback-only: containers on \"bridge\" get a private network namespace with only lo until Berth's networking lands".to_owned(),
    );
    let body = json!({
        "ID": format!("berth-{hostname}"),
        "Containers": total,
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {
            "Volume": [],
            "Network": ["host", "none", "bridge (loopback only)"],
            "Authorization": null,
            "Log": ["json-file", "none"]
        },
        "MemoryLimit": true,
        "SwapLimit": true,
        "KernelMemory": false,
        "KernelMemoryTCP": false,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "BridgeNfIptables": false,
        "BridgeNfIp6tables": false,
        "Debug": false,
        "NFd": std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
        "OomKillDisable": true,
        "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": kernel(),
        "OperatingSystem": os_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": []},
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": meminfo_total(),
        "GenericResources": null,
        "DockerRootDir": cfg.data_root.display().to_string(),
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": ctx.info.version,
        "Runtimes": runtimes,
        "DefaultRuntime": cfg.default_runtime,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "berth-init",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": warnings,
    });
    ok_json(&body)
}

/// `GET /system/df`: disk use of images and containers (no volumes or build cache yet).
pub(super) fn df(ctx: &Ctx) -> HandlerResult {
    let counts = ctx.engine.image_use_counts();
    let images = ctx.engine.image_list(&Default::default(), true)?;
    // Imported images have one layer each, shared with no other image.
    let layers_size: u64 = images.iter().map(|i| i.size).sum();
    let image_rows: Vec<_> = images
        .iter()
        .map(|i| super::images::summary(i, counts.get(&i.id).copied().unwrap_or(0) as i64, 0))
        .collect();
    let recs = ctx.engine.list(&berth_engine::ListOptions {
        all: true,
        ..Default::default()
    })?;
    let containers = super::containers::summaries(ctx, &recs, true);
    ok_json(&serde_json::json!({
        "LayersSize": layers_size,
        "Images": image_rows,
        "Containers": containers,
        "Volumes": [],
        "BuildCache": [],
    }))
}

pub(super) fn events(ctx: &Ctx, r: &Req) -> HandlerResult {
    let filters = r.filters()?;
    let until = r.int("until")?;
    let mut rx = ctx.engine.events().subscribe();
    let (resp, tx) = body::stream(StatusCode::OK, "application/json");
    tokio::spawn(async move {
        let deadline = until.map(|u| {
            let now = chrono::Utc::now().timestamp();
            std::time::Duration::from_secs((u - now).max(0) as u64)
        });
        let sleeper = async {
            match deadline {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleeper);
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = &mut sleeper => return,
                _ = tx.closed() => return,
            };
            let ev = match ev {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            let pass = |key: &str, value: &str| {
                filters
                    .get(key)
                    .is_none_or(|vals| vals.iter().any(|v| v == value))
            };
            let name = ev.actor.attributes.get("name").cloned().unwrap_or_default();
            let ok = pass("type", &ev.kind)
                && pass("event", &ev.action)
                && filters.get("container").is_none_or(|vals| {
                    vals.iter()
                        .any(|v| ev.actor.id.starts_with(v.as_str()) || *v == name)
                })
                && filters.get("image").is_none_or(|vals| {
                    vals.iter()
                        .any(|v| ev.actor.attributes.get("image") == Some(v))
                });
            if !ok {
                continue;
            }
            let mut line = serde_json::to_vec(&ev).unwrap_or_default();
            line.push(b'\n');
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
        }
    });
    Ok(resp)
}
