//! The conventions of the Linux toolbox, through real mounts: the form
//! mount(8) calls through mount.fuse3 (`fuselage SOURCE MOUNTPOINT -o
//! OPTIONS`), `mount -t fuse.fuselage` and fstab lines with `mount -a` (in
//! private mount namespaces, where a `fuselage` is put on the helper's
//! PATH), detaching once live versus `-f`, readiness on `NOTIFY_SOCKET`,
//! debug lines, and the one-line refusal of a bad `-o`.
//!
//! Every test that mounts holds a guard that unmounts lazily on drop (and,
//! for the namespace tests, ends any server left behind), also on panic.

mod common;

use common::*;
use std::fs;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Lazily unmounts a mountpoint on drop and ends every `fuselage` whose
/// command line names it (a detached server is nobody's child).
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        lazy_unmount(&self.0);
        for pid in servers_of(&self.0) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        lazy_unmount(&self.0);
    }
}

/// Processes (other than zombies) whose command line mentions `path`.
fn servers_of(path: &Path) -> Vec<i32> {
    let want = path.as_os_str().as_encoded_bytes();
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let zombie = fs::read_to_string(entry.path().join("stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        });
        if !zombie
            && cmdline
                .split(|&b| b == 0)
                .next()
                .is_some_and(|argv0| argv0.ends_with(b"fuselage"))
            && cmdline.windows(want.len()).any(|w| w == want)
        {
            pids.push(pid);
        }
    }
    pids
}

fn run(cmd: Command, what: &str) -> Finished {
    BoundedChild::spawn(cmd).finish(Duration::from_secs(30), what)
}

fn mountpoint(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    let p = dir.path().join(name);
    fs::create_dir(&p).unwrap();
    p
}

#[test]
fn bad_dash_o_is_refused_with_one_line() {
    let dir = traversable_tempdir();
    let mnt = mountpoint(&dir, "mnt");
    let m = mnt.to_str().unwrap();
    for (args, want) in [
        (
            vec!["memory", m, "-o", "rw,bogus"],
            "fuselage: unknown mount option '-o bogus'",
        ),
        (
            vec!["mount", "-o", "allow_other,frobnicate=3", m],
            "fuselage: unknown mount option '-o frobnicate=3'",
        ),
        (
            vec!["mount", "-o", "transport=carrier-pigeon", m],
            "fuselage: invalid value 'carrier-pigeon' for -o transport",
        ),
        (
            vec!["memory", m, "-o", "ro=yes"],
            "fuselage: mount option '-o ro=yes' takes no value",
        ),
        (
            vec!["/no/such/dir", m],
            "fuselage: '/no/such/dir' is neither",
        ),
    ] {
        let mut cmd = Command::new(fuselage_bin());
        cmd.args(&args);
        let out = run(cmd, "fuselage with a bad option");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "{args:?}: one line, got {lines:?}");
        assert!(lines[0].starts_with(want), "{args:?}: {lines:?}");
        assert!(!is_mountpoint(&mnt), "{args:?} mounted something");
    }
}

#[test]
fn detaches_once_live_or_fails_with_the_error() {
    if !require_fuse() {
        return;
    }
    let dir = traversable_tempdir();
    let mnt = mountpoint(&dir, "mnt");
    let _guard = MountGuard(mnt.clone());
    let mut cmd = Command::new(fuselage_bin());
    cmd.arg("memory")
        .arg(&mnt)
        .args(["-o", "size=16M,transport=blocking,noexec"]);
    let out = run(cmd, "fuselage memory MNT (background)");
    assert!(out.status.success(), "{out:?}");
    // The parent returned only once the mount was live, and said nothing.
    let entry = mount_entry(&mnt).expect("mounted when the parent exits");
    assert!(
        entry.contains(" - fuse.fuselage memory ") && entry.contains("noexec"),
        "{entry}"
    );
    assert_eq!(out.stderr, "", "a mount helper is quiet on success");
    fs::write(mnt.join("f"), b"served in the background").unwrap();
    assert_eq!(
        fs::read(mnt.join("f")).unwrap(),
        b"served in the background"
    );
    let servers = servers_of(&mnt);
    assert_eq!(
        servers.len(),
        2,
        "the server and its auto-unmount watchdog: {servers:?}"
    );

    // umount ends the detached server.
    let st = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(st.success());
    assert!(
        wait_until(Duration::from_secs(10), || servers_of(&mnt).is_empty()),
        "server still running after umount: {:?}",
        servers_of(&mnt)
    );

    // A failure before the mount is live: the parent exits non-zero with
    // the child's error line.
    let missing = dir.path().join("missing");
    let mut cmd = Command::new(fuselage_bin());
    cmd.arg("memory").arg(&missing);
    let out = run(cmd, "fuselage memory MISSING");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("fuselage: ") && lines[0].contains("missing"),
        "{lines:?}"
    );
}

