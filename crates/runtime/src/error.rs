//! The runtime's error type.

use std::path::PathBuf;

/// Everything that can fail between a container description and a running process.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The request asks for something this host or Docker's rules do not allow.
    #[error("{0}")]
    InvalidSpec(String),
    /// The user or group named for the process does not exist in the image.
    #[error("unable to find user {0}")]
    UserNotFound(String),
    /// A seccomp profile could not be read or converted.
    #[error("seccomp profile: {0}")]
    Seccomp(String),
    /// The container does not exist in the runtime's state.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// The embedded runtime failed.
    #[error("{0}")]
    Libcontainer(String),
    /// An external OCI runtime binary failed.
    #[error("{runtime} {command}: {message}")]
    Binary {
        runtime: String,
        command: String,
        message: String,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The spec could not be encoded or decoded.
    #[error("OCI spec: {0}")]
    Spec(String),
}

impl RuntimeError {
    /// Wraps an I/O error with what was being done and to which path.
    pub fn io(what: &str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        let what = what.to_owned();
        move |source| RuntimeError::Io {
            context: format!("{what} {}", path.display()),
            source,
        }
    }
}
