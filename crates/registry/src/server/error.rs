//! The server's two error kinds: [`ServerError`] for the operator (startup, storage, garbage
//! collection) and [`ApiError`] for a client, with the one table mapping each distribution
//! error code to its HTTP status.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use hyper::StatusCode;

/// Why the registry server could not start, serve or collect garbage.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listening socket could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// A filesystem operation on the storage root failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The storage root was written by an unknown (newer) layout version.
    #[error("storage at {} has layout version {found:?}; this build understands {expected}", path.display())]
    StorageVersion {
        /// The storage root.
        path: PathBuf,
        /// What the VERSION file says.
        found: String,
        /// The version this build writes.
        expected: u32,
    },
    /// An htpasswd line could not be used.
    #[error("htpasswd {}:{line}: {reason}", path.display())]
    Htpasswd {
        /// The htpasswd file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Only one of `tls_cert` and `tls_key` was given.
    #[error("TLS needs both a certificate and a key")]
    TlsIncomplete,
    /// A PEM file could not be read.
    #[error("reading PEM {}: {source}", path.display())]
    Pem {
        /// The PEM file.
        path: PathBuf,
        /// The underlying error.
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A background task failed (panicked or was cancelled).
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ServerError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ServerError::Io { op, path, source }
    }
}

/// Distribution-spec error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    PaginationInvalid,
    SizeInvalid,
    TagInvalid,
    Unauthorized,
    Unsupported,
    RangeInvalid,
    TooLarge,
    Internal,
}

impl ErrorCode {
    /// The code string and HTTP status: the one error-to-status table.
    fn wire(self) -> (&'static str, StatusCode) {
        use ErrorCode::*;
        match self {
            BlobUnknown => ("BLOB_UNKNOWN", StatusCode::NOT_FOUND),
            BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", StatusCode::BAD_REQUEST),
            BlobUploadUnknown => ("BLOB_UPLOAD_UNKNOWN", StatusCode::NOT_FOUND),
            DigestInvalid => ("DIGEST_INVALID", StatusCode::BAD_REQUEST),
            ManifestBlobUnknown => ("MANIFEST_BLOB_UNKNOWN", StatusCode::BAD_REQUEST),
            ManifestInvalid => ("MANIFEST_INVALID", StatusCode::BAD_REQUEST),
            ManifestUnknown => ("MANIFEST_UNKNOWN", StatusCode::NOT_FOUND),
            NameInvalid => ("NAME_INVALID", StatusCode::BAD_REQUEST),
            NameUnknown => ("NAME_UNKNOWN", StatusCode::NOT_FOUND),
            // Distribution's code for a bad `n`; the OCI spec has none.
            PaginationInvalid => ("PAGINATION_NUMBER_INVALID", StatusCode::BAD_REQUEST),
            SizeInvalid => ("SIZE_INVALID", StatusCode::BAD_REQUEST),
            TagInvalid => ("TAG_INVALID", StatusCode::BAD_REQUEST),
            Unauthorized => ("UNAUTHORIZED", StatusCode::UNAUTHORIZED),
            Unsupported => ("UNSUPPORTED", StatusCode::METHOD_NOT_ALLOWED),
            // An upload chunk that does not start at the current offset.
            RangeInvalid => ("BLOB_UPLOAD_INVALID", StatusCode::RANGE_NOT_SATISFIABLE),
            // A manifest over the size limit (the spec asks for 413).
            TooLarge => ("SIZE_INVALID", StatusCode::PAYLOAD_TOO_LARGE),
            Internal => ("UNKNOWN", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    pub(crate) fn status(self) -> StatusCode {
        self.wire().1
    }

    pub(crate) fn as_str(self) -> &'static str {
        self.wire().0
    }
}

/// An error answered to a client in the distribution JSON shape.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    pub(crate) detail: Option<serde_json::Value>,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            detail: None,
        }
    }

    pub(crate) fn with_detail(mut self, detail: serde_json::Value) -> ApiError {
        self.detail = Some(detail);
        self
    }

    pub(crate) fn body(&self) -> Vec<u8> {
        let mut e = serde_json::json!({
            "code": self.code.as_str(),
            "message": self.message,
        });
        if let Some(d) = &self.detail {
            e["detail"] = d.clone();
        }
        serde_json::to_vec(&serde_json::json!({ "errors": [e] })).unwrap_or_default()
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> ApiError {
        tracing::error!(error = %e, "registry storage error");
        ApiError::new(ErrorCode::Internal, "internal storage error")
    }
}
