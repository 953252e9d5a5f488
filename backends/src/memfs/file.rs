//! The contents of a regular file: sparse, in 4 KiB pages, like tmpfs.
//!
//! A file of `size` bytes is a sequence of [`PAGE`]-sized pages, each in one
//! of the three states a tmpfs page can be in:
//!
//! - a *hole*: not allocated; reads as zeros and takes no space;
//! - *data*: allocated and stored;
//! - *unwritten*: allocated by fallocate but never written. It reads as
//!   zeros, counts in `st_blocks` and against the capacity, but takes no
//!   memory, and SEEK_DATA / SEEK_HOLE see it as a hole (as tmpfs does for
//!   fallocated pages). The first write into it makes it data.
//!
//! Data pages live in *extents*: runs of consecutive data pages, each in
//! its own anonymous mapping ([`PageRun`]), so freed pages go back to the
//! system at once. An extent never crosses a [`CHUNK`] boundary (so it is at most
//! 128 KiB), and a write that joins two extents of a chunk merges them, so a
//! densely written file is made of whole-chunk extents. Unwritten pages are
//! kept as a map of page ranges. The invariants:
//!
//! - extents are non-empty, whole pages, disjoint and each inside one chunk;
//!   unwritten ranges are non-empty, disjoint, coalesced and disjoint from
//!   the extents;
//! - bytes at or past `size` read as zeros: no page wholly past the end of
//!   file is data (only fallocate `KEEP_SIZE` allocates there, and it
//!   allocates unwritten pages), and the stored tail of the page holding the
//!   end of file is zero;
//! - the allocation, `(data pages + unwritten pages) * PAGE`, is what
//!   `st_blocks` shows and what is charged against the filesystem's
//!   [`Space`] (before any page is added).
//!
//! Reads do not copy: [`FileData::read`] lists the stored slices and runs of
//! a static zero region ([`ZEROS`], in `.bss`) that make up the requested
//! range. Only a range fragmented into more pieces than a reply may carry (a
//! page-sized checkerboard of data and holes) has its tail copied into a
//! buffer.

use super::pages::PageRun;
use fuselage_core::Errno;
use fuselage_core::reply::MAX_REPLY_PARTS;
use std::cell::UnsafeCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes per page: the granularity of allocation, holes and `st_blocks`,
/// like a tmpfs page.
pub const PAGE: u64 = 4096;

/// Bytes per chunk: 128 KiB, the largest extent.
///
/// A read reply may carry at most 32 data slices. A read of up to 1 MiB
/// (the largest the kernel sends with `max_pages` = 256) at any alignment
/// touches at most 9 chunks of 128 KiB; with one extent per chunk that is at
/// most 9 stored slices and 10 zero runs between and around them: 19
/// slices, so reads of files that are not fragmented within chunks never
/// copy.
pub const CHUNK: usize = 128 * 1024;
/// Writes into one chunk of at least this many bytes populate their pages
/// first ([`PageRun::prefault`]); smaller ones take the faults.
const PREFAULT_MIN: usize = 64 * 1024;
const CHUNK_U64: u64 = CHUNK as u64;

/// Pages per chunk.
const CHUNK_PAGES: u64 = CHUNK_U64 / PAGE;

/// Largest file size, as tmpfs: `MAX_LFS_FILESIZE` (`i64::MAX`).
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// Most data slices one READ answer carries (within the core's
/// [`MAX_REPLY_PARTS`]).
pub const MAX_READ_PARTS: usize = 32;

/// The largest READ the kernel sends (`max_pages` 256 of 4 KiB).
const MAX_KERNEL_READ: usize = 1 << 20;

// A read of `MAX_KERNEL_READ` bytes at any offset touches at most
// `MAX_KERNEL_READ / CHUNK + 1` chunks: with one extent each, a slice each
// plus a zero run before, between and after them must fit.
const _: () = assert!(MAX_READ_PARTS <= MAX_REPLY_PARTS);
const _: () = assert!(2 * (MAX_KERNEL_READ / CHUNK + 1) < MAX_READ_PARTS);
const _: () = assert!(CHUNK_U64.is_multiple_of(PAGE));

const ZEROS_LEN: usize = MAX_KERNEL_READ;

/// The bytes every hole reads as (1 MiB, one run per maximal read): a
/// zero region that is never written.
///
/// It lives in `.bss`, not in read-only data: an immutable `static` array
/// would be stored in the binary (1 MiB of zeros in the file), while a
/// writable one is only reserved at load time. The kernel backs the untouched
/// `.bss` pages with its shared zero page, so the region costs neither
/// resident memory nor file size, and a read of a hole copies from one
/// physical page that stays in cache. The cell is what makes the static
/// writable (and so `.bss`); nothing ever writes through it.
struct ZeroRegion(UnsafeCell<[u8; ZEROS_LEN]>);

// SAFETY: no code writes through the cell (the only access is
// `zeros`, which makes shared references), so sharing it between threads
// cannot race.
unsafe impl Sync for ZeroRegion {}

static ZEROS: ZeroRegion = ZeroRegion(UnsafeCell::new([0; ZEROS_LEN]));

/// `n` (at most [`ZEROS_LEN`]) zero bytes from [`ZEROS`].
fn zeros(n: usize) -> &'static [u8] {
    // SAFETY: the cell is never written (see `ZeroRegion`), so a shared
    // reference to its contents is valid for the whole program.
    let all: &'static [u8; ZEROS_LEN] = unsafe { &*ZEROS.0.get() };
    &all[..n]
}

/// Space accounting shared by all files of one filesystem.
#[derive(Debug)]
pub struct Space {
    capacity: u64,
    used: AtomicU64,
}

impl Space {
    /// A budget of `capacity` bytes, none used.
    pub fn new(capacity: u64) -> Self {
        Space {
            capacity,
            used: AtomicU64::new(0),
        }
    }

