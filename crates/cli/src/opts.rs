//! Flag values to API bodies: Docker's parsers for sizes (`64m`), CPUs (`1.5`), ulimits,
//! env files, labels, filters, restart policies, devices, ports, `--mount`, and the assembly of a
//! [`ContainerCreateRequest`] from `run`/`create` flags.

use std::collections::BTreeMap;

use berth_api::models::{
    BindOptions, Config, ContainerCreateRequest, DeviceMapping, DriverConfig, HealthConfig,
    HostConfig, LogConfig, Mount, PortBinding, RestartPolicy, ThrottleDevice, TmpfsOptions, Ulimit,
    VolumeOptions, WeightDevice,
};

pub use berth_api::timefmt::parse_go_duration;

use crate::args::ContainerOpts;

/// A flag value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidFlag(pub String);

type Result<T> = std::result::Result<T, InvalidFlag>;

fn bad<T>(msg: impl Into<String>) -> Result<T> {
    Err(InvalidFlag(msg.into()))
}

/// `--device-{read,write}-{bps,iops}` values, `/dev/x:rate`, as the docker CLI checks them:
/// a rate in bytes (binary units) or operations a second.
fn throttle_devices(values: &[String], bytes: bool) -> Result<Option<Vec<ThrottleDevice>>> {
    let mut out = Vec::new();
    for v in values {
        let Some((path, rate)) = v.split_once(':').filter(|(p, _)| p.starts_with("/dev/")) else {
            return bad(format!("bad format for device path: {v}"));
        };
        let rate = if bytes {
            parse_size(rate).ok().filter(|r| *r >= 0).map(|r| r as u64)
        } else {
            rate.parse::<u64>().ok()
        };
        let Some(rate) = rate else {
            return bad(format!(
                "invalid rate for device: {v}. The correct format is <device-path>:<number>{}. Number must be a positive integer",
                if bytes { "[<unit>]" } else { "" }
            ));
        };
        out.push(ThrottleDevice {
            path: path.to_owned(),
            rate,
        });
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `--blkio-weight-device /dev/x:weight`.
fn weight_devices(values: &[String]) -> Result<Option<Vec<WeightDevice>>> {
    let mut out = Vec::new();
    for v in values {
        let Some((path, weight)) = v.split_once(':').filter(|(p, _)| p.starts_with("/dev/")) else {
            return bad(format!("bad format for device path: {v}"));
        };
        let Some(weight) = weight
            .parse::<u16>()
            .ok()
            .filter(|w| (10..=1000).contains(w))
        else {
            return bad(format!("invalid weight for device: {v}"));
        };
        out.push(WeightDevice {
            path: path.to_owned(),
            weight,
        });
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Docker's `units.RAMInBytes`: `64m`, `1g`, `512k`, `1.5GiB`, `100` (binary units).
pub fn parse_size(s: &str) -> Result<i64> {
    let t = s.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(num_end);
    let value: f64 = match num.parse() {
        Ok(v) if !num.is_empty() && !num.starts_with('.') => v,
        _ => return bad(format!("invalid size: '{s}'")),
    };
    let suffix = suffix.trim_start().to_ascii_lowercase();
    let mut chars = suffix.chars();
    let unit: f64 = match chars.next() {
        None | Some('b') => 1.0,
        Some('k') => 1024.0,
        Some('m') => 1024.0f64.powi(2),
        Some('g') => 1024.0f64.powi(3),
        Some('t') => 1024.0f64.powi(4),
        Some('p') => 1024.0f64.powi(5),
        Some(_) => return bad(format!("invalid size: '{s}'")),
    };
    let rest: String = if suffix.starts_with('b') {
        String::new()
    } else {
        chars.collect()
    };
    if !matches!(rest.as_str(), "" | "b" | "i" | "ib") {
        return bad(format!("invalid suffix: '{}'", suffix));
    }
    let bytes = value * unit;
    if !bytes.is_finite() || bytes > i64::MAX as f64 {
        return bad(format!("invalid size: '{s}'"));
    }
    Ok(bytes as i64)
}

/// Splits a CSV line as Go's `encoding/csv` reads one record (double quotes group, `""`
/// is a quote).
fn csv_fields(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    if quoted {
        return bad(format!(
            "invalid argument \"{s}\" for \"--mount\" flag: unterminated quote"
        ));
    }
    out.push(cur);
    Ok(out)
}

/// `--mount type=...,source=...,target=...[,...]`: Docker CLI's fields into an API `Mount`.
pub fn parse_mount(s: &str) -> Result<Mount> {
    let mut m = Mount {
        kind: "volume".into(),
        ..Mount::default()
    };
    let (mut bind, mut vol, mut tmpfs) = (
        BindOptions::default(),
        VolumeOptions::default(),
        TmpfsOptions::default(),
    );
    let (mut has_bind, mut has_vol, mut has_tmpfs) = (false, false, false);
    let flag = |key: &str, v: Option<&str>| -> Result<bool> {
        match v.map(str::to_ascii_lowercase).as_deref() {
            None | Some("1") | Some("true") => Ok(true),
            Some("0") | Some("false") => Ok(false),
            Some(other) => bad(format!("invalid value for {key}: {other}")),
        }
    };
    for field in csv_fields(s)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_owned())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = |v: &Option<String>| -> Result<String> {
            v.clone().ok_or_else(|| {
                InvalidFlag(format!("invalid field '{field}' must be a key=value pair"))
            })
        };
        match key.as_str() {
            "type" => m.kind = need(&value)?.to_ascii_lowercase(),
            "source" | "src" => m.source = need(&value)?,
            "target" | "destination" | "dst" => m.target = need(&value)?,
            "readonly" | "ro" => m.read_only = flag(&key, value.as_deref())?,
            "consistency" => m.consistency = need(&value)?,
            "bind-propagation" => {
                has_bind = true;
                bind.propagation = need(&value)?.to_ascii_lowercase();
            }
            "bind-nonrecursive" => {
                has_bind = true;
                bind.non_recursive = flag(&key, value.as_deref())?;
            }
            "bind-create-mountpoint" => {
                has_bind = true;
                bind.create_mountpoint = flag(&key, value.as_deref())?;
            }
            "volume-nocopy" => {
                has_vol = true;
                vol.no_copy = flag(&key, value.as_deref())?;
            }
            "volume-label" => {
                has_vol = true;
                let v = need(&value)?;
                let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
                vol.labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(k.to_owned(), val.to_owned());
            }
            "volume-driver" => {
                has_vol = true;
                vol.driver_config
                    .get_or_insert_with(DriverConfig::default)
                    .name = need(&value)?;
            }
            "volume-opt" => {
                has_vol = true;
                let v = need(&value)?;
                let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
                vol.driver_config
                    .get_or_insert_with(DriverConfig::default)
                    .options
                    .get_or_insert_with(BTreeMap::new)
                    .insert(k.to_owned(), val.to_owned());
            }
            "volume-subpath" => {
                has_vol = true;
                vol.subpath = need(&value)?;
            }
            "tmpfs-size" => {
                has_tmpfs = true;
                tmpfs.size_bytes = parse_size(&need(&value)?)?;
            }
            "tmpfs-mode" => {
                has_tmpfs = true;
                let v = need(&value)?;
                tmpfs.mode = u32::from_str_radix(&v, 8)
                    .map_err(|_| InvalidFlag(format!("invalid value for tmpfs-mode: {v}")))?;
            }
            _ => return bad(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    if m.kind.is_empty() {
        return bad("type is required");
    }
    if m.target.is_empty() {
        return bad("target is required");
    }
    let wrong = |what: &str| {
        bad(format!(
            "cannot mix '{what}-*' options with mount type '{}'",
            m.kind
        ))
    };
    if has_bind {
        if m.kind != "bind" {
            return wrong("bind");
        }
        m.bind_options = Some(bind);
    }
    if has_vol {
        if m.kind != "volume" {
            return wrong("volume");
        }
        m.volume_options = Some(vol);
    }
    if has_tmpfs {
        if m.kind != "tmpfs" {
            return wrong("tmpfs");
        }
        m.tmpfs_options = Some(tmpfs);
    }
    Ok(m)
}

/// `--memory-swap`: a size, or `-1` for unlimited.
pub fn parse_swap(s: &str) -> Result<i64> {
    if s.trim() == "-1" {
        Ok(-1)
    } else {
        parse_size(s)
    }
}

/// `--cpus 1.5` -> `NanoCpus`.
pub fn parse_cpus(s: &str) -> Result<i64> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| InvalidFlag(format!("failed to parse {s} as a rational number")))?;
    if !v.is_finite() || v < 0.0 {
        return bad(format!("invalid argument \"{s}\" for \"--cpus\" flag"));
    }
    let nanos = (v * 1e9).round();
    if (nanos - v * 1e9).abs() > 1e-3 {
        return bad("value is too precise");
    }
    Ok(nanos as i64)
}

/// The resources `--ulimit` knows (Docker's list).
const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `--ulimit name=soft[:hard]`.
pub fn parse_ulimit(s: &str) -> Result<Ulimit> {
    let Some((name, limits)) = s.split_once('=') else {
        return bad(format!("invalid ulimit argument: {s}"));
    };
    if !ULIMITS.contains(&name) {
        return bad(format!("invalid ulimit type: {name}"));
    }
    let num = |v: &str| -> Result<i64> {
        v.parse()
            .map_err(|_| InvalidFlag(format!("invalid ulimit argument: {s}")))
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let v = num(limits)?;
            (v, v)
        }
    };
    if soft > hard && hard != -1 {
        return bad(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        ));
    }
    Ok(Ulimit {
        name: name.to_owned(),
        soft,
        hard,
    })
}

/// `-e KEY=VALUE` or `-e KEY` (takes `KEY` from our environment when set).
pub fn parse_env(s: &str) -> Result<String> {
    let (key, _) = s.split_once('=').unwrap_or((s, ""));
    if key.is_empty() {
        return bad(format!("invalid environment variable: {s}"));
    }
    if s.contains('=') {
        return Ok(s.to_owned());
    }
    Ok(match std::env::var(s) {
        Ok(v) => format!("{s}={v}"),
        Err(_) => s.to_owned(),
    })
}

/// The lines of an env file (`--env-file`): `KEY=VALUE`, or `KEY` taken from our
/// environment (skipped when unset); blank lines and `#` comments are ignored.
pub fn parse_env_file(content: &str, path: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (n, line) in content.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line, None),
        };
        if key.is_empty() {
            return bad(format!(
                "invalid env file ({path}): no variable name on line '{line}'"
            ));
        }
        if key.contains(char::is_whitespace) {
            return bad(format!(
                "invalid env file ({path}): variable '{}' contains whitespaces (line {})",
                key.trim_end(),
                n + 1
            ));
        }
        match value {
            Some(v) => out.push(format!("{key}={v}")),
            None => {
                if let Ok(v) = std::env::var(key) {
                    out.push(format!("{key}={v}"));
                }
            }
        }
    }
    Ok(out)
}

