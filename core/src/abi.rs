//! The FUSE kernel ABI, protocol version 7.45 (Linux 6.18), as plain
//! zero-copy Rust types.
//!
//! This module is a transcription of the kernel's
//! `include/uapi/linux/fuse.h` (shipped by libfuse as
//! `include/fuse_kernel.h`). Nothing here has behaviour beyond a few `const
//! fn` size helpers; the request parser and reply builders live elsewhere.
//!
//! # Conventions
//!
//! * **Kernel names on purpose.** Every struct, field and constant keeps the
//!   exact spelling used in `fuse.h` (`fuse_in_header`, `FOPEN_KEEP_CACHE`,
//!   `FUSE_NOTIFY_INVAL_ENTRY`, ...) so a reader can grep any identifier
//!   straight against the C header and the kernel sources. The only rename is
//!   the C field `type`, a Rust keyword, which is spelled `typ`.
//! * **Host byte order.** FUSE messages never leave the machine: the kernel
//!   and the server share one CPU, so every integer is in native (on all
//!   supported targets, little-endian) order and is read with plain field
//!   access. The `*_BSWAP_RESERVED` opcodes exist only so a byte-swapped
//!   peer can be detected.
//! * **No implicit padding.** Every struct is `#[repr(C)]` and derives the
//!   zerocopy traits `FromBytes`, `IntoBytes`, `KnownLayout` and `Immutable`,
//!   so a message can be viewed in place inside the read buffer and a reply
//!   can be written out as bytes without `unsafe`. `IntoBytes` refuses
//!   padding the compiler would insert, therefore every padding word of the
//!   C layout is an explicit, named field here, exactly as in the header.
//! * **Sizes asserted.** After every struct a `const_assert_eq!` pins its size
//!   to the value the C compiler produces, so any transcription slip fails
//!   the build instead of corrupting traffic.
//! * **Flexible array members** (`fuse_dirent::name`,
//!   `fuse_supp_groups::groups`) are left out: the structs describe the fixed
//!   head only and the variable tail follows in the byte stream. Use
//!   [`fuse_dirent_size`] / [`fuse_direntplus_size`] for record lengths.
//!
//! Integer constants are typed after the field they travel in: `FATTR_*` and
//! `FOPEN_*` are `u32`, INIT flags are `u64` (bits 32 and up are carried in
//! the `flags2` word of `fuse_init_in` / `fuse_init_out`), opcodes are `u32`
//! (the type of `fuse_in_header::opcode`), and so are the notification codes
//! (the C enum values; cast them to `i32` for `fuse_out_header::error`, where
//! they travel with `unique == 0`). Byte sizes and offsets are `usize`.

#![allow(non_camel_case_types)]

use static_assertions::const_assert_eq;

// ---------------------------------------------------------------------------
// Version and well-known ids
// ---------------------------------------------------------------------------

/// Major protocol version implemented by this module. A server must reply
/// with this major number to `FUSE_INIT`; a mismatch means no common
/// protocol.
pub const FUSE_KERNEL_VERSION: u32 = 7;

/// Minor protocol version implemented by this module. Both sides use the
/// smaller of the two minors they announce in `FUSE_INIT`.
pub const FUSE_KERNEL_MINOR_VERSION: u32 = 45;

/// Node id of the root directory of the mount. It is never looked up and
/// never forgotten.
pub const FUSE_ROOT_ID: u64 = 1;

// ---------------------------------------------------------------------------
// Attributes and statx
// ---------------------------------------------------------------------------

/// File attributes as the kernel caches them (a compact `struct stat`).
///
/// Embedded in [`fuse_entry_out`] and [`fuse_attr_out`].
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_attr {
    /// Inode number reported to `stat(2)` (`st_ino`).
    pub ino: u64,
    /// File size in bytes.
    pub size: u64,
    /// Allocated space in 512-byte blocks.
    pub blocks: u64,
    /// Last access time, seconds part.
    pub atime: u64,
    /// Last modification time, seconds part.
    pub mtime: u64,
    /// Last status change time, seconds part.
    pub ctime: u64,
    /// Last access time, nanoseconds part.
    pub atimensec: u32,
    /// Last modification time, nanoseconds part.
    pub mtimensec: u32,
    /// Last status change time, nanoseconds part.
    pub ctimensec: u32,
    /// File type and permission bits (`S_IFMT | 07777`).
    pub mode: u32,
    /// Number of hard links.
    pub nlink: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Device number for character and block devices.
    pub rdev: u32,
    /// Preferred I/O block size (`st_blksize`).
    pub blksize: u32,
    /// `FUSE_ATTR_*` flags.
    pub flags: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_attr>(), 88);

/// A timestamp in the layout of the kernel's `struct statx_timestamp`.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_sx_time {
    /// Seconds since the epoch (signed).
    pub tv_sec: i64,
    /// Nanoseconds within the second.
    pub tv_nsec: u32,
    /// Reserved, zero.
    #[allow(clippy::pub_underscore_fields)]
    pub __reserved: i32,
}
const_assert_eq!(core::mem::size_of::<fuse_sx_time>(), 16);

/// Extended attributes in the exact layout of `struct statx` from
/// `statx(2)`; the reply payload of `FUSE_STATX`.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_statx {
    /// `STATX_*` bits saying which fields are filled in.
    pub mask: u32,
    /// Preferred I/O block size.
    pub blksize: u32,
    /// `STATX_ATTR_*` attribute bits.
    pub attributes: u64,
    /// Number of hard links.
    pub nlink: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// File type and permission bits.
    pub mode: u16,
    /// Spare, zero.
    #[allow(clippy::pub_underscore_fields)]
    pub __spare0: [u16; 1],
    /// Inode number.
    pub ino: u64,
    /// File size in bytes.
    pub size: u64,
    /// Allocated space in 512-byte blocks.
    pub blocks: u64,
    /// Which bits of `attributes` the filesystem supports.
    pub attributes_mask: u64,
    /// Last access time.
    pub atime: fuse_sx_time,
    /// Creation (birth) time.
    pub btime: fuse_sx_time,
    /// Last status change time.
    pub ctime: fuse_sx_time,
    /// Last modification time.
    pub mtime: fuse_sx_time,
    /// Major number of the device this node represents.
    pub rdev_major: u32,
    /// Minor number of the device this node represents.
    pub rdev_minor: u32,
    /// Major number of the device holding the file.
    pub dev_major: u32,
    /// Minor number of the device holding the file.
    pub dev_minor: u32,
    /// Spare, zero.
    #[allow(clippy::pub_underscore_fields)]
    pub __spare2: [u64; 14],
}
const_assert_eq!(core::mem::size_of::<fuse_statx>(), 256);

/// Filesystem statistics (a compact `struct statfs`), carried by
/// [`fuse_statfs_out`].
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_kstatfs {
    /// Total data blocks, in `frsize` units.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks available to unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Preferred block size.
    pub bsize: u32,
    /// Maximum file name length.
    pub namelen: u32,
    /// Fragment size (the unit of `blocks`).
    pub frsize: u32,
    /// Padding, zero.
    pub padding: u32,
    /// Spare, zero.
    pub spare: [u32; 6],
}
const_assert_eq!(core::mem::size_of::<fuse_kstatfs>(), 80);

/// A POSIX or BSD lock range as used by `FUSE_GETLK` / `FUSE_SETLK(W)`.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_file_lock {
    /// First byte of the range.
    pub start: u64,
    /// Last byte of the range (inclusive; `OFFSET_MAX` for "to end").
    pub end: u64,
    /// Lock type: `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
    pub typ: u32,
    /// Thread group id of the lock holder.
    pub pid: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_file_lock>(), 24);

// ---------------------------------------------------------------------------
// Flag words
// ---------------------------------------------------------------------------

/// `fuse_setattr_in::valid`: `mode` is set.
pub const FATTR_MODE: u32 = 1 << 0;
/// `fuse_setattr_in::valid`: `uid` is set.
pub const FATTR_UID: u32 = 1 << 1;
/// `fuse_setattr_in::valid`: `gid` is set.
pub const FATTR_GID: u32 = 1 << 2;
/// `fuse_setattr_in::valid`: `size` is set (truncate).
pub const FATTR_SIZE: u32 = 1 << 3;
/// `fuse_setattr_in::valid`: `atime`/`atimensec` are set.
pub const FATTR_ATIME: u32 = 1 << 4;
/// `fuse_setattr_in::valid`: `mtime`/`mtimensec` are set.
pub const FATTR_MTIME: u32 = 1 << 5;
/// `fuse_setattr_in::valid`: `fh` holds an open file handle.
pub const FATTR_FH: u32 = 1 << 6;
/// `fuse_setattr_in::valid`: set atime to the current time.
pub const FATTR_ATIME_NOW: u32 = 1 << 7;
/// `fuse_setattr_in::valid`: set mtime to the current time.
pub const FATTR_MTIME_NOW: u32 = 1 << 8;
/// `fuse_setattr_in::valid`: `lock_owner` is set.
pub const FATTR_LOCKOWNER: u32 = 1 << 9;
/// `fuse_setattr_in::valid`: `ctime`/`ctimensec` are set.
pub const FATTR_CTIME: u32 = 1 << 10;
/// `fuse_setattr_in::valid`: clear suid/sgid as part of this change
/// (only with `FUSE_HANDLE_KILLPRIV_V2`).
pub const FATTR_KILL_SUIDGID: u32 = 1 << 11;

