//! IP address management: pure logic, no system calls.
//!
//! - [`AddressPool`] and [`choose_subnet`]: picking a subnet for a network that did not ask for
//!   one, from Docker's default pools (172.17.0.0/16 .. 172.31.0.0/16 as /16s, then
//!   192.168.0.0/16 as /20s) or the daemon's `default-address-pools`, skipping every subnet that
//!   overlaps an existing network or a route of the host (the caller passes both in).
//! - [`plan_network`]: validating what `network create` asked for (`--subnet`, `--gateway`,
//!   `--ip-range`, `--aux-address`, `--ipv6`) and turning it into [`Subnet`]s.
//! - [`Subnet::allocate`] / [`Subnet::release`]: container addresses. The gateway takes the
//!   first usable address unless given; the network and (IPv4) broadcast addresses are never
//!   handed out; a dynamic address is the lowest free one of the ip-range (or subnet), as
//!   dockerd's default IPAM hands them out: a container run after another was removed gets its
//!   address (scripts count on `172.17.0.2`). Its MAC address follows from the IPv4 address,
//!   so neighbours' caches stay right. Static requests may be anywhere in the subnet.
//!
//! Everything here is `serde`-serializable so the engine can persist a network's [`Subnet`]s
//! with the network and get the same allocations back after a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::error::{NetworkError, Result};

/// The default bridge's subnet when the host leaves it free.
pub const DEFAULT_BRIDGE_SUBNET: &str = "172.17.0.0/16";

/// A range that network subnets are carved from: `base` split into subnets of prefix `size`
/// (the daemon's `default-address-pools` entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPool {
    pub base: IpNet,
    pub size: u8,
}

impl AddressPool {
    /// A pool, checked: `base` canonical, `size` no shorter than the base's prefix and no
    /// longer than the address.
    pub fn new(base: IpNet, size: u8) -> Result<Self> {
        if base.trunc() != base {
            return Err(NetworkError::invalid(format!(
                "invalid address pool base {base}: it should be {}",
                base.trunc()
            )));
        }
        if size < base.prefix_len() || size > base.max_prefix_len() {
            return Err(NetworkError::invalid(format!(
                "invalid address pool size {size} for base {base}"
            )));
        }
        Ok(Self { base, size })
    }
}

/// Docker's default IPv4 pools: 172.17.0.0/16 .. 172.31.0.0/16 as /16s, then 192.168.0.0/16
/// split into /20s.
pub fn default_pools() -> Vec<AddressPool> {
    let mut pools: Vec<AddressPool> = (17..=31)
        .map(|b| AddressPool {
            base: IpNet::V4(Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).expect("prefix 16")),
            size: 16,
        })
        .collect();
    pools.push(AddressPool {
        base: IpNet::V4(Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16).expect("prefix 16")),
        size: 20,
    });
    pools
}

/// The IPv6 pool used for `--ipv6` networks that name no IPv6 subnet: unique local addresses
/// (fd00::/8) in /64s. (Docker derives a /48 from the host's identity; a plain ULA pool keeps
/// the choice deterministic.)
pub fn default_v6_pools() -> Vec<AddressPool> {
    vec![AddressPool {
        base: IpNet::V6(Ipv6Net::new(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0), 8).expect("8")),
        size: 64,
    }]
}

/// Whether two prefixes share any address (never across address families).
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first subnet of `pools` (in order) that overlaps nothing in `taken`. Prefixes of length
/// 0 in `taken` (default routes) are ignored. Pools of the other family are skipped, so one
/// list can hold both.
pub fn choose_subnet(pools: &[AddressPool], v6: bool, taken: &[IpNet]) -> Result<IpNet> {
    let taken: Vec<&IpNet> = taken
        .iter()
        .filter(|t| t.prefix_len() > 0 && is_v6(&t.network()) == v6)
        .collect();
    for pool in pools.iter().filter(|p| is_v6(&p.base.network()) == v6) {
        let bits = pool.base.max_prefix_len();
        if pool.size < pool.base.prefix_len() || pool.size > bits {
            continue;
        }
        let Some(step) = 1u128.checked_shl(u32::from(bits - pool.size)) else {
            continue;
        };
        let (first, last) = bounds(&pool.base);
        let mut start = first;
        while start <= last {
            let end = start + (step - 1);
            let overlap = taken
                .iter()
                .map(|t| bounds(t))
                .find(|(ts, te)| *ts <= end && start <= *te);
            match overlap {
                None => return Ok(net_from(start, pool.size, v6)),
                Some((_, te)) => {
                    // Jump past whatever overlapped, to the next aligned candidate.
                    let Some(next) = te.checked_add(1) else { break };
                    let aligned = next.div_ceil(step).checked_mul(step);
                    match aligned {
                        Some(a) if a > start => start = a,
                        _ => break,
                    }
                }
            }
        }
    }
    Err(NetworkError::PoolsExhausted {
        family: if v6 { 6 } else { 4 },
    })
}

