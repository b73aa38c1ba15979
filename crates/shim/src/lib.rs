//! The per-container supervisor ("shim").
//!
//! One small single-threaded process per running container. It creates and starts the container
//! through a [`berth_runtime::Runtime`], holds its pty or stdio pipes, writes the json-file log
//! ([`jsonlog`]), reaps the container's init and exec processes, records the exit status, and
//! serves attach, exec, resize, kill and pause to the engine over its own unix socket
//! ([`protocol`]). It is not tied to the daemon's lifetime: the daemon can die and come back and
//! reconnect.
//!
//! The shim lives as long as its container, so its memory counts once per container. It never
//! maps the embedded runtime: libcontainer runs in short-lived helper processes
//! (`berth-shim-runtime`, [`helper`]), and once the container runs the shim drops the pages its
//! start-up touched (`memory`). Two jobs it does itself for the embedded runtime, being on
//! latency-critical paths: starting exec processes (`enter`) and removing a stopped container's
//! cgroups and runtime state (`teardown`).

pub mod config;
mod enter;
pub mod helper;
pub mod jsonlog;
pub mod memory;
pub mod protocol;
mod supervisor;
mod teardown;

pub use config::ShimConfig;
pub use helper::HELPER_BINARY;
pub use supervisor::main;
