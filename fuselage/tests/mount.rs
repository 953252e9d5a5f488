//! End-to-end mount tests: real FUSE mounts served by a tiny hand-rolled server.
//!
//! Tests that mount need root and an openable `/dev/fuse`; without them they print why and
//! pass, unless `FUSELAGE_REQUIRE_FUSE=1`, which turns every such skip into a failure.
//!
//! Some scenarios need another process (one that gets SIGKILLed, one running as an
//! unprivileged user, one inside a user namespace). They re-execute this test binary running
//! only [`reexec_child_entry`], with the scenario in environment variables.
//!
//! Nothing waits unboundedly: stats run in helper threads with a deadline, the server thread
//! reports over a channel read with a timeout, and children are polled and killed on timeout.
//! Every mount is covered by an [`UnmountGuard`] that lazily unmounts on drop, even on panic.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use fuselage_linux::channel::{self, Channel, ChannelKind};
use fuselage_linux::error::MountError;
use fuselage_linux::mount::{self, Mount, MountMethod, MountOptions};
use fuselage_testkit::skip;

const ROLE_ENV: &str = "FUSELAGE_TEST_CHILD_ROLE";
const MOUNTPOINT_ENV: &str = "FUSELAGE_TEST_CHILD_MOUNTPOINT";
const AUTO_UNMOUNT_ENV: &str = "FUSELAGE_TEST_CHILD_AUTO_UNMOUNT";
const EXPECT_METHOD_ENV: &str = "FUSELAGE_TEST_CHILD_EXPECT_METHOD";
const MARKER: &str = "FUSELAGE-CHILD:";
const CHILD_TEST: &str = "reexec_child_entry";
const NOBODY: u32 = 65534;

/// Size the test server reports for the root, to prove an answer came from it.
const ROOT_SIZE: u64 = 4242;

// ---------------------------------------------------------------------------------------------
// Skipping

/// Reports a missing prerequisite of `test` under the test kit's skip policy:
/// one line and a pass normally, a failure under FUSELAGE_REQUIRE_FUSE=1.
fn skip(test: &str, reason: &str) {
    skip::require(Err(format!("{test}: {reason}")));
}

