//! The real docker CLI (`/usr/local/bin/docker`) against a test berthd: the commands users run
//! every day, asserting their output.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Daemon, ok, stderr, stdout};

fn daemon() -> Daemon {
    let d = Daemon::start();
    d.import_busybox();
    d
}

#[test]
fn run_rm_prints_and_leaves_nothing() {
    let d = daemon();
    assert_eq!(
        ok(d.docker(&["run", "--rm", "busybox", "echo", "hi"])),
        "hi"
    );
    assert_eq!(ok(d.docker(&["ps", "-aq"])), "");
}

#[test]
fn run_exit_codes_follow_docker() {
    let d = daemon();
    let o = d.docker(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let o = d.docker(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    let o = d.docker(&["run", "--rm", "no-such-image-here"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let o = d.docker(&["run", "--rm", "--bogus-flag", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
}

#[test]
fn detached_lifecycle_ps_logs_exec_inspect_stop_rm() {
    let d = daemon();
    let id = ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo started; echo oops >&2; while true; do sleep 1; done",
    ]));
    assert_eq!(id.len(), 64, "{id}");
    let ps = ok(d.docker(&["ps", "--format", "{{.Names}} {{.Status}}"]));
    assert!(ps.starts_with("web Up"), "{ps}");
    // Logs, both streams, separated.
    let mut logs = String::new();
    for _ in 0..50 {
        let o = d.docker(&["logs", "web"]);
        logs = stdout(&o) + "|" + &stderr(&o);
        if logs.contains("started") && logs.contains("oops") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(logs, "started\n|oops\n");
    assert_eq!(
        ok(d.docker(&["exec", "web", "sh", "-c", "echo $((6*7))"])),
        "42"
    );
    let o = d.docker(&["exec", "web", "sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5));
    // A user the image lacks: the message, and 126, as dockerd.
    let o = d.docker(&["exec", "-u", "nouser", "web", "id"]);
    assert_eq!(o.status.code(), Some(126), "{}{}", stdout(&o), stderr(&o));
    assert!(
        (stdout(&o) + &stderr(&o)).contains("unable to find user nouser"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    // A command that does not exist: Docker's message on the stream, exit code 127.
    let o = d.docker(&["exec", "web", "no-such-cmd"]);
    assert_eq!(o.status.code(), Some(127), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("executable file not found"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = d.docker(&["exec", "web", "/etc"]);
    assert_eq!(o.status.code(), Some(126), "{}{}", stdout(&o), stderr(&o));
    let state = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Running}} {{.Name}}",
        "web",
    ]));
    assert_eq!(state, "running true /web");
    let pid: i64 = ok(d.docker(&["inspect", "-f", "{{.State.Pid}}", "web"]))
        .parse()
        .unwrap();
    assert!(pid > 0);
    assert_eq!(ok(d.docker(&["stop", "-t", "1", "web"])), "web");
    let state = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "web",
    ]));
    assert_eq!(state, "exited 137");
    assert_eq!(ok(d.docker(&["rm", "web"])), "web");
    let o = d.docker(&["inspect", "web"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("No such object: web") || stderr(&o).contains("No such container"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn logs_follow_streams_until_exit() {
    let d = daemon();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "follow",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.2; done",
    ]));
    let out = ok(d.docker(&["logs", "-f", "follow"]));
    assert_eq!(out, "line1\nline2\nline3");
    let code = ok(d.docker(&["wait", "follow"]));
    assert_eq!(code, "0");
}

#[test]
fn rm_force_kills_running_container() {
    let d = daemon();
    ok(d.docker(&["run", "-d", "--name", "victim", "busybox", "sleep", "1000"]));
    let o = d.docker(&["rm", "victim"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot remove a running container"),
        "{}",
        stderr(&o)
    );
    assert_eq!(ok(d.docker(&["rm", "-f", "victim"])), "victim");
    assert_eq!(ok(d.docker(&["ps", "-aq"])), "");
    assert!(
        d.cgroup_pids().is_empty(),
        "processes left: {:?}",
        d.cgroup_pids()
    );
}

#[test]
fn default_isolation_matches_docker() {
    let d = daemon();
    let script = "echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); hostname; grep -E '^(CapBnd|Seccomp):' /proc/self/status; \
                  cat /proc/keys /proc/kcore 2>/dev/null | wc -c; grep ' /proc/sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; \
                  grep ' / ' /proc/mounts | cut -d' ' -f3";
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "--hostname",
        "box",
        "busybox",
        "sh",
        "-c",
        script,
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("pid1=sh -c {script}"));
    assert_eq!(lines[1], "box");
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["CapBnd:", "00000000a80425fb"]
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["Seccomp:", "2"]
    );
    // /proc/keys (and /proc/kcore where the kernel has it) are masked with /dev/null.
    assert_eq!(lines[4].trim(), "0", "masked paths must read empty: {out}");
    assert_eq!(lines[5], "ro", "/proc/sys must be read-only: {out}");
    assert_eq!(*lines.last().unwrap(), "overlay");
}

/// The overlay options of a container's root, from the host's mountinfo.
fn rootfs_overlay_options(d: &Daemon, id: &str) -> String {
    let root = d.dir.join("data/containers").join(id).join("rootfs");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .rev()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            (Path::new(f[4]) == root && f[sep + 1] == "overlay").then(|| f[sep + 3].to_owned())
        })
        .unwrap_or_else(|| panic!("no overlay on {}: {info}", root.display()))
}

#[test]
fn a_restarted_auto_remove_container_stays_with_its_files_on_a_volatile_root() {
    let d = daemon();
    let script = "cat /f 2>/dev/null; echo run >> /f; exec sleep 1000";
    let rm = ok(d.docker(&[
        "run", "-d", "--rm", "--name", "rmc", "busybox", "sh", "-c", script,
    ]));
    let kept = ok(d.docker(&["run", "-d", "--name", "kept", "busybox", "sleep", "1000"]));
    // An auto-remove container's upper goes with it: overlay never syncs it (the unmount of a
    // durable overlay syncs the whole upper filesystem). A kept container's stays durable.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .split(['.', '-'])
        .map(|x| x.trim().parse::<u32>().unwrap_or(0));
    if (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (5, 10) {
        assert!(rootfs_overlay_options(&d, &rm).contains("volatile"));
    }
    assert!(!rootfs_overlay_options(&d, &kept).contains("volatile"));
    // As Docker: `restart` keeps an auto-remove container, and its filesystem (the root is
    // mounted again over the same upper, which overlay marks after a volatile mount).
    ok(d.docker(&["restart", "-t", "1", "rmc"]));
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{.State.Running}}", "rmc"])),
        "true"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok(d.docker(&["logs", "rmc"])) != "run" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        ok(d.docker(&["logs", "rmc"])),
        "run",
        "the second run reads the first's file"
    );
    // Its restart policy stays "no", in Docker's words.
    let o = d.docker(&["update", "--restart", "always", "rmc"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!(
            "Cannot update container {rm}: Restart policy cannot be updated because AutoRemove is enabled"
        )),
        "{}",
        stderr(&o)
    );
    // A stop still removes it.
    ok(d.docker(&["stop", "-t", "1", "rmc"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.docker(&["inspect", "rmc"]).status.success() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !d.docker(&["inspect", "rmc"]).status.success(),
        "stopped --rm container remains"
    );
    ok(d.docker(&["rm", "-f", "kept"]));
}

/// CVE-2019-14271's class: an image with `ENV HOME=` and its own NSS module. runc fills in an
/// empty HOME from the container's passwd file with its own parser; a runtime that asks glibc
/// instead (libcontainer's init does, for an empty HOME) loads the module the image's
/// nsswitch.conf names, inside the container, before the capabilities and the seccomp filter
/// of the container's process are in place.
#[test]
fn an_image_cannot_get_its_nss_module_loaded_before_exec() {
    let d = daemon();
    let src = d.dir.join("evil.c");
    std::fs::write(
        &src,
        "#include <fcntl.h>\n#include <unistd.h>\n\
         __attribute__((constructor)) static void pwn(void) {\n\
           int fd = open(\"/pwned\", O_CREAT | O_WRONLY, 0644);\n\
           if (fd >= 0) close(fd);\n}\n",
    )
    .unwrap();
    let so = d.dir.join("libnss_evil.so.2");
    let cc = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .output()
        .expect("cc (the C compiler Rust links with)");
    assert!(cc.status.success(), "cc: {}", stderr(&cc));
    let conf = d.dir.join("nsswitch.conf");
    std::fs::write(&conf, "passwd: evil files\ngroup: evil files\n").unwrap();
    ok(d.docker(&[
        "run",
        "--name",
        "mk",
        "busybox",
        "mkdir",
        "-p",
        "/lib/x86_64-linux-gnu",
    ]));
    let lib = "mk:/lib/x86_64-linux-gnu/libnss_evil.so.2";
    ok(d.docker(&["cp", so.to_str().unwrap(), lib]));
    ok(d.docker(&["cp", conf.to_str().unwrap(), "mk:/etc/nsswitch.conf"]));
    ok(d.docker(&["commit", "--change", "ENV HOME=", "mk", "evil"]));
    let script = "echo home=$HOME; ls /pwned 2>/dev/null || echo clean";
    let out = ok(d.docker(&["run", "--rm", "evil", "sh", "-c", script]));
    assert_eq!(
        out, "home=/root\nclean",
        "the image's NSS module ran before exec"
    );
    let out = ok(d.docker(&[
        "run", "--rm", "-e", "HOME=", "-u", "nobody", "evil", "sh", "-c", script,
    ]));
    assert_eq!(
        out, "home=/home\nclean",
        "the home of nobody's passwd entry"
    );
    // An exec with an empty HOME gets the exec user's home too.
    ok(d.docker(&["run", "-d", "--name", "ev", "evil", "sleep", "1000"]));
    let out = ok(d.docker(&[
        "exec", "-e", "HOME=", "-u", "nobody", "ev", "sh", "-c", script,
    ]));
    assert_eq!(out, "home=/home\nclean");
    ok(d.docker(&["rm", "-f", "mk", "ev"]));
}

/// Behaviour checked side by side against dockerd 20.10 (`../shared/peers`), through the docker
/// CLI: working directories, `--entrypoint ""`, supplementary groups, and the wording of the
/// usual refusals.
#[test]
fn details_match_dockerd() {
    let d = daemon();
    // A missing working directory is made (root's, 0755), through symlinks inside the root;
    // a file in the way is refused.
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "-u",
        "nobody",
        "-w",
        "/made/./x/../here",
        "busybox",
        "sh",
        "-c",
        "pwd; stat -c '%U %a' /made/here",
    ]));
    assert_eq!(out, "/made/here\nroot 755");
    let o = d.docker(&["run", "--rm", "-w", "/etc/passwd", "busybox", "pwd"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("Cannot mkdir: /etc/passwd is not a directory"),
        "{}",
        stderr(&o)
    );
    // `--entrypoint ""`: no entrypoint; then the image's cmd does not apply either.
    assert_eq!(
        ok(d.docker(&["run", "--rm", "--entrypoint", "", "busybox", "echo", "hi"])),
        "hi"
    );
    let o = d.docker(&["run", "--rm", "--entrypoint", "", "busybox"]);
    assert!(
        stderr(&o).contains("No command specified"),
        "{}",
        stderr(&o)
    );
    // The primary group is a supplementary group too.
    for (user, want) in [
        ("1234", "uid=1234 gid=0(root) groups=0(root)"),
        (
            "nobody:root",
            "uid=65534(nobody) gid=0(root) groups=0(root)",
        ),
    ] {
        assert_eq!(
            ok(d.docker(&["run", "--rm", "-u", user, "busybox", "id"])),
            want
        );
    }
    // A container that never started commits (nothing changed); Config.Env is the request's
    // variables then the image's others, and null when neither has any.
    ok(d.docker(&["create", "--name", "mk", "busybox", "true"]));
    ok(d.docker(&[
        "commit", "--change", "ENV A=1", "--change", "ENV P=/x", "mk", "envimg",
    ]));
    // (One variable: the docker CLI itself sometimes sends several in sorted order.)
    ok(d.docker(&["create", "--name", "ce", "-e", "A=9", "envimg", "true"]));
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{json .Config.Env}}", "ce"])),
        r#"["A=9","P=/x"]"#
    );
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{json .Config.Env}}", "mk"])),
        "null"
    );
    // The daemon's default log driver is written into the container's config.
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "mk"])),
        "json-file"
    );
    // ps quotes an argument that has a space, as moby's list does.
    assert_eq!(
        ok(d.docker(&[
            "ps",
            "-a",
            "--filter",
            "name=ce",
            "--format",
            "{{.Command}}"
        ])),
        "\"true\""
    );
    ok(d.docker(&["create", "--name", "qq", "busybox", "sh", "-c", "exit 2"]));
    assert_eq!(
        ok(d.docker(&[
            "ps",
            "-a",
            "--filter",
            "name=qq",
            "--format",
            "{{.Command}}"
        ])),
        "\"sh -c 'exit 2'\""
    );
    ok(d.docker(&["rm", "-f", "mk", "ce", "qq"]));
    // A start that fails leaves the container created, with the error's code and no
    // finish time (nothing ran), as dockerd.
    ok(d.docker(&["create", "--name", "nx", "busybox", "/nonexist"]));
    assert!(!d.docker(&["start", "nx"]).status.success());
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}} {{.State.FinishedAt}}",
            "nx"
        ])),
        "created 127 0001-01-01T00:00:00Z"
    );
    ok(d.docker(&["rm", "nx"]));
    // Refusals, in dockerd's words.
    let id = ok(d.docker(&["create", "--name", "c1", "busybox", "true"]));
    ok(d.docker(&["create", "--name", "c2", "busybox", "true"]));
    let o = d.docker(&["kill", "c1"]);
    assert!(
        stderr(&o).contains(&format!(
            "Cannot kill container: c1: Container {id} is not running"
        )),
        "{}",
        stderr(&o)
    );
    let o = d.docker(&["rename", "c2", "c1"]);
    assert!(
        stderr(&o).contains("Error when allocating new name: Conflict. The container name \"/c1\""),
        "{}",
        stderr(&o)
    );
    ok(d.docker(&["rm", "-f", "c1", "c2"]));
}

