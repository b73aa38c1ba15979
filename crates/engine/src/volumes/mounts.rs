//! A container's mounts: `-v` specs (`HostConfig.Binds`), `--mount` (`HostConfig.Mounts`),
//! anonymous volumes (`Config.Volumes`, the image's `VOLUME`s) and `--volumes-from`, parsed
//! and checked once at create into the [`MountPoint`]s the container keeps; at each start they
//! become the runtime's bind and tmpfs mounts.
//!
//! Parsing is pure (no filesystem, no store) so every rule is unit-tested here; the engine
//! creates the volumes the points name and fills new ones with image content.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Config, HostConfig, Mount};
use crate::error::{EngineError, Result};

/// What a mount point mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Volume,
    Tmpfs,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bind => "bind",
            Self::Volume => "volume",
            Self::Tmpfs => "tmpfs",
        }
    }
}

/// One mount of a container, as it keeps it between create and each start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountPoint {
    pub kind: MountType,
    /// The volume's name (empty for an anonymous volume until the engine names it).
    #[serde(default)]
    pub name: String,
    /// The host path of a bind.
    #[serde(default)]
    pub source: String,
    pub destination: String,
    /// The mode as given (`ro`, `z`, `rshared,ro`...): inspect shows it.
    #[serde(default)]
    pub mode: String,
    pub rw: bool,
    #[serde(default)]
    pub propagation: String,
    /// Fill a new, empty volume with the image's content at the destination (at first start).
    #[serde(default)]
    pub copy_data: bool,
    /// A `-v` bind whose missing source is created (Docker's behaviour; `--mount` refuses).
    #[serde(default)]
    pub create_source: bool,
    /// `bind-nonrecursive`: submounts of the source are not carried along.
    #[serde(default)]
    pub non_recursive: bool,
    /// A tmpfs mount's size and mode, as mount data (`size=...,mode=...`).
    #[serde(default)]
    pub tmpfs_data: String,
    /// A volume given by name (kept by `rm -v`), as opposed to an anonymous one.
    #[serde(default)]
    pub named: bool,
    /// What a volume that does not exist yet is made with (`--mount` volume options).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<VolumeSpec>,
}

/// Driver, labels and options for a volume a `--mount` creates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

impl MountPoint {
    fn new(kind: MountType, destination: String) -> Self {
        Self {
            kind,
            name: String::new(),
            source: String::new(),
            destination,
            mode: String::new(),
            rw: true,
            propagation: String::new(),
            copy_data: false,
            create_source: false,
            non_recursive: false,
            tmpfs_data: String::new(),
            named: false,
            create: None,
        }
    }
}

const PROPAGATIONS: &[&str] = &[
    "shared", "rshared", "slave", "rslave", "private", "rprivate",
];

/// The default propagation of binds.
pub const DEFAULT_PROPAGATION: &str = "rprivate";

fn bad_spec(spec: &str, why: &str) -> EngineError {
    EngineError::InvalidArgument(format!("invalid volume specification: '{spec}': {why}"))
}

/// Cleans an absolute container path lexically (`//`, `.`, `..`, a trailing `/`).
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Checks a destination: absolute, and not the root itself.
fn destination(raw: &str, kind: MountType, spec: &str) -> Result<String> {
    if !raw.starts_with('/') {
        return Err(bad_spec(
            spec,
            &format!(
                "invalid mount config for type \"{}\": invalid mount path: '{raw}' mount path must be absolute",
                kind.as_str()
            ),
        ));
    }
    let d = clean(raw);
    if d == "/" {
        return Err(bad_spec(
            spec,
            &format!(
                "invalid mount config for type \"{}\": invalid specification: destination can't be '/'",
                kind.as_str()
            ),
        ));
    }
    Ok(d)
}

