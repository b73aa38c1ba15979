//! `cp`, `diff` and `export`: a container's files from the outside.
//!
//! `cp` copies between a container and the local filesystem with Docker's path rules (a
//! directory destination receives the source under its own name, a missing one is created
//! with the source's content, `SRC/.` copies a directory's content, `-` is a tar stream on
//! stdin or stdout). Archives from a container are untrusted: no entry may land outside the
//! destination, through `..` or through a symlink the archive itself made.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use berth_api::client::{Client, RequestBody, query};
use hyper::Method;
use serde::Deserialize;

use super::seg;
use crate::args::{ContainerArg, CpArgs, ExportArgs};
use crate::error::{CliError, Result};
use crate::opts::io_err as io;

/// The `X-Docker-Container-Path-Stat` header.
#[derive(Debug, Deserialize)]
struct PathStat {
    name: String,
    mode: u32,
    #[serde(default, rename = "linkTarget")]
    link_target: String,
}

const GO_DIR: u32 = 1 << 31;
const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

impl PathStat {
    fn is_dir(&self) -> bool {
        self.mode & GO_DIR != 0
    }
}

/// `CONTAINER:PATH` or a local path (one starting with `/` or `.` is always local).
fn split(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => (Some(c), p),
        _ => (None, arg),
    }
}

fn usage(msg: &str) -> CliError {
    CliError::Precondition(msg.to_owned())
}

/// The stat Docker's daemon sends in a header of archive answers.
fn stat_header(v: Option<&hyper::header::HeaderValue>) -> Option<PathStat> {
    use base64::Engine as _;
    let v = v?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.as_bytes())
        .ok()?;
    serde_json::from_slice(&raw).ok()
}

/// `cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-` and `cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH`.
pub async fn cp(client: &Client, a: CpArgs) -> Result<i32> {
    match (split(&a.src), split(&a.dest)) {
        ((Some(c), src), (None, dest)) => from_container(client, c, src, dest, a.follow_link).await,
        ((None, src), (Some(c), dest)) => to_container(client, src, c, dest, &a).await,
        ((Some(_), _), (Some(_), _)) => Err(usage("copying between containers is not supported")),
        _ => Err(usage("must specify at least one container source")),
    }
}

/// A pipe whose write end feeds a blocking producer's output to an async reader.
fn pipe() -> Result<(std::fs::File, std::fs::File)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| CliError::Precondition(format!("pipe: {e}")))?;
    Ok((std::fs::File::from(r), std::fs::File::from(w)))
}

async fn from_container(
    client: &Client,
    container: &str,
    src: &str,
    dest: &str,
    follow: bool,
) -> Result<i32> {
    let get = |p: String| {
        format!(
            "/containers/{}/archive?{}",
            seg(container),
            query(&[("path", &p)])
        )
    };
    let mut src = src.to_owned();
    if follow {
        // -L: copy what a symlink points to.
        let resp = client
            .request(Method::HEAD, &get(src.clone()), RequestBody::Empty)
            .await?;
        if let Some(st) = stat_header(resp.headers().get(STAT_HEADER)) {
            if !st.link_target.is_empty() {
                src = if st.link_target.starts_with('/') {
                    st.link_target
                } else {
                    let parent = Path::new(&src).parent().unwrap_or(Path::new("/"));
                    parent.join(st.link_target).to_string_lossy().into_owned()
                };
            }
        }
    }
    let mut body = client
        .stream(Method::GET, &get(src.clone()), RequestBody::Empty)
        .await?;
    let st = stat_header(body.header(STAT_HEADER))
        .ok_or_else(|| CliError::Precondition("the daemon sent no stat of the source".into()))?;
    if dest == "-" {
        let mut out = tokio::io::stdout();
        while let Some(chunk) = body.chunk().await? {
            tokio::io::AsyncWriteExt::write_all(&mut out, &chunk)
                .await
                .map_err(io("stdout"))?;
        }
        tokio::io::AsyncWriteExt::flush(&mut out)
            .await
            .map_err(io("stdout"))?;
        return Ok(0);
    }
    let plan = local_plan(&st, &src, Path::new(dest))?;
    let (r, w) = pipe()?;
    let extract = std::thread::spawn(move || plan.extract(r));
    let mut w = tokio::fs::File::from_std(w);
    let mut fed = Ok(());
    while let Some(chunk) = body.chunk().await? {
        if let Err(e) = tokio::io::AsyncWriteExt::write_all(&mut w, &chunk).await {
            fed = Err(e);
            break;
        }
    }
    let _ = tokio::io::AsyncWriteExt::flush(&mut w).await;
    drop(w);
    let extracted = extract
        .join()
        .map_err(|_| CliError::Precondition("extraction failed".into()))?;
    extracted?;
    fed.map_err(io("copy"))?;
    Ok(0)
}

