//! `passthrough`: a host directory (or one regular file) served over FUSE,
//! confined to it, with zero-copy reads and kernel passthrough.
//!
//! [`PassthroughFs`] answers every request with the corresponding host
//! syscall on the host inode, so what a client sees through the mount is the
//! host's own state: inode numbers, owners, modes, link counts, timestamps,
//! extended attributes and POSIX ACLs, holes, locks.
//!
//! ```no_run
//! use fuselage_backends::passthrough::{PassthroughConfig, PassthroughFs, PassthroughMode};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fs = PassthroughFs::new(PassthroughConfig {
//!     passthrough: PassthroughMode::Auto,
//!     ..PassthroughConfig::new("/srv/data")
//! })?;
//! // Hand the backend a duplicate of the session's /dev/fuse descriptor so
//! // that it can register backing files for kernel passthrough:
//! // fs.set_device_fd(mount.try_clone_fd()?);
//! # let _ = fs; Ok(()) }
//! ```
//!
//! # Confinement
//!
//! The server never resolves a path from the host's root and never follows a
//! symlink itself:
//!
//! - Every known inode is held as an `O_PATH` descriptor (or a kernel file
//!   handle, see below) in the inode table. Every operation
//!   works relative to those descriptors: `*at` calls with `AT_EMPTY_PATH`
//!   and `AT_SYMLINK_NOFOLLOW` on the inode itself, and for names (always a
//!   single component, `/` is refused) `openat2` with `RESOLVE_BENEATH |
//!   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV`, or the
//!   `*at` creation calls, which never follow a final symlink. A host process
//!   swapping a directory for a symlink to `/` while requests are in flight
//!   cannot redirect the server: a held descriptor keeps referring to the
//!   directory it was opened on, and a fresh lookup of the name returns the
//!   symlink itself (the *client's* kernel may follow it, in the client's own
//!   namespace with the client's own rights, as for any symlink).
//! - Reopening an inode for I/O goes through `/proc/self/fd/N` (a magic
//!   link to exactly the inode the descriptor holds, no walk of the tree)
//!   and only for regular files and directories, whose type is checked
//!   first (it cannot change for an inode): opening a FIFO, socket or
//!   device could block or trigger a driver, and a symlink must never be
//!   opened through. Path-only calls (xattrs, chmod on old kernels) use the
//!   same `/proc/self/fd/N` path with the *following* variants, which land
//!   on the inode itself (for a symlink: the link, not its target) without
//!   opening it.
//! - Mounts below DIR are not crossed. When allowed (CAP_SYS_ADMIN), the
//!   server serves a private, detached, *non-recursive* clone of DIR's mount
//!   (open_tree `OPEN_TREE_CLONE`, made `MS_PRIVATE`): in that clone the
//!   mount points below DIR are just the directories of DIR's own filesystem
//!   that they cover, so a mount point appears as its underlying directory
//!   (usually empty) and nothing of the other filesystem is reachable; inode
//!   numbers never collide because everything comes from one filesystem.
//!   Without that privilege the server works on DIR directly and
//!   `RESOLVE_NO_XDEV` refuses to step onto a mount point (`EXDEV`).
//! - An inode the server already holds stays reachable if the host moves it
//!   out of DIR afterwards (a descriptor follows its inode); the server does
//!   not resolve anything through the new location's ancestors. This is the
//!   same trade-off virtiofsd makes: only a host process that can already
//!   move files out of DIR can cause it.
//!
//! # More inodes than descriptors
//!
//! With file handles (the filesystem supports them and the server has
//! CAP_DAC_READ_SEARCH, as root does) every inode is anchored by its handle
//! and its `O_PATH` descriptor is only cached: at most
//! [`PassthroughConfig::max_cached_fds`] (default: half the `RLIMIT_NOFILE`
//! soft limit, which the backend raises to the hard limit first) stay open,
//! a CLOCK sweep closes idle ones, and an evicted inode is reopened with
//! open_by_handle_at on its next request. Handles name the inode itself
//! (with the filesystem's generation), so re-resolving needs no path and
//! cannot be redirected. Inodes with open files are never evicted. Without
//! file handles (unprivileged, or a filesystem such as overlayfs without
//! `nfs_export`) the same bounded cache holds the descriptors, and an evicted
//! inode is found again from the directory and name it was last seen under:
//! openat2 with the confining flags, one component at a time down from the
//! nearest ancestor still open, each step checked against the inode's
//! identity (device, inode number, mount, birth time), `ESTALE` if the host
//! moved or replaced it meanwhile. So the table is not limited by
//! `RLIMIT_NOFILE` either way; see `inode_store` for the details.
//!
//! # Credentials
//!
//! When the server runs as root, requests that create inodes run with the
//! caller's fsuid and fsgid on the worker thread (a guard switches gid then
//! uid with the raw per-thread syscalls and restores them in `Drop`) and
//! with the caller's umask in a per-thread fs context, so the host kernel
//! assigns owner and group (set-gid directories included), applies default
//! ACLs and strips set-gid bits exactly as for a local call. The mount uses
//! `default_permissions` (forced by the kernel once `POSIX_ACL` is agreed),
//! so the kernel has already checked the caller's permissions, with ACLs and
//! all of its supplementary groups; the server's thread has only the
//! fsuid/fsgid. If the host refuses with `EACCES` (the right came from a
//! supplementary group) and `POSIX_ACL` was agreed, the creation is repeated
//! with the server's credentials, only ever making a new inode (`O_EXCL`,
//! and a check that the name still leads to what was made), which is then
//! given to the caller with fchownat, keeping the group of a set-gid parent
//! and restoring set-id bits chown cleared. Everything else runs with the
//! server's credentials. (A server that is not root cannot change owners:
//! new inodes then belong to the server's user, as with any unprivileged
//! FUSE server.)
//!
//! Set-id bits and file capabilities: the mount negotiates
//! `HANDLE_KILLPRIV_V2`, and the server clears set-uid and set-gid bits
//! itself, before the change, on writes, truncates and `O_TRUNC` opens the
//! kernel flags with `KILL_SUIDGID`, on chown, and on FALLOCATE and
//! COPY_FILE_RANGE, with the running kernel's rules and the caller's own
//! groups and capabilities (see `crate::setid`; the host kernel would
//! otherwise judge set-gid by the server's groups). The host removes
//! `security.capability` on every write by itself; for the write-back of a
//! shared mapping (`FUSE_WRITE_CACHE`) the server puts it back, as tmpfs
//! keeps it there. `HANDLE_KILLPRIV_V2` also makes the kernel mark the
//! mount `SB_NOSEC`, so it asks for `security.capability` at most once per
//! inode instead of with a GETXATTR round trip before every write
//! (libfuse's well-known extra request). Writes through kernel passthrough
//! never reach the server, so a file with a set-id bit is never opened with
//! passthrough (see the `file` module).
//!
//! # Speed
//!
//! - Reads of at least [`PassthroughConfig::splice_threshold`] bytes (64 KiB)
//!   answer with a [`FileRange`] clamped to the file size, which the
//!   transport splices from the host file to `/dev/fuse` without copying.
//!   Smaller reads go through a per-thread page-aligned buffer allocated once.
//! - Kernel passthrough ([`PassthroughMode`]): where the kernel offers
//!   `FUSE_PASSTHROUGH` and the server may use it (CAP_SYS_ADMIN in the
//!   initial user namespace), opening a regular file registers the host file
//!   with `FUSE_DEV_IOC_BACKING_OPEN` on the `/dev/fuse` descriptor given by
//!   [`PassthroughFs::set_device_fd`], and the kernel then reads, writes and
//!   mmaps the host file itself: those requests never reach the server. One
//!   backing id per inode, counted by its passthrough opens and closed with
//!   `FUSE_DEV_IOC_BACKING_CLOSE` on the last release.
//!   `max_stack_depth` is 2 by default so that DIR may be on overlayfs (as in
//!   most containers); the cost is that this FUSE mount cannot itself be a
//!   lower layer of an overlayfs. `WRITEBACK_CACHE` is never negotiated (the
//!   kernel disables passthrough with it, and it would hide host changes).
//!
//! # Caching, and a host that changes DIR behind our back
//!
//! The host may change DIR at any time, and the kernel learns about it only
//! when its cached entries and attributes expire. The defaults trade a
//! little speed for freshness: entries and attributes are valid for 1 s
//! ([`PassthroughConfig::entry_ttl`], [`PassthroughConfig::attr_ttl`]),
//! failed lookups are not cached ([`PassthroughConfig::negative_ttl`] 0, so a
//! file created on the host is visible at once), and file data is kept in
//! the page cache across opens only when the file's mtime, ctime and size
//! are unchanged since the kernel last cached it ([`CachePolicy::Auto`]);
//! `AUTO_INVAL_DATA` additionally drops cached pages when a refreshed mtime
//! differs. Writes through the mount are always write-through.
//!
//! For long lifetimes ([`CachePolicy::Always`], TTLs of hours) set
//! [`PassthroughConfig::watch_host`]: the backend then watches the source
//! (a fanotify mark on its filesystem, or inotify on every directory the
//! kernel has looked up) and, from a thread of its own, sends the kernel `INVAL_ENTRY` and `INVAL_INODE`
//! notifications for every host change (see the `watch` module), so changes
//! behind its back are seen within milliseconds.
//!
//! # Single-file sources
//!
//! A regular file as source is served as the root inode itself (mount with
//! `rootmode` S_IFREG, [`PassthroughFs::serves_single_file`]). Nothing else is
//! visible, and nothing is created or staged on the host.
//!
//! # Read-only
//!
//! With [`PassthroughConfig::read_only`] every modifying request answers
//! `EROFS` (the binary also mounts `MS_RDONLY` and the session refuses them
//! before they reach the backend), and the private mount clone is made
//! read-only, so the host kernel refuses writes through the server's
//! descriptors (and passthrough backing files) as well.

