//! Networks: Docker's predefined `bridge`, `host` and `none`, and user-defined bridge
//! networks. Records live in the state database; the addresses handed out are derived state,
//! rebuilt at daemon start from the containers that run. The kernel side (bridges, veths,
//! the `inet berth` nftables table, host ports, the embedded DNS) is `berth-network`'s; this
//! module decides what should exist and calls it.

mod endpoints;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use berth_network::dns::DnsServer;
use berth_network::ipam::{self, SubnetConfig};
use berth_network::link::{self, BridgeConfig, Netlink};
use berth_network::nft::{self, Nft};
use berth_network::ports::PortAllocator;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use berth_network::ipam::AddressPool;
pub use endpoints::{BuildNetwork, EndpointState, PublishedPort, parse_port_key};

use crate::error::{EngineError, Result};
use crate::{Engine, db, lock};

/// The default network's name, as in Docker.
pub const DEFAULT: &str = "bridge";

/// A network as the engine keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    pub created: DateTime<Utc>,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// The subnets, gateways and ranges (chosen ones filled in), as `IPAM.Config` shows.
    pub ipam: Vec<SubnetConfig>,
    /// The bridge device (empty for `host`/`null`).
    pub bridge: String,
    /// `bridge`, `host`, `none`: made by the daemon, never removed.
    pub predefined: bool,
    /// Subnets the user gave without a gateway: `IPAM.Config` leaves their gateway out.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub implied_gateways: BTreeSet<IpNet>,
}

impl NetworkRecord {
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }

    /// A user-defined bridge: containers on it resolve each other by name.
    pub fn has_dns(&self) -> bool {
        self.is_bridge() && !self.predefined
    }

    fn option_on(&self, key: &str) -> bool {
        self.options.get(key).is_none_or(|v| v != "false")
    }
}

/// One network and the addresses handed out on it.
pub(crate) struct NetState {
    pub rec: NetworkRecord,
    pub subnets: Vec<ipam::Subnet>,
}

impl NetState {
    fn new(rec: NetworkRecord) -> Result<Self> {
        let subnets = rec
            .ipam
            .iter()
            .map(ipam::Subnet::new)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self { rec, subnets })
    }
}

/// The live networking of the daemon.
pub(crate) struct NetRuntime {
    pub netlink: Netlink,
    pub ports: PortAllocator,
    /// Embedded DNS servers by container id.
    pub dns: Mutex<HashMap<String, DnsServer>>,
    /// One ruleset change at a time, computed from the state it applies.
    pub apply_lock: tokio::sync::Mutex<()>,
    /// Where unknown names go (the host's resolvers).
    pub upstreams: Vec<std::net::SocketAddr>,
    /// What `info` should warn about the host's networking.
    pub warnings: Vec<String>,
}

/// Whether another firewall (Docker's, typically) drops forwarded traffic by policy: an
/// nftables accept of ours cannot override that, so containers on Berth's bridges cannot
/// reach the outside until the host allows it.
fn forward_policy_warning() -> Option<String> {
    let out = std::process::Command::new("iptables")
        .args(["-w", "2", "-S", "FORWARD"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .any(|l| l.trim() == "-P FORWARD DROP")
        .then(|| {
            "WARNING: the host's iptables FORWARD policy is DROP (Docker sets it): traffic between \
         Berth's bridges and the outside is dropped there; allow it with \
         `iptables -I DOCKER-USER -i berth0 -j ACCEPT` and `-o berth0 -m conntrack --ctstate \
         RELATED,ESTABLISHED -j ACCEPT` (and the same for user networks' br-* bridges)"
                .to_owned()
        })
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    pub name: String,
    pub driver: String,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub ipam: Vec<IpamRequest>,
}

/// One `IPAM.Config` entry as the API gives it (strings, checked here).
#[derive(Debug, Clone, Default)]
pub struct IpamRequest {
    pub subnet: String,
    pub ip_range: String,
    pub gateway: String,
    pub aux_addresses: BTreeMap<String, String>,
}

pub(crate) fn random_id() -> String {
    use rand::Rng;
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

impl From<berth_network::NetworkError> for EngineError {
    fn from(e: berth_network::NetworkError) -> Self {
        use berth_network::ErrorKind as K;
        match e.kind() {
            K::InvalidArgument => Self::InvalidArgument(e.to_string()),
            K::Conflict => Self::Conflict(e.to_string()),
            K::NotFound => Self::NotFound(e.to_string()),
            _ => Self::Runtime(e.to_string()),
        }
    }
}

fn parse_ip(what: &str, s: &str) -> Result<Option<IpAddr>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| EngineError::InvalidArgument(format!("invalid {what}: {s}")))
}

fn parse_net(what: &str, s: &str) -> Result<Option<IpNet>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| EngineError::InvalidArgument(format!("invalid {what}: {s}")))
}

