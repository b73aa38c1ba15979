//! Builds end to end: multi-stage Dockerfiles with every instruction, the results run and
//! inspected; `.dockerignore` and context escapes; the cache (hits, misses after a changed
//! file, `--no-cache`, `builder prune`, cache mounts); parallel stages; errors that name the
//! line; and the docker CLI's legacy builder against berthd.

mod common;

use std::path::{Path, PathBuf};

use common::{Daemon, ok, stderr, stdout};

fn daemon() -> Daemon {
    let d = Daemon::start();
    d.import_busybox();
    d
}

/// Writes `files` (path, content) under a fresh context directory of the daemon's test dir.
fn context(d: &Daemon, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = d.dir.join(name);
    for (p, data) in files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
    }
    dir
}

fn build(d: &Daemon, ctx: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    let c = ctx.to_str().unwrap();
    args.push(c);
    d.berth(&args)
}

fn inspect(d: &Daemon, image: &str, fmt: &str) -> String {
    ok(d.berth(&["image", "inspect", "-f", fmt, image]))
}

const EVERY_INSTRUCTION: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS builder
ARG VERSION=1.0
ARG FLAVOR
ENV APP_HOME=/opt/app \
    VERSION=${VERSION}
WORKDIR $APP_HOME
COPY src/ ./src/
COPY *.conf /etc/app/
ADD vendor.tar /opt/vendor/
RUN ["/bin/sh", "-c", "echo exec-form > exec.txt"]
RUN echo "flavor=${FLAVOR:-plain} version=$VERSION" > build-info.txt
RUN <<EOF
set -e
echo heredoc > heredoc.txt
EOF
COPY <<EOF /opt/app/inline.txt
inline ${VERSION}
EOF

FROM busybox
SHELL ["/bin/sh", "-c"]
COPY --from=builder /opt/app/ /app/
COPY --from=builder --chown=65534:65534 --chmod=640 /opt/app/build-info.txt /srv/info.txt
COPY --from=builder /opt/vendor/pkg/lib.txt /srv/lib.txt
COPY --from=builder /etc/app/ /etc/app/
LABEL org.example.name="demo app" version=2
EXPOSE 8080 53/udp
VOLUME /data
USER nobody
WORKDIR /app
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD test -f /app/exec.txt
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/build-info.txt"]
MAINTAINER someone@example.com
"#;

