//! Test harness: a private berthd per test (own socket, data root, exec root and cgroup
//! parent), clients (`berth` and the real `docker` CLI) pointed at it, and a cleanup that
//! removes every process, mount, cgroup and directory the test made, even when it fails.

#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub const DOCKER: &str = "/usr/local/bin/docker";

/// A busybox rootfs tarball, made once per test binary.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        // Under cargo's per-target scratch dir, so nothing is left in /tmp.
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox.tar");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mkrootfs-busybox.sh");
        let out = Command::new(script)
            .output()
            .expect("run mkrootfs-busybox.sh");
        assert!(
            out.status.success(),
            "mkrootfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tmp = path.with_extension(format!("tar.{}", std::process::id()));
        std::fs::write(&tmp, &out.stdout).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    })
}

/// Seconds since the epoch (for `events --since/--until`).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One test daemon.
pub struct Daemon {
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub cgroup_parent: String,
    /// The network namespace the daemon runs in (its "host"), so its bridges, veths and
    /// nftables table never touch the machine's; `None` for a daemon on the host's network.
    pub netns: Option<String>,
    child: Option<Child>,
}

/// Makes a named network namespace with loopback up.
fn netns_add(name: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
    let st = Command::new("ip")
        .args(["netns", "add", name])
        .status()
        .expect("ip netns add");
    assert!(st.success(), "ip netns add {name}");
    let st = Command::new("ip")
        .args(["-n", name, "link", "set", "lo", "up"])
        .status()
        .expect("ip link");
    assert!(st.success(), "lo up in {name}");
}

pub fn bin(name: &str) -> PathBuf {
    match name {
        "berth" => PathBuf::from(env!("CARGO_BIN_EXE_berth")),
        "berthd" => PathBuf::from(env!("CARGO_BIN_EXE_berthd")),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_berth-shim")),
    }
}

impl Daemon {
    /// Starts a daemon with fresh state, in a network namespace of its own.
    pub fn start() -> Self {
        Self::start_with(true)
    }

    /// Starts a daemon on the host's network (to reach registries on the host's loopback),
    /// with the default bridge off (`"bridge": "none"`), so nothing is made on the host's
    /// interfaces.
    pub fn start_on_host_network() -> Self {
        Self::start_with(false)
    }

    fn start_with(own_netns: bool) -> Self {
        assert!(
            rustix_is_root(),
            "the integration tests run real containers and need root"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}-{n}", std::process::id());
        let dir = PathBuf::from(format!("/tmp/bt-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("docker-config")).unwrap();
        let config = if own_netns {
            "{}\n"
        } else {
            "{\"bridge\": \"none\"}\n"
        };
        std::fs::write(dir.join("daemon.json"), config).unwrap();
        let netns = own_netns.then(|| format!("bt-{tag}"));
        if let Some(n) = &netns {
            netns_add(n);
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut d = Daemon {
            sock: dir.join("berth.sock"),
            cgroup_parent: format!("/berth-test-{tag}"),
            dir,
            netns,
            child: None,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("berthd.log"))
            .unwrap();
        let mut cmd = match &self.netns {
            Some(n) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{n}")).arg(bin("berthd"));
                c
            }
            None => Command::new(bin("berthd")),
        };
        let child = cmd
            .arg("-H")
            .arg(self.host())
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .arg("--config-file")
            .arg(self.dir.join("daemon.json"))
            .arg("--log-level")
            .arg("debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn berthd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("berthd exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("berthd did not come up: {}", self.log());
    }

    /// Replaces daemon.json (a daemon on the host's network keeps its bridge off).
    pub fn write_config(&self, json: &str) {
        let mut v: serde_json::Value = serde_json::from_str(json).expect("daemon.json");
        if self.netns.is_none() {
            v["bridge"] = serde_json::json!("none");
        }
        std::fs::write(self.dir.join("daemon.json"), v.to_string()).unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("berthd.log")).unwrap_or_default()
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// Stops the daemon with SIGTERM, as an init system does, and waits for it to exit.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Kills the daemon with SIGKILL (containers stay), then starts it again on the same state.
    pub fn crash_and_restart(&mut self) {
        self.crash();
        self.spawn();
    }

    /// Kills the daemon with SIGKILL; containers and their shims stay. [`Daemon::restart`]
    /// brings it back on the same state.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the daemon again after [`Daemon::crash`].
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Runs the `berth` CLI against this daemon.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_stdin(args, None)
    }

    pub fn berth_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(bin("berth"));
        cmd.arg("-H").arg(self.host()).args(args);
        run(cmd, stdin)
    }

    /// Runs the real docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_stdin(args, None)
    }

