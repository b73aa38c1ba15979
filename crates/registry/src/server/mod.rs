//! Berth's registry server (`berth registry serve`): an OCI distribution-spec 1.1 registry
//! on hyper 1, with filesystem storage, optional TLS (rustls with ring) and optional basic
//! authentication against a bcrypt htpasswd file.
//!
//! - `routes`: path parsing into typed routes, auth, dispatch.
//! - `blobs`, `manifests`: one file per endpoint group.
//! - `upload`: upload sessions, streamed to disk and hashed as they arrive.
//! - `storage`: the on-disk layout and its atomic writes.
//! - `names`: validation of names, tags, digests and upload ids.
//! - `gc`: garbage collection ([`collect_garbage`]).
//! - `auth`, `tls`: credentials and certificates.

#![forbid(unsafe_code)]

mod auth;
mod blobs;
mod error;
mod gc;
mod http;
mod manifests;
mod names;
mod routes;
mod storage;
mod tls;
mod upload;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use error::ServerError;
pub use gc::{GcOptions, GcReport, collect_garbage, collect_garbage_with};

/// How long a client may take to send request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long open connections get to finish after shutdown was asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How to run the registry.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Storage root (created when missing).
    pub root: PathBuf,
    /// htpasswd file with bcrypt entries; when set every request needs basic auth.
    pub htpasswd: Option<PathBuf>,
    /// PEM certificate chain; with `tls_key`, serve HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
}

/// What every request handler shares.
pub(crate) struct State {
    pub(crate) storage: storage::Storage,
    pub(crate) uploads: upload::Uploads,
    pub(crate) auth: Option<Arc<auth::Htpasswd>>,
}

/// A bound, ready registry server.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds (port 0 allowed) and opens/creates storage under root.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let ServerConfig {
            addr,
            root,
            htpasswd,
            tls_cert,
            tls_key,
        } = config;
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(&cert, &key)?),
            (None, None) => None,
            _ => return Err(ServerError::TlsIncomplete),
        };
        let (storage, auth) = tokio::task::spawn_blocking(move || {
            let storage = storage::Storage::open(&root)?;
            let auth = htpasswd.as_deref().map(auth::Htpasswd::load).transpose()?;
            Ok::<_, ServerError>((storage, auth))
        })
        .await??;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let state = Arc::new(State {
            uploads: upload::Uploads::new(storage.clone()),
            storage,
            auth,
        });
        Ok(Server {
            listener,
            addr,
            state,
            tls,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the future `shutdown` completes, then lets open connections finish their
    /// current request (for a few seconds at most).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let state = self.state.clone();
                        let tls = self.tls.clone();
                        let stop = stop_rx.clone();
                        conns.spawn(async move {
                            match tls {
                                None => serve_conn(stream, state, stop).await,
                                Some(acceptor) => {
                                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                        Ok(Ok(s)) => serve_conn(s, state, stop).await,
                                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                                    }
                                }
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(self.listener);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open = conns.len(),
                "closing connections still busy at shutdown"
            );
            conns.shutdown().await;
        }
        Ok(())
    }
}

async fn serve_conn<I>(io: I, state: Arc<State>, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(routes::handle(state, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let stopped = async move {
        // The guard `wait_for` returns is not `Send`; drop it at once.
        let _ = stop.wait_for(|s| *s).await.map(|_| ());
    };
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = stopped => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
