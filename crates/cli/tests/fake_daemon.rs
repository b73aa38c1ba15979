//! The CLI against a scripted fake daemon on a unix socket: which requests it sends, in what
//! order, and which exit statuses it derives from the answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};

/// One request the fake daemon saw: "METHOD /path?query" and its body.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Serves `route(method_and_path, body) -> (status, body)` on a fresh socket; returns the
/// host URL and the log of requests.
fn fake_daemon(route: fn(&str, &str) -> (u16, String)) -> (String, Seen, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    let path = dir.0.join("berth.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let target: String = first
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            let body = String::from_utf8_lossy(&body).into_owned();
            let (status, resp) = if target.ends_with("/_ping") {
                (200, "OK".to_owned())
            } else {
                log.lock()
                    .expect("lock")
                    .push((target.clone(), body.clone()));
                route(&target, &body)
            };
            if status == 101 {
                let head = "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n";
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&frame(1, resp.as_bytes()));
                let _ = conn.write_all(&frame(2, b"oops\n"));
                continue;
            }
            let text = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nApi-Version: 1.50\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{resp}",
                resp.len()
            );
            let _ = conn.write_all(text.as_bytes());
        }
    });
    (format!("unix://{}", path.display()), seen, dir)
}

/// One multiplexed stdio frame.
fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![stream, 0, 0, 0];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

mod tempdir {
    /// A temporary directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new() -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "berth-cli-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&p).expect("mkdir");
            Dir(p)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn berth(host: &str, args: &[&str]) -> i32 {
    let mut v = vec!["berth".to_owned(), "-H".to_owned(), host.to_owned()];
    v.extend(args.iter().map(|s| s.to_string()));
    berth_cli::main(v)
}

#[test]
fn run_detached_creates_then_starts() {
    let (host, seen, _d) = fake_daemon(|target, _| match target {
        t if t.starts_with("POST /v1.50/containers/create") => {
            (201, r#"{"Id":"abc123","Warnings":[]}"#.to_owned())
        }
        "POST /v1.50/containers/abc123/start" => (204, String::new()),
        _ => (404, r#"{"message":"unexpected"}"#.to_owned()),
    });
    let code = berth(
        &host,
        &[
            "run", "-d", "--name", "web", "-m", "64m", "busybox", "sleep", "9",
        ],
    );
    assert_eq!(code, 0);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].0, "POST /v1.50/containers/create?name=web");
    let body: serde_json::Value = serde_json::from_str(&seen[0].1).expect("json body");
    assert_eq!(body["Image"], "busybox");
    assert_eq!(body["Cmd"], serde_json::json!(["sleep", "9"]));
    assert_eq!(body["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(seen[1].0, "POST /v1.50/containers/abc123/start");
}

#[test]
fn run_exit_statuses_follow_docker() {
    let (host, _, _d) = fake_daemon(|target, _| match target {
        t if t.starts_with("POST /v1.50/containers/create") => {
            (201, r#"{"Id":"abc123","Warnings":[]}"#.to_owned())
        }
        t if t.starts_with("POST /v1.50/containers/abc123/start") => (
            500,
            r#"{"message":"exec: \"nope\": executable file not found in $PATH"}"#.to_owned(),
        ),
        _ => (404, r#"{"message":"unexpected"}"#.to_owned()),
    });
    assert_eq!(berth(&host, &["run", "-d", "busybox", "nope"]), 127);

    let (host, _, _d) = fake_daemon(|target, _| match target {
        t if t.starts_with("POST /v1.50/containers/create") => (
            404,
            r#"{"message":"No such image: nope:latest"}"#.to_owned(),
        ),
        t if t.starts_with("POST /v1.50/images/create") => {
            (501, r#"{"message":"pulling is not supported"}"#.to_owned())
        }
        _ => (404, r#"{"message":"unexpected"}"#.to_owned()),
    });
    assert_eq!(berth(&host, &["run", "nope"]), 125);
    assert_eq!(berth(&host, &["run", "--memory", "lots", "busybox"]), 125);
}

#[test]
fn multi_container_commands_report_each_failure() {
    let (host, seen, _d) = fake_daemon(|target, _| match target {
        "POST /v1.50/containers/a/stop?t=1" => (204, String::new()),
        _ => (404, r#"{"message":"No such container: b"}"#.to_owned()),
    });
    assert_eq!(berth(&host, &["stop", "-t", "1", "a", "b"]), 1);
    assert_eq!(seen.lock().expect("lock").len(), 2);
}

#[test]
fn ps_sends_filters() {
    let (host, seen, _d) = fake_daemon(|_, _| (200, "[]".to_owned()));
    assert_eq!(
        berth(&host, &["ps", "-a", "--filter", "status=exited", "-q"]),
        0
    );
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen[0].0,
        "GET /v1.50/containers/json?all=1&filters=%7B%22status%22%3A%5B%22exited%22%5D%7D"
    );
}

#[test]
fn run_attached_waits_for_the_exit_status() {
    let (host, seen, _d) = fake_daemon(|target, _| match target {
        t if t.starts_with("POST /v1.50/containers/create") => {
            (201, r#"{"Id":"abc123","Warnings":[]}"#.to_owned())
        }
        t if t.starts_with("POST /v1.50/containers/abc123/attach") => (101, "hello\n".to_owned()),
        t if t.starts_with("POST /v1.50/containers/abc123/wait") => {
            (200, r#"{"StatusCode":3}"#.to_owned())
        }
        "POST /v1.50/containers/abc123/start" => (204, String::new()),
        _ => (404, r#"{"message":"unexpected"}"#.to_owned()),
    });
    assert_eq!(
        berth(&host, &["run", "--rm", "busybox", "sh", "-c", "exit 3"]),
        3
    );
    let seen: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|s| s.0.clone())
        .collect();
    assert_eq!(
        seen,
        vec![
            "POST /v1.50/containers/create?",
            "POST /v1.50/containers/abc123/attach?stream=1&stdout=1&stderr=1",
            "POST /v1.50/containers/abc123/wait?condition=removed",
            "POST /v1.50/containers/abc123/start",
        ]
    );
}