#[test]
fn multi_stage_build_with_every_instruction() {
    let d = daemon();
    // A tar for ADD to extract.
    let tar_dir = d.dir.join("tarsrc");
    std::fs::create_dir_all(tar_dir.join("pkg")).unwrap();
    std::fs::write(tar_dir.join("pkg/lib.txt"), "from the archive\n").unwrap();
    let ctx = context(
        &d,
        "ctx",
        &[
            ("Dockerfile", EVERY_INSTRUCTION),
            ("src/main.txt", "main source\n"),
            ("src/deep/nested.txt", "nested\n"),
            ("a.conf", "a=1\n"),
            ("b.conf", "b=2\n"),
        ],
    );
    let tar = std::process::Command::new("tar")
        .args(["-C", tar_dir.to_str().unwrap(), "-czf"])
        .arg(ctx.join("vendor.tar"))
        .arg("pkg")
        .status()
        .unwrap();
    assert!(tar.success());
    let out = ok(build(
        &d,
        &ctx,
        &[
            "-t",
            "demo:1",
            "-t",
            "demo:latest",
            "--build-arg",
            "FLAVOR=spicy",
            "--label",
            "extra=yes",
        ],
    ));
    assert!(out.contains("Successfully tagged demo:1"), "{out}");
    assert!(out.contains("Successfully tagged demo:latest"), "{out}");

    // The default command runs as nobody in /app and shows the build args.
    assert_eq!(
        ok(d.berth(&["run", "--rm", "demo:1"])),
        "flavor=spicy version=1.0"
    );
    assert_eq!(
        ok(d.berth(&["run", "--rm", "demo:1", "id -u; pwd"])),
        "65534\n/app"
    );
    let listing = ok(d.berth(&[
        "run",
        "--rm",
        "-u",
        "0",
        "demo:1",
        "cat /app/src/main.txt /app/src/deep/nested.txt /app/exec.txt /app/heredoc.txt \
         /app/inline.txt /srv/lib.txt /etc/app/a.conf /etc/app/b.conf; \
         stat -c '%a %u:%g' /srv/info.txt; stat -c '%u:%g' /app/src/main.txt",
    ]));
    assert_eq!(
        listing,
        "main source\nnested\nexec-form\nheredoc\ninline 1.0\nfrom the archive\na=1\nb=2\n\
         640 65534:65534\n0:0"
    );
    // The config.
    let cfg: serde_json::Value =
        serde_json::from_str(&inspect(&d, "demo:1", "{{json .Config}}")).unwrap();
    assert_eq!(cfg["User"], "nobody");
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(cfg["Cmd"], serde_json::json!(["cat /app/build-info.txt"]));
    assert_eq!(cfg["Labels"]["org.example.name"], "demo app");
    assert_eq!(cfg["Labels"]["version"], "2");
    assert_eq!(cfg["Labels"]["extra"], "yes");
    assert_eq!(
        cfg["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}, "53/udp": {}})
    );
    assert_eq!(cfg["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(cfg["StopSignal"], "SIGINT");
    assert_eq!(cfg["OnBuild"], serde_json::json!(["RUN echo triggered"]));
    assert_eq!(
        cfg["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "test -f /app/exec.txt"],
            "Interval": 5_000_000_000u64, "Timeout": 2_000_000_000u64, "Retries": 4})
    );
    assert_eq!(cfg["Shell"], serde_json::json!(["/bin/sh", "-c"]));
    // The builder stage's ENV does not leak into the final stage.
    let env = cfg["Env"].to_string();
    assert!(env.contains("PATH="), "{env}");
    assert!(!env.contains("APP_HOME"), "{env}");
    assert_eq!(inspect(&d, "demo:1", "{{.Author}}"), "someone@example.com");
    // History: newest first, layers only where files changed.
    let history = ok(d.berth(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}|{{.Size}}",
        "demo:1",
    ]));
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines[0].starts_with("MAINTAINER"), "{history}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("COPY --from=builder /opt/app/ /app/")),
        "{history}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("LABEL org.example.name") && l.ends_with("|0B")),
        "{history}"
    );
    // busybox's layer and the 4 COPY layers; WORKDIR /app existed already (no layer).
    assert_eq!(inspect(&d, "demo:1", "{{len .RootFS.Layers}}"), "5");

    // ONBUILD triggers run in a child build, once.
    let child = context(
        &d,
        "child",
        &[("Dockerfile", "FROM demo:1\nUSER 0\nRUN touch /child\n")],
    );
    let out = ok(build(&d, &child, &["-t", "child"]));
    assert!(out.contains("triggered"), "{out}");
    assert_eq!(inspect(&d, "child", "{{json .Config.OnBuild}}"), "null");
}

#[test]
fn dockerignore_and_the_context_boundary() {
    let d = daemon();
    let outside = d.dir.join("outside-secret");
    std::fs::write(&outside, "top secret\n").unwrap();
    let ctx = context(
        &d,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY . /ctx/\nCOPY linkdir/ /via/\n\
                 COPY --exclude=other.txt *.txt /ex/\n\
                 RUN --mount=type=bind,target=/c ls -A /c | sort | tr '\\n' ' ' > /bound\n",
            ),
            ("other.txt", "other\n"),
            (
                ".dockerignore",
                "*.log\nsecrets/\n!keep.log\n!secrets/public.pem\n",
            ),
            ("app.txt", "app\n"),
            ("debug.log", "noise\n"),
            ("keep.log", "kept\n"),
            ("secrets/key", "k\n"),
            ("secrets/public.pem", "pub\n"),
        ],
    );
    std::os::unix::fs::symlink(&outside, ctx.join("escape")).unwrap();
    std::os::unix::fs::symlink("secrets", ctx.join("linkdir")).unwrap();
    ok(build(&d, &ctx, &["-t", "ign"]));
    // A symlink to an ignored directory brings only what an exception lets in; --exclude
    // filters what a glob names; a RUN bind shows the context as it would have been sent.
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "ign",
            "sh",
            "-c",
            "ls /via; ls /ex; cat /bound"
        ])),
        "public.pem\napp.txt\n.dockerignore Dockerfile app.txt escape keep.log linkdir other.txt secrets"
    );
    let files = ok(d.berth(&[
        "run",
        "--rm",
        "ign",
        "sh",
        "-c",
        "cd /ctx && ls -A | sort | tr '\\n' ' '; ls secrets | tr '\\n' ' '; readlink escape",
    ]));
    // The symlink is copied as a symlink, its target never read.
    assert_eq!(
        files,
        format!(
            ".dockerignore Dockerfile app.txt escape keep.log linkdir other.txt secrets public.pem {}",
            outside.display()
        )
    );

    // A Dockerfile and .dockerignore that the ignore file lists are read but not copied.
    let self_ignored = context(
        &d,
        "selfign",
        &[
            ("Dockerfile", "FROM busybox\nCOPY . /ctx/\n"),
            (".dockerignore", "Dockerfile\n.dockerignore\n"),
            ("kept", "k\n"),
        ],
    );
    ok(build(&d, &self_ignored, &["-t", "selfign"]));
    assert_eq!(
        ok(d.berth(&["run", "--rm", "selfign", "ls", "-A", "/ctx"])),
        "kept"
    );
    // Sources cannot climb out of the context, directly or through a symlink.
    let climb = context(
        &d,
        "climb",
        &[("Dockerfile", "FROM busybox\nCOPY ../outside-secret /x\n")],
    );
    let out = build(&d, &climb, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Dockerfile:2"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("outside the build context"),
        "{}",
        stderr(&out)
    );
    let link = context(
        &d,
        "link",
        &[("Dockerfile", "FROM busybox\nCOPY escape /x\n")],
    );
    std::os::unix::fs::symlink(&outside, link.join("escape")).unwrap();
    let out = build(&d, &link, &[]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));

    // A working directory through /proc/self/fd is refused (CVE-2024-21626).
    let fd = context(
        &d,
        "fd",
        &[(
            "Dockerfile",
            "FROM busybox\nWORKDIR /proc/self/fd/7\nRUN pwd\n",
        )],
    );
    let out = build(&d, &fd, &[]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("not allowed"), "{}", stderr(&out));
}