    /// The budget in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes charged so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Charges `bytes`, or fails with `ENOSPC` when that would exceed the
    /// budget (charging nothing).
    pub fn reserve(&self, bytes: u64) -> Result<(), Errno> {
        if bytes == 0 {
            return Ok(());
        }
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.capacity)
            })
            .map(drop)
            .map_err(|_| Errno::ENOSPC)
    }

    /// Gives back `bytes` charged earlier.
    pub fn release(&self, bytes: u64) {
        if bytes != 0 {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
        }
    }
}

/// The slices of one read answer, borrowed from a [`FileData`], from
/// [`ZEROS`] and, for a fragmented range, from a spill buffer.
#[derive(Debug)]
pub struct ReadParts<'a> {
    parts: [&'a [u8]; MAX_READ_PARTS],
    count: usize,
    /// Where the bytes go once all slots but the last are taken.
    spill: &'a mut Vec<u8>,
    spilling: bool,
}

impl<'a> ReadParts<'a> {
    fn new(spill: &'a mut Vec<u8>) -> Self {
        spill.clear();
        ReadParts {
            parts: [&[]; MAX_READ_PARTS],
            count: 0,
            spill,
            spilling: false,
        }
    }

    /// Adds stored bytes.
    fn push(&mut self, part: &'a [u8]) {
        if part.is_empty() {
            return;
        }
        if !self.spilling && self.count + 1 < MAX_READ_PARTS {
            self.parts[self.count] = part;
            self.count += 1;
        } else {
            self.spilling = true;
            self.spill.extend_from_slice(part);
        }
    }

    /// Adds `len` zero bytes as runs of [`ZEROS`].
    fn push_zeros(&mut self, mut len: u64) {
        while len > 0 {
            let n = len.min(ZEROS_LEN as u64) as usize;
            if !self.spilling && self.count + 1 < MAX_READ_PARTS {
                self.parts[self.count] = zeros(n);
                self.count += 1;
            } else {
                self.spilling = true;
                self.spill.resize(self.spill.len() + n, 0);
            }
            len -= n as u64;
        }
    }

    /// The finished answer: the spilled bytes, if any, become the last
    /// slice.
    fn finish(self) -> Answer<'a> {
        let ReadParts {
            mut parts,
            mut count,
            spill,
            spilling,
        } = self;
        if spilling {
            let spill: &'a Vec<u8> = spill;
            parts[count] = spill.as_slice();
            count += 1;
        }
        Answer { parts, count }
    }
}

/// The slices of one read answer, in file order.
#[derive(Debug)]
pub struct Answer<'a> {
    parts: [&'a [u8]; MAX_READ_PARTS],
    count: usize,
}

impl<'a> Answer<'a> {
    /// The slices, in file order.
    pub fn as_slices(&self) -> &[&'a [u8]] {
        &self.parts[..self.count]
    }
}

/// One segment of a file's byte range as [`FileData::for_each_segment`]
/// walks it: stored bytes or a hole (unwritten pages included) of some
/// length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Stored bytes.
    Data(&'a [u8]),
    /// This many zero bytes that are not stored.
    Hole(u64),
}

/// A regular file's size and sparse contents.
#[derive(Debug, Default)]
pub struct FileData {
    size: u64,
    /// Data pages: first page number -> the bytes of the run.
    extents: BTreeMap<u64, PageRun>,
    /// Unwritten pages: first page number -> page number past the run.
    unwritten: BTreeMap<u64, u64>,
    data_pages: u64,
    unwritten_pages: u64,
}

/// The first page of the chunk holding page `page`.
fn chunk_start(page: u64) -> u64 {
    page - page % CHUNK_PAGES
}

/// Pages in an extent.
fn pages_of(extent: &[u8]) -> u64 {
    extent.len() as u64 / PAGE
}

/// Byte length of `pages` pages (at most a chunk's worth).
fn bytes(pages: u64) -> usize {
    (pages * PAGE) as usize
}

impl FileData {
    /// An empty file.
    pub fn new() -> Self {
        FileData::default()
    }

    /// The file size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes allocated (data and unwritten pages), as charged.
    pub fn allocated(&self) -> u64 {
        (self.data_pages + self.unwritten_pages) * PAGE
    }

    /// `st_blocks`: allocated 512-byte units.
    pub fn blocks(&self) -> u64 {
        self.allocated() / 512
    }

    /// The extent holding page `page`, or else the first one after it:
    /// `(first page, page past it)`.
    fn extent_from(&self, page: u64) -> Option<(u64, u64)> {
        self.extents
            .range(chunk_start(page)..)
            .map(|(&s, v)| (s, s + pages_of(v)))
            .find(|&(_, e)| e > page)
    }

    /// The extents overlapping bytes `offset..end`, in order, with their
    /// first byte.
    fn extents_over(&self, offset: u64, end: u64) -> impl Iterator<Item = (u64, &[u8])> {
        self.extents
            .range(chunk_start(offset / PAGE)..)
            .map(|(&s, v)| (s * PAGE, &v[..]))
            .skip_while(move |&(at, v)| at + v.len() as u64 <= offset)
            .take_while(move |&(at, _)| at < end)
    }

    /// The slices holding up to `len` bytes from `offset`, stopping at the
    /// end of file. Never allocates unless the range has more pieces (runs
    /// of data and of holes) than a reply may carry; then the tail is copied
    /// into `spill`.
    pub fn read<'a>(&'a self, offset: u64, len: u32, spill: &'a mut Vec<u8>) -> Answer<'a> {
        let mut out = ReadParts::new(spill);
        let end = offset.saturating_add(u64::from(len)).min(self.size);
        if offset >= end {
            return out.finish();
        }
        let mut pos = offset;
        for (at, extent) in self.extents_over(offset, end) {
            if at > pos {
                out.push_zeros(at - pos);
                pos = at;
            }
            let to = (at + extent.len() as u64).min(end);
            out.push(&extent[(pos - at) as usize..(to - at) as usize]);
            pos = to;
        }
        out.push_zeros(end - pos);
        out.finish()
    }

