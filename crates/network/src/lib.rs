//! Berth's bridge networking: everything between "this container is on these networks with
//! these published ports" and packets flowing.
//!
//! - [`ipam`]: subnets for networks and addresses for containers (pure, serializable state).
//! - [`netns`]: running code inside a network namespace (a thread that `setns`es).
//! - [`link`]: bridges, veth pairs and container interfaces over rtnetlink; host routes;
//!   the sysctls a bridge needs.
//! - [`nft`]: the `inet berth` nftables table (NAT, published ports, isolation), built as a
//!   pure function of the networks and port mappings and applied in one atomic `nft -j`
//!   transaction.
//! - [`ports`]: host port reservation (the sockets that keep a published port ours).
//! - [`dns`]: the embedded DNS server on 127.0.0.11 inside a container's namespace.
//!
//! The crate sits below the engine and knows nothing of containers beyond addresses, names and
//! namespace paths; the engine owns the state and calls in.

pub mod dns;
pub mod error;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod nft;
pub mod ports;

pub use error::{ErrorKind, NetworkError, Result};