/// How many steps ran (not taken from the cache) in a build's output.
fn executed(out: &str) -> usize {
    let step = |l: &&str| l.starts_with("Step ");
    let steps = out.lines().filter(step).count();
    let skipped = out
        .lines()
        .filter(step)
        .filter(|l| l.contains(": FROM ") || l.contains(": ARG "))
        .count();
    steps - skipped - out.matches(" ---> Using cache").count()
}

const CACHED: &str = "FROM busybox
RUN echo one > /one
COPY a.txt /a.txt
RUN cat /a.txt > /copy
COPY b.txt /b.txt
RUN --mount=type=cache,target=/cache echo x >> /cache/hits && wc -l < /cache/hits > /hits
CMD [\"cat\", \"/copy\"]
";

#[test]
fn the_cache_reruns_only_what_changed() {
    let d = daemon();
    let ctx = context(
        &d,
        "ctx",
        &[
            ("Dockerfile", CACHED),
            ("a.txt", "first\n"),
            ("b.txt", "bee\n"),
        ],
    );
    let first = ok(build(&d, &ctx, &["-t", "c:1"]));
    assert_eq!(executed(&first), 6, "{first}");
    let cache_rows = || {
        ok(d.berth(&["system", "df", "--format", "{{.Type}}={{.TotalCount}}"]))
            .lines()
            .find(|l| l.starts_with("Build Cache="))
            .map(str::to_owned)
    };
    assert_eq!(cache_rows().as_deref(), Some("Build Cache=6"));
    let id1 = inspect(&d, "c:1", "{{.Id}}");

    // Nothing changed: every step from the cache, the same image.
    let again = ok(build(&d, &ctx, &["-t", "c:2"]));
    assert_eq!(executed(&again), 0, "{again}");
    assert!(!again.contains("Running in"), "{again}");
    assert_eq!(inspect(&d, "c:2", "{{.Id}}"), id1);

    // A new mtime alone is no change.
    let a = ctx.join("a.txt");
    std::fs::write(&a, "first\n").unwrap();
    assert_eq!(executed(&ok(build(&d, &ctx, &["-t", "c:3"]))), 0);

    // Changing a.txt reruns its COPY and everything after it, not the RUN before.
    std::fs::write(&a, "second\n").unwrap();
    let changed = ok(build(&d, &ctx, &["-t", "c:4"]));
    assert_eq!(executed(&changed), 5, "{changed}");
    assert!(
        changed.contains("Step 2/7 : RUN echo one > /one\n ---> Using cache"),
        "{changed}"
    );
    assert_eq!(ok(d.berth(&["run", "--rm", "c:4"])), "second");
    // The cache mount kept its content between builds.
    assert_eq!(ok(d.berth(&["run", "--rm", "c:4", "cat", "/hits"])), "2");

    // --no-cache runs everything.
    let fresh = ok(build(&d, &ctx, &["--no-cache", "-t", "c:5"]));
    assert_eq!(executed(&fresh), 6, "{fresh}");

    // builder prune empties the cache: the next build runs everything again.
    let pruned = ok(d.berth(&["builder", "prune", "-f"]));
    assert!(pruned.contains("Total reclaimed space:"), "{pruned}");
    assert_eq!(cache_rows().as_deref(), Some("Build Cache=0"));
    let after = ok(build(&d, &ctx, &["-t", "c:6"]));
    assert_eq!(executed(&after), 6, "{after}");
    // The images stayed usable throughout.
    assert_eq!(ok(d.berth(&["run", "--rm", "c:1"])), "first");
}

#[test]
fn independent_stages_run_in_parallel() {
    let d = daemon();
    let stage = |name: &str| {
        format!(
            "FROM busybox AS {name}\nRUN cut -d' ' -f1 /proc/uptime > /start && sleep 1.5 && \
             cut -d' ' -f1 /proc/uptime > /end\n"
        )
    };
    let df = format!(
        "{}{}FROM busybox\nCOPY --from=left /start /left.start\nCOPY --from=left /end /left.end\n\
         COPY --from=right /start /right.start\nCOPY --from=right /end /right.end\n",
        stage("left"),
        stage("right")
    );
    let ctx = context(&d, "ctx", &[("Dockerfile", &df)]);
    ok(build(&d, &ctx, &["-t", "par"]));
    let times = ok(d.berth(&[
        "run",
        "--rm",
        "par",
        "cat",
        "/left.start",
        "/left.end",
        "/right.start",
        "/right.end",
    ]));
    let t: Vec<f64> = times.lines().map(|l| l.trim().parse().unwrap()).collect();
    // Each stage started before the other ended.
    assert!(t[0] < t[3] && t[2] < t[1], "stages did not overlap: {t:?}");
}

#[test]
fn bad_dockerfiles_give_one_error_naming_the_line() {
    let d = daemon();
    let cases = [
        (
            "FROM busybox\nRUNN echo\n",
            "Dockerfile:2",
            "unknown instruction",
        ),
        ("RUN echo\n", "Dockerfile:1", "no build stage"),
        (
            "FROM busybox\nRUN <<EOF\necho never closed\n",
            "Dockerfile:2",
            "unterminated heredoc",
        ),
        (
            "FROM busybox\nENV A=\"unterminated\n",
            "Dockerfile:2",
            "quote",
        ),
        (
            "FROM busybox\nCOPY --from=nosuch:stage:x /a /b\n",
            "Dockerfile:2",
            "from",
        ),
        ("FROM busybox\nRUN exit 3\n", "Dockerfile:2", "exit code: 3"),
        (
            "FROM busybox\nCOPY missing.txt /\n",
            "Dockerfile:2",
            "not found",
        ),
    ];
    for (i, (df, line, what)) in cases.iter().enumerate() {
        let ctx = context(&d, &format!("bad{i}"), &[("Dockerfile", df)]);
        let out = build(&d, &ctx, &[]);
        assert!(!out.status.success(), "case {i} built: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains(line), "case {i}: {err}");
        assert!(
            err.to_lowercase().contains(&what.to_lowercase()),
            "case {i}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "case {i}: one line: {err}");
        // A failed RUN's exit code is the CLI's; other failures exit 1.
        let want = if df.contains("exit 3") { 3 } else { 1 };
        assert_eq!(out.status.code(), Some(want), "case {i}: {err}");
    }
    // On the API, what fails before the build has said anything is an error status, as
    // dockerd answers it (SDKs raise on the status); a failing RUN is in the stream.
    let ctx = context(&d, "api", &[("Dockerfile", "FROM busybox\n")]);
    let path = format!("/build?contextdir={}", ctx.display());
    let r = d.http("POST", &path, Some(b"FROM busybox\nRUNN echo\n"));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("unknown instruction"),
        "{}",
        r.text()
    );
    let r = d.http(
        "POST",
        &format!("{path}&target=nope"),
        Some(b"FROM busybox\n"),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = d.http("POST", &path, Some(b"FROM busybox\nRUN exit 3\n"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(r#""code":3"#), "{}", r.text());
}

#[test]
fn docker_cli_legacy_builder_works_against_berthd() {
    let d = daemon();
    let ctx = context(
        &d,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nARG MSG=default\nCOPY greeting.txt /greeting.txt\n\
                 RUN echo \"$MSG\" >> /greeting.txt\nCMD [\"cat\", \"/greeting.txt\"]\n",
            ),
            ("greeting.txt", "hello\n"),
            (".dockerignore", "ignored/\n"),
            ("ignored/big", "x"),
        ],
    );
    let c = ctx.to_str().unwrap();
    let out = ok(d.docker(&[
        "build",
        "-t",
        "viadocker",
        "--build-arg",
        "MSG=from docker",
        c,
    ]));
    assert!(
        out.contains("Successfully tagged viadocker:latest"),
        "{out}"
    );
    // A RUN step's container is announced and its removal too, as the classic builder does.
    let running = out
        .lines()
        .find_map(|l| l.strip_prefix(" ---> Running in "))
        .unwrap_or_else(|| panic!("no RUN container in {out}"));
    assert!(
        out.contains(&format!("Removing intermediate container {running}\n")),
        "{out}"
    );
    // The FROM step shows the base image's id, as the classic builder does.
    let base = inspect(&d, "busybox", "{{.Id}}");
    assert!(
        out.contains(&format!(
            "Step 1/5 : FROM busybox\n ---> {}\n",
            &base[7..19]
        )),
        "{out}"
    );
    assert_eq!(
        ok(d.docker(&["run", "--rm", "viadocker"])),
        "hello\nfrom docker"
    );
    // The same build through berth hits the cache the docker CLI's build filled.
    let again = ok(build(
        &d,
        &ctx,
        &["-t", "viaberth", "--build-arg", "MSG=from docker"],
    ));
    assert_eq!(executed(&again), 0, "{again}");
    assert_eq!(
        inspect(&d, "viaberth", "{{.Id}}"),
        inspect(&d, "viadocker", "{{.Id}}")
    );
    // -q prints the id alone; --iidfile writes it.
    let iid = d.dir.join("iid");
    let q = ok(d.docker(&["build", "-q", "--iidfile", iid.to_str().unwrap(), c]));
    // (The CLI takes the id from the quiet stream, newline included, as with dockerd.)
    assert_eq!(q, std::fs::read_to_string(&iid).unwrap().trim());
    assert!(q.starts_with("sha256:"), "{q}");
    // A Dockerfile on stdin with no context, and a failing RUN's exit status.
    let out = d.docker_stdin(
        &["build", "-t", "stdin", "-"],
        Some(b"FROM busybox\nRUN echo from-stdin\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("from-stdin"), "{}", stdout(&out));
    // (dockerd's classic builder sends the step's exit code, and the CLI exits with it.)
    let out = d.docker_stdin(&["build", "-"], Some(b"FROM busybox\nRUN exit 7\n"));
    assert_eq!(out.status.code(), Some(7));
    assert!(stderr(&out).contains("exit code: 7"), "{}", stderr(&out));
    // Quiet, a failed build still shows what it printed, as dockerd replays it.
    let out = d.docker_stdin(
        &["build", "-q", "-"],
        Some(b"FROM busybox\nRUN echo said-before; exit 4\n"),
    );
    assert_eq!(out.status.code(), Some(4));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("said-before"), "{all}");
    assert!(all.contains("Step 2/2 : RUN"), "{all}");
    // A Dockerfile from outside the context, and one from stdin with a context: the CLI
    // appends it to the context's tar without the final padding.
    let outside = d.dir.join("outside.Dockerfile");
    std::fs::write(
        &outside,
        "FROM busybox\nCOPY greeting.txt /g\nCMD [\"cat\", \"/g\"]\n",
    )
    .unwrap();
    ok(d.docker(&["build", "-t", "outside", "-f", outside.to_str().unwrap(), c]));
    assert_eq!(ok(d.docker(&["run", "--rm", "outside"])), "hello");
    let out = d.docker_stdin(
        &["build", "-t", "stdinfile", "-f", "-", c],
        Some(b"FROM busybox\nCOPY greeting.txt /s\nCMD [\"cat\", \"/s\"]\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ok(d.docker(&["run", "--rm", "stdinfile"])), "hello");
}

/// Serves `body` for every request on 127.0.0.1 (a thread per connection); returns the port.
fn serve(body: &'static [u8]) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(body);
            });
        }
    });
    port
}

#[test]
fn add_downloads_urls() {
    let d = Daemon::start_on_host_network();
    d.import_busybox();
    let port = serve(b"downloaded content\n");
    let sum = "sha256:4c56e84f5b6d0a8e8e84e71bbfbc0f8bb7c8c7ed7e2e6b7ef1e0b58d1f8c1d2e";
    let df = format!(
        "FROM busybox\nADD http://127.0.0.1:{port}/files/hello.txt /downloads/\n\
         ADD --chown=65534:65534 http://127.0.0.1:{port}/x /named.txt\n"
    );
    let ctx = context(&d, "ctx", &[("Dockerfile", &df)]);
    ok(build(&d, &ctx, &["-t", "dl"]));
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "dl",
            "sh",
            "-c",
            "cat /downloads/hello.txt; stat -c '%a %u' /downloads/hello.txt /named.txt"
        ])),
        "downloaded content\n600 0\n600 65534"
    );
    // Downloaded again on a rebuild; unchanged content is a cache hit.
    let again = ok(build(&d, &ctx, &["-t", "dl"]));
    assert_eq!(executed(&again), 0, "{again}");
    // A wrong --checksum fails the step.
    let bad = context(
        &d,
        "bad",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD --checksum={sum} http://127.0.0.1:{port}/f /f\n"),
        )],
    );
    let out = build(&d, &bad, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("digest mismatch"), "{}", stderr(&out));
}