/// Real-time signals reach the container: `kill -s SIGRTMIN+3` (how systemd is told to stop)
/// and a `--stop-signal` of one.
#[test]
fn real_time_signals_are_delivered() {
    let d = daemon();
    let trap = "trap 'exit 7' 37; while :; do sleep 0.1; done";
    ok(d.docker(&["run", "-d", "--name", "rt1", "busybox", "sh", "-c", trap]));
    ok(d.docker(&["kill", "-s", "SIGRTMIN+3", "rt1"]));
    assert_eq!(ok(d.docker(&["wait", "rt1"])), "7");
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "rt2",
        "--stop-signal",
        "RTMIN+3",
        "busybox",
        "sh",
        "-c",
        trap,
    ]));
    ok(d.docker(&["stop", "-t", "10", "rt2"]));
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{.State.ExitCode}}", "rt2"])),
        "7"
    );
    ok(d.docker(&["rm", "-f", "rt1", "rt2"]));
}

/// More of what the same docker commands show against dockerd 20.10: image list filters, the
/// init layer's files, mount order, `/etc/hosts` entries, and create's refusals.
#[test]
fn images_mounts_and_hosts_match_dockerd() {
    let d = daemon();
    // A `reference` filter lists only the matching tags of an image.
    ok(d.docker(&["tag", "busybox", "first:1"]));
    ok(d.docker(&["tag", "busybox", "second:2"]));
    let refs = |args: &[&str]| {
        let mut a = vec!["images", "--format", "{{.Repository}}:{{.Tag}}"];
        a.extend_from_slice(args);
        ok(d.docker(&a))
    };
    assert_eq!(refs(&["first"]), "first:1");
    assert_eq!(refs(&["--filter", "reference=sec*"]), "second:2");
    // before / since: strictly older / newer than the image named.
    ok(d.docker(&["create", "--name", "mk", "busybox", "true"]));
    ok(d.docker(&["commit", "mk", "newer:1"]));
    assert_eq!(refs(&["--filter", "since=busybox"]), "newer:1");
    let before = refs(&["--filter", "before=newer:1"]);
    assert!(
        before.contains("busybox:latest") && !before.contains("newer"),
        "{before}"
    );
    assert_eq!(refs(&["--filter", "before=busybox"]), "");
    let o = d.docker(&["images", "--filter", "dangling=maybe"]);
    assert!(
        stderr(&o).contains("Invalid filter 'dangling=maybe'"),
        "{}",
        stderr(&o)
    );
    // Every container has /.dockerenv and /etc/mtab from its init layer: seen inside and by
    // export, but not a change of the container's (diff, commit).
    let ls = ok(d.docker(&[
        "run",
        "--name",
        "initl",
        "busybox",
        "sh",
        "-c",
        "stat -c '%n %a %s' /.dockerenv; readlink /etc/mtab",
    ]));
    assert_eq!(ls, "/.dockerenv 755 0\n/proc/mounts");
    assert_eq!(ok(d.docker(&["diff", "initl"])), "");
    let tar = d.docker(&["export", "initl"]);
    assert!(tar.status.success());
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(&tar.stdout[..]);
    for e in archive.entries().unwrap() {
        names.push(String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned());
    }
    for n in [
        ".dockerenv",
        "etc/mtab",
        "dev/console",
        "dev/pts/",
        "dev/shm/",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing: {names:?}");
    }
    // Directories are named `dir/`, as in Docker's archives.
    assert!(names.iter().any(|x| x == "etc/"), "{names:?}");
    assert!(!names.iter().any(|x| x == "etc"), "{names:?}");
    ok(d.docker(&["commit", "initl", "initimg"]));
    let saved = d.docker(&["save", "initimg"]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    let mut files = std::collections::BTreeMap::new();
    for e in tar::Archive::new(&saved.stdout[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        files.insert(name, data);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let top = manifest[0]["Layers"].as_array().unwrap().last().unwrap();
    let mut top_names = Vec::new();
    for e in tar::Archive::new(&files[top.as_str().unwrap()][..])
        .entries()
        .unwrap()
    {
        top_names.push(e.unwrap().path().unwrap().display().to_string());
    }
    assert!(
        !top_names
            .iter()
            .any(|n| n.contains("dockerenv") || n.contains("mtab")),
        "{top_names:?}"
    );
    // GraphDriver.Data names the overlay's directories on the host, as overlay2's do.
    ok(d.docker(&[
        "run",
        "--name",
        "gd",
        "busybox",
        "sh",
        "-c",
        "echo w > /written",
    ]));
    let gd = |what: &str, obj: &str| {
        ok(d.docker(&[
            "inspect",
            "-f",
            &format!("{{{{.GraphDriver.Data.{what}}}}}"),
            obj,
        ]))
    };
    let upper = gd("UpperDir", "gd");
    assert_eq!(
        std::fs::read_to_string(Path::new(&upper).join("written")).unwrap(),
        "w\n"
    );
    let lower = gd("LowerDir", "gd");
    let init = lower.split(':').next().unwrap();
    assert!(init.ends_with("/init"), "{lower}");
    assert!(Path::new(init).join(".dockerenv").exists(), "{lower}");
    assert!(Path::new(&gd("WorkDir", "gd")).is_dir());
    let image_top = gd("UpperDir", "busybox");
    assert!(Path::new(&image_top).join("bin").is_dir(), "{image_top}");
    assert!(lower.ends_with(&image_top), "{lower} vs {image_top}");
    ok(d.docker(&["rm", "gd"]));
    // A volume on /etc goes under the container's /etc/hosts, hostname and resolv.conf.
    let etc = ok(d.docker(&["run", "--rm", "-v", "etcv:/etc", "busybox", "ls", "/etc"]));
    for f in ["hostname", "hosts", "resolv.conf", "passwd"] {
        assert!(etc.lines().any(|l| l == f), "{f} missing: {etc}");
    }
    // /etc/hosts: `host-gateway` is the default bridge's gateway; a domain name makes the
    // container's line `host.domain host`.
    let gw = ok(d.docker(&[
        "network",
        "inspect",
        "bridge",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
    ]));
    let hosts = ok(d.docker(&[
        "run",
        "--rm",
        "--add-host",
        "gw:host-gateway",
        "-h",
        "myhost",
        "--domainname",
        "ex.org",
        "busybox",
        "cat",
        "/etc/hosts",
    ]));
    // The added host, then the container's own line last, as dockerd writes them.
    let lines: Vec<&str> = hosts.lines().collect();
    assert_eq!(lines[lines.len() - 2], format!("{gw}\tgw"), "{hosts}");
    assert!(
        lines[lines.len() - 1].ends_with("\tmyhost.ex.org myhost"),
        "{hosts}"
    );
    // A missing network is refused at create without a 404, which the docker CLI would take
    // for a missing image (and try to pull it).
    let o = d.docker(&["run", "--rm", "--network", "nosuch", "busybox", "true"]);
    common::assert_refused(&o, 125, "network nosuch not found");
    assert!(!stderr(&o).contains("Unable to find"), "{}", stderr(&o));
    let o = d.docker(&["network", "connect", "nosuch", "nosuch"]);
    assert!(
        stderr(&o).contains("No such container: nosuch"),
        "{}",
        stderr(&o)
    );
    for c in ["mk", "initl"] {
        ok(d.docker(&["rm", c]));
    }
}

#[test]
fn memory_limit_is_visible_and_enforced() {
    let d = daemon();
    let out = ok(d.docker(&[
        "run", "--rm", "-m", "64m", "busybox", "sh", "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
    ]));
    assert_eq!(out, "67108864");
    // A hog is OOM-killed and inspect says so.
    let o = d.docker(&[
        "run",
        "--name",
        "hog",
        "-m",
        "16m",
        "--memory-swap",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{.State.OOMKilled}}", "hog"])),
        "true"
    );
}

#[test]
fn bad_input_gets_clear_errors() {
    let d = daemon();
    let o = d.docker(&["run", "--rm", "-m", "1k", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("Minimum memory limit allowed is 6MB"),
        "{}",
        stderr(&o)
    );
    let o = d.docker(&["stop", "nope"]);
    assert!(
        stderr(&o).contains("No such container: nope"),
        "{}",
        stderr(&o)
    );
    // The daemon still serves.
    assert_eq!(
        ok(d.docker(&["run", "--rm", "busybox", "echo", "alive"])),
        "alive"
    );
}

/// CPU time (user + system, in clock ticks) `pid` uses over the next second.
fn cpu_ticks_in_a_second(pid: i32) -> u64 {
    let ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the command (which may hold spaces) start at "state".
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let before = ticks();
    std::thread::sleep(std::time::Duration::from_secs(1));
    ticks() - before
}

/// A shim whose daemon went away (its connections hung up) waits quietly: no busy loop on
/// the dead connections, before or after the daemon comes back.
#[test]
fn shims_stay_idle_while_the_daemon_is_down() {
    let mut d = daemon();
    let id = ok(d.docker(&["run", "-d", "--name", "idle", "busybox", "sleep", "1000"]));
    let shim = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("berth-shim") && c.contains(&id)
                })
                .unwrap_or(false)
        })
        .expect("the container's shim");
    d.crash();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let used = cpu_ticks_in_a_second(shim);
    assert!(
        used < 20,
        "the shim used {used} ticks in 1 s with the daemon down"
    );
    d.restart();
    assert_eq!(ok(d.docker(&["exec", "idle", "echo", "back"])), "back");
    let used = cpu_ticks_in_a_second(shim);
    assert!(
        used < 20,
        "the shim used {used} ticks in 1 s after the restart"
    );
    ok(d.docker(&["rm", "-f", "idle"]));
}

