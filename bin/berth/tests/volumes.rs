//! Volumes and mounts end to end: named and anonymous volumes, binds, tmpfs, copy-up,
//! `--volumes-from`, removal rules, symlinks at mount destinations, and the same through the
//! real docker CLI.

mod common;

use std::path::Path;

use common::{Daemon, ok, stderr, stdout};

fn daemon() -> Daemon {
    let d = Daemon::start();
    d.import_busybox();
    d
}

/// An image from busybox with `script` run in it and `changes` (Dockerfile lines) applied.
fn image_from(d: &Daemon, tag: &str, script: &str, changes: &[&str]) {
    let name = format!("mk-{tag}");
    ok(d.berth(&["run", "--name", &name, "busybox", "sh", "-c", script]));
    let mut args = vec!["commit"];
    for c in changes {
        args.push("--change");
        args.push(c);
    }
    args.push(&name);
    args.push(tag);
    ok(d.berth(&args));
    ok(d.berth(&["rm", &name]));
}

#[test]
fn named_volume_outlives_its_container() {
    let d = daemon();
    assert_eq!(
        ok(d.berth(&["volume", "create", "--label", "app=db", "dbdata"])),
        "dbdata"
    );
    ok(d.berth(&[
        "run",
        "--name",
        "writer",
        "-v",
        "dbdata:/var/lib/db",
        "busybox",
        "sh",
        "-c",
        "echo rows > /var/lib/db/table",
    ]));
    ok(d.berth(&["rm", "-v", "writer"]));
    // `rm -v` keeps named volumes.
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "-v",
            "dbdata:/data",
            "busybox",
            "cat",
            "/data/table"
        ])),
        "rows"
    );
    let path = ok(d.berth(&["volume", "inspect", "-f", "{{.Mountpoint}}", "dbdata"]));
    assert_eq!(
        path,
        d.dir
            .join("data/volumes/dbdata/_data")
            .display()
            .to_string()
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(&path).join("table")).unwrap(),
        "rows\n"
    );
    let labels = ok(d.berth(&["volume", "inspect", "-f", "{{json .Labels}}", "dbdata"]));
    assert_eq!(labels, r#"{"app":"db"}"#);
    // And survives a daemon restart.
    let mut d = d;
    d.stop();
    d.crash_and_restart();
    assert_eq!(ok(d.berth(&["volume", "ls", "-q"])), "dbdata");
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "-v",
            "dbdata:/d",
            "busybox",
            "cat",
            "/d/table"
        ])),
        "rows"
    );
}

#[test]
fn bind_mounts_are_live_and_ro_refuses_writes() {
    let d = daemon();
    let src = d.dir.join("site");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("index.html"), "v1").unwrap();
    let spec = format!("{}:/srv:ro", src.display());
    ok(d.berth(&[
        "run", "-d", "--name", "web", "-v", &spec, "busybox", "sleep", "60",
    ]));
    assert_eq!(
        ok(d.berth(&["exec", "web", "cat", "/srv/index.html"])),
        "v1"
    );
    std::fs::write(src.join("index.html"), "v2").unwrap();
    assert_eq!(
        ok(d.berth(&["exec", "web", "cat", "/srv/index.html"])),
        "v2"
    );
    let o = d.berth(&["exec", "web", "sh", "-c", "echo x > /srv/new"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert!(!src.join("new").exists());
    let m = ok(d.berth(&["inspect", "-f", "{{range .Mounts}}{{.Type}} {{.Source}} {{.Destination}} {{.Mode}} {{.RW}} {{.Propagation}}{{end}}", "web"]));
    assert_eq!(m, format!("bind {} /srv ro false rprivate", src.display()));
    ok(d.berth(&["rm", "-f", "web"]));

    // A writable bind writes through to the host; `-v` creates a missing source.
    let made = d.dir.join("made/by/v");
    let spec = format!("{}:/out", made.display());
    ok(d.berth(&[
        "run",
        "--rm",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "echo hi > /out/f",
    ]));
    assert_eq!(std::fs::read_to_string(made.join("f")).unwrap(), "hi\n");
    // `--mount` refuses a missing source, as Docker.
    let missing = d.dir.join("missing");
    let o = d.berth(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,source={},target=/x", missing.display()),
        "busybox",
        "true",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("bind source path does not exist"),
        "{}",
        stderr(&o)
    );
    assert!(!missing.exists());
}

#[test]
fn tmpfs_is_empty_at_each_start_and_sized() {
    let d = daemon();
    ok(d.berth(&[
        "create", "--name", "tm", "--tmpfs", "/scratch:size=2m",
        "--mount", "type=tmpfs,target=/m,tmpfs-size=1m,tmpfs-mode=1770",
        "busybox", "sh", "-c",
        "ls -A /scratch; touch /scratch/left; df -k /scratch /m | tail -2; stat -c %a /m; grep ' /scratch ' /proc/mounts",
    ]));
    ok(d.berth(&["start", "tm"]));
    ok(d.berth(&["wait", "tm"]));
    let first = ok(d.berth(&["logs", "tm"]));
    ok(d.berth(&["start", "tm"]));
    ok(d.berth(&["wait", "tm"]));
    let both = ok(d.berth(&["logs", "tm"]));
    let second = both[first.len()..].trim();
    for out in [first.as_str(), second] {
        assert!(
            !out.contains("left"),
            "tmpfs kept a file across starts: {out}"
        );
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].split_whitespace().nth(1) == Some("2048"), "{out}");
        assert!(lines[1].split_whitespace().nth(1) == Some("1024"), "{out}");
        assert_eq!(lines[2], "1770", "{out}");
        assert!(
            lines[3].contains("noexec") && lines[3].contains("nosuid"),
            "{out}"
        );
    }
    // --mount tmpfs shows in Mounts; --tmpfs does not (as Docker).
    let m = ok(d.berth(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}",
        "tm",
    ]));
    assert_eq!(m, "tmpfs:/m");
}

