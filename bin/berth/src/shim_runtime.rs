//! `berth-shim-runtime`: runs the embedded container runtime for `berth-shim`, one short-lived
//! process per operation, so the shim itself never maps libcontainer (internal).

fn main() -> std::process::ExitCode {
    let code = berth_shim::helper::main(std::env::args().collect());
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
