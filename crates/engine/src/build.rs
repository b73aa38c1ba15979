//! `docker build` (`POST /build`) and `builder prune`: the engine's side of a build. The
//! context arrives as a tar (extracted into a private directory first) or, for `berth build`
//! on the same machine, as a directory the daemon reads in place. The build itself is
//! `berth_build::exec` on a blocking thread; base images come from the store or a pull.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use berth_build::exec::{BuildNetworkMode, BuildRequest, Host, StepNetwork};
pub use berth_build::exec::{Event, Output};
use berth_image::Reference;
use berth_image::store::Image;
use tokio::sync::mpsc;

use crate::Engine;
use crate::error::{EngineError, Result};

/// Largest build context accepted as a tar.
const MAX_CONTEXT: u64 = 16 << 30;

/// Where the build context comes from.
pub enum ContextSource {
    /// A tar stream (plain, gzip or zstd), as the docker CLI sends it.
    Tar(Box<dyn Read + Send>),
    /// A directory on this machine, read in place (`berth build`), with the Dockerfile's
    /// bytes sent alongside.
    Dir { path: PathBuf, dockerfile: Vec<u8> },
}

/// `POST /build` parameters.
pub struct BuildOptions {
    pub context: ContextSource,
    /// The Dockerfile's path in the context (`Dockerfile` by default).
    pub dockerfile: String,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    /// `networkmode`: `none` cuts every `RUN` off, `host` gives them the daemon's namespace;
    /// anything else puts each on the default bridge.
    pub network_mode: String,
    /// `outputs` (BuildKit's exporters): `local` or `tar` with an absolute `dest` on this
    /// machine.
    pub output: Option<berth_build::exec::Output>,
    /// `--secret` contents by id.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// Set when the client went away.
    pub cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// What a finished build reports.
#[derive(Debug, Clone)]
pub struct Built {
    pub id: String,
    /// The tags, familiar (`name:tag`).
    pub tags: Vec<String>,
    pub cached: usize,
    pub executed: usize,
}

/// Base images for a build: from the store, pulled when missing or asked.
struct EngineHost {
    engine: Engine,
    rt: tokio::runtime::Handle,
}

impl Host for EngineHost {
    fn image(&self, reference: &str, pull: bool) -> std::result::Result<Image, String> {
        let images = &self.engine.inner.images;
        if !pull {
            if let Ok(img) = images.resolve(reference) {
                return Ok(img);
            }
        }
        let engine = self.engine.clone();
        let r = reference.to_owned();
        let pulled = self.rt.block_on(async move {
            let plan = engine
                .pull_plan(&r, None, berth_registry::client::Credentials::default())
                .await?;
            let (tx, mut rx) = mpsc::unbounded_channel();
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            engine.pull(plan, tx).await
        });
        match pulled {
            Ok(_) => images.resolve(reference).map_err(|e| e.to_string()),
            // A pull that fails leaves a local image good enough unless one was demanded.
            Err(e) => match images.resolve(reference) {
                Ok(img) if pull => {
                    tracing::warn!(reference, error = %e, "pull failed; building on the local image");
                    Ok(img)
                }
                _ => Err(format!("failed to resolve {reference}: {e}")),
            },
        }
    }

