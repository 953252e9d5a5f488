//! Open files: OPEN, READ, WRITE, FLUSH, RELEASE, FSYNC, FALLOCATE, LSEEK,
//! COPY_FILE_RANGE, SYNCFS, and the kernel passthrough backing ids.
//!
//! # Reads without copies or allocation
//!
//! A READ of at least `splice_threshold` bytes is answered with a
//! [`FileRange`] of the open host file, clamped to its current size (the
//! reply header promises the exact length before the data goes out): the
//! transport splices it from the file into `/dev/fuse`. Smaller READs, and
//! every READ of an `O_DIRECT` file, `pread` into a page-aligned buffer that
//! each worker thread allocates once and reuses; the reply borrows it.
//! `O_DIRECT` writes whose payload is not page aligned in the request buffer
//! are copied into that buffer first (the host requires aligned memory).
//!
//! # Kernel passthrough
//!
//! All passthrough opens of one inode share one backing id (the kernel
//! requires one backing file per inode). The first open registers its own
//! descriptor with `FUSE_DEV_IOC_BACKING_OPEN`; the kernel then opens its own
//! backing file per FUSE file from it, with that file's flags. The id is
//! counted by opens and closed with `FUSE_DEV_IOC_BACKING_CLOSE` when the last
//! of them is released. If registering fails (a stacking depth above
//! `max_stack_depth`, a filesystem without the needed operations), that open
//! is served the ordinary way.

use super::credentials::WithoutFsetid;
use super::inode_store::{Backing, CacheStamp, Inode, lock};
use super::open_file::OpenFile;
use super::sys::{self, SysResult};
use super::{CachePolicy, Opened, PassthroughFs};
use fuselage_core::Errno;
use fuselage_core::abi::{
    FOPEN_KEEP_CACHE, FUSE_OPEN_KILL_SUIDGID, FUSE_RELEASE_FLOCK_UNLOCK, FUSE_WRITE_KILL_SUIDGID,
};
use fuselage_core::reply::{FileRange, ReplyData, ReplySink};
use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

const PAGE: usize = 4096;

/// One page, aligned as `O_DIRECT` wants.
#[repr(C, align(4096))]
struct Page([u8; PAGE]);

thread_local! {
    /// The per-thread I/O buffer (see the module docs).
    static IO_BUF: RefCell<Vec<Page>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's page-aligned buffer of at least `len` bytes
/// (grown only the first times a thread needs more).
fn with_io_buf<R>(len: usize, min: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    IO_BUF.with(|pages| {
        let mut pages = pages.borrow_mut();
        let need = len.max(min).div_ceil(PAGE).max(1);
        if pages.len() < need {
            let add = need - pages.len();
            pages.reserve_exact(add);
            pages.extend((0..add).map(|_| Page([0; PAGE])));
        }
        // SAFETY: `Page` is `repr(C)` around a byte array and has no padding
        // (size 4096 = its alignment), so the vector's pages are
        // `pages.len() * PAGE` initialised, contiguous bytes, borrowed
        // mutably for the duration of the closure through `pages`.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(pages.as_mut_ptr().cast::<u8>(), pages.len() * PAGE)
        };
        f(&mut bytes[..len])
    })
}

impl PassthroughFs {
    /// The open file `fh`, checked to belong to `ino`.
    pub(super) fn file(&self, ino: u64, fh: u64) -> SysResult<Arc<OpenFile>> {
        let file = self.files.get(fh)?;
        file.check(ino)?;
        Ok(file)
    }

    pub(super) fn do_open(&self, ino: u64, flags: u32, open_flags: u32) -> SysResult<Opened> {
        let inode = self.inode(ino)?;
        if inode.is_dir() {
            return Err(Errno::EISDIR);
        }
        if !inode.is_reg() {
            return Err(Errno::ENXIO);
        }
        let flags = flags as i32;
        if self.config.read_only
            && (flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0)
        {
            return Err(Errno::EROFS);
        }
        let anchor = self.store.fd(&inode)?;
        let kill = open_flags & FUSE_OPEN_KILL_SUIDGID != 0 && flags & libc::O_TRUNC != 0;
        let fd = {
            // O_TRUNC by a caller without CAP_FSETID: let the host clear
            // set-uid/set-gid as it would for that caller.
            let _fsetid = kill.then(WithoutFsetid::new);
            self.procs.reopen(anchor.as_fd(), inode.kind, flags)?
        };
        drop(anchor);
        let keep = self.keep_cache(&inode, fd.as_fd());
        Ok(self.register_open(ino, inode, fd, flags, keep))
    }