#[test]
fn outputs_export_the_result_files() {
    let d = daemon();
    let ctx = context(
        &d,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox AS build\nRUN mkdir -p /out && echo artifact > /out/app.bin && \
             cp /bin/busybox /out/suid && chmod 4755 /out/suid\n\
             FROM scratch\nCOPY --from=build /out/ /\nCOPY tagged.txt /\n",
        )],
    );
    std::fs::write(ctx.join("tagged.txt"), "x").unwrap();
    let set = std::process::Command::new("python3")
        .args([
            "-c",
            // cap_net_bind_service=ep, as `setcap` writes it.
            "import os,struct,sys; os.setxattr(sys.argv[1], 'security.capability', \
             struct.pack('<IIIII', 0x02000001, 1 << 10, 0, 0, 0))",
        ])
        .arg(ctx.join("tagged.txt"))
        .status()
        .unwrap();
    assert!(set.success());
    let local = d.dir.join("exported");
    ok(build(&d, &ctx, &["-o", local.to_str().unwrap()]));
    // On the host: no set-uid bit; file capabilities came along.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(local.join("suid"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "{mode:o}");
    let got = std::process::Command::new("python3")
        .args([
            "-c",
            "import os,struct,sys; print(struct.unpack('<IIIII', \
             os.getxattr(sys.argv[1], 'security.capability'))[1])",
        ])
        .arg(local.join("tagged.txt"))
        .output()
        .unwrap();
    assert_eq!(stdout(&got).trim(), "1024", "{}", stderr(&got));
    assert_eq!(
        std::fs::read_to_string(local.join("app.bin")).unwrap(),
        "artifact\n"
    );
    let tar = d.dir.join("out.tar");
    ok(build(
        &d,
        &ctx,
        &["--output", &format!("type=tar,dest={}", tar.display())],
    ));
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .unwrap();
    assert!(
        stdout(&list)
            .lines()
            .any(|l| l.trim_start_matches("./") == "app.bin"),
        "{}",
        stdout(&list)
    );
}

