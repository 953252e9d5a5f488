//! The low-level, inode-based [`Filesystem`] trait that backends implement.
//!
//! One method per operation. Each gets the request header (`uid`, `gid`,
//! `pid`, `unique`), one borrowed view of its operation (the [`op`] module:
//! `op::Read` with `ino()`, `fh()`, `offset()`, `size()`, ...) that reads
//! the kernel's struct in place, and a typed reply handle. Every method has
//! a default that answers `ENOSYS` (or does nothing, for requests without
//! a reply), so a backend implements only what it supports; the kernel stops sending some
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
use crate::op;
use crate::reply::*;

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

    /// Encodes the changes as the kernel would send them: the inverse of
    /// [`SetAttr::from_wire`] (for tests and for filesystems that forward a
    /// changed request).
    pub fn to_wire(&self) -> fuse_setattr_in {
        let mut a = fuse_setattr_in::default();
        let mut set = |bit: u32| a.valid |= bit;
        if self.mode.is_some() {
            set(FATTR_MODE);
        }
        if self.uid.is_some() {
            set(FATTR_UID);
        }
        if self.gid.is_some() {
            set(FATTR_GID);
        }
        if self.size.is_some() {
            set(FATTR_SIZE);
        }
        if self.ctime.is_some() {
            set(FATTR_CTIME);
        }
        if self.fh.is_some() {
            set(FATTR_FH);
        }
        if self.lock_owner.is_some() {
            set(FATTR_LOCKOWNER);
        }
        if self.kill_suidgid {
            set(FATTR_KILL_SUIDGID);
        }
        for (time, set_bit, now_bit) in [
            (self.atime, FATTR_ATIME, FATTR_ATIME_NOW),
            (self.mtime, FATTR_MTIME, FATTR_MTIME_NOW),
        ] {
            match time {
                Some(TimeOrNow::Now) => set(set_bit | now_bit),
                Some(TimeOrNow::Specific { .. }) => set(set_bit),
                None => {}
            }
        }
        a.mode = self.mode.unwrap_or(0);
        a.uid = self.uid.unwrap_or(0);
        a.gid = self.gid.unwrap_or(0);
        a.size = self.size.unwrap_or(0);
        a.fh = self.fh.unwrap_or(0);
        a.lock_owner = self.lock_owner.unwrap_or(0);
        if let Some(TimeOrNow::Specific { secs, nsecs }) = self.atime {
            (a.atime, a.atimensec) = (secs as u64, nsecs);
        }
        if let Some(TimeOrNow::Specific { secs, nsecs }) = self.mtime {
            (a.mtime, a.mtimensec) = (secs as u64, nsecs);
        }
        if let Some((secs, nsecs)) = self.ctime {
            (a.ctime, a.ctimensec) = (secs as u64, nsecs);
        }
        a
    }
}

