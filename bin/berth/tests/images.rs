//! Images made from containers and moved between engines: `commit`, `history`, `save` and
//! `load` through the real docker CLI and `berth`; hostile archives `load` must refuse; and
//! the saved archives read by skopeo and by a reference dockerd (both ways), when present.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{DOCKER, Daemon, ok, run_command, stderr, stdout};
use serde_json::{Value, json};

/// What the committed container writes to `/f`.
const FILE: &str = "hello-commit\n";
/// The committed container: writes `/f`, deletes an image file (`/bin/ls`), makes a dir.
const SETUP: &str = "echo hello-commit > /f && rm /bin/ls && mkdir -p /d/sub";

fn daemon() -> Daemon {
    let d = Daemon::start();
    d.import_busybox();
    d
}

/// Runs [`SETUP`] in a container named `container` and commits it as `image` with the flags
/// of the brief, through `client` (`docker` or `berth`); returns what the commit printed.
fn commit_setup(d: &Daemon, client: &str, container: &str, image: &str) -> String {
    ok(d.docker(&["run", "--name", container, "busybox", "sh", "-c", SETUP]));
    let args = [
        "commit",
        "-c",
        r#"CMD ["cat","/f"]"#,
        "-c",
        "ENV X=1",
        "-m",
        "msg",
        "-a",
        "author",
        container,
        image,
    ];
    let id = match client {
        "docker" => ok(d.docker(&args)),
        _ => ok(d.berth(&args)),
    };
    assert_is_image_id(&id);
    id
}

#[track_caller]
fn assert_is_image_id(id: &str) {
    let hex = id
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("{id:?}"));
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id:?}"
    );
}

fn image_id(d: &Daemon, image: &str) -> String {
    ok(d.docker(&["inspect", "-f", "{{.Id}}", image]))
}

/// `docker images -a`, full ids: what must not change when a load is refused.
fn image_list(d: &Daemon) -> String {
    ok(d.docker(&[
        "images",
        "-a",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Repository}}:{{.Tag}}",
    ]))
}

/// Everything a committed image must show: its content, the deleted file, its config and
/// metadata. `parent`: whether it still knows busybox as its parent (a loaded image does not,
/// as in Docker).
fn assert_committed(d: &Daemon, image: &str, id: &str, parent: bool) {
    assert_eq!(image_id(d, image), id);
    let o = d.docker(&["run", "--rm", image]);
    assert_eq!(stdout(&o), FILE, "{}", stderr(&o));
    assert!(o.status.success(), "{}", stderr(&o));
    // /bin/ls was deleted in the container: a whiteout in the new layer.
    let o = d.docker(&["run", "--rm", image, "ls", "/"]);
    assert_eq!(o.status.code(), Some(127), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("executable file not found"),
        "{}",
        stderr(&o)
    );
    // The busybox binary itself is still there, and the new directory came along.
    assert_eq!(
        ok(d.docker(&[
            "run",
            "--rm",
            image,
            "sh",
            "-c",
            "test -d /d/sub && test ! -e /bin/ls && echo $X"
        ])),
        "1"
    );
    let parent = if parent {
        image_id(d, "busybox")
    } else {
        String::new()
    };
    let info = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.Comment}}|{{.Author}}|{{.Parent}}|{{json .Config.Env}}|{{json .Config.Cmd}}|{{len .RootFS.Layers}}",
        image,
    ]));
    assert_eq!(
        info,
        format!(r#"msg|author|{parent}|["X=1"]|["cat","/f"]|2"#)
    );
    // The bottom layer is busybox's own.
    let base = ok(d.docker(&["inspect", "-f", "{{index .RootFS.Layers 0}}", "busybox"]));
    let first = ok(d.docker(&["inspect", "-f", "{{index .RootFS.Layers 0}}", image]));
    assert_eq!(first, base);
}

#[test]
fn docker_commit_makes_an_image_of_the_changes_with_config_and_metadata() {
    let d = daemon();
    let id = commit_setup(&d, "docker", "ctr", "commit-docker:1");
    assert_committed(&d, "commit-docker:1", &id, true);
    assert_eq!(
        ok(d.docker(&[
            "images",
            "commit-docker",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}"
        ])),
        format!("commit-docker:1 {}", &id[7..19])
    );
    // The container is left as it was.
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{.State.Status}}", "ctr"])),
        "exited"
    );
    // Up to API 1.44 the image names the container it came from, and keeps its config.
    let ctr = ok(d.docker(&["inspect", "-f", "{{.Id}}", "ctr"]));
    let v = d
        .http("GET", "/v1.41/images/commit-docker:1/json", None)
        .json();
    assert_eq!(v["Container"], ctr.as_str(), "{v}");
    assert_eq!(
        v["ContainerConfig"]["Cmd"],
        serde_json::json!(["sh", "-c", SETUP]),
        "{v}"
    );
    assert_eq!(v["ContainerConfig"]["Hostname"], &ctr[..12], "{v}");
    let v = d
        .http("GET", "/v1.45/images/commit-docker:1/json", None)
        .json();
    assert!(v.get("Container").is_none(), "{v}");
}

#[test]
fn berth_commit_takes_the_same_flags() {
    let d = daemon();
    let id = commit_setup(&d, "berth", "ctr", "commit-berth:1");
    assert_committed(&d, "commit-berth:1", &id, true);
    // Without a reference: an untagged image.
    let bare = ok(d.berth(&["commit", "ctr"]));
    assert_is_image_id(&bare);
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{json .RepoTags}}", &bare])),
        "[]"
    );
}

