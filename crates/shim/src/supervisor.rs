//! The shim's single-threaded event loop: container stdio, the engine's connections, and child
//! exits (pidfds), all multiplexed with `poll(2)`.

use std::collections::HashMap;
use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_runtime::Stdio;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use rustix::event::{PollFd, PollFlags, poll};

use crate::config::ShimConfig;
use crate::helper::HelperRuntime;
use crate::jsonlog::{LogWriter, Stream};
use crate::protocol::{ExitStatus, FRAME_EXIT, Ready, Response, frame};

/// A request as the shim reads it: an exec's process spec stays JSON for the runtime helper.
type Request = crate::protocol::Request<serde_json::Value>;

/// A client whose pending output passes this is too slow and is dropped, so that one stuck
/// client never blocks the container.
const MAX_CLIENT_BACKLOG: usize = 8 << 20;
/// How long output may still drain after the init exited (only matters when processes outside
/// the container's pid namespace hold its pipes).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long the loop waits for an event before an idle tick.
const IDLE_TICK: Duration = Duration::from_millis(500);
/// The same, right after a runtime operation.
const CHECK_TICK: Duration = Duration::from_millis(20);

/// Runs the shim: `berth-shim <shim.json>`. The ready line goes to stdout, which is then
/// closed; diagnostics go to stderr. Returns the process exit code.
pub fn main(args: Vec<String>) -> i32 {
    // A session of its own first, so signals to the daemon's process group or terminal never
    // reach the shim. (The shim does it, not a pre-exec hook in the daemon: without a hook the
    // daemon can spawn it with vfork instead of copying its whole address space.)
    let _ = rustix::process::setsid();
    let Some(path) = args.get(1) else {
        eprintln!("usage: berth-shim <shim.json>");
        return 2;
    };
    let cfg = match ShimConfig::load(Path::new(path)) {
        Ok(c) => c,
        Err(e) => {
            report_ready(&Ready {
                pid: None,
                error: Some(format!("reading {path}: {e}")),
            });
            return 1;
        }
    };
    install_sigpipe_noop();
    if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        report_ready(&Ready {
            pid: None,
            error: Some(format!("set subreaper: {e}")),
        });
        return 1;
    }
    let mut shim = match Shim::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            report_ready(&Ready {
                pid: None,
                error: Some(e),
            });
            return 1;
        }
    };
    report_ready(&Ready {
        pid: Some(shim.init_pid),
        error: None,
    });
    shim.run();
    0
}

/// Writes the ready line on stdout, then points stdout at /dev/null so that a daemon that went
/// away never makes a later write fail.
fn report_ready(ready: &Ready) {
    let mut line = serde_json::to_vec(ready).unwrap_or_default();
    line.push(b'\n');
    let mut out = io::stdout().lock();
    let _ = out.write_all(&line);
    let _ = out.flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
    }
}

extern "C" fn noop_handler(_: libc::c_int) {}

/// A handler (not SIG_IGN, which children would inherit across exec) so that writing to a
/// closed pipe is an EPIPE error instead of killing the process.
pub(crate) fn install_sigpipe_noop() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(noop_handler),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler is async-signal-safe (it does nothing) and replaces only SIGPIPE's.
    let _ = unsafe { sigaction(Signal::SIGPIPE, &action) };
}

/// Who an output fd belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Container,
    Exec(i32),
}

struct Output {
    fd: OwnedFd,
    stream: Stream,
    owner: Owner,
}

enum Mode {
    /// Waiting for the request line.
    Request,
    /// Attached to the container.
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// Streaming an exec process.
    Exec { pid: i32 },
    /// Everything is queued; close once the backlog is written.
    Closing,
}

struct Client {
    sock: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    mode: Mode,
    read_closed: bool,
    dead: bool,
}

impl Client {
    fn send(&mut self, data: &[u8]) {
        if self.outbuf.len() + data.len() > MAX_CLIENT_BACKLOG {
            self.dead = true;
            return;
        }
        self.outbuf.extend_from_slice(data);
    }
    fn send_line(&mut self, resp: &Response) {
        let mut line = serde_json::to_vec(resp).unwrap_or_default();
        line.push(b'\n');
        self.send(&line);
    }
}

struct ExecProc {
    id: String,
    pidfd: OwnedFd,
    stdin: Option<OwnedFd>,
    pty: Option<OwnedFd>,
    exit: Option<i32>,
}

