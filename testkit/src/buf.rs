//! Aligned byte buffers: 8-byte aligned for the core's parser, page aligned
//! for `O_DIRECT` I/O, or deliberately misaligned to test that parsers refuse
//! (or cope with) a shifted buffer.

use core::ops::{Deref, DerefMut};
use zerocopy::IntoBytes;

/// The alignment (and length granule) of [`AlignedBuf::page_aligned`], which
/// `O_DIRECT` reads and writes need.
pub const DIRECT_IO_ALIGN: usize = 4096;

/// A byte buffer whose first byte sits at a chosen alignment.
///
/// `fuselage-core` views requests in place and refuses misaligned buffers;
/// `Vec<u8>` gives no such guarantee, so tests and the reference server keep
/// messages in one of these (by default 8-byte aligned). `O_DIRECT` clients
/// take a [page aligned](AlignedBuf::page_aligned) one, and the fuzz
/// harnesses a [misaligned](AlignedBuf::misaligned) one.
///
/// ```
/// use fuselage_testkit::AlignedBuf;
/// let buf = AlignedBuf::from_bytes(b"abc");
/// assert_eq!(&buf[..], b"abc");
/// assert_eq!(buf.as_ptr() as usize % 8, 0);
/// let page = AlignedBuf::page_aligned(100);
/// assert_eq!((page.as_ptr() as usize % 4096, page.len()), (0, 4096));
/// let shifted = AlignedBuf::misaligned(b"abc", 1);
/// assert_eq!(shifted.as_ptr() as usize % 8, 1);
/// ```
pub struct AlignedBuf {
    /// The storage, with room for `align` bytes of slack in front.
    words: Vec<u64>,
    /// The alignment asked for (a power of two, at least 8).
    align: usize,
    /// How many bytes past an `align` boundary the first byte sits.
    offset: usize,
    /// Where the first byte sits in `words`.
    start: usize,
    /// Number of bytes.
    len: usize,
}

impl AlignedBuf {
    fn with_layout(len: usize, align: usize, offset: usize) -> Self {
        debug_assert!(align.is_power_of_two() && align >= 8);
        let slack = if align > 8 { align } else { 0 };
        let words = vec![0u64; (slack + offset + len).div_ceil(8)];
        let addr = words.as_ptr() as usize;
        let start = (align - addr % align) % align + offset;
        AlignedBuf {
            words,
            align,
            offset,
            start,
            len,
        }
    }

    /// `len` zero bytes, 8-byte aligned.
    pub fn zeroed(len: usize) -> Self {
        Self::with_layout(len, 8, 0)
    }

    /// A copy of `bytes`, 8-byte aligned.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut buf = AlignedBuf::zeroed(bytes.len());
        buf.copy_from_slice(bytes);
        buf
    }

    /// At least `len` zero bytes (rounded up to a whole number of
    /// [`DIRECT_IO_ALIGN`] granules, at least one), aligned to
    /// [`DIRECT_IO_ALIGN`], as `O_DIRECT` reads and writes need.
    pub fn page_aligned(len: usize) -> Self {
        let len = len.max(1).next_multiple_of(DIRECT_IO_ALIGN);
        Self::with_layout(len, DIRECT_IO_ALIGN, 0)
    }

    /// A copy of `bytes` whose first byte sits `offset` bytes past an 8-byte
    /// boundary (an `offset` of 1 to 7 gives a misaligned buffer).
    pub fn misaligned(bytes: &[u8], offset: usize) -> Self {
        let mut buf = Self::with_layout(bytes.len(), 8, offset);
        buf.copy_from_slice(bytes);
        buf
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Grows or shrinks to `len` bytes, keeping the alignment; new bytes are
    /// zero.
    pub fn resize(&mut self, len: usize) {
        let mut grown = Self::with_layout(len, self.align, self.offset);
        let keep = len.min(self.len);
        grown[..keep].copy_from_slice(&self[..keep]);
        *self = grown;
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.words.as_bytes()[self.start..self.start + self.len]
    }

    /// The bytes, mutably.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.words.as_mut_bytes()[self.start..self.start + self.len]
    }
}

impl Default for AlignedBuf {
    fn default() -> Self {
        AlignedBuf::zeroed(0)
    }
}

impl Clone for AlignedBuf {
    fn clone(&self) -> Self {
        // A fresh allocation has its own address: lay it out again.
        let mut copy = Self::with_layout(self.len, self.align, self.offset);
        copy.copy_from_slice(self);
        copy
    }
}

impl PartialEq for AlignedBuf {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for AlignedBuf {}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_bytes_mut()
    }
}

impl core::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("bytes", &self.as_bytes())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_resizable() {
        let mut b = AlignedBuf::from_bytes(&[1, 2, 3, 4, 5]);
        assert_eq!(b.as_ptr() as usize % 8, 0);
        assert_eq!(b.len(), 5);
        b.resize(3);
        assert_eq!(&b[..], &[1, 2, 3]);
        b.resize(10);
        assert_eq!(&b[..], &[1, 2, 3, 0, 0, 0, 0, 0, 0, 0]);
        assert!(AlignedBuf::zeroed(0).is_empty());
    }

    #[test]
    fn page_aligned_keeps_its_alignment() {
        let mut b = AlignedBuf::page_aligned(5000);
        assert_eq!(b.len(), 8192);
        assert_eq!(b.as_ptr() as usize % DIRECT_IO_ALIGN, 0);
        b[0] = 9;
        let c = b.clone();
        assert_eq!(c.as_ptr() as usize % DIRECT_IO_ALIGN, 0);
        assert_eq!(c, b);
        b.resize(3 * DIRECT_IO_ALIGN);
        assert_eq!(b.as_ptr() as usize % DIRECT_IO_ALIGN, 0);
        assert_eq!(b[0], 9);
    }

    #[test]
    fn misaligned_by_the_offset() {
        for offset in 0..8 {
            let b = AlignedBuf::misaligned(b"xyz", offset);
            assert_eq!(b.as_ptr() as usize % 8, offset);
            assert_eq!(&b[..], b"xyz");
            assert_eq!(b.clone().as_ptr() as usize % 8, offset);
        }
    }
}