/// A `--rm` container that exits while the daemon is down is removed when the daemon comes
/// back (its exit is read from the shim's exit file).
#[test]
fn an_auto_remove_container_that_exited_during_a_crash_is_removed_at_restart() {
    let mut d = daemon();
    ok(d.docker(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "brief",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 3",
    ]));
    d.crash();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    d.restart();
    let mut names = String::from("?");
    for _ in 0..50 {
        names = ok(d.docker(&["ps", "-a", "--format", "{{.Names}}"]));
        if names.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(names, "", "the --rm container is still listed");
}

#[test]
fn containers_survive_a_daemon_crash() {
    let mut d = daemon();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "keeper",
        "busybox",
        "sh",
        "-c",
        "echo before; sleep 2; echo after; exit 7",
    ]));
    std::thread::sleep(std::time::Duration::from_millis(300));
    d.crash_and_restart();
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{.State.Running}}", "keeper"])),
        "true"
    );
    assert_eq!(ok(d.docker(&["wait", "keeper"])), "7");
    assert_eq!(ok(d.docker(&["logs", "keeper"])), "before\nafter");
    // Exited while the daemon was down: the restarted daemon reports the true code.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "quick",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 9",
    ]));
    d.crash_and_restart();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    d.crash_and_restart();
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "quick"
        ])),
        "exited 9"
    );
}

#[test]
fn restart_policy_on_failure_retries_then_stops() {
    let d = daemon();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 1",
    ]));
    assert_eq!(
        inspect_until(
            &d,
            "flaky",
            "{{.RestartCount}} {{.State.Status}}",
            "2 exited"
        ),
        "2 exited"
    );
}

/// `docker inspect -f fmt name` until it prints `want` (10 s at most); the last answer.
fn inspect_until(d: &Daemon, name: &str, fmt: &str, want: &str) -> String {
    let mut seen = String::new();
    for _ in 0..200 {
        seen = ok(d.docker(&["inspect", "-f", fmt, name]));
        if seen == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    seen
}

/// A user's kill is a manual stop: an `always` container stays down. Between restarts a
/// container counts as running (inspect, rm without -f refused) and a kill ends the loop.
#[test]
fn kill_stops_restart_policies_and_restarting_counts_as_running() {
    let d = daemon();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "alw",
        "--restart",
        "always",
        "busybox",
        "sleep",
        "1000",
    ]));
    ok(d.docker(&["kill", "alw"]));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.RestartCount}}",
            "alw"
        ])),
        "exited 0"
    );
    // A restart loop with a long backoff: caught between restarts.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]));
    // After four restarts the delay is 1.6 s and more: time enough to act between two.
    let state = inspect_until(
        &d,
        "loop",
        "{{.State.Restarting}} {{.State.Running}} {{if gt .RestartCount 3}}many{{end}}",
        "true true many",
    );
    assert_eq!(state, "true true many");
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", "loop"]));
    common::assert_refused(
        &d.docker(&["rm", "loop"]),
        1,
        &format!(
            "You cannot remove a restarting container {id}. Stop the container before attempting removal or force remove"
        ),
    );
    ok(d.docker(&["kill", "loop"]));
    // The loop is over: no restart comes after the delay.
    let count = ok(d.docker(&["inspect", "-f", "{{.RestartCount}}", "loop"]));
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.RestartCount}}",
            "loop"
        ])),
        format!("exited {count}")
    );
    ok(d.docker(&["rm", "alw", "loop"]));
}

#[test]
fn pause_unpause_rename_top() {
    let d = daemon();
    ok(d.docker(&["run", "-d", "--name", "pz", "busybox", "sleep", "1000"]));
    // An exec made before the pause cannot start during it.
    let exec = d
        .http(
            "POST",
            "/v1.41/containers/pz/exec",
            Some(br#"{"Cmd":["true"],"AttachStdout":true}"#),
        )
        .json();
    // Inspect lists the container's execs not finished yet.
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{json .ExecIDs}}", "pz"])),
        format!("[{}]", exec["Id"])
    );
    ok(d.docker(&["pause", "pz"]));
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{.State.Status}}", "pz"])),
        "paused"
    );
    let r = d.http(
        "POST",
        &format!("/v1.41/exec/{}/start", exec["Id"].as_str().unwrap()),
        Some(br#"{"Detach":false}"#),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.text()
            .contains("is paused, unpause the container before exec"),
        "{}",
        r.text()
    );
    ok(d.docker(&["unpause", "pz"]));
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{.State.Status}}", "pz"])),
        "running"
    );
    // Each exec user gets its own HOME, as runc gives it.
    let home = ok(d.docker(&[
        "exec",
        "pz",
        "sh",
        "-c",
        "grep ^nobody: /etc/passwd | cut -d: -f6",
    ]));
    assert!(!home.is_empty() && home != "/root", "{home}");
    assert_eq!(
        ok(d.docker(&["exec", "-u", "nobody", "pz", "sh", "-c", "echo $HOME"])),
        home
    );
    assert_eq!(
        ok(d.docker(&["exec", "pz", "sh", "-c", "echo $HOME"])),
        "/root"
    );
    ok(d.docker(&["rename", "pz", "qz"]));
    let top = ok(d.docker(&["top", "qz"]));
    assert!(top.contains("sleep 1000"), "{top}");
    // A bad ps option: ps's own complaint, one line, without its usage text.
    let o = d.docker(&["top", "qz", "-bogus"]);
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o).trim(),
        "Error response from daemon: ps: error: unsupported SysV option"
    );
    // A stopped container's execs are gone, as dockerd drops them.
    let exec_path = format!("/v1.41/exec/{}/json", exec["Id"].as_str().unwrap());
    assert_eq!(d.http("GET", &exec_path, None).status, 200);
    ok(d.docker(&["stop", "-t", "0", "qz"]));
    let r = d.http("GET", &exec_path, None);
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("No such exec instance"), "{}", r.text());
    ok(d.docker(&["rm", "-f", "qz"]));
}

#[test]
fn images_tag_rmi() {
    let d = daemon();
    ok(d.docker(&["tag", "busybox", "mybox:1"]));
    let images = ok(d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    let mut names: Vec<&str> = images.lines().collect();
    names.sort();
    assert_eq!(names, ["busybox:latest", "mybox:1"]);
    let out = ok(d.docker(&["rmi", "mybox:1"]));
    assert_eq!(out, "Untagged: mybox:1");
    ok(d.docker(&["create", "--name", "user", "busybox", "true"]));
    let o = d.docker(&["rmi", "busybox"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o)
            .contains("conflict: unable to remove repository reference \"busybox\" (must force)"),
        "{}",
        stderr(&o)
    );
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", "busybox"]));
    let short = &id["sha256:".len()..][..12];
    let o = d.docker(&["rmi", short]);
    assert!(
        stderr(&o).contains("(must be forced) - image is being used by stopped container"),
        "{}",
        stderr(&o)
    );
    ok(d.docker(&["rm", "user"]));
    ok(d.docker(&["run", "-d", "--name", "busy", "busybox", "sleep", "100"]));
    for args in [&["rmi", short][..], &["rmi", "-f", short][..]] {
        let o = d.docker(args);
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("(cannot be forced) - image is being used by running container"),
            "{}",
            stderr(&o)
        );
    }
    ok(d.docker(&["rm", "-f", "busy"]));
    // Tags that would read as an id or a digest are refused.
    common::assert_refused(
        &d.docker(&["tag", "busybox", "sha256:abc"]),
        1,
        "refusing to create an ambiguous tag using digest algorithm as name",
    );
    // By id, two tags (even of one repository) need force.
    ok(d.docker(&["tag", "busybox", "busybox:two"]));
    common::assert_refused(
        &d.docker(&["rmi", short]),
        1,
        "(must be forced) - image is referenced in multiple repositories",
    );
    ok(d.docker(&["rmi", "busybox:two"]));
    // An image committed from another is its child: the parent stays while it does.
    ok(d.docker(&["run", "--name", "par", "busybox", "touch", "/x"]));
    ok(d.docker(&["commit", "par", "child:1"]));
    ok(d.docker(&["rm", "par"]));
    for args in [&["rmi", short][..], &["rmi", "-f", short][..]] {
        common::assert_refused(
            &d.docker(args),
            1,
            "(cannot be forced) - image has dependent child images",
        );
    }
    ok(d.docker(&["tag", "busybox", "busybox:keep"]));
    assert_eq!(
        ok(d.docker(&["rmi", "busybox:keep"])),
        "Untagged: busybox:keep"
    );
    ok(d.docker(&["rmi", "child:1"]));
    let layer = ok(d.docker(&[
        "image",
        "inspect",
        "-f",
        "{{index .RootFS.Layers 0}}",
        "busybox",
    ]));
    let out = ok(d.docker(&["rmi", "busybox"]));
    // As dockerd: the tag, the image, then each layer that went with it (by chain id; a
    // bottom layer's is its diff id).
    assert_eq!(
        out,
        format!("Untagged: busybox:latest\nDeleted: {id}\nDeleted: {layer}"),
    );
}

