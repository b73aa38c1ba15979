//! HTTP basic authentication against an htpasswd file with bcrypt entries (what
//! `htpasswd -B` writes and distribution's htpasswd auth reads).
//!
//! bcrypt is slow on purpose and clients send credentials with every request, so a
//! successful check is remembered (as a SHA-256 of user, password and entry) for the
//! process's life.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::error::ServerError;

/// Remembered successful checks before the cache is cleared.
const CACHE_LIMIT: usize = 4096;

/// The users of an htpasswd file.
pub(crate) struct Htpasswd {
    users: HashMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    pub(crate) fn load(path: &Path) -> Result<Arc<Htpasswd>, ServerError> {
        let text = std::fs::read_to_string(path).map_err(ServerError::io("reading", path))?;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason| ServerError::Htpasswd {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let (user, hash) = line.split_once(':').ok_or_else(|| bad("no ':'"))?;
            if user.is_empty() {
                return Err(bad("empty user name"));
            }
            if !hash.starts_with("$2") {
                return Err(bad("only bcrypt entries are supported (htpasswd -B)"));
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        Ok(Arc::new(Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
        }))
    }

    /// Whether an `Authorization` header carries valid credentials.
    pub(crate) async fn check(self: &Arc<Self>, header: Option<&str>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let Some(hash) = self.users.get(&user).cloned() else {
            return false;
        };
        let key: [u8; 32] = {
            let mut h = Sha256::new();
            for part in [user.as_bytes(), password.as_bytes(), hash.as_bytes()] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part);
            }
            h.finalize().into()
        };
        if self.cache().contains(&key) {
            return true;
        }
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(false);
        if ok {
            let mut cache = self.cache();
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key);
        }
        ok
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `Basic <base64(user:password)>` -> (user, password).
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header() {
        assert_eq!(
            parse_basic("Basic dXNlcjpwYTpzcw=="),
            Some(("user".into(), "pa:ss".into()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }
}
