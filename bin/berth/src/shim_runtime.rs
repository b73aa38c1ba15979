//! `berth-shim-runtime`: runs the embedded container runtime for `berth-shim`, one short-lived
//! process per operation, so the shim itself never maps libcontainer (internal).
//! `berth-shim-runtime runtime ...` is the OCI runtime CLI (as `berth runtime`), which build
//! steps run through.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let code = if args.get(1).map(String::as_str) == Some("runtime") {
        berth_runtime::oci_cli::main(args.into_iter().skip(1).collect())
    } else {
        berth_shim::helper::main(args)
    };
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
