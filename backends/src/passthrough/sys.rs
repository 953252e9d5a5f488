//! The host syscalls the passthrough backend makes, as small typed wrappers.
//!
//! Every function takes borrowed descriptors ([`BorrowedFd`]) and returns
//! owned ones ([`OwnedFd`]) or plain values, with failures as the [`Errno`]
//! the FUSE reply will carry. Names are single path components relative to a
//! directory descriptor: nothing here accepts a path from the root of the host
//! (the one exception, [`ProcPath`], names our own `/proc/self/fd` entries).
//!
//! Where libc has no wrapper (openat2, open_tree, mount_setattr, fchmodat2,
//! setfsuid as a per-thread raw syscall, capget/capset) the raw syscall is
//! made here, once, with its argument structs laid out as the kernel's uapi
//! headers define them.

use fuselage_core::Errno;
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Results of host syscalls.
pub(crate) type SysResult<T> = Result<T, Errno>;

/// The calling thread's errno as an [`Errno`].
pub(crate) fn last_errno() -> Errno {
    Errno(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

fn check(r: libc::c_int) -> SysResult<libc::c_int> {
    if r < 0 { Err(last_errno()) } else { Ok(r) }
}

fn check_size(r: libc::ssize_t) -> SysResult<usize> {
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r as usize)
    }
}

fn check_long(r: libc::c_long) -> SysResult<libc::c_long> {
    if r < 0 { Err(last_errno()) } else { Ok(r) }
}

/// Takes ownership of a descriptor a syscall just returned.
fn owned(r: libc::c_long) -> SysResult<OwnedFd> {
    let fd = check_long(r)? as RawFd;
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The empty path, for `*at` calls with `AT_EMPTY_PATH`.
pub(crate) const EMPTY: &CStr = c"";

// ---------------------------------------------------------------------------
// Opening
// ---------------------------------------------------------------------------

/// The resolve flags of every name lookup: stay below the directory
/// descriptor, never follow a symlink or a /proc magic link, never cross
/// into another mount.
pub(crate) const RESOLVE_CONFINED: u64 = libc::RESOLVE_BENEATH
    | libc::RESOLVE_NO_MAGICLINKS
    | libc::RESOLVE_NO_SYMLINKS
    | libc::RESOLVE_NO_XDEV;

/// `struct open_how` from `linux/openat2.h`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2): opens `name` below `dir` with `resolve` restrictions.
///
/// `EAGAIN` (a concurrent rename made the kernel give up a confined walk) is
/// retried a few times.
pub(crate) fn openat2(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: u32,
    resolve: u64,
) -> SysResult<OwnedFd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u32 as u64,
        mode: if flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE {
            u64::from(mode & 0o7777)
        } else {
            0
        },
        resolve,
    };
    let mut tries = 0;
    loop {
        // SAFETY: `name` is NUL-terminated, `how` is a valid open_how of the
        // size passed, and the kernel only reads both.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                name.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match owned(r) {
            Err(Errno::EAGAIN) if tries < 8 => tries += 1,
            other => return other,
        }
    }
}

/// openat(2) without resolve restrictions: only for names we control
/// (`/proc/self/fd` entries).
pub(crate) fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> SysResult<OwnedFd> {
    // SAFETY: `name` is NUL-terminated; no mode is read without O_CREAT.
    let r = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
    owned(r as libc::c_long)
}

/// open(2) of an absolute path we control (startup only).
pub(crate) fn open_path(path: &CStr, flags: libc::c_int) -> SysResult<OwnedFd> {
    // SAFETY: `path` is NUL-terminated; no mode is read without O_CREAT.
    let r = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    owned(r as libc::c_long)
}

/// open_tree(2) with `OPEN_TREE_CLONE`: a detached copy of the mount at
/// `path`, without the mounts below it.
pub(crate) fn open_tree_clone(path: &CStr) -> SysResult<OwnedFd> {
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    // SAFETY: `path` is NUL-terminated; the call only creates a new fd.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    owned(r)
}

