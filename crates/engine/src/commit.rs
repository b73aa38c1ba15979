//! `docker commit`: a container's filesystem changes become a new layer on top of its image,
//! and its config (with `--change` instructions applied) the new image's config.

use std::path::Path;

use berth_image::CommitOptions;
use rustix::fs::{FileType, Stat};

use crate::Engine;
use crate::changes::MOUNT_POINTS;
use crate::config::Config;
use crate::error::{EngineError, Result};
use crate::images::{apply_changes, parse_reference};

/// `POST /commit` parameters.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// `repo[:tag]` of the new image.
    pub reference: Option<String>,
    pub comment: String,
    pub author: String,
    /// Dockerfile instructions applied to the config (`--change "CMD ..."`).
    pub changes: Vec<String>,
    /// A config from the request body, overriding the container's where set.
    pub config: Option<Config>,
    /// Freeze the container while its files are read (the default).
    pub pause: bool,
}

/// Directories the runtime makes as mount points when the image lacks them; Docker keeps
/// them in its init layer, so a commit never carries them.
const MOUNT_DIRS: [&str; 3] = ["proc", "sys", "dev"];

/// Whether an entry of the container's upper directory is only a runtime mount point.
fn is_mount_point(rel: &Path, st: &Stat) -> bool {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {
            st.st_size == 0 && MOUNT_POINTS.iter().any(|m| rel == Path::new(m))
        }
        FileType::Directory => MOUNT_DIRS.iter().any(|m| rel == Path::new(m)),
        _ => false,
    }
}

/// Fields of `over` that are set replace `base`'s (moby's `merge` of a commit config).
fn merge(mut base: Config, over: Config) -> Config {
    macro_rules! take {
        ($($f:ident),*) => {$(
            if over.$f.is_some() {
                base.$f = over.$f;
            }
        )*};
    }
    take!(
        cmd,
        entrypoint,
        env,
        exposed_ports,
        volumes,
        labels,
        healthcheck,
        on_build,
        stop_signal,
        shell
    );
    if !over.user.is_empty() {
        base.user = over.user;
    }
    if !over.working_dir.is_empty() {
        base.working_dir = over.working_dir;
    }
    base
}

impl Engine {
    /// Commits a container to a new image; returns the image id.
    pub async fn commit(&self, key: &str, req: CommitRequest) -> Result<String> {
        let reference = req.reference.as_deref().map(parse_reference).transpose()?;
        let h = self.resolve(key)?;
        let rec = h.record();
        let container_config = serde_json::to_value(&rec.config).ok();
        let mut config = rec.config.clone();
        if let Some(over) = req.config.clone() {
            config = merge(config, over);
        }
        apply_changes(&mut config, &req.changes)?;
        // What the container was run with is not part of the image.
        config.hostname = String::new();
        config.domainname = String::new();
        config.attach_stdin = false;
        config.attach_stdout = false;
        config.attach_stderr = false;
        config.tty = false;
        config.open_stdin = false;
        config.stdin_once = false;
        let image = self.inner.images.get(&rec.image_id)?;
        let config_json = serde_json::to_value(&config)
            .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;

        let pause =
            req.pause && rec.state.is_running() && rec.state.status != crate::Status::Paused;
        if pause {
            self.set_paused(&rec.id, true).await?;
        }
        let image_ref = reference.as_ref().map(|r| r.familiar()).unwrap_or_default();
        let opts = CommitOptions {
            reference,
            config: config_json,
            author: req.author.clone(),
            comment: req.comment.clone(),
            created_by: rec.config.cmd.clone().unwrap_or_default().join(" "),
            container_config,
        };
        let engine = self.clone();
        let id = rec.id.clone();
        let result = tokio::task::spawn_blocking(move || {
            engine
                .inner
                .images
                .commit_container(&id, &image, &opts, Box::new(is_mount_point))
        })
        .await;
        let result = result
            .map_err(|e| EngineError::Runtime(format!("commit task: {e}")))
            .and_then(|r| r.map_err(EngineError::from));
        // moby's order: the new tag, the commit, then the unpause.
        if let Ok(image) = &result {
            if !image_ref.is_empty() {
                self.emit_image("tag", &image.id, &image_ref);
            }
            let mut attrs = rec.config.labels.clone().unwrap_or_default();
            attrs.insert("comment".into(), req.comment);
            attrs.insert("image".into(), rec.config.image.clone());
            attrs.insert("imageID".into(), image.id.clone());
            attrs.insert("imageRef".into(), image_ref);
            attrs.insert("name".into(), rec.name.clone());
            self.inner
                .events
                .publish("container", "commit", &rec.id, attrs);
        }
        if pause {
            if let Err(e) = self.set_paused(&rec.id, false).await {
                tracing::warn!(container = %rec.id, error = %e, "unpausing after commit");
            }
        }
        Ok(result?.id)
    }
}
