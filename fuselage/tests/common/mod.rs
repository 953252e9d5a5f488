//! Shared machinery of fuselage's end-to-end tests: which backend and
//! transport a row runs ([`Setup`]), a mounted `fuselage` process that is
//! always torn down ([`MountedFs`]), the skip-or-fail rule for missing FUSE
//! ([`require_fuse`]), and small syscall helpers.
//!
//! Every wait here is bounded: a test fails with what it saw instead of
//! hanging.
#![allow(dead_code)]

use std::ffi::{CStr, CString};
use std::fs::{self, Permissions};
use std::io::{self, BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to print its `fuselage: mounted ` line.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a server may take to exit once told to.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The user and group "nobody" runs as in the privilege scenarios.
pub const NOBODY: u32 = 65534;

/// The prefix of the line a live server prints once on stderr.
pub const MOUNTED_PREFIX: &str = "fuselage: mounted ";

// ---------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------

/// The filesystem a row serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The in-memory filesystem (no `--source`).
    Memfs,
    /// The host passthrough (`--source DIR`, a fresh temporary directory),
    /// kernel FUSE_PASSTHROUGH as `--passthrough auto` decides (on as root).
    Passthrough,
    /// The host passthrough with kernel passthrough off (`--passthrough off`):
    /// every read and write goes through the server (splice for large reads).
    PassthroughNoKernel,
    /// The overlay: `--lower DIR/lower --upper DIR/src`, an empty lower under
    /// an upper in a fresh temporary directory (so the row's "source", where
    /// written files land on the host, is the upper).
    Overlay,
    /// The in-memory filesystem with another memfs routed at `/routed`
    /// (`--route /routed=memory`): every request passes the router.
    Router,
}

impl Backend {
    /// The `backend=` word of the mounted line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Memfs => "memfs",
            Backend::Passthrough | Backend::PassthroughNoKernel => "passthrough",
            Backend::Overlay => "overlay",
            Backend::Router => "router",
        }
    }

    /// Whether the row serves host files (a directory the test can look
    /// into: `--source`, or the overlay's upper).
    pub fn has_source(self) -> bool {
        !matches!(self, Backend::Memfs | Backend::Router)
    }

    /// Makes the host directories the row serves inside `dir` and returns
    /// the one written files land in (see [`MountedFs::source`]).
    pub fn make_source(self, dir: &Path) -> Option<PathBuf> {
        if !self.has_source() {
            return None;
        }
        let src = dir.join("src");
        fs::create_dir_all(&src).expect("create the source directory");
        if self == Backend::Overlay {
            fs::create_dir_all(dir.join("lower")).expect("create the lower layer");
        }
        Some(src)
    }
}

/// One row of the suite: a backend served over a transport.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// The backend.
    pub backend: Backend,
    /// The `--transport` value: `blocking`, `uring`, `uring-rw` or `auto`.
    pub transport: &'static str,
    /// Further options of the row (e.g. `--poll-us 200`).
    pub options: &'static [&'static str],
}

/// The `fuselage` binary under test: the one cargo built for this test, or
/// `FUSELAGE_TEST_BIN` when set (for example the static binary, README
/// "Init containers").
pub fn fuselage_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("FUSELAGE_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_fuselage").to_string())
    })
}

// ---------------------------------------------------------------------------
// Skipping
// ---------------------------------------------------------------------------

// Not every test binary that includes this module uses all of these.
#[allow(unused_imports)]
pub use fuselage_testkit::skip::{
    ENABLE_URING_PARAM, require, require_fuse, require_native_uring, skipping_forbidden,
};

/// Whether `program` can be found on PATH.
pub fn require_program(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    require(if found {
        Ok(())
    } else {
        Err(format!("{program} is not installed"))
    })
}

// ---------------------------------------------------------------------------
// A server process and its stderr
// ---------------------------------------------------------------------------

enum StderrEvent {
    Line(String),
    Eof,
}

/// A spawned `fuselage` process whose stderr is read by a thread for the
/// whole of its life (so it never blocks on a full pipe) and kept for
/// assertions. Dropping it SIGKILLs and reaps the process.
pub struct ServerProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    events: Receiver<StderrEvent>,
    status: Option<ExitStatus>,
    watchdog: Watchdog,
}

/// Kills a server that is still alive when its test's time is up, so that
/// requests it left unanswered fail (ENOTCONN) instead of hanging the test
/// until nextest terminates it.
struct Watchdog {
    armed: Arc<(Mutex<Option<i32>>, std::sync::Condvar)>,
}

