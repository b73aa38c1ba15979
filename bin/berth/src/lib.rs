//! The `berth` package: the binaries' shared entry points (the daemon's set-up lives here so
//! that `berthd` and `berth daemon` are the same code).

pub mod daemon;
