//! The executor: runs the stages a target needs and records the result as an image.
//!
//! Every step has a cache key: the key of the step before it (for `FROM`, the base image's
//! id or the base stage's final key) and a description of the step (the expanded
//! instruction; for `COPY`/`ADD` the digest of the files it reads; for `RUN` the variables in
//! scope and what its bind mounts show). A step whose key is in the store's build cache takes
//! the state recorded there without running anything. Otherwise it runs: config-only
//! instructions change the image config; `RUN`, `COPY`, `ADD` and `WORKDIR` work in an overlay
//! of the stage's layers ([`work`]) and what they changed becomes a layer (none when nothing
//! did). Independent stages run on their own threads. `RUN` goes through Berth's runtime in a
//! child process ([`run`]); no step is an API-visible container.

mod copy;
mod run;
mod state;
mod work;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use berth_image::store::{Image, ImageStore};
use berth_image::{ImageError, Reference};
use chrono::{SecondsFormat, Utc};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use sha2::{Digest, Sha256};

pub use copy::HashCache;
pub use run::RunConfig;
pub use state::State;

use crate::ast::{Command, Instruction, RunCommand, SecurityMode};
use crate::expand::{
    GlobalScope, Platform, StageScope, expand_heredoc, is_proxy_arg, platform_args,
};
use crate::graph::{Base, FromRef, resolve_from};
use crate::{BuildGraph, Dockerfile, Ignore};
use copy::{Dest, SourceRoot};
use work::Work;

/// Bytes of a step's output passed on to the client.
const MAX_STEP_LOG: usize = 2 << 20;

/// Salt of every cache key: bump when the meaning of a key changes.
const KEY_VERSION: &str = "berth-build-cache-v2";

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The Dockerfile or `.dockerignore` is wrong.
    #[error(transparent)]
    Dockerfile(#[from] crate::Error),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Something the build was given is wrong (missing source, bad flag value...).
    #[error("{0}")]
    Input(String),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A `RUN` command exited non-zero.
    #[error("process \"{command}\" did not complete successfully: exit code: {code}")]
    RunFailed { command: String, code: i32 },
    /// The daemon could not provide a base image.
    #[error("{0}")]
    Host(String),
    /// A step failed: where, and why.
    #[error("{file}:{line}: {source}")]
    Step {
        file: String,
        line: usize,
        #[source]
        source: Box<ExecError>,
    },
    /// The client went away.
    #[error("the build was cancelled")]
    Cancelled,
}

impl ExecError {
    fn io(context: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> ExecError {
        let context = context.as_ref().display().to_string();
        move |source| ExecError::Io { context, source }
    }

    /// Whether the error is the client's (a bad Dockerfile, a missing file, a failing
    /// `RUN`) rather than the daemon's.
    /// The exit code of the `RUN` that failed the build, if that is what failed.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            ExecError::Step { source, .. } => source.exit_code(),
            ExecError::RunFailed { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn is_user_error(&self) -> bool {
        match self {
            ExecError::Step { source, .. } => source.is_user_error(),
            ExecError::Image(_) | ExecError::Io { .. } => false,
            _ => true,
        }
    }
}

/// What the daemon provides to a build.
pub trait Host: Send + Sync {
    /// The image `reference` names, pulled when missing (or always, with `pull`).
    fn image(&self, reference: &str, pull: bool) -> Result<Image, String>;

    /// Downloads `url` (`ADD https://...`) into the new file `dest`; stops when `cancel`
    /// is set.
    fn fetch(&self, url: &str, dest: &Path, cancel: &AtomicBool) -> Result<(), String>;

    /// A namespace on the default network for the `RUN` step `id`; `None` when the daemon
    /// has no default bridge (the step then gets loopback only).
    fn network(&self, id: &str) -> Result<Option<StepNetwork>, String>;
}

/// The files of `ADD <url>` sources, downloaded once per step (their content is part of the
/// step's cache key); the directory goes with the value.
struct Downloads {
    dir: PathBuf,
    /// `(url, file name in dir, file name the URL gives)`.
    files: Vec<(String, String, String)>,
}

impl Drop for Downloads {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The file name a URL gives `ADD` when the destination is a directory.
fn url_file_name(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_host = path.splitn(4, '/').nth(3)?;
    let name = after_host.rsplit('/').next()?;
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_owned())
}

/// A build as asked.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile's bytes.
    pub dockerfile: Vec<u8>,
    /// Its path relative to the context (for errors and `.dockerignore` rules).
    pub dockerfile_name: String,
    /// `-t`.
    pub tags: Vec<Reference>,
    /// `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`.
    pub pull: bool,
    /// `--network` of the build: the network of every `RUN` (`RUN --network=host` needs
    /// `Host` here, BuildKit's `network.host` entitlement).
    pub network: BuildNetworkMode,
    /// `--output`: where the result's files go besides the image.
    pub output: Option<Output>,
    /// `--secret` contents by id, for `RUN --mount=type=secret`. Never written to a layer,
    /// the history or the cache key.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// Set when the client went away: the build stops at the next step, and a running
    /// `RUN` is killed.
    pub cancel: Arc<AtomicBool>,
}

/// `docker build --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildNetworkMode {
    /// Each `RUN` on the default bridge (loopback only when the daemon has none).
    #[default]
    Default,
    /// No network.
    None,
    /// The daemon's own network namespace.
    Host,
}

/// A network namespace the daemon prepared for one `RUN`; given back when dropped.
pub struct StepNetwork {
    /// The namespace file to join.
    pub netns: PathBuf,
    /// The step's resolv.conf.
    pub resolv_conf: String,
    /// Gives the namespace and its address back.
    pub release: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for StepNetwork {
    fn drop(&mut self) {
        if let Some(r) = self.release.take() {
            r();
        }
    }
}

/// `--output` exporters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `type=local,dest=DIR`: the files into a directory.
    Local(PathBuf),
    /// `type=tar,dest=FILE`: the files as a tar archive.
    Tar(PathBuf),
}

/// Progress of a build, in the order it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A line of the build log (`Step 2/5 : RUN make`, ` ---> Using cache`).
    Line(String),
    /// Output of a `RUN`.
    Output(Vec<u8>),
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The image.
    pub image: Image,
    /// Steps taken from the cache, and steps run.
    pub cached: usize,
    pub executed: usize,
}