/// json-file logs in Docker's format, rotated by `max-size`/`max-file`, and `--log-driver
/// none`.
#[test]
fn json_file_log_rotation() {
    let d = daemon();
    let id = ok(d.docker(&[
        "run",
        "-d",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done",
    ]));
    assert_eq!(ok(d.docker(&["wait", &id])), "0");
    let log_path = ok(d.docker(&["inspect", "-f", "{{.LogPath}}", &id]));
    let dir = std::path::Path::new(&log_path).parent().unwrap();
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-json.log"))
        .collect();
    files.sort();
    let base = std::path::Path::new(&log_path)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        files,
        [base.clone(), format!("{base}.1"), format!("{base}.2")]
    );
    for f in &files {
        let len = std::fs::metadata(dir.join(f)).unwrap().len();
        assert!(len <= 2048 + 200, "{f}: {len} bytes");
        // Docker's json-file lines.
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["stream"], "stdout");
        assert!(first["log"].as_str().unwrap().starts_with("line-"));
        assert!(first["time"].as_str().unwrap().ends_with('Z'));
    }
    // `logs` reads across the kept files, in order, and ends with the last line.
    let logs = ok(d.docker(&["logs", &id]));
    let nums: Vec<u32> = logs
        .lines()
        .map(|l| l.trim_start_matches("line-").parse().unwrap())
        .collect();
    assert_eq!(*nums.last().unwrap(), 399);
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "out of order");
    assert!(nums.len() < 400, "old lines rotated away");

    let id = ok(d.docker(&[
        "run",
        "-d",
        "--log-driver",
        "none",
        "busybox",
        "echo",
        "gone",
    ]));
    ok(d.docker(&["wait", &id]));
    let o = d.docker(&["logs", &id]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("configured logging driver does not support reading"),
        "{}",
        stderr(&o)
    );
}

/// `docker stats --no-stream` reads berthd's samples: the memory limit, the pids, a busy
/// container's CPU, a stopped container's zeros; `berth stats` prints the same table.
#[test]
fn stats_show_usage_like_docker() {
    let d = daemon();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "busy",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done",
    ]));
    ok(d.docker(&["run", "-d", "--name", "idle", "busybox", "sleep", "1000"]));
    ok(d.docker(&["create", "--name", "never", "busybox", "true"]));
    let fmt = "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}";
    let out = ok(d.docker(&[
        "stats",
        "--no-stream",
        "--format",
        fmt,
        "busy",
        "idle",
        "never",
    ]));
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 3, "{out}");
    let cpu = |r: &[&str]| r[1].trim_end_matches('%').parse::<f64>().unwrap();
    assert_eq!(rows[0][0], "busy");
    assert!(cpu(&rows[0]) > 20.0, "a busy loop should show CPU: {out}");
    assert!(rows[0][2].ends_with(" / 64MiB"), "{out}");
    assert_eq!(rows[0][3], "1", "the shell runs its loop itself: {out}");
    assert_eq!(rows[1][0], "idle");
    assert!(cpu(&rows[1]) < 5.0, "{out}");
    assert_eq!(rows[1][3], "1");
    assert_eq!(rows[2], ["never", "0.00%", "0B / 0B", "0"], "{out}");
    // The default table, with Docker's headers.
    let table = ok(d.docker(&["stats", "--no-stream"]));
    assert!(table.starts_with("CONTAINER ID   NAME"), "{table}");
    assert!(
        table.contains("MEM USAGE / LIMIT") && table.contains("BLOCK I/O"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 3, "two running containers: {table}");
    // berth's own CLI reads the same samples.
    let berth = ok(d.berth(&["stats", "--no-stream", "--format", fmt, "idle"]));
    assert!(
        berth.starts_with("idle|") && berth.ends_with("|1"),
        "{berth}"
    );
    let err = d.docker(&["stats", "--no-stream", "nosuch"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("No such container: nosuch"));
    ok(d.docker(&["rm", "-f", "busy", "idle", "never"]));
}

/// `docker cp` both ways, running and stopped containers, files and directories; what the
/// container sees (its /etc/hosts); symlinks resolved inside the container, never on the host.
#[test]
fn cp_both_ways_inside_the_container_only() {
    let d = daemon();
    let host = d.dir.join("cp");
    std::fs::create_dir_all(host.join("tree/sub")).unwrap();
    std::fs::write(host.join("tree/a.txt"), "alpha\n").unwrap();
    std::fs::write(host.join("tree/sub/b.txt"), "beta\n").unwrap();
    std::os::unix::fs::symlink("a.txt", host.join("tree/link")).unwrap();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "cp1",
        "--hostname",
        "cphost",
        "busybox",
        "sleep",
        "1000",
    ]));
    // Into the container: a directory, then a file under a new name.
    ok(d.docker(&["cp", host.join("tree").to_str().unwrap(), "cp1:/tmp/"]));
    ok(d.docker(&[
        "cp",
        host.join("tree/a.txt").to_str().unwrap(),
        "cp1:/tmp/renamed.txt",
    ]));
    assert_eq!(
        ok(d.docker(&["exec", "cp1", "sh", "-c",
            "cat /tmp/tree/a.txt /tmp/tree/sub/b.txt /tmp/renamed.txt; readlink /tmp/tree/link; stat -c %u:%g /tmp/tree/a.txt"])),
        "alpha\nbeta\nalpha\na.txt\n0:0"
    );
    // Out of the container: a file, a directory, and /etc/hosts as the container sees it.
    let out = host.join("out");
    std::fs::create_dir_all(&out).unwrap();
    ok(d.docker(&[
        "exec",
        "cp1",
        "sh",
        "-c",
        "mkdir -p /data/x && echo made > /data/x/f && chmod 600 /data/x/f",
    ]));
    ok(d.docker(&["cp", "cp1:/data", out.to_str().unwrap()]));
    assert_eq!(
        std::fs::read_to_string(out.join("data/x/f")).unwrap(),
        "made\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(out.join("data/x/f"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    ok(d.docker(&["cp", "cp1:/etc/hosts", out.join("hosts").to_str().unwrap()]));
    assert!(
        std::fs::read_to_string(out.join("hosts"))
            .unwrap()
            .contains("cphost")
    );
    // Symlinks in the container resolve in the container: a link to /etc puts the file in the
    // container's /etc; a link to this host directory leads nowhere.
    let victim = host.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let link = format!("ln -s /etc /toetc; ln -s {} /tohost", victim.display());
    ok(d.docker(&["exec", "cp1", "sh", "-c", &link]));
    ok(d.docker(&[
        "cp",
        host.join("tree/a.txt").to_str().unwrap(),
        "cp1:/toetc/",
    ]));
    assert_eq!(ok(d.docker(&["exec", "cp1", "cat", "/etc/a.txt"])), "alpha");
    let e = d.docker(&[
        "cp",
        host.join("tree/a.txt").to_str().unwrap(),
        "cp1:/tohost/",
    ]);
    assert!(!e.status.success());
    let e2 = d.docker(&["cp", "cp1:/tohost/", out.join("nothing").to_str().unwrap()]);
    assert!(!e2.status.success());
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        0,
        "nothing reached the host"
    );
    // The whole root as a tar stream: the container's files, not the kernel's /proc.
    let all = d.docker(&["cp", "cp1:/", "-"]);
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    let names: Vec<String> = tar::Archive::new(&all.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("etc/passwd")), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("proc/self")),
        "/proc was walked"
    );
    // A path that is not there.
    let e = d.docker(&["cp", "cp1:/nope", out.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&e.stderr)
            .contains("Could not find the file /nope in container cp1"),
        "{e:?}"
    );
    // A stopped container: its root filesystem is mounted for the copy and unmounted after.
    ok(d.docker(&["stop", "-t", "0", "cp1"]));
    ok(d.docker(&[
        "cp",
        host.join("tree/sub/b.txt").to_str().unwrap(),
        "cp1:/tmp/",
    ]));
    ok(d.docker(&["cp", "cp1:/tmp/b.txt", out.join("b2.txt").to_str().unwrap()]));
    assert_eq!(
        std::fs::read_to_string(out.join("b2.txt")).unwrap(),
        "beta\n"
    );
    assert!(common::mounts_under(&d.dir.join("data/containers")).is_empty());
    ok(d.docker(&["start", "cp1"]));
    assert_eq!(
        ok(d.docker(&["exec", "cp1", "cat", "/tmp/b.txt", "/tmp/renamed.txt"])),
        "beta\nalpha"
    );
    ok(d.docker(&["rm", "-f", "cp1"]));
}

/// `docker diff` lists what the container added, changed and deleted; `docker export` and
/// `berth export` archive its whole filesystem (running or stopped).
#[test]
fn diff_and_export() {
    let d = daemon();
    ok(d.docker(&["run", "-d", "--name", "df", "busybox", "sh", "-c",
        "mkdir -p /new/deep && echo x > /new/deep/f && echo y >> /etc/passwd && rm /bin/vi && sleep 1000"]));
    let mut out = String::new();
    for _ in 0..100 {
        out = ok(d.docker(&["diff", "df"]));
        if out.contains("/new/deep/f") && out.contains("D /bin/vi") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for line in [
        "C /bin",
        "D /bin/vi",
        "C /etc",
        "C /etc/passwd",
        "A /new",
        "A /new/deep",
        "A /new/deep/f",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
    assert_eq!(ok(d.berth(&["diff", "df"])), out);
    // The mount points the runtime makes (/etc/hosts...) are no change, as in Docker.
    ok(d.docker(&["run", "-d", "--name", "quiet", "busybox", "sleep", "1000"]));
    assert_eq!(ok(d.docker(&["diff", "quiet"])), "");
    assert_eq!(ok(d.berth(&["diff", "quiet"])), "");
    // (null over the API then, as dockerd sends it.)
    assert_eq!(
        d.http("GET", "/v1.41/containers/quiet/changes", None)
            .text()
            .trim(),
        "null"
    );
    ok(d.docker(&["rm", "-f", "quiet"]));
    let tar_of = |o: std::process::Output| -> Vec<String> {
        assert!(
            o.status.success(),
            "{:?} after {} bytes: {}",
            o.status,
            o.stdout.len(),
            String::from_utf8_lossy(&o.stderr)
        );
        let mut a = tar::Archive::new(&o.stdout[..]);
        a.entries()
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_owned()
            })
            .collect()
    };
    // Modes carry the file-type bits, as moby's archives do.
    let exported = d.docker(&["export", "df"]);
    let mut types = std::collections::BTreeMap::new();
    for e in tar::Archive::new(&exported.stdout[..]).entries().unwrap() {
        let e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        types.insert(path, e.header().mode().unwrap() & 0o170000);
    }
    assert_eq!(types.get("etc/passwd"), Some(&0o100000), "{types:?}");
    assert_eq!(types.get("etc/"), Some(&0o040000), "{types:?}");
    let names = tar_of(exported);
    for want in ["bin/busybox", "new/deep/f", "etc/passwd"] {
        assert!(names.iter().any(|n| n == want), "{want} not in export");
    }
    assert!(
        !names.iter().any(|n| n == "bin/vi"),
        "a deleted file was exported"
    );
    // Only the root filesystem: nothing of /proc.
    assert!(!names.iter().any(|n| n.starts_with("proc/")));
    ok(d.docker(&["stop", "-t", "0", "df"]));
    let file = d.dir.join("export.tar");
    ok(d.berth(&["export", "-o", file.to_str().unwrap(), "df"]));
    let mut a = tar::Archive::new(std::fs::File::open(&file).unwrap());
    let mut found = false;
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == "new/deep/f" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            assert_eq!(s, "x\n");
            found = true;
        }
    }
    assert!(found);
    assert!(common::mounts_under(&d.dir.join("data/containers")).is_empty());
    ok(d.docker(&["rm", "df"]));
}

