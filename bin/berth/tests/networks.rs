//! Networking end to end: the default bridge with NAT and published ports, user-defined
//! networks with DNS by name, isolation, internal networks, `container:` sharing, and the
//! same through the real docker CLI. Each test daemon runs in a network namespace of its own
//! (its "host"), so nothing here touches the machine's interfaces or firewall.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, ok, stderr, stdout};

fn daemon() -> Daemon {
    let d = Daemon::start();
    d.import_busybox();
    d
}

/// A busybox web server answering `body` on port 80.
const WEB: &str =
    "mkdir -p /www && echo \"$BODY\" > /www/index.html && exec httpd -f -p 80 -h /www";

/// GET `url` from the daemon's host namespace, retrying while the server comes up.
fn host_get(d: &Daemon, url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = d.host_busybox(&["timeout", "3", "busybox", "wget", "-q", "-O-", url]);
        if o.status.success() || Instant::now() > deadline {
            assert!(o.status.success(), "GET {url}: {}", stderr(&o));
            return stdout(&o).trim().to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The daemon namespace's links (names only).
fn links(d: &Daemon) -> Vec<String> {
    let ns = d.netns.clone().unwrap();
    let out = std::process::Command::new("ip")
        .args(["-n", &ns, "-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

/// Waits (veths go in the background after a stop) until the daemon namespace's links are
/// exactly `want`.
fn assert_links(d: &Daemon, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = links(d);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "links left behind: {got:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `inet berth` table of the daemon's namespace.
fn ruleset(d: &Daemon) -> String {
    let ns = d.netns.clone().unwrap();
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", &ns, "nft", "list", "table", "inet", "berth",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn published_port_is_reachable_from_the_host_and_other_containers() {
    let mut d = daemon();
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "web",
        "-e",
        "BODY=hello-web",
        "-p",
        "18080:80",
        "busybox",
        "sh",
        "-c",
        WEB,
    ]));
    // From the host's own address on the bridge, and from 127.0.0.1.
    let gw = ok(d.berth(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", "web"]));
    assert_eq!(gw, "172.17.0.1");
    assert_eq!(host_get(&d, "http://127.0.0.1:18080/"), "hello-web");
    assert_eq!(host_get(&d, &format!("http://{gw}:18080/")), "hello-web");
    // From another container, through the host address.
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "busybox",
            "wget",
            "-q",
            "-O-",
            &format!("http://{gw}:18080/")
        ])),
        "hello-web"
    );
    // And the container itself on the bridge.
    let ip = ok(d.berth(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]));
    assert!(ip.starts_with("172.17.0."), "{ip}");
    assert_eq!(host_get(&d, &format!("http://{ip}/")), "hello-web");
    // Over IPv6 too, as dockerd publishes it: the userland proxy, the kernel cannot take
    // IPv6 to the container's IPv4 address.
    assert_eq!(host_get(&d, "http://[::1]:18080/"), "hello-web");
    // What users see.
    assert_eq!(
        ok(d.berth(&["port", "web"])),
        "80/tcp -> 0.0.0.0:18080\n80/tcp -> [::]:18080"
    );
    assert_eq!(
        ok(d.docker(&["port", "web"])),
        "80/tcp -> 0.0.0.0:18080\n80/tcp -> [::]:18080"
    );
    let fmt = ["ps", "--format", "{{.Names}} {{.Ports}}"];
    for ps in [d.docker(&fmt), d.berth(&fmt)] {
        assert_eq!(ok(ps), "web 0.0.0.0:18080->80/tcp, [::]:18080->80/tcp");
    }
    let ports = ok(d.docker(&["inspect", "-f", "{{json .NetworkSettings.Ports}}", "web"]));
    assert_eq!(
        ports,
        r#"{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"18080"},{"HostIp":"::","HostPort":"18080"}]}"#
    );
    // The IPv6 proxy has no kernel rule, and comes back when the daemon does.
    let rules = ruleset(&d);
    assert!(
        rules
            .lines()
            .filter(|l| l.contains("18080"))
            .all(|l| !l.contains("ip6")),
        "{rules}"
    );
    d.crash_and_restart();
    assert_eq!(host_get(&d, "http://[::1]:18080/"), "hello-web");
    assert_eq!(host_get(&d, "http://127.0.0.1:18080/"), "hello-web");
    let hosts = ok(d.berth(&["exec", "web", "cat", "/etc/hosts"]));
    assert!(hosts.lines().any(|l| l.starts_with(&ip)), "{hosts}");
    // A taken host port is a clear error at start; the running one is untouched.
    let o = d.berth(&[
        "run", "-d", "--name", "clash", "-p", "18080:80", "busybox", "sleep", "5",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("port is already allocated"),
        "{}",
        stderr(&o)
    );
    assert_eq!(host_get(&d, "http://127.0.0.1:18080/"), "hello-web");
    // Containers reach the outside through NAT: the gateway answers pings.
    ok(d.berth(&["run", "--rm", "busybox", "ping", "-c", "1", "-W", "2", &gw]));

    // Stopping closes the port and frees the address; nothing is left behind.
    ok(d.berth(&["rm", "-f", "web", "clash"]));
    for url in ["http://127.0.0.1:18080/", "http://[::1]:18080/"] {
        let o = d.host_busybox(&["timeout", "2", "busybox", "wget", "-q", "-O-", url]);
        assert!(!o.status.success(), "{url} still answers");
    }
    assert!(!ruleset(&d).contains("dport 18080"), "{}", ruleset(&d));
    assert_links(&d, &["lo", "berth0"]);
}

/// Legacy links on the default bridge, as dockerd makes them: the target's address under the
/// alias in /etc/hosts, moby's variables, `HostConfig.Links` written `/target:/name/alias`;
/// a missing target is refused at create, a stopped one at start.
#[test]
fn legacy_links_give_hosts_lines_and_variables() {
    let d = daemon();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "lkdb",
        "-e",
        "PGUSER=me",
        "--expose",
        "5432",
        "busybox",
        "sleep",
        "60",
    ]));
    let ip = ok(d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "lkdb"]));
    let short = ok(d.docker(&["inspect", "-f", "{{.Config.Hostname}}", "lkdb"]));
    let out = ok(d.docker(&[
        "run", "--rm", "--name", "lkweb", "--link", "lkdb:my-db", "busybox", "sh", "-c",
        "grep my-db /etc/hosts; env | grep ^MY_DB | sort; wget -q -T 2 -O- http://my-db:1 2>&1 | head -c 0",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("{ip}\tmy-db {short} lkdb"), "{out}");
    assert_eq!(
        lines[1..],
        [
            "MY_DB_ENV_PGUSER=me".to_owned(),
            "MY_DB_NAME=/lkweb/my-db".to_owned(),
            format!("MY_DB_PORT=tcp://{ip}:5432"),
            format!("MY_DB_PORT_5432_TCP=tcp://{ip}:5432"),
            format!("MY_DB_PORT_5432_TCP_ADDR={ip}"),
            "MY_DB_PORT_5432_TCP_PORT=5432".to_owned(),
            "MY_DB_PORT_5432_TCP_PROTO=tcp".to_owned(),
        ],
        "{out}"
    );
    // A linker's alias is among the target's names in the list, as moby lists it; `ps`
    // shows the target's own name.
    ok(d.docker(&[
        "create",
        "--name",
        "lkapp",
        "--link",
        "lkdb:my-db",
        "busybox",
        "true",
    ]));
    let listed = d
        .http(
            "GET",
            "/v1.41/containers/json?filters=%7B%22name%22%3A%5B%22lkdb%22%5D%7D",
            None,
        )
        .json();
    assert_eq!(
        listed[0]["Names"],
        serde_json::json!(["/lkapp/my-db", "/lkdb"])
    );
    assert!(
        ok(d.docker(&["ps", "--format", "{{.Names}}"]))
            .lines()
            .any(|l| l == "lkdb")
    );
    ok(d.docker(&["rm", "lkapp"]));
    // The alias resolves to the target.
    ok(d.docker(&[
        "run",
        "--rm",
        "--link",
        "lkdb:my-db",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "my-db",
    ]));
    ok(d.docker(&[
        "create", "--name", "lkx", "--link", "lkdb", "busybox", "true",
    ]));
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{json .HostConfig.Links}}", "lkx"])),
        r#"["/lkdb:/lkx/lkdb"]"#
    );
    common::assert_refused(
        &d.docker(&["create", "--link", "nosuch", "busybox", "true"]),
        1,
        "could not get container for nosuch",
    );
    ok(d.docker(&["stop", "-t", "0", "lkdb"]));
    common::assert_refused(
        &d.docker(&["start", "lkx"]),
        1,
        "Cannot link to a non running container: /lkdb AS /lkx/lkdb",
    );
    ok(d.docker(&["rm", "-f", "lkx", "lkdb"]));
}

