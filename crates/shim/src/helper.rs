//! The shim's runtime helper, `berth-shim-runtime`: the container runtime in a process of its
//! own.
//!
//! The shim lives as long as its container, so it stays small: it never maps libcontainer (nor
//! even the OCI spec's validating deserializers). Each runtime operation it needs (create,
//! start, kill `--all`, pause, resume, state; exec and delete when the shim cannot do them
//! itself, see `enter` and `teardown`) runs in a short-lived helper instead
//! ([`HelperRuntime`]), which opens the [`berth_runtime::Runtime`] the shim's configuration
//! names: the embedded libcontainer or an OCI runtime binary. The helper's stdin is one end of a
//! socketpair: the shim sends a `Hello` line naming the runtime, then one JSON `Call` line per
//! operation, with the process's stdio fds attached as `SCM_RIGHTS`; the helper answers one JSON
//! `Reply` line per call, and serves calls until the shim closes its end.
//!
//! Processes the runtime forks (the container's init, exec'd processes) are the helper's
//! children; when the helper exits they are reparented to the shim, a child subreaper, which
//! reaps them. A helper that created a container leaves as soon as that container's init dies,
//! so an init never waits as a zombie on a helper; the shim keeps that helper for the `start`
//! (one process start per `run`, not two) and closes it right after.
//!
//! Like the shim, the helper forks container processes, so it must run from the engine's
//! read-only bind mount (CVE-2019-5736): the shim finds it next to its own executable, and pins
//! it with an `O_PATH` fd at start so an upgrade on disk never pairs it with another version.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use berth_runtime::{Runtime, RuntimeError, RuntimeKind, Status, Stdio};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The helper's file name; it lives next to `berth-shim`.
pub const HELPER_BINARY: &str = "berth-shim-runtime";

/// The most fds one call carries (stdin, stdout, stderr).
const MAX_FDS: usize = 3;
/// A call or reply longer than this is refused (an exec's process spec is the largest).
const MAX_LINE: usize = 16 << 20;

/// The first line of a session: which runtime the helper opens.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    runtime: RuntimeKind,
    /// The runtime's state directory.
    root: PathBuf,
}

/// One runtime operation, as the [`Runtime`] trait names them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Call {
    Create {
        id: String,
        bundle: PathBuf,
        stdio: WireStdio,
    },
    Start {
        id: String,
    },
    Exec {
        id: String,
        /// An OCI process spec; the helper, not the shim, decodes and checks it.
        process: serde_json::Value,
        stdio: WireStdio,
    },
    Kill {
        id: String,
        signal: i32,
        all: bool,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    Delete {
        id: String,
        force: bool,
    },
    State {
        id: String,
    },
}

/// How a process's stdio travels: a console socket path, or pipe ends attached to the call in
/// the order stdin (when `stdin`), stdout, stderr.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireStdio {
    Console { socket: PathBuf },
    Pipes { stdin: bool },
}

/// The answer to one [`Call`].
#[derive(Debug, Default, Serialize, Deserialize)]
struct Reply {
    /// The runtime's error, worded as the runtime worded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
}

impl Call {
    /// How many fds travel with the call.
    fn fd_count(&self) -> usize {
        match self {
            Call::Create { stdio, .. } | Call::Exec { stdio, .. } => match stdio {
                WireStdio::Console { .. } => 0,
                WireStdio::Pipes { stdin: true } => 3,
                WireStdio::Pipes { stdin: false } => 2,
            },
            _ => 0,
        }
    }
}

/// One end of the shim <-> helper socket: JSON lines, fds as `SCM_RIGHTS` with the first byte
/// of the line they belong to. One read can return the end of one line and the start of the
/// next with its fds, so received fds queue up in order and each call takes as many as it says
/// it carries.
struct Channel {
    sock: UnixStream,
    /// Bytes received past the last complete line.
    buf: Vec<u8>,
    /// Fds received and not yet taken, oldest first.
    fds: VecDeque<OwnedFd>,
}

impl Channel {
    fn new(sock: UnixStream) -> Self {
        Self {
            sock,
            buf: Vec::new(),
            fds: VecDeque::new(),
        }
    }

    /// Takes the next `n` received fds.
    fn take_fds(&mut self, n: usize) -> Result<Vec<OwnedFd>, String> {
        if self.fds.len() < n {
            return Err(format!(
                "the call carries {n} fds, {} arrived",
                self.fds.len()
            ));
        }
        Ok(self.fds.drain(..n).collect())
    }

