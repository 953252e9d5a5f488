//! One borrowed view per operation: what a [`Filesystem`] method receives.
//!
//! Each view is a thin window over the request as the transport received
//! it: the inode the request is about, a reference to the kernel's argument
//! struct (`fuse_read_in`, ...) in the transport's buffer, and borrowed
//! names or data. Nothing is copied into a second struct, so building one is
//! free; accessors name the protocol's fields (`ino()`, `fh()`, `offset()`,
//! `size()`, `name()`) and decode flags where that helps (`lock_owner()`
//! is `Some` only when the kernel set `FUSE_READ_LOCKOWNER`). A new protocol
//! field becomes one more accessor here, not a new argument in every
//! backend; [`raw`](Read::raw) gives the whole struct meanwhile.
//!
//! The shape follows polyfuse's `op` module and smoltcp's packet views. The
//! dispatcher builds the views; tests and wrapping backends build them with
//! `new` from the kernel's structs (or forward them unchanged).
//!
//! [`Filesystem`]: crate::Filesystem

use crate::abi::*;
use crate::filesystem::SetAttr;
use crate::request::{RemovemappingEntries, SetxattrArgs};
use core::ffi::CStr;

/// A borrowed NUL-terminated name kept as one pointer, so that a view of
/// an inode and a name fits in two registers (its length is found again
/// when it is asked for).
#[derive(Clone, Copy)]
struct ThinCStr<'a> {
    ptr: core::ptr::NonNull<core::ffi::c_char>,
    _name: core::marker::PhantomData<&'a CStr>,
}

impl<'a> ThinCStr<'a> {
    #[inline]
    fn new(name: &'a CStr) -> Self {
        // SAFETY: a `&CStr` is never null.
        let ptr = unsafe { core::ptr::NonNull::new_unchecked(name.as_ptr().cast_mut()) };
        ThinCStr {
            ptr,
            _name: core::marker::PhantomData,
        }
    }

    #[inline]
    fn get(self) -> &'a CStr {
        // SAFETY: `ptr` came from a `&'a CStr`: NUL-terminated, valid and
        // unchanged for `'a`.
        unsafe { CStr::from_ptr(self.ptr.as_ptr()) }
    }
}

impl core::fmt::Debug for ThinCStr<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.get().fmt(f)
    }
}

// SAFETY: a `ThinCStr<'a>` is a shared borrow of an immutable `CStr` (as
// `&'a CStr`, which is `Send`), only ever read.
unsafe impl Send for ThinCStr<'_> {}
// SAFETY: as above: `&'a CStr` is `Sync`, and nothing writes through it.
unsafe impl Sync for ThinCStr<'_> {}

/// Accessors that return one field of the view's argument struct.
macro_rules! fields {
    ($($(#[$doc:meta])* $name:ident: $ty:ty = $field:ident;)*) => {
        $(
            $(#[$doc])*
            #[inline]
            pub fn $name(&self) -> $ty {
                self.arg.$field
            }
        )*
    };
}

/// The inode accessor and the raw argument struct, shared by the views of
/// operations on an existing inode.
macro_rules! ino_and_raw {
    ($arg:ty) => {
        /// The inode the request is about (`nodeid`).
        #[inline]
        pub fn ino(&self) -> u64 {
            self.ino
        }

        /// The kernel's argument struct as received.
        #[inline]
        pub fn raw(&self) -> &'a $arg {
            self.arg
        }
    };
}

/// A view of an operation on inode `ino` with argument struct `$arg`.
macro_rules! arg_view {
    ($(#[$doc:meta])* $name:ident, $arg:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a> {
            ino: u64,
            arg: &'a $arg,
        }

        impl<'a> $name<'a> {
            /// The view of a request about `ino` with argument `arg`.
            #[inline]
            pub fn new(ino: u64, arg: &'a $arg) -> Self {
                $name { ino, arg }
            }

            ino_and_raw!($arg);
        }
    };
}

/// A view of an operation on inode `ino` that has no arguments.
macro_rules! ino_view {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            ino: u64,
        }

        impl $name {
            /// The view of a request about `ino`.
            #[inline]
            pub fn new(ino: u64) -> Self {
                $name { ino }
            }

            /// The inode the request is about (`nodeid`).
            #[inline]
            pub fn ino(&self) -> u64 {
                self.ino
            }
        }
    };
}

