//! Berth's nftables table, `inet berth`: NAT to the outside, published ports, and isolation
//! between networks.
//!
//! [`build`] turns a [`Ruleset`] (every network and every published port) into the whole
//! table as `nft -j` JSON, a pure function; [`Nft::apply`] loads it in one transaction
//! (`add table; delete table; add table; chains; rules` through `nft -j -f -`), so the table
//! is replaced atomically, whether it existed or not, and a daemon start simply applies the
//! ruleset built from its state. [`Nft::remove_table`] deletes it. Berth never reads, edits or
//! flushes any other table. (The rules are plain `serde_json` values rather than the
//! `nftables` crate's typed schema: the subset used here is small, and tests read it directly.)
//!
//! Chains and what they do:
//! - `prerouting` (nat, dstnat) and `output` (nat, -100): traffic to a local address
//!   (`fib daddr type local`, which includes 127.0.0.1 for host-local traffic) jumps to
//!   `published`, which DNATs each published port to its container. A port published on a
//!   specific host address only matches that destination. `::1` is left alone (the kernel
//!   cannot route IPv6 loopback traffic to another interface).
//! - `postrouting` (nat, srcnat): a network's subnets are masqueraded when leaving through
//!   anything but their own bridge (not for `--internal` networks, nor with
//!   `enable_ip_masquerade=false`); DNATed connections into a bridge are masqueraded when they
//!   come from a local address (127.0.0.1 needs it, with `route_localnet` on the bridge) or
//!   from the same bridge (hairpin: a container reaching itself or a neighbour through the
//!   host's address, with no `br_netfilter` needed).
//! - `forward` (filter, policy accept): `--internal` bridges cannot exchange packets with any
//!   other interface; replies (`ct state established,related`) and DNATed connections (published
//!   ports) are accepted; then traffic into a bridge from any other interface (another Berth
//!   network, the outside) is dropped, which both isolates networks from each other and keeps
//!   unpublished container ports unreachable from outside; `enable_icc=false` also drops
//!   traffic between containers of the same bridge (only seen with `br_netfilter`).
//!
//! # Other firewalls
//! nftables evaluates every table's base chains on a hook, and an `accept` in one table does
//! not stop another table from dropping the packet: a verdict is final only when it is a
//! drop. So a base chain elsewhere with a drop verdict or policy — typically Docker's (or
//! iptables-nft's) `FORWARD` chain with policy `DROP` when Docker is installed, or a host
//! firewall such as firewalld or ufw — still drops Berth's forwarded traffic (containers
//! reaching the outside, published ports from other hosts), and Berth will not edit those
//! rules. The user can either allow Berth's bridges there, e.g.
//! `iptables -I DOCKER-USER -i berth0 -j ACCEPT` plus `-o berth0 -m conntrack --ctstate
//! RELATED,ESTABLISHED -j ACCEPT` (and the same for each `br-*` bridge) or, with nftables,
//! an `accept` for `iifname "berth0"`/`oifname "berth0"` in that table's forward chain; or
//! stop the other software from installing a drop policy (Docker: `"iptables": false`, which
//! loses Docker's own networking). NAT is not affected in the same way: the first NAT rule
//! to match a new connection decides its mapping.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{NetworkError, Result};

/// The table's family and name.
pub const FAMILY: &str = "inet";
pub const TABLE: &str = "berth";

/// One network's bridge, as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRules {
    /// Its bridge interface.
    pub bridge: String,
    /// Its subnets (IPv4 and IPv6).
    pub subnets: Vec<IpNet>,
    /// `--internal`: no traffic in or out of the bridge.
    pub internal: bool,
    /// `com.docker.network.bridge.enable_ip_masquerade` (default true).
    pub masquerade: bool,
    /// `com.docker.network.bridge.enable_icc` (default true).
    pub icc: bool,
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// `tcp`, `udp` or `sctp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Self::Tcp),
            "udp" => Ok(Self::Udp),
            "sctp" => Ok(Self::Sctp),
            _ => Err(NetworkError::invalid(format!("invalid proto: {s}"))),
        }
    }
}

