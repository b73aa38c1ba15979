//! Berth's own CLI (`berth`) against a test berthd: Docker's commands, flags, output and exit
//! codes.

mod common;

use common::{Daemon, ok, stderr, stdout};

fn daemon() -> Daemon {
    let d = Daemon::start();
    let tar = std::fs::read(common::busybox_tar()).unwrap();
    let id = ok(d.berth_stdin(&["import", "-", "busybox"], Some(&tar)));
    assert!(id.starts_with("sha256:"), "{id}");
    d
}

#[test]
fn run_rm_echo_hello() {
    let d = daemon();
    assert_eq!(
        ok(d.berth(&["run", "--rm", "busybox", "echo", "hello"])),
        "hello"
    );
    assert_eq!(ok(d.berth(&["ps", "-aq"])), "");
    // The container's directories leave with it (deleted in the background after a rename):
    // nothing of it stays in the data or exec root.
    let leftovers = || {
        let mut names = Vec::new();
        for sub in [
            "data/containers",
            "data/snapshots",
            "exec/containers",
            "exec/netns",
        ] {
            for e in std::fs::read_dir(d.dir.join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                let n = e.file_name().to_string_lossy().into_owned();
                // Layer snapshots are named by their 64-hex chain id.
                if !(sub == "data/snapshots" && n.len() == 64) {
                    names.push(format!("{sub}/{n}"));
                }
            }
        }
        names
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !leftovers().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(leftovers(), Vec::<String>::new());
}

#[test]
fn run_exit_codes_follow_docker() {
    let d = daemon();
    let code = |args: &[&str]| d.berth(args).status.code();
    assert_eq!(
        code(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]),
        Some(3)
    );
    let o = d.berth(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).contains("no-such-command"), "{}", stderr(&o));
    // A directory cannot be invoked.
    let o = d.berth(&["run", "--rm", "busybox", "/etc"]);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    let o = d.berth(&["run", "--rm", "no-such-image-here"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Unable to find image 'no-such-image-here:latest' locally"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&["run", "--bogus-flag", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("--bogus-flag"), "{}", stderr(&o));
    // An impossible limit is refused before anything runs.
    let o = d.berth(&["run", "--rm", "-m", "lots", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert_eq!(ok(d.berth(&["ps", "-aq"])), "", "nothing left behind");
}

#[test]
fn run_applies_process_flags() {
    let d = daemon();
    let env_file = d.dir.join("env.list");
    std::fs::write(&env_file, "# comment\nFROM_FILE=yes\n").unwrap();
    let out = ok(d.berth(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi there",
        "--env-file",
        env_file.to_str().unwrap(),
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "--hostname",
        "boxhost",
        "busybox",
        "sh",
        "-c",
        "echo \"$GREETING|$FROM_FILE|$(pwd)|$(id -u):$(id -g)|$(hostname)|$$\"",
    ]));
    assert_eq!(out, "hi there|yes|/tmp|1000:1000|boxhost|1");
    // --entrypoint replaces the command's program.
    assert_eq!(
        ok(d.berth(&["run", "--rm", "--entrypoint", "echo", "busybox", "a", "b"])),
        "a b"
    );
    // --read-only: the root refuses writes.
    let o = d.berth(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn security_flags_change_the_defaults() {
    let d = daemon();
    let capbnd = |extra: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "busybox",
            "sh",
            "-c",
            "grep -E '^(CapBnd|Seccomp):' /proc/self/status",
        ]);
        ok(d.berth(&args))
    };
    assert_eq!(capbnd(&[]), "CapBnd:\t00000000a80425fb\nSeccomp:\t2");
    // cap-drop of CHOWN (bit 0) and cap-add of NET_ADMIN (bit 12).
    assert_eq!(
        capbnd(&["--cap-drop", "chown", "--cap-add", "NET_ADMIN"]),
        "CapBnd:\t00000000a80435fa\nSeccomp:\t2"
    );
    assert_eq!(
        capbnd(&["--security-opt", "seccomp=unconfined"]),
        "CapBnd:\t00000000a80425fb\nSeccomp:\t0"
    );
    // Privileged: the host's whole bounding set, no seccomp.
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let host_bnd = host
        .lines()
        .find(|l| l.starts_with("CapBnd:"))
        .unwrap()
        .to_owned();
    assert_eq!(
        capbnd(&["--privileged"]),
        format!("{host_bnd}\nSeccomp:\t0")
    );
}

/// The seccomp filter (compiled once, installed by the container's init right before exec)
/// is in force in runs and execs, for root and other users, with exactly Docker's capability
/// sets left over: nothing borrowed to install it survives.
#[test]
fn seccomp_filter_holds_in_runs_and_execs() {
    let d = daemon();
    let status = "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status | tr '\\t\\n' '= '; \
                  unshare -U true 2>&1; echo rc=$?";
    let root = "CapInh:=0000000000000000 CapPrm:=00000000a80425fb CapEff:=00000000a80425fb \
                CapBnd:=00000000a80425fb CapAmb:=0000000000000000 NoNewPrivs:=0 Seccomp:=2 \
                unshare: unshare(0x10000000): Operation not permitted\nrc=1";
    let nobody = "CapInh:=0000000000000000 CapPrm:=0000000000000000 CapEff:=0000000000000000 \
                  CapBnd:=00000000a80425fb CapAmb:=0000000000000000 NoNewPrivs:=0 Seccomp:=2 \
                  unshare: unshare(0x10000000): Operation not permitted\nrc=1";
    assert_eq!(
        ok(d.berth(&["run", "--rm", "busybox", "sh", "-c", status])),
        root
    );
    assert_eq!(
        ok(d.berth(&["run", "--rm", "-u", "65534", "busybox", "sh", "-c", status])),
        nobody
    );
    // Without the filter the same call succeeds: the check above can tell.
    assert!(
        ok(d.berth(&[
            "run",
            "--rm",
            "--security-opt",
            "seccomp=unconfined",
            "busybox",
            "sh",
            "-c",
            status
        ]))
        .ends_with("Seccomp:=0 rc=0")
    );
    ok(d.berth(&["run", "-d", "--name", "sc", "busybox", "sleep", "1000"]));
    assert_eq!(ok(d.berth(&["exec", "sc", "sh", "-c", status])), root);
    assert_eq!(
        ok(d.berth(&["exec", "-u", "65534", "sc", "sh", "-c", status])),
        nobody
    );
    // A profile of the user's own, with its own errno, compiled and cached beside Docker's.
    let profile = d.dir.join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":28}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    for _ in 0..2 {
        assert_eq!(
            ok(d.berth(&[
                "run",
                "--rm",
                "--security-opt",
                &opt,
                "busybox",
                "sh",
                "-c",
                "mkdir /x 2>&1; echo rc=$?"
            ])),
            "mkdir: can't create directory '/x': No space left on device\nrc=1"
        );
    }
}

