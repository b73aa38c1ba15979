//! Exec into a running container straight from the shim, without a runtime helper.
//!
//! Through the embedded runtime an exec costs a helper process (the exec of a large binary,
//! loading the container's state and spec) and libcontainer's two-process tenant set-up: most
//! of an `exec true`. The shim already holds what an exec needs, the container's init (a
//! pidfd) and its bundle, so for a process it fully understands it starts the process itself,
//! the way runc's `setns` path does:
//!
//! 1. the shim forks; the child makes itself non-dumpable, takes its stdio, closes every
//!    other fd but its report socket, joins the init's cgroups (the same `cgroup.procs`
//!    files), sets the rlimits and `oom_score_adj`, and joins all the init's namespaces in one
//!    `setns` on the pidfd;
//! 2. it forks the process proper, which is the first to exist in the container's pid
//!    namespace (so the container never sees a process with the host's mounts or network),
//!    reports its pid and leaves (the shim, a subreaper, inherits the process);
//! 3. the process takes a session of its own (and a terminal opened in the container, when
//!    asked), enters the working directory (refusing one outside the container's root), sets
//!    no_new_privs, drops the bounding set, takes the user's groups and ids (keeping its
//!    capabilities across the switch), sets the capability and ambient sets, installs the
//!    container's seccomp filter (before the switch when there is no no_new_privs, since it
//!    then needs CAP_SYS_ADMIN; last of all otherwise) and execs, searching PATH.
//!
//! A failure travels back as one message on a close-on-exec socket; its end of stream means
//! the exec happened. What this path does not handle (a terminal, another user namespace, an
//! AppArmor profile or other process fields, a filter that needs libseccomp at load time, an
//! OCI runtime binary) goes through the helper as before ([`Target::probe`] and
//! [`Plan::from_process`] return `None`).

use std::ffi::{CString, c_char};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

// The raw set*id/setgroups calls below take 32-bit ids only on 64-bit targets.
#[cfg(not(target_pointer_width = "64"))]
compile_error!("the shim's exec path assumes a 64-bit target");

use berth_runtime::defaults::CAPABILITIES;
use berth_runtime::seccomp_bpf::{
    EXEC_FILTER_FILE, EXEC_FILTER_MAGIC as FILTER_MAGIC, PREPARED_BUNDLE,
};
/// How long the shim waits for a child to exec before it gives up on it.
const EXEC_TIMEOUT_MS: i32 = 10_000;
/// PATH when the process's environment has none (runc's and Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The namespaces an exec joins, by their `/proc/<pid>/ns` names.
const NAMESPACES: [(&str, libc::c_int); 6] = [
    ("mnt", libc::CLONE_NEWNS),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("pid", libc::CLONE_NEWPID),
];

/// Resource limits by their OCI names.
const RLIMITS: [(&str, libc::__rlimit_resource_t); 16] = [
    ("RLIMIT_CPU", libc::RLIMIT_CPU),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
    ("RLIMIT_DATA", libc::RLIMIT_DATA),
    ("RLIMIT_STACK", libc::RLIMIT_STACK),
    ("RLIMIT_CORE", libc::RLIMIT_CORE),
    ("RLIMIT_RSS", libc::RLIMIT_RSS),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("RLIMIT_AS", libc::RLIMIT_AS),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("RLIMIT_NICE", libc::RLIMIT_NICE),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
];