pub(crate) mod attr;
pub(crate) mod credentials;
pub(crate) mod dir;
pub(crate) mod file;
pub(crate) mod inode_store;
pub(crate) mod locks;
pub(crate) mod namespace;
pub(crate) mod open_file;
pub(crate) mod proc_fd;
pub(crate) mod stat;
pub(crate) mod sys;
pub(crate) mod watch;
pub(crate) mod xattr;

pub use self::watch::{WatchError, WatchStatus, WatchStatusHandle};

use self::credentials::{FsIds, set_thread_umask};
use self::dir::DirHandle;
use self::inode_store::{HeldFd, Inode, InodeStore, lock};
use self::locks::{LockThread, LockWaiters};
use self::open_file::{HandleTable, OpenFile};
use self::proc_fd::ProcFds;
use self::sys::SysResult;
use fuselage_core::abi::fuse_entry_out;
use fuselage_core::op;
use fuselage_core::reply::*;
use fuselage_core::{
    Errno, Filesystem, InitConfig, InitFlags, KernelInit, Negotiated, RequestHeader,
};
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Whether to use kernel FUSE passthrough for opened regular files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PassthroughMode {
    /// Use it when the kernel offers it and the server may register backing
    /// files; otherwise serve reads and writes (the reason is in
    /// [`PassthroughFs::passthrough_status`]).
    #[default]
    Auto,
    /// Require it: INIT is refused (the connection fails) when it cannot be
    /// used, with the reason in [`PassthroughFs::passthrough_status`].
    On,
    /// Never use it.
    Off,
}

/// When the kernel may keep a file's cached pages across opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CachePolicy {
    /// Never: every open drops cached pages (always fresh, more reads).
    Never,
    /// Only if the file's mtime, ctime and size are unchanged since the
    /// kernel last cached it (`FOPEN_KEEP_CACHE` then).
    #[default]
    Auto,
    /// Always (for sources nobody changes on the host).
    Always,
}