/// mount_setattr(2) on the mount `fd` refers to.
pub(crate) fn mount_setattr(fd: BorrowedFd<'_>, set: u64, propagation: u64) -> SysResult<()> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: 0,
        propagation,
        userns_fd: 0,
    };
    // SAFETY: `attr` is a valid mount_attr of the size passed; the path is
    // the empty string with AT_EMPTY_PATH.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    check_long(r).map(drop)
}

// ---------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------

/// statx(2) of the inode `fd` refers to (never following a symlink).
pub(crate) fn statx(fd: BorrowedFd<'_>, flags: libc::c_int, mask: u32) -> SysResult<libc::statx> {
    let mut st = MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `st` is writable memory of the size of struct statx; the path
    // is the empty string with AT_EMPTY_PATH.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            flags | libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            mask,
            st.as_mut_ptr(),
        )
    };
    check(r)?;
    // SAFETY: zero-initialised and then filled in by a successful statx.
    Ok(unsafe { st.assume_init() })
}

/// statx(2) of `name` in `dir`, one component, not following a final
/// symlink.
pub(crate) fn statx_at(dir: BorrowedFd<'_>, name: &CStr, mask: u32) -> SysResult<libc::statx> {
    let mut st = MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `st` is writable memory of the size of struct statx and `name`
    // is NUL-terminated.
    let r = unsafe {
        libc::statx(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            mask,
            st.as_mut_ptr(),
        )
    };
    check(r)?;
    // SAFETY: zero-initialised and then filled in by a successful statx.
    Ok(unsafe { st.assume_init() })
}

/// fstat(2) of an open file.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> SysResult<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `st` is writable memory of the size of struct stat.
    check(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: zero-initialised and filled in by a successful fstat.
    Ok(unsafe { st.assume_init() })
}

/// fstatfs(2) (O_PATH descriptors are accepted).
pub(crate) fn fstatfs(fd: BorrowedFd<'_>) -> SysResult<libc::statfs> {
    let mut st = MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `st` is writable memory of the size of struct statfs.
    check(unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: zero-initialised and filled in by a successful fstatfs.
    Ok(unsafe { st.assume_init() })
}

/// fchmodat2(2) with `AT_EMPTY_PATH`: chmod of the inode an O_PATH
/// descriptor refers to (Linux 6.6+; `ENOSYS`/`EINVAL` before).
pub(crate) fn fchmod_empty(fd: BorrowedFd<'_>, mode: u32) -> SysResult<()> {
    // SAFETY: the path is the empty string with AT_EMPTY_PATH.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            mode & 0o7777,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check_long(r).map(drop)
}

/// chmod(2) of a path (our `/proc/self/fd` entries).
pub(crate) fn chmod_path(path: &CStr, mode: u32) -> SysResult<()> {
    // SAFETY: `path` is NUL-terminated.
    check(unsafe { libc::chmod(path.as_ptr(), mode & 0o7777) }).map(drop)
}

/// fchmod(2) of an open file.
pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> SysResult<()> {
    // SAFETY: plain syscall on a borrowed descriptor.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode & 0o7777) }).map(drop)
}

/// fchownat(2) with `AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW`; `u32::MAX` leaves
/// an id alone.
pub(crate) fn fchown_empty(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> SysResult<()> {
    // SAFETY: the path is the empty string with AT_EMPTY_PATH.
    let r = unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(r).map(drop)
}

/// utimensat(2) with `AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW` (UTIME_NOW and
/// UTIME_OMIT in `times` work as usual).
pub(crate) fn utimens_empty(fd: BorrowedFd<'_>, times: &[libc::timespec; 2]) -> SysResult<()> {
    // SAFETY: `times` points to two timespecs; the path is empty with
    // AT_EMPTY_PATH.
    let r = unsafe {
        libc::utimensat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            times.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(r).map(drop)
}

/// faccessat2(2) with `AT_EMPTY_PATH | AT_EACCESS` (checks with the
/// thread's fsuid/fsgid).
pub(crate) fn access_empty(fd: BorrowedFd<'_>, mask: u32) -> SysResult<()> {
    // SAFETY: the path is the empty string with AT_EMPTY_PATH.
    let r = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            mask as libc::c_int,
            libc::AT_EMPTY_PATH | libc::AT_EACCESS,
        )
    };
    check_long(r).map(drop)
}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

/// mkdirat(2).
pub(crate) fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> SysResult<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode & 0o7777) }).map(drop)
}

