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
                    check_propagation(&m.source, &m.propagation)?;
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

/// Docker's rule for shared and slave binds: the source's mount must itself be shared (or,
/// for slave, shared or a slave), or the propagation asked for could never happen.
fn check_propagation(source: &str, propagation: &str) -> Result<()> {
    let need_shared = matches!(propagation, "shared" | "rshared");
    let need_slave = matches!(propagation, "slave" | "rslave");
    if !need_shared && !need_slave {
        return Ok(());
    }
    let real =
        std::fs::canonicalize(source).map_err(EngineError::io(format!("resolve {source}")))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(EngineError::io("read /proc/self/mountinfo"))?;
    let (mountpoint, tags) = mount_of(&info, &real).unwrap_or_default();
    let shared = tags.iter().any(|t| t.starts_with("shared:"));
    let slave = tags.iter().any(|t| t.starts_with("master:"));
    if need_shared && !shared {
        return Err(EngineError::InvalidArgument(format!(
            "path {source} is mounted on {mountpoint} but it is not a shared mount"
        )));
    }
    if need_slave && !shared && !slave {
        return Err(EngineError::InvalidArgument(format!(
            "path {source} is mounted on {mountpoint} but it is not a shared or slave mount"
        )));
    }
    Ok(())
}

/// The mount holding `path` (the last, longest mount point above it in mountinfo order) and
/// its optional fields (`shared:N`, `master:N`).
fn mount_of(mountinfo: &str, path: &Path) -> Option<(String, Vec<String>)> {
    let mut best: Option<(String, Vec<String>)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4) else { continue };
        let point = point.replace("\\040", " ");
        if !path.starts_with(&point) {
            continue;
        }
        let tags: Vec<String> = fields[6..]
            .iter()
            .take_while(|f| **f != "-")
            .map(|f| f.to_string())
            .collect();
        if best.as_ref().is_none_or(|(p, _)| point.len() >= p.len()) {
            best = Some((point, tags));
        }
    }
    best
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_of_a_path_is_the_longest_and_last() {
        let info = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                    40 27 0:50 / /mnt rw shared:5 - tmpfs tmpfs rw\n\
                    41 40 0:51 / /mnt/sub rw master:7 - tmpfs tmpfs rw\n\
                    42 40 0:52 / /mnt/sub rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mount_of(info, Path::new("/etc")).unwrap(),
            ("/".into(), vec![])
        );
        assert_eq!(
            mount_of(info, Path::new("/mnt/x")).unwrap(),
            ("/mnt".into(), vec!["shared:5".to_owned()])
        );
        // Mounted over: the later one at the same point is what the path sees.
        assert_eq!(
            mount_of(info, Path::new("/mnt/sub/y")).unwrap().1,
            Vec::<String>::new()
        );
    }
}