impl Watchdog {
    fn arm(pid: i32, deadline: Duration) -> Watchdog {
        let armed = Arc::new((Mutex::new(Some(pid)), std::sync::Condvar::new()));
        let state = armed.clone();
        std::thread::Builder::new()
            .name("fuselage-watchdog".into())
            .spawn(move || {
                let (lock, cond) = &*state;
                let end = Instant::now() + deadline;
                let mut pid = lock.lock().unwrap_or_else(|p| p.into_inner());
                while pid.is_some() {
                    let Some(left) = end.checked_duration_since(Instant::now()) else {
                        break;
                    };
                    pid = cond.wait_timeout(pid, left).unwrap_or_else(|p| p.into_inner()).0;
                }
                if let Some(p) = pid.take() {
                    eprintln!(
                        "watchdog: the test is still running after {deadline:?}; SIGKILLing server pid {p} \
                         so that hung FUSE requests fail with ENOTCONN instead of hanging"
                    );
                    // SAFETY: kill has no memory-safety preconditions; the pid is
                    // an unreaped child (disarm runs before any reaping).
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            })
            .expect("spawn the watchdog");
        Watchdog { armed }
    }

    /// Stops the watchdog; call before reaping the process.
    fn disarm(&self) {
        let (lock, cond) = &*self.armed;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = None;
        cond.notify_all();
    }
}

/// Whether child `pid` has exited, without reaping it.
fn has_exited(pid: i32) -> bool {
    // SAFETY: all-zero is a valid siginfo_t; waitid gets valid pointers and,
    // with WNOWAIT, leaves the child waitable.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r == 0 && info.si_pid() != 0
    }
}

/// How long a test may run before its server is killed (see `Watchdog`).
pub const TEST_DEADLINE: Duration = Duration::from_secs(50);

impl ServerProcess {
    /// Spawns `cmd` with stderr piped (stdin and stdout null) and
    /// `FUSELAGE_LOG` cleared so the output is exactly the contract's.
    pub fn spawn(cmd: Command) -> ServerProcess {
        ServerProcess::spawn_with_deadline(cmd, TEST_DEADLINE)
    }