/// A compiled seccomp filter as the runtime left it for execs.
struct Filter {
    program: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

impl Filter {
    fn parse(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(FILTER_MAGIC.as_slice())?;
        let (flags, program) = rest.split_at_checked(8)?;
        let flags = u64::from_le_bytes(flags.try_into().ok()?);
        let program = berth_runtime::seccomp_bpf::decode(program).ok()?;
        Some(Self {
            program,
            flags: flags as libc::c_ulong,
        })
    }
}

/// What every exec into one container shares, found once per shim.
pub(crate) struct Target {
    /// The container's init.
    pidfd: OwnedFd,
    /// The init's namespaces that differ from the shim's, pid excepted.
    ns_flags: libc::c_int,
    /// Whether the init has a pid namespace of its own.
    pid_ns: bool,
    /// The `cgroup.procs` files of the hierarchies where the init's cgroup is not the shim's.
    cgroup_procs: Vec<CString>,
    filter: Option<Filter>,
    /// The highest capability this kernel knows.
    last_cap: u32,
}

/// Why a [`Target`] could not be set up: the helper takes the execs.
pub(crate) type Unsupported = String;

impl Target {
    /// Looks at the container's init (`pid`, alive and the shim's child, so the pid cannot be
    /// reused under us) and bundle; `Err` names what keeps execs on the helper's path.
    pub(crate) fn probe(
        pid: i32,
        pidfd: BorrowedFd<'_>,
        bundle: &Path,
    ) -> Result<Self, Unsupported> {
        let ns_id = |p: &str, name: &str| {
            std::fs::metadata(format!("/proc/{p}/ns/{name}"))
                .map(|m| (m.dev(), m.ino()))
                .map_err(|e| format!("namespace {name} of {p}: {e}"))
        };
        // setns on a pidfd needs 5.8, close_range 5.9.
        let release = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        let mut v = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().unwrap_or(0));
        if (v.next().unwrap_or(0), v.next().unwrap_or(0)) < (5, 9) {
            return Err(format!("kernel {release} is older than 5.9"));
        }
        let pid_s = pid.to_string();
        for name in ["user", "time"] {
            if ns_id(&pid_s, name)? != ns_id("self", name)? {
                return Err(format!("the container has a {name} namespace of its own"));
            }
        }
        let mut ns_flags = 0;
        let mut pid_ns = false;
        for (name, flag) in NAMESPACES {
            if ns_id(&pid_s, name)? != ns_id("self", name)? {
                if flag == libc::CLONE_NEWPID {
                    pid_ns = true;
                } else {
                    ns_flags |= flag;
                }
            }
        }
        let cgroup_procs = cgroup_procs(pid)?;
        let filter = match exec_filter_needed(bundle)? {
            false => None,
            true => {
                let path = bundle.join(PREPARED_BUNDLE).join(EXEC_FILTER_FILE);
                let bytes = std::fs::read(&path)
                    .map_err(|e| format!("no compiled filter at {}: {e}", path.display()))?;
                Some(Filter::parse(&bytes).ok_or("the compiled filter is malformed")?)
            }
        };
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .ok_or("cannot read cap_last_cap")?;
        let pidfd = pidfd
            .try_clone_to_owned()
            .map_err(|e| format!("dup pidfd: {e}"))?;
        Ok(Self {
            pidfd,
            ns_flags,
            pid_ns,
            cgroup_procs,
            filter,
            last_cap,
        })
    }
}

/// Whether execs need a seccomp filter (the container's original spec, `<bundle>/config.json`,
/// has one); `Err` for a spec with settings libcontainer applies to execs and this path does
/// not (personality, memory policy, Intel RDT).
fn exec_filter_needed(bundle: &Path) -> Result<bool, Unsupported> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let spec: Value =
        serde_json::from_slice(&data).map_err(|e| format!("parse {}: {e}", path.display()))?;
    let set = |p: &str| !spec.pointer(p).is_none_or(Value::is_null);
    for p in [
        "/linux/personality",
        "/linux/memoryPolicy",
        "/linux/intelRdt",
    ] {
        if set(p) {
            return Err(format!("the spec sets {p}"));
        }
    }
    Ok(set("/linux/seccomp"))
}

/// The `cgroup.procs` file for every hierarchy where `pid`'s cgroup differs from the shim's.
fn cgroup_procs(pid: i32) -> Result<Vec<CString>, Unsupported> {
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("read {p}: {e}"));
    let theirs = read(&format!("/proc/{pid}/cgroup"))?;
    let ours = read("/proc/self/cgroup")?;
    let mountinfo = read("/proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in theirs.lines() {
        if ours.lines().any(|l| l == line) {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(c), Some(p)) => (id, c, p),
            _ => return Err(format!("unexpected cgroup line {line:?}")),
        };
        let dir = hierarchy_dir(&mountinfo, controllers, path)
            .ok_or_else(|| format!("no mount for cgroup hierarchy {controllers:?}"))?;
        let file = dir.join("cgroup.procs");
        out.push(CString::new(file.as_os_str().as_bytes()).map_err(|_| "NUL in a cgroup path")?);
    }
    Ok(out)
}

/// One cgroup filesystem mount from mountinfo.
pub(crate) struct CgroupMount {
    /// The mounted cgroup's path in its hierarchy (usually "/").
    pub root: String,
    pub point: PathBuf,
    /// cgroup2 (else a v1 hierarchy).
    pub v2: bool,
    /// The superblock options: a v1 hierarchy's controllers ("rw,cpu,cpuacct").
    pub opts: String,
}

/// The cgroup and cgroup2 mounts in `mountinfo`, in order.
pub(crate) fn cgroup_mounts(mountinfo: &str) -> impl Iterator<Item = CgroupMount> + '_ {
    mountinfo.lines().filter_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (root, point, fstype, opts) = (pre.get(3)?, pre.get(4)?, post.first()?, post.get(2)?);
        let v2 = match *fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => return None,
        };
        Some(CgroupMount {
            root: unescape(root),
            point: PathBuf::from(unescape(point)),
            v2,
            opts: (*opts).to_owned(),
        })
    })
}

