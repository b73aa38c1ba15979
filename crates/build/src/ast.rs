//! Typed Dockerfile instructions and stages, built from the lexer's [`Node`]s with BuildKit's
//! per-instruction rules: which flags each instruction takes, argument counts, exec vs shell
//! form, `ENV`/`LABEL` pairs, `ARG` names and defaults, `HEALTHCHECK` options (Go
//! durations), `RUN --mount` specs, `COPY`/`ADD` sources with heredoc contents, `ONBUILD`
//! triggers, and the `FROM ... AS name` stage structure with global `ARG`s before the first
//! `FROM`.
//!
//! Values stay as written (unexpanded) here; [`Instruction::expand`] applies Docker's
//! expansion rules for the instructions that have them, and [`MountSpec::resolve`] expands and
//! validates a `--mount` in a stage's scope.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Error, ErrorKind, go_quote, suggest};
use crate::expand::{ArgDecl, Env, ExpandError, GlobalScope, Lexer};
use crate::parse::{self, Directives, Heredoc, Lexed, Node, NodeArgs};

/// Source lines of an instruction, 1-based and inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First line.
    pub start: usize,
    /// Last line (continuations and heredoc bodies included).
    pub end: usize,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The file name given to [`Dockerfile::parse`], used in errors.
    pub file: String,
    /// The parser directives.
    pub directives: Directives,
    /// The `ARG` instructions before the first `FROM` (global scope).
    pub meta_args: Vec<Command>,
    /// The stages in order; at least one.
    pub stages: Vec<Stage>,
    /// Warnings (empty continuation lines).
    pub warnings: Vec<String>,
}

/// One build stage: a `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages, from 0 (what `COPY --from=<n>` refers to).
    pub index: usize,
    /// The `AS` name, lower-cased as Docker does.
    pub name: Option<String>,
    /// The base: an image reference, `scratch`, or an earlier stage's name; unexpanded
    /// (global `ARG`s apply).
    pub base: String,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
    /// Where the `FROM` is.
    pub span: Span,
    /// The `FROM` line as written.
    pub original: String,
    /// A description from a comment right above `FROM` that starts with the stage name.
    pub comment: Option<String>,
    /// The instructions of the stage.
    pub commands: Vec<Command>,
}

impl Stage {
    /// The name Docker shows for the stage: its `AS` name or `stage-<index>`.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// One instruction with its location and source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Where it is.
    pub span: Span,
    /// The keyword, upper-cased.
    pub keyword: String,
    /// The logical line as written (continuations joined).
    pub original: String,
    /// The instruction.
    pub instruction: Instruction,
}

/// A typed instruction (other than `FROM`, which starts a [`Stage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT`; an empty shell form clears the entrypoint.
    Entrypoint(CommandLine),
    /// `SHELL` (exec form only).
    Shell(Vec<String>),
    /// `COPY`.
    Copy(Copy),
    /// `ADD`.
    Add(Add),
    /// `ENV`.
    Env(Vec<KeyValue>),
    /// `LABEL`.
    Label(Vec<KeyValue>),
    /// `EXPOSE` port specs as written (sorted, as BuildKit does).
    Expose(Vec<String>),
    /// `VOLUME` paths.
    Volume(Vec<String>),
    /// `USER user[:group]`.
    User(String),
    /// `WORKDIR`.
    Workdir(String),
    /// `ARG` (one or more names with optional defaults).
    Arg(Vec<ArgDecl>),
    /// `ONBUILD`.
    Onbuild(Onbuild),
    /// `STOPSIGNAL`.
    Stopsignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `MAINTAINER` (deprecated; kept for history and the image `Author`).
    Maintainer(String),
}

/// Exec form or shell form of `RUN`/`CMD`/`ENTRYPOINT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// The text after the instruction (and its flags), run by the `SHELL`.
    Shell(String),
    /// A JSON array, run as is.
    Exec(Vec<String>),
}

/// `KEY=value` of `ENV` or `LABEL`, as written (quotes and escapes kept until expansion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub command: CommandLine,
    /// `--mount` specs in order.
    pub mounts: Vec<MountSpec>,
    /// `--network`.
    pub network: NetworkMode,
    /// `--security`.
    pub security: SecurityMode,
    /// Heredocs opened on the line.
    pub heredocs: Vec<Heredoc>,
}

/// What a `RUN` executes once its heredocs are taken into account (BuildKit's rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunCommand {
    /// Exec form: run these arguments directly.
    Exec(Vec<String>),
    /// Give this text to the stage's `SHELL` (`/bin/sh -c <text>`).
    Shell(String),
    /// `RUN <<EOF` whose body starts with `#!`: write the body to a file, make it executable
    /// and run it.
    Script(String),
}

impl Run {
    /// The command to execute: for `RUN <<EOF` alone, the heredoc body (a script when it
    /// starts with `#!`); with heredocs after a command (`RUN python3 <<EOF`), the command
    /// line followed by the heredoc bodies and delimiters, for the shell to read.
    pub fn effective_command(&self) -> RunCommand {
        let text = match &self.command {
            CommandLine::Exec(v) => return RunCommand::Exec(v.clone()),
            CommandLine::Shell(s) => s,
        };
        if self.heredocs.is_empty() {
            return RunCommand::Shell(text.clone());
        }
        if self.heredocs.len() == 1 {
            if let Ok(Some(h)) = parse::parse_heredoc(text) {
                if h.name == self.heredocs[0].name {
                    let data = self.heredocs[0].chomped_content();
                    return if data.starts_with("#!") {
                        RunCommand::Script(data)
                    } else {
                        RunCommand::Shell(data)
                    };
                }
            }
        }
        let mut script = text.clone();
        for h in &self.heredocs {
            script.push('\n');
            script.push_str(&h.content);
            script.push_str(&h.name);
        }
        RunCommand::Shell(script)
    }
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// The default network.
    #[default]
    Default,
    /// No network.
    None,
    /// The host's network namespace.
    Host,
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityMode {
    /// The normal sandbox.
    #[default]
    Sandbox,
    /// Privileged (needs the `security.insecure` entitlement).
    Insecure,
}

/// A `--mount` option as written: its comma-separated fields, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// The flag value as written.
    pub raw: String,
    /// `(key lower-cased, value)`; `None` for key-only fields (`ro`, `required`).
    pub fields: Vec<(String, Option<String>)>,
}

/// `--mount` types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    /// A read-only (by default) view of the context or another stage/image.
    Bind,
    /// A persistent cache directory.
    Cache,
    /// A tmpfs.
    Tmpfs,
    /// A secret file (default target `/run/secrets/<id>`).
    Secret,
    /// The SSH agent socket.
    Ssh,
}

/// Cache mount sharing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    /// Concurrent users share the cache (default).
    Shared,
    /// Each concurrent user gets its own copy.
    Private,
    /// Users wait for each other.
    Locked,
}

/// A `--mount` expanded and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The type (default `bind`).
    pub kind: MountType,
    /// `target`/`dst`/`destination`.
    pub target: String,
    /// `source`/`src`.
    pub source: String,
    /// `from` (a stage name/index or an image).
    pub from: String,
    /// `id` (cache id, secret id, ssh id).
    pub id: String,
    /// `sharing` (cache mounts only).
    pub sharing: Option<CacheSharing>,
    /// `mode` (octal).
    pub mode: Option<u32>,
    /// `uid`.
    pub uid: Option<u32>,
    /// `gid`.
    pub gid: Option<u32>,
    /// Read-only: explicit, or the default (read-only except cache and tmpfs).
    pub readonly: bool,
    /// `required` (secret and ssh mounts).
    pub required: bool,
    /// `size` in bytes (tmpfs only).
    pub size: Option<u64>,
    /// `env`: expose a secret as this environment variable.
    pub env: Option<String>,
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// Source paths or globs (context-relative, or in the `--from` stage/image).
    pub sources: Vec<String>,
    /// `COPY <<EOF` inline files.
    pub contents: Vec<InlineSource>,
    /// The destination.
    pub dest: String,
    /// `--from` as written: a stage name, a stage index, or an image.
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    /// Local paths/globs, URLs or git references.
    pub sources: Vec<String>,
    /// `ADD <<EOF` inline files.
    pub contents: Vec<InlineSource>,
    /// The destination.
    pub dest: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// `--checksum` for URL sources.
    pub checksum: Option<String>,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// `--unpack`, when given.
    pub unpack: Option<bool>,
}

/// A file written inline with a heredoc (`COPY <<EOF /dest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineSource {
    /// The heredoc delimiter (also the file name when the destination is a directory).
    pub name: String,
    /// The content (tabs already stripped for `<<-`).
    pub data: String,
    /// Whether variables in `data` are expanded at build time
    /// ([`crate::expand::expand_heredoc`]).
    pub expand: bool,
}

/// `ONBUILD`: a trigger stored in the image and run by builds that use it as a base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger instruction's keyword, upper-cased.
    pub trigger: String,
    /// The trigger as stored in the image config (`RUN make`, heredocs appended).
    pub expression: String,
}

impl Onbuild {
    /// Parses the stored trigger into an instruction, as a child build does when it runs it.
    pub fn parse_trigger(&self) -> Result<Command, Error> {
        parse_trigger(&self.expression)
    }
}

/// Parses one `ONBUILD` trigger expression (from an image config) into an instruction.
pub fn parse_trigger(expression: &str) -> Result<Command, Error> {
    let lexed = parse::lex("ONBUILD", expression.as_bytes())?;
    if lexed.nodes.len() != 1 {
        return Err(Error::new(
            "ONBUILD",
            0,
            0,
            ErrorKind::Syntax("onbuild trigger should be a single expression".into()),
        ));
    }
    match parse_node("ONBUILD", &lexed.nodes[0])? {
        Parsed::Command(c) => Ok(c),
        Parsed::Stage(_) => Err(Error::new(
            "ONBUILD",
            1,
            1,
            ErrorKind::Syntax("FROM isn't allowed as an ONBUILD trigger".into()),
        )),
    }
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    Disable,
    /// `HEALTHCHECK [options] CMD ...`.
    Check(HealthConfig),
}