    fn send<T: Serialize>(&self, msg: &T, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let mut line = serde_json::to_vec(msg).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::other("too many fds for one call"));
        }
        let mut sent = loop {
            match rustix::net::sendmsg(
                &self.sock,
                &[IoSlice::new(&line)],
                &mut control,
                SendFlags::NOSIGNAL,
            ) {
                Ok(n) => break n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        };
        // The fds went with the first bytes; the rest of a long line follows on its own.
        while sent < line.len() {
            match rustix::net::send(&self.sock, &line[sent..], SendFlags::NOSIGNAL) {
                Ok(n) => sent += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Receives the next line (its fds queue up for [`Channel::take_fds`]); `None` at a clean
    /// end of stream.
    fn recv<T: DeserializeOwned>(&mut self) -> io::Result<Option<T>> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(io::Error::other);
            }
            if self.buf.len() > MAX_LINE {
                return Err(io::Error::other("line too long"));
            }
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let msg = match rustix::net::recvmsg(
                &self.sock,
                &mut [IoSliceMut::new(&mut chunk)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(m) => m,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            for m in control.drain() {
                if let RecvAncillaryMessage::ScmRights(received) = m {
                    self.fds.extend(received);
                }
            }
            if msg.bytes == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
            self.buf.extend_from_slice(&chunk[..msg.bytes]);
        }
    }
}

/// Splits a [`Stdio`] into its wire form and the fds that go with it.
fn wire_stdio(stdio: Stdio) -> (WireStdio, Vec<OwnedFd>) {
    match stdio {
        Stdio::Console { socket } => (WireStdio::Console { socket }, Vec::new()),
        Stdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            let has_stdin = stdin.is_some();
            let fds = stdin.into_iter().chain([stdout, stderr]).collect();
            (WireStdio::Pipes { stdin: has_stdin }, fds)
        }
    }
}

/// Puts a [`Stdio`] back together from its wire form and the fds received with it.
fn stdio_from_wire(wire: WireStdio, fds: Vec<OwnedFd>) -> Result<Stdio, String> {
    match wire {
        WireStdio::Console { socket } => {
            if !fds.is_empty() {
                return Err(format!("console stdio came with {} fds", fds.len()));
            }
            Ok(Stdio::Console { socket })
        }
        WireStdio::Pipes { stdin } => {
            let want = if stdin { 3 } else { 2 };
            if fds.len() != want {
                return Err(format!(
                    "pipe stdio needs {want} fds, the call carried {}",
                    fds.len()
                ));
            }
            let mut it = fds.into_iter();
            let stdin = if stdin { it.next() } else { None };
            match (it.next(), it.next()) {
                (Some(stdout), Some(stderr)) => Ok(Stdio::Pipes {
                    stdin,
                    stdout,
                    stderr,
                }),
                _ => Err("pipe stdio is missing stdout or stderr".into()),
            }
        }
    }
}

fn helper_io(e: io::Error) -> RuntimeError {
    RuntimeError::Io {
        context: format!("talking to {HELPER_BINARY}"),
        source: e,
    }
}

/// One running helper and the shim's end of its socket. Dropping it closes the socket (the
/// helper then exits) and waits for the helper.
struct Session {
    chan: Channel,
    child: Child,
}

impl Session {
    fn spawn(exe: BorrowedFd<'_>, hello: &Hello) -> Result<Self, RuntimeError> {
        let (ours, theirs) = UnixStream::pair().map_err(helper_io)?;
        // The helper's own diagnostics go where the shim's go (its log), never to the shim's
        // stdout, which is the engine's ready pipe until the container is created.
        let log = io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(helper_io)?;
        // `exe` is close-on-exec, but the kernel resolves the path before it closes any fd.
        let child = Command::new(format!("/proc/self/fd/{}", exe.as_raw_fd()))
            .arg0(HELPER_BINARY)
            .stdin(OwnedFd::from(theirs))
            .stdout(log)
            .spawn()
            .map_err(RuntimeError::io("start", HELPER_BINARY))?;
        let session = Self {
            chan: Channel::new(ours),
            child,
        };
        session.chan.send(hello, &[]).map_err(helper_io)?;
        Ok(session)
    }