/// The directory of cgroup `path` in the hierarchy with `controllers` ("" for cgroup v2),
/// through the first mount of that hierarchy whose root holds it.
fn hierarchy_dir(mountinfo: &str, controllers: &str, path: &str) -> Option<PathBuf> {
    cgroup_mounts(mountinfo).find_map(|m| {
        let matches = if controllers.is_empty() {
            m.v2
        } else {
            !m.v2 && {
                let opts: Vec<&str> = m.opts.split(',').collect();
                controllers.split(',').all(|c| opts.contains(&c))
            }
        };
        if !matches {
            return None;
        }
        let rel = Path::new(path).strip_prefix(&m.root).ok()?;
        Some(m.point.join(rel))
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The five capability sets as bit masks.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Caps {
    bounding: u64,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: u64,
}

/// One exec's process, decoded and laid out for the child before the fork (the child
/// allocates nothing it can avoid).
pub(crate) struct Plan {
    /// The program as asked for, for messages.
    exe: String,
    /// Where to look for it, in order.
    candidates: Vec<CString>,
    _args: Vec<CString>,
    argv: Vec<*const c_char>,
    _env: Vec<CString>,
    envp: Vec<*const c_char>,
    cwd: CString,
    cwd_text: String,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    umask: Option<libc::mode_t>,
    caps: Caps,
    no_new_privs: bool,
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    oom_score_adj: Option<Vec<u8>>,
    /// A new terminal in the container for the process's stdio.
    tty: bool,
    /// The terminal's size (rows, columns) from `consoleSize`, set before the process runs.
    console_size: Option<libc::winsize>,
}

fn cstring(s: &str, what: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{what} contains a NUL byte"))
}

fn strings(v: Option<&Value>, what: &str) -> Result<Vec<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{what} must hold strings"))
            })
            .collect(),
        Some(_) => Err(format!("{what} must be a list")),
    }
}

/// The bit mask of a capability set; `None` for a name this code does not know (the helper
/// then decides) or an absent set (libcontainer's "leave it alone").
fn cap_mask(v: Option<&Value>) -> Result<Option<u64>, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let mut mask = 0u64;
    for name in strings(Some(v), "a capability set")? {
        match CAPABILITIES.iter().position(|c| *c == name) {
            Some(bit) => mask |= 1 << bit,
            None => return Ok(None),
        }
    }
    Ok(Some(mask))
}

fn id(v: Option<&Value>, what: &str) -> Result<u32, String> {
    match v {
        None => Ok(0),
        Some(x) => x
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("{what} must be a 32-bit id")),
    }
}

/// An OCI process's `consoleSize` as a terminal size, if it has one.
pub(crate) fn console_size(process: &Value) -> Result<Option<libc::winsize>, String> {
    let Some(c) = process.get("consoleSize").filter(|c| !c.is_null()) else {
        return Ok(None);
    };
    let dim = |k: &str| {
        c.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| format!("consoleSize.{k} must be a 16-bit number"))
    };
    Ok(Some(libc::winsize {
        ws_row: dim("height")?,
        ws_col: dim("width")?,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }))
}

