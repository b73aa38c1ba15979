//! `run`, `create`, `start` and `attach`: creating containers and attaching the local stdio
//! to them (raw terminal, resizes, signal proxying, exit status).

use berth_api::client::{Client, ClientError, RequestBody, query};
use berth_api::models::{ContainerCreateRequest, ContainerCreateResponse, ContainerInspect};

use super::seg;
use crate::args::{AttachArgs, ContainerOpts, CreateArgs, RunArgs, StartArgs};
use crate::error::{CliError, Result};
use crate::opts::{build_create, split_reference};
use crate::stdio::{self, SessionEnd};
use crate::tty;

/// Docker's "the input device is not a TTY".
fn check_tty(attach_stdin: bool, tty: bool) -> Result<()> {
    if tty && attach_stdin && !tty::stdin_is_tty() {
        return Err(CliError::Precondition(
            "the input device is not a TTY".to_owned(),
        ));
    }
    Ok(())
}

/// The image reference with Docker's default tag.
fn with_tag(image: &str) -> String {
    let (name, tag) = split_reference(image);
    if tag.is_empty() && !image.contains('@') {
        format!("{name}:latest")
    } else {
        image.to_owned()
    }
}

/// `POST /images/create?fromImage=` (with the registry's stored credentials), progress on
/// stderr.
async fn pull(client: &Client, image: &str, platform: Option<&str>, quiet: bool) -> Result<()> {
    super::registry::pull_for_create(client, image, platform, quiet).await
}

/// Creates the container (pulling a missing image as Docker does) and returns its id.
async fn create_container(
    client: &Client,
    opts: &ContainerOpts,
    req: &ContainerCreateRequest,
) -> Result<String> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(n) = &opts.name {
        pairs.push(("name", n));
    }
    if let Some(p) = &opts.platform {
        pairs.push(("platform", p));
    }
    let path = format!("/containers/create?{}", query(&pairs));
    let fetch = || {
        pull(
            client,
            &req.config.image,
            opts.platform.as_deref(),
            opts.quiet,
        )
    };
    if opts.pull == "always" {
        fetch().await?;
    }
    let resp: ContainerCreateResponse = match client.post(&path, Some(req)).await {
        Ok(r) => r,
        Err(e) if is_missing_image(&e) && opts.pull != "never" => {
            eprintln!(
                "Unable to find image '{}' locally",
                with_tag(&req.config.image)
            );
            fetch().await?;
            client.post(&path, Some(req)).await?
        }
        Err(e) => return Err(e.into()),
    };
    for w in &resp.warnings {
        eprintln!("WARNING: {w}");
    }
    if let Some(f) = &opts.cidfile {
        std::fs::write(f, &resp.id).map_err(|e| {
            CliError::Precondition(format!("failed to write the container ID to the file: {e}"))
        })?;
    }
    Ok(resp.id)
}

fn is_missing_image(e: &ClientError) -> bool {
    matches!(e, ClientError::Daemon { status: 404, message } if message.contains("No such image"))
}

/// `create`.
pub async fn create(client: &Client, a: CreateArgs) -> Result<i32> {
    if let Some(f) = &a.opts.cidfile
        && std::path::Path::new(f).exists()
    {
        return Err(CliError::Precondition(format!(
            "container ID file found, make sure the other container isn't running or delete {f}"
        )));
    }
    let req = build_create(&a.opts, &a.image, &a.command, true)?;
    let mut req = req;
    // `create` attaches like a foreground `run` would, for a later `start -a`.
    let (i, o, e) = crate::opts::attach_streams(&a.opts, false)?;
    req.config.attach_stdin = i;
    req.config.attach_stdout = o;
    req.config.attach_stderr = e;
    req.config.stdin_once = a.opts.interactive && i;
    let id = create_container(client, &a.opts, &req).await?;
    outln!("{id}");
    Ok(0)
}

/// `run`.
pub async fn run(client: &Client, a: RunArgs) -> Result<i32> {
    if let Some(f) = &a.opts.cidfile
        && std::path::Path::new(f).exists()
    {
        return Err(CliError::Precondition(format!(
            "container ID file found, make sure the other container isn't running or delete {f}"
        )));
    }
    let mut req = build_create(&a.opts, &a.image, &a.command, a.detach)?;
    if req.config.tty && !a.detach {
        req.host_config.console_size = tty::size().map(|(h, w)| [u32::from(h), u32::from(w)]);
    }
    let attach_stdin = req.config.attach_stdin;
    let tty_mode = req.config.tty;
    if !a.detach {
        check_tty(attach_stdin, tty_mode)?;
    }
    let id = create_container(client, &a.opts, &req).await?;
    let start_path = format!("/containers/{}/start", seg(&id));

    if a.detach {
        client
            .post_empty(&start_path)
            .await
            .map_err(CliError::Start)?;
        outln!("{id}");
        return Ok(0);
    }

    let attach = Attach {
        id: &id,
        stdin: attach_stdin,
        stdout: req.config.attach_stdout,
        stderr: req.config.attach_stderr,
        tty: tty_mode,
        detach_keys: a.detach_keys.as_deref(),
        sig_proxy: a.sig_proxy && !tty_mode,
        start: Some(&start_path),
        wait: if a.opts.rm { "removed" } else { "next-exit" },
    };
    let code = attach.run(client).await?;
    Ok(code.map(|c| c as i32).unwrap_or(0))
}