/// Reads every `--env-file` then appends the `-e` values (later ones win in the container).
pub fn collect_env(files: &[String], env: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let content = std::fs::read_to_string(f)
            .map_err(|e| InvalidFlag(format!("open {f}: {}", io_msg(&e))))?;
        out.extend(parse_env_file(&content, f)?);
    }
    for e in env {
        out.push(parse_env(e)?);
    }
    Ok(out)
}

/// An I/O error as Go prints it ("no such file or directory").
/// A `map_err` for local file errors: `<ctx>: <Docker-style message>`.
pub fn io_err(
    ctx: impl std::fmt::Display,
) -> impl FnOnce(std::io::Error) -> crate::error::CliError {
    move |e| crate::error::CliError::Precondition(format!("{ctx}: {}", io_msg(&e)))
}

pub fn io_msg(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

/// `key=value` pairs (`--label`, `--sysctl`, `--log-opt`); a bare `key` maps to "".
pub fn parse_kv(values: &[String]) -> BTreeMap<String, String> {
    values
        .iter()
        .map(|v| match v.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (v.clone(), String::new()),
        })
        .collect()
}

/// `--filter key=value` (repeated) -> the API's `filters` JSON (`{"key": ["v1", "v2"]}`).
pub fn parse_filters(values: &[String]) -> Result<Option<String>> {
    if values.is_empty() {
        return Ok(None);
    }
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in values {
        let Some((k, val)) = v.split_once('=') else {
            return bad(format!("bad format of filter (expected name=value): {v}"));
        };
        map.entry(k.trim().to_lowercase())
            .or_default()
            .push(val.to_owned());
    }
    serde_json::to_string(&map)
        .map(Some)
        .map_err(|e| InvalidFlag(e.to_string()))
}

