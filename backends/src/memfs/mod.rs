//! `memfs`: an in-memory filesystem with tmpfs semantics.
//!
//! [`MemFs`] keeps every inode, name and byte in memory and serves them over
//! FUSE through the [`Filesystem`] trait. It is meant to be mounted with
//! `default_permissions` (the kernel checks permissions; memfs gets owners
//! and modes right) and to be the only writer of its data, which is why it
//! gives the kernel long cache timeouts and `FOPEN_KEEP_CACHE`.
//!
//! ```
//! use fuselage_backends::{MemFs, MemFsConfig};
//! use std::time::Duration;
//!
//! let fs = MemFs::new(MemFsConfig {
//!     capacity_bytes: 64 << 20,
//!     uid: 1000,
//!     gid: 1000,
//!     attr_ttl: Duration::from_secs(10),
//!     ..MemFsConfig::default()
//! });
//! assert_eq!(fs.inode_count(), 1); // the root
//! ```
//!
//! # Semantics
//!
//! - Nanosecond timestamps; mtime/ctime follow Linux (every change updates
//!   ctime, content changes mtime, `relatime`-style atime on READ and
//!   READDIR); birth time via STATX. As on tmpfs, a truncate(2) to the size
//!   a file already has changes its times only if the file has allocated
//!   pages, while ftruncate always does.
//! - New inodes belong to the caller's uid and gid, except that a set-gid
//!   parent directory passes on its group (and, to subdirectories, its
//!   set-gid bit). `DONT_MASK` is negotiated, so memfs applies the umask
//!   itself (`mode & !umask`; symlinks are always `0o777`).
//! - Inode numbers come from a counter and are never reused; the generation
//!   is always 0. An inode is freed once it has no name (`nlink` 0), no
//!   lookup reference left (FORGET) and no open handle, so an unlinked file
//!   stays readable until its last RELEASE.
//! - Names up to 255 bytes (`ENAMETOOLONG` beyond); no limit on path
//!   length or depth. Symlink targets up to 4095 bytes; as on tmpfs, one
//!   longer than 127 bytes takes a 4 KiB page (8 blocks).
//! - RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT (a character
//!   device 0:0 is left under the old name, as tmpfs does for overlayfs).
//! - Sparse files up to `i64::MAX` bytes ([`MAX_FILE_SIZE`], like tmpfs),
//!   allocated in 4 KiB pages like tmpfs: a write stores only the pages it
//!   touches, `st_blocks` counts allocated pages, PUNCH_HOLE frees the
//!   pages wholly inside the range and zeroes the partial ones, truncation
//!   frees the pages past the new size, and SEEK_DATA/SEEK_HOLE report
//!   page-granular data. fallocate (mode 0, `KEEP_SIZE`) allocates
//!   *unwritten* pages: counted and charged, reading as zeros, holes to
//!   SEEK_DATA until written (as tmpfs treats fallocated pages).
//!   `ZERO_RANGE`, which tmpfs lacks, leaves the range allocated and
//!   zeroed; COPY_FILE_RANGE keeps the source's holes holes.
//! - Capacity: allocated file pages (4 KiB each, unwritten ones included),
//!   pages of long symlinks and the bytes of extended attribute names and
//!   values count against [`MemFsConfig::capacity_bytes`]; an operation
//!   that would exceed it fails with `ENOSPC` and changes nothing. Inodes
//!   count against [`MemFsConfig::max_inodes`]. Names, short symlink
//!   targets and per-inode bookkeeping are not charged.
//! - Not implemented: POSIX/BSD locks (GETLK/SETLK answer `ENOSYS`, so the
//!   kernel keeps locks locally), ioctl, poll, bmap, ACLs (`system.*`
//!   attributes are `EOPNOTSUPP`).
//! - Set-id bits and file capabilities (`security.capability`) are cleared
//!   by memfs itself on write, truncate, `O_TRUNC` open, fallocate, copy
//!   into the file and chown, with the running kernel's rules as tmpfs
//!   applies them (`HANDLE_KILLPRIV_V2`; see the `setid` module).
//!
//! # Data layout and zero-copy reads
//!
//! A regular file's data pages live in extents: runs of consecutive pages,
//! each inside one 128 KiB chunk ([`CHUNK_SIZE`]), each in its own
//! anonymous mapping (the `pages` module) rather than on the heap, so pages
//! freed by unlink, truncate or punch hole go back to the system at once;
//! pages in no extent are holes (or unwritten). READ answers with a list of
//! borrowed slices of those extents and of a static zero page, passed to
//! [`ReplyData::data_parts`] while the file's read lock is held: no copy, no
//! allocation. The chunk size is chosen so that the largest read the kernel
//! sends (1 MiB) fits in the 32 data slices a reply may have, at any
//! alignment, as long as each chunk holds a single run of data: at most 9
//! chunks, so at most 9 stored slices and 10 zero runs. Only a range
//! fragmented beyond that (data and holes alternating within chunks) has
//! its tail copied into one buffer.
//!
//! # Concurrency and lock order
//!
//! `&MemFs` is shared by all worker threads. The inode table is sharded
//! (16 `RwLock<HashMap>`s); every inode has a `Mutex` for its metadata and
//! an `RwLock` for its contents (file data or directory entries), so reads
//! of a file, lookups in a directory and GETATTRs run in parallel. Locks
//! are always taken in this order, which rules out deadlocks:
//!
//! 1. the filesystem's rename lock (only cross-directory RENAME, which
//!    alone changes the shape of the tree);
//! 2. directory entry locks: a parent before its children; the two parents
//!    of a rename ancestor first, or by ascending inode number when neither
//!    contains the other (ancestry is read from each directory's atomic
//!    parent pointer under the rename lock, without taking directory locks);
//! 3. file data locks, two at once only by ascending inode number
//!    (COPY_FILE_RANGE);
//! 4. metadata mutexes, never two at once and never while acquiring any
//!    other lock;
//! 5. inode-table shard locks, innermost: held only to clone or insert an
//!    `Arc<Inode>`.
//!
//! READ and GETXATTR answer while holding the file's read lock or the
//! inode's metadata lock (the reply borrows the stored bytes), so a
//! [`ReplySink`] must not call back into the filesystem.
//!
//! # Cache timeouts
//!
//! The kernel is the only client that changes a memfs, and every change it
//! makes through FUSE it also applies to (or invalidates in) its own caches,
//! so entries and attributes cannot go stale behind its back. The default
//! [`MemFsConfig::entry_ttl`] and [`MemFsConfig::attr_ttl`] are therefore
//! long (60 s), which saves most LOOKUP and GETATTR round trips; failed
//! lookups are answered as negative entries cached for `entry_ttl` too.
//!
//! # Allocation
//!
//! GETATTR, LOOKUP of an existing name, READ (of a range not fragmented
//! within chunks, above), WRITE within already stored pages, OPEN and
//! RELEASE of existing files never allocate: names are looked up by
//! borrowed `&[u8]` keys, replies are built on the stack, file handles are
//! not tracked in a table (an open count on the inode is all memfs needs).
//! Memory is allocated only for what is stored: new inodes, names, file
//! contents, extended attributes (and the LISTXATTR answer).

