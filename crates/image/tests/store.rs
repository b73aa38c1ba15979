//! The image store end to end: import, list, resolve, tag, remove, garbage collection, and
//! overlay mounts (when running as root with overlayfs).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_image::error::ErrorKind;
use berth_image::snapshot::Upper;
use berth_image::{Image, ImageStore, ImageUser, ImportOptions, Reference, RemovedImage};

fn rootfs_tar(marker: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], kind: tar::EntryType, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("etc/", b"", tar::EntryType::Directory, 0o755);
    add(
        "etc/marker",
        marker.as_bytes(),
        tar::EntryType::Regular,
        0o644,
    );
    add("bin/", b"", tar::EntryType::Directory, 0o755);
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

struct Env {
    dir: tempfile::TempDir,
    store: ImageStore,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("berth.redb")).unwrap());
    let store = ImageStore::open(dir.path(), db).unwrap();
    Env { dir, store }
}

fn import(store: &ImageStore, data: Vec<u8>, tag: Option<&str>) -> berth_image::Image {
    let opts = ImportOptions {
        reference: tag.map(|t| Reference::parse(t).unwrap()),
        config: serde_json::json!({"Cmd": ["/bin/sh"]}),
        message: None,
        platform: None,
    };
    store
        .import(Box::new(std::io::Cursor::new(data)), &opts)
        .unwrap()
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ImageStore>();
}

fn no_users(_: &str) -> Option<ImageUser> {
    None
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn import_list_resolve_tag_remove() {
    let Env { dir, store } = env();
    let tar = rootfs_tar("one");
    let img = import(&store, gzip(&tar), Some("busybox"));
    assert!(img.id.starts_with("sha256:") && img.id.len() == 71);
    assert_eq!(img.repo_tags, vec!["busybox:latest"]);
    assert_eq!(img.size, 3);
    // The diff id is the digest of the uncompressed tar, gzip or not.
    let diff_id = berth_image::content::sha256_digest(&tar);
    assert_eq!(img.layers, vec![diff_id.clone()]);
    assert_eq!(img.config["rootfs"]["diff_ids"][0], diff_id);
    assert_eq!(img.config["config"]["Cmd"][0], "/bin/sh");
    assert_eq!(img.config["architecture"], "amd64");
    assert_eq!(img.config["os"], "linux");
    assert_eq!(img.config["history"][0]["comment"], "Imported from -");
    let snap = dir
        .path()
        .join("snapshots")
        .join(&diff_id[7..])
        .join("fs/etc/marker");
    assert_eq!(std::fs::read(snap).unwrap(), b"one");

    // Resolve by name, full reference, id, prefixes.
    let hex = &img.id[7..];
    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
        &img.id,
        &hex[..12],
        &hex[..1],
    ] {
        assert_eq!(store.resolve(name).unwrap().id, img.id, "{name}");
    }
    assert_eq!(
        store.resolve(&format!("sha256:{}", &hex[..5])).unwrap().id,
        img.id
    );
    let e = store.resolve("nope").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.to_string(), "No such image: nope:latest");
    assert_eq!(store.get(&img.id).unwrap().id, img.id);

    // Tag and list; the same content imported again shares its snapshot.
    store
        .tag(&img.id, &Reference::parse("myreg:5000/x/y:1").unwrap())
        .unwrap();
    let img2 = import(&store, tar.clone(), Some("other:v2"));
    assert_ne!(img2.id, img.id);
    assert_eq!(img2.layers, img.layers);
    let mut list = store.list().unwrap();
    list.sort_by_key(|i| i.repo_tags.len());
    assert_eq!(list.len(), 2);
    assert_eq!(
        list[1].repo_tags,
        vec!["busybox:latest", "myreg:5000/x/y:1"]
    );

    // Moving a tag.
    store
        .tag(&img2.id, &Reference::parse("busybox").unwrap())
        .unwrap();
    assert_eq!(store.resolve("busybox").unwrap().id, img2.id);
    store
        .tag(&img.id, &Reference::parse("busybox").unwrap())
        .unwrap();

    // By id with tags in two repositories: needs force.
    let e = store.remove(&img.id, false, true, &no_users).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(
        e.to_string().contains("must be forced") && e.to_string().contains(&hex[..12]),
        "{e}"
    );

    // Untag one reference: the image stays.
    let r = store
        .remove("myreg:5000/x/y:1", false, true, &no_users)
        .unwrap();
    assert_eq!(r, vec![RemovedImage::Untagged("myreg:5000/x/y:1".into())]);
    // In use by a container: the last tag cannot go without force.
    let used = |id: &str| {
        (id == img.id).then(|| ImageUser {
            container: "0123abcd4567".to_owned(),
            running: false,
        })
    };
    let running = |id: &str| {
        (id == img.id).then(|| ImageUser {
            container: "89abcdef0123".to_owned(),
            running: true,
        })
    };
    let e = store.remove("busybox", false, true, &used).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(e.to_string().starts_with("conflict: unable to remove repository reference \"busybox\" (must force) - container 0123abcd4567 is using its referenced image"), "{e}");
    // With force: untagged, kept.
    let r = store.remove("busybox", true, true, &used).unwrap();
    assert_eq!(r, vec![RemovedImage::Untagged("busybox:latest".into())]);
    assert!(store.get(&img.id).unwrap().repo_tags.is_empty());
    let e = store.remove(&img.id, false, true, &used).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(
        e.to_string()
            .ends_with("(must be forced) - image is being used by stopped container 0123abcd4567"),
        "{e}"
    );
    // A running container's image cannot go, even forced.
    for force in [false, true] {
        let e = store.remove(&img.id, force, true, &running).unwrap_err();
        assert!(
            e.to_string().ends_with(
                "(cannot be forced) - image is being used by running container 89abcdef0123"
            ),
            "{e}"
        );
    }

    // Deleting the first image keeps the snapshot the second still uses.
    let r = store.remove(&img.id, false, true, &no_users).unwrap();
    assert_eq!(r, vec![RemovedImage::Deleted(img.id.clone())]);
    assert_eq!(store.get(&img.id).unwrap_err().kind(), ErrorKind::NotFound);
    assert!(dir.path().join("snapshots").join(&diff_id[7..]).is_dir());

    // The last image: untag + delete, snapshot and blobs collected.
    let r = store.remove("other:v2", false, true, &no_users).unwrap();
    assert_eq!(
        r,
        vec![
            RemovedImage::Untagged("other:v2".into()),
            RemovedImage::Deleted(img2.id.clone()),
            // Its one layer went with it: its chain id is its diff id.
            RemovedImage::LayerDeleted(diff_id.clone()),
        ]
    );
    assert!(store.list().unwrap().is_empty());
    assert_eq!(count(&dir.path().join("snapshots")), 0);
    assert_eq!(count(&dir.path().join("content/blobs/sha256")), 0);
}

