//! One layer in one pass: the stream (plain tar, gzip or zstd) is written to the content
//! store as it is read, decompressed, hashed into its diff id and extracted into a fresh
//! snapshot; only when the blob's digest and size, and the diff id, are what the caller
//! expected do the blob and the snapshot become visible. Nothing is buffered whole, and a
//! layer is never copied to a temporary file first.
//!
//! A resumable download passes the bytes an earlier attempt stored (`prefix`); they are
//! unpacked again from disk and only the rest comes from the network.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::apply::{ApplyOptions, ApplyStats, apply_layer};
use crate::content::{BlobWriter, ContentStore, finish_digest};
use crate::error::ImageError;
use crate::manifest::LayerCompression;
use crate::snapshot::{Snapshotter, TempSnapshot};

/// What the caller knows of a layer before reading it; whatever is given is checked.
#[derive(Debug, Clone, Default)]
pub struct LayerExpect {
    /// The blob's digest (a manifest's layer descriptor).
    pub digest: Option<String>,
    /// The blob's size in bytes.
    pub size: Option<u64>,
    /// The digest of the uncompressed tar (the image config's `rootfs.diff_ids` entry).
    pub diff_id: Option<String>,
    /// The compression the media type declares; `None` detects it from the first bytes.
    pub compression: Option<LayerCompression>,
}

/// A layer read and unpacked, checked against what was expected; its blob and snapshot are
/// not yet visible (the store commits both, under its lock, with their lease).
#[derive(Debug)]
pub struct Unpacked {
    /// The digest of the blob.
    pub blob: String,
    /// The blob's bytes, to be committed.
    pub writer: BlobWriter,
    /// Its size.
    pub blob_size: u64,
    /// The digest of the uncompressed tar.
    pub diff_id: String,
    /// The compression of the blob.
    pub compression: LayerCompression,
    /// What the extraction wrote.
    pub stats: ApplyStats,
    /// The unpacked files, to be committed under the layer's chain id.
    pub snapshot: TempSnapshot,
}

/// Why an unpack failed: a failure of the source (the network) leaves a resumable download
/// in place; any other failure is the content's or ours.
#[derive(Debug)]
pub struct UnpackError {
    pub error: ImageError,
    pub source_failed: bool,
}

impl From<ImageError> for UnpackError {
    fn from(error: ImageError) -> Self {
        Self {
            error,
            source_failed: false,
        }
    }
}

/// Copies what is read from the source into the blob, counting bytes and noting a failure
/// of the source itself.
struct Tee<'a, R> {
    inner: R,
    blob: &'a mut BlobWriter,
    source_failed: bool,
    /// Bytes read from the source (without a resumed prefix).
    read: u64,
    /// Most bytes the source may send (the descriptor's size, less a resumed prefix).
    limit: u64,
    /// Whether `limit` is a known size (then ending early is the source's failure).
    sized: bool,
    /// Bytes an earlier attempt stored, and the descriptor's size (for messages).
    resumed: u64,
    declared: u64,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the limit is read, so that an overlong blob is caught.
        let cap = self.limit.saturating_add(1);
        let room = usize::try_from(cap - self.read.min(cap)).unwrap_or(usize::MAX);
        if room == 0 {
            return Err(io::Error::other(
                "the blob is larger than its descriptor says",
            ));
        }
        let want = buf.len().min(room);
        let n = match self.inner.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) => {
                self.source_failed = true;
                return Err(e);
            }
        };
        if n == 0 && self.sized && self.read < self.limit && !buf.is_empty() {
            // The connection ended before the blob did: the network's fault, resumable.
            self.source_failed = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the blob ended after {} bytes, its descriptor says {}",
                    self.resumed + self.read,
                    self.declared
                ),
            ));
        }
        self.read += n as u64;
        io::Write::write_all(self.blob, &buf[..n])?;
        Ok(n)
    }
}

/// Hashes what passes through (the diff id of the uncompressed tar).
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Counts the compressed bytes read.
struct Counting<'a, R> {
    inner: R,
    read: &'a Cell<u64>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// Stops a decompression bomb: past `floor` bytes out, the output may not exceed `ratio`