/// A health check as the image config stores it. Zero durations and retries mean "default".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// `["CMD", args...]` (exec form) or `["CMD-SHELL", command]` (shell form).
    pub test: Vec<String>,
    /// `--interval`.
    pub interval: Duration,
    /// `--timeout`.
    pub timeout: Duration,
    /// `--start-period`.
    pub start_period: Duration,
    /// `--start-interval`.
    pub start_interval: Duration,
    /// `--retries`.
    pub retries: u32,
}

impl Dockerfile {
    /// Parses the bytes of the Dockerfile called `file` (the name is used in errors).
    pub fn parse(file: &str, src: &[u8]) -> Result<Dockerfile, Error> {
        let lexed = parse::lex(file, src)?;
        Self::from_lexed(file, lexed)
    }

    fn from_lexed(file: &str, lexed: Lexed) -> Result<Dockerfile, Error> {
        let mut meta_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for node in &lexed.nodes {
            match parse_node(file, node)? {
                Parsed::Stage(mut s) => {
                    s.index = stages.len();
                    stages.push(s);
                }
                Parsed::Command(c) => match stages.last_mut() {
                    Some(stage) => stage.commands.push(c),
                    None if matches!(c.instruction, Instruction::Arg(_)) => meta_args.push(c),
                    None => {
                        return Err(Error::new(
                            file,
                            node.start_line,
                            node.end_line,
                            ErrorKind::NoBuildStage,
                        )
                        .with_instruction(&node.keyword));
                    }
                },
            }
        }
        if stages.is_empty() {
            return Err(Error::new(file, 0, 0, ErrorKind::NoStages));
        }
        Ok(Dockerfile {
            file: file.to_owned(),
            directives: lexed.directives,
            meta_args,
            stages,
            warnings: lexed.warnings,
        })
    }

    /// A lexer with this Dockerfile's escape character.
    pub fn lexer(&self) -> Lexer {
        Lexer::new(self.directives.escape)
    }

