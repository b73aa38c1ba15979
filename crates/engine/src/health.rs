//! Healthchecks: the image's `HEALTHCHECK` or `--health-*` flags, probed inside the running
//! container as Docker probes them. The status (`starting`, `healthy`, `unhealthy`), the
//! failing streak and the last five results live in the container's state (inspect's
//! `State.Health`, the `(healthy)` of `ps`), and each change is a `health_status` event.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::config::HealthConfig;
use crate::exec::ExecConfig;
use crate::shim_client::Frame;
use crate::{ContainerHandle, Engine, lock};

/// Docker's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: i64 = 3;
/// Results kept, and the output kept of each.
const MAX_LOG: usize = 5;
const MAX_OUTPUT: usize = 4096;

/// `State.Health`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<HealthResult>,
}

/// One probe.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

pub const STARTING: &str = "starting";
pub const HEALTHY: &str = "healthy";
pub const UNHEALTHY: &str = "unhealthy";

/// The probe's argv, or `None` when the container has no healthcheck.
pub fn probe_command(cfg: Option<&HealthConfig>, shell: Option<&[String]>) -> Option<Vec<String>> {
    let test = cfg?.test.as_ref()?;
    match test.first().map(String::as_str) {
        Some("CMD") if test.len() > 1 => Some(test[1..].to_vec()),
        Some("CMD-SHELL") if test.len() > 1 => {
            let mut argv = shell
                .filter(|s| !s.is_empty())
                .map(<[String]>::to_vec)
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            argv.push(test[1..].join(" "));
            Some(argv)
        }
        _ => None,
    }
}