/// How a [`PassthroughFs`] is set up. Build with
/// [`PassthroughConfig::new`] and struct update syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassthroughConfig {
    /// The host directory (or regular file) to serve.
    pub source: PathBuf,
    /// Kernel passthrough. Default: [`PassthroughMode::Auto`].
    pub passthrough: PassthroughMode,
    /// `max_stack_depth` for passthrough (1 or 2). Default 2: DIR may be on
    /// overlayfs, but this mount cannot be a lower layer of an overlayfs.
    pub max_stack_depth: u32,
    /// Refuse every modification with `EROFS`. Default: false.
    pub read_only: bool,
    /// How long the kernel may cache names. Default: 1 s.
    pub entry_ttl: Duration,
    /// How long the kernel may cache attributes. Default: 1 s.
    pub attr_ttl: Duration,
    /// How long the kernel may cache a failed lookup; zero answers `ENOENT`
    /// uncached. Default: 0.
    pub negative_ttl: Duration,
    /// Page cache across opens. Default: [`CachePolicy::Auto`].
    pub cache: CachePolicy,
    /// Watch the source for changes made on the host (fanotify, see
    /// [`watch_fanotify`](Self::watch_fanotify), else inotify on every
    /// directory the kernel has looked up) and push them to the kernel as
    /// invalidations, so long TTLs stay honest; see the `watch` module.
    /// Starts once INIT is done and needs [`PassthroughFs::set_device_fd`];
    /// the outcome is in [`PassthroughFs::watch_status_handle`].
    /// Default: false.
    pub watch_host: bool,
    /// With [`watch_host`](Self::watch_host): try a fanotify mark on the
    /// source's filesystem first (needs CAP_SYS_ADMIN, file handles and a
    /// directory source), falling back to inotify. Default: true.
    pub watch_fanotify: bool,
    /// Reads of at least this many bytes are answered with a file range
    /// (spliced); smaller ones are copied. Default: 64 KiB.
    pub splice_threshold: u32,
    /// Anchor inodes by kernel file handles where permitted (the most
    /// robust way to find an evicted inode again); otherwise, or when
    /// false, by the name each was last found under. Either way the inode
    /// table is not limited by `RLIMIT_NOFILE`. Default: true.
    pub file_handles: bool,
    /// Most cached `O_PATH` descriptors of inodes (the root, inodes with
    /// open files and `O_TMPFILE`s are not counted and never evicted);
    /// `None`: half of the `RLIMIT_NOFILE` soft limit. Default: `None`.
    pub max_cached_fds: Option<usize>,
    /// Raise the soft `RLIMIT_NOFILE` to the hard limit (process-wide) when
    /// the filesystem is created. Default: true.
    pub raise_fd_limit: bool,
    /// When running as root, create inodes as the calling user (see the
    /// module docs). Default: true.
    pub act_as_caller: bool,
    /// Serve a private non-recursive clone of the source's mount, so mounts
    /// below it are never crossed (needs CAP_SYS_ADMIN; falls back to
    /// refusing them with `EXDEV`). Default: true.
    pub isolate_mounts: bool,
    /// Forward POSIX locks as host OFD locks. Default: true.
    pub posix_locks: bool,
    /// Forward flock(2) locks as host flock locks. Default: true.
    pub flock_locks: bool,
    /// Worker threads that may wait for a contended blocking lock at once;
    /// a further waiter gets `EDEADLK` rather than taking the last worker
    /// (the holder needs a free worker to unlock). Set it below the session's
    /// thread count. Default: 1.
    pub max_lock_waiters: usize,
}

impl PassthroughConfig {
    /// The defaults for serving `source`.
    pub fn new(source: impl Into<PathBuf>) -> PassthroughConfig {
        PassthroughConfig {
            source: source.into(),
            passthrough: PassthroughMode::Auto,
            max_stack_depth: 2,
            read_only: false,
            entry_ttl: Duration::from_secs(1),
            attr_ttl: Duration::from_secs(1),
            negative_ttl: Duration::ZERO,
            cache: CachePolicy::Auto,
            watch_host: false,
            watch_fanotify: true,
            splice_threshold: 64 * 1024,
            file_handles: true,
            max_cached_fds: None,
            raise_fd_limit: true,
            act_as_caller: true,
            isolate_mounts: true,
            posix_locks: true,
            flock_locks: true,
            max_lock_waiters: 1,
        }
    }
}

/// Why a [`PassthroughFs`] could not be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassthroughError {
    /// The source cannot be opened.
    Source {
        /// The source path.
        path: PathBuf,
        /// Why.
        errno: Errno,
    },
    /// The source is neither a directory nor a regular file.
    SourceType {
        /// The source path.
        path: PathBuf,
    },
    /// `/proc/self/fd` is not available (procfs must be mounted on /proc).
    Proc(Errno),
}

impl fmt::Display for PassthroughError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassthroughError::Source { path, errno } => write!(
                f,
                "cannot open the source {}: {} (check that it exists and is readable)",
                path.display(),
                std::io::Error::from_raw_os_error(errno.0)
            ),
            PassthroughError::SourceType { path } => write!(
                f,
                "the source {} is neither a directory nor a regular file",
                path.display()
            ),
            PassthroughError::Proc(errno) => write!(
                f,
                "/proc/self/fd is not available ({}): the passthrough backend needs procfs mounted on /proc",
                std::io::Error::from_raw_os_error(errno.0)
            ),
        }
    }
}

impl std::error::Error for PassthroughError {}

/// Whether kernel passthrough is in use, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassthroughStatus {
    /// Passthrough was agreed at INIT.
    pub active: bool,
    /// Why it is not in use ([`PassthroughMode::Auto`] fell back, or
    /// [`PassthroughMode::On`] refused INIT); `None` when active, when
    /// switched off, or before INIT.
    pub reason: Option<String>,
}

/// Counters of a [`PassthroughFs`], for monitoring and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassthroughStats {
    /// Inodes the kernel holds references to (the root included).
    pub inodes: usize,
    /// Open files.
    pub open_files: usize,
    /// Open directories.
    pub open_dirs: usize,
    /// READ requests served.
    pub reads: u64,
    /// READ requests answered with a file range (splice).
    pub spliced_reads: u64,
    /// WRITE requests served.
    pub writes: u64,
    /// Opens answered with kernel passthrough.
    pub passthrough_opens: u64,
    /// Backing ids registered.
    pub backing_opened: u64,
    /// Backing ids closed.
    pub backing_closed: u64,
    /// Backing ids registered and not yet closed.
    pub backing_ids_open: u64,
    /// Whether inodes are anchored by file handles.
    pub file_handles: bool,
    /// Cached (evictable) `O_PATH` descriptors of inodes.
    pub cached_fds: usize,
    /// Their bound.
    pub max_cached_fds: usize,
    /// Descriptors reopened after eviction (from file handles, or by
    /// re-resolving names without them).
    pub handle_reopens: u64,
    /// Descriptors evicted from the cache.
    pub fd_evictions: u64,
    /// Re-resolutions of an evicted inode's recorded name refused with
    /// `ESTALE` (without file handles): the name was gone, or a host
    /// process had put a different inode there.
    pub stale_places: u64,
    /// Whether a private non-recursive mount clone is served.
    pub isolated_mount: bool,
}

#[derive(Debug, Default)]
struct Counters {
    reads: AtomicU64,
    spliced_reads: AtomicU64,
    writes: AtomicU64,
    passthrough_opens: AtomicU64,
    backing_opened: AtomicU64,
    backing_closed: AtomicU64,
}