mod data;
mod dir;
mod file;
mod inode;
mod namespace;
mod pages;
mod xattr;

#[cfg(test)]
mod tests;

use self::dir::Dir;
use self::file::Space;
use self::inode::{Body, Inode, InodeTable, Meta, S_IFDIR, Timespec, lock, write};
use fuselage_core::abi::{FOPEN_KEEP_CACHE, FUSE_ROOT_ID, fuse_attr, fuse_entry_out, fuse_kstatfs};
use fuselage_core::op;
use fuselage_core::reply::*;
use fuselage_core::{Errno, Filesystem, InitConfig, InitFlags, KernelInit, RequestHeader};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use self::file::{CHUNK as CHUNK_SIZE, MAX_FILE_SIZE};

/// Longest name of a directory entry (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// Longest symlink target in bytes (`PATH_MAX` without the NUL).
pub const SYMLINK_MAX: usize = 4095;

/// Longest symlink target kept in the inode, as on tmpfs; a longer one
/// takes a 4 KiB page (8 blocks in `st_blocks`, charged against the
/// capacity).
pub const SYMLINK_INLINE_MAX: usize = 127;

/// Block size reported by STATFS (`f_bsize` and `f_frsize`).
pub const STATFS_BSIZE: u32 = 4096;

/// The inode count STATFS reports when [`MemFsConfig::max_inodes`] is
/// `None`.
pub const UNLIMITED_INODES: u64 = u32::MAX as u64;

