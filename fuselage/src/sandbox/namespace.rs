//! `--sandbox-namespace`: a private mount namespace in which the server
//! sees no host path at all.
//!
//! Once the mount is up and before the first thread starts, [`enter`]:
//!
//! 1. unshares the mount namespace and makes every mount in it private, so
//!    nothing done here propagates back to the host;
//! 2. makes a small tmpfs (`fsopen`/`fsmount`: `nosuid`, `nodev`,
//!    `noexec`), attaches it over `/` of the private namespace, makes it
//!    the root (`pivot_root`) and detaches the old root with every mount
//!    under it, the namespace's copy of the FUSE mount included (kept, it
//!    would hold the superblock, and unmounting the mountpoint on the host
//!    would no longer end the session);
//! 3. mounts a procfs on `/proc` inside it, with `subset=pid` where the
//!    kernel has it (5.8+): only the process directories, which the
//!    backends need (`/proc/self/fd/N` to reach an inode by path,
//!    `/proc/PID/status` for a caller's groups), and none of `/proc/sys`
//!    and the rest. In a user namespace that does not own the PID
//!    namespace (`unshare -Urm`) a new procfs is refused; there the
//!    `/proc` the server had is bound instead (a copy of it taken before
//!    the root changed);
//! 4. remounts the new root read-only.
//!
//! The backends reach their directories only through the descriptors they
//! opened before (the passthrough's source, the overlay's layers), which
//! refer to the host's mounts, not to the namespace's copies, which are
//! gone. A root that is not a mount point (inside a `chroot`) or is the
//! initial rootfs (booted from an initramfs without `switch_root`) cannot be
//! pivoted away: there it is refused. The seccomp
//! filter installed afterwards allows neither `mount`, `chroot` nor
//! `unshare`, and `CAP_SYS_CHROOT` is dropped, so the server cannot leave.
//!
//! The server cannot unmount its FUSE mount from here (it is in the host's
//! namespace): that is left to the auto-unmount watchdog, forked before.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A step of [`enter`] that failed, with the error.
#[derive(Debug)]
pub struct NamespaceError {
    /// What was being done.
    pub step: &'static str,
    /// The error.
    pub error: io::Error,
}

impl fmt::Display for NamespaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.error)?;
        if self.error.raw_os_error() == Some(libc::EPERM) {
            f.write_str(" (a private mount namespace needs CAP_SYS_ADMIN: run as root)")?;
        }
        Ok(())
    }
}

/// `Err` with the step's name from a libc return value (-1: errno).
fn check(step: &'static str, r: libc::c_long) -> Result<libc::c_long, NamespaceError> {
    if r < 0 {
        Err(NamespaceError {
            step,
            error: io::Error::last_os_error(),
        })
    } else {
        Ok(r)
    }
}

/// `mount(2)` with C strings (`None`: NULL).
fn mount(
    step: &'static str,
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<(), NamespaceError> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is NULL or a NUL-terminated string that lives
    // across the call.
    let r = unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    };
    check(step, r.into()).map(drop)
}

/// Takes ownership of a descriptor a system call returned.
fn owned(step: &'static str, r: libc::c_long) -> Result<OwnedFd, NamespaceError> {
    let fd = check(step, r)?;
    // SAFETY: the call just returned this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// A detached tmpfs for the new root (a few KiB: it holds one directory).
fn detached_tmpfs() -> Result<OwnedFd, NamespaceError> {
    fuselage_linux::sys::detached_mount(
        c"tmpfs",
        &[(c"size", c"64k"), (c"mode", c"0755")],
        libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC,
    )
    .map_err(|error| NamespaceError {
        step: "making the root tmpfs (fsopen, fsconfig, fsmount)",
        error,
    })
}

/// Enters the private namespace described in the [module](self) docs.
/// The process must be single-threaded (a thread's root and namespace are
/// its own from here on).
pub fn enter() -> Result<(), NamespaceError> {
    // SAFETY: unshare takes flags only.
    check("unshare(CLONE_NEWNS)", unsafe {
        libc::unshare(libc::CLONE_NEWNS).into()
    })?;
    mount(
        "making the namespace's mounts private",
        None,
        c"/",
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    let root = detached_tmpfs()?;
    // The old /proc, for where a new procfs is refused (see the module
    // docs). Optional: without one, a new procfs must do.
    // SAFETY: open_tree takes a NUL-terminated path and flags and returns a
    // descriptor of a detached copy of the tree.
    let old_proc = owned("open_tree(/proc)", unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c"/proc".as_ptr(),
            (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint
                | libc::AT_RECURSIVE as libc::c_uint,
        )
    })
    .ok();
    // SAFETY: move_mount with MOVE_MOUNT_F_EMPTY_PATH takes the detached
    // mount's descriptor and an empty path, and a NUL-terminated target.
    check("move_mount(tmpfs, /)", unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            root.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c"/".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH as libc::c_uint,
        )
    })?;
    // SAFETY: fchdir takes a descriptor.
    check("fchdir(tmpfs)", unsafe {
        libc::fchdir(root.as_raw_fd()).into()
    })?;
    drop(root);
    // pivot_root(".", "."): the tmpfs becomes the root and the old root is
    // stacked on it, from where it is detached whole. A chroot would not
    // do: the namespace's copy of the FUSE mount would stay, holding the
    // superblock, and a host `umount` of the mountpoint would no longer end
    // the session.
    // SAFETY: pivot_root takes two NUL-terminated paths.
    check("pivot_root", unsafe {
        libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr())
    })
    .map_err(|mut e| {
        if e.error.raw_os_error() == Some(libc::EINVAL) {
            e.step = "pivot_root (the root is a chroot's directory or the initial rootfs, neither of which can be pivoted away)";
        }
        e
    })?;
    // SAFETY: umount2 takes a NUL-terminated path and flags.
    check("detaching the old root", unsafe {
        libc::umount2(c".".as_ptr(), libc::MNT_DETACH).into()
    })?;
    // SAFETY: chdir takes a NUL-terminated path.
    check("chdir(/)", unsafe { libc::chdir(c"/".as_ptr()).into() })?;
    // SAFETY: mkdir takes a NUL-terminated path and a mode.
    check("mkdir(/proc)", unsafe {
        libc::mkdir(c"/proc".as_ptr(), 0o555).into()
    })?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let proc = |data| {
        mount(
            "mounting /proc",
            Some(c"proc"),
            c"/proc",
            Some(c"proc"),
            flags,
            data,
        )
    };
    let fresh = match proc(Some(c"subset=pid")) {
        // Before Linux 5.8 procfs has no `subset`: the whole of it.
        Err(e) if e.error.raw_os_error() == Some(libc::EINVAL) => proc(None),
        other => other,
    };
    match (fresh, old_proc) {
        (Ok(()), _) => {}
        (Err(e), Some(old)) if e.error.raw_os_error() == Some(libc::EPERM) => {
            // SAFETY: as for the root above: a detached tree's descriptor,
            // an empty path and a NUL-terminated target.
            check("move_mount(old /proc, /proc)", unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    old.as_raw_fd(),
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    c"/proc".as_ptr(),
                    libc::MOVE_MOUNT_F_EMPTY_PATH as libc::c_uint,
                )
            })?;
        }
        (Err(e), _) => return Err(e),
    }
    mount(
        "remounting / read-only",
        None,
        c"/",
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | flags,
        None,
    )
}