/// `{secs}.{nanos}`, the exact form `docker events --since/--until` take.
fn now_stamp() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

/// The pause/unpause/commit events of `container` between two stamps, sorted.
fn commit_events(d: &Daemon, container: &str, since: &str, until: &str) -> Vec<String> {
    let out = ok(d.docker(&[
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        &format!("container={container}"),
        "--format",
        "{{.Action}}",
    ]));
    let mut v: Vec<String> = out
        .lines()
        .filter(|a| matches!(*a, "pause" | "unpause" | "commit"))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[test]
fn commit_of_a_running_container_pauses_it_and_leaves_it_running() {
    let d = daemon();
    ok(d.docker(&[
        "run",
        "-d",
        "--name",
        "live",
        "busybox",
        "sh",
        "-c",
        "echo live > /live; while true; do sleep 1; done",
    ]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d
        .docker(&["exec", "live", "test", "-f", "/live"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "the container never wrote /live");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Default: paused while its files are read, running again afterwards.
    let since = now_stamp();
    let id = ok(d.docker(&["commit", "live", "commit-live:1"]));
    assert_is_image_id(&id);
    let until = now_stamp();
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Running}} {{.State.Paused}}",
            "live"
        ])),
        "running true false"
    );
    assert_eq!(
        commit_events(&d, "live", &since, &until),
        ["commit", "pause", "unpause"]
    );
    assert_eq!(
        ok(d.docker(&["run", "--rm", "commit-live:1", "cat", "/live"])),
        "live"
    );
    // The container still works.
    assert_eq!(ok(d.docker(&["exec", "live", "cat", "/live"])), "live");

    // --pause=false: no freeze at all.
    ok(d.docker(&["exec", "live", "sh", "-c", "echo two > /two"]));
    let since = now_stamp();
    let id2 = ok(d.docker(&["commit", "--pause=false", "live", "commit-live:2"]));
    assert_is_image_id(&id2);
    assert_ne!(id, id2);
    let until = now_stamp();
    assert_eq!(commit_events(&d, "live", &since, &until), ["commit"]);
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.Paused}}",
            "live"
        ])),
        "true false"
    );
    assert_eq!(
        ok(d.docker(&["run", "--rm", "commit-live:2", "cat", "/live", "/two"])),
        "live\ntwo"
    );
    // And the same through berth.
    let id3 = ok(d.berth(&["commit", "--pause=false", "live", "commit-live:3"]));
    assert_is_image_id(&id3);
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.Paused}}",
            "live"
        ])),
        "true false"
    );
    ok(d.docker(&["rm", "-f", "live"]));
}

#[test]
fn commit_errors_create_nothing() {
    let d = daemon();
    ok(d.docker(&["run", "--name", "ctr", "busybox", "true"]));
    let before = image_list(&d);

    for o in [
        d.docker(&["commit", "no-such-container", "commit-err:1"]),
        d.berth(&["commit", "no-such-container", "commit-err:1"]),
    ] {
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("No such container: no-such-container"),
            "{}",
            stderr(&o)
        );
        assert_eq!(stdout(&o), "");
    }

    // An invalid reference: the docker CLI may refuse it itself; berth's CLI and the API
    // must refuse it in the daemon.
    for o in [
        d.docker(&["commit", "ctr", "Bad:Ref!"]),
        d.berth(&["commit", "ctr", "Bad:Ref!"]),
        d.berth(&["commit", "ctr", "name:-bad-tag"]),
        d.berth(&["commit", "ctr", "a//b"]),
    ] {
        assert!(!o.status.success(), "{}", stdout(&o));
        let err = stderr(&o).to_lowercase();
        assert!(
            err.contains("invalid reference format") || err.contains("reference"),
            "{err}"
        );
        assert_eq!(stdout(&o), "");
    }
    let r = d.http("POST", "/commit?container=ctr&repo=Bad&tag=Ref!", None);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["message"].as_str().unwrap().contains("reference"));
    let r = d.http("POST", "/commit?container=missing", None);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(
        r.json()["message"].as_str().unwrap(),
        "No such container: missing"
    );

    assert_eq!(image_list(&d), before);
}

/// `docker history` output with the CREATED column blanked: its "N seconds ago" may tick
/// between two runs. Columns are found from the header line.
fn without_created(table: &str) -> Vec<String> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let (Some(start), Some(end)) = (header.find("CREATED"), header.find("CREATED BY")) else {
        panic!("no CREATED column: {table}");
    };
    // The column's width follows its widest cell ("2 seconds ago" against "About a minute
    // ago" when the two commands straddle the minute): the header is masked too.
    std::iter::once(format!("{}CREATED*{}", &header[..start], &header[end..]))
        .chain(lines.map(|l| {
            let chars: Vec<char> = l.chars().collect();
            let head: String = chars.iter().take(start).collect();
            let tail: String = chars.iter().skip(end).collect();
            format!("{head}*{tail}")
        }))
        .collect()
}