/// `--restart no|always|unless-stopped|on-failure[:N]`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    let maximum_retry_count = match count {
        None => 0,
        Some(c) => {
            if name != "on-failure" {
                return bad(format!(
                    "invalid restart policy: maximum retry count can only be used with 'on-failure': {s}"
                ));
            }
            c.parse().map_err(|_| {
                InvalidFlag(format!(
                    "invalid restart policy format: maximum retry count must be an integer: {s}"
                ))
            })?
        }
    };
    match name {
        "" | "no" | "always" | "unless-stopped" | "on-failure" => Ok(RestartPolicy {
            name: name.to_owned(),
            maximum_retry_count,
        }),
        _ => bad(format!(
            "invalid restart policy format: unknown policy '{name}'"
        )),
    }
}

/// `--device /dev/host[:/dev/container[:rwm]]`.
pub fn parse_device(s: &str) -> Result<DeviceMapping> {
    let parts: Vec<&str> = s.split(':').collect();
    let is_perm = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let (host, ctr, perm) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if is_perm(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] if is_perm(p) => (*h, *c, *p),
        _ => return bad(format!("invalid device specification: {s}")),
    };
    if host.is_empty() || !ctr.starts_with('/') {
        return bad(format!("invalid device specification: {s}"));
    }
    Ok(DeviceMapping {
        path_on_host: host.to_owned(),
        path_in_container: ctr.to_owned(),
        cgroup_permissions: perm.to_owned(),
    })
}