/// Namespaces come from a pool made ahead of time: each container still gets one of its own,
/// with loopback up and nothing else, and `--network host` gets the host's.
#[test]
fn each_container_gets_its_own_network_namespace() {
    let d = daemon();
    // The daemon's own namespace stands for the host's.
    let host = {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(format!("/run/netns/{}", d.netns.as_ref().unwrap()))
            .unwrap()
            .ino();
        std::path::PathBuf::from(format!("net:[{ino}]"))
    };
    let mut seen = std::collections::HashSet::new();
    for i in 0..4 {
        let name = format!("ns{i}");
        ok(d.berth(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "busybox",
            "sleep",
            "100",
        ]));
        let ns = ok(d.berth(&["exec", &name, "readlink", "/proc/self/ns/net"]));
        assert_ne!(
            ns,
            host.to_string_lossy(),
            "container {i} is in the host's namespace"
        );
        assert!(
            seen.insert(ns.clone()),
            "container {i} shares namespace {ns}"
        );
        assert_eq!(
            ok(d.berth(&[
                "exec",
                &name,
                "sh",
                "-c",
                "ls /sys/class/net; cat /sys/class/net/lo/operstate"
            ])),
            "lo\nunknown"
        );
    }
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "--network",
            "host",
            "busybox",
            "readlink",
            "/proc/self/ns/net"
        ])),
        host.to_string_lossy()
    );
}

#[test]
fn resource_flags_reach_the_cgroup() {
    let d = daemon();
    let out = ok(d.berth(&[
        "run",
        "--rm",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "busybox",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max",
    ]));
    let v: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(v, ["50", "50000", "100000"], "{out}");
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "--ulimit",
            "nofile=1024:2048",
            "busybox",
            "sh",
            "-c",
            "ulimit -Sn; ulimit -Hn"
        ])),
        "1024\n2048"
    );
    // An rlimit above this host's hard limit (root here lacks CAP_SYS_RESOURCE) is a clear
    // error before anything runs, not a half-started container.
    let o = d.berth(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=999999999:999999999",
        "busybox",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("above this host's hard limit"),
        "{}",
        stderr(&o)
    );
    assert_eq!(ok(d.berth(&["ps", "-aq"])), "");
}