#[test]
fn history_lists_the_commit_over_the_import_and_berth_prints_the_same() {
    let d = daemon();
    let id = commit_setup(&d, "docker", "ctr", "hist:1");
    let busybox = image_id(&d, "busybox");

    let table = ok(d.docker(&["history", "hist:1"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("IMAGE") && lines[0].contains("CREATED BY"),
        "{table}"
    );
    let top: Vec<&str> = lines[1].split("   ").map(str::trim).collect();
    assert!(lines[1].starts_with(&id[7..19]), "{table}");
    assert!(lines[1].trim_end().ends_with("msg"), "{table}");
    // The new layer holds the 13 bytes of /f (a whiteout and a directory add nothing).
    assert!(top.contains(&"13B"), "{table}");
    // The bottom row: busybox, as imported.
    assert!(lines[2].trim_end().ends_with("Imported from -"), "{table}");
    let size = lines[2]
        .split_whitespace()
        .find(|w| w.ends_with("MB"))
        .unwrap_or_else(|| panic!("no MB size in {table}"));
    let mb: f64 = size.trim_end_matches("MB").parse().unwrap();
    assert!((0.5..20.0).contains(&mb), "{table}");

    let ids = ok(d.docker(&["history", "--no-trunc", "-q", "hist:1"]));
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0], id);
    // The parent is named, as dockerd names it.
    assert_eq!(ids[1], busybox, "{ids:?}");
    assert_eq!(
        ok(d.docker(&[
            "history",
            "-H=false",
            "--format",
            "{{.Size}}|{{.Comment}}",
            "hist:1"
        ]))
        .lines()
        .next(),
        Some("13|msg")
    );

    // berth prints the same table.
    for args in [
        &["history", "hist:1"][..],
        &["history", "--no-trunc", "hist:1"],
        &["history", "-q", "hist:1"],
        &["history", "--no-trunc", "-q", "hist:1"],
        &[
            "history",
            "--format",
            "{{.ID}} {{.Size}} {{.Comment}}",
            "hist:1",
        ],
    ] {
        let want = ok(d.docker(args));
        let got = ok(d.berth(args));
        if args.contains(&"-q") || args.contains(&"--format") {
            assert_eq!(got, want, "{args:?}");
        } else {
            assert_eq!(without_created(&got), without_created(&want), "{args:?}");
        }
    }

    // Once the parent is gone from the store (save, remove both, load), lower rows are
    // <missing>, as Docker shows them.
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("hist.tar");
    ok(d.docker(&["save", "hist:1", "-o", tar.to_str().unwrap()]));
    ok(d.docker(&["rm", "ctr"]));
    ok(d.docker(&["rmi", "hist:1", "busybox"]));
    assert_eq!(
        ok(d.docker(&["load", "-i", tar.to_str().unwrap()])),
        "Loaded image: hist:1"
    );
    assert_eq!(
        ok(d.docker(&["history", "--no-trunc", "-q", "hist:1"])),
        format!("{id}\n<missing>")
    );
    assert_eq!(
        ok(d.berth(&["history", "--no-trunc", "-q", "hist:1"])),
        format!("{id}\n<missing>")
    );
}

/// What dockerd 20.10 shows for the same commit (checked against /var/run/docker.sock): the
/// commit's row is "created by" the container's command, and the lower row carries the
/// parent image's id, since the parent is in the store.
#[test]
fn history_names_the_command_and_the_parent_like_dockerd() {
    let d = daemon();
    let id = commit_setup(&d, "docker", "ctr", "hist-parity:1");
    let busybox = image_id(&d, "busybox");
    for client in ["docker", "berth"] {
        let args = [
            "history",
            "--no-trunc",
            "--format",
            "{{.ID}}|{{.CreatedBy}}|{{.Comment}}",
            "hist-parity:1",
        ];
        let out = ok(if client == "docker" {
            d.docker(&args)
        } else {
            d.berth(&args)
        });
        assert_eq!(
            out,
            format!("{id}|sh -c {SETUP}|msg\n{busybox}||Imported from -"),
            "{client}"
        );
    }
    let tar = d.docker(&["save", "hist-parity:1"]).stdout;
    let files = archive_files(&tar);
    let config: Value =
        serde_json::from_slice(&files[&format!("blobs/sha256/{}", &id[7..])]).unwrap();
    assert_eq!(config["history"][1]["created_by"], format!("sh -c {SETUP}"));
}

/// sha256 of `data` as hex, by coreutils (no hashing crate among the dev-dependencies).
fn sha256_hex(data: &[u8]) -> String {
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    let mut si = c.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || si.write_all(&data));
    let out = c.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// The file entries of an archive, by name.
fn archive_files(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut a = tar::Archive::new(tar);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_dir() {
            continue;
        }
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        assert!(
            files.insert(name.clone(), data).is_none(),
            "{name} is in the archive twice"
        );
    }
    files
}

