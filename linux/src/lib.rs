//! The Linux side of a FUSE connection, shared by every fuselage transport.
//!
//! A FUSE server needs the same plumbing whichever loop then serves the
//! requests: get a FUSE fd (mount it, or adopt one), move whole messages over
//! it, clone it per thread, and answer INIT before anything else. This crate
//! is that plumbing and nothing more; it sits between `fuselage-core` (the
//! protocol, which knows no system call) and the transports
//! (`fuselage-transport-blocking`, `fuselage-transport-uring`), which depend
//! on it and never on each other.
//!
//! - [`mount`]: [`Mount::new`](mount::Mount::new) mounts with mount(2) when privileged (also as
//!   root of a user namespace) and through `fusermount3` otherwise, removes the mount even if
//!   the server is killed (auto-unmount), and [`Mount::from_fd_path`](mount::Mount::from_fd_path)
//!   adopts an already-open `/dev/fd/N`.
//! - [`channel`]: [`Channel`] receives exactly one request and sends one
//!   reply per call over `/dev/fuse`, a `SOCK_SEQPACKET` or a `SOCK_STREAM` socket.
//! - [`handshake`](mod@handshake): [`handshake()`](handshake::handshake) reads and answers INIT, the first
//!   exchange on every connection, before a transport starts.
//! - [`panic`](mod@panic): [`guarded`](panic::guarded) serves one request so that a panic in the
//!   backend costs that request (answered `EIO`), not the connection.
//! - [`sys`]: the small system calls the transports share (exact-length pread, non-blocking
//!   fds, pipes and their size, CPU affinity, page size).
//! - [`error`]: [`MountError`] and
//!   [`ChannelError`].
//!
//! ```no_run
//! use fuselage_linux::mount::{Mount, MountOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mount = Mount::new("/mnt/x".as_ref(), &MountOptions::default())?;
//! let channel = mount.channel()?;
//! let mut buf = vec![0u8; 128 * 1024 + 4096];
//! let n = channel.receive(&mut buf)?; // the INIT request
//! # let _ = n; Ok(()) }
//! ```

pub mod bad_input;
pub mod channel;
pub mod error;
pub mod handshake;
pub mod mount;
pub mod panic;
pub mod sys;

pub use channel::{Channel, ChannelKind};
pub use error::{ChannelError, MountError};
pub use handshake::{HandshakeError, handshake};
pub use mount::{Mount, MountFlags, MountMethod, MountOptions};
