//! Watching the source for changes made on the host, and telling the kernel.
//!
//! With long cache lifetimes ([`PassthroughConfig::watch_host`](super::PassthroughConfig::watch_host),
//! what `--cache always` sets) the kernel would not see a file the host
//! changed until its entry or attributes expire, a day later. The watcher
//! closes that gap with one of two kernel interfaces:
//!
//! - **fanotify** (preferred): one mark on the source's whole filesystem
//!   (`FAN_MARK_FILESYSTEM`, reporting the directory's file handle and the
//!   entry's name, `FAN_REPORT_DFID_NAME`). It needs CAP_SYS_ADMIN, a
//!   directory source, file handles (the inode table's own, so the
//!   directory handle can be opened with open_by_handle_at and matched to
//!   a node id by its identity) and a filesystem that reports them. The
//!   request path does nothing at all for it. Events from outside the
//!   source (the same filesystem) reach the watcher thread too: the first
//!   from a directory costs an open_by_handle_at and a statx, later ones a
//!   hash lookup (answers are remembered until an inode enters the table),
//!   and they are dropped.
//! - **inotify** (where fanotify is refused): a watch on every directory the
//!   kernel has looked up (added when the directory enters the inode table,
//!   removed when the kernel forgets it; the root is watched from the
//!   start).
//!
//! For each host change the watcher writes FUSE notifications to
//! `/dev/fuse`:
//!
//! | event on `name` in a known directory | notification |
//! |---|---|
//! | `IN_CREATE`, `IN_DELETE`, `IN_MOVED_FROM`, `IN_MOVED_TO` | `INVAL_ENTRY (dir, name)` and `INVAL_INODE (dir)` (its size, times and cached listing) |
//! | `IN_MODIFY`, `IN_CLOSE_WRITE` | `INVAL_INODE (child, 0, -1)`: attributes and all cached pages |
//! | `IN_ATTRIB` (and the child of a create or move) | `INVAL_INODE (child, -1, 0)`: attributes |
//! | any event on the watched inode itself | `INVAL_INODE (dir, 0, -1)` |
//!
//! The child's node id is found by its identity (device, inode number,
//! mount) from a `statx` of the name relative to the directory; a name the
//! kernel has never looked up needs nothing beyond the entry invalidation.
//!
//! Notifications are written from the watcher's own thread, never from a
//! worker: the kernel may make an invalidation wait for a request (a locked
//! page, a directory lock held by a request in flight) that only a worker
//! can answer. Changes made through the mount produce events too; the
//! invalidations they cause are redundant but harmless (they change nothing
//! on the host, so they cannot loop), and identical events that arrive
//! together are sent once. The request path allocates nothing for a
//! directory already watched; the first lookup of a directory adds one
//! watch (a syscall and a table insert into pre-reserved room).
//!
//! Limits: inotify reports changes made through any path to the *watched*
//! directories; a file's data change is reported to the directory it was
//! changed through, so a hard link in another directory, or a directory the
//! kernel has not looked up, is not invalidated (the latter needs nothing).
//! When the event queue overflows (`IN_Q_OVERFLOW`), every watched
//! directory and the connection's dentries (`NOTIFY_INC_EPOCH`, 7.44+) are
//! invalidated. The watches count against `fs.inotify.max_user_watches`;
//! beyond it a directory is served without a watch (its entries then
//! expire with the TTL only).

use super::inode_store::{Inode, InodeIds, InodeStore, lock};
use super::proc_fd::ProcPath;
use super::sys;
use fuselage_core::Errno;
use fuselage_core::notify::Notifier;
use fuselage_core::reply::{FileRange, ReplySink};
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::CStr;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The inotify events a watched inode reports.
const MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ATTRIB
    | libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_EXCL_UNLINK;

/// The fanotify events of a filesystem mark (their bits equal inotify's).
const FAN_MASK: u64 = libc::FAN_CREATE
    | libc::FAN_DELETE
    | libc::FAN_MOVED_FROM
    | libc::FAN_MOVED_TO
    | libc::FAN_ATTRIB
    | libc::FAN_MODIFY
    | libc::FAN_CLOSE_WRITE
    | libc::FAN_DELETE_SELF
    | libc::FAN_MOVE_SELF
    | libc::FAN_ONDIR;