/// `-p [ip:][hostPort:]containerPort[/proto]` -> (`port/proto`, binding).
/// `-p [ip:][host[-host]:]container[-container][/proto]`, a container range expanded to one
/// binding per port as the docker CLI sends them (a host range of the same length pairs up;
/// otherwise each port gets the host range to pick from).
pub fn parse_publish(s: &str) -> Result<Vec<(String, PortBinding)>> {
    let (key, b) = parse_publish_one(s)?;
    let (ports, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
    let range = |r: &str| -> Result<(u16, u16)> {
        let (a, z) = r.split_once('-').unwrap_or((r, r));
        match (a.parse::<u16>(), z.parse::<u16>()) {
            (Ok(a), Ok(z)) if a > 0 && a <= z => Ok((a, z)),
            _ => bad(format!("invalid port range: {r}")),
        }
    };
    let (c0, c1) = range(ports)?;
    if !b.host_port.is_empty() {
        range(&b.host_port)?;
    }
    if c0 == c1 {
        return Ok(vec![(key, b)]);
    }
    let host = if b.host_port.is_empty() {
        None
    } else {
        Some(range(&b.host_port)?)
    };
    let mut out = Vec::new();
    for (i, port) in (c0..=c1).enumerate() {
        let host_port = match host {
            Some((h0, h1)) if h1 - h0 == c1 - c0 => (h0 + i as u16).to_string(),
            Some((h0, h1)) if h0 == h1 => {
                return bad(format!(
                    "invalid ranges specified for container and host ports: {s}"
                ));
            }
            Some(_) => b.host_port.clone(),
            None => String::new(),
        };
        out.push((
            format!("{port}/{proto}"),
            PortBinding {
                host_ip: b.host_ip.clone(),
                host_port,
            },
        ));
    }
    Ok(out)
}

fn parse_publish_one(s: &str) -> Result<(String, PortBinding)> {
    let (spec, proto) = match s.rsplit_once('/') {
        Some((a, p)) => (a, p),
        None => (s, "tcp"),
    };
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (ctr, host_port, host_ip) = match parts.as_slice() {
        [c] => (*c, "", ""),
        [c, h] => (*c, *h, ""),
        [c, h, ip] => (*c, *h, ip.trim_start_matches('[').trim_end_matches(']')),
        _ => return bad(format!("invalid port format: {s}")),
    };
    if ctr.is_empty() || !ctr.chars().all(|c| c.is_ascii_digit() || c == '-') {
        return bad(format!("invalid containerPort: {ctr}"));
    }
    Ok((
        format!("{ctr}/{proto}"),
        PortBinding {
            host_ip: host_ip.to_owned(),
            host_port: host_port.to_owned(),
        },
    ))
}

/// `--security-opt`: `seccomp=<file>` sends the profile's content, as Docker does.
pub fn parse_security_opt(s: &str) -> Result<String> {
    let Some(path) = s
        .strip_prefix("seccomp=")
        .or_else(|| s.strip_prefix("seccomp:"))
    else {
        return Ok(s.to_owned());
    };
    if matches!(path, "unconfined" | "builtin") {
        return Ok(format!("seccomp={path}"));
    }
    let content = std::fs::read(path).map_err(|e| {
        InvalidFlag(format!(
            "opening seccomp profile ({path}) failed: {}",
            io_msg(&e)
        ))
    })?;
    let v: serde_json::Value = serde_json::from_slice(&content)
        .map_err(|e| InvalidFlag(format!("parsing seccomp profile ({path}) failed: {e}")))?;
    Ok(format!("seccomp={v}"))
}

/// Splits a shell-free `--entrypoint` value: Docker sends it as one argument.
fn entrypoint(s: &str) -> Vec<String> {
    if s.is_empty() {
        vec![String::new()]
    } else {
        vec![s.to_owned()]
    }
}

fn some_vec(v: &[String]) -> Option<Vec<String>> {
    if v.is_empty() { None } else { Some(v.to_vec()) }
}

/// Which streams `run` attaches: `-a` values, else stdout+stderr (+stdin with `-i`).
pub fn attach_streams(opts: &ContainerOpts, detach: bool) -> Result<(bool, bool, bool)> {
    if detach {
        if !opts.attach.is_empty() {
            return bad("conflicting options: cannot specify both --attach and --detach");
        }
        return Ok((false, false, false));
    }
    if opts.attach.is_empty() {
        return Ok((opts.interactive, true, true));
    }
    let (mut i, mut o, mut e) = (false, false, false);
    for a in &opts.attach {
        match a.to_lowercase().as_str() {
            "stdin" => i = true,
            "stdout" => o = true,
            "stderr" => e = true,
            _ => {
                return bad(format!(
                    "invalid argument \"{a}\" for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"
                ));
            }
        }
    }
    Ok((i, o, e))
}

/// Builds the body of `POST /containers/create` from `run`/`create` flags.
pub fn build_create(
    opts: &ContainerOpts,
    image: &str,
    command: &[String],
    detach: bool,
) -> Result<ContainerCreateRequest> {
    let (attach_stdin, attach_stdout, attach_stderr) = attach_streams(opts, detach)?;
    let env = collect_env(&opts.env_file, &opts.env)?;
    let labels = parse_kv(&opts.label);

    let mut exposed: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut bindings: BTreeMap<String, Option<Vec<PortBinding>>> = BTreeMap::new();
    for p in &opts.publish {
        for (port, b) in parse_publish(p)? {
            exposed.insert(port.clone(), serde_json::json!({}));
            bindings
                .entry(port)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(b);
        }
    }
    for e in &opts.expose {
        let port = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        exposed.insert(port, serde_json::json!({}));
    }

    let mut binds = Vec::new();
    let mut volumes: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for v in &opts.volume {
        if v.contains(':') {
            binds.push(v.clone());
        } else {
            volumes.insert(v.clone(), serde_json::json!({}));
        }
    }
    let tmpfs: BTreeMap<String, String> = opts
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((p, o)) => (p.to_owned(), o.to_owned()),
            None => (t.clone(), String::new()),
        })
        .collect();

    let config = Config {
        hostname: opts.hostname.clone().unwrap_or_default(),
        domainname: opts.domainname.clone().unwrap_or_default(),
        user: opts.user.clone().unwrap_or_default(),
        attach_stdin,
        attach_stdout,
        attach_stderr,
        exposed_ports: if exposed.is_empty() {
            None
        } else {
            Some(exposed)
        },
        tty: opts.tty,
        open_stdin: opts.interactive,
        stdin_once: opts.interactive && attach_stdin,
        env: Some(env),
        cmd: if command.is_empty() {
            None
        } else {
            Some(command.to_vec())
        },
        image: image.to_owned(),
        volumes: if volumes.is_empty() {
            None
        } else {
            Some(volumes)
        },
        working_dir: opts.workdir.clone().unwrap_or_default(),
        entrypoint: opts.entrypoint.as_deref().map(entrypoint),
        mac_address: opts.mac_address.clone(),
        labels: Some(labels),
        stop_signal: opts.stop_signal.clone(),
        stop_timeout: opts.stop_timeout,
        healthcheck: healthcheck(opts)?,
        ..Config::default()
    };

    let size = |v: &Option<String>| -> Result<i64> {
        v.as_deref()
            .map(parse_size)
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let memory = size(&opts.resources.memory)?;
    let memory_swap = opts
        .resources
        .memory_swap
        .as_deref()
        .map(parse_swap)
        .transpose()?
        .unwrap_or(0);
    let memory_reservation = size(&opts.resources.memory_reservation)?;
    let shm_size = size(&opts.shm_size)?;
    let nano_cpus = opts
        .resources
        .cpus
        .as_deref()
        .map(parse_cpus)
        .transpose()?
        .unwrap_or(0);
    if nano_cpus > 0
        && (opts.resources.cpu_period.unwrap_or(0) > 0 || opts.resources.cpu_quota.unwrap_or(0) > 0)
    {
        return bad("conflicting options: Nano CPUs and CPU Period cannot both be set");
    }
    let ulimits = opts
        .ulimit
        .iter()
        .map(|u| parse_ulimit(u))
        .collect::<Result<Vec<_>>>()?;
    let devices = opts
        .device
        .iter()
        .map(|d| parse_device(d))
        .collect::<Result<Vec<_>>>()?;
    let security_opt = opts
        .security_opt
        .iter()
        .map(|s| parse_security_opt(s))
        .collect::<Result<Vec<_>>>()?;
    let restart_policy = parse_restart(&opts.restart)?;
    if opts.rm && !matches!(restart_policy.name.as_str(), "" | "no") {
        return bad("conflicting options: cannot specify both --restart and --rm");
    }
    let sysctls = parse_kv(&opts.sysctl);

    let mounts = opts
        .mount
        .iter()
        .map(|m| parse_mount(m))
        .collect::<Result<Vec<_>>>()?;
    let host_config = HostConfig {
        binds: some_vec(&binds),
        mounts: some_vec_of(mounts),
        volumes_from: some_vec(&opts.volumes_from),
        log_config: LogConfig {
            kind: opts.log_driver.clone().unwrap_or_default(),
            config: parse_kv(&opts.log_opt),
        },
        network_mode: opts.network.clone().unwrap_or_else(|| "default".to_owned()),
        port_bindings: if bindings.is_empty() {
            None
        } else {
            Some(bindings)
        },
        restart_policy,
        publish_all_ports: opts.publish_all,
        auto_remove: opts.rm,
        cap_add: some_vec(&opts.cap_add),
        cap_drop: some_vec(&opts.cap_drop),
        cgroupns_mode: opts.cgroupns.clone().unwrap_or_default(),
        dns: Some(opts.dns.clone()),
        dns_options: Some(opts.dns_option.clone()),
        dns_search: Some(opts.dns_search.clone()),
        extra_hosts: some_vec(&opts.add_host),
        group_add: some_vec(&opts.group_add),
        ipc_mode: opts.ipc.clone().unwrap_or_default(),
        oom_score_adj: opts.oom_score_adj.unwrap_or(0),
        pid_mode: opts.pid.clone().unwrap_or_default(),
        privileged: opts.privileged,
        readonly_rootfs: opts.read_only,
        security_opt: some_vec(&security_opt),
        tmpfs: if tmpfs.is_empty() { None } else { Some(tmpfs) },
        uts_mode: opts.uts.clone().unwrap_or_default(),
        userns_mode: opts.userns.clone().unwrap_or_default(),
        shm_size,
        sysctls: if sysctls.is_empty() {
            None
        } else {
            Some(sysctls)
        },
        runtime: opts.runtime.clone().unwrap_or_default(),
        cpu_shares: opts.resources.cpu_shares.unwrap_or(0),
        memory,
        nano_cpus,
        cgroup_parent: opts.cgroup_parent.clone().unwrap_or_default(),
        blkio_weight: opts.resources.blkio_weight.unwrap_or(0),
        blkio_weight_device: weight_devices(&opts.blkio_weight_device)?,
        blkio_device_read_bps: throttle_devices(&opts.device_read_bps, true)?,
        blkio_device_write_bps: throttle_devices(&opts.device_write_bps, true)?,
        blkio_device_read_iops: throttle_devices(&opts.device_read_iops, false)?,
        blkio_device_write_iops: throttle_devices(&opts.device_write_iops, false)?,
        cpu_period: opts.resources.cpu_period.unwrap_or(0),
        cpu_quota: opts.resources.cpu_quota.unwrap_or(0),
        cpuset_cpus: opts.resources.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: opts.resources.cpuset_mems.clone().unwrap_or_default(),
        devices: Some(devices),
        device_cgroup_rules: some_vec(&opts.device_cgroup_rule),
        memory_reservation,
        memory_swap,
        memory_swappiness: opts.memory_swappiness,
        oom_kill_disable: if opts.oom_kill_disable {
            Some(true)
        } else {
            None
        },
        pids_limit: opts.resources.pids_limit,
        ulimits: some_vec_of(ulimits),
        init: if opts.init { Some(true) } else { None },
        ..HostConfig::default()
    };
    Ok(ContainerCreateRequest {
        config,
        host_config,
        networking_config: networking_config(opts)?,
    })
}

