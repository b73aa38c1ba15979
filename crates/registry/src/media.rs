//! Media types of manifests, indexes, configs and layers (OCI image spec 1.1 and Docker's
//! schema 2): the image crate's definitions, which both ends of the protocol speak.

pub use berth_image::manifest::{
    DOCKER_CONFIG, DOCKER_LAYER_FOREIGN, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
    MANIFEST_TYPES, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_MANIFEST,
    is_index_type as is_index, is_manifest_type as is_manifest,
};
