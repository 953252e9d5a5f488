//! Page storage for file data, taken from the kernel with `mmap` and given
//! back with `munmap` and `madvise(MADV_DONTNEED)`.
//!
//! The general-purpose heap keeps freed memory for reuse: glibc raises its
//! mmap threshold after the first large free, so 128 KiB extents end up in
//! the heap, and a deleted 1 GiB file stayed resident for as long as the
//! server ran. A [`PageRun`] owns its own anonymous mapping instead, so
//! memory freed by unlink, truncate or punch hole returns to the system at
//! once, as on tmpfs.
//!
//! A run reserves address space for the room it may grow into (up to the
//! end of its chunk) but only the pages written are resident: the kernel
//! backs untouched pages of an anonymous mapping with nothing (they read as
//! zeros). Growing within the reservation is therefore free (no syscall, no
//! copy); only a run that needs more than it reserved is moved to a new
//! mapping. Overwriting stored bytes touches no syscall at all.

use fuselage_core::Errno;
use std::ptr::NonNull;

/// Page size the runs are measured in (the memfs page, which is the
/// kernel's on every architecture fuselage runs on).
const PAGE: usize = super::file::PAGE as usize;

/// A run of bytes in its own anonymous private mapping: `len` bytes in use
/// out of `cap` reserved, both multiples of [`PAGE`].
///
/// The invariant that makes growing free: every byte in `len..cap` is zero
/// (never touched, or released with `MADV_DONTNEED`, after which a private
/// anonymous page reads as zeros).
///
/// ```ignore
/// let mut run = PageRun::default();
/// run.reserve(128 * 1024)?; // maps 128 KiB, nothing resident
/// run.set_len(8192);
/// run[..5].copy_from_slice(b"hello"); // one page resident
/// run.truncate(4096); // the second page goes back to the system
/// ```
pub(crate) struct PageRun {
    /// Start of the mapping (dangling when `cap` is 0).
    ptr: NonNull<u8>,
    /// Bytes in use.
    len: usize,
    /// Bytes mapped.
    cap: usize,
}

// SAFETY: a `PageRun` owns its mapping exclusively (like a `Box<[u8]>`);
// nothing else refers to those addresses, so moving it to or sharing it
// with another thread is as safe as for a vector of bytes.
unsafe impl Send for PageRun {}
// SAFETY: shared access only reads through `&[u8]` (see `Deref`).
unsafe impl Sync for PageRun {}

impl Default for PageRun {
    /// An empty run with no mapping.
    fn default() -> Self {
        PageRun {
            ptr: NonNull::dangling(),
            len: 0,
            cap: 0,
        }
    }
}

impl std::fmt::Debug for PageRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageRun")
            .field("len", &self.len)
            .field("cap", &self.cap)
            .finish()
    }
}

/// Maps `len` (a non-zero multiple of [`PAGE`]) bytes of zeros, or fails
/// with `ENOMEM` when the kernel refuses (out of memory, or of mappings:
/// see `vm.max_map_count`).
fn map(len: usize) -> Result<NonNull<u8>, Errno> {
    debug_assert!(len > 0 && len.is_multiple_of(PAGE));
    #[cfg(test)]
    {
        MAPS.with(|n| n.set(n.get() + 1));
        if MAP_LIMIT.with(|l| l.get()).is_some_and(|l| maps_made() > l) {
            return Err(Errno::ENOMEM);
        }
    }
    // SAFETY: an anonymous private mapping at an address the kernel
    // chooses aliases no existing memory; the arguments are valid.
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
        return Err(Errno::ENOMEM);
    }
    NonNull::new(p.cast()).ok_or(Errno::ENOMEM)
}