/// Docker's network name rule (the container rule).
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 128
}

impl Engine {
    /// The networking runtime, or the reason there is none.
    pub(crate) fn net_runtime(&self) -> Result<Arc<NetRuntime>> {
        lock(&self.inner.net)
            .clone()
            .ok_or_else(|| EngineError::Runtime("networking is not available on this host".into()))
    }

    /// Whether the default network is a real bridge (else containers on it get loopback only).
    pub fn default_bridge_active(&self) -> bool {
        self.net_runtime().is_ok()
            && lock(&self.inner.networks)
                .values()
                .any(|n| n.rec.name == DEFAULT && n.rec.is_bridge())
    }

    /// What `info` should warn about the host's networking.
    pub fn network_warnings(&self) -> Vec<String> {
        self.net_runtime()
            .map(|rt| rt.warnings.clone())
            .unwrap_or_default()
    }

    /// The address pools for new networks (`default-address-pools`, or Docker's).
    fn pools(&self) -> Vec<AddressPool> {
        if self.inner.cfg.address_pools.is_empty() {
            ipam::default_pools()
        } else {
            self.inner.cfg.address_pools.clone()
        }
    }

    /// Loads the networks, makes the predefined ones, brings every bridge up and takes back
    /// the addresses and host ports of the containers that run. Without netlink or nftables
    /// the daemon still runs, with `none`/`host` only (and says so in `info`).
    pub(crate) async fn networks_init(&self) -> Result<()> {
        let mut recs: BTreeMap<String, NetworkRecord> = self
            .inner
            .db
            .all::<NetworkRecord>(db::NETWORKS)?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if !recs.values().any(|r| r.name == name) {
                let rec = NetworkRecord {
                    id: random_id(),
                    name: name.into(),
                    driver: driver.into(),
                    created: Utc::now(),
                    internal: false,
                    attachable: false,
                    enable_ipv6: false,
                    labels: BTreeMap::new(),
                    options: BTreeMap::new(),
                    ipam: Vec::new(),
                    bridge: String::new(),
                    predefined: true,
                    implied_gateways: BTreeSet::new(),
                };
                self.inner.db.put(db::NETWORKS, &rec.id, &rec)?;
                recs.insert(rec.id.clone(), rec);
            }
        }
        let runtime = match Netlink::connect() {
            Ok(netlink) => Some(netlink),
            Err(e) => {
                tracing::warn!("networking unavailable (netlink): {e}");
                None
            }
        };
        let Some(netlink) = runtime else {
            // Only host and none.
            let mut table = lock(&self.inner.networks);
            for (id, rec) in recs.into_iter().filter(|(_, r)| !r.is_bridge()) {
                table.insert(id, NetState::new(rec)?);
            }
            return Ok(());
        };
        // The default bridge: its subnet from `bip`, the stored one, or the first free pool.
        let own: Vec<String> = recs
            .values()
            .filter(|r| r.is_bridge())
            .map(|r| r.bridge.clone())
            .collect();
        if self.inner.cfg.bridge != "none" {
            let own_refs: Vec<&str> = own
                .iter()
                .map(String::as_str)
                .chain([link::DEFAULT_BRIDGE])
                .collect();
            let routes = netlink
                .host_route_prefixes(&own_refs)
                .await
                .unwrap_or_default();
            let existing = recs.values().find(|r| r.name == DEFAULT).cloned();
            let bip = parse_net("bip", &self.inner.cfg.bip)?;
            let keep = existing
                .as_ref()
                .filter(|_| bip.is_none())
                .and_then(|r| r.ipam.first().cloned());
            let config = match keep {
                Some(c) => c,
                None => {
                    let others: Vec<IpNet> = recs
                        .values()
                        .filter(|r| r.name != DEFAULT)
                        .flat_map(|r| r.ipam.iter().filter_map(|c| c.subnet))
                        .collect();
                    let mut taken = routes.clone();
                    taken.extend(others);
                    let (subnet, gateway) =
                        ipam::default_bridge_subnet(bip, &self.pools(), &taken)?;
                    SubnetConfig {
                        subnet: Some(subnet),
                        gateway: Some(gateway),
                        ..Default::default()
                    }
                }
            };
            let mut rec = existing.unwrap_or_else(|| NetworkRecord {
                id: random_id(),
                name: DEFAULT.into(),
                driver: "bridge".into(),
                created: Utc::now(),
                internal: false,
                attachable: false,
                enable_ipv6: false,
                labels: BTreeMap::new(),
                options: BTreeMap::from([
                    (
                        "com.docker.network.bridge.default_bridge".into(),
                        "true".into(),
                    ),
                    ("com.docker.network.bridge.enable_icc".into(), "true".into()),
                    (
                        "com.docker.network.bridge.enable_ip_masquerade".into(),
                        "true".into(),
                    ),
                    (
                        "com.docker.network.bridge.host_binding_ipv4".into(),
                        "0.0.0.0".into(),
                    ),
                    (
                        "com.docker.network.bridge.name".into(),
                        link::DEFAULT_BRIDGE.into(),
                    ),
                    ("com.docker.network.driver.mtu".into(), "1500".into()),
                ]),
                ipam: Vec::new(),
                bridge: link::DEFAULT_BRIDGE.into(),
                predefined: true,
                implied_gateways: BTreeSet::new(),
            });
            if rec.ipam.first() != Some(&config) {
                rec.ipam = vec![config];
                self.inner.db.put(db::NETWORKS, &rec.id, &rec)?;
            } else if !recs.contains_key(&rec.id) {
                self.inner.db.put(db::NETWORKS, &rec.id, &rec)?;
            }
            recs.insert(rec.id.clone(), rec);
        } else if let Some(id) = recs
            .values()
            .find(|r| r.name == DEFAULT)
            .map(|r| r.id.clone())
        {
            recs.remove(&id);
        }
        for rec in recs.values().filter(|r| r.is_bridge()) {
            ensure_bridge(&netlink, rec).await?;
        }
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let warnings = tokio::task::spawn_blocking(forward_policy_warning)
            .await
            .ok()
            .flatten()
            .into_iter()
            .collect();
        *lock(&self.inner.net) = Some(Arc::new(NetRuntime {
            warnings,
            netlink,
            ports: PortAllocator::new(),
            dns: Mutex::new(HashMap::new()),
            apply_lock: tokio::sync::Mutex::new(()),
            upstreams: berth_network::dns::upstreams_from_resolv_conf(&host_resolv),
        }));
        {
            let mut table = lock(&self.inner.networks);
            for (id, rec) in recs {
                table.insert(id, NetState::new(rec)?);
            }
        }
        self.reclaim_endpoints();
        Ok(())
    }

    /// After reconciling containers: the ruleset from state, and the DNS servers of the
    /// running containers on user networks.
    pub(crate) async fn networks_ready(&self) {
        if self.net_runtime().is_err() {
            return;
        }
        if let Err(e) = self.nft_apply().await {
            tracing::warn!("nftables: {e}");
        }
        let Ok(rt) = self.net_runtime() else { return };
        for h in self.handles() {
            let rec = h.record();
            if rec.state.is_running() {
                if let Err(e) = self.start_dns(&rec) {
                    tracing::warn!(id = %rec.id, "embedded DNS: {e}");
                }
                for p in rec.published.iter().filter(|p| p.proxied()) {
                    if let Err(e) = p.start_proxy(&rt.ports) {
                        tracing::warn!(id = %rec.id, "port proxy {}:{}: {e}", p.host_ip, p.host_port);
                    }
                }
            }
        }
    }

    /// Every network matching `filters` (`driver`, `id`, `label`, `name`, `scope`, `type`,
    /// `dangling`).
    pub fn network_list(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<NetworkRecord>> {
        crate::volumes::check_filter_keys(
            filters,
            &["driver", "id", "label", "name", "scope", "type", "dangling"],
        )?;
        if let Some(bad) = filters
            .get("type")
            .into_iter()
            .flatten()
            .find(|t| !matches!(t.as_str(), "builtin" | "custom"))
        {
            return Err(EngineError::InvalidArgument(format!(
                "invalid filter: 'type'='{bad}'"
            )));
        }
        let used = self.networks_in_use();
        let recs: Vec<NetworkRecord> = lock(&self.inner.networks)
            .values()
            .map(|n| n.rec.clone())
            .collect();
        let any = |key: &str, f: &dyn Fn(&str) -> bool| {
            filters
                .get(key)
                .is_none_or(|v| v.is_empty() || v.iter().any(|x| f(x)))
        };
        let mut out: Vec<NetworkRecord> = recs
            .into_iter()
            .filter(|r| {
                any("driver", &|x| r.driver == x)
                    && any("id", &|x| r.id.starts_with(x))
                    && any("name", &|x| r.name.contains(x))
                    && any("scope", &|x| x == "local")
                    && any("type", &|x| match x {
                        "builtin" => r.predefined,
                        "custom" => !r.predefined,
                        _ => false,
                    })
                    && any("dangling", &|x| match x {
                        "true" | "1" => !r.predefined && !used.contains(&r.name),
                        _ => r.predefined || used.contains(&r.name),
                    })
                    && crate::prune::labels_pass(
                        &r.labels,
                        filters.get("label").map(Vec::as_slice).unwrap_or_default(),
                        &[],
                    )
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Names of the networks some container (running or not) is configured on.
    fn networks_in_use(&self) -> std::collections::HashSet<String> {
        self.handles()
            .iter()
            .flat_map(|h| lock(&h.rec).networks.keys().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// A network by full id, name, or unique id prefix (Docker's order).
    pub fn network_inspect(&self, key: &str) -> Result<NetworkRecord> {
        let table = lock(&self.inner.networks);
        if let Some(n) = table.get(key) {
            return Ok(n.rec.clone());
        }
        if let Some(n) = table.values().find(|n| n.rec.name == key) {
            return Ok(n.rec.clone());
        }
        let matches: Vec<&NetState> = table
            .values()
            .filter(|n| !key.is_empty() && n.rec.id.starts_with(key))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.rec.clone()),
            [] => Err(EngineError::NoSuchNetwork(key.to_owned())),
            _ => Err(EngineError::InvalidArgument(format!(
                "network {key} is ambiguous ({} matches found based on ID prefix)",
                matches.len()
            ))),
        }
    }

    /// Whether the network with this id is a user-defined one (not `bridge`, `host` or
    /// `none`), without copying its record: inspect and the list ask it for every endpoint.
    pub fn network_is_user_defined(&self, id: &str) -> bool {
        lock(&self.inner.networks)
            .get(id)
            .is_some_and(|n| !n.rec.predefined)
    }

    /// What `host-gateway` in `--add-host` stands for: `host-gateway-ip` of the daemon's
    /// configuration, or else the default bridge's IPv4 gateway (as dockerd).
    pub(crate) fn host_gateway_ip(&self) -> Result<std::net::IpAddr> {
        if let Some(ip) = self.inner.cfg.host_gateway_ip {
            return Ok(ip);
        }
        let table = lock(&self.inner.networks);
        table
            .values()
            .filter(|n| n.rec.name == DEFAULT)
            .flat_map(|n| n.rec.ipam.iter())
            .filter_map(|c| c.gateway)
            .find(|ip| ip.is_ipv4())
            .ok_or_else(|| {
                EngineError::InvalidArgument(
                    "unable to derive the IP value for host-gateway".into(),
                )
            })
    }

    /// The running containers attached to a network, with their endpoints.
    pub fn network_endpoints(&self, network_id: &str) -> Vec<(String, String, EndpointState)> {
        let mut out: Vec<(String, String, EndpointState)> = self
            .handles()
            .iter()
            .filter_map(|h| {
                let r = lock(&h.rec);
                r.networks
                    .values()
                    .find(|e| e.network_id == network_id && !e.endpoint_id.is_empty())
                    .map(|e| (r.id.clone(), r.name.clone(), e.clone()))
            })
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out
    }

    /// Creates a user-defined bridge network.
    pub async fn network_create(&self, req: CreateNetwork) -> Result<NetworkRecord> {
        let rt = self.net_runtime()?;
        if !valid_name(&req.name) {
            return Err(EngineError::InvalidArgument(format!(
                "invalid network name \"{}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                req.name
            )));
        }
        if matches!(req.name.as_str(), "bridge" | "host" | "none") {
            return Err(EngineError::Forbidden(format!(
                "{} is a pre-defined network and cannot be created",
                req.name
            )));
        }
        match req.driver.as_str() {
            "" | "bridge" => {}
            "host" | "null" => {
                return Err(EngineError::Forbidden(format!(
                    "only one instance of \"{}\" network is allowed",
                    req.driver
                )));
            }
            other => {
                return Err(EngineError::NotFound(format!(
                    "plugin \"{other}\" not found"
                )));
            }
        }
        let mut configs = Vec::new();
        for c in &req.ipam {
            let mut aux = BTreeMap::new();
            for (k, v) in &c.aux_addresses {
                aux.insert(
                    k.clone(),
                    v.parse().map_err(|_| {
                        EngineError::InvalidArgument(format!("invalid auxiliary address {k}={v}"))
                    })?,
                );
            }
            configs.push(SubnetConfig {
                subnet: parse_net("subnet", &c.subnet)?,
                ip_range: parse_net("ip-range", &c.ip_range)?,
                gateway: parse_ip("gateway", &c.gateway)?,
                aux_addresses: aux,
            });
        }
        let id = random_id();
        let bridge = match req.options.get("com.docker.network.bridge.name") {
            Some(name) => {
                link::validate_ifname(name)?;
                name.clone()
            }
            None => link::bridge_name(&id),
        };
        for (key, value) in &req.options {
            if key == "com.docker.network.driver.mtu" && value.parse::<u32>().is_err() {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid MTU: {value}"
                )));
            }
        }
        let own: Vec<String> = {
            let table = lock(&self.inner.networks);
            table
                .values()
                .filter(|n| n.rec.is_bridge())
                .map(|n| n.rec.bridge.clone())
                .collect()
        };
        let own_refs: Vec<&str> = own.iter().map(String::as_str).collect();
        let routes = rt
            .netlink
            .host_route_prefixes(&own_refs)
            .await
            .unwrap_or_default();
        let rec = {
            let mut table = lock(&self.inner.networks);
            if table.values().any(|n| n.rec.name == req.name) {
                return Err(EngineError::Conflict(format!(
                    "network with name {} already exists",
                    req.name
                )));
            }
            if table.values().any(|n| n.rec.bridge == bridge) {
                return Err(EngineError::Conflict(format!(
                    "bridge name {bridge} is already used by another network"
                )));
            }
            let existing: Vec<IpNet> = table
                .values()
                .flat_map(|n| n.subnets.iter().map(|s| s.subnet))
                .collect();
            let v6_pools = ipam::default_v6_pools();
            let pools = self.pools();
            let subnets = ipam::plan_network(
                &configs,
                req.enable_ipv6,
                ipam::PoolContext {
                    v4_pools: &pools,
                    v6_pools: &v6_pools,
                    networks: &existing,
                    host_routes: &routes,
                },
            )?;
            let ipam = subnets
                .iter()
                .map(|s| SubnetConfig {
                    subnet: Some(s.subnet),
                    ip_range: s.ip_range,
                    gateway: Some(s.gateway),
                    aux_addresses: s.aux_addresses.clone(),
                })
                .collect();
            // Subnets given without a gateway: inspect shows their config as given, as
            // dockerd does (the gateway is their first address all the same).
            let implied_gateways = configs
                .iter()
                .filter(|c| c.gateway.is_none())
                .filter_map(|c| c.subnet)
                .collect();
            let rec = NetworkRecord {
                id: id.clone(),
                name: req.name.clone(),
                driver: "bridge".into(),
                created: Utc::now(),
                internal: req.internal,
                attachable: req.attachable,
                enable_ipv6: req.enable_ipv6,
                labels: req.labels,
                options: req.options,
                ipam,
                bridge,
                predefined: false,
                implied_gateways,
            };
            self.inner.db.put(db::NETWORKS, &id, &rec)?;
            table.insert(
                id.clone(),
                NetState {
                    rec: rec.clone(),
                    subnets,
                },
            );
            rec
        };
        let made = async {
            ensure_bridge(&rt.netlink, &rec).await?;
            self.nft_apply().await
        }
        .await;
        if let Err(e) = made {
            lock(&self.inner.networks).remove(&id);
            let _ = self.inner.db.delete(db::NETWORKS, &id);
            let _ = rt.netlink.delete_link(&rec.bridge).await;
            return Err(e);
        }
        self.network_event(&rec, "create", None);
        Ok(rec)
    }

    pub(crate) fn network_event(&self, rec: &NetworkRecord, action: &str, container: Option<&str>) {
        let mut attrs = BTreeMap::from([
            ("name".to_owned(), rec.name.clone()),
            ("type".to_owned(), rec.driver.clone()),
        ]);
        if let Some(c) = container {
            attrs.insert("container".into(), c.to_owned());
        }
        self.inner.events.publish("network", action, &rec.id, attrs);
    }

    /// Removes a user-defined network nothing is attached to.
    pub async fn network_remove(&self, key: &str) -> Result<()> {
        let rec = self.network_inspect(key)?;
        if rec.predefined {
            return Err(EngineError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                rec.name
            )));
        }
        let active: Vec<String> = self
            .network_endpoints(&rec.id)
            .into_iter()
            .map(|(_, name, _)| name)
            .collect();
        if !active.is_empty() {
            return Err(EngineError::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints ({})",
                rec.name,
                rec.id,
                active.join(", ")
            )));
        }
        lock(&self.inner.networks).remove(&rec.id);
        self.inner.db.delete(db::NETWORKS, &rec.id)?;
        if let Ok(rt) = self.net_runtime() {
            if let Err(e) = self.nft_apply().await {
                tracing::warn!("nftables after removing {}: {e}", rec.name);
            }
            if let Err(e) = rt.netlink.delete_link(&rec.bridge).await {
                tracing::warn!("removing bridge {}: {e}", rec.bridge);
            }
        }
        self.network_event(&rec, "destroy", None);
        Ok(())
    }

    /// Removes the user-defined networks no container is configured on.
    pub async fn network_prune(
        &self,
        until: Option<DateTime<Utc>>,
        want: &[String],
        negated: &[String],
    ) -> Result<Vec<String>> {
        let used = self.networks_in_use();
        let candidates: Vec<NetworkRecord> = lock(&self.inner.networks)
            .values()
            .map(|n| n.rec.clone())
            .filter(|r| !r.predefined && !used.contains(&r.name))
            .filter(|r| until.is_none_or(|u| r.created < u))
            .filter(|r| crate::prune::labels_pass(&r.labels, want, negated))
            .collect();
        let mut out = Vec::new();
        for r in candidates {
            match self.network_remove(&r.id).await {
                Ok(()) => out.push(r.name),
                Err(e) => tracing::warn!(network = %r.name, "prune: {e}"),
            }
        }
        out.sort();
        self.emit_prune("network", None);
        Ok(out)
    }

    /// The whole `inet berth` table from state: every bridge network and every published
    /// port of a running container; applied in one transaction.
    pub(crate) async fn nft_apply(&self) -> Result<()> {
        let rt = self.net_runtime()?;
        let _guard = rt.apply_lock.lock().await;
        let networks: Vec<nft::NetworkRules> = lock(&self.inner.networks)
            .values()
            .filter(|n| n.rec.is_bridge())
            .map(|n| nft::NetworkRules {
                bridge: n.rec.bridge.clone(),
                subnets: n.subnets.iter().map(|s| s.subnet).collect(),
                internal: n.rec.internal,
                masquerade: n
                    .rec
                    .option_on("com.docker.network.bridge.enable_ip_masquerade"),
                icc: n.rec.option_on("com.docker.network.bridge.enable_icc"),
            })
            .collect();
        let mut ports = Vec::new();
        for h in self.handles() {
            let r = lock(&h.rec);
            // Proxied ports have no kernel rule.
            for p in r.published.iter().filter(|p| !p.proxied()) {
                ports.push(p.mapping());
            }
        }
        let ruleset = nft::Ruleset { networks, ports };
        tokio::task::spawn_blocking(move || {
            let nft = Nft::new();
            if ruleset.networks.is_empty() && ruleset.ports.is_empty() {
                // No bridge at all (`"bridge": "none"` and no user network): no table either.
                if nft.table_exists()? {
                    nft.remove_table()?;
                }
                return Ok(());
            }
            nft.apply(&ruleset)
        })
        .await
        .map_err(|e| EngineError::Runtime(format!("nftables task: {e}")))??;
        Ok(())
    }
}

/// Brings a network's bridge up with its gateways, and the sysctls it needs.
async fn ensure_bridge(netlink: &Netlink, rec: &NetworkRecord) -> Result<()> {
    let addresses = rec
        .ipam
        .iter()
        .filter_map(|c| {
            let subnet = c.subnet?;
            let gw = c.gateway?;
            IpNet::new(gw, subnet.prefix_len()).ok()
        })
        .collect();
    let mtu = rec
        .options
        .get("com.docker.network.driver.mtu")
        .and_then(|m| m.parse().ok())
        .filter(|m| *m != 1500);
    netlink
        .ensure_bridge(&BridgeConfig {
            name: rec.bridge.clone(),
            addresses,
            mtu,
        })
        .await?;
    let (bridge, v6) = (rec.bridge.clone(), rec.enable_ipv6);
    tokio::task::spawn_blocking(move || link::bridge_sysctls(&bridge, v6))
        .await
        .map_err(|e| EngineError::Runtime(format!("sysctl task: {e}")))??;
    Ok(())
}