#[test]
fn foreground_with_dash_f() {
    if !require_fuse() {
        return;
    }
    let dir = traversable_tempdir();
    let src = mountpoint(&dir, "src");
    fs::write(src.join("hello"), b"from the host").unwrap();
    let mnt = mountpoint(&dir, "mnt");
    let mut cmd = Command::new(fuselage_bin());
    cmd.arg(&src)
        .arg(&mnt)
        .args(["-f", "-o", "transport=blocking,passthrough=off,ro"]);
    let mut server = ServerProcess::spawn(cmd);
    let _guard = MountGuard(mnt.clone());
    let line = server.wait_for_line(MOUNTED_PREFIX, MOUNT_TIMEOUT);
    assert!(
        line.contains("backend=passthrough transport=blocking") && line.contains("passthrough=off"),
        "{line}"
    );
    // It stays in the foreground, serving.
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.try_wait().is_none(), "-f must not detach");
    assert_eq!(fs::read(mnt.join("hello")).unwrap(), b"from the host");
    let err = fs::write(mnt.join("new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let entry = mount_entry(&mnt).unwrap();
    assert!(
        entry.contains(&format!(" - fuse.fuselage {} ro,", src.display())),
        "{entry}"
    );
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(EXIT_TIMEOUT).expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(!is_mountpoint(&mnt));
}

/// Runs `script` with bash in a private mount namespace in which `fuselage`
/// is found on the default PATH that mount.fuse3's shell uses (mount(8)
/// drops the caller's PATH), by binding a directory holding a symlink to the
/// binary under test over /usr/local/sbin. Nothing leaks out: the namespace
/// is private, the script unmounts what it mounted on exit, and the guards
/// end any server left.
fn in_private_namespace(dir: &Path, script: &str) -> Finished {
    let bin = dir.join("bin");
    fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(fuselage_bin(), bin.join("fuselage")).unwrap();
    let full = format!(
        "set -eu\nmount --bind {} /usr/local/sbin\n{script}",
        bin.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "bash", "-c", &full]);
    run(cmd, "the namespace script")
}

fn namespace_tools() -> bool {
    require_fuse()
        && require_program("unshare")
        && require_program("mount")
        && require(
            Path::new("/sbin/mount.fuse3")
                .exists()
                .then_some(())
                .ok_or_else(|| "mount.fuse3 is not installed (apt-get install fuse3)".to_string()),
        )
}

#[test]
fn mount_t_fuse_fuselage_with_options() {
    if !namespace_tools() {
        return;
    }
    let dir = traversable_tempdir();
    let mnt = mountpoint(&dir, "mnt");
    let _guard = MountGuard(mnt.clone());
    let m = mnt.display();
    let out = in_private_namespace(
        dir.path(),
        &format!(
            "trap 'umount -l {m} 2>/dev/null || true' EXIT\n\
             mount -t fuse.fuselage memory {m} -o allow_other,noexec,noatime,size=8M,transport=blocking,threads=1\n\
             grep ' {m} ' /proc/self/mountinfo\n\
             echo hello > {m}/f\n\
             cat {m}/f\n\
             stat -f -c 'blocks=%b bsize=%S' {m}\n\
             umount {m}\n\
             echo unmounted\n"
        ),
    );
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{out:?}");
    let entry = lines[0];
    for word in [
        "noexec",
        "noatime",
        "- fuse.fuselage memory ",
        "allow_other",
    ] {
        assert!(entry.contains(word), "{word} missing in {entry}");
    }
    // mount.fuse3 adds dev,suid for root: passed through to the kernel.
    assert!(
        !entry.contains("nosuid") && !entry.contains("nodev"),
        "{entry}"
    );
    assert_eq!(lines[1], "hello");
    // size=8M: 2048 blocks of 4 KiB.
    assert_eq!(lines[2], "blocks=2048 bsize=4096", "{out:?}");
    assert_eq!(lines[3], "unmounted");
    assert!(
        wait_until(Duration::from_secs(10), || servers_of(&mnt).is_empty()),
        "server left after umount"
    );
}