#[test]
fn remove_by_id_with_two_tags_needs_force_then_untags_all() {
    let Env { dir: _dir, store } = env();
    let img = import(&store, rootfs_tar("x"), Some("app:1"));
    store
        .tag(&img.id, &Reference::parse("app:2").unwrap())
        .unwrap();
    // Two tags, even of one repository, are more than one reference (moby's rule).
    let e = store
        .remove(&img.id[7..19], false, true, &no_users)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(
        e.to_string()
            .ends_with("(must be forced) - image is referenced in multiple repositories"),
        "{e}"
    );
    assert_eq!(
        store.get(&img.id).unwrap().repo_tags.len(),
        2,
        "nothing changed"
    );
    let r = store.remove(&img.id[7..19], true, true, &no_users).unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(r[2], RemovedImage::Deleted(img.id.clone()));
    assert!(matches!(&r[3], RemovedImage::LayerDeleted(c) if c.starts_with("sha256:")));
}

#[test]
fn an_image_with_children_stays_while_they_do() {
    let Env { dir: _dir, store } = env();
    let base = import(&store, rootfs_tar("x"), Some("base:1"));
    // A child: committed from the base (its parent is recorded).
    let child = commit_child(&store, &base, "child:1");
    assert_eq!(child.parent.as_deref(), Some(base.id.as_str()));
    for force in [false, true] {
        let e = store.remove(&base.id, force, true, &no_users).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("(cannot be forced) - image has dependent child images"),
            "{e}"
        );
    }
    // By its last tag: untagged, kept for the child.
    let r = store.remove("base:1", false, true, &no_users).unwrap();
    assert_eq!(r, vec![RemovedImage::Untagged("base:1".into())]);
    assert!(store.get(&base.id).unwrap().repo_tags.is_empty());
    // With --no-prune the child goes alone; the untagged base can go after it.
    let r = store.remove("child:1", false, false, &no_users).unwrap();
    assert!(
        !r.contains(&RemovedImage::Deleted(base.id.clone())),
        "{r:?}"
    );
    let r = store.remove(&base.id, false, true, &no_users).unwrap();
    assert_eq!(r[0], RemovedImage::Deleted(base.id.clone()));

    // By default the parent a delete leaves dangling goes with it, and the layers it held.
    let base = import(&store, rootfs_tar("y"), Some("base:2"));
    let child = commit_child(&store, &base, "child:2");
    store.remove("base:2", false, true, &no_users).unwrap();
    let r = store.remove("child:2", false, true, &no_users).unwrap();
    assert_eq!(
        r.iter()
            .filter(|x| matches!(x, RemovedImage::Deleted(_)))
            .count(),
        2,
        "{r:?}"
    );
    assert_eq!(r[1], RemovedImage::Deleted(child.id.clone()));
    assert!(r.contains(&RemovedImage::Deleted(base.id.clone())), "{r:?}");
    assert!(
        matches!(r.last(), Some(RemovedImage::LayerDeleted(_))),
        "the base's layer went: {r:?}"
    );
    assert!(store.list().unwrap().is_empty());
}