/// Size of `struct fanotify_event_metadata`.
const FAN_METADATA: usize = 24;

/// Events that change a directory's names.
const NAMESPACE: u32 = libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO;

/// Events that change a file's data.
const DATA: u32 = libc::IN_MODIFY | libc::IN_CLOSE_WRITE;

/// Events that leave a child's attributes changed.
const CHILD_ATTRS: u32 = libc::IN_ATTRIB | libc::IN_CREATE | libc::IN_MOVED_TO;

/// Size of `struct inotify_event` before its name.
const EVENT_HEADER: usize = 16;

/// Which host watcher serves a passthrough filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WatchStatus {
    /// Not watching ([`PassthroughConfig::watch_host`](super::PassthroughConfig::watch_host)
    /// false, or INIT not yet done).
    #[default]
    Off,
    /// A fanotify mark on the source's filesystem.
    Fanotify,
    /// inotify watches on the directories the kernel has looked up; with
    /// why fanotify was not used, when it was tried.
    Inotify {
        /// Why fanotify was refused.
        fallback: Option<String>,
    },
    /// Watching was asked for and could not start; the reason.
    Failed(String),
}

impl WatchStatus {
    /// The word for the startup line: `fanotify`, `inotify`, `none`.
    pub fn name(&self) -> &'static str {
        match self {
            WatchStatus::Fanotify => "fanotify",
            WatchStatus::Inotify { .. } => "inotify",
            WatchStatus::Off | WatchStatus::Failed(_) => "none",
        }
    }

    /// Why the watcher stepped down (fanotify refused, or no watcher).
    pub fn fallback(&self) -> Option<&str> {
        match self {
            WatchStatus::Inotify { fallback } => fallback.as_deref(),
            WatchStatus::Failed(why) => Some(why),
            WatchStatus::Off | WatchStatus::Fanotify => None,
        }
    }
}

/// Why the watcher could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchError {
    /// No `/dev/fuse` descriptor was given ([`PassthroughFs::set_device_fd`](super::PassthroughFs::set_device_fd)).
    NoDevice,
    /// inotify_init1 failed.
    Inotify(Errno),
    /// The source's root could not be watched.
    Root(Errno),
    /// The wake-up eventfd could not be made.
    Eventfd(Errno),
    /// The thread could not be started.
    Thread(String),
    /// fanotify cannot serve this source (then inotify is tried).
    Fanotify {
        /// What failed: `fanotify_init`, `fanotify_mark`, ...
        step: &'static str,
        /// Why.
        errno: Errno,
    },
    /// fanotify needs a directory source anchored by file handles.
    NoHandles,
}

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = |e: &Errno| std::io::Error::from_raw_os_error(e.0);
        match self {
            WatchError::NoDevice => f.write_str("no /dev/fuse descriptor to send invalidations on"),
            WatchError::Inotify(e) => write!(
                f,
                "inotify is unavailable ({}): raise fs.inotify.max_user_instances",
                os(e)
            ),
            WatchError::Root(e) => write!(
                f,
                "cannot watch the source ({}): raise fs.inotify.max_user_watches",
                os(e)
            ),
            WatchError::Eventfd(e) => write!(f, "eventfd failed ({})", os(e)),
            WatchError::Thread(e) => write!(f, "cannot start the watcher thread: {e}"),
            WatchError::Fanotify { step, errno } => write!(
                f,
                "fanotify: {step} failed ({}; it needs CAP_SYS_ADMIN and a filesystem reporting file handles)",
                os(errno)
            ),
            WatchError::NoHandles => {
                f.write_str("fanotify: the source is a single file or not anchored by file handles")
            }
        }
    }
}

impl std::error::Error for WatchError {}

/// A handle reporting the watcher's state that outlives moving the
/// filesystem into a session (for the startup line).
#[derive(Debug, Clone, Default)]
pub struct WatchStatusHandle(pub(crate) Arc<Mutex<WatchStatus>>);

impl WatchStatusHandle {
    /// A handle that always reports `status` (for a backend that reports a
    /// decision of its own, e.g. an overlay whose layers are not watched).
    pub fn fixed(status: WatchStatus) -> WatchStatusHandle {
        WatchStatusHandle(Arc::new(Mutex::new(status)))
    }

