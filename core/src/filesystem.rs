//! The low-level, inode-based [`Filesystem`] trait that backends implement.
//!
//! One method per operation. Each gets the request header (`uid`, `gid`,
//! `pid`, `unique`), the operation's decoded arguments borrowed from the
//! request buffer, and a typed reply handle. Every method has a default that
//! answers `ENOSYS` (or does nothing, for requests without a reply), so a
//! backend implements only what it supports; the kernel stops sending some
//! opcodes after their first `ENOSYS`.
//!
//! # Ownership and deferred replies
//!
//! Arguments borrow the transport's request buffer and are valid only during
//! the call: the transport reuses the buffer for its next request as soon as
//! the method returns. To answer later, from another thread, call `defer()`
//! on the reply handle: it returns a `Send + 'static` handle over a
//! [`DeferredSink`] (no allocation: a pointer and
//! two words of transport state) that owns only the request's `unique`, or
//! gives the handle back when the transport cannot defer (the io_uring
//! read/write transport; answer before returning then). Copy what you still
//! need from the arguments first.
//!
//! Requests in flight are bounded by the kernel, not by the server: it sends
//! at most `max_background` background requests (readahead, writeback) plus
//! one synchronous request per blocked caller thread. On FUSE-over-io_uring a
//! deferred request also holds its ring entry until answered, so the ring
//! depth bounds the requests in flight per queue.

use crate::abi::*;
use crate::error::Errno;
use crate::init::{InitConfig, KernelInit, Negotiated};
use crate::reply::*;
use core::ffi::CStr;

/// The request header every method receives (`uid`, `gid`, `pid` of the
/// caller; `nodeid`; `unique`).
pub type RequestHeader = fuse_in_header;

/// A timestamp to set: a given time or the server's "now".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOrNow {
    /// Seconds and nanoseconds since the epoch.
    Specific {
        /// Seconds.
        secs: i64,
        /// Nanoseconds.
        nsecs: u32,
    },
    /// The current time (UTIME_NOW).
    Now,
}

/// The changes a SETATTR asks for; `None` leaves a field alone (UTIME_OMIT
/// for times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetAttr {
    /// New permission bits (and file type bits as the kernel sends them).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeOrNow>,
    /// New modification time.
    pub mtime: Option<TimeOrNow>,
    /// New change time.
    pub ctime: Option<(i64, u32)>,
    /// The open file the change comes through (ftruncate, fchmod).
    pub fh: Option<u64>,
    /// Lock owner (for mandatory locking checks).
    pub lock_owner: Option<u64>,
    /// Clear setuid/setgid (`FATTR_KILL_SUIDGID`, with HANDLE_KILLPRIV_V2).
    pub kill_suidgid: bool,
}

impl SetAttr {
    /// Decodes `fuse_setattr_in` by its `valid` bits.
    pub fn from_wire(a: &fuse_setattr_in) -> SetAttr {
        let v = a.valid;
        let has = |bit: u32| v & bit != 0;
        let time = |set: u32, now: u32, secs: u64, nsecs: u32| {
            if has(now) {
                Some(TimeOrNow::Now)
            } else if has(set) {
                Some(TimeOrNow::Specific {
                    secs: secs as i64,
                    nsecs,
                })
            } else {
                None
            }
        };
        SetAttr {
            mode: has(FATTR_MODE).then_some(a.mode),
            uid: has(FATTR_UID).then_some(a.uid),
            gid: has(FATTR_GID).then_some(a.gid),
            size: has(FATTR_SIZE).then_some(a.size),
            atime: time(FATTR_ATIME, FATTR_ATIME_NOW, a.atime, a.atimensec),
            mtime: time(FATTR_MTIME, FATTR_MTIME_NOW, a.mtime, a.mtimensec),
            ctime: has(FATTR_CTIME).then_some((a.ctime as i64, a.ctimensec)),
            fh: has(FATTR_FH).then_some(a.fh),
            lock_owner: has(FATTR_LOCKOWNER).then_some(a.lock_owner),
            kill_suidgid: has(FATTR_KILL_SUIDGID),
        }
    }
}