impl Plan {
    /// Decodes an OCI process object; `Ok(None)` when it asks for something only the
    /// runtime does (AppArmor, scheduling, ...), `Err` when it is malformed.
    pub(crate) fn from_process(p: &Value) -> Result<Option<Self>, String> {
        let Some(obj) = p.as_object() else {
            return Err("the process is not an object".into());
        };
        const KNOWN: [&str; 10] = [
            "terminal",
            "consoleSize",
            "user",
            "args",
            "env",
            "cwd",
            "capabilities",
            "rlimits",
            "noNewPrivileges",
            "oomScoreAdj",
        ];
        if obj.keys().any(|k| !KNOWN.contains(&k.as_str())) {
            return Ok(None);
        }
        let tty = obj.get("terminal").and_then(Value::as_bool) == Some(true);
        let user = obj.get("user").cloned().unwrap_or(Value::Null);
        if let Some(u) = user.as_object()
            && u.keys().any(|k| {
                !["uid", "gid", "umask", "additionalGids", "username"].contains(&k.as_str())
            })
        {
            return Ok(None);
        }
        let uid = id(user.get("uid"), "user.uid")?;
        let gid = id(user.get("gid"), "user.gid")?;
        let groups = match user.get("additionalGids") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|g| id(Some(g), "user.additionalGids"))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("user.additionalGids must be a list".into()),
        };
        let umask = match user.get("umask") {
            None | Some(Value::Null) => None,
            Some(m) => Some(id(Some(m), "user.umask")? & 0o777),
        };

        let console_size = console_size(p)?;
        let args = strings(obj.get("args"), "args")?;
        let Some(exe) = args.first().cloned() else {
            return Err("args must not be empty".into());
        };
        let env = strings(obj.get("env"), "env")?;
        let cwd_text = obj
            .get("cwd")
            .and_then(Value::as_str)
            .unwrap_or("/")
            .to_owned();
        if !cwd_text.starts_with('/') {
            return Err(format!("cwd {cwd_text:?} is not an absolute path"));
        }

        let caps = match obj.get("capabilities") {
            None | Some(Value::Null) => return Ok(None),
            Some(c) => {
                let sets = [
                    cap_mask(c.get("bounding"))?,
                    cap_mask(c.get("effective"))?,
                    cap_mask(c.get("permitted"))?,
                    cap_mask(c.get("inheritable"))?,
                    cap_mask(c.get("ambient"))?,
                ];
                let [
                    Some(bounding),
                    Some(effective),
                    Some(permitted),
                    Some(inheritable),
                    Some(ambient),
                ] = sets
                else {
                    return Ok(None);
                };
                Caps {
                    bounding,
                    effective,
                    permitted,
                    inheritable,
                    ambient,
                }
            }
        };

        let mut rlimits = Vec::new();
        if let Some(list) = obj.get("rlimits").filter(|v| !v.is_null()) {
            let list = list.as_array().ok_or("rlimits must be a list")?;
            for r in list {
                let name = r.get("type").and_then(Value::as_str).unwrap_or_default();
                let Some(&(_, res)) = RLIMITS.iter().find(|(n, _)| *n == name) else {
                    return Ok(None);
                };
                let num = |k: &str| {
                    r.get(k)
                        .and_then(Value::as_u64)
                        .ok_or_else(|| format!("rlimit {name}: {k} must be a number"))
                };
                rlimits.push((
                    res,
                    libc::rlimit {
                        rlim_cur: num("soft")?,
                        rlim_max: num("hard")?,
                    },
                ));
            }
        }
        let no_new_privs = obj
            .get("noNewPrivileges")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let oom_score_adj = match obj.get("oomScoreAdj") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .filter(|n| (-1000..=1000).contains(n))
                    .ok_or("oomScoreAdj must be between -1000 and 1000")?
                    .to_string()
                    .into_bytes(),
            ),
        };

        let candidates = if exe.contains('/') {
            vec![cstring(&exe, "the command")?]
        } else {
            let path = env
                .iter()
                .rev()
                .find_map(|e| e.strip_prefix("PATH="))
                .unwrap_or(DEFAULT_PATH);
            path.split(':')
                .map(|dir| {
                    let dir = if dir.is_empty() { "." } else { dir };
                    cstring(&format!("{dir}/{exe}"), "the command")
                })
                .collect::<Result<_, _>>()?
        };
        let args: Vec<CString> = args
            .iter()
            .map(|a| cstring(a, "an argument"))
            .collect::<Result<_, _>>()?;
        let env: Vec<CString> = env
            .iter()
            .map(|e| cstring(e, "an environment variable"))
            .collect::<Result<_, _>>()?;
        let argv = args
            .iter()
            .map(|a| a.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        let envp = env
            .iter()
            .map(|e| e.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        Ok(Some(Self {
            exe,
            candidates,
            _args: args,
            argv,
            _env: env,
            envp,
            cwd: cstring(&cwd_text, "cwd")?,
            cwd_text,
            uid,
            gid,
            groups,
            umask,
            caps,
            no_new_privs,
            rlimits,
            oom_score_adj,
            tty,
            console_size,
        }))
    }
}

/// The exec's stdio.
pub(crate) enum ExecStdio {
    /// The child's pipe ends (stdin absent means /dev/null).
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A new terminal, opened in the container; [`spawn`] returns its master.
    Terminal,
}