/// Open reply flag: bypass the page cache for this open file.
pub const FOPEN_DIRECT_IO: u32 = 1 << 0;
/// Open reply flag: keep the existing page cache on open.
pub const FOPEN_KEEP_CACHE: u32 = 1 << 1;
/// Open reply flag: the file does not support seeking.
pub const FOPEN_NONSEEKABLE: u32 = 1 << 2;
/// Opendir reply flag: the kernel may cache this directory's contents.
pub const FOPEN_CACHE_DIR: u32 = 1 << 3;
/// Open reply flag: stream-like file without a file position.
pub const FOPEN_STREAM: u32 = 1 << 4;
/// Open reply flag: do not flush the page cache on close (unless writeback
/// caching is on).
pub const FOPEN_NOFLUSH: u32 = 1 << 5;
/// Open reply flag: direct writes to the same inode may run concurrently.
pub const FOPEN_PARALLEL_DIRECT_WRITES: u32 = 1 << 6;
/// Open reply flag: read/write go straight to the backing file named by
/// `fuse_open_out::backing_id`.
pub const FOPEN_PASSTHROUGH: u32 = 1 << 7;

/// INIT flag: reads may be issued asynchronously.
pub const FUSE_ASYNC_READ: u64 = 1 << 0;
/// INIT flag: the filesystem implements POSIX byte-range locks.
pub const FUSE_POSIX_LOCKS: u64 = 1 << 1;
/// INIT flag: file handles for fstat and friends (never implemented).
pub const FUSE_FILE_OPS: u64 = 1 << 2;
/// INIT flag: the filesystem handles `O_TRUNC` inside open.
pub const FUSE_ATOMIC_O_TRUNC: u64 = 1 << 3;
/// INIT flag: the filesystem can look up `.` and `..` (NFS export).
pub const FUSE_EXPORT_SUPPORT: u64 = 1 << 4;
/// INIT flag: writes larger than 4 KiB are accepted.
pub const FUSE_BIG_WRITES: u64 = 1 << 5;
/// INIT flag: the kernel must not apply the umask on create.
pub const FUSE_DONT_MASK: u64 = 1 << 6;
/// INIT flag: splice writes to the device are supported.
pub const FUSE_SPLICE_WRITE: u64 = 1 << 7;
/// INIT flag: splice moves on the device are supported.
pub const FUSE_SPLICE_MOVE: u64 = 1 << 8;
/// INIT flag: splice reads from the device are supported.
pub const FUSE_SPLICE_READ: u64 = 1 << 9;
/// INIT flag: the filesystem implements BSD `flock` locks.
pub const FUSE_FLOCK_LOCKS: u64 = 1 << 10;
/// INIT flag: ioctl is supported on directories.
pub const FUSE_HAS_IOCTL_DIR: u64 = 1 << 11;
/// INIT flag: invalidate cached pages automatically when mtime/size change.
pub const FUSE_AUTO_INVAL_DATA: u64 = 1 << 12;
/// INIT flag: use `FUSE_READDIRPLUS`.
pub const FUSE_DO_READDIRPLUS: u64 = 1 << 13;
/// INIT flag: choose between READDIR and READDIRPLUS adaptively.
pub const FUSE_READDIRPLUS_AUTO: u64 = 1 << 14;
/// INIT flag: direct I/O may be submitted asynchronously.
pub const FUSE_ASYNC_DIO: u64 = 1 << 15;
/// INIT flag: buffered writes go through a writeback cache.
pub const FUSE_WRITEBACK_CACHE: u64 = 1 << 16;
/// INIT flag: open may be answered with `ENOSYS` to skip future opens.
pub const FUSE_NO_OPEN_SUPPORT: u64 = 1 << 17;
/// INIT flag: lookups and readdir in one directory may run in parallel.
pub const FUSE_PARALLEL_DIROPS: u64 = 1 << 18;
/// INIT flag: the filesystem clears suid/sgid/caps itself on
/// write/chown/truncate.
pub const FUSE_HANDLE_KILLPRIV: u64 = 1 << 19;
/// INIT flag: the filesystem supports POSIX ACLs.
pub const FUSE_POSIX_ACL: u64 = 1 << 20;
/// INIT flag: reading the device after an abort yields `ECONNABORTED`.
pub const FUSE_ABORT_ERROR: u64 = 1 << 21;
/// INIT flag: `fuse_init_out::max_pages` is valid.
pub const FUSE_MAX_PAGES: u64 = 1 << 22;
/// INIT flag: cache `FUSE_READLINK` replies.
pub const FUSE_CACHE_SYMLINKS: u64 = 1 << 23;
/// INIT flag: opendir may be answered with `ENOSYS` to skip future
/// opendirs.
pub const FUSE_NO_OPENDIR_SUPPORT: u64 = 1 << 24;
/// INIT flag: cached pages are only dropped on explicit invalidation.
pub const FUSE_EXPLICIT_INVAL_DATA: u64 = 1 << 25;
/// INIT flag: `fuse_init_out::map_alignment` is valid (DAX).
pub const FUSE_MAP_ALIGNMENT: u64 = 1 << 26;
/// INIT flag: the kernel can auto-mount submounts (`FUSE_ATTR_SUBMOUNT`).
pub const FUSE_SUBMOUNTS: u64 = 1 << 27;
/// INIT flag: like `FUSE_HANDLE_KILLPRIV`, with the VFS rules for when
/// suid/sgid are dropped.
pub const FUSE_HANDLE_KILLPRIV_V2: u64 = 1 << 28;
/// INIT flag: the server understands the extended [`fuse_setxattr_in`].
pub const FUSE_SETXATTR_EXT: u64 = 1 << 29;
/// INIT flag: `fuse_init_in` / `fuse_init_out` carry `flags2`.
pub const FUSE_INIT_EXT: u64 = 1 << 30;
/// INIT flag: reserved, must not be used.
pub const FUSE_INIT_RESERVED: u64 = 1 << 31;
/// INIT flag (`flags2` bit 0): security contexts accompany create, mkdir,
/// symlink and mknod.
pub const FUSE_SECURITY_CTX: u64 = 1 << 32;
/// INIT flag (`flags2` bit 1): DAX can be enabled per inode.
pub const FUSE_HAS_INODE_DAX: u64 = 1 << 33;
/// INIT flag (`flags2` bit 2): a supplementary group extension accompanies
/// create, mkdir, symlink and mknod.
pub const FUSE_CREATE_SUPP_GROUP: u64 = 1 << 34;
/// INIT flag (`flags2` bit 3): the kernel understands `FUSE_EXPIRE_ONLY`.
pub const FUSE_HAS_EXPIRE_ONLY: u64 = 1 << 35;
/// INIT flag (`flags2` bit 4): shared mmap is allowed with
/// `FOPEN_DIRECT_IO`.
pub const FUSE_DIRECT_IO_ALLOW_MMAP: u64 = 1 << 36;
/// Obsolete name of [`FUSE_DIRECT_IO_ALLOW_MMAP`].
pub const FUSE_DIRECT_IO_RELAX: u64 = FUSE_DIRECT_IO_ALLOW_MMAP;
/// INIT flag (`flags2` bit 5): backing-file passthrough I/O.
pub const FUSE_PASSTHROUGH: u64 = 1 << 37;
/// INIT flag (`flags2` bit 6): refuse NFS export of this filesystem.
pub const FUSE_NO_EXPORT_SUPPORT: u64 = 1 << 38;
/// INIT flag (`flags2` bit 7): the kernel may resend pending requests,
/// marking them with [`FUSE_UNIQUE_RESEND`].
pub const FUSE_HAS_RESEND: u64 = 1 << 39;
/// INIT flag (`flags2` bit 8): idmapped mounts are allowed.
pub const FUSE_ALLOW_IDMAP: u64 = 1 << 40;
/// INIT flag (`flags2` bit 9): requests may be exchanged over `io_uring`.
pub const FUSE_OVER_IO_URING: u64 = 1 << 41;
/// INIT flag (`flags2` bit 10): `fuse_init_out::request_timeout` is valid.
pub const FUSE_REQUEST_TIMEOUT: u64 = 1 << 42;

/// CUSE INIT flag: ioctls are not restricted to well-formed commands.
pub const CUSE_UNRESTRICTED_IOCTL: u32 = 1 << 0;

/// `fuse_release_in::release_flags`: flush before releasing.
pub const FUSE_RELEASE_FLUSH: u32 = 1 << 0;
/// `fuse_release_in::release_flags`: drop the `flock` held by
/// `lock_owner`.
pub const FUSE_RELEASE_FLOCK_UNLOCK: u32 = 1 << 1;

/// `fuse_getattr_in::getattr_flags`: `fh` is valid.
pub const FUSE_GETATTR_FH: u32 = 1 << 0;

/// `fuse_lk_in::lk_flags`: the lock is a BSD `flock`, not a POSIX lock.
pub const FUSE_LK_FLOCK: u32 = 1 << 0;

/// `fuse_write_in::write_flags`: delayed write from the page cache; the file
/// handle is a guess.
pub const FUSE_WRITE_CACHE: u32 = 1 << 0;
/// `fuse_write_in::write_flags`: `lock_owner` is valid.
pub const FUSE_WRITE_LOCKOWNER: u32 = 1 << 1;
/// `fuse_write_in::write_flags`: clear suid and sgid.
pub const FUSE_WRITE_KILL_SUIDGID: u32 = 1 << 2;
/// Obsolete name of [`FUSE_WRITE_KILL_SUIDGID`] (only suid/sgid are
/// cleared).
pub const FUSE_WRITE_KILL_PRIV: u32 = FUSE_WRITE_KILL_SUIDGID;

/// `fuse_read_in::read_flags`: `lock_owner` is valid.
pub const FUSE_READ_LOCKOWNER: u32 = 1 << 1;