    /// Calls `f` with the segments (stored bytes, holes) of up to `len`
    /// bytes from `offset`, clamped to the end of file, in order; stops at
    /// the first `Err` and returns it.
    pub fn for_each_segment<E>(
        &self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(u64, Segment<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return Ok(());
        }
        let mut pos = offset;
        for (at, extent) in self.extents_over(offset, end) {
            if at > pos {
                f(pos, Segment::Hole(at - pos))?;
                pos = at;
            }
            let to = (at + extent.len() as u64).min(end);
            f(
                pos,
                Segment::Data(&extent[(pos - at) as usize..(to - at) as usize]),
            )?;
            pos = to;
        }
        if end > pos {
            f(pos, Segment::Hole(end - pos))?;
        }
        Ok(())
    }

    /// Data pages among pages `a..b`.
    fn data_in(&self, a: u64, b: u64) -> u64 {
        self.extents
            .range(chunk_start(a)..b)
            .map(|(&s, v)| {
                let e = s + pages_of(v);
                e.min(b).saturating_sub(s.max(a))
            })
            .sum()
    }

    /// Unwritten pages among pages `a..b`.
    fn unwritten_in(&self, a: u64, b: u64) -> u64 {
        let before = self
            .unwritten
            .range(..a)
            .next_back()
            .map_or(0, |(_, &e)| e.min(b).saturating_sub(a));
        let inside: u64 = self
            .unwritten
            .range(a..b)
            .map(|(&s, &e)| e.min(b) - s)
            .sum();
        before + inside
    }

    /// Pages among `a..b` that are holes.
    fn holes_in(&self, a: u64, b: u64) -> u64 {
        (b - a) - self.data_in(a, b) - self.unwritten_in(a, b)
    }

    /// Makes pages `a..b` no longer unwritten; returns how many were.
    fn remove_unwritten(&mut self, a: u64, b: u64) -> u64 {
        let mut removed = 0;
        if let Some((&s, &e)) = self.unwritten.range(..a).next_back()
            && e > a
        {
            self.unwritten.insert(s, a);
            if e > b {
                self.unwritten.insert(b, e);
            }
            removed += e.min(b) - a;
        }
        while let Some((&s, &e)) = self.unwritten.range(a..b).next() {
            self.unwritten.remove(&s);
            if e > b {
                self.unwritten.insert(b, e);
            }
            removed += e.min(b) - s;
        }
        self.unwritten_pages -= removed;
        removed
    }

    /// Makes pages `a..b`, none of them data, unwritten.
    fn add_unwritten(&mut self, a: u64, b: u64) {
        if a >= b {
            return;
        }
        self.remove_unwritten(a, b);
        let (mut start, mut end) = (a, b);
        if let Some((&s, &e)) = self.unwritten.range(..a).next_back()
            && e == a
        {
            start = s;
        }
        if let Some(e) = self.unwritten.remove(&b) {
            end = e;
        }
        self.unwritten.insert(start, end);
        self.unwritten_pages += b - a;
    }

    /// Makes every page of `a..b` that is not data unwritten.
    fn allocate_pages(&mut self, a: u64, b: u64) {
        let mut pos = a;
        while pos < b {
            match self.extent_from(pos) {
                Some((s, e)) if s < b => {
                    self.add_unwritten(pos, s.max(pos));
                    pos = e;
                }
                _ => {
                    self.add_unwritten(pos, b);
                    break;
                }
            }
        }
    }

    /// Frees the data pages among `a..b`, splitting extents; returns how
    /// many there were.
    fn remove_data(&mut self, a: u64, b: u64) -> u64 {
        let mut freed = 0;
        let mut cursor = chunk_start(a);
        while cursor < b {
            let Some((&s, v)) = self.extents.range(cursor..b).next() else {
                break;
            };
            let e = s + pages_of(v);
            cursor = e;
            if e <= a {
                continue;
            }
            freed += e.min(b) - s.max(a);
            match (s < a, e > b) {
                (false, false) => {
                    self.extents.remove(&s);
                }
                (true, false) => {
                    let v = self.extents.get_mut(&s).expect("extent just found");
                    v.truncate(bytes(a - s));
                }
                (false, true) => {
                    // The head's pages (and mapping) are unmapped when it
                    // drops here.
                    let mut v = self.extents.remove(&s).expect("extent just found");
                    let tail = v.split_off(bytes(b - s));
                    self.extents.insert(b, tail);
                }
                (true, true) => {
                    let v = self.extents.get_mut(&s).expect("extent just found");
                    let tail = v.split_off(bytes(b - s));
                    v.truncate(bytes(a - s));
                    self.extents.insert(b, tail);
                }
            }
        }
        self.data_pages -= freed;
        freed
    }