/// Checks the layout of a saved archive (Docker 25's: OCI layout plus `manifest.json`):
/// every blob named by its digest, `manifest.json` entries pointing at present blobs.
/// Returns `manifest.json`.
fn check_layout(files: &BTreeMap<String, Vec<u8>>) -> Vec<Value> {
    for name in ["manifest.json", "index.json", "oci-layout"] {
        assert!(files.contains_key(name), "no {name}: {:?}", files.keys());
    }
    let layout: Value = serde_json::from_slice(&files["oci-layout"]).unwrap();
    assert_eq!(layout, json!({"imageLayoutVersion": "1.0.0"}));
    for (name, data) in files {
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            assert_eq!(sha256_hex(data), hex, "blob {name} does not match its name");
        } else {
            assert!(
                matches!(
                    name.as_str(),
                    "manifest.json" | "index.json" | "oci-layout" | "repositories"
                ),
                "unexpected entry {name}"
            );
        }
    }
    let manifest: Vec<Value> = serde_json::from_slice(&files["manifest.json"]).unwrap();
    for m in &manifest {
        let config = m["Config"].as_str().unwrap();
        assert!(files.contains_key(config), "{m}");
        for l in m["Layers"].as_array().unwrap() {
            assert!(files.contains_key(l.as_str().unwrap()), "{m}");
        }
    }
    let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
    for d in index["manifests"].as_array().unwrap() {
        let digest = d["digest"].as_str().unwrap();
        let blob = format!("blobs/sha256/{}", &digest[7..]);
        assert_eq!(
            files.get(&blob).map(Vec::len),
            Some(d["size"].as_u64().unwrap() as usize),
            "{d}"
        );
    }
    manifest
}

#[test]
fn save_rmi_load_round_trip_keeps_the_id_and_writes_an_oci_layout() {
    let d = daemon();
    let id = commit_setup(&d, "docker", "ctr", "saved:1");
    // A commit's tag is a tag time; a load's is not, as moby keeps it.
    let last_tag = |name: &str| ok(d.docker(&["inspect", "-f", "{{.Metadata.LastTagTime}}", name]));
    let zero = "0001-01-01 00:00:00 +0000 UTC";
    assert_ne!(last_tag("saved:1"), zero);
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("saved.tar");
    let tar_s = tar.to_str().unwrap();
    assert_eq!(ok(d.docker(&["save", "saved:1", "-o", tar_s])), "");

    let files = archive_files(&std::fs::read(&tar).unwrap());
    let manifest = check_layout(&files);
    assert_eq!(manifest.len(), 1, "{manifest:?}");
    assert_eq!(manifest[0]["RepoTags"], json!(["saved:1"]));
    assert_eq!(
        manifest[0]["Config"].as_str().unwrap(),
        format!("blobs/sha256/{}", &id[7..])
    );
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    let config: Value =
        serde_json::from_slice(&files[&format!("blobs/sha256/{}", &id[7..])]).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{config}");
    assert_eq!(history[0]["comment"], "Imported from -");
    assert_eq!(history[1]["comment"], "msg");
    assert_eq!(history[1]["author"], "author");
    assert_eq!(config["author"], "author");
    // The top layer holds the new file and the whiteout of /bin/ls.
    let top = archive_files(&files[layers[1].as_str().unwrap()]);
    assert_eq!(top.get("f").map(Vec::as_slice), Some(FILE.as_bytes()));
    assert!(top.contains_key("bin/.wh.ls"), "{:?}", top.keys());
    let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let ann = &index["manifests"][0]["annotations"];
    assert_eq!(ann["io.containerd.image.name"], "docker.io/library/saved:1");
    assert_eq!(ann["org.opencontainers.image.ref.name"], "1");
    assert!(!files.keys().any(|k| k.contains(".berth-tmp")));
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "save left temp files beside its output"
    );

    ok(d.docker(&["rm", "ctr"]));
    let rmi = ok(d.docker(&["rmi", "saved:1"]));
    assert!(rmi.contains(&format!("Deleted: {id}")), "{rmi}");
    assert!(!d.docker(&["inspect", "saved:1"]).status.success());
    assert_eq!(
        ok(d.docker(&["load", "-i", tar_s])),
        "Loaded image: saved:1"
    );
    assert_committed(&d, "saved:1", &id, false);
    assert_eq!(last_tag("saved:1"), zero);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    ok(d.docker(&["tag", "saved:1", "saved:2"]));
    let tagged: u64 = ok(d.docker(&["inspect", "-f", "{{.Metadata.LastTagTime.Unix}}", "saved:1"]))
        .parse()
        .unwrap();
    assert!(tagged >= before, "{tagged} {before}");
    ok(d.docker(&["rmi", "saved:2"]));
    // Loading again changes nothing and says the same.
    assert_eq!(
        ok(d.docker(&["load", "-i", tar_s])),
        "Loaded image: saved:1"
    );
    assert_eq!(image_id(&d, "saved:1"), id);
}