/// Runs builds. One per daemon; builds may run concurrently.
pub struct Builder {
    store: Arc<ImageStore>,
    /// Where working roots and bundles go (under the exec root).
    work_dir: PathBuf,
    /// Where bulky temporary data goes (downloads, writable bind copies): on disk, under
    /// the data root, not in the exec root's tmpfs.
    scratch_dir: PathBuf,
    run: RunConfig,
    hashes: HashCache,
}

/// A stage's outcome: its state and the cache key of its last step.
#[derive(Debug, Clone)]
struct StageResult {
    state: State,
    key: String,
}

/// What the stages of one build share.
struct Ctx<'a> {
    req: &'a BuildRequest,
    df: Dockerfile,
    globals: GlobalScope,
    graph: BuildGraph,
    ignore: Ignore,
    platform: Platform,
    host: &'a dyn Host,
    progress: &'a (dyn Fn(Event) + Sync),
    total: usize,
    step: AtomicUsize,
    results: Mutex<HashMap<usize, StageResult>>,
    consumed: Mutex<BTreeSet<String>>,
    used_keys: Mutex<Vec<String>>,
    cached: AtomicUsize,
    executed: AtomicUsize,
    failed: AtomicBool,
    /// What the build stands on, kept from garbage collection until it ends.
    holds: Mutex<Vec<berth_image::store::Hold>>,
}

impl Ctx<'_> {
    fn hold(&self, store: &ImageStore, state: &State) {
        let h = store.hold(&state.layers);
        self.holds.lock().unwrap_or_else(|p| p.into_inner()).push(h);
    }
}

impl Ctx<'_> {
    fn line(&self, s: String) {
        (self.progress)(Event::Line(s));
    }

    fn result(&self, stage: usize) -> Result<StageResult, ExecError> {
        self.results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&stage)
            .cloned()
            .ok_or_else(|| ExecError::Input(format!("stage {stage} was not built")))
    }
}

fn next_key(parent: &str, description: &str) -> String {
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    h.update(b"\n");
    h.update(description.as_bytes());
    hex::encode(h.finalize())
}

fn short(key: &str) -> &str {
    let k = key.strip_prefix("sha256:").unwrap_or(key);
    &k[..12.min(k.len())]
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Joins a destination to the working directory, keeping a trailing `/`.
fn abs_dest(workdir: &str, dest: &str) -> String {
    let trailing = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
    let mut p = if dest.starts_with('/') {
        crate::ast::clean_path(dest)
    } else {
        crate::ast::clean_path(&format!("{workdir}/{dest}"))
    };
    if trailing && !p.ends_with('/') {
        p.push('/');
    }
    p
}

fn join_path(dir: &str, name: &str) -> String {
    format!(
        "{}/{}",
        dir.trim_end_matches('/'),
        name.trim_start_matches('/')
    )
}

/// `--chmod` in octal.
fn parse_chmod(raw: &str) -> Result<u32, ExecError> {
    u32::from_str_radix(raw, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            ExecError::Input(format!(
                "invalid chmod parameter {raw:?}: use an octal mode such as 755"
            ))
        })
}

/// `--chown user[:group]` inside `rootfs`; a user without a group gets the same number as
/// group, as Docker does.
fn parse_chown(rootfs: &Path, raw: &str) -> Result<(u32, u32), ExecError> {
    let (u, g) = match raw.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (raw, None),
    };
    let user = berth_runtime::user::resolve_exec_user(rootfs, u, &[])
        .map_err(|e| ExecError::Input(format!("--chown={raw}: {e}")))?;
    let gid = match g {
        None => user.uid,
        Some(g) => {
            berth_runtime::user::resolve_exec_user(rootfs, &format!("{u}:{g}"), &[])
                .map_err(|e| ExecError::Input(format!("--chown={raw}: {e}")))?
                .gid
        }
    };
    Ok((user.uid, gid))
}

impl Builder {
    /// A builder over `store`, mounting under `work_dir`, staging under `scratch_dir`,
    /// running steps as `run` says.
    pub fn new(
        store: Arc<ImageStore>,
        work_dir: PathBuf,
        scratch_dir: PathBuf,
        run: RunConfig,
    ) -> Self {
        Builder {
            store,
            work_dir,
            scratch_dir,
            run,
            hashes: HashCache::default(),
        }
    }