/// mknodat(2).
pub(crate) fn mknodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32, rdev: u64) -> SysResult<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, rdev) }).map(drop)
}

/// symlinkat(2).
pub(crate) fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> SysResult<()> {
    // SAFETY: both strings are NUL-terminated.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

/// unlinkat(2) (`AT_REMOVEDIR` for directories).
pub(crate) fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> SysResult<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

/// renameat2(2) with `RENAME_*` flags.
pub(crate) fn renameat2(
    olddir: BorrowedFd<'_>,
    oldname: &CStr,
    newdir: BorrowedFd<'_>,
    newname: &CStr,
    flags: u32,
) -> SysResult<()> {
    // SAFETY: both names are NUL-terminated.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            olddir.as_raw_fd(),
            oldname.as_ptr(),
            newdir.as_raw_fd(),
            newname.as_ptr(),
            flags,
        )
    };
    check_long(r).map(drop)
}

/// linkat(2) of the inode `fd` refers to (`AT_EMPTY_PATH`, needs
/// CAP_DAC_READ_SEARCH).
pub(crate) fn link_empty(fd: BorrowedFd<'_>, newdir: BorrowedFd<'_>, name: &CStr) -> SysResult<()> {
    // SAFETY: both names are NUL-terminated.
    let r = unsafe {
        libc::linkat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            newdir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    check(r).map(drop)
}

/// linkat(2) of a `/proc/self/fd` entry, following the magic link to the
/// inode itself.
pub(crate) fn link_proc(path: &CStr, newdir: BorrowedFd<'_>, name: &CStr) -> SysResult<()> {
    // SAFETY: both names are NUL-terminated.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            path.as_ptr(),
            newdir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    check(r).map(drop)
}

/// readlinkat(2) of the symlink `fd` refers to, into `buf`.
pub(crate) fn readlink_empty(fd: BorrowedFd<'_>, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `buf` is writable for its length; the path is empty.
    let r = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    check_size(r)
}

// ---------------------------------------------------------------------------
// File handles
// ---------------------------------------------------------------------------

/// `MAX_HANDLE_SZ` from `linux/fcntl.h`.
pub(crate) const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct RawFileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// A kernel file handle: names an inode of a filesystem independently of any
/// path or descriptor (name_to_handle_at(2)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileHandle {
    handle_type: i32,
    bytes: Box<[u8]>,
}