/// How a [`MemFs`] is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemFsConfig {
    /// Bytes of file data and extended attributes the filesystem may hold
    /// (`ENOSPC` beyond). Default: 1 GiB.
    pub capacity_bytes: u64,
    /// Owner of the root directory. Default: 0.
    pub uid: u32,
    /// Group of the root directory. Default: 0.
    pub gid: u32,
    /// Permission bits of the root directory (file-type bits are forced to
    /// `S_IFDIR`). Default: `0o755 | S_IFDIR`.
    pub root_mode: u32,
    /// How long the kernel may cache names (and negative lookups).
    /// Default: 60 s; see the module docs for why long timeouts are right.
    pub entry_ttl: Duration,
    /// How long the kernel may cache attributes. Default: 60 s.
    pub attr_ttl: Duration,
    /// Most inodes that may exist at once, the root included (`ENOSPC`
    /// beyond); `None` for no limit. Default: `None`.
    pub max_inodes: Option<u64>,
}

impl Default for MemFsConfig {
    fn default() -> Self {
        MemFsConfig {
            capacity_bytes: 1 << 30,
            uid: 0,
            gid: 0,
            root_mode: 0o755 | S_IFDIR,
            entry_ttl: Duration::from_secs(60),
            attr_ttl: Duration::from_secs(60),
            max_inodes: None,
        }
    }
}

/// An in-memory filesystem; see the [module docs](self).
#[derive(Debug)]
pub struct MemFs {
    config: MemFsConfig,
    table: InodeTable,
    space: Space,
    next_ino: AtomicU64,
    live_inodes: AtomicU64,
    rename_lock: Mutex<()>,
}

impl Default for MemFs {
    fn default() -> Self {
        MemFs::new(MemFsConfig::default())
    }
}

impl MemFs {
    /// An empty filesystem: just the root directory, owned by `config.uid`
    /// and `config.gid` with `config.root_mode`.
    pub fn new(config: MemFsConfig) -> MemFs {
        let now = Timespec::now();
        let mode = (config.root_mode & 0o7777) | S_IFDIR;
        let mut meta = Meta::new(mode, config.uid, config.gid, 2, now);
        meta.size = 2 * inode::DIRENT_BOGO_SIZE;
        let root = Inode {
            ino: FUSE_ROOT_ID,
            kind: S_IFDIR,
            meta: Mutex::new(meta),
            body: Body::Dir(RwLock::new(Dir::new())),
            parent: AtomicU64::new(FUSE_ROOT_ID),
        };
        let table = InodeTable::default();
        table.insert(Arc::new(root));
        MemFs {
            config,
            table,
            space: Space::new(config.capacity_bytes),
            next_ino: AtomicU64::new(FUSE_ROOT_ID + 1),
            live_inodes: AtomicU64::new(1),
            rename_lock: Mutex::new(()),
        }
    }

    /// The configuration it was created with.
    pub fn config(&self) -> &MemFsConfig {
        &self.config
    }

    /// Bytes of capacity in use (stored file data and extended attributes).
    pub fn used_bytes(&self) -> u64 {
        self.space.used()
    }

    /// Inodes that exist, the root and unlinked-but-referenced ones
    /// included.
    pub fn inode_count(&self) -> u64 {
        self.live_inodes.load(Ordering::Relaxed)
    }

    fn inode(&self, ino: u64) -> Result<Arc<Inode>, Errno> {
        self.table.get(ino).ok_or(Errno::ENOENT)
    }

    fn dir_inode(&self, ino: u64) -> Result<Arc<Inode>, Errno> {
        let inode = self.inode(ino)?;
        if inode.is_dir() {
            Ok(inode)
        } else {
            Err(Errno::ENOTDIR)
        }
    }