#[derive(Debug, Default)]
struct KernelPassthrough {
    requested: AtomicBool,
    active: AtomicBool,
    reason: Mutex<Option<String>>,
    warned: AtomicBool,
}

impl KernelPassthrough {
    fn status(&self) -> PassthroughStatus {
        let active = self.active.load(Ordering::Acquire);
        PassthroughStatus {
            active,
            reason: if active {
                None
            } else {
                lock(&self.reason).clone()
            },
        }
    }
}

/// A handle on a [`PassthroughFs`]'s kernel passthrough state that stays
/// usable after the filesystem was moved into a session (for a startup
/// line printed once INIT is agreed).
#[derive(Debug, Clone)]
pub struct PassthroughStatusHandle(Arc<KernelPassthrough>);

impl PassthroughStatusHandle {
    /// The current state; see [`PassthroughFs::passthrough_status`].
    pub fn status(&self) -> PassthroughStatus {
        self.0.status()
    }
}

/// A host directory or file served over FUSE; see the [module docs](self).
pub struct PassthroughFs {
    config: PassthroughConfig,
    pub(crate) store: Arc<InodeStore>,
    watcher: OnceLock<watch::Watcher>,
    watch_status: WatchStatusHandle,
    pub(crate) procs: ProcFds,
    files: HandleTable<OpenFile>,
    dirs: HandleTable<DirHandle>,
    device: OnceLock<OwnedFd>,
    single_file: bool,
    isolated: bool,
    act_as_caller: bool,
    server_ids: (u32, u32),
    kernel_passthrough: Arc<KernelPassthrough>,
    counters: Counters,
    locks: Arc<LockWaiters>,
    /// The thread lock waits are handed to when the transport can defer
    /// (`None` inside: it could not be started).
    lock_thread: OnceLock<Option<LockThread>>,
    shutdown: AtomicBool,
    /// The kernel checks permissions itself (POSIX_ACL agreed, which forces
    /// `default_permissions`): only then may a creation the host refused the
    /// caller be repeated with the server's credentials.
    kernel_checks_permissions: AtomicBool,
}

impl fmt::Debug for PassthroughFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PassthroughFs")
            .field("source", &self.config.source)
            .field("store", &self.store)
            .field("single_file", &self.single_file)
            .field("isolated", &self.isolated)
            .finish_non_exhaustive()
    }
}

