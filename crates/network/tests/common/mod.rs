//! The lab the privileged tests run in: a fresh network namespace plays the host, so the
//! machine's own interfaces, routes, sysctls and nftables are never touched. Everything is
//! held by file descriptors (no `ip netns` names, no bind mounts): when a test ends, even by
//! a panic, its namespaces and all the links, rules and sockets in them are gone.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use berth_network::link::{BridgeConfig, EndpointRequest, Netlink, bridge_sysctls};
use berth_network::netns::Netns;
use ipnet::IpNet;

/// Whether the tests can do their work; they return early (and say so) otherwise.
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: needs root (network namespaces)");
    }
    root
}

/// The "host" of one test, seen from a thread inside its namespace.
pub struct Host {
    pub rt: tokio::runtime::Runtime,
    pub nl: Netlink,
}

/// Runs `f` on a thread inside a new namespace that plays the host, with a tokio runtime
/// whose threads live there too. Panics in `f` fail the test.
pub fn with_host<F: FnOnce(&Host) + Send>(f: F) {
    let ns = Netns::new_anonymous().expect("host netns");
    ns.run(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let nl = rt.block_on(async { Netlink::connect() }).expect("netlink");
        let host = Host { rt, nl };
        f(&host);
    })
    .expect("the test body failed (see the panic above)");
}

impl Host {
    /// A bridge with a gateway address (`172.30.1.1/24`) and its sysctls.
    pub fn bridge(&self, name: &str, addresses: &[&str]) {
        let addresses: Vec<IpNet> = addresses.iter().map(|a| a.parse().unwrap()).collect();
        let v6 = addresses.iter().any(|a| a.addr().is_ipv6());
        self.rt
            .block_on(self.nl.ensure_bridge(&BridgeConfig {
                name: name.into(),
                addresses,
                mtu: None,
            }))
            .expect("bridge");
        bridge_sysctls(name, v6).expect("sysctls");
    }

    /// A "container": a new namespace with one interface on `bridge`.
    pub fn container(
        &self,
        id: &str,
        bridge: &str,
        addresses: &[&str],
        gateways: &[&str],
    ) -> Netns {
        let ns = Netns::new_anonymous().expect("container netns");
        let addresses: Vec<IpNet> = addresses.iter().map(|a| a.parse().unwrap()).collect();
        let ipv6 = addresses.iter().any(|a| a.addr().is_ipv6());
        let mac = match addresses[0].addr() {
            IpAddr::V4(a) => Some(berth_network::ipam::mac_for_ipv4(a)),
            IpAddr::V6(_) => None,
        };
        let mut req = EndpointRequest {
            endpoint_id: id,
            bridge,
            netns: &ns,
            ifname: "eth0",
            addresses,
            mac,
            gateway_v4: None,
            gateway_v6: None,
            mtu: None,
            ipv6,
        };
        for g in gateways {
            match g.parse::<IpAddr>().unwrap() {
                IpAddr::V4(a) => req.gateway_v4 = Some(a),
                IpAddr::V6(a) => req.gateway_v6 = Some(a),
            }
        }
        self.rt
            .block_on(self.nl.attach_endpoint(&req))
            .expect("endpoint");
        ns
    }

    /// An "other host" on the outside: uplink bridge `up0` (10.200.0.1/24 on the host) and a
    /// namespace at 10.200.0.2 routing through the host.
    pub fn outside(&self) -> Netns {
        self.bridge("up0", &["10.200.0.1/24"]);
        self.container("outside", "up0", &["10.200.0.2/24"], &["10.200.0.1"])
    }
}

/// A TCP server in `ns` that answers each connection with the peer address it saw, until
/// dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Listens on `addr` (TCP) inside `ns`.
pub fn tcp_server(ns: &Netns, addr: &str) -> Server {
    let addr: SocketAddr = addr.parse().unwrap();
    let listener = ns.run(|| TcpListener::bind(addr)).unwrap().expect("listen");
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut s, peer)) => {
                    let _ = s.write_all(peer.ip().to_string().as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    Server {
        stop,
        thread: Some(thread),
        addr,
    }
}

/// A UDP echo server in `ns` that answers with the peer address it saw, until dropped.
pub fn udp_server(ns: &Netns, addr: &str) -> Server {
    let addr: SocketAddr = addr.parse().unwrap();
    let sock = ns.run(|| UdpSocket::bind(addr)).unwrap().expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !flag.load(Ordering::SeqCst) {
            if let Ok((_, peer)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(peer.ip().to_string().as_bytes(), peer);
            }
        }
    });
    Server {
        stop,
        thread: Some(thread),
        addr,
    }
}

/// Connects to `addr` from `ns` (or the calling thread's namespace) and returns what the
/// server said (the source address it saw), or `None` when it cannot connect in a second.
pub fn tcp_probe(ns: Option<&Netns>, addr: &str) -> Option<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    let probe = move || -> Option<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(1000)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    match ns {
        Some(ns) => ns.run(probe).unwrap(),
        None => probe(),
    }
}

/// Sends a datagram to `addr` from `ns` and returns the answer, or `None` after a second.
pub fn udp_probe(ns: Option<&Netns>, addr: &str) -> Option<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    let probe = move || -> Option<String> {
        let bind = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let s = UdpSocket::bind(bind).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(1000))).ok()?;
        s.send_to(b"hi", addr).ok()?;
        let mut buf = [0u8; 512];
        let (n, _) = s.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    match ns {
        Some(ns) => ns.run(probe).unwrap(),
        None => probe(),
    }
}

/// Whether `ip` answers one ping from `ns` (busybox).
pub fn ping(ns: &Netns, ip: &str) -> bool {
    let ip = ip.to_owned();
    ns.run(move || {
        std::process::Command::new("/bin/busybox")
            .args(["ping", "-c", "1", "-W", "1", &ip])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
    .unwrap()
}

/// Retries `f` for up to two seconds (IPv6 neighbours, new links settling).
pub fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asks 127.0.0.11 for the A record of `name` over UDP from inside `ns`.
pub fn dns_a(ns: &Netns, name: &str) -> Option<String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).ok()?, RecordType::A));
    let bytes = m.to_vec().ok()?;
    ns.run(move || {
        let s = UdpSocket::bind("127.0.0.1:0").ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.send_to(&bytes, "127.0.0.11:53").ok()?;
        let mut buf = [0u8; 4096];
        let n = s.recv(&mut buf).ok()?;
        let r = Message::from_vec(&buf[..n]).ok()?;
        r.answers.iter().find_map(|a| match &a.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
    })
    .unwrap()
}