#[cfg(test)]
thread_local! {
    /// Mappings made by this thread, for tests that check a path makes none.
    static MAPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// When set, mappings past this count (of [`MAPS`]) fail as if the
    /// kernel refused them.
    static MAP_LIMIT: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Makes this thread's mappings fail with `ENOMEM` once `n` more have been
/// made (`None`: never), as when the kernel runs out (tests only).
#[cfg(test)]
pub(crate) fn fail_maps_after(n: Option<u64>) {
    MAP_LIMIT.with(|l| l.set(n.map(|n| maps_made() + n)));
}

/// How many mappings this thread has made (tests only).
#[cfg(test)]
pub(crate) fn maps_made() -> u64 {
    MAPS.with(|n| n.get())
}

impl PageRun {
    /// Bytes in use.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes reserved (the run can grow to this without moving).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    /// Makes room for at least `cap` bytes (a multiple of [`PAGE`]): a
    /// run that reserved less moves to a new mapping of `cap` bytes. The
    /// only step that can fail (`ENOMEM`), and then the run is unchanged.
    pub(crate) fn reserve(&mut self, cap: usize) -> Result<(), Errno> {
        debug_assert!(cap.is_multiple_of(PAGE));
        if cap <= self.cap {
            return Ok(());
        }
        let mut moved = PageRun {
            ptr: map(cap)?,
            len: self.len,
            cap,
        };
        moved.copy_from_slice(self);
        *self = moved;
        Ok(())
    }

    /// Sets the length to `len` (a multiple of [`PAGE`], within the
    /// reserved room). New bytes read as zeros; pages dropped off the end go
    /// back to the system at once.
    ///
    /// # Panics
    /// If `len` is past the reserved room.
    pub(crate) fn set_len(&mut self, len: usize) {
        assert!(len <= self.cap, "run of {} bytes set to {len}", self.cap);
        debug_assert!(len.is_multiple_of(PAGE));
        if len < self.len {
            // SAFETY: `len..self.len` lies inside this run's own mapping
            // and no reference into it outlives this `&mut self`;
            // MADV_DONTNEED on a private anonymous mapping frees the pages,
            // which then read as zeros (keeping the invariant).
            let r = unsafe {
                libc::madvise(
                    self.ptr.as_ptr().add(len).cast(),
                    self.len - len,
                    libc::MADV_DONTNEED,
                )
            };
            debug_assert_eq!(r, 0, "madvise: {}", std::io::Error::last_os_error());
        }
        self.len = len;
    }

    /// Makes the pages under `range` (bytes, within the length) resident
    /// and writable in one `madvise(MADV_POPULATE_WRITE)`, before a large
    /// write fills them: one system call instead of a page fault per page
    /// (a quarter of a memfs server's time when writing a big file went to
    /// faults). Best effort: on a kernel without it (before 5.14) or out of
    /// memory, the write faults the pages in as before.
    pub(crate) fn prefault(&mut self, range: std::ops::Range<usize>) {
        let start = range.start - range.start % PAGE;
        let end = range.end.next_multiple_of(PAGE).min(self.len);
        if start >= end {
            return;
        }
        // SAFETY: `start..end` lies inside this run's own mapping (below
        // `len`); populating changes no byte a reference could see.
        unsafe {
            libc::madvise(
                self.ptr.as_ptr().add(start).cast(),
                end - start,
                libc::MADV_POPULATE_WRITE,
            )
        };
    }

    /// Drops the bytes past `len` (a multiple of [`PAGE`], at most the
    /// length), giving their pages back to the system at once.
    pub(crate) fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.set_len(len);
        }
    }

    /// Splits the run at byte `at` (a multiple of [`PAGE`], at most the
    /// length): `self` keeps `..at` and the mapping up to there, the result
    /// takes the rest of the bytes and of the mapping. No bytes move and no
    /// syscall is made.
    pub(crate) fn split_off(&mut self, at: usize) -> PageRun {
        assert!(at <= self.len && at.is_multiple_of(PAGE));
        if at == 0 {
            return std::mem::take(self);
        }
        let tail = PageRun {
            // SAFETY: `at <= len <= cap`, so the pointer is inside the
            // mapping or one past its end.
            ptr: unsafe { self.ptr.add(at) },
            len: self.len - at,
            cap: self.cap - at,
        };
        self.len = at;
        self.cap = at;
        if tail.cap == 0 {
            return PageRun::default();
        }
        tail
    }
}