impl PassthroughFs {
    /// Opens the source and prepares to serve it.
    pub fn new(config: PassthroughConfig) -> Result<PassthroughFs, PassthroughError> {
        let soft_limit = sys::raise_nofile_limit(config.raise_fd_limit);
        let procs = ProcFds::open().map_err(PassthroughError::Proc)?;
        let source_err = |errno| PassthroughError::Source {
            path: config.source.clone(),
            errno,
        };
        let c_path = CString::new(config.source.as_os_str().as_bytes())
            .map_err(|_| source_err(Errno::EINVAL))?;
        let (root, isolated) = open_source(&c_path, &config).map_err(source_err)?;
        let st = sys::statx(root.as_fd(), 0, stat::STATX_MASK).map_err(source_err)?;
        let kind = u32::from(st.stx_mode) & libc::S_IFMT;
        if kind != libc::S_IFDIR && kind != libc::S_IFREG {
            return Err(PassthroughError::SourceType {
                path: config.source.clone(),
            });
        }
        // open_by_handle_at wants an open (not O_PATH) descriptor on the
        // mount; reopening the root directory or file read-only is safe.
        let mount_fd = config
            .file_handles
            .then(|| procs.reopen(root.as_fd(), kind, libc::O_RDONLY).ok())
            .flatten()
            .filter(|fd| handles_work(root.as_fd(), fd.as_fd()));
        let max_cached = config
            .max_cached_fds
            .unwrap_or((soft_limit / 2).clamp(64, usize::MAX as u64) as usize);
        let store = InodeStore::new(root, &st, mount_fd, max_cached);
        // SAFETY: geteuid/getegid have no preconditions.
        let server_ids = unsafe { (libc::geteuid(), libc::getegid()) };
        Ok(PassthroughFs {
            act_as_caller: config.act_as_caller && server_ids.0 == 0,
            locks: Arc::new(LockWaiters::new(config.max_lock_waiters)),
            lock_thread: OnceLock::new(),
            single_file: kind == libc::S_IFREG,
            isolated,
            store: Arc::new(store),
            watcher: OnceLock::new(),
            watch_status: WatchStatusHandle::default(),
            procs,
            files: HandleTable::new(),
            dirs: HandleTable::new(),
            device: OnceLock::new(),
            server_ids,
            kernel_passthrough: Arc::default(),
            counters: Counters::default(),
            shutdown: AtomicBool::new(false),
            kernel_checks_permissions: AtomicBool::new(false),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PassthroughConfig {
        &self.config
    }

    /// Whether the source is a single regular file (mount with `rootmode`
    /// S_IFREG on a regular-file mountpoint).
    pub fn serves_single_file(&self) -> bool {
        self.single_file
    }

    /// Gives the backend the session's `/dev/fuse` descriptor (a duplicate),
    /// which kernel passthrough needs for the backing-file ioctls. Call it
    /// before serving; later calls are ignored. Without it, passthrough is
    /// not used.
    pub fn set_device_fd(&self, fd: OwnedFd) {
        let _ = self.device.set(fd);
    }

    /// A handle reporting which host watcher serves (decided once INIT is
    /// done; see [`PassthroughConfig::watch_host`]).
    pub fn watch_status_handle(&self) -> WatchStatusHandle {
        self.watch_status.clone()
    }

    /// Directories currently watched for host changes.
    pub fn watched_dirs(&self) -> usize {
        self.watcher.get().map_or(0, watch::Watcher::len)
    }

    /// Starts the host watcher (see [`PassthroughConfig::watch_host`]).
    fn start_watcher(&self, minor: u32) {
        let started = self
            .device
            .get()
            .ok_or(WatchError::NoDevice)
            .and_then(|fd| {
                fd.try_clone()
                    .map_err(|e| WatchError::Thread(e.to_string()))
            })
            .and_then(|dev| {
                watch::Watcher::start(self.store.clone(), dev, minor, self.config.watch_fanotify)
            });
        let status = match started {
            Ok((w, status)) => {
                let _ = self.watcher.set(w);
                status
            }
            Err(e) => WatchStatus::Failed(e.to_string()),
        };
        *lock(&self.watch_status.0) = status;
    }

    /// Drops `n` lookup references of `nodeid`, and its host watch when the
    /// inode leaves the table.
    pub(crate) fn forget_node(&self, nodeid: u64, n: u64) {
        if let Some(inode) = self.store.forget(nodeid, n)
            && let Some(w) = self.watcher.get()
        {
            w.unwatch(nodeid, &inode);
        }
    }

    /// Whether kernel passthrough is in use, and why not (decided at INIT).
    pub fn passthrough_status(&self) -> PassthroughStatus {
        self.kernel_passthrough.status()
    }

    /// A handle reporting [`passthrough_status`](Self::passthrough_status)
    /// that outlives moving the filesystem into a session.
    pub fn passthrough_status_handle(&self) -> PassthroughStatusHandle {
        PassthroughStatusHandle(self.kernel_passthrough.clone())
    }

    /// Checks what can be known before mounting about whether kernel
    /// passthrough can work: the process must have CAP_SYS_ADMIN in the
    /// initial user namespace. (Whether the kernel offers it is known only
    /// at INIT.)
    pub fn passthrough_preflight() -> Result<(), String> {
        const CAP_SYS_ADMIN: u32 = 21;
        if sys::has_effective_cap(CAP_SYS_ADMIN) && in_initial_user_namespace() {
            Ok(())
        } else {
            Err("kernel passthrough needs CAP_SYS_ADMIN in the initial user namespace (run as root on the host)".into())
        }
    }

    /// The filesystem's counters.
    pub fn stats(&self) -> PassthroughStats {
        let c = &self.counters;
        let (handle_reopens, fd_evictions) = self.store.handle_counters();
        let opened = c.backing_opened.load(Ordering::Relaxed);
        let closed = c.backing_closed.load(Ordering::Relaxed);
        PassthroughStats {
            inodes: self.store.len(),
            open_files: self.files.len(),
            open_dirs: self.dirs.len(),
            reads: c.reads.load(Ordering::Relaxed),
            spliced_reads: c.spliced_reads.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            passthrough_opens: c.passthrough_opens.load(Ordering::Relaxed),
            backing_opened: opened,
            backing_closed: closed,
            backing_ids_open: opened.saturating_sub(closed),
            file_handles: self.store.uses_handles(),
            cached_fds: self.store.cached_fds(),
            max_cached_fds: self.store.max_cached_fds(),
            handle_reopens,
            fd_evictions,
            stale_places: self.store.stale_places(),
            isolated_mount: self.isolated,
        }
    }

    // -----------------------------------------------------------------------
    // Shared helpers
    // -----------------------------------------------------------------------

    pub(crate) fn inode(&self, nodeid: u64) -> SysResult<Arc<Inode>> {
        self.store.get(nodeid)
    }

    fn writable(&self) -> SysResult<()> {
        if self.config.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    fn stat(&self, fd: BorrowedFd<'_>) -> SysResult<libc::statx> {
        sys::statx(fd, libc::AT_STATX_SYNC_AS_STAT, stat::STATX_MASK)
    }

    fn entry(&self, nodeid: u64, st: &libc::statx) -> fuse_entry_out {
        let (entry_valid, entry_valid_nsec) = ttl_parts(self.config.entry_ttl);
        let (attr_valid, attr_valid_nsec) = ttl_parts(self.config.attr_ttl);
        fuse_entry_out {
            nodeid,
            generation: 0,
            entry_valid,
            attr_valid,
            entry_valid_nsec,
            attr_valid_nsec,
            attr: stat::attr_of(st),
        }
    }

    /// Resolves `name` in the directory `dir` (confined) and takes a lookup
    /// reference on the inode it names.
    fn lookup_at(
        &self,
        dir: &Arc<Inode>,
        dirfd: BorrowedFd<'_>,
        name: &CStr,
    ) -> SysResult<(u64, fuse_entry_out)> {
        let fd = open_name(dirfd, name)?;
        let (id, _, entry) = self.enter(fd, Some((dir, name)))?;
        Ok((id, entry))
    }

    /// Enters the inode an `O_PATH` descriptor refers to, found as `place`
    /// (directory and name) if it has a name, taking one lookup reference.
    fn enter(
        &self,
        fd: OwnedFd,
        place: Option<(&Arc<Inode>, &CStr)>,
    ) -> SysResult<(u64, Arc<Inode>, fuse_entry_out)> {
        let st = sys::statx(
            fd.as_fd(),
            libc::AT_STATX_SYNC_AS_STAT,
            inode_store::IDENTITY_MASK,
        )?;
        let (id, inode) = self.store.insert_or_ref(fd, &st, place)?;
        if let Some(w) = self.watcher.get()
            && w.per_directory()
            && inode.is_dir()
            && inode.watch.load(Ordering::Relaxed) < 0
            && let Ok(fd) = self.store.fd(&inode)
        {
            // Beyond fs.inotify.max_user_watches the directory is served
            // unwatched; its entries still expire with the TTL.
            let _ = w.watch(id, &inode, fd.as_fd());
        }
        Ok((id, inode, self.entry(id, &st)))
    }

    /// Directory `nodeid` and a descriptor for it, held for a request.
    fn dir_fd(&self, nodeid: u64) -> SysResult<HeldDir> {
        let inode = self.inode(nodeid)?;
        if !inode.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let fd = self.store.hold(inode.clone())?;
        Ok(HeldDir { inode, fd })
    }

    /// Runs `make` (which creates an inode) as the caller: the caller's
    /// umask on this thread and, as root, the caller's fsuid/fsgid. Returns
    /// the result and, when the host refused the caller and the inode was
    /// created with the server's credentials instead, the owner to give it.
    ///
    /// `make` gets `true` when it runs with the server's credentials on the
    /// caller's behalf: it must then only ever create a *new* inode (e.g. add
    /// `O_EXCL`), never open an existing one that would be given away.
    fn create_as<T>(
        &self,
        req: &RequestHeader,
        umask: Option<u32>,
        make: impl Fn(bool) -> SysResult<T>,
    ) -> SysResult<(T, Option<(u32, u32)>)> {
        if let Some(mask) = umask {
            // If the thread cannot have its own umask, the process's applies.
            let _ = set_thread_umask(mask);
        }
        if !self.act_as_caller || (req.uid, req.gid) == self.server_ids {
            return make(false).map(|v| (v, None));
        }
        if let Ok(ids) = FsIds::switch(req.uid, req.gid) {
            let result = make(false);
            drop(ids);
            match result {
                Ok(v) => return Ok((v, None)),
                // The kernel checked permissions (default_permissions) with
                // all the caller's groups; the thread has only its fsgid.
                Err(Errno::EACCES) if self.kernel_checks_permissions.load(Ordering::Acquire) => {}
                Err(e) => return Err(e),
            }
        }
        make(true).map(|v| (v, Some((req.uid, req.gid))))
    }

    /// Gives an inode created with the server's credentials to `owner`: the
    /// owner's uid, and its gid unless the parent is set-gid (then the
    /// inherited group stays); set-id bits of `mode` that chown cleared are
    /// put back.
    fn give_to(
        &self,
        fd: BorrowedFd<'_>,
        parent: BorrowedFd<'_>,
        owner: (u32, u32),
        mode: Option<u32>,
    ) -> SysResult<()> {
        let parent_st = self.stat(parent)?;
        let gid = if u32::from(parent_st.stx_mode) & libc::S_ISGID != 0 {
            u32::MAX
        } else {
            owner.1
        };
        sys::fchown_empty(fd, owner.0, gid)?;
        if let Some(mode) = mode {
            let want = mode & (libc::S_ISUID | libc::S_ISGID);
            if want != 0 {
                let st = self.stat(fd)?;
                let cur = u32::from(st.stx_mode);
                if cur & libc::S_IFMT != libc::S_IFLNK && cur & want != want {
                    self.chmod_inode(fd, (cur & 0o1777) | want)?;
                }
            }
        }
        Ok(())
    }

    /// Why kernel passthrough cannot be used on this connection, if so.
    fn passthrough_blocker(&self, kernel: &KernelInit) -> Option<String> {
        if !kernel.flags.contains(InitFlags::PASSTHROUGH) {
            return Some(
                "the kernel does not offer FUSE_PASSTHROUGH (needs Linux 6.9+ built with CONFIG_FUSE_PASSTHROUGH)"
                    .into(),
            );
        }
        let Some(dev) = self.device.get() else {
            return Some("the backend was not given the /dev/fuse descriptor".into());
        };
        match sys::fstat(dev.as_fd()) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFCHR => {}
            _ => return Some("the FUSE channel is not a /dev/fuse device".into()),
        }
        const CAP_SYS_ADMIN: u32 = 21;
        if !sys::has_effective_cap(CAP_SYS_ADMIN) || !in_initial_user_namespace() {
            return Some(
                "registering backing files needs CAP_SYS_ADMIN in the initial user namespace"
                    .into(),
            );
        }
        None
    }

    /// chmod of the inode an `O_PATH` descriptor refers to.
    fn chmod_inode(&self, fd: BorrowedFd<'_>, mode: u32) -> SysResult<()> {
        match sys::fchmod_empty(fd, mode) {
            Err(Errno::ENOSYS) | Err(Errno::EINVAL) | Err(Errno::EBADF) => {
                sys::chmod_path(proc_fd::ProcPath::new(fd).as_cstr(), mode)
            }
            other => other,
        }
    }
}

/// A directory held for a request: its entry (names found or made in it are
/// recorded against it) and a descriptor.
struct HeldDir {
    inode: Arc<Inode>,
    fd: HeldFd,
}

impl AsFd for HeldDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Opens `name` in `dir` as an `O_PATH` descriptor: confined to `dir`, a
/// final symlink is returned as itself, nothing is followed.
pub(crate) fn open_name(dir: BorrowedFd<'_>, name: &CStr) -> SysResult<OwnedFd> {
    sys::openat2(
        dir,
        name,
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
        sys::RESOLVE_CONFINED,
    )
}

/// Opens the source: a private non-recursive clone of its mount when
/// configured and permitted, the path itself otherwise.
fn open_source(path: &CStr, config: &PassthroughConfig) -> SysResult<(OwnedFd, bool)> {
    if config.isolate_mounts
        && let Ok(fd) = sys::open_tree_clone(path)
    {
        let set = if config.read_only {
            libc::MOUNT_ATTR_RDONLY
        } else {
            0
        };
        if sys::mount_setattr(fd.as_fd(), set, libc::MS_PRIVATE).is_ok() {
            return Ok((fd, true));
        }
    }
    Ok((sys::open_path(path, libc::O_PATH)?, false))
}

/// Whether this process is in the initial user namespace (whose uid map is
/// the full identity map).
pub(crate) fn in_initial_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
        let fields: Vec<&str> = m.split_whitespace().collect();
        fields == ["0", "0", "4294967295"]
    })
}