/// name_to_handle_at(2) of the inode `fd` refers to.
pub(crate) fn name_to_handle(fd: BorrowedFd<'_>) -> SysResult<FileHandle> {
    let mut raw = RawFileHandle {
        handle_bytes: MAX_HANDLE_SZ as u32,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `raw` is a file_handle with `handle_bytes` bytes of room after
    // the header; `mount_id` is a valid out pointer; the path is empty with
    // AT_EMPTY_PATH.
    let r = unsafe {
        libc::name_to_handle_at(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            (&mut raw as *mut RawFileHandle).cast(),
            &mut mount_id,
            libc::AT_EMPTY_PATH,
        )
    };
    check(r)?;
    let n = (raw.handle_bytes as usize).min(MAX_HANDLE_SZ);
    Ok(FileHandle {
        handle_type: raw.handle_type,
        bytes: raw.f_handle[..n].into(),
    })
}

/// open_by_handle_at(2): opens the inode `handle` names on the filesystem of
/// `mount_fd` (needs CAP_DAC_READ_SEARCH).
pub(crate) fn open_by_handle(
    mount_fd: BorrowedFd<'_>,
    handle: &FileHandle,
    flags: libc::c_int,
) -> SysResult<OwnedFd> {
    open_by_raw_handle(mount_fd, handle.handle_type, &handle.bytes, flags)
}

/// open_by_handle_at(2) of a handle given as its type and bytes (as a
/// fanotify event reports it), without allocating; `EINVAL` if longer than
/// `MAX_HANDLE_SZ`.
pub(crate) fn open_by_raw_handle(
    mount_fd: BorrowedFd<'_>,
    handle_type: i32,
    bytes: &[u8],
    flags: libc::c_int,
) -> SysResult<OwnedFd> {
    if bytes.len() > MAX_HANDLE_SZ {
        return Err(Errno::EINVAL);
    }
    let mut raw = RawFileHandle {
        handle_bytes: bytes.len() as u32,
        handle_type,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    raw.f_handle[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: `raw` is a valid file_handle whose `handle_bytes` bytes follow
    // the header; the kernel only reads it.
    let r = unsafe {
        libc::open_by_handle_at(
            mount_fd.as_raw_fd(),
            (&mut raw as *mut RawFileHandle).cast(),
            flags | libc::O_CLOEXEC,
        )
    };
    owned(r as libc::c_long)
}

// ---------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------

/// pread(2), retried on EINTR.
pub(crate) fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> SysResult<usize> {
    loop {
        // SAFETY: `buf` is writable for its length.
        let r = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                offset as libc::off_t,
            )
        };
        match check_size(r) {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// pwrite(2), retried on EINTR.
pub(crate) fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> SysResult<usize> {
    loop {
        // SAFETY: `buf` is readable for its length.
        let r = unsafe {
            libc::pwrite(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                offset as libc::off_t,
            )
        };
        match check_size(r) {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// ftruncate(2).
pub(crate) fn ftruncate(fd: BorrowedFd<'_>, size: u64) -> SysResult<()> {
    let size = libc::off_t::try_from(size).map_err(|_| Errno::EFBIG)?;
    // SAFETY: plain syscall on a borrowed descriptor.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), size) }).map(drop)
}

/// fallocate(2).
pub(crate) fn fallocate(fd: BorrowedFd<'_>, mode: u32, offset: u64, len: u64) -> SysResult<()> {
    let offset = libc::off_t::try_from(offset).map_err(|_| Errno::EFBIG)?;
    let len = libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    // SAFETY: plain syscall on a borrowed descriptor.
    check(unsafe { libc::fallocate(fd.as_raw_fd(), mode as libc::c_int, offset, len) }).map(drop)
}

/// lseek(2).
pub(crate) fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: libc::c_int) -> SysResult<u64> {
    // SAFETY: plain syscall on a borrowed descriptor.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), offset, whence) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r as u64)
    }
}

/// fsync(2) or fdatasync(2).
pub(crate) fn fsync(fd: BorrowedFd<'_>, datasync: bool) -> SysResult<()> {
    // SAFETY: plain syscalls on a borrowed descriptor.
    let r = unsafe {
        if datasync {
            libc::fdatasync(fd.as_raw_fd())
        } else {
            libc::fsync(fd.as_raw_fd())
        }
    };
    check(r).map(drop)
}

/// syncfs(2) of the filesystem an open file is on.
pub(crate) fn syncfs(fd: BorrowedFd<'_>) -> SysResult<()> {
    // SAFETY: plain syscall on a borrowed descriptor.
    check(unsafe { libc::syncfs(fd.as_raw_fd()) }).map(drop)
}

/// copy_file_range(2) between two open files.
pub(crate) fn copy_file_range(
    fd_in: BorrowedFd<'_>,
    off_in: u64,
    fd_out: BorrowedFd<'_>,
    off_out: u64,
    len: u64,
) -> SysResult<u64> {
    let mut off_in = libc::off64_t::try_from(off_in).map_err(|_| Errno::EINVAL)?;
    let mut off_out = libc::off64_t::try_from(off_out).map_err(|_| Errno::EINVAL)?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    // SAFETY: both offsets are valid in/out pointers for the call.
    let r = unsafe {
        libc::copy_file_range(
            fd_in.as_raw_fd(),
            &mut off_in,
            fd_out.as_raw_fd(),
            &mut off_out,
            len,
            0,
        )
    };
    check_size(r).map(|n| n as u64)
}

/// getdents64(2) into `buf` (which must be 8-byte aligned).
pub(crate) fn getdents64(fd: BorrowedFd<'_>, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `buf` is writable for its length.
    let r = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    check_long(r).map(|n| n as usize)
}

// ---------------------------------------------------------------------------
// Locks
// ---------------------------------------------------------------------------

/// fcntl(2) with a lock command (`F_OFD_GETLK`, `F_OFD_SETLK`).
pub(crate) fn fcntl_lock(
    fd: BorrowedFd<'_>,
    cmd: libc::c_int,
    lock: &mut libc::flock,
) -> SysResult<()> {
    // SAFETY: `lock` is a valid struct flock for the kernel to read and write.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), cmd, lock as *mut libc::flock) }).map(drop)
}

/// flock(2).
pub(crate) fn flock(fd: BorrowedFd<'_>, op: libc::c_int) -> SysResult<()> {
    // SAFETY: plain syscall on a borrowed descriptor.
    check(unsafe { libc::flock(fd.as_raw_fd(), op) }).map(drop)
}

// ---------------------------------------------------------------------------
// Extended attributes (on /proc/self/fd paths)
// ---------------------------------------------------------------------------

/// getxattr(2); an empty `buf` asks for the size.
pub(crate) fn getxattr(path: &CStr, name: &CStr, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: strings are NUL-terminated; `buf` is writable for its length
    // (a null pointer with length 0 asks for the size).
    let r = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            if buf.is_empty() {
                std::ptr::null_mut()
            } else {
                buf.as_mut_ptr().cast()
            },
            buf.len(),
        )
    };
    check_size(r)
}

/// listxattr(2); an empty `buf` asks for the size.
pub(crate) fn listxattr(path: &CStr, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `path` is NUL-terminated; `buf` is writable for its length.
    let r = unsafe {
        libc::listxattr(
            path.as_ptr(),
            if buf.is_empty() {
                std::ptr::null_mut()
            } else {
                buf.as_mut_ptr().cast()
            },
            buf.len(),
        )
    };
    check_size(r)
}

/// setxattr(2).
pub(crate) fn setxattr(
    path: &CStr,
    name: &CStr,
    value: &[u8],
    flags: libc::c_int,
) -> SysResult<()> {
    // SAFETY: strings are NUL-terminated; `value` is readable for its length.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    check(r).map(drop)
}

/// fgetxattr(2) on an open (not `O_PATH`) descriptor.
pub(crate) fn fgetxattr(fd: BorrowedFd<'_>, name: &CStr, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `name` is NUL-terminated; `buf` is writable for its length.
    let r = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    check_size(r)
}

/// fsetxattr(2) on an open (not `O_PATH`) descriptor.
pub(crate) fn fsetxattr(
    fd: BorrowedFd<'_>,
    name: &CStr,
    value: &[u8],
    flags: libc::c_int,
) -> SysResult<()> {
    // SAFETY: `name` is NUL-terminated; `value` is readable for its length.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    check(r).map(drop)
}

/// removexattr(2).
pub(crate) fn removexattr(path: &CStr, name: &CStr) -> SysResult<()> {
    // SAFETY: strings are NUL-terminated.
    check(unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) }).map(drop)
}

// ---------------------------------------------------------------------------
// Process and thread state
// ---------------------------------------------------------------------------

/// setfsuid(2) as a raw syscall, so it changes the calling thread only;
/// returns the previous fsuid. `u32::MAX` only queries.
pub(crate) fn setfsuid(uid: u32) -> u32 {
    // SAFETY: setfsuid has no memory effects; it cannot fail, it returns the
    // previous value.
    unsafe { libc::syscall(libc::SYS_setfsuid, uid) as u32 }
}

/// setfsgid(2) as a raw syscall (calling thread only); returns the previous
/// fsgid. `u32::MAX` only queries.
pub(crate) fn setfsgid(gid: u32) -> u32 {
    // SAFETY: as for setfsuid.
    unsafe { libc::syscall(libc::SYS_setfsgid, gid) as u32 }
}

/// umask(2) of the calling thread's fs context; returns the previous mask.
pub(crate) fn umask(mask: u32) -> u32 {
    // SAFETY: umask has no memory effects and cannot fail.
    unsafe { libc::umask(mask & 0o777) }
}

/// unshare(CLONE_FS): gives the calling thread its own cwd, root and umask.
pub(crate) fn unshare_fs() -> SysResult<()> {
    // SAFETY: unshare has no memory effects.
    check(unsafe { libc::unshare(libc::CLONE_FS) }).map(drop)
}

/// `_LINUX_CAPABILITY_VERSION_3`.
const CAP_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// One 32-bit word of `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) struct CapData {
    pub effective: u32,
    pub permitted: u32,
    pub inheritable: u32,
}

