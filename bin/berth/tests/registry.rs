//! Pull and push end to end: the real docker CLI drives a test berthd against real registries
//! on loopback (Berth's own `berth registry serve`, and distribution 2.8 from Debian's
//! `docker-registry` where it is installed), and against a misbehaving registry
//! (tests/fixtures/fake_registry.py) for the hostile cases: a layer that lies about its
//! digest, a manifest served as an index and the reverse, a blob claiming 10 GB, a truncated
//! download, and a daemon killed in the middle of a pull.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, ok, stderr, stdout};

/// A child process killed (and reaped) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_registry(port: u16, what: &str, proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = proc.0.try_wait() {
            panic!("{what} exited with {st}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on {port}");
}

fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

/// Berth's own registry on a free loopback port, storing under `dir`.
fn berth_registry(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let child = Command::new(berth_bin())
        .args(["registry", "serve", "--addr", &format!("127.0.0.1:{port}")])
        .arg("--root")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn berth registry serve");
    let mut p = Proc(child);
    wait_for_registry(port, "berth registry serve", &mut p);
    (p, port)
}

/// distribution 2.8 (Debian's docker-registry), when installed.
fn distribution(dir: &Path) -> Option<(Proc, u16)> {
    let bin = Path::new("/usr/bin/docker-registry");
    if !bin.exists() {
        return None;
    }
    let port = free_port();
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn docker-registry");
    let mut p = Proc(child);
    wait_for_registry(port, "docker-registry", &mut p);
    Some((p, port))
}

