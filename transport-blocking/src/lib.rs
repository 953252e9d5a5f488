//! Blocking FUSE transport for fuselage: mounting, the `/dev/fuse` (or socket) channel, and
//! zero-copy replies with splice.
//!
//! This crate is the plain-syscall side of fuselage. It knows how to get a FUSE fd and how to
//! move whole messages over it, but nothing about what the messages mean: parsing requests
//! and building replies is `fuselage-core`'s job, and `fuselage-transport-uring` is the
//! io_uring alternative to this crate's read/writev loop.
//!
//! - [`mount`]: [`Mount::new`](mount::Mount::new) mounts with mount(2) when privileged (also as
//!   root of a user namespace) and through `fusermount3` otherwise, removes the mount even if
//!   the server is killed (auto-unmount), and [`Mount::from_fd_path`](mount::Mount::from_fd_path)
//!   adopts an already-open `/dev/fd/N`.
//! - [`channel`]: [`Channel`] receives exactly one request and sends one
//!   reply per call over `/dev/fuse`, a `SOCK_SEQPACKET` or a `SOCK_STREAM` socket.
//! - [`splice`]: [`SplicePipe`](splice::SplicePipe) sends a reply whose data is a file range
//!   without copying it through user space.
//! - [`session`]: [`Session`] serves a channel to a `Filesystem` with
//!   blocking worker threads, allocation-free per request.
//! - [`error`]: [`MountError`] and
//!   [`ChannelError`].
//!
//! ```no_run
//! use fuselage_transport_blocking::mount::{Mount, MountOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mount = Mount::new("/mnt/x".as_ref(), &MountOptions::default())?;
//! let channel = mount.channel()?;
//! let mut buf = vec![0u8; 128 * 1024 + 4096];
//! let n = channel.receive(&mut buf)?; // the INIT request
//! # let _ = n; Ok(()) }
//! ```

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod channel;
pub mod error;
pub mod mount;
pub mod session;
pub mod splice;

pub use channel::{Channel, ChannelKind};
pub use error::{ChannelError, MountError};
pub use mount::{Mount, MountFlags, MountMethod, MountOptions};
pub use session::{ServeInfo, Session, SessionConfig, SessionEnd, SessionError};
