//! `docker pull` and `docker push`: the engine's pipeline over the registry client.
//!
//! Pull resolves the reference to one manifest (choosing the platform from an index),
//! fetches and checks the config, then fetches the missing layers in parallel: each layer's
//! bytes stream from the network through digest check, decompression and extraction into
//! its own snapshot in one pass ([`berth_image::ImageStore::unpack_layer`]), with no
//! temporary copy. A layer interrupted by the network resumes from the bytes already stored
//! (a ranged request), in this pull or a later one, even after a daemon restart; a layer
//! that lies about its digest aborts the pull and leaves nothing. The image is recorded only
//! once every layer is in, so a pull killed half-way leaves no image.
//!
//! Search asks the registry a term names (Docker Hub unless the term starts with a registry
//! host) through the client's v1 search, or its catalog where it has no v1 API.
//!
//! Push uploads what the registry lacks (layers compressed once with gzip and kept),
//! mounting blobs from other repositories of the same registry where the image came from,
//! the config, then the manifest.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_image::layer::LayerExpect;
use berth_image::manifest::{
    self, DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, Descriptor, Document, MAX_CONFIG,
    OCI_CONFIG, OCI_LAYER, OCI_LAYER_ZSTD, OCI_MANIFEST, Platform,
};
use berth_image::snapshot::chain_ids;
use berth_image::{Image, LayerRef, Reference};
use berth_registry::client::{ClientError, Credentials, Repository, SearchResult};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{Semaphore, mpsc};

use crate::archive::ChannelReader;
use crate::error::{EngineError, Result};
use crate::{Engine, lock};

/// Layers fetched at once (Docker's `max-concurrent-downloads`).
const PARALLEL_DOWNLOADS: usize = 3;
/// Layers pushed at once (Docker's `max-concurrent-uploads`).
const PARALLEL_UPLOADS: usize = 5;
/// Attempts per layer when the network fails (each resumes where the last stopped).
const ATTEMPTS: usize = 3;

/// One progress message, the engine's side of Docker's JSON progress stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The layer (short digest) or tag the line is about.
    pub id: Option<String>,
    pub status: String,
    pub current: Option<u64>,
    pub total: Option<u64>,
    /// Push's final `{"Tag","Digest","Size"}`.
    pub aux: Option<serde_json::Value>,
}

impl Progress {
    fn line(status: impl Into<String>) -> Self {
        Self {
            status: status.into(),
            ..Self::default()
        }
    }

    fn of(id: &str, status: impl Into<String>) -> Self {
        Self {
            id: Some(id.to_owned()),
            status: status.into(),
            ..Self::default()
        }
    }
}

/// Where progress goes; a client that went away does not stop the work.
pub type ProgressTx = mpsc::UnboundedSender<Progress>;

/// A pull whose manifest and config are resolved (errors up to here are the request's).
pub struct PullPlan {
    reference: Reference,
    repo: Repository,
    manifest_digest: String,
    layers: Vec<Descriptor>,
    config: Vec<u8>,
    diff_ids: Vec<String>,
}

fn short(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.chars().take(12).collect()
}

/// A Docker image manifest written as moby writes it (Go's `MarshalIndent` with three
/// spaces; descriptors as mediaType, size, digest): an image pushed again, by Berth or by
/// dockerd, then gets the digest it had.
fn docker_manifest_bytes(m: &manifest::Manifest) -> serde_json::Result<Vec<u8>> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Desc<'a> {
        media_type: &'a str,
        size: u64,
        digest: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        urls: Option<&'a Vec<String>>,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Doc<'a> {
        schema_version: u32,
        media_type: &'a str,
        config: Desc<'a>,
        layers: Vec<Desc<'a>>,
    }
    fn desc(d: &Descriptor) -> Desc<'_> {
        Desc {
            media_type: &d.media_type,
            size: d.size,
            digest: &d.digest,
            urls: d.urls.as_ref(),
        }
    }
    let doc = Doc {
        schema_version: m.schema_version,
        media_type: m.media_type.as_deref().unwrap_or(DOCKER_MANIFEST),
        config: desc(&m.config),
        layers: m.layers.iter().map(desc).collect(),
    };
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    serde::Serialize::serialize(
        &doc,
        &mut serde_json::Serializer::with_formatter(&mut out, fmt),
    )?;
    Ok(out)
}