#[test]
fn detached_lifecycle() {
    let d = daemon();
    let id = ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "worker",
        "-l",
        "tier=back",
        "busybox",
        "sh",
        "-c",
        "echo err >&2; sleep 0.2; echo one; echo two; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
    ]));
    assert_eq!(id.len(), 64, "{id}");
    ok(d.berth(&["create", "--name", "idle", "busybox", "true"]));

    // ps: running only by default, -a for all, filters, formats.
    assert_eq!(ok(d.berth(&["ps", "-q"])), &id[..12]);
    assert_eq!(ok(d.berth(&["ps", "-q", "--no-trunc"])), id);
    let all = ok(d.berth(&["ps", "-a", "--format", "{{.Names}}"]));
    let mut names: Vec<&str> = all.lines().collect();
    names.sort_unstable();
    assert_eq!(names, ["idle", "worker"]);
    assert_eq!(
        ok(d.berth(&[
            "ps",
            "-a",
            "--filter",
            "status=created",
            "--format",
            "{{.Names}}"
        ])),
        "idle"
    );
    assert_eq!(
        ok(d.berth(&[
            "ps",
            "--filter",
            "label=tier=back",
            "--format",
            "{{.Names}} {{.Image}}"
        ])),
        "worker busybox"
    );
    let table = ok(d.berth(&["ps"]));
    assert!(
        table.starts_with("CONTAINER ID   IMAGE     COMMAND"),
        "{table}"
    );

    // logs: both streams, tail, timestamps.
    let mut logs = String::new();
    for _ in 0..50 {
        logs = stdout(&d.berth(&["logs", "worker"]));
        if logs.contains("two") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(logs, "one\ntwo\n");
    assert_eq!(stderr(&d.berth(&["logs", "worker"])), "err\n");
    assert_eq!(ok(d.berth(&["logs", "--tail", "1", "worker"])), "two");
    let ts = ok(d.berth(&["logs", "-t", "--tail", "1", "worker"]));
    assert!(ts.ends_with("Z two") && ts.starts_with("20"), "{ts}");

    // exec with env, workdir, user; exit code.
    assert_eq!(
        ok(d.berth(&[
            "exec",
            "-e",
            "X=1",
            "-w",
            "/etc",
            "-u",
            "nobody",
            "worker",
            "sh",
            "-c",
            "echo $X $(pwd) $(id -un)"
        ])),
        "1 /etc nobody"
    );
    assert_eq!(d.berth(&["exec", "worker", "false"]).status.code(), Some(1));
    let o = d.berth(&["exec", "worker", "no-such-cmd"]);
    assert_eq!(o.status.code(), Some(127), "{}{}", stdout(&o), stderr(&o));
    assert!(
        (stdout(&o) + &stderr(&o)).contains("executable file not found"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );

    // inspect with a Go template.
    assert_eq!(
        ok(d.berth(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.Config.Labels.tier}} {{.HostConfig.NetworkMode}}",
            "worker"
        ])),
        "running back default"
    );

    // stop runs the trap, the exit code is recorded, wait returns it.
    assert_eq!(ok(d.berth(&["stop", "worker"])), "worker");
    assert_eq!(ok(d.berth(&["wait", "worker"])), "0");
    assert_eq!(ok(d.berth(&["logs", "--tail", "1", "worker"])), "bye");
    assert_eq!(
        ok(d.berth(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "worker"
        ])),
        "exited 0"
    );
    // start again; kill gives 137.
    ok(d.berth(&["start", "worker"]));
    ok(d.berth(&["kill", "worker"]));
    assert_eq!(ok(d.berth(&["wait", "worker"])), "137");
    ok(d.berth(&["restart", "worker"]));
    assert_eq!(
        ok(d.berth(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.RestartCount}}",
            "worker"
        ])),
        "true 0"
    );
    // rm of a running container is refused, -f forces it.
    let o = d.berth(&["rm", "worker"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("You cannot remove a running container"),
        "{}",
        stderr(&o)
    );
    assert_eq!(ok(d.berth(&["rm", "-f", "worker", "idle"])), "worker\nidle");
    assert_eq!(ok(d.berth(&["ps", "-aq"])), "");
}