fn commit_child(store: &ImageStore, base: &Image, tag: &str) -> Image {
    store
        .commit_container(
            "0123abcd",
            base,
            &berth_image::CommitOptions {
                reference: Some(Reference::parse(tag).unwrap()),
                config: serde_json::json!({}),
                ..Default::default()
            },
            Box::new(|_, _| false),
        )
        .unwrap()
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let Env { dir, store } = env();
    let opts = ImportOptions::default();
    for (data, what) in [
        (b"BZh91AY&SY".to_vec(), "bzip2"),
        (vec![0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2], "xz"),
    ] {
        let e = store
            .import(Box::new(std::io::Cursor::new(data)), &opts)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains(what), "{e}");
    }
    let e = store
        .import(
            Box::new(std::io::Cursor::new(vec![0x1f, 0x8b, 1, 2, 3])),
            &opts,
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let plat = ImportOptions {
        platform: Some("windows/amd64".into()),
        ..ImportOptions::default()
    };
    assert!(
        store
            .import(Box::new(std::io::Cursor::new(rootfs_tar("w"))), &plat)
            .is_err()
    );
    assert_eq!(count(&dir.path().join("snapshots")), 0);
    assert_eq!(count(&dir.path().join("content/blobs/sha256")), 0);
    assert!(store.list().unwrap().is_empty());
    assert_eq!(
        store.resolve("").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        store.resolve("sha256:zz").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn reopen_keeps_images_and_checks_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.redb");
    let id = {
        let db = Arc::new(redb::Database::create(&path).unwrap());
        let store = ImageStore::open(dir.path(), db).unwrap();
        import(&store, rootfs_tar("r"), Some("keep")).id
    };
    // Leftovers of an interrupted import are removed on open.
    std::fs::create_dir_all(dir.path().join("snapshots/tmp-dead/fs")).unwrap();
    std::fs::write(dir.path().join("content/blobs/sha256/.tmp-dead"), b"x").unwrap();
    let db = Arc::new(redb::Database::create(&path).unwrap());
    let store = ImageStore::open(dir.path(), db.clone()).unwrap();
    assert_eq!(store.resolve("keep").unwrap().id, id);
    assert!(!dir.path().join("snapshots/tmp-dead").exists());
    assert!(!dir.path().join("content/blobs/sha256/.tmp-dead").exists());
    drop(store);
    // A newer schema is refused.
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn
            .open_table(redb::TableDefinition::<&str, u64>::new("image_meta"))
            .unwrap();
        t.insert("schema_version", 99).unwrap();
    }
    txn.commit().unwrap();
    assert!(ImageStore::open(dir.path(), db).is_err());
}

