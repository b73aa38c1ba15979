//! Berth's bridge networking: everything between "this container is on these networks with
//! these published ports" and packets flowing.
//!
//! - [`ipam`]: subnets for networks and addresses for containers (pure, serializable state).
//! - [`netns`]: network namespace handles, and running code inside one (a thread that
//!   `setns`es).
//! - [`link`]: bridges, veth pairs and container interfaces over rtnetlink; host routes; the
//!   sysctls a bridge needs.
//! - [`nft`]: the `inet berth` nftables table (NAT, published ports, isolation), built as a
//!   pure function of all networks and port mappings and applied in one atomic `nft -j`
//!   transaction.
//! - [`ports`]: host port reservation (the sockets that keep a published port ours) and the
//!   userland proxy for what the kernel path cannot carry.
//! - [`dns`]: the embedded DNS server on 127.0.0.11 inside a container's namespace.
//!
//! The crate sits below the engine and knows nothing of containers beyond addresses, names and
//! namespaces; the engine owns the state (networks with their [`ipam::Subnet`]s, endpoints,
//! port mappings) and calls in. The intended sequences:
//!
//! - **Daemon start**: [`link::Netlink::connect`]; for the default network, when its state is
//!   new, [`link::Netlink::host_route_prefixes`] (excluding Berth's bridges) and
//!   [`ipam::default_bridge_subnet`]; [`link::Netlink::ensure_bridge`] and
//!   [`link::bridge_sysctls`] for every network; [`nft::Nft::apply`] with the [`nft::Ruleset`]
//!   of all networks and the port mappings of running containers (this rebuilds the table
//!   from state); [`ports::PortAllocator::reserve`] again for those mappings; a
//!   [`dns::DnsServer`] again for each running container on a user network. Endpoints of
//!   running containers survive a daemon restart as they are (links live in the kernel).
//! - **Network create**: [`ipam::plan_network`] (with the other networks' subnets and the
//!   host's routes), persist the subnets; [`link::Netlink::ensure_bridge`] with each subnet's
//!   [`ipam::Subnet::gateway_net`] ([`link::bridge_name`] for the name);
//!   [`link::bridge_sysctls`]; [`nft::Nft::apply`] with the new network in the ruleset.
//! - **Container start**: per network, [`ipam::allocate_in`] (static `--ip` or dynamic) and
//!   [`ipam::mac_for_ipv4`]; [`link::Netlink::attach_endpoint`] into the container's
//!   namespace (the first network provides the default routes, none for `--internal`); per
//!   published port, [`ports::PortAllocator::reserve`] (host port 0 for `-P`/`-p 80`,
//!   [`ports::PortAllocator::reserve_in_range`] for host ranges) and one
//!   [`nft::PortMapping`] per port and address family, then one [`nft::Nft::apply`]; for
//!   IPv6 host bindings the kernel cannot DNAT (IPv4-only container), and for `::1`,
//!   [`ports::PortAllocator::proxy_tcp`]; on a user network, [`dns::DnsServer::start`] with
//!   the container's resolver and the host's resolv.conf servers
//!   ([`dns::upstreams_from_resolv_conf`]), and `nameserver 127.0.0.11` in its resolv.conf.
//!   Any failure undoes what was done.
//! - **Container stop**: drop its [`dns::DnsServer`]; [`nft::Nft::apply`] without its
//!   mappings; [`ports::PortAllocator::release`] each host port;
//!   [`link::Netlink::detach_endpoint`] per network (tolerant when the namespace already
//!   took the pair with it); [`ipam::release_in`].
//! - **Network remove** (no endpoints left): [`nft::Nft::apply`] without the network;
//!   [`link::Netlink::delete_link`] of its bridge; forget its subnets. When Berth is
//!   uninstalled or networking disabled, [`nft::Nft::remove_table`].
//!
//! Blocking calls ([`nft::Nft`], [`netns::Netns::run`], [`link::bridge_sysctls`]) belong in
//! `spawn_blocking` when called from async code; sysctls and `nft` act on the namespace of
//! the calling thread, which is the daemon's own.

pub mod dns;
pub mod error;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod nft;
pub mod ports;

pub use error::{ErrorKind, NetworkError, Result};