#[test]
fn save_of_two_images_stores_a_shared_layer_once() {
    let d = daemon();
    let id1 = commit_setup(&d, "docker", "c1", "two-a:1");
    ok(d.docker(&["run", "--name", "c2", "busybox", "sh", "-c", "echo b > /b"]));
    let id2 = ok(d.docker(&["commit", "c2", "two-b:1"]));
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("two.tar");
    let tar_s = tar.to_str().unwrap();
    ok(d.docker(&["save", "-o", tar_s, "two-a:1", "two-b:1"]));

    let files = archive_files(&std::fs::read(&tar).unwrap());
    let manifest = check_layout(&files);
    assert_eq!(manifest.len(), 2, "{manifest:?}");
    let tags: Vec<&Value> = manifest.iter().map(|m| &m["RepoTags"]).collect();
    assert_eq!(tags, [&json!(["two-a:1"]), &json!(["two-b:1"])]);
    let base_a = &manifest[0]["Layers"][0];
    let base_b = &manifest[1]["Layers"][0];
    assert_eq!(base_a, base_b, "both sit on busybox's layer");
    assert_ne!(manifest[0]["Layers"][1], manifest[1]["Layers"][1]);
    // Two configs, two manifests, three layers: each blob once (archive_files checks).
    let blobs = files.keys().filter(|k| k.starts_with("blobs/")).count();
    assert_eq!(blobs, 7, "{:?}", files.keys());
    // A bare repository name saves every tag of it, on whichever images, with no `latest`.
    ok(d.docker(&["tag", "two-a:1", "repo:x"]));
    ok(d.docker(&["tag", "two-b:1", "repo:y"]));
    let all = tmp.path().join("repo.tar");
    ok(d.docker(&["save", "-o", all.to_str().unwrap(), "repo"]));
    let mut tags: Vec<String> = check_layout(&archive_files(&std::fs::read(&all).unwrap()))
        .iter()
        .map(|m| m["RepoTags"].to_string())
        .collect();
    tags.sort();
    assert_eq!(tags, [r#"["repo:x"]"#, r#"["repo:y"]"#]);
    ok(d.docker(&["rmi", "repo:x", "repo:y"]));

    ok(d.docker(&["rm", "c1", "c2"]));
    ok(d.docker(&["rmi", "two-a:1", "two-b:1", "busybox"]));
    assert_eq!(
        ok(d.docker(&["load", "-i", tar_s])),
        "Loaded image: two-a:1\nLoaded image: two-b:1"
    );
    assert_eq!(image_id(&d, "two-a:1"), id1);
    assert_eq!(image_id(&d, "two-b:1"), id2);
    assert_eq!(ok(d.docker(&["run", "--rm", "two-b:1", "cat", "/b"])), "b");
    assert_eq!(ok(d.docker(&["run", "--rm", "two-a:1"])), FILE.trim_end());
}

#[test]
fn save_by_id_loads_as_an_untagged_image() {
    let d = daemon();
    ok(d.docker(&[
        "run",
        "--name",
        "ctr",
        "busybox",
        "sh",
        "-c",
        "echo byid > /i",
    ]));
    let id = ok(d.docker(&["commit", "ctr", "byid:1"]));
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("byid.tar");
    let tar_s = tar.to_str().unwrap();
    ok(d.docker(&["save", "-o", tar_s, &id[7..19]]));
    let files = archive_files(&std::fs::read(&tar).unwrap());
    let manifest = check_layout(&files);
    assert_eq!(manifest.len(), 1);
    assert!(
        manifest[0]["RepoTags"].is_null() || manifest[0]["RepoTags"] == json!([]),
        "{manifest:?}"
    );
    assert!(!files.contains_key("repositories"));

    ok(d.docker(&["rm", "ctr"]));
    ok(d.docker(&["rmi", "byid:1"]));
    assert_eq!(
        ok(d.docker(&["load", "-i", tar_s])),
        format!("Loaded image ID: {id}")
    );
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{json .RepoTags}}", &id])),
        "[]"
    );
    assert_eq!(ok(d.docker(&["run", "--rm", &id, "cat", "/i"])), "byid");
}

#[test]
fn save_of_a_missing_image_fails_and_writes_no_file() {
    let d = daemon();
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("missing.tar");
    for o in [
        d.docker(&["save", "-o", tar.to_str().unwrap(), "no-such-image:1"]),
        d.berth(&["save", "-o", tar.to_str().unwrap(), "no-such-image:1"]),
        d.docker(&[
            "save",
            "-o",
            tar.to_str().unwrap(),
            "busybox",
            "no-such-image:1",
        ]),
    ] {
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("No such image: no-such-image:1"),
            "{}",
            stderr(&o)
        );
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let o = d.berth(&["save", "no-such-image:1"]);
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
}

#[test]
fn berth_save_pipes_into_berth_load() {
    let d = daemon();
    let id = commit_setup(&d, "berth", "ctr", "pipe:1");
    let o = d.berth(&["save", "pipe:1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    check_layout(&archive_files(&o.stdout));
    ok(d.berth(&["rm", "ctr"]));
    ok(d.berth(&["rmi", "pipe:1"]));
    let loaded = d.berth_stdin(&["load"], Some(&o.stdout));
    assert_eq!(ok(loaded), "Loaded image: pipe:1");
    assert_committed(&d, "pipe:1", &id, false);
    // The docker CLI reads berth's stream the same way.
    ok(d.berth(&["rmi", "pipe:1"]));
    assert_eq!(
        ok(d.docker_stdin(&["load"], Some(&o.stdout))),
        "Loaded image: pipe:1"
    );
    assert_eq!(image_id(&d, "pipe:1"), id);
}

#[test]
fn berth_save_refuses_to_write_to_a_terminal() {
    let d = daemon();
    let mut s = d.berth_pty(&["save", "busybox"], 24, 80);
    let code = s.wait();
    assert_ne!(code, Some(0), "{}", s.output());
    assert!(
        s.output()
            .contains("cowardly refusing to save to a terminal"),
        "{:?}",
        s.output()
    );
    // No tar bytes reached the terminal.
    assert!(!s.output().contains("manifest.json"), "{:?}", s.output());
}

// ---- hostile archives ------------------------------------------------------------------

/// Appends an entry written field by field, so names and link targets the `tar` crate would
/// refuse (`..`, absolute) reach the daemon as a hostile archive carries them.
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_ustar();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    raw_entry(b, name, tar::EntryType::Regular, "", data);
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

fn image_config(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": {"Cmd": ["cat", "/hello"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "hostile test"}],
    }))
    .unwrap()
}

