//! Faults inside the server, served in this process on every transport
//! (native io_uring, uring-rw, blocking):
//!
//! - a backend method that panics: that request gets `EIO`, requests in
//!   flight beside it complete, and the server goes on serving (more panics
//!   than it has threads, on every CPU, so a worker lost to a panic shows);
//! - the kernel aborting the connection through fusectl: serving ends
//!   without error and leaves no thread and no descriptor behind.
//!
//! The same faults seen from outside, against the `fuselage` binary, are
//! end-to-end scenarios (`fusectl_abort`, the SIGKILL ones).

#[macro_use]
mod common;

#[path = "../examples/faulty.rs"]
#[allow(dead_code)]
mod example;

use common::*;
use example::{CONTENT, FaultyFs, SLOW};
use fuselage::core::Filesystem;
use fuselage::transport::{Choice, ServeError, ServeInfo, Transport, UringConfig};
use fuselage_backends::memfs::{MemFs, MemFsConfig};
use fuselage_linux::mount::{Mount, MountOptions, connection_id, ensure_fusectl};
use fuselage_transport_blocking::SessionEnd;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A filesystem mounted here and served by `fuselage::transport::serve` in
/// a thread of this process. Dropping it unmounts lazily and waits
/// (bounded) for serving to end.
struct InProcess {
    info: ServeInfo,
    mount: Option<Mount>,
    thread: Option<JoinHandle<Result<SessionEnd, ServeError>>>,
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

fn config(choice: Choice) -> UringConfig {
    let mut c = UringConfig {
        choice,
        threads: 2,
        depth: 2,
        ..UringConfig::default()
    };
    // A safety net: should a request be left unanswered, the kernel aborts
    // the connection rather than leave a test thread stuck in it.
    c.init.request_timeout = 30;
    c
}

fn choice(transport: &str) -> Choice {
    match transport {
        "uring" => Choice::Uring,
        "uring-rw" => Choice::UringRw,
        _ => Choice::Blocking,
    }
}

impl InProcess {
    fn serve<F: Filesystem + Send + Sync + 'static>(transport: &str, fs: F) -> InProcess {
        let dir = traversable_tempdir();
        let mountpoint = dir.path().join("mnt");
        fs::create_dir(&mountpoint).expect("mkdir");
        let opts = MountOptions {
            auto_unmount: false,
            ..MountOptions::default()
        };
        let mount = Mount::new(&mountpoint, &opts).expect("mount");
        let channel = mount.channel().expect("channel");
        let config = config(choice(transport));
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            fuselage::transport::serve(channel, fs, &config, |info| {
                let _ = tx.send(*info);
            })
        });
        let info = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(info) => info,
            Err(_) => {
                lazy_unmount(&mountpoint);
                panic!(
                    "no INIT within 15 s: {:?}",
                    join_within(thread, EXIT_TIMEOUT)
                );
            }
        };
        let want = match transport {
            "uring" => Transport::Uring,
            "uring-rw" => Transport::UringRw,
            _ => Transport::Blocking,
        };
        assert_eq!(info.transport, want);
        InProcess {
            info,
            mount: Some(mount),
            thread: Some(thread),
            mountpoint,
            _dir: dir,
        }
    }

    fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Aborts the connection through fusectl (mounting fusectl if needed).
    fn abort(&self) {
        let id = connection_id(&self.mountpoint).expect("the mount's connection id");
        fs::write(format!("/sys/fs/fuse/connections/{id}/abort"), "1")
            .expect("write the fusectl abort file");
    }

    /// Waits (bounded) for serving to end and returns how.
    fn join(&mut self) -> Result<SessionEnd, ServeError> {
        let t = self.thread.take().expect("still serving");
        join_within(t, Duration::from_secs(20))
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(mut m) = self.mount.take() {
            let _ = m.unmount();
        }
        lazy_unmount(&self.mountpoint);
        if let Some(t) = self.thread.take() {
            let start = Instant::now();
            while !t.is_finished() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Joins a thread, failing the test if it takes longer than `limit`.
fn join_within<T>(t: JoinHandle<T>, limit: Duration) -> T {
    let start = Instant::now();
    while !t.is_finished() {
        assert!(
            start.elapsed() < limit,
            "thread did not end within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    t.join().expect("the serving thread panicked")
}

/// Runs `f` on a thread of its own; `None` if it takes longer than `limit`
/// (the thread is left blocked: the caller aborts the connection).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set, which
    // sched_getaffinity fills.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the given size.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(r, 0, "sched_getaffinity");
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// A panic in a backend method answers that request with EIO, lets the
/// request in flight beside it complete, and costs the server nothing:
/// three panics from each CPU (more than the worker threads, and every
/// native queue gets its share), each followed by a good request.
fn panic_answers_eio_and_serving_goes_on(transport: &str) {
    // As the binary does: one line per panic instead of the default hook's.
    fuselage_linux::panic::install_hook("the mount is removed");
    let mut fs = InProcess::serve(transport, FaultyFs::default());
    let root = fs.path().to_path_buf();
    let checks = {
        let root = root.clone();
        within(Duration::from_secs(30), move || {
            let mut seen = Vec::new();
            for cpu in allowed_cpus() {
                fuselage_linux::sys::pin_to(cpu).expect("pin");
                // A slow request in flight (on another thread) while this
                // one panics.
                let slow = {
                    let p = root.join("slow");
                    std::thread::spawn(move || fs::metadata(p).map(|m| m.len()))
                };
                std::thread::sleep(SLOW / 4);
                for _ in 0..3 {
                    let err = fs::metadata(root.join("panic")).map(|_| ());
                    seen.push((cpu, "panic", err.map_err(|e| e.raw_os_error())));
                    let ok = fs::read(root.join("ok")).map(|d| {
                        assert_eq!(d, CONTENT);
                    });
                    seen.push((cpu, "ok", ok.map_err(|e| e.raw_os_error())));
                }
                let slow = slow.join().expect("the slow stat").map(|_| ());
                seen.push((cpu, "slow", slow.map_err(|e| e.raw_os_error())));
            }
            seen
        })
    };
    let Some(seen) = checks else {
        fs.abort();
        panic!("requests hung after a panic in the backend ({transport})");
    };
    for (cpu, what, result) in &seen {
        match *what {
            "panic" => assert_eq!(
                *result,
                Err(Some(libc::EIO)),
                "the panicking lookup from CPU {cpu}"
            ),
            _ => assert_eq!(*result, Ok(()), "{what} from CPU {cpu}"),
        }
    }
    assert_eq!(
        fs::read(root.join("ok")).expect("read after the panics"),
        CONTENT
    );
    let mut m = fs.mount.take().expect("mounted");
    m.unmount().expect("unmount");
    let end = fs.join();
    assert!(end.is_ok(), "serving ended with {end:?}");
}

fn threads() -> usize {
    fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// This process's open descriptors, by number and what they point to.
fn fds() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let to = fs::read_link(e.path()).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                to.display().to_string(),
            ))
        })
        .collect();
    v.sort();
    v
}

