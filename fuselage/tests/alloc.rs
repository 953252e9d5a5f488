//! Zero allocations per request: an in-process server (memfs over the
//! blocking transport) on a real mount, and a client that allocates nothing
//! itself (raw libc calls, pre-built C strings, pre-opened O_DIRECT fds).
//! A counting global allocator sees every allocation of every thread, so
//! after a warm-up the count must not move while thousands of stat (LOOKUP +
//! GETATTR, the TTLs being 0), pread and pwrite requests are served.

mod common;

use common::*;
use fuselage::backends::memfs::{MemFs, MemFsConfig};
use fuselage::backends::overlay::{OverlayConfig, OverlayFs, UpperLayer};
use fuselage::backends::passthrough::{PassthroughConfig, PassthroughFs, PassthroughMode};
use fuselage::backends::router::{RoutePath, Router};
use fuselage::backends::stock::StockFs;
use fuselage::blocking::{Session, SessionConfig};
use fuselage::core::Filesystem;
use fuselage::linux::{Channel, Mount, MountOptions};
use std::os::fd::AsRawFd;

use std::sync::mpsc;
use std::time::Duration;

fuselage_testkit::install_counting_alloc!();

const FILE_SIZE: usize = 1 << 20;
const BLOCK: usize = 4096;
const WARMUP: usize = 500;
const MEASURED: usize = 5000;

/// What one pass of the client loop saw, counted without allocating.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    stat_failures: u64,
    short_reads: u64,
    short_writes: u64,
    last_errno: i32,
}

/// stat + pread 4 KiB + pwrite 4 KiB, `n` times, with raw syscalls only.
fn client_loop(
    n: usize,
    path: &std::ffi::CStr,
    read_fd: i32,
    write_fd: i32,
    buf: &mut [u8],
) -> Tally {
    let mut t = Tally::default();
    for i in 0..n {
        let offset = ((i * 7) % (FILE_SIZE / BLOCK) * BLOCK) as libc::off_t;
        // SAFETY: an all-zero stat is valid; `path` is a valid C string and
        // `st` a valid out pointer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::stat(path.as_ptr(), &mut st) } != 0 || st.st_size != FILE_SIZE as i64 {
            t.stat_failures += 1;
            t.last_errno = errno();
        }
        // SAFETY: `buf` has BLOCK writable bytes.
        if unsafe { libc::pread(read_fd, buf.as_mut_ptr().cast(), BLOCK, offset) } != BLOCK as isize
        {
            t.short_reads += 1;
            t.last_errno = errno();
        }
        if write_fd < 0 {
            continue;
        }
        // SAFETY: `buf` has BLOCK readable bytes.
        if unsafe { libc::pwrite(write_fd, buf.as_ptr().cast(), BLOCK, offset) } != BLOCK as isize {
            t.short_writes += 1;
            t.last_errno = errno();
        }
    }
    t
}

#[test]
fn steady_state_requests_allocate_nothing() {
    allocations_per_request(false);
}

/// The same requests through a router, on a file inside a memory route:
/// replies rewritten on the way (entries, attributes) still allocate
/// nothing.
#[test]
fn routed_requests_allocate_nothing() {
    if !require_fuse() {
        return;
    }
    let route = StockFs::Memory(memfs());
    let router = Router::new(
        memfs(),
        vec![(RoutePath::parse("/scratch").expect("route path"), route)],
    )
    .expect("router");
    measure(false, router, "scratch/file");
}

/// Through the host passthrough (kernel passthrough off, so every read and
/// write reaches the server).
#[test]
fn passthrough_requests_allocate_nothing() {
    if !require_fuse() {
        return;
    }
    let src = traversable_tempdir();
    let fs = PassthroughFs::new(PassthroughConfig {
        passthrough: PassthroughMode::Off,
        ..PassthroughConfig::new(src.path())
    })
    .expect("passthrough");
    measure(false, fs, "file");
}

