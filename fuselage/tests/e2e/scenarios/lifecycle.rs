//! The server's life: the line it prints once mounted, SIGTERM and SIGKILL,
//! mounting without auto-unmount, through fusermount3 as another user, and
//! inside a user namespace.

use super::*;
use crate::common::*;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// The startup line names the mountpoint, backend, transport, thread count
/// and passthrough state in the contract's words, and comes exactly once.
pub fn mounted_line(setup: &Setup) {
    let fs = MountedFs::mount(setup, &["--threads", "3"]);
    let line = fs.mounted_line().to_string();
    let prefix = format!("fuselage: mounted {} ", fs.path().display());
    let rest = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"));
    let (words, fallback) = match rest.split_once(" (fallback: ") {
        Some((w, f)) => (w, Some(f)),
        None => (rest, None),
    };
    if let Some(f) = fallback {
        assert!(
            f.ends_with(')') && f.len() > 1,
            "malformed fallback in {line:?}"
        );
    }
    let mut words: Vec<&str> = words.split(' ').collect();
    // Native io_uring names its polling after the backend's words:
    // `poll=50us` (adaptive, the default) or `poll=off`.
    let poll = words
        .iter()
        .position(|w| w.starts_with("poll="))
        .map(|i| words.remove(i)["poll=".len()..].to_string());
    // Backends that name their parts (an overlay's layers, the routes) add
    // `key=value` words after the four every line has.
    let mut extra = match setup.backend {
        Backend::Overlay => vec!["upper", "lower1"],
        Backend::Router => vec!["route"],
        _ => vec![],
    };
    // --sandbox rows say what the confined server kept.
    if setup.options.iter().any(|o| o.starts_with("--sandbox")) {
        extra.push("sandbox");
        let word = words.last().copied().unwrap_or_default();
        let end = if namespace_row(setup) {
            ",no_new_privs,mountns=private)"
        } else {
            ",no_new_privs)"
        };
        assert!(
            word.starts_with("sandbox=on(seccomp=") && word.ends_with(end),
            "expected sandbox=on(seccomp=...,syscalls=N,caps=...{end} last in {line:?}"
        );
        let caps = word.split(",caps=").nth(1).unwrap_or_default();
        if setup.backend == Backend::Memfs {
            assert!(
                caps.starts_with("none,"),
                "memfs keeps no capability: {line:?}"
            );
        } else {
            assert!(caps.contains("setuid"), "host files keep setuid: {line:?}");
        }
    }
    assert_eq!(
        words.len(),
        4 + extra.len(),
        "expected backend= transport= threads= passthrough= {extra:?} in {line:?}"
    );
    for (word, key) in words[4..].iter().zip(&extra) {
        assert!(
            word.strip_prefix(key).is_some_and(|v| v.starts_with('=')),
            "expected {key}= in {line:?}"
        );
    }
    assert_eq!(
        words[0],
        format!("backend={}", setup.backend.name()),
        "in {line:?}"
    );
    let transport = words[1]
        .strip_prefix("transport=")
        .unwrap_or_else(|| panic!("no transport= in {line:?}"));
    if setup.transport == "auto" {
        assert!(
            ["uring", "uring-rw", "blocking"].contains(&transport),
            "bad transport in {line:?}"
        );
    } else {
        assert_eq!(transport, setup.transport, "in {line:?}");
    }
    let threads: usize = words[2]
        .strip_prefix("threads=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no threads=N in {line:?}"));
    if transport == "uring" {
        // Native io_uring has one queue per possible CPU whatever --threads says.
        assert!(threads > 0, "in {line:?}");
        assert_eq!(
            poll.as_deref(),
            Some(match setup.options {
                [.., "--poll-us", "0"] => "off",
                _ => "50us",
            }),
            "native io_uring names its polling in {line:?}"
        );
    } else {
        assert_eq!(threads, 3, "--threads 3 in {line:?}");
        assert_eq!(poll, None, "only native io_uring polls: {line:?}");
    }
    let passthrough = words[3]
        .strip_prefix("passthrough=")
        .unwrap_or_else(|| panic!("no passthrough= in {line:?}"));
    assert!(
        ["on", "off"].contains(&passthrough),
        "bad passthrough in {line:?}"
    );
    if setup.backend == Backend::Memfs {
        assert_eq!(
            passthrough, "off",
            "memfs has no host files to pass through: {line:?}"
        );
    }
    let mounted = fs
        .stderr_lines()
        .iter()
        .filter(|l| l.starts_with(MOUNTED_PREFIX))
        .count();
    assert_eq!(
        mounted,
        1,
        "the mounted line must come exactly once: {:?}",
        fs.stderr_lines()
    );
    assert!(
        fs.is_mounted(),
        "{} is not in /proc/self/mountinfo",
        fs.path().display()
    );
}

