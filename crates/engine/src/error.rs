//! The engine's errors, each with the class the API maps to an HTTP status.

use std::fmt;

/// How an error is classified (moby's errdefs): the API maps each to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404
    NotFound,
    /// 409
    Conflict,
    /// 403 (a predefined network, an endpoint that exists...)
    Forbidden,
    /// 400
    InvalidArgument,
    /// 304 (already started / already stopped)
    NotModified,
    /// 501
    NotImplemented,
    /// 401
    Unauthorized,
    /// 500
    Internal,
}

/// An engine error: a class and Docker's message.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("No such exec instance: {0}")]
    NoSuchExec(String),
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    /// Anything else that does not exist (a path in a container...), with Docker's message.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotModified(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error(transparent)]
    Image(#[from] berth_image::ImageError),
    /// A registry refused the credentials (or gave none access), in Docker's words.
    #[error("{0}")]
    Unauthorized(String),
    #[error(transparent)]
    Registry(berth_registry::client::ClientError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("state database: {0}")]
    Db(String),
    #[error("{0}")]
    Runtime(String),
    #[error("shim: {0}")]
    Shim(String),
    /// A build's `RUN` exited non-zero: the build's message and the command's exit code
    /// (which the docker CLI exits with).
    #[error("{message}")]
    RunFailed { message: String, code: i32 },
}

impl EngineError {
    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NoSuchContainer(_)
            | Self::NoSuchExec(_)
            | Self::NoSuchNetwork(_)
            | Self::NoSuchVolume(_)
            | Self::NotFound(_) => ErrorKind::NotFound,
            Self::Conflict(_) => ErrorKind::Conflict,
            Self::Forbidden(_) => ErrorKind::Forbidden,
            Self::InvalidArgument(_) | Self::RunFailed { .. } => ErrorKind::InvalidArgument,
            Self::NotModified(_) => ErrorKind::NotModified,
            Self::NotImplemented(_) => ErrorKind::NotImplemented,
            Self::Unauthorized(_) => ErrorKind::Unauthorized,
            Self::Registry(e) => {
                use berth_registry::client::ClientError as C;
                match e {
                    C::NotFound(_) => ErrorKind::NotFound,
                    C::Unauthorized(_) => ErrorKind::Unauthorized,
                    C::InvalidArgument(_) => ErrorKind::InvalidArgument,
                    _ => ErrorKind::Internal,
                }
            }
            Self::Image(e) => match e.kind() {
                berth_image::error::ErrorKind::NotFound => ErrorKind::NotFound,
                berth_image::error::ErrorKind::Conflict => ErrorKind::Conflict,
                berth_image::error::ErrorKind::InvalidArgument => ErrorKind::InvalidArgument,
                berth_image::error::ErrorKind::Internal => ErrorKind::Internal,
            },
            Self::Runtime(msg) => {
                // Starting a process that cannot be found or run is the caller's mistake.
                if msg.contains("executable file not found")
                    || msg.contains("no such file or directory")
                    || msg.contains("permission denied")
                {
                    ErrorKind::InvalidArgument
                } else {
                    ErrorKind::Internal
                }
            }
            Self::Io { .. } | Self::Db(_) | Self::Shim(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(context: impl fmt::Display) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Io {
            context: context.to_string(),
            source,
        }
    }
}

impl From<redb::Error> for EngineError {
    fn from(e: redb::Error) -> Self {
        Self::Db(e.to_string())
    }
}

macro_rules! db_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for EngineError {
            fn from(e: $t) -> Self {
                Self::Db(e.to_string())
            }
        }
    )*};
}
db_error_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
