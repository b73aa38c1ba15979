//! A third client: Python's docker SDK (Debian's python3-docker, which docker-compose
//! brings) runs the flows in `fixtures/sdk_flows.py` against berthd: exec output read after
//! the socket swap, attach with logs, IPAM pools sent with nulls, list filters, stats
//! networks, attach over a WebSocket, and the swarm and plugin answers SDKs probe.

mod common;

use std::process::Command;

use common::Daemon;

#[test]
fn docker_py_flows() {
    let d = Daemon::start();
    d.import_busybox();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sdk_flows.py");
    let o = Command::new("/usr/bin/python3")
        .arg(&script)
        .env("DOCKER_HOST", d.host())
        .output()
        .expect("python3 is installed by scripts/test.sh");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Every check ran.
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        24,
        "{out}"
    );
}