/// `docker container prune` removes stopped containers only, honours label and until
/// filters, and reports what it removed like Docker.
#[test]
fn container_prune_removes_stopped_only() {
    let d = daemon();
    let run = ok(d.docker(&["run", "-d", "--name", "running", "busybox", "sleep", "1000"]));
    let done = ok(d.docker(&[
        "run",
        "--name",
        "done",
        "--label",
        "keep=no",
        "busybox",
        "sh",
        "-c",
        "echo x > /f",
    ]));
    assert_eq!(done, "");
    let kept = ok(d.docker(&[
        "create", "--name", "kept", "--label", "keep=yes", "busybox", "true",
    ]));
    // Nothing is older than an hour.
    let none = ok(d.docker(&["container", "prune", "-f", "--filter", "until=1h"]));
    assert_eq!(none, "Total reclaimed space: 0B");
    let out = ok(d.docker(&["container", "prune", "-f", "--filter", "label!=keep=yes"]));
    let done_id = ok(d.docker(&["ps", "-aq", "--no-trunc", "--filter", "name=done"]));
    assert_eq!(done_id, "", "done was pruned");
    assert!(out.starts_with("Deleted Containers:\n"), "{out}");
    assert_eq!(
        out.lines().count(),
        4,
        "one id, a blank line, the total: {out}"
    );
    assert!(
        out.ends_with("Total reclaimed space: 2B") || out.contains("Total reclaimed space:"),
        "{out}"
    );
    let left = ok(d.docker(&["ps", "-a", "--format", "{{.Names}}"]));
    let mut left: Vec<&str> = left.lines().collect();
    left.sort();
    assert_eq!(left, ["kept", "running"]);
    let out = ok(d.berth(&["container", "prune", "-f"]));
    assert!(out.contains(&kept), "{out}");
    assert_eq!(ok(d.docker(&["ps", "-aq", "--no-trunc"])), run);
    ok(d.docker(&["rm", "-f", "running"]));
}

/// `docker update` changes a running container's cgroup limits in place and keeps them for
/// the next start; a restart policy cannot be given to an auto-removed container.
#[test]
fn update_changes_limits_in_place() {
    let d = daemon();
    ok(d.docker(&[
        "run", "-d", "--name", "up", "-m", "64m", "busybox", "sleep", "1000",
    ]));
    let read = || {
        ok(d.docker(&["exec", "up", "sh", "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/pids/pids.max"]))
    };
    assert_eq!(read(), "67108864\n-1\nmax");
    // A memory limit alone allows as much swap again, and inspect says so, as dockerd's.
    let swap = || {
        ok(d.docker(&["inspect", "-f", "{{.HostConfig.MemorySwap}}", "up"]))
            + " "
            + &ok(d.docker(&[
                "exec",
                "up",
                "cat",
                "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
            ]))
    };
    assert_eq!(swap(), "134217728 134217728");
    // That default swap limit follows a new memory limit.
    ok(d.docker(&["update", "-m", "96m", "up"]));
    assert_eq!(swap(), "201326592 201326592");
    assert_eq!(
        ok(d.docker(&[
            "update",
            "-m",
            "128m",
            "--memory-swap",
            "256m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "50",
            "--restart",
            "on-failure:3",
            "up"
        ])),
        "up"
    );
    assert_eq!(read(), "134217728\n50000\n50");
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}", "up"])),
        "134217728 500000000 50 on-failure:3"
    );
    // Kept for the next start.
    ok(d.docker(&["restart", "-t", "0", "up"]));
    assert_eq!(read(), "134217728\n50000\n50");
    // Docker's refusals.
    let e = d.docker(&["update", "-m", "4m", "up"]);
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("Minimum memory limit allowed is 6MB"),
        "{e:?}"
    );
    ok(d.docker(&[
        "run", "-d", "--rm", "--name", "gone", "busybox", "sleep", "1000",
    ]));
    let e = d.docker(&["update", "--restart", "always", "gone"]);
    assert!(
        String::from_utf8_lossy(&e.stderr).contains(
            "Restart policy cannot be updated because AutoRemove is enabled for the container"
        ),
        "{e:?}"
    );
    assert_eq!(ok(d.berth(&["update", "--cpu-shares", "512", "up"])), "up");
    assert_eq!(
        ok(d.docker(&["exec", "up", "cat", "/sys/fs/cgroup/cpu/cpu.shares"])),
        "512"
    );
    ok(d.docker(&["rm", "-f", "up", "gone"]));
}

/// `docker system df` and `docker ps -s` read berthd's sizes; `berth system df` prints the
/// very table the docker CLI prints.
#[test]
fn system_df_and_sizes() {
    let d = daemon();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "big",
        "busybox",
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /blob; sleep 1000",
    ]));
    ok(d.docker(&[
        "run",
        "--name",
        "small",
        "busybox",
        "sh",
        "-c",
        "echo hi > /f",
    ]));
    let mut sizes = String::new();
    for _ in 0..100 {
        sizes = ok(d.docker(&["ps", "-a", "-s", "--format", "{{.Names}} {{.Size}}"]));
        if sizes.contains("big 300kB") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut lines: Vec<&str> = sizes.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{sizes}");
    assert!(lines[0].starts_with("big 300kB (virtual "), "{sizes}");
    assert!(lines[1].starts_with("small 3B (virtual "), "{sizes}");
    // inspect --size: the same two figures; without it, neither key.
    let f = "{{.SizeRw}} {{.SizeRootFs}}";
    let small = ok(d.docker(&["inspect", "--size", "-f", f, "small"]));
    let (rw, root) = small.split_once(' ').unwrap();
    assert_eq!(rw, "3", "{small}");
    assert!(root.parse::<u64>().unwrap() > 1_000_000, "{small}");
    let plain = ok(d.docker(&["inspect", "-f", "{{json .}}", "small"]));
    assert!(!plain.contains("\"SizeRw\""), "{plain}");
    let docker = ok(d.docker(&["system", "df"]));
    let rows: Vec<Vec<&str>> = docker
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]);
    assert_eq!(rows[1][..3], ["Images", "1", "1"], "{docker}");
    assert_eq!(rows[2][..4], ["Containers", "2", "1", "300kB"], "{docker}");
    assert_eq!(
        rows[2][4..],
        ["3B", "(0%)"],
        "the stopped container's 3 bytes: {docker}"
    );
    assert_eq!(ok(d.berth(&["system", "df"])), docker);
    ok(d.docker(&["rm", "-f", "big", "small"]));
}

/// A healthcheck from `--health-*`: starting, unhealthy after the retries, healthy once the
/// probe passes; shown by ps and inspect, filtered by ps, announced as events.
#[test]
fn healthcheck_states_and_events() {
    let d = daemon();
    let since = ok(d.docker(&["version", "-f", "{{.Server.Version}}"]));
    assert!(!since.is_empty());
    let start = common::unix_now();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -f /ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "1000",
    ]));
    assert!(ok(d.docker(&["ps", "--format", "{{.Status}}"])).ends_with("(health: starting)"));
    let wait_for = |want: &str| {
        for _ in 0..100 {
            let s = ok(d.docker(&["inspect", "-f", "{{.State.Health.Status}}", "hc"]));
            if s == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("never {want}");
    };
    wait_for("unhealthy");
    assert!(ok(d.docker(&["ps", "--format", "{{.Status}}"])).ends_with("(unhealthy)"));
    assert_eq!(
        ok(d.docker(&["ps", "-q", "--filter", "health=healthy"])),
        ""
    );
    ok(d.docker(&["exec", "hc", "touch", "/ok"]));
    wait_for("healthy");
    assert!(ok(d.docker(&["ps", "--format", "{{.Status}}"])).ends_with("(healthy)"));
    assert_eq!(
        ok(d.docker(&["ps", "--format", "{{.Names}}", "--filter", "health=healthy"])),
        "hc"
    );
    let log = ok(d.docker(&["inspect", "-f", "{{len .State.Health.Log}} {{(index .State.Health.Log 0).ExitCode}} {{.State.Health.FailingStreak}}", "hc"]));
    let f: Vec<&str> = log.split(' ').collect();
    assert!(f[0].parse::<usize>().unwrap() <= 5, "{log}");
    assert_eq!(f[2], "0", "{log}");
    let until = common::unix_now() + 1;
    let events = ok(d.docker(&[
        "events",
        "--since",
        &start.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "event=health_status",
        "--format",
        "{{.Action}}",
    ]));
    assert_eq!(events, "health_status: unhealthy\nhealth_status: healthy");
    ok(d.docker(&["rm", "-f", "hc"]));
}

/// `import --change` takes a whole HEALTHCHECK, and a refused change reaches the client as
/// dockerd's message (not a broken pipe while it still uploads the tarball).
#[test]
fn import_changes_take_a_healthcheck_and_refusals_reach_the_client() {
    let d = daemon();
    let tar = std::fs::read(common::busybox_tar()).unwrap();
    ok(d.docker_stdin(
        &[
            "import",
            "-c",
            "HEALTHCHECK --interval=5s --retries=2 CMD true",
            "-",
            "hc:1",
        ],
        Some(&tar),
    ));
    assert_eq!(
        ok(d.docker(&[
            "image",
            "inspect",
            "-f",
            "{{json .Config.Healthcheck}}",
            "hc:1"
        ])),
        r#"{"Test":["CMD-SHELL","true"],"Interval":5000000000,"Retries":2}"#
    );
    let o = d.docker_stdin(&["import", "-c", "RUN true", "-", "hc:2"], Some(&tar));
    common::assert_refused(&o, 1, "run is not a valid change command");
    ok(d.docker(&["rmi", "hc:1"]));
}

/// `docker system prune` and `docker image prune` remove stopped containers, dangling
/// images (all unused ones with -a) and nothing in use; `berth image prune` reports alike.
#[test]
fn system_and_image_prune() {
    let d = daemon();
    let tar = std::fs::read(common::busybox_tar()).unwrap();
    let dangling = ok(d.docker_stdin(&["import", "-", ""], Some(&tar)));
    assert!(dangling.starts_with("sha256:"));
    ok(d.docker(&["run", "--name", "stopped", "busybox", "true"]));
    ok(d.docker(&["run", "-d", "--name", "running", "busybox", "sleep", "1000"]));
    let out = ok(d.docker(&["system", "prune", "-f"]));
    assert!(out.starts_with("Deleted Containers:\n"), "{out}");
    assert!(out.contains(&format!("deleted: {dangling}")), "{out}");
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert_eq!(
        ok(d.docker(&["ps", "-a", "--format", "{{.Names}}"])),
        "running"
    );
    // busybox is in use: -a leaves it.
    assert_eq!(
        ok(d.berth(&["image", "prune", "-a", "-f"])),
        "Total reclaimed space: 0B"
    );
    // A dangling image whose one layer busybox shares frees nothing: only layers that go
    // count, as dockerd.
    let again = ok(d.docker_stdin(&["import", "-", ""], Some(&tar)));
    let r = d.http("POST", "/v1.41/images/prune", None).json();
    assert_eq!(r["SpaceReclaimed"], 0, "{r}");
    assert!(r["ImagesDeleted"].to_string().contains(&again), "{r}");
    ok(d.docker(&["rm", "-f", "running"]));
    let out = ok(d.docker(&["image", "prune", "-a", "-f"]));
    assert!(
        out.contains("untagged: busybox:latest") && out.contains("deleted: sha256:"),
        "{out}"
    );
    assert_eq!(ok(d.docker(&["images", "-q"])), "");
}