    /// Whether the kernel may keep the file's cached pages (see
    /// [`CachePolicy`]); records what they are built from.
    fn keep_cache(&self, inode: &Inode, fd: BorrowedFd<'_>) -> bool {
        match self.config.cache {
            CachePolicy::Never => false,
            CachePolicy::Always => true,
            CachePolicy::Auto => {
                let Ok(st) = sys::fstat(fd) else { return false };
                let now = stamp_of(&st);
                let mut stamp = lock(&inode.stamp);
                let keep = *stamp == Some(now);
                *stamp = Some(now);
                keep
            }
        }
    }

    /// Adds an open file to the table, with kernel passthrough if in use.
    pub(super) fn register_open(
        &self,
        nodeid: u64,
        inode: Arc<Inode>,
        fd: OwnedFd,
        flags: i32,
        keep_cache: bool,
    ) -> Opened {
        let mut file = OpenFile::new(nodeid, inode, fd, flags);
        let backing = self.backing_acquire(&file.inode, file.fd.as_fd());
        file.backing = backing.is_some();
        let fh = self.files.insert(file);
        let mut fopen = 0;
        if backing.is_some() {
            self.counters
                .passthrough_opens
                .fetch_add(1, Ordering::Relaxed);
        } else if keep_cache {
            fopen |= FOPEN_KEEP_CACHE;
        }
        Opened {
            fh,
            flags: fopen,
            backing,
        }
    }

    /// The inode's backing id for one more passthrough open, registering
    /// `fd` if it has none; `None` serves the open without passthrough.
    fn backing_acquire(&self, inode: &Inode, fd: BorrowedFd<'_>) -> Option<i32> {
        if !self.kernel_passthrough.active.load(Ordering::Acquire) || !inode.is_reg() {
            return None;
        }
        let dev = self.device.get()?;
        let mut slot = lock(&inode.backing);
        if let Some(b) = slot.as_mut() {
            b.opens += 1;
            return Some(b.id);
        }
        match sys::backing_open(dev.as_fd(), fd) {
            Ok(id) => {
                *slot = Some(Backing { id, opens: 1 });
                self.counters.backing_opened.fetch_add(1, Ordering::Relaxed);
                Some(id)
            }
            Err(e) => {
                let kp = &self.kernel_passthrough;
                if !kp.warned.swap(true, Ordering::Relaxed) {
                    *lock(&kp.reason) = Some(format!(
                        "registering a backing file failed: {}",
                        std::io::Error::from_raw_os_error(e.0)
                    ));
                }
                None
            }
        }
    }

    /// One passthrough open of `inode` ended: closes the backing id with
    /// the last one.
    fn backing_release(&self, inode: &Inode) {
        let mut slot = lock(&inode.backing);
        let Some(b) = slot.as_mut() else { return };
        b.opens = b.opens.saturating_sub(1);
        if b.opens == 0 {
            if let Some(dev) = self.device.get() {
                let _ = sys::backing_close(dev.as_fd(), b.id);
            }
            self.counters.backing_closed.fetch_add(1, Ordering::Relaxed);
            *slot = None;
        }
    }