    fn call(&mut self, call: &Call, fds: &[OwnedFd]) -> Result<Reply, RuntimeError> {
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        self.chan.send(call, &fds).map_err(helper_io)?;
        let reply: Reply = match self.chan.recv() {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(helper_io(io::Error::other(format!(
                    "{HELPER_BINARY} exited without answering"
                ))));
            }
            Err(e) => return Err(helper_io(e)),
        };
        match reply.error {
            // The helper runs the embedded runtime: its failures are libcontainer's, worded as
            // libcontainer's are in-process.
            Some(e) => Err(RuntimeError::Libcontainer(e)),
            None => Ok(reply),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.chan.sock.shutdown(std::net::Shutdown::Both);
        // The shim's reaper may have collected it already; then there is nothing to wait for.
        let _ = self.child.wait();
    }
}

/// A container runtime run in helper processes: the [`Runtime`] operations, except that an
/// exec's process spec stays JSON (the helper decodes it).
pub struct HelperRuntime {
    /// The helper binary, pinned at start (`O_PATH`, close-on-exec).
    exe: OwnedFd,
    hello: Hello,
    /// The helper that created the container, kept for its start.
    created: RefCell<Option<Session>>,
}

impl HelperRuntime {
    /// Finds the helper next to the running executable; it will open `runtime`, with its state
    /// in `root`.
    pub fn new(runtime: &RuntimeKind, root: &Path) -> Result<Self, RuntimeError> {
        let me = std::env::current_exe().map_err(RuntimeError::io("read", "/proc/self/exe"))?;
        Self::with_binary(&me.with_file_name(HELPER_BINARY), runtime, root)
    }

    /// Uses the helper binary at `path`.
    pub fn with_binary(
        path: &Path,
        runtime: &RuntimeKind,
        root: &Path,
    ) -> Result<Self, RuntimeError> {
        let exe = rustix::fs::open(
            path,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| RuntimeError::io("open", path)(e.into()))?;
        Ok(Self {
            exe,
            hello: Hello {
                runtime: runtime.clone(),
                root: root.to_owned(),
            },
            created: RefCell::new(None),
        })
    }

    fn session(&self) -> Result<Session, RuntimeError> {
        Session::spawn(self.exe.as_fd(), &self.hello)
    }

    /// Runs one call in a helper of its own.
    fn call(&self, call: &Call, fds: &[OwnedFd]) -> Result<Reply, RuntimeError> {
        self.session()?.call(call, fds)
    }
}

impl HelperRuntime {
    /// [`Runtime::create`]. The helper that created the container waits for its start.
    pub fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<i32, RuntimeError> {
        let (stdio, fds) = wire_stdio(stdio);
        let mut session = self.session()?;
        let reply = session.call(
            &Call::Create {
                id: id.to_owned(),
                bundle: bundle.to_owned(),
                stdio,
            },
            &fds,
        )?;
        let pid = reply
            .pid
            .ok_or_else(|| RuntimeError::Libcontainer("created container has no pid".into()))?;
        *self.created.borrow_mut() = Some(session);
        Ok(pid)
    }

    /// [`Runtime::start`].
    pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let session = self.created.borrow_mut().take();
        let mut session = match session {
            Some(s) => s,
            None => self.session()?,
        };
        session
            .call(&Call::Start { id: id.to_owned() }, &[])
            .map(drop)
    }

    /// [`Runtime::exec`], with the process spec as JSON.
    pub fn exec(
        &self,
        id: &str,
        process: &serde_json::Value,
        stdio: Stdio,
    ) -> Result<i32, RuntimeError> {
        let (stdio, fds) = wire_stdio(stdio);
        let reply = self.call(
            &Call::Exec {
                id: id.to_owned(),
                process: process.clone(),
                stdio,
            },
            &fds,
        )?;
        reply
            .pid
            .ok_or_else(|| RuntimeError::Libcontainer("exec reported no pid".into()))
    }

    /// [`Runtime::kill`].
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let call = Call::Kill {
            id: id.to_owned(),
            signal,
            all,
        };
        self.call(&call, &[]).map(drop)
    }

    /// [`Runtime::pause`].
    pub fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.call(&Call::Pause { id: id.to_owned() }, &[]).map(drop)
    }

    /// [`Runtime::resume`].
    pub fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.call(&Call::Resume { id: id.to_owned() }, &[])
            .map(drop)
    }

    /// [`Runtime::delete`].
    pub fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        // A helper still holding the created init lets it go first.
        drop(self.created.borrow_mut().take());
        let call = Call::Delete {
            id: id.to_owned(),
            force,
        };
        self.call(&call, &[]).map(drop)
    }

    /// [`Runtime::state`].
    pub fn state(&self, id: &str) -> Result<(Status, Option<i32>), RuntimeError> {
        let reply = self.call(&Call::State { id: id.to_owned() }, &[])?;
        let status = reply
            .status
            .ok_or_else(|| RuntimeError::Libcontainer("state reported no status".into()))?;
        Ok((status, reply.pid))
    }
}

