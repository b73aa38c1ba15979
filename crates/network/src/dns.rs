//! The embedded DNS server containers on user-defined networks use (`nameserver 127.0.0.11`).
//!
//! [`DnsServer::start`] opens a UDP and a TCP socket on 127.0.0.11:53 *inside* the container's
//! network namespace (from a thread that entered it; the sockets stay there) and serves them
//! from the daemon's tokio runtime. Names a [`Resolver`] knows (the engine's view of this
//! container's networks: container names, aliases, short ids) get A/AAAA answers, and
//! addresses it knows get PTR answers; everything else is forwarded, as the raw query with a
//! fresh random id, to the upstream servers given (the host's resolv.conf servers). Forwarding
//! happens from the daemon's namespace, so upstreams on the host's loopback (a local
//! resolver such as systemd-resolved's 127.0.0.53) work too.
//!
//! Answers: a known name with no address of the asked family, or asked for another type, is
//! NOERROR with no answers; a name the resolver claims but does not have is NXDOMAIN; with no
//! upstreams, unknown names get REFUSED; upstreams that all fail or time out give SERVFAIL;
//! other opcodes NOTIMP; garbage with a readable header FORMERR, other garbage is dropped.
//!
//! Memory is bounded: at most [`DnsConfig::max_inflight`] UDP queries are in progress (more are
//! dropped, as a busy server does; clients retry), at most [`DnsConfig::max_tcp`] TCP
//! connections are open, each closed after [`DnsConfig::tcp_idle`] without a query, and
//! messages are at most 65535 bytes by construction.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{NetworkError, Result};
use crate::netns::Netns;

/// What the resolver says about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The name is ours, with these addresses (possibly none of the asked family).
    Addresses(Vec<IpAddr>),
    /// The name is in a domain the resolver owns but does not exist: NXDOMAIN, not forwarded.
    NxDomain,
    /// Not ours: forward it.
    NotOurs,
}

/// The names a container can see, supplied by the engine.
pub trait Resolver: Send + Sync + 'static {
    /// Looks up `name`: lowercase ASCII, no trailing dot (`web`, `web.mynet`).
    fn lookup(&self, name: &str) -> Answer;
    /// The name of `ip` for PTR queries, without a trailing dot; `None` forwards the query.
    fn reverse(&self, ip: IpAddr) -> Option<String>;
}

/// How a server runs.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where to listen inside the namespace (127.0.0.11:53).
    pub listen: SocketAddr,
    /// Servers to forward unknown names to, tried in order.
    pub upstreams: Vec<SocketAddr>,
    /// How long to wait for each upstream.
    pub timeout: Duration,
    /// TTL of our own answers (Docker: 600).
    pub ttl: u32,
    pub max_inflight: usize,
    pub max_tcp: usize,
    pub tcp_idle: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53),
            upstreams: Vec::new(),
            timeout: Duration::from_secs(2),
            ttl: 600,
            max_inflight: 256,
            max_tcp: 32,
            tcp_idle: Duration::from_secs(10),
        }
    }
}

