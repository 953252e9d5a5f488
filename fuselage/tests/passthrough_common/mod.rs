//! Shared machinery of the passthrough backend's tests: a temporary
//! directory tree, an in-process mount of a [`PassthroughFs`] on a session
//! thread that is always unmounted (also when a test panics), the
//! skip-or-fail rule for missing FUSE, and helpers to act as another user in
//! a forked child.
#![allow(dead_code)]

use fuselage_backends::passthrough::{PassthroughConfig, PassthroughFs};
use fuselage_core::Dispatcher;
use fuselage_linux::mount::lazy_unmount;
use fuselage_linux::{Mount, MountOptions};
use fuselage_transport_blocking::{Session, SessionConfig};
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// Not every test binary that includes this module uses all of these.
#[allow(unused_imports)]
pub use fuselage_testkit::skip::{require_fuse, skipping_forbidden};

/// A temporary directory removed (recursively) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory under the system temp dir, mode 0755 (so other
    /// users can reach a mountpoint inside it).
    pub fn new(prefix: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "{prefix}.{}.{}.{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&path).expect("create a temporary directory");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// How to mount.
#[derive(Clone, Debug)]
pub struct Options {
    /// Let other users use the mount.
    pub allow_other: bool,
    /// Mount read-only (and refuse modifications in the session).
    pub read_only: bool,
    /// Give the backend the /dev/fuse fd (kernel passthrough).
    pub device_fd: bool,
    /// Worker threads.
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allow_other: false,
            read_only: false,
            device_fd: true,
            threads: 2,
        }
    }
}

/// A test tree: `ROOT/src` (served), `ROOT/mnt` (mountpoint) and whatever
/// else the test makes in `ROOT`.
pub struct Tree {
    pub dir: TempDir,
}

impl Tree {
    pub fn new(prefix: &str) -> Tree {
        let dir = TempDir::new(prefix);
        fs::create_dir(dir.path().join("src")).unwrap();
        fs::create_dir(dir.path().join("mnt")).unwrap();
        fs::set_permissions(dir.path().join("src"), fs::Permissions::from_mode(0o755)).unwrap();
        Tree { dir }
    }
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    pub fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }
    pub fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
}

/// A [`PassthroughFs`] mounted in-process and served by a session thread.
/// Dropping it unmounts lazily (also during a panic) and waits briefly for
/// the session to end.
pub struct Mounted {
    mountpoint: PathBuf,
    mount: Option<Mount>,
    dispatcher: Arc<Dispatcher<PassthroughFs>>,
    thread: Option<JoinHandle<()>>,
}

impl Mounted {
    /// Serves `config` on `mountpoint` with `opts`.
    pub fn new(mountpoint: &Path, config: PassthroughConfig, opts: Options) -> Mounted {
        let fs = PassthroughFs::new(config).expect("create the passthrough filesystem");
        let mount_opts = MountOptions {
            fs_name: "fuselage-test".into(),
            subtype: Some("passthrough".into()),
            allow_other: opts.allow_other,
            read_only: opts.read_only,
            expect_file: fs.serves_single_file(),
            ..MountOptions::default()
        };
        let mount = Mount::new(mountpoint, &mount_opts).expect("mount");
        if opts.device_fd {
            fs.set_device_fd(mount.try_clone_fd().expect("dup the /dev/fuse fd"));
        }
        let channel = mount.channel().expect("channel");
        let session = Session::new(
            channel,
            fs,
            SessionConfig {
                threads: opts.threads,
                read_only: opts.read_only,
                ..SessionConfig::default()
            },
        );
        let dispatcher = session.dispatcher().clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let r = session.run_with(|_| {
                let _ = ready_tx.send(());
            });
            if let Err(e) = r {
                eprintln!("session ended with an error: {e}");
            }
        });
        let mut m = Mounted {
            mountpoint: mountpoint.to_path_buf(),
            mount: Some(mount),
            dispatcher,
            thread: Some(thread),
        };
        if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            m.unmount();
            panic!("the session did not answer INIT");
        }
        m
    }

    /// The filesystem being served.
    pub fn fs(&self) -> &PassthroughFs {
        self.dispatcher.filesystem()
    }

    /// The mountpoint.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// A path inside the mount.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.mountpoint.join(p)
    }

    /// Unmounts and waits (bounded) for the session thread.
    pub fn unmount(&mut self) {
        if let Some(mount) = self.mount.take() {
            drop(mount);
        }
        let _ = lazy_unmount(&self.mountpoint);
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// Waits until `cond` holds, for at most `timeout`.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A path as a C string.
pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Runs `child` in a forked child process as `uid`/`gid` (no
/// supplementary groups unless given) and returns its exit status.
///
/// `child` runs after fork in a copy of a multi-threaded process: it must
/// only make raw syscalls (no allocation, no locks, no panics); prepare
/// every string before calling this.
pub fn run_as(uid: u32, gid: u32, groups: &[libc::gid_t], child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: fork in a multi-threaded process; the child only makes
    // async-signal-safe syscalls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: plain credential syscalls in the child, then _exit.
        unsafe {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                libc::_exit(100);
            }
        }
        let code = child();
        // SAFETY: leave the child without running any destructor.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    }
}

/// Opens the passthrough config for `src` with test defaults.
pub fn config(src: &Path) -> PassthroughConfig {
    PassthroughConfig::new(src)
}

/// openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS: the *client* never
/// follows a symlink, so anything that reaches outside DIR was done by the
/// server.
pub fn openat2(dir: &fs::File, path: &str, flags: i32, mode: u64) -> Result<OwnedFd, i32> {
    #[repr(C)]
    struct How {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = How {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    };
    let c = CString::new(path).unwrap();
    // SAFETY: valid dirfd, path and open_how.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const How,
            std::mem::size_of::<How>(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        // SAFETY: a new fd we own.
        Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
    }
}