    pub fn docker_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run(self.docker_command(args), stdin)
    }

    /// The docker CLI pointed at this daemon, with its own config directory.
    fn docker_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(DOCKER);
        cmd.args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .env("DOCKER_CLI_HINTS", "false")
            // The legacy builder: the 28.x CLI has no buildx here, and berthd speaks the
            // legacy build API.
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_CONTEXT");
        cmd
    }

    /// Imports the busybox image as `busybox:latest` through the docker CLI.
    pub fn import_busybox(&self) {
        let tar = std::fs::read(busybox_tar()).unwrap();
        let out = self.docker_stdin(&["import", "-", "busybox:latest"], Some(&tar));
        assert!(
            out.status.success(),
            "import: {}\n{}",
            stderr(&out),
            self.log()
        );
    }

    /// Pids of every process in this daemon's cgroups.
    pub fn cgroup_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for base in cgroup_bases() {
            collect_pids(
                &base.join(self.cgroup_parent.trim_start_matches('/')),
                &mut pids,
            );
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

fn rustix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn client");
    if let Some(data) = stdin {
        let mut si = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = si.write_all(&data);
        });
    }
    // Drained while the client runs: a client writing more than a pipe holds must not block.
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    // A wedged client must fail the test, not hang it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("client status");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns trimmed stdout.
#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o).trim().to_owned()
}

fn cgroup_bases() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            v.push(e.path());
        }
    }
    v.push(PathBuf::from("/sys/fs/cgroup"));
    v
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(s) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&e.path(), out);
            }
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn thaw(dir: &Path) {
    let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
    let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                thaw(&e.path());
            }
        }
    }
}

/// Processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let me = std::process::id() as i32;
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
                if String::from_utf8_lossy(&cmd).contains(needle) {
                    out.push(pid);
                    continue;
                }
            }
            // The runtime helper runs as plain `berth-shim-runtime`: its executable (the copy
            // under the exec root) names the test's directory.
            if let Ok(exe) = std::fs::read_link(e.path().join("exe")) {
                if exe.to_string_lossy().contains(needle) {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// Mount points at or under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    // Path::starts_with compares whole components: /tmp/bt-1-1 is not under /tmp/bt-1-11.
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split(' ')
                .nth(4)
                .map(|p| PathBuf::from(p.replace("\\040", " ")))
        })
        .filter(|p| p.starts_with(dir))
        .collect()
}

impl Daemon {
    /// A machine reboot: the daemon, every shim and container process die, mounts and the
    /// exec root (a tmpfs on real hosts) vanish; then the daemon starts again on the same data.
    pub fn reboot(&mut self) {
        self.kill_everything();
        let _ = std::fs::remove_dir_all(self.dir.join("exec"));
        // The network namespace stands for the machine's network: fresh after a reboot.
        if let Some(n) = &self.netns {
            netns_add(n);
        }
        self.spawn();
    }