    /// Builds `req`, reporting to `progress`; the image is stored and tagged.
    pub fn build(
        &self,
        req: &BuildRequest,
        host: &dyn Host,
        progress: &(dyn Fn(Event) + Sync),
    ) -> Result<BuildResult, ExecError> {
        std::fs::create_dir_all(&self.work_dir).map_err(ExecError::io(&self.work_dir))?;
        // Step roots, bundles (with secret variables) and secrets: root's only.
        rustix::fs::chmod(&self.work_dir, Mode::from_raw_mode(0o700))
            .map_err(|e| ExecError::io(&self.work_dir)(e.into()))?;
        let df = Dockerfile::parse(&req.dockerfile_name, &req.dockerfile)?;
        let ignore = self.read_ignore(req)?;
        let platform = Platform::host();
        let globals = df.global_scope(&req.build_args, &platform_args(&platform, &platform))?;
        let graph = BuildGraph::new(&df, &globals, req.target.as_deref())?;
        let total = graph
            .needed()
            .iter()
            .map(|&i| 1 + df.stages[i].commands.len())
            .sum();
        let ctx = Ctx {
            req,
            df,
            globals,
            graph,
            ignore,
            platform,
            host,
            progress,
            total,
            step: AtomicUsize::new(0),
            results: Mutex::new(HashMap::new()),
            consumed: Mutex::new(BTreeSet::new()),
            used_keys: Mutex::new(Vec::new()),
            cached: AtomicUsize::new(0),
            executed: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            holds: Mutex::new(Vec::new()),
        };
        for w in &ctx.df.warnings {
            ctx.line(format!("[WARNING]: {w}\n"));
        }
        for group in ctx.graph.groups().to_vec() {
            if group.len() == 1 {
                self.stage(&ctx, group[0])?;
                continue;
            }
            let errors: Vec<ExecError> = std::thread::scope(|s| {
                let handles: Vec<_> = group
                    .iter()
                    .map(|&i| {
                        let ctx = &ctx;
                        s.spawn(move || self.stage(ctx, i))
                    })
                    .collect();
                handles
                    .into_iter()
                    .filter_map(|h| match h.join() {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e),
                        Err(_) => Some(ExecError::Input("a build stage panicked".into())),
                    })
                    .collect()
            });
            // The stage that failed, not a sibling that stopped because of it.
            let mut errors = errors;
            errors.sort_by_key(|e| matches!(e, ExecError::Cancelled));
            if let Some(e) = errors.into_iter().next() {
                return Err(e);
            }
        }
        let target = ctx.result(ctx.graph.target())?;
        let mut state = target.state;
        if !req.labels.is_empty() {
            state.add_labels(&req.labels);
        }
        let config = serde_json::to_vec(&state.config)
            .map_err(|e| ExecError::Input(format!("encode the image config: {e}")))?;
        let image = self
            .store
            .add_image(&config, &state.layers, &req.tags, None, None)?;
        if let Some(out) = &req.output {
            self.export(&state, out)?;
        }
        let used = std::mem::take(&mut *ctx.used_keys.lock().unwrap_or_else(|p| p.into_inner()));
        if let Err(e) = self.store.cache_touch(&used) {
            tracing::warn!(error = %e, "marking build cache entries used");
        }
        let consumed = ctx
            .consumed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let unused: Vec<&String> =
            req.build_args
                .keys()
                .filter(|k| {
                    !consumed.contains(*k)
                        && !is_proxy_arg(k)
                        && ctx.globals.get(k).is_none_or(|_| {
                            !ctx.df.meta_arg_decls().iter().any(|(d, _)| &d.name == *k)
                        })
                })
                .collect();
        if !unused.is_empty() {
            let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            ctx.line(format!(
                "[Warning] One or more build-args [{}] were not consumed\n",
                names.join(" ")
            ));
        }
        Ok(BuildResult {
            image,
            cached: ctx.cached.load(Ordering::Relaxed),
            executed: ctx.executed.load(Ordering::Relaxed),
        })
    }

    /// The scratch directory, made (root's only) when missing.
    fn scratch(&self) -> Result<&Path, ExecError> {
        let d = &self.scratch_dir;
        std::fs::create_dir_all(d).map_err(ExecError::io(d))?;
        rustix::fs::chmod(d, Mode::from_raw_mode(0o700)).map_err(|e| ExecError::io(d)(e.into()))?;
        Ok(d)
    }

    /// Writes the files of `state` where `--output` says.
    fn export(&self, state: &State, out: &Output) -> Result<(), ExecError> {
        let work = Work::mount(&self.store, &self.work_dir, &state.diff_ids())?;
        let root = open_root(work.rootfs())?;
        match out {
            Output::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(ExecError::io(dir))?;
                let dest_root = open_root(dir)?;
                // Files land on the host: they belong to whoever owns the directory, and
                // lose set-id bits and special files.
                let st = rustix::fs::fstat(&dest_root).map_err(|e| ExecError::io(dir)(e.into()))?;
                let owner = (st.st_uid, st.st_gid);
                let src = SourceRoot::stage(work.rootfs(), "the result")?;
                for s in src.resolve(&[".".to_owned()])? {
                    src.copy(
                        &s,
                        &Dest {
                            root: dest_root.as_fd(),
                            path: "/".into(),
                            chown: Some(owner),
                            chmod: None,
                            host_safe: true,
                        },
                        None,
                    )?;
                }
            }
            Output::Tar(file) => {
                let f = std::fs::File::create(file).map_err(ExecError::io(file))?;
                let mut w = berth_image::tarwalk::TreeWriter::new(std::io::BufWriter::new(f));
                w.add_children(&root, Path::new(""))
                    .map_err(ExecError::io(file))?;
                let mut inner = w.finish().map_err(ExecError::io(file))?;
                std::io::Write::flush(&mut inner).map_err(ExecError::io(file))?;
            }
        }
        Ok(())
    }

    /// The context's `.dockerignore` (`<Dockerfile>.dockerignore` first), as the builder
    /// applies it: without the CLI's exceptions for the Dockerfile and the ignore file, so
    /// an excluded Dockerfile is read but not copied by `COPY .` (moby's `removeDockerfile`).
    fn read_ignore(&self, req: &BuildRequest) -> Result<Ignore, ExecError> {
        for name in crate::ignore::ignore_file_candidates(&req.dockerfile_name) {
            let root = rustix::fs::open(
                &req.context,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ExecError::io(&req.context)(e.into()))?;
            let fd = match rustix::fs::openat2(
                &root,
                name.as_str(),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => fd,
                Err(_) => continue,
            };
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::fs::File::from(fd).take_limited(), &mut data)
                .map_err(ExecError::io(&name))?;
            return Ignore::parse(&data).map_err(|k| crate::Error::new(&name, 0, 0, k).into());
        }
        Ok(Ignore::default())
    }

    fn stage(&self, ctx: &Ctx<'_>, index: usize) -> Result<(), ExecError> {
        let r = self.stage_inner(ctx, index);
        if r.is_err() {
            ctx.failed.store(true, Ordering::Relaxed);
        }
        r
    }

    fn stage_inner(&self, ctx: &Ctx<'_>, index: usize) -> Result<(), ExecError> {
        let df = &ctx.df;
        let stage = &df.stages[index];
        let node = &ctx.graph.nodes()[index];
        let n = ctx.step.fetch_add(1, Ordering::Relaxed) + 1;
        ctx.line(format!("Step {n}/{} : {}\n", ctx.total, stage.original));
        let at = |line: usize| {
            let file = df.file.clone();
            move |e: ExecError| match e {
                e @ (ExecError::Step { .. } | ExecError::Dockerfile(_)) => e,
                e => ExecError::Step {
                    file,
                    line,
                    source: Box::new(e),
                },
            }
        };
        // What the FROM line shows: the base image's own id (as the classic builder), else
        // the step's key.
        let mut shown = None;
        let (mut state, mut key) = match &node.base {
            Base::Scratch => (
                State::scratch(&ctx.platform),
                next_key(KEY_VERSION, &format!("scratch {:?}", ctx.platform)),
            ),
            Base::Stage(i) => {
                let r = ctx.result(*i)?;
                (r.state, r.key)
            }
            Base::Image(reference) => {
                let image = ctx
                    .host
                    .image(reference, ctx.req.pull)
                    .map_err(ExecError::Host)
                    .map_err(at(stage.span.start))?;
                let layers = self.store.layer_refs(&image)?;
                shown = Some(image.id.clone());
                (
                    State {
                        layers,
                        config: image.config.clone(),
                    },
                    next_key(KEY_VERSION, &format!("image {}", image.id)),
                )
            }
        };
        ctx.hold(&self.store, &state);
        ctx.line(format!(
            " ---> {}\n",
            short(shown.as_deref().unwrap_or(&key))
        ));
        // As BuildKit: an image without PATH gets the default one.
        if !state.env().iter().any(|e| e.starts_with("PATH=")) {
            let mut env = state.env();
            env.insert(0, format!("PATH={}", state::DEFAULT_PATH));
            state
                .container()
                .insert("Env".into(), serde_json::json!(env));
        }
        let mut commands: Vec<Command> = Vec::new();
        for trigger in state.take_onbuild() {
            let c = crate::ast::parse_trigger(&trigger)?;
            ctx.line("# Executing 1 build trigger\n".into());
            commands.push(c);
        }
        commands.extend(stage.commands.iter().cloned());
        let mut scope = StageScope::new(&state.env());
        let mut cmd_set = false;
        let lexer = df.lexer();
        for (i, cmd) in commands.iter().enumerate() {
            if ctx.failed.load(Ordering::Relaxed) || ctx.req.cancel.load(Ordering::Relaxed) {
                return Err(ExecError::Cancelled);
            }
            if i >= commands.len() - stage.commands.len() {
                let n = ctx.step.fetch_add(1, Ordering::Relaxed) + 1;
                ctx.line(format!("Step {n}/{} : {}\n", ctx.total, cmd.original));
            }
            let line = cmd.span.start;
            if let Instruction::Arg(decls) = &cmd.instruction {
                let mut desc = String::from("ARG");
                for d in decls {
                    let v = scope
                        .declare_arg(&lexer, d, &ctx.req.build_args, &ctx.globals)
                        .map_err(|e| df.error_at(cmd, crate::ErrorKind::Expand(e)))?;
                    ctx.consumed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(d.name.clone());
                    desc.push_str(&format!(" {}={:?}", d.name, v));
                }
                key = next_key(&key, &desc);
                continue;
            }
            let expanded = df.expand_command(cmd, &scope)?;
            match &expanded.instruction {
                Instruction::Env(kvs) => {
                    for kv in kvs {
                        scope.set_env(&kv.key, &kv.value);
                    }
                }
                Instruction::Cmd(_) => cmd_set = true,
                _ => {}
            }
            let downloads = self.download(ctx, &expanded).map_err(at(line))?;
            let desc = self
                .describe(ctx, &scope, &expanded, downloads.as_ref())
                .map_err(at(line))?;
            let new_key = next_key(&key, &desc);
            if !ctx.req.no_cache {
                if let Some(entry) = self.store.cache_get(&new_key)? {
                    state = State {
                        layers: entry.layers,
                        config: entry.config,
                    };
                    ctx.hold(&self.store, &state);
                    ctx.line(" ---> Using cache\n".into());
                    ctx.line(format!(" ---> {}\n", short(&new_key)));
                    ctx.used_keys
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(new_key.clone());
                    ctx.cached.fetch_add(1, Ordering::Relaxed);
                    key = new_key;
                    continue;
                }
            }
            let size = self
                .execute(
                    ctx,
                    &mut state,
                    &scope,
                    &expanded,
                    &mut cmd_set,
                    downloads.as_ref(),
                )
                .map_err(at(line))?;
            ctx.hold(&self.store, &state);
            self.store.cache_put(
                &new_key,
                state.layers.clone(),
                state.config.clone(),
                size,
                &desc,
            )?;
            ctx.executed.fetch_add(1, Ordering::Relaxed);
            ctx.line(format!(" ---> {}\n", short(&new_key)));
            key = new_key;
        }
        ctx.results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(index, StageResult { state, key });
        Ok(())
    }

    /// The part of a step's cache key beyond its parent: the expanded instruction, and what
    /// else its result depends on.
    fn describe(
        &self,
        ctx: &Ctx<'_>,
        scope: &StageScope,
        cmd: &Command,
        downloads: Option<&Downloads>,
    ) -> Result<String, ExecError> {
        let mut desc = format!("{:?}", cmd.instruction);
        if let Some(dl) = downloads {
            for (url, file, _) in &dl.files {
                let mut h = Sha256::new();
                let mut f = std::fs::File::open(dl.dir.join(file)).map_err(ExecError::io(url))?;
                std::io::copy(&mut f, &mut h).map_err(ExecError::io(url))?;
                desc.push_str(&format!(" url={url} sha256:{}", hex::encode(h.finalize())));
            }
        }
        match &cmd.instruction {
            Instruction::Copy(c) => {
                desc.push_str(&self.sources_digest(
                    ctx,
                    c.from.as_deref(),
                    &c.sources,
                    &c.exclude,
                )?);
            }
            Instruction::Add(a) => {
                let local = local_sources(a);
                desc.push_str(&self.sources_digest(ctx, None, &local, &a.exclude)?);
            }
            Instruction::Run(r) => {
                desc.push_str(&format!(" env={:?}", scope.run_env(&ctx.req.build_args)));
                desc.push_str(&format!(" network={:?}", ctx.req.network));
                for m in &r.mounts {
                    if let Some(from) = m.from_ref() {
                        desc.push_str(&format!(" from={}", self.key_of_from(ctx, from)?));
                    } else if m
                        .fields
                        .iter()
                        .all(|(k, v)| k != "type" || v.as_deref() == Some("bind"))
                    {
                        // A bind of the context: what it shows is part of the key.
                        let mount = m
                            .resolve(&mut |s| ctx.df.lexer().process_word(s, scope))
                            .map_err(|k| ctx.df.error_at(cmd, k))?;
                        let src = if mount.source.is_empty() {
                            ".".to_owned()
                        } else {
                            mount.source.clone()
                        };
                        desc.push_str(&self.sources_digest(ctx, None, &[src], &[])?);
                    }
                }
            }
            _ => {}
        }
        Ok(desc)
    }

    /// A `RUN --mount=type=secret`: the secret written to a private file bound read-only at
    /// its target (default `/run/secrets/<id>`), and/or set as `env`. `None` when it is not
    /// given and not required.
    fn secret_mount(
        &self,
        ctx: &Ctx<'_>,
        m: &mut crate::ast::Mount,
        dir: &Path,
        env: &mut Vec<(String, String)>,
    ) -> Result<Option<berth_runtime::spec::MountSpec>, ExecError> {
        let id = if !m.id.is_empty() {
            m.id.clone()
        } else if !m.source.is_empty() {
            m.source.clone()
        } else {
            m.target.rsplit('/').next().unwrap_or_default().to_owned()
        };
        let Some(data) = ctx.req.secrets.get(&id) else {
            if m.required {
                return Err(ExecError::Input(format!(
                    "secret {id} is required but was not given (berth build --secret id={id},src=FILE)"
                )));
            }
            return Ok(None);
        };
        if let Some(var) = &m.env {
            env.push((var.clone(), String::from_utf8_lossy(data).into_owned()));
            if m.target.is_empty() {
                return Ok(None);
            }
        }
        let target = if m.target.is_empty() {
            format!("/run/secrets/{id}")
        } else {
            m.target.clone()
        };
        std::fs::create_dir_all(dir).map_err(ExecError::io(dir))?;
        rustix::fs::chmod(dir, Mode::from_raw_mode(0o700))
            .map_err(|e| ExecError::io(dir)(e.into()))?;
        let file = dir.join(format!("{:016x}", rand::random::<u64>()));
        std::fs::write(&file, data).map_err(ExecError::io(&file))?;
        rustix::fs::chown(
            &file,
            Some(rustix::fs::Uid::from_raw(m.uid.unwrap_or(0))),
            Some(rustix::fs::Gid::from_raw(m.gid.unwrap_or(0))),
        )
        .map_err(|e| ExecError::io(&file)(e.into()))?;
        rustix::fs::chmod(&file, Mode::from_raw_mode(m.mode.unwrap_or(0o400)))
            .map_err(|e| ExecError::io(&file)(e.into()))?;
        Ok(Some(berth_runtime::spec::MountSpec {
            destination: target,
            source: file.to_string_lossy().into_owned(),
            kind: "bind".into(),
            options: vec![
                "rbind".into(),
                "rprivate".into(),
                "ro".into(),
                "nosuid".into(),
                "nodev".into(),
                "noexec".into(),
            ],
        }))
    }

    /// Downloads the URL sources of an `ADD` (checking `--checksum`); `None` for other steps.
    fn download(&self, ctx: &Ctx<'_>, cmd: &Command) -> Result<Option<Downloads>, ExecError> {
        let Instruction::Add(a) = &cmd.instruction else {
            return Ok(None);
        };
        let urls: Vec<&String> = a.sources.iter().filter(|s| is_remote(s)).collect();
        if urls.is_empty() {
            return Ok(None);
        }
        let dir = self
            .work_dir
            .join(format!("dl-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).map_err(ExecError::io(&dir))?;
        let mut dl = Downloads {
            dir,
            files: Vec::new(),
        };
        for (i, url) in urls.into_iter().enumerate() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ExecError::Input(format!(
                    "ADD {url}: git sources are not supported; clone into the context"
                )));
            }
            let name = url_file_name(url);
            let file = format!("{i}");
            let path = dl.dir.join(&file);
            ctx.line(format!("Downloading {url}\n"));
            ctx.host
                .fetch(url, &path, &ctx.req.cancel)
                .map_err(|e| ExecError::Input(format!("ADD {url}: {e}")))?;
            if let Some(want) = &a.checksum {
                let mut h = Sha256::new();
                let mut f = std::fs::File::open(&path).map_err(ExecError::io(&path))?;
                std::io::copy(&mut f, &mut h).map_err(ExecError::io(&path))?;
                let got = format!("sha256:{}", hex::encode(h.finalize()));
                if &got != want {
                    return Err(ExecError::Input(format!(
                        "ADD {url}: digest mismatch: expected {want}, got {got}"
                    )));
                }
            }
            // Docker gives downloaded files mode 0600.
            rustix::fs::chmod(&path, Mode::from_raw_mode(0o600))
                .map_err(|e| ExecError::io(&path)(e.into()))?;
            let name = match name {
                Some(n) => n,
                None if !a.dest.ends_with('/') => String::new(),
                None => {
                    return Err(ExecError::Input(format!(
                        "ADD {url}: cannot determine a file name from the URL; give a destination file"
                    )));
                }
            };
            dl.files.push((url.clone(), file, name));
        }
        Ok(Some(dl))
    }

    /// What a `--from` (stage or image) stands for in a cache key.
    fn key_of_from(&self, ctx: &Ctx<'_>, from: &str) -> Result<String, ExecError> {
        match resolve_from(&ctx.df.stages, from).map_err(|k| ExecError::Input(k.to_string()))? {
            FromRef::Stage(i) => Ok(ctx.result(i)?.key),
            FromRef::Image(r) => Ok(ctx.host.image(&r, false).map_err(ExecError::Host)?.id),
        }
    }

    /// The digest of the files `sources` name, in the context or `--from`.
    fn sources_digest(
        &self,
        ctx: &Ctx<'_>,
        from: Option<&str>,
        sources: &[String],
        exclude: &[String],
    ) -> Result<String, ExecError> {
        if let Some(f) = from {
            return Ok(format!(" from={} {:?}", self.key_of_from(ctx, f)?, sources));
        }
        let exclude = exclude_matcher(exclude)?;
        let root = SourceRoot::context(&ctx.req.context, &ctx.ignore)?;
        let mut h = Sha256::new();
        for src in root.resolve(sources)? {
            if exclude.as_ref().is_some_and(|ex| ex.matches(&src.rel)) {
                continue;
            }
            root.hash(&src, exclude.as_ref(), &self.hashes, &mut h)?;
        }
        Ok(format!(" content={}", hex::encode(h.finalize())))
    }

    /// Runs one step that was not in the cache; returns the size of the layer it made.
    fn execute(
        &self,
        ctx: &Ctx<'_>,
        state: &mut State,
        scope: &StageScope,
        cmd: &Command,
        cmd_set: &mut bool,
        downloads: Option<&Downloads>,
    ) -> Result<u64, ExecError> {
        let created = now();
        match &cmd.instruction {
            Instruction::Run(r) => {
                if r.security == SecurityMode::Insecure {
                    return Err(ExecError::Input(
                        "RUN --security=insecure needs the security.insecure entitlement, which berthd does not grant".into(),
                    ));
                }
                let work = Work::mount(&self.store, &self.work_dir, &state.diff_ids())?;
                // Kept open (and mounted) until the command ends: the binds name them.
                let mut keep_fds: Vec<OwnedFd> = Vec::new();
                let mut keep_works: Vec<Work<'_>> = Vec::new();
                let mut scratches: Vec<Scratch> = Vec::new();
                let mut mounts = Vec::new();
                let id = format!("berth-build-{}", work.short_id());
                let bundle = self.work_dir.join(format!("{id}.bundle"));
                let secret_dir = self.work_dir.join(format!("{id}.secrets"));
                let _secret_guard = run::RemoveOnDrop(secret_dir.clone());
                let mut env = scope.run_env(&ctx.req.build_args);
                for spec in &r.mounts {
                    let mut m = spec
                        .resolve(&mut |s| ctx.df.lexer().process_word(s, scope))
                        .map_err(|k| ctx.df.error_at(cmd, k))?;
                    if m.kind == crate::ast::MountType::Secret {
                        match self.secret_mount(ctx, &mut m, &secret_dir, &mut env)? {
                            Some(rm) => mounts.push(rm),
                            None => continue,
                        }
                        continue;
                    }
                    let mut bind = |m: &crate::ast::Mount| -> Result<PathBuf, ExecError> {
                        if m.from.is_empty() && !ctx.ignore.is_empty() {
                            // The context as the docker CLI would have sent it: a copy
                            // without what `.dockerignore` leaves out (writes to it vanish).
                            let src_root = SourceRoot::context(&ctx.req.context, &ctx.ignore)?;
                            let want = if m.source.is_empty() {
                                ".".to_owned()
                            } else {
                                m.source.clone()
                            };
                            let guard = Scratch::new(
                                self.scratch()?
                                    .join(format!("ctx-{:016x}", rand::random::<u64>())),
                            )?;
                            let dest_root = open_root(&guard.upper)?;
                            let mut path = guard.upper.clone();
                            for s in src_root.resolve(&[want])? {
                                let target = if s.is_dir() {
                                    "/".to_owned()
                                } else {
                                    "/file".to_owned()
                                };
                                if !s.is_dir() {
                                    path = guard.upper.join("file");
                                }
                                src_root.copy(
                                    &s,
                                    &Dest {
                                        root: dest_root.as_fd(),
                                        path: target,
                                        chown: None,
                                        chmod: None,
                                        host_safe: false,
                                    },
                                    None,
                                )?;
                            }
                            scratches.push(guard);
                            return Ok(path);
                        }
                        let (root, label) = if m.from.is_empty() {
                            (ctx.req.context.clone(), "build context".to_owned())
                        } else {
                            let diff_ids = self.layers_of_from(ctx, &m.from)?;
                            let w = Work::mount(&self.store, &self.work_dir, &diff_ids)?;
                            let p = w.rootfs().to_owned();
                            keep_works.push(w);
                            (p, m.from.clone())
                        };
                        let rootfd = rustix::fs::open(
                            &root,
                            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .map_err(|e| ExecError::io(&root)(e.into()))?;
                        let src = m.source.trim_start_matches('/');
                        let fd = rustix::fs::openat2(
                            &rootfd,
                            if src.is_empty() { "." } else { src },
                            OFlags::PATH | OFlags::CLOEXEC,
                            Mode::empty(),
                            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                        )
                        .map_err(|_| {
                            ExecError::Input(format!("{}: not found in {label}", m.source))
                        })?;
                        let p = run::fd_path(&fd);
                        keep_fds.push(fd);
                        if m.readonly {
                            return Ok(p);
                        }
                        // rw: writes go to a scratch copy-on-write layer, dropped after.
                        let scratch = self
                            .scratch()?
                            .join(format!("rw-{:016x}", rand::random::<u64>()));
                        let guard = Scratch::new(scratch)?;
                        let merged = guard.merged.clone();
                        if p.is_dir() {
                            berth_image::snapshot::mount_overlay(
                                std::slice::from_ref(&p),
                                &guard.upper,
                                &guard.work,
                                &merged,
                                berth_image::snapshot::Upper::Volatile,
                            )?;
                            scratches.push(guard);
                            Ok(merged)
                        } else {
                            if !std::fs::metadata(&p).is_ok_and(|m| m.is_file()) {
                                return Err(ExecError::Input(format!(
                                    "{}: a writable bind needs a directory or a regular file",
                                    m.source
                                )));
                            }
                            let copy = guard.upper.join("file");
                            std::fs::copy(&p, &copy).map_err(ExecError::io(&copy))?;
                            scratches.push(guard);
                            Ok(copy)
                        }
                    };
                    if let Some(rm) = run::runtime_mount(&m, &self.run, &mut bind)? {
                        mounts.push(rm);
                    }
                }
                use crate::ast::NetworkMode;
                use berth_runtime::spec::NamespaceMode;
                let host_resolv =
                    || std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                let mut step_net = None;
                let (network, resolv_conf) = match (ctx.req.network, r.network) {
                    (BuildNetworkMode::None, _) | (_, NetworkMode::None) => {
                        (NamespaceMode::Private, String::new())
                    }
                    (BuildNetworkMode::Host, _) => (NamespaceMode::Host, host_resolv()),
                    (BuildNetworkMode::Default, NetworkMode::Host) => {
                        return Err(ExecError::Input(
                            "RUN --network=host needs the network.host entitlement: build with --network host".into(),
                        ));
                    }
                    (BuildNetworkMode::Default, NetworkMode::Default) => {
                        match ctx.host.network(&id).map_err(ExecError::Host)? {
                            Some(n) => {
                                let v =
                                    (NamespaceMode::Path(n.netns.clone()), n.resolv_conf.clone());
                                step_net = Some(n);
                                v
                            }
                            None => (NamespaceMode::Private, String::new()),
                        }
                    }
                };
                let command = r.effective_command();
                let shown = match &command {
                    RunCommand::Exec(v) => format!("{v:?}"),
                    RunCommand::Shell(s) | RunCommand::Script(s) => {
                        let mut v = state.shell();
                        v.push(s.clone());
                        v.join(" ")
                    }
                };
                ctx.line(format!(" ---> Running in {}\n", work.short_id()));
                // Mount points the runtime will make for the mounts are not the step's
                // changes: what did not exist before goes again after.
                let stubs = {
                    let root = open_root(work.rootfs())?;
                    let mut stubs = Vec::new();
                    for m in &mounts {
                        stubs.extend(work::missing_chain(&root, &m.destination));
                    }
                    stubs
                };
                let mut logged = 0usize;
                let step = run::RunStep {
                    command,
                    env,
                    network,
                    resolv_conf,
                    mounts,
                    state,
                };
                run::run(
                    work.rootfs(),
                    &id,
                    step,
                    &self.run,
                    &bundle,
                    &ctx.req.cancel,
                    &mut |b| {
                        // As BuildKit: a step's log stops at 2 MiB (the step runs on).
                        if logged < MAX_STEP_LOG {
                            let n = b.len().min(MAX_STEP_LOG - logged);
                            (ctx.progress)(Event::Output(b[..n].to_vec()));
                            logged += n;
                            if logged == MAX_STEP_LOG {
                                (ctx.progress)(Event::Line(
                                    "\n[output clipped, log limit 2MiB reached]\n".into(),
                                ));
                            }
                        }
                    },
                )?;
                drop(step_net);
                // (The step's container is gone; its changes become the layer.)
                ctx.line(format!(
                    "Removing intermediate container {}\n",
                    work.short_id()
                ));
                work::remove_stubs(&open_root(work.rootfs())?, &stubs);
                drop(scratches);
                drop(keep_works);
                drop(keep_fds);
                let layer = work.commit(&state.diff_ids())?;
                let size = self.push(state, layer);
                state.record(&created, &format!("RUN {shown} # buildkit"), size.is_none());
                Ok(size.unwrap_or(0))
            }
            Instruction::Copy(c) => {
                let sources = CopySources {
                    from: c.from.as_deref(),
                    paths: &c.sources,
                    downloads: None,
                    contents: &c.contents,
                    dest: &c.dest,
                    chown: c.chown.as_deref(),
                    chmod: c.chmod.as_deref(),
                    exclude: &c.exclude,
                    parents: c.parents,
                    extract: false,
                };
                self.copy_step(ctx, state, scope, &sources, &created, &cmd.original)
            }
            Instruction::Add(a) => {
                let local = local_sources(a);
                let sources = CopySources {
                    from: None,
                    paths: &local,
                    downloads,
                    contents: &a.contents,
                    dest: &a.dest,
                    chown: a.chown.as_deref(),
                    chmod: a.chmod.as_deref(),
                    exclude: &a.exclude,
                    parents: false,
                    extract: a.unpack.unwrap_or(true),
                };
                self.copy_step(ctx, state, scope, &sources, &created, &cmd.original)
            }
            Instruction::Workdir(_) => {
                state
                    .apply(&cmd.instruction, scope.image_env(), cmd_set)
                    .map_err(|k| ctx.df.error_at(cmd, k))?;
                let dir = state.workdir();
                let work = Work::mount(&self.store, &self.work_dir, &state.diff_ids())?;
                {
                    let root = open_root(work.rootfs())?;
                    let dest = Dest {
                        root: root.as_fd(),
                        path: dir.clone(),
                        chown: None,
                        chmod: None,
                        host_safe: false,
                    };
                    dest.ensure_dir(&dir)?;
                }
                let layer = work.commit(&state.diff_ids())?;
                let size = self.push(state, layer);
                state.record(&created, &format!("WORKDIR {dir}"), size.is_none());
                Ok(size.unwrap_or(0))
            }
            other => {
                state
                    .apply(other, scope.image_env(), cmd_set)
                    .map_err(|k| ctx.df.error_at(cmd, k))?;
                state.record(&created, &cmd.original, true);
                Ok(0)
            }
        }
    }

    /// Appends a step's layer, if it made one; returns its size.
    fn push(
        &self,
        state: &mut State,
        layer: Option<(berth_image::store::LayerRef, u64)>,
    ) -> Option<u64> {
        let (l, size) = layer?;
        state.push_layer(l);
        Some(size)
    }

    /// The layers a `--from` names.
    fn layers_of_from(&self, ctx: &Ctx<'_>, from: &str) -> Result<Vec<String>, ExecError> {
        match resolve_from(&ctx.df.stages, from).map_err(|k| ExecError::Input(k.to_string()))? {
            FromRef::Stage(i) => Ok(ctx.result(i)?.state.diff_ids()),
            FromRef::Image(r) => Ok(ctx.host.image(&r, false).map_err(ExecError::Host)?.layers),
        }
    }

    /// `COPY`/`ADD` as a step: the copy and its history entry; returns the layer's size.
    fn copy_step(
        &self,
        ctx: &Ctx<'_>,
        state: &mut State,
        scope: &StageScope,
        sources: &CopySources<'_>,
        created: &str,
        original: &str,
    ) -> Result<u64, ExecError> {
        let size = self.copy(ctx, state, scope, sources)?;
        state.record(created, &format!("{original} # buildkit"), size.is_none());
        Ok(size.unwrap_or(0))
    }

    /// `COPY`/`ADD`: returns the size of the layer, or `None` when nothing changed.
    fn copy(
        &self,
        ctx: &Ctx<'_>,
        state: &mut State,
        scope: &StageScope,
        c: &CopySources<'_>,
    ) -> Result<Option<u64>, ExecError> {
        let work = Work::mount(&self.store, &self.work_dir, &state.diff_ids())?;
        let source_work;
        let source = match c.from {
            None => SourceRoot::context(&ctx.req.context, &ctx.ignore)?,
            Some(f) => {
                let diff_ids = self.layers_of_from(ctx, f)?;
                source_work = Work::mount(&self.store, &self.work_dir, &diff_ids)?;
                SourceRoot::stage(source_work.rootfs(), f)?
            }
        };
        {
            let root = open_root(work.rootfs())?;
            let chown = c.chown.map(|o| parse_chown(work.rootfs(), o)).transpose()?;
            let chmod = c.chmod.map(parse_chmod).transpose()?;
            let dest_path = abs_dest(&state.workdir(), c.dest);
            let exclude = exclude_matcher(c.exclude)?;
            let mut sources = if c.paths.is_empty() {
                Vec::new()
            } else {
                source.resolve(c.paths)?
            };
            // `--exclude` applies to what the sources name, not only inside directories.
            if let Some(ex) = &exclude {
                sources.retain(|s| !ex.matches(&s.rel));
            }
            let fetched = c.downloads.map_or(&[][..], |d| d.files.as_slice());
            let count = sources.len() + c.contents.len() + fetched.len();
            let dest_is_dir = dest_path.ends_with('/')
                || Dest {
                    root: root.as_fd(),
                    path: String::new(),
                    chown: None,
                    chmod: None,
                    host_safe: false,
                }
                .is_dir(&dest_path);
            if count > 1 && !dest_is_dir {
                return Err(ExecError::Input(
                    "When using COPY with more than one source file, the destination must be a directory and end with a /".into(),
                ));
            }
            let dest_at = |path: String| Dest {
                root: root.as_fd(),
                path,
                chown,
                chmod,
                host_safe: false,
            };
            for src in &sources {
                let target = if c.parents {
                    join_path(&dest_path, &src.rel)
                } else if src.is_dir() || !dest_is_dir {
                    dest_path.clone()
                } else {
                    join_path(&dest_path, src.base_name())
                };
                if src.is_regular()
                    && c.extract
                    && copy::looks_like_archive(&source.open_source(src)?)
                {
                    source.extract(src, &dest_at(dest_path.clone()))?;
                    continue;
                }
                let target = if src.is_dir() {
                    target.trim_end_matches('/').to_owned()
                } else {
                    target
                };
                let target = if target.is_empty() {
                    "/".to_owned()
                } else {
                    target
                };
                source.copy(src, &dest_at(target), exclude.as_ref())?;
            }
            if let Some(dl) = c.downloads {
                // Downloaded files belong to root (or `--chown`), as context files do.
                let root = SourceRoot::open_dir(&dl.dir, "download")?;
                for (_, file, name) in &dl.files {
                    let src = root.resolve(std::slice::from_ref(file))?;
                    let target = match (dest_is_dir, name.is_empty()) {
                        (true, false) => join_path(&dest_path, name),
                        (true, true) => {
                            return Err(ExecError::Input(format!(
                                "ADD: cannot determine a file name from the URL for the directory {dest_path}; name the file in the destination"
                            )));
                        }
                        (false, _) => dest_path.clone(),
                    };
                    for s in &src {
                        root.copy(s, &dest_at(target.clone()), None)?;
                    }
                }
            }
            for inline in c.contents {
                let data = if inline.expand {
                    expand_heredoc(&inline.data, scope)
                        .map_err(|e| ExecError::Input(e.to_string()))?
                } else {
                    inline.data.clone()
                };
                let path = if dest_is_dir {
                    join_path(&dest_path, &inline.name)
                } else {
                    dest_path.clone()
                };
                dest_at(path.clone()).write_file(&path, data.as_bytes())?;
            }
        }
        let layer = work.commit(&state.diff_ids())?;
        Ok(self.push(state, layer))
    }
}