/// The nameservers of a resolv.conf text, each on port 53. Loopback servers are kept: the
/// server forwards from the daemon's namespace, where they are reachable.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        // A scoped address (fe80::1%eth0) cannot be reached without its interface: skipped.
        .filter_map(|w| w.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// A running server; stops when dropped.
pub struct DnsServer {
    tasks: Vec<JoinHandle<()>>,
    local: SocketAddr,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Shared {
    resolver: Arc<dyn Resolver>,
    config: DnsConfig,
}

impl DnsServer {
    /// Starts serving inside `netns` (whose `lo` must be up). Needs a tokio runtime.
    pub fn start(netns: &Netns, resolver: Arc<dyn Resolver>, config: DnsConfig) -> Result<Self> {
        tokio::runtime::Handle::try_current().map_err(|e| {
            NetworkError::io("the DNS server needs a tokio runtime")(std::io::Error::other(e))
        })?;
        let listen = config.listen;
        let (udp, tcp) = netns
            .run(|| -> std::io::Result<_> {
                let udp = std::net::UdpSocket::bind(listen)?;
                let tcp = std::net::TcpListener::bind(listen)?;
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                Ok((udp, tcp))
            })?
            .map_err(NetworkError::io(format!(
                "listen on {listen} in the container"
            )))?;
        let local = udp.local_addr().map_err(NetworkError::io("dns socket"))?;
        let udp = UdpSocket::from_std(udp).map_err(NetworkError::io("dns socket"))?;
        let tcp = TcpListener::from_std(tcp).map_err(NetworkError::io("dns socket"))?;
        let shared = Arc::new(Shared { resolver, config });
        let tasks = vec![
            tokio::spawn(serve_udp(Arc::new(udp), shared.clone())),
            tokio::spawn(serve_tcp(tcp, shared)),
        ];
        Ok(Self { tasks, local })
    }

    /// The address served (inside the container's namespace).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops serving and closes the sockets.
    pub fn stop(self) {
        drop(self);
    }
}

async fn serve_udp(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let limit = Arc::new(Semaphore::new(shared.config.max_inflight.max(1)));
    let mut running = JoinSet::new();
    let mut buf = vec![0u8; 4096];
    loop {
        while running.try_join_next().is_some() {}
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("dns: udp receive: {e}");
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue;
        };
        let packet = buf[..n].to_vec();
        let (sock, shared) = (sock.clone(), shared.clone());
        running.spawn(async move {
            if let Some(reply) = handle(&packet, false, &shared).await {
                let _ = sock.send_to(&reply, peer).await;
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let limit = Arc::new(Semaphore::new(shared.config.max_tcp.max(1)));
    let mut running = JoinSet::new();
    loop {
        while running.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue; // dropping the stream closes it
        };
        let shared = shared.clone();
        running.spawn(async move {
            serve_tcp_conn(stream, &shared).await;
            drop(permit);
        });
    }
}

async fn serve_tcp_conn(mut stream: TcpStream, shared: &Shared) {
    loop {
        let Ok(Ok(query)) =
            tokio::time::timeout(shared.config.tcp_idle, read_framed(&mut stream)).await
        else {
            return;
        };
        let Some(reply) = handle(&query, true, shared).await else {
            return;
        };
        if write_framed(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

async fn read_framed(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut body = vec![0u8; usize::from(len)];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

async fn write_framed(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(body.len()).map_err(|_| std::io::ErrorKind::InvalidData)?;
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    stream.write_all(&out).await
}

/// Answers one query (raw bytes): `None` when nothing should be sent back.
async fn handle(packet: &[u8], tcp: bool, shared: &Shared) -> Option<Vec<u8>> {
    let request = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => return formerr_raw(packet),
    };
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let id = request.metadata.id;
    if request.metadata.op_code != OpCode::Query {
        return error_reply(&request, ResponseCode::NotImp);
    }
    let [query] = request.queries.as_slice() else {
        return error_reply(&request, ResponseCode::FormErr);
    };
    match local_answer(query, shared) {
        Local::Answers(records) => {
            let mut reply = reply_to(&request, ResponseCode::NoError);
            reply.metadata.authoritative = true;
            reply.answers = records;
            let bytes = reply.to_vec().ok()?;
            if !tcp && bytes.len() > usize::from(request.max_payload()) {
                return reply.truncate().to_vec().ok();
            }
            Some(bytes)
        }
        Local::NxDomain => {
            let mut reply = reply_to(&request, ResponseCode::NXDomain);
            reply.metadata.authoritative = true;
            reply.to_vec().ok()
        }
        Local::Forward => {
            if shared.config.upstreams.is_empty() {
                return error_reply(&request, ResponseCode::Refused);
            }
            match forward(packet, id, tcp, &shared.config).await {
                Some(r) => Some(r),
                None => error_reply(&request, ResponseCode::ServFail),
            }
        }
    }
}

enum Local {
    Answers(Vec<Record>),
    NxDomain,
    Forward,
}

fn local_answer(query: &Query, shared: &Shared) -> Local {
    let qname = query.name();
    let ttl = shared.config.ttl;
    if query.query_type() == RecordType::PTR {
        if let Ok(net) = qname.parse_arpa_name() {
            if net.prefix_len() == net.max_prefix_len() {
                if let Some(target) = shared.resolver.reverse(net.addr()) {
                    if let Ok(target) = Name::from_ascii(format!("{target}.")) {
                        return Local::Answers(vec![Record::from_rdata(
                            qname.clone(),
                            ttl,
                            RData::PTR(PTR(target)),
                        )]);
                    }
                }
            }
        }
        return Local::Forward;
    }
    let name = qname.to_lowercase().to_ascii();
    let name = name.strip_suffix('.').unwrap_or(&name);
    if name.is_empty() {
        return Local::Forward;
    }
    match shared.resolver.lookup(name) {
        Answer::NotOurs => Local::Forward,
        Answer::NxDomain => Local::NxDomain,
        Answer::Addresses(ips) => {
            let want = query.query_type();
            let records = ips
                .into_iter()
                .filter_map(|ip| match (ip, want) {
                    (IpAddr::V4(a), RecordType::A | RecordType::ANY) => Some(RData::A(A(a))),
                    (IpAddr::V6(a), RecordType::AAAA | RecordType::ANY) => {
                        Some(RData::AAAA(AAAA(a)))
                    }
                    _ => None,
                })
                .map(|rdata| Record::from_rdata(qname.clone(), ttl, rdata))
                .collect();
            Local::Answers(records)
        }
    }
}

/// A response skeleton echoing the request's id, question, RD flag and EDNS.
fn reply_to(request: &Message, code: ResponseCode) -> Message {
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.response_code = code;
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.queries = request.queries.clone();
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        reply.edns = Some(edns);
    }
    reply
}

fn error_reply(request: &Message, code: ResponseCode) -> Option<Vec<u8>> {
    reply_to(request, code).to_vec().ok()
}

/// FORMERR for a packet that did not parse but has a query header.
fn formerr_raw(packet: &[u8]) -> Option<Vec<u8>> {
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
        .to_vec()
        .ok()
}

/// Sends the raw query to each upstream in turn with a fresh id; the first answer wins.
async fn forward(packet: &[u8], id: u16, tcp: bool, config: &DnsConfig) -> Option<Vec<u8>> {
    let upstream_id: u16 = rand::random();
    let mut query = packet.to_vec();
    query[..2].copy_from_slice(&upstream_id.to_be_bytes());
    for upstream in &config.upstreams {
        let attempt = async {
            if tcp {
                forward_tcp(&query, *upstream).await
            } else {
                forward_udp(&query, *upstream, upstream_id).await
            }
        };
        match tokio::time::timeout(config.timeout, attempt).await {
            Ok(Ok(mut reply)) if reply.len() >= 12 && reply[..2] == upstream_id.to_be_bytes() => {
                reply[..2].copy_from_slice(&id.to_be_bytes());
                return Some(reply);
            }
            Ok(Ok(_)) => tracing::debug!("dns: mismatched answer from {upstream}"),
            Ok(Err(e)) => tracing::debug!("dns: upstream {upstream}: {e}"),
            Err(_) => tracing::debug!("dns: upstream {upstream} timed out"),
        }
    }
    None
}

async fn forward_udp(query: &[u8], upstream: SocketAddr, id: u16) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(upstream).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Stray datagrams with the wrong id are skipped; the caller's timeout bounds this.
        if n >= 12 && buf[..2] == id.to_be_bytes() {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn forward_tcp(query: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    write_framed(&mut stream, query).await?;
    read_framed(&mut stream).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Names(HashMap<String, Vec<IpAddr>>);
    impl Resolver for Names {
        fn lookup(&self, name: &str) -> Answer {
            if let Some(ips) = self.0.get(name) {
                return Answer::Addresses(ips.clone());
            }
            if name.ends_with(".berth.internal") {
                return Answer::NxDomain;
            }
            Answer::NotOurs
        }
        fn reverse(&self, ip: IpAddr) -> Option<String> {
            self.0
                .iter()
                .find(|(_, ips)| ips.contains(&ip))
                .map(|(n, _)| n.clone())
        }
    }

    fn shared(upstreams: Vec<SocketAddr>) -> Shared {
        let mut names = HashMap::new();
        names.insert(
            "web".to_owned(),
            vec!["172.18.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
        );
        Shared {
            resolver: Arc::new(Names(names)),
            config: DnsConfig {
                upstreams,
                timeout: Duration::from_millis(200),
                ..DnsConfig::default()
            },
        }
    }

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn ask(packet: &[u8], s: &Shared) -> Option<Message> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(handle(packet, false, s))
            .map(|b| Message::from_vec(&b).unwrap())
    }

    #[test]
    fn answers_known_names() {
        let s = shared(vec![]);
        let q = query("WEB.", RecordType::A);
        let r = ask(&q, &s).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.metadata.id, Message::from_vec(&q).unwrap().metadata.id);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(
            r.answers[0].data,
            RData::A(A("172.18.0.2".parse().unwrap()))
        );
        let r = ask(&query("web.", RecordType::AAAA), &s).unwrap();
        assert_eq!(
            r.answers[0].data,
            RData::AAAA(AAAA("fd00::2".parse().unwrap()))
        );
        // Known name, other type: NOERROR, no data.
        let r = ask(&query("web.", RecordType::MX), &s).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        // PTR.
        let r = ask(&query("2.0.18.172.in-addr.arpa.", RecordType::PTR), &s).unwrap();
        assert_eq!(
            r.answers[0].data,
            RData::PTR(PTR(Name::from_ascii("web.").unwrap()))
        );
    }

    #[test]
    fn unknown_names() {
        let s = shared(vec![]);
        let r = ask(&query("nope.berth.internal.", RecordType::A), &s).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        // No upstream: REFUSED.
        let r = ask(&query("example.com.", RecordType::A), &s).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        // An upstream that never answers: SERVFAIL after the timeout.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = shared(vec![silent.local_addr().unwrap()]);
        let r = ask(&query("example.com.", RecordType::A), &s).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    }

    #[test]
    fn malformed_packets() {
        let s = shared(vec![]);
        assert!(ask(&[], &s).is_none());
        assert!(ask(&[1, 2, 3], &s).is_none());
        // A header that claims a question that is not there: FORMERR with the same id.
        let mut bad = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        let r = ask(&bad, &s).unwrap();
        assert_eq!(r.metadata.id, 0xabcd);
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        // A response is never answered.
        bad[2] |= 0x80;
        assert!(ask(&bad, &s).is_none());
        // Random bytes never panic.
        let mut seed = 0x1234_5678_u32;
        for len in 0..300 {
            let pkt: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let _ = ask(&pkt, &s);
        }
        // Two questions: FORMERR.
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii("a.").unwrap(), RecordType::A));
        m.add_query(Query::query(Name::from_ascii("b.").unwrap(), RecordType::A));
        let r = ask(&m.to_vec().unwrap(), &s).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn resolv_conf() {
        let text =
            "# x\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nsearch a\nnameserver bogus\n";
        let ups = upstreams_from_resolv_conf(text);
        assert_eq!(ups, vec!["10.0.0.2:53".parse::<SocketAddr>().unwrap()]);
    }
}
