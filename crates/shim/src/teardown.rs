//! Removing a stopped container's runtime state without the runtime helper.
//!
//! Once a container's init has exited, libcontainer's delete amounts to: kill what is left in
//! the container's cgroups, remove those cgroups, run poststop hooks, and remove the state
//! directory. Starting the helper for that costs a `run --rm` a few milliseconds on its
//! critical path (the client waits for the removal), so the shim does it itself for a
//! container without hooks, reading the cgroup path from the runtime's own record
//! (`youki_config.json`). Anything unexpected returns an error and the helper's delete runs.

use std::path::{Component, Path};
use std::time::Duration;

use serde_json::Value;

/// How often a busy cgroup is retried (its last tasks may still be exiting), and the first
/// pause; each pause doubles.
const RMDIR_TRIES: u32 = 5;
const RMDIR_PAUSE: Duration = Duration::from_millis(5);

/// Removes the runtime state of the stopped container `id` kept under `runtime_root`.
pub(crate) fn remove_stopped(runtime_root: &Path, id: &str) -> Result<(), String> {
    let state = runtime_root.join(id);
    let record = state.join("youki_config.json");
    let data = std::fs::read(&record).map_err(|e| format!("read {}: {e}", record.display()))?;
    let v: Value =
        serde_json::from_slice(&data).map_err(|e| format!("parse {}: {e}", record.display()))?;
    if !v.get("hooks").is_none_or(Value::is_null) {
        return Err("the container has hooks".into());
    }
    let path = v
        .get("cgroup_path")
        .and_then(Value::as_str)
        .ok_or("no cgroup path in the runtime's record")?;
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("unexpected cgroup path {path:?}"));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("read mountinfo: {e}"))?;
    let mounts: Vec<_> = crate::enter::cgroup_mounts(&mountinfo).collect();
    // A hierarchy mounted from below its root (a nested host) is the helper's business.
    if mounts.iter().any(|m| m.root != "/") {
        return Err("a cgroup hierarchy is mounted from below its root".into());
    }
    for m in &mounts {
        let dir = m.point.join(rel);
        if dir.is_dir() {
            remove_cgroup(&dir)?;
        }
    }
    match std::fs::remove_dir_all(&state) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("remove {}: {e}", state.display())),
    }
}

/// Kills what is left in the cgroup at `dir` and removes it.
fn remove_cgroup(dir: &Path) -> Result<(), String> {
    let mut pause = RMDIR_PAUSE;
    for attempt in 1..=RMDIR_TRIES {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            // 0 stands for a task outside our pid namespace: kill(0) would hit our own group.
            let pids = procs.lines().filter_map(|l| l.trim().parse::<i32>().ok());
            for pid in pids.filter(|p| *p > 0) {
                // SAFETY: kill(2) with a pid read from the container's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if attempt == RMDIR_TRIES => {
                return Err(format!("remove cgroup {}: {e}", dir.display()));
            }
            Err(_) => {
                std::thread::sleep(pause);
                pause *= 2;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_record_it_cannot_trust() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("c1");
        std::fs::create_dir(&state).unwrap();
        let record = state.join("youki_config.json");
        for (body, why) in [
            (
                r#"{"hooks":{"poststop":[]},"cgroup_path":"/x/c1"}"#,
                "hooks",
            ),
            (
                r#"{"hooks":null,"cgroup_path":"/x/../../etc"}"#,
                "unexpected",
            ),
            (r#"{"hooks":null,"cgroup_path":"/"}"#, "unexpected"),
            (r#"{"hooks":null}"#, "no cgroup path"),
        ] {
            std::fs::write(&record, body).unwrap();
            let e = remove_stopped(dir.path(), "c1").unwrap_err();
            assert!(e.contains(why), "{body}: {e}");
            assert!(state.exists(), "nothing removed on a refusal");
        }
        assert!(remove_stopped(dir.path(), "missing").is_err());
    }

    #[test]
    fn removes_the_state_of_a_container_without_cgroups() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("c1");
        std::fs::create_dir(&state).unwrap();
        std::fs::write(
            state.join("youki_config.json"),
            r#"{"hooks":null,"cgroup_path":"/berth-teardown-test-none/c1"}"#,
        )
        .unwrap();
        std::fs::write(state.join("state.json"), "{}").unwrap();
        remove_stopped(dir.path(), "c1").unwrap();
        assert!(!state.exists());
    }
}