#[test]
fn image_volume_content_is_copied_into_the_anonymous_volume() {
    let d = daemon();
    image_from(
        &d,
        "seeded",
        "mkdir -p /data/sub && echo seeded > /data/sub/f && chown -R 1000:1000 /data && \
         chmod 1777 /data && chmod 640 /data/sub/f && ln -s /etc/passwd /data/link",
        &["VOLUME /data"],
    );
    let out = ok(d.berth(&[
        "run", "--name", "c1", "seeded", "sh", "-c",
        "cat /data/sub/f; stat -c '%u:%g %a' /data /data/sub/f; readlink /data/link; echo extra > /data/extra",
    ]));
    assert_eq!(out, "seeded\n1000:1000 1777\n1000:1000 640\n/etc/passwd");
    let vol = ok(d.berth(&["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", "c1"]));
    assert_eq!(vol.len(), 64, "an anonymous volume: {vol}");
    let labels = ok(d.berth(&["volume", "inspect", "-f", "{{json .Labels}}", &vol]));
    assert_eq!(labels, r#"{"com.docker.volume.anonymous":""}"#);
    // The copy happens once: what the container wrote stays across restarts.
    ok(d.berth(&["start", "-a", "c1"]));
    let data = d.dir.join("data/volumes").join(&vol).join("_data");
    assert_eq!(
        std::fs::read_to_string(data.join("extra")).unwrap(),
        "extra\n"
    );
    // The symlink was copied as a link, not followed to the host's /etc/passwd.
    assert!(
        std::fs::symlink_metadata(data.join("link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // A named volume that is not empty is not overwritten; `nocopy` leaves a new one empty.
    ok(d.berth(&["volume", "create", "kept"]));
    let kept = d.dir.join("data/volumes/kept/_data");
    std::fs::write(kept.join("mine"), "x").unwrap();
    ok(d.berth(&["run", "--rm", "-v", "kept:/data", "seeded", "true"]));
    assert!(!kept.join("sub").exists());
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "-v",
            "fresh:/data:nocopy",
            "seeded",
            "ls",
            "-A",
            "/data"
        ])),
        ""
    );

    // rm -v removes the anonymous volume, --rm too; named ones stay.
    ok(d.berth(&["rm", "-v", "c1"]));
    ok(d.berth(&["run", "--rm", "seeded", "true"]));
    let left = ok(d.berth(&["volume", "ls", "-q"]));
    assert_eq!(left, "fresh\nkept");
}