/// On a user-defined network a link is a DNS name only the linker resolves, kept on its
/// endpoint, from `run --link` (API 1.50: the daemon moves it), from an old client's
/// `EndpointSettings.Links` and from `network connect --link`; no hosts lines, no variables.
#[test]
fn links_on_user_networks_are_the_linkers_dns_aliases() {
    let d = daemon();
    ok(d.docker(&["network", "create", "lknet"]));
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "lkt",
        "--network",
        "lknet",
        "busybox",
        "sleep",
        "60",
    ]));
    let ip = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.lknet.IPAddress}}",
        "lkt",
    ]));
    let resolve = |ctr: &str, name: &str| {
        let o = d.docker(&["exec", ctr, "nslookup", name, "127.0.0.11"]);
        let out = stdout(&o);
        out.lines()
            .skip_while(|l| !l.starts_with("Name:"))
            .find_map(|l| l.strip_prefix("Address: ").map(str::to_owned))
    };
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "lkr",
        "--network",
        "lknet",
        "--link",
        "lkt:tdb",
        "--link",
        "nothere:zz",
        "busybox",
        "sleep",
        "60",
    ]));
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{json .HostConfig.Links}} {{json .NetworkSettings.Networks.lknet.Links}}",
            "lkr",
        ])),
        r#"null ["lkt:tdb","nothere:zz"]"#
    );
    assert_eq!(resolve("lkr", "tdb").as_deref(), Some(ip.as_str()));
    assert_eq!(resolve("lkr", "tdb.lknet").as_deref(), Some(ip.as_str()));
    assert_eq!(
        resolve("lkt", "tdb"),
        None,
        "only the linker sees the alias"
    );
    assert_eq!(
        ok(d.docker(&[
            "exec",
            "lkr",
            "sh",
            "-c",
            "grep -c tdb /etc/hosts; env | grep -c ^TDB_; true"
        ]))
        .lines()
        .collect::<Vec<_>>(),
        ["0", "0"]
    );
    // An API 1.41 client puts the link on the endpoint itself.
    let body = br#"{"Image":"busybox","Cmd":["sleep","60"],"HostConfig":{"NetworkMode":"lknet"},
        "NetworkingConfig":{"EndpointsConfig":{"lknet":{"Links":["lkt:olddb"]}}}}"#;
    let r = d.http("POST", "/v1.41/containers/create?name=lko", Some(body));
    assert_eq!(r.status, 201, "{}", r.text());
    ok(d.docker(&["start", "lko"]));
    assert_eq!(resolve("lko", "olddb").as_deref(), Some(ip.as_str()));
    // network connect --link.
    ok(d.docker(&["run", "-d", "--name", "lkc", "busybox", "sleep", "60"]));
    ok(d.docker(&["network", "connect", "--link", "lkt:conndb", "lknet", "lkc"]));
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{json .NetworkSettings.Networks.lknet.Links}}",
            "lkc"
        ])),
        r#"["lkt:conndb"]"#
    );
    assert_eq!(resolve("lkc", "conndb").as_deref(), Some(ip.as_str()));
    ok(d.docker(&["rm", "-f", "lkr", "lko", "lkc", "lkt"]));
    ok(d.docker(&["network", "rm", "lknet"]));
}