/// A view of an operation on name `name` in directory `parent`.
macro_rules! name_view {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a> {
            parent: u64,
            name: ThinCStr<'a>,
        }

        impl<'a> $name<'a> {
            /// The view of a request about `name` in directory `parent`.
            #[inline]
            pub fn new(parent: u64, name: &'a CStr) -> Self {
                $name { parent, name: ThinCStr::new(name) }
            }

            /// The directory (`nodeid`).
            #[inline]
            pub fn parent(&self) -> u64 {
                self.parent
            }

            /// The entry's name (checked: non-empty, no `/`).
            #[inline]
            pub fn name(&self) -> &'a CStr {
                self.name.get()
            }
        }
    };
}

name_view!(
    /// LOOKUP `name` in `parent`.
    Lookup
);
name_view!(
    /// UNLINK file `name` from `parent`.
    Unlink
);
name_view!(
    /// RMDIR empty directory `name` from `parent`.
    Rmdir
);

/// FORGET: drop `nlookup` lookup references to `ino` (also one element of
/// a BATCH_FORGET).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forget {
    ino: u64,
    nlookup: u64,
}

impl Forget {
    /// Forgetting `nlookup` references to `ino`.
    #[inline]
    pub fn new(ino: u64, nlookup: u64) -> Self {
        Forget { ino, nlookup }
    }

    /// The inode (`nodeid`).
    #[inline]
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// How many lookup references to drop.
    #[inline]
    pub fn nlookup(&self) -> u64 {
        self.nlookup
    }
}

/// BATCH_FORGET: many [`Forget`]s at once.
#[derive(Debug, Clone, Copy)]
pub struct BatchForget<'a> {
    nodes: &'a [fuse_forget_one],
}

impl<'a> BatchForget<'a> {
    /// The view of the array `nodes`.
    #[inline]
    pub fn new(nodes: &'a [fuse_forget_one]) -> Self {
        BatchForget { nodes }
    }

    /// The entries as the kernel sent them.
    #[inline]
    pub fn nodes(&self) -> &'a [fuse_forget_one] {
        self.nodes
    }

    /// The entries as [`Forget`] views.
    pub fn iter(&self) -> impl Iterator<Item = Forget> + 'a {
        self.nodes.iter().map(|n| Forget::new(n.nodeid, n.nlookup))
    }
}

arg_view!(
    /// GETATTR of `ino`.
    Getattr,
    fuse_getattr_in
);
impl Getattr<'_> {
    /// The open file the request comes through (`FUSE_GETATTR_FH`, fstat).
    #[inline]
    pub fn fh(&self) -> Option<u64> {
        (self.arg.getattr_flags & FUSE_GETATTR_FH != 0).then_some(self.arg.fh)
    }
}

arg_view!(
    /// SETATTR of `ino`: the fields named by `valid`.
    Setattr,
    fuse_setattr_in
);
impl Setattr<'_> {
    /// The requested changes, decoded by `valid` (see [`SetAttr`]).
    #[inline]
    pub fn attr(&self) -> SetAttr {
        SetAttr::from_wire(self.arg)
    }

    /// The open file the change comes through (`FATTR_FH`: ftruncate,
    /// fchmod).
    #[inline]
    pub fn fh(&self) -> Option<u64> {
        (self.arg.valid & FATTR_FH != 0).then_some(self.arg.fh)
    }
}

ino_view!(
    /// READLINK of symlink `ino`.
    Readlink
);
ino_view!(
    /// STATFS of the filesystem holding `ino`.
    Statfs
);
ino_view!(
    /// SYNCFS of the filesystem holding `ino`.
    Syncfs
);

/// SYMLINK `name` in `parent` pointing to `target`.
#[derive(Debug, Clone, Copy)]
pub struct Symlink<'a> {
    parent: u64,
    name: &'a CStr,
    target: &'a CStr,
}

impl<'a> Symlink<'a> {
    /// The view of a request for `parent/name` -> `target`.
    #[inline]
    pub fn new(parent: u64, name: &'a CStr, target: &'a CStr) -> Self {
        Symlink {
            parent,
            name,
            target,
        }
    }

    /// The directory (`nodeid`).
    #[inline]
    pub fn parent(&self) -> u64 {
        self.parent
    }

    /// The new link's name.
    #[inline]
    pub fn name(&self) -> &'a CStr {
        self.name
    }

    /// What the link points to.
    #[inline]
    pub fn target(&self) -> &'a CStr {
        self.target
    }
}