/// Unmounts on drop so a failing assertion does not leave a mount behind.
struct MountGuard<'a>(&'a ImageStore, PathBuf);

impl Drop for MountGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.unmount_container(&self.1);
    }
}

/// A store with one image whose layers are mounted for container `id` on `<dir>/rootfs`;
/// `None` (the test skips) when not root or when overlay cannot mount here.
fn mounted(id: &str, upper: Upper) -> Option<(Env, berth_image::Image, PathBuf)> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: needs root");
        return None;
    }
    let env = env();
    let img = import(&env.store, rootfs_tar("lower"), Some("m"));
    let target = env.dir.path().join("rootfs");
    std::fs::create_dir(&target).unwrap();
    if let Err(e) = env.store.mount_container(id, &img, &target, upper) {
        eprintln!("skipping: overlay mount failed here: {e}");
        return None;
    }
    Some((env, img, target))
}

#[test]
fn overlay_mount_keeps_container_changes() {
    let Some((Env { dir, store }, img, target)) = mounted("c1", Upper::Durable) else {
        return;
    };
    {
        let _g = MountGuard(&store, target.clone());
        assert_eq!(std::fs::read(target.join("etc/marker")).unwrap(), b"lower");
        std::fs::write(target.join("etc/marker"), b"changed").unwrap();
    }
    // Unmounted by the guard; the layer is untouched, the change is in the upper dir.
    assert!(!target.join("etc/marker").exists());
    store.unmount_container(&target).unwrap();
    let layer = dir
        .path()
        .join("snapshots")
        .join(&img.layers[0][7..])
        .join("fs/etc/marker");
    assert_eq!(std::fs::read(layer).unwrap(), b"lower");
    store
        .mount_container("c1", &img, &target, Upper::Durable)
        .unwrap();
    {
        let _g = MountGuard(&store, target.clone());
        assert_eq!(
            std::fs::read(target.join("etc/marker")).unwrap(),
            b"changed"
        );
    }
    store.remove_container("c1").unwrap();
    assert!(!dir.path().join("snapshots/ctr-c1").exists());

    // An image without layers mounts over the container's init layer alone.
    let empty = tar::Builder::new(Vec::new()).into_inner().unwrap();
    let mut img2 = import(&store, empty, None);
    img2.layers.clear();
    store
        .mount_container("c2", &img2, &target, Upper::Durable)
        .unwrap();
    let _g = MountGuard(&store, target.clone());
    let mut names: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".dockerenv", "dev", "etc", "proc", "sys"]);
    assert_eq!(
        std::fs::read_link(target.join("etc/mtab")).unwrap(),
        std::path::Path::new("/proc/mounts")
    );
    assert_eq!(
        overlay_options(&target).map(|o| o.contains("volatile")),
        Some(false)
    );
}

/// The superblock options of the overlay mounted at `target`, from mountinfo.
fn overlay_options(target: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let target = target.to_str().unwrap();
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        (f[4] == target && f[sep + 1] == "overlay").then(|| f[sep + 3].to_owned())
    })
}

#[test]
fn a_volatile_upper_skips_syncs_and_mounts_again() {
    let Some((Env { dir: _dir, store }, img, target)) = mounted("v1", Upper::Volatile) else {
        return;
    };
    {
        let _g = MountGuard(&store, target.clone());
        let opts = overlay_options(&target).expect("overlay mounted");
        let kernel = rustix::system::uname();
        let release = kernel.release().to_string_lossy().into_owned();
        let mut v = release
            .split(['.', '-'])
            .map(|x| x.parse::<u32>().unwrap_or(0));
        let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
        if (major, minor) >= (5, 10) {
            assert!(opts.contains("volatile"), "{opts}");
        }
        std::fs::write(target.join("etc/marker"), b"changed").unwrap();
    }
    // The kernel marks the work dir of a volatile mount and refuses to mount it again; the
    // upper is disposable, so the store clears the mark, and the changes are still there.
    store.unmount_container(&target).unwrap();
    store
        .mount_container("v1", &img, &target, Upper::Volatile)
        .unwrap();
    let _g = MountGuard(&store, target.clone());
    assert_eq!(
        std::fs::read(target.join("etc/marker")).unwrap(),
        b"changed"
    );
}