/// The copy-on-write layer of a writable `RUN --mount=type=bind`: unmounted and removed
/// when dropped.
struct Scratch {
    dir: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    merged: PathBuf,
}

impl Scratch {
    fn new(dir: PathBuf) -> Result<Scratch, ExecError> {
        let s = Scratch {
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("merged"),
            dir,
        };
        for d in [&s.upper, &s.work, &s.merged] {
            std::fs::create_dir_all(d).map_err(ExecError::io(d))?;
        }
        Ok(s)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.merged, rustix::mount::UnmountFlags::DETACH);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a `COPY` or `ADD` copies.
struct CopySources<'a> {
    from: Option<&'a str>,
    paths: &'a [String],
    /// `ADD <url>` files, already downloaded.
    downloads: Option<&'a Downloads>,
    contents: &'a [crate::ast::InlineSource],
    dest: &'a str,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
    exclude: &'a [String],
    parents: bool,
    /// `ADD`: local tar archives are extracted.
    extract: bool,
}

/// The sources of an `ADD` that are in the context (not URLs).
fn local_sources(a: &crate::ast::Add) -> Vec<String> {
    a.sources
        .iter()
        .filter(|s| !is_remote(s))
        .cloned()
        .collect()
}

fn is_remote(s: &str) -> bool {
    s.starts_with("http://")
        || s.starts_with("https://")
        || s.starts_with("git@")
        || s.ends_with(".git")
}

