//! The network crate's errors, each with a class (as moby's errdefs) that the engine maps to
//! its own error kinds and the API to an HTTP status.

use std::net::IpAddr;

use ipnet::IpNet;

/// How an error is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (a bad subnet, a gateway outside its subnet...): 400.
    InvalidArgument,
    /// The request clashes with what exists (overlapping subnet, port or address in use): 409.
    Conflict,
    /// Something the request names does not exist: 404.
    NotFound,
    /// The host failed us (netlink, nft, sockets, sysctls): 500.
    Internal,
}

/// An error of the network crate.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A malformed or inconsistent request, in Docker's words where Docker has some.
    #[error("{0}")]
    InvalidArgument(String),
    /// A requested subnet overlaps one already in use.
    #[error(
        "invalid pool request: Pool overlaps with other one on this address space ({subnet} overlaps {existing})"
    )]
    SubnetOverlap { subnet: IpNet, existing: IpNet },
    /// No pool has a subnet left that overlaps nothing.
    #[error(
        "could not find an available, non-overlapping IPv{family} address pool among the defaults to assign to the network"
    )]
    PoolsExhausted { family: u8 },
    /// Every address of a subnet (or its ip-range) is taken.
    #[error("no available IPv{family} addresses on this network's address pools ({subnet})")]
    AddressesExhausted { family: u8, subnet: IpNet },
    /// A requested static address is already taken (or is the gateway / a reserved address).
    #[error("Address already in use: {0}")]
    AddressInUse(IpAddr),
    /// A requested static address lies outside every subnet of the network.
    #[error("no configured subnet or ip-range contain the IP address {0}")]
    AddressOutOfRange(IpAddr),
    /// A host port is taken, by us or by another program.
    #[error("Bind for {ip}:{port} failed: port is already allocated")]
    PortAllocated { ip: IpAddr, port: u16 },
    /// No host port of the range is free.
    #[error("no free host port in {start}-{end} for {ip}")]
    PortsExhausted { ip: IpAddr, start: u16, end: u16 },
    /// A link (bridge, veth) that must exist does not.
    #[error("no such network interface: {0}")]
    NoSuchLink(String),
    /// A netlink request failed.
    #[error("{context}: {source}")]
    Netlink {
        context: String,
        source: rtnetlink::Error,
    },
    /// `nft` refused a ruleset or could not be run.
    #[error("nftables: {0}")]
    Nft(String),
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl NetworkError {
    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidArgument(_) | Self::AddressOutOfRange(_) => ErrorKind::InvalidArgument,
            Self::SubnetOverlap { .. }
            | Self::AddressInUse(_)
            | Self::PortAllocated { .. }
            | Self::PoolsExhausted { .. }
            | Self::AddressesExhausted { .. }
            | Self::PortsExhausted { .. } => ErrorKind::Conflict,
            Self::NoSuchLink(_) => ErrorKind::NotFound,
            Self::Netlink { .. } | Self::Nft(_) | Self::Io { .. } => ErrorKind::Internal,
        }
    }

    /// A closure for `map_err` that wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }

    /// A closure for `map_err` that wraps a netlink error with what was being done.
    pub(crate) fn netlink(context: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Self {
        let context = context.into();
        move |source| Self::Netlink { context, source }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }
}

/// The crate's result type.
pub type Result<T, E = NetworkError> = std::result::Result<T, E>;