#[test]
fn secrets_reach_run_steps_but_never_the_image() {
    let d = daemon();
    let secret = d.dir.join("token");
    std::fs::write(&secret, "s3cr3t-value").unwrap();
    let ctx = context(
        &d,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             ARG WANT=czNjcjN0LXZhbHVl\n\
             RUN --mount=type=secret,id=token test \"$(cat /run/secrets/token)\" = \"$(echo $WANT | base64 -d)\" && \
             stat -c '%a' /run/secrets/token > /mode\n\
             RUN --mount=type=secret,id=token,env=TOKEN,required test \"$TOKEN\" = \"$(echo $WANT | base64 -d)\" && touch /env-ok\n\
             RUN --mount=type=secret,id=absent ls /run/secrets 2>/dev/null | wc -l > /absent\n",
        )],
    );
    let s = format!("id=token,src={}", secret.display());
    let out = ok(build(&d, &ctx, &["-t", "sec", "--secret", &s]));
    assert!(!out.contains("s3cr3t"), "{out}");
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "sec",
            "sh",
            "-c",
            "cat /mode; ls /env-ok; cat /absent; test -e /run || echo no /run"
        ])),
        "400\n/env-ok\n0\nno /run"
    );
    // Not in any layer, the config or the history.
    let saved = d.dir.join("sec.tar");
    ok(d.berth(&["save", "-o", saved.to_str().unwrap(), "sec"]));
    let raw = std::fs::read(&saved).unwrap();
    assert!(
        !raw.windows(12).any(|w| w == b"s3cr3t-value"),
        "the secret is in the image"
    );
    let history = ok(d.berth(&["history", "--no-trunc", "sec"]));
    assert!(!history.contains("s3cr3t"), "{history}");
    // A required secret that is not given fails the step.
    let need = context(
        &d,
        "need",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=secret,id=nope,required true\n",
        )],
    );
    let out = build(&d, &need, &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("secret nope is required"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn progress_views() {
    let d = daemon();
    let ctx = context(
        &d,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo visible-output\nLABEL a=b\n",
        )],
    );
    let c = ctx.to_str().unwrap();
    // plain: BuildKit-style numbered lines on stderr, the RUN's output with its step.
    let out = d.berth(&["build", "--progress=plain", "-t", "pv", c]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("#2 [2/3] RUN echo visible-output\n"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("#2 ") && l.ends_with(" visible-output")),
        "{err}"
    );
    assert!(err.contains("#2 DONE"), "{err}");
    // tty: the live view on a terminal; a rebuild shows every step as CACHED.
    let mut pty = d.berth_pty(&["build", "-t", "pv", c], 30, 100);
    assert_eq!(pty.wait(), Some(0), "{}", pty.output());
    let shown = pty.output();
    assert!(
        shown.contains(" => CACHED [2/3] RUN echo visible-output"),
        "{shown}"
    );
    assert!(shown.contains(" => CACHED [3/3] LABEL a=b"), "{shown}");
    assert!(shown.contains("Successfully tagged pv:latest"), "{shown}");
    // A bad --progress is refused before anything runs.
    let out = d.berth(&["build", "--progress=fancy", c]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid --progress"),
        "{}",
        stderr(&out)
    );
}

