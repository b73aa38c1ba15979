//! What the engine tells a shim to run: written by the engine as `shim.json` in the container's
//! runtime directory, read by the shim at start.

use std::path::PathBuf;

use berth_runtime::RuntimeKind;
use serde::{Deserialize, Serialize};

/// The shim's whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimConfig {
    /// The container id (the runtime's id too).
    pub id: String,
    /// The OCI bundle directory holding `config.json`.
    pub bundle: PathBuf,
    /// Where the shim listens for the engine.
    pub socket: PathBuf,
    /// Where the shim records the exit status (JSON [`crate::protocol::ExitStatus`]).
    pub exit_file: PathBuf,
    /// The json-file log; `None` disables logging (log driver `none`).
    pub log_path: Option<PathBuf>,
    /// Rotate the log past this many bytes (0: never).
    pub log_max_size: u64,
    /// Keep this many log files in all, the live one included (at least 1).
    pub log_max_file: u32,
    /// Attributes written into every log line (`--log-opt labels/env/tag`).
    #[serde(default)]
    pub log_attrs: std::collections::BTreeMap<String, String>,
    pub runtime: RuntimeKind,
    /// The runtime's state directory.
    pub runtime_root: PathBuf,
    /// The container's cgroup path (relative to the cgroup roots), to read OOM kills.
    pub cgroups_path: String,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
}

impl ShimConfig {
    /// Reads the configuration from a JSON file.
    pub fn load(path: &std::path::Path) -> Result<Self, std::io::Error> {
        let data = std::fs::read(path)?;
        serde_json::from_slice(&data).map_err(std::io::Error::other)
    }
}