/// Ioctl flag: 32-bit compat ioctl on a 64-bit kernel.
pub const FUSE_IOCTL_COMPAT: u32 = 1 << 0;
/// Ioctl flag: unrestricted ioctl; the server may ask for a retry.
pub const FUSE_IOCTL_UNRESTRICTED: u32 = 1 << 1;
/// Ioctl reply flag: retry with the iovecs in the reply.
pub const FUSE_IOCTL_RETRY: u32 = 1 << 2;
/// Ioctl flag: the caller is a 32-bit process.
pub const FUSE_IOCTL_32BIT: u32 = 1 << 3;
/// Ioctl flag: issued on a directory.
pub const FUSE_IOCTL_DIR: u32 = 1 << 4;
/// Ioctl flag: x32 compat ioctl (64-bit `time_t`) on a 64-bit kernel.
pub const FUSE_IOCTL_COMPAT_X32: u32 = 1 << 5;
/// Upper bound on `in_iovs + out_iovs` in an ioctl retry.
pub const FUSE_IOCTL_MAX_IOV: u32 = 256;

/// `fuse_poll_in::flags`: the kernel wants a `FUSE_NOTIFY_POLL` wakeup.
pub const FUSE_POLL_SCHEDULE_NOTIFY: u32 = 1 << 0;

/// `fuse_fsync_in::fsync_flags`: sync data only (`fdatasync`).
pub const FUSE_FSYNC_FDATASYNC: u32 = 1 << 0;

/// `fuse_attr::flags`: the node is the root of a submount.
pub const FUSE_ATTR_SUBMOUNT: u32 = 1 << 0;
/// `fuse_attr::flags`: enable DAX for this file (per-inode DAX mode).
pub const FUSE_ATTR_DAX: u32 = 1 << 1;

/// `fuse_open_in::open_flags` / `fuse_create_in::open_flags`: clear suid and
/// sgid if the file is executable.
pub const FUSE_OPEN_KILL_SUIDGID: u32 = 1 << 0;

/// `fuse_setxattr_in::setxattr_flags`: clear sgid when setting
/// `system.posix_acl_access`.
pub const FUSE_SETXATTR_ACL_KILL_SGID: u32 = 1 << 0;

/// `fuse_notify_inval_entry_out::flags`: only expire the dentry, do not
/// drop it.
pub const FUSE_EXPIRE_ONLY: u32 = 1 << 0;

/// Highest `fuse_secctx_header::nr_secctx`; extension types 0..=31 are taken
/// by the security-context header.
pub const FUSE_MAX_NR_SECCTX: u32 = 31;
/// `fuse_ext_header::typ` of the [`fuse_supp_groups`] extension.
pub const FUSE_EXT_GROUPS: u32 = 32;

// ---------------------------------------------------------------------------
// Opcodes
// ---------------------------------------------------------------------------

/// Look a name up in a directory.
pub const FUSE_LOOKUP: u32 = 1;
/// Drop lookup references (no reply).
pub const FUSE_FORGET: u32 = 2;
/// Get attributes.
pub const FUSE_GETATTR: u32 = 3;
/// Set attributes.
pub const FUSE_SETATTR: u32 = 4;
/// Read a symlink target.
pub const FUSE_READLINK: u32 = 5;
/// Create a symlink.
pub const FUSE_SYMLINK: u32 = 6;
/// Create a file node.
pub const FUSE_MKNOD: u32 = 8;
/// Create a directory.
pub const FUSE_MKDIR: u32 = 9;
/// Remove a file.
pub const FUSE_UNLINK: u32 = 10;
/// Remove a directory.
pub const FUSE_RMDIR: u32 = 11;
/// Rename.
pub const FUSE_RENAME: u32 = 12;
/// Create a hard link.
pub const FUSE_LINK: u32 = 13;
/// Open a file.
pub const FUSE_OPEN: u32 = 14;
/// Read data.
pub const FUSE_READ: u32 = 15;
/// Write data.
pub const FUSE_WRITE: u32 = 16;
/// Filesystem statistics.
pub const FUSE_STATFS: u32 = 17;
/// Release an open file.
pub const FUSE_RELEASE: u32 = 18;
/// Synchronise file contents.
pub const FUSE_FSYNC: u32 = 20;
/// Set an extended attribute.
pub const FUSE_SETXATTR: u32 = 21;
/// Get an extended attribute.
pub const FUSE_GETXATTR: u32 = 22;
/// List extended attribute names.
pub const FUSE_LISTXATTR: u32 = 23;
/// Remove an extended attribute.
pub const FUSE_REMOVEXATTR: u32 = 24;
/// Flush on close of a file descriptor.
pub const FUSE_FLUSH: u32 = 25;
/// Protocol handshake.
pub const FUSE_INIT: u32 = 26;
/// Open a directory.
pub const FUSE_OPENDIR: u32 = 27;
/// Read directory entries.
pub const FUSE_READDIR: u32 = 28;
/// Release an open directory.
pub const FUSE_RELEASEDIR: u32 = 29;
/// Synchronise directory contents.
pub const FUSE_FSYNCDIR: u32 = 30;
/// Test for a POSIX lock.
pub const FUSE_GETLK: u32 = 31;
/// Acquire or release a lock without waiting.
pub const FUSE_SETLK: u32 = 32;
/// Acquire a lock, waiting if needed.
pub const FUSE_SETLKW: u32 = 33;
/// Check access permissions.
pub const FUSE_ACCESS: u32 = 34;
/// Create and open a file.
pub const FUSE_CREATE: u32 = 35;
/// Interrupt a pending request.
pub const FUSE_INTERRUPT: u32 = 36;
/// Map a file block to a device block.
pub const FUSE_BMAP: u32 = 37;
/// Filesystem shutdown.
pub const FUSE_DESTROY: u32 = 38;
/// Ioctl on a file.
pub const FUSE_IOCTL: u32 = 39;
/// Poll for I/O readiness.
pub const FUSE_POLL: u32 = 40;
/// Reply to a `FUSE_NOTIFY_RETRIEVE` notification.
pub const FUSE_NOTIFY_REPLY: u32 = 41;
/// Drop lookup references of many nodes (no reply).
pub const FUSE_BATCH_FORGET: u32 = 42;
/// Allocate or punch file space.
pub const FUSE_FALLOCATE: u32 = 43;
/// Read directory entries together with their attributes.
pub const FUSE_READDIRPLUS: u32 = 44;
/// Rename with `renameat2(2)` flags.
pub const FUSE_RENAME2: u32 = 45;
/// Find data or holes (`SEEK_DATA` / `SEEK_HOLE`).
pub const FUSE_LSEEK: u32 = 46;
/// Copy a range between files; reply is [`fuse_write_out`].
pub const FUSE_COPY_FILE_RANGE: u32 = 47;
/// Set up a DAX mapping.
pub const FUSE_SETUPMAPPING: u32 = 48;
/// Remove DAX mappings.
pub const FUSE_REMOVEMAPPING: u32 = 49;
/// Synchronise the whole filesystem.
pub const FUSE_SYNCFS: u32 = 50;
/// Create an unnamed temporary file.
pub const FUSE_TMPFILE: u32 = 51;
/// Extended attributes (`statx(2)`).
pub const FUSE_STATX: u32 = 52;
/// Copy a range between files; reply is [`fuse_copy_file_range_out`] with a
/// 64-bit byte count.
pub const FUSE_COPY_FILE_RANGE_64: u32 = 53;
/// CUSE handshake.
pub const CUSE_INIT: u32 = 4096;
/// Reserved: `CUSE_INIT` as seen by a byte-swapped peer.
pub const CUSE_INIT_BSWAP_RESERVED: u32 = 1_048_576;
/// Reserved: `FUSE_INIT` as seen by a byte-swapped peer.
pub const FUSE_INIT_BSWAP_RESERVED: u32 = 436_207_616;

// ---------------------------------------------------------------------------
// Notification codes (sent as fuse_out_header::error with unique == 0)
// ---------------------------------------------------------------------------

/// Wake up a poller; payload [`fuse_notify_poll_wakeup_out`].
pub const FUSE_NOTIFY_POLL: u32 = 1;
/// Invalidate an inode's attributes and data; payload
/// [`fuse_notify_inval_inode_out`].
pub const FUSE_NOTIFY_INVAL_INODE: u32 = 2;
/// Invalidate a directory entry; payload [`fuse_notify_inval_entry_out`]
/// and the name.
pub const FUSE_NOTIFY_INVAL_ENTRY: u32 = 3;
/// Push data into the page cache; payload [`fuse_notify_store_out`] and the
/// data.
pub const FUSE_NOTIFY_STORE: u32 = 4;
/// Ask the kernel for cached data; payload [`fuse_notify_retrieve_out`],
/// answered by a `FUSE_NOTIFY_REPLY` request.
pub const FUSE_NOTIFY_RETRIEVE: u32 = 5;
/// Report a deleted entry; payload [`fuse_notify_delete_out`] and the name.
pub const FUSE_NOTIFY_DELETE: u32 = 6;
/// Ask the kernel to resend all pending requests (no payload).
pub const FUSE_NOTIFY_RESEND: u32 = 7;
/// Bump the connection epoch, invalidating all cached dentries (no
/// payload).
pub const FUSE_NOTIFY_INC_EPOCH: u32 = 8;
/// Ask the kernel to forget unused inodes; payload
/// [`fuse_notify_prune_out`] followed by `count` node ids (`u64`).
pub const FUSE_NOTIFY_PRUNE: u32 = 9;

// ---------------------------------------------------------------------------
// Buffer sizes and compatibility sizes
// ---------------------------------------------------------------------------

/// Minimum size of the buffer a server reads requests into.
pub const FUSE_MIN_READ_BUFFER: usize = 8192;