/// Whether file handles can be made and opened again here (filesystem
/// support and CAP_DAC_READ_SEARCH).
fn handles_work(root: BorrowedFd<'_>, mount_fd: BorrowedFd<'_>) -> bool {
    sys::name_to_handle(root)
        .and_then(|h| sys::open_by_handle(mount_fd, &h, libc::O_PATH))
        .is_ok()
}

/// Refuses names that are not a single path component.
fn check_name(name: &CStr) -> SysResult<()> {
    check_name_bytes(name.to_bytes())
}

fn check_name_bytes(name: &[u8]) -> SysResult<()> {
    if name.is_empty() {
        Err(Errno::ENOENT)
    } else if name.contains(&b'/') {
        Err(Errno::EINVAL)
    } else {
        Ok(())
    }
}

impl Filesystem for PassthroughFs {
    /// Asks for what a faithful, fast passthrough needs (see the module
    /// docs) and decides on kernel passthrough.
    fn init(&self, kernel: &KernelInit, config: &mut InitConfig) -> Result<(), Errno> {
        let mut want = InitFlags::ATOMIC_O_TRUNC
            | InitFlags::DONT_MASK
            | InitFlags::SPLICE_READ
            | InitFlags::HANDLE_KILLPRIV_V2
            | InitFlags::POSIX_ACL
            | InitFlags::SETXATTR_EXT
            | InitFlags::AUTO_INVAL_DATA
            | InitFlags::DO_READDIRPLUS
            | InitFlags::READDIRPLUS_AUTO
            | InitFlags::PARALLEL_DIROPS;
        if self.config.posix_locks {
            want |= InitFlags::POSIX_LOCKS;
        }
        if self.config.flock_locks {
            want |= InitFlags::FLOCK_LOCKS;
        }
        config.wanted |= want;
        config.wanted -= InitFlags::WRITEBACK_CACHE
            | InitFlags::HANDLE_KILLPRIV
            | InitFlags::EXPORT_SUPPORT
            | InitFlags::EXPLICIT_INVAL_DATA;
        config.passthrough = None;
        let kp = &self.kernel_passthrough;
        if self.config.passthrough == PassthroughMode::Off {
            return Ok(());
        }
        match self.passthrough_blocker(kernel) {
            None => {
                config.passthrough = Some(self.config.max_stack_depth.clamp(1, 2));
                config.wanted -= InitFlags::WRITEBACK_CACHE;
                kp.requested.store(true, Ordering::Release);
                Ok(())
            }
            Some(reason) => {
                *lock(&kp.reason) = Some(reason);
                if self.config.passthrough == PassthroughMode::On {
                    Err(Errno::EPROTO)
                } else {
                    Ok(())
                }
            }
        }
    }

