//! Legacy container links (`--link target[:alias]`), as dockerd keeps them on the default
//! bridge: checked and written down at create as `/target:/name/alias`, and at start turned
//! into `/etc/hosts` lines (`ip alias hostname name`) and the `ALIAS_PORT_*`, `ALIAS_NAME`
//! and `ALIAS_ENV_*` variables of moby's `links` package. A target must run, on the default
//! bridge, when its linker starts. On a user-defined network a link is instead a DNS name of
//! the linker's endpoint (`EndpointState::links`, answered by the embedded DNS).

use crate::container::ContainerRecord;
use crate::error::{EngineError, Result};

impl crate::Engine {
    /// The names legacy links give containers, by target name: `/linker/alias`, which moby
    /// lists among the target's `Names`.
    pub fn link_names(&self) -> std::collections::HashMap<String, Vec<String>> {
        let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
        for h in self.handles() {
            let r = crate::lock(&h.rec);
            for link in r
                .host_config
                .links
                .iter()
                .flatten()
                .filter_map(|l| parse(l).ok())
            {
                out.entry(link.target)
                    .or_default()
                    .push(format!("/{}/{}", r.name, link.alias));
            }
        }
        out
    }
}

/// One link as stored: the target's name (without `/`) and the alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub target: String,
    pub alias: String,
}

/// Reads a link as a client gives it (`target`, `target:alias`) or as stored
/// (`/target:/name/alias`).
pub(crate) fn parse(s: &str) -> Result<Link> {
    let (target, alias) = s.split_once(':').unwrap_or((s, ""));
    let target = target.trim_start_matches('/');
    let alias = alias.rsplit('/').next().unwrap_or("");
    if target.is_empty() {
        return Err(EngineError::InvalidArgument(format!("invalid link: {s:?}")));
    }
    Ok(Link {
        target: target.to_owned(),
        alias: if alias.is_empty() { target } else { alias }.to_owned(),
    })
}

/// How a link is written into `HostConfig.Links`, as dockerd shows it.
pub(crate) fn stored(link: &Link, name: &str) -> String {
    format!("/{}:/{name}/{}", link.target, link.alias)
}

/// The `/etc/hosts` line of a link: the alias, the target's hostname, and its name when the
/// alias differs.
pub(crate) fn hosts_line(link: &Link, ip: &str, target: &ContainerRecord) -> String {
    let hostname = if target.config.hostname.is_empty() {
        target.short_id()
    } else {
        target.config.hostname.as_str()
    };
    let mut names = format!("{} {hostname}", link.alias);
    if link.alias != target.name {
        names.push(' ');
        names.push_str(&target.name);
    }
    format!("{ip}\t{names}\n")
}

/// The variables a link gives its linker (moby's `Link.ToEnv`, without its `_START`/`_END`
/// range variables): the lowest exposed port as `ALIAS_PORT`, each exposed port's
/// `ALIAS_PORT_<port>_<PROTO>[_ADDR|_PORT|_PROTO]`, `ALIAS_NAME`, and the target's variables
/// (but `HOME` and `PATH`) as `ALIAS_ENV_<name>`.
pub(crate) fn env(link: &Link, linker: &str, ip: &str, target: &ContainerRecord) -> Vec<String> {
    let alias = link.alias.to_uppercase().replace('-', "_");
    let mut ports: Vec<(u16, String)> = target
        .config
        .exposed_ports
        .iter()
        .flat_map(|m| m.keys())
        .filter_map(|k| crate::networks::parse_port_key(k).ok())
        .flat_map(|(proto, list)| {
            list.into_iter()
                .map(move |p| (p, proto.as_str().to_owned()))
        })
        .collect();
    // tcp before udp at the same number, as moby sorts them.
    ports.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut out = Vec::new();
    if let Some((port, proto)) = ports.first() {
        out.push(format!("{alias}_PORT={proto}://{ip}:{port}"));
    }
    for (port, proto) in &ports {
        let up = proto.to_uppercase();
        out.push(format!("{alias}_PORT_{port}_{up}={proto}://{ip}:{port}"));
        out.push(format!("{alias}_PORT_{port}_{up}_ADDR={ip}"));
        out.push(format!("{alias}_PORT_{port}_{up}_PORT={port}"));
        out.push(format!("{alias}_PORT_{port}_{up}_PROTO={proto}"));
    }
    out.push(format!("{alias}_NAME=/{linker}/{}", link.alias));
    for v in target.config.env.iter().flatten() {
        if let Some((name, val)) = v.split_once('=') {
            if name != "HOME" && name != "PATH" {
                out.push(format!("{alias}_ENV_{name}={val}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_parse_as_given_and_as_stored() {
        let l = parse("db:database").unwrap();
        assert_eq!((l.target.as_str(), l.alias.as_str()), ("db", "database"));
        assert_eq!(stored(&l, "web"), "/db:/web/database");
        assert_eq!(parse("/db:/web/database").unwrap(), l);
        let l = parse("db").unwrap();
        assert_eq!(l.alias, "db");
        assert!(parse(":x").is_err());
    }

    #[test]
    fn link_variables_follow_moby() {
        let target: ContainerRecord = serde_json::from_value(serde_json::json!({
            "id": "0123456789abcdef", "name": "db", "created": "2024-01-01T00:00:00Z",
            "config": {"Image": "busybox", "Env": ["PATH=/bin", "PGUSER=me"],
                       "ExposedPorts": {"5432/tcp": {}, "53/udp": {}}},
            "host_config": {}, "image_id": "", "path": "", "args": [],
            "state": crate::container::State::default(), "restart_count": 0,
            "has_been_started": true
        }))
        .unwrap();
        let l = parse("db:my-db").unwrap();
        assert_eq!(
            env(&l, "web", "172.17.0.2", &target),
            [
                "MY_DB_PORT=udp://172.17.0.2:53",
                "MY_DB_PORT_53_UDP=udp://172.17.0.2:53",
                "MY_DB_PORT_53_UDP_ADDR=172.17.0.2",
                "MY_DB_PORT_53_UDP_PORT=53",
                "MY_DB_PORT_53_UDP_PROTO=udp",
                "MY_DB_PORT_5432_TCP=tcp://172.17.0.2:5432",
                "MY_DB_PORT_5432_TCP_ADDR=172.17.0.2",
                "MY_DB_PORT_5432_TCP_PORT=5432",
                "MY_DB_PORT_5432_TCP_PROTO=tcp",
                "MY_DB_NAME=/web/my-db",
                "MY_DB_ENV_PGUSER=me",
            ]
        );
        assert_eq!(
            hosts_line(&l, "172.17.0.2", &target),
            "172.17.0.2\tmy-db 0123456789ab db\n"
        );
    }
}
