//! Shared machinery of the io_uring transport tests (`uring_*.rs`): skip-or-fail rules, the
//! `enable_uring` guard, a mount guard that always unmounts, and a memfs
//! served on a chosen transport in a background thread.
#![allow(dead_code)]

use fuselage::transport::{Choice, ServeError, ServeInfo, UringConfig};
use fuselage_backends::memfs::{MemFs, MemFsConfig};
use fuselage_linux::mount::{Mount, MountOptions, lazy_unmount};
use fuselage_transport_blocking::SessionEnd;
use fuselage_transport_uring::probe::ENABLE_URING_PARAM;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// Not every test binary that includes this module uses all of these.
#[allow(unused_imports)]
pub use fuselage_testkit::skip::{require, require_fuse, skipping_forbidden};

/// io_uring usable (for uring-rw).
pub fn require_uring() -> bool {
    require_fuse() && require(fuselage_transport_uring::probe_uring().map_err(|u| u.to_string()))
}

/// Sets `/sys/module/fuse/parameters/enable_uring` and restores the value
/// it had on drop (also when the test panics).
pub struct EnableUring {
    old: Option<String>,
}

impl EnableUring {
    /// Sets the parameter to `on`; `None` (after printing why, or panicking
    /// under FUSELAGE_REQUIRE_FUSE=1) when the kernel has no such parameter
    /// or it cannot be written.
    pub fn set(on: bool) -> Option<EnableUring> {
        if !require_fuse() {
            return None;
        }
        let _ = fuselage_transport_uring::probe::read_enable_uring(); // loads fuse
        let old = match std::fs::read_to_string(ENABLE_URING_PARAM) {
            Ok(v) => v.trim().to_string(),
            Err(e) => {
                require(Err(format!(
                    "no {ENABLE_URING_PARAM} ({e}): kernel without FUSE-over-io_uring"
                )));
                return None;
            }
        };
        if let Err(e) = std::fs::write(ENABLE_URING_PARAM, if on { "Y" } else { "N" }) {
            require(Err(format!("cannot write {ENABLE_URING_PARAM}: {e}")));
            return None;
        }
        Some(EnableUring { old: Some(old) })
    }
}

impl Drop for EnableUring {
    fn drop(&mut self) {
        if let Some(old) = self.old.take() {
            let _ = std::fs::write(ENABLE_URING_PARAM, old);
        }
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "fuselage-uring-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = lazy_unmount(&self.0);
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Lazily unmounts a path on drop, whatever happened.
pub struct UnmountGuard(pub PathBuf);

impl Drop for UnmountGuard {
    fn drop(&mut self) {
        let _ = lazy_unmount(&self.0);
    }
}

/// A memfs mounted and served on some transport in a background thread.
pub struct Served {
    pub info: ServeInfo,
    pub mount: Option<Mount>,
    pub thread: Option<JoinHandle<Result<SessionEnd, ServeError>>>,
    guard: UnmountGuard,
    pub dir: TempDir,
}

/// memfs with zero TTLs (every stat, lookup and read reaches the server).
pub fn memfs() -> MemFs {
    MemFs::new(MemFsConfig {
        entry_ttl: Duration::ZERO,
        attr_ttl: Duration::ZERO,
        capacity_bytes: 256 << 20,
        ..MemFsConfig::default()
    })
}

/// Mounts memfs and serves it with `config` (choice, depth, threads).
/// Err(message) if serving failed before INIT was answered.
pub fn serve(config: UringConfig) -> Result<Served, String> {
    serve_fs(config, memfs())
}

/// Mounts and serves `fs` with `config`.
pub fn serve_fs<F: fuselage_core::Filesystem + Send + Sync + 'static>(
    config: UringConfig,
    fs: F,
) -> Result<Served, String> {
    let dir = TempDir::new("mnt");
    let opts = MountOptions {
        subtype: Some("memfs".into()),
        auto_unmount: false,
        ..MountOptions::default()
    };
    let mount = Mount::new(dir.path(), &opts).map_err(|e| e.to_string())?;
    let guard = UnmountGuard(mount.mountpoint().to_path_buf());
    let channel = mount.channel().map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        fuselage::transport::serve(channel, fs, &config, |info| {
            let _ = tx.send(*info);
        })
    });
    match rx.recv_timeout(Duration::from_secs(15)) {
        Ok(info) => Ok(Served {
            info,
            mount: Some(mount),
            thread: Some(thread),
            guard,
            dir,
        }),
        Err(_) => {
            drop(mount);
            match join_within(thread, Duration::from_secs(10)) {
                Err(e) => Err(format!("server did not come up: {e}")),
                Ok(end) => Err(format!("server ended before INIT: {end:?}")),
            }
        }
    }
}

