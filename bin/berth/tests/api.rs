//! The Engine API on the wire, as SDKs see it: ping and version negotiation, Docker's error
//! bodies and status codes, list filters, log options, the hijacked attach stream framing, and
//! hostile requests that must not hurt the daemon.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Daemon, dechunk, ok, parse_head, stderr};

fn daemon() -> Daemon {
    let d = Daemon::start();
    d.import_busybox();
    d
}

#[test]
fn ping_version_and_socket() {
    let d = Daemon::start();
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    for path in ["/_ping", "/v1.41/_ping", "/v1.50/_ping"] {
        let r = d.http("GET", path, None);
        assert_eq!((r.status, r.text().as_str()), (200, "OK"), "{path}");
        assert_eq!(r.header("api-version"), Some("1.50"));
    }
    let r = d.http("HEAD", "/_ping", None);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("api-version"), Some("1.50"));

    let v = d.http("GET", "/v1.41/version", None).json();
    assert_eq!(v["ApiVersion"], "1.50");
    assert_eq!(v["MinAPIVersion"], "1.24");
    assert_eq!(v["Os"], "linux");
    // What `docker version` prints for the engine.
    let details = &v["Components"][0]["Details"];
    for key in [
        "GitCommit",
        "GoVersion",
        "BuildTime",
        "Experimental",
        "KernelVersion",
    ] {
        assert!(details[key].is_string(), "{key}: {v}");
    }
    let info = d.http("GET", "/v1.41/info", None).json();
    assert_eq!(
        info["RegistryConfig"]["IndexConfigs"]["docker.io"]["Official"],
        true
    );
    for (path, why) in [("/v1.99/version", "too new"), ("/v1.12/version", "too old")] {
        let r = d.http("GET", path, None);
        assert_eq!(r.status, 400, "{path}");
        let msg = r.json()["message"].as_str().unwrap_or_default().to_owned();
        assert!(msg.contains(why), "{path}: {}", r.text());
    }
}