    /// The global `ARG` declarations, flattened, each with its command's span.
    pub fn meta_arg_decls(&self) -> Vec<(ArgDecl, Span)> {
        self.meta_args
            .iter()
            .flat_map(|c| match &c.instruction {
                Instruction::Arg(a) => a.iter().map(|d| (d.clone(), c.span)).collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// Resolves the global scope: platform args, then the global `ARG`s with `build_args`
    /// overriding their defaults.
    pub fn global_scope(
        &self,
        build_args: &BTreeMap<String, String>,
        platform_args: &[(String, String)],
    ) -> Result<GlobalScope, Error> {
        let decls = self.meta_arg_decls();
        let plain: Vec<ArgDecl> = decls.iter().map(|(d, _)| d.clone()).collect();
        GlobalScope::new(&self.lexer(), &plain, build_args, platform_args).map_err(|(i, e)| {
            let span = decls
                .get(i)
                .map(|d| d.1)
                .unwrap_or(Span { start: 0, end: 0 });
            Error::new(&self.file, span.start, span.end, ErrorKind::Expand(e))
                .with_instruction("ARG")
        })
    }

    /// The stage's base and platform with the global args substituted (BuildKit expands
    /// `FROM` in the global scope only). An empty base is an error.
    pub fn expand_from(
        &self,
        stage: &Stage,
        globals: &GlobalScope,
    ) -> Result<(String, Option<String>), Error> {
        let lex = self.lexer();
        let err = |k: ErrorKind| {
            Error::new(&self.file, stage.span.start, stage.span.end, k).with_instruction("FROM")
        };
        let base = lex
            .process_word(&stage.base, globals)
            .map_err(|e| err(ErrorKind::Expand(e)))?;
        if base.is_empty() {
            return Err(err(ErrorKind::Reference(format!(
                "base name ({}) should not be blank",
                stage.base
            ))));
        }
        let platform = match &stage.platform {
            Some(p) => Some(
                lex.process_word(p, globals)
                    .map_err(|e| err(ErrorKind::Expand(e)))?,
            ),
            None => None,
        };
        Ok((base, platform))
    }

    /// `command` with Docker's variable expansion applied in `env` (see
    /// [`Instruction::expand`]), errors located at the command.
    pub fn expand_command(&self, command: &Command, env: &dyn Env) -> Result<Command, Error> {
        let instruction = command
            .instruction
            .expand(&self.lexer(), env)
            .map_err(|k| {
                Error::new(&self.file, command.span.start, command.span.end, k)
                    .with_instruction(&command.keyword)
            })?;
        Ok(Command {
            instruction,
            ..command.clone()
        })
    }

    /// An error located at `command`.
    pub fn error_at(&self, command: &Command, kind: ErrorKind) -> Error {
        Error::new(&self.file, command.span.start, command.span.end, kind)
            .with_instruction(&command.keyword)
    }
}

impl Instruction {
    /// Applies Docker's expansion for this instruction in `env`:
    /// `ENV`/`LABEL` keys and values, `ADD`/`COPY` sources, destination, `--chown`,
    /// `--chmod` (and `ADD --checksum`), `WORKDIR`, `USER`, `STOPSIGNAL`, `VOLUME` (each path,
    /// one word) and `EXPOSE` (split into words). Other instructions come back unchanged:
    /// `RUN`/`CMD`/`ENTRYPOINT` are left to the shell, `ARG` defaults are expanded by
    /// [`crate::expand::StageScope::declare_arg`], and `RUN --mount` values by
    /// [`MountSpec::resolve`].
    pub fn expand(&self, lex: &Lexer, env: &dyn Env) -> Result<Instruction, ErrorKind> {
        let w = |s: &str| lex.process_word(s, env).map_err(ErrorKind::Expand);
        let opt = |s: &Option<String>| -> Result<Option<String>, ErrorKind> {
            match s {
                Some(s) => Ok(Some(w(s)?)),
                None => Ok(None),
            }
        };
        let list =
            |v: &[String]| -> Result<Vec<String>, ErrorKind> { v.iter().map(|s| w(s)).collect() };
        let kvs = |v: &[KeyValue]| -> Result<Vec<KeyValue>, ErrorKind> {
            v.iter()
                .map(|kv| {
                    Ok(KeyValue {
                        key: w(&kv.key)?,
                        value: w(&kv.value)?,
                    })
                })
                .collect()
        };
        Ok(match self {
            Instruction::Env(v) => Instruction::Env(kvs(v)?),
            Instruction::Label(v) => Instruction::Label(kvs(v)?),
            Instruction::Copy(c) => Instruction::Copy(Copy {
                sources: list(&c.sources)?,
                dest: w(&c.dest)?,
                chown: opt(&c.chown)?,
                chmod: opt(&c.chmod)?,
                ..c.clone()
            }),
            Instruction::Add(a) => Instruction::Add(Add {
                sources: list(&a.sources)?,
                dest: w(&a.dest)?,
                chown: opt(&a.chown)?,
                chmod: opt(&a.chmod)?,
                checksum: opt(&a.checksum)?,
                ..a.clone()
            }),
            Instruction::Workdir(p) => Instruction::Workdir(w(p)?),
            Instruction::User(u) => Instruction::User(w(u)?),
            Instruction::Stopsignal(s) => Instruction::Stopsignal(w(s)?),
            Instruction::Volume(v) => {
                let v = list(v)?;
                if v.iter().any(|p| p.trim().is_empty()) {
                    return Err(ErrorKind::Value(
                        "VOLUME specified can not be an empty string".into(),
                    ));
                }
                Instruction::Volume(v)
            }
            Instruction::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    out.extend(lex.process_words(p, env).map_err(ErrorKind::Expand)?);
                }
                Instruction::Expose(out)
            }
            other => other.clone(),
        })
    }
}

enum Parsed {
    Stage(Stage),
    Command(Command),
}

/// The instruction keywords Docker knows, for suggestions.
pub(crate) const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn parse_node(file: &str, node: &Node) -> Result<Parsed, Error> {
    let err = |k: ErrorKind| {
        let e = Error::new(file, node.start_line, node.end_line, k);
        if INSTRUCTIONS.contains(&node.keyword.to_ascii_uppercase().as_str()) {
            e.with_instruction(&node.keyword)
        } else {
            e
        }
    };
    let span = Span {
        start: node.start_line,
        end: node.end_line,
    };
    let keyword = node.keyword.to_ascii_uppercase();
    let cmd = |instruction| {
        Parsed::Command(Command {
            span,
            keyword: keyword.clone(),
            original: node.original.trim().to_owned(),
            instruction,
        })
    };
    let args = node_args(&node.args);
    let is_json = matches!(node.args, NodeArgs::Json(_));
    let flags = &node.flags;
    Ok(match keyword.as_str() {
        "FROM" => {
            let name = stage_name(&args).map_err(err)?;
            let f = parse_flags(flags, &[("platform", FlagKind::Str)]).map_err(err)?;
            Parsed::Stage(Stage {
                index: 0,
                comment: stage_comment(&node.comments, name.as_deref()),
                name,
                base: args.first().cloned().unwrap_or_default(),
                platform: f.string("platform"),
                span,
                original: node.original.trim().to_owned(),
                commands: Vec::new(),
            })
        }
        "RUN" => {
            let f = parse_flags(
                flags,
                &[
                    ("mount", FlagKind::Strs),
                    ("network", FlagKind::Str),
                    ("security", FlagKind::Str),
                ],
            )
            .map_err(err)?;
            let network = match f.string("network").as_deref() {
                None | Some("default") => NetworkMode::Default,
                Some("none") => NetworkMode::None,
                Some("host") => NetworkMode::Host,
                Some(other) => {
                    return Err(err(ErrorKind::Value(format!(
                        "invalid network mode {}",
                        go_quote(other)
                    ))));
                }
            };
            let security = match f.string("security").as_deref() {
                None | Some("sandbox") => SecurityMode::Sandbox,
                Some("insecure") => SecurityMode::Insecure,
                Some(other) => {
                    return Err(err(ErrorKind::Value(format!(
                        "invalid security mode {}",
                        go_quote(other)
                    ))));
                }
            };
            let mounts = f
                .strings("mount")
                .iter()
                .map(|m| MountSpec::parse(m))
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            cmd(Instruction::Run(Run {
                command: command_line(&args, is_json),
                mounts,
                network,
                security,
                heredocs: node.heredocs.clone(),
            }))
        }
        "CMD" => {
            parse_flags(flags, &[]).map_err(err)?;
            cmd(Instruction::Cmd(command_line(&args, is_json)))
        }
        "ENTRYPOINT" => {
            parse_flags(flags, &[]).map_err(err)?;
            cmd(Instruction::Entrypoint(command_line(&args, is_json)))
        }
        "SHELL" => {
            parse_flags(flags, &[]).map_err(err)?;
            if args.is_empty() {
                return Err(err(at_least_one("SHELL")));
            }
            if !is_json {
                return Err(err(not_json("SHELL", &node.original)));
            }
            cmd(Instruction::Shell(args))
        }
        "COPY" => {
            if args.len() < 2 {
                return Err(err(no_destination("COPY")));
            }
            let f = parse_flags(
                flags,
                &[
                    ("chown", FlagKind::Str),
                    ("chmod", FlagKind::Str),
                    ("from", FlagKind::Str),
                    ("link", FlagKind::Bool),
                    ("parents", FlagKind::Bool),
                    ("exclude", FlagKind::Strs),
                ],
            )
            .map_err(err)?;
            let (sources, contents, dest) =
                sources_and_dest(&args, &node.heredocs, "COPY").map_err(err)?;
            let from = f.string("from").filter(|s| !s.is_empty());
            if let Some(fr) = &from {
                if fr.contains('$') {
                    return Err(err(ErrorKind::Reference(
                        "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"
                            .into(),
                    )));
                }
            }
            cmd(Instruction::Copy(Copy {
                sources,
                contents,
                dest,
                from,
                chown: f.string("chown").filter(|s| !s.is_empty()),
                chmod: f.string("chmod").filter(|s| !s.is_empty()),
                link: f.boolean("link"),
                parents: f.boolean("parents"),
                exclude: f.strings("exclude"),
            }))
        }
        "ADD" => {
            if args.len() < 2 {
                return Err(err(no_destination("ADD")));
            }
            let f = parse_flags(
                flags,
                &[
                    ("chown", FlagKind::Str),
                    ("chmod", FlagKind::Str),
                    ("link", FlagKind::Bool),
                    ("keep-git-dir", FlagKind::Bool),
                    ("checksum", FlagKind::Str),
                    ("exclude", FlagKind::Strs),
                    ("unpack", FlagKind::Bool),
                ],
            )
            .map_err(err)?;
            let (sources, contents, dest) =
                sources_and_dest(&args, &node.heredocs, "ADD").map_err(err)?;
            cmd(Instruction::Add(Add {
                sources,
                contents,
                dest,
                chown: f.string("chown").filter(|s| !s.is_empty()),
                chmod: f.string("chmod").filter(|s| !s.is_empty()),
                link: f.boolean("link"),
                keep_git_dir: f.boolean("keep-git-dir"),
                checksum: f.string("checksum").filter(|s| !s.is_empty()),
                exclude: f.strings("exclude"),
                unpack: f.bool_if_set("unpack"),
            }))
        }
        "ENV" | "LABEL" => {
            parse_flags(flags, &[]).map_err(err)?;
            let pairs = match &node.args {
                NodeArgs::KeyValues { pairs, .. } => pairs.clone(),
                _ => Vec::new(),
            };
            if pairs.is_empty() {
                return Err(err(at_least_one(&keyword)));
            }
            if pairs.iter().any(|(k, _)| k.is_empty()) {
                return Err(err(ErrorKind::Arguments(format!(
                    "{keyword} names can not be blank"
                ))));
            }
            let kvs = pairs
                .into_iter()
                .map(|(key, value)| KeyValue { key, value })
                .collect();
            cmd(if keyword == "ENV" {
                Instruction::Env(kvs)
            } else {
                Instruction::Label(kvs)
            })
        }
        "EXPOSE" => {
            if args.is_empty() {
                return Err(err(at_least_one("EXPOSE")));
            }
            parse_flags(flags, &[]).map_err(err)?;
            let mut ports = args;
            ports.sort();
            cmd(Instruction::Expose(ports))
        }
        "VOLUME" => {
            if args.is_empty() {
                return Err(err(at_least_one("VOLUME")));
            }
            parse_flags(flags, &[]).map_err(err)?;
            let mut vols = Vec::new();
            for v in args {
                let v = v.trim();
                if v.is_empty() {
                    return Err(err(ErrorKind::Value(
                        "VOLUME specified can not be an empty string".into(),
                    )));
                }
                vols.push(v.to_owned());
            }
            cmd(Instruction::Volume(vols))
        }
        "USER" | "WORKDIR" | "STOPSIGNAL" | "MAINTAINER" => {
            if args.len() != 1 {
                return Err(err(ErrorKind::Arguments(format!(
                    "{keyword} requires exactly one argument"
                ))));
            }
            parse_flags(flags, &[]).map_err(err)?;
            let v = args.into_iter().next().unwrap_or_default();
            cmd(match keyword.as_str() {
                "USER" => Instruction::User(v),
                "WORKDIR" => Instruction::Workdir(v),
                "STOPSIGNAL" => Instruction::Stopsignal(v),
                _ => Instruction::Maintainer(v),
            })
        }
        "ARG" => {
            if args.is_empty() {
                return Err(err(at_least_one("ARG")));
            }
            parse_flags(flags, &[]).map_err(err)?;
            let mut decls = Vec::new();
            for a in args {
                match a.split_once('=') {
                    Some((k, v)) => {
                        if k.is_empty() {
                            return Err(err(ErrorKind::Arguments(
                                "ARG names can not be blank".into(),
                            )));
                        }
                        decls.push(ArgDecl {
                            name: k.to_owned(),
                            default: Some(v.to_owned()),
                        });
                    }
                    None => decls.push(ArgDecl {
                        name: a,
                        default: None,
                    }),
                }
            }
            cmd(Instruction::Arg(decls))
        }
        "ONBUILD" => {
            if args.is_empty() {
                return Err(err(at_least_one("ONBUILD")));
            }
            parse_flags(flags, &[]).map_err(err)?;
            let trigger = args[0].trim().to_ascii_uppercase();
            match trigger.as_str() {
                "ONBUILD" => {
                    return Err(err(ErrorKind::Syntax(
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(),
                    )));
                }
                "MAINTAINER" | "FROM" => {
                    return Err(err(ErrorKind::Syntax(format!(
                        "{trigger} isn't allowed as an ONBUILD trigger"
                    ))));
                }
                _ => {}
            }
            let orig = node.original.trim_start();
            let mut expression = match orig.get(..7) {
                Some(p) if p.eq_ignore_ascii_case("onbuild") => orig[7..].trim_start().to_owned(),
                _ => orig.to_owned(),
            };
            for h in &node.heredocs {
                expression.push('\n');
                expression.push_str(&h.content);
                expression.push_str(&h.name);
            }
            cmd(Instruction::Onbuild(Onbuild {
                trigger,
                expression,
            }))
        }
        "HEALTHCHECK" => {
            if args.is_empty() {
                return Err(err(at_least_one("HEALTHCHECK")));
            }
            let kind = args[0].to_ascii_uppercase();
            let rest = &args[1..];
            if kind == "NONE" {
                if !rest.is_empty() {
                    return Err(err(ErrorKind::Arguments(
                        "HEALTHCHECK NONE takes no arguments".into(),
                    )));
                }
                cmd(Instruction::Healthcheck(Healthcheck::Disable))
            } else {
                let f = parse_flags(
                    flags,
                    &[
                        ("interval", FlagKind::Str),
                        ("timeout", FlagKind::Str),
                        ("start-period", FlagKind::Str),
                        ("start-interval", FlagKind::Str),
                        ("retries", FlagKind::Str),
                    ],
                )
                .map_err(err)?;
                if kind != "CMD" {
                    return Err(err(ErrorKind::Syntax(format!(
                        "Unknown type {} in HEALTHCHECK (try CMD)",
                        go_quote(&kind)
                    ))));
                }
                let cmd_json = matches!(&node.args, NodeArgs::Healthcheck { command, .. } if matches!(**command, NodeArgs::Json(_)));
                if rest.is_empty() {
                    return Err(err(ErrorKind::Arguments(
                        "Missing command after HEALTHCHECK CMD".into(),
                    )));
                }
                let mut test = Vec::with_capacity(rest.len() + 1);
                if cmd_json {
                    test.push("CMD".to_owned());
                    test.extend(rest.iter().cloned());
                } else {
                    test.push("CMD-SHELL".to_owned());
                    test.push(rest.join(" "));
                }
                let interval = |name: &str| -> Result<Duration, ErrorKind> {
                    parse_opt_interval(name, f.string(name).as_deref())
                };
                let retries = match f.string("retries") {
                    None => 0,
                    Some(r) if r.is_empty() => 0,
                    Some(r) => {
                        let n = parse_go_int32(&r).map_err(err)?;
                        if n < 0 {
                            return Err(err(ErrorKind::Value(format!(
                                "--retries cannot be negative ({n})"
                            ))));
                        }
                        u32::try_from(n).unwrap_or(0)
                    }
                };
                cmd(Instruction::Healthcheck(Healthcheck::Check(HealthConfig {
                    test,
                    interval: interval("interval").map_err(err)?,
                    timeout: interval("timeout").map_err(err)?,
                    start_period: interval("start-period").map_err(err)?,
                    start_interval: interval("start-interval").map_err(err)?,
                    retries,
                })))
            }
        }
        _ => {
            return Err(err(ErrorKind::UnknownInstruction {
                name: node.keyword.clone(),
                suggestion: suggest(&node.keyword, INSTRUCTIONS, false),
            }));
        }
    })
}

/// The arguments as BuildKit's `nodeArgs` flattens them.
fn node_args(args: &NodeArgs) -> Vec<String> {
    match args {
        NodeArgs::None => Vec::new(),
        NodeArgs::Json(v) | NodeArgs::Words(v) => v.clone(),
        NodeArgs::Text(s) => vec![s.clone()],
        NodeArgs::KeyValues { pairs, .. } => pairs
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect(),
        NodeArgs::Healthcheck { kind, command } => {
            let mut v = vec![kind.clone()];
            v.extend(node_args(command));
            v
        }
        NodeArgs::Sub(node) => {
            let mut v = vec![node.keyword.clone()];
            v.extend(node_args(&node.args));
            v
        }
    }
}

fn command_line(args: &[String], json: bool) -> CommandLine {
    if json {
        CommandLine::Exec(args.to_vec())
    } else {
        CommandLine::Shell(args.join(" "))
    }
}

fn stage_name(args: &[String]) -> Result<Option<String>, ErrorKind> {
    if args.len() == 3 && args[1].eq_ignore_ascii_case("as") {
        let name = args[2].to_lowercase();
        let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !valid {
            return Err(ErrorKind::Syntax(format!(
                "invalid name for build stage: {}, name can't start with a number or contain symbols",
                go_quote(&args[2])
            )));
        }
        return Ok(Some(name));
    }
    if args.len() != 1 {
        return Err(ErrorKind::Arguments(
            "FROM requires either one or three arguments".into(),
        ));
    }
    Ok(None)
}

fn stage_comment(comments: &[String], name: Option<&str>) -> Option<String> {
    let name = name?;
    let prefix = format!("{name} ");
    comments
        .iter()
        .find_map(|c| c.strip_prefix(&prefix).map(str::to_owned))
}

fn at_least_one(cmd: &str) -> ErrorKind {
    ErrorKind::Arguments(format!("{cmd} requires at least one argument"))
}

fn no_destination(cmd: &str) -> ErrorKind {
    ErrorKind::Arguments(format!(
        "{cmd} requires at least two arguments, but only one was provided. Destination could not be determined"
    ))
}

fn not_json(cmd: &str, original: &str) -> ErrorKind {
    let lower = original.to_lowercase();
    let mut extra = String::new();
    let looks_like_drive = lower.split('"').skip(1).any(|s| {
        let b = s.as_bytes();
        b.len() >= 3 && b[0].is_ascii_lowercase() && b[1] == b':' && b[2] == b'\\'
    });
    if looks_like_drive && !lower.contains("\\\\") && lower.contains('[') && lower.contains(']') {
        extra = format!(
            ". It looks like '{lower}' includes a file path without an escaped back-slash. JSON requires back-slashes to be escaped such as [\"c:\\\\path\\\\to\\\\file.exe\", \"/parameter\"]"
        );
    }
    ErrorKind::Syntax(format!(
        "{cmd} requires the arguments to be in JSON form{extra}"
    ))
}

type SourcesAndDest = (Vec<String>, Vec<InlineSource>, String);

fn sources_and_dest(
    args: &[String],
    heredocs: &[Heredoc],
    cmd: &str,
) -> Result<SourcesAndDest, ErrorKind> {
    let (dest, srcs) = match args.split_last() {
        Some((d, s)) => (d.clone(), s),
        None => return Err(no_destination(cmd)),
    };
    if let Ok(Some(_)) = parse::parse_heredoc(&dest) {
        return Err(ErrorKind::Heredoc(format!(
            "{cmd} cannot accept a heredoc as a destination"
        )));
    }
    let mut sources = Vec::new();
    let mut contents = Vec::new();
    for src in srcs {
        match parse::parse_heredoc(src) {
            Ok(Some(h)) => {
                let body = heredocs
                    .iter()
                    .find(|d| d.name == h.name)
                    .map(|d| d.content.clone())
                    .unwrap_or_default();
                let data = if h.chomp {
                    parse::chomp_heredoc_content(&body)
                } else {
                    body
                };
                contents.push(InlineSource {
                    name: h.name,
                    data,
                    expand: h.expand,
                });
            }
            Ok(None) => sources.push(src.clone()),
            Err(e) => return Err(e),
        }
    }
    Ok((sources, contents, dest))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Bool,
    Str,
    Strs,
}

#[derive(Debug, Default)]
struct Flags {
    strings: BTreeMap<&'static str, String>,
    lists: BTreeMap<&'static str, Vec<String>>,
    bools: BTreeMap<&'static str, bool>,
}

impl Flags {
    fn string(&self, name: &str) -> Option<String> {
        self.strings.get(name).cloned()
    }
    fn strings(&self, name: &str) -> Vec<String> {
        self.lists.get(name).cloned().unwrap_or_default()
    }
    fn boolean(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }
    fn bool_if_set(&self, name: &str) -> Option<bool> {
        self.bools.get(name).copied()
    }
}

/// BuildKit's `BFlags.Parse` for one instruction's allowed flags.
fn parse_flags(args: &[String], spec: &[(&'static str, FlagKind)]) -> Result<Flags, ErrorKind> {
    let mut out = Flags::default();
    let mut used: Vec<&str> = Vec::new();
    for arg in args {
        let Some(body) = arg.strip_prefix("--") else {
            return Err(ErrorKind::Flag(format!("arg should start with -- : {arg}")));
        };
        if body.is_empty() {
            return Ok(out);
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(&(fname, kind)) = spec.iter().find(|(n, _)| *n == name) else {
            return Err(ErrorKind::UnknownFlag {
                flag: name.to_owned(),
                suggestion: suggest(name, spec.iter().map(|(n, _)| *n), true),
            });
        };
        if used.contains(&fname) && kind != FlagKind::Strs {
            return Err(ErrorKind::Flag(format!("duplicate flag specified: {name}")));
        }
        used.push(fname);
        match kind {
            FlagKind::Bool => {
                let v = match value {
                    Some("") => {
                        return Err(ErrorKind::Flag(format!("missing a value on flag: {name}")));
                    }
                    None => true,
                    Some(v) => match v.to_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(ErrorKind::Flag(format!(
                                "expecting boolean value for flag {name}, not: {v}"
                            )));
                        }
                    },
                };
                out.bools.insert(fname, v);
            }
            FlagKind::Str => {
                let Some(v) = value else {
                    return Err(ErrorKind::Flag(format!("missing a value on flag: {name}")));
                };
                out.strings.insert(fname, v.to_owned());
            }
            FlagKind::Strs => {
                let Some(v) = value else {
                    return Err(ErrorKind::Flag(format!("missing a value on flag: {name}")));
                };
                out.lists.entry(fname).or_default().push(v.to_owned());
            }
        }
    }
    Ok(out)
}

/// Go's `strconv.ParseInt(s, 10, 32)` with its error wording.
fn parse_go_int32(s: &str) -> Result<i64, ErrorKind> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ErrorKind::Value(format!(
            "strconv.ParseInt: parsing {}: invalid syntax",
            go_quote(s)
        )));
    }
    match s.parse::<i64>() {
        Ok(n) if i32::try_from(n).is_ok() => Ok(n),
        _ => Err(ErrorKind::Value(format!(
            "strconv.ParseInt: parsing {}: value out of range",
            go_quote(s)
        ))),
    }
}