/// One published port of one container address (a range is one mapping per port; a container
/// with IPv4 and IPv6 addresses gets one mapping per family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The bridge of the network the container is reached through.
    pub bridge: String,
    pub protocol: Protocol,
    /// The host address the port is published on; `None` (or an unspecified address) is
    /// every local address of the container address's family.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_ip: IpAddr,
    pub container_port: u16,
}

/// Everything the table is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    pub networks: Vec<NetworkRules>,
    pub ports: Vec<PortMapping>,
}

/// Checks a name that goes into an `iifname`/`oifname` match: nft treats a trailing `*` as a
/// wildcard, so only plain interface-name characters are allowed.
fn check_ifname(name: &str) -> Result<()> {
    crate::link::validate_ifname(name)?;
    if name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
    {
        Ok(())
    } else {
        Err(NetworkError::invalid(format!(
            "bridge name {name:?} has characters Berth does not put in firewall rules"
        )))
    }
}

/// Builds the whole `inet berth` table as one `nft -j` batch (see the module doc).
pub fn build(ruleset: &Ruleset) -> Result<Value> {
    let mut bridges = BTreeSet::new();
    for n in &ruleset.networks {
        check_ifname(&n.bridge)?;
        if !bridges.insert(n.bridge.as_str()) {
            return Err(NetworkError::invalid(format!(
                "bridge {} appears twice in the ruleset",
                n.bridge
            )));
        }
    }
    for p in &ruleset.ports {
        check_ifname(&p.bridge)?;
        if let Some(h) = p.host_ip.filter(|h| !h.is_unspecified()) {
            if h.is_ipv4() != p.container_ip.is_ipv4() {
                return Err(NetworkError::invalid(format!(
                    "host address {h} and container address {} are of different families",
                    p.container_ip
                )));
            }
        }
    }

    let mut cmds = vec![
        json!({"metainfo": {"json_schema_version": 1}}),
        json!({"add": {"table": table()}}),
        json!({"delete": {"table": table()}}),
        json!({"add": {"table": table()}}),
        base_chain("prerouting", "nat", "prerouting", -100),
        base_chain("output", "nat", "output", -100),
        base_chain("postrouting", "nat", "postrouting", 100),
        base_chain("forward", "filter", "forward", 0),
        json!({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": "published"}}}),
    ];
    let local_daddr = matches(fib("daddr"), "==", json!("local"));

    // Published ports: traffic to a local address.
    cmds.push(rule(
        "prerouting",
        vec![
            local_daddr.clone(),
            json!({"jump": {"target": "published"}}),
        ],
        None,
    ));
    cmds.push(rule(
        "output",
        vec![
            matches(meta("nfproto"), "==", json!("ipv4")),
            local_daddr.clone(),
            json!({"jump": {"target": "published"}}),
        ],
        None,
    ));
    cmds.push(rule(
        "output",
        vec![
            matches(payload("ip6", "daddr"), "!=", json!("::1")),
            local_daddr,
            json!({"jump": {"target": "published"}}),
        ],
        None,
    ));
    for p in &ruleset.ports {
        let v4 = p.container_ip.is_ipv4();
        let mut expr = Vec::new();
        match p.host_ip.filter(|h| !h.is_unspecified()) {
            Some(h) => expr.push(matches(payload(ip_proto(v4), "daddr"), "==", json!(h))),
            None => expr.push(matches(
                meta("nfproto"),
                "==",
                json!(if v4 { "ipv4" } else { "ipv6" }),
            )),
        }
        expr.push(matches(
            payload(p.protocol.as_str(), "dport"),
            "==",
            json!(p.host_port),
        ));
        expr.push(json!({"dnat": {
            "family": ip_proto(v4),
            "addr": p.container_ip.to_string(),
            "port": p.container_port,
        }}));
        let host = match p.host_ip {
            Some(IpAddr::V6(h)) if !h.is_unspecified() => format!("[{h}]"),
            Some(h) if !h.is_unspecified() => h.to_string(),
            _ => "*".to_owned(),
        };
        let comment = format!(
            "{host}:{}/{} -> {}",
            p.host_port,
            p.protocol.as_str(),
            std::net::SocketAddr::new(p.container_ip, p.container_port)
        );
        cmds.push(rule("published", expr, Some(comment)));
    }

    // Source NAT.
    for n in &ruleset.networks {
        if !n.internal && n.masquerade {
            for s in &n.subnets {
                cmds.push(rule(
                    "postrouting",
                    vec![
                        matches(
                            payload(ip_proto(s.addr().is_ipv4()), "saddr"),
                            "==",
                            prefix(s),
                        ),
                        matches(meta("oifname"), "!=", json!(n.bridge)),
                        json!({"masquerade": null}),
                    ],
                    Some(format!("{} to the outside", n.bridge)),
                ));
            }
        }
    }
    let port_bridges: BTreeSet<&str> = ruleset.ports.iter().map(|p| p.bridge.as_str()).collect();
    for bridge in &port_bridges {
        cmds.push(rule(
            "postrouting",
            vec![
                matches(meta("oifname"), "==", json!(bridge)),
                matches(ct("status"), "in", json!("dnat")),
                matches(fib("saddr"), "==", json!("local")),
                json!({"masquerade": null}),
            ],
            Some(format!("host-local traffic to published ports on {bridge}")),
        ));
        if let Some(n) = ruleset.networks.iter().find(|n| n.bridge == *bridge) {
            for s in &n.subnets {
                cmds.push(rule(
                    "postrouting",
                    vec![
                        matches(meta("oifname"), "==", json!(bridge)),
                        matches(ct("status"), "in", json!("dnat")),
                        matches(
                            payload(ip_proto(s.addr().is_ipv4()), "saddr"),
                            "==",
                            prefix(s),
                        ),
                        json!({"masquerade": null}),
                    ],
                    Some(format!("hairpin on {bridge}")),
                ));
            }
        }
    }

    // Forward filter.
    for n in ruleset.networks.iter().filter(|n| n.internal) {
        cmds.push(rule(
            "forward",
            vec![
                matches(meta("iifname"), "==", json!(n.bridge)),
                matches(meta("oifname"), "!=", json!(n.bridge)),
                json!({"drop": null}),
            ],
            Some(format!("{} is internal", n.bridge)),
        ));
        cmds.push(rule(
            "forward",
            vec![
                matches(meta("oifname"), "==", json!(n.bridge)),
                matches(meta("iifname"), "!=", json!(n.bridge)),
                json!({"drop": null}),
            ],
            Some(format!("{} is internal", n.bridge)),
        ));
    }
    if !ruleset.networks.is_empty() {
        cmds.push(rule(
            "forward",
            vec![
                matches(ct("state"), "in", json!(["established", "related"])),
                json!({"accept": null}),
            ],
            None,
        ));
        cmds.push(rule(
            "forward",
            vec![
                matches(ct("status"), "in", json!("dnat")),
                json!({"accept": null}),
            ],
            Some("published ports".to_owned()),
        ));
    }
    for n in &ruleset.networks {
        cmds.push(rule(
            "forward",
            vec![
                matches(meta("oifname"), "==", json!(n.bridge)),
                matches(meta("iifname"), "!=", json!(n.bridge)),
                json!({"drop": null}),
            ],
            Some(format!(
                "only published ports and replies into {}",
                n.bridge
            )),
        ));
        if !n.icc {
            cmds.push(rule(
                "forward",
                vec![
                    matches(meta("iifname"), "==", json!(n.bridge)),
                    matches(meta("oifname"), "==", json!(n.bridge)),
                    json!({"drop": null}),
                ],
                Some(format!("no inter-container traffic on {}", n.bridge)),
            ));
        }
    }
    Ok(json!({"nftables": cmds}))
}

/// The batch that deletes the table (and succeeds when there is none).
pub fn removal() -> Value {
    json!({"nftables": [
        {"metainfo": {"json_schema_version": 1}},
        {"add": {"table": table()}},
        {"delete": {"table": table()}},
    ]})
}

fn table() -> Value {
    json!({"family": FAMILY, "name": TABLE})
}

fn base_chain(name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    json!({"add": {"chain": {
        "family": FAMILY, "table": TABLE, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": "accept",
    }}})
}

fn rule(chain: &str, expr: Vec<Value>, comment: Option<String>) -> Value {
    let mut r = json!({"family": FAMILY, "table": TABLE, "chain": chain, "expr": expr});
    if let Some(c) = comment {
        r["comment"] = json!(c);
    }
    json!({"add": {"rule": r}})
}

fn matches(left: Value, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn ct(key: &str) -> Value {
    json!({"ct": {"key": key}})
}

fn fib(flag: &str) -> Value {
    json!({"fib": {"result": "type", "flags": [flag]}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn prefix(net: &IpNet) -> Value {
    json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
}

fn ip_proto(v4: bool) -> &'static str {
    if v4 { "ip" } else { "ip6" }
}

/// Runs `nft`. Calls block (a short-lived child process): from async code, use
/// `spawn_blocking`. The child acts on the network namespace of the calling thread.
#[derive(Debug, Clone)]
pub struct Nft {
    program: PathBuf,
}

impl Default for Nft {
    fn default() -> Self {
        Self {
            program: PathBuf::from("nft"),
        }
    }
}

impl Nft {
    /// `nft` from `PATH`.
    pub fn new() -> Self {
        Self::default()
    }

    /// A specific `nft` binary.
    pub fn with_program(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
        }
    }

    /// Replaces the table with the one built from `ruleset`, atomically.
    pub fn apply(&self, ruleset: &Ruleset) -> Result<()> {
        self.run_batch(&build(ruleset)?)
    }

    /// Deletes the table and everything in it; fine when it does not exist.
    pub fn remove_table(&self) -> Result<()> {
        self.run_batch(&removal())
    }

    /// Whether the table exists.
    pub fn table_exists(&self) -> Result<bool> {
        let out = Command::new(&self.program)
            .args(["-j", "list", "tables", FAMILY])
            .stdin(Stdio::null())
            .output()
            .map_err(NetworkError::io(format!("run {}", self.program.display())))?;
        if !out.status.success() {
            return Err(NetworkError::Nft(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| NetworkError::Nft(format!("unreadable `nft -j list tables`: {e}")))?;
        Ok(v["nftables"].as_array().is_some_and(|items| {
            items
                .iter()
                .any(|i| i["table"]["name"] == TABLE && i["table"]["family"] == FAMILY)
        }))
    }

    /// Loads one JSON batch with `nft -j -f -` (one transaction).
    pub fn run_batch(&self, batch: &Value) -> Result<()> {
        use std::io::Write;
        let mut child = Command::new(&self.program)
            .args(["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(NetworkError::io(format!("run {}", self.program.display())))?;
        let body = serde_json::to_vec(batch)
            .map_err(|e| NetworkError::Nft(format!("serialize ruleset: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error shows up as nft's own failure below.
            let _ = stdin.write_all(&body);
        }
        let out = child
            .wait_with_output()
            .map_err(NetworkError::io("wait for nft"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(NetworkError::Nft(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders one expression of our subset the way `nft list` would, for readable asserts.
    fn render(e: &Value) -> String {
        if let Some(m) = e.get("match") {
            let op = m["op"].as_str().unwrap();
            let op = if op == "==" || op == "in" {
                String::new()
            } else {
                format!("{op} ")
            };
            return format!("{} {op}{}", left(&m["left"]), right(&m["right"]));
        }
        if let Some(j) = e.get("jump") {
            return format!("jump {}", j["target"].as_str().unwrap());
        }
        if let Some(d) = e.get("dnat") {
            let addr = d["addr"].as_str().unwrap();
            let addr = if addr.contains(':') {
                format!("[{addr}]")
            } else {
                addr.to_owned()
            };
            return format!(
                "dnat {} to {addr}:{}",
                d["family"].as_str().unwrap(),
                d["port"]
            );
        }
        let (k, _) = e.as_object().unwrap().iter().next().unwrap();
        k.clone()
    }
    fn left(l: &Value) -> String {
        if let Some(m) = l.get("meta") {
            return format!("meta {}", m["key"].as_str().unwrap());
        }
        if let Some(c) = l.get("ct") {
            return format!("ct {}", c["key"].as_str().unwrap());
        }
        if let Some(f) = l.get("fib") {
            return format!("fib {} type", f["flags"][0].as_str().unwrap());
        }
        let p = &l["payload"];
        format!(
            "{} {}",
            p["protocol"].as_str().unwrap(),
            p["field"].as_str().unwrap()
        )
    }
    fn right(r: &Value) -> String {
        match r {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Array(a) => a.iter().map(right).collect::<Vec<_>>().join(","),
            _ => {
                let p = &r["prefix"];
                format!("{}/{}", p["addr"].as_str().unwrap(), p["len"])
            }
        }
    }
    /// The rules of `chain`, rendered.
    fn chain(v: &Value, chain: &str) -> Vec<String> {
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c.get("add").and_then(|a| a.get("rule")))
            .filter(|r| r["chain"] == chain)
            .map(|r| {
                r["expr"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(render)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    fn net(bridge: &str, subnets: &[&str], internal: bool) -> NetworkRules {
        NetworkRules {
            bridge: bridge.into(),
            subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
            internal,
            masquerade: true,
            icc: true,
        }
    }

    fn sample() -> Ruleset {
        Ruleset {
            networks: vec![
                net("berth0", &["172.17.0.0/16", "fd00:1::/64"], false),
                net("br-int", &["172.20.0.0/16"], true),
            ],
            ports: vec![
                PortMapping {
                    bridge: "berth0".into(),
                    protocol: Protocol::Tcp,
                    host_ip: None,
                    host_port: 8080,
                    container_ip: "172.17.0.2".parse().unwrap(),
                    container_port: 80,
                },
                PortMapping {
                    bridge: "berth0".into(),
                    protocol: Protocol::Udp,
                    host_ip: Some("127.0.0.1".parse().unwrap()),
                    host_port: 5353,
                    container_ip: "172.17.0.3".parse().unwrap(),
                    container_port: 53,
                },
                PortMapping {
                    bridge: "berth0".into(),
                    protocol: Protocol::Tcp,
                    host_ip: Some("::".parse().unwrap()),
                    host_port: 8080,
                    container_ip: "fd00:1::2".parse().unwrap(),
                    container_port: 80,
                },
            ],
        }
    }

    #[test]
    fn batch_replaces_only_our_table_atomically() {
        let v = build(&sample()).unwrap();
        let cmds = v["nftables"].as_array().unwrap();
        // add, delete, add: works whether or not the table exists, in one transaction.
        assert_eq!(
            cmds[1],
            json!({"add": {"table": {"family": "inet", "name": "berth"}}})
        );
        assert_eq!(
            cmds[2],
            json!({"delete": {"table": {"family": "inet", "name": "berth"}}})
        );
        assert_eq!(cmds[3], cmds[1]);
        for c in &cmds[1..] {
            let (_, obj) = c.as_object().unwrap().iter().next().unwrap();
            let (_, inner) = obj.as_object().unwrap().iter().next().unwrap();
            let table = inner.get("table").or_else(|| inner.get("name")).unwrap();
            assert_eq!(table, "berth", "{c}");
            assert_eq!(inner["family"], "inet");
            assert!(c.get("flush").is_none());
        }
        let removal = removal();
        assert_eq!(removal["nftables"][2]["delete"]["table"]["name"], "berth");
    }

    #[test]
    fn published_ports() {
        let v = build(&sample()).unwrap();
        assert_eq!(
            chain(&v, "prerouting"),
            ["fib daddr type local jump published"]
        );
        assert_eq!(
            chain(&v, "output"),
            [
                "meta nfproto ipv4 fib daddr type local jump published",
                "ip6 daddr != ::1 fib daddr type local jump published",
            ]
        );
        assert_eq!(
            chain(&v, "published"),
            [
                "meta nfproto ipv4 tcp dport 8080 dnat ip to 172.17.0.2:80",
                "ip daddr 127.0.0.1 udp dport 5353 dnat ip to 172.17.0.3:53",
                "meta nfproto ipv6 tcp dport 8080 dnat ip6 to [fd00:1::2]:80",
            ]
        );
    }

    #[test]
    fn source_nat() {
        let v = build(&sample()).unwrap();
        let post = chain(&v, "postrouting");
        assert_eq!(
            post,
            [
                "ip saddr 172.17.0.0/16 meta oifname != berth0 masquerade",
                "ip6 saddr fd00:1::/64 meta oifname != berth0 masquerade",
                "meta oifname berth0 ct status dnat fib saddr type local masquerade",
                "meta oifname berth0 ct status dnat ip saddr 172.17.0.0/16 masquerade",
                "meta oifname berth0 ct status dnat ip6 saddr fd00:1::/64 masquerade",
            ]
        );
        // The internal network is never masqueraded.
        assert!(!post.iter().any(|r| r.contains("172.20.")));
        // Nor is one with masquerading turned off.
        let mut rs = sample();
        rs.networks[0].masquerade = false;
        rs.ports.clear();
        assert!(chain(&build(&rs).unwrap(), "postrouting").is_empty());
    }

    #[test]
    fn forward_filter() {
        let v = build(&sample()).unwrap();
        assert_eq!(
            chain(&v, "forward"),
            [
                "meta iifname br-int meta oifname != br-int drop",
                "meta oifname br-int meta iifname != br-int drop",
                "ct state established,related accept",
                "ct status dnat accept",
                "meta oifname berth0 meta iifname != berth0 drop",
                "meta oifname br-int meta iifname != br-int drop",
            ]
        );
        let mut rs = sample();
        rs.networks[0].icc = false;
        let fwd = chain(&build(&rs).unwrap(), "forward");
        assert!(fwd.contains(&"meta iifname berth0 meta oifname berth0 drop".to_owned()));
    }

    #[test]
    fn empty_ruleset_is_just_the_chains() {
        let v = build(&Ruleset::default()).unwrap();
        for c in [
            "prerouting",
            "output",
            "postrouting",
            "forward",
            "published",
        ] {
            assert!(chain(&v, c).len() <= 2, "{c}");
        }
        assert!(chain(&v, "forward").is_empty());
    }

    #[test]
    fn bad_input_is_refused() {
        let mut rs = sample();
        rs.networks[0].bridge = "br*".into();
        assert!(build(&rs).is_err());
        let mut rs = sample();
        rs.networks.push(rs.networks[0].clone());
        assert!(build(&rs).is_err());
        let mut rs = sample();
        rs.ports[1].host_ip = Some("::1".parse().unwrap());
        assert!(build(&rs).is_err());
        let mut rs = sample();
        rs.ports[0].bridge = "bad\"name".into();
        assert!(build(&rs).is_err());
    }

    #[test]
    fn protocols_parse() {
        assert_eq!("TCP".parse::<Protocol>().unwrap(), Protocol::Tcp);
        assert_eq!("udp".parse::<Protocol>().unwrap(), Protocol::Udp);
        assert!("icmp".parse::<Protocol>().is_err());
    }
}