/// `--mac-address` (the endpoint's `MacAddress` from API 1.44, `Config.MacAddress` before)
/// sets the container's interface address; a bad one or the host's network is refused.
#[test]
fn mac_addresses_are_set_as_asked() {
    let d = daemon();
    assert_eq!(
        ok(d.docker(&[
            "run",
            "--rm",
            "--mac-address",
            "02:42:ac:11:00:99",
            "busybox",
            "cat",
            "/sys/class/net/eth0/address",
        ])),
        "02:42:ac:11:00:99"
    );
    let r = d.http(
        "POST",
        "/v1.41/containers/create?name=oldmac",
        Some(br#"{"Image":"busybox","Cmd":["sleep","30"],"MacAddress":"02:42:ac:11:00:98"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    ok(d.docker(&["start", "oldmac"]));
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.bridge.MacAddress}}",
            "oldmac"
        ])),
        "02:42:ac:11:00:98"
    );
    ok(d.docker(&["rm", "-f", "oldmac"]));
    common::assert_refused(
        &d.docker(&[
            "run",
            "--rm",
            "--network",
            "host",
            "--mac-address",
            "02:42:ac:11:00:99",
            "busybox",
            "true",
        ]),
        125,
        "conflicting options: mac-address and the network mode",
    );
    let r = d.http(
        "POST",
        "/v1.41/containers/create",
        Some(br#"{"Image":"busybox","Cmd":["true"],"MacAddress":"zz:zz"}"#),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["message"], "invalid MAC address: zz:zz");
}

/// `stats` carries the counters of the container's own interfaces (not `lo`), as dockerd;
/// a container without its own network has none.
#[test]
fn stats_count_network_traffic() {
    let d = daemon();
    ok(d.berth(&["run", "-d", "--name", "talker", "busybox", "sleep", "60"]));
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "mute",
        "--network",
        "none",
        "busybox",
        "sleep",
        "60",
    ]));
    let gw = ok(d.berth(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", "talker"]));
    ok(d.berth(&["exec", "talker", "ping", "-c", "2", "-W", "2", &gw]));
    let stats = |name: &str| {
        d.http(
            "GET",
            &format!("/v1.41/containers/{name}/stats?stream=false"),
            None,
        )
        .json()
    };
    let v = stats("talker");
    let nets = v["networks"].as_object().expect("networks");
    assert_eq!(nets.keys().collect::<Vec<_>>(), ["eth0"], "{v}");
    assert!(
        v["networks"]["eth0"]["tx_packets"].as_u64().unwrap() >= 2,
        "{v}"
    );
    assert!(
        v["networks"]["eth0"]["rx_bytes"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert!(stats("mute").get("networks").is_none());
    // What `docker stats` makes of it.
    let io = ok(d.docker(&["stats", "--no-stream", "--format", "{{.NetIO}}", "talker"]));
    assert!(!io.starts_with("0B / 0B"), "{io}");
    ok(d.berth(&["rm", "-f", "talker", "mute"]));
}

#[test]
fn publish_all_and_ranges_take_host_ports() {
    let d = daemon();
    image_with_expose(&d);
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "pa",
        "-P",
        "-p",
        "127.0.0.1:18090-18091:80-81",
        "exposed",
    ]));
    let port = ok(d.berth(&["port", "pa", "8080/tcp"]));
    let host_port: u16 = port.rsplit(':').next().unwrap().parse().unwrap();
    assert!(host_port >= 1024, "an ephemeral port: {port}");
    assert_eq!(
        host_get(&d, &format!("http://127.0.0.1:{host_port}/")),
        "exposed"
    );
    assert_eq!(ok(d.berth(&["port", "pa", "80"])), "127.0.0.1:18090");
    assert_eq!(ok(d.berth(&["port", "pa", "81"])), "127.0.0.1:18091");
    // Bound to 127.0.0.1 only: the bridge address does not answer.
    let o = d.host_busybox(&[
        "timeout",
        "2",
        "busybox",
        "wget",
        "-q",
        "-O-",
        "http://172.17.0.1:18090/",
    ]);
    assert!(!o.status.success());
}

