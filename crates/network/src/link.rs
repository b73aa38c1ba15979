//! Links over rtnetlink: bridges, container endpoints (veth pairs), host routes, and the
//! sysctls a bridge needs.
//!
//! A [`Netlink`] is one rtnetlink socket with its connection task on the caller's tokio
//! runtime. [`Netlink::connect`] opens it in the calling thread's namespace (the daemon's, the
//! "host"); [`Netlink::connect_in`] opens it from a thread that entered another namespace, and
//! the socket keeps talking to that namespace afterwards. Setting up an endpoint uses both:
//!
//! 1. host: create the veth pair `vb<hash>` / `vp<hash>` (the host side's name derives from the
//!    endpoint id, so teardown finds it again after a daemon restart), attach the host side to
//!    the bridge (hairpin on, so a container can reach itself through a published port), up;
//! 2. host: move the peer into the container's namespace;
//! 3. container: rename the peer (`eth0`, `eth1`...), set its MAC and MTU, add its addresses
//!    (IPv6 without duplicate address detection, as Docker), up, `lo` up, default routes.
//!
//! Any failure after step 1 deletes the pair again. Deleting the host side deletes both ends,
//! and a namespace that goes away takes its end with it, so nothing dangles.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder, new_connection,
};
use tokio::task::JoinHandle;

use crate::error::{NetworkError, Result};
use crate::netns::Netns;

/// The kernel's main routing table.
const RT_TABLE_MAIN: u32 = 254;

/// One rtnetlink connection, bound to the namespace it was opened in.
pub struct Netlink {
    handle: Handle,
    task: JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A bridge to make sure of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Interface name (`berth0`, `br-<id12>`): at most 15 bytes.
    pub name: String,
    /// Gateway addresses with their subnets' prefix (`172.17.0.1/16`).
    pub addresses: Vec<IpNet>,
    /// MTU, when not the kernel's default.
    pub mtu: Option<u32>,
}

/// A container's interface on one network.
#[derive(Debug)]
pub struct EndpointRequest<'a> {
    /// Stable id of the endpoint (e.g. container id + network id); names the host veth.
    pub endpoint_id: &'a str,
    /// The network's bridge.
    pub bridge: &'a str,
    /// The container's namespace.
    pub netns: &'a Netns,
    /// Interface name inside the container (`eth0`).
    pub ifname: &'a str,
    /// Addresses with their subnets' prefix.
    pub addresses: Vec<IpNet>,
    /// MAC address; the kernel picks one when `None`.
    pub mac: Option<[u8; 6]>,
    /// IPv4 default route via this gateway (the network that provides the default route).
    pub gateway_v4: Option<Ipv4Addr>,
    /// IPv6 default route via this gateway.
    pub gateway_v6: Option<Ipv6Addr>,
    pub mtu: Option<u32>,
    /// Whether the network has IPv6. When not, IPv6 is turned off on the interface inside
    /// the container (as Docker does), so it gets no link-local address to leak through.
    pub ipv6: bool,
}

/// What [`Netlink::attach_endpoint`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The host side of the veth pair, on the bridge.
    pub host_veth: String,
    /// The interface inside the container.
    pub ifname: String,
}

/// A route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: IpNet,
    /// Index of the output interface, when the route has one.
    pub oif: Option<u32>,
}

/// The default network's bridge.
pub const DEFAULT_BRIDGE: &str = "berth0";

/// The bridge of a user-defined network: `br-` and the first 12 characters of its id, as
/// Docker names them (`com.docker.network.bridge.name` may override it).
pub fn bridge_name(network_id: &str) -> String {
    let short: String = network_id.chars().take(12).collect();
    format!("br-{short}")
}

/// The host side name of an endpoint's veth pair: `vb` and ten hex digits of a hash of the
/// endpoint id (12 bytes, within the kernel's 15).
pub fn host_veth_name(endpoint_id: &str) -> String {
    format!("vb{}", &hash_hex(endpoint_id)[..10])
}

/// The name the container side has until it is moved and renamed.
fn peer_temp_name(endpoint_id: &str) -> String {
    format!("vp{}", &hash_hex(endpoint_id)[..10])
}

/// FNV-1a, 64 bits, as hex: stable across releases (unlike std's hasher).
fn hash_hex(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Checks an interface name the kernel would accept.
pub fn validate_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(NetworkError::invalid(format!(
            "invalid interface name {name:?}: 1 to 15 printable characters, no '/' or ':'"
        )))
    }
}

/// The errno of a netlink error answer.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

