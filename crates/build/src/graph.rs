//! The stages of a Dockerfile as a dependency graph, and which of them a build needs.
//!
//! Edges, as BuildKit draws them: `FROM <stage>` (only a stage defined *earlier*; a later
//! name in `FROM` is an image reference), `COPY --from=<name|index>` and
//! `RUN --mount=from=<name|index>` (any stage, earlier or later; BuildKit builds a DAG, so a
//! forward reference is fine and only a cycle is refused). A `--from` that names no stage is
//! an external image. Stage names match case-insensitively. `--target` picks the final stage
//! (default: the last); only the stages it reaches are built ([`BuildGraph::needed`]), in
//! [`BuildGraph::order`], or level by level in [`BuildGraph::groups`] where each group's
//! stages are independent of each other.

use crate::ast::{Dockerfile, Instruction, Stage};
use crate::error::{Error, ErrorKind, suggest};
use crate::expand::GlobalScope;

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// An earlier stage.
    Stage(usize),
    /// An image reference (expanded, not yet normalised).
    Image(String),
}

/// Why one stage depends on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepKind {
    /// `FROM <stage>`.
    From,
    /// `COPY --from=<stage>`.
    CopyFrom,
    /// `RUN --mount=from=<stage>`.
    MountFrom,
}

/// An edge: this stage needs `stage` (built first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dependency {
    /// The stage depended on.
    pub stage: usize,
    /// Through what.
    pub kind: DepKind,
    /// The line of the instruction that creates the edge.
    pub line: usize,
}

/// A stage in the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageNode {
    /// The stage's index.
    pub index: usize,
    /// The `AS` name, lower-cased.
    pub name: Option<String>,
    /// The base after global-arg expansion.
    pub base: Base,
    /// `--platform` after global-arg expansion.
    pub platform: Option<String>,
    /// Stages this one needs, in instruction order (deduplicated by stage and kind).
    pub deps: Vec<Dependency>,
    /// Images used by `COPY --from` / `RUN --mount=from` (not stages), with their lines.
    pub images: Vec<(String, usize)>,
}

/// What a `--from` value resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromRef {
    /// A stage, by index.
    Stage(usize),
    /// An image reference.
    Image(String),
}

/// The stage DAG of a Dockerfile with a chosen target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildGraph {
    nodes: Vec<StageNode>,
    target: usize,
    needed: Vec<usize>,
    order: Vec<usize>,
    groups: Vec<Vec<usize>>,
}