/// SIGTERM while files are open: the server unmounts lazily and exits 0.
pub fn sigterm_with_open_files(setup: &Setup) {
    let mut fs = MountedFs::mount(setup, &[]);
    let p = fs.join("open");
    let mut f = File::create(&p).expect("create");
    f.write_all(b"still open").expect("write");
    let dir = File::open(fs.path()).expect("open the root directory");
    fs.server().signal(libc::SIGTERM);
    let status = fs.server().wait_exit(EXIT_TIMEOUT);
    let status = status.unwrap_or_else(|| {
        panic!(
            "the server did not exit within {EXIT_TIMEOUT:?} of SIGTERM; stderr: {:?}",
            fs.stderr_lines()
        )
    });
    assert!(
        status.success(),
        "exit status after SIGTERM: {status} (stderr: {:?})",
        fs.stderr_lines()
    );
    assert!(
        wait_until(Duration::from_secs(5), || !fs.is_mounted()),
        "{} still in /proc/self/mountinfo after the server exited",
        fs.path().display()
    );
    drop((f, dir));
}

/// SIGKILL while another thread reads a large file in a loop: the reader
/// fails promptly with an errno of `dead_server_errno`, and auto-unmount
/// removes the mount within about 5 s.
pub fn sigkill_during_read(setup: &Setup) {
    let mut fs = MountedFs::mount(setup, &[]);
    let p = fs.join("large");
    let mut f = File::create(&p).expect("create");
    let chunk = pattern(15, 0, MIB as usize);
    for _ in 0..64 {
        f.write_all(&chunk).expect("write");
    }
    drop(f);

    let reads = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    {
        let reads = reads.clone();
        let stop = stop.clone();
        let fd = open_raw(&p, libc::O_RDONLY | libc::O_DIRECT, 0).expect("open O_DIRECT");
        std::thread::spawn(move || {
            // 128 KiB: the size of the kernel's own readahead requests.
            let mut buf = AlignedBuf::page_aligned((128 * KIB) as usize);
            let mut off = 0u64;
            let err = loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                match pread_full(fd.as_raw_fd(), &mut buf, off) {
                    Ok(_) => {
                        reads.fetch_add(1, Ordering::Relaxed);
                        off = (off + 128 * KIB) % (64 * MIB);
                    }
                    Err(e) => break e,
                }
            };
            let _ = tx.send((err, Instant::now()));
        });
    }
    assert!(
        wait_until(Duration::from_secs(10), || reads.load(Ordering::Relaxed)
            >= 20),
        "the reader made only {} reads in 10 s",
        reads.load(Ordering::Relaxed)
    );
    if fs.mounted_line().contains(" passthrough=on") {
        // Kernel passthrough: the open file reads the host file directly, so
        // the reader neither fails nor hangs when the server dies; the mount
        // itself must still go away.
        fs.server().signal(libc::SIGKILL);
        let before = reads.load(Ordering::Relaxed);
        assert!(
            wait_until(Duration::from_secs(5), || reads.load(Ordering::Relaxed)
                >= before + 20),
            "a passthrough-opened file stopped reading after SIGKILL of the server"
        );
        assert!(
            rx.try_recv().is_err(),
            "a passthrough read failed after SIGKILL"
        );
        let gone = wait_until(Duration::from_secs(5), || !fs.is_mounted());
        stop.store(true, Ordering::Relaxed);
        assert!(
            gone,
            "auto-unmount did not remove {} within 5 s of SIGKILL",
            fs.path().display()
        );
        return;
    }
    let killed = Instant::now();
    fs.server().signal(libc::SIGKILL);
    let (err, when) = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| {
        panic!("the reader still blocked 5 s after SIGKILL of the server (a hang)")
    });
    assert!(
        when >= killed,
        "the reader failed before the server was killed: {err} ({:?})",
        err.raw_os_error().map(errno_name)
    );
    // Nothing of the server runs after SIGKILL, so every errno accepted here
    // is the kernel's, not the server's.
    let errno = err.raw_os_error();
    assert!(
        dead_server_errno(&fs, errno),
        "the reader got {err} ({:?}), expected an errno of dead_server_errno",
        errno.map(errno_name)
    );
    eprintln!(
        "reader failed {:?} after SIGKILL with {err}",
        when.duration_since(killed)
    );
    let gone = wait_until(Duration::from_secs(5), || !fs.is_mounted());
    assert!(
        gone,
        "auto-unmount did not remove {} within 5 s of SIGKILL",
        fs.path().display()
    );
}