    fn init_done(&self, negotiated: &Negotiated) {
        // POSIX_ACL makes the kernel enforce permissions (it implies
        // default_permissions), with ACLs and all supplementary groups.
        self.kernel_checks_permissions
            .store(negotiated.has(InitFlags::POSIX_ACL), Ordering::Release);
        let kp = &self.kernel_passthrough;
        let active = kp.requested.load(Ordering::Acquire) && negotiated.has(InitFlags::PASSTHROUGH);
        kp.active.store(active, Ordering::Release);
        if kp.requested.load(Ordering::Acquire) && !active {
            *lock(&kp.reason) = Some("the kernel did not agree to FUSE_PASSTHROUGH".into());
        }
        if self.config.watch_host {
            self.start_watcher(negotiated.minor);
        }
    }

    fn destroy(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.locks.close();
        if let Some(w) = self.watcher.get() {
            w.signal();
        }
    }

    fn lookup<S: ReplySink>(&self, _req: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        match self.do_lookup(op.parent(), op.name()) {
            Ok((_, e)) => reply.entry(&e),
            Err(Errno::ENOENT) if !self.config.negative_ttl.is_zero() => {
                reply.negative(self.config.negative_ttl)
            }
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &RequestHeader, op: op::Forget) {
        self.forget_node(op.ino(), op.nlookup());
    }

    fn batch_forget(&self, _req: &RequestHeader, op: op::BatchForget<'_>) {
        for n in op.nodes() {
            self.forget_node(n.nodeid, n.nlookup);
        }
    }

    fn getattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Getattr<'_>,
        reply: ReplyAttr<S>,
    ) {
        answer!(reply, self.do_getattr(op.ino(), op.fh()), |st| reply
            .attr(self.config.attr_ttl, &stat::attr_of(&st)))
    }

    fn setattr<S: ReplySink>(&self, req: &RequestHeader, op: op::Setattr<'_>, reply: ReplyAttr<S>) {
        answer!(reply, self.do_setattr(req, op.ino(), &op.attr()), |st| {
            reply.attr(self.config.attr_ttl, &stat::attr_of(&st))
        })
    }

    fn readlink<S: ReplySink>(&self, _req: &RequestHeader, op: op::Readlink, reply: ReplyData<S>) {
        self.do_readlink(op.ino(), reply)
    }

