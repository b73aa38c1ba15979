//! Container commands that need no attached streams: `ps`, `stop`, `restart`, `kill`, `rm`,
//! `pause`, `unpause`, `rename`, `wait`, `top`, `logs`, `inspect`.

use berth_api::client::{Client, RequestBody, query};
use berth_api::models::{ContainerSummary, TopResponse, WaitResponse};
use serde_json::{Value, json};

use super::{for_each, json_array, seg};
use crate::args::{
    InspectArgs, KillArgs, LogsArgs, NamesArgs, PsArgs, RenameArgs, RmArgs, StopArgs, TopArgs,
};
use crate::error::{CliError, Result};
use crate::format::{TabWriter, ellipsis, go_quote, human_size_prec, short_id, since_unix};
use crate::opts::{parse_filters, parse_time_arg};
use crate::stdio::OutputSink;
use crate::template::{Template, preprocess, render_rows};

/// Docker's header names of `ps` fields.
fn ps_headers() -> Value {
    json!({
        "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED", "Ports": "PORTS", "Status": "STATUS", "State": "STATE",
        "Size": "SIZE", "Names": "NAMES", "Labels": "LABELS", "Label": "LABEL",
        "Mounts": "MOUNTS", "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES",
        "Platform": "PLATFORM",
    })
}

/// A port as `ps` shows it: `0.0.0.0:8080->80/tcp`, `[::]:8080->80/tcp` or `80/tcp`.
fn port_text(p: &berth_api::models::Port) -> String {
    match p.public_port {
        Some(pub_port) => {
            let ip = p.ip.as_deref().unwrap_or("0.0.0.0");
            let ip = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_owned()
            };
            format!("{ip}:{pub_port}->{}/{}", p.private_port, p.kind)
        }
        None => format!("{}/{}", p.private_port, p.kind),
    }
}

/// The template context of one `ps` row (Docker's field names).
pub fn ps_row(raw: &Value, trunc: bool) -> Value {
    let c: ContainerSummary = serde_json::from_value(raw.clone()).unwrap_or_default();
    let id = if trunc { short_id(&c.id) } else { c.id.clone() };
    let mut names: Vec<String> = c
        .names
        .iter()
        .map(|n| n.strip_prefix('/').unwrap_or(n).to_owned())
        .filter(|n| !trunc || !n.contains('/'))
        .collect();
    if names.is_empty() {
        names = c
            .names
            .iter()
            .map(|n| n.trim_start_matches('/').to_owned())
            .collect();
    }
    let command = if trunc {
        ellipsis(&c.command, 20)
    } else {
        c.command.clone()
    };
    let image = if trunc && c.image.starts_with("sha256:") {
        short_id(&c.image)
    } else {
        c.image.clone()
    };
    let created = chrono::DateTime::from_timestamp(c.created, 0)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %z %Z")
                .to_string()
        })
        .unwrap_or_default();
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let ports: Vec<String> = c.ports.iter().map(port_text).collect();
    let size_rw = raw.get("SizeRw").and_then(Value::as_i64).unwrap_or(0);
    let size_root = raw.get("SizeRootFs").and_then(Value::as_i64).unwrap_or(0);
    let size = if size_root > 0 {
        format!(
            "{} (virtual {})",
            human_size_prec(size_rw as f64, 3),
            human_size_prec(size_root as f64, 3)
        )
    } else {
        human_size_prec(size_rw as f64, 3)
    };
    let mounts: Vec<String> = c
        .mounts
        .iter()
        .filter_map(|m| {
            m.get("Name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .or_else(|| m.get("Source").and_then(Value::as_str))
                .map(str::to_owned)
        })
        .collect();
    let networks: Vec<String> = c.network_settings.networks.keys().cloned().collect();
    json!({
        "ID": id,
        "Image": image,
        "Command": go_quote(&command),
        "CreatedAt": created,
        "RunningFor": since_unix(c.created),
        "Ports": ports.join(", "),
        "Status": c.status,
        "State": c.state,
        "Size": size,
        "Names": names.join(","),
        "Labels": labels.join(","),
        "Label": c.labels,
        "Mounts": mounts.join(","),
        "Networks": networks.join(","),
        "LocalVolumes": c.mounts.iter().filter(|m| m.get("Type").and_then(Value::as_str) == Some("volume")).count().to_string(),
        "Platform": "",
    })
}

