//! Manifests, indexes and descriptors (OCI image spec 1.1 and Docker's schema 2), parsed
//! leniently (unknown fields ignored) but checked strictly where a wrong value would be
//! trusted: digests, sizes, media types, and the platform chosen from an index.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::content::digest_hex;
use crate::error::ImageError;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, uncompressed.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker layer (gzip).
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign layer: hosted elsewhere, never pulled.
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Largest manifest or index accepted.
pub const MAX_MANIFEST: usize = 4 << 20;
/// Largest image config accepted.
pub const MAX_CONFIG: u64 = 8 << 20;
/// Most layers an image may have (overlay's stack limit is lower still; Docker's is 125).
pub const MAX_LAYERS: usize = 127;

/// Every manifest and index type, as a client's `Accept` header lists them.
pub const MANIFEST_TYPES: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// Whether a media type names an index (OCI index or Docker manifest list).
pub fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether a media type names a single-platform image manifest.
pub fn is_manifest_type(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// A platform, as an index entry names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os[/arch[/variant]]` (`linux/amd64`, `linux/arm64/v8`); empty means
    /// `linux/amd64`.
    pub fn parse(p: Option<&str>) -> Result<Self, ImageError> {
        let Some(p) = p.map(str::trim).filter(|p| !p.is_empty()) else {
            return Ok(Self::host());
        };
        let parts: Vec<&str> = p.split('/').collect();
        let bad = || ImageError::InvalidArgument(format!("invalid platform {p:?}"));
        let (os, arch, variant) = match parts.as_slice() {
            [os] => (*os, "amd64", None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => return Err(bad()),
        };
        if os != "linux" {
            return Err(ImageError::InvalidArgument(format!(
                "operating system {os:?} is not supported"
            )));
        }
        let word =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !word(arch) || variant.is_some_and(|v| !word(v)) {
            return Err(bad());
        }
        let arch = match arch {
            "x86_64" | "x86-64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        };
        Ok(Self {
            os: os.to_owned(),
            architecture: arch.to_owned(),
            variant: variant.map(str::to_owned),
        })
    }

    /// The platform this engine runs (`linux/amd64` on x86-64).
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        };
        Self {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        }
    }

    /// Whether an index entry's platform serves this one (an unset variant matches any, and
    /// arm64's default variant is v8).
    pub fn matches(&self, other: &Platform) -> bool {
        if self.os != other.os || self.architecture != other.architecture {
            return false;
        }
        let norm = |v: &Option<String>| match (self.architecture.as_str(), v.as_deref()) {
            ("arm64", None) => Some("v8".to_owned()),
            (_, v) => v.map(str::to_owned),
        };
        match (&self.variant, &other.variant) {
            (None, _) => true,
            _ => norm(&self.variant) == norm(&other.variant),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

impl Descriptor {
    /// A descriptor of bytes held in memory.
    pub fn of(media_type: &str, data: &[u8]) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: crate::content::sha256_digest(data),
            size: data.len() as u64,
            platform: None,
            artifact_type: None,
            annotations: None,
            urls: None,
        }
    }

    fn check(&self, what: &str) -> Result<(), ImageError> {
        digest_hex(&self.digest).map_err(|_| {
            ImageError::InvalidArgument(format!("{what} has an invalid digest {:?}", self.digest))
        })?;
        Ok(())
    }
}

/// A single-platform image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An index or Docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A fetched manifest document, classified.
#[derive(Debug, Clone)]
pub enum Document {
    Manifest(Box<Manifest>),
    Index(Index),
}

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

/// The compression a layer media type declares; foreign and unknown types are refused.
pub fn layer_compression(media_type: &str) -> Result<LayerCompression, ImageError> {
    match media_type {
        OCI_LAYER | "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
            Ok(LayerCompression::None)
        }
        OCI_LAYER_GZIP
        | DOCKER_LAYER_GZIP
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => {
            Ok(LayerCompression::Gzip)
        }
        OCI_LAYER_ZSTD => Ok(LayerCompression::Zstd),
        DOCKER_LAYER_FOREIGN => Err(ImageError::InvalidArgument(
            "foreign layers (Windows base images) are not supported".into(),
        )),
        other => Err(ImageError::InvalidArgument(format!(
            "unsupported layer media type {other:?}"
        ))),
    }
}