/// `NetworkingConfig` for `--ip`, `--ip6` and `--network-alias` on the container's network.
fn networking_config(opts: &ContainerOpts) -> Result<Option<serde_json::Value>> {
    if opts.ip.is_none() && opts.ip6.is_none() && opts.network_alias.is_empty() {
        return Ok(None);
    }
    let net = match opts.network.as_deref() {
        None | Some("") | Some("default") => "bridge",
        Some(n) => n,
    };
    let mut ep = serde_json::json!({});
    if opts.ip.is_some() || opts.ip6.is_some() {
        ep["IPAMConfig"] = serde_json::json!({
            "IPv4Address": opts.ip.clone().unwrap_or_default(),
            "IPv6Address": opts.ip6.clone().unwrap_or_default(),
        });
    }
    if !opts.network_alias.is_empty() {
        ep["Aliases"] = serde_json::json!(opts.network_alias);
    }
    Ok(Some(serde_json::json!({ "EndpointsConfig": { net: ep } })))
}

fn some_vec_of<T>(v: Vec<T>) -> Option<Vec<T>> {
    if v.is_empty() { None } else { Some(v) }
}

/// Docker's relative times for `--since`/`--until`: a Go duration (`10m`, `1h30m`) means that
/// long ago; anything else (unix seconds, RFC 3339) is passed through.
pub fn parse_time_arg(s: &str, now_unix: i64) -> String {
    match parse_go_duration(s) {
        Some(d) => format!("{}", now_unix - d.as_secs() as i64),
        None => s.to_owned(),
    }
}