/// times the compressed bytes read (real layers compress 2-10 times; a file of zeros, a
/// thousand).
struct BombGuard<'a, R> {
    inner: R,
    compressed: &'a Cell<u64>,
    out: u64,
    floor: u64,
    ratio: u64,
}

impl<R: Read> Read for BombGuard<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        if self.out > self.floor && self.out > self.compressed.get().saturating_mul(self.ratio) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "decompression bomb: {} bytes out of {} compressed",
                    self.out,
                    self.compressed.get()
                ),
            ));
        }
        Ok(n)
    }
}

/// The compression of a stream from its first bytes; bzip2 and xz are refused.
pub fn detect_compression(head: &[u8]) -> Result<LayerCompression, ImageError> {
    let unsupported = |name: &str| {
        Err(ImageError::InvalidArgument(format!(
            "{name}-compressed archives are not supported; use a plain, gzip or zstd tar"
        )))
    };
    match Magic::of(head) {
        Magic::Gzip => Ok(LayerCompression::Gzip),
        Magic::Zstd => Ok(LayerCompression::Zstd),
        Magic::Bzip2 => unsupported("bzip2"),
        Magic::Xz => unsupported("xz"),
        Magic::Plain => Ok(LayerCompression::None),
    }
}

/// What a stream's first bytes say it is.
enum Magic {
    Plain,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl Magic {
    fn of(head: &[u8]) -> Magic {
        if head.starts_with(&[0x1f, 0x8b]) {
            Magic::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Magic::Zstd
        } else if head.starts_with(b"BZh") {
            Magic::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Magic::Xz
        } else {
            Magic::Plain
        }
    }
}

/// A decompressing reader.
pub fn decompress<'a>(
    raw: impl Read + 'a,
    compression: LayerCompression,
) -> Result<Box<dyn Read + 'a>, ImageError> {
    Ok(match compression {
        LayerCompression::None => Box::new(raw),
        LayerCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        LayerCompression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(raw)
                .map_err(|e| ImageError::InvalidLayer(format!("zstd: {e}")))?,
        ),
    })
}

/// A stream decompressed as Docker's `DecompressStream` reads archives (`ADD`, `docker cp -`):
/// plain, gzip, bzip2, xz or zstd, by their magic bytes.
pub fn decompress_any(raw: impl Read + Send + 'static) -> io::Result<Box<dyn Read + Send>> {
    let mut r = io::BufReader::with_capacity(1 << 20, raw);
    let magic = Magic::of(io::BufRead::fill_buf(&mut r)?);
    let bad = |e: ImageError| io::Error::other(e.to_string());
    Ok(match magic {
        Magic::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
        Magic::Xz => {
            // lzma-rs decodes into a writer: a thread feeds a pipe the reader drains. It ends
            // with the stream, or at the first write after the reader is gone.
            let (reader, mut writer) = io::pipe()?;
            std::thread::Builder::new()
                .name("xz-decode".into())
                .spawn(move || {
                    let mut r = r;
                    if let Err(e) = lzma_rs::xz_decompress(&mut r, &mut writer) {
                        tracing::debug!(error = %e, "xz stream");
                    }
                })?;
            Box::new(reader)
        }
        Magic::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Magic::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(r)
                .map_err(|e| bad(ImageError::InvalidLayer(format!("zstd: {e}"))))?,
        ),
        Magic::Plain => Box::new(r),
    })
}