    /// [`ServerProcess::spawn`] with a watchdog that kills the server after
    /// `deadline` instead of [`TEST_DEADLINE`] (for tests that run longer
    /// on purpose, such as the long form of `load.rs`).
    pub fn spawn_with_deadline(mut cmd: Command, deadline: Duration) -> ServerProcess {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("FUSELAGE_LOG");
        // If the test process dies (e.g. nextest kills it), take the server
        // with it so that auto-unmount removes the mount.
        // SAFETY: the closure runs between fork and exec and only calls
        // prctl, which is async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, events) = mpsc::channel();
        let kept = lines.clone();
        std::thread::Builder::new()
            .name("fuselage-stderr".into())
            .spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut raw = Vec::new();
                loop {
                    raw.clear();
                    match reader.read_until(b'\n', &mut raw) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&raw)
                                .trim_end_matches(['\n', '\r'])
                                .to_string();
                            kept.lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(line.clone());
                            let _ = tx.send(StderrEvent::Line(line));
                        }
                    }
                }
                let _ = tx.send(StderrEvent::Eof);
            })
            .expect("spawn stderr reader");
        let watchdog = Watchdog::arm(child.id() as i32, deadline);
        ServerProcess {
            child,
            lines,
            events,
            status: None,
            watchdog,
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits (at most `timeout`) for a stderr line starting with `prefix`
    /// and returns it; panics with everything seen if the process exits or
    /// the time runs out first.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut exited_at: Option<Instant> = None;
        loop {
            match self.events.recv_timeout(Duration::from_millis(100)) {
                Ok(StderrEvent::Line(l)) if l.starts_with(prefix) => return l,
                Ok(StderrEvent::Line(_)) => continue,
                Ok(StderrEvent::Eof) | Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(EXIT_TIMEOUT);
                    panic!(
                        "the server closed stderr before printing {prefix:?} (exit status {status:?}); stderr:\n{}",
                        self.stderr_lines().join("\n")
                    );
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            // The pipe can outlive the process (a helper such as an
            // auto-unmount fusermount3 may hold it), so watch the process too.
            if exited_at.is_none() && self.try_wait().is_some() {
                exited_at = Some(Instant::now());
            }
            if exited_at.is_some_and(|t| t.elapsed() > Duration::from_millis(500)) {
                panic!(
                    "the server exited ({:?}) before printing {prefix:?}; stderr:\n{}",
                    self.status,
                    self.stderr_lines().join("\n")
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "no {prefix:?} line within {timeout:?}; stderr so far:\n{}",
                    self.stderr_lines().join("\n")
                );
            }
        }
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() && has_exited(self.pid()) {
            // Disarm first: once reaped, the pid may name another process.
            self.watchdog.disarm();
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits at most `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for stderr to reach EOF (bounded) so that `stderr_lines` holds
    /// everything the process wrote.
    pub fn drain_stderr(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(StderrEvent::Line(_)) => {}
                Ok(StderrEvent::Eof) | Err(_) => return,
            }
        }
    }

    /// Sends `signal` to the process (unless it has been reaped).
    pub fn signal(&mut self, signal: i32) {
        if self.try_wait().is_none() {
            // SAFETY: kill has no memory-safety preconditions; the pid is our
            // unreaped child, so it cannot have been reused.
            unsafe { libc::kill(self.pid(), signal) };
        }
    }

    /// SIGKILLs and reaps the process (bounded).
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        if self.wait_exit(EXIT_TIMEOUT).is_none() {
            eprintln!(
                "warning: server pid {} did not die within {EXIT_TIMEOUT:?} of SIGKILL",
                self.pid()
            );
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// A mounted filesystem
// ---------------------------------------------------------------------------

/// How to start a [`MountedFs`] beyond its row.
#[derive(Debug, Default, Clone)]
pub struct MountConfig {
    /// Extra command-line options, after `--transport` and `--source`.
    pub args: Vec<String>,
    /// Run the server as this uid and gid (through `setpriv`; the
    /// mountpoint is then owned by them). `None`: as ourselves.
    pub run_as: Option<u32>,
    /// Mount a tmpfs with these options (e.g. `size=4m`) on the row's
    /// source directory before the server starts (rows with a source), so
    /// that the host filesystem under the server is small.
    pub source_tmpfs: Option<&'static str>,
    /// How long the server may live before its watchdog kills it (see
    /// `ServerProcess::spawn_with_deadline`). `None`: [`TEST_DEADLINE`].
    pub deadline: Option<Duration>,
}

impl MountConfig {
    /// A config with these extra options.
    pub fn args(args: &[&str]) -> MountConfig {
        MountConfig {
            args: args.iter().map(|s| s.to_string()).collect(),
            ..MountConfig::default()
        }
    }
}

/// A `fuselage mount` process serving a fresh temporary mountpoint.
///
/// Dropping it (also while a test panics) lazily unmounts the mountpoint,
/// SIGKILLs and reaps the process and removes the temporary directory.
pub struct MountedFs {
    backend: Backend,
    server: ServerProcess,
    mountpoint: PathBuf,
    source: Option<PathBuf>,
    mounted_line: String,
    dir: Option<tempfile::TempDir>,
    /// The command line that started the server (for [`MountedFs::remount`]).
    command: Vec<std::ffi::OsString>,
    /// A tmpfs the test mounted on the source ([`MountConfig::source_tmpfs`]).
    source_mount: Option<PathBuf>,
}

/// A temporary directory that other users can traverse (so that uid 65534
/// can reach a mountpoint inside it).
pub fn traversable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("fuselage-e2e.")
        .tempdir()
        .expect("create a temporary directory");
    fs::set_permissions(dir.path(), Permissions::from_mode(0o755))
        .expect("chmod the temporary directory");
    dir
}

/// The arguments of `fuselage mount` for a row, without the mountpoint.
pub fn mount_args(setup: &Setup, source: Option<&Path>, extra: &[String]) -> Vec<String> {
    let mut args = vec![
        "mount".to_string(),
        "--transport".to_string(),
        setup.transport.to_string(),
    ];
    match (setup.backend, source) {
        (Backend::Overlay, Some(upper)) => {
            let lower = upper.with_file_name("lower");
            args.extend(["--lower".into(), lower.display().to_string()]);
            args.extend(["--upper".into(), upper.display().to_string()]);
        }
        (_, Some(src)) => {
            args.push("--source".into());
            args.push(src.display().to_string());
        }
        (_, None) => {}
    }
    if setup.backend == Backend::Router {
        args.extend(["--route".into(), "/routed=memory".into()]);
    }
    if setup.backend == Backend::PassthroughNoKernel {
        args.push("--passthrough".into());
        args.push("off".into());
    }
    args.extend(setup.options.iter().map(|o| o.to_string()));
    args.extend(extra.iter().cloned());
    args
}

impl MountedFs {
    /// Mounts the row's filesystem with `extra` options and waits for it to
    /// be live.
    pub fn mount(setup: &Setup, extra: &[&str]) -> MountedFs {
        MountedFs::mount_with(setup, MountConfig::args(extra))
    }

    /// Mounts the row's filesystem as `config` says and waits for it to be
    /// live.
    pub fn mount_with(setup: &Setup, config: MountConfig) -> MountedFs {
        let dir = traversable_tempdir();
        let mountpoint = dir.path().join("mnt");
        fs::create_dir(&mountpoint).expect("create the mountpoint");
        let source = setup.backend.make_source(dir.path());
        let source_mount = match (config.source_tmpfs, &source) {
            (Some(opts), Some(src)) => {
                mount_tmpfs(src, opts);
                Some(src.clone())
            }
            _ => None,
        };
        if let Some(id) = config.run_as {
            chown(&mountpoint, id, id);
            if let Some(src) = &source {
                chown(src, id, id);
                if setup.backend == Backend::Overlay {
                    chown(&src.with_file_name("lower"), id, id);
                }
            }
        }
        let args = mount_args(setup, source.as_deref(), &config.args);
        let mut cmd = match config.run_as {
            None => Command::new(fuselage_bin()),
            Some(id) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={id}"))
                    .arg(format!("--regid={id}"))
                    .arg("--clear-groups")
                    .arg(fuselage_bin());
                c
            }
        };
        cmd.args(&args).arg(&mountpoint);
        let command = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_os_string())
            .collect();
        let server =
            ServerProcess::spawn_with_deadline(cmd, config.deadline.unwrap_or(TEST_DEADLINE));
        let mut fs = MountedFs {
            backend: setup.backend,
            server,
            mountpoint,
            source,
            mounted_line: String::new(),
            dir: Some(dir),
            command,
            source_mount,
        };
        fs.mounted_line = fs.server.wait_for_line(MOUNTED_PREFIX, MOUNT_TIMEOUT);
        fs
    }

    /// Starts a new server with the same command line on the same
    /// mountpoint (the old one must be gone and its mount removed) and
    /// waits for it to be live; the old process is reaped.
    pub fn remount(&mut self) {
        let mut cmd = Command::new(&self.command[0]);
        cmd.args(&self.command[1..]);
        let old = std::mem::replace(&mut self.server, ServerProcess::spawn(cmd));
        drop(old);
        self.mounted_line = self.server.wait_for_line(MOUNTED_PREFIX, MOUNT_TIMEOUT);
    }

    /// The names in the mount's root that the test made: all of them,
    /// except the route a router row places there.
    pub fn root_names(&self) -> Vec<String> {
        fs::read_dir(self.path())
            .expect("readdir of the root")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .filter(|n| !(self.backend == Backend::Router && n == "routed"))
            .collect()
    }

    /// The mountpoint.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// A path inside the mount.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.mountpoint.join(name)
    }

    /// The host directory served (passthrough rows).
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The temporary directory holding the mountpoint (for scratch files
    /// outside the mount).
    pub fn scratch_dir(&self) -> &Path {
        self.dir.as_ref().expect("the temporary directory").path()
    }

    /// The server's pid.
    pub fn pid(&self) -> i32 {
        self.server.pid()
    }

    /// The `fuselage: mounted ...` line.
    pub fn mounted_line(&self) -> &str {
        &self.mounted_line
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.server.stderr_lines()
    }

    /// The server process.
    pub fn server(&mut self) -> &mut ServerProcess {
        &mut self.server
    }

    /// Whether the mountpoint is in our mount table.
    pub fn is_mounted(&self) -> bool {
        is_mountpoint(&self.mountpoint)
    }

    /// Unmounts lazily, kills the server and removes the directory. Called
    /// by `Drop`; tests call it early to check the cleanup itself.
    pub fn cleanup(&mut self) {
        lazy_unmount(&self.mountpoint);
        self.server.kill();
        // A mount that a helper (auto-unmount fusermount3) re-established or
        // that a dying server left could still be there: detach once more.
        lazy_unmount(&self.mountpoint);
        if let Some(src) = self.source_mount.take() {
            lazy_unmount(&src);
        }
        if let Some(dir) = self.dir.take() {
            if is_mountpoint(&self.mountpoint) {
                // Never recurse into a mount; leave the directory behind.
                eprintln!(
                    "warning: {} is still mounted; leaving it",
                    self.mountpoint.display()
                );
                let _ = dir.keep();
            } else {
                let _ = dir.close();
            }
        }
    }
}

impl Drop for MountedFs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "server stderr ({}):\n{}",
                self.mountpoint.display(),
                self.server.stderr_lines().join("\n")
            );
        }
        self.cleanup();
    }
}

/// `umount2(path, MNT_DETACH)`, ignoring errors.
pub fn lazy_unmount(path: &Path) {
    let c = cpath(path);
    // SAFETY: `c` is a valid NUL-terminated path.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

/// Mounts a tmpfs with `options` (e.g. `size=4m`) on `path` (needs root).
pub fn mount_tmpfs(path: &Path, options: &str) {
    let target = cpath(path);
    let data = cstr(options);
    // SAFETY: valid NUL-terminated strings.
    let r = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    assert_eq!(
        r,
        0,
        "mount tmpfs on {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
}

/// A tmpfs of its own on a fresh temporary directory: the reference that
/// behaviour is compared with. Lazily unmounted on drop, also when a test
/// panics.
pub struct TmpfsMount {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TmpfsMount {
    /// Mounts a 64 MiB tmpfs with mode 0755 (needs root).
    pub fn new() -> TmpfsMount {
        let dir = traversable_tempdir();
        let path = dir.path().join("tmpfs");
        fs::create_dir(&path).expect("create the tmpfs mountpoint");
        let target = cpath(&path);
        // SAFETY: valid NUL-terminated strings; the data string is one too.
        let r = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=0755,size=64m".as_ptr().cast(),
            )
        };
        assert_eq!(r, 0, "mount tmpfs: {}", io::Error::last_os_error());
        TmpfsMount { path, _dir: dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        lazy_unmount(&self.path);
    }
}

/// Whether `path` is a mount point in this process's mount namespace.
pub fn is_mountpoint(path: &Path) -> bool {
    mount_entry(path).is_some()
}

/// The `/proc/self/mountinfo` line whose mount point is `path`.
pub fn mount_entry(path: &Path) -> Option<String> {
    let want = path.as_os_str().as_bytes();
    let info = fs::read("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    info.split(|&b| b == b'\n').find_map(|line| {
        let field = line.split(|&b| b == b' ').nth(4)?;
        (unescape_mountinfo(field) == want).then(|| String::from_utf8_lossy(line).into_owned())
    })
}

fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 4 <= field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|c| (b'0'..=b'7').contains(c))
        {
            let v = field[i + 1..i + 4]
                .iter()
                .fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

/// Polls `cond` every 20 ms for at most `timeout`; returns whether it held.
/// After a server of `fs` ran out of files (opening `f{at}` failed; the
/// files `f{i}` hold `i`): the files in `open` still read (the first is
/// `f0`), and once they are closed (`why`: what else had to change) the
/// server opens `f{at}` again, reads it back, creates a file and is alive.
pub fn serves_again_after_running_out(
    fs: &mut MountedFs,
    mut open: Vec<std::fs::File>,
    at: usize,
    why: &str,
) {
    use std::io::Read;
    let mut s = String::new();
    open[0].read_to_string(&mut s).expect("read an open file");
    assert_eq!(s, "0");
    drop(open);
    // Releases reach the server asynchronously.
    let reopened = wait_until(Duration::from_secs(5), || {
        std::fs::File::open(fs.join(format!("f{at}"))).is_ok()
    });
    assert!(reopened, "the server still cannot open a file after {why}");
    assert_eq!(
        std::fs::read_to_string(fs.join(format!("f{at}"))).expect("read"),
        format!("{at}")
    );
    std::fs::write(fs.join("new"), "created after running out").expect("create");
    assert_eq!(
        std::fs::read_to_string(fs.join("new")).expect("read"),
        "created after running out"
    );
    assert!(fs.server().try_wait().is_none(), "the server died");
}

pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Syscall helpers
// ---------------------------------------------------------------------------

/// A path as a C string.
pub fn cpath(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("path without NUL")
}

/// A string as a C string.
pub fn cstr(s: &str) -> CString {
    CString::new(s).expect("string without NUL")
}

/// The calling thread's errno.
pub fn errno() -> i32 {
    // SAFETY: __errno_location returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// A libc return value (`int`, `ssize_t`, `off_t`).
pub trait SysResult: Copy {
    /// The value widened to 64 bits.
    fn widen(self) -> i64;
}

impl SysResult for i32 {
    fn widen(self) -> i64 {
        i64::from(self)
    }
}

impl SysResult for i64 {
    fn widen(self) -> i64 {
        self
    }
}

impl SysResult for isize {
    fn widen(self) -> i64 {
        self as i64
    }
}

/// Turns a libc return value into `Ok(value)` or `Err(errno)`.
pub fn check(r: impl SysResult) -> Result<i64, i32> {
    let r = r.widen();
    if r < 0 { Err(errno()) } else { Ok(r) }
}

/// The errno of a failed `io::Result`, panicking (with `what`) on success.
#[track_caller]
pub fn expect_errno<T: std::fmt::Debug>(r: io::Result<T>, errno: i32, what: &str) {
    match r {
        Ok(v) => panic!(
            "{what}: expected {} but it succeeded ({v:?})",
            errno_name(errno)
        ),
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(errno),
            "{what}: expected {} but got {e} ({:?})",
            errno_name(errno),
            e.raw_os_error().map(errno_name)
        ),
    }
}

/// Asserts that a raw libc result failed with `errno`.
#[track_caller]
pub fn expect_raw_errno(r: Result<i64, i32>, errno: i32, what: &str) {
    match r {
        Ok(v) => panic!("{what}: expected {} but it returned {v}", errno_name(errno)),
        Err(e) => assert_eq!(
            e,
            errno,
            "{what}: expected {} but got {}",
            errno_name(errno),
            errno_name(e)
        ),
    }
}

/// A readable name for an errno value.
pub fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EACCES => "EACCES",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ENODATA => "ENODATA",
        libc::ENXIO => "ENXIO",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOTCONN => "ENOTCONN",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECANCELED => "ECANCELED",
        libc::ENODEV => "ENODEV",
        libc::EFBIG => "EFBIG",
        libc::EDQUOT => "EDQUOT",
        _ => "",
    };
    format!("{name}({e}: {})", io::Error::from_raw_os_error(e))
}

/// chown(2), panicking on failure.
pub fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {} {uid}:{gid}: {e}", path.display()));
}

/// lstat(2) as a `libc::stat`.
pub fn lstat(path: &Path) -> io::Result<libc::stat> {
    let c = cpath(path);
    // SAFETY: an all-zero stat is a valid value; `c` is a valid C string and
    // `st` a valid out pointer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::lstat(c.as_ptr(), &mut st) };
    if r == 0 {
        Ok(st)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// fstat(2) as a `libc::stat`.
pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out pointer; a bad fd only yields EBADF.
    let r = unsafe { libc::fstat(fd, &mut st) };
    if r == 0 {
        Ok(st)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// open(2) with raw flags, as an owned fd.
pub fn open_raw(path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cpath(path);
    // SAFETY: `c` is a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// pread(2) that loops until `buf` is full or EOF; returns bytes read
/// (fuselage-linux's, for a raw descriptor).
pub fn pread_full(fd: RawFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    // SAFETY: callers pass a descriptor they hold open for the call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fuselage::linux::sys::pread_full(fd, buf, offset)
}

/// pwrite(2) that loops until all of `buf` is written.
pub fn pwrite_full(fd: RawFd, buf: &[u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the readable rest of `buf`.
        let r = unsafe {
            libc::pwrite(
                fd,
                buf[done..].as_ptr().cast(),
                buf.len() - done,
                (offset + done as u64) as libc::off_t,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "pwrite wrote nothing",
            ));
        }
        done += r as usize;
    }
    Ok(())
}

/// Page-aligned buffers for O_DIRECT clients: `AlignedBuf::page_aligned`.
pub use fuselage_testkit::AlignedBuf;

// ---------------------------------------------------------------------------
// Deterministic data
// ---------------------------------------------------------------------------

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf` with the pattern `seed` has at file offset `offset`: every
/// byte is a function of (seed, absolute offset), so any range can be
/// regenerated to compare against.
pub fn fill_pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let o = offset + i as u64;
        *b = (splitmix64(seed ^ (o >> 3).wrapping_mul(0x2545_f491_4f6c_dd1d)) >> ((o & 7) * 8))
            as u8;
    }
}

/// Like [`fill_pattern`] but fast; `offset` and `buf.len()` must be
/// multiples of 8.
pub fn fill_pattern_fast(seed: u64, offset: u64, buf: &mut [u8]) {
    assert!(
        offset.is_multiple_of(8) && buf.len().is_multiple_of(8),
        "fill_pattern_fast needs 8-byte alignment"
    );
    for (i, chunk) in buf.chunks_exact_mut(8).enumerate() {
        let w = (offset >> 3) + i as u64;
        chunk.copy_from_slice(
            &splitmix64(seed ^ w.wrapping_mul(0x2545_f491_4f6c_dd1d)).to_le_bytes(),
        );
    }
}

/// The pattern as a new vector.
pub fn pattern(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill_pattern(seed, offset, &mut v);
    v
}

/// Offset of the first differing byte, if any.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// FNV-1a over little-endian 64-bit words: a stable hash for comparing
/// streams, whatever sizes the stream is fed in.
#[derive(Clone, Copy)]
pub struct StreamHash {
    hash: u64,
    pending: [u8; 8],
    npending: usize,
}

impl Default for StreamHash {
    fn default() -> Self {
        StreamHash {
            hash: 0xcbf2_9ce4_8422_2325,
            pending: [0; 8],
            npending: 0,
        }
    }
}

impl StreamHash {
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn word(&mut self, w: u64) {
        self.hash = (self.hash ^ w).wrapping_mul(Self::PRIME);
    }

    /// Adds bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        if self.npending > 0 {
            let take = (8 - self.npending).min(data.len());
            self.pending[self.npending..self.npending + take].copy_from_slice(&data[..take]);
            self.npending += take;
            data = &data[take..];
            if self.npending < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.pending));
            self.npending = 0;
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            self.word(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.npending = rest.len();
    }

    /// The hash of everything added.
    pub fn finish(mut self) -> u64 {
        if self.npending > 0 {
            self.pending[self.npending..].fill(0);
            let w = u64::from_le_bytes(self.pending) ^ ((self.npending as u64) << 56);
            self.word(w);
        }
        self.hash
    }
}

