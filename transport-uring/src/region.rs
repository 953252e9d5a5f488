//! One anonymous memory region per queue or thread, allocated at start.
//!
//! All of a transport's buffers (ring-entry headers and payloads, staging,
//! scratch, request buffers) are carved out of one `mmap(2)` region, so
//! serving a request never allocates. The region is not populated up front:
//! a page becomes resident the first time the kernel or we write it, once,
//! and stays. Populating (`MAP_POPULATE`) cost 20 MiB of resident memory and
//! 8 ms at mount for native io_uring's payload buffers (sized for the largest
//! WRITE, mostly never filled), for no measurable gain in steady state (see
//! BENCHMARKS.md, Footprint). The kernel reads and writes parts of it
//! asynchronously (FUSE ring entries, READ SQEs), so the region hands out
//! raw pointers only; the code that owns a part's lifecycle creates slices
//! from them for exactly as long as the kernel leaves that part alone.

use fuselage_linux::sys::page_size;
use std::io;
use std::ptr::NonNull;

/// An anonymous, page-aligned, zero-filled memory region.
#[derive(Debug)]
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain memory owned by this value; access is through
// raw pointers whose users synchronize among themselves (see the modules
// that carve it up).
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` only hands out raw pointers.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `len` bytes (rounded up to a page), zeroed; pages become
    /// resident when first written.
    pub fn new(len: usize) -> io::Result<Region> {
        let len = len.max(1).next_multiple_of(page_size());
        // SAFETY: an anonymous private mapping with no address hint touches
        // no existing memory; the result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Region { ptr, len })
    }

    /// The region's size in bytes (a multiple of the page size).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (never: at least one page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A pointer `offset` bytes into the region.
    ///
    /// # Panics
    /// If `offset + len` exceeds the region (a layout bug).
    pub fn at(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "region access {offset}+{len} out of {}",
            self.len
        );
        // SAFETY: checked above that the offset stays inside the mapping.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// Keeps the mapping alive forever (for when the kernel may still write
    /// into it and nothing can tell when it stops).
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `new` with this length and is
        // unmapped exactly once; the owner guarantees the kernel no longer
        // uses it (otherwise it calls `leak`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_zeroed_pages() {
        let r = Region::new(10).unwrap();
        assert_eq!(r.len(), page_size());
        let p = r.at(0, r.len());
        assert_eq!(p as usize % page_size(), 0);
        // SAFETY: the region is ours and nothing else uses it.
        let s = unsafe { std::slice::from_raw_parts(p, r.len()) };
        assert!(s.iter().all(|&b| b == 0));
    }

    #[test]
    #[should_panic]
    fn out_of_bounds_panics() {
        let r = Region::new(4096).unwrap();
        let _ = r.at(4090, 10);
    }
}