/// Parses a manifest or index. `declared` is the media type the registry (or a layout) gave;
/// the document's own `mediaType`, when present, must agree with it about what kind it is.
pub fn parse_document(declared: &str, data: &[u8]) -> Result<Document, ImageError> {
    if data.len() > MAX_MANIFEST {
        return Err(ImageError::TooLarge(format!(
            "manifest larger than {MAX_MANIFEST} bytes"
        )));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        schema_version: u32,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        config: Option<serde_json::Value>,
    }
    let bad = |e: String| ImageError::InvalidArgument(format!("invalid manifest: {e}"));
    let probe: Probe = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
    if probe.schema_version != 2 {
        return Err(ImageError::InvalidArgument(format!(
            "unsupported manifest schema version {} (schema 1 manifests are deprecated and not supported)",
            probe.schema_version
        )));
    }
    let declared = declared.split(';').next().unwrap_or("").trim();
    let kind_of = |t: &str| {
        if t == OCI_INDEX || t == DOCKER_MANIFEST_LIST {
            Some(true)
        } else if t == OCI_MANIFEST || t == DOCKER_MANIFEST {
            Some(false)
        } else {
            None
        }
    };
    let own = probe.media_type.as_deref().and_then(kind_of);
    let said = kind_of(declared);
    let shape = if probe.manifests.is_some() {
        Some(true)
    } else if probe.config.is_some() {
        Some(false)
    } else {
        None
    };
    let is_index = match (said, own, shape) {
        (Some(a), Some(b), _) if a != b => {
            return Err(bad(format!(
                "served as {declared} but its mediaType says {}",
                probe.media_type.unwrap_or_default()
            )));
        }
        (Some(a), _, Some(s)) | (_, Some(a), Some(s)) if a != s => {
            return Err(bad(format!(
                "declared an {} but shaped as an {}",
                if a { "index" } else { "image manifest" },
                if s { "index" } else { "image manifest" }
            )));
        }
        (Some(a), _, _) | (_, Some(a), _) | (_, _, Some(a)) => a,
        (None, None, None) => return Err(bad("neither an image manifest nor an index".into())),
    };
    if is_index {
        let index: Index = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
        for d in &index.manifests {
            d.check("index entry")?;
        }
        Ok(Document::Index(index))
    } else {
        let m: Manifest = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
        m.config.check("config")?;
        if m.config.size > MAX_CONFIG {
            return Err(ImageError::TooLarge(format!(
                "image config of {} bytes (the limit is {MAX_CONFIG})",
                m.config.size
            )));
        }
        if m.layers.len() > MAX_LAYERS {
            return Err(ImageError::TooLarge(format!(
                "{} layers (the limit is {MAX_LAYERS})",
                m.layers.len()
            )));
        }
        for l in &m.layers {
            l.check("layer")?;
            layer_compression(&l.media_type)?;
        }
        Ok(Document::Manifest(Box::new(m)))
    }
}

/// The index entry for `platform`: an exact variant match first, else any entry of the
/// platform; attestation manifests (`unknown/unknown`) never match.
pub fn select_platform<'a>(index: &'a Index, platform: &Platform) -> Option<&'a Descriptor> {
    let candidates = index.manifests.iter().filter(|d| {
        d.media_type == OCI_MANIFEST || d.media_type == DOCKER_MANIFEST || d.media_type.is_empty()
    });
    let mut best: Option<&Descriptor> = None;
    for d in candidates {
        let Some(p) = &d.platform else { continue };
        if !platform.matches(p) {
            continue;
        }
        if p.variant == platform.variant {
            return Some(d);
        }
        best.get_or_insert(d);
    }
    best
}