/// Size of [`fuse_entry_out`] for protocol minors below 9.
pub const FUSE_COMPAT_ENTRY_OUT_SIZE: usize = 120;
/// Size of [`fuse_attr_out`] for protocol minors below 9.
pub const FUSE_COMPAT_ATTR_OUT_SIZE: usize = 96;
/// Size of [`fuse_mknod_in`] for protocol minors below 12.
pub const FUSE_COMPAT_MKNOD_IN_SIZE: usize = 8;
/// Size of [`fuse_write_in`] for protocol minors below 9.
pub const FUSE_COMPAT_WRITE_IN_SIZE: usize = 24;
/// Size of [`fuse_statfs_out`] for protocol minors below 4.
pub const FUSE_COMPAT_STATFS_SIZE: usize = 48;
/// Size of [`fuse_setxattr_in`] without `FUSE_SETXATTR_EXT`.
pub const FUSE_COMPAT_SETXATTR_IN_SIZE: usize = 8;
/// Size of [`fuse_init_out`] for protocol minors below 5.
pub const FUSE_COMPAT_INIT_OUT_SIZE: usize = 8;
/// Size of [`fuse_init_out`] for protocol minors below 23.
pub const FUSE_COMPAT_22_INIT_OUT_SIZE: usize = 24;
/// Largest CUSE device-info string that may follow [`cuse_init_out`].
pub const CUSE_INIT_INFO_MAX: usize = 4096;

// ---------------------------------------------------------------------------
// Lookup, forget, attributes
// ---------------------------------------------------------------------------

/// Reply to LOOKUP, MKNOD, MKDIR, SYMLINK, LINK (and the entry part of
/// CREATE / READDIRPLUS).
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_entry_out {
    /// Node id of the entry; 0 means a negative (cacheable "not found")
    /// entry.
    pub nodeid: u64,
    /// Generation number; `(nodeid, generation)` must be unique over the
    /// filesystem's lifetime.
    pub generation: u64,
    /// How long the name may be cached, seconds part.
    pub entry_valid: u64,
    /// How long the attributes may be cached, seconds part.
    pub attr_valid: u64,
    /// Name cache timeout, nanoseconds part.
    pub entry_valid_nsec: u32,
    /// Attribute cache timeout, nanoseconds part.
    pub attr_valid_nsec: u32,
    /// The entry's attributes.
    pub attr: fuse_attr,
}
const_assert_eq!(core::mem::size_of::<fuse_entry_out>(), 128);

/// FORGET request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_forget_in {
    /// Number of lookups to forget.
    pub nlookup: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_forget_in>(), 8);

/// One element of a `BATCH_FORGET` request.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_forget_one {
    /// Node to forget.
    pub nodeid: u64,
    /// Number of lookups to forget.
    pub nlookup: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_forget_one>(), 16);

/// `BATCH_FORGET` request head; `count` [`fuse_forget_one`] follow.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_batch_forget_in {
    /// Number of entries that follow.
    pub count: u32,
    /// Padding, zero.
    pub dummy: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_batch_forget_in>(), 8);

/// GETATTR request body (protocol 7.9 and later).
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_getattr_in {
    /// `FUSE_GETATTR_*` flags.
    pub getattr_flags: u32,
    /// Padding, zero.
    pub dummy: u32,
    /// File handle, valid with `FUSE_GETATTR_FH`.
    pub fh: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_getattr_in>(), 16);

/// Reply to GETATTR and SETATTR.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_attr_out {
    /// How long the attributes may be cached, seconds part.
    pub attr_valid: u64,
    /// Attribute cache timeout, nanoseconds part.
    pub attr_valid_nsec: u32,
    /// Padding, zero.
    pub dummy: u32,
    /// The attributes.
    pub attr: fuse_attr,
}
const_assert_eq!(core::mem::size_of::<fuse_attr_out>(), 104);

/// STATX request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_statx_in {
    /// `FUSE_GETATTR_*` flags.
    pub getattr_flags: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// File handle, valid with `FUSE_GETATTR_FH`.
    pub fh: u64,
    /// `AT_STATX_*` synchronisation flags from the caller.
    pub sx_flags: u32,
    /// `STATX_*` mask of fields the caller wants.
    pub sx_mask: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_statx_in>(), 24);

/// Reply to STATX.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_statx_out {
    /// How long the attributes may be cached, seconds part.
    pub attr_valid: u64,
    /// Attribute cache timeout, nanoseconds part.
    pub attr_valid_nsec: u32,
    /// Flags, currently zero.
    pub flags: u32,
    /// Spare, zero.
    pub spare: [u64; 2],
    /// The attributes.
    pub stat: fuse_statx,
}
const_assert_eq!(core::mem::size_of::<fuse_statx_out>(), 288);

// ---------------------------------------------------------------------------
// Namespace operations
// ---------------------------------------------------------------------------

/// MKNOD request head; the name follows.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_mknod_in {
    /// File type and permissions.
    pub mode: u32,
    /// Device number for device nodes.
    pub rdev: u32,
    /// The caller's umask.
    pub umask: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_mknod_in>(), 16);

/// MKDIR request head; the name follows.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_mkdir_in {
    /// Permissions.
    pub mode: u32,
    /// The caller's umask.
    pub umask: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_mkdir_in>(), 8);

/// RENAME request head; old and new names follow.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_rename_in {
    /// Node id of the target directory.
    pub newdir: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_rename_in>(), 8);

/// RENAME2 request head; old and new names follow.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_rename2_in {
    /// Node id of the target directory.
    pub newdir: u64,
    /// `RENAME_*` flags of `renameat2(2)`.
    pub flags: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_rename2_in>(), 16);

/// LINK request head; the new name follows.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_link_in {
    /// Node id of the existing file.
    pub oldnodeid: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_link_in>(), 8);

/// SETATTR request body; `valid` says which fields are meaningful.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_setattr_in {
    /// `FATTR_*` bits.
    pub valid: u32,
    /// Padding, zero.
    pub padding: u32,
    /// File handle (`FATTR_FH`).
    pub fh: u64,
    /// New size (`FATTR_SIZE`).
    pub size: u64,
    /// Lock owner (`FATTR_LOCKOWNER`).
    pub lock_owner: u64,
    /// New access time, seconds (`FATTR_ATIME`).
    pub atime: u64,
    /// New modification time, seconds (`FATTR_MTIME`).
    pub mtime: u64,
    /// New change time, seconds (`FATTR_CTIME`).
    pub ctime: u64,
    /// New access time, nanoseconds.
    pub atimensec: u32,
    /// New modification time, nanoseconds.
    pub mtimensec: u32,
    /// New change time, nanoseconds.
    pub ctimensec: u32,
    /// New mode (`FATTR_MODE`).
    pub mode: u32,
    /// Unused, zero.
    pub unused4: u32,
    /// New owner (`FATTR_UID`).
    pub uid: u32,
    /// New group (`FATTR_GID`).
    pub gid: u32,
    /// Unused, zero.
    pub unused5: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_setattr_in>(), 88);

// ---------------------------------------------------------------------------
// Open files
// ---------------------------------------------------------------------------

/// OPEN and OPENDIR request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_open_in {
    /// `open(2)` flags (`O_*`).
    pub flags: u32,
    /// `FUSE_OPEN_*` flags.
    pub open_flags: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_open_in>(), 8);

/// CREATE (and TMPFILE) request head; the name follows.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_create_in {
    /// `open(2)` flags (`O_*`).
    pub flags: u32,
    /// File type and permissions.
    pub mode: u32,
    /// The caller's umask.
    pub umask: u32,
    /// `FUSE_OPEN_*` flags.
    pub open_flags: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_create_in>(), 16);

/// Reply to OPEN and OPENDIR (and the second part of the CREATE reply).
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_open_out {
    /// Server-chosen file handle.
    pub fh: u64,
    /// `FOPEN_*` flags.
    pub open_flags: u32,
    /// Backing file id for `FOPEN_PASSTHROUGH`, from
    /// `FUSE_DEV_IOC_BACKING_OPEN`.
    pub backing_id: i32,
}
const_assert_eq!(core::mem::size_of::<fuse_open_out>(), 16);

/// RELEASE and RELEASEDIR request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_release_in {
    /// File handle.
    pub fh: u64,
    /// `open(2)` flags the file was opened with.
    pub flags: u32,
    /// `FUSE_RELEASE_*` flags.
    pub release_flags: u32,
    /// Lock owner.
    pub lock_owner: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_release_in>(), 24);

/// FLUSH request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_flush_in {
    /// File handle.
    pub fh: u64,
    /// Unused, zero.
    pub unused: u32,
    /// Padding, zero.
    pub padding: u32,
    /// Lock owner.
    pub lock_owner: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_flush_in>(), 24);

/// READ, READDIR and READDIRPLUS request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_read_in {
    /// File handle.
    pub fh: u64,
    /// Byte offset (or directory cookie).
    pub offset: u64,
    /// Number of bytes requested.
    pub size: u32,
    /// `FUSE_READ_*` flags.
    pub read_flags: u32,
    /// Lock owner, valid with `FUSE_READ_LOCKOWNER`.
    pub lock_owner: u64,
    /// `open(2)` flags of the file.
    pub flags: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_read_in>(), 40);

/// WRITE request head; the data follows.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_write_in {
    /// File handle.
    pub fh: u64,
    /// Byte offset.
    pub offset: u64,
    /// Number of bytes of data that follow.
    pub size: u32,
    /// `FUSE_WRITE_*` flags.
    pub write_flags: u32,
    /// Lock owner, valid with `FUSE_WRITE_LOCKOWNER`.
    pub lock_owner: u64,
    /// `open(2)` flags of the file.
    pub flags: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_write_in>(), 40);

/// Reply to WRITE and `COPY_FILE_RANGE`.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_write_out {
    /// Number of bytes written.
    pub size: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_write_out>(), 8);

/// Reply to STATFS.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_statfs_out {
    /// The statistics.
    pub st: fuse_kstatfs,
}
const_assert_eq!(core::mem::size_of::<fuse_statfs_out>(), 80);

/// FSYNC and FSYNCDIR request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_fsync_in {
    /// File handle.
    pub fh: u64,
    /// `FUSE_FSYNC_*` flags.
    pub fsync_flags: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_fsync_in>(), 16);

// ---------------------------------------------------------------------------
// Extended attributes
// ---------------------------------------------------------------------------

