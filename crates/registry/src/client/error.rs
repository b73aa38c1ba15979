//! The client's typed errors, and the distribution error body (`{"errors":[{"code","message"}]}`)
//! that registries send with a failing status, kept so the engine can show the registry's words.

use std::fmt;

use serde::Deserialize;

/// Everything a registry operation can fail with. Each variant is one class the engine maps to
/// one Docker status (not found, unauthorized, bad parameter, ...).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 404: unknown manifest, blob or repository. Docker prints
    /// `manifest for X not found: <this>`.
    #[error("{0}")]
    NotFound(RemoteError),
    /// 401 or 403 after the authentication dance (or the token endpoint refused the
    /// credentials).
    #[error("{0}")]
    Unauthorized(RemoteError),
    /// Any other failing status (5xx, 400 with `MANIFEST_INVALID`, 405 on a read-only mirror...).
    #[error("unexpected status from registry: {0}")]
    Status(RemoteError),
    /// The content does not hash to the digest it was asked for.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest that was asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A response (or a declared size) exceeds what the client accepts.
    #[error("{what} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was too large ("manifest", "token response", ...).
        what: &'static str,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The registry broke the protocol: bad header, unparsable JSON, missing Location, ...
    #[error("registry protocol error: {0}")]
    Protocol(String),
    /// Connecting, TLS, or the connection broke mid-way.
    #[error("{0}")]
    Transport(String),
    /// The peer stopped answering (connect, response headers, or a stalled body).
    #[error("timeout: {0}")]
    Timeout(String),
    /// The caller passed something unusable (bad repository name, digest, reference, header).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl ClientError {
    /// The registry's error body, for the variants that carry one.
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            ClientError::NotFound(r) | ClientError::Unauthorized(r) | ClientError::Status(r) => {
                Some(r)
            }
            _ => None,
        }
    }
}

/// One entry of a distribution error body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorEntry {
    /// `MANIFEST_UNKNOWN`, `UNAUTHORIZED`, `DENIED`, `BLOB_UNKNOWN`, ...
    #[serde(default)]
    pub code: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
}

/// A failing response: its HTTP status and whatever error entries its body held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// HTTP status code.
    pub status: u16,
    /// Entries of the distribution error body (may be empty).
    pub errors: Vec<ErrorEntry>,
}

impl RemoteError {
    /// Builds from a status and the (already size-capped) body.
    pub(crate) fn from_body(status: u16, body: &[u8]) -> RemoteError {
        RemoteError {
            status,
            errors: parse_error_body(body),
        }
    }

    /// The first error code, if any (`"DENIED"`, `"MANIFEST_UNKNOWN"`...).
    pub fn code(&self) -> Option<&str> {
        self.errors
            .iter()
            .map(|e| e.code.as_str())
            .find(|c| !c.is_empty())
    }
}

impl fmt::Display for RemoteError {
    /// Docker's form: `manifest unknown: manifest unknown` (code lowercased with spaces, then
    /// the message); several entries joined by `; `. Without entries, the status text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errors.is_empty() {
            let text = hyper::StatusCode::from_u16(self.status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("unknown status")
                .to_ascii_lowercase();
            return write!(f, "{text} (HTTP {})", self.status);
        }
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let code = e.code.to_ascii_lowercase().replace('_', " ");
            match (code.is_empty(), e.message.is_empty()) {
                (false, false) => write!(f, "{code}: {}", e.message)?,
                (false, true) => f.write_str(&code)?,
                (true, _) => f.write_str(&e.message)?,
            }
        }
        Ok(())
    }
}

/// Most entries kept from one body; a hostile registry could send thousands.
const MAX_ENTRIES: usize = 8;
/// Longest message kept per entry.
const MAX_MESSAGE: usize = 1024;

/// Parses `{"errors":[...]}`, or the token servers' `{"details":"..."}` / `{"error":"..."}`
/// forms. Anything else yields no entries.
fn parse_error_body(body: &[u8]) -> Vec<ErrorEntry> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Option<Vec<ErrorEntry>>,
        #[serde(default)]
        details: Option<String>,
        #[serde(default)]
        detail: Option<String>,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        error_description: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    let Ok(b) = serde_json::from_slice::<Body>(body) else {
        return Vec::new();
    };
    let mut out: Vec<ErrorEntry> = match b.errors {
        Some(list) => list.into_iter().take(MAX_ENTRIES).collect(),
        None => {
            let message = b
                .error_description
                .or(b.details)
                .or(b.detail)
                .or(b.message)
                .or(b.error);
            message
                .map(|m| ErrorEntry {
                    code: String::new(),
                    message: m,
                })
                .into_iter()
                .collect()
        }
    };
    for e in &mut out {
        truncate(&mut e.code, 64);
        truncate(&mut e.message, MAX_MESSAGE);
        e.message.retain(|c| !c.is_control());
        e.code.retain(|c| c.is_ascii_alphanumeric() || c == '_');
    }
    out
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_style_display() {
        let r = RemoteError::from_body(
            404,
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#,
        );
        assert_eq!(r.to_string(), "manifest unknown: manifest unknown");
        assert_eq!(r.code(), Some("MANIFEST_UNKNOWN"));
        let r = RemoteError::from_body(401, br#"{"details":"incorrect username or password"}"#);
        assert_eq!(r.to_string(), "incorrect username or password");
        let r = RemoteError::from_body(500, b"<html>oops</html>");
        assert_eq!(r.to_string(), "internal server error (HTTP 500)");
    }
}