/// --no-auto-unmount: a killed server leaves a dead mount (ENOTCONN), which
/// the guard then removes.
pub fn no_auto_unmount(setup: &Setup) {
    if namespace_row(setup) {
        // A server in a private mount namespace cannot unmount: the
        // combination is refused before anything is mounted.
        return refused_before_mounting(setup, &["--no-auto-unmount"], None, "--sandbox-namespace");
    }
    let mut fs = MountedFs::mount(setup, &["--no-auto-unmount"]);
    write(&fs.join("f"), b"x");
    fs.server().signal(libc::SIGKILL);
    assert!(
        fs.server().wait_exit(EXIT_TIMEOUT).is_some(),
        "server not dead after SIGKILL"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        fs.is_mounted(),
        "with --no-auto-unmount the dead mount must stay"
    );
    expect_errno(lstat(&fs.join("f")), libc::ENOTCONN, "stat in a dead mount");
    let path = fs.path().to_path_buf();
    fs.cleanup();
    assert!(
        !is_mountpoint(&path),
        "the guard did not remove the dead mount"
    );
}

/// The server run as uid 65534 mounts through the setuid fusermount3
/// (/dev/fuse is 0600), serves that user, and exits 0 after
/// `fusermount3 -u -z`.
pub fn unprivileged_fusermount3(setup: &Setup) {
    if !require_program("fusermount3") || !require_program("setpriv") {
        return;
    }
    if namespace_row(setup) {
        // A private mount namespace needs root: refused up front.
        return refused_before_mounting(setup, &[], Some(NOBODY), "needs root");
    }
    // fusermount3 opens /dev/fuse as the calling user: a server started
    // while that is refused must say so in one line; then open it to all.
    let _dev_fuse = DevFuseForAll::acquire(|mode| {
        if mode & 0o006 == 0o006 {
            return;
        }
        let dir = traversable_tempdir();
        let mp = dir.path().join("mnt");
        fs::create_dir(&mp).expect("mkdir");
        chown(&mp, NOBODY, NOBODY);
        let args = start_args(setup, dir.path(), &[]);
        // The served directories are the user's own (an overlay checks its
        // upper before it asks for /dev/fuse).
        for served in ["src", "lower"] {
            if dir.path().join(served).exists() {
                chown(&dir.path().join(served), NOBODY, NOBODY);
            }
        }
        let mut cmd = Command::new("setpriv");
        cmd.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            fuselage_bin(),
        ])
        .args(args)
        .arg(&mp);
        let out = run_bounded(
            cmd,
            EXIT_TIMEOUT,
            "an unprivileged server without /dev/fuse access",
        );
        let what = format!("uid 65534 serving while /dev/fuse is {mode:o}");
        assert!(!out.status.success(), "{what}: exit status {}", out.status);
        let lines = out.stderr_lines();
        assert_eq!(
            lines.len(),
            1,
            "{what}: expected one line on stderr, got {lines:?}"
        );
        assert!(
            lines[0].starts_with("fuselage: ") && lines[0].contains("/dev/fuse"),
            "{what}: {:?}",
            lines[0]
        );
        assert!(!is_mountpoint(&mp), "{what}: something got mounted");
    });
    let mut fs = MountedFs::mount_with(
        setup,
        MountConfig {
            run_as: Some(NOBODY),
            ..MountConfig::default()
        },
    );
    let entry = mount_entry(fs.path()).expect("the mount is in /proc/self/mountinfo");
    let after_dash = entry.split(" - ").nth(1).unwrap_or("");
    assert!(
        after_dash.starts_with("fuse"),
        "filesystem type in {entry:?}"
    );
    assert!(
        after_dash.contains("user_id=65534"),
        "not mounted for uid 65534: {entry:?}"
    );
    // Without --allow-other even root is kept out.
    expect_errno(
        lstat(&fs.join("x")),
        libc::EACCES,
        "root looking into uid 65534's mount",
    );

    let file = cpath(&fs.join("f"));
    let dir = cpath(&fs.join("d"));
    let r = run_as::<7>(NOBODY, NOBODY, |out| {
        // SAFETY: raw syscalls on valid C strings and stack buffers.
        unsafe {
            let fd = libc::open(
                file.as_ptr(),
                libc::O_CREAT | libc::O_RDWR | libc::O_EXCL,
                0o644,
            );
            out[0] = sys(fd);
            if fd >= 0 {
                out[1] = sys(libc::write(fd, b"unprivileged".as_ptr().cast(), 12));
                let mut buf = [0u8; 32];
                out[2] = sys(libc::pread(fd, buf.as_mut_ptr().cast(), 32, 0));
                out[3] = i64::from(buf[..12] == *b"unprivileged");
                let mut st: libc::stat = std::mem::zeroed();
                libc::fstat(fd, &mut st);
                out[4] = i64::from(st.st_uid);
                out[5] = i64::from(st.st_gid);
                libc::close(fd);
            }
            out[6] = sys(libc::mkdir(dir.as_ptr(), 0o755));
        }
    });
    assert!(r[0] >= 0, "uid 65534 creating a file: {}", show(r[0]));
    assert_eq!(
        (r[1], r[2], r[3]),
        (12, 12, 1),
        "uid 65534 writing and reading back"
    );
    assert_eq!(
        (r[4], r[5]),
        (i64::from(NOBODY), i64::from(NOBODY)),
        "owner of the new file"
    );
    assert_eq!(r[6], 0, "uid 65534 mkdir: {}", show(r[6]));

    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        "fusermount3",
        "-u",
        "-z",
    ])
    .arg(fs.path());
    let out = run_bounded(cmd, EXIT_TIMEOUT, "fusermount3 -u -z");
    assert!(
        out.status.success(),
        "fusermount3 -u -z as uid 65534: {out:?}"
    );
    let status = fs.server().wait_exit(EXIT_TIMEOUT);
    let status = status.unwrap_or_else(|| {
        panic!(
            "the server did not exit after fusermount3 -u; stderr: {:?}",
            fs.stderr_lines()
        )
    });
    assert!(
        status.success(),
        "exit status after unmount: {status}; stderr: {:?}",
        fs.stderr_lines()
    );
    assert!(!fs.is_mounted(), "still mounted after fusermount3 -u -z");
}

