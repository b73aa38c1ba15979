//! Layer apply against a corpus of hostile tarballs: nothing may land outside the root.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use berth_image::apply::{ApplyOptions, apply_layer};
use berth_image::error::ErrorKind;
use tar::{EntryType, Header};

/// A tar stream built from raw headers (so paths with `..` and absolute links get through).
#[derive(Default)]
struct Tarball(Vec<u8>);

impl Tarball {
    fn entry(mut self, kind: EntryType, path: &str, link: &str, data: &[u8], mode: u32) -> Self {
        let mut h = Header::new_old();
        {
            let old = h.as_old_mut();
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }
    fn file(self, path: &str, data: &[u8]) -> Self {
        self.entry(EntryType::Regular, path, "", data, 0o644)
    }
    fn dir(self, path: &str) -> Self {
        self.entry(EntryType::Directory, path, "", b"", 0o755)
    }
    fn symlink(self, path: &str, target: &str) -> Self {
        self.entry(EntryType::Symlink, path, target, b"", 0o777)
    }
    fn hardlink(self, path: &str, target: &str) -> Self {
        self.entry(EntryType::Link, path, target, b"", 0o644)
    }
    fn finish(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        self.0
    }
}

/// A sandbox: `<tmp>/root` is extracted into, `<tmp>/outside` must stay empty.
struct Sandbox {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    outside: std::path::PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("passwd"), b"host").unwrap();
        Self {
            _dir: dir,
            root,
            outside,
        }
    }
    fn apply(
        &self,
        tar: Vec<u8>,
    ) -> Result<berth_image::apply::ApplyStats, berth_image::ImageError> {
        apply_layer(&self.root, tar.as_slice(), &ApplyOptions::default())
    }
    fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("passwd")]);
        assert_eq!(fs::read(self.outside.join("passwd")).unwrap(), b"host");
        let parent = self.root.parent().unwrap();
        let mut top: Vec<_> = fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        top.sort();
        assert_eq!(top, vec!["outside", "root"]);
    }
}

fn is_layer_error(e: &berth_image::ImageError) -> bool {
    e.kind() == ErrorKind::InvalidArgument
}