    fn fetch(
        &self,
        url: &str,
        dest: &std::path::Path,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> std::result::Result<(), String> {
        self.rt.block_on(self.fetch_async(url, dest, cancel))
    }

    fn network(&self, id: &str) -> std::result::Result<Option<StepNetwork>, String> {
        let net = self
            .rt
            .block_on(self.engine.build_network(id))
            .map_err(|e| format!("a network for the step: {e}"))?;
        Ok(net.map(|n| {
            let engine = self.engine.clone();
            let rt = self.rt.clone();
            StepNetwork {
                netns: n.netns.clone(),
                resolv_conf: n.resolv_conf.clone(),
                release: Some(Box::new(move || {
                    let _enter = rt.enter();
                    engine.build_network_release(n);
                })),
            }
        }))
    }
}

/// Largest file `ADD <url>` downloads.
const MAX_DOWNLOAD: u64 = 16 << 30;

impl EngineHost {
    async fn fetch_async(
        &self,
        url: &str,
        dest: &std::path::Path,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> std::result::Result<(), String> {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let mut stream = self
            .engine
            .registry()
            .get_url(url)
            .await
            .map_err(|e| e.to_string())?;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(|e| format!("create {}: {e}", dest.display()))?;
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Err("the build was cancelled".into());
            }
            let chunk = chunk.map_err(|e| e.to_string())?;
            total += chunk.len() as u64;
            if total > MAX_DOWNLOAD {
                return Err(format!("larger than {MAX_DOWNLOAD} bytes"));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("write {}: {e}", dest.display()))?;
        }
        file.flush().await.map_err(|e| e.to_string())
    }
}

impl Engine {
    /// Runs a build; `progress` gets its log as it happens. Returns the image.
    pub async fn build(&self, opts: BuildOptions, progress: mpsc::Sender<Event>) -> Result<Built> {
        let tags = opts
            .tags
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| Reference::parse(t).map_err(EngineError::from))
            .collect::<Result<Vec<_>>>()?;
        // On disk (a context may be gigabytes), root's only.
        let tmp = self.inner.cfg.data_root.join("tmp");
        std::fs::create_dir_all(&tmp)
            .map_err(EngineError::io(format!("create {}", tmp.display())))?;
        rustix::fs::chmod(&tmp, rustix::fs::Mode::from_raw_mode(0o700))
            .map_err(|e| EngineError::io(format!("chmod {}", tmp.display()))(e.into()))?;
        let staging = tmp.join(format!("build-ctx-{:016x}", rand::random::<u64>()));
        let engine = self.clone();
        let rt = tokio::runtime::Handle::current();
        let dockerfile_name = if opts.dockerfile.is_empty() {
            "Dockerfile".to_owned()
        } else {
            opts.dockerfile.clone()
        };
        let dir = staging.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<_> {
            let (context, dockerfile) = match opts.context {
                ContextSource::Dir { path, dockerfile } => (path, dockerfile),
                ContextSource::Tar(reader) => {
                    extract_context(reader, &dir)?;
                    let df = read_dockerfile(&dir, &dockerfile_name)?;
                    (dir.clone(), df)
                }
            };
            let req = BuildRequest {
                context,
                dockerfile,
                dockerfile_name: dockerfile_name.trim_start_matches("./").to_owned(),
                tags,
                build_args: opts.build_args,
                labels: opts.labels,
                target: opts.target.filter(|t| !t.is_empty()),
                no_cache: opts.no_cache,
                pull: opts.pull,
                network: match opts.network_mode.as_str() {
                    "none" => BuildNetworkMode::None,
                    "host" => BuildNetworkMode::Host,
                    _ => BuildNetworkMode::Default,
                },
                output: opts.output,
                secrets: opts.secrets,
                cancel: opts.cancel,
            };
            let host = EngineHost {
                engine: engine.clone(),
                rt,
            };
            // Bounded: a slow client slows the build down rather than filling memory.
            let send = |e: Event| {
                let _ = progress.blocking_send(e);
            };
            Ok(engine.inner.builder.build(&req, &host, &send))
        })
        .await;
        if staging.exists() {
            if let Err(e) = crate::fsutil::remove_dir_later(&staging) {
                tracing::warn!(path = %staging.display(), error = %e, "removing a build context");
            }
        }
        let result = result.map_err(|e| EngineError::Runtime(format!("build task: {e}")))??;
        let built = result.map_err(|e| {
            if let Some(code) = e.exit_code() {
                EngineError::RunFailed {
                    message: e.to_string(),
                    code,
                }
            } else if e.is_user_error() {
                EngineError::InvalidArgument(e.to_string())
            } else {
                EngineError::Runtime(e.to_string())
            }
        })?;
        let id = built.image.id.clone();
        let mut tags = Vec::new();
        for t in opts.tags.iter().filter(|t| !t.is_empty()) {
            let name = Reference::parse(t)
                .map(|r| r.familiar())
                .unwrap_or_else(|_| t.clone());
            self.emit_image("tag", &id, &name);
            tags.push(name);
        }
        Ok(Built {
            id,
            tags,
            cached: built.cached,
            executed: built.executed,
        })
    }

    /// `builder prune`: entries last used before `until` (all when `None`); returns the
    /// removed keys and the bytes their layers held.
    pub async fn build_prune(&self, until: Option<i64>) -> Result<(Vec<String>, u64)> {
        let engine = self.clone();
        let pruned = tokio::task::spawn_blocking(move || engine.inner.images.cache_prune(until))
            .await
            .map_err(|e| EngineError::Runtime(format!("prune task: {e}")))??;
        Ok((pruned.keys, pruned.reclaimed))
    }

    /// The build cache's entries with their keys, for `system df`.
    pub fn build_cache_usage(&self) -> Result<Vec<(String, berth_image::buildcache::CacheEntry)>> {
        Ok(self.inner.images.cache_entries()?)
    }
}