/// The server in a user namespace (`unshare -Urm`): the mount lives in the
/// child's mount namespace only; checks run inside it.
pub fn user_namespace(setup: &Setup) {
    if !require_program("unshare") {
        return;
    }
    let probe = run_bounded(
        {
            let mut c = Command::new("unshare");
            c.args(["-Urm", "--propagation", "private", "true"]);
            c
        },
        EXIT_TIMEOUT,
        "unshare -Urm true",
    );
    if !require(if probe.status.success() {
        Ok(())
    } else {
        Err(format!(
            "unshare -Urm does not work here: {}",
            probe.stderr.trim()
        ))
    }) {
        return;
    }
    let dir = traversable_tempdir();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).expect("mkdir");
    let source = setup.backend.make_source(dir.path());
    const SCRIPT: &str = r#"
bin=$1; mp=$2; dir=$3; shift 3
"$bin" "$@" "$mp" 2>"$dir/err" &
pid=$!
i=0
until grep -q '^fuselage: mounted ' "$dir/err" 2>/dev/null; do
    i=$((i + 1))
    if ! kill -0 "$pid" 2>/dev/null; then echo "server died"; cat "$dir/err"; exit 4; fi
    if [ "$i" -gt 300 ]; then echo "no mounted line"; cat "$dir/err"; kill -9 "$pid"; exit 3; fi
    sleep 0.05