fn errno_text(e: i32) -> String {
    std::io::Error::from_raw_os_error(e)
        .to_string()
        .split(" (os error")
        .next()
        .unwrap_or_default()
        .to_lowercase()
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Starts the process `plan` describes in `target`'s container; returns its pid (the shim's
/// child) once it has exec'd, and the terminal's master when it has one.
pub(crate) fn spawn(
    target: &Target,
    plan: &Plan,
    stdio: ExecStdio,
) -> Result<(i32, Option<OwnedFd>), String> {
    if plan.tty != matches!(stdio, ExecStdio::Terminal) {
        return Err("a terminal process needs terminal stdio, and only it".into());
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| format!("open /dev/null: {e}"))?;
    let raw = |fd: &Option<OwnedFd>| fd.as_ref().unwrap_or(&null).as_raw_fd();
    let (stdin, stdout, stderr) = match &stdio {
        ExecStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => (raw(stdin), stdout.as_raw_fd(), stderr.as_raw_fd()),
        // The terminal replaces them once it is open.
        ExecStdio::Terminal => (null.as_raw_fd(), null.as_raw_fd(), null.as_raw_fd()),
    };
    let (ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    let fds = ChildFds {
        stdin,
        stdout,
        stderr,
        report: theirs.as_raw_fd(),
        pidfd: target.pidfd.as_raw_fd(),
    };
    // SAFETY: the shim is single-threaded, so the child's copy of the process is consistent;
    // the child only runs `child`, which ends in execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        child(target, plan, &fds);
    }
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    drop(theirs);
    drop(stdio);
    drop(null);
    // The first child leaves once it has forked the process (or failed); the shim's reap
    // loop collects it, as it does the process: nothing here blocks on a child, which a
    // frozen cgroup could hold forever.
    let mut report = Report::default();
    let outcome = wait_report(&ours, &mut report);
    let kill = |p: Option<i32>| {
        if let Some(p) = p {
            // SAFETY: kill(2) of a process this exec started.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    };
    match outcome {
        Ok(None) => match report.pid {
            Some(p) if plan.tty && report.master.is_none() => {
                kill(Some(p));
                Err("the process started without its terminal".into())
            }
            Some(p) => Ok((p, report.master)),
            None => Err("unable to start container process: it died before it started".into()),
        },
        Ok(Some(msg)) => {
            kill(report.pid);
            Err(msg)
        }
        Err(e) => {
            kill(Some(pid));
            kill(report.pid);
            Err(e)
        }
    }
}

/// What the child reports besides a failure.
#[derive(Default)]
struct Report {
    /// The exec'd process (in the shim's pid namespace).
    pid: Option<i32>,
    /// Its terminal's master.
    master: Option<OwnedFd>,
}

/// Waits for the child's report: `None` when it exec'd (end of stream), its message when it
/// failed. The process's pid ([`PID_MSG`]) and a terminal's master (a [`TERMINAL_MSG`]
/// carrying the fd) arrive on the way, into `report`.
fn wait_report(sock: &OwnedFd, report: &mut Report) -> Result<Option<String>, String> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(EXEC_TIMEOUT_MS as u64);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err("the exec'd process did not start within 10 s".into());
        }
        // SAFETY: poll on one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        if n <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = loop {
            match rustix::net::recvmsg(
                sock,
                &mut [std::io::IoSliceMut::new(&mut buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Err(rustix::io::Errno::INTR) => continue,
                r => break r,
            }
        };
        let mut fds = Vec::new();
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = m {
                fds.extend(received);
            }
        }
        match got {
            Ok(msg) if msg.bytes == 0 && fds.is_empty() => return Ok(None),
            Ok(msg)
                if &buf[..msg.bytes] == TERMINAL_MSG
                    && fds.len() == 1
                    && report.master.is_none() =>
            {
                report.master = fds.pop();
            }
            Ok(msg) if fds.is_empty() && buf[..msg.bytes].starts_with(PID_MSG) => {
                let pid = std::str::from_utf8(&buf[PID_MSG.len()..msg.bytes])
                    .ok()
                    .and_then(|p| p.parse::<i32>().ok())
                    .filter(|p| *p > 0)
                    .ok_or("malformed pid in the exec report")?;
                report.pid = Some(pid);
            }
            Ok(msg) if fds.is_empty() => {
                return Ok(Some(
                    String::from_utf8_lossy(&buf[..msg.bytes]).into_owned(),
                ));
            }
            Ok(_) => return Err("unexpected fds in the exec report".into()),
            Err(e) => return Err(format!("read the exec report: {e}")),
        }
    }
}

/// The message that carries a terminal's master to the shim.
const TERMINAL_MSG: &[u8] = b"T";
/// The prefix of the message with the process's pid (decimal follows). Failure messages all
/// start with "unable".
const PID_MSG: &[u8] = b"pid=";

/// The fds the child starts from (numbers in the shim).
struct ChildFds {
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    report: RawFd,
    pidfd: RawFd,
}

/// Where the child keeps its report socket and the init's pidfd.
const REPORT_FD: RawFd = 3;
const PIDFD_FD: RawFd = 4;

/// Reports `msg` to the shim and leaves.
fn fail(msg: &str) -> ! {
    // SAFETY: a write of a valid buffer to our report socket, then _exit.
    unsafe {
        libc::write(REPORT_FD, msg.as_ptr().cast(), msg.len());
        libc::_exit(1)
    }
}

fn check(rc: libc::c_int, what: &str) {
    if rc < 0 {
        fail(&format!(
            "unable to start container process: {what}: {}",
            errno_text(last_errno())
        ));
    }
}

/// Sets every signal's disposition to the default with the raw system call: glibc's wrappers
/// refuse its internal signals (32 and 33), which the daemon's posix_spawn leaves ignored.
pub(crate) fn default_signals() {
    /// The kernel's `struct sigaction` on x86_64 (handler, flags, restorer, mask).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a valid struct and an 8-byte mask size; SIG_DFL installs
        // no handler code.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
}

/// Tells the shim the pid of the process that will exec.
fn report_pid(pid: libc::pid_t) {
    let msg = format!("pid={pid}");
    // SAFETY: a write of a valid buffer to our report socket.
    if unsafe { libc::write(REPORT_FD, msg.as_ptr().cast(), msg.len()) } < 0 {
        check(-1, "report the pid");
    }
}

