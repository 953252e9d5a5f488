//! # fuselage-backends
//!
//! Ready-made [`Filesystem`](fuselage_core::Filesystem) implementations for
//! fuselage servers.
//!
//! - [`memfs`]: [`MemFs`], an in-memory filesystem with tmpfs semantics (the
//!   embedded default filesystem of the `fuselage` binary). It serves the
//!   steady-state requests (GETATTR, LOOKUP, READ, WRITE, OPEN, RELEASE)
//!   without allocating, answers reads with borrowed slices of its
//!   page-granular file data, and lets any number of worker threads share it.
//! - [`passthrough`]: [`PassthroughFs`], a host directory (or single file)
//!   served without ever leaving it: every operation is relative to held
//!   O_PATH descriptors or `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`,
//!   large reads are spliced from the host file, and opened files can be
//!   handed to the kernel (FUSE_PASSTHROUGH).
//! - [`overlay`]: [`OverlayFs`], read-only lower host directories under one
//!   writable upper (a host directory or a private tmpfs), in kernel
//!   overlayfs's on-disk format, each layer served by the passthrough code.
//!
//! The protocol itself lives in `fuselage-core`; transports that feed these
//! backends are `fuselage-transport-blocking` and `fuselage-transport-uring`,
//! and the `fuselage` crate ties everything together.

/// Answers `reply` with `result`'s value through `ok`, or its errno.
macro_rules! answer {
    ($reply:expr, $result:expr, |$v:pat_param| $ok:expr) => {
        match $result {
            Ok($v) => $ok,
            Err(e) => $reply.error(e),
        }
    };
}

pub mod memfs;
pub mod overlay;
pub mod passthrough;
pub mod router;
mod setid;
pub mod stock;

pub use memfs::{MemFs, MemFsConfig};
pub use overlay::{OverlayConfig, OverlayFs};
pub use passthrough::{PassthroughConfig, PassthroughFs};