done
echo "line: $(grep '^fuselage: mounted ' "$dir/err")"
echo "uid: $(id -u)"
echo data > "$mp/f" || echo "write failed"
echo "read: $(cat "$mp/f")"
echo "ls: $(ls "$mp")"
if grep -q " $mp " /proc/self/mountinfo; then echo "mounted inside"; fi
: > "$dir/inside"
i=0
while [ ! -e "$dir/go" ] && [ "$i" -lt 400 ]; do i=$((i + 1)); sleep 0.05; done
kill -TERM "$pid"
wait "$pid"
echo "exit=$?"
"#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-Urm",
        "--propagation",
        "private",
        "sh",
        "-c",
        SCRIPT,
        "sh",
        fuselage_bin(),
    ])
    .arg(&mp)
    .arg(dir.path())
    .args(mount_args(setup, source.as_deref(), &[]));
    let mut child = BoundedChild::spawn(cmd);
    let inside = dir.path().join("inside");
    let ready = wait_until(Duration::from_secs(30), || {
        inside.exists() || child.wait(Duration::ZERO).is_some()
    });
    assert!(
        ready,
        "the namespace script did not get through its checks in 30 s; stdout:\n{}",
        child.stdout()
    );
    assert!(
        inside.exists(),
        "the namespace script stopped early; stdout:\n{}\nstderr:\n{}",
        child.stdout(),
        child.stderr()
    );
    assert!(
        !is_mountpoint(&mp),
        "the namespaced mount leaked into our mount namespace"
    );
    fs::write(dir.path().join("go"), b"").expect("signal the script");
    let out = child.finish(Duration::from_secs(20), "unshare script");
    let stdout = &out.stdout;
    let err_log = fs::read_to_string(dir.path().join("err")).unwrap_or_default();
    let context = format!(
        "stdout:\n{stdout}\nstderr:\n{}\nserver stderr:\n{err_log}",
        out.stderr
    );
    assert!(out.status.success(), "{context}");
    assert!(
        stdout.contains(&format!(
            "line: fuselage: mounted {} backend=",
            mp.display()
        )),
        "{context}"
    );
    assert!(stdout.contains("uid: 0"), "{context}");
    assert!(stdout.contains("read: data"), "{context}");
    assert!(stdout.contains("ls: f"), "{context}");
    assert!(stdout.contains("mounted inside"), "{context}");
    assert!(
        stdout.contains("exit=0"),
        "the server's exit status after SIGTERM; {context}"
    );
    assert!(!is_mountpoint(&mp));
}

