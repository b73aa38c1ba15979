//! Volumes: Docker's `local` driver. A volume is a record in the state database and a
//! directory `<data-root>/volumes/<name>/_data`; a volume made with `type`/`device`/`o`
//! options gets that filesystem mounted on its directory when a container first needs it and
//! unmounted when the last running user stops (as Docker's local driver does).
//!
//! The volume table's lock also orders container creation against volume removal: a
//! container takes it while it records the volumes it uses, and `rm`/`prune` take it while
//! they check that nothing uses a volume, so no volume is removed under a new container.

mod container;
pub mod copyup;
pub mod mounts;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::fsutil::dir_size;
use crate::{Engine, db, lock};

/// The label Docker (23 and later) puts on anonymous volumes.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The one driver there is.
pub const LOCAL: &str = "local";

/// Options the local driver knows.
const LOCAL_OPTIONS: &[&str] = &["type", "device", "o"];

/// A volume as the engine keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub created_at: DateTime<Utc>,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// Made for a container without a name (`-v /path`, an image's VOLUME): `rm -v` and
    /// `--rm` remove it with the container.
    pub anonymous: bool,
}

/// What `volume create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateVolume {
    /// Empty for a generated name.
    pub name: String,
    /// Empty for `local`.
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// A volume with what `system df` shows of it.
#[derive(Debug, Clone)]
pub struct VolumeUsage {
    pub volume: Volume,
    /// Bytes of the files in it (hard links counted once).
    pub size: u64,
    /// Containers that use it.
    pub ref_count: usize,
}