/// The misbehaving registry serving the OCI layout `layout`.
fn fake_registry(layout: &Path, throttle: Option<u64>) -> (Proc, u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_registry.py");
    let port_file = layout.join("port");
    let _ = std::fs::remove_file(&port_file);
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(layout).arg(&port_file);
    if let Some(t) = throttle {
        cmd.args(["--throttle", &t.to_string()]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn fake_registry.py (python3)");
    let mut p = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = std::fs::read_to_string(&port_file) {
            let port: u16 = s.trim().parse().unwrap();
            wait_for_registry(port, "fake registry", &mut p);
            return (p, port);
        }
        assert!(Instant::now() < deadline, "fake registry did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A three-layer image `name` (busybox, then two committed layers with `/one` of 300 kB of
/// random bytes and `/two`), built in the daemon.
fn build_image(d: &Daemon, name: &str) {
    d.import_busybox();
    ok(d.docker(&[
        "run",
        "--name",
        "l1",
        "busybox",
        "sh",
        "-c",
        "head -c 300000 /dev/urandom > /one",
    ]));
    ok(d.docker(&["commit", "l1", "layer1:x"]));
    ok(d.docker(&[
        "run",
        "--name",
        "l2",
        "layer1:x",
        "sh",
        "-c",
        "echo second > /two; rm /bin/vi",
    ]));
    ok(d.docker(&["commit", "-c", "CMD [\"cat\", \"/two\"]", "l2", name]));
    ok(d.docker(&["rm", "l1", "l2"]));
    ok(d.docker(&["rmi", "layer1:x"]));
}

/// Pushes a three-layer image to a registry, removes it, pulls it back (by tag and by
/// digest) and runs it; pushes again (layers already there) and to a second repository
/// (blobs mounted).
fn round_trip(d: &Daemon, port: u16) {
    let r = format!("127.0.0.1:{port}/test/three:v1");
    build_image(d, "three:local");
    ok(d.docker(&["tag", "three:local", &r]));
    let id = ok(d.docker(&["inspect", "-f", "{{.Id}}", "three:local"]));
    let out = ok(d.docker(&["push", &r]));
    assert!(
        out.contains(&format!(
            "The push refers to repository [127.0.0.1:{port}/test/three]"
        )),
        "{out}"
    );
    assert_eq!(out.matches(": Pushed").count(), 3, "{out}");
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("v1: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest line: {out}"))
        .to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    // What the registry serves, asked without pulling (docker-py's `get_registry_data`).
    let v = d
        .http("GET", &format!("/v1.41/distribution/{r}/json"), None)
        .json();
    assert_eq!(v["Descriptor"]["digest"], digest.as_str(), "{v}");
    assert!(v["Descriptor"]["size"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["Platforms"][0]["os"], "linux", "{v}");
    let missing = format!("127.0.0.1:{port}/test/three:nope");
    let resp = d.http("GET", &format!("/v1.41/distribution/{missing}/json"), None);
    assert_eq!(resp.status, 404, "{}", resp.text());
    ok(d.docker(&["rmi", &r, "three:local"]));
    assert!(!ok(d.docker(&["images", "-q", "--no-trunc"])).contains(&id));

    let out = ok(d.docker(&["pull", &r]));
    assert!(out.contains("v1: Pulling from test/three"), "{out}");
    assert!(
        out.contains("Already exists"),
        "busybox's layer is local: {out}"
    );
    assert_eq!(out.matches("Pull complete").count(), 2, "{out}");
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {r}")),
        "{out}"
    );
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{.Id}}", &r])).trim(),
        id.trim()
    );
    assert_eq!(ok(d.docker(&["run", "--rm", &r])).trim(), "second");
    let out = d.docker(&["run", "--rm", &r, "ls", "/bin/vi"]);
    assert!(
        !out.status.success(),
        "the deleted file is gone: {}",
        stdout(&out)
    );
    assert_eq!(
        ok(d.docker(&["run", "--rm", &r, "wc", "-c", "/one"]))
            .split_whitespace()
            .next(),
        Some("300000")
    );
    let digests = ok(d.docker(&["inspect", "-f", "{{json .RepoDigests}}", &r]));
    assert!(
        digests.contains(&format!("127.0.0.1:{port}/test/three@{digest}")),
        "{digests}"
    );

    // Up to date, then by digest.
    let out = ok(d.docker(&["pull", &r]));
    assert!(
        out.contains(&format!("Status: Image is up to date for {r}")),
        "{out}"
    );
    let by_digest = format!("127.0.0.1:{port}/test/three@{digest}");
    ok(d.docker(&["rmi", &r]));
    let out = ok(d.docker(&["pull", &by_digest]));
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert_eq!(ok(d.docker(&["run", "--rm", &by_digest])).trim(), "second");

    // Again: nothing to upload, and the same manifest. To another repository: the layers
    // are mounted.
    ok(d.docker(&["tag", &by_digest, &r]));
    let out = ok(d.docker(&["push", &r]));
    assert_eq!(out.matches("Layer already exists").count(), 3, "{out}");
    assert!(out.contains(&format!("v1: digest: {digest} ")), "{out}");
    // Every tag of a repository, both ways, with no `latest` among them.
    let multi = format!("127.0.0.1:{port}/test/multi");
    for t in ["a", "b"] {
        ok(d.docker(&["tag", &r, &format!("{multi}:{t}")]));
    }
    let out = ok(d.docker(&["push", "--all-tags", &multi]));
    assert!(
        out.contains("a: digest: ") && out.contains("b: digest: "),
        "{out}"
    );
    ok(d.docker(&["rmi", &format!("{multi}:a"), &format!("{multi}:b")]));
    let out = ok(d.docker(&["pull", "--all-tags", &multi]));
    assert!(out.contains("a: Pulling from test/multi"), "{out}");
    assert_eq!(
        ok(d.docker(&["images", "--format", "{{.Tag}}", &multi])),
        "a\nb"
    );
    // A tag that is not here: the error comes in the push's stream, as dockerd's.
    let o = d.docker(&["push", &format!("{multi}:nope")]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains(&format!("The push refers to repository [{multi}]")),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains(&format!(
            "An image does not exist locally with the tag: {multi}:nope"
        )),
        "{}",
        stderr(&o)
    );
    ok(d.docker(&["rmi", &format!("{multi}:a"), &format!("{multi}:b")]));
    let other = format!("127.0.0.1:{port}/test/other:v2");
    ok(d.docker(&["tag", &r, &other]));
    let out = ok(d.docker(&["push", &other]));
    assert_eq!(out.matches("Mounted from test/three").count(), 3, "{out}");

    // Search: the registry has no v1 search API, so its catalog is searched.
    let names = ok(d.docker(&[
        "search",
        "--format",
        "{{.Name}}|{{.StarCount}}|{{.IsOfficial}}",
        &format!("127.0.0.1:{port}/THR"),
    ]));
    assert_eq!(names, format!("127.0.0.1:{port}/test/three|0|"));
    let all = ok(d.docker(&["search", &format!("127.0.0.1:{port}/test/")]));
    assert!(
        all.contains(&format!("127.0.0.1:{port}/test/other")) && all.starts_with("NAME"),
        "{all}"
    );
    assert_eq!(
        ok(d.berth(&[
            "search",
            "--limit",
            "1",
            "--format",
            "{{.Name}}",
            &format!("127.0.0.1:{port}/test")
        ]))
        .lines()
        .count(),
        1
    );
    common::assert_refused(
        &d.docker(&["search", "--limit", "101", &format!("127.0.0.1:{port}/x")]),
        1,
        "limit 101 is outside the range of [1, 100]",
    );
    common::assert_refused(
        &d.docker(&["search", "-f", "is-official=maybe", "x"]),
        1,
        "invalid filter 'is-official=maybe'",
    );

    // Removing the digest reference of an image that still has a tag keeps the image.
    let out = ok(d.docker(&["rmi", &by_digest]));
    assert!(out.contains(&format!("Untagged: {by_digest}")), "{out}");
    assert!(!out.contains("Deleted"), "{out}");
    assert_eq!(ok(d.docker(&["run", "--rm", &r])).trim(), "second");

    // Missing tags and repositories are Docker's errors.
    let out = d.docker(&["pull", &format!("127.0.0.1:{port}/test/three:nope")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "manifest for 127.0.0.1:{port}/test/three:nope not found"
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn push_and_pull_through_berths_registry() {
    let d = Daemon::start_on_host_network();
    let (_reg, port) = berth_registry(&d.dir.join("registry"));
    round_trip(&d, port);
    // berth's own CLI pulls and pushes too.
    let r = format!("127.0.0.1:{port}/test/three:v1");
    ok(d.berth(&["rmi", &r]));
    let out = ok(d.berth(&["pull", &r]));
    assert!(out.contains(&r), "{out}");
    assert_eq!(ok(d.berth(&["run", "--rm", &r])).trim(), "second");
    ok(d.berth(&["tag", &r, &format!("127.0.0.1:{port}/test/fromberth:1")]));
    ok(d.berth(&["push", &format!("127.0.0.1:{port}/test/fromberth:1")]));
}

#[test]
fn push_and_pull_through_distribution() {
    let d = Daemon::start_on_host_network();
    let Some((_reg, port)) = distribution(&d.dir.join("distribution")) else {
        eprintln!("SKIPPED: /usr/bin/docker-registry (distribution 2.8) is not installed");
        return;
    };
    round_trip(&d, port);
}

/// Saves `image` into an OCI layout directory (Berth's `save` writes one), and removes it
/// from the daemon.
fn layout_of(d: &Daemon, image: &str, dir: &Path) -> serde_json::Value {
    let tar = d.dir.join("layout.tar");
    ok(d.docker(&["save", "-o", tar.to_str().unwrap(), image]));
    std::fs::create_dir_all(dir).unwrap();
    tar::Archive::new(std::fs::File::open(&tar).unwrap())
        .unpack(dir)
        .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(dir, &m)).unwrap()).unwrap();
    serde_json::json!({ "digest": m, "manifest": manifest })
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Writes a manifest blob and a tag that names it with `media_type`.
fn tag_document(dir: &Path, tag: &str, doc: &serde_json::Value, media_type: &str) -> String {
    let bytes = serde_json::to_vec(doc).unwrap();
    let digest = sha256(&bytes);
    std::fs::write(blob(dir, &digest), &bytes).unwrap();
    std::fs::create_dir_all(dir.join("tags")).unwrap();
    std::fs::write(
        dir.join("tags").join(tag),
        serde_json::to_vec(&serde_json::json!({ "digest": digest, "mediaType": media_type }))
            .unwrap(),
    )
    .unwrap();
    digest
}

/// What the store holds: images, and unpacked layer snapshots.
fn store_state(d: &Daemon) -> (String, usize) {
    let images = ok(d.docker(&["images", "-a", "-q", "--no-trunc"]));
    let snapshots = std::fs::read_dir(d.dir.join("data/snapshots"))
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            let n = n.to_string_lossy();
            n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .count();
    (images, snapshots)
}

fn pull_fails(d: &Daemon, r: &str, want: &str) {
    let out = d.docker(&["pull", r]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "pull of {r} succeeded: {all}");
    assert!(
        all.contains(want),
        "pull of {r}: expected {want:?} in: {all}"
    );
}

#[test]
fn hostile_registries_are_refused_and_leave_the_store_as_it_was() {
    let d = Daemon::start_on_host_network();
    build_image(&d, "three:local");
    let dir = d.dir.join("layout");
    let info = layout_of(&d, "three:local", &dir);
    ok(d.docker(&["rmi", "three:local"]));
    let manifest = &info["manifest"];
    let top = manifest["layers"][2]["digest"].as_str().unwrap().to_owned();
    let top_hex = top.strip_prefix("sha256:").unwrap();
    let (_reg, port) = fake_registry(&dir, None);
    let before = store_state(&d);
    let r = |tag: &str| format!("127.0.0.1:{port}/evil/img:{tag}");

    // A layer whose bytes are not its digest.
    // Same length, a well-formed tar, one byte of file content changed.
    let real = std::fs::read(blob(&dir, &top)).unwrap();
    let at = real
        .windows(7)
        .position(|w| w == b"second\n")
        .expect("the layer holds /two");
    let mut lie = real.clone();
    lie[at] = b'S';
    std::fs::create_dir_all(dir.join("lie")).unwrap();
    std::fs::write(dir.join("lie").join(top_hex), &lie).unwrap();
    pull_fails(&d, &r("latest"), "digest mismatch");
    assert_eq!(store_state(&d), before);
    std::fs::remove_file(dir.join("lie").join(top_hex)).unwrap();

    // A manifest served as an index, and an index served as a manifest.
    let m_digest = info["digest"].as_str().unwrap();
    tag_document(
        &dir,
        "asindex",
        manifest,
        "application/vnd.oci.image.index.v1+json",
    );
    pull_fails(&d, &r("asindex"), "invalid manifest");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m_digest,
            "size": std::fs::metadata(blob(&dir, m_digest)).unwrap().len(),
            "platform": {"architecture": "amd64", "os": "linux"}
        }]
    });
    tag_document(
        &dir,
        "asmanifest",
        &index,
        "application/vnd.oci.image.manifest.v1+json",
    );
    pull_fails(&d, &r("asmanifest"), "invalid manifest");
    assert_eq!(store_state(&d), before);

    // A download cut short every time: refused after the retries, no image.
    std::fs::create_dir_all(dir.join("truncate")).unwrap();
    std::fs::write(dir.join("truncate").join(top_hex), "1000").unwrap();
    pull_fails(&d, &r("latest"), top_hex);
    assert_eq!(store_state(&d).0, before.0);
    std::fs::remove_file(dir.join("truncate").join(top_hex)).unwrap();

    // A blob whose descriptor claims 10 GB: refused when the stream ends (after the retries a
    // short stream gets), no image. A short stream looks like a dropped connection, so the
    // layers that did arrive are kept for a retry: only the images are compared.
    let mut huge = manifest.clone();
    huge["layers"][2]["size"] = serde_json::json!(10_000_000_000u64);
    tag_document(
        &dir,
        "huge",
        &huge,
        "application/vnd.oci.image.manifest.v1+json",
    );
    pull_fails(&d, &r("huge"), "its descriptor says 10000000000");
    assert_eq!(store_state(&d).0, before.0);

    // The honest registry's image pulls and runs.
    ok(d.docker(&["pull", &r("latest")]));
    assert_eq!(
        ok(d.docker(&["run", "--rm", &r("latest")])).trim(),
        "second"
    );
    assert!(d.docker(&["version"]).status.success());

    // An image pulled through an index is known by the index's digest, as moby records it:
    // a pin on that digest (`run name@sha256:...`) finds it.
    let index_digest = tag_document(
        &dir,
        "multi",
        &index,
        "application/vnd.oci.image.index.v1+json",
    );
    let out = ok(d.docker(&["pull", &r("multi")]));
    assert!(out.contains(&format!("Digest: {index_digest}")), "{out}");
    let pinned = format!("127.0.0.1:{port}/evil/img@{index_digest}");
    assert_eq!(ok(d.docker(&["run", "--rm", &pinned])).trim(), "second");
}