    /// The current state.
    pub fn status(&self) -> WatchStatus {
        lock(&self.0).clone()
    }
}

/// Watch descriptor to node id, shared by the workers (adding and removing
/// watches) and the watcher thread (mapping events).
type WatchTable = Mutex<HashMap<i32, u64>>;

/// The running watcher: the inotify instance, its table and its thread.
pub(crate) struct Watcher {
    kind: Kind,
    /// The inotify or fanotify descriptor.
    inotify: Arc<OwnedFd>,
    table: Arc<WatchTable>,
    wake: Arc<OwnedFd>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("watches", &lock(&self.table).len())
            .finish()
    }
}

/// Which interface reports changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fanotify,
    Inotify,
}

/// A fanotify descriptor with a mark on the filesystem of the root `root`.
fn fanotify(store: &InodeStore) -> Result<OwnedFd, WatchError> {
    let root = store
        .get(super::inode_store::ROOT_ID)
        .map_err(|_| WatchError::NoHandles)?;
    if !store.uses_handles() || !root.is_dir() {
        return Err(WatchError::NoHandles);
    }
    let flags =
        libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK | libc::FAN_REPORT_DFID_NAME;
    // SAFETY: fanotify_init has no memory-safety preconditions; checked.
    let raw = unsafe { libc::fanotify_init(flags, (libc::O_RDONLY | libc::O_CLOEXEC) as u32) };
    if raw < 0 {
        return Err(WatchError::Fanotify {
            step: "fanotify_init",
            errno: errno(),
        });
    }
    // SAFETY: `raw` is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let root_fd = store.fd(&root).map_err(|errno| WatchError::Fanotify {
        step: "opening the root",
        errno,
    })?;
    let path = ProcPath::new(root_fd.as_fd());
    // SAFETY: the path is a NUL-terminated string on the stack.
    let r = unsafe {
        libc::fanotify_mark(
            fd.as_raw_fd(),
            libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
            FAN_MASK,
            libc::AT_FDCWD,
            path.as_cstr().as_ptr(),
        )
    };
    if r < 0 {
        return Err(WatchError::Fanotify {
            step: "fanotify_mark",
            errno: errno(),
        });
    }
    Ok(fd)
}