/// An image that serves "exposed" on 8080 and EXPOSEs it.
fn image_with_expose(d: &Daemon) {
    ok(d.berth(&[
        "run",
        "--name",
        "mk",
        "busybox",
        "sh",
        "-c",
        "mkdir /www && echo exposed > /www/index.html",
    ]));
    ok(d.berth(&[
        "commit",
        "-c",
        "EXPOSE 8080",
        "-c",
        r#"CMD ["httpd","-f","-p","8080","-h","/www"]"#,
        "mk",
        "exposed",
    ]));
    ok(d.berth(&["rm", "mk"]));
}

#[test]
fn user_networks_resolve_names_and_keep_apart() {
    let d = daemon();
    ok(d.berth(&["network", "create", "--subnet", "10.77.0.0/24", "front"]));
    ok(d.berth(&["network", "create", "back"]));
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "api",
        "--network",
        "front",
        "--network-alias",
        "apisvc",
        "-e",
        "BODY=api-here",
        "busybox",
        "sh",
        "-c",
        WEB,
    ]));
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "back",
        "busybox",
        "sleep",
        "300",
    ]));
    let api_ip = ok(d.berth(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.front.IPAddress}}",
        "api",
    ]));
    assert_eq!(api_ip, "10.77.0.2");
    let short = ok(d.berth(&["inspect", "-f", "{{.Id}}", "api"]))[..12].to_owned();
    // By name, alias, name.network and short id; the resolver is the embedded one.
    for name in ["api", "apisvc", "api.front", short.as_str()] {
        let got = ok(d.berth(&[
            "run",
            "--rm",
            "--network",
            "front",
            "busybox",
            "timeout",
            "3",
            "wget",
            "-q",
            "-O-",
            &format!("http://{name}/"),
        ]));
        assert_eq!(got, "api-here", "by {name}");
    }
    let resolv = ok(d.berth(&[
        "run",
        "--rm",
        "--network",
        "front",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]));
    assert!(resolv.starts_with("nameserver 127.0.0.11"), "{resolv}");
    // Another network cannot reach it, by name or by address.
    let o = d.berth(&["exec", "db", "ping", "-c", "1", "-W", "1", "api"]);
    assert!(!o.status.success());
    let o = d.berth(&["exec", "db", "ping", "-c", "1", "-W", "1", &api_ip]);
    assert!(!o.status.success(), "cross-network traffic must be dropped");
    // Nor can the default bridge.
    let o = d.berth(&[
        "run", "--rm", "busybox", "ping", "-c", "1", "-W", "1", &api_ip,
    ]);
    assert!(!o.status.success());

    // connect: db joins front on a live interface and reaches api by name; disconnect ends it.
    ok(d.berth(&["network", "connect", "--alias", "database", "front", "db"]));
    ok(d.berth(&["exec", "db", "ping", "-c", "1", "-W", "2", "api"]));
    ok(d.berth(&["exec", "api", "ping", "-c", "1", "-W", "2", "database"]));
    let nets = ok(d.berth(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        "db",
    ]));
    assert_eq!(nets, "back front");
    ok(d.berth(&["network", "disconnect", "front", "db"]));
    let o = d.berth(&["exec", "db", "ping", "-c", "1", "-W", "1", &api_ip]);
    assert!(!o.status.success());

    // A network in use cannot go; once empty it goes with its bridge and rules.
    let o = d.berth(&["network", "rm", "front"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("has active endpoints"),
        "{}",
        stderr(&o)
    );
    ok(d.berth(&["rm", "-f", "api", "db"]));
    ok(d.berth(&["network", "rm", "front", "back"]));
    assert_links(&d, &["lo", "berth0"]);
    let rules = ruleset(&d);
    assert!(
        !rules.contains("br-") && !rules.contains("10.77."),
        "{rules}"
    );
}

