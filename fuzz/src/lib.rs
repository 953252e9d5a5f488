//! Shared code of the fuselage-core fuzz targets.
//!
//! - [`parse_harness`]: `Request::parse` / `Request::parse_segments` on
//!   arbitrary bytes, checking that every accepted request is internally
//!   consistent and borrows only from the buffers it was given.
//! - [`dispatch_harness`]: a `Dispatcher` over a filesystem that answers
//!   every method (sometimes with an error, sometimes by dropping the
//!   handle), with a sink that checks every reply against the protocol's
//!   rules.
//!
//! The harnesses are plain functions so that a crashing input can also be
//! replayed from an ordinary test or debugger.

pub mod dispatch_harness;
pub mod parse_harness;

/// A copy of some bytes in 8-byte aligned storage, as transports keep their
/// request buffers. `offset` shifts the start (1 gives a misaligned view).
pub struct Aligned {
    words: Vec<u64>,
    offset: usize,
    len: usize,
}

impl Aligned {
    /// Copies `bytes` to an 8-byte aligned buffer.
    pub fn new(bytes: &[u8]) -> Self {
        Self::with_offset(bytes, 0)
    }

    /// Copies `bytes` to `offset` bytes past an 8-byte boundary.
    pub fn with_offset(bytes: &[u8], offset: usize) -> Self {
        let words = vec![0u64; (bytes.len() + offset).div_ceil(8) + 1];
        let mut a = Aligned {
            words,
            offset,
            len: bytes.len(),
        };
        a.bytes_mut().copy_from_slice(bytes);
        a
    }

    /// A zeroed buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Self {
        Aligned {
            words: vec![0u64; len.div_ceil(8) + 1],
            offset: 0,
            len,
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        let all: &[u8] = zerocopy::IntoBytes::as_bytes(&self.words[..]);
        &all[self.offset..self.offset + self.len]
    }

    /// The bytes, mutably.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let all: &mut [u8] = zerocopy::IntoBytes::as_mut_bytes(&mut self.words[..]);
        &mut all[self.offset..self.offset + self.len]
    }
}

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
