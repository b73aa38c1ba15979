//! Multi-layer images through the store: layers in every compression, whiteouts across
//! layers, checks of digests and sizes, resumed downloads, pending layers kept for a retry and
//! released after bad content, and save/load of the result.

use std::io::{self, Read, Write};
use std::sync::Arc;

use berth_image::content::sha256_digest;
use berth_image::layer::LayerExpect;
use berth_image::manifest::LayerCompression;
use berth_image::snapshot::chain_ids;
use berth_image::transfer::{self, Loaded, SaveItem};
use berth_image::{ImageError, ImageStore, Reference};

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        let dir = path.ends_with('/');
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_size(data.len() as u64);
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

fn new_store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("berth.redb")).unwrap());
    let store = ImageStore::open(dir.path(), db).unwrap();
    (dir, store)
}

fn config(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "created": "2026-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// A source that fails after `n` bytes, as a dropped connection does.
struct Cut<'a> {
    data: &'a [u8],
    n: usize,
}

impl Read for Cut<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.n == 0 {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "cut"));
        }
        let k = buf.len().min(self.n).min(self.data.len());
        buf[..k].copy_from_slice(&self.data[..k]);
        self.data = &self.data[k..];
        self.n -= k;
        Ok(k)
    }
}

#[test]
fn layers_of_every_compression_stack_with_whiteouts() {
    let (dir, store) = new_store();
    let l1 = tar_of(&[
        ("etc/", b""),
        ("etc/a", b"one"),
        ("etc/gone", b"x"),
        ("opq/", b""),
        ("opq/old", b"o"),
    ]);
    let l2 = tar_of(&[
        ("etc/.wh.gone", b""),
        ("opq/", b""),
        ("opq/.wh..wh..opq", b""),
        ("opq/new", b"n"),
    ]);
    let l3 = tar_of(&[("etc/b", b"three")]);
    let blobs = [gzip(&l1), zstd(&l2), l3.clone()];
    let kinds = [
        LayerCompression::Gzip,
        LayerCompression::Zstd,
        LayerCompression::None,
    ];
    let diff_ids: Vec<String> = [&l1, &l2, &l3].iter().map(|t| sha256_digest(t)).collect();
    let chains = chain_ids(&diff_ids);
    let mut refs = Vec::new();
    for i in 0..3 {
        let expect = LayerExpect {
            digest: Some(sha256_digest(&blobs[i])),
            size: Some(blobs[i].len() as u64),
            diff_id: Some(diff_ids[i].clone()),
            compression: Some(kinds[i]),
        };
        let parent = i.checked_sub(1).map(|p| chains[p].as_str());
        let r = store
            .unpack_layer(parent, &blobs[i][..], &expect, false)
            .unwrap();
        assert_eq!(r.diff_id, diff_ids[i]);
        assert_eq!(r.blob, sha256_digest(&blobs[i]));
        let info = store.layer(&chains[i]).unwrap().expect("recorded");
        assert_eq!(info.blob_size, blobs[i].len() as u64);
        refs.push(r);
    }
    let r = Reference::parse("stack:1").unwrap();
    let image = store
        .add_image(
            &config(&diff_ids),
            &refs,
            std::slice::from_ref(&r),
            None,
            None,
        )
        .unwrap();
    assert_eq!(image.layers, diff_ids);
    assert_eq!(image.layer_sizes, vec![5, 1, 5]);
    assert_eq!(image.size, 11);
    // Whiteouts are stored the way overlayfs reads them.
    let snap = |c: &str| {
        dir.path()
            .join("snapshots")
            .join(c.strip_prefix("sha256:").unwrap())
            .join("fs")
    };
    let wh = std::fs::symlink_metadata(snap(&chains[1]).join("etc/gone")).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);

    // Saved and loaded into a fresh store: same id, same layers; zstd goes out plain.
    let mut archive = Vec::new();
    transfer::save(
        &store,
        &[SaveItem {
            image: image.clone(),
            tags: vec![r.clone()],
        }],
        &mut archive,
    )
    .unwrap();
    let (dir2, store2) = new_store();
    let staging = dir2.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    // The tag names another image there first: the load moves it and says so, as moby.
    let other = store2
        .add_image(&config(&[]), &[], std::slice::from_ref(&r), None, None)
        .unwrap();
    assert_ne!(other.id, image.id);
    let mut lines = Vec::new();
    let loaded = transfer::load(&store2, &archive[..], &staging, &mut |l: &Loaded| {
        lines.push(l.to_string())
    })
    .unwrap();
    assert_eq!(loaded, vec![Loaded::Tagged("stack:1".into())]);
    assert_eq!(
        lines,
        vec![
            format!(
                "The image stack:1 already exists, renaming the old one with ID {} to empty string",
                other.id
            ),
            "Loaded image: stack:1".to_owned()
        ]
    );
    // Loaded again: the tag already names this image, so nothing is renamed.
    lines.clear();
    transfer::load(&store2, &archive[..], &staging, &mut |l: &Loaded| {
        lines.push(l.to_string())
    })
    .unwrap();
    assert_eq!(lines, vec!["Loaded image: stack:1".to_owned()]);
    let again = store2.resolve("stack:1").unwrap();
    assert_eq!(again.id, image.id);
    assert_eq!(again.layers, image.layers);
    // Push gets a gzip blob for the plain layer, made once.
    let (d1, s1, c1) = store.distributable_blob(&chains[2]).unwrap();
    assert_eq!(c1, LayerCompression::Gzip);
    let (d2, s2, _) = store.distributable_blob(&chains[2]).unwrap();
    assert_eq!((d1, s1), (d2, s2));
}

