//! The contents of a regular file: a sparse map of fixed-size chunks.
//!
//! A file of `size` bytes is split into [`CHUNK`]-sized chunks. Chunk `i`
//! covers bytes `i * CHUNK .. (i + 1) * CHUNK` and is stored, when any of it
//! was ever written or allocated, as a `Vec<u8>` holding a *prefix* of the
//! chunk: the bytes past the vector's length, and every chunk missing from
//! the map, read as zeros (holes). Two invariants keep reads simple:
//!
//! - bytes stored at or past `size` are zero (truncation cuts them, and only
//!   zeros are ever allocated beyond the end of the file);
//! - the accounted allocation of a chunk is its length rounded up to
//!   [`ALLOC_UNIT`], and [`FileData::allocated`] is their sum, charged
//!   against the filesystem's [`Space`] before any vector grows.
//!
//! Reads never copy: [`FileData::read`] lists the stored slices and runs of
//! a static zero page ([`ZEROS`]) that make up the requested range.

use fuselage_core::Errno;
use fuselage_core::reply::MAX_REPLY_PARTS;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes per chunk: 128 KiB.
///
/// A read reply may carry at most 32 data slices. A read of up to 1 MiB
/// (the largest the kernel sends with `max_pages` = 256) at any alignment
/// touches at most 9 chunks of 128 KiB, hence at most 9 stored slices and
/// 10 zero runs between and around them: 19 slices. With 64 KiB chunks the
/// worst case (17 chunks, each stored short) would need 35.
pub const CHUNK: usize = 128 * 1024;
const CHUNK_U64: u64 = CHUNK as u64;

/// Granularity of space accounting (and of `st_blocks`), like a tmpfs page.
pub const ALLOC_UNIT: u64 = 4096;

/// Largest file size, as tmpfs: `MAX_LFS_FILESIZE` (`i64::MAX`).
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// Most data slices one READ answer carries (within the core's
/// [`MAX_REPLY_PARTS`]).
pub const MAX_READ_PARTS: usize = 32;

/// The largest READ the kernel sends (`max_pages` 256 of 4 KiB).
const MAX_KERNEL_READ: usize = 1 << 20;

// A read of `MAX_KERNEL_READ` bytes at any offset touches at most
// `MAX_KERNEL_READ / CHUNK + 1` chunks: one slice each plus a zero run
// before, between and after them must fit.
const _: () = assert!(MAX_READ_PARTS <= MAX_REPLY_PARTS);
const _: () = assert!(2 * (MAX_KERNEL_READ / CHUNK + 1) < MAX_READ_PARTS);

const ZEROS_LEN: usize = MAX_KERNEL_READ;

/// The bytes every hole reads as (1 MiB, one run per maximal read).
static ZEROS: [u8; ZEROS_LEN] = [0; ZEROS_LEN];

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

/// Accounted size of a chunk whose vector holds `len` bytes.
fn alloc_size(len: usize) -> u64 {
    (len as u64).div_ceil(ALLOC_UNIT) * ALLOC_UNIT
}

/// The slices of one read answer, borrowed from a [`FileData`] (and from
/// [`ZEROS`]).
#[derive(Debug)]
pub struct ReadParts<'a> {
    parts: [&'a [u8]; MAX_READ_PARTS],
    count: usize,
}

impl<'a> ReadParts<'a> {
    fn new() -> Self {
        ReadParts {
            parts: [&[]; MAX_READ_PARTS],
            count: 0,
        }
    }

    /// Adds a slice; `false` when all slots are taken.
    fn push(&mut self, part: &'a [u8]) -> bool {
        if part.is_empty() {
            return true;
        }
        if self.count == MAX_READ_PARTS {
            return false;
        }
        self.parts[self.count] = part;
        self.count += 1;
        true
    }

    /// Adds `len` zero bytes as runs of [`ZEROS`]; `false` when all slots
    /// are taken (some zeros may have been added).
    fn push_zeros(&mut self, mut len: usize) -> bool {
        while len > 0 {
            let n = len.min(ZEROS_LEN);
            if !self.push(&ZEROS[..n]) {
                return false;
            }
            len -= n;
        }
        true
    }

    /// The slices, in file order.
    pub fn as_slices(&self) -> &[&'a [u8]] {
        &self.parts[..self.count]
    }

    /// Total bytes of the slices.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.as_slices().iter().map(|p| p.len()).sum()
    }
}

