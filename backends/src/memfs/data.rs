//! File contents and attributes: OPEN, READ, WRITE, SETATTR, FALLOCATE,
//! LSEEK and COPY_FILE_RANGE. Data locks are taken before metadata locks.

use super::MemFs;
use super::file::{CHUNK, FileData, Segment};
use super::inode::{Inode, Meta, S_IFDIR, S_IFMT, S_IFREG, Timespec, lock, read, write};
use crate::setid::{self, Change, SECURITY_CAPABILITY};
use fuselage_core::abi::{FUSE_OPEN_KILL_SUIDGID, fuse_attr};
use fuselage_core::op;
use fuselage_core::reply::{ReplyData, ReplySink};
use fuselage_core::{Errno, RequestHeader, SetAttr, TimeOrNow};
use std::convert::Infallible;
use std::sync::RwLock;

const O_TRUNC: u32 = libc::O_TRUNC as u32;
const FALLOC_FL_KEEP_SIZE: u32 = libc::FALLOC_FL_KEEP_SIZE as u32;
const FALLOC_FL_PUNCH_HOLE: u32 = libc::FALLOC_FL_PUNCH_HOLE as u32;
const FALLOC_FL_ZERO_RANGE: u32 = libc::FALLOC_FL_ZERO_RANGE as u32;
const SEEK_DATA: u32 = libc::SEEK_DATA as u32;
const SEEK_HOLE: u32 = libc::SEEK_HOLE as u32;

/// Largest COPY_FILE_RANGE done in one request: what the 32-bit reply can
/// report, page aligned (callers loop on short copies).
const COPY_MAX: u64 = u32::MAX as u64 & !4095;

/// Copies the file's size and allocation into its metadata.
fn sync_size(m: &mut Meta, data: &FileData) {
    m.size = data.size();
    m.blocks = data.blocks();
}

/// The contents of `inode`, or the errno for using a non-file as one.
fn file_of(inode: &Inode) -> Result<&RwLock<FileData>, Errno> {
    match inode.file() {
        Some(f) => Ok(f),
        None if inode.is_dir() => Err(Errno::EISDIR),
        None => Err(Errno::EINVAL),
    }
}

fn time_of(t: TimeOrNow, now: Timespec) -> Timespec {
    match t {
        TimeOrNow::Now => now,
        TimeOrNow::Specific { secs, nsecs } => Timespec {
            secs,
            nsecs: nsecs.min(999_999_999),
        },
    }
}

impl MemFs {
    /// Takes away what changing a file takes away, as tmpfs does (see
    /// [`crate::setid`]): set-id bits by the kernel's rule for `caller` and
    /// `change`, and with `drop_caps` the file capabilities
    /// (`security.capability`); from regular files, and on a change of
    /// owner from every non-directory. Call with the metadata lock held.
    pub(super) fn clear_privileges(
        &self,
        m: &mut Meta,
        caller: &RequestHeader,
        change: Change,
        drop_caps: bool,
    ) {
        let kind = m.mode & S_IFMT;
        if kind == S_IFDIR || (kind != S_IFREG && change != Change::Chown) {
            return;
        }
        let kill = setid::bits_to_clear(m.mode, m.gid, caller, change);
        let mut changed = kill != 0;
        m.mode &= !kill;
        if drop_caps && let Ok(freed) = m.xattrs.remove(SECURITY_CAPABILITY) {
            self.space.release(freed);
            changed = true;
        }
        if changed {
            m.ctime = Timespec::now();
        }
    }

    pub(super) fn open_impl(
        &self,
        caller: &RequestHeader,
        ino: u64,
        flags: u32,
        open_flags: u32,
    ) -> Result<(), Errno> {
        let inode = self.inode(ino)?;
        lock(&inode.meta).opens += 1;
        let truncated = if flags & O_TRUNC != 0 && inode.file().is_some() {
            let flagged = open_flags & FUSE_OPEN_KILL_SUIDGID != 0;
            self.truncate_on_open(&inode, caller, Change::Flagged { flagged })
        } else {
            Ok(())
        };
        if truncated.is_err() {
            self.unref(&inode, |m| m.opens -= 1);
        }
        truncated
    }

    /// O_TRUNC: size 0, and (as Linux does for every O_TRUNC open) new
    /// mtime and ctime; set-id bits and file capabilities go as `change`
    /// says.
    pub(super) fn truncate_on_open(
        &self,
        inode: &Inode,
        caller: &RequestHeader,
        change: Change,
    ) -> Result<(), Errno> {
        let mut data = write(file_of(inode)?);
        data.set_size(&self.space, 0)?;
        let mut m = lock(&inode.meta);
        self.clear_privileges(&mut m, caller, change, true);
        sync_size(&mut m, &data);
        m.modified(Timespec::now());
        Ok(())
    }

