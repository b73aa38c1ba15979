//! Small filesystem helpers: atomic writes.

use std::io::Write;
use std::path::Path;

use crate::error::{EngineError, Result};

/// Writes `data` to `path` atomically: a temp file in the same directory, fsync, rename, fsync
/// the directory. A crash leaves the old content or the new, never a mix.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let ctx = || format!("write {}", path.display());
    let mut f = std::fs::File::create(&tmp).map_err(EngineError::io(ctx()))?;
    f.write_all(data).map_err(EngineError::io(ctx()))?;
    f.sync_all().map_err(EngineError::io(ctx()))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(EngineError::io(ctx()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