// ---------------------------------------------------------------------------
// Running code as another user
// ---------------------------------------------------------------------------

/// Runs `f` in a forked child with all uids set to `uid` and all gids to
/// `gid` (supplementary groups cleared), and returns the `N` numbers it
/// stored. `f` runs after fork in a multithreaded process, so it must only
/// make raw syscalls: no allocation, no locks, no panics. Store results as
/// values or as `-errno` (see [`sys`]). Bounded: panics after 20 s.
pub fn run_as<const N: usize>(uid: u32, gid: u32, f: impl FnOnce(&mut [i64; N])) -> [i64; N] {
    run_as_groups(uid, gid, &[], f)
}

/// [`run_as`] with `groups` as the child's supplementary groups.
pub fn run_as_groups<const N: usize>(
    uid: u32,
    gid: u32,
    groups: &[u32],
    f: impl FnOnce(&mut [i64; N]),
) -> [i64; N] {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2");
    // SAFETY: fork in a multithreaded process: the child only makes raw
    // syscalls (see this function's contract) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let mut out = [i64::MIN; N];
        // SAFETY: raw syscalls with valid arguments; _exit never returns.
        unsafe {
            libc::close(fds[0]);
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                libc::_exit(100);
            }
            f(&mut out);
            let bytes = std::mem::size_of_val(&out);
            let w = libc::write(fds[1], out.as_ptr().cast(), bytes);
            libc::_exit(if w == bytes as isize { 0 } else { 101 });
        }
    }
    // SAFETY: fds[1] is ours to close; fds[0] is wrapped once.
    unsafe { libc::close(fds[1]) };
    // SAFETY: fds[0] is an open fd owned by nobody else.
    let read_end = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    let mut out = [0i64; N];
    let bytes = std::mem::size_of_val(&out);
    let mut got = 0usize;
    let deadline = Instant::now() + Duration::from_secs(20);
    while got < bytes {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: read_end.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        if r == 0 {
            // SAFETY: pid is our unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            reap(pid);
            panic!("the child running as uid {uid} did not finish within 20 s");
        }
        // SAFETY: the destination is the unread rest of `out`.
        let n = unsafe {
            libc::read(
                read_end.as_raw_fd(),
                out.as_mut_ptr().cast::<u8>().add(got).cast(),
                bytes - got,
            )
        };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    let status = reap(pid);
    assert_eq!(
        got, bytes,
        "the child running as uid {uid} exited early (wait status {status:#x})"
    );
    out
}

