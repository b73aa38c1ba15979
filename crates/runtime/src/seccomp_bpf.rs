//! Seccomp filters compiled once and installed by the container's init right before exec.
//!
//! libcontainer hands the OCI `linux.seccomp` object to libseccomp in every container init and
//! every exec, and libseccomp needs 10-15 ms of CPU to compile Docker's default profile (x86_64
//! with its x86 and x32 sub-architectures): a third of a `run --rm`. Here the object is compiled
//! once, the BPF program cached under the runtime's state root by a hash of the object and the
//! kernel release, and installed by [`SeccompExecutor`], libcontainer's last step before exec.
//!
//! Installing a filter needs CAP_SYS_ADMIN (or no_new_privs), and libcontainer drops
//! capabilities before the executor runs. So [`prepare`] hands libcontainer a spec without
//! `linux.seccomp` whose process keeps CAP_SYS_ADMIN (and CAP_SETPCAP, to change the bounding
//! set); the executor then removes what was added from the bounding set, installs the filter,
//! removes the rest from the effective and permitted sets and execs. The container's process
//! ends with exactly the capability sets and the filter of the original spec: execve computes
//! its permitted set from the bounding, inheritable and ambient sets, which are the spec's.
//!
//! Specs that need libseccomp at load time (notify actions, a listener, `WAIT_KILLABLE_RECV`)
//! or run hooks inside the container keep libcontainer's own path.

use std::collections::HashSet;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use libseccomp::ScmpSyscall;
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, Process, Spec,
};
use rustix::thread::CapabilitySet;
use sha2::{Digest, Sha256};

use crate::RuntimeError;

/// Where, inside the original bundle, the spec handed to libcontainer is written.
pub const PREPARED_BUNDLE: &str = ".berth-embedded";
/// Beside the prepared spec: the compiled filter for the execs the shim starts itself
/// (`berth_shim`'s `enter`): [`EXEC_FILTER_MAGIC`], the seccomp(2) flags (u64, little-endian),
/// then the program as the kernel takes it.
pub const EXEC_FILTER_FILE: &str = "exec-seccomp.bpf";
/// The first bytes of [`EXEC_FILTER_FILE`].
pub const EXEC_FILTER_MAGIC: &[u8; 8] = b"BERTHBPF";
/// The original `linux.seccomp` object, kept beside the prepared spec for execs.
const SECCOMP_FILE: &str = "seccomp.json";
/// Cache of compiled programs under the runtime's state root.
const CACHE_DIR: &str = ".seccomp";
/// Part of the cache key: bump when the compilation below changes.
const CACHE_FORMAT: &str = "berth-seccomp-bpf-1";
/// The kernel's limit on classic BPF program length (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

fn err(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Seccomp(format!("{what}: {e}"))
}

/// A compiled filter with the `seccomp(2)` flags it is installed with.
#[derive(Clone)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

impl Filter {
    /// The compiled program for `seccomp`, from the cache under `state_root` or compiled now
    /// (and cached). `None` when the object needs libseccomp at load time.
    pub fn for_spec(
        state_root: &Path,
        seccomp: &LinuxSeccomp,
    ) -> Result<Option<Filter>, RuntimeError> {
        let Some(flags) = cacheable_flags(seccomp) else {
            return Ok(None);
        };
        let json = serde_json::to_vec(seccomp).map_err(|e| err("encode", e))?;
        let kernel = rustix::system::uname();
        let mut h = Sha256::new();
        h.update(CACHE_FORMAT.as_bytes());
        h.update([0]);
        // Another libseccomp or Berth may compile the same profile differently.
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        if let Ok(v) = libseccomp::ScmpVersion::current() {
            h.update(format!("{}.{}.{}", v.major, v.minor, v.micro).as_bytes());
        }
        h.update([0]);
        h.update(kernel.release().to_bytes());
        h.update([0]);
        h.update(&json);
        let key: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let dir = state_root.join(CACHE_DIR);
        let path = dir.join(format!("{key}.bpf"));
        let cached = std::fs::read(&path).ok().and_then(|b| decode(&b).ok());
        let program = match cached {
            Some(p) => p,
            None => {
                let b = compile(seccomp)?;
                // The cache is an optimisation: a failure to write it costs the next start
                // another compilation, nothing more.
                let _ = store(&dir, &path, &b);
                decode(&b)?
            }
        };
        Ok(Some(Filter { program, flags }))
    }