/// A one-file layer tar.
fn small_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "hello", b"hi from a hand-made layer\n");
    b.into_inner().unwrap()
}

/// A Docker-format archive (`manifest.json`, config, `layer.tar`) whose config declares
/// `diff_id` for the layer and whose manifest names the layer `layer_path`.
fn legacy_archive(tag: &str, diff_id: &str, layer_path: &str) -> Vec<u8> {
    let layer = small_layer();
    let config = image_config(&[diff_id.to_owned()]);
    let manifest = json!([{
        "Config": "config.json",
        "RepoTags": [tag],
        "Layers": [layer_path],
    }]);
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "config.json", &config);
    file(&mut b, "layer/layer.tar", &layer);
    file(&mut b, "manifest.json", manifest.to_string().as_bytes());
    b.into_inner().unwrap()
}

/// Files named `escape*` at or under `dir` (symlinks not followed).
fn escapes_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with("escape") {
            out.push(p.clone());
        }
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            escapes_under(&p, out);
        }
    }
}

#[test]
fn hostile_archives_are_refused_and_change_nothing() {
    let d = daemon();
    let tmp = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let passwd = std::fs::read("/etc/passwd").unwrap();
    let etc_marker = PathBuf::from(format!("/etc/escape-berth-{pid}"));
    let tmp_escape = PathBuf::from(format!("/tmp/escape-berth-{pid}"));
    // A directory outside the daemon's, which a symlink in one archive points at.
    let victim = tmp.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("passwd"), "untouched\n").unwrap();

    let busybox_tar = d.docker(&["save", "busybox"]).stdout;
    assert!(busybox_tar.len() > 100_000);
    let good_layer_diff = format!("sha256:{}", sha256_hex(&small_layer()));

    // (name, archive, a part of the error it must be refused with)
    let mut cases: Vec<(&str, Vec<u8>, String)> = Vec::new();
    let want = str::to_owned;

    // 1. An entry climbing out of the staging directory.
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    file(&mut b, "../escape", b"out\n");
    let deep = format!("../../../../../../../../../..{}", tmp_escape.display());
    file(&mut b, &deep, b"out\n");
    cases.push(("dotdot", b.into_inner().unwrap(), want("escapes the root")));

    // 2. Absolute symlinks, then files written through them: to the host's /etc, and over
    // a file in a directory of the test's.
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, "blobs", tar::EntryType::Symlink, "/etc", b"");
    file(&mut b, &format!("blobs/escape-berth-{pid}"), b"out\n");
    cases.push(("symlink write", b.into_inner().unwrap(), want("blobs")));
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(
        &mut b,
        "victim",
        tar::EntryType::Symlink,
        victim.to_str().unwrap(),
        b"",
    );
    file(&mut b, "victim/passwd", b"overwritten\n");
    cases.push(("symlink overwrite", b.into_inner().unwrap(), want("victim")));
    // ... and read through: a config that is the host's /etc/passwd.
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, "blobs", tar::EntryType::Symlink, "/etc", b"");
    let manifest =
        json!([{"Config": "blobs/passwd", "RepoTags": ["hostile-symlink:1"], "Layers": []}]);
    file(&mut b, "manifest.json", manifest.to_string().as_bytes());
    cases.push((
        "symlink read",
        b.into_inner().unwrap(),
        want("blobs/passwd"),
    ));

    // 3. A manifest whose layer is the host's /etc/passwd (the config even declares its
    // digest, so following the path would succeed).
    let passwd_diff = format!("sha256:{}", sha256_hex(&passwd));
    cases.push((
        "layer path",
        legacy_archive("hostile-path:1", &passwd_diff, "../../etc/passwd"),
        want("escapes the root"),
    ));

    // 4. A layer that is not what the config says.
    let wrong = format!("sha256:{}", sha256_hex(b"not the layer"));
    cases.push((
        "diff id",
        legacy_archive("hostile-diff:1", &wrong, "layer/layer.tar"),
        want(&wrong[7..]),
    ));

    // 5. A truncated archive (cut inside busybox's layer).
    cases.push((
        "truncated",
        busybox_tar[..busybox_tar.len() / 2 + 77].to_vec(),
        want("invalid archive"),
    ));

    // 6. No manifest at all.
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "hello.txt", b"just a file\n");
    cases.push((
        "no manifest",
        b.into_inner().unwrap(),
        want("no manifest.json or index.json"),
    ));

    // The daemon's images, layers and blobs: none may change.
    let store = |d: &Daemon| {
        let mut names = vec![image_list(d)];
        for sub in ["data/snapshots", "data/content/blobs/sha256"] {
            let mut v: Vec<String> = std::fs::read_dir(d.dir.join(sub))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            names.push(v.join(" "));
        }
        names
    };
    let before = store(&d);
    let tmp_dir = d.dir.join("data/tmp");
    for (name, archive, want) in &cases {
        let path = tmp.path().join(format!("{}.tar", name.replace(' ', "-")));
        std::fs::write(&path, archive).unwrap();
        for o in [
            d.docker(&["load", "-i", path.to_str().unwrap()]),
            d.berth_stdin(&["load"], Some(archive)),
        ] {
            assert!(
                !o.status.success(),
                "{name}: loaded: {}{}",
                stdout(&o),
                stderr(&o)
            );
            let err = stderr(&o);
            assert!(err.contains(want), "{name}: {err:?} lacks {want:?}");
            assert!(
                !stdout(&o).contains("Loaded image"),
                "{name}: {}",
                stdout(&o)
            );
        }
        assert!(
            !ok(d.docker(&["version", "--format", "{{.Server.Version}}"])).is_empty(),
            "{name}"
        );
        assert_eq!(store(&d), before, "{name}");
        assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd, "{name}");
        assert!(
            !etc_marker.exists(),
            "{name}: wrote {}",
            etc_marker.display()
        );
        assert_eq!(
            std::fs::read_to_string(victim.join("passwd")).unwrap(),
            "untouched\n",
            "{name}"
        );
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1, "{name}");
        let mut found = Vec::new();
        escapes_under(&d.dir, &mut found);
        escapes_under(tmp.path(), &mut found);
        found.extend(Some(tmp_escape.clone()).filter(|p| p.exists()));
        assert!(found.is_empty(), "{name}: {found:?}");
    }
    // The staging directories go away.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<_> = std::fs::read_dir(&tmp_dir)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "staging left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Controls: the same hand-made archive with an honest layer path and diff id loads, so
    // the refusals above were about what they meant to test.
    let control = legacy_archive("hostile-control:1", &good_layer_diff, "layer/layer.tar");
    assert_eq!(
        ok(d.docker_stdin(&["load"], Some(&control))),
        "Loaded image: hostile-control:1"
    );
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{json .RootFS.Layers}} {{json .Config.Cmd}}",
            "hostile-control:1"
        ])),
        format!(r#"["{good_layer_diff}"] ["cat","/hello"]"#)
    );
    ok(d.docker(&["rmi", "busybox"]));
    assert_eq!(
        ok(d.docker_stdin(&["load"], Some(&busybox_tar))),
        "Loaded image: busybox:latest"
    );
}