#[test]
fn errors_have_docker_status_and_body() {
    let d = daemon();
    let r = d.http("GET", "/containers/nope/json", None);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "No such container: nope");
    let r = d.http("GET", "/v1.41/images/nope/json", None);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "No such image: nope:latest");
    // Malformed JSON, wrong types: 400 with a message.
    for body in [
        &b"{not json"[..],
        br#"{"Image": 5}"#,
        br#"{"Image":"busybox","HostConfig":{"Memory":"lots"}}"#,
    ] {
        let r = d.http("POST", "/containers/create", Some(body));
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.json()["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A bad parameter and an unknown image.
    let r = d.http(
        "POST",
        "/containers/create?name=bad/name",
        Some(br#"{"Image":"busybox"}"#),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = d.http("POST", "/containers/create", Some(br#"{"Image":"ghost"}"#));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["message"], "No such image: ghost:latest");
    // Conflicting settings, in dockerd's words.
    let r = d.http(
        "POST",
        "/containers/create",
        Some(br#"{"Image":"busybox","HostConfig":{"AutoRemove":true,"RestartPolicy":{"Name":"always"}}}"#),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "can't create 'AutoRemove' container with restart policy"
    );
    // A name in use: 409.
    let body = br#"{"Image":"busybox","Cmd":["true"]}"#;
    assert_eq!(
        d.http("POST", "/containers/create?name=twice", Some(body))
            .status,
        201
    );
    let r = d.http("POST", "/containers/create?name=twice", Some(body));
    assert_eq!(r.status, 409, "{}", r.text());
    // Unknown fields are ignored, as Docker does.
    let r = d.http(
        "POST",
        "/containers/create",
        Some(br#"{"Image":"busybox","Cmd":["true"],"FutureField":{"x":1}}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // No such route.
    let r = d.http("GET", "/no/such/route", None);
    assert_eq!(r.status, 404);
    assert!(r.json()["message"].is_string());
    // Starting twice is fine (304), stopping a stopped container too.
    let id = d
        .http(
            "POST",
            "/containers/create",
            Some(br#"{"Image":"busybox","Cmd":["sleep","100"]}"#),
        )
        .json()["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        d.http("POST", &format!("/containers/{id}/start"), None)
            .status,
        204
    );
    assert_eq!(
        d.http("POST", &format!("/containers/{id}/start"), None)
            .status,
        304
    );
    assert_eq!(
        d.http("DELETE", &format!("/containers/{id}"), None).status,
        409
    );
    assert_eq!(
        d.http("DELETE", &format!("/containers/{id}?force=1&v=1"), None)
            .status,
        204
    );
    // More refusals in dockerd's words and statuses.
    let want = |method: &str, path: &str, body: Option<&[u8]>, status: u16, msg: &str| {
        let r = d.http(method, path, body);
        assert_eq!(
            (
                r.status,
                r.json()["message"].as_str().unwrap_or("").to_owned()
            ),
            (status, msg.to_owned()),
            "{method} {path}"
        );
    };
    want(
        "POST",
        "/networks/create",
        Some(br#"{"Name":"bridge"}"#),
        403,
        "bridge is a pre-defined network and cannot be created",
    );
    want(
        "POST",
        "/networks/create",
        Some(br#"{"Name":"sw","Scope":"swarm"}"#),
        403,
        "cannot create a swarm scoped network when swarm is not active",
    );
    want(
        "POST",
        "/networks/create",
        Some(br#"{"Name":"ov","Driver":"overlay"}"#),
        503,
        "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
    );
    want(
        "GET",
        "/containers/twice/stats?stream=1&one-shot=1",
        None,
        400,
        "cannot have stream=true and one-shot=true",
    );
    want(
        "POST",
        "/containers/twice/rename",
        None,
        400,
        "Neither old nor new names may be empty",
    );
    want(
        "GET",
        "/containers/twice/logs",
        None,
        400,
        "Bad parameters: you must choose at least one stream",
    );
    // A tarball that is not one: an error status (SDKs raise on it), a message without the
    // garbage, and no image.
    let junk: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let r = d.http("POST", "/images/create?fromSrc=-&repo=junk", Some(&junk));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "invalid layer: reading tar archive: invalid tar header"
    );
    assert_eq!(d.http("GET", "/images/junk/json", None).status, 404);
    // Bad published ports are refused at create, so no container is left behind.
    want("POST", "/containers/create", Some(br#"{"Image":"busybox","HostConfig":{"PortBindings":{"99999/tcp":[{"HostPort":"1"}]}}}"#), 400, "invalid port specification: \"99999\"");
    want("POST", "/containers/create", Some(br#"{"Image":"busybox","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"99999"}]}}}"#), 400, "invalid port specification: \"99999\"");
    // A negative time is before 1970, as Go reads it: all of the log.
    assert_eq!(
        d.http("GET", "/containers/twice/logs?stdout=1&since=-1", None)
            .status,
        200
    );
    assert_eq!(d.http("GET", "/_ping", None).status, 200, "still serving");
}

/// Old clients get what dockerd gives them: no auto-remove before 1.25, a shareable IPC
/// namespace before 1.40, and a host config at start refused from 1.24.
#[test]
fn old_api_versions_keep_their_defaults() {
    let d = daemon();
    let r = d.http(
        "POST",
        "/v1.24/containers/create?name=old",
        Some(br#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"AutoRemove":true}}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.AutoRemove}} {{.HostConfig.IpcMode}}",
            "old"
        ])),
        "false shareable"
    );
    let r = d.http(
        "POST",
        "/v1.24/containers/old/start",
        Some(br#"{"Binds":["/tmp:/x"]}"#),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("removed in v1.24"), "{}", r.text());
    assert_eq!(
        d.http("POST", "/v1.23/containers/old/start", None).status,
        400
    );
    assert_eq!(
        d.http("POST", "/v1.24/containers/old/start", None).status,
        204
    );
    ok(d.docker(&["wait", "old"]));
    ok(d.docker(&["rm", "old"]));
    // An empty object at start passes (some clients send one).
    ok(d.docker(&["create", "--name", "braces", "busybox", "true"]));
    assert_eq!(
        d.http("POST", "/v1.41/containers/braces/start", Some(b"{}"))
            .status,
        204
    );
    ok(d.docker(&["wait", "braces"]));
    ok(d.docker(&["rm", "braces"]));
    // The image list's `filter=` (a reference pattern) before 1.41; ignored from 1.41.
    ok(d.docker(&["run", "--name", "src", "busybox", "touch", "/z"]));
    ok(d.docker(&["commit", "src", "other:1"]));
    ok(d.docker(&["rm", "src"]));
    let images = |v: &str| {
        let list = d
            .http("GET", &format!("/{v}/images/json?filter=oth*"), None)
            .json();
        list.as_array().unwrap().len()
    };
    assert_eq!(images("v1.40"), 1);
    assert_eq!(images("v1.41"), 2);
    ok(d.docker(&["rmi", "other:1"]));
    // Before 1.28 the network list names each network's containers.
    ok(d.docker(&["run", "-d", "--name", "on", "busybox", "sleep", "60"]));
    let bridge = |v: &str| {
        let list = d.http("GET", &format!("/{v}/networks"), None).json();
        list.as_array()
            .unwrap()
            .iter()
            .find(|n| n["Name"] == "bridge")
            .unwrap()["Containers"]
            .as_object()
            .unwrap()
            .len()
    };
    assert_eq!(bridge("v1.27"), 1);
    assert_eq!(bridge("v1.28"), 0);
    ok(d.docker(&["rm", "-f", "on"]));
}

#[test]
fn list_filters() {
    let d = daemon();
    let run = |name: &str, cmd: &str, label: &str| {
        ok(d.docker(&[
            "run", "-d", "--name", name, "-l", label, "busybox", "sh", "-c", cmd,
        ]))
    };
    let a = run("fail3", "exit 3", "app=x");
    let b = run("ok0", "exit 0", "app=y");
    let c = run("runs", "sleep 1000", "app=x");
    for id in [&a, &b] {
        ok(d.docker(&["wait", id]));
    }
    let names = |filters: &str, extra: &str| -> Vec<String> {
        let q = format!(
            "/containers/json?all=1&filters={}{extra}",
            urlencode(filters)
        );
        let r = d.http("GET", &q, None);
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        let mut v: Vec<String> = r
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                c["Names"][0]
                    .as_str()
                    .unwrap()
                    .trim_start_matches('/')
                    .to_owned()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(r#"{"exited":["3"]}"#, ""), ["fail3"]);
    assert_eq!(names(r#"{"status":["exited"]}"#, ""), ["fail3", "ok0"]);
    assert_eq!(names(r#"{"status":["running"]}"#, ""), ["runs"]);
    assert_eq!(names(r#"{"label":["app=x"]}"#, ""), ["fail3", "runs"]);
    assert_eq!(names(r#"{"ancestor":["busybox"]}"#, "").len(), 3);
    assert_eq!(names(r#"{"ancestor":["other"]}"#, ""), Vec::<String>::new());
    assert_eq!(
        names(&format!(r#"{{"id":["{}"]}}"#, &c[..10]), ""),
        ["runs"]
    );
    assert_eq!(names(r#"{"name":["ok"]}"#, ""), ["ok0"]);
    assert_eq!(names("{}", "&limit=1").len(), 1);
    // No swarm tasks here; the one isolation on Linux.
    assert!(names(r#"{"is-task":["true"]}"#, "").is_empty());
    assert_eq!(names(r#"{"is-task":["false"]}"#, "").len(), 3);
    assert_eq!(names(r#"{"isolation":["default"]}"#, "").len(), 3);
    // A network by an id prefix.
    let bridge = ok(d.docker(&["network", "inspect", "-f", "{{.Id}}", "bridge"]));
    assert!(
        names(&format!(r#"{{"network":["{}"]}}"#, &bridge[..12]), "").contains(&"runs".to_owned())
    );
    // An image's descendants count as its: a container of a commit of a busybox container.
    ok(d.docker(&["commit", "ok0", "child:1"]));
    ok(d.docker(&[
        "create", "--name", "kid", "--expose", "7000", "child:1", "true",
    ]));
    assert!(names(r#"{"ancestor":["busybox"]}"#, "").contains(&"kid".to_owned()));
    assert_eq!(names(r#"{"ancestor":["child:1"]}"#, ""), ["kid"]);
    // Without `all`: `exited` does not bring stopped containers in (`status` does).
    let plain = |filters: &str| {
        let q = format!("/containers/json?filters={}", urlencode(filters));
        d.http("GET", &q, None)
    };
    assert_eq!(plain(r#"{"exited":["3"]}"#).json(), serde_json::json!([]));
    assert_eq!(
        plain(r#"{"status":["exited"]}"#)
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // A container that is not running lists no ports, and `expose` does not match it.
    let all = d.http("GET", "/containers/json?all=1", None).json();
    let kid = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Names"][0] == "/kid")
        .unwrap();
    assert_eq!(kid["Ports"], serde_json::json!([]), "{kid}");
    assert!(names(r#"{"expose":["7000"]}"#, "").is_empty());
    for (filters, want) in [
        (r#"{"bogus":["1"]}"#, "invalid filter 'bogus'"),
        (
            r#"{"is-task":["maybe"]}"#,
            "invalid filter 'is-task=[maybe]'",
        ),
        (
            r#"{"exited":["abc"]}"#,
            "strconv.Atoi: parsing \"abc\": invalid syntax",
        ),
        (
            r#"{"health":["bogus"]}"#,
            "Unrecognised filter value for health: bogus",
        ),
    ] {
        let r = plain(filters);
        assert_eq!(r.status, 400, "{filters}: {}", r.text());
        assert_eq!(r.json()["message"], want, "{filters}");
    }
    ok(d.docker(&["rm", "-f", &a, &b, &c, "kid"]));
    ok(d.docker(&["rmi", "child:1"]));
}

#[test]
fn logs_since_until_and_timestamps() {
    let d = daemon();
    let id = ok(d.docker(&[
        "run",
        "-d",
        "busybox",
        "sh",
        "-c",
        "echo early; sleep 2; echo late",
    ]));
    ok(d.docker(&["wait", &id]));
    let stamped = ok(d.docker(&["logs", "-t", &id]));
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 2, "{stamped}");
    let ts_late = lines[1].split(' ').next().unwrap();
    assert!(lines[1].ends_with(" late"));
    let ts_early = lines[0].split(' ').next().unwrap();
    // Both bounds are inclusive, as Docker's: --since the second line's time keeps it only,
    // --until the first line's time keeps the first only.
    assert_eq!(ok(d.docker(&["logs", "--since", ts_late, &id])), "late");
    assert_eq!(ok(d.docker(&["logs", "--until", ts_early, &id])), "early");
    assert_eq!(
        ok(d.docker(&["logs", "--since", ts_early, "--until", ts_late, &id])),
        "early\nlate"
    );
    // --tail takes the file's last lines first, then the time filter, as dockerd's reader.
    assert_eq!(
        ok(d.docker(&["logs", "--tail", "1", "--until", ts_early, &id])),
        ""
    );
    ok(d.docker(&["rm", &id]));
}

/// Attach without a tty: Docker's 8-byte stdio frame headers, stdout and stderr apart.
#[test]
fn attach_stream_framing() {
    let d = daemon();
    let created = d.http(
        "POST",
        "/containers/create",
        Some(br#"{"Image":"busybox","Cmd":["sh","-c","read x; echo out-$x; echo err-$x >&2"],"OpenStdin":true,"AttachStdin":true,"AttachStdout":true,"AttachStderr":true}"#),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["Id"].as_str().unwrap().to_owned();
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /v1.41/containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let at = loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the upgrade");
        buf.extend_from_slice(&chunk[..n]);
        if let Some((status, headers, at)) = parse_head(&buf) {
            assert_eq!(status, 101, "{headers:?}");
            assert!(headers.iter().any(|(k, v)| k == "upgrade" && v == "tcp"));
            break at;
        }
    };
    buf.drain(..at);
    assert_eq!(
        d.http("POST", &format!("/containers/{id}/start"), None)
            .status,
        204
    );
    s.write_all(b"abc\n").unwrap();
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let mut frames = frames(&buf);
    frames.sort();
    assert_eq!(
        frames,
        [(1, "out-abc\n".to_owned()), (2, "err-abc\n".to_owned())]
    );
    let w = d
        .http("POST", &format!("/containers/{id}/wait"), None)
        .json();
    assert_eq!(w["StatusCode"], 0);
    assert_eq!(
        d.http("DELETE", &format!("/containers/{id}"), None).status,
        204
    );
}

/// The frames of a multiplexed stream: (stream, text).
fn frames(buf: &[u8]) -> Vec<(u8, String)> {
    let mut frames = Vec::new();
    let mut rest = buf;
    while rest.len() >= 8 {
        let len = u32::from_be_bytes(rest[4..8].try_into().unwrap()) as usize;
        assert_eq!(&rest[1..4], &[0, 0, 0]);
        frames.push((
            rest[0],
            String::from_utf8_lossy(&rest[8..8 + len]).into_owned(),
        ));
        rest = &rest[8 + len..];
    }
    assert!(rest.is_empty(), "trailing bytes: {rest:?}");
    frames
}

/// Attach as moby serves it to SDKs: `logs=1` replays what was written so far (and with
/// `stream=0` the connection then ends); neither `logs` nor `stream` ends it at once; bad
/// detach keys are a 400 before any upgrade.
#[test]
fn attach_replays_logs_and_checks_detach_keys() {
    let d = daemon();
    ok(d.berth(&[
        "run",
        "--name",
        "done",
        "busybox",
        "sh",
        "-c",
        "echo one; echo two >&2",
    ]));
    // A raw request, so that a stream that never ends shows as a read timeout, not a hang.
    let ends = |path: &str| {
        let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .expect("the attach stream did not end");
        let (status, headers, at) = parse_head(&buf).unwrap();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            dechunk(&buf[at..])
        } else {
            buf[at..].to_vec()
        };
        (status, body)
    };
    let (status, body) = ends("/v1.41/containers/done/attach?logs=1&stream=0&stdout=1&stderr=1");
    assert_eq!(status, 200);
    assert_eq!(
        frames(&body),
        [(1, "one\n".to_owned()), (2, "two\n".to_owned())]
    );
    let (_, body) = ends("/v1.41/containers/done/attach?logs=1&stream=0&stderr=1");
    assert_eq!(frames(&body), [(2, "two\n".to_owned())]);
    let (status, body) = ends("/v1.41/containers/done/attach?stdout=1");
    assert_eq!((status, body.len()), (200, 0));
    let r = d.http(
        "POST",
        "/v1.41/containers/done/attach?stream=1&stdout=1&detachKeys=bogus",
        None,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "Invalid detach keys (bogus) provided");
    // The docker CLI then fails at once (as with dockerd) instead of waiting on a dead stream.
    ok(d.berth(&["run", "-d", "--name", "live", "busybox", "sleep", "60"]));
    let o = d.docker(&["attach", "--detach-keys", "bogus", "live"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unable to upgrade to tcp, received 400"),
        "{}",
        stderr(&o)
    );
    ok(d.berth(&["rm", "-f", "done", "live"]));
}

/// Huge bodies, clients that vanish mid-request or mid-stream: the daemon goes on serving.
#[test]
fn hostile_clients_do_not_hurt_the_daemon() {
    let d = daemon();
    // A body far above any sane size, announced and then not sent.
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    write!(s, "POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{{").unwrap();
    drop(s);
    // A huge body really sent.
    let big = vec![b' '; 64 << 20];
    let mut body = b"{\"Image\":\"busybox\",\"Cmd\":[\"true\"],\"Pad\":\"".to_vec();
    body.extend_from_slice(&big);
    body.extend_from_slice(b"\"}");
    let r = d.http("POST", "/containers/create", Some(&body));
    assert!(
        r.status == 400 || r.status == 413,
        "{} {}",
        r.status,
        r.text()
    );
    // Garbage instead of HTTP.
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    s.write_all(b"\x00\x01\x02 not http\r\n\r\n").unwrap();
    drop(s);
    // A follower that disconnects mid-stream.
    let id = ok(d.docker(&[
        "run",
        "-d",
        "busybox",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.1; done",
    ]));
    for _ in 0..5 {
        let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
        write!(
            s,
            "GET /containers/{id}/logs?follow=1&stdout=1 HTTP/1.1\r\nHost: d\r\n\r\n"
        )
        .unwrap();
        let mut b = [0u8; 256];
        let _ = s.read(&mut b);
        drop(s);
    }
    // Everything still works.
    assert_eq!(d.http("GET", "/_ping", None).status, 200);
    assert_eq!(ok(d.docker(&["exec", &id, "echo", "fine"])), "fine");
    ok(d.docker(&["rm", "-f", &id]));
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The stats endpoint: a single sample with Docker's field names and a CPU baseline, and a
/// stream of a sample a second with the previous one's CPU figures carried over.
#[test]
fn stats_stream_and_single_sample() {
    let d = daemon();
    ok(d.berth(&["run", "-d", "--name", "st", "busybox", "sleep", "1000"]));
    let r = d.http("GET", "/v1.50/containers/st/stats?stream=false", None);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["name"], "/st");
    let sys = |s: &serde_json::Value| s["system_cpu_usage"].as_u64().unwrap_or(0);
    assert!(sys(&v["cpu_stats"]) > sys(&v["precpu_stats"]), "{v}");
    assert!(v["memory_stats"]["usage"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["pids_stats"]["current"], 1);
    // On cgroup v1 dockerd sends each of the eight block I/O lists, `[]` without I/O.
    if !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let blkio = v["blkio_stats"].as_object().unwrap();
        assert_eq!(blkio.len(), 8, "{v}");
        assert!(blkio.values().all(|l| l.is_array()), "{v}");
        assert_eq!(
            v["blkio_stats"]["io_queue_recursive"],
            serde_json::json!([])
        );
    }
    assert_eq!(
        d.http("GET", "/containers/nosuch/stats?stream=0", None)
            .status,
        404
    );
    // Streamed: read two samples, then hang up; the daemon keeps serving.
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /containers/st/stats HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(s));
    let mut samples = Vec::new();
    while samples.len() < 2 {
        let line = lines.next().expect("stream ended").unwrap();
        if line.trim_start().starts_with('{') {
            samples.push(serde_json::from_str::<serde_json::Value>(line.trim()).unwrap());
        }
    }
    assert_eq!(samples[1]["precpu_stats"], samples[0]["cpu_stats"]);
    assert_eq!(samples[1]["preread"], samples[0]["read"]);
    drop(lines);
    assert_eq!(ok(d.berth(&["rm", "-f", "st"])), "st");
}

/// Answers follow the version the client asked for where Docker's shapes differ.
#[test]
fn responses_take_the_requested_versions_shape() {
    let d = daemon();
    let list = |v: &str| d.http("GET", &format!("/{v}/images/json"), None).json();
    let inspect = |v: &str| {
        d.http("GET", &format!("/{v}/images/busybox/json"), None)
            .json()
    };
    // VirtualSize went away in 1.44, Container in 1.45.
    assert!(list("v1.41")[0].get("VirtualSize").is_some());
    assert!(list("v1.43")[0].get("VirtualSize").is_some());
    assert!(list("v1.44")[0].get("VirtualSize").is_none());
    assert!(list("v1.50")[0].get("VirtualSize").is_none());
    assert!(inspect("v1.41").get("VirtualSize").is_some());
    assert!(inspect("v1.44").get("VirtualSize").is_none());
    assert!(inspect("v1.44").get("Container").is_some());
    assert!(inspect("v1.45").get("Container").is_none());
    // Container-only fields left the image's Config in 1.46.
    assert!(inspect("v1.45")["Config"].get("Hostname").is_some());
    assert!(inspect("v1.46")["Config"].get("Hostname").is_none());
    assert!(inspect("v1.46")["Config"].get("Cmd").is_some());
    // The same image either way.
    assert_eq!(inspect("v1.41")["Id"], inspect("v1.50")["Id"]);
    // info: kernel-memory and br_netfilter fields left in 1.44; FirewallBackend came in 1.49.
    let info = |v: &str| d.http("GET", &format!("/{v}/info"), None).json();
    assert!(info("v1.41").get("KernelMemory").is_some());
    assert!(info("v1.44").get("KernelMemory").is_none());
    assert!(info("v1.48").get("FirewallBackend").is_none());
    assert_eq!(info("v1.49")["FirewallBackend"]["Driver"], "nftables");
    // networks: EnableIPv4 from 1.47.
    let net = |v: &str| d.http("GET", &format!("/{v}/networks/bridge"), None).json();
    assert!(net("v1.46").get("EnableIPv4").is_none());
    assert_eq!(net("v1.47")["EnableIPv4"], true);
    // `ContainerConfig` at every version (docker-compose 1.x reads it after negotiating).
    assert!(inspect("v1.41")["ContainerConfig"].is_object());
    assert!(inspect("v1.50")["ContainerConfig"].is_object());
    // A user network's aliases: the short id follows the given ones up to 1.44; from 1.45 it
    // is in DNSNames only (name, aliases, short id).
    ok(d.docker(&["network", "create", "vnet"]));
    let id = ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "aliased",
        "--network",
        "vnet",
        "--network-alias",
        "al",
        "busybox",
        "sleep",
        "60",
    ]));
    let short = &id[..12];
    let ep = |v: &str| {
        d.http("GET", &format!("/{v}/containers/aliased/json"), None)
            .json()["NetworkSettings"]["Networks"]["vnet"]
            .clone()
    };
    assert_eq!(ep("v1.44")["Aliases"], serde_json::json!(["al", short]));
    assert_eq!(ep("v1.45")["Aliases"], serde_json::json!(["al"]));
    assert_eq!(
        ep("v1.45")["DNSNames"],
        serde_json::json!(["aliased", "al", short])
    );
    assert!(ep("v1.43").get("DNSNames").is_none());
    // The list copies addresses and ids only, as moby's: no aliases there.
    let listed = d.http("GET", "/v1.41/containers/json", None).json();
    let row = &listed[0]["NetworkSettings"]["Networks"]["vnet"];
    assert!(row["Aliases"].is_null(), "{row}");
    assert_eq!(row["IPAddress"], ep("v1.41")["IPAddress"]);
    ok(d.docker(&["rm", "-f", "aliased"]));
    ok(d.docker(&["network", "rm", "vnet"]));
    // HostConfig.KernelMemory: always there up to 1.41, gone when 0 from 1.42. A limit is
    // dropped with dockerd's warning (kernels since 5.16 ignore it).
    let r = d.http(
        "POST",
        "/v1.41/containers/create?name=kmem",
        Some(br#"{"Image": "busybox", "Cmd": ["true"], "HostConfig": {"KernelMemory": 10485760}}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let warnings = r.json()["Warnings"].to_string();
    assert!(warnings.contains("Limitation discarded"), "{warnings}");
    let hc = |v: &str| {
        d.http("GET", &format!("/{v}/containers/kmem/json"), None)
            .json()["HostConfig"]
            .clone()
    };
    assert_eq!(hc("v1.41")["KernelMemory"], 0);
    assert!(hc("v1.42").get("KernelMemory").is_none());
    // An update without warnings says null, as dockerd.
    let r = d.http(
        "POST",
        "/v1.41/containers/kmem/update",
        Some(br#"{"CpuShares": 512}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["Warnings"].is_null(), "{}", r.text());
    ok(d.docker(&["rm", "kmem"]));
    // system/df: BuilderSize up to 1.41 only; no build cache is null, as dockerd sends it.
    let df = |v: &str| d.http("GET", &format!("/{v}/system/df"), None).json();
    assert_eq!(df("v1.41")["BuilderSize"], 0);
    assert!(df("v1.41")["BuildCache"].is_null());
    assert!(df("v1.42").get("BuilderSize").is_none());
    // Untagged images: moby's placeholders before 1.43, empty lists since; no labels is null.
    ok(d.docker(&["create", "--name", "src", "busybox", "true"]));
    let untagged = ok(d.docker(&["commit", "src"]));
    let row = |v: &str| {
        d.http("GET", &format!("/{v}/images/json"), None)
            .json()
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["Id"] == untagged.as_str())
            .cloned()
            .unwrap()
    };
    assert_eq!(
        row("v1.42")["RepoTags"],
        serde_json::json!(["<none>:<none>"])
    );
    assert_eq!(
        row("v1.42")["RepoDigests"],
        serde_json::json!(["<none>@<none>"])
    );
    assert_eq!(row("v1.43")["RepoTags"], serde_json::json!([]));
    // A tagged image without digests: null digests before 1.43, as dockerd 20.10's list.
    ok(d.docker(&["tag", &untagged, "tagged:1"]));
    assert!(row("v1.42")["RepoDigests"].is_null());
    assert_eq!(row("v1.43")["RepoDigests"], serde_json::json!([]));
    assert!(row("v1.41")["Labels"].is_null());
    // A container that wrote nothing has no SizeRw in a sized list (moby's omitempty).
    let listed = d
        .http("GET", "/v1.41/containers/json?all=1&size=1", None)
        .json();
    assert!(listed[0].get("SizeRw").is_none(), "{listed}");
    assert!(listed[0]["SizeRootFs"].as_u64().unwrap() > 0, "{listed}");
    ok(d.docker(&["rm", "src"]));
    ok(d.docker(&["rmi", "tagged:1"]));
    // Non-distributable artifacts left the registry settings in 1.49.
    assert_eq!(
        info("v1.48")["RegistryConfig"]["AllowNondistributableArtifactsCIDRs"],
        serde_json::json!([])
    );
    assert!(
        info("v1.49")["RegistryConfig"]
            .get("AllowNondistributableArtifactsCIDRs")
            .is_none()
    );
    // Beyond the range: refused as Docker refuses it.
    let r = d.http("GET", "/v1.99/images/json", None);
    assert_eq!(r.status, 400, "{}", r.text());
}

/// `HostConfig.Annotations` (API 1.43) are kept, shown by inspect and handed to the runtime.
#[test]
fn annotations_reach_the_runtime_spec() {
    let d = daemon();
    let body = br#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"Annotations":{"org.example/team":"infra"}}}"#;
    let r = d.http(
        "POST",
        "/v1.50/containers/create?name=annotated",
        Some(body),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["Id"].as_str().unwrap().to_owned();
    let v = d
        .http("GET", "/v1.50/containers/annotated/json", None)
        .json();
    assert_eq!(v["HostConfig"]["Annotations"]["org.example/team"], "infra");
    ok(d.berth(&["start", "-a", "annotated"]));
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.dir.join("data/containers").join(&id).join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(spec["annotations"]["org.example/team"], "infra");
}

/// One keep-alive connection, as the SDKs and the docker CLI hold theirs: requests in turn,
/// answers with a `Content-Length`.
struct KeepAlive {
    stream: std::os::unix::net::UnixStream,
    buf: Vec<u8>,
}

impl KeepAlive {
    fn connect(d: &Daemon) -> Self {
        let stream = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    fn get(&mut self, path: &str) -> (u16, serde_json::Value) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: docker\r\n\r\n");
        self.stream.write_all(req.as_bytes()).unwrap();
        let (status, headers, at) = loop {
            if let Some(head) = parse_head(&self.buf) {
                break head;
            }
            self.fill();
        };
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .expect("a Content-Length");
        while self.buf.len() < at + len {
            self.fill();
        }
        let body: Vec<u8> = self.buf.drain(..at + len).skip(at).collect();
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the daemon closed a keep-alive connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

/// Inspect answers are cached between changes; every kind of change shows in the next answer
/// on the same keep-alive connection (which busy-polls between requests).
#[test]
fn inspect_shows_every_change_at_once() {
    let d = daemon();
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "ic",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]));
    let mut c = KeepAlive::connect(&d);
    let (status, first) = c.get("/v1.50/containers/ic/json");
    assert_eq!(status, 200);
    let id = first["Id"].as_str().unwrap().to_owned();
    assert_eq!(first["Name"], "/ic");
    assert_eq!(first["State"]["Running"], true);
    assert_eq!(first["ExecIDs"], serde_json::Value::Null);
    assert!(
        first["NetworkSettings"]["SandboxKey"]
            .as_str()
            .unwrap()
            .ends_with(&id)
    );
    // Asked again with nothing changed: the same answer.
    assert_eq!(c.get("/v1.50/containers/ic/json").1, first);
    assert_eq!(c.get(&format!("/v1.50/containers/{id}/json")).1, first);
    // Another version's shape is its own answer (KernelMemory went at 1.42).
    let old = c.get("/v1.41/containers/ic/json").1;
    assert_eq!(old["HostConfig"]["KernelMemory"], 0);
    assert!(first["HostConfig"].get("KernelMemory").is_none(), "{first}");

    ok(d.berth(&["rename", "ic", "ic2"]));
    assert_eq!(c.get("/v1.50/containers/ic/json").0, 404);
    assert_eq!(c.get("/v1.50/containers/ic2/json").1["Name"], "/ic2");

    let r = d.http("POST", "/containers/ic2/exec", Some(br#"{"Cmd":["true"]}"#));
    assert_eq!(r.status, 201, "{}", r.text());
    let exec_id = r.json()["Id"].as_str().unwrap().to_owned();
    assert_eq!(
        c.get("/v1.50/containers/ic2/json").1["ExecIDs"],
        serde_json::json!([exec_id])
    );

    ok(d.berth(&["pause", "ic2"]));
    assert_eq!(
        c.get("/v1.50/containers/ic2/json").1["State"]["Status"],
        "paused"
    );
    ok(d.berth(&["unpause", "ic2"]));
    assert_eq!(
        c.get("/v1.50/containers/ic2/json").1["State"]["Status"],
        "running"
    );

    ok(d.berth(&["update", "--memory", "64m", "--memory-swap", "128m", "ic2"]));
    assert_eq!(
        c.get("/v1.50/containers/ic2/json").1["HostConfig"]["Memory"],
        64 << 20
    );

    ok(d.berth(&["stop", "-t", "0", "ic2"]));
    let stopped = c.get("/v1.50/containers/ic2/json").1;
    assert_eq!(stopped["State"]["Running"], false);
    assert_eq!(stopped["ExecIDs"], serde_json::Value::Null);
    assert_eq!(stopped["NetworkSettings"]["SandboxKey"], "");

    // Sizes are counted at each ask.
    let sized = c.get("/v1.50/containers/ic2/json?size=1").1;
    assert!(sized["SizeRootFs"].as_i64().unwrap() > 0, "{sized}");
    assert!(
        c.get("/v1.50/containers/ic2/json")
            .1
            .get("SizeRootFs")
            .is_none()
    );
    ok(d.berth(&["rm", "ic2"]));
    assert_eq!(c.get("/v1.50/containers/ic2/json").0, 404);
}

/// `api-busy-poll` from daemon.json: off (0) and a long window serve a keep-alive client the
/// same; a bad value stops the daemon with its reason.
#[test]
fn busy_poll_setting_is_read() {
    let mut d = daemon();
    for setting in [r#"{"api-busy-poll": 0}"#, r#"{"api-busy-poll": 5000}"#] {
        d.write_config(setting);
        d.crash_and_restart();
        let mut c = KeepAlive::connect(&d);
        for _ in 0..50 {
            let (status, v) = c.get("/v1.50/version");
            assert_eq!(status, 200, "{setting}");
            assert_eq!(v["ApiVersion"], "1.50");
        }
    }
    let out = std::process::Command::new(common::bin("berthd"))
        .args(["--api-busy-poll", "soon", "-H"])
        .arg(format!("unix://{}", d.dir.join("other.sock").display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("invalid value 'soon' for '--api-busy-poll"),
        "{}",
        stderr(&out)
    );
}
