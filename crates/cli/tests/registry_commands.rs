//! `login`, `pull`, `push` and `logout` against a scripted fake daemon: the requests they
//! send (with the `X-Registry-Auth` header made from the stored login) and the config file
//! they leave behind.
//!
//! One test only: `--config` sets the config directory for the whole process.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

/// What the fake daemon saw: "METHOD /path?query", lower-cased headers, body.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    headers: HashMap<String, String>,
    body: String,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn route(target: &str, body: &str) -> (u16, String) {
    if target == "POST /v1.50/auth" {
        let v: serde_json::Value = serde_json::from_str(body).expect("auth body");
        return if v["password"] == "good" {
            (
                200,
                r#"{"Status":"Login Succeeded","IdentityToken":""}"#.into(),
            )
        } else {
            (
                401,
                r#"{"message":"login attempt failed: 401 Unauthorized"}"#.into(),
            )
        };
    }
    if target.starts_with("POST /v1.50/images/create?") {
        let lines = [
            r#"{"status":"Pulling from app","id":"v1"}"#,
            r#"{"status":"Pulling fs layer","progressDetail":{},"id":"abc"}"#,
            r#"{"status":"Downloading","progressDetail":{"current":1,"total":2},"id":"abc"}"#,
            r#"{"status":"Pull complete","progressDetail":{},"id":"abc"}"#,
            r#"{"status":"Status: Downloaded newer image"}"#,
        ];
        return (200, lines.join("\r\n"));
    }
    if target.starts_with("POST /v1.50/images/localhost:5000/app/push?") {
        return (
            200,
            concat!(
                r#"{"status":"Preparing","progressDetail":{},"id":"abc"}"#,
                r#"{"status":"Pushed","progressDetail":{},"id":"abc"}"#,
                r#"{"progressDetail":{},"aux":{"Tag":"v1","Digest":"sha256:00","Size":1}}"#
            )
            .into(),
        );
    }
    if target.starts_with("POST /v1.50/images/localhost:5000/denied/push?") {
        return (
            200,
            r#"{"errorDetail":{"message":"denied"},"error":"denied"}"#.into(),
        );
    }
    (404, r#"{"message":"unexpected"}"#.into())
}

fn fake_daemon(dir: &Path) -> (String, Log) {
    let path = dir.join("berth.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut headers = HashMap::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            let len = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0usize);
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let target = first
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            let body = String::from_utf8_lossy(&body).into_owned();
            let (status, resp) = if target.ends_with("/_ping") {
                (200, "OK".to_owned())
            } else {
                seen.lock().expect("lock").push(Seen {
                    target: target.clone(),
                    headers,
                    body: body.clone(),
                });
                route(&target, &body)
            };
            let text = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nApi-Version: 1.50\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{resp}",
                resp.len()
            );
            let _ = conn.write_all(text.as_bytes());
        }
    });
    (format!("unix://{}", path.display()), log)
}

fn temp_dir() -> PathBuf {
    let p = std::env::temp_dir().join(format!("berth-cli-registry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("mkdir");
    p
}

fn decoded_auth(s: &Seen) -> serde_json::Value {
    let h = s
        .headers
        .get("x-registry-auth")
        .expect("X-Registry-Auth sent");
    serde_json::from_slice(&URL_SAFE.decode(h).expect("base64url")).expect("json")
}

#[test]
fn login_pull_push_logout() {
    let dir = temp_dir();
    let config_dir = dir.join("config");
    let config = config_dir.join("config.json");
    let (host, log) = fake_daemon(&dir);
    let berth = |args: &[&str]| {
        let mut v: Vec<String> = vec!["berth".into(), "--config".into()];
        v.push(config_dir.display().to_string());
        v.extend(["-H".to_owned(), host.clone()]);
        v.extend(args.iter().map(|s| s.to_string()));
        berth_cli::main(v)
    };
    let last = || {
        log.lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request")
    };

    // A refused login stores nothing.
    assert_eq!(
        berth(&["login", "-u", "bob", "-p", "bad", "localhost:5000"]),
        1
    );
    assert!(!config.exists());

    assert_eq!(
        berth(&["login", "-u", "bob", "-p", "good", "http://localhost:5000/"]),
        0
    );
    let req = last();
    let body: serde_json::Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"username": "bob", "password": "good", "serveraddress": "localhost:5000"})
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(
        doc["auths"]["localhost:5000"]["auth"],
        STANDARD.encode("bob:good")
    );

    // Pulls from that registry carry the login; others send `{}`.
    assert_eq!(berth(&["pull", "-q", "localhost:5000/app:v1"]), 0);
    let req = last();
    assert_eq!(
        req.target,
        "POST /v1.50/images/create?fromImage=localhost%3A5000%2Fapp&tag=v1"
    );
    assert_eq!(
        decoded_auth(&req),
        serde_json::json!({"username": "bob", "password": "good", "serveraddress": "localhost:5000"})
    );
    assert_eq!(
        berth(&["image", "pull", "--platform", "linux/amd64", "busybox"]),
        0
    );
    let req = last();
    assert_eq!(
        req.target,
        "POST /v1.50/images/create?fromImage=busybox&tag=latest&platform=linux%2Famd64"
    );
    assert_eq!(req.headers["x-registry-auth"], "e30=");

    assert_eq!(berth(&["push", "localhost:5000/app:v1"]), 0);
    let req = last();
    assert_eq!(
        req.target,
        "POST /v1.50/images/localhost:5000/app/push?tag=v1"
    );
    assert_eq!(decoded_auth(&req)["username"], "bob");
    // An error inside the stream fails the command.
    assert_eq!(berth(&["push", "localhost:5000/denied"]), 1);
    assert_eq!(
        last().target,
        "POST /v1.50/images/localhost:5000/denied/push?tag=latest"
    );
    assert_eq!(berth(&["push", "localhost:5000/app@sha256:00"]), 1);

    assert_eq!(berth(&["logout", "localhost:5000"]), 0);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(doc["auths"].get("localhost:5000").is_none(), "{doc}");
    assert_eq!(berth(&["logout", "localhost:5000"]), 0);

    let _ = std::fs::remove_dir_all(&dir);
}