/// SIGHUP reloads daemon.json (as dockerd): registry settings take effect and a `daemon
/// reload` event says so; a file that does not parse changes nothing.
#[test]
fn sighup_reloads_the_config_with_a_daemon_event() {
    let d = Daemon::start();
    let now = common::unix_now;
    let since = now().to_string();
    d.write_config(
        r#"{"registry-mirrors": ["http://127.0.0.1:5999"],
            "insecure-registries": ["myreg.example:5000", "10.1.0.0/16"]}"#,
    );
    d.signal(libc::SIGHUP);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // `info` shows the settings now in force, shaped as dockerd shapes them.
    let rc: serde_json::Value = serde_json::from_str(&ok(d.docker(&[
        "info",
        "--format",
        "{{json .RegistryConfig}}",
    ])))
    .unwrap();
    assert_eq!(rc["Mirrors"], serde_json::json!(["http://127.0.0.1:5999/"]));
    assert_eq!(rc["IndexConfigs"]["docker.io"]["Mirrors"], rc["Mirrors"]);
    assert_eq!(
        rc["InsecureRegistryCIDRs"],
        serde_json::json!(["10.1.0.0/16", "127.0.0.0/8"])
    );
    assert_eq!(
        rc["IndexConfigs"]["myreg.example:5000"],
        serde_json::json!({"Name": "myreg.example:5000", "Mirrors": [], "Secure": false, "Official": false})
    );
    std::fs::write(d.dir.join("daemon.json"), "{ not json").unwrap();
    d.signal(libc::SIGHUP);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let until = (now() + 1).to_string();
    let ev = ok(d.docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=daemon",
        "--format",
        "{{.Type}} {{.Action}} {{index .Actor.Attributes \"registry-mirrors\"}}",
    ]));
    assert_eq!(ev, r#"daemon reload ["http://127.0.0.1:5999"]"#);
    assert!(d.log().contains("reload refused"), "{}", d.log());
    // Still serving.
    ok(d.docker(&["version"]));
}

/// Refusals, warnings and log details in dockerd's words, where clients and users match them.
#[test]
fn refusals_warnings_and_log_details_match_dockerd() {
    let d = daemon();
    let err = |args: &[&str]| {
        let o = d.docker(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        (o.status.code(), stderr(&o))
    };
    ok(d.docker(&["run", "-d", "--name", "p1", "busybox", "sleep", "60"]));
    let (_, e) = err(&["rename", "p1", "bad name"]);
    assert!(
        e.contains("Error when allocating new name: Invalid container name (/bad name)"),
        "{e}"
    );
    ok(d.docker(&["pause", "p1"]));
    let (_, e) = err(&["exec", "p1", "true"]);
    assert!(
        e.contains("Container p1 is paused, unpause the container before exec"),
        "{e}"
    );
    ok(d.docker(&["rm", "-f", "p1"]));
    let (code, e) = err(&["run", "--rm", "--cap-add", "BOGUS", "busybox", "true"]);
    assert_eq!(code, Some(125));
    assert!(
        e.contains("invalid CapAdd: unknown capability: \"CAP_BOGUS\""),
        "{e}"
    );
    // Go's errno text: the docker CLI reads "no such file or directory" as exit 127.
    let (code, e) = err(&["run", "--rm", "--device", "/dev/nosuch", "busybox", "true"]);
    assert!(
        e.contains("custom device \"/dev/nosuch\": no such file or directory"),
        "{e}"
    );
    assert_eq!(code, Some(127));
    let o = d.docker(&["run", "--rm", "--oom-kill-disable", "busybox", "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "WARNING: OOM killer is disabled for the container, but no memory limit is set"
        ),
        "{}",
        stderr(&o)
    );
    let (_, e) = err(&["kill", "nosuch"]);
    assert!(
        e.contains("Cannot kill container: nosuch: No such container: nosuch"),
        "{e}"
    );
    ok(d.docker(&["run", "--name", "l1", "busybox", "echo", "a"]));
    let (_, e) = err(&["commit", "-c", "BOGUS x", "l1", "nope"]);
    assert!(e.contains("bogus is not a valid change command"), "{e}");
    let o = d.docker(&["logs", "--details", "l1"]);
    assert_eq!(stdout(&o), " a\n");
    assert_eq!(stdout(&d.docker(&["logs", "l1"])), "a\n");
    ok(d.docker(&["rm", "l1"]));
}

/// Events in dockerd's order and words: `kill` before the `die` it causes, `die` before the
/// network's `disconnect`, execs as `exec_create: <cmd>` / `exec_start: <cmd>` / `exec_die`,
/// and `untag` naming the image by its id.
#[test]
fn events_follow_dockerds_order_and_words() {
    let d = daemon();
    let since = common::unix_now().to_string();
    let id = ok(d.docker(&["run", "-d", "--name", "evc", "busybox", "sleep", "60"]));
    ok(d.docker(&["exec", "evc", "true"]));
    ok(d.docker(&["kill", "evc"]));
    ok(d.docker(&["rm", "evc"]));
    ok(d.docker(&["tag", "busybox", "evt:1"]));
    ok(d.docker(&["rmi", "evt:1"]));
    let until = (common::unix_now() + 1).to_string();
    let events = d.events_since(
        &since,
        &[
            "--format",
            "{{.Type}}|{{.Action}}|{{.Actor.ID}}|{{.Actor.Attributes.name}}",
        ],
    );
    let rows: Vec<Vec<&str>> = events.lines().map(|l| l.split('|').collect()).collect();
    let actions: Vec<&str> = rows
        .iter()
        .map(|r| r[1])
        // (The busybox import may fall in the same second as `since`.)
        .filter(|a| *a != "exec_die" && *a != "import")
        .collect();
    assert_eq!(
        actions,
        [
            "create",
            "connect",
            "start",
            "exec_create: true",
            "exec_start: true",
            "kill",
            "die",
            "disconnect",
            "destroy",
            "tag",
            "untag"
        ],
        "{events}"
    );
    assert!(
        rows.iter().any(|r| r[1] == "exec_die" && r[2] == id),
        "{events}"
    );
    let image = ok(d.docker(&["image", "inspect", "-f", "{{.Id}}", "busybox"]));
    let untag = rows.iter().find(|r| r[1] == "untag").unwrap();
    assert_eq!(
        (untag[2], untag[3]),
        (image.as_str(), image.as_str()),
        "{events}"
    );
    // `event=exec_start` still finds "exec_start: true".
    let filtered = ok(d.docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "event=exec_start",
        "--format",
        "{{.Action}}",
    ]));
    assert_eq!(filtered, "exec_start: true");
    // A window that ends before it starts is refused, in dockerd's words.
    common::assert_refused(
        &d.docker(&["events", "--since", &until, "--until", &since]),
        1,
        &format!("`since` time ({until}) cannot be after `until` time ({since})"),
    );
}

/// `--device-read-bps` and kin reach the container's blkio (or io) cgroup; a path that is not
/// a block device is refused; `HostConfig` has dockerd's shape for what the client left out.
#[test]
fn block_io_limits_and_the_host_config_shape() {
    let d = daemon();
    let (dev, numbers) = common::some_block_device();
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "--device-read-bps",
        &format!("{dev}:1mb"),
        "--device-write-iops",
        &format!("{dev}:100"),
        "busybox",
        "sh",
        "-c",
        common::BLKIO_THROTTLES,
    ]));
    assert!(
        common::shows_throttles(&out, &numbers, 1048576, 100),
        "{out}"
    );
    let o = d.docker(&[
        "run",
        "--rm",
        "--device-read-bps",
        "/dev/null:1mb",
        "busybox",
        "true",
    ]);
    assert!(
        stderr(&o).contains("/dev/null is not a block device"),
        "{}",
        stderr(&o)
    );
    ok(d.docker(&["create", "--name", "shape", "busybox", "true"]));
    let shape = d.http("GET", "/v1.41/containers/shape/json", None).json();
    // Never started: on no network yet, as moby shows it.
    assert_eq!(
        shape["NetworkSettings"]["Networks"]["bridge"]["NetworkID"],
        ""
    );
    let hc = &shape["HostConfig"];
    assert!(hc["PidsLimit"].is_null(), "{hc}");
    assert!(hc["MemorySwappiness"].is_null(), "{hc}");
    assert!(hc.get("Init").is_none(), "{hc}");
    assert_eq!(hc["BlkioWeightDevice"], serde_json::json!([]), "{hc}");
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(hc["CgroupnsMode"], if v2 { "private" } else { "host" });
    assert!(hc["SecurityOpt"].is_null(), "{hc}");
    assert!(
        hc["MaskedPaths"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == "/proc/kcore")),
        "{hc}"
    );
    ok(d.docker(&[
        "create",
        "--name",
        "priv",
        "--privileged",
        "busybox",
        "true",
    ]));
    let hc = &d.http("GET", "/v1.41/containers/priv/json", None).json()["HostConfig"];
    assert!(hc["MaskedPaths"].is_null(), "{hc}");
    // Privilege turns SELinux labelling off, as moby writes it.
    assert_eq!(hc["SecurityOpt"], serde_json::json!(["label=disable"]));
    // The list shows the same endpoint fields as inspect.
    let list = d.http("GET", "/v1.41/containers/json?all=1", None).json();
    let ep = &list[0]["NetworkSettings"]["Networks"]["bridge"];
    for key in [
        "Aliases",
        "DriverOpts",
        "IPAMConfig",
        "Links",
        "GlobalIPv6Address",
    ] {
        assert!(ep.get(key).is_some(), "{key} missing: {ep}");
    }
    ok(d.docker(&["rm", "shape", "priv"]));
}