/// A view of an operation creating `name` in `parent` with argument `$arg`.
macro_rules! create_view {
    ($(#[$doc:meta])* $name:ident, $arg:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a> {
            parent: u64,
            arg: &'a $arg,
            name: &'a CStr,
        }

        impl<'a> $name<'a> {
            /// The view of a request creating `parent/name` with `arg`.
            #[inline]
            pub fn new(parent: u64, arg: &'a $arg, name: &'a CStr) -> Self {
                $name { parent, arg, name }
            }

            /// The directory (`nodeid`).
            #[inline]
            pub fn parent(&self) -> u64 {
                self.parent
            }

            /// The new entry's name.
            #[inline]
            pub fn name(&self) -> &'a CStr {
                self.name
            }

            /// The kernel's argument struct as received.
            #[inline]
            pub fn raw(&self) -> &'a $arg {
                self.arg
            }
        }
    };
}

create_view!(
    /// MKNOD `name` (file, device, fifo, socket) in `parent`.
    Mknod,
    fuse_mknod_in
);
impl Mknod<'_> {
    fields! {
        /// File type and permission bits.
        mode: u32 = mode;
        /// The caller's umask (applied by the filesystem with
        /// `DONT_MASK`).
        umask: u32 = umask;
        /// Device number for device nodes.
        rdev: u32 = rdev;
    }
}

create_view!(
    /// MKDIR `name` in `parent`.
    Mkdir,
    fuse_mkdir_in
);
impl Mkdir<'_> {
    fields! {
        /// Permission bits.
        mode: u32 = mode;
        /// The caller's umask.
        umask: u32 = umask;
    }
}

create_view!(
    /// CREATE and open file `name` in `parent` (also TMPFILE, whose name
    /// the kernel sends as "/").
    Create,
    fuse_create_in
);
impl Create<'_> {
    fields! {
        /// File type and permission bits.
        mode: u32 = mode;
        /// The caller's umask.
        umask: u32 = umask;
        /// open(2) flags.
        flags: u32 = flags;
        /// `FUSE_OPEN_KILL_SUIDGID`.
        open_flags: u32 = open_flags;
    }
}

/// TMPFILE: an unnamed file in `parent`; the same view as [`Create`].
pub type Tmpfile<'a> = Create<'a>;

/// RENAME or RENAME2 `parent/name` to `newparent/newname`.
#[derive(Debug, Clone, Copy)]
pub struct Rename<'a> {
    parent: u64,
    name: &'a CStr,
    newparent: u64,
    newname: &'a CStr,
    flags: u32,
}

impl<'a> Rename<'a> {
    /// The view of renaming `parent/name` to `newparent/newname` with
    /// `flags` (0 for the old RENAME).
    #[inline]
    pub fn new(parent: u64, name: &'a CStr, newparent: u64, newname: &'a CStr, flags: u32) -> Self {
        Rename {
            parent,
            name,
            newparent,
            newname,
            flags,
        }
    }

    /// The source directory (`nodeid`).
    #[inline]
    pub fn parent(&self) -> u64 {
        self.parent
    }

    /// The source name.
    #[inline]
    pub fn name(&self) -> &'a CStr {
        self.name
    }

    /// The target directory (`newdir`).
    #[inline]
    pub fn newparent(&self) -> u64 {
        self.newparent
    }

    /// The target name.
    #[inline]
    pub fn newname(&self) -> &'a CStr {
        self.newname
    }

    /// `RENAME_NOREPLACE` (1), `RENAME_EXCHANGE` (2), `RENAME_WHITEOUT` (4).
    #[inline]
    pub fn flags(&self) -> u32 {
        self.flags
    }
}

/// LINK: a new name `newparent/newname` for inode `ino`.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    newparent: u64,
    arg: &'a fuse_link_in,
    newname: &'a CStr,
}

impl<'a> Link<'a> {
    /// The view of linking `arg.oldnodeid` as `newparent/newname`.
    #[inline]
    pub fn new(newparent: u64, arg: &'a fuse_link_in, newname: &'a CStr) -> Self {
        Link {
            newparent,
            arg,
            newname,
        }
    }

    /// The inode to link (`oldnodeid`).
    #[inline]
    pub fn ino(&self) -> u64 {
        self.arg.oldnodeid
    }

    /// The directory of the new name (`nodeid`).
    #[inline]
    pub fn newparent(&self) -> u64 {
        self.newparent
    }

