//! Garbage in, errors out, never a panic: random bytes, Dockerfile-flavoured noise, and
//! mutated fixtures go through the whole front end (lexer, instructions, global args, graph,
//! per-stage expansion, mounts, heredoc commands, ONBUILD triggers, ports, signals), and
//! random strings through the word lexer, durations, image references and `.dockerignore`.

use std::collections::BTreeMap;
use std::path::Path;

use berth_build::ast::{Instruction, parse_expose, parse_go_duration, parse_signal, parse_trigger};
use berth_build::expand::{
    ArgDecl, Lexer, NoEnv, Platform, StageScope, expand_heredoc, platform_args,
};
use berth_build::graph::validate_image_reference;
use berth_build::{BuildGraph, Dockerfile, Ignore};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const TOKENS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "LABEL",
    "EXPOSE",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
    "ENTRYPOINT",
    "MAINTAINER",
    "AS",
    "as",
    "scratch",
    "alpine",
    "--from=",
    "--mount=",
    "type=cache",
    "type=secret",
    "type=bind",
    "target=",
    "from=",
    "--chown=",
    "--link",
    "--platform=",
    "--network=",
    "--interval=",
    "NONE",
    "CMD",
    "<<EOF",
    "<<-EOF",
    "<<'EOF'",
    "<<\"X\"",
    "EOF",
    "X",
    "$A",
    "${A}",
    "${A:-",
    "${A:+x}",
    "${A?",
    "${",
    "}",
    "$",
    "\\",
    "`",
    "\"",
    "'",
    "[",
    "]",
    "[\"a\"",
    "\"]",
    "=",
    "==",
    "#",
    "# escape=`",
    "# syntax=x",
    "\n",
    "\n",
    "\n",
    " ",
    " ",
    "\t",
    "\r",
    "0",
    "1",
    "-1",
    "99",
    "a",
    "b",
    "/x",
    "./y",
    "*",
    "**",
    "?",
    "!",
    ",",
    ":",
    "é",
    "\u{0}",
    "\u{feff}",
    "\u{2028}",
    "--",
    "-",
];

fn noise(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(60);
    let mut out = Vec::new();
    for _ in 0..n {
        match rng.below(10) {
            0 => out.push(rng.next() as u8),
            1 => out.extend_from_slice(&[0xff, 0xfe, 0xc3]),
            _ => out.extend_from_slice(rng.pick(TOKENS).as_bytes()),
        }
        if rng.below(3) == 0 {
            out.push(b' ');
        }
    }
    out
}

fn mutate(rng: &mut Rng, src: &[u8]) -> Vec<u8> {
    let mut v = src.to_vec();
    for _ in 0..1 + rng.below(8) {
        let pos = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if !v.is_empty() => {
                let end = (pos + rng.below(20)).min(v.len());
                v.drain(pos.min(end)..end);
            }
            1 => {
                let t = rng.pick(TOKENS).as_bytes().to_vec();
                v.splice(pos..pos, t);
            }
            2 if pos < v.len() => v[pos] = rng.next() as u8,
            3 => v.truncate(pos),
            _ => v.insert(pos.min(v.len()), b'\n'),
        }
    }
    v
}

fn exercise(src: &[u8], rng: &mut Rng) {
    let Ok(df) = Dockerfile::parse("Dockerfile", src) else {
        return;
    };
    let host = Platform::host();
    let mut ba = BTreeMap::new();
    ba.insert("A".to_owned(), "x y".to_owned());
    ba.insert("HTTP_PROXY".to_owned(), "http://p".to_owned());
    let Ok(globals) = df.global_scope(&ba, &platform_args(&host, &host)) else {
        return;
    };
    let names: Vec<String> = df.stages.iter().filter_map(|s| s.name.clone()).collect();
    let target = if names.is_empty() || rng.below(2) == 0 {
        None
    } else {
        Some(rng.pick(&names).clone())
    };
    let _ = BuildGraph::new(&df, &globals, target.as_deref());
    let _ = BuildGraph::new(&df, &globals, Some("nope"));
    let lex = df.lexer();
    for stage in &df.stages {
        let _ = df.expand_from(stage, &globals);
        let mut scope = StageScope::new(&["PATH=/bin".to_owned(), "X".to_owned()]);
        for cmd in &stage.commands {
            let Ok(c) = df.expand_command(cmd, &scope) else {
                continue;
            };
            match &c.instruction {
                Instruction::Arg(decls) => {
                    for d in decls {
                        let _ = scope.declare_arg(&lex, d, &ba, &globals);
                    }
                }
                Instruction::Env(kvs) => {
                    for kv in kvs {
                        scope.set_env(&kv.key, &kv.value);
                    }
                }
                Instruction::Run(r) => {
                    let _ = r.effective_command();
                    for m in &r.mounts {
                        let _ = m.resolve(&mut |s: &str| lex.process_word(s, &scope));
                        let _ = m.from_ref();
                    }
                }
                Instruction::Copy(cp) => {
                    for s in &cp.contents {
                        let _ = expand_heredoc(&s.data, &scope);
                    }
                }
                Instruction::Expose(p) => {
                    let _ = parse_expose(p);
                }
                Instruction::Stopsignal(s) => {
                    let _ = parse_signal(s);
                }
                Instruction::Onbuild(o) => {
                    let _ = o.parse_trigger();
                }
                _ => {}
            }
        }
        let _ = scope.run_env(&ba);
        let _ = scope.history_args();
        let _ = scope.image_env();
    }
    let _ = df.to_owned();
}