    /// The filter as [`EXEC_FILTER_FILE`] holds it.
    fn exec_file(&self) -> Vec<u8> {
        let mut out = EXEC_FILTER_MAGIC.to_vec();
        out.extend(self.flags.to_le_bytes());
        for i in &self.program {
            out.extend(i.code.to_ne_bytes());
            out.extend([i.jt, i.jf]);
            out.extend(i.k.to_ne_bytes());
        }
        out
    }

    /// Installs the filter on the calling thread.
    fn install(&self) -> std::io::Result<()> {
        install_program(&self.program, self.flags)
    }
}

/// Installs a classic BPF seccomp `program` (at most [`MAX_INSNS`] instructions) on the calling
/// thread with the seccomp(2) `flags`; the caller needs no_new_privs or CAP_SYS_ADMIN.
pub fn install_program(program: &[libc::sock_filter], flags: libc::c_ulong) -> std::io::Result<()> {
    if program.is_empty() || program.len() > MAX_INSNS {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let prog = libc::sock_fprog {
        // Checked above: at most MAX_INSNS (4096) instructions.
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads `prog` and the program it points to,
    // both alive for the duration of the call; it does not write to them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The `seccomp(2)` flags for the object's filter flags, or `None` when the object needs
/// libseccomp (or a seccomp agent) at load time.
fn cacheable_flags(seccomp: &LinuxSeccomp) -> Option<libc::c_ulong> {
    let notify = |a: LinuxSeccompAction| a == LinuxSeccompAction::ScmpActNotify;
    if notify(seccomp.default_action())
        || seccomp.listener_path().is_some()
        || seccomp
            .syscalls()
            .iter()
            .flatten()
            .any(|s| notify(s.action()))
    {
        return None;
    }
    let mut flags = 0;
    for f in seccomp.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => return None,
        };
    }
    Some(flags)
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, RuntimeError> {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(u16::try_from(errno).map_err(|e| err("trace errno", e))?)
        }
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

fn compare_op(op: LinuxSeccompOperator, mask: Option<u64>) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(mask.unwrap_or(0)),
    }
}

/// Compiles the object with libseccomp into the raw program, following the OCI semantics as
/// runc applies them: rules whose action is the default are redundant and skipped, syscalls
/// this libseccomp does not know are skipped, and comparisons on one argument index repeated
/// within a rule become one rule each.
fn compile(seccomp: &LinuxSeccomp) -> Result<Vec<u8>, RuntimeError> {
    let default = action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err("new filter", e))?;
    ctx.set_ctl_nnp(false)
        .map_err(|e| err("nnp attribute", e))?;
    for arch in seccomp.architectures().iter().flatten() {
        let name = serde_json::to_value(arch).map_err(|e| err("architecture", e))?;
        let name = name.as_str().unwrap_or_default();
        let a: ScmpArch = name.parse().map_err(|e| err(name, e))?;
        ctx.add_arch(a).map_err(|e| err(name, e))?;
    }
    for rule in seccomp.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        let cmps: Vec<ScmpArgCompare> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| {
                ScmpArgCompare::new(
                    a.index() as u32,
                    compare_op(a.op(), a.value_two()),
                    a.value(),
                )
            })
            .collect();
        let mut seen = HashSet::new();
        let repeated = !rule.args().iter().flatten().all(|a| seen.insert(a.index()));
        for name in rule.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let added = if cmps.is_empty() {
                ctx.add_rule(act, sc).map(drop)
            } else if repeated {
                cmps.iter().try_for_each(|c| {
                    ctx.add_rule_conditional(act, sc, std::slice::from_ref(c))
                        .map(drop)
                })
            } else {
                ctx.add_rule_conditional(act, sc, &cmps).map(drop)
            };
            added.map_err(|e| err(&format!("rule for {name}"), e))?;
        }
    }
    let mut out = tempfile_in_memory()?;
    ctx.export_bpf(out.as_fd()).map_err(|e| err("export", e))?;
    let mut bytes = Vec::new();
    use std::io::{Read, Seek};
    out.rewind()
        .and_then(|_| out.read_to_end(&mut bytes))
        .map_err(|e| err("read program", e))?;
    Ok(bytes)
}