#[test]
fn errors_read_like_docker() {
    let d = daemon();
    for (args, msg) in [
        (
            &["rm", "nope"][..],
            "Error response from daemon: No such container: nope",
        ),
        (
            &["stop", "nope"][..],
            "Error response from daemon: No such container: nope",
        ),
        (
            &["logs", "nope"][..],
            "Error response from daemon: No such container: nope",
        ),
        (
            &["exec", "nope", "true"][..],
            "Error response from daemon: No such container: nope",
        ),
        (&["inspect", "nope"][..], "Error: No such object: nope"),
        (
            &["rmi", "nope"][..],
            "Error response from daemon: No such image: nope:latest",
        ),
    ] {
        let o = d.berth(args);
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
    }
    ok(d.berth(&["run", "-d", "--name", "taken", "busybox", "sleep", "100"]));
    let o = d.berth(&["run", "-d", "--name", "taken", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("Conflict. The container name \"/taken\" is already in use"),
        "{}",
        stderr(&o)
    );
    ok(d.berth(&["rm", "-f", "taken"]));
}

#[test]
fn images_import_tag_rmi() {
    let d = daemon();
    let table = ok(d.berth(&["images"]));
    let mut lines = table.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("REPOSITORY   TAG       IMAGE ID"),
        "{table}"
    );
    assert!(
        lines.next().unwrap().starts_with("busybox      latest    "),
        "{table}"
    );
    ok(d.berth(&["tag", "busybox", "example.com/team/box:v1"]));
    let refs = ok(d.berth(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    let mut refs: Vec<&str> = refs.lines().collect();
    refs.sort_unstable();
    assert_eq!(refs, ["busybox:latest", "example.com/team/box:v1"]);
    let id = ok(d.berth(&["inspect", "-f", "{{.Id}}", "busybox"]));
    assert_eq!(
        ok(d.berth(&["inspect", "-f", "{{.Id}}", "example.com/team/box:v1"])),
        id
    );
    // The tagged name runs the same image.
    assert_eq!(
        ok(d.berth(&["run", "--rm", "example.com/team/box:v1", "echo", "ok"])),
        "ok"
    );
    assert_eq!(
        ok(d.berth(&["rmi", "example.com/team/box:v1"])),
        "Untagged: example.com/team/box:v1"
    );
    // An image used by a container is not removed without -f.
    ok(d.berth(&["create", "--name", "user", "busybox", "true"]));
    let o = d.berth(&["rmi", "busybox"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("conflict"), "{}", stderr(&o));
    ok(d.berth(&["rm", "user"]));
    let out = ok(d.berth(&["rmi", "busybox"]));
    assert!(
        out.contains("Untagged: busybox:latest") && out.contains(&format!("Deleted: {id}")),
        "{out}"
    );
    assert_eq!(ok(d.berth(&["images", "-q"])), "");
}

#[test]
fn version_and_info() {
    let d = daemon();
    assert_eq!(
        ok(d.berth(&["version", "--format", "{{.Server.APIVersion}}"])),
        "1.50"
    );
    let info = ok(d.berth(&["info"]));
    assert!(info.contains("Server Version:"), "{info}");
    assert!(info.contains("Cgroup Version:"), "{info}");
    assert!(info.contains("Images: 1"), "{info}");
    // The default network is a real bridge: no warning about it.
    let warnings = stderr(&d.berth(&["info"])) + &info;
    assert!(!warnings.contains("loopback"), "{warnings}");
    assert_eq!(
        ok(d.berth(&["info", "--format", "{{json .Plugins.Network}}"])),
        r#"["bridge","host","null"]"#
    );
    assert_eq!(ok(d.berth(&["info", "--format", "{{.Containers}}"])), "0");
}

#[test]
fn berth_honours_docker_host() {
    let d = daemon();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["ps", "-a", "-q"])
        .env("DOCKER_HOST", d.host())
        .env_remove("BERTH_HOST")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["version", "--format", "{{.Server.Os}}"])
        .env("BERTH_HOST", d.host())
        .env("DOCKER_HOST", "unix:///nonexistent/sock")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "linux",
        "{}",
        stderr(&o)
    );
    // No daemon: a clear error and a failure exit.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["-H", "unix:///nonexistent/berth.sock", "ps"])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("/nonexistent/berth.sock"),
        "{}",
        stderr(&o)
    );
}

