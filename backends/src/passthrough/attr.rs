//! Attributes: GETATTR, SETATTR, STATX, STATFS, ACCESS.
//!
//! SETATTR applies its changes in the order that keeps an explicit request
//! winning: owner first (a host chown clears set-uid/set-gid bits of
//! non-directories by itself), then mode, then size, then times (a truncate
//! updates mtime). Each goes to the inode itself: fchownat, fchmodat2 (or
//! chmod of the `/proc/self/fd` path on kernels before 6.6) and utimensat
//! with `AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW`, which take `O_PATH`
//! descriptors and honour `UTIME_NOW`/`UTIME_OMIT`; a size change is an
//! ftruncate of the open file the kernel names (`FATTR_FH`) when writable,
//! else of the regular file reopened write-only.

use super::credentials::FsIds;
use super::sys::{self, SysResult};
use super::{PassthroughFs, stat};
use crate::setid::{self, Change};
use fuselage_core::abi::fuse_kstatfs;
use fuselage_core::{Errno, RequestHeader, SetAttr, TimeOrNow};
use std::os::fd::{AsFd, BorrowedFd};

fn timespec(t: Option<TimeOrNow>) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(TimeOrNow::Specific { secs, nsecs }) => libc::timespec {
            tv_sec: secs,
            tv_nsec: i64::from(nsecs.min(999_999_999)),
        },
    }
}

impl PassthroughFs {
    pub(crate) fn do_getattr(&self, ino: u64, fh: Option<u64>) -> SysResult<libc::statx> {
        if let Some(fh) = fh
            && let Ok(file) = self.file(ino, fh)
        {
            return self.stat(file.fd.as_fd());
        }
        let inode = self.inode(ino)?;
        let fd = self.store.fd(&inode)?;
        self.stat(fd.as_fd())
    }

    pub(crate) fn do_setattr(
        &self,
        caller: &RequestHeader,
        ino: u64,
        a: &SetAttr,
    ) -> SysResult<libc::statx> {
        let changes = a.mode.is_some()
            || a.uid.is_some()
            || a.gid.is_some()
            || a.size.is_some()
            || a.atime.is_some()
            || a.mtime.is_some()
            || a.kill_suidgid;
        if changes {
            self.writable()?;
        }
        let inode = self.inode(ino)?;
        let file = a.fh.and_then(|fh| self.file(ino, fh).ok());
        let anchor = self.store.fd(&inode)?;
        let fd = anchor.as_fd();
        // Set-id bits the kernel asks us to clear (`FATTR_KILL_SUIDGID`),
        // unless the request sets a mode of its own; see `crate::setid`.
        let kill = a.kill_suidgid && a.mode.is_none();

        if a.uid.is_some() || a.gid.is_some() {
            // The host's chown, made with the server's capabilities, clears
            // set-uid and a group-executable set-gid by itself; a set-gid
            // bit that the caller loses for not being in the old group goes
            // afterwards.
            let lost = if kill {
                let st = self.stat(fd)?;
                setid::bits_to_clear(u32::from(st.stx_mode), st.stx_gid, caller, Change::Chown)
            } else {
                0
            };
            sys::fchown_empty(fd, a.uid.unwrap_or(u32::MAX), a.gid.unwrap_or(u32::MAX))?;
            if lost != 0 {
                let mode = u32::from(self.stat(fd)?.stx_mode);
                if mode & lost != 0 {
                    self.chmod_inode(fd, mode & 0o7777 & !lost)?;
                }
            }
        } else if kill {
            // A truncate, or the flag alone: clear before the change (the
            // server's CAP_FSETID keeps the host from deciding again).
            self.clear_setid(fd, caller, Change::Flagged { flagged: true })?;
        }
        if let Some(mode) = a.mode {
            match &file {
                Some(f) => sys::fchmod(f.fd.as_fd(), mode)?,
                None => self.chmod_inode(fd, mode)?,
            }
        }
        if let Some(size) = a.size {
            if inode.is_dir() {
                return Err(Errno::EISDIR);
            }
            if !inode.is_reg() {
                return Err(Errno::EINVAL);
            }
            match file.as_ref().filter(|f| f.writable) {
                Some(f) => sys::ftruncate(f.fd.as_fd(), size)?,
                None => {
                    let w = self.procs.reopen(fd, inode.kind, libc::O_WRONLY)?;
                    sys::ftruncate(w.as_fd(), size)?;
                }
            }
        }
        if a.atime.is_some() || a.mtime.is_some() {
            let times = [timespec(a.atime), timespec(a.mtime)];
            sys::utimens_empty(fd, &times)?;
        }
        self.stat(fd)
    }

    /// Clears the set-id bits that `caller` loses by changing the inode
    /// `fd` refers to (any descriptor, `O_PATH` included), by the kernel's
    /// rules for `change` (see [`crate::setid`]). Called before the change:
    /// the server's own `CAP_FSETID` then keeps the host from deciding
    /// again, with the server's groups instead of the caller's.
    pub(crate) fn clear_setid(
        &self,
        fd: BorrowedFd<'_>,
        caller: &RequestHeader,
        change: Change,
    ) -> SysResult<()> {
        let st = self.stat(fd)?;
        let mode = u32::from(st.stx_mode);
        let kill = setid::bits_to_clear(mode, st.stx_gid, caller, change);
        if kill != 0 {
            self.chmod_inode(fd, mode & 0o7777 & !kill)?;
        }
        Ok(())
    }

    pub(crate) fn do_statx(
        &self,
        ino: u64,
        fh: Option<u64>,
        sx_flags: u32,
        sx_mask: u32,
    ) -> SysResult<libc::statx> {
        let sync = sx_flags as i32 & libc::AT_STATX_SYNC_TYPE;
        let mask = sx_mask | stat::STATX_MASK;
        if let Some(fh) = fh
            && let Ok(file) = self.file(ino, fh)
        {
            return sys::statx(file.fd.as_fd(), sync, mask);
        }
        let inode = self.inode(ino)?;
        let fd = self.store.fd(&inode)?;
        sys::statx(fd.as_fd(), sync, mask)
    }

    pub(crate) fn do_statfs(&self, ino: u64) -> SysResult<fuse_kstatfs> {
        let inode = self.inode(ino)?;
        let fd = self.store.fd(&inode)?;
        Ok(stat::kstatfs_of(&sys::fstatfs(fd.as_fd())?))
    }

    pub(crate) fn do_access(&self, req: &RequestHeader, ino: u64, mask: u32) -> SysResult<()> {
        let inode = self.inode(ino)?;
        let fd = self.store.fd(&inode)?;
        let mask = mask & 0o7;
        if mask == 0 {
            return Ok(());
        }
        if mask & 0o2 != 0 {
            self.writable()?;
        }
        let _ids = if self.act_as_caller && (req.uid, req.gid) != self.server_ids {
            Some(FsIds::switch(req.uid, req.gid)?)
        } else {
            None
        };
        sys::access_empty(fd.as_fd(), mask)
    }
}
