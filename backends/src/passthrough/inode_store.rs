//! The inode table: every host inode the kernel knows, by node id and by
//! identity.
//!
//! An [`Inode`] is created the first time a name resolves to a host inode
//! and lives while the kernel holds lookup references to it. Its node id is
//! its slab slot plus one (the root, inserted first, is node id 1, the
//! protocol's `FUSE_ROOT_ID`); a slot is reused only after the kernel has
//! forgotten the inode that had it.
//!
//! Identity is `(st_ino, st_dev, mount id)`: two names of one host inode
//! (hard links) resolve to the same entry and so to the same node id, which
//! is what makes the kernel show one inode with a shared link count.
//!
//! # Reference counts
//!
//! Each successful LOOKUP, CREATE, MKNOD, MKDIR, SYMLINK, LINK, TMPFILE and
//! each READDIRPLUS entry with a node id adds one reference; FORGET and
//! BATCH_FORGET subtract theirs, saturating at zero, so a confused or hostile
//! peer cannot underflow the count into a use of freed state. A lookup can
//! only add to an entry whose count is still above zero ([`Inode::try_ref`]):
//! an entry that dropped to zero is being removed, and a lookup racing with
//! that removal makes a fresh entry instead of reviving the dying one.
//!
//! # Anchors and the descriptor limit
//!
//! An inode is anchored either by an `O_PATH` descriptor held for its whole
//! life ([`Anchor::Fd`]) or by a kernel file handle ([`Anchor::Handle`]) plus
//! an `O_PATH` descriptor that is only *cached*. With file handles (the
//! filesystem supports them and we have CAP_DAC_READ_SEARCH for
//! open_by_handle_at), the number of cached descriptors is bounded
//! ([`InodeStore::new`]'s `max_cached`): past it a CLOCK sweep (second chance
//! for recently used entries) closes the descriptors of idle inodes, and the
//! next request for such an inode reopens it from its handle. Inodes with
//! open files are never swept. So the table can hold far more inodes than
//! the process may have descriptors, without ever resolving a path again:
//! a handle names the inode itself, and the filesystem's generation number
//! inside it makes a reused inode number fail with `ESTALE` instead of
//! reaching a different file.
//!
//! Without file handles (an unprivileged server, or a filesystem such as
//! overlayfs without `nfs_export`) an inode is anchored by its *place*
//! ([`Anchor::Name`]): the directory entry and name it was last found
//! under, plus the same bounded, evictable descriptor cache. An evicted
//! inode is re-resolved by walking up the recorded places to the nearest
//! ancestor that still has a descriptor (the root always has one) and
//! opening each name on the way back down with openat2 and the confining
//! resolve flags, one component at a time, so a re-resolution can never
//! leave the served tree or follow a symlink. Each step must yield the inode
//! recorded there (device, inode number, mount and, where the filesystem
//! reports it, birth time), else the request fails with `ESTALE`: a host
//! process that renames or replaces something behind the server's back
//! makes the old node id stale, never a different file. Places are kept
//! current: every lookup records the name it came through, renames through
//! the mount move them, and an inode whose name is unlinked or renamed over
//! keeps its descriptor pinned (it has no name left to be found by) until
//! the kernel forgets it.

use super::sys::{self, FileHandle, SysResult};
use fuselage_core::Errno;
use slab::Slab;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The node id of the root.
pub(crate) const ROOT_ID: u64 = fuselage_core::abi::FUSE_ROOT_ID;

/// The statx fields that identify an inode, on top of the attributes:
/// inode number, device and mount id from [`super::stat::STATX_MASK`], and the
/// birth time.
pub(crate) const IDENTITY_MASK: u32 = super::stat::STATX_MASK | libc::STATX_BTIME;

/// Locks a mutex, ignoring poisoning (every critical section here leaves
/// its data consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// What identifies a host inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct InodeIds {
    /// Inode number.
    pub ino: u64,
    /// Device (`makedev` of statx's dev fields).
    pub dev: u64,
    /// Mount id.
    pub mnt_id: u64,
}

impl InodeIds {
    pub(crate) fn of(st: &libc::statx) -> InodeIds {
        InodeIds {
            ino: st.stx_ino,
            dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
            mnt_id: st.stx_mnt_id,
        }
    }
}