fn parse_opt_interval(name: &str, value: Option<&str>) -> Result<Duration, ErrorKind> {
    let Some(s) = value.filter(|s| !s.is_empty()) else {
        return Ok(Duration::ZERO);
    };
    let nanos = parse_go_duration(s).map_err(ErrorKind::Value)?;
    if nanos == 0 {
        return Ok(Duration::ZERO);
    }
    if nanos < 1_000_000 {
        return Err(ErrorKind::Value(format!(
            "Interval {} cannot be less than 1ms",
            go_quote(name)
        )));
    }
    Ok(Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)))
}

/// Go's `time.ParseDuration`: `[-+]` then one or more `<decimal><unit>` with units `ns`, `us`
/// (`µs`, `μs`), `ms`, `s`, `m`, `h`; `"0"` alone is allowed. Returns nanoseconds.
pub fn parse_go_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(orig));
    let mut s = orig;
    let mut neg = false;
    if let Some(r) = s.strip_prefix('-') {
        neg = true;
        s = r;
    } else if let Some(r) = s.strip_prefix('+') {
        s = r;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let int_part = &s[..int_end];
        let mut v: u128 = 0;
        for b in int_part.bytes() {
            v = v * 10 + u128::from(b - b'0');
            if v > 1 << 63 {
                return Err(invalid());
            }
        }
        s = &s[int_end..];
        let mut frac = String::new();
        let mut post = false;
        if let Some(r) = s.strip_prefix('.') {
            let fe = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            frac = r[..fe].to_owned();
            post = fe > 0;
            s = &r[fe..];
        }
        if int_part.is_empty() && !post {
            return Err(invalid());
        }
        let unit_end = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_end == 0 {
            return Err(format!("time: missing unit in duration {}", go_quote(orig)));
        }
        let unit_name = &s[..unit_end];
        s = &s[unit_end..];
        let unit: u128 = match unit_name {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(unit_name),
                    go_quote(orig)
                ));
            }
        };
        if v > (1u128 << 63) / unit {
            return Err(invalid());
        }
        v *= unit;
        if !frac.is_empty() {
            let f: f64 = format!("0.{frac}").parse().unwrap_or(0.0);
            v += (f * unit as f64) as u128;
            if v > 1 << 63 {
                return Err(invalid());
            }
        }
        total += v;
        if total > 1 << 63 {
            return Err(invalid());
        }
    }
    if neg {
        return Ok(i64::try_from(total).map(|t| -t).unwrap_or(i64::MIN));
    }
    i64::try_from(total).map_err(|_| invalid())
}

const MOUNT_KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

