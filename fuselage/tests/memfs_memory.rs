//! memfs gives memory back (issue 16): after 1 GiB is written into a memfs
//! mount and then deleted, truncated to zero or punched out, the server's
//! resident memory (`VmRSS` in /proc/PID/status) returns to within
//! [`SLACK`] of what it was idle after mounting, on every transport.
//!
//! Each scenario runs once per transport (`e2e`'s row pattern: a module per
//! transport, a `#[test]` per scenario). The tests take a file lock so that
//! only one of them holds 1 GiB at a time, whatever nextest runs beside
//! them; each prints its measurements (idle, after writing, after freeing)
//! on stderr.

#[path = "common/mod.rs"]
mod common;

use common::{Backend, MountedFs, Setup};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Bytes written by each scenario.
const FILE_SIZE: usize = 1 << 30;
/// Bytes per write call.
const BLOCK: usize = 1 << 20;
/// How far above idle the server may stay once the data is freed.
const SLACK: u64 = 16 << 20;
/// How long freed memory may take to go back (FORGET after an unlink is
/// asynchronous).
const SETTLE: Duration = Duration::from_secs(10);

/// Resident bytes of process `pid` (`VmRSS`).
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Holds an exclusive lock on a file shared by these tests, so at most one
/// of them has 1 GiB resident at a time.
struct OneAtATime(#[allow(dead_code)] File);

impl OneAtATime {
    fn take() -> OneAtATime {
        let f = File::create(std::env::temp_dir().join("fuselage-memfs-memory.lock"))
            .expect("create the lock file");
        // SAFETY: `f` is an open file descriptor for the whole call.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(r, 0, "flock: {}", std::io::Error::last_os_error());
        OneAtATime(f)
    }
}

/// How a scenario frees the file's data.
#[derive(Debug, Clone, Copy)]
enum Free {
    /// unlink(2) the closed file.
    Delete,
    /// ftruncate(2) to zero.
    Truncate,
    /// fallocate(2) PUNCH_HOLE | KEEP_SIZE over the whole file.
    PunchHole,
}

/// Mounts memfs over `transport`, writes [`FILE_SIZE`] bytes, frees them
/// as `free` says and checks the server's RSS comes back near idle.
fn gives_memory_back(transport: &'static str, free: Free) {
    let _lock = OneAtATime::take();
    let setup = Setup {
        backend: Backend::Memfs,
        transport,
        options: &[],
    };
    let fs = MountedFs::mount(&setup, &["--size", "2G"]);
    let pid = fs.pid();
    // Let the transport's threads start and touch their buffers.
    std::thread::sleep(Duration::from_millis(300));
    let _ = std::fs::metadata(fs.path());
    let idle = rss(pid);

    let path = fs.join("big");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("create the file");
    let block = vec![0xa5u8; BLOCK];
    for _ in 0..FILE_SIZE / BLOCK {
        file.write_all(&block).expect("write");
    }
    file.sync_all().expect("fsync");
    let written = rss(pid);
    assert!(
        written > idle + (FILE_SIZE as u64) * 9 / 10,
        "the server should hold the data: idle {:.1} MiB, after writing {:.1} MiB",
        mib(idle),
        mib(written)
    );

    match free {
        Free::Delete => {
            drop(file);
            std::fs::remove_file(&path).expect("unlink");
        }
        Free::Truncate => {
            file.set_len(0).expect("ftruncate");
        }
        Free::PunchHole => {
            // SAFETY: a plain syscall on an open descriptor.
            let r = unsafe {
                libc::fallocate(
                    file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    0,
                    FILE_SIZE as i64,
                )
            };
            assert_eq!(r, 0, "fallocate: {}", std::io::Error::last_os_error());
            assert_eq!(file.metadata().expect("fstat").len(), FILE_SIZE as u64);
        }
    }

    let start = Instant::now();
    let mut after = rss(pid);
    while after >= idle + SLACK && start.elapsed() < SETTLE {
        std::thread::sleep(Duration::from_millis(50));
        after = rss(pid);
    }
    eprintln!(
        "memfs over {transport}, {free:?}: idle {:.1} MiB, after writing 1 GiB {:.1} MiB, \
         after freeing {:.1} MiB (+{:.1} MiB over idle, settled in {:?})",
        mib(idle),
        mib(written),
        mib(after),
        mib(after.saturating_sub(idle)),
        start.elapsed()
    );
    assert!(
        after < idle + SLACK,
        "memfs over {transport} kept memory after {free:?}: idle {:.1} MiB, after writing \
         {:.1} MiB, {:.1} MiB after {SETTLE:?}",
        mib(idle),
        mib(written),
        mib(after)
    );
}

/// One `#[test]` per scenario for a transport.
macro_rules! memory_tests {
    ($($row:ident: $transport:literal),+ $(,)?) => {
        $(
            mod $row {
                fn ready() -> bool {
                    if $transport == "uring" {
                        $crate::common::require_native_uring()
                    } else {
                        $crate::common::require_fuse()
                    }
                }

                #[test]
                fn delete_returns_memory() {
                    if ready() {
                        $crate::gives_memory_back($transport, $crate::Free::Delete);
                    }
                }

                #[test]
                fn truncate_returns_memory() {
                    if ready() {
                        $crate::gives_memory_back($transport, $crate::Free::Truncate);
                    }
                }

                #[test]
                fn punch_hole_returns_memory() {
                    if ready() {
                        $crate::gives_memory_back($transport, $crate::Free::PunchHole);
                    }
                }
            }
        )+
    };
}

// The module names follow the e2e rows, so the native io_uring row falls in
// nextest's `serial` group (`_uring::`) like theirs.
memory_tests!(
    memfs_blocking: "blocking",
    memfs_uring_rw: "uring-rw",
    memfs_uring: "uring",
);