/// An `O_PATH` descriptor cached for an inode that can be reopened without
/// it, and the CLOCK sweep's "recently used" bit.
#[derive(Debug)]
pub(crate) struct CachedFd {
    fd: Mutex<Option<Arc<OwnedFd>>>,
    used: AtomicBool,
}

impl CachedFd {
    fn holding(fd: OwnedFd) -> CachedFd {
        CachedFd {
            fd: Mutex::new(Some(Arc::new(fd))),
            used: AtomicBool::new(true),
        }
    }
}

/// A kernel file handle and the `O_PATH` descriptor cached for it. The
/// handle is taken from the descriptor the first time the sweep would close
/// it (one name_to_handle_at per evicted inode instead of one per LOOKUP);
/// an inode whose handle cannot be taken keeps its descriptor.
#[derive(Debug)]
pub(crate) struct HandleAnchor {
    handle: OnceLock<FileHandle>,
    cache: CachedFd,
}

/// Where a name-anchored inode was last found: a directory's entry and the
/// name in it.
#[derive(Debug)]
struct Place {
    parent: Arc<Inode>,
    name: CString,
}

/// A place to re-resolve from, and the `O_PATH` descriptor cached for it.
#[derive(Debug)]
pub(crate) struct NameAnchor {
    /// `None` once no known name leads to the inode (unlinked or renamed
    /// over through the mount): its descriptor is then pinned.
    place: Mutex<Option<Place>>,
    /// Birth time, where the filesystem reports one: a re-resolved name
    /// must lead to an inode born at the same time.
    btime: Option<(i64, u32)>,
    cache: CachedFd,
}

/// How an inode is held.
#[derive(Debug)]
pub(crate) enum Anchor {
    /// An `O_PATH` descriptor for the inode's whole life.
    Fd(OwnedFd),
    /// A file handle, with an evictable cached descriptor.
    Handle(HandleAnchor),
    /// A place (parent and name), with an evictable cached descriptor.
    Name(NameAnchor),
}

impl Anchor {
    /// The evictable descriptor cache, for anchors that have one.
    fn cache(&self) -> Option<&CachedFd> {
        match self {
            Anchor::Fd(_) => None,
            Anchor::Handle(h) => Some(&h.cache),
            Anchor::Name(n) => Some(&n.cache),
        }
    }
}

/// Birth time from statx, if the filesystem reported it.
fn btime_of(st: &libc::statx) -> Option<(i64, u32)> {
    (st.stx_mask & libc::STATX_BTIME != 0).then_some((st.stx_btime.tv_sec, st.stx_btime.tv_nsec))
}

/// How many places a re-resolution walks up at most (a name is at least
/// two bytes with its '/', so PATH_MAX allows no more).
const MAX_WALK: usize = 2048;

/// A descriptor for an inode: borrowed from a permanent anchor, or a share
/// of a cached one (which stays open while this lives, even if evicted).
#[derive(Debug)]
pub(crate) enum InodeFd<'a> {
    /// The inode's permanent descriptor.
    Borrowed(BorrowedFd<'a>),
    /// A cached descriptor.
    Shared(Arc<OwnedFd>),
}

impl AsFd for InodeFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            InodeFd::Borrowed(fd) => *fd,
            InodeFd::Shared(fd) => fd.as_fd(),
        }
    }
}

/// A descriptor for an inode held for as long as a request needs it,
/// without borrowing from a local: it owns a share of the inode (whose
/// permanent descriptor it lends) or of the cached descriptor.
#[derive(Debug)]
pub(crate) enum HeldFd {
    /// The inode, anchored by a permanent descriptor.
    Permanent(Arc<Inode>),
    /// A cached descriptor.
    Shared(Arc<OwnedFd>),
}

impl AsFd for HeldFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            HeldFd::Shared(fd) => fd.as_fd(),
            HeldFd::Permanent(inode) => match &inode.anchor {
                Anchor::Fd(fd) => fd.as_fd(),
                // `InodeStore::hold` makes `Permanent` only for `Anchor::Fd`.
                Anchor::Handle(_) | Anchor::Name(_) => {
                    unreachable!("an inode with an evictable descriptor held as permanent")
                }
            },
        }
    }
}

/// A backing file registered for kernel passthrough, shared by all
/// passthrough opens of one inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backing {
    /// The id `FUSE_DEV_IOC_BACKING_OPEN` returned.
    pub id: i32,
    /// Open files using it.
    pub opens: u32,
}