#[test]
fn internal_networks_have_no_way_out() {
    let d = daemon();
    ok(d.berth(&["network", "create", "--internal", "sealed"]));
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "in1",
        "--network",
        "sealed",
        "busybox",
        "sleep",
        "300",
    ]));
    let gw = ok(d.berth(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        "sealed",
    ]));
    let route = ok(d.berth(&["exec", "in1", "ip", "route"]));
    assert!(!route.contains("default"), "{route}");
    // Not even the host: the bridge's own address is not reachable across the seal.
    let o = d.berth(&["exec", "in1", "ping", "-c", "1", "-W", "1", "172.17.0.1"]);
    assert!(!o.status.success());
    // Inside the network, containers still talk.
    ok(d.berth(&[
        "run",
        "--rm",
        "--network",
        "sealed",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "in1",
    ]));
    assert!(gw.starts_with("172."), "{gw}");
}

#[test]
fn container_mode_shares_a_network_namespace() {
    let d = daemon();
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "base",
        "-e",
        "BODY=shared",
        "busybox",
        "sh",
        "-c",
        WEB,
    ]));
    let base_ip = ok(d.berth(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "base"]));
    let out = ok(d.berth(&[
        "run",
        "--rm",
        "--network",
        "container:base",
        "busybox",
        "sh",
        "-c",
        "ip -4 addr show eth0 | grep -o 'inet [0-9.]*'; timeout 3 wget -q -O- http://127.0.0.1/",
    ]));
    assert_eq!(out, format!("inet {base_ip}\nshared"));
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "container:nosuch",
        "busybox",
        "true",
    ]);
    assert!(!o.status.success());
    // none and host still work as before.
    let out = ok(d.berth(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "link",
    ]));
    assert_eq!(out.lines().count(), 1, "loopback only: {out}");
}

#[test]
fn bad_network_input_is_refused_and_changes_nothing() {
    let d = daemon();
    ok(d.berth(&["network", "create", "--subnet", "10.88.0.0/16", "one"]));
    let before = ok(d.berth(&["network", "ls", "-q"]));
    for (args, msg) in [
        (
            &["network", "create", "--subnet", "10.88.1.0/24", "two"][..],
            "overlaps",
        ),
        (
            &["network", "create", "--subnet", "10.99.0.0/33", "two"][..],
            "invalid",
        ),
        (
            &["network", "create", "--subnet", "bogus", "two"][..],
            "invalid",
        ),
        (
            &["network", "ls", "--filter", "type=bogus"][..],
            "invalid filter: 'type'='bogus'",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.89.0.0/24",
                "--gateway",
                "10.90.0.1",
                "two",
            ][..],
            "subnet",
        ),
        (&["network", "create", "one"][..], "already exists"),
        (
            &["network", "create", "-d", "weird", "two"][..],
            "not found",
        ),
        (&["network", "rm", "bridge"][..], "pre-defined"),
        // (The container is looked up first, as dockerd does.)
        (
            &["network", "connect", "missing", "x"][..],
            "No such container: x",
        ),
    ] {
        let o = d.berth(args);
        assert!(!o.status.success(), "{args:?} must fail");
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(ok(d.berth(&["network", "ls", "-q"])), before);
    let o = d.berth(&["run", "--rm", "--network", "missing", "busybox", "true"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("network missing not found"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "one",
        "--ip",
        "10.77.0.5",
        "busybox",
        "true",
    ]);
    assert!(!o.status.success());
    let out = ok(d.berth(&[
        "run",
        "--rm",
        "--network",
        "one",
        "--ip",
        "10.88.7.7",
        "busybox",
        "ip",
        "-4",
        "-o",
        "addr",
        "show",
        "eth0",
    ]));
    assert!(out.contains("10.88.7.7/16"), "{out}");
    assert_eq!(ok(d.berth(&["ps", "-aq"])), "");
}

#[test]
fn networking_survives_a_daemon_restart() {
    let mut d = daemon();
    ok(d.berth(&["network", "create", "app"]));
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "svc",
        "--network",
        "app",
        "-p",
        "18100:80",
        "-e",
        "BODY=still-here",
        "busybox",
        "sh",
        "-c",
        WEB,
    ]));
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "cli",
        "--network",
        "app",
        "busybox",
        "sleep",
        "300",
    ]));
    assert_eq!(host_get(&d, "http://127.0.0.1:18100/"), "still-here");
    d.crash_and_restart();
    assert_eq!(host_get(&d, "http://127.0.0.1:18100/"), "still-here");
    // The embedded DNS came back for the running containers.
    assert_eq!(
        ok(d.berth(&[
            "exec",
            "cli",
            "timeout",
            "3",
            "wget",
            "-q",
            "-O-",
            "http://svc/"
        ])),
        "still-here"
    );
    // The port stays reserved: a new container cannot take it.
    let o = d.berth(&["run", "-d", "-p", "18100:80", "busybox", "true"]);
    assert!(
        stderr(&o).contains("port is already allocated"),
        "{}",
        stderr(&o)
    );
    // A new container gets a fresh address, not one a running container holds.
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "third",
        "--network",
        "app",
        "busybox",
        "sleep",
        "300",
    ]));
    let ips: Vec<String> = ["svc", "cli", "third"]
        .iter()
        .map(|c| {
            ok(d.berth(&[
                "inspect",
                "-f",
                "{{.NetworkSettings.Networks.app.IPAddress}}",
                c,
            ]))
        })
        .collect();
    assert!(ips[0] != ips[2] && ips[1] != ips[2], "{ips:?}");
}