/// SETXATTR request head; name and value follow.
///
/// Without `FUSE_SETXATTR_EXT` only the first
/// [`FUSE_COMPAT_SETXATTR_IN_SIZE`] bytes are sent.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_setxattr_in {
    /// Length of the value.
    pub size: u32,
    /// `XATTR_CREATE` / `XATTR_REPLACE`.
    pub flags: u32,
    /// `FUSE_SETXATTR_*` flags.
    pub setxattr_flags: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_setxattr_in>(), 16);

/// GETXATTR and LISTXATTR request head (GETXATTR: the name follows).
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_getxattr_in {
    /// Size of the caller's buffer; 0 asks for the needed size.
    pub size: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_getxattr_in>(), 8);

/// Reply to a GETXATTR/LISTXATTR size probe (`size == 0` request).
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_getxattr_out {
    /// Size the value (or name list) needs.
    pub size: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_getxattr_out>(), 8);

// ---------------------------------------------------------------------------
// Locks and access
// ---------------------------------------------------------------------------

/// GETLK, SETLK and SETLKW request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_lk_in {
    /// File handle.
    pub fh: u64,
    /// Lock owner.
    pub owner: u64,
    /// The lock.
    pub lk: fuse_file_lock,
    /// `FUSE_LK_*` flags.
    pub lk_flags: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_lk_in>(), 48);

/// Reply to GETLK.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_lk_out {
    /// The conflicting lock, or `F_UNLCK` in `typ` if none.
    pub lk: fuse_file_lock,
}
const_assert_eq!(core::mem::size_of::<fuse_lk_out>(), 24);

/// ACCESS request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_access_in {
    /// `R_OK | W_OK | X_OK` or `F_OK`.
    pub mask: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_access_in>(), 8);

// ---------------------------------------------------------------------------
// INIT
// ---------------------------------------------------------------------------

/// INIT request body.
///
/// Kernels speaking a minor below 36 send only the first 16 bytes (up to and
/// including `flags`); the rest must then be treated as zero.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_init_in {
    /// Kernel's major version.
    pub major: u32,
    /// Kernel's minor version.
    pub minor: u32,
    /// Largest readahead the kernel will use.
    pub max_readahead: u32,
    /// INIT flags, bits 0..31.
    pub flags: u32,
    /// INIT flags, bits 32..63 shifted down (valid with `FUSE_INIT_EXT`).
    pub flags2: u32,
    /// Unused, zero.
    pub unused: [u32; 11],
}
const_assert_eq!(core::mem::size_of::<fuse_init_in>(), 64);

/// INIT reply.
///
/// Older protocol minors accept shorter replies, see
/// [`FUSE_COMPAT_INIT_OUT_SIZE`] and [`FUSE_COMPAT_22_INIT_OUT_SIZE`].
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_init_out {
    /// Server's major version.
    pub major: u32,
    /// Server's minor version.
    pub minor: u32,
    /// Readahead the server accepts (at most the kernel's value).
    pub max_readahead: u32,
    /// Accepted INIT flags, bits 0..31.
    pub flags: u32,
    /// Maximum number of outstanding background requests.
    pub max_background: u16,
    /// Background request count at which the kernel reports congestion.
    pub congestion_threshold: u16,
    /// Largest WRITE payload the server accepts.
    pub max_write: u32,
    /// Timestamp granularity in nanoseconds (1 = full precision).
    pub time_gran: u32,
    /// Largest request in pages (valid with `FUSE_MAX_PAGES`).
    pub max_pages: u16,
    /// log2 of the DAX mapping alignment (valid with `FUSE_MAP_ALIGNMENT`).
    pub map_alignment: u16,
    /// Accepted INIT flags, bits 32..63 shifted down.
    pub flags2: u32,
    /// Stacking depth of passthrough backing files (with
    /// `FUSE_PASSTHROUGH`).
    pub max_stack_depth: u32,
    /// Request timeout in seconds (with `FUSE_REQUEST_TIMEOUT`).
    pub request_timeout: u16,
    /// Unused, zero.
    pub unused: [u16; 11],
}
const_assert_eq!(core::mem::size_of::<fuse_init_out>(), 64);

/// `CUSE_INIT` request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct cuse_init_in {
    /// Kernel's major version.
    pub major: u32,
    /// Kernel's minor version.
    pub minor: u32,
    /// Unused, zero.
    pub unused: u32,
    /// `CUSE_*` flags.
    pub flags: u32,
}
const_assert_eq!(core::mem::size_of::<cuse_init_in>(), 16);

/// `CUSE_INIT` reply head; the device-info string follows (at most
/// [`CUSE_INIT_INFO_MAX`] bytes).
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct cuse_init_out {
    /// Server's major version.
    pub major: u32,
    /// Server's minor version.
    pub minor: u32,
    /// Unused, zero.
    pub unused: u32,
    /// Accepted `CUSE_*` flags.
    pub flags: u32,
    /// Largest READ size.
    pub max_read: u32,
    /// Largest WRITE size.
    pub max_write: u32,
    /// Character device major number.
    pub dev_major: u32,
    /// Character device minor number.
    pub dev_minor: u32,
    /// Spare, zero.
    pub spare: [u32; 10],
}
const_assert_eq!(core::mem::size_of::<cuse_init_out>(), 72);

/// Alias of [`cuse_init_in`] with the `fuse_` prefix the rest of the crate
/// uses; the kernel spells it without.
pub type fuse_cuse_init_in = cuse_init_in;
/// Alias of [`cuse_init_out`] with the `fuse_` prefix the rest of the crate
/// uses; the kernel spells it without.
pub type fuse_cuse_init_out = cuse_init_out;

// ---------------------------------------------------------------------------
// Misc requests
// ---------------------------------------------------------------------------

/// INTERRUPT request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_interrupt_in {
    /// `unique` of the request to interrupt.
    pub unique: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_interrupt_in>(), 8);

/// BMAP request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_bmap_in {
    /// Block index within the file.
    pub block: u64,
    /// Block size in bytes.
    pub blocksize: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_bmap_in>(), 16);

/// Reply to BMAP.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_bmap_out {
    /// Block index on the device.
    pub block: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_bmap_out>(), 8);

/// IOCTL request head; `in_size` bytes of input follow.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_ioctl_in {
    /// File handle.
    pub fh: u64,
    /// `FUSE_IOCTL_*` flags.
    pub flags: u32,
    /// Ioctl command number.
    pub cmd: u32,
    /// Ioctl argument (a user-space address or an integer).
    pub arg: u64,
    /// Bytes of input data that follow.
    pub in_size: u32,
    /// Bytes of output the caller can accept.
    pub out_size: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_ioctl_in>(), 32);

/// An address range in the caller's memory, used in ioctl retries.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_ioctl_iovec {
    /// Start address.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_ioctl_iovec>(), 16);

/// IOCTL reply head; output data or, with `FUSE_IOCTL_RETRY`, the iovecs
/// follow.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_ioctl_out {
    /// Return value of the ioctl.
    pub result: i32,
    /// `FUSE_IOCTL_*` flags.
    pub flags: u32,
    /// Number of input iovecs (retry).
    pub in_iovs: u32,
    /// Number of output iovecs (retry).
    pub out_iovs: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_ioctl_out>(), 16);

/// POLL request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_poll_in {
    /// File handle.
    pub fh: u64,
    /// Kernel poll handle, echoed in `FUSE_NOTIFY_POLL`.
    pub kh: u64,
    /// `FUSE_POLL_*` flags.
    pub flags: u32,
    /// Requested `POLL*` events.
    pub events: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_poll_in>(), 24);

/// Reply to POLL.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_poll_out {
    /// Ready `POLL*` events.
    pub revents: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_poll_out>(), 8);

/// Payload of `FUSE_NOTIFY_POLL`.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_notify_poll_wakeup_out {
    /// Kernel poll handle from `fuse_poll_in::kh`.
    pub kh: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_notify_poll_wakeup_out>(), 8);

/// FALLOCATE request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_fallocate_in {
    /// File handle.
    pub fh: u64,
    /// Start of the range.
    pub offset: u64,
    /// Length of the range.
    pub length: u64,
    /// `FALLOC_FL_*` mode bits.
    pub mode: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_fallocate_in>(), 32);

// ---------------------------------------------------------------------------
// Message headers
// ---------------------------------------------------------------------------

/// Bit in `fuse_in_header::unique` marking a resent request (with
/// `FUSE_HAS_RESEND`).
pub const FUSE_UNIQUE_RESEND: u64 = 1 << 63;

/// Value of `fuse_in_header::uid` / `gid` when an idmapped mount
/// (`FUSE_ALLOW_IDMAP`) cannot map the caller's ids.
pub const FUSE_INVALID_UIDGID: u32 = u32::MAX;

/// Header of every request from the kernel.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_in_header {
    /// Total length of the request including this header.
    pub len: u32,
    /// `FUSE_*` opcode.
    pub opcode: u32,
    /// Request id, echoed in the reply.
    pub unique: u64,
    /// Node the request applies to.
    pub nodeid: u64,
    /// Caller's user id.
    pub uid: u32,
    /// Caller's group id.
    pub gid: u32,
    /// Caller's thread group id.
    pub pid: u32,
    /// Length of the trailing extensions, in 8-byte units.
    pub total_extlen: u16,
    /// Padding, zero.
    pub padding: u16,
}
const_assert_eq!(core::mem::size_of::<fuse_in_header>(), 40);

/// Header of every reply and notification to the kernel.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_out_header {
    /// Total length of the reply including this header.
    pub len: u32,
    /// Zero or a negated errno; for notifications (`unique == 0`) the
    /// `FUSE_NOTIFY_*` code.
    pub error: i32,
    /// `unique` of the request answered, or 0 for a notification.
    pub unique: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_out_header>(), 16);

// ---------------------------------------------------------------------------
// Directory entries
// ---------------------------------------------------------------------------

