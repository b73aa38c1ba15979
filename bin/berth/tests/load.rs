//! Load: 200 API clients at once for a minute (`BERTH_LOAD_SECS` to change it), each on its
//! own connections, reading lists, inspects, logs and versions and creating and removing
//! containers. Every request must succeed and the daemon must still answer afterwards.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Daemon, ok, parse_head};

const CLIENTS: usize = 200;

/// One request on a fresh connection; the status, or why it failed.
fn request(sock: &std::path::Path, method: &str, path: &str, body: &str) -> Result<u16, String> {
    let mut s = UnixStream::connect(sock).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    parse_head(&buf)
        .map(|(status, _, _)| status)
        .ok_or_else(|| {
            format!(
                "bad response to {method} {path}: {:?}",
                String::from_utf8_lossy(&buf)
            )
        })
}

#[test]
fn two_hundred_clients_for_a_minute() {
    let d = Daemon::start();
    d.import_busybox();
    let target = ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "target",
        "busybox",
        "sh",
        "-c",
        "echo ready; sleep 1000",
    ]));
    let secs: u64 = std::env::var("BERTH_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let done = Arc::new(AtomicU64::new(0));
    let sock = Arc::new(d.sock.clone());
    let threads: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let done = done.clone();
            let sock = sock.clone();
            let target = target.clone();
            std::thread::spawn(move || -> Result<(), String> {
                let mut i = n;
                while Instant::now() < deadline {
                    let inspect = format!("/containers/{target}/json");
                    let logs = format!("/containers/{target}/logs?stdout=1&tail=5");
                    let (method, path, body, want) = match i % 6 {
                        0 => ("GET", "/_ping", "", 200),
                        1 => ("GET", "/containers/json?all=1", "", 200),
                        2 => ("GET", inspect.as_str(), "", 200),
                        3 => ("GET", logs.as_str(), "", 200),
                        4 => ("GET", "/v1.41/version", "", 200),
                        _ => (
                            "POST",
                            "/containers/create",
                            r#"{"Image":"busybox","Cmd":["true"]}"#,
                            201,
                        ),
                    };
                    let status = request(&sock, method, path, body)?;
                    if status != want {
                        return Err(format!("{method} {path}: {status}"));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                Ok(())
            })
        })
        .collect();
    let mut errors = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("client thread panicked".into()),
        }
    }
    let total = done.load(Ordering::Relaxed);
    eprintln!(
        "{CLIENTS} clients, {secs} s: {total} requests, {:.0}/s",
        total as f64 / secs as f64
    );
    assert!(
        errors.is_empty(),
        "{} clients failed, first: {}",
        errors.len(),
        errors[0]
    );
    assert!(total > CLIENTS as u64, "only {total} requests served");
    // Still serving, and the created containers can all go.
    assert_eq!(request(&d.sock, "GET", "/_ping", "").unwrap(), 200);
    let created = ok(d.berth(&["ps", "-aq", "--filter", "status=created"]));
    let ids: Vec<&str> = created.lines().collect();
    assert!(!ids.is_empty());
    for chunk in ids.chunks(200) {
        let mut args = vec!["rm"];
        args.extend(chunk);
        ok(d.berth(&args));
    }
    ok(d.berth(&["rm", "-f", "target"]));
}