/// Starts `berth build -t tag ctx` and waits for its output line `started`; returns the
/// process and the rest of its output.
fn build_until_started(
    d: &Daemon,
    ctx: &Path,
    tag: &str,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(common::bin("berth"))
        .arg("-H")
        .arg(d.host())
        .args(["build", "-t", tag, ctx.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for l in lines.by_ref() {
        if l.unwrap() == "started" {
            break;
        }
    }
    (child, lines)
}

#[test]
fn a_client_that_goes_away_cancels_the_build() {
    let d = daemon();
    let ctx = context(
        &d,
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN echo started && sleep 60\n")],
    );
    let (mut child, _lines) = build_until_started(&d, &ctx, "never");
    assert!(
        !d.cgroup_pids().is_empty(),
        "the RUN step should be running"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The step's processes are killed soon after, and no image was made.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !d.cgroup_pids().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the RUN step still runs: {:?}",
            d.cgroup_pids()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = d.berth(&["image", "inspect", "never"]);
    assert!(!out.status.success());
    // The daemon builds on.
    let ok_ctx = context(&d, "ok", &[("Dockerfile", "FROM busybox\nRUN true\n")]);
    ok(build(&d, &ok_ctx, &["-t", "after"]));
}

#[test]
fn run_bind_mounts_show_the_context_and_keep_it_intact() {
    let d = daemon();
    let ctx = context(
        &d,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox AS tools\nRUN echo tool > /tool.txt\n\
                 FROM busybox\n\
                 RUN --mount=type=bind,target=/src cat /src/input.txt > /seen && \
                 ! touch /src/nope 2>/dev/null\n\
                 RUN --mount=type=bind,target=/src,rw echo changed > /src/input.txt && \
                 touch /src/new && cat /src/input.txt >> /seen\n\
                 RUN --mount=type=bind,from=tools,source=/tool.txt,target=/t.txt cat /t.txt >> /seen\n",
            ),
            ("input.txt", "original\n"),
        ],
    );
    ok(build(&d, &ctx, &["-t", "binds"]));
    assert_eq!(
        ok(d.berth(&["run", "--rm", "binds", "cat", "/seen"])),
        "original\nchanged\ntool"
    );
    // Writes through a rw bind were thrown away; the mount points are not in the image.
    assert_eq!(
        std::fs::read_to_string(ctx.join("input.txt")).unwrap(),
        "original\n"
    );
    assert!(!ctx.join("new").exists());
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "binds",
            "sh",
            "-c",
            "ls /src /t.txt 2>&1 | wc -l"
        ])),
        "2"
    );
}