fn errno() -> Errno {
    Errno(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

impl Watcher {
    /// Starts watching: fanotify if `try_fanotify` and it can serve the
    /// source, else an inotify instance with the root watched; and the
    /// thread that turns events into notifications on `device` (only those
    /// protocol 7.`minor`, the agreed one, knows). Returns the status to
    /// report.
    pub(crate) fn start(
        store: Arc<InodeStore>,
        device: OwnedFd,
        minor: u32,
        try_fanotify: bool,
    ) -> Result<(Watcher, WatchStatus), WatchError> {
        let fan = if try_fanotify {
            fanotify(&store)
        } else {
            Err(WatchError::NoHandles)
        };
        let (kind, fd, status) = match fan {
            Ok(fd) => (Kind::Fanotify, fd, WatchStatus::Fanotify),
            Err(why) => {
                // SAFETY: inotify_init1 has no memory-safety preconditions;
                // the result is checked before use.
                let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
                if raw < 0 {
                    return Err(WatchError::Inotify(errno()));
                }
                let fallback = try_fanotify.then(|| why.to_string());
                // SAFETY: `raw` is a new descriptor that nothing else owns.
                let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                (Kind::Inotify, fd, WatchStatus::Inotify { fallback })
            }
        };
        let inotify = Arc::new(fd);
        // SAFETY: eventfd has no memory-safety preconditions; checked below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(WatchError::Eventfd(errno()));
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let watcher = Watcher {
            kind,
            inotify,
            table: Arc::new(Mutex::new(HashMap::with_capacity(4096))),
            wake,
            thread: Mutex::new(None),
        };
        let root = store
            .get(super::inode_store::ROOT_ID)
            .map_err(WatchError::Root)?;
        let fd = store.fd(&root).map_err(WatchError::Root)?;
        watcher
            .watch(super::inode_store::ROOT_ID, &root, fd.as_fd())
            .map_err(WatchError::Root)?;
        drop(fd);
        let mut thread = WatchThread {
            kind,
            store,
            inotify: watcher.inotify.clone(),
            table: watcher.table.clone(),
            wake: watcher.wake.clone(),
            device,
            minor,
            last: None,
            dirs: HashMap::with_capacity(DIR_CACHE_MAX),
            dirs_at: 0,
        };
        let handle = std::thread::Builder::new()
            .name("fuselage-watch".into())
            .spawn(move || thread.run())
            .map_err(|e| WatchError::Thread(e.to_string()))?;
        *lock(&watcher.thread) = Some(handle);
        Ok((watcher, status))
    }

    /// Watches `inode` (node `nodeid`, a descriptor `fd` for it) unless it
    /// already is. Called on the request path: no allocation unless the
    /// table outgrows its reserved room.
    pub(crate) fn watch(
        &self,
        nodeid: u64,
        inode: &Inode,
        fd: BorrowedFd<'_>,
    ) -> Result<(), Errno> {
        if self.kind == Kind::Fanotify || inode.watch.load(Ordering::Acquire) >= 0 {
            return Ok(());
        }
        let path = ProcPath::new(fd);
        let mut table = lock(&self.table);
        // SAFETY: the path is a NUL-terminated string on the stack.
        let wd = unsafe {
            libc::inotify_add_watch(self.inotify.as_raw_fd(), path.as_cstr().as_ptr(), MASK)
        };
        if wd < 0 {
            return Err(errno());
        }
        table.insert(wd, nodeid);
        inode.watch.store(wd, Ordering::Release);
        Ok(())
    }

    /// Removes the watch of `inode` (node `nodeid`, just forgotten), unless
    /// the same host directory was entered again under another node id.
    pub(crate) fn unwatch(&self, nodeid: u64, inode: &Inode) {
        let wd = inode.watch.swap(-1, Ordering::AcqRel);
        if wd < 0 {
            return;
        }
        let mut table = lock(&self.table);
        if table.get(&wd) == Some(&nodeid) {
            table.remove(&wd);
            // SAFETY: plain syscall on our inotify descriptor.
            unsafe { libc::inotify_rm_watch(self.inotify.as_raw_fd(), wd) };
        }
    }

    /// Whether directories need [`watch`](Self::watch) (inotify).
    pub(crate) fn per_directory(&self) -> bool {
        self.kind == Kind::Inotify
    }

    /// Watches held (inotify).
    pub(crate) fn len(&self) -> usize {
        lock(&self.table).len()
    }

    /// Stops the thread and waits for it. Idempotent.
    pub(crate) fn stop(&self) {
        let Some(handle) = lock(&self.thread).take() else {
            return;
        };
        self.signal();
        let _ = handle.join();
    }

    /// Tells the thread to end without waiting for it (for DESTROY, which a
    /// worker serves: joining there could wait for an invalidation that
    /// waits for a worker). Dropping the watcher joins.
    pub(crate) fn signal(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live local to our eventfd.
        unsafe {
            libc::write(
                self.wake.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes notifications to `/dev/fuse` with writev, remembering the last
/// error (`ENOENT`: the kernel does not hold that node or name, normal;
/// `ENODEV`: the connection is gone).
struct DeviceSink<'a> {
    fd: BorrowedFd<'a>,
    error: Cell<i32>,
}

impl ReplySink for DeviceSink<'_> {
    fn send(&self, parts: &[&[u8]]) {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 4];
        let n = parts.len().min(iov.len());
        for (v, p) in iov.iter_mut().zip(parts) {
            v.iov_base = p.as_ptr() as *mut libc::c_void;
            v.iov_len = p.len();
        }
        // SAFETY: the first `n` iovecs point into `parts`, borrowed for the
        // call; writev only reads them.
        let r = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), n as libc::c_int) };
        self.error.set(if r < 0 { errno().0 } else { 0 });
    }

    fn send_file(&self, _parts: &[&[u8]], _file: FileRange<'_>) {
        // Notifications never carry a file range.
        self.error.set(libc::EINVAL);
    }
}

/// One event, borrowed from the read buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Event<'a> {
    wd: i32,
    mask: u32,
    name: Option<&'a CStr>,
}

