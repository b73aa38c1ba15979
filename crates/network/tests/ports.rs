//! Published ports end to end: host port reservation, DNAT from another host, from the host
//! itself (its own address and 127.0.0.1), from containers on the same and other networks
//! through the host's address; all in a private "host" namespace.

mod common;

use std::net::IpAddr;

use berth_network::NetworkError;
use berth_network::nft::{NetworkRules, Nft, PortMapping, Protocol, Ruleset};
use berth_network::ports::PortAllocator;
use common::*;

fn network(bridge: &str, subnet: &str) -> NetworkRules {
    NetworkRules {
        bridge: bridge.into(),
        subnets: vec![subnet.parse().unwrap()],
        internal: false,
        masquerade: true,
        icc: true,
    }
}

fn mapping(
    bridge: &str,
    proto: Protocol,
    host: Option<&str>,
    hp: u16,
    c: &str,
    cp: u16,
) -> PortMapping {
    PortMapping {
        bridge: bridge.into(),
        protocol: proto,
        host_ip: host.map(|h| h.parse().unwrap()),
        host_port: hp,
        container_ip: c.parse().unwrap(),
        container_port: cp,
    }
}

#[test]
fn published_ports_are_reachable_from_everywhere() {
    if !privileged() {
        return;
    }
    with_host(|host| {
        let outside = host.outside();
        host.bridge("bp1", &["172.31.1.1/24"]);
        host.bridge("bp2", &["172.31.2.1/24"]);
        let web = host.container("web-p", "bp1", &["172.31.1.2/24"], &["172.31.1.1"]);
        let peer = host.container("peer-p", "bp1", &["172.31.1.3/24"], &["172.31.1.1"]);
        let other = host.container("other-p", "bp2", &["172.31.2.2/24"], &["172.31.2.1"]);
        let _http = tcp_server(&web, "0.0.0.0:80");
        let _dns = udp_server(&web, "0.0.0.0:53");
        let _admin = tcp_server(&web, "0.0.0.0:81");

        let ports = PortAllocator::new();
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(ports.reserve(Protocol::Tcp, any, 8080).unwrap(), 8080);
        assert_eq!(ports.reserve(Protocol::Udp, any, 5353).unwrap(), 5353);
        assert_eq!(ports.reserve(Protocol::Tcp, lo, 8081).unwrap(), 8081);
        let rules = Ruleset {
            networks: vec![
                network("bp1", "172.31.1.0/24"),
                network("bp2", "172.31.2.0/24"),
            ],
            ports: vec![
                mapping("bp1", Protocol::Tcp, None, 8080, "172.31.1.2", 80),
                mapping(
                    "bp1",
                    Protocol::Udp,
                    Some("0.0.0.0"),
                    5353,
                    "172.31.1.2",
                    53,
                ),
                mapping(
                    "bp1",
                    Protocol::Tcp,
                    Some("127.0.0.1"),
                    8081,
                    "172.31.1.2",
                    81,
                ),
            ],
        };
        Nft::new().apply(&rules).expect("apply");

        // From another host, to the host's address: the client's address is kept.
        assert_eq!(
            tcp_probe(Some(&outside), "10.200.0.1:8080").as_deref(),
            Some("10.200.0.2")
        );
        assert_eq!(
            udp_probe(Some(&outside), "10.200.0.1:5353").as_deref(),
            Some("10.200.0.2")
        );
        // From the host itself: its own addresses and loopback.
        assert!(
            tcp_probe(None, "10.200.0.1:8080").is_some(),
            "host -> own address"
        );
        assert!(
            tcp_probe(None, "172.31.2.1:8080").is_some(),
            "host -> a bridge address"
        );
        assert!(
            tcp_probe(None, "127.0.0.1:8080").is_some(),
            "host -> 127.0.0.1"
        );
        assert!(
            udp_probe(None, "127.0.0.1:5353").is_some(),
            "host -> 127.0.0.1 udp"
        );
        // A port bound to 127.0.0.1 only answers there.
        assert!(tcp_probe(None, "127.0.0.1:8081").is_some());
        assert_eq!(tcp_probe(Some(&outside), "10.200.0.1:8081"), None);
        // From containers through the host's address: the same network (hairpin), another
        // network, and the container itself.
        assert!(
            tcp_probe(Some(&peer), "10.200.0.1:8080").is_some(),
            "same bridge"
        );
        assert!(
            tcp_probe(Some(&other), "10.200.0.1:8080").is_some(),
            "other bridge"
        );
        assert!(tcp_probe(Some(&web), "10.200.0.1:8080").is_some(), "itself");
        assert!(
            tcp_probe(Some(&peer), "172.31.1.1:8080").is_some(),
            "via its gateway"
        );
        // Unpublished ports stay closed from outside, directly and via the host.
        assert_eq!(tcp_probe(Some(&outside), "10.200.0.1:81"), None);

        // Conflicts are clear errors, for us and for other programs.
        let e = ports.reserve(Protocol::Tcp, any, 8080).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Bind for 0.0.0.0:8080 failed: port is already allocated"
        );
        let e = ports.reserve(Protocol::Tcp, lo, 8080).unwrap_err();
        assert!(matches!(e, NetworkError::PortAllocated { .. }), "{e}");
        assert!(
            std::net::TcpListener::bind("0.0.0.0:8080").is_err(),
            "others cannot take it"
        );
        assert!(std::net::UdpSocket::bind("0.0.0.0:5353").is_err());
        let squatter = std::net::TcpListener::bind("0.0.0.0:9999").unwrap();
        let e = ports.reserve(Protocol::Tcp, any, 9999).unwrap_err();
        assert!(
            matches!(e, NetworkError::PortAllocated { port: 9999, .. }),
            "{e}"
        );
        drop(squatter);
        // UDP and TCP are separate; IPv4 and IPv6 wildcards too.
        assert!(ports.reserve(Protocol::Udp, any, 8080).is_ok());
        let v6any: IpAddr = "::".parse().unwrap();
        assert!(ports.reserve(Protocol::Tcp, v6any, 8080).is_ok());
        // Where the kernel cannot (::1, IPv6 to an IPv4-only container) the userland proxy
        // serves the reserved socket; the container sees the host's bridge address.
        assert_eq!(
            tcp_probe(None, "[::1]:8080"),
            None,
            "held but not served yet"
        );
        host.rt
            .block_on(async { ports.proxy_tcp(v6any, 8080, "172.31.1.2:80".parse().unwrap()) })
            .unwrap();
        assert_eq!(tcp_probe(None, "[::1]:8080").as_deref(), Some("172.31.1.1"));
        assert!(
            ports
                .proxy_tcp(v6any, 8090, "172.31.1.2:80".parse().unwrap())
                .is_err()
        );
        assert!(ports.release(Protocol::Tcp, v6any, 8080));
        assert_eq!(tcp_probe(None, "[::1]:8080"), None, "released: proxy gone");

        // Unpublishing: the rules go with the new ruleset, the port with release.
        Nft::new()
            .apply(&Ruleset {
                networks: rules.networks.clone(),
                ports: vec![],
            })
            .unwrap();
        assert_eq!(tcp_probe(Some(&outside), "10.200.0.1:8080"), None);
        assert!(ports.release(Protocol::Tcp, any, 8080));
        assert!(std::net::TcpListener::bind("0.0.0.0:8080").is_ok());
        // And the whole table can go.
        Nft::new().apply(&rules).unwrap();
        assert!(tcp_probe(Some(&outside), "10.200.0.1:8080").is_some());
        Nft::new().remove_table().unwrap();
        assert_eq!(tcp_probe(Some(&outside), "10.200.0.1:8080"), None);
    });
}