impl Netlink {
    /// A connection in the calling thread's namespace. Needs a tokio runtime.
    pub fn connect() -> Result<Self> {
        tokio::runtime::Handle::try_current().map_err(|e| {
            NetworkError::io("netlink needs a tokio runtime")(std::io::Error::other(e))
        })?;
        let (conn, handle, _) = new_connection().map_err(NetworkError::io("netlink socket"))?;
        let task = tokio::spawn(conn);
        Ok(Self { handle, task })
    }

    /// A connection to namespace `ns`: the socket is opened by a thread inside it. Needs a
    /// tokio runtime.
    pub fn connect_in(ns: &Netns) -> Result<Self> {
        let rt = tokio::runtime::Handle::try_current().map_err(|e| {
            NetworkError::io("netlink needs a tokio runtime")(std::io::Error::other(e))
        })?;
        let (conn, handle, _) = ns
            .run(|| {
                let _enter = rt.enter();
                new_connection()
            })?
            .map_err(NetworkError::io("netlink socket"))?;
        let task = tokio::spawn(conn);
        Ok(Self { handle, task })
    }

    /// The index of link `name`, if it exists.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>> {
        validate_ifname(name)?;
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(msg.header.index)),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(NetworkError::netlink(format!("get link {name}"))(e)),
        }
    }

    /// The name of link `index`, if it exists.
    pub async fn link_name(&self, index: u32) -> Result<Option<String>> {
        let mut links = self.handle.link().get().match_index(index).execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(msg.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            })),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(NetworkError::netlink(format!("get link {index}"))(e)),
        }
    }

    async fn require_index(&self, name: &str) -> Result<u32> {
        self.link_index(name)
            .await?
            .ok_or_else(|| NetworkError::NoSuchLink(name.to_owned()))
    }

    /// Makes sure the bridge exists, carries `addresses` and is up. Idempotent: an existing
    /// bridge is kept (addresses it lacks are added; others are left alone). Returns its index.
    pub async fn ensure_bridge(&self, config: &BridgeConfig) -> Result<u32> {
        validate_ifname(&config.name)?;
        let name = &config.name;
        let index = match self.link_index(name).await? {
            Some(i) => i,
            None => {
                let mut msg = LinkBridge::new(name);
                if let Some(mtu) = config.mtu {
                    msg = msg.mtu(mtu);
                }
                match self.handle.link().add(msg.build()).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                    Err(e) => {
                        return Err(NetworkError::netlink(format!("create bridge {name}"))(e));
                    }
                }
                self.require_index(name).await?
            }
        };
        let present = self.addresses_of(index).await?;
        for net in &config.addresses {
            if present.contains(net) {
                continue;
            }
            self.add_address(index, *net)
                .await
                .map_err(NetworkError::netlink(format!("add {net} to {name}")))?;
        }
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(NetworkError::netlink(format!("set {name} up")))?;
        Ok(index)
    }

    async fn add_address(
        &self,
        index: u32,
        net: IpNet,
    ) -> std::result::Result<(), rtnetlink::Error> {
        let mut req = self
            .handle
            .address()
            .add(index, net.addr(), net.prefix_len());
        if net.addr().is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// The addresses (with prefix) on link `index`.
    pub async fn addresses_of(&self, index: u32) -> Result<Vec<IpNet>> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(NetworkError::netlink("list addresses"))?;
        let mut out = Vec::new();
        for msg in msgs {
            let prefix = msg.header.prefix_len;
            for attr in msg.attributes {
                if let AddressAttribute::Address(ip) = attr {
                    if let Ok(net) = IpNet::new(ip, prefix) {
                        out.push(net);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Deletes link `name` (a bridge, a veth: its peer goes with it). False when it was not
    /// there.
    pub async fn delete_link(&self, name: &str) -> Result<bool> {
        let Some(index) = self.link_index(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(NetworkError::netlink(format!("delete {name}"))(e)),
        }
    }

    /// Creates the container's interface on a bridge (see the module doc). A stale pair with
    /// the same name (left by a crash) is replaced.
    ///
    /// The pair is made with its peer already inside the container's namespace, named and
    /// addressed as it will stay, and its host end already on the bridge and up: moving a
    /// device between namespaces waits for an RCU grace period (tens of milliseconds), which
    /// creating it there does not.
    pub async fn attach_endpoint(&self, req: &EndpointRequest<'_>) -> Result<Endpoint> {
        validate_ifname(req.ifname)?;
        let host = host_veth_name(req.endpoint_id);
        let bridge = self.require_index(req.bridge).await?;
        self.delete_link(&host).await?;
        // A pair from an older Berth, whose peer waited on the host under a temporary name.
        self.delete_link(&peer_temp_name(req.endpoint_id)).await?;
        let mut peer = LinkUnspec::new_with_name(req.ifname).setns_by_fd(req.netns.as_raw_fd());
        if let Some(mac) = req.mac {
            peer = peer.address(mac.to_vec());
        }
        if let Some(mtu) = req.mtu {
            peer = peer.mtu(mtu);
        }
        let mut veth = LinkVeth::new(&host, req.ifname)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .controller(bridge)
            .up();
        if let Some(mtu) = req.mtu {
            veth = veth.mtu(mtu);
        }
        self.handle
            .link()
            .add(veth.build())
            .execute()
            .await
            .map_err(NetworkError::netlink(format!("create veth {host}")))?;
        let result = self.finish_endpoint(req, &host).await;
        if result.is_err() {
            let _ = self.delete_link(&host).await;
        }
        result?;
        Ok(Endpoint {
            host_veth: host,
            ifname: req.ifname.to_owned(),
        })
    }

    async fn finish_endpoint(&self, req: &EndpointRequest<'_>, host: &str) -> Result<()> {
        let host_index = self.require_index(host).await?;
        // Hairpin lets a container reach itself through a published port of its own.
        self.handle
            .link()
            .set_port(LinkBridgePort::new(host_index).hairpin(true).build())
            .execute()
            .await
            .map_err(NetworkError::netlink(format!("hairpin on {host}")))?;
        let inner = Netlink::connect_in(req.netns)?;
        inner.configure_container_side(req).await
    }

    async fn configure_container_side(&self, req: &EndpointRequest<'_>) -> Result<()> {
        let index = self.require_index(req.ifname).await?;
        if !req.ipv6 {
            let ifname = req.ifname;
            // Kernels without IPv6 have no such file, which is the wanted state anyway.
            let res = req
                .netns
                .run(|| write_sysctl(&["net", "ipv6", "conf", ifname, "disable_ipv6"], "1"))?;
            match res {
                Err(NetworkError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        for net in &req.addresses {
            self.add_address(index, *net)
                .await
                .map_err(NetworkError::netlink(format!(
                    "add {net} to {}",
                    req.ifname
                )))?;
        }
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(NetworkError::netlink(format!("set {} up", req.ifname)))?;
        if let Some(lo) = self.link_index("lo").await? {
            self.handle
                .link()
                .set(LinkUnspec::new_with_index(lo).up().build())
                .execute()
                .await
                .map_err(NetworkError::netlink("set lo up"))?;
        }
        if let Some(gw) = req.gateway_v4 {
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build();
            self.add_route(route, &format!("default route via {gw}"))
                .await?;
        }
        if let Some(gw) = req.gateway_v6 {
            let route = RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build();
            self.add_route(route, &format!("default route via {gw}"))
                .await?;
        }
        Ok(())
    }

    async fn add_route(
        &self,
        route: rtnetlink::packet_route::route::RouteMessage,
        what: &str,
    ) -> Result<()> {
        match self.handle.route().add(route).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(NetworkError::netlink(what.to_owned())(e)),
        }
    }

    /// Removes an endpoint's veth pair by the endpoint id. Missing is fine (the namespace may
    /// already be gone, taking the pair with it).
    pub async fn detach_endpoint(&self, endpoint_id: &str) -> Result<()> {
        self.delete_link(&host_veth_name(endpoint_id)).await?;
        // A pair whose peer never left the host (a crash mid-setup).
        self.delete_link(&peer_temp_name(endpoint_id)).await?;
        Ok(())
    }

    /// The unicast routes of the main table, both families.
    pub async fn routes(&self) -> Result<Vec<Route>> {
        let mut out = Vec::new();
        let v4 = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let v6 = RouteMessageBuilder::<Ipv6Addr>::new().build();
        for query in [v4, v6] {
            let msgs: Vec<_> = self
                .handle
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(NetworkError::netlink("list routes"))?;
            for msg in msgs {
                if msg.header.kind != RouteType::Unicast {
                    continue;
                }
                let mut table = u32::from(msg.header.table);
                let mut dst: Option<IpAddr> = None;
                let mut oif = None;
                for attr in &msg.attributes {
                    match attr {
                        RouteAttribute::Table(t) => table = *t,
                        RouteAttribute::Destination(RouteAddress::Inet(a)) => {
                            dst = Some(IpAddr::V4(*a))
                        }
                        RouteAttribute::Destination(RouteAddress::Inet6(a)) => {
                            dst = Some(IpAddr::V6(*a))
                        }
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        _ => {}
                    }
                }
                if table != RT_TABLE_MAIN {
                    continue;
                }
                let prefix = msg.header.destination_prefix_length;
                let dst = match dst {
                    Some(d) => d,
                    None if msg.header.address_family
                        == rtnetlink::packet_route::AddressFamily::Inet6 =>
                    {
                        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                    }
                    None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                };
                if let Ok(net) = IpNet::new(dst, prefix) {
                    out.push(Route {
                        destination: net.trunc(),
                        oif,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Destinations of the host's routes for IPAM to avoid: default routes, IPv6 link-local
    /// and multicast routes, and routes through the links named in `exclude` (Berth's own
    /// bridges) left out.
    pub async fn host_route_prefixes(&self, exclude: &[&str]) -> Result<Vec<IpNet>> {
        let mut skip = Vec::new();
        for name in exclude {
            if let Some(i) = self.link_index(name).await? {
                skip.push(i);
            }
        }
        let routes = self.routes().await?;
        Ok(routes
            .into_iter()
            .filter(|r| r.destination.prefix_len() > 0)
            .filter(|r| r.oif.is_none_or(|o| !skip.contains(&o)))
            .filter(|r| match r.destination.addr() {
                IpAddr::V6(a) => !(a.is_unicast_link_local() || a.is_multicast()),
                IpAddr::V4(_) => true,
            })
            .map(|r| r.destination)
            .collect())
    }

    /// Whether link `name` is administratively up.
    pub async fn is_up(&self, name: &str) -> Result<bool> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(msg.header.flags.contains(LinkFlags::Up)),
            Ok(None) => Err(NetworkError::NoSuchLink(name.to_owned())),
            Err(e) if errno(&e) == Some(libc::ENODEV) => {
                Err(NetworkError::NoSuchLink(name.to_owned()))
            }
            Err(e) => Err(NetworkError::netlink(format!("get link {name}"))(e)),
        }
    }
}

/// Writes `value` to the sysctl at `path` (its components, e.g.
/// `["net", "ipv4", "conf", "berth0", "route_localnet"]`) in the calling thread's network
/// namespace, unless it already holds that value. `/proc/sys/net` shows the namespace of the
/// thread that opens it, so call this from the right thread ([`Netns::run`]).
pub fn write_sysctl(path: &[&str], value: &str) -> Result<()> {
    for part in path {
        if part.is_empty() || *part == "." || *part == ".." || part.contains('/') {
            return Err(NetworkError::invalid(format!(
                "invalid sysctl component {part:?}"
            )));
        }
    }
    let file = format!("/proc/sys/{}", path.join("/"));
    if let Ok(cur) = std::fs::read_to_string(&file) {
        if cur.trim() == value {
            return Ok(());
        }
    }
    std::fs::write(&file, value).map_err(NetworkError::io(format!("write {file}")))
}

/// The sysctls a Berth bridge needs in the host namespace: IPv4 forwarding (global), and
/// `route_localnet` on the bridge so DNAT of 127.0.0.1 to a container may leave through it;
/// with `ipv6`, IPv6 forwarding (global: note that this makes the host ignore router
/// advertisements on interfaces with `accept_ra=1`, as with Docker).
pub fn bridge_sysctls(bridge: &str, ipv6: bool) -> Result<()> {
    validate_ifname(bridge)?;
    write_sysctl(&["net", "ipv4", "ip_forward"], "1")?;
    write_sysctl(&["net", "ipv4", "conf", bridge, "route_localnet"], "1")?;
    if ipv6 {
        write_sysctl(&["net", "ipv6", "conf", "all", "forwarding"], "1")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names() {
        assert_eq!(bridge_name("0123456789abcdef0123"), "br-0123456789ab");
        assert!(validate_ifname(&bridge_name("0123456789abcdef0123")).is_ok());
        assert!(validate_ifname(DEFAULT_BRIDGE).is_ok());
    }

    #[test]
    fn veth_names_are_stable_and_short() {
        let a = host_veth_name("0123456789abcdef/net1");
        assert_eq!(a, host_veth_name("0123456789abcdef/net1"));
        assert_ne!(a, host_veth_name("0123456789abcdef/net2"));
        assert!(a.len() <= 15 && a.starts_with("vb"));
        assert!(validate_ifname(&a).is_ok());
        assert!(validate_ifname(&peer_temp_name("x")).is_ok());
    }

    #[test]
    fn ifname_validation() {
        for bad in ["", ".", "..", "a/b", "a:b", "sixteen-chars-xx", "a b"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
        for good in ["eth0", "berth0", "br-0123456789ab"] {
            assert!(validate_ifname(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn sysctl_paths_are_checked() {
        assert!(write_sysctl(&["net", "..", "x"], "1").is_err());
        assert!(write_sysctl(&["net", "a/b"], "1").is_err());
    }
}
