//! Bridges, endpoints, NAT to the outside and isolation, in a private "host" namespace.

mod common;

use berth_network::link::host_veth_name;
use berth_network::nft::{NetworkRules, Nft, Ruleset};
use common::*;

fn sysctl_in(ns: &berth_network::netns::Netns, key: &str) -> String {
    let path = format!("/proc/sys/{key}");
    ns.run(move || std::fs::read_to_string(path).unwrap().trim().to_owned())
        .unwrap()
}

fn network(bridge: &str, subnets: &[&str], internal: bool) -> NetworkRules {
    NetworkRules {
        bridge: bridge.into(),
        subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
        internal,
        masquerade: true,
        icc: true,
    }
}

#[test]
fn containers_on_a_bridge_talk_and_reach_out_masqueraded() {
    if !privileged() {
        return;
    }
    with_host(|host| {
        let outside = host.outside();
        host.bridge("bt0", &["172.30.1.1/24"]);
        let c1 = host.container("c1-bt0", "bt0", &["172.30.1.2/24"], &["172.30.1.1"]);
        let c2 = host.container("c2-bt0", "bt0", &["172.30.1.3/24"], &["172.30.1.1"]);
        Nft::new()
            .apply(&Ruleset {
                networks: vec![network("bt0", &["172.30.1.0/24"], false)],
                ports: vec![],
            })
            .expect("apply");

        assert!(ping(&c1, "172.30.1.3"), "c1 -> c2 on the same bridge");
        assert!(ping(&c2, "172.30.1.1"), "c2 -> gateway");
        let _srv = tcp_server(&c2, "0.0.0.0:7000");
        assert_eq!(
            tcp_probe(Some(&c1), "172.30.1.3:7000").as_deref(),
            Some("172.30.1.2")
        );

        // To the outside: masqueraded behind the host's address there.
        let _ext = tcp_server(&outside, "0.0.0.0:9000");
        assert_eq!(
            tcp_probe(Some(&c1), "10.200.0.2:9000").as_deref(),
            Some("10.200.0.1"),
            "c1 reaches the outside, masqueraded"
        );
        // The outside cannot open connections to unpublished container ports.
        assert_eq!(tcp_probe(Some(&outside), "172.30.1.3:7000"), None);
        // The host can.
        assert!(tcp_probe(None, "172.30.1.3:7000").is_some());

        // The container side is what was asked.
        let inner = host
            .rt
            .block_on(async { berth_network::link::Netlink::connect_in(&c1) })
            .unwrap();
        let (eth0, lo_up, addrs) = host.rt.block_on(async {
            let i = inner.link_index("eth0").await.unwrap().expect("eth0");
            (
                i,
                inner.is_up("lo").await.unwrap(),
                inner.addresses_of(i).await.unwrap(),
            )
        });
        assert!(eth0 > 0 && lo_up);
        assert!(addrs.contains(&"172.30.1.2/24".parse().unwrap()));
        // No IPv6 on an IPv4-only network's interface.
        assert_eq!(sysctl_in(&c1, "net/ipv6/conf/eth0/disable_ipv6"), "1");

        // Teardown is idempotent and leaves nothing on the host.
        host.rt.block_on(host.nl.detach_endpoint("c1-bt0")).unwrap();
        host.rt.block_on(host.nl.detach_endpoint("c1-bt0")).unwrap();
        let gone = host
            .rt
            .block_on(host.nl.link_index(&host_veth_name("c1-bt0")))
            .unwrap();
        assert_eq!(gone, None);
        assert!(!ping(&c2, "172.30.1.2"));
        // Attaching again (a restart) works.
        let c1 = host.container("c1-bt0", "bt0", &["172.30.1.2/24"], &["172.30.1.1"]);
        assert!(ping(&c1, "172.30.1.3"));
    });
}

