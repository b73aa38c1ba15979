//! Images: references, the content store, image configs, layer apply and the overlay
//! snapshotter.
//!
//! - [`reference`]: Docker's reference grammar and normalization (`busybox` =
//!   `docker.io/library/busybox:latest`).
//! - [`content`]: content-addressed blobs under `content/blobs/sha256/<hex>`, digest and size
//!   checked while streaming, written atomically.
//! - [`apply`]: hardened tar extraction into a snapshot directory (whiteouts, opaque dirs, no
//!   escapes).
//! - [`snapshot`]: one directory per unpacked layer (`snapshots/<chain-id>/fs`), and overlay
//!   mounts for containers (a fresh upper dir on top of the image's layers).
//! - [`manifest`]: OCI and Docker manifests, indexes, descriptors, platform selection.
//! - [`layer`]: one layer stream (plain, gzip or zstd) stored as a blob and unpacked into its
//!   snapshot in a single pass, digests checked on the way.
//! - [`tarwalk`]: directory trees written as tar streams through fds (cp, export, and layers
//!   from a container's upper directory for commit and build).
//! - [`transfer`]: `docker save`/`load` archives (Docker's format and OCI layouts).
//! - [`store`]: image records and tags in the daemon's redb database; import, list, resolve,
//!   tag, remove.

pub mod apply;
pub mod buildcache;
pub mod content;
pub mod error;
pub mod layer;
pub mod manifest;
pub mod reference;
pub mod snapshot;
pub mod store;
pub mod tarwalk;
pub mod transfer;

pub use error::ImageError;
pub use reference::Reference;
pub use store::{
    CommitOptions, Image, ImageStore, ImageUser, ImportOptions, LayerInfo, LayerRef, RemovedImage,
};
