//! A container's side of networking: the endpoints it is configured with at create, attached
//! at each start (address, veth, default route, published ports, embedded DNS) and detached
//! when it stops; `network connect`/`disconnect`; the names the embedded DNS answers.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Weak};

use berth_network::dns::{Answer, DnsConfig, DnsServer, Resolver};
use berth_network::ipam;
use berth_network::link::EndpointRequest;
use berth_network::netns::Netns;
use berth_network::nft::{PortMapping, Protocol};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{DEFAULT, NetworkRecord};
use crate::config::HostConfig;
use crate::container::ContainerRecord;
use crate::error::{EngineError, Result};
use crate::{ContainerHandle, Engine, Inner, lock};

/// A container's endpoint on one network: what was asked at create, and (while it runs)
/// what it got. Docker's `EndpointSettings`.
/// A build step's place on the default bridge (see [`Engine::build_network`]).
#[derive(Debug)]
pub struct BuildNetwork {
    /// The bind-mounted namespace file the step joins.
    pub netns: std::path::PathBuf,
    /// The resolv.conf for the step (the host's resolvers, loopback ones dropped).
    pub resolv_conf: String,
    endpoint: EndpointState,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EndpointState {
    pub network_id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Links on a user-defined network (`target[:alias]`): names only this container's
    /// DNS answers, for the target's address on the network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// `--ip` / `IPAMConfig.IPv4Address`.
    #[serde(default)]
    pub requested_ipv4: String,
    #[serde(default)]
    pub requested_ipv6: String,
    /// `--mac-address` / `EndpointSettings.MacAddress` (or the old `Config.MacAddress`).
    #[serde(default)]
    pub requested_mac: String,
    /// Set while attached.
    #[serde(default)]
    pub endpoint_id: String,
    #[serde(default)]
    pub ip_address: String,
    #[serde(default)]
    pub ip_prefix_len: u8,
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub global_ipv6_address: String,
    #[serde(default)]
    pub global_ipv6_prefix_len: u8,
    #[serde(default)]
    pub ipv6_gateway: String,
    #[serde(default)]
    pub mac_address: String,
    #[serde(default)]
    pub ifname: String,
}

impl EndpointState {
    fn clear_runtime(&mut self) {
        let keep = Self {
            network_id: std::mem::take(&mut self.network_id),
            aliases: std::mem::take(&mut self.aliases),
            links: std::mem::take(&mut self.links),
            requested_ipv4: std::mem::take(&mut self.requested_ipv4),
            requested_ipv6: std::mem::take(&mut self.requested_ipv6),
            requested_mac: std::mem::take(&mut self.requested_mac),
            ..Default::default()
        };
        *self = keep;
    }

    fn addresses(&self) -> Vec<IpAddr> {
        [&self.ip_address, &self.global_ipv6_address]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    }
}

/// A published port of a running container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PublishedPort {
    pub protocol: Protocol,
    pub container_port: u16,
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub bridge: String,
    pub container_ip: IpAddr,
}

impl PublishedPort {
    /// Whether the kernel cannot carry this port and the userland proxy serves it: IPv6 to a
    /// container reached over IPv4, or IPv6 loopback (which cannot be routed elsewhere).
    pub(crate) fn proxied(&self) -> bool {
        self.host_ip.is_ipv6() && (self.container_ip.is_ipv4() || self.host_ip.is_loopback())
    }

