//! Reaching an inode through our own `/proc/self/fd` entries.
//!
//! Every known inode is held as an `O_PATH` descriptor, which can name the
//! inode in `*at` calls but cannot read, write or list it. Two things need
//! more than that and go through `/proc/self/fd/N`, a "magic link" that the
//! kernel resolves to exactly the inode descriptor `N` refers to, without
//! any path walk on the served tree:
//!
//! - **Reopening for I/O** ([`ProcFds::reopen`]): opening `/proc/self/fd/N`
//!   with real access flags. This is done only for regular files and
//!   directories, checked by the caller's stored file type *before* the
//!   open. The type of the inode behind an `O_PATH` descriptor cannot change,
//!   so the check cannot race. Opening a FIFO, socket or device node this way
//!   could block, have side effects in a driver or reach a device the client
//!   may not open, and a symlink's `O_PATH` descriptor must never be turned
//!   into an open of its target, so those are refused (`ENXIO`).
//! - **Path-only calls** ([`ProcPath`]): the xattr calls and chmod have no
//!   descriptor-relative form that works on `O_PATH` descriptors on every
//!   kernel. The *following* variants (`getxattr`, not `lgetxattr`) are used
//!   on the `/proc/self/fd/N` path: following the magic link jumps to the
//!   inode the descriptor holds and the walk ends there, so for an `O_PATH`
//!   descriptor of a symlink the call acts on the symlink itself, never on
//!   its target. (`lgetxattr` would instead act on the procfs link.) These
//!   calls never open the inode, so they are safe for every file type.
//!
//! The directory `/proc/self/fd` is opened once and checked to be procfs,
//! so a bind mount over `/proc` cannot redirect the reopen.

use super::sys::{self, SysResult};
use fuselage_core::Errno;
use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// File-type bits of a mode (`S_IFMT`).
pub(crate) const S_IFMT: u32 = libc::S_IFMT;
/// Regular file type bits.
pub(crate) const S_IFREG: u32 = libc::S_IFREG;
/// Directory type bits.
pub(crate) const S_IFDIR: u32 = libc::S_IFDIR;

/// Open flags a reopen keeps; everything else (`O_CREAT`, `O_EXCL`,
/// `O_NOCTTY`, `O_NOFOLLOW`, `O_PATH`, `O_TMPFILE`, the kernel's internal
/// `FMODE_*` bits) is dropped.
const REOPEN_FLAGS: libc::c_int = libc::O_ACCMODE
    | libc::O_APPEND
    | libc::O_DIRECT
    | libc::O_DSYNC
    | libc::O_SYNC
    | libc::O_NOATIME
    | libc::O_TRUNC
    | libc::O_LARGEFILE
    | libc::O_NONBLOCK
    | libc::O_DIRECTORY;

/// The open `/proc/self/fd` directory.
#[derive(Debug)]
pub(crate) struct ProcFds {
    dir: OwnedFd,
}

impl ProcFds {
    /// Opens `/proc/self/fd` and checks that it is procfs.
    pub(crate) fn open() -> SysResult<ProcFds> {
        let dir = sys::open_path(c"/proc/self/fd", libc::O_PATH | libc::O_DIRECTORY)?;
        let st = sys::fstatfs(dir.as_fd())?;
        // The field's type differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        if st.f_type as i64 != libc::PROC_SUPER_MAGIC as i64 {
            return Err(Errno::ENODEV);
        }
        Ok(ProcFds { dir })
    }

    /// Opens the inode `fd` refers to anew with `flags` (see the module docs
    /// for why only regular files and directories, given as `kind`, may be
    /// reopened).
    pub(crate) fn reopen(
        &self,
        fd: BorrowedFd<'_>,
        kind: u32,
        flags: libc::c_int,
    ) -> SysResult<OwnedFd> {
        let mut flags = flags & REOPEN_FLAGS;
        match kind & S_IFMT {
            S_IFREG => flags &= !libc::O_DIRECTORY,
            S_IFDIR => flags |= libc::O_DIRECTORY,
            _ => return Err(Errno::ENXIO),
        }
        let name = FdName::new(fd.as_raw_fd());
        // SECURITY: this follows the /proc magic link on purpose. It resolves
        // to the inode `fd` already holds (no walk of the served tree, so no
        // rename or symlink swap on the host can redirect it), and `kind`,
        // the immutable type of that inode recorded when it was first
        // opened, was checked above to be a regular file or directory.
        sys::openat(self.dir.as_fd(), name.as_cstr(), flags)
    }

    /// An `O_PATH` descriptor for the inode an open descriptor refers to
    /// (for files created or opened by us, to keep as the inode's anchor).
    /// `O_PATH` opens never open the inode itself, so any type is safe.
    pub(crate) fn path_fd(&self, fd: BorrowedFd<'_>) -> SysResult<OwnedFd> {
        let name = FdName::new(fd.as_raw_fd());
        sys::openat(self.dir.as_fd(), name.as_cstr(), libc::O_PATH)
    }
}

/// A descriptor number as a NUL-terminated decimal name, on the stack.
struct FdName {
    buf: [u8; 12],
    start: usize,
}

impl FdName {
    fn new(fd: RawFd) -> FdName {
        let mut buf = [0u8; 12];
        let mut i = buf.len() - 1; // buf[11] stays NUL
        let mut n = fd.max(0) as u32;
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        FdName { buf, start: i }
    }

    fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_with_nul(&self.buf[self.start..]).unwrap_or(c"-1")
    }
}

/// `/proc/self/fd/N` for a descriptor, NUL-terminated, on the stack.
pub(crate) struct ProcPath {
    buf: [u8; 32],
    len: usize,
}

impl ProcPath {
    /// The path naming `fd`.
    pub(crate) fn new(fd: BorrowedFd<'_>) -> ProcPath {
        const PREFIX: &[u8] = b"/proc/self/fd/";
        let name = FdName::new(fd.as_raw_fd());
        let digits = name.as_cstr().to_bytes_with_nul();
        let mut buf = [0u8; 32];
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        buf[PREFIX.len()..PREFIX.len() + digits.len()].copy_from_slice(digits);
        ProcPath {
            buf,
            len: PREFIX.len() + digits.len(),
        }
    }

    /// The path as a C string.
    pub(crate) fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_with_nul(&self.buf[..self.len]).unwrap_or(c"/proc/self/fd/-1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(FdName::new(0).as_cstr(), c"0");
        assert_eq!(FdName::new(19999).as_cstr(), c"19999");
        assert_eq!(FdName::new(i32::MAX).as_cstr(), c"2147483647");
        let f = std::fs::File::open("/").unwrap();
        let p = ProcPath::new(f.as_fd());
        assert_eq!(
            p.as_cstr().to_str().unwrap(),
            format!("/proc/self/fd/{}", f.as_raw_fd())
        );
    }

    #[test]
    fn reopen_refuses_special_files() {
        let procs = ProcFds::open().unwrap();
        let null = sys::open_path(c"/dev/null", libc::O_PATH).unwrap();
        assert_eq!(
            procs
                .reopen(null.as_fd(), libc::S_IFCHR, libc::O_RDONLY)
                .unwrap_err(),
            Errno::ENXIO
        );
        let root = sys::open_path(c"/", libc::O_PATH).unwrap();
        let dir = procs.reopen(root.as_fd(), S_IFDIR, libc::O_RDONLY).unwrap();
        let mut buf = [0u64; 512];
        // SAFETY: a u64 array viewed as bytes for getdents64.
        let bytes = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), 4096) };
        assert!(sys::getdents64(dir.as_fd(), bytes).unwrap() > 0);
    }
}