fn reap(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: pid is our child; status a valid out pointer.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && errno() == libc::EINTR {}
    status
}

/// A raw libc result as a number for [`run_as`]: the value, or `-errno`.
pub fn sys(r: impl SysResult) -> i64 {
    let r = r.widen();
    if r < 0 { -i64::from(errno()) } else { r }
}

/// A C string's pointer, for closures run by [`run_as`].
pub fn ptr(c: &CStr) -> *const libc::c_char {
    c.as_ptr()
}

// ---------------------------------------------------------------------------
// Short-lived commands
// ---------------------------------------------------------------------------

/// A child process in its own process group whose stdout and stderr go to
/// files (so it can never block on a pipe). Dropping it SIGKILLs the whole
/// group and reaps the child.
pub struct BoundedChild {
    child: Child,
    out: tempfile::NamedTempFile,
    err: tempfile::NamedTempFile,
    status: Option<ExitStatus>,
}

/// What a finished [`BoundedChild`] left.
#[derive(Debug)]
pub struct Finished {
    /// The exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

impl Finished {
    /// The stderr lines, without trailing empty ones.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

impl BoundedChild {
    /// Spawns `cmd` (stdin null, `FUSELAGE_LOG` cleared).
    pub fn spawn(mut cmd: Command) -> BoundedChild {
        use std::os::unix::process::CommandExt;
        let out = tempfile::NamedTempFile::new().expect("temporary file");
        let err = tempfile::NamedTempFile::new().expect("temporary file");
        cmd.stdin(Stdio::null())
            .stdout(out.reopen().expect("reopen"))
            .stderr(err.reopen().expect("reopen"))
            .env_remove("FUSELAGE_LOG")
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        BoundedChild {
            child,
            out,
            err,
            status: None,
        }
    }

