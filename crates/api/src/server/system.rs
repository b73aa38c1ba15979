//! `/_ping`, `/version`, `/info`, `/events`.

use std::collections::HashMap;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;

use super::body::{self, empty, text};
use super::{ApiError, Ctx, HandlerResult, Req, ok_json};
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
        // The type GET's body would have, as dockerd says it.
        h.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
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
    // The keys `docker version` prints for the engine.
    let commit = option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown");
    details.insert("GitCommit".to_owned(), commit.to_owned());
    details.insert("GoVersion".to_owned(), "n/a (Rust)".to_owned());
    details.insert("BuildTime".to_owned(), String::new());
    details.insert("Experimental".to_owned(), "false".to_owned());
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
        git_commit: commit.into(),
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

pub(super) fn info(ctx: &Ctx, r: &Req) -> HandlerResult {
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
    warnings.extend(ctx.engine.network_warnings());
    let sys = berth_engine::sysinfo::SysInfo::get();
    if !sys.swap_limit {
        warnings.push("WARNING: No swap limit support".to_owned());
    }
    if !sys.oom_kill_disable && !sys.cgroup_v2 {
        warnings.push("WARNING: No oom kill disable support".to_owned());
    }
    let bridged = ctx.engine.default_bridge_active();
    if !bridged {
        warnings.push(
            "WARNING: the default bridge network is off or unavailable: containers on \"bridge\" get a private network namespace with only lo".to_owned(),
        );
    }
    let body = json!({
        "ID": ctx.engine.daemon_id(),
        "Containers": total,
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "null"],
            "Authorization": null,
            "Log": ["json-file", "none"]
        },
        "MemoryLimit": true,
        "SwapLimit": sys.swap_limit,
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
        "OomKillDisable": sys.oom_kill_disable,
        "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": if sys.cgroup_v2 { "2" } else { "1" },
        "NEventsListener": 0,
        "KernelVersion": kernel(),
        "OperatingSystem": os_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": ctx.engine.registry_info(),
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
        // null without warnings, as dockerd sends it.
        "Warnings": (!warnings.is_empty()).then_some(warnings),
    });
    let mut body = body;
    if let Some(o) = body.as_object_mut() {
        // Gone from the API in 1.44 (kernel memory limits, br_netfilter flags).
        if r.at_least(1, 44) {
            for k in ["KernelMemory", "BridgeNfIptables", "BridgeNfIp6tables"] {
                o.remove(k);
            }
        }
        // 1.49: the firewall backend; Berth's is one nftables table of its own. Non-
        // distributable artifacts are gone from the registry settings.
        if r.at_least(1, 49) {
            if let Some(rc) = o.get_mut("RegistryConfig").and_then(|v| v.as_object_mut()) {
                rc.remove("AllowNondistributableArtifactsCIDRs");
                rc.remove("AllowNondistributableArtifactsHostnames");
            }
            o.insert(
                "FirewallBackend".into(),
                json!({"Driver": "nftables", "Info": [["Table", "inet berth"]]}),
            );
        }
    }
    ok_json(&body)
}

/// `GET /system/df`: disk use of images, containers, volumes and the build cache.
pub(super) fn df(ctx: &Ctx, r: &Req) -> HandlerResult {
    let counts = ctx.engine.image_use_counts();
    let images = ctx.engine.image_list(&Default::default(), true)?;
    // Layers are shared between images: each counts once in the total, and towards an
    // image's shared size when another image has it too.
    let mut users: std::collections::HashMap<&str, (u64, usize)> = Default::default();
    for i in &images {
        for (c, size) in i.chain_ids.iter().zip(&i.layer_sizes) {
            users.entry(c.as_str()).or_insert((*size, 0)).1 += 1;
        }
    }
    let layers_size: u64 = users.values().map(|(size, _)| size).sum();
    let image_rows: Vec<_> = images
        .iter()
        .map(|i| {
            let shared: u64 = i
                .chain_ids
                .iter()
                .filter_map(|c| users.get(c.as_str()))
                .filter(|(_, n)| *n > 1)
                .map(|(size, _)| size)
                .sum();
            let used = counts.get(&i.id).copied().unwrap_or(0) as i64;
            super::images::summary(i, used, shared as i64, r)
        })
        .collect();
    let recs = ctx.engine.list(&berth_engine::ListOptions {
        all: true,
        ..Default::default()
    })?;
    let containers = super::containers::summaries(ctx, &recs, true, r);
    let volumes: Vec<_> = ctx
        .engine
        .volume_usage()
        .iter()
        .map(|u| super::volumes::view(ctx, &u.volume, Some((u.size, u.ref_count))))
        .collect();
    let time = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let cache: Vec<_> = ctx
        .engine
        .build_cache_usage()?
        .into_iter()
        .map(|(key, e)| {
            serde_json::json!({
                "ID": &key[..25.min(key.len())],
                "Parents": null,
                "Type": "regular",
                "Description": e.description.chars().take(120).collect::<String>(),
                "InUse": false,
                "Shared": false,
                "Size": e.size,
                "CreatedAt": time(e.created),
                "LastUsedAt": time(e.last_used),
                "UsageCount": 1,
            })
        })
        .collect();
    let builder_size: u64 = cache.iter().filter_map(|c| c["Size"].as_u64()).sum();
    let mut out = serde_json::json!({
        "LayersSize": layers_size,
        "Images": image_rows,
        "Containers": containers,
        "Volumes": volumes,
        // dockerd sends null, not [], when there is no build cache.
        "BuildCache": (!cache.is_empty()).then_some(cache),
    });
    // Deprecated at 1.42: the build cache's total, which `BuildCache` now itemizes.
    if !r.at_least(1, 42) {
        out["BuilderSize"] = builder_size.into();
    }
    ok_json(&out)
}