/// One segment of a file's byte range as [`FileData::for_each_segment`]
/// walks it: stored bytes or a hole of some length.
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
    chunks: BTreeMap<u64, Vec<u8>>,
    allocated: u64,
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

    /// Bytes charged for stored chunks (multiples of [`ALLOC_UNIT`]).
    #[cfg(test)]
    pub fn allocated(&self) -> u64 {
        self.allocated
    }

    /// `st_blocks`: allocated 512-byte units.
    pub fn blocks(&self) -> u64 {
        self.allocated / 512
    }

    /// The slices holding up to `len` bytes from `offset`, stopping at the
    /// end of file. Never allocates. The result is shorter than asked only
    /// at the end of file, or for reads much larger than the kernel's 1 MiB
    /// maximum that would need more than [`MAX_READ_PARTS`] slices.
    pub fn read(&self, offset: u64, len: u32) -> ReadParts<'_> {
        let mut out = ReadParts::new();
        let end = offset.saturating_add(u64::from(len)).min(self.size);
        if offset >= end {
            return out;
        }
        let mut pos = offset;
        let mut zero_run = 0u64;
        for (&idx, chunk) in self
            .chunks
            .range(offset / CHUNK_U64..=(end - 1) / CHUNK_U64)
        {
            let start = idx * CHUNK_U64;
            if start > pos {
                zero_run += start - pos;
                pos = start;
            }
            let data_end = (start + chunk.len() as u64).min(end);
            if data_end > pos {
                if !out.push_zeros(zero_run as usize) {
                    return out;
                }
                zero_run = 0;
                let from = (pos - start) as usize;
                let to = (data_end - start) as usize;
                if !out.push(&chunk[from..to]) {
                    return out;
                }
                pos = data_end;
            }
        }
        zero_run += end - pos;
        out.push_zeros(zero_run as usize);
        out
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
        for (&idx, chunk) in self
            .chunks
            .range(offset / CHUNK_U64..=(end - 1) / CHUNK_U64)
        {
            let start = idx * CHUNK_U64;
            if start > pos {
                f(pos, Segment::Hole(start - pos))?;
                pos = start;
            }
            let data_end = (start + chunk.len() as u64).min(end);
            if data_end > pos {
                let from = (pos - start) as usize;
                let to = (data_end - start) as usize;
                f(pos, Segment::Data(&chunk[from..to]))?;
                pos = data_end;
            }
        }
        if end > pos {
            f(pos, Segment::Hole(end - pos))?;
        }
        Ok(())
    }

    /// Writes `data` at `offset`, extending the file if needed. Allocates
    /// (and charges `space`) only for bytes not stored yet; fails with
    /// `EFBIG` past [`MAX_FILE_SIZE`] and `ENOSPC` when the budget is
    /// exhausted, writing nothing.
    pub fn write(&mut self, space: &Space, offset: u64, data: &[u8]) -> Result<(), Errno> {
        if data.is_empty() {
            return Ok(());
        }
        let end = checked_end(offset, data.len() as u64)?;
        self.ensure_stored(space, offset, end)?;
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let idx = pos / CHUNK_U64;
            let within = (pos - idx * CHUNK_U64) as usize;
            let n = rest.len().min(CHUNK - within);
            let chunk = self
                .chunks
                .get_mut(&idx)
                .expect("ensure_stored stored every chunk of the range");
            chunk[within..within + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            pos += n as u64;
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// Makes the file `new_size` bytes long: shrinking frees stored bytes
    /// past it, growing leaves a hole.
    pub fn set_size(&mut self, space: &Space, new_size: u64) -> Result<(), Errno> {
        if new_size > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        if new_size < self.size {
            self.drop_from(space, new_size);
        }
        self.size = new_size;
        Ok(())
    }

    /// Frees every stored byte at or past `from` (including allocations past
    /// the end of file).
    fn drop_from(&mut self, space: &Space, from: u64) {
        let first_whole = from.div_ceil(CHUNK_U64);
        let removed = self.chunks.split_off(&first_whole);
        let mut freed: u64 = removed.values().map(|c| alloc_size(c.len())).sum();
        // The chunk `from` falls inside (if not at its start) keeps a prefix.
        let idx = from / CHUNK_U64;
        let keep = (from - idx * CHUNK_U64) as usize;
        let partial = self
            .chunks
            .get_mut(&idx)
            .filter(|c| keep != 0 && c.len() > keep);
        if let Some(chunk) = partial {
            freed += alloc_size(chunk.len()) - alloc_size(keep);
            chunk.truncate(keep);
            shrink(chunk);
        }
        self.allocated -= freed;
        space.release(freed);
    }

    /// fallocate mode 0 / `KEEP_SIZE`: stores (zero) bytes for the range;
    /// extends the size unless `keep_size`.
    pub fn allocate(
        &mut self,
        space: &Space,
        offset: u64,
        len: u64,
        keep_size: bool,
    ) -> Result<(), Errno> {
        let end = checked_end(offset, len)?;
        self.ensure_stored(space, offset, end)?;
        if !keep_size {
            self.size = self.size.max(end);
        }
        Ok(())
    }

    /// fallocate `ZERO_RANGE`: the range reads as zeros and is stored.
    pub fn zero_range(
        &mut self,
        space: &Space,
        offset: u64,
        len: u64,
        keep_size: bool,
    ) -> Result<(), Errno> {
        let end = checked_end(offset, len)?;
        self.ensure_stored(space, offset, end)?;
        self.fill_zeros(offset, end);
        if !keep_size {
            self.size = self.size.max(end);
        }
        Ok(())
    }

    /// fallocate `PUNCH_HOLE`: the range reads as zeros; whole chunks and
    /// chunk tails inside it are freed. The size does not change.
    pub fn punch_hole(&mut self, space: &Space, offset: u64, len: u64) {
        let end = offset.saturating_add(len);
        if end <= offset {
            return;
        }
        let mut next = offset / CHUNK_U64;
        let last = (end - 1) / CHUNK_U64;
        let mut freed = 0;
        while next <= last {
            let Some((&idx, chunk)) = self.chunks.range_mut(next..=last).next() else {
                break;
            };
            next = idx + 1;
            let start = idx * CHUNK_U64;
            let from = offset.saturating_sub(start).min(CHUNK_U64) as usize;
            let to = (end - start).min(CHUNK_U64) as usize;
            if from >= chunk.len() {
                continue;
            }
            if to >= chunk.len() {
                freed += alloc_size(chunk.len()) - alloc_size(from);
                chunk.truncate(from);
                if chunk.is_empty() {
                    self.chunks.remove(&idx);
                } else {
                    shrink(chunk);
                }
            } else {
                chunk[from..to].fill(0);
            }
        }
        self.allocated -= freed;
        space.release(freed);
    }

    /// Writes zeros over the stored part of `offset..end` (holes stay holes).
    pub fn zero_stored(&mut self, offset: u64, end: u64) {
        self.fill_zeros(offset, end)
    }

    fn fill_zeros(&mut self, offset: u64, end: u64) {
        if end <= offset {
            return;
        }
        let last = (end - 1) / CHUNK_U64;
        for (&idx, chunk) in self.chunks.range_mut(offset / CHUNK_U64..=last) {
            let start = idx * CHUNK_U64;
            let from = (offset.saturating_sub(start) as usize).min(chunk.len());
            let to = ((end - start).min(CHUNK_U64) as usize).min(chunk.len());
            chunk[from..to.max(from)].fill(0);
        }
    }

    /// SEEK_DATA: the first stored byte at or after `offset` (below the
    /// size), or `None` (ENXIO).
    pub fn seek_data(&self, offset: u64) -> Option<u64> {
        if offset >= self.size {
            return None;
        }
        for (&idx, chunk) in self.chunks.range(offset / CHUNK_U64..) {
            let start = idx * CHUNK_U64;
            let end = start + chunk.len() as u64;
            if end > offset {
                let at = start.max(offset);
                return (at < self.size).then_some(at);
            }
        }
        None
    }

    /// SEEK_HOLE: the first byte at or after `offset` that is not stored
    /// (the end of file counts as a hole), or `None` (ENXIO) at or past the
    /// end of file.
    pub fn seek_hole(&self, offset: u64) -> Option<u64> {
        if offset >= self.size {
            return None;
        }
        let mut pos = offset;
        for (&idx, chunk) in self.chunks.range(offset / CHUNK_U64..) {
            let start = idx * CHUNK_U64;
            if start > pos {
                break;
            }
            let end = start + chunk.len() as u64;
            if pos >= end {
                break;
            }
            pos = end;
            if chunk.len() < CHUNK {
                break;
            }
        }
        Some(pos.min(self.size))
    }

    /// Frees all contents (the inode is going away).
    pub fn clear(&mut self, space: &Space) {
        self.chunks = BTreeMap::new();
        space.release(self.allocated);
        self.allocated = 0;
        self.size = 0;
    }

    /// Makes every chunk of `offset..end` store at least up to `end` (or its
    /// whole length), charging `space` first for the growth.
    fn ensure_stored(&mut self, space: &Space, offset: u64, end: u64) -> Result<(), Errno> {
        let first = offset / CHUNK_U64;
        let last = (end - 1) / CHUNK_U64;
        let want = |idx: u64| (end - idx * CHUNK_U64).min(CHUNK_U64) as usize;
        // Growth if every chunk were missing, then corrected for the stored
        // ones; `grow >= shrink` since each stored chunk only grows.
        let mut grow = (last - first) * CHUNK_U64 + alloc_size(want(last));
        let mut shrink_by = 0;
        for (&idx, chunk) in self.chunks.range(first..=last) {
            let want = want(idx);
            grow += alloc_size(chunk.len().max(want));
            shrink_by += alloc_size(chunk.len()) + alloc_size(want);
        }
        // Rounding can hide growth (delta 0 while a vector still grows
        // within its last unit), so the loop below always runs.
        let delta = grow - shrink_by;
        space.reserve(delta)?;
        for idx in first..=last {
            let want = want(idx);
            // (`entry` allocates only to insert a missing chunk.)
            let chunk = self.chunks.entry(idx).or_default();
            if chunk.len() >= want {
                continue;
            }
            if want > chunk.capacity() {
                // Double small vectors, but never past one chunk.
                let target = want.max((chunk.capacity() * 2).min(CHUNK));
                chunk.reserve_exact(target - chunk.len());
            }
            chunk.resize(want, 0);
        }
        self.allocated += delta;
        Ok(())
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

/// Returns memory of a vector that was cut well below its capacity.
fn shrink(chunk: &mut Vec<u8>) {
    if chunk.capacity() > 2 * chunk.len() + ALLOC_UNIT as usize {
        chunk.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(f: &FileData, offset: u64, len: u32) -> Vec<u8> {
        f.read(offset, len).as_slices().concat()
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
        // Stored from chunk 0's start: 400_000 rounded up to pages.
        assert_eq!(f.allocated(), 400_000u64.div_ceil(4096) * 4096);
        assert_eq!(space.used(), f.allocated());
    }

    #[test]
    fn sparse_read_uses_few_parts() {
        let space = Space::new(1 << 30);
        let mut f = FileData::new();
        // A short stored prefix in every chunk: the worst case for slices.
        for i in 0..20u64 {
            f.write(&space, i * CHUNK_U64, b"x").unwrap();
        }
        f.set_size(&space, 20 * CHUNK_U64).unwrap();
        for off in [0u64, 1, 4095, CHUNK_U64 - 1, 3 * CHUNK_U64 + 7] {
            let r = f.read(off, 1 << 20);
            assert_eq!(r.len(), 1 << 20);
            assert!(r.as_slices().len() <= 19, "{}", r.as_slices().len());
            let bytes = r.as_slices().concat();
            for (i, b) in bytes.iter().enumerate() {
                let pos = off + i as u64;
                let expect = if pos & (CHUNK_U64 - 1) == 0 { b'x' } else { 0 };
                assert_eq!(*b, expect, "at {pos}");
            }
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
        f.clear(&space);
        assert_eq!(space.used(), 0);
    }

    #[test]
    fn punch_and_seek() {
        let space = Space::new(1 << 30);
        let mut f = FileData::new();
        f.write(&space, 0, &vec![1u8; 4 * CHUNK]).unwrap();
        f.punch_hole(&space, CHUNK_U64, CHUNK_U64);
        f.punch_hole(&space, 3 * CHUNK_U64 + 100, 10);
        assert_eq!(f.allocated(), 3 * CHUNK_U64);
        assert_eq!(f.seek_hole(0), Some(CHUNK_U64));
        assert_eq!(f.seek_data(CHUNK_U64), Some(2 * CHUNK_U64));
        assert_eq!(f.seek_hole(2 * CHUNK_U64), Some(4 * CHUNK_U64));
        assert_eq!(f.seek_data(4 * CHUNK_U64), None);
        let bytes = collect(&f, 3 * CHUNK_U64 + 98, 14);
        assert_eq!(bytes, [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        // Punching a chunk's tail frees it.
        f.punch_hole(&space, 3 * CHUNK_U64 + 8192, CHUNK_U64);
        assert_eq!(f.allocated(), 2 * CHUNK_U64 + 8192);
        assert_eq!(f.seek_hole(3 * CHUNK_U64), Some(3 * CHUNK_U64 + 8192));
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
        assert_eq!(
            segs,
            [
                (0, (Some(b"\0\0\0\0\0\0\0\0\0\0abc".to_vec()), 13)),
                (13, (None, CHUNK_U64 + 5 - 13)),
            ]
        );
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