/// The errno a client may see for a request the server will never answer
/// because it died: ENOTCONN or ECONNABORTED; or, with native
/// FUSE-over-io_uring, ECANCELED from the kernel tearing the dead task's
/// ring entries down (see shared/fuse-abi-notes.md, "Teardown"); or, with a
/// transport that moves requests by read/write on the channel (blocking,
/// io_uring read/write), EIO for a request caught in a copy when the server
/// died.
fn dead_server_errno(fs: &MountedFs, errno: Option<i32>) -> bool {
    let native_uring = fs.mounted_line().contains(" transport=uring ");
    // A read of /dev/fuse copies the request into the server's memory, a
    // reply's writev copies out of it. When SIGKILL tears that memory down
    // under the copy, the kernel ends the request with EIO (fs/fuse/dev.c,
    // fuse_dev_do_read and fuse_dev_do_write: a failed copy of the arguments
    // sets `req->out.h.error = -EIO`). Seen in full CI runs on uring-rw
    // (session 7) and on blocking (`sandbox_memfs_blocking`, session 8).
    matches!(errno, Some(libc::ENOTCONN) | Some(libc::ECONNABORTED))
        || (native_uring && errno == Some(libc::ECANCELED))
        || (!native_uring && errno == Some(libc::EIO))
}

/// SIGKILL while another thread writes (O_DIRECT, so each write is a
/// request the server must answer) in a loop: the writer fails promptly
/// with an errno of `dead_server_errno`, never a hang, and auto-unmount
/// removes the mount.
pub fn sigkill_during_write(setup: &Setup) {
    let mut fs = MountedFs::mount(setup, &[]);
    let p = fs.join("written");
    let writes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    {
        let writes = writes.clone();
        let stop = stop.clone();
        let fd = open_raw(&p, libc::O_CREAT | libc::O_WRONLY | libc::O_DIRECT, 0o644)
            .expect("create O_DIRECT");
        std::thread::spawn(move || {
            let mut buf = AlignedBuf::page_aligned((128 * KIB) as usize);
            fill_pattern(16, 0, &mut buf);
            let mut off = 0u64;
            let err = loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                match pwrite_full(fd.as_raw_fd(), &buf, off) {
                    Ok(()) => {
                        writes.fetch_add(1, Ordering::Relaxed);
                        off = (off + 128 * KIB) % (16 * MIB);
                    }
                    Err(e) => break e,
                }
            };
            let _ = tx.send((err, Instant::now()));
        });
    }
    assert!(
        wait_until(Duration::from_secs(10), || writes.load(Ordering::Relaxed)
            >= 20),
        "the writer made only {} writes in 10 s",
        writes.load(Ordering::Relaxed)
    );
    if fs.mounted_line().contains(" passthrough=on") {
        // Kernel passthrough: the open file writes the host file directly,
        // so the writer goes on; the mount itself must still go away.
        fs.server().signal(libc::SIGKILL);
        let before = writes.load(Ordering::Relaxed);
        let more = wait_until(Duration::from_secs(5), || {
            writes.load(Ordering::Relaxed) >= before + 20
        });
        let failed = rx.try_recv().ok();
        let gone = wait_until(Duration::from_secs(5), || !fs.is_mounted());
        stop.store(true, Ordering::Relaxed);
        assert!(
            more,
            "a passthrough-opened file stopped writing after SIGKILL of the server"
        );
        assert!(
            failed.is_none(),
            "a passthrough write failed after SIGKILL: {failed:?}"
        );
        assert!(
            gone,
            "auto-unmount did not remove {} within 5 s of SIGKILL",
            fs.path().display()
        );
        return;
    }
    let killed = Instant::now();
    fs.server().signal(libc::SIGKILL);
    let (err, when) = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| {
        panic!("the writer still blocked 5 s after SIGKILL of the server (a hang)")
    });
    assert!(
        when >= killed,
        "the writer failed before the server was killed: {err} ({:?})",
        err.raw_os_error().map(errno_name)
    );
    assert!(
        dead_server_errno(&fs, err.raw_os_error()),
        "the writer got {err} ({:?}), expected an errno of dead_server_errno",
        err.raw_os_error().map(errno_name)
    );
    eprintln!(
        "writer failed {:?} after SIGKILL with {err}",
        when.duration_since(killed)
    );
    assert!(
        wait_until(Duration::from_secs(5), || !fs.is_mounted()),
        "auto-unmount did not remove {} within 5 s of SIGKILL",
        fs.path().display()
    );
}