impl BuildGraph {
    /// Builds the graph of `df` with FROM lines expanded in `globals`, for `target` (a stage
    /// name; `None` for the last stage).
    pub fn new(
        df: &Dockerfile,
        globals: &GlobalScope,
        target: Option<&str>,
    ) -> Result<BuildGraph, Error> {
        let n = df.stages.len();
        // Every stage is checked, used or not: a name given twice is an error, as dockerd's.
        for (i, stage) in df.stages.iter().enumerate() {
            if let Some(name) = &stage.name {
                if df.stages[..i].iter().any(|s| s.name.as_ref() == Some(name)) {
                    return Err(Error::new(
                        &df.file,
                        stage.span.start,
                        stage.span.end,
                        ErrorKind::Syntax(format!("{name} stage name already used")),
                    )
                    .with_instruction("FROM"));
                }
            }
        }
        let mut nodes = Vec::with_capacity(n);
        for (i, stage) in df.stages.iter().enumerate() {
            let (base_name, platform) = df.expand_from(stage, globals)?;
            let mut deps = Vec::new();
            let base = match find_stage(&df.stages[..i], &base_name) {
                Some(j) => {
                    deps.push(Dependency {
                        stage: j,
                        kind: DepKind::From,
                        line: stage.span.start,
                    });
                    Base::Stage(j)
                }
                None if base_name == "scratch" => Base::Scratch,
                None => Base::Image(base_name),
            };
            let mut images = Vec::new();
            for cmd in &stage.commands {
                let refs: Vec<(&str, DepKind)> = match &cmd.instruction {
                    Instruction::Copy(c) => c
                        .from
                        .as_deref()
                        .map(|f| (f, DepKind::CopyFrom))
                        .into_iter()
                        .collect(),
                    Instruction::Run(r) => r
                        .mounts
                        .iter()
                        .filter_map(|m| m.from_ref().map(|f| (f, DepKind::MountFrom)))
                        .collect(),
                    _ => Vec::new(),
                };
                for (from, kind) in refs {
                    match resolve_from(&df.stages, from).map_err(|k| df.error_at(cmd, k))? {
                        FromRef::Stage(j) => {
                            if !deps
                                .iter()
                                .any(|d: &Dependency| d.stage == j && d.kind == kind)
                            {
                                deps.push(Dependency {
                                    stage: j,
                                    kind,
                                    line: cmd.span.start,
                                });
                            }
                        }
                        FromRef::Image(img) => images.push((img, cmd.span.start)),
                    }
                }
            }
            nodes.push(StageNode {
                index: i,
                name: stage.name.clone(),
                base,
                platform,
                deps,
                images,
            });
        }

        check_cycles(df, &nodes)?;

        let target = match target {
            None => n - 1,
            Some(t) => find_stage(&df.stages, t).ok_or_else(|| {
                let names: Vec<String> = df.stages.iter().map(Stage::display_name).collect();
                Error::new(
                    &df.file,
                    0,
                    0,
                    ErrorKind::TargetNotFound {
                        target: t.to_owned(),
                        suggestion: suggest(
                            t,
                            df.stages.iter().filter_map(|s| s.name.as_deref()),
                            false,
                        ),
                        stages: names,
                    },
                )
            })?,
        };

        let mut reach = vec![false; n];
        let mut stack = vec![target];
        while let Some(s) = stack.pop() {
            if std::mem::replace(&mut reach[s], true) {
                continue;
            }
            stack.extend(nodes[s].deps.iter().map(|d| d.stage));
        }
        let needed: Vec<usize> = (0..n).filter(|i| reach[*i]).collect();

        for &i in &needed {
            let stage = &df.stages[i];
            if let Base::Image(img) = &nodes[i].base {
                validate_image_reference(img).map_err(|m| {
                    Error::new(
                        &df.file,
                        stage.span.start,
                        stage.span.end,
                        ErrorKind::Reference(format!("failed to parse stage name {:?}: {m}", img)),
                    )
                    .with_instruction("FROM")
                })?;
            }
            for (img, line) in &nodes[i].images {
                validate_image_reference(img).map_err(|m| {
                    Error::new(
                        &df.file,
                        *line,
                        *line,
                        ErrorKind::Reference(format!("invalid from flag value {img}: {m}")),
                    )
                })?;
            }
        }

        // Levels: a stage's level is one more than its deepest dependency's.
        let mut level = vec![0usize; n];
        let mut order = Vec::with_capacity(needed.len());
        let mut done = vec![false; n];
        while order.len() < needed.len() {
            let mut progressed = false;
            for &i in &needed {
                if done[i] || !nodes[i].deps.iter().all(|d| done[d.stage]) {
                    continue;
                }
                level[i] = nodes[i]
                    .deps
                    .iter()
                    .map(|d| level[d.stage] + 1)
                    .max()
                    .unwrap_or(0);
                done[i] = true;
                order.push(i);
                progressed = true;
            }
            if !progressed {
                break; // unreachable: cycles were refused above
            }
        }
        order.sort_by_key(|i| (level[*i], *i));
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for &i in &order {
            let l = level[i];
            if groups.len() <= l {
                groups.resize(l + 1, Vec::new());
            }
            groups[l].push(i);
        }
        groups.retain(|g| !g.is_empty());

        Ok(BuildGraph {
            nodes,
            target,
            needed,
            order,
            groups,
        })
    }

    /// All stages, in Dockerfile order.
    pub fn nodes(&self) -> &[StageNode] {
        &self.nodes
    }

    /// The target stage's index.
    pub fn target(&self) -> usize {
        self.target
    }

    /// The stages the target needs (itself included), by index.
    pub fn needed(&self) -> &[usize] {
        &self.needed
    }

    /// Whether stage `i` is built for the target.
    pub fn is_needed(&self, i: usize) -> bool {
        self.needed.binary_search(&i).is_ok()
    }

    /// The needed stages in a build order: every stage after the stages it depends on.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// The needed stages in levels: the stages of one group depend only on earlier groups,
    /// so each group can be built in parallel.
    pub fn groups(&self) -> &[Vec<usize>] {
        &self.groups
    }
}

/// Finds a stage by name, case-insensitively.
pub fn find_stage(stages: &[Stage], name: &str) -> Option<usize> {
    let lower = name.to_lowercase();
    stages
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
}

