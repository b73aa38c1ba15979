//! Authentication: the credentials a caller hands in (with Docker's `X-Registry-Auth` decoding),
//! `WWW-Authenticate` challenge parsing, the bearer-token dance (GET with basic credentials, or
//! the OAuth2 refresh-token POST), and the token cache keyed by host, scope and credentials.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Method, Request, StatusCode, Uri};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::ClientError;
use super::error::RemoteError;
use super::transport::{self, Transport};

/// Largest token response accepted.
const MAX_TOKEN_RESPONSE: u64 = 1024 * 1024;
/// Largest `X-Registry-Auth` header accepted.
const MAX_AUTH_HEADER: usize = 64 * 1024;
/// Docker's floor for a token's lifetime.
const MIN_TOKEN_LIFETIME: u64 = 60;
/// Cached tokens beyond which expired ones are purged.
const MAX_CACHED_TOKENS: usize = 1024;

/// What a caller authenticates with. All empty is anonymous.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// User name for basic auth or the token endpoint.
    pub username: String,
    /// Password (or personal access token).
    pub password: String,
    /// OAuth2 refresh token from an earlier login; used with the token endpoint's POST form.
    pub identity_token: String,
    /// A bearer token sent to the registry as is, without the token dance.
    pub registry_token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &str| if s.is_empty() { "" } else { "<set>" };
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &set(&self.password))
            .field("identity_token", &set(&self.identity_token))
            .field("registry_token", &set(&self.registry_token))
            .finish()
    }
}