/// Fixed head of a READDIR record. In the stream it is followed by
/// `namelen` name bytes and zero padding up to an 8-byte boundary (see
/// [`fuse_dirent_size`]); the C flexible member `name` is not part of this
/// struct.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_dirent {
    /// Inode number (as in `d_ino`).
    pub ino: u64,
    /// Cookie of the next entry, passed back as `fuse_read_in::offset`.
    pub off: u64,
    /// Length of the name that follows.
    pub namelen: u32,
    /// File type as in `d_type` (`DT_*`), i.e. `(mode & S_IFMT) >> 12`.
    pub typ: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_dirent>(), 24);

/// Offset of the name within a READDIR record.
pub const FUSE_NAME_OFFSET: usize = core::mem::size_of::<fuse_dirent>();

/// Fixed head of a READDIRPLUS record: entry reply plus directory entry;
/// the name and padding follow as for [`fuse_dirent`].
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_direntplus {
    /// Lookup reply for the entry (counts as a lookup unless `nodeid` is
    /// 0).
    pub entry_out: fuse_entry_out,
    /// The directory entry.
    pub dirent: fuse_dirent,
}
const_assert_eq!(core::mem::size_of::<fuse_direntplus>(), 152);

/// Offset of the name within a READDIRPLUS record.
pub const FUSE_NAME_OFFSET_DIRENTPLUS: usize = core::mem::size_of::<fuse_direntplus>();
/// Same as [`FUSE_NAME_OFFSET_DIRENTPLUS`] (fuselage spelling).
pub const FUSE_DIRENTPLUS_NAME_OFFSET: usize = FUSE_NAME_OFFSET_DIRENTPLUS;
const_assert_eq!(FUSE_NAME_OFFSET, 24);
const_assert_eq!(FUSE_NAME_OFFSET_DIRENTPLUS, 152);

/// Round `x` up to the 8-byte record alignment used for directory entries
/// (`FUSE_REC_ALIGN` / `FUSE_DIRENT_ALIGN`).
#[must_use]
pub const fn fuse_rec_align(x: usize) -> usize {
    (x + 7) & !7
}

/// Bytes a READDIR record with a name of `namelen` bytes occupies, padding
/// included (`FUSE_DIRENT_SIZE`).
#[must_use]
pub const fn fuse_dirent_size(namelen: usize) -> usize {
    fuse_rec_align(FUSE_NAME_OFFSET + namelen)
}

/// Bytes a READDIRPLUS record with a name of `namelen` bytes occupies,
/// padding included (`FUSE_DIRENTPLUS_SIZE`).
#[must_use]
pub const fn fuse_direntplus_size(namelen: usize) -> usize {
    fuse_rec_align(FUSE_NAME_OFFSET_DIRENTPLUS + namelen)
}

// ---------------------------------------------------------------------------
// Notifications
// ---------------------------------------------------------------------------

/// Payload of `FUSE_NOTIFY_INVAL_INODE`.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_notify_inval_inode_out {
    /// Node id of the inode.
    pub ino: u64,
    /// Start of the data range to drop; negative means attributes only.
    pub off: i64,
    /// Length of the range; 0 or less means to end of file.
    pub len: i64,
}
const_assert_eq!(core::mem::size_of::<fuse_notify_inval_inode_out>(), 24);

/// Payload head of `FUSE_NOTIFY_INVAL_ENTRY`; the name and a NUL follow.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_notify_inval_entry_out {
    /// Node id of the parent directory.
    pub parent: u64,
    /// Length of the name (without the NUL).
    pub namelen: u32,
    /// `FUSE_EXPIRE_ONLY` or 0.
    pub flags: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_notify_inval_entry_out>(), 16);

/// Payload head of `FUSE_NOTIFY_DELETE`; the name and a NUL follow.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_notify_delete_out {
    /// Node id of the parent directory.
    pub parent: u64,
    /// Node id of the deleted child.
    pub child: u64,
    /// Length of the name (without the NUL).
    pub namelen: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_notify_delete_out>(), 24);

/// Payload head of `FUSE_NOTIFY_STORE`; `size` data bytes follow.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_notify_store_out {
    /// Node id of the file.
    pub nodeid: u64,
    /// File offset of the data.
    pub offset: u64,
    /// Number of data bytes.
    pub size: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_notify_store_out>(), 24);

/// Payload of `FUSE_NOTIFY_RETRIEVE`.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_notify_retrieve_out {
    /// Server-chosen id, echoed as the `unique` of the `FUSE_NOTIFY_REPLY`
    /// request.
    pub notify_unique: u64,
    /// Node id of the file.
    pub nodeid: u64,
    /// File offset to retrieve from.
    pub offset: u64,
    /// Number of bytes wanted.
    pub size: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_notify_retrieve_out>(), 32);

/// Body head of a `FUSE_NOTIFY_REPLY` request; the retrieved data follows.
/// Same size as [`fuse_write_in`].
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_notify_retrieve_in {
    /// Unused.
    pub dummy1: u64,
    /// File offset of the data.
    pub offset: u64,
    /// Number of data bytes that follow.
    pub size: u32,
    /// Unused.
    pub dummy2: u32,
    /// Unused.
    pub dummy3: u64,
    /// Unused.
    pub dummy4: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_notify_retrieve_in>(), 40);

/// Payload head of `FUSE_NOTIFY_PRUNE`; `count` node ids (`u64`) follow.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_notify_prune_out {
    /// Number of node ids that follow.
    pub count: u32,
    /// Padding, zero.
    pub padding: u32,
    /// Spare, zero.
    pub spare: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_notify_prune_out>(), 16);

// ---------------------------------------------------------------------------
// Device ioctls
// ---------------------------------------------------------------------------

/// Argument of `FUSE_DEV_IOC_BACKING_OPEN`.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_backing_map {
    /// File descriptor of the backing file.
    pub fd: i32,
    /// Flags, zero.
    pub flags: u32,
    /// Padding, zero.
    pub padding: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_backing_map>(), 16);

/// Ioctl type ("magic") byte of `/dev/fuse`.
pub const FUSE_DEV_IOC_MAGIC: u32 = 229;

// Linux `_IOC` encoding. Most architectures use the asm-generic layout
// (2 direction bits, 14 size bits, write = 1, read = 2); a few use 3
// direction bits and 13 size bits with none = 1, read = 2, write = 4.
#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "mips32r6",
    target_arch = "mips64r6",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
mod ioc {
    pub const NONE: u32 = 1;
    pub const READ: u32 = 2;
    pub const WRITE: u32 = 4;
    pub const SIZEBITS: u32 = 13;
}
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "mips32r6",
    target_arch = "mips64r6",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
mod ioc {
    pub const NONE: u32 = 0;
    pub const READ: u32 = 2;
    pub const WRITE: u32 = 1;
    pub const SIZEBITS: u32 = 14;
}

// Argument sizes of the device ioctls, as the `u32` the encoding needs.
const SIZEOF_U32: u32 = 4;
const SIZEOF_FUSE_BACKING_MAP: u32 = 16;
const_assert_eq!(core::mem::size_of::<u32>(), SIZEOF_U32 as usize);
const_assert_eq!(
    core::mem::size_of::<fuse_backing_map>(),
    SIZEOF_FUSE_BACKING_MAP as usize
);

/// `_IOC(dir, ty, nr, size)` for the target architecture.
const fn ioc_encode(dir: u32, ty: u32, nr: u32, size: u32) -> u32 {
    (dir << (16 + ioc::SIZEBITS)) | (size << 16) | (ty << 8) | nr
}

/// `_IOR(229, 0, uint32_t)`: attach a new `/dev/fuse` fd to the session of
/// the fd passed as argument (`0x8004E500` on x86 and arm).
pub const FUSE_DEV_IOC_CLONE: u32 = ioc_encode(ioc::READ, FUSE_DEV_IOC_MAGIC, 0, SIZEOF_U32);
/// `_IOW(229, 1, struct fuse_backing_map)`: register a backing file for
/// passthrough; returns the backing id (`0x4010E501` on x86 and arm).
pub const FUSE_DEV_IOC_BACKING_OPEN: u32 =
    ioc_encode(ioc::WRITE, FUSE_DEV_IOC_MAGIC, 1, SIZEOF_FUSE_BACKING_MAP);
/// `_IOW(229, 2, uint32_t)`: drop a backing id (`0x4004E502` on x86 and
/// arm).
pub const FUSE_DEV_IOC_BACKING_CLOSE: u32 =
    ioc_encode(ioc::WRITE, FUSE_DEV_IOC_MAGIC, 2, SIZEOF_U32);
/// `_IO(229, 3)`: make this fd's INIT exchange synchronous, i.e. performed
/// before `mount(2)` returns (`0xE503` on x86 and arm).
pub const FUSE_DEV_IOC_SYNC_INIT: u32 = ioc_encode(ioc::NONE, FUSE_DEV_IOC_MAGIC, 3, 0);

// ---------------------------------------------------------------------------
// lseek, copy_file_range, DAX mappings, syncfs
// ---------------------------------------------------------------------------

/// LSEEK request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_lseek_in {
    /// File handle.
    pub fh: u64,
    /// Starting offset.
    pub offset: u64,
    /// `SEEK_DATA` or `SEEK_HOLE` (others are handled by the kernel).
    pub whence: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_lseek_in>(), 24);

/// Reply to LSEEK.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_lseek_out {
    /// Resulting offset.
    pub offset: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_lseek_out>(), 8);

/// `COPY_FILE_RANGE` and `COPY_FILE_RANGE_64` request body (the request's
/// `nodeid` is the source file).
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_copy_file_range_in {
    /// Source file handle.
    pub fh_in: u64,
    /// Source offset.
    pub off_in: u64,
    /// Node id of the destination file.
    pub nodeid_out: u64,
    /// Destination file handle.
    pub fh_out: u64,
    /// Destination offset.
    pub off_out: u64,
    /// Number of bytes to copy.
    pub len: u64,
    /// `copy_file_range(2)` flags.
    pub flags: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_copy_file_range_in>(), 56);