// ---- other tools -----------------------------------------------------------------------

#[test]
fn skopeo_reads_the_saved_archive() {
    let skopeo = Path::new("/usr/bin/skopeo");
    if !skopeo.exists() {
        eprintln!("SKIPPED: skopeo_reads_the_saved_archive: /usr/bin/skopeo is not installed");
        return;
    }
    let d = daemon();
    let id = commit_setup(&d, "docker", "ctr", "skopeo:1");
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("skopeo.tar");
    ok(d.docker(&["save", "-o", tar.to_str().unwrap(), "skopeo:1"]));
    let files = archive_files(&std::fs::read(&tar).unwrap());
    let manifest = check_layout(&files);
    let layers: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "sha256:{}",
                l.as_str().unwrap().trim_start_matches("blobs/sha256/")
            )
        })
        .collect();

    let mut cmd = Command::new(skopeo);
    cmd.arg("inspect")
        .arg(format!("oci-archive:{}", tar.display()));
    let out = ok(run_command(cmd, None));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let got: Vec<&str> = v["Layers"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(got, layers, "{v}");
    assert_eq!(v["Os"], "linux", "{v}");
    assert_eq!(v["Architecture"], host_arch(), "{v}");
    // The config skopeo read is the image's.
    let mut cmd = Command::new(skopeo);
    cmd.arg("inspect")
        .arg("--config")
        .arg(format!("oci-archive:{}", tar.display()));
    let config: Value = serde_json::from_str(&ok(run_command(cmd, None))).unwrap();
    assert_eq!(config["config"]["Cmd"], json!(["cat", "/f"]));
    assert_eq!(config["history"][1]["comment"], "msg");
    // The manifest skopeo read names the image's config: its digest is the image id.
    let mut cmd = Command::new(skopeo);
    cmd.arg("inspect")
        .arg("--raw")
        .arg(format!("oci-archive:{}", tar.display()));
    let raw: Value = serde_json::from_str(&ok(run_command(cmd, None))).unwrap();
    assert_eq!(raw["config"]["digest"], id.as_str(), "{raw}");
    assert_eq!(raw["layers"].as_array().map(Vec::len), Some(2), "{raw}");
}

const REFERENCE_HOST: &str = "unix:///var/run/docker.sock";

/// The docker CLI against the reference dockerd, with a private config directory. Removes
/// what the test made there when dropped, also when the test fails.
struct Reference {
    config: tempfile::TempDir,
    containers: Vec<String>,
    images: Vec<String>,
}

impl Reference {
    /// `None` (after a SKIPPED line) when no reference dockerd answers.
    fn connect(test: &str) -> Option<Self> {
        let r = Reference {
            config: tempfile::tempdir().unwrap(),
            containers: Vec::new(),
            images: Vec::new(),
        };
        let o = r.docker(&["version", "--format", "{{.Server.Version}}"]);
        if !o.status.success() || stdout(&o).trim().is_empty() {
            eprintln!(
                "SKIPPED: {test}: no reference dockerd at {REFERENCE_HOST} ({})",
                stderr(&o).trim()
            );
            return None;
        }
        Some(r)
    }

    fn docker(&self, args: &[&str]) -> Output {
        self.docker_stdin(args, None)
    }

