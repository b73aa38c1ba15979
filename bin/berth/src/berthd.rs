//! `berthd`: the Berth daemon. Serves the Docker Engine API on a unix socket.

/// The daemon's allocator. Every API request builds and drops a few hundred small values
/// (records, JSON maps, the serialized body), and glibc's malloc spent about a third of an
/// `inspect`'s user time on them (`malloc_consolidate` included). Built without transparent
/// huge pages (`no_thp`): with them, each arena is backed in 2 MiB pages and the idle daemon's
/// RSS more than doubled. berthd never forks without exec (the shim and the runtime, which
/// do, are their own binaries on the system allocator).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    berth::daemon::main(std::env::args().collect())
}
