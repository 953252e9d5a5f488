//! `fuselage mount`: choose a backend and transport, mount, serve, unmount.

use crate::cli::{CacheChoice, MountArgs, PassthroughChoice, TransportChoice};
use crate::log;
use crate::registry::Backend;
use crate::transport::{Choice, ServeInfo as UringServeInfo, UringConfig};
use fuselage_backends::memfs::{MemFs, MemFsConfig};
use fuselage_backends::passthrough::{
    CachePolicy, PassthroughConfig, PassthroughFs, PassthroughStatusHandle, WatchStatusHandle,
};
use fuselage_backends::router::Router;
use fuselage_backends::stock::{StockFs, StockRoot};
use fuselage_core::Filesystem;
use fuselage_linux::{Channel, Mount, MountOptions};
use fuselage_transport_blocking::SessionEnd;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why `fuselage mount` could not start or serve.
#[derive(Debug)]
pub enum ServeError {
    /// The options cannot work together.
    Options(String),
    /// Mounting failed.
    Mount(fuselage_linux::MountError),
    /// The channel could not be used.
    Channel(io::Error),
    /// Serving failed.
    Session(fuselage_transport_blocking::SessionError),
    /// Serving over io_uring failed, or a forced io_uring transport turned
    /// out unavailable at INIT.
    Transport(crate::transport::ServeError),
    /// Signal handling could not be set up.
    Signals(io::Error),
    /// The overlay's layers cannot be used (exit status 2, like a usage
    /// error: nothing was mounted).
    Layers(String),
    /// `--sandbox`: the server could not confine itself.
    Sandbox(crate::sandbox::SandboxError),
    /// A registered backend accepted the mount but could not start.
    Backend {
        /// The name it was registered under.
        backend: String,
        /// What went wrong.
        error: crate::registry::ClaimError,
    },
}