fn fixtures() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(b) = std::fs::read(e.path()) {
                out.push(b);
            }
        }
    }
    out
}

#[test]
fn garbage_never_panics_the_front_end() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let corpus = fixtures();
    assert!(!corpus.is_empty());
    for i in 0..4000 {
        let input = match i % 4 {
            0 => noise(&mut rng),
            1 => {
                let mut v = b"FROM a AS b\n".to_vec();
                v.extend(noise(&mut rng));
                v
            }
            _ => {
                let base = rng.pick(&corpus).clone();
                mutate(&mut rng, &base)
            }
        };
        exercise(&input, &mut rng);
    }
}

#[test]
fn garbage_never_panics_the_helpers() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let env: Vec<(String, String)> = vec![
        ("A".into(), "a b".into()),
        ("E".into(), String::new()),
        ("P".into(), "/usr/local/bin".into()),
    ];
    for _ in 0..4000 {
        let bytes = noise(&mut rng);
        let s = String::from_utf8_lossy(&bytes).into_owned();
        for esc in ['\\', '`'] {
            let mut lex = Lexer::new(esc);
            let _ = lex.process_word(&s, &env);
            let _ = lex.process_words(&s, &env);
            lex.raw_quotes = true;
            lex.raw_escapes = true;
            lex.skip_unset = true;
            let _ = lex.process_words(&s, &NoEnv);
            lex.skip_quotes = true;
            let _ = lex.process_word(&s, &env);
        }
        let _ = expand_heredoc(&s, &env);
        let _ = parse_go_duration(&s);
        let _ = validate_image_reference(&s);
        let _ = parse_signal(&s);
        let _ = parse_expose(std::slice::from_ref(&s));
        let _ = parse_trigger(&s);
        let _ = berth_build::ast::MountSpec::parse(&s)
            .map(|m| m.resolve(&mut |v: &str| Ok(v.to_owned())));
        let _ = berth_build::expand::Platform::parse(&s);
        let _ = berth_build::expand::GlobalScope::new(
            &Lexer::new('\\'),
            &[ArgDecl {
                name: "X".into(),
                default: Some(s.clone()),
            }],
            &BTreeMap::new(),
            &[],
        );
        if let Ok(ig) = Ignore::parse(&bytes) {
            for _ in 0..4 {
                let p = String::from_utf8_lossy(&noise(&mut rng)).into_owned();
                let _ = ig.matches(&p);
                let _ = ig.can_skip_dir(&p);
            }
            let mut kept = ig.clone();
            kept.keep_build_files(&s);
        }
    }
}

#[test]
fn pathological_sizes_stay_bounded() {
    // Deep nesting and long runs must not blow the stack or take long.
    let deep = format!("{}x{}", "${A:-".repeat(2000), "}".repeat(2000));
    let _ = Lexer::new('\\').process_word(&deep, &NoEnv);
    let stars = format!("{}a", "*".repeat(500));
    let ig = Ignore::from_patterns([stars.as_str()]).expect("pattern");
    assert!(!ig.matches(&"b".repeat(5000)));
    let many_cont = format!("FROM a\nRUN x{}\n", " \\\n".repeat(20_000));
    let _ = Dockerfile::parse("Dockerfile", many_cont.as_bytes());
    let onbuilds = format!("FROM a\n{}RUN x\n", "ONBUILD ".repeat(100_000));
    let e = Dockerfile::parse("Dockerfile", onbuilds.as_bytes()).expect_err("chained");
    assert!(e.to_string().contains("Chaining ONBUILD"), "{e}");
    let too_big = vec![b'#'; berth_build::parse::MAX_DOCKERFILE_SIZE + 1];
    assert!(Dockerfile::parse("Dockerfile", &too_big).is_err());
}