impl MountSpec {
    /// Splits a `--mount` value into its CSV fields and checks what BuildKit checks before
    /// expansion: the CSV itself, and that `from` holds no variable.
    pub fn parse(raw: &str) -> Result<MountSpec, ErrorKind> {
        let mut fields = Vec::new();
        for field in csv_fields(raw)? {
            match field.split_once('=') {
                Some((k, v)) => {
                    let key = k.to_lowercase();
                    if key == "from" {
                        let b = v.as_bytes();
                        if b.iter()
                            .enumerate()
                            .any(|(i, c)| *c == b'$' && i + 1 < b.len())
                        {
                            return Err(ErrorKind::Reference(
                                "'from' doesn't support variable expansion, define alias stage instead"
                                    .into(),
                            ));
                        }
                    }
                    fields.push((key, Some(v.to_owned())));
                }
                None => fields.push((field.to_lowercase(), None)),
            }
        }
        Ok(MountSpec {
            raw: raw.to_owned(),
            fields,
        })
    }

    /// The `from=` value (a stage name or index, or an image), if any.
    pub fn from_ref(&self) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == "from")
            .and_then(|(_, v)| v.as_deref())
            .filter(|v| !v.is_empty())
    }

    /// Expands every value with `expand` (the stage's scope) and validates the result as
    /// BuildKit's `ParseMount` does.
    pub fn resolve(
        &self,
        expand: &mut dyn FnMut(&str) -> Result<String, ExpandError>,
    ) -> Result<Mount, ErrorKind> {
        let mut m = Mount {
            kind: MountType::Bind,
            target: String::new(),
            source: String::new(),
            from: String::new(),
            id: String::new(),
            sharing: None,
            mode: None,
            uid: None,
            gid: None,
            readonly: false,
            required: false,
            size: None,
            env: None,
        };
        let mut ro_auto = true;
        let type_name = |t: MountType| match t {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        };
        for (key, value) in &self.fields {
            let field = match value {
                Some(v) => format!("{key}={v}"),
                None => key.clone(),
            };
            let Some(value) = value else {
                match key.as_str() {
                    "readonly" | "ro" => {
                        m.readonly = true;
                        ro_auto = false;
                    }
                    "readwrite" | "rw" => {
                        m.readonly = false;
                        ro_auto = false;
                    }
                    "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                        m.required = true;
                    }
                    "required" => {
                        return Err(ErrorKind::Value(format!(
                            "unexpected key '{key}' for mount type '{}'",
                            type_name(m.kind)
                        )));
                    }
                    _ => {
                        return Err(ErrorKind::Value(format!(
                            "invalid field '{field}' must be a key=value pair"
                        )));
                    }
                }
                continue;
            };
            let value = expand(value).map_err(ErrorKind::Expand)?;
            let bad = |key: &str| ErrorKind::Value(format!("invalid value for {key}: {value}"));
            match key.as_str() {
                "type" => {
                    m.kind = match value.to_lowercase().as_str() {
                        "bind" => MountType::Bind,
                        "cache" => MountType::Cache,
                        "tmpfs" => MountType::Tmpfs,
                        "secret" => MountType::Secret,
                        "ssh" => MountType::Ssh,
                        _ => {
                            let s =
                                suggest(&value, ["bind", "cache", "tmpfs", "secret", "ssh"], true);
                            let mut msg = format!("unsupported mount type {}", go_quote(&value));
                            if let Some(s) = s {
                                msg.push_str(&format!(" (did you mean {s}?)"));
                            }
                            return Err(ErrorKind::Value(msg));
                        }
                    }
                }
                "from" => m.from = value,
                "source" | "src" => m.source = value,
                "target" | "dst" | "destination" => m.target = value,
                "readonly" | "ro" => {
                    m.readonly = parse_go_bool(&value).ok_or_else(|| bad(key))?;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = !parse_go_bool(&value).ok_or_else(|| bad(key))?;
                    ro_auto = false;
                }
                "required" => {
                    if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                        return Err(ErrorKind::Value(format!(
                            "unexpected key '{key}' for mount type '{}'",
                            type_name(m.kind)
                        )));
                    }
                    m.required = parse_go_bool(&value).ok_or_else(|| bad(key))?;
                }
                "size" => {
                    if m.kind != MountType::Tmpfs {
                        return Err(ErrorKind::Value(format!(
                            "unexpected key '{key}' for mount type '{}'",
                            type_name(m.kind)
                        )));
                    }
                    m.size = Some(ram_in_bytes(&value).ok_or_else(|| bad(key))?);
                }
                "id" => m.id = value,
                "sharing" => {
                    m.sharing = Some(match value.to_lowercase().as_str() {
                        "shared" => CacheSharing::Shared,
                        "private" => CacheSharing::Private,
                        "locked" => CacheSharing::Locked,
                        _ => {
                            return Err(ErrorKind::Value(format!(
                                "unsupported sharing value {}",
                                go_quote(&value)
                            )));
                        }
                    })
                }
                "mode" => {
                    m.mode = Some(
                        u32::from_str_radix(&value, 8)
                            .ok()
                            .filter(|_| !value.starts_with('+'))
                            .ok_or_else(|| {
                                ErrorKind::Value(format!("invalid value {value} for mode"))
                            })?,
                    )
                }
                "uid" | "gid" => {
                    let n = value
                        .parse::<u32>()
                        .ok()
                        .filter(|_| !value.starts_with('+'))
                        .ok_or_else(|| {
                            ErrorKind::Value(format!("invalid value {value} for {key}"))
                        })?;
                    if key == "uid" {
                        m.uid = Some(n);
                    } else {
                        m.gid = Some(n);
                    }
                }
                "env" => m.env = Some(value),
                _ => {
                    let mut msg = format!("unexpected key '{key}' in '{field}'");
                    if let Some(s) = suggest(key, MOUNT_KEYS, true) {
                        msg.push_str(&format!(" (did you mean {s}?)"));
                    }
                    return Err(ErrorKind::Value(msg));
                }
            }
        }
        let file_info = matches!(
            m.kind,
            MountType::Secret | MountType::Ssh | MountType::Cache
        );
        if !file_info {
            for (set, what) in [
                (m.mode.is_some(), "mode"),
                (m.uid.is_some(), "uid"),
                (m.gid.is_some(), "gid"),
            ] {
                if set {
                    return Err(ErrorKind::Value(format!(
                        "{what} not allowed for {} type mounts",
                        go_quote(type_name(m.kind))
                    )));
                }
            }
        }
        if ro_auto {
            m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
        }
        if m.sharing.is_some() && m.kind != MountType::Cache {
            return Err(ErrorKind::Value(format!(
                "invalid cache sharing set for {} mount",
                type_name(m.kind)
            )));
        }
        if m.kind == MountType::Secret {
            if !m.from.is_empty() {
                return Err(ErrorKind::Value(
                    "secret mount should not have a from".into(),
                ));
            }
            if m.sharing.is_some() {
                return Err(ErrorKind::Value(
                    "secret mount should not define sharing".into(),
                ));
            }
            if m.source.is_empty() && m.target.is_empty() && m.id.is_empty() && m.env.is_none() {
                return Err(ErrorKind::Value(
                    "invalid secret mount. one of source, target required".into(),
                ));
            }
            if !m.source.is_empty() && !m.id.is_empty() {
                return Err(ErrorKind::Value("both source and id can't be set".into()));
            }
        }
        Ok(m)
    }
}

/// One CSV record as Go's `encoding/csv` reads it (comma-separated, `"`-quoted fields with
/// `""` for a quote).
fn csv_fields(s: &str) -> Result<Vec<String>, ErrorKind> {
    let err = |m: &str| ErrorKind::Value(format!("failed to parse csv mounts: {m}"));
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let mut field = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err("extraneous or missing \" in quoted-field")),
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        field.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        field.push(*c);
                        i += 1;
                    }
                }
            }
            match chars.get(i) {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => i += 1,
                Some(_) => return Err(err("extraneous or missing \" in quoted-field")),
            }
        } else {
            loop {
                match chars.get(i) {
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                    Some(',') => {
                        i += 1;
                        break;
                    }
                    Some('"') => return Err(err("bare \" in non-quoted-field")),
                    Some(c) => {
                        field.push(*c);
                        i += 1;
                    }
                }
            }
        }
        out.push(field);
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units `RAMInBytes`: `<number>[ ][kKmMgGtTpP][iI][bB]`, binary multiples.
fn ram_in_bytes(s: &str) -> Option<u64> {
    let s = s.trim_end();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, mut rest) = s.split_at(num_end);
    if num.is_empty() || !num.starts_with(|c: char| c.is_ascii_digit()) || num.ends_with('.') {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut mult: f64 = 1.0;
    if let Some(c) = rest.chars().next() {
        let m = match c.to_ascii_lowercase() {
            'k' => Some(1024f64),
            'm' => Some(1024f64.powi(2)),
            'g' => Some(1024f64.powi(3)),
            't' => Some(1024f64.powi(4)),
            'p' => Some(1024f64.powi(5)),
            _ => None,
        };
        if let Some(m) = m {
            mult = m;
            rest = &rest[1..];
        }
    }
    rest = rest.strip_prefix(['i', 'I']).unwrap_or(rest);
    rest = rest.strip_prefix(['b', 'B']).unwrap_or(rest);
    if !rest.is_empty() {
        return None;
    }
    let bytes = value * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return None;
    }
    Some(bytes as u64)
}

/// An `EXPOSE`d port after expansion: `start[-end]/proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExposedPort {
    /// First port.
    pub start: u16,
    /// Last port (equal to `start` for one port).
    pub end: u16,
    /// `tcp`, `udp` or `sctp`.
    pub proto: Proto,
}

/// A port protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl ExposedPort {
    /// The image config keys (`80/tcp`), one per port of the range.
    pub fn keys(&self) -> Vec<String> {
        let p = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        };
        (self.start..=self.end)
            .map(|n| format!("{n}/{p}"))
            .collect()
    }
}