/// Runs the helper, serving a session on stdin (a socket from `berth-shim`). Returns the exit
/// code.
pub fn main(args: Vec<String>) -> i32 {
    if args.len() > 1 {
        eprintln!("usage: {HELPER_BINARY} (internal: berth-shim starts it, its stdin a socket)");
        return 2;
    }
    // Dying with the shim, as the runtime did when it ran inside it: a helper must never go on
    // creating a container nobody supervises. (A shim that died before this is seen below: its
    // end of the socket is closed.)
    if let Err(e) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
    {
        eprintln!("{HELPER_BINARY}: parent death signal: {e}");
        return 1;
    }
    // Processes forked from here inherit our signal dispositions across their exec: nothing
    // may arrive ignored (whatever started the daemon may have ignored SIGQUIT or SIGINT, and
    // glibc's posix_spawn leaves its internal signals ignored), as in Docker's containers.
    crate::enter::default_signals();
    crate::supervisor::install_sigpipe_noop();
    let run = || -> io::Result<()> {
        let sock = UnixStream::from(io::stdin().as_fd().try_clone_to_owned()?);
        let mut chan = Channel::new(sock);
        let Some(hello) = chan.recv::<Hello>()? else {
            return Ok(());
        };
        let runtime = berth_runtime::open(&hello.runtime, &hello.root);
        serve(runtime.as_ref(), chan)
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{HELPER_BINARY}: {e}");
            1
        }
    }
}

/// Serves calls until the shim closes the socket, or until the init of a container created
/// here dies (so that it is reparented to the shim, which reaps it).
fn serve(runtime: &dyn Runtime, mut chan: Channel) -> io::Result<()> {
    let mut created_init: Option<OwnedFd> = None;
    loop {
        if let Some(pidfd) = &created_init {
            if !wait_call_or_exit(&chan, pidfd)? {
                return Ok(());
            }
        }
        let Some(call) = chan.recv::<Call>()? else {
            return Ok(());
        };
        if shim_gone(&chan) {
            return Ok(());
        }
        let is_create = matches!(call, Call::Create { .. });
        let reply = match chan
            .take_fds(call.fd_count())
            .and_then(|fds| dispatch(runtime, call, fds))
        {
            Ok(r) => r,
            Err(e) => Reply {
                error: Some(e),
                ..Reply::default()
            },
        };
        if is_create {
            if let Some(pid) = reply.pid.and_then(rustix::process::Pid::from_raw) {
                created_init =
                    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok();
            }
        }
        chan.send(&reply, &[])?;
    }
}

/// Whether the shim closed its end of the socket (it died, or dropped the session): calls it
/// sent before are never carried out then.
fn shim_gone(chan: &Channel) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::new(&chan.sock, PollFlags::RDHUP)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP)
}