/// After a SIGKILLed server's mount is lazily removed (auto-unmount), a new
/// server mounts on the same mountpoint and serves: the host files of a
/// source row are all there, and files opened in the dead mount fail with
/// ENOTCONN, not a hang.
pub fn remount_after_sigkill(setup: &Setup) {
    let mut fs = MountedFs::mount(setup, &[]);
    write(&fs.join("before"), b"written before the kill");
    let stale = File::open(fs.join("before")).expect("open before the kill");
    fs.server().signal(libc::SIGKILL);
    assert!(
        fs.server().wait_exit(EXIT_TIMEOUT).is_some(),
        "server not dead after SIGKILL"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !fs.is_mounted()),
        "auto-unmount did not remove {} within 5 s of SIGKILL",
        fs.path().display()
    );
    fs.remount();
    assert!(
        fs.is_mounted(),
        "the new server's mount is not in mountinfo"
    );
    write(&fs.join("after"), b"written after the remount");
    assert_eq!(read(&fs.join("after")), b"written after the remount");
    if setup.backend.has_source() {
        assert_eq!(
            read(&fs.join("before")),
            b"written before the kill",
            "a host file written through the first server, read through the second"
        );
    }
    // The descriptor opened through the dead connection stays dead (kernel
    // passthrough reads the host file directly, so it may still work).
    let mut buf = [0u8; 8];
    // SAFETY: a valid descriptor and a writable buffer of the given length.
    let r = unsafe { libc::pread(stale.as_raw_fd(), buf.as_mut_ptr().cast(), 8, 0) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        assert!(
            dead_server_errno(&fs, e.raw_os_error()),
            "a file opened in the dead mount: {e}"
        );
    }
    fs.server().signal(libc::SIGTERM);
    let status = fs.server().wait_exit(EXIT_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.success()),
        "the second server's exit after SIGTERM: {status:?}; stderr: {:?}",
        fs.stderr_lines()
    );
}

/// The kernel aborts the connection (`echo 1 > /sys/fs/fuse/connections/N/abort`)
/// while a file is open: clients get ENOTCONN, and the server exits with
/// status 0, saying in one line that the connection was aborted, and
/// removes the dead mount.
pub fn fusectl_abort(setup: &Setup) {
    let fusectl = fuselage_linux::mount::ensure_fusectl()
        .map_err(|e| e.to_string())
        .and_then(|ok| ok.then_some(()).ok_or("fusectl cannot be mounted".into()));
    if !require(fusectl) {
        return;
    }
    let mut fs = MountedFs::mount(setup, &[]);
    write(&fs.join("f"), b"data");
    let open = File::open(fs.join("f")).expect("open");
    let id = fuselage_linux::mount::connection_id(fs.path()).expect("the connection id");
    fs::write(format!("/sys/fs/fuse/connections/{id}/abort"), "1").expect("write abort");
    // ENOTCONN from the dead mount; unless the server, quick to see the
    // abort, has already removed it, and the lookup found the empty
    // directory beneath.
    let lookup = lstat(&fs.join("missing"));
    let already_gone =
        matches!(&lookup, Err(e) if e.raw_os_error() == Some(libc::ENOENT)) && !fs.is_mounted();
    if !already_gone {
        expect_errno(lookup, libc::ENOTCONN, "a lookup after the abort");
    }
    let status = fs.server().wait_exit(EXIT_TIMEOUT).unwrap_or_else(|| {
        panic!(
            "the server did not exit within {EXIT_TIMEOUT:?} of the abort; stderr: {:?}",
            fs.stderr_lines()
        )
    });
    fs.server().drain_stderr(Duration::from_secs(2));
    let lines = fs.stderr_lines();
    assert!(
        status.success(),
        "exit status after the abort: {status}; stderr: {lines:?}"
    );
    let after: Vec<&String> = lines
        .iter()
        .skip_while(|l| !l.starts_with(MOUNTED_PREFIX))
        .skip(1)
        .collect();
    assert_eq!(
        after.len(),
        1,
        "expected one line about the abort after the mounted line: {lines:?}"
    );
    assert!(
        after[0].starts_with("fuselage: ") && after[0].contains("aborted"),
        "{:?}",
        after[0]
    );
    assert!(
        wait_until(Duration::from_secs(5), || !fs.is_mounted()),
        "the dead mount {} is still there after the server exited",
        fs.path().display()
    );
    drop(open);
}