    /// Runs a command in the daemon's network namespace (its "host"), as `busybox`.
    pub fn host_busybox(&self, args: &[&str]) -> Output {
        let mut cmd = match &self.netns {
            Some(n) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{n}")).arg("busybox");
                c
            }
            None => Command::new("busybox"),
        };
        cmd.args(args);
        run(cmd, None)
    }

    /// Kills the daemon, container processes and shims, and unmounts everything under the
    /// test's directory.
    fn kill_everything(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let rel = self.cgroup_parent.trim_start_matches('/').to_owned();
        // Shims, runtime helpers (and anything else started from this test's directories) and
        // container processes, together and until none is left twice in a row: a helper a
        // shim started just before its kill may still be putting a process into a cgroup.
        // With the trailing slash, so daemon 1's clean-up never matches daemon 10's paths.
        let needle = format!("{}/", self.dir.display());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut quiet = 0;
        while quiet < 2 && Instant::now() < deadline {
            for base in cgroup_bases() {
                thaw(&base.join(&rel));
            }
            let mut pids = processes_mentioning(&needle);
            pids.extend(self.cgroup_pids());
            if pids.is_empty() {
                quiet += 1;
            } else {
                quiet = 0;
            }
            for p in pids {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut mounts = mounts_under(&self.dir);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        for m in mounts {
            let c = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: umount2 with a valid C string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill_everything();
        let rel = self.cgroup_parent.trim_start_matches('/').to_owned();
        for base in cgroup_bases() {
            remove_cgroup_tree(&base.join(&rel));
        }
        if let Some(n) = &self.netns {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        if std::env::var_os("BERTH_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A client running in a pseudo-terminal, as in a user's shell: the pty is its controlling
/// terminal, so raw mode, SIGWINCH on resize and detach keys all behave as they do for users.
pub struct PtySession {
    master: std::fs::File,
    child: Child,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    /// The thread copying the client's output; done once the terminal closes.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl PtySession {
    /// Starts `cmd` with a fresh pty of `rows` x `cols` as its stdio and controlling terminal.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Self {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::process::CommandExt;
        let mut master: libc::c_int = -1;
        let mut slave: libc::c_int = -1;
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two fds into the out-pointers; name and termios may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &ws,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty succeeded, so both fds are open and owned by nobody else.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: between fork and exec only async-signal-safe calls (setsid, ioctl).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // fd 0 is the slave by now.
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn client in pty");
        drop(cmd);
        let master = std::fs::File::from(master);
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = output.clone();
        let reader_done = std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            // EIO once the last slave fd closes.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        PtySession {
            master,
            child,
            output,
            reader: Some(reader_done),
        }
    }

    /// Everything the client has written so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Types `data` into the terminal.
    pub fn send(&mut self, data: &[u8]) {
        self.master.write_all(data).unwrap();
    }

    /// Waits until the output after byte `from` contains `needle`; returns the end offset.
    #[track_caller]
    pub fn expect_from(&self, from: usize, needle: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            {
                let out = self.output.lock().unwrap();
                let tail = String::from_utf8_lossy(&out[from.min(out.len())..]).into_owned();
                if let Some(i) = tail.find(needle) {
                    return from + i + needle.len();
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needle:?}; output: {:?}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Output length so far (a mark for `expect_from`).
    pub fn mark(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    /// Resizes the terminal; the kernel sends SIGWINCH to the client.
    pub fn resize(&self, rows: u16, cols: u16) {
        use std::os::fd::AsRawFd;
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0);
    }

    /// Waits for the client to exit and returns its exit code.
    #[track_caller]
    pub fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // The client is gone: read what it wrote last (the reader ends with EIO once
                // the last slave fd closes), so output() sees all of it.
                let drained = Instant::now() + Duration::from_secs(5);
                while self.reader.as_ref().is_some_and(|r| !r.is_finished())
                    && Instant::now() < drained
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("client did not exit; output: {:?}", self.output());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for PtySession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// `berth <args>` in a pty of `rows` x `cols`.
    pub fn berth_pty(&self, args: &[&str], rows: u16, cols: u16) -> PtySession {
        let mut cmd = Command::new(bin("berth"));
        cmd.arg("-H").arg(self.host()).args(args);
        PtySession::spawn(cmd, rows, cols)
    }

    /// `docker <args>` in a pty of `rows` x `cols`.
    pub fn docker_pty(&self, args: &[&str], rows: u16, cols: u16) -> PtySession {
        PtySession::spawn(self.docker_command(args), rows, cols)
    }
}

/// A response read by [`Daemon::http`].
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// An HTTP response head: status, lower-cased headers, and the offset where the body starts.
pub type Head = (u16, Vec<(String, String)>, usize);

/// Splits an HTTP/1.1 response head from its body; `None` until the head is complete.
pub fn parse_head(buf: &[u8]) -> Option<Head> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some((status, headers, end + 4))
}

pub fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = data.windows(2).position(|w| w == b"\r\n") {
        let size_str = String::from_utf8_lossy(&data[..i]);
        let size =
            usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        data = &data[i + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

impl Daemon {
    /// `docker events` from `since` until a second from now, with `args` (filters, format).
    pub fn events_since(&self, since: &str, args: &[&str]) -> String {
        let until = (unix_now() + 1).to_string();
        let mut all = vec!["events", "--since", since, "--until", &until];
        all.extend_from_slice(args);
        ok(self.docker(&all))
    }

    /// One raw HTTP/1.1 request on the daemon's socket (`Connection: close`), read to the end.
    pub fn http(&self, method: &str, path: &str, body: Option<&[u8]>) -> HttpResponse {
        use std::io::Read;
        let mut s = std::os::unix::net::UnixStream::connect(&self.sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n");
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        // The daemon may answer (and close) before taking a whole body it refuses.
        let _ = s.write_all(req.as_bytes());
        if let Some(b) = body {
            let _ = s.write_all(b);
        }
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let (status, headers, at) =
            parse_head(&buf).unwrap_or_else(|| panic!("bad response: {buf:?}"));
        let raw = &buf[at..];
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked { dechunk(raw) } else { raw.to_vec() };
        HttpResponse {
            status,
            headers,
            body,
        }
    }
}

/// Runs any client command as the harness runs `berth` and `docker`: output drained while it
/// runs, killed after two minutes (for clients of daemons the harness did not start).
pub fn run_command(cmd: Command, stdin: Option<&[u8]>) -> Output {
    run(cmd, stdin)
}

/// A block device of this machine, as (path, "major:minor").
pub fn some_block_device() -> (String, String) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for e in std::fs::read_dir("/sys/block").unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let path = format!("/dev/{name}");
        if let Ok(m) = std::fs::metadata(&path) {
            if m.file_type().is_block_device() && !name.starts_with("loop") {
                let rdev = m.rdev();
                return (path, format!("{}:{}", libc::major(rdev), libc::minor(rdev)));
            }
        }
    }
    panic!("no block device on this machine");
}

/// A shell line that prints a container's read-bps and write-iops throttles: the blkio files on
/// cgroup v1, `io.max` on v2.
pub const BLKIO_THROTTLES: &str = "cat /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device \
     /sys/fs/cgroup/blkio/blkio.throttle.write_iops_device 2>/dev/null || cat /sys/fs/cgroup/io.max";

/// Whether [`BLKIO_THROTTLES`]'s output shows these limits for device `numbers` (`major:minor`).
pub fn shows_throttles(out: &str, numbers: &str, read_bps: u64, write_iops: u64) -> bool {
    out == format!("{numbers} {read_bps}\n{numbers} {write_iops}")
        || (out.contains(&format!("{numbers} rbps={read_bps}"))
            && out.contains(&format!("wiops={write_iops}")))
}

/// Asserts a command was refused with exit status `code` and `want` in its stderr.
pub fn assert_refused(o: &Output, code: i32, want: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert!(err.contains(want), "{want:?} not in: {err}");
}
