//! Open files and directories, by the `fh` the kernel quotes back.
//!
//! Every OPEN, CREATE, TMPFILE and OPENDIR gets its own host descriptor,
//! opened with the client's flags, and an entry in a [`HandleTable`]. The
//! `fh` sent to the kernel is the entry's slot, never a raw descriptor
//! number: a request quoting an `fh` that is not in the table (or that
//! belongs to another inode) gets `EBADF`, so a peer cannot make the server
//! act on an arbitrary descriptor of its own (the `/dev/fuse` fd, a cached
//! `O_PATH` fd of some other inode) by guessing numbers.

use super::inode_store::Inode;
use super::sys::SysResult;
use fuselage_core::Errno;
use slab::Slab;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// A table of open handles of one kind.
#[derive(Debug)]
pub(crate) struct HandleTable<T> {
    slab: RwLock<Slab<Arc<T>>>,
}

impl<T> HandleTable<T> {
    /// An empty table.
    pub(crate) fn new() -> Self {
        HandleTable {
            slab: RwLock::new(Slab::with_capacity(256)),
        }
    }

    /// Adds `value`; returns its `fh`.
    pub(crate) fn insert(&self, value: T) -> u64 {
        let mut slab = self.slab.write().unwrap_or_else(|e| e.into_inner());
        slab.insert(Arc::new(value)) as u64
    }

    /// The entry for `fh`, or `EBADF`.
    pub(crate) fn get(&self, fh: u64) -> SysResult<Arc<T>> {
        let slab = self.slab.read().unwrap_or_else(|e| e.into_inner());
        usize::try_from(fh)
            .ok()
            .and_then(|k| slab.get(k))
            .cloned()
            .ok_or(Errno::EBADF)
    }

    /// Removes and returns the entry for `fh`.
    pub(crate) fn remove(&self, fh: u64) -> Option<Arc<T>> {
        let mut slab = self.slab.write().unwrap_or_else(|e| e.into_inner());
        usize::try_from(fh).ok().and_then(|k| slab.try_remove(k))
    }

    /// Entries in the table.
    pub(crate) fn len(&self) -> usize {
        self.slab.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// How one open file's I/O is done, as counted in the inode's
/// [`IoMode`](super::inode_store::IoMode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenIo {
    /// Kernel passthrough is not in use: nothing is counted.
    Unmanaged,
    /// Kernel passthrough with this backing id.
    Passthrough(i32),
    /// Through the server and the page cache although kernel passthrough is
    /// in use (counted in `IoMode::cached_opens`).
    Cached,
}

/// An open regular file.
#[derive(Debug)]
pub(crate) struct OpenFile {
    /// The node id the kernel opened.
    pub nodeid: u64,
    /// Its inode (keeps the anchor pinned while open).
    pub inode: Arc<Inode>,
    /// The host descriptor, opened with the client's flags.
    pub fd: OwnedFd,
    /// Opened with `O_DIRECT`: I/O needs aligned buffers.
    pub direct: bool,
    /// How the kernel does this file's I/O.
    pub io: OpenIo,
    /// Opened for writing.
    pub writable: bool,
    /// POSIX locks were taken through this file (unlocked on FLUSH).
    pub posix_locked: AtomicBool,
}

impl OpenFile {
    /// A new open file of `inode`; counts as an open on the inode.
    pub(crate) fn new(nodeid: u64, inode: Arc<Inode>, fd: OwnedFd, flags: i32) -> OpenFile {
        inode.opens.fetch_add(1, Ordering::AcqRel);
        OpenFile {
            nodeid,
            inode,
            fd,
            direct: flags & libc::O_DIRECT != 0,
            io: OpenIo::Unmanaged,
            writable: flags & libc::O_ACCMODE != libc::O_RDONLY,
            posix_locked: AtomicBool::new(false),
        }
    }

    /// Checks that the kernel quoted this file for the right inode.
    pub(crate) fn check(&self, nodeid: u64) -> SysResult<()> {
        if self.nodeid == nodeid {
            Ok(())
        } else {
            Err(Errno::EBADF)
        }
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        self.inode.opens.fetch_sub(1, Ordering::AcqRel);
    }
}