    /// The process id (also the process group id).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.out.path()).unwrap_or_default()
    }

    /// Stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.err.path()).unwrap_or_default()
    }

    /// Waits at most `timeout` for the child to exit; `None` if it has not.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.status.is_none() {
                self.status = self.child.try_wait().ok().flatten();
            }
            if self.status.is_some() || Instant::now() > deadline {
                return self.status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits at most `timeout` for the child to exit and returns what it
    /// left; panics (after killing it) if it does not exit in time.
    pub fn finish(mut self, timeout: Duration, what: &str) -> Finished {
        match self.wait(timeout) {
            Some(status) => Finished {
                status,
                stdout: self.stdout(),
                stderr: self.stderr(),
            },
            None => {
                let (stdout, stderr) = (self.stdout(), self.stderr());
                self.kill();
                panic!(
                    "{what}: still running after {timeout:?}; stdout:\n{stdout}\nstderr:\n{stderr}"
                )
            }
        }
    }

    /// SIGKILLs the process group and reaps the child (bounded).
    pub fn kill(&mut self) {
        if self.status.is_none() {
            // SAFETY: kill has no memory-safety preconditions; the group is
            // led by our unreaped child, so its id cannot have been reused.
            unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
            self.wait(EXIT_TIMEOUT);
        }
    }
}