/// Splits a buffer of inotify events.
fn events(buf: &[u8]) -> impl Iterator<Item = Event<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let head = buf.get(at..at + EVENT_HEADER)?;
        let word = |i: usize| u32::from_ne_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
        let name_bytes = buf.get(at + EVENT_HEADER..at + EVENT_HEADER + len)?;
        at += EVENT_HEADER + len;
        let name = CStr::from_bytes_until_nul(name_bytes)
            .ok()
            .filter(|n| !n.is_empty());
        Some(Event { wd, mask, name })
    })
}

/// One fanotify event, borrowed from the read buffer: the mask, the
/// directory's file handle (type, bytes) and the entry's name.
#[derive(Clone, Copy)]
struct FanEvent<'a> {
    mask: u64,
    fd: i32,
    dir: Option<(i32, &'a [u8])>,
    name: Option<&'a CStr>,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// Splits a buffer of fanotify events (`FAN_REPORT_DFID_NAME`).
fn fan_events(buf: &[u8]) -> impl Iterator<Item = FanEvent<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = u32_at(buf, at)? as usize;
        let event = buf.get(at..at + len).filter(|_| len >= FAN_METADATA)?;
        at += len;
        let meta_len = usize::from(u16_at(event, 6)?);
        let mask = u64::from_ne_bytes(event.get(8..16)?.try_into().ok()?);
        let fd = u32_at(event, 16)? as i32;
        let mut ev = FanEvent {
            mask,
            fd,
            dir: None,
            name: None,
        };
        let mut info = event.get(meta_len..).unwrap_or_default();
        // Each record: type u8, pad u8, len u16, fsid (8), then a
        // file_handle {bytes u32, type i32, handle} and, for DFID_NAME, the
        // NUL-terminated name.
        while info.len() >= 4 {
            let kind = info[0];
            let rec_len = usize::from(u16_at(info, 2)?);
            let Some(rec) = info.get(..rec_len).filter(|_| rec_len >= 4) else {
                break;
            };
            info = &info[rec_len..];
            if kind != libc::FAN_EVENT_INFO_TYPE_DFID_NAME && kind != libc::FAN_EVENT_INFO_TYPE_DFID
            {
                continue;
            }
            let hb = u32_at(rec, 12)? as usize;
            let htype = u32_at(rec, 16)? as i32;
            let handle = rec.get(20..20 + hb)?;
            ev.dir = Some((htype, handle));
            if kind == libc::FAN_EVENT_INFO_TYPE_DFID_NAME {
                ev.name = rec
                    .get(20 + hb..)
                    .and_then(|n| CStr::from_bytes_until_nul(n).ok())
                    .filter(|n| !n.is_empty() && n.to_bytes() != b".");
            }
        }
        Some(ev)
    })
}

struct WatchThread {
    kind: Kind,
    store: Arc<InodeStore>,
    inotify: Arc<OwnedFd>,
    table: Arc<WatchTable>,
    wake: Arc<OwnedFd>,
    device: OwnedFd,
    /// The agreed protocol minor: no notification newer than it is sent.
    minor: u32,
    /// The last event handled, to send a burst once.
    last: Option<EventKey>,
    /// fanotify: directory handles already resolved (`None`: not a node),
    /// valid while no inode entered the table ([`InodeStore::entered`]);
    /// room reserved once, so remembering allocates nothing.
    dirs: HashMap<DirKey, Option<u64>>,
    dirs_at: u64,
}

/// What identifies an event (watch or handle type, mask, then handle and
/// name bytes), in a fixed buffer: comparing with the last one allocates
/// nothing.
struct EventKey {
    id: i32,
    mask: u32,
    len: usize,
    bytes: [u8; 512],
}

impl EventKey {
    /// The key of these parts; `None` if they do not fit (then the event is
    /// never taken for a repeat).
    fn new(id: i32, mask: u32, parts: &[&[u8]]) -> Option<EventKey> {
        let mut key = EventKey {
            id,
            mask,
            len: 0,
            bytes: [0; 512],
        };
        for part in parts {
            let end = key.len + part.len() + 1;
            key.bytes.get_mut(key.len..end - 1)?.copy_from_slice(part);
            key.len = end;
        }
        Some(key)
    }