#[test]
fn networks_are_isolated_and_internal_ones_stay_inside() {
    if !privileged() {
        return;
    }
    with_host(|host| {
        let outside = host.outside();
        host.bridge("bt1", &["172.30.1.1/24"]);
        host.bridge("bt2", &["172.30.2.1/24"]);
        host.bridge("bt3", &["172.30.3.1/24"]);
        let c1 = host.container("c1-iso", "bt1", &["172.30.1.2/24"], &["172.30.1.1"]);
        let c2 = host.container("c2-iso", "bt2", &["172.30.2.2/24"], &["172.30.2.1"]);
        // Internal networks get no default route (Docker), but even with one nothing leaves.
        let c3 = host.container("c3-iso", "bt3", &["172.30.3.2/24"], &["172.30.3.1"]);
        let c3b = host.container("c3b-iso", "bt3", &["172.30.3.3/24"], &[]);
        let _s1 = tcp_server(&c1, "0.0.0.0:7000");
        let _s2 = tcp_server(&c2, "0.0.0.0:7000");
        let _s3 = tcp_server(&c3, "0.0.0.0:7000");
        let _ext = tcp_server(&outside, "0.0.0.0:9000");

        // Without Berth's table the host routes between the bridges: the test means something.
        assert!(tcp_probe(Some(&c1), "172.30.2.2:7000").is_some());

        Nft::new()
            .apply(&Ruleset {
                networks: vec![
                    network("bt1", &["172.30.1.0/24"], false),
                    network("bt2", &["172.30.2.0/24"], false),
                    network("bt3", &["172.30.3.0/24"], true),
                ],
                ports: vec![],
            })
            .expect("apply");

        assert_eq!(tcp_probe(Some(&c1), "172.30.2.2:7000"), None, "bt1 -> bt2");
        assert_eq!(tcp_probe(Some(&c2), "172.30.1.2:7000"), None, "bt2 -> bt1");
        assert_eq!(
            tcp_probe(Some(&c1), "172.30.3.2:7000"),
            None,
            "bt1 -> internal"
        );
        assert_eq!(
            tcp_probe(Some(&c3), "172.30.1.2:7000"),
            None,
            "internal -> bt1"
        );
        assert_eq!(
            tcp_probe(Some(&c3), "10.200.0.2:9000"),
            None,
            "internal -> outside"
        );
        assert!(
            tcp_probe(Some(&c3b), "172.30.3.2:7000").is_some(),
            "inside the internal net"
        );
        assert!(
            tcp_probe(Some(&c1), "10.200.0.2:9000").is_some(),
            "bt1 -> outside"
        );
        assert!(
            tcp_probe(Some(&c2), "10.200.0.2:9000").is_some(),
            "bt2 -> outside"
        );

        // Removing the table removes all of it (and twice is fine).
        let nft = Nft::new();
        assert!(nft.table_exists().unwrap());
        nft.remove_table().unwrap();
        nft.remove_table().unwrap();
        assert!(!nft.table_exists().unwrap());
        assert!(tcp_probe(Some(&c1), "172.30.2.2:7000").is_some());
    });
}

#[test]
fn ipv6_on_a_bridge() {
    if !privileged() {
        return;
    }
    with_host(|host| {
        host.bridge("bt6", &["172.30.6.1/24", "fd00:30:6::1/64"]);
        let c1 = host.container(
            "c1-v6",
            "bt6",
            &["172.30.6.2/24", "fd00:30:6::2/64"],
            &["172.30.6.1", "fd00:30:6::1"],
        );
        let c2 = host.container(
            "c2-v6",
            "bt6",
            &["172.30.6.3/24", "fd00:30:6::3/64"],
            &["172.30.6.1", "fd00:30:6::1"],
        );
        Nft::new()
            .apply(&Ruleset {
                networks: vec![network("bt6", &["172.30.6.0/24", "fd00:30:6::/64"], false)],
                ports: vec![],
            })
            .expect("apply");
        let _srv = tcp_server(&c2, "[::]:7000");
        let seen = eventually(|| tcp_probe(Some(&c1), "[fd00:30:6::3]:7000"));
        assert_eq!(seen.as_deref(), Some("fd00:30:6::2"));
        assert!(eventually(|| ping(&c1, "fd00:30:6::1").then_some(())).is_some());
        assert_eq!(sysctl_in(&c1, "net/ipv6/conf/eth0/disable_ipv6"), "0");
    });
}

#[test]
fn ensure_bridge_is_idempotent_and_delete_removes_it() {
    if !privileged() {
        return;
    }
    with_host(|host| {
        host.bridge("bt9", &["172.30.9.1/24"]);
        host.bridge("bt9", &["172.30.9.1/24", "fd00:9::1/64"]);
        let (idx, addrs, routes) = host.rt.block_on(async {
            let i = host.nl.link_index("bt9").await.unwrap().unwrap();
            let a = host.nl.addresses_of(i).await.unwrap();
            let r = host.nl.host_route_prefixes(&[]).await.unwrap();
            (i, a, r)
        });
        assert!(idx > 0);
        assert_eq!(
            addrs
                .iter()
                .filter(|a| a.to_string() == "172.30.9.1/24")
                .count(),
            1
        );
        assert!(
            routes.contains(&"172.30.9.0/24".parse().unwrap()),
            "{routes:?}"
        );
        let excluded = host
            .rt
            .block_on(host.nl.host_route_prefixes(&["bt9"]))
            .unwrap();
        assert!(
            !excluded.contains(&"172.30.9.0/24".parse().unwrap()),
            "{excluded:?}"
        );
        assert!(host.rt.block_on(host.nl.delete_link("bt9")).unwrap());
        assert!(!host.rt.block_on(host.nl.delete_link("bt9")).unwrap());
    });
}