impl Drop for BoundedChild {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.kill();
        } else {
            // The leader is gone but stragglers of its group may remain.
            // SAFETY: as in `kill`; a group without members yields ESRCH.
            unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
        }
    }
}

/// Runs `cmd` to completion within `timeout` (panicking otherwise).
pub fn run_bounded(cmd: Command, timeout: Duration, what: &str) -> Finished {
    BoundedChild::spawn(cmd).finish(timeout, what)
}

/// Reads a whole file with O_DIRECT, so the data comes from the server and
/// not from the page cache.
pub fn read_direct(path: &Path) -> Vec<u8> {
    let fd = open_raw(path, libc::O_RDONLY | libc::O_DIRECT, 0)
        .unwrap_or_else(|e| panic!("open {} with O_DIRECT: {e}", path.display()));
    let size = fstat(fd.as_raw_fd()).expect("fstat").st_size as usize;
    let mut out = Vec::with_capacity(size);
    let mut buf = AlignedBuf::page_aligned(1 << 20);
    let mut offset = 0u64;
    loop {
        let n = pread_full(fd.as_raw_fd(), &mut buf, offset)
            .unwrap_or_else(|e| panic!("O_DIRECT read of {} at {offset}: {e}", path.display()));
        out.extend_from_slice(&buf[..n]);
        offset += n as u64;
        if n < buf.len() {
            break;
        }
    }
    assert_eq!(
        out.len(),
        size,
        "O_DIRECT read of {} returned a different length than fstat",
        path.display()
    );
    out
}

