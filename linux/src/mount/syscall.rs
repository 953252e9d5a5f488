//! The syscall path: open `/dev/fuse` and mount(2) it (root, or root of a user namespace);
//! lazy umount2(2).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::mountinfo::fuse_mount_dev;
use super::watchdog::{OnDeath, Watchdog};
use super::{Mount, MountMethod, MountOptions};
use crate::error::{Denial, MountError, MountStep};

pub(super) fn open_dev_fuse() -> io::Result<OwnedFd> {
    // SAFETY: the path is a NUL-terminated literal; the returned fd is checked.
    let fd = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened by us and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// mount(2). `Ok(None)` means EPERM: the caller falls back to fusermount3.
pub(super) fn mount_syscall(
    dev: OwnedFd,
    resolved: &Path,
    c_path: &CStr,
    rootmode: u32,
    opts: &MountOptions,
) -> Result<Option<Mount>, MountError> {
    let source = CString::new(opts.fs_name.as_bytes())
        .map_err(|_| MountError::InvalidOption { option: "fs_name" })?;
    let fs_type = CString::new(opts.fs_type())
        .map_err(|_| MountError::InvalidOption { option: "subtype" })?;
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let data = CString::new(opts.kernel_data(dev.as_raw_fd(), rootmode, uid, gid))
        .map_err(|_| MountError::InvalidOption { option: "fs_name" })?;
    let mut flags = opts.flags.bits();
    if opts.read_only {
        flags |= libc::MS_RDONLY;
    }

    // The watchdog exists before the mount does, so there is no moment in which the mount is
    // unguarded.
    let mut watchdog = if opts.auto_unmount {
        Some(
            Watchdog::spawn(c_path, OnDeath::Umount).map_err(|e| MountError::Io {
                step: MountStep::Watchdog,
                source: e,
            })?,
        )
    } else {
        None
    };

    // SAFETY: all pointers are NUL-terminated CStrings that outlive the call; `data` is the
    // option string fuse parses.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            c_path.as_ptr(),
            fs_type.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if let Some(mut w) = watchdog.take() {
            w.finish(true);
        }
        return match err.raw_os_error() {
            Some(libc::EPERM) => Ok(None),
            Some(libc::EACCES) => Err(MountError::PermissionDenied {
                path: resolved.to_path_buf(),
                denial: Denial::Mountpoint,
            }),
            _ => Err(MountError::Mount {
                path: resolved.to_path_buf(),
                source: err,
            }),
        };
    }
    let dev_id = fuse_mount_dev(resolved).ok().flatten();
    if let Some(w) = watchdog.as_mut() {
        // If arming fails the watchdog only loses its safety net; the mount itself is fine.
        let _ = w.arm(dev_id);
    }
    Ok(Some(Mount {
        fd: dev,
        mountpoint: resolved.to_path_buf(),
        method: MountMethod::Syscall,
        mounted: true,
        dev: dev_id,
        watchdog,
        helper: None,
    }))
}

pub(super) fn umount_detach(c_path: &CStr) -> io::Result<()> {
    loop {
        // SAFETY: `c_path` is a NUL-terminated string that outlives the call.
        let rc =
            unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

pub(super) fn unmount_error(path: &Path, source: io::Error) -> MountError {
    if source.raw_os_error() == Some(libc::EPERM) {
        MountError::PermissionDenied {
            path: path.to_path_buf(),
            denial: Denial::Syscall,
        }
    } else {
        MountError::Unmount {
            path: path.to_path_buf(),
            source,
        }
    }
}