/// Waits (bounded) for `count` to come back to `want`, and returns what it
/// is then.
fn settle(want: usize, count: impl Fn() -> usize) -> usize {
    let start = Instant::now();
    while count() != want && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    count()
}

/// The kernel aborts the connection (fusectl `abort`) while files are open
/// and a request is in flight: every serving thread ends, serving returns
/// without error, and the process has the threads and descriptors
/// (io_uring rings included: each is a descriptor) it had before mounting.
fn fusectl_abort_ends_cleanly(transport: &str) {
    let fusectl = ensure_fusectl()
        .map_err(|e| e.to_string())
        .and_then(|ok| ok.then_some(()).ok_or("fusectl cannot be mounted".into()));
    if !require(fusectl) {
        return;
    }
    // Warm up what the first mount creates once per process (the allocator
    // arenas, the io_uring probe) so that it is not counted as a leak.
    drop(InProcess::serve(transport, memfs()));
    let (threads_before, fds_before) = (threads(), fds());
    let mut fs = InProcess::serve(transport, memfs());
    fs::write(fs.path().join("a"), b"x").expect("write");
    let open = fs::File::open(fs.path().join("a")).expect("open");
    // A request in flight at the abort: a slow one would need a slow
    // backend; a reader in a loop is as good.
    let root = fs.path().to_path_buf();
    let reader = std::thread::spawn(move || {
        let start = Instant::now();
        loop {
            if let Err(e) = fs::read(root.join("a")) {
                return Some(e.raw_os_error());
            }
            if start.elapsed() > Duration::from_secs(10) {
                return None;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    fs.abort();
    let end = fs.join();
    assert!(
        end.is_ok(),
        "serving ended with {end:?} after an abort ({transport}, {:?})",
        fs.info.transport
    );
    let got = reader.join().expect("the reader");
    assert!(
        matches!(got, Some(Some(libc::ENOTCONN | libc::ECONNABORTED))),
        "the reader after the abort got {got:?}"
    );
    expect_errno(
        fs::metadata(fs.path().join("a")),
        libc::ENOTCONN,
        "stat in an aborted mount",
    );
    drop(open);
    drop(fs);
    let now = settle(threads_before, threads);
    assert_eq!(now, threads_before, "threads before the mount and after");
    let fds_now = {
        let start = Instant::now();
        while fds() != fds_before && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        fds()
    };
    assert_eq!(
        fds_now, fds_before,
        "descriptors before the mount and after"
    );
}

fn memfs() -> MemFs {
    MemFs::new(MemFsConfig {
        capacity_bytes: 64 << 20,
        entry_ttl: Duration::ZERO,
        attr_ttl: Duration::ZERO,
        ..MemFsConfig::default()
    })
}

/// The host file under a passthrough fails with EIO (its filesystem, a
/// FUSE mount served by this process, says so): the client of the
/// `fuselage` server gets EIO, and reads work again once the host does.
fn host_eio_reaches_the_client(transport: &'static str) {
    let host = FaultyFs::default();
    let failing = host.failing.clone();
    failing.store(true, Ordering::Relaxed);
    let host = InProcess::serve("blocking", host);
    let setup = Setup {
        backend: Backend::Memfs,
        transport,
        options: &[],
    };
    let source = host.path().display().to_string();
    // The server reads (no kernel passthrough): the host's EIO reaches it.
    let fs = MountedFs::mount(&setup, &["--source", &source, "--passthrough", "off"]);
    let p = fs.join("ok");
    expect_errno(fs::read(&p), libc::EIO, "a read of a host file that fails");
    expect_errno(fs::read(&p), libc::EIO, "a second read of it");
    failing.store(false, Ordering::Relaxed);
    assert_eq!(
        fs::read(&p).expect("a read once the host works again"),
        CONTENT
    );
    drop(fs);
}

/// The `faulty` example's binary: `FUSELAGE_TEST_FAULTY_BIN` (e.g. one
/// built with `--profile static`, which aborts on panic), else the one
/// cargo built beside the `fuselage` binary.
fn faulty_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FUSELAGE_TEST_FAULTY_BIN") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(fuselage_bin()).parent()?.join("examples/faulty");
    p.is_file().then_some(p)
}

/// Lazily unmounts a path on drop.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        lazy_unmount(&self.0);
    }
}

/// A backend panic in a server process (the `faulty` example, served by
/// the `fuselage` machinery as the binary serves): in a build that unwinds
/// the client gets EIO, stderr has exactly one line about it (no default
/// panic message), and the server serves on; in an abort-on-panic build
/// (`FUSELAGE_TEST_FAULTY_BIN` from `--profile static`) the one line says
/// the mount is removed, the server dies, and the watchdog removes the
/// mount.
fn panic_in_a_server_process(transport: &str) {
    let Some(bin) = faulty_bin() else {
        require(Err(
            "examples/faulty is not built (cargo build -p fuselage --examples)".into(),
        ));
        return;
    };
    let dir = traversable_tempdir();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).expect("mkdir");
    let _unmount = Unmount(mnt.clone());
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(["mount", "--transport", transport, "--source", "faulty:"])
        .arg(&mnt);
    let mut server = ServerProcess::spawn(cmd);
    server.wait_for_line(MOUNTED_PREFIX, MOUNT_TIMEOUT);
    let got = fs::metadata(mnt.join("panic")).map(|_| ());
    let line = server.wait_for_line("fuselage: panic in backend serving Lookup", EXIT_TIMEOUT);
    let expect_abort = std::env::var_os("FUSELAGE_TEST_FAULTY_BIN").is_some()
        && line.ends_with("; the mount is removed");
    if expect_abort {
        let status = server.wait_exit(EXIT_TIMEOUT).expect("the server dies");
        eprintln!("{line}\nexit: {status}; the client got {got:?}");
        assert!(
            wait_until(Duration::from_secs(5), || !is_mountpoint(&mnt)),
            "the watchdog did not remove the mount within 5 s"
        );
        return;
    }
    assert!(
        line.ends_with("; answered EIO, still serving") && line.contains("faulty.rs"),
        "{line:?}"
    );
    expect_errno(got, libc::EIO, "a lookup that panics in the backend");
    assert_eq!(
        fs::read(mnt.join("ok")).expect("read after the panic"),
        CONTENT
    );
    expect_errno(
        fs::metadata(mnt.join("panic")),
        libc::EIO,
        "a second lookup that panics",
    );
    assert_eq!(fs::read(mnt.join("ok")).expect("read"), CONTENT);
    lazy_unmount(&mnt);
    let status = server.wait_exit(EXIT_TIMEOUT).expect("exit after unmount");
    server.drain_stderr(Duration::from_secs(2));
    assert!(status.success(), "{status}");
    let lines = server.stderr_lines();
    assert_eq!(
        lines.len(),
        3,
        "the mounted line and one line per panic, nothing else: {lines:#?}"
    );
}

every_transport!(
    panic_answers_eio_and_serving_goes_on,
    fusectl_abort_ends_cleanly,
    host_eio_reaches_the_client,
    panic_in_a_server_process,
);