/// Parses expanded `EXPOSE` words as docker/go-connections `ParsePortSpecs` does: an
/// optional `ip:hostPort:` prefix (ignored), a port or range, an optional `/proto`.
pub fn parse_expose(ports: &[String]) -> Result<Vec<ExposedPort>, ErrorKind> {
    let mut out = Vec::new();
    for raw in ports {
        let (proto, port) = match raw.split_once('/') {
            None => ("tcp", raw.as_str()),
            Some((p, "")) => ("tcp", p),
            Some((p, proto)) => (proto, p),
        };
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "sctp" => Proto::Sctp,
            other => return Err(ErrorKind::Value(format!("Invalid proto: {other}"))),
        };
        let container = port.rsplit(':').next().unwrap_or(port);
        if container.is_empty() {
            return Err(ErrorKind::Value(format!("no port specified: {raw}<empty>")));
        }
        let bad = || ErrorKind::Value(format!("Invalid containerPort: {container}"));
        let parse = |s: &str| -> Result<u16, ErrorKind> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse::<u16>().map_err(|_| bad())
        };
        let (start, end) = match container.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => {
                let p = parse(container)?;
                (p, p)
            }
        };
        if end < start {
            return Err(bad());
        }
        out.push(ExposedPort { start, end, proto });
    }
    Ok(out)
}

const SIGNALS: [(&str, i32); 35] = [
    ("ABRT", 6),
    ("ALRM", 14),
    ("BUS", 7),
    ("CHLD", 17),
    ("CLD", 17),
    ("CONT", 18),
    ("FPE", 8),
    ("HUP", 1),
    ("ILL", 4),
    ("INT", 2),
    ("IO", 29),
    ("IOT", 6),
    ("KILL", 9),
    ("PIPE", 13),
    ("POLL", 29),
    ("PROF", 27),
    ("PWR", 30),
    ("QUIT", 3),
    ("SEGV", 11),
    ("STKFLT", 16),
    ("STOP", 19),
    ("SYS", 31),
    ("TERM", 15),
    ("TRAP", 5),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("USR1", 10),
    ("USR2", 12),
    ("VTALRM", 26),
    ("WINCH", 28),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("UNUSED", 31),
];

/// Parses a `STOPSIGNAL` value as moby's `signal.ParseSignal` on Linux: a non-zero number,
/// or a name with or without `SIG` (any case), including `RTMIN+n` / `RTMAX-n`.
pub fn parse_signal(raw: &str) -> Result<i32, ErrorKind> {
    let invalid = || ErrorKind::Value(format!("Invalid signal: {raw}"));
    if let Ok(n) = raw.parse::<i64>() {
        return match i32::try_from(n) {
            Ok(0) | Err(_) => Err(invalid()),
            Ok(n) => Ok(n),
        };
    }
    let upper = raw.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, n)) = SIGNALS.iter().find(|(s, _)| *s == name) {
        return Ok(*n);
    }
    const RTMIN: i32 = 34;
    const RTMAX: i32 = 64;
    if name == "RTMIN" {
        return Ok(RTMIN);
    }
    if name == "RTMAX" {
        return Ok(RTMAX);
    }
    if let Some(k) = name
        .strip_prefix("RTMIN+")
        .and_then(|k| k.parse::<i32>().ok())
    {
        if (1..=15).contains(&k) {
            return Ok(RTMIN + k);
        }
    }
    if let Some(k) = name
        .strip_prefix("RTMAX-")
        .and_then(|k| k.parse::<i32>().ok())
    {
        if (1..=14).contains(&k) {
            return Ok(RTMAX - k);
        }
    }
    Err(invalid())
}

/// The working directory after `WORKDIR path` from `current`: an absolute path as given, a
/// relative one joined onto `current` (BuildKit), cleaned.
pub fn resolve_workdir(current: &str, path: &str) -> String {
    if path.starts_with('/') {
        clean_path(path)
    } else {
        clean_path(&format!("/{current}/{path}"))
    }
}

