//! `remove_all_at` (used for whiteouts and replaced entries) is bounded: a tree deeper than
//! its limit, as a hostile image could carry, is refused instead of exhausting fds or stack.

use std::os::fd::AsFd;

use berth_image::apply::{MAX_REMOVE_DEPTH, remove_all_at};

#[test]
fn remove_all_at_is_bounded() {
    let t = tempfile::tempdir().unwrap();
    for (depth, ok) in [(50, true), (MAX_REMOVE_DEPTH + 10, false)] {
        let mut p = t.path().join("tree");
        for _ in 0..depth {
            p.push("d");
        }
        std::fs::create_dir_all(&p).unwrap();
        let dir = std::fs::File::open(t.path()).unwrap();
        let r = remove_all_at(dir.as_fd(), std::ffi::OsStr::new("tree"));
        assert_eq!(r.is_ok(), ok, "{depth}: {r:?}");
        assert_eq!(t.path().join("tree").exists(), !ok);
        if !ok {
            std::fs::remove_dir_all(t.path().join("tree")).unwrap();
        }
    }
}