    fn docker_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(DOCKER);
        cmd.args(args)
            .env("DOCKER_HOST", REFERENCE_HOST)
            .env("DOCKER_CONFIG", self.config.path())
            .env("DOCKER_CLI_HINTS", "false")
            .env_remove("DOCKER_CONTEXT");
        run_command(cmd, stdin)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.docker(&["rm", "-f", c]);
        }
        for i in self.images.iter().rev() {
            let _ = self.docker(&["rmi", "-f", i]);
        }
    }
}

#[test]
fn reference_dockerd_loads_and_runs_what_berth_saved() {
    let Some(mut r) = Reference::connect("reference_dockerd_loads_and_runs_what_berth_saved")
    else {
        return;
    };
    let d = daemon();
    let name = format!("berth-interop-to-dockerd-{}:1", std::process::id());
    let id = commit_setup(&d, "docker", "ctr", &name);
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("to-dockerd.tar");
    ok(d.berth(&["save", "-o", tar.to_str().unwrap(), &name]));

    r.images.push(name.clone());
    assert_eq!(
        ok(r.docker(&["load", "-i", tar.to_str().unwrap()])),
        format!("Loaded image: {name}")
    );
    assert_eq!(
        ok(r.docker(&["inspect", "-f", "{{.Id}}", &name])),
        id,
        "dockerd computes the same image id"
    );
    let o = r.docker(&["run", "--rm", &name]);
    assert_eq!(stdout(&o), FILE, "{}", stderr(&o));
    let o = r.docker(&["run", "--rm", &name, "ls"]);
    assert!(!o.status.success(), "/bin/ls came back: {}", stdout(&o));
    assert_eq!(
        ok(r.docker(&[
            "inspect",
            "-f",
            "{{.Comment}}|{{.Author}}|{{json .Config.Env}}",
            &name
        ])),
        r#"msg|author|["X=1"]"#
    );
    assert_eq!(
        ok(r.docker(&["history", "--format", "{{.Size}}|{{.Comment}}", &name]))
            .lines()
            .next(),
        Some("13B|msg")
    );
}

#[test]
fn berth_loads_and_runs_what_reference_dockerd_saved() {
    let Some(mut r) = Reference::connect("berth_loads_and_runs_what_reference_dockerd_saved")
    else {
        return;
    };
    let pid = std::process::id();
    let base = format!("berth-interop-base-{pid}:1");
    let name = format!("berth-interop-from-dockerd-{pid}:1");
    let container = format!("berth-interop-{pid}");
    let bb = std::fs::read(common::busybox_tar()).unwrap();
    r.images.push(base.clone());
    ok(r.docker_stdin(&["import", "-", &base], Some(&bb)));
    r.containers.push(container.clone());
    ok(r.docker(&[
        "run",
        "--name",
        &container,
        &base,
        "sh",
        "-c",
        "echo from-dockerd > /r && rm /bin/ls",
    ]));
    r.images.push(name.clone());
    let id = ok(r.docker(&[
        "commit",
        "-c",
        "CMD [\"cat\",\"/r\"]",
        "-m",
        "ref",
        &container,
        &name,
    ]));
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("from-dockerd.tar");
    ok(r.docker(&["save", "-o", tar.to_str().unwrap(), &name]));

    let d = Daemon::start();
    assert_eq!(
        ok(d.docker(&["load", "-i", tar.to_str().unwrap()])),
        format!("Loaded image: {name}")
    );
    assert_eq!(image_id(&d, &name), id);
    assert_eq!(ok(d.docker(&["run", "--rm", &name])), "from-dockerd");
    let o = d.docker(&["run", "--rm", &name, "ls"]);
    assert_eq!(o.status.code(), Some(127), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{.Comment}} {{len .RootFS.Layers}}",
            &name
        ])),
        "ref 2"
    );
    // berth's history of it matches dockerd's (sizes, comments, created-by).
    let fmt = "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}";
    let want = ok(r.docker(&["history", "--no-trunc", "--format", fmt, &name]));
    // dockerd knows the parent (its own import); berth does not: only the top id compares.
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 {
                    l.to_owned()
                } else {
                    l.split_once('|').map(|x| x.1).unwrap_or(l).to_owned()
                }
            })
            .collect()
    };
    let got = ok(d.berth(&["history", "--no-trunc", "--format", fmt, &name]));
    assert_eq!(strip(&got), strip(&want));
    // And berth can hand it back: a berth save of it loads into berth again.
    let o = d.berth(&["save", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    ok(d.docker(&["rmi", &name]));
    assert_eq!(
        ok(d.berth_stdin(&["load"], Some(&o.stdout))),
        format!("Loaded image: {name}")
    );
    assert_eq!(image_id(&d, &name), id);
}

/// `berth save -o DIR/` writes an OCI image layout directory, which skopeo reads as `oci:`.
#[test]
fn save_into_an_oci_layout_directory() {
    let d = Daemon::start();
    d.import_busybox();
    let dir = d.dir.join("layout");
    let target = format!("{}/", dir.display());
    ok(d.berth(&["save", "-o", &target, "busybox:latest"]));
    for f in ["oci-layout", "index.json", "manifest.json"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".berth-save"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    if !std::path::Path::new("/usr/bin/skopeo").exists() {
        eprintln!("SKIPPED: skopeo is not installed to read the layout");
        return;
    }
    let out = std::process::Command::new("/usr/bin/skopeo")
        .args(["inspect", &format!("oci:{}:latest", dir.display())])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(1), "{v}");
}