/// The default bridge's subnet and gateway: from `bip` (the bridge's address with its prefix,
/// e.g. `192.168.1.5/24`) when configured, else the first free subnet of `pools` (with
/// Docker's defaults, 172.17.0.0/16 unless taken).
pub fn default_bridge_subnet(
    bip: Option<IpNet>,
    pools: &[AddressPool],
    taken: &[IpNet],
) -> Result<(IpNet, IpAddr)> {
    if let Some(bip) = bip {
        let subnet = bip.trunc();
        let gateway = bip.addr();
        if !is_host_address(&subnet, gateway) {
            return Err(NetworkError::invalid(format!(
                "invalid bip {bip}: the bridge address must be a host address of its subnet"
            )));
        }
        return Ok((subnet, gateway));
    }
    let subnet = choose_subnet(pools, false, taken)?;
    let gateway = first_host(&subnet);
    Ok((subnet, gateway))
}

/// What `network create` asked for one subnet (an `IPAM.Config` entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetConfig {
    pub subnet: Option<IpNet>,
    pub ip_range: Option<IpNet>,
    pub gateway: Option<IpAddr>,
    /// `--aux-address name=ip`: addresses the allocator must never hand out.
    pub aux_addresses: BTreeMap<String, IpAddr>,
}

/// One subnet of a network with its allocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub subnet: IpNet,
    pub gateway: IpAddr,
    pub ip_range: Option<IpNet>,
    pub aux_addresses: BTreeMap<String, IpAddr>,
    allocated: BTreeSet<IpAddr>,
}

/// Everything a network create needs from the pools.
#[derive(Debug, Clone, Copy)]
pub struct PoolContext<'a> {
    /// IPv4 pools for networks without a subnet (usually [`default_pools`]).
    pub v4_pools: &'a [AddressPool],
    /// IPv6 pools for `--ipv6` networks without an IPv6 subnet (usually [`default_v6_pools`]).
    pub v6_pools: &'a [AddressPool],
    /// Subnets of the existing networks: a requested subnet overlapping one is an error, and
    /// chosen subnets avoid them.
    pub networks: &'a [IpNet],
    /// Destinations of the host's routes (not Berth's own bridges): chosen subnets avoid them;
    /// requested subnets may overlap them (the user knows best, as with Docker).
    pub host_routes: &'a [IpNet],
}

/// Validates a network's IPAM request and returns its subnets: the requested ones checked,
/// plus a chosen IPv4 subnet when none was requested, plus a chosen IPv6 subnet when
/// `enable_ipv6` and none was requested.
pub fn plan_network(
    configs: &[SubnetConfig],
    enable_ipv6: bool,
    pools: PoolContext<'_>,
) -> Result<Vec<Subnet>> {
    let mut out: Vec<Subnet> = Vec::new();
    for config in configs {
        let Some(subnet) = config.subnet else {
            if config.ip_range.is_some() || config.gateway.is_some() {
                return Err(NetworkError::invalid(
                    "an ip-range or gateway needs a subnet to be given with it",
                ));
            }
            continue;
        };
        if is_v6(&subnet.network()) && !enable_ipv6 {
            return Err(NetworkError::invalid(format!(
                "IPv6 subnet {subnet} given but IPv6 is not enabled on the network (--ipv6)"
            )));
        }
        if let Some(existing) = pools.networks.iter().find(|n| overlaps(n, &subnet)) {
            return Err(NetworkError::SubnetOverlap {
                subnet,
                existing: *existing,
            });
        }
        if let Some(other) = out.iter().find(|s| overlaps(&s.subnet, &subnet)) {
            return Err(NetworkError::SubnetOverlap {
                subnet,
                existing: other.subnet,
            });
        }
        out.push(Subnet::new(config)?);
    }
    let mut taken: Vec<IpNet> = pools.networks.to_vec();
    taken.extend_from_slice(pools.host_routes);
    if !out.iter().any(|s| !s.is_v6()) {
        let subnet = choose_subnet(pools.v4_pools, false, &taken)?;
        out.push(Subnet::from_subnet(subnet));
    }
    if enable_ipv6 && !out.iter().any(Subnet::is_v6) {
        let subnet = choose_subnet(pools.v6_pools, true, &taken)?;
        out.push(Subnet::from_subnet(subnet));
    }
    // Configs without a subnet may still carry aux addresses for the chosen one; Docker
    // rejects that, and so do we (above, for gateway/ip-range; aux alone is ignored).
    Ok(out)
}