/// Docker's rule for local volume names.
pub fn valid_name(name: &str) -> Result<()> {
    if name.len() < 2 {
        return Err(EngineError::InvalidArgument(format!(
            "create {name}: volume name is too short, names should be at least two alphanumeric characters"
        )));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        || name.len() > 255
    {
        return Err(EngineError::InvalidArgument(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, only \
             \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    Ok(())
}

fn random_name() -> String {
    use rand::Rng;
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

/// Checks the local driver's options: known keys only, a `device` with a `type`, and an
/// existing directory for a bind.
fn validate_options(name: &str, opts: &BTreeMap<String, String>) -> Result<()> {
    for key in opts.keys() {
        if !LOCAL_OPTIONS.contains(&key.as_str()) {
            return Err(EngineError::InvalidArgument(format!(
                "create {name}: invalid option key: \"{key}\""
            )));
        }
    }
    let kind = opts.get("type").map(String::as_str).unwrap_or("");
    let device = opts.get("device").map(String::as_str).unwrap_or("");
    let o = opts.get("o").map(String::as_str).unwrap_or("");
    if kind.is_empty() && !device.is_empty() {
        return Err(EngineError::InvalidArgument(format!(
            "create {name}: missing required option: \"type\""
        )));
    }
    if !kind.is_empty() && device.is_empty() {
        return Err(EngineError::InvalidArgument(format!(
            "create {name}: missing required option: \"device\""
        )));
    }
    if !o.is_empty() && kind.is_empty() {
        return Err(EngineError::InvalidArgument(format!(
            "create {name}: missing required option: \"type\""
        )));
    }
    let is_bind = o.split(',').any(|f| f == "bind" || f == "rbind");
    if is_bind && !Path::new(device).is_absolute() {
        return Err(EngineError::InvalidArgument(format!(
            "create {name}: invalid device for a bind mount: {device} is not an absolute path"
        )));
    }
    if is_bind && !Path::new(device).exists() {
        return Err(EngineError::InvalidArgument(format!(
            "create {name}: bind device {device} does not exist"
        )));
    }
    Ok(())
}

/// Matches Docker's volume filters (`name`, `driver`, `label`, `dangling`).
fn matches(v: &Volume, used: bool, filters: &HashMap<String, Vec<String>>) -> bool {
    let any = |key: &str, f: &dyn Fn(&str) -> bool| {
        filters
            .get(key)
            .is_none_or(|vals| vals.is_empty() || vals.iter().any(|x| f(x)))
    };
    any("name", &|x| v.name.contains(x))
        && any("driver", &|x| v.driver == x)
        && filters.get("label").is_none_or(|vals| {
            vals.iter().all(|l| match l.split_once('=') {
                Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
                None => v.labels.contains_key(l.as_str()),
            })
        })
        && any("dangling", &|x| match x {
            "true" | "1" => !used,
            "false" | "0" => used,
            _ => true,
        })
}

/// Checks the keys of a filter map against the ones an endpoint knows.
pub(crate) fn check_filter_keys(
    filters: &HashMap<String, Vec<String>>,
    known: &[&str],
) -> Result<()> {
    for key in filters.keys() {
        if !known.contains(&key.as_str()) {
            return Err(EngineError::InvalidArgument(format!(
                "invalid filter '{key}'"
            )));
        }
    }
    if let Some(vals) = filters.get("dangling") {
        for v in vals {
            if !matches!(v.as_str(), "true" | "false" | "1" | "0") {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid filter 'dangling={v}'"
                )));
            }
        }
    }
    Ok(())
}

impl Engine {
    fn volumes_dir(&self) -> PathBuf {
        self.inner.cfg.data_root.join("volumes")
    }

    /// Where a volume's data lives (its `Mountpoint`).
    pub fn volume_path(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name).join("_data")
    }

    /// Loads the volume records at daemon start.
    pub(crate) fn load_volumes(db: &db::Db) -> Result<BTreeMap<String, Volume>> {
        Ok(db
            .all::<Volume>(db::VOLUMES)?
            .into_iter()
            .map(|v| (v.name.clone(), v))
            .collect())
    }

    /// Creates a volume; an existing one of that name is returned as it is (as Docker).
    pub fn volume_create(&self, req: CreateVolume) -> Result<Volume> {
        let mut table = lock(&self.inner.volumes);
        self.volume_create_locked(&mut table, req, false)
    }

    pub(crate) fn volume_create_locked(
        &self,
        table: &mut BTreeMap<String, Volume>,
        req: CreateVolume,
        anonymous: bool,
    ) -> Result<Volume> {
        let driver = if req.driver.is_empty() {
            LOCAL.to_owned()
        } else {
            req.driver.clone()
        };
        if driver != LOCAL {
            return Err(EngineError::NotFound(format!(
                "create {}: error looking up volume plugin {driver}: plugin \"{driver}\" not found",
                req.name
            )));
        }
        let name = if req.name.is_empty() {
            random_name()
        } else {
            req.name.clone()
        };
        valid_name(&name)?;
        if let Some(v) = table.get(&name) {
            return Ok(v.clone());
        }
        validate_options(&name, &req.options)?;
        let mut labels = req.labels;
        if anonymous {
            labels.insert(ANONYMOUS_LABEL.into(), String::new());
        }
        let v = Volume {
            name: name.clone(),
            driver,
            created_at: Utc::now(),
            labels,
            options: req.options,
            anonymous,
        };
        let data = self.volume_path(&name);
        std::fs::create_dir_all(&data)
            .map_err(EngineError::io(format!("create {}", data.display())))?;
        if let Err(e) = self.inner.db.put(db::VOLUMES, &name, &v) {
            let _ = std::fs::remove_dir_all(self.volumes_dir().join(&name));
            return Err(e);
        }
        table.insert(name.clone(), v.clone());
        self.inner.events.publish(
            "volume",
            "create",
            &name,
            BTreeMap::from([("driver".to_owned(), LOCAL.to_owned())]),
        );
        Ok(v)
    }

    /// A volume by name.
    pub fn volume_inspect(&self, name: &str) -> Result<Volume> {
        lock(&self.inner.volumes)
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::NoSuchVolume(name.to_owned()))
    }

    /// Ids of the containers whose mounts use volume `name`.
    pub(crate) fn volume_users(&self, name: &str) -> Vec<String> {
        let mut users: Vec<String> = self
            .handles()
            .iter()
            .filter_map(|h| {
                let r = lock(&h.rec);
                r.mounts
                    .iter()
                    .any(|m| m.kind == mounts::MountType::Volume && m.name == name)
                    .then(|| r.id.clone())
            })
            .collect();
        users.sort();
        users
    }

    /// Every volume any container uses.
    fn used_volumes(&self) -> HashSet<String> {
        let mut used = HashSet::new();
        for h in self.handles() {
            let r = lock(&h.rec);
            for m in &r.mounts {
                if m.kind == mounts::MountType::Volume {
                    used.insert(m.name.clone());
                }
            }
        }
        used
    }

    /// Volumes matching Docker's `volume ls` filters, by name.
    pub fn volume_list(&self, filters: &HashMap<String, Vec<String>>) -> Result<Vec<Volume>> {
        check_filter_keys(filters, &["name", "driver", "label", "dangling"])?;
        let used = self.used_volumes();
        Ok(lock(&self.inner.volumes)
            .values()
            .filter(|v| matches(v, used.contains(&v.name), filters))
            .cloned()
            .collect())
    }

    /// Volumes with their sizes and users, for `system df`.
    pub fn volume_usage(&self) -> Vec<VolumeUsage> {
        let vols: Vec<Volume> = lock(&self.inner.volumes).values().cloned().collect();
        vols.into_iter()
            .map(|v| VolumeUsage {
                size: dir_size(&self.volume_path(&v.name)),
                ref_count: self.volume_users(&v.name).len(),
                volume: v,
            })
            .collect()
    }

    /// Removes a volume; one in use is refused. `force` makes a missing volume no error.
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        let mut table = lock(&self.inner.volumes);
        if !table.contains_key(name) {
            if force {
                return Ok(());
            }
            return Err(EngineError::NoSuchVolume(name.to_owned()));
        }
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        self.volume_delete_locked(&mut table, name)
    }

    /// Deletes a volume nothing uses: unmounts it, drops the record, removes the data.
    pub(crate) fn volume_delete_locked(
        &self,
        table: &mut BTreeMap<String, Volume>,
        name: &str,
    ) -> Result<()> {
        let data = self.volume_path(name);
        if is_mountpoint(&data) {
            unmount(&data)?;
        }
        self.inner.db.delete(db::VOLUMES, name)?;
        table.remove(name);
        crate::fsutil::remove_dir_later(&self.volumes_dir().join(name))?;
        self.inner.events.publish(
            "volume",
            "destroy",
            name,
            BTreeMap::from([("driver".to_owned(), LOCAL.to_owned())]),
        );
        Ok(())
    }

    /// Removes unused volumes: only anonymous ones unless `all` (API 1.42 and later; older
    /// clients get every unused volume, as Docker 20.10 did), with the `label`/`label!`
    /// filters; never one made with mount options, as dockerd. Returns the names and the
    /// bytes freed.
    pub fn volume_prune(
        &self,
        all: bool,
        want: &[String],
        negated: &[String],
    ) -> Result<(Vec<String>, u64)> {
        let mut table = lock(&self.inner.volumes);
        let used = self.used_volumes();
        let candidates: Vec<Volume> = table
            .values()
            .filter(|v| !used.contains(&v.name) && (all || v.anonymous))
            // As dockerd: a volume made with mount options (`type`/`device`/`o`: an NFS
            // share, a device) is not pruned; only `volume rm` removes it.
            .filter(|v| v.options.is_empty())
            .filter(|v| crate::prune::labels_pass(&v.labels, want, negated))
            .cloned()
            .collect();
        let mut deleted = Vec::new();
        let mut space = 0;
        for v in candidates {
            let size = dir_size(&self.volume_path(&v.name));
            match self.volume_delete_locked(&mut table, &v.name) {
                Ok(()) => {
                    space += size;
                    deleted.push(v.name);
                }
                Err(e) => tracing::warn!(volume = %v.name, "prune: {e}"),
            }
        }
        self.emit_prune("volume", Some(space));
        Ok((deleted, space))
    }

    /// The host directory a container binds for volume `name`, mounting the volume's own
    /// filesystem first when it has one and it is not mounted yet.
    pub(crate) fn volume_mount(&self, name: &str) -> Result<PathBuf> {
        let v = self.volume_inspect(name)?;
        let data = self.volume_path(name);
        std::fs::create_dir_all(&data)
            .map_err(EngineError::io(format!("create {}", data.display())))?;
        if v.options.contains_key("type") && !is_mountpoint(&data) {
            mount_local(&v.options, &data).map_err(|e| {
                EngineError::Runtime(format!(
                    "error while mounting volume '{}': {e}",
                    data.display()
                ))
            })?;
        }
        Ok(data)
    }

    /// Unmounts the filesystems of option volumes that container `id` used, when no other
    /// running container uses them.
    pub(crate) fn volumes_release(&self, id: &str, used: &[mounts::MountPoint]) {
        for m in used {
            if m.kind != mounts::MountType::Volume {
                continue;
            }
            let has_fs = lock(&self.inner.volumes)
                .get(&m.name)
                .is_some_and(|v| v.options.contains_key("type"));
            if has_fs {
                let still_used = self.handles().iter().any(|h| {
                    let r = lock(&h.rec);
                    r.id != id && r.state.is_running() && r.mounts.iter().any(|x| x.name == m.name)
                });
                let data = self.volume_path(&m.name);
                if !still_used && is_mountpoint(&data) {
                    if let Err(e) = unmount(&data) {
                        tracing::warn!(volume = %m.name, "{e}");
                    }
                }
            }
            self.inner.events.publish(
                "volume",
                "unmount",
                &m.name,
                BTreeMap::from([
                    ("container".to_owned(), id.to_owned()),
                    ("driver".to_owned(), LOCAL.to_owned()),
                ]),
            );
        }
    }
}