/// How the kernel does an inode's I/O while kernel passthrough is in use.
///
/// The kernel refuses (with `EIO` to the caller) a passthrough open of an
/// inode that has cached opens, and an open without passthrough of an
/// inode that has a backing file, so both kinds are counted here.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IoMode {
    /// The passthrough backing file, while any passthrough open exists.
    pub backing: Option<Backing>,
    /// Opens served without passthrough (through the page cache).
    pub cached_opens: u32,
}

/// What the kernel's page cache for a file was built from: compared at the
/// next open to decide on `FOPEN_KEEP_CACHE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheStamp {
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    pub size: u64,
}

/// One host inode the kernel knows.
#[derive(Debug)]
pub(crate) struct Inode {
    /// Its identity.
    pub ids: InodeIds,
    /// Its file type (`S_IFMT` bits); never changes for an inode.
    pub kind: u32,
    refcount: AtomicU64,
    anchor: Anchor,
    /// Open files (and directories); while non-zero the anchor descriptor
    /// is not evicted.
    pub opens: AtomicU32,
    removed: AtomicBool,
    /// How the kernel does this inode's I/O (passthrough or cached), as
    /// its open files decided.
    pub io: Mutex<IoMode>,
    /// The file's state when the kernel last cached its pages.
    pub stamp: Mutex<Option<CacheStamp>>,
    /// The inotify watch descriptor of a watched directory (`-1`: none);
    /// see the `watch` module.
    pub watch: AtomicI32,
}

impl Inode {
    fn new(ids: InodeIds, kind: u32, anchor: Anchor, refs: u64) -> Inode {
        Inode {
            ids,
            kind,
            refcount: AtomicU64::new(refs),
            anchor,
            opens: AtomicU32::new(0),
            removed: AtomicBool::new(false),
            io: Mutex::new(IoMode::default()),
            stamp: Mutex::new(None),
            watch: AtomicI32::new(-1),
        }
    }

    /// Adds one lookup reference unless the count already dropped to zero.
    fn try_ref(&self) -> bool {
        self.refcount
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c > 0).then_some(c + 1)
            })
            .is_ok()
    }

    /// Whether this entry holds a descriptor that keeps the host inode (and
    /// so its inode number) alive, which makes equal ids mean "same inode".
    fn pins_identity(&self) -> bool {
        match self.anchor.cache() {
            None => true,
            Some(c) => lock(&c.fd).is_some(),
        }
    }

    /// Whether this is a regular file.
    pub(crate) fn is_reg(&self) -> bool {
        self.kind == libc::S_IFREG
    }

    /// Whether this is a directory.
    pub(crate) fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }
}

struct Table {
    slab: Slab<Arc<Inode>>,
    by_ids: HashMap<InodeIds, u64>,
}

fn slot(nodeid: u64) -> usize {
    nodeid.wrapping_sub(1) as usize
}

/// The inode table; see the [module docs](self).
pub(crate) struct InodeStore {
    table: RwLock<Table>,
    /// Counts inodes entering the table (for the host watcher's cache of
    /// directory handles: an unknown directory may have become known).
    entered: AtomicU64,
    /// An open (not `O_PATH`) descriptor on the served mount, for
    /// open_by_handle_at; `None` without file handles.
    mount_fd: Option<OwnedFd>,
    handles: bool,
    cached: AtomicUsize,
    max_cached: usize,
    hand: AtomicUsize,
    evicting: Mutex<()>,
    reopened: AtomicU64,
    evicted: AtomicU64,
    stale: AtomicU64,
}

impl std::fmt::Debug for InodeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InodeStore")
            .field("inodes", &self.len())
            .field("handles", &self.handles)
            .field("cached", &self.cached.load(Ordering::Relaxed))
            .field("max_cached", &self.max_cached)
            .finish()
    }
}