/// Joins a thread, failing the test if it takes longer than `limit`.
pub fn join_within<T: Send + 'static>(t: JoinHandle<T>, limit: Duration) -> T {
    let start = Instant::now();
    while !t.is_finished() {
        assert!(
            start.elapsed() < limit,
            "thread did not finish within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    t.join().expect("server thread panicked")
}

impl Served {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Unmounts and waits for the server to end (bounded).
    pub fn unmount_and_join(mut self) -> Result<SessionEnd, ServeError> {
        if let Some(mut m) = self.mount.take() {
            m.unmount().unwrap();
        }
        let t = self.thread.take().unwrap();
        join_within(t, Duration::from_secs(20))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut m) = self.mount.take() {
            let _ = m.unmount();
        }
        let _ = lazy_unmount(&self.guard.0);
        if let Some(t) = self.thread.take() {
            let start = Instant::now();
            while !t.is_finished() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A config for `choice` with small buffers (fast to set up).
pub fn config(choice: Choice) -> UringConfig {
    let mut c = UringConfig {
        choice,
        threads: 2,
        depth: 4,
        ..UringConfig::default()
    };
    c.init.max_write = 128 * 1024;
    // Safety net: if a server bug leaves a request unanswered, the kernel
    // aborts the connection instead of leaving the test process unkillable
    // (its client thread stuck in the kernel).
    c.init.request_timeout = 30;
    c
}

/// Writes, reads back, lists, renames and removes files under `root`.
pub fn exercise(root: &Path) {
    let dir = root.join("d");
    std::fs::create_dir(&dir).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let f = dir.join("file");
    std::fs::write(&f, &data).unwrap();
    assert_eq!(std::fs::read(&f).unwrap(), data);
    assert_eq!(std::fs::metadata(&f).unwrap().len(), data.len() as u64);
    for i in 0..50 {
        std::fs::write(dir.join(format!("n{i}")), format!("{i}")).unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 51);
    assert_eq!(std::fs::read_to_string(dir.join("n7")).unwrap(), "7");
    std::fs::rename(dir.join("n7"), dir.join("seven")).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("seven")).unwrap(), "7");
    assert!(std::fs::metadata(dir.join("n7")).is_err());
    // xattrs: a payload request (name) with a reply that is data.
    let c = std::ffi::CString::new(f.to_str().unwrap()).unwrap();
    let value = vec![0x5Au8; 3000];
    // SAFETY: valid NUL-terminated strings and a live buffer.
    let rc = unsafe {
        libc::setxattr(
            c.as_ptr(),
            c"user.big".as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());
    let mut back = vec![0u8; 4096];
    // SAFETY: as above; `back` is writable for its length.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"user.big".as_ptr(),
            back.as_mut_ptr().cast(),
            back.len(),
        )
    };
    assert_eq!(n, 3000, "getxattr: {}", std::io::Error::last_os_error());
    assert_eq!(&back[..3000], &value[..]);
    for i in 0..50 {
        let _ = std::fs::remove_file(dir.join(format!("n{i}")));
    }
    std::fs::remove_file(dir.join("seven")).unwrap();
    std::fs::remove_file(&f).unwrap();
    std::fs::remove_dir(&dir).unwrap();
}
