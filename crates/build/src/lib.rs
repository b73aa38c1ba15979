//! Berth's Dockerfile front end: everything between the bytes of a Dockerfile (and its
//! `.dockerignore`) and a typed, checked plan of stages, with Docker's exact rules. The
//! executor that runs the stages comes later and uses this crate's types.
//!
//! - [`parse`]: lexing into raw instructions with their lines: parser directives, comments,
//!   continuations, exec vs shell form, flags, heredocs.
//! - [`ast`]: typed instructions and stages ([`ast::Dockerfile::parse`]), per-instruction
//!   flag and argument rules, `RUN --mount` specs, `HEALTHCHECK` durations, `EXPOSE` ports,
//!   signals.
//! - [`expand`]: Docker's shell-word variable expansion and the `ARG`/`ENV` scopes (global
//!   args, per-stage args, `--build-arg`, proxy args, platform args).
//! - [`graph`]: stages as a DAG, `--target`, the stages a build needs, build order and
//!   parallel groups.
//! - [`ignore`]: `.dockerignore` with Docker's pattern rules.
//! - [`error`]: the one error type, naming file, line and instruction.
//!
//! A typical use:
//!
//! ```
//! use std::collections::BTreeMap;
//! use berth_build::{BuildGraph, Dockerfile};
//! use berth_build::expand::{Platform, platform_args};
//!
//! let df = Dockerfile::parse("Dockerfile", b"FROM alpine AS a\nFROM scratch\nCOPY --from=a / /\n")?;
//! let host = Platform::host();
//! let globals = df.global_scope(&BTreeMap::new(), &platform_args(&host, &host))?;
//! let graph = BuildGraph::new(&df, &globals, None)?;
//! assert_eq!(graph.order(), &[0, 1]);
//! # Ok::<(), berth_build::Error>(())
//! ```

#![forbid(unsafe_code)]

pub mod ast;
pub mod error;
pub mod exec;
pub mod expand;
pub mod graph;
pub mod ignore;
pub mod parse;

pub use ast::{Command, Dockerfile, Instruction, Stage};
pub use error::{Error, ErrorKind};
pub use graph::BuildGraph;
pub use ignore::Ignore;