    fn same(&self, other: &EventKey) -> bool {
        self.id == other.id
            && self.mask == other.mask
            && self.bytes[..self.len] == other.bytes[..other.len]
    }
}

/// Most directory handles [`WatchThread::dirs`] remembers (the table is
/// cleared when full rather than grown).
const DIR_CACHE_MAX: usize = 1024;

/// A directory's file handle as a fixed-size key: type, length, bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct DirKey {
    handle_type: i32,
    len: u8,
    bytes: [u8; 128],
}

impl DirKey {
    fn new(handle_type: i32, handle: &[u8]) -> Option<DirKey> {
        let mut bytes = [0; 128];
        bytes.get_mut(..handle.len())?.copy_from_slice(handle);
        Some(DirKey {
            handle_type,
            len: handle.len() as u8,
            bytes,
        })
    }
}

impl WatchThread {
    fn run(&mut self) {
        // 64 KiB, aligned for struct inotify_event.
        let mut buf = vec![0u64; 8192];
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.inotify.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a live array of two pollfds.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if r < 0 {
                if errno() == Errno::EINTR {
                    continue;
                }
                return;
            }
            if fds[1].revents != 0 {
                return;
            }
            let bytes = buf.as_mut_slice().as_mut_ptr().cast::<libc::c_void>();
            // SAFETY: `buf` is writable for its full length in bytes.
            let n = unsafe { libc::read(self.inotify.as_raw_fd(), bytes, buf.len() * 8) };
            if n <= 0 {
                continue;
            }
            let len = n as usize;
            let raw: &[u8] = zerocopy::IntoBytes::as_bytes(buf.as_slice());
            self.last = None;
            let alive = match self.kind {
                Kind::Inotify => events(&raw[..len]).all(|ev| self.handle(ev)),
                Kind::Fanotify => fan_events(&raw[..len]).all(|ev| self.handle_fan(ev)),
            };
            if !alive {
                return;
            }
        }
    }

    /// Whether `key` repeats the event just handled (then it is skipped).
    fn repeated(&mut self, key: Option<EventKey>) -> bool {
        if let (Some(last), Some(key)) = (&self.last, &key)
            && last.same(key)
        {
            return true;
        }
        self.last = key;
        false
    }

    /// Handles one inotify event; false when the connection is gone.
    fn handle(&mut self, ev: Event<'_>) -> bool {
        let name = ev.name.map_or(&[][..], |n| n.to_bytes());
        if self.repeated(EventKey::new(ev.wd, ev.mask, &[name])) {
            return true;
        }
        if ev.mask & libc::IN_Q_OVERFLOW != 0 {
            return self.overflow();
        }
        if ev.mask & libc::IN_IGNORED != 0 {
            // The kernel dropped the watch (directory deleted, or removed).
            lock(&self.table).remove(&ev.wd);
            return true;
        }
        let Some(&node) = lock(&self.table).get(&ev.wd) else {
            return true;
        };
        self.apply(node, ev.mask, ev.name)
    }

    /// Handles one fanotify event; false when the connection is gone.
    fn handle_fan(&mut self, ev: FanEvent<'_>) -> bool {
        if ev.fd >= 0 {
            // Not expected with FID reporting; never leak it.
            // SAFETY: the event handed us this descriptor to own.
            drop(unsafe { OwnedFd::from_raw_fd(ev.fd) });
        }
        if ev.mask & libc::FAN_Q_OVERFLOW != 0 {
            return self.overflow();
        }
        let Some((htype, handle)) = ev.dir else {
            return true;
        };
        // FAN_* event bits equal their IN_* counterparts.
        let mask = (ev.mask & (FAN_MASK & !libc::FAN_ONDIR)) as u32;
        let name = ev.name.map_or(&[][..], |n| n.to_bytes());
        if self.repeated(EventKey::new(htype, mask, &[handle, name])) {
            return true;
        }
        let Some(node) = self.dir_node(htype, handle) else {
            return true;
        };
        self.apply(node, mask, ev.name)
    }

    /// The node id of the directory a file handle names, if the kernel
    /// knows it (events from outside the source find none). Answers are
    /// remembered until an inode enters the table, so a busy directory
    /// elsewhere on the filesystem costs a hash lookup per event, not an
    /// open_by_handle_at and a statx. (A remembered node the kernel has
    /// forgotten since only earns an ignored `ENOENT`.)
    fn dir_node(&mut self, htype: i32, handle: &[u8]) -> Option<u64> {
        let now = self.store.entered();
        if now != self.dirs_at || self.dirs.len() >= DIR_CACHE_MAX {
            self.dirs.clear();
            self.dirs_at = now;
        }
        let key = DirKey::new(htype, handle)?;
        if let Some(&node) = self.dirs.get(&key) {
            return node;
        }
        let node = (|| {
            let fd = self.store.open_handle(htype, handle).ok()?;
            let st = sys::statx(fd.as_fd(), 0, super::inode_store::IDENTITY_MASK).ok()?;
            self.store.node_of(&InodeIds::of(&st))
        })();
        self.dirs.insert(key, node);
        node
    }

    /// The event queue overflowed: invalidate everything we know of.
    fn overflow(&self) -> bool {
        let sink = DeviceSink {
            fd: self.device.as_fd(),
            error: Cell::new(0),
        };
        let notify = Notifier::for_minor(&sink, self.minor);
        let mut nodes: Vec<u64> = lock(&self.table).values().copied().collect();
        nodes.push(super::inode_store::ROOT_ID);
        for node in nodes {
            notify.inval_inode(node, 0, -1);
        }
        notify.inc_epoch();
        sink.error.get() != libc::ENODEV
    }

    /// Sends the notifications for a change `mask` (inotify bits) of `name`
    /// in directory `node` (of `node` itself without a name); false when
    /// the connection is gone.
    fn apply(&self, node: u64, mask: u32, name: Option<&CStr>) -> bool {
        let sink = DeviceSink {
            fd: self.device.as_fd(),
            error: Cell::new(0),
        };
        let notify = Notifier::for_minor(&sink, self.minor);
        let Some(name) = name else {
            notify.inval_inode(node, 0, -1);
            return sink.error.get() != libc::ENODEV;
        };
        if mask & NAMESPACE != 0 {
            let _ = notify.inval_entry(node, name.to_bytes(), 0);
            if sink.error.get() == libc::ENODEV {
                return false;
            }
            notify.inval_inode(node, 0, -1);
        }
        if mask & (DATA | CHILD_ATTRS) != 0
            && let Some(child) = self.child(node, name)
        {
            if mask & DATA != 0 {
                notify.inval_inode(child, 0, -1);
            } else {
                notify.inval_inode(child, -1, 0);
            }
        }
        sink.error.get() != libc::ENODEV
    }

    /// The node id of `name` in directory `node`, if the kernel knows it.
    fn child(&self, node: u64, name: &CStr) -> Option<u64> {
        let dir = self.store.get(node).ok()?;
        let fd = self.store.fd(&dir).ok()?;
        let st = sys::statx_at(fd.as_fd(), name, super::inode_store::IDENTITY_MASK).ok()?;
        self.store.node_of(&InodeIds::of(&st))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(wd: i32, mask: u32, name: &[u8], pad: usize) -> Vec<u8> {
        let len = name.len() + pad;
        let mut v = Vec::new();
        v.extend_from_slice(&wd.to_ne_bytes());
        v.extend_from_slice(&mask.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&(len as u32).to_ne_bytes());
        v.extend_from_slice(name);
        v.resize(v.len() + pad, 0);
        v
    }

    #[test]
    fn splits_events_with_and_without_names() {
        let mut buf = event(3, libc::IN_CREATE, b"a.txt", 11);
        buf.extend(event(1, libc::IN_ATTRIB, b"", 0));
        buf.extend(event(4, libc::IN_MODIFY, b"longer-name", 5));
        let got: Vec<_> = events(&buf)
            .map(|e| (e.wd, e.mask, e.name.map(|n| n.to_bytes().to_vec())))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, libc::IN_CREATE, Some(b"a.txt".to_vec())),
                (1, libc::IN_ATTRIB, None),
                (4, libc::IN_MODIFY, Some(b"longer-name".to_vec())),
            ]
        );
        // A truncated tail is ignored, not misread.
        assert_eq!(events(&buf[..buf.len() - 3]).count(), 2);
    }

    #[test]
    fn splits_fanotify_events() {
        let mut buf = Vec::new();
        let handle = [7u8; 8];
        let name = b"file\0\0\0\0";
        let rec_len = 4 + 8 + 8 + handle.len() + name.len();
        let len = FAN_METADATA + rec_len;
        buf.extend_from_slice(&(len as u32).to_ne_bytes());
        buf.extend_from_slice(&[3, 0]);
        buf.extend_from_slice(&(FAN_METADATA as u16).to_ne_bytes());
        buf.extend_from_slice(&(libc::FAN_CREATE | libc::FAN_ONDIR).to_ne_bytes());
        buf.extend_from_slice(&(-1i32).to_ne_bytes());
        buf.extend_from_slice(&42i32.to_ne_bytes());
        buf.extend_from_slice(&[libc::FAN_EVENT_INFO_TYPE_DFID_NAME, 0]);
        buf.extend_from_slice(&(rec_len as u16).to_ne_bytes());
        buf.extend_from_slice(&[0; 8]);
        buf.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        buf.extend_from_slice(&1i32.to_ne_bytes());
        buf.extend_from_slice(&handle);
        buf.extend_from_slice(name);
        // An overflow event: metadata only.
        buf.extend_from_slice(&(FAN_METADATA as u32).to_ne_bytes());
        buf.extend_from_slice(&[3, 0]);
        buf.extend_from_slice(&(FAN_METADATA as u16).to_ne_bytes());
        buf.extend_from_slice(&libc::FAN_Q_OVERFLOW.to_ne_bytes());
        buf.extend_from_slice(&(-1i32).to_ne_bytes());
        buf.extend_from_slice(&0i32.to_ne_bytes());
        let got: Vec<_> = fan_events(&buf).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].mask, libc::FAN_CREATE | libc::FAN_ONDIR);
        assert_eq!(got[0].fd, -1);
        assert_eq!(got[0].dir, Some((1, &handle[..])));
        assert_eq!(got[0].name, Some(c"file"));
        assert_eq!(got[1].mask, libc::FAN_Q_OVERFLOW);
        assert!(got[1].dir.is_none());
        assert_eq!(fan_events(&buf[..len - 1]).count(), 0);
    }

    #[test]
    fn fanotify_bits_are_inotify_bits() {
        assert_eq!(libc::FAN_CREATE as u32, libc::IN_CREATE);
        assert_eq!(libc::FAN_DELETE as u32, libc::IN_DELETE);
        assert_eq!(libc::FAN_MOVED_FROM as u32, libc::IN_MOVED_FROM);
        assert_eq!(libc::FAN_MOVED_TO as u32, libc::IN_MOVED_TO);
        assert_eq!(libc::FAN_ATTRIB as u32, libc::IN_ATTRIB);
        assert_eq!(libc::FAN_MODIFY as u32, libc::IN_MODIFY);
        assert_eq!(libc::FAN_CLOSE_WRITE as u32, libc::IN_CLOSE_WRITE);
        assert_eq!(libc::FAN_DELETE_SELF as u32, libc::IN_DELETE_SELF);
        assert_eq!(libc::FAN_MOVE_SELF as u32, libc::IN_MOVE_SELF);
    }

    #[test]
    fn event_keys_compare_without_allocating() {
        let a = EventKey::new(3, 2, &[b"h", b"name"]).unwrap();
        assert!(a.same(&EventKey::new(3, 2, &[b"h", b"name"]).unwrap()));
        assert!(!a.same(&EventKey::new(3, 2, &[b"hn", b"ame"]).unwrap()));
        assert!(!a.same(&EventKey::new(3, 8, &[b"h", b"name"]).unwrap()));
        assert!(EventKey::new(1, 1, &[&[0u8; 600]]).is_none());
    }

    #[test]
    fn status_words() {
        assert_eq!(WatchStatus::Fanotify.name(), "fanotify");
        assert_eq!(WatchStatus::Inotify { fallback: None }.name(), "inotify");
        assert_eq!(WatchStatus::Failed("x".into()).name(), "none");
        assert_eq!(
            WatchError::NoDevice.to_string(),
            "no /dev/fuse descriptor to send invalidations on"
        );
    }
}