    /// The new name.
    #[inline]
    pub fn newname(&self) -> &'a CStr {
        self.newname
    }
}

arg_view!(
    /// OPEN file `ino` (also OPENDIR).
    Open,
    fuse_open_in
);
impl Open<'_> {
    fields! {
        /// open(2) flags.
        flags: u32 = flags;
        /// `FUSE_OPEN_KILL_SUIDGID`.
        open_flags: u32 = open_flags;
    }
}

/// OPENDIR: the same view as [`Open`].
pub type Opendir<'a> = Open<'a>;

arg_view!(
    /// READ up to `size()` bytes at `offset()` of an open file.
    Read,
    fuse_read_in
);
impl Read<'_> {
    fields! {
        /// The open file's handle.
        fh: u64 = fh;
        /// Where to read.
        offset: u64 = offset;
        /// Most bytes to return.
        size: u32 = size;
        /// The open file's open(2) flags.
        flags: u32 = flags;
        /// `FUSE_READ_*`.
        read_flags: u32 = read_flags;
    }

    /// The lock owner, when the kernel sent one (`FUSE_READ_LOCKOWNER`).
    #[inline]
    pub fn lock_owner(&self) -> Option<u64> {
        (self.arg.read_flags & FUSE_READ_LOCKOWNER != 0).then_some(self.arg.lock_owner)
    }
}

arg_view!(
    /// READDIR or READDIRPLUS of an open directory, from `offset()`.
    Readdir,
    fuse_read_in
);
impl Readdir<'_> {
    fields! {
        /// The open directory's handle.
        fh: u64 = fh;
        /// Where to resume: the `off` of the last entry sent, 0 at first.
        offset: u64 = offset;
        /// Most bytes of entries to return.
        size: u32 = size;
    }
}

/// READDIRPLUS: the same view as [`Readdir`].
pub type Readdirplus<'a> = Readdir<'a>;

/// WRITE `data()` at `offset()` of an open file.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    ino: u64,
    arg: &'a fuse_write_in,
    data: &'a [u8],
}

impl<'a> Write<'a> {
    /// The view of writing `data` (`arg.size` bytes) to `ino`.
    #[inline]
    pub fn new(ino: u64, arg: &'a fuse_write_in, data: &'a [u8]) -> Self {
        Write { ino, arg, data }
    }

    ino_and_raw!(fuse_write_in);

    fields! {
        /// The open file's handle.
        fh: u64 = fh;
        /// Where to write.
        offset: u64 = offset;
        /// `FUSE_WRITE_*` (cache, lock owner, kill-suidgid).
        write_flags: u32 = write_flags;
        /// The open file's open(2) flags.
        flags: u32 = flags;
    }

    /// The bytes to write (borrowed from the transport's buffer).
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The lock owner, when the kernel sent one (`FUSE_WRITE_LOCKOWNER`).
    #[inline]
    pub fn lock_owner(&self) -> Option<u64> {
        (self.arg.write_flags & FUSE_WRITE_LOCKOWNER != 0).then_some(self.arg.lock_owner)
    }
}

arg_view!(
    /// RELEASE (last close) of an open file; also RELEASEDIR.
    Release,
    fuse_release_in
);
impl Release<'_> {
    fields! {
        /// The open file's handle.
        fh: u64 = fh;
        /// The open file's open(2) flags.
        flags: u32 = flags;
        /// `FUSE_RELEASE_*`.
        release_flags: u32 = release_flags;
        /// The lock owner (meaningful with `FUSE_RELEASE_FLOCK_UNLOCK`).
        lock_owner: u64 = lock_owner;
    }
}

/// RELEASEDIR: the same view as [`Release`].
pub type Releasedir<'a> = Release<'a>;

arg_view!(
    /// FSYNC of an open file; also FSYNCDIR.
    Fsync,
    fuse_fsync_in
);
impl Fsync<'_> {
    fields! {
        /// The open file's handle.
        fh: u64 = fh;
    }

    /// Whether only data needs syncing (`FUSE_FSYNC_FDATASYNC`).
    #[inline]
    pub fn datasync(&self) -> bool {
        self.arg.fsync_flags & FUSE_FSYNC_FDATASYNC != 0
    }
}

/// FSYNCDIR: the same view as [`Fsync`].
pub type Fsyncdir<'a> = Fsync<'a>;