/// Resolves a `--from` value: a stage index (Go `Atoi` syntax; must exist), a stage name, or
/// else an image.
pub fn resolve_from(stages: &[Stage], from: &str) -> Result<FromRef, ErrorKind> {
    let digits = from.strip_prefix(['+', '-']).unwrap_or(from);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(idx) = from.parse::<i64>() {
            return match usize::try_from(idx) {
                Ok(i) if i < stages.len() => Ok(FromRef::Stage(i)),
                _ => Err(ErrorKind::Reference(format!("invalid stage index {idx}"))),
            };
        }
    }
    Ok(match find_stage(stages, from) {
        Some(i) => FromRef::Stage(i),
        None => FromRef::Image(from.to_owned()),
    })
}

fn check_cycles(df: &Dockerfile, nodes: &[StageNode]) -> Result<(), Error> {
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; nodes.len()];
    for start in 0..nodes.len() {
        if state[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(dep) = nodes[node].deps.get(*next) {
                *next += 1;
                match state[dep.stage] {
                    0 => {
                        state[dep.stage] = 1;
                        stack.push((dep.stage, 0));
                    }
                    1 => {
                        let stage = &df.stages[dep.stage];
                        return Err(Error::new(
                            &df.file,
                            dep.line,
                            dep.line,
                            ErrorKind::Cycle(stage.display_name()),
                        ));
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
    Ok(())
}

/// Checks an image reference against the distribution reference grammar, as
/// `reference.ParseNormalizedNamed` does, with its messages.
pub fn validate_image_reference(s: &str) -> Result<(), String> {
    const BAD: &str = "invalid reference format";
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(format!(
            "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        ));
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((alg, hex)) = d.split_once(':') else {
            return Err(BAD.into());
        };
        let alg_ok = !alg.is_empty()
            && alg.split(['-', '_', '+', '.']).all(|c| {
                c.starts_with(|ch: char| ch.is_ascii_alphabetic())
                    && c.chars().all(|ch| ch.is_ascii_alphanumeric())
            });
        if !alg_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BAD.into());
        }
    }
    // A tag is after the last ':' that comes after the last '/'.
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(BAD.into());
        }
    }
    if name.is_empty() {
        return Err(BAD.into());
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let first = parts[0];
    if parts.len() > 1
        && (first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.chars().any(|c| c.is_ascii_uppercase()))
    {
        if !valid_domain(first) {
            return Err(BAD.into());
        }
        parts.remove(0);
    }
    let repo = parts.join("/");
    if repo.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("{BAD}: repository name must be lowercase"));
    }
    for p in &parts {
        if !valid_path_component(p) {
            return Err(BAD.into());
        }
    }
    if name.len() > 255 {
        return Err("repository name must not be more than 255 characters".into());
    }
    Ok(())
}

