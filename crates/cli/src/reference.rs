//! Image references as the CLI needs them. Docker's grammar and normalization are the image
//! crate's ([`berth_image::Reference`], the same code the daemon runs); this adds what only
//! the CLI asks: whether a tag was typed (for "Using default tag: latest"), the Engine API's
//! `tag` parameter, and the key of the registry's credentials in `config.json`.

use berth_image::Reference;
use berth_image::reference::DEFAULT_DOMAIN;

/// A reference that does not follow Docker's grammar (the message is Docker's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidReference(pub String);

/// A parsed, normalized reference (`busybox` is `docker.io/library/busybox:latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    inner: Reference,
    /// Whether the text named a tag or a digest (else `latest` is implied).
    explicit: bool,
}

impl ImageRef {
    /// Parses `s` with Docker's grammar.
    pub fn parse(s: &str) -> Result<ImageRef, InvalidReference> {
        let inner = Reference::parse(s).map_err(|e| InvalidReference(e.to_string()))?;
        Ok(ImageRef {
            inner,
            explicit: berth_image::reference::names_tag_or_digest(s),
        })
    }

    /// True when neither a tag nor a digest was given.
    pub fn is_name_only(&self) -> bool {
        !self.explicit
    }

    /// The registry (`docker.io`, `localhost:5000`).
    pub fn domain(&self) -> &str {
        self.inner.domain()
    }

    /// The digest, if one was given.
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// The tag (`latest` when none was typed and there is no digest).
    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    /// The repository as Docker shows it (`busybox`, `user/app`, `localhost:5000/app`).
    pub fn familiar_name(&self) -> String {
        self.inner.familiar_name()
    }

    /// The normalized reference (`docker.io/library/busybox:latest`).
    pub fn full(&self) -> String {
        self.inner.full()
    }

    /// What the Engine API's `tag` parameter takes: the digest when there is one, else the tag.
    pub fn api_tag(&self) -> Option<&str> {
        self.inner.digest().or(self.inner.tag())
    }

    /// The key of the registry's credentials in `config.json` (Docker Hub's is its v1 URL).
    pub fn auth_server(&self) -> String {
        if self.inner.domain() == DEFAULT_DOMAIN {
            crate::auth::INDEX_SERVER.to_owned()
        } else {
            self.inner.domain().to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    #[test]
    fn what_the_cli_adds() {
        let r = p("busybox");
        assert!(r.is_name_only());
        assert_eq!(r.familiar_name(), "busybox");
        assert_eq!(r.full(), "docker.io/library/busybox:latest");
        assert_eq!(r.api_tag(), Some("latest"));
        assert_eq!(r.auth_server(), "https://index.docker.io/v1/");

        let r = p("localhost:5000/app");
        assert!(r.is_name_only(), "the port is not a tag");
        assert_eq!(r.auth_server(), "localhost:5000");
        assert!(!p("localhost:5000/app:dev").is_name_only());

        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let r = p(&format!("localhost:5000/app@{d}"));
        assert!(!r.is_name_only());
        assert_eq!(r.api_tag(), Some(d));
        assert_eq!(r.digest(), Some(d));
        assert_eq!(r.full(), format!("localhost:5000/app@{d}"));
    }

    #[test]
    fn mistakes_get_dockers_messages() {
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
            ImageRef::parse("Busybox").unwrap_err().to_string(),
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
    }
}