/// The child: from a copy of the shim to the container's process. Never returns.
fn child(t: &Target, p: &Plan, fds: &ChildFds) -> ! {
    // SAFETY: (the whole function) plain system calls on fds and buffers this process owns; the
    // process is a single-threaded fresh fork that ends in execve or _exit.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // Default dispositions: an ignored signal would stay ignored across execve (the
        // daemon's posix_spawn leaves glibc's internal signals ignored in the shim).
        default_signals();
        // Nothing in the container may ptrace this copy of the shim or open its /proc files
        // before it becomes the container's program (execve makes it dumpable again).
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);

        // Stdio at 0-2, the report socket and pidfd at 3-4, nothing else: no host fd may be
        // reachable from the container (CVE-2024-21626). The shim's own 0-2 are always open,
        // so the fds handed in are all above 2 and the dups below clobber none of them.
        let report = libc::fcntl(fds.report, libc::F_DUPFD_CLOEXEC, 10);
        if report < 0 {
            libc::_exit(1);
        }
        let early_fail = |what: &str| -> ! {
            let msg = format!(
                "unable to start container process: {what}: {}",
                errno_text(last_errno())
            );
            libc::write(report, msg.as_ptr().cast(), msg.len());
            libc::_exit(1)
        };
        let pidfd = libc::fcntl(fds.pidfd, libc::F_DUPFD_CLOEXEC, 10);
        if pidfd < 0 {
            early_fail("keep the init's pidfd");
        }
        if libc::dup2(fds.stdin, 0) < 0
            || libc::dup2(fds.stdout, 1) < 0
            || libc::dup2(fds.stderr, 2) < 0
        {
            early_fail("set up stdio");
        }
        if libc::dup3(report, REPORT_FD, libc::O_CLOEXEC) < 0 {
            early_fail("keep the report socket");
        }
        check(
            libc::dup3(pidfd, PIDFD_FD, libc::O_CLOEXEC),
            "keep the init's pidfd",
        );
        check(
            libc::syscall(libc::SYS_close_range, PIDFD_FD + 1, u32::MAX, 0) as libc::c_int,
            "close fds",
        );

        for path in &t.cgroup_procs {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                fail(&format!(
                    "unable to start container process: join cgroup {}: {}",
                    path.to_string_lossy(),
                    errno_text(last_errno())
                ));
            }
            libc::close(fd);
        }
        for (res, lim) in &p.rlimits {
            check(libc::setrlimit(*res, lim), "set rlimits");
        }
        if let Some(adj) = &p.oom_score_adj {
            // The host's /proc, before the mount namespace changes.
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            check(fd, "set oom_score_adj");
            if libc::write(fd, adj.as_ptr().cast(), adj.len()) != adj.len() as isize {
                check(-1, "set oom_score_adj");
            }
            libc::close(fd);
        }
        // All of the init's namespaces at once. The pid namespace applies to children only:
        // the process proper is forked below, so that it appears in the container already in
        // all of them (never with the host's mounts or network in reach of the container).
        let flags = t.ns_flags | if t.pid_ns { libc::CLONE_NEWPID } else { 0 };
        if flags != 0 {
            check(
                libc::setns(PIDFD_FD, flags),
                "join the container's namespaces",
            );
        }
        libc::close(PIDFD_FD);
        if t.pid_ns {
            let pid = libc::fork();
            check(pid, "fork into the container's pid namespace");
            if pid > 0 {
                report_pid(pid);
                libc::_exit(0);
            }
        } else {
            report_pid(libc::getpid());
        }
        // A session of its own, as every container process gets (runc and libcontainer too):
        // not the shim's session and process group.
        libc::setsid();
        if p.tty {
            open_terminal(p.console_size.as_ref());
        }
        if let Some(mask) = p.umask {
            libc::umask(mask);
        }

        if libc::chdir(p.cwd.as_ptr()) != 0 {
            fail(&format!(
                "unable to start container process: chdir to cwd ({:?}) set in config.json failed: {}",
                p.cwd_text,
                errno_text(last_errno())
            ));
        }
        // A cwd outside the container's root (a leaked directory fd) reads back without its
        // leading '/' ("(unreachable)/...").
        let mut buf = [0u8; 4096];
        let rc = libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len());
        if rc <= 0 || buf[0] != b'/' {
            fail(
                "unable to start container process: current working directory is outside of \
                 container mount namespace root -- possible container breakout detected",
            );
        }

        if p.no_new_privs {
            check(
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
                "set no_new_privs",
            );
        }
        if let Some(f) = &t.filter
            && !p.no_new_privs
        {
            install(f);
        }
        for cap in 0..=t.last_cap.min(63) {
            if p.caps.bounding & (1 << cap) == 0 {
                let rc = libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
                if rc < 0 && last_errno() != libc::EINVAL {
                    check(rc, "drop from the bounding set");
                }
            }
        }
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
            "keep capabilities",
        );
        check(
            libc::syscall(libc::SYS_setgroups, p.groups.len(), p.groups.as_ptr()) as libc::c_int,
            "set groups",
        );
        check(
            libc::syscall(libc::SYS_setresgid, p.gid, p.gid, p.gid) as libc::c_int,
            "set gid",
        );
        check(
            libc::syscall(libc::SYS_setresuid, p.uid, p.uid, p.uid) as libc::c_int,
            "set uid",
        );
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0),
            "keep capabilities",
        );
        set_capabilities(&p.caps);
        if let Some(f) = &t.filter
            && p.no_new_privs
        {
            install(f);
        }

        let mut denied = false;
        for c in &p.candidates {
            libc::execve(c.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
            match last_errno() {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => denied = true,
                e => fail(&format!(
                    "unable to start container process: exec: {:?}: {}",
                    p.exe,
                    errno_text(e)
                )),
            }
        }
        // As runc's PATH lookup: a file found on PATH that cannot be run is skipped, so only
        // a path given with a slash is "permission denied"; a search that finds nothing
        // runnable is "not found".
        if denied && p.exe.contains('/') {
            fail(&format!(
                "unable to start container process: exec: {:?}: permission denied",
                p.exe
            ));
        }
        if p.exe.contains('/') {
            fail(&format!(
                "unable to start container process: exec: {:?}: stat {}: no such file or directory",
                p.exe, p.exe
            ));
        }
        fail(&format!(
            "unable to start container process: exec: {:?}: executable file not found in $PATH",
            p.exe
        ))
    }
}