#[test]
fn volumes_from_shares_and_in_use_volumes_stay() {
    let d = daemon();
    ok(d.berth(&[
        "create",
        "--name",
        "store",
        "-v",
        "shared:/shared",
        "-v",
        "/anon",
        "busybox",
        "true",
    ]));
    ok(d.berth(&[
        "run",
        "--rm",
        "--volumes-from",
        "store",
        "busybox",
        "sh",
        "-c",
        "echo from-a > /shared/f && echo b > /anon/g",
    ]));
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "--volumes-from",
            "store:ro",
            "busybox",
            "sh",
            "-c",
            "cat /shared/f /anon/g; touch /shared/no || true"
        ])),
        "from-a\nb"
    );
    let o = d.berth(&[
        "run",
        "--rm",
        "--volumes-from",
        "store:ro",
        "busybox",
        "touch",
        "/shared/no",
    ]);
    assert!(!o.status.success(), ":ro must refuse writes");

    // In use (even by a stopped container): refused, with or without -f.
    for args in [
        &["volume", "rm", "shared"][..],
        &["volume", "rm", "-f", "shared"][..],
    ] {
        let o = d.berth(args);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("volume is in use"), "{}", stderr(&o));
    }
    let api = d.http("DELETE", "/v1.41/volumes/shared", None);
    assert_eq!(api.status, 409, "{}", api.text());
    // Prune leaves used volumes alone.
    ok(d.berth(&["volume", "prune", "-af"]));
    assert_eq!(
        ok(d.berth(&["volume", "ls", "-q", "--filter", "name=shared"])),
        "shared"
    );
    ok(d.berth(&["rm", "store"]));
    assert_eq!(ok(d.berth(&["volume", "rm", "shared"])), "shared");
    // -f makes a missing volume fine; without it, 404.
    ok(d.berth(&["volume", "rm", "-f", "shared"]));
    let api = d.http("DELETE", "/volumes/shared", None);
    assert_eq!(api.status, 404);
    assert_eq!(api.json()["message"], "get shared: no such volume");
}

#[test]
fn symlinks_at_mount_destinations_stay_inside_the_container() {
    let d = daemon();
    // /evil -> /etc and /up -> ../../../etc, pointing at the host's /etc if followed there.
    image_from(
        &d,
        "evil",
        "ln -s /etc /evil && ln -s ../../../../../../etc /up",
        &[],
    );
    let src = d.dir.join("payload");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("berth-escape-marker"), "x").unwrap();
    for dest in ["/evil", "/up/berth-sub"] {
        let spec = format!("{}:{dest}", src.display());
        let o = d.berth(&[
            "run",
            "--rm",
            "-v",
            &spec,
            "evil",
            "sh",
            "-c",
            "ls /etc /etc/berth-sub 2>/dev/null; true",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stdout(&o).contains("berth-escape-marker"),
            "the mount lands in the container's own /etc: {}",
            stdout(&o)
        );
        assert!(!Path::new("/etc/berth-escape-marker").exists());
        assert!(!Path::new("/etc/berth-sub").exists());
    }
    // The same for a volume's copy-up source: the image's /etc, never the host's.
    image_from(&d, "evilvol", "ln -s /etc /data", &["VOLUME /data"]);
    let out = ok(d.berth(&["run", "--rm", "-v", "cv:/data", "evilvol", "ls", "/data"]));
    assert!(!out.contains("shadow") && out.contains("passwd"), "{out}");
    let vol = d.dir.join("data/volumes/cv/_data");
    assert!(vol.join("passwd").exists());
    assert!(
        !vol.join("shadow").exists(),
        "host /etc content must not be copied"
    );
}