/// An anonymous in-memory file for libseccomp to write the program to.
fn tempfile_in_memory() -> Result<std::fs::File, RuntimeError> {
    rustix::fs::memfd_create("berth-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
        .map(std::fs::File::from)
        .map_err(|e| err("memfd", e))
}

/// Parses a raw program, refusing one the kernel would refuse.
pub fn decode(bytes: &[u8]) -> Result<Vec<libc::sock_filter>, RuntimeError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(8) || bytes.len() / 8 > MAX_INSNS {
        return Err(RuntimeError::Seccomp(format!(
            "compiled program of {} bytes is not a valid BPF program",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// Writes a cache entry: temp file then rename, so readers see all of it or nothing. No fsync:
/// the cache lives under the runtime's state root and can always be rebuilt.
fn store(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", crate::libcontainer_rt::rand_suffix()));
    let mut f = std::fs::File::create(&tmp)?;
    let r = f.write_all(bytes).and_then(|_| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Capabilities the process gets for the executor and loses again in it.
#[derive(Clone)]
struct Borrowed {
    /// Removed from the bounding set before the filter is installed.
    bounding: Vec<CapabilitySet>,
    /// Removed from the effective and permitted sets after it.
    sets: CapabilitySet,
}

impl Default for Borrowed {
    fn default() -> Self {
        Self {
            bounding: Vec::new(),
            sets: CapabilitySet::empty(),
        }
    }
}

fn has(set: &Option<HashSet<Capability>>, c: Capability) -> bool {
    // An absent set is left alone by libcontainer: the process keeps all it had (everything).
    set.as_ref().is_none_or(|s| s.contains(&c))
}

fn add(set: &mut Option<HashSet<Capability>>, c: Capability) {
    if let Some(s) = set {
        s.insert(c);
    }
}

/// Gives `caps` CAP_SYS_ADMIN in its effective set (and CAP_SETPCAP when the bounding set
/// must shrink afterwards), recording what to take back.
fn borrow(caps: &mut LinuxCapabilities) -> Borrowed {
    let mut out = Borrowed::default();
    let pairs = [
        (Capability::SysAdmin, CapabilitySet::SYS_ADMIN),
        (Capability::Setpcap, CapabilitySet::SETPCAP),
    ];
    for (i, (cap, bit)) in pairs.into_iter().enumerate() {
        // CAP_SETPCAP is needed only to drop something from the bounding set.
        if i == 1 && out.bounding.is_empty() {
            break;
        }
        if has(caps.effective(), cap) {
            continue;
        }
        let (mut eff, mut perm, mut bnd) = (
            caps.effective().clone(),
            caps.permitted().clone(),
            caps.bounding().clone(),
        );
        add(&mut eff, cap);
        add(&mut perm, cap);
        if !has(&bnd, cap) {
            add(&mut bnd, cap);
            out.bounding.push(bit);
        }
        caps.set_effective(eff);
        caps.set_permitted(perm);
        caps.set_bounding(bnd);
        out.sets |= bit;
    }
    // Drop CAP_SETPCAP from the bounding set last: it is what allows the other drops.
    out.bounding.reverse();
    out
}

/// libcontainer's default executor, preceded by installing the filter and giving back the
/// borrowed capabilities.
#[derive(Clone)]
pub struct SeccompExecutor {
    filter: Filter,
    borrowed: Borrowed,
}

impl SeccompExecutor {
    fn lock_down(&self) -> std::io::Result<()> {
        for bit in self.borrowed.bounding.iter().rev() {
            rustix::thread::remove_capability_from_bounding_set(*bit)?;
        }
        self.filter.install()?;
        if !self.borrowed.sets.is_empty() {
            // The filter may forbid capset; execve drops these anyway (they are in neither
            // the bounding, inheritable nor ambient set any more), so a refusal is harmless.
            if let Ok(mut sets) = rustix::thread::capabilities(None) {
                sets.effective -= self.borrowed.sets;
                sets.permitted -= self.borrowed.sets;
                let _ = rustix::thread::set_capabilities(None, sets);
            }
        }
        Ok(())
    }
}

impl Executor for SeccompExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        self.lock_down()
            .map_err(|e| ExecutorError::Other(format!("install seccomp filter: {e}")))?;
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// Rewrites the container's spec for libcontainer and writes it, with the original seccomp
/// object, into `<bundle>/.berth-embedded/`:
/// - a missing or empty `HOME` is filled from the container's passwd file
///   ([`crate::user::fill_home`]);
/// - for the cached filter, `linux.seccomp` goes and the process is lent the capabilities to
///   install it; the executor then does.
///
/// Returns that directory and the executor (`None` when seccomp keeps libcontainer's own path),
/// or `None` when the original bundle can go to libcontainer as it is.
pub(crate) fn prepare(state_root: &Path, bundle: &Path) -> Result<Prepared, RuntimeError> {
    // A filter left by an earlier start must not outlive a spec that no longer has one.
    let _ = std::fs::remove_file(bundle.join(PREPARED_BUNDLE).join(EXEC_FILTER_FILE));
    let config = bundle.join("config.json");
    let mut spec = Spec::load(&config).map_err(|e| RuntimeError::Spec(e.to_string()))?;
    if let Some(root) = spec.root().clone() {
        let mut root = root;
        if root.path().is_relative() {
            root.set_path(bundle.join(root.path()));
        }
        spec.set_root(Some(root));
    }
    let mut home_filled = false;
    if let (Some(mut process), Some(root)) = (spec.process().clone(), spec.root().clone()) {
        home_filled = crate::user::fill_home(&mut process, root.path());
        spec.set_process(Some(process));
    }
    let readonly_cgroups = crate::cgroup_ro::wants_readonly(&spec);
    let disable_oom_killer = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.disable_oom_killer())
        == Some(true);
    let cached = cached_filter(state_root, &mut spec)?;
    if cached.is_none() && !home_filled {
        return Ok(Prepared {
            spec: None,
            readonly_cgroups,
            disable_oom_killer,
        });
    }
    let dir = bundle.join(PREPARED_BUNDLE);
    std::fs::create_dir_all(&dir).map_err(RuntimeError::io("create", &dir))?;
    let spec_json = serde_json::to_vec(&spec).map_err(|e| RuntimeError::Spec(e.to_string()))?;
    let mut files = vec![("config.json", spec_json)];
    let executor = match cached {
        Some((seccomp, filter, borrowed)) => {
            let seccomp_json =
                serde_json::to_vec(&seccomp).map_err(|e| RuntimeError::Spec(e.to_string()))?;
            files.push((SECCOMP_FILE, seccomp_json));
            files.push((EXEC_FILTER_FILE, filter.exec_file()));
            Some(SeccompExecutor { filter, borrowed })
        }
        None => {
            let _ = std::fs::remove_file(dir.join(SECCOMP_FILE));
            None
        }
    };
    for (name, data) in files {
        let path = dir.join(name);
        store(&dir, &path, &data).map_err(RuntimeError::io("write", &path))?;
    }
    Ok(Prepared {
        spec: Some((dir, executor)),
        readonly_cgroups,
        disable_oom_killer,
    })
}

/// What [`prepare`] found: the rewritten bundle and executor (`None` when the original
/// bundle goes to libcontainer as it is), and whether the spec wants `/sys/fs/cgroup`
/// read-only (see [`crate::cgroup_ro`]).
pub(crate) struct Prepared {
    pub spec: Option<(PathBuf, Option<SeccompExecutor>)>,
    pub readonly_cgroups: bool,
    /// The spec's `memory.disableOOMKiller`, which libcontainer does not apply.
    pub disable_oom_killer: bool,
}

/// For the cached filter: takes `linux.seccomp` out of `spec` and lends its process the
/// capabilities to install it. Returns the original object, the filter and what was lent, or
/// `None` when the spec keeps libcontainer's own seccomp path (left unchanged then).
fn cached_filter(
    state_root: &Path,
    spec: &mut Spec,
) -> Result<Option<(LinuxSeccomp, Filter, Borrowed)>, RuntimeError> {
    let Some(mut linux) = spec.linux().clone() else {
        return Ok(None);
    };
    let Some(seccomp) = linux.seccomp().clone() else {
        return Ok(None);
    };
    if spec.hooks().is_some() {
        return Ok(None);
    }
    let Some(mut process) = spec.process().clone() else {
        return Ok(None);
    };
    if !can_lend(&process) {
        return Ok(None);
    }
    let Some(filter) = Filter::for_spec(state_root, &seccomp)? else {
        return Ok(None);
    };
    let borrowed = lend(&mut process);
    linux.set_seccomp(None);
    spec.set_linux(Some(linux));
    spec.set_process(Some(process));
    Ok(Some((seccomp, filter, borrowed)))
}

/// For an exec into a container (its libcontainer bundle is `bundle`): lends `process` the
/// capabilities and returns the executor with the container's filter. libcontainer's own exec
/// path drops `linux.seccomp`, so an exec never goes without it here: a filter that needs
/// libseccomp at load time (a notify agent) refuses the exec instead. `None` only for a
/// container without a filter.
pub(crate) fn prepare_exec(
    state_root: &Path,
    bundle: &Path,
    process: &mut Process,
) -> Result<Option<SeccompExecutor>, RuntimeError> {
    let prepared = bundle.file_name().is_some_and(|n| n == PREPARED_BUNDLE);
    let seccomp: Option<LinuxSeccomp> = if prepared {
        // A prepared bundle without the file: the spec had no filter, or libcontainer
        // installs it (`prepare` leaves `linux.seccomp` in the prepared spec then).
        let path = bundle.join(SECCOMP_FILE);
        match std::fs::read(&path) {
            Ok(data) => {
                Some(serde_json::from_slice(&data).map_err(|e| RuntimeError::Spec(e.to_string()))?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let config = bundle.join("config.json");
                let spec = Spec::load(&config).map_err(|e| RuntimeError::Spec(e.to_string()))?;
                spec.linux().as_ref().and_then(|l| l.seccomp().clone())
            }
            Err(e) => return Err(RuntimeError::io("read", &path)(e)),
        }
    } else {
        let config = bundle.join("config.json");
        let spec = Spec::load(&config).map_err(|e| RuntimeError::Spec(e.to_string()))?;
        spec.linux().as_ref().and_then(|l| l.seccomp().clone())
    };
    let Some(seccomp) = seccomp else {
        return Ok(None);
    };
    let filter = Filter::for_spec(state_root, &seccomp)?.ok_or_else(|| {
        RuntimeError::Seccomp(
            "exec into a container whose seccomp profile needs a notify agent is not supported"
                .into(),
        )
    })?;
    if !can_lend(process) {
        return Err(RuntimeError::Seccomp(
            "exec with CAP_SYS_ADMIN or CAP_SETPCAP inheritable but not effective is not supported"
                .into(),
        ));
    }
    let borrowed = lend(process);
    Ok(Some(SeccompExecutor { filter, borrowed }))
}

/// Whether the capabilities can be lent safely: a capability the process will not have in
/// its effective set must not be in its inheritable or ambient sets either (execve would
/// keep it through them), and with no_new_privileges nothing needs lending at all.
fn can_lend(process: &Process) -> bool {
    let Some(caps) = process.capabilities() else {
        return true;
    };
    [Capability::SysAdmin, Capability::Setpcap]
        .into_iter()
        .all(|c| {
            has(caps.effective(), c) || !(has(caps.inheritable(), c) || has(caps.ambient(), c))
        })
}

fn lend(process: &mut Process) -> Borrowed {
    // libcontainer sets no_new_privileges first thing in the init: the filter then goes in
    // without any capability.
    if process.no_new_privileges() == Some(true) {
        return Borrowed::default();
    }
    match process.capabilities().clone() {
        Some(mut caps) => {
            let b = borrow(&mut caps);
            process.set_capabilities(Some(caps));
            b
        }
        // No capability object: libcontainer leaves the process with all it has.
        None => Borrowed::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(eff: &[Capability], bnd: &[Capability]) -> LinuxCapabilities {
        let mut c = LinuxCapabilities::default();
        c.set_effective(Some(eff.iter().copied().collect()));
        c.set_permitted(Some(eff.iter().copied().collect()));
        c.set_bounding(Some(bnd.iter().copied().collect()));
        c.set_inheritable(Some(HashSet::new()));
        c.set_ambient(Some(HashSet::new()));
        c
    }

    #[test]
    fn an_empty_home_is_filled_from_the_containers_passwd_in_a_prepared_spec() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(bundle.join("rootfs/etc")).unwrap();
        std::fs::write(
            bundle.join("rootfs/etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/srv/app:/bin/sh\n",
        )
        .unwrap();
        let mut spec = Spec::default();
        let mut process = spec.process().clone().unwrap();
        let mut user = process.user().clone();
        user.set_uid(1000);
        process.set_user(user);
        process.set_env(Some(vec!["PATH=/bin".into(), "HOME=".into()]));
        spec.set_process(Some(process));
        if let Some(mut linux) = spec.linux().clone() {
            linux.set_seccomp(None);
            spec.set_linux(Some(linux));
        }
        spec.set_hooks(None);
        spec.save(bundle.join("config.json")).unwrap();
        let state = dir.path().join("state");
        let (prepared, executor) = prepare(&state, &bundle)
            .unwrap()
            .spec
            .expect("a prepared spec");
        assert!(executor.is_none(), "no filter in this spec");
        assert_eq!(prepared, bundle.join(PREPARED_BUNDLE));
        let out = Spec::load(prepared.join("config.json")).unwrap();
        let env = out.process().as_ref().unwrap().env().clone().unwrap();
        assert_eq!(env, ["PATH=/bin", "HOME=/srv/app"]);
        assert_eq!(out.root().as_ref().unwrap().path(), &bundle.join("rootfs"));
        // A spec with a HOME of its own goes to libcontainer as it is.
        let mut spec = out;
        let mut process = spec.process().clone().unwrap();
        process.set_env(Some(vec!["HOME=/x".into()]));
        spec.set_process(Some(process));
        spec.save(bundle.join("config.json")).unwrap();
        assert!(prepare(&state, &bundle).unwrap().spec.is_none());
    }

    #[test]
    fn borrows_sys_admin_and_setpcap_and_gives_back_only_those() {
        let mut c = caps(&[Capability::Chown], &[Capability::Chown]);
        let b = borrow(&mut c);
        let eff = c.effective().clone().unwrap();
        assert!(eff.contains(&Capability::SysAdmin) && eff.contains(&Capability::Setpcap));
        assert!(
            c.bounding()
                .clone()
                .unwrap()
                .contains(&Capability::SysAdmin)
        );
        assert_eq!(b.sets, CapabilitySet::SYS_ADMIN | CapabilitySet::SETPCAP);
        // CAP_SETPCAP leaves the bounding set last.
        assert_eq!(
            b.bounding,
            vec![CapabilitySet::SETPCAP, CapabilitySet::SYS_ADMIN]
        );
        assert!(c.inheritable().clone().unwrap().is_empty());
        assert!(c.ambient().clone().unwrap().is_empty());
    }

    #[test]
    fn docker_default_set_borrows_only_sys_admin() {
        // Docker's default set has CAP_SETPCAP.
        let set = [Capability::Setpcap, Capability::Chown];
        let mut c = caps(&set, &set);
        let b = borrow(&mut c);
        assert_eq!(b.sets, CapabilitySet::SYS_ADMIN);
        assert_eq!(b.bounding, vec![CapabilitySet::SYS_ADMIN]);
    }

    #[test]
    fn nothing_borrowed_when_sys_admin_is_granted() {
        let set = [Capability::SysAdmin];
        let mut c = caps(&set, &set);
        let b = borrow(&mut c);
        assert!(b.sets.is_empty() && b.bounding.is_empty());
    }

    #[test]
    fn non_root_with_sys_admin_only_in_bounding_needs_no_bounding_drop() {
        let mut c = caps(&[], &[Capability::SysAdmin]);
        let b = borrow(&mut c);
        assert_eq!(b.sets, CapabilitySet::SYS_ADMIN);
        assert!(b.bounding.is_empty());
    }

    #[test]
    fn nothing_lent_that_execve_would_keep() {
        let mut p = Process::default();
        let mut c = caps(&[Capability::Chown], &[Capability::Chown]);
        assert!(can_lend(&{
            p.set_capabilities(Some(c.clone()));
            p.clone()
        }));
        // SYS_ADMIN inheritable but not effective: lending it would let it through execve.
        c.set_inheritable(Some([Capability::SysAdmin].into_iter().collect()));
        p.set_capabilities(Some(c));
        assert!(!can_lend(&p));
        // With no_new_privileges nothing is lent.
        p.set_no_new_privileges(Some(true));
        let b = lend(&mut p);
        assert!(b.sets.is_empty() && b.bounding.is_empty());
    }

    #[test]
    fn notify_and_listener_profiles_stay_on_libcontainers_path() {
        let p: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }))
        .unwrap();
        assert!(cacheable_flags(&p).is_none());
        let p: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "flags": ["SECCOMP_FILTER_FLAG_LOG"]
        }))
        .unwrap();
        assert_eq!(cacheable_flags(&p), Some(libc::SECCOMP_FILTER_FLAG_LOG));
    }

    #[test]
    fn compiles_caches_and_decodes_the_default_profile() {
        let caps: Vec<String> = crate::defaults::DEFAULT_CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .collect();
        let oci = crate::seccomp::to_oci(crate::seccomp::DEFAULT_PROFILE, &caps).unwrap();
        let seccomp: LinuxSeccomp = serde_json::from_value(oci).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = Filter::for_spec(dir.path(), &seccomp).unwrap().unwrap();
        assert!(f.program.len() > 100, "{}", f.program.len());
        let cached: Vec<_> = std::fs::read_dir(dir.path().join(CACHE_DIR))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(cached.len(), 1);
        let again = Filter::for_spec(dir.path(), &seccomp).unwrap().unwrap();
        assert_eq!(again.program.len(), f.program.len());
        // A corrupt entry is never installed: it is compiled again and replaced.
        std::fs::write(cached[0].path(), b"12345").unwrap();
        let fixed = Filter::for_spec(dir.path(), &seccomp).unwrap().unwrap();
        assert_eq!(fixed.program.len(), f.program.len());
        assert_eq!(
            std::fs::read(cached[0].path()).unwrap().len(),
            8 * f.program.len()
        );
    }

    #[test]
    fn decode_refuses_what_the_kernel_would() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[0; 12]).is_err());
        assert!(decode(&vec![0; 8 * (MAX_INSNS + 1)]).is_err());
        assert_eq!(decode(&[0; 16]).unwrap().len(), 2);
    }
}