// ---------------------------------------------------------------------------
// /dev/fuse for unprivileged users
// ---------------------------------------------------------------------------

/// Holds /dev/fuse open to every user (mode 0666, as Debian's udev rule sets
/// it) for as long as it lives, under an exclusive lock shared by every test
/// process, and restores the mode it found when dropped.
///
/// fusermount3 opens /dev/fuse with the caller's own identity (it drops its
/// setuid privilege for that), so unprivileged mounting needs this mode.
pub struct DevFuseForAll {
    _lock: fs::File,
    restore: Option<u32>,
}

/// The permission bits of /dev/fuse.
pub fn dev_fuse_mode() -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/dev/fuse").expect("stat /dev/fuse").mode() & 0o7777
}

impl DevFuseForAll {
    /// Takes the lock (waiting at most 60 s), then calls `before` with the
    /// mode found, then opens /dev/fuse to everyone.
    pub fn acquire(before: impl FnOnce(u32)) -> DevFuseForAll {
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("fuselage-tests-dev-fuse.lock"))
            .expect("open the /dev/fuse lock file");
        let locked = wait_until(Duration::from_secs(60), || {
            // SAFETY: a valid fd.
            unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
        });
        assert!(locked, "another test held the /dev/fuse lock for 60 s");
        let mode = dev_fuse_mode();
        before(mode);
        let restore = (mode & 0o666 != 0o666).then(|| {
            fs::set_permissions("/dev/fuse", Permissions::from_mode(mode | 0o666))
                .expect("chmod /dev/fuse");
            mode
        });
        DevFuseForAll {
            _lock: lock,
            restore,
        }
    }
}

impl Drop for DevFuseForAll {
    fn drop(&mut self) {
        if let Some(mode) = self.restore
            && let Err(e) = fs::set_permissions("/dev/fuse", Permissions::from_mode(mode))
        {
            eprintln!("warning: cannot restore /dev/fuse to mode {mode:o}: {e}");
        }
    }
}

/// One `#[test]` per transport (`uring`, `uring_rw`, `blocking`) for each
/// named scenario `fn(transport: &'static str)` of the invoking module; a
/// transport this machine cannot serve skips (or fails under
/// `FUSELAGE_REQUIRE_FUSE=1`). Needs `#[macro_use] mod common;` at the root.
#[allow(unused_macros)]
macro_rules! every_transport {
    ($($scenario:ident),+ $(,)?) => {
        $(
            mod $scenario {
                fn run(transport: &'static str) {
                    let ready = if transport == "uring" {
                        $crate::common::require_native_uring()
                    } else {
                        $crate::common::require_fuse()
                    };
                    if ready {
                        super::$scenario(transport);
                    }
                }
                #[test]
                fn uring() { run("uring") }
                #[test]
                fn uring_rw() { run("uring-rw") }
                #[test]
                fn blocking() { run("blocking") }
            }
        )+
    };
}