/// A registry error as Docker words it for a pull of `reference`.
fn pull_error(reference: &Reference, e: ClientError) -> EngineError {
    match e {
        ClientError::NotFound(r) => EngineError::NotFound(format!(
            "manifest for {} not found: {r}",
            reference.familiar()
        )),
        // A not-found, as moby words and classes it: a 401 would have the docker CLI ask
        // for credentials on the terminal (and wait there in a script).
        ClientError::Unauthorized(r) => EngineError::NotFound(format!(
            "pull access denied for {}, repository does not exist or may require 'docker login': {r}",
            reference.familiar_name()
        )),
        e => EngineError::Registry(e),
    }
}

impl Engine {
    fn repository(&self, reference: &Reference, creds: Credentials) -> Result<Repository> {
        self.registry()
            .repository(reference.domain(), reference.path(), creds)
            .map_err(EngineError::Registry)
    }

    /// The manifest (or index) `reference` names, as its registry serves it.
    async fn top_manifest(
        &self,
        reference: &str,
        creds: Credentials,
    ) -> Result<(Reference, Repository, berth_registry::client::Fetched)> {
        let reference = Reference::parse(reference)?;
        let repo = self.repository(&reference, creds)?;
        let want = reference
            .digest()
            .or(reference.tag())
            .unwrap_or(berth_image::reference::DEFAULT_TAG)
            .to_owned();
        let fetched = repo
            .get_manifest(&want)
            .await
            .map_err(|e| pull_error(&reference, e))?;
        Ok((reference, repo, fetched))
    }

    /// The tags of the repository `name` names (its tag, if any, ignored), sorted: what
    /// `pull --all-tags` pulls.
    pub async fn repository_tags(&self, name: &str, creds: Credentials) -> Result<Vec<String>> {
        let reference = Reference::parse(name)?;
        let repo = self.repository(&reference, creds)?;
        let mut tags = repo
            .list_tags()
            .await
            .map_err(|e| pull_error(&reference, e))?;
        tags.sort();
        Ok(tags)
    }

    /// `GET /distribution/{name}/json`: what the registry serves for `reference` without
    /// pulling it: the manifest's descriptor, and the platforms it is for (each entry's of an
    /// index, the config's of a single manifest).
    pub async fn distribution_inspect(
        &self,
        reference: &str,
        creds: Credentials,
    ) -> Result<(Descriptor, Vec<manifest::Platform>)> {
        let (reference, repo, fetched) = self.top_manifest(reference, creds).await?;
        let descriptor = Descriptor {
            media_type: fetched.media_type.clone(),
            digest: fetched.digest.clone(),
            size: fetched.bytes.len() as u64,
            platform: None,
            artifact_type: None,
            annotations: None,
            urls: None,
        };
        let platforms = match manifest::parse_document(&fetched.media_type, &fetched.bytes)? {
            Document::Index(index) => index
                .manifests
                .iter()
                .filter_map(|d| d.platform.clone())
                .collect(),
            Document::Manifest(m) => {
                let config = fetch_small(&repo, &m.config)
                    .await
                    .map_err(|e| pull_error(&reference, e))?;
                let head = manifest::parse_config(&config)?;
                vec![manifest::Platform {
                    architecture: head.architecture,
                    os: head.os,
                    variant: head.variant,
                }]
            }
        };
        Ok((descriptor, platforms))
    }