#[test]
fn docker_cli_network_commands() {
    let d = daemon();
    let id = ok(d.docker(&[
        "network",
        "create",
        "--subnet",
        "10.66.0.0/24",
        "--label",
        "team=a",
        "dnet",
    ]));
    assert_eq!(id.len(), 64);
    let ls = ok(d.docker(&[
        "network",
        "ls",
        "--format",
        "{{.Name}} {{.Driver}} {{.Scope}}",
    ]));
    assert_eq!(
        ls,
        "bridge bridge local\ndnet bridge local\nhost host local\nnone null local"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(d.docker(&["network", "inspect", "dnet"]))).unwrap();
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "10.66.0.0/24");
    // The config as given (no gateway, as dockerd shows it); the gateway is the first address.
    assert!(v[0]["IPAM"]["Config"][0].get("Gateway").is_none(), "{v}");
    assert_eq!(v[0]["Labels"]["team"], "a");
    assert_eq!(v[0]["Driver"], "bridge");

    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "ws",
        "--network",
        "dnet",
        "-p",
        "18200:80",
        "-e",
        "BODY=via-docker",
        "busybox",
        "sh",
        "-c",
        WEB,
    ]));
    assert_eq!(host_get(&d, "http://127.0.0.1:18200/"), "via-docker");
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.dnet.Gateway}}",
            "ws"
        ])),
        "10.66.0.1"
    );
    assert_eq!(
        ok(d.docker(&["port", "ws", "80"])),
        "0.0.0.0:18200\n[::]:18200"
    );
    ok(d.docker(&["run", "-d", "--name", "xs", "busybox", "sleep", "300"]));
    ok(d.docker(&["network", "connect", "dnet", "xs"]));
    assert_eq!(
        ok(d.docker(&[
            "exec",
            "xs",
            "timeout",
            "3",
            "wget",
            "-q",
            "-O-",
            "http://ws/"
        ])),
        "via-docker"
    );
    let members = ok(d.docker(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}} {{end}}",
        "dnet",
    ]));
    let mut members: Vec<&str> = members.split_whitespace().collect();
    members.sort();
    assert_eq!(members, ["ws", "xs"]);
    ok(d.docker(&["network", "disconnect", "dnet", "xs"]));
    let o = d.docker(&[
        "exec",
        "xs",
        "timeout",
        "2",
        "wget",
        "-q",
        "-O-",
        "http://ws/",
    ]);
    assert!(!o.status.success());
    let o = d.docker(&["network", "rm", "dnet"]);
    assert!(!o.status.success());
    ok(d.docker(&["rm", "-f", "ws", "xs"]));
    assert_eq!(ok(d.docker(&["network", "rm", "dnet"])), "dnet");
    let o = d.docker(&["network", "inspect", "dnet"]);
    assert!(!o.status.success());
    // Events for the network's life.
    let until = (common::unix_now() + 1).to_string();
    let ev = ok(d.docker(&[
        "events",
        "--since",
        "1m",
        "--until",
        &until,
        "--filter",
        "type=network",
        "--format",
        "{{.Action}}",
    ]));
    assert!(
        ev.starts_with("create\n") && ev.ends_with("destroy"),
        "{ev}"
    );
    // Only dnet's: the default bridge's connect of xs is not among them.
    let ev = ok(d.docker(&[
        "events",
        "--since",
        "1m",
        "--until",
        &until,
        "--filter",
        "network=dnet",
        "--format",
        "{{.Action}}",
    ]));
    assert_eq!(
        ev,
        "create\nconnect\nconnect\ndisconnect\ndisconnect\ndestroy"
    );
    // prune takes unused custom networks only.
    ok(d.docker(&["network", "create", "spare"]));
    let out = ok(d.docker(&["network", "prune", "-f"]));
    assert_eq!(out, "Deleted Networks:\nspare");
    assert_links(&d, &["lo", "berth0"]);
}