#[test]
fn ephemeral_and_ranged_host_ports() {
    if !privileged() {
        return;
    }
    with_host(|_host| {
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        // The kernel's range, as Docker.
        let ports = PortAllocator::new();
        let (lo, hi) = berth_network::ports::ephemeral_range().unwrap();
        let p = ports.reserve(Protocol::Tcp, any, 0).unwrap();
        assert!((lo..=hi).contains(&p));
        let q = ports.reserve(Protocol::Tcp, any, 0).unwrap();
        assert_ne!(p, q);

        // A small fixed range: taken ports are skipped, exhaustion is an error, release
        // makes room again.
        let ports = PortAllocator::with_ephemeral_range(40000, 40002).unwrap();
        let _squatter = std::net::TcpListener::bind("0.0.0.0:40001").unwrap();
        assert_eq!(ports.reserve(Protocol::Tcp, any, 0).unwrap(), 40000);
        assert_eq!(ports.reserve(Protocol::Tcp, any, 0).unwrap(), 40002);
        let e = ports.reserve(Protocol::Tcp, any, 0).unwrap_err();
        assert!(matches!(e, NetworkError::PortsExhausted { .. }), "{e}");
        assert!(ports.release(Protocol::Tcp, any, 40000));
        assert_eq!(ports.reserve(Protocol::Tcp, any, 0).unwrap(), 40000);

        // `-p 41000-41002:80`: the first free one.
        let _squatter = std::net::TcpListener::bind("0.0.0.0:41000").unwrap();
        assert_eq!(
            ports
                .reserve_in_range(Protocol::Tcp, any, 41000, 41002)
                .unwrap(),
            41001
        );
        assert_eq!(
            ports
                .reserve_in_range(Protocol::Tcp, any, 41000, 41002)
                .unwrap(),
            41002
        );
        assert!(
            ports
                .reserve_in_range(Protocol::Tcp, any, 41000, 41002)
                .is_err()
        );
        assert_eq!(ports.reserved().len(), 4);
    });
}

/// UDP over IPv6 to an IPv4 target goes through the userland relay: each client gets its
/// replies back from the published port.
#[test]
fn udp_is_relayed_over_ipv6() {
    if !privileged() {
        return;
    }
    with_host(|host| {
        // The "container": a UDP echo on IPv4 loopback.
        let echo = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = echo.recv_from(&mut buf) {
                let _ = echo.send_to(&buf[..n], from);
            }
        });
        let ports = PortAllocator::new();
        let v6: IpAddr = "::1".parse().unwrap();
        let port = ports.reserve(Protocol::Udp, v6, 0).unwrap();
        host.rt
            .block_on(async { ports.proxy_udp(v6, port, target) })
            .unwrap();
        for who in ["one", "two"] {
            let client = std::net::UdpSocket::bind("[::1]:0").unwrap();
            client
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            client.send_to(who.as_bytes(), ("::1", port)).unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], who.as_bytes());
            assert_eq!(from.port(), port, "the reply comes from the published port");
        }
        assert!(ports.release(Protocol::Udp, v6, port));
    });
}