/// Go's `path.Clean`.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".to_owned();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expand::{Platform, StageScope, platform_args};

    fn parse(src: &str) -> Dockerfile {
        match Dockerfile::parse("Dockerfile", src.as_bytes()) {
            Ok(d) => d,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    fn parse_err(src: &str) -> String {
        match Dockerfile::parse("Dockerfile", src.as_bytes()) {
            Ok(d) => panic!("parsed: {d:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// The single instruction of `FROM a\n<line>`.
    fn one(line: &str) -> Instruction {
        let df = parse(&format!("FROM a\n{line}\n"));
        df.stages[0].commands[0].instruction.clone()
    }

    #[test]
    fn errors_name_the_line_and_instruction() {
        let cases: &[(&str, &str)] = &[
            (
                "FROM a\nRUNN x\n",
                "Dockerfile:2: unknown instruction: RUNN (did you mean RUN?)",
            ),
            (
                "FROM a\ncpoy x y\n",
                "Dockerfile:2: unknown instruction: cpoy (did you mean COPY?)",
            ),
            (
                "FROM a\nBOGUS x\n",
                "Dockerfile:2: unknown instruction: BOGUS",
            ),
            (
                "RUN x\n",
                "Dockerfile:1: RUN: no build stage in current context",
            ),
            (
                "ARG A=1\n",
                "Dockerfile: dockerfile contains no stages to build",
            ),
            (
                "FROM a\nCOPY x\n",
                "Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined",
            ),
            (
                "FROM a\nCOPY --form=b x y\n",
                "Dockerfile:2: COPY: unknown flag: form (did you mean from?)",
            ),
            (
                "FROM a\nCOPY --from x y\n",
                "Dockerfile:2: COPY: missing a value on flag: from",
            ),
            (
                "FROM a\nCOPY --from=a --from=b x y\n",
                "Dockerfile:2: COPY: duplicate flag specified: from",
            ),
            (
                "FROM a\nCOPY --link=maybe x y\n",
                "Dockerfile:2: COPY: expecting boolean value for flag link, not: maybe",
            ),
            (
                "FROM a\nCOPY <<EOF <<EOF2\nx\nEOF\ny\nEOF2\n",
                "Dockerfile:2: COPY cannot accept a heredoc as a destination",
            ),
            (
                "FROM a\nRUN --network=bridge x\n",
                "Dockerfile:2: RUN: invalid network mode \"bridge\"",
            ),
            (
                "FROM a\nRUN --mount=type=bind,from=$X,target=/x y\n",
                "Dockerfile:2: RUN: 'from' doesn't support variable expansion, define alias stage instead",
            ),
            (
                "FROM a\nRUN --mount=target=/x\\\"y z\n",
                "Dockerfile:2: RUN: failed to parse csv mounts: bare \" in non-quoted-field",
            ),
            (
                "FROM a\nENV --x=1 A=b\n",
                "Dockerfile:2: ENV: unknown flag: x",
            ),
            (
                "FROM a b\n",
                "Dockerfile:1: FROM requires either one or three arguments",
            ),
            (
                "FROM a AS 1st\n",
                "Dockerfile:1: FROM: invalid name for build stage: \"1st\", name can't start with a number or contain symbols",
            ),
            (
                "FROM a\nSHELL /bin/bash -c\n",
                "Dockerfile:2: SHELL requires the arguments to be in JSON form",
            ),
            (
                "FROM a\nSHELL []\n",
                "Dockerfile:2: SHELL requires at least one argument",
            ),
            (
                "FROM a\nUSER\n",
                "Dockerfile:2: USER requires exactly one argument",
            ),
            (
                "FROM a\nWORKDIR\n",
                "Dockerfile:2: WORKDIR requires exactly one argument",
            ),
            (
                "FROM a\nEXPOSE\n",
                "Dockerfile:2: EXPOSE requires at least one argument",
            ),
            (
                "FROM a\nVOLUME\n",
                "Dockerfile:2: VOLUME requires at least one argument",
            ),
            (
                "FROM a\nVOLUME [\"\"]\n",
                "Dockerfile:2: VOLUME specified can not be an empty string",
            ),
            (
                "FROM a\nARG =x\n",
                "Dockerfile:2: ARG names can not be blank",
            ),
            (
                "FROM a\nENV =x\n",
                "Dockerfile:2: ENV names can not be blank",
            ),
            (
                "FROM a\nONBUILD ONBUILD RUN x\n",
                "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
            ),
            (
                "FROM a\nONBUILD FROM b\n",
                "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger",
            ),
            (
                "FROM a\nONBUILD maintainer me\n",
                "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger",
            ),
            (
                "FROM a\nHEALTHCHECK NONE x\n",
                "Dockerfile:2: HEALTHCHECK NONE takes no arguments",
            ),
            (
                "FROM a\nHEALTHCHECK CMD\n",
                "Dockerfile:2: Missing command after HEALTHCHECK CMD",
            ),
            (
                "FROM a\nHEALTHCHECK RUN x\n",
                "Dockerfile:2: Unknown type \"RUN\" in HEALTHCHECK (try CMD)",
            ),
            (
                "FROM a\nHEALTHCHECK --interval=5 CMD x\n",
                "Dockerfile:2: HEALTHCHECK: time: missing unit in duration \"5\"",
            ),
            (
                "FROM a\nHEALTHCHECK --interval=1us CMD x\n",
                "Dockerfile:2: HEALTHCHECK: Interval \"interval\" cannot be less than 1ms",
            ),
            (
                "FROM a\nHEALTHCHECK --retries=-1 CMD x\n",
                "Dockerfile:2: HEALTHCHECK: --retries cannot be negative (-1)",
            ),
            (
                "FROM a\nHEALTHCHECK --retries=x CMD x\n",
                "Dockerfile:2: HEALTHCHECK: strconv.ParseInt: parsing \"x\": invalid syntax",
            ),
            (
                "FROM a\nHEALTHCHECK --interval=5s --intervall=3s CMD x\n",
                "Dockerfile:2: HEALTHCHECK: unknown flag: intervall (did you mean interval?)",
            ),
            (
                "FROM a\nMAINTAINER\n",
                "Dockerfile:2: MAINTAINER requires exactly one argument",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(parse_err(src), *want, "{src:?}");
        }
    }

    #[test]
    fn stages_and_meta_args() {
        let df = parse(concat!(
            "# syntax=docker/dockerfile:1\n",
            "ARG GO=1.22\n",
            "ARG A=1 B\n",
            "# builder compiles the app\n",
            "FROM --platform=$BUILDPLATFORM golang:${GO} AS Builder\n",
            "RUN go build\n",
            "FROM scratch\n",
            "COPY --from=builder /app /app\n",
        ));
        assert_eq!(df.meta_args.len(), 2);
        let decls: Vec<ArgDecl> = df.meta_arg_decls().into_iter().map(|(d, _)| d).collect();
        assert_eq!(
            decls,
            vec![
                ArgDecl {
                    name: "GO".into(),
                    default: Some("1.22".into())
                },
                ArgDecl {
                    name: "A".into(),
                    default: Some("1".into())
                },
                ArgDecl {
                    name: "B".into(),
                    default: None
                },
            ]
        );
        let s0 = &df.stages[0];
        assert_eq!(s0.name.as_deref(), Some("builder"));
        assert_eq!(s0.base, "golang:${GO}");
        assert_eq!(s0.platform.as_deref(), Some("$BUILDPLATFORM"));
        assert_eq!(s0.comment.as_deref(), Some("compiles the app"));
        assert_eq!(s0.span, Span { start: 5, end: 5 });
        assert_eq!(df.stages[1].display_name(), "stage-1");
        let p = Platform::parse("linux/amd64").expect("platform");
        let g = df
            .global_scope(&BTreeMap::new(), &platform_args(&p, &p))
            .expect("globals");
        assert_eq!(
            df.expand_from(s0, &g).expect("from"),
            ("golang:1.22".to_owned(), Some("linux/amd64".to_owned()))
        );
    }

    #[test]
    fn run_forms_flags_and_mounts() {
        let Instruction::Run(r) = one(
            "RUN --mount=type=cache,target=/root/.cache,id=go,sharing=locked \
             --mount=type=secret,id=npmrc,required --network=none --security=insecure go build",
        ) else {
            panic!("not RUN")
        };
        assert_eq!(r.command, CommandLine::Shell("go build".into()));
        assert_eq!(r.network, NetworkMode::None);
        assert_eq!(r.security, SecurityMode::Insecure);
        assert_eq!(r.mounts.len(), 2);
        let mut ident = |s: &str| Ok(s.to_owned());
        let m0 = r.mounts[0].resolve(&mut ident).expect("cache");
        assert_eq!(m0.kind, MountType::Cache);
        assert_eq!(m0.target, "/root/.cache");
        assert_eq!(m0.sharing, Some(CacheSharing::Locked));
        assert!(!m0.readonly);
        let m1 = r.mounts[1].resolve(&mut ident).expect("secret");
        assert_eq!(m1.kind, MountType::Secret);
        assert!(m1.required);
        assert!(m1.readonly);

        assert_eq!(
            one("RUN [\"echo\", \"a b\"]"),
            Instruction::Run(Run {
                command: CommandLine::Exec(vec!["echo".into(), "a b".into()]),
                mounts: vec![],
                network: NetworkMode::Default,
                security: SecurityMode::Sandbox,
                heredocs: vec![],
            })
        );
    }

    #[test]
    fn mount_resolution_table() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("type=bind,source=.,target=/src", Ok("bind ro")),
            ("type=bind,source=.,target=/src,rw", Ok("bind rw")),
            ("type=bind,src=.,dst=/src,readonly=false", Ok("bind rw")),
            ("type=tmpfs,target=/tmp,size=64m", Ok("tmpfs rw 67108864")),
            (
                "type=cache,target=/c,uid=1000,gid=1000,mode=0755",
                Ok("cache rw"),
            ),
            ("type=ssh", Ok("ssh ro")),
            ("type=secret,id=x,env=TOKEN", Ok("secret ro")),
            (
                "type=volume,target=/x",
                Err("unsupported mount type \"volume\""),
            ),
            (
                "type=cahce,target=/x",
                Err("unsupported mount type \"cahce\" (did you mean cache?)"),
            ),
            (
                "type=bind,target=/x,uid=1",
                Err("uid not allowed for \"bind\" type mounts"),
            ),
            (
                "type=bind,target=/x,required",
                Err("unexpected key 'required' for mount type 'bind'"),
            ),
            (
                "type=bind,target=/x,size=1g",
                Err("unexpected key 'size' for mount type 'bind'"),
            ),
            (
                "type=bind,targte=/x",
                Err("unexpected key 'targte' in 'targte=/x' (did you mean target?)"),
            ),
            (
                "type=bind,target=/x,nonsense",
                Err("invalid field 'nonsense' must be a key=value pair"),
            ),
            (
                "type=cache,target=/x,sharing=weird",
                Err("unsupported sharing value \"weird\""),
            ),
            (
                "type=bind,target=/x,sharing=shared",
                Err("invalid cache sharing set for bind mount"),
            ),
            (
                "type=cache,target=/x,mode=999",
                Err("invalid value 999 for mode"),
            ),
            (
                "type=cache,target=/x,uid=-1",
                Err("invalid value -1 for uid"),
            ),
            (
                "type=secret",
                Err("invalid secret mount. one of source, target required"),
            ),
            (
                "type=secret,id=a,source=b",
                Err("both source and id can't be set"),
            ),
            (
                "type=secret,id=a,from=b",
                Err("secret mount should not have a from"),
            ),
            (
                "type=bind,target=/x,ro=maybe",
                Err("invalid value for ro: maybe"),
            ),
        ];
        for (raw, want) in cases {
            let spec = MountSpec::parse(raw).expect(raw);
            let got = spec.resolve(&mut |s: &str| Ok(s.to_owned())).map(|m| {
                let kind = format!("{:?}", m.kind).to_lowercase();
                let rw = if m.readonly { "ro" } else { "rw" };
                match m.size {
                    Some(s) => format!("{kind} {rw} {s}"),
                    None => format!("{kind} {rw}"),
                }
            });
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(*w), "{raw}"),
                Err(w) => assert_eq!(got.map_err(|e| e.to_string()), Err(w.to_string()), "{raw}"),
            }
        }
        // Values are expanded in the stage's scope.
        let spec = MountSpec::parse("type=cache,target=${DIR},uid=${UID}").expect("spec");
        let env = vec![
            ("DIR".to_owned(), "/cache".to_owned()),
            ("UID".to_owned(), "1000".to_owned()),
        ];
        let lex = Lexer::new('\\');
        let m = spec
            .resolve(&mut |s: &str| lex.process_word(s, &env))
            .expect("resolve");
        assert_eq!((m.target.as_str(), m.uid), ("/cache", Some(1000)));
    }

    #[test]
    fn copy_and_add() {
        let Instruction::Copy(c) = one(
            "COPY --from=0 --chown=app:app --chmod=0644 --link --parents --exclude=*.md --exclude=tmp src/*.go ./lib /dst/",
        ) else {
            panic!("not COPY")
        };
        assert_eq!(c.from.as_deref(), Some("0"));
        assert_eq!(c.chown.as_deref(), Some("app:app"));
        assert_eq!(c.chmod.as_deref(), Some("0644"));
        assert!(c.link && c.parents);
        assert_eq!(c.exclude, vec!["*.md".to_owned(), "tmp".to_owned()]);
        assert_eq!(c.sources, vec!["src/*.go".to_owned(), "./lib".to_owned()]);
        assert_eq!(c.dest, "/dst/");

        let Instruction::Copy(c) = one("COPY [\"a b.txt\", \"/dest dir/\"]") else {
            panic!("not COPY")
        };
        assert_eq!(c.sources, vec!["a b.txt".to_owned()]);
        assert_eq!(c.dest, "/dest dir/");

        let Instruction::Add(a) = one(
            "ADD --checksum=sha256:abc --keep-git-dir=true --unpack=false https://x/y.tar.gz git@github.com:a/b.git /opt/",
        ) else {
            panic!("not ADD")
        };
        assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
        assert!(a.keep_git_dir);
        assert_eq!(a.unpack, Some(false));
        assert_eq!(a.sources.len(), 2);
        assert_eq!(
            parse_err("FROM a\nADD --from=x a b\n"),
            "Dockerfile:2: ADD: unknown flag: from"
        );
        assert_eq!(
            parse_err("FROM a\nADD --parents a b\n"),
            "Dockerfile:2: ADD: unknown flag: parents"
        );
    }

    #[test]
    fn heredoc_copy_and_run() {
        let df = parse(concat!(
            "FROM a\n",
            "COPY --chmod=755 <<-EOF <<\"RAW\" /usr/local/bin/\n",
            "\t#!/bin/sh\n",
            "\techo $HOME\n",
            "\tEOF\n",
            "keep $HOME\n",
            "RAW\n",
            "RUN <<EOF\n",
            "#!/usr/bin/env python3\n",
            "print(1)\n",
            "EOF\n",
            "RUN <<EOF\n",
            "set -e\n",
            "echo hi\n",
            "EOF\n",
            "RUN python3 <<PY > /out && cat <<-X\n",
            "print(2)\n",
            "PY\n",
            "\tx\n",
            "\tX\n",
        ));
        let cmds = &df.stages[0].commands;
        let Instruction::Copy(c) = &cmds[0].instruction else {
            panic!("not COPY")
        };
        assert!(c.sources.is_empty());
        assert_eq!(c.dest, "/usr/local/bin/");
        assert_eq!(
            c.contents,
            vec![
                InlineSource {
                    name: "EOF".into(),
                    data: "#!/bin/sh\necho $HOME\n".into(),
                    expand: true
                },
                InlineSource {
                    name: "RAW".into(),
                    data: "keep $HOME\n".into(),
                    expand: false
                },
            ]
        );
        assert_eq!(cmds[0].span, Span { start: 2, end: 7 });
        let run = |i: usize| match &cmds[i].instruction {
            Instruction::Run(r) => r.effective_command(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            run(1),
            RunCommand::Script("#!/usr/bin/env python3\nprint(1)\n".into())
        );
        assert_eq!(run(2), RunCommand::Shell("set -e\necho hi\n".into()));
        assert_eq!(
            run(3),
            RunCommand::Shell("python3 <<PY > /out && cat <<-X\nprint(2)\nPY\n\tx\nX".into())
        );
    }

    #[test]
    fn env_label_arg_and_expansion() {
        let df = parse(concat!(
            "FROM a\n",
            "ENV A=1 B=\"two words\" C=x\\ y\n",
            "ENV D ${A}-legacy value\n",
            "LABEL org.opencontainers.image.title=\"My App\" version=$A\n",
            "WORKDIR /srv/${B}\n",
            "USER ${UNSET:-app}\n",
            "VOLUME [\"/data/$A\"]\n",
            "EXPOSE $PORTS 9000/udp\n",
            "STOPSIGNAL SIG$SIG\n",
            "COPY --chown=$A:$A --from=build $SRC/* /dst/$A/\n",
            "RUN echo $A\n",
        ));
        let mut env: Vec<(String, String)> = vec![
            ("A".into(), "1".into()),
            ("B".into(), "two words".into()),
            ("PORTS".into(), "80 443".into()),
            ("SIG".into(), "TERM".into()),
            ("SRC".into(), "app".into()),
        ];
        env.push(("C".into(), "x y".into()));
        let cmds = &df.stages[0].commands;
        let ex = |i: usize| {
            df.expand_command(&cmds[i], &env)
                .expect("expand")
                .instruction
        };
        assert_eq!(
            ex(0),
            Instruction::Env(vec![
                KeyValue {
                    key: "A".into(),
                    value: "1".into()
                },
                KeyValue {
                    key: "B".into(),
                    value: "two words".into()
                },
                KeyValue {
                    key: "C".into(),
                    value: "x y".into()
                },
            ])
        );
        assert_eq!(
            ex(1),
            Instruction::Env(vec![KeyValue {
                key: "D".into(),
                value: "1-legacy value".into()
            }])
        );
        assert_eq!(
            ex(2),
            Instruction::Label(vec![
                KeyValue {
                    key: "org.opencontainers.image.title".into(),
                    value: "My App".into()
                },
                KeyValue {
                    key: "version".into(),
                    value: "1".into()
                },
            ])
        );
        assert_eq!(ex(3), Instruction::Workdir("/srv/two words".into()));
        assert_eq!(ex(4), Instruction::User("app".into()));
        assert_eq!(ex(5), Instruction::Volume(vec!["/data/1".into()]));
        assert_eq!(
            ex(6),
            Instruction::Expose(vec!["80".into(), "443".into(), "9000/udp".into()])
        );
        assert_eq!(ex(7), Instruction::Stopsignal("SIGTERM".into()));
        let Instruction::Copy(c) = ex(8) else {
            panic!("not COPY")
        };
        assert_eq!(c.chown.as_deref(), Some("1:1"));
        assert_eq!(c.from.as_deref(), Some("build"));
        assert_eq!(c.sources, vec!["app/*".to_owned()]);
        assert_eq!(c.dest, "/dst/1/");
        // RUN is left to the shell.
        assert_eq!(ex(9), cmds[9].instruction);
    }

    #[test]
    fn arg_before_from_is_only_for_from() {
        let df =
            parse("ARG V=3.19\nFROM alpine:$V\nRUN echo $V\nARG V\nRUN echo $V\nWORKDIR /v$V\n");
        let p = Platform::host();
        let ba = BTreeMap::new();
        let globals = df
            .global_scope(&ba, &platform_args(&p, &p))
            .expect("globals");
        assert_eq!(
            df.expand_from(&df.stages[0], &globals).expect("from").0,
            "alpine:3.19"
        );
        let lex = df.lexer();
        let mut scope = StageScope::new(&[]);
        // Before the in-stage ARG, V is not visible.
        assert_eq!(crate::expand::Env::get(&scope, "V"), None);
        let Instruction::Arg(decls) = &df.stages[0].commands[1].instruction else {
            panic!("not ARG")
        };
        scope
            .declare_arg(&lex, &decls[0], &ba, &globals)
            .expect("arg");
        let wd = df
            .expand_command(&df.stages[0].commands[3], &scope)
            .expect("expand");
        assert_eq!(wd.instruction, Instruction::Workdir("/v3.19".into()));
    }

    #[test]
    fn healthcheck_and_durations() {
        let Instruction::Healthcheck(Healthcheck::Check(h)) = one(
            "HEALTHCHECK --interval=1m30s --timeout=10s --start-period=1.5s --start-interval=500ms --retries=3 CMD curl -f http://localhost/ || exit 1",
        ) else {
            panic!("not a check")
        };
        assert_eq!(
            h.test,
            vec![
                "CMD-SHELL".to_owned(),
                "curl -f http://localhost/ || exit 1".to_owned()
            ]
        );
        assert_eq!(h.interval, Duration::from_secs(90));
        assert_eq!(h.start_period, Duration::from_millis(1500));
        assert_eq!(h.start_interval, Duration::from_millis(500));
        assert_eq!(h.retries, 3);
        let Instruction::Healthcheck(Healthcheck::Check(h)) =
            one("HEALTHCHECK CMD [\"/bin/check\", \"-q\"]")
        else {
            panic!("not a check")
        };
        assert_eq!(
            h.test,
            vec!["CMD".to_owned(), "/bin/check".to_owned(), "-q".to_owned()]
        );
        assert_eq!(
            one("HEALTHCHECK none"),
            Instruction::Healthcheck(Healthcheck::Disable)
        );

        let cases: &[(&str, Result<i64, &str>)] = &[
            ("0", Ok(0)),
            ("1h2m3.5s", Ok(3_723_500_000_000)),
            ("-1.5h", Ok(-5_400_000_000_000)),
            ("300ms", Ok(300_000_000)),
            ("1\u{b5}s", Ok(1_000)),
            (".5s", Ok(500_000_000)),
            ("", Err("time: invalid duration \"\"")),
            ("1", Err("time: missing unit in duration \"1\"")),
            ("1x", Err("time: unknown unit \"x\" in duration \"1x\"")),
            (".s", Err("time: invalid duration \".s\"")),
            ("9999999999h", Err("time: invalid duration \"9999999999h\"")),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_go_duration(input),
                want.map_err(str::to_owned),
                "{input:?}"
            );
        }
    }

    #[test]
    fn onbuild_and_other_instructions() {
        let Instruction::Onbuild(o) = one("onbuild copy --chown=1 . /app") else {
            panic!("not ONBUILD")
        };
        assert_eq!(o.trigger, "COPY");
        assert_eq!(o.expression, "copy --chown=1 . /app");
        let trig = o.parse_trigger().expect("trigger");
        let Instruction::Copy(c) = trig.instruction else {
            panic!("not COPY")
        };
        assert_eq!(c.chown.as_deref(), Some("1"));

        let df = parse("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n");
        let Instruction::Onbuild(o) = &df.stages[0].commands[0].instruction else {
            panic!("not ONBUILD")
        };
        assert_eq!(o.expression, "RUN <<EOF\necho hi\nEOF");
        let Instruction::Run(r) = o.parse_trigger().expect("trigger").instruction else {
            panic!("not RUN")
        };
        assert_eq!(r.effective_command(), RunCommand::Shell("echo hi\n".into()));

        assert_eq!(
            one("SHELL [\"powershell\", \"-command\"]"),
            Instruction::Shell(vec!["powershell".into(), "-command".into()])
        );
        assert_eq!(
            one("CMD echo \"hi there\""),
            Instruction::Cmd(CommandLine::Shell("echo \"hi there\"".into()))
        );
        assert_eq!(
            one("ENTRYPOINT [\"/init\"]"),
            Instruction::Entrypoint(CommandLine::Exec(vec!["/init".into()]))
        );
        assert_eq!(
            one("MAINTAINER Jane <j@x>"),
            Instruction::Maintainer("Jane <j@x>".into())
        );
        assert_eq!(
            one("EXPOSE 8080 443/tcp 53/udp"),
            Instruction::Expose(vec!["443/tcp".into(), "53/udp".into(), "8080".into()])
        );
        assert_eq!(
            one("ARG A B=2"),
            Instruction::Arg(vec![
                ArgDecl {
                    name: "A".into(),
                    default: None
                },
                ArgDecl {
                    name: "B".into(),
                    default: Some("2".into())
                },
            ])
        );
    }

    #[test]
    fn ports_signals_workdirs() {
        let ports = parse_expose(&[
            "80".into(),
            "8000-8002/udp".into(),
            "127.0.0.1:53:53/sctp".into(),
        ])
        .expect("ports");
        assert_eq!(ports[0].keys(), vec!["80/tcp"]);
        assert_eq!(ports[1].keys(), vec!["8000/udp", "8001/udp", "8002/udp"]);
        assert_eq!(ports[2].proto, Proto::Sctp);
        for (bad, msg) in [
            ("80/xyz", "Invalid proto: xyz"),
            ("http", "Invalid containerPort: http"),
            ("70000", "Invalid containerPort: 70000"),
            ("90-80", "Invalid containerPort: 90-80"),
        ] {
            assert_eq!(
                parse_expose(&[bad.to_owned()]).map_err(|e| e.to_string()),
                Err(msg.to_owned()),
                "{bad}"
            );
        }
        for (s, n) in [
            ("SIGTERM", 15),
            ("term", 15),
            ("9", 9),
            ("SIGRTMIN+3", 37),
            ("RTMAX", 64),
            ("sigwinch", 28),
        ] {
            assert_eq!(parse_signal(s), Ok(n), "{s}");
        }
        for s in ["0", "SIGFOO", "", "RTMIN+16"] {
            assert!(parse_signal(s).is_err(), "{s}");
        }
        assert_eq!(resolve_workdir("/app", "sub/../x"), "/app/x");
        assert_eq!(resolve_workdir("/app", "/abs//y/"), "/abs/y");
        assert_eq!(resolve_workdir("", "rel"), "/rel");
        assert_eq!(clean_path("./a/../../b"), "../b");
    }
}