/// Reply to `COPY_FILE_RANGE_64`.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_copy_file_range_out {
    /// Number of bytes copied.
    pub bytes_copied: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_copy_file_range_out>(), 8);

/// `fuse_setupmapping_in::flags`: map for writing.
pub const FUSE_SETUPMAPPING_FLAG_WRITE: u64 = 1 << 0;
/// `fuse_setupmapping_in::flags`: map for reading.
pub const FUSE_SETUPMAPPING_FLAG_READ: u64 = 1 << 1;

/// SETUPMAPPING request body (virtiofs DAX window).
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_setupmapping_in {
    /// An open file handle.
    pub fh: u64,
    /// File offset where the mapping starts.
    pub foffset: u64,
    /// Length of the mapping.
    pub len: u64,
    /// `FUSE_SETUPMAPPING_FLAG_*`.
    pub flags: u64,
    /// Offset in the DAX memory window.
    pub moffset: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_setupmapping_in>(), 40);

/// REMOVEMAPPING request head; `count` [`fuse_removemapping_one`] follow.
/// Note that this struct is only 4 bytes long, as in C.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_removemapping_in {
    /// Number of entries that follow.
    pub count: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_removemapping_in>(), 4);

/// One range of a REMOVEMAPPING request.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_removemapping_one {
    /// Offset in the DAX memory window.
    pub moffset: u64,
    /// Length of the range.
    pub len: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_removemapping_one>(), 16);

/// Most [`fuse_removemapping_one`] entries in one request for a given page
/// size (`FUSE_REMOVEMAPPING_MAX_ENTRY`, which C defines via `PAGE_SIZE`).
#[must_use]
pub const fn fuse_removemapping_max_entry(page_size: usize) -> usize {
    page_size / core::mem::size_of::<fuse_removemapping_one>()
}

/// SYNCFS request body.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_syncfs_in {
    /// Padding, zero.
    pub padding: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_syncfs_in>(), 8);

// ---------------------------------------------------------------------------
// Request extensions (after the body, total_extlen * 8 bytes)
// ---------------------------------------------------------------------------

/// One security context; followed by the NUL-terminated xattr name and then
/// the context value, `size` bytes in total after this head.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_secctx {
    /// Length of the context value.
    pub size: u32,
    /// Padding, zero.
    pub padding: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_secctx>(), 8);

/// Head of the security-context extension; `nr_secctx` [`fuse_secctx`]
/// records follow.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_secctx_header {
    /// Total size of all contexts including this header.
    pub size: u32,
    /// Number of contexts (at most [`FUSE_MAX_NR_SECCTX`]).
    pub nr_secctx: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_secctx_header>(), 8);

/// Generic extension head. Shares its layout with
/// [`fuse_secctx_header`]: a `typ` above [`FUSE_MAX_NR_SECCTX`] names an
/// extension kind, anything else is a security-context count.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_ext_header {
    /// Total size of this extension including the header.
    pub size: u32,
    /// Extension type (`FUSE_EXT_*`).
    pub typ: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_ext_header>(), 8);

/// Fixed head of the supplementary-groups extension; `nr_groups` group ids
/// (`u32`) follow. The C flexible member `groups` is not part of this
/// struct.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_supp_groups {
    /// Number of group ids that follow.
    pub nr_groups: u32,
}
const_assert_eq!(core::mem::size_of::<fuse_supp_groups>(), 4);

// ---------------------------------------------------------------------------
// FUSE over io_uring
// ---------------------------------------------------------------------------

/// Bytes reserved for the in/out header in [`fuse_uring_req_header`].
pub const FUSE_URING_IN_OUT_HEADER_SZ: usize = 128;
/// Bytes reserved for the per-opcode header in [`fuse_uring_req_header`].
pub const FUSE_URING_OP_IN_OUT_SZ: usize = 128;

/// Ring-entry bookkeeping inside [`fuse_uring_req_header`].
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_uring_ent_in_out {
    /// Flags, zero.
    pub flags: u64,
    /// Id to quote in the `COMMIT_AND_FETCH` command answering this
    /// request (see [`fuse_uring_cmd_req`]).
    pub commit_id: u64,
    /// Bytes used in the payload buffer.
    pub payload_sz: u32,
    /// Padding, zero.
    pub padding: u32,
    /// Reserved, zero.
    pub reserved: u64,
}
const_assert_eq!(core::mem::size_of::<fuse_uring_ent_in_out>(), 32);

/// Header buffer registered for each `io_uring` ring entry; the payload lives
/// in a separate buffer.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_uring_req_header {
    /// A [`fuse_in_header`] (request) or [`fuse_out_header`] (reply).
    pub in_out: [u8; FUSE_URING_IN_OUT_HEADER_SZ],
    /// The opcode-specific fixed header.
    pub op_in: [u8; FUSE_URING_OP_IN_OUT_SZ],
    /// Ring-entry bookkeeping.
    pub ring_ent_in_out: fuse_uring_ent_in_out,
}
const_assert_eq!(core::mem::size_of::<fuse_uring_req_header>(), 288);

impl Default for fuse_uring_req_header {
    fn default() -> Self {
        zerocopy::FromZeros::new_zeroed()
    }
}

/// `io_uring` command: invalid / unset.
pub const FUSE_IO_URING_CMD_INVALID: u32 = 0;
/// `io_uring` command: register a ring entry's buffers and wait for a
/// request.
pub const FUSE_IO_URING_CMD_REGISTER: u32 = 1;
/// `io_uring` command: commit the reply for `commit_id` and wait for the
/// next request.
pub const FUSE_IO_URING_CMD_COMMIT_AND_FETCH: u32 = 2;
/// Same as [`FUSE_IO_URING_CMD_REGISTER`] (fuselage spelling).
pub const FUSE_URING_CMD_REGISTER: u32 = FUSE_IO_URING_CMD_REGISTER;
/// Same as [`FUSE_IO_URING_CMD_COMMIT_AND_FETCH`] (fuselage spelling).
pub const FUSE_URING_CMD_COMMIT_AND_FETCH: u32 = FUSE_IO_URING_CMD_COMMIT_AND_FETCH;