/// Whether an event passes `/events` filters (type, event, container, image).
fn event_matches(ev: &berth_engine::events::Event, filters: &HashMap<String, Vec<String>>) -> bool {
    let pass = |key: &str, value: &str| {
        filters
            .get(key)
            .is_none_or(|vals| vals.iter().any(|v| v == value))
    };
    let name = ev.actor.attributes.get("name").cloned().unwrap_or_default();
    // "exec_start: sh" and "health_status: healthy" match event=exec_start and
    // event=health_status, as in Docker.
    let action_base = ev.action.split(':').next().unwrap_or_default();
    pass("type", &ev.kind)
        && (pass("event", &ev.action) || pass("event", action_base))
        && filters.get("container").is_none_or(|vals| {
            vals.iter()
                .any(|v| ev.actor.id.starts_with(v.as_str()) || *v == name)
        })
        && filters.get("image").is_none_or(|vals| {
            vals.iter()
                .any(|v| ev.actor.attributes.get("image") == Some(v))
        })
        && filters.get("volume").is_none_or(|vals| {
            ev.kind == "volume" && vals.contains(&ev.actor.id)
        })
        // A network by id (or its prefix) or name.
        && filters.get("network").is_none_or(|vals| {
            ev.kind == "network"
                && vals.iter().any(|v| {
                    ev.actor.id.starts_with(v.as_str())
                        || ev.actor.attributes.get("name") == Some(v)
                })
        })
        && filters.get("daemon").is_none_or(|vals| {
            ev.kind == "daemon"
                && vals.iter().any(|v| {
                    ev.actor.id == *v || ev.actor.attributes.get("name") == Some(v)
                })
        })
        && pass("scope", &ev.scope)
        // Every `label` filter must hold: `key` present, or `key=value`.
        && filters.get("label").is_none_or(|vals| {
            vals.iter().all(|v| match v.split_once('=') {
                Some((k, val)) => ev.actor.attributes.get(k).is_some_and(|x| x == val),
                None => ev.actor.attributes.contains_key(v.as_str()),
            })
        })
}

/// `GET /events`: past events from `since`, then live ones until `until` (or the client
/// goes); both take Unix times (fractions allowed), RFC 3339 times or Go durations.
pub(super) fn events(ctx: &Ctx, r: &Req) -> HandlerResult {
    let filters = r.filters()?;
    let now = chrono::Utc::now();
    let time = |key: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        match r.q(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => crate::timefmt::parse_filter_time(v, now)
                .map(Some)
                .ok_or_else(|| ApiError::bad(format!("invalid value for {key}: {v}"))),
        }
    };
    let since = time("since")?;
    let until = time("until")?;
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(ApiError::bad(format!(
                "`since` time ({}) cannot be after `until` time ({})",
                r.q("since").unwrap_or_default(),
                r.q("until").unwrap_or_default()
            )));
        }
    }
    let until_nano = until.and_then(|u| u.timestamp_nanos_opt());
    let (past, mut rx) = match since {
        Some(s) => ctx
            .engine
            .events()
            .subscribe_since(s.timestamp_nanos_opt().unwrap_or(0)),
        None => (Vec::new(), ctx.engine.events().subscribe()),
    };
    let (resp, tx) = body::stream(StatusCode::OK, "application/json");
    tokio::spawn(async move {
        let send = |ev: &berth_engine::events::Event| {
            let mut line = serde_json::to_vec(ev).unwrap_or_default();
            line.push(b'\n');
            Bytes::from(line)
        };
        for ev in past.iter().filter(|e| event_matches(e, &filters)) {
            if until_nano.is_some_and(|u| ev.time_nano > u) {
                return;
            }
            if tx.send(send(ev)).await.is_err() {
                return;
            }
        }
        let deadline = until.map(|u| {
            (u - chrono::Utc::now())
                .to_std()
                .unwrap_or(std::time::Duration::ZERO)
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
            if !event_matches(&ev, &filters) {
                continue;
            }
            if tx.send(send(&ev)).await.is_err() {
                return;
            }
        }
    });
    Ok(resp)
}