/// The known runtime escapes: the shim binary that every container process runs until it
/// execs its command lies on a read-only mount (CVE-2019-5736), no host fd reaches the
/// container, and a working directory under `/proc/self/fd` is refused (CVE-2024-21626).
#[test]
fn runtime_escapes_are_closed() {
    let d = daemon();
    ok(d.berth(&["run", "-d", "--name", "long", "busybox", "sleep", "1000"]));
    let shims: Vec<i32> = common::processes_mentioning(&format!("{}/", d.dir.display()))
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("shim.json"))
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(shims.len(), 1, "one shim for one container");
    for pid in shims {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert!(exe.ends_with("exec/bin/berth-shim"), "{}", exe.display());
        let path = std::ffi::CString::new(format!("/proc/{pid}/exe")).unwrap();
        // SAFETY: statvfs is plain old data; all-zero is a valid value.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: statvfs fills the struct it is given from a valid C string path.
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        assert_eq!(rc, 0);
        assert_ne!(
            st.f_flag & libc::ST_RDONLY,
            0,
            "the shim's exe is on a writable mount"
        );
    }
    // Only the standard streams (and ls's own directory fd) are open in the container.
    assert_eq!(
        ok(d.berth(&["run", "--rm", "busybox", "ls", "/proc/self/fd"]))
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "1", "2", "3"]
    );
    assert_eq!(
        ok(d.berth(&["exec", "long", "ls", "/proc/self/fd"]))
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "1", "2", "3"]
    );
    let o = d.berth(&["run", "--rm", "-w", "/proc/self/fd/5", "busybox", "pwd"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("/proc/self/fd/5"), "{}", stderr(&o));
    ok(d.berth(&["rm", "-f", "long"]));
}

/// A container cannot change its own limits: its cgroup mounts are read-only (libcontainer
/// leaves them writable on a cgroup v1 host), as in Docker; a privileged one may write them.
#[test]
fn a_container_cannot_raise_its_own_cgroup_limits() {
    let d = daemon();
    let out = ok(d.berth(&[
        "run",
        "--rm",
        "--pids-limit",
        "20",
        "--memory",
        "64m",
        "busybox",
        "sh",
        "-c",
        "for f in pids/pids.max pids.max; do [ -e /sys/fs/cgroup/$f ] && p=/sys/fs/cgroup/$f; done; \
         { echo max > $p; } 2>/dev/null && echo WROTE; cat $p; mkdir /sys/fs/cgroup/x 2>/dev/null && echo MADE; \
         grep -c ' /sys/fs/cgroup[ /][^ ]* rw,' /proc/self/mountinfo; true",
    ]));
    assert_eq!(out, "20\n0", "{out}");
    let out = ok(d.berth(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "grep -c ' /sys/fs/cgroup[ /][^ ]* rw,' /proc/self/mountinfo",
    ]));
    assert_ne!(
        out, "0",
        "a privileged container's cgroup mounts are writable"
    );
}

/// `berth run --device-read-bps/--device-write-iops` reach the blkio cgroup; bad values are
/// refused by the CLI with the docker CLI's words.
#[test]
fn block_io_throttle_flags() {
    let d = daemon();
    let (dev, numbers) = common::some_block_device();
    let out = ok(d.berth(&[
        "run",
        "--rm",
        "--device-read-bps",
        &format!("{dev}:2mb"),
        "--device-write-iops",
        &format!("{dev}:50"),
        "busybox",
        "sh",
        "-c",
        common::BLKIO_THROTTLES,
    ]));
    assert!(
        common::shows_throttles(&out, &numbers, 2097152, 50),
        "{out}"
    );
    for (flag, value, msg) in [
        ("--device-read-bps", "vda:2mb", "bad format for device path"),
        (
            "--device-read-iops",
            "/dev/vda:x",
            "invalid rate for device",
        ),
    ] {
        common::assert_refused(
            &d.berth(&["run", "--rm", flag, value, "busybox", "true"]),
            125,
            msg,
        );
    }
}

