//! Extended attributes (and through them POSIX ACLs): GETXATTR, LISTXATTR,
//! SETXATTR, REMOVEXATTR.
//!
//! All four act on the `/proc/self/fd/N` path of the inode's `O_PATH`
//! descriptor with the *following* calls (`getxattr`, not `lgetxattr`): the
//! magic link resolves to the inode the descriptor holds, and for a symlink
//! that is the symlink itself, so its own attributes are read and written,
//! never its target's (see [`proc_fd`](super::proc_fd)). Nothing is opened,
//! so this is safe for every file type. ACLs (`system.posix_acl_access`,
//! `system.posix_acl_default`) pass through in the kernel's binary format
//! with host ids; the host kernel updates the mode from an access ACL.
//! Namespace rules (`trusted.*` needs CAP_SYS_ADMIN, `security.*` the LSM's
//! checks, `user.*` write permission) are enforced by the client's kernel
//! before a request reaches the server.

use super::PassthroughFs;
use super::proc_fd::ProcPath;
use super::sys::{self, SysResult};
use fuselage_core::abi::FUSE_SETXATTR_ACL_KILL_SGID;
use fuselage_core::reply::{ReplySink, ReplyXattr};
use std::cell::RefCell;
use std::ffi::CStr;
use std::os::fd::AsFd;

/// The largest value or list (`XATTR_SIZE_MAX`).
const XATTR_SIZE_MAX: usize = 65536;

thread_local! {
    /// Values and lists are read into this, grown once per thread.
    static XATTR_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn with_buf<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    XATTR_BUF.with(|b| {
        let mut b = b.borrow_mut();
        if b.len() < len {
            b.resize(len, 0);
        }
        f(&mut b[..len])
    })
}

impl PassthroughFs {
    pub(crate) fn do_getxattr<S: ReplySink>(
        &self,
        ino: u64,
        name: &CStr,
        size: u32,
        reply: ReplyXattr<S>,
    ) {
        let inode = match self.inode(ino) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        let fd = match self.store.fd(&inode) {
            Ok(fd) => fd,
            Err(e) => return reply.error(e),
        };
        let path = ProcPath::new(fd.as_fd());
        if size == 0 {
            return match sys::getxattr(path.as_cstr(), name, &mut []) {
                Ok(n) => reply.size(n as u32),
                Err(e) => reply.error(e),
            };
        }
        with_buf(
            (size as usize).min(XATTR_SIZE_MAX),
            |buf| match sys::getxattr(path.as_cstr(), name, buf) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(e),
            },
        )
    }

    pub(crate) fn do_listxattr<S: ReplySink>(&self, ino: u64, size: u32, reply: ReplyXattr<S>) {
        let inode = match self.inode(ino) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        let fd = match self.store.fd(&inode) {
            Ok(fd) => fd,
            Err(e) => return reply.error(e),
        };
        let path = ProcPath::new(fd.as_fd());
        if size == 0 {
            return match sys::listxattr(path.as_cstr(), &mut []) {
                Ok(n) => reply.size(n as u32),
                Err(e) => reply.error(e),
            };
        }
        with_buf(
            (size as usize).min(XATTR_SIZE_MAX),
            |buf| match sys::listxattr(path.as_cstr(), buf) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(e),
            },
        )
    }

    pub(crate) fn do_setxattr(
        &self,
        ino: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
        setxattr_flags: u32,
    ) -> SysResult<()> {
        self.writable()?;
        let inode = self.inode(ino)?;
        let fd = self.store.fd(&inode)?;
        let path = ProcPath::new(fd.as_fd());
        sys::setxattr(path.as_cstr(), name, value, flags as libc::c_int)?;
        if setxattr_flags & FUSE_SETXATTR_ACL_KILL_SGID != 0 {
            // Setting an access ACL as a caller outside the file's group and
            // without CAP_FSETID clears set-gid (the VFS rule); the server's
            // own credentials would keep it.
            let st = self.stat(fd.as_fd())?;
            let mode = u32::from(st.stx_mode);
            if mode & libc::S_ISGID != 0 {
                self.chmod_inode(fd.as_fd(), mode & 0o7777 & !libc::S_ISGID)?;
            }
        }
        Ok(())
    }

    pub(crate) fn do_removexattr(&self, ino: u64, name: &CStr) -> SysResult<()> {
        self.writable()?;
        let inode = self.inode(ino)?;
        let fd = self.store.fd(&inode)?;
        let path = ProcPath::new(fd.as_fd());
        sys::removexattr(path.as_cstr(), name)
    }
}
