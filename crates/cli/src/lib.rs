//! `berth`: the Docker-compatible command line, a client of the Engine API that `berthd`
//! serves on a unix socket.
//!
//! [`args`] is the grammar (Docker's commands and flags), [`opts`] turns flag values into API
//! bodies, [`commands`] holds one module per command group, [`stdio`] and [`tty`] connect the
//! local terminal to attach/exec sessions, and [`template`]/[`format`] reproduce Docker's
//! `--format` templates and table output. [`auth`] keeps registry logins where the docker CLI
//! keeps them, [`reference`] splits image references and [`progress`] shows pull/push
//! progress streams. Exit statuses follow Docker: the container's own
//! status, 125 for flag and daemon errors of `run`, 126/127 when the command cannot run.

#![forbid(unsafe_code)]

/// `println!` that ignores a closed stdout (`berth ps | head`) instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// `print!` that ignores a closed stdout.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        let _ = write!(o, $($t)*);
        let _ = o.flush();
    }};
}

pub mod args;
pub mod auth;
pub mod commands;
pub mod error;
pub mod format;
pub mod opts;
pub mod progress;
pub mod reference;
pub mod stdio;
pub mod template;
pub mod tty;

use berth_api::client::{Client, resolve_host};
use clap::error::ErrorKind;

use crate::args::{Cli, Cmd};
use crate::commands::{
    build, container, cp, exec, image, network, registry, run, stats, system, transfer, volume,
};
use crate::error::{CliError, Result, run_exit_code};

/// Runs the CLI with `args` (`args[0]` is the program name) and returns the exit status.
pub fn main(args: Vec<String>) -> i32 {
    let cli = match Cli::parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return parse_error_code(&e);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let code = rt.block_on(dispatch(cli));
    // Blocked readers (stdin) must not hold the exit up.
    rt.shutdown_background();
    code
}

/// Docker's status for a command line that did not parse: 0 for help, 125 otherwise.
fn parse_error_code(e: &clap::Error) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
        _ => 125,
    }
}

/// Which command runs, for error reporting.
fn command_name(cmd: &Cmd) -> Option<&'static str> {
    match cmd {
        Cmd::Run(_) => Some("run"),
        Cmd::Create(_) => Some("create"),
        _ => None,
    }
}

async fn dispatch(cli: Cli) -> i32 {
    let host = resolve_host(cli.global.host.as_deref());
    if let Some(dir) = cli.global.config.as_deref().filter(|d| !d.is_empty()) {
        auth::set_config_dir(dir.into());
    }
    let cmd = match cli.command {
        Cmd::Container(c) => c.into_cmd(),
        Cmd::Image(c) => c.into_cmd(),
        other => other,
    };
    let run_like = command_name(&cmd);
    let result = match Client::new(&host) {
        Ok(client) => execute(&client, cmd).await,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(code) => code,
        Err(e) if e.is_silent() => e.exit_code(),
        Err(e) => match run_like {
            Some(name) => {
                let code = match &e {
                    CliError::Start(inner) => run_exit_code(&inner.to_string()),
                    CliError::Precondition(_) => 1,
                    _ => 125,
                };
                if let CliError::Precondition(msg) = &e {
                    eprintln!("berth: {msg}");
                } else {
                    eprintln!("berth: {e}\nSee 'berth {name} --help'.");
                }
                code
            }
            None => {
                eprintln!("{e}");
                e.exit_code()
            }
        },
    }
}