/// SETXATTR `name` = `value` on `ino`.
#[derive(Debug, Clone, Copy)]
pub struct Setxattr<'a> {
    ino: u64,
    arg: SetxattrArgs,
    name: &'a CStr,
    value: &'a [u8],
}

impl<'a> Setxattr<'a> {
    /// The view of setting `name` = `value` on `ino` with `arg`'s flags.
    #[inline]
    pub fn new(ino: u64, arg: SetxattrArgs, name: &'a CStr, value: &'a [u8]) -> Self {
        Setxattr {
            ino,
            arg,
            name,
            value,
        }
    }

    /// The inode (`nodeid`).
    #[inline]
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The attribute's name.
    #[inline]
    pub fn name(&self) -> &'a CStr {
        self.name
    }

    /// The value (borrowed from the transport's buffer).
    #[inline]
    pub fn value(&self) -> &'a [u8] {
        self.value
    }

    fields! {
        /// `XATTR_CREATE` / `XATTR_REPLACE`.
        flags: u32 = flags;
        /// `FUSE_SETXATTR_ACL_KILL_SGID` (only with `SETXATTR_EXT`).
        setxattr_flags: u32 = setxattr_flags;
    }
}

/// GETXATTR `name` of `ino`.
#[derive(Debug, Clone, Copy)]
pub struct Getxattr<'a> {
    ino: u64,
    arg: &'a fuse_getxattr_in,
    name: &'a CStr,
}

impl<'a> Getxattr<'a> {
    /// The view of reading `name` of `ino`.
    #[inline]
    pub fn new(ino: u64, arg: &'a fuse_getxattr_in, name: &'a CStr) -> Self {
        Getxattr { ino, arg, name }
    }

    ino_and_raw!(fuse_getxattr_in);

    /// The attribute's name.
    #[inline]
    pub fn name(&self) -> &'a CStr {
        self.name
    }

    fields! {
        /// Room for the value; 0 asks for its size only.
        size: u32 = size;
    }
}

arg_view!(
    /// LISTXATTR of `ino`.
    Listxattr,
    fuse_getxattr_in
);
impl Listxattr<'_> {
    fields! {
        /// Room for the name list; 0 asks for its size only.
        size: u32 = size;
    }
}

/// REMOVEXATTR `name` of `ino`.
#[derive(Debug, Clone, Copy)]
pub struct Removexattr<'a> {
    ino: u64,
    name: &'a CStr,
}

impl<'a> Removexattr<'a> {
    /// The view of removing `name` of `ino`.
    #[inline]
    pub fn new(ino: u64, name: &'a CStr) -> Self {
        Removexattr { ino, name }
    }

    /// The inode (`nodeid`).
    #[inline]
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The attribute's name.
    #[inline]
    pub fn name(&self) -> &'a CStr {
        self.name
    }
}

arg_view!(
    /// FLUSH of an open file (on every close(2)).
    Flush,
    fuse_flush_in
);
impl Flush<'_> {
    fields! {
        /// The open file's handle.
        fh: u64 = fh;
        /// The closing lock owner.
        lock_owner: u64 = lock_owner;
    }
}

arg_view!(
    /// GETLK: test for a lock conflicting with `lock()`.
    Getlk,
    fuse_lk_in
);
impl<'a> Getlk<'a> {
    fields! {
        /// The open file's handle.
        fh: u64 = fh;
        /// The lock owner asking.
        owner: u64 = owner;
    }

    /// The lock to test.
    #[inline]
    pub fn lock(&self) -> &'a fuse_file_lock {
        &self.arg.lk
    }
}

/// SETLK or SETLKW: acquire or release `lock()`.
#[derive(Debug, Clone, Copy)]
pub struct Setlk<'a> {
    ino: u64,
    arg: &'a fuse_lk_in,
    sleep: bool,
}

impl<'a> Setlk<'a> {
    /// The view of a SETLK (`sleep` false) or SETLKW (`sleep` true).
    #[inline]
    pub fn new(ino: u64, arg: &'a fuse_lk_in, sleep: bool) -> Self {
        Setlk { ino, arg, sleep }
    }

    ino_and_raw!(fuse_lk_in);

    fields! {
        /// The open file's handle.
        fh: u64 = fh;
        /// The lock owner.
        owner: u64 = owner;
    }