/// Where a container's archive goes locally: the directory to extract into and the name the
/// archive's top entry takes there.
struct LocalPlan {
    dir: PathBuf,
    /// The archive's top entry name, and what it becomes (`None`: the entries' own names;
    /// for `SRC/.` they are `./...` and land straight in `dir`).
    rename: Option<(String, String)>,
}

fn local_plan(st: &PathStat, src: &str, dest: &Path) -> Result<LocalPlan> {
    let contents_only = st.name == ".";
    let dest_str = dest.to_string_lossy();
    match std::fs::metadata(dest) {
        Ok(m) if m.is_dir() => Ok(LocalPlan {
            dir: dest.to_owned(),
            rename: None,
        }),
        Ok(_) if st.is_dir() => Err(CliError::Precondition(format!(
            "cannot copy directory {src} to a file: {dest_str}"
        ))),
        _ if dest_str.ends_with('/') && !st.is_dir() => Err(CliError::Precondition(format!(
            "destination directory {dest_str} does not exist"
        ))),
        meta => {
            let parent = dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(CliError::Precondition(format!(
                    "destination directory {} does not exist",
                    parent.display()
                )));
            }
            let new_name = dest
                .file_name()
                .ok_or_else(|| CliError::Precondition(format!("invalid destination {dest_str}")))?
                .to_string_lossy()
                .into_owned();
            if contents_only {
                // A new directory receives the content.
                if meta.is_err() {
                    std::fs::create_dir(dest).map_err(io(dest.display()))?;
                }
                return Ok(LocalPlan {
                    dir: dest.to_owned(),
                    rename: None,
                });
            }
            Ok(LocalPlan {
                dir: parent.to_owned(),
                rename: Some((st.name.clone(), new_name)),
            })
        }
    }
}