/// Command payload placed in the 80-byte command area of an
/// `IORING_OP_URING_CMD` submission entry.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct fuse_uring_cmd_req {
    /// Flags, zero.
    pub flags: u64,
    /// Ring entry being committed (`COMMIT_AND_FETCH`).
    pub commit_id: u64,
    /// Queue index (one queue per CPU).
    pub qid: u16,
    /// Padding, zero.
    pub padding: [u8; 6],
}
const_assert_eq!(core::mem::size_of::<fuse_uring_cmd_req>(), 24);

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;
    use zerocopy::{FromBytes, IntoBytes};

    fn u32_at(bytes: &[u8], off: usize) -> u32 {
        u32::from_ne_bytes(bytes[off..off + 4].try_into().unwrap())
    }

    fn u64_at(bytes: &[u8], off: usize) -> u64 {
        u64::from_ne_bytes(bytes[off..off + 8].try_into().unwrap())
    }

    fn u16_at(bytes: &[u8], off: usize) -> u16 {
        u16::from_ne_bytes(bytes[off..off + 2].try_into().unwrap())
    }

    #[test]
    fn in_header_layout() {
        let h = fuse_in_header {
            len: 0x1111_1111,
            opcode: FUSE_LOOKUP,
            unique: 0x2222_2222_3333_3333,
            nodeid: FUSE_ROOT_ID,
            uid: 1000,
            gid: 100,
            pid: 4242,
            total_extlen: 3,
            padding: 0,
        };
        let b = h.as_bytes();
        assert_eq!(b.len(), 40);
        assert_eq!(offset_of!(fuse_in_header, len), 0);
        assert_eq!(offset_of!(fuse_in_header, opcode), 4);
        assert_eq!(offset_of!(fuse_in_header, unique), 8);
        assert_eq!(offset_of!(fuse_in_header, nodeid), 16);
        assert_eq!(offset_of!(fuse_in_header, uid), 24);
        assert_eq!(offset_of!(fuse_in_header, gid), 28);
        assert_eq!(offset_of!(fuse_in_header, pid), 32);
        assert_eq!(offset_of!(fuse_in_header, total_extlen), 36);
        assert_eq!(offset_of!(fuse_in_header, padding), 38);
        assert_eq!(u32_at(b, 0), 0x1111_1111);
        assert_eq!(u32_at(b, 4), FUSE_LOOKUP);
        assert_eq!(u64_at(b, 8), 0x2222_2222_3333_3333);
        assert_eq!(u64_at(b, 16), 1);
        assert_eq!(u32_at(b, 24), 1000);
        assert_eq!(u32_at(b, 28), 100);
        assert_eq!(u32_at(b, 32), 4242);
        assert_eq!(u16_at(b, 36), 3);
        assert_eq!(u16_at(b, 38), 0);

        let back = fuse_in_header::read_from_bytes(b).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn attr_layout() {
        let a = fuse_attr {
            ino: 7,
            size: 8,
            blocks: 9,
            atime: 10,
            mtime: 11,
            ctime: 12,
            atimensec: 13,
            mtimensec: 14,
            ctimensec: 15,
            mode: 0o100_644,
            nlink: 1,
            uid: 2,
            gid: 3,
            rdev: 4,
            blksize: 4096,
            flags: FUSE_ATTR_SUBMOUNT,
        };
        let b = a.as_bytes();
        assert_eq!(b.len(), 88);
        assert_eq!(offset_of!(fuse_attr, ctime), 40);
        assert_eq!(offset_of!(fuse_attr, atimensec), 48);
        assert_eq!(offset_of!(fuse_attr, mode), 60);
        assert_eq!(offset_of!(fuse_attr, rdev), 76);
        assert_eq!(offset_of!(fuse_attr, blksize), 80);
        assert_eq!(offset_of!(fuse_attr, flags), 84);
        assert_eq!(u64_at(b, 0), 7);
        assert_eq!(u64_at(b, 40), 12);
        assert_eq!(u32_at(b, 48), 13);
        assert_eq!(u32_at(b, 60), 0o100_644);
        assert_eq!(u32_at(b, 80), 4096);
        assert_eq!(u32_at(b, 84), FUSE_ATTR_SUBMOUNT);
    }

    #[test]
    fn entry_out_layout() {
        let e = fuse_entry_out {
            nodeid: 42,
            generation: 1,
            entry_valid: 2,
            attr_valid: 3,
            entry_valid_nsec: 4,
            attr_valid_nsec: 5,
            attr: fuse_attr {
                ino: 42,
                flags: FUSE_ATTR_DAX,
                ..Default::default()
            },
        };
        let b = e.as_bytes();
        assert_eq!(b.len(), 128);
        assert_eq!(offset_of!(fuse_entry_out, entry_valid_nsec), 32);
        assert_eq!(offset_of!(fuse_entry_out, attr_valid_nsec), 36);
        assert_eq!(offset_of!(fuse_entry_out, attr), 40);
        assert_eq!(
            offset_of!(fuse_entry_out, attr),
            FUSE_COMPAT_ENTRY_OUT_SIZE - 80
        );
        assert_eq!(u64_at(b, 0), 42);
        assert_eq!(u32_at(b, 32), 4);
        assert_eq!(u32_at(b, 36), 5);
        assert_eq!(u64_at(b, 40), 42);
        assert_eq!(u32_at(b, 40 + 84), FUSE_ATTR_DAX);
        // The pre-7.9 reply is the same bytes without blksize and flags.
        assert_eq!(
            FUSE_COMPAT_ENTRY_OUT_SIZE,
            40 + offset_of!(fuse_attr, blksize)
        );
        assert_eq!(
            FUSE_COMPAT_ATTR_OUT_SIZE,
            16 + offset_of!(fuse_attr, blksize)
        );
    }

    #[test]
    fn dirent_layout_and_sizes() {
        let d = fuse_dirent {
            ino: 5,
            off: 6,
            namelen: 3,
            typ: 4,
        };
        let b = d.as_bytes();
        assert_eq!(b.len(), FUSE_NAME_OFFSET);
        assert_eq!(offset_of!(fuse_dirent, off), 8);
        assert_eq!(offset_of!(fuse_dirent, namelen), 16);
        assert_eq!(offset_of!(fuse_dirent, typ), 20);
        assert_eq!(u32_at(b, 16), 3);
        assert_eq!(u32_at(b, 20), 4);

        assert_eq!(fuse_dirent_size(0), 24);
        assert_eq!(fuse_dirent_size(1), 32);
        assert_eq!(fuse_dirent_size(8), 32);
        assert_eq!(fuse_dirent_size(9), 40);
        assert_eq!(offset_of!(fuse_direntplus, dirent), 128);
        assert_eq!(fuse_direntplus_size(1), 160);
        assert_eq!(fuse_direntplus_size(8), 160);
        assert_eq!(fuse_direntplus_size(9), 168);
        assert_eq!(FUSE_DIRENTPLUS_NAME_OFFSET, 152);
    }

    #[test]
    fn init_out_layout() {
        let o = fuse_init_out {
            major: FUSE_KERNEL_VERSION,
            minor: FUSE_KERNEL_MINOR_VERSION,
            max_readahead: 0x2_0000,
            flags: u32::try_from(FUSE_ASYNC_READ | FUSE_INIT_EXT).unwrap(),
            max_background: 16,
            congestion_threshold: 12,
            max_write: 1 << 20,
            time_gran: 1,
            max_pages: 256,
            map_alignment: 0,
            flags2: u32::try_from((FUSE_PASSTHROUGH | FUSE_OVER_IO_URING) >> 32).unwrap(),
            max_stack_depth: 1,
            request_timeout: 30,
            unused: [0; 11],
        };
        let b = o.as_bytes();
        assert_eq!(b.len(), 64);
        assert_eq!(offset_of!(fuse_init_out, max_background), 16);
        assert_eq!(offset_of!(fuse_init_out, congestion_threshold), 18);
        assert_eq!(offset_of!(fuse_init_out, max_write), 20);
        assert_eq!(offset_of!(fuse_init_out, time_gran), 24);
        assert_eq!(offset_of!(fuse_init_out, max_pages), 28);
        assert_eq!(offset_of!(fuse_init_out, map_alignment), 30);
        assert_eq!(offset_of!(fuse_init_out, flags2), 32);
        assert_eq!(offset_of!(fuse_init_out, max_stack_depth), 36);
        assert_eq!(offset_of!(fuse_init_out, request_timeout), 40);
        assert_eq!(offset_of!(fuse_init_out, unused), 42);
        assert_eq!(
            offset_of!(fuse_init_out, max_write),
            FUSE_COMPAT_INIT_OUT_SIZE + 12
        );
        assert_eq!(
            offset_of!(fuse_init_out, time_gran),
            FUSE_COMPAT_22_INIT_OUT_SIZE
        );
        assert_eq!(u32_at(b, 0), 7);
        assert_eq!(u32_at(b, 4), 45);
        assert_eq!(u32_at(b, 12), (1 << 0) | (1 << 30));
        assert_eq!(u16_at(b, 16), 16);
        assert_eq!(u32_at(b, 20), 1 << 20);
        assert_eq!(u16_at(b, 28), 256);
        assert_eq!(u32_at(b, 32), (1 << 5) | (1 << 9));
        assert_eq!(u16_at(b, 40), 30);
        assert!(b[42..].iter().all(|&x| x == 0));
    }

    #[test]
    fn init_in_layout() {
        assert_eq!(offset_of!(fuse_init_in, flags), 12);
        assert_eq!(offset_of!(fuse_init_in, flags2), 16);
        assert_eq!(offset_of!(fuse_init_in, unused), 20);
    }

    #[test]
    fn uring_layout() {
        let h = fuse_uring_req_header::default();
        assert!(h.as_bytes().iter().all(|&x| x == 0));
        assert_eq!(offset_of!(fuse_uring_req_header, op_in), 128);
        assert_eq!(offset_of!(fuse_uring_req_header, ring_ent_in_out), 256);
        assert_eq!(offset_of!(fuse_uring_ent_in_out, payload_sz), 16);
        assert_eq!(offset_of!(fuse_uring_cmd_req, qid), 16);
        assert!(core::mem::size_of::<fuse_uring_cmd_req>() <= 80);
        assert!(core::mem::size_of::<fuse_in_header>() <= FUSE_URING_IN_OUT_HEADER_SZ);
    }

    #[test]
    fn statx_layout() {
        assert_eq!(offset_of!(fuse_statx, mode), 28);
        assert_eq!(offset_of!(fuse_statx, ino), 32);
        assert_eq!(offset_of!(fuse_statx, atime), 64);
        assert_eq!(offset_of!(fuse_statx, mtime), 112);
        assert_eq!(offset_of!(fuse_statx, rdev_major), 128);
        assert_eq!(offset_of!(fuse_statx, __spare2), 144);
        assert_eq!(offset_of!(fuse_statx_out, stat), 32);
    }

    /// Independent asm-generic `_IOC` encoder (x86, arm, riscv, ...).
    const fn generic_ioc(dir: u32, ty: u32, nr: u32, size: u32) -> u32 {
        (dir << 30) | (size << 16) | (ty << 8) | nr
    }
    const fn generic_io(ty: u32, nr: u32) -> u32 {
        generic_ioc(0, ty, nr, 0)
    }
    const fn generic_ior(ty: u32, nr: u32, size: u32) -> u32 {
        generic_ioc(2, ty, nr, size)
    }
    const fn generic_iow(ty: u32, nr: u32, size: u32) -> u32 {
        generic_ioc(1, ty, nr, size)
    }

    #[test]
    #[cfg(any(
        target_arch = "x86",
        target_arch = "x86_64",
        target_arch = "arm",
        target_arch = "aarch64",
        target_arch = "riscv32",
        target_arch = "riscv64",
        target_arch = "loongarch64",
        target_arch = "s390x"
    ))]
    fn dev_ioctl_numbers() {
        assert_eq!(FUSE_DEV_IOC_MAGIC, 229);
        assert_eq!(FUSE_DEV_IOC_CLONE, generic_ior(229, 0, 4));
        assert_eq!(FUSE_DEV_IOC_BACKING_OPEN, generic_iow(229, 1, 16));
        assert_eq!(FUSE_DEV_IOC_BACKING_CLOSE, generic_iow(229, 2, 4));
        assert_eq!(FUSE_DEV_IOC_SYNC_INIT, generic_io(229, 3));
        assert_eq!(FUSE_DEV_IOC_CLONE, 0x8004_E500);
        assert_eq!(FUSE_DEV_IOC_BACKING_OPEN, 0x4010_E501);
        assert_eq!(FUSE_DEV_IOC_BACKING_CLOSE, 0x4004_E502);
        assert_eq!(FUSE_DEV_IOC_SYNC_INIT, 0xE503);
    }

    #[test]
    fn init_flags_split() {
        assert_eq!(FUSE_SECURITY_CTX >> 32, 1);
        assert_eq!(FUSE_PASSTHROUGH, 1 << 37);
        assert_eq!(FUSE_REQUEST_TIMEOUT >> 32, 1 << 10);
        assert_eq!(FUSE_UNIQUE_RESEND, 0x8000_0000_0000_0000);
        assert_eq!(FUSE_INIT_BSWAP_RESERVED, FUSE_INIT << 24);
        assert_eq!(CUSE_INIT_BSWAP_RESERVED, CUSE_INIT << 8);
        assert_eq!(fuse_removemapping_max_entry(4096), 256);
    }
}
