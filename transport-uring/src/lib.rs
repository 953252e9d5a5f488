//! # fuselage-transport-uring
//!
//! io_uring transports for fuselage, beside (not on top of)
//! `fuselage-transport-blocking`; both take a connection from
//! `fuselage-linux` whose INIT is answered:
//!
//! - **`uring`** — native FUSE-over-io_uring (Linux 6.14+, fuse module
//!   parameter `enable_uring=Y`). INIT is answered through `/dev/fuse`, then
//!   [`native::start`] starts one queue per possible CPU: a thread pinned to
//!   that CPU with an `IORING_SETUP_SQE128` ring whose entries are registered
//!   once and then answered and re-armed with one `COMMIT_AND_FETCH` each.
//!   [`NativeQueues::serve_device`](native::NativeQueues::serve_device)
//!   reads `/dev/fuse` for FORGET, BATCH_FORGET, INTERRUPT and what arrives
//!   before the rings are live, with a READ SQE in a small ring of its own.
//!   See [`native`] for the buffer design and how it keeps replies from
//!   aliasing request data.
//! - **`uring-rw`** — for kernels without native support: READs in flight on
//!   cloned `/dev/fuse` fds, replies by WRITEV SQEs, large file-range replies
//!   by IORING_OP_SPLICE through a pipe. See [`rw`].
//! - [`probe_uring`] and [`probe_native`] say, without a mount, whether each
//!   can work here and why not ([`Unavailable`], printed by the binary as
//!   `(fallback: REASON)`). Choosing between the transports and stepping
//!   down (native → uring-rw → blocking) is the `fuselage` crate's
//!   (`fuselage::transport`).
//!
//! ## Threads and depth
//!
//! Native io_uring has exactly one queue thread per possible CPU (the
//! kernel routes each request to its caller's CPU), so `--threads N` cannot
//! change their number: it sets the ring depth per queue instead
//! (`depth` of [`native::start`], default [`native::DEFAULT_DEPTH`]).
//! uring-rw uses `N` threads (`threads` of [`rw::run`]).
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
//! Companion crates: `fuselage-core` (protocol, dispatch), `fuselage-linux`
//! (mounting, channels, INIT), `fuselage-transport-blocking` (the blocking
//! transport), `fuselage-backends`, `fuselage` (transport choice, the
//! binary).

pub mod native;
pub mod probe;
pub mod region;
pub mod rw;
pub mod sqe;
pub mod sysfs;

pub use native::{NativeQueues, RingReply};
pub use probe::{Unavailable, possible_cpus, probe_native, probe_uring, read_ahead};
pub use rw::RwEnd;