/// `--read-only` covers the network files the daemon mounts (/etc/hosts...), and
/// `--cgroupns host|private` chooses the cgroup namespace (the default is Docker's).
#[test]
fn read_only_network_files_and_the_cgroup_namespace() {
    let d = daemon();
    for f in ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"] {
        let o = d.docker(&[
            "run",
            "--rm",
            "--read-only",
            "busybox",
            "sh",
            "-c",
            &format!("echo x >> {f}"),
        ]);
        assert!(
            !o.status.success() && stderr(&o).contains("Read-only file system"),
            "{f}: {}",
            stderr(&o)
        );
    }
    let host = std::fs::read_link("/proc/self/ns/cgroup").unwrap();
    let host = host.to_str().unwrap();
    let ns = |extra: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend(["busybox", "readlink", "/proc/self/ns/cgroup"]);
        ok(d.docker(&args))
    };
    assert_eq!(ns(&["--cgroupns", "host"]), host);
    assert_ne!(ns(&["--cgroupns", "private"]), host);
    // The default is Docker's: the host's on cgroup v1, a private one on v2.
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(ns(&[]) == host, !v2);
    let r = d.http(
        "POST",
        "/v1.41/containers/create",
        Some(br#"{"Image":"busybox","HostConfig":{"CgroupnsMode":"bogus"}}"#),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("invalid cgroup namespace mode: bogus"));
}

/// `--ipc container:` joins a shareable donor's IPC namespace and /dev/shm, `--pid container:`
/// its PID namespace, `--network container:` takes its hostname; a private donor's IPC is
/// refused, as dockerd refuses it.
#[test]
fn containers_join_each_others_namespaces() {
    let d = daemon();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "donor",
        "--hostname",
        "peer",
        "--ipc",
        "shareable",
        "busybox",
        "sleep",
        "1000",
    ]));
    let donor_ipc = ok(d.docker(&["exec", "donor", "readlink", "/proc/self/ns/ipc"]));
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "--ipc",
        "container:donor",
        "busybox",
        "sh",
        "-c",
        "readlink /proc/self/ns/ipc; echo shared > /dev/shm/x",
    ]));
    assert_eq!(out, donor_ipc);
    assert_eq!(
        ok(d.docker(&["exec", "donor", "cat", "/dev/shm/x"])),
        "shared"
    );
    let ps = ok(d.docker(&[
        "run",
        "--rm",
        "--pid",
        "container:donor",
        "busybox",
        "ps",
        "-o",
        "comm",
    ]));
    assert!(ps.lines().any(|l| l.trim() == "sleep"), "{ps}");
    assert_eq!(
        ok(d.docker(&[
            "run",
            "--rm",
            "--network",
            "container:donor",
            "busybox",
            "hostname"
        ])),
        "peer"
    );
    // Through a chain of them too.
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "middle",
        "--network",
        "container:donor",
        "busybox",
        "sleep",
        "1000",
    ]));
    assert_eq!(
        ok(d.docker(&[
            "run",
            "--rm",
            "--network",
            "container:middle",
            "busybox",
            "hostname"
        ])),
        "peer"
    );
    ok(d.docker(&["rm", "-f", "middle"]));
    ok(d.docker(&["run", "-d", "--name", "private", "busybox", "sleep", "1000"]));
    let o = d.docker(&[
        "run",
        "--rm",
        "--ipc",
        "container:private",
        "busybox",
        "true",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("non-shareable IPC"),
        "{}",
        stderr(&o)
    );
    ok(d.docker(&["rm", "-f", "donor", "private"]));
}

/// Old clients' shapes: `Cmd` as one string (Docker's StrSlice) and `NetworkDisabled`.
#[test]
fn old_clients_string_commands_and_disabled_networks() {
    let d = daemon();
    let r = d.http(
        "POST",
        "/v1.24/containers/create?name=old",
        Some(br#"{"Image":"busybox","Entrypoint":"sh","Cmd":"-c","NetworkDisabled":true}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{json .Config.Entrypoint}} {{json .Config.Cmd}}",
            "old"
        ])),
        r#"["sh"] ["-c"]"#
    );
    ok(d.docker(&["rm", "old"]));
    let r = d.http(
        "POST",
        "/v1.24/containers/create?name=nonet",
        Some(br#"{"Image":"busybox","Cmd":["sleep","1000"],"NetworkDisabled":true}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    ok(d.docker(&["start", "nonet"]));
    let links = ok(d.docker(&["exec", "nonet", "ls", "/sys/class/net"]));
    assert_eq!(links, "lo");
    ok(d.docker(&["rm", "-f", "nonet"]));
}

/// `--oom-kill-disable` and `--memory-swappiness` reach the cgroup (v1); a block I/O weight
/// the kernel cannot apply is dropped with dockerd's warning and the container still runs.
#[test]
fn memory_switches_apply_and_unsupported_weights_are_discarded() {
    let d = daemon();
    let memory = std::path::Path::new("/sys/fs/cgroup/memory");
    if memory.join("memory.oom_control").exists() {
        assert_eq!(
            ok(d.docker(&[
                "run",
                "--rm",
                "-m",
                "64m",
                "--oom-kill-disable",
                "--memory-swappiness",
                "10",
                "busybox",
                "sh",
                "-c",
                "head -1 /sys/fs/cgroup/memory/memory.oom_control; cat /sys/fs/cgroup/memory/memory.swappiness",
            ])),
            "oom_kill_disable 1\n10"
        );
    }
    let o = d.docker(&["create", "--memory-swappiness", "101", "busybox", "true"]);
    assert!(!o.status.success());
    let blkio = std::path::Path::new("/sys/fs/cgroup/blkio");
    let weight = blkio.join("blkio.weight").exists() || blkio.join("blkio.bfq.weight").exists();
    if !weight && blkio.exists() {
        let o = d.docker(&[
            "run",
            "--name",
            "bw",
            "--blkio-weight",
            "300",
            "busybox",
            "echo",
            "ran",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ran");
        assert!(
            stderr(&o).contains(
                "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
            ),
            "{}",
            stderr(&o)
        );
        assert_eq!(
            ok(d.docker(&["inspect", "-f", "{{.HostConfig.BlkioWeight}}", "bw"])),
            "0"
        );
        ok(d.docker(&["rm", "bw"]));
    }
}

/// A stopped container with a healthcheck reads `unhealthy` (as moby's stop makes it), and a
/// container without volumes has `Config.Volumes` null.
#[test]
fn a_stopped_container_is_unhealthy_and_empty_volumes_are_null() {
    let d = daemon();
    ok(d.docker(&[
        "run",
        "--name",
        "hs",
        "--health-cmd",
        "true",
        "--health-interval",
        "30s",
        "busybox",
        "true",
    ]));
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{.State.Health.Status}} {{json .Config.Volumes}}",
            "hs"
        ])),
        "unhealthy null"
    );
    ok(d.docker(&["rm", "hs"]));
}

/// `docker cp c:/dir/. dest` copies the directory's contents: the archive names them `./x`
/// (as Docker's, which the CLI rebases), long names and hard links included.
#[test]
fn cp_of_a_directorys_contents() {
    let d = daemon();
    let long = format!("/x/{}/{}", "d".repeat(60), "e".repeat(60));
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "src",
        "busybox",
        "sh",
        "-c",
        &format!(
            "mkdir -p {long} /x/sub && echo 1 > /x/a && ln /x/a /x/hard && echo 2 > /x/sub/b \
             && echo deep > {long}/f && sleep 60"
        ),
    ]));
    let dest = d.dir.join("contents");
    let mut copied = false;
    for _ in 0..50 {
        let o = d.docker(&["cp", "src:/x/.", dest.to_str().unwrap()]);
        if o.status.success() && dest.join("sub/b").exists() {
            copied = true;
            break;
        }
        let _ = std::fs::remove_dir_all(&dest);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(copied, "docker cp src:/x/. never copied");
    assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "1\n");
    assert_eq!(std::fs::read_to_string(dest.join("sub/b")).unwrap(), "2\n");
    assert_eq!(
        std::fs::read_to_string(dest.join(long.trim_start_matches("/x/")).join("f")).unwrap(),
        "deep\n"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(dest.join("a")).unwrap().ino(),
        std::fs::metadata(dest.join("hard")).unwrap().ino()
    );
    assert!(!dest.join("x").exists());
    let tar = d.docker(&["cp", "src:/x/.", "-"]);
    let mut names = Vec::new();
    for e in tar::Archive::new(&tar.stdout[..]).entries().unwrap() {
        names.push(String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned());
    }
    assert!(names.iter().all(|n| n.starts_with("./")), "{names:?}");
    // A symlink's stat names what it finally leads to as an absolute path in the container,
    // as dockerd's does (the docker CLI's `cp -L` copies from there; SDKs read it as is).
    let stat = d.http(
        "HEAD",
        "/v1.41/containers/src/archive?path=/bin/sha512sum",
        None,
    );
    let header = stat
        .headers
        .iter()
        .find(|(k, _)| k == "x-docker-container-path-stat")
        .map(|(_, v)| v.clone())
        .unwrap();
    let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, header)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap();
    assert!(
        decoded.contains(r#""linkTarget":"/bin/busybox""#),
        "{decoded}"
    );
    // An upload into a file (not a directory) is refused in moby's words.
    let r = d.http(
        "PUT",
        "/v1.41/containers/src/archive?path=/bin/sha512sum",
        Some(b"not a tar"),
    );
    assert_eq!(
        (r.status, r.json()["message"].as_str().unwrap().to_owned()),
        (400, "extraction point is not a directory".to_owned())
    );
    let followed = d.dir.join("followed");
    ok(d.docker(&["cp", "-L", "src:/bin/sha512sum", followed.to_str().unwrap()]));
    assert!(std::fs::metadata(&followed).unwrap().len() > 100_000);
    // A tar stream may come compressed, as the API says: gzip, bzip2, xz, zstd.
    let plain = &tar.stdout;
    for tool in ["gzip", "bzip2", "xz", "zstd"] {
        let mut child = std::process::Command::new(tool)
            .args(["-c", "-q"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        let mut stdin = child.stdin.take().unwrap();
        let data = plain.clone();
        let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
        let packed = child.wait_with_output().unwrap().stdout;
        feeder.join().unwrap().unwrap();
        let dir = format!("/in-{tool}");
        ok(d.docker(&["exec", "src", "mkdir", &dir]));
        ok(d.docker_stdin(&["cp", "-", &format!("src:{dir}")], Some(&packed)));
        assert_eq!(
            ok(d.docker(&["exec", "src", "cat", &format!("{dir}/sub/b")])),
            "2"
        );
    }
    ok(d.docker(&["rm", "-f", "src"]));
}

/// `docker cp` into a container keeps the host file's owner, as dockerd does; with `-a` the
/// files belong to the container's user.
#[test]
fn cp_into_a_container_keeps_owners_as_dockerd() {
    let d = daemon();
    let file = d.dir.join("owned");
    std::fs::write(&file, "x").unwrap();
    std::os::unix::fs::chown(&file, Some(1234), Some(1235)).unwrap();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "own",
        "-u",
        "1000:1001",
        "busybox",
        "sleep",
        "60",
    ]));
    let f = file.to_str().unwrap();
    ok(d.docker(&["cp", f, "own:/tmp/plain"]));
    ok(d.docker(&["cp", "-a", f, "own:/tmp/archive"]));
    assert_eq!(
        ok(d.docker(&[
            "exec",
            "own",
            "stat",
            "-c",
            "%u:%g",
            "/tmp/plain",
            "/tmp/archive"
        ])),
        "1234:1235\n1000:1001"
    );
    ok(d.docker(&["rm", "-f", "own"]));
}