/// An exec (started by the shim itself, without the runtime helper) lands where the
/// container's init is: the same cgroups and namespaces, the container's rlimits, its seccomp
/// filter and no_new_privs; a working directory outside the container is refused, and a
/// failure reads and exits as Docker's.
#[test]
fn exec_joins_the_containers_cgroups_namespaces_and_limits() {
    let d = daemon();
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "ex",
        "--ulimit",
        "nofile=100:200",
        "--security-opt",
        "no-new-privileges",
        "--memory",
        "64m",
        "busybox",
        "sleep",
        "1000",
    ]));
    let same = "for n in mnt uts ipc net pid cgroup; do \
                  [ \"$(readlink /proc/self/ns/$n)\" = \"$(readlink /proc/1/ns/$n)\" ] || echo ns $n differs; \
                done; \
                [ \"$(cat /proc/self/cgroup)\" = \"$(cat /proc/1/cgroup)\" ] || echo cgroups differ; \
                [ \"$(cut -d' ' -f6 /proc/$$/stat)\" = \"$$\" ] || echo not a session leader; \
                echo $(ulimit -Sn) $(ulimit -Hn); grep -E '^(SigIgn|NoNewPrivs|Seccomp):' /proc/self/status | tr '\t\n' '= '";
    assert_eq!(
        ok(d.berth(&["exec", "ex", "sh", "-c", same])),
        "100 200\nSigIgn:=0000000000000000 NoNewPrivs:=1 Seccomp:=2"
    );
    // No signal arrives ignored in a container's init either (Docker's have none).
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "busybox",
            "grep",
            "SigIgn",
            "/proc/self/status"
        ])),
        "SigIgn:\t0000000000000000"
    );
    // From the host: the exec'd process sits in the init's cgroups, a child of the shim.
    ok(d.berth(&["exec", "-d", "ex", "sleep", "999"]));
    let top = ok(d.berth(&["top", "ex"]));
    let pid_of = |cmd: &str| -> i32 {
        top.lines()
            .find(|l| l.ends_with(cmd))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{cmd} not in top: {top}"))
    };
    let (init, exec) = (pid_of("sleep 1000"), pid_of("sleep 999"));
    let cg = |p: i32| std::fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap();
    assert_eq!(cg(exec), cg(init));
    assert!(cg(init).contains(":memory:/"), "{}", cg(init));
    // A directory fd is never there to escape through, and the cwd is checked anyway.
    let o = d.berth(&["exec", "-w", "/proc/self/fd/3", "ex", "pwd"]);
    let out = stdout(&o) + &stderr(&o);
    assert_eq!(o.status.code(), Some(126), "{out}");
    assert!(
        out.contains("OCI runtime exec failed") && out.contains("chdir to cwd"),
        "{out}"
    );
    // A file on PATH that cannot be run is skipped, as runc's lookup does: "not found", 127.
    ok(d.berth(&[
        "exec",
        "ex",
        "sh",
        "-c",
        "mkdir -p /usr/local/bin && touch /usr/local/bin/nox && chmod 644 /usr/local/bin/nox",
    ]));
    let o = d.berth(&["exec", "ex", "nox"]);
    let out = stdout(&o) + &stderr(&o);
    assert_eq!(o.status.code(), Some(127), "{out}");
    assert!(out.contains("executable file not found"), "{out}");
    let o = d.berth(&["exec", "ex", "/no/such"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    ok(d.berth(&["rm", "-f", "ex"]));
}

/// After a reboot (daemon, shims and containers all gone), `always` and `unless-stopped`
/// containers start again with the daemon; a stopped `unless-stopped` one and a `no` one
/// stay down.
#[test]
fn restart_policies_after_a_reboot() {
    let mut d = daemon();
    for (name, policy) in [
        ("alw", "always"),
        ("uns", "unless-stopped"),
        ("uns-stopped", "unless-stopped"),
        ("never", "no"),
    ] {
        ok(d.berth(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            "busybox",
            "sleep",
            "1000",
        ]));
    }
    ok(d.berth(&["stop", "-t", "1", "uns-stopped"]));
    let old_pid = ok(d.berth(&["inspect", "-f", "{{.State.Pid}}", "alw"]));
    d.reboot();
    let state = |name: &str| ok(d.berth(&["inspect", "-f", "{{.State.Status}}", name]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while (state("alw") != "running" || state("uns") != "running")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(state("alw"), "running", "{}", d.log());
    assert_eq!(state("uns"), "running");
    assert_eq!(state("uns-stopped"), "exited");
    assert_eq!(state("never"), "exited");
    assert_ne!(
        ok(d.berth(&["inspect", "-f", "{{.State.Pid}}", "alw"])),
        old_pid
    );
    // And they really run: exec works.
    assert_eq!(ok(d.berth(&["exec", "alw", "echo", "up"])), "up");
    ok(d.berth(&["rm", "-f", "alw", "uns", "uns-stopped", "never"]));
}

/// `--runtime runc`: the same container through an OCI runtime binary, with the same
/// defaults.
#[test]
fn runc_runtime_runs_containers() {
    if !std::path::Path::new("/usr/sbin/runc").exists()
        && !std::path::Path::new("/usr/bin/runc").exists()
    {
        panic!("runc is not installed (scripts/deps.sh installs it)");
    }
    let d = daemon();
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "--runtime",
            "runc",
            "busybox",
            "sh",
            "-c",
            "echo hi; grep CapBnd /proc/self/status"
        ])),
        "hi\nCapBnd:\t00000000a80425fb"
    );
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "viarunc",
        "--runtime",
        "runc",
        "busybox",
        "sleep",
        "1000",
    ]));
    assert_eq!(ok(d.berth(&["exec", "viarunc", "echo", "in"])), "in");
    assert_eq!(
        ok(d.berth(&[
            "inspect",
            "-f",
            "{{.HostConfig.Runtime}} {{.State.Status}}",
            "viarunc"
        ])),
        "runc running"
    );
    ok(d.berth(&["rm", "-f", "viarunc"]));
    let o = d.berth(&["run", "--rm", "--runtime", "nope", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
}

/// The rest of `run`'s runtime flags, each observed from inside the container.
#[test]
fn more_runtime_flags_take_effect() {
    let d = daemon();
    // (cgroup files at their v1 paths: this suite runs on cgroup v1 hosts.)
    // --init: PID 1 is the tiny init, the command runs under it.
    let out = ok(d.berth(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "tr '\\0' ' ' < /proc/1/cmdline; echo; echo $$",
    ]));
    let mut lines = out.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("/sbin/docker-init -- sh -c"),
        "{out}"
    );
    assert_ne!(lines.next().unwrap(), "1", "{out}");
    let df = ok(d.berth(&[
        "run",
        "--rm",
        "--shm-size",
        "16m",
        "busybox",
        "df",
        "-k",
        "/dev/shm",
    ]));
    assert!(
        df.lines().nth(1).unwrap().split_whitespace().nth(1) == Some("16384"),
        "{df}"
    );
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "--sysctl",
            "kernel.shmmax=1000000",
            "busybox",
            "cat",
            "/proc/sys/kernel/shmmax"
        ])),
        "1000000"
    );
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "--device",
            "/dev/null:/dev/mynull",
            "busybox",
            "sh",
            "-c",
            "[ -c /dev/mynull ] && echo x > /dev/mynull && echo wrote"
        ])),
        "wrote"
    );
    // Without --device, a device node made in the container cannot be opened (cgroup rule).
    let o = d.berth(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "mknod /tmp/sda b 8 0 && head -c1 /tmp/sda",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(
        ok(d.berth(&[
            "run", "--rm", "--cpuset-cpus", "0", "--cpu-shares", "512", "--security-opt", "no-new-privileges",
            "busybox", "sh", "-c",
            "cat /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/cpu/cpu.shares; grep NoNewPrivs /proc/self/status",
        ])),
        "0\n512\nNoNewPrivs:\t1"
    );
}