    /// The lock to set (`F_UNLCK` to release).
    #[inline]
    pub fn lock(&self) -> &'a fuse_file_lock {
        &self.arg.lk
    }

    /// A BSD `flock(2)` lock rather than a POSIX one (`FUSE_LK_FLOCK`).
    #[inline]
    pub fn flock(&self) -> bool {
        self.arg.lk_flags & FUSE_LK_FLOCK != 0
    }

    /// Whether to wait for a conflicting lock (SETLKW).
    #[inline]
    pub fn sleep(&self) -> bool {
        self.sleep
    }
}

arg_view!(
    /// ACCESS check of `ino` (only sent without `default_permissions`).
    Access,
    fuse_access_in
);
impl Access<'_> {
    fields! {
        /// `R_OK`, `W_OK`, `X_OK` bits (0: existence).
        mask: u32 = mask;
    }
}

/// INTERRUPT of an earlier request.
#[derive(Debug, Clone, Copy)]
pub struct Interrupt<'a> {
    arg: &'a fuse_interrupt_in,
}

impl<'a> Interrupt<'a> {
    /// The view of interrupting `arg.unique`.
    #[inline]
    pub fn new(arg: &'a fuse_interrupt_in) -> Self {
        Interrupt { arg }
    }

    fields! {
        /// The request to interrupt (it still needs exactly one reply).
        unique: u64 = unique;
    }
}

arg_view!(
    /// BMAP: a file block of `ino` to a device block.
    Bmap,
    fuse_bmap_in
);
impl Bmap<'_> {
    fields! {
        /// The block size.
        blocksize: u32 = blocksize;
        /// The file block.
        block: u64 = block;
    }
}

/// IOCTL on an open file, with `in_data()` input bytes.
#[derive(Debug, Clone, Copy)]
pub struct Ioctl<'a> {
    ino: u64,
    arg: &'a fuse_ioctl_in,
    data: &'a [u8],
}

impl<'a> Ioctl<'a> {
    /// The view of an ioctl on `ino` with input `data` (`arg.in_size`).
    #[inline]
    pub fn new(ino: u64, arg: &'a fuse_ioctl_in, data: &'a [u8]) -> Self {
        Ioctl { ino, arg, data }
    }

    ino_and_raw!(fuse_ioctl_in);

    fields! {
        /// The open file's handle.
        fh: u64 = fh;
        /// `FUSE_IOCTL_*`.
        flags: u32 = flags;
        /// The ioctl command.
        cmd: u32 = cmd;
        /// The ioctl argument.
        arg: u64 = arg;
        /// Most output bytes the caller takes.
        out_size: u32 = out_size;
    }

    /// The input bytes.
    #[inline]
    pub fn in_data(&self) -> &'a [u8] {
        self.data
    }
}

arg_view!(
    /// POLL of an open file.
    Poll,
    fuse_poll_in
);
impl Poll<'_> {
    fields! {
        /// The open file's handle.
        fh: u64 = fh;
        /// The kernel's handle for a later wakeup notification.
        kh: u64 = kh;
        /// `FUSE_POLL_SCHEDULE_NOTIFY`.
        flags: u32 = flags;
        /// The events asked for.
        events: u32 = events;
    }
}

/// The kernel's answer to a NOTIFY_RETRIEVE: `data()` of `ino` from
/// `offset()`.
#[derive(Debug, Clone, Copy)]
pub struct NotifyReply<'a> {
    ino: u64,
    arg: &'a fuse_notify_retrieve_in,
    data: &'a [u8],
}

impl<'a> NotifyReply<'a> {
    /// The view of retrieved `data` of `ino`.
    #[inline]
    pub fn new(ino: u64, arg: &'a fuse_notify_retrieve_in, data: &'a [u8]) -> Self {
        NotifyReply { ino, arg, data }
    }

    ino_and_raw!(fuse_notify_retrieve_in);

    fields! {
        /// Where the data starts in the file.
        offset: u64 = offset;
    }

    /// The retrieved bytes.
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}

arg_view!(
    /// FALLOCATE on an open file.
    Fallocate,
    fuse_fallocate_in
);
impl Fallocate<'_> {
    fields! {
        /// The open file's handle.
        fh: u64 = fh;
        /// Start of the range.
        offset: u64 = offset;
        /// Length of the range.
        length: u64 = length;
        /// `FALLOC_FL_*`.
        mode: u32 = mode;
    }
}

