//! # fuselage-backends
//!
//! Ready-made [`Filesystem`](fuselage_core::Filesystem) implementations for
//! fuselage servers.
//!
//! - [`memfs`]: [`MemFs`], an in-memory filesystem with tmpfs semantics (the
//!   embedded default filesystem of the `fuselage` binary). It serves the
//!   steady-state requests (GETATTR, LOOKUP, READ, WRITE, OPEN, RELEASE)
//!   without allocating, answers reads with borrowed slices of its chunked
//!   file data, and lets any number of worker threads share it.
//!
//! The protocol itself lives in `fuselage-core`; transports that feed these
//! backends are `fuselage-transport-blocking` and `fuselage-transport-uring`,
//! and the `fuselage` crate ties everything together.
#![warn(missing_docs)]

pub mod memfs;
pub mod passthrough;

pub use memfs::{MemFs, MemFsConfig};
pub use passthrough::{PassthroughConfig, PassthroughFs};