/// Parses a `-v` spec's mode list into (rw, propagation, copy), refusing what Docker refuses.
fn parse_mode(mode: &str, kind: MountType) -> Result<(bool, String, bool)> {
    let invalid = || EngineError::InvalidArgument(format!("invalid mode: {mode}"));
    let (mut rw, mut prop, mut copy, mut label) = (None, None, None, None);
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        let slot = match m {
            "ro" | "rw" => &mut rw,
            "z" | "Z" => &mut label,
            "nocopy" => &mut copy,
            "consistent" | "cached" | "delegated" => continue,
            p if PROPAGATIONS.contains(&p) => &mut prop,
            _ => return Err(invalid()),
        };
        if slot.replace(m).is_some() {
            return Err(invalid());
        }
    }
    if copy.is_some() && kind == MountType::Bind {
        return Err(invalid());
    }
    Ok((
        rw != Some("ro"),
        prop.unwrap_or("").to_owned(),
        copy.is_none(),
    ))
}

/// Parses one `HostConfig.Binds` entry: `src:dst[:mode]`, where an absolute `src` is a host
/// path and anything else a volume name; a lone path is an anonymous volume.
pub fn parse_bind(spec: &str) -> Result<MountPoint> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [dst] => ("", *dst, ""),
        [src, dst] => (*src, *dst, ""),
        [src, dst, mode] => (*src, *dst, *mode),
        _ => return Err(bad_spec(spec, "too many colons")),
    };
    if parts.len() > 1 && src.is_empty() {
        return Err(bad_spec(spec, "empty section between colons"));
    }
    let kind = if src.starts_with('/') {
        MountType::Bind
    } else {
        MountType::Volume
    };
    let mut m = MountPoint::new(kind, destination(dst, kind, spec)?);
    let (rw, prop, copy) = parse_mode(mode, kind)?;
    m.rw = rw;
    m.mode = mode.to_owned();
    match kind {
        MountType::Bind => {
            if src.len() > 1 && clean(src) == "/" && src != "/" {
                return Err(bad_spec(spec, "invalid source path"));
            }
            m.source = clean(src);
            m.propagation = if prop.is_empty() {
                DEFAULT_PROPAGATION.into()
            } else {
                prop
            };
            m.create_source = true;
        }
        MountType::Volume => {
            if !prop.is_empty() {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid mode: {mode}"
                )));
            }
            if !src.is_empty() {
                super::valid_name(src)?;
                m.name = src.to_owned();
                m.named = true;
                if m.mode.is_empty() {
                    m.mode = "z".into();
                }
            }
            m.copy_data = copy;
        }
        MountType::Tmpfs => {}
    }
    Ok(m)
}

/// Docker's tmpfs data from a size and a mode.
fn tmpfs_data(size: i64, mode: u32) -> String {
    let mut out = Vec::new();
    if size > 0 {
        out.push(format!("size={size}"));
    }
    if mode != 0 {
        out.push(format!("mode={mode:o}"));
    }
    out.join(",")
}

