//! Blob upload sessions: the on-disk upload file and the in-memory hash state per session.
//!
//! An upload lives in `uploads/<uuid>/data` (bytes so far) with `uploads/<uuid>/repo` naming
//! its repository. Bytes are streamed to the file and hashed as they arrive; the hash state
//! stays in memory. After a restart, or when the client finishes with a different algorithm
//! than the one being hashed, the file is rehashed. A chunk that fails half-way (client gone,
//! wrong length) is cut off again, so the file and the hash always agree.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::error::{ApiError, ErrorCode, ServerError};
use super::names::{Algorithm, Digest, Hasher, RepoName, UploadId};
use super::storage::{self, Storage};

/// One upload in progress.
pub(crate) struct Session {
    pub(crate) repo: RepoName,
    pub(crate) offset: u64,
    hasher: Hasher,
    /// Set once the upload was completed or cancelled; a waiter holding the old handle sees it.
    finished: bool,
    /// Last time a request touched the session (for forgetting abandoned ones).
    touched: Instant,
}

/// An in-memory session untouched this long is forgotten (its file stays until garbage
/// collection, and is rehashed should the client come back).
const IDLE_FORGET: Duration = Duration::from_secs(3600);

pub(crate) type SessionHandle = Arc<tokio::sync::Mutex<Session>>;

/// All upload sessions of the server.
pub(crate) struct Uploads {
    storage: Storage,
    sessions: Mutex<HashMap<UploadId, SessionHandle>>,
}

fn unknown() -> ApiError {
    ApiError::new(ErrorCode::BlobUploadUnknown, "upload unknown")
}

impl Uploads {
    pub(crate) fn new(storage: Storage) -> Uploads {
        Uploads {
            storage,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<UploadId, SessionHandle>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session for `repo`, hashing with `alg`.
    pub(crate) async fn start(
        &self,
        repo: &RepoName,
        alg: Algorithm,
    ) -> Result<(UploadId, SessionHandle), ApiError> {
        let id = UploadId::generate();
        let storage = self.storage.clone();
        let (id2, repo2) = (id.clone(), repo.clone());
        tokio::task::spawn_blocking(move || -> Result<(), ServerError> {
            let dir = storage.upload_dir(&id2);
            storage::ensure_dir(&dir)?;
            let data = storage.upload_data(&id2);
            std::fs::File::create_new(&data).map_err(ServerError::io("creating", &data))?;
            storage::write_atomic(&dir.join("repo"), repo2.as_str().as_bytes())
        })
        .await
        .map_err(ServerError::from)??;
        let handle = Arc::new(tokio::sync::Mutex::new(Session {
            repo: repo.clone(),
            offset: 0,
            hasher: Hasher::new(alg),
            finished: false,
            touched: Instant::now(),
        }));
        let mut map = self.map();
        map.retain(|_, s| {
            s.try_lock()
                .map_or(true, |s| s.touched.elapsed() < IDLE_FORGET)
        });
        map.insert(id.clone(), handle.clone());
        Ok((id, handle))
    }

    /// The session `id` of `repo`, from memory or (after a restart) from disk.
    pub(crate) async fn get(
        &self,
        repo: &RepoName,
        id: &UploadId,
    ) -> Result<SessionHandle, ApiError> {
        let existing = self.map().get(id).cloned();
        let handle = match existing {
            Some(h) => h,
            None => {
                let storage = self.storage.clone();
                let id2 = id.clone();
                let loaded = tokio::task::spawn_blocking(move || load(&storage, &id2))
                    .await
                    .map_err(ServerError::from)??;
                let Some(session) = loaded else {
                    return Err(unknown());
                };
                let h = Arc::new(tokio::sync::Mutex::new(session));
                self.map().entry(id.clone()).or_insert(h).clone()
            }
        };
        {
            let mut s = handle.lock().await;
            if s.repo != *repo || s.finished {
                return Err(unknown());
            }
            s.touched = Instant::now();
        }
        Ok(handle)
    }

    /// Appends a request body to the upload. `start` is the offset the client says the chunk
    /// begins at and `len` the length it announced; a chunk not starting at the current
    /// offset is refused with 416 before anything is read.
    pub(crate) async fn append<B>(
        &self,
        id: &UploadId,
        session: &mut Session,
        body: B,
        start: Option<u64>,
        len: Option<u64>,
    ) -> Result<(), ApiError>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        if session.finished {
            return Err(unknown());
        }
        if let Some(start) = start {
            if start != session.offset {
                return Err(ApiError::new(
                    ErrorCode::RangeInvalid,
                    format!("chunk starts at {start}, upload is at {}", session.offset),
                ));
            }
        }
        let path = self.storage.upload_data(id);
        let mut file = match tokio::fs::OpenOptions::new().write(true).open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.map().remove(id);
                return Err(unknown());
            }
            Err(e) => return Err(ServerError::io("opening", &path)(e).into()),
        };
        let saved = (session.offset, session.hasher.clone());
        let mismatch = if start.is_some() {
            ErrorCode::RangeInvalid
        } else {
            ErrorCode::SizeInvalid
        };
        let result = write_body(&mut file, session, body, len, mismatch).await;
        if result.is_err() {
            // Cut the partial chunk off again so file and hash agree.
            session.offset = saved.0;
            session.hasher = saved.1;
            let _ = file.set_len(saved.0).await;
        }
        result
    }

    /// Verifies the upload against `digest` and moves it into the blob store. On a mismatch
    /// the upload is discarded.
    pub(crate) async fn finish(
        &self,
        id: &UploadId,
        session: &mut Session,
        digest: &Digest,
    ) -> Result<u64, ApiError> {
        if session.finished {
            return Err(unknown());
        }
        let path = self.storage.upload_data(id);
        let actual = if session.hasher.algorithm() == digest.algorithm() {
            session.hasher.clone().finish()
        } else {
            let (p, alg) = (path.clone(), digest.algorithm());
            tokio::task::spawn_blocking(move || hash_file(&p, alg))
                .await
                .map_err(ServerError::from)??
        };
        if actual != *digest {
            session.finished = true;
            self.discard(id).await;
            return Err(ApiError::new(
                ErrorCode::DigestInvalid,
                "provided digest did not match uploaded content",
            )
            .with_detail(serde_json::json!({
                "expected": digest.to_string(),
                "actual": actual.to_string(),
            })));
        }
        let size = session.offset;
        let storage = self.storage.clone();
        let (d, repo, id2) = (digest.clone(), session.repo.clone(), id.clone());
        tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
            let _guard = super::gc::SharedLock::acquire(storage.root())?;
            let data = storage.upload_data(&id2);
            if !storage::exists(&data)? {
                // Removed by garbage collection as stale.
                return Err(unknown());
            }
            storage.commit_blob(&data, &d)?;
            storage.link_blob(&repo, &d)?;
            Ok(remove_upload_dir(&storage, &id2)?)
        })
        .await
        .map_err(ServerError::from)??;
        session.finished = true;
        self.map().remove(id);
        Ok(size)
    }

    /// Cancels an upload, removing its file.
    pub(crate) async fn cancel(&self, id: &UploadId, session: &mut Session) {
        session.finished = true;
        self.discard(id).await;
    }

    async fn discard(&self, id: &UploadId) {
        self.map().remove(id);
        let storage = self.storage.clone();
        let id = id.clone();
        let removed = tokio::task::spawn_blocking(move || remove_upload_dir(&storage, &id)).await;
        if let Ok(Err(e)) = removed {
            tracing::warn!(error = %e, "removing discarded upload");
        }
    }
}

