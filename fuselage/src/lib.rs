//! # fuselage
//!
//! A FUSE server toolkit built to be the fastest and leanest way to serve a
//! filesystem to a Linux kernel (or to a sandbox kernel such as gVisor). This
//! facade crate re-exports the pieces and holds the `fuselage` binary's
//! logic:
//!
//! - [`core`] (`fuselage-core`): the `no_std`, allocation-free protocol.
//! - [`linux`] (`fuselage-linux`): mounting, the FUSE channel, the INIT
//!   handshake.
//! - [`blocking`] (`fuselage-transport-blocking`): the read/writev transport.
//! - [`uring`] (`fuselage-transport-uring`): the io_uring transports.
//! - [`backends`] (`fuselage-backends`): the in-memory filesystem (and the
//!   host passthrough).
//! - [`registry`]: which backend serves a mount: backends an embedder
//!   registers first, the stock ones (overlay, passthrough, memfs) last.
//! - [`transport`]: choosing a transport after INIT, with automatic fallback
//!   native io_uring → uring-rw → blocking and the reason for each step down.
//!   This is the one place that knows every transport; they know nothing of
//!   each other.
//! - [`sandbox`]: `--sandbox`, the server confining itself once mounted
//!   (seccomp allow-list, capabilities, no_new_privs).
//!
//! Embedding: mount, then serve a backend on the channel:
//!
//! ```no_run
//! use fuselage::blocking::{Session, SessionConfig};
//! use fuselage::linux::{Mount, MountOptions};
//! use fuselage::backends::memfs::{MemFs, MemFsConfig};
//!
//! let mount = Mount::new("/mnt/x".as_ref(), &MountOptions::default()).unwrap();
//! let channel = mount.channel().unwrap();
//! let fs = MemFs::new(MemFsConfig::default());
//! Session::new(channel, fs, SessionConfig::default()).run().unwrap();
//! ```

pub use fuselage_backends as backends;
pub use fuselage_core as core;
pub use fuselage_linux as linux;
pub use fuselage_transport_blocking as blocking;
pub use fuselage_transport_uring as uring;

pub mod cli;
pub mod daemon;
pub mod debug;
pub mod log;
pub mod procfs;
pub mod registry;
pub mod routes;
pub mod sandbox;
pub mod serve;
pub mod serve_overlay;
pub mod service;
pub mod transport;