/// In the container's mount namespace: opens a new terminal on the container's devpts (both
/// ends checked to be real devpts terminals, so nothing the container put at /dev/ptmx is
/// taken for one), sizes it, sends its master to the shim and makes the other end this
/// process's controlling terminal and stdio.
fn open_terminal(size: Option<&libc::winsize>) {
    const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;
    const PTMX: (u32, u32) = (5, 2);
    /// UNIX98 pty slaves: majors 136-143.
    const PTS_MAJORS: std::ops::RangeInclusive<u32> = 136..=143;
    let is_devpts = |fd: RawFd, want: &dyn Fn(u32, u32) -> bool| -> bool {
        // SAFETY: fstat/fstatfs fill the plain structs they are given for an fd we own.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            let mut fs: libc::statfs = std::mem::zeroed();
            libc::fstat(fd, &mut st) == 0
                && libc::fstatfs(fd, &mut fs) == 0
                && fs.f_type as i64 == DEVPTS_SUPER_MAGIC
                && st.st_mode & libc::S_IFMT == libc::S_IFCHR
                && want(libc::major(st.st_rdev), libc::minor(st.st_rdev))
        }
    };
    // SAFETY: open, ioctl, sendmsg and dup2 on fds this process owns, with valid buffers.
    unsafe {
        let master = libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        check(master, "open /dev/ptmx");
        if !is_devpts(master, &|ma, mi| (ma, mi) == PTMX) {
            fail(
                "unable to start container process: /dev/ptmx is not a devpts terminal multiplexer",
            );
        }
        let mut unlock: libc::c_int = 0;
        check(
            libc::ioctl(master, libc::TIOCSPTLCK, &mut unlock),
            "unlock the terminal",
        );
        let slave = libc::ioctl(master, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY);
        check(slave, "open the terminal");
        if !is_devpts(slave, &|ma, _| PTS_MAJORS.contains(&ma)) {
            fail("unable to start container process: the terminal is not a devpts terminal");
        }
        if let Some(ws) = size {
            check(
                libc::ioctl(master, libc::TIOCSWINSZ, ws as *const libc::winsize),
                "size the terminal",
            );
        }
        let fds = [master];
        /// Control-message space, aligned as `cmsghdr` needs.
        #[repr(C, align(8))]
        struct Space([u8; 64]);
        let mut space = Space([0; 64]);
        let mut iov = libc::iovec {
            iov_base: TERMINAL_MSG.as_ptr().cast_mut().cast(),
            iov_len: TERMINAL_MSG.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.0.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of_val(&fds) as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(&fds) as u32) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), 1);
        if libc::sendmsg(REPORT_FD, &msg, 0) < 0 {
            check(-1, "send the terminal");
        }
        libc::close(master);
        check(
            libc::ioctl(slave, libc::TIOCSCTTY, 0),
            "make the terminal the controlling one",
        );
        for fd in 0..3 {
            check(libc::dup2(slave, fd), "set up the terminal's stdio");
        }
        if slave > 2 {
            libc::close(slave);
        }
    }
}

/// Sets the effective, permitted and inheritable sets, then the ambient set.
fn set_capabilities(c: &Caps) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [0, 32].map(|shift| Data {
        effective: (c.effective >> shift) as u32,
        permitted: (c.permitted >> shift) as u32,
        inheritable: (c.inheritable >> shift) as u32,
    });
    // SAFETY: capset with a version-3 header and its two data words.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    check(rc as libc::c_int, "set capabilities");
    // SAFETY: prctl calls with integer arguments only.
    unsafe {
        check(
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            ),
            "clear the ambient set",
        );
        for cap in 0..64u64 {
            if c.ambient & (1 << cap) != 0 {
                check(
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE,
                        cap as libc::c_ulong,
                        0,
                        0,
                    ),
                    "raise an ambient capability",
                );
            }
        }
    }
}