/// Stores `source` as a blob and unpacks it into a new snapshot, checking `expect`.
/// `resume` continues a download of `expect.digest` that an earlier attempt began.
pub fn unpack(
    content: &ContentStore,
    snapshots: &Snapshotter,
    source: impl Read,
    expect: &LayerExpect,
    resume: bool,
    opts: &ApplyOptions,
) -> Result<Unpacked, UnpackError> {
    let (mut blob, prefix) = match (&expect.digest, resume) {
        (Some(d), true) => content.resume(d)?,
        _ => (content.writer()?, None),
    };
    let resumed = blob.size();
    let limit = expect
        .size
        .map_or(u64::MAX - 1, |s| s.saturating_sub(resumed));
    let temp = snapshots.prepare()?;
    let mut tee = Tee {
        inner: source,
        blob: &mut blob,
        source_failed: false,
        read: 0,
        limit,
        sized: expect.size.is_some(),
        resumed,
        declared: expect.size.unwrap_or(0),
    };
    let result = read_layer(prefix, &mut tee, &temp, expect, opts);
    let source_failed = tee.source_failed;
    let (stats, diff_id, compression) = match result {
        Ok(v) => v,
        Err(error) => {
            // A failed write of the blob surfaces as a read error of the tee: report it as
            // what it is.
            let error = match blob.take_error() {
                Some(io) => ImageError::Io {
                    context: "write layer blob".into(),
                    source: io,
                },
                None => error,
            };
            if !source_failed {
                blob.discard();
            }
            return Err(UnpackError {
                error,
                source_failed,
            });
        }
    };
    let blob_size = blob.size();
    if let Some(size) = expect.size {
        if blob_size != size {
            blob.discard();
            return Err(ImageError::InvalidLayer(format!(
                "blob is {blob_size} bytes, its descriptor says {size}"
            ))
            .into());
        }
    }
    if let Some(want) = &expect.diff_id {
        if *want != diff_id {
            blob.discard();
            return Err(ImageError::DigestMismatch {
                expected: want.clone(),
                actual: diff_id,
            }
            .into());
        }
    }
    let digest = blob.digest();
    if let Some(want) = &expect.digest {
        if *want != digest {
            blob.discard();
            return Err(ImageError::DigestMismatch {
                expected: want.clone(),
                actual: digest,
            }
            .into());
        }
    }
    Ok(Unpacked {
        blob: digest,
        writer: blob,
        blob_size,
        diff_id,
        compression,
        stats,
        snapshot: temp,
    })
}

fn read_layer<T: Read>(
    prefix: Option<File>,
    tee: &mut T,
    temp: &TempSnapshot,
    expect: &LayerExpect,
    opts: &ApplyOptions,
) -> Result<(ApplyStats, String, LayerCompression), ImageError> {
    let (stats, diff_id, found) = match prefix {
        Some(f) => decode(f.chain(&mut *tee), temp, expect, opts)?,
        None => decode(&mut *tee, temp, expect, opts)?,
    };
    // The compressed stream may go on after its end (padding); those bytes are part of the
    // blob and its digest too.
    io::copy(&mut tee.take(opts.max_bytes), &mut io::sink())
        .map_err(|e| ImageError::InvalidLayer(format!("reading layer: {e}")))?;
    Ok((stats, diff_id, found))
}

fn decode(
    mut raw: impl Read,
    temp: &TempSnapshot,
    expect: &LayerExpect,
    opts: &ApplyOptions,
) -> Result<(ApplyStats, String, LayerCompression), ImageError> {
    // Read the magic bytes, then hand them back in front of the rest of the stream.
    let mut head = Vec::with_capacity(6);
    (&mut raw)
        .take(6)
        .read_to_end(&mut head)
        .map_err(|e| ImageError::InvalidLayer(format!("reading layer: {e}")))?;
    let found = detect_compression(&head)?;
    if let Some(declared) = expect.compression {
        if declared != found {
            return Err(ImageError::InvalidLayer(format!(
                "the media type says {declared:?} compression, the content is {found:?}"
            )));
        }
    }
    let read = Cell::new(0u64);
    let raw = Counting {
        inner: io::Cursor::new(head).chain(raw),
        read: &read,
    };
    let guarded = BombGuard {
        inner: decompress(raw, found)?,
        compressed: &read,
        out: 0,
        floor: if found == LayerCompression::None {
            u64::MAX
        } else {
            opts.ratio_floor
        },
        ratio: opts.max_ratio,
    };
    let mut hashing = Hashing {
        inner: guarded,
        hasher: Sha256::new(),
    };
    let stats = apply_layer(&temp.fs(), &mut hashing, opts)?;
    // The digest covers the whole stream, including padding after the end of the tar;
    // trailing bytes are capped like the rest.
    let limit = opts.max_bytes.saturating_sub(stats.bytes);
    let rest = io::copy(
        &mut (&mut hashing).take(limit.saturating_add(1)),
        &mut io::sink(),
    )
    .map_err(|e| ImageError::InvalidLayer(format!("reading layer: {e}")))?;
    if rest > limit {
        return Err(ImageError::TooLarge(format!(
            "more than {} bytes",
            opts.max_bytes
        )));
    }
    Ok((stats, finish_digest(hashing.hasher), found))
}
