//! `berth`: the docker-compatible command line. `berth daemon` runs the daemon and
//! `berth runtime ...` the OCI runtime CLI, so one binary can do every job.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("daemon") => {
            let mut rest = vec!["berthd".to_owned()];
            rest.extend(args.into_iter().skip(2));
            return berth::daemon::main(rest);
        }
        Some("runtime") => berth_runtime::oci_cli::main(args.into_iter().skip(1).collect()),
        _ => berth_cli::main(args),
    };
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