/// A clean stop (SIGTERM) with no container running leaves no mount behind, not even the
/// read-only mount the shims run from; with a container running, that mount stays for its
/// shim.
#[test]
fn clean_stop_leaves_no_mounts() {
    let mut d = daemon();
    ok(d.berth(&["run", "-d", "--name", "stays", "busybox", "sleep", "1000"]));
    assert_eq!(d.stop(), Some(0), "{}", d.log());
    let exec_bin = d.dir.join("exec/bin");
    assert!(common::mounts_under(&exec_bin).contains(&exec_bin));
    d.reboot();
    ok(d.berth(&["rm", "-f", "stays"]));
    assert_eq!(ok(d.berth(&["run", "--rm", "busybox", "echo", "x"])), "x");
    assert_eq!(d.stop(), Some(0), "{}", d.log());
    assert_eq!(
        common::mounts_under(&d.dir),
        Vec::<std::path::PathBuf>::new()
    );
}

/// `berth cp` follows Docker's path rules both ways: into a directory under the source's
/// name, onto a new name, a directory's content with `SRC/.`, a tar stream with `-`.
#[test]
fn cp_follows_docker_path_rules() {
    let d = daemon();
    let host = d.dir.join("cp");
    std::fs::create_dir_all(host.join("tree/sub")).unwrap();
    std::fs::write(host.join("tree/a.txt"), "alpha\n").unwrap();
    std::fs::write(host.join("tree/sub/b.txt"), "beta\n").unwrap();
    let h = |p: &str| host.join(p).to_string_lossy().into_owned();
    ok(d.berth(&["run", "-d", "--name", "bc", "busybox", "sleep", "1000"]));
    ok(d.berth(&["cp", &h("tree"), "bc:/tmp"]));
    ok(d.berth(&["cp", &h("tree"), "bc:/tmp/copy"]));
    ok(d.berth(&["cp", &h("tree/a.txt"), "bc:/tmp/one.txt"]));
    assert_eq!(
        ok(d.berth(&[
            "exec",
            "bc",
            "sh",
            "-c",
            "cat /tmp/tree/sub/b.txt /tmp/copy/a.txt /tmp/one.txt"
        ])),
        "beta\nalpha\nalpha"
    );
    // Out: into an existing directory, onto a new directory name, the content only.
    std::fs::create_dir_all(host.join("out")).unwrap();
    ok(d.berth(&["cp", "bc:/tmp/tree", &h("out")]));
    ok(d.berth(&["cp", "bc:/tmp/tree", &h("out/renamed")]));
    ok(d.berth(&["cp", "bc:/tmp/tree/.", &h("out/content")]));
    ok(d.berth(&["cp", "bc:/tmp/one.txt", &h("out/file.txt")]));
    for (p, want) in [
        ("out/tree/sub/b.txt", "beta\n"),
        ("out/renamed/a.txt", "alpha\n"),
        ("out/content/sub/b.txt", "beta\n"),
        ("out/file.txt", "alpha\n"),
    ] {
        assert_eq!(std::fs::read_to_string(host.join(p)).unwrap(), want, "{p}");
    }
    // A tar stream on stdout.
    let tar = d.berth(&["cp", "bc:/tmp/one.txt", "-"]);
    assert!(tar.status.success());
    let mut a = tar::Archive::new(&tar.stdout[..]);
    let names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["one.txt"]);
    // Errors read like Docker's.
    let e = d.berth(&["cp", "bc:/nope", &h("out")]);
    assert_eq!(e.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&e.stderr)
            .contains("Could not find the file /nope in container bc")
    );
    let e = d.berth(&["cp", &h("tree"), "bc:/tmp/one.txt"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("cannot copy a directory to a file"));
    ok(d.berth(&["rm", "-f", "bc"]));
}