    /// Resolves a pull: the manifest for the platform and the image config.
    pub async fn pull_plan(
        &self,
        reference: &str,
        platform: Option<&str>,
        creds: Credentials,
    ) -> Result<PullPlan> {
        let platform = Platform::parse(platform)?;
        let (reference, repo, fetched) = self.top_manifest(reference, creds).await?;
        let (manifest, digest) =
            match manifest::parse_document(&fetched.media_type, &fetched.bytes)? {
                Document::Manifest(m) => (m, fetched.digest),
                Document::Index(index) => {
                    let Some(d) = manifest::select_platform(&index, &platform) else {
                        return Err(EngineError::NotFound(format!(
                            "no matching manifest for {platform} in the manifest list entries"
                        )));
                    };
                    let one = repo
                        .get_manifest(&d.digest)
                        .await
                        .map_err(|e| pull_error(&reference, e))?;
                    // The image is known by the digest it was asked by: the index's, as
                    // moby records it (`name@<index digest>` then finds it).
                    match manifest::parse_document(&d.media_type, &one.bytes)? {
                        Document::Manifest(m) => (m, fetched.digest),
                        Document::Index(_) => {
                            return Err(EngineError::InvalidArgument(format!(
                                "manifest {} for {platform} is an index, not an image manifest",
                                d.digest
                            )));
                        }
                    }
                }
            };
        let config = fetch_small(&repo, &manifest.config)
            .await
            .map_err(|e| pull_error(&reference, e))?;
        let head = manifest::parse_config(&config)?;
        if head.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(EngineError::InvalidArgument(format!(
                "the image config of {} lists {} layers, its manifest {}",
                reference.familiar(),
                head.rootfs.diff_ids.len(),
                manifest.layers.len()
            )));
        }
        Ok(PullPlan {
            reference,
            repo,
            manifest_digest: digest,
            layers: manifest.layers.clone(),
            config,
            diff_ids: head.rootfs.diff_ids,
        })
    }

    /// Runs a resolved pull; returns the image id.
    pub async fn pull(&self, plan: PullPlan, progress: ProgressTx) -> Result<String> {
        let r = &plan.reference;
        let tag_or_digest = r.tag().or(r.digest()).unwrap_or_default().to_owned();
        let _ = progress.send(Progress::of(
            &tag_or_digest,
            format!("Pulling from {}", r.path()),
        ));
        let chains = chain_ids(&plan.diff_ids);
        // Already here under this name: dockerd lists no layers then, only the status.
        let up_to_date = self.inner.images.resolve_id(&r.full())
            == Some(berth_image::content::sha256_digest(&plan.config));
        let gate = Arc::new(Semaphore::new(PARALLEL_DOWNLOADS));
        let mut tasks = Vec::new();
        // Chain ids this pull unpacks, and the ones it found and leased.
        let mut fetched = Vec::new();
        let mut leased = Vec::new();
        for (i, desc) in plan.layers.iter().enumerate() {
            let id = short(&desc.digest);
            if let Some(info) = self.inner.images.lease_layer(&chains[i])? {
                if !up_to_date {
                    let _ = progress.send(Progress::of(&id, "Already exists"));
                }
                leased.push(chains[i].clone());
                tasks.push(tokio::spawn(async move {
                    Ok(LayerRef {
                        blob: info.blob,
                        diff_id: info.diff_id,
                    })
                }));
                continue;
            }
            let _ = progress.send(Progress::of(&id, "Pulling fs layer"));
            fetched.push(chains[i].clone());
            let engine = self.clone();
            let repo = plan.repo.clone();
            let desc = desc.clone();
            let parent = i.checked_sub(1).map(|p| chains[p].clone());
            let diff_id = plan.diff_ids[i].clone();
            let chain = Some(chains[i].clone());
            let progress = progress.clone();
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                engine
                    .fetch_layer(&repo, &desc, parent, diff_id, chain, &progress)
                    .await
            }));
        }
        let (layers, failed) = join_layers(tasks, "pull").await;
        if let Some(e) = failed {
            // Layers a retry could reuse stay (for a while) after a network failure; after
            // bad content they go now.
            let transient = matches!(
                e,
                EngineError::Registry(ClientError::Transport(_) | ClientError::Timeout(_))
            );
            if !transient {
                let mut keys = fetched;
                keys.extend(leased);
                keys.extend(layers.iter().map(|l| l.blob.clone()));
                let engine = self.clone();
                let released =
                    tokio::task::spawn_blocking(move || engine.inner.images.release(&keys)).await;
                if let Ok(Err(err)) = released {
                    tracing::warn!(error = %err, "releasing the layers of a failed pull");
                }
            }
            return Err(e);
        }
        let existed = self.inner.images.resolve(&r.full()).ok().map(|i| i.id);
        let repo_digest = format!("{}@{}", r.name(), plan.manifest_digest);
        let tags: Vec<Reference> = if r.digest().is_none() {
            vec![r.clone()]
        } else {
            Vec::new()
        };
        let engine = self.clone();
        let config = plan.config.clone();
        let image = tokio::task::spawn_blocking(move || {
            engine
                .inner
                .images
                .add_image(&config, &layers, &tags, Some(repo_digest), None)
        })
        .await
        .map_err(|e| EngineError::Runtime(format!("pull task: {e}")))??;
        let _ = progress.send(Progress::line(format!("Digest: {}", plan.manifest_digest)));
        let shown = if r.digest().is_some() {
            format!("{}@{}", r.familiar_name(), plan.manifest_digest)
        } else {
            r.familiar()
        };
        let status = if existed.as_deref() == Some(image.id.as_str()) {
            format!("Status: Image is up to date for {shown}")
        } else {
            format!("Status: Downloaded newer image for {shown}")
        };
        let _ = progress.send(Progress::line(status));
        self.emit_image("pull", &r.familiar(), &r.familiar());
        Ok(image.id)
    }

    /// Fetches one layer into its snapshot, resuming after network failures.
    async fn fetch_layer(
        &self,
        repo: &Repository,
        desc: &Descriptor,
        parent: Option<String>,
        diff_id: String,
        chain: Option<String>,
        progress: &ProgressTx,
    ) -> Result<LayerRef> {
        let id = short(&desc.digest);
        let compression = manifest::layer_compression(&desc.media_type)?;
        let expect = LayerExpect {
            digest: Some(desc.digest.clone()),
            size: Some(desc.size),
            diff_id: Some(diff_id),
            compression: Some(compression),
        };
        // One download of a blob at a time in this daemon (two pulls sharing a layer, or an
        // image naming one blob twice, would otherwise append to one partial file).
        let lock = {
            let mut map = lock(&self.inner.downloads);
            map.retain(|_, l| Arc::strong_count(l) > 1);
            map.entry(desc.digest.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .clone()
        };
        let _one = lock.lock().await;
        if let Some(chain) = &chain {
            // Another pull may have brought it while this one waited.
            if let Some(info) = self.inner.images.lease_layer(chain)? {
                let _ = progress.send(Progress::of(&id, "Already exists"));
                return Ok(LayerRef {
                    blob: info.blob,
                    diff_id: info.diff_id,
                });
            }
        }
        let content = self.inner.images.content();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut offset = content.partial_size(&desc.digest);
            if offset > desc.size {
                // More than the blob: not a prefix of it.
                content.discard_partial(&desc.digest);
                offset = 0;
            }
            let stream: std::pin::Pin<
                Box<
                    dyn futures_util::Stream<Item = std::result::Result<Bytes, ClientError>> + Send,
                >,
            > = if offset == desc.size {
                // Every byte is here already (a crash came before the unpack finished).
                Box::pin(futures_util::stream::empty())
            } else {
                match repo.get_blob(&desc.digest, offset).await {
                    Ok(s) => Box::pin(s),
                    Err(ClientError::InvalidArgument(m)) if offset > 0 => {
                        // The registry refused the range: start the blob again.
                        tracing::info!(layer = %desc.digest, error = %m, "restarting layer");
                        content.discard_partial(&desc.digest);
                        continue;
                    }
                    Err(e @ (ClientError::Transport(_) | ClientError::Timeout(_)))
                        if attempt < ATTEMPTS =>
                    {
                        tracing::info!(layer = %desc.digest, error = %e, "retrying layer");
                        continue;
                    }
                    Err(e) => return Err(EngineError::Registry(e)),
                }
            };
            let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
            let done = Arc::new(AtomicU64::new(offset));
            let forward = {
                let done = done.clone();
                let progress = progress.clone();
                let id = id.clone();
                let total = desc.size;
                tokio::spawn(async move {
                    let mut stream = stream;
                    let mut last = 0u64;
                    while let Some(chunk) = stream.next().await {
                        let chunk = chunk.map_err(io::Error::other);
                        let n = chunk.as_ref().map_or(0, |c| c.len() as u64);
                        if tx.send(chunk).await.is_err() {
                            return;
                        }
                        let now = done.fetch_add(n, Ordering::Relaxed) + n;
                        // A line per 512 KiB at most.
                        if now - last >= 512 * 1024 || now == total {
                            last = now;
                            let _ = progress.send(Progress {
                                id: Some(id.clone()),
                                status: "Downloading".into(),
                                current: Some(now),
                                total: Some(total),
                                aux: None,
                            });
                        }
                    }
                })
            };
            let engine = self.clone();
            let parent_c = parent.clone();
            let expect_c = expect.clone();
            let unpacked = tokio::task::spawn_blocking(move || {
                engine.inner.images.unpack_layer(
                    parent_c.as_deref(),
                    ChannelReader::new(rx),
                    &expect_c,
                    true,
                )
            })
            .await
            .map_err(|e| EngineError::Runtime(format!("layer task: {e}")))?;
            forward.abort();
            match unpacked {
                Ok(l) => {
                    let _ = progress.send(Progress::of(&id, "Download complete"));
                    let _ = progress.send(Progress::of(&id, "Pull complete"));
                    return Ok(l);
                }
                Err(e) if e.source_failed && attempt < ATTEMPTS => {
                    tracing::info!(layer = %desc.digest, error = %e.error, "resuming layer");
                    let _ = progress.send(Progress::of(&id, "Retrying"));
                }
                Err(e) if e.source_failed => {
                    // The network kept failing: what came is kept for the next pull.
                    return Err(EngineError::Registry(ClientError::Transport(format!(
                        "layer {}: {}",
                        desc.digest, e.error
                    ))));
                }
                Err(e) => {
                    return Err(EngineError::InvalidArgument(format!(
                        "layer {}: {}",
                        desc.digest, e.error
                    )));
                }
            }
        }
    }

    /// `docker search`: at most `limit` (1 to 100) repositories matching `term` on the
    /// registry it names (`host/term`, else Docker Hub), then `filters`.
    pub async fn image_search(
        &self,
        term: &str,
        limit: usize,
        filters: &SearchFilters,
        creds: Credentials,
    ) -> Result<Vec<SearchResult>> {
        if !(1..=100).contains(&limit) {
            return Err(EngineError::InvalidArgument(format!(
                "limit {limit} is outside the range of [1, 100]"
            )));
        }
        let (domain, remote) = split_search_term(term);
        let hub = matches!(domain, "docker.io" | "index.docker.io");
        let remote = if hub {
            remote.strip_prefix("library/").unwrap_or(remote)
        } else {
            remote
        };
        let mut results = self
            .registry()
            .search(domain, remote, limit, &creds)
            .await
            .map_err(|e| match e {
                ClientError::Unauthorized(r) => {
                    EngineError::Unauthorized(format!("search of {domain} denied: {r}"))
                }
                e => EngineError::Registry(e),
            })?;
        results.retain(|r| {
            filters.is_official.is_none_or(|o| r.is_official == o)
                && filters.is_automated.is_none_or(|a| r.is_automated == a)
                && r.star_count >= filters.stars
        });
        Ok(results)
    }

    /// Checks credentials against a registry (`POST /auth`).
    pub async fn registry_login(&self, server: &str, creds: Credentials) -> Result<()> {
        let server = server
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let server = match server {
            "" | "index.docker.io/v1" | "index.docker.io" | "registry-1.docker.io" => "docker.io",
            s => s,
        };
        self.registry()
            .check_login(server, &creds)
            .await
            .map_err(|e| match e {
                ClientError::Unauthorized(r) => {
                    EngineError::Unauthorized(format!("login attempt to {server} failed: {r}"))
                }
                e => EngineError::Registry(e),
            })
    }

    /// Pushes the image a reference names (every tag of the repository when it has none).
    pub async fn push(
        &self,
        name: &str,
        tag: Option<&str>,
        creds: Credentials,
        progress: ProgressTx,
    ) -> Result<()> {
        let base = Reference::parse(name)?;
        let tags: Vec<Reference> = match tag.filter(|t| !t.is_empty()) {
            Some(t) => vec![Reference::parse(&format!("{}:{t}", base.name()))?],
            None if berth_image::reference::names_tag_or_digest(name) => vec![base.clone()],
            None => {
                let mut all: Vec<Reference> = self
                    .inner
                    .images
                    .list()?
                    .iter()
                    .flat_map(|i| i.repo_tags.clone())
                    .filter_map(|t| Reference::parse(&t).ok())
                    .filter(|t| t.name() == base.name())
                    .collect();
                all.sort_by_key(|r| r.full());
                if all.is_empty() {
                    return Err(EngineError::NotFound(format!(
                        "An image does not exist locally with the tag: {}",
                        base.familiar_name()
                    )));
                }
                all
            }
        };
        let _ = progress.send(Progress::line(format!(
            "The push refers to repository [{}]",
            base.name()
        )));
        let repo = self.repository(&base, creds)?;
        for t in tags {
            let image = self.inner.images.resolve(&t.full()).map_err(|_| {
                EngineError::NotFound(format!(
                    "An image does not exist locally with the tag: {}",
                    t.familiar()
                ))
            })?;
            self.push_one(&repo, &t, &image, &progress).await?;
        }
        Ok(())
    }

    async fn push_one(
        &self,
        repo: &Repository,
        tag: &Reference,
        image: &Image,
        progress: &ProgressTx,
    ) -> Result<()> {
        let refs = self.inner.images.layer_refs(image)?;
        // Repositories of the same registry this image came from: blobs can be mounted.
        let sources: Vec<String> = image
            .repo_digests
            .iter()
            .filter_map(|d| d.split_once('@').map(|(n, _)| n.to_owned()))
            .filter_map(|n| {
                n.strip_prefix(&format!("{}/", tag.domain()))
                    .map(str::to_owned)
            })
            .filter(|p| p != tag.path())
            .collect();
        let gate = Arc::new(Semaphore::new(PARALLEL_UPLOADS));
        let mut tasks = Vec::new();
        for l in refs.iter().rev() {
            let _ = progress.send(Progress::of(&short(&l.diff_id), "Preparing"));
        }
        let chains = chain_ids(&image.layers);
        for (i, l) in refs.iter().enumerate() {
            let engine = self.clone();
            let repo = repo.clone();
            let l = l.clone();
            let chain = chains[i].clone();
            let progress = progress.clone();
            let gate = gate.clone();
            let sources = sources.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                engine
                    .push_layer(&repo, &l, &chain, &sources, &progress)
                    .await
            }));
        }
        let (layers, failed) = join_layers(tasks, "push").await;
        if let Some(e) = failed {
            return Err(e);
        }
        let config = self.inner.images.config_bytes(image)?;
        let oci = layers.iter().any(|d| d.media_type == OCI_LAYER_ZSTD);
        let config_desc = Descriptor::of(if oci { OCI_CONFIG } else { DOCKER_CONFIG }, &config);
        if repo
            .blob_exists(&config_desc.digest)
            .await
            .map_err(EngineError::Registry)?
            .is_none()
        {
            let body = std::io::Cursor::new(config.clone());
            repo.push_blob(&config_desc.digest, config.len() as u64, body, &|_| {})
                .await
                .map_err(EngineError::Registry)?;
        }
        let media = if oci { OCI_MANIFEST } else { DOCKER_MANIFEST };
        let m = manifest::Manifest {
            schema_version: 2,
            media_type: Some(media.into()),
            config: config_desc,
            layers,
            subject: None,
            annotations: None,
        };
        let bytes = if oci {
            serde_json::to_vec(&m)
        } else {
            docker_manifest_bytes(&m)
        }
        .map_err(|e| EngineError::Runtime(format!("encode manifest: {e}")))?;
        let size = bytes.len();
        let tag_name = tag.tag().unwrap_or(berth_image::reference::DEFAULT_TAG);
        let digest = repo
            .put_manifest(tag_name, media, Bytes::from(bytes))
            .await
            .map_err(EngineError::Registry)?;
        let _ = progress.send(Progress::line(format!(
            "{tag_name}: digest: {digest} size: {size}"
        )));
        // Docker sends the result as its own line, which clients hand to their callback.
        let _ = progress.send(Progress {
            aux: Some(serde_json::json!({ "Tag": tag_name, "Digest": digest, "Size": size })),
            ..Progress::default()
        });
        // The image now has this repository digest.
        let engine = self.clone();
        let image = image.clone();
        let refs2 = refs.clone();
        let repo_digest = format!("{}@{digest}", tag.name());
        tokio::task::spawn_blocking(move || {
            engine.inner.images.add_image(
                &config,
                &refs2,
                &[],
                Some(repo_digest),
                image.parent.clone(),
            )
        })
        .await
        .map_err(|e| EngineError::Runtime(format!("push task: {e}")))??;
        self.emit_image("push", &tag.familiar(), &tag.familiar());
        Ok(())
    }

    /// Pushes one layer unless the registry has it; returns its descriptor.
    async fn push_layer(
        &self,
        repo: &Repository,
        l: &LayerRef,
        chain: &str,
        sources: &[String],
        progress: &ProgressTx,
    ) -> Result<Descriptor> {
        let id = short(&l.diff_id);
        let engine = self.clone();
        let chain_c = chain.to_owned();
        let (blob, size, media) =
            tokio::task::spawn_blocking(move || engine.inner.images.distributable_blob(&chain_c))
                .await
                .map_err(|e| EngineError::Runtime(format!("compress task: {e}")))??;
        let media = match media {
            berth_image::manifest::LayerCompression::Gzip => DOCKER_LAYER_GZIP,
            berth_image::manifest::LayerCompression::Zstd => OCI_LAYER_ZSTD,
            berth_image::manifest::LayerCompression::None => OCI_LAYER,
        };
        let mut desc = Descriptor::of(media, b"");
        desc.digest = blob.clone();
        desc.size = size;
        if repo
            .blob_exists(&blob)
            .await
            .map_err(EngineError::Registry)?
            .is_some()
        {
            let _ = progress.send(Progress::of(&id, "Layer already exists"));
            return Ok(desc);
        }
        for from in sources {
            if repo.mount_blob(&blob, from).await.unwrap_or(false) {
                let _ = progress.send(Progress::of(&id, format!("Mounted from {from}")));
                return Ok(desc);
            }
        }
        let path = self.inner.images.content().path(&blob)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(EngineError::io(format!("open {}", path.display())))?;
        let last = AtomicU64::new(0);
        let report = |sent: u64| {
            if sent - last.load(Ordering::Relaxed) >= 512 * 1024 || sent == size {
                last.store(sent, Ordering::Relaxed);
                let _ = progress.send(Progress {
                    id: Some(id.clone()),
                    status: "Pushing".into(),
                    current: Some(sent),
                    total: Some(size),
                    aux: None,
                });
            }
        };
        repo.push_blob(&blob, size, file, &report)
            .await
            .map_err(EngineError::Registry)?;
        let _ = progress.send(Progress::of(&id, "Pushed"));
        Ok(desc)
    }
}

