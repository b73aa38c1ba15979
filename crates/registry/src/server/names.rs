//! Validation of everything a client can put into a storage path: repository names, tags,
//! digests and upload ids.
//!
//! Each validated value is a type of its own, so a storage path can only be built from a value
//! that went through here; none of them can hold `/..`, a leading `/` or any byte outside its
//! grammar.

use std::fmt;

use sha2::{Digest as _, Sha256, Sha512};

/// Longest repository name accepted (distribution's limit).
const MAX_NAME_LEN: usize = 255;

/// A repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RepoName(String);

impl RepoName {
    pub(crate) fn parse(s: &str) -> Option<RepoName> {
        if s.is_empty() || s.len() > MAX_NAME_LEN {
            return None;
        }
        if s.split('/').all(valid_component) {
            Some(RepoName(s.to_owned()))
        } else {
            None
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The name's path components, each a valid single directory name.
    pub(crate) fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub(crate) fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    // Leading alphanumeric run.
    if b.is_empty() || !alnum(b[0]) {
        return false;
    }
    while i < b.len() && alnum(b[i]) {
        i += 1;
    }
    while i < b.len() {
        // Separator: `.`, `_`, `__` or `-+`.
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        // Then at least one alphanumeric.
        if i >= b.len() || !alnum(b[i]) {
            return false;
        }
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
    }
    true
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Tag(String);

impl Tag {
    pub(crate) fn parse(s: &str) -> Option<Tag> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
        let rest_ok = b
            .iter()
            .skip(1)
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if first_ok && rest_ok && b.len() <= 128 {
            Some(Tag(s.to_owned()))
        } else {
            None
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A digest algorithm the registry accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub(crate) fn from_name(s: &str) -> Option<Algorithm> {
        match s {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    pub(crate) const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    /// Digest of a whole buffer.
    pub(crate) fn digest(self, data: &[u8]) -> Digest {
        let mut h = Hasher::new(self);
        h.update(data);
        h.finish()
    }
}

/// A content digest `<alg>:<lowercase hex>` of the right length for its algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Digest {
    alg: Algorithm,
    hex: String,
}

impl Digest {
    pub(crate) fn parse(s: &str) -> Option<Digest> {
        let (alg, hex) = s.split_once(':')?;
        let alg = Algorithm::from_name(alg)?;
        Digest::from_parts(alg, hex)
    }

    pub(crate) fn from_parts(alg: Algorithm, hex: &str) -> Option<Digest> {
        let ok = hex.len() == alg.hex_len()
            && hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
        ok.then(|| Digest {
            alg,
            hex: hex.to_owned(),
        })
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub(crate) fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg.name(), self.hex)
    }
}

/// An incremental hash for one algorithm.
#[derive(Clone)]
pub(crate) enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub(crate) fn new(alg: Algorithm) -> Hasher {
        match alg {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub(crate) fn finish(self) -> Digest {
        let (alg, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { alg, hex }
    }
}

/// An upload session id: 32 lowercase hex characters, made only by [`UploadId::generate`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct UploadId(String);

impl UploadId {
    pub(crate) fn generate() -> UploadId {
        let bytes: [u8; 16] = rand::random();
        UploadId(hex::encode(bytes))
    }

    pub(crate) fn parse(s: &str) -> Option<UploadId> {
        let ok = s.len() == 32
            && s.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
        ok.then(|| UploadId(s.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone)]
pub(crate) enum Reference {
    Tag(Tag),
    Digest(Digest),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names() {
        for ok in ["a", "library/ubuntu", "a0/b-c/d__e/f.g", "a---b", "x_y"] {
            assert!(RepoName::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "", "A", "../x", "a/../b", "a//b", "/a", "a/", "_a", "a_", "a___b", "a..b", "a.-b",
            ".", "..", "a/.", "a b", "a%2f",
        ] {
            assert!(RepoName::parse(bad).is_none(), "{bad}");
        }
        assert!(RepoName::parse(&"a".repeat(256)).is_none());
    }

    #[test]
    fn tags() {
        assert!(Tag::parse("latest").is_some());
        assert!(Tag::parse("_v1.0-rc").is_some());
        for bad in ["", ".hidden", "..", "-x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(Tag::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn digests() {
        let d = Algorithm::Sha256.digest(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(&d.to_string()), Some(d));
        assert!(Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e").is_none());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_none());
        assert!(Digest::parse(&format!("sha256:{}", "a".repeat(63))).is_none());
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(128))).is_some());
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(64))).is_none());
    }

    #[test]
    fn upload_ids() {
        let id = UploadId::generate();
        assert_eq!(UploadId::parse(id.as_str()), Some(id));
        assert!(UploadId::parse("../../etc").is_none());
    }
}
