//! Checks on everything that ends up in a URL (registry host, repository path, tag, digest),
//! digest computation, and URL resolution for `Location` and `Link` headers.

use hyper::Uri;
use sha2::{Digest, Sha256, Sha512};

use super::ClientError;

/// A registry host as written in references: `host[:port]`, `[v6]:port`.
pub(crate) fn check_authority(a: &str) -> Result<(), ClientError> {
    let ok = !a.is_empty()
        && a.len() <= 255
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        && a.parse::<hyper::http::uri::Authority>().is_ok();
    if ok {
        Ok(())
    } else {
        Err(ClientError::InvalidArgument(format!(
            "invalid registry host {a:?}"
        )))
    }
}

/// A repository path: lowercase components of `[a-z0-9._-]`, starting and ending with an
/// alphanumeric, separated by `/`.
pub(crate) fn check_repository(r: &str) -> Result<(), ClientError> {
    let ok = !r.is_empty()
        && r.len() <= 255
        && r.split('/').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        });
    if ok {
        Ok(())
    } else {
        Err(ClientError::InvalidArgument(format!(
            "invalid repository name {r:?}"
        )))
    }
}

/// The algorithm of a well-formed `sha256:<64 hex>` / `sha512:<128 hex>` digest.
pub(crate) fn digest_algorithm(d: &str) -> Option<&'static str> {
    let (alg, hex) = d.split_once(':')?;
    let (name, len) = match alg {
        "sha256" => ("sha256", 64),
        "sha512" => ("sha512", 128),
        _ => return None,
    };
    (hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then_some(name)
}

/// Fails unless `d` is a supported digest.
pub(crate) fn check_digest(d: &str) -> Result<(), ClientError> {
    digest_algorithm(d)
        .map(|_| ())
        .ok_or_else(|| ClientError::InvalidArgument(format!("invalid digest {d:?}")))
}

/// A tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) or a digest.
pub(crate) fn check_reference(r: &str) -> Result<(), ClientError> {
    if r.contains(':') {
        return check_digest(r);
    }
    let b = r.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ClientError::InvalidArgument(format!("invalid tag {r:?}")))
    }
}

/// `alg:hex` of `bytes` with the given algorithm (`sha256` or `sha512`).
pub(crate) fn digest_of(alg: &str, bytes: &[u8]) -> String {
    match alg {
        "sha512" => format!("sha512:{}", hex::encode(Sha512::digest(bytes))),
        _ => format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
    }
}

/// Resolves a `Location`/`Link` target against the URL of the request that returned it.
/// Only `http` and `https` results are accepted.
pub(crate) fn resolve(base: &Uri, target: &str) -> Result<Uri, ClientError> {
    let bad = || ClientError::Protocol(format!("bad URL {target:?} in response"));
    let target = target.trim();
    let scheme = base.scheme_str().ok_or_else(bad)?;
    let authority = base.authority().ok_or_else(bad)?.as_str();
    let has_scheme = target.split_once(':').is_some_and(|(s, _)| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'))
    });
    let s = if has_scheme {
        target.to_string()
    } else if let Some(rest) = target.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if target.starts_with('/') {
        format!("{scheme}://{authority}{target}")
    } else if target.starts_with('?') {
        format!("{scheme}://{authority}{}{target}", base.path())
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
        format!("{scheme}://{authority}{dir}{target}")
    };
    let uri: Uri = s.parse().map_err(|_| bad())?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err(bad());
    }
    Ok(uri)
}

/// Appends `key=value` (form-encoded) to a URL's query.
pub(crate) fn with_query(uri: &Uri, pairs: &[(&str, &str)]) -> Result<Uri, ClientError> {
    let q = serde_urlencoded::to_string(pairs)
        .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
    let s = uri.to_string();
    let s = if uri.query().is_some_and(|q| !q.is_empty()) {
        format!("{s}&{q}")
    } else {
        format!("{}?{q}", s.trim_end_matches('?'))
    };
    s.parse()
        .map_err(|_| ClientError::Protocol(format!("bad URL {s:?}")))
}

/// The `rel="next"` target of a `Link` header value.
pub(crate) fn next_link(v: &str) -> Option<&str> {
    for part in v.split(',') {
        let part = part.trim();
        let Some(rest) = part.strip_prefix('<') else {
            continue;
        };
        let Some((url, params)) = rest.split_once('>') else {
            continue;
        };
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        if is_next {
            return Some(url);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_repository("library/busybox").is_ok());
        assert!(check_repository("a/b-c/d_e.f").is_ok());
        for bad in [
            "", "A/b", "a//b", "../x", "a/..", "a/b/", "a?b", "a%2fb", "-a",
        ] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
        assert!(check_reference("latest").is_ok());
        assert!(check_reference("v1.2_3-rc").is_ok());
        assert!(check_reference(".x").is_err());
        assert!(check_reference("a/b").is_err());
        assert!(check_reference(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(check_reference(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(check_reference("sha256:abc").is_err());
        assert!(check_authority("localhost:5000").is_ok());
        assert!(check_authority("[::1]:5000").is_ok());
        assert!(check_authority("a/b").is_err());
        assert!(check_authority("u@h").is_err());
    }

    #[test]
    fn urls() {
        let base: Uri = "http://r:5000/v2/a/blobs/uploads/".parse().unwrap();
        assert_eq!(
            resolve(&base, "/v2/a/blobs/uploads/123?_state=x")
                .unwrap()
                .to_string(),
            "http://r:5000/v2/a/blobs/uploads/123?_state=x"
        );
        assert_eq!(
            resolve(&base, "https://s3.example/b?sig=1")
                .unwrap()
                .to_string(),
            "https://s3.example/b?sig=1"
        );
        assert_eq!(
            resolve(&base, "//o:1/p").unwrap().to_string(),
            "http://o:1/p"
        );
        assert_eq!(
            resolve(&base, "x").unwrap().to_string(),
            "http://r:5000/v2/a/blobs/uploads/x"
        );
        assert!(resolve(&base, "file:///etc/passwd").is_err());
        let u = with_query(
            &"http://r/v2/u?_state=a".parse().unwrap(),
            &[("digest", "sha256:ab")],
        )
        .unwrap();
        assert_eq!(u.to_string(), "http://r/v2/u?_state=a&digest=sha256%3Aab");
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(next_link(r#"<x>; rel="prev""#), None);
    }
}