#[test]
fn lies_are_refused_and_leave_nothing() {
    let (dir, store) = new_store();
    let t = tar_of(&[("f", b"content")]);
    let gz = gzip(&t);
    let snapshots = || {
        std::fs::read_dir(dir.path().join("snapshots"))
            .unwrap()
            .count()
    };
    let blobs = || {
        std::fs::read_dir(dir.path().join("content/blobs/sha256"))
            .unwrap()
            .count()
    };
    let cases: Vec<(&str, LayerExpect)> = vec![
        (
            "digest",
            LayerExpect {
                digest: Some(sha256_digest(b"other")),
                ..Default::default()
            },
        ),
        (
            "size",
            LayerExpect {
                size: Some(gz.len() as u64 + 1),
                ..Default::default()
            },
        ),
        (
            "short size",
            LayerExpect {
                size: Some(10),
                ..Default::default()
            },
        ),
        (
            "diff id",
            LayerExpect {
                diff_id: Some(sha256_digest(b"other")),
                ..Default::default()
            },
        ),
        (
            "compression",
            LayerExpect {
                compression: Some(LayerCompression::Zstd),
                ..Default::default()
            },
        ),
    ];
    for (what, expect) in cases {
        let e = store
            .unpack_layer(None, &gz[..], &expect, false)
            .unwrap_err();
        // A blob shorter than its descriptor is the connection's failure (resumable); every
        // other lie is the content's.
        assert_eq!(e.source_failed, what == "size", "{what}: {}", e.error);
        assert!(
            matches!(
                e.error,
                ImageError::DigestMismatch { .. } | ImageError::InvalidLayer(_)
            ),
            "{what}: {}",
            e.error
        );
        assert_eq!(snapshots(), 0, "{what}");
        assert_eq!(blobs(), 0, "{what}");
    }
}

#[test]
fn an_interrupted_download_resumes_and_bad_content_is_released() {
    let (dir, store) = new_store();
    let t = tar_of(&[("big", &vec![7u8; 300_000][..]), ("small", b"s")]);
    let gz = gzip(&t);
    let expect = LayerExpect {
        digest: Some(sha256_digest(&gz)),
        size: Some(gz.len() as u64),
        diff_id: Some(sha256_digest(&t)),
        compression: None,
    };
    let cut = gz.len() / 2;
    let e = store
        .unpack_layer(None, Cut { data: &gz, n: cut }, &expect, true)
        .unwrap_err();
    assert!(e.source_failed, "{}", e.error);
    assert_eq!(
        store.content().partial_size(&sha256_digest(&gz)),
        cut as u64
    );
    // Only the rest is read the second time.
    let r = store.unpack_layer(None, &gz[cut..], &expect, true).unwrap();
    assert_eq!(r.diff_id, sha256_digest(&t));
    assert_eq!(store.content().partial_size(&sha256_digest(&gz)), 0);
    // Pending until an image names it, even across a reopen; released, it goes.
    let chain = chain_ids(std::slice::from_ref(&r.diff_id)).remove(0);
    drop(store);
    let db = Arc::new(redb::Database::create(dir.path().join("berth.redb")).unwrap());
    let store = ImageStore::open(dir.path(), db).unwrap();
    assert!(store.layer(&chain).unwrap().is_some(), "kept for a retry");
    store.release(&[chain.clone(), r.blob.clone()]).unwrap();
    assert!(store.layer(&chain).unwrap().is_none());
}

#[test]
fn decompression_bombs_are_stopped() {
    use berth_image::apply::ApplyOptions;
    use berth_image::content::ContentStore;
    use berth_image::snapshot::Snapshotter;
    let dir = tempfile::tempdir().unwrap();
    let content = ContentStore::open(&dir.path().join("content")).unwrap();
    let snapshots = Snapshotter::open(&dir.path().join("snapshots")).unwrap();
    let opts = ApplyOptions {
        ratio_floor: 1 << 20,
        max_ratio: 200,
        ..ApplyOptions::default()
    };
    let zeros = vec![0u8; 16 << 20];
    let bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&tar_of(&[("zeros", &zeros[..])])).unwrap();
        e.finish().unwrap()
    };
    assert!(bomb.len() < (16 << 20) / 200, "the test layer is a bomb");
    let e = berth_image::layer::unpack(
        &content,
        &snapshots,
        &bomb[..],
        &LayerExpect::default(),
        false,
        &opts,
    )
    .unwrap_err();
    assert!(
        e.error.to_string().contains("decompression bomb"),
        "{}",
        e.error
    );
    // Nothing stays: no blob, no snapshot.
    assert_eq!(content.list().unwrap().len(), 0);
    assert_eq!(snapshots.list().unwrap().len(), 0);
    // An ordinary layer of the same size passes.
    let mut data = vec![0u8; 16 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let fine = gzip(&tar_of(&[("random", &data[..])]));
    berth_image::layer::unpack(
        &content,
        &snapshots,
        &fine[..],
        &LayerExpect::default(),
        false,
        &opts,
    )
    .unwrap();
}
