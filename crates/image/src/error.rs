//! The image store's errors, each with a class ([`ErrorKind`]) the API maps to a status code,
//! and messages worded like Docker's.

use std::fmt;

/// How an error is classified (moby's errdefs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The image or reference does not exist (404).
    NotFound,
    /// The operation conflicts with the current state (409).
    Conflict,
    /// The caller's input is malformed or refused (400).
    InvalidArgument,
    /// Anything else: I/O, the database, a corrupt store (500).
    Internal,
}

/// An image store error.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image matches the name (a reference, an id or an id prefix).
    #[error("No such image: {0}")]
    NotFound(String),
    /// A reference that does not follow Docker's grammar; the message is complete
    /// (`invalid reference format...`).
    #[error("{0}")]
    InvalidReference(String),
    /// An id prefix that matches several images.
    #[error("ambiguous image id prefix {0}: it matches several images")]
    AmbiguousPrefix(String),
    /// A conflict worded as Docker words it (`conflict: unable to delete ...`).
    #[error("{0}")]
    Conflict(String),
    /// A refused request (unsupported compression, platform, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// A layer tarball that is malformed or hostile (escaping paths, bad links).
    #[error("invalid layer: {0}")]
    InvalidLayer(String),
    /// A layer above one of the caps (bytes, entries, path length).
    #[error("layer too large: {0}")]
    TooLarge(String),
    /// Content whose digest is not the one expected.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest asked for.
        expected: String,
        /// The digest of the bytes read.
        actual: String,
    },
    /// An I/O failure on the store's own files.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A failure of the redb database.
    #[error("image database: {0}")]
    Db(String),
    /// A record or blob in the store that does not parse.
    #[error("corrupt image store: {0}")]
    Corrupt(String),
}

impl ImageError {
    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Conflict(_) => ErrorKind::Conflict,
            Self::InvalidReference(_)
            | Self::AmbiguousPrefix(_)
            | Self::InvalidArgument(_)
            | Self::InvalidLayer(_)
            | Self::TooLarge(_)
            | Self::DigestMismatch { .. } => ErrorKind::InvalidArgument,
            Self::Io { .. } | Self::Db(_) | Self::Corrupt(_) => ErrorKind::Internal,
        }
    }

    /// `invalid reference format`, Docker's message for any grammar error.
    pub(crate) fn invalid_reference() -> Self {
        Self::InvalidReference("invalid reference format".into())
    }

    /// A closure that wraps an I/O error with context, for `map_err`.
    pub(crate) fn io(context: impl fmt::Display) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Io {
            context: context.to_string(),
            source,
        }
    }

    /// Like [`ImageError::io`], for a raw errno from rustix.
    pub(crate) fn errno(context: impl fmt::Display) -> impl FnOnce(rustix::io::Errno) -> Self {
        move |e| Self::Io {
            context: context.to_string(),
            source: e.into(),
        }
    }
}

macro_rules! db_error {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for ImageError {
            fn from(e: $t) -> Self {
                Self::Db(e.to_string())
            }
        })*
    };
}

db_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
);
