//! Undoing what the harness set up: mounts, server processes, loop devices.
//!
//! Every such thing is registered here while it exists. Its guard object undoes it on drop
//! (normal exit and panic unwinding); on SIGINT/SIGTERM/SIGHUP a thread undoes whatever is
//! still registered, newest first, and exits.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// One thing to undo.
#[derive(Debug, Clone)]
pub enum Undo {
    /// Lazily unmount this path (MNT_DETACH), then remove the (now empty) directory.
    Unmount(PathBuf),
    /// Remove this directory if it is empty.
    RemoveEmptyDir(PathBuf),
    /// Remove this file.
    RemoveFile(PathBuf),
    /// Remove this directory and everything in it (an overlay's upper layer).
    RemoveTree(PathBuf),
    /// Kill this process (SIGKILL after unmounting it was not enough).
    Kill(i32),
    /// `losetup -d DEVICE`.
    DetachLoop(PathBuf),
}

impl Undo {
    fn run(&self) {
        match self {
            Undo::Unmount(path) => {
                let _ = unmount_lazy(path);
                let _ = std::fs::remove_dir(path);
            }
            Undo::RemoveEmptyDir(path) => {
                let _ = std::fs::remove_dir(path);
            }
            Undo::RemoveFile(path) => {
                let _ = std::fs::remove_file(path);
            }
            Undo::RemoveTree(path) => {
                let _ = std::fs::remove_dir_all(path);
            }
            Undo::Kill(pid) => {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            Undo::DetachLoop(dev) => {
                let _ = Command::new("losetup")
                    .arg("-d")
                    .arg(dev)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

static REGISTRY: Mutex<Vec<(u64, Undo)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A registered [`Undo`]: dropped, it runs the action (unless [`forget`](Registration::forget)
/// was called because the owner undid it more gracefully itself).
#[derive(Debug)]
pub struct Registration {
    id: u64,
    armed: bool,
}

impl Registration {
    /// Registers `undo` for the signal handler and for drop.
    pub fn new(undo: Undo) -> Registration {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        lock().push((id, undo));
        Registration { id, armed: true }
    }

    /// Removes the entry without running it.
    pub fn forget(mut self) {
        self.take();
        self.armed = false;
    }

    fn take(&self) -> Option<Undo> {
        let mut reg = lock();
        let pos = reg.iter().position(|(id, _)| *id == self.id)?;
        Some(reg.remove(pos).1)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.armed
            && let Some(undo) = self.take()
        {
            undo.run();
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(u64, Undo)>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs every registered action, newest first.
pub fn undo_all() {
    let all: Vec<(u64, Undo)> = std::mem::take(&mut *lock());
    for (_, undo) in all.iter().rev() {
        undo.run();
    }
}

/// umount2(path, MNT_DETACH).
pub fn unmount_lazy(path: &Path) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write is async-signal-safe; `b` is a valid one-byte buffer.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// Installs SIGINT/SIGTERM/SIGHUP handlers: a thread then undoes everything registered and
/// exits with 128 + the signal number. Handlers (not a blocked mask) are used so the
/// processes the harness starts get the default signal dispositions.
pub fn install_signal_handlers() -> std::io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    SIGNAL_PIPE.store(fds[1], Ordering::Relaxed);
    let read_fd = fds[0];
    std::thread::Builder::new()
        .name("cleanup-on-signal".into())
        .spawn(move || {
            let mut b = 0u8;
            loop {
                // SAFETY: `b` is a valid one-byte buffer; `read_fd` stays open forever.
                let n = unsafe { libc::read(read_fd, (&mut b as *mut u8).cast(), 1) };
                if n == 1 {
                    break;
                }
                if n == 0 {
                    return;
                }
            }
            eprintln!("\nfuselage-bench: signal {b}: unmounting and exiting");
            undo_all();
            std::process::exit(128 + i32::from(b));
        })?;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: an all-zero sigaction is valid; the handler only calls write(2), which is
        // async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}