/// Waits for every layer task (none is left running); their results in order, and the first
/// failure.
async fn join_layers<T>(
    tasks: Vec<tokio::task::JoinHandle<Result<T>>>,
    what: &str,
) -> (Vec<T>, Option<EngineError>) {
    let mut done = Vec::new();
    let mut failed = None;
    for t in tasks {
        match t.await {
            Ok(Ok(v)) => done.push(v),
            Ok(Err(e)) => {
                failed.get_or_insert(e);
            }
            Err(e) => {
                failed.get_or_insert(EngineError::Runtime(format!("{what} task: {e}")));
            }
        }
    }
    (done, failed)
}

/// A small blob (a config), its size capped and its digest checked.
async fn fetch_small(
    repo: &Repository,
    d: &Descriptor,
) -> std::result::Result<Vec<u8>, ClientError> {
    if d.size > MAX_CONFIG {
        return Err(ClientError::TooLarge {
            what: "image config",
            limit: MAX_CONFIG,
        });
    }
    let mut s = repo.get_blob(&d.digest, 0).await?;
    let mut out = Vec::with_capacity(d.size as usize);
    while let Some(chunk) = s.next().await {
        let chunk = chunk?;
        if (out.len() + chunk.len()) as u64 > d.size {
            return Err(ClientError::Protocol(format!(
                "blob {} is larger than its descriptor says",
                d.digest
            )));
        }
        out.extend_from_slice(&chunk);
    }
    let actual = berth_image::content::sha256_digest(&out);
    if actual != d.digest {
        return Err(ClientError::DigestMismatch {
            expected: d.digest.clone(),
            actual,
        });
    }
    Ok(out)
}