/// Through the host passthrough watching the source (`--cache always`'s
/// watcher, fanotify and inotify): the writes through the mount come back
/// as host events, which the watcher thread turns into invalidations, and
/// neither the requests nor the watcher allocate in the steady state.
#[test]
fn watched_passthrough_requests_allocate_nothing() {
    use fuselage::backends::passthrough::CachePolicy;
    if !require_fuse() {
        return;
    }
    for fanotify in [true, false] {
        let src = traversable_tempdir();
        let fs = PassthroughFs::new(PassthroughConfig {
            passthrough: PassthroughMode::Off,
            entry_ttl: Duration::from_secs(86_400),
            attr_ttl: Duration::from_secs(86_400),
            cache: CachePolicy::Always,
            watch_host: true,
            watch_fanotify: fanotify,
            ..PassthroughConfig::new(src.path())
        })
        .expect("passthrough");
        let status = fs.watch_status_handle();
        measure_attached(false, fs, "file", |fs, fd| fs.set_device_fd(fd));
        assert_ne!(status.status().name(), "none", "{:?}", status.status());
    }
}

/// Through an overlay (kernel passthrough off, so every read and write
/// reaches the server): pread, pwrite and stat of a file in the upper, and
/// pread and stat of a file that exists only in the lower.
#[test]
fn overlay_requests_allocate_nothing() {
    if !require_fuse() {
        return;
    }
    let layers = traversable_tempdir();
    let (lower, upper) = (layers.path().join("lower"), layers.path().join("upper"));
    std::fs::create_dir(&lower).unwrap();
    std::fs::create_dir(&upper).unwrap();
    std::fs::write(lower.join("lowerfile"), vec![0x5a; FILE_SIZE]).unwrap();
    let overlay = || {
        OverlayFs::new(OverlayConfig {
            passthrough: PassthroughMode::Off,
            ..OverlayConfig::new(vec![lower.clone()], UpperLayer::Dir(upper.clone()))
        })
        .expect("overlay")
    };
    measure(false, overlay(), "file");
    measure(false, overlay(), "lowerfile");
    assert!(
        !upper.join("lowerfile").exists(),
        "reading a lower file copied it up"
    );
}

/// A memfs with zero TTLs, so every stat is a LOOKUP and a GETATTR.
fn memfs() -> MemFs {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    MemFs::new(MemFsConfig {
        capacity_bytes: 64 << 20,
        uid,
        gid,
        entry_ttl: Duration::ZERO,
        attr_ttl: Duration::ZERO,
        ..MemFsConfig::default()
    })
}

/// Debug mode (`-o debug`) formats each request's line on the stack and
/// writes it with one write(2): still nothing allocated per request. Its
/// lines go to /dev/null while measuring.
#[test]
fn debug_mode_allocates_nothing_per_request() {
    allocations_per_request(true);
}

/// Points stderr at /dev/null until dropped.
struct QuietStderr(i32);

impl QuietStderr {
    fn new() -> QuietStderr {
        // SAFETY: dup, open and dup2 on descriptors this process owns; the
        // saved copy is restored in Drop.
        unsafe {
            let saved = libc::dup(2);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            libc::dup2(null, 2);
            libc::close(null);
            QuietStderr(saved)
        }
    }
}

impl Drop for QuietStderr {
    fn drop(&mut self) {
        // SAFETY: restores the saved stderr and closes the copy.
        unsafe {
            libc::dup2(self.0, 2);
            libc::close(self.0);
        }
    }
}

fn allocations_per_request(debug: bool) {
    if !require_fuse() {
        return;
    }
    measure(debug, memfs(), "file");
}

/// Serves `fs` in process and counts the allocations of the client loop on
/// `file` (relative to the mountpoint): created through the mount, read
/// and written; or, if the backend already has it (a lower file), only
/// read.
fn measure<F: Filesystem + Send + Sync + 'static>(debug: bool, fs: F, file: &str) {
    measure_attached(debug, fs, file, |_, _| {});
}

