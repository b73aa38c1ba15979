//! A container's side of volumes: planning its mounts at create (resolving `--volumes-from`,
//! checking bind sources, naming and making volumes), and preparing them at each start
//! (mounting volume filesystems, copy-up, creating missing `-v` bind sources).

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;

use super::mounts::{self, MountPoint, MountType};
use super::{CreateVolume, LOCAL, Volume, copyup};
use crate::config::{Config, HostConfig};
use crate::container::ContainerRecord;
use crate::error::{EngineError, Result};
use crate::{ContainerHandle, Engine, lock};

impl Engine {
    /// The mount points of a new container, checked; volumes not made yet.
    pub(crate) fn plan_mounts(&self, config: &Config, hc: &HostConfig) -> Result<Vec<MountPoint>> {
        let mut inherited = Vec::new();
        for spec in hc.volumes_from.iter().flatten() {
            let (name, rw) = mounts::parse_volumes_from(spec)?;
            let other = self.resolve(&name)?.record();
            inherited.extend(mounts::inherited(&other.mounts, rw));
        }
        let planned = mounts::plan(config, hc, inherited)?;
        for m in &planned {
            if m.kind == MountType::Bind
                && !m.create_source
                && std::fs::symlink_metadata(&m.source).is_err()
            {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {}",
                    m.source
                )));
            }
        }
        Ok(planned)
    }

    /// Names anonymous volumes and makes every volume the points use that does not exist
    /// yet; the names of anonymous ones made go to `made` (for undoing a failed create).
    pub(crate) fn ensure_volumes(
        &self,
        table: &mut BTreeMap<String, Volume>,
        points: &mut [MountPoint],
        made: &mut Vec<String>,
    ) -> Result<()> {
        for m in points.iter_mut().filter(|m| m.kind == MountType::Volume) {
            let spec = m.create.take().unwrap_or_default();
            if !m.name.is_empty() && table.contains_key(&m.name) {
                continue;
            }
            let anonymous = m.name.is_empty();
            let v = self.volume_create_locked(
                table,
                CreateVolume {
                    name: m.name.clone(),
                    driver: spec.driver,
                    labels: spec.labels,
                    options: spec.options,
                },
                anonymous,
            )?;
            if anonymous {
                made.push(v.name.clone());
            }
            m.name = v.name;
        }
        Ok(())
    }

    /// Readies a starting container's mounts: each with the host path the runtime binds.
    /// A new, empty volume over image content is filled with it first (once).
    pub(crate) fn prepare_mounts(
        &self,
        h: &Arc<ContainerHandle>,
        rec: &ContainerRecord,
        rootfs: &Path,
    ) -> Result<Vec<(MountPoint, String)>> {
        let mut out = Vec::with_capacity(rec.mounts.len());
        for (i, m) in rec.mounts.iter().enumerate() {
            let source = match m.kind {
                MountType::Tmpfs => String::new(),
                MountType::Bind => {
                    if std::fs::symlink_metadata(&m.source).is_err() {
                        if !m.create_source {
                            return Err(EngineError::InvalidArgument(format!(
                                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                                m.source
                            )));
                        }
                        std::fs::create_dir_all(&m.source)
                            .map_err(EngineError::io(format!("create {}", m.source)))?;
                    }
                    m.source.clone()
                }
                MountType::Volume => {
                    let data = self.volume_mount(&m.name)?;
                    if m.copy_data {
                        copy_up(rootfs, &m.destination, &data).map_err(|e| {
                            EngineError::Runtime(format!(
                                "copying image content into volume {}: {e}",
                                m.name
                            ))
                        })?;
                        if let Some(p) = lock(&h.rec).mounts.get_mut(i) {
                            p.copy_data = false;
                        }
                    }
                    self.inner.events.publish(
                        "volume",
                        "mount",
                        &m.name,
                        BTreeMap::from([
                            ("container".to_owned(), rec.id.clone()),
                            ("destination".to_owned(), m.destination.clone()),
                            ("driver".to_owned(), LOCAL.to_owned()),
                            ("propagation".to_owned(), m.propagation.clone()),
                            ("read/write".to_owned(), m.rw.to_string()),
                        ]),
                    );
                    data.to_string_lossy().into_owned()
                }
            };
            out.push((m.clone(), source));
        }
        Ok(out)
    }
}

/// Fills the volume directory `data` with the image's content at `dest`, when the volume is
/// empty and the image has a directory there.
fn copy_up(rootfs: &Path, dest: &str, data: &Path) -> std::io::Result<()> {
    let Some(src) = copyup::open_in_root(rootfs, dest)? else {
        return Ok(());
    };
    let dst = rustix::fs::open(
        data,
        rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    if !copyup::is_empty_dir(dst.as_fd())? {
        return Ok(());
    }
    copyup::copy_tree(src.as_fd(), dst.as_fd())
}