#[test]
fn plain_layer_is_extracted_with_metadata() {
    let s = Sandbox::new();
    let tar = Tarball::default()
        .dir("./")
        .dir("etc/")
        .file("etc/hosts", b"127.0.0.1 localhost\n")
        .entry(EntryType::Regular, "bin/su", "", b"x", 0o4755)
        .symlink("bin/sh", "/bin/busybox")
        .hardlink("etc/hosts2", "etc/hosts")
        .entry(EntryType::Fifo, "run/fifo", "", b"", 0o600)
        .finish();
    let stats = s.apply(tar).unwrap();
    // The file bytes once (the hard link adds none) and the symlink's 12-byte target.
    assert_eq!(stats.bytes, 21 + 12);
    assert_eq!(stats.entries, 7);
    assert_eq!(
        fs::read(s.root.join("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    let su = fs::metadata(s.root.join("bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(su.mtime(), 1_600_000_000);
    assert_eq!(
        fs::read_link(s.root.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        fs::metadata(s.root.join("etc/hosts2")).unwrap().ino(),
        fs::metadata(s.root.join("etc/hosts")).unwrap().ino()
    );
    assert!(
        fs::symlink_metadata(s.root.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo_like()
    );
    assert_eq!(
        fs::metadata(s.root.join("etc")).unwrap().mtime(),
        1_600_000_000
    );
    s.assert_outside_untouched();
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn dotdot_escape_is_refused() {
    let s = Sandbox::new();
    let e = s
        .apply(Tarball::default().file("../outside/evil", b"x").finish())
        .unwrap_err();
    assert!(is_layer_error(&e), "{e}");
    let e = s
        .apply(
            Tarball::default()
                .file("a/../../outside/evil", b"x")
                .finish(),
        )
        .unwrap_err();
    assert!(is_layer_error(&e), "{e}");
    s.assert_outside_untouched();
    // `..` that stays inside the root is fine.
    s.apply(Tarball::default().file("a/b/../c", b"ok").finish())
        .unwrap();
    assert_eq!(fs::read(s.root.join("a/c")).unwrap(), b"ok");
}

#[test]
fn absolute_paths_land_inside_the_root() {
    let s = Sandbox::new();
    s.apply(Tarball::default().file("/abs/path", b"in").finish())
        .unwrap();
    assert_eq!(fs::read(s.root.join("abs/path")).unwrap(), b"in");
    s.assert_outside_untouched();
}

#[test]
fn writes_through_symlinks_stay_inside() {
    for target in ["../outside", "/../outside", "../../../../outside", "/etc"] {
        let s = Sandbox::new();
        let r = s.apply(
            Tarball::default()
                .symlink("link", target)
                .file("link/passwd", b"pwned")
                .finish(),
        );
        if r.is_ok() {
            // Resolved inside the root: `/etc` -> root/etc, `../outside` -> root/outside.
            let inside = s.root.join(
                target
                    .trim_start_matches(['/', '.'])
                    .trim_start_matches("./"),
            );
            let name = inside.file_name().unwrap().to_owned();
            assert_eq!(
                fs::read(s.root.join(name).join("passwd")).unwrap(),
                b"pwned"
            );
        }
        s.assert_outside_untouched();
    }
    // With the target present inside the root, the write lands there.
    let s = Sandbox::new();
    s.apply(
        Tarball::default()
            .dir("etc/")
            .symlink("link", "/etc")
            .file("link/passwd", b"in root")
            .finish(),
    )
    .unwrap();
    assert_eq!(fs::read(s.root.join("etc/passwd")).unwrap(), b"in root");
    let s = Sandbox::new();
    s.apply(
        Tarball::default()
            .dir("outside/")
            .symlink("link", "../../../outside")
            .file("link/passwd", b"in root")
            .finish(),
    )
    .unwrap();
    assert_eq!(fs::read(s.root.join("outside/passwd")).unwrap(), b"in root");
    s.assert_outside_untouched();
}

#[test]
fn symlink_as_final_component_is_replaced_not_followed() {
    let s = Sandbox::new();
    let outside_file = s.outside.join("passwd");
    let tar = Tarball::default()
        .symlink("passwd", outside_file.to_str().unwrap())
        .file("passwd", b"replaced")
        .finish();
    s.apply(tar).unwrap();
    assert!(
        fs::symlink_metadata(s.root.join("passwd"))
            .unwrap()
            .is_file()
    );
    s.assert_outside_untouched();
}

#[test]
fn hardlinks_cannot_escape() {
    let s = Sandbox::new();
    let e = s
        .apply(
            Tarball::default()
                .hardlink("pw", "../../outside/passwd")
                .finish(),
        )
        .unwrap_err();
    assert!(is_layer_error(&e), "{e}");
    let e = s
        .apply(
            Tarball::default()
                .hardlink("pw", "../outside/passwd")
                .finish(),
        )
        .unwrap_err();
    assert!(is_layer_error(&e), "{e}");
    // Through a symlink: resolved inside the root, where there is no such file.
    let abs = s.outside.to_str().unwrap().to_owned();
    for link in ["../outside", abs.as_str()] {
        let e = s
            .apply(
                Tarball::default()
                    .symlink("esc", link)
                    .hardlink("pw", "esc/passwd")
                    .finish(),
            )
            .unwrap_err();
        assert!(is_layer_error(&e), "{e}");
    }
    // A hard link to a symlink links the symlink itself.
    s.apply(
        Tarball::default()
            .symlink("sl", "../outside/passwd")
            .hardlink("hl", "sl")
            .finish(),
    )
    .unwrap();
    assert!(
        fs::symlink_metadata(s.root.join("hl"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::metadata(s.outside.join("passwd")).unwrap().nlink(), 1);
    s.assert_outside_untouched();
}

#[test]
fn hardlink_to_directory_is_refused() {
    let s = Sandbox::new();
    let e = s
        .apply(Tarball::default().dir("d/").hardlink("x", "d").finish())
        .unwrap_err();
    assert!(is_layer_error(&e), "{e}");
}

#[test]
fn directory_replaced_by_symlink_then_written() {
    let s = Sandbox::new();
    let abs = s.outside.to_str().unwrap().to_owned();
    let tar = Tarball::default()
        .dir("d/")
        .file("d/keep", b"1")
        .symlink("d", &abs)
        .file("d/evil", b"x")
        .finish();
    let r = s.apply(tar);
    if r.is_ok() {
        // `d` resolved to root/<abs path>, created inside the root.
        let inside = s.root.join(abs.trim_start_matches('/'));
        assert_eq!(fs::read(inside.join("evil")).unwrap(), b"x");
    }
    s.assert_outside_untouched();
}

#[test]
fn file_over_directory_replaces_it_and_dir_over_dir_keeps_it() {
    let s = Sandbox::new();
    let tar = Tarball::default()
        .dir("d/")
        .file("d/a", b"1")
        .dir("d/")
        .file("d/b", b"2")
        .dir("x/")
        .file("x/inner", b"3")
        .file("x", b"file now")
        .finish();
    s.apply(tar).unwrap();
    assert!(s.root.join("d/a").is_file());
    assert!(s.root.join("d/b").is_file());
    assert_eq!(fs::read(s.root.join("x")).unwrap(), b"file now");
}

#[test]
fn caps_stop_bombs() {
    let s = Sandbox::new();
    // A header that declares 1 TiB: refused before any data is read.
    let mut h = Header::new_gnu();
    h.set_path("big").unwrap();
    h.set_size(1 << 40);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    let e = s.apply(h.as_bytes().to_vec()).unwrap_err();
    assert!(e.to_string().contains("layer too large"), "{e}");

    let opts = ApplyOptions {
        max_bytes: 10,
        ..ApplyOptions::default()
    };
    let tar = Tarball::default()
        .file("a", b"123456")
        .file("b", b"123456")
        .finish();
    let e = apply_layer(&s.root, tar.as_slice(), &opts).unwrap_err();
    assert!(e.to_string().contains("layer too large"), "{e}");

    let opts = ApplyOptions {
        max_entries: 2,
        ..ApplyOptions::default()
    };
    let tar = Tarball::default().dir("a/").dir("b/").dir("c/").finish();
    assert!(apply_layer(&s.root, tar.as_slice(), &opts).is_err());

    let opts = ApplyOptions {
        max_path_len: 8,
        ..ApplyOptions::default()
    };
    let tar = Tarball::default().file("aaaa/bbbb/cccc", b"").finish();
    assert!(apply_layer(&s.root, tar.as_slice(), &opts).is_err());
}

#[test]
fn whiteouts_remove_entries() {
    let s = Sandbox::new();
    s.apply(
        Tarball::default()
            .file("a/f", b"1")
            .file("a/g", b"2")
            .dir("b/")
            .file("b/x", b"")
            .finish(),
    )
    .unwrap();
    s.apply(
        Tarball::default()
            .file("a/.wh.f", b"")
            .file(".wh.b", b"")
            .file("a/.wh..wh..opq", b"")
            .file(".wh.missing", b"")
            .finish(),
    )
    .unwrap();
    assert!(!s.root.join("a/f").exists());
    assert!(s.root.join("a/g").exists());
    assert!(!s.root.join("b").exists());
    assert!(!s.root.join("a/.wh..wh..opq").exists());
    // A whiteout cannot climb out either.
    let e = s
        .apply(Tarball::default().file("../.wh.outside", b"").finish())
        .unwrap_err();
    assert!(is_layer_error(&e));
    let e = s
        .apply(Tarball::default().file(".wh..", b"").finish())
        .unwrap_err();
    assert!(is_layer_error(&e));
    s.assert_outside_untouched();
}

#[test]
fn whiteouts_in_overlay_form() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let s = Sandbox::new();
    let opts = ApplyOptions {
        overlay_whiteouts: true,
        ..ApplyOptions::default()
    };
    let tar = Tarball::default()
        .file(".wh.gone", b"")
        .dir("o/")
        .file("o/.wh..wh..opq", b"")
        .finish();
    apply_layer(&s.root, tar.as_slice(), &opts).unwrap();
    let m = fs::symlink_metadata(s.root.join("gone")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &m.file_type()
    ));
    assert_eq!(m.rdev(), 0);
}

#[test]
fn devices_only_when_allowed() {
    let s = Sandbox::new();
    let tar = || {
        Tarball::default()
            .entry(EntryType::Char, "dev/null", "", b"", 0o666)
            .finish()
    };
    s.apply(tar()).unwrap();
    assert!(!s.root.join("dev/null").exists());
    if rustix::process::geteuid().is_root() {
        let opts = ApplyOptions {
            allow_devices: true,
            ..ApplyOptions::default()
        };
        apply_layer(&s.root, tar().as_slice(), &opts).unwrap();
        let m = fs::symlink_metadata(s.root.join("dev/null")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &m.file_type()
        ));
    }
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let s = Sandbox::new();
    let mut junk = vec![0x41u8; 512];
    junk.extend(std::iter::repeat_n(0u8, 1024));
    assert!(s.apply(junk).is_err());
    let truncated = Tarball::default().file("f", &[7u8; 2000]).finish();
    assert!(s.apply(truncated[..1000].to_vec()).is_err());
}

/// A GNU long-name or PAX entry claiming gigabytes is refused from its header, before the tar
/// reader would try to hold it in memory.
#[test]
fn huge_metadata_entries_are_refused_from_their_header() {
    for kind in [b'L', b'K', b'x', b'g'] {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::new(kind));
        h.set_size(20 << 30);
        h.set_mode(0o644);
        h.set_cksum();
        let mut tar = h.as_bytes().to_vec();
        tar.extend(std::iter::repeat_n(b'a', 4096)); // a stream that would go on for 20 GiB
        let s = Sandbox::new();
        let e = s.apply(tar).unwrap_err();
        assert!(is_layer_error(&e), "{e}");
        assert!(e.to_string().contains("tar header entry"), "{e}");
        s.assert_outside_untouched();
    }
}

/// Long names and large PAX records within the limit still work, and the blocks stay in
/// step across them (entries after them are read).
#[test]
fn long_names_and_pax_records_pass() {
    let long = format!("{}/{}/file", "d".repeat(120), "e".repeat(120));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    b.append_data(&mut h, &long, &b"hello"[..]).unwrap();
    let big_value = "v".repeat(100_000);
    b.append_pax_extensions([("BERTH.test", big_value.as_bytes())])
        .unwrap();
    let mut h = Header::new_ustar();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    b.append_data(&mut h, "after", &b"end"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let s = Sandbox::new();
    s.apply(tar).unwrap();
    assert_eq!(fs::read(s.root.join(&long)).unwrap(), b"hello");
    assert_eq!(fs::read(s.root.join("after")).unwrap(), b"end");
}

#[test]
fn plain_archives_keep_whiteout_names_as_files() {
    let s = Sandbox::new();
    s.apply(Tarball::default().file("keep", b"1").finish())
        .unwrap();
    let opts = ApplyOptions {
        plain_archive: true,
        ..ApplyOptions::default()
    };
    let tar = Tarball::default().file(".wh.keep", b"just a file").finish();
    apply_layer(&s.root, tar.as_slice(), &opts).unwrap();
    assert!(
        s.root.join("keep").exists(),
        "a plain archive deleted an entry"
    );
    assert_eq!(
        std::fs::read(s.root.join(".wh.keep")).unwrap(),
        b"just a file"
    );
}