arg_view!(
    /// LSEEK (`SEEK_DATA` 3, `SEEK_HOLE` 4) on an open file.
    Lseek,
    fuse_lseek_in
);
impl Lseek<'_> {
    fields! {
        /// The open file's handle.
        fh: u64 = fh;
        /// Where to start looking.
        offset: u64 = offset;
        /// `SEEK_*`.
        whence: u32 = whence;
    }
}

arg_view!(
    /// COPY_FILE_RANGE (and _64) from (`ino`, `fh_in`, `off_in`) to
    /// (`ino_out`, `fh_out`, `off_out`).
    CopyFileRange,
    fuse_copy_file_range_in
);
impl CopyFileRange<'_> {
    fields! {
        /// The source's open handle.
        fh_in: u64 = fh_in;
        /// Where to read in the source.
        off_in: u64 = off_in;
        /// The destination inode.
        ino_out: u64 = nodeid_out;
        /// The destination's open handle.
        fh_out: u64 = fh_out;
        /// Where to write in the destination.
        off_out: u64 = off_out;
        /// How many bytes to copy.
        len: u64 = len;
        /// copy_file_range(2) flags (none are defined).
        flags: u64 = flags;
    }

    /// Whether there is nothing to copy (`len() == 0`).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.arg.len == 0
    }
}

arg_view!(
    /// SETUPMAPPING (DAX, virtio-fs only).
    Setupmapping,
    fuse_setupmapping_in
);

/// REMOVEMAPPING (DAX, virtio-fs only) of `entries()`.
#[derive(Debug, Clone, Copy)]
pub struct Removemapping<'a> {
    ino: u64,
    entries: RemovemappingEntries<'a>,
}

impl<'a> Removemapping<'a> {
    /// The view of removing `entries` of `ino`.
    #[inline]
    pub fn new(ino: u64, entries: RemovemappingEntries<'a>) -> Self {
        Removemapping { ino, entries }
    }

    /// The inode (`nodeid`).
    #[inline]
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The mappings to remove.
    #[inline]
    pub fn entries(&self) -> RemovemappingEntries<'a> {
        self.entries
    }
}

arg_view!(
    /// STATX of `ino`.
    Statx,
    fuse_statx_in
);
impl Statx<'_> {
    fields! {
        /// `FUSE_GETATTR_*`.
        getattr_flags: u32 = getattr_flags;
        /// statx(2) `AT_STATX_*` flags.
        sx_flags: u32 = sx_flags;
        /// statx(2) `STATX_*` mask.
        sx_mask: u32 = sx_mask;
    }

    /// The open file the request comes through (`FUSE_GETATTR_FH`).
    #[inline]
    pub fn fh(&self) -> Option<u64> {
        (self.arg.getattr_flags & FUSE_GETATTR_FH != 0).then_some(self.arg.fh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_decode_flags() {
        let arg = fuse_read_in {
            fh: 3,
            offset: 4096,
            size: 512,
            read_flags: FUSE_READ_LOCKOWNER,
            lock_owner: 9,
            ..Default::default()
        };
        let r = Read::new(7, &arg);
        assert_eq!((r.ino(), r.fh(), r.offset(), r.size()), (7, 3, 4096, 512));
        assert_eq!(r.lock_owner(), Some(9));
        let arg = fuse_read_in::default();
        assert_eq!(Read::new(7, &arg).lock_owner(), None);

        let g = fuse_getattr_in {
            getattr_flags: FUSE_GETATTR_FH,
            fh: 5,
            ..Default::default()
        };
        assert_eq!(Getattr::new(1, &g).fh(), Some(5));
        assert_eq!(Getattr::new(1, &fuse_getattr_in::default()).fh(), None);

        let c = fuse_copy_file_range_in {
            nodeid_out: 11,
            len: 3,
            ..Default::default()
        };
        let v = CopyFileRange::new(10, &c);
        assert_eq!((v.ino(), v.ino_out(), v.len()), (10, 11, 3));

        let nodes = [fuse_forget_one {
            nodeid: 4,
            nlookup: 2,
        }];
        let f: [Forget; 1] = [BatchForget::new(&nodes).iter().next().unwrap()];
        assert_eq!(f, [Forget::new(4, 2)]);
    }

    #[test]
    fn views_are_thin() {
        // A view is the inode and a pointer (plus names or data): building
        // one costs nothing next to dispatch.
        assert_eq!(core::mem::size_of::<Read<'_>>(), 16);
        assert_eq!(core::mem::size_of::<Getattr<'_>>(), 16);
    }
}