fn duration(ns: Option<i64>, default: Duration) -> Duration {
    match ns {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// Applies one probe's result: the new health, and whether its status changed.
pub fn record(
    health: &Health,
    result: HealthResult,
    retries: i64,
    in_start_period: bool,
) -> (Health, bool) {
    let mut h = health.clone();
    if result.exit_code == 0 {
        h.failing_streak = 0;
        h.status = HEALTHY.into();
    } else if !in_start_period {
        // Failures during the start period do not count.
        h.failing_streak += 1;
        if h.failing_streak >= retries {
            h.status = UNHEALTHY.into();
        }
    }
    h.log.push(result);
    if h.log.len() > MAX_LOG {
        let extra = h.log.len() - MAX_LOG;
        h.log.drain(..extra);
    }
    let changed = h.status != health.status;
    (h, changed)
}

impl Engine {
    /// Starts probing a container that has just started, if it has a healthcheck.
    pub(crate) fn start_health(&self, h: &Arc<ContainerHandle>) {
        let rec = h.record();
        let cfg = rec.config.healthcheck.clone();
        let Some(argv) = probe_command(cfg.as_ref(), rec.config.shell.as_deref()) else {
            return;
        };
        let cfg = cfg.unwrap_or_default();
        // (The start set the status to `starting`.)
        // This start is already counted: a later one ends this monitor.
        let starts = h.watch.borrow().starts;
        let engine = self.clone();
        let h = h.clone();
        tokio::spawn(async move {
            let interval = duration(cfg.interval, DEFAULT_INTERVAL);
            let timeout = duration(cfg.timeout, DEFAULT_TIMEOUT);
            let start_period = duration(cfg.start_period, Duration::ZERO);
            let retries = cfg.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES);
            let began = tokio::time::Instant::now();
            let mut watch = h.watch.subscribe();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    // A stop, a restart or a removal ends this monitor.
                    _ = watch.changed() => {}
                }
                let w = watch.borrow().clone();
                if !w.running || w.removed || w.starts != starts {
                    return;
                }
                if h.record().state.status != crate::Status::Running {
                    continue;
                }
                let result = engine.probe(&h, &argv, timeout).await;
                let in_start = began.elapsed() < start_period;
                let (snapshot, changed) = {
                    let mut r = lock(&h.rec);
                    let current = r.state.health.clone().unwrap_or_default();
                    let (next, changed) = record(&current, result, retries, in_start);
                    r.state.health = Some(next);
                    (r.clone(), changed)
                };
                let _ = engine.persist(&snapshot);
                if changed {
                    let status = snapshot
                        .state
                        .health
                        .as_ref()
                        .map(|x| x.status.clone())
                        .unwrap_or_default();
                    engine.emit(&snapshot, &format!("health_status: {status}"));
                }
            }
        });
    }

    /// Runs the probe once in the container, as an exec.
    async fn probe(&self, h: &ContainerHandle, argv: &[String], timeout: Duration) -> HealthResult {
        let start = Utc::now();
        let fmt = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let id = h.record().id;
        let config = ExecConfig {
            cmd: argv.to_vec(),
            attach_stdout: true,
            attach_stderr: true,
            ..ExecConfig::default()
        };
        let run = async {
            let exec_id = self.exec_create(&id, config)?;
            let session = self.exec_start(&exec_id, None).await;
            let mut out = Vec::new();
            let mut code = -1;
            if let Ok(mut s) = session {
                while let Some(f) = s.next().await {
                    match f {
                        Frame::Output(_, b) => {
                            let room = MAX_OUTPUT.saturating_sub(out.len());
                            out.extend_from_slice(&b[..b.len().min(room)]);
                        }
                        Frame::Exit(st) => code = st.exit_code as i64,
                    }
                }
            } else if let Ok(info) = self.exec_inspect(&exec_id) {
                code = info.exit_code.unwrap_or(-1);
            }
            self.exec_forget(&exec_id);
            Ok::<_, crate::EngineError>((code, String::from_utf8_lossy(&out).into_owned()))
        };
        let (exit_code, output) = match tokio::time::timeout(timeout, run).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => (-1, e.to_string()),
            Err(_) => (
                -1,
                format!("Health check exceeded timeout ({}s)", timeout.as_secs()),
            ),
        };
        HealthResult {
            start: fmt(start),
            end: fmt(Utc::now()),
            exit_code,
            output,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i64) -> HealthResult {
        HealthResult {
            exit_code: code,
            ..Default::default()
        }
    }

    #[test]
    fn probe_commands_like_docker() {
        let cfg = |t: &[&str]| HealthConfig {
            test: Some(t.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        assert_eq!(
            probe_command(Some(&cfg(&["CMD", "true"])), None),
            Some(vec!["true".into()])
        );
        assert_eq!(
            probe_command(Some(&cfg(&["CMD-SHELL", "test -f /ok"])), None),
            Some(vec!["/bin/sh".into(), "-c".into(), "test -f /ok".into()])
        );
        assert_eq!(probe_command(Some(&cfg(&["NONE"])), None), None);
        assert_eq!(probe_command(None, None), None);
    }

    #[test]
    fn streaks_retries_and_start_period() {
        let mut h = Health {
            status: STARTING.into(),
            ..Default::default()
        };
        // A failure in the start period does not count.
        let (n, changed) = record(&h, result(1), 2, true);
        assert_eq!(
            (n.status.as_str(), n.failing_streak, changed),
            (STARTING, 0, false)
        );
        h = n;
        let (n, _) = record(&h, result(1), 2, false);
        assert_eq!((n.status.as_str(), n.failing_streak), (STARTING, 1));
        let (n, changed) = record(&n, result(1), 2, false);
        assert_eq!(
            (n.status.as_str(), n.failing_streak, changed),
            (UNHEALTHY, 2, true)
        );
        let (mut n, changed) = record(&n, result(0), 2, false);
        assert_eq!(
            (n.status.as_str(), n.failing_streak, changed),
            (HEALTHY, 0, true)
        );
        for _ in 0..10 {
            n = record(&n, result(0), 2, false).0;
        }
        assert_eq!(n.log.len(), MAX_LOG);
    }
}