fn valid_path_component(p: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
    let b = p.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        let s = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == s {
            return false;
        }
        if i == b.len() {
            return true;
        }
        let sep_start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[sep_start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok || i == b.len() {
            return false;
        }
    }
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((ip6, after)) = rest.split_once(']') else {
            return false;
        };
        if ip6.is_empty()
            || !ip6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return false;
        }
        (
            None,
            after
                .strip_prefix(':')
                .map(Some)
                .unwrap_or(if after.is_empty() { None } else { Some("") }),
        )
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    match host {
        None => true,
        Some(h) => {
            !h.is_empty()
                && h.split('.').all(|c| {
                    let b = c.as_bytes();
                    !b.is_empty()
                        && b[0].is_ascii_alphanumeric()
                        && b[b.len() - 1].is_ascii_alphanumeric()
                        && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expand::{Platform, platform_args};
    use std::collections::BTreeMap;

    fn graph(src: &str, target: Option<&str>, args: &[(&str, &str)]) -> Result<BuildGraph, Error> {
        let df = Dockerfile::parse("Dockerfile", src.as_bytes())?;
        let ba: BTreeMap<String, String> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let p = Platform::parse("linux/amd64")
            .map_err(|_| Error::new("x", 0, 0, ErrorKind::NoStages))?;
        let g = df.global_scope(&ba, &platform_args(&p, &p))?;
        BuildGraph::new(&df, &g, target)
    }

    const MULTI: &str = "\
FROM golang:1.22 AS build
RUN go build -o /app .

FROM alpine AS tools
RUN apk add curl

FROM build AS test
RUN go test ./...

FROM scratch AS final
COPY --from=build /app /app
COPY --from=1 /usr/bin/curl /curl
";

    #[test]
    fn target_selects_needed_stages() {
        let g = graph(MULTI, None, &[]).expect("graph");
        assert_eq!(g.target(), 3);
        assert_eq!(g.needed(), &[0, 1, 3]);
        assert_eq!(g.groups(), &[vec![0, 1], vec![3]]);
        assert_eq!(g.nodes()[3].base, Base::Scratch);
        assert_eq!(g.nodes()[2].base, Base::Stage(0));

        let g = graph(MULTI, Some("TEST"), &[]).expect("graph");
        assert_eq!(g.target(), 2);
        assert_eq!(g.needed(), &[0, 2]);
        assert_eq!(g.order(), &[0, 2]);

        let e = graph(MULTI, Some("tset"), &[]).expect_err("missing");
        assert_eq!(
            e.to_string(),
            "Dockerfile: target stage \"tset\" could not be found (did you mean test?); stages: build, tools, test, final"
        );
    }

    #[test]
    fn global_args_in_from_and_stage_refs() {
        let src =
            "ARG BASE=build\nARG TAG=3.19\nFROM alpine:${TAG} AS build\nFROM ${BASE}\nRUN x\n";
        let g = graph(src, None, &[]).expect("graph");
        assert_eq!(g.nodes()[0].base, Base::Image("alpine:3.19".into()));
        assert_eq!(g.nodes()[1].base, Base::Stage(0));
        let g = graph(src, None, &[("BASE", "debian:12")]).expect("graph");
        assert_eq!(g.nodes()[1].base, Base::Image("debian:12".into()));
        assert_eq!(g.needed(), &[1]);
    }

    #[test]
    fn from_a_later_name_is_an_image_but_copy_from_may_look_ahead() {
        let src = "FROM later AS first\nRUN x\nFROM alpine AS later\nFROM scratch\nCOPY --from=later / /\n";
        let g = graph(src, Some("first"), &[]).expect("graph");
        assert_eq!(g.nodes()[0].base, Base::Image("later".into()));
        let src = "FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\n";
        let g = graph(src, Some("a"), &[]).expect("graph");
        assert_eq!(g.order(), &[1, 0]);
    }

    #[test]
    fn mounts_and_images() {
        let src = "FROM alpine AS deps\nFROM alpine\nRUN --mount=type=bind,from=deps,target=/d --mount=type=cache,target=/c x\nCOPY --from=nginx:1.25 /etc/nginx /etc/nginx\n";
        let g = graph(src, None, &[]).expect("graph");
        assert_eq!(g.nodes()[1].deps[0].kind, DepKind::MountFrom);
        assert_eq!(g.nodes()[1].images, vec![("nginx:1.25".to_owned(), 4)]);
        assert_eq!(g.needed(), &[0, 1]);
    }

    #[test]
    fn bad_references_and_cycles() {
        let cases: &[(&str, &str)] = &[
            (
                "FROM alpine AS a\nCOPY --from=a /x /y\n",
                "Dockerfile:2: circular dependency detected on stage: a",
            ),
            (
                "FROM alpine AS a\nCOPY --from=b /x /y\nFROM alpine AS b\nCOPY --from=a /x /y\n",
                "Dockerfile:4: circular dependency detected on stage: a",
            ),
            (
                "FROM alpine\nCOPY --from=5 /x /y\n",
                "Dockerfile:2: COPY: invalid stage index 5",
            ),
            (
                "FROM alpine\nCOPY --from=bad:ref::x /x /y\n",
                "Dockerfile:2: invalid from flag value bad:ref::x: invalid reference format",
            ),
            (
                "FROM alpine\nCOPY --from=$X /x /y\n",
                "Dockerfile:2: COPY: variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
            ),
            (
                "FROM Alpine\n",
                "Dockerfile:1: FROM: failed to parse stage name \"Alpine\": invalid reference format: repository name must be lowercase",
            ),
            (
                "ARG X\nFROM $X\n",
                "Dockerfile:2: FROM: base name ($X) should not be blank",
            ),
            (
                "FROM alpine AS a\nRUN x\nFROM alpine AS A\n",
                "Dockerfile:3: FROM: a stage name already used",
            ),
        ];
        for (src, want) in cases {
            let e = graph(src, None, &[]).expect_err(src);
            assert_eq!(e.to_string(), *want, "{src}");
        }
    }

    #[test]
    fn image_references() {
        for ok in [
            "alpine",
            "alpine:3.19",
            "library/alpine:latest",
            "docker.io/library/alpine",
            "localhost:5000/my/app:v1",
            "ghcr.io/owner/repo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "[::1]:5000/x",
            "my_app__x",
        ] {
            assert_eq!(validate_image_reference(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Alpine", "a:b:c", "a/", "-a", "a@sha256:zz", "a:-tag"] {
            assert!(validate_image_reference(bad).is_err(), "{bad}");
        }
    }
}
