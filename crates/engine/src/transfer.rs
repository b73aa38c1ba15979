//! `docker save` and `docker load` through the engine: the archive format is the image
//! crate's ([`berth_image::transfer`]); here names are resolved, the work is put on blocking
//! threads, streams are bridged to the API, and events are sent.

use std::io::Write;

use berth_image::Reference;
use berth_image::transfer::{self, Loaded, SaveItem};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::archive::ChannelWriter;
use crate::error::{EngineError, Result};
use crate::{Engine, fsutil};

impl Engine {
    /// `GET /images/get`: the named images as one archive. A name with a tag saves that tag,
    /// a bare repository name every tag of it, an id the image without tags.
    pub async fn image_save(&self, names: &[String]) -> Result<mpsc::Receiver<Bytes>> {
        if names.is_empty() {
            return Err(EngineError::InvalidArgument("no images to save".into()));
        }
        let mut items: Vec<SaveItem> = Vec::new();
        let mut add = |image: berth_image::Image, tags: Vec<Reference>| match items
            .iter_mut()
            .find(|i| i.image.id == image.id)
        {
            Some(i) => {
                for t in tags {
                    if !i.tags.contains(&t) {
                        i.tags.push(t);
                    }
                }
            }
            None => items.push(SaveItem { image, tags }),
        };
        for name in names {
            let parsed = Reference::parse(name).ok();
            let explicit = berth_image::reference::names_tag_or_digest(name);
            // A bare repository name: every tag of it, whatever images they name (moby's
            // save; `latest` need not be among them).
            if let Some(r) = parsed.as_ref().filter(|_| !explicit) {
                let mut found = false;
                for image in self.inner.images.list()? {
                    let tags: Vec<Reference> = image
                        .repo_tags
                        .iter()
                        .filter_map(|t| Reference::parse(t).ok())
                        .filter(|t| t.name() == r.name())
                        .collect();
                    if !tags.is_empty() {
                        found = true;
                        add(image, tags);
                    }
                }
                if found {
                    continue;
                }
            }
            let image = self.inner.images.resolve(name)?;
            let tags = match parsed {
                Some(r) if explicit && image.repo_tags.iter().any(|t| *t == r.familiar()) => {
                    vec![r]
                }
                _ => Vec::new(),
            };
            add(image, tags);
        }
        let (tx, rx) = mpsc::channel(8);
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = ChannelWriter::new(tx);
            let r = transfer::save(&engine.inner.images, &items, &mut out).and_then(|()| {
                out.flush().map_err(|e| berth_image::ImageError::Io {
                    context: "send the archive".into(),
                    source: e,
                })
            });
            if let Err(e) = r {
                // The client sees a truncated archive, which its tar reader reports.
                tracing::warn!(error = %e, "image save");
            }
            for i in &items {
                engine.emit_image("save", &i.image.id, &i.image.id);
            }
        });
        Ok(rx)
    }

    /// `POST /images/load`: every image of an archive; `progress` gets Docker's lines
    /// (`Loaded image: busybox:latest`) as images are recorded.
    pub async fn image_load(
        &self,
        reader: Box<dyn std::io::Read + Send>,
        progress: mpsc::UnboundedSender<String>,
    ) -> Result<Vec<String>> {
        let staging = self
            .inner
            .cfg
            .data_root
            .join("tmp")
            .join(format!("load-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&staging)
            .map_err(EngineError::io(format!("create {}", staging.display())))?;
        let engine = self.clone();
        let dir = staging.clone();
        let result = tokio::task::spawn_blocking(move || {
            transfer::load(&engine.inner.images, reader, &dir, &mut |l: &Loaded| {
                let _ = progress.send(l.to_string());
            })
        })
        .await;
        if let Err(e) = fsutil::remove_dir_later(&staging) {
            tracing::warn!(path = %staging.display(), error = %e, "removing load staging");
        }
        let loaded = result.map_err(|e| EngineError::Runtime(format!("load task: {e}")))??;
        let mut out = Vec::new();
        for l in loaded {
            // As moby: the event names the image by its id, tagged or not.
            let id = match &l {
                Loaded::Tagged(t) => self.inner.images.resolve(t).map(|i| i.id).ok(),
                Loaded::Untagged(id) => Some(id.clone()),
                Loaded::Retagged { .. } => None,
            };
            if let Some(id) = id {
                self.emit_image("load", &id, &id);
            }
            out.push(l.to_string());
        }
        Ok(out)
    }
}