impl ServeError {
    /// The process exit status for this error: 2 for what is wrong before
    /// anything is mounted (options, paths, a backend that cannot start),
    /// 1 for failures of mounting or serving.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::Options(_) | ServeError::Layers(_) | ServeError::Backend { .. } => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Options(s) => f.write_str(s),
            ServeError::Mount(e) => write!(f, "{e}"),
            ServeError::Channel(e) => write!(f, "cannot use the FUSE channel: {e}"),
            ServeError::Session(e) => write!(f, "{e}"),
            ServeError::Transport(e) => write!(f, "{e}"),
            ServeError::Signals(e) => write!(f, "cannot set up signal handling: {e}"),
            ServeError::Backend { backend, error } => write!(f, "backend {backend}: {error}"),
            ServeError::Layers(s) => f.write_str(s),
            ServeError::Sandbox(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// Capacity of the in-memory filesystem when `--size` is not given: a quarter
/// of physical memory.
pub fn default_memfs_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if pages > 0 && page > 0 {
        (pages as u64 * page as u64) / 4
    } else {
        1 << 30
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and so in every
/// thread it starts later) so that one thread can take them with sigwait.
fn block_signals() -> io::Result<libc::sigset_t> {
    // SAFETY: the sigset is initialized by sigemptyset before use, and
    // pthread_sigmask gets valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        let r = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(set)
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    loop {
        // SAFETY: `set` is a valid initialized sigset and `sig` a valid out
        // pointer.
        let r = unsafe { libc::sigwait(set, &mut sig) };
        if r == 0 {
            return sig;
        }
    }
}

/// Runs `fuselage mount` to completion with the stock backends (see
/// [`Registry`](crate::registry::Registry) to add others). Returns once the
/// filesystem is unmounted (or the channel's peer closed it).
pub fn run(args: &MountArgs) -> Result<(), ServeError> {
    run_with(args, || {})
}

/// [`run`], calling `on_ready` once the mount is live (after the startup
/// line and the service manager's `READY=1`): the mount.fuse form lets its
/// waiting parent exit there.
pub fn run_with(args: &MountArgs, on_ready: impl FnOnce()) -> Result<(), ServeError> {
    crate::registry::Registry::new().serve_with(args, on_ready)
}

/// What every mount does before its backend is chosen: debug output, and
/// the check that a forced io_uring transport can work here.
pub(crate) fn prepare(args: &MountArgs) -> Result<(), ServeError> {
    if args.debug || log::enabled(log::Level::Debug) {
        crate::debug::enable();
    }
    // SAFETY: geteuid has no preconditions.
    if args.sandbox_namespace && unsafe { libc::geteuid() } != 0 {
        return Err(ServeError::Options(
            "--sandbox-namespace needs root (CAP_SYS_ADMIN, in the initial or a user namespace) \
             to make a private mount namespace"
                .into(),
        ));
    }
    if args.sandbox_namespace && (!args.auto_unmount || is_pid1()) {
        return Err(ServeError::Options(
            "--sandbox-namespace: a server in a private mount namespace cannot unmount its mount, \
             which needs the auto-unmount watchdog: drop --no-auto-unmount (and, as PID 1, \
             where the watchdog dies with the server, run without --sandbox-namespace)"
                .into(),
        ));
    }
    if args.sandbox_namespace && !root_is_a_mount() {
        return Err(ServeError::Options(
            "--sandbox-namespace: the root directory is not a mount point (inside a chroot?), \
             so a private namespace cannot make another root of it (pivot_root): run from a root \
             that is a mount, or use --sandbox alone"
                .into(),
        ));
    }
    transport_preflight(args)
}

/// Whether `/` is the root of a mount (`STATX_ATTR_MOUNT_ROOT`); true where
/// the kernel cannot say (before 5.8), leaving the refusal to `pivot_root`.
fn root_is_a_mount() -> bool {
    // SAFETY: an all-zero statx is a valid value for statx to overwrite.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid statx to write.
    let rc = unsafe { libc::statx(libc::AT_FDCWD, c"/".as_ptr(), 0, 0, &mut st) };
    let known = u64::from(libc::STATX_ATTR_MOUNT_ROOT as u32);
    rc != 0 || st.stx_attributes_mask & known == 0 || st.stx_attributes & known != 0
}

/// The stock backends' choice for a mount no registered backend claimed:
/// an overlay for `--lower`, the host passthrough for `--source`, else the
/// in-memory filesystem.
pub(crate) fn stock_backend(args: &MountArgs) -> Result<Backend, ServeError> {
    if !args.lower.is_empty() {
        return crate::serve_overlay::overlay_backend(args);
    }
    if let Some(source) = &args.source {
        return passthrough_backend(args, source);
    }
    if args.passthrough == PassthroughChoice::On {
        return Err(ServeError::Options(
            "--passthrough on needs --source: the in-memory filesystem has no host files to pass through".into(),
        ));
    }
    let size = args.size.unwrap_or_else(default_memfs_size);
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let fs = MemFs::new(memfs_cache(
        args.cache,
        MemFsConfig {
            capacity_bytes: size,
            uid,
            gid,
            ..MemFsConfig::default()
        },
    ));
    stock_routed(args, "memfs", StockRoot::Stock(StockFs::Memory(fs)))
}

/// `--passthrough on` for host files (`--source`, overlay layers): refused
/// before mounting where this kernel cannot do it.
pub(crate) fn passthrough_on_preflight(args: &MountArgs) -> Result<(), ServeError> {
    if args.passthrough == PassthroughChoice::On {
        PassthroughFs::passthrough_preflight()
            .map_err(|why| ServeError::Options(format!("--passthrough on: {why}")))?;
    }
    Ok(())
}

/// `--source PATH`: a host directory or file through the passthrough
/// backend (`--passthrough` and `--read-only` apply to it).
fn passthrough_backend(args: &MountArgs, source: &Path) -> Result<Backend, ServeError> {
    passthrough_on_preflight(args)?;
    // An empty root (init container, bare chroot) has no /proc; the backend
    // needs /proc/self/fd.
    match crate::procfs::ensure_mounted() {
        Ok(crate::procfs::ProcState::Mounted) => log!(Info, "mounted procfs on /proc"),
        Ok(crate::procfs::ProcState::Present) => {}
        Err(e) => {
            return Err(ServeError::Options(format!(
                "--source needs /proc (the backend reaches its files through /proc/self/fd); it is not mounted and mounting it failed: {e}: mount -t proc proc /proc"
            )));
        }
    }
    let fs = PassthroughFs::new(passthrough_cache(
        args.cache,
        PassthroughConfig {
            passthrough: args.passthrough.mode(),
            read_only: args.read_only,
            max_lock_waiters: args.max_lock_waiters(),
            watch_fanotify: !args.watch_inotify_only,
            ..PassthroughConfig::new(source)
        },
        true,
    ))
    .map_err(|e| ServeError::Options(format!("--source: {e}")))?;
    if fs.serves_single_file() && !is_fd_path(&args.mountpoint) && !args.mountpoint.is_file() {
        return Err(ServeError::Options(format!(
            "--source {} is a regular file, so MOUNTPOINT must be a regular file too ({} is not)",
            source.display(),
            args.mountpoint.display()
        )));
    }
    stock_routed(args, "passthrough", StockRoot::Stock(StockFs::Host(fs)))
}

/// A stock root as the binary serves it: as it is, or with the `--route`s
/// over it (`backend=router`), as one [`StockRoot`] either way.
pub(crate) fn stock_routed(
    args: &MountArgs,
    name: &str,
    root: StockRoot,
) -> Result<Backend, ServeError> {
    if args.routes.is_empty() {
        return Ok(Backend::stock(name, root));
    }
    let router = crate::routes::build(args, root)?;
    Ok(Backend::stock(
        "router",
        StockRoot::Routed(Box::new(router)),
    ))
}

/// Test-only: the environment variable (`FUSELAGE_TEST_WATCH_INOTIFY=1`)
/// from which the `fuselage` binary sets [`MountArgs::watch_inotify_only`].
pub const INOTIFY_ENV: &str = "FUSELAGE_TEST_WATCH_INOTIFY";

/// How long `--cache always` lets the kernel cache entries and attributes.
pub const CACHE_ALWAYS_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// `--cache` applied to a passthrough configuration: `never` caches
/// nothing (TTLs 0, pages dropped at every open), `auto` keeps the
/// backend's defaults, `always` caches for [`CACHE_ALWAYS_TTL`] (negative
/// lookups too), keeps pages across opens and, with `watch`, watches the
/// host for changes (only where the backend's node ids reach the kernel
/// unchanged: a `--source` root, not overlay layers or routes).
pub fn passthrough_cache(
    cache: CacheChoice,
    config: PassthroughConfig,
    watch: bool,
) -> PassthroughConfig {
    match cache {
        CacheChoice::Auto => config,
        CacheChoice::Never => PassthroughConfig {
            entry_ttl: Duration::ZERO,
            attr_ttl: Duration::ZERO,
            negative_ttl: Duration::ZERO,
            cache: CachePolicy::Never,
            ..config
        },
        CacheChoice::Always => PassthroughConfig {
            entry_ttl: CACHE_ALWAYS_TTL,
            attr_ttl: CACHE_ALWAYS_TTL,
            negative_ttl: CACHE_ALWAYS_TTL,
            cache: CachePolicy::Always,
            watch_host: watch,
            ..config
        },
    }
}

/// `--cache` applied to the in-memory filesystem, which is authoritative
/// (nothing changes behind it): `never` sets the TTLs to 0, `always` to
/// [`CACHE_ALWAYS_TTL`]; pages are kept across opens in every mode, since
/// they cannot go stale.
pub fn memfs_cache(cache: CacheChoice, config: MemFsConfig) -> MemFsConfig {
    match cache {
        CacheChoice::Auto => config,
        CacheChoice::Never => MemFsConfig {
            entry_ttl: Duration::ZERO,
            attr_ttl: Duration::ZERO,
            ..config
        },
        CacheChoice::Always => MemFsConfig {
            entry_ttl: CACHE_ALWAYS_TTL,
            attr_ttl: CACHE_ALWAYS_TTL,
            ..config
        },
    }
}

/// The startup line's ` cache=MODE` word (nothing for `auto`); with
/// `always`, which host watcher serves, and why none if it stepped down
/// (a reason for the line's `(fallback: ...)`).
fn cache_word(cache: CacheChoice, watch: Option<&WatchStatusHandle>) -> (String, Option<String>) {
    match (cache, watch.map(WatchStatusHandle::status)) {
        (CacheChoice::Auto, _) => (String::new(), None),
        (CacheChoice::Always, Some(st)) => (
            format!(" cache=always(watch={})", st.name()),
            st.fallback().map(|why| format!("watch: {why}")),
        ),
        (mode, _) => (format!(" cache={}", mode.name()), None),
    }
}

/// What serving needs from a backend beyond [`Filesystem`]. Every method
/// has a default, so a backend of one's own needs only `impl Served for
/// MyFs {}` to be served by a [`Registry`](crate::registry::Registry).
pub trait Served: Filesystem + Send + Sync + 'static {
    /// Whether the mountpoint must be a regular file (a single-file source).
    fn expect_file(&self) -> bool {
        false
    }
    /// Takes a duplicate of the `/dev/fuse` descriptor (for kernel
    /// passthrough's backing-file ioctls).
    fn attach_device(&self, _fd: OwnedFd) {}
    /// Kernel passthrough state for the startup line, readable after the
    /// filesystem moved into the session.
    fn passthrough_handle(&self) -> Option<PassthroughStatusHandle> {
        None
    }
    /// Words the startup line adds after `passthrough=` (each with its
    /// leading space), computed once the mount is live.
    fn startup_words(&self) -> Box<dyn Fn() -> String + Send> {
        Box::new(String::new)
    }
    /// The host watcher's state (`--cache always`), for the startup line.
    fn watch_handle(&self) -> Option<WatchStatusHandle> {
        None
    }
    /// Whether the backend works on host files (`--sandbox` then allows
    /// the host file syscalls and the capabilities to act as the caller).
    /// A backend of one's own that only works in memory may say `false`.
    fn uses_host_files(&self) -> bool {
        true
    }
}

impl Served for MemFs {
    fn uses_host_files(&self) -> bool {
        false
    }
}

/// Routes as the binary serves them (a host route's descriptor and kernel
/// passthrough state).
impl Served for StockFs {
    fn expect_file(&self) -> bool {
        self.as_host().is_some_and(|h| h.expect_file())
    }
    fn attach_device(&self, fd: OwnedFd) {
        if let Some(h) = self.as_host() {
            h.attach_device(fd)
        }
    }
    fn passthrough_handle(&self) -> Option<PassthroughStatusHandle> {
        self.as_host().and_then(|h| h.passthrough_handle())
    }
    fn watch_handle(&self) -> Option<WatchStatusHandle> {
        self.as_host().and_then(|h| h.watch_handle())
    }
    fn uses_host_files(&self) -> bool {
        self.as_host().is_some()
    }
}

/// Every stock mount as the binary serves it: one type, so the transports
/// and the dispatcher are compiled once for all of them.
impl Served for StockRoot {
    fn expect_file(&self) -> bool {
        match self {
            StockRoot::Stock(fs) => fs.expect_file(),
            StockRoot::Overlay(fs) => fs.expect_file(),
            StockRoot::Routed(fs) => fs.expect_file(),
        }
    }
    fn attach_device(&self, fd: OwnedFd) {
        match self {
            StockRoot::Stock(fs) => fs.attach_device(fd),
            StockRoot::Overlay(fs) => fs.attach_device(fd),
            StockRoot::Routed(fs) => Served::attach_device(fs.as_ref(), fd),
        }
    }
    fn passthrough_handle(&self) -> Option<PassthroughStatusHandle> {
        match self {
            StockRoot::Stock(fs) => fs.passthrough_handle(),
            StockRoot::Overlay(fs) => fs.passthrough_handle(),
            StockRoot::Routed(fs) => fs.passthrough_handle(),
        }
    }
    fn startup_words(&self) -> Box<dyn Fn() -> String + Send> {
        match self {
            StockRoot::Stock(fs) => fs.startup_words(),
            StockRoot::Overlay(fs) => fs.startup_words(),
            StockRoot::Routed(fs) => fs.startup_words(),
        }
    }
    fn watch_handle(&self) -> Option<WatchStatusHandle> {
        match self {
            StockRoot::Stock(fs) => fs.watch_handle(),
            StockRoot::Overlay(fs) => fs.watch_handle(),
            StockRoot::Routed(fs) => fs.watch_handle(),
        }
    }
    fn uses_host_files(&self) -> bool {
        match self {
            StockRoot::Stock(fs) => fs.uses_host_files(),
            StockRoot::Overlay(_) => true,
            StockRoot::Routed(fs) => fs.uses_host_files(),
        }
    }
}

impl Served for PassthroughFs {
    fn expect_file(&self) -> bool {
        self.serves_single_file()
    }
    fn attach_device(&self, fd: OwnedFd) {
        self.set_device_fd(fd)
    }
    fn passthrough_handle(&self) -> Option<PassthroughStatusHandle> {
        Some(self.passthrough_status_handle())
    }
    fn watch_handle(&self) -> Option<WatchStatusHandle> {
        self.config().watch_host.then(|| self.watch_status_handle())
    }
}

/// Serves `fs` as it is, or as the root of a [`Router`] with the
/// `--route`s placed over it.
pub(crate) fn serve_routed<F: Served>(
    args: &MountArgs,
    fs: F,
    backend: &str,
    on_ready: &mut dyn FnMut(),
) -> Result<(), ServeError> {
    if args.routes.is_empty() {
        return serve_fs(args, fs, backend, on_ready);
    }
    let router = crate::routes::build(args, fs)?;
    serve_fs(args, router, "router", on_ready)
}

pub(crate) fn serve_fs<F: Served>(
    args: &MountArgs,
    fs: F,
    backend: &str,
    on_ready: &mut dyn FnMut(),
) -> Result<(), ServeError> {
    let sigset = block_signals().map_err(ServeError::Signals)?;
    let threads = args.worker_threads();
    let fd_mode = is_fd_path(&args.mountpoint);
    let mut aftermath = "the connection ends";
    let (mount, fd): (Option<Arc<Mutex<Mount>>>, OwnedFd) = if fd_mode {
        let m = Mount::from_fd_path(&args.mountpoint).map_err(ServeError::Mount)?;
        let fd = m.fd().try_clone_to_owned().map_err(ServeError::Channel)?;
        (None, fd)
    } else {
        let defaults = MountOptions::default();
        let opts = MountOptions {
            fs_name: args.fs_name.clone().unwrap_or(defaults.fs_name),
            subtype: Some(args.subtype.clone().unwrap_or_else(|| backend.to_string())),
            allow_other: args.allow_other,
            read_only: args.read_only,
            // As PID 1 of a PID namespace (an init container) the
            // watchdog cannot help: when PID 1 dies the kernel kills every
            // process of the namespace, the watchdog with it.
            auto_unmount: args.auto_unmount && !is_pid1(),
            expect_file: fs.expect_file(),
            max_read: args.max_read,
            flags: args.flags,
            ..defaults
        };
        aftermath = if opts.auto_unmount {
            "the mount is removed"
        } else {
            "the mount is left dead until unmounted"
        };
        let m = Mount::new(&args.mountpoint, &opts).map_err(ServeError::Mount)?;
        let fd = m.fd().try_clone_to_owned().map_err(ServeError::Channel)?;
        (Some(Arc::new(Mutex::new(m))), fd)
    };
    if let Ok(dev) = fd.try_clone() {
        fs.attach_device(dev);
    }
    let passthrough = fs.passthrough_handle();
    let words = fs.startup_words();
    let watch = fs.watch_handle();
    let channel = Channel::new(fd).map_err(ServeError::Channel)?;
    // A panic in the backend: one line naming the request, then (unwinding)
    // EIO for it and serving on, or (the abort-on-panic static build) death,
    // after which the auto-unmount watchdog removes the mount.
    fuselage_linux::panic::install_hook(aftermath);

    // As root, the mount's readahead is raised after INIT (see
    // `raise_readahead`); its sysfs file is opened now, before any sandbox.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let readahead = match &mount {
        Some(m) if root => m.lock().ok().and_then(|m| m.readahead_knob().ok()),
        _ => None,
    };

    // Under --sandbox-namespace neither the mountpoint nor mountinfo shows
    // the host's mounts afterwards: what tells an abort from an unmount at
    // the end is opened now.
    let presence = match &mount {
        Some(m) if args.sandbox_namespace => m.lock().ok().and_then(|m| m.presence().ok()),
        _ => None,
    };

    // --sandbox: confine before the first thread starts, so every thread
    // inherits the capabilities and the filter.
    let sandbox = args.sandbox.or(args
        .sandbox_namespace
        .then_some(crate::sandbox::SeccompMode::Kill));
    let confined = match sandbox {
        Some(mode) => {
            let needs = sandbox_needs(args, &fs, mount.as_ref());
            if needs.uring {
                // What native io_uring reads from sysfs, read while a
                // private sysfs instance can still be made (no /sys).
                fuselage_transport_uring::read_ahead();
            }
            if needs.notify {
                // The service manager's socket by path is out of reach
                // from a private namespace: connect it now.
                crate::service::connect();
            }
            let confined = match crate::sandbox::confine(mode, &needs, args.sandbox_namespace) {
                Ok(c) => c,
                Err(e) => {
                    if args.sandbox_namespace {
                        // Perhaps in a namespace of its own already, where an
                        // unmount would only remove its copy: leave the
                        // host's mount to the watchdog, which sees this
                        // process go without a clean goodbye.
                        std::mem::forget(mount);
                    }
                    return Err(ServeError::Sandbox(e));
                }
            };
            Some((confined, needs))
        }
        None => None,
    };
    // Whether this server may unmount (a confined one leaves it to the
    // auto-unmount watchdog unless it kept umount2 for it).
    let may_unmount = confined.as_ref().is_none_or(|(_, needs)| needs.unmount);
    let sandbox_word = confined.as_ref().map(|(c, _)| c.word()).unwrap_or_default();

    // One thread takes SIGINT/SIGTERM/SIGHUP: unmount lazily (the kernel then
    // ends the session) or, serving a handed-over fd, just leave.
    {
        let mount = mount.clone();
        std::thread::Builder::new()
            .name("fuselage-signals".into())
            .spawn(move || {
                let sig = wait_signal(&sigset);
                log!(Info, "signal {sig}: unmounting");
                crate::service::stopping();
                match &mount {
                    Some(m) if may_unmount => {
                        if let Ok(mut m) = m.lock() {
                            let _ = m.unmount();
                        }
                        // Give the session a moment to see the unmount, then go.
                        std::thread::sleep(std::time::Duration::from_secs(2));
                        std::process::exit(0);
                    }
                    // Serving a handed-over fd, or confined: the watchdog
                    // unmounts once this process is gone.
                    _ => std::process::exit(0),
                }
            })
            .map_err(ServeError::Signals)?;
    }

    // --threads N: worker threads for uring-rw and blocking; for native
    // io_uring (one queue per possible CPU, a kernel rule) the ring depth
    // per queue. The startup line reports the threads that really serve.
    let config = UringConfig {
        choice: uring_choice(args.transport),
        threads,
        depth: args
            .threads
            .unwrap_or(fuselage_transport_uring::native::DEFAULT_DEPTH),
        read_only: args.read_only,
        poll: std::time::Duration::from_micros(u64::from(args.poll_us)),
        simulate_uring_refusal: args.simulate_uring_refusal,
        ..UringConfig::default()
    };
    let mountpoint = args.mountpoint.display().to_string();
    let result = crate::transport::serve(channel, fs, &config, |info: &UringServeInfo| {
        let status = passthrough.as_ref().map(|p| p.status());
        let on = status.as_ref().is_some_and(|s| s.active);
        let mut line = format!(
            "fuselage: mounted {mountpoint} backend={backend} transport={} threads={} passthrough={}",
            info.transport,
            info.threads,
            if on { "on" } else { "off" }
        );
        line.push_str(&words());
        if info.transport == crate::transport::Transport::Uring {
            // The native queues' polling (adaptive, see `UringConfig::poll`).
            match args.poll_us {
                0 => line.push_str(" poll=off"),
                us => line.push_str(&format!(" poll={us}us")),
            }
        }
        let (cache, watch_fallback) = cache_word(args.cache, watch.as_ref());
        line.push_str(&cache);
        line.push_str(&sandbox_word);
        let mut reasons = Vec::new();
        if let Some(reason) = info.fallback {
            reasons.push(reason.to_string());
        }
        if let Some(why) = status.and_then(|s| s.reason) {
            reasons.push(format!("passthrough: {why}"));
        }
        reasons.extend(watch_fallback);
        if !reasons.is_empty() {
            line.push_str(&format!(" (fallback: {})", reasons.join("; ")));
        }
        if let Some(knob) = &readahead {
            raise_readahead(knob, &info.negotiated);
        }
        // A detaching mount helper says nothing when all is well.
        if !args.background {
            eprintln!("{line}");
        }
        crate::service::ready();
        on_ready();
        log!(
            Info,
            "protocol 7.{} max_write={} depth={}",
            info.negotiated.minor,
            info.negotiated.max_write,
            info.depth
        );
    });
    crate::service::stopping();
    if let Some(m) = &mount
        && result.is_ok()
        && m.lock().is_ok_and(|m| aborted(&m, presence.as_ref()))
    {
        // Confined, the watchdog removes it once this process is gone.
        eprintln!(
            "fuselage: the kernel aborted the connection (fusectl abort); removing the dead mount of {}",
            args.mountpoint.display()
        );
    }
    match mount {
        Some(m) if may_unmount => {
            if let Ok(mut m) = m.lock() {
                let _ = m.unmount();
            }
        }
        // Confined: no umount2 (or fusermount3) from here; the watchdog
        // sees this process go and unmounts if the mount is still there.
        Some(m) => std::mem::forget(m),
        None => {}
    }
    match result {
        Ok(end) => {
            log!(Info, "session ended: {end:?}");
            let _ = SessionEnd::Unmounted;
            Ok(())
        }
        // `--passthrough on` refuses INIT when the kernel cannot do it:
        // say why rather than "INIT failed".
        Err(_)
            if args.passthrough == PassthroughChoice::On
                && let Some(why) = passthrough.as_ref().and_then(|p| p.status().reason) =>
        {
            Err(ServeError::Options(format!("--passthrough on: {why}")))
        }
        Err(crate::transport::ServeError::Session(e)) => Err(ServeError::Session(e)),
        Err(e) => Err(ServeError::Transport(e)),
    }
}

/// Raises the mount's readahead window to one full-size READ (`max_pages`); the
/// kernel's 128 KiB default held sequential reads to about 1.1 GB/s where 1 MiB gives
/// 1.7-1.9 GB/s (a 1 GiB file, native io_uring, no kernel passthrough). Refused: left
/// as it is, said in the log.
fn raise_readahead(
    knob: &fuselage_linux::mount::ReadaheadKnob,
    negotiated: &fuselage_core::Negotiated,
) {
    if negotiated.max_pages == 0 {
        return;
    }
    let kib = u32::from(negotiated.max_pages) * 4;
    match knob.set(kib) {
        Ok(()) => log!(Info, "readahead {kib} KiB"),
        Err(e) => log!(Info, "readahead left at the kernel's default: {e}"),
    }
}

impl<R: Served> Served for Router<R> {
    fn attach_device(&self, fd: OwnedFd) {
        use std::os::fd::AsFd;
        self.attach_device(fd.as_fd());
        self.root().attach_device(fd);
    }
    fn passthrough_handle(&self) -> Option<PassthroughStatusHandle> {
        self.root().passthrough_handle()
    }
    fn watch_handle(&self) -> Option<WatchStatusHandle> {
        self.root().watch_handle()
    }
    /// The root's, or a host route's (a route's backend is not known here,
    /// so any route counts as host files).
    fn uses_host_files(&self) -> bool {
        true
    }
    /// The root's own words (an overlay's layers), then one per route.
    fn startup_words(&self) -> Box<dyn Fn() -> String + Send> {
        let root = self.root().startup_words();
        let routes = crate::routes::startup_words(self);
        Box::new(move || root() + &routes())
    }
}

/// What `--sandbox` must allow for this mount.
fn sandbox_needs<F: Served>(
    args: &MountArgs,
    fs: &F,
    mount: Option<&Arc<Mutex<Mount>>>,
) -> crate::sandbox::Needs {
    let host_files = fs.uses_host_files();
    // With the auto-unmount watchdog (or fusermount3's helper) the mount
    // goes when the server does; without it the server unmounts on
    // SIGTERM itself, which only a mount(2)-mounted server may.
    let unmount = mount.is_some_and(|m| {
        m.lock().is_ok_and(|m| {
            m.method() == fuselage_linux::MountMethod::Syscall && (!args.auto_unmount || is_pid1())
        })
    });
    crate::sandbox::Needs {
        uring: args.transport != TransportChoice::Blocking,
        host_files,
        kernel_passthrough: host_files
            && args.passthrough != PassthroughChoice::Off
            && fs.passthrough_handle().is_some(),
        watch: args.cache == CacheChoice::Always && fs.watch_handle().is_some(),
        unmount,
        notify: std::env::var_os(crate::service::NOTIFY_SOCKET_ENV).is_some(),
    }
}

/// Checks before mounting that a forced io_uring transport can work here
/// (`--transport uring` and `uring-rw` never fall back). Automatic selection
/// decides after INIT and reports its own `(fallback: REASON)`.
fn transport_preflight(args: &MountArgs) -> Result<(), ServeError> {
    let choice = args.transport;
    let config = UringConfig {
        choice: uring_choice(choice),
        simulate_uring_refusal: args.simulate_uring_refusal,
        ..UringConfig::default()
    };
    match crate::transport::preflight(&config) {
        Ok(_) => Ok(()),
        Err(reason) => Err(ServeError::Options(format!(
            "--transport {}: {reason}",
            match choice {
                TransportChoice::Uring => "uring",
                _ => "uring-rw",
            }
        ))),
    }
}

fn uring_choice(choice: TransportChoice) -> Choice {
    match choice {
        TransportChoice::Auto => Choice::Auto,
        TransportChoice::Uring => Choice::Uring,
        TransportChoice::UringRw => Choice::UringRw,
        TransportChoice::Blocking => Choice::Blocking,
    }
}

/// Whether serving ended with `m` still mounted by us and its connection
/// still at the mountpoint: nobody unmounted it, so the kernel ended the
/// connection itself (an abort through fusectl). In a private mount namespace
/// only `presence` (opened before entering it) can tell.
fn aborted(m: &Mount, presence: Option<&fuselage_linux::mount::MountPresence>) -> bool {
    m.is_mounted()
        && match presence {
            Some(p) => p.still_mounted(),
            None => {
                m.connection_id().is_some()
                    && fuselage_linux::mount::connection_id(m.mountpoint()) == m.connection_id()
            }
        }
}

/// Whether this process is PID 1 of its PID namespace.
fn is_pid1() -> bool {
    std::process::id() == 1
}

fn is_fd_path(p: &Path) -> bool {
    p.to_str().is_some_and(|s| s.starts_with("/dev/fd/"))
}