    /// Makes pages `a..b` (inside one chunk) data, in one extent, and
    /// returns that extent's first page. New pages read as zeros; the
    /// caller has charged the space for the ones that were holes. Fails
    /// with `ENOMEM`, changing nothing, when the kernel gives no memory for
    /// the extent.
    fn make_data(&mut self, a: u64, b: u64) -> Result<u64, Errno> {
        let chunk = chunk_start(a);
        debug_assert!(a < b && b <= chunk + CHUNK_PAGES);
        // The extent holding page `a` or ending right before it.
        let base = self
            .extents
            .range(chunk..=a)
            .next_back()
            .map(|(&s, v)| (s, s + pages_of(v)))
            .filter(|&(_, e)| e >= a);
        if let Some((s, e)) = base
            && e >= b
        {
            return Ok(s); // Already stored.
        }
        let start = base.map_or(a, |(s, _)| s);
        let max_len = bytes(chunk + CHUNK_PAGES - start);
        // Extents of this chunk starting after `start`, up to page `b`
        // (adjacent ones included): they join the new run.
        let followers = (start + 1)..(b + 1).min(chunk + CHUNK_PAGES);
        let next_follower = |extents: &BTreeMap<u64, PageRun>| {
            if followers.is_empty() {
                None
            } else {
                extents.range(followers.clone()).next().map(|(&s, _)| s)
            }
        };
        // Room for the whole run up to the end of the chunk first: the only
        // step that can fail, taken before anything changes. (An empty run
        // at `start` is in no follower range and is grown below.)
        match self.extents.get_mut(&start) {
            Some(v) => v.reserve(max_len)?,
            None => {
                let mut v = PageRun::default();
                v.reserve(max_len)?;
                self.extents.insert(start, v);
            }
        }
        let mut merged = base.map_or(0, |(s, e)| e - s);
        let new_len = if next_follower(&self.extents).is_none() {
            // No extent to merge: grow the base or the new extent.
            let v = self.extents.get_mut(&start).expect("reserved above");
            grow(v, bytes(b - start));
            b - start
        } else {
            let mut v = self.extents.remove(&start).expect("reserved above");
            while let Some(s) = next_follower(&self.extents) {
                let next = self.extents.remove(&s).expect("extent just found");
                merged += pages_of(&next);
                let at = bytes(s - start);
                grow(&mut v, at + next.len());
                v[at..].copy_from_slice(&next);
            }
            if v.len() < bytes(b - start) {
                grow(&mut v, bytes(b - start));
            }
            let len = pages_of(&v);
            self.extents.insert(start, v);
            len
        };
        self.remove_unwritten(a, b);
        self.data_pages += new_len - merged;
        Ok(start)
    }

    /// Writes zeros over the stored bytes of `offset..end`.
    fn zero_bytes(&mut self, offset: u64, end: u64) {
        if offset >= end {
            return;
        }
        let first = chunk_start(offset / PAGE);
        for (&s, v) in self.extents.range_mut(first..end.div_ceil(PAGE)) {
            let at = s * PAGE;
            let from = offset.saturating_sub(at).min(v.len() as u64) as usize;
            let to = (end - at).min(v.len() as u64) as usize;
            if from < to {
                v[from..to].fill(0);
            }
        }
    }

