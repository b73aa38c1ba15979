//! Real-world-style Dockerfiles under `tests/fixtures/` parsed end to end: lexing, typed
//! instructions, global args, the stage graph for several targets, per-stage expansion, and
//! a `.dockerignore`.

use std::collections::BTreeMap;
use std::path::Path;

use berth_build::ast::{CommandLine, Instruction, MountType, RunCommand};
use berth_build::expand::{Platform, StageScope, platform_args};
use berth_build::graph::Base;
use berth_build::{BuildGraph, Dockerfile, Ignore};

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn parse(name: &str) -> Dockerfile {
    Dockerfile::parse(name, &fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn graph(df: &Dockerfile, target: Option<&str>, build_args: &[(&str, &str)]) -> BuildGraph {
    let build = Platform::parse("linux/amd64").expect("platform");
    let target_p = Platform::parse("linux/arm64").expect("platform");
    let globals = df
        .global_scope(&args(build_args), &platform_args(&build, &target_p))
        .unwrap_or_else(|e| panic!("{e}"));
    BuildGraph::new(df, &globals, target).unwrap_or_else(|e| panic!("{e}"))
}

/// Walks one stage as an executor would: declares ARGs, applies ENV, expands every command.
fn walk_stage(df: &Dockerfile, stage: usize, build_args: &[(&str, &str)]) -> Vec<Instruction> {
    let build = Platform::parse("linux/amd64").expect("platform");
    let target = Platform::parse("linux/arm64").expect("platform");
    let ba = args(build_args);
    let globals = df
        .global_scope(&ba, &platform_args(&build, &target))
        .expect("globals");
    let lex = df.lexer();
    let mut scope = StageScope::new(&["PATH=/usr/local/bin:/usr/bin:/bin".to_owned()]);
    let mut out = Vec::new();
    for cmd in &df.stages[stage].commands {
        let expanded = df
            .expand_command(cmd, &scope)
            .unwrap_or_else(|e| panic!("{e}"));
        match &expanded.instruction {
            Instruction::Arg(decls) => {
                for d in decls {
                    scope
                        .declare_arg(&lex, d, &ba, &globals)
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            }
            Instruction::Env(kvs) => {
                for kv in kvs {
                    scope.set_env(&kv.key, &kv.value);
                }
            }
            Instruction::Run(r) => {
                for m in &r.mounts {
                    m.resolve(&mut |s: &str| lex.process_word(s, &scope))
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            }
            _ => {}
        }
        out.push(expanded.instruction);
    }
    out
}

#[test]
fn go_multistage() {
    let df = parse("go-multistage.Dockerfile");
    assert_eq!(
        df.directives.syntax.as_deref(),
        Some("docker/dockerfile:1.7")
    );
    assert_eq!(df.meta_args.len(), 2);
    assert_eq!(df.stages.len(), 3);
    assert_eq!(
        df.stages[0].comment.as_deref(),
        Some("compiles a static binary for the target platform")
    );

    let g = graph(&df, None, &[]);
    assert_eq!(g.needed(), &[0, 2]);
    assert_eq!(g.groups(), &[vec![0], vec![2]]);
    assert_eq!(g.nodes()[0].base, Base::Image("golang:1.22-alpine".into()));
    assert_eq!(g.nodes()[0].platform.as_deref(), Some("linux/amd64"));
    assert_eq!(g.nodes()[2].base, Base::Image("alpine:3.19".into()));

    let g = graph(&df, Some("test"), &[("GO_VERSION", "1.21")]);
    assert_eq!(g.needed(), &[0, 1]);
    assert_eq!(g.nodes()[0].base, Base::Image("golang:1.21-alpine".into()));

    let build = walk_stage(&df, 0, &[]);
    let Instruction::Run(r) = &build[4] else {
        panic!("not RUN")
    };
    assert_eq!(r.mounts.len(), 3);
    let lex = df.lexer();
    let m = r.mounts[2]
        .resolve(&mut |s: &str| lex.process_word(s, &berth_build::expand::NoEnv))
        .expect("mount");
    assert_eq!(
        (m.kind, m.target.as_str(), m.readonly),
        (MountType::Bind, ".", true)
    );
    let CommandLine::Shell(sh) = &r.command else {
        panic!("exec")
    };
    // The shell expands $TARGETOS at run time; the parser keeps it.
    assert!(sh.starts_with("CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build"));
    let fin = walk_stage(&df, 2, &[("UID", "2000")]);
    assert_eq!(fin[3], Instruction::User("appuser".into()));
}

#[test]
fn node_app() {
    let df = parse("node-app.Dockerfile");
    let g = graph(&df, None, &[]);
    assert_eq!(g.target(), 3);
    assert_eq!(g.needed(), &[0, 1, 2, 3]);
    assert_eq!(g.groups(), &[vec![0], vec![1, 2], vec![3]]);
    let base = walk_stage(&df, 0, &[]);
    assert_eq!(
        base[1],
        Instruction::Env(vec![berth_build::ast::KeyValue {
            key: "PATH".into(),
            value: "/pnpm:/usr/local/bin:/usr/bin:/bin".into()
        }])
    );
    let last = &df.stages[3].commands;
    let Instruction::Healthcheck(berth_build::ast::Healthcheck::Check(h)) = &last[3].instruction
    else {
        panic!("not HEALTHCHECK")
    };
    assert_eq!(h.test[0], "CMD-SHELL");
    assert!(h.test[1].starts_with("node -e \"require('http')"));
    assert_eq!(h.retries, 3);
    assert_eq!(last[3].span.start, 19);
    assert_eq!(last[3].span.end, 20);
}

#[test]
fn python_heredocs() {
    let df = parse("python-heredoc.Dockerfile");
    assert_eq!(
        df.directives.check.as_deref(),
        Some("skip=JSONArgsRecommended")
    );
    let cmds = &df.stages[0].commands;
    let Instruction::Run(r) = &cmds[3].instruction else {
        panic!("not RUN")
    };
    let RunCommand::Shell(script) = r.effective_command() else {
        panic!("not a shell script")
    };
    assert!(script.starts_with("set -eux\napt-get update\n"));
    assert!(script.ends_with("useradd --create-home ${APP_USER}\n"));
    let Instruction::Copy(c) = &cmds[4].instruction else {
        panic!("not COPY")
    };
    assert_eq!(c.contents[0].data, "[server]\nuser = ${APP_USER}\n");
    assert!(c.contents[0].expand);
    let Instruction::Copy(c) = &cmds[5].instruction else {
        panic!("not COPY")
    };
    assert_eq!(c.contents[0].data, "#!/bin/sh\nexec \"$@\"\n");
    assert!(!c.contents[0].expand);
    assert_eq!(c.chmod.as_deref(), Some("755"));
    let walked = walk_stage(&df, 0, &[("APP_USER", "svc")]);
    assert_eq!(walked[7], Instruction::Workdir("/home/svc/app".into()));
    let Instruction::Copy(c) = &walked[8] else {
        panic!("not COPY")
    };
    assert_eq!(c.chown.as_deref(), Some("svc:svc"));
    assert_eq!(
        walked[13],
        Instruction::Cmd(CommandLine::Shell("python -m app".into()))
    );
    // ENV legacy form.
    assert_eq!(
        walked[0],
        Instruction::Env(vec![berth_build::ast::KeyValue {
            key: "PYTHONDONTWRITEBYTECODE".into(),
            value: "1".into()
        }])
    );
}

#[test]
fn windows_escape() {
    let df = parse("windows-escape.Dockerfile");
    assert_eq!(df.directives.escape, '`');
    let cmds = &df.stages[0].commands;
    assert_eq!(
        cmds[0].instruction,
        Instruction::Shell(vec![
            "powershell".into(),
            "-Command".into(),
            "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue';".into()
        ])
    );
    let walked = walk_stage(&df, 0, &[]);
    assert_eq!(
        walked[1],
        Instruction::Env(vec![berth_build::ast::KeyValue {
            key: "APP_HOME".into(),
            value: "C:\\app".into()
        }])
    );
    let Instruction::Copy(c) = &walked[3] else {
        panic!("not COPY")
    };
    assert_eq!(c.sources, vec!["bin\\".to_owned()]);
    assert_eq!(c.dest, "C:\\app\\bin\\");
    let Instruction::Run(r) = &walked[4] else {
        panic!("not RUN")
    };
    assert_eq!(
        r.command,
        CommandLine::Shell(
            "New-Item -ItemType Directory -Path C:\\data ;     Write-Host 'done'".into()
        )
    );
    assert_eq!(cmds[4].span.start, 8);
    assert_eq!(cmds[4].span.end, 10);
    assert_eq!(
        cmds[7].instruction,
        Instruction::Cmd(CommandLine::Exec(vec!["C:\\app\\bin\\server.exe".into()]))
    );
}

#[test]
fn nginx_like() {
    let df = parse("nginx-like.Dockerfile");
    assert_eq!(df.warnings.len(), 1, "{:?}", df.warnings);
    let walked = walk_stage(&df, 0, &[]);
    let Instruction::Label(l) = &walked[0] else {
        panic!("not LABEL")
    };
    assert_eq!(l.len(), 3);
    assert_eq!(l[2].value, "A \"quoted\" description");
    assert_eq!(
        walked[1],
        Instruction::Env(vec![berth_build::ast::KeyValue {
            key: "NGINX_VERSION".into(),
            value: "1.25.4".into()
        }])
    );
    let Instruction::Run(r) = &walked[3] else {
        panic!("not RUN")
    };
    let CommandLine::Shell(sh) = &r.command else {
        panic!("exec")
    };
    assert!(!sh.contains("create nginx user"));
    assert!(sh.contains("apt-get update     && apt-get install"));
    assert_eq!(
        walked[6],
        Instruction::Volume(vec!["/var/cache/nginx".into(), "/var/log/nginx".into()])
    );
    let Instruction::Onbuild(o) = &walked[7] else {
        panic!("not ONBUILD")
    };
    assert_eq!(o.expression, "COPY conf.d/ /etc/nginx/conf.d/");
    assert_eq!(walked[11], Instruction::Stopsignal("SIGQUIT".into()));
    assert_eq!(berth_build::ast::parse_signal("SIGQUIT"), Ok(3));
}

#[test]
fn rust_chef_targets() {
    let df = parse("rust-chef.Dockerfile");
    let g = graph(&df, None, &[]);
    assert_eq!(g.target(), 4);
    assert_eq!(g.needed(), &[0, 1, 2, 4]);
    assert_eq!(g.order(), &[0, 1, 2, 4]);
    let g = graph(&df, Some("DEBUG"), &[]);
    assert_eq!(g.needed(), &[0, 1, 2, 3]);
    assert_eq!(g.groups(), &[vec![0], vec![1], vec![2], vec![3]]);
    let g = graph(&df, Some("planner"), &[]);
    assert_eq!(g.needed(), &[0, 1]);
    assert_eq!(
        g.nodes()[0].base,
        Base::Image("lukemathwalker/cargo-chef:latest-rust-1.77".into())
    );
}

#[test]
fn dockerignore_fixture() {
    let i = Ignore::parse(&fixture("context.dockerignore")).expect("ignore");
    let cases: &[(&str, bool)] = &[
        (".git", true),
        (".git/HEAD", true),
        ("target/debug/app", true),
        ("target/RELEASE.md", false), // re-included; the later *.md matches only at the root
        ("src/main.rs", false),
        ("logs/a/b.log", true),
        ("web/node_modules/x/index.js", true),
        ("README.md", false),
        ("docs/guide.md", false), // *.md matches only at the root
        ("CHANGELOG.md", true),
        ("secrets", true),
        ("secrets/key", true),
        ("tmp/x", true),
        ("Dockerfile", true),
        ("Dockerfile.dev", true),
    ];
    for (p, want) in cases {
        assert_eq!(i.matches(p), *want, "{p}");
    }
    assert!(i.can_skip_dir(".git"));
    assert!(!i.can_skip_dir("target"));
    let mut sent = i.clone();
    sent.keep_build_files("Dockerfile");
    assert!(!sent.matches("Dockerfile"));
    assert!(sent.matches("Dockerfile.dev"));
}