struct Shim {
    cfg: ShimConfig,
    runtime: HelperRuntime,
    init_pid: i32,
    init_pidfd: Option<OwnedFd>,
    pty: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    stdin_pending: Vec<u8>,
    log: Option<LogWriter>,
    outputs: Vec<Output>,
    clients: Vec<Client>,
    execs: HashMap<i32, ExecProc>,
    listener: UnixListener,
    exit: Option<(ExitStatus, Instant)>,
    started: bool,
    /// Set when starting failed: the shim cleans up and leaves.
    failed: bool,
    /// Set by a runtime operation (the start included): at the next idle tick, which then
    /// comes after [`CHECK_TICK`], the shim checks its resident set against the busy budget
    /// ([`Shim::keep_small`]).
    check_memory: bool,
    /// The container's shim lock, held for the shim's whole life ([`take_lock`]).
    _lock: ShimLock,
    /// Whether execs start from the shim itself ([`crate::enter`]), found at the first one.
    native: Native,
}

/// The state of the shim's own exec path.
enum Native {
    Unprobed,
    Ready(Box<crate::enter::Target>),
    /// Execs go through the runtime helper.
    Unavailable,
}

/// The held shim lock; dropping it unlinks the lock file (if it is still ours) while the
/// lock is still held, then releases it.
struct ShimLock {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl Drop for ShimLock {
    fn drop(&mut self) {
        if let (Ok(a), Ok(b)) = (rustix::fs::fstat(&self.file), rustix::fs::stat(&self.path)) {
            if a.st_ino == b.st_ino && a.st_dev == b.st_dev {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// How long a new shim waits for the container's previous shim to finish its clean-up.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The lock file of the shim whose socket is `socket`.
fn lock_path(socket: &Path) -> std::path::PathBuf {
    socket.with_extension("lock")
}

/// Takes the container's shim lock: a restart's new shim waits here until the previous
/// shim (which reports the exit before it deletes the runtime state and its socket) is
/// gone, so that clean-up never hits the new container. The file is close-on-exec: neither
/// helpers nor the container inherit the lock.
fn take_lock(socket: &Path) -> Result<ShimLock, String> {
    let path = lock_path(socket);
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                // The previous holder may have unlinked the file on its way out: lock the
                // file at the path, not an orphan.
                let same = match (rustix::fs::fstat(&f), rustix::fs::stat(&path)) {
                    (Ok(a), Ok(b)) => a.st_ino == b.st_ino && a.st_dev == b.st_dev,
                    _ => false,
                };
                if same {
                    return Ok(ShimLock { file: f, path });
                }
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {}
            Err(e) => return Err(format!("lock {}: {e}", path.display())),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the container's previous shim did not exit within {}s",
                LOCK_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

fn pidfd_open(pid: i32) -> Result<OwnedFd, String> {
    let p = rustix::process::Pid::from_raw(pid).ok_or_else(|| format!("bad pid {pid}"))?;
    rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
        .map_err(|e| format!("pidfd_open {pid}: {e}"))
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    if let Ok(flags) = rustix::fs::fcntl_getfl(fd) {
        let _ = rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK);
    }
}

/// Listens on a console socket, for the runtime to hand over a pty master.
struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    fn new(path: PathBuf) -> Result<Self, String> {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| format!("console socket {}: {e}", path.display()))?;
        Ok(Self { path, listener })
    }

    /// Receives the master fd (waits at most a few seconds).
    fn receive(self) -> Result<OwnedFd, String> {
        self.listener
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let conn = loop {
            match self.listener.accept() {
                Ok((c, _)) => break c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(format!("console socket: no pty received: {e}")),
            }
        };
        conn.set_nonblocking(false).map_err(|e| e.to_string())?;
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("console socket recvmsg: {e}"))?;
        for c in msg.cmsgs().map_err(|e| e.to_string())? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    for &extra in &fds[1..] {
                        // SAFETY: the kernel just gave us these fds; we own and close them.
                        drop(unsafe { OwnedFd::from_raw_fd(extra) });
                    }
                    // SAFETY: a fresh fd received through SCM_RIGHTS, owned by nobody else.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Err("console socket: message carried no fd".into())
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Shim {
    fn start(cfg: ShimConfig) -> Result<Self, String> {
        let lock = take_lock(&cfg.socket)?;
        let _ = std::fs::remove_file(&cfg.socket);
        let listener = UnixListener::bind(&cfg.socket)
            .map_err(|e| format!("listen on {}: {e}", cfg.socket.display()))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let log = match &cfg.log_path {
            Some(p) => Some(
                LogWriter::open(p, cfg.log_max_size, cfg.log_max_file)
                    .map_err(|e| format!("open log {}: {e}", p.display()))?
                    .with_attrs(cfg.log_attrs.clone()),
            ),
            None => None,
        };
        let runtime =
            HelperRuntime::new(&cfg.runtime, &cfg.runtime_root).map_err(|e| e.to_string())?;
        let mut outputs = Vec::new();
        let mut stdin = None;
        let mut pty = None;
        let console_dir = cfg.socket.parent().unwrap_or(Path::new("/tmp")).to_owned();
        let pid = if cfg.tty {
            let console = ConsoleSocket::new(
                console_dir.join(format!("{}.console", &cfg.id[..12.min(cfg.id.len())])),
            )?;
            let stdio = Stdio::Console {
                socket: console.path.clone(),
            };
            let pid = runtime
                .create(&cfg.id, &cfg.bundle, stdio)
                .map_err(|e| e.to_string())?;
            let master = match console.receive() {
                Ok(m) => m,
                Err(e) => {
                    let _ = runtime.delete(&cfg.id, true);
                    return Err(e);
                }
            };
            set_nonblocking(master.as_fd());
            let dup = rustix::io::fcntl_dupfd_cloexec(&master, 3).map_err(|e| e.to_string())?;
            if cfg.open_stdin {
                stdin = Some(dup);
            }
            pty = Some(rustix::io::fcntl_dupfd_cloexec(&master, 3).map_err(|e| e.to_string())?);
            outputs.push(Output {
                fd: master,
                stream: Stream::Stdout,
                owner: Owner::Container,
            });
            pid
        } else {
            let (in_r, in_w) = if cfg.open_stdin {
                let (r, w) = pipe()?;
                (Some(r), Some(w))
            } else {
                (None, None)
            };
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let stdio = Stdio::Pipes {
                stdin: in_r,
                stdout: out_w,
                stderr: err_w,
            };
            let pid = runtime
                .create(&cfg.id, &cfg.bundle, stdio)
                .map_err(|e| e.to_string())?;
            for (fd, stream) in [(out_r, Stream::Stdout), (err_r, Stream::Stderr)] {
                set_nonblocking(fd.as_fd());
                outputs.push(Output {
                    fd,
                    stream,
                    owner: Owner::Container,
                });
            }
            if let Some(w) = &in_w {
                set_nonblocking(w.as_fd());
            }
            stdin = in_w;
            pid
        };
        let init_pidfd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = runtime.delete(&cfg.id, true);
                return Err(e);
            }
        };
        Ok(Self {
            _lock: lock,
            cfg,
            runtime,
            init_pid: pid,
            init_pidfd: Some(init_pidfd),
            pty,
            stdin,
            stdin_pending: Vec::new(),
            log,
            outputs,
            clients: Vec::new(),
            execs: HashMap::new(),
            listener,
            exit: None,
            started: false,
            failed: false,
            check_memory: false,
            native: Native::Unprobed,
        })
    }

    /// Sets up the shim's own exec path on first use: only for the embedded runtime, and only
    /// when the container allows it ([`crate::enter::Target::probe`]).
    fn probe_native(&mut self) {
        if !matches!(self.native, Native::Unprobed) {
            return;
        }
        let Some(pidfd) = &self.init_pidfd else {
            return;
        };
        self.native = if self.cfg.runtime != berth_runtime::RuntimeKind::Embedded {
            Native::Unavailable
        } else {
            match crate::enter::Target::probe(self.init_pid, pidfd.as_fd(), &self.cfg.bundle) {
                Ok(t) => Native::Ready(Box::new(t)),
                Err(why) => {
                    eprintln!("berth-shim: execs go through the runtime helper: {why}");
                    Native::Unavailable
                }
            }
        };
    }

    fn run(&mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if self.failed {
                self.flush_clients();
                let _ = self.runtime.delete(&self.cfg.id, true);
                let _ = std::fs::remove_file(&self.cfg.socket);
                return;
            }
            if let Some((_, at)) = &self.exit {
                let container_outputs = self.outputs.iter().any(|o| o.owner == Owner::Container);
                if !container_outputs || at.elapsed() > DRAIN_GRACE {
                    break;
                }
            }
            // After a runtime operation, the next idle tick comes soon: the check then runs
            // off the operation's path (a `run --rm` container is often gone by then).
            let tick = if self.check_memory {
                CHECK_TICK
            } else {
                IDLE_TICK
            };
            let idle = self.poll_once(&mut buf, tick);
            // A shim whose container exited is about to leave: nothing to keep small.
            if idle && self.exit.is_none() {
                let budget = if std::mem::take(&mut self.check_memory) {
                    crate::memory::BUSY_BUDGET
                } else {
                    crate::memory::IDLE_BUDGET
                };
                self.keep_small(budget);
            }
        }
        self.finish();
    }

