//! # fuselage-testkit
//!
//! Shared test machinery for fuselage's crates (dev-only, not published).
//!
//! The centre piece is a simulated FUSE kernel: [`channel_pair`] creates a
//! `SOCK_SEQPACKET` unix socket pair that stands in for `/dev/fuse` (one
//! message per send, one per receive), whose kernel end, [`SimKernel`],
//! writes requests byte for byte as Linux 6.18 (protocol 7.45) does and reads
//! replies with the checks the kernel applies. Servers can so be driven
//! without root, without `/dev/fuse` and without mounting anything.
//!
//! Around it:
//!
//! - [`serve`] / [`run`]: a minimal server loop over the server end, for
//!   tests of `fuselage-core` alone (the real transports live in
//!   `fuselage-transport-blocking` and `fuselage-transport-uring`).
//! - [`TestFs`]: a tiny in-memory filesystem whose files the test can
//!   inspect; [`testfs`] also has one for transport tests and one for
//!   benchmarks.
//! - [`ReplyRecorder`]: a reply sink that records messages in memory, to
//!   drive a `Dispatcher` directly; [`Reply`] parses them.
//! - [`encode_request`], [`AlignedBuf`], [`parse_dirents`] and
//!   [`parse_direntplus`]: the wire format from the kernel's side.
//!
//! And for the tests of every crate, also those on a real mount:
//!
//! - [`skip`]: the skip-or-fail policy for missing FUSE (root, `/dev/fuse`,
//!   `enable_uring`) under `FUSELAGE_REQUIRE_FUSE=1`.
//! - [`alloc`]: a counting global allocator, installed with
//!   [`install_counting_alloc!`], for the zero-allocation tests.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use fuselage_testkit::{channel_pair, serve, TestFs};
//! let fs = TestFs::new();
//! let (mut kernel, server_fd) = channel_pair()?;
//! let server = serve(fs.clone(), Default::default(), server_fd);
//! kernel.init().unwrap();
//! let (entry, open) = kernel.create(1, "new.txt", libc::O_WRONLY as u32, 0o644, 0o022).unwrap();
//! assert_eq!(kernel.write(entry.nodeid, open.fh, 0, b"data"), Ok(4));
//! kernel.release(entry.nodeid, open.fh, libc::O_WRONLY as u32).unwrap();
//! assert_eq!(fs.file("new.txt").unwrap(), b"data");
//! drop(kernel); // the server sees EOF and stops
//! server.join().unwrap()?;
//! # Ok(()) }
//! ```

pub mod alloc;
mod buf;
mod channel;
mod dirent;
mod kernel;
mod serve;
mod sink;
pub mod skip;
pub mod testfs;
mod wire;

pub use buf::{AlignedBuf, DIRECT_IO_ALIGN};
pub use dirent::{DirEntry, DirEntryPlus, DirentError, parse_direntplus, parse_dirents};
pub use kernel::{
    DEFAULT_TIMEOUT, KERNEL_MAX_READAHEAD, OFFERED_FLAGS, SimKernel, Xattr, channel_pair,
};
pub use serve::{DEFAULT_BUFFER_SIZE, ServeExit, run, serve, serve_dispatcher};
pub use sink::{ReplyRecorder, SocketSink, memfd_with};
pub use testfs::{TTL, TestFs};
pub use wire::{Reply, ReplyError, encode_request};
