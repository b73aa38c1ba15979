//! `berth-shim`: the per-container supervisor the daemon spawns (internal).

fn main() -> std::process::ExitCode {
    let code = berth_shim::main(std::env::args().collect());
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
