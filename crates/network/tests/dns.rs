//! The embedded DNS server inside a "container" namespace, with a fake upstream on the
//! "host", in a private namespace.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_network::dns::{Answer, DnsConfig, DnsServer, Resolver};
use berth_network::netns::Netns;
use common::*;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

struct Names(HashMap<&'static str, Vec<IpAddr>>);

impl Resolver for Names {
    fn lookup(&self, name: &str) -> Answer {
        match self.0.get(name) {
            Some(ips) => Answer::Addresses(ips.clone()),
            None => Answer::NotOurs,
        }
    }
    fn reverse(&self, ip: IpAddr) -> Option<String> {
        self.0
            .iter()
            .find(|(_, v)| v.contains(&ip))
            .map(|(k, _)| (*k).to_owned())
    }
}

/// A fake upstream on the host's loopback: answers every A query with 192.0.2.7 (UDP).
fn fake_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            r.metadata.recursion_available = true;
            r.queries = q.queries.clone();
            if let Some(query) = q.queries.first() {
                r.answers.push(Record::from_rdata(
                    query.name().clone(),
                    60,
                    RData::A(A("192.0.2.7".parse().unwrap())),
                ));
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), peer);
        }
    });
    (addr, count)
}

/// Asks 127.0.0.11 over UDP from inside `ns`.
fn ask(ns: &Netns, name: &str, t: RecordType) -> Option<Message> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    let bytes = m.to_vec().unwrap();
    ns.run(move || {
        let s = UdpSocket::bind("127.0.0.1:0").ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        s.send_to(&bytes, "127.0.0.11:53").ok()?;
        let mut buf = [0u8; 4096];
        let n = s.recv(&mut buf).ok()?;
        Message::from_vec(&buf[..n]).ok()
    })
    .unwrap()
}

/// Asks over TCP from inside `ns`.
fn ask_tcp(ns: &Netns, name: &str) -> Option<Message> {
    use std::io::{Read, Write};
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let bytes = m.to_vec().unwrap();
    ns.run(move || {
        let mut s = std::net::TcpStream::connect("127.0.0.11:53").ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&bytes);
        s.write_all(&out).ok()?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut body).ok()?;
        Message::from_vec(&body).ok()
    })
    .unwrap()
}

fn first_a(m: &Message) -> Option<String> {
    m.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(a.0.to_string()),
        _ => None,
    })
}

#[test]
fn answers_names_and_forwards_the_rest() {
    if !privileged() {
        return;
    }
    with_host(|host| {
        let (upstream, forwarded) = fake_upstream();
        let container = Netns::new_anonymous().unwrap();
        let mut names = HashMap::new();
        names.insert("web", vec!["172.30.5.2".parse().unwrap()]);
        names.insert("web-alias", vec!["172.30.5.2".parse().unwrap()]);
        names.insert("0123456789ab", vec!["172.30.5.2".parse().unwrap()]);
        let server = host
            .rt
            .block_on(async {
                DnsServer::start(
                    &container,
                    Arc::new(Names(names)),
                    DnsConfig {
                        upstreams: vec![upstream],
                        timeout: Duration::from_millis(500),
                        ..DnsConfig::default()
                    },
                )
            })
            .expect("start");
        assert_eq!(server.local_addr(), "127.0.0.11:53".parse().unwrap());

        for name in ["web.", "WEB-alias.", "0123456789ab."] {
            let r = ask(&container, name, RecordType::A).expect(name);
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
            assert_eq!(first_a(&r).as_deref(), Some("172.30.5.2"), "{name}");
        }
        assert_eq!(forwarded.load(Ordering::SeqCst), 0);
        let r = ask(&container, "2.5.30.172.in-addr.arpa.", RecordType::PTR).unwrap();
        assert_eq!(r.answers.len(), 1);

        // Unknown names go upstream (from the host's namespace: 127.0.0.1 there).
        let r = ask(&container, "example.com.", RecordType::A).unwrap();
        assert_eq!(first_a(&r).as_deref(), Some("192.0.2.7"));
        assert_eq!(forwarded.load(Ordering::SeqCst), 1);

        // TCP too.
        let r = ask_tcp(&container, "web.").unwrap();
        assert_eq!(first_a(&r).as_deref(), Some("172.30.5.2"));

        // A real resolver client: busybox nslookup.
        let out = container
            .run(|| {
                std::process::Command::new("/bin/busybox")
                    .args(["nslookup", "web", "127.0.0.11"])
                    .output()
                    .unwrap()
            })
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("172.30.5.2"), "{text}");

        // Garbage does not kill it.
        container
            .run(|| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                for len in [0usize, 1, 5, 12, 13, 300] {
                    let _ = s.send_to(&vec![0xffu8; len], "127.0.0.11:53");
                }
            })
            .unwrap();
        assert!(ask(&container, "web.", RecordType::A).is_some());

        // Stopped: nothing listens any more.
        server.stop();
        std::thread::sleep(Duration::from_millis(100));
        assert!(ask(&container, "web.", RecordType::A).is_none());
        // The address is free again for a new server (a daemon restart).
        let again = host.rt.block_on(async {
            DnsServer::start(
                &container,
                Arc::new(Names(HashMap::new())),
                DnsConfig::default(),
            )
        });
        assert!(again.is_ok(), "{:?}", again.err());
    });
}