impl LocalPlan {
    /// The local path of an archive entry, or `None` for the `.` entry of `SRC/.`; an error
    /// for an entry that would climb out.
    fn target(&self, entry: &Path) -> Result<Option<PathBuf>> {
        let mut parts: Vec<String> = Vec::new();
        for c in entry.components() {
            match c {
                Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
                Component::CurDir => {}
                _ => {
                    return Err(CliError::Precondition(format!(
                        "refusing archive entry {} outside the destination",
                        entry.display()
                    )));
                }
            }
        }
        if let Some((from, to)) = &self.rename {
            if parts.first() == Some(from) {
                parts[0] = to.clone();
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(parts.iter().fold(self.dir.clone(), |p, c| p.join(c))))
    }

    /// Refuses `dir` unless it lies in `root` once resolved: its deepest existing ancestor is
    /// checked, so a symlink the archive planted cannot carry later entries (or the
    /// directories made for them) outside the destination.
    fn inside(&self, root: &Path, dir: &Path, entry: &Path) -> Result<()> {
        let mut existing = dir;
        while std::fs::symlink_metadata(existing).is_err() {
            existing = existing.parent().unwrap_or(&self.dir);
            if existing == self.dir {
                break;
            }
        }
        let real = std::fs::canonicalize(existing).map_err(io(existing.display()))?;
        if real.starts_with(root) {
            Ok(())
        } else {
            Err(CliError::Precondition(format!(
                "refusing archive entry {}: it leads outside {}",
                entry.display(),
                root.display()
            )))
        }
    }

    fn extract(self, input: impl Read) -> Result<()> {
        let root = std::fs::canonicalize(&self.dir).map_err(io(self.dir.display()))?;
        let mut archive = tar::Archive::new(input);
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        for entry in archive.entries().map_err(io("reading the archive"))? {
            let mut entry = entry.map_err(io("reading the archive"))?;
            let path = entry
                .path()
                .map_err(io("reading the archive"))?
                .into_owned();
            let Some(target) = self.target(&path)? else {
                continue;
            };
            let parent = target.parent().unwrap_or(&self.dir).to_owned();
            self.inside(&root, &parent, &path)?;
            std::fs::create_dir_all(&parent).map_err(io(parent.display()))?;
            // A hard link names another entry of the archive: mapped like an entry, and never
            // a file outside the destination (tar would take its name as it is).
            if entry.header().entry_type() == tar::EntryType::Link {
                let link = entry
                    .link_name()
                    .map_err(io("reading the archive"))?
                    .ok_or_else(|| {
                        CliError::Precondition(format!(
                            "hard link {} has no target",
                            path.display()
                        ))
                    })?
                    .into_owned();
                let source = self.target(&link)?.ok_or_else(|| {
                    CliError::Precondition(format!(
                        "hard link {} to the destination",
                        path.display()
                    ))
                })?;
                self.inside(&root, source.parent().unwrap_or(&self.dir), &path)?;
                if std::fs::symlink_metadata(&target).is_ok() {
                    let _ = std::fs::remove_file(&target);
                }
                // linkat without AT_SYMLINK_FOLLOW: a symlink source is linked, not followed.
                std::fs::hard_link(&source, &target).map_err(io(target.display()))?;
                continue;
            }
            if entry.header().entry_type().is_dir() && target.is_dir() {
                continue;
            }
            if let Ok(m) = std::fs::symlink_metadata(&target) {
                if !m.is_dir() {
                    let _ = std::fs::remove_file(&target);
                }
            }
            entry.unpack(&target).map_err(io(target.display()))?;
        }
        Ok(())
    }
}

async fn to_container(
    client: &Client,
    src: &str,
    container: &str,
    dest: &str,
    a: &CpArgs,
) -> Result<i32> {
    let base = format!("/containers/{}/archive", seg(container));
    let head = client
        .send(
            Method::HEAD,
            &format!("{base}?{}", query(&[("path", dest)])),
            RequestBody::Empty,
        )
        .await?;
    let dest_stat = if head.status().is_success() {
        stat_header(head.headers().get(STAT_HEADER))
    } else if head.status() == hyper::StatusCode::NOT_FOUND {
        None
    } else {
        // Let the daemon word it (no such container...).
        client
            .request(
                Method::HEAD,
                &format!("{base}?{}", query(&[("path", dest)])),
                RequestBody::Empty,
            )
            .await?;
        None
    };
    let put = |dir: &str| {
        let mut q = vec![
            ("path", dir.to_owned()),
            ("noOverwriteDirNonDir", "true".to_owned()),
        ];
        if a.archive {
            q.push(("copyUIDGID", "true".to_owned()));
        }
        let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        format!("{base}?{}", query(&q))
    };
    if src == "-" {
        // A tar stream on stdin goes into the destination directory as it is.
        if !dest_stat.as_ref().is_some_and(PathStat::is_dir) {
            return Err(CliError::Precondition(format!(
                "destination \"{container}:{dest}\" must be a directory"
            )));
        }
        client
            .request(
                Method::PUT,
                &put(dest),
                RequestBody::Reader {
                    reader: Box::new(tokio::io::stdin()),
                    content_type: "application/x-tar",
                },
            )
            .await?;
        return Ok(0);
    }
    let mut src_path = PathBuf::from(src);
    if a.follow_link {
        if let Ok(t) = std::fs::canonicalize(&src_path) {
            src_path = t;
        }
    }
    let meta = std::fs::symlink_metadata(&src_path).map_err(io(format!("lstat {src}")))?;
    let contents_only = src.ends_with("/.");
    let src_name = src_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into());
    // Which directory of the container receives the archive, and under which name.
    let (dir, name) = match &dest_stat {
        Some(st) if st.is_dir() => (dest.to_owned(), src_name),
        Some(_) if meta.is_dir() => {
            return Err(CliError::Precondition(format!(
                "cannot copy a directory to a file: {container}:{dest}"
            )));
        }
        None if dest.ends_with('/') && !meta.is_dir() => {
            return Err(CliError::Precondition(format!(
                "destination directory {container}:{dest} does not exist"
            )));
        }
        _ => {
            let d = Path::new(dest);
            let parent = d
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into());
            let name = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| CliError::Precondition(format!("invalid destination {dest}")))?;
            (parent, name)
        }
    };
    let (r, w) = pipe()?;
    let build = std::thread::spawn(move || -> std::io::Result<()> {
        let mut tar = tar::Builder::new(w);
        tar.follow_symlinks(false);
        if meta.is_dir() {
            if contents_only {
                tar.append_dir_all(".", &src_path)?;
            } else {
                tar.append_dir_all(&name, &src_path)?;
            }
        } else {
            tar.append_path_with_name(&src_path, &name)?;
        }
        tar.into_inner()?.flush()
    });
    let sent = client
        .request(
            Method::PUT,
            &put(&dir),
            RequestBody::Reader {
                reader: Box::new(tokio::fs::File::from_std(r)),
                content_type: "application/x-tar",
            },
        )
        .await;
    let built = build
        .join()
        .map_err(|_| CliError::Precondition("archiving failed".into()))?;
    sent?;
    built.map_err(io(format!("archiving {src}")))?;
    Ok(0)
}

