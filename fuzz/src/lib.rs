//! Shared code of the fuselage-core fuzz targets.
//!
//! - [`parse_harness`]: `Request::parse` / `Request::parse_segments` on
//!   arbitrary bytes, checking that every accepted request is internally
//!   consistent and borrows only from the buffers it was given.
//! - [`dispatch_harness`]: a `Dispatcher` over a filesystem that answers
//!   every method (sometimes with an error, sometimes by dropping the
//!   handle), with a sink that checks every reply against the protocol's
//!   rules.
//! - [`backends`]: the same dispatcher with the real backends behind it
//!   (memfs, a router with a memory route, an overlay on scratch
//!   directories), which must answer anything with a well-formed reply and
//!   never panic.
//!
//! Inputs are copied into `fuselage_testkit::AlignedBuf`s (8-byte aligned, as
//! transports keep their request buffers, or deliberately misaligned).
//!
//! The harnesses are plain functions so that a crashing input can also be
//! replayed from an ordinary test or debugger.

pub mod backends;
pub mod dispatch_harness;
pub mod parse_harness;

/// Whether `len` bytes at `ptr` lie inside one of `segments`.
pub fn within(ptr: *const u8, len: usize, segments: &[&[u8]]) -> bool {
    let start = ptr as usize;
    let Some(end) = start.checked_add(len) else {
        return false;
    };
    segments.iter().any(|s| {
        let s_start = s.as_ptr() as usize;
        let s_end = s_start + s.len();
        start >= s_start && end <= s_end
    })
}

/// [`within`] for a reference to a sized value.
pub fn ref_within<T>(r: &T, segments: &[&[u8]]) -> bool {
    within(
        (r as *const T).cast::<u8>(),
        core::mem::size_of::<T>(),
        segments,
    )
}
