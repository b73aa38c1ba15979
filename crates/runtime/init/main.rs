//! berth-init: the tiny PID 1 of `--init` containers (bind-mounted at `/sbin/docker-init`).
//!
//! `berth-init -- cmd args...` starts the command as its child, forwards every catchable
//! signal to it, reaps every process that ends up as its child, and exits with the command's
//! status (128 + signal if it was killed). Built statically by the runtime crate's `build.rs`
//! with nothing but `std`, so it runs in images without a libc.

use std::ffi::CString;
use std::os::raw::{c_char, c_int};

#[repr(C)]
struct SigSet([u64; 16]);

unsafe extern "C" {
    fn fork() -> c_int;
    fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn sigfillset(set: *mut SigSet) -> c_int;
    fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn sigwait(set: *const SigSet, sig: *mut c_int) -> c_int;
    fn _exit(code: c_int) -> !;
}

const SIG_SETMASK: c_int = 2;
const WNOHANG: c_int = 1;
const SIGCHLD: c_int = 17;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--") {
        args.remove(0);
    }
    if args.is_empty() {
        eprintln!("berth-init: usage: berth-init -- command [args...]");
        std::process::exit(1);
    }
    let cargs: Vec<CString> = match args.iter().map(|a| CString::new(a.as_bytes())).collect() {
        Ok(v) => v,
        Err(_) => {
            eprintln!("berth-init: argument contains a NUL byte");
            std::process::exit(1);
        }
    };
    let mut argv: Vec<*const c_char> = cargs.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());

    let mut all = SigSet([0; 16]);
    let mut old = SigSet([0; 16]);
    // SAFETY: plain libc calls on stack-owned signal sets; argv is NUL-terminated and its
    // strings outlive the exec call; the child only calls async-signal-safe functions.
    let child = unsafe {
        sigfillset(&mut all);
        sigprocmask(SIG_SETMASK, &all, &mut old);
        let pid = fork();
        if pid == 0 {
            sigprocmask(SIG_SETMASK, &old, std::ptr::null_mut());
            execvp(argv[0], argv.as_ptr());
            _exit(127);
        }
        pid
    };
    if child < 0 {
        eprintln!("berth-init: fork: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    loop {
        let mut sig: c_int = 0;
        // SAFETY: waits for a blocked signal; both pointers are valid for the call.
        if unsafe { sigwait(&all, &mut sig) } != 0 {
            continue;
        }
        if sig != SIGCHLD {
            // SAFETY: forwards the signal to our own child.
            unsafe { kill(child, sig) };
            continue;
        }
        loop {
            let mut status: c_int = 0;
            // SAFETY: reaps any exited child; status is a valid out-pointer.
            let pid = unsafe { waitpid(-1, &mut status, WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                let code = if status & 0x7f == 0 { (status >> 8) & 0xff } else { 128 + (status & 0x7f) };
                std::process::exit(code);
            }
        }
    }
}
