//! The OCI distribution protocol, both ends.
//!
//! - [`media`]: the manifest, index and layer media types both ends speak.
//! - [`client`]: pull and push against any distribution registry (auth, mirrors, insecure
//!   registries, ranged blob reads for resumable pulls, cross-repository mounts).
//! - [`server`]: Berth's own registry (`berth registry serve`), filesystem storage.

pub mod client;
pub mod media;
pub mod server;