/// An attached session on a container.
struct Attach<'a> {
    id: &'a str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    detach_keys: Option<&'a str>,
    sig_proxy: bool,
    /// Start the container once attached (`run`, `start -a`).
    start: Option<&'a str>,
    /// The `wait` condition giving the exit status.
    wait: &'a str,
}

impl Attach<'_> {
    /// Attaches, optionally starts, pumps stdio, and returns the exit status (`None` when
    /// the user detached).
    async fn run(&self, client: &Client) -> Result<Option<i64>> {
        let mut pairs = vec![("stream", "1")];
        if self.stdin {
            pairs.push(("stdin", "1"));
        }
        if self.stdout {
            pairs.push(("stdout", "1"));
        }
        if self.stderr {
            pairs.push(("stderr", "1"));
        }
        if let Some(k) = self.detach_keys {
            pairs.push(("detachKeys", k));
        }
        let path = format!("/containers/{}/attach?{}", seg(self.id), query(&pairs));
        let attached = self.stdin || self.stdout || self.stderr;
        let hijacked = if attached {
            Some(
                client
                    .hijack(hyper::Method::POST, &path, RequestBody::Empty)
                    .await?,
            )
        } else {
            None
        };
        let wait = stdio::begin_wait(client, self.id, self.wait).await?;
        if let Some(start) = self.start {
            client.post_empty(start).await.map_err(CliError::Start)?;
        }
        let raw = if self.tty && self.stdin && tty::stdin_is_tty() {
            Some(tty::RawMode::enable()?)
        } else {
            None
        };
        let resize_path = format!("/containers/{}/resize", seg(self.id));
        let resize = async {
            if self.tty && tty::stdout_is_tty() {
                stdio::track_resize(client, &resize_path).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let signals = async {
            if self.sig_proxy {
                stdio::proxy_signals(client, self.id).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let session = async {
            match hijacked {
                Some(h) => stdio::session(h, self.tty, self.stdin, self.detach_keys).await,
                None => Ok(SessionEnd::Closed),
            }
        };
        let result = tokio::select! {
            r = session => r,
            () = resize => Ok(SessionEnd::Closed),
            () = signals => Ok(SessionEnd::Closed),
        };
        drop(raw);
        if result? == SessionEnd::Detached {
            return Ok(None);
        }
        stdio::finish(client, self.id, Some(wait)).await
    }
}

/// `start`.
pub async fn start(client: &Client, a: StartArgs) -> Result<i32> {
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            return Err(CliError::Precondition(
                "you cannot start and attach multiple containers at once".to_owned(),
            ));
        }
        let name = a.containers.first().map(String::as_str).unwrap_or_default();
        let c: ContainerInspect = client
            .get(&format!("/containers/{}/json", seg(name)))
            .await?;
        let stdin = a.interactive && c.config.open_stdin;
        check_tty(stdin, c.config.tty)?;
        let start_path = format!("/containers/{}/start", seg(&c.id));
        let attach = Attach {
            id: &c.id,
            stdin,
            stdout: true,
            stderr: true,
            tty: c.config.tty,
            detach_keys: a.detach_keys.as_deref(),
            sig_proxy: !c.config.tty,
            start: Some(&start_path),
            wait: if c.host_config.auto_remove {
                "removed"
            } else {
                "next-exit"
            },
        };
        let code = attach.run(client).await?;
        return Ok(code.map(|c| c as i32).unwrap_or(0));
    }
    let mut failed = Vec::new();
    for name in &a.containers {
        match client
            .post_empty(&format!("/containers/{}/start", seg(name)))
            .await
        {
            Ok(()) => outln!("{name}"),
            Err(e) => {
                eprintln!("{e}");
                failed.push(name.clone());
            }
        }
    }
    if failed.is_empty() {
        return Ok(0);
    }
    Err(CliError::Precondition(format!(
        "Error: failed to start containers: {}",
        failed.join(", ")
    )))
}

/// `attach`.
pub async fn attach(client: &Client, a: AttachArgs) -> Result<i32> {
    let c: ContainerInspect = client
        .get(&format!("/containers/{}/json", seg(&a.container)))
        .await?;
    if !c.state.running {
        return Err(CliError::Precondition(
            "You cannot attach to a stopped container, start it first".to_owned(),
        ));
    }
    if c.state.paused {
        return Err(CliError::Precondition(
            "You cannot attach to a paused container, unpause it first".to_owned(),
        ));
    }
    let stdin = !a.no_stdin && c.config.open_stdin;
    check_tty(stdin, c.config.tty)?;
    let attach = Attach {
        id: &c.id,
        stdin,
        stdout: true,
        stderr: true,
        tty: c.config.tty,
        detach_keys: a.detach_keys.as_deref(),
        sig_proxy: a.sig_proxy && !c.config.tty,
        start: None,
        wait: "not-running",
    };
    match attach.run(client).await? {
        Some(code) => Ok(code as i32),
        None => {
            // As Docker's CLI: detaching from `attach` is reported and exits 1.
            eprintln!("read escape sequence");
            Err(CliError::Exit(1))
        }
    }
}