/// `ps`.
pub async fn ps(client: &Client, a: PsArgs) -> Result<i32> {
    let mut q: Vec<(&str, String)> = Vec::new();
    let limit = if a.latest { 1 } else { a.last };
    if a.all || limit > 0 {
        q.push(("all", "1".into()));
    }
    if limit > 0 {
        q.push(("limit", limit.to_string()));
    }
    if a.size || a.format.as_deref().is_some_and(|f| f.contains(".Size")) {
        q.push(("size", "1".into()));
    }
    if let Some(f) = parse_filters(&a.filter)? {
        q.push(("filters", f));
    }
    let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let list: Vec<Value> = client
        .get(&format!("/containers/json?{}", query(&pairs)))
        .await?;
    let rows: Vec<Value> = list.iter().map(|c| ps_row(c, !a.no_trunc)).collect();
    let format = match (&a.format, a.quiet) {
        (_, true) => "{{.ID}}".to_owned(),
        (Some(f), false) if !f.is_empty() && f != "table" => f.clone(),
        _ if a.size => {
            "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}".to_owned()
        }
        _ => "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}".to_owned(),
    };
    out!("{}", render_rows(&format, &ps_headers(), &rows)?);
    Ok(0)
}

/// `stop` and `restart`.
pub async fn stop(client: &Client, a: StopArgs, action: &str) -> Result<i32> {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if let Some(t) = a.time {
        pairs.push(("t", t.to_string()));
    }
    if let Some(s) = &a.signal {
        pairs.push(("signal", s.clone()));
    }
    let q: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let q = query(&q);
    for_each(&a.containers, true, |name| {
        let path = format!("/containers/{}/{action}?{q}", seg(&name));
        async move { Ok(client.post_empty(&path).await?) }
    })
    .await
}

/// `kill`.
pub async fn kill(client: &Client, a: KillArgs) -> Result<i32> {
    let q = match &a.signal {
        Some(s) => query(&[("signal", s)]),
        None => String::new(),
    };
    for_each(&a.containers, true, |name| {
        let path = format!("/containers/{}/kill?{q}", seg(&name));
        async move { Ok(client.post_empty(&path).await?) }
    })
    .await
}

/// `rm`.
pub async fn rm(client: &Client, a: RmArgs) -> Result<i32> {
    let mut pairs = Vec::new();
    if a.force {
        pairs.push(("force", "1"));
    }
    if a.volumes {
        pairs.push(("v", "1"));
    }
    if a.link {
        pairs.push(("link", "1"));
    }
    let q = query(&pairs);
    for_each(&a.containers, true, |name| {
        let path = format!("/containers/{}?{q}", seg(&name));
        async move {
            let resp = client
                .request(hyper::Method::DELETE, &path, RequestBody::Empty)
                .await?;
            drop(resp);
            Ok(())
        }
    })
    .await
}

/// `pause` and `unpause`.
pub async fn pause(client: &Client, a: NamesArgs, action: &str) -> Result<i32> {
    for_each(&a.containers, true, |name| {
        let path = format!("/containers/{}/{action}", seg(&name));
        async move { Ok(client.post_empty(&path).await?) }
    })
    .await
}

/// `rename`.
pub async fn rename(client: &Client, a: RenameArgs) -> Result<i32> {
    let new = a.new_name.trim();
    if new.is_empty() {
        return Err(CliError::Precondition(
            "Error: neither old nor new names may be empty".to_owned(),
        ));
    }
    let path = format!(
        "/containers/{}/rename?{}",
        seg(&a.container),
        query(&[("name", new)])
    );
    client.post_empty(&path).await?;
    Ok(0)
}

/// `wait`.
pub async fn wait(client: &Client, a: NamesArgs) -> Result<i32> {
    for_each(&a.containers, false, |name| async move {
        let path = format!("/containers/{}/wait", seg(&name));
        let mut s = client
            .stream(hyper::Method::POST, &path, RequestBody::Empty)
            .await?;
        match s.next_json::<WaitResponse>().await? {
            Some(w) => {
                if let Some(e) = w.error.filter(|e| !e.message.is_empty()) {
                    return Err(CliError::Stream(e.message));
                }
                outln!("{}", w.status_code);
                Ok(())
            }
            None => Err(CliError::Stream(format!("no exit status for {name}"))),
        }
    })
    .await
}

/// `top`.
pub async fn top(client: &Client, a: TopArgs) -> Result<i32> {
    let mut path = format!("/containers/{}/top", seg(&a.container));
    if !a.ps_args.is_empty() {
        path = format!("{path}?{}", query(&[("ps_args", &a.ps_args.join(" "))]));
    }
    let top: TopResponse = client.get(&path).await?;
    let mut tw = TabWriter::new(20, 3);
    tw.row(top.titles.iter().cloned());
    for p in top.processes {
        tw.row(p);
    }
    out!("{}", tw.render());
    Ok(0)
}