/// Another machine on the daemon's "LAN": a namespace joined to the daemon's by a veth pair,
/// 192.0.2.2 on its side and 192.0.2.1 on the daemon's. Removed (with its link) on drop.
struct OutsideHost {
    ns: String,
}

impl OutsideHost {
    fn new(d: &Daemon) -> Self {
        let dns = d.netns.clone().unwrap();
        let ns = format!("{dns}-out");
        let sh = |cmd: &str| {
            let st = std::process::Command::new("sh")
                .args(["-c", cmd])
                .status()
                .unwrap();
            assert!(st.success(), "{cmd}");
        };
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(std::process::Stdio::null())
            .status();
        sh(&format!("ip netns add {ns}"));
        let host = OutsideHost { ns: ns.clone() };
        sh(&format!(
            "ip -n {dns} link add lan0 type veth peer name lan1 netns {ns} && \
             ip -n {dns} addr add 192.0.2.1/24 dev lan0 && ip -n {dns} link set lan0 up && \
             ip -n {ns} addr add 192.0.2.2/24 dev lan1 && ip -n {ns} link set lan1 up && \
             ip -n {ns} link set lo up"
        ));
        host
    }

    fn busybox(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = std::process::Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.ns))
            .arg("busybox")
            .args(args);
        common::run_command(cmd, None)
    }
}

impl Drop for OutsideHost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .status();
    }
}

#[test]
fn other_hosts_reach_published_ports_and_containers_reach_out() {
    let d = daemon();
    let out = OutsideHost::new(&d);
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "18400:80",
        "-e",
        "BODY=from-lan",
        "busybox",
        "sh",
        "-c",
        WEB,
    ]));
    // Another host, through the daemon host's LAN address (DNAT in prerouting).
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        let o = out.busybox(&[
            "timeout",
            "3",
            "busybox",
            "wget",
            "-q",
            "-O-",
            "http://192.0.2.1:18400/",
        ]);
        if o.status.success() || Instant::now() > deadline {
            break stdout(&o).trim().to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(got, "from-lan");
    // A container reaches the other host, masqueraded behind the daemon host's address.
    ok(d.berth(&[
        "run",
        "--rm",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "192.0.2.2",
    ]));
    // The other host cannot reach a container's unpublished port directly.
    let ip = ok(d.berth(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]));
    let o = out.busybox(&[
        "sh",
        "-c",
        &format!(
            "ip route add 172.17.0.0/16 via 192.0.2.1 && timeout 2 busybox wget -q -O- http://{ip}/"
        ),
    ]);
    assert!(
        !o.status.success(),
        "unpublished container port reached from outside"
    );
}

#[test]
fn ipv6_networks_give_v6_addresses_and_v4_ones_none() {
    let d = daemon();
    ok(d.berth(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd00:77::/64",
        "six",
    ]));
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "v6a",
        "--network",
        "six",
        "busybox",
        "sleep",
        "300",
    ]));
    let v6 = ok(d.berth(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.six.GlobalIPv6Address}}",
        "v6a",
    ]));
    assert!(v6.starts_with("fd00:77::"), "{v6}");
    let v4 = ok(d.berth(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.six.IPAddress}}",
        "v6a",
    ]));
    assert!(!v4.is_empty(), "an IPv4 address too");
    ok(d.berth(&[
        "run",
        "--rm",
        "--network",
        "six",
        "busybox",
        "ping",
        "-6",
        "-c",
        "1",
        "-W",
        "2",
        &v6,
    ]));
    // IPv4-only networks: no IPv6 on eth0 at all (not even link-local).
    let addrs = ok(d.berth(&[
        "run", "--rm", "busybox", "ip", "-6", "-o", "addr", "show", "eth0",
    ]));
    assert_eq!(addrs, "", "IPv6 leaked onto an IPv4-only network");
    ok(d.berth(&["rm", "-f", "v6a"]));
    ok(d.berth(&["network", "rm", "six"]));
}

#[test]
fn without_the_default_bridge_user_networks_still_work() {
    let mut d = daemon();
    d.write_config(r#"{"bridge": "none"}"#);
    d.crash_and_restart();
    let names = ok(d.berth(&["network", "ls", "--format", "{{.Name}}"]));
    assert_eq!(names, "host\nnone");
    // The default network is loopback only, and info says so.
    let links = ok(d.berth(&["run", "--rm", "busybox", "ip", "-o", "link"]));
    assert_eq!(links.lines().count(), 1, "{links}");
    let info = stderr(&d.berth(&["info"])) + &stdout(&d.berth(&["info"]));
    assert!(info.contains("default bridge network is off"), "{info}");
    ok(d.berth(&["network", "create", "mine"]));
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "mine",
        "busybox",
        "sleep",
        "300",
    ]));
    ok(d.berth(&[
        "run",
        "--rm",
        "--network",
        "mine",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "srv",
    ]));
}

