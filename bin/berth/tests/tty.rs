//! `run -it`, `exec -it` and `attach` in a real pseudo-terminal, with both the real docker CLI
//! and `berth`: the container sees a tty of the client's size, follows resizes, gets typed
//! input, returns its exit code, and the detach keys leave it running.

mod common;

use common::{Daemon, PtySession, ok};

fn daemon() -> Daemon {
    let d = Daemon::start();
    d.import_busybox();
    d
}

/// Drives an interactive `sh` in the container through `pty`: size, resize, a tty on stdin,
/// then `exit 7`, whose code the client must return.
fn interactive_shell(mut pty: PtySession) {
    // busybox sh as root prints "/ # " once it is ready for input.
    let at = pty.expect_from(0, "# ");
    pty.send(b"stty size; [ -t 0 ] && echo IS-A-TTY\r");
    let at = pty.expect_from(at, "30 100");
    let at = pty.expect_from(at, "IS-A-TTY");
    pty.resize(40, 120);
    // The resize travels client -> daemon -> shim -> container pty asynchronously.
    let mut at = at;
    let mut seen = false;
    for _ in 0..50 {
        let mark = pty.mark();
        pty.send(b"stty size\r");
        let end = pty.expect_from(mark, "# ");
        let chunk = &pty.output()[mark..end];
        at = end;
        if chunk.contains("40 120") {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        seen,
        "resize never reached the container: {:?}",
        pty.output()
    );
    pty.send(b"echo $((6*7))\r");
    pty.expect_from(at, "42");
    pty.send(b"exit 7\r");
    assert_eq!(pty.wait(), Some(7), "{:?}", pty.output());
    assert!(
        !pty.output().contains('\0'),
        "stray NUL: {:?}",
        pty.output()
    );
}

#[test]
fn docker_run_it_is_a_real_terminal() {
    let d = daemon();
    let pty = d.docker_pty(&["run", "-it", "--rm", "busybox", "sh"], 30, 100);
    interactive_shell(pty);
    assert_eq!(ok(d.docker(&["ps", "-aq"])), "", "--rm removes it");
}

#[test]
fn berth_run_it_is_a_real_terminal() {
    let d = daemon();
    let pty = d.berth_pty(&["run", "-it", "--rm", "busybox", "sh"], 30, 100);
    interactive_shell(pty);
    assert_eq!(ok(d.berth(&["ps", "-aq"])), "", "--rm removes it");
}

#[test]
fn exec_it_gets_its_own_terminal() {
    let d = daemon();
    ok(d.docker(&["run", "-d", "--name", "box", "busybox", "sleep", "1000"]));
    interactive_shell(d.docker_pty(&["exec", "-it", "box", "sh"], 30, 100));
    interactive_shell(d.berth_pty(&["exec", "-it", "box", "sh"], 30, 100));
    // An exec made and started over the API (`create` and `start` bodies), in box.
    let exec = |create: &[u8], start: &[u8]| {
        let made = d
            .http("POST", "/v1.43/containers/box/exec", Some(create))
            .json();
        let id = made["Id"].as_str().unwrap().to_owned();
        d.http("POST", &format!("/v1.43/exec/{id}/start"), Some(start))
    };
    // The start's ConsoleSize sizes the terminal before the process runs: no resize call.
    let out = exec(
        br#"{"Cmd":["stty","size"],"Tty":true,"AttachStdout":true}"#,
        br#"{"Detach":false,"Tty":true,"ConsoleSize":[33,77]}"#,
    );
    assert_eq!(out.text().trim(), "33 77");
    // The stream is framed as the start asks, whatever the create said (docker-py's
    // `exec_start` sends `Tty: false` unless told), as dockerd frames it.
    let out = exec(
        br#"{"Cmd":["echo","hi"],"Tty":true,"AttachStdout":true}"#,
        br#"{"Detach":false,"Tty":false}"#,
    );
    assert_eq!(out.body, b"\x01\0\0\0\0\0\0\x04hi\r\n", "{:?}", out.text());
    // The container itself is untouched by its execs ending.
    assert_eq!(
        ok(d.berth(&["inspect", "-f", "{{.State.Status}}", "box"])),
        "running"
    );
    ok(d.berth(&["rm", "-f", "box"]));
}

/// Ctrl-P Ctrl-Q detaches `run -it` (exit 0) and leaves the container running with its input
/// open; a later attach reaches the same shell, and `--detach-keys` picks other keys.
fn detach_and_reattach(d: &Daemon, docker: bool) {
    let name = if docker { "det-docker" } else { "det-berth" };
    let pty = |args: &[&str]| {
        if docker {
            d.docker_pty(args, 24, 80)
        } else {
            d.berth_pty(args, 24, 80)
        }
    };
    let mut run = pty(&["run", "-it", "--name", name, "busybox", "sh"]);
    let at = run.expect_from(0, "# ");
    run.send(b"export MARK=still-here\r");
    run.expect_from(at, "# ");
    run.send(b"\x10\x11");
    assert_eq!(run.wait(), Some(0), "{:?}", run.output());
    assert_eq!(
        ok(d.berth(&["inspect", "-f", "{{.State.Status}}", name])),
        "running"
    );

    let mut att = pty(&["attach", "--detach-keys", "ctrl-x,x", name]);
    // Nothing is printed on attach; ask the shell for its state.
    std::thread::sleep(std::time::Duration::from_millis(300));
    att.send(b"echo $MARK\r");
    att.expect_from(0, "still-here");
    att.send(b"\x18x");
    // Docker's CLI reports a detach from `attach` and exits 1; berth does the same.
    assert_eq!(att.wait(), Some(1), "{:?}", att.output());
    assert!(
        att.output().contains("read escape sequence"),
        "{:?}",
        att.output()
    );
    assert_eq!(
        ok(d.berth(&["inspect", "-f", "{{.State.Status}}", name])),
        "running"
    );
    ok(d.berth(&["rm", "-f", name]));
}

#[test]
fn detach_keys_leave_the_container_running_docker() {
    let d = daemon();
    detach_and_reattach(&d, true);
}

#[test]
fn detach_keys_leave_the_container_running_berth() {
    let d = daemon();
    detach_and_reattach(&d, false);
}