/// An inode-based filesystem served over FUSE.
///
/// Each method gets the request header (the caller's `uid`, `gid`, `pid`;
/// `unique`), one [`op`] view of its operation's arguments, and its reply
/// handle. Methods are generic over the transport's [`ReplySink`];
/// implement them with the same generic signature. `&self` is shared by all
/// worker threads: use interior mutability with the locking your data needs.
///
/// A filesystem that wraps others (an overlay, a router) forwards the view
/// and the reply handle unchanged.
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

    /// Looks up `op.name()` in directory `op.parent()`; a successful answer
    /// counts one lookup reference on the returned inode.
    fn lookup<S: ReplySink>(&self, req: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Drops `op.nlookup()` lookup references to `op.ino()`.
    fn forget(&self, req: &RequestHeader, op: op::Forget) {}

    /// Drops references to many inodes; defaults to [`Filesystem::forget`]
    /// for each.
    fn batch_forget(&self, req: &RequestHeader, op: op::BatchForget<'_>) {
        for one in op.iter() {
            self.forget(req, one);
        }
    }

    /// Attributes of `op.ino()` (`op.fh()` set when asked through an open
    /// file).
    fn getattr<S: ReplySink>(&self, req: &RequestHeader, op: op::Getattr<'_>, reply: ReplyAttr<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Changes attributes of `op.ino()` (`op.attr()` decodes which).
    fn setattr<S: ReplySink>(&self, req: &RequestHeader, op: op::Setattr<'_>, reply: ReplyAttr<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Target of symlink `op.ino()`.
    fn readlink<S: ReplySink>(&self, req: &RequestHeader, op: op::Readlink, reply: ReplyData<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Creates symlink `op.name()` in `op.parent()` pointing to
    /// `op.target()`.
    fn symlink<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Symlink<'_>,
        reply: ReplyEntry<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Creates a node (file, device, fifo, socket).
    fn mknod<S: ReplySink>(&self, req: &RequestHeader, op: op::Mknod<'_>, reply: ReplyEntry<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Creates a directory.
    fn mkdir<S: ReplySink>(&self, req: &RequestHeader, op: op::Mkdir<'_>, reply: ReplyEntry<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Removes a file.
    fn unlink<S: ReplySink>(&self, req: &RequestHeader, op: op::Unlink<'_>, reply: ReplyEmpty<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Removes an empty directory.
    fn rmdir<S: ReplySink>(&self, req: &RequestHeader, op: op::Rmdir<'_>, reply: ReplyEmpty<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Renames `parent/name` to `newparent/newname`; `op.flags()` holds
    /// `RENAME_NOREPLACE` (1), `RENAME_EXCHANGE` (2), `RENAME_WHITEOUT` (4).
    fn rename<S: ReplySink>(&self, req: &RequestHeader, op: op::Rename<'_>, reply: ReplyEmpty<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Creates hard link `op.newparent()/op.newname()` to `op.ino()`.
    fn link<S: ReplySink>(&self, req: &RequestHeader, op: op::Link<'_>, reply: ReplyEntry<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Opens `op.ino()` with open(2) `op.flags()`; `op.open_flags()` holds
    /// `FUSE_OPEN_KILL_SUIDGID`.
    fn open<S: ReplySink>(&self, req: &RequestHeader, op: op::Open<'_>, reply: ReplyOpen<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Reads up to `op.size()` bytes at `op.offset()`.
    fn read<S: ReplySink>(&self, req: &RequestHeader, op: op::Read<'_>, reply: ReplyData<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Writes `op.data()` at `op.offset()`; `op.write_flags()` holds
    /// `FUSE_WRITE_*`.
    fn write<S: ReplySink>(&self, req: &RequestHeader, op: op::Write<'_>, reply: ReplyWrite<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Filesystem statistics.
    fn statfs<S: ReplySink>(&self, req: &RequestHeader, op: op::Statfs, reply: ReplyStatfs<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Last close of an open file.
    fn release<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Release<'_>,
        reply: ReplyEmpty<S>,
    ) {
        reply.ok()
    }

    /// Flushes an open file's data (`op.datasync()`: data only).
    fn fsync<S: ReplySink>(&self, req: &RequestHeader, op: op::Fsync<'_>, reply: ReplyEmpty<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Sets extended attribute `op.name()`.
    fn setxattr<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Setxattr<'_>,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Gets extended attribute `op.name()`; `op.size()` 0 asks for the size
    /// only.
    fn getxattr<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Getxattr<'_>,
        reply: ReplyXattr<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Lists extended attribute names; `op.size()` 0 asks for the size only.
    fn listxattr<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Listxattr<'_>,
        reply: ReplyXattr<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Removes extended attribute `op.name()`.
    fn removexattr<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Removexattr<'_>,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// close(2) on an open file (may come several times per open).
    fn flush<S: ReplySink>(&self, req: &RequestHeader, op: op::Flush<'_>, reply: ReplyEmpty<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Opens directory `op.ino()`.
    fn opendir<S: ReplySink>(&self, req: &RequestHeader, op: op::Opendir<'_>, reply: ReplyOpen<S>) {
        reply.opened(0, 0)
    }

    /// Reads directory entries starting after `op.offset()`.
    fn readdir<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Readdir<'_>,
        reply: ReplyDirectory<'_, S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Reads directory entries with attributes starting after `op.offset()`.
    fn readdirplus<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Readdirplus<'_>,
        reply: ReplyDirectory<'_, S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Last close of an open directory.
    fn releasedir<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Releasedir<'_>,
        reply: ReplyEmpty<S>,
    ) {
        reply.ok()
    }

    /// Synchronizes a directory.
    fn fsyncdir<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Fsyncdir<'_>,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Tests for a lock conflicting with `op.lock()`.
    fn getlk<S: ReplySink>(&self, req: &RequestHeader, op: op::Getlk<'_>, reply: ReplyLock<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Acquires or releases a lock; `op.flock()` for BSD locks,
    /// `op.sleep()` to wait.
    fn setlk<S: ReplySink>(&self, req: &RequestHeader, op: op::Setlk<'_>, reply: ReplyEmpty<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// access(2) check (only sent without `default_permissions`).
    fn access<S: ReplySink>(&self, req: &RequestHeader, op: op::Access<'_>, reply: ReplyEmpty<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Creates and opens file `op.name()` in `op.parent()`.
    fn create<S: ReplySink>(&self, req: &RequestHeader, op: op::Create<'_>, reply: ReplyCreate<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// The kernel asks to interrupt request `op.unique()` (it still needs
    /// exactly one reply: `EINTR` or its result).
    fn interrupt(&self, req: &RequestHeader, op: op::Interrupt<'_>) {}

    /// Maps a file block to a device block.
    fn bmap<S: ReplySink>(&self, req: &RequestHeader, op: op::Bmap<'_>, reply: ReplyBmap<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// ioctl(2) on an open file.
    fn ioctl<S: ReplySink>(&self, req: &RequestHeader, op: op::Ioctl<'_>, reply: ReplyIoctl<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// poll(2) on an open file; `op.kh()` is the handle for a later wakeup.
    fn poll<S: ReplySink>(&self, req: &RequestHeader, op: op::Poll<'_>, reply: ReplyPoll<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Data the kernel returns for a NOTIFY_RETRIEVE (`req.unique` is the
    /// notification's id).
    fn notify_reply(&self, req: &RequestHeader, op: op::NotifyReply<'_>) {}

    /// fallocate(2) with `op.mode()` (`FALLOC_FL_*`).
    fn fallocate<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Fallocate<'_>,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// lseek(2) for `SEEK_DATA` (3) and `SEEK_HOLE` (4).
    fn lseek<S: ReplySink>(&self, req: &RequestHeader, op: op::Lseek<'_>, reply: ReplyLseek<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// copy_file_range(2) from (`ino`, `fh_in`, `off_in`) to the out file.
    fn copy_file_range<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::CopyFileRange<'_>,
        reply: ReplyCopyFormatted<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// DAX mapping setup (virtio-fs only).
    fn setupmapping<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Setupmapping<'_>,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// DAX mapping removal (virtio-fs only).
    fn removemapping<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Removemapping<'_>,
        reply: ReplyEmpty<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// syncfs(2).
    fn syncfs<S: ReplySink>(&self, req: &RequestHeader, op: op::Syncfs, reply: ReplyEmpty<S>) {
        reply.error(Errno::ENOSYS)
    }

    /// Creates an unnamed temporary file in `op.parent()` (O_TMPFILE).
    fn tmpfile<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Tmpfile<'_>,
        reply: ReplyCreate<S>,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// statx(2) of `op.ino()`.
    fn statx<S: ReplySink>(&self, req: &RequestHeader, op: op::Statx<'_>, reply: ReplyStatx<S>) {
        reply.error(Errno::ENOSYS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setattr_round_trips_through_the_wire() {
        let all = SetAttr {
            mode: Some(0o4755),
            uid: Some(1),
            gid: Some(2),
            size: Some(3),
            atime: Some(TimeOrNow::Now),
            mtime: Some(TimeOrNow::Specific { secs: 5, nsecs: 6 }),
            ctime: Some((7, 8)),
            fh: Some(9),
            lock_owner: Some(10),
            kill_suidgid: true,
        };
        for a in [all, SetAttr::default()] {
            assert_eq!(SetAttr::from_wire(&a.to_wire()), a);
        }
    }
}