#[test]
fn networks_are_found_by_id_prefix_and_extra_endpoints_come_after() {
    let d = daemon();
    let id = ok(d.berth(&["network", "create", "--subnet", "10.55.0.0/24", "byid"]));
    ok(d.berth(&["network", "create", "--subnet", "10.56.0.0/24", "second"]));
    let short = &id[..12];
    // The mode's network gets eth0 and the default route even when named by id.
    let out = ok(d.berth(&[
        "run",
        "--rm",
        "--network",
        short,
        "busybox",
        "sh",
        "-c",
        "ip -4 -o addr show eth0 | grep -o '10\\.55\\.[0-9.]*'; ip route | grep default",
    ]));
    assert!(out.starts_with("10.55.0."), "{out}");
    assert!(out.contains("default via 10.55.0.1"), "{out}");
    let name = ok(d.berth(&["network", "inspect", "-f", "{{.Name}}", short]));
    assert_eq!(name, "byid");
    // A second network joined at create (the API's EndpointsConfig) is eth1, no default route.
    let body = br#"{"Image":"busybox","Cmd":["sleep","300"],"HostConfig":{"NetworkMode":"byid"},
        "NetworkingConfig":{"EndpointsConfig":{"byid":{},"second":{"Aliases":["two"]}}}}"#;
    let r = d.http("POST", "/v1.50/containers/create?name=multi", Some(body));
    assert_eq!(r.status, 201, "{}", r.text());
    ok(d.berth(&["start", "multi"]));
    let addrs = ok(d.berth(&[
        "exec",
        "multi",
        "sh",
        "-c",
        "ip -4 -o addr show eth1 | grep -o '10\\.56\\.[0-9.]*'; ip route | grep -c default",
    ]));
    assert!(addrs.starts_with("10.56.0."), "{addrs}");
    assert!(addrs.ends_with("\n1"), "one default route: {addrs}");
    ok(d.berth(&[
        "run",
        "--rm",
        "--network",
        "second",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "two",
    ]));
}

#[test]
fn after_a_reboot_networks_come_back_and_always_containers_serve_again() {
    let mut d = daemon();
    ok(d.berth(&["network", "create", "--subnet", "10.44.0.0/24", "persist"]));
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "svc",
        "--restart",
        "always",
        "--network",
        "persist",
        "-p",
        "18700:80",
        "-e",
        "BODY=after-reboot",
        "busybox",
        "sh",
        "-c",
        WEB,
    ]));
    assert_eq!(host_get(&d, "http://127.0.0.1:18700/"), "after-reboot");
    // The machine's network (the namespace) starts empty: bridges and rules are made again.
    d.reboot();
    assert_eq!(host_get(&d, "http://127.0.0.1:18700/"), "after-reboot");
    let ip = ok(d.berth(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.persist.IPAddress}}",
        "svc",
    ]));
    assert!(ip.starts_with("10.44.0."), "{ip}");
    let names = ok(d.berth(&["network", "ls", "--format", "{{.Name}}"]));
    assert!(names.contains("persist"), "{names}");
}

/// A host whose iptables FORWARD policy is DROP (as Docker leaves it) drops forwarded
/// container traffic whatever Berth's own table says: `info` warns, with the way out.
#[test]
fn info_warns_when_the_hosts_forward_policy_drops() {
    let mut d = daemon();
    let ns = d.netns.clone().unwrap();
    let st = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "iptables", "-P", "FORWARD", "DROP"])
        .status()
        .unwrap();
    assert!(st.success(), "iptables in the test namespace");
    d.crash_and_restart();
    let info = stderr(&d.berth(&["info"])) + &stdout(&d.berth(&["info"]));
    assert!(info.contains("FORWARD policy is DROP"), "{info}");
    assert!(info.contains("DOCKER-USER"), "{info}");
}

/// Addresses are handed out lowest first, as dockerd's are: one freed by a removed container
/// is the next one given (once its old interface is gone, a moment after the stop), so
/// scripts that expect `172.17.0.2` for the first container of a run get it.
#[test]
fn a_freed_address_is_given_again() {
    let d = daemon();
    let ip = |name: &str| ok(d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", name]));
    for name in ["first", "second"] {
        ok(d.docker(&["run", "-d", "--name", name, "busybox", "sleep", "1000"]));
    }
    assert_eq!(ip("first"), "172.17.0.2");
    assert_eq!(ip("second"), "172.17.0.3");
    ok(d.docker(&["rm", "-f", "first"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        ok(d.docker(&["run", "-d", "--name", "third", "busybox", "sleep", "1000"]));
        let got = ip("third");
        assert_ne!(got, "172.17.0.3");
        if got == "172.17.0.2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "172.17.0.2 was not given again (last: {got})"
        );
        ok(d.docker(&["rm", "-f", "third"]));
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(d.docker(&["rm", "-f", "second", "third"]));
}
