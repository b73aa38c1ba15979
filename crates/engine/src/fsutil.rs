//! Small filesystem helpers: atomic file replacement. (Durable state lives in redb.)

use std::path::Path;

use crate::error::{EngineError, Result};

/// Replaces `path` with `data` atomically (temp file + rename) but without fsync: for files
/// rebuilt at every container start (bundle config, /etc files, shim config), where a crash
/// only means writing them again, and the fsyncs would cost every start milliseconds.
pub fn write_replace(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let ctx = || format!("write {}", path.display());
    std::fs::write(&tmp, data).map_err(EngineError::io(ctx()))?;
    std::fs::rename(&tmp, path).map_err(EngineError::io(ctx()))
}