/// True if this process can mount with mount(2): root and /dev/fuse openable.
fn can_mount(test: &str) -> bool {
    skip::require(skip::fuse_available().map_err(|why| format!("{test}: {why}")))
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Waits (bounded) for a background `apt-get install fuse3` to provide fusermount3.
fn fusermount3_available(test: &str) -> bool {
    let deadline =
        Instant::now() + Duration::from_secs(if skip::skipping_forbidden() { 60 } else { 2 });
    loop {
        if find_program("fusermount3").is_some() {
            return true;
        }
        if Instant::now() >= deadline {
            skip(test, "fusermount3 is not installed (apt-get install fuse3)");
            return false;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// Guards and waiting

/// Lazily unmounts whatever FUSE filesystem is at the path when dropped (even on panic).
struct UnmountGuard(PathBuf);

impl Drop for UnmountGuard {
    fn drop(&mut self) {
        if let Err(e) = mount::lazy_unmount(&self.0) {
            eprintln!("guard: unmounting {} failed: {e}", self.0.display());
        }
    }
}

/// A temporary directory with a `mnt` directory inside, both reachable by other users.
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).expect("mkdir mnt");
    (dir, mp)
}

/// Runs `f` on a helper thread and waits at most `limit` for it.
fn with_deadline<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

fn stat_with_deadline(path: &Path) -> io::Result<fs::Metadata> {
    let p = path.to_path_buf();
    with_deadline(
        &format!("stat {}", path.display()),
        Duration::from_secs(10),
        move || fs::metadata(p),
    )
}

fn poll_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// True if /proc/self/mountinfo has a line whose mount point field is `path`.
fn mountinfo_lists(path: &Path) -> bool {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let wanted = path.to_str().expect("utf-8 path");
    text.lines()
        .any(|line| line.split(' ').nth(4) == Some(wanted))
}

// ---------------------------------------------------------------------------------------------
// A minimal FUSE server: INIT, GETATTR of the root, ENOSYS for everything else.

const FUSE_FORGET: u32 = 2;
const FUSE_GETATTR: u32 = 3;
const FUSE_INIT: u32 = 26;
const FUSE_BATCH_FORGET: u32 = 42;
const OUR_MINOR: u32 = 45;
const MAX_WRITE: u32 = 128 * 1024;

#[derive(Debug, Default)]
struct Served {
    init: bool,
    getattr: u32,
    other: u32,
    /// The loop ended with ENODEV (unmounted), not with an error.
    unmounted: bool,
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn out_header(len: usize, error: i32, unique: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4..8].copy_from_slice(&error.to_le_bytes());
    h[8..16].copy_from_slice(&unique.to_le_bytes());
    h
}

/// `fuse_init_out`, 64 bytes.
fn init_out(kernel_minor: u32, max_readahead: u32) -> [u8; 64] {
    let mut o = [0u8; 64];
    o[0..4].copy_from_slice(&7u32.to_le_bytes()); // major
    o[4..8].copy_from_slice(&kernel_minor.min(OUR_MINOR).to_le_bytes()); // minor
    o[8..12].copy_from_slice(&max_readahead.to_le_bytes());
    // flags (12..16) = 0: no optional features.
    o[16..18].copy_from_slice(&16u16.to_le_bytes()); // max_background
    o[18..20].copy_from_slice(&12u16.to_le_bytes()); // congestion_threshold
    o[20..24].copy_from_slice(&MAX_WRITE.to_le_bytes()); // max_write
    o[24..28].copy_from_slice(&1u32.to_le_bytes()); // time_gran
    o
}

/// `fuse_attr_out`, 104 bytes, for the root inode.
fn attr_out(mode: u32) -> [u8; 104] {
    let mut o = [0u8; 104];
    o[0..8].copy_from_slice(&1u64.to_le_bytes()); // attr_valid (s)
    let a = 16; // fuse_attr
    o[a..a + 8].copy_from_slice(&1u64.to_le_bytes()); // ino
    o[a + 8..a + 16].copy_from_slice(&ROOT_SIZE.to_le_bytes()); // size
    o[a + 60..a + 64].copy_from_slice(&mode.to_le_bytes()); // mode
    let nlink: u32 = if mode & libc::S_IFMT == libc::S_IFDIR {
        2
    } else {
        1
    };
    o[a + 64..a + 68].copy_from_slice(&nlink.to_le_bytes());
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    o[a + 68..a + 72].copy_from_slice(&uid.to_le_bytes());
    o[a + 72..a + 76].copy_from_slice(&gid.to_le_bytes());
    o[a + 80..a + 84].copy_from_slice(&4096u32.to_le_bytes()); // blksize
    o
}

fn serve(channel: &Channel, root_mode: u32) -> io::Result<Served> {
    let mut buf = vec![0u8; MAX_WRITE as usize + 4096];
    let mut served = Served::default();
    loop {
        let n = match channel.receive(&mut buf) {
            Ok(0) => return Ok(served),
            Ok(n) => n,
            Err(e) if channel::is_unmounted(&e) => {
                served.unmounted = true;
                return Ok(served);
            }
            Err(e) => return Err(e),
        };
        let req = &buf[..n];
        let opcode = le_u32(req, 4);
        let unique = le_u64(req, 8);
        let nodeid = le_u64(req, 16);
        let result = match opcode {
            FUSE_INIT => {
                served.init = true;
                let body = init_out(le_u32(req, 44), le_u32(req, 48));
                channel.send(&[&out_header(16 + body.len(), 0, unique), &body])
            }
            FUSE_GETATTR if nodeid == 1 => {
                served.getattr += 1;
                let body = attr_out(root_mode);
                channel.send(&[&out_header(16 + body.len(), 0, unique), &body])
            }
            FUSE_FORGET | FUSE_BATCH_FORGET => continue,
            _ => {
                served.other += 1;
                channel.send(&[&out_header(16, -libc::ENOSYS, unique)])
            }
        };
        match result {
            Ok(()) => {}
            Err(e) if channel::is_interrupted_reply(&e) => {}
            Err(e) if channel::is_unmounted(&e) => {
                served.unmounted = true;
                return Ok(served);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The server thread's result, read with a deadline.
struct ServerHandle(mpsc::Receiver<io::Result<Served>>);

impl ServerHandle {
    fn spawn(channel: Channel, root_mode: u32) -> ServerHandle {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(serve(&channel, root_mode));
        });
        ServerHandle(rx)
    }

    fn finish(self, limit: Duration) -> Served {
        match self.0.recv_timeout(limit) {
            Ok(Ok(served)) => served,
            Ok(Err(e)) => panic!("server loop failed: {e}"),
            Err(_) => panic!("server loop did not end within {limit:?} after unmount"),
        }
    }
}

/// Mounts `mp`, serves it, checks a stat goes through the server, unmounts, and checks the
/// mount is gone and the server saw the unmount.
fn mount_serve_unmount(mp: &Path, opts: &MountOptions, expect: MountMethod) {
    let mut m = Mount::new(mp, opts).unwrap_or_else(|e| panic!("mount {}: {e}", mp.display()));
    let _guard = UnmountGuard(m.mountpoint().to_path_buf());
    assert_eq!(m.method(), expect);
    assert!(m.is_mounted());
    assert!(mount::is_fuse_mounted(mp), "not in mountinfo after mount");
    assert!(mountinfo_lists(m.mountpoint()));
    let root_mode = if opts.expect_file {
        libc::S_IFREG | 0o644
    } else {
        libc::S_IFDIR | 0o755
    };
    let channel = m.channel().expect("channel");
    assert_eq!(channel.kind(), ChannelKind::Device);
    let server = ServerHandle::spawn(channel, root_mode);

    let meta = stat_with_deadline(mp).unwrap_or_else(|e| panic!("stat through the mount: {e}"));
    assert_eq!(meta.len(), ROOT_SIZE, "stat did not come from our server");
    assert_eq!(meta.is_dir(), !opts.expect_file);
    assert_eq!(meta.ino(), 1);

    m.unmount().unwrap_or_else(|e| panic!("unmount: {e}"));
    m.unmount().expect("second unmount is a no-op");
    assert!(!m.is_mounted());
    assert!(
        !mount::is_fuse_mounted(mp),
        "still a FUSE mount after unmount"
    );
    assert!(!mountinfo_lists(m.mountpoint()), "mountinfo still lists it");

    let served = server.finish(Duration::from_secs(5));
    assert!(served.init, "no INIT seen: {served:?}");
    assert!(served.getattr >= 1, "no GETATTR seen: {served:?}");
    assert!(served.unmounted, "server did not see ENODEV: {served:?}");
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// Lines of a child's stdout, gathered by a reader thread.
struct ChildOutput {
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl ChildOutput {
    fn new(child: &mut Child) -> ChildOutput {
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildOutput {
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a marker line starting with `MARKER prefix`.
    fn wait_for(&mut self, prefix: &str, limit: Duration) -> Option<String> {
        let wanted = format!("{MARKER} {prefix}");
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    // libtest prints "test NAME ... " without a newline before our output.
                    let hit = line.find(&wanted).map(|at| line[at..].to_owned());
                    self.seen.push(line);
                    if hit.is_some() {
                        return hit;
                    }
                }
                Err(_) => return None,
            }
        }
    }

    fn transcript(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

/// Re-runs this test binary (optionally under `wrapper`, e.g. setpriv or unshare) executing
/// only [`reexec_child_entry`] in `role`.
fn spawn_child(wrapper: &[&str], role: &str, mp: &Path, env: &[(&str, &str)]) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .env(MOUNTPOINT_ENV, mp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("spawning child: {e}"))
}

/// Waits (bounded) for a child to exit; kills it on timeout.
fn wait_child(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not exit within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Entry point of re-executed children; a no-op in a normal test run.
#[test]
fn reexec_child_entry() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let mp = PathBuf::from(std::env::var_os(MOUNTPOINT_ENV).expect("mountpoint env"));
    match role.as_str() {
        "mount-and-wait" => {
            let auto_unmount = std::env::var(AUTO_UNMOUNT_ENV).map_or(true, |v| v != "0");
            let opts = MountOptions {
                auto_unmount,
                ..MountOptions::default()
            };
            let m = Mount::new(&mp, &opts).unwrap_or_else(|e| panic!("child mount: {e}"));
            println!(
                "{MARKER} mounted {:?} pid={}",
                m.method(),
                std::process::id()
            );
            io::stdout().flush().expect("flush");
            // The parent kills us; if it vanished instead, give up eventually (and unmount).
            thread::sleep(Duration::from_secs(60));
        }
        "serve-cycle" => {
            let expect = match std::env::var(EXPECT_METHOD_ENV).as_deref() {
                Ok("Fusermount") => MountMethod::Fusermount,
                _ => MountMethod::Syscall,
            };
            mount_serve_unmount(&mp, &MountOptions::default(), expect);
            println!("{MARKER} ok {expect:?}");
            io::stdout().flush().expect("flush");
        }
        other => panic!("unknown child role {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn mountpoint_errors_are_specific() {
    let (_dir, mp) = scratch();
    let missing = mp.join("missing");
    match Mount::new(&missing, &MountOptions::default()) {
        Err(e @ MountError::MountpointMissing(_)) => {
            assert_eq!(e.errno(), libc::ENOENT);
            assert!(e.to_string().contains("does not exist"));
        }
        other => panic!("expected MountpointMissing, got {other:?}"),
    }
    let file = mp.join("file");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(
        Mount::new(&file, &MountOptions::default()),
        Err(MountError::NotADirectory(_))
    ));
    let file_opts = MountOptions {
        expect_file: true,
        ..MountOptions::default()
    };
    assert!(matches!(
        Mount::new(&mp, &file_opts),
        Err(MountError::NotARegularFile(_))
    ));
}

#[test]
fn syscall_mount_serves_stat_and_unmounts() {
    if !can_mount("syscall_mount_serves_stat_and_unmounts") {
        return;
    }
    let (_dir, mp) = scratch();
    let opts = MountOptions {
        subtype: Some("fuselagetest".into()),
        ..MountOptions::default()
    };
    mount_serve_unmount(&mp, &opts, MountMethod::Syscall);
}

#[test]
fn syscall_mount_on_regular_file_served_by_cloned_fd() {
    if !can_mount("syscall_mount_on_regular_file_served_by_cloned_fd") {
        return;
    }
    let (dir, _) = scratch();
    let mp = dir.path().join("file");
    fs::write(&mp, b"underneath").unwrap();
    let opts = MountOptions {
        expect_file: true,
        ..MountOptions::default()
    };
    let mut m = Mount::new(&mp, &opts).unwrap_or_else(|e| panic!("mount: {e}"));
    let _guard = UnmountGuard(m.mountpoint().to_path_buf());
    let main = m.channel().unwrap();
    let clone = main
        .clone_device()
        .unwrap_or_else(|e| panic!("FUSE_DEV_IOC_CLONE: {e}"));
    assert_eq!(clone.kind(), ChannelKind::Device);
    let server = ServerHandle::spawn(clone, libc::S_IFREG | 0o644);
    let meta = stat_with_deadline(&mp).unwrap_or_else(|e| panic!("stat: {e}"));
    assert!(meta.is_file());
    assert_eq!(meta.len(), ROOT_SIZE);

    // The connection id names the fusectl directory.
    let id = mount::connection_id(&mp).expect("connection id");
    assert_eq!(Some(id), m.connection_id());
    if mount::ensure_fusectl().expect("fusectl") {
        let ctl = Path::new(mount::FUSECTL_DIR).join(id.to_string());
        assert!(ctl.join("abort").exists(), "{} missing", ctl.display());
    }

    m.unmount().unwrap();
    assert!(!mount::is_fuse_mounted(&mp));
    let served = server.finish(Duration::from_secs(5));
    assert!(served.init && served.unmounted, "{served:?}");
    assert_eq!(fs::read(&mp).unwrap(), b"underneath");
}

#[test]
fn second_mount_on_same_path_is_already_mounted() {
    if !can_mount("second_mount_on_same_path_is_already_mounted") {
        return;
    }
    let (dir, mp) = scratch();
    // No server: nothing in Mount::new may touch the mounted filesystem, or this would hang.
    let first = Mount::new(&mp, &MountOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let _guard = UnmountGuard(first.mountpoint().to_path_buf());
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&mp, &link).unwrap();
    for path in [mp.clone(), link] {
        let p = path.clone();
        let second = with_deadline("second mount", Duration::from_secs(10), move || {
            Mount::new(&p, &MountOptions::default())
        });
        match second {
            Err(e @ MountError::AlreadyMounted(_)) => assert_eq!(e.errno(), libc::EBUSY),
            other => panic!("{}: expected AlreadyMounted, got {other:?}", path.display()),
        }
    }
    drop(first);
    assert!(!mount::is_fuse_mounted(&mp));
}

#[test]
fn watchdog_unmounts_after_sigkill() {
    if !can_mount("watchdog_unmounts_after_sigkill") {
        return;
    }
    let (_dir, mp) = scratch();
    let _guard = UnmountGuard(mp.clone());
    let mut child = spawn_child(&[], "mount-and-wait", &mp, &[(AUTO_UNMOUNT_ENV, "1")]);
    let mut out = ChildOutput::new(&mut child);
    let line = out.wait_for("mounted", Duration::from_secs(20));
    if line.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("child never mounted:\n{}", out.transcript());
    }
    assert!(line.unwrap().contains("Syscall"));
    assert!(mount::is_fuse_mounted(&mp), "child's mount not visible");
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
    assert!(
        poll_until(Duration::from_secs(5), || !mount::is_fuse_mounted(&mp)),
        "mount still present 5 s after the server was killed"
    );
}

#[test]
fn without_auto_unmount_a_dead_mount_stays() {
    if !can_mount("without_auto_unmount_a_dead_mount_stays") {
        return;
    }
    let (_dir, mp) = scratch();
    let _guard = UnmountGuard(mp.clone());
    let mut child = spawn_child(&[], "mount-and-wait", &mp, &[(AUTO_UNMOUNT_ENV, "0")]);
    let mut out = ChildOutput::new(&mut child);
    if out.wait_for("mounted", Duration::from_secs(20)).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("child never mounted:\n{}", out.transcript());
    }
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
    thread::sleep(Duration::from_millis(500));
    assert!(
        mount::is_fuse_mounted(&mp),
        "mount vanished without auto_unmount"
    );
    let err = stat_with_deadline(&mp).expect_err("stat of a dead mount");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    assert!(matches!(
        Mount::new(&mp, &MountOptions::default()),
        Err(MountError::AlreadyMounted(_))
    ));
    mount::lazy_unmount(&mp).expect("lazy_unmount");
    assert!(!mount::is_fuse_mounted(&mp));
    mount::lazy_unmount(&mp).expect("lazy_unmount of nothing is fine");
}

/// Prerequisites of the unprivileged tests: root (to chown, mknod and switch user),
/// fusermount3, setpriv, unshare.
fn can_run_as_nobody(test: &str) -> bool {
    if !can_mount(test) || !fusermount3_available(test) {
        return false;
    }
    for program in ["setpriv", "unshare", "mknod", "sh"] {
        if find_program(program).is_none() {
            skip(test, &format!("{program} is not installed"));
            return false;
        }
    }
    true
}

/// Runs its arguments as user nobody in a private mount namespace whose /dev/fuse is a
/// world-accessible node: fusermount3 opens /dev/fuse with the caller's rights, and machines
/// without udev (containers, CI VMs) leave it at mode 0600. The real /dev/fuse is not touched.
///
/// `$1` is a scratch directory for the node; with FUSELAGE_TEST_HOLD=1 the namespace is kept
/// alive (by a sleeping process, pid = the spawned one) after the command ends, so the test
/// can watch what fusermount3 does in it.
const NOBODY_SCRIPT: &str = r#"
set -e
dev="$1"; shift
mount -t tmpfs -o mode=755,size=64k fuselage-test-dev "$dev"
mknod -m 666 "$dev/fuse" c "$FUSELAGE_TEST_DEV_MAJOR" "$FUSELAGE_TEST_DEV_MINOR"
mount --bind "$dev/fuse" /dev/fuse
set +e
setpriv --reuid=65534 --regid=65534 --clear-groups "$@" &
wait $!
status=$?
if [ "${FUSELAGE_TEST_HOLD:-0}" = 1 ]; then exec sleep 30; fi
exit $status
"#;

/// A child running `role` as nobody (see [`NOBODY_SCRIPT`]); `mp` is chowned to nobody.
fn spawn_nobody_child(
    dir: &Path,
    role: &str,
    mp: &Path,
    hold: bool,
    env: &[(&str, &str)],
) -> Child {
    std::os::unix::fs::chown(mp, Some(NOBODY), Some(NOBODY)).expect("chown");
    let dev_dir = dir.join("dev");
    fs::create_dir(&dev_dir).expect("mkdir dev");
    let rdev = fs::metadata("/dev/fuse").expect("stat /dev/fuse").rdev();
    let major = libc::major(rdev).to_string();
    let minor = libc::minor(rdev).to_string();
    let dev_dir = dev_dir.to_str().expect("utf-8 path").to_owned();
    let wrapper = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        NOBODY_SCRIPT,
        "sh",
        &dev_dir,
    ];
    let mut env: Vec<(&str, &str)> = env.to_vec();
    env.push(("FUSELAGE_TEST_DEV_MAJOR", &major));
    env.push(("FUSELAGE_TEST_DEV_MINOR", &minor));
    env.push(("FUSELAGE_TEST_HOLD", if hold { "1" } else { "0" }));
    spawn_child(&wrapper, role, mp, &env)
}

/// Whether a FUSE filesystem is mounted at `path` in the mount namespace of process `pid`.
fn fuse_mounted_in(pid: u32, path: &Path) -> bool {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
        return false; // the namespace (its last process) is gone, and its mounts with it
    };
    let wanted = path.to_str().expect("utf-8 path");
    text.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let fstype = fields
            .iter()
            .position(|f| *f == "-")
            .and_then(|i| fields.get(i + 1));
        fields.get(4) == Some(&wanted) && fstype.is_some_and(|t| t.starts_with("fuse"))
    })
}

#[test]
fn fusermount_mount_as_unprivileged_user() {
    let test = "fusermount_mount_as_unprivileged_user";
    if !can_run_as_nobody(test) {
        return;
    }
    let (dir, mp) = scratch();
    let mut child = spawn_nobody_child(
        dir.path(),
        "serve-cycle",
        &mp,
        false,
        &[(EXPECT_METHOD_ENV, "Fusermount")],
    );
    let mut out = ChildOutput::new(&mut child);
    let ok = out.wait_for("ok Fusermount", Duration::from_secs(30));
    let status = wait_child(&mut child, Duration::from_secs(30));
    assert!(
        ok.is_some() && status.success(),
        "unprivileged child failed ({status}):\n{}",
        out.transcript()
    );
}

#[test]
fn fusermount_auto_unmount_after_sigkill() {
    let test = "fusermount_auto_unmount_after_sigkill";
    if !can_run_as_nobody(test) {
        return;
    }
    let (dir, mp) = scratch();
    let mut holder = spawn_nobody_child(
        dir.path(),
        "mount-and-wait",
        &mp,
        true,
        &[(AUTO_UNMOUNT_ENV, "1")],
    );
    let ns_pid = holder.id();
    let mut out = ChildOutput::new(&mut holder);
    let line = out.wait_for("mounted", Duration::from_secs(20));
    let Some(line) = line else {
        let _ = holder.kill();
        let _ = holder.wait();
        panic!("child never mounted:\n{}", out.transcript());
    };
    assert!(line.contains("Fusermount"), "{line}");
    let server_pid: libc::pid_t = line
        .rsplit("pid=")
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line}"));
    assert!(
        fuse_mounted_in(ns_pid, &mp),
        "mount not visible in the child's namespace"
    );
    // SAFETY: kill only sends a signal to the server process we started.
    assert_eq!(unsafe { libc::kill(server_pid, libc::SIGKILL) }, 0);
    let gone = poll_until(Duration::from_secs(5), || !fuse_mounted_in(ns_pid, &mp));
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        gone,
        "fusermount3 did not remove the mount 5 s after the server was killed"
    );
}