impl Subnet {
    /// A subnet as requested, validated: canonical, big enough, gateway (given or the first
    /// usable address) a host address of it, ip-range and aux addresses inside it.
    pub fn new(config: &SubnetConfig) -> Result<Self> {
        let subnet = config
            .subnet
            .ok_or_else(|| NetworkError::invalid("a subnet is required"))?;
        if subnet.trunc() != subnet {
            return Err(NetworkError::invalid(format!(
                "invalid subnet {subnet}: it should be {}",
                subnet.trunc()
            )));
        }
        let v6 = is_v6(&subnet.network());
        let max = if v6 { 127 } else { 30 };
        if subnet.prefix_len() > max {
            return Err(NetworkError::invalid(format!(
                "subnet {subnet} is too small: the prefix may be at most /{max}"
            )));
        }
        let gateway = match config.gateway {
            Some(g) => {
                if !is_host_address(&subnet, g) {
                    return Err(NetworkError::invalid(format!(
                        "invalid gateway {g}: it must be a host address of subnet {subnet}"
                    )));
                }
                g
            }
            None => first_host(&subnet),
        };
        if let Some(range) = config.ip_range {
            if range.trunc() != range {
                return Err(NetworkError::invalid(format!(
                    "invalid ip-range {range}: it should be {}",
                    range.trunc()
                )));
            }
            if is_v6(&range.network()) != v6
                || !subnet.contains(&range)
                || range.prefix_len() < subnet.prefix_len()
            {
                return Err(NetworkError::invalid(format!(
                    "invalid ip-range {range}: it must be inside subnet {subnet}"
                )));
            }
        }
        for (name, ip) in &config.aux_addresses {
            if !subnet.contains(ip) {
                return Err(NetworkError::invalid(format!(
                    "invalid auxiliary address {name}={ip}: it is not in subnet {subnet}"
                )));
            }
        }
        Ok(Self {
            subnet,
            gateway,
            ip_range: config.ip_range,
            aux_addresses: config.aux_addresses.clone(),
            allocated: BTreeSet::new(),
        })
    }

    /// A chosen subnet with the default gateway.
    pub fn from_subnet(subnet: IpNet) -> Self {
        Self {
            gateway: first_host(&subnet),
            subnet,
            ip_range: None,
            aux_addresses: BTreeMap::new(),
            allocated: BTreeSet::new(),
        }
    }

    /// Whether this is an IPv6 subnet.
    pub fn is_v6(&self) -> bool {
        is_v6(&self.subnet.network())
    }

    /// The gateway with the subnet's prefix, as the bridge carries it. Fails only for state
    /// that was edited into inconsistency (a gateway of the other family).
    pub fn gateway_net(&self) -> Result<IpNet> {
        let same_family = self.gateway.is_ipv6() == self.is_v6();
        let net = IpNet::new(self.gateway, self.subnet.prefix_len())
            .ok()
            .filter(|_| same_family);
        net.ok_or_else(|| {
            NetworkError::invalid(format!(
                "gateway {} does not fit subnet {}",
                self.gateway, self.subnet
            ))
        })
    }

    /// The addresses handed out so far.
    pub fn allocated(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.allocated.iter().copied()
    }

    /// Whether `ip` is handed out.
    pub fn is_allocated(&self, ip: IpAddr) -> bool {
        self.allocated.contains(&ip)
    }