/// Parses one `HostConfig.Mounts` entry (`--mount`).
pub fn parse_mount(m: &Mount) -> Result<MountPoint> {
    let invalid = |why: String| {
        EngineError::InvalidArgument(format!(
            "invalid mount config for type \"{}\": {why}",
            m.kind
        ))
    };
    let kind = match m.kind.as_str() {
        "bind" => MountType::Bind,
        "volume" => MountType::Volume,
        "tmpfs" => MountType::Tmpfs,
        other => {
            return Err(EngineError::InvalidArgument(format!(
                "mount type unknown: \"{other}\""
            )));
        }
    };
    if m.target.is_empty() {
        return Err(invalid("field Target must not be empty".into()));
    }
    if !m.target.starts_with('/') {
        return Err(invalid(format!(
            "invalid mount path: '{}' mount path must be absolute",
            m.target
        )));
    }
    let dst = clean(&m.target);
    if dst == "/" {
        return Err(invalid(
            "invalid specification: destination can't be '/'".into(),
        ));
    }
    let mut p = MountPoint::new(kind, dst);
    p.rw = !m.read_only;
    if kind != MountType::Bind && m.bind_options.is_some() {
        return Err(invalid("field BindOptions must not be specified".into()));
    }
    if kind != MountType::Volume && m.volume_options.is_some() {
        return Err(invalid("field VolumeOptions must not be specified".into()));
    }
    if kind != MountType::Tmpfs && m.tmpfs_options.is_some() {
        return Err(invalid("field TmpfsOptions must not be specified".into()));
    }
    match kind {
        MountType::Bind => {
            if m.source.is_empty() {
                return Err(invalid("field Source must not be empty".into()));
            }
            if !m.source.starts_with('/') {
                return Err(invalid(format!(
                    "invalid mount path: '{}' mount path must be absolute",
                    m.source
                )));
            }
            p.source = clean(&m.source);
            let o = m.bind_options.clone().unwrap_or_default();
            if !o.propagation.is_empty() && !PROPAGATIONS.contains(&o.propagation.as_str()) {
                return Err(invalid(format!(
                    "invalid propagation mode: {}",
                    o.propagation
                )));
            }
            p.propagation = if o.propagation.is_empty() {
                DEFAULT_PROPAGATION.into()
            } else {
                o.propagation
            };
            p.non_recursive = o.non_recursive;
            p.create_source = o.create_mountpoint;
        }
        MountType::Volume => {
            let o = m.volume_options.clone().unwrap_or_default();
            if !o.subpath.is_empty() {
                return Err(invalid("volume subpaths are not supported".into()));
            }
            if !m.source.is_empty() {
                super::valid_name(&m.source)?;
                p.name = m.source.clone();
                p.named = true;
            }
            p.mode = "z".into();
            p.copy_data = !o.no_copy;
            let driver = o.driver_config.clone().unwrap_or_default();
            p.create = Some(VolumeSpec {
                driver: driver.name,
                labels: o.labels.unwrap_or_default(),
                options: driver.options.unwrap_or_default(),
            });
        }
        MountType::Tmpfs => {
            if !m.source.is_empty() {
                return Err(invalid("field Source must not be specified".into()));
            }
            let o = m.tmpfs_options.clone().unwrap_or_default();
            if o.size_bytes < 0 {
                return Err(invalid("invalid tmpfs size".into()));
            }
            if o.mode > 0o7777 {
                return Err(invalid(format!("invalid tmpfs mode: {:o}", o.mode)));
            }
            p.tmpfs_data = tmpfs_data(o.size_bytes, o.mode);
        }
    }
    Ok(p)
}

/// A `--volumes-from` entry: `container[:ro|rw]`.
pub fn parse_volumes_from(spec: &str) -> Result<(String, Option<bool>)> {
    match spec.split_once(':') {
        None => Ok((spec.to_owned(), None)),
        Some((c, "rw")) => Ok((c.to_owned(), Some(true))),
        Some((c, "ro")) => Ok((c.to_owned(), Some(false))),
        Some((_, mode)) => Err(EngineError::InvalidArgument(format!(
            "invalid mode for volumes-from: {mode}"
        ))),
    }
}

/// The points another container's mounts give under `--volumes-from` (its mode, or `rw`
/// forced off by `:ro`).
pub fn inherited(points: &[MountPoint], rw: Option<bool>) -> Vec<MountPoint> {
    points
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if let Some(rw) = rw {
                m.rw = m.rw && rw;
            }
            m.mode = String::new();
            m.copy_data = false;
            m.create = None;
            m
        })
        .collect()
}