/// Extracts a context tar into `dir` with the hardened layer extraction (no escapes, no
/// devices, size capped).
fn extract_context(reader: Box<dyn Read + Send>, dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(EngineError::io(format!("create {}", dir.display())))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, reader);
    let head = std::io::BufRead::fill_buf(&mut reader)
        .map_err(EngineError::io("read the build context"))?;
    let compression = berth_image::layer::detect_compression(head)?;
    let mut plain = berth_image::layer::decompress(reader, compression)?;
    let mut first = Vec::with_capacity(512);
    (&mut plain)
        .take(512)
        .read_to_end(&mut first)
        .map_err(EngineError::io("read the build context"))?;
    let is_tar =
        first.len() == 512 && (&first[257..262] == b"ustar" || first.iter().all(|b| *b == 0));
    if !is_tar && !first.is_empty() {
        // `docker build - < Dockerfile`: the body is the Dockerfile, with no context.
        let mut data = first;
        plain
            .take(16 << 20)
            .read_to_end(&mut data)
            .map_err(EngineError::io("read the Dockerfile"))?;
        let p = dir.join("Dockerfile");
        return std::fs::write(&p, data).map_err(EngineError::io(format!("write {}", p.display())));
    }
    let plain = BlockPadded::new(std::io::Cursor::new(first).chain(plain));
    let opts = berth_image::apply::ApplyOptions {
        max_bytes: MAX_CONTEXT,
        plain_archive: true,
        ..Default::default()
    };
    berth_image::apply::apply_layer(dir, plain, &opts)
        .map_err(|e| EngineError::InvalidArgument(format!("unreadable build context: {e}")))?;
    Ok(())
}

/// A context tar whose last entry may lack its padding: the docker CLI's `build -f` of a
/// Dockerfile from outside the context (or stdin) appends it to the tar without the padding
/// after its data and without the end-of-archive blocks, which dockerd reads anyway. The
/// reader follows the entries' headers as they pass: a stream that ends right after an
/// entry's data gets the zeros up to its block boundary; one that ends inside a header or
/// inside an entry's data is an error, never a file with a zeroed tail.
struct BlockPadded<R> {
    inner: R,
    /// Bytes passed on so far.
    read: u64,
    /// Where the header being read (or the next one) starts.
    header_at: u64,
    /// The header's bytes so far.
    header: Vec<u8>,
    /// Where the current entry's data ends, and its padding.
    data_end: u64,
    /// Zeros still to give once `inner` has ended.
    pad: Option<u64>,
}

