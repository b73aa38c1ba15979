//! Resolving Docker's `--user` (`name`, `uid`, `name:group`, `uid:gid`) and `--group-add`
//! against the image's `/etc/passwd` and `/etc/group`, as runc's `GetExecUser` does.
//!
//! The files are read inside the container root with `openat2(RESOLVE_IN_ROOT)`, so a hostile
//! image whose `/etc/passwd` is a symlink to the host's cannot make us read host files.

use std::io::Read;
use std::path::Path;

use oci_spec::runtime::User;
use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::RuntimeError;

/// Largest passwd/group file we read.
const MAX_FILE: u64 = 16 * 1024 * 1024;

/// A user resolved for a process: ids, groups and home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

impl ExecUser {
    /// The OCI `process.user`.
    pub fn to_oci(&self) -> User {
        let mut u = User::default();
        u.set_uid(self.uid);
        u.set_gid(self.gid);
        u.set_additional_gids(Some(self.additional_gids.clone()));
        u
    }
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Reads `rel` (e.g. "etc/passwd") inside `rootfs`; a missing file is empty.
fn read_in_root(rootfs: &Path, rel: &str) -> String {
    let Ok(root) = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return String::new();
    };
    let Ok(fd) = rustix::fs::openat2(
        &root,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    ) else {
        return String::new();
    };
    let mut buf = Vec::new();
    let _ = std::fs::File::from(fd).take(MAX_FILE).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn parse_passwd(s: &str) -> Vec<PasswdEntry> {
    s.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map(|h| h.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(s: &str) -> Vec<GroupEntry> {
    s.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|x| !x.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Fills a missing or empty `HOME` in `process`'s environment with the home of its uid in the
/// passwd file under `rootfs` (read by this module's parser, never glibc's NSS), as runc does;
/// true when the environment changed. libcontainer's init would otherwise ask glibc inside the
/// container (see `spec::set_home`).
pub fn fill_home(process: &mut oci_spec::runtime::Process, rootfs: &Path) -> bool {
    let mut env = process.env().clone().unwrap_or_default();
    if env
        .iter()
        .any(|e| e.starts_with("HOME=") && e.len() > "HOME=".len())
    {
        return false;
    }
    let uid = process.user().uid().to_string();
    let home = resolve_exec_user(rootfs, &uid, &[])
        .map(|u| u.home)
        .unwrap_or_default();
    crate::spec::set_home(&mut env, &home);
    process.set_env(Some(env));
    true
}

/// Resolves `user` and `group_add` inside `rootfs` to OCI `process.user`.
pub fn resolve(rootfs: &Path, user: &str, group_add: &[String]) -> Result<User, RuntimeError> {
    resolve_exec_user(rootfs, user, group_add).map(|u| u.to_oci())
}

/// Resolves `user` and `group_add` inside `rootfs`, with the home directory.
pub fn resolve_exec_user(
    rootfs: &Path,
    user: &str,
    group_add: &[String],
) -> Result<ExecUser, RuntimeError> {
    let passwd = parse_passwd(&read_in_root(rootfs, "etc/passwd"));
    let groups = parse_group(&read_in_root(rootfs, "etc/group"));
    resolve_with(&passwd, &groups, user, group_add)
}

fn resolve_with(
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
    user: &str,
    group_add: &[String],
) -> Result<ExecUser, RuntimeError> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let mut out = ExecUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: "/".into(),
    };
    let mut name = None;
    if u.is_empty() {
        if let Some(p) = passwd.iter().find(|p| p.uid == 0) {
            out.gid = p.gid;
            out.home = p.home.clone();
            name = Some(p.name.clone());
        }
    } else if let Some(p) = passwd.iter().find(|p| p.name == u) {
        out.uid = p.uid;
        out.gid = p.gid;
        out.home = p.home.clone();
        name = Some(p.name.clone());
    } else if let Ok(uid) = u.parse::<u32>() {
        out.uid = uid;
        if let Some(p) = passwd.iter().find(|p| p.uid == uid) {
            out.gid = p.gid;
            out.home = p.home.clone();
            name = Some(p.name.clone());
        }
    } else {
        return Err(RuntimeError::UserNotFound(format!(
            "{u}: no matching entries in passwd file"
        )));
    }
    if let Some(g) = g {
        out.gid = lookup_group(groups, g)?;
    } else if let Some(n) = &name {
        // Supplementary groups from /etc/group, only when the group was not given.
        for gr in groups.iter().filter(|gr| gr.members.iter().any(|m| m == n)) {
            if gr.gid != out.gid && !out.additional_gids.contains(&gr.gid) {
                out.additional_gids.push(gr.gid);
            }
        }
    }
    for g in group_add {
        let gid = lookup_group(groups, g)?;
        if !out.additional_gids.contains(&gid) {
            out.additional_gids.push(gid);
        }
    }
    if out.home.is_empty() {
        out.home = "/".into();
    }
    // As in Docker's containers, the primary group is a supplementary group too (`id` shows
    // `groups=<gid>,...`; the kernel keeps the list sorted).
    if !out.additional_gids.contains(&out.gid) {
        out.additional_gids.insert(0, out.gid);
    }
    Ok(out)
}

fn lookup_group(groups: &[GroupEntry], g: &str) -> Result<u32, RuntimeError> {
    if let Some(gr) = groups.iter().find(|gr| gr.name == g) {
        return Ok(gr.gid);
    }
    g.parse::<u32>().map_err(|_| {
        RuntimeError::UserNotFound(format!("group {g}: no matching entries in group file"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\nwww:x:33:33::/var/www:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:www,other\nnogroup:x:65534:\nwww:x:33:\n";

    fn r(user: &str, add: &[&str]) -> Result<ExecUser, RuntimeError> {
        let add: Vec<String> = add.iter().map(|s| (*s).to_owned()).collect();
        resolve_with(&parse_passwd(PASSWD), &parse_group(GROUP), user, &add)
    }

    #[test]
    fn resolves_like_docker() {
        assert_eq!(r("", &[]).unwrap().home, "/root");
        let www = r("www", &[]).unwrap();
        assert_eq!(
            (www.uid, www.gid, www.additional_gids.clone()),
            (33, 33, vec![33, 10])
        );
        assert_eq!(www.home, "/var/www");
        let n = r("1234", &[]).unwrap();
        assert_eq!((n.uid, n.gid, n.home.as_str()), (1234, 0, "/"));
        let ug = r("www:nogroup", &[]).unwrap();
        assert_eq!((ug.uid, ug.gid), (33, 65534));
        // The primary group is always a supplementary one too, as in Docker's containers.
        assert_eq!(ug.additional_gids, vec![65534]);
        assert_eq!(r("1:2", &[]).unwrap().gid, 2);
        assert_eq!(
            r("", &["wheel", "99"]).unwrap().additional_gids,
            vec![0, 10, 99]
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(r("ghost", &[]).is_err());
        assert!(r("root:ghosts", &[]).is_err());
        assert!(r("", &["ghosts"]).is_err());
    }

    #[test]
    fn passwd_symlink_out_of_root_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(dir.path().join("passwd"), "evil:x:4242:4242::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("../../passwd", root.join("etc/passwd")).unwrap();
        assert!(resolve(&root, "evil", &[]).is_err());
    }
}