/// A container's mount points from its configuration: `inherited` (from `--volumes-from`,
/// overridden by anything given for the same destination), binds, `--mount`s, then an
/// anonymous volume for each `Config.Volumes` path nothing else covers. Two of the container's
/// own mounts on one destination are an error, as is a mount over a `--tmpfs` path.
pub fn plan(
    config: &Config,
    hc: &HostConfig,
    inherited: Vec<MountPoint>,
) -> Result<Vec<MountPoint>> {
    let mut own: BTreeMap<String, MountPoint> = BTreeMap::new();
    let tmpfs: Vec<String> = hc
        .tmpfs
        .iter()
        .flatten()
        .map(|(p, _)| {
            if !p.starts_with('/') {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid mount path: '{p}' mount path must be absolute"
                )));
            }
            let d = clean(p);
            if d == "/" {
                return Err(EngineError::InvalidArgument(
                    "invalid tmpfs mount: destination can't be '/'".into(),
                ));
            }
            Ok(d)
        })
        .collect::<Result<_>>()?;
    let given = hc
        .binds
        .iter()
        .flatten()
        .map(|b| parse_bind(b))
        .chain(hc.mounts.iter().flatten().map(parse_mount));
    for m in given {
        let m = m?;
        if own.contains_key(&m.destination) || tmpfs.contains(&m.destination) {
            return Err(EngineError::InvalidArgument(format!(
                "Duplicate mount point: {}",
                m.destination
            )));
        }
        own.insert(m.destination.clone(), m);
    }
    for m in inherited {
        own.entry(m.destination.clone()).or_insert(m);
    }
    for path in config.volumes.iter().flatten().map(|(p, _)| p) {
        let m = parse_bind(path)?;
        if !own.contains_key(&m.destination) && !tmpfs.contains(&m.destination) {
            own.insert(m.destination.clone(), m);
        }
    }
    Ok(own.into_values().collect())
}