    fn entry(&self, attr: fuse_attr) -> fuse_entry_out {
        entry_out(attr, 0, self.config.entry_ttl, self.config.attr_ttl)
    }

    /// Allocates an inode number and adds a new inode (with one lookup
    /// reference and `opens` open handles) to the table; `ENOSPC` past
    /// `max_inodes`.
    fn new_inode(
        &self,
        mut meta: Meta,
        body: Body,
        parent: u64,
        opens: u64,
    ) -> Result<Arc<Inode>, Errno> {
        let max = self.config.max_inodes.unwrap_or(u64::MAX);
        self.live_inodes
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| Errno::ENOSPC)?;
        let ino = self.next_ino.fetch_add(1, Ordering::Relaxed);
        meta.lookups = 1;
        meta.opens = opens;
        let inode = Arc::new(Inode {
            ino,
            kind: meta.mode & inode::S_IFMT,
            meta: Mutex::new(meta),
            body,
            parent: AtomicU64::new(parent),
        });
        self.table.insert(inode.clone());
        Ok(inode)
    }

    /// Applies `change` to the metadata, then frees the inode if nothing
    /// refers to it any more. Call with no lock held.
    fn unref(&self, inode: &Inode, change: impl FnOnce(&mut Meta)) {
        let free = {
            let mut m = lock(&inode.meta);
            change(&mut m);
            let free = !m.dead && inode.ino != FUSE_ROOT_ID && m.unreferenced();
            if free {
                m.dead = true;
            }
            free
        };
        if free {
            self.free(inode);
        }
    }

    /// Removes a dead inode from the table and gives back its space.
    fn free(&self, inode: &Inode) {
        self.table.remove(inode.ino);
        self.live_inodes.fetch_sub(1, Ordering::AcqRel);
        match &inode.body {
            Body::File(data) => write(data).clear(&self.space),
            Body::Dir(dir) => *write(dir) = Dir::new(),
            Body::Symlink(target) => {
                if target.len() > SYMLINK_INLINE_MAX {
                    self.space.release(file::PAGE);
                }
            }
            Body::Special => {}
        }
        let xattrs = std::mem::take(&mut lock(&inode.meta).xattrs);
        self.space.release(xattrs.charged());
    }

    fn statfs_out(&self) -> fuse_kstatfs {
        let bsize = u64::from(STATFS_BSIZE);
        let capacity = self.space.capacity();
        let free = capacity.saturating_sub(self.space.used()) / bsize;
        let files = self.config.max_inodes.unwrap_or(UNLIMITED_INODES);
        fuse_kstatfs {
            blocks: capacity / bsize,
            bfree: free,
            bavail: free,
            files,
            ffree: files.saturating_sub(self.inode_count()),
            bsize: STATFS_BSIZE,
            namelen: NAME_MAX as u32,
            frsize: STATFS_BSIZE,
            ..Default::default()
        }
    }

    fn getattr_impl(&self, ino: u64) -> Result<fuse_attr, Errno> {
        let inode = self.inode(ino)?;
        let m = lock(&inode.meta);
        Ok(m.attr(ino))
    }

    fn access_impl(&self, req: &RequestHeader, ino: u64, mask: u32) -> Result<(), Errno> {
        let inode = self.inode(ino)?;
        let m = lock(&inode.meta);
        let mask = mask & 0o7;
        if mask == 0 {
            return Ok(());
        }
        if req.uid == 0 {
            let exec_ok = inode.is_dir() || m.mode & 0o111 != 0;
            return if mask & 1 == 0 || exec_ok {
                Ok(())
            } else {
                Err(Errno::EACCES)
            };
        }
        let bits = if req.uid == m.uid {
            m.mode >> 6
        } else if req.gid == m.gid {
            m.mode >> 3
        } else {
            m.mode
        } & 0o7;
        if bits & mask == mask {
            Ok(())
        } else {
            Err(Errno::EACCES)
        }
    }

    fn setxattr_impl(&self, ino: u64, name: &[u8], value: &[u8], flags: u32) -> Result<(), Errno> {
        xattr::check_name(name)?;
        let inode = self.inode(ino)?;
        let mut m = lock(&inode.meta);
        let freed = m
            .xattrs
            .set(name, value, flags, |bytes| self.space.reserve(bytes))?;
        self.space.release(freed);
        m.ctime = Timespec::now();
        Ok(())
    }

    fn removexattr_impl(&self, ino: u64, name: &[u8]) -> Result<(), Errno> {
        xattr::check_name(name)?;
        let inode = self.inode(ino)?;
        let mut m = lock(&inode.meta);
        let freed = m.xattrs.remove(name)?;
        self.space.release(freed);
        m.ctime = Timespec::now();
        Ok(())
    }
}