impl std::ops::Deref for PageRun {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of the mapping are mapped readable
        // and initialized (anonymous memory reads as zeros), owned by this
        // run, and only mutated through `&mut self`. For an empty run the
        // dangling pointer is valid for a zero-length slice.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for PageRun {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PageRun {
    fn drop(&mut self) {
        if self.cap == 0 {
            return;
        }
        // SAFETY: `ptr..ptr + cap` is this run's own mapping (from `map`,
        // or a part of one given to it by `split_off`), and no slice into it
        // outlives the run.
        let r = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.cap) };
        if r != 0 {
            // Unmapping part of a larger mapping splits it, which fails
            // at `vm.max_map_count`; the memory still goes back, only the
            // address space stays reserved.
            // SAFETY: as above; MADV_DONTNEED never splits a mapping.
            unsafe { libc::madvise(self.ptr.as_ptr().cast(), self.cap, libc::MADV_DONTNEED) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: usize = 128 * 1024;

    /// Resident bytes of the page holding `p`, via mincore.
    fn resident(p: *const u8) -> bool {
        let mut vec = [0u8; 1];
        let page = (p as usize) & !(PAGE - 1);
        // SAFETY: `page` is the start of a page of a live mapping and `vec`
        // has room for the one page asked about.
        let r = unsafe { libc::mincore(page as *mut _, PAGE, vec.as_mut_ptr()) };
        assert_eq!(r, 0);
        vec[0] & 1 == 1
    }

    /// `run` with room for `cap` bytes and `len` in use.
    fn sized(run: &mut PageRun, len: usize, cap: usize) {
        run.reserve(cap).unwrap();
        run.set_len(len);
    }

    #[test]
    fn prefault_makes_exactly_the_written_pages_resident() {
        let mut run = PageRun::default();
        sized(&mut run, 8 * PAGE, CHUNK);
        let p = run.as_ptr();
        // SAFETY: every offset below is inside the run's 8 pages.
        let at = |i: usize| unsafe { p.add(i * PAGE) };
        assert!((0..8).all(|i| !resident(at(i))), "nothing resident yet");
        // Bytes 1..3 pages + 1 byte: pages 1, 2 and 3 (partly covered).
        run.prefault(PAGE + 1..3 * PAGE + 1);
        let now: Vec<bool> = (0..8).map(|i| resident(at(i))).collect();
        assert_eq!(
            now,
            [false, true, true, true, false, false, false, false],
            "resident pages"
        );
        assert!(run.iter().all(|&b| b == 0), "populated pages read as zeros");
        // Past the length: nothing (and no fault).
        run.prefault(7 * PAGE..16 * PAGE);
        assert!(resident(at(7)));
        run.prefault(8 * PAGE..9 * PAGE);
    }

    #[test]
    fn grows_in_place_and_reads_zeros() {
        let mut run = PageRun::default();
        assert_eq!(run.len(), 0);
        sized(&mut run, PAGE, CHUNK);
        assert_eq!(run.capacity(), CHUNK);
        run.fill(7);
        let at = run.as_ptr();
        sized(&mut run, 3 * PAGE, CHUNK);
        assert_eq!(run.as_ptr(), at, "grew without moving");
        assert!(run[..PAGE].iter().all(|&b| b == 7));
        assert!(run[PAGE..].iter().all(|&b| b == 0));
    }

    #[test]
    fn shrinking_frees_pages_and_regrowth_reads_zeros() {
        let mut run = PageRun::default();
        sized(&mut run, 4 * PAGE, CHUNK);
        run.fill(1);
        let third = run[2 * PAGE..].as_ptr();
        assert!(resident(third));
        run.truncate(2 * PAGE);
        assert!(!resident(third), "dropped page still resident");
        run.set_len(4 * PAGE);
        assert!(run[2 * PAGE..].iter().all(|&b| b == 0));
        assert!(run[..2 * PAGE].iter().all(|&b| b == 1));
    }

    #[test]
    fn moves_when_reserve_is_too_small() {
        let mut run = PageRun::default();
        sized(&mut run, PAGE, PAGE);
        run[0] = 9;
        sized(&mut run, 2 * PAGE, CHUNK);
        assert_eq!(run.capacity(), CHUNK);
        assert_eq!(run[0], 9);
        assert_eq!(run[PAGE], 0);
    }

    #[test]
    fn failed_reserve_changes_nothing() {
        let mut run = PageRun::default();
        sized(&mut run, PAGE, PAGE);
        run[0] = 5;
        // More address space than any machine has.
        assert_eq!(run.reserve(1 << 62), Err(Errno::ENOMEM));
        assert_eq!((run.len(), run.capacity(), run[0]), (PAGE, PAGE, 5));
    }

    #[test]
    fn split_shares_nothing() {
        let mut run = PageRun::default();
        sized(&mut run, 4 * PAGE, CHUNK);
        run[..PAGE].fill(1);
        run[PAGE..].fill(2);
        let mut tail = run.split_off(PAGE);
        assert_eq!((run.len(), run.capacity()), (PAGE, PAGE));
        assert_eq!((tail.len(), tail.capacity()), (3 * PAGE, CHUNK - PAGE));
        assert!(tail.iter().all(|&b| b == 2));
        // Growing the head past its mapping moves it, leaving the tail.
        sized(&mut run, 2 * PAGE, CHUNK);
        assert_eq!(run[PAGE], 0);
        assert!(tail.iter().all(|&b| b == 2));
        tail.truncate(PAGE);
        drop(run);
        assert!(tail.iter().all(|&b| b == 2));
        let whole = tail.split_off(0);
        assert_eq!((tail.len(), whole.len()), (0, PAGE));
    }
}
