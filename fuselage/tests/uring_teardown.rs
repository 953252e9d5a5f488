//! Teardown on each io_uring transport: unmount, kernel abort through
//! fusectl, and SIGKILL of a server process all end cleanly: no hang, no
//! leaked threads, no dead mount left behind by the guards.

#[path = "uring_common/mod.rs"]
mod common;

use common::*;
use fuselage::transport::{Choice, Transport, UringConfig};
use fuselage_linux::mount::{connection_id, ensure_fusectl};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "FUSELAGE_URING_TEST_CHILD";

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Waits (bounded) until the thread count is back to `n`.
fn settle_threads(n: usize) {
    let start = Instant::now();
    while threads() > n && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(threads(), n, "threads leaked");
}

fn unmount_ends_cleanly(config: UringConfig, want: Transport) {
    let before = threads();
    let served = serve(config).expect("serve");
    assert_eq!(served.info.transport, want);
    exercise(served.path());
    let end = served.unmount_and_join();
    assert!(end.is_ok(), "{end:?}");
    settle_threads(before);
}

fn abort_ends_cleanly(config: UringConfig, want: Transport) {
    if !require(ensure_fusectl().map_err(|e| e.to_string()).and_then(|ok| {
        ok.then_some(())
            .ok_or_else(|| "fusectl cannot be mounted".to_string())
    })) {
        return;
    }
    let before = threads();
    let mut served = serve(config).expect("serve");
    assert_eq!(served.info.transport, want);
    std::fs::write(served.path().join("a"), b"x").unwrap();
    let id = connection_id(served.path()).expect("connection id");
    std::fs::write(format!("/sys/fs/fuse/connections/{id}/abort"), "1").unwrap();
    let t = served.thread.take().unwrap();
    let end = join_within(t, Duration::from_secs(20));
    assert!(end.is_ok(), "{end:?}");
    // The mount is dead now: ENOTCONN, not a hang.
    let err = std::fs::metadata(served.path().join("a")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    drop(served);
    settle_threads(before);
}

#[test]
fn native_unmount() {
    let Some(_on) = EnableUring::set(true) else {
        return;
    };
    unmount_ends_cleanly(config(Choice::Uring), Transport::Uring);
}

/// Queue threads that poll their rings still see the unmount and end.
#[test]
fn native_unmount_while_polling() {
    let Some(_on) = EnableUring::set(true) else {
        return;
    };
    unmount_ends_cleanly(polling(), Transport::Uring);
}

#[test]
fn uring_rw_unmount() {
    if require_uring() {
        unmount_ends_cleanly(config(Choice::UringRw), Transport::UringRw);
    }
}

#[test]
fn native_abort() {
    let Some(_on) = EnableUring::set(true) else {
        return;
    };
    abort_ends_cleanly(config(Choice::Uring), Transport::Uring);
}

#[test]
fn native_abort_while_polling() {
    let Some(_on) = EnableUring::set(true) else {
        return;
    };
    abort_ends_cleanly(polling(), Transport::Uring);
}

/// Native queues that poll for 1 ms after each request.
fn polling() -> UringConfig {
    UringConfig {
        poll: Duration::from_millis(1),
        ..config(Choice::Uring)
    }
}

#[test]
fn uring_rw_abort() {
    if require_uring() {
        abort_ends_cleanly(config(Choice::UringRw), Transport::UringRw);
    }
}

/// The server half of the SIGKILL tests: serves until killed.
#[test]
fn child_server() {
    let Ok(choice) = std::env::var(CHILD_ENV) else {
        return; // only meaningful as a child of `*_sigkill`
    };
    let choice = if choice == "uring" {
        Choice::Uring
    } else {
        Choice::UringRw
    };
    let served = serve(config(choice)).expect("serve");
    println!("READY {}", served.path().display());
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn sigkill_ends_cleanly(choice: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_server", "--nocapture"])
        .env(CHILD_ENV, choice)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let path = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(p) = l.strip_prefix("READY ") {
                    break std::path::PathBuf::from(p);
                }
            }
            other => {
                let _ = child.kill();
                panic!("child server did not come up: {other:?}");
            }
        }
    };
    let _guard = UnmountGuard(path.clone());
    std::fs::write(path.join("f"), vec![1u8; 100_000]).unwrap();
    // A reader in flight while the server dies.
    let p2 = path.clone();
    let reader = std::thread::spawn(move || {
        for _ in 0..1000 {
            if std::fs::read(p2.join("f")).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    assert!(!status.success());
    let reader_done = Instant::now();
    while !reader.is_finished() {
        assert!(
            reader_done.elapsed() < Duration::from_secs(20),
            "client hung after server death"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    reader.join().unwrap();
    // Dead mount: ENOTCONN. io_uring releases a ring's registered files in
    // its exit work, shortly after the process is reaped, so the kernel may
    // need a moment to abort the connection.
    let start = Instant::now();
    loop {
        match std::fs::metadata(path.join("f")) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => break,
            other => assert!(
                start.elapsed() < Duration::from_secs(10),
                "mount still answering after server death: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn native_sigkill() {
    let Some(_on) = EnableUring::set(true) else {
        return;
    };
    sigkill_ends_cleanly("uring");
}

#[test]
fn uring_rw_sigkill() {
    if require_uring() {
        sigkill_ends_cleanly("uring-rw");
    }
}
