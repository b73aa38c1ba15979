//! Docker image references: `[domain[:port]/]path[:tag][@algorithm:hex]`, parsed with Docker's
//! grammar and normalized as Docker normalizes them (`busybox` is
//! `docker.io/library/busybox:latest`).

use std::fmt;

use crate::error::ImageError;

/// The registry of unqualified names.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The repository namespace of single-component Docker Hub names.
const OFFICIAL_PREFIX: &str = "library/";
/// The tag of a reference that names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
/// Docker's limit on `domain/path`.
const MAX_NAME_LEN: usize = 255;
/// Docker's limit on a tag.
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Whether `s` gives its own tag or digest (`app:1`, `app@sha256:...`), not just a name that
/// [`Reference::parse`] completes with `latest` (a registry's `host:port/` is no tag).
pub fn names_tag_or_digest(s: &str) -> bool {
    s.contains('@') || s.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

impl Reference {
    /// Parses and normalizes a reference as `docker` does (`ParseNormalizedNamed` plus the
    /// default `latest` tag when neither a tag nor a digest is given).
    pub fn parse(s: &str) -> Result<Self, ImageError> {
        if s.is_empty() {
            return Err(ImageError::invalid_reference());
        }
        if s.len() == 64 && is_lower_hex(s) {
            return Err(ImageError::InvalidReference(format!(
                "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
            )));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (s, None),
        };
        // A `:` after the last `/` starts the tag; one before it is a port.
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        let (domain, path) = split_domain(name);
        if path.to_lowercase() != path {
            return Err(ImageError::InvalidReference(format!(
                "invalid reference format: repository name ({path}) must be lowercase"
            )));
        }
        if !valid_domain(&domain) || !valid_path(&path) {
            return Err(ImageError::invalid_reference());
        }
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(ImageError::InvalidReference(format!(
                "repository name must not be more than {MAX_NAME_LEN} characters"
            )));
        }
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ImageError::invalid_reference());
            }
        }
        if let Some(d) = digest {
            if !valid_digest(d) {
                return Err(ImageError::invalid_reference());
            }
        }
        let tag = match (tag, digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (t, _) => t.map(str::to_owned),
        };
        Ok(Self {
            domain,
            path,
            tag,
            digest: digest.map(str::to_owned),
        })
    }

    /// The registry (`docker.io`, `myreg:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if any (`latest` when the reference named neither a tag nor a digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any (`sha256:...`).
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The full repository name (`docker.io/library/busybox`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository name as Docker shows it (`busybox`, `user/app`, `myreg:5000/x/y`).
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_owned(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The reference as Docker shows it (`busybox:latest`, `myreg:5000/x/y:1`).
    pub fn familiar(&self) -> String {
        self.with_suffix(self.familiar_name())
    }

    /// The fully qualified reference (`docker.io/library/busybox:latest`).
    pub fn full(&self) -> String {
        self.with_suffix(self.name())
    }

    fn with_suffix(&self, mut s: String) -> String {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.familiar())
    }
}

/// Docker's `splitDockerDomain`: the first component is a registry when it has a `.` or a
/// `:`, is `localhost`, or has upper-case letters.
fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
    };
    let domain = if domain == "index.docker.io" {
        DEFAULT_DOMAIN.to_owned()
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_PREFIX}{path}")
    } else {
        path
    };
    (domain, path)
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `host[:port]` where host is a dotted name of `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`
/// components or a bracketed IPv6 address.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if domain.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// `component(/component)*`, each `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_path(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// `algorithm:hex` with a known algorithm and the right length of lower-case hex.
fn valid_digest(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && is_lower_hex(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "3a093384ac306cbac30b67f1585e12b30ab1a899374dabc3170b9bca246f1444";

    #[test]
    fn valid_references_normalize_like_docker() {
        let digest = format!("sha256:{HEX}");
        let cases: &[(&str, &str, &str)] = &[
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
            ("myreg:5000/x/y:1", "myreg:5000/x/y:1", "myreg:5000/x/y:1"),
            (
                "localhost/app",
                "localhost/app:latest",
                "localhost/app:latest",
            ),
            (
                "localhost:5000/app",
                "localhost:5000/app:latest",
                "localhost:5000/app:latest",
            ),
            (
                "a.b-c/d__e/f-----g.h",
                "a.b-c/d__e/f-----g.h:latest",
                "a.b-c/d__e/f-----g.h:latest",
            ),
            (
                "busybox:Latest_1.x-y",
                "docker.io/library/busybox:Latest_1.x-y",
                "busybox:Latest_1.x-y",
            ),
            ("[::1]:5000/app:2", "[::1]:5000/app:2", "[::1]:5000/app:2"),
            (
                "Registry.Example/app",
                "Registry.Example/app:latest",
                "Registry.Example/app:latest",
            ),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.full(), *full, "{input}");
            assert_eq!(r.familiar(), *familiar, "{input}");
        }
        let r = Reference::parse(&format!("busybox@{digest}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(digest.as_str()));
        assert_eq!(r.full(), format!("docker.io/library/busybox@{digest}"));
        let r = Reference::parse(&format!("busybox:1@{digest}")).unwrap();
        assert_eq!(r.familiar(), format!("busybox:1@{digest}"));
        assert_eq!(r.domain(), "docker.io");
        assert_eq!(r.path(), "library/busybox");
    }

    #[test]
    fn invalid_references_are_refused() {
        let long_tag = format!("busybox:{}", "a".repeat(129));
        let long_name = format!("{}/x", "a".repeat(256));
        let bad = [
            "",
            ":",
            "busybox:",
            "busybox:-tag",
            "busybox:.tag",
            "busybox:ta/g",
            "-busybox",
            "busybox-",
            "bu..sybox",
            "bu___sybox",
            "a//b",
            "/busybox",
            "busybox/",
            "busy box",
            "busybox@sha256:abc",
            "busybox@md5:0123",
            "myreg:port/app",
            "-reg.io/app",
            long_tag.as_str(),
            long_name.as_str(),
            "busybox@@sha256:00",
        ];
        for input in bad {
            let e = Reference::parse(input).expect_err(input);
            assert_eq!(
                e.kind(),
                crate::error::ErrorKind::InvalidArgument,
                "{input}"
            );
        }
        let e = Reference::parse("Busybox").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        assert_eq!(
            Reference::parse("busybox:").unwrap_err().to_string(),
            "invalid reference format"
        );
        assert!(
            Reference::parse(HEX)
                .unwrap_err()
                .to_string()
                .contains("64-byte hexadecimal")
        );
    }
}