/// `--health-*` and `--no-healthcheck`, as Docker's CLI turns them into `Healthcheck`.
fn healthcheck(opts: &ContainerOpts) -> Result<Option<HealthConfig>> {
    let dur = |flag: &str, v: &Option<String>| -> Result<Option<i64>> {
        match v.as_deref() {
            None => Ok(None),
            Some(s) => {
                let d = parse_go_duration(s).ok_or_else(|| {
                    InvalidFlag(format!("invalid argument \"{s}\" for \"--{flag}\" flag: time: invalid duration \"{s}\""))
                })?;
                Ok(Some(d.as_nanos() as i64))
            }
        }
    };
    let interval = dur("health-interval", &opts.health_interval)?;
    let timeout = dur("health-timeout", &opts.health_timeout)?;
    let start_period = dur("health-start-period", &opts.health_start_period)?;
    let tuned = interval.is_some()
        || timeout.is_some()
        || start_period.is_some()
        || opts.health_retries.is_some();
    if opts.no_healthcheck {
        if opts.health_cmd.is_some() || tuned {
            return Err(InvalidFlag(
                "--no-healthcheck conflicts with --health-* options".into(),
            ));
        }
        return Ok(Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..HealthConfig::default()
        }));
    }
    if opts.health_cmd.is_none() && !tuned {
        return Ok(None);
    }
    if opts.health_retries.is_some_and(|r| r < 0) {
        return Err(InvalidFlag("--health-retries cannot be negative".into()));
    }
    Ok(Some(HealthConfig {
        test: opts
            .health_cmd
            .as_ref()
            .map(|c| vec!["CMD-SHELL".into(), c.clone()]),
        interval,
        timeout,
        retries: opts.health_retries,
        start_period,
    }))
}

