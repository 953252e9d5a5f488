//! Blocking FUSE transport for fuselage: worker threads that read/writev on the channel, and
//! zero-copy replies with splice.
//!
//! This crate is the plain-syscall loop of fuselage. Getting a FUSE fd (mounting, adopting
//! `/dev/fd/N`) and moving whole messages over it is `fuselage-linux`'s job, parsing requests
//! and building replies is `fuselage-core`'s, and `fuselage-transport-uring` is the io_uring
//! alternative to this crate's read/writev loop (neither transport depends on the other).
//!
//! - [`splice`]: [`SplicePipe`](splice::SplicePipe) sends a reply whose data is a file range
//!   without copying it through user space.
//! - [`session`]: [`Session`] serves a channel to a `Filesystem` with
//!   blocking worker threads, allocation-free per request.
//!
//! ```no_run
//! use fuselage_linux::mount::{Mount, MountOptions};
//! use fuselage_transport_blocking::{Session, SessionConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # fn fs() -> impl fuselage_core::Filesystem + Send + Sync + 'static { struct Nothing; impl fuselage_core::Filesystem for Nothing {} Nothing }
//! let mount = Mount::new("/mnt/x".as_ref(), &MountOptions::default())?;
//! Session::new(mount.channel()?, fs(), SessionConfig::default()).run()?;
//! # Ok(()) }
//! ```

pub mod session;
pub mod splice;

pub use session::{ServeInfo, Session, SessionConfig, SessionEnd, SessionError};