/// `update`: new limits for each container; prints each name as Docker does.
pub async fn update(client: &Client, a: crate::args::UpdateArgs) -> Result<i32> {
    use crate::opts::{parse_cpus, parse_restart, parse_size, parse_swap};
    let mut body = serde_json::Map::new();
    let mut set = |k: &str, v: Value| {
        body.insert(k.to_owned(), v);
    };
    if let Some(m) = &a.resources.memory {
        set("Memory", parse_size(m)?.into());
    }
    if let Some(m) = &a.resources.memory_swap {
        set("MemorySwap", parse_swap(m)?.into());
    }
    if let Some(m) = &a.resources.memory_reservation {
        set("MemoryReservation", parse_size(m)?.into());
    }
    if let Some(c) = &a.resources.cpus {
        set("NanoCpus", parse_cpus(c)?.into());
    }
    if let Some(c) = a.resources.cpu_shares {
        set("CpuShares", c.into());
    }
    if let Some(c) = a.resources.cpu_period {
        set("CpuPeriod", c.into());
    }
    if let Some(c) = a.resources.cpu_quota {
        set("CpuQuota", c.into());
    }
    if let Some(c) = &a.resources.cpuset_cpus {
        set("CpusetCpus", c.clone().into());
    }
    if let Some(c) = &a.resources.cpuset_mems {
        set("CpusetMems", c.clone().into());
    }
    if let Some(p) = a.resources.pids_limit {
        set("PidsLimit", p.into());
    }
    if let Some(w) = a.resources.blkio_weight {
        set("BlkioWeight", w.into());
    }
    if let Some(r) = &a.restart {
        set(
            "RestartPolicy",
            serde_json::to_value(parse_restart(r)?).unwrap_or_default(),
        );
    }
    if body.is_empty() {
        return Err(CliError::Precondition(
            "you must provide one or more flags when using this command".into(),
        ));
    }
    let body = Value::Object(body);
    let mut failed = false;
    for name in &a.containers {
        let r: Result<Value> = client
            .post(&format!("/containers/{}/update", seg(name)), Some(&body))
            .await
            .map_err(CliError::from);
        match r {
            Ok(v) => {
                for w in v["Warnings"].as_array().into_iter().flatten() {
                    eprintln!("{}", w.as_str().unwrap_or_default());
                }
                outln!("{name}");
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        Err(CliError::Partial)
    } else {
        Ok(0)
    }
}

/// `port`: the container's published ports (`80/tcp -> 0.0.0.0:8080`), or where one
/// private port is published.
pub async fn port(client: &Client, a: crate::args::PortArgs) -> Result<i32> {
    let v: Value = client
        .get(&format!("/containers/{}/json", seg(&a.container)))
        .await?;
    let ports = v["NetworkSettings"]["Ports"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let bindings = |key: &str| -> Vec<String> {
        ports
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|b| {
                let ip = b["HostIp"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("0.0.0.0");
                let ip = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.to_owned()
                };
                format!("{ip}:{}", b["HostPort"].as_str().unwrap_or_default())
            })
            .collect()
    };
    if let Some(p) = &a.port {
        let key = if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        };
        let found = bindings(&key);
        if found.is_empty() {
            return Err(CliError::Precondition(format!(
                "Error: No public port '{p}' published for {}",
                a.container
            )));
        }
        for b in found {
            outln!("{b}");
        }
        return Ok(0);
    }
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort();
    for k in keys {
        for b in bindings(k) {
            outln!("{k} -> {b}");
        }
    }
    Ok(0)
}

/// `container prune`.
pub async fn prune(client: &Client, a: crate::args::PruneArgs) -> Result<i32> {
    if !a.force && !super::system::confirm("WARNING! This will remove all stopped containers.") {
        return Ok(0);
    }
    let (ids, space) = super::system::prune_containers(client, &a.filter).await?;
    let mut out = super::system::deleted_section("Deleted Containers:", &ids);
    out.push_str(&format!(
        "Total reclaimed space: {}",
        crate::format::human_size(space as f64)
    ));
    outln!("{out}");
    Ok(0)
}

/// `logs`.
pub async fn logs(client: &Client, a: LogsArgs) -> Result<i32> {
    let now = chrono::Utc::now().timestamp();
    let mut pairs: Vec<(&str, String)> = vec![("stdout", "1".into()), ("stderr", "1".into())];
    if a.follow {
        pairs.push(("follow", "1".into()));
    }
    if a.timestamps {
        pairs.push(("timestamps", "1".into()));
    }
    if a.details {
        pairs.push(("details", "1".into()));
    }
    pairs.push(("tail", a.tail.clone()));
    if let Some(s) = &a.since {
        pairs.push(("since", parse_time_arg(s, now)));
    }
    if let Some(u) = &a.until {
        pairs.push(("until", parse_time_arg(u, now)));
    }
    let q: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let path = format!("/containers/{}/logs?{}", seg(&a.container), query(&q));
    let mut s = client
        .stream(hyper::Method::GET, &path, RequestBody::Empty)
        .await?;
    let mut sink = OutputSink::new(s.is_multiplexed());
    while let Some(chunk) = s.chunk().await? {
        sink.push(&chunk)?;
    }
    Ok(0)
}

/// Looks one object up for `inspect`: a container, an image, or (without `--type`) either.
async fn inspect_one(client: &Client, name: &str, kind: Option<&str>, size: bool) -> Result<Value> {
    let q = if size { "?size=1" } else { "" };
    let container_path = format!("/containers/{}/json{q}", seg(name));
    let image_path = format!("/images/{}/json", super::image_seg(name));
    let container = || client.get::<Value>(&container_path);
    let image = || client.get::<Value>(&image_path);
    let volume_path = format!("/volumes/{}", seg(name));
    let volume = || client.get::<Value>(&volume_path);
    match kind {
        Some("container") => Ok(container().await?),
        Some("image") => Ok(image().await?),
        Some("volume") => Ok(volume().await?),
        Some("network") => Ok(client
            .get::<Value>(&format!("/networks/{}", seg(name)))
            .await?),
        Some(other) => Err(CliError::Precondition(format!(
            "\"{other}\" is not a valid value for --type"
        ))),
        None => match container().await {
            Ok(v) => Ok(v),
            Err(e) if e.is_not_found() => match image().await {
                Ok(v) => Ok(v),
                Err(e) if e.is_not_found() => match volume().await {
                    Ok(v) => Ok(v),
                    Err(e) if e.is_not_found() => {
                        match client
                            .get::<Value>(&format!("/networks/{}", seg(name)))
                            .await
                        {
                            Ok(v) => Ok(v),
                            Err(e) if e.is_not_found() => Err(CliError::Precondition(format!(
                                "Error: No such object: {name}"
                            ))),
                            Err(e) => Err(e.into()),
                        }
                    }
                    Err(e) => Err(e.into()),
                },
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        },
    }
}

/// `inspect`.
pub async fn inspect(client: &Client, a: InspectArgs) -> Result<i32> {
    let tmpl = match a.format.as_deref() {
        Some(f) if !f.is_empty() => {
            let (src, _) = preprocess(f);
            Some(Template::parse(&src)?)
        }
        _ => None,
    };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &a.names {
        match inspect_one(client, name, a.kind.as_deref(), a.size).await {
            Ok(v) => found.push(v),
            Err(e) => errors.push(e),
        }
    }
    match &tmpl {
        Some(t) => {
            for v in &found {
                outln!("{}", t.render(v)?);
            }
        }
        None => outln!("{}", json_array(&found)),
    }
    if errors.is_empty() {
        return Ok(0);
    }
    for e in errors {
        eprintln!("{e}");
    }
    Err(CliError::Partial)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_table_like_docker() {
        let raw = json!({
            "Id": "0123456789abcdef0123", "Names": ["/web"], "Image": "busybox",
            "Command": "sh -c 'while true; do sleep 1; done'",
            "Created": chrono::Utc::now().timestamp() - 5, "State": "running", "Status": "Up 5 seconds",
            "Labels": {"a": "b"}, "Ports": []
        });
        let row = ps_row(&raw, true);
        assert_eq!(row["ID"], "0123456789ab");
        assert_eq!(row["Command"], "\"sh -c 'while true; …\"");
        assert_eq!(row["Names"], "web");
        assert_eq!(row["Labels"], "a=b");
        let out = render_rows(
            "table {{.ID}}\t{{.Image}}\t{{.Status}}\t{{.Names}}",
            &ps_headers(),
            std::slice::from_ref(&row),
        )
        .unwrap();
        assert_eq!(
            out,
            "CONTAINER ID   IMAGE     STATUS         NAMES\n0123456789ab   busybox   Up 5 seconds   web\n"
        );
        assert_eq!(
            render_rows(r#"{{.Label "a"}}"#, &ps_headers(), &[row]).unwrap(),
            "b\n"
        );
    }
}