/// `berth events` prints past events the very way the docker CLI prints them, default
/// format and `--format`, with filters.
#[test]
fn events_print_like_docker() {
    let d = daemon();
    let now = common::unix_now;
    let since = now().to_string();
    ok(d.berth(&[
        "run", "--name", "ev", "--label", "tier=web", "busybox", "true",
    ]));
    ok(d.berth(&["rm", "ev"]));
    let until = (now() + 1).to_string();
    let args = ["events", "--since", &since, "--until", &until];
    let docker = ok(d.docker(&args));
    assert_eq!(ok(d.berth(&args)), docker);
    let actions: Vec<&str> = docker
        .lines()
        .filter(|l| l.split(' ').nth(1) == Some("container"))
        .map(|l| l.split(' ').nth(2).unwrap())
        .collect();
    assert_eq!(
        actions,
        ["create", "attach", "start", "die", "destroy"],
        "{docker}"
    );
    let mut f = args.to_vec();
    f.extend([
        "--filter",
        "event=die",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
    ]);
    assert_eq!(ok(d.berth(&f)), "die ev 0");
    assert_eq!(ok(d.docker(&f)), "die ev 0");
    // Label filters: all must hold.
    let mut f = args.to_vec();
    f.extend([
        "--filter",
        "label=tier=web",
        "--filter",
        "event=destroy",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]);
    assert_eq!(ok(d.docker(&f)), "ev");
    f.extend(["--filter", "label=tier=db"]);
    assert_eq!(ok(d.docker(&f)), "");
}

/// `port` answers as Docker's: nothing published on `none`, and a clear error for a port.
#[test]
fn port_reports_like_docker() {
    let d = daemon();
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "pt",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]));
    assert_eq!(ok(d.berth(&["port", "pt"])), "");
    assert_eq!(ok(d.docker(&["port", "pt"])), "");
    let (b, k) = (
        d.berth(&["port", "pt", "80"]),
        d.docker(&["port", "pt", "80"]),
    );
    assert_eq!(b.status.code(), Some(1));
    assert_eq!(k.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&b.stderr),
        String::from_utf8_lossy(&k.stderr),
        "the very message docker prints"
    );
    ok(d.berth(&["rm", "-f", "pt"]));
}
