//! The CLI's error type and Docker's exit-status conventions.

use berth_api::client::ClientError;

use crate::opts::InvalidFlag;
use crate::template::TemplateError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Talking to the daemon failed, or the daemon refused.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A flag value is invalid (exit 125 for `run`/`create`).
    #[error(transparent)]
    Flag(#[from] InvalidFlag),
    /// A `--format` template is invalid or failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Registry credentials could not be read or stored.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// An image reference that cannot be used.
    #[error(transparent)]
    Reference(#[from] crate::reference::InvalidReference),
    /// Local I/O (the terminal, a file).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A precondition Docker reports in plain words ("the input device is not a TTY").
    #[error("{0}")]
    Precondition(String),
    /// Starting a container failed (`run` exits 125/126/127 from the message).
    #[error(transparent)]
    Start(ClientError),
    /// An error the daemon reported inside a streamed answer (import progress, wait).
    #[error("{0}")]
    Stream(String),
    /// A streamed error with an exit code for the CLI (a build's failed `RUN`).
    #[error("{message}")]
    StreamCode { message: String, code: i32 },
    /// Some items of a multi-item command failed; their errors are already printed.
    #[error("")]
    Partial,
    /// Leave with this status, with nothing more to print.
    #[error("")]
    Exit(i32),
}

impl CliError {
    /// The process status Docker's CLI uses for this error outside `run`.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Exit(c) => *c,
            CliError::StreamCode { code, .. } => *code,
            CliError::Flag(_) => 125,
            _ => 1,
        }
    }

    /// True when the error has already been reported.
    pub fn is_silent(&self) -> bool {
        matches!(self, CliError::Partial | CliError::Exit(_))
    }
}

/// The exit status of `run`/`start` failures, from the daemon's message (Docker's rules):
/// 127 when the command is missing, 126 when it cannot be executed, 125 otherwise.
pub fn run_exit_code(message: &str) -> i32 {
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
        || message.contains("system cannot find the file specified")
    {
        127
    } else if message.contains("permission denied") || message.contains("is a directory") {
        126
    } else {
        125
    }
}

/// Result of commands.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_exit_codes() {
        assert_eq!(
            run_exit_code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(run_exit_code("open /x: no such file or directory"), 127);
        assert_eq!(run_exit_code("exec /etc: permission denied"), 126);
        assert_eq!(run_exit_code("No such container: x"), 125);
    }
}