    /// READ: answers with borrowed slices while holding the read lock.
    pub(super) fn read_impl<S: ReplySink>(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
        reply: ReplyData<S>,
    ) {
        let inode = match self.inode(ino) {
            Ok(inode) => inode,
            Err(e) => return reply.error(e),
        };
        let file = match file_of(&inode) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        let data = read(file);
        // Stays empty (unallocated) unless the range is fragmented.
        let mut spill = Vec::new();
        let parts = data.read(offset, size, &mut spill);
        lock(&inode.meta).accessed(Timespec::now());
        reply.data_parts(parts.as_slices());
    }

    pub(super) fn write_impl(
        &self,
        caller: &RequestHeader,
        ino: u64,
        offset: u64,
        bytes: &[u8],
        write_flags: u32,
    ) -> Result<u32, Errno> {
        let inode = self.inode(ino)?;
        let mut data = write(file_of(&inode)?);
        if bytes.is_empty() {
            return Ok(0);
        }
        let written = data.write(&self.space, offset, bytes);
        let mut m = lock(&inode.meta);
        // Even a write that fails for lack of space has cleared them (as
        // on tmpfs, where that happens before the data is copied).
        self.clear_privileges(
            &mut m,
            caller,
            Change::write(write_flags),
            setid::write_drops_file_capabilities(write_flags),
        );
        written?;
        sync_size(&mut m, &data);
        m.modified(Timespec::now());
        Ok(bytes.len() as u32)
    }

    pub(super) fn setattr_impl(
        &self,
        caller: &RequestHeader,
        ino: u64,
        attr: &SetAttr,
    ) -> Result<fuse_attr, Errno> {
        let inode = self.inode(ino)?;
        let now = Timespec::now();
        let mut data = None;
        // Whether a size change touches mtime and ctime. As on tmpfs: any
        // new size does, and so does ftruncate (which comes with a handle)
        // or truncating a file with allocated pages to its own size; a
        // plain truncate(2) to the size an empty file has changes nothing.
        let mut truncated = false;
        if let Some(size) = attr.size {
            let mut d = write(file_of(&inode)?);
            truncated = d.size() != size || attr.fh.is_some() || d.allocated() > 0;
            d.set_size(&self.space, size)?;
            data = Some(d);
        }
        let others = attr.mode.is_some()
            || attr.uid.is_some()
            || attr.gid.is_some()
            || attr.atime.is_some()
            || attr.mtime.is_some()
            || attr.ctime.is_some();
        let mut m = lock(&inode.meta);
        // A truncate or a change of owner takes set-id bits (as the kernel
        // flagged, see `setid`) and file capabilities with it, before the
        // group changes; an explicit new mode in the same request wins.
        let chown = attr.uid.is_some() || attr.gid.is_some();
        if chown || attr.size.is_some() {
            let change = match (attr.kill_suidgid && attr.mode.is_none(), chown) {
                (false, _) => Change::Flagged { flagged: false },
                (true, true) => Change::Chown,
                (true, false) => Change::Flagged { flagged: true },
            };
            self.clear_privileges(&mut m, caller, change, true);
        }
        if let Some(d) = &data {
            sync_size(&mut m, d);
            if truncated {
                m.mtime = now;
            }
        }
        if let Some(mode) = attr.mode {
            m.mode = (m.mode & S_IFMT) | (mode & 0o7777);
        }
        if let Some(uid) = attr.uid {
            m.uid = uid;
        }
        if let Some(gid) = attr.gid {
            m.gid = gid;
        }
        if let Some(t) = attr.atime {
            m.atime = time_of(t, now);
        }
        if let Some(t) = attr.mtime {
            m.mtime = time_of(t, now);
        }
        m.ctime = match attr.ctime {
            Some((secs, nsecs)) => Timespec {
                secs,
                nsecs: nsecs.min(999_999_999),
            },
            None if data.is_some() && !truncated && !others => m.ctime,
            None => now,
        };
        Ok(m.attr(ino))
    }

    pub(super) fn fallocate_impl(
        &self,
        caller: &RequestHeader,
        ino: u64,
        offset: u64,
        length: u64,
        mode: u32,
    ) -> Result<(), Errno> {
        let known = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
        let punch = mode & FALLOC_FL_PUNCH_HOLE != 0;
        let zero = mode & FALLOC_FL_ZERO_RANGE != 0;
        let keep_size = mode & FALLOC_FL_KEEP_SIZE != 0;
        if mode & !known != 0 || (punch && (!keep_size || zero)) {
            return Err(Errno::EOPNOTSUPP);
        }
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let inode = self.inode(ino)?;
        let file = match inode.file() {
            Some(f) => f,
            None if inode.is_dir() => return Err(Errno::EISDIR),
            None => return Err(Errno::ENODEV),
        };
        let mut data = write(file);
        self.clear_privileges(&mut lock(&inode.meta), caller, Change::Unflagged, true);
        if punch {
            data.punch_hole(&self.space, offset, length);
        } else if zero {
            data.zero_range(&self.space, offset, length, keep_size)?;
        } else {
            data.allocate(&self.space, offset, length, keep_size)?;
        }
        let mut m = lock(&inode.meta);
        sync_size(&mut m, &data);
        m.modified(Timespec::now());
        Ok(())
    }