impl InodeStore {
    /// A table holding just the root (`root`, an `O_PATH` descriptor, with
    /// attributes `st`). With `mount_fd` (an open descriptor on the served
    /// mount) further inodes are anchored by file handle, caching at most
    /// `max_cached` descriptors.
    pub(crate) fn new(
        root: OwnedFd,
        st: &libc::statx,
        mount_fd: Option<OwnedFd>,
        max_cached: usize,
    ) -> InodeStore {
        let handles = mount_fd.is_some();
        let ids = InodeIds::of(st);
        let root = Arc::new(Inode::new(
            ids,
            u32::from(st.stx_mode) & libc::S_IFMT,
            Anchor::Fd(root),
            1,
        ));
        let mut slab = Slab::with_capacity(1024);
        let key = slab.insert(root);
        debug_assert_eq!(key as u64 + 1, ROOT_ID);
        let mut by_ids = HashMap::with_capacity(1024);
        by_ids.insert(ids, ROOT_ID);
        InodeStore {
            table: RwLock::new(Table { slab, by_ids }),
            entered: AtomicU64::new(0),
            mount_fd,
            handles,
            cached: AtomicUsize::new(0),
            max_cached: max_cached.max(16),
            hand: AtomicUsize::new(0),
            evicting: Mutex::new(()),
            reopened: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        }
    }

    /// The inode with node id `nodeid`; `ESTALE` if the kernel names one it
    /// has forgotten.
    pub(crate) fn get(&self, nodeid: u64) -> SysResult<Arc<Inode>> {
        read(&self.table)
            .slab
            .get(slot(nodeid))
            .cloned()
            .ok_or(Errno::ESTALE)
    }

    /// Inodes in the table (the root included).
    pub(crate) fn len(&self) -> usize {
        read(&self.table).slab.len()
    }

    /// Whether inodes are anchored by file handles.
    pub(crate) fn uses_handles(&self) -> bool {
        self.handles
    }

    /// Descriptors currently cached for handle-anchored inodes.
    pub(crate) fn cached_fds(&self) -> usize {
        self.cached.load(Ordering::Relaxed)
    }

    /// The cache's bound.
    pub(crate) fn max_cached_fds(&self) -> usize {
        self.max_cached
    }

    /// Descriptors reopened from file handles, and descriptors evicted.
    pub(crate) fn handle_counters(&self) -> (u64, u64) {
        (
            self.reopened.load(Ordering::Relaxed),
            self.evicted.load(Ordering::Relaxed),
        )
    }

    /// Re-resolutions of recorded places refused because the name was gone
    /// or led to a different inode.
    pub(crate) fn stale_places(&self) -> u64 {
        self.stale.load(Ordering::Relaxed)
    }

    /// A descriptor for `inode` that owns what it needs to stay open.
    pub(crate) fn hold(&self, inode: Arc<Inode>) -> SysResult<HeldFd> {
        let shared = match self.fd(&inode)? {
            InodeFd::Borrowed(_) => None,
            InodeFd::Shared(fd) => Some(fd),
        };
        Ok(match shared {
            Some(fd) => HeldFd::Shared(fd),
            None => HeldFd::Permanent(inode),
        })
    }