impl Filesystem for MemFs {
    /// Asks for `ATOMIC_O_TRUNC` and `DONT_MASK` (memfs handles O_TRUNC in
    /// OPEN and applies the umask itself) and `HANDLE_KILLPRIV_V2` (memfs
    /// clears set-id bits and file capabilities itself, by the running
    /// kernel's rules: see the `setid` module), never the older
    /// `HANDLE_KILLPRIV`.
    fn init(&self, _kernel: &KernelInit, config: &mut InitConfig) -> Result<(), Errno> {
        config.wanted |=
            InitFlags::ATOMIC_O_TRUNC | InitFlags::DONT_MASK | InitFlags::HANDLE_KILLPRIV_V2;
        config.wanted.remove(InitFlags::HANDLE_KILLPRIV);
        Ok(())
    }

    fn lookup<S: ReplySink>(&self, _req: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        match self.lookup_impl(op.parent(), op.name().to_bytes()) {
            Ok(entry) => reply.entry(&entry),
            Err(Errno::ENOENT) if self.table.get(op.parent()).is_some() => {
                reply.negative(self.config.entry_ttl)
            }
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &RequestHeader, op: op::Forget) {
        if let Some(inode) = self.table.get(op.ino()) {
            self.unref(&inode, |m| {
                m.lookups = m.lookups.saturating_sub(op.nlookup())
            });
        }
    }

    fn getattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Getattr<'_>,
        reply: ReplyAttr<S>,
    ) {
        answer!(reply, self.getattr_impl(op.ino()), |attr| reply
            .attr(self.config.attr_ttl, &attr))
    }

    fn setattr<S: ReplySink>(&self, req: &RequestHeader, op: op::Setattr<'_>, reply: ReplyAttr<S>) {
        answer!(
            reply,
            self.setattr_impl(req, op.ino(), &op.attr()),
            |attr| reply.attr(self.config.attr_ttl, &attr)
        )
    }

    fn readlink<S: ReplySink>(&self, _req: &RequestHeader, op: op::Readlink, reply: ReplyData<S>) {
        match self.inode(op.ino()) {
            Ok(inode) => match &inode.body {
                Body::Symlink(target) => reply.data(target),
                _ => reply.error(Errno::EINVAL),
            },
            Err(e) => reply.error(e),
        }
    }