/// capget(2) of the calling thread (two words: capabilities 0..63).
pub(crate) fn capget() -> SysResult<[CapData; 2]> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and two data words are valid for the version-3 ABI.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    check_long(r)?;
    Ok(data)
}

/// capset(2) of the calling thread only (raw syscall, not broadcast).
pub(crate) fn capset(data: &[CapData; 2]) -> SysResult<()> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    // SAFETY: header and two data words are valid for the version-3 ABI;
    // the kernel only reads the data.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    check_long(r).map(drop)
}

/// Whether the calling thread has capability `cap` in its effective set.
pub(crate) fn has_effective_cap(cap: u32) -> bool {
    capget().is_ok_and(|d| d[(cap / 32) as usize].effective & (1 << (cap % 32)) != 0)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft
/// limit.
pub(crate) fn raise_nofile_limit(raise: bool) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if raise && lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `want` is a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            return want.rlim_cur;
        }
    }
    lim.rlim_cur
}

// ---------------------------------------------------------------------------
// /dev/fuse passthrough ioctls
// ---------------------------------------------------------------------------

/// FUSE_DEV_IOC_BACKING_OPEN: registers `file` as a backing file of the
/// connection `dev` belongs to; returns the backing id.
pub(crate) fn backing_open(dev: BorrowedFd<'_>, file: BorrowedFd<'_>) -> SysResult<i32> {
    let map = fuselage_core::abi::fuse_backing_map {
        fd: file.as_raw_fd(),
        flags: 0,
        padding: 0,
    };
    // SAFETY: the ioctl reads a fuse_backing_map of exactly this layout
    // (16 bytes, asserted in the core's abi module).
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            fuselage_core::abi::FUSE_DEV_IOC_BACKING_OPEN as _,
            &map as *const fuselage_core::abi::fuse_backing_map,
        )
    };
    check(r)
}

/// FUSE_DEV_IOC_BACKING_CLOSE: drops backing id `id`.
pub(crate) fn backing_close(dev: BorrowedFd<'_>, id: i32) -> SysResult<()> {
    let id = id as u32;
    // SAFETY: the ioctl reads one u32.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            fuselage_core::abi::FUSE_DEV_IOC_BACKING_CLOSE as _,
            &id as *const u32,
        )
    };
    check(r).map(drop)
}

// ---------------------------------------------------------------------------
// Device numbers
// ---------------------------------------------------------------------------

/// The kernel's `new_encode_dev` (the 32-bit `rdev` FUSE carries).
pub(crate) const fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// The kernel's `new_decode_dev` as a host `dev_t`.
pub(crate) fn decode_dev(rdev: u32) -> u64 {
    let major = (rdev & 0xfff00) >> 8;
    let minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
    libc::makedev(major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_numbers_round_trip() {
        for (major, minor) in [(0, 0), (1, 3), (8, 17), (259, 70000), (4095, 0xfffff)] {
            let enc = encode_dev(major, minor);
            let dev = decode_dev(enc);
            assert_eq!((libc::major(dev), libc::minor(dev)), (major, minor));
        }
    }
}