    /// Starts the userland proxy of a [`PublishedPort::proxied`] port (its host port must be
    /// reserved).
    pub(crate) fn start_proxy(&self, ports: &berth_network::ports::PortAllocator) -> Result<()> {
        let target = SocketAddr::new(self.container_ip, self.container_port);
        match self.protocol {
            Protocol::Tcp => ports.proxy_tcp(self.host_ip, self.host_port, target)?,
            Protocol::Udp => ports.proxy_udp(self.host_ip, self.host_port, target)?,
            Protocol::Sctp => {
                return Err(EngineError::InvalidArgument(
                    "SCTP ports are not proxied over IPv6".into(),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn mapping(&self) -> PortMapping {
        PortMapping {
            bridge: self.bridge.clone(),
            protocol: self.protocol,
            host_ip: (!self.host_ip.is_unspecified()).then_some(self.host_ip),
            host_port: self.host_port,
            container_ip: self.container_ip,
            container_port: self.container_port,
        }
    }
}

/// What a start's network setup leaves for the container's /etc files.
#[derive(Debug, Default)]
pub(crate) struct NetFiles {
    /// The container's address on its first network (for /etc/hosts).
    pub primary_ip: Option<IpAddr>,
    /// On a user-defined network: resolv.conf points at the embedded DNS.
    pub embedded_dns: bool,
}

/// Splits `"80/tcp"` (or `"8000-8002/udp"`) into protocol and ports.
pub fn parse_port_key(key: &str) -> Result<(Protocol, Vec<u16>)> {
    let (ports, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let protocol: Protocol = proto.parse()?;
    let bad = || EngineError::InvalidArgument(format!("invalid port specification: \"{key}\""));
    let one = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    let list = match ports.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                return Err(bad());
            }
            (a..=b).collect()
        }
        None => vec![one(ports)?],
    };
    Ok((protocol, list))
}

/// The networks a new container is configured on: its network mode's, then the extra ones
/// of `NetworkingConfig.EndpointsConfig`. `None` for modes without networks of their own.
pub(crate) fn planned_networks(
    hc: &HostConfig,
    endpoints: &BTreeMap<String, EndpointState>,
) -> Vec<(String, EndpointState)> {
    let mode = hc.network_mode();
    // Clients name the default network "default" as often as "bridge".
    let endpoints: BTreeMap<String, EndpointState> = endpoints
        .iter()
        .map(|(k, v)| {
            let k = if k == "default" { DEFAULT } else { k.as_str() };
            (k.to_owned(), v.clone())
        })
        .collect();
    let mut out: Vec<(String, EndpointState)> = Vec::new();
    if !mode.starts_with("container:") {
        let primary = endpoints.get(mode).cloned().unwrap_or_default();
        out.push((mode.to_owned(), primary));
    }
    for (name, ep) in endpoints {
        if name != mode && !mode.starts_with("container:") {
            out.push((name, ep));
        }
    }
    out
}

impl Engine {
    /// Checks and records the networks of a new container (`--network`, `--ip`,
    /// `--network-alias`, `NetworkingConfig`).
    pub(crate) fn plan_container_networks(
        &self,
        hc: &HostConfig,
        endpoints: &BTreeMap<String, EndpointState>,
    ) -> Result<BTreeMap<String, EndpointState>> {
        let mode = hc.network_mode();
        if let Some(other) = mode.strip_prefix("container:") {
            self.resolve(other)?;
            if !endpoints.is_empty() {
                return Err(EngineError::InvalidArgument(
                    "conflicting options: container type network can't be used with links, aliases or IPs".into(),
                ));
            }
            return Ok(BTreeMap::new());
        }
        let mut out = BTreeMap::new();
        let planned = planned_networks(hc, endpoints);
        let count = planned.len();
        for (name, mut ep) in planned {
            if name == DEFAULT
                && lock(&self.inner.networks)
                    .values()
                    .all(|n| n.rec.name != DEFAULT)
            {
                // The default bridge is off (`"bridge": "none"`): loopback only.
                continue;
            }
            let rec = self.network_inspect(&name)?;
            if (rec.driver == "host" || rec.driver == "null") && count > 1 {
                return Err(EngineError::InvalidArgument(format!(
                    "container cannot be connected to multiple networks with one of the networks in {} mode",
                    rec.name
                )));
            }
            if !rec.has_dns() && !ep.aliases.is_empty() {
                return Err(EngineError::InvalidArgument(
                    "network-scoped alias is supported only for containers in user defined networks".into(),
                ));
            }
            for (what, ip) in [("IPv4", &ep.requested_ipv4), ("IPv6", &ep.requested_ipv6)] {
                if ip.is_empty() {
                    continue;
                }
                let addr: IpAddr = ip.parse().map_err(|_| {
                    EngineError::InvalidArgument(format!("invalid {what} address: {ip}"))
                })?;
                if rec.predefined {
                    return Err(EngineError::InvalidArgument(
                        "user specified IP address is supported on user defined networks only"
                            .into(),
                    ));
                }
                if !rec
                    .ipam
                    .iter()
                    .any(|c| c.subnet.is_some_and(|s| s.contains(&addr)))
                {
                    return Err(EngineError::InvalidArgument(format!(
                        "no configured subnet or ip-range contain the IP address {addr}"
                    )));
                }
            }
            if !ep.requested_mac.is_empty() {
                if ipam::parse_mac(&ep.requested_mac).is_none() {
                    return Err(EngineError::InvalidArgument(format!(
                        "invalid MAC address: {}",
                        ep.requested_mac
                    )));
                }
                if rec.driver == "host" || rec.driver == "null" {
                    return Err(EngineError::InvalidArgument(
                        "conflicting options: mac-address and the network mode".into(),
                    ));
                }
            }
            ep.network_id = rec.id.clone();
            ep.clear_runtime();
            ep.network_id = rec.id.clone();
            out.insert(rec.name.clone(), ep);
        }
        Ok(out)
    }

    /// The namespace file of the running container a `container:<name|id>` mode names.
    pub(crate) fn joined_netns(&self, mode: &str) -> Result<std::path::PathBuf> {
        let key = mode.trim_start_matches("container:");
        let mut other = self.resolve(key)?.record();
        // A container that joined another's: that one's namespace, as moby follows the chain
        // (bounded, against a loop in records).
        for _ in 0..16 {
            if !other.state.is_running() {
                return Err(EngineError::Conflict(format!(
                    "cannot join network namespace of a non running container: {}",
                    other.id
                )));
            }
            match other.host_config.network_mode().strip_prefix("container:") {
                Some(next) => other = self.resolve(next)?.record(),
                None => break,
            }
        }
        if other.host_config.network_mode() == "host" {
            return Err(EngineError::InvalidArgument(format!(
                "cannot join the network namespace of {}: it uses the host's",
                other.name
            )));
        }
        let path = self.inner.cfg.exec_root.join("netns").join(&other.id);
        if !path.exists() {
            return Err(EngineError::Conflict(format!(
                "container {} has no network namespace to join",
                other.id
            )));
        }
        Ok(path)
    }

    /// At daemon start: the addresses of running containers are taken again (they still
    /// hold them), and their host ports reserved again.
    pub(crate) fn reclaim_endpoints(&self) {
        let Ok(rt) = self.net_runtime() else { return };
        for h in self.handles() {
            let r = lock(&h.rec);
            if !r.state.is_running() {
                continue;
            }
            let mut table = lock(&self.inner.networks);
            for ep in r.networks.values() {
                if let Some(n) = table.get_mut(&ep.network_id) {
                    for ip in ep.addresses() {
                        let _ = ipam::allocate_in(&mut n.subnets, ip.is_ipv6(), Some(ip));
                    }
                }
            }
            for p in &r.published {
                if let Err(e) = rt.ports.reserve(p.protocol, p.host_ip, p.host_port) {
                    tracing::warn!(id = %r.id, "port {} again: {e}", p.host_port);
                }
            }
            // Proxies start in `networks_ready`, on the runtime.
        }
    }

    /// Attaches a starting container to its networks inside `netns` (a bind-mounted
    /// namespace file): addresses, veths, default route, then published ports and the
    /// embedded DNS. What was done is recorded on the handle, so [`Engine::net_detach`] undoes
    /// exactly that, also after a failure half-way.
    pub(crate) async fn net_attach(
        &self,
        h: &Arc<ContainerHandle>,
        rec: &ContainerRecord,
        netns_path: &Path,
    ) -> Result<NetFiles> {
        let mut files = NetFiles::default();
        let bridged: Vec<(String, EndpointState, NetworkRecord)> = rec
            .networks
            .iter()
            .filter_map(|(name, ep)| {
                let net = lock(&self.inner.networks)
                    .get(&ep.network_id)
                    .map(|n| n.rec.clone());
                net.filter(|n| n.is_bridge())
                    .map(|n| (name.clone(), ep.clone(), n))
            })
            .collect();
        for (name, ep) in &rec.networks {
            if !lock(&self.inner.networks).contains_key(&ep.network_id) {
                return Err(EngineError::NotFound(format!("network {name} not found")));
            }
        }
        if bridged.is_empty() {
            return Ok(files);
        }
        let rt = self.net_runtime()?;
        let ns = Netns::open(netns_path)?;
        // The mode's network first: it gets eth0 and the default route.
        let mode = rec.host_config.network_mode();
        let mode_id = self.network_inspect(mode).map(|n| n.id).unwrap_or_default();
        let mut ordered = bridged;
        ordered.sort_by_key(|(_, _, net)| net.id != mode_id);
        for (i, (name, ep, net)) in ordered.iter().enumerate() {
            let ifname = format!("eth{i}");
            let attached = self
                .attach_one(&rt, &ns, &rec.id, name, ep, net, &ifname, i == 0)
                .await?;
            lock(&h.rec).networks.insert(name.clone(), attached.clone());
            if i == 0 {
                files.primary_ip = attached.ip_address.parse().ok();
            }
            files.embedded_dns |= net.has_dns();
        }
        let (primary_name, _, primary_net) = &ordered[0];
        let primary = lock(&h.rec)
            .networks
            .get(primary_name)
            .cloned()
            .unwrap_or_default();
        self.publish_ports(&rt, h, rec, primary_net, &primary)
            .await?;
        let snapshot = h.record();
        if files.embedded_dns {
            self.start_dns(&snapshot)?;
        }
        Ok(files)
    }

    #[allow(clippy::too_many_arguments)]
    async fn attach_one(
        &self,
        rt: &super::NetRuntime,
        ns: &Netns,
        id: &str,
        name: &str,
        ep: &EndpointState,
        net: &NetworkRecord,
        ifname: &str,
        primary: bool,
    ) -> Result<EndpointState> {
        let want4: Option<IpAddr> = ep.requested_ipv4.parse().ok();
        let want6: Option<IpAddr> = ep.requested_ipv6.parse().ok();
        let (v4, v6) = {
            let mut table = lock(&self.inner.networks);
            let n = table
                .get_mut(&net.id)
                .ok_or_else(|| EngineError::NotFound(format!("network {name} not found")))?;
            let v4 = if n.subnets.iter().any(|s| !s.is_v6()) {
                Some(ipam::allocate_in(&mut n.subnets, false, want4)?)
            } else {
                None
            };
            let v6 = if net.enable_ipv6 {
                match ipam::allocate_in(&mut n.subnets, true, want6) {
                    Ok(ip) => Some(ip),
                    Err(e) => {
                        if let Some(ip) = v4 {
                            ipam::release_in(&mut n.subnets, ip);
                        }
                        return Err(e.into());
                    }
                }
            } else {
                None
            };
            (v4, v6)
        };
        let subnet_of = |ip: IpAddr| {
            net.ipam
                .iter()
                .find(|c| c.subnet.is_some_and(|s| s.contains(&ip)))
                .and_then(|c| Some((c.subnet?, c.gateway?)))
        };
        let mut addresses = Vec::new();
        let mut out = ep.clone();
        // A fresh id per attachment: it names the host veth, so a veth still being deleted
        // in the background after a stop never collides with the next start's.
        out.endpoint_id = super::random_id();
        out.ifname = ifname.to_owned();
        let (mut gw4, mut gw6) = (None, None);
        if let Some(ip) = v4 {
            if let Some((subnet, gw)) = subnet_of(ip) {
                addresses.push(
                    IpNet::new(ip, subnet.prefix_len())
                        .map_err(|e| EngineError::Runtime(e.to_string()))?,
                );
                out.ip_address = ip.to_string();
                out.ip_prefix_len = subnet.prefix_len();
                out.gateway = gw.to_string();
                if let (IpAddr::V4(g), false) = (gw, net.internal) {
                    gw4 = Some(g);
                }
            }
        }
        if let Some(ip) = v6 {
            if let Some((subnet, gw)) = subnet_of(ip) {
                addresses.push(
                    IpNet::new(ip, subnet.prefix_len())
                        .map_err(|e| EngineError::Runtime(e.to_string()))?,
                );
                out.global_ipv6_address = ip.to_string();
                out.global_ipv6_prefix_len = subnet.prefix_len();
                out.ipv6_gateway = gw.to_string();
                if let (IpAddr::V6(g), false) = (gw, net.internal) {
                    gw6 = Some(g);
                }
            }
        }
        let mac = match (ipam::parse_mac(&ep.requested_mac), v4) {
            (Some(mac), _) => mac,
            (None, Some(IpAddr::V4(ip))) => ipam::mac_for_ipv4(ip),
            _ => {
                use rand::Rng;
                let mut m = [0u8; 6];
                rand::rng().fill(&mut m);
                m[0] = (m[0] & 0xfe) | 0x02;
                m
            }
        };
        out.mac_address = ipam::format_mac(&mac);
        let mtu = net
            .options
            .get("com.docker.network.driver.mtu")
            .and_then(|m| m.parse().ok())
            .filter(|m| *m != 1500);
        let req = EndpointRequest {
            endpoint_id: &out.endpoint_id,
            bridge: &net.bridge,
            netns: ns,
            ifname,
            addresses,
            mac: Some(mac),
            gateway_v4: if primary { gw4 } else { None },
            gateway_v6: if primary { gw6 } else { None },
            mtu,
            ipv6: net.enable_ipv6,
        };
        if let Err(e) = rt.netlink.attach_endpoint(&req).await {
            let mut table = lock(&self.inner.networks);
            if let Some(n) = table.get_mut(&net.id) {
                for ip in v4.into_iter().chain(v6) {
                    ipam::release_in(&mut n.subnets, ip);
                }
            }
            return Err(e.into());
        }
        self.network_event(net, "connect", Some(id));
        Ok(out)
    }

    /// Reserves the container's published ports (`-p`, and `-P` for exposed ones) and puts
    /// them in the ruleset.
    async fn publish_ports(
        &self,
        rt: &super::NetRuntime,
        h: &Arc<ContainerHandle>,
        rec: &ContainerRecord,
        net: &NetworkRecord,
        ep: &EndpointState,
    ) -> Result<()> {
        let Ok(container_ip) = ep.ip_address.parse::<IpAddr>() else {
            return Ok(());
        };
        let mut wanted: Vec<(Protocol, u16, String, String)> = Vec::new();
        for (key, bindings) in rec.host_config.port_bindings.iter().flatten() {
            let (proto, ports) = parse_port_key(key)?;
            let bindings = bindings.clone().unwrap_or_default();
            for (i, port) in ports.iter().enumerate() {
                if bindings.is_empty() {
                    wanted.push((proto, *port, String::new(), String::new()));
                }
                for b in &bindings {
                    // A host range as long as the container range maps one to one.
                    let host = match b.host_port.split_once('-') {
                        Some((a, z)) if ports.len() > 1 => {
                            match (a.parse::<u16>(), z.parse::<u16>()) {
                                (Ok(a), Ok(z)) if usize::from(z - a.min(z)) + 1 == ports.len() => {
                                    (a + i as u16).to_string()
                                }
                                _ => b.host_port.clone(),
                            }
                        }
                        _ => b.host_port.clone(),
                    };
                    wanted.push((proto, *port, b.host_ip.clone(), host));
                }
            }
        }
        if rec.host_config.publish_all_ports {
            for key in rec.config.exposed_ports.iter().flat_map(|m| m.keys()) {
                let (proto, ports) = parse_port_key(key)?;
                for port in ports {
                    if !wanted.iter().any(|(p, c, _, _)| *p == proto && *c == port) {
                        wanted.push((proto, port, String::new(), String::new()));
                    }
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        for (proto, cport, host_ip, host_port) in wanted {
            let ip: IpAddr = if host_ip.is_empty() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                host_ip.parse().map_err(|_| {
                    EngineError::InvalidArgument(format!("invalid host IP address: {host_ip}"))
                })?
            };
            if ip.is_ipv4() && container_ip.is_ipv6() {
                continue;
            }
            let proxied = ip.is_ipv6() && (container_ip.is_ipv4() || ip.is_loopback());
            if proxied && proto == Protocol::Sctp {
                // The userland proxy serves TCP and UDP.
                tracing::warn!(id = %rec.id, "{ip} port {cport}/sctp: not published, SCTP is not proxied over IPv6");
                continue;
            }
            let port = match host_port.split_once('-') {
                Some((a, z)) => {
                    let a: u16 = a.parse().map_err(|_| bad_host_port(&host_port))?;
                    let z: u16 = z.parse().map_err(|_| bad_host_port(&host_port))?;
                    rt.ports.reserve_in_range(proto, ip, a, z)?
                }
                None if host_port.is_empty() => rt.ports.reserve(proto, ip, 0)?,
                None => {
                    let p: u16 = host_port.parse().map_err(|_| bad_host_port(&host_port))?;
                    rt.ports.reserve(proto, ip, p)?
                }
            };
            let published = PublishedPort {
                protocol: proto,
                container_port: cport,
                host_ip: ip,
                host_port: port,
                bridge: net.bridge.clone(),
                container_ip,
            };
            if published.proxied() {
                if let Err(e) = published.start_proxy(&rt.ports) {
                    rt.ports.release(proto, ip, port);
                    return Err(e);
                }
            }
            lock(&h.rec).published.push(published.clone());
            // No host address given: IPv6 too, on the same port, as dockerd publishes it
            // (through its proxy) where the host has IPv6. Unlike the IPv4 port, a taken
            // IPv6 port does not stop the start.
            if host_ip.is_empty()
                && proto != Protocol::Sctp
                && berth_network::ports::ipv6_listenable()
            {
                let v6 = PublishedPort {
                    host_ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    ..published
                };
                match rt.ports.reserve(proto, v6.host_ip, port) {
                    Ok(_) => match v6.start_proxy(&rt.ports) {
                        Ok(()) => lock(&h.rec).published.push(v6),
                        Err(e) => {
                            rt.ports.release(proto, v6.host_ip, port);
                            tracing::warn!(id = %rec.id, "[::]:{port}: {e}");
                        }
                    },
                    Err(e) => tracing::warn!(id = %rec.id, "[::]:{port}: {e}"),
                }
            }
        }
        self.nft_apply().await
    }

    /// Starts the embedded DNS server of a running container on a user-defined network.
    pub(crate) fn start_dns(&self, rec: &ContainerRecord) -> Result<()> {
        let rt = self.net_runtime()?;
        let on_user_net = rec.networks.values().any(|ep| {
            !ep.endpoint_id.is_empty()
                && lock(&self.inner.networks)
                    .get(&ep.network_id)
                    .is_some_and(|n| n.rec.has_dns())
        });
        if !on_user_net || lock(&rt.dns).contains_key(&rec.id) {
            return Ok(());
        }
        let ns = Netns::open(&self.inner.cfg.exec_root.join("netns").join(&rec.id))?;
        let mut upstreams = rt.upstreams.clone();
        let given: Vec<std::net::SocketAddr> = rec
            .host_config
            .dns
            .iter()
            .flatten()
            .filter_map(|d| d.parse::<IpAddr>().ok())
            .map(|ip| std::net::SocketAddr::new(ip, 53))
            .collect();
        if !given.is_empty() {
            upstreams = given;
        }
        let resolver = Arc::new(ContainerResolver {
            inner: Arc::downgrade(&self.inner),
            id: rec.id.clone(),
        });
        let server = DnsServer::start(
            &ns,
            resolver,
            DnsConfig {
                upstreams,
                ..DnsConfig::default()
            },
        )?;
        lock(&rt.dns).insert(rec.id.clone(), server);
        Ok(())
    }

    /// Undoes what [`Engine::net_attach`] (and `connect`) did for a container that stopped or
    /// failed to start: DNS, ports, veths, addresses. Tolerant of anything already gone.
    pub(crate) async fn net_detach(&self, id: &str) {
        let Ok(rt) = self.net_runtime() else { return };
        let Ok(h) = self.resolve(id) else { return };
        lock(&rt.dns).remove(id);
        let published = std::mem::take(&mut lock(&h.rec).published);
        if !published.is_empty() {
            if let Err(e) = self.nft_apply().await {
                tracing::warn!(id, "nftables: {e}");
            }
            for p in &published {
                rt.ports.release(p.protocol, p.host_ip, p.host_port);
            }
        }
        let endpoints: Vec<(String, EndpointState)> = lock(&h.rec)
            .networks
            .iter()
            .filter(|(_, ep)| !ep.endpoint_id.is_empty())
            .map(|(n, ep)| (n.clone(), ep.clone()))
            .collect();
        for (name, ep) in endpoints {
            self.detach_one(&h, &name, &ep, true).await;
        }
    }

    /// Takes a container off one network. The endpoint is cleared at once; deleting the
    /// veth (the kernel waits for an RCU grace period, tens of milliseconds) and handing the
    /// addresses back happen after, in the background, so an exit is not held up by them and
    /// no address is reused while its old interface still exists. `stopped`: the container's
    /// namespace is on its way out (a stop), not a `disconnect` of a running container.
    async fn detach_one(
        &self,
        h: &Arc<ContainerHandle>,
        name: &str,
        ep: &EndpointState,
        stopped: bool,
    ) {
        let net = lock(&self.inner.networks)
            .get(&ep.network_id)
            .map(|n| n.rec.clone());
        let id = {
            let mut r = lock(&h.rec);
            if let Some(e) = r.networks.get_mut(name) {
                e.clear_runtime();
            }
            r.id.clone()
        };
        if let Some(net) = &net {
            self.network_event(net, "disconnect", Some(&id));
        }
        let engine = self.clone();
        let ep = ep.clone();
        let name = name.to_owned();
        let name_for_log = name.clone();
        let work = async move {
            if let Ok(rt) = engine.net_runtime() {
                if stopped {
                    // The container's namespace is going: the kernel deletes the pair with it,
                    // in its own batched clean-up, cheaper than a delete of our own. Wait for
                    // that (a container still sharing the namespace keeps it: then delete).
                    // Looked for every 5 ms at first (it usually goes within tens of ms, and
                    // its addresses are free for the next container only after), then every
                    // 100 ms, for 5 s in all.
                    let host = berth_network::link::host_veth_name(&ep.endpoint_id);
                    for round in 0..68u32 {
                        match rt.netlink.link_index(&host).await {
                            Ok(Some(_)) => {
                                let ms = if round < 20 { 5 } else { 100 };
                                tokio::time::sleep(std::time::Duration::from_millis(ms)).await
                            }
                            _ => break,
                        }
                    }
                }
                if let Err(e) = rt.netlink.detach_endpoint(&ep.endpoint_id).await {
                    tracing::warn!(network = %name, "detach endpoint: {e}");
                }
            }
            let mut table = lock(&engine.inner.networks);
            if let Some(n) = table.get_mut(&ep.network_id) {
                for ip in ep.addresses() {
                    ipam::release_in(&mut n.subnets, ip);
                }
            }
        };
        let task = tokio::spawn(work);
        if !stopped {
            // A running container leaves the network before `disconnect` answers: nothing
            // may reach it through that network afterwards. (The task finishes even if the
            // request goes away; a stuck netlink call does not hold the container forever.)
            if tokio::time::timeout(std::time::Duration::from_secs(30), task)
                .await
                .is_err()
            {
                tracing::warn!(network = %name_for_log, "detaching the endpoint took over 30 s");
            }
        }
    }

    /// A network namespace on the default bridge for one build step (`RUN`), as the legacy
    /// builder gives its steps: a veth and an address, NAT out, no published ports or DNS
    /// names. `None` when the default bridge is off. [`Engine::build_network_release`] undoes it.
    pub async fn build_network(&self, id: &str) -> Result<Option<BuildNetwork>> {
        if !self.default_bridge_active() {
            return Ok(None);
        }
        let rt = self.net_runtime()?;
        let net = lock(&self.inner.networks)
            .values()
            .find(|n| n.rec.name == DEFAULT)
            .map(|n| n.rec.clone())
            .ok_or_else(|| EngineError::NoSuchNetwork(DEFAULT.into()))?;
        let path = self.inner.netns.create(&self.inner.cfg.exec_root, id)?;
        let ns = match Netns::open(&path) {
            Ok(ns) => ns,
            Err(e) => {
                crate::netns::remove(&path);
                return Err(e.into());
            }
        };
        let ep = EndpointState {
            network_id: net.id.clone(),
            ..EndpointState::default()
        };
        match self
            .attach_one(&rt, &ns, id, DEFAULT, &ep, &net, "eth0", true)
            .await
        {
            Ok(endpoint) => {
                let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                Ok(Some(BuildNetwork {
                    netns: path,
                    resolv_conf: crate::spec::resolv_conf(&host, &[], &[], &[]),
                    endpoint,
                }))
            }
            Err(e) => {
                crate::netns::remove(&path);
                Err(e)
            }
        }
    }

    /// Takes a build step's namespace off the bridge and frees its address. The namespace
    /// goes at once; its veth goes with it in the kernel's batched clean-up (an explicit
    /// delete waits for an RCU grace period), which a background task waits for before the
    /// address is handed back, so the step is not held up.
    pub fn build_network_release(&self, n: BuildNetwork) {
        crate::netns::remove(&n.netns);
        let engine = self.clone();
        tokio::spawn(async move {
            if let Ok(rt) = engine.net_runtime() {
                let host = berth_network::link::host_veth_name(&n.endpoint.endpoint_id);
                for _ in 0..50 {
                    match rt.netlink.link_index(&host).await {
                        Ok(Some(_)) => {
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await
                        }
                        _ => break,
                    }
                }
                if let Err(e) = rt.netlink.detach_endpoint(&n.endpoint.endpoint_id).await {
                    tracing::debug!("detach a build endpoint: {e}");
                }
            }
            let mut table = lock(&engine.inner.networks);
            if let Some(net) = table.get_mut(&n.endpoint.network_id) {
                for ip in n.endpoint.addresses() {
                    ipam::release_in(&mut net.subnets, ip);
                }
            }
        });
    }

    /// `network connect`: a stopped container gets the endpoint at its next start, a running
    /// one at once (the next free `ethN`).
    pub async fn network_connect(
        &self,
        network: &str,
        container: &str,
        mut ep: EndpointState,
    ) -> Result<()> {
        // The container first, as dockerd looks them up.
        let h = self.resolve(container)?;
        let net = self.network_inspect(network)?;
        let _op = h.op.lock().await;
        let rec = h.record();
        let mode = rec.host_config.network_mode();
        if mode == "host" || net.driver == "host" {
            return Err(EngineError::Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        if mode == "none" || mode.starts_with("container:") {
            return Err(EngineError::InvalidArgument(format!(
                "container sharing network namespace with another container or host cannot be connected to any other network ({mode})"
            )));
        }
        if !net.is_bridge() {
            return Err(EngineError::Forbidden(format!(
                "container cannot be connected to network {} ({} driver)",
                net.name, net.driver
            )));
        }
        if rec.networks.contains_key(&net.name) {
            return Err(EngineError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, net.name
            )));
        }
        let planned = self.plan_container_networks(
            &HostConfig {
                network_mode: net.name.clone(),
                ..Default::default()
            },
            &BTreeMap::from([(net.name.clone(), std::mem::take(&mut ep))]),
        )?;
        let Some(ep) = planned.get(&net.name).cloned() else {
            return Ok(());
        };
        lock(&h.rec).networks.insert(net.name.clone(), ep.clone());
        if rec.state.is_running() {
            let rt = self.net_runtime()?;
            let ns = Netns::open(&self.inner.cfg.exec_root.join("netns").join(&rec.id))?;
            let used: Vec<String> = rec.networks.values().map(|e| e.ifname.clone()).collect();
            let ifname = (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !used.contains(n))
                .unwrap_or_else(|| "eth9".into());
            match self
                .attach_one(&rt, &ns, &rec.id, &net.name, &ep, &net, &ifname, false)
                .await
            {
                Ok(attached) => {
                    lock(&h.rec).networks.insert(net.name.clone(), attached);
                }
                Err(e) => {
                    lock(&h.rec).networks.remove(&net.name);
                    return Err(e);
                }
            }
            self.start_dns(&h.record())?;
            if net.has_dns() {
                // As Docker: a container that joins a user network uses the embedded DNS
                // from then on. The file is bind-mounted, so it is rewritten in place.
                let hc = &rec.host_config;
                let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                let text = crate::spec::embedded_resolv_conf(
                    &host,
                    hc.dns_search.as_deref().unwrap_or_default(),
                    hc.dns_options.as_deref().unwrap_or_default(),
                );
                let path = self.container_dir(&rec.id).join("resolv.conf");
                std::fs::write(&path, text)
                    .map_err(EngineError::io(format!("write {}", path.display())))?;
            }
        } else {
            self.network_event(&net, "connect", Some(&rec.id));
        }
        self.persist(&h.record())
    }

    /// `network disconnect`.
    pub async fn network_disconnect(
        &self,
        network: &str,
        container: &str,
        force: bool,
    ) -> Result<()> {
        let net = match self.network_inspect(network) {
            Ok(n) => n,
            Err(e) if force => {
                tracing::debug!("disconnect from a missing network: {e}");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let h = self.resolve(container)?;
        let _op = h.op.lock().await;
        let rec = h.record();
        let Some(ep) = rec.networks.get(&net.name).cloned() else {
            return Err(EngineError::Forbidden(format!(
                "container {} is not connected to network {}",
                rec.id, net.name
            )));
        };
        if !ep.endpoint_id.is_empty() {
            let rt = self.net_runtime()?;
            if rec.published.iter().any(|p| p.bridge == net.bridge) {
                let gone: Vec<PublishedPort> = {
                    let mut r = lock(&h.rec);
                    let (gone, keep) = r.published.drain(..).partition(|p| p.bridge == net.bridge);
                    r.published = keep;
                    gone
                };
                let _ = self.nft_apply().await;
                for p in gone {
                    rt.ports.release(p.protocol, p.host_ip, p.host_port);
                }
            }
            self.detach_one(&h, &net.name, &ep, false).await;
        } else {
            self.network_event(&net, "disconnect", Some(&rec.id));
        }
        lock(&h.rec).networks.remove(&net.name);
        self.persist(&h.record())
    }
}

fn bad_host_port(s: &str) -> EngineError {
    EngineError::InvalidArgument(format!("invalid host port: {s}"))
}

/// The names one container's embedded DNS answers: containers (name, aliases, short id) on
/// the user-defined networks it shares with them, and its own links' aliases there.
struct ContainerResolver {
    inner: Weak<Inner>,
    id: String,
}

impl ContainerResolver {
    fn engine(&self) -> Option<Engine> {
        self.inner.upgrade().map(|inner| Engine { inner })
    }

    /// (network id, network name, links) of the user networks this container is attached to.
    fn my_networks(&self, engine: &Engine) -> Vec<(String, String, Vec<String>)> {
        let Ok(h) = engine.resolve(&self.id) else {
            return Vec::new();
        };
        let r = lock(&h.rec);
        let table = lock(&engine.inner.networks);
        r.networks
            .iter()
            .filter(|(_, ep)| !ep.endpoint_id.is_empty())
            .filter(|(_, ep)| table.get(&ep.network_id).is_some_and(|n| n.rec.has_dns()))
            .map(|(name, ep)| (ep.network_id.clone(), name.clone(), ep.links.clone()))
            .collect()
    }
}

impl Resolver for ContainerResolver {
    fn lookup(&self, name: &str) -> Answer {
        let Some(engine) = self.engine() else {
            return Answer::NotOurs;
        };
        let nets = self.my_networks(&engine);
        let mut found: Vec<IpAddr> = Vec::new();
        for (net_id, net_name, links) in &nets {
            // `web` and `web.<network>` both name the container on that network.
            let suffix = format!(".{}", net_name.to_ascii_lowercase());
            let short = name.strip_suffix(&suffix).unwrap_or(name);
            // The targets this container links to by that alias.
            let targets: Vec<String> = links
                .iter()
                .filter_map(|l| crate::links::parse(l).ok())
                .filter(|l| l.alias.eq_ignore_ascii_case(short))
                .map(|l| l.target)
                .collect();
            for h in engine.handles() {
                let r = lock(&h.rec);
                if !r.state.is_running() {
                    continue;
                }
                let Some(ep) = r.networks.values().find(|e| &e.network_id == net_id) else {
                    continue;
                };
                if ep.endpoint_id.is_empty() {
                    continue;
                }
                let matches = r.name.eq_ignore_ascii_case(short)
                    || r.short_id() == short
                    || ep.aliases.iter().any(|a| a.eq_ignore_ascii_case(short))
                    || targets
                        .iter()
                        .any(|t| r.name.eq_ignore_ascii_case(t) || r.short_id() == t);
                if matches {
                    for ip in ep.addresses() {
                        if !found.contains(&ip) {
                            found.push(ip);
                        }
                    }
                }
            }
        }
        if found.is_empty() {
            Answer::NotOurs
        } else {
            Answer::Addresses(found)
        }
    }

    fn reverse(&self, ip: IpAddr) -> Option<String> {
        let engine = self.engine()?;
        let nets = self.my_networks(&engine);
        for h in engine.handles() {
            let r = lock(&h.rec);
            if !r.state.is_running() {
                continue;
            }
            for (net_id, net_name, _) in &nets {
                if let Some(ep) = r.networks.values().find(|e| &e.network_id == net_id) {
                    if ep.addresses().contains(&ip) {
                        return Some(format!("{}.{net_name}", r.name));
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_keys_parse() {
        assert_eq!(parse_port_key("80/tcp").unwrap(), (Protocol::Tcp, vec![80]));
        assert_eq!(parse_port_key("53/udp").unwrap(), (Protocol::Udp, vec![53]));
        assert_eq!(
            parse_port_key("8000-8002").unwrap().1,
            vec![8000, 8001, 8002]
        );
        for bad in ["0/tcp", "x/tcp", "80/icmp", "9-8/tcp", "70000/tcp"] {
            assert!(parse_port_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_mode_network_comes_first() {
        let hc = HostConfig {
            network_mode: "front".into(),
            ..Default::default()
        };
        let extra = BTreeMap::from([("back".to_owned(), EndpointState::default())]);
        let names: Vec<String> = planned_networks(&hc, &extra)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["front", "back"]);
        let shared = HostConfig {
            network_mode: "container:abc".into(),
            ..Default::default()
        };
        assert!(planned_networks(&shared, &BTreeMap::new()).is_empty());
    }
}