/// `diff CONTAINER`: `A`dded, `C`hanged and `D`eleted paths.
pub async fn diff(client: &Client, a: ContainerArg) -> Result<i32> {
    #[derive(Deserialize)]
    struct Change {
        #[serde(rename = "Path")]
        path: String,
        #[serde(rename = "Kind")]
        kind: u8,
    }
    let changes: Option<Vec<Change>> = client
        .get(&format!("/containers/{}/changes", seg(&a.container)))
        .await?;
    let mut out = String::new();
    for c in changes.unwrap_or_default() {
        let k = match c.kind {
            0 => 'C',
            1 => 'A',
            2 => 'D',
            _ => '?',
        };
        out.push_str(&format!("{k} {}\n", c.path));
    }
    print!("{out}");
    Ok(0)
}

/// `export [-o FILE] CONTAINER`: the container's filesystem as a tar archive.
pub async fn export(client: &Client, a: ExportArgs) -> Result<i32> {
    use tokio::io::AsyncWriteExt;
    if a.output.is_none() && crate::tty::stdout_is_tty() {
        return Err(CliError::Precondition(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
        ));
    }
    let mut body = client
        .stream(
            Method::GET,
            &format!("/containers/{}/export", seg(&a.container)),
            RequestBody::Empty,
        )
        .await?;
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &a.output {
        Some(p) => Box::new(
            tokio::fs::File::create(p)
                .await
                .map_err(io(format!("create {p}")))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    while let Some(chunk) = body.chunk().await? {
        out.write_all(&chunk).await.map_err(io("write"))?;
    }
    out.flush().await.map_err(io("write"))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_like_docker() {
        assert_eq!(split("c1:/etc"), (Some("c1"), "/etc"));
        assert_eq!(split("/tmp/a:b"), (None, "/tmp/a:b"));
        assert_eq!(split("./x:y"), (None, "./x:y"));
        assert_eq!(split("-"), (None, "-"));
    }

    #[test]
    fn entries_cannot_climb_out() {
        let plan = LocalPlan {
            dir: PathBuf::from("/d"),
            rename: Some(("data".into(), "copy".into())),
        };
        assert!(plan.target(Path::new("data/../../etc/passwd")).is_err());
        assert_eq!(
            plan.target(Path::new("data/x/f")).unwrap(),
            Some(PathBuf::from("/d/copy/x/f"))
        );
    }

    /// A hard link in the archive to a file outside the destination is refused, and one to
    /// another entry is made inside.
    #[test]
    fn hard_links_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        std::fs::create_dir_all(&dest).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "host").unwrap();
        let link = |name: &str, target: &Path| {
            let mut tar = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(2);
            h.set_mode(0o644);
            tar.append_data(&mut h, "d/a", &b"hi"[..]).unwrap();
            let mut l = tar::Header::new_gnu();
            l.set_entry_type(tar::EntryType::Link);
            l.set_size(0);
            tar.append_link(&mut l, name, target).unwrap();
            tar.into_inner().unwrap()
        };
        let plan = || LocalPlan {
            dir: dest.clone(),
            rename: None,
        };
        assert!(plan().extract(&link("d/evil", &secret)[..]).is_err());
        assert!(!dest.join("d/evil").exists());
        plan().extract(&link("d/b", Path::new("d/a"))[..]).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("d/b")).unwrap(), "hi");
    }

    /// An archive that plants a symlink to a directory outside and then writes through it is
    /// refused before anything is written outside, not even a directory.
    #[test]
    fn symlink_planted_by_the_archive_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        tar.append_link(&mut l, "d/link", &outside).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        tar.append_data(&mut h, "d/link/deeper/pwn", &b"bad"[..])
            .unwrap();
        let data = tar.into_inner().unwrap();
        let plan = LocalPlan {
            dir: dest.clone(),
            rename: None,
        };
        assert!(plan.extract(&data[..]).is_err());
        assert!(!outside.join("deeper").exists());
    }
}
