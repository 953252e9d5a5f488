//! `--sandbox`: a syscall outside the allow-list is refused, on every
//! transport.
//!
//! The server is this test binary run again (`child_server`, an ignored
//! test that only serves, in a forked child, when
//! `FUSELAGE_TEST_SECCOMP_CHILD` names its mount), so that confining it
//! confines no test. It serves, through the
//! registry, a backend whose lookup of `socket` opens a network socket,
//! which no backend or transport of fuselage needs:
//!
//! - `--sandbox` (kill): the server names `socket` on stderr and exits
//!   with status 159; the lookup fails with ENOTCONN or ECONNABORTED, and
//!   the auto-unmount watchdog removes the mount;
//! - `--sandbox=log`: the lookup fails with EPERM, stderr names `socket`,
//!   and the server goes on serving.
//!
//! Without `--sandbox` the lookup answers ENOENT (the socket opened), so
//! both tests fail.

#[macro_use]
mod common;

use common::*;
use fuselage::cli::{self, Command as Cli};
use fuselage::core::abi::{FUSE_ROOT_ID, fuse_attr};
use fuselage::core::reply::{ReplyAttr, ReplyEntry};
use fuselage::core::{Errno, Filesystem, ReplySink, RequestHeader, op};
use fuselage::registry::{Backend, Registry};
use fuselage::serve::Served;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The variable that makes `child_server` serve:
/// `PROBE TRANSPORT MODE MOUNTPOINT` (PROBE: `seccomp-probe` or `unshare-probe`).
const CHILD_ENV: &str = "FUSELAGE_TEST_SECCOMP_CHILD";

/// A directory whose lookup of `socket` opens an IPv4 socket.
struct ProbeFs;

impl Filesystem for ProbeFs {
    fn lookup<S: ReplySink>(&self, _: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        if op.name().to_bytes() != b"socket" {
            return reply.negative(Duration::ZERO);
        }
        // SAFETY: socket(2) with integer arguments; the fd is closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return reply.error(Errno::EPERM);
        }
        // SAFETY: `fd` was just opened and is closed once.
        unsafe { libc::close(fd) };
        reply.negative(Duration::ZERO)
    }

    fn getattr<S: ReplySink>(&self, _: &RequestHeader, op: op::Getattr<'_>, reply: ReplyAttr<S>) {
        if op.ino() != FUSE_ROOT_ID {
            return reply.error(Errno::ENOENT);
        }
        let attr = fuse_attr {
            ino: FUSE_ROOT_ID,
            mode: libc::S_IFDIR | 0o755,
            nlink: 2,
            blksize: 4096,
            ..Default::default()
        };
        reply.attr(Duration::ZERO, &attr)
    }
}

/// Local: uses no host files (only the socket it must not get).
impl Served for ProbeFs {
    fn uses_host_files(&self) -> bool {
        false
    }
}

/// A directory whose lookup of `unshare-fs` calls `unshare(CLONE_FS)` (as
/// the host-file backends do for a worker's own umask) and of `unshare-ns`
/// `unshare(CLONE_NEWNS)`, which the filter refuses by its argument.
struct UnshareProbeFs;

impl Filesystem for UnshareProbeFs {
    fn lookup<S: ReplySink>(&self, _: &RequestHeader, op: op::Lookup<'_>, reply: ReplyEntry<S>) {
        let flags = match op.name().to_bytes() {
            b"unshare-fs" => libc::CLONE_FS,
            b"unshare-ns" => libc::CLONE_NEWNS,
            _ => return reply.negative(Duration::ZERO),
        };
        // SAFETY: unshare(2) with integer flags; it affects only this thread.
        if unsafe { libc::unshare(flags) } != 0 {
            return reply.error(Errno::EPERM);
        }
        reply.negative(Duration::ZERO)
    }

    fn getattr<S: ReplySink>(&self, req: &RequestHeader, op: op::Getattr<'_>, reply: ReplyAttr<S>) {
        ProbeFs.getattr(req, op, reply)
    }
}

/// Counts as serving host files, so that its filter allows `unshare`.
impl Served for UnshareProbeFs {
    fn uses_host_files(&self) -> bool {
        true
    }
}