/// The filters of `docker search`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilters {
    pub is_official: Option<bool>,
    pub is_automated: Option<bool>,
    /// Fewest stars.
    pub stars: u64,
}

/// Splits a search term into the registry it names and the term there, as Docker reads it:
/// a first component with a `.` or `:`, or `localhost`, is a registry host.
fn split_search_term(term: &str) -> (&str, &str) {
    match term.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => (host, rest),
        _ => ("docker.io", term),
    }
}

#[cfg(test)]
mod tests {
    use super::{docker_manifest_bytes, split_search_term};
    use berth_image::manifest::{DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, Descriptor};

    #[test]
    fn docker_manifests_are_written_as_moby_writes_them() {
        let d = |media: &str, size: u64, hex: char| Descriptor {
            size,
            digest: format!("sha256:{}", hex.to_string().repeat(64)),
            ..Descriptor::of(media, b"")
        };
        let m = berth_image::manifest::Manifest {
            schema_version: 2,
            media_type: Some(DOCKER_MANIFEST.into()),
            config: d(DOCKER_CONFIG, 1457, 'a'),
            layers: vec![d(DOCKER_LAYER_GZIP, 772788, 'b')],
            subject: None,
            annotations: None,
        };
        // Byte for byte what distribution's schema2 package gives through json.MarshalIndent.
        let want = format!(
            "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{DOCKER_MANIFEST}\",\n   \"config\": {{\n      \"mediaType\": \"{DOCKER_CONFIG}\",\n      \"size\": 1457,\n      \"digest\": \"sha256:{a}\"\n   }},\n   \"layers\": [\n      {{\n         \"mediaType\": \"{DOCKER_LAYER_GZIP}\",\n         \"size\": 772788,\n         \"digest\": \"sha256:{b}\"\n      }}\n   ]\n}}",
            a = "a".repeat(64),
            b = "b".repeat(64)
        );
        assert_eq!(
            String::from_utf8(docker_manifest_bytes(&m).unwrap()).unwrap(),
            want
        );
    }

    #[test]
    fn search_terms_name_their_registry_as_docker_reads_them() {
        assert_eq!(split_search_term("busybox"), ("docker.io", "busybox"));
        assert_eq!(
            split_search_term("library/redis"),
            ("docker.io", "library/redis")
        );
        assert_eq!(
            split_search_term("127.0.0.1:5000/team/app"),
            ("127.0.0.1:5000", "team/app")
        );
        assert_eq!(split_search_term("localhost/app"), ("localhost", "app"));
        assert_eq!(split_search_term("reg.example/app"), ("reg.example", "app"));
    }
}
