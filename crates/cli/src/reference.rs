//! A small splitter for image references (`[DOMAIN/]PATH[:TAG][@DIGEST]`), enough for the
//! CLI to pick the registry whose credentials to send and to print Docker's normalized
//! names. The daemon validates references fully; this only rejects what is plainly wrong.

/// Docker Hub's domain in normalized references.
pub const DOCKER_HUB_DOMAIN: &str = "docker.io";
/// The namespace of Docker Hub's official images.
const OFFICIAL_NAMESPACE: &str = "library";

/// A reference that cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReference {
    /// Empty, or with characters no reference has.
    #[error("invalid reference format")]
    Format,
    /// The repository has upper-case letters.
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
}

/// An image reference split into its parts, normalized the way Docker does
/// (`busybox` is `docker.io/library/busybox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host (`docker.io`, `localhost:5000`).
    pub domain: String,
    /// The repository path inside the registry (`library/busybox`).
    pub path: String,
    /// The tag, if one was given.
    pub tag: Option<String>,
    /// The digest (`sha256:...`), if one was given.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Splits `s`. The first path component is a registry when it has a `.` or a `:`, or is
    /// `localhost`; otherwise the image lives on Docker Hub.
    pub fn parse(s: &str) -> Result<ImageRef, InvalidReference> {
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidReference::Format);
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let (algo, hex) = d.split_once(':').ok_or(InvalidReference::Format)?;
                if algo.is_empty() || hex.is_empty() {
                    return Err(InvalidReference::Format);
                }
                (n, Some(d.to_owned()))
            }
            None => (s, None),
        };
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &name_tag[last_slash + i + 1..];
                if tag.is_empty() {
                    return Err(InvalidReference::Format);
                }
                (&name_tag[..last_slash + i], Some(tag.to_owned()))
            }
            None => (name_tag, None),
        };
        if name.is_empty() || name.starts_with('/') || name.ends_with('/') || name.contains("//") {
            return Err(InvalidReference::Format);
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest)) if is_domain(first) => (first.to_owned(), rest.to_owned()),
            _ => (DOCKER_HUB_DOMAIN.to_owned(), name.to_owned()),
        };
        let domain = if domain == "index.docker.io" {
            DOCKER_HUB_DOMAIN.to_owned()
        } else {
            domain
        };
        let path = if domain == DOCKER_HUB_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(InvalidReference::Uppercase(path));
        }
        Ok(ImageRef {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// True when neither a tag nor a digest was given.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// The repository as Docker shows it (`busybox`, `user/app`, `localhost:5000/app`).
    pub fn familiar_name(&self) -> String {
        if self.domain == DOCKER_HUB_DOMAIN {
            match self.path.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_owned(),
                _ => self.path.clone(),
            }
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// The repository with its domain (`docker.io/library/busybox`).
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The normalized reference with its tag and digest (`docker.io/library/busybox:latest`).
    pub fn full(&self) -> String {
        let mut s = self.full_name();
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

    /// What the Engine API's `tag` parameter takes: the digest when there is one, else the tag.
    pub fn api_tag(&self) -> Option<&str> {
        self.digest.as_deref().or(self.tag.as_deref())
    }

    /// The key of the registry's credentials in `config.json` (Docker Hub's is its v1 URL).
    pub fn auth_server(&self) -> String {
        if self.domain == DOCKER_HUB_DOMAIN {
            crate::auth::INDEX_SERVER.to_owned()
        } else {
            self.domain.clone()
        }
    }
}

/// Docker's rule for the first path component naming a registry.
fn is_domain(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    #[test]
    fn hub_names_are_normalized() {
        let r = p("busybox");
        assert_eq!(r.domain, "docker.io");
        assert_eq!(r.path, "library/busybox");
        assert!(r.is_name_only());
        assert_eq!(r.familiar_name(), "busybox");
        assert_eq!(r.full(), "docker.io/library/busybox");
        assert_eq!(r.auth_server(), "https://index.docker.io/v1/");

        let r = p("user/app:v1");
        assert_eq!(r.path, "user/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.familiar_name(), "user/app");
        assert_eq!(r.full(), "docker.io/user/app:v1");

        assert_eq!(
            p("docker.io/library/busybox:1.36").familiar_name(),
            "busybox"
        );
        assert_eq!(
            p("index.docker.io/busybox").full(),
            "docker.io/library/busybox"
        );
        assert_eq!(p("library/busybox").familiar_name(), "busybox");
    }

    #[test]
    fn registries_are_detected() {
        let r = p("localhost:5000/app:dev");
        assert_eq!(r.domain, "localhost:5000");
        assert_eq!(r.path, "app");
        assert_eq!(r.tag.as_deref(), Some("dev"));
        assert_eq!(r.familiar_name(), "localhost:5000/app");
        assert_eq!(r.auth_server(), "localhost:5000");

        assert_eq!(p("localhost/app").domain, "localhost");
        assert_eq!(p("ghcr.io/org/team/app").path, "org/team/app");
        assert_eq!(p("reg:5000/a").domain, "reg:5000");
        // A port-less first component without a dot is a Hub namespace.
        assert_eq!(p("myhost/app").domain, "docker.io");
        assert_eq!(p("myhost/app").path, "myhost/app");
    }

    #[test]
    fn tags_and_digests() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let r = p(&format!("localhost:5000/app@{d}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d));
        assert_eq!(r.api_tag(), Some(d));
        assert_eq!(r.full(), format!("localhost:5000/app@{d}"));

        let r = p(&format!("app:v2@{d}"));
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(r.api_tag(), Some(d));
        assert_eq!(r.full(), format!("docker.io/library/app:v2@{d}"));

        // The port is not a tag.
        assert_eq!(p("localhost:5000/app").tag, None);
    }

    #[test]
    fn rejects_plain_mistakes() {
        for bad in [
            "",
            "a b",
            "app:",
            "/app",
            "app/",
            "a//b",
            "app@sha256",
            "app@:x",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ImageRef::parse("Busybox"),
            Err(InvalidReference::Uppercase("library/Busybox".into()))
        );
        assert_eq!(
            ImageRef::parse("Busybox").unwrap_err().to_string(),
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
    }
}