async fn execute(client: &Client, cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Run(a) => run::run(client, a).await,
        Cmd::Create(a) => run::create(client, a).await,
        Cmd::Start(a) => run::start(client, a).await,
        Cmd::Attach(a) => run::attach(client, a).await,
        Cmd::Stop(a) => container::stop(client, a, "stop").await,
        Cmd::Restart(a) => container::stop(client, a, "restart").await,
        Cmd::Kill(a) => container::kill(client, a).await,
        Cmd::Rm(a) => container::rm(client, a).await,
        Cmd::Ps(a) => container::ps(client, a).await,
        Cmd::Logs(a) => container::logs(client, a).await,
        Cmd::Exec(a) => exec::exec(client, a).await,
        Cmd::Inspect(a) => container::inspect(client, a).await,
        Cmd::Wait(a) => container::wait(client, a).await,
        Cmd::Top(a) => container::top(client, a).await,
        Cmd::Stats(a) => stats::stats(client, a).await,
        Cmd::Cp(a) => cp::cp(client, a).await,
        Cmd::Diff(a) => cp::diff(client, a).await,
        Cmd::Port(a) => container::port(client, a).await,
        Cmd::Export(a) => cp::export(client, a).await,
        Cmd::ContainerPrune(a) => container::prune(client, a).await,
        Cmd::ImagePrune(a) => system::prune(client, a, false).await,
        Cmd::System(crate::args::SystemCmd::Prune(a)) => system::prune(client, a, true).await,
        Cmd::Update(a) => container::update(client, a).await,
        Cmd::Pause(a) => container::pause(client, a, "pause").await,
        Cmd::Unpause(a) => container::pause(client, a, "unpause").await,
        Cmd::Rename(a) => container::rename(client, a).await,
        Cmd::Import(a) => image::import(client, a).await,
        Cmd::Commit(a) => transfer::commit(client, a).await,
        Cmd::Save(a) => transfer::save(client, a).await,
        Cmd::Load(a) => transfer::load(client, a).await,
        Cmd::History(a) => transfer::history(client, a).await,
        Cmd::Build(a) => build::build(client, a).await,
        Cmd::Builder(crate::args::BuilderCmd::Prune(a)) => build::prune(client, a).await,
        Cmd::Images(a) => image::images(client, a).await,
        Cmd::Tag(a) => image::tag(client, a).await,
        Cmd::Rmi(a) => image::rmi(client, a).await,
        Cmd::Pull(a) => registry::pull(client, a).await,
        Cmd::Push(a) => registry::push(client, a).await,
        Cmd::Login(a) => registry::login(client, a).await,
        Cmd::Search(a) => registry::search(client, a).await,
        Cmd::Logout(a) => registry::logout(a),
        Cmd::Version(a) => system::version(client, a).await,
        Cmd::Info(a) => system::info(client, a).await,
        Cmd::System(crate::args::SystemCmd::Info(a)) => system::info(client, a).await,
        Cmd::System(crate::args::SystemCmd::Df(a)) => system::df(client, a).await,
        Cmd::Events(a) | Cmd::System(crate::args::SystemCmd::Events(a)) => {
            system::events(client, a).await
        }
        Cmd::Container(c) => Box::pin(execute(client, c.into_cmd())).await,
        Cmd::Image(c) => Box::pin(execute(client, c.into_cmd())).await,
        Cmd::Volume(c) => volume::execute(client, c).await,
        Cmd::Network(c) => network::execute(client, c).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn grammar_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_flags_exit_125() {
        let code = |v: &[&str]| {
            Cli::try_parse_from(v)
                .map(|_| -1)
                .unwrap_or_else(|e| parse_error_code(&e))
        };
        assert_eq!(code(&["berth", "run", "--bogus", "x"]), 125);
        assert_eq!(code(&["berth", "run"]), 125);
        assert_eq!(code(&["berth", "ps", "--help"]), 0);
        assert_eq!(code(&["berth", "run", "--help"]), 0);
    }

    #[test]
    fn aliases_parse() {
        let parse = |v: &[&str]| Cli::try_parse_from(v).map(|c| c.command);
        assert!(matches!(
            parse(&["berth", "container", "ls", "-a"]),
            Ok(Cmd::Container(_))
        ));
        assert!(matches!(
            parse(&["berth", "image", "rm", "x"]),
            Ok(Cmd::Image(_))
        ));
        assert!(matches!(
            parse(&["berth", "-H", "unix:///x", "ps"]),
            Ok(Cmd::Ps(_))
        ));
        assert!(matches!(
            parse(&["berth", "exec", "-it", "c", "sh", "-c", "x"]),
            Ok(Cmd::Exec(_))
        ));
        assert!(matches!(
            parse(&["berth", "logs", "-f", "--tail", "5", "c"]),
            Ok(Cmd::Logs(_))
        ));
        assert!(matches!(
            parse(&["berth", "stop", "-t", "1", "a", "b"]),
            Ok(Cmd::Stop(_))
        ));
        assert!(matches!(
            parse(&["berth", "run", "--sig-proxy=false", "img"]),
            Ok(Cmd::Run(_))
        ));
        assert!(parse(&["berth", "run", "--help"]).is_err());
    }
}