    fn symlink<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Symlink<'_>,
        reply: ReplyEntry<S>,
    ) {
        answer!(
            reply,
            self.do_symlink(req, op.parent(), op.name(), op.target()),
            |e| reply.entry(&e)
        )
    }

    fn mknod<S: ReplySink>(&self, req: &RequestHeader, op: op::Mknod<'_>, reply: ReplyEntry<S>) {
        answer!(
            reply,
            self.do_mknod(
                req,
                op.parent(),
                op.name(),
                op.mode(),
                op.umask(),
                op.rdev()
            ),
            |e| reply.entry(&e)
        )
    }

    fn mkdir<S: ReplySink>(&self, req: &RequestHeader, op: op::Mkdir<'_>, reply: ReplyEntry<S>) {
        answer!(
            reply,
            self.do_mkdir(req, op.parent(), op.name(), op.mode(), op.umask()),
            |e| { reply.entry(&e) }
        )
    }

    fn unlink<S: ReplySink>(&self, _req: &RequestHeader, op: op::Unlink<'_>, reply: ReplyEmpty<S>) {
        answer!(reply, self.do_unlink(op.parent(), op.name(), 0), |()| reply
            .ok())
    }

    fn rmdir<S: ReplySink>(&self, _req: &RequestHeader, op: op::Rmdir<'_>, reply: ReplyEmpty<S>) {
        answer!(
            reply,
            self.do_unlink(op.parent(), op.name(), libc::AT_REMOVEDIR),
            |()| reply.ok()
        )
    }

    fn rename<S: ReplySink>(&self, _req: &RequestHeader, op: op::Rename<'_>, reply: ReplyEmpty<S>) {
        answer!(
            reply,
            self.do_rename(
                op.parent(),
                op.name(),
                op.newparent(),
                op.newname(),
                op.flags()
            ),
            |()| reply.ok()
        )
    }

    fn link<S: ReplySink>(&self, _req: &RequestHeader, op: op::Link<'_>, reply: ReplyEntry<S>) {
        answer!(
            reply,
            self.do_link(op.ino(), op.newparent(), op.newname()),
            |e| reply.entry(&e)
        )
    }

    fn open<S: ReplySink>(&self, req: &RequestHeader, op: op::Open<'_>, reply: ReplyOpen<S>) {
        answer!(
            reply,
            self.do_open(req, op.ino(), op.flags(), op.open_flags()),
            |o| match o.backing {
                Some(id) => reply.opened_passthrough(o.fh, o.flags, id),
                None => reply.opened(o.fh, o.flags),
            }
        )
    }

    fn read<S: ReplySink>(&self, _req: &RequestHeader, op: op::Read<'_>, reply: ReplyData<S>) {
        self.do_read(op.ino(), op.fh(), op.offset(), op.size(), reply)
    }

    fn write<S: ReplySink>(&self, req: &RequestHeader, op: op::Write<'_>, reply: ReplyWrite<S>) {
        answer!(
            reply,
            self.do_write(
                req,
                op.ino(),
                op.fh(),
                op.offset(),
                op.data(),
                op.write_flags()
            ),
            |n| reply.written(n)
        )
    }

    fn statfs<S: ReplySink>(&self, _req: &RequestHeader, op: op::Statfs, reply: ReplyStatfs<S>) {
        answer!(reply, self.do_statfs(op.ino()), |st| reply.statfs(&st))
    }

    fn release<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Release<'_>,
        reply: ReplyEmpty<S>,
    ) {
        self.do_release(op.fh(), op.release_flags());
        reply.ok()
    }

    fn fsync<S: ReplySink>(&self, _req: &RequestHeader, op: op::Fsync<'_>, reply: ReplyEmpty<S>) {
        answer!(
            reply,
            self.do_fsync(op.ino(), op.fh(), op.datasync()),
            |()| reply.ok()
        )
    }

    fn setxattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Setxattr<'_>,
        reply: ReplyEmpty<S>,
    ) {
        answer!(
            reply,
            self.do_setxattr(
                op.ino(),
                op.name(),
                op.value(),
                op.flags(),
                op.setxattr_flags()
            ),
            |()| reply.ok()
        )
    }

    fn getxattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Getxattr<'_>,
        reply: ReplyXattr<S>,
    ) {
        self.do_getxattr(op.ino(), op.name(), op.size(), reply)
    }

    fn listxattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Listxattr<'_>,
        reply: ReplyXattr<S>,
    ) {
        self.do_listxattr(op.ino(), op.size(), reply)
    }

    fn removexattr<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Removexattr<'_>,
        reply: ReplyEmpty<S>,
    ) {
        answer!(reply, self.do_removexattr(op.ino(), op.name()), |()| reply
            .ok())
    }

    fn flush<S: ReplySink>(&self, _req: &RequestHeader, op: op::Flush<'_>, reply: ReplyEmpty<S>) {
        answer!(reply, self.do_flush(op.ino(), op.fh()), |()| reply.ok())
    }

    fn opendir<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Opendir<'_>,
        reply: ReplyOpen<S>,
    ) {
        answer!(reply, self.do_opendir(op.ino(), op.flags()), |fh| reply
            .opened(fh, 0))
    }

    fn readdir<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Readdir<'_>,
        mut reply: ReplyDirectory<'_, S>,
    ) {
        match self.do_readdir(op.ino(), op.fh(), op.offset(), &mut reply) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Readdirplus<'_>,
        mut reply: ReplyDirectory<'_, S>,
    ) {
        match self.do_readdirplus(op.ino(), op.fh(), op.offset(), &mut reply) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Releasedir<'_>,
        reply: ReplyEmpty<S>,
    ) {
        self.do_releasedir(op.fh());
        reply.ok()
    }

    fn fsyncdir<S: ReplySink>(
        &self,
        _req: &RequestHeader,
        op: op::Fsyncdir<'_>,
        reply: ReplyEmpty<S>,
    ) {
        answer!(
            reply,
            self.do_fsyncdir(op.ino(), op.fh(), op.datasync()),
            |()| reply.ok()
        )
    }

    fn getlk<S: ReplySink>(&self, _req: &RequestHeader, op: op::Getlk<'_>, reply: ReplyLock<S>) {
        answer!(reply, self.do_getlk(op.ino(), op.fh(), op.lock()), |lk| {
            reply.lock(&lk)
        })
    }

    fn setlk<S: ReplySink>(&self, req: &RequestHeader, op: op::Setlk<'_>, reply: ReplyEmpty<S>) {
        self.setlk_reply(
            req.unique,
            op.ino(),
            op.fh(),
            op.lock(),
            (op.flock(), op.sleep()),
            reply,
        )
    }

    fn access<S: ReplySink>(&self, req: &RequestHeader, op: op::Access<'_>, reply: ReplyEmpty<S>) {
        answer!(reply, self.do_access(req, op.ino(), op.mask()), |()| reply
            .ok())
    }

    fn create<S: ReplySink>(&self, req: &RequestHeader, op: op::Create<'_>, reply: ReplyCreate<S>) {
        answer!(
            reply,
            self.do_create(
                req,
                op.parent(),
                op.name(),
                op.mode(),
                op.umask(),
                op.flags()
            ),
            |c| match c.open.backing {
                Some(id) => reply.created_passthrough(&c.entry, c.open.fh, c.open.flags, id),
                None => reply.created(&c.entry, c.open.fh, c.open.flags),
            }
        )
    }

    fn interrupt(&self, _req: &RequestHeader, op: op::Interrupt<'_>) {
        self.locks.interrupt(op.unique());
    }

    fn fallocate<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Fallocate<'_>,
        reply: ReplyEmpty<S>,
    ) {
        answer!(
            reply,
            self.do_fallocate(req, op.ino(), op.fh(), op.offset(), op.length(), op.mode()),
            |()| reply.ok()
        )
    }

    fn lseek<S: ReplySink>(&self, _req: &RequestHeader, op: op::Lseek<'_>, reply: ReplyLseek<S>) {
        answer!(
            reply,
            self.do_lseek(op.ino(), op.fh(), op.offset(), op.whence()),
            |o| reply.offset(o)
        )
    }

    fn copy_file_range<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::CopyFileRange<'_>,
        reply: ReplyCopyFormatted<S>,
    ) {
        answer!(reply, self.do_copy_file_range(req, &op), |n| reply
            .copied(n))
    }

    fn syncfs<S: ReplySink>(&self, _req: &RequestHeader, op: op::Syncfs, reply: ReplyEmpty<S>) {
        answer!(reply, self.do_syncfs(op.ino()), |()| reply.ok())
    }

    fn tmpfile<S: ReplySink>(
        &self,
        req: &RequestHeader,
        op: op::Tmpfile<'_>,
        reply: ReplyCreate<S>,
    ) {
        answer!(
            reply,
            self.do_tmpfile(req, op.parent(), op.mode(), op.umask(), op.flags()),
            |c| match c.open.backing {
                Some(id) => reply.created_passthrough(&c.entry, c.open.fh, c.open.flags, id),
                None => reply.created(&c.entry, c.open.fh, c.open.flags),
            }
        )
    }

    fn statx<S: ReplySink>(&self, _req: &RequestHeader, op: op::Statx<'_>, reply: ReplyStatx<S>) {
        answer!(
            reply,
            self.do_statx(op.ino(), op.fh(), op.sx_flags(), op.sx_mask()),
            |st| reply.statx(self.config.attr_ttl, 0, &stat::statx_of(&st))
        )
    }
}

/// The result of an open: handle, `FOPEN_*` flags and backing id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opened {
    pub(crate) fh: u64,
    pub(crate) flags: u32,
    pub(crate) backing: Option<i32>,
}

/// The result of a create: the entry and the open.
pub(crate) struct Created {
    pub(crate) entry: fuse_entry_out,
    pub(crate) open: Opened,
}