    /// Hands out `requested` (which must be a free host address of the subnet), or the lowest
    /// free address of the ip-range (or subnet).
    pub fn allocate(&mut self, requested: Option<IpAddr>) -> Result<IpAddr> {
        if let Some(ip) = requested {
            if !is_host_address(&self.subnet, ip) {
                return Err(NetworkError::AddressOutOfRange(ip));
            }
            if self.is_reserved(ip) {
                return Err(NetworkError::AddressInUse(ip));
            }
            self.allocated.insert(ip);
            return Ok(ip);
        }
        let v6 = self.is_v6();
        let (sub_first, sub_last) = host_bounds(&self.subnet);
        let (first, last) = match self.ip_range {
            Some(range) => {
                let (rf, rl) = bounds(&range);
                (rf.max(sub_first), rl.min(sub_last))
            }
            None => (sub_first, sub_last),
        };
        let exhausted = NetworkError::AddressesExhausted {
            family: if v6 { 6 } else { 4 },
            subnet: self.ip_range.unwrap_or(self.subnet),
        };
        if first > last {
            return Err(exhausted);
        }
        let size = (last - first).saturating_add(1);
        // At most this many consecutive candidates can be taken, so the scan is bounded by
        // what is allocated rather than by the size of the range (an IPv6 /64 is huge).
        let busy = self.allocated.len() as u128 + self.aux_addresses.len() as u128 + 1;
        let tries = size.min(busy + 1);
        for candidate in (first..=last).take(tries as usize) {
            let ip = from_u128(candidate, v6);
            if !self.is_reserved(ip) {
                self.allocated.insert(ip);
                return Ok(ip);
            }
        }
        Err(exhausted)
    }

    /// Gives an address back; false when it was not handed out.
    pub fn release(&mut self, ip: IpAddr) -> bool {
        self.allocated.remove(&ip)
    }

    fn is_reserved(&self, ip: IpAddr) -> bool {
        ip == self.gateway
            || self.allocated.contains(&ip)
            || self.aux_addresses.values().any(|a| *a == ip)
    }
}

/// Allocates an address for `requested` (or dynamically) from the first subnet of the right
/// family that has one; a static request must fall inside one of the subnets.
pub fn allocate_in(subnets: &mut [Subnet], v6: bool, requested: Option<IpAddr>) -> Result<IpAddr> {
    if let Some(ip) = requested {
        let subnet = subnets
            .iter_mut()
            .find(|s| s.subnet.contains(&ip))
            .ok_or(NetworkError::AddressOutOfRange(ip))?;
        return subnet.allocate(Some(ip));
    }
    let mut last_err = None;
    for s in subnets.iter_mut().filter(|s| s.is_v6() == v6) {
        match s.allocate(None) {
            Ok(ip) => return Ok(ip),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        NetworkError::invalid(format!(
            "the network has no IPv{} subnet",
            if v6 { 6 } else { 4 }
        ))
    }))
}

/// Releases `ip` from whichever subnet holds it.
pub fn release_in(subnets: &mut [Subnet], ip: IpAddr) -> bool {
    subnets.iter_mut().any(|s| s.release(ip))
}

/// The MAC address Docker gives an endpoint: `02:42` followed by the four bytes of its IPv4
/// address.
pub fn mac_for_ipv4(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
/// Parses `02:42:ac:11:00:02` (or `-` separated); `None` for anything else.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn is_v6(ip: &IpAddr) -> bool {
    ip.is_ipv6()
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(n: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        // Callers only pass values taken from IPv4 prefixes.
        IpAddr::V4(Ipv4Addr::from(n as u32))
    }
}

fn net_from(start: u128, prefix: u8, v6: bool) -> IpNet {
    IpNet::new(from_u128(start, v6), prefix).expect("prefix within the family")
}

/// First and last address of a prefix, as numbers.
fn bounds(net: &IpNet) -> (u128, u128) {
    (to_u128(net.network()), to_u128(net.broadcast()))
}

/// First and last address a host may have: IPv4 skips the network and broadcast addresses;
/// IPv6 skips the subnet-router anycast address (the first).
fn host_bounds(net: &IpNet) -> (u128, u128) {
    let (first, last) = bounds(net);
    if is_v6(&net.network()) {
        (first.saturating_add(1), last)
    } else {
        (first.saturating_add(1), last.saturating_sub(1))
    }
}

fn first_host(net: &IpNet) -> IpAddr {
    from_u128(host_bounds(net).0, is_v6(&net.network()))
}

