//! `/proc` for the passthrough backend, mounted by the binary when the root
//! has none.
//!
//! The passthrough backend reaches its inodes through `/proc/self/fd` (see
//! `fuselage_backends::passthrough`). Container runtimes mount `/proc`; an
//! init container started on an empty root (or a bare chroot) has none. Then
//! [`ensure_mounted`] does what an init would: it creates `/proc` if it is
//! missing and mounts procfs there (`nosuid,nodev,noexec`), and leaves it
//! mounted. The in-memory filesystem does not need `/proc`, so nothing is
//! mounted for it.

use std::io;
use std::path::Path;

/// Whether `/proc` was already there or had to be mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    /// `/proc/self/fd` was already reachable.
    Present,
    /// procfs was mounted on `/proc` by this call.
    Mounted,
}

/// Makes `/proc/self/fd` reachable: nothing to do when it is, else mounts
/// procfs on `/proc` (creating the directory). Fails with the errno of
/// `mkdir` or `mount(2)` (for example `EPERM` without `CAP_SYS_ADMIN`, or
/// `EROFS` for a read-only root without a `/proc` directory).
pub fn ensure_mounted() -> io::Result<ProcState> {
    if Path::new("/proc/self/fd").exists() {
        return Ok(ProcState::Present);
    }
    match std::fs::create_dir("/proc") {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    // SAFETY: every pointer is a valid NUL-terminated string or null (no
    // mount data), all of which outlive the call.
    let r = unsafe {
        libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ProcState::Mounted)
}