#[test]
fn fstab_lines_with_mount_a() {
    if !namespace_tools() {
        return;
    }
    let dir = traversable_tempdir();
    let mem = mountpoint(&dir, "mem");
    let pass = mountpoint(&dir, "pass");
    let src = mountpoint(&dir, "src");
    fs::write(src.join("from-host"), b"x").unwrap();
    let _guards = (MountGuard(mem.clone()), MountGuard(pass.clone()));
    let fstab = dir.path().join("fstab");
    fs::write(
        &fstab,
        format!(
            "# fuselage\n\
             memory {} fuse.fuselage ro,nosuid,nodev,noexec,nofail,_netdev,size=4M 0 0\n\
             {} {} fuse.fuselage transport=blocking,passthrough=off,allow_other 0 0\n",
            mem.display(),
            src.display(),
            pass.display()
        ),
    )
    .unwrap();
    let (mm, pm, f) = (mem.display(), pass.display(), fstab.display());
    let out = in_private_namespace(
        dir.path(),
        &format!(
            "trap 'umount -l {mm} {pm} 2>/dev/null || true' EXIT\n\
             mount -a -T {f}\n\
             mount -a -T {f}\n\
             grep -c -e ' {mm} ' -e ' {pm} ' /proc/self/mountinfo\n\
             grep ' {mm} ' /proc/self/mountinfo\n\
             grep ' {pm} ' /proc/self/mountinfo\n\
             ls {pm}\n\
             if touch {mm}/x 2>/dev/null; then echo writable; else echo read-only; fi\n\
             umount {mm} {pm}\n"
        ),
    );
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{out:?}");
    // The second `mount -a` saw both mounted and left them alone.
    assert_eq!(lines[0], "2", "{out:?}");
    assert!(
        lines[1].contains(" ro,")
            && lines[1].contains("noexec")
            && lines[1].contains("fuse.fuselage memory"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(&format!("fuse.fuselage {} rw,", src.display()))
            && lines[2].contains("allow_other"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "from-host");
    assert_eq!(lines[4], "read-only");
}

/// Receives one datagram within `timeout`.
fn recv(socket: &UnixDatagram, timeout: Duration) -> Option<String> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn notify_socket_ready_and_stopping() {
    if !require_fuse() {
        return;
    }
    let dir = traversable_tempdir();

    // A path socket, the `mount` form in the foreground, stopped by SIGTERM.
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mnt = mountpoint(&dir, "mnt");
    let mut cmd = Command::new(fuselage_bin());
    cmd.args(["mount", "--transport", "blocking"])
        .arg(&mnt)
        .env("NOTIFY_SOCKET", &path);
    let mut server = ServerProcess::spawn(cmd);
    let _guard = MountGuard(mnt.clone());
    assert_eq!(
        recv(&socket, MOUNT_TIMEOUT).as_deref(),
        Some("READY=1"),
        "stderr: {:?}",
        server.stderr_lines()
    );
    assert!(is_mountpoint(&mnt), "READY=1 before the mount is live");
    fs::write(mnt.join("f"), b"x").unwrap();
    server.signal(libc::SIGTERM);
    assert_eq!(recv(&socket, EXIT_TIMEOUT).as_deref(), Some("STOPPING=1"));
    assert!(server.wait_exit(EXIT_TIMEOUT).is_some_and(|s| s.success()));
    assert_eq!(
        recv(&socket, Duration::from_millis(300)),
        None,
        "one STOPPING=1"
    );

    // An abstract socket (`@name`), the mount.fuse form detached, stopped by umount.
    let name = format!("fuselage-test-notify-{}", std::process::id());
    let socket =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    let mnt2 = mountpoint(&dir, "mnt2");
    let _guard2 = MountGuard(mnt2.clone());
    let mut cmd = Command::new(fuselage_bin());
    cmd.arg("memory")
        .arg(&mnt2)
        .args(["-o", "transport=blocking"])
        .env("NOTIFY_SOCKET", format!("@{name}"));
    let out = run(cmd, "fuselage memory MNT2");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        recv(&socket, Duration::from_secs(1)).as_deref(),
        Some("READY=1")
    );
    assert!(
        Command::new("umount")
            .arg(&mnt2)
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(recv(&socket, EXIT_TIMEOUT).as_deref(), Some("STOPPING=1"));
}

/// `fuselage[debug]: OPCODE unique=N nodeid=N in=N out=N errno=E us=N`.
fn debug_line<'a>(lines: &'a [String], opcode: &str, errno: &str) -> Option<&'a String> {
    lines.iter().find(|l| {
        let Some(rest) = l.strip_prefix("fuselage[debug]: ") else {
            return false;
        };
        let words: Vec<&str> = rest.split(' ').collect();
        words.len() == 7
            && words[0] == opcode
            && words[1].starts_with("unique=")
            && words[2].starts_with("nodeid=")
            && words[3].starts_with("in=")
            && words[4].starts_with("out=")
            && words[5] == format!("errno={errno}")
            && words[6]
                .strip_prefix("us=")
                .is_some_and(|n| n.parse::<u64>().is_ok())
    })
}