/// Splits `name[:tag]` (a `:` after the last `/` starts the tag; a digest stays in the name).
pub fn split_reference(r: &str) -> (String, String) {
    if r.contains('@') {
        return (r.to_owned(), String::new());
    }
    let slash = r.rfind('/').map(|i| i + 1).unwrap_or(0);
    match r[slash..].rfind(':') {
        Some(i) => (r[..slash + i].to_owned(), r[slash + i + 1..].to_owned()),
        None => (r.to_owned(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_like_the_docker_cli() {
        let m = parse_mount("type=bind,src=/a,dst=/b,readonly,bind-propagation=rshared").unwrap();
        assert_eq!(
            (m.kind.as_str(), m.source.as_str(), m.target.as_str()),
            ("bind", "/a", "/b")
        );
        assert!(m.read_only);
        assert_eq!(m.bind_options.unwrap().propagation, "rshared");
        let m = parse_mount(
            "target=/d,volume-opt=type=tmpfs,volume-opt=o=size=1m,volume-label=a=b,volume-nocopy",
        )
        .unwrap();
        assert_eq!(m.kind, "volume");
        let v = m.volume_options.unwrap();
        assert!(v.no_copy);
        assert_eq!(v.labels.unwrap()["a"], "b");
        assert_eq!(v.driver_config.unwrap().options.unwrap()["o"], "size=1m");
        let m = parse_mount("type=tmpfs,destination=/t,tmpfs-size=2m,tmpfs-mode=1770,ro=false")
            .unwrap();
        let t = m.tmpfs_options.unwrap();
        assert_eq!(
            (t.size_bytes, t.mode, m.read_only),
            (2 << 20, 0o1770, false)
        );
        let m = parse_mount("\"type=bind\",\"source=/a,b\",target=/c").unwrap();
        assert_eq!(m.source, "/a,b");
        for bad in [
            "source=x",
            "type=volume,target=/x,tmpfs-size=1m",
            "type=tmpfs,target=/x,tmpfs-mode=9",
            "target=/x,bogus=1",
            "target=/x,readonly=maybe",
            "type,target=/x",
            "\"target=/x",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad} must be refused");
        }
    }
    use clap::Parser;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("100b"), Ok(100));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert!(parse_size("abc").is_err());
        assert!(parse_size("10x").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(parse_swap("-1"), Ok(-1));
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("1.5"), Ok(1_500_000_000));
        assert_eq!(parse_cpus("0.25"), Ok(250_000_000));
        assert!(parse_cpus("x").is_err());
    }

    #[test]
    fn ulimits() {
        assert_eq!(
            parse_ulimit("nofile=1024:2048"),
            Ok(Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048
            })
        );
        assert_eq!(
            parse_ulimit("nproc=10"),
            Ok(Ulimit {
                name: "nproc".into(),
                soft: 10,
                hard: 10
            })
        );
        assert!(parse_ulimit("bogus=1").is_err());
        assert!(parse_ulimit("nofile").is_err());
        assert!(parse_ulimit("nofile=2048:1024").is_err());
    }

    #[test]
    fn env_files() {
        let got = parse_env_file("# c\n\nA=1\n  B=two words\nC=\n", "f").unwrap();
        assert_eq!(got, vec!["A=1", "B=two words", "C="]);
        assert!(parse_env_file("BAD KEY=1\n", "f").is_err());
        assert!(parse_env_file("=1\n", "f").is_err());
        assert_eq!(
            parse_env_file("BERTH_SURELY_UNSET_VAR\n", "f").unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn filters_and_kv() {
        assert_eq!(parse_filters(&[]), Ok(None));
        let f = parse_filters(&["status=exited".into(), "name=a".into(), "name=b".into()]);
        assert_eq!(
            f,
            Ok(Some(r#"{"name":["a","b"],"status":["exited"]}"#.to_owned()))
        );
        assert!(parse_filters(&["novalue".into()]).is_err());
        let kv = parse_kv(&["a=b=c".into(), "flag".into()]);
        assert_eq!(kv.get("a").map(String::as_str), Some("b=c"));
        assert_eq!(kv.get("flag").map(String::as_str), Some(""));
    }

    #[test]
    fn restart_device_publish() {
        assert_eq!(
            parse_restart("on-failure:3").map(|r| r.maximum_retry_count),
            Ok(3)
        );
        assert!(parse_restart("always:3").is_err());
        assert!(parse_restart("sometimes").is_err());
        let d = parse_device("/dev/fuse").unwrap();
        assert_eq!(
            (d.path_in_container.as_str(), d.cgroup_permissions.as_str()),
            ("/dev/fuse", "rwm")
        );
        let d = parse_device("/dev/a:/dev/b:r").unwrap();
        assert_eq!(
            (d.path_in_container.as_str(), d.cgroup_permissions.as_str()),
            ("/dev/b", "r")
        );
        let v = parse_publish("127.0.0.1:8080:80/udp").unwrap();
        let (p, b) = &v[0];
        assert_eq!(
            (p.as_str(), b.host_ip.as_str(), b.host_port.as_str()),
            ("80/udp", "127.0.0.1", "8080")
        );
        let v = parse_publish("9000-9001:80-81").unwrap();
        let got: Vec<(String, String)> = v
            .iter()
            .map(|(p, b)| (p.clone(), b.host_port.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("80/tcp".to_owned(), "9000".to_owned()),
                ("81/tcp".to_owned(), "9001".to_owned())
            ]
        );
        assert!(parse_publish("8080:80-81").is_err());
        assert!(parse_publish("x:80").is_err());
        assert_eq!(
            parse_publish("8000-8010:80").unwrap()[0].1.host_port,
            "8000-8010"
        );
    }

    #[test]
    fn durations_and_references() {
        assert_eq!(parse_go_duration("1h30m").map(|d| d.as_secs()), Some(5400));
        assert_eq!(parse_go_duration("10s").map(|d| d.as_secs()), Some(10));
        assert_eq!(parse_go_duration("2024-01-01"), None);
        assert_eq!(parse_time_arg("10m", 1000), "400");
        assert_eq!(parse_time_arg("1700000000", 0), "1700000000");
        assert_eq!(
            split_reference("busybox:1.36"),
            ("busybox".into(), "1.36".into())
        );
        assert_eq!(
            split_reference("localhost:5000/x"),
            ("localhost:5000/x".into(), "".into())
        );
        assert_eq!(
            split_reference("localhost:5000/x:t"),
            ("localhost:5000/x".into(), "t".into())
        );
    }

    fn parse_run(argv: &[&str]) -> crate::args::RunArgs {
        let mut full = vec!["berth", "run"];
        full.extend_from_slice(argv);
        match crate::args::Cli::try_parse_from(full).map(|c| c.command) {
            Ok(crate::args::Cmd::Run(r)) => r,
            other => panic!("unexpected parse: {other:?}"),
        }
    }

    #[test]
    fn run_flags_to_create_request() {
        let r = parse_run(&[
            "-m",
            "64m",
            "--cpus",
            "1.5",
            "--ulimit",
            "nofile=1024:2048",
            "-e",
            "A=1",
            "--rm",
            "--pids-limit",
            "20",
            "-h",
            "box",
            "--cap-drop",
            "ALL",
            "busybox",
            "echo",
            "hi",
        ]);
        let req = build_create(&r.opts, &r.image, &r.command, r.detach).unwrap();
        let hc = &req.host_config;
        assert_eq!(hc.memory, 64 << 20);
        assert_eq!(hc.nano_cpus, 1_500_000_000);
        assert_eq!(
            hc.ulimits,
            Some(vec![Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048
            }])
        );
        assert_eq!(hc.pids_limit, Some(20));
        assert!(hc.auto_remove);
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            req.config.cmd,
            Some(vec!["echo".to_owned(), "hi".to_owned()])
        );
        assert_eq!(req.config.env, Some(vec!["A=1".to_owned()]));
        assert_eq!(req.config.image, "busybox");
        assert_eq!(req.config.hostname, "box");
        assert!(req.config.attach_stdout && !req.config.attach_stdin);
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(json["HostConfig"]["NanoCpus"], 1_500_000_000i64);
        assert_eq!(json["Cmd"][0], "echo");
    }

    #[test]
    fn command_flags_go_to_the_container() {
        let r = parse_run(&["-it", "busybox", "ls", "-l", "--rm"]);
        assert!(r.opts.interactive && r.opts.tty && !r.opts.rm);
        assert_eq!(r.command, vec!["ls", "-l", "--rm"]);
        let r = parse_run(&["-d", "--name", "x", "busybox"]);
        assert!(r.detach);
        assert!(r.command.is_empty());
        let req = build_create(&r.opts, &r.image, &r.command, r.detach).unwrap();
        assert!(!req.config.attach_stdout);
        assert_eq!(req.config.cmd, None);
    }

    #[test]
    fn conflicting_flags() {
        let r = parse_run(&["--rm", "--restart", "always", "busybox"]);
        assert!(build_create(&r.opts, &r.image, &r.command, r.detach).is_err());
        let r = parse_run(&["-d", "-a", "stdout", "busybox"]);
        assert!(build_create(&r.opts, &r.image, &r.command, r.detach).is_err());
    }
}