    pub(super) fn lseek_impl(&self, ino: u64, offset: u64, whence: u32) -> Result<u64, Errno> {
        let inode = self.inode(ino)?;
        let data = read(file_of(&inode)?);
        match whence {
            SEEK_DATA => data.seek_data(offset).ok_or(Errno::ENXIO),
            SEEK_HOLE => data.seek_hole(offset).ok_or(Errno::ENXIO),
            _ => Err(Errno::EINVAL),
        }
    }

    pub(super) fn copy_file_range_impl(
        &self,
        caller: &RequestHeader,
        op: &op::CopyFileRange<'_>,
    ) -> Result<u64, Errno> {
        let (ino_in, off_in, ino_out, off_out) =
            (op.ino(), op.off_in(), op.ino_out(), op.off_out());
        let (len, flags) = (op.len(), op.flags());
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        let src = self.inode(ino_in)?;
        let dst = self.inode(ino_out)?;
        let src_file = file_of(&src)?;
        let dst_file = file_of(&dst)?;
        let len = len.min(COPY_MAX);
        self.clear_privileges(&mut lock(&dst.meta), caller, Change::Unflagged, true);
        let copied = if ino_in == ino_out {
            let mut data = write(src_file);
            let count = len.min(data.size().saturating_sub(off_in));
            if count > 0 && off_out < off_in + count && off_in < off_out.saturating_add(count) {
                return Err(Errno::EINVAL);
            }
            let copied = self.copy_within(&mut data, off_in, off_out, count)?;
            let mut m = lock(&dst.meta);
            sync_size(&mut m, &data);
            if copied > 0 {
                m.modified(Timespec::now());
            }
            copied
        } else {
            // Two data locks: ascending inode number.
            let (from, mut to) = if ino_in < ino_out {
                let from = read(src_file);
                (from, write(dst_file))
            } else {
                let to = write(dst_file);
                (read(src_file), to)
            };
            let copied = self.copy_between(&from, &mut to, off_in, off_out, len)?;
            drop(from);
            let mut m = lock(&dst.meta);
            sync_size(&mut m, &to);
            if copied > 0 {
                m.modified(Timespec::now());
            }
            copied
        };
        Ok(copied)
    }

    /// Copies between two files, keeping holes holes. On `ENOSPC` after
    /// some progress, returns the bytes copied so far.
    fn copy_between(
        &self,
        from: &FileData,
        to: &mut FileData,
        off_in: u64,
        off_out: u64,
        len: u64,
    ) -> Result<u64, Errno> {
        let end_out = |at: u64, n: u64| off_out + (at - off_in) + n;
        let mut done = 0u64;
        let result = from.for_each_segment(off_in, len, |at, seg| {
            let dst_at = end_out(at, 0);
            match seg {
                Segment::Data(bytes) => to.write(&self.space, dst_at, bytes)?,
                Segment::Hole(n) => {
                    dst_at.checked_add(n).ok_or(Errno::EFBIG)?;
                    to.punch_hole(&self.space, dst_at, n);
                }
            }
            done = end_out(at, seg_len(seg)) - off_out;
            Ok(())
        });
        let reached = off_out + done;
        if reached > to.size() {
            to.set_size(&self.space, reached)?;
        }
        match result {
            Err(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    /// Copies within one file through a bounce buffer (the ranges do not
    /// overlap).
    fn copy_within(
        &self,
        data: &mut FileData,
        off_in: u64,
        off_out: u64,
        count: u64,
    ) -> Result<u64, Errno> {
        let mut buf = Vec::new();
        let mut done = 0u64;
        while done < count {
            let n = (count - done).min(CHUNK as u64) as u32;
            buf.clear();
            let Ok(()) =
                data.for_each_segment::<Infallible>(off_in + done, u64::from(n), |_, seg| {
                    match seg {
                        Segment::Data(bytes) => buf.extend_from_slice(bytes),
                        Segment::Hole(len) => buf.resize(buf.len() + len as usize, 0),
                    }
                    Ok(())
                });
            if buf.is_empty() {
                break;
            }
            if let Err(e) = data.write(&self.space, off_out + done, &buf) {
                return if done == 0 { Err(e) } else { Ok(done) };
            }
            done += buf.len() as u64;
        }
        Ok(done)
    }
}

fn seg_len(seg: Segment<'_>) -> u64 {
    match seg {
        Segment::Data(b) => b.len() as u64,
        Segment::Hole(n) => n,
    }
}