#[test]
fn debug_shows_each_request_and_reply() {
    if !require_fuse() {
        return;
    }
    let dir = traversable_tempdir();
    for (i, how) in ["-o debug", "-d", "FUSELAGE_LOG=debug"]
        .into_iter()
        .enumerate()
    {
        let mnt = mountpoint(&dir, &format!("mnt{i}"));
        let mut cmd = if how.starts_with("FUSELAGE_LOG") {
            let mut c = Command::new("env");
            c.arg(how).arg(fuselage_bin()).arg("mount");
            c
        } else {
            let mut c = Command::new(fuselage_bin());
            c.arg("mount").args(how.split(' '));
            c
        };
        cmd.args(["--transport", "blocking", "--threads", "1"])
            .arg(&mnt);
        let mut server = ServerProcess::spawn(cmd);
        let _guard = MountGuard(mnt.clone());
        server.wait_for_line(MOUNTED_PREFIX, MOUNT_TIMEOUT);
        fs::write(mnt.join("file"), b"12345").unwrap();
        assert_eq!(fs::read(mnt.join("file")).unwrap(), b"12345");
        let c = cpath(&mnt.join("file"));
        let mut buf = [0u8; 16];
        // SAFETY: valid NUL-terminated strings and a buffer of the given size.
        let r = unsafe {
            libc::getxattr(
                c.as_ptr(),
                c"user.none".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!((r, errno()), (-1, libc::ENODATA));
        server.signal(libc::SIGTERM);
        server.wait_exit(EXIT_TIMEOUT);
        server.drain_stderr(EXIT_TIMEOUT);
        let lines = server.stderr_lines();
        for (opcode, errno) in [
            ("INIT", "0"),
            ("CREATE", "0"),
            ("WRITE", "0"),
            ("READ", "0"),
            ("GETXATTR", "ENODATA"),
        ] {
            assert!(
                debug_line(&lines, opcode, errno).is_some(),
                "{how}: no {opcode} line with errno={errno} in:\n{}",
                lines.join("\n")
            );
        }
        let write = debug_line(&lines, "WRITE", "0").unwrap();
        // WRITE of 5 bytes: 40 (header) + 40 (fuse_write_in) + 5 in, 16 + 8 out.
        assert!(write.contains(" in=85 out=24 "), "{write}");
    }
}

#[test]
fn no_debug_lines_by_default() {
    if !require_fuse() {
        return;
    }
    let started = Instant::now();
    let mut mounted = MountedFs::mount(
        &Setup {
            backend: Backend::Memfs,
            transport: "blocking",
            options: &[],
        },
        &["-o", "allow_other"],
    );
    fs::write(mounted.join("f"), b"x").unwrap();
    mounted.server().signal(libc::SIGTERM);
    mounted.server().wait_exit(EXIT_TIMEOUT);
    mounted.server().drain_stderr(EXIT_TIMEOUT);
    let lines = mounted.stderr_lines();
    assert_eq!(lines.len(), 1, "only the mounted line: {lines:?}");
    assert!(lines[0].starts_with(MOUNTED_PREFIX));
    assert!(started.elapsed() < Duration::from_secs(30));
}
