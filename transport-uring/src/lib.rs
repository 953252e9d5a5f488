//! # fuselage-transport-uring
//!
//! io_uring transports for fuselage, and the automatic choice between them
//! and `fuselage-transport-blocking`:
//!
//! - **`uring`** — native FUSE-over-io_uring (Linux 6.14+, fuse module
//!   parameter `enable_uring=Y`). INIT is answered through `/dev/fuse`, then
//!   one queue per possible CPU: a thread pinned to that CPU with an
//!   `IORING_SETUP_SQE128` ring whose entries are registered once and then
//!   answered and re-armed with one `COMMIT_AND_FETCH` each. A blocking
//!   reader stays on `/dev/fuse` for FORGET, BATCH_FORGET, INTERRUPT and
//!   what arrives before the rings are live. See [`native`] for the buffer
//!   design and how it keeps replies from aliasing request data.
//! - **`uring-rw`** — for kernels without native support: READs in flight on
//!   cloned `/dev/fuse` fds, replies by WRITEV SQEs, large file-range replies
//!   by IORING_OP_SPLICE through a pipe. See [`rw`].
//! - **[`serve()`]** picks one (`auto`: native → uring-rw → blocking), after
//!   INIT, on the same connection, and says why it stepped down
//!   ([`Unavailable`], printed by the binary as `(fallback: REASON)`).
//!   [`probe_uring`] and [`probe_native`] answer the same questions without
//!   a mount.
//!
//! ## Threads and depth
//!
//! Native io_uring has exactly one queue thread per possible CPU (the
//! kernel routes each request to its caller's CPU), so `--threads N` cannot
//! change their number: it sets the ring depth per queue instead
//! ([`UringConfig::depth`], default [`native::DEFAULT_DEPTH`]). uring-rw and
//! blocking use `N` threads ([`UringConfig::threads`]).
//!
//! ## Costs of the native buffer design
//!
//! Every queue maps one region at start: `depth` header slots, `depth`
//! payload buffers, one staging and one scratch buffer, each of
//! `max(8192, max_write, max_pages * 4096)` bytes (1 MiB with the defaults:
//! about `(depth + 2)` MiB per CPU). Requests allocate nothing. Replies to
//! requests without payload (READ, GETATTR, READDIR, ...) are written
//! straight into the entry's payload buffer; a file range is `pread` into it
//! (a ring entry cannot be a splice target). Replies to requests with a
//! payload (LOOKUP, CREATE, WRITE, GETXATTR, ...) sent while the filesystem
//! still borrows that payload are staged and copied once more after the
//! method returns; all but GETXATTR and IOCTL replies are a few hundred
//! bytes. READDIR entries are packed in the scratch buffer and copied once.
//! Registered (fixed) buffers do not apply: `URING_CMD` takes the entry's
//! user addresses, and `/dev/fuse` refuses READ_FIXED/WRITE_FIXED (it needs
//! user-backed iterators), so only the device fd is registered (fixed file).
//!
//! ## Test-only switch
//!
//! `FUSELAGE_TEST_DENY_URING=1` ([`probe::DENY_ENV`]) makes the probes act as
//! if io_uring were refused with `EPERM`, to test the fallback to blocking.
//!
//! Companion crates: `fuselage-core` (protocol, dispatch),
//! `fuselage-transport-blocking` (mounting, channels, blocking sessions),
//! `fuselage-backends`, `fuselage` (the binary).

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod native;
pub mod probe;
pub mod region;
pub mod rw;
pub mod serve;
pub mod sqe;
pub mod sysfs;

pub use native::RingReply;
pub use probe::{Unavailable, possible_cpus, probe_native, probe_uring};
pub use serve::{Choice, ServeError, ServeInfo, Transport, UringConfig, preflight, serve};