#[test]
fn bad_mount_specs_are_clear_errors() {
    let d = daemon();
    for (args, msg) in [
        (&["-v", "/tmp/x:/"][..], "destination can't be '/'"),
        (&["-v", "x:/data"][..], "volume name is too short"),
        (&["-v", "a/b:/data"][..], "includes invalid characters"),
        (&["-v", "/a:/b:ro,rw"][..], "invalid mode: ro,rw"),
        (
            &["-v", "/a:/b", "-v", "/c:/b"][..],
            "Duplicate mount point: /b",
        ),
        (&["--mount", "type=nfs,target=/x"][..], "mount type unknown"),
        (
            &["--mount", "type=volume,target=/x,tmpfs-size=1m"][..],
            "cannot mix",
        ),
        (&["--mount", "source=v"][..], "target is required"),
        (
            &["--volumes-from", "nosuch"][..],
            "No such container: nosuch",
        ),
    ] {
        let mut full = vec!["create"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["busybox", "true"]);
        let o = d.berth(&full);
        assert!(!o.status.success(), "{args:?} must fail");
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
    }
    // Nothing was left behind by the failed creates.
    assert_eq!(ok(d.berth(&["ps", "-aq"])), "");
    assert_eq!(ok(d.berth(&["volume", "ls", "-q"])), "");
    for (args, msg) in [
        (
            &["volume", "create", "--opt", "bogus=1", "v1"][..],
            "invalid option key",
        ),
        (
            &["volume", "create", "-d", "nope", "v1"][..],
            "plugin \"nope\" not found",
        ),
        (
            &["volume", "create", "--opt", "type=tmpfs", "v1"][..],
            "missing required option",
        ),
    ] {
        let o = d.berth(args);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
    }
    let r = d.http("POST", "/volumes/create", Some(br#"{"Name": 7}"#));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = d.http(
        "GET",
        "/volumes?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D",
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn option_volumes_mount_their_filesystem_while_used() {
    let d = daemon();
    ok(d.berth(&[
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=1m",
        "fast",
    ]));
    let data = d.dir.join("data/volumes/fast/_data");
    ok(d.berth(&[
        "run", "-d", "--name", "us", "-v", "fast:/x", "busybox", "sleep", "60",
    ]));
    let mounted = || common::mounts_under(&data).contains(&data);
    assert!(mounted(), "tmpfs mounted on the volume while used");
    let df = ok(d.berth(&["exec", "us", "df", "-k", "/x"]));
    assert!(
        df.lines().nth(1).unwrap().split_whitespace().nth(1) == Some("1024"),
        "{df}"
    );
    ok(d.berth(&["rm", "-f", "us"]));
    assert!(!mounted(), "unmounted when the last user stopped");
    let opts = ok(d.berth(&["volume", "inspect", "-f", "{{json .Options}}", "fast"]));
    assert_eq!(opts, r#"{"device":"tmpfs","o":"size=1m","type":"tmpfs"}"#);
}

#[test]
fn prune_keeps_named_volumes_for_current_clients_and_df_counts_them() {
    let d = daemon();
    ok(d.berth(&["volume", "create", "named"]));
    ok(d.berth(&["create", "--name", "cc", "-v", "/anon", "busybox", "true"]));
    ok(d.berth(&["rm", "cc"]));
    let anon = ok(d.berth(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        "label=com.docker.volume.anonymous",
    ]));
    assert_eq!(anon.len(), 64);
    std::fs::write(d.dir.join("data/volumes/named/_data/f"), vec![0u8; 4096]).unwrap();
    let df = ok(d.berth(&["system", "df"]));
    let row = df.lines().find(|l| l.starts_with("Local Volumes")).unwrap();
    assert_eq!(row.split_whitespace().nth(2), Some("2"), "{df}");
    assert!(row.contains("4.096kB"), "{df}");
    // A volume with mount options is never pruned (dockerd's rule): only rm removes it.
    ok(d.berth(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "optvol",
    ]));
    // API 1.42+: only anonymous volumes go unless all=true.
    let out = ok(d.berth(&["volume", "prune", "-f"]));
    assert!(out.contains(&anon) && !out.contains("named"), "{out}");
    assert_eq!(ok(d.berth(&["volume", "ls", "-q"])), "named\noptvol");
    // Older clients prune every unused volume, as Docker 20.10 did.
    let r = d.http("POST", "/v1.41/volumes/prune", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["VolumesDeleted"], serde_json::json!(["named"]));
    assert_eq!(r.json()["SpaceReclaimed"], 4096);
    assert_eq!(ok(d.berth(&["volume", "ls", "-q"])), "optvol");
    ok(d.berth(&["volume", "prune", "-af"]));
    assert_eq!(ok(d.berth(&["volume", "rm", "optvol"])), "optvol");
}

#[test]
fn docker_cli_volume_commands_and_run_flags() {
    let d = daemon();
    assert_eq!(
        ok(d.docker(&["volume", "create", "--label", "k=v", "dv"])),
        "dv"
    );
    assert_eq!(
        ok(d.docker(&["volume", "ls"])),
        "DRIVER    VOLUME NAME\nlocal     dv"
    );
    assert_eq!(
        ok(d.docker(&[
            "volume",
            "ls",
            "--filter",
            "label=k=v",
            "--format",
            "{{.Name}} {{.Labels}}"
        ])),
        "dv k=v"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(d.docker(&["volume", "inspect", "dv"]))).unwrap();
    assert_eq!(v[0]["Name"], "dv");
    assert_eq!(v[0]["Driver"], "local");
    assert_eq!(v[0]["Scope"], "local");
    assert_eq!(v[0]["Labels"]["k"], "v");

    let src = d.dir.join("bsrc");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hf"), "host").unwrap();
    let out = ok(d.docker(&[
        "run",
        "--name",
        "mc",
        "-v",
        "dv:/data",
        "-v",
        &format!("{}:/b:ro", src.display()),
        "--mount",
        "type=volume,target=/anon",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-size=1m",
        "busybox",
        "sh",
        "-c",
        "echo d > /data/x; cat /b/hf",
    ]));
    assert_eq!(out, "host");
    let mounts: serde_json::Value =
        serde_json::from_str(&ok(d.docker(&["inspect", "-f", "{{json .Mounts}}", "mc"]))).unwrap();
    let by_dest = |dest: &str| {
        mounts
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Destination"] == dest)
            .cloned()
            .unwrap_or_else(|| panic!("no mount at {dest}: {mounts}"))
    };
    let data = by_dest("/data");
    assert_eq!(
        (
            &data["Type"],
            &data["Name"],
            &data["Mode"],
            &data["RW"],
            &data["Driver"]
        ),
        (
            &"volume".into(),
            &"dv".into(),
            &"z".into(),
            &true.into(),
            &"local".into()
        )
    );
    let b = by_dest("/b");
    assert_eq!(
        (&b["Type"], &b["Mode"], &b["RW"], &b["Propagation"]),
        (
            &"bind".into(),
            &"ro".into(),
            &false.into(),
            &"rprivate".into()
        )
    );
    assert_eq!(by_dest("/t")["Type"], "tmpfs");
    assert_eq!(by_dest("/anon")["Mode"], "z");
    let hc = ok(d.docker(&["inspect", "-f", "{{json .HostConfig.Mounts}}", "mc"]));
    assert!(
        hc.contains(r#""Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":1048576}"#),
        "{hc}"
    );
    // ps filters by volume.
    assert_eq!(
        ok(d.docker(&[
            "ps",
            "-a",
            "--filter",
            "volume=dv",
            "--format",
            "{{.Names}}"
        ])),
        "mc"
    );

    let o = d.docker(&["volume", "rm", "dv"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("volume is in use"), "{}", stderr(&o));
    ok(d.docker(&["rm", "-v", "mc"]));
    assert_eq!(
        ok(d.docker(&["volume", "ls", "-q"])),
        "dv",
        "rm -v took the anonymous one only"
    );
    assert_eq!(
        ok(d.docker(&["run", "--rm", "-v", "dv:/d", "busybox", "cat", "/d/x"])),
        "d"
    );
    let pruned = ok(d.docker(&["volume", "prune", "-af"]));
    assert!(pruned.starts_with("Deleted Volumes:\ndv\n"), "{pruned}");
    assert_eq!(ok(d.docker(&["volume", "ls", "-q"])), "");
    let o = d.docker(&["volume", "inspect", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no such volume"), "{}", stderr(&o));
}

#[test]
fn volume_events_are_published() {
    let d = daemon();
    let now = common::unix_now;
    let since = now().to_string();
    ok(d.berth(&["volume", "create", "ev"]));
    ok(d.berth(&["run", "--rm", "-v", "ev:/x", "busybox", "true"]));
    ok(d.berth(&["volume", "rm", "ev"]));
    let until = (now() + 1).to_string();
    let out = ok(d.docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=volume",
        "--filter",
        "volume=ev",
        "--format",
        "{{.Action}} {{.Actor.ID}} {{index .Actor.Attributes \"destination\"}}",
    ]));
    assert_eq!(out, "create ev \nmount ev /x\nunmount ev \ndestroy ev");
}

#[test]
fn shared_propagation_needs_a_shared_source_and_then_flows_back() {
    let d = daemon();
    let private = d.dir.join("private");
    std::fs::create_dir_all(&private).unwrap();
    let o = d.berth(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/p:rshared", private.display()),
        "busybox",
        "true",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is not a shared mount"),
        "{}",
        stderr(&o)
    );

    // Make the source a shared mount of its own (under the test dir: the harness unmounts it).
    let shared = d.dir.join("shared");
    std::fs::create_dir_all(shared.join("inner")).unwrap();
    let mount = |args: &[&str]| {
        let st = std::process::Command::new("mount")
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "mount {args:?}");
    };
    let s = shared.display().to_string();
    mount(&["--bind", &s, &s]);
    mount(&["--make-shared", &s]);
    let spec = format!("{s}:/p:rshared");
    ok(d.berth(&[
        "run",
        "-d",
        "--name",
        "prop",
        "--privileged",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "mount -t tmpfs none /p/inner && echo in > /p/inner/f && sleep 60",
    ]));
    let f = shared.join("inner/f");
    for _ in 0..100 {
        if f.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        "in\n",
        "the container's mount shows on the host"
    );
    ok(d.berth(&["rm", "-f", "prop"]));
    let _ = std::process::Command::new("umount")
        .args(["-l", &shared.join("inner").display().to_string()])
        .status();
}