/// Docker's tmpfs mount options for `--tmpfs` data: the safe defaults first, then the
/// user's, later ones winning (`exec` undoes `noexec`).
pub fn tmpfs_options(data: &str) -> Vec<String> {
    let mut out: Vec<String> = vec!["noexec".into(), "nosuid".into(), "nodev".into()];
    for o in data.split(',').filter(|o| !o.is_empty()) {
        let opposite = match o {
            "exec" => Some("noexec"),
            "noexec" => Some("exec"),
            "suid" => Some("nosuid"),
            "nosuid" => Some("suid"),
            "dev" => Some("nodev"),
            "nodev" => Some("dev"),
            "ro" => Some("rw"),
            "rw" => Some("ro"),
            _ => None,
        };
        if let Some(x) = opposite {
            out.retain(|e| e != x);
        }
        if let Some((key, _)) = o.split_once('=') {
            out.retain(|e| !e.starts_with(&format!("{key}=")));
        }
        if !out.iter().any(|e| e == o) {
            out.push(o.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse_like_docker() {
        let m = parse_bind("data:/var/lib/db").unwrap();
        assert_eq!(
            (
                m.kind,
                m.name.as_str(),
                m.destination.as_str(),
                m.mode.as_str(),
                m.rw
            ),
            (MountType::Volume, "data", "/var/lib/db", "z", true)
        );
        assert!(m.named && m.copy_data);
        let m = parse_bind("/srv/site/:/usr/share/html:ro").unwrap();
        assert_eq!(
            (m.kind, m.source.as_str(), m.destination.as_str(), m.rw),
            (MountType::Bind, "/srv/site", "/usr/share/html", false)
        );
        assert_eq!(
            (m.mode.as_str(), m.propagation.as_str()),
            ("ro", "rprivate")
        );
        assert!(m.create_source);
        let m = parse_bind("/a:/b:rshared,ro").unwrap();
        assert_eq!(m.propagation, "rshared");
        let m = parse_bind("n2:/c:nocopy").unwrap();
        assert!(!m.copy_data && m.rw);
        let m = parse_bind("/anon").unwrap();
        assert_eq!(
            (m.kind, m.name.as_str(), m.named),
            (MountType::Volume, "", false)
        );
        assert_eq!(m.mode, "");
        for bad in [
            "/a:/",
            "a:b",
            "/a:/b:ro,rw",
            "/a:/b:foo",
            "/a:/b:c:d",
            ":/b",
            "x:/b",
            "../../etc:/b",
            "/a:/b:nocopy",
            "v1:/b:rshared",
        ] {
            assert!(parse_bind(bad).is_err(), "{bad} must be refused");
        }
        assert_eq!(
            parse_bind("/tmp/a:/").unwrap_err().to_string(),
            "invalid volume specification: '/tmp/a:/': invalid mount config for type \"bind\": \
             invalid specification: destination can't be '/'"
        );
    }

    #[test]
    fn mounts_parse_like_docker() {
        let m = parse_mount(&Mount {
            kind: "tmpfs".into(),
            target: "/t".into(),
            tmpfs_options: Some(crate::config::TmpfsOptions {
                size_bytes: 1 << 20,
                mode: 0o1770,
            }),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.tmpfs_data, "size=1048576,mode=1770");
        let m = parse_mount(&Mount {
            kind: "volume".into(),
            target: "/g".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (m.name.as_str(), m.named, m.mode.as_str()),
            ("", false, "z")
        );
        let m = parse_mount(&Mount {
            kind: "bind".into(),
            source: "/x".into(),
            target: "/y".into(),
            read_only: true,
            ..Default::default()
        })
        .unwrap();
        assert!(!m.rw && !m.create_source);
        for bad in [
            Mount {
                kind: "npipe".into(),
                target: "/x".into(),
                ..Default::default()
            },
            Mount {
                kind: "bind".into(),
                target: "/x".into(),
                ..Default::default()
            },
            Mount {
                kind: "tmpfs".into(),
                source: "/s".into(),
                target: "/x".into(),
                ..Default::default()
            },
            Mount {
                kind: "volume".into(),
                target: "rel".into(),
                ..Default::default()
            },
            Mount {
                kind: "volume".into(),
                source: "/abs".into(),
                target: "/x".into(),
                ..Default::default()
            },
        ] {
            assert!(parse_mount(&bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn plans_merge_sources_and_refuse_duplicates() {
        let config = Config {
            volumes: Some(BTreeMap::from([
                ("/data".to_owned(), serde_json::json!({})),
                ("/logs".to_owned(), serde_json::json!({})),
            ])),
            ..Default::default()
        };
        let hc = HostConfig {
            binds: Some(vec!["named:/data".into()]),
            ..Default::default()
        };
        let from = vec![MountPoint {
            name: "shared".into(),
            ..MountPoint::new(MountType::Volume, "/shared".into())
        }];
        let plan = plan(&config, &hc, inherited(&from, Some(false))).unwrap();
        let dests: Vec<_> = plan.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(dests, ["/data", "/logs", "/shared"]);
        assert_eq!(plan[0].name, "named", "the bind wins over the image volume");
        assert!(plan[1].name.is_empty(), "an anonymous volume");
        assert!(!plan[2].rw, ":ro from volumes-from");

        let dup = HostConfig {
            binds: Some(vec!["/a:/b".into(), "/c:/b/".into()]),
            ..Default::default()
        };
        assert_eq!(
            super::plan(&Config::default(), &dup, vec![])
                .unwrap_err()
                .to_string(),
            "Duplicate mount point: /b"
        );
        let over_tmpfs = HostConfig {
            binds: Some(vec!["/a:/t".into()]),
            tmpfs: Some(BTreeMap::from([("/t".to_owned(), String::new())])),
            ..Default::default()
        };
        assert!(super::plan(&Config::default(), &over_tmpfs, vec![]).is_err());
    }

    #[test]
    fn tmpfs_options_merge_over_the_defaults() {
        assert_eq!(tmpfs_options(""), ["noexec", "nosuid", "nodev"]);
        assert_eq!(
            tmpfs_options("exec,size=2m,size=3m"),
            ["nosuid", "nodev", "exec", "size=3m"]
        );
    }

    #[test]
    fn paths_clean_lexically() {
        assert_eq!(clean("/a//b/./c/"), "/a/b/c");
        assert_eq!(clean("/a/../../b"), "/b");
        assert_eq!(clean("/"), "/");
    }
}