fn is_host_address(net: &IpNet, ip: IpAddr) -> bool {
    if ip.is_ipv6() != is_v6(&net.network()) || !net.contains(&ip) {
        return false;
    }
    let (first, last) = host_bounds(net);
    (first..=last).contains(&to_u128(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn ctx<'a>(
        networks: &'a [IpNet],
        routes: &'a [IpNet],
        v4: &'a [AddressPool],
        v6: &'a [AddressPool],
    ) -> PoolContext<'a> {
        PoolContext {
            v4_pools: v4,
            v6_pools: v6,
            networks,
            host_routes: routes,
        }
    }

    #[test]
    fn default_pools_are_dockers() {
        let p = default_pools();
        assert_eq!(p.len(), 16);
        assert_eq!(p[0].base, n("172.17.0.0/16"));
        assert_eq!(p[14].base, n("172.31.0.0/16"));
        assert_eq!(
            p[15],
            AddressPool {
                base: n("192.168.0.0/16"),
                size: 20
            }
        );
    }

    #[test]
    fn choose_skips_taken_networks_and_routes() {
        let pools = default_pools();
        assert_eq!(
            choose_subnet(&pools, false, &[]).unwrap(),
            n("172.17.0.0/16")
        );
        let taken = [n("172.17.0.0/16"), n("172.18.5.0/24"), n("0.0.0.0/0")];
        assert_eq!(
            choose_subnet(&pools, false, &taken).unwrap(),
            n("172.19.0.0/16")
        );
        // A wide route covering all the 172 pools pushes to 192.168.
        let taken = [
            n("172.16.0.0/12"),
            n("192.168.0.0/20"),
            n("192.168.17.0/24"),
        ];
        assert_eq!(
            choose_subnet(&pools, false, &taken).unwrap(),
            n("192.168.32.0/20")
        );
        // Everything taken.
        let taken = [n("172.16.0.0/12"), n("192.168.0.0/16")];
        let e = choose_subnet(&pools, false, &taken).unwrap_err();
        assert!(matches!(e, NetworkError::PoolsExhausted { family: 4 }));
        // IPv6 routes do not affect IPv4 choices, and the reverse.
        assert_eq!(
            choose_subnet(&pools, false, &[n("::/1")]).unwrap(),
            n("172.17.0.0/16")
        );
    }

    #[test]
    fn choose_jumps_over_big_overlaps_quickly() {
        let pools = default_v6_pools();
        // A /16 taken means 2^48 /64 candidates to skip: must not loop over them.
        let taken = [n("fd00::/16"), n("fd01::/64")];
        assert_eq!(
            choose_subnet(&pools, true, &taken).unwrap(),
            n("fd01:0:0:1::/64")
        );
    }

    #[test]
    fn custom_pools() {
        let pool = AddressPool::new(n("10.10.0.0/16"), 24).unwrap();
        assert_eq!(
            choose_subnet(&[pool], false, &[n("10.10.0.0/24")]).unwrap(),
            n("10.10.1.0/24")
        );
        assert!(AddressPool::new(n("10.10.0.1/16"), 24).is_err());
        assert!(AddressPool::new(n("10.10.0.0/16"), 8).is_err());
        assert!(AddressPool::new(n("10.10.0.0/16"), 33).is_err());
    }

    #[test]
    fn default_bridge() {
        let pools = default_pools();
        assert_eq!(
            default_bridge_subnet(None, &pools, &[]).unwrap(),
            (n("172.17.0.0/16"), ip("172.17.0.1"))
        );
        assert_eq!(
            default_bridge_subnet(None, &pools, &[n("172.17.0.0/16")]).unwrap(),
            (n("172.18.0.0/16"), ip("172.18.0.1"))
        );
        assert_eq!(
            default_bridge_subnet(Some(n("192.168.1.5/24")), &pools, &[]).unwrap(),
            (n("192.168.1.0/24"), ip("192.168.1.5"))
        );
        assert!(default_bridge_subnet(Some(n("192.168.1.0/24")), &pools, &[]).is_err());
        assert!(default_bridge_subnet(Some(n("192.168.1.255/24")), &pools, &[]).is_err());
    }

    #[test]
    fn plan_validates_requests() {
        let v4 = default_pools();
        let v6 = default_v6_pools();
        let existing = [n("172.17.0.0/16")];
        let c = ctx(&existing, &[], &v4, &v6);
        let req = |s: &str| SubnetConfig {
            subnet: Some(n(s)),
            ..Default::default()
        };

        let plan = plan_network(&[req("10.1.0.0/24")], false, c).unwrap();
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].gateway, ip("10.1.0.1"));

        // Overlap with an existing network is a conflict.
        let e = plan_network(&[req("172.17.3.0/24")], false, c).unwrap_err();
        assert!(matches!(e, NetworkError::SubnetOverlap { .. }), "{e}");
        assert_eq!(e.kind(), crate::ErrorKind::Conflict);
        // Overlap between two requested subnets too.
        assert!(plan_network(&[req("10.0.0.0/8"), req("10.1.0.0/16")], false, c).is_err());
        // Non-canonical subnet.
        let e = plan_network(&[req("10.1.0.1/24")], false, c).unwrap_err();
        assert!(e.to_string().contains("it should be 10.1.0.0/24"), "{e}");
        // Gateway outside the subnet, on the network address, on the broadcast address.
        for gw in ["10.2.0.1", "10.1.0.0", "10.1.0.255"] {
            let c2 = SubnetConfig {
                gateway: Some(ip(gw)),
                ..req("10.1.0.0/24")
            };
            assert!(plan_network(&[c2], false, c).is_err(), "{gw}");
        }
        // ip-range outside or wider than the subnet.
        for r in ["10.2.0.0/28", "10.0.0.0/8"] {
            let c2 = SubnetConfig {
                ip_range: Some(n(r)),
                ..req("10.1.0.0/24")
            };
            assert!(plan_network(&[c2], false, c).is_err(), "{r}");
        }
        // Gateway without subnet.
        let c2 = SubnetConfig {
            gateway: Some(ip("10.0.0.1")),
            ..Default::default()
        };
        assert!(plan_network(&[c2], false, c).is_err());
        // IPv6 subnet without --ipv6.
        assert!(plan_network(&[req("fd12::/64")], false, c).is_err());
        // Too small.
        assert!(plan_network(&[req("10.1.0.0/31")], false, c).is_err());
        // Aux address outside.
        let mut c2 = req("10.1.0.0/24");
        c2.aux_addresses.insert("x".into(), ip("10.9.0.1"));
        assert!(plan_network(&[c2], false, c).is_err());
    }

    #[test]
    fn plan_chooses_missing_families() {
        let v4 = default_pools();
        let v6 = default_v6_pools();
        let existing = [n("172.17.0.0/16")];
        let routes = [n("172.18.0.0/24"), n("fd00::/64")];
        let c = ctx(&existing, &routes, &v4, &v6);
        let plan = plan_network(&[], false, c).unwrap();
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].subnet, n("172.19.0.0/16"));
        let plan = plan_network(&[], true, c).unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[1].subnet, n("fd00:0:0:1::/64"));
        assert_eq!(plan[1].gateway, ip("fd00:0:0:1::1"));
        // Requested v6 and no v4: a v4 subnet is still chosen (Docker always has IPv4).
        let req = SubnetConfig {
            subnet: Some(n("fd12:3456::/64")),
            ..Default::default()
        };
        let plan = plan_network(&[req], true, c).unwrap();
        assert_eq!(plan.iter().filter(|s| s.is_v6()).count(), 1);
        assert_eq!(plan.iter().filter(|s| !s.is_v6()).count(), 1);
        // A requested subnet may overlap a host route.
        let req = SubnetConfig {
            subnet: Some(n("172.18.0.0/16")),
            ..Default::default()
        };
        assert!(plan_network(&[req], false, c).is_ok());
    }

    #[test]
    fn allocation_order_and_reuse() {
        let mut s = Subnet::from_subnet(n("10.0.0.0/29")); // hosts .1-.6, gateway .1
        assert_eq!(s.allocate(None).unwrap(), ip("10.0.0.2"));
        assert_eq!(s.allocate(None).unwrap(), ip("10.0.0.3"));
        assert!(s.release(ip("10.0.0.2")));
        assert!(!s.release(ip("10.0.0.2")));
        // The lowest free one, as dockerd: the one just released.
        assert_eq!(s.allocate(None).unwrap(), ip("10.0.0.2"));
        assert_eq!(s.allocate(None).unwrap(), ip("10.0.0.4"));
        assert!(s.release(ip("10.0.0.3")));
        assert_eq!(s.allocate(None).unwrap(), ip("10.0.0.3"));
        assert_eq!(s.allocate(None).unwrap(), ip("10.0.0.5"));
        assert_eq!(s.allocate(None).unwrap(), ip("10.0.0.6"));
        let e = s.allocate(None).unwrap_err();
        assert!(matches!(
            e,
            NetworkError::AddressesExhausted { family: 4, .. }
        ));
        // Broadcast and network are never handed out.
        assert!(!s.is_allocated(ip("10.0.0.7")) && !s.is_allocated(ip("10.0.0.0")));
    }

    #[test]
    fn static_requests() {
        let mut aux = BTreeMap::new();
        aux.insert("router".to_owned(), ip("10.0.0.3"));
        let cfg = SubnetConfig {
            subnet: Some(n("10.0.0.0/24")),
            gateway: Some(ip("10.0.0.254")),
            ip_range: Some(n("10.0.0.0/30")),
            aux_addresses: aux,
        };
        let mut s = Subnet::new(&cfg).unwrap();
        // ip-range 10.0.0.0/30 minus network address minus aux .3 → .1, .2
        assert_eq!(s.allocate(None).unwrap(), ip("10.0.0.1"));
        assert_eq!(s.allocate(None).unwrap(), ip("10.0.0.2"));
        assert!(s.allocate(None).is_err());
        // Static outside the ip-range but inside the subnet is fine.
        assert_eq!(
            s.allocate(Some(ip("10.0.0.100"))).unwrap(),
            ip("10.0.0.100")
        );
        for bad in ["10.0.0.100", "10.0.0.254", "10.0.0.3"] {
            let e = s.allocate(Some(ip(bad))).unwrap_err();
            assert!(matches!(e, NetworkError::AddressInUse(_)), "{bad}: {e}");
        }
        for bad in ["10.0.1.1", "10.0.0.0", "10.0.0.255", "fd00::1"] {
            let e = s.allocate(Some(ip(bad))).unwrap_err();
            assert!(
                matches!(e, NetworkError::AddressOutOfRange(_)),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn ipv6_allocation() {
        let mut s = Subnet::from_subnet(n("fd12::/64"));
        assert_eq!(s.gateway, ip("fd12::1"));
        assert_eq!(s.allocate(None).unwrap(), ip("fd12::2"));
        assert_eq!(
            s.allocate(Some(ip("fd12::ffff:ffff:ffff:ffff"))).unwrap(),
            ip("fd12::ffff:ffff:ffff:ffff")
        );
        assert_eq!(s.allocate(None).unwrap(), ip("fd12::3"));
        assert_eq!(s.gateway_net().unwrap(), n("fd12::1/64"));
        // Degenerate state deserialized from elsewhere never panics.
        let mut odd = Subnet::from_subnet(n("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"));
        let _ = odd.allocate(None);
        let mut all = Subnet::from_subnet(n("::/0"));
        assert!(all.allocate(None).is_ok());
        all.gateway = ip("10.0.0.1");
        assert!(all.gateway_net().is_err());
    }

    #[test]
    fn allocate_across_subnets() {
        let mut subnets = vec![
            Subnet::from_subnet(n("10.0.0.0/30")),
            Subnet::from_subnet(n("10.0.1.0/24")),
            Subnet::from_subnet(n("fd00::/64")),
        ];
        assert_eq!(
            allocate_in(&mut subnets, false, None).unwrap(),
            ip("10.0.0.2")
        );
        assert_eq!(
            allocate_in(&mut subnets, false, None).unwrap(),
            ip("10.0.1.2")
        );
        assert_eq!(
            allocate_in(&mut subnets, true, None).unwrap(),
            ip("fd00::2")
        );
        assert_eq!(
            allocate_in(&mut subnets, false, Some(ip("10.0.1.9"))).unwrap(),
            ip("10.0.1.9")
        );
        assert!(allocate_in(&mut subnets, false, Some(ip("10.0.2.9"))).is_err());
        assert!(release_in(&mut subnets, ip("10.0.1.9")));
        assert!(!release_in(&mut subnets, ip("10.0.1.9")));
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut s = Subnet::from_subnet(n("10.0.0.0/24"));
        s.allocate(None).unwrap();
        s.allocate(None).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        let mut back: Subnet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.allocate(None).unwrap(), ip("10.0.0.4"));
    }

    #[test]
    fn mac() {
        assert_eq!(
            format_mac(&mac_for_ipv4("172.17.0.2".parse().unwrap())),
            "02:42:ac:11:00:02"
        );
    }
}