/// [`measure`], handing `attach` the filesystem and a duplicate of the
/// `/dev/fuse` descriptor before serving (as `fuselage mount` does).
fn measure_attached<F: Filesystem + Send + Sync + 'static>(
    debug: bool,
    fs: F,
    file: &str,
    attach: impl FnOnce(&F, std::os::fd::OwnedFd),
) {
    if debug {
        fuselage::debug::enable();
    }
    let dir = traversable_tempdir();
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).expect("mkdir");

    let options = MountOptions {
        subtype: Some("memfs".into()),
        auto_unmount: false,
        ..MountOptions::default()
    };
    // Dropped before `dir`: unmounts (lazily) even if the test panics.
    let mut mount = Mount::new(&mountpoint, &options).expect("mount");
    attach(&fs, mount.try_clone_fd().expect("dup the FUSE fd"));
    let channel = Channel::new(mount.try_clone_fd().expect("dup the FUSE fd")).expect("channel");
    // A hung request must fail the test, not hang it: at the deadline, abort
    // the connection (so blocked calls return ENOTCONN) or, failing that,
    // the process.
    let connection = mount.connection_id();
    let (disarm, armed) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = armed.recv_timeout(TEST_DEADLINE) {
            eprintln!(
                "watchdog: the test is still running after {TEST_DEADLINE:?}; aborting the FUSE connection"
            );
            let aborted = connection.is_some_and(|id| {
                std::fs::write(format!("/sys/fs/fuse/connections/{id}/abort"), "1").is_ok()
            });
            if !aborted {
                eprintln!("watchdog: no fusectl abort file; aborting the process");
                std::process::abort();
            }
        }
    });
    let session = Session::new(
        channel,
        fs,
        SessionConfig {
            threads: 2,
            ..SessionConfig::default()
        },
    );
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = session.run_with(|_| {
            let _ = ready_tx.send(());
        });
        let _ = done_tx.send(format!("{result:?}"));
    });

    // Setup, allowed to allocate. The first access completes INIT.
    let file = mountpoint.join(file);
    let read_only = file.exists();
    if !read_only {
        std::fs::write(&file, vec![0x5a; FILE_SIZE]).expect("create the file");
    }
    ready_rx
        .recv_timeout(Duration::from_secs(15))
        .expect("the session answered INIT");
    let path = cpath(&file);
    let read_fd =
        open_raw(&file, libc::O_RDONLY | libc::O_DIRECT, 0).expect("open O_DIRECT for reading");
    let write_fd = (!read_only).then(|| {
        open_raw(&file, libc::O_WRONLY | libc::O_DIRECT, 0).expect("open O_DIRECT for writing")
    });
    let write_raw = write_fd.as_ref().map_or(-1, |fd| fd.as_raw_fd());
    let mut buf = AlignedBuf::page_aligned(BLOCK);

    let warm = client_loop(WARMUP, &path, read_fd.as_raw_fd(), write_raw, &mut buf);
    assert_eq!(
        warm,
        Tally::default(),
        "warm-up requests failed: {}",
        errno_name(warm.last_errno)
    );

    let quiet = debug.then(QuietStderr::new);
    let before = fuselage_testkit::alloc::process_total();
    let tally = client_loop(MEASURED, &path, read_fd.as_raw_fd(), write_raw, &mut buf);
    let after = fuselage_testkit::alloc::process_total();
    drop(quiet);

    assert_eq!(
        tally,
        Tally::default(),
        "measured requests failed: {}",
        errno_name(tally.last_errno)
    );
    let allocations = after - before;
    assert_eq!(
        allocations,
        0,
        "{allocations} allocations during {MEASURED} rounds of stat + pread 4 KiB + pwrite 4 KiB \
         ({:.3} per round; about 4 requests each)",
        allocations as f64 / MEASURED as f64
    );

    drop((read_fd, write_fd));
    mount.unmount().expect("unmount");
    let end = done_rx.recv_timeout(Duration::from_secs(10));
    assert!(
        end.is_ok(),
        "the session did not end within 10 s of the unmount"
    );
    drop(disarm);
}
