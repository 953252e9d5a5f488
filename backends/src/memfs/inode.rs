//! Inodes and the table that maps inode numbers to them.
//!
//! An [`Inode`] has an immutable part (number, file type), its metadata
//! behind a [`Mutex`] ([`Meta`]: mode, owner, times, link and reference
//! counts, extended attributes) and a body whose lock depends on the type:
//! file contents and directory entries each behind their own [`RwLock`], so
//! readers of one file or one directory run in parallel. The table is split
//! into shards of `RwLock<HashMap<ino, Arc<Inode>>>`; a request clones the
//! inode's `Arc` out of its shard and drops the shard lock at once.

use super::dir::Dir;
use super::file::FileData;
use super::xattr::Xattrs;
use fuselage_core::abi::{fuse_attr, fuse_statx, fuse_sx_time};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// File-type bits of a mode.
pub const S_IFMT: u32 = libc::S_IFMT;
/// Directory.
pub const S_IFDIR: u32 = libc::S_IFDIR;
/// Regular file.
pub const S_IFREG: u32 = libc::S_IFREG;
/// Symbolic link.
pub const S_IFLNK: u32 = libc::S_IFLNK;
/// Set-group-id bit.
pub const S_ISGID: u32 = libc::S_ISGID;

/// `st_blksize` reported for every inode.
pub const BLKSIZE: u32 = 4096;

/// `st_size` a directory has per entry, and twice that for "." and ".."
/// (tmpfs' `BOGO_DIRENT_SIZE`).
pub const DIRENT_BOGO_SIZE: u64 = 20;

/// Locks a mutex, ignoring poisoning: a panicking request must not take the
/// whole filesystem down, and every critical section leaves the data
/// consistent before anything that can panic.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks, ignoring poisoning (see [`lock`]).
pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks, ignoring poisoning (see [`lock`]).
pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// A timestamp with nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timespec {
    /// Seconds since the epoch.
    pub secs: i64,
    /// Nanoseconds, below 1e9.
    pub nsecs: u32,
}

impl Timespec {
    /// The current time.
    pub fn now() -> Timespec {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Timespec {
                secs: d.as_secs() as i64,
                nsecs: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let (secs, nsecs) = if d.subsec_nanos() == 0 {
                    (-(d.as_secs() as i64), 0)
                } else {
                    (-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
                };
                Timespec { secs, nsecs }
            }
        }
    }

    fn sx(self) -> fuse_sx_time {
        fuse_sx_time {
            tv_sec: self.secs,
            tv_nsec: self.nsecs,
            __reserved: 0,
        }
    }
}

/// What an inode holds besides metadata.
#[derive(Debug)]
pub enum Body {
    /// A regular file's contents.
    File(RwLock<FileData>),
    /// A directory's entries.
    Dir(RwLock<Dir>),
    /// A symlink's target.
    Symlink(Box<[u8]>),
    /// A device, FIFO or socket: metadata only.
    Special,
}

/// Mutable metadata of an inode, behind [`Inode::meta`].
#[derive(Debug)]
pub struct Meta {
    /// File type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Hard links (directories: 2 + subdirectories; 0 once removed).
    pub nlink: u32,
    /// Device number (kernel encoding) of a device node.
    pub rdev: u32,
    /// `st_size`; for files a copy of [`FileData::size`] kept in step under
    /// the data lock.
    pub size: u64,
    /// `st_blocks`; for files a copy of [`FileData::blocks`].
    pub blocks: u64,
    /// Last access.
    pub atime: Timespec,
    /// Last modification.
    pub mtime: Timespec,
    /// Last status change.
    pub ctime: Timespec,
    /// Creation.
    pub btime: Timespec,
    /// Lookup references the kernel holds.
    pub lookups: u64,
    /// Open handles (files and directories).
    pub opens: u64,
    /// Freed: out of the table, contents released.
    pub dead: bool,
    /// Extended attributes.
    pub xattrs: Xattrs,
}

impl Meta {
    /// Metadata of a new inode, all times `now`.
    pub fn new(mode: u32, uid: u32, gid: u32, nlink: u32, now: Timespec) -> Meta {
        Meta {
            mode,
            uid,
            gid,
            nlink,
            rdev: 0,
            size: 0,
            blocks: 0,
            atime: now,
            mtime: now,
            ctime: now,
            btime: now,
            lookups: 0,
            opens: 0,
            dead: false,
            xattrs: Xattrs::default(),
        }
    }

    /// Marks a content change: mtime and ctime become `now`.
    pub fn modified(&mut self, now: Timespec) {
        self.mtime = now;
        self.ctime = now;
    }