/// Whether `path` is the root of a mount (statx's `STATX_ATTR_MOUNT_ROOT`).
pub(crate) fn is_mountpoint(path: &Path) -> bool {
    use rustix::fs::{AtFlags, StatxAttributes, StatxFlags, statx};
    match statx(
        rustix::fs::CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    ) {
        Ok(st) => {
            st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
                && st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
        }
        Err(_) => false,
    }
}

fn unmount(path: &Path) -> Result<()> {
    nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| EngineError::Runtime(format!("unmount {}: {e}", path.display())))
}

/// Mounts a local volume's filesystem as `mount -t <type> -o <o> <device> <dir>` would.
fn mount_local(opts: &BTreeMap<String, String>, dir: &Path) -> std::result::Result<(), String> {
    use nix::mount::MsFlags;
    let kind = opts.get("type").map(String::as_str).unwrap_or("");
    let mut device = opts.get("device").cloned().unwrap_or_default();
    let (mut flags, mut data) = (MsFlags::empty(), Vec::new());
    for o in opts.get("o").map(String::as_str).unwrap_or("").split(',') {
        match o {
            "" => {}
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            other => {
                // Docker resolves a host name in nfs's addr= to an address.
                if let Some(host) = other.strip_prefix("addr=") {
                    use std::net::ToSocketAddrs;
                    let ip = (host, 0)
                        .to_socket_addrs()
                        .map_err(|e| format!("resolve {host}: {e}"))?
                        .next()
                        .map(|a| a.ip().to_string())
                        .ok_or_else(|| format!("resolve {host}: no address"))?;
                    data.push(format!("addr={ip}"));
                    if kind.starts_with("nfs") && device.starts_with(':') {
                        device = format!("{ip}{device}");
                    }
                } else {
                    data.push(other.to_owned());
                }
            }
        }
    }
    let data = data.join(",");
    let fstype = (!flags.contains(MsFlags::MS_BIND)).then_some(kind);
    nix::mount::mount(
        Some(device.as_str()),
        dir,
        fstype,
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .map_err(|e| e.to_string())?;
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        // A bind mount takes read-only only on a remount.
        nix::mount::mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_local_driver() {
        assert!(valid_name("data").is_ok());
        assert!(valid_name("a_b.c-1").is_ok());
        assert!(
            valid_name("x")
                .unwrap_err()
                .to_string()
                .contains("too short")
        );
        assert!(
            valid_name("b/c")
                .unwrap_err()
                .to_string()
                .contains("invalid characters")
        );
        assert!(valid_name("-ab").is_err());
        assert!(valid_name("../../etc").is_err());
    }

    #[test]
    fn options_are_checked() {
        let o = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(validate_options("v", &o(&[])).is_ok());
        assert!(
            validate_options(
                "v",
                &o(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")])
            )
            .is_ok()
        );
        assert!(validate_options("v", &o(&[("size", "1")])).is_err());
        assert!(validate_options("v", &o(&[("type", "tmpfs")])).is_err());
        assert!(validate_options("v", &o(&[("device", "/x")])).is_err());
        assert!(
            validate_options(
                "v",
                &o(&[("type", "none"), ("device", "rel"), ("o", "bind")])
            )
            .is_err()
        );
        assert!(
            validate_options("v", &o(&[("type", "none"), ("device", "/"), ("o", "bind")])).is_ok()
        );
    }

    #[test]
    fn filters_match_like_docker() {
        let v = Volume {
            name: "webdata".into(),
            driver: LOCAL.into(),
            created_at: Utc::now(),
            labels: BTreeMap::from([("env".into(), "prod".into())]),
            options: BTreeMap::new(),
            anonymous: false,
        };
        let f = |k: &str, vals: &[&str]| {
            HashMap::from([(k.to_owned(), vals.iter().map(|s| s.to_string()).collect())])
        };
        assert!(matches(&v, false, &HashMap::new()));
        assert!(matches(&v, false, &f("name", &["web"])));
        assert!(!matches(&v, false, &f("name", &["db"])));
        assert!(matches(&v, false, &f("label", &["env"])));
        assert!(matches(&v, false, &f("label", &["env=prod"])));
        assert!(!matches(&v, false, &f("label", &["env=dev"])));
        assert!(matches(&v, false, &f("dangling", &["true"])));
        assert!(!matches(&v, true, &f("dangling", &["true"])));
        assert!(matches(&v, true, &f("dangling", &["false"])));
        assert!(check_filter_keys(&f("bogus", &["x"]), &["name"]).is_err());
        assert!(check_filter_keys(&f("dangling", &["maybe"]), &["dangling"]).is_err());
    }
}