/// Log options as dockerd checks them (unknown options and drivers Berth has not are refused,
/// not silently ignored), and `logs --tail` with a value that is not a count means all.
#[test]
fn log_options_are_checked_and_a_bad_tail_means_all() {
    let d = daemon();
    // Attributes: the named labels and variables and the tag, on every line of the json-file
    // log and before each line with --details (query-escaped, by key), as dockerd.
    ok(d.docker(&[
        "run",
        "--name",
        "attrs",
        "--label",
        "a=1",
        "--label",
        "c=with space",
        "-e",
        "E1=x",
        "--log-opt",
        "labels=a,c",
        "--log-opt",
        "env=E1",
        "--log-opt",
        "tag={{.Name}}",
        "busybox",
        "echo",
        "hi",
    ]));
    assert_eq!(
        ok(d.docker(&["logs", "--details", "attrs"])),
        "E1=x,a=1,c=with+space,tag=attrs hi"
    );
    let path = ok(d.docker(&["inspect", "-f", "{{.LogPath}}", "attrs"]));
    let line = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(
        v["attrs"],
        serde_json::json!({"E1": "x", "a": "1", "c": "with space", "tag": "attrs"})
    );
    assert!(
        line.starts_with(r#"{"log":"hi\n","stream":"stdout","attrs":{"#),
        "{line}"
    );
    ok(d.docker(&["rm", "attrs"]));
    common::assert_refused(
        &d.docker(&["run", "--rm", "--log-opt", "bogus=1", "busybox", "true"]),
        125,
        "unknown log opt 'bogus' for json-file log driver",
    );
    common::assert_refused(
        &d.docker(&["run", "--rm", "--log-driver", "syslog", "busybox", "true"]),
        125,
        "\"syslog\" is not supported",
    );
    ok(d.docker(&[
        "run",
        "--name",
        "tl",
        "--log-driver",
        "local",
        "busybox",
        "sh",
        "-c",
        "echo a; echo b",
    ]));
    for tail in ["-1", "abc", "all"] {
        assert_eq!(
            stdout(&d.docker(&["logs", "--tail", tail, "tl"])),
            "a\nb\n",
            "--tail {tail}"
        );
    }
    assert_eq!(stdout(&d.docker(&["logs", "--tail", "1", "tl"])), "b\n");
    ok(d.docker(&["rm", "tl"]));
}

/// What dockerd checks at create (so nothing is left behind by a start that cannot work), and
/// the defaults it writes into `HostConfig`.
#[test]
fn create_checks_and_host_config_defaults_as_dockerd() {
    let d = daemon();
    common::assert_refused(
        &d.docker(&["run", "--rm", "-e", "=x", "busybox", "true"]),
        125,
        "invalid environment variable: =x",
    );
    common::assert_refused(
        &d.docker(&["run", "--rm", "-w", "relative", "busybox", "true"]),
        125,
        "the working directory 'relative' is invalid, it needs to be an absolute path",
    );
    common::assert_refused(
        &d.docker(&["run", "--rm", "--cpuset-cpus", "999", "busybox", "true"]),
        125,
        "Requested CPUs are not available - requested 999, available: ",
    );
    common::assert_refused(
        &d.docker(&["run", "--rm", "--cpuset-cpus", "1-x", "busybox", "true"]),
        125,
        "Invalid value 1-x for cpuset cpus",
    );
    // None of those made a container.
    assert_eq!(ok(d.docker(&["ps", "-aq"])), "");
    ok(d.docker(&["create", "--name", "dflt", "busybox", "true"]));
    let hc = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.ShmSize}} {{.HostConfig.IpcMode}} {{.HostConfig.OomKillDisable}} {{json .HostConfig.ConsoleSize}} {{.HostConfig.Runtime}}",
        "dflt",
    ]));
    assert_eq!(hc, "67108864 private false [0,0] berth");
    // The hostname is written into the config at create: the short id.
    let (id, hostname) = (
        ok(d.docker(&["inspect", "-f", "{{.Id}}", "dflt"])),
        ok(d.docker(&["inspect", "-f", "{{.Config.Hostname}}", "dflt"])),
    );
    assert_eq!(hostname, id[..12]);
    // The shm size written down is the one the container gets.
    ok(d.docker(&["rm", "dflt"]));
    let shm = ok(d.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "grep /dev/shm /proc/mounts",
    ]));
    assert!(shm.contains("size=65536k"), "{shm}");
}

/// Events in dockerd's shape and order for images, commit, stop and prune: image events
/// carry `status`/`id` and the image's labels; a commit tags, then commits, then unpauses;
/// stop sends `kill` events for its signal and for the SIGKILL after the timeout; every
/// prune says so. And `ps` shows a container's image by id once its tag is gone.
#[test]
fn events_of_images_commit_stop_and_prune() {
    let d = daemon();
    let since = common::unix_now().to_string();
    ok(d.docker(&[
        "run", "-d", "--name", "ev1", "--label", "c=1", "busybox", "sleep", "60",
    ]));
    let img = ok(d.docker(&["commit", "-c", "LABEL team=a", "ev1", "lbl:1"]));
    ok(d.docker(&["tag", "lbl:1", "lbl:2"]));
    // `sleep` as pid 1 ignores SIGTERM: the stop ends with SIGKILL.
    ok(d.docker(&["stop", "-t", "1", "ev1"]));
    ok(d.docker(&["rm", "ev1"]));
    ok(d.docker(&["rmi", "lbl:2"]));
    ok(d.docker(&["run", "-d", "--name", "ev2", "lbl:1", "sleep", "60"]));
    ok(d.docker(&["rmi", "-f", "lbl:1"]));
    assert_eq!(
        ok(d.docker(&["ps", "--filter", "name=ev2", "--format", "{{.Image}}"])),
        &img[7..19],
        "the untagged image is shown by id"
    );
    ok(d.docker(&["rm", "-f", "ev2"]));
    ok(d.docker(&["container", "prune", "-f"]));
    ok(d.docker(&["image", "prune", "-f"]));
    ok(d.docker(&["network", "prune", "-f"]));
    let out = d.events_since(&since, &["--format", "{{json .}}"]);
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seq: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["Type"].as_str().unwrap(),
                e["Action"].as_str().unwrap()
            )
        })
        .collect();
    let find = |what: &str, from: usize| {
        seq.iter()
            .skip(from)
            .position(|s| s == what)
            .map(|i| i + from)
            .unwrap_or_else(|| panic!("no {what:?} after {from} in {seq:#?}"))
    };
    // Commit: pause, the new tag, the commit, unpause.
    let pause = find("container pause", 0);
    let tag = find("image tag", pause);
    let commit = find("container commit", tag);
    find("container unpause", commit);
    let t = &events[tag];
    assert_eq!(t["status"], "tag", "{t}");
    assert_eq!(t["id"], img.as_str(), "{t}");
    assert_eq!(t["Actor"]["Attributes"]["team"], "a", "{t}");
    assert_eq!(t["Actor"]["Attributes"]["name"], "lbl:1", "{t}");
    assert!(t.get("from").is_none(), "{t}");
    let c = &events[commit]["Actor"]["Attributes"];
    assert_eq!(
        (&c["c"], &c["image"], &c["imageRef"], &c["imageID"]),
        (
            &serde_json::json!("1"),
            &serde_json::json!("busybox"),
            &serde_json::json!("lbl:1"),
            &serde_json::json!(img)
        ),
        "{c}"
    );
    // Stop: kill with SIGTERM, kill with SIGKILL, die, stop.
    let k1 = find("container kill", commit);
    let k2 = find("container kill", k1 + 1);
    let die = find("container die", k2);
    find("container stop", die);
    assert_eq!(events[k1]["Actor"]["Attributes"]["signal"], "15");
    assert_eq!(events[k2]["Actor"]["Attributes"]["signal"], "9");
    // The untag of lbl:2 still carries the image's labels.
    let untag = find("image untag", die);
    assert_eq!(events[untag]["Actor"]["Attributes"]["team"], "a");
    // Each prune.
    for kind in ["container", "image", "network"] {
        let p = &events[find(&format!("{kind} prune"), untag)];
        assert_eq!(p["Actor"]["ID"], "", "{p}");
        assert!(p.get("id").is_none(), "{p}");
        if kind != "network" {
            assert!(p["Actor"]["Attributes"]["reclaimed"].is_string(), "{p}");
        }
    }
}

/// `docker cp` sees a stopped container's volumes where it has them, as dockerd mounts them
/// for the copy; a read-only container takes files into its writable volume only.
#[test]
fn cp_reaches_the_volumes_of_stopped_and_read_only_containers() {
    let d = daemon();
    ok(d.docker(&[
        "run",
        "--name",
        "vs",
        "-v",
        "cpvol:/vol",
        "busybox",
        "sh",
        "-c",
        "echo x > /vol/v.txt",
    ]));
    let out = d.docker(&["cp", "vs:/vol/v.txt", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut tar = tar::Archive::new(&out.stdout[..]);
    let mut entry = tar.entries().unwrap().next().unwrap().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
    assert_eq!(text, "x\n");
    let f = d.dir.join("new.txt");
    std::fs::write(&f, "new\n").unwrap();
    ok(d.docker(&["cp", f.to_str().unwrap(), "vs:/vol/new.txt"]));
    // It went to the volume (seen by another container), not under the mount point.
    assert_eq!(
        ok(d.docker(&[
            "run",
            "--rm",
            "-v",
            "cpvol:/v",
            "busybox",
            "cat",
            "/v/new.txt"
        ])),
        "new"
    );
    assert!(!ok(d.docker(&["diff", "vs"])).contains("new.txt"));
    // Read-only: into the volume yes (stopped or running), into the root no.
    ok(d.docker(&[
        "create",
        "--name",
        "ro",
        "--read-only",
        "-v",
        "cpvol:/vol",
        "busybox",
        "sleep",
        "60",
    ]));
    ok(d.docker(&["cp", f.to_str().unwrap(), "ro:/vol/from-ro.txt"]));
    common::assert_refused(
        &d.docker(&["cp", f.to_str().unwrap(), "ro:/new.txt"]),
        1,
        "container rootfs is marked read-only",
    );
    ok(d.docker(&["start", "ro"]));
    ok(d.docker(&["cp", f.to_str().unwrap(), "ro:/vol/running.txt"]));
    assert_eq!(
        ok(d.docker(&["exec", "ro", "ls", "/vol"])),
        "from-ro.txt\nnew.txt\nrunning.txt\nv.txt"
    );
    ok(d.docker(&["rm", "-f", "vs", "ro"]));
    ok(d.docker(&["volume", "rm", "cpvol"]));
}

/// Starts and creates that dockerd refuses or warns about, through the docker CLI: starting a
/// paused container (a `--rm` one stays), a hostname with another container's network,
/// published ports on the host network.
#[test]
fn refusals_and_warnings_at_create_and_start() {
    let d = daemon();
    ok(d.docker(&[
        "run", "-d", "--rm", "--name", "held", "busybox", "sleep", "1000",
    ]));
    ok(d.docker(&["pause", "held"]));
    common::assert_refused(
        &d.docker(&["start", "held"]),
        1,
        "cannot start a paused container, try unpause instead",
    );
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{.State.Status}}", "held"])),
        "paused"
    );
    ok(d.docker(&["unpause", "held"]));
    common::assert_refused(
        &d.docker(&[
            "create",
            "--network",
            "container:held",
            "--hostname",
            "x",
            "busybox",
            "true",
        ]),
        1,
        "conflicting options: hostname and the network mode",
    );
    common::assert_refused(
        &d.docker(&["create", "--stop-signal", "SIGBOGUS", "busybox", "true"]),
        1,
        "Invalid signal: SIGBOGUS",
    );
    let o = d.docker(&[
        "create",
        "--name",
        "hostports",
        "--network",
        "host",
        "-p",
        "80:80",
        "busybox",
        "true",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("WARNING: Published ports are discarded when using host network mode"),
        "{}",
        stderr(&o)
    );
    ok(d.docker(&["rm", "-f", "held", "hostports"]));
}
