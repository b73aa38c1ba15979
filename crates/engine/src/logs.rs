//! Container logs: the json-file log read back with Docker's options (stdout/stderr, tail,
//! since, until) and followed while the container runs.

use std::time::Duration;

use berth_shim::jsonlog::{self, Entry, Follower, Stream};
use tokio::sync::mpsc;

use crate::Engine;
use crate::containers::LogOptions;
use crate::error::{EngineError, Result};

impl Engine {
    /// Streams a container's log entries. Returns whether the container has a tty (the output
    /// is then raw) and the entries; with `follow` the channel stays open until the container
    /// stops and its last lines are read.
    pub fn logs(&self, key: &str, opts: LogOptions) -> Result<(bool, mpsc::Receiver<Entry>)> {
        let h = self.resolve(key)?;
        let rec = h.record();
        if rec.host_config.log_config.kind == "none" {
            return Err(EngineError::InvalidArgument(
                "configured logging driver does not support reading".into(),
            ));
        }
        if !opts.stdout && !opts.stderr {
            return Err(EngineError::InvalidArgument(
                "Bad parameters: you must choose at least one stream".into(),
            ));
        }
        let (path, ..) = self.container_paths(&rec.id);
        let keep = move |e: &Entry| {
            (match e.stream {
                Stream::Stdout => opts.stdout,
                Stream::Stderr => opts.stderr,
            }) && opts.since.is_none_or(|t| e.time >= t)
                && opts.until.is_none_or(|t| e.time <= t)
        };
        // Start following before reading the backlog, so nothing falls in between.
        let mut follower = Follower::at_end(&path);
        let mut backlog: Vec<Entry> = jsonlog::read_all(&path)
            .map_err(EngineError::io(format!("read {}", path.display())))?;
        backlog.retain(&keep);
        if let Some(n) = opts.tail {
            let skip = backlog.len().saturating_sub(n);
            backlog.drain(..skip);
        }
        let (tx, rx) = mpsc::channel(256);
        let follow = opts.follow
            && rec.state.is_running()
            && opts.until.is_none_or(|t| t > chrono::Utc::now());
        let mut watch = h.watch.subscribe();
        let until = opts.until;
        tokio::spawn(async move {
            for e in backlog {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
            if !follow {
                return;
            }
            loop {
                let stopped = {
                    let w = watch.borrow_and_update();
                    !w.running || w.removed
                };
                let fresh = match follower.read_new() {
                    Ok(v) => v,
                    Err(_) => return,
                };
                for e in fresh.into_iter().filter(&keep) {
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
                if stopped || until.is_some_and(|t| chrono::Utc::now() > t) {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = watch.changed() => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok((rec.config.tty, rx))
    }
}