    /// Updates the access time the way `relatime` does: only if it is not
    /// newer than mtime or ctime, or a day old.
    pub fn accessed(&mut self, now: Timespec) {
        if self.atime <= self.mtime
            || self.atime <= self.ctime
            || now.secs - self.atime.secs >= 86_400
        {
            self.atime = now;
        }
    }

    /// Whether nothing refers to the inode any more: no name, no kernel
    /// reference, no open handle.
    pub fn unreferenced(&self) -> bool {
        self.nlink == 0 && self.lookups == 0 && self.opens == 0
    }

    /// The attributes as FUSE sends them.
    pub fn attr(&self, ino: u64) -> fuse_attr {
        fuse_attr {
            ino,
            size: self.size,
            blocks: self.blocks,
            atime: self.atime.secs as u64,
            mtime: self.mtime.secs as u64,
            ctime: self.ctime.secs as u64,
            atimensec: self.atime.nsecs,
            mtimensec: self.mtime.nsecs,
            ctimensec: self.ctime.nsecs,
            mode: self.mode,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: self.rdev,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    /// The same attributes as a `struct statx` (with birth time).
    pub fn statx(&self, ino: u64) -> fuse_statx {
        // The kernel's `new_encode_dev` layout of a 32-bit device number.
        let major = (self.rdev & 0xfff00) >> 8;
        let minor = (self.rdev & 0xff) | ((self.rdev >> 12) & 0xfff00);
        fuse_statx {
            mask: libc::STATX_BASIC_STATS | libc::STATX_BTIME,
            blksize: BLKSIZE,
            attributes: 0,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            mode: self.mode as u16,
            ino,
            size: self.size,
            blocks: self.blocks,
            attributes_mask: 0,
            atime: self.atime.sx(),
            btime: self.btime.sx(),
            ctime: self.ctime.sx(),
            mtime: self.mtime.sx(),
            rdev_major: major,
            rdev_minor: minor,
            ..Default::default()
        }
    }
}

/// One inode.
#[derive(Debug)]
pub struct Inode {
    /// Inode number (FUSE nodeid), never reused.
    pub ino: u64,
    /// File-type bits (`S_IFMT` part of the mode); never changes.
    pub kind: u32,
    /// Metadata.
    pub meta: Mutex<Meta>,
    /// Contents.
    pub body: Body,
    /// Directories: the inode number of the parent ("..", the root's own
    /// for the root). Changed only by cross-directory renames, which hold
    /// the filesystem's rename lock, so walks up the tree under that lock
    /// see a stable tree without taking directory locks.
    pub parent: AtomicU64,
}

impl Inode {
    /// The `d_type` of this inode.
    pub fn dtype(&self) -> u32 {
        fuselage_core::dirent::dtype::from_mode(self.kind)
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == S_IFDIR
    }

    /// The directory entries, if a directory.
    pub fn dir(&self) -> Option<&RwLock<Dir>> {
        match &self.body {
            Body::Dir(d) => Some(d),
            _ => None,
        }
    }

    /// The file contents, if a regular file.
    pub fn file(&self) -> Option<&RwLock<FileData>> {
        match &self.body {
            Body::File(f) => Some(f),
            _ => None,
        }
    }
}

/// Hashes inode numbers (sequential integers) by Fibonacci hashing.
#[derive(Debug, Clone, Copy, Default)]
pub struct InoHasher(u64);

impl Hasher for InoHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl BuildHasher for InoHasher {
    type Hasher = InoHasher;
    fn build_hasher(&self) -> InoHasher {
        InoHasher(0)
    }
}

const SHARDS: usize = 16;

type Shard = RwLock<HashMap<u64, Arc<Inode>, InoHasher>>;

/// All live inodes by number, in [`SHARDS`] independently locked shards.
/// Shard locks are the innermost locks: nothing else is locked while one
/// is held.
#[derive(Debug)]
pub struct InodeTable {
    shards: [Shard; SHARDS],
}

impl Default for InodeTable {
    fn default() -> Self {
        InodeTable {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::with_hasher(InoHasher(0)))),
        }
    }
}

impl InodeTable {
    fn shard(&self, ino: u64) -> &Shard {
        &self.shards[(ino % SHARDS as u64) as usize]
    }

    /// The inode numbered `ino`, if live.
    pub fn get(&self, ino: u64) -> Option<Arc<Inode>> {
        read(self.shard(ino)).get(&ino).cloned()
    }

    /// Adds an inode.
    pub fn insert(&self, inode: Arc<Inode>) {
        write(self.shard(inode.ino)).insert(inode.ino, inode);
    }

    /// Removes an inode.
    pub fn remove(&self, ino: u64) -> Option<Arc<Inode>> {
        write(self.shard(ino)).remove(&ino)
    }
}