/// An inode-based filesystem served over FUSE.
///
/// Methods are generic over the transport's [`ReplySink`]; implement them
/// with the same generic signature. `&self` is shared by all worker threads:
/// use interior mutability with the locking your data needs.
#[allow(unused_variables)]
pub trait Filesystem {
    /// INIT arrived: adjust what to ask for (`config`) from the kernel's
    /// offer. Returning an error refuses the connection.
    fn init(&self, kernel: &KernelInit, config: &mut InitConfig) -> Result<(), Errno> {
        Ok(())
    }

    /// INIT was agreed: the connection's final parameters.
    fn init_done(&self, negotiated: &Negotiated) {}

    /// The connection is being torn down (DESTROY).
    fn destroy(&self) {}

    /// Looks up `name` in directory `parent`; a successful answer counts one
    /// lookup reference on the returned inode.
    fn lookup<S: ReplySink>(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &CStr,
        reply: ReplyEntry<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Drops `nlookup` lookup references to `ino`.
    fn forget(&self, req: &RequestHeader, ino: u64, nlookup: u64) {}

    /// Drops references to many inodes; defaults to [`Filesystem::forget`]
    /// for each.
    fn batch_forget(&self, req: &RequestHeader, nodes: &[fuse_forget_one]) {
        for n in nodes {
            self.forget(req, n.nodeid, n.nlookup);
        }
    }

    /// Attributes of `ino` (`fh` set when asked through an open file).
    fn getattr<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: Option<u64>,
        reply: ReplyAttr<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Changes attributes of `ino`.
    fn setattr<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        attr: &SetAttr,
        reply: ReplyAttr<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Target of symlink `ino`.
    fn readlink<S: ReplySink>(&self, req: &RequestHeader, ino: u64, reply: ReplyData<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Creates symlink `name` in `parent` pointing to `target`.
    fn symlink<S: ReplySink>(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &CStr,
        target: &CStr,
        reply: ReplyEntry<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Creates a node (file, device, fifo, socket) `name` in `parent`.
    #[allow(clippy::too_many_arguments)]
    fn mknod<S: ReplySink>(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Creates directory `name` in `parent`.
    fn mkdir<S: ReplySink>(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Removes file `name` from `parent`.
    fn unlink<S: ReplySink>(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &CStr,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Removes empty directory `name` from `parent`.
    fn rmdir<S: ReplySink>(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &CStr,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Renames `parent/name` to `newparent/newname`; `flags` holds
    /// `RENAME_NOREPLACE` (1), `RENAME_EXCHANGE` (2), `RENAME_WHITEOUT` (4).
    #[allow(clippy::too_many_arguments)]
    fn rename<S: ReplySink>(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &CStr,
        newparent: u64,
        newname: &CStr,
        flags: u32,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Creates hard link `newparent/newname` to `ino`.
    fn link<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        newparent: u64,
        newname: &CStr,
        reply: ReplyEntry<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Opens `ino` with open(2) `flags`; `open_flags` holds
    /// `FUSE_OPEN_KILL_SUIDGID`.
    fn open<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        flags: u32,
        open_flags: u32,
        reply: ReplyOpen<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Reads up to `size` bytes at `offset`.
    #[allow(clippy::too_many_arguments)]
    fn read<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: u64,
        offset: u64,
        size: u32,
        flags: u32,
        lock_owner: Option<u64>,
        reply: ReplyData<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Writes `data` at `offset`; `write_flags` holds `FUSE_WRITE_*`.
    #[allow(clippy::too_many_arguments)]
    fn write<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
        write_flags: u32,
        flags: u32,
        lock_owner: Option<u64>,
        reply: ReplyWrite<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Filesystem statistics.
    fn statfs<S: ReplySink>(&self, req: &RequestHeader, ino: u64, reply: ReplyStatfs<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Last close of an open file.
    #[allow(clippy::too_many_arguments)]
    fn release<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: u64,
        flags: u32,
        release_flags: u32,
        lock_owner: u64,
        reply: ReplyEmpty<S>,
    ) {
        reply.ok()
    }

    /// Flushes an open file's data (`datasync`: data only).
    fn fsync<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: u64,
        datasync: bool,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Sets extended attribute `name`.
    #[allow(clippy::too_many_arguments)]
    fn setxattr<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
        setxattr_flags: u32,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Gets extended attribute `name`; `size` 0 asks for the size only.
    fn getxattr<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        name: &CStr,
        size: u32,
        reply: ReplyXattr<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Lists extended attribute names; `size` 0 asks for the size only.
    fn listxattr<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        size: u32,
        reply: ReplyXattr<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Removes extended attribute `name`.
    fn removexattr<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        name: &CStr,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// close(2) on an open file (may come several times per open).
    fn flush<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: u64,
        lock_owner: u64,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Opens directory `ino`.
    fn opendir<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        flags: u32,
        reply: ReplyOpen<S>,
    ) {
        reply.opened(0, 0)
    }

    /// Reads directory entries starting after `offset`.
    fn readdir<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: u64,
        offset: u64,
        reply: ReplyDirectory<'_, S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Reads directory entries with attributes starting after `offset`.
    fn readdirplus<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: u64,
        offset: u64,
        reply: ReplyDirectory<'_, S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Last close of an open directory.
    fn releasedir<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: u64,
        flags: u32,
        reply: ReplyEmpty<S>,
    ) {
        reply.ok()
    }

    /// Synchronizes a directory.
    fn fsyncdir<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: u64,
        datasync: bool,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Tests for a lock conflicting with `lock`.
    fn getlk<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: u64,
        owner: u64,
        lock: &fuse_file_lock,
        reply: ReplyLock<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Acquires or releases a lock; `flock` for BSD locks, `sleep` to wait.
    #[allow(clippy::too_many_arguments)]
    fn setlk<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: u64,
        owner: u64,
        lock: &fuse_file_lock,
        flock: bool,
        sleep: bool,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// access(2) check (only sent without `default_permissions`).
    fn access<S: ReplySink>(&self, req: &RequestHeader, ino: u64, mask: u32, reply: ReplyEmpty<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Creates and opens file `name` in `parent`.
    #[allow(clippy::too_many_arguments)]
    fn create<S: ReplySink>(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
        flags: u32,
        reply: ReplyCreate<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// The kernel asks to interrupt request `unique` (it still needs exactly
    /// one reply: `EINTR` or its result).
    fn interrupt(&self, req: &RequestHeader, unique: u64) {}

    /// Maps a file block to a device block.
    fn bmap<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        blocksize: u32,
        block: u64,
        reply: ReplyBmap<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// ioctl(2) on an open file.
    #[allow(clippy::too_many_arguments)]
    fn ioctl<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: u64,
        flags: u32,
        cmd: u32,
        arg: u64,
        in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// poll(2) on an open file; `kh` is the handle for a later wakeup.
    #[allow(clippy::too_many_arguments)]
    fn poll<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: u64,
        kh: u64,
        flags: u32,
        events: u32,
        reply: ReplyPoll<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Data the kernel returns for a NOTIFY_RETRIEVE (`req.unique` is the
    /// notification's id).
    fn notify_reply(&self, req: &RequestHeader, ino: u64, offset: u64, data: &[u8]) {}

    /// fallocate(2) with `mode` (`FALLOC_FL_*`).
    #[allow(clippy::too_many_arguments)]
    fn fallocate<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// lseek(2) for `SEEK_DATA` (3) and `SEEK_HOLE` (4).
    fn lseek<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: u64,
        offset: u64,
        whence: u32,
        reply: ReplyLseek<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// copy_file_range(2) from (`ino_in`, `fh_in`, `off_in`) to the out file.
    #[allow(clippy::too_many_arguments)]
    fn copy_file_range<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino_in: u64,
        fh_in: u64,
        off_in: u64,
        ino_out: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
        flags: u64,
        reply: ReplyCopyFormatted<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// DAX mapping setup (virtio-fs only).
    fn setupmapping<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        arg: &fuse_setupmapping_in,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// DAX mapping removal (virtio-fs only).
    fn removemapping<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        entries: crate::request::RemovemappingEntries<'_>,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// syncfs(2).
    fn syncfs<S: ReplySink>(&self, req: &RequestHeader, ino: u64, reply: ReplyEmpty<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Creates an unnamed temporary file in `parent` (O_TMPFILE).
    #[allow(clippy::too_many_arguments)]
    fn tmpfile<S: ReplySink>(
        &self,
        req: &RequestHeader,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
        flags: u32,
        reply: ReplyCreate<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// statx(2) of `ino`.
    #[allow(clippy::too_many_arguments)]
    fn statx<S: ReplySink>(
        &self,
        req: &RequestHeader,
        ino: u64,
        fh: Option<u64>,
        getattr_flags: u32,
        sx_flags: u32,
        sx_mask: u32,
        reply: ReplyStatx<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }
}
