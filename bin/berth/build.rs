//! Links the `berth` command as a position-dependent executable.
//!
//! `berth` is the client every `berth run` starts, and it carries every subcommand (CLI,
//! daemon, runtime, registry): as a PIE the dynamic loader applies ~40,000 relocations and
//! copies their pages at each start, about a millisecond before `main`. Linked non-PIE those
//! are resolved at link time. (The daemon and shim binaries stay PIE: they are long-lived and
//! privileged, where a randomised image base matters more than start-up time.)

fn main() {
    println!("cargo:rustc-link-arg-bin=berth=-no-pie");
}