/// Waits for the next call or for the init behind `pidfd` to die; true when a call (or the end
/// of the stream) is waiting.
fn wait_call_or_exit(chan: &Channel, pidfd: &OwnedFd) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, poll};
    loop {
        let mut fds = [
            PollFd::new(&chan.sock, PollFlags::IN),
            PollFd::new(pidfd, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if !fds[0].revents().is_empty() {
            return Ok(true);
        }
        if !fds[1].revents().is_empty() {
            return Ok(false);
        }
    }
}

fn dispatch(runtime: &dyn Runtime, call: Call, fds: Vec<OwnedFd>) -> Result<Reply, String> {
    let err = |e: RuntimeError| e.to_string();
    let pid = |pid: i32| Reply {
        pid: Some(pid),
        ..Reply::default()
    };
    let ok = |()| Reply::default();
    match call {
        Call::Create { id, bundle, stdio } => {
            let stdio = stdio_from_wire(stdio, fds)?;
            runtime.create(&id, &bundle, stdio).map(pid).map_err(err)
        }
        Call::Exec { id, process, stdio } => {
            let process: oci_spec::runtime::Process =
                serde_json::from_value(process).map_err(|e| format!("exec process: {e}"))?;
            let stdio = stdio_from_wire(stdio, fds)?;
            runtime.exec(&id, &process, stdio).map(pid).map_err(err)
        }
        Call::Start { id } => runtime.start(&id).map(ok).map_err(err),
        Call::Kill { id, signal, all } => runtime.kill(&id, signal, all).map(ok).map_err(err),
        Call::Pause { id } => runtime.pause(&id).map(ok).map_err(err),
        Call::Resume { id } => runtime.resume(&id).map(ok).map_err(err),
        Call::Delete { id, force } => runtime.delete(&id, force).map(ok).map_err(err),
        Call::State { id } => runtime
            .state(&id)
            .map(|(status, pid)| Reply {
                status: Some(status),
                pid,
                ..Reply::default()
            })
            .map_err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn calls_are_tagged_json() {
        let line = serde_json::to_string(&Call::Create {
            id: "c1".into(),
            bundle: "/b".into(),
            stdio: WireStdio::Pipes { stdin: true },
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"op":"create","id":"c1","bundle":"/b","stdio":{"pipes":{"stdin":true}}}"#
        );
        let reply: Reply = serde_json::from_str(r#"{"status":"paused","pid":7}"#).unwrap();
        assert_eq!(reply.status, Some(Status::Paused));
        assert_eq!(reply.pid, Some(7));
    }

    #[test]
    fn lines_carry_fds_and_split_reads() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut b = Channel::new(b);
        let (r, mut w) = std::io::pipe().unwrap();
        let long = "x".repeat(1 << 20);
        let id = long.clone();
        // A line longer than the socket's buffer: the sender blocks until the reader drains it.
        let sender = std::thread::spawn(move || {
            let a = Channel::new(a);
            let call = Call::Kill {
                id,
                signal: 9,
                all: true,
            };
            a.send(&call, &[r.as_fd()]).unwrap();
        });
        let call: Call = b.recv().unwrap().unwrap();
        sender.join().unwrap();
        assert!(matches!(call, Call::Kill { id, signal: 9, all: true } if id == long));
        assert!(b.take_fds(2).is_err());
        let mut fds = b.take_fds(1).unwrap();
        // The received fd is the pipe's read end, and close-on-exec.
        let flags = rustix::io::fcntl_getfd(&fds[0]).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        w.write_all(b"hi").unwrap();
        drop(w);
        let mut got = String::new();
        std::fs::File::from(fds.pop().unwrap())
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, "hi");
        // The sender's end closed with its thread.
        assert!(b.recv::<Call>().unwrap().is_none());
    }

    #[test]
    fn fds_read_with_an_earlier_line_wait_for_their_call() {
        let (a, b) = UnixStream::pair().unwrap();
        let (a, mut b) = (Channel::new(a), Channel::new(b));
        let (r, w) = std::io::pipe().unwrap();
        let hello = Hello {
            runtime: RuntimeKind::Embedded,
            root: "/run/x".into(),
        };
        a.send(&hello, &[]).unwrap();
        let (wire, fds) = wire_stdio(Stdio::Pipes {
            stdin: Some(OwnedFd::from(r)),
            stdout: OwnedFd::from(w.try_clone().unwrap()),
            stderr: OwnedFd::from(w),
        });
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        let create = Call::Create {
            id: "c".into(),
            bundle: "/b".into(),
            stdio: wire,
        };
        a.send(&create, &fds).unwrap();
        // Both lines are queued before the first read: it returns them (and the fds) at once.
        let got: Hello = b.recv().unwrap().unwrap();
        assert_eq!(got.root, Path::new("/run/x"));
        let call: Call = b.recv().unwrap().unwrap();
        assert_eq!(call.fd_count(), 3);
        assert_eq!(b.take_fds(3).unwrap().len(), 3);
    }

    #[test]
    fn stdio_round_trips_and_counts_fds() {
        let (r, w) = std::io::pipe().unwrap();
        let (r2, w2) = std::io::pipe().unwrap();
        let (wire, fds) = wire_stdio(Stdio::Pipes {
            stdin: None,
            stdout: OwnedFd::from(w),
            stderr: OwnedFd::from(w2),
        });
        assert!(matches!(wire, WireStdio::Pipes { stdin: false }));
        assert_eq!(fds.len(), 2);
        assert!(matches!(
            stdio_from_wire(wire, fds),
            Ok(Stdio::Pipes { stdin: None, .. })
        ));
        let one = vec![OwnedFd::from(r)];
        assert!(stdio_from_wire(WireStdio::Pipes { stdin: true }, one).is_err());
        let stray = vec![OwnedFd::from(r2)];
        let console = WireStdio::Console {
            socket: "/s".into(),
        };
        assert!(stdio_from_wire(console, stray).is_err());
    }

    /// A fake runtime that records what it was asked.
    struct Fake;
    impl Runtime for Fake {
        fn create(&self, id: &str, _: &Path, stdio: Stdio) -> Result<i32, RuntimeError> {
            match stdio {
                Stdio::Pipes { stdout, .. } => {
                    rustix::io::write(&stdout, id.as_bytes()).unwrap();
                    // A pid that outlives the test, since the helper watches a created init.
                    Ok(std::process::id() as i32)
                }
                Stdio::Console { .. } => Err(RuntimeError::NotFound(id.to_owned())),
            }
        }
        fn start(&self, _: &str) -> Result<(), RuntimeError> {
            Ok(())
        }
        fn exec(
            &self,
            _: &str,
            _: &oci_spec::runtime::Process,
            _: Stdio,
        ) -> Result<i32, RuntimeError> {
            Ok(43)
        }
        fn kill(&self, _: &str, _: i32, _: bool) -> Result<(), RuntimeError> {
            Ok(())
        }
        fn pause(&self, _: &str) -> Result<(), RuntimeError> {
            Ok(())
        }
        fn resume(&self, _: &str) -> Result<(), RuntimeError> {
            Ok(())
        }
        fn delete(&self, _: &str, _: bool) -> Result<(), RuntimeError> {
            Ok(())
        }
        fn state(&self, _: &str) -> Result<(Status, Option<i32>), RuntimeError> {
            Ok((Status::Running, Some(42)))
        }
    }

    #[test]
    fn calls_from_a_shim_that_is_gone_are_dropped() {
        let (a, b) = UnixStream::pair().unwrap();
        let shim = Channel::new(a);
        shim.send(&Call::State { id: "c1".into() }, &[]).unwrap();
        drop(shim);
        // Fake would answer State; the helper must not run it for nobody.
        struct Panics;
        impl Runtime for Panics {
            fn create(&self, _: &str, _: &Path, _: Stdio) -> Result<i32, RuntimeError> {
                unreachable!()
            }
            fn start(&self, _: &str) -> Result<(), RuntimeError> {
                unreachable!()
            }
            fn exec(
                &self,
                _: &str,
                _: &oci_spec::runtime::Process,
                _: Stdio,
            ) -> Result<i32, RuntimeError> {
                unreachable!()
            }
            fn kill(&self, _: &str, _: i32, _: bool) -> Result<(), RuntimeError> {
                unreachable!()
            }
            fn pause(&self, _: &str) -> Result<(), RuntimeError> {
                unreachable!()
            }
            fn resume(&self, _: &str) -> Result<(), RuntimeError> {
                unreachable!()
            }
            fn delete(&self, _: &str, _: bool) -> Result<(), RuntimeError> {
                unreachable!()
            }
            fn state(&self, _: &str) -> Result<(Status, Option<i32>), RuntimeError> {
                unreachable!()
            }
        }
        serve(&Panics, Channel::new(b)).unwrap();
    }

    #[test]
    fn serve_answers_calls_until_eof() {
        let (a, b) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || serve(&Fake, Channel::new(b)));
        let mut shim = Channel::new(a);
        let (mut out_r, out_w) = std::io::pipe().unwrap();
        let (_err_r, err_w) = std::io::pipe().unwrap();
        let (wire, fds) = wire_stdio(Stdio::Pipes {
            stdin: None,
            stdout: OwnedFd::from(out_w),
            stderr: OwnedFd::from(err_w),
        });
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        let create = Call::Create {
            id: "c1".into(),
            bundle: "/b".into(),
            stdio: wire,
        };
        shim.send(&create, &fds).unwrap();
        let reply: Reply = shim.recv().unwrap().unwrap();
        assert_eq!(reply.pid, Some(std::process::id() as i32));
        let mut got = [0u8; 2];
        out_r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"c1");
        // Errors come back worded as the runtime words them.
        let console = Call::Create {
            id: "c2".into(),
            bundle: "/b".into(),
            stdio: WireStdio::Console {
                socket: "/s".into(),
            },
        };
        shim.send(&console, &[]).unwrap();
        let reply: Reply = shim.recv().unwrap().unwrap();
        assert_eq!(reply.error.as_deref(), Some("container c2 does not exist"));
        shim.send(&Call::State { id: "c1".into() }, &[]).unwrap();
        let reply: Reply = shim.recv().unwrap().unwrap();
        assert_eq!((reply.status, reply.pid), (Some(Status::Running), Some(42)));
        drop(shim);
        server.join().unwrap().unwrap();
    }
}
