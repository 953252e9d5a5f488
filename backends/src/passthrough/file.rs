//! Open files: OPEN, READ, WRITE, FLUSH, RELEASE, FSYNC, FALLOCATE, LSEEK,
//! COPY_FILE_RANGE, SYNCFS, and the kernel passthrough backing ids.
//!
//! # Reads without copies or allocation
//!
//! A READ of at least `splice_threshold` bytes is answered with a
//! [`FileRange`] of the open host file, clamped to its current size (the
//! reply header promises the exact length before the data goes out): the
//! transport splices it from the file into `/dev/fuse`. Smaller READs, and
//! every READ of an `O_DIRECT` file, `pread` straight into the transport's
//! own reply buffer ([`ReplyData::fill`]: a ring entry's payload on native
//! io_uring, the buffer the reply is written from otherwise), so the data is
//! copied once. Where the transport lends no buffer that large, or an
//! `O_DIRECT` file needs alignment the lent buffer lacks, they `pread` into a
//! page-aligned buffer that each worker thread allocates once and reuses.
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
//!
//! A regular file with a set-uid or set-gid bit is never given a new backing
//! id: a write through a backing file never reaches the server, so nothing
//! could clear those bits for an unprivileged writer (see `crate::setid`).
//! Its opens go through the server, which clears them as the kernel's rules
//! say. The kernel refuses to mix passthrough and cached opens of one inode,
//! so opens are counted by kind ([`IoMode`](super::inode_store::IoMode)): a
//! file already open with passthrough stays so for later opens, and a file
//! with cached opens gets no passthrough until they are all released.
//!
//! Backing ids are registered with `CAP_FSETID` dropped from the worker's
//! effective set. The kernel does a backing file's I/O with the credentials
//! of the registration, so when a file gains a set-id bit while already open
//! with passthrough (the one case above that the server cannot steer), a
//! write through it still clears set-uid, and set-gid when group
//! executable, as for an unprivileged writer: too much rather than too
//! little.

use super::credentials::WithoutFsetid;
use super::inode_store::{Backing, CacheStamp, Inode, lock};
use super::open_file::{OpenFile, OpenIo};
use super::sys::{self, SysResult};
use super::{CachePolicy, Opened, PassthroughFs};
use crate::setid::{self, Change};
use fuselage_core::abi::{
    FOPEN_KEEP_CACHE, FUSE_OPEN_KILL_SUIDGID, FUSE_RELEASE_FLOCK_UNLOCK, FUSE_WRITE_KILL_SUIDGID,
};
use fuselage_core::op;
use fuselage_core::reply::{FileRange, ReplyData, ReplySink};
use fuselage_core::{Errno, RequestHeader};
use std::cell::RefCell;
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

const PAGE: usize = 4096;

/// `security.capability`, as a C string.
const CAPABILITY_NAME: &CStr = c"security.capability";