    /// A descriptor for `inode`, reopened (from its file handle, or by
    /// re-resolving its place) if the cached one was evicted.
    pub(crate) fn fd<'a>(&self, inode: &'a Inode) -> SysResult<InodeFd<'a>> {
        let cache = match &inode.anchor {
            Anchor::Fd(fd) => return Ok(InodeFd::Borrowed(fd.as_fd())),
            Anchor::Handle(h) => &h.cache,
            Anchor::Name(n) => &n.cache,
        };
        cache.used.store(true, Ordering::Relaxed);
        if let Some(fd) = &*lock(&cache.fd) {
            return Ok(InodeFd::Shared(fd.clone()));
        }
        // Reopen without holding the slot: re-resolving a place takes the
        // slots of the inode's ancestors, and the sweep takes any.
        let fd = match self.reopen(inode) {
            Err(Errno::EMFILE) | Err(Errno::ENFILE) => {
                // Out of descriptors: sweep the cache and try once more.
                self.evict(true);
                self.reopen(inode)?
            }
            other => other?,
        };
        self.reopened.fetch_add(1, Ordering::Relaxed);
        Ok(InodeFd::Shared(self.install(inode, fd)))
    }

    /// Caches `fd`, just reopened for `inode`, unless another request
    /// cached one meanwhile (that one is returned and `fd` closed) or the
    /// inode was forgotten (then `fd` serves the request uncached).
    fn install(&self, inode: &Inode, fd: OwnedFd) -> Arc<OwnedFd> {
        let Some(cache) = inode.anchor.cache() else {
            return Arc::new(fd);
        };
        let mut slot = lock(&cache.fd);
        if let Some(cur) = &*slot {
            return cur.clone();
        }
        let fd = Arc::new(fd);
        if inode.removed.load(Ordering::Acquire) {
            return fd;
        }
        *slot = Some(fd.clone());
        drop(slot);
        if self.cached.fetch_add(1, Ordering::Relaxed) + 1 > self.max_cached {
            self.evict(false);
        }
        fd
    }

    /// Opens a new `O_PATH` descriptor for an inode whose cached one was
    /// evicted.
    fn reopen(&self, inode: &Inode) -> SysResult<OwnedFd> {
        match &inode.anchor {
            // `fd` answers from the permanent descriptor before reopening.
            Anchor::Fd(_) => Err(Errno::ESTALE),
            Anchor::Handle(h) => {
                let mount_fd = self.mount_fd.as_ref().ok_or(Errno::ESTALE)?.as_fd();
                let handle = h.handle.get().ok_or(Errno::ESTALE)?;
                sys::open_by_handle(mount_fd, handle, libc::O_PATH)
            }
            Anchor::Name(_) => self.resolve(inode),
        }
    }

    /// The descriptor of `inode` if it has one open now, without reopening.
    fn current(inode: &Arc<Inode>) -> Option<HeldFd> {
        match inode.anchor.cache() {
            None => Some(HeldFd::Permanent(inode.clone())),
            Some(c) => lock(&c.fd).clone().map(HeldFd::Shared),
        }
    }

    /// Re-resolves a name-anchored inode: walks up its recorded places to
    /// the nearest ancestor with an open descriptor, then opens each name
    /// on the way back down (one component, confined, never following a
    /// symlink) and checks that it is the inode recorded there, caching the
    /// ancestors' descriptors as it goes. `ESTALE` if a name is gone or
    /// leads elsewhere, or the places form a loop (host-side renames can
    /// make the recorded places disagree with each other).
    ///
    /// This is the slow path past the descriptor cache's bound; it allocates
    /// the walk.
    fn resolve(&self, inode: &Inode) -> SysResult<OwnedFd> {
        let place_of = |inode: &Inode| -> SysResult<(Arc<Inode>, CString)> {
            let Anchor::Name(n) = &inode.anchor else {
                return Err(Errno::ESTALE);
            };
            let place = lock(&n.place);
            let place = place.as_ref().ok_or(Errno::ESTALE)?;
            Ok((place.parent.clone(), place.name.clone()))
        };
        // `chain[i]` is an ancestor to reopen and the name it has in
        // `chain[i + 1]` (or in `top`); `name` is the inode's own name.
        let (mut parent, name) = place_of(inode)?;
        let mut chain: Vec<(Arc<Inode>, CString)> = Vec::new();
        let top = loop {
            if let Some(fd) = Self::current(&parent) {
                break fd;
            }
            if !matches!(parent.anchor, Anchor::Name(_)) {
                break self.hold(parent.clone())?;
            }
            if chain.len() >= MAX_WALK
                || std::ptr::eq(Arc::as_ptr(&parent), inode)
                || chain.iter().any(|(p, _)| Arc::ptr_eq(p, &parent))
            {
                return Err(Errno::ESTALE);
            }
            let (grand, pname) = place_of(&parent)?;
            chain.push((std::mem::replace(&mut parent, grand), pname));
        };
        let mut dir = top;
        while let Some((ancestor, name)) = chain.pop() {
            let fd = self.open_checked(dir.as_fd(), &name, &ancestor)?;
            dir = HeldFd::Shared(self.install(&ancestor, fd));
        }
        self.open_checked(dir.as_fd(), &name, inode)
    }

    /// Opens `name` in `dir` (confined, `O_PATH`, not following a final
    /// symlink) and checks it is `inode`.
    fn open_checked(&self, dir: BorrowedFd<'_>, name: &CStr, inode: &Inode) -> SysResult<OwnedFd> {
        let fd = match super::open_name(dir, name) {
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) | Err(Errno::ELOOP) | Err(Errno::EXDEV) => {
                self.stale.fetch_add(1, Ordering::Relaxed);
                return Err(Errno::ESTALE);
            }
            other => other?,
        };
        let st = sys::statx(fd.as_fd(), 0, IDENTITY_MASK)?;
        let btime = match &inode.anchor {
            Anchor::Name(n) => n.btime,
            _ => None,
        };
        if InodeIds::of(&st) != inode.ids || (btime.is_some() && btime_of(&st) != btime) {
            self.stale.fetch_add(1, Ordering::Relaxed);
            return Err(Errno::ESTALE);
        }
        Ok(fd)
    }

    /// The entry for host inode `ids`, if the table has one.
    fn find(&self, ids: &InodeIds) -> Option<Arc<Inode>> {
        let t = read(&self.table);
        let id = *t.by_ids.get(ids)?;
        t.slab.get(slot(id)).cloned()
    }

    /// Records that `inode` was found as `name` in `parent` (no-op for
    /// inodes not anchored by place).
    pub(crate) fn note_place(&self, inode: &Inode, parent: &Arc<Inode>, name: &CStr) {
        let Anchor::Name(n) = &inode.anchor else {
            return;
        };
        if std::ptr::eq(Arc::as_ptr(parent), inode) {
            return;
        }
        let mut place = lock(&n.place);
        if let Some(p) = &*place
            && Arc::ptr_eq(&p.parent, parent)
            && p.name.as_c_str() == name
        {
            return;
        }
        *place = Some(Place {
            parent: parent.clone(),
            name: name.to_owned(),
        });
    }

    /// The inode the name `name` in `dir` (descriptor `dirfd`) leads to now,
    /// if the table has it and it is anchored by place. Only meaningful
    /// without file handles; `None` otherwise.
    pub(crate) fn placed_at(&self, dirfd: BorrowedFd<'_>, name: &CStr) -> Option<Arc<Inode>> {
        if self.handles {
            return None;
        }
        let st = sys::statx_at(dirfd, name, IDENTITY_MASK).ok()?;
        self.find(&InodeIds::of(&st))
            .filter(|i| matches!(i.anchor, Anchor::Name(_)))
    }

    /// Before `name` in `dir` is unlinked or renamed over: if `inode` was
    /// recorded there, pins its descriptor (reopening it if needed) and
    /// forgets the place, which is about to lead nowhere or elsewhere.
    /// Returns whether it did, so a failed operation can [`Self::note_place`]
    /// it back.
    pub(crate) fn detach(&self, inode: &Inode, dir: &Arc<Inode>, name: &CStr) -> bool {
        let Anchor::Name(n) = &inode.anchor else {
            return false;
        };
        let here = |p: &Option<Place>| {
            p.as_ref()
                .is_some_and(|p| Arc::ptr_eq(&p.parent, dir) && p.name.as_c_str() == name)
        };
        // The place lock is not held while reopening (re-resolving takes
        // it), so check again before clearing: a lookup may have recorded a
        // newer place meanwhile, which stays.
        if !here(&lock(&n.place)) || self.fd(inode).is_err() {
            return false;
        }
        let mut place = lock(&n.place);
        if !here(&place) {
            return false;
        }
        *place = None;
        true
    }

    /// Adds a lookup reference to the inode `fd` (a fresh `O_PATH`
    /// descriptor with attributes `st`) refers to, entering it if new.
    /// Returns its node id and entry.
    ///
    /// `place` is the directory and name it was found as; without file
    /// handles that makes its descriptor evictable (re-resolved from the
    /// place). An inode without one (an `O_TMPFILE`) keeps its descriptor.
    /// `st` must include [`IDENTITY_MASK`].
    pub(crate) fn insert_or_ref(
        &self,
        fd: OwnedFd,
        st: &libc::statx,
        place: Option<(&Arc<Inode>, &CStr)>,
    ) -> SysResult<(u64, Arc<Inode>)> {
        let ids = InodeIds::of(st);
        let found = {
            let t = read(&self.table);
            if let Some(&id) = t.by_ids.get(&ids)
                && let Some(inode) = t.slab.get(slot(id))
                && inode.pins_identity()
                && inode.try_ref()
            {
                Some((id, inode.clone()))
            } else {
                None
            }
        };
        if let Some((id, inode)) = found {
            if let Some((parent, name)) = place {
                self.note_place(&inode, parent, name);
            }
            return Ok((id, inode));
        }
        let btime = btime_of(st);
        let mut t = write(&self.table);
        if let Some(&id) = t.by_ids.get(&ids)
            && let Some(inode) = t.slab.get(slot(id)).cloned()
        {
            // The entry's descriptor was evicted, so equal numbers may be a
            // reused inode: compare what the anchor can tell.
            let same = inode.pins_identity()
                || match &inode.anchor {
                    Anchor::Handle(h) => h.handle.get().is_some_and(|old| {
                        sys::name_to_handle(fd.as_fd()).is_ok_and(|new| new == *old)
                    }),
                    Anchor::Name(n) => n.btime == btime,
                    Anchor::Fd(_) => false,
                };
            if same && inode.try_ref() {
                drop(t);
                if let Some((parent, name)) = place {
                    self.note_place(&inode, parent, name);
                }
                // Its descriptor was evicted: keep this fresh one.
                self.install(&inode, fd);
                return Ok((id, inode));
            }
        }
        let anchor = match place {
            _ if self.handles => Anchor::Handle(HandleAnchor {
                handle: OnceLock::new(),
                cache: CachedFd::holding(fd),
            }),
            Some((parent, name)) => Anchor::Name(NameAnchor {
                place: Mutex::new(Some(Place {
                    parent: parent.clone(),
                    name: name.to_owned(),
                })),
                btime,
                cache: CachedFd::holding(fd),
            }),
            None => Anchor::Fd(fd),
        };
        let cached = anchor.cache().is_some();
        let kind = u32::from(st.stx_mode) & libc::S_IFMT;
        let inode = Arc::new(Inode::new(ids, kind, anchor, 1));
        let entry = t.slab.vacant_entry();
        let id = entry.key() as u64 + 1;
        entry.insert(inode.clone());
        t.by_ids.insert(ids, id);
        self.entered.fetch_add(1, Ordering::Release);
        drop(t);
        if cached && self.cached.fetch_add(1, Ordering::Relaxed) + 1 > self.max_cached {
            self.evict(false);
        }
        Ok((id, inode))
    }

    /// Opens (`O_PATH`) the inode a file handle (type and bytes) names on
    /// the served filesystem, without allocating; `EOPNOTSUPP` without file
    /// handles.
    pub(crate) fn open_handle(&self, handle_type: i32, bytes: &[u8]) -> SysResult<OwnedFd> {
        let mount = self.mount_fd.as_ref().ok_or(Errno::EOPNOTSUPP)?;
        sys::open_by_raw_handle(mount.as_fd(), handle_type, bytes, libc::O_PATH)
    }

    /// How many inodes have entered the table so far.
    pub(crate) fn entered(&self) -> u64 {
        self.entered.load(Ordering::Acquire)
    }

    /// The node id of the inode with identity `ids`, if the kernel knows it.
    pub(crate) fn node_of(&self, ids: &InodeIds) -> Option<u64> {
        read(&self.table).by_ids.get(ids).copied()
    }

    /// Drops `n` lookup references (saturating); removes the entry when none
    /// are left and returns it then. The root is never removed.
    pub(crate) fn forget(&self, nodeid: u64, n: u64) -> Option<Arc<Inode>> {
        if nodeid == ROOT_ID {
            return None;
        }
        let Ok(inode) = self.get(nodeid) else {
            return None;
        };
        let prev = match inode
            .refcount
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.saturating_sub(n))
            }) {
            Ok(p) | Err(p) => p,
        };
        if prev == 0 || prev > n {
            return None;
        }
        {
            let mut t = write(&self.table);
            if inode.refcount.load(Ordering::Acquire) != 0 {
                return None;
            }
            if t.slab
                .get(slot(nodeid))
                .is_some_and(|cur| Arc::ptr_eq(cur, &inode))
            {
                t.slab.remove(slot(nodeid));
            }
            if t.by_ids.get(&inode.ids) == Some(&nodeid) {
                t.by_ids.remove(&inode.ids);
            }
        }
        if let Some(cache) = inode.anchor.cache() {
            let mut slot = lock(&cache.fd);
            inode.removed.store(true, Ordering::Release);
            if slot.take().is_some() {
                self.cached.fetch_sub(1, Ordering::Relaxed);
            }
        } else {
            inode.removed.store(true, Ordering::Release);
        }
        Some(inode)
    }

    /// Closes cached descriptors of idle inodes (CLOCK: a recently used
    /// inode gets a second chance) until the cache is 1/8 below its bound,
    /// or, with `urgent` (a descriptor limit was hit), at least one 1/8.
    fn evict(&self, urgent: bool) {
        let Ok(_one) = self.evicting.try_lock() else {
            return;
        };
        let target = if urgent {
            self.cached
                .load(Ordering::Relaxed)
                .saturating_sub(self.max_cached / 8 + 1)
        } else {
            self.max_cached - self.max_cached / 8
        };
        let t = read(&self.table);
        let cap = t.slab.capacity();
        if cap == 0 {
            return;
        }
        let mut i = self.hand.load(Ordering::Relaxed) % cap;
        let mut scanned = 0;
        while self.cached.load(Ordering::Relaxed) > target && scanned < 2 * cap {
            i = (i + 1) % cap;
            scanned += 1;
            let Some(inode) = t.slab.get(i) else { continue };
            let Some(cache) = inode.anchor.cache() else {
                continue;
            };
            // A name-anchored inode without a place cannot be found again.
            let placeless = match &inode.anchor {
                Anchor::Name(n) => n.place.try_lock().map_or(true, |p| p.is_none()),
                _ => false,
            };
            if placeless
                || inode.opens.load(Ordering::Acquire) > 0
                || cache.used.swap(false, Ordering::Relaxed)
            {
                continue;
            }
            let Ok(mut slot) = cache.fd.try_lock() else {
                continue;
            };
            // A handle-anchored inode needs its handle before its
            // descriptor goes; one that has none keeps the descriptor.
            if let (Anchor::Handle(h), Some(fd)) = (&inode.anchor, &*slot)
                && h.handle.get().is_none()
            {
                match sys::name_to_handle(fd.as_fd()) {
                    Ok(handle) => {
                        let _ = h.handle.set(handle);
                    }
                    Err(_) => continue,
                }
            }
            if slot.take().is_some() {
                self.cached.fetch_sub(1, Ordering::Relaxed);
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.hand.store(i, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PassthroughConfig, PassthroughFs};
    use super::*;

    /// A passthrough filesystem over a fresh host directory holding `f`.
    fn fs(name: &str, handles: bool) -> (PassthroughFs, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "fuselage-forget-{name}-{handles}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), b"data").unwrap();
        let config = PassthroughConfig {
            file_handles: handles,
            isolate_mounts: false,
            act_as_caller: false,
            raise_fd_limit: false,
            ..PassthroughConfig::new(&dir)
        };
        (PassthroughFs::new(config).unwrap(), dir)
    }

    #[test]
    fn stray_forgets_neither_underflow_nor_corrupt() {
        for handles in [false, true] {
            let (fs, dir) = fs("stray", handles);
            let store = &fs.store;
            // Never looked up: nothing happens.
            for node in [0, 2, 999, u64::MAX] {
                fs.forget_node(node, 1);
                fs.forget_node(node, u64::MAX);
            }
            fs.forget_node(ROOT_ID, u64::MAX);
            assert_eq!(store.len(), 1);
            assert!(store.get(ROOT_ID).is_ok());
            // Looked up twice, forgotten once: still known, count 1.
            let (node, _) = fs.do_lookup(ROOT_ID, c"f").unwrap();
            assert_eq!(fs.do_lookup(ROOT_ID, c"f").unwrap().0, node);
            fs.forget_node(node, 1);
            assert!(store.get(node).is_ok());
            // Forgotten past zero: gone once, the count saturated at zero.
            let inode = store.get(node).unwrap();
            fs.forget_node(node, 5);
            assert_eq!(inode.refcount.load(Ordering::Acquire), 0);
            assert_eq!(store.len(), 1);
            assert!(store.get(node).is_err());
            fs.forget_node(node, 1);
            fs.forget_node(node, u64::MAX);
            assert_eq!(inode.refcount.load(Ordering::Acquire), 0);
            assert_eq!(store.len(), 1);
            // A new lookup starts afresh at one reference.
            let (again, _) = fs.do_lookup(ROOT_ID, c"f").unwrap();
            let fresh = store.get(again).unwrap();
            assert_eq!(fresh.refcount.load(Ordering::Acquire), 1);
            assert_eq!(store.len(), 2);
            fs.forget_node(again, 0);
            assert_eq!(fresh.refcount.load(Ordering::Acquire), 1, "a count of 0");
            drop(fs);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
