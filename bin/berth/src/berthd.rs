//! `berthd`: the Berth daemon. Serves the Docker Engine API on a unix socket.

fn main() -> std::process::ExitCode {
    berth::daemon::main(std::env::args().collect())
}