/// The host unmounts the mountpoint (`umount -l`) under a running server:
/// the session ends and the server exits 0, saying nothing about an abort.
/// First, what the server sees of the host: with `--sandbox-namespace` a
/// root holding only `proc` and a mount table of two mounts (the read-only
/// tmpfs root and `/proc`), otherwise the host's root with the mount in its
/// table. (A server in a private namespace that kept a copy of the FUSE mount
/// would hold the superblock, and the host's unmount would not end it.)
pub fn host_unmount_ends_the_server(setup: &Setup) {
    let mut fs = MountedFs::mount(setup, &[]);
    write(&fs.join("f"), b"data");
    let pid = fs.pid();
    let root: Vec<String> = fs::read_dir(format!("/proc/{pid}/root"))
        .expect("the server's root")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let mounts: Vec<&str> = mountinfo.lines().collect();
    if namespace_row(setup) {
        assert_eq!(root, ["proc"], "the server's root");
        assert_eq!(mounts.len(), 2, "the server's mounts: {mountinfo}");
        let fields = |line: &str| -> (String, String) {
            let f: Vec<&str> = line.split(' ').collect();
            (f[4].to_string(), f[5].to_string())
        };
        let (point, options) = fields(mounts[0]);
        assert_eq!(point, "/", "{mountinfo}");
        assert!(
            options.starts_with("ro,"),
            "the root is writable: {mountinfo}"
        );
        assert_eq!(fields(mounts[1]).0, "/proc", "{mountinfo}");
    } else {
        assert_eq!(
            fs::read_link(format!("/proc/{pid}/root")).expect("readlink"),
            Path::new("/")
        );
        let mp = fs.path().display().to_string();
        assert!(
            mounts
                .iter()
                .any(|l| l.split(' ').nth(4) == Some(mp.as_str())),
            "{mp} not in the server's mount table"
        );
    }
    lazy_unmount(fs.path());
    let status = fs.server().wait_exit(EXIT_TIMEOUT).unwrap_or_else(|| {
        panic!(
            "the server did not exit within {EXIT_TIMEOUT:?} of the host's unmount; stderr: {:?}",
            fs.stderr_lines()
        )
    });
    fs.server().drain_stderr(Duration::from_secs(1));
    let lines = fs.stderr_lines();
    assert!(status.success(), "exit status: {status}; stderr: {lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("aborted")),
        "an unmount taken for an abort: {lines:?}"
    );
    assert!(!fs.is_mounted());
}

/// Whether the row runs with `--sandbox-namespace`.
fn namespace_row(setup: &Setup) -> bool {
    setup.options.contains(&"--sandbox-namespace")
}

/// The row's server with `extra` options (as uid `run_as`, through
/// `setpriv`) exits 2 with one line on stderr containing `says`, and
/// nothing gets mounted.
fn refused_before_mounting(setup: &Setup, extra: &[&str], run_as: Option<u32>, says: &str) {
    let dir = traversable_tempdir();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).expect("mkdir");
    let args = start_args(setup, dir.path(), extra);
    let mut cmd = match run_as {
        Some(uid) => {
            chown(&mp, uid, uid);
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                fuselage_bin(),
            ]);
            c
        }
        None => Command::new(fuselage_bin()),
    };
    cmd.args(args).arg(&mp);
    let out = run_bounded(cmd, EXIT_TIMEOUT, "a server refusing its options");
    assert_eq!(out.status.code(), Some(2), "exit status: {}", out.status);
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got {lines:?}");
    assert!(
        lines[0].contains(says),
        "{:?} does not say {says:?}",
        lines[0]
    );
    assert!(!is_mountpoint(&mp), "something got mounted");
}
