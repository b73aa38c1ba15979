//! A network's whole life as the engine drives it, across a daemon restart: create, a
//! container with a published port and DNS, the daemon going away (the kernel keeps
//! forwarding), a new daemon rebuilding from state, stop, remove, and nothing left behind.

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use berth_network::dns::{Answer, DnsConfig, DnsServer, Resolver};
use berth_network::ipam::{self, PoolContext};
use berth_network::link::{BridgeConfig, Netlink, bridge_name, bridge_sysctls, host_veth_name};
use berth_network::nft::{NetworkRules, Nft, PortMapping, Protocol, Ruleset};
use berth_network::ports::PortAllocator;
use common::*;

struct One(IpAddr);

impl Resolver for One {
    fn lookup(&self, name: &str) -> Answer {
        if name == "app" {
            Answer::Addresses(vec![self.0])
        } else {
            Answer::NotOurs
        }
    }
    fn reverse(&self, _: IpAddr) -> Option<String> {
        None
    }
}

#[test]
fn create_run_restart_stop_remove() {
    if !privileged() {
        return;
    }
    with_host(|host| {
        let outside = host.outside();
        let any: IpAddr = "0.0.0.0".parse().unwrap();

        // Network create: a subnet chosen around the host's routes (10.200.0.0/24 is taken
        // by the uplink; pools made to collide with it).
        let routes = host.rt.block_on(host.nl.host_route_prefixes(&[])).unwrap();
        let pools = [ipam::AddressPool::new("10.200.0.0/16".parse().unwrap(), 24).unwrap()];
        let mut subnets = ipam::plan_network(
            &[],
            false,
            PoolContext {
                v4_pools: &pools,
                v6_pools: &ipam::default_v6_pools(),
                networks: &[],
                host_routes: &routes,
            },
        )
        .unwrap();
        assert_eq!(subnets[0].subnet.to_string(), "10.200.1.0/24");
        let bridge = bridge_name("5e1f0c2a9d3b47e8a1c6");
        let config = BridgeConfig {
            name: bridge.clone(),
            addresses: vec![subnets[0].gateway_net().unwrap()],
            mtu: None,
        };
        host.rt.block_on(host.nl.ensure_bridge(&config)).unwrap();
        bridge_sysctls(&bridge, false).unwrap();
        let net_rules = NetworkRules {
            bridge: bridge.clone(),
            subnets: vec![subnets[0].subnet],
            internal: false,
            masquerade: true,
            icc: true,
        };

        // Container start.
        let ip = ipam::allocate_in(&mut subnets, false, None).unwrap();
        assert_eq!(ip.to_string(), "10.200.1.2");
        let endpoint = "c0ffee/5e1f0c2a9d3b";
        let app = host.container(endpoint, &bridge, &["10.200.1.2/24"], &["10.200.1.1"]);
        let _srv = tcp_server(&app, "0.0.0.0:80");
        let ports = PortAllocator::new();
        let hp = ports.reserve(Protocol::Tcp, any, 0).unwrap();
        let mapping = PortMapping {
            bridge: bridge.clone(),
            protocol: Protocol::Tcp,
            host_ip: None,
            host_port: hp,
            container_ip: ip,
            container_port: 80,
        };
        let running = Ruleset {
            networks: vec![net_rules.clone()],
            ports: vec![mapping],
        };
        Nft::new().apply(&running).unwrap();
        let dns = host
            .rt
            .block_on(async { DnsServer::start(&app, Arc::new(One(ip)), DnsConfig::default()) })
            .unwrap();
        let url = format!("10.200.0.1:{hp}");
        assert!(tcp_probe(Some(&outside), &url).is_some());
        assert_eq!(dns_a(&app, "app.").as_deref(), Some("10.200.1.2"));

        // The daemon goes away: its sockets close, the kernel keeps forwarding.
        drop(dns);
        drop(ports);
        assert!(tcp_probe(Some(&outside), &url).is_some());
        assert_eq!(dns_a(&app, "app."), None);

        // A new daemon rebuilds from its state.
        let state = serde_json::to_string(&subnets).unwrap();
        let mut subnets: Vec<ipam::Subnet> = serde_json::from_str(&state).unwrap();
        let nl = host.rt.block_on(async { Netlink::connect() }).unwrap();
        host.rt.block_on(nl.ensure_bridge(&config)).unwrap();
        let ports = PortAllocator::new();
        assert_eq!(ports.reserve(Protocol::Tcp, any, hp).unwrap(), hp);
        Nft::new().apply(&running).unwrap();
        let dns = host
            .rt
            .block_on(async { DnsServer::start(&app, Arc::new(One(ip)), DnsConfig::default()) })
            .unwrap();
        assert!(tcp_probe(Some(&outside), &url).is_some());
        assert_eq!(dns_a(&app, "app.").as_deref(), Some("10.200.1.2"));
        assert_eq!(
            ipam::allocate_in(&mut subnets, false, None)
                .unwrap()
                .to_string(),
            "10.200.1.3"
        );

        // Container stop.
        drop(dns);
        let stopped = Ruleset {
            networks: vec![net_rules],
            ports: vec![],
        };
        Nft::new().apply(&stopped).unwrap();
        assert!(ports.release(Protocol::Tcp, any, hp));
        host.rt.block_on(nl.detach_endpoint(endpoint)).unwrap();
        assert!(ipam::release_in(&mut subnets, ip));
        assert_eq!(tcp_probe(Some(&outside), &url), None);

        // Network remove, and the last one: nothing of Berth's is left.
        Nft::new().apply(&Ruleset::default()).unwrap();
        assert!(host.rt.block_on(nl.delete_link(&bridge)).unwrap());
        Nft::new().remove_table().unwrap();
        assert!(!Nft::new().table_exists().unwrap());
        for name in [bridge.as_str(), &host_veth_name(endpoint)] {
            assert_eq!(
                host.rt.block_on(nl.link_index(name)).unwrap(),
                None,
                "{name}"
            );
        }
        assert!(ports.reserved().is_empty());
    });
}
