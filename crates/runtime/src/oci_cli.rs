//! `berth runtime`: the embedded runtime as an OCI runtime CLI, so other engines can call it
//! the way they call runc: `create`, `start`, `state`, `kill`, `delete`, `run`, with
//! `--root`, `--bundle`, `--pid-file`, `--console-socket`. runc's `--log`, `--log-format` and
//! `--systemd-cgroup` are accepted (logs go to stderr; cgroups are always cgroupfs).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::libcontainer_rt::Libcontainer;
use crate::{Runtime, RuntimeError, Status, Stdio};

const USAGE: &str = "Usage: berth runtime [--root DIR] COMMAND [OPTIONS] ID

Commands:
  create   --bundle DIR [--pid-file FILE] [--console-socket SOCK] ID
  start    ID
  run      --bundle DIR [--pid-file FILE] [--console-socket SOCK] [--detach] ID
  state    ID
  kill     [--all] ID [SIGNAL]
  delete   [--force] ID
";

/// Default state root, as runc's `/run/runc`.
const DEFAULT_ROOT: &str = "/run/berth-runtime";

#[derive(Default)]
struct Opts {
    root: Option<PathBuf>,
    bundle: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    console_socket: Option<PathBuf>,
    detach: bool,
    all: bool,
    force: bool,
    positional: Vec<String>,
}

fn parse(args: &[String]) -> Result<(String, Opts), String> {
    let mut o = Opts::default();
    let mut command = None;
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or(format!("{name} needs a value"))
        };
        match flag {
            "--root" => o.root = Some(value("--root")?.into()),
            "--bundle" | "-b" => o.bundle = Some(value("--bundle")?.into()),
            "--pid-file" => o.pid_file = Some(value("--pid-file")?.into()),
            "--console-socket" => o.console_socket = Some(value("--console-socket")?.into()),
            "--log" | "--log-format" | "--criu" => {
                value(flag)?;
            }
            "--systemd-cgroup" | "--debug" | "--no-pivot" | "--no-new-keyring" => {}
            "--detach" | "-d" => o.detach = true,
            "--all" | "-a" => o.all = true,
            "--force" | "-f" => o.force = true,
            "--help" | "-h" => return Err(String::new()),
            f if f.starts_with('-')
                && f.len() > 1
                && !f[1..].chars().all(|c| c.is_ascii_digit()) =>
            {
                return Err(format!("unknown flag: {f}"));
            }
            _ if command.is_none() => command = Some(a.clone()),
            _ => o.positional.push(a.clone()),
        }
    }
    command.map(|c| (c, o)).ok_or_else(String::new)
}

/// Runs the CLI; `args[0]` is the program or subcommand name. Returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    let (command, opts) = match parse(args.get(1..).unwrap_or_default()) {
        Ok(v) => v,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("berth runtime: {e}");
            }
            eprint!("{USAGE}");
            return if e.is_empty() { 0 } else { 2 };
        }
    };
    match run(&command, &opts) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth runtime {command}: {e}");
            1
        }
    }
}

fn id_of(o: &Opts) -> Result<&str, RuntimeError> {
    o.positional
        .first()
        .map(String::as_str)
        .ok_or_else(|| RuntimeError::InvalidSpec("a container id is required".into()))
}

fn own_stdio(console: &Option<PathBuf>) -> Result<Stdio, RuntimeError> {
    if let Some(socket) = console {
        return Ok(Stdio::Console {
            socket: socket.clone(),
        });
    }
    let dup = |fd: std::os::fd::BorrowedFd<'_>| -> Result<OwnedFd, RuntimeError> {
        rustix::io::fcntl_dupfd_cloexec(fd, 3)
            .map_err(|e| RuntimeError::io("dup", "stdio")(e.into()))
    };
    Ok(Stdio::Pipes {
        stdin: Some(dup(std::io::stdin().as_fd())?),
        stdout: dup(std::io::stdout().as_fd())?,
        stderr: dup(std::io::stderr().as_fd())?,
    })
}