/// Installs the container's seccomp filter on this (only) thread.
fn install(f: &Filter) {
    if berth_runtime::seccomp_bpf::install_program(&f.program, f.flags).is_err() {
        check(-1, "install the seccomp filter");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_hierarchy_directory_of_v1_and_v2_cgroups() {
        let mi = "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                  31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                  32 25 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
                  33 25 0:29 /sub /mnt/my\\040dir rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            hierarchy_dir(mi, "cpu,cpuacct", "/x/c1"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/x/c1"))
        );
        assert_eq!(
            hierarchy_dir(mi, "", "/x/c1"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/x/c1"))
        );
        assert_eq!(
            hierarchy_dir(mi, "memory", "/sub/c1"),
            Some(PathBuf::from("/mnt/my dir/c1"))
        );
        // Outside the mounted root, or a hierarchy that is not mounted: no directory.
        assert_eq!(hierarchy_dir(mi, "memory", "/other"), None);
        assert_eq!(hierarchy_dir(mi, "blkio", "/x"), None);
    }

    fn process() -> Value {
        json!({
            "terminal": false,
            "user": {"uid": 65534, "gid": 65534, "additionalGids": [10, 20]},
            "args": ["sh", "-c", "true"],
            "env": ["A=1", "PATH=/bin:/usr/bin"],
            "cwd": "/tmp",
            "capabilities": {
                "bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_CHOWN"],
                "permitted": ["CAP_CHOWN"], "inheritable": [], "ambient": []
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}],
            "noNewPrivileges": true,
            "oomScoreAdj": 5
        })
    }

    #[test]
    fn decodes_what_docker_execs_carry() {
        let p = Plan::from_process(&process()).unwrap().unwrap();
        assert_eq!(
            (p.uid, p.gid, p.groups.clone()),
            (65534, 65534, vec![10, 20])
        );
        assert_eq!(
            p.caps,
            Caps {
                bounding: 1 | 1 << 5,
                effective: 1,
                permitted: 1,
                inheritable: 0,
                ambient: 0
            }
        );
        let c: Vec<_> = p.candidates.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(c, ["/bin/sh", "/usr/bin/sh"]);
        assert_eq!(p.argv.len(), 4);
        assert!(p.argv[3].is_null() && p.envp[2].is_null());
        assert_eq!(p.rlimits[0].1.rlim_cur, 100);
        assert!(p.no_new_privs);
        assert_eq!(p.oom_score_adj.as_deref(), Some(&b"5"[..]));
    }

    #[test]
    fn leaves_what_it_does_not_know_to_the_runtime() {
        for (k, v) in [
            ("apparmorProfile", json!("docker-default")),
            ("selinuxLabel", json!("x")),
        ] {
            let mut p = process();
            p[k] = v;
            assert!(Plan::from_process(&p).unwrap().is_none(), "{k}");
        }
        let mut p = process();
        p["capabilities"]["effective"] = json!(["CAP_FUTURE_THING"]);
        assert!(Plan::from_process(&p).unwrap().is_none());
        let mut p = process();
        p["rlimits"] = json!([{"type": "RLIMIT_FUTURE", "soft": 1, "hard": 1}]);
        assert!(Plan::from_process(&p).unwrap().is_none());
    }

    #[test]
    fn refuses_malformed_processes() {
        for (k, v) in [
            ("args", json!([])),
            ("args", json!(["a\0b"])),
            ("cwd", json!("relative")),
            ("oomScoreAdj", json!(5000)),
        ] {
            let mut p = process();
            p[k] = v;
            assert!(Plan::from_process(&p).is_err(), "{k}");
        }
    }

    #[test]
    fn a_command_with_a_slash_is_not_searched() {
        let mut p = process();
        p["args"] = json!(["./run.sh"]);
        let plan = Plan::from_process(&p).unwrap().unwrap();
        assert_eq!(plan.candidates, [CString::new("./run.sh").unwrap()]);
    }

    #[test]
    fn filter_files_are_checked() {
        let mut f = FILTER_MAGIC.to_vec();
        f.extend(8u64.to_le_bytes());
        assert!(Filter::parse(&f).is_none(), "empty program");
        f.extend([0u8; 16]);
        let parsed = Filter::parse(&f).unwrap();
        assert_eq!((parsed.program.len(), parsed.flags), (2, 8));
        f.push(0);
        assert!(Filter::parse(&f).is_none(), "ragged program");
        assert!(Filter::parse(b"NOTBERTH\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0").is_none());
    }
}