/// The server: serves the probe with `--sandbox[=MODE]` when run as the
/// child of a test below, and does nothing otherwise.
#[test]
#[ignore = "the server process of the tests below"]
fn child_server() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut words = spec.splitn(4, ' ');
    let (probe, transport, mode, mountpoint) = (
        words.next().unwrap(),
        words.next().unwrap(),
        words.next().unwrap(),
        words.next().unwrap(),
    );
    let argv = [
        "mount",
        "--transport",
        transport,
        "--source",
        probe,
        &format!("--sandbox={mode}"),
        mountpoint,
    ];
    let Ok(Cli::Mount(args)) = cli::parse(argv.iter().map(|s| s.to_string())) else {
        panic!("bad arguments {argv:?}");
    };
    // The test harness runs this on a thread of its own, and a server
    // confines itself only while it has one thread (capabilities are per
    // thread): serve in a forked child, whose one thread is this one.
    // glibc's malloc is usable after fork; the harness's main thread only
    // waits for this one.
    // SAFETY: fork(2); the child only serves and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // Dies with the process the test started (killed when a test
        // fails); the auto-unmount watchdog then removes the mount.
        // SAFETY: prctl with integer arguments only.
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        let mut registry = Registry::new();
        registry.register("probe", |spec| {
            (spec.source_str()? == "seccomp-probe").then(|| Ok(Backend::new("probe", ProbeFs)))
        });
        registry.register("unshare-probe", |spec| {
            (spec.source_str()? == "unshare-probe")
                .then(|| Ok(Backend::new("unshare-probe", UnshareProbeFs)))
        });
        let code = match registry.serve(&args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("serving: {e}");
                1
            }
        };
        std::process::exit(code);
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` is a valid int.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    // The server's status is this process's.
    std::process::exit(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    });
}

/// The child server, its stderr lines as they come.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    fn start(transport: &str, mode: &str, mountpoint: &Path) -> Server {
        Server::start_probe("seccomp-probe", transport, mode, mountpoint)
    }

    fn start_probe(probe: &str, transport: &str, mode: &str, mountpoint: &Path) -> Server {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child_server", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(
                CHILD_ENV,
                format!("{probe} {transport} {mode} {}", mountpoint.display()),
            )
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run this test binary as the server");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to 30 s for a stderr line containing `needle`.
    fn wait_line(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no {needle:?} on the server's stderr: {:?}", self.seen)
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not exit: {:?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kill mode: the refused syscall is named and ends the server.
fn kill_mode_names_and_stops(transport: &str) {
    let dir = traversable_tempdir();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let mut server = Server::start(transport, "kill", &mp);
    let line = server.wait_line("fuselage: mounted ");
    assert!(
        line.contains(" sandbox=on(seccomp=kill,") && line.contains(",caps=none,no_new_privs)"),
        "{line}"
    );
    let err = mp
        .join("socket")
        .metadata()
        .expect_err("the lookup must fail");
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::ENOTCONN | libc::ECONNABORTED)
        ),
        "lookup after the server died: {err}"
    );
    let refused = server.wait_line("fuselage: sandbox: refused syscall");
    assert_eq!(
        refused,
        format!(
            "fuselage: sandbox: refused syscall {} (socket): stopping the server (--sandbox)",
            libc::SYS_socket
        )
    );
    let status = server.wait_exit();
    assert_eq!(
        status.code(),
        Some(fuselage::sandbox::KILLED_STATUS),
        "{:?}",
        server.seen
    );
    assert!(
        wait_until(Duration::from_secs(10), || !is_mountpoint(&mp)),
        "the watchdog did not unmount after the server died"
    );
}

/// Log mode: the refused syscall fails with EPERM, is named, and the
/// server goes on.
fn log_mode_fails_with_eperm(transport: &str) {
    let dir = traversable_tempdir();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let mut server = Server::start(transport, "log", &mp);
    let line = server.wait_line("fuselage: mounted ");
    assert!(line.contains(" sandbox=on(seccomp=log,"), "{line}");
    expect_errno(
        mp.join("socket").metadata(),
        libc::EPERM,
        "lookup of socket",
    );
    let refused = server.wait_line("fuselage: sandbox: refused syscall");
    assert_eq!(
        refused,
        format!(
            "fuselage: sandbox: refused syscall {} (socket): failed with EPERM (--sandbox=log)",
            libc::SYS_socket
        )
    );
    // Still serving.
    expect_errno(mp.join("other").metadata(), libc::ENOENT, "lookup of other");
    assert!(mp.metadata().unwrap().is_dir());
    lazy_unmount(&mp);
    let status = server.wait_exit();
    assert!(status.success(), "{status}: {:?}", server.seen);
}

/// `unshare` is allowed only with `CLONE_FS`: a new mount namespace is
/// refused by the filter (named on stderr), not only for want of
/// CAP_SYS_ADMIN (which alone would fail it silently).
fn unshare_only_for_a_worker_umask(transport: &str) {
    let dir = traversable_tempdir();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let mut server = Server::start_probe("unshare-probe", transport, "log", &mp);
    server.wait_line("fuselage: mounted ");
    expect_errno(
        mp.join("unshare-fs").metadata(),
        libc::ENOENT,
        "unshare(CLONE_FS)",
    );
    expect_errno(
        mp.join("unshare-ns").metadata(),
        libc::EPERM,
        "unshare(CLONE_NEWNS)",
    );
    let refused = server.wait_line("fuselage: sandbox: refused syscall");
    assert_eq!(
        refused,
        format!(
            "fuselage: sandbox: refused syscall {} (unshare): failed with EPERM (--sandbox=log)",
            libc::SYS_unshare
        )
    );
    assert!(
        !server
            .seen
            .iter()
            .any(|l| l.contains("refused") && l != &refused),
        "more than one refusal: {:?}",
        server.seen
    );
    lazy_unmount(&mp);
    let status = server.wait_exit();
    assert!(status.success(), "{status}: {:?}", server.seen);
}

every_transport!(
    kill_mode_names_and_stops,
    log_mode_fails_with_eperm,
    unshare_only_for_a_worker_umask
);