fn exclude_matcher(patterns: &[String]) -> Result<Option<Ignore>, ExecError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    Ignore::from_patterns(patterns.iter().map(String::as_str))
        .map(Some)
        .map_err(|k| ExecError::Input(format!("--exclude: {k}")))
}

fn open_root(dir: &Path) -> Result<OwnedFd, ExecError> {
    rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ExecError::io(dir)(e.into()))
}

/// Bounded reads of small files (`.dockerignore`).
trait TakeLimited {
    fn take_limited(self) -> std::io::Take<std::fs::File>;
}

impl TakeLimited for std::fs::File {
    fn take_limited(self) -> std::io::Take<std::fs::File> {
        std::io::Read::take(self, 1 << 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_join_the_workdir_and_keep_a_trailing_slash() {
        assert_eq!(abs_dest("/app", "x"), "/app/x");
        assert_eq!(abs_dest("/app", "x/"), "/app/x/");
        assert_eq!(abs_dest("/app", "."), "/app/");
        assert_eq!(abs_dest("/app", "/etc/../opt/"), "/opt/");
        assert_eq!(abs_dest("/", "./"), "/");
    }

    #[test]
    fn chmod_is_octal() {
        assert_eq!(parse_chmod("755").unwrap(), 0o755);
        assert_eq!(parse_chmod("0644").unwrap(), 0o644);
        assert!(parse_chmod("u+x").is_err());
        assert!(parse_chmod("77777").is_err());
    }

    #[test]
    fn keys_chain() {
        let a = next_key("p", "RUN x");
        assert_ne!(a, next_key("q", "RUN x"));
        assert_ne!(a, next_key("p", "RUN y"));
        assert_eq!(a, next_key("p", "RUN x"));
    }
}
