//! docker-compose 1.29, a client of its own (Python's docker SDK), brings a two-service
//! project up and down against berthd: `depends_on` order, `environment`, `command`,
//! `restart`, `ps`, `logs`, `down`; `network_mode: none`/`host`, and the project's default
//! bridge network with service names in DNS, published ports and named volumes.

mod common;

use std::process::{Command, Output};

use common::{Daemon, ok};

const COMPOSE_FILE: &str = r#"version: "3.8"
services:
  db:
    image: busybox
    network_mode: none
    command: sh -c "echo db up as $$ROLE; sleep 1000"
    environment:
      ROLE: database
    restart: unless-stopped
  web:
    image: busybox
    network_mode: host
    depends_on:
      - db
    command: sh -c "echo web up as $$ROLE; sleep 1000"
    environment:
      ROLE: frontend
    restart: always
"#;

fn compose(d: &Daemon, dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new("docker-compose")
        .args(["-p", "demo"])
        .args(args)
        .current_dir(dir)
        .env("DOCKER_HOST", d.host())
        .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
        .output()
        .expect("docker-compose is installed by scripts/test.sh")
}

#[test]
fn compose_up_ps_logs_down() {
    let d = Daemon::start();
    d.import_busybox();
    let dir = d.dir.join("project");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), COMPOSE_FILE).unwrap();
    let up = compose(&d, &dir, &["up", "-d"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    // depends_on: db is created (and started) before web.
    let created = ok(d.docker(&["ps", "-a", "--format", "{{.Names}} {{.CreatedAt}}"]));
    let names = ok(d.docker(&["inspect", "-f", "{{.Name}} {{.State.StartedAt}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.NetworkMode}}", "demo_db_1", "demo_web_1"]));
    let rows: Vec<Vec<&str>> = names.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(rows[0][0], "/demo_db_1", "{created}");
    assert!(rows[0][1] < rows[1][1], "db started first: {names}");
    assert_eq!(rows[0][2..], ["unless-stopped", "none"]);
    assert_eq!(rows[1][2..], ["always", "host"]);
    let ps = compose(&d, &dir, &["ps"]);
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert_eq!(ps.lines().filter(|l| l.contains(" Up")).count(), 2, "{ps}");
    let mut logs = String::new();
    for _ in 0..100 {
        let o = compose(&d, &dir, &["logs", "--no-color"]);
        logs = String::from_utf8_lossy(&o.stdout).into_owned();
        if logs.contains("db up as database") && logs.contains("web up as frontend") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(logs.contains("db_1   | db up as database"), "{logs}");
    assert!(logs.contains("web_1  | web up as frontend"), "{logs}");
    // Labels compose uses to find its containers.
    assert_eq!(
        ok(d.docker(&[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.compose.project=demo"
        ]))
        .lines()
        .count(),
        2
    );
    let down = compose(&d, &dir, &["down", "-t", "1"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(ok(d.docker(&["ps", "-aq"])), "");
}

const RECREATE_FILE: &str = r#"version: "3.7"
services:
  app:
    image: busybox
    command: sleep 1000
    network_mode: none
    volumes: ["/data"]
"#;

/// `up` again with a changed service recreates its container; compose 1.x reads the image's
/// `ContainerConfig` for that and carries the anonymous volume over.
#[test]
fn compose_recreate_keeps_the_anonymous_volume() {
    let d = Daemon::start();
    d.import_busybox();
    let dir = d.dir.join("recreate");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), RECREATE_FILE).unwrap();
    let run = |args: &[&str]| {
        let o = compose(&d, &dir, args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["up", "-d"]);
    let first = ok(d.docker(&["inspect", "-f", "{{.Id}}", "demo_app_1"]));
    ok(d.docker(&["exec", "demo_app_1", "sh", "-c", "echo kept > /data/f"]));
    run(&["up", "-d", "--force-recreate"]);
    let second = ok(d.docker(&["inspect", "-f", "{{.Id}}", "demo_app_1"]));
    assert_ne!(first, second);
    assert_eq!(
        ok(d.docker(&["exec", "demo_app_1", "cat", "/data/f"])),
        "kept"
    );
    run(&["down", "-v", "-t", "1"]);
    assert_eq!(ok(d.docker(&["ps", "-aq"])), "");
}

const BRIDGED_FILE: &str = r#"version: "3.8"
services:
  web:
    image: busybox
    command: sh -c "until [ -s /data/greeting ]; do sleep 0.1; done; mkdir -p /www && cat /data/greeting > /www/index.html && exec httpd -f -p 80 -h /www"
    ports: ["18600:80"]
    volumes: ["greet:/data"]
    depends_on: [seed]
  seed:
    image: busybox
    command: sh -c "echo from-compose > /data/greeting && sleep 1000"
    volumes: ["greet:/data"]
  client:
    image: busybox
    depends_on: [web]
    command: sh -c "until wget -qO- http://web/; do sleep 0.2; done; sleep 1000"
volumes:
  greet: {}
"#;

#[test]
fn compose_default_network_volumes_and_ports() {
    let d = Daemon::start();
    d.import_busybox();
    let dir = d.dir.join("bridged");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), BRIDGED_FILE).unwrap();
    let up = compose(&d, &dir, &["up", "-d"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(
        ok(d.docker(&["network", "ls", "--format", "{{.Name}}"])).contains("demo_default"),
        "compose made its network"
    );
    assert!(ok(d.docker(&["volume", "ls", "-q"])).contains("demo_greet"));
    // The client found web by its service name through the embedded DNS.
    let mut logs = String::new();
    for _ in 0..100 {
        logs =
            String::from_utf8_lossy(&compose(&d, &dir, &["logs", "--no-color", "client"]).stdout)
                .into_owned();
        if logs.contains("from-compose") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(logs.contains("from-compose"), "{logs}");
    // And the host reaches web on its published port.
    let got = d.host_busybox(&["wget", "-q", "-O-", "http://127.0.0.1:18600/"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "from-compose");
    let down = compose(&d, &dir, &["down", "-v", "-t", "1"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(ok(d.docker(&["ps", "-aq"])), "");
    assert!(!ok(d.docker(&["network", "ls", "--format", "{{.Name}}"])).contains("demo_default"));
    assert_eq!(ok(d.docker(&["volume", "ls", "-q"])), "");
}
