//! Builds `berth-init` (init/main.rs), the static PID 1 for `--init`, with the same rustc.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    println!("cargo:rerun-if-changed=init/main.rs");
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2024",
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args([
            "-C",
            "target-feature=+crt-static",
            "--crate-name",
            "berth_init",
            "-o",
        ])
        .arg(out.join("berth-init"))
        .arg("init/main.rs")
        .status()
        .expect("running rustc for berth-init");
    assert!(status.success(), "building berth-init failed");
}
