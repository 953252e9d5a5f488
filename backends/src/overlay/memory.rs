//! The in-memory upper layer: a private tmpfs that is never attached to
//! any path (`fsopen`, `fsconfig`, `fsmount`), so only this process can
//! reach it and it disappears when the process's descriptors close.

use super::super::passthrough::sys::SysResult;
use fuselage_core::Errno;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn owned(r: libc::c_long) -> SysResult<OwnedFd> {
    if r < 0 {
        return Err(Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ));
    }
    // SAFETY: a non-negative result of fsopen/fsmount is a new descriptor
    // that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// Makes a detached tmpfs of at most `size` bytes and returns the
/// descriptor of its root (from `fsmount`).
pub(crate) fn detached_tmpfs(size: Option<u64>) -> SysResult<OwnedFd> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    // SAFETY: the name is a NUL-terminated string.
    let fs = owned(unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), FSOPEN_CLOEXEC) })?;
    let set = |key: &str, value: &str| -> SysResult<()> {
        let key = CString::new(key).map_err(|_| Errno::EINVAL)?;
        let value = CString::new(value).map_err(|_| Errno::EINVAL)?;
        // SAFETY: key and value are NUL-terminated strings; `fs` is an
        // fs context descriptor.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        };
        owned_unit(r)
    };
    if let Some(size) = size {
        set("size", &size.to_string())?;
    }
    set("mode", "0755")?;
    // SAFETY: no pointers are passed with FSCONFIG_CMD_CREATE.
    owned_unit(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: plain syscall on the fs context descriptor.
    owned(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })
}

fn owned_unit(r: libc::c_long) -> SysResult<()> {
    if r < 0 {
        Err(Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ))
    } else {
        Ok(())
    }
}