#[test]
fn mount_inside_user_namespace() {
    let test = "mount_inside_user_namespace";
    if !can_mount(test) {
        return;
    }
    if find_program("unshare").is_none() {
        skip(test, "unshare is not installed (util-linux)");
        return;
    }
    let probe = Command::new("unshare")
        .args(["-Urm", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        skip(
            test,
            "user namespaces are not available (unshare -Urm true failed)",
        );
        return;
    }
    let (_dir, mp) = scratch();
    let mut child = spawn_child(
        &["unshare", "-Urm"],
        "serve-cycle",
        &mp,
        &[(EXPECT_METHOD_ENV, "Syscall")],
    );
    let mut out = ChildOutput::new(&mut child);
    let ok = out.wait_for("ok Syscall", Duration::from_secs(30));
    let status = wait_child(&mut child, Duration::from_secs(30));
    assert!(
        ok.is_some() && status.success(),
        "user-namespace child failed ({status}):\n{}",
        out.transcript()
    );
    // The mount lived in the child's private mount namespace only.
    assert!(!mount::is_fuse_mounted(&mp));
}

#[test]
fn adopted_dev_fuse_fd_serves_without_unmounting() {
    if !can_mount("adopted_dev_fuse_fd_serves_without_unmounting") {
        return;
    }
    let (_dir, mp) = scratch();
    let mut m = Mount::new(&mp, &MountOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let _guard = UnmountGuard(m.mountpoint().to_path_buf());
    let fd_path = format!("/dev/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&m.fd()));
    let mut adopted = Mount::from_fd_path(&fd_path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(adopted.method(), MountMethod::ExistingFd);
    let channel = adopted.channel().unwrap();
    assert_eq!(channel.kind(), ChannelKind::Device);
    let server = ServerHandle::spawn(channel, libc::S_IFDIR | 0o755);
    let meta = stat_with_deadline(&mp).unwrap_or_else(|e| panic!("stat: {e}"));
    assert_eq!(meta.len(), ROOT_SIZE);
    adopted.unmount().unwrap();
    drop(adopted);
    assert!(
        mount::is_fuse_mounted(&mp),
        "an adopted fd must never unmount"
    );
    m.unmount().unwrap();
    assert!(server.finish(Duration::from_secs(5)).unmounted);
}

#[test]
fn adopted_socket_fd_is_never_unmounted() {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds socketpair writes.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0);
    let mut m = Mount::from_fd_path(format!("/dev/fd/{}", fds[0])).expect("adopt");
    assert_eq!(m.method(), MountMethod::ExistingFd);
    let channel = m.channel().unwrap();
    assert_eq!(channel.kind(), ChannelKind::SeqPacket);
    m.unmount().unwrap();
    drop(m);
    // SAFETY: closing the two fds created above, each once.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}