    fn symlink<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Symlink<'_>,
        reply: ReplyEntry<S>,
    ) {
        answer!(
            reply,
            self.symlink_impl(
                req,
                op.parent(),
                op.name().to_bytes(),
                op.target().to_bytes()
            ),
            |attr| reply.entry(&self.entry(attr))
        )
    }

    fn mknod<S: ReplySink>(&self, req: &RequestHeader, op: op::Mknod<'_>, reply: ReplyEntry<S>) {
        answer!(
            reply,
            self.mknod_impl(
                req,
                op.parent(),
                op.name().to_bytes(),
                op.mode(),
                op.umask(),
                op.rdev()
            ),
            |attr| reply.entry(&self.entry(attr))
        )
    }

    fn mkdir<S: ReplySink>(&self, req: &RequestHeader, op: op::Mkdir<'_>, reply: ReplyEntry<S>) {
        answer!(
            reply,
            self.mkdir_impl(
                req,
                op.parent(),
                op.name().to_bytes(),
                op.mode(),
                op.umask()
            ),
            |attr| reply.entry(&self.entry(attr))
        )
    }

    fn unlink<S: ReplySink>(&self, _req: &RequestHeader, op: op::Unlink<'_>, reply: ReplyEmpty<S>) {
        answer!(
            reply,
            self.unlink_impl(op.parent(), op.name().to_bytes()),
            |()| reply.ok()
        )
    }

    fn rmdir<S: ReplySink>(&self, _req: &RequestHeader, op: op::Rmdir<'_>, reply: ReplyEmpty<S>) {
        answer!(
            reply,
            self.rmdir_impl(op.parent(), op.name().to_bytes()),
            |()| reply.ok()
        )
    }

    fn rename<S: ReplySink>(&self, req: &RequestHeader, op: op::Rename<'_>, reply: ReplyEmpty<S>) {
        answer!(reply, self.rename_impl(req, &op), |()| reply.ok())
    }

    fn link<S: ReplySink>(&self, _req: &RequestHeader, op: op::Link<'_>, reply: ReplyEntry<S>) {
        answer!(
            reply,
            self.link_impl(op.ino(), op.newparent(), op.newname().to_bytes()),
            |attr| reply.entry(&self.entry(attr))
        )
    }

    fn open<S: ReplySink>(&self, req: &RequestHeader, op: op::Open<'_>, reply: ReplyOpen<S>) {
        answer!(
            reply,
            self.open_impl(req, op.ino(), op.flags(), op.open_flags()),
            |()| { reply.opened(0, FOPEN_KEEP_CACHE) }
        )
    }

    fn read<S: ReplySink>(&self, _req: &RequestHeader, op: op::Read<'_>, reply: ReplyData<S>) {
        self.read_impl(op.ino(), op.offset(), op.size(), reply)
    }

    fn write<S: ReplySink>(&self, req: &RequestHeader, op: op::Write<'_>, reply: ReplyWrite<S>) {
        answer!(
            reply,
            self.write_impl(req, op.ino(), op.offset(), op.data(), op.write_flags()),
            |n| reply.written(n)
        )
    }

    fn statfs<S: ReplySink>(&self, _req: &RequestHeader, _op: op::Statfs, reply: ReplyStatfs<S>) {
        reply.statfs(&self.statfs_out())
    }

    fn release<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Release<'_>,
        reply: ReplyEmpty<S>,
    ) {
        if let Some(inode) = self.table.get(op.ino()) {
            self.unref(&inode, |m| m.opens = m.opens.saturating_sub(1));
        }
        reply.ok()
    }

    fn fsync<S: ReplySink>(&self, _req: &RequestHeader, _op: op::Fsync<'_>, reply: ReplyEmpty<S>) {
        reply.ok()
    }

    fn setxattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Setxattr<'_>,
        reply: ReplyEmpty<S>,
    ) {
        answer!(
            reply,
            self.setxattr_impl(op.ino(), op.name().to_bytes(), op.value(), op.flags()),
            |()| reply.ok()
        )
    }

    fn getxattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Getxattr<'_>,
        reply: ReplyXattr<S>,
    ) {
        let name = op.name().to_bytes();
        if let Err(e) = xattr::check_name(name) {
            return reply.error(e);
        }
        let inode = match self.inode(op.ino()) {
            Ok(inode) => inode,
            Err(e) => return reply.error(e),
        };
        let size = op.size();
        let m = lock(&inode.meta);
        match m.xattrs.get(name) {
            None => reply.error(Errno::ENODATA),
            Some(value) if size == 0 => reply.size(value.len() as u32),
            Some(value) if value.len() > size as usize => reply.error(Errno::ERANGE),
            Some(value) => reply.data(value),
        }
    }

    fn listxattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Listxattr<'_>,
        reply: ReplyXattr<S>,
    ) {
        let inode = match self.inode(op.ino()) {
            Ok(inode) => inode,
            Err(e) => return reply.error(e),
        };
        let size = op.size();
        let m = lock(&inode.meta);
        let len = m.xattrs.list_len();
        if size == 0 {
            reply.size(len as u32)
        } else if len > size as usize {
            reply.error(Errno::ERANGE)
        } else {
            let mut names = Vec::with_capacity(len);
            m.xattrs.list_into(&mut names);
            drop(m);
            reply.data(&names)
        }
    }

    fn removexattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Removexattr<'_>,
        reply: ReplyEmpty<S>,
    ) {
        answer!(
            reply,
            self.removexattr_impl(op.ino(), op.name().to_bytes()),
            |()| { reply.ok() }
        )
    }

    // FLUSH is left to the trait's default, ENOSYS: memfs has nothing to
    // flush and no remote locks to drop on close, and ENOSYS makes the kernel
    // stop sending FLUSH for the rest of the mount (one round trip less per
    // close(2)).

    fn opendir<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Opendir<'_>,
        reply: ReplyOpen<S>,
    ) {
        answer!(reply, self.opendir_impl(op.ino()), |()| reply.opened(0, 0))
    }

    fn readdir<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Readdir<'_>,
        reply: ReplyDirectory<'_, S>,
    ) {
        self.readdir_impl(op.ino(), op.offset(), false, reply)
    }

    fn readdirplus<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Readdirplus<'_>,
        reply: ReplyDirectory<'_, S>,
    ) {
        self.readdir_impl(op.ino(), op.offset(), true, reply)
    }

    fn releasedir<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Releasedir<'_>,
        reply: ReplyEmpty<S>,
    ) {
        if let Some(inode) = self.table.get(op.ino()) {
            self.unref(&inode, |m| m.opens = m.opens.saturating_sub(1));
        }
        reply.ok()
    }

    fn fsyncdir<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        _op: op::Fsyncdir<'_>,
        reply: ReplyEmpty<S>,
    ) {
        reply.ok()
    }

    /// Checks the owner/group/other permission bits (the caller's
    /// supplementary groups are not known); root passes except for execute
    /// permission on a file without any `x` bit.
    fn access<S: ReplySink>(&self, req: &RequestHeader, op: op::Access<'_>, reply: ReplyEmpty<S>) {
        answer!(reply, self.access_impl(req, op.ino(), op.mask()), |()| {
            reply.ok()
        })
    }

    fn create<S: ReplySink>(&self, req: &RequestHeader, op: op::Create<'_>, reply: ReplyCreate<S>) {
        answer!(
            reply,
            self.create_impl(
                req,
                op.parent(),
                op.name().to_bytes(),
                op.mode(),
                op.umask(),
                op.flags()
            ),
            |attr| reply.created(&self.entry(attr), 0, FOPEN_KEEP_CACHE)
        )
    }

    fn fallocate<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Fallocate<'_>,
        reply: ReplyEmpty<S>,
    ) {
        answer!(
            reply,
            self.fallocate_impl(req, op.ino(), op.offset(), op.length(), op.mode()),
            |()| reply.ok()
        )
    }

    fn lseek<S: ReplySink>(&self, _req: &RequestHeader, op: op::Lseek<'_>, reply: ReplyLseek<S>) {
        answer!(
            reply,
            self.lseek_impl(op.ino(), op.offset(), op.whence()),
            |off| reply.offset(off)
        )
    }

    fn copy_file_range<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::CopyFileRange<'_>,
        reply: ReplyCopyFormatted<S>,
    ) {
        answer!(reply, self.copy_file_range_impl(req, &op), |n| reply
            .copied(n))
    }

    fn syncfs<S: ReplySink>(&self, _req: &RequestHeader, _op: op::Syncfs, reply: ReplyEmpty<S>) {
        reply.ok()
    }

    fn tmpfile<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Tmpfile<'_>,
        reply: ReplyCreate<S>,
    ) {
        answer!(
            reply,
            self.tmpfile_impl(req, op.parent(), op.mode(), op.umask()),
            |attr| { reply.created(&self.entry(attr), 0, FOPEN_KEEP_CACHE) }
        )
    }

    fn statx<S: ReplySink>(&self, _req: &RequestHeader, op: op::Statx<'_>, reply: ReplyStatx<S>) {
        match self.inode(op.ino()) {
            Ok(inode) => {
                let stat = lock(&inode.meta).statx(op.ino());
                reply.statx(self.config.attr_ttl, 0, &stat)
            }
            Err(e) => reply.error(e),
        }
    }
}

/// `ENAMETOOLONG` for a name longer than [`NAME_MAX`].
fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.len() > NAME_MAX {
        Err(Errno::ENAMETOOLONG)
    } else {
        Ok(())
    }
}