/// The parts of an image config the store checks: the layers' diff ids and the platform.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigHead {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    pub rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// Parses and checks an image config: `rootfs.type` is `layers`, diff ids are digests.
pub fn parse_config(data: &[u8]) -> Result<ConfigHead, ImageError> {
    if data.len() as u64 > MAX_CONFIG {
        return Err(ImageError::TooLarge(format!(
            "image config larger than {MAX_CONFIG} bytes"
        )));
    }
    let head: ConfigHead = serde_json::from_slice(data)
        .map_err(|e| ImageError::InvalidArgument(format!("invalid image config: {e}")))?;
    if head.rootfs.kind != "layers" {
        return Err(ImageError::InvalidArgument(format!(
            "invalid image config: rootfs type {:?}",
            head.rootfs.kind
        )));
    }
    if head.rootfs.diff_ids.len() > MAX_LAYERS {
        return Err(ImageError::TooLarge(format!(
            "{} layers (the limit is {MAX_LAYERS})",
            head.rootfs.diff_ids.len()
        )));
    }
    for d in &head.rootfs.diff_ids {
        digest_hex(d).map_err(|_| {
            ImageError::InvalidArgument(format!("invalid image config: diff id {d:?}"))
        })?;
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_json(media: Option<&str>) -> Vec<u8> {
        let mut v = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": OCI_CONFIG, "digest": format!("sha256:{}", "a".repeat(64)), "size": 10},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": format!("sha256:{}", "b".repeat(64)), "size": 20}],
        });
        if let Some(m) = media {
            v["mediaType"] = m.into();
        }
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn kinds_are_checked_against_what_was_declared() {
        assert!(matches!(
            parse_document(OCI_MANIFEST, &manifest_json(None)),
            Ok(Document::Manifest(_))
        ));
        assert!(matches!(
            parse_document("application/json", &manifest_json(Some(DOCKER_MANIFEST))),
            Ok(Document::Manifest(_))
        ));
        // A manifest served as an index, and the reverse, are refused.
        assert!(parse_document(OCI_INDEX, &manifest_json(None)).is_err());
        assert!(parse_document(OCI_INDEX, &manifest_json(Some(OCI_MANIFEST))).is_err());
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []
        }))
        .unwrap();
        assert!(matches!(
            parse_document(OCI_INDEX, &index),
            Ok(Document::Index(_))
        ));
        assert!(parse_document(OCI_MANIFEST, &index).is_err());
        assert!(parse_document(OCI_MANIFEST, b"{\"schemaVersion\":1}").is_err());
        assert!(parse_document(OCI_MANIFEST, b"not json").is_err());
    }

    #[test]
    fn platforms_are_chosen_like_docker() {
        let d = |arch: &str, variant: Option<&str>, n: char| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", n.to_string().repeat(64)),
            size: 1,
            platform: Some(Platform {
                os: "linux".into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
            artifact_type: None,
            annotations: None,
            urls: None,
        };
        let index = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![
                d("arm", Some("v6"), '1'),
                d("arm", Some("v7"), '2'),
                d("amd64", None, '3'),
                d("arm64", Some("v8"), '4'),
            ],
            annotations: None,
        };
        let pick = |p: &str| {
            select_platform(&index, &Platform::parse(Some(p)).unwrap()).map(|d| d.digest.clone())
        };
        assert_eq!(
            pick("linux/amd64").unwrap(),
            format!("sha256:{}", "3".repeat(64))
        );
        assert_eq!(
            pick("linux/arm/v7").unwrap(),
            format!("sha256:{}", "2".repeat(64))
        );
        assert_eq!(
            pick("linux/arm64").unwrap(),
            format!("sha256:{}", "4".repeat(64))
        );
        assert!(pick("linux/s390x").is_none());
        assert!(Platform::parse(Some("windows/amd64")).is_err());
        assert!(Platform::parse(Some("linux/../x")).is_err());
    }
}
