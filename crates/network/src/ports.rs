//! Host port reservation for published ports.
//!
//! Publishing `-p 8080:80` takes host port 8080: the allocator binds a socket on the host
//! address and port and keeps it open for as long as the mapping lives, so no other program
//! can take the port afterwards and a port another program already holds is refused up front
//! with Docker's message ("Bind for 0.0.0.0:8080 failed: port is already allocated"). The
//! packets themselves never reach these sockets: the DNAT rules of [`crate::nft`] redirect
//! them first. TCP sockets are bound with `SO_REUSEADDR` (so connections in TIME_WAIT do not
//! block a restart) and listen, which makes any later bind of the port fail; UDP sockets are
//! bound plainly; IPv6 sockets are `IPV6_V6ONLY`, so `0.0.0.0` and `::` are reserved
//! separately as Docker does. SCTP ports are tracked but not bound.
//!
//! `-p 80` / `-P` (host port 0) takes the next free port of the kernel's ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`), going on from the last one handed out, as
//! Docker's allocator; `-p 8000-8010:80` takes the first free port of the range.
//!
//! Where the kernel path cannot carry a published port — `::1` (IPv6 loopback cannot be
//! routed to another interface) and IPv6 to a container without IPv6 — [`PortAllocator::proxy_tcp`]
//! serves the reserved TCP socket in userland and splices each connection to the container,
//! and [`PortAllocator::proxy_udp`] relays UDP datagrams per client.
//!
//! Sockets are created in the calling thread's network namespace (the daemon's).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketFlags, SocketType};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{NetworkError, Result};
use crate::nft::Protocol;

/// One reserved host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostPort {
    pub protocol: Protocol,
    pub ip: IpAddr,
    pub port: u16,
}