fn create(rt: &Libcontainer, o: &Opts) -> Result<i32, RuntimeError> {
    let id = id_of(o)?;
    let bundle = match &o.bundle {
        Some(b) => b.clone(),
        None => std::env::current_dir().map_err(RuntimeError::io("getcwd", "."))?,
    };
    let bundle = std::fs::canonicalize(&bundle).map_err(RuntimeError::io("resolve", &bundle))?;
    let pid = rt.create(id, &bundle, own_stdio(&o.console_socket)?)?;
    if let Some(p) = &o.pid_file {
        write_pid(p, pid)?;
    }
    Ok(pid)
}

fn write_pid(path: &Path, pid: i32) -> Result<(), RuntimeError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(RuntimeError::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(RuntimeError::io("rename", path))
}

fn run(command: &str, o: &Opts) -> Result<i32, RuntimeError> {
    let root = o.root.clone().unwrap_or_else(|| DEFAULT_ROOT.into());
    let rt = Libcontainer::new(&root);
    match command {
        "create" => create(&rt, o).map(|_| 0),
        "start" => rt.start(id_of(o)?).map(|_| 0),
        "run" => {
            let id = id_of(o)?.to_owned();
            // Become the reaper of the container's init before it exists.
            let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
            let pid = create(&rt, o)?;
            rt.start(&id)?;
            if o.detach {
                return Ok(0);
            }
            let code = wait_for(pid);
            let _ = rt.delete(&id, true);
            Ok(code)
        }
        "state" => {
            let id = id_of(o)?;
            let (status, pid) = rt.state(id)?;
            let status = match status {
                Status::Creating => "creating",
                Status::Created => "created",
                Status::Running => "running",
                Status::Paused => "paused",
                Status::Stopped => "stopped",
            };
            let out = serde_json::json!({
                "ociVersion": "1.0.2",
                "id": id,
                "status": status,
                "pid": pid.unwrap_or(0),
                "bundle": rt.bundle(id),
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            Ok(0)
        }
        "kill" => {
            let id = id_of(o)?;
            let sig = o.positional.get(1).map_or("SIGTERM", String::as_str);
            rt.kill(id, parse_signal(sig)?, o.all).map(|_| 0)
        }
        "delete" => rt.delete(id_of(o)?, o.force).map(|_| 0),
        other => Err(RuntimeError::InvalidSpec(format!(
            "unknown command {other:?}"
        ))),
    }
}

/// Waits for `pid` (and reaps any other child that ends first); returns its exit code.
fn wait_for(pid: i32) -> i32 {
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some((p, status))) if p.as_raw_nonzero().get() == pid => {
                return status
                    .exit_status()
                    .or_else(|| status.terminating_signal().map(|s| 128 + s))
                    .unwrap_or(1);
            }
            Ok(_) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return 1,
        }
    }
}

/// `SIGKILL`, `KILL`, `9`.
pub fn parse_signal(s: &str) -> Result<i32, RuntimeError> {
    if let Ok(n) = s.parse::<i32>()
        && (1..=64).contains(&n)
    {
        return Ok(n);
    }
    let name = s.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    const NAMES: [(&str, i32); 31] = [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ILL", 4),
        ("TRAP", 5),
        ("ABRT", 6),
        ("IOT", 6),
        ("BUS", 7),
        ("FPE", 8),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("STKFLT", 16),
        ("CHLD", 17),
        ("CONT", 18),
        ("STOP", 19),
        ("TSTP", 20),
        ("TTIN", 21),
        ("TTOU", 22),
        ("URG", 23),
        ("XCPU", 24),
        ("XFSZ", 25),
        ("VTALRM", 26),
        ("PROF", 27),
        ("WINCH", 28),
        ("IO", 29),
        ("PWR", 30),
    ];
    NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .or(if name == "SYS" { Some(31) } else { None })
        .ok_or_else(|| RuntimeError::InvalidSpec(format!("invalid signal {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse() {
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn flags_parse() {
        let args: Vec<String> = [
            "--root",
            "/r",
            "create",
            "--bundle=/b",
            "--pid-file",
            "/p",
            "c1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let (cmd, o) = parse(&args).unwrap();
        assert_eq!(cmd, "create");
        assert_eq!(o.root.unwrap(), PathBuf::from("/r"));
        assert_eq!(o.bundle.unwrap(), PathBuf::from("/b"));
        assert_eq!(o.positional, vec!["c1".to_owned()]);
        assert!(parse(&["create".into(), "--bogus".into()]).is_err());
    }
}