    /// Writes `data` at `offset`, extending the file if needed. Allocates
    /// (and charges `space`) only for pages that are holes; fails with
    /// `EFBIG` past [`MAX_FILE_SIZE`] and `ENOSPC` when the budget is
    /// exhausted, writing nothing. Fails with `ENOMEM` when the kernel gives
    /// no memory for a new extent; the chunks written before that stay
    /// written (the size covers them) and the rest is not charged.
    pub fn write(&mut self, space: &Space, offset: u64, data: &[u8]) -> Result<(), Errno> {
        if data.is_empty() {
            return Ok(());
        }
        let end = checked_end(offset, data.len() as u64)?;
        space.reserve(self.holes_in(offset / PAGE, end.div_ceil(PAGE)) * PAGE)?;
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let chunk_end = (pos / CHUNK_U64 + 1) * CHUNK_U64;
            let n = (rest.len() as u64).min(chunk_end - pos) as usize;
            let start = match self.make_data(pos / PAGE, (pos + n as u64).div_ceil(PAGE)) {
                Ok(start) => start,
                Err(e) => {
                    space.release(self.holes_in(offset / PAGE, end.div_ceil(PAGE)) * PAGE);
                    self.size = self.size.max(pos);
                    return Err(e);
                }
            };
            let extent = self.extents.get_mut(&start).expect("make_data stored it");
            let at = (pos - start * PAGE) as usize;
            if n >= PREFAULT_MIN {
                extent.prefault(at..at + n);
            }
            extent[at..at + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            pos += n as u64;
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// Makes the file `new_size` bytes long. Like tmpfs, a size not above
    /// the current one frees every page past it (allocations past the end
    /// of file included) and zeroes the rest of the page it ends in;
    /// growing leaves a hole.
    pub fn set_size(&mut self, space: &Space, new_size: u64) -> Result<(), Errno> {
        if new_size > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        if new_size <= self.size {
            let keep = new_size.div_ceil(PAGE);
            let freed = self.remove_data(keep, u64::MAX) + self.remove_unwritten(keep, u64::MAX);
            space.release(freed * PAGE);
            self.zero_bytes(new_size, keep * PAGE);
        }
        self.size = new_size;
        Ok(())
    }

    /// fallocate mode 0 / `KEEP_SIZE`: allocates the pages of the range
    /// (those that are holes become unwritten); extends the size unless
    /// `keep_size`.
    pub fn allocate(
        &mut self,
        space: &Space,
        offset: u64,
        len: u64,
        keep_size: bool,
    ) -> Result<(), Errno> {
        let end = checked_end(offset, len)?;
        let (a, b) = (offset / PAGE, end.div_ceil(PAGE));
        space.reserve(self.holes_in(a, b) * PAGE)?;
        // tmpfs zeroes the pages an earlier fallocate left unwritten, which
        // makes them data (no new space: they are charged already).
        let earlier: Vec<(u64, u64)> = self
            .unwritten
            .range(..a)
            .next_back()
            .into_iter()
            .chain(self.unwritten.range(a..b))
            .map(|(&s, &e)| (s.max(a), e.min(b)))
            .filter(|&(s, e)| s < e)
            .collect();
        for (s, e) in earlier {
            let mut page = s;
            while page < e {
                let to = e.min(chunk_start(page) + CHUNK_PAGES);
                if let Err(err) = self.make_data(page, to) {
                    // No hole of the range is allocated yet.
                    space.release(self.holes_in(a, b) * PAGE);
                    return Err(err);
                }
                page = to;
            }
        }
        self.allocate_pages(a, b);
        if !keep_size {
            self.size = self.size.max(end);
        }
        Ok(())
    }

    /// fallocate `ZERO_RANGE`: the range reads as zeros and stays
    /// allocated: its whole pages become unwritten, the stored bytes of the
    /// pages it covers in part are zeroed, and its holes are allocated.
    pub fn zero_range(
        &mut self,
        space: &Space,
        offset: u64,
        len: u64,
        keep_size: bool,
    ) -> Result<(), Errno> {
        let end = checked_end(offset, len)?;
        let (a, b) = (offset / PAGE, end.div_ceil(PAGE));
        space.reserve(self.holes_in(a, b) * PAGE)?;
        let (whole_a, whole_b) = (offset.div_ceil(PAGE), end / PAGE);
        if whole_a < whole_b {
            self.remove_data(whole_a, whole_b);
        }
        self.zero_bytes(offset, end);
        self.allocate_pages(a, b);
        if !keep_size {
            self.size = self.size.max(end);
        }
        Ok(())
    }

    /// fallocate `PUNCH_HOLE`: the range reads as zeros. As on tmpfs, the
    /// pages wholly inside it are freed (data and unwritten alike) and the
    /// pages it covers in part are zeroed. The size does not change.
    pub fn punch_hole(&mut self, space: &Space, offset: u64, len: u64) {
        let end = offset.saturating_add(len);
        if end <= offset {
            return;
        }
        let (whole_a, whole_b) = (offset.div_ceil(PAGE), end / PAGE);
        if whole_a < whole_b {
            let freed =
                self.remove_data(whole_a, whole_b) + self.remove_unwritten(whole_a, whole_b);
            space.release(freed * PAGE);
            self.zero_bytes(offset, whole_a * PAGE);
            self.zero_bytes(whole_b * PAGE, end);
        } else {
            self.zero_bytes(offset, end);
        }
    }

    /// SEEK_DATA: the first byte of a data page at or after `offset` (below
    /// the size), or `None` (ENXIO). Unwritten pages are holes.
    pub fn seek_data(&self, offset: u64) -> Option<u64> {
        if offset >= self.size {
            return None;
        }
        let (s, _) = self.extent_from(offset / PAGE)?;
        let at = (s * PAGE).max(offset);
        (at < self.size).then_some(at)
    }

    /// SEEK_HOLE: the first byte at or after `offset` that is not in a data
    /// page (the end of file counts as a hole), or `None` (ENXIO) at or past
    /// the end of file.
    pub fn seek_hole(&self, offset: u64) -> Option<u64> {
        if offset >= self.size {
            return None;
        }
        let mut page = offset / PAGE;
        // Runs of data may continue across chunk boundaries.
        while let Some((s, e)) = self.extent_from(page) {
            if s > page {
                break;
            }
            page = e;
        }
        Some((page * PAGE).max(offset).min(self.size))
    }

    /// Frees all contents (the inode is going away).
    pub fn clear(&mut self, space: &Space) {
        space.release(self.allocated());
        *self = FileData::new();
    }
}

/// `offset + len`, or `EFBIG` past [`MAX_FILE_SIZE`] (`EINVAL` for an
/// empty range).
fn checked_end(offset: u64, len: u64) -> Result<u64, Errno> {
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    offset
        .checked_add(len)
        .filter(|&end| end <= MAX_FILE_SIZE)
        .ok_or(Errno::EFBIG)
}

/// Lengthens `extent` with zeros to `len` bytes (within the room
/// `make_data` reserved for it).
fn grow(extent: &mut PageRun, len: usize) {
    if len > extent.len() {
        extent.set_len(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(f: &FileData, offset: u64, len: u32) -> Vec<u8> {
        let mut spill = Vec::new();
        f.read(offset, len, &mut spill).as_slices().concat()
    }

    /// Checks the invariants of the representation.
    fn check(f: &FileData, space: &Space) {
        let mut data = 0;
        let mut prev_end = 0;
        for (&s, v) in &f.extents {
            assert!(
                !v.is_empty() && (v.len() as u64).is_multiple_of(PAGE),
                "extent at {s}"
            );
            let e = s + pages_of(v);
            assert!(s >= prev_end, "extents overlap at {s}");
            assert!(
                e <= chunk_start(s) + CHUNK_PAGES,
                "extent {s} crosses a chunk"
            );
            assert!(
                (e - 1) * PAGE < f.size,
                "data page {} past the end of file",
                e - 1
            );
            prev_end = e;
            data += e - s;
        }
        let mut unwritten = 0;
        let mut prev_end = None;
        for (&s, &e) in &f.unwritten {
            assert!(s < e);
            assert!(prev_end.is_none_or(|p| p < s), "unwritten not coalesced");
            assert_eq!(f.data_in(s, e), 0, "unwritten {s}..{e} overlaps data");
            prev_end = Some(e);
            unwritten += e - s;
        }
        assert_eq!((f.data_pages, f.unwritten_pages), (data, unwritten));
        assert_eq!(space.used(), f.allocated());
        let tail = collect(f, f.size, u32::MAX);
        assert!(tail.is_empty());
        let page_end = f.size.div_ceil(PAGE) * PAGE;
        if let Some((&s, v)) = f.extents.range(..=f.size / PAGE).next_back() {
            let at = s * PAGE;
            let stored_end = at + v.len() as u64;
            if stored_end > f.size && at <= f.size {
                assert!(
                    v[(f.size - at) as usize..(page_end.min(stored_end) - at) as usize]
                        .iter()
                        .all(|&b| b == 0),
                    "bytes past the end of file are not zero"
                );
            }
        }
    }

    #[test]
    fn write_read_across_chunks_and_holes() {
        let space = Space::new(1 << 30);
        let mut f = FileData::new();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 + 1).collect();
        f.write(&space, 100_000, &data).unwrap();
        assert_eq!(f.size(), 400_000);
        let all = collect(&f, 0, 1 << 20);
        assert_eq!(all.len(), 400_000);
        assert!(all[..100_000].iter().all(|&b| b == 0));
        assert_eq!(&all[100_000..], &data[..]);
        // Only the pages written are stored: 98304..401408.
        assert_eq!(f.allocated(), 401_408 - 98_304);
        assert_eq!(f.seek_data(0), Some(98_304));
        assert_eq!(f.seek_hole(100_000), Some(400_000));
        check(&f, &space);
    }

    #[test]
    fn overwrites_and_reads_map_nothing() {
        let space = Space::new(1 << 30);
        let mut f = FileData::new();
        f.write(&space, 0, &vec![1; 4 * CHUNK]).unwrap();
        // One mapping per chunk, each made once as the extent started.
        let before = crate::memfs::pages::maps_made();
        for i in 0..64u64 {
            f.write(&space, i * 8192 % (4 * CHUNK_U64), &[2; 8192])
                .unwrap();
            assert_eq!(collect(&f, i * 4096, 4096).len(), 4096);
        }
        assert_eq!(crate::memfs::pages::maps_made(), before);
        // Appending within the last chunk grows in place: no mapping.
        f.set_size(&space, 4 * CHUNK_U64 - 2 * PAGE).unwrap();
        f.write(&space, 4 * CHUNK_U64 - 2 * PAGE, &[3; 8192])
            .unwrap();
        assert_eq!(crate::memfs::pages::maps_made(), before);
        check(&f, &space);
    }

    #[test]
    fn out_of_mappings_is_enomem_and_keeps_accounts() {
        use crate::memfs::pages::fail_maps_after;
        let space = Space::new(1 << 30);
        let mut f = FileData::new();
        f.write(&space, 0, &[1; 8192]).unwrap();
        // Two more chunks can be mapped, the third cannot.
        fail_maps_after(Some(2));
        let data = vec![2u8; 4 * CHUNK];
        assert_eq!(f.write(&space, CHUNK_U64, &data), Err(Errno::ENOMEM));
        // The chunks written stay, the size covers them, the rest is not
        // charged.
        assert_eq!(f.size(), 3 * CHUNK_U64);
        assert_eq!(collect(&f, CHUNK_U64, 4096), vec![2; 4096]);
        check(&f, &space);
        // Overwrites and growth inside a mapped chunk still work.
        f.write(&space, 0, &[3; 3 * CHUNK]).unwrap();
        check(&f, &space);
        // fallocate turning unwritten pages into data fails the same way.
        f.allocate(&space, 4 * CHUNK_U64, CHUNK_U64, false).unwrap();
        let used = space.used();
        assert_eq!(
            f.allocate(&space, 4 * CHUNK_U64, 2 * CHUNK_U64, false),
            Err(Errno::ENOMEM)
        );
        assert_eq!(space.used(), used);
        check(&f, &space);
        fail_maps_after(None);
        f.write(&space, 10 * CHUNK_U64, b"x").unwrap();
        check(&f, &space);
    }

    #[test]
    fn write_merges_extents_of_a_chunk() {
        let space = Space::new(1 << 30);
        let mut f = FileData::new();
        f.write(&space, 0, b"a").unwrap();
        f.write(&space, 3 * PAGE, b"b").unwrap();
        f.write(&space, 10 * PAGE, b"c").unwrap();
        assert_eq!(f.extents.len(), 3);
        assert_eq!(f.allocated(), 3 * PAGE);
        // A write over the gaps joins the three.
        f.write(&space, 1, &vec![7; (10 * PAGE) as usize]).unwrap();
        assert_eq!(f.extents.len(), 1);
        assert_eq!(f.allocated(), 11 * PAGE);
        let all = collect(&f, 0, 1 << 20);
        assert_eq!(all[0], b'a');
        assert!(all[1..=(10 * PAGE) as usize].iter().all(|&b| b == 7));
        check(&f, &space);
        // Across a chunk boundary: one more extent on each side.
        f.write(&space, CHUNK_U64 - 1, b"xy").unwrap();
        assert_eq!(f.extents.len(), 3);
        assert_eq!(
            f.seek_hole(CHUNK_U64 - PAGE),
            Some(CHUNK_U64 + 1),
            "the end of file"
        );
        check(&f, &space);
    }

    #[test]
    fn fragmented_read_spills() {
        let space = Space::new(1 << 30);
        let mut f = FileData::new();
        // Every other page stored: 128 extents in 1 MiB.
        for i in (0..256u64).step_by(2) {
            f.write(&space, i * PAGE, &[i as u8 + 1; PAGE as usize])
                .unwrap();
        }
        f.set_size(&space, 256 * PAGE).unwrap();
        let mut spill = Vec::new();
        for off in [0u64, 1, 4095, 3 * PAGE + 7] {
            let r = f.read(off, 1 << 20, &mut spill);
            assert!(r.as_slices().len() <= MAX_READ_PARTS);
            let bytes = r.as_slices().concat();
            assert_eq!(bytes.len() as u64, (256 * PAGE - off).min(1 << 20));
            for (i, b) in bytes.iter().enumerate() {
                let page = (off + i as u64) / PAGE;
                let expect = if page.is_multiple_of(2) {
                    page as u8 + 1
                } else {
                    0
                };
                assert_eq!(*b, expect, "at {}", off + i as u64);
            }
        }
        // A dense file never spills.
        let mut g = FileData::new();
        g.write(&space, 0, &vec![1; 4 << 20]).unwrap();
        for off in [0u64, 1, CHUNK_U64 - 1] {
            let r = g.read(off, 1 << 20, &mut spill);
            assert!(r.as_slices().len() <= 10);
            assert!(spill.is_empty());
        }
    }

    #[test]
    fn truncate_frees_and_extend_reads_zeros() {
        let space = Space::new(1 << 30);
        let mut f = FileData::new();
        f.write(&space, 0, &[7u8; 300_000]).unwrap();
        f.set_size(&space, 5000).unwrap();
        assert_eq!(f.allocated(), 8192);
        assert_eq!(space.used(), 8192);
        f.set_size(&space, 200_000).unwrap();
        let all = collect(&f, 0, 300_000);
        assert_eq!(all.len(), 200_000);
        assert!(all[..5000].iter().all(|&b| b == 7));
        assert!(all[5000..].iter().all(|&b| b == 0));
        // tmpfs: the page holding the old end is still data.
        assert_eq!(f.seek_hole(0), Some(8192));
        check(&f, &space);
        f.clear(&space);
        assert_eq!(space.used(), 0);
    }

    #[test]
    fn punch_is_page_granular() {
        let space = Space::new(1 << 30);
        let mut f = FileData::new();
        f.write(&space, 0, &vec![1u8; 4 * CHUNK]).unwrap();
        // A whole chunk.
        f.punch_hole(&space, CHUNK_U64, CHUNK_U64);
        assert_eq!(f.allocated(), 3 * CHUNK_U64);
        // One page in the middle of a chunk: freed.
        f.punch_hole(&space, 2 * CHUNK_U64 + 8192, 4096);
        assert_eq!(f.allocated(), 3 * CHUNK_U64 - PAGE);
        // Unaligned: only the whole pages inside are freed, the rest zeroed.
        f.punch_hole(&space, 3 * CHUNK_U64 + 100, 3 * PAGE);
        assert_eq!(f.allocated(), 3 * CHUNK_U64 - 3 * PAGE);
        // Inside one page: zeroed, not freed.
        f.punch_hole(&space, 10, 10);
        assert_eq!(f.allocated(), 3 * CHUNK_U64 - 3 * PAGE);
        check(&f, &space);
        assert_eq!(
            collect(&f, 8, 14),
            [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]
        );
        assert_eq!(f.seek_hole(0), Some(CHUNK_U64));
        assert_eq!(f.seek_data(CHUNK_U64), Some(2 * CHUNK_U64));
        assert_eq!(f.seek_hole(2 * CHUNK_U64), Some(2 * CHUNK_U64 + 8192));
        assert_eq!(
            f.seek_data(2 * CHUNK_U64 + 8192),
            Some(2 * CHUNK_U64 + 12288)
        );
        assert_eq!(f.seek_hole(3 * CHUNK_U64), Some(3 * CHUNK_U64 + PAGE));
        assert_eq!(
            f.seek_data(3 * CHUNK_U64 + PAGE),
            Some(3 * CHUNK_U64 + 3 * PAGE)
        );
        let bytes = collect(&f, 3 * CHUNK_U64 + 98, 4);
        assert_eq!(bytes, [1, 1, 0, 0]);
        let bytes = collect(&f, 3 * CHUNK_U64 + 3 * PAGE + 98, 4);
        assert_eq!(bytes, [0, 0, 1, 1]);
        assert_eq!(f.seek_data(4 * CHUNK_U64), None);
        // Punching everything (and far past the end) frees all.
        f.punch_hole(&space, 0, u64::MAX);
        assert_eq!(f.allocated(), 0);
        assert_eq!(f.size(), 4 * CHUNK_U64);
        check(&f, &space);
    }

    #[test]
    fn fallocate_makes_unwritten_pages() {
        let space = Space::new(1 << 30);
        let mut f = FileData::new();
        f.allocate(&space, 0, 100_000, false).unwrap();
        assert_eq!((f.size(), f.allocated()), (100_000, 25 * PAGE));
        // Unwritten pages are holes to SEEK_DATA, as on tmpfs.
        assert_eq!(f.seek_data(0), None);
        assert_eq!(f.seek_hole(0), Some(0));
        assert!(collect(&f, 0, 1 << 20).iter().all(|&b| b == 0));
        check(&f, &space);
        // Writing one byte makes its page data and charges nothing more.
        f.write(&space, 50_000, b"x").unwrap();
        assert_eq!(f.allocated(), 25 * PAGE);
        assert_eq!(f.seek_data(0), Some(49_152));
        assert_eq!(f.seek_hole(49_152), Some(53_248));
        check(&f, &space);
        // Allocating again, and past the end with KEEP_SIZE: as on tmpfs,
        // the pages the first fallocate left unwritten become data (zeros).
        f.allocate(&space, 0, 200_000, true).unwrap();
        assert_eq!((f.size(), f.allocated()), (100_000, 49 * PAGE));
        assert_eq!(f.seek_data(0), Some(0));
        assert_eq!(f.seek_hole(0), Some(100_000));
        assert_eq!(f.unwritten.iter().collect::<Vec<_>>(), [(&25, &49)]);
        assert!(collect(&f, 0, 1 << 20).iter().all(|&b| b == 0 || b == b'x'));
        check(&f, &space);
        // Truncating to the same size drops what lies past the end.
        f.set_size(&space, 100_000).unwrap();
        assert_eq!(f.allocated(), 25 * PAGE);
        check(&f, &space);
        // Punching unwritten pages frees them.
        f.punch_hole(&space, 0, 8192);
        assert_eq!(f.allocated(), 23 * PAGE);
        check(&f, &space);
        // ENOSPC changes nothing.
        let small = Space::new(PAGE);
        let mut g = FileData::new();
        assert_eq!(g.allocate(&small, 0, 8192, false), Err(Errno::ENOSPC));
        assert_eq!((g.size(), g.allocated()), (0, 0));
    }

    #[test]
    fn zero_range_keeps_allocation() {
        let space = Space::new(1 << 30);
        let mut f = FileData::new();
        f.write(&space, 0, &vec![5u8; 40_000]).unwrap();
        f.zero_range(&space, 1000, 20_000, false).unwrap();
        assert_eq!(f.allocated(), 10 * PAGE);
        let all = collect(&f, 0, 1 << 20);
        assert!(all[..1000].iter().all(|&b| b == 5));
        assert!(all[1000..21_000].iter().all(|&b| b == 0));
        assert!(all[21_000..].iter().all(|&b| b == 5));
        // Pages 1..5 became unwritten.
        assert_eq!(f.seek_hole(0), Some(PAGE));
        assert_eq!(f.seek_data(PAGE), Some(5 * PAGE));
        check(&f, &space);
        // Past the end: allocates and extends.
        f.zero_range(&space, 100_000, 10, false).unwrap();
        assert_eq!((f.size(), f.allocated()), (100_010, 11 * PAGE));
        check(&f, &space);
    }

    #[test]
    fn enospc_writes_nothing() {
        let space = Space::new(8192);
        let mut f = FileData::new();
        f.write(&space, 0, &[1; 8192]).unwrap();
        assert_eq!(f.write(&space, 8192, &[1]), Err(Errno::ENOSPC));
        assert_eq!(f.size(), 8192);
        // Overwrites of stored bytes need no space.
        f.write(&space, 100, &[2; 100]).unwrap();
        assert_eq!(
            f.allocate(&space, 0, 1 << 40, false),
            Err(Errno::ENOSPC),
            "a huge fallocate is refused up front"
        );
        assert_eq!(f.write(&space, MAX_FILE_SIZE, &[1]), Err(Errno::EFBIG));
        check(&f, &space);
    }

    #[test]
    fn huge_offsets() {
        let space = Space::new(1 << 30);
        let mut f = FileData::new();
        f.write(&space, MAX_FILE_SIZE - 1, b"x").unwrap();
        assert_eq!((f.size(), f.allocated()), (MAX_FILE_SIZE, PAGE));
        let last_page = (MAX_FILE_SIZE - 1) / PAGE * PAGE;
        assert_eq!(f.seek_data(0), Some(last_page));
        assert_eq!(f.seek_hole(last_page), Some(MAX_FILE_SIZE));
        assert_eq!(collect(&f, MAX_FILE_SIZE - 2, 10), [0, b'x']);
        f.allocate(&space, 0, 8192, true).unwrap();
        f.punch_hole(&space, 0, MAX_FILE_SIZE);
        assert_eq!(f.allocated(), PAGE, "the partial last page is only zeroed");
        check(&f, &space);
        f.set_size(&space, 0).unwrap();
        assert_eq!(f.allocated(), 0);
        check(&f, &space);
    }

    #[test]
    fn segments_cover_range() {
        let space = Space::new(1 << 30);
        let mut f = FileData::new();
        f.write(&space, 10, b"abc").unwrap();
        f.set_size(&space, CHUNK_U64 + 5).unwrap();
        let mut segs = Vec::new();
        f.for_each_segment::<()>(0, u64::MAX, |at, s| {
            segs.push((at, s.to_owned_seg()));
            Ok(())
        })
        .unwrap();
        let mut page = vec![0u8; PAGE as usize];
        page[10..13].copy_from_slice(b"abc");
        assert_eq!(
            segs,
            [
                (0, (Some(page), PAGE)),
                (PAGE, (None, CHUNK_U64 + 5 - PAGE)),
            ]
        );
    }

    /// A random mix of operations against a plain byte-vector model.
    #[test]
    fn random_operations_match_a_model() {
        let space = Space::new(1 << 30);
        let mut f = FileData::new();
        let mut model: Vec<u8> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let limit = 3 * CHUNK_U64;
        for step in 0..3000 {
            let off = rand(limit);
            let max_len = if rand(4) == 0 { CHUNK_U64 } else { 3 * PAGE };
            let len = 1 + rand(max_len);
            match rand(6) {
                0 | 1 => {
                    let byte = (step % 250) as u8 + 1;
                    f.write(&space, off, &vec![byte; len as usize]).unwrap();
                    let end = (off + len) as usize;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].fill(byte);
                }
                2 => {
                    f.punch_hole(&space, off, len);
                    let end = ((off + len) as usize).min(model.len());
                    if (off as usize) < end {
                        model[off as usize..end].fill(0);
                    }
                }
                3 => {
                    f.set_size(&space, off).unwrap();
                    model.resize(off as usize, 0);
                }
                4 => {
                    let keep = rand(2) == 0;
                    f.allocate(&space, off, len, keep).unwrap();
                    if !keep && model.len() < (off + len) as usize {
                        model.resize((off + len) as usize, 0);
                    }
                }
                _ => {
                    let keep = rand(2) == 0;
                    f.zero_range(&space, off, len, keep).unwrap();
                    let end = (off + len) as usize;
                    if !keep && model.len() < end {
                        model.resize(end, 0);
                    }
                    let end = end.min(model.len());
                    if (off as usize) < end {
                        model[off as usize..end].fill(0);
                    }
                }
            }
            assert_eq!(f.size(), model.len() as u64, "step {step}");
            if step % 50 == 0 {
                check(&f, &space);
                assert_eq!(collect(&f, 0, u32::MAX), model, "step {step}");
                // SEEK_DATA/SEEK_HOLE agree with the stored pages.
                let mut pos = 0;
                while let Some(d) = f.seek_data(pos) {
                    let h = f.seek_hole(d).unwrap();
                    assert!(d < h && (d == pos || d % PAGE == 0));
                    assert_eq!(
                        f.data_in(d / PAGE, h.div_ceil(PAGE)),
                        h.div_ceil(PAGE) - d / PAGE
                    );
                    pos = h;
                    if pos >= f.size() {
                        break;
                    }
                }
            }
        }
    }

    impl Segment<'_> {
        fn to_owned_seg(self) -> (Option<Vec<u8>>, u64) {
            match self {
                Segment::Data(d) => (Some(d.to_vec()), d.len() as u64),
                Segment::Hole(n) => (None, n),
            }
        }
    }
}