/// Whether IPv6 sockets can listen in the calling thread's network namespace (the kernel has
/// IPv6 and loopback has `::1`), as moby checks it before publishing on `[::]`.
pub fn ipv6_listenable() -> bool {
    std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// The kernel's ephemeral port range of the calling thread's namespace.
pub fn ephemeral_range() -> Result<(u16, u16)> {
    let path = "/proc/sys/net/ipv4/ip_local_port_range";
    let text = std::fs::read_to_string(path).map_err(NetworkError::io(format!("read {path}")))?;
    parse_range(&text).ok_or_else(|| NetworkError::Io {
        context: format!("read {path}"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, text.trim().to_owned()),
    })
}

fn parse_range(text: &str) -> Option<(u16, u16)> {
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    let (Some(Ok(a)), Some(Ok(b)), None) = (it.next(), it.next(), it.next()) else {
        return None;
    };
    (a > 0 && a <= b).then_some((a, b))
}

/// Host ports held by Berth.
#[derive(Debug, Default)]
pub struct PortAllocator {
    inner: Mutex<Inner>,
    /// A fixed ephemeral range (tests); `None` reads the kernel's at each allocation.
    range: Option<(u16, u16)>,
}

/// One held port: its socket (`None` for SCTP, tracked only) and the userland proxy serving
/// it, if any.
#[derive(Debug)]
struct Held {
    sock: Option<OwnedFd>,
    proxy: Option<JoinHandle<()>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(p) = &self.proxy {
            p.abort();
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The sockets that hold the ports.
    held: HashMap<HostPort, Held>,
    /// The last ephemeral port handed out per protocol.
    last: HashMap<Protocol, u16>,
}

impl PortAllocator {
    /// An allocator using the kernel's ephemeral range.
    pub fn new() -> Self {
        Self::default()
    }

    /// An allocator with a fixed range for `-P` / host port 0.
    pub fn with_ephemeral_range(start: u16, end: u16) -> Result<Self> {
        if start == 0 || start > end {
            return Err(NetworkError::invalid(format!(
                "invalid port range {start}-{end}"
            )));
        }
        Ok(Self {
            inner: Mutex::default(),
            range: Some((start, end)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `ip:port`; port 0 picks an ephemeral port. Returns the port taken.
    pub fn reserve(&self, protocol: Protocol, ip: IpAddr, port: u16) -> Result<u16> {
        if port == 0 {
            let (start, end) = match self.range {
                Some(r) => r,
                None => ephemeral_range()?,
            };
            return self.reserve_ephemeral(protocol, ip, start, end);
        }
        let mut inner = self.lock();
        let key = HostPort { protocol, ip, port };
        if inner.held.keys().any(|k| clashes(k, &key)) {
            return Err(NetworkError::PortAllocated { ip, port });
        }
        let sock = bind(protocol, ip, port)?;
        inner.held.insert(key, Held { sock, proxy: None });
        Ok(port)
    }

    /// Reserves the first free port of `start..=end` on `ip` (`-p 8000-8010:80`).
    pub fn reserve_in_range(
        &self,
        protocol: Protocol,
        ip: IpAddr,
        start: u16,
        end: u16,
    ) -> Result<u16> {
        if start == 0 || start > end {
            return Err(NetworkError::invalid(format!(
                "invalid port range {start}-{end}"
            )));
        }
        let mut inner = self.lock();
        for port in start..=end {
            if let Some(p) = try_take(&mut inner, protocol, ip, port)? {
                return Ok(p);
            }
        }
        Err(NetworkError::PortsExhausted { ip, start, end })
    }

    fn reserve_ephemeral(
        &self,
        protocol: Protocol,
        ip: IpAddr,
        start: u16,
        end: u16,
    ) -> Result<u16> {
        let mut inner = self.lock();
        let span = u32::from(end - start) + 1;
        let first = match inner.last.get(&protocol) {
            Some(&l) if l >= start && l < end => l + 1,
            _ => start,
        };
        for i in 0..span {
            let port = (u32::from(first - start) + i) % span + u32::from(start);
            let port = u16::try_from(port).unwrap_or(start);
            if let Some(p) = try_take(&mut inner, protocol, ip, port)? {
                inner.last.insert(protocol, p);
                return Ok(p);
            }
        }
        Err(NetworkError::PortsExhausted { ip, start, end })
    }

    /// Serves a held TCP port in userland: connections that reach its socket (those the
    /// kernel cannot DNAT: to `::1`, or over IPv6 to a container that only has IPv4) are
    /// accepted and spliced to `target`, Docker's `docker-proxy` in miniature. Stops when the
    /// port is released. Needs a tokio runtime.
    pub fn proxy_tcp(&self, ip: IpAddr, port: u16, target: SocketAddr) -> Result<()> {
        let mut inner = self.lock();
        let (held, fd) = held_socket(&mut inner, Protocol::Tcp, ip, port)?;
        // The reservation listens with a backlog of one (nothing was meant to reach it);
        // served, it takes the system's default, as Go's listeners (and docker-proxy) do.
        rustix::net::listen(&fd, -1).map_err(|e| NetworkError::io("port proxy")(e.into()))?;
        let listener = std::net::TcpListener::from(fd);
        listener
            .set_nonblocking(true)
            .map_err(NetworkError::io("port proxy"))?;
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(NetworkError::io("port proxy"))?;
        if let Some(old) = held
            .proxy
            .replace(tokio::spawn(proxy_loop(listener, target)))
        {
            old.abort();
        }
        Ok(())
    }

    /// Serves a held UDP port in userland, as [`PortAllocator::proxy_tcp`] does TCP: each
    /// client address gets its own upstream socket to `target`, whose replies go back from the
    /// held port; a client quiet for 90 s is forgotten (docker-proxy's timeout).
    pub fn proxy_udp(&self, ip: IpAddr, port: u16, target: SocketAddr) -> Result<()> {
        let mut inner = self.lock();
        let (held, fd) = held_socket(&mut inner, Protocol::Udp, ip, port)?;
        let sock = std::net::UdpSocket::from(fd);
        sock.set_nonblocking(true)
            .map_err(NetworkError::io("port proxy"))?;
        let sock = tokio::net::UdpSocket::from_std(sock).map_err(NetworkError::io("port proxy"))?;
        if let Some(old) = held
            .proxy
            .replace(tokio::spawn(udp_proxy_loop(Arc::new(sock), target)))
        {
            old.abort();
        }
        Ok(())
    }

    /// Gives a port back (closing its socket, stopping its proxy). False when it was not held.
    pub fn release(&self, protocol: Protocol, ip: IpAddr, port: u16) -> bool {
        self.lock()
            .held
            .remove(&HostPort { protocol, ip, port })
            .is_some()
    }

    /// Whether exactly this port is held.
    pub fn is_reserved(&self, protocol: Protocol, ip: IpAddr, port: u16) -> bool {
        self.lock()
            .held
            .contains_key(&HostPort { protocol, ip, port })
    }

    /// Every port held, sorted.
    pub fn reserved(&self) -> Vec<HostPort> {
        let mut v: Vec<HostPort> = self.lock().held.keys().copied().collect();
        v.sort();
        v
    }
}

/// Most connections one proxied port serves at once.
const PROXY_MAX_CONNECTIONS: usize = 1024;

async fn proxy_loop(listener: tokio::net::TcpListener, target: SocketAddr) {
    let limit = Arc::new(Semaphore::new(PROXY_MAX_CONNECTIONS));
    let mut running = JoinSet::new();
    loop {
        while running.try_join_next().is_some() {}
        let Ok((mut client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue;
        };
        running.spawn(async move {
            let connect = tokio::net::TcpStream::connect(target);
            if let Ok(Ok(mut upstream)) =
                tokio::time::timeout(Duration::from_secs(10), connect).await
            {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            drop(permit);
        });
    }
}

/// A held port to serve with a proxy: its entry and a duplicate of its socket (the proxy
/// needs a tokio runtime, checked here).
fn held_socket(
    inner: &mut Inner,
    protocol: Protocol,
    ip: IpAddr,
    port: u16,
) -> Result<(&mut Held, OwnedFd)> {
    let key = HostPort { protocol, ip, port };
    let held = inner.held.get_mut(&key).ok_or_else(|| {
        NetworkError::invalid(format!("{ip}:{port}/{} is not reserved", protocol.as_str()))
    })?;
    let Some(sock) = &held.sock else {
        return Err(NetworkError::invalid("no socket to serve"));
    };
    tokio::runtime::Handle::try_current().map_err(|e| {
        NetworkError::io("the port proxy needs a tokio runtime")(std::io::Error::other(e))
    })?;
    let fd = sock
        .try_clone()
        .map_err(NetworkError::io("dup port socket"))?;
    Ok((held, fd))
}

/// How long a UDP client may stay quiet before its upstream socket is closed.
const UDP_SESSION_IDLE: Duration = Duration::from_secs(90);

async fn udp_proxy_loop(listener: Arc<tokio::net::UdpSocket>, target: SocketAddr) {
    let mut sessions: HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> = HashMap::new();
    let mut replies = JoinSet::new();
    let mut buf = vec![0u8; 65536];
    loop {
        // Sessions whose reply task ended (idle, or the upstream failed) go.
        while let Some(Ok(client)) = replies.try_join_next() {
            sessions.remove(&client);
        }
        let Ok((n, client)) = listener.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let upstream = match sessions.get(&client) {
            Some(u) => u.clone(),
            None => {
                if sessions.len() >= PROXY_MAX_CONNECTIONS {
                    continue;
                }
                let any: SocketAddr = if target.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let Ok(u) = tokio::net::UdpSocket::bind(any).await else {
                    continue;
                };
                if u.connect(target).await.is_err() {
                    continue;
                }
                let u = Arc::new(u);
                sessions.insert(client, u.clone());
                let (up, back) = (u.clone(), listener.clone());
                replies.spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(Ok(n)) =
                        tokio::time::timeout(UDP_SESSION_IDLE, up.recv(&mut buf)).await
                    {
                        if back.send_to(&buf[..n], client).await.is_err() {
                            break;
                        }
                    }
                    client
                });
                u
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

/// Takes `port` if free: `Ok(None)` when it is in use (by us or the kernel says so).
fn try_take(inner: &mut Inner, protocol: Protocol, ip: IpAddr, port: u16) -> Result<Option<u16>> {
    let key = HostPort { protocol, ip, port };
    if inner.held.keys().any(|k| clashes(k, &key)) {
        return Ok(None);
    }
    match bind(protocol, ip, port) {
        Ok(sock) => {
            inner.held.insert(key, Held { sock, proxy: None });
            Ok(Some(port))
        }
        Err(NetworkError::PortAllocated { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether two reservations want the same port: same protocol and port, and the same
/// address or a wildcard of the same family on either side.
fn clashes(a: &HostPort, b: &HostPort) -> bool {
    a.protocol == b.protocol
        && a.port == b.port
        && a.ip.is_ipv4() == b.ip.is_ipv4()
        && (a.ip == b.ip || a.ip.is_unspecified() || b.ip.is_unspecified())
}

/// Binds the socket that holds `ip:port`.
fn bind(protocol: Protocol, ip: IpAddr, port: u16) -> Result<Option<OwnedFd>> {
    let kind = match protocol {
        Protocol::Tcp => SocketType::STREAM,
        Protocol::Udp => SocketType::DGRAM,
        Protocol::Sctp => return Ok(None),
    };
    let family = if ip.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let what = || {
        format!(
            "reserve {}/{}",
            SocketAddr::new(ip, port),
            protocol.as_str()
        )
    };
    let sock = rustix::net::socket_with(family, kind, SocketFlags::CLOEXEC, None)
        .map_err(|e| NetworkError::io(what())(e.into()))?;
    if ip.is_ipv6() {
        rustix::net::sockopt::set_ipv6_v6only(&sock, true)
            .map_err(|e| NetworkError::io(what())(e.into()))?;
    }
    if protocol == Protocol::Tcp {
        rustix::net::sockopt::set_socket_reuseaddr(&sock, true)
            .map_err(|e| NetworkError::io(what())(e.into()))?;
    }
    let addr = SocketAddr::new(ip, port);
    match rustix::net::bind(&sock, &addr) {
        Ok(()) => {}
        Err(rustix::io::Errno::ADDRINUSE) => return Err(NetworkError::PortAllocated { ip, port }),
        Err(e) => return Err(NetworkError::io(what())(e.into())),
    }
    if protocol == Protocol::Tcp {
        match rustix::net::listen(&sock, 1) {
            Ok(()) => {}
            Err(rustix::io::Errno::ADDRINUSE) => {
                return Err(NetworkError::PortAllocated { ip, port });
            }
            Err(e) => return Err(NetworkError::io(what())(e.into())),
        }
    }
    Ok(Some(sock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_parsing() {
        assert_eq!(parse_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_range("1 2 3"), None);
        assert_eq!(parse_range("9 2"), None);
        assert_eq!(parse_range("x 2"), None);
        assert_eq!(parse_range("0 2"), None);
    }

    #[test]
    fn clash_rules() {
        let k = |p: Protocol, ip: &str, port| HostPort {
            protocol: p,
            ip: ip.parse().unwrap(),
            port,
        };
        let t = Protocol::Tcp;
        assert!(clashes(&k(t, "0.0.0.0", 80), &k(t, "127.0.0.1", 80)));
        assert!(clashes(&k(t, "127.0.0.1", 80), &k(t, "127.0.0.1", 80)));
        assert!(!clashes(&k(t, "127.0.0.1", 80), &k(t, "127.0.0.2", 80)));
        assert!(!clashes(&k(t, "0.0.0.0", 80), &k(t, "::", 80)));
        assert!(!clashes(
            &k(t, "0.0.0.0", 80),
            &k(Protocol::Udp, "0.0.0.0", 80)
        ));
        assert!(!clashes(&k(t, "0.0.0.0", 80), &k(t, "0.0.0.0", 81)));
    }

    #[test]
    fn sctp_is_tracked_without_sockets() {
        let a = PortAllocator::new();
        let ip: IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(a.reserve(Protocol::Sctp, ip, 9).unwrap(), 9);
        let e = a
            .reserve(Protocol::Sctp, "127.0.0.1".parse().unwrap(), 9)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Bind for 127.0.0.1:9 failed: port is already allocated"
        );
        assert!(a.release(Protocol::Sctp, ip, 9));
        assert!(!a.release(Protocol::Sctp, ip, 9));
        assert!(PortAllocator::with_ephemeral_range(10, 5).is_err());
    }
}