/// Room for a `security.capability` value (`vfs_ns_cap_data`, 24 bytes).
const CAPS_MAX: usize = 64;

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
    pub(crate) fn file(&self, ino: u64, fh: u64) -> SysResult<Arc<OpenFile>> {
        let file = self.files.get(fh)?;
        file.check(ino)?;
        Ok(file)
    }

    pub(crate) fn do_open(
        &self,
        caller: &RequestHeader,
        ino: u64,
        flags: u32,
        open_flags: u32,
    ) -> SysResult<Opened> {
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
        if open_flags & FUSE_OPEN_KILL_SUIDGID != 0 && flags & libc::O_TRUNC != 0 {
            // O_TRUNC by a caller without CAP_FSETID.
            self.clear_setid(anchor.as_fd(), caller, Change::Flagged { flagged: true })?;
        }
        let fd = self.procs.reopen(anchor.as_fd(), inode.kind, flags)?;
        drop(anchor);
        let passthrough = self.kernel_passthrough.active.load(Ordering::Acquire);
        let st = (passthrough || self.config.cache == CachePolicy::Auto)
            .then(|| sys::fstat(fd.as_fd()).ok())
            .flatten();
        let keep = self.keep_cache(&inode, st.as_ref());
        // Unknown mode: as if set-id (no passthrough), the safe side.
        let mode = st.map_or(libc::S_IFREG | libc::S_ISUID, |st| st.st_mode);
        Ok(self.register_open(ino, inode, fd, flags, keep, mode))
    }

    /// Whether the kernel may keep the file's cached pages (see
    /// [`CachePolicy`]); records what they are built from. `st` is the
    /// file's state now, if known.
    fn keep_cache(&self, inode: &Inode, st: Option<&libc::stat>) -> bool {
        match self.config.cache {
            CachePolicy::Never => false,
            CachePolicy::Always => true,
            CachePolicy::Auto => {
                let Some(st) = st else { return false };
                let now = stamp_of(st);
                let mut stamp = lock(&inode.stamp);
                let keep = *stamp == Some(now);
                *stamp = Some(now);
                keep
            }
        }
    }

    /// Adds an open file to the table, with kernel passthrough if in use
    /// and allowed for a file of `mode`.
    pub(crate) fn register_open(
        &self,
        nodeid: u64,
        inode: Arc<Inode>,
        fd: OwnedFd,
        flags: i32,
        keep_cache: bool,
        mode: u32,
    ) -> Opened {
        let mut file = OpenFile::new(nodeid, inode, fd, flags);
        file.io = self.io_acquire(&file.inode, file.fd.as_fd(), mode);
        let backing = match file.io {
            OpenIo::Passthrough(id) => Some(id),
            OpenIo::Cached | OpenIo::Unmanaged => None,
        };
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

    /// Decides how one more open of `inode` (a file of `mode`, open as
    /// `fd`) does its I/O and counts it: the inode's backing id if it has
    /// one, else a new one registered from `fd` unless the file has set-id
    /// bits or cached opens (see the module docs).
    fn io_acquire(&self, inode: &Inode, fd: BorrowedFd<'_>, mode: u32) -> OpenIo {
        if !self.kernel_passthrough.active.load(Ordering::Acquire) || !inode.is_reg() {
            return OpenIo::Unmanaged;
        }
        let Some(dev) = self.device.get() else {
            return OpenIo::Unmanaged;
        };
        let mut io = lock(&inode.io);
        if let Some(b) = io.backing.as_mut() {
            b.opens += 1;
            return OpenIo::Passthrough(b.id);
        }
        if mode & (libc::S_ISUID | libc::S_ISGID) != 0 || io.cached_opens > 0 {
            io.cached_opens += 1;
            return OpenIo::Cached;
        }
        let registered = {
            let _fsetid = WithoutFsetid::new();
            sys::backing_open(dev.as_fd(), fd)
        };
        match registered {
            Ok(id) => {
                io.backing = Some(Backing { id, opens: 1 });
                self.counters.backing_opened.fetch_add(1, Ordering::Relaxed);
                OpenIo::Passthrough(id)
            }
            Err(e) => {
                let kp = &self.kernel_passthrough;
                if !kp.warned.swap(true, Ordering::Relaxed) {
                    *lock(&kp.reason) = Some(format!(
                        "registering a backing file failed: {}",
                        std::io::Error::from_raw_os_error(e.0)
                    ));
                }
                io.cached_opens += 1;
                OpenIo::Cached
            }
        }
    }

    /// One open of `inode` that did its I/O as `how` ended: closes the
    /// backing id with the last passthrough open.
    fn io_release(&self, inode: &Inode, how: OpenIo) {
        let mut io = lock(&inode.io);
        match how {
            OpenIo::Unmanaged => {}
            OpenIo::Cached => io.cached_opens = io.cached_opens.saturating_sub(1),
            OpenIo::Passthrough(_) => {
                let Some(b) = io.backing.as_mut() else { return };
                b.opens = b.opens.saturating_sub(1);
                if b.opens == 0 {
                    if let Some(dev) = self.device.get() {
                        let _ = sys::backing_close(dev.as_fd(), b.id);
                    }
                    self.counters.backing_closed.fetch_add(1, Ordering::Relaxed);
                    io.backing = None;
                }
            }
        }
    }

    pub(crate) fn do_read<S: ReplySink>(
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
            return reply.file(FileRange::new(file.fd.as_fd(), offset, len));
        }
        let min = self.config.splice_threshold as usize;
        let want = size as usize;
        if want <= reply.fill_capacity() {
            // Straight into the transport's reply buffer (a ring entry's
            // payload, the buffer the reply is written from): no second copy.
            let (fd, direct) = (file.fd.as_fd(), file.direct);
            return reply.fill(want, |buf| {
                if direct && !(buf.as_ptr() as usize).is_multiple_of(PAGE) {
                    // O_DIRECT needs an aligned buffer: this thread's.
                    return with_io_buf(want, min, |io| {
                        let n = read_into(fd, io, offset, true)?;
                        buf[..n].copy_from_slice(&io[..n]);
                        Ok(n)
                    });
                }
                read_into(fd, buf, offset, direct)
            });
        }
        with_io_buf(want, min, |buf| {
            match read_into(file.fd.as_fd(), buf, offset, file.direct) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(e),
            }
        })
    }

    pub(crate) fn do_write(
        &self,
        caller: &RequestHeader,
        ino: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
        write_flags: u32,
    ) -> SysResult<u32> {
        self.writable()?;
        let file = self.file(ino, fh)?;
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        if write_flags & FUSE_WRITE_KILL_SUIDGID != 0 {
            // A writer without CAP_FSETID (HANDLE_KILLPRIV_V2).
            self.clear_setid(file.fd.as_fd(), caller, Change::write(write_flags))?;
        }
        // The host drops file capabilities on every write; a write-back of
        // a shared mapping's pages must keep them, as on tmpfs.
        let mut caps = [0u8; CAPS_MAX];
        let kept = if setid::write_drops_file_capabilities(write_flags) {
            None
        } else {
            sys::fgetxattr(file.fd.as_fd(), CAPABILITY_NAME, &mut caps).ok()
        };
        let n = if file.direct && !(data.as_ptr() as usize).is_multiple_of(PAGE) {
            let min = self.config.splice_threshold as usize;
            with_io_buf(data.len(), min, |buf| {
                buf.copy_from_slice(data);
                sys::pwrite(file.fd.as_fd(), buf, offset)
            })?
        } else {
            sys::pwrite(file.fd.as_fd(), data, offset)?
        };
        if let Some(len) = kept {
            sys::fsetxattr(file.fd.as_fd(), CAPABILITY_NAME, &caps[..len], 0)?;
        }
        Ok(n as u32)
    }

    pub(crate) fn do_release(&self, fh: u64, release_flags: u32) {
        let Some(file) = self.files.remove(fh) else {
            return;
        };
        if release_flags & FUSE_RELEASE_FLOCK_UNLOCK != 0 {
            let _ = sys::flock(file.fd.as_fd(), libc::LOCK_UN);
        }
        self.io_release(&file.inode, file.io);
        if file.writable
            && self.config.cache == CachePolicy::Auto
            && let Ok(st) = sys::fstat(file.fd.as_fd())
        {
            // Our own writes went through the kernel's cache (write-through):
            // what it holds now matches this state.
            *lock(&file.inode.stamp) = Some(stamp_of(&st));
        }
    }

    pub(crate) fn do_flush(&self, ino: u64, fh: u64) -> SysResult<()> {
        let file = self.file(ino, fh)?;
        if file.posix_locked.load(Ordering::Acquire) {
            // close(2) releases the caller's POSIX locks on the file.
            let mut lk = whole_file_unlock();
            sys::fcntl_lock(file.fd.as_fd(), libc::F_OFD_SETLK, &mut lk)?;
        }
        Ok(())
    }

    pub(crate) fn do_fsync(&self, ino: u64, fh: u64, datasync: bool) -> SysResult<()> {
        let file = self.file(ino, fh)?;
        sys::fsync(file.fd.as_fd(), datasync)
    }

    pub(crate) fn do_fallocate(
        &self,
        caller: &RequestHeader,
        ino: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    ) -> SysResult<()> {
        self.writable()?;
        let file = self.file(ino, fh)?;
        self.clear_setid(file.fd.as_fd(), caller, Change::Unflagged)?;
        sys::fallocate(file.fd.as_fd(), mode, offset, length)
    }

    pub(crate) fn do_lseek(&self, ino: u64, fh: u64, offset: u64, whence: u32) -> SysResult<u64> {
        let file = self.file(ino, fh)?;
        let offset = i64::try_from(offset).map_err(|_| Errno::EINVAL)?;
        sys::lseek(file.fd.as_fd(), offset, whence as libc::c_int)
    }

    pub(crate) fn do_copy_file_range(
        &self,
        caller: &RequestHeader,
        op: &op::CopyFileRange<'_>,
    ) -> SysResult<u64> {
        self.writable()?;
        if op.flags() != 0 {
            return Err(Errno::EINVAL);
        }
        let src = self.file(op.ino(), op.fh_in())?;
        let dst = self.file(op.ino_out(), op.fh_out())?;
        self.clear_setid(dst.fd.as_fd(), caller, Change::Unflagged)?;
        sys::copy_file_range(
            src.fd.as_fd(),
            op.off_in(),
            dst.fd.as_fd(),
            op.off_out(),
            op.len(),
        )
    }

    pub(crate) fn do_syncfs(&self, ino: u64) -> SysResult<()> {
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
pub(crate) fn whole_file_unlock() -> libc::flock {
    libc::flock {
        l_type: libc::F_UNLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}