async fn write_body<B>(
    file: &mut tokio::fs::File,
    session: &mut Session,
    mut body: B,
    len: Option<u64>,
    mismatch: ErrorCode,
) -> Result<(), ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let io_err = |e: io::Error| ApiError::new(ErrorCode::Internal, format!("writing upload: {e}"));
    file.seek(io::SeekFrom::Start(session.offset))
        .await
        .map_err(io_err)?;
    let begin = session.offset;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                ErrorCode::BlobUploadInvalid,
                format!("reading request body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            file.write_all(&data).await.map_err(io_err)?;
            session.hasher.update(&data);
            session.offset += data.len() as u64;
        }
    }
    file.flush().await.map_err(io_err)?;
    if let Some(len) = len {
        if session.offset - begin != len {
            return Err(ApiError::new(
                mismatch,
                "chunk length does not match the announced length",
            ));
        }
    }
    Ok(())
}

fn remove_upload_dir(storage: &Storage, id: &UploadId) -> Result<(), ServerError> {
    let dir = storage.upload_dir(id);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => storage::sync_dir(&storage.uploads_dir()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ServerError::io("removing", dir)(e)),
    }
}

/// Rebuilds a session from disk after a restart.
fn load(storage: &Storage, id: &UploadId) -> Result<Option<Session>, ServerError> {
    let dir = storage.upload_dir(id);
    let repo = match std::fs::read_to_string(dir.join("repo")) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ServerError::io("reading", dir)(e)),
    };
    let Some(repo) = RepoName::parse(repo.trim()) else {
        return Ok(None);
    };
    let data = storage.upload_data(id);
    if !storage::exists(&data)? {
        return Ok(None);
    }
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let offset = hash_into(&data, &mut hasher)?;
    Ok(Some(Session {
        repo,
        offset,
        hasher,
        finished: false,
        touched: Instant::now(),
    }))
}

fn hash_file(path: &Path, alg: Algorithm) -> Result<Digest, ServerError> {
    let mut h = Hasher::new(alg);
    hash_into(path, &mut h)?;
    Ok(h.finish())
}

fn hash_into(path: &Path, h: &mut Hasher) -> Result<u64, ServerError> {
    let err = ServerError::io("hashing", path);
    let mut f = std::fs::File::open(path).map_err(ServerError::io("opening", path))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                h.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(err(e)),
        }
    }
}
