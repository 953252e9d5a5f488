//! An 8-byte-aligned byte buffer, the shape the core's parser requires.

use core::ops::{Deref, DerefMut};
use zerocopy::IntoBytes;

/// A byte buffer whose first byte is 8-byte aligned.
///
/// `fuselage-core` views requests in place and refuses misaligned buffers;
/// `Vec<u8>` gives no such guarantee, so tests and the reference server keep
/// messages in one of these (a `Vec<u64>` viewed as bytes).
///
/// ```
/// use fuselage_testkit::AlignedBuf;
/// let buf = AlignedBuf::from_bytes(b"abc");
/// assert_eq!(&buf[..], b"abc");
/// assert_eq!(buf.as_ptr() as usize % 8, 0);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AlignedBuf {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBuf {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        AlignedBuf {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }

    /// A copy of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut buf = AlignedBuf::zeroed(bytes.len());
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

    /// Grows or shrinks to `len` bytes; new bytes are zero.
    pub fn resize(&mut self, len: usize) {
        self.words.resize(len.div_ceil(8), 0);
        // Bytes between the old length and the end of its last word may be
        // stale: clear them so growth always reads as zeros.
        if len > self.len {
            let old = self.len;
            self.len = len;
            self[old..].fill(0);
        } else {
            self.len = len;
        }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.words.as_bytes()[..self.len]
    }

    /// The bytes, mutably.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.words.as_mut_bytes()[..self.len]
    }
}

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
}
