//! `version` and `info`.

use berth_api::client::Client;
use berth_api::models::Version;
use serde_json::{Value, json};

use crate::args::FormatArgs;
use crate::error::{CliError, Result};
use crate::format::{TabWriter, bytes_size};
use crate::template::{Template, preprocess};

/// Go's names for our architecture.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn client_info(api_version: &str) -> Value {
    json!({
        "Platform": {"Name": "Berth"},
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": api_version,
        "DefaultAPIVersion": berth_api::API_VERSION,
        "GitCommit": option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown"),
        "GoVersion": "n/a (Rust)",
        "Os": std::env::consts::OS,
        "Arch": go_arch(),
        "BuildTime": option_env!("BERTH_BUILD_TIME").unwrap_or("unknown"),
        "Context": "default",
    })
}

fn run_format(format: &str, data: &Value) -> Result<()> {
    let (src, _) = preprocess(format);
    outln!("{}", Template::parse(&src)?.render(data)?);
    Ok(())
}

/// `version`.
pub async fn version(client: &Client, a: FormatArgs) -> Result<i32> {
    let server = client.get::<Version>("/version").await;
    let api = match (&server, client.api_version().await) {
        (Ok(_), Ok(v)) => v.to_owned(),
        _ => berth_api::API_VERSION.to_owned(),
    };
    let cinfo = client_info(&api);
    if let Some(f) = a.format.as_deref().filter(|f| !f.is_empty()) {
        let server_v = match &server {
            Ok(v) => serde_json::to_value(v).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        run_format(f, &json!({"Client": cinfo, "Server": server_v}))?;
        return server.map(|_| 0).map_err(CliError::from);
    }
    let mut text = String::from("Client:\n");
    let mut line = |k: &str, v: &str| text.push_str(&format!(" {k}:\t{v}\n"));
    line("Version", env!("CARGO_PKG_VERSION"));
    let api_line = if api != berth_api::API_VERSION {
        format!("{api} (downgraded from {})", berth_api::API_VERSION)
    } else {
        api.clone()
    };
    line("API version", &api_line);
    line(
        "Git commit",
        cinfo["GitCommit"].as_str().unwrap_or_default(),
    );
    line("Built", cinfo["BuildTime"].as_str().unwrap_or_default());
    line(
        "OS/Arch",
        &format!("{}/{}", std::env::consts::OS, go_arch()),
    );
    line("Context", "default");
    if let Ok(v) = &server {
        {
            let name = if v.platform.name.is_empty() {
                String::new()
            } else {
                format!(" {}", v.platform.name)
            };
            text.push_str(&format!("\nServer:{name}\n"));
            let engine_in_components = v.components.iter().any(|c| c.name == "Engine");
            if !engine_in_components {
                text.push_str(" Engine:\n");
                text.push_str(&format!("  Version:\t{}\n", v.version));
                text.push_str(&format!(
                    "  API version:\t{} (minimum version {})\n",
                    v.api_version, v.min_api_version
                ));
                text.push_str(&format!("  Git commit:\t{}\n", v.git_commit));
                text.push_str(&format!("  Built:\t{}\n", v.build_time));
                text.push_str(&format!("  OS/Arch:\t{}/{}\n", v.os, v.arch));
                text.push_str("  Experimental:\tfalse\n");
            }
            for c in &v.components {
                text.push_str(&format!(" {}:\n", c.name));
                if c.name == "Engine" {
                    let d = |k: &str| c.details.get(k).cloned().unwrap_or_default();
                    text.push_str(&format!("  Version:\t{}\n", c.version));
                    text.push_str(&format!(
                        "  API version:\t{} (minimum version {})\n",
                        d("ApiVersion"),
                        d("MinAPIVersion")
                    ));
                    text.push_str(&format!("  Git commit:\t{}\n", d("GitCommit")));
                    text.push_str(&format!("  Built:\t{}\n", d("BuildTime")));
                    text.push_str(&format!("  OS/Arch:\t{}/{}\n", d("Os"), d("Arch")));
                    text.push_str(&format!("  Experimental:\t{}\n", d("Experimental")));
                } else {
                    text.push_str(&format!("  Version:\t{}\n", c.version));
                    for (k, v) in &c.details {
                        text.push_str(&format!("  {k}:\t{v}\n"));
                    }
                }
            }
        }
    }
    let mut tw = TabWriter::new(20, 1);
    tw.write_text(&text);
    out!("{}", tw.render());
    server.map(|_| 0).map_err(CliError::from)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn n(v: &Value, k: &str) -> i64 {
    v.get(k).and_then(Value::as_i64).unwrap_or(0)
}

/// The server half of `info`, as Docker lays it out.
pub fn info_text(v: &Value) -> String {
    let mut o = String::new();
    let mut p = |line: String| {
        o.push_str(&line);
        o.push('\n');
    };
    p(format!(" Containers: {}", n(v, "Containers")));
    p(format!("  Running: {}", n(v, "ContainersRunning")));
    p(format!("  Paused: {}", n(v, "ContainersPaused")));
    p(format!("  Stopped: {}", n(v, "ContainersStopped")));
    p(format!(" Images: {}", n(v, "Images")));
    p(format!(" Server Version: {}", s(v, "ServerVersion")));
    p(format!(" Storage Driver: {}", s(v, "Driver")));
    if let Some(status) = v.get("DriverStatus").and_then(Value::as_array) {
        for pair in status {
            if let Some([k, val]) = pair.as_array().map(Vec::as_slice) {
                p(format!(
                    "  {}: {}",
                    k.as_str().unwrap_or_default(),
                    val.as_str().unwrap_or_default()
                ));
            }
        }
    }
    p(format!(" Logging Driver: {}", s(v, "LoggingDriver")));
    p(format!(" Cgroup Driver: {}", s(v, "CgroupDriver")));
    p(format!(" Cgroup Version: {}", s(v, "CgroupVersion")));
    if let Some(plugins) = v.get("Plugins").and_then(Value::as_object) {
        p(" Plugins:".to_owned());
        for (k, list) in plugins {
            let items: Vec<&str> = list
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !items.is_empty() {
                p(format!("  {k}: {}", items.join(" ")));
            }
        }
    }
    if let Some(rt) = v.get("Runtimes").and_then(Value::as_object) {
        let names: Vec<&str> = rt.keys().map(String::as_str).collect();
        p(format!(" Runtimes: {}", names.join(" ")));
    }
    p(format!(" Default Runtime: {}", s(v, "DefaultRuntime")));
    p(format!(" Init Binary: {}", s(v, "InitBinary")));
    if let Some(sec) = v.get("SecurityOptions").and_then(Value::as_array) {
        p(" Security Options:".to_owned());
        for opt in sec.iter().filter_map(Value::as_str) {
            let mut name = "";
            let mut rest = Vec::new();
            for kv in opt.split(',') {
                match kv.split_once('=') {
                    Some(("name", v)) => name = v,
                    Some((k, v)) => rest.push((k, v)),
                    None => name = kv,
                }
            }
            p(format!("  {name}"));
            for (k, val) in rest {
                let mut k = k.to_owned();
                if let Some(first) = k.get(..1) {
                    k = format!("{}{}", first.to_uppercase(), &k[1..]);
                }
                p(format!("   {k}: {val}"));
            }
        }
    }
    p(format!(" Kernel Version: {}", s(v, "KernelVersion")));
    p(format!(" Operating System: {}", s(v, "OperatingSystem")));
    p(format!(" OSType: {}", s(v, "OSType")));
    p(format!(" Architecture: {}", s(v, "Architecture")));
    p(format!(" CPUs: {}", n(v, "NCPU")));
    p(format!(
        " Total Memory: {}",
        bytes_size(n(v, "MemTotal") as f64)
    ));
    p(format!(" Name: {}", s(v, "Name")));
    p(format!(" ID: {}", s(v, "ID")));
    p(format!(" Docker Root Dir: {}", s(v, "DockerRootDir")));
    p(format!(
        " Debug Mode: {}",
        v.get("Debug").and_then(Value::as_bool).unwrap_or(false)
    ));
    p(format!(
        " Experimental: {}",
        v.get("ExperimentalBuild")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    ));
    if let Some(cidrs) = v
        .pointer("/RegistryConfig/InsecureRegistryCIDRs")
        .and_then(Value::as_array)
    {
        p(" Insecure Registries:".to_owned());
        for c in cidrs.iter().filter_map(Value::as_str) {
            p(format!("  {c}"));
        }
    }
    p(format!(
        " Live Restore Enabled: {}",
        v.get("LiveRestoreEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    ));
    o
}

/// `system df`: Docker's summary table of disk use.
pub async fn df(client: &Client, a: FormatArgs) -> Result<i32> {
    let v: Value = client.get("/system/df").await?;
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let n = |x: &Value, k: &str| x[k].as_i64().unwrap_or(0).max(0) as f64;
    let images = list("Images");
    let containers = list("Containers");
    let volumes = list("Volumes");
    let vol_size = |x: &Value| x["UsageData"]["Size"].as_i64().unwrap_or(0).max(0) as f64;
    let vol_refs = |x: &Value| x["UsageData"]["RefCount"].as_i64().unwrap_or(0);
    let active_volumes = volumes.iter().filter(|v| vol_refs(v) > 0).count();
    let volumes_size: f64 = volumes.iter().map(vol_size).fold(0.0, |a, b| a + b);
    let idle_volumes: f64 = volumes
        .iter()
        .filter(|v| vol_refs(v) == 0)
        .map(vol_size)
        .fold(0.0, |a, b| a + b);
    let active_images = images.iter().filter(|i| n(i, "Containers") > 0.0).count();
    let unused: f64 = images
        .iter()
        .filter(|i| n(i, "Containers") == 0.0)
        .map(|i| n(i, "Size") - n(i, "SharedSize"))
        // Not .sum(): an empty float sum is -0.0, which prints as "-0%".
        .fold(0.0, |a, b| a + b);
    let layers = v["LayersSize"].as_i64().unwrap_or(0) as f64;
    let running = containers
        .iter()
        .filter(|c| c["State"] == "running" || c["State"] == "paused")
        .count();
    let rw: f64 = containers
        .iter()
        .map(|c| n(c, "SizeRw"))
        .fold(0.0, |a, b| a + b);
    let idle_rw: f64 = containers
        .iter()
        .filter(|c| c["State"] != "running" && c["State"] != "paused")
        .map(|c| n(c, "SizeRw"))
        .fold(0.0, |a, b| a + b);
    let pct = |part: f64, whole: f64| {
        if whole > 0.0 {
            format!(" ({:.0}%)", part / whole * 100.0)
        } else {
            " (0%)".to_owned()
        }
    };
    let size = crate::format::human_size;
    let cache = v["BuildCache"].as_array().cloned().unwrap_or_default();
    let cache_size: f64 = cache
        .iter()
        .filter_map(|c| c["Size"].as_f64())
        .fold(0.0, |a, b| a + b);
    let rows = [
        (
            "Images",
            images.len(),
            active_images,
            size(layers),
            format!("{}{}", size(unused), pct(unused, layers)),
        ),
        (
            "Containers",
            containers.len(),
            running,
            size(rw),
            format!("{}{}", size(idle_rw), pct(idle_rw, rw)),
        ),
        (
            "Local Volumes",
            volumes.len(),
            active_volumes,
            size(volumes_size),
            // Docker's CLI gives volumes a percentage only when they hold anything.
            if volumes_size > 0.0 {
                format!("{}{}", size(idle_volumes), pct(idle_volumes, volumes_size))
            } else {
                size(idle_volumes)
            },
        ),
        (
            "Build Cache",
            cache.len(),
            0,
            size(cache_size),
            size(cache_size),
        ),
    ];
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(t, total, active, sz, recl)| {
            serde_json::json!({"Type": t, "TotalCount": total.to_string(), "Active": active.to_string(), "Size": sz, "Reclaimable": recl})
        })
        .collect();
    let format = match a.format.as_deref() {
        Some(f) if !f.is_empty() && f != "table" => f.to_owned(),
        _ => {
            "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}".to_owned()
        }
    };
    let headers = serde_json::json!({"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"});
    out!(
        "{}",
        crate::template::render_rows(&format, &headers, &rows)?
    );
    Ok(0)
}

/// The docker CLI's event time: nine fraction digits, `Z` for UTC.
fn go_rfc3339_nano(t: &chrono::DateTime<chrono::Local>) -> String {
    let frac = format!(".{:09}", t.timestamp_subsec_nanos());
    let zone = if t.offset().local_minus_utc() == 0 {
        "Z".to_owned()
    } else {
        t.format("%:z").to_string()
    };
    format!("{}{frac}{zone}", t.format("%Y-%m-%dT%H:%M:%S"))
}

/// `events`: one line per event, as Docker's CLI prints them
/// (`<time> <type> <action> <id> (<attributes>)`), or through `--format`.
pub async fn events(client: &Client, a: crate::args::EventsArgs) -> Result<i32> {
    let now = chrono::Utc::now().timestamp();
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(s) = &a.since {
        q.push(("since", crate::opts::parse_time_arg(s, now)));
    }
    if let Some(u) = &a.until {
        q.push(("until", crate::opts::parse_time_arg(u, now)));
    }
    if let Some(f) = crate::opts::parse_filters(&a.filter)? {
        q.push(("filters", f));
    }
    let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut stream = client
        .stream(
            hyper::Method::GET,
            &format!("/events?{}", berth_api::client::query(&pairs)),
            berth_api::client::RequestBody::Empty,
        )
        .await?;
    let template = match a.format.as_deref() {
        Some(f) if !f.is_empty() => Some(crate::template::Template::parse(
            &crate::template::preprocess(f).0,
        )?),
        _ => None,
    };
    while let Some(ev) = stream.next_json::<Value>().await? {
        let line = match &template {
            Some(t) => t.render(&ev)?,
            None => {
                let nanos = ev["timeNano"].as_i64().unwrap_or(0);
                let t = chrono::DateTime::from_timestamp(
                    nanos.div_euclid(1_000_000_000),
                    nanos.rem_euclid(1_000_000_000) as u32,
                )
                .unwrap_or_default()
                .with_timezone(&chrono::Local);
                let attrs: Vec<String> = ev["Actor"]["Attributes"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect();
                format!(
                    "{} {} {} {} ({})",
                    go_rfc3339_nano(&t),
                    ev["Type"].as_str().unwrap_or_default(),
                    ev["Action"].as_str().unwrap_or_default(),
                    ev["Actor"]["ID"].as_str().unwrap_or_default(),
                    attrs.join(", ")
                )
            }
        };
        outln!("{line}");
    }
    Ok(0)
}

/// Asks Docker's question on stderr; true for a yes.
pub fn confirm(warning: &str) -> bool {
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
}

/// A "Deleted ...:" block and its blank line, empty when nothing was deleted.
pub fn deleted_section(title: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut s = format!("{title}\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.push('\n');
    s
}

pub fn filters_query(path: &str, filter: &[String], extra: Option<(&str, &str)>) -> Result<String> {
    let mut f: Vec<String> = filter.to_vec();
    if let Some((k, v)) = extra {
        f.push(format!("{k}={v}"));
    }
    Ok(match crate::opts::parse_filters(&f)? {
        Some(q) => format!("{path}?{}", berth_api::client::query(&[("filters", &q)])),
        None => path.to_owned(),
    })
}

/// `POST /containers/prune`: the removed ids and the space freed.
pub async fn prune_containers(client: &Client, filter: &[String]) -> Result<(Vec<String>, u64)> {
    let v: Value = client
        .post(
            &filters_query("/containers/prune", filter, None)?,
            None::<&Value>,
        )
        .await?;
    let ids = v["ContainersDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect();
    Ok((ids, v["SpaceReclaimed"].as_u64().unwrap_or(0)))
}

/// `system prune` (containers, networks, images, build cache) or `image prune` (images).
pub async fn prune(client: &Client, a: crate::args::SystemPruneArgs, system: bool) -> Result<i32> {
    let images_line = if a.all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    };
    let warning = if system {
        let volumes_line = if a.volumes {
            "  - anonymous volumes not used by at least one container\n"
        } else {
            ""
        };
        format!(
            "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n{volumes_line}  - {images_line}\n  - unused build cache\n"
        )
    } else if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
            .to_owned()
    } else {
        "WARNING! This will remove all dangling images.".to_owned()
    };
    if !a.force && !confirm(&warning) {
        return Ok(0);
    }
    let mut out = String::new();
    let mut space = 0;
    if system {
        let (ids, s) = prune_containers(client, &a.filter).await?;
        out.push_str(&deleted_section("Deleted Containers:", &ids));
        space += s;
        let _: Value = client
            .post(
                &filters_query("/networks/prune", &a.filter, None)?,
                None::<&Value>,
            )
            .await?;
    }
    if system && a.volumes {
        let (names, s) = super::volume::prune_volumes(client, &a.filter, None).await?;
        out.push_str(&deleted_section("Deleted Volumes:", &names));
        space += s;
    }
    let dangling = if a.all { "false" } else { "true" };
    let v: Value = client
        .post(
            &filters_query("/images/prune", &a.filter, Some(("dangling", dangling)))?,
            None::<&Value>,
        )
        .await?;
    let rows: Vec<String> = v["ImagesDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| match (r["Untagged"].as_str(), r["Deleted"].as_str()) {
            (Some(u), _) => Some(format!("untagged: {u}")),
            (_, Some(d)) => Some(format!("deleted: {d}")),
            _ => None,
        })
        .collect();
    out.push_str(&deleted_section("Deleted Images:", &rows));
    space += v["SpaceReclaimed"].as_u64().unwrap_or(0);
    if system {
        let (keys, s) = super::build::prune_cache(client, &a.filter).await?;
        out.push_str(&deleted_section("Deleted build cache objects:", &keys));
        space += s;
    }
    out.push_str(&format!(
        "Total reclaimed space: {}",
        crate::format::human_size(space as f64)
    ));
    outln!("{out}");
    Ok(0)
}

/// `info`.
pub async fn info(client: &Client, a: FormatArgs) -> Result<i32> {
    let server = client.get::<Value>("/info").await;
    if let Some(f) = a.format.as_deref().filter(|f| !f.is_empty()) {
        let api = berth_api::API_VERSION;
        let data = match &server {
            Ok(v) => {
                let mut d = v.clone();
                if let Some(o) = d.as_object_mut() {
                    o.insert("ClientInfo".to_owned(), client_info(api));
                }
                d
            }
            Err(_) => json!({"ClientInfo": client_info(api)}),
        };
        run_format(f, &data)?;
        return server.map(|_| 0).map_err(CliError::from);
    }
    outln!("Client:");
    outln!(" Version:    {}", env!("CARGO_PKG_VERSION"));
    outln!(" Context:    default");
    outln!(" Debug Mode: false");
    outln!();
    outln!("Server:");
    let v = server?;
    out!("{}", info_text(&v));
    if let Some(w) = v.get("Warnings").and_then(Value::as_array) {
        let warnings: Vec<&str> = w.iter().filter_map(Value::as_str).collect();
        if !warnings.is_empty() {
            outln!();
        }
        for w in warnings {
            eprintln!("{w}");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_layout() {
        let v = json!({
            "Containers": 2, "ContainersRunning": 1, "ContainersPaused": 0, "ContainersStopped": 1,
            "Images": 3, "ServerVersion": "0.1.0", "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"]],
            "SecurityOptions": ["name=seccomp,profile=builtin"], "MemTotal": 8_000_000_000i64,
        });
        let t = info_text(&v);
        assert!(t.starts_with(" Containers: 2\n  Running: 1\n"));
        assert!(t.contains("  Backing Filesystem: extfs\n"));
        assert!(t.contains("  seccomp\n   Profile: builtin\n"));
        assert!(t.contains(" Total Memory: 7.451GiB\n"));
    }
}