#[test]
fn run_steps_get_their_own_network() {
    let d = daemon();
    // The interfaces of the step's namespace (from /proc: /sys may show another one's).
    let script = "#!/bin/sh\nawk -F: 'NR > 2 { gsub(/ /, \"\", $1); print $1 }' /proc/net/dev | \
                  sort | tr '\\n' ' '\n";
    let ctx = context(
        &d,
        "ctx",
        &[
            ("ifaces", script),
            (
                "Dockerfile",
                "FROM busybox\nCOPY --chmod=755 ifaces /bin/ifaces\nRUN ifaces > /ifaces && \
             ip -4 route | grep -q '^default via' && echo routed >> /ifaces\n\
             RUN --network=none ifaces > /none\n",
            ),
        ],
    );
    ok(build(&d, &ctx, &["-t", "nets"]));
    // On the default bridge, as the legacy builder puts its steps: eth0 and a route out.
    assert_eq!(
        ok(d.berth(&["run", "--rm", "nets", "cat", "/ifaces", "/none"])),
        "eth0 lo routed\nlo"
    );
    // The daemon's own namespace needs the entitlement (--network host on the build).
    let host = context(
        &d,
        "host",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --network=host awk -F: 'NR > 2 { gsub(/ /, \"\", $1); print $1 }' /proc/net/dev > /h\n",
        )],
    );
    let out = build(&d, &host, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("network.host"), "{}", stderr(&out));
    ok(build(&d, &host, &["--network", "host", "-t", "hostnet"]));
    let seen = ok(d.berth(&["run", "--rm", "hostnet", "cat", "/h"]));
    assert!(seen.lines().any(|l| l == "berth0"), "{seen}");
    // Nothing of the steps is left on the bridge: their host-side veths (`vb...`) go with
    // their namespaces, in the kernel's own time.
    let veths = || {
        let links = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                d.netns.as_deref().unwrap(),
                "ip",
                "-o",
                "link",
            ])
            .output()
            .unwrap();
        stdout(&links)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .filter(|name| name.starts_with("vb"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !veths().is_empty() {
        assert!(std::time::Instant::now() < deadline, "{:?}", veths());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn removing_the_base_during_a_build_does_not_break_it() {
    let d = daemon();
    let base = context(
        &d,
        "base",
        &[("Dockerfile", "FROM busybox\nRUN echo marker > /marker\n")],
    );
    ok(build(&d, &base, &["-t", "base"]));
    let ctx = context(
        &d,
        "ctx",
        &[(
            "Dockerfile",
            "FROM base\nRUN echo started && sleep 2 && cat /marker > /seen\n",
        )],
    );
    let (mut child, lines) = build_until_started(&d, &ctx, "onbase");
    // The base image and every cache entry go while the step runs.
    ok(d.berth(&["rmi", "-f", "base"]));
    ok(d.berth(&["builder", "prune", "-f"]));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest:?}");
    assert_eq!(
        ok(d.berth(&["run", "--rm", "onbase", "cat", "/seen"])),
        "marker"
    );
}

#[test]
fn add_extracts_every_compression_docker_does() {
    let d = daemon();
    let ctx = context(
        &d,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nADD a.tar.gz b.tar.bz2 c.tar.xz d.tar /x/\n",
        )],
    );
    let made = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import io, sys, tarfile\n\
             for name, mode in [('a.tar.gz', 'w:gz'), ('b.tar.bz2', 'w:bz2'), ('c.tar.xz', 'w:xz'), ('d.tar', 'w')]:\n\
             \x20   data = name.encode()\n\
             \x20   with tarfile.open(sys.argv[1] + '/' + name, mode) as t:\n\
             \x20       info = tarfile.TarInfo('from-' + name.split('.')[0])\n\
             \x20       info.size = len(data)\n\
             \x20       t.addfile(info, io.BytesIO(data))\n",
        )
        .arg(&ctx)
        .status()
        .unwrap();
    assert!(made.success());
    ok(build(&d, &ctx, &["-t", "unpacked"]));
    assert_eq!(
        ok(d.berth(&[
            "run",
            "--rm",
            "unpacked",
            "sh",
            "-c",
            "cd /x && for f in *; do echo $f=$(cat $f); done"
        ])),
        "from-a=a.tar.gz\nfrom-b=b.tar.bz2\nfrom-c=c.tar.xz\nfrom-d=d.tar"
    );
}