impl Credentials {
    /// Decodes Docker's `X-Registry-Auth` header: base64url of a JSON object with `username`,
    /// `password`, `auth` (base64 `user:pass`), `serveraddress`, `identitytoken`,
    /// `registrytoken` (keys matched case-insensitively, as Go does). Standard base64 and
    /// unpadded variants are accepted too. Empty, `{}` and `null` are anonymous.
    pub fn from_registry_auth_header(v: &str) -> Result<Credentials, ClientError> {
        let v = v.trim();
        if v.len() > MAX_AUTH_HEADER {
            return Err(ClientError::InvalidArgument(
                "X-Registry-Auth header too large".into(),
            ));
        }
        if v.is_empty() || v == "{}" || v == "null" {
            return Ok(Credentials::default());
        }
        let bad = |why: &str| {
            ClientError::InvalidArgument(format!("invalid X-Registry-Auth header: {why}"))
        };
        let raw = [&URL_SAFE, &URL_SAFE_NO_PAD, &STANDARD, &STANDARD_NO_PAD]
            .iter()
            .find_map(|e| e.decode(v).ok())
            .ok_or_else(|| bad("not base64"))?;
        let value: serde_json::Value = serde_json::from_slice(&raw).map_err(|_| bad("not JSON"))?;
        let obj = match value {
            serde_json::Value::Null => return Ok(Credentials::default()),
            serde_json::Value::Object(m) => m,
            _ => return Err(bad("not a JSON object")),
        };
        let mut c = Credentials::default();
        let mut auth = String::new();
        for (k, v) in obj {
            let Some(s) = v.as_str() else { continue };
            match k.to_ascii_lowercase().as_str() {
                "username" => c.username = s.to_string(),
                "password" => c.password = s.to_string(),
                "auth" => auth = s.to_string(),
                "identitytoken" => c.identity_token = s.to_string(),
                "registrytoken" => c.registry_token = s.to_string(),
                _ => {}
            }
        }
        if c.username.is_empty() && c.password.is_empty() && !auth.is_empty() {
            let decoded = STANDARD
                .decode(auth.trim())
                .map_err(|_| bad("auth field is not base64"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad("auth field is not UTF-8"))?;
            let (u, p) = decoded
                .split_once(':')
                .ok_or_else(|| bad("auth field is not user:password"))?;
            c.username = u.to_string();
            c.password = p.to_string();
        }
        Ok(c)
    }

    /// Whether no credential is set.
    pub fn is_anonymous(&self) -> bool {
        self.username.is_empty()
            && self.password.is_empty()
            && self.identity_token.is_empty()
            && self.registry_token.is_empty()
    }

    /// A fingerprint so tokens obtained with one user's credentials never serve another.
    fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            &self.username,
            &self.password,
            &self.identity_token,
            &self.registry_token,
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    fn basic(&self) -> Option<HeaderValue> {
        if self.username.is_empty() && self.password.is_empty() {
            return None;
        }
        let enc = STANDARD.encode(format!("{}:{}", self.username, self.password));
        let mut v = HeaderValue::from_str(&format!("Basic {enc}")).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// Parses every `WWW-Authenticate` header; returns the challenge to answer (Bearer preferred).
pub(crate) fn pick_challenge(headers: &HeaderMap) -> Option<Challenge> {
    let mut basic = false;
    for v in headers.get_all(WWW_AUTHENTICATE) {
        let Ok(s) = v.to_str() else { continue };
        for (scheme, params) in parse_www_authenticate(s) {
            if scheme.eq_ignore_ascii_case("bearer") {
                let get = |k: &str| {
                    params
                        .iter()
                        .find(|(pk, _)| pk == k)
                        .map(|(_, v)| v.clone())
                        .filter(|v| !v.is_empty())
                };
                if let Some(realm) = get("realm") {
                    return Some(Challenge::Bearer {
                        realm,
                        service: get("service"),
                        scope: get("scope"),
                    });
                }
            } else if scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

/// Splits a header value into challenges: `(scheme, [(lowercased param, value)])`. Values may
/// be quoted (with backslash escapes, commas inside), challenges separated by commas.
pub(crate) fn parse_www_authenticate(s: &str) -> Vec<(String, Vec<(String, String)>)> {
    const MAX_PARAMS: usize = 32;
    let b = s.as_bytes();
    let mut i = 0;
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let is_sep = |c: u8| c == b',' || c == b' ' || c == b'\t';
    while i < b.len() {
        while i < b.len() && is_sep(b[i]) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && !is_sep(b[i]) && b[i] != b'=' {
            i += 1;
        }
        let token = &s[start..i];
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' {
            // A parameter of the current challenge (or a token68's padding).
            i = j + 1;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            let mut value = String::new();
            if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut buf = Vec::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    buf.push(b[i]);
                    i += 1;
                }
                i += 1; // closing quote (or past the end)
                value = String::from_utf8_lossy(&buf).into_owned();
            } else {
                let vstart = i;
                while i < b.len() && !is_sep(b[i]) {
                    i += 1;
                }
                value.push_str(&s[vstart..i]);
            }
            if token.is_empty() {
                continue;
            }
            if let Some((_, params)) = out.last_mut() {
                if params.len() < MAX_PARAMS {
                    params.push((token.to_ascii_lowercase(), value));
                }
            }
        } else if token.is_empty() {
            i += 1;
        } else {
            if out.len() >= MAX_PARAMS {
                break;
            }
            out.push((token.to_string(), Vec::new()));
        }
    }
    out
}

#[derive(Hash, PartialEq, Eq)]
struct TokenKey {
    host: String,
    scopes: String,
    creds: [u8; 32],
}

/// Challenges seen per host and tokens obtained per (host, scope, credentials).
#[derive(Default)]
pub(crate) struct AuthCache {
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<TokenKey, (HeaderValue, Instant)>>,
}

impl AuthCache {
    pub(crate) fn set_challenge(&self, host: &str, c: Challenge) {
        let mut m = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_CACHED_TOKENS && !m.contains_key(host) {
            m.clear();
        }
        m.insert(host.to_string(), c);
    }

    fn challenge(&self, host: &str) -> Option<Challenge> {
        self.challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .cloned()
    }

    /// The `Authorization` value for a request to `host` needing `scopes` (cached under
    /// them; `extra` scopes from a fresh challenge are asked for too). `None` when anonymous
    /// or when the host's challenge is not known yet. `force` skips the cached token.
    pub(crate) async fn authorization(
        &self,
        t: &Transport,
        host: &str,
        scopes: &[String],
        extra: &[String],
        creds: &Credentials,
        force: bool,
    ) -> Result<Option<HeaderValue>, ClientError> {
        if !creds.registry_token.is_empty() {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", creds.registry_token))
                .map_err(|_| {
                    ClientError::InvalidArgument("registry token is not a header value".into())
                })?;
            v.set_sensitive(true);
            return Ok(Some(v));
        }
        let Some(challenge) = self.challenge(host) else {
            return Ok(None);
        };
        let (realm, service) = match challenge {
            Challenge::Basic => return Ok(creds.basic()),
            Challenge::Bearer { realm, service, .. } => (realm, service),
        };
        let mut sorted: Vec<String> = scopes.to_vec();
        sorted.sort();
        sorted.dedup();
        let key = TokenKey {
            host: host.to_string(),
            scopes: sorted.join(" "),
            creds: creds.fingerprint(),
        };
        if !force {
            let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((v, until)) = tokens.get(&key) {
                if *until > Instant::now() {
                    return Ok(Some(v.clone()));
                }
            }
        }
        for e in extra {
            if !sorted.contains(e) {
                sorted.push(e.clone());
            }
        }
        let (token, lifetime) = fetch_token(t, &realm, service.as_deref(), &sorted, creds).await?;
        let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ClientError::Protocol("token is not a header value".into()))?;
        v.set_sensitive(true);
        let until = Instant::now() + lifetime.saturating_sub(Duration::from_secs(10));
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= MAX_CACHED_TOKENS {
            let now = Instant::now();
            tokens.retain(|_, (_, until)| *until > now);
            if tokens.len() >= MAX_CACHED_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(key, (v.clone(), until));
        Ok(Some(v))
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Asks the token endpoint for a bearer token: GET `realm?service=&scope=...` with basic
/// credentials, or the OAuth2 refresh-token POST when an identity token is set.
async fn fetch_token(
    t: &Transport,
    realm: &str,
    service: Option<&str>,
    scopes: &[String],
    creds: &Credentials,
) -> Result<(String, Duration), ClientError> {
    let realm_uri: Uri = realm
        .parse()
        .map_err(|_| ClientError::Protocol(format!("bad token realm {realm:?}")))?;
    if !matches!(realm_uri.scheme_str(), Some("https" | "http")) || realm_uri.authority().is_none()
    {
        return Err(ClientError::Protocol(format!("bad token realm {realm:?}")));
    }
    let req = if !creds.identity_token.is_empty() {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", &creds.identity_token),
            ("client_id", "berth"),
        ];
        if let Some(s) = service {
            form.push(("service", s));
        }
        let joined = scopes.join(" ");
        if !joined.is_empty() {
            form.push(("scope", &joined));
        }
        let body = serde_urlencoded::to_string(&form)
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        Request::builder()
            .method(Method::POST)
            .uri(realm_uri)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(transport::full(body.into()))
    } else {
        let mut q: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            q.push(("service", s));
        }
        for s in scopes {
            q.push(("scope", s));
        }
        if !creds.username.is_empty() {
            q.push(("account", &creds.username));
        }
        let query = serde_urlencoded::to_string(&q)
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let url = if query.is_empty() {
            realm.to_string()
        } else if realm.contains('?') {
            format!("{realm}&{query}")
        } else {
            format!("{realm}?{query}")
        };
        let uri: Uri = url
            .parse()
            .map_err(|_| ClientError::Protocol(format!("bad token realm {realm:?}")))?;
        let mut b = Request::get(uri);
        if let Some(basic) = creds.basic() {
            b = b.header(AUTHORIZATION, basic);
        }
        b.body(transport::empty())
    }
    .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
    let resp = t.send(req).await?;
    let status = resp.status();
    if status != StatusCode::OK {
        let body = transport::error_body(resp, t.read_timeout).await;
        let remote = RemoteError::from_body(status.as_u16(), &body);
        return Err(match status.as_u16() {
            401 | 403 => ClientError::Unauthorized(remote),
            _ => ClientError::Status(remote),
        });
    }
    let body =
        transport::read_limited(resp, MAX_TOKEN_RESPONSE, "token response", t.read_timeout).await?;
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| ClientError::Protocol(format!("token response: {e}")))?;
    let token = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| ClientError::Protocol("token response without a token".into()))?;
    let lifetime = parsed
        .expires_in
        .unwrap_or(MIN_TOKEN_LIFETIME)
        .clamp(MIN_TOKEN_LIFETIME, 24 * 3600);
    Ok((token, Duration::from_secs(lifetime)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_with_commas_in_quotes() {
        let h = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push",error="insufficient_scope""#;
        let p = parse_www_authenticate(h);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "Bearer");
        assert_eq!(
            p[0].1,
            vec![
                ("realm".into(), "https://auth.example/token".into()),
                ("service".into(), "registry.example".into()),
                ("scope".into(), "repository:a/b:pull,push".into()),
                ("error".into(), "insufficient_scope".into()),
            ]
        );
        let mut m = HeaderMap::new();
        m.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="x""#),
        );
        m.append(WWW_AUTHENTICATE, HeaderValue::from_str(h).unwrap());
        assert!(
            matches!(pick_challenge(&m), Some(Challenge::Bearer { scope: Some(s), .. }) if s == "repository:a/b:pull,push")
        );
    }

    #[test]
    fn parses_several_challenges_and_garbage() {
        let p = parse_www_authenticate(r#"Basic realm="a \"q\" b", Bearer realm=x,service=y"#);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].1[0].1, r#"a "q" b"#);
        assert_eq!(p[1].1.len(), 2);
        for junk in [
            "",
            "=",
            "==,,",
            "\"",
            "Bearer realm=\"unterminated",
            "a=b=c",
        ] {
            let _ = parse_www_authenticate(junk);
        }
        let mut m = HeaderMap::new();
        m.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer service=x"),
        );
        assert_eq!(pick_challenge(&m), None);
    }
}