    pub(super) fn do_read<S: ReplySink>(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        size: u32,
        reply: ReplyData<S>,
    ) {
        let file = match self.file(ino, fh) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        if !file.direct && size >= self.config.splice_threshold {
            let st = match sys::fstat(file.fd.as_fd()) {
                Ok(st) => st,
                Err(e) => return reply.error(e),
            };
            let file_size = st.st_size.max(0) as u64;
            if offset >= file_size {
                return reply.data(&[]);
            }
            let len = (file_size - offset).min(u64::from(size)) as u32;
            self.counters.spliced_reads.fetch_add(1, Ordering::Relaxed);
            // `file` (and so its descriptor) lives until the reply is sent.
            return reply.file(FileRange {
                fd: file.fd.as_raw_fd(),
                offset,
                len,
            });
        }
        let min = self.config.splice_threshold as usize;
        with_io_buf(size as usize, min, |buf| {
            match read_into(file.fd.as_fd(), buf, offset, file.direct) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(e),
            }
        })
    }

    pub(super) fn do_write(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
        write_flags: u32,
    ) -> SysResult<u32> {
        self.writable()?;
        let file = self.file(ino, fh)?;
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        // A writer without CAP_FSETID: the host clears set-uid/set-gid on
        // this write as it would for them (HANDLE_KILLPRIV_V2).
        let _fsetid = (write_flags & FUSE_WRITE_KILL_SUIDGID != 0).then(WithoutFsetid::new);
        let n = if file.direct && !(data.as_ptr() as usize).is_multiple_of(PAGE) {
            let min = self.config.splice_threshold as usize;
            with_io_buf(data.len(), min, |buf| {
                buf.copy_from_slice(data);
                sys::pwrite(file.fd.as_fd(), buf, offset)
            })?
        } else {
            sys::pwrite(file.fd.as_fd(), data, offset)?
        };
        Ok(n as u32)
    }

    pub(super) fn do_release(&self, fh: u64, release_flags: u32) {
        let Some(file) = self.files.remove(fh) else {
            return;
        };
        if release_flags & FUSE_RELEASE_FLOCK_UNLOCK != 0 {
            let _ = sys::flock(file.fd.as_fd(), libc::LOCK_UN);
        }
        if file.backing {
            self.backing_release(&file.inode);
        }
        if file.writable
            && self.config.cache == CachePolicy::Auto
            && let Ok(st) = sys::fstat(file.fd.as_fd())
        {
            // Our own writes went through the kernel's cache (write-through):
            // what it holds now matches this state.
            *lock(&file.inode.stamp) = Some(stamp_of(&st));
        }
    }

    pub(super) fn do_flush(&self, ino: u64, fh: u64) -> SysResult<()> {
        let file = self.file(ino, fh)?;
        if file.posix_locked.load(Ordering::Acquire) {
            // close(2) releases the caller's POSIX locks on the file.
            let mut lk = whole_file_unlock();
            sys::fcntl_lock(file.fd.as_fd(), libc::F_OFD_SETLK, &mut lk)?;
        }
        Ok(())
    }

    pub(super) fn do_fsync(&self, ino: u64, fh: u64, datasync: bool) -> SysResult<()> {
        let file = self.file(ino, fh)?;
        sys::fsync(file.fd.as_fd(), datasync)
    }

    pub(super) fn do_fallocate(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    ) -> SysResult<()> {
        self.writable()?;
        let file = self.file(ino, fh)?;
        sys::fallocate(file.fd.as_fd(), mode, offset, length)
    }

    pub(super) fn do_lseek(&self, ino: u64, fh: u64, offset: u64, whence: u32) -> SysResult<u64> {
        let file = self.file(ino, fh)?;
        let offset = i64::try_from(offset).map_err(|_| Errno::EINVAL)?;
        sys::lseek(file.fd.as_fd(), offset, whence as libc::c_int)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_copy_file_range(
        &self,
        ino_in: u64,
        fh_in: u64,
        off_in: u64,
        ino_out: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
        flags: u64,
    ) -> SysResult<u64> {
        self.writable()?;
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        let src = self.file(ino_in, fh_in)?;
        let dst = self.file(ino_out, fh_out)?;
        sys::copy_file_range(src.fd.as_fd(), off_in, dst.fd.as_fd(), off_out, len)
    }

    pub(super) fn do_syncfs(&self, ino: u64) -> SysResult<()> {
        let inode = self.inode(ino)?;
        let anchor = self.store.fd(&inode)?;
        // syncfs(2) needs an open file; reopening a directory or regular file
        // read-only is safe (see `proc_fd`).
        let fd = self
            .procs
            .reopen(anchor.as_fd(), inode.kind, libc::O_RDONLY)?;
        sys::syncfs(fd.as_fd())
    }
}

/// Reads up to `buf.len()` bytes at `offset`: until the buffer is full or
/// end of file, or one `pread` for `O_DIRECT` files.
fn read_into(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64, direct: bool) -> SysResult<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = sys::pread(fd, &mut buf[got..], offset + got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
        if direct {
            break;
        }
    }
    Ok(got)
}

fn stamp_of(st: &libc::stat) -> CacheStamp {
    CacheStamp {
        mtime: (st.st_mtime, st.st_mtime_nsec as u32),
        ctime: (st.st_ctime, st.st_ctime_nsec as u32),
        size: st.st_size.max(0) as u64,
    }
}

/// An OFD lock record unlocking the whole file.
pub(super) fn whole_file_unlock() -> libc::flock {
    libc::flock {
        l_type: libc::F_UNLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}