impl<R: Read> BlockPadded<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            read: 0,
            header_at: 0,
            header: Vec::with_capacity(512),
            data_end: 0,
            pad: None,
        }
    }

    /// Follows the headers in `data`, which starts at offset `self.read`.
    fn track(&mut self, data: &[u8]) {
        let mut at = self.read;
        let end = at + data.len() as u64;
        while at < end {
            if at < self.header_at {
                at = self.header_at.min(end);
                continue;
            }
            let from = (at - self.read) as usize;
            let want = 512 - self.header.len();
            let take = want.min(data.len() - from);
            self.header.extend_from_slice(&data[from..from + take]);
            at += take as u64;
            if self.header.len() == 512 {
                let size = entry_size(&self.header);
                let start = self.header_at + 512;
                self.data_end = start.saturating_add(size);
                self.header_at = start.saturating_add(size.div_ceil(512).saturating_mul(512));
                self.header.clear();
            }
        }
    }
}

/// The data size a tar header declares (octal, or GNU base-256 when the high bit is set).
fn entry_size(h: &[u8]) -> u64 {
    let f = &h[124..136];
    if f[0] & 0x80 != 0 {
        return f[1..].iter().fold(0u64, |n, b| {
            n.saturating_mul(256).saturating_add(u64::from(*b))
        });
    }
    f.iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(*b))
        .fold(0u64, |n, b| {
            n.saturating_mul(8).saturating_add(u64::from(b - b'0'))
        })
}

impl<R: Read> Read for BlockPadded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pad.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.track(&buf[..n]);
                self.read += n as u64;
                return Ok(n);
            }
            let at_boundary = self.read == self.header_at && self.header.is_empty();
            let after_data = self.read >= self.data_end && self.read < self.header_at;
            if !(at_boundary || after_data) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the build context ends inside an entry",
                ));
            }
            self.pad = Some(self.header_at - self.read);
        }
        let left = self.pad.as_mut().expect("set above");
        let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        *left -= n as u64;
        Ok(n)
    }
}

/// The Dockerfile from an extracted context, resolved inside it.
fn read_dockerfile(dir: &std::path::Path, name: &str) -> Result<Vec<u8>> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let root = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| EngineError::io(format!("open {}", dir.display()))(e.into()))?;
    let fd = rustix::fs::openat2(
        &root,
        name.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|_| {
        EngineError::InvalidArgument(format!("Cannot locate specified Dockerfile: {name}"))
    })?;
    let mut data = Vec::new();
    std::fs::File::from(fd)
        .take(16 << 20)
        .read_to_end(&mut data)
        .map_err(EngineError::io(format!("read {name}")))?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::BlockPadded;
    use std::io::Read;

    /// A ustar archive of `files`.
    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn read_all(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        BlockPadded::new(bytes).read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn a_missing_last_padding_is_supplied_and_a_cut_entry_is_an_error() {
        let full = tar_of(&[("a", b"first"), ("Dockerfile", b"FROM scratch\n")]);
        // Header of the second entry at 1024, its 13 bytes of data, nothing after: as the
        // docker CLI sends an appended Dockerfile.
        let cut = &full[..1024 + 512 + 13];
        let padded = read_all(cut).unwrap();
        assert_eq!(padded.len(), 1024 + 1024);
        let mut names = Vec::new();
        for e in tar::Archive::new(&padded[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let mut data = String::new();
            e.read_to_string(&mut data).unwrap();
            names.push((e.path().unwrap().display().to_string(), data));
        }
        assert_eq!(
            names,
            [
                ("a".to_owned(), "first".to_owned()),
                ("Dockerfile".to_owned(), "FROM scratch\n".to_owned())
            ]
        );
        // A whole archive passes unchanged.
        assert_eq!(read_all(&full).unwrap(), full);
        // Cut inside the data, or inside a header: refused.
        for at in [1024 + 512 + 5, 1024 + 100, 512 + 2] {
            let e = read_all(&full[..at]).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "cut at {at}");
        }
    }
}