#[test]
fn a_daemon_killed_mid_pull_leaves_no_image_and_the_pull_resumes() {
    let mut d = Daemon::start_on_host_network();
    build_image(&d, "three:local");
    let dir = d.dir.join("layout");
    layout_of(&d, "three:local", &dir);
    ok(d.docker(&["rmi", "three:local"]));
    // 300 kB at 200 kB/s: the top layers take over a second.
    let (_reg, port) = fake_registry(&dir, Some(200_000));
    let r = format!("127.0.0.1:{port}/slow/img:1");
    let before = ok(d.docker(&["images", "-q"]));
    let mut pull = Command::new(common::DOCKER)
        .args(["pull", &r])
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.join("docker-config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    d.crash_and_restart();
    let _ = pull.wait();
    assert_eq!(
        ok(d.docker(&["images", "-q"])),
        before,
        "no image after the kill"
    );
    let partial: u64 = std::fs::read_dir(d.dir.join("data/content/ingest"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        partial > 0,
        "the interrupted download was kept for resuming"
    );
    let out = ok(d.docker(&["pull", &r]));
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    assert_eq!(ok(d.docker(&["run", "--rm", &r])).trim(), "second");
    let left = std::fs::read_dir(d.dir.join("data/content/ingest"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "the resumed download was moved into the store");
}

/// The reference engine (dockerd 20.10) pushes to and pulls from Berth's registry, when one
/// answers on /var/run/docker.sock.
#[test]
fn the_reference_dockerd_uses_berths_registry() {
    let reference = |args: &[&str]| {
        Command::new(common::DOCKER)
            .args(["-H", "unix:///var/run/docker.sock"])
            .args(args)
            .env_remove("DOCKER_HOST")
            .output()
            .unwrap()
    };
    if !reference(&["version"]).status.success() {
        eprintln!("SKIPPED: no reference dockerd on /var/run/docker.sock");
        return;
    }
    if !reference(&["image", "inspect", "busybox:latest"])
        .status
        .success()
    {
        eprintln!("SKIPPED: the reference dockerd has no busybox:latest");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_reg, port) = berth_registry(dir.path());
    let r = format!("127.0.0.1:{port}/ref/bb-{}:1", std::process::id());
    /// Removes the tag from the reference engine, also when the test fails.
    struct Untag<'a>(&'a dyn Fn(&[&str]) -> std::process::Output, String);
    impl Drop for Untag<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["rmi", "-f", &self.1]);
        }
    }
    let _untag = Untag(&reference, r.clone());
    assert!(reference(&["tag", "busybox:latest", &r]).status.success());
    let out = reference(&["push", &r]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Pushed"), "{}", stdout(&out));
    assert!(reference(&["rmi", &r]).status.success());
    let out = reference(&["pull", &r]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = reference(&["run", "--rm", &r, "echo", "hello from berth's registry"]);
    assert_eq!(
        stdout(&out).trim(),
        "hello from berth's registry",
        "{}",
        stderr(&out)
    );
    // And Berth pulls what dockerd pushed.
    let d = Daemon::start_on_host_network();
    ok(d.docker(&["pull", &r]));
    assert_eq!(
        ok(d.docker(&["run", "--rm", &r, "echo", "ok"])).trim(),
        "ok"
    );
}

/// With `registry-mirrors` in daemon.json, Docker Hub pulls come from the mirror (Docker Hub
/// itself is not reachable from the tests).
#[test]
fn docker_hub_pulls_come_from_the_configured_mirror() {
    let mut d = Daemon::start_on_host_network();
    let (_reg, port) = berth_registry(&d.dir.join("mirror"));
    d.import_busybox();
    let on_mirror = format!("127.0.0.1:{port}/library/busybox:mirrored");
    ok(d.docker(&["tag", "busybox:latest", &on_mirror]));
    ok(d.docker(&["push", &on_mirror]));
    ok(d.docker(&["rmi", &on_mirror]));
    d.write_config(&format!(
        r#"{{"registry-mirrors": ["http://127.0.0.1:{port}"]}}"#
    ));
    d.crash_and_restart();
    let out = ok(d.docker(&["pull", "busybox:mirrored"]));
    assert!(
        out.contains("Status: Downloaded newer image for busybox:mirrored"),
        "{out}"
    );
    assert_eq!(
        ok(d.docker(&["run", "--rm", "busybox:mirrored", "echo", "via mirror"])).trim(),
        "via mirror"
    );
    // What the mirror lacks is not found there, and Docker Hub cannot be reached.
    let out = d.docker(&["pull", "busybox:not-on-the-mirror"]);
    assert!(!out.status.success());
}

/// `docker import URL`: the daemon fetches the tarball itself.
#[test]
fn import_from_a_url() {
    let d = Daemon::start_on_host_network();
    let dir = d.dir.join("www");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(common::busybox_tar(), dir.join("rootfs.tar")).unwrap();
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let mut server = Proc(child);
    wait_for_registry(port, "http.server", &mut server);
    let url = format!("http://127.0.0.1:{port}/rootfs.tar");
    let id = ok(d.docker(&[
        "import",
        "-c",
        "CMD [\"echo\", \"from a url\"]",
        &url,
        "urlimg:1",
    ]));
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(
        ok(d.docker(&["run", "--rm", "urlimg:1"])).trim(),
        "from a url"
    );
    let history = ok(d.docker(&["history", "--format", "{{.Comment}}", "urlimg:1"]));
    assert_eq!(history.trim(), format!("Imported from {url}"));
    // A missing file is the server's 404, and nothing is made.
    let out = d.docker(&[
        "import",
        &format!("http://127.0.0.1:{port}/nope.tar"),
        "urlimg:2",
    ]);
    assert!(!out.status.success());
    assert!(d.docker(&["image", "inspect", "urlimg:2"]).status.code() != Some(0));
}