    /// Drops the code and constant pages the shim faulted in for work it has finished (its
    /// start-up, runtime operations, a burst of output) once its resident set passes `budget`:
    /// what the supervise loop still runs faults back in.
    fn keep_small(&self, budget: u64) {
        if crate::memory::resident_bytes().is_some_and(|r| r > budget) {
            crate::memory::release_clean_file_pages();
        }
    }

    /// One round of the loop, waiting at most `tick`; returns true when it found nothing to do
    /// (an idle tick).
    fn poll_once(&mut self, buf: &mut [u8], tick: Duration) -> bool {
        // Build the poll set: [listener, init pidfd?, exec pidfds.., outputs.., stdin?, clients..]
        #[derive(Clone, Copy)]
        enum Slot {
            Listener,
            Init,
            ExecPid,
            Output(usize),
            Stdin,
            Client(usize),
        }
        let mut slots = Vec::new();
        let mut fds: Vec<PollFd<'_>> = Vec::new();
        fds.push(PollFd::new(&self.listener, PollFlags::IN));
        slots.push(Slot::Listener);
        if let Some(fd) = &self.init_pidfd {
            fds.push(PollFd::new(fd, PollFlags::IN));
            slots.push(Slot::Init);
        }
        for e in self.execs.values() {
            if e.exit.is_none() {
                fds.push(PollFd::new(&e.pidfd, PollFlags::IN));
                slots.push(Slot::ExecPid);
            }
        }
        for (i, o) in self.outputs.iter().enumerate() {
            fds.push(PollFd::new(&o.fd, PollFlags::IN));
            slots.push(Slot::Output(i));
        }
        if let (Some(fd), false) = (&self.stdin, self.stdin_pending.is_empty()) {
            fds.push(PollFd::new(fd, PollFlags::OUT));
            slots.push(Slot::Stdin);
        }
        let stdin_full = self.stdin_pending.len() > (1 << 20);
        for (i, c) in self.clients.iter().enumerate() {
            let mut flags = PollFlags::empty();
            if !c.read_closed && !stdin_full {
                flags |= PollFlags::IN;
            }
            if !c.outbuf.is_empty() {
                flags |= PollFlags::OUT;
            }
            fds.push(PollFd::new(&c.sock, flags));
            slots.push(Slot::Client(i));
        }
        let timeout = rustix::event::Timespec {
            tv_sec: tick.as_secs() as i64,
            tv_nsec: tick.subsec_nanos() as i64,
        };
        let idle = match poll(&mut fds, Some(&timeout)) {
            Ok(n) => n == 0,
            Err(rustix::io::Errno::INTR) => return false,
            Err(e) => {
                eprintln!("shim: poll: {e}");
                std::thread::sleep(Duration::from_millis(50));
                return false;
            }
        };
        let ready: Vec<(Slot, PollFlags)> = fds
            .iter()
            .zip(slots.iter())
            .map(|(f, s)| (*s, f.revents()))
            .collect();
        drop(fds);

        let mut dead_outputs = Vec::new();
        for (slot, rev) in ready {
            if rev.is_empty() {
                continue;
            }
            match slot {
                Slot::Listener => self.accept(),
                // Exits are collected below, every tick.
                Slot::Init | Slot::ExecPid => {}
                Slot::Output(i) => {
                    if self.read_output(i, buf) {
                        dead_outputs.push(i);
                    }
                }
                Slot::Stdin => self.flush_stdin(),
                Slot::Client(i) => self.service_client(i, rev, buf),
            }
        }
        // Every tick reaps: pidfds wake us for our children, and strays (orphans reparented
        // to the subreaper) are collected too.
        self.reap();
        dead_outputs.sort_unstable();
        for i in dead_outputs.into_iter().rev() {
            let out = self.outputs.remove(i);
            if let Owner::Exec(pid) = out.owner {
                self.maybe_finish_exec(pid);
            }
        }
        self.clients.retain(|c| !c.dead);
        idle
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.clients.push(Client {
                        sock,
                        inbuf: Vec::new(),
                        outbuf: Vec::new(),
                        mode: Mode::Request,
                        read_closed: false,
                        dead: false,
                    });
                }
                Err(_) => return,
            }
        }
    }

    /// Reads from output `i`; returns true at EOF.
    fn read_output(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let out = &self.outputs[i];
        let n = match rustix::io::read(&out.fd, &mut *buf) {
            Ok(0) => return true,
            Ok(n) => n,
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => return false,
            // A pty master reads EIO once every slave end is closed.
            Err(_) => return true,
        };
        let data = &buf[..n];
        let stream_id = match out.stream {
            Stream::Stdout => 1u8,
            Stream::Stderr => 2u8,
        };
        match out.owner {
            Owner::Container => {
                if let Some(log) = &mut self.log {
                    if let Err(e) = log.write(out.stream, data) {
                        eprintln!("shim: log write: {e}");
                    }
                }
                let f = frame(stream_id, data);
                for c in &mut self.clients {
                    if let Mode::Attach { stdout, stderr, .. } = c.mode {
                        if (stream_id == 1 && stdout) || (stream_id == 2 && stderr) {
                            c.send(&f);
                        }
                    }
                }
            }
            Owner::Exec(pid) => {
                let f = frame(stream_id, data);
                for c in &mut self.clients {
                    if matches!(c.mode, Mode::Exec { pid: p } if p == pid) {
                        c.send(&f);
                    }
                }
            }
        }
        false
    }

    fn flush_stdin(&mut self) {
        let Some(fd) = &self.stdin else {
            self.stdin_pending.clear();
            return;
        };
        match rustix::io::write(fd, &self.stdin_pending) {
            Ok(n) => {
                self.stdin_pending.drain(..n);
            }
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => {
                // The container closed its stdin.
                self.stdin_pending.clear();
                self.stdin = None;
            }
        }
    }

    fn service_client(&mut self, i: usize, rev: PollFlags, buf: &mut [u8]) {
        if rev.contains(PollFlags::OUT)
            || rev.contains(PollFlags::ERR)
            || rev.contains(PollFlags::HUP)
        {
            let c = &mut self.clients[i];
            while !c.outbuf.is_empty() {
                match c.sock.write(&c.outbuf) {
                    Ok(0) => {
                        c.dead = true;
                        break;
                    }
                    Ok(n) => {
                        c.outbuf.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        c.dead = true;
                        break;
                    }
                }
            }
            if c.outbuf.is_empty() && matches!(c.mode, Mode::Closing) {
                c.dead = true;
            }
            // A hang-up with nothing left to read: the peer is gone both ways (poll reports
            // HUP whatever the events asked for, so a client kept would spin the loop).
            if c.read_closed && (rev.contains(PollFlags::HUP) || rev.contains(PollFlags::ERR)) {
                c.dead = true;
                return;
            }
        }
        if !(rev.contains(PollFlags::IN) || rev.contains(PollFlags::HUP))
            || self.clients[i].read_closed
        {
            return;
        }
        let n = match self.clients[i].sock.read(buf) {
            Ok(n) => n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                return;
            }
            Err(_) => 0,
        };
        if n == 0 {
            self.client_eof(i);
            return;
        }
        let data = buf[..n].to_vec();
        match self.clients[i].mode {
            Mode::Request => {
                self.clients[i].inbuf.extend_from_slice(&data);
                let Some(pos) = self.clients[i].inbuf.iter().position(|&b| b == b'\n') else {
                    if self.clients[i].inbuf.len() > (1 << 20) {
                        self.clients[i].dead = true;
                    }
                    return;
                };
                let line: Vec<u8> = self.clients[i].inbuf.drain(..=pos).collect();
                let rest = std::mem::take(&mut self.clients[i].inbuf);
                match serde_json::from_slice::<Request>(&line) {
                    Ok(req) => self.handle(i, req),
                    Err(e) => {
                        let c = &mut self.clients[i];
                        c.send_line(&Response::err(format!("bad request: {e}")));
                        c.mode = Mode::Closing;
                    }
                }
                if !rest.is_empty() {
                    self.client_stdin(i, &rest);
                }
            }
            _ => self.client_stdin(i, &data),
        }
    }

    fn client_stdin(&mut self, i: usize, data: &[u8]) {
        match self.clients[i].mode {
            Mode::Attach { stdin: true, .. } => {
                if self.stdin.is_some() {
                    self.stdin_pending.extend_from_slice(data);
                    self.flush_stdin();
                }
            }
            Mode::Exec { pid } => {
                if let Some(fd) = self.execs.get(&pid).and_then(|e| e.stdin.as_ref()) {
                    // Exec stdin is written blocking-free best effort.
                    let _ = rustix::io::write(fd, data);
                }
            }
            _ => {}
        }
    }

    fn client_eof(&mut self, i: usize) {
        let c = &mut self.clients[i];
        c.read_closed = true;
        match c.mode {
            Mode::Request => c.dead = true,
            Mode::Attach { stdin: true, .. } => {
                // As Docker: a tty's input is never closed by a client going away (it detached
                // or lost its connection); `StdinOnce` only ends piped input.
                if self.cfg.stdin_once && !self.cfg.tty {
                    self.flush_stdin();
                    self.stdin = None;
                    self.stdin_pending.clear();
                }
            }
            Mode::Exec { pid } => {
                if let Some(e) = self.execs.get_mut(&pid) {
                    e.stdin = None;
                }
            }
            _ => {}
        }
    }

    fn handle(&mut self, i: usize, req: Request) {
        self.check_memory |= matches!(
            req,
            Request::Start
                | Request::State
                | Request::Pause
                | Request::Resume
                | Request::Exec { .. }
                | Request::Kill { all: true, .. }
        );
        match req {
            Request::State => {
                let resp = Response {
                    pid: Some(self.init_pid),
                    running: self.exit.is_none(),
                    paused: matches!(
                        self.runtime.state(&self.cfg.id),
                        Ok((berth_runtime::Status::Paused, _))
                    ),
                    error: None,
                };
                let c = &mut self.clients[i];
                c.send_line(&resp);
                c.mode = Mode::Closing;
            }
            Request::Start => {
                let resp = if self.started {
                    Response::err(format!("container {} is already started", self.cfg.id))
                } else {
                    match self.runtime.start(&self.cfg.id) {
                        Ok(()) => {
                            self.started = true;
                            Response {
                                pid: Some(self.init_pid),
                                running: true,
                                ..Response::ok()
                            }
                        }
                        Err(e) => {
                            self.failed = true;
                            Response::err(e.to_string())
                        }
                    }
                };
                let c = &mut self.clients[i];
                c.send_line(&resp);
                c.mode = Mode::Closing;
            }
            Request::Kill { signal, all } => {
                let resp = if self.exit.is_some() {
                    Response::err(format!("container {} is not running", self.cfg.id))
                } else if all {
                    match self.runtime.kill(&self.cfg.id, signal, true) {
                        Ok(()) => Response::ok(),
                        Err(e) => Response::err(e.to_string()),
                    }
                } else if (1..=64).contains(&signal) {
                    // Any signal number, real-time ones too (`SIGRTMIN+3` stops systemd),
                    // which nix's `Signal` cannot name.
                    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
                    let rc = unsafe { libc::kill(self.init_pid, signal) };
                    if rc == 0 {
                        Response::ok()
                    } else {
                        Response::err(format!("kill: {}", std::io::Error::last_os_error()))
                    }
                } else {
                    Response::err(format!("invalid signal {signal}"))
                };
                let c = &mut self.clients[i];
                c.send_line(&resp);
                c.mode = Mode::Closing;
            }
            Request::Pause | Request::Resume => {
                let res = if matches!(req, Request::Pause) {
                    self.runtime.pause(&self.cfg.id)
                } else {
                    self.runtime.resume(&self.cfg.id)
                };
                let resp = match res {
                    Ok(()) => Response::ok(),
                    Err(e) => Response::err(e.to_string()),
                };
                let c = &mut self.clients[i];
                c.send_line(&resp);
                c.mode = Mode::Closing;
            }
            Request::Resize {
                height,
                width,
                exec_id,
            } => {
                let fd = match &exec_id {
                    None => self.pty.as_ref(),
                    Some(id) => self
                        .execs
                        .values()
                        .find(|e| &e.id == id)
                        .and_then(|e| e.pty.as_ref()),
                };
                let resp = match fd {
                    Some(fd) => {
                        let ws = rustix::termios::Winsize {
                            ws_row: height,
                            ws_col: width,
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        match rustix::termios::tcsetwinsize(fd, ws) {
                            Ok(()) => Response::ok(),
                            Err(e) => Response::err(format!("resize: {e}")),
                        }
                    }
                    None => Response::err("no tty to resize"),
                };
                let c = &mut self.clients[i];
                c.send_line(&resp);
                c.mode = Mode::Closing;
            }
            Request::Attach {
                stdin,
                stdout,
                stderr,
            } => {
                let c = &mut self.clients[i];
                c.send_line(&Response {
                    pid: Some(self.init_pid),
                    running: self.exit.is_none(),
                    ..Response::ok()
                });
                c.mode = Mode::Attach {
                    stdin,
                    stdout,
                    stderr,
                };
                if let Some((status, _)) = &self.exit {
                    if !self.outputs.iter().any(|o| o.owner == Owner::Container) {
                        let payload = serde_json::to_vec(status).unwrap_or_default();
                        c.send(&frame(FRAME_EXIT, &payload));
                        c.mode = Mode::Closing;
                    }
                }
            }
            Request::Exec {
                exec_id,
                process,
                tty,
                stdin,
            } => match self.start_exec(&exec_id, &process, tty, stdin) {
                Ok(pid) => {
                    let c = &mut self.clients[i];
                    c.send_line(&Response {
                        pid: Some(pid),
                        running: true,
                        ..Response::ok()
                    });
                    c.mode = Mode::Exec { pid };
                }
                Err(e) => {
                    let c = &mut self.clients[i];
                    c.send_line(&Response::err(e));
                    c.mode = Mode::Closing;
                }
            },
        }
    }

    fn start_exec(
        &mut self,
        exec_id: &str,
        process: &serde_json::Value,
        tty: bool,
        want_stdin: bool,
    ) -> Result<i32, String> {
        if self.exit.is_some() {
            return Err(format!("container {} is not running", self.cfg.id));
        }
        let mut outs = Vec::new();
        let mut stdin_w = None;
        let mut pty = None;
        let plan = match self.cfg.runtime {
            berth_runtime::RuntimeKind::Embedded => crate::enter::Plan::from_process(process)?,
            _ => None,
        };
        if plan.is_some() {
            self.probe_native();
        }
        let native = match (&self.native, plan) {
            (Native::Ready(target), Some(plan)) => Some((&**target, plan)),
            _ => None,
        };
        let pid = if tty {
            let (pid, master) = match native {
                Some((target, plan)) => {
                    let (pid, master) =
                        crate::enter::spawn(target, &plan, crate::enter::ExecStdio::Terminal)?;
                    (
                        pid,
                        master.ok_or("the exec came back without its terminal")?,
                    )
                }
                None => {
                    let dir = self
                        .cfg
                        .socket
                        .parent()
                        .unwrap_or(Path::new("/tmp"))
                        .to_owned();
                    let short: String = exec_id.chars().take(12).collect();
                    let console = ConsoleSocket::new(dir.join(format!("exec-{short}.console")))?;
                    let pid = self
                        .runtime
                        .exec(
                            &self.cfg.id,
                            process,
                            Stdio::Console {
                                socket: console.path.clone(),
                            },
                        )
                        .map_err(|e| e.to_string())?;
                    let master = console.receive()?;
                    // runc sizes it from the spec already; not every runtime does.
                    if let Some(ws) = crate::enter::console_size(process)? {
                        let ws = rustix::termios::Winsize {
                            ws_row: ws.ws_row,
                            ws_col: ws.ws_col,
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        if let Err(e) = rustix::termios::tcsetwinsize(&master, ws) {
                            eprintln!("shim: size the exec's terminal: {e}");
                        }
                    }
                    (pid, master)
                }
            };
            set_nonblocking(master.as_fd());
            if want_stdin {
                stdin_w =
                    Some(rustix::io::fcntl_dupfd_cloexec(&master, 3).map_err(|e| e.to_string())?);
            }
            pty = Some(rustix::io::fcntl_dupfd_cloexec(&master, 3).map_err(|e| e.to_string())?);
            outs.push((master, Stream::Stdout));
            pid
        } else {
            let (in_r, in_w) = if want_stdin {
                let (r, w) = pipe()?;
                (Some(r), Some(w))
            } else {
                (None, None)
            };
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let pid = match native {
                Some((target, plan)) => {
                    crate::enter::spawn(
                        target,
                        &plan,
                        crate::enter::ExecStdio::Pipes {
                            stdin: in_r,
                            stdout: out_w,
                            stderr: err_w,
                        },
                    )?
                    .0
                }
                None => self
                    .runtime
                    .exec(
                        &self.cfg.id,
                        process,
                        Stdio::Pipes {
                            stdin: in_r,
                            stdout: out_w,
                            stderr: err_w,
                        },
                    )
                    .map_err(|e| e.to_string())?,
            };
            outs.push((out_r, Stream::Stdout));
            outs.push((err_r, Stream::Stderr));
            stdin_w = in_w;
            pid
        };
        let pidfd = pidfd_open(pid).inspect_err(|_| {
            // Untracked, it would run on with nobody to reap or report it.
            // SAFETY: kill(2) of the process this exec just started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        })?;
        for (fd, stream) in outs {
            set_nonblocking(fd.as_fd());
            self.outputs.push(Output {
                fd,
                stream,
                owner: Owner::Exec(pid),
            });
        }
        self.execs.insert(
            pid,
            ExecProc {
                id: exec_id.to_owned(),
                pidfd,
                stdin: stdin_w,
                pty,
                exit: None,
            },
        );
        Ok(pid)
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.on_exit(pid.as_raw(), code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.on_exit(pid.as_raw(), 128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn on_exit(&mut self, pid: i32, code: i32) {
        if pid == self.init_pid && self.exit.is_none() {
            let status = ExitStatus {
                exit_code: code,
                oom_killed: oom_killed(&self.cfg.cgroups_path),
                finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            };
            self.init_pidfd = None;
            self.exit = Some((status, Instant::now()));
        } else if let Some(e) = self.execs.get_mut(&pid) {
            e.exit = Some(code);
            self.maybe_finish_exec(pid);
        }
    }

    /// Once an exec process has exited and its output is drained, its client gets the exit.
    fn maybe_finish_exec(&mut self, pid: i32) {
        let Some(code) = self.execs.get(&pid).and_then(|e| e.exit) else {
            return;
        };
        if self.outputs.iter().any(|o| o.owner == Owner::Exec(pid)) {
            return;
        }
        self.execs.remove(&pid);
        let status = ExitStatus {
            exit_code: code,
            ..ExitStatus::default()
        };
        let payload = serde_json::to_vec(&status).unwrap_or_default();
        for c in &mut self.clients {
            if matches!(c.mode, Mode::Exec { pid: p } if p == pid) {
                c.send(&frame(FRAME_EXIT, &payload));
                c.mode = Mode::Closing;
            }
        }
    }

    /// The container is gone: record the exit, tell every client, clean up.
    fn finish(&mut self) {
        let Some((status, _)) = self.exit.clone() else {
            return;
        };
        if let Some(log) = &mut self.log {
            let _ = log.flush();
        }
        if let Err(e) = write_atomic(
            &self.cfg.exit_file,
            &serde_json::to_vec(&status).unwrap_or_default(),
        ) {
            eprintln!("shim: writing exit file: {e}");
        }
        let payload = serde_json::to_vec(&status).unwrap_or_default();
        for c in &mut self.clients {
            if matches!(c.mode, Mode::Attach { .. }) {
                c.send(&frame(FRAME_EXIT, &payload));
            }
            c.mode = Mode::Closing;
        }
        self.flush_clients();
        // The init has exited: the shim removes what the embedded runtime left itself (the
        // helper's delete is for anything else).
        let removed = self.cfg.runtime == berth_runtime::RuntimeKind::Embedded
            && crate::teardown::remove_stopped(&self.cfg.runtime_root, &self.cfg.id)
                .map_err(|e| eprintln!("shim: removing through the runtime helper: {e}"))
                .is_ok();
        if !removed && let Err(e) = self.runtime.delete(&self.cfg.id, true) {
            eprintln!("shim: runtime delete: {e}");
        }
        let _ = std::fs::remove_file(&self.cfg.socket);
        // The lock goes last, with the shim: a new shim for this container waits for it.
    }

    /// Gives clients a moment to take their last bytes.
    fn flush_clients(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline
            && self.clients.iter().any(|c| !c.dead && !c.outbuf.is_empty())
        {
            for c in &mut self.clients {
                if c.outbuf.is_empty() {
                    continue;
                }
                match c.sock.write(&c.outbuf) {
                    Ok(n) if n > 0 => {
                        c.outbuf.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    _ => c.dead = true,
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Whether the kernel OOM-killed a process of the cgroup (v1 `memory.oom_control`, v2
/// `memory.events`).
fn oom_killed(cgroups_path: &str) -> bool {
    let rel = cgroups_path.trim_start_matches('/');
    let candidates = [
        format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control"),
        format!("/sys/fs/cgroup/{rel}/memory.events"),
        format!("/sys/fs/cgroup/unified/{rel}/memory.events"),
    ];
    candidates.iter().any(|p| {
        std::fs::read_to_string(p)
            .map(|s| {
                s.lines().any(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                        > 0
                })
            })
            .unwrap_or(false)
    })
}

/// Writes `data` to `path` atomically: temp file in the same directory, then rename, so a
/// reader sees the old file or the whole new one. No fsync: the exit file lives in the exec
/// root, which is volatile by design (a tmpfs under /run) and means nothing after a reboot; it
/// only has to survive the daemon, and the page cache outlives any process.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    std::fs::File::create(&tmp)?.write_all(data)?;
    std::fs::rename(&tmp, path)
}
